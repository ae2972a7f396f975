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

/// Text from a caller, cut to `max` bytes at a character boundary, control
/// characters shown as `?`.
fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// `RecordConsoleRefusal`: the console's own refusals in the action log, as
/// the caller's (the certificate names who; the request only says what).
pub(super) async fn record_console_refusal(
    svc: &OperatorService,
    request: Request<v1::ConsoleRefusal>,
) -> Result<Response<v1::ConsoleRefusalRecorded>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let why = format!(
        "{} {}: {}",
        bounded(&r.method, 16),
        bounded(&r.path, 512),
        bounded(&r.reason, 500)
    );
    tracing::warn!(operator = %name, %why, "Console refused a request");
    let written = svc.denials.refused(name.as_str(), "console", &why).await;
    Ok(Response::new(v1::ConsoleRefusalRecorded { written }))
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

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn console_refusal_text_is_cut_and_cleaned() {
        assert_eq!(bounded("GET", 16), "GET");
        assert_eq!(bounded("a\u{1b}[2Jb\n", 16), "a?[2Jb?");
        assert_eq!(bounded(&"é".repeat(10), 5), "éé");
        assert_eq!(bounded(&"x".repeat(600), 500).len(), 500);
    }
}
