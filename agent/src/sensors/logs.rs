//! Logs: auth logs, utmp, Suricata alerts, ClamAV detections and pattern
//! rules, each file followed from where the last sweep stopped.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `account.sudo` | a sudo command (refusals: not in sudoers, wrong password, not allowed) | low (refused: high) |
//! | `account.lockouts` | pam_faillock locked an account | high |
//! | `account.dormant_login` | a login to an account unused for `dormant_days` | high |
//! | `account.multi_source` | one account with live sessions from several remote addresses (utmp) | high |
//! | `ids.alert` | a Suricata `eve.json` alert (severity 1 high, 2 medium, 3 low) | per alert |
//! | `av.detection` | a ClamAV `FOUND` line | high |
//! | `log.pattern` | a pattern rule matched (defaults: kernel taint, segfault, OOM kill; and failed logins from one source past `failed_login_threshold` within a minute) | per rule |
//! | `account.login`, `account.login_failed` | telemetry: logins, and failures summed per sweep | info |
//!
//! Each file's device, inode and offset are saved atomically with the events
//! read from it, so a restart neither repeats nor skips lines. A rotated file
//! (new inode) is finished from the old inode if it is still in the same
//! directory, then read from the start. A file seen for the first time is read
//! from its end (`read_existing` reads it whole). Missing files are idle
//! sources, not errors.
//!
//! The systemd journal ([`super::source::journal`], from a saved cursor) is the auth
//! source when no auth log file exists — Debian 12 without rsyslog, RHEL 9 —
//! and feeds the pattern rules without `files` when no pattern file exists;
//! where rsyslog writes both, the files are read and the journal is not
//! counted twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::now_unix_ms;
use bannin_proto::v1::{self, Severity};
use serde::{Deserialize, Serialize};

use super::source::journal;
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::LogsConfig;
use crate::host::accounts::UserNames;
use crate::host::auth_log::{
    Attempt, AuthEvent, Pairing, auth_line_pid, parse_auth_line, parse_lastlog, parse_utmp,
};

/// Most bytes read from one file per sweep; the rest waits for the next.
pub const MAX_READ_PER_SWEEP: u64 = 16 * 1024 * 1024;
/// Longest line kept; longer ones are cut.
const MAX_LINE: usize = 16 * 1024;
/// Window of the failed-login counter.
const FAILURE_WINDOW_MS: i64 = 60_000;

/// Where the sensor stopped in one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Bytes consumed.
    pub offset: u64,
}

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsState {
    /// File → position.
    pub positions: BTreeMap<String, Position>,
    /// Account → last login (Unix seconds).
    pub last_login: BTreeMap<String, i64>,
    /// Whether lastlog was read once.
    pub seeded: bool,
    /// Where reading the journal stopped.
    #[serde(default)]
    pub journal_cursor: Option<String>,
}

/// Which parser reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Auth,
    Suricata,
    ClamAv,
    Patterns,
}

/// The sensor.
pub struct Logs {
    root: HostRoot,
    config: LogsConfig,
    state: LogsState,
    /// Failures per source address in the current window: (window start, count, users, raised).
    failures: BTreeMap<String, (i64, u32, BTreeSet<String>, bool)>,
    /// Multi-source sessions already reported: user → hosts.
    multi: BTreeMap<String, BTreeSet<String>>,
    /// journalctl --follow, after the first sweep caught up.
    follower: Option<journal::Follower>,
    /// sshd's lines of one attempt, paired.
    pairing: Pairing,
}

