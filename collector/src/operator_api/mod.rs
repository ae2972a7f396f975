//! The `Operator` service: what the `bannin` CLI calls. Operator certificates only.

use std::sync::Arc;

use bannin_proto::identity::OperatorName;
use bannin_proto::v1::{self, operator_server::Operator};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use authorize::Authorized;
use authorize::caller;

use crate::commands::Commands;
use crate::hosts::HostRegistry;
use crate::ingest::Ingest;
use crate::link::internal;
use crate::model::Role;
use crate::store::Store;

/// Most findings or events returned by one list call.
pub const MAX_PAGE: usize = 10_000;

/// The `Operator` service.
#[derive(Clone)]
pub struct OperatorService {
    pub(crate) rules: Arc<RulesInForce>,
    pub(crate) sinks: crate::sinks::Statuses,
    pub(crate) store: Store,
    pub(crate) ingest: Ingest,
    pub(crate) hosts: Arc<HostRegistry>,
    pub(crate) commands: Arc<Commands>,
    pub(crate) shutdown: CancellationToken,
    /// Bumped whenever an operator is added, re-roled or disabled: open
    /// streams re-check their caller and end if it lost the right to them.
    pub(crate) operator_changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Where every change goes.
    pub(crate) journal: crate::journal::Journal,
    /// Whether events are indexed (`[events] index`): `Search` answers.
    pub(crate) search_index: bool,
    /// The refusal log (coalesced), shared with the authorization layer.
    pub(crate) denials: Arc<crate::denials::Denials>,
}

/// The rules from the collector's configuration, for `bannin rules`.
#[derive(Debug, Clone, Default)]
pub struct RulesInForce {
    /// Per-kind severity overrides.
    pub severity_overrides: std::collections::BTreeMap<String, crate::model::Severity>,
    /// Suppression rules.
    pub suppress: Vec<crate::rules::SuppressRule>,
    /// Correlation thresholds.
    pub correlation: crate::correlate::CorrelationConfig,
    /// Where Sigma rules are loaded from.
    pub sigma_paths: Vec<std::path::PathBuf>,
}

