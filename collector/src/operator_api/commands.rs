//! Commands: issuing response commands to hosts and listing the queue.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc};
use crate::commands::{CommandError, DEFAULT_EXPIRY};
use crate::link::internal;

/// `IssueCommand`.
pub(super) async fn issue_command(
    svc: &OperatorService,
    request: Request<v1::IssueCommandRequest>,
) -> Result<Response<v1::CommandRecord>, Status> {
    let name = svc
        .authorize_as(
            &request,
            Rpc::IssueCommand,
            &format!("command.{}", request.get_ref().verb),
        )
        .await?;
    let r = request.into_inner();
    let host = bannin_proto::identity::HostId::new(r.host_id)
        .map_err(|e| Status::invalid_argument(format!("host id: {e}")))?;
    let expires = match r.expires_in_secs {
        0 => DEFAULT_EXPIRY,
        n => std::time::Duration::from_secs(u64::from(n)),
    };
    match svc
        .commands
        .issue(
            &host,
            &r.verb,
            r.arguments,
            name.as_str(),
            &r.reason,
            expires,
        )
        .await
    {
        Ok(c) => Ok(Response::new(c.to_wire())),
        Err(CommandError::Store(e)) => Err(internal("queueing the command", &e)),
        Err(e) => Err(Status::invalid_argument(e.to_string())),
    }
}

/// `ListCommands`.
pub(super) async fn list_commands(
    svc: &OperatorService,
    request: Request<v1::ListCommandsRequest>,
) -> Result<Response<v1::ListCommandsResponse>, Status> {
    svc.authorize(&request, Rpc::ListCommands).await?;
    let r = request.into_inner();
    let host = (!r.host_id.is_empty()).then_some(r.host_id.as_str());
    let commands = svc
        .commands
        .list(host)
        .map_err(|e| internal("reading commands", &e))?
        .iter()
        .filter(|c| r.command_id.is_empty() || c.wire_id() == r.command_id)
        .map(|c| c.to_wire())
        .collect();
    Ok(Response::new(v1::ListCommandsResponse { commands }))
}