/// One failed attempt into the sweep's failures, by (user, source, service).
fn count_failure(failed: &mut BTreeMap<(String, String, &'static str), Vec<i64>>, a: Attempt) {
    let user = if a.invalid_user {
        format!("{} (invalid)", a.user)
    } else {
        a.user
    };
    failed
        .entry((user, a.source, a.service))
        .or_default()
        .push(a.at);
}

impl Logs {
    /// A sensor reading under `root`, continuing where it stopped.
    pub fn new(root: HostRoot, config: LogsConfig, state: Option<LogsState>) -> Self {
        Self {
            root,
            config,
            state: state.unwrap_or_default(),
            failures: BTreeMap::new(),
            multi: BTreeMap::new(),
            follower: None,
            pairing: Pairing::default(),
        }
    }

    fn sources(&self) -> Vec<(PathBuf, Source)> {
        let c = &self.config;
        let mut out: Vec<(PathBuf, Source)> = Vec::new();
        out.extend(c.auth_logs.iter().map(|p| (p.clone(), Source::Auth)));
        out.extend(c.suricata_eve.iter().map(|p| (p.clone(), Source::Suricata)));
        out.extend(c.clamav_logs.iter().map(|p| (p.clone(), Source::ClamAv)));
        let mut pattern_files: BTreeSet<PathBuf> = c.pattern_files.iter().cloned().collect();
        for rule in &c.patterns {
            pattern_files.extend(rule.files.iter().cloned());
        }
        out.extend(pattern_files.into_iter().map(|p| (p, Source::Patterns)));
        out
    }

    /// New complete lines of `host_path` since the saved position, and the new position.
    fn read_new(&self, host_path: &Path) -> std::io::Result<Option<(Vec<String>, Position)>> {
        let real = self.root.join(host_path);
        let meta = match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let key = host_path.display().to_string();
        let saved = self.state.positions.get(&key).copied();
        let mut lines = Vec::new();
        let start = match saved {
            None if !self.config.read_existing => meta.len(),
            None => 0,
            Some(p) if p.dev == meta.dev() && p.ino == meta.ino() => {
                if meta.len() < p.offset {
                    0 // truncated in place
                } else {
                    p.offset
                }
            }
            Some(p) => {
                // Rotated: finish the old inode if it is still next to the new file.
                if let Some(old) = find_inode(&real, p.dev, p.ino) {
                    read_lines(&old, p.offset, &mut lines)?;
                }
                0
            }
        };
        let consumed = read_lines(&real, start, &mut lines)?;
        Ok(Some((
            lines,
            Position {
                dev: meta.dev(),
                ino: meta.ino(),
                offset: start + consumed,
            },
        )))
    }

    fn seed_last_logins(&mut self) {
        if self.state.seeded {
            return;
        }
        self.state.seeded = true;
        let Ok(bytes) = std::fs::read(self.root.join(&self.config.lastlog)) else {
            return;
        };
        let mut names = UserNames::new(self.root.clone());
        for (uid, at) in parse_lastlog(&bytes) {
            let name = names.name(uid);
            if !name.is_empty() {
                self.state.last_login.entry(name).or_insert(at);
            }
        }
    }

    fn auth(
        &mut self,
        line: &str,
        out: &mut Vec<v1::Event>,
        failed: &mut BTreeMap<(String, String, &'static str), Vec<i64>>,
    ) {
        let Some(e) = parse_auth_line(line) else {
            return;
        };
        // The log's own time: a burst read late (after an outage) is still a burst.
        let at =
            crate::host::auth_log::syslog_time(line, now_unix_ms()).unwrap_or_else(now_unix_ms);
        let now_s = now_unix_ms() / 1000;
        match e {
            AuthEvent::Accepted {
                user,
                source,
                method,
                service,
            } => {
                let mut a = attrs(&[
                    ("user", &user),
                    ("source", &source),
                    ("method", &method),
                    ("service", service),
                ]);
                if service == "sshd"
                    && let Some(prev) = self.state.last_login.get(&user)
                    && now_s - prev > i64::from(self.config.dormant_days) * 86_400
                {
                    a.insert("previous_login_unix".into(), prev.to_string());
                    a.insert("dormant_days".into(), ((now_s - prev) / 86_400).to_string());
                    out.push(event(
                        "account.dormant_login",
                        Severity::High,
                        true,
                        a.clone(),
                        format!(
                            "login to {user} from {source}, unused for {} days",
                            (now_s - prev) / 86_400
                        ),
                    ));
                }
                if service == "sshd" {
                    self.state.last_login.insert(user.clone(), now_s);
                }
                out.push(event(
                    "account.login",
                    Severity::Info,
                    false,
                    a,
                    format!("{service} login of {user} from {source} ({method})"),
                ));
            }
            AuthEvent::Failed {
                user,
                source,
                invalid_user,
                service,
                counted,
            } => {
                // Lines that accompany an attempt are paired with it by the
                // sshd process that wrote them: one attempt, counted once,
                // whichever of its lines the setup writes.
                let attempt = Attempt {
                    user,
                    source,
                    invalid_user,
                    service,
                    at,
                };
                if let Some(a) = self.pairing.take(auth_line_pid(line), attempt, counted) {
                    count_failure(failed, a);
                }
            }
            AuthEvent::Sudo {
                user,
                run_as,
                command,
                outcome,
            } => {
                let severity = if outcome == "allowed" {
                    Severity::Low
                } else {
                    Severity::High
                };
                out.push(event(
                    "account.sudo",
                    severity,
                    true,
                    attrs(&[
                        ("user", &user),
                        ("run_as", &run_as),
                        ("command", &command),
                        ("outcome", outcome),
                    ]),
                    match outcome {
                        "allowed" => format!("{user} ran as {run_as}: {command}"),
                        o => format!(
                            "sudo refused for {user} ({}): {command}",
                            o.replace('_', " ")
                        ),
                    },
                ));
            }
            AuthEvent::Lockout { user, service } => out.push(event(
                "account.lockouts",
                Severity::High,
                true,
                attrs(&[("user", &user), ("service", &service)]),
                format!("account {user} locked after repeated failures ({service})"),
            )),
        }
    }

    /// Failed logins summed per sweep, and a finding for a source past the
    /// threshold within [`FAILURE_WINDOW_MS`] — measured by the times the log
    /// wrote, not by when the agent read them: a burst read an hour late is one
    /// burst, and failures spread over an hour read at once are not.
    fn failures(
        &mut self,
        failed: BTreeMap<(String, String, &'static str), Vec<i64>>,
        out: &mut Vec<v1::Event>,
    ) {
        let mut by_source: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
        let mut latest = i64::MIN;
        for ((user, source, service), times) in failed {
            let count = times.len();
            out.push(event(
                "account.login_failed",
                Severity::Info,
                false,
                attrs(&[
                    ("user", &user),
                    ("source", &source),
                    ("service", service),
                    ("count", &count.to_string()),
                ]),
                format!("{count} failed {service} login(s) for {user} from {source}"),
            ));
            let list = by_source.entry(source).or_default();
            for t in times {
                latest = latest.max(t);
                list.push((t, user.clone()));
            }
        }
        for (source, mut attempts) in by_source {
            attempts.sort();
            for (t, user) in attempts {
                let w =
                    self.failures
                        .entry(source.clone())
                        .or_insert((t, 0, BTreeSet::new(), false));
                if t - w.0 > FAILURE_WINDOW_MS || t < w.0 {
                    *w = (t, 0, BTreeSet::new(), false);
                }
                w.1 += 1;
                if w.2.len() < 50 {
                    w.2.insert(user);
                }
                if w.1 >= self.config.failed_login_threshold && !w.3 {
                    w.3 = true;
                    let users: Vec<String> = w.2.iter().cloned().collect();
                    let mut a = attrs(&[
                        ("rule", "repeated_auth_failures"),
                        ("source", &source),
                        ("count", &w.1.to_string()),
                        ("users", &users.join(",")),
                        ("first_failure_unix_ms", &w.0.to_string()),
                        ("last_failure_unix_ms", &t.to_string()),
                    ]);
                    a.insert("attack.technique".into(), "T1110".into());
                    out.push(event(
                        "log.pattern",
                        Severity::Medium,
                        true,
                        a,
                        format!(
                            "{} failed logins from {} within a minute (users: {})",
                            w.1,
                            if source.is_empty() { "local" } else { &source },
                            users.join(", ")
                        ),
                    ));
                }
            }
        }
        if latest > i64::MIN {
            self.failures
                .retain(|_, w| latest - w.0 <= FAILURE_WINDOW_MS);
        }
    }

    fn sessions(&mut self, out: &mut Vec<v1::Event>) {
        let Ok(bytes) = std::fs::read(self.root.join(&self.config.utmp)) else {
            return;
        };
        let mut hosts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in parse_utmp(&bytes) {
            // ":0" and the like are local displays, not remote sources.
            if !s.host.is_empty() && !s.host.starts_with(':') {
                hosts.entry(s.user).or_default().insert(s.host);
            }
        }
        hosts.retain(|_, h| h.len() >= 2);
        for (user, from) in &hosts {
            if self.multi.get(user) == Some(from) {
                continue;
            }
            let list: Vec<String> = from.iter().cloned().collect();
            out.push(event(
                "account.multi_source",
                Severity::High,
                true,
                attrs(&[("user", user), ("sources", &list.join(","))]),
                format!(
                    "{user} has live sessions from {} places at once: {}",
                    list.len(),
                    list.join(", ")
                ),
            ));
        }
        self.multi = hosts;
    }
}

/// A path next to `file` with inode `ino` on device `dev` (a rotated log).
impl Logs {
    /// Runs the pattern rules over one line of `file` (`None`: the journal,
    /// read by the rules without `files`), shown as `shown`.
    fn match_patterns(
        &self,
        line: &str,
        file: Option<&Path>,
        shown: &str,
        out: &mut Vec<v1::Event>,
    ) {
        for rule in &self.config.patterns {
            let applies = match file {
                None => rule.files.is_empty(),
                Some(path) if rule.files.is_empty() => {
                    self.config.pattern_files.iter().any(|p| p == path)
                }
                Some(path) => rule.files.iter().any(|p| p == path),
            };
            if applies && rule.regex.is_match(line) {
                out.push(event(
                    "log.pattern",
                    rule.severity,
                    true,
                    attrs(&[("rule", &rule.name), ("file", shown), ("line", line)]),
                    format!("{}: {line}", rule.name),
                ));
            }
        }
    }
}

fn find_inode(file: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = file.parent()?;
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let m = e.metadata().ok()?;
        (m.is_file() && m.dev() == dev && m.ino() == ino).then(|| e.path())
    })
}

/// Appends the complete lines of `path` from `offset` (at most
/// [`MAX_READ_PER_SWEEP`] bytes) to `lines`; returns the bytes consumed.
fn read_lines(path: &Path, offset: u64, lines: &mut Vec<String>) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(MAX_READ_PER_SWEEP).read_to_end(&mut buf)?;
    let Some(last_newline) = buf.iter().rposition(|b| *b == b'\n') else {
        return Ok(0);
    };
    for raw in buf[..last_newline].split(|b| *b == b'\n') {
        let raw = &raw[..raw.len().min(MAX_LINE)];
        lines.push(String::from_utf8_lossy(raw).into_owned());
    }
    Ok(last_newline as u64 + 1)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An `ids.alert` from one eve.json line, if it is an alert.
pub fn suricata_alert(line: &str) -> Option<v1::Event> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["event_type"] != "alert" {
        return None;
    }
    let alert = &v["alert"];
    let severity = match alert["severity"].as_u64() {
        Some(1) => Severity::High,
        Some(2) => Severity::Medium,
        _ => Severity::Low,
    };
    let s = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let a = attrs(&[
        ("signature", &s(&alert["signature"])),
        ("signature_id", &s(&alert["signature_id"])),
        ("category", &s(&alert["category"])),
        ("action", &s(&alert["action"])),
        ("src_ip", &s(&v["src_ip"])),
        ("src_port", &s(&v["src_port"])),
        ("dest_ip", &s(&v["dest_ip"])),
        ("dest_port", &s(&v["dest_port"])),
        ("proto", &s(&v["proto"])),
        ("timestamp", &s(&v["timestamp"])),
    ]);
    let summary = format!(
        "IDS alert: {} ({}:{} → {}:{})",
        a["signature"], a["src_ip"], a["src_port"], a["dest_ip"], a["dest_port"]
    );
    Some(event("ids.alert", severity, true, a, summary))
}

