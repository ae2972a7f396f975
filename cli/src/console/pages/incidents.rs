//! Incidents: the list, one incident, its updates and its two reports.

use super::*;

const INCIDENT_SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const INCIDENT_STATUSES: [&str; 5] = ["open", "contained", "eradicated", "recovered", "closed"];

pub(super) fn incident_severity_select(selected: &str) -> Markup {
    html! {
        label { "Severity "
            select name="severity" {
                @for sev in INCIDENT_SEVERITIES {
                    @if sev == selected { option value=(sev) selected { (sev) } } @else { option value=(sev) { (sev) } }
                }
            }
        }
    }
}

/// `GET /incidents`.
pub(crate) async fn incidents(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let incidents = c
        .client()
        .list_incidents(v1::ListIncidentsRequest {})
        .await?
        .into_inner()
        .incidents;
    let body = html! {
        table.grid #incidents {
            thead { tr { th { "ID" } th { "Opened (UTC)" } th { "Title" } th { "Severity" } th { "Status" } th { "Commander" } th { "Findings" } } }
            tbody {
                @for i in incidents.iter().rev() {
                    tr {
                        td { a href=(format!("/incidents/{}", i.id)) { (i.id) } }
                        td { (time(i.opened_unix_ms)) }
                        td { a href=(format!("/incidents/{}", i.id)) { (t(&i.title)) } }
                        td { (severity(&i.severity)) }
                        td { (i.status) }
                        td { (t(&i.commander)) }
                        td.num { (i.findings.len()) }
                    }
                }
            }
        }
        @if incidents.is_empty() { p.empty { "No incidents." } }
        @if c.operator.role >= Role::Responder {
            h2 { "Open an incident" }
            form #new-incident method="post" action="/incidents" {
                (csrf_field(&s.csrf))
                label { "Title " input type="text" name="title" required size="50"; }
                (incident_severity_select("medium"))
                label { "Commander " input type="text" name="commander" value=(c.operator.name); }
                label { "Findings (ids, comma separated) " input type="text" name="findings" size="20"; }
                button type="submit" { "Open incident" }
            }
        }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Incidents,
        "Incidents",
        body,
    ))
}

fn ids(text: &str) -> Result<Vec<u64>, PageError> {
    text.split([',', ' '])
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| PageError::bad(format!("{x:?} is not a finding id")))
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct OpenForm {
    title: String,
    severity: String,
    #[serde(default)]
    commander: String,
    #[serde(default)]
    findings: String,
}

/// `POST /incidents`.
pub(crate) async fn open_incident(
    State(c): State<Shared>,
    Form(form): Form<OpenForm>,
) -> Result<Redirect, PageError> {
    let detail = c
        .client()
        .open_incident(v1::OpenIncidentRequest {
            title: form.title,
            severity: form.severity,
            commander: form.commander,
            findings: ids(&form.findings)?,
        })
        .await?
        .into_inner();
    let id = detail.incident.map_or(0, |i| i.id);
    Ok(Redirect::to(&format!("/incidents/{id}")))
}

