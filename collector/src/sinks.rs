//! Export sinks: findings handed to the tools responders already run — a JSON
//! lines file (with rotation), syslog (RFC 5424 over TCP, TLS or a unix
//! datagram socket), an HTTP webhook.
//!
//! Each sink is its own task with its own durable cursor (the id of the last
//! finding it delivered, kept in the store): it reads findings after the
//! cursor, delivers them, and only then moves the cursor. Delivery is at
//! least once: a crash between delivering and saving the cursor delivers
//! those findings again, none is ever skipped. A sink that is slow or down
//! retries with exponential backoff (1 s to 60 s) and never slows ingest —
//! it reads the store, the writer never waits for it. Its lag, last error and
//! last delivery are shown by `bannin sinks`.
//!
//! What is exported, per sink:
//! - each new finding once, as the collector stored it (later folds are not
//!   re-sent);
//! - with `state_changes`, each acknowledgement, resolution and false-positive
//!   mark, read from the action log after a cursor of its own (`NAME=states`);
//! - with `telemetry = [kinds]`, the hosts' raw events of those kinds, read
//!   from the store after a cursor per host (`NAME=events=HOST`).
//!
//! In the sink's `format`: Bannin's own JSON, or OCSF ([`ocsf`]).
//!
//! Cluster mode: every collector configures the same sinks, but one at a time
//! runs each — the one holding its lease in the `BANNIN_SINK_LEASES` bucket —
//! and the cursor lives in the `BANNIN_SINKS` bucket, not in a collector's
//! store. Finding ids are the same on every collector (they apply one log in
//! one order), so when the collector running a sink dies, its lease lapses
//! and another takes the sink over from the cursor it left.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::journal::{Journal, SINK_LEASE_RENEW, SinkLease};
use crate::model::{Event, Finding, FindingState, HostRecord, Severity, StateChange};
use crate::store::{EventQuery, Store};

pub mod ocsf;

/// Findings read and delivered per round.
const BATCH: usize = 256;
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where a sink delivers.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// A JSON lines file, rotated at `max_bytes`, `keep` old files kept.
    JsonLines {
        /// The file.
        path: PathBuf,
        /// Size at which it is rotated.
        max_bytes: u64,
        /// Rotated files kept (`path.1` newest).
        keep: usize,
    },
    /// Syslog, RFC 5424.
    Syslog {
        /// How.
        transport: SyslogTransport,
        /// Facility number (16 = local0).
        facility: u8,
        /// APP-NAME.
        app_name: String,
    },
    /// HTTP(S) POST of a JSON array of findings.
    Webhook {
        /// `http://` or `https://` URL.
        url: http::Uri,
        /// CA to trust for https.
        ca: Option<PathBuf>,
        /// Extra headers (e.g. Authorization).
        headers: BTreeMap<String, String>,
    },
}

/// Syslog transports.
#[derive(Debug, Clone)]
pub enum SyslogTransport {
    /// TCP, octet-counted frames (RFC 6587).
    Tcp(String),
    /// TLS (RFC 5425), trusting `ca`, checking `server_name`.
    Tls {
        /// host:port.
        address: String,
        /// CA file.
        ca: PathBuf,
        /// Name in the server's certificate.
        server_name: String,
    },
    /// A unix datagram socket (`/dev/log`), one message per datagram.
    Unix(PathBuf),
}

/// One `[[sink]]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (the cursor's key).
    pub name: String,
    /// Where and how.
    pub kind: SinkKind,
    /// The shape of what is written.
    pub format: SinkFormat,
    /// Whether findings' state changes are exported.
    pub state_changes: bool,
    /// Event kinds exported as telemetry (`process.exec`, `file.*`); empty: none.
    pub telemetry: Vec<String>,
}

/// The shape a sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    /// Bannin's own JSON (and RFC 5424 structured data for syslog).
    Bannin,
    /// OCSF [`ocsf::VERSION`] JSON.
    Ocsf,
}

