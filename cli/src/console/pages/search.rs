//! Search: which hosts saw an address, a port, a hash, an executable, a user,
//! a process or a kind of event, read from the collector's event index (the
//! same answer as `bannin search`).

use super::*;

/// What a search can ask, as (field, label, example).
const FIELDS: [(&str, &str, &str); 7] = [
    ("ip", "Address or network", "203.0.113.7 or 203.0.113.0/24"),
    ("port", "Port", "4444"),
    ("sha256", "SHA-256", "64 hex digits"),
    ("exe", "Executable path", "/tmp/.x/kworker"),
    ("user", "User", "backup"),
    ("process", "Process name", "nc"),
    ("kind", "Event kind", "net.connection"),
];

#[derive(Deserialize, Default)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    hosts: String,
}

/// `GET /search?field=ip&value=…&since=7d&hosts=…`: the form, then the hosts
/// that match (events, first and last seen) and the newest matching events.
pub(crate) async fn search(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(q): Query<SearchQuery>,
) -> Page {
    let value = q.value.trim();
    let since = q.since.trim();
    let answer = if value.is_empty() {
        None
    } else {
        if !FIELDS.iter().any(|(f, _, _)| *f == q.field) {
            return Err(PageError::bad(format!("unknown field {:?}", q.field)));
        }
        let since_unix_ms = if since.is_empty() {
            0
        } else {
            crate::args::parse_since(since).map_err(|e| PageError::bad(e.to_string()))?
        };
        let hosts = q
            .hosts
            .split([',', ' '])
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        Some(
            c.client()
                .search(v1::SearchRequest {
                    field: q.field.clone(),
                    value: value.to_owned(),
                    since_unix_ms,
                    hosts,
                    limit: 200,
                })
                .await?
                .into_inner(),
        )
    };
    let body = html! {
        form #search-form method="get" action="/search" {
            label { "Field "
                select name="field" #search-field {
                    @for (f, label, _) in FIELDS {
                        @if f == q.field { option value=(f) selected { (label) } } @else { option value=(f) { (label) } }
                    }
                }
            }
            label { "Value " input type="text" name="value" value=(value) required size="40" placeholder="203.0.113.7, 4444, a SHA-256, /tmp/x, a user…"; }
            label { "Since " input type="text" name="since" value=(since) size="6" placeholder="7d"; }
            label { "Hosts " input type="text" name="hosts" value=(q.hosts) size="20" placeholder="all"; }
            button type="submit" #search-button { "Search" }
        }
        p.note { "Reads the collector's event index (one small filter per stored batch); only the batches it points at are read." }
        @if let Some(r) = &answer {
            @if r.hosts.is_empty() {
                p.empty #search-empty { "No host matches." }
            } @else {
                h2 { (r.hosts.len()) " hosts" @if r.truncated { " (the search stopped at its bound: counts are at least)" } }
                table.grid.sortable #search-hosts {
                    thead { tr { th { "Host" } th { "Events" } th { "First seen (UTC)" } th { "Last seen (UTC)" } } }
                    tbody {
                        @for h in &r.hosts {
                            tr {
                                td { a href=(format!("/hosts/{}", h.host_id)) { (t(&h.host_id)) } }
                                td.num { (h.events) }
                                td { (time(h.first_unix_ms)) }
                                td { (time(h.last_unix_ms)) }
                            }
                        }
                    }
                }
                h2 { "Events (newest first, at most 200)" }
                table.grid #search-events {
                    thead { tr { th { "Observed (UTC)" } th { "Host" } th { "Kind" } th { "Attributes" } } }
                    tbody {
                        @for e in &r.events {
                            @if let Some(ev) = &e.event {
                                tr {
                                    td { (time(ev.observed_unix_ms)) }
                                    td { (t(&e.host_id)) }
                                    td.kind { (t(&ev.kind)) }
                                    td.value { (super::hosts::attributes_text(&ev.attributes)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Search, "Search", body))
}
