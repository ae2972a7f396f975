//! `file.access`: who opens critical files — `/etc/shadow`, `/etc/sudoers`,
//! SSH keys — seen by the kernel through fanotify, with the accessing process.
//!
//! A reader thread blocks on the fanotify descriptor and, for each event,
//! resolves the file and the process at once (a `cat /etc/shadow` is gone a
//! millisecond later), then queues it; each sweep drains the queue. Programs
//! that read these files for a living (sshd, sudo, su, login, passwd,
//! unix_chkpwd…) are in `allow`; the agent itself is never reported. The same
//! program opening the same file again within a minute is counted, not
//! reported again.
//!
//! Events are notifications, not permission requests: the agent never makes an
//! open wait for it (a stalled agent must not hang logins). The price: a
//! reader that exits within microseconds, like `cat /etc/shadow`, may be gone
//! before the thread reads its `/proc` entry; it is then reported with its pid
//! only ("already exited").
//!
//! fanotify needs CAP_SYS_ADMIN: without it the sensor is degraded and says
//! so (inotify cannot name the process, so it is no substitute here).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bannin_proto::v1::Severity;

use super::source::writers::{AccountWriters, Writer};
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::FileAccessConfig;

/// Most accesses queued between sweeps; past it they are counted as dropped.
const MAX_QUEUED: usize = 10_000;
/// Repeats of one (program, file) within this window are counted, not reported.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// One access, resolved when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The file.
    pub path: String,
    /// Accessing process.
    pub pid: i32,
    /// Its executable ("" if it was already gone).
    pub exe: String,
    /// Its name.
    pub comm: String,
    /// Its real uid.
    pub uid: String,
    /// open or modify.
    pub what: &'static str,
    /// The package manager it runs under, if any (a maintainer script).
    pub package_manager: Option<String>,
}

#[derive(Default)]
struct Queue {
    accesses: VecDeque<Access>,
    dropped: u64,
    overflowed: bool,
    /// Where writes to SSH key files are handed, the moment they are heard.
    writers: Option<AccountWriters>,
}

/// The sensor.
pub struct FileAccess {
    root: HostRoot,
    config: FileAccessConfig,
    queue: Arc<Mutex<Queue>>,
    /// Why fanotify is not watching, if it is not.
    unavailable: Option<String>,
    recent: HashMap<(String, String), (Instant, u64)>,
}

/// Expands `/home/*/.ssh`-style entries (one `*` as a whole component) under `root`.
pub fn expand(root: &HostRoot, paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        let text = p.to_string_lossy();
        match text.split_once("/*/") {
            Some((base, rest)) => {
                if let Ok(entries) = std::fs::read_dir(root.join(base)) {
                    for e in entries.flatten() {
                        out.push(PathBuf::from(base).join(e.file_name()).join(rest));
                    }
                }
            }
            None => out.push(p.clone()),
        }
    }
    out.retain(|p| root.join(p).exists());
    out.sort();
    out
}

impl FileAccess {
    /// Starts watching `config.paths` under `root` (when fanotify is available).
    pub fn new(root: HostRoot, config: FileAccessConfig) -> Self {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let paths = expand(&root, &config.paths);
        let unavailable = start(&root, &paths, queue.clone()).err();
        Self {
            root,
            config,
            queue,
            unavailable,
            recent: HashMap::new(),
        }
    }

    /// Hands every write to an SSH key file to the accounts sensor the
    /// moment it is heard (so `account.ssh_key_added` names its writer), and
    /// keeps such writes as telemetry here: the key finding is the finding.
    pub fn with_writers(self, writers: AccountWriters) -> Self {
        if self.unavailable.is_none() {
            writers.attribute_keys();
        }
        bannin_proto::lock(&self.queue).writers = Some(writers);
        self
    }

