//! `bannin cluster`: the collectors, the NATS servers, the streams.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;
use serde_json::json;

use crate::cmd::Client;
use crate::output::{print_json, short_time};

pub(crate) async fn status(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let s = client
        .cluster_status(v1::ClusterStatusRequest {})
        .await
        .context("reading the cluster's state")?
        .into_inner();
    let log_last = s
        .streams
        .iter()
        .find(|st| st.name == "BANNIN_LOG")
        .map_or(0, |st| st.last_sequence);
    if json {
        print_json(&json!({
            "enabled": s.enabled,
            "collector": s.collector,
            "applied": s.applied,
            "server": s.server,
            "server_version": s.server_version,
            "server_cluster": s.server_cluster,
            "collectors": s.collectors.iter().map(|c| json!({
                "name": c.name,
                "listen": c.listen,
                "agents": c.agents,
                "applied": c.applied,
                "lag": log_last.saturating_sub(c.applied),
                "started": bannin_proto::rfc3339(c.started_unix_ms),
                "seen": bannin_proto::rfc3339(c.seen_unix_ms),
                "detection": c.detection,
            })).collect::<Vec<_>>(),
            "refused": s.refused,
            "last_refused": (!s.last_refused.is_empty()).then_some(&s.last_refused),
            "collectors_unavailable": (!s.collectors_unavailable.is_empty()).then_some(&s.collectors_unavailable),
            "detection_differs": detection_differs(&s),
            "streams": s.streams.iter().map(|st| json!({
                "name": st.name,
                "replicas": st.replicas,
                "messages": st.messages,
                "bytes": st.bytes,
                "last_sequence": st.last_sequence,
                "leader": st.leader,
                "unavailable": (!st.unavailable.is_empty()).then_some(&st.unavailable),
                "peers": st.peers.iter().map(|p| json!({
                    "server": p.server,
                    "current": p.current,
                    "offline": p.offline,
                    "lag": p.lag,
                    "active_ms": p.active_ms,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if !s.enabled {
        crate::say!(
            "Not in cluster mode: one collector on its own store (add [cluster] to collector.toml; docs/cluster.md)."
        );
        return Ok(ExitCode::SUCCESS);
    }
    crate::say!(
        "This collector: {} (applied {} of {}); NATS {} v{}, cluster {}",
        s.collector,
        s.applied,
        log_last,
        s.server,
        s.server_version,
        s.server_cluster
    );
    crate::say!("");
    crate::say!(
        "{:<20} {:<22} {:>7} {:>12} {:>8} {:<19}",
        "COLLECTOR",
        "LISTEN",
        "AGENTS",
        "APPLIED",
        "LAG",
        "SEEN (UTC)"
    );
    for c in &s.collectors {
        crate::say!(
            "{:<20} {:<22} {:>7} {:>12} {:>8} {:<19}",
            c.name,
            c.listen,
            c.agents,
            c.applied,
            log_last.saturating_sub(c.applied),
            short_time(c.seen_unix_ms)
        );
    }
    if s.refused > 0 {
        crate::say!("");
        crate::say!(
            "WARNING: this collector refused {} message(s) of the cluster log since it started — not signed by a collector of this CA, or signed by another collector than the one named. Something other than a collector publishes to NATS: check the NATS authorization (deploy/nats/). Last: {}",
            s.refused,
            s.last_refused
        );
    }
    if !s.collectors_unavailable.is_empty() {
        crate::say!(
            "(collectors unavailable: {} — electing a leader after losing a NATS server? ask again in a few seconds)",
            s.collectors_unavailable
        );
    }
    if detection_differs(&s) {
        crate::say!("");
        crate::say!(
            "WARNING: the collectors' detection settings differ ({}): each applies the log with its own [correlation], [[suppress]], severity overrides and Sigma rules, so their findings differ. Give every collector the same.",
            s.collectors
                .iter()
                .map(|c| format!("{} {}", c.name, c.detection))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    crate::say!("");
    crate::say!(
        "{:<20} {:>8} {:>10} {:>12} {:<10} PEERS",
        "STREAM",
        "REPLICAS",
        "MESSAGES",
        "BYTES",
        "LEADER"
    );
    for st in &s.streams {
        if !st.unavailable.is_empty() {
            crate::say!(
                "{:<20} unavailable: {} (electing a leader after losing a NATS server? ask again in a few seconds)",
                st.name,
                st.unavailable
            );
            continue;
        }
        let peers: Vec<String> = st
            .peers
            .iter()
            .map(|p| {
                let state = if p.offline {
                    "offline".to_owned()
                } else if p.current {
                    "current".to_owned()
                } else {
                    format!("behind {}", p.lag)
                };
                format!("{} {state}", p.server)
            })
            .collect();
        crate::say!(
            "{:<20} {:>8} {:>10} {:>12} {:<10} {}",
            st.name,
            st.replicas,
            st.messages,
            st.bytes,
            st.leader,
            peers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether two live collectors report different detection settings (an
/// empty digest is an older collector: not counted).
fn detection_differs(s: &v1::ClusterStatusResponse) -> bool {
    let mut digests = s
        .collectors
        .iter()
        .map(|c| c.detection.as_str())
        .filter(|d| !d.is_empty());
    let first = digests.next();
    digests.any(|d| Some(d) != first)
}
