//! `bannin sigma test`: Sigma rules on exported events, with no collector.
//!
//! The rules are loaded, checked and matched by the collector's own code
//! (`bannin_collector::sigma`), so what passes here behaves the same deployed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use bannin_collector::sigma::{self, SigmaEvent};
use serde_json::{Value, json};

use crate::args::SigmaAction;
use crate::output::print_json;
use crate::say;

/// Exit status when something went wrong (0: matched, 1: nothing matched).
const ERROR: u8 = 2;

/// One exported event, as `bannin events --json` writes it.
struct Exported {
    host: String,
    kind: String,
    observed_unix_ms: i64,
    attributes: BTreeMap<String, String>,
    summary: String,
}

pub(crate) fn run(action: SigmaAction, json: bool) -> anyhow::Result<ExitCode> {
    let SigmaAction::Test { rules, events } = action;
    let set = match sigma::load(&rules) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("bannin: the rules do not load: {e}");
            return Ok(ExitCode::from(ERROR));
        }
    };
    let events = match read_events(&events) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bannin: {e:#}");
            return Ok(ExitCode::from(ERROR));
        }
    };
    let mut engine = set.correlation_engine();
    let mut matches = Vec::new();
    let mut considered = 0usize;
    for (n, e) in events.iter().enumerate() {
        let Some(event) =
            SigmaEvent::from_event(&e.host, &e.kind, e.observed_unix_ms, &e.attributes)
        else {
            continue;
        };
        considered += 1;
        let m = set.evaluate(&event, &e.summary);
        for f in m.findings {
            matches.push((n + 1, f));
        }
        if let Some(engine) = engine.as_mut()
            && !m.feed.is_empty()
        {
            for f in set.correlate(engine, &event, m.feed) {
                matches.push((n + 1, f));
            }
        }
    }
    if json {
        print_json(&json!({
            "rules": set.rules.len(),
            "refused": set.refused.iter().map(|r| json!({
                "file": r.file.display().to_string(),
                "title": r.title,
                "id": r.id,
                "reason": r.reason,
            })).collect::<Vec<_>>(),
            "events": events.len(),
            "sigma_events": considered,
            "matches": matches.iter().map(|(n, f)| json!({
                "event": n,
                "host_id": f.host_id.as_str(),
                "kind": f.kind,
                "severity": f.severity.name(),
                "summary": f.summary,
                "attributes": f.attributes,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for r in &set.refused {
            say!("refused  {} ({}): {}", r.title, r.file.display(), r.reason);
        }
        for (n, f) in &matches {
            say!(
                "event {:<6} {:<8} {:<18} {:<12} {}",
                n,
                f.severity.name(),
                f.kind,
                f.host_id,
                f.summary
            );
        }
        println!(
            "{} rule(s), {} refused; {} event(s), {} a Sigma log source covers; {} match(es)",
            set.rules.len(),
            set.refused.len(),
            events.len(),
            considered,
            matches.len()
        );
    }
    Ok(if matches.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads exported events: a JSON array, or one JSON object per line.
fn read_events(path: &Path) -> anyhow::Result<Vec<Exported>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading events from {}", path.display()))?;
    let values: Vec<(usize, Value)> = if text.trim_start().starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON array of events", path.display()))?;
        all.into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|v| (i + 1, v))
                    .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
            })
            .collect::<anyhow::Result<_>>()?
    };
    values
        .into_iter()
        .map(|(n, v)| exported(&v).with_context(|| format!("{} event {n}", path.display())))
        .collect()
}

fn exported(v: &Value) -> anyhow::Result<Exported> {
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kind = text("kind");
    anyhow::ensure!(!kind.is_empty(), "no \"kind\"");
    let observed_unix_ms = match v.get("observed") {
        Some(Value::String(s)) if !s.is_empty() => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("\"observed\" {s:?} is not an RFC 3339 time"))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
        }
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    let mut attributes = BTreeMap::new();
    if let Some(map) = v.get("attributes").and_then(Value::as_object) {
        for (k, value) in map {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            attributes.insert(k.clone(), value);
        }
    }
    Ok(Exported {
        host: match text("host_id") {
            h if h.is_empty() => "unknown".into(),
            h => h,
        },
        kind,
        observed_unix_ms,
        attributes,
        summary: text("summary"),
    })
}
