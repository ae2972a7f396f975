//! `bannin` incident open, list, show, update, brief, review.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn incident(
    client: &mut Client,
    json: bool,
    action: IncidentAction,
) -> anyhow::Result<ExitCode> {
    let action_kind = match &action {
        IncidentAction::Brief { .. } => Some("brief"),
        IncidentAction::Review { .. } => Some("review"),
        _ => None,
    };
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    let update = |id: u64| v1::UpdateIncidentRequest {
        id,
        ..Default::default()
    };
    let detail = match action {
        IncidentAction::List => {
            let list = client
                .list_incidents(v1::ListIncidentsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .incidents;
            if json {
                print_json(&list.iter().map(output::incident_json).collect::<Vec<_>>())?;
            } else {
                for i in &list {
                    crate::say!(
                        "#{:<4} {:<9} {:<11} {:<19} {:<12} {} ({} findings)",
                        i.id,
                        i.severity,
                        i.status,
                        short_time(i.opened_unix_ms),
                        i.commander,
                        i.title,
                        i.findings.len()
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        IncidentAction::Open {
            title,
            severity,
            commander,
            findings,
        } => {
            client
                .open_incident(v1::OpenIncidentRequest {
                    title,
                    severity,
                    commander,
                    findings,
                })
                .await
        }
        IncidentAction::Show { id } => client.show_incident(v1::IncidentRequest { id }).await,
        IncidentAction::Brief { id, out } | IncidentAction::Review { id, out } => {
            let kind = if matches!(action_kind, Some("brief")) {
                "brief"
            } else {
                "review"
            };
            let report = client
                .incident_report(v1::IncidentReportRequest {
                    id,
                    kind: kind.into(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let text = if json {
                report.json + "\n"
            } else {
                report.markdown
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("{kind} of incident {id} written to {}", path.display());
                }
                None => print!("{text}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        IncidentAction::AddFinding { id, findings } => {
            client
                .update_incident(v1::UpdateIncidentRequest {
                    add_findings: findings,
                    ..update(id)
                })
                .await
        }
        IncidentAction::Note { id, text } => {
            client
                .update_incident(v1::UpdateIncidentRequest {
                    note: text,
                    ..update(id)
                })
                .await
        }
        IncidentAction::SetSeverity { id, severity } => {
            client
                .update_incident(v1::UpdateIncidentRequest {
                    severity,
                    ..update(id)
                })
                .await
        }
        IncidentAction::SetStatus { id, status: st } => {
            client
                .update_incident(v1::UpdateIncidentRequest {
                    status: st,
                    ..update(id)
                })
                .await
        }
        IncidentAction::Close { id } => {
            client
                .update_incident(v1::UpdateIncidentRequest {
                    status: "closed".into(),
                    ..update(id)
                })
                .await
        }
    }
    .map_err(status)?
    .into_inner();
    if json {
        print_json(&output::incident_detail_json(&detail))?;
    } else if let Some(i) = &detail.incident {
        crate::say!(
            "Incident #{} — {} [{}; {}] commander {}",
            i.id,
            i.title,
            i.severity,
            i.status,
            i.commander
        );
        crate::say!("  affected hosts: {}", detail.affected_hosts.join(", "));
        for t in &detail.timeline {
            crate::say!("  {}  {:<7} {}", short_time(t.at_unix_ms), t.source, t.text);
        }
    }

    Ok(ExitCode::SUCCESS)
}