/// Whether `pattern` is a telemetry kind a sink can export: an event kind
/// (`process.exec`) or a prefix ending in `*` (`file.*`); in OCSF, one that
/// names at least one kind with an OCSF class.
pub fn check_telemetry_pattern(pattern: &str, format: SinkFormat) -> Result<(), String> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if pattern.is_empty()
        || body.contains('*')
        || !body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err("an event kind (process.exec) or a prefix ending in * (file.*)".into());
    }
    if format == SinkFormat::Ocsf {
        let mapped = [
            "process.exec",
            "file.modified",
            "net.flow",
            "net.connection",
            "net.listener",
            "account.login",
            "account.login_failed",
        ];
        let any = if pattern.ends_with('*') {
            mapped.iter().any(|k| k.starts_with(body))
        } else {
            ocsf::maps_kind(body)
        };
        if !any {
            return Err(
                "no OCSF class for it: OCSF sinks export process.exec, file.*, net.flow, net.connection, net.listener, net.new_listener, account.login and account.login_failed".into(),
            );
        }
    }
    Ok(())
}

/// Whether an event of `kind` is exported by a sink with these patterns.
fn wants(patterns: &[String], format: SinkFormat, kind: &str) -> bool {
    (format == SinkFormat::Bannin || ocsf::maps_kind(kind))
        && patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => p == kind,
        })
}

/// One record a sink delivers.
#[derive(Debug, Clone)]
pub enum Record {
    /// A new finding.
    Finding(Finding),
    /// A state change of a finding (the finding as stored now, and the change).
    Update(Finding, StateChange),
    /// A telemetry event: its host, its batch's sequence and its place in it.
    Event {
        /// The host that sent it.
        host: String,
        /// Its batch.
        sequence: u64,
        /// Its place in the batch.
        index: usize,
        /// The event.
        event: Event,
    },
}

impl Record {
    /// The record as one JSON value, in `format`; `hosts` resolves a host id
    /// to its record (OCSF's `device`).
    pub fn json(
        &self,
        format: SinkFormat,
        hosts: &mut impl FnMut(&str) -> Option<HostRecord>,
    ) -> serde_json::Value {
        match (format, self) {
            (SinkFormat::Bannin, Record::Finding(f)) => finding_json(f),
            (SinkFormat::Bannin, Record::Update(f, c)) => {
                let mut v = finding_json(f);
                v["record"] = "finding.state".into();
                v["change"] = serde_json::json!({
                    "state": c.state.as_str(),
                    "operator": c.operator,
                    "at_unix_ms": c.at_unix_ms,
                    "note": c.note,
                });
                v
            }
            (
                SinkFormat::Bannin,
                Record::Event {
                    host,
                    sequence,
                    event,
                    ..
                },
            ) => serde_json::json!({
                "record": "event",
                "host_id": host,
                "sequence": sequence,
                "kind": event.kind,
                "severity": event.severity.name(),
                "indicator": event.indicator,
                "observed_unix_ms": event.observed_unix_ms,
                "received_unix_ms": event.received_unix_ms,
                "attributes": event.attributes,
                "summary": event.summary,
            }),
            (SinkFormat::Ocsf, Record::Finding(f)) => {
                // As it was created: its state then was new.
                let created = Finding {
                    state: FindingState::New,
                    ..f.clone()
                };
                ocsf::finding(&created, hosts(&f.host_id).as_ref(), None)
            }
            (SinkFormat::Ocsf, Record::Update(f, c)) => {
                ocsf::finding(f, hosts(&f.host_id).as_ref(), Some(c))
            }
            (
                SinkFormat::Ocsf,
                Record::Event {
                    host,
                    sequence,
                    index,
                    event,
                },
            ) => ocsf::event(host, hosts(host).as_ref(), event, *sequence, *index)
                .unwrap_or(serde_json::Value::Null),
        }
    }

    fn severity(&self) -> Severity {
        match self {
            Record::Finding(f) | Record::Update(f, _) => f.severity,
            Record::Event { event, .. } => event.severity,
        }
    }

    fn host(&self) -> &str {
        match self {
            Record::Finding(f) | Record::Update(f, _) => &f.host_id,
            Record::Event { host, .. } => host,
        }
    }

    fn time(&self) -> i64 {
        match self {
            Record::Finding(f) => f.observed_unix_ms,
            Record::Update(_, c) => c.at_unix_ms,
            Record::Event { event, .. } => event.observed_unix_ms,
        }
    }

