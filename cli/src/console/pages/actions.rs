//! The action log and its verification.

use super::*;

/// Where an action-log target or actor is shown in the console, if anywhere:
/// `finding 6`, `incident:1`, `evidence:ID`, commands (`c12`), hunts (`h3`),
/// `host:ID` actors, and the host of a host verb (`command.isolate`,
/// `host.label`, …).
pub(super) fn action_link(verb: &str, target: &str) -> Option<String> {
    let numbered = |s: &str, prefix: char| {
        s.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    if let Some(n) = target.strip_prefix("finding ")
        && n.parse::<u64>().is_ok()
    {
        return Some(format!("/findings/{n}"));
    }
    if let Some(n) = target.strip_prefix("incident:")
        && n.parse::<u64>().is_ok()
    {
        return Some(format!("/incidents/{n}"));
    }
    if let Some(id) = target.strip_prefix("evidence:") {
        return Some(format!("/evidence/{}", enc(id)));
    }
    if let Some(host) = target.strip_prefix("host:") {
        return Some(format!("/hosts/{}", enc(host)));
    }
    if numbered(target, 'c') && !verb.starts_with("token") {
        return Some(format!("/commands/{target}"));
    }
    if numbered(target, 'h') && verb.starts_with("hunt") {
        return Some(format!("/hunts/{target}"));
    }
    let host_verb =
        verb.starts_with("command.") || verb.starts_with("host.") || verb == "isolation.reconcile";
    if host_verb && bannin_proto::identity::HostId::new(target).is_ok() {
        return Some(format!("/hosts/{}", enc(target)));
    }
    None
}

/// An entry's result: a triage answer (the log keeps its first 256
/// characters) as a link to the command's page, where it is a table.
fn action_result(a: &v1::ActionEntry) -> Markup {
    if a.verb == "result.triage"
        && let Some(answer) = a.result.strip_prefix("succeeded: {")
        && answer.starts_with("\"")
        && let Some(href) = action_link(&a.verb, &a.target)
    {
        return html! { "succeeded: " a.rows href=(href) { "the answer, as a table" } };
    }
    html! { (t(&a.result.chars().take(300).collect::<String>())) }
}

fn linked(verb: &str, text: &str) -> Markup {
    match action_link(verb, text) {
        Some(href) => html! { a href=(href) { (t(text)) } },
        None => html! { (t(text)) },
    }
}

pub(super) fn actions_table(entries: &[v1::ActionEntry]) -> Markup {
    html! {
        table.grid.actions {
            thead { tr { th { "Seq" } th { "When (UTC)" } th { "Actor" } th { "Verb" } th { "Target" } th { "Reason" } th { "Result" } } }
            tbody {
                @for a in entries {
                    tr {
                        td.num { (a.seq) }
                        td { (time(a.at_unix_ms)) }
                        td { (linked("", &a.actor)) }
                        td { (t(&a.verb)) }
                        td { (linked(&a.verb, &a.target)) }
                        td { (t(&a.reason)) }
                        td.value { (action_result(a)) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionsQuery {
    /// Oldest first, after this position.
    #[serde(default)]
    after: u64,
    /// Newest first (the default), before this position.
    #[serde(default)]
    before: u64,
    /// `oldest` for oldest first.
    #[serde(default)]
    order: String,
    #[serde(default)]
    host: String,
}

/// `GET /actions[?before=N | ?order=oldest&after=N][&host=H]`: the action
/// log a page at a time, newest first unless asked.
pub(crate) async fn actions(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Query(q): Query<ActionsQuery>,
) -> Page {
    let oldest_first = q.order == "oldest";
    let page_ = c
        .client()
        .list_actions(v1::ListActionsRequest {
            host_id: q.host.clone(),
            incident: 0,
            after_seq: q.after,
            limit: 200,
            newest_first: !oldest_first,
            before_seq: q.before,
        })
        .await?
        .into_inner();
    let host: String = form_urlencoded::byte_serialize(q.host.as_bytes()).collect();
    let body = html! {
        form.inline method="post" action="/actions/verify" {
            (csrf_field(&s.csrf))
            button type="submit" #verify-actions { "Verify the hash chain" }
        }
        p {
            @if oldest_first {
                "Oldest first · " a #order href=(format!("/actions?host={host}")) { "newest first" }
            } @else {
                "Newest first · " a #order href=(format!("/actions?order=oldest&host={host}")) { "oldest first" }
            }
        }
        (actions_table(&page_.actions))
        @if oldest_first && page_.next_after_seq != 0 {
            p { a #next-page href=(format!("/actions?order=oldest&after={}&host={host}", page_.next_after_seq)) { "Next 200 entries" } }
        }
        @if !oldest_first && page_.next_before_seq != 0 {
            p { a #next-page href=(format!("/actions?before={}&host={host}", page_.next_before_seq)) { "Older entries" } }
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
    use super::action_link;

    #[test]
    fn action_targets_link_to_what_they_name() {
        assert_eq!(
            action_link("finding.state", "finding 6").as_deref(),
            Some("/findings/6")
        );
        assert_eq!(
            action_link("incident.update", "incident:1").as_deref(),
            Some("/incidents/1")
        );
        assert_eq!(
            action_link("evidence.verify", "evidence:e1").as_deref(),
            Some("/evidence/e1")
        );
        assert_eq!(
            action_link("result.isolate", "c12").as_deref(),
            Some("/commands/c12")
        );
        assert_eq!(
            action_link("hunt.start", "h3").as_deref(),
            Some("/hunts/h3")
        );
        assert_eq!(
            action_link("command.isolate", "web-01").as_deref(),
            Some("/hosts/web-01")
        );
        assert_eq!(
            action_link("", "host:web-01").as_deref(),
            Some("/hosts/web-01")
        );
        // Names that are not console pages stay text.
        assert_eq!(action_link("token.create", "c1"), None);
        assert_eq!(action_link("operator.add", "alice"), None);
        assert_eq!(action_link("rules.reload", "sigma"), None);
        assert_eq!(action_link("command.isolate", "a b/../x"), None);
        assert_eq!(action_link("finding.state", "finding x"), None);
    }
}
