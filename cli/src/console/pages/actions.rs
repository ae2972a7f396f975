//! The action log and its verification.

use super::*;

pub(super) fn actions_table(entries: &[v1::ActionEntry]) -> Markup {
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
