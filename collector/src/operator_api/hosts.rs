//! Hosts: the inventory, their stored telemetry, labels and revocation.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller, page};
use crate::link::internal;
use crate::model::Action;
use crate::store::EventQuery;

/// `ListHosts`.
pub(super) async fn list_hosts(
    svc: &OperatorService,
    request: Request<v1::ListHostsRequest>,
) -> Result<Response<v1::ListHostsResponse>, Status> {
    caller(&request)?;
    let hosts = svc
        .hosts
        .list()
        .into_iter()
        .map(|h| {
            let r = h.record;
            v1::Host {
                collector: h.collector,
                isolation: svc.commands.isolation_status(&r.host_id).into(),
                labels: svc
                    .store
                    .host_labels(&r.host_id)
                    .map(|l| l.effective())
                    .unwrap_or_default(),
                host_id: r.host_id,
                hostname: r.hostname,
                os: r.os,
                kernel: r.kernel,
                addresses: r.addresses,
                agent_version: r.agent_version,
                first_seen_unix_ms: r.first_seen_unix_ms,
                last_seen_unix_ms: r.last_seen_unix_ms,
                online: h.online,
                acked_sequence: 0,
                sensors: r.sensors.iter().map(|s| s.to_wire()).collect(),
                spool_bytes: r.spool_bytes,
                peer_address: r.peer_address,
                ..v1::Host::default()
            }
        })
        .map(|mut h| {
            if let Some(r) = svc.hosts.revocation(&h.host_id) {
                h.revoked = true;
                h.revoked_by = r.by;
                h.revoked_unix_ms = r.at_unix_ms;
                h.revoked_reason = r.reason;
            }
            if let Ok(id) = bannin_proto::identity::HostId::new(h.host_id.clone()) {
                h.acked_sequence = svc.ingest.high_water(&id);
            }
            h
        })
        .collect();
    Ok(Response::new(v1::ListHostsResponse { hosts }))
}

/// `ListEvents`.
pub(super) async fn list_events(
    svc: &OperatorService,
    request: Request<v1::ListEventsRequest>,
) -> Result<Response<v1::ListEventsResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    let host = bannin_proto::identity::HostId::new(r.host_id)
        .map_err(|e| Status::invalid_argument(format!("host id: {e}")))?;
    let query = EventQuery {
        since_unix_ms: r.since_unix_ms,
        kind: r.kind,
        after_sequence: r.after_sequence,
        limit: page(r.limit),
    };
    let (events, truncated) = svc
        .store
        .events(host.as_str(), &query)
        .map_err(|e| internal("reading events", &e))?;
    let events = events
        .into_iter()
        .map(|(sequence, e)| v1::StoredEvent {
            host_id: host.to_string(),
            sequence,
            received_unix_ms: e.received_unix_ms,
            event: Some(v1::Event {
                kind: e.kind,
                severity: e.severity.to_wire() as i32,
                observed_unix_ms: e.observed_unix_ms,
                attributes: e.attributes.into_iter().collect(),
                summary: e.summary,
                indicator: e.indicator,
            }),
        })
        .collect();
    Ok(Response::new(v1::ListEventsResponse { events, truncated }))
}

