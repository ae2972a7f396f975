//! File integrity: a baseline of critical paths — SHA-256, mode, owner, size,
//! mtime, ctime — and a periodic rescan that reports what changed.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `file.modified` | content changed, or a file appeared or disappeared (`change` = modified, added, removed) | high |
//! | `file.permissions` | mode, owner or group changed | high |
//! | `file.timestamps` | mtime changed while the content did not, or mtime moved backwards while ctime moved on (`timestomp` = true) | medium (timestomping: high) |
//!
//! The baseline of each configured path is a file beside the agent's store
//! holding its records in walk order: directory entries sorted by name, depth
//! first — which is `Path`'s component order. A rescan walks in the same order
//! and merges with the old file as it goes, writing the new one, so memory
//! holds one directory listing and one record, never the baseline: a million
//! files cost what ten do. Only files whose size, inode, mtime or ctime moved
//! are hashed again; hashing is throttled to `hash_rate_mib` MiB/s so a rescan
//! never hogs the disk. A path without a baseline file is learned quietly.
//!
//! The new file replaces the old one at the start of the next sweep, or when the
//! sensor stops — once the sweep's findings are in the spool. After a crash an
//! unconfirmed new file is discarded and its changes are reported again: at
//! least once, never lost. Symlinks are recorded by their target, never
//! followed; other file systems below a path are not entered.
//!
//! **Real time.** `paths` (not `library_paths`) are also watched as they change
//! ([`super::source::changes`]: fanotify, else inotify). A change wakes the
//! sensor, which checks only the changed paths against their baseline (one
//! sequential read of that path's baseline file, stopping past the last changed
//! path) and reports within seconds, naming the process where fanotify says.
//! What a check found is kept in memory (`overlay`) until the next rescan writes
//! it into the baseline, so nothing is reported twice. While a package
//! transaction runs (dpkg's or rpm's lock is held) checks wait for it to end, so
//! half-unpacked packages are never judged; at most [`MAX_DEFER`].
//!
//! **Timestomping.** A file whose mtime moved backwards while its ctime moved
//! on, or a *new* file whose mtime lies more than `timestomp_secs` before its
//! ctime (not a packaged file matching its package: dpkg keeps the package's
//! mtimes), is `file.timestamps` with `timestomp` = true (high, T1070.006).
//!
//! **Packages.** Installed, upgraded and removed packages are one
//! `system.package_change` per look at the package database (the difference of
//! its package lists, kept across restarts as the sensor's state), and the
//! critical files those packages changed as they say they must are folded into
//! it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::sync::{Arc, Mutex};

use super::source::changes::{Actor, Changes};
use super::source::writers::{AccountWriters, Writer};
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::FileIntegrityConfig;
use crate::host::packages::Transaction;

/// The sensor's name.
pub const NAME: &str = "file_integrity";

/// The longest real-time checks wait for a package transaction to end.
pub const MAX_DEFER: Duration = Duration::from_secs(600);
/// Past this many paths checked since the last rescan, the next sweep rescans
/// (which writes them into the baseline and empties the overlay).
const MAX_OVERLAY: usize = 10_000;
/// Most files one real-time check looks at below a changed directory; past
/// it, a rescan.
const MAX_CHECKED: usize = 10_000;

/// What the sensor remembers across restarts (beside its baseline files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityState {
    /// Installed packages and versions at the last look.
    pub packages: Vec<(String, String)>,
}

/// One file as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Size in bytes.
    pub size: u64,
    /// Mode bits (type and permissions).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Inode.
    pub ino: u64,
    /// mtime, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// ctime, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// SHA-256 of the content (regular files), of the target (symlinks); empty if too large.
    pub sha256: Vec<u8>,
}

impl Entry {
    fn from_meta(m: &std::fs::Metadata) -> Self {
        Self {
            size: m.size(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            sha256: Vec::new(),
        }
    }

    /// Whether the content may have changed (so it must be hashed again).
    fn content_may_differ(&self, other: &Entry) -> bool {
        self.size != other.size
            || self.ino != other.ino
            || self.mtime_ns != other.mtime_ns
            || self.ctime_ns != other.ctime_ns
    }
}

/// Counters of one rescan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanStats {
    /// Files looked at.
    pub files: u64,
    /// Files hashed.
    pub hashed: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Directories that could not be read.
    pub unreadable: u64,
}

/// One baseline record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Host path, as bytes.
    path: Vec<u8>,
    entry: Entry,
}

/// Reads a baseline file's records in order; a missing or damaged file ends early.
struct BaselineReader {
    file: Option<std::io::BufReader<std::fs::File>>,
    next: Option<Record>,
}

impl BaselineReader {
    fn open(path: &Path) -> Self {
        let mut r = Self {
            file: std::fs::File::open(path).ok().map(std::io::BufReader::new),
            next: None,
        };
        r.advance();
        r
    }

    fn advance(&mut self) {
        self.next = None;
        let Some(f) = self.file.as_mut() else { return };
        let mut len = [0u8; 4];
        if f.read_exact(&mut len).is_err() {
            self.file = None;
            return;
        }
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        if f.read_exact(&mut buf).is_err() {
            self.file = None;
            return;
        }
        match postcard::from_bytes(&buf) {
            Ok(r) => self.next = Some(r),
            Err(_) => self.file = None,
        }
    }

    fn peek_path(&self) -> Option<&Path> {
        self.next
            .as_ref()
            .map(|r| Path::new(OsStr::from_bytes(&r.path)))
    }

    fn take(&mut self) -> Option<Record> {
        let r = self.next.take();
        self.advance();
        r
    }
}

/// Writes a baseline file.
struct BaselineWriter {
    file: std::io::BufWriter<std::fs::File>,
}

impl BaselineWriter {
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: std::io::BufWriter::new(std::fs::File::create(path)?),
        })
    }

    fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let bytes = postcard::to_stdvec(record).map_err(std::io::Error::other)?;
        let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(&bytes)
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_all()
    }
}

