//! `ClusterStatus`: what `bannin cluster` shows.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};

/// `ClusterStatus`.
pub(super) async fn cluster_status(
    svc: &OperatorService,
    request: Request<v1::ClusterStatusRequest>,
) -> Result<Response<v1::ClusterStatusResponse>, Status> {
    caller(&request)?;
    let Some(cluster) = svc.journal.cluster() else {
        return Ok(Response::new(v1::ClusterStatusResponse::default()));
    };
    // Each part answers on its own: a bucket between leaders says so
    // rather than failing the whole call.
    let (collectors, streams) = tokio::join!(cluster.collectors(), cluster.streams());
    let (collectors, collectors_unavailable) = match collectors {
        Ok(c) => (c, String::new()),
        Err(e) => (Vec::new(), e.to_string()),
    };
    let collectors = collectors
        .into_iter()
        .map(|c| v1::ClusterCollector {
            name: c.name,
            listen: c.listen,
            started_unix_ms: c.started_unix_ms,
            seen_unix_ms: c.seen_unix_ms,
            applied: c.applied,
            agents: c.agents,
            detection: c.detection,
        })
        .collect();
    let streams = streams
        .into_iter()
        .map(|(name, s)| match s {
            Ok(s) => stream_state(&s),
            Err(e) => v1::ClusterStream {
                name,
                unavailable: e.to_string(),
                ..Default::default()
            },
        })
        .collect();
    let server = cluster.server();
    let (refused, last_refused) = cluster.refused();
    Ok(Response::new(v1::ClusterStatusResponse {
        enabled: true,
        collector: cluster.name().to_owned(),
        applied: svc
            .store
            .counter(crate::cluster::APPLIED_COUNTER)
            .map_err(|e| crate::link::internal("reading the applied position", &e))?,
        collectors,
        server: format!("{} ({}:{})", server.server_name, server.host, server.port),
        server_version: server.version,
        server_cluster: server.cluster.unwrap_or_default(),
        streams,
        collectors_unavailable,
        refused,
        last_refused,
    }))
}

/// One stream's state as `bannin cluster` shows it.
fn stream_state(s: &async_nats::jetstream::stream::Info) -> v1::ClusterStream {
    let (leader, peers) = match &s.cluster {
        Some(c) => {
            let leader = c.leader.clone().unwrap_or_default();
            let mut peers = vec![v1::ClusterReplica {
                server: leader.clone(),
                current: !leader.is_empty(),
                ..Default::default()
            }];
            peers.extend(c.replicas.iter().map(|p| v1::ClusterReplica {
                server: p.name.clone(),
                current: p.current,
                offline: p.offline,
                lag: p.lag.unwrap_or(0),
                active_ms: u64::try_from(p.active.as_millis()).unwrap_or(u64::MAX),
            }));
            (leader, peers)
        }
        None => (String::new(), Vec::new()),
    };
    v1::ClusterStream {
        name: s.config.name.clone(),
        replicas: u32::try_from(s.config.num_replicas).unwrap_or(0),
        messages: s.state.messages,
        bytes: s.state.bytes,
        last_sequence: s.state.last_sequence,
        leader,
        peers,
        unavailable: String::new(),
    }
}
