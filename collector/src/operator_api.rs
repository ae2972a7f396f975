//! The `Operator` service: what the `bannin` CLI calls. Operator certificates only.

use std::sync::Arc;

use bannin_proto::identity::{OperatorName, PeerIdentity};
use bannin_proto::tls::PeerInfo;
use bannin_proto::v1::{self, operator_server::Operator};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::commands::{CommandError, Commands, DEFAULT_EXPIRY};
use crate::hosts::HostRegistry;
use crate::ingest::{Ingest, IngestError};
use crate::link::internal;
use crate::model::{
    Action, EvidenceRecord, FindingState, INCIDENT_SEVERITIES, INCIDENT_STATUSES, Incident,
    IncidentNote, OperatorRecord, Role,
};
use crate::reports;
use crate::store::{EventQuery, Store};

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
}

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

impl OperatorService {
    /// Makes what was written durable.
    async fn flush(&self) -> Result<(), Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.make_durable())
            .await
            .map_err(|e| internal("flushing", &e))?
            .map_err(|e| internal("flushing", &e))
    }
}

/// Kinds of findings people report.
pub const REPORT_KINDS: &[&str] = &["report.external", "report.threat", "report.user"];

/// The calling operator, or a refusal for anyone else.
fn operator<T>(request: &Request<T>) -> Result<OperatorName, Status> {
    let peer =
        PeerInfo::of(request).ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    match &peer.identity {
        PeerIdentity::Operator(name) => Ok(name.clone()),
        PeerIdentity::Agent(host) => {
            tracing::warn!(peer.addr = %peer.remote_addr, host.id = %host, "Agent certificate refused on the operator API");
            Err(Status::permission_denied(
                "an agent certificate cannot call the operator API",
            ))
        }
    }
}

impl OperatorService {
    /// The calling operator, if registered, enabled and at least `needed`.
    /// Denials are written to the action log.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        needed: Role,
        verb: &str,
    ) -> Result<OperatorName, Status> {
        let name = operator(request)?;
        let record = self
            .store
            .operator(name.as_str())
            .map_err(|e| internal("reading operators", &e))?;
        let why = match &record {
            None => Some(format!(
                "operator {name} is not registered on this collector (an admin adds them with `bannin operator add`)"
            )),
            Some(r) if !r.enabled => Some(format!("operator {name} is disabled")),
            Some(r) if r.role < needed => Some(format!(
                "{verb} needs the {} role; operator {name} is a {}",
                needed.as_str(),
                r.role.as_str()
            )),
            Some(_) => None,
        };
        let Some(why) = why else { return Ok(name) };
        tracing::warn!(operator = %name, verb, reason = %why, "Operator call denied");
        let logged = self.store.append_action(&Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: format!("denied.{verb}"),
            target: String::new(),
            reason: String::new(),
            result: why.clone(),
        });
        if let Err(e) = logged {
            tracing::error!(error = %e, "Cannot log a denied call");
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.make_durable()).await;
        Err(Status::permission_denied(why))
    }

    async fn change_operator(
        &self,
        request: Request<v1::OperatorChange>,
        verb: &str,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        let admin = self.authorize(&request, Role::Admin, verb).await?;
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
        self.store
            .put_operator(&record)
            .and_then(|()| {
                self.store.append_action(&Action {
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
            })
            .map_err(|e| internal("changing operators", &e))?;
        self.flush().await?;
        tracing::info!(admin = %admin, operator = %record.name, role = record.role.as_str(), enabled = record.enabled, "{verb}");
        Ok(Response::new(record.to_wire()))
    }
}

fn action_to_wire(a: crate::model::ChainedAction) -> v1::ActionEntry {
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

impl OperatorService {
    fn evidence_record(&self, id: &str) -> Result<EvidenceRecord, Status> {
        self.store
            .evidence(id)
            .map_err(|e| internal("reading evidence", &e))?
            .ok_or_else(|| Status::not_found(format!("no evidence {id}")))
    }

    /// Appends a custody event and makes it durable.
    async fn custody_event(
        &self,
        actor: &str,
        verb: &str,
        record: &EvidenceRecord,
        reason: &str,
        result: String,
    ) -> Result<(), Status> {
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: actor.to_owned(),
                verb: verb.to_owned(),
                target: record.target(),
                reason: reason.to_owned(),
                result,
            })
            .map_err(|e| internal("writing custody", &e))?;
        self.flush().await
    }

    fn detail(&self, record: &EvidenceRecord) -> Result<v1::EvidenceDetail, Status> {
        let target = record.target();
        let custody = self
            .store
            .actions()
            .map_err(|e| internal("reading custody", &e))?
            .into_iter()
            .filter(|a| a.action.target == target)
            .map(action_to_wire)
            .collect();
        let manifest_json = if record.disposed {
            String::new()
        } else {
            crate::evidence::verify_manifest(&self.commands.evidence().bundle_path(&record.sha256))
                .map(|(_, m)| serde_json::to_string_pretty(&m).unwrap_or_default())
                .unwrap_or_default()
        };
        Ok(v1::EvidenceDetail {
            record: Some(record.to_wire()),
            custody,
            manifest_json,
            verified: false,
            verify_result: String::new(),
        })
    }
}

