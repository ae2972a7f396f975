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
        summary: args.summary.clone().unwrap_or_default(),
    })
}

/// The CLI options that select what `filter` selects (a group's own filter,
/// printed so it can be listed or changed).
fn filter_options(filter: &v1::FindingFilter) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:=*".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut out = Vec::new();
    for s in &filter.severities {
        out.push(format!("--severity {}", output::severity(*s)));
    }
    for s in &filter.states {
        out.push(format!("--state {}", output::state(*s)));
    }
    for k in &filter.kinds {
        out.push(format!("--kind {}", quote(k)));
    }
    if !filter.host_id.is_empty() {
        out.push(format!("--host {}", quote(&filter.host_id)));
    }
    for l in &filter.labels {
        out.push(format!("--label {}", quote(l)));
    }
    if !filter.text.is_empty() {
        out.push(format!("--search {}", quote(&filter.text)));
    }
    if !filter.summary.is_empty() {
        out.push(format!("--summary {}", quote(&filter.summary)));
    }
    out.join(" ")
}

/// `bannin findings --sort ORDER`: sorted on the collector.
pub(crate) async fn sorted(
    client: &mut Client,
    json: bool,
    order: &str,
    limit: Option<u32>,
    filter: v1::FindingFilter,
) -> anyhow::Result<ExitCode> {
    let order = match order {
        "severity" => v1::FindingOrder::Severity,
        "last-seen" => v1::FindingOrder::LastObserved,
        "count" => v1::FindingOrder::Count,
        "host" => v1::FindingOrder::Host,
        "kind" => v1::FindingOrder::Kind,
        _ => v1::FindingOrder::State,
    };
    let page = client
        .list_findings(v1::ListFindingsRequest {
            newest_first: true,
            order: order as i32,
            limit: limit.unwrap_or(0),
            filter: Some(filter),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("listing findings")?
        .into_inner();
    if !page.ordered_all {
        eprintln!(
            "sorted the newest {} findings that pass; narrow the filter to sort them all",
            page.ordered
        );
    } else if page.findings.len() < page.ordered as usize {
        eprintln!(
            "showing {} of {} findings; --limit shows more",
            page.findings.len(),
            page.ordered
        );
    }
    if json {
        print_json(&page.findings.iter().map(finding_json).collect::<Vec<_>>())?;
    } else {
        for f in &page.findings {
            crate::say!("{}", finding_line(f));
        }
        if page.findings.is_empty() {
            eprintln!("no findings");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bannin findings --group BY`: counted on the collector, worst first.
pub(crate) async fn group(
    client: &mut Client,
    json: bool,
    by: &str,
    filter: v1::FindingFilter,
) -> anyhow::Result<ExitCode> {
    let by = match by {
        "kind" => v1::FindingGroupBy::Kind,
        "host" => v1::FindingGroupBy::Host,
        _ => v1::FindingGroupBy::Summary,
    };
    let answer = client
        .group_findings(v1::GroupFindingsRequest {
            filter: Some(filter),
            by: by as i32,
            limit: 0,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("grouping findings")?
        .into_inner();
    if !answer.complete {
        eprintln!(
            "grouped the newest {} findings that pass (the collector stopped reading at finding {}); narrow the filter to group them all",
            answer.grouped, answer.scanned_to
        );
    }
    if answer.total_groups > answer.groups.len() as u64 {
        eprintln!(
            "showing the worst {} of {} groups",
            answer.groups.len(),
            answer.total_groups
        );
    }
    if json {
        let groups: Vec<serde_json::Value> = answer
            .groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "key": g.key,
                    "count": g.count,
                    "open": g.open,
                    "worst": output::severity(g.worst),
                    "last_observed": output::rfc3339(g.last_observed_unix_ms),
                    "newest_id": g.newest_id,
                    "options": g.filter.as_ref().map(filter_options).unwrap_or_default(),
                })
            })
            .collect();
        return print_json(&groups).map(|()| ExitCode::SUCCESS);
    }
    if answer.groups.is_empty() {
        eprintln!("no findings");
        return Ok(ExitCode::SUCCESS);
    }
    crate::say!(
        "{:<8} {:>7} {:>7}  {:<19}  {}",
        "WORST",
        "COUNT",
        "OPEN",
        "LAST OBSERVED",
        "GROUP (and the options that select it)"
    );
    for g in &answer.groups {
        crate::say!(
            "{:<8} {:>7} {:>7}  {}  {}",
            output::severity(g.worst),
            g.count,
            g.open,
            short_time(g.last_observed_unix_ms),
            g.key
        );
        if let Some(f) = &g.filter {
            crate::say!("{:<46}{}", "", filter_options(f));
        }
    }
    eprintln!(
        "list a group: bannin findings OPTIONS; change it: bannin finding ack|resolve|false-positive --note WHY OPTIONS"
    );
    Ok(ExitCode::SUCCESS)
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
    let (change, state) = match action {
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
        FindingAction::Ack(change) => (change, v1::FindingState::Acknowledged),
        FindingAction::Resolve(change) => (change, v1::FindingState::Resolved),
        FindingAction::FalsePositive(change) => (change, v1::FindingState::FalsePositive),
    };
    if change.ids.len() != 1 || !change.filter.is_empty() || change.dry_run {
        return set_states(client, json, change, state).await;
    }
    let (id, note) = (change.ids[0], change.note);
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

/// `bannin finding ack|resolve|false-positive` for several findings, or
/// every finding a filter selects: one request, each change logged.
async fn set_states(
    client: &mut Client,
    json: bool,
    change: StateChange,
    state: v1::FindingState,
) -> anyhow::Result<ExitCode> {
    let by_filter = change.ids.is_empty();
    if by_filter && change.filter.is_empty() {
        anyhow::bail!(
            "name the findings: ids (`ack 12 13`), or filter options (`ack --kind file.* --search useradd`)"
        );
    }
    if !by_filter && !change.filter.is_empty() {
        anyhow::bail!("give finding ids or filter options, not both");
    }
    let filter = filter(&change.filter)?;
    if change.dry_run {
        let findings = if by_filter {
            read_findings(client, 0, Some(10_001), &filter).await?.0
        } else {
            let mut out = Vec::new();
            for &id in &change.ids {
                let f = client
                    .get_finding(v1::GetFindingRequest { id })
                    .await
                    .map_err(|s| anyhow::anyhow!("{}", s.message()))
                    .with_context(|| format!("reading finding {id}"))?
                    .into_inner();
                out.push(f);
            }
            out
        };
        let would: Vec<&v1::Finding> = findings
            .iter()
            .filter(|f| f.state != state as i32)
            .collect();
        if json {
            print_json(&would.iter().map(|f| finding_json(f)).collect::<Vec<_>>())?;
        } else {
            for f in &would {
                crate::say!("{}", finding_line(f));
            }
        }
        eprintln!(
            "dry run: {} of {} findings would become {} (nothing changed)",
            would.len(),
            findings.len(),
            output::state(state as i32)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let answer = client
        .set_finding_states(v1::SetFindingStatesRequest {
            ids: change.ids,
            filter: by_filter.then_some(filter),
            state: state as i32,
            note: change.note,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("changing findings")?
        .into_inner();
    if json {
        print_json(&serde_json::json!({
            "state": output::state(state as i32),
            "matched": answer.matched,
            "changed": answer.changed,
            "unchanged": answer.unchanged,
            "refused": answer.refused,
        }))?;
    } else {
        crate::say!(
            "{} finding(s) now {}; {} already were; {} refused",
            answer.changed,
            output::state(state as i32),
            answer.unchanged,
            answer.matched - answer.changed - answer.unchanged
        );
        for why in &answer.refused {
            eprintln!("{}", output::inert(why));
        }
    }
    Ok(if answer.changed + answer.unchanged == answer.matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
