//! Processes, by polling `/proc`: every process that appeared since the last
//! sweep is read once — executable, its SHA-256 (cached by device, inode,
//! size and mtime), command line, user, parent and start time.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `process.ioc_match` | the executable's SHA-256 is in the IOC hash list | critical |
//! | `process.suspicious_exec` | it runs from a suspicious directory (`/tmp`, `/var/tmp`, `/dev/shm`) or its file was deleted | high |
//! | `process.unknown_binary` | not installed by the package manager, and its SHA-256 is not in the learned baseline nor the allow list | medium |
//! | `file.package_mismatch` | the executable is a packaged file whose content no longer matches its package (the `debsums` check), and it is running | critical |
//! | `process.reverse_shell` | a shell or interpreter whose standard input, output or error is a network connection, at its exec or later while it runs (T1059.004) | critical |
//! | `process.service_shell` | an interactive shell started by a process that listens on a TCP port (T1505.003) | high |
//! | `process.exec` | telemetry: every new process (if `exec_telemetry`) | info |
//!
//! An executable the package manager installed, whose content matches the
//! package's digest ([`crate::host::packages`]), is known: never
//! `process.unknown_binary`. Everything else (`/usr/local`, `/opt`, home
//! directories, language runtimes) is judged by the learned baseline.
//!
//! The first sweep learns the baseline: every executable running then is known.
//! Each unknown hash is reported once, then joins the baseline. Polling misses
//! processes that live less than one interval; the kernel's process events
//! connector is the planned complement.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use bannin_proto::v1::Severity;

use super::source::proc_events::Parent;
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event, running_as_root};
use crate::config::{ExecSource, ProcessConfig};
use crate::host::net::inet_socket;
use crate::host::packages::{PackageIndex, SharedIndex};
use crate::host::proc::{ProcInfo, digests_reader, parse_stat, read_proc};

/// Most hashes kept in the baseline; past it, the oldest learned are forgotten.
pub const MAX_BASELINE: usize = 100_000;
/// Most entries of the hash cache before it is cleared.
const MAX_CACHE: usize = 16_384;
/// Hashing reads at most this many bytes per sweep; the rest waits.
const HASH_BUDGET_PER_SWEEP: u64 = 512 * 1024 * 1024;

/// What the sensor remembers across restarts: the learned baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessState {
    /// SHA-256 values of known executables, in the order learned.
    pub baseline: Vec<String>,
}

/// The sensor.
pub struct Processes {
    root: HostRoot,
    config: ProcessConfig,
    baseline: Option<(Vec<String>, HashSet<String>)>,
    /// pid → (start time, executable) of every process seen at the last sweep:
    /// a process that execs another program keeps its pid and start time.
    seen: HashMap<u32, (u64, String)>,
    /// (pid, start time) of the processes reported as reverse shells: each
    /// once, at its exec or when a walk finds it on a socket later.
    reverse_shells: HashSet<(u32, u64)>,
    cache: HashMap<(u64, u64, i64, u64), Digests>,
    ioc: HashSet<String>,
    ioc_stamp: Option<(i64, u64)>,
    users: crate::host::accounts::UserNames,
    /// Execs from the kernel's process events connector, when it listens.
    events: Option<std::sync::Arc<std::sync::Mutex<super::source::proc_events::ExecQueue>>>,
    /// Where execs come from, and what that misses.
    exec_path: ExecPath,
    /// Notified by the connector's reader when execs are waiting.
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// When `/proc` was last walked: a sweep woken by the connector sooner
    /// than an interval after it only judges the queued execs.
    last_walk: Option<std::time::Instant>,
    /// Execs not recorded, reported as `agent.events_lost`.
    losses: super::LossReport,
    /// Walks so far (every tenth re-reads every process).
    walks: u32,
    /// The OS package database (shared with the integrity sensor), loaded at the
    /// first sweep, reloaded when it changes.
    packages: SharedIndex,
    /// This agent's own executable (its path, and the file there when the
    /// agent started): never judged suspicious or unknown — `bannin up` run
    /// from a checkout under `/tmp`, and the `bannin` CLI it is, would
    /// otherwise report themselves. The path must match and the file there
    /// must still be that file (device, inode, mtime, size; a debug build is
    /// too large to hash): a copy elsewhere, or another file put at that path
    /// (which the integrity sensor watches), is judged as any program is.
    own: Option<(String, FileId)>,
    /// This agent's own process id, when the sensor reads the real host: the
    /// agent itself is never judged, whatever its executable has become
    /// since it started (replaced by an upgrade or a rebuild, it shows as
    /// `… (deleted)` until the agent restarts; the integrity sensor reports
    /// the file).
    own_pid: Option<u32>,
}

/// Device, inode, mtime and size: which file, unchanged.
type FileId = (u64, u64, i64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.size()))
}

/// This process's executable and which file it is, if they can be read.
fn own_executable() -> Option<(String, FileId)> {
    let path = std::fs::read_link("/proc/self/exe").ok()?;
    let id = file_id(&path)?;
    Some((path.to_string_lossy().into_owned(), id))
}

/// The digests of an executable: SHA-256 (hex) for baselines and IOCs, MD5 for the
/// package database.
#[derive(Debug, Clone)]
struct Digests {
    sha256: String,
    file: crate::host::packages::FileDigest,
}

/// A `process.reverse_shell` finding's own attributes and summary.
struct ShellFinding {
    attributes: BTreeMap<String, String>,
    summary: String,
}

/// A shell (not an interpreter) that reads its commands from its input:
/// `-i`, or no command (`-c`) and no script among its arguments.
fn is_interactive_shell(exe: &str, cmdline: &str) -> bool {
    const SHELLS: &[&str] = &[
        "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "ash", "csh", "tcsh", "fish",
    ];
    let base = exe
        .trim_end_matches(" (deleted)")
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if !SHELLS.contains(&base) {
        return false;
    }
    let mut args = cmdline.split_whitespace().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix('-') {
            // `--` ends the options: a script may follow.
            Some("-") => return args.next().is_none(),
            // `--login`, `--norc`…
            Some(long) if long.starts_with('-') => {}
            Some(flags) if flags.contains('i') => return true,
            Some(flags) if flags.contains('c') => return false,
            Some(_) => {}
            // A script file: not interactive.
            None => return false,
        }
    }
    true
}