    fn msgid(&self) -> &str {
        match self {
            Record::Finding(f) => &f.kind,
            Record::Update(..) => "finding.state",
            Record::Event { event, .. } => &event.kind,
        }
    }
}

/// What one round read: the records, and the cursors to save once they are
/// delivered (key, position).
#[derive(Debug, Default)]
struct Round {
    records: Vec<Record>,
    cursors: Vec<(String, u64)>,
}

/// The cursor key of a sink's state-change stream.
fn states_key(sink: &str) -> String {
    format!("{sink}=states")
}

/// The cursor key of a sink's telemetry from one host.
fn events_key(sink: &str, host: &str) -> String {
    format!("{sink}=events={host}")
}

/// `finding N` → N.
fn finding_target(target: &str) -> Option<u64> {
    target.strip_prefix("finding ")?.parse().ok()
}

/// The state an applied `finding.state` entry records (`acknowledged (kind on host)`).
fn state_of_result(result: &str) -> Option<FindingState> {
    let word = result.split_whitespace().next()?;
    [
        FindingState::New,
        FindingState::Acknowledged,
        FindingState::Resolved,
        FindingState::FalsePositive,
    ]
    .into_iter()
    .find(|s| s.as_str() == word)
}

/// What `bannin sinks` shows of one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStatus {
    /// Name.
    pub name: String,
    /// jsonl, syslog or webhook, with its target.
    pub target: String,
    /// Last finding delivered.
    pub cursor: u64,
    /// Newest finding stored.
    pub latest: u64,
    /// Findings delivered since the collector started.
    pub delivered: u64,
    /// The last failure, empty when the last attempt succeeded.
    pub last_error: String,
    /// When it last delivered (Unix ms), 0 if never.
    pub last_delivery_unix_ms: i64,
    /// Cluster mode: the collector running it.
    pub runner: String,
}

/// The sinks' statuses, shared with the operator API.
pub type Statuses = Arc<Mutex<BTreeMap<String, SinkStatus>>>;

/// Starts every sink; returns their shared statuses.
pub fn start(
    sinks: &[SinkConfig],
    store: &Store,
    latest: tokio::sync::watch::Receiver<u64>,
    journal: &Journal,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) -> Statuses {
    let statuses: Statuses = Arc::new(Mutex::new(BTreeMap::new()));
    for sink in sinks {
        let status = SinkStatus {
            name: sink.name.clone(),
            target: describe(&sink.kind),
            cursor: store
                .counter(&crate::journal::sink_cursor_key(&sink.name))
                .unwrap_or(0),
            ..SinkStatus::default()
        };
        bannin_proto::lock(&statuses).insert(sink.name.clone(), status);
        let runner = Runner {
            config: sink.clone(),
            store: store.clone(),
            statuses: statuses.clone(),
            syslog: None,
            journal: journal.clone(),
            lease: None,
            cursors: BTreeMap::new(),
        };
        tracker.spawn(runner.run(latest.clone(), shutdown.child_token()));
    }
    statuses
}

fn describe(kind: &SinkKind) -> String {
    match kind {
        SinkKind::JsonLines { path, .. } => format!("jsonl {}", path.display()),
        SinkKind::Syslog { transport, .. } => match transport {
            SyslogTransport::Tcp(a) => format!("syslog tcp {a}"),
            SyslogTransport::Tls { address, .. } => format!("syslog tls {address}"),
            SyslogTransport::Unix(p) => format!("syslog unix {}", p.display()),
        },
        SinkKind::Webhook { url, .. } => format!("webhook {}", redacted(url)),
    }
}

/// A webhook URL as operators are shown it: scheme, host and port, never a
/// user name, password, path or query — chat and paging webhooks carry their
/// secret there, and viewers list sinks.
fn redacted(url: &http::Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("https");
    let host = url.host().unwrap_or("?");
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    let rest = match url.path_and_query().map(|p| p.as_str()) {
        None | Some("") | Some("/") => "",
        Some(_) => "/…",
    };
    format!("{scheme}://{host}{port}{rest}")
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted;

    #[test]
    fn webhook_secrets_are_not_shown() {
        let u: http::Uri = "https://user:pw@hooks.example.org:8443/services/T0/B0/SECRET?token=x"
            .parse()
            .expect("uri");
        let shown = redacted(&u);
        assert_eq!(shown, "https://hooks.example.org:8443/…");
        assert!(!shown.contains("SECRET") && !shown.contains("pw") && !shown.contains("token"));
        let plain: http::Uri = "http://10.0.0.5/".parse().expect("uri");
        assert_eq!(redacted(&plain), "http://10.0.0.5");
    }
}

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// I/O with the target.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// TLS setup.
    #[error("tls: {0}")]
    Tls(String),
    /// The webhook answered with an error.
    #[error("webhook answered {0}")]
    Http(String),
}

