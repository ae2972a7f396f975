//! File integrity: a baseline of critical paths — SHA-256, mode, owner, size,
//! mtime, ctime — and a periodic rescan that reports what changed.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `file.modified` | content changed, or a file appeared or disappeared (`change` = modified, added, removed) | high |
//! | `file.permissions` | mode, owner or group changed | high |
//! | `file.timestamps` | mtime changed while the content did not, or mtime moved backwards while ctime moved on (`timestomp` = true) | medium (timestomping: high) |
//!
//! The baseline lives in the agent's store, one record per file keyed by
//! directory and name, written in the same atomic write as the sweep's events;
//! memory holds one directory at a time. A rescan stats every file and hashes
//! only those whose size, inode, mtime or ctime moved. Hashing is throttled to
//! `hash_rate_mib` MiB/s so a rescan never hogs the disk. The first sweep
//! builds the baseline quietly. Symlinks are recorded by their target, never
//! followed; other file systems below a path are not entered.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::FileIntegrityConfig;
use crate::spool::Spool;

/// The sensor's name (and its records' namespace in the store).
pub const NAME: &str = "file_integrity";

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

/// The store key of `name` in directory `dir`: `dir \0 name`.
fn key(dir: &Path, name: &OsStr) -> Vec<u8> {
    let mut k = dir.as_os_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn dir_prefix(dir: &Path) -> Vec<u8> {
    let mut k = dir.as_os_str().as_bytes().to_vec();
    k.push(0);
    k
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

/// Records are written straight to the store in chunks of this many while the
/// baseline is learned, so memory never holds the whole baseline.
const LEARN_CHUNK: usize = 4096;

/// What the sensor keeps besides its records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FimState {
    /// Whether one full scan has completed: until then, nothing is reported.
    pub baseline_complete: bool,
}

/// The sensor.
pub struct FileIntegrity {
    root: HostRoot,
    config: FileIntegrityConfig,
    spool: Arc<Spool>,
    state: FimState,
    /// Records written by the previous sweep, in case the store has not applied them yet.
    pending: HashMap<Vec<u8>, Option<Entry>>,
    /// Figures of the last sweep.
    pub last_stats: ScanStats,
}

impl FileIntegrity {
    /// A sensor over `config.paths` under `root`, with its baseline in `spool`.
    pub fn new(
        root: HostRoot,
        config: FileIntegrityConfig,
        spool: Arc<Spool>,
        state: Option<FimState>,
    ) -> Self {
        Self {
            root,
            config,
            spool,
            state: state.unwrap_or_default(),
            pending: HashMap::new(),
            last_stats: ScanStats::default(),
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
                Ok(_) if super::stopping() => return Vec::new(),
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

    /// Scans one directory (host path), comparing with its stored children;
    /// returns subdirectories to visit.
    #[allow(clippy::too_many_arguments)]
    fn scan_dir(
        &self,
        dir: &Path,
        dev: u64,
        library_only: bool,
        learning: bool,
        sweep: &mut Sweep,
        throttle: &mut Throttle,
        stats: &mut ScanStats,
    ) -> Vec<PathBuf> {
        let mut subdirs = Vec::new();
        let stored: BTreeMap<Vec<u8>, Vec<u8>> = self
            .spool
            .records_with_prefix(NAME, &dir_prefix(dir))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !k[dir_prefix(dir).len()..].contains(&0))
            .collect();
        let mut seen = Vec::new();
        match std::fs::read_dir(self.root.join(dir)) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let host = dir.join(&name);
                    let Ok(meta) = e.metadata() else { continue };
                    if meta.is_dir() {
                        if meta.dev() == dev || !self.config.one_filesystem {
                            subdirs.push(host);
                        }
                        continue;
                    }
                    if !(meta.is_file() || meta.file_type().is_symlink())
                        || !self.wanted(&host, library_only)
                    {
                        continue;
                    }
                    stats.files += 1;
                    let k = key(dir, &name);
                    seen.push(k.clone());
                    let old: Option<Entry> = match self.pending.get(&k) {
                        Some(p) => p.clone(),
                        None => stored.get(&k).and_then(|v| postcard::from_bytes(v).ok()),
                    };
                    self.compare(
                        &host,
                        &e.path(),
                        &meta,
                        old,
                        k,
                        learning,
                        sweep,
                        throttle,
                        stats,
                    );
                }
            }
            Err(_) => stats.unreadable += 1,
        }
        seen.sort_unstable();
        for (k, v) in &stored {
            if seen.binary_search(k).is_err() && !self.pending.get(k).is_some_and(Option::is_none) {
                let name = OsStr::from_bytes(&k[dir_prefix(dir).len()..]);
                let host = dir.join(name);
                if let Ok(old) = postcard::from_bytes::<Entry>(v)
                    && !learning
                {
                    sweep.events.push(event(
                        "file.modified",
                        Severity::High,
                        true,
                        attrs(&host, "removed", Some(&old), None),
                        format!("critical file removed: {}", host.display()),
                    ));
                }
                sweep.records.push((k.clone(), None));
            }
        }
        subdirs
    }

    #[allow(clippy::too_many_arguments)]
    fn compare(
        &self,
        host: &Path,
        real: &Path,
        meta: &std::fs::Metadata,
        old: Option<Entry>,
        k: Vec<u8>,
        learning: bool,
        sweep: &mut Sweep,
        throttle: &mut Throttle,
        stats: &mut ScanStats,
    ) {
        let mut now = Entry::from_meta(meta);
        let Some(old) = old else {
            now.sha256 = self.hash(real, meta, throttle, stats);
            if !learning {
                sweep.events.push(event(
                    "file.modified",
                    Severity::High,
                    true,
                    attrs(host, "added", None, Some(&now)),
                    format!("new file in a critical path: {}", host.display()),
                ));
            }
            sweep.records.push((k, postcard::to_stdvec(&now).ok()));
            return;
        };
        now.sha256 = if now.content_may_differ(&old) {
            self.hash(real, meta, throttle, stats)
        } else {
            old.sha256.clone()
        };
        if now == old {
            return;
        }
        let content = now.sha256 != old.sha256;
        if content {
            sweep.events.push(event(
                "file.modified",
                Severity::High,
                true,
                attrs(host, "modified", Some(&old), Some(&now)),
                format!("critical file changed: {}", host.display()),
            ));
        }
        if (now.mode, now.uid, now.gid) != (old.mode, old.uid, old.gid) {
            sweep.events.push(event(
                "file.permissions",
                Severity::High,
                true,
                attrs(host, "permissions", Some(&old), Some(&now)),
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
            let mut a = attrs(host, "timestamps", Some(&old), Some(&now));
            a.insert("timestomp".into(), backwards.to_string());
            sweep.events.push(event(
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
        sweep.records.push((k, postcard::to_stdvec(&now).ok()));
    }

    /// One full scan of every configured path.
    pub fn scan(&mut self, sweep: &mut Sweep) -> ScanStats {
        let learning = !self.state.baseline_complete;
        let mut throttle = Throttle::new(self.config.hash_rate_mib);
        let mut stats = ScanStats::default();
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
            if !meta.is_dir() {
                // A single file: recorded under its parent directory.
                let (Some(dir), Some(name)) = (top.parent(), top.file_name()) else {
                    continue;
                };
                stats.files += 1;
                let k = key(dir, name);
                let old = match self.pending.get(&k) {
                    Some(p) => p.clone(),
                    None => self
                        .spool
                        .record(NAME, &k)
                        .ok()
                        .flatten()
                        .and_then(|v| postcard::from_bytes(&v).ok()),
                };
                self.compare(
                    &top,
                    &real,
                    &meta,
                    old,
                    k,
                    learning,
                    sweep,
                    &mut throttle,
                    &mut stats,
                );
                continue;
            }
            let mut stack = vec![top];
            while let Some(dir) = stack.pop() {
                if super::stopping() {
                    return stats;
                }
                let subdirs = self.scan_dir(
                    &dir,
                    meta.dev(),
                    library_only,
                    learning,
                    sweep,
                    &mut throttle,
                    &mut stats,
                );
                stack.extend(subdirs);
                if learning && sweep.records.len() >= LEARN_CHUNK {
                    // No events while learning: the records need no company.
                    let chunk = std::mem::take(&mut sweep.records);
                    if let Err(error) =
                        self.spool
                            .append_sweep_with_records(Vec::new(), None, Some((NAME, chunk)))
                    {
                        tracing::error!(%error, "Cannot store part of the integrity baseline");
                    }
                }
            }
        }
        self.pending = sweep
            .records
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().and_then(|v| postcard::from_bytes(v).ok()),
                )
            })
            .collect();
        stats
    }
}