/// Programs that give whoever holds their standard streams a command line:
/// shells, script interpreters (any version: `python3.11`, `perl5.36.0`) and
/// the relays of reverse-shell one-liners, by the executable's name or the
/// process's.
fn is_shell_like(exe: &str, comm: &str) -> bool {
    const EXACT: &[&str] = &[
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "ksh93",
        "mksh",
        "pdksh",
        "ash",
        "csh",
        "tcsh",
        "fish",
        "busybox",
        "nc",
        "ncat",
        "netcat",
        "nc.openbsd",
        "nc.traditional",
        "socat",
        "node",
        "nodejs",
        "tclsh",
        "expect",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "irb",
        "telnet",
    ];
    const VERSIONED: &[&str] = &["python", "perl", "ruby", "php", "lua", "tclsh"];
    let base = exe
        .trim_end_matches(" (deleted)")
        .rsplit('/')
        .next()
        .unwrap_or_default();
    [base, comm].iter().any(|name| {
        EXACT.contains(name)
            || VERSIONED.iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
            })
    })
}

/// What the kernel told of an exec beyond its `/proc` fields.
struct Captured {
    parent: Option<Parent>,
    argv_cut: bool,
    cgroup: String,
    /// How it ended, when it ended before it was judged (eBPF).
    exited: Option<super::source::proc_events::Exited>,
}

/// Where the process sensor hears of execs as they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ExecPath {
    /// eBPF: every exec and fork, captured in the kernel as it happened.
    Ebpf,
    /// The process events connector, and why eBPF does not run.
    Connector(String),
    /// Neither: `/proc` is polled at each interval, and why.
    Polling(String),
    /// Exec events turned off in config: `/proc` is polled.
    Off,
}

impl ExecPath {
    /// Starts the best source `wanted` allows, queueing into `queue`.
    fn start(
        wanted: ExecSource,
        root: &HostRoot,
        queue: &std::sync::Arc<std::sync::Mutex<super::source::proc_events::ExecQueue>>,
        wake: &std::sync::Arc<tokio::sync::Notify>,
    ) -> Self {
        use super::source::{exec_bpf, proc_events};
        let no_ebpf = match wanted {
            ExecSource::Connector => "eBPF not used (exec_source = \"connector\")".to_owned(),
            ExecSource::Auto | ExecSource::Ebpf => {
                match exec_bpf::start(root.clone(), queue.clone(), wake.clone()) {
                    Ok(()) => return ExecPath::Ebpf,
                    Err(why) => why,
                }
            }
        };
        if wanted == ExecSource::Ebpf {
            return ExecPath::Polling(format!("{no_ebpf}, and exec_source = \"ebpf\""));
        }
        match proc_events::start(root.clone(), queue.clone(), wake.clone()) {
            Ok(()) => ExecPath::Connector(no_ebpf),
            Err(why) => ExecPath::Polling(format!("{no_ebpf}; {why}")),
        }
    }

    /// What this path misses, for health (`None` for eBPF, which misses
    /// nothing it does not count).
    fn misses(&self) -> Option<String> {
        match self {
            ExecPath::Ebpf | ExecPath::Off => None,
            ExecPath::Connector(why) => Some(format!(
                "{why}: execs from the process events connector (a process that exits before it is read is missed, and counted; parent fields are read when judged)"
            )),
            ExecPath::Polling(why) => Some(format!(
                "{why}: polling /proc only (processes shorter than the interval are missed)"
            )),
        }
    }
}

impl Processes {
    /// A sensor reading under `root`, starting from the baseline it saved last.
    pub fn new(root: HostRoot, config: ProcessConfig, state: Option<ProcessState>) -> Self {
        let baseline = state.map(|s| {
            let set = s.baseline.iter().cloned().collect();
            (s.baseline, set)
        });
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let (events, exec_path) = if config.exec_events {
            let queue = std::sync::Arc::new(std::sync::Mutex::new(
                super::source::proc_events::ExecQueue::default(),
            ));
            let path = ExecPath::start(config.exec_source, &root, &queue, &wake);
            let listening = !matches!(path, ExecPath::Polling(_));
            (listening.then_some(queue), path)
        } else {
            (None, ExecPath::Off)
        };
        let own_pid = (root.0 == Path::new("/")).then(std::process::id);
        Self {
            users: crate::host::accounts::UserNames::new(root.clone()),
            root,
            config,
            baseline,
            seen: HashMap::new(),
            reverse_shells: HashSet::new(),
            cache: HashMap::new(),
            ioc: HashSet::new(),
            ioc_stamp: None,
            events,
            exec_path,
            wake,
            last_walk: None,
            losses: super::LossReport::default(),
            walks: 0,
            own: own_executable(),
            own_pid,
            packages: SharedIndex::default(),
        }
    }

    /// Consults `packages` (shared with the other sensors) instead of its own index.
    pub fn with_packages(mut self, packages: SharedIndex) -> Self {
        self.packages = packages;
        self
    }

    /// Reloads the IOC list when its file changed. Returns a problem to report.
    fn refresh_ioc(&mut self) -> Option<String> {
        let path = self.config.ioc_hashes.clone()?;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return Some(format!("IOC list {}: {e}", path.display())),
        };
        let stamp = (meta.mtime(), meta.size());
        if self.ioc_stamp == Some(stamp) {
            return None;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                self.ioc = parse_ioc(&text);
                self.ioc_stamp = Some(stamp);
                tracing::info!(path = %path.display(), hashes = self.ioc.len(), "IOC hash list loaded");
                None
            }
            Err(e) => Some(format!("IOC list {}: {e}", path.display())),
        }
    }

    fn user_name(&mut self, uid: u32) -> String {
        self.users.name(uid)
    }

    fn read(&self, pid: u32) -> Option<ProcInfo> {
        read_proc(&self.root, pid)
    }
}

impl Processes {
    /// SHA-256 of the process's executable, read through `/proc/PID/exe` (which
    /// works even when the file was deleted). `Err` says why there is none.
    ///
    /// `exe` is the executable the sweep read for this process: a process that
    /// executed another program in between (a shell script's `exec`) would
    /// have the other program's digest judged against `exe`'s package, so the
    /// file actually opened must be `exe`, or there is no digest this time.
    fn hash(&mut self, pid: u32, exe: &str, budget: &mut u64) -> Result<Digests, String> {
        let path = self.root.join(format!("/proc/{pid}/exe"));
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        self.hash_exe(file, exe, budget)
    }