impl OperatorService {
    fn incident_record(&self, id: u64) -> Result<Incident, Status> {
        self.store
            .incident(id)
            .map_err(|e| internal("reading incidents", &e))?
            .ok_or_else(|| Status::not_found(format!("no incident {id}")))
    }

    fn facts(&self, incident: Incident) -> Result<reports::Facts, Status> {
        reports::Facts::gather(&self.store, incident)
            .map_err(|e| internal("reading the incident's records", &e))
    }

    fn incident_detail(&self, incident: &Incident) -> Result<v1::IncidentDetail, Status> {
        let facts = self.facts(incident.clone())?;
        let timeline = facts
            .timeline()
            .into_iter()
            .map(|t| v1::TimelineEntry {
                at_unix_ms: t.at_unix_ms,
                source: t.source.into(),
                text: t.text,
            })
            .collect();
        Ok(v1::IncidentDetail {
            incident: Some(incident.to_wire()),
            affected_hosts: facts.affected,
            timeline,
        })
    }

    async fn save_incident(
        &self,
        incident: &Incident,
        operator: &str,
        verb: &str,
        result: String,
    ) -> Result<(), Status> {
        self.store
            .put_incident(incident)
            .and_then(|()| {
                self.store.append_action(&Action {
                    at_unix_ms: bannin_proto::now_unix_ms(),
                    actor: operator.to_owned(),
                    verb: verb.to_owned(),
                    target: incident.target(),
                    reason: String::new(),
                    result,
                })
            })
            .map_err(|e| internal("writing the incident", &e))?;
        self.flush().await
    }

    fn check_findings(&self, ids: &[u64]) -> Result<(), Status> {
        for id in ids {
            if self
                .store
                .finding(*id)
                .map_err(|e| internal("reading findings", &e))?
                .is_none()
            {
                return Err(Status::not_found(format!("no finding {id}")));
            }
        }
        Ok(())
    }
}

fn page(limit: u32) -> usize {
    match limit {
        0 => 1000,
        n => (n as usize).min(MAX_PAGE),
    }
}

