//! Alerts from monitoring: an HTTPS endpoint that takes Prometheus
//! Alertmanager's webhook JSON and turns each firing alert into a
//! `monitor.alert` finding on the host it names.
//!
//! ```yaml
//! # alertmanager.yml
//! receivers:
//!   - name: bannin
//!     webhook_configs:
//!       - url: https://collector.example.org:7444/alertmanager
//!         http_config:
//!           authorization: { type: Bearer, credentials_file: /etc/alertmanager/bannin.token }
//!           tls_config: { ca_file: /etc/alertmanager/bannin-ca.pem }
//! ```
//!
//! Callers authenticate with an operator certificate (responder or admin) or
//! with the bearer token in `token_file`. A request is taken whole or not at
//! all: bad JSON, a body past `max_body_bytes`, an alert naming no known host
//! — each gets a clear 4xx answer and nothing is stored. Resolved alerts are
//! acknowledged and not queued. Alertmanager repeats a firing alert every
//! `repeat_interval`; repeats fold into the first finding with a count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bannin_proto::identity::{HostId, PeerIdentity};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::hosts::HostRegistry;
use crate::journal::Journal;
use crate::model::{Action, NewFinding, Role, Severity};
use crate::store::Store;

/// The path Alertmanager posts to.
pub const PATH: &str = "/alertmanager";
/// Most alerts in one request.
pub const MAX_ALERTS: usize = 1000;
/// Most labels and annotations per alert, and the longest value kept.
const MAX_FIELDS: usize = 64;
const MAX_VALUE: usize = 4096;

/// `[webhook]` of the collector's config.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to listen (HTTPS).
    pub listen: SocketAddr,
    /// File holding the bearer token (mode 0600), if tokens are accepted.
    pub token_file: Option<PathBuf>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Alert labels naming the host, tried in order.
    pub host_labels: Vec<String>,
}

/// Alertmanager's webhook payload (version 4), the parts Bannin reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// "4".
    #[serde(default)]
    pub version: String,
    /// The receiver's name.
    #[serde(default)]
    pub receiver: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// "firing" or "resolved".
    pub status: String,
    /// Labels (alertname, instance, severity…).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (summary, description…).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// Link back to the source.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint.
    #[serde(default)]
    pub fingerprint: String,
}

/// Why a request was refused: the status and the message sent back.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal(pub StatusCode, pub String);

struct Shared {
    config: WebhookConfig,
    token: Option<String>,
    store: Store,
    journal: Journal,
    hosts: Arc<HostRegistry>,
    denials: Arc<crate::denials::Denials>,
}

/// Reads and checks the token file: mode 0600, one non-empty line of at least 16 bytes.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    bannin_proto::tls::check_key_permissions(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token = text.trim().to_owned();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        return Err(format!(
            "{}: the token must be one word of at least 16 characters",
            path.display()
        ));
    }
    Ok(token)
}

/// Serves the webhook until `shutdown`.
pub async fn serve(
    config: WebhookConfig,
    tls: Arc<rustls::ServerConfig>,
    store: Store,
    journal: Journal,
    hosts: Arc<HostRegistry>,
    denials: Arc<crate::denials::Denials>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let token = match &config.token_file {
        Some(path) => Some(read_token(path).map_err(std::io::Error::other)?),
        None => None,
    };
    tracing::info!(listen = %config.listen, path = PATH, tokens = token.is_some(), "Alertmanager webhook");
    let listen = config.listen;
    let shared = Arc::new(Shared {
        config,
        token,
        store,
        journal,
        hosts,
        denials,
    });
    crate::https::serve(
        "alertmanager webhook",
        listen,
        tls,
        shutdown,
        move |identity, remote, request| {
            let shared = shared.clone();
            async move { handle(&shared, identity, remote, request).await }
        },
    )
    .await
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = crate::https::json(status, &body);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer realm=\"bannin\""),
        );
    }
    response
}

fn refuse(r: Refusal) -> Response<Full<Bytes>> {
    reply(r.0, serde_json::json!({ "error": r.1 }))
}

