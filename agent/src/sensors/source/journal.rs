//! The systemd journal, read the way Vector and Fluent Bit's `journalctl`
//! mode do: `journalctl --output=json` from a saved cursor, so nothing is
//! linked against libsystemd and a restart neither repeats nor skips entries.
//! The first read starts at the journal's end (`read_existing`: its start).
//!
//! Each entry becomes a syslog-shaped line (`TIME HOST IDENT[PID]: MESSAGE`) so
//! the auth parsers and pattern rules read journal and files alike.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::host::HostRoot;

/// Most entries read per sweep; the rest waits for the next.
pub const MAX_ENTRIES_PER_SWEEP: usize = 20_000;
/// Longest journal line (JSON) kept; longer entries are skipped.
const MAX_JSON_LINE: usize = 64 * 1024;

/// One journal entry, as the parsers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `SYSLOG_IDENTIFIER` (or `_COMM`).
    pub ident: String,
    /// `MESSAGE`.
    pub message: String,
    /// `TIME HOST IDENT[PID]: MESSAGE`.
    pub line: String,
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// journalctl is not installed where config says.
    #[error("the journal exists but {0} cannot be run: {1}")]
    Spawn(PathBuf, std::io::Error),
    /// journalctl failed.
    #[error("journalctl failed: {0}")]
    Failed(String),
}

/// Whether the host under `root` keeps a journal (persistent or volatile).
pub fn present(root: &HostRoot) -> bool {
    ["/var/log/journal", "/run/log/journal"]
        .iter()
        .any(|d| std::fs::read_dir(root.join(d)).is_ok_and(|mut entries| entries.next().is_some()))
}

/// Parses one line of `journalctl --output=json`: the entry and its cursor.
pub fn parse_entry(json: &str) -> Option<(Option<Entry>, String)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let field = |name: &str| -> Option<String> {
        match v.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            // Fields that are not UTF-8 come as arrays of bytes.
            serde_json::Value::Array(bytes) => Some(
                String::from_utf8_lossy(
                    &bytes
                        .iter()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect::<Vec<u8>>(),
                )
                .into_owned(),
            ),
            _ => None,
        }
    };
    let cursor = field("__CURSOR")?;
    let Some(message) = field("MESSAGE") else {
        return Some((None, cursor));
    };
    let ident = field("SYSLOG_IDENTIFIER")
        .or_else(|| field("_COMM"))
        .unwrap_or_default();
    let pid = field("SYSLOG_PID").or_else(|| field("_PID"));
    let host = field("_HOSTNAME").unwrap_or_else(|| "-".into());
    let time = field("__REALTIME_TIMESTAMP")
        .and_then(|us| us.parse::<i128>().ok())
        .and_then(|us| time::OffsetDateTime::from_unix_timestamp_nanos(us * 1000).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    let tag = match pid {
        Some(pid) => format!("{ident}[{pid}]"),
        None => ident.clone(),
    };
    let line = format!("{time} {host} {tag}: {message}");
    Some((
        Some(Entry {
            ident,
            message,
            line,
        }),
        cursor,
    ))
}

fn command(journalctl: &Path, root: &HostRoot) -> Command {
    let mut command = Command::new(journalctl);
    command.args(["--output=json", "--no-pager", "--quiet", "--all"]);
    if root.0 != Path::new("/") {
        command.arg(format!("--root={}", root.0.display()));
    }
    command
}

/// Entries a follower read and the sensor has not taken yet.
#[derive(Default)]
pub struct Followed {
    /// Entries (None: an entry without a message, which only moves the cursor)
    /// with their cursors, oldest first.
    pub entries: VecDeque<(Option<Entry>, String)>,
    /// Why journalctl is not following, if it is not.
    pub problem: Option<String>,
    /// The child's pid, to stop it.
    pid: Option<u32>,
    /// Set when the follower should stop.
    stop: bool,
}

/// A `journalctl --follow` child and the thread reading it; stopped when dropped.
pub struct Follower {
    /// What it read.
    pub queue: Arc<Mutex<Followed>>,
}

