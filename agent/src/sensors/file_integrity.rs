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

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::FileIntegrityConfig;

/// The sensor's name.
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
        Self {
            root,
            config,
            dir,
            uncommitted: Vec::new(),
            last_stats: ScanStats::default(),
            stop: super::StopFlag::default(),
            packages: crate::host::packages::SharedIndex::default(),
            packages_seen: None,
        }
    }

    /// Consults `packages` (shared with the other sensors) instead of its own index.
    pub fn with_packages(mut self, packages: crate::host::packages::SharedIndex) -> Self {
        self.packages = packages;
        self
    }

    /// Folds what the package manager did into one `system.package_change`: a
    /// packaged file changed or added whose content matches its (new) package is
    /// the upgrade, not an indicator, and the other findings of that path go with
    /// it; a file removed while the package database changed went with its
    /// package. A packaged file whose content does not match its package is
    /// `file.package_mismatch`.
    fn fold_package_changes(&mut self, events: &mut Vec<bannin_proto::v1::Event>) {
        let generation = self.packages.refresh(&self.root);
        let db_changed = self.packages_seen.is_some_and(|g| g != generation);
        self.packages_seen = Some(generation);
        let guard = self.packages.lock();
        let Some(index) = guard.as_ref().filter(|i| !i.is_empty()) else {
            return;
        };
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
                    match crate::host::packages::md5_file(&real) {
                        Ok(md5) if p.matches(&md5) => {
                            *upgraded
                                .entry(format!("{} {}", p.package.name, p.package.version))
                                .or_default() += 1;
                            folded_paths.insert(path);
                            continue;
                        }
                        Ok(md5) => {
                            e.kind = "file.package_mismatch".into();
                            e.attributes.insert(
                                "package".into(),
                                format!("{} {}", p.package.name, p.package.version),
                            );
                            e.attributes
                                .insert("actual_md5".into(), bannin_proto::hex(md5));
                            e.attributes.insert(
                                "package_md5".into(),
                                index.recorded_md5(&self.root, &p).unwrap_or_default(),
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
                        Err(_) => {}
                    }
                }
            } else if e.kind == "file.modified"
                && change == "removed"
                && db_changed
                && index.lookup(&path).is_none()
            {
                removed_with_package += 1;
                folded_paths.insert(path);
                continue;
            }
            out.push(e);
        }
        // The mode and times of an upgraded file change with it.
        out.retain(|e| {
            !(matches!(e.kind.as_str(), "file.permissions" | "file.timestamps")
                && e.attributes
                    .get("path")
                    .is_some_and(|p| folded_paths.contains(p))
                && e.attributes.get("timestomp").map(String::as_str) != Some("true"))
        });
        let files: u32 = upgraded.values().sum::<u32>() + removed_with_package;
        if files > 0 {
            let packages: Vec<String> = upgraded
                .iter()
                .map(|(p, n)| format!("{p} ({n} file(s))"))
                .collect();
            let mut attributes = BTreeMap::from([
                ("packages".to_owned(), packages.join(", ")),
                ("files".to_owned(), files.to_string()),
                (
                    "reason".to_owned(),
                    "critical files changed as their packages say they must".to_owned(),
                ),
            ]);
            if removed_with_package > 0 {
                attributes.insert("removed_files".into(), removed_with_package.to_string());
            }
            out.push(event(
                "system.package_change",
                Severity::Low,
                true,
                attributes,
                format!(
                    "package change: {files} critical file(s) changed by {}",
                    if packages.is_empty() {
                        "package removal".to_owned()
                    } else {
                        packages.join(", ")
                    }
                ),
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
            if !scan.learning {
                scan.events.push(event(
                    "file.modified",
                    Severity::High,
                    true,
                    attrs(&host, "removed", Some(&old.entry), None),
                    format!("critical file removed: {}", host.display()),
                ));
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
        let old = match scan.old.peek_path() {
            Some(p) if p == host => scan.old.take().map(|r| r.entry),
            _ => None,
        };
        let real = self.root.join(host);
        let mut now = Entry::from_meta(meta);
        match &old {
            None => {
                now.sha256 = self.hash(&real, meta, scan.throttle, scan.stats);
                if !scan.learning {
                    scan.events.push(event(
                        "file.modified",
                        Severity::High,
                        true,
                        attrs(host, "added", None, Some(&now)),
                        format!("new file in a critical path: {}", host.display()),
                    ));
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
        let mut throttle = Throttle::new(self.config.hash_rate_mib);
        let mut stats = ScanStats::default();
        if let Err(error) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), %error, "Cannot create the integrity baseline directory");
            stats.unreadable += 1;
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

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        self.stop = sweep.stop.clone();
        let started = Instant::now();
        let stats = self.scan(&mut sweep.events);
        self.last_stats = stats;
        if self.stop.is_set() {
            // A partial scan keeps no baseline and reports nothing.
            sweep.events.clear();
            return Err(SensorError::Interrupted);
        }
        self.fold_package_changes(&mut sweep.events);
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
