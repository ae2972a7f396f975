//! Commands: issuing response commands to hosts and listing the queue.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc};
use crate::commands::{CommandError, DEFAULT_EXPIRY};
use crate::link::internal;
use crate::model::Action;

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
    // Cluster mode: a host connected to another collector gets the command
    // from that one (its queue, its delivery, its record of the result).
    if let Some(cluster) = &svc.cluster
        && let Some(holder) = cluster.holder(&r.host_id).await
    {
        use prost::Message;
        let (verb, host, reason) = (r.verb.clone(), r.host_id.clone(), r.reason.clone());
        let answer = cluster
            .forward(&holder, "issue", name.as_str(), r.encode_to_vec())
            .await?;
        let record = v1::CommandRecord::decode(answer)
            .map_err(|e| internal("reading the other collector's answer", &e))?;
        svc.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: name.to_string(),
                verb: format!("command.{verb}"),
                target: host,
                reason,
                result: format!(
                    "forwarded to collector {holder}, which holds the host's stream; queued there as {}",
                    record.id
                ),
            })
            .map_err(|e| internal("writing the action log", &e))?;
        svc.flush().await?;
        return Ok(Response::new(record));
    }
    issue_as(&svc.commands, name.as_str(), r)
        .await
        .map(Response::new)
}

/// Queues `r` as `operator` (authorized already, here or by the collector
/// that forwarded it).
pub(crate) async fn issue_as(
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
    match commands
        .issue(&host, &r.verb, r.arguments, operator, &r.reason, expires)
        .await
    {
        Ok(c) => Ok(c.to_wire()),
        Err(CommandError::Store(e)) => Err(internal("queueing the command", &e)),
        Err(e) => Err(Status::invalid_argument(e.to_string())),
    }
}

/// `ListCommands`.
pub(super) async fn list_commands(
    svc: &OperatorService,
    request: Request<v1::ListCommandsRequest>,
) -> Result<Response<v1::ListCommandsResponse>, Status> {
    let name = svc.authorize(&request, Rpc::ListCommands).await?;
    let r = request.into_inner();
    if !r.host_id.is_empty()
        && let Some(cluster) = &svc.cluster
        && let Some(holder) = cluster.holder(&r.host_id).await
    {
        use prost::Message;
        let answer = cluster
            .forward(&holder, "list", name.as_str(), r.encode_to_vec())
            .await?;
        return v1::ListCommandsResponse::decode(answer)
            .map(Response::new)
            .map_err(|e| internal("reading the other collector's answer", &e));
    }
    list_for(&svc.commands, &r).map(Response::new)
}

/// The commands `r` asks for, from this collector's queue.
pub(crate) fn list_for(
    commands: &crate::commands::Commands,
    r: &v1::ListCommandsRequest,
) -> Result<v1::ListCommandsResponse, Status> {
    let host = (!r.host_id.is_empty()).then_some(r.host_id.as_str());
    let commands = commands
        .list(host)
        .map_err(|e| internal("reading commands", &e))?
        .iter()
        .filter(|c| r.command_id.is_empty() || c.wire_id() == r.command_id)
        .map(|c| c.to_wire())
        .collect();
    Ok(v1::ListCommandsResponse { commands })
}