impl Follower {
    /// Follows the journal from `cursor`, queueing entries (at most
    /// [`MAX_ENTRIES_PER_SWEEP`] waiting: past it, reading pauses, nothing is
    /// dropped). journalctl is restarted from the last cursor if it exits.
    pub fn start(
        journalctl: PathBuf,
        root: HostRoot,
        cursor: Option<String>,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Mutex::new(Followed::default()));
        let shared = queue.clone();
        std::thread::Builder::new()
            .name("bannin-journal".into())
            .spawn(move || follow(&journalctl, &root, cursor, &shared))?;
        Ok(Self { queue })
    }

    /// Takes what was read: the entries and the cursor after the last of them.
    pub fn take(&self) -> (Vec<Entry>, Option<String>, Option<String>) {
        let mut q = bannin_proto::lock(&self.queue);
        let mut last = None;
        let entries = q
            .entries
            .drain(..)
            .filter_map(|(entry, cursor)| {
                last = Some(cursor);
                entry
            })
            .collect();
        (entries, last, q.problem.clone())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut q = bannin_proto::lock(&self.queue);
        q.stop = true;
        if let Some(pid) = q.pid.take().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

fn follow(journalctl: &Path, root: &HostRoot, mut cursor: Option<String>, queue: &Mutex<Followed>) {
    loop {
        if bannin_proto::lock(queue).stop {
            return;
        }
        let mut command = command(journalctl, root);
        command.arg("--follow");
        match &cursor {
            Some(c) => command.arg(format!("--after-cursor={c}")),
            None => command.arg("--lines=0"),
        };
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                bannin_proto::lock(queue).problem =
                    Some(JournalError::Spawn(journalctl.to_path_buf(), e).to_string());
                std::thread::sleep(Duration::from_secs(30));
                continue;
            }
        };
        {
            let mut q = bannin_proto::lock(queue);
            q.pid = Some(child.id());
            q.problem = None;
            if q.stop {
                let _ = child.kill();
            }
        }
        if let Some(stdout) = child.stdout.take() {
            let mut reader = BufReader::new(stdout);
            let mut buf = String::new();
            loop {
                buf.clear();
                match reader.read_line(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.len() > MAX_JSON_LINE {
                    continue;
                }
                let Some((entry, at)) = parse_entry(buf.trim_end()) else {
                    continue;
                };
                cursor = Some(at.clone());
                loop {
                    let mut q = bannin_proto::lock(queue);
                    if q.stop {
                        break;
                    }
                    if q.entries.len() < MAX_ENTRIES_PER_SWEEP {
                        q.entries.push_back((entry, at));
                        break;
                    }
                    drop(q);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut q = bannin_proto::lock(queue);
        q.pid = None;
        if q.stop {
            return;
        }
        q.problem = Some("journalctl stopped following; restarting".into());
        drop(q);
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Reads the entries after `cursor` (at most [`MAX_ENTRIES_PER_SWEEP`]) and
/// returns them with the cursor to continue from. Without a cursor, returns no
/// entries and the cursor of the journal's end, unless `from_start`.
pub fn read(
    journalctl: &Path,
    root: &HostRoot,
    cursor: Option<&str>,
    from_start: bool,
) -> Result<(Vec<Entry>, Option<String>), JournalError> {
    let mut command = command(journalctl, root);
    let tail_only = cursor.is_none() && !from_start;
    match cursor {
        Some(c) => {
            command.arg(format!("--after-cursor={c}"));
        }
        None if tail_only => {
            command.arg("--lines=1");
        }
        None => {}
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| JournalError::Spawn(journalctl.to_path_buf(), e))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(JournalError::Failed("no output pipe".into()));
    };
    let mut entries = Vec::new();
    let mut last = cursor.map(str::to_owned);
    let mut reader = BufReader::new(stdout);
    let mut buf = String::new();
    let mut complete = true;
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(JournalError::Failed(e.to_string())),
        }
        if buf.len() > MAX_JSON_LINE {
            continue;
        }
        let Some((entry, at)) = parse_entry(buf.trim_end()) else {
            continue;
        };
        last = Some(at);
        if !tail_only && let Some(e) = entry {
            entries.push(e);
        }
        if entries.len() >= MAX_ENTRIES_PER_SWEEP {
            complete = false;
            break;
        }
    }
    if !complete {
        let _ = child.kill();
    }
    let status = child
        .wait_with_output()
        .map_err(|e| JournalError::Failed(e.to_string()))?;
    if complete && !status.status.success() {
        let why = String::from_utf8_lossy(&status.stderr);
        return Err(JournalError::Failed(
            why.lines().next().unwrap_or("no reason given").to_owned(),
        ));
    }
    Ok((entries, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_entries_become_syslog_lines() {
        let (entry, cursor) = parse_entry(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764100000000000","_HOSTNAME":"web-1","SYSLOG_IDENTIFIER":"sshd","_PID":"4242","MESSAGE":"Accepted password for alice from 203.0.113.9 port 50000 ssh2"}"#,
        )
        .expect("entry");
        assert_eq!(cursor, "s=1;i=2");
        let entry = entry.expect("message");
        assert_eq!(
            entry.line,
            "2025-11-25T19:46:40Z web-1 sshd[4242]: Accepted password for alice from 203.0.113.9 port 50000 ssh2"
        );
        assert!(crate::host::auth_log::parse_auth_line(&entry.line).is_some());
        // A message that is not UTF-8 arrives as bytes.
        let (entry, _) =
            parse_entry(r#"{"__CURSOR":"c","MESSAGE":[104,105,255],"_COMM":"x"}"#).expect("bytes");
        assert_eq!(entry.expect("message").message, "hi\u{fffd}");
        // No message: only the cursor moves.
        assert_eq!(parse_entry(r#"{"__CURSOR":"c"}"#), Some((None, "c".into())));
        assert_eq!(parse_entry("not json"), None);
        assert_eq!(parse_entry(r#"{"MESSAGE":"no cursor"}"#), None);
    }
}
