//! Changes under the integrity sensor's critical paths, as they happen: each
//! file created, written, renamed in or out, deleted, or whose mode, owner or
//! times changed is queued for `file_integrity`, which is woken at once and
//! checks that path against its baseline instead of waiting for the next rescan.
//!
//! Two kernel interfaces, the better first:
//!
//! - **fanotify** (Linux 5.9+, `CAP_SYS_ADMIN`), in a group initialised with
//!   `FAN_REPORT_DFID_NAME`: every event names its directory (by file handle,
//!   mapped back to the path through [`crate::host::handles`]) and the entry's
//!   name, and carries the pid of the process that caused it, so a finding names
//!   who changed the file. Each directory below the paths gets an inode mark with
//!   `FAN_EVENT_ON_CHILD` — not a filesystem mark: that would deliver every write
//!   on the root file system (logs, databases, journals) to be filtered here,
//!   which a busy server cannot afford within the agent's CPU budget.
//! - **inotify**, one watch per directory, where fanotify is unavailable (older
//!   kernels, no `CAP_SYS_ADMIN`, a file system without file handles). It cannot
//!   say which process made a change.
//!
//! Directories created later are marked as they appear, up to `max_watches`.
//! A full kernel queue, or ours, sets `overflowed`: the sensor then rescans in
//! full. The periodic rescan stays as the safety net for what events cannot see
//! (a change made while the agent was down, a directory past the watch limit).
//!
//! The package database's directories (`/var/lib/dpkg`, `/var/lib/rpm`,
//! `/usr/lib/sysimage/rpm`) are watched too, unrecursed: a finished package
//! transaction rewrites them, and the sensor reports it at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags as InotifyFlags, Inotify, WatchDescriptor};

use crate::host::HostRoot;

/// Most paths queued between sweeps; past it the next sweep rescans in full.
const MAX_QUEUED: usize = 20_000;

/// The process the kernel says made a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// Its pid.
    pub pid: u32,
    /// Its executable, when it could still be read.
    pub exe: String,
    /// Its command name.
    pub comm: String,
    /// The package manager it runs under (itself, or an ancestor: `dpkg`
    /// running a maintainer script or a trigger such as `ldconfig`), if any.
    pub package_manager: Option<String>,
}

/// What the reader has seen since the last sweep.
#[derive(Debug, Default)]
pub struct Changes {
    /// Host paths changed, with the process that last changed each (fanotify only).
    pub paths: BTreeMap<PathBuf, Option<Actor>>,
    /// Events were lost: rescan everything.
    pub overflowed: bool,
    /// The package database was rewritten.
    pub package_db: bool,
    /// Directories watched.
    pub watches: usize,
    /// Directories left unwatched (the watch limit, or an error).
    pub unwatched: usize,
    /// Which interface watches (`fanotify` or `inotify`), and why not the better one.
    pub backend: String,
    /// Why the reader stopped, if it did.
    pub failed: Option<String>,
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The host.
    pub root: HostRoot,
    /// Host paths watched with every directory below them.
    pub paths: Vec<PathBuf>,
    /// Host directories watched alone, for the package database.
    pub package_dirs: Vec<PathBuf>,
    /// Whether directories on other file systems below a path are left out.
    pub one_filesystem: bool,
    /// Most directories watched.
    pub max_watches: usize,
    /// Whether fanotify is tried first (always, but in the tests of the
    /// inotify fallback).
    pub fanotify: bool,
}

/// One event, as either interface reports it.
pub(crate) struct Raw {
    /// The watched directory it happened in (host path).
    dir: PathBuf,
    /// The entry's name; `None` for the directory itself.
    name: Option<OsString>,
    /// The entry is a directory that appeared (created or moved in).
    new_dir: bool,
    /// The queue overflowed.
    overflow: bool,
    /// The process, where the kernel says.
    pid: Option<u32>,
}

enum Group {
    Fanotify {
        group: Fanotify,
        dirs: HashMap<Vec<u8>, PathBuf>,
        /// Anchor for absolute paths in `fanotify_mark`.
        anchor: std::fs::File,
    },
    Inotify {
        group: Inotify,
        dirs: HashMap<WatchDescriptor, PathBuf>,
    },
}

