//! Live triage: small, read-only questions answered at once from the host's own
//! interfaces (`/proc`, `/etc`, utmp, the file system), with bounded output.
//!
//! Paths come from the operator and are checked: absolute, no `..`, looked up
//! under the agent's host root, and never followed through a symlink (`stat`
//! and `ls` describe the link itself; `hash` refuses anything but a regular file).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::host::HostRoot;
use crate::host::net::{parse_sockets, tcp_state};
use crate::host::paths::escape;
use crate::host::{accounts, auth_log, proc};

/// Most rows in one answer.
pub const MAX_ROWS: usize = 5000;
/// Most bytes of one answer (JSON).
pub const MAX_BYTES: usize = 1024 * 1024;
/// The questions, in [`Question`]'s order.
pub const QUESTIONS: [&str; 9] = bannin_proto::vocab::TRIAGE_QUESTIONS;

/// A triage question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// Running processes.
    Processes,
    /// Established and other non-listening sockets.
    Connections,
    /// Listening sockets.
    Listeners,
    /// Live sessions (utmp).
    Logins,
    /// `/etc/passwd`.
    Users,
    /// systemd units and timers.
    Services,
    /// `lstat` of a path.
    Stat,
    /// SHA-256 of a regular file.
    Hash,
    /// A directory listing.
    Ls,
}

impl std::str::FromStr for Question {
    type Err = TriageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "processes" => Question::Processes,
            "connections" => Question::Connections,
            "listeners" => Question::Listeners,
            "logins" => Question::Logins,
            "users" => Question::Users,
            "services" => Question::Services,
            "stat" => Question::Stat,
            "hash" => Question::Hash,
            "ls" => Question::Ls,
            other => return Err(TriageError::UnknownQuestion(other.to_owned())),
        })
    }
}

impl Question {
    /// Its name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        QUESTIONS[self as usize]
    }
}

/// Why a triage question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// Not a question this agent knows.
    #[error("unknown triage question {0:?}; known: {list}", list = QUESTIONS.join(", "))]
    UnknownQuestion(String),
    /// `stat`, `hash` and `ls` need a path.
    #[error("{0} needs a path")]
    NeedsPath(&'static str),
    /// The path or the file is refused (relative, `..`, not a regular file, swapped).
    #[error("{0}: refused")]
    Refused(String),
    /// Reading failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read (the path as shown).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An I/O error about `what`.
fn io(what: &str) -> impl FnOnce(std::io::Error) -> TriageError + '_ {
    move |source| TriageError::Io {
        what: what.to_owned(),
        source,
    }
}

/// Answers `question` (with `path` for stat, hash and ls) as JSON text.
pub fn answer(
    root: &HostRoot,
    question: Question,
    path: Option<&str>,
) -> Result<String, TriageError> {
    let rows = match question {
        Question::Processes => processes(root),
        Question::Connections => sockets(root, false),
        Question::Listeners => sockets(root, true),
        Question::Logins => logins(root)?,
        Question::Users => users(root)?,
        Question::Services => services(root),
        Question::Stat | Question::Hash | Question::Ls => {
            let path = path.ok_or(TriageError::NeedsPath(question.name()))?;
            let (shown, real) = host_path(root, path)?;
            match question {
                Question::Stat => vec![stat(&shown, &real)?],
                Question::Hash => vec![hash(root, &shown, &real)?],
                _ => ls(&real)?,
            }
        }
    };
    Ok(bounded(question.name(), rows))
}

/// Serialises rows, dropping the tail past [`MAX_ROWS`] or [`MAX_BYTES`].
fn bounded(question: &str, mut rows: Vec<Value>) -> String {
    let total = rows.len();
    rows.truncate(MAX_ROWS);
    loop {
        let text = json!({ "question": question, "rows": rows, "total": total, "truncated": rows.len() < total })
            .to_string();
        if text.len() <= MAX_BYTES || rows.is_empty() {
            return text;
        }
        let keep = rows.len() * MAX_BYTES / text.len();
        rows.truncate(keep.saturating_sub(1));
    }
}

/// Checks an operator's path: absolute, no `..`, not absurdly long.
pub fn host_path(root: &HostRoot, path: &str) -> Result<(String, PathBuf), TriageError> {
    let p = Path::new(path);
    if !p.is_absolute() || path.len() > 4096 {
        return Err(TriageError::Refused(format!(
            "{path:?} is not an absolute path"
        )));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(TriageError::Refused(format!("{path:?} holds '..'")));
    }
    Ok((escape(p), root.join(p)))
}