impl OperatorService {
    /// Applies `op` through the journal: its answer, a refusal as
    /// `FAILED_PRECONDITION` (applied, refused, nothing changed), or
    /// `UNAVAILABLE` when the journal did not take it.
    pub(super) async fn change(&self, op: crate::journal::Op) -> Result<u64, Status> {
        let unavailable = |e: crate::ingest::IngestError| {
            Status::unavailable(format!("{e}; nothing changed, try again"))
        };
        match self
            .journal
            .submit(op)
            .await
            .map_err(unavailable)?
            .into_raise()
        {
            Ok(answer) => Ok(answer),
            Err(crate::ingest::IngestError::Journal(why)) => Err(Status::failed_precondition(why)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Why `name` may no longer hold a stream of `rpc` open, if it may not:
    /// disabled, removed or demoted since the stream began.
    pub(super) fn revoked_from(&self, name: &OperatorName, rpc: Rpc) -> Option<String> {
        let (needed, verb) = rpc.needs();
        match self.store.operator(name.as_str()) {
            Ok(Some(r)) if !r.enabled => Some(format!("operator {name} was disabled")),
            Ok(Some(r)) if r.role < needed => Some(format!(
                "{verb} needs the {} role; operator {name} is now a {}",
                needed.as_str(),
                r.role.as_str()
            )),
            Ok(Some(_)) => None,
            Ok(None) => Some(format!("operator {name} is no longer registered")),
            Err(e) => Some(format!("cannot check operator {name}: {e}")),
        }
    }

    /// Makes what was written durable.
    pub(super) async fn flush(&self) -> Result<(), Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.make_durable())
            .await
            .map_err(|e| internal("flushing", &e))?
            .map_err(|e| internal("flushing", &e))
    }
}

/// A list call's page size: 1000 by default, at most [`MAX_PAGE`].
fn page(limit: u32) -> usize {
    match limit {
        0 => 1000,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// Every RPC of the `Operator` service. [`Rpc::needs`] is the one table from an RPC to
/// the role it needs and the verb a denial is logged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// `WhoAmI`.
    WhoAmI,
    /// `ListHosts`.
    ListHosts,
    /// `ListFindings`.
    ListFindings,
    /// `GetFinding`.
    GetFinding,
    /// `FollowFindings`.
    FollowFindings,
    /// `SetFindingState`.
    SetFindingState,
    /// `GroupFindings`.
    GroupFindings,
    /// `SetFindingStates`.
    SetFindingStates,
    /// `ListEvents`.
    ListEvents,
    /// `IssueCommand`.
    IssueCommand,
    /// `ListCommands`.
    ListCommands,
    /// `ListActions`.
    ListActions,
    /// `VerifyActions`.
    VerifyActions,
    /// `AddOperator`.
    AddOperator,
    /// `SetOperatorRole`.
    SetOperatorRole,
    /// `DisableOperator`.
    DisableOperator,
    /// `ListOperators`.
    ListOperators,
    /// `ListEvidence`.
    ListEvidence,
    /// `ShowEvidence`.
    ShowEvidence,
    /// `VerifyEvidence`.
    VerifyEvidence,
    /// `ExportEvidence`.
    ExportEvidence,
    /// `DisposeEvidence`.
    DisposeEvidence,
    /// `OpenIncident`.
    OpenIncident,
    /// `ListIncidents`.
    ListIncidents,
    /// `ShowIncident`.
    ShowIncident,
    /// `UpdateIncident`.
    UpdateIncident,
    /// `IncidentReport`.
    IncidentReport,
    /// `ListRules`.
    ListRules,
    /// `ReloadRules`.
    ReloadRules,
    /// `CreateToken`.
    CreateToken,
    /// `ListTokens`.
    ListTokens,
    /// `RevokeToken`.
    RevokeToken,
    /// `RevokeHost`.
    RevokeHost,
    /// `ListSinks`.
    ListSinks,
    /// `AddFinding`.
    AddFinding,
    /// `SetHostLabels`.
    SetHostLabels,
    /// `ClusterStatus`.
    ClusterStatus,
    /// `StartHunt`.
    StartHunt,
    /// `ListHunts`.
    ListHunts,
    /// `ShowHunt`.
    ShowHunt,
    /// `StopHunt`.
    StopHunt,
    /// `Search`.
    Search,
    /// `RecordConsoleRefusal`.
    RecordConsoleRefusal,
}

impl Rpc {
    /// The call a gRPC method name (`ListFindings`) names.
    pub(crate) fn of_method(method: &str) -> Option<Self> {
        Some(match method {
            "WhoAmI" => Rpc::WhoAmI,
            "ListHosts" => Rpc::ListHosts,
            "ListFindings" => Rpc::ListFindings,
            "GetFinding" => Rpc::GetFinding,
            "FollowFindings" => Rpc::FollowFindings,
            "SetFindingState" => Rpc::SetFindingState,
            "GroupFindings" => Rpc::GroupFindings,
            "SetFindingStates" => Rpc::SetFindingStates,
            "ListEvents" => Rpc::ListEvents,
            "IssueCommand" => Rpc::IssueCommand,
            "ListCommands" => Rpc::ListCommands,
            "ListActions" => Rpc::ListActions,
            "VerifyActions" => Rpc::VerifyActions,
            "AddOperator" => Rpc::AddOperator,
            "SetOperatorRole" => Rpc::SetOperatorRole,
            "DisableOperator" => Rpc::DisableOperator,
            "ListOperators" => Rpc::ListOperators,
            "ListEvidence" => Rpc::ListEvidence,
            "ShowEvidence" => Rpc::ShowEvidence,
            "VerifyEvidence" => Rpc::VerifyEvidence,
            "ExportEvidence" => Rpc::ExportEvidence,
            "DisposeEvidence" => Rpc::DisposeEvidence,
            "OpenIncident" => Rpc::OpenIncident,
            "ListIncidents" => Rpc::ListIncidents,
            "ShowIncident" => Rpc::ShowIncident,
            "UpdateIncident" => Rpc::UpdateIncident,
            "IncidentReport" => Rpc::IncidentReport,
            "ListRules" => Rpc::ListRules,
            "ReloadRules" => Rpc::ReloadRules,
            "CreateToken" => Rpc::CreateToken,
            "ListTokens" => Rpc::ListTokens,
            "RevokeToken" => Rpc::RevokeToken,
            "RevokeHost" => Rpc::RevokeHost,
            "ListSinks" => Rpc::ListSinks,
            "AddFinding" => Rpc::AddFinding,
            "SetHostLabels" => Rpc::SetHostLabels,
            "ClusterStatus" => Rpc::ClusterStatus,
            "StartHunt" => Rpc::StartHunt,
            "ListHunts" => Rpc::ListHunts,
            "ShowHunt" => Rpc::ShowHunt,
            "StopHunt" => Rpc::StopHunt,
            "Search" => Rpc::Search,
            "RecordConsoleRefusal" => Rpc::RecordConsoleRefusal,
            _ => return None,
        })
    }

    /// The role an operator needs for this call, and its action-log verb.
    pub(crate) fn needs(self) -> (Role, &'static str) {
        use Role::{Admin, Responder, Viewer};
        match self {
            Rpc::WhoAmI => (Viewer, "whoami"),
            Rpc::ListHosts => (Viewer, "hosts.list"),
            Rpc::ListFindings => (Viewer, "findings.list"),
            Rpc::GetFinding => (Viewer, "findings.get"),
            Rpc::FollowFindings => (Viewer, "findings.follow"),
            Rpc::SetFindingState => (Responder, "finding.state"),
            Rpc::GroupFindings => (Viewer, "findings.group"),
            Rpc::SetFindingStates => (Responder, "finding.states"),
            Rpc::ListEvents => (Viewer, "events.list"),
            Rpc::IssueCommand => (Responder, "command"),
            Rpc::ListCommands => (Viewer, "commands.list"),
            Rpc::ListActions => (Viewer, "actions.list"),
            Rpc::VerifyActions => (Viewer, "actions.verify"),
            Rpc::AddOperator => (Admin, "operator.add"),
            Rpc::SetOperatorRole => (Admin, "operator.set_role"),
            Rpc::DisableOperator => (Admin, "operator.disable"),
            Rpc::ListOperators => (Admin, "operator.list"),
            Rpc::ListEvidence => (Viewer, "evidence.list"),
            Rpc::ShowEvidence => (Viewer, "evidence.show"),
            Rpc::VerifyEvidence => (Viewer, "evidence.verify"),
            Rpc::ExportEvidence => (Admin, "evidence.export"),
            Rpc::DisposeEvidence => (Admin, "evidence.dispose"),
            Rpc::OpenIncident => (Responder, "incident.open"),
            Rpc::ListIncidents => (Viewer, "incident.list"),
            Rpc::ShowIncident => (Viewer, "incident.show"),
            Rpc::UpdateIncident => (Responder, "incident.update"),
            Rpc::IncidentReport => (Viewer, "incident.report"),
            Rpc::ListRules => (Viewer, "rules.list"),
            Rpc::ReloadRules => (Responder, "rules.reload"),
            Rpc::CreateToken => (Admin, "token.create"),
            Rpc::ListTokens => (Admin, "token.list"),
            Rpc::RevokeToken => (Admin, "token.revoke"),
            Rpc::RevokeHost => (Admin, "host.revoke"),
            Rpc::ListSinks => (Viewer, "sinks.list"),
            Rpc::AddFinding => (Responder, "finding.add"),
            Rpc::SetHostLabels => (Admin, "host.label"),
            Rpc::ClusterStatus => (Viewer, "cluster.status"),
            Rpc::StartHunt => (Responder, "hunt.start"),
            Rpc::ListHunts => (Viewer, "hunt.list"),
            Rpc::ShowHunt => (Viewer, "hunt.show"),
            Rpc::StopHunt => (Responder, "hunt.stop"),
            Rpc::Search => (Viewer, "search"),
            Rpc::RecordConsoleRefusal => (Viewer, "console.refusal"),
        }
    }
}

mod actions;
mod authorize;
mod cluster;
pub(crate) mod commands;
mod evidence;
mod findings;
mod hosts;
mod hunts;
mod incidents;
mod operators;
mod rules;
mod tokens;

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        operators::who_am_i(self, request).await
    }

