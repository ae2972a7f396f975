//! The hash-chained action log: listing and verifying it.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::link::internal;
use crate::reports;

pub(super) fn action_to_wire(a: crate::model::ChainedAction) -> v1::ActionEntry {
    v1::ActionEntry {
        seq: a.seq,
        at_unix_ms: a.action.at_unix_ms,
        actor: a.action.actor,
        verb: a.action.verb,
        target: a.action.target,
        reason: a.action.reason,
        result: a.action.result,
        prev_sha256: a.prev_sha256,
        sha256: a.sha256,
    }
}

/// `ListActions`.
pub(super) async fn list_actions(
    svc: &OperatorService,
    request: Request<v1::ListActionsRequest>,
) -> Result<Response<v1::ListActionsResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    let host = r.host_id;
    let actor = format!("host:{host}");
    let incident = match r.incident {
        0 => None,
        id => {
            let facts = svc.facts(svc.incident_record(id)?)?;
            Some(
                reports::Scope::new(&svc.store, &facts.incident, &facts.affected)
                    .map_err(|e| internal("reading evidence", &e))?,
            )
        }
    };
    let keep = |a: &crate::model::ChainedAction| {
        (host.is_empty() || a.action.target == host || a.action.actor == actor)
            && incident
                .as_ref()
                .is_none_or(|scope| scope.concerns(&a.action))
    };
    let (page, next_after, next_before) = if r.newest_first {
        let (page, next) = svc
            .store
            .actions_page_newest(r.before_seq, super::page(r.limit), keep)
            .map_err(|e| internal("reading the action log", &e))?;
        (page, None, next)
    } else {
        let (page, next) = svc
            .store
            .actions_page(r.after_seq, super::page(r.limit), keep)
            .map_err(|e| internal("reading the action log", &e))?;
        (page, next, None)
    };
    Ok(Response::new(v1::ListActionsResponse {
        actions: page.into_iter().map(action_to_wire).collect(),
        next_after_seq: next_after.unwrap_or(0),
        next_before_seq: next_before.unwrap_or(0),
    }))
}

/// `VerifyActions`.
pub(super) async fn verify_actions(
    svc: &OperatorService,
    request: Request<v1::VerifyActionsRequest>,
) -> Result<Response<v1::VerifyActionsResponse>, Status> {
    let name = caller(&request)?;
    let outcome = svc
        .store
        .verify_actions()
        .map_err(|e| internal("reading the action log", &e))?;
    let response = match outcome {
        Ok(entries) => v1::VerifyActionsResponse {
            ok: true,
            entries,
            ..Default::default()
        },
        Err((seq, reason)) => {
            tracing::error!(operator = %name, action.seq = seq, %reason, "Action log verification FAILED");
            v1::VerifyActionsResponse {
                ok: false,
                entries: seq.saturating_sub(1),
                first_bad_seq: seq,
                reason,
            }
        }
    };
    Ok(Response::new(response))
}
