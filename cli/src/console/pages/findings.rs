//! Findings: the queue (filtered by the collector), its live stream, one finding and its triage states.

use super::*;

/// `GET /findings`: the queue, filtered, newest first and live, or sorted
/// on the collector; with a box per row for bulk actions.
pub(crate) async fn findings(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(filter): Query<Filter>,
) -> Page {
    let hosts = hosts_list(&c).await?;
    if !filter.group.is_empty() {
        return grouped(c, s, filter, hosts).await;
    }
    let order = filter.order()?;
    // The collector filters (and sorts); the page shows what it answers.
    let found = c
        .client()
        .list_findings(v1::ListFindingsRequest {
            newest_first: filter.dir != "asc",
            limit: SHOWN as u32,
            filter: Some(filter.wire()?),
            order: order as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let sorted = order != v1::FindingOrder::Id;
    // The live stream starts after the newest finding of all, passing or not;
    // a sorted view has no place to put new rows, so it has none.
    let stream = if sorted {
        None
    } else {
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
        let mut stream = filter.query();
        if !stream.is_empty() {
            stream.push('&');
        }
        Some(format!("/findings/stream?{stream}since={last}"))
    };
    let shown: Vec<&v1::Finding> = found.findings.iter().collect();
    let can_act = c.operator.role >= Role::Responder;
    let ids: Vec<String> = shown.iter().map(|f| f.id.to_string()).collect();
    let body = html! {
        (filter_form(&filter, &hosts))
        @if !filter.done.is_empty() { p.notice #bulk-done role="status" { (t(&filter.done)) } }
        @if sorted {
            p.live #live-status {
                "Sorted by " (filter.sort) " on the collector"
                @if found.ordered_all { " (all " (found.ordered) " that pass)" } @else { " (the newest " (found.ordered) " that pass)" }
                ". New findings are not added while sorted; states and counts stay live. "
                a href=(format!("/findings?{}", Filter { sort: String::new(), dir: String::new(), ..filter.clone() }.query())) { "Newest first, live" }
            }
        } @else {
            p.live #live-status aria-live="polite" { "Live: new findings appear at the top." }
        }
        @if can_act && !shown.is_empty() {
            (bulk_form(&s, BulkTarget::Picked, &filter, "picked", "bulk-picked"))
        }
        (findings_table(&shown, stream, Some(&filter), can_act))
        @if shown.len() == SHOWN { p.note { "Showing the first " (SHOWN) "; narrow the filter to see the others." } }
        @if can_act && !shown.is_empty() {
            (bulk_form(&s, BulkTarget::Ids(&ids), &filter, &format!("all {} shown", shown.len()), "bulk-all"))
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Findings, "Findings", body))
}

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
            @if !filter.sort.is_empty() { input type="hidden" name="sort" value=(filter.sort); }
            @if !filter.dir.is_empty() { input type="hidden" name="dir" value=(filter.dir); }
            @if !filter.summary.is_empty() { input type="hidden" name="summary" value=(filter.summary); }
            datalist #host-ids { @for h in hosts { option value=(t(&h.host_id)) {} } }
            button type="submit" #filter-button { "Filter" }
            a href="/findings" { "Clear" }
        }
    }
}

