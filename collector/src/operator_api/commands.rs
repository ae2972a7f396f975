//! Commands: issuing response commands to hosts and listing the queue.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::commands::{CommandError, DEFAULT_EXPIRY};
use crate::link::internal;

/// `IssueCommand`.
pub(super) async fn issue_command(
    svc: &OperatorService,
    request: Request<v1::IssueCommandRequest>,
) -> Result<Response<v1::CommandRecord>, Status> {
    let name = caller(&request)?;
    // Queued through the journal; the collector holding the host's stream
    // delivers it.
    let r = request.into_inner();
    issue_as(&svc.commands, name.as_str(), r)
        .await
        .map(Response::new)
}

/// Queues `r` as `operator` (authorized already).
async fn issue_as(
    commands: &crate::commands::Commands,
    operator: &str,
    r: v1::IssueCommandRequest,
) -> Result<v1::CommandRecord, Status> {
    let host = bannin_proto::identity::HostId::new(r.host_id)
        .map_err(|e| Status::invalid_argument(format!("host id: {e}")))?;
    let expires = match r.expires_in_secs {
        0 => DEFAULT_EXPIRY,
        n => std::time::Duration::from_secs(u64::from(n)),
    };
    let body = crate::commands::check(r.command, operator, &r.reason)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    match commands
        .issue(&host, body, operator, &r.reason, expires)
        .await
    {
        Ok(c) => Ok(c.to_wire()),
        Err(CommandError::Store(e)) => Err(internal("queueing the command", &e)),
        Err(e @ CommandError::Journal(_)) => Err(Status::unavailable(e.to_string())),
        Err(e) => Err(Status::invalid_argument(e.to_string())),
    }
}

/// `ListCommands`.
pub(super) async fn list_commands(
    svc: &OperatorService,
    request: Request<v1::ListCommandsRequest>,
) -> Result<Response<v1::ListCommandsResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    list_for(&svc.commands, &r).map(Response::new)
}

/// The commands `r` asks for, from this collector's copy of the queue.
fn list_for(
    commands: &crate::commands::Commands,
    r: &v1::ListCommandsRequest,
) -> Result<v1::ListCommandsResponse, Status> {
    let host = (!r.host_id.is_empty()).then_some(r.host_id.as_str());
    if !r.command_id.is_empty() {
        let found = commands
            .get(&r.command_id)
            .map_err(|e| internal("reading commands", &e))?
            .filter(|c| host.is_none_or(|h| c.host_id == h));
        return Ok(v1::ListCommandsResponse {
            commands: found.iter().map(|c| c.to_wire()).collect(),
        });
    }
    let commands = commands
        .list(host, usize::try_from(r.limit).unwrap_or(usize::MAX))
        .map_err(|e| internal("reading commands", &e))?
        .iter()
        .map(|c| c.to_wire())
        .collect();
    Ok(v1::ListCommandsResponse { commands })
}
