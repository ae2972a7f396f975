//! Enrollment tokens: create, list, revoke.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::link::internal;
use crate::model::Action;

fn token_wire(t: &crate::model::TokenRecord) -> v1::EnrollToken {
    v1::EnrollToken {
        id: t.id.clone(),
        uses: t.uses,
        used: t.used,
        expires_unix_ms: t.expires_unix_ms,
        revoked: t.revoked,
        labels: t.labels.clone().into_iter().collect(),
        created_by: t.created_by.clone(),
        created_unix_ms: t.created_unix_ms,
        hosts: t.hosts.clone(),
        note: t.note.clone(),
        state: t.state(bannin_proto::now_unix_ms()).into(),
    }
}

/// `CreateToken`.
pub(super) async fn create_token(
    svc: &OperatorService,
    request: Request<v1::CreateTokenRequest>,
) -> Result<Response<v1::CreatedToken>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    bannin_proto::labels::check(&r.labels).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if r.uses > 100_000 {
        return Err(Status::invalid_argument("uses: at most 100000"));
    }
    let expires = if r.expires_in_secs == 0 {
        86_400
    } else {
        r.expires_in_secs
    };
    if expires > 366 * 86_400 {
        return Err(Status::invalid_argument("a token expires within a year"));
    }
    let uses = if r.uses == 0 { 1 } else { r.uses };
    let expires_in = std::time::Duration::from_secs(expires);
    // Through the journal, so every collector's enrollment endpoint knows it.
    let (token, secret) = crate::enroll::new_token(
        name.as_str(),
        uses,
        expires_in,
        r.labels.into_iter().collect(),
        r.note,
    );
    svc.change(crate::journal::Op::PutToken {
        record: token.clone(),
    })
    .await?;
    svc.store
        .append_action(&Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: "token.create".into(),
            target: token.id.clone(),
            reason: token.note.clone(),
            result: format!(
                "{} use(s), expires {}",
                token.uses,
                bannin_proto::rfc3339(token.expires_unix_ms)
            ),
        })
        .map_err(|e| internal("writing the action log", &e))?;
    svc.flush().await?;
    Ok(Response::new(v1::CreatedToken {
        token: Some(token_wire(&token)),
        secret,
    }))
}

/// `ListTokens`.
pub(super) async fn list_tokens(
    svc: &OperatorService,
    request: Request<v1::ListTokensRequest>,
) -> Result<Response<v1::ListTokensResponse>, Status> {
    caller(&request)?;
    let tokens = svc
        .store
        .tokens()
        .map_err(|e| internal("reading tokens", &e))?
        .iter()
        .map(token_wire)
        .collect();
    Ok(Response::new(v1::ListTokensResponse { tokens }))
}

/// `RevokeToken`.
pub(super) async fn revoke_token(
    svc: &OperatorService,
    request: Request<v1::RevokeTokenRequest>,
) -> Result<Response<v1::EnrollToken>, Status> {
    let name = caller(&request)?;
    let id = request.into_inner().id;
    svc.store
        .token(&id)
        .map_err(|e| internal("reading tokens", &e))?
        .ok_or_else(|| Status::not_found(format!("no token {id:?}")))?;
    // Through the journal, ordered with every use of the token.
    svc.change(crate::journal::Op::RevokeToken { id: id.clone() })
        .await?;
    let token = svc
        .store
        .token(&id)
        .map_err(|e| internal("reading tokens", &e))?
        .ok_or_else(|| Status::not_found(format!("no token {id:?}")))?;
    svc.store
        .append_action(&Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: "token.revoke".into(),
            target: id,
            reason: String::new(),
            result: "revoked".into(),
        })
        .map_err(|e| internal("writing the action log", &e))?;
    svc.flush().await?;
    Ok(Response::new(token_wire(&token)))
}
