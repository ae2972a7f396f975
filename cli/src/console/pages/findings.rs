//! Findings: the queue (filtered by the collector), its live stream, one finding and its triage states.

use super::*;

/// `GET /findings`: the queue, filtered, newest first, live.
pub(crate) async fn findings(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Page {
    let hosts = hosts_list(&c).await?;
    if !filter.group.is_empty() {
        return grouped(c, s, filter, hosts).await;
    }
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
    let ids: Vec<String> = shown.iter().map(|f| f.id.to_string()).collect();
    let body = html! {
        (filter_form(&filter, &hosts))
        p.live #live-status aria-live="polite" { "Live: new findings appear at the top." }
        (findings_table(&shown, Some(stream)))
        @if shown.len() == SHOWN { p.note { "Showing the newest " (SHOWN) "; narrow the filter to see older ones." } }
        @if c.operator.role >= Role::Responder && !shown.is_empty() {
            (bulk_form(&s, &ids, &filter, &format!("all {} shown", shown.len()), "bulk-all"))
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Findings, "Findings", body))
}

/// Most findings a grouped view reads (newest first).
const GROUPED: usize = 10_000;

/// The filters, the search box and the grouping, as one GET form (the URL is the view).
fn filter_form(filter: &Filter, hosts: &[v1::Host]) -> Markup {
    let sel = |name: &str, field: &str, value: &str, options: &[&str], any: &str| {
        html! {
            label { (name) " "
                select name=(field) {
                    option value="" { (any) }
                    @for o in options {
                        @if *o == value { option value=(o) selected { (o) } } @else { option value=(o) { (o) } }
                    }
                }
            }
        }
    };
    html! {
        form.filters #findings-filter method="get" action="/findings" {
            label { "Search " input type="search" name="q" value=(filter.q) size="28" placeholder="path, pid, user, hash, address…"; }
            (sel("Severity", "severity", &filter.severity, &SEVERITIES, "any"))
            (sel("State", "state", &filter.state, &["open", "new", "acknowledged", "resolved", "false_positive"], "any"))
            label { "Kind " input type="text" name="kind" value=(t(&filter.kind)) placeholder="process.* or a kind"; }
            label { "Host " input type="text" name="host" value=(filter.host) list="host-ids"; }
            label { "Label " input type="text" name="label" value=(filter.label) placeholder="zone=PCI"; }
            (sel("Group by", "group", &filter.group, &["kind", "host", "summary"], "none"))
            datalist #host-ids { @for h in hosts { option value=(t(&h.host_id)) {} } }
            button type="submit" #filter-button { "Filter" }
            a href="/findings" { "Clear" }
        }
    }
}

/// A form that sets one state on every finding in `ids`, with one note.
fn bulk_form(s: &Session, ids: &[String], filter: &Filter, what: &str, id: &str) -> Markup {
    html! {
        form.bulk id=(id) method="post" action="/findings/bulk" {
            (csrf_field(&s.csrf))
            input type="hidden" name="ids" value=(ids.join(","));
            input type="hidden" name="back" value=(filter.query());
            label { "Note " input type="text" name="note" size="30"; }
            button type="submit" name="state" value="acknowledged" { "Acknowledge " (what) }
            button type="submit" name="state" value="resolved" { "Resolve " (what) }
            button type="submit" name="state" value="false_positive" { "False positive: " (what) }
        }
    }
}