#[tonic::async_trait]
impl Operator for OperatorService {
    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let name = self.authorize(&request, Role::Viewer, "whoami").await?;
        Ok(Response::new(v1::WhoAmIResponse {
            operator: name.to_string(),
            collector_version: bannin_proto::VERSION.into(),
        }))
    }

    async fn list_hosts(
        &self,
        request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "hosts.list").await?;
        let hosts = self
            .hosts
            .list()
            .into_iter()
            .map(|h| {
                let r = h.record;
                v1::Host {
                    isolation: self.commands.isolation_status(&r.host_id).into(),
                    labels: self
                        .store
                        .host_labels(&r.host_id)
                        .map(|l| l.effective())
                        .unwrap_or_default(),
                    host_id: r.host_id,
                    hostname: r.hostname,
                    os: r.os,
                    kernel: r.kernel,
                    addresses: r.addresses,
                    agent_version: r.agent_version,
                    first_seen_unix_ms: r.first_seen_unix_ms,
                    last_seen_unix_ms: r.last_seen_unix_ms,
                    online: h.online,
                    acked_sequence: 0,
                    sensors: r.sensors.iter().map(|s| s.to_wire()).collect(),
                    spool_bytes: r.spool_bytes,
                    peer_address: r.peer_address,
                }
            })
            .map(|mut h| {
                if let Ok(id) = bannin_proto::identity::HostId::new(h.host_id.clone()) {
                    h.acked_sequence = self.ingest.high_water(&id);
                }
                h
            })
            .collect();
        Ok(Response::new(v1::ListHostsResponse { hosts }))
    }

    async fn list_findings(
        &self,
        request: Request<v1::ListFindingsRequest>,
    ) -> Result<Response<v1::ListFindingsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "findings.list")
            .await?;
        let r = request.into_inner();
        let findings = self
            .store
            .findings_after(r.since_id, page(r.limit))
            .map_err(|e| internal("reading findings", &e))?
            .iter()
            .map(|f| f.to_wire())
            .collect();
        Ok(Response::new(v1::ListFindingsResponse { findings }))
    }

    type FollowFindingsStream = ReceiverStream<Result<v1::Finding, Status>>;

    async fn follow_findings(
        &self,
        request: Request<v1::FollowFindingsRequest>,
    ) -> Result<Response<Self::FollowFindingsStream>, Status> {
        let name = self
            .authorize(&request, Role::Viewer, "findings.follow")
            .await?;
        let mut cursor = request.into_inner().since_id;
        let (tx, rx) = mpsc::channel(256);
        let store = self.store.clone();
        let mut latest = self.ingest.latest_finding();
        let shutdown = self.shutdown.clone();
        tracing::debug!(operator = %name, since = cursor, "Following findings");
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

    async fn set_finding_state(
        &self,
        request: Request<v1::SetFindingStateRequest>,
    ) -> Result<Response<v1::Finding>, Status> {
        let name = self
            .authorize(&request, Role::Responder, "finding.state")
            .await?;
        let r = request.into_inner();
        let state = FindingState::from_wire(r.state)
            .ok_or_else(|| Status::invalid_argument("unknown finding state"))?;
        if r.note.len() > 4096 {
            return Err(Status::invalid_argument("note is longer than 4096 bytes"));
        }
        match self
            .ingest
            .set_state(r.id, state, name.to_string(), r.note)
            .await
        {
            Ok(f) => {
                tracing::info!(operator = %name, finding.id = f.id, state = ?f.state, "Finding state changed");
                Ok(Response::new(f.to_wire()))
            }
            Err(IngestError::NoSuchFinding(id)) => {
                Err(Status::not_found(format!("no finding {id}")))
            }
            Err(e @ IngestError::BadTransition { .. }) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e) => Err(internal("changing finding state", &e)),
        }
    }

    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "events.list")
            .await?;
        let r = request.into_inner();
        let host = bannin_proto::identity::HostId::new(r.host_id)
            .map_err(|e| Status::invalid_argument(format!("host id: {e}")))?;
        let query = EventQuery {
            since_unix_ms: r.since_unix_ms,
            kind: r.kind,
            after_sequence: r.after_sequence,
            limit: page(r.limit),
        };
        let (events, truncated) = self
            .store
            .events(host.as_str(), &query)
            .map_err(|e| internal("reading events", &e))?;
        let events = events
            .into_iter()
            .map(|(sequence, e)| v1::StoredEvent {
                host_id: host.to_string(),
                sequence,
                received_unix_ms: e.received_unix_ms,
                event: Some(v1::Event {
                    kind: e.kind,
                    severity: e.severity.to_wire() as i32,
                    observed_unix_ms: e.observed_unix_ms,
                    attributes: e.attributes.into_iter().collect(),
                    summary: e.summary,
                    indicator: e.indicator,
                }),
            })
            .collect();
        Ok(Response::new(v1::ListEventsResponse { events, truncated }))
    }

    async fn issue_command(
        &self,
        request: Request<v1::IssueCommandRequest>,
    ) -> Result<Response<v1::CommandRecord>, Status> {
        let name = self
            .authorize(
                &request,
                Role::Responder,
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
        match self
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

    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "commands.list")
            .await?;
        let r = request.into_inner();
        let host = (!r.host_id.is_empty()).then_some(r.host_id.as_str());
        let commands = self
            .commands
            .list(host)
            .map_err(|e| internal("reading commands", &e))?
            .iter()
            .filter(|c| r.command_id.is_empty() || c.wire_id() == r.command_id)
            .map(|c| c.to_wire())
            .collect();
        Ok(Response::new(v1::ListCommandsResponse { commands }))
    }

    async fn list_actions(
        &self,
        request: Request<v1::ListActionsRequest>,
    ) -> Result<Response<v1::ListActionsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "actions.list")
            .await?;
        let r = request.into_inner();
        let host = r.host_id;
        let actor = format!("host:{host}");
        let incident = match r.incident {
            0 => None,
            id => {
                let facts = self.facts(self.incident_record(id)?)?;
                Some(
                    reports::Scope::new(&self.store, &facts.incident, &facts.affected)
                        .map_err(|e| internal("reading evidence", &e))?,
                )
            }
        };
        let actions = self
            .store
            .actions()
            .map_err(|e| internal("reading the action log", &e))?
            .into_iter()
            .filter(|a| host.is_empty() || a.action.target == host || a.action.actor == actor)
            .filter(|a| {
                incident
                    .as_ref()
                    .is_none_or(|scope| scope.concerns(&a.action))
            })
            .map(action_to_wire)
            .collect();
        Ok(Response::new(v1::ListActionsResponse { actions }))
    }

    async fn verify_actions(
        &self,
        request: Request<v1::VerifyActionsRequest>,
    ) -> Result<Response<v1::VerifyActionsResponse>, Status> {
        let name = self
            .authorize(&request, Role::Viewer, "actions.verify")
            .await?;
        let outcome = self
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

    async fn add_operator(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        self.change_operator(request, "operator.add").await
    }

    async fn set_operator_role(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        self.change_operator(request, "operator.set_role").await
    }

    async fn disable_operator(
        &self,
        request: Request<v1::OperatorChange>,
    ) -> Result<Response<v1::OperatorRecord>, Status> {
        self.change_operator(request, "operator.disable").await
    }

    async fn list_operators(
        &self,
        request: Request<v1::ListOperatorsRequest>,
    ) -> Result<Response<v1::ListOperatorsResponse>, Status> {
        self.authorize(&request, Role::Admin, "operator.list")
            .await?;
        let operators = self
            .store
            .operators()
            .map_err(|e| internal("reading operators", &e))?
            .iter()
            .map(OperatorRecord::to_wire)
            .collect();
        Ok(Response::new(v1::ListOperatorsResponse { operators }))
    }

    async fn list_evidence(
        &self,
        request: Request<v1::ListEvidenceRequest>,
    ) -> Result<Response<v1::ListEvidenceResponse>, Status> {
        self.authorize(&request, Role::Viewer, "evidence.list")
            .await?;
        let evidence = self
            .store
            .evidence_list()
            .map_err(|e| internal("reading evidence", &e))?
            .iter()
            .map(EvidenceRecord::to_wire)
            .collect();
        Ok(Response::new(v1::ListEvidenceResponse { evidence }))
    }

    async fn show_evidence(
        &self,
        request: Request<v1::EvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        let name = self
            .authorize(&request, Role::Viewer, "evidence.show")
            .await?;
        let record = self.evidence_record(&request.get_ref().id)?;
        self.custody_event(
            name.as_str(),
            "evidence.viewed",
            &record,
            "",
            "record shown".into(),
        )
        .await?;
        Ok(Response::new(self.detail(&record)?))
    }

    async fn verify_evidence(
        &self,
        request: Request<v1::EvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        let name = self
            .authorize(&request, Role::Viewer, "evidence.verify")
            .await?;
        let record = self.evidence_record(&request.get_ref().id)?;
        if record.disposed {
            return Err(Status::failed_precondition(format!(
                "evidence {} was disposed of",
                record.id
            )));
        }
        let evidence = self.commands.evidence();
        let (verified, result) = match evidence.rehash(&record.sha256) {
            Ok(sha) if sha == record.sha256 => {
                match crate::evidence::verify_manifest(&evidence.bundle_path(&record.sha256)) {
                    Ok((n, _)) => (
                        true,
                        format!("intact: sha256 {sha} matches, {n} artifacts match the manifest"),
                    ),
                    Err(e) => (false, format!("MANIFEST CHECK FAILED: {e}")),
                }
            }
            Ok(sha) => (
                false,
                format!(
                    "MODIFIED: the stored bytes hash to {sha}, the record says {}",
                    record.sha256
                ),
            ),
            Err(e) => (false, format!("UNREADABLE: {e}")),
        };
        self.custody_event(
            name.as_str(),
            "evidence.verified",
            &record,
            "",
            result.clone(),
        )
        .await?;
        let mut detail = self.detail(&record)?;
        detail.verified = verified;
        detail.verify_result = result;
        Ok(Response::new(detail))
    }

    type ExportEvidenceStream = ReceiverStream<Result<v1::ExportChunk, Status>>;

    async fn export_evidence(
        &self,
        request: Request<v1::ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        let name = self
            .authorize(&request, Role::Admin, "evidence.export")
            .await?;
        let r = request.into_inner();
        if r.recipient.trim().is_empty() || r.reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "export needs a recipient and a reason",
            ));
        }
        let record = self.evidence_record(&r.id)?;
        if record.disposed {
            return Err(Status::failed_precondition(format!(
                "evidence {} was disposed of",
                record.id
            )));
        }
        let evidence = self.commands.evidence();
        match evidence.rehash(&record.sha256) {
            Ok(sha) if sha == record.sha256 => {}
            Ok(sha) => {
                return Err(Status::data_loss(format!(
                    "evidence {} no longer matches its hash ({sha}); not exported",
                    record.id
                )));
            }
            Err(e) => return Err(internal("reading evidence", &e)),
        }
        self.custody_event(
            name.as_str(),
            "evidence.exported",
            &record,
            &r.reason,
            format!("to {}", r.recipient),
        )
        .await?;
        let detail = self.detail(&record)?;
        let path = evidence.bundle_path(&record.sha256);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            if tx
                .send(Ok(v1::ExportChunk {
                    detail: Some(detail),
                    data: Default::default(),
                }))
                .await
                .is_err()
            {
                return;
            }
            let mut file = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(internal("reading evidence", &e))).await;
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 1024 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx
                            .send(Ok(v1::ExportChunk {
                                detail: None,
                                data: buf.into(),
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(internal("reading evidence", &e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn dispose_evidence(
        &self,
        request: Request<v1::DisposeEvidenceRequest>,
    ) -> Result<Response<v1::EvidenceDetail>, Status> {
        let name = self
            .authorize(&request, Role::Admin, "evidence.dispose")
            .await?;
        let r = request.into_inner();
        if !matches!(r.method.as_str(), "wiped" | "returned" | "transferred") {
            return Err(Status::invalid_argument(
                "method must be wiped, returned or transferred",
            ));
        }
        let mut record = self.evidence_record(&r.id)?;
        if record.disposed {
            return Err(Status::failed_precondition(format!(
                "evidence {} was already disposed of",
                record.id
            )));
        }
        let path = self.commands.evidence().bundle_path(&record.sha256);
        if let Err(e) = std::fs::remove_file(&path) {
            return Err(internal("removing the evidence", &e));
        }
        record.disposed = true;
        self.store
            .put_evidence(&record)
            .map_err(|e| internal("writing evidence", &e))?;
        self.custody_event(
            name.as_str(),
            "evidence.disposed",
            &record,
            &r.reason,
            format!("method: {}", r.method),
        )
        .await?;
        Ok(Response::new(self.detail(&record)?))
    }

    async fn open_incident(
        &self,
        request: Request<v1::OpenIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        let name = self
            .authorize(&request, Role::Responder, "incident.open")
            .await?;
        let r = request.into_inner();
        if r.title.trim().is_empty() || r.title.len() > 512 {
            return Err(Status::invalid_argument(
                "an incident needs a title (at most 512 bytes)",
            ));
        }
        if !INCIDENT_SEVERITIES.contains(&r.severity.as_str()) {
            return Err(Status::invalid_argument(
                "severity must be critical, high, medium or low",
            ));
        }
        self.check_findings(&r.findings)?;
        let incident = Incident {
            id: self
                .store
                .next_incident_id()
                .map_err(|e| internal("reading incidents", &e))?,
            title: r.title,
            severity: r.severity,
            status: "open".into(),
            commander: if r.commander.is_empty() {
                name.to_string()
            } else {
                r.commander
            },
            findings: r.findings,
            notes: Vec::new(),
            opened_unix_ms: bannin_proto::now_unix_ms(),
            opened_by: name.to_string(),
            closed_unix_ms: 0,
        };
        self.save_incident(
            &incident,
            name.as_str(),
            "incident.open",
            format!("{} ({})", incident.title, incident.severity),
        )
        .await?;
        Ok(Response::new(self.incident_detail(&incident)?))
    }

    async fn list_incidents(
        &self,
        request: Request<v1::ListIncidentsRequest>,
    ) -> Result<Response<v1::ListIncidentsResponse>, Status> {
        self.authorize(&request, Role::Viewer, "incident.list")
            .await?;
        let incidents = self
            .store
            .incidents()
            .map_err(|e| internal("reading incidents", &e))?
            .iter()
            .map(Incident::to_wire)
            .collect();
        Ok(Response::new(v1::ListIncidentsResponse { incidents }))
    }

    async fn show_incident(
        &self,
        request: Request<v1::IncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        self.authorize(&request, Role::Viewer, "incident.show")
            .await?;
        let incident = self.incident_record(request.get_ref().id)?;
        Ok(Response::new(self.incident_detail(&incident)?))
    }

    async fn update_incident(
        &self,
        request: Request<v1::UpdateIncidentRequest>,
    ) -> Result<Response<v1::IncidentDetail>, Status> {
        let name = self
            .authorize(&request, Role::Responder, "incident.update")
            .await?;
        let r = request.into_inner();
        let mut incident = self.incident_record(r.id)?;
        if incident.status == "closed" {
            return Err(Status::failed_precondition(format!(
                "incident {} is closed",
                incident.id
            )));
        }
        let mut changes = Vec::new();
        self.check_findings(&r.add_findings)?;
        for f in r.add_findings {
            if !incident.findings.contains(&f) {
                incident.findings.push(f);
                changes.push(format!("finding #{f} added"));
            }
        }
        if !r.note.is_empty() {
            if r.note.len() > 8192 {
                return Err(Status::invalid_argument("a note is at most 8192 bytes"));
            }
            incident.notes.push(IncidentNote {
                at_unix_ms: bannin_proto::now_unix_ms(),
                operator: name.to_string(),
                text: r.note,
            });
            changes.push("note added".into());
        }
        if !r.severity.is_empty() {
            if !INCIDENT_SEVERITIES.contains(&r.severity.as_str()) {
                return Err(Status::invalid_argument(
                    "severity must be critical, high, medium or low",
                ));
            }
            changes.push(format!("severity {} → {}", incident.severity, r.severity));
            incident.severity = r.severity;
        }
        if !r.status.is_empty() {
            let from = INCIDENT_STATUSES
                .iter()
                .position(|s| *s == incident.status)
                .unwrap_or(0);
            let Some(to) = INCIDENT_STATUSES.iter().position(|s| *s == r.status) else {
                return Err(Status::invalid_argument(
                    "status must be open, contained, eradicated, recovered or closed",
                ));
            };
            if to < from {
                return Err(Status::failed_precondition(format!(
                    "status moves forward only: {} cannot go back to {}",
                    incident.status, r.status
                )));
            }
            changes.push(format!("status {} → {}", incident.status, r.status));
            incident.status = r.status;
            if incident.status == "closed" {
                incident.closed_unix_ms = bannin_proto::now_unix_ms();
            }
        }
        if changes.is_empty() {
            return Err(Status::invalid_argument("nothing to change"));
        }
        self.save_incident(
            &incident,
            name.as_str(),
            "incident.update",
            changes.join("; "),
        )
        .await?;
        Ok(Response::new(self.incident_detail(&incident)?))
    }

    async fn incident_report(
        &self,
        request: Request<v1::IncidentReportRequest>,
    ) -> Result<Response<v1::IncidentReportResponse>, Status> {
        self.authorize(&request, Role::Viewer, "incident.report")
            .await?;
        let r = request.into_inner();
        if r.kind != "brief" && r.kind != "review" {
            return Err(Status::invalid_argument(
                "report kind must be brief or review",
            ));
        }
        let incident = self.incident_record(r.id)?;
        let service = self.clone();
        // Reports read the action log and the affected hosts' telemetry: off the runtime.
        let (markdown, json) = tokio::task::spawn_blocking(move || {
            let facts = service.facts(incident)?;
            let rendered = if r.kind == "brief" {
                let fleet: Vec<_> = service
                    .hosts
                    .list()
                    .into_iter()
                    .map(|v| {
                        let iso = service
                            .commands
                            .isolation_status(&v.record.host_id)
                            .to_owned();
                        (v, iso)
                    })
                    .collect();
                let brief = reports::brief(&service.store, &facts, &fleet)
                    .map_err(|e| internal("reading telemetry", &e))?;
                (brief.markdown(), serde_json::to_string_pretty(&brief))
            } else {
                let gaps: Vec<(String, Vec<String>)> = service
                    .hosts
                    .list()
                    .into_iter()
                    .filter(|v| facts.affected.contains(&v.record.host_id))
                    .map(|v| (v.record.host_id.clone(), reports::sensor_gaps(&v.record)))
                    .filter(|(_, g)| !g.is_empty())
                    .collect();
                let review = reports::review(&facts, &gaps);
                (review.markdown(), serde_json::to_string_pretty(&review))
            };
            let json = rendered
                .1
                .map_err(|e| internal("encoding the report", &e))?;
            Ok::<_, Status>((rendered.0, json))
        })
        .await
        .map_err(|e| internal("building the report", &e))??;
        Ok(Response::new(v1::IncidentReportResponse { markdown, json }))
    }

    async fn list_rules(
        &self,
        request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        self.authorize(&request, Role::Viewer, "rules.list").await?;
        let now = bannin_proto::now_unix_ms();
        let stats = self.ingest.rule_stats();
        let rules = &self.rules;
        let suppressions = rules
            .suppress
            .iter()
            .map(|r| {
                let (hits, last) = stats.suppressed.get(&r.name).copied().unwrap_or((0, 0));
                v1::SuppressionRule {
                    name: r.name.clone(),
                    reason: r.reason.clone(),
                    kind: r.kind.clone(),
                    hosts: r.hosts.clone(),
                    labels: r.labels.clone().into_iter().collect(),
                    attributes: r
                        .attributes
                        .iter()
                        .map(|(k, re)| (k.clone(), re.as_str().to_owned()))
                        .collect(),
                    expires_unix_ms: r.expires_unix_ms.unwrap_or(0),
                    active: r.active(now),
                    hits,
                    last_hit_unix_ms: last,
                }
            })
            .collect();
        let c = &rules.correlation;
        let rule =
            |name: &str, t: &crate::correlate::Threshold, threshold: usize, description: String| {
                v1::CorrelationRule {
                    name: name.to_owned(),
                    kind: format!("correlation.{name}"),
                    threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
                    window_secs: t.window.as_secs(),
                    severity: t.severity.to_wire() as i32,
                    raised: stats.correlation.raised.get(name).copied().unwrap_or(0),
                    description,
                }
            };
        let correlations = vec![
            rule(
                "spread",
                &c.spread,
                c.spread.hosts,
                format!(
                    "the same file hash, executable, remote address or new account on {} or more hosts",
                    c.spread.hosts
                ),
            ),
            rule(
                "account_hosts",
                &c.account_hosts,
                c.account_hosts.hosts,
                format!(
                    "one account logging in on {} or more hosts",
                    c.account_hosts.hosts
                ),
            ),
            rule(
                "password_spray",
                &c.password_spray,
                c.password_spray.hosts,
                format!(
                    "failed logins for one account or from one source on {} or more hosts",
                    c.password_spray.hosts
                ),
            ),
            rule(
                "lateral_movement",
                &c.lateral_movement,
                2,
                format!(
                    "a session to a fleet host on a remote-admin port ({}) followed by a new account, listener, service or unknown binary there",
                    c.remote_admin_ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            rule(
                "fan_in",
                &c.fan_in,
                c.fan_in.hosts,
                format!(
                    "{} or more fleet hosts reaching one outside address, or one host receiving from {} or more new addresses",
                    c.fan_in.hosts, c.fan_in_peers
                ),
            ),
            rule(
                "mass_silence",
                &c.mass_silence,
                c.mass_silence.hosts,
                format!(
                    "{} or more hosts and at least {:.0} % of the fleet going silent",
                    c.mass_silence.hosts,
                    c.mass_silence_share * 100.0
                ),
            ),
        ];
        Ok(Response::new(v1::ListRulesResponse {
            severity_overrides: rules
                .severity_overrides
                .iter()
                .map(|(k, v)| (k.clone(), v.name().to_owned()))
                .collect(),
            suppressions,
            correlation_enabled: c.enabled,
            correlations,
            correlation_keys: stats.correlation.keys as u64,
            correlation_shed: stats.correlation.shed,
        }))
    }

    async fn create_token(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreatedToken>, Status> {
        let name = self
            .authorize(&request, Role::Admin, "token.create")
            .await?;
        let r = request.into_inner();
        bannin_proto::labels::check(&r.labels)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
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
        let (token, secret) = crate::enroll::create_token(
            &self.store,
            name.as_str(),
            if r.uses == 0 { 1 } else { r.uses },
            std::time::Duration::from_secs(expires),
            r.labels.into_iter().collect(),
            r.note,
        )
        .map_err(|e| internal("storing the token", &e))?;
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: name.to_string(),
                verb: "token.create".into(),
                target: token.id.clone(),
                reason: token.note.clone(),
                result: format!("{} use(s), expires {}", token.uses, token.expires_unix_ms),
            })
            .map_err(|e| internal("writing the action log", &e))?;
        self.flush().await?;
        Ok(Response::new(v1::CreatedToken {
            token: Some(token_wire(&token)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        self.authorize(&request, Role::Admin, "token.list").await?;
        let tokens = self
            .store
            .tokens()
            .map_err(|e| internal("reading tokens", &e))?
            .iter()
            .map(token_wire)
            .collect();
        Ok(Response::new(v1::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        request: Request<v1::RevokeTokenRequest>,
    ) -> Result<Response<v1::EnrollToken>, Status> {
        let name = self
            .authorize(&request, Role::Admin, "token.revoke")
            .await?;
        let id = request.into_inner().id;
        let mut token = self
            .store
            .token(&id)
            .map_err(|e| internal("reading tokens", &e))?
            .ok_or_else(|| Status::not_found(format!("no token {id:?}")))?;
        token.revoked = true;
        self.store
            .put_token(&token)
            .map_err(|e| internal("storing the token", &e))?;
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: name.to_string(),
                verb: "token.revoke".into(),
                target: id,
                reason: String::new(),
                result: "revoked".into(),
            })
            .map_err(|e| internal("writing the action log", &e))?;
        self.flush().await?;
        Ok(Response::new(token_wire(&token)))
    }

    async fn revoke_host(
        &self,
        request: Request<v1::RevokeHostRequest>,
    ) -> Result<Response<v1::RevokeHostResponse>, Status> {
        let name = self.authorize(&request, Role::Admin, "host.revoke").await?;
        let r = request.into_inner();
        if r.reason.trim().is_empty() {
            return Err(Status::invalid_argument("a reason is required"));
        }
        if self
            .store
            .host(&r.host_id)
            .map_err(|e| internal("reading hosts", &e))?
            .is_none()
        {
            return Err(Status::not_found(format!("no host {:?}", r.host_id)));
        }
        let cut = self
            .hosts
            .revoke(crate::model::RevokedHost {
                host_id: r.host_id.clone(),
                by: name.to_string(),
                at_unix_ms: bannin_proto::now_unix_ms(),
                reason: r.reason.clone(),
            })
            .map_err(|e| internal("revoking", &e))?;
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: name.to_string(),
                verb: "host.revoke".into(),
                target: r.host_id.clone(),
                reason: r.reason,
                result: format!("{cut} live session(s) cut"),
            })
            .map_err(|e| internal("writing the action log", &e))?;
        self.flush().await?;
        Ok(Response::new(v1::RevokeHostResponse {
            host_id: r.host_id,
            sessions_cut: u32::try_from(cut).unwrap_or(u32::MAX),
        }))
    }

    async fn list_sinks(
        &self,
        request: Request<v1::ListSinksRequest>,
    ) -> Result<Response<v1::ListSinksResponse>, Status> {
        self.authorize(&request, Role::Viewer, "sinks.list").await?;
        let latest = *self.ingest.latest_finding().borrow();
        let sinks = self
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| v1::SinkStatus {
                name: s.name.clone(),
                target: s.target.clone(),
                cursor: s.cursor,
                latest: latest.max(s.latest),
                delivered: s.delivered,
                last_error: s.last_error.clone(),
                last_delivery_unix_ms: s.last_delivery_unix_ms,
            })
            .collect();
        Ok(Response::new(v1::ListSinksResponse { sinks }))
    }

    async fn add_finding(
        &self,
        request: Request<v1::AddFindingRequest>,
    ) -> Result<Response<v1::Finding>, Status> {
        let name = self
            .authorize(&request, Role::Responder, "finding.add")
            .await?;
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
        if self
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
        let id = self
            .ingest
            .raise(finding)
            .await
            .map_err(|e| internal("recording the finding", &e))?;
        self.store
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
        self.flush().await?;
        if id == 0 {
            return Err(Status::failed_precondition(
                "the finding matches a suppression rule and was counted, not queued (see `bannin rules`)",
            ));
        }
        let f = self
            .store
            .finding(id)
            .map_err(|e| internal("reading the finding", &e))?
            .ok_or_else(|| Status::internal("the finding vanished"))?;
        Ok(Response::new(f.to_wire()))
    }

    async fn set_host_labels(
        &self,
        request: Request<v1::SetHostLabelsRequest>,
    ) -> Result<Response<v1::Host>, Status> {
        let name = self.authorize(&request, Role::Admin, "host.label").await?;
        let r = request.into_inner();
        if self
            .store
            .host(&r.host_id)
            .map_err(|e| internal("reading hosts", &e))?
            .is_none()
        {
            return Err(Status::not_found(format!("no host {:?}", r.host_id)));
        }
        if r.set.is_empty() && r.remove.is_empty() {
            return Err(Status::invalid_argument("nothing to change"));
        }
        bannin_proto::labels::check(&r.set).map_err(|e| Status::invalid_argument(e.to_string()))?;
        for key in &r.remove {
            bannin_proto::labels::check_key(key)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        let mut labels = self
            .store
            .host_labels(&r.host_id)
            .map_err(|e| internal("reading labels", &e))?;
        for key in &r.remove {
            labels.set.remove(key);
        }
        labels.set.extend(r.set.clone());
        bannin_proto::labels::check(&labels.effective())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut changes: Vec<String> = r.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        changes.extend(r.remove.iter().map(|k| format!("-{k}")));
        self.store
            .put_host_labels(&r.host_id, &labels)
            .and_then(|()| {
                self.store.append_action(&Action {
                    at_unix_ms: bannin_proto::now_unix_ms(),
                    actor: name.to_string(),
                    verb: "host.label".into(),
                    target: r.host_id.clone(),
                    reason: String::new(),
                    result: changes.join(", "),
                })
            })
            .map_err(|e| internal("writing labels", &e))?;
        self.flush().await?;
        let host = self
            .hosts
            .list()
            .into_iter()
            .find(|h| h.record.host_id == r.host_id)
            .map(|h| v1::Host {
                host_id: h.record.host_id.clone(),
                hostname: h.record.hostname.clone(),
                online: h.online,
                isolation: self.commands.isolation_status(&h.record.host_id).into(),
                labels: labels.effective(),
                ..v1::Host::default()
            })
            .unwrap_or_default();
        Ok(Response::new(host))
    }
}