    /// Digests of `file`, an open `/proc/PID/exe`, as the executable `exe` —
    /// refused if it is another program: a process that executed again between
    /// reading its path and opening its executable (`bash -c` executes its
    /// last command in place) would otherwise have the new program's content
    /// judged under the old program's name, a package mismatch that is not.
    fn hash_exe(
        &mut self,
        file: std::fs::File,
        exe: &str,
        budget: &mut u64,
    ) -> Result<Digests, String> {
        use std::os::fd::AsRawFd;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Deleted since (a dropper that removes itself): still the same file.
        let bare = |p: &str| p.strip_suffix(" (deleted)").unwrap_or(p).to_owned();
        if bare(&opened) != bare(exe) {
            return Err("a process executed another program while its executable was read".into());
        }
        self.hash_file(file, budget)
    }

    /// Digests of an open executable, cached by device, inode, mtime and size.
    fn hash_file(&mut self, file: std::fs::File, budget: &mut u64) -> Result<Digests, String> {
        let meta = file.metadata().map_err(|e| e.to_string())?;
        let key = (meta.dev(), meta.ino(), meta.mtime(), meta.size());
        if let Some(h) = self.cache.get(&key) {
            return Ok(h.clone());
        }
        if meta.size() > self.config.max_hash_bytes {
            return Err(format!("larger than {} bytes", self.config.max_hash_bytes));
        }
        if *budget < meta.size() {
            return Err("hashing budget of this sweep spent".into());
        }
        *budget -= meta.size();
        let file = digests_reader(file).map_err(|e| e.to_string())?;
        let digest = Digests {
            sha256: bannin_proto::hex(file.sha256),
            file,
        };
        if self.cache.len() >= MAX_CACHE {
            self.cache.clear();
        }
        self.cache.insert(key, digest.clone());
        Ok(digest)
    }

    /// Reports one new process: IOC match, suspicious location, unknown
    /// binary, and its exec telemetry.
    fn judge(
        &mut self,
        info: &ProcInfo,
        hashed: Result<Digests, String>,
        captured: Option<&Captured>,
        learning: bool,
        unhashed: &mut BTreeSet<String>,
        sweep: &mut Sweep,
    ) {
        let pid = info.pid;
        let mut a = self.describe(info, captured);
        match &hashed {
            Ok(d) => {
                a.insert("sha256".into(), d.sha256.clone());
            }
            Err(why) => {
                unhashed.insert(why.clone());
            }
        }
        let who = format!("{} (pid {pid}, user {})", info.exe, a["user"]);
        // What the package manager says of this executable: installed and intact
        // (known), installed and changed (an indicator), or not its business.
        let mut packaged_intact = false;
        let packages = self.packages.clone();
        let guard = packages.lock();
        if let (Ok(d), Some(index)) = (&hashed, guard.as_ref())
            && let Some(p) = index.lookup(&info.exe)
        {
            a.insert(
                "package".into(),
                format!("{} {}", p.package.name, p.package.version),
            );
            if p.matches(&d.file) {
                packaged_intact = true;
            } else if !p.conffile {
                // (A configuration file the administrator edited is theirs.)
                let mut b = a.clone();
                b.insert("path".into(), info.exe.clone());
                let algo = p.package.algo;
                b.insert(format!("actual_{}", algo.name()), d.file.hex(algo));
                b.insert(
                    format!("package_{}", algo.name()),
                    index.recorded(&self.root, &p).unwrap_or_default(),
                );
                b.insert("running".into(), "true".into());
                b.insert("reason".into(), "content differs from its package".into());
                b.insert("attack.technique".into(), "T1554".into());
                sweep.events.push(event(
                    "file.package_mismatch",
                    Severity::Critical,
                    true,
                    b,
                    format!(
                        "running executable no longer matches its package {} {}: {who}",
                        p.package.name, p.package.version
                    ),
                ));
            }
        }
        if let Ok(Digests { sha256: sha, .. }) = &hashed
            && self.ioc.contains(sha)
        {
            sweep.events.push(event(
                "process.ioc_match",
                Severity::Critical,
                true,
                a.clone(),
                format!("known-bad executable running: {who}, sha256 {sha}"),
            ));
        }
        let own = self.own_pid == Some(pid)
            || self.own.as_ref().is_some_and(|(path, id)| {
                // The agent's own path, as the agent sees it (not under `root`).
                *path == info.exe && file_id(Path::new(path)) == Some(*id)
            });
        if let Some(why) = self.suspicious(&info.exe).filter(|_| !own) {
            let mut b = a.clone();
            b.insert("reason".into(), why.into());
            sweep.events.push(event(
                "process.suspicious_exec",
                Severity::High,
                true,
                b,
                match why {
                    "deleted_executable" => {
                        format!("process running a deleted executable: {who}")
                    }
                    _ => format!("process running from a suspicious directory: {who}"),
                },
            ));
        }
        // Once per process: `nc -e` is on its socket at its own exec and again
        // at the shell's, in the same process.
        let already = self.reverse_shells.contains(&(pid, info.start_ticks));
        let reverse = if already {
            None
        } else {
            self.reverse_shell(info, &who)
        };
        // A reverse shell is the finding; that its parent also serves is beside the point.
        let service = (!already && reverse.is_none())
            .then(|| self.service_shell(info, &who))
            .flatten();
        if let Some(shell) = reverse {
            self.reverse_shells.insert((pid, info.start_ticks));
            let mut b = a.clone();
            b.extend(shell.attributes.clone());
            sweep.events.push(event(
                "process.reverse_shell",
                Severity::Critical,
                true,
                b,
                shell.summary,
            ));
        }
        if let Some((attributes, summary)) = service {
            let mut b = a.clone();
            b.extend(attributes);
            sweep.events.push(event(
                "process.service_shell",
                Severity::High,
                true,
                b,
                summary,
            ));
        }
        if let Ok(Digests { sha256: sha, .. }) = &hashed {
            // A packaged file, intact or not, is the package database's to judge
            // (a mismatch was reported above), never a learned guess.
            let known = packaged_intact
                || a.contains_key("package")
                || self
                    .baseline
                    .as_ref()
                    .is_some_and(|(_, set)| set.contains(sha));
            if !learning && !known && !own && !self.allowed(&info.exe, sha) {
                sweep.events.push(event(
                    "process.unknown_binary",
                    Severity::Medium,
                    true,
                    a.clone(),
                    format!("executable not seen on this host before: {who}, sha256 {sha}"),
                ));
            }
            self.learn(sha);
        }
        if self.config.exec_telemetry {
            sweep.events.push(event(
                "process.exec",
                Severity::Info,
                false,
                a,
                format!("process {} (pid {pid}): {}", info.comm, info.cmdline),
            ));
        }
    }