/// An `av.detection` from one ClamAV log line (`PATH: SIGNATURE FOUND`, as
/// clamscan prints and clamd logs after `->`).
pub fn clamav_detection(line: &str) -> Option<v1::Event> {
    let body = line.trim_end().strip_suffix(" FOUND")?;
    let body = body.rsplit_once(" -> ").map_or(body, |(_, b)| b);
    let (path, signature) = body.rsplit_once(": ")?;
    if path.is_empty() || signature.is_empty() {
        return None;
    }
    Some(event(
        "av.detection",
        Severity::High,
        true,
        attrs(&[("path", path), ("signature", signature)]),
        format!("antivirus detection: {signature} in {path}"),
    ))
}

impl Sensor for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        self.seed_last_logins();
        let before = self.state.clone();
        let mut problems = Vec::new();
        let mut failed = BTreeMap::new();
        let mut auth_seen = false;
        for (path, source) in self.sources() {
            let read = match self.read_new(&path) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let (lines, position) = read;
            if source == Source::Auth {
                auth_seen = true;
            }
            for line in &lines {
                match source {
                    Source::Auth => self.auth(line, &mut sweep.events, &mut failed),
                    Source::Suricata => sweep.events.extend(suricata_alert(line)),
                    Source::ClamAv => sweep.events.extend(clamav_detection(line)),
                    Source::Patterns => {
                        let shown = path.display().to_string();
                        self.match_patterns(line, Some(&path), &shown, &mut sweep.events);
                    }
                }
            }
            self.state
                .positions
                .insert(path.display().to_string(), position);
        }
        let pattern_file_seen = self
            .config
            .pattern_files
            .iter()
            .any(|p| self.root.join(p).is_file());
        if self.config.journal && journal::present(&self.root) {
            // The first sweep catches up from the saved cursor in one read; a
            // follower (journalctl --follow) then reads as entries arrive.
            let read = match &self.follower {
                Some(f) => {
                    let (entries, cursor, problem) = f.take();
                    problems.extend(problem);
                    Ok((entries, cursor))
                }
                None => journal::read(
                    &self.config.journalctl,
                    &self.root,
                    self.state.journal_cursor.as_deref(),
                    self.config.read_existing,
                )
                .inspect(|(_, cursor)| {
                    match journal::Follower::start(
                        self.config.journalctl.clone(),
                        self.root.clone(),
                        cursor.clone().or_else(|| self.state.journal_cursor.clone()),
                    ) {
                        Ok(f) => self.follower = Some(f),
                        Err(e) => tracing::warn!(error = %e, "Cannot start the journal follower"),
                    }
                }),
            };
            match read {
                Ok((entries, cursor)) => {
                    // Only the auth lines matter when the files carry the rest.
                    let auth_from_journal = !auth_seen;
                    auth_seen = true;
                    for entry in &entries {
                        if auth_from_journal {
                            self.auth(&entry.line, &mut sweep.events, &mut failed);
                        }
                        if !pattern_file_seen {
                            self.match_patterns(&entry.line, None, "journal", &mut sweep.events);
                        }
                    }
                    if cursor.is_some() {
                        self.state.journal_cursor = cursor;
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        for a in self.pairing.end_of_read() {
            count_failure(&mut failed, a);
        }
        self.failures(failed, &mut sweep.events);
        self.sessions(&mut sweep.events);
        if self.state != before {
            sweep.save_state(&self.state);
        }
        if !auth_seen {
            problems.push(format!(
                "no auth log at {} and no journal: logins, sudo and lockouts are not seen",
                self.config
                    .auth_logs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
        }
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
    use crate::host::auth_log::utmp_record;
    use std::io::Write;

    fn config(root: &Path) -> LogsConfig {
        let _ = root;
        LogsConfig {
            common: crate::config::SensorCommon {
                enabled: true,
                interval: Duration::from_secs(1),
                severity: Severity::Medium,
            },
            auth_logs: vec![PathBuf::from("/var/log/auth.log")],
            utmp: PathBuf::from("/var/run/utmp"),
            lastlog: PathBuf::from("/var/log/lastlog"),
            suricata_eve: vec![PathBuf::from("/var/log/suricata/eve.json")],
            clamav_logs: vec![PathBuf::from("/var/log/clamav/clamav.log")],
            pattern_files: vec![PathBuf::from("/var/log/kern.log")],
            patterns: crate::config::default_patterns(),
            dormant_days: 90,
            failed_login_threshold: 5,
            read_existing: false,
            journal: true,
            journalctl: PathBuf::from("journalctl"),
        }
    }

    fn append(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    fn kinds(s: &Sweep) -> Vec<String> {
        let mut k: Vec<String> = s.events.iter().map(|e| e.kind.clone()).collect();
        k.sort();
        k
    }

    #[test]
    fn repeated_failures_are_counted_by_the_logs_own_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        append(r, "/var/log/auth.log", "");
        let mut sensor = Logs::new(HostRoot(r.into()), config(r), None);
        sensor.sweep(&mut Sweep::default()).expect("first sweep");
        // Read hours late (the agent was down): five failures within 20 s are a
        // burst; five from another source over 40 minutes are not.
        let mut lines = String::new();
        for i in 0..5 {
            lines.push_str(&format!(
                "2026-11-30T03:00:{:02}+00:00 h sshd[7]: Failed password for root from 203.0.113.9 port 4{i} ssh2\n",
                i * 5
            ));
            lines.push_str(&format!(
                "2026-11-30T03:{:02}:00+00:00 h sshd[8]: Failed password for admin from 198.51.100.4 port 5{i} ssh2\n",
                i * 10
            ));
        }
        append(r, "/var/log/auth.log", &lines);
        let mut late = Sweep::default();
        sensor.sweep(&mut late).expect("sweep");
        let bursts: Vec<&v1::Event> = late
            .events
            .iter()
            .filter(|e| e.kind == "log.pattern")
            .collect();
        assert_eq!(bursts.len(), 1, "{:#?}", late.events);
        assert_eq!(bursts[0].attributes["source"], "203.0.113.9");
        assert_eq!(bursts[0].attributes["count"], "5");
        assert_eq!(bursts[0].attributes["attack.technique"], "T1110");
        assert_eq!(
            bursts[0].attributes["last_failure_unix_ms"]
                .parse::<i64>()
                .expect("ms")
                - bursts[0].attributes["first_failure_unix_ms"]
                    .parse::<i64>()
                    .expect("ms"),
            20_000
        );
    }

    /// A PAM-only log (no "Failed …" lines): every source a failure line
    /// names is in the sweep's `account.login_failed`, once per sshd process,
    /// by the end of the read after it.
    #[test]
    fn pam_and_disconnect_lines_that_stand_alone_name_their_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        append(r, "/var/log/auth.log", "");
        let mut sensor = Logs::new(HostRoot(r.into()), config(r), None);
        sensor.sweep(&mut Sweep::default()).expect("first sweep");
        append(
            r,
            "/var/log/auth.log",
            "Dec  7 10:00:01 h sshd[100]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.1  user=root\n\
             Dec  7 10:00:03 h sshd[100]: Connection closed by authenticating user root 198.51.100.1 port 40000 [preauth]\n\
             Dec  7 10:00:04 h sshd[200]: error: maximum authentication attempts exceeded for admin from 198.51.100.2 port 40001 ssh2 [preauth]\n\
             Dec  7 10:00:05 h sshd[300]: Received disconnect from 198.51.100.3 port 40002:11: Auth fail [preauth]\n",
        );
        let mut events = Vec::new();
        for _ in 0..2 {
            let mut s = Sweep::default();
            sensor.sweep(&mut s).expect("sweep");
            events.extend(s.events);
        }
        let mut sources: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.kind == "account.login_failed")
            .map(|e| {
                (
                    e.attributes["source"].clone(),
                    e.attributes["count"].clone(),
                )
            })
            .collect();
        sources.sort();
        assert_eq!(
            sources,
            [
                ("198.51.100.1".to_owned(), "1".to_owned()),
                ("198.51.100.2".to_owned(), "1".to_owned()),
                ("198.51.100.3".to_owned(), "1".to_owned()),
            ]
        );
    }

    #[test]
    fn every_source_from_where_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        append(
            r,
            "/var/log/auth.log",
            "Nov 25 09:00:00 h sshd[1]: Accepted password for old from 10.0.0.1 port 1 ssh2\n",
        );
        append(r, "/var/log/kern.log", "");
        append(r, "/var/log/suricata/eve.json", "");
        append(r, "/var/log/clamav/clamav.log", "");
        append(
            r,
            "/etc/passwd",
            "root:x:0:0::/root:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/bash\n",
        );
        // lastlog: bob (uid 1001) last logged in long ago.
        let mut lastlog = vec![0u8; 292 * 1002];
        lastlog[292 * 1001..292 * 1001 + 4].copy_from_slice(&1_500_000_000u32.to_ne_bytes());
        std::fs::write(r.join("var/log/lastlog"), lastlog).expect("lastlog");
        let mut sensor = Logs::new(HostRoot(r.into()), config(r), None);
        let mut first = Sweep::default();
        assert_eq!(sensor.sweep(&mut first).expect("sweep"), Health::Ok);
        assert!(
            first.events.is_empty(),
            "history before the first sweep is not replayed"
        );

        append(
            r,
            "/var/log/auth.log",
            concat!(
                "Nov 25 10:00:00 h sshd[2]: Accepted publickey for bob from 2001:db8::9 port 2 ssh2: ED25519 SHA256:x\n",
                "Nov 25 10:00:01 h sudo:    bob : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh\n",
                "Nov 25 10:00:02 h sudo:    eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh\n",
                "Nov 25 10:00:03 h sshd[3]: pam_faillock(sshd:auth): Consecutive login failures for user root account temporarily locked\n",
            ),
        );
        for i in 0..6 {
            append(
                r,
                "/var/log/auth.log",
                &format!(
                    "Nov 25 10:00:1{i} h sshd[4]: Failed password for invalid user u{i} from 203.0.113.7 port 4{i} ssh2\n"
                ),
            );
        }
        append(
            r,
            "/var/log/auth.log",
            "Nov 25 10:00:20 h sshd[5]: partial line without newline",
        );
        append(
            r,
            "/var/log/suricata/eve.json",
            concat!(
                r#"{"timestamp":"2026-11-25T10:00:00+0000","event_type":"alert","src_ip":"203.0.113.7","src_port":4444,"dest_ip":"10.0.0.2","dest_port":80,"proto":"TCP","alert":{"action":"allowed","signature_id":2100498,"signature":"GPL ATTACK_RESPONSE id check returned root","category":"Potentially Bad Traffic","severity":2}}"#,
                "\n",
                r#"{"event_type":"flow"}"#,
                "\n",
                "not json\n",
            ),
        );
        append(
            r,
            "/var/log/clamav/clamav.log",
            "Tue Nov 25 10:00:00 2026 -> /srv/upload/eicar.com: Win.Test.EICAR_HDB-1 FOUND\n",
        );
        append(
            r,
            "/var/log/kern.log",
            "Nov 25 10:00:00 h kernel: [1.0] app[99]: segfault at 0 ip 00007f sp 00007f error 4\n",
        );
        let mut second = Sweep::default();
        sensor.sweep(&mut second).expect("sweep");
        assert_eq!(
            kinds(&second),
            [
                "account.dormant_login",
                "account.lockouts",
                "account.login",
                "account.login_failed",
                "account.login_failed",
                "account.login_failed",
                "account.login_failed",
                "account.login_failed",
                "account.login_failed",
                "account.sudo",
                "account.sudo",
                "av.detection",
                "ids.alert",
                "log.pattern",
                "log.pattern",
            ]
        );
        let by_kind = |k: &str| {
            second
                .events
                .iter()
                .filter(|e| e.kind == k)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            by_kind("account.dormant_login")[0].attributes["user"],
            "bob"
        );
        assert_eq!(
            by_kind("account.dormant_login")[0].attributes["source"],
            "2001:db8::9"
        );
        let refused = by_kind("account.sudo")
            .into_iter()
            .find(|e| e.attributes["outcome"] == "not_in_sudoers")
            .expect("refused sudo");
        assert_eq!(refused.severity, Severity::High as i32);
        let ids = &by_kind("ids.alert")[0];
        assert_eq!(ids.severity, Severity::Medium as i32);
        assert_eq!(ids.attributes["signature_id"], "2100498");
        assert_eq!(ids.attributes["dest_port"], "80");
        assert_eq!(
            by_kind("av.detection")[0].attributes["path"],
            "/srv/upload/eicar.com"
        );
        assert_eq!(
            by_kind("av.detection")[0].attributes["signature"],
            "Win.Test.EICAR_HDB-1"
        );
        let rules: BTreeSet<&str> = by_kind("log.pattern")
            .iter()
            .map(|e| e.attributes["rule"].as_str())
            .collect();
        assert_eq!(
            rules,
            BTreeSet::from(["repeated_auth_failures", "segfault"])
        );

        // The partial line waits; once finished it is read, once.
        append(r, "/var/log/auth.log", "\n");
        let mut third = Sweep::default();
        sensor.sweep(&mut third).expect("sweep");
        assert!(third.events.is_empty(), "{:?}", kinds(&third));

        // A restart continues from the saved positions.
        let saved: LogsState =
            serde_json::from_slice(&second.state.or(third.state).expect("state")).expect("json");
        let mut restarted = Logs::new(HostRoot(r.into()), config(r), Some(saved));
        append(
            r,
            "/var/log/auth.log",
            "Nov 25 10:01:00 h sudo:    bob : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls\n",
        );
        let mut fourth = Sweep::default();
        restarted.sweep(&mut fourth).expect("sweep");
        assert_eq!(kinds(&fourth), ["account.sudo"]);
    }

    #[test]
    fn rotation_finishes_the_old_file_then_reads_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        append(r, "/var/log/auth.log", "");
        let mut sensor = Logs::new(HostRoot(r.into()), config(r), None);
        sensor.sweep(&mut Sweep::default()).expect("sweep");
        append(
            r,
            "/var/log/auth.log",
            "Nov 25 10:00:00 h sudo:    a : TTY=x ; USER=root ; COMMAND=/bin/one\n",
        );
        std::fs::rename(r.join("var/log/auth.log"), r.join("var/log/auth.log.1")).expect("rotate");
        append(
            r,
            "/var/log/auth.log",
            "Nov 25 10:00:01 h sudo:    a : TTY=x ; USER=root ; COMMAND=/bin/two\n",
        );
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        let commands: Vec<&str> = s
            .events
            .iter()
            .map(|e| e.attributes["command"].as_str())
            .collect();
        assert_eq!(commands, ["/bin/one", "/bin/two"]);
    }

    #[test]
    fn one_account_from_several_places_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        append(r, "/var/log/auth.log", "");
        let mut utmp = utmp_record("alice", "pts/0", "10.0.0.5", 10);
        utmp.extend(utmp_record("bob", "tty1", "", 11));
        utmp.extend(utmp_record("bob", "pts/2", ":0", 12));
        append(r, "/var/run/utmp", "");
        std::fs::write(r.join("var/run/utmp"), &utmp).expect("utmp");
        let mut sensor = Logs::new(HostRoot(r.into()), config(r), None);
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        assert!(s.events.is_empty());
        utmp.extend(utmp_record("alice", "pts/3", "198.51.100.4", 13));
        std::fs::write(r.join("var/run/utmp"), &utmp).expect("utmp");
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        assert_eq!(kinds(&s), ["account.multi_source"]);
        assert_eq!(s.events[0].attributes["sources"], "10.0.0.5,198.51.100.4");
        let mut again = Sweep::default();
        sensor.sweep(&mut again).expect("sweep");
        assert!(again.events.is_empty(), "reported once while it lasts");
    }

    #[test]
    fn clamav_lines() {
        assert!(clamav_detection("/tmp/eicar.com: Eicar-Signature FOUND").is_some());
        assert!(clamav_detection("/tmp/ok: OK").is_none());
        assert!(clamav_detection("FOUND").is_none());
        let e = clamav_detection("/tmp/a: b: c: Sig.X FOUND").expect("detection");
        assert_eq!(e.attributes["path"], "/tmp/a: b: c");
    }

    const MACHINE: &str = "0123456789abcdef0123456789abcdef";

    /// Writes journal entries (MESSAGE, identifier) into a new journal file
    /// under `root`, with systemd's own writer (systemd-journal-remote reading
    /// the journal export format).
    /// The program that writes real journal files, if installed.
    fn journal_writer() -> Option<&'static str> {
        [
            "/lib/systemd/systemd-journal-remote",
            "/usr/lib/systemd/systemd-journal-remote",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
    }

    fn journal_file(root: &Path, name: &str, first_us: u64, entries: &[(&str, &str)]) {
        let writer = journal_writer().expect("checked by the test");
        let dir = root.join("var/log/journal").join(MACHINE);
        std::fs::create_dir_all(&dir).expect("journal dir");
        let mut export = String::new();
        for (i, (ident, message)) in entries.iter().enumerate() {
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={MACHINE}\n_HOSTNAME=web-1\nSYSLOG_IDENTIFIER={ident}\n_PID={}\nMESSAGE={message}\n\n",
                first_us + i as u64,
                first_us + i as u64,
                1000 + i
            ));
        }
        let input = root.join(format!("{name}.export"));
        std::fs::write(&input, export).expect("export");
        let out = std::process::Command::new(writer)
            .arg(format!(
                "--output={}",
                dir.join(format!("{name}.journal")).display()
            ))
            .arg(&input)
            .output()
            .expect("systemd-journal-remote");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn sweep_until(logs: &mut Logs, want: usize) -> Vec<v1::Event> {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut events = Vec::new();
        loop {
            let mut sweep = Sweep::default();
            let health = logs.sweep(&mut sweep).expect("sweep");
            assert_eq!(health, Health::Ok);
            events.extend(sweep.events);
            if events.len() >= want || std::time::Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A host without auth.log (Debian 12 without rsyslog): logins, sudo and
    /// lockouts come from the journal, read with the real journalctl from real
    /// journal files, from a cursor that survives a restart.
    #[test]
    fn the_journal_is_the_auth_source_when_there_is_no_auth_log() {
        if journal_writer().is_none() {
            crate::testing::skip(
                "needs systemd-journal-remote (apt-get install systemd-journal-remote)",
            );
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let base = 1_764_100_000_000_000u64;
        journal_file(
            root,
            "system",
            base,
            &[(
                "sudo",
                "old : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/true",
            )],
        );
        let mut logs = Logs::new(HostRoot(root.to_path_buf()), config(root), None);
        let first = sweep_until(&mut logs, 0);
        assert!(first.is_empty(), "read from the journal's end: {first:?}");
        assert!(logs.state.journal_cursor.is_some());
        journal_file(
            root,
            "second",
            base + 1_000_000,
            &[
                (
                    "sudo",
                    "eve : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
                ),
                (
                    "sshd",
                    "pam_faillock(sshd:auth): Consecutive login failures for user root account temporarily locked",
                ),
                (
                    "kernel",
                    "e1000e: eth0 NIC Link is Up 1000 Mbps Full Duplex",
                ),
                (
                    "kernel",
                    "a-out[77]: segfault at 10 ip 0000000000401000 sp 00007ffd00000000 error 4",
                ),
            ],
        );
        let events = sweep_until(&mut logs, 3);
        let mut kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort_unstable();
        assert_eq!(
            kinds,
            ["account.lockouts", "account.sudo", "log.pattern"],
            "{events:?}"
        );
        let sudo = events
            .iter()
            .find(|e| e.kind == "account.sudo")
            .expect("sudo");
        assert_eq!(sudo.attributes["user"], "eve");
        let pattern = events
            .iter()
            .find(|e| e.kind == "log.pattern")
            .expect("pattern");
        assert_eq!(pattern.attributes["file"], "journal");
        assert!(
            pattern.attributes["line"].contains("a-out[77]: segfault at 10"),
            "{pattern:?}"
        );

        // A restart continues from the saved cursor: nothing again, the new entry once.
        let state = logs.state.clone();
        drop(logs);
        journal_file(
            root,
            "third",
            base + 2_000_000,
            &[(
                "sudo",
                "mallory : 3 incorrect password attempts ; TTY=pts/2 ; PWD=/ ; USER=root ; COMMAND=/bin/sh",
            )],
        );
        let mut restarted = Logs::new(HostRoot(root.to_path_buf()), config(root), Some(state));
        let again = sweep_until(&mut restarted, 1);
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(again[0].attributes["user"], "mallory");
    }
}
