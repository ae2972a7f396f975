//! Findings: the queue (filtered by the collector), its live stream, one finding and its triage states.

use super::*;

/// `GET /findings`: the queue, filtered, newest first, live.
pub(crate) async fn findings(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Page {
    let hosts = hosts_list(&c).await?;
    // The collector filters; the newest that pass.
    let found = c
        .client()
        .list_findings(v1::ListFindingsRequest {
            newest_first: true,
            limit: SHOWN as u32,
            filter: Some(filter.wire()?),
            ..Default::default()
        })
        .await?
        .into_inner();
    // The live stream starts after the newest finding of all, passing or not.
    let last = c
        .client()
        .list_findings(v1::ListFindingsRequest {
            newest_first: true,
            limit: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings
        .first()
        .map_or(0, |f| f.id);
    let shown: Vec<&v1::Finding> = found.findings.iter().collect();
    let mut stream = filter.query();
    if !stream.is_empty() {
        stream.push('&');
    }
    stream = format!("/findings/stream?{stream}since={last}");
    let sel = |name: &str, value: &str, options: &[&str]| {
        html! {
            label { (name) " "
                select name=(name.to_lowercase()) {
                    option value="" { "any" }
                    @for o in options {
                        @if *o == value { option value=(o) selected { (o) } } @else { option value=(o) { (o) } }
                    }
                }
            }
        }
    };
    let body = html! {
        form.filters method="get" action="/findings" {
            (sel("Severity", &filter.severity, &SEVERITIES))
            (sel("State", &filter.state, &["open", "new", "acknowledged", "resolved", "false_positive"]))
            label { "Kind " input type="text" name="kind" value=(t(&filter.kind)) placeholder="process.* or a kind"; }
            label { "Host " input type="text" name="host" value=(filter.host) list="host-ids"; }
            label { "Label " input type="text" name="label" value=(filter.label) placeholder="zone=PCI"; }
            datalist #host-ids { @for h in &hosts { option value=(t(&h.host_id)) {} } }
            button type="submit" { "Filter" }
            a href="/findings" { "Clear" }
        }
        p.live #live-status aria-live="polite" { "Live: new findings appear at the top." }
        (findings_table(&shown, Some(stream)))
        @if shown.len() == SHOWN { p.note { "Showing the newest " (SHOWN) "; narrow the filter to see older ones." } }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Findings, "Findings", body))
}

/// `GET /findings/stream`: server-sent events, one per new finding that passes the filter.
pub(crate) async fn findings_stream(
    State(c): State<Shared>,
    Query(filter): Query<Filter>,
) -> Result<Response, PageError> {
    let stream = c
        .client()
        .follow_findings(v1::FollowFindingsRequest {
            since_id: filter.since,
            filter: Some(filter.wire()?),
        })
        .await?
        .into_inner();
    // A task forwards the collector's stream (filtered there).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    // Ends when the browser goes away (the send fails) or the collector's
    // stream ends; nothing in it needs to finish before the console exits.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        let mut stream = stream;
        while let Ok(Some(f)) = stream.message().await {
            let event = SseEvent::default()
                .event("finding")
                .data(finding_row_json(&f).to_string());
            if tx.send(Ok(event)).await.is_err() {
                return; // the browser went away
            }
        }
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// `GET /findings/{id}`.
pub(crate) async fn finding(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<u64>,
) -> Page {
    let f = one_finding(&c, id).await?;
    // The incidents that hold it (a handful; the list is read whole).
    let holding: Vec<v1::Incident> = c
        .client()
        .list_incidents(v1::ListIncidentsRequest {})
        .await?
        .into_inner()
        .incidents
        .into_iter()
        .filter(|i| i.findings.contains(&id))
        .collect();
    // A new incident starts at the finding's severity (an incident has no "info").
    let incident_severity = match output::severity(f.severity) {
        "critical" => "critical",
        "high" => "high",
        "medium" => "medium",
        _ => "low",
    };
    let chain: Vec<u64> = f
        .attributes
        .get("correlated_findings")
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    let can_act = c.operator.role >= Role::Responder;
    let body = html! {
        (facts([
            ("Summary", html! { span #finding-summary { (t(&f.summary)) } }),
            ("Severity", severity(output::severity(f.severity))),
            ("State", html! { span #finding-state { (output::state(f.state)) } }),
            ("Kind", html! { (t(&f.kind)) }),
            ("Host", html! { a href=(format!("/hosts/{}", f.host_id)) { (t(&f.host_id)) } }),
            ("Observed", time(f.observed_unix_ms)),
            ("Last observed", time(f.last_observed_unix_ms)),
            ("Received", time(f.received_unix_ms)),
            ("Count", html! { (f.count) }),
            ("Incidents", html! {
                span #finding-incidents {
                    @if holding.is_empty() { "none" }
                    @for (n, i) in holding.iter().enumerate() {
                        @if n > 0 { ", " }
                        a href=(format!("/incidents/{}", i.id)) { "incident " (i.id) ": " (t(&i.title)) " (" (i.status) ")" }
                    }
                }
            }),
        ]))
        @if !chain.is_empty() {
            h2 { "Correlated findings" }
            p { "This finding was raised from these findings:" }
            ul #chain { @for id in &chain { li { a href=(format!("/findings/{id}")) { "finding " (id) } } } }
        }
        h2 { "Attributes" }
        table.grid.attrs {
            thead { tr { th { "Attribute" } th { "Value" } } }
            tbody { @for (k, v) in &f.attributes { tr { td { (t(k)) } td.value { (t(v)) } } } }
        }
        @if !f.history.is_empty() {
            h2 { "History" }
            table.grid {
                thead { tr { th { "When (UTC)" } th { "State" } th { "Operator" } th { "Note" } } }
                tbody { @for h in &f.history { tr { td { (time(h.at_unix_ms)) } td { (output::state(h.state)) } td { (t(&h.operator)) } td { (t(&h.note)) } } } }
            }
        }
        @if can_act {
            h2 { "Triage" }
            form #state-form method="post" action=(format!("/findings/{id}/state")) {
                (csrf_field(&s.csrf))
                label { "Note " textarea name="note" rows="2" cols="60" {} }
                div.buttons {
                    button type="submit" name="state" value="acknowledged" #ack { "Acknowledge" }
                    button type="submit" name="state" value="resolved" #resolve { "Resolve" }
                    button type="submit" name="state" value="false_positive" #false-positive { "False positive" }
                }
            }
            h2 { "Open an incident from this finding" }
            form #open-incident method="post" action="/incidents" {
                (csrf_field(&s.csrf))
                input type="hidden" name="findings" value=(id);
                label { "Title " input type="text" name="title" required value=(format!("{} on {}", f.kind, f.host_id)) size="50"; }
                (incident_severity_select(incident_severity))
                label { "Commander " input type="text" name="commander" value=(c.operator.name); }
                button type="submit" #open-incident-button { "Open incident" }
            }
        } @else {
            p.note { "Your role (" (c.operator.role.as_str()) ") reads findings; a responder changes them." }
        }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Findings,
        &format!("Finding {id}"),
        body,
    ))
}

#[derive(Deserialize)]
pub(crate) struct StateForm {
    state: String,
    #[serde(default)]
    note: String,
}

/// `POST /findings/{id}/state`.
pub(crate) async fn finding_state(
    State(c): State<Shared>,
    Path(id): Path<u64>,
    Form(form): Form<StateForm>,
) -> Result<Redirect, PageError> {
    let state = match form.state.as_str() {
        "acknowledged" => v1::FindingState::Acknowledged,
        "resolved" => v1::FindingState::Resolved,
        "false_positive" => v1::FindingState::FalsePositive,
        other => return Err(PageError::bad(format!("unknown state {other:?}"))),
    };
    c.client()
        .set_finding_state(v1::SetFindingStateRequest {
            id,
            state: state as i32,
            note: form.note,
        })
        .await?;
    Ok(Redirect::to(&format!("/findings/{id}")))
}