    /// A shell that was not on a socket at its exec but is now (`dup2` of a
    /// connected socket onto its standard streams while it runs), checked at
    /// every walk for each running shell or interpreter not yet reported.
    fn recheck_shell(&mut self, pid: u32, start: u64, exe: &str, sweep: &mut Sweep) {
        if self.reverse_shells.contains(&(pid, start))
            || !is_shell_like(exe, "")
            || crate::host::proc::std_sockets(&self.root, pid)
                .iter()
                .all(Option::is_none)
        {
            return;
        }
        let Some(info) = self.read(pid).filter(|i| i.start_ticks == start) else {
            return;
        };
        let a = self.describe(&info, None);
        let who = format!("{} (pid {pid}, user {})", info.exe, a["user"]);
        if let Some(shell) = self.reverse_shell(&info, &who) {
            let mut b = a;
            b.extend(shell.attributes);
            b.insert("when".into(), "running".into());
            self.reverse_shells.insert((pid, start));
            sweep.events.push(event(
                "process.reverse_shell",
                Severity::Critical,
                true,
                b,
                format!("{} (after it started)", shell.summary),
            ));
        }
    }

    /// The attributes every event of a process carries: who it is, its user,
    /// its parent (as it was at the exec where the kernel said, else as it
    /// is now).
    fn describe(
        &mut self,
        info: &ProcInfo,
        captured: Option<&Captured>,
    ) -> BTreeMap<String, String> {
        let pid = info.pid;
        let mut a = BTreeMap::from([
            ("pid".to_owned(), pid.to_string()),
            ("ppid".to_owned(), info.ppid.to_string()),
            ("comm".to_owned(), info.comm.clone()),
            ("exe".to_owned(), info.exe.clone()),
            ("cmdline".to_owned(), info.cmdline.clone()),
            ("uid".to_owned(), info.uid.to_string()),
            ("user".to_owned(), self.user_name(info.uid)),
            ("start_ticks".to_owned(), info.start_ticks.to_string()),
        ]);
        let aliases = self.users.aliases(info.uid);
        if !aliases.is_empty() {
            a.insert("user_aliases".into(), aliases);
        }
        if !info.cwd.is_empty() {
            a.insert("cwd".into(), info.cwd.clone());
        }
        // The parent as it was at the exec (eBPF), else as it is now.
        let parent = match captured.and_then(|c| c.parent.clone()) {
            Some(p) => Some(p),
            None => self.read(info.ppid).map(|p| Parent {
                exe: p.exe,
                cmdline: p.cmdline,
                comm: p.comm,
            }),
        };
        if let Some(parent) = parent {
            a.insert("parent_exe".into(), parent.exe);
            a.insert("parent_cmdline".into(), parent.cmdline);
            if !parent.comm.is_empty() {
                a.insert("parent_comm".into(), parent.comm);
            }
        }
        if let Some(c) = captured {
            if c.argv_cut {
                a.insert("cmdline_truncated".into(), "true".into());
            }
            if !c.cgroup.is_empty() {
                a.insert("cgroup".into(), c.cgroup.clone());
            }
            // A short-lived process: how it ended is part of its record.
            if let Some(x) = c.exited {
                a.insert("exit".into(), x.describe());
                a.insert("lived_ms".into(), x.lived_ms.to_string());
            }
        }
        a
    }

    /// An interactive shell started by a network service: a process that
    /// listens on a TCP port (a web server, an application server) running
    /// `sh -i`, or a bare shell reading commands from what the service hands
    /// it — a web shell's upgrade to a command line (T1505.003). `sh -c
    /// CMD` (a service running one command) and a script are not interactive;
    /// the login services (sshd, dropbear, systemd's socket activation) are
    /// how shells are meant to start.
    fn service_shell(
        &self,
        info: &ProcInfo,
        who: &str,
    ) -> Option<(BTreeMap<String, String>, String)> {
        const LOGIN_SERVICES: &[&str] = &["sshd", "sshd-session", "dropbear", "systemd", "init"];
        if info.ppid <= 1 || !is_interactive_shell(&info.exe, &info.cmdline) {
            return None;
        }
        let parent = self.read(info.ppid)?;
        let name = parent.exe.rsplit('/').next().unwrap_or_default();
        if LOGIN_SERVICES.contains(&name) {
            return None;
        }
        let ports = crate::host::net::listening_ports(&self.root, info.ppid, 4096);
        let first = *ports.first()?;
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Some((
            BTreeMap::from([
                ("service_pid".to_owned(), info.ppid.to_string()),
                ("service_exe".to_owned(), parent.exe.clone()),
                ("service_ports".to_owned(), ports),
                ("attack.technique".to_owned(), "T1505.003".to_owned()),
            ]),
            format!(
                "interactive shell started by a network service: {who}, child of {} (pid {}) listening on TCP port {first}",
                parent.exe, info.ppid
            ),
        ))
    }

