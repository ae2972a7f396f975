//! The collector's configuration file (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:7443"          # agents and operators, mTLS
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
//!
//! [findings]
//! fold_window_secs = 600            # identical findings of a host fold within this window
//! [findings.severity]               # per-kind severity overrides
//! "net.new_listener" = "high"
//!
//! [events]
//! retention_days = 30
//! max_bytes = 10737418240
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
}

impl Default for RawHosts {
    fn default() -> Self {
        Self {
            silent_after_heartbeats: default_silent(),
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
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            retention_days: default_retention_days(),
            max_bytes: default_event_bytes(),
        }
    }
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
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// TLS material.
    pub tls: TlsPaths,
    /// Largest message accepted from a peer.
    pub max_message_bytes: usize,
    /// Missed heartbeats before `host.silent`.
    pub silent_after_heartbeats: u32,
    /// Identical findings of a host within this window fold into one.
    pub fold_window: Duration,
    /// Per-kind severity overrides.
    pub severity_overrides: BTreeMap<String, Severity>,
    /// Events older than this are removed.
    pub event_retention: Duration,
    /// Most bytes of raw events kept.
    pub event_max_bytes: u64,
    /// Operators made admin when the operator table is empty (first start).
    pub bootstrap_admins: Vec<bannin_proto::identity::OperatorName>,
}

/// Parses a severity name.
pub fn parse_severity(s: &str) -> Option<Severity> {
    match s {
        "info" => Some(Severity::Info),
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
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
        let data_dir = raw.data_dir.map(|d| base.join(d));
        if data_dir.is_none() {
            errors.push("data_dir is required");
        }
        let tls = raw.tls.map(|t| TlsPaths {
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
        let max_message_bytes = raw
            .max_message_bytes
            .unwrap_or(bannin_proto::DEFAULT_MAX_MESSAGE_BYTES as u64);
        // Snapshot chunks and triage answers are up to 1 MiB plus framing.
        if !(MIN_MESSAGE_BYTES..=64 * 1024 * 1024).contains(&max_message_bytes) {
            errors.push(format!(
                "max_message_bytes = {max_message_bytes}: must be between {MIN_MESSAGE_BYTES} and 67108864 (snapshot chunks and triage answers take up to 1 MiB)"
            ));
        }
        if raw.hosts.silent_after_heartbeats == 0 {
            errors.push("hosts.silent_after_heartbeats must be at least 1");
        }
        let mut severity_overrides = BTreeMap::new();
        for (kind, s) in &raw.findings.severity {
            match parse_severity(s) {
                Some(sev) => {
                    severity_overrides.insert(kind.clone(), sev);
                }
                None => errors.push(format!(
                    "findings.severity.{kind} = {s:?}: expected info, low, medium, high or critical"
                )),
            }
        }
        if raw.events.retention_days == 0 {
            errors.push("events.retention_days must be at least 1");
        }
        let mut bootstrap_admins = Vec::new();
        for name in &raw.operators.bootstrap_admins {
            match bannin_proto::identity::OperatorName::new(name.as_str()) {
                Ok(n) => bootstrap_admins.push(n),
                Err(e) => errors.push(format!("operators.bootstrap_admins: {name:?}: {e}")),
            }
        }
        errors.into_result()?;
        Ok(Self {
            bootstrap_admins,
            // Checked above: every None pushed an error.
            listen: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7443))),
            data_dir: data_dir.unwrap_or_default(),
            tls: tls.unwrap_or_else(|| TlsPaths {
                ca: PathBuf::new(),
                cert: PathBuf::new(),
                key: PathBuf::new(),
            }),
            max_message_bytes: max_message_bytes as usize,
            silent_after_heartbeats: raw.hosts.silent_after_heartbeats,
            fold_window: Duration::from_secs(raw.findings.fold_window_secs),
            severity_overrides,
            event_retention: Duration::from_secs(raw.events.retention_days * 86_400),
            event_max_bytes: raw.events.max_bytes,
        })
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
}