enum SyslogConn {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Unix(tokio::net::UnixDatagram),
}

struct Runner {
    config: SinkConfig,
    store: Store,
    statuses: Statuses,
    syslog: Option<SyslogConn>,
    /// Where the cursor and the lease live.
    journal: Journal,
    /// This collector's lease (its revision and when it was last renewed),
    /// if it holds one.
    lease: Option<(u64, tokio::time::Instant)>,
    /// The cursors as this collector last read or saved them, while it
    /// holds the lease (key: [`states_key`], [`events_key`] or the name).
    cursors: BTreeMap<String, u64>,
}

impl Runner {
    async fn run(
        mut self,
        mut latest: tokio::sync::watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        let name = self.config.name.clone();
        let mut backoff = Duration::from_secs(1);
        loop {
            if !self.hold().await {
                // Another collector runs it: stand by, showing its progress.
                self.cursors.clear();
                if let Ok(cursor) = self.journal.sink_cursor(&self.config.name).await {
                    self.update(|s| s.cursor = cursor);
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(SINK_LEASE_RENEW) => {}
                }
                continue;
            }
            let newest = *latest.borrow_and_update();
            let cursor = match self.cursor().await {
                Ok(c) => c,
                Err(error) => {
                    self.failed(&error);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            self.update(|s| {
                s.latest = newest;
                s.cursor = cursor;
            });
            let round = match self.read(cursor).await {
                Ok(r) => r,
                Err(error) => {
                    self.failed(&error);
                    Round::default()
                }
            };
            if round.cursors.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = latest.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(SINK_LEASE_RENEW) => {}
                }
                continue;
            }
            let delivered = if round.records.is_empty() {
                // Read past events this sink does not export: only cursors move.
                Ok(())
            } else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = self.deliver(&round.records) => r,
                }
            };
            match delivered {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    if let Err(error) = self.save_cursors(&round.cursors).await {
                        self.failed(&error);
                        continue;
                    }
                    let n = round.records.len() as u64;
                    let findings_cursor = self.cursors.get(&name).copied().unwrap_or(cursor);
                    self.update(|s| {
                        s.cursor = findings_cursor;
                        s.delivered += n;
                        s.last_error.clear();
                        if n > 0 {
                            s.last_delivery_unix_ms = bannin_proto::now_unix_ms();
                        }
                    });
                    tracing::debug!(sink = %name, records = n, cursor = findings_cursor, "Delivered");
                }
                Err(error) => {
                    self.syslog = None;
                    self.failed(&error.to_string());
                    tracing::warn!(sink = %name, %error, retry_in = ?backoff, "Export failed; retrying");
                    // Waited in steps, so a lease held is renewed meanwhile.
                    let until = tokio::time::Instant::now() + backoff;
                    while tokio::time::Instant::now() < until {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + SINK_LEASE_RENEW)) => {}
                        }
                        if !self.hold().await {
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Whether this collector runs the sink now: while it holds the
    /// journal's lease on it (always, for a standalone collector).
    async fn hold(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if let Some((_, renewed)) = self.lease
            && now.duration_since(renewed) < SINK_LEASE_RENEW
        {
            return true;
        }
        let held = self.lease.map(|(revision, _)| revision);
        match self.journal.lease_sink(&self.config.name, held).await {
            Ok(SinkLease::Held(revision)) => {
                if held.is_none() {
                    // Another collector may have moved the cursors meanwhile.
                    self.cursors.clear();
                }
                let me = self.journal.collector().unwrap_or_default().to_owned();
                if held.is_none() && !me.is_empty() {
                    tracing::info!(sink = %self.config.name, "Running this sink (lease taken)");
                }
                self.lease = Some((revision, now));
                self.update(|s| s.runner = me);
                true
            }
            Ok(SinkLease::Elsewhere(holder)) => {
                if held.is_some() {
                    tracing::warn!(sink = %self.config.name, runner = %holder, "Lease lost; standing by");
                }
                self.lease = None;
                self.update(|s| {
                    s.runner = holder;
                    s.last_error.clear();
                });
                false
            }
            Err(error) => {
                // Unsure: keep the lease while it is still ours by the clock.
                self.failed(&error);
                held.is_some()
            }
        }
    }

    async fn cursor(&mut self) -> Result<u64, String> {
        let name = self.config.name.clone();
        self.cursor_of(&name).await
    }

    /// A cursor, read from the journal once per lease and kept.
    async fn cursor_of(&mut self, key: &str) -> Result<u64, String> {
        if let Some(c) = self.cursors.get(key) {
            return Ok(*c);
        }
        let c = self.journal.sink_cursor(key).await?;
        self.cursors.insert(key.to_owned(), c);
        Ok(c)
    }

    async fn save_cursors(&mut self, cursors: &[(String, u64)]) -> Result<(), String> {
        for (key, position) in cursors {
            self.journal.set_sink_cursor(key, *position).await?;
            self.cursors.insert(key.clone(), *position);
        }
        Ok(())
    }

    /// The next round: findings after `cursor`, then state changes and
    /// telemetry after theirs, at most about [`BATCH`] records of each.
    async fn read(&mut self, cursor: u64) -> Result<Round, String> {
        let name = self.config.name.clone();
        let mut round = Round::default();
        let findings = self
            .store
            .findings_after(cursor, BATCH)
            .map_err(|e| e.to_string())?;
        if let Some(last) = findings.last() {
            round.cursors.push((name.clone(), last.id));
        }
        round
            .records
            .extend(findings.into_iter().map(Record::Finding));
        if self.config.state_changes {
            let key = states_key(&name);
            let after = self.cursor_of(&key).await?;
            let (page, _) = self
                .store
                .actions_page(after, BATCH, |a| a.action.verb == "finding.state")
                .map_err(|e| e.to_string())?;
            let mut moved = page.last().map(|e| e.seq);
            if moved.is_none() {
                // Nothing to export: skip what was read, so the next round starts later.
                let last = self.store.last_action_seq().map_err(|e| e.to_string())?;
                moved = (last > after).then_some(last);
            }
            for entry in page {
                let (Some(id), Some(state)) = (
                    finding_target(&entry.action.target),
                    state_of_result(&entry.action.result),
                ) else {
                    continue;
                };
                let Some(f) = self.store.finding(id).map_err(|e| e.to_string())? else {
                    continue;
                };
                let change = StateChange {
                    state,
                    operator: entry.action.actor.clone(),
                    at_unix_ms: entry.action.at_unix_ms,
                    note: entry.action.reason.clone(),
                };
                round.records.push(Record::Update(f, change));
            }
            if let Some(seq) = moved {
                round.cursors.push((key, seq));
            }
        }
        if !self.config.telemetry.is_empty() {
            let hosts = self.store.hosts().map_err(|e| e.to_string())?;
            for host in hosts {
                if round.records.len() >= 4 * BATCH {
                    break;
                }
                let key = events_key(&name, &host.host_id);
                let after = self.cursor_of(&key).await?;
                let query = EventQuery {
                    after_sequence: after,
                    limit: BATCH,
                    ..EventQuery::default()
                };
                let (events, _) = self
                    .store
                    .events(&host.host_id, &query)
                    .map_err(|e| e.to_string())?;
                let Some(last) = events.last().map(|(s, _)| *s) else {
                    continue;
                };
                let mut index = 0;
                let mut previous = None;
                for (sequence, event) in events {
                    if previous != Some(sequence) {
                        index = 0;
                        previous = Some(sequence);
                    }
                    if wants(&self.config.telemetry, self.config.format, &event.kind) {
                        round.records.push(Record::Event {
                            host: host.host_id.clone(),
                            sequence,
                            index,
                            event,
                        });
                    }
                    index += 1;
                }
                round.cursors.push((key, last));
            }
        }
        Ok(round)
    }

    fn update(&self, f: impl FnOnce(&mut SinkStatus)) {
        if let Some(s) = bannin_proto::lock(&self.statuses).get_mut(&self.config.name) {
            f(s);
        }
    }

    fn failed(&self, error: &str) {
        self.update(|s| s.last_error = error.to_owned());
    }

    async fn deliver(&mut self, records: &[Record]) -> Result<(), SinkError> {
        let format = self.config.format;
        let mut known: BTreeMap<String, Option<HostRecord>> = BTreeMap::new();
        let store = self.store.clone();
        let mut hosts = move |id: &str| {
            known
                .entry(id.to_owned())
                .or_insert_with(|| store.host(id).ok().flatten())
                .clone()
        };
        match self.config.kind.clone() {
            SinkKind::JsonLines {
                path,
                max_bytes,
                keep,
            } => {
                let lines: String = records
                    .iter()
                    .map(|r| format!("{}\n", r.json(format, &mut hosts)))
                    .collect();
                tokio::task::spawn_blocking(move || {
                    append_rotating(&path, lines.as_bytes(), max_bytes, keep)
                })
                .await
                .map_err(|e| SinkError::Io(std::io::Error::other(e)))??;
                Ok(())
            }
            SinkKind::Syslog {
                transport,
                facility,
                app_name,
            } => {
                if self.syslog.is_none() {
                    self.syslog = Some(connect_syslog(&transport).await?);
                }
                let Some(conn) = self.syslog.as_mut() else {
                    return Err(SinkError::Io(std::io::Error::other("not connected")));
                };
                for r in records {
                    let message = match (format, r) {
                        (SinkFormat::Bannin, Record::Finding(f)) => rfc5424(f, facility, &app_name),
                        _ => rfc5424_json(r, &r.json(format, &mut hosts), facility, &app_name),
                    };
                    match conn {
                        SyslogConn::Tcp(s) => {
                            s.write_all(format!("{} {message}", message.len()).as_bytes())
                                .await?;
                        }
                        SyslogConn::Tls(s) => {
                            s.write_all(format!("{} {message}", message.len()).as_bytes())
                                .await?;
                        }
                        SyslogConn::Unix(s) => {
                            s.send(message.as_bytes()).await?;
                        }
                    }
                }
                match conn {
                    SyslogConn::Tcp(s) => {
                        s.flush().await?;
                        drain(s).await?;
                    }
                    SyslogConn::Tls(s) => {
                        s.flush().await?;
                        drain(s.as_mut()).await?;
                    }
                    SyslogConn::Unix(_) => {}
                }
                Ok(())
            }
            SinkKind::Webhook { url, ca, headers } => {
                let body = serde_json::Value::Array(
                    records.iter().map(|r| r.json(format, &mut hosts)).collect(),
                )
                .to_string();
                post(&url, ca.as_deref(), &headers, body).await
            }
        }
    }
}

