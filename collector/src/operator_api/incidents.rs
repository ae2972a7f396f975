//! Incidents: open, list, show, update, and their two reports.
//!
//! The domain rules (status order, severities) live in [`crate::incidents`].

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::incidents::{self, IncidentError, IncidentSeverity, IncidentStatus};
use crate::link::internal;
use crate::model::{Action, Incident};
use crate::reports;

impl OperatorService {
    pub(super) fn incident_record(&self, id: u64) -> Result<Incident, Status> {
        self.store
            .incident(id)
            .map_err(|e| internal("reading incidents", &e))?
            .ok_or_else(|| Status::not_found(format!("no incident {id}")))
    }

    pub(super) fn facts(&self, incident: Incident) -> Result<reports::Facts, Status> {
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

    async fn incident_action(
        &self,
        incident: &Incident,
        operator: &str,
        verb: &str,
        result: String,
    ) -> Result<(), Status> {
        self.store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: operator.to_owned(),
                verb: verb.to_owned(),
                target: incident.target(),
                reason: String::new(),
                result,
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

/// The status for a refused incident change.
fn refused(e: IncidentError) -> Status {
    match e {
        IncidentError::Closed(_) | IncidentError::Backwards { .. } => {
            Status::failed_precondition(e.to_string())
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// `OpenIncident`.
pub(super) async fn open_incident(
    svc: &OperatorService,
    request: Request<v1::OpenIncidentRequest>,
) -> Result<Response<v1::IncidentDetail>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    incidents::check_title(&r.title).map_err(refused)?;
    let severity: IncidentSeverity = r.severity.parse().map_err(refused)?;
    svc.check_findings(&r.findings)?;
    let incident = Incident {
        // Given as the journal applies it: the same on every collector.
        id: 0,
        title: r.title,
        severity,
        status: IncidentStatus::Open,
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
    let result = format!("{} ({})", incident.title, incident.severity);
    let id = svc
        .change(crate::journal::Op::OpenIncident { incident })
        .await?;
    let incident = svc.incident_record(id)?;
    svc.incident_action(&incident, name.as_str(), "incident.open", result)
        .await?;
    Ok(Response::new(svc.incident_detail(&incident)?))
}

/// `ListIncidents`.
pub(super) async fn list_incidents(
    svc: &OperatorService,
    request: Request<v1::ListIncidentsRequest>,
) -> Result<Response<v1::ListIncidentsResponse>, Status> {
    caller(&request)?;
    let incidents = svc
        .store
        .incidents()
        .map_err(|e| internal("reading incidents", &e))?
        .iter()
        .map(Incident::to_wire)
        .collect();
    Ok(Response::new(v1::ListIncidentsResponse { incidents }))
}

/// `ShowIncident`.
pub(super) async fn show_incident(
    svc: &OperatorService,
    request: Request<v1::IncidentRequest>,
) -> Result<Response<v1::IncidentDetail>, Status> {
    caller(&request)?;
    let incident = svc.incident_record(request.get_ref().id)?;
    Ok(Response::new(svc.incident_detail(&incident)?))
}

/// `UpdateIncident`.
pub(super) async fn update_incident(
    svc: &OperatorService,
    request: Request<v1::UpdateIncidentRequest>,
) -> Result<Response<v1::IncidentDetail>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let mut incident = svc.incident_record(r.id)?;
    if incident.status == IncidentStatus::Closed {
        return Err(refused(IncidentError::Closed(incident.id)));
    }
    svc.check_findings(&r.add_findings)?;
    let update = incidents::Update {
        add_findings: r.add_findings,
        note: r.note,
        severity: r.severity,
        status: r.status,
    };
    let now = bannin_proto::now_unix_ms();
    let changes =
        incidents::apply(&mut incident, update.clone(), name.as_str(), now).map_err(refused)?;
    svc.change(crate::journal::Op::UpdateIncident {
        id: incident.id,
        update,
        operator: name.to_string(),
        at_unix_ms: now,
    })
    .await?;
    // As every collector applied it (in the journal's order).
    let incident = svc.incident_record(incident.id)?;
    svc.incident_action(
        &incident,
        name.as_str(),
        "incident.update",
        changes.join("; "),
    )
    .await?;
    Ok(Response::new(svc.incident_detail(&incident)?))
}

/// `IncidentReport`.
pub(super) async fn incident_report(
    svc: &OperatorService,
    request: Request<v1::IncidentReportRequest>,
) -> Result<Response<v1::IncidentReportResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    if r.kind != "brief" && r.kind != "review" {
        return Err(Status::invalid_argument(
            "report kind must be brief or review",
        ));
    }
    let incident = svc.incident_record(r.id)?;
    let service = svc.clone();
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