/// fanotify's events: entries created, deleted, moved; content written; metadata changed.
fn fan_mask() -> MaskFlags {
    MaskFlags::FAN_CREATE
        | MaskFlags::FAN_DELETE
        | MaskFlags::FAN_MOVED_FROM
        | MaskFlags::FAN_MOVED_TO
        | MaskFlags::FAN_MODIFY
        | MaskFlags::FAN_CLOSE_WRITE
        | MaskFlags::FAN_ATTRIB
        | MaskFlags::FAN_EVENT_ON_CHILD
        | MaskFlags::FAN_ONDIR
}

/// inotify's events: the same, one watch per directory.
const INOTIFY_MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

impl Group {
    fn fanotify() -> Result<Self, String> {
        let flags = InitFlags::FAN_CLASS_NOTIF
            | InitFlags::FAN_CLOEXEC
            | InitFlags::from_bits_retain(libc::FAN_REPORT_DFID_NAME);
        let group = Fanotify::init(flags, EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC)
            .map_err(|e| format!("fanotify with FAN_REPORT_DFID_NAME unavailable ({e})"))?;
        let anchor = std::fs::File::open("/").map_err(|e| format!("opening /: {e}"))?;
        Ok(Group::Fanotify {
            group,
            dirs: HashMap::new(),
            anchor,
        })
    }

    fn inotify() -> Result<Self, String> {
        let group = Inotify::init(InotifyFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify unavailable ({e})"))?;
        Ok(Group::Inotify {
            group,
            dirs: HashMap::new(),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Group::Fanotify { .. } => "fanotify",
            Group::Inotify { .. } => "inotify",
        }
    }

    fn watched(&self) -> usize {
        match self {
            Group::Fanotify { dirs, .. } => dirs.len(),
            Group::Inotify { dirs, .. } => dirs.len(),
        }
    }

    /// Watches one directory (`real`: its path here; `host`: as reported).
    fn add(&mut self, real: &Path, host: &Path) -> std::io::Result<()> {
        match self {
            Group::Fanotify {
                group,
                dirs,
                anchor,
            } => {
                let key = crate::host::handles::dir_key(real)?;
                group
                    .mark(
                        MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_ONLYDIR,
                        fan_mask(),
                        &*anchor,
                        Some(real),
                    )
                    .map_err(std::io::Error::from)?;
                dirs.insert(key, host.to_path_buf());
            }
            Group::Inotify { group, dirs } => {
                let wd = group
                    .add_watch(real, INOTIFY_MASK)
                    .map_err(std::io::Error::from)?;
                dirs.insert(wd, host.to_path_buf());
            }
        }
        Ok(())
    }

    /// Blocks for the next events.
    fn read(&mut self, buf: &mut [u8]) -> Result<Vec<Raw>, Errno> {
        match self {
            Group::Fanotify { group, dirs, .. } => {
                let n = nix::unistd::read(&*group, buf)?;
                Ok(parse_fanotify(&buf[..n], dirs))
            }
            Group::Inotify { group, dirs } => {
                let mut out = Vec::new();
                for e in group.read_events()? {
                    if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        out.push(Raw {
                            dir: PathBuf::new(),
                            name: None,
                            new_dir: false,
                            overflow: true,
                            pid: None,
                        });
                        continue;
                    }
                    if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                        dirs.remove(&e.wd);
                        continue;
                    }
                    let Some(dir) = dirs.get(&e.wd) else { continue };
                    let appeared = e
                        .mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                    out.push(Raw {
                        dir: dir.clone(),
                        new_dir: appeared && e.mask.contains(AddWatchFlags::IN_ISDIR),
                        name: e.name,
                        overflow: false,
                        pid: None,
                    });
                }
                Ok(out)
            }
        }
    }
}

