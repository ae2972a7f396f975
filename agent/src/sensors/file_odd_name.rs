//! `file.odd_name`: files and directories with names meant to hide, in watched
//! directories: a leading or trailing space, control characters, bytes that are
//! not UTF-8, and (where config says dotfiles are unexpected) a leading dot.
//! Names made only of dots and spaces (`...`, `. .`) are always odd.
//!
//! The same walk finds `file.archive`: regular files created or changed since
//! the previous walk whose first bytes are those of an archive — zip, rar, 7z,
//! tar, gzip, bzip2, xz or zstd — whatever their name. Office documents, jars
//! and other zip-based formats are told apart by their first member, so a zip
//! renamed `.docx` is still an archive.
//!
//! Each odd path and each archive is reported once while it exists; what was
//! reported is kept across restarts. Symlinks are never followed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::v1::Severity;

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::OddNameConfig;

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

/// A path printable on one line: control characters and bytes that are not
/// UTF-8 are escaped as `\xNN`, backslashes doubled.
pub fn escape(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OddState {
    /// Odd paths already reported and still present.
    pub reported: BTreeSet<String>,
    /// Archives already reported and still present.
    pub archives: BTreeSet<String>,
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
        Self {
            root,
            config,
            state,
            first,
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
}

impl OddNames {
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
            let name = entry.file_name();
            let Ok(meta) = entry.metadata() else { continue };
            let child = host_path.join(&name);
            if let Some(why) = oddity(&name, self.config.dotfiles_unexpected) {
                walk.odd.push((child.clone(), why, meta.clone()));
            }
            let ctime_ns = meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec());
            if meta.is_file() && meta.len() >= 4 && ctime_ns >= walk.since_ns {
                walk.fresh.push((child.clone(), meta.clone()));
            }
            // DirEntry::metadata does not follow symlinks.
            if meta.is_dir() && depth < self.config.max_depth {
                self.walk(&child, depth + 1, walk);
            }
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
        };
        for p in &self.config.paths {
            self.walk(p, 1, &mut walk);
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
        if !walk.truncated {
            // Archives gone from the watched paths are forgotten (they may come back).
            let before = self.state.archives.len();
            let root = &self.root;
            self.state
                .archives
                .retain(|p| archives_present.contains(p) || root.join(p).exists());
            changed |= self.state.archives.len() != before;
        }
        self.state.since_ns = started_ns;
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
            let attributes = BTreeMap::from([
                ("path".to_owned(), shown.clone()),
                ("reason".to_owned(), why.to_owned()),
                ("type".to_owned(), kind.to_owned()),
                ("uid".to_owned(), meta.uid().to_string()),
                ("mode".to_owned(), format!("{:o}", meta.mode() & 0o7777)),
                ("size".to_owned(), meta.len().to_string()),
            ]);
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
        if !walk.truncated {
            reported.retain(|p| present.contains(p));
        }
        if changed || reported.len() != before {
            sweep.save_state(&self.state);
        }
        if !walk.denied.is_empty() {
            let total = walk.denied.len();
            let mut list: Vec<_> = walk.denied.into_iter().take(5).collect();
            if total > list.len() {
                list.push(format!("and {} more", total - list.len()));
            }
            return Ok(Health::Degraded(format!(
                "permission denied reading {} (run as root to watch them)",
                list.join(", ")
            )));
        }
        if walk.truncated {
            return Ok(Health::Degraded(format!(
                "stopped after {} entries (sensors.file_odd_name.max_entries)",
                self.config.max_entries
            )));
        }
        Ok(Health::Ok)
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
