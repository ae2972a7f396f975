//! `bannin` findings, finding show/add/ack/resolve/false-positive.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;
use tokio_stream::StreamExt;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, finding_json, finding_line, print_json, short_time};

/// The filter `args` ask for, as the collector reads it.
pub(crate) fn filter(args: &FindingFilterArgs) -> anyhow::Result<v1::FindingFilter> {
    let severities = args
        .severity
        .iter()
        .map(|s| {
            v1::Severity::from_name(s)
                .map(|s| s as i32)
                .with_context(|| format!("unknown severity {s:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let states = args
        .state
        .iter()
        .map(|s| {
            output::finding_state(s)
                .map(|s| s as i32)
                .with_context(|| format!("unknown finding state {s:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(v1::FindingFilter {
        severities,
        states,
        kinds: args.kind.clone(),
        host_id: args.host.clone().unwrap_or_default(),
        labels: args.label.clone(),
        text: args.search.clone().unwrap_or_default(),
        since_unix_ms: match &args.within {
            Some(d) => parse_since(d)?,
            None => 0,
        },
        until_unix_ms: 0,
    })
}

pub(crate) async fn list(
    client: &mut Client,
    json: bool,
    follow: bool,
    since: u64,
    limit: Option<u32>,
    filter: v1::FindingFilter,
) -> anyhow::Result<ExitCode> {
    if follow {
        let mut stream = client
            .follow_findings(v1::FollowFindingsRequest {
                since_id: since,
                filter: Some(filter),
            })
            .await
            .context("following findings")?
            .into_inner();
        while let Some(f) = stream.next().await {
            let f = f.context("finding stream")?;
            if json {
                println!("{}", finding_json(&f));
            } else {
                crate::say!("{}", finding_line(&f));
            }
        }
    } else {
        let (findings, more) = read_findings(client, since, limit, &filter).await?;
        if let (Some(last), Some(limit)) = (findings.last().filter(|_| more), limit) {
            // On stderr: stdout stays the list (a JSON array for scripts).
            let noun = if limit == 1 { "finding" } else { "findings" };
            eprintln!(
                "showing the first {limit} {noun} after id {since}; more exist: `--since {}` for the next page, or `--all`",
                last.id
            );
        }
        if json {
            let labels = host_labels(client).await;
            print_json(
                &findings
                    .iter()
                    .map(|f| with_labels(finding_json(f), &labels, &f.host_id))
                    .collect::<Vec<_>>(),
            )?;
        } else {
            for f in &findings {
                crate::say!("{}", finding_line(f));
            }
            if findings.is_empty() {
                eprintln!("no findings");
            }
        }
    }

    Ok(ExitCode::SUCCESS)
}

/// Findings after `since` that pass `filter`: at most `limit` (and whether
/// more exist), or every one (`None`), a page at a time.
async fn read_findings(
    client: &mut Client,
    since: u64,
    limit: Option<u32>,
    filter: &v1::FindingFilter,
) -> anyhow::Result<(Vec<v1::Finding>, bool)> {
    /// One request's page when reading everything.
    const PAGE: u32 = 1000;
    let mut out = Vec::new();
    let mut cursor = since;
    loop {
        let want = limit.map_or(PAGE, |l| l.saturating_sub(out.len() as u32).min(PAGE));
        // One more than wanted: whether the list is cut.
        let page = client
            .list_findings(v1::ListFindingsRequest {
                since_id: cursor,
                limit: want + 1,
                filter: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .context("listing findings")?
            .into_inner();
        let more = page.findings.len() > want as usize;
        out.extend(page.findings.into_iter().take(want as usize));
        if more {
            return Ok((out, true));
        }
        if limit.is_some_and(|l| out.len() >= l as usize) {
            return Ok((out, false));
        }
        // A short page: the collector read to the end, or (filtering) to the
        // end of its reading budget; `scanned_to` says where to go on.
        if page.scanned_to <= cursor {
            return Ok((out, false));
        }
        cursor = page.scanned_to;
    }
}

pub(crate) async fn finding(
    client: &mut Client,
    json: bool,
    action: FindingAction,
) -> anyhow::Result<ExitCode> {
    let (id, state, note) = match action {
        FindingAction::Show { id } => {
            let found = client
                .get_finding(v1::GetFindingRequest { id })
                .await
                .context("reading the finding")?
                .into_inner();
            let chain = correlated_chain(client, &found).await?;
            let labels = host_labels(client).await;
            if json {
                let mut doc = with_labels(finding_json(&found), &labels, &found.host_id);
                doc["correlated"] =
                    serde_json::Value::Array(chain.iter().map(finding_json).collect());
                print_json(&doc)?;
            } else {
                print_finding(&found, false)?;
                if let Some(l) = labels.get(&found.host_id).filter(|l| !l.is_empty()) {
                    let shown: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    crate::say!("  host labels: {}", shown.join(", "));
                }
                if !chain.is_empty() {
                    crate::say!("  built from:");
                    for f in &chain {
                        crate::say!("    {}", finding_line(f));
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        FindingAction::Add {
            host,
            kind,
            severity,
            text,
            reporter,
        } => {
            let severity = match severity.as_str() {
                "info" => v1::Severity::Info,
                "low" => v1::Severity::Low,
                "medium" => v1::Severity::Medium,
                "high" => v1::Severity::High,
                _ => v1::Severity::Critical,
            };
            let f = client
                .add_finding(v1::AddFindingRequest {
                    host_id: host.clone(),
                    kind,
                    severity: severity as i32,
                    text,
                    reporter,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .with_context(|| format!("recording a finding on {host}"))?
                .into_inner();
            print_finding(&f, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        FindingAction::Ack { id, note } => (id, v1::FindingState::Acknowledged, note),
        FindingAction::Resolve { id, note } => (id, v1::FindingState::Resolved, note),
        FindingAction::FalsePositive { id, note } => (id, v1::FindingState::FalsePositive, note),
    };
    let f = client
        .set_finding_state(v1::SetFindingStateRequest {
            id,
            state: state as i32,
            note,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("changing finding {id}"))?
        .into_inner();
    print_finding(&f, json)?;

    Ok(ExitCode::SUCCESS)
}

/// Every host's labels (empty when the hosts cannot be listed).
async fn host_labels(
    client: &mut Client,
) -> std::collections::HashMap<String, std::collections::BTreeMap<String, String>> {
    match client.list_hosts(v1::ListHostsRequest {}).await {
        Ok(r) => r
            .into_inner()
            .hosts
            .into_iter()
            .map(|h| (h.host_id, h.labels.into_iter().collect()))
            .collect(),
        Err(_) => std::collections::HashMap::new(),
    }
}

/// A finding's JSON with its host's labels.
fn with_labels(
    mut doc: serde_json::Value,
    labels: &std::collections::HashMap<String, std::collections::BTreeMap<String, String>>,
    host: &str,
) -> serde_json::Value {
    doc["host_labels"] = serde_json::json!(labels.get(host).cloned().unwrap_or_default());
    doc
}

/// The findings a correlated finding was built from (its `correlated_findings`).
async fn correlated_chain(
    client: &mut Client,
    f: &v1::Finding,
) -> anyhow::Result<Vec<v1::Finding>> {
    let Some(ids) = f.attributes.get("correlated_findings") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in ids.split(',').filter_map(|i| i.trim().parse::<u64>().ok()) {
        match client.get_finding(v1::GetFindingRequest { id }).await {
            Ok(found) => out.push(found.into_inner()),
            // Removed by retention since: the chain shows what is left.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => {
                return Err(status).context("reading the findings it was built from");
            }
        }
    }
    Ok(out)
}

fn print_finding(f: &v1::Finding, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&finding_json(f));
    }
    crate::say!("{}", finding_line(f));
    // Why first: the rule or condition that fired, and the ATT&CK technique.
    if let Some(reason) = f.attributes.get("reason") {
        crate::say!("    why: {reason}");
    }
    if let Some(technique) = f.attributes.get("attack.technique") {
        crate::say!(
            "    ATT&CK: {technique} (https://attack.mitre.org/techniques/{})",
            technique.replace('.', "/")
        );
    }
    for (k, v) in &f.attributes {
        if k != "reason" && k != "attack.technique" {
            crate::say!("    {k}: {v}");
        }
    }
    for c in &f.history {
        crate::say!(
            "    {} {} by {}{}",
            short_time(c.at_unix_ms),
            output::state(c.state),
            c.operator,
            if c.note.is_empty() {
                String::new()
            } else {
                format!(": {}", c.note)
            }
        );
    }
    Ok(())
}
