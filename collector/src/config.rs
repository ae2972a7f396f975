//! The collector's configuration file (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:7443"          # agents and operators, mTLS
//! operator_listen = "10.0.0.5:7444" # optional: operators on a port of their own
//! data_dir = "/var/lib/bannin"      # store; relative paths are relative to this file
//! max_message_bytes = 4194304       # largest message accepted from any peer
//!
//! [tls]
//! ca = "pki/ca.pem"
//! cert = "pki/collector.pem"
//! key = "pki/collector.key"         # must be mode 0600
//!
//! [hosts]
//! silent_after_heartbeats = 3       # host.silent after this many missed heartbeats
//! max_events_per_sec = 20000        # one host's sustained telemetry (10 s of it as a burst)
//! max_bytes_per_sec = 16777216      # one host's sustained bytes (events, results, evidence)
//!
//! [findings]
//! fold_window_secs = 600            # identical findings of a host fold within this window
//! [findings.severity]               # per-kind severity overrides
//! "net.new_listener" = "high"
//!
//! [events]
//! retention_days = 30
//! max_bytes = 10737418240
//! index = true                      # the search index (`bannin search`)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::config::{ConfigErrors, load_toml};
use bannin_proto::tls::{TlsPaths, check_key_permissions};
use serde::Deserialize;

use crate::model::Severity;

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default = "default_listen")]
    listen: String,
    operator_listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_message_bytes: Option<u64>,
    tls: Option<RawTls>,
    #[serde(default)]
    hosts: RawHosts,
    #[serde(default)]
    findings: RawFindings,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    operators: RawOperators,
    #[serde(default)]
    suppress: Vec<RawSuppress>,
    #[serde(default)]
    correlation: RawCorrelation,
    #[serde(default)]
    sigma: RawSigma,
    webhook: Option<RawWebhook>,
    #[serde(default)]
    sink: Vec<RawSink>,
    enrollment: Option<RawEnrollment>,
    cluster: Option<RawCluster>,
}

/// `[cluster]`: several collectors over NATS JetStream (absent: one collector
/// on its own sled store).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    servers: Vec<String>,
    tls: RawTls,
    #[serde(default = "default_replicas")]
    replicas: usize,
    #[serde(default = "default_log_max_bytes")]
    max_bytes: u64,
    #[serde(default = "default_log_max_age_days")]
    max_age_days: u64,
    #[serde(default = "default_duplicate_window_secs")]
    duplicate_window_secs: u64,
}

fn default_replicas() -> usize {
    3
}
fn default_log_max_bytes() -> u64 {
    64 * 1024 * 1024 * 1024
}
fn default_log_max_age_days() -> u64 {
    30
}
fn default_duplicate_window_secs() -> u64 {
    120
}

fn cluster(
    errors: &mut ConfigErrors,
    base: &Path,
    raw: RawCluster,
) -> crate::cluster::ClusterConfig {
    let ok_name = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !ok_name {
        errors.push(format!(
            "cluster.name = {:?}: 1-64 letters, digits, '-' or '_' (unique per collector)",
            raw.name
        ));
    }
    if raw.servers.is_empty() {
        errors.push("cluster.servers: name at least one NATS server (tls://host:4222)");
    }
    for s in &raw.servers {
        if let Err(e) = crate::cluster::check_server(s) {
            errors.push(format!("cluster.servers: {s:?}: {e}"));
        }
    }
    if !matches!(raw.replicas, 1 | 3) {
        errors.push(format!(
            "cluster.replicas = {}: 1 (one NATS server holds each stream) or 3 (survives the loss of one)",
            raw.replicas
        ));
    }
    if raw.max_bytes < 64 * 1024 * 1024 {
        errors.push(format!(
            "cluster.max_bytes = {}: at least 67108864 (64 GiB by default)",
            raw.max_bytes
        ));
    }
    if raw.max_age_days == 0 {
        errors.push("cluster.max_age_days must be at least 1");
    }
    if !(10..=86_400).contains(&raw.duplicate_window_secs) {
        errors.push(format!(
            "cluster.duplicate_window_secs = {}: 10 to 86400",
            raw.duplicate_window_secs
        ));
    }
    let tls = crate::cluster::tls_paths(base, raw.tls.ca, raw.tls.cert, raw.tls.key);
    for (name, p) in [("cluster.tls.ca", &tls.ca), ("cluster.tls.cert", &tls.cert)] {
        if !p.is_file() {
            errors.push(format!("{name} = {}: no such file", p.display()));
        }
    }
    if let Err(e) = check_key_permissions(&tls.key) {
        errors.push(format!("cluster.tls.key: {e}"));
    }
    crate::cluster::ClusterConfig {
        name: raw.name,
        servers: raw.servers,
        tls,
        replicas: raw.replicas,
        max_bytes: i64::try_from(raw.max_bytes).unwrap_or(i64::MAX),
        max_age: Duration::from_secs(raw.max_age_days.saturating_mul(86_400)),
        duplicate_window: Duration::from_secs(raw.duplicate_window_secs),
    }
}