/// Keeps hashing under a byte rate.
struct Throttle {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate_mib: u64) -> Self {
        Self {
            rate: rate_mib * 1024 * 1024,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn account(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// The merge state of one scan of one configured path.
struct Scan<'a> {
    events: &'a mut Vec<bannin_proto::v1::Event>,
    old: BaselineReader,
    new: BaselineWriter,
    learning: bool,
    library_only: bool,
    dev: u64,
    throttle: &'a mut Throttle,
    stats: &'a mut ScanStats,
    /// What real-time checks found since the last rescan (consumed as the walk meets it).
    overlay: &'a mut BTreeMap<PathBuf, Option<Entry>>,
}

/// The sensor.
pub struct FileIntegrity {
    root: HostRoot,
    config: FileIntegrityConfig,
    dir: PathBuf,
    /// New baseline files waiting to replace the old ones: (new, old).
    uncommitted: Vec<(PathBuf, PathBuf)>,
    /// Figures of the last sweep.
    pub last_stats: ScanStats,
    /// The current sweep's stop request (a long scan checks it between files).
    stop: super::StopFlag,
    /// The OS package database (shared with the process sensor).
    packages: crate::host::packages::SharedIndex,
    /// Its generation at the last sweep: a different one means packages were
    /// installed, upgraded or removed since.
    packages_seen: Option<u64>,
    /// Installed packages at the last look (`None` before the first).
    known_packages: Option<Vec<(String, String)>>,
    /// `known_packages` changed: save it with this sweep.
    state_dirty: bool,
    /// Changes the real-time watcher queued (`None`: not watching).
    changes: Option<Arc<Mutex<Changes>>>,
    /// Why real-time watching is off although configured.
    realtime_problem: Option<String>,
    wake: Arc<tokio::sync::Notify>,
    /// Paths real-time checks looked at since the last rescan, as found: the
    /// entry now, or `None` for gone.
    overlay: BTreeMap<PathBuf, Option<Entry>>,
    /// When the last full rescan ran.
    last_full: Option<Instant>,
    /// What the last full rescan could not see.
    scan_problem: Option<String>,
    /// Since when checks wait for a package transaction.
    deferred_since: Option<Instant>,
    /// A check met more than it may look at: rescan.
    force_full: bool,
    /// Where account-tool changes to the account files, and changes to SSH
    /// key files, go instead of `file.modified` (`None`: the accounts sensor
    /// is off, so they stay findings here).
    writers: Option<AccountWriters>,
}

impl FileIntegrity {
    /// A sensor over `config.paths` under `root`, keeping its baselines in `dir`.
    pub fn new(root: HostRoot, config: FileIntegrityConfig, dir: PathBuf) -> Self {
        // A new file left by a crash may be ahead of the spool: discard it, so
        // its changes are reported again rather than lost.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".new") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let wake = Arc::new(tokio::sync::Notify::new());
        let (changes, realtime_problem) = if config.realtime {
            let queue = Arc::new(Mutex::new(Changes::default()));
            let watch = super::source::changes::Watch {
                root: root.clone(),
                paths: config.paths.clone(),
                package_dirs: vec![
                    PathBuf::from("/var/lib/dpkg"),
                    PathBuf::from("/var/lib/rpm"),
                    PathBuf::from("/usr/lib/sysimage/rpm"),
                ],
                one_filesystem: config.one_filesystem,
                max_watches: config.max_watches,
                fanotify: true,
            };
            match super::source::changes::start(watch, queue.clone(), wake.clone()) {
                Ok(()) => (Some(queue), None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        Self {
            root,
            config,
            dir,
            uncommitted: Vec::new(),
            last_stats: ScanStats::default(),
            stop: super::StopFlag::default(),
            packages: crate::host::packages::SharedIndex::default(),
            packages_seen: None,
            known_packages: None,
            state_dirty: false,
            changes,
            realtime_problem,
            wake,
            overlay: BTreeMap::new(),
            last_full: None,
            scan_problem: None,
            deferred_since: None,
            force_full: false,
            writers: None,
        }
    }

    /// Hands account-tool changes of the account files and every change of
    /// an SSH key file to the accounts sensor (through `writers`), which
    /// reports them as account findings, instead of raising them here.
    pub fn with_writers(mut self, writers: AccountWriters) -> Self {
        self.writers = Some(writers);
        self
    }

    /// Hands what the accounts sensor reports to it: account files an
    /// account tool changed (the kernel named the tool), and SSH key files
    /// whatever changed them (the accounts sensor compares their keys). Their
    /// `file.*` events are dropped; the same account files changed by
    /// anything else stay `file.modified`.
    fn fold_account_changes(
        &self,
        events: &mut Vec<bannin_proto::v1::Event>,
        actors: &BTreeMap<PathBuf, Option<Actor>>,
    ) {
        let Some(writers) = &self.writers else { return };
        let mut handed: BTreeMap<PathBuf, Option<Writer>> = BTreeMap::new();
        events.retain(|e| {
            if !matches!(
                e.kind.as_str(),
                "file.modified" | "file.permissions" | "file.timestamps"
            ) || e.attributes.get("timestomp").map(String::as_str) == Some("true")
            {
                return true;
            }
            let Some(path) = e.attributes.get("path").map(PathBuf::from) else {
                return true;
            };
            let writer = actors.get(&path).and_then(Option::as_ref).map(|a| Writer {
                pid: a.pid,
                exe: a.exe.clone(),
                comm: a.comm.clone(),
                uid: String::new(),
            });
            let fold = if writers.is_key_file(&path) {
                true
            } else {
                AccountWriters::is_account_file(&path)
                    && writer.as_ref().is_some_and(|w| w.account_tool().is_some())
            };
            if fold {
                handed.insert(path, writer);
            }
            !fold
        });
        for (path, writer) in handed {
            writers.record(path, writer.unwrap_or_default());
        }
    }

    /// Starts from the state saved by a previous run (the installed packages).
    pub fn with_state(mut self, state: Option<IntegrityState>) -> Self {
        self.known_packages = state.map(|s| s.packages);
        self
    }

    /// Consults `packages` (shared with the other sensors) instead of its own index.
    pub fn with_packages(mut self, packages: crate::host::packages::SharedIndex) -> Self {
        self.packages = packages;
        self
    }

    /// Folds what the package manager did into one `system.package_change`: the
    /// packages installed, upgraded and removed since the last look (the
    /// difference of the database's package lists), with the critical files they
    /// changed as they say they must — a packaged file changed or added whose
    /// content matches its (new) package, and its mode and times with it; a file
    /// removed while the database changed went with its package. A packaged file
    /// whose content does not match its package is `file.package_mismatch` (a
    /// configuration file the administrator edited is not: it stays
    /// `file.modified`). Other changes the kernel says a package manager or its
    /// scripts made (`by_package_manager`: `ldconfig` rewriting
    /// `/etc/ld.so.cache` under dpkg) are named in it too, not raised apart.
    fn fold_package_changes(
        &mut self,
        events: &mut Vec<bannin_proto::v1::Event>,
        by_package_manager: &std::collections::BTreeSet<PathBuf>,
    ) {
        let generation = self.packages.refresh(&self.root);
        let db_changed = self.packages_seen.is_some_and(|g| g != generation);
        self.packages_seen = Some(generation);
        let guard = self.packages.lock();
        let Some(index) = guard.as_ref().filter(|i| !i.is_empty()) else {
            return;
        };
        let mut transaction = Transaction::default();
        let installed = index.installed();
        if self.known_packages.as_deref() != Some(installed) && !installed.is_empty() {
            if let Some(known) = &self.known_packages {
                transaction = Transaction::between(known, installed);
            }
            self.known_packages = Some(installed.to_vec());
            self.state_dirty = true;
        }
        let mut upgraded: BTreeMap<String, u32> = BTreeMap::new();
        let mut removed_with_package = 0u32;
        let mut folded_paths = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(events.len());
        for mut e in events.drain(..) {
            let path = e.attributes.get("path").cloned().unwrap_or_default();
            let change = e.attributes.get("change").cloned().unwrap_or_default();
            if e.kind == "file.modified" && (change == "modified" || change == "added") {
                if let Some(p) = index.lookup(&path) {
                    let real = self.root.join(&path);
                    match crate::host::packages::digest_file(&real) {
                        Ok(digest) if p.matches(&digest) => {
                            *upgraded
                                .entry(format!("{} {}", p.package.name, p.package.version))
                                .or_default() += 1;
                            folded_paths.insert(path);
                            continue;
                        }
                        Ok(digest) if !p.conffile => {
                            let algo = p.package.algo;
                            e.kind = "file.package_mismatch".into();
                            e.attributes.insert(
                                "package".into(),
                                format!("{} {}", p.package.name, p.package.version),
                            );
                            e.attributes
                                .insert(format!("actual_{}", algo.name()), digest.hex(algo));
                            e.attributes.insert(
                                format!("package_{}", algo.name()),
                                index.recorded(&self.root, &p).unwrap_or_default(),
                            );
                            e.attributes.insert("running".into(), "false".into());
                            e.attributes
                                .insert("reason".into(), "content differs from its package".into());
                            e.attributes
                                .insert("attack.technique".into(), "T1554".into());
                            e.summary = format!(
                                "packaged file no longer matches its package {} {}: {path}",
                                p.package.name, p.package.version
                            );
                        }
                        _ => {}
                    }
                }
            } else if e.kind == "file.modified"
                && change == "removed"
                && (db_changed
                    || !transaction.removed.is_empty()
                    || !transaction.upgraded.is_empty())
                && index.lookup(&path).is_none()
            {
                removed_with_package += 1;
                folded_paths.insert(path);
                continue;
            }
            out.push(e);
        }
        // What the package manager's own processes changed besides its files.
        let mut scripted: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        out.retain(|e| {
            let by_packager = matches!(
                e.kind.as_str(),
                "file.modified" | "file.permissions" | "file.timestamps"
            ) && e.attributes.get("path").is_some_and(|p| {
                Path::new(p)
                    .ancestors()
                    .any(|a| by_package_manager.contains(a))
            });
            if by_packager {
                scripted.insert(e.attributes["path"].clone());
            }
            !by_packager
        });
        // The mode and times of an upgraded file change with it.
        out.retain(|e| {
            !(matches!(e.kind.as_str(), "file.permissions" | "file.timestamps")
                && e.attributes
                    .get("path")
                    .is_some_and(|p| folded_paths.contains(p))
                && e.attributes.get("timestomp").map(String::as_str) != Some("true"))
        });
        let files: u32 = upgraded.values().sum::<u32>() + removed_with_package;
        if files > 0 || !transaction.is_empty() || !scripted.is_empty() {
            let by_files: Vec<String> = upgraded
                .iter()
                .map(|(p, n)| format!("{p} ({n} file(s))"))
                .collect();
            let what = if transaction.is_empty() {
                if by_files.is_empty() {
                    "package removal".to_owned()
                } else {
                    by_files.join(", ")
                }
            } else {
                transaction.describe()
            };
            let mut attributes = BTreeMap::from([
                ("packages".to_owned(), what.clone()),
                ("files".to_owned(), files.to_string()),
                (
                    "reason".to_owned(),
                    if transaction.is_empty() {
                        "critical files changed as their packages say they must"
                    } else {
                        "the package database changed"
                    }
                    .to_owned(),
                ),
            ]);
            let list = |v: Vec<String>| v.join(", ");
            if !transaction.installed.is_empty() {
                attributes.insert(
                    "installed".into(),
                    list(
                        transaction
                            .installed
                            .iter()
                            .map(|(n, v)| format!("{n} {v}"))
                            .collect(),
                    ),
                );
            }
            if !transaction.upgraded.is_empty() {
                attributes.insert(
                    "upgraded".into(),
                    list(
                        transaction
                            .upgraded
                            .iter()
                            .map(|(n, a, b)| format!("{n} {a} → {b}"))
                            .collect(),
                    ),
                );
            }
            if !transaction.removed.is_empty() {
                attributes.insert(
                    "removed".into(),
                    list(
                        transaction
                            .removed
                            .iter()
                            .map(|(n, v)| format!("{n} {v}"))
                            .collect(),
                    ),
                );
            }
            if !by_files.is_empty() {
                attributes.insert("changed_files_by_package".into(), by_files.join(", "));
            }
            if removed_with_package > 0 {
                attributes.insert("removed_files".into(), removed_with_package.to_string());
            }
            if !scripted.is_empty() {
                attributes.insert(
                    "changed_by_package_manager".into(),
                    scripted
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                attributes.insert(
                    "changed_by_package_manager_count".into(),
                    scripted.len().to_string(),
                );
            }
            let what = if what == "package removal" && files == 0 {
                "files changed by the package manager".to_owned()
            } else {
                what
            };
            let mut summary = format!("package change: {what}");
            if files > 0 {
                summary.push_str(&format!(" ({files} critical file(s) changed with it)"));
            }
            if !scripted.is_empty() {
                summary.push_str(&format!(
                    "; {} other critical file(s) changed by its scripts",
                    scripted.len()
                ));
            }
            out.push(event(
                "system.package_change",
                Severity::Low,
                true,
                attributes,
                summary,
            ));
        }
        *events = out;
    }

    fn baseline_file(&self, top: &Path, library_only: bool) -> PathBuf {
        let digest = Sha256::digest(top.as_os_str().as_bytes());
        let tag = bannin_proto::hex(&digest[..8]);
        let kind = if library_only { "lib" } else { "all" };
        self.dir.join(format!("{tag}-{kind}.baseline"))
    }

    /// Replaces old baselines with the new ones of the previous sweep.
    fn commit(&mut self) {
        for (new, old) in self.uncommitted.drain(..) {
            if let Err(error) = std::fs::rename(&new, &old) {
                tracing::error!(file = %old.display(), %error, "Cannot commit an integrity baseline");
            }
        }
    }

    fn hash(
        &self,
        real: &Path,
        meta: &std::fs::Metadata,
        throttle: &mut Throttle,
        stats: &mut ScanStats,
    ) -> Vec<u8> {
        if meta.file_type().is_symlink() {
            return std::fs::read_link(real)
                .map(|t| Sha256::digest(t.as_os_str().as_bytes()).to_vec())
                .unwrap_or_default();
        }
        if !meta.is_file() || meta.size() > self.config.max_file_bytes {
            return Vec::new();
        }
        let Ok(mut f) = std::fs::File::open(real) else {
            return Vec::new();
        };
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(_) if self.stop.is_set() => return Vec::new(),
                Ok(n) => {
                    h.update(&buf[..n]);
                    stats.bytes += n as u64;
                    throttle.account(n as u64);
                }
                Err(_) => return Vec::new(),
            }
        }
        stats.hashed += 1;
        h.finalize().to_vec()
    }

    fn wanted(&self, host_path: &Path, library_only: bool) -> bool {
        if !library_only {
            return true;
        }
        let name = host_path
            .file_name()
            .map(OsStr::as_bytes)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(name);
        text.contains(".so")
            || text.ends_with(".ko")
            || text.contains(".ko.")
            || host_path.components().any(|c| c.as_os_str() == "modules")
    }

    /// Reports old records that sort before `upto` (all of them for `None`) as removed.
    fn drain_removed(&self, scan: &mut Scan<'_>, upto: Option<&Path>) {
        while let Some(p) = scan.old.peek_path() {
            if upto.is_some_and(|u| p >= u) {
                break;
            }
            let Some(old) = scan.old.take() else { break };
            let host = PathBuf::from(OsStr::from_bytes(&old.path));
            // A real-time check may have seen it go already, or come back since.
            let entry = match scan.overlay.remove(&host) {
                Some(None) => continue,
                Some(Some(seen)) => seen,
                None => old.entry,
            };
            if !scan.learning {
                scan.events.push(removed_event(&host, &entry));
            }
        }
    }

    /// Walks `dir` (a host path) depth first, entries sorted by name.
    fn walk(&self, dir: &Path, scan: &mut Scan<'_>) -> std::io::Result<()> {
        if self.stop.is_set() {
            return Ok(());
        }
        let mut entries: Vec<(std::ffi::OsString, std::fs::Metadata)> =
            match std::fs::read_dir(self.root.join(dir)) {
                Ok(rd) => rd
                    .flatten()
                    .filter_map(|e| Some((e.file_name(), e.metadata().ok()?)))
                    .collect(),
                Err(_) => {
                    scan.stats.unreadable += 1;
                    return Ok(());
                }
            };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in entries {
            let host = dir.join(&name);
            if meta.is_dir() {
                if meta.dev() == scan.dev || !self.config.one_filesystem {
                    self.walk(&host, scan)?;
                }
                continue;
            }
            if (meta.is_file() || meta.file_type().is_symlink())
                && self.wanted(&host, scan.library_only)
            {
                self.visit(&host, &meta, scan)?;
            }
        }
        Ok(())
    }

    /// Merges one current file with the old baseline and writes its new record.
    fn visit(
        &self,
        host: &Path,
        meta: &std::fs::Metadata,
        scan: &mut Scan<'_>,
    ) -> std::io::Result<()> {
        scan.stats.files += 1;
        self.drain_removed(scan, Some(host));
        let recorded = match scan.old.peek_path() {
            Some(p) if p == host => scan.old.take().map(|r| r.entry),
            _ => None,
        };
        // What a real-time check saw last supersedes the baseline.
        let old = scan.overlay.remove(host).unwrap_or(recorded);
        let real = self.root.join(host);
        let mut now = Entry::from_meta(meta);
        match &old {
            None => {
                now.sha256 = self.hash(&real, meta, scan.throttle, scan.stats);
                if !scan.learning {
                    self.added(host, &now, scan.events);
                }
            }
            Some(old) => {
                now.sha256 = if now.content_may_differ(old) {
                    self.hash(&real, meta, scan.throttle, scan.stats)
                } else {
                    old.sha256.clone()
                };
                if now != *old && !scan.learning {
                    compare(host, old, &now, scan.events);
                }
            }
        }
        scan.new.write(&Record {
            path: host.as_os_str().as_bytes().to_vec(),
            entry: now,
        })
    }

    /// One full scan of every configured path.
    pub fn scan(&mut self, events: &mut Vec<bannin_proto::v1::Event>) -> ScanStats {
        self.commit();
        let mut overlay = std::mem::take(&mut self.overlay);
        let mut throttle = Throttle::new(self.config.hash_rate_mib);
        let mut stats = ScanStats::default();
        if let Err(error) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), %error, "Cannot create the integrity baseline directory");
            stats.unreadable += 1;
            self.overlay = overlay;
            return stats;
        }
        let roots: Vec<(PathBuf, bool)> = self
            .config
            .paths
            .iter()
            .map(|p| (p.clone(), false))
            .chain(self.config.library_paths.iter().map(|p| (p.clone(), true)))
            .collect();
        for (top, library_only) in roots {
            let real = self.root.join(&top);
            let Ok(meta) = std::fs::symlink_metadata(&real) else {
                continue;
            };
            let file = self.baseline_file(&top, library_only);
            let new_file = file.with_extension("baseline.new");
            let new = match BaselineWriter::create(&new_file) {
                Ok(w) => w,
                Err(error) => {
                    tracing::error!(file = %new_file.display(), %error, "Cannot write an integrity baseline");
                    stats.unreadable += 1;
                    continue;
                }
            };
            let mut scan = Scan {
                events: &mut *events,
                old: BaselineReader::open(&file),
                new,
                learning: !file.exists(),
                library_only,
                dev: meta.dev(),
                throttle: &mut throttle,
                stats: &mut stats,
                overlay: &mut overlay,
            };
            let walked = if meta.is_dir() {
                self.walk(&top, &mut scan)
            } else {
                self.visit(&top, &meta, &mut scan)
            };
            if self.stop.is_set() {
                let _ = std::fs::remove_file(&new_file);
                return stats;
            }
            self.drain_removed(&mut scan, None);
            // Seen added by a real-time check, gone before the walk came.
            if !library_only {
                let left: Vec<PathBuf> = scan
                    .overlay
                    .keys()
                    .filter(|p| p.starts_with(&top))
                    .cloned()
                    .collect();
                for p in left {
                    if let Some(Some(entry)) = scan.overlay.remove(&p) {
                        scan.events.push(removed_event(&p, &entry));
                    }
                }
            }
            match walked.and_then(|()| scan.new.finish()) {
                Ok(()) => self.uncommitted.push((new_file, file)),
                Err(error) => {
                    tracing::error!(file = %new_file.display(), %error, "Cannot write an integrity baseline");
                    let _ = std::fs::remove_file(&new_file);
                }
            }
        }
        stats
    }

    /// The findings of a file that is new in a critical path: `file.modified`
    /// (`added`), and `file.timestamps` when its mtime lies far before its
    /// ctime and the package manager did not put it there as it is.
    fn added(&self, host: &Path, now: &Entry, events: &mut Vec<bannin_proto::v1::Event>) {
        events.push(event(
            "file.modified",
            Severity::High,
            true,
            attrs(host, "added", None, Some(now)),
            format!("new file in a critical path: {}", host.display()),
        ));
        let gap_ns = now.ctime_ns - now.mtime_ns;
        let regular = now.mode & 0o170000 == 0o100000;
        if !regular || gap_ns <= self.config.timestomp.as_nanos() as i128 {
            return;
        }
        self.packages.refresh(&self.root);
        let packaged_as_is = self.packages.lock().as_ref().is_some_and(|index| {
            index.lookup(&host.to_string_lossy()).is_some_and(|p| {
                crate::host::packages::digest_file(&self.root.join(host))
                    .is_ok_and(|d| p.matches(&d))
            })
        });
        if packaged_as_is {
            return;
        }
        let mut a = attrs(host, "timestamps", None, Some(now));
        a.insert("timestomp".into(), "true".into());
        a.insert(
            "reason".into(),
            format!(
                "new file whose mtime lies {} before its ctime",
                human_gap(gap_ns)
            ),
        );
        events.push(event(
            "file.timestamps",
            Severity::High,
            true,
            a,
            format!(
                "new file in a critical path with a back-dated mtime ({} before its ctime): {}",
                human_gap(gap_ns),
                host.display()
            ),
        ));
    }

    /// The configured path (not a library path) `path` is under.
    fn top_of(&self, path: &Path) -> Option<&PathBuf> {
        self.config
            .paths
            .iter()
            .filter(|t| path.starts_with(t))
            .max_by_key(|t| t.as_os_str().len())
    }

    /// Collects the files (and symlinks) at or below `host` into `out`.
    fn collect(
        &self,
        host: &Path,
        dev: Option<u64>,
        out: &mut BTreeMap<PathBuf, std::fs::Metadata>,
    ) {
        if out.len() >= MAX_CHECKED {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(self.root.join(host)) else {
            return;
        };
        if meta.is_dir() {
            if self.config.one_filesystem && dev.is_some_and(|d| d != meta.dev()) {
                return;
            }
            let Ok(entries) = std::fs::read_dir(self.root.join(host)) else {
                return;
            };
            for e in entries.flatten() {
                self.collect(&host.join(e.file_name()), dev, out);
            }
        } else if meta.is_file() || meta.file_type().is_symlink() {
            out.insert(host.to_path_buf(), meta);
        }
    }

    /// Checks the paths a real-time event named against their baseline (and what
    /// earlier checks saw), reporting what changed as a rescan would.
    pub fn check_paths<'p>(
        &mut self,
        changed: impl IntoIterator<Item = &'p Path>,
        events: &mut Vec<bannin_proto::v1::Event>,
    ) {
        let mut by_top: BTreeMap<PathBuf, std::collections::BTreeSet<PathBuf>> = BTreeMap::new();
        for p in changed {
            if let Some(top) = self.top_of(p) {
                by_top
                    .entry(top.clone())
                    .or_default()
                    .insert(p.to_path_buf());
            }
        }
        let mut throttle = Throttle::new(self.config.hash_rate_mib);
        let mut stats = ScanStats::default();
        for (top, wanted) in by_top {
            let file = self.baseline_file(&top, false);
            if !file.exists() {
                continue; // still learning: the next rescan learns it
            }
            let covered = |p: &Path| p.ancestors().any(|a| wanted.contains(a));
            let Some(last) = wanted.iter().next_back() else {
                continue;
            };
            // The baseline, in walk order: stop past the last changed path.
            let mut old: BTreeMap<PathBuf, Entry> = BTreeMap::new();
            let mut reader = BaselineReader::open(&file);
            while let Some(r) = reader.take() {
                let path = PathBuf::from(OsStr::from_bytes(&r.path));
                if covered(&path) {
                    old.insert(path, r.entry);
                } else if path > *last && !path.starts_with(last) {
                    break;
                }
            }
            for (p, seen) in self.overlay.iter().filter(|(p, _)| covered(p)) {
                match seen {
                    Some(e) => old.insert(p.clone(), e.clone()),
                    None => old.remove(p),
                };
            }
            let dev = std::fs::metadata(self.root.join(&top))
                .ok()
                .map(|m| m.dev());
            let mut now = BTreeMap::new();
            for w in &wanted {
                self.collect(w, dev, &mut now);
            }
            if now.len() >= MAX_CHECKED {
                self.force_full = true;
            }
            let paths: std::collections::BTreeSet<PathBuf> =
                old.keys().chain(now.keys()).cloned().collect();
            for path in paths {
                match (old.get(&path), now.get(&path)) {
                    (Some(was), None) => {
                        events.push(removed_event(&path, was));
                        self.overlay.insert(path, None);
                    }
                    (was, Some(meta)) => {
                        let mut entry = Entry::from_meta(meta);
                        entry.sha256 = match was {
                            Some(w) if !entry.content_may_differ(w) => w.sha256.clone(),
                            _ => self.hash(&self.root.join(&path), meta, &mut throttle, &mut stats),
                        };
                        match was {
                            None => self.added(&path, &entry, events),
                            Some(w) if *w != entry => compare(&path, w, &entry, events),
                            Some(_) => {}
                        }
                        self.overlay.insert(path, Some(entry));
                    }
                    (None, None) => {}
                }
            }
        }
        if self.overlay.len() > MAX_OVERLAY {
            self.force_full = true;
        }
    }
}

/// `ns` as a person reads it: `3 days`, `5 hours`, `12 minutes`.
fn human_gap(ns: i128) -> String {
    let secs = ns / 1_000_000_000;
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}

/// A file gone from a critical path.
fn removed_event(host: &Path, entry: &Entry) -> bannin_proto::v1::Event {
    event(
        "file.modified",
        Severity::High,
        true,
        attrs(host, "removed", Some(entry), None),
        format!("critical file removed: {}", host.display()),
    )
}

/// Names the process the kernel says made each change, on the findings of its path.
fn attribute(events: &mut [bannin_proto::v1::Event], actors: &BTreeMap<PathBuf, Option<Actor>>) {
    if actors.values().all(Option::is_none) {
        return;
    }
    for e in events.iter_mut() {
        let Some(path) = e.attributes.get("path").map(PathBuf::from) else {
            continue;
        };
        let Some(actor) = path
            .ancestors()
            .find_map(|a| actors.get(a).and_then(Option::as_ref))
        else {
            continue;
        };
        e.attributes.insert("by_pid".into(), actor.pid.to_string());
        if !actor.exe.is_empty() {
            e.attributes.insert("by_exe".into(), actor.exe.clone());
        }
        if !actor.comm.is_empty() {
            e.attributes.insert("by_comm".into(), actor.comm.clone());
        }
        e.summary.push_str(&format!(
            " — by {} (pid {})",
            if actor.comm.is_empty() {
                "?"
            } else {
                &actor.comm
            },
            actor.pid
        ));
    }
}

impl Drop for FileIntegrity {
    /// The last sweep's findings were handed to the spooler before the sensor
    /// is dropped: its baselines may replace the old ones.
    fn drop(&mut self) {
        self.commit();
    }
}

/// The findings of one changed file.
/// The content hash to compare with a recorded one: none where none was recorded
/// (directories, files over the sensor's size limit), a symlink's target, a file's bytes.
fn content_hash(real: &Path, meta: &std::fs::Metadata, recorded: &[u8]) -> Vec<u8> {
    if recorded.is_empty() {
        return Vec::new();
    }
    if meta.file_type().is_symlink() {
        return std::fs::read_link(real)
            .map(|t| Sha256::digest(t.as_os_str().as_bytes()).to_vec())
            .unwrap_or_default();
    }
    let Ok(mut f) = std::fs::File::open(real) else {
        return Vec::new();
    };
    let mut h = Sha256::new();
    match std::io::copy(&mut f, &mut h) {
        Ok(_) => h.finalize().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Most differences [`baseline_differences`] lists.
pub const MAX_DIFFERENCES: usize = 5_000;

/// What changed under the integrity baselines kept in `dir` (the sensor's own
/// directory), read now for a snapshot: every recorded file is looked at again
/// (metadata; content hashed only where size, inode or times moved), and each
/// difference comes out as the sensor would report it (`kind`, `summary`,
/// `attributes`). Files added since the baseline are not seen (that needs the
/// walk the sensor makes), and a baseline not yet committed is the previous one.
/// Blocking; at most [`MAX_DIFFERENCES`] rows, then `truncated`.
pub fn baseline_differences(root: &HostRoot, dir: &Path) -> std::io::Result<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "baseline"))
        .collect();
    files.sort();
    let (mut checked, mut events, mut truncated) = (0u64, Vec::new(), false);
    'files: for file in &files {
        let mut reader = BaselineReader::open(file);
        while let Some(record) = reader.take() {
            checked += 1;
            let host = Path::new(OsStr::from_bytes(&record.path)).to_owned();
            let real = root.join(&host);
            match std::fs::symlink_metadata(&real) {
                Err(_) => events.push(event(
                    "file.modified",
                    Severity::High,
                    true,
                    attrs(&host, "removed", Some(&record.entry), None),
                    format!("critical file removed: {}", host.display()),
                )),
                Ok(meta) => {
                    let mut now = Entry::from_meta(&meta);
                    now.sha256 = if record.entry.content_may_differ(&now) {
                        content_hash(&real, &meta, &record.entry.sha256)
                    } else {
                        record.entry.sha256.clone()
                    };
                    compare(&host, &record.entry, &now, &mut events);
                }
            }
            if events.len() >= MAX_DIFFERENCES {
                truncated = true;
                break 'files;
            }
        }
    }
    let rows: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "kind": e.kind,
                "summary": e.summary,
                "attributes": e.attributes,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "baselines": files.len(),
        "files_checked": checked,
        "differences": rows,
        "truncated": truncated,
        "not_covered": "files added since the baseline (the sensor's walk reports them)",
    }))
}