    async fn cluster_status(
        &self,
        request: Request<v1::ClusterStatusRequest>,
    ) -> Result<Response<v1::ClusterStatusResponse>, Status> {
        cluster::cluster_status(self, request).await
    }

    async fn list_hosts(
        &self,
        request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        hosts::list_hosts(self, request).await
    }

    async fn list_findings(
        &self,
        request: Request<v1::ListFindingsRequest>,
    ) -> Result<Response<v1::ListFindingsResponse>, Status> {
        findings::list_findings(self, request).await
    }

    async fn get_finding(
        &self,
        request: Request<v1::GetFindingRequest>,
    ) -> Result<Response<v1::Finding>, Status> {
        findings::get_finding(self, request).await
    }

    type FollowFindingsStream = findings::FollowFindingsStream;

    async fn follow_findings(
        &self,
        request: Request<v1::FollowFindingsRequest>,
    ) -> Result<Response<Self::FollowFindingsStream>, Status> {
        findings::follow_findings(self, request).await
    }

    async fn set_finding_state(
        &self,
        request: Request<v1::SetFindingStateRequest>,
    ) -> Result<Response<v1::Finding>, Status> {
        findings::set_finding_state(self, request).await
    }

    async fn group_findings(
        &self,
        request: Request<v1::GroupFindingsRequest>,
    ) -> Result<Response<v1::GroupFindingsResponse>, Status> {
        findings::group_findings(self, request).await
    }