    fn allowed(&self, a: &Access) -> bool {
        a.pid as u32 == std::process::id()
            || self
                .config
                .allow
                .iter()
                .any(|x| x.as_os_str().as_bytes() == a.exe.as_bytes())
    }
}

/// Opens fanotify, marks `paths`, and starts the reader thread.
fn start(root: &HostRoot, paths: &[PathBuf], queue: Arc<Mutex<Queue>>) -> Result<(), String> {
    use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
    if paths.is_empty() {
        return Err("none of the configured paths exists".into());
    }
    let group = Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC,
        EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
    )
    .map_err(|e| {
        format!("fanotify unavailable ({e}): needs CAP_SYS_ADMIN; access to critical files is not watched")
    })?;
    // Absolute paths make the directory descriptor irrelevant; any will do.
    let anchor = std::fs::File::open("/").map_err(|e| format!("opening /: {e}"))?;
    let mut marked = 0;
    for p in paths {
        let real = root.join(p);
        let mut mask = MaskFlags::FAN_OPEN | MaskFlags::FAN_MODIFY;
        if real.is_dir() {
            mask |= MaskFlags::FAN_EVENT_ON_CHILD;
        }
        match group.mark(MarkFlags::FAN_MARK_ADD, mask, &anchor, Some(real.as_path())) {
            Ok(()) => marked += 1,
            Err(error) => {
                tracing::warn!(path = %real.display(), %error, "Cannot watch a critical path");
            }
        }
    }
    if marked == 0 {
        return Err("fanotify could not watch any configured path".into());
    }
    let root = root.clone();
    std::thread::Builder::new()
        .name("bannin-fanotify".into())
        .spawn(move || read_loop(&group, &root, &queue))
        .map_err(|e| format!("cannot start the fanotify reader: {e}"))?;
    Ok(())
}

fn read_loop(group: &nix::sys::fanotify::Fanotify, root: &HostRoot, queue: &Mutex<Queue>) {
    use nix::sys::fanotify::MaskFlags;
    use std::os::fd::AsRawFd;
    loop {
        let events = match group.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, "fanotify read failed; file access is no longer watched");
                return;
            }
        };
        for e in events {
            let mut q = bannin_proto::lock(queue);
            if e.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
                q.overflowed = true;
            }
            // The event's descriptor is closed when `e` is dropped.
            let Some(fd) = e.fd() else { continue };
            let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The kernel's pid is one of this agent's own `/proc`, whatever
            // the host root.
            let proc_dir = PathBuf::from(format!("/proc/{}", e.pid()));
            let access = Access {
                path,
                pid: e.pid(),
                exe: std::fs::read_link(proc_dir.join("exe"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                comm: std::fs::read_to_string(proc_dir.join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_default(),
                uid: std::fs::read_to_string(proc_dir.join("status"))
                    .ok()
                    .and_then(|s| crate::host::proc::parse_uid(&s))
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                what: if e.mask().contains(MaskFlags::FAN_MODIFY) {
                    "modify"
                } else {
                    "open"
                },
                package_manager: u32::try_from(e.pid())
                    .ok()
                    .and_then(crate::host::proc::package_manager_of),
            };
            let host = root.host_path(Path::new(&access.path));
            if let Some(writers) = &q.writers
                && access.what == "modify"
                && writers.is_key_file(&host)
            {
                writers.record(
                    host,
                    Writer {
                        pid: u32::try_from(access.pid).unwrap_or_default(),
                        exe: access.exe.clone(),
                        comm: access.comm.clone(),
                        uid: access.uid.clone(),
                    },
                );
            }
            if q.accesses.len() < MAX_QUEUED {
                q.accesses.push_back(access);
            } else {
                q.dropped += 1;
            }
        }
    }
}