fn compare(host: &Path, old: &Entry, now: &Entry, events: &mut Vec<bannin_proto::v1::Event>) {
    let content = now.sha256 != old.sha256;
    if content {
        events.push(event(
            "file.modified",
            Severity::High,
            true,
            attrs(host, "modified", Some(old), Some(now)),
            format!("critical file changed: {}", host.display()),
        ));
    }
    if (now.mode, now.uid, now.gid) != (old.mode, old.uid, old.gid) {
        events.push(event(
            "file.permissions",
            Severity::High,
            true,
            attrs(host, "permissions", Some(old), Some(now)),
            format!(
                "permissions of {} changed: {:o} {}:{} → {:o} {}:{}",
                host.display(),
                old.mode & 0o7777,
                old.uid,
                old.gid,
                now.mode & 0o7777,
                now.uid,
                now.gid
            ),
        ));
    }
    let backwards = now.mtime_ns < old.mtime_ns && now.ctime_ns > old.ctime_ns;
    if backwards || (!content && now.mtime_ns != old.mtime_ns) {
        let mut a = attrs(host, "timestamps", Some(old), Some(now));
        a.insert("timestomp".into(), backwards.to_string());
        events.push(event(
            "file.timestamps",
            if backwards {
                Severity::High
            } else {
                Severity::Medium
            },
            true,
            a,
            if backwards {
                format!(
                    "mtime of {} moved backwards while ctime moved on: timestomping",
                    host.display()
                )
            } else {
                format!(
                    "mtime of {} changed without a content change",
                    host.display()
                )
            },
        ));
    }
}