/// `[sigma]`: where Sigma rules are loaded from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigma {
    #[serde(default)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct RawEnrollment {
    listen: Option<String>,
    ca_key: PathBuf,
    validity_days: Option<u64>,
    validity_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct RawSink {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    // jsonl
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    keep: Option<usize>,
    // syslog
    transport: Option<String>,
    address: Option<String>,
    socket: Option<PathBuf>,
    server_name: Option<String>,
    facility: Option<u8>,
    app_name: Option<String>,
    // webhook
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    // syslog tls, https webhook
    ca: Option<PathBuf>,
    // every type
    format: Option<String>,
    state_changes: Option<bool>,
    #[serde(default)]
    telemetry: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawWebhook {
    listen: String,
    token_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    host_labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawSuppress {
    name: String,
    reason: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    expires: Option<String>,
}

/// `[correlation]`; every rule has `hosts`, `window_secs` and `severity`.
#[derive(Debug, Deserialize, Default)]
struct RawCorrelation {
    enabled: Option<bool>,
    max_keys: Option<usize>,
    max_members: Option<usize>,
    #[serde(default)]
    spread: RawThreshold,
    #[serde(default)]
    account_hosts: RawThreshold,
    #[serde(default)]
    ignore_accounts: Vec<String>,
    #[serde(default)]
    password_spray: RawThreshold,
    #[serde(default)]
    lateral_movement: RawThreshold,
    remote_admin_ports: Option<Vec<u16>>,
    #[serde(default)]
    fan_in: RawThreshold,
    fan_in_peers: Option<usize>,
    #[serde(default)]
    mass_silence: RawThreshold,
    mass_silence_share: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
struct RawThreshold {
    hosts: Option<usize>,
    window_secs: Option<u64>,
    severity: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawOperators {
    #[serde(default)]
    bootstrap_admins: Vec<String>,
}

fn default_listen() -> String {
    "127.0.0.1:7443".into()
}

#[derive(Debug, Deserialize)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
struct RawHosts {
    #[serde(default = "default_silent")]
    silent_after_heartbeats: u32,
    #[serde(default = "default_host_events")]
    max_events_per_sec: u64,
    #[serde(default = "default_host_bytes")]
    max_bytes_per_sec: u64,
}

fn default_host_events() -> u64 {
    20_000
}

fn default_host_bytes() -> u64 {
    16 * 1024 * 1024
}

impl Default for RawHosts {
    fn default() -> Self {
        Self {
            silent_after_heartbeats: default_silent(),
            max_events_per_sec: default_host_events(),
            max_bytes_per_sec: default_host_bytes(),
        }
    }
}

fn default_silent() -> u32 {
    3
}

#[derive(Debug, Deserialize)]
struct RawFindings {
    #[serde(default = "default_fold")]
    fold_window_secs: u64,
    #[serde(default)]
    severity: BTreeMap<String, String>,
}

impl Default for RawFindings {
    fn default() -> Self {
        Self {
            fold_window_secs: default_fold(),
            severity: BTreeMap::new(),
        }
    }
}

fn default_fold() -> u64 {
    600
}

#[derive(Debug, Deserialize)]
struct RawEvents {
    #[serde(default = "default_retention_days")]
    retention_days: u64,
    #[serde(default = "default_event_bytes")]
    max_bytes: u64,
    #[serde(default = "default_index")]
    index: bool,
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            max_bytes: default_event_bytes(),
            index: default_index(),
        }
    }
}

fn default_index() -> bool {
    true
}

fn default_retention_days() -> u64 {
    30
}

fn default_event_bytes() -> u64 {
    10 * 1024 * 1024 * 1024
}

/// Smallest `max_message_bytes`: room for a 1 MiB snapshot chunk or triage answer.
pub const MIN_MESSAGE_BYTES: u64 = 2 * 1024 * 1024;

/// A validated collector configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Address agents and operators connect to.
    pub listen: SocketAddr,
    /// If set, operators connect here and `listen` serves agents only: a flood
    /// on the agents' port never reaches the operators'.
    pub operator_listen: Option<SocketAddr>,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// TLS material.
    pub tls: TlsPaths,
    /// Largest message accepted from a peer.
    pub max_message_bytes: usize,
    /// Missed heartbeats before `host.silent`.
    pub silent_after_heartbeats: u32,
    /// What one host may make the collector write per second.
    pub host_budget: crate::budget::Rates,
    /// Identical findings of a host within this window fold into one.
    pub fold_window: Duration,
    /// Per-kind severity overrides.
    pub severity_overrides: BTreeMap<String, Severity>,
    /// Events older than this are removed.
    pub event_retention: Duration,
    /// Most bytes of raw events kept.
    pub event_max_bytes: u64,
    /// Whether events are indexed for `bannin search`.
    pub event_index: bool,
    /// Operators made admin when the operator table is empty (first start).
    pub bootstrap_admins: Vec<bannin_proto::identity::OperatorName>,
    /// Suppression rules, in file order.
    pub suppress: Vec<crate::rules::SuppressRule>,
    /// Cross-host correlation.
    pub correlation: crate::correlate::CorrelationConfig,
    /// Sigma rule files and directories (relative paths resolved against the
    /// config file's directory).
    pub sigma_paths: Vec<PathBuf>,
    /// The Alertmanager webhook, if enabled.
    pub webhook: Option<crate::webhook::WebhookConfig>,
    /// Export sinks.
    pub sinks: Vec<crate::sinks::SinkConfig>,
    /// Token enrollment and certificate renewal, if enabled.
    pub enrollment: Option<crate::enroll::EnrollmentConfig>,
    /// Cluster mode over NATS JetStream, if configured.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// A `[[sink]]` or `[[suppress]]` name: unique, 1-64 letters, digits, '-', '_' or '.'
/// (it keys a durable counter in the store).
fn check_rule_name(
    errors: &mut ConfigErrors,
    at: &str,
    name: &str,
    names: &mut std::collections::BTreeSet<String>,
) {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(format!(
            "{at}: name must be 1-64 letters, digits, '-', '_' or '.'"
        ));
    }
    if !names.insert(name.to_owned()) {
        errors.push(format!("{at}: the name is used twice"));
    }
}

fn sinks(errors: &mut ConfigErrors, base: &Path, raw: &[RawSink]) -> Vec<crate::sinks::SinkConfig> {
    use crate::sinks::{SinkConfig, SinkFormat, SinkKind, SyslogTransport};
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in raw {
        let at = format!("sink {:?}", r.name);
        check_rule_name(errors, &at, &r.name, &mut names);
        let kind = match r.kind.as_str() {
            "jsonl" => match &r.path {
                Some(p) => Some(SinkKind::JsonLines {
                    path: base.join(p),
                    max_bytes: r.max_bytes.unwrap_or(100 * 1024 * 1024).max(4096),
                    keep: r.keep.unwrap_or(5),
                }),
                None => {
                    errors.push(format!("{at}: a jsonl sink needs `path`"));
                    None
                }
            },
            "syslog" => {
                let transport = match (
                    r.transport.as_deref().unwrap_or("tcp"),
                    &r.address,
                    &r.socket,
                ) {
                    ("tcp", Some(a), _) => Some(SyslogTransport::Tcp(a.clone())),
                    ("tls", Some(a), _) => match (&r.ca, &r.server_name) {
                        (Some(ca), Some(name)) => Some(SyslogTransport::Tls {
                            address: a.clone(),
                            ca: base.join(ca),
                            server_name: name.clone(),
                        }),
                        _ => {
                            errors.push(format!(
                                "{at}: syslog over tls needs `ca` and `server_name`"
                            ));
                            None
                        }
                    },
                    ("unix", _, Some(p)) => Some(SyslogTransport::Unix(p.clone())),
                    (t, _, _) => {
                        errors.push(format!(
                            "{at}: transport {t:?}: tcp or tls with `address`, or unix with `socket`"
                        ));
                        None
                    }
                };
                let facility = r.facility.unwrap_or(16);
                if facility > 23 {
                    errors.push(format!("{at}: facility {facility}: must be 0 to 23"));
                }
                transport.map(|transport| SinkKind::Syslog {
                    transport,
                    facility,
                    app_name: r.app_name.clone().unwrap_or_else(|| "bannin".into()),
                })
            }
            "webhook" => match r.url.as_deref().map(str::parse::<http::Uri>) {
                Some(Ok(url))
                    if matches!(url.scheme_str(), Some("http" | "https"))
                        && url.host().is_some() =>
                {
                    if url.scheme_str() == Some("https") && r.ca.is_none() {
                        errors.push(format!("{at}: an https webhook needs `ca`"));
                    }
                    Some(SinkKind::Webhook {
                        url,
                        ca: r.ca.as_ref().map(|c| base.join(c)),
                        headers: r.headers.clone(),
                    })
                }
                Some(Ok(url)) => {
                    errors.push(format!(
                        "{at}: url {url}: expected http:// or https:// with a host"
                    ));
                    None
                }
                Some(Err(e)) => {
                    errors.push(format!("{at}: url: {e}"));
                    None
                }
                None => {
                    errors.push(format!("{at}: a webhook sink needs `url`"));
                    None
                }
            },
            other => {
                errors.push(format!(
                    "{at}: type {other:?}: expected jsonl, syslog or webhook"
                ));
                None
            }
        };
        let format = match r.format.as_deref().unwrap_or("bannin") {
            "bannin" => SinkFormat::Bannin,
            "ocsf" => SinkFormat::Ocsf,
            other => {
                errors.push(format!("{at}: format {other:?}: expected bannin or ocsf"));
                SinkFormat::Bannin
            }
        };
        for pattern in &r.telemetry {
            if let Err(why) = crate::sinks::check_telemetry_pattern(pattern, format) {
                errors.push(format!("{at}: telemetry {pattern:?}: {why}"));
            }
        }
        if let Some(kind) = kind {
            out.push(SinkConfig {
                name: r.name.clone(),
                kind,
                format,
                // OCSF consumers expect a finding's updates; Bannin's own shape
                // keeps what it always exported unless asked.
                state_changes: r.state_changes.unwrap_or(format == SinkFormat::Ocsf),
                telemetry: r.telemetry.clone(),
            });
        }
    }
    out
}

fn threshold(
    errors: &mut ConfigErrors,
    name: &str,
    raw: &RawThreshold,
    default: crate::correlate::Threshold,
) -> crate::correlate::Threshold {
    let mut t = default;
    if let Some(h) = raw.hosts {
        if h < 2 {
            errors.push(format!(
                "correlation.{name}.hosts = {h}: must be at least 2"
            ));
        }
        t.hosts = h;
    }
    if let Some(w) = raw.window_secs {
        if !(1..=7 * 86_400).contains(&w) {
            errors.push(format!(
                "correlation.{name}.window_secs = {w}: must be 1 to 604800 (a week)"
            ));
        }
        t.window = Duration::from_secs(w);
    }
    if let Some(s) = &raw.severity {
        match parse_severity(s) {
            Some(sev) => t.severity = sev,
            None => errors.push(format!(
                "correlation.{name}.severity = {s:?}: expected info, low, medium, high or critical"
            )),
        }
    }
    t
}

fn correlation(
    errors: &mut ConfigErrors,
    raw: &RawCorrelation,
) -> crate::correlate::CorrelationConfig {
    let d = crate::correlate::CorrelationConfig::default();
    let max_keys = raw.max_keys.unwrap_or(d.max_keys);
    if !(100..=10_000_000).contains(&max_keys) {
        errors.push(format!(
            "correlation.max_keys = {max_keys}: must be 100 to 10000000"
        ));
    }
    let max_members = raw.max_members.unwrap_or(d.max_members);
    if !(8..=100_000).contains(&max_members) {
        errors.push(format!(
            "correlation.max_members = {max_members}: must be 8 to 100000"
        ));
    }
    let share = raw.mass_silence_share.unwrap_or(d.mass_silence_share);
    if !(share > 0.0 && share <= 1.0) {
        errors.push(format!(
            "correlation.mass_silence_share = {share}: must be above 0 and at most 1"
        ));
    }
    let fan_in_peers = raw.fan_in_peers.unwrap_or(d.fan_in_peers);
    if fan_in_peers < 2 {
        errors.push(format!(
            "correlation.fan_in_peers = {fan_in_peers}: must be at least 2"
        ));
    }
    crate::correlate::CorrelationConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        max_keys,
        max_members,
        spread: threshold(errors, "spread", &raw.spread, d.spread),
        account_hosts: threshold(errors, "account_hosts", &raw.account_hosts, d.account_hosts),
        ignore_accounts: raw.ignore_accounts.iter().cloned().collect(),
        password_spray: threshold(
            errors,
            "password_spray",
            &raw.password_spray,
            d.password_spray,
        ),
        lateral_movement: threshold(
            errors,
            "lateral_movement",
            &raw.lateral_movement,
            d.lateral_movement,
        ),
        remote_admin_ports: raw
            .remote_admin_ports
            .clone()
            .map(|p| p.into_iter().collect())
            .unwrap_or(d.remote_admin_ports),
        fan_in: threshold(errors, "fan_in", &raw.fan_in, d.fan_in),
        fan_in_peers,
        mass_silence: threshold(errors, "mass_silence", &raw.mass_silence, d.mass_silence),
        mass_silence_share: share,
    }
}