/// The native-endian `u32` at `at`, if `buf` holds it.
fn ne_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Parses what one `read` of a `FAN_REPORT_DFID_NAME` group returned:
/// `struct fanotify_event_metadata` (24 bytes: `event_len`, `vers`, reserved,
/// `metadata_len`, `mask`, `fd`, `pid`), then info records (`info_type`, pad,
/// `len`, `fsid`, `struct file_handle`, and for `DFID_NAME` the entry's
/// NUL-terminated name). Events in directories not in `dirs` are dropped; a
/// malformed record ends the buffer.
pub(crate) fn parse_fanotify(buf: &[u8], dirs: &HashMap<Vec<u8>, PathBuf>) -> Vec<Raw> {
    const METADATA: usize = 24;
    let mut out = Vec::new();
    let mut at = 0;
    while at + METADATA <= buf.len() {
        let Some(event_len) = ne_u32(buf, at).map(|n| n as usize) else {
            break;
        };
        let Some(meta_len) = buf
            .get(at + 6..at + 8)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]) as usize)
        else {
            break;
        };
        if event_len < METADATA || at + event_len > buf.len() || meta_len < METADATA {
            break;
        }
        let event = &buf[at..at + event_len];
        at += event_len;
        let mask = event
            .get(8..16)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(0);
        let pid = ne_u32(event, 20).filter(|p| *p > 0);
        if mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(Raw {
                dir: PathBuf::new(),
                name: None,
                new_dir: false,
                overflow: true,
                pid: None,
            });
            continue;
        }
        let mut info = meta_len;
        while info + 4 <= event.len() {
            let info_type = event[info];
            let len = u16::from_ne_bytes([event[info + 2], event[info + 3]]) as usize;
            if len < 4 || info + len > event.len() {
                break;
            }
            let record = &event[info..info + len];
            info += len;
            if info_type != libc::FAN_EVENT_INFO_TYPE_DFID_NAME
                && info_type != libc::FAN_EVENT_INFO_TYPE_DFID
            {
                continue;
            }
            // fsid (8) then struct file_handle: handle_bytes (4), handle_type (4), bytes.
            let Some(handle_bytes) = ne_u32(record, 12).map(|n| n as usize) else {
                continue;
            };
            let handle_end = 20 + handle_bytes;
            let Some(handle) = record.get(20..handle_end) else {
                continue;
            };
            let mut key = Vec::with_capacity(12 + handle_bytes);
            key.extend_from_slice(&record[4..12]);
            key.extend_from_slice(&record[16..20]);
            key.extend_from_slice(handle);
            let Some(dir) = dirs.get(&key) else { continue };
            let name = (info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME)
                .then(|| record.get(handle_end..))
                .flatten()
                .map(|rest| rest.split(|b| *b == 0).next().unwrap_or_default())
                .filter(|n| !n.is_empty() && *n != b".")
                .map(|n| OsString::from(std::ffi::OsStr::from_bytes(n)));
            let appeared = mask & (libc::FAN_CREATE | libc::FAN_MOVED_TO) != 0;
            out.push(Raw {
                dir: dir.clone(),
                new_dir: appeared && mask & libc::FAN_ONDIR != 0 && name.is_some(),
                name,
                overflow: false,
                pid,
            });
            break;
        }
    }
    out
}

struct Watcher {
    group: Group,
    root: HostRoot,
    package_dirs: HashSet<PathBuf>,
    one_filesystem: bool,
    max_watches: usize,
    /// The device of each configured path (its tree stays on it).
    devices: Vec<(PathBuf, u64)>,
    own_pid: u32,
}