fn attrs(
    host: &Path,
    change: &str,
    old: Option<&Entry>,
    new: Option<&Entry>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("path".to_owned(), crate::host::paths::escape(host)),
        ("change".to_owned(), change.to_owned()),
    ]);
    for (prefix, e) in [("old", old), ("new", new)] {
        if let Some(e) = e {
            a.insert(format!("{prefix}_sha256"), bannin_proto::hex(&e.sha256));
            a.insert(format!("{prefix}_mode"), format!("{:o}", e.mode & 0o7777));
            a.insert(format!("{prefix}_owner"), format!("{}:{}", e.uid, e.gid));
            a.insert(format!("{prefix}_size"), e.size.to_string());
            a.insert(format!("{prefix}_mtime_ns"), e.mtime_ns.to_string());
            a.insert(format!("{prefix}_ctime_ns"), e.ctime_ns.to_string());
        }
    }
    a
}

impl Sensor for FileIntegrity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn relearn(&mut self) {
        // Without baseline files the next scan learns quietly.
        self.uncommitted.clear();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn waker(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.changes.as_ref().map(|_| self.wake.clone())
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        self.stop = sweep.stop.clone();
        // The previous sweep's findings are in the spool: its baselines stand.
        self.commit();
        let (changed, overflowed, package_db, watcher) = match &self.changes {
            Some(q) => {
                let mut q = bannin_proto::lock(q);
                // The kernel names who changes `/etc`: the accounts sensor may
                // wait for it to name an account tool.
                if let Some(w) = &self.writers
                    && q.backend == "fanotify"
                    && q.failed.is_none()
                    && self
                        .config
                        .paths
                        .iter()
                        .any(|p| Path::new("/etc").starts_with(p))
                {
                    w.attribute_accounts();
                }
                let watcher = match (&q.failed, q.unwatched) {
                    (Some(why), _) => Some(format!(
                        "real-time watching stopped ({why}): changes are seen at each rescan only"
                    )),
                    (None, n) if n > 0 => Some(format!(
                        "{n} directories are not watched in real time (max_watches): changes there are seen at each rescan only"
                    )),
                    (None, _) if q.backend.starts_with("inotify") => {
                        Some(format!("real time through {}", q.backend))
                    }
                    _ => None,
                };
                (
                    std::mem::take(&mut q.paths),
                    std::mem::take(&mut q.overflowed),
                    std::mem::take(&mut q.package_db),
                    watcher,
                )
            }
            None => (BTreeMap::new(), false, false, None),
        };
        let full = self.changes.is_none()
            || overflowed
            || self.force_full
            || self
                .last_full
                .is_none_or(|t| t.elapsed() + super::WAKE_DEBOUNCE >= self.config.common.interval);
        let work = full || !changed.is_empty() || package_db;
        // Half-unpacked packages are not judged: wait for the transaction to end.
        if work
            && crate::host::packages::transaction_running(&self.root)
            && self
                .deferred_since
                .get_or_insert_with(Instant::now)
                .elapsed()
                < MAX_DEFER
        {
            if let Some(q) = &self.changes {
                let mut q = bannin_proto::lock(q);
                for (path, actor) in changed {
                    let slot = q.paths.entry(path).or_default();
                    if slot.is_none() {
                        *slot = actor;
                    }
                }
                q.overflowed |= overflowed;
                q.package_db |= package_db;
            }
            std::thread::sleep(Duration::from_millis(500));
            self.wake.notify_one();
            if self.last_full.is_none() {
                // No baseline yet: say so, not "ok".
                return Ok(Health::Learning(
                    "the first baseline waits for a package transaction to end".into(),
                ));
            }
            return Ok(self.health(watcher));
        }
        self.deferred_since = None;
        let started = Instant::now();
        if full {
            let stats = self.scan(&mut sweep.events);
            self.last_stats = stats;
            if self.stop.is_set() {
                // A partial scan keeps no baseline and reports nothing.
                sweep.events.clear();
                return Err(SensorError::Interrupted);
            }
            self.last_full = Some(Instant::now());
            // A rescan hashed and listed thousands of files: what it freed
            // goes back to the system, not kept for the next one an hour away.
            crate::host::memory::return_freed_memory();
            self.force_full = false;
            self.scan_problem = if stats.files == 0 {
                Some("none of the configured paths exists".into())
            } else if stats.unreadable > 0 {
                Some(format!(
                    "{} directories could not be read (not root?)",
                    stats.unreadable
                ))
            } else {
                None
            };
            tracing::debug!(
                files = stats.files,
                hashed = stats.hashed,
                bytes = stats.bytes,
                elapsed.ms = started.elapsed().as_millis() as u64,
                "Integrity rescan done"
            );
        } else if !changed.is_empty() {
            self.check_paths(changed.keys().map(PathBuf::as_path), &mut sweep.events);
            tracing::debug!(
                paths = changed.len(),
                findings = sweep.events.len(),
                elapsed.ms = started.elapsed().as_millis() as u64,
                "Integrity real-time check done"
            );
        }
        let by_package_manager = changed
            .iter()
            .filter(|(_, a)| a.as_ref().is_some_and(|a| a.package_manager.is_some()))
            .map(|(p, _)| p.clone())
            .collect();
        self.fold_package_changes(&mut sweep.events, &by_package_manager);
        self.fold_account_changes(&mut sweep.events, &changed);
        attribute(&mut sweep.events, &changed);
        if std::mem::take(&mut self.state_dirty) {
            sweep.save_state(&IntegrityState {
                packages: self.known_packages.clone().unwrap_or_default(),
            });
        }
        Ok(self.health(watcher))
    }
}