/// `GET /incidents/{id}`.
pub(crate) async fn incident(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<u64>,
) -> Page {
    let d = c
        .client()
        .show_incident(v1::IncidentRequest { id })
        .await?
        .into_inner();
    let i = d.incident.unwrap_or_default();
    let body = html! {
        (facts([
            ("Title", html! { span #incident-title { (t(&i.title)) } }),
            ("Severity", severity(&i.severity)),
            ("Status", html! { span #incident-status { (i.status) } }),
            ("Commander", html! { (t(&i.commander)) }),
            ("Opened", html! { (time(i.opened_unix_ms)) " by " (t(&i.opened_by)) }),
            ("Closed", time(i.closed_unix_ms)),
            ("Affected hosts", html! { @for h in &d.affected_hosts { a href=(format!("/hosts/{h}")) { (h) } " " } }),
            ("Findings", html! { @for f in &i.findings { a href=(format!("/findings/{f}")) { (f) } " " } }),
        ]))
        p.reports {
            a #brief-link href=(format!("/incidents/{id}/brief")) { "Scoping brief" } " ("
            a href=(format!("/incidents/{id}/brief.md")) download { "Markdown" } ", "
            a href=(format!("/incidents/{id}/brief.json")) download { "JSON" } ") · "
            a #review-link href=(format!("/incidents/{id}/review")) { "Lessons-learned review" } " ("
            a href=(format!("/incidents/{id}/review.md")) download { "Markdown" } ", "
            a href=(format!("/incidents/{id}/review.json")) download { "JSON" } ")"
        }
        @if c.operator.role >= Role::Responder {
            h2 { "Update" }
            form #update-incident method="post" action=(format!("/incidents/{id}")) {
                (csrf_field(&s.csrf))
                label { "Note " textarea name="note" rows="2" cols="60" {} }
                label { "Attach findings " input type="text" name="add_findings" size="20" placeholder="12, 14"; }
                label { "Severity "
                    select name="severity" {
                        option value="" { "unchanged" }
                        @for sev in INCIDENT_SEVERITIES { option value=(sev) { (sev) } }
                    }
                }
                label { "Status "
                    select name="status" {
                        option value="" { "unchanged" }
                        @for st in INCIDENT_STATUSES { option value=(st) { (st) } }
                    }
                }
                button type="submit" { "Update" }
            }
        }
        h2 { "Timeline" }
        table.grid #timeline {
            thead { tr { th { "When (UTC)" } th { "Source" } th { "What" } } }
            tbody { @for e in &d.timeline { tr { td { (time(e.at_unix_ms)) } td { (e.source) } td.value { (t(&e.text)) } } } }
        }
        h2 { "Notes" }
        @if i.notes.is_empty() { p.empty { "No notes." } }
        ul.notes { @for n in &i.notes { li { (time(n.at_unix_ms)) " " strong { (t(&n.operator)) } ": " (t(&n.text)) } } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Incidents,
        &format!("Incident {id}"),
        body,
    ))
}

#[derive(Deserialize)]
pub(crate) struct UpdateForm {
    #[serde(default)]
    note: String,
    #[serde(default)]
    add_findings: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    status: String,
}

/// `POST /incidents/{id}`.
pub(crate) async fn update_incident(
    State(c): State<Shared>,
    Path(id): Path<u64>,
    Form(form): Form<UpdateForm>,
) -> Result<Redirect, PageError> {
    c.client()
        .update_incident(v1::UpdateIncidentRequest {
            id,
            add_findings: ids(&form.add_findings)?,
            note: form.note.trim().to_owned(),
            severity: form.severity,
            status: form.status,
        })
        .await?;
    Ok(Redirect::to(&format!("/incidents/{id}")))
}

/// `GET /incidents/{id}/{brief|review}[.md|.json]`: rendered, or as a download.
pub(crate) async fn report(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path((id, kind)): Path<(u64, String)>,
) -> Result<Response, PageError> {
    let (name, format) = kind.split_once('.').unwrap_or((kind.as_str(), "html"));
    if !matches!(name, "brief" | "review") || !matches!(format, "html" | "md" | "json") {
        return Err(not_found().await);
    }
    let r = c
        .client()
        .incident_report(v1::IncidentReportRequest {
            id,
            kind: name.to_owned(),
        })
        .await?
        .into_inner();
    let file = format!("incident-{id}-{name}.{format}");
    let download = |body: String, mime: &'static str| {
        (
            [
                (header::CONTENT_TYPE, mime.to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            body,
        )
            .into_response()
    };
    Ok(match format {
        "md" => download(r.markdown, "text/markdown; charset=utf-8"),
        "json" => download(r.json, "application/json"),
        _ => {
            let title = if name == "brief" {
                "Scoping brief"
            } else {
                "Lessons-learned review"
            };
            let body = html! {
                p { a href=(format!("/incidents/{id}")) { "Incident " (id) } " · "
                    a href=(format!("/incidents/{id}/{name}.md")) download { "Download Markdown" } " · "
                    a href=(format!("/incidents/{id}/{name}.json")) download { "Download JSON" } }
                article.report #report { (view::markdown(&r.markdown)) }
            };
            page(
                &c.operator,
                &s.csrf,
                Nav::Incidents,
                &format!("{title}, incident {id}"),
                body,
            )
            .into_response()
        }
    })
}