impl Watcher {
    /// Watches `dir` and the directories below it.
    fn watch_tree(&mut self, dir: &Path, queue: &Mutex<Changes>) {
        if self.group.watched() >= self.max_watches {
            bannin_proto::lock(queue).unwatched += 1;
            return;
        }
        let real = self.root.join(dir);
        match self.group.add(&real, dir) {
            Ok(()) => bannin_proto::lock(queue).watches = self.group.watched(),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return,
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "Cannot watch a directory");
                bannin_proto::lock(queue).unwatched += 1;
                return;
            }
        }
        if self.package_dirs.contains(dir) {
            return;
        }
        let device = self
            .devices
            .iter()
            .filter(|(top, _)| dir.starts_with(top))
            .max_by_key(|(top, _)| top.as_os_str().len())
            .map(|(_, d)| *d);
        let Ok(entries) = std::fs::read_dir(&real) else {
            return;
        };
        for entry in entries.flatten() {
            // DirEntry::metadata does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && (!self.one_filesystem || device.is_none_or(|d| d == meta.dev())) {
                self.watch_tree(&dir.join(entry.file_name()), queue);
            }
        }
    }

    /// Who `pid` is, read at once (it may exit before the sweep). The kernel's
    /// pid is one of this agent's own `/proc`, whatever the host root.
    fn actor(&self, pid: u32) -> Actor {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        Actor {
            pid,
            exe: std::fs::read_link(proc_dir.join("exe"))
                .map(|p| crate::host::paths::escape(&p))
                .unwrap_or_default(),
            comm: std::fs::read_to_string(proc_dir.join("comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default(),
            package_manager: crate::host::proc::package_manager_of(pid),
        }
    }
}

/// Starts watching in a reader thread that queues changes in `queue` and
/// notifies `wake`. fanotify where it can mark every configured path, inotify
/// otherwise; `queue.backend` says which, and why.
pub fn start(
    watch: Watch,
    queue: Arc<Mutex<Changes>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let existing: Vec<PathBuf> = watch
        .paths
        .iter()
        .filter(|p| watch.root.join(p).is_dir())
        .cloned()
        .collect();
    let preferred = if watch.fanotify {
        Group::fanotify()
    } else {
        Err("fanotify not tried".to_owned())
    };
    let group = match preferred {
        Ok(mut g) => {
            // Every configured path must take a mark (file systems without file
            // handles refuse), or inotify watches them all.
            let refused = existing.iter().find_map(|p| {
                g.add(&watch.root.join(p), p)
                    .err()
                    .map(|e| format!("fanotify cannot mark {} ({e})", p.display()))
            });
            match refused {
                None => {
                    bannin_proto::lock(&queue).backend = "fanotify".into();
                    g
                }
                Some(why) => {
                    bannin_proto::lock(&queue).backend =
                        format!("inotify (no process attribution: {why})");
                    Group::inotify()?
                }
            }
        }
        Err(why) => {
            bannin_proto::lock(&queue).backend = format!("inotify (no process attribution: {why})");
            Group::inotify()?
        }
    };
    let devices = existing
        .iter()
        .filter_map(|p| Some((p.clone(), std::fs::metadata(watch.root.join(p)).ok()?.dev())))
        .collect();
    let mut watcher = Watcher {
        group,
        root: watch.root,
        package_dirs: watch.package_dirs.iter().cloned().collect(),
        one_filesystem: watch.one_filesystem,
        max_watches: watch.max_watches,
        devices,
        own_pid: std::process::id(),
    };
    let package_dirs = watch.package_dirs;
    std::thread::Builder::new()
        .name("bannin-changes".into())
        .spawn(move || {
            for p in existing.iter().chain(&package_dirs) {
                watcher.watch_tree(p, &queue);
            }
            read_loop(&mut watcher, &queue, &wake);
        })
        .map_err(|e| format!("cannot start the change reader: {e}"))?;
    Ok(())
}

fn read_loop(w: &mut Watcher, queue: &Mutex<Changes>, wake: &tokio::sync::Notify) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let events = match w.group.read(&mut buf) {
            Ok(events) => events,
            Err(Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, backend = w.group.name(), "Change reader failed; critical paths are checked at each rescan only");
                bannin_proto::lock(queue).failed =
                    Some(format!("{} failed: {error}", w.group.name()));
                wake.notify_one();
                return;
            }
        };
        let mut new_dirs = Vec::new();
        // One look at /proc per process per read: a package upgrade is thousands
        // of events from a handful of processes.
        let mut seen: HashMap<u32, Actor> = HashMap::new();
        let actors: Vec<Option<Actor>> = events
            .iter()
            .map(|e| {
                let pid = e.pid.filter(|p| *p != w.own_pid)?;
                Some(seen.entry(pid).or_insert_with(|| w.actor(pid)).clone())
            })
            .collect();
        {
            let mut q = bannin_proto::lock(queue);
            for (e, actor) in events.into_iter().zip(actors) {
                if e.overflow {
                    q.overflowed = true;
                    continue;
                }
                if w.package_dirs.contains(&e.dir) {
                    q.package_db = true;
                    continue;
                }
                let path = match &e.name {
                    Some(n) => e.dir.join(n),
                    None => e.dir.clone(),
                };
                if e.new_dir {
                    new_dirs.push(path.clone());
                }
                if q.paths.len() >= MAX_QUEUED && !q.paths.contains_key(&path) {
                    q.overflowed = true;
                    continue;
                }
                let slot = q.paths.entry(path).or_default();
                if actor.is_some() {
                    *slot = actor;
                }
            }
        }
        // Outside the lock: a new tree may take a while to watch.
        for dir in new_dirs {
            w.watch_tree(&dir, queue);
        }
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(queue: &Mutex<Changes>, what: impl Fn(&Changes) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what(&bannin_proto::lock(queue)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn started(dir: &Path) -> Arc<Mutex<Changes>> {
        started_with(dir, true)
    }

    fn started_with(dir: &Path, fanotify: bool) -> Arc<Mutex<Changes>> {
        std::fs::create_dir_all(dir.join("crit/sub")).expect("dirs");
        std::fs::create_dir_all(dir.join("var/lib/dpkg")).expect("dpkg");
        std::fs::write(dir.join("crit/sub/old"), b"old").expect("old");
        let queue = Arc::new(Mutex::new(Changes::default()));
        start(
            Watch {
                root: HostRoot(dir.to_path_buf()),
                paths: vec![PathBuf::from("/crit")],
                package_dirs: vec![PathBuf::from("/var/lib/dpkg")],
                one_filesystem: true,
                max_watches: 100,
                fanotify,
            },
            queue.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .expect("watcher");
        assert!(wait_for(&queue, |q| q.watches == 3), "crit, crit/sub, dpkg");
        queue
    }

    #[test]
    fn writes_modes_renames_and_deletes_are_queued_with_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = started(dir.path());
        let fanotify = bannin_proto::lock(&queue).backend == "fanotify";
        std::fs::write(dir.path().join("crit/new"), b"x").expect("write");
        std::fs::set_permissions(
            dir.path().join("crit/sub/old"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .expect("chmod");
        std::fs::rename(dir.path().join("crit/new"), dir.path().join("crit/moved")).expect("mv");
        std::fs::create_dir(dir.path().join("crit/later")).expect("mkdir");
        assert!(
            wait_for(&queue, |q| q.watches == 4),
            "new directories are watched"
        );
        std::fs::write(dir.path().join("crit/later/deep"), b"x").expect("deep");
        std::fs::remove_file(dir.path().join("crit/sub/old")).expect("rm");
        std::fs::write(dir.path().join("var/lib/dpkg/status"), b"").expect("status");
        let expected = [
            "/crit/new",
            "/crit/moved",
            "/crit/sub/old",
            "/crit/later",
            "/crit/later/deep",
        ];
        assert!(
            wait_for(&queue, |q| expected
                .iter()
                .all(|p| q.paths.contains_key(Path::new(p)))
                && q.package_db),
            "{:?}",
            bannin_proto::lock(&queue)
        );
        let q = bannin_proto::lock(&queue);
        assert!(!q.overflowed && q.unwatched == 0 && q.failed.is_none());
        assert!(
            !q.paths.keys().any(|p| p.starts_with("/var")),
            "the package database is a flag, not a path"
        );
        if fanotify {
            // This process made every change: the agent never names itself.
            assert!(q.paths.values().all(Option::is_none), "{:?}", q.paths);
        }
    }

    #[test]
    fn without_fanotify_inotify_sees_the_same_changes_without_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = started_with(dir.path(), false);
        assert!(bannin_proto::lock(&queue).backend.starts_with("inotify"));
        std::fs::write(dir.path().join("crit/new"), b"x").expect("write");
        std::fs::set_permissions(
            dir.path().join("crit/sub/old"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::create_dir(dir.path().join("crit/later")).expect("mkdir");
        assert!(
            wait_for(&queue, |q| q.watches == 4),
            "new directories are watched"
        );
        std::fs::write(dir.path().join("crit/later/deep"), b"x").expect("deep");
        std::fs::remove_file(dir.path().join("crit/new")).expect("rm");
        std::fs::write(dir.path().join("var/lib/dpkg/status"), b"").expect("status");
        assert!(
            wait_for(&queue, |q| [
                "/crit/new",
                "/crit/sub/old",
                "/crit/later",
                "/crit/later/deep"
            ]
            .iter()
            .all(|p| q.paths.contains_key(Path::new(p)))
                && q.package_db),
            "{:?}",
            bannin_proto::lock(&queue)
        );
        assert!(
            bannin_proto::lock(&queue)
                .paths
                .values()
                .all(Option::is_none)
        );
    }

    #[test]
    fn a_child_process_is_named_as_the_one_that_changed_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = started(dir.path());
        // Only a privileged listener hears which process made a change.
        if bannin_proto::lock(&queue).backend != "fanotify" || !crate::sensors::running_as_root() {
            crate::testing::skip("needs root (fanotify reports the process to root only)");
            return;
        }
        let target = dir.path().join("crit/sub/by-touch");
        let status = std::process::Command::new("touch")
            .arg(&target)
            .status()
            .expect("touch");
        assert!(status.success());
        assert!(wait_for(&queue, |q| q
            .paths
            .get(Path::new("/crit/sub/by-touch"))
            .is_some_and(|a| a.as_ref().is_some_and(|a| a.pid > 0))));
        let q = bannin_proto::lock(&queue);
        let actor = q.paths[Path::new("/crit/sub/by-touch")]
            .clone()
            .expect("actor");
        assert_ne!(actor.pid, std::process::id());
        // `touch` may be gone before its /proc entry is read; when it is not, it is named.
        if !actor.comm.is_empty() {
            assert_eq!(actor.comm, "touch");
        }
    }

    #[test]
    fn malformed_fanotify_buffers_end_parsing_without_panicking() {
        let dirs = HashMap::from([(vec![1u8; 20], PathBuf::from("/etc"))]);
        for len in 0..80 {
            for fill in [0u8, 0xff] {
                let mut buf = vec![fill; len];
                if len >= 4 {
                    buf[..4].copy_from_slice(&(len as u32).to_ne_bytes());
                }
                // Nothing in a directory that is not watched comes out of it.
                assert!(parse_fanotify(&buf, &dirs).iter().all(|r| r.overflow));
            }
        }
        // A well-formed event in a directory that is not watched is dropped.
        let mut event = vec![0u8; 24];
        event[6..8].copy_from_slice(&24u16.to_ne_bytes());
        event[8..16].copy_from_slice(&libc::FAN_CREATE.to_ne_bytes());
        event[20..24].copy_from_slice(&42u32.to_ne_bytes());
        let mut record = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        record.extend_from_slice(&[9u8; 8]); // fsid
        record.extend_from_slice(&8u32.to_ne_bytes());
        record.extend_from_slice(&1i32.to_ne_bytes());
        record.extend_from_slice(&[7u8; 8]);
        record.extend_from_slice(b"passwd\0\0");
        let rlen = record.len() as u16;
        record[2..4].copy_from_slice(&rlen.to_ne_bytes());
        event.extend_from_slice(&record);
        let elen = event.len() as u32;
        event[..4].copy_from_slice(&elen.to_ne_bytes());
        assert!(parse_fanotify(&event, &dirs).is_empty());
        // The same event in a watched directory names the entry and the pid.
        let mut key = vec![9u8; 8];
        key.extend_from_slice(&1i32.to_ne_bytes());
        key.extend_from_slice(&[7u8; 8]);
        let dirs = HashMap::from([(key, PathBuf::from("/etc"))]);
        let raw = parse_fanotify(&event, &dirs);
        assert_eq!(raw.len(), 1);
        assert_eq!(raw[0].dir, Path::new("/etc"));
        assert_eq!(raw[0].name.as_deref(), Some(std::ffi::OsStr::new("passwd")));
        assert_eq!(raw[0].pid, Some(42));
        assert!(!raw[0].new_dir);
    }
}
