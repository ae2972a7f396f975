//! Findings: the queue, following it, triage states, and findings people report.

use bannin_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc, page};
use crate::ingest::IngestError;
use crate::link::internal;
use crate::model::{Action, FindingState};

/// Kinds of findings people report.
pub const REPORT_KINDS: &[&str] = &["report.external", "report.threat", "report.user"];

/// `ListFindings`.
pub(super) async fn list_findings(
    svc: &OperatorService,
    request: Request<v1::ListFindingsRequest>,
) -> Result<Response<v1::ListFindingsResponse>, Status> {
    svc.authorize(&request, Rpc::ListFindings).await?;
    let r = request.into_inner();
    let found = if r.newest_first {
        svc.store
            .findings_before(r.since_id, r.before_id, page(r.limit))
    } else {
        svc.store.findings_after(r.since_id, page(r.limit))
    };
    let findings = found
        .map_err(|e| internal("reading findings", &e))?
        .iter()
        .map(|f| f.to_wire())
        .collect();
    Ok(Response::new(v1::ListFindingsResponse { findings }))
}

/// What `FollowFindings` streams.
pub(super) type FollowFindingsStream = ReceiverStream<Result<v1::Finding, Status>>;

/// `FollowFindings`.
pub(super) async fn follow_findings(
    svc: &OperatorService,
    request: Request<v1::FollowFindingsRequest>,
) -> Result<Response<FollowFindingsStream>, Status> {
    let name = svc.authorize(&request, Rpc::FollowFindings).await?;
    let mut cursor = request.into_inner().since_id;
    let (tx, rx) = mpsc::channel(256);
    let store = svc.store.clone();
    let mut latest = svc.ingest.latest_finding();
    let shutdown = svc.shutdown.clone();
    let mut operators = svc.operator_changes.subscribe();
    let service = svc.clone();
    tracing::debug!(operator = %name, since = cursor, "Following findings");
    // Not on a TaskTracker: a follower ends with the operator's stream or the collector's shutdown token, which it selects on.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        loop {
            let batch = match store.findings_after(cursor, 500) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(internal("reading findings", &e))).await;
                    return;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    changed = latest.changed() => if changed.is_err() { return },
                    changed = operators.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if let Some(why) = service.revoked_from(&name, Rpc::FollowFindings) {
                            tracing::warn!(operator = %name, reason = %why, "Findings stream cut");
                            let _ = tx.send(Err(Status::permission_denied(why))).await;
                            return;
                        }
                    }
                }
                continue;
            }
            for f in batch {
                cursor = f.id;
                if tx.send(Ok(f.to_wire())).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// `SetFindingState`.
pub(super) async fn set_finding_state(
    svc: &OperatorService,
    request: Request<v1::SetFindingStateRequest>,
) -> Result<Response<v1::Finding>, Status> {
    let name = svc.authorize(&request, Rpc::SetFindingState).await?;
    let r = request.into_inner();
    let state = FindingState::from_wire(r.state)
        .ok_or_else(|| Status::invalid_argument("unknown finding state"))?;
    if r.note.len() > 4096 {
        return Err(Status::invalid_argument("note is longer than 4096 bytes"));
    }
    let note = r.note.clone();
    match svc
        .journal
        .set_state(r.id, state, name.to_string(), r.note)
        .await
    {
        Ok(f) => {
            tracing::info!(operator = %name, finding.id = f.id, state = ?f.state, "Finding state changed");
            // Who dismissed what, and why, belongs with the rest of the record.
            svc.store
                .append_action(&Action {
                    at_unix_ms: bannin_proto::now_unix_ms(),
                    actor: name.to_string(),
                    verb: "finding.state".into(),
                    target: format!("finding {}", f.id),
                    reason: note,
                    result: format!("{} ({} on {})", f.state.as_str(), f.kind, f.host_id),
                })
                .map_err(|e| internal("writing the action log", &e))?;
            svc.flush().await?;
            Ok(Response::new(f.to_wire()))
        }
        Err(IngestError::NoSuchFinding(id)) => Err(Status::not_found(format!("no finding {id}"))),
        Err(e @ IngestError::BadTransition { .. }) => {
            Err(Status::failed_precondition(e.to_string()))
        }
        Err(e @ IngestError::Journal(_)) => {
            tracing::warn!(error = %e, "Finding state not changed: the journal did not take it");
            Err(Status::unavailable(format!(
                "{e}; nothing changed, try again"
            )))
        }
        Err(e) => Err(internal("changing finding state", &e)),
    }
}

/// `AddFinding`.
pub(super) async fn add_finding(
    svc: &OperatorService,
    request: Request<v1::AddFindingRequest>,
) -> Result<Response<v1::Finding>, Status> {
    let name = svc.authorize(&request, Rpc::AddFinding).await?;
    let r = request.into_inner();
    if !REPORT_KINDS.contains(&r.kind.as_str()) {
        return Err(Status::invalid_argument(format!(
            "kind {:?}: a reported finding is one of {}",
            r.kind,
            REPORT_KINDS.join(", ")
        )));
    }
    let text = r.text.trim();
    if text.is_empty() || text.len() > 4096 {
        return Err(Status::invalid_argument(
            "the text must say what was reported (1 to 4096 bytes)",
        ));
    }
    if r.reporter.len() > 256 {
        return Err(Status::invalid_argument(
            "the reporter must be at most 256 bytes",
        ));
    }
    if v1::Severity::try_from(r.severity).map_or(true, |s| s == v1::Severity::Unspecified) {
        return Err(Status::invalid_argument(
            "a severity is required: info, low, medium, high or critical",
        ));
    }
    let host = bannin_proto::identity::HostId::new(r.host_id.clone())
        .map_err(|e| Status::invalid_argument(format!("host {:?}: {e}", r.host_id)))?;
    if svc
        .store
        .host(host.as_str())
        .map_err(|e| internal("reading hosts", &e))?
        .is_none()
    {
        return Err(Status::not_found(format!("no host {:?}", r.host_id)));
    }
    let mut attributes = std::collections::BTreeMap::from([
        ("reported_by".to_owned(), name.to_string()),
        ("text".to_owned(), text.to_owned()),
    ]);
    if !r.reporter.trim().is_empty() {
        attributes.insert("reporter".into(), r.reporter.trim().to_owned());
    }
    let now = bannin_proto::now_unix_ms();
    let finding = crate::model::NewFinding {
        host_id: host.clone(),
        kind: r.kind.clone(),
        severity: crate::model::Severity::from_wire(r.severity),
        observed_unix_ms: now,
        attributes,
        summary: text.chars().take(200).collect(),
    };
    let id = svc
        .journal
        .raise(finding)
        .await
        .map_err(|e| internal("recording the finding", &e))?;
    svc.store
        .append_action(&Action {
            at_unix_ms: now,
            actor: name.to_string(),
            verb: "finding.add".into(),
            target: host.to_string(),
            reason: String::new(),
            result: if id == 0 {
                format!("{}: suppressed by a rule", r.kind)
            } else {
                format!("finding {id} ({})", r.kind)
            },
        })
        .map_err(|e| internal("writing the action log", &e))?;
    svc.flush().await?;
    if id == 0 {
        return Err(Status::failed_precondition(
            "the finding matches a suppression rule and was counted, not queued (see `bannin rules`)",
        ));
    }
    let f = svc
        .store
        .finding(id)
        .map_err(|e| internal("reading the finding", &e))?
        .ok_or_else(|| Status::internal("the finding vanished"))?;
    Ok(Response::new(f.to_wire()))
}