/// `GET /findings?group=kind|host|summary`: the findings that pass, grouped,
/// each group with its count, worst severity, states and last observation,
/// a link to its findings and one action for all of them.
async fn grouped(c: Shared, s: Session, filter: Filter, hosts: Vec<v1::Host>) -> Page {
    let key_of = |f: &v1::Finding| -> String {
        match filter.group.as_str() {
            "kind" => f.kind.clone(),
            "host" => f.host_id.clone(),
            _ => f.summary.clone(),
        }
    };
    if !matches!(filter.group.as_str(), "kind" | "host" | "summary") {
        return Err(PageError::bad(format!(
            "unknown grouping {:?}",
            filter.group
        )));
    }
    let wire = filter.wire()?;
    let mut found: Vec<v1::Finding> = Vec::new();
    let mut before = 0;
    let mut complete = false;
    while found.len() < GROUPED {
        let page = c
            .client()
            .list_findings(v1::ListFindingsRequest {
                newest_first: true,
                before_id: before,
                limit: 1000,
                filter: Some(wire.clone()),
                ..Default::default()
            })
            .await?
            .into_inner();
        found.extend(page.findings);
        if page.scanned_to <= 1 {
            complete = true;
            break;
        }
        before = page.scanned_to;
    }
    struct Group {
        count: u64,
        worst: i32,
        open: usize,
        last: i64,
        ids: Vec<String>,
        sample: String,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for f in &found {
        let g = groups.entry(key_of(f)).or_insert(Group {
            count: 0,
            worst: 0,
            open: 0,
            last: 0,
            ids: Vec::new(),
            sample: f.kind.clone(),
        });
        g.count += 1;
        g.worst = g.worst.max(f.severity);
        g.last = g.last.max(f.last_observed_unix_ms.max(f.observed_unix_ms));
        if matches!(output::state(f.state), "new" | "acknowledged") {
            g.open += 1;
        }
        g.ids.push(f.id.to_string());
    }
    let mut ordered: Vec<(String, Group)> = groups.into_iter().collect();
    ordered.sort_by(|a, b| b.1.worst.cmp(&a.1.worst).then(b.1.count.cmp(&a.1.count)));
    let can_act = c.operator.role >= Role::Responder;
    let link = |key: &str, sample: &str| {
        let mut f = filter.clone();
        f.group = String::new();
        match filter.group.as_str() {
            "kind" => f.kind = key.to_owned(),
            "host" => f.host = key.to_owned(),
            _ => {
                f.kind = sample.to_owned();
                f.q = key.chars().take(200).collect();
            }
        }
        format!("/findings?{}", f.query())
    };
    let body = html! {
        (filter_form(&filter, &hosts))
        @if !complete { p.note { "Grouped over the newest " (found.len()) " findings that pass." } }
        table.grid.sortable #groups {
            thead { tr { th { (filter.group) } th { "Findings" } th { "Open" } th { "Worst" } th { "Last observed (UTC)" } @if can_act { th { "All of them" } } } }
            tbody {
                @for (n, (key, g)) in ordered.iter().enumerate() {
                    tr data-group=(t(key)) {
                        td.summary { a href=(link(key, &g.sample)) { (t(key)) } }
                        td.num { (g.count) }
                        td.num { (g.open) }
                        td { (severity(output::severity(g.worst))) }
                        td { (time(g.last)) }
                        @if can_act { td { (bulk_form(&s, &g.ids, &filter, &format!("{}", g.count), &format!("bulk-{n}"))) } }
                    }
                }
            }
        }
        @if ordered.is_empty() { p.empty #queue-empty { "No findings." } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Findings,
        "Findings, grouped",
        body,
    ))
}

#[derive(Deserialize)]
pub(crate) struct BulkForm {
    ids: String,
    state: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: String,
}

/// A state a responder may set (a finding is never set back to new).
fn triage_state(name: &str) -> Result<v1::FindingState, PageError> {
    match name {
        "acknowledged" => Ok(v1::FindingState::Acknowledged),
        "resolved" => Ok(v1::FindingState::Resolved),
        "false_positive" => Ok(v1::FindingState::FalsePositive),
        other => Err(PageError::bad(format!("unknown state {other:?}"))),
    }
}

/// Most findings one bulk action changes.
const MAX_BULK: usize = GROUPED;

/// `POST /findings/bulk`: one state, one note, for every listed finding (each
/// change is its own entry in the action log); then the view it came from.
pub(crate) async fn bulk_state(
    State(c): State<Shared>,
    Form(form): Form<BulkForm>,
) -> Result<Redirect, PageError> {
    let state = triage_state(&form.state)?;
    let ids: Vec<u64> = form
        .ids
        .split(',')
        .filter(|i| !i.trim().is_empty())
        .map(|i| i.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| PageError::bad("ids: finding ids separated by commas"))?;
    if ids.len() > MAX_BULK {
        return Err(PageError::bad(format!(
            "at most {MAX_BULK} findings at once"
        )));
    }
    let mut client = c.client();
    for id in ids {
        client
            .set_finding_state(v1::SetFindingStateRequest {
                id,
                state: state as i32,
                note: form.note.clone(),
            })
            .await?;
    }
    // Back to the view: its query read as the page reads it, and written
    // again (never another site); one it cannot read is the plain queue.
    let back = format!("/findings?{}", form.back)
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| Query::<Filter>::try_from_uri(&uri).ok())
        .map(|Query(f)| f)
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/findings?{}", back.query())))
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
    let state = triage_state(&form.state)?;
    c.client()
        .set_finding_state(v1::SetFindingStateRequest {
            id,
            state: state as i32,
            note: form.note,
        })
        .await?;
    Ok(Redirect::to(&format!("/findings/{id}")))
}