fn suppress_rules(
    errors: &mut ConfigErrors,
    raw: &[RawSuppress],
) -> Vec<crate::rules::SuppressRule> {
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for r in raw {
        let at = format!("suppress {:?}", r.name);
        check_rule_name(errors, &at, &r.name, &mut names);
        if r.reason.trim().is_empty() {
            errors.push(format!("{at}: a reason is required"));
        }
        if r.kind.is_empty() && r.hosts.is_empty() && r.labels.is_empty() && r.attributes.is_empty()
        {
            errors.push(format!(
                "{at}: matches every finding; give a kind, hosts, labels or attributes"
            ));
        }
        let mut attributes = Vec::new();
        for (k, pattern) in &r.attributes {
            match regex::Regex::new(pattern) {
                Ok(re) => attributes.push((k.clone(), re)),
                Err(e) => errors.push(format!("{at}: attributes.{k}: {e}")),
            }
        }
        let expires_unix_ms = match &r.expires {
            None => None,
            Some(text) => match time::OffsetDateTime::parse(
                text,
                &time::format_description::well_known::Rfc3339,
            ) {
                Ok(t) => {
                    Some(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
                }
                Err(e) => {
                    errors.push(format!(
                        "{at}: expires = {text:?}: {e} (RFC 3339, e.g. 2026-12-31T00:00:00Z)"
                    ));
                    None
                }
            },
        };
        out.push(crate::rules::SuppressRule {
            name: r.name.clone(),
            reason: r.reason.clone(),
            kind: r.kind.clone(),
            hosts: r.hosts.clone(),
            labels: r.labels.clone(),
            attributes,
            expires_unix_ms,
        });
    }
    out
}

/// Parses a severity name.
pub fn parse_severity(s: &str) -> Option<Severity> {
    bannin_proto::v1::Severity::from_name(s).map(|v| Severity::from_wire(v as i32))
}

impl CollectorConfig {
    /// Loads and validates `path`, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let (raw, mut errors): (Raw, _) = load_toml(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let listen = raw
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("listen = {:?}: {e}", raw.listen)))
            .ok();
        let operator_listen = raw.operator_listen.as_ref().and_then(|l| {
            l.parse::<SocketAddr>()
                .map_err(|e| errors.push(format!("operator_listen = {l:?}: {e}")))
                .ok()
        });
        if operator_listen.is_some() && operator_listen == listen {
            errors.push("operator_listen must differ from listen (it is the operators' own port)");
        }
        let data_dir = raw.data_dir.map(|d| base.join(d));
        if data_dir.is_none() {
            errors.push("data_dir is required");
        }
        let tls = tls(raw.tls, base, &mut errors);
        let max_message_bytes = raw
            .max_message_bytes
            .unwrap_or(bannin_proto::DEFAULT_MAX_MESSAGE_BYTES as u64);
        // Snapshot chunks and triage answers are up to 1 MiB plus framing.
        if !(MIN_MESSAGE_BYTES..=64 * 1024 * 1024).contains(&max_message_bytes) {
            errors.push(format!(
                "max_message_bytes = {max_message_bytes}: must be between {MIN_MESSAGE_BYTES} and 67108864 (snapshot chunks and triage answers take up to 1 MiB)"
            ));
        }
        check_hosts(&raw.hosts, &mut errors);
        let severity_overrides = severity_overrides(&raw.findings.severity, &mut errors);
        if raw.events.retention_days == 0 {
            errors.push("events.retention_days must be at least 1");
        }
        let bootstrap_admins = bootstrap_admins(&raw.operators.bootstrap_admins, &mut errors);
        let webhook = raw
            .webhook
            .as_ref()
            .and_then(|w| webhook(w, base, &mut errors));
        let enrollment = raw
            .enrollment
            .as_ref()
            .map(|e| enrollment(e, base, &mut errors));
        let cluster = raw.cluster.map(|c| cluster(&mut errors, base, c));
        let sinks = sinks(&mut errors, base, &raw.sink);
        let suppress = suppress_rules(&mut errors, &raw.suppress);
        let correlation = correlation(&mut errors, &raw.correlation);
        let sigma_paths: Vec<PathBuf> = raw.sigma.paths.iter().map(|p| base.join(p)).collect();
        for path in &sigma_paths {
            if let Err(e) = std::fs::metadata(path) {
                errors.push(format!("sigma.paths: {}: {e}", path.display()));
            }
        }
        errors.into_result()?;
        Ok(Self {
            cluster,
            sigma_paths,
            enrollment,
            sinks,
            webhook,
            suppress,
            correlation,
            bootstrap_admins,
            // Checked above: every None pushed an error.
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443))),
            operator_listen,
            data_dir: data_dir.unwrap_or_default(),
            tls: tls.unwrap_or_else(|| TlsPaths {
                ca: PathBuf::new(),
                cert: PathBuf::new(),
                key: PathBuf::new(),
            }),
            max_message_bytes: max_message_bytes as usize,
            silent_after_heartbeats: raw.hosts.silent_after_heartbeats,
            host_budget: crate::budget::Rates {
                events_per_sec: raw.hosts.max_events_per_sec,
                bytes_per_sec: raw.hosts.max_bytes_per_sec,
            },
            fold_window: Duration::from_secs(raw.findings.fold_window_secs),
            severity_overrides,
            event_retention: Duration::from_secs(raw.events.retention_days * 86_400),
            event_max_bytes: raw.events.max_bytes,
            event_index: raw.events.index,
        })
    }
}

