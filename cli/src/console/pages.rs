//! The console's pages and the forms they post. Each handler makes the same
//! Operator API calls the matching `bannin` command makes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use bannin_proto::v1;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{self, Session};
use super::view::{self, Nav, PageError, csrf_field, facts, page, severity, time};
use super::{Role, Shared};
use crate::output;

type Page = Result<Markup, PageError>;

/// Findings read per call while paging through the queue.
const PAGE: u32 = 10_000;
/// Rows a findings table shows (newest first).
const SHOWN: usize = 500;

/// Text from a peer (an agent, a log line, a file name), made inert: control
/// characters and bidi overrides shown visibly (`\x1b`, `\u{202e}`) rather
/// than reordering what the responder reads. maud then escapes it for HTML.
fn t(text: &str) -> std::borrow::Cow<'_, str> {
    output::inert(text)
}

/// [`t`] line by line, keeping the line breaks (for `pre` blocks).
fn lines(text: &str) -> String {
    text.lines().map(t).collect::<Vec<_>>().join("\n")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------
// Login, static files
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    #[serde(default)]
    token: String,
}

/// `GET /login?token=…`: the one-time token becomes a session cookie.
pub(crate) async fn login(State(c): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    match c.auth.log_in(&q.token) {
        Ok(id) => {
            tracing::info!(operator = %c.operator.name, "console login");
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, auth::set_cookie(&id)),
                    (header::LOCATION, "/".to_owned()),
                ],
            )
                .into_response()
        }
        Err(r) => {
            tracing::warn!(reason = %r, "console login refused");
            (StatusCode::FORBIDDEN, view::refusal_page(&r.to_string())).into_response()
        }
    }
}

/// `POST /logout`.
pub(crate) async fn logout(State(c): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    c.auth
        .log_out(headers.get(header::COOKIE).and_then(|v| v.to_str().ok()));
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                auth::COOKIE
            ),
        )],
        view::refusal_page("Logged out. Restart `bannin console` for a new login link."),
    )
        .into_response()
}

/// `GET /static/console.css`.
pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/console.css"),
    )
        .into_response()
}

/// `GET /static/console.js`.
pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../assets/console.js"),
    )
        .into_response()
}

/// Anything else.
pub(crate) async fn not_found() -> PageError {
    PageError {
        status: StatusCode::NOT_FOUND,
        message: "no such page".into(),
    }
}

// ---------------------------------------------------------------------------
// Reading the queue
// ---------------------------------------------------------------------------

/// What a backward scan of the queue found.
struct Scan {
    /// The findings kept, newest first.
    found: Vec<v1::Finding>,
    /// The newest finding's id (0: no findings at all): where a live stream starts.
    last_id: u64,
    /// Findings read.
    scanned: usize,
    /// Whether the scan reached the oldest finding.
    complete: bool,
}

/// Reads the queue newest first, a page at a time, keeping what `keep` passes,
/// until `want` are kept, `max_scan` were read, or the queue ends: a page's
/// cost follows what it shows, not how long the queue is.
async fn scan_newest(
    c: &Shared,
    want: usize,
    max_scan: usize,
    mut keep: impl FnMut(&v1::Finding) -> bool,
) -> Result<Scan, PageError> {
    let mut client = c.client();
    let mut scan = Scan {
        found: Vec::new(),
        last_id: 0,
        scanned: 0,
        complete: false,
    };
    let mut before = 0;
    loop {
        let page = client
            .list_findings(v1::ListFindingsRequest {
                newest_first: true,
                before_id: before,
                limit: PAGE,
                ..Default::default()
            })
            .await?
            .into_inner()
            .findings;
        let n = page.len();
        for f in page {
            scan.scanned += 1;
            scan.last_id = scan.last_id.max(f.id);
            before = f.id;
            if keep(&f) {
                scan.found.push(f);
                if scan.found.len() >= want {
                    return Ok(scan);
                }
            }
        }
        if n < PAGE as usize || before <= 1 {
            scan.complete = true;
            return Ok(scan);
        }
        if scan.scanned >= max_scan {
            return Ok(scan);
        }
    }
}

/// The overview's counts read at most this many findings (newest first).
const OVERVIEW_SCAN: usize = 100_000;

async fn one_finding(c: &Shared, id: u64) -> Result<v1::Finding, PageError> {
    Ok(c.client()
        .get_finding(v1::GetFindingRequest { id })
        .await?
        .into_inner())
}

async fn hosts_list(c: &Shared) -> Result<Vec<v1::Host>, PageError> {
    Ok(c.client()
        .list_hosts(v1::ListHostsRequest {})
        .await?
        .into_inner()
        .hosts)
}

/// The findings page's filters (also the live stream's).
#[derive(Deserialize, Default, Debug, Clone)]
pub(crate) struct Filter {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    state: String,
    /// `key=value`: the finding's host carries this label.
    #[serde(default)]
    label: String,
    /// For the stream: only findings after this id.
    #[serde(default)]
    since: u64,
}