impl Sensor for FileAccess {
    fn name(&self) -> &'static str {
        "file_access"
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        if let Some(why) = &self.unavailable {
            return Ok(Health::Degraded(why.clone()));
        }
        let (accesses, dropped, overflowed, writers) = {
            let mut q = bannin_proto::lock(&self.queue);
            let a: Vec<Access> = q.accesses.drain(..).collect();
            let d = std::mem::take(&mut q.dropped);
            let o = std::mem::take(&mut q.overflowed);
            (a, d, o, q.writers.clone())
        };
        // An open followed by a write of the same file by the same process is
        // one access: the write.
        let written: std::collections::HashSet<(i32, String)> = accesses
            .iter()
            .filter(|a| a.what == "modify")
            .map(|a| (a.pid, a.path.clone()))
            .collect();
        let now = Instant::now();
        self.recent
            .retain(|_, (at, _)| now.duration_since(*at) < REPEAT_WINDOW);
        for a in accesses {
            if self.allowed(&a) || (a.what == "open" && written.contains(&(a.pid, a.path.clone())))
            {
                continue;
            }
            let key = (a.exe.clone(), a.path.clone());
            if let Some((_, repeats)) = self.recent.get_mut(&key) {
                *repeats += 1;
                continue;
            }
            self.recent.insert(key, (now, 0));
            let who = if a.exe.is_empty() {
                format!("{} (pid {}, already exited)", a.comm, a.pid)
            } else {
                format!("{} (pid {}, uid {})", a.exe, a.pid, a.uid)
            };
            // A backup tool reading, or the package manager's own scripts
            // (adding a system user): kept as telemetry, not raised.
            let expected = if a.what == "open"
                && self
                    .config
                    .backup
                    .iter()
                    .any(|x| x.as_os_str().as_bytes() == a.exe.as_bytes())
            {
                Some("a backup tool reading".to_owned())
            } else if writers
                .as_ref()
                .is_some_and(|w| w.is_key_file(&self.root.host_path(Path::new(&a.path))))
            {
                // Public keys: reading them is no theft, and what a write
                // changed is the accounts sensor's finding, with the keys.
                Some(
                    "an SSH key file: its keys are reported by the accounts sensor \
                     (account.ssh_key_added, account.ssh_key_removed)"
                        .to_owned(),
                )
            } else {
                a.package_manager
                    .as_ref()
                    .map(|pm| format!("run by the package manager ({pm})"))
            };
            let mut e = event(
                "file.access",
                Severity::High,
                expected.is_none(),
                BTreeMap::from([
                    ("path".to_owned(), a.path.clone()),
                    ("pid".to_owned(), a.pid.to_string()),
                    ("exe".to_owned(), a.exe.clone()),
                    ("comm".to_owned(), a.comm.clone()),
                    ("uid".to_owned(), a.uid.clone()),
                    ("access".to_owned(), a.what.to_owned()),
                ]),
                format!("{} of critical file {} by {who}", a.what, a.path),
            );
            if let Some(why) = expected {
                e.attributes.insert("expected".into(), why);
            }
            sweep.events.push(e);
        }
        if dropped > 0 || overflowed {
            return Ok(Health::Degraded(format!(
                "{dropped} accesses dropped since the last sweep{}",
                if overflowed {
                    "; the kernel queue overflowed"
                } else {
                    ""
                }
            )));
        }
        Ok(Health::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_globs_expand_to_existing_ssh_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for p in ["home/alice/.ssh", "home/bob", "root/.ssh", "etc"] {
            std::fs::create_dir_all(r.join(p)).expect("dir");
        }
        std::fs::write(r.join("etc/shadow"), "").expect("shadow");
        let got = expand(
            &HostRoot(r.into()),
            &[
                PathBuf::from("/etc/shadow"),
                PathBuf::from("/etc/gshadow"),
                PathBuf::from("/root/.ssh"),
                PathBuf::from("/home/*/.ssh"),
            ],
        );
        assert_eq!(
            got,
            [
                PathBuf::from("/etc/shadow"),
                PathBuf::from("/home/alice/.ssh"),
                PathBuf::from("/root/.ssh")
            ]
        );
    }
}