/// `[tls]`: the three files, relative to the config file; the key owner-only.
fn tls(raw: Option<RawTls>, base: &Path, errors: &mut ConfigErrors) -> Option<TlsPaths> {
    let tls = raw.map(|t| TlsPaths {
        ca: base.join(t.ca),
        cert: base.join(t.cert),
        key: base.join(t.key),
    });
    match &tls {
        None => errors.push("[tls] with ca, cert and key is required"),
        Some(t) => {
            for (name, p) in [("tls.ca", &t.ca), ("tls.cert", &t.cert)] {
                if !p.is_file() {
                    errors.push(format!("{name} = {}: no such file", p.display()));
                }
            }
            if let Err(e) = check_key_permissions(&t.key) {
                errors.push(format!("tls.key: {e}"));
            }
        }
    }
    tls
}

/// `[hosts]`: silence and each host's write budget.
fn check_hosts(hosts: &RawHosts, errors: &mut ConfigErrors) {
    if hosts.silent_after_heartbeats == 0 {
        errors.push("hosts.silent_after_heartbeats must be at least 1");
    }
    if hosts.max_events_per_sec < 100 {
        errors.push(format!(
            "hosts.max_events_per_sec = {}: at least 100 (an agent's normal telemetry; 20000 by default)",
            hosts.max_events_per_sec
        ));
    }
    if hosts.max_bytes_per_sec < 2 * 1024 * 1024 {
        errors.push(format!(
            "hosts.max_bytes_per_sec = {}: at least 2097152 (a 1 MiB snapshot chunk must fit; 16 MiB by default)",
            hosts.max_bytes_per_sec
        ));
    }
}