/// `RevokeHost`.
pub(super) async fn revoke_host(
    svc: &OperatorService,
    request: Request<v1::RevokeHostRequest>,
) -> Result<Response<v1::RevokeHostResponse>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    if r.reason.trim().is_empty() {
        return Err(Status::invalid_argument("a reason is required"));
    }
    // A host that never connected can be revoked too (a `pki issue`
    // certificate handed out and lost): by a well-formed id, and by the keys of
    // the certificates the admin hands in.
    let host = bannin_proto::identity::HostId::new(r.host_id.as_str())
        .map_err(|e| Status::invalid_argument(format!("host id: {e}")))?;
    let known = svc
        .store
        .host(host.as_str())
        .map_err(|e| internal("reading hosts", &e))?
        .is_some();
    let mut keys = Vec::new();
    for (n, pem) in r.cert_pem.iter().enumerate() {
        use rustls::pki_types::pem::PemObject as _;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| Status::invalid_argument(format!("certificate {}: {e}", n + 1)))?;
        match bannin_proto::identity::PeerIdentity::from_certificate(&der) {
            Ok(bannin_proto::identity::PeerIdentity::Agent(h)) if h == host => {}
            Ok(other) => {
                return Err(Status::invalid_argument(format!(
                    "certificate {} is for {other}, not host {host}",
                    n + 1
                )));
            }
            Err(e) => {
                return Err(Status::invalid_argument(format!(
                    "certificate {}: {e}",
                    n + 1
                )));
            }
        }
        keys.push(
            bannin_proto::identity::certificate_key_sha256(&der)
                .map_err(|e| Status::invalid_argument(format!("certificate {}: {e}", n + 1)))?,
        );
    }
    let revoked = crate::model::RevokedHost {
        host_id: host.to_string(),
        by: name.to_string(),
        at_unix_ms: bannin_proto::now_unix_ms(),
        reason: r.reason.clone(),
    };
    // Through the journal: every collector revokes it (and cuts the
    // sessions it holds) as it applies the change.
    let mut all = svc
        .store
        .host_keys(host.as_str())
        .map_err(|e| internal("reading host keys", &e))?;
    for k in keys {
        if !all.contains(&k) {
            all.push(k);
        }
    }
    let elsewhere = svc.journal.holder(host.as_str()).await.is_some();
    let here = svc
        .change(crate::journal::Op::RevokeHost {
            revoked,
            keys: all.clone(),
        })
        .await?;
    let (cut, keys) = (
        usize::try_from(here).unwrap_or(0) + usize::from(elsewhere),
        all,
    );
    svc.store
        .append_action(&Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: "host.revoke".into(),
            target: host.to_string(),
            reason: r.reason,
            result: format!(
                "{cut} live session(s) cut; {} key(s) revoked{}",
                keys.len(),
                if known {
                    ""
                } else {
                    "; the host had never connected"
                }
            ),
        })
        .map_err(|e| internal("writing the action log", &e))?;
    svc.flush().await?;
    Ok(Response::new(v1::RevokeHostResponse {
        host_id: host.to_string(),
        sessions_cut: u32::try_from(cut).unwrap_or(u32::MAX),
        known,
        keys_revoked: keys,
    }))
}

/// `SetHostLabels`.
pub(super) async fn set_host_labels(
    svc: &OperatorService,
    request: Request<v1::SetHostLabelsRequest>,
) -> Result<Response<v1::Host>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let known_here = svc
        .store
        .host(&r.host_id)
        .map_err(|e| internal("reading hosts", &e))?
        .is_some();
    // A host held by another collector is known from its presence.
    let known = known_here
        || svc
            .hosts
            .list()
            .iter()
            .any(|h| h.record.host_id == r.host_id);
    if !known {
        return Err(Status::not_found(format!("no host {:?}", r.host_id)));
    }
    if r.set.is_empty() && r.remove.is_empty() {
        return Err(Status::invalid_argument("nothing to change"));
    }
    bannin_proto::labels::check(&r.set).map_err(|e| Status::invalid_argument(e.to_string()))?;
    for key in &r.remove {
        bannin_proto::labels::check_key(key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
    }
    let mut labels = svc
        .store
        .host_labels(&r.host_id)
        .map_err(|e| internal("reading labels", &e))?;
    for key in &r.remove {
        labels.set.remove(key);
    }
    labels.set.extend(r.set.clone());
    bannin_proto::labels::check(&labels.effective())
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let mut changes: Vec<String> = r.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    changes.extend(r.remove.iter().map(|k| format!("-{k}")));
    // The change (not the whole set) through the journal, so every
    // collector applies it to its own copy, in one order.
    svc.change(crate::journal::Op::LabelHost {
        host_id: r.host_id.clone(),
        set: r.set.clone().into_iter().collect(),
        remove: r.remove.clone(),
    })
    .await?;
    let labels = svc
        .store
        .host_labels(&r.host_id)
        .map_err(|e| internal("reading labels", &e))?;
    svc.store
        .append_action(&Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: "host.label".into(),
            target: r.host_id.clone(),
            reason: String::new(),
            result: changes.join(", "),
        })
        .map_err(|e| internal("writing labels", &e))?;
    svc.flush().await?;
    let host = svc
        .hosts
        .list()
        .into_iter()
        .find(|h| h.record.host_id == r.host_id)
        .map(|h| v1::Host {
            host_id: h.record.host_id.clone(),
            hostname: h.record.hostname.clone(),
            online: h.online,
            isolation: svc.commands.isolation_status(&h.record.host_id).into(),
            labels: labels.effective(),
            ..v1::Host::default()
        })
        .unwrap_or_default();
    Ok(Response::new(host))
}

