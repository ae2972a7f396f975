//! `bannin` hosts, host label, host revoke.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::cmd::Client;
use crate::output::{host_json, print_json, short_time};

pub(crate) async fn list(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let hosts = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .context("listing hosts")?
        .into_inner()
        .hosts;
    if json {
        print_json(&hosts.iter().map(host_json).collect::<Vec<_>>())?;
    } else {
        crate::say!(
            "{:<24} {:<8} {:<18} {:<20} {:<19} {:<10} SENSORS",
            "HOST",
            "STATUS",
            "ISOLATION",
            "HOSTNAME",
            "LAST SEEN (UTC)",
            "ACKED"
        );
        for h in hosts {
            let degraded: Vec<String> = h
                .sensors
                .iter()
                .filter(|s| s.state != "ok")
                .map(|s| format!("{} {}", s.name, s.state))
                .collect();
            let sensors = if degraded.is_empty() {
                format!("{} ok", h.sensors.len())
            } else {
                degraded.join(", ")
            };
            crate::say!(
                "{:<24} {:<8} {:<18} {:<20} {:<19} {:<10} {}",
                h.host_id,
                if h.revoked {
                    "revoked"
                } else if h.online {
                    "online"
                } else {
                    "offline"
                },
                h.isolation,
                h.hostname,
                short_time(h.last_seen_unix_ms),
                h.acked_sequence,
                sensors
            );
            if h.revoked {
                crate::say!(
                    "{:<24} revoked by {} at {}: {}",
                    "",
                    h.revoked_by,
                    bannin_proto::rfc3339(h.revoked_unix_ms),
                    h.revoked_reason
                );
            }
            if !h.collector.is_empty() {
                crate::say!("{:<24} collector: {}", "", h.collector);
            }
            if !h.labels.is_empty() {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                crate::say!("{:<24} labels: {}", "", labels.join(", "));
            }
        }
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn label(
    client: &mut Client,
    json: bool,
    host: String,
    set: Vec<(String, String)>,
    remove: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let h = client
        .set_host_labels(v1::SetHostLabelsRequest {
            host_id: host,
            set: set.into_iter().collect(),
            remove,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if json {
        print_json(&host_json(&h))?;
    } else {
        let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        crate::say!("{}: {}", h.host_id, labels.join(", "));
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn revoke(
    client: &mut Client,
    json: bool,
    host: String,
    reason: String,
    certs: Vec<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let mut cert_pem = Vec::new();
    for path in &certs {
        cert_pem.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the certificate {}", path.display()))?,
        );
    }
    let r = client
        .revoke_host(v1::RevokeHostRequest {
            host_id: host.clone(),
            reason,
            cert_pem,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("revoking {host}"))?
        .into_inner();
    if json {
        print_json(&serde_json::json!({
            "host_id": r.host_id,
            "sessions_cut": r.sessions_cut,
            "known": r.known,
            "keys_revoked": r.keys_revoked,
        }))?;
    } else {
        crate::say!(
            "{} revoked: new connections are refused; {} live session(s) cut; {} key(s) revoked",
            r.host_id,
            r.sessions_cut,
            r.keys_revoked.len()
        );
        if !r.known {
            crate::say!(
                "note: {} never connected to this collector{}",
                r.host_id,
                if r.keys_revoked.is_empty() {
                    "; without --cert its key is unknown, so only the id is refused"
                } else {
                    ""
                }
            );
        }
    }

    Ok(ExitCode::SUCCESS)
}