fn kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block_device"
    } else if ft.is_char_device() {
        "char_device"
    } else {
        "other"
    }
}

fn stat(shown: &str, real: &Path) -> Result<Value, TriageError> {
    let m = std::fs::symlink_metadata(real).map_err(io(shown))?;
    let mut v = json!({
        "path": shown,
        "type": kind(&m.file_type()),
        "size": m.len(),
        "mode": format!("{:o}", m.mode() & 0o7777),
        "uid": m.uid(),
        "gid": m.gid(),
        "inode": m.ino(),
        "links": m.nlink(),
        "mtime": m.mtime(),
        "ctime": m.ctime(),
        "atime": m.atime(),
    });
    if m.file_type().is_symlink()
        && let Ok(target) = std::fs::read_link(real)
    {
        v["target"] = Value::String(escape(&target));
    }
    Ok(v)
}

/// Largest file `hash` reads (a triage answer must come within its command's
/// timeout; a bigger file is snapshotted and hashed off the host).
pub const MAX_HASH_BYTES: u64 = 2 * 1024 * 1024 * 1024;

fn hash(root: &HostRoot, shown: &str, real: &Path) -> Result<Value, TriageError> {
    // The directory's symlinks are resolved once, here; nothing after follows one.
    let resolved = crate::host::paths::resolve(&root.0, real).map_err(io(shown))?;
    let before = std::fs::symlink_metadata(&resolved).map_err(io(shown))?;
    if !before.file_type().is_file() {
        return Err(TriageError::Refused(format!(
            "{shown} is a {}, not a regular file",
            kind(&before.file_type())
        )));
    }
    if before.len() > MAX_HASH_BYTES {
        return Err(TriageError::Refused(format!(
            "{shown} is {} bytes, over the {MAX_HASH_BYTES}-byte limit for a triage hash: take a snapshot of it instead",
            before.len()
        )));
    }
    // The path may have been swapped between lstat and open: hash only the
    // file we checked, and never wait on a FIFO put in its place.
    let file = crate::host::paths::open_regular(&resolved, &before)
        .map_err(|e| TriageError::Refused(format!("{shown}: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    // Bounded even if the file grows while it is read.
    let mut file = file.take(MAX_HASH_BYTES + 1);
    loop {
        let n = file.read(&mut buf).map_err(io(shown))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    if size > MAX_HASH_BYTES {
        return Err(TriageError::Refused(format!(
            "{shown} grew past the {MAX_HASH_BYTES}-byte limit while it was hashed"
        )));
    }
    let digest = bannin_proto::hex(hasher.finalize());
    let mut v = json!({ "path": shown, "sha256": digest, "size": size });
    // Where the path led, when a directory on the way was a symlink
    // (/bin → /usr/bin): what was hashed is named exactly.
    let canonical_root = std::fs::canonicalize(&root.0).unwrap_or_else(|_| root.0.clone());
    if let Ok(inside) = resolved.strip_prefix(&canonical_root) {
        let at = Path::new("/").join(inside);
        if escape(&at) != shown {
            v["resolved"] = Value::String(escape(&at));
        }
    }
    Ok(v)
}

fn ls(real: &Path) -> Result<Vec<Value>, TriageError> {
    let shown = escape(real);
    let m = std::fs::symlink_metadata(real).map_err(io(&shown))?;
    if !m.is_dir() {
        return Err(TriageError::Refused(format!(
            "not a directory (it is a {})",
            kind(&m.file_type())
        )));
    }
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(real).map_err(io(&shown))?.flatten() {
        if rows.len() > MAX_ROWS {
            break;
        }
        let name = escape(Path::new(&entry.file_name()));
        match entry.metadata() {
            Ok(m) => rows.push(json!({
                "name": name,
                "type": kind(&m.file_type()),
                "size": m.len(),
                "mode": format!("{:o}", m.mode() & 0o7777),
                "uid": m.uid(),
                "mtime": m.mtime(),
            })),
            Err(e) => rows.push(json!({ "name": name, "error": e.to_string() })),
        }
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(rows)
}

fn processes(root: &HostRoot) -> Vec<Value> {
    let boot = proc::boot_time(root);
    // Account names by uid, from the host's own passwd (a uid without one
    // stays blank), and a uid's other names where it has several.
    let mut names = accounts::UserNames::new(root.clone());
    // USER_HZ is 100 on every Linux architecture Bannin supports.
    const TICKS: i64 = 100;
    let mut rows = Vec::new();
    for pid in proc::pids(root) {
        let base = root.join(format!("/proc/{pid}"));
        let Some((comm, ppid, start_ticks)) = std::fs::read_to_string(base.join("stat"))
            .ok()
            .and_then(|stat| proc::parse_stat(&stat))
        else {
            continue;
        };
        let start_ticks = i64::try_from(start_ticks).unwrap_or(0);
        let uid = proc::uid_of(root, pid);
        let exe = std::fs::read_link(base.join("exe"))
            .map(|p| escape(&p))
            .unwrap_or_default();
        let cmdline: String = std::fs::read(base.join("cmdline"))
            .map(|b| {
                let shown = escape(Path::new(std::ffi::OsStr::from_bytes(
                    &b.iter()
                        .map(|c| if *c == 0 { b' ' } else { *c })
                        .collect::<Vec<u8>>(),
                )));
                shown.trim_end().chars().take(512).collect()
            })
            .unwrap_or_default();
        rows.push(json!({
            "pid": pid,
            "ppid": ppid,
            "uid": uid,
            "user": uid.map(|u| names.name(u)).unwrap_or_default(),
            "user_aliases": uid.map(|u| names.aliases(u)).unwrap_or_default(),
            "comm": proc::full_name(&comm, &exe),
            "exe": exe,
            "deleted_exe": exe.ends_with(" (deleted)"),
            "cmdline": cmdline,
            "started": boot + start_ticks / TICKS,
        }));
    }
    rows.sort_by_key(|r| r["pid"].as_u64());
    rows
}

/// Listening or connected sockets, each with the process that owns it (pid,
/// name, executable) and its user's name, sorted by protocol then local port.
fn sockets(root: &HostRoot, listening: bool) -> Vec<Value> {
    let mut found = Vec::new();
    for protocol in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(root.join(format!("/proc/net/{protocol}"))) else {
            continue;
        };
        for s in parse_sockets(&text, protocol) {
            let tcp = protocol.starts_with("tcp");
            let is_listener = if tcp {
                s.state == 0x0A
            } else {
                s.remote.1 == 0
            };
            if is_listener != listening {
                continue;
            }
            found.push((protocol, s));
        }
    }
    found.sort_by_key(|(protocol, s)| (*protocol, s.local.1, s.local.0, s.remote.1));
    let inodes: BTreeSet<u64> = found
        .iter()
        .map(|(_, s)| s.inode)
        .filter(|i| *i != 0)
        .collect();
    let owners = crate::host::net::socket_owners(root, &inodes);
    let names: std::collections::BTreeMap<u32, String> =
        std::fs::read_to_string(root.join("/etc/passwd"))
            .map(|text| {
                accounts::parse_passwd(&text)
                    .into_iter()
                    .map(|u| (u.uid, u.name))
                    .collect()
            })
            .unwrap_or_default();
    found
        .into_iter()
        .map(|(protocol, s)| {
            let tcp = protocol.starts_with("tcp");
            let owner = owners.get(&s.inode);
            json!({
                "protocol": protocol,
                "local": format!("{}:{}", s.local.0, s.local.1),
                "remote": format!("{}:{}", s.remote.0, s.remote.1),
                "state": if tcp { tcp_state(s.state) } else { "udp" },
                "pid": owner.map(|o| o.0),
                "process": owner.map(|o| escape(Path::new(&o.1))),
                "exe": owner.map(|o| escape(Path::new(&o.2))),
                "user": names.get(&s.uid).map_or_else(|| s.uid.to_string(), |n| escape(Path::new(n))),
                "uid": s.uid,
                "inode": s.inode,
            })
        })
        .collect()
}

fn users(root: &HostRoot) -> Result<Vec<Value>, TriageError> {
    let text = std::fs::read_to_string(root.join("/etc/passwd")).map_err(io("/etc/passwd"))?;
    Ok(accounts::parse_passwd(&text)
        .into_iter()
        .map(|u| {
            json!({
                "name": u.name, "uid": u.uid, "gid": u.gid,
                "gecos": u.gecos, "home": u.home, "shell": u.shell,
            })
        })
        .collect())
}

/// Logged-in sessions from utmp (`struct utmp`, 384 bytes per record on Linux).
fn logins(root: &HostRoot) -> Result<Vec<Value>, TriageError> {
    let path = ["/run/utmp", "/var/run/utmp"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists());
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let bytes = std::fs::read(&path).map_err(io(&path.display().to_string()))?;
    // Names and hosts come from whoever logged in: escaped like any host text.
    let text = |s: &str| escape(Path::new(s));
    Ok(auth_log::parse_utmp(&bytes)
        .into_iter()
        .map(|s| {
            json!({
                "user": text(&s.user),
                "line": text(&s.line),
                "host": text(&s.host),
                "pid": s.pid,
                "since": s.since,
            })
        })
        .collect())
}

fn services(root: &HostRoot) -> Vec<Value> {
    let mut enabled = BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir(root.join("/etc/systemd/system")) {
        for wants in dir
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        {
            if let Ok(links) = std::fs::read_dir(wants.path()) {
                for l in links.flatten() {
                    enabled.insert(l.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut rows = Vec::new();
    for dir in [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.ends_with(".service") || name.ends_with(".timer"))
                || !seen.insert(name.clone())
            {
                continue;
            }
            rows.push(json!({
                "unit": name,
                "path": format!("{dir}/{name}"),
                "enabled": enabled.contains(&name),
                "mtime": e.metadata().map(|m| m.mtime()).unwrap_or(0),
            }));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> HostRoot {
        HostRoot(PathBuf::from("/"))
    }

    #[test]
    fn listeners_name_their_process_and_user_and_are_sorted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let answer: Value =
            serde_json::from_str(&answer(&root(), Question::Listeners, None).expect("listeners"))
                .expect("json");
        let rows = answer["rows"].as_array().expect("rows");
        let mine = rows
            .iter()
            .find(|r| r["local"] == format!("127.0.0.1:{port}").as_str())
            .unwrap_or_else(|| panic!("our listener: {answer}"));
        assert_eq!(mine["pid"], std::process::id(), "{mine}");
        assert!(
            mine["process"].as_str().is_some_and(|p| !p.is_empty()),
            "{mine}"
        );
        assert!(
            mine["exe"].as_str().is_some_and(|e| e.starts_with('/')),
            "{mine}"
        );
        let uid = nix::unistd::getuid().as_raw();
        if uid == 0 {
            assert_eq!(mine["user"], "root", "{mine}");
        }
        let order: Vec<(String, u64)> = rows
            .iter()
            .map(|r| {
                let local = r["local"].as_str().unwrap_or_default();
                let port = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (r["protocol"].as_str().unwrap_or_default().to_owned(), port)
            })
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "sorted by protocol, then port");
    }

    #[test]
    fn every_question_is_named_as_it_parses() {
        for name in QUESTIONS {
            let q: Question = name.parse().expect(name);
            assert_eq!(q.name(), name);
        }
        assert!("rm".parse::<Question>().is_err());
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert!(host_path(&root(), "etc/passwd").is_err());
        assert!(host_path(&root(), "/etc/../etc/shadow").is_err());
        assert!(host_path(&root(), "/etc/passwd").is_ok());
    }

    #[test]
    fn hash_refuses_what_is_not_a_regular_file() {
        let err = answer(&root(), Question::Hash, Some("/dev/null"))
            .expect_err("device")
            .to_string();
        assert!(err.contains("char_device"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).expect("symlink");
        let err = answer(&root(), Question::Hash, link.to_str())
            .expect_err("symlink")
            .to_string();
        assert!(err.contains("symlink"), "{err}");
    }

    #[test]
    fn hash_is_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").expect("write");
        let text = answer(&root(), Question::Hash, f.to_str()).expect("hash");
        assert!(
            text.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{text}"
        );
    }

    #[test]
    fn hash_names_where_a_symlinked_directory_led() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("usr/bin")).expect("dirs");
        std::fs::write(dir.path().join("usr/bin/tool"), b"abc").expect("write");
        // A merged /usr, as on Debian: /bin is a symlink to usr/bin.
        std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).expect("symlink");
        let root = HostRoot(dir.path().to_owned());
        let text = answer(&root, Question::Hash, Some("/bin/tool")).expect("hash");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["rows"][0]["path"], "/bin/tool", "{v}");
        assert_eq!(v["rows"][0]["resolved"], "/usr/bin/tool", "{v}");
        // A symlink out of the root is not followed.
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).expect("symlink");
        let err = answer(&root, Question::Hash, Some("/etc/hostname"))
            .expect_err("outside the root")
            .to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn answers_are_bounded() {
        let rows = (0..20_000)
            .map(|i| json!({ "i": i, "pad": "x".repeat(100) }))
            .collect();
        let text = bounded("t", rows);
        assert!(text.len() <= MAX_BYTES);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["truncated"], true);
        assert_eq!(v["total"], 20_000);
    }

    #[test]
    fn processes_include_this_one() {
        let text = answer(&root(), Question::Processes, None).expect("processes");
        let v: Value = serde_json::from_str(&text).expect("json");
        let me = std::process::id();
        assert!(
            v["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .any(|r| r["pid"] == me)
        );
    }
}