/// What a bulk form acts on.
enum BulkTarget<'a> {
    /// These findings.
    Ids(&'a [String]),
    /// The rows picked in the queue (filled in by the page's script).
    Picked,
    /// Every finding this view selects (a group), as the collector finds them.
    View(&'a Filter),
}

/// A form that sets one state on every finding it names, with one note.
fn bulk_form(s: &Session, target: BulkTarget<'_>, back: &Filter, what: &str, id: &str) -> Markup {
    let picked = matches!(target, BulkTarget::Picked);
    html! {
        form.bulk id=(id) method="post" action="/findings/bulk" {
            (csrf_field(&s.csrf))
            @match target {
                BulkTarget::Ids(ids) => { input type="hidden" name="ids" value=(ids.join(",")); }
                BulkTarget::Picked => { input type="hidden" name="ids" value=""; }
                BulkTarget::View(view) => { input type="hidden" name="view" value=(view.query()); }
            }
            input type="hidden" name="back" value=(back.query());
            @if picked { span.picked { span #picked-count { "0" } " picked: " } }
            label { "Note " input type="text" name="note" size="30"; }
            button type="submit" name="state" value="acknowledged" { "Acknowledge " (what) }
            button type="submit" name="state" value="resolved" { "Resolve " (what) }
            button type="submit" name="state" value="false_positive" { "False positive: " (what) }
        }
    }
}

/// `GET /findings?group=kind|host|summary`: the findings that pass, grouped
/// and counted by the collector, worst first, each group with a link to its
/// findings and one action for all of them.
async fn grouped(c: Shared, s: Session, filter: Filter, hosts: Vec<v1::Host>) -> Page {
    let by = match filter.group.as_str() {
        "kind" => v1::FindingGroupBy::Kind,
        "host" => v1::FindingGroupBy::Host,
        "summary" => v1::FindingGroupBy::Summary,
        other => return Err(PageError::bad(format!("unknown grouping {other:?}"))),
    };
    let answer = c
        .client()
        .group_findings(v1::GroupFindingsRequest {
            filter: Some(filter.wire()?),
            by: by as i32,
            limit: GROUPS,
        })
        .await?
        .into_inner();
    let can_act = c.operator.role >= Role::Responder;
    // The group's own view: the filter narrowed to it, ungrouped.
    let view_of = |key: &str| {
        let mut f = filter.clone();
        f.group = String::new();
        f.done = String::new();
        match by {
            v1::FindingGroupBy::Kind => f.kind = key.to_owned(),
            v1::FindingGroupBy::Host => f.host = key.to_owned(),
            _ => f.summary = key.to_owned(),
        }
        f
    };
    let body = html! {
        (filter_form(&filter, &hosts))
        @if !filter.done.is_empty() { p.notice #bulk-done role="status" { (t(&filter.done)) } }
        p.note #groups-note {
            (answer.grouped) " findings in " (answer.total_groups) " groups, counted by the collector"
            @if !answer.complete { " (the newest ones only: narrow the filter to count them all)" }
            @if answer.total_groups > answer.groups.len() as u64 { "; the worst " (answer.groups.len()) " are shown" }
            "."
        }
        table.grid.sortable #groups {
            thead { tr { th { (filter.group) } th { "Findings" } th { "Open" } th { "Worst" } th { "Last observed (UTC)" } @if can_act { th { "All of them" } } } }
            tbody {
                @for (n, g) in answer.groups.iter().enumerate() {
                    @let view = view_of(&g.key);
                    tr data-group=(t(&g.key)) {
                        td.summary { a href=(format!("/findings?{}", view.query())) { (t(&g.key)) } }
                        td.num { (g.count) }
                        td.num { (g.open) }
                        td { (severity(output::severity(g.worst))) }
                        td { (time(g.last_observed_unix_ms)) }
                        @if can_act { td { (bulk_form(&s, BulkTarget::View(&view), &filter, &format!("{}", g.count), &format!("bulk-{n}"))) } }
                    }
                }
            }
        }
        @if answer.groups.is_empty() { p.empty #queue-empty { "No findings." } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Findings,
        "Findings, grouped",
        body,
    ))
}

/// Most groups a grouped view shows.
const GROUPS: u32 = 500;

#[derive(Deserialize)]
pub(crate) struct BulkForm {
    #[serde(default)]
    ids: String,
    /// A view's query: every finding it selects.
    #[serde(default)]
    view: String,
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

/// A view's query read as the findings page reads it (never another site's
/// address); one it cannot read is the plain queue.
fn view_of(query: &str) -> Filter {
    format!("/findings?{query}")
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| Query::<Filter>::try_from_uri(&uri).ok())
        .map(|Query(f)| f)
        .unwrap_or_default()
}

/// `POST /findings/bulk`: one state, one note, for the listed findings or
/// every finding a view selects, in one request to the collector (each
/// change is its own entry in the action log); then the view it came from,
/// saying what changed.
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
    let filter = if ids.is_empty() {
        if form.view.is_empty() {
            return Err(PageError::bad("no findings picked"));
        }
        let view = view_of(&form.view);
        let wire = view.wire()?;
        if wire == v1::FindingFilter::default() {
            return Err(PageError::bad(
                "a bulk action over a view needs a filter (it would change every finding)",
            ));
        }
        Some(wire)
    } else {
        None
    };
    let answer = c
        .client()
        .set_finding_states(v1::SetFindingStatesRequest {
            ids,
            filter,
            state: state as i32,
            note: form.note.clone(),
        })
        .await?
        .into_inner();
    let mut back = view_of(&form.back);
    back.done = format!(
        "{} finding{} now {}{}{}.",
        answer.changed,
        if answer.changed == 1 { "" } else { "s" },
        output::state(state as i32),
        if answer.unchanged > 0 {
            format!("; {} already were", answer.unchanged)
        } else {
            String::new()
        },
        match answer.refused.first() {
            Some(why) => format!("; {} refused ({why})", answer.refused.len()),
            None => String::new(),
        }
    );
    let mut query = back.query();
    let mut done = form_urlencoded::Serializer::new(String::new());
    done.append_pair("done", &back.done);
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&done.finish());
    Ok(Redirect::to(&format!("/findings?{query}")))
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