impl Filter {
    /// The filter as the collector applies it (to the page and the stream);
    /// a severity or state the console does not know is a bad request.
    fn wire(&self) -> Result<v1::FindingFilter, PageError> {
        let one = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let unknown = |what: &str, value: &str| PageError {
            status: StatusCode::BAD_REQUEST,
            message: format!("unknown {what} {value:?}"),
        };
        let severity = match self.severity.as_str() {
            "" => None,
            name => Some(v1::Severity::from_name(name).ok_or_else(|| unknown("severity", name))?),
        };
        let state = match self.state.as_str() {
            "" => None,
            name => Some(output::finding_state(name).ok_or_else(|| unknown("state", name))?),
        };
        Ok(v1::FindingFilter {
            severities: severity.map(|s| s as i32).into_iter().collect(),
            states: state.map(|s| s as i32).into_iter().collect(),
            kinds: one(&self.kind).into_iter().collect(),
            host_id: self.host.clone(),
            labels: one(&self.label).into_iter().collect(),
        })
    }

    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("severity", &self.severity),
            ("kind", &self.kind),
            ("host", &self.host),
            ("state", &self.state),
            ("label", &self.label),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// A finding as the live queue's script receives it.
fn finding_row_json(f: &v1::Finding) -> Value {
    json!({
        "id": f.id,
        "host_id": f.host_id,
        "kind": t(&f.kind),
        "severity": output::severity(f.severity),
        "state": output::state(f.state),
        "observed": output::short_time(f.observed_unix_ms),
        "observed_rfc3339": output::rfc3339(f.observed_unix_ms),
        "count": f.count,
        "summary": t(&f.summary),
    })
}

fn finding_rows(findings: &[&v1::Finding]) -> Markup {
    html! {
        @for f in findings {
            tr data-finding=(f.id) {
                td { a href=(format!("/findings/{}", f.id)) { (f.id) } }
                td { (time(f.observed_unix_ms)) }
                td { (severity(output::severity(f.severity))) }
                td { a href=(format!("/hosts/{}", f.host_id)) { (t(&f.host_id)) } }
                td.kind { (t(&f.kind)) }
                td { (output::state(f.state)) }
                td.num { (f.count) }
                td.summary { (t(&f.summary)) }
            }
        }
    }
}

fn findings_table(findings: &[&v1::Finding], live: Option<String>) -> Markup {
    html! {
        table.grid #queue data-stream=[live] {
            thead { tr { th { "ID" } th { "Observed (UTC)" } th { "Severity" } th { "Host" } th { "Kind" } th { "State" } th { "Count" } th { "Summary" } } }
            tbody { (finding_rows(findings)) }
        }
        @if findings.is_empty() { p.empty #queue-empty { "No findings." } }
    }
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// `GET /`: counts, and two charts drawn as SVG by the page itself.
pub(crate) async fn overview(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let scan = scan_newest(&c, usize::MAX, OVERVIEW_SCAN, |_| true).await?;
    let findings = scan.found;
    let hosts = hosts_list(&c).await?;
    let incidents = c
        .client()
        .list_incidents(v1::ListIncidentsRequest {})
        .await?
        .into_inner()
        .incidents;
    let open: Vec<&v1::Finding> = findings
        .iter()
        .filter(|f| matches!(output::state(f.state), "new" | "acknowledged"))
        .collect();
    let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &open {
        *by_severity.entry(output::severity(f.severity)).or_default() += 1;
    }
    let online = hosts.iter().filter(|h| h.online).count();
    let isolated = hosts.iter().filter(|h| h.isolation == "isolated").count();
    let open_incidents = incidents.iter().filter(|i| i.status != "closed").count();
    let body = html! {
        @if !scan.complete {
            p.note { "Counts and charts over the newest " (scan.scanned) " findings." }
        }
        section.cards {
            @for sev in SEVERITIES {
                a.card href=(format!("/findings?severity={sev}&state=new")) {
                    span.count data-severity=(sev) { (by_severity.get(sev).copied().unwrap_or(0)) }
                    (severity(sev))
                }
            }
            a.card href="/hosts" { span.count #hosts-online { (online) " / " (hosts.len()) } span { "hosts online" } }
            a.card href="/hosts" { span.count { (isolated) } span { "isolated" } }
            a.card href="/incidents" { span.count { (open_incidents) } span { "open incidents" } }
        }
        h2 { "Findings per hour, last 24 hours" }
        (hourly_chart(&findings, now_ms()))
        h2 { "Open findings per host" }
        (host_chart(&open))
    };
    Ok(page(&c.operator, &s.csrf, Nav::Overview, "Overview", body))
}

/// Stacked bars: findings observed per hour over the last 24 hours, by severity.
fn hourly_chart(findings: &[v1::Finding], now: i64) -> Markup {
    const HOUR: i64 = 3_600_000;
    let start = (now / HOUR - 23) * HOUR;
    let mut bins = [[0usize; 5]; 24];
    for f in findings {
        if f.observed_unix_ms < start {
            continue;
        }
        let bin = ((f.observed_unix_ms - start) / HOUR).clamp(0, 23) as usize;
        if let Some(k) = SEVERITIES
            .iter()
            .position(|s| *s == output::severity(f.severity))
        {
            bins[bin][k] += 1;
        }
    }
    let max = bins
        .iter()
        .map(|b| b.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (720.0_f64, 180.0_f64, 36.0_f64, 20.0_f64);
    let bar = (w - left) / 24.0;
    let scale = (h - bottom - 8.0) / max as f64;
    html! {
        figure.chart {
            svg #chart-hourly viewBox=(format!("0 0 {w} {h}")) role="img" aria-label="Findings per hour by severity over the last 24 hours" {
                text x="0" y="12" class="axis" { (max) }
                text x="0" y=(h - bottom) class="axis" { "0" }
                line x1=(left) y1=(h - bottom) x2=(w) y2=(h - bottom) class="axis-line" {}
                @for (i, bin) in bins.iter().enumerate() {
                    @let x = left + i as f64 * bar;
                    @for (y, height, k, n) in stack(bin, h - bottom, scale) {
                        rect x=(format!("{:.1}", x + 2.0)) y=(format!("{y:.1}")) width=(format!("{:.1}", bar - 4.0)) height=(format!("{height:.1}")) class=(format!("fill-{}", SEVERITIES[k])) {
                            title { (n) " " (SEVERITIES[k]) ", " (crate::output::short_time(start + i as i64 * HOUR)) " UTC" }
                        }
                    }
                    @if i % 3 == 0 {
                        text x=(format!("{:.1}", x + 2.0)) y=(h - 4.0) class="axis" { (crate::output::short_time(start + i as i64 * HOUR).get(11..16).unwrap_or("")) }
                    }
                }
            }
            figcaption.legend {
                @for sev in SEVERITIES { span class=(format!("key fill-{sev}")) {} (sev) " " }
            }
        }
    }
}

/// One bar's segments, bottom up (most severe at the bottom): (y, height, severity index, count).
fn stack(bin: &[usize; 5], floor: f64, scale: f64) -> Vec<(f64, f64, usize, usize)> {
    let mut y = floor;
    let mut out = Vec::new();
    for (k, n) in bin.iter().enumerate() {
        if *n > 0 {
            let height = *n as f64 * scale;
            y -= height;
            out.push((y, height, k, *n));
        }
    }
    out
}

/// Horizontal bars: open findings per host (the ten hosts with most).
fn host_chart(open: &[&v1::Finding]) -> Markup {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for f in open {
        *per.entry(f.host_id.as_str()).or_default() += 1;
    }
    let mut rows: Vec<(&str, usize)> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.truncate(10);
    let max = rows.first().map_or(1, |r| r.1.max(1));
    html! {
        @if rows.is_empty() { p.empty { "No open findings." } }
        @else {
            svg #chart-hosts viewBox=(format!("0 0 720 {}", rows.len() * 24 + 4)) role="img" aria-label="Open findings per host" {
                @for (i, (host, n)) in rows.iter().enumerate() {
                    @let y = i * 24 + 2;
                    text x="0" y=(y + 15) class="axis" { (host) }
                    rect x="180" y=(y + 3) height="16" width=(format!("{:.1}", 480.0 * *n as f64 / max as f64)) class="fill-bar" {}
                    text x=(format!("{:.1}", 186.0 + 480.0 * *n as f64 / max as f64)) y=(y + 15) class="axis" { (n) }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

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
            (sel("State", &filter.state, &["new", "acknowledged", "resolved", "false_positive"]))
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
                (incident_severity_select("high"))
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

// ---------------------------------------------------------------------------
// Hosts
// ---------------------------------------------------------------------------

fn sensors_summary(h: &v1::Host) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &h.sensors {
        *counts.entry(s.state.as_str()).or_default() += 1;
    }
    let bad: Vec<String> = h
        .sensors
        .iter()
        .filter(|s| s.state != "ok" && s.state != "disabled")
        .map(|s| format!("{} {}", s.name, s.state))
        .collect();
    let all = counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    t(&if bad.is_empty() {
        all
    } else {
        format!("{} ({all})", bad.join(", "))
    })
    .into_owned()
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t(&l.join(" ")).into_owned()
}

/// `GET /hosts`.
pub(crate) async fn hosts(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let hosts = hosts_list(&c).await?;
    let body = html! {
        table.grid #hosts {
            thead { tr { th { "Host" } th { "Hostname" } th { "Status" } th { "Isolation" } th { "Sensors" } th { "Labels" } th { "Last seen (UTC)" } th { "Agent" } } }
            tbody {
                @for h in &hosts {
                    tr data-host=(t(&h.host_id)) {
                        td { a href=(format!("/hosts/{}", h.host_id)) { (t(&h.host_id)) } }
                        td { (t(&h.hostname)) }
                        td { @if h.revoked { span.badge.bad { "revoked" } } @else if h.online { span.badge.ok { "online" } } @else { span.badge { "offline" } } }
                        td { span class=(if h.isolation == "isolated" { "badge bad" } else { "badge" }) { (h.isolation) } }
                        td { (sensors_summary(h)) }
                        td { (labels_text(&h.labels)) }
                        td { (time(h.last_seen_unix_ms)) }
                        td { (t(&h.agent_version)) }
                    }
                }
            }
        }
        @if hosts.is_empty() { p.empty { "No host has connected yet." } }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Hosts, "Hosts", body))
}

const QUESTIONS: [(&str, &str); 9] = [
    ("processes", "Processes"),
    ("connections", "Network connections"),
    ("listeners", "Listening sockets"),
    ("logins", "Recent logins"),
    ("users", "User accounts"),
    ("services", "Services"),
    ("stat", "stat of a path"),
    ("hash", "SHA-256 of a file"),
    ("ls", "Directory listing"),
];

/// `GET /hosts/{id}`.
pub(crate) async fn host(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let hosts = hosts_list(&c).await?;
    let h = hosts
        .into_iter()
        .find(|h| h.host_id == id)
        .ok_or_else(|| PageError {
            status: StatusCode::NOT_FOUND,
            message: format!("no host {id}"),
        })?;
    let found = c
        .client()
        .list_findings(v1::ListFindingsRequest {
            newest_first: true,
            limit: 100,
            filter: Some(v1::FindingFilter {
                host_id: id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings;
    let mine: Vec<&v1::Finding> = found.iter().collect();
    let events = c
        .client()
        .list_events(v1::ListEventsRequest {
            host_id: id.clone(),
            since_unix_ms: now_ms() - 3_600_000,
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .events;
    let commands = c
        .client()
        .list_commands(v1::ListCommandsRequest {
            host_id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands;
    let can_act = c.operator.role >= Role::Responder;
    let sensors_bad = h
        .sensors
        .iter()
        .any(|x| x.state != "ok" && x.state != "disabled");
    let body = html! {
        (facts([
            ("Hostname", html! { (t(&h.hostname)) }),
            ("Status", html! { span #host-status { @if h.revoked { "revoked" } @else if h.online { "online" } @else { "offline" } } }),
            ("Isolation", html! { span #isolation class=(if h.isolation == "not isolated" { "badge" } else { "badge bad" }) { (h.isolation) } }),
            ("OS", html! { (t(&h.os)) " · " (t(&h.kernel)) }),
            ("Addresses", html! { (t(&h.addresses.join(", "))) }),
            ("Connected from", html! { (t(&h.peer_address)) }),
            ("Agent", html! { (t(&h.agent_version)) }),
            ("First seen", time(h.first_seen_unix_ms)),
            ("Last seen", time(h.last_seen_unix_ms)),
            ("Labels", html! { (labels_text(&h.labels)) }),
            ("Spool", html! { (h.spool_bytes) " bytes" }),
        ]))
        @if can_act {
            h2 { "Response" }
            div.response {
                @if h.isolation == "isolated" || h.isolation == "pending isolation" {
                    form #release-form.danger method="post" action=(format!("/hosts/{id}/command")) {
                        (csrf_field(&s.csrf))
                        input type="hidden" name="verb" value="release";
                        h3 { "Release " (id) " from isolation" }
                        label { "Reason (required) " input type="text" name="reason" required size="50"; }
                        label { "Type the host id " strong { (id) } " to confirm " input type="text" name="confirm" required autocomplete="off"; }
                        button type="submit" #release-button { "Release " (id) }
                    }
                } @else {
                    form #isolate-form.danger method="post" action=(format!("/hosts/{id}/command")) {
                        (csrf_field(&s.csrf))
                        input type="hidden" name="verb" value="isolate";
                        h3 { "Isolate " (id) " from the network" }
                        p.note { "Only the collector stays reachable. The agent answers commands while isolated." }
                        label { "Reason (required) " input type="text" name="reason" required size="50"; }
                        label { "Type the host id " strong { (id) } " to confirm " input type="text" name="confirm" required autocomplete="off"; }
                        button type="submit" #isolate-button { "Isolate " (id) }
                    }
                }
                form #snapshot-form method="post" action=(format!("/hosts/{id}/command")) {
                    (csrf_field(&s.csrf))
                    input type="hidden" name="verb" value="snapshot";
                    h3 { "Forensic snapshot" }
                    label { "Files to include, one absolute path per line (the snapshot always takes the volatile state) " textarea name="files" rows="3" cols="60" {} }
                    label { "Reason (required) " input type="text" name="reason" required size="50"; }
                    button type="submit" #snapshot-button { "Take snapshot" }
                }
            }
            h2 { "Triage" }
            form #triage-form method="post" action=(format!("/hosts/{id}/triage")) {
                (csrf_field(&s.csrf))
                label { "Question "
                    select name="question" #triage-question {
                        @for (q, label) in QUESTIONS { option value=(q) { (label) } }
                    }
                }
                label { "Path (stat, hash, ls) " input type="text" name="path" size="40"; }
                button type="submit" #triage-button { "Ask" }
            }
        } @else {
            p.note #no-response { "Your role (" (c.operator.role.as_str()) ") can read this host; isolation, snapshots and triage need a responder." }
        }
        h2 { "Findings" }
        (findings_table(&mine, None))
        h2 { "Commands" }
        (commands_table(&commands))
        details.sensors open[sensors_bad] {
            summary { h2.inline { "Sensors: " (sensors_summary(&h)) } }
            table.grid {
                thead { tr { th { "Sensor" } th { "State" } th { "Detail" } } }
                tbody { @for x in &h.sensors { tr { td { (t(&x.name)) } td { span class=(if x.state == "ok" { "badge ok" } else if x.state == "disabled" { "badge" } else { "badge bad" }) { (t(&x.state)) } } td { (t(&x.detail)) } } } }
            }
        }
        h2 { "Recent telemetry (last hour, newest first)" }
        table.grid #events {
            thead { tr { th { "Observed (UTC)" } th { "Kind" } th { "Attributes" } } }
            tbody {
                @for e in events.iter().rev().take(50) {
                    @if let Some(ev) = &e.event {
                        tr {
                            td { (time(ev.observed_unix_ms)) }
                            td.kind { (t(&ev.kind)) }
                            td.value { (attributes_text(&ev.attributes)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Hosts,
        &format!("Host {id}"),
        body,
    ))
}

fn attributes_text(a: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t(&v.join("  ")).into_owned()
}

#[derive(Deserialize)]
pub(crate) struct TriageForm {
    question: String,
    #[serde(default)]
    path: String,
}

/// Queues a command and waits (up to `wait`) until the host has answered.
async fn issue_and_wait(
    c: &Shared,
    host: &str,
    verb: &str,
    arguments: BTreeMap<String, String>,
    reason: String,
    wait: Duration,
) -> Result<v1::CommandRecord, PageError> {
    let mut client = c.client();
    let mut last = client
        .issue_command(v1::IssueCommandRequest {
            host_id: host.to_owned(),
            verb: verb.to_owned(),
            arguments,
            reason,
            expires_in_secs: 0,
        })
        .await?
        .into_inner();
    let deadline = tokio::time::Instant::now() + wait;
    while !finished(&last.state) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(found) = client
            .list_commands(v1::ListCommandsRequest {
                host_id: host.to_owned(),
                command_id: last.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .commands
            .into_iter()
            .next()
        {
            last = found;
        }
    }
    Ok(last)
}

fn finished(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "expired")
}

/// `POST /hosts/{id}/triage`: asks, waits up to a minute, and shows the answer as a table.
pub(crate) async fn triage(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<TriageForm>,
) -> Page {
    if !QUESTIONS.iter().any(|(q, _)| *q == form.question) {
        return Err(PageError::bad(format!(
            "unknown question {:?}",
            form.question
        )));
    }
    let mut arguments = BTreeMap::from([("question".to_owned(), form.question.clone())]);
    if !form.path.trim().is_empty() {
        arguments.insert("path".to_owned(), form.path.trim().to_owned());
    }
    let record = issue_and_wait(
        &c,
        &id,
        "triage",
        arguments,
        String::new(),
        Duration::from_secs(60),
    )
    .await?;
    let title = format!("{} on {id}", form.question);
    let body = if record.state != "succeeded" {
        html! {
            p.error #triage-error { "The host did not answer: " (record.state) " " (t(&record.result)) }
            p { a href=(format!("/commands/{}", record.id)) { "Command " (record.id) } }
        }
    } else {
        let answer: Value = serde_json::from_str(&record.result)
            .map_err(|e| PageError::bad(format!("the agent's answer is not JSON: {e}")))?;
        html! {
            p { a href=(format!("/hosts/{id}")) { "Back to " (id) } " · command " a href=(format!("/commands/{}", record.id)) { (record.id) } }
            (rows_table(&answer["rows"]))
            @if answer["truncated"] == true { p.note { "Truncated: " (answer["total"]) " rows in all." } }
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Hosts, &title, body))
}

/// An array of JSON objects as a table, columns from every row.
fn rows_table(rows: &Value) -> Markup {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut keys: Vec<&str> = Vec::new();
    for r in rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
    }
    let columns = output::column_order(keys.into_iter());
    html! {
        table.grid #triage-rows {
            thead { tr { @for c in &columns { th { (c.replace('_', " ")) } } } }
            tbody {
                @for r in rows {
                    tr { @for c in &columns { td { (output::cell(c, &r[*c])) } } }
                }
            }
        }
        p.note { (rows.len()) " rows" }
    }
}

#[derive(Deserialize)]
pub(crate) struct CommandForm {
    verb: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    files: String,
}

/// `POST /hosts/{id}/command`: isolate, release (reason and the host id typed
/// to confirm), snapshot (reason, files); then the command's page.
pub(crate) async fn command(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Redirect, PageError> {
    let mut arguments = BTreeMap::new();
    match form.verb.as_str() {
        "isolate" | "release" => {
            if form.confirm.trim() != id {
                return Err(PageError::bad(format!(
                    "to {} a host, type its id ({id}) in the confirmation box",
                    form.verb
                )));
            }
        }
        "snapshot" => {
            let files: Vec<&str> = form
                .files
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if !files.is_empty() {
                arguments.insert("files".to_owned(), files.join("\n"));
            }
        }
        other => return Err(PageError::bad(format!("unknown command {other:?}"))),
    }
    if form.reason.trim().is_empty() {
        return Err(PageError::bad(format!("{} needs a reason", form.verb)));
    }
    let record = c
        .client()
        .issue_command(v1::IssueCommandRequest {
            host_id: id,
            verb: form.verb,
            arguments,
            reason: form.reason.trim().to_owned(),
            expires_in_secs: 0,
        })
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/commands/{}", record.id)))
}

fn commands_table(commands: &[v1::CommandRecord]) -> Markup {
    html! {
        table.grid.commands {
            thead { tr { th { "ID" } th { "Issued (UTC)" } th { "Host" } th { "Verb" } th { "State" } th { "Operator" } th { "Reason" } th { "Result" } } }
            tbody {
                @for x in commands.iter().rev() {
                    tr data-command=(x.id) {
                        td { a href=(format!("/commands/{}", x.id)) { (x.id) } }
                        td { (time(x.created_unix_ms)) }
                        td { a href=(format!("/hosts/{}", x.host_id)) { (t(&x.host_id)) } }
                        td { (t(&x.verb)) }
                        td { span class=(format!("badge st-{}", x.state)) { (x.state) } }
                        td { (t(&x.operator)) }
                        td { (t(&x.reason)) }
                        td.value { (t(&x.result.chars().take(200).collect::<String>())) }
                    }
                }
            }
        }
        @if commands.is_empty() { p.empty { "No commands." } }
    }
}

/// How many commands the queue page shows: the newest (a long history is
/// read through `bannin commands`).
const COMMANDS_SHOWN: u32 = 500;

/// `GET /commands`: the queue, every host, the newest [`COMMANDS_SHOWN`].
pub(crate) async fn commands(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let commands = c
        .client()
        .list_commands(v1::ListCommandsRequest {
            limit: COMMANDS_SHOWN,
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands;
    let title = if commands.len() == COMMANDS_SHOWN as usize {
        format!("Commands (the newest {COMMANDS_SHOWN}; `bannin commands` lists them all)")
    } else {
        "Commands".to_owned()
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Commands,
        &title,
        commands_table(&commands),
    ))
}

async fn find_command(c: &Shared, id: &str) -> Result<v1::CommandRecord, PageError> {
    c.client()
        .list_commands(v1::ListCommandsRequest {
            host_id: String::new(),
            command_id: id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands
        .into_iter()
        .next()
        .ok_or_else(|| PageError {
            status: StatusCode::NOT_FOUND,
            message: format!("no command {id}"),
        })
}

/// `GET /commands/{id}`: one command; the script follows its state until it finishes.
pub(crate) async fn command_page(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let x = find_command(&c, &id).await?;
    let done = finished(&x.state);
    let body = html! {
        (facts([
            ("Host", html! { a href=(format!("/hosts/{}", x.host_id)) { (t(&x.host_id)) } }),
            ("Verb", html! { (t(&x.verb)) }),
            ("State", html! { span #command-state data-command=(x.id) data-finished=(done) class=(format!("badge st-{}", x.state)) { (x.state) } }),
            ("Operator", html! { (t(&x.operator)) }),
            ("Reason", html! { (t(&x.reason)) }),
            ("Arguments", html! { (attributes_text(&x.arguments)) }),
            ("Issued", time(x.created_unix_ms)),
            ("Delivered", time(x.delivered_unix_ms)),
            ("Finished", time(x.finished_unix_ms)),
            ("Expires", time(x.expires_unix_ms)),
        ]))
        @if !done { p.note #command-progress aria-live="polite" { "Waiting for " (t(&x.host_id)) "… this page follows the command until the host answers." } }
        h2 { "Result" }
        pre #command-result { (lines(&x.result)) }
        @if x.verb == "snapshot" && x.state == "succeeded" { p { a href="/evidence" { "The snapshot is in Evidence" } } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Commands,
        &format!("Command {id}"),
        body,
    ))
}

/// `GET /api/commands/{id}`: the command as JSON (what the page's script polls).
pub(crate) async fn command_json(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let x = find_command(&c, &id).await?;
    Ok(axum::Json(output::command_json(&x)).into_response())
}

// ---------------------------------------------------------------------------
// Incidents
// ---------------------------------------------------------------------------

const INCIDENT_SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const INCIDENT_STATUSES: [&str; 5] = ["open", "contained", "eradicated", "recovered", "closed"];

fn incident_severity_select(selected: &str) -> Markup {
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

// ---------------------------------------------------------------------------
// Evidence
// ---------------------------------------------------------------------------

/// `GET /evidence`.
pub(crate) async fn evidence(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let items = c
        .client()
        .list_evidence(v1::ListEvidenceRequest {})
        .await?
        .into_inner()
        .evidence;
    let body = html! {
        table.grid #evidence {
            thead { tr { th { "ID" } th { "Received (UTC)" } th { "Host" } th { "Operator" } th { "Reason" } th { "Size" } th { "SHA-256" } th { "State" } } }
            tbody {
                @for e in items.iter().rev() {
                    tr {
                        td { a href=(format!("/evidence/{}", e.id)) { (e.id) } }
                        td { (time(e.received_unix_ms)) }
                        td { (t(&e.host_id)) }
                        td { (t(&e.operator)) }
                        td { (t(&e.reason)) }
                        td.num { (e.size) }
                        td.hash { (e.sha256) }
                        td { (e.state) }
                    }
                }
            }
        }
        @if items.is_empty() { p.empty { "No evidence held." } }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Evidence, "Evidence", body))
}

fn evidence_body(
    c: &Shared,
    s: &Session,
    d: &v1::EvidenceDetail,
    verified: Option<(bool, &str)>,
) -> Markup {
    let r = d.record.clone().unwrap_or_default();
    let manifest = serde_json::from_str::<Value>(&d.manifest_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| d.manifest_json.clone());
    html! {
        @if let Some((ok, result)) = verified {
            p #verify-result class=(if ok { "ok" } else { "error" }) { @if ok { "Verified: " } @else { "NOT verified: " } (result) }
        }
        (facts([
            ("SHA-256", html! { span.hash { (r.sha256) } }),
            ("Size", html! { (r.size) " bytes" }),
            ("Host", html! { (t(&r.host_id)) }),
            ("Command", html! { a href=(format!("/commands/{}", r.command_id)) { (r.command_id) } }),
            ("Collected by", html! { (t(&r.operator)) }),
            ("Reason", html! { (t(&r.reason)) }),
            ("Collected", html! { (t(&r.collected_started)) " – " (t(&r.collected_finished)) }),
            ("Received", time(r.received_unix_ms)),
            ("Last verified", time(r.verified_unix_ms)),
            ("State", html! { (r.state) }),
        ]))
        form.inline method="post" action=(format!("/evidence/{}/verify", r.id)) {
            (csrf_field(&s.csrf))
            button type="submit" #verify-evidence { "Verify the stored bytes" }
        }
        @if c.operator.role >= Role::Admin {
            form #export-form method="post" action=(format!("/evidence/{}/export", r.id)) {
                (csrf_field(&s.csrf))
                h3 { "Export (recorded in the chain of custody)" }
                label { "Recipient " input type="text" name="recipient" required; }
                label { "Reason " input type="text" name="reason" required size="40"; }
                button type="submit" { "Export bundle" }
            }
        }
        h2 { "Chain of custody" }
        (actions_table(&d.custody))
        h2 { "Manifest" }
        pre.manifest { (lines(&manifest)) }
    }
}

/// `GET /evidence/{id}`.
pub(crate) async fn evidence_item(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let d = c
        .client()
        .show_evidence(v1::EvidenceRequest { id: id.clone() })
        .await?
        .into_inner();
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Evidence,
        &format!("Evidence {id}"),
        evidence_body(&c, &s, &d, None),
    ))
}

/// `POST /evidence/{id}/verify`.
pub(crate) async fn verify_evidence(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let d = c
        .client()
        .verify_evidence(v1::EvidenceRequest { id: id.clone() })
        .await?
        .into_inner();
    let verified = Some((d.verified, d.verify_result.as_str()));
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Evidence,
        &format!("Evidence {id}"),
        evidence_body(&c, &s, &d, verified),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    recipient: String,
    reason: String,
}

/// `POST /evidence/{id}/export` (admin): the bundle as a download, after its
/// SHA-256 was checked against the record.
pub(crate) async fn export_evidence(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<ExportForm>,
) -> Result<Response, PageError> {
    let mut stream = c
        .client()
        .export_evidence(v1::ExportEvidenceRequest {
            id: id.clone(),
            recipient: form.recipient,
            reason: form.reason,
        })
        .await?
        .into_inner();
    let mut record = None;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if let Some(d) = chunk.detail {
            record = d.record;
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let record = record.ok_or_else(|| PageError::bad("the export carried no record"))?;
    let sha = bannin_proto::vocab::sha256_hex(&bytes);
    if sha != record.sha256 || bytes.len() as u64 != record.size {
        return Err(PageError {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "the exported bytes do not match the record ({} bytes, SHA-256 {sha}; the record says {} bytes, {})",
                bytes.len(),
                record.size,
                record.sha256
            ),
        });
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.tar.zst\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

fn actions_table(entries: &[v1::ActionEntry]) -> Markup {
    html! {
        table.grid.actions {
            thead { tr { th { "Seq" } th { "When (UTC)" } th { "Actor" } th { "Verb" } th { "Target" } th { "Reason" } th { "Result" } } }
            tbody {
                @for a in entries {
                    tr {
                        td.num { (a.seq) }
                        td { (time(a.at_unix_ms)) }
                        td { (t(&a.actor)) }
                        td { (t(&a.verb)) }
                        td { (t(&a.target)) }
                        td { (t(&a.reason)) }
                        td.value { (t(&a.result.chars().take(300).collect::<String>())) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    host: String,
}

/// `GET /actions?after=N`: the action log, a page at a time.
pub(crate) async fn actions(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(q): Query<ActionsQuery>,
) -> Page {
    let page_ = c
        .client()
        .list_actions(v1::ListActionsRequest {
            host_id: q.host.clone(),
            incident: 0,
            after_seq: q.after,
            limit: 200,
        })
        .await?
        .into_inner();
    let body = html! {
        form.inline method="post" action="/actions/verify" {
            (csrf_field(&s.csrf))
            button type="submit" #verify-actions { "Verify the hash chain" }
        }
        (actions_table(&page_.actions))
        @if page_.next_after_seq != 0 {
            p { a #next-page href=(format!("/actions?after={}&host={}", page_.next_after_seq, q.host)) { "Next 200 entries" } }
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Actions, "Action log", body))
}

/// `POST /actions/verify`.
pub(crate) async fn verify_actions(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
) -> Page {
    let r = c
        .client()
        .verify_actions(v1::VerifyActionsRequest {})
        .await?
        .into_inner();
    let body = html! {
        @if r.ok {
            p.ok #verify-result { "The action log verifies: " (r.entries) " entries, every hash chained." }
        } @else {
            p.error #verify-result { "The action log does NOT verify: entry " (r.first_bad_seq) ": " (t(&r.reason)) }
        }
        p { a href="/actions" { "Back to the action log" } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Actions,
        "Action log verification",
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: u64, host: &str, kind: &str, severity: v1::Severity, at: i64) -> v1::Finding {
        v1::Finding {
            id,
            host_id: host.into(),
            kind: kind.into(),
            severity: severity as i32,
            state: v1::FindingState::New as i32,
            observed_unix_ms: at,
            ..Default::default()
        }
    }

    #[test]
    fn the_hourly_chart_counts_each_severity_in_its_hour() {
        let now = 1_800_000_000_000;
        let findings = [
            finding(1, "a", "k", v1::Severity::High, now - 10_000),
            finding(2, "a", "k", v1::Severity::High, now - 20_000),
            finding(3, "b", "k", v1::Severity::Critical, now - 30_000),
            finding(4, "b", "k", v1::Severity::Low, now - 2 * 86_400_000),
        ];
        let svg = hourly_chart(&findings, now).into_string();
        assert!(svg.contains("<title>2 high, "), "{svg}");
        assert!(svg.contains("<title>1 critical, "), "{svg}");
        assert!(!svg.contains(" low, "), "older than 24 h: {svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
    }

    #[test]
    fn the_host_chart_orders_hosts_by_open_findings() {
        let f = [
            finding(1, "web-02", "k", v1::Severity::High, 1),
            finding(2, "web-01", "k", v1::Severity::High, 1),
            finding(3, "web-01", "k", v1::Severity::High, 1),
        ];
        let refs: Vec<&v1::Finding> = f.iter().collect();
        let svg = host_chart(&refs).into_string();
        let one = svg.find("web-01").unwrap_or(usize::MAX);
        let two = svg.find("web-02").unwrap_or(0);
        assert!(one < two, "{svg}");
    }

    #[test]
    fn the_page_filter_is_asked_of_the_collector_as_typed() {
        assert_eq!(
            Filter::default().wire().expect("empty"),
            v1::FindingFilter::default()
        );
        let filter = Filter {
            severity: "high".into(),
            state: "false_positive".into(),
            kind: "process.*".into(),
            host: "web-01".into(),
            label: "zone=PCI".into(),
            since: 7,
        };
        assert_eq!(
            filter.wire().expect("known names"),
            v1::FindingFilter {
                severities: vec![v1::Severity::High as i32],
                states: vec![v1::FindingState::FalsePositive as i32],
                kinds: vec!["process.*".into()],
                host_id: "web-01".into(),
                labels: vec!["zone=PCI".into()],
            }
        );
        // An unknown name from a hand-made URL is refused, not read as
        // "any" (which would show everything).
        let odd = Filter {
            severity: "urgent".into(),
            ..Default::default()
        };
        assert_eq!(
            odd.wire().map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn peer_text_is_inert_in_rows_and_in_the_live_json() {
        let mut f = finding(7, "web-01", "file.odd_name", v1::Severity::Medium, 1);
        f.summary = "x\u{202e}gpj.exe\x1b[2J <script>".into();
        let html = finding_rows(&[&f]).into_string();
        assert!(
            html.contains("x\\u{202e}gpj.exe\\x1b[2J &lt;script&gt;"),
            "{html}"
        );
        let json = finding_row_json(&f);
        assert_eq!(json["summary"], "x\\u{202e}gpj.exe\\x1b[2J <script>");
    }
}