/// Reads whatever the receiver sent (TLS 1.3 session tickets, say) without
/// waiting. Syslog has no acknowledgement: what this process wrote is
/// delivered by the kernel even if the collector is killed — unless unread
/// data sits in the socket, which turns the close into a reset that discards
/// the unsent rest. A receiver that closed is an error (reconnect).
async fn drain<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<(), SinkError> {
    use tokio::io::AsyncReadExt;
    let mut scratch = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut scratch)).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => {
                return Err(SinkError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the syslog receiver closed the connection",
                )));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(SinkError::Io(e)),
        }
    }
}

/// Appends `bytes` to `path` (synced), rotating first when it has reached `max_bytes`.
pub fn append_rotating(
    path: &std::path::Path,
    bytes: &[u8],
    max_bytes: u64,
    keep: usize,
) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= max_bytes) {
        let numbered = |n: usize| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if keep == 0 {
            std::fs::remove_file(path)?;
        } else {
            let _ = std::fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(path, numbered(1))?;
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

async fn connect_syslog(transport: &SyslogTransport) -> Result<SyslogConn, SinkError> {
    let timeout = Duration::from_secs(10);
    let io = |e: std::io::Error| SinkError::Io(e);
    Ok(match transport {
        SyslogTransport::Tcp(address) => SyslogConn::Tcp(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| SinkError::Io(std::io::Error::other("connect timed out")))?
                .map_err(io)?,
        ),
        SyslogTransport::Tls {
            address,
            ca,
            server_name,
        } => {
            let config = tls_client(ca)?;
            let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
                .await
                .map_err(|_| SinkError::Io(std::io::Error::other("connect timed out")))?
                .map_err(io)?;
            let name = rustls::pki_types::ServerName::try_from(server_name.clone())
                .map_err(|e| SinkError::Tls(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(io)?;
            SyslogConn::Tls(Box::new(stream))
        }
        SyslogTransport::Unix(path) => {
            let socket = tokio::net::UnixDatagram::unbound().map_err(io)?;
            socket.connect(path).map_err(io)?;
            SyslogConn::Unix(socket)
        }
    })
}

fn tls_client(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| SinkError::Tls(format!("{}: {e}", ca.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| SinkError::Tls(format!("{}: {e}", ca.display())))?;
        roots.add(cert).map_err(|e| SinkError::Tls(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SinkError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn post(
    url: &http::Uri,
    ca: Option<&std::path::Path>,
    headers: &BTreeMap<String, String>,
    body: String,
) -> Result<(), SinkError> {
    let host = url.host().unwrap_or("localhost").to_owned();
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let timeout = Duration::from_secs(30);
    let tcp = tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| SinkError::Io(std::io::Error::other("connect timed out")))??;
    let mut request = hyper::Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, host.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("bannin-collector/", env!("CARGO_PKG_VERSION")),
        );
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| SinkError::Http(e.to_string()))?;
    let status = if https {
        let config = match ca {
            Some(ca) => tls_client(ca)?,
            None => return Err(SinkError::Tls("an https webhook needs `ca`".into())),
        };
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| SinkError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        send(hyper_util::rt::TokioIo::new(tls), request, timeout).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request, timeout).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(SinkError::Http(status.to_string()))
    }
}

async fn send<T>(
    io: T,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<hyper::StatusCode, SinkError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SinkError::Http(e.to_string()))?;
    // Not on a TaskTracker: the HTTP/1 connection driver of one delivery, which ends with it.
    #[allow(clippy::disallowed_methods)]
    let driver = tokio::spawn(connection);
    let response = tokio::time::timeout(timeout, sender.send_request(request))
        .await
        .map_err(|_| SinkError::Http("no answer within 30 s".into()))?
        .map_err(|e| SinkError::Http(e.to_string()))?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(status)
}

/// A finding as exported (JSON lines, webhooks).
pub fn finding_json(f: &Finding) -> serde_json::Value {
    serde_json::json!({
        "record": "finding",
        "id": f.id,
        "host_id": f.host_id,
        "kind": f.kind,
        "severity": f.severity.name(),
        "state": format!("{:?}", f.state).to_lowercase(),
        "observed_unix_ms": f.observed_unix_ms,
        "received_unix_ms": f.received_unix_ms,
        "count": f.count,
        "attributes": f.attributes,
        "summary": f.summary,
    })
}

/// RFC 5424's PRI and TIMESTAMP for a record.
fn syslog_head(s: Severity, unix_ms: i64, facility: u8) -> (u16, String) {
    let severity = match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    };
    let pri = u16::from(facility) * 8 + severity;
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into());
    (pri, time)
}

