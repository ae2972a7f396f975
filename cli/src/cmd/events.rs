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

/// `bannin search`.
pub(crate) async fn search(
    client: &mut Client,
    json: bool,
    args: SearchArgs,
) -> anyhow::Result<ExitCode> {
    let (field, value) = match (
        args.ip,
        args.port,
        args.sha256,
        args.exe,
        args.user,
        args.process,
        args.kind,
    ) {
        (Some(v), ..) => ("ip", v),
        (_, Some(p), ..) => ("port", p.to_string()),
        (_, _, Some(v), ..) => ("sha256", v),
        (_, _, _, Some(v), ..) => ("exe", v),
        (_, _, _, _, Some(v), ..) => ("user", v),
        (_, _, _, _, _, Some(v), _) => ("process", v),
        (.., Some(v)) => ("kind", v),
        _ => anyhow::bail!("give one of --ip, --port, --sha256, --exe, --user, --process, --kind"),
    };
    let since_unix_ms = match &args.since {
        Some(s) => parse_since(s)?,
        None => 0,
    };
    let response = client
        .search(v1::SearchRequest {
            field: field.into(),
            value: value.clone(),
            since_unix_ms,
            hosts: args.hosts,
            limit: args.limit,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if json {
        let hosts: Vec<serde_json::Value> = response
            .hosts
            .iter()
            .map(|h| {
                serde_json::json!({
                    "host_id": h.host_id,
                    "events": h.events,
                    "first": output::rfc3339(h.first_unix_ms),
                    "last": output::rfc3339(h.last_unix_ms),
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "field": field,
            "value": value,
            "hosts": hosts,
            "events": response.events.iter().map(event_json).collect::<Vec<_>>(),
            "truncated": response.truncated,
        }))?;
    } else {
        if response.hosts.is_empty() {
            eprintln!("No host matches {field} {value}.");
            return Ok(ExitCode::from(1));
        }
        crate::say!(
            "{:<24} {:>8}  {:<19}  {:<19}",
            "HOST",
            "EVENTS",
            "FIRST (UTC)",
            "LAST (UTC)"
        );
        for h in &response.hosts {
            crate::say!(
                "{:<24} {:>8}  {:<19}  {:<19}",
                h.host_id,
                h.events,
                short_time(h.first_unix_ms),
                short_time(h.last_unix_ms)
            );
        }
        println!();
        for e in &response.events {
            let ev = e.event.clone().unwrap_or_default();
            crate::say!(
                "{}  {:<16} {:<22} {}",
                short_time(ev.observed_unix_ms),
                e.host_id,
                ev.kind,
                ev.summary
            );
        }
    }
    if response.truncated {
        eprintln!(
            "(the search stopped at its bound: counts are at least these; narrow it with --since or --hosts)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