impl FileIntegrity {
    /// The sensor's health: what the last rescan could not see, then what
    /// real-time watching cannot.
    fn health(&self, watcher: Option<String>) -> Health {
        match (
            &self.scan_problem,
            watcher.or_else(|| self.realtime_problem.clone()),
        ) {
            (Some(scan), _) => Health::Degraded(scan.clone()),
            (None, Some(realtime)) => Health::Degraded(realtime),
            (None, None) => Health::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config(paths: Vec<PathBuf>) -> FileIntegrityConfig {
        FileIntegrityConfig {
            common: crate::config::SensorCommon {
                enabled: true,
                interval: Duration::from_secs(1),
                severity: Severity::High,
            },
            paths,
            library_paths: vec![PathBuf::from("/usr/lib")],
            hash_rate_mib: 0,
            max_file_bytes: 1 << 30,
            one_filesystem: true,
            realtime: false,
            max_watches: 100,
            timestomp: Duration::from_secs(86_400),
        }
    }

    fn sweep(sensor: &mut FileIntegrity) -> Sweep {
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        s
    }

    fn kinds(s: &Sweep) -> Vec<(String, String)> {
        let mut k: Vec<(String, String)> = s
            .events
            .iter()
            .map(|e| (e.kind.clone(), e.attributes["path"].clone()))
            .collect();
        k.sort();
        k
    }

    #[test]
    fn account_tools_and_key_files_are_handed_to_the_accounts_sensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tempfile::tempdir().expect("store");
        let writers = AccountWriters::default();
        let sensor = FileIntegrity::new(
            HostRoot(dir.path().into()),
            config(vec![PathBuf::from("/etc")]),
            store.path().into(),
        )
        .with_writers(writers.clone());
        let modified = |path: &str| {
            event(
                "file.modified",
                Severity::High,
                true,
                BTreeMap::from([("path".to_owned(), path.to_owned())]),
                format!("critical file modified: {path}"),
            )
        };
        let actor = |exe: &str| {
            Some(Actor {
                pid: 7,
                exe: exe.into(),
                comm: "x".into(),
                package_manager: None,
            })
        };
        let actors = BTreeMap::from([
            (PathBuf::from("/etc/passwd"), actor("/usr/sbin/useradd")),
            (PathBuf::from("/etc/shadow"), actor("/usr/bin/python3")),
            (PathBuf::from("/etc/group"), None),
            (PathBuf::from("/etc/hosts"), actor("/usr/sbin/useradd")),
            (
                PathBuf::from("/etc/ssh/authorized_keys"),
                actor("/usr/bin/tee"),
            ),
        ]);
        let mut events: Vec<_> = [
            "/etc/passwd",
            "/etc/shadow",
            "/etc/group",
            "/etc/hosts",
            "/etc/ssh/authorized_keys",
        ]
        .into_iter()
        .map(modified)
        .collect();
        sensor.fold_account_changes(&mut events, &actors);
        let left: Vec<&str> = events
            .iter()
            .map(|e| e.attributes["path"].as_str())
            .collect();
        assert_eq!(
            left,
            ["/etc/shadow", "/etc/group", "/etc/hosts"],
            "only an account tool's account files, and key files, are handed over"
        );
        let handed: Vec<(String, String)> = writers
            .take()
            .writes
            .into_iter()
            .map(|w| (w.path.display().to_string(), w.writer.exe))
            .collect();
        assert_eq!(
            handed,
            [
                ("/etc/passwd".to_owned(), "/usr/sbin/useradd".to_owned()),
                (
                    "/etc/ssh/authorized_keys".to_owned(),
                    "/usr/bin/tee".to_owned()
                )
            ]
        );
        // Without the accounts sensor, nothing is handed over.
        let alone = FileIntegrity::new(
            HostRoot(dir.path().into()),
            config(vec![PathBuf::from("/etc")]),
            store.path().into(),
        );
        let mut events = vec![modified("/etc/passwd")];
        alone.fold_account_changes(&mut events, &actors);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn package_upgrades_fold_into_one_finding_and_tampering_is_a_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tempfile::tempdir().expect("store");
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).expect("bin");
        std::fs::write(r.join("usr/bin/tool"), b"tool v1").expect("tool");
        std::fs::write(r.join("usr/bin/other"), b"hand made").expect("other");
        crate::host::packages::write_fixture(
            r,
            &[("tool", "1.0", &[("/usr/bin/tool", b"tool v1".as_slice())])],
        );
        let mut sensor = FileIntegrity::new(
            HostRoot(r.into()),
            config(vec![PathBuf::from("/usr/bin")]),
            store.path().into(),
        );
        assert!(sweep(&mut sensor).events.is_empty(), "learning");

        // apt-get upgrade: new content, new mode, and the database says so.
        std::fs::write(r.join("usr/bin/tool"), b"tool v2, longer").expect("upgrade");
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        crate::host::packages::write_fixture(
            r,
            &[(
                "tool",
                "2.0",
                &[("/usr/bin/tool", b"tool v2, longer".as_slice())],
            )],
        );
        let upgrade = sweep(&mut sensor);
        assert_eq!(
            upgrade
                .events
                .iter()
                .map(|e| e.kind.as_str())
                .collect::<Vec<_>>(),
            ["system.package_change"],
            "{:?}",
            upgrade.events
        );
        assert_eq!(
            upgrade.events[0].attributes["packages"],
            "upgraded tool 1.0 → 2.0"
        );
        assert_eq!(
            upgrade.events[0].attributes["changed_files_by_package"],
            "tool 2.0 (1 file(s))"
        );
        assert_eq!(upgrade.events[0].severity, Severity::Low as i32);

        // Then someone overwrites it, and changes a file no package owns.
        std::fs::write(r.join("usr/bin/tool"), b"trojaned tool!!").expect("tamper");
        std::fs::write(r.join("usr/bin/other"), b"hand made, changed").expect("other");
        let tamper = sweep(&mut sensor);
        let mut found = kinds(&tamper);
        found.sort();
        assert_eq!(
            found,
            [
                ("file.modified".to_owned(), "/usr/bin/other".to_owned()),
                (
                    "file.package_mismatch".to_owned(),
                    "/usr/bin/tool".to_owned()
                ),
            ],
            "{:?}",
            tamper.events
        );
        let mismatch = tamper
            .events
            .iter()
            .find(|e| e.kind == "file.package_mismatch")
            .expect("mismatch");
        assert_eq!(mismatch.attributes["package"], "tool 2.0");
        assert_eq!(mismatch.attributes["running"], "false");
    }