/// An RFC 5424 header field: printable ASCII, at most `max`, `-` when empty.
fn syslog_field(s: &str, max: usize) -> String {
    let printable: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if printable.is_empty() {
        "-".into()
    } else {
        printable
    }
}

/// A record whose message is its JSON (OCSF, state changes, telemetry): no
/// structured data, the JSON on one line as MSG.
fn rfc5424_json(r: &Record, json: &serde_json::Value, facility: u8, app_name: &str) -> String {
    let (pri, time) = syslog_head(r.severity(), r.time(), facility);
    format!(
        "<{pri}>1 {time} {host} {app} - {msgid} - {json}",
        host = syslog_field(r.host(), 255),
        app = syslog_field(app_name, 48),
        msgid = syslog_field(r.msgid(), 32),
    )
}

/// One finding as an RFC 5424 message.
pub fn rfc5424(f: &Finding, facility: u8, app_name: &str) -> String {
    let (pri, time) = syslog_head(f.severity, f.observed_unix_ms, facility);
    let field = syslog_field;
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace(']', "\\]")
    };
    format!(
        "<{pri}>1 {time} {host} {app} - {msgid} [bannin@32473 id=\"{id}\" severity=\"{sev}\" count=\"{count}\"] {summary}",
        host = field(&f.host_id, 255),
        app = field(app_name, 48),
        msgid = field(&f.kind, 32),
        id = f.id,
        sev = f.severity.name(),
        count = f.count,
        summary = escape(&f.summary).replace(['\n', '\r'], " "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FindingState;

    fn finding(id: u64) -> Finding {
        Finding {
            id,
            host_id: "web-01".into(),
            kind: "file.odd_name".into(),
            severity: Severity::High,
            state: FindingState::New,
            observed_unix_ms: 1_764_064_800_000,
            received_unix_ms: 1_764_064_800_100,
            last_observed_unix_ms: 1_764_064_800_000,
            count: 1,
            attributes: BTreeMap::from([("path".to_owned(), "/tmp/ x".to_owned())]),
            summary: "odd name \"x\"\nsecond line".into(),
            history: Vec::new(),
        }
    }

    #[test]
    fn bannin_records_say_what_they_are_and_carry_the_change() {
        let mut no_hosts = |_: &str| None;
        let created = Record::Finding(finding(7)).json(SinkFormat::Bannin, &mut no_hosts);
        assert_eq!(created["record"], "finding");
        assert_eq!(created["id"], 7);
        let change = StateChange {
            state: FindingState::Resolved,
            operator: "alice".into(),
            at_unix_ms: 9,
            note: "patched".into(),
        };
        let update = Record::Update(finding(7), change).json(SinkFormat::Bannin, &mut no_hosts);
        assert_eq!(update["record"], "finding.state");
        assert_eq!(update["change"]["state"], "resolved");
        assert_eq!(update["change"]["operator"], "alice");
        let event = Record::Event {
            host: "web-01".into(),
            sequence: 3,
            index: 0,
            event: Event {
                kind: "process.exec".into(),
                severity: Severity::Info,
                observed_unix_ms: 1,
                received_unix_ms: 2,
                indicator: false,
                attributes: BTreeMap::from([("pid".to_owned(), "5".to_owned())]),
                summary: "exec".into(),
            },
        };
        let v = event.json(SinkFormat::Bannin, &mut no_hosts);
        assert_eq!(v["record"], "event");
        assert_eq!(v["attributes"]["pid"], "5");
        // Over syslog: the JSON is the message, after an RFC 5424 header.
        let m = rfc5424_json(&event, &v, 16, "bannin");
        assert!(
            m.starts_with("<134>1 1970-01-01T00:00:00.001Z web-01 bannin - process.exec - {"),
            "{m}"
        );
        assert!(wants(
            &["process.*".into()],
            SinkFormat::Bannin,
            "process.exec"
        ));
        assert!(!wants(
            &["process.*".into()],
            SinkFormat::Bannin,
            "net.flow"
        ));
        assert!(!wants(
            &["system.*".into()],
            SinkFormat::Ocsf,
            "system.boot"
        ));
        assert_eq!(
            state_of_result("false_positive (file.odd_name on web-01)"),
            Some(FindingState::FalsePositive)
        );
        assert_eq!(state_of_result("denied: not a responder"), None);
        assert_eq!(finding_target("finding 12"), Some(12));
    }

    #[test]
    fn syslog_messages_follow_rfc5424() {
        let m = rfc5424(&finding(7), 16, "bannin");
        assert_eq!(
            m,
            "<131>1 2025-11-25T10:00:00Z web-01 bannin - file.odd_name [bannin@32473 id=\"7\" severity=\"high\" count=\"1\"] odd name \\\"x\\\" second line"
        );
    }

    #[test]
    fn json_lines_rotate_and_keep_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.jsonl");
        for i in 0..10 {
            append_rotating(&path, format!("{i:09}\n").as_bytes(), 25, 2).expect("append");
        }
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        // 10 bytes a line, rotated at 25: three lines per file, two old files kept.
        assert_eq!(read("f.jsonl"), "000000009\n");
        assert_eq!(read("f.jsonl.1"), "000000006\n000000007\n000000008\n");
        assert_eq!(read("f.jsonl.2"), "000000003\n000000004\n000000005\n");
        assert!(!dir.path().join("f.jsonl.3").exists());
    }
}