    /// A shell or interpreter whose standard streams are a network
    /// connection: whoever is at the other end has its command line
    /// (`bash -i >& /dev/tcp/…`, a python or perl one-liner that `dup2`s a
    /// socket, `nc -e`, a bind shell). Only TCP connections and connected UDP count: a
    /// listening socket (socket activation) or a unix socket (journald's
    /// stream, an ssh session's socketpair) is no one's command line.
    fn reverse_shell(&self, info: &ProcInfo, who: &str) -> Option<ShellFinding> {
        if info.std_sockets.iter().all(Option::is_none) || !is_shell_like(&info.exe, &info.comm) {
            return None;
        }
        let mut streams = Vec::new();
        let mut peer = None;
        for (n, inode) in info.std_sockets.iter().enumerate() {
            let Some(socket) = inode.and_then(|i| inet_socket(&self.root, info.pid, i)) else {
                continue;
            };
            let connected = match socket.protocol {
                "tcp" | "tcp6" => socket.state == 0x01,
                _ => socket.remote.1 != 0,
            };
            if connected {
                streams.push(["stdin", "stdout", "stderr"][n]);
                peer.get_or_insert(socket);
            }
        }
        let socket = peer?;
        let remote = socket.remote.0.to_canonical();
        let attributes = BTreeMap::from([
            ("remote_address".to_owned(), remote.to_string()),
            ("remote_port".to_owned(), socket.remote.1.to_string()),
            (
                "local_address".to_owned(),
                socket.local.0.to_canonical().to_string(),
            ),
            ("local_port".to_owned(), socket.local.1.to_string()),
            ("protocol".to_owned(), socket.protocol.to_owned()),
            ("streams".to_owned(), streams.join(",")),
            ("attack.technique".to_owned(), "T1059.004".to_owned()),
        ]);
        Some(ShellFinding {
            attributes,
            summary: format!(
                "reverse shell: {who} has its {} connected to {remote} port {}",
                streams.join(", "),
                socket.remote.1
            ),
        })
    }

    fn allowed(&self, exe: &str, sha: &str) -> bool {
        self.config
            .allow
            .iter()
            .any(|a| a.eq_ignore_ascii_case(sha) || a == exe)
    }

    fn suspicious(&self, exe: &str) -> Option<&'static str> {
        if exe.ends_with(" (deleted)") {
            return Some("deleted_executable");
        }
        let path = Path::new(exe);
        self.config
            .suspicious_dirs
            .iter()
            .any(|d| path.starts_with(d))
            .then_some("suspicious_directory")
    }

    fn learn(&mut self, sha: &str) {
        if let Some((order, set)) = &mut self.baseline
            && set.insert(sha.to_owned())
        {
            order.push(sha.to_owned());
            if order.len() > MAX_BASELINE {
                let old = order.remove(0);
                set.remove(&old);
            }
        }
    }
}

/// SHA-256 values of an IOC list: one per line, `#` comments and anything
/// after the hash on the line (a name, as `sha256sum` prints) ignored.
pub fn parse_ioc(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .collect()
}

impl Processes {
    /// Walks `/proc`: reads and judges every process not seen as it is now at
    /// the last walk (all of them when learning). `trusted`: the connector
    /// judged every exec since, so a pid already seen is taken as it was.
    /// Returns how many processes had no readable executable.
    fn walk(
        &mut self,
        trusted: bool,
        learning: bool,
        budget: &mut u64,
        unhashed: &mut BTreeSet<String>,
        sweep: &mut Sweep,
    ) -> Result<usize, SensorError> {
        let proc_dir = self.root.join("/proc");
        let entries = std::fs::read_dir(&proc_dir).map_err(|source| SensorError::Read {
            path: proc_dir.clone(),
            source,
        })?;
        let mut now = HashMap::with_capacity(self.seen.len() + 16);
        let mut unreadable = 0usize;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let dir = self.root.join(format!("/proc/{pid}"));
            // The connector judged every exec: a known pid whose executable
            // still reads the same (not replaced, not deleted) needs nothing more.
            // (Kernel threads have no link and were seen without one.)
            if trusted && let Some((start, exe)) = self.seen.get(&pid) {
                let link = std::fs::read_link(dir.join("exe"));
                let same = match &link {
                    Ok(p) => p.as_os_str().as_encoded_bytes() == exe.as_bytes(),
                    Err(_) => exe.is_empty(),
                };
                if same {
                    let (start, exe) = (*start, exe.clone());
                    self.recheck_shell(pid, start, &exe, sweep);
                    now.insert(pid, (start, exe));
                    continue;
                }
            }
            let Some((_, _, start)) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            else {
                continue;
            };
            let exe = std::fs::read_link(dir.join("exe"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let unchanged = self
                .seen
                .get(&pid)
                .is_some_and(|(s, e)| *s == start && *e == exe);
            if unchanged {
                self.recheck_shell(pid, start, &exe, sweep);
                now.insert(pid, (start, exe));
                continue;
            }
            now.insert(pid, (start, exe));
            let Some(info) = self.read(pid) else { continue };
            // Kernel threads have no executable.
            if info.exe.is_empty() {
                if info.ppid != 2 && pid != 2 {
                    unreadable += 1;
                }
                continue;
            }
            let hashed = self.hash(pid, &info.exe, budget);
            self.judge(&info, hashed, None, learning, unhashed, sweep);
        }
        self.reverse_shells
            .retain(|(pid, start)| now.get(pid).is_some_and(|(s, _)| s == start));
        self.seen = now;
        Ok(unreadable)
    }
}

impl Sensor for Processes {
    fn name(&self) -> &'static str {
        "process"
    }