    /// Sweeps until `want` findings arrived (real-time checks need the reader).
    fn sweep_until(sensor: &mut FileIntegrity, want: usize) -> Vec<bannin_proto::v1::Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while events.len() < want && Instant::now() < deadline {
            events.extend(sweep(sensor).events);
            std::thread::sleep(Duration::from_millis(50));
        }
        events
    }

    #[test]
    fn changes_are_checked_as_they_happen_and_the_rescan_does_not_repeat_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tempfile::tempdir().expect("store");
        let r = dir.path();
        std::fs::create_dir_all(r.join("crit/sub")).expect("crit");
        for f in ["a", "b", "sub/c"] {
            std::fs::write(r.join("crit").join(f), f.as_bytes()).expect("file");
        }
        let mut c = config(vec![PathBuf::from("/crit")]);
        c.realtime = true;
        c.common.interval = Duration::from_secs(3600);
        let mut sensor = FileIntegrity::new(HostRoot(r.into()), c, store.path().into());
        assert!(sensor.waker().is_some(), "woken by the watcher");
        assert!(sweep(&mut sensor).events.is_empty(), "learning");
        assert!(sweep(&mut sensor).events.is_empty(), "nothing changed");
        std::thread::sleep(Duration::from_millis(200)); // the reader's marks

        std::fs::write(r.join("crit/a"), b"a, rewritten").expect("write");
        std::fs::set_permissions(r.join("crit/b"), std::fs::Permissions::from_mode(0o4755))
            .expect("chmod");
        std::fs::remove_file(r.join("crit/sub/c")).expect("rm");
        std::fs::write(r.join("crit/sub/dropped"), b"implant").expect("drop");
        set_mtime(&r.join("crit/sub/dropped"), 1_500_000_000);
        let found = sweep_until(&mut sensor, 5);
        let mut kinds: Vec<(String, String, String)> = found
            .iter()
            .map(|e| {
                (
                    e.kind.clone(),
                    e.attributes["path"].clone(),
                    e.attributes["change"].clone(),
                )
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        let t = |k: &str, p: &str, c: &str| (k.to_owned(), p.to_owned(), c.to_owned());
        assert_eq!(
            kinds,
            [
                t("file.modified", "/crit/a", "modified"),
                t("file.modified", "/crit/sub/c", "removed"),
                t("file.modified", "/crit/sub/dropped", "added"),
                t("file.permissions", "/crit/b", "permissions"),
                t("file.timestamps", "/crit/sub/dropped", "timestamps"),
            ],
            "{found:#?}"
        );
        let stomp = found
            .iter()
            .find(|e| e.kind == "file.timestamps")
            .expect("timestomp");
        assert_eq!(stomp.attributes["timestomp"], "true");
        assert_eq!(stomp.severity, Severity::High as i32);

        // The rescan that follows knows what the checks saw: nothing twice.
        sensor.last_full = None;
        let rescan = sweep(&mut sensor);
        assert!(rescan.events.is_empty(), "{:#?}", rescan.events);
        assert!(sensor.overlay.is_empty());
        // And the baseline it wrote holds the new state.
        std::fs::write(r.join("crit/a"), b"a, again").expect("write");
        let again = sweep_until(&mut sensor, 1);
        assert_eq!(again.len(), 1, "{again:#?}");
        assert_eq!(again[0].attributes["path"], "/crit/a");
    }

    #[test]
    fn the_process_that_changed_a_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tempfile::tempdir().expect("store");
        let r = dir.path();
        std::fs::create_dir_all(r.join("crit")).expect("crit");
        let mut c = config(vec![PathBuf::from("/crit")]);
        c.realtime = true;
        c.common.interval = Duration::from_secs(3600);
        let mut sensor = FileIntegrity::new(HostRoot(r.into()), c, store.path().into());
        sweep(&mut sensor);
        let backend = sensor
            .changes
            .as_ref()
            .map(|q| bannin_proto::lock(q).backend.clone())
            .unwrap_or_default();
        // Only a privileged listener hears which process made a change.
        if backend != "fanotify" || !crate::sensors::running_as_root() {
            crate::testing::skip("needs root (fanotify reports the process to root only)");
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo x > {}; sleep 1",
                r.join("crit/by-sh").display()
            ))
            .status()
            .expect("sh");
        assert!(status.success());
        let found = sweep_until(&mut sensor, 1);
        let added = found
            .iter()
            .find(|e| e.attributes["path"] == "/crit/by-sh")
            .expect("reported");
        assert!(added.attributes.contains_key("by_pid"), "{added:?}");
        assert_ne!(added.attributes["by_pid"], std::process::id().to_string());
        assert_eq!(
            added.attributes.get("by_comm").map(String::as_str),
            Some("sh")
        );
        assert!(added.summary.contains("by sh"), "{}", added.summary);
    }

    #[test]
    fn a_package_transaction_is_one_finding_even_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tempfile::tempdir().expect("store");
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).expect("bin");
        std::fs::write(r.join("usr/bin/tool"), b"tool").expect("tool");
        crate::host::packages::write_fixture(
            r,
            &[("tool", "1.0", &[("/usr/bin/tool", b"tool".as_slice())])],
        );
        let paths = vec![PathBuf::from("/usr/bin")];
        let mut sensor = FileIntegrity::new(
            HostRoot(r.into()),
            config(paths.clone()),
            store.path().into(),
        );
        let first = sweep(&mut sensor);
        assert!(first.events.is_empty());
        let saved: IntegrityState =
            serde_json::from_slice(&first.state.expect("the package list is saved"))
                .expect("state");
        assert_eq!(saved.packages, [("tool".to_owned(), "1.0".to_owned())]);

        // apt-get install hello: a new binary, and the database says so.
        std::fs::write(r.join("usr/bin/hello"), b"hello").expect("hello");
        crate::host::packages::write_fixture(
            r,
            &[
                ("tool", "1.0", &[("/usr/bin/tool", b"tool".as_slice())]),
                (
                    "hello",
                    "2.10-3",
                    &[("/usr/bin/hello", b"hello".as_slice())],
                ),
            ],
        );
        let install = sweep(&mut sensor);
        assert_eq!(install.events.len(), 1, "{:#?}", install.events);
        let e = &install.events[0];
        assert_eq!(e.kind, "system.package_change");
        assert_eq!(e.attributes["installed"], "hello 2.10-3");
        assert_eq!(e.attributes["files"], "1");
        assert!(
            e.summary.contains("installed hello 2.10-3"),
            "{}",
            e.summary
        );
        let saved: IntegrityState =
            serde_json::from_slice(&install.state.expect("saved")).expect("state");
        drop(sensor);

        // Removed while the agent was down: the restarted sensor says so.
        std::fs::remove_file(r.join("usr/bin/tool")).expect("rm");
        crate::host::packages::write_fixture(
            r,
            &[(
                "hello",
                "2.10-3",
                &[("/usr/bin/hello", b"hello".as_slice())],
            )],
        );
        let mut restarted =
            FileIntegrity::new(HostRoot(r.into()), config(paths), store.path().into())
                .with_state(Some(saved));
        let removal = sweep(&mut restarted);
        assert_eq!(removal.events.len(), 1, "{:#?}", removal.events);
        assert_eq!(removal.events[0].attributes["removed"], "tool 1.0");
        assert_eq!(removal.events[0].attributes["removed_files"], "1");
    }

    #[test]
    fn checks_wait_while_the_package_manager_holds_its_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        std::fs::create_dir_all(r.join("var/lib/dpkg")).expect("dpkg");
        std::fs::create_dir_all(r.join("proc")).expect("proc");
        std::fs::write(r.join("var/lib/dpkg/lock"), b"").expect("lock");
        let ino = std::fs::metadata(r.join("var/lib/dpkg/lock"))
            .expect("meta")
            .ino();
        let root = HostRoot(r.into());
        std::fs::write(
            r.join("proc/locks"),
            "1: POSIX  ADVISORY  WRITE 99 08:01:12 0 EOF\n",
        )
        .expect("locks");
        assert!(!crate::host::packages::transaction_running(&root));
        std::fs::write(
            r.join("proc/locks"),
            format!("1: POSIX  ADVISORY  WRITE 99 08:01:12 0 EOF\n2: POSIX  ADVISORY  WRITE 4242 fd:00:{ino} 0 EOF\n"),
        )
        .expect("locks");
        assert!(crate::host::packages::transaction_running(&root));

        // The first baseline waits, and the sensor says it is still learning.
        std::fs::create_dir_all(r.join("crit")).expect("crit");
        std::fs::write(r.join("crit/f"), b"x").expect("f");
        let store = tempfile::tempdir().expect("store");
        let mut sensor = FileIntegrity::new(
            root.clone(),
            config(vec![PathBuf::from("/crit")]),
            store.path().into(),
        );
        let mut s = Sweep::default();
        let health = sensor.sweep(&mut s).expect("sweep");
        assert!(matches!(health, Health::Learning(_)), "{health:?}");
        assert!(
            sensor.last_full.is_none(),
            "no baseline taken mid-transaction"
        );
        // The transaction ends: the baseline is taken.
        std::fs::write(r.join("proc/locks"), "").expect("locks");
        assert_eq!(
            sensor.sweep(&mut Sweep::default()).expect("sweep"),
            Health::Ok
        );
        assert!(sensor.last_full.is_some());
    }

    fn set_mtime(path: &Path, secs: i64) {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(secs as u64);
        let f = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        f.set_modified(t).expect("set mtime");
    }

    #[test]
    fn baseline_then_content_permissions_timestamps_added_and_removed() {
        let root = tempfile::tempdir().expect("root");
        let r = root.path();
        let store = tempfile::tempdir().expect("store");
        for (p, text) in [
            ("etc/passwd", "root:x:0:0\n"),
            ("etc/ssh/sshd_config", "PermitRootLogin no\n"),
            ("etc/ssh.d/x", "sorts after etc/ssh/ by component"),
            ("usr/bin/ls", "ELF ls"),
            ("usr/lib/libc.so.6", "ELF libc"),
            ("usr/lib/python3/site.py", "not a library"),
        ] {
            let f = r.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("dir");
            std::fs::write(f, text).expect("write");
        }
        set_mtime(&r.join("usr/bin/ls"), 1_600_000_000);
        let paths = vec![PathBuf::from("/etc"), PathBuf::from("/usr/bin")];
        let mut sensor = FileIntegrity::new(
            HostRoot(r.into()),
            config(paths.clone()),
            store.path().into(),
        );
        let first = sweep(&mut sensor);
        assert!(first.events.is_empty(), "the baseline is quiet");
        assert_eq!(sensor.last_stats.files, 5, "python file is not a library");
        let quiet = sweep(&mut sensor);
        assert!(quiet.events.is_empty(), "{:?}", kinds(&quiet));
        assert_eq!(
            sensor.last_stats.hashed, 0,
            "unchanged files are not hashed again"
        );

        std::fs::write(r.join("etc/ssh/sshd_config"), "PermitRootLogin yes\n").expect("edit");
        std::fs::set_permissions(r.join("etc/passwd"), std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        // Timestomping: new content, then mtime set back before the original.
        std::fs::write(r.join("usr/bin/ls"), "ELF ls trojan").expect("trojan");
        set_mtime(&r.join("usr/bin/ls"), 1_500_000_000);
        std::fs::write(r.join("usr/bin/nc"), "ELF nc").expect("new");
        std::fs::remove_file(r.join("usr/lib/libc.so.6")).expect("rm");
        std::fs::remove_file(r.join("etc/ssh.d/x")).expect("rm");
        let changed = sweep(&mut sensor);
        assert_eq!(
            kinds(&changed),
            [
                ("file.modified".into(), "/etc/ssh.d/x".into()),
                ("file.modified".into(), "/etc/ssh/sshd_config".into()),
                ("file.modified".into(), "/usr/bin/ls".into()),
                ("file.modified".into(), "/usr/bin/nc".into()),
                ("file.modified".into(), "/usr/lib/libc.so.6".into()),
                ("file.permissions".into(), "/etc/passwd".into()),
                ("file.timestamps".into(), "/usr/bin/ls".into()),
            ]
        );
        let stomp = changed
            .events
            .iter()
            .find(|e| e.kind == "file.timestamps")
            .expect("timestamps");
        assert_eq!(stomp.attributes["timestomp"], "true");
        let removed = changed
            .events
            .iter()
            .find(|e| e.attributes["path"] == "/usr/lib/libc.so.6")
            .expect("removed");
        assert_eq!(removed.attributes["change"], "removed");

        // A touch without a content change is a timestamp change only.
        set_mtime(&r.join("etc/passwd"), 2_000_000_000);
        let touched = sweep(&mut sensor);
        assert_eq!(
            kinds(&touched),
            [("file.timestamps".into(), "/etc/passwd".into())]
        );
        assert_eq!(touched.events[0].attributes["timestomp"], "false");

        // Stopped cleanly and restarted over the same directory: nothing new.
        drop(sensor);
        let mut restarted = FileIntegrity::new(
            HostRoot(r.into()),
            config(paths.clone()),
            store.path().into(),
        );
        let after = sweep(&mut restarted);
        assert!(after.events.is_empty(), "{:?}", kinds(&after));

        // Relearning: the next scan is quiet whatever changed.
        std::fs::write(r.join("etc/passwd"), "changed for the upgrade\n").expect("edit");
        restarted.relearn();
        assert!(sweep(&mut restarted).events.is_empty());
    }

    #[test]
    fn a_crash_before_commit_reports_the_changes_again() {
        let root = tempfile::tempdir().expect("root");
        let r = root.path();
        let store = tempfile::tempdir().expect("store");
        std::fs::create_dir_all(r.join("etc")).expect("etc");
        std::fs::write(r.join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
        let paths = vec![PathBuf::from("/etc")];
        let mut sensor = FileIntegrity::new(
            HostRoot(r.into()),
            config(paths.clone()),
            store.path().into(),
        );
        sweep(&mut sensor);
        sweep(&mut sensor); // commits the baseline
        std::fs::write(r.join("etc/hosts"), "10.6.6.6 bank.example\n").expect("poison");
        assert_eq!(sweep(&mut sensor).events.len(), 1);
        // Crash: the sensor vanishes without dropping; a new one starts.
        std::mem::forget(sensor);
        let mut again = FileIntegrity::new(HostRoot(r.into()), config(paths), store.path().into());
        let s = sweep(&mut again);
        assert_eq!(kinds(&s), [("file.modified".into(), "/etc/hosts".into())]);
    }

    #[test]
    fn single_files_and_throttling() {
        let root = tempfile::tempdir().expect("root");
        let r = root.path();
        let store = tempfile::tempdir().expect("store");
        std::fs::create_dir_all(r.join("opt")).expect("dir");
        std::fs::write(r.join("opt/agent"), vec![7u8; 2 << 20]).expect("agent");
        let mut c = config(vec![PathBuf::from("/opt/agent")]);
        c.hash_rate_mib = 8;
        let mut sensor = FileIntegrity::new(HostRoot(r.into()), c, store.path().into());
        let started = Instant::now();
        sweep(&mut sensor);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "2 MiB at 8 MiB/s takes at least 250 ms"
        );
        std::fs::write(r.join("opt/agent"), vec![8u8; 2 << 20]).expect("agent");
        let changed = sweep(&mut sensor);
        assert_eq!(
            kinds(&changed),
            [("file.modified".into(), "/opt/agent".into())]
        );
    }
}
