//! `file.odd_name`: files and directories with names meant to hide, in watched
//! directories: a leading or trailing space, control characters, bytes that are
//! not UTF-8, and (where config says dotfiles are unexpected) a leading dot.
//! Names made only of dots and spaces (`...`, `. .`) are always odd.
//!
//! Each odd path is reported once while it exists; what was reported is kept
//! across restarts. Symlinks are never followed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The sensor.
pub struct OddNames {
    root: HostRoot,
    config: OddNameConfig,
    /// Odd paths already reported and still present.
    reported: BTreeSet<String>,
}

impl OddNames {
    /// A sensor walking `config.paths` under `root`, remembering what it reported before.
    pub fn new(root: HostRoot, config: OddNameConfig, reported: Option<BTreeSet<String>>) -> Self {
        Self {
            root,
            config,
            reported: reported.unwrap_or_default(),
        }
    }
}

struct Walk {
    odd: Vec<(PathBuf, &'static str, std::fs::Metadata)>,
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

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let out = &mut sweep.events;
        let mut walk = Walk {
            odd: Vec::new(),
            seen: 0,
            denied: BTreeSet::new(),
            truncated: false,
        };
        for p in &self.config.paths {
            self.walk(p, 1, &mut walk);
        }
        let reported = &mut self.reported;
        let mut present = BTreeSet::new();
        let mut changed = false;
        for (path, why, meta) in walk.odd {
            let shown = escape(&path);
            present.insert(shown.clone());
            if reported.contains(&shown) {
                continue;
            }
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
        // Forget what is gone, so it is reported again if it comes back.
        let before = reported.len();
        if !walk.truncated {
            reported.retain(|p| present.contains(p));
        }
        if changed || reported.len() != before {
            sweep.save_state(&*reported);
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
    fn escaping_keeps_paths_on_one_line() {
        let p = PathBuf::from(OsString::from_vec(b"/tmp/a\nb\xff\\".to_vec()));
        assert_eq!(escape(&p), "/tmp/a\\x0ab\\xff\\\\");
    }
}
