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
        include_str!("../../../assets/console.css"),
    )
        .into_response()
}

/// `GET /static/console.js`.
pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../assets/console.js"),
    )
        .into_response()
}

/// `GET /static/favicon.svg`, and `/favicon.ico` for browsers that ask for it
/// whatever the page links (an SVG either way: every browser the console
/// supports reads one).
pub(crate) async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!("../../../assets/favicon.svg"),
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
    /// Words found in the summary, kind, host or any attribute (a path, a pid,
    /// a user, a hash, an address); searched by the collector.
    #[serde(default)]
    q: String,
    /// Group by `kind`, `host` or `summary` (counted by the collector).
    #[serde(default)]
    group: String,
    /// Exactly this summary (a "same summary" group's findings).
    #[serde(default)]
    summary: String,
    /// Sort by `severity`, `last`, `count`, `host`, `kind` or `state`
    /// (on the collector; empty: newest first).
    #[serde(default)]
    sort: String,
    /// `asc`: the sort the other way round.
    #[serde(default)]
    dir: String,
    /// What the last bulk action did (shown once; not part of the view).
    #[serde(default)]
    done: String,
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
        // "open": new or acknowledged, what the overview's cards count.
        let states: Vec<i32> = match self.state.as_str() {
            "" => Vec::new(),
            "open" => vec![
                v1::FindingState::New as i32,
                v1::FindingState::Acknowledged as i32,
            ],
            name => vec![output::finding_state(name).ok_or_else(|| unknown("state", name))? as i32],
        };
        Ok(v1::FindingFilter {
            severities: severity.map(|s| s as i32).into_iter().collect(),
            states,
            kinds: one(&self.kind).into_iter().collect(),
            host_id: self.host.clone(),
            labels: one(&self.label).into_iter().collect(),
            text: self.q.trim().to_owned(),
            summary: self.summary.clone(),
            ..Default::default()
        })
    }

    /// The collector's order for `sort` (`Id`: newest first).
    fn order(&self) -> Result<v1::FindingOrder, PageError> {
        Ok(match self.sort.as_str() {
            "" => v1::FindingOrder::Id,
            "severity" => v1::FindingOrder::Severity,
            "last" => v1::FindingOrder::LastObserved,
            "count" => v1::FindingOrder::Count,
            "host" => v1::FindingOrder::Host,
            "kind" => v1::FindingOrder::Kind,
            "state" => v1::FindingOrder::State,
            other => return Err(PageError::bad(format!("unknown sort {other:?}"))),
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
            ("q", &self.q),
            ("group", &self.group),
            ("summary", &self.summary),
            ("sort", &self.sort),
            ("dir", &self.dir),
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
        "last": output::short_time(f.last_observed_unix_ms.max(f.observed_unix_ms)),
        "last_rfc3339": output::rfc3339(f.last_observed_unix_ms.max(f.observed_unix_ms)),
        "count": f.count,
        "summary": t(&f.summary),
    })
}

/// Findings as table rows. Their state, count and last observation are
/// `data-live`: the page refreshes them in place (`view::LIVE_SECS`).
fn finding_rows(findings: &[&v1::Finding]) -> Markup {
    finding_rows_with(findings, false)
}

/// [`finding_rows`], with a box in front of each to pick it for a bulk action.
fn finding_rows_with(findings: &[&v1::Finding], pick: bool) -> Markup {
    html! {
        @for f in findings {
            tr data-finding=(f.id) {
                @if pick { td.pick { input.pick type="checkbox" value=(f.id) aria-label=(format!("pick finding {}", f.id)); } }
                td { a href=(format!("/findings/{}", f.id)) { (f.id) } }
                td { (time(f.observed_unix_ms)) }
                td { (severity(output::severity(f.severity))) }
                td { a href=(format!("/hosts/{}", f.host_id)) { (t(&f.host_id)) } }
                td.kind { (t(&f.kind)) }
                td id=(format!("f{}-state", f.id)) data-live { (output::state(f.state)) }
                td.num id=(format!("f{}-count", f.id)) data-live { (f.count) }
                td id=(format!("f{}-last", f.id)) data-live { (time(f.last_observed_unix_ms.max(f.observed_unix_ms))) }
                td.summary { (t(&f.summary)) }
            }
        }
    }
}

/// The finding queue's columns: `(title, sort key)`; a key sorts on the
/// collector when its header is clicked.
const QUEUE_COLUMNS: [(&str, &str); 9] = [
    ("ID", ""),
    ("Observed (UTC)", ""),
    ("Severity", "severity"),
    ("Host", "host"),
    ("Kind", "kind"),
    ("State", "state"),
    ("Count", "count"),
    ("Last observed", "last"),
    ("Summary", ""),
];