/// Batches one search decodes at most (those whose filter may hold the term).
const MAX_SEARCH_BATCHES: usize = 200_000;
/// Longest look back of a search.
const MAX_SEARCH_DAYS: i64 = 400;

/// `Search`: through the index, never over every event.
pub(super) async fn search(
    svc: &OperatorService,
    request: Request<v1::SearchRequest>,
) -> Result<Response<v1::SearchResponse>, Status> {
    use crate::store::search::{DAY_MS, Field, SearchError, SearchQuery, Wanted};
    if !svc.search_index {
        return Err(Status::failed_precondition(
            "this collector does not index events ([events] index = false in collector.toml)",
        ));
    }
    let r = request.into_inner();
    let bad = |m: String| Status::invalid_argument(m);
    let value = r.value.trim();
    if value.is_empty() || value.len() > crate::store::search::MAX_VALUE {
        return Err(bad("search: give a value (at most 512 bytes)".into()));
    }
    let wanted = match r.field.as_str() {
        "ip" => {
            let net = bannin_proto::hunts::network(value).ok_or_else(|| {
                bad(format!(
                    "{value:?} is not an address or network (a.b.c.d, a.b.c.d/n, v6, v6/n)"
                ))
            })?;
            Wanted::Network(net)
        }
        "port" => {
            let port: u16 = value
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("{value:?} is not a port")))?;
            Wanted::Value(Field::Port, port.to_string().into_bytes())
        }
        "sha256" => {
            let v = value.to_ascii_lowercase();
            if !bannin_proto::vocab::is_sha256_hex(&v) {
                return Err(bad(format!("{value:?} is not a SHA-256 (64 hex digits)")));
            }
            Wanted::Value(Field::Sha256, v.into_bytes())
        }
        "exe" => Wanted::Value(Field::Exe, value.as_bytes().to_vec()),
        "user" => Wanted::Value(Field::User, value.as_bytes().to_vec()),
        "process" => Wanted::Value(Field::Process, value.as_bytes().to_vec()),
        "kind" => Wanted::Value(Field::Kind, value.as_bytes().to_vec()),
        other => {
            return Err(bad(format!(
                "unknown search field {other:?}: ip, port, sha256, exe, user, process or kind"
            )));
        }
    };
    let now = bannin_proto::now_unix_ms();
    let since = match r.since_unix_ms {
        0 => now - 7 * DAY_MS,
        s => s.max(now - MAX_SEARCH_DAYS * DAY_MS),
    };
    let query = SearchQuery {
        wanted,
        since_unix_ms: since,
        hosts: r.hosts,
        limit: match r.limit {
            0 => 100,
            n => (n as usize).min(10_000),
        },
        max_batches: MAX_SEARCH_BATCHES,
    };
    let store = svc.store.clone();
    let answer = tokio::task::spawn_blocking(move || store.search(&query))
        .await
        .map_err(|e| Status::internal(format!("search task: {e}")))?
        .map_err(|e| match e {
            SearchError::Refused(r) => bad(r.to_string()),
            SearchError::Store(e) => internal("searching", &e),
        })?;
    let events = answer
        .events
        .into_iter()
        .map(|(host, sequence, e)| v1::StoredEvent {
            host_id: host,
            sequence,
            received_unix_ms: e.received_unix_ms,
            event: Some(v1::Event {
                kind: e.kind,
                severity: e.severity.to_wire() as i32,
                observed_unix_ms: e.observed_unix_ms,
                attributes: e.attributes.into_iter().collect(),
                summary: e.summary,
                indicator: e.indicator,
            }),
        })
        .collect();
    let mut hosts: Vec<v1::SearchHost> = answer
        .hosts
        .into_iter()
        .map(|(host_id, m)| v1::SearchHost {
            host_id,
            events: m.events,
            first_unix_ms: m.first_unix_ms,
            last_unix_ms: m.last_unix_ms,
        })
        .collect();
    hosts.sort_by(|a, b| b.events.cmp(&a.events).then(a.host_id.cmp(&b.host_id)));
    Ok(Response::new(v1::SearchResponse {
        hosts,
        events,
        entries: answer.filters,
        truncated: answer.truncated,
    }))
}