async fn handle(
    shared: &Shared,
    identity: Option<PeerIdentity>,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let who = identity.as_ref().map_or_else(
        || format!("webhook caller at {}", remote.ip()),
        ToString::to_string,
    );
    match accept(shared, identity, request).await {
        Ok((caller, body)) => {
            tracing::info!(peer.addr = %remote, caller = %caller, accepted = %body["accepted"], "Alerts received");
            reply(StatusCode::OK, body)
        }
        Err(r) => {
            tracing::warn!(peer.addr = %remote, status = r.0.as_u16(), reason = %r.1, "Webhook request refused");
            // Who failed to authenticate is the action log's business (coalesced:
            // a caller retrying cannot make each try a durable write).
            if matches!(r.0, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                shared.denials.refused(&who, "webhook", &r.1).await;
            }
            refuse(r)
        }
    }
}

/// Authenticates, reads and stores one request: the caller and the answer.
async fn accept(
    shared: &Shared,
    identity: Option<PeerIdentity>,
    request: Request<Incoming>,
) -> Result<(String, serde_json::Value), Refusal> {
    if request.uri().path() != PATH {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("no such endpoint; Alertmanager posts to {PATH}"),
        ));
    }
    if request.method() != Method::POST {
        return Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "only POST".into()));
    }
    let caller = authenticate(shared, identity.as_ref(), request.headers())?;
    let limit = shared.config.max_body_bytes;
    if let Some(length) = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large(limit));
    }
    let body = crate::https::read_body(request.into_body(), limit)
        .await
        .map_err(|e| match e {
            crate::https::BodyError::TooLarge(_) => too_large(limit),
            e => Refusal(e.status(), e.to_string()),
        })?;
    let findings = findings_of(&body, &shared.config.host_labels, |name| {
        resolve(shared, name)
    })?;
    let resolved = findings.1;
    let mut ids = Vec::new();
    let mut hosts: Vec<String> = findings.0.iter().map(|f| f.host_id.to_string()).collect();
    hosts.sort();
    hosts.dedup();
    for finding in findings.0 {
        let id = shared.journal.raise(finding).await.map_err(|e| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("storing the alert: {e}"),
            )
        })?;
        ids.push(id);
    }
    if !ids.is_empty() {
        // Findings made from outside are the caller's act: an action-log entry
        // per request names who and which.
        let shown: Vec<String> = ids.iter().take(50).map(|id| format!("#{id}")).collect();
        let entry = Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: caller.clone(),
            verb: "finding.webhook".into(),
            target: hosts.join(", ").chars().take(500).collect(),
            reason: String::new(),
            result: format!(
                "{} finding(s) from Alertmanager: {}{}",
                ids.len(),
                shown.join(", "),
                if ids.len() > shown.len() { ", …" } else { "" }
            ),
        };
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || {
            store.append_action(&entry)?;
            store.make_durable()
        })
        .await
        .map_err(|e| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("logging the alert: {e}"),
            )
        })?
        .map_err(|e| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("logging the alert: {e}"),
            )
        })?;
    }
    Ok((
        caller,
        serde_json::json!({ "accepted": ids.len(), "findings": ids, "resolved_not_queued": resolved }),
    ))
}

fn too_large(limit: usize) -> Refusal {
    Refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {limit} bytes (webhook.max_body_bytes)"),
    )
}

fn authenticate(
    shared: &Shared,
    identity: Option<&PeerIdentity>,
    headers: &hyper::HeaderMap,
) -> Result<String, Refusal> {
    if let Some(PeerIdentity::Operator(name)) = identity {
        let record = shared.store.operator(name.as_str()).map_err(|e| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading operators: {e}"),
            )
        })?;
        return match record {
            Some(r) if r.enabled && r.role >= Role::Responder => Ok(format!("operator {name}")),
            Some(_) => Err(Refusal(
                StatusCode::FORBIDDEN,
                format!("operator {name} is disabled or below the responder role"),
            )),
            None => Err(Refusal(
                StatusCode::FORBIDDEN,
                format!("operator {name} is not registered"),
            )),
        };
    }
    let presented = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&shared.token, presented) {
        (Some(token), Some(given))
            if constant_time_eq(token.as_bytes(), given.trim().as_bytes()) =>
        {
            Ok("bearer token".into())
        }
        (_, Some(_)) => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "the bearer token is not valid".into(),
        )),
        _ => Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "authenticate with an operator certificate or a bearer token".into(),
        )),
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The known host an alert label names: a host id; else the one host whose
/// agent reports that hostname, or that address. What a host says about itself
/// decides only when no other host says the same: an agent claiming another's
/// name receives nothing of its alerts (the alert stays unresolved, and the
/// claim is a `host.identity_conflict`).
fn resolve(shared: &Shared, name: &str) -> Option<HostId> {
    let hosts = shared.hosts.list();
    let only = |matches: Vec<&crate::hosts::HostView>| match matches.as_slice() {
        [one] => Some(one.record.host_id.clone()),
        _ => None,
    };
    hosts
        .iter()
        .find(|h| h.record.host_id == name)
        .map(|h| h.record.host_id.clone())
        .or_else(|| only(hosts.iter().filter(|h| h.record.hostname == name).collect()))
        .or_else(|| {
            only(
                hosts
                    .iter()
                    .filter(|h| {
                        h.record
                            .addresses
                            .iter()
                            .any(|a| a.split('/').next() == Some(name))
                    })
                    .collect(),
            )
        })
        .and_then(|h| HostId::new(h).ok())
}