/// The queue: `live` is its stream of new rows; `sorting` the view whose
/// headers sort on the collector (None: plain headers); `pick` puts a box in
/// front of each row for bulk actions.
fn findings_table(
    findings: &[&v1::Finding],
    live: Option<String>,
    sorting: Option<&Filter>,
    pick: bool,
) -> Markup {
    let header = |title: &str, key: &str| match sorting {
        Some(view) if !key.is_empty() => {
            let mut next = view.clone();
            let current = view.sort == key;
            next.dir = if current && view.dir != "asc" {
                "asc".into()
            } else {
                String::new()
            };
            next.sort = key.to_owned();
            let mark = match (current, view.dir == "asc") {
                (false, _) => "",
                (true, false) => " ▼",
                (true, true) => " ▲",
            };
            html! { th aria-sort=[current.then_some(if view.dir == "asc" { "ascending" } else { "descending" })] {
                a.sort href=(format!("/findings?{}", next.query())) data-sort=(key) { (title) (mark) }
            } }
        }
        _ => html! { th { (title) } },
    };
    html! {
        table.grid #queue data-stream=[live] data-pick=[pick.then_some("true")] {
            thead { tr {
                @if pick { th.pick { input #pick-all type="checkbox" aria-label="pick every finding shown"; } }
                @for (title, key) in QUEUE_COLUMNS { (header(title, key)) }
            } }
            tbody { (finding_rows_with(findings, pick)) }
        }
        @if findings.is_empty() { p.empty #queue-empty { "No findings." } }
    }
}

mod actions;
mod evidence;
mod findings;
mod hosts;
mod hunts;
mod incidents;
mod overview;
mod search;

pub(crate) use actions::*;
pub(crate) use evidence::*;
pub(crate) use findings::*;
pub(crate) use hosts::*;
pub(crate) use hunts::*;
pub(crate) use incidents::*;
pub(crate) use overview::*;
pub(crate) use search::*;

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
    fn hosts_are_ordered_by_their_worst_open_finding_then_by_how_many() {
        let f = [
            finding(1, "many-medium", "k", v1::Severity::Medium, 1),
            finding(2, "many-medium", "k", v1::Severity::Medium, 1),
            finding(3, "many-medium", "k", v1::Severity::Medium, 1),
            finding(4, "one-critical", "k", v1::Severity::Critical, 1),
            finding(5, "two-high", "k", v1::Severity::High, 1),
            finding(6, "two-high", "k", v1::Severity::Low, 1),
        ];
        let refs: Vec<&v1::Finding> = f.iter().collect();
        let hosts = [v1::Host {
            host_id: "two-high".into(),
            online: true,
            isolation: "isolated".into(),
            ..Default::default()
        }];
        let table = overview::worst_hosts(&refs, &hosts).into_string();
        let at = |h: &str| {
            table
                .find(&format!("data-host=\"{h}\""))
                .unwrap_or(usize::MAX)
        };
        assert!(at("one-critical") < at("two-high"), "{table}");
        assert!(at("two-high") < at("many-medium"), "{table}");
        assert!(
            table.contains("href=\"/findings?host=many-medium&amp;state=open\">3<"),
            "{table}"
        );
        assert!(table.contains("isolated"), "{table}");
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
            q: " /dev/shm  kworker ".into(),
            group: "kind".into(),
            summary: "same summary".into(),
            sort: "severity".into(),
            dir: "asc".into(),
            done: "2 findings now resolved.".into(),
        };
        assert_eq!(
            filter.wire().expect("known names"),
            v1::FindingFilter {
                severities: vec![v1::Severity::High as i32],
                states: vec![v1::FindingState::FalsePositive as i32],
                kinds: vec!["process.*".into()],
                host_id: "web-01".into(),
                labels: vec!["zone=PCI".into()],
                text: "/dev/shm  kworker".into(),
                summary: "same summary".into(),
                ..Default::default()
            }
        );
        assert_eq!(filter.order().ok(), Some(v1::FindingOrder::Severity));
        // The view's URL keeps everything but what the last action did.
        let query = filter.query();
        assert!(
            query.contains("sort=severity")
                && query.contains("dir=asc")
                && query.contains("summary=same+summary"),
            "{query}"
        );
        assert!(!query.contains("done"), "{query}");
        let odd_sort = Filter {
            sort: "colour".into(),
            ..Default::default()
        };
        assert!(odd_sort.order().is_err());
        // "open" is new or acknowledged.
        let open = Filter {
            state: "open".into(),
            ..Default::default()
        };
        assert_eq!(
            open.wire().expect("open").states,
            [
                v1::FindingState::New as i32,
                v1::FindingState::Acknowledged as i32
            ]
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