    fn relearn(&mut self) {
        self.baseline = None;
        self.seen.clear();
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn waker(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.events.as_ref().map(|_| self.wake.clone())
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let mut problems: Vec<String> = self.refresh_ioc().into_iter().collect();
        self.packages.refresh(&self.root);
        if let Some(why) = self
            .packages
            .lock()
            .as_ref()
            .and_then(PackageIndex::problem)
        {
            problems.push(why.to_owned());
        }
        let learning = self.baseline.is_none();
        if learning {
            self.baseline = Some((Vec::new(), HashSet::new()));
        }
        let baseline_before = self.baseline.as_ref().map(|(o, _)| o.len());
        let mut budget = HASH_BUDGET_PER_SWEEP;
        let mut unreadable = 0usize;
        let mut unhashed = BTreeSet::new();
        // First what the kernel reported as it happened: short-lived processes
        // are gone from /proc by now, but were resolved when they started.
        let (execs, mut exits, lost, gone, failed) = match &self.events {
            Some(q) => {
                let mut q = bannin_proto::lock(q);
                (
                    q.execs.drain(..).collect::<Vec<_>>(),
                    std::mem::take(&mut q.exits),
                    std::mem::take(&mut q.lost),
                    std::mem::take(&mut q.gone),
                    q.failed.clone(),
                )
            }
            None => (Vec::new(), HashMap::new(), 0, 0, None),
        };
        // A process that execs again keeps its pid and start: how it ended
        // belongs to the last program it ran.
        let last: HashMap<(u32, u64), usize> = execs
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.info.pid, e.info.start_ticks), i))
            .collect();
        for (i, exec) in execs.into_iter().enumerate() {
            let info = exec.info;
            // Every eBPF record is an exec of its own (`exec bash -i >& …`
            // runs bash again in the same process, now on a socket); the
            // connector's may repeat what a walk already judged.
            if info.exe.is_empty()
                || (!exec.verified
                    && self
                        .seen
                        .get(&info.pid)
                        .is_some_and(|(s, e)| *s == info.start_ticks && *e == info.exe))
            {
                continue;
            }
            let hashed = match exec.exe_file {
                // The very file the kernel ran, however it is named now (a
                // dropper deletes itself at once).
                Some(f) if exec.verified => self.hash_file(f, &mut budget),
                Some(f) => self.hash_exe(f, &info.exe, &mut budget),
                None => Err("exited before its executable could be opened".into()),
            };
            let captured = Captured {
                parent: exec.parent,
                argv_cut: exec.argv_cut,
                cgroup: exec.cgroup,
                exited: (last.get(&(info.pid, info.start_ticks)) == Some(&i))
                    .then(|| exits.remove(&(info.pid, info.start_ticks)))
                    .flatten(),
            };
            self.judge(
                &info,
                hashed,
                Some(&captured),
                learning,
                &mut unhashed,
                sweep,
            );
            self.seen
                .insert(info.pid, (info.start_ticks, info.exe.clone()));
        }
        if lost > 0 {
            problems.push(format!(
                "{lost} exec events lost (queue or kernel buffer full)"
            ));
        }
        self.losses.add(lost + gone);
        sweep.events.extend(self.losses.due(
            "process",
            "execs",
            if gone > 0 {
                "exited before the process events connector's reader could read them, or a full buffer"
            } else {
                "the kernel's ring buffer or the agent's queue was full"
            },
        ));
        if gone > 0 {
            problems.push(format!(
                "{gone} execs exited before the connector's reader could read them"
            ));
        }
        if let Some(why) = &failed {
            problems.push(format!("{why}; polling /proc only"));
        } else if let Some(misses) = self.exec_path.misses() {
            problems.push(misses);
        }
        // Woken by the connector sooner than an interval after the last walk:
        // the queued execs were all there was to judge.
        let due = self.events.is_none()
            || self
                .last_walk
                .is_none_or(|t| t.elapsed() + super::WAKE_DEBOUNCE >= self.config.common.interval);
        if learning || due || lost > 0 || failed.is_some() {
            self.walks = self.walks.wrapping_add(1);
            // With the connector listening and nothing lost, every exec was
            // judged as it happened: a known pid needs only its executable's
            // link read (a deleted or replaced file still shows at once), a new
            // one everything. Every tenth walk re-reads them all anyway.
            let trusted = self.events.is_some()
                && failed.is_none()
                && lost == 0
                && !learning
                && !self.walks.is_multiple_of(10);
            unreadable = self.walk(trusted, learning, &mut budget, &mut unhashed, sweep)?;
            self.last_walk = Some(std::time::Instant::now());
        }
        if self.baseline.as_ref().map(|(o, _)| o.len()) != baseline_before || learning {
            let state = ProcessState {
                baseline: self
                    .baseline
                    .as_ref()
                    .map(|(o, _)| o.clone())
                    .unwrap_or_default(),
            };
            sweep.save_state(&state);
        }
        if !running_as_root() {
            problems.push(
                "not running as root: other users' processes show no executable and are not hashed"
                    .into(),
            );
        } else if unreadable > 0 {
            problems.push(format!(
                "{unreadable} process(es) had no readable executable (exited, or another mount namespace)"
            ));
        }
        if let Some(why) = unhashed.into_iter().find(|w| w.contains("budget")) {
            problems.push(why);
        }
        const EBPF: &str = "execs from eBPF (raw tracepoints): every exec and fork as it happens, every drop counted";
        if self.exec_path == ExecPath::Ebpf && !problems.is_empty() {
            // Which path runs, even when something else degrades the sensor.
            problems.push(EBPF.into());
        }
        Ok(match (&self.exec_path, problems.is_empty()) {
            (ExecPath::Ebpf, true) => Health::Working(EBPF.into()),
            (ExecPath::Off, true) => {
                Health::Working("exec events off in config: polling /proc only".into())
            }
            (_, true) => Health::Ok,
            (_, false) => Health::Degraded(problems.join("; ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactive_shells_are_told_from_commands_and_scripts() {
        for (exe, cmdline) in [
            ("/bin/sh", "sh -i"),
            ("/usr/bin/bash", "bash"),
            ("/usr/bin/bash", "-bash"),
            ("/usr/bin/bash", "bash --norc -li"),
            ("/bin/dash", "sh -s"),
            ("/bin/sh", "sh --"),
        ] {
            assert!(is_interactive_shell(exe, cmdline), "{cmdline}");
        }
        for (exe, cmdline) in [
            ("/bin/sh", "sh -c id"),
            ("/bin/sh", "sh -ec true"),
            ("/usr/bin/bash", "bash /opt/deploy.sh"),
            ("/bin/sh", "sh -- script.sh"),
            ("/usr/bin/python3", "python3 -i"),
            ("/usr/bin/make", "make"),
        ] {
            assert!(!is_interactive_shell(exe, cmdline), "{cmdline}");
        }
    }
    use std::path::PathBuf;

    /// A fake `/proc/PID` whose `exe` links to `exe`.
    /// A sweep's indicators as (kind, pid), sorted.
    fn indicators(sweep: &Sweep) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = sweep
            .events
            .iter()
            .filter(|e| e.indicator)
            .map(|e| (e.kind.clone(), e.attributes["pid"].clone()))
            .collect();
        found.sort();
        found
    }

    fn fixture_process(root: &Path, pid: u32, ppid: u32, exe: &Path, comm: &str) -> PathBuf {
        let dir = root.join(format!("proc/{pid}"));
        std::fs::create_dir_all(&dir).expect("proc dir");
        std::fs::write(
            dir.join("stat"),
            format!(
                "{pid} ({comm}) S {ppid} 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0",
                1000 + pid
            ),
        )
        .expect("stat");
        std::fs::write(
            dir.join("status"),
            "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n",
        )
        .expect("status");
        std::fs::write(dir.join("cmdline"), format!("{comm}\0--flag\0")).expect("cmdline");
        std::os::unix::fs::symlink(exe, dir.join("exe")).expect("exe link");
        dir
    }

    #[test]
    fn the_agents_own_executable_is_not_judged_but_a_copy_elsewhere_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let tmp = root.join("tmp-checkout");
        std::fs::create_dir_all(&tmp).expect("dir");
        std::fs::write(tmp.join("bannin"), b"the agent").expect("own");
        std::fs::write(tmp.join("copy"), b"the agent").expect("copy");
        std::fs::write(tmp.join("other"), b"another program").expect("other");
        let mut config = config(root);
        config.suspicious_dirs = vec![tmp.clone()];
        let mut sensor = Processes::new(HostRoot(root.into()), config, None);
        let own = tmp.join("bannin");
        sensor.own = Some((own.display().to_string(), file_id(&own).expect("id")));
        // `bannin up` itself, then its CLI, a copy of it elsewhere, another program.
        fixture_process(root, 100, 1, &tmp.join("bannin"), "bannin");
        let mut first = Sweep::default();
        sensor.sweep(&mut first).expect("sweep");
        assert!(
            first.events.iter().all(|e| !e.indicator),
            "{:?}",
            first.events
        );
        fixture_process(root, 200, 1, &tmp.join("bannin"), "bannin");
        fixture_process(root, 300, 1, &tmp.join("copy"), "copy");
        fixture_process(root, 400, 1, &tmp.join("other"), "other");
        let mut second = Sweep::default();
        sensor.sweep(&mut second).expect("sweep");
        let found = indicators(&second);
        assert_eq!(
            found,
            [
                ("process.suspicious_exec".into(), "300".into()),
                ("process.suspicious_exec".into(), "400".into()),
                ("process.unknown_binary".into(), "400".into()),
            ]
        );
        // Another file put at the agent's path is judged as any program is.
        std::fs::remove_file(tmp.join("bannin")).expect("rm");
        std::fs::write(tmp.join("bannin"), b"a replacement").expect("replaced");
        fixture_process(root, 500, 1, &tmp.join("bannin"), "bannin");
        let mut third = Sweep::default();
        sensor.sweep(&mut third).expect("sweep");
        assert!(
            third
                .events
                .iter()
                .any(|e| e.kind == "process.suspicious_exec" && e.attributes["pid"] == "500"),
            "{:?}",
            third.events
        );
        // The agent's own process, its binary replaced since it started (a
        // rebuild, an upgrade before the restart): never judged; another
        // process running a deleted file still is.
        sensor.own_pid = Some(600);
        let gone = tmp.join("bannin (deleted)");
        fixture_process(root, 600, 1, &gone, "bannin");
        fixture_process(root, 700, 1, &gone, "bannin");
        let mut fourth = Sweep::default();
        sensor.sweep(&mut fourth).expect("sweep");
        assert_eq!(
            indicators(&fourth),
            [("process.suspicious_exec".into(), "700".into())],
            "{:?}",
            fourth.events
        );
    }

    #[test]
    fn stat_with_a_hostile_comm_parses() {
        let stat = "42 (evil) S 1 (x) S 7 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0";
        assert_eq!(parse_stat(stat), Some(("evil) S 1 (x".into(), 7, 555)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn an_executable_opened_after_another_exec_is_not_judged_under_the_old_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("ioc.txt"), "").expect("ioc");
        let mut sensor = Processes::new(HostRoot(root.into()), config(root), None);
        let mut budget = u64::MAX;
        // What the process runs now is not the program its path was read as:
        // no digest, so no package verdict.
        let now_running = root.join("sleep");
        std::fs::write(&now_running, b"the program executed since").expect("write");
        let opened = std::fs::File::open(&now_running).expect("open");
        let refused = sensor.hash_exe(opened, "/usr/bin/bash", &mut budget);
        assert!(refused.is_err(), "{refused:?}");
        let path = std::fs::canonicalize(&now_running).expect("path");
        let opened = std::fs::File::open(&now_running).expect("open");
        let hashed = sensor.hash_exe(opened, &path.to_string_lossy(), &mut budget);
        assert!(hashed.is_ok(), "{hashed:?}");
    }

    #[test]
    fn ioc_lists_take_sha256sum_output_and_comments() {
        let h = "a".repeat(64);
        let list = parse_ioc(&format!("# bad\n{h}  /tmp/x\nnothex\n{}\n", "B".repeat(64)));
        assert!(list.contains(&h) && list.contains(&"b".repeat(64)));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn packaged_executables_are_known_and_changed_ones_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::write(bin.join("first"), b"first binary").expect("first");
        std::fs::write(bin.join("pkgtool"), b"pkg tool v1").expect("pkgtool");
        std::fs::write(bin.join("pkgchanged"), b"changed: a trojan").expect("trojan");
        std::fs::write(bin.join("unpackaged"), b"built by hand").expect("hand");
        let listed = |name: &str| bin.join(name).display().to_string();
        crate::host::packages::write_fixture(
            root,
            &[(
                "tools",
                "1.2-3",
                &[
                    (listed("pkgtool").as_str(), b"pkg tool v1".as_slice()),
                    (listed("pkgchanged").as_str(), b"changed v1".as_slice()),
                ],
            )],
        );
        std::fs::write(root.join("ioc.txt"), "").expect("ioc");
        fixture_process(root, 100, 1, &bin.join("first"), "first");
        let mut sensor = Processes::new(HostRoot(root.into()), config(root), None);
        sensor.sweep(&mut Sweep::default()).expect("learn");
        fixture_process(root, 600, 100, &bin.join("pkgtool"), "pkgtool");
        fixture_process(root, 700, 100, &bin.join("pkgchanged"), "pkgchanged");
        fixture_process(root, 800, 100, &bin.join("unpackaged"), "unpackaged");
        let mut sweep = Sweep::default();
        sensor.sweep(&mut sweep).expect("sweep");
        let found = indicators(&sweep);
        assert_eq!(
            found,
            [
                ("file.package_mismatch".into(), "700".into()),
                ("process.unknown_binary".into(), "800".into()),
            ],
            "an intact packaged tool is known; a changed one is a mismatch, not merely unknown"
        );
        let mismatch = sweep
            .events
            .iter()
            .find(|e| e.kind == "file.package_mismatch")
            .expect("mismatch");
        assert_eq!(mismatch.severity, Severity::Critical as i32);
        assert_eq!(mismatch.attributes["package"], "tools 1.2-3");
        let md5 = |b: &[u8]| {
            use md5::Digest;
            bannin_proto::hex(md5::Md5::digest(b))
        };
        assert_eq!(mismatch.attributes["package_md5"], md5(b"changed v1"));
        assert_eq!(mismatch.attributes["actual_md5"], md5(b"changed: a trojan"));
        assert!(mismatch.attributes.contains_key("sha256"));
        let exec = sweep
            .events
            .iter()
            .find(|e| e.kind == "process.exec" && e.attributes["pid"] == "600")
            .expect("exec telemetry");
        assert_eq!(exec.attributes["package"], "tools 1.2-3");
    }

    fn config(root: &Path) -> ProcessConfig {
        ProcessConfig {
            common: crate::config::SensorCommon {
                enabled: true,
                interval: Duration::from_secs(1),
                severity: Severity::Medium,
            },
            // Not /tmp: the fixture itself lives there.
            suspicious_dirs: vec![PathBuf::from("/dev/shm")],
            allow: Vec::new(),
            ioc_hashes: Some(root.join("ioc.txt")),
            max_hash_bytes: 1 << 20,
            exec_telemetry: true,
            exec_events: false,
            exec_source: ExecSource::Auto,
        }
    }

    #[test]
    fn baseline_then_unknown_suspicious_and_ioc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::write(bin.join("known"), b"known binary").expect("known");
        std::fs::write(bin.join("new"), b"new binary").expect("new");
        std::fs::write(bin.join("bad"), b"bad binary").expect("bad");
        let bad_sha = crate::host::proc::sha256_reader(&b"bad binary"[..]).expect("sha");
        std::fs::write(root.join("ioc.txt"), format!("{bad_sha}  bad\n")).expect("ioc");
        fixture_process(root, 100, 1, &bin.join("known"), "known");
        let mut sensor = Processes::new(HostRoot(root.into()), config(root), None);
        let mut first = Sweep::default();
        sensor.sweep(&mut first).expect("sweep");
        assert!(
            first.events.iter().all(|e| !e.indicator),
            "the baseline is quiet"
        );
        assert_eq!(first.events.len(), 1, "one exec telemetry event");
        assert!(first.state.is_some());

        // Seen processes are not read again.
        let mut quiet = Sweep::default();
        sensor.sweep(&mut quiet).expect("sweep");
        assert!(quiet.events.is_empty());

        fixture_process(root, 200, 100, &bin.join("new"), "new");
        fixture_process(root, 300, 100, &bin.join("bad"), "bad");
        fixture_process(
            root,
            400,
            100,
            Path::new("/var/lib/dropper (deleted)"),
            "dropper",
        );
        fixture_process(root, 500, 100, &bin.join("known"), "known");
        let mut second = Sweep::default();
        sensor.sweep(&mut second).expect("sweep");
        let found = indicators(&second);
        assert_eq!(
            found,
            [
                ("process.ioc_match".into(), "300".into()),
                ("process.suspicious_exec".into(), "400".into()),
                ("process.unknown_binary".into(), "200".into()),
                ("process.unknown_binary".into(), "300".into()),
            ]
        );
        let deleted = second
            .events
            .iter()
            .find(|e| e.kind == "process.suspicious_exec")
            .expect("suspicious");
        assert_eq!(deleted.attributes["reason"], "deleted_executable");
        let exec = second
            .events
            .iter()
            .find(|e| e.kind == "process.exec" && e.attributes["pid"] == "200")
            .expect("exec telemetry");
        assert_eq!(exec.attributes["cmdline"], "new --flag");
        assert_eq!(
            exec.attributes["parent_exe"],
            bin.join("known").display().to_string()
        );

        // A restart keeps the baseline: the same binaries are not unknown again.
        let saved: ProcessState =
            serde_json::from_slice(&second.state.expect("state")).expect("json");
        let mut restarted = Processes::new(HostRoot(root.into()), config(root), Some(saved));
        let mut after = Sweep::default();
        restarted.sweep(&mut after).expect("sweep");
        assert!(
            !after
                .events
                .iter()
                .any(|e| e.kind == "process.unknown_binary"),
            "{:?}",
            after.events
        );
    }

    #[test]
    fn allow_list_silences_unknown_binaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("ioc.txt"), "").expect("ioc");
        std::fs::write(root.join("tool"), b"admin tool").expect("tool");
        let mut c = config(root);
        c.allow = vec![root.join("tool").display().to_string()];
        let mut sensor = Processes::new(HostRoot(root.into()), c, Some(ProcessState::default()));
        fixture_process(root, 10, 1, &root.join("tool"), "tool");
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        assert!(!s.events.iter().any(|e| e.indicator), "{:?}", s.events);
    }

    /// Shells, interpreters of any version and the relays of reverse-shell
    /// one-liners are shell-like; ordinary programs are not.
    #[test]
    fn shells_and_interpreters_are_recognised_by_name() {
        for (exe, comm) in [
            ("/usr/bin/bash", "bash"),
            ("/usr/bin/dash", "sh"),
            ("/usr/bin/python3.11", "python3"),
            ("/usr/bin/perl5.36.0", "perl"),
            ("/usr/bin/nc.openbsd", "nc"),
            ("/tmp/x (deleted)", "socat"),
            ("/usr/bin/busybox", "sh"),
        ] {
            assert!(is_shell_like(exe, comm), "{exe} {comm}");
        }
        for (exe, comm) in [
            ("/usr/sbin/sshd", "sshd"),
            ("/usr/bin/curl", "curl"),
            ("/usr/bin/python-config", "python-config"),
            ("/usr/bin/shred", "shred"),
        ] {
            assert!(!is_shell_like(exe, comm), "{exe} {comm}");
        }
    }
}