/// Parses a payload into findings (and the count of resolved alerts), or the
/// reason to refuse it whole. `resolve` maps a name to a known host.
pub fn findings_of(
    body: &[u8],
    host_labels: &[String],
    resolve: impl Fn(&str) -> Option<HostId>,
) -> Result<(Vec<NewFinding>, usize), Refusal> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("not Alertmanager webhook JSON: {e}"),
        )
    })?;
    if payload.alerts.len() > MAX_ALERTS {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} alerts in one request; at most {MAX_ALERTS}",
                payload.alerts.len()
            ),
        ));
    }
    let now = bannin_proto::now_unix_ms();
    let mut out = Vec::new();
    let mut resolved = 0;
    let mut unknown = Vec::new();
    for (i, alert) in payload.alerts.iter().enumerate() {
        if alert.labels.len() + alert.annotations.len() > MAX_FIELDS
            || alert
                .labels
                .iter()
                .chain(&alert.annotations)
                .any(|(k, v)| k.len() > 256 || v.len() > MAX_VALUE)
        {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!(
                    "alert {i}: more than {MAX_FIELDS} labels and annotations, or a value over {MAX_VALUE} bytes"
                ),
            ));
        }
        let named = host_labels
            .iter()
            .find_map(|l| alert.labels.get(l).map(|v| (l.as_str(), v.as_str())));
        let Some((label, value)) = named else {
            unknown.push(format!(
                "alert {i} has none of the labels {}",
                host_labels.join(", ")
            ));
            continue;
        };
        // instance is host:port (or [v6]:port).
        let name = if label == "instance" {
            strip_port(value)
        } else {
            value
        };
        let Some(host) = resolve(name) else {
            unknown.push(format!("alert {i}: {label}={value:?} is no known host"));
            continue;
        };
        if alert.status == "resolved" {
            resolved += 1;
            continue;
        }
        if alert.status != "firing" {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!(
                    "alert {i}: status {:?}; expected firing or resolved",
                    alert.status
                ),
            ));
        }
        let alertname = alert
            .labels
            .get("alertname")
            .cloned()
            .unwrap_or_else(|| "unnamed".into());
        let severity = match alert
            .labels
            .get("severity")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            Some("critical" | "page" | "emergency") => Severity::Critical,
            Some("high" | "error" | "major") => Severity::High,
            Some("info" | "none") => Severity::Info,
            Some("low" | "minor") => Severity::Low,
            _ => Severity::Medium,
        };
        let mut attributes = BTreeMap::from([
            ("source".to_owned(), "alertmanager".to_owned()),
            ("alertname".to_owned(), alertname.clone()),
            ("starts_at".to_owned(), alert.starts_at.clone()),
        ]);
        if !alert.fingerprint.is_empty() {
            attributes.insert("fingerprint".into(), alert.fingerprint.clone());
        }
        if !alert.generator_url.is_empty() {
            attributes.insert(
                "generator_url".into(),
                alert.generator_url.chars().take(MAX_VALUE).collect(),
            );
        }
        for (k, v) in &alert.labels {
            attributes.insert(format!("label.{k}"), v.clone());
        }
        for (k, v) in &alert.annotations {
            attributes.insert(format!("annotation.{k}"), v.clone());
        }
        let text = alert
            .annotations
            .get("summary")
            .or_else(|| alert.annotations.get("description"))
            .cloned()
            .unwrap_or_default();
        let observed = time::OffsetDateTime::parse(
            &alert.starts_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .filter(|t| *t > 0 && *t <= now)
        .unwrap_or(now);
        out.push(NewFinding {
            summary: if text.is_empty() {
                format!("monitoring alert {alertname} on {host}")
            } else {
                format!(
                    "{alertname}: {}",
                    text.chars().take(300).collect::<String>()
                )
            },
            host_id: host,
            kind: "monitor.alert".into(),
            severity,
            observed_unix_ms: observed,
            attributes,
        });
    }
    if !unknown.is_empty() {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("nothing stored: {}", unknown.join("; ")),
        ));
    }
    Ok((out, resolved))
}

