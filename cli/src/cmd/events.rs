//! `bannin` raw telemetry kept for a host.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, event_json, print_json, short_time};

pub(crate) async fn events(
    client: &mut Client,
    json: bool,
    host: String,
    since: Option<String>,
    kind: Option<String>,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    let since_unix_ms = match since {
        Some(s) => parse_since(&s)?,
        None => 0,
    };
    let response = client
        .list_events(v1::ListEventsRequest {
            host_id: host.clone(),
            since_unix_ms,
            kind: kind.unwrap_or_default(),
            limit,
            after_sequence: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("reading events of {host}"))?
        .into_inner();
    if json {
        print_json(&response.events.iter().map(event_json).collect::<Vec<_>>())?;
    } else {
        for e in &response.events {
            let ev = e.event.clone().unwrap_or_default();
            crate::say!(
                "{}  {:<8} {:<22} {}",
                short_time(ev.observed_unix_ms),
                output::severity(ev.severity),
                ev.kind,
                ev.summary
            );
        }
    }
    if response.truncated {
        eprintln!("(more events match; raise --limit or narrow with --since/--kind)");
    }

    Ok(ExitCode::SUCCESS)
}
