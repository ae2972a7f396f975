//! Hunts: starting, stopping and reading them (the work is `crate::hunts`).

use bannin_proto::{now_unix_ms, v1};
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::hunts::{DEFAULT_EXPIRY, HuntError, Hunts, MAX_SHOWN_HITS, Progress, StartRequest};
use crate::link::internal;
use crate::model::Severity;

fn hunts(svc: &OperatorService) -> Result<&Hunts, Status> {
    svc.commands
        .hunts()
        .map(|h| h.as_ref())
        .ok_or_else(|| Status::unavailable("hunts are not served here"))
}

fn status(error: HuntError) -> Status {
    match error {
        HuntError::Store(e) => internal("hunts", &e),
        e @ HuntError::Journal(_) => Status::unavailable(e.to_string()),
        e @ HuntError::NotFound(_) => Status::not_found(e.to_string()),
        e => Status::invalid_argument(e.to_string()),
    }
}

/// A hunt as the API shows it, with its counts.
fn to_wire(progress: &Progress) -> v1::Hunt {
    let h = &progress.hunt;
    let (answered, with_hits, failed, offline) = progress.counts();
    v1::Hunt {
        id: h.wire_id(),
        question: Some(h.question()),
        description: h.description.clone(),
        labels: h.labels.clone().into_iter().collect(),
        hosts: h.hosts.clone(),
        operator: h.operator.clone(),
        reason: h.reason.clone(),
        severity: h.severity.name().into(),
        created_unix_ms: h.created_unix_ms,
        expires_unix_ms: h.expires_unix_ms,
        state: h.state(now_unix_ms()).into(),
        stopped_unix_ms: h.stopped_unix_ms,
        stopped_by: h.stopped_by.clone(),
        incident: h.incident,
        hosts_selected: u32::try_from(progress.hosts.len()).unwrap_or(u32::MAX),
        answered,
        with_hits,
        failed,
        offline,
        max_cpu_ms: h.max_cpu_ms,
        max_read_bytes: h.max_read_bytes,
        max_hits: h.max_hits,
    }
}

/// `StartHunt`.
pub(super) async fn start_hunt(
    svc: &OperatorService,
    request: Request<v1::StartHuntRequest>,
) -> Result<Response<v1::Hunt>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let severity = match r.severity.as_str() {
        "" => Severity::Medium,
        s => crate::config::parse_severity(s)
            .ok_or_else(|| Status::invalid_argument(format!("unknown severity {s:?}")))?,
    };
    let start = StartRequest {
        question: r.question.unwrap_or_default(),
        labels: r.labels.into_iter().collect(),
        hosts: r.hosts,
        expires_in: match r.expires_in_secs {
            0 => DEFAULT_EXPIRY,
            n => std::time::Duration::from_secs(u64::from(n)),
        },
        severity,
        reason: r.reason,
        incident: r.incident,
        max_cpu_ms: r.max_cpu_ms,
        max_read_bytes: r.max_read_bytes,
        max_hits: r.max_hits,
    };
    let hunts = hunts(svc)?;
    let hunt = hunts.start(name.as_str(), start).await.map_err(status)?;
    let progress = hunts
        .progress(hunt)
        .map_err(|e| internal("reading the hunt", &e))?;
    Ok(Response::new(to_wire(&progress)))
}

/// `StopHunt`.
pub(super) async fn stop_hunt(
    svc: &OperatorService,
    request: Request<v1::StopHuntRequest>,
) -> Result<Response<v1::Hunt>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let hunts = hunts(svc)?;
    let hunt = hunts
        .stop(name.as_str(), &r.id, &r.reason)
        .await
        .map_err(status)?;
    let progress = hunts
        .progress(hunt)
        .map_err(|e| internal("reading the hunt", &e))?;
    Ok(Response::new(to_wire(&progress)))
}

/// `ListHunts`.
pub(super) async fn list_hunts(
    svc: &OperatorService,
    _request: Request<v1::ListHuntsRequest>,
) -> Result<Response<v1::ListHuntsResponse>, Status> {
    let hunts = hunts(svc)?;
    let mut out = Vec::new();
    for hunt in hunts.list().map_err(|e| internal("listing hunts", &e))? {
        let progress = hunts
            .progress(hunt)
            .map_err(|e| internal("reading a hunt", &e))?;
        out.push(to_wire(&progress));
    }
    Ok(Response::new(v1::ListHuntsResponse { hunts: out }))
}

/// `ShowHunt`: the hunt, where each host stands, and the hits (the first
/// [`MAX_SHOWN_HITS`]).
pub(super) async fn show_hunt(
    svc: &OperatorService,
    request: Request<v1::ShowHuntRequest>,
) -> Result<Response<v1::HuntDetail>, Status> {
    let r = request.into_inner();
    let hunts = hunts(svc)?;
    let hunt = hunts.get(&r.id).map_err(status)?;
    let progress = hunts
        .progress(hunt)
        .map_err(|e| internal("reading the hunt", &e))?;
    let mut hits = Vec::new();
    let hosts = progress
        .hosts
        .iter()
        .map(|h| {
            let a = h.answer.as_ref();
            for row in a.map(|a| a.hits.as_slice()).unwrap_or_default() {
                if hits.len() < MAX_SHOWN_HITS {
                    hits.push(v1::HuntHit {
                        host_id: h.host_id.clone(),
                        row: row.clone(),
                    });
                }
            }
            v1::HuntHost {
                host_id: h.host_id.clone(),
                state: h.state.into(),
                hits: a.map_or(0, |a| a.total),
                cut: a.map_or(0, |a| a.total.saturating_sub(a.hits.len() as u64)),
                detail: a.map(|a| a.detail.clone()).unwrap_or_default(),
                answered_unix_ms: a.map_or(0, |a| a.answered_unix_ms),
                files: a.map_or(0, |a| a.files),
                bytes: a.map_or(0, |a| a.bytes),
                cpu_ms: a.map_or(0, |a| a.cpu_ms),
                online: h.online,
            }
        })
        .collect();
    Ok(Response::new(v1::HuntDetail {
        hunt: Some(to_wire(&progress)),
        hosts,
        hits,
    }))
}
