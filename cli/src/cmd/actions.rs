//! `bannin` the action log: list and verify.

use std::process::ExitCode;

use bannin_proto::v1;

use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn verify(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let r = client
        .verify_actions(v1::VerifyActionsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if json {
        print_json(&serde_json::json!({
            "ok": r.ok, "entries": r.entries, "first_bad_seq": r.first_bad_seq, "reason": r.reason,
        }))?;
    } else if r.ok {
        crate::say!(
            "action log intact: {} entries, every hash chains",
            r.entries
        );
    } else {
        crate::say!(
            "ACTION LOG TAMPERED: entry {} {}",
            r.first_bad_seq,
            r.reason
        );
    }
    if !r.ok {
        return Ok(ExitCode::FAILURE);
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(
    client: &mut Client,
    json: bool,
    host: Option<String>,
    incident: Option<u64>,
    after: u64,
    limit: Option<u64>,
) -> anyhow::Result<ExitCode> {
    const PAGE: u64 = 1000;
    let mut after = after;
    let mut left = limit.unwrap_or(u64::MAX);
    let mut collected = Vec::new();
    // Page through the log: text is printed page by page as it arrives, so a
    // long log starts showing at once and is never held whole.
    while left > 0 {
        let page = client
            .list_actions(v1::ListActionsRequest {
                host_id: host.clone().unwrap_or_default(),
                incident: incident.unwrap_or(0),
                after_seq: after,
                limit: u32::try_from(left.min(PAGE)).unwrap_or(1000),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner();
        left = left.saturating_sub(page.actions.len() as u64);
        if json {
            collected.extend(page.actions.iter().map(output::action_json));
        } else {
            for a in &page.actions {
                crate::say!(
                    "{:>5} {}  {:<16} {:<18} {:<20} {}{}",
                    a.seq,
                    short_time(a.at_unix_ms),
                    a.actor,
                    a.verb,
                    a.target,
                    a.result.chars().take(80).collect::<String>(),
                    if a.reason.is_empty() {
                        String::new()
                    } else {
                        format!(" (reason: {})", a.reason)
                    }
                );
            }
        }
        if page.next_after_seq == 0 {
            break;
        }
        after = page.next_after_seq;
    }
    if json {
        print_json(&collected)?;
    }

    Ok(ExitCode::SUCCESS)
}