/// `[findings.severity]`: per-kind overrides.
fn severity_overrides(
    given: &BTreeMap<String, String>,
    errors: &mut ConfigErrors,
) -> BTreeMap<String, Severity> {
    let mut severity_overrides = BTreeMap::new();
    for (kind, s) in given {
        match parse_severity(s) {
            Some(sev) => {
                severity_overrides.insert(kind.clone(), sev);
            }
            None => errors.push(format!(
                "findings.severity.{kind} = {s:?}: expected info, low, medium, high or critical"
            )),
        }
    }
    severity_overrides
}

/// `[operators] bootstrap_admins`.
fn bootstrap_admins(
    given: &[String],
    errors: &mut ConfigErrors,
) -> Vec<bannin_proto::identity::OperatorName> {
    let mut bootstrap_admins = Vec::new();
    for name in given {
        match bannin_proto::identity::OperatorName::new(name.as_str()) {
            Ok(n) => bootstrap_admins.push(n),
            Err(e) => errors.push(format!("operators.bootstrap_admins: {name:?}: {e}")),
        }
    }
    bootstrap_admins
}

/// `[webhook]`: the Alertmanager endpoint (`None` after an error).
fn webhook(
    w: &RawWebhook,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<crate::webhook::WebhookConfig> {
    let listen = w
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| errors.push(format!("webhook.listen = {:?}: {e}", w.listen)))
        .ok()?;
    let token_file = w.token_file.as_ref().map(|p| base.join(p));
    if let Some(path) = &token_file
        && let Err(e) = crate::webhook::read_token(path)
    {
        errors.push(format!("webhook.token_file: {e}"));
    }
    let max_body_bytes = w.max_body_bytes.unwrap_or(1024 * 1024);
    if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
        errors.push(format!(
            "webhook.max_body_bytes = {max_body_bytes}: must be 1024 to 67108864"
        ));
    }
    let host_labels = w.host_labels.clone().unwrap_or_else(|| {
        ["host", "hostname", "nodename", "instance"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    if host_labels.is_empty() {
        errors.push("webhook.host_labels: name at least one label");
    }
    Some(crate::webhook::WebhookConfig {
        listen,
        token_file,
        max_body_bytes,
        host_labels,
    })
}

/// `[enrollment]`: the token endpoint and the certificates it signs.
fn enrollment(
    e: &RawEnrollment,
    base: &Path,
    errors: &mut ConfigErrors,
) -> crate::enroll::EnrollmentConfig {
    let listen = e.listen.as_ref().and_then(|l| {
        l.parse::<SocketAddr>()
            .map_err(|err| errors.push(format!("enrollment.listen = {l:?}: {err}")))
            .ok()
    });
    let ca_key = base.join(&e.ca_key);
    if let Err(err) = check_key_permissions(&ca_key) {
        errors.push(format!("enrollment.ca_key: {err}"));
    }
    let secs = match (e.validity_secs, e.validity_days) {
        (Some(s), _) => s,
        (None, Some(d)) => d.saturating_mul(86_400),
        (None, None) => 90 * 86_400,
    };
    if !(60..=3 * 365 * 86_400).contains(&secs) {
        errors.push(format!(
            "enrollment validity of {secs} s: must be a minute to three years"
        ));
    }
    crate::enroll::EnrollmentConfig {
        listen,
        ca_key,
        validity: Duration::from_secs(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collector.toml");
        std::fs::write(
            &path,
            "listen = \"nowhere\"\ncolour = 2\nmax_message_bytes = 1\n[findings.severity]\n\"x\" = \"bad\"\n",
        )
        .expect("write");
        let err = CollectorConfig::load(&path).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "colour",
            "listen",
            "data_dir",
            "[tls]",
            "max_message_bytes",
            "findings.severity.x",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.problems.len(), 6, "{text}");
    }

    #[test]
    fn a_sink_format_and_telemetry_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collector.toml");
        std::fs::write(
            &path,
            concat!(
                "[[sink]]\nname = \"a\"\ntype = \"jsonl\"\npath = \"a.jsonl\"\nformat = \"cef\"\n",
                "[[sink]]\nname = \"b\"\ntype = \"jsonl\"\npath = \"b.jsonl\"\nformat = \"ocsf\"\n",
                "telemetry = [\"system.boot\", \"file.*\", \"Process.Exec\", \"a*b\"]\n",
            ),
        )
        .expect("write");
        let text = CollectorConfig::load(&path)
            .expect_err("invalid")
            .to_string();
        assert!(
            text.contains("format \"cef\": expected bannin or ocsf"),
            "{text}"
        );
        assert!(
            text.contains("telemetry \"system.boot\": no OCSF class"),
            "{text}"
        );
        assert!(text.contains("telemetry \"Process.Exec\""), "{text}");
        assert!(text.contains("telemetry \"a*b\""), "{text}");
        assert!(!text.contains("telemetry \"file.*\""), "{text}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// deploy/collector.example.toml names every key: it must load, with only
    /// its TLS files missing here.
    #[test]
    fn the_example_config_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Every commented setting in force too (a `# key = value` or `# [table]` line).
        let setting = regex::Regex::new(r#"^# (\[\[?[a-z_.]+\]\]?|[a-z_"][A-Za-z0-9_."]* = .+)$"#)
            .expect("regex");
        std::fs::create_dir_all(dir.path().join("pki")).expect("pki");
        std::fs::create_dir_all(dir.path().join("sigma")).expect("sigma");
        let ca_key = dir.path().join("pki/ca.key");
        std::fs::write(&ca_key, "not a key").expect("ca key");
        std::fs::set_permissions(&ca_key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let token = dir.path().join("alertmanager.token");
        std::fs::write(&token, "0123456789abcdef0123").expect("token");
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        let example = include_str!("../../deploy/collector.example.toml")
            .lines()
            .map(|l| match setting.captures(l) {
                Some(c) => c[1].to_owned(),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, example).expect("write");
        let err = CollectorConfig::load(&path).expect_err("no TLS files here");
        assert!(
            err.problems.iter().all(|p| p.starts_with("tls.")),
            "{}",
            err
        );
    }
}
