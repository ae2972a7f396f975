//! Operators: who am I, and the admin's add, set-role, disable and list.

use bannin_proto::identity::OperatorName;
use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc, caller};
use crate::link::internal;
use crate::model::{Action, OperatorRecord, Role};

impl OperatorService {
    /// Adds, re-roles or disables an operator, as `rpc` says.
    async fn change_operator(
        &self,
        request: Request<v1::OperatorChange>,
        rpc: Rpc,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        let admin = caller(&request)?;
        let (_, verb) = rpc.needs();
        let change = request.into_inner();
        let name = OperatorName::new(change.name.as_str())
            .map_err(|e| Status::invalid_argument(format!("operator name: {e}")))?;
        let existing = self
            .store
            .operator(name.as_str())
            .map_err(|e| internal("reading operators", &e))?;
        let role = || {
            Role::parse(&change.role)
                .ok_or_else(|| Status::invalid_argument("role must be viewer, responder or admin"))
        };
        let record = match (verb, existing) {
            ("operator.add", Some(_)) => {
                return Err(Status::already_exists(format!(
                    "operator {name} exists; use set-role"
                )));
            }
            ("operator.add", None) => OperatorRecord {
                name: name.to_string(),
                role: role()?,
                enabled: true,
                created_unix_ms: bannin_proto::now_unix_ms(),
                created_by: admin.to_string(),
            },
            (_, None) => return Err(Status::not_found(format!("no operator {name}"))),
            ("operator.set_role", Some(mut r)) => {
                r.role = role()?;
                r.enabled = true;
                r
            }
            (_, Some(mut r)) => {
                r.enabled = false;
                r
            }
        };
        if record.name == admin.as_str() && (record.role != Role::Admin || !record.enabled) {
            return Err(Status::failed_precondition(
                "an admin cannot demote or disable themselves",
            ));
        }
        // Through the journal: every collector applies the change (an
        // operator disabled on one is disabled on all).
        self.change(crate::journal::Op::Operator {
            record: record.clone(),
        })
        .await?;
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: admin.to_string(),
                verb: verb.to_owned(),
                target: record.name.clone(),
                reason: String::new(),
                result: format!(
                    "{} {}",
                    record.role.as_str(),
                    if record.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                ),
            })
            .map_err(|e| internal("changing operators", &e))?;
        self.flush().await?;
        self.operator_changes.send_modify(|n| *n += 1);
        tracing::info!(admin = %admin, operator = %record.name, role = record.role.as_str(), enabled = record.enabled, "{verb}");
        Ok(Response::new(record.to_wire()))
    }
}

/// `WhoAmI`.
pub(super) async fn who_am_i(
    svc: &OperatorService,
    request: Request<v1::WhoAmIRequest>,
) -> Result<Response<v1::WhoAmIResponse>, Status> {
    let name = caller(&request)?;
    let role = svc
        .store
        .operator(name.as_str())
        .map_err(|e| internal("reading operators", &e))?
        .map(|r| r.role.as_str().to_owned())
        .unwrap_or_default();
    Ok(Response::new(v1::WhoAmIResponse {
        operator: name.to_string(),
        collector_version: bannin_proto::VERSION.into(),
        role,
    }))
}

/// `AddOperator`.
pub(super) async fn add_operator(
    svc: &OperatorService,
    request: Request<v1::OperatorChange>,
) -> Result<Response<v1::OperatorRecord>, Status> {
    svc.change_operator(request, Rpc::AddOperator).await
}

/// `SetOperatorRole`.
pub(super) async fn set_operator_role(
    svc: &OperatorService,
    request: Request<v1::OperatorChange>,
) -> Result<Response<v1::OperatorRecord>, Status> {
    svc.change_operator(request, Rpc::SetOperatorRole).await
}

/// `DisableOperator`.
pub(super) async fn disable_operator(
    svc: &OperatorService,
    request: Request<v1::OperatorChange>,
) -> Result<Response<v1::OperatorRecord>, Status> {
    svc.change_operator(request, Rpc::DisableOperator).await
}

/// `ListOperators`.
pub(super) async fn list_operators(
    svc: &OperatorService,
    request: Request<v1::ListOperatorsRequest>,
) -> Result<Response<v1::ListOperatorsResponse>, Status> {
    caller(&request)?;
    let operators = svc
        .store
        .operators()
        .map_err(|e| internal("reading operators", &e))?
        .iter()
        .map(OperatorRecord::to_wire)
        .collect();
    Ok(Response::new(v1::ListOperatorsResponse { operators }))
}
