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
//! What is exported is each new finding once, as the collector stored it
//! (later folds and state changes are not re-sent).
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
use crate::model::{Finding, Severity};
use crate::store::Store;

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
                if let Ok(cursor) = self.cursor().await {
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
            let pending = match self.store.findings_after(cursor, BATCH) {
                Ok(p) => p,
                Err(error) => {
                    self.failed(&error.to_string());
                    Vec::new()
                }
            };
            if pending.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = latest.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(SINK_LEASE_RENEW) => {}
                }
                continue;
            }
            let last = pending.last().map_or(cursor, |f| f.id);
            let delivered = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.deliver(&pending) => r,
            };
            match delivered {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    if let Err(error) = self.save_cursor(last).await {
                        self.failed(&error);
                        continue;
                    }
                    let n = pending.len() as u64;
                    self.update(|s| {
                        s.cursor = last;
                        s.delivered += n;
                        s.last_error.clear();
                        s.last_delivery_unix_ms = bannin_proto::now_unix_ms();
                    });
                    tracing::debug!(sink = %name, findings = n, cursor = last, "Delivered");
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

    async fn cursor(&self) -> Result<u64, String> {
        self.journal.sink_cursor(&self.config.name).await
    }

    async fn save_cursor(&self, cursor: u64) -> Result<(), String> {
        self.journal
            .set_sink_cursor(&self.config.name, cursor)
            .await
    }

    fn update(&self, f: impl FnOnce(&mut SinkStatus)) {
        if let Some(s) = bannin_proto::lock(&self.statuses).get_mut(&self.config.name) {
            f(s);
        }
    }

    fn failed(&self, error: &str) {
        self.update(|s| s.last_error = error.to_owned());
    }

    async fn deliver(&mut self, findings: &[Finding]) -> Result<(), SinkError> {
        match self.config.kind.clone() {
            SinkKind::JsonLines {
                path,
                max_bytes,
                keep,
            } => {
                let lines: String = findings
                    .iter()
                    .map(|f| format!("{}\n", finding_json(f)))
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
                for f in findings {
                    let message = rfc5424(f, facility, &app_name);
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
                let body = serde_json::Value::Array(findings.iter().map(finding_json).collect())
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

/// One finding as an RFC 5424 message.
pub fn rfc5424(f: &Finding, facility: u8, app_name: &str) -> String {
    let severity = match f.severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    };
    let pri = u16::from(facility) * 8 + severity;
    let time =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f.observed_unix_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "-".into());
    let field = |s: &str, max: usize| -> String {
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
    };
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