fn strip_port(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match instance.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => instance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> Option<HostId> {
        ["web-01", "db-01"]
            .contains(&name)
            .then(|| HostId::new(name).expect("id"))
    }

    fn labels() -> Vec<String> {
        ["host", "instance"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn alertmanager_payloads_become_findings() {
        let body = br#"{"version":"4","status":"firing","receiver":"bannin","groupLabels":{},"alerts":[
            {"status":"firing","labels":{"alertname":"DiskFull","instance":"web-01:9100","severity":"critical"},
             "annotations":{"summary":"/var is 99% full"},"startsAt":"2026-11-25T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
             "generatorURL":"http://prom/graph","fingerprint":"abc123"},
            {"status":"resolved","labels":{"alertname":"Load","host":"db-01"},"startsAt":"2026-11-25T09:00:00Z"},
            {"status":"firing","labels":{"alertname":"Up","instance":"[db-01]:9100"}}]}"#;
        let (findings, resolved) = findings_of(body, &labels(), known).expect("accepted");
        assert_eq!(resolved, 1);
        assert_eq!(findings.len(), 2);
        let disk = &findings[0];
        assert_eq!(disk.host_id.as_str(), "web-01");
        assert_eq!(disk.kind, "monitor.alert");
        assert_eq!(disk.severity, Severity::Critical);
        assert_eq!(disk.attributes["alertname"], "DiskFull");
        assert_eq!(disk.attributes["annotation.summary"], "/var is 99% full");
        assert_eq!(disk.observed_unix_ms, 1_795_600_800_000);
        assert_eq!(disk.summary, "DiskFull: /var is 99% full");
        assert_eq!(findings[1].host_id.as_str(), "db-01");
        assert_eq!(findings[1].severity, Severity::Medium);
    }

    #[test]
    fn bad_payloads_are_refused_whole() {
        let code = |body: &[u8]| findings_of(body, &labels(), known).expect_err("refused").0;
        assert_eq!(code(b"{not json"), StatusCode::BAD_REQUEST);
        assert_eq!(code(br#"{"alerts":"no"}"#), StatusCode::BAD_REQUEST);
        assert_eq!(
            code(br#"{"alerts":[{"status":"firing","labels":{"host":"web-01"}},{"status":"firing","labels":{"host":"mystery"}}]}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            code(br#"{"alerts":[{"status":"firing","labels":{"alertname":"x"}}]}"#),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            code(br#"{"alerts":[{"status":"odd","labels":{"host":"web-01"}}]}"#),
            StatusCode::BAD_REQUEST
        );
        let many = format!(
            r#"{{"alerts":[{}]}}"#,
            vec![r#"{"status":"firing","labels":{"host":"web-01"}}"#; MAX_ALERTS + 1].join(",")
        );
        assert_eq!(code(many.as_bytes()), StatusCode::PAYLOAD_TOO_LARGE);
        let long = format!(
            r#"{{"alerts":[{{"status":"firing","labels":{{"host":"web-01","x":"{}"}}}}]}}"#,
            "a".repeat(MAX_VALUE + 1)
        );
        assert_eq!(code(long.as_bytes()), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn instance_ports_are_stripped() {
        assert_eq!(strip_port("web-01:9100"), "web-01");
        assert_eq!(strip_port("[2001:db8::1]:9100"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("web-01"), "web-01");
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