fn attrs(
    host: &Path,
    change: &str,
    old: Option<&Entry>,
    new: Option<&Entry>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("path".to_owned(), super::file_odd_name::escape(host)),
        ("change".to_owned(), change.to_owned()),
    ]);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for (prefix, e) in [("old", old), ("new", new)] {
        if let Some(e) = e {
            a.insert(format!("{prefix}_sha256"), hex(&e.sha256));
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
        self.state.baseline_complete = false;
        self.pending.clear();
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let started = Instant::now();
        let learning = !self.state.baseline_complete;
        let stats = self.scan(sweep);
        if super::stopping() {
            // A partial scan would record a partial baseline: keep none of it.
            sweep.events.clear();
            sweep.records.clear();
            self.pending.clear();
            return Err(SensorError::Interrupted);
        }
        if learning {
            self.state.baseline_complete = true;
            sweep.save_state(&self.state);
        }
        self.last_stats = stats;
        tracing::debug!(
            files = stats.files,
            hashed = stats.hashed,
            bytes = stats.bytes,
            elapsed.ms = started.elapsed().as_millis() as u64,
            "Integrity rescan done"
        );
        if stats.files == 0 {
            return Ok(Health::Degraded(
                "none of the configured paths exists".into(),
            ));
        }
        if stats.unreadable > 0 {
            return Ok(Health::Degraded(format!(
                "{} directories could not be read (not root?)",
                stats.unreadable
            )));
        }
        Ok(Health::Ok)
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
        }
    }

    /// Sweeps and applies the records as the spooler would.
    fn sweep(sensor: &mut FileIntegrity, spool: &Spool) -> Sweep {
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        spool
            .append_sweep_with_records(Vec::new(), None, Some((NAME, s.records.clone())))
            .expect("apply");
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
        let spool = Arc::new(Spool::open(store.path(), 64 << 20).expect("spool"));
        for (p, text) in [
            ("etc/passwd", "root:x:0:0\n"),
            ("etc/ssh/sshd_config", "PermitRootLogin no\n"),
            ("usr/bin/ls", "ELF ls"),
            ("usr/lib/libc.so.6", "ELF libc"),
            ("usr/lib/python3/site.py", "not a library"),
        ] {
            let f = r.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("dir");
            std::fs::write(f, text).expect("write");
        }
        set_mtime(&r.join("usr/bin/ls"), 1_600_000_000);
        let mut sensor = FileIntegrity::new(
            HostRoot(r.into()),
            config(vec![PathBuf::from("/etc"), PathBuf::from("/usr/bin")]),
            spool.clone(),
            None,
        );
        let first = sweep(&mut sensor, &spool);
        assert!(first.events.is_empty(), "the baseline is quiet");
        assert_eq!(spool.record_count(NAME), 4, "python file is not a library");
        let quiet = sweep(&mut sensor, &spool);
        assert!(quiet.events.is_empty() && quiet.records.is_empty());
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
        let changed = sweep(&mut sensor, &spool);
        assert_eq!(
            kinds(&changed),
            [
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
        let touched = sweep(&mut sensor, &spool);
        assert_eq!(
            kinds(&touched),
            [("file.timestamps".into(), "/etc/passwd".into())]
        );
        assert_eq!(touched.events[0].attributes["timestomp"], "false");

        // A restarted sensor over the same store reports nothing new.
        let mut restarted = FileIntegrity::new(
            HostRoot(r.into()),
            config(vec![PathBuf::from("/etc"), PathBuf::from("/usr/bin")]),
            spool.clone(),
            Some(FimState {
                baseline_complete: true,
            }),
        );
        let after = sweep(&mut restarted, &spool);
        assert!(after.events.is_empty(), "{:?}", kinds(&after));
    }

    #[test]
    fn single_files_and_throttling() {
        let root = tempfile::tempdir().expect("root");
        let r = root.path();
        let store = tempfile::tempdir().expect("store");
        let spool = Arc::new(Spool::open(store.path(), 64 << 20).expect("spool"));
        std::fs::create_dir_all(r.join("opt")).expect("dir");
        std::fs::write(r.join("opt/agent"), vec![7u8; 2 << 20]).expect("agent");
        let mut c = config(vec![PathBuf::from("/opt/agent")]);
        c.hash_rate_mib = 8;
        let mut sensor = FileIntegrity::new(HostRoot(r.into()), c, spool.clone(), None);
        let started = Instant::now();
        sweep(&mut sensor, &spool);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "2 MiB at 8 MiB/s takes at least 250 ms"
        );
        std::fs::write(r.join("opt/agent"), vec![8u8; 2 << 20]).expect("agent");
        let changed = sweep(&mut sensor, &spool);
        assert_eq!(
            kinds(&changed),
            [("file.modified".into(), "/opt/agent".into())]
        );
    }
}
