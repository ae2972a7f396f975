//! The console's page frame and the small pieces every page uses. Everything
//! is rendered by [`maud`], which escapes what it splices.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Operator;
use crate::output::short_time;

/// Which page of the navigation is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Findings,
    Hosts,
    Commands,
    Incidents,
    Hunts,
    Search,
    Evidence,
    Actions,
}

const NAV: [(Nav, &str, &str); 9] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Findings, "/findings", "Findings"),
    (Nav::Hosts, "/hosts", "Hosts"),
    (Nav::Commands, "/commands", "Commands"),
    (Nav::Incidents, "/incidents", "Incidents"),
    (Nav::Hunts, "/hunts", "Hunts"),
    (Nav::Search, "/search", "Search"),
    (Nav::Evidence, "/evidence", "Evidence"),
    (Nav::Actions, "/actions", "Actions"),
];

/// How often a page's `data-live` parts are read again, in seconds
/// (`liveParts` in console.js).
pub(crate) const LIVE_SECS: u32 = 10;

/// A whole page: head, navigation, who is logged in, and `body`.
pub(crate) fn page(operator: &Operator, csrf: &str, nav: Nav, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · Bannin" }
                link rel="stylesheet" href="/static/console.css";
                link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
                script src="/static/console.js" defer {}
            }
            body data-live-secs=(LIVE_SECS) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Bannin" }
                    nav aria-label="Console" {
                        @for (n, href, label) in NAV {
                            @if n == nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    span.who {
                        label.tz {
                            span.visually-hidden { "Times in " }
                            select #tz title="Show times in UTC or in this browser's time zone" {
                                option value="utc" { "UTC" }
                                option value="local" { "Local time" }
                            }
                        }
                        span #operator { (operator.name) }
                        " · "
                        span #role { (operator.role.as_str()) }
                        form.inline method="post" action="/logout" {
                            (csrf_field(csrf))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
                footer { "Collector " (operator.collector_version) " · every action is logged as " (operator.name) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub(crate) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A severity with its colour and its name (the colour is never the only cue).
pub(crate) fn severity(name: &str) -> Markup {
    html! { span class=(format!("sev sev-{name}")) { (name) } }
}

/// A time in a table cell: `2026-11-25 21:30:05 UTC`, with the RFC 3339 form on hover.
pub(crate) fn time(ms: i64) -> Markup {
    if ms <= 0 {
        return html! { "—" };
    }
    html! { time datetime=(crate::output::rfc3339(ms)) { (short_time(ms)) } }
}

/// A size for people (`1.40 MiB`), the exact bytes on hover.
pub(crate) fn size(bytes: u64) -> Markup {
    html! { span.size title=(format!("{bytes} bytes")) { (human_size(bytes)) } }
}

/// `bytes` in binary units, three significant figures: `812 B`, `1.40 KiB`, `23.4 MiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

/// A key/value table.
pub(crate) fn facts<'a>(rows: impl IntoIterator<Item = (&'a str, Markup)>) -> Markup {
    html! {
        table.facts {
            tbody {
                @for (k, v) in rows {
                    tr { th scope="row" { (k) } td { (v) } }
                }
            }
        }
    }
}

/// A page for a refused request (no navigation: there may be no session).
pub(crate) fn refusal_page(message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Refused · Bannin" }
                link rel="stylesheet" href="/static/console.css";
                link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
            }
            body {
                main #main {
                    h1 { "Refused" }
                    p.error #error { (message) }
                }
            }
        }
    }
}

/// An error a page handler returns: its status and a message for the operator.
#[derive(Debug)]
pub(crate) struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    /// 400 with `message`.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for PageError {
    fn from(s: tonic::Status) -> Self {
        let status = match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => StatusCode::FORBIDDEN,
            tonic::Code::NotFound => StatusCode::NOT_FOUND,
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                StatusCode::BAD_REQUEST
            }
            tonic::Code::AlreadyExists => StatusCode::CONFLICT,
            _ => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            message: s.message().to_owned(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::FORBIDDEN => "Refused by the collector",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Not accepted",
            _ => "The collector did not answer",
        };
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " · Bannin" }
                    link rel="stylesheet" href="/static/console.css";
                    link rel="icon" type="image/svg+xml" href="/static/favicon.svg";
                }
                body {
                    main #main {
                        h1 { (title) }
                        p.error #error { (self.message) }
                        p { a href="/" { "Overview" } }
                    }
                }
            }
        };
        (self.status, body).into_response()
    }
}

/// Markdown (the brief, the review) as HTML, with any raw HTML in it shown as
/// text: the reports quote agent-supplied strings.
pub(crate) fn markdown(text: &str) -> Markup {
    use pulldown_cmark::{Event, Options, Parser};
    let parser = Parser::new_ext(text, Options::ENABLE_TABLES).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::with_capacity(text.len() * 2);
    pulldown_cmark::html::push_html(&mut out, parser);
    PreEscaped(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_shows_raw_html_as_text() {
        let out = markdown(
            "# Brief\n\n<script>alert(1)</script>\n\nA `<img src=x onerror=y>` and <b>bold</b>\n",
        )
        .into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(out.contains("<h1>Brief</h1>"), "{out}");
    }

    #[test]
    fn pages_escape_what_they_splice() {
        let operator = Operator {
            name: "<b>eve</b>".into(),
            role: super::super::Role::Viewer,
            collector_version: "\"><script>x</script>".into(),
        };
        let out = page(&operator, "t\"ok", Nav::Hosts, "<i>t</i>", html! {}).into_string();
        assert!(!out.contains("<b>eve") && !out.contains("<script>x") && !out.contains("<i>t"));
        assert!(out.contains("&lt;b&gt;eve&lt;/b&gt;"));
        assert!(out.contains("content=\"t&quot;ok\""), "{out}");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.00 KiB");
        assert_eq!(human_size(1_468_006), "1.40 MiB");
        assert_eq!(human_size(24_499_118), "23.4 MiB");
        assert_eq!(human_size(300 * 1024 * 1024 * 1024), "300 GiB");
        assert_eq!(human_size(u64::MAX), "16384 PiB");
        assert!(size(2048).into_string().contains("title=\"2048 bytes\""));
    }
}