    async fn set_finding_states(
        &self,
        request: Request<v1::SetFindingStatesRequest>,
    ) -> Result<Response<v1::SetFindingStatesResponse>, Status> {
        findings::set_finding_states(self, request).await
    }

    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        hosts::list_events(self, request).await
    }

    async fn issue_command(
        &self,
        request: Request<v1::IssueCommandRequest>,
    ) -> Result<Response<v1::CommandRecord>, Status> {
        commands::issue_command(self, request).await
    }

    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        commands::list_commands(self, request).await
    }

    async fn list_actions(
        &self,
        request: Request<v1::ListActionsRequest>,
    ) -> Result<Response<v1::ListActionsResponse>, Status> {
        actions::list_actions(self, request).await
    }

    async fn verify_actions(
        &self,
        request: Request<v1::VerifyActionsRequest>,
    ) -> Result<Response<v1::VerifyActionsResponse>, Status> {
        actions::verify_actions(self, request).await
    }

    async fn add_operator(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        operators::add_operator(self, request).await
    }

    async fn set_operator_role(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        operators::set_operator_role(self, request).await
    }

    async fn disable_operator(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        operators::disable_operator(self, request).await
    }

    async fn list_operators(
        &self,
        request: Request<v1::ListOperatorsRequest>,
    ) -> Result<Response<v1::ListOperatorsResponse>, Status> {
        operators::list_operators(self, request).await
    }

    async fn list_evidence(
        &self,
        request: Request<v1::ListEvidenceRequest>,
    ) -> Result<Response<v1::ListEvidenceResponse>, Status> {
        evidence::list_evidence(self, request).await
    }

    async fn show_evidence(
        &self,
        request: Request<v1::EvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        evidence::show_evidence(self, request).await
    }

    async fn verify_evidence(
        &self,
        request: Request<v1::EvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        evidence::verify_evidence(self, request).await
    }

    type ExportEvidenceStream = evidence::ExportEvidenceStream;

    async fn export_evidence(
        &self,
        request: Request<v1::ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        evidence::export_evidence(self, request).await
    }

    async fn dispose_evidence(
        &self,
        request: Request<v1::DisposeEvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        evidence::dispose_evidence(self, request).await
    }

    async fn open_incident(
        &self,
        request: Request<v1::OpenIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        incidents::open_incident(self, request).await
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        incidents::list_incidents(self, request).await
    }

    async fn show_incident(
        &self,
        request: Request<v1::IncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        incidents::show_incident(self, request).await
    }

    async fn update_incident(
        &self,
        request: Request<v1::UpdateIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        incidents::update_incident(self, request).await
    }

    async fn incident_report(
        &self,
        request: Request<v1::IncidentReportRequest>,
    ) -> Result<Response<v1::IncidentReportResponse>, Status> {
        incidents::incident_report(self, request).await
    }

    async fn list_rules(
        &self,
        request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        rules::list_rules(self, request).await
    }

    async fn reload_rules(
        &self,
        request: Request<v1::ReloadRulesRequest>,
    ) -> Result<Response<v1::ReloadRulesResponse>, Status> {
        rules::reload_rules(self, request).await
    }

    async fn create_token(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreatedToken>, Status> {
        tokens::create_token(self, request).await
    }

    async fn list_tokens(
        &self,
        request: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        tokens::list_tokens(self, request).await
    }

    async fn revoke_token(
        &self,
        request: Request<v1::RevokeTokenRequest>,
    ) -> Result<Response<v1::EnrollToken>, Status> {
        tokens::revoke_token(self, request).await
    }

    async fn revoke_host(
        &self,
        request: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        hosts::revoke_host(self, request).await
    }

    async fn start_hunt(
        &self,
        request: Request<v1::StartHuntRequest>,
    ) -> Result<Response<v1::Hunt>, Status> {
        hunts::start_hunt(self, request).await
    }

    async fn list_hunts(
        &self,
        request: Request<v1::ListHuntsRequest>,
    ) -> Result<Response<v1::ListHuntsResponse>, Status> {
        hunts::list_hunts(self, request).await
    }

    async fn show_hunt(
        &self,
        request: Request<v1::ShowHuntRequest>,
    ) -> Result<Response<v1::HuntDetail>, Status> {
        hunts::show_hunt(self, request).await
    }

    async fn stop_hunt(
        &self,
        request: Request<v1::StopHuntRequest>,
    ) -> Result<Response<v1::Hunt>, Status> {
        hunts::stop_hunt(self, request).await
    }

    async fn search(
        &self,
        request: Request<v1::SearchRequest>,
    ) -> Result<Response<v1::SearchResponse>, Status> {
        hosts::search(self, request).await
    }

    async fn record_console_refusal(
        &self,
        request: Request<v1::ConsoleRefusal>,
    ) -> Result<Response<v1::ConsoleRefusalRecorded>, Status> {
        actions::record_console_refusal(self, request).await
    }

    async fn list_sinks(
        &self,
        request: Request<v1::ListSinksRequest>,
    ) -> Result<Response<v1::ListSinksResponse>, Status> {
        rules::list_sinks(self, request).await
    }

    async fn add_finding(
        &self,
        request: Request<v1::AddFindingRequest>,
    ) -> Result<Response<v1::Finding>, Status> {
        findings::add_finding(self, request).await
    }

    async fn set_host_labels(
        &self,
        request: Request<v1::SetHostLabelsRequest>,
    ) -> Result<Response<v1::Host>, Status> {
        hosts::set_host_labels(self, request).await
    }
}
