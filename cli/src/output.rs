//! Printing for humans (aligned text) and for scripts (`--json`).

use bannin_proto::v1;
use serde_json::{Value, json};

pub use bannin_proto::rfc3339;

/// Short local-free time for tables: `2026-11-25 21:30:05`.
pub fn short_time(ms: i64) -> String {
    let s = rfc3339(ms);
    s.get(..19).map(|t| t.replace('T', " ")).unwrap_or(s)
}

/// Lower-case name of a severity.
pub fn severity(value: i32) -> &'static str {
    v1::Severity::name_of(value)
}

/// Lower-case name of a finding state.
pub fn state(value: i32) -> &'static str {
    match v1::FindingState::try_from(value).unwrap_or(v1::FindingState::Unspecified) {
        v1::FindingState::Unspecified => "unspecified",
        v1::FindingState::New => "new",
        v1::FindingState::Acknowledged => "acknowledged",
        v1::FindingState::Resolved => "resolved",
        v1::FindingState::FalsePositive => "false_positive",
    }
}

/// A finding state by its lower-case name ([`state`]).
pub fn finding_state(name: &str) -> Option<v1::FindingState> {
    [
        v1::FindingState::New,
        v1::FindingState::Acknowledged,
        v1::FindingState::Resolved,
        v1::FindingState::FalsePositive,
    ]
    .into_iter()
    .find(|s| state(*s as i32) == name)
}

/// A finding as JSON.
pub fn finding_json(f: &v1::Finding) -> Value {
    json!({
        "id": f.id,
        "host_id": f.host_id,
        "kind": f.kind,
        "severity": severity(f.severity),
        "state": state(f.state),
        "observed": rfc3339(f.observed_unix_ms),
        "received": rfc3339(f.received_unix_ms),
        "last_observed": rfc3339(f.last_observed_unix_ms),
        "count": f.count,
        "attributes": f.attributes,
        "summary": f.summary,
        "history": f.history.iter().map(|c| json!({
            "state": state(c.state),
            "operator": c.operator,
            "at": rfc3339(c.at_unix_ms),
            "note": c.note,
        })).collect::<Vec<_>>(),
    })
}

/// A finding as one line of text.
/// `text` made inert for a terminal: control characters (ESC and so every ANSI
/// or OSC sequence, CR, BS, newlines), bidi overrides and zero-width characters
/// shown visibly (`\x1b`, `\u{202e}`) instead of acted on. Every line the CLI
/// prints in text mode goes through it (JSON output is left exact).
pub fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write;
    let unsafe_char = bannin_proto::hello::is_unsafe_char;
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Prints one line of text output, made [`inert`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::output::inert(&format!($($arg)*)))
    };
}

pub fn finding_line(f: &v1::Finding) -> String {
    let count = if f.count > 1 {
        format!(" ×{}", f.count)
    } else {
        String::new()
    };
    inert(&format!(
        "#{:<6} {}  {:<8} {:<20} {:<24} {:<14} {}{}",
        f.id,
        short_time(f.observed_unix_ms),
        severity(f.severity),
        f.host_id,
        f.kind,
        state(f.state),
        f.summary,
        count
    ))
    .into_owned()
}

/// A host as JSON.
pub fn host_json(h: &v1::Host) -> Value {
    json!({
        "host_id": h.host_id,
        "online": h.online,
        "hostname": h.hostname,
        "os": h.os,
        "kernel": h.kernel,
        "addresses": h.addresses,
        "agent_version": h.agent_version,
        "first_seen": rfc3339(h.first_seen_unix_ms),
        "last_seen": rfc3339(h.last_seen_unix_ms),
        "acked_sequence": h.acked_sequence,
        "spool_bytes": h.spool_bytes,
        "peer_address": h.peer_address,
        "collector": h.collector,
        "isolation": h.isolation,
        "revoked": h.revoked,
        "revoked_by": h.revoked_by,
        "revoked_at": rfc3339(h.revoked_unix_ms),
        "revoked_reason": h.revoked_reason,
        "labels": h.labels,
        "sensors": h.sensors.iter().map(|s| json!({
            "name": s.name, "state": s.state, "detail": s.detail,
        })).collect::<Vec<_>>(),
    })
}

/// A stored event as JSON.
pub fn event_json(e: &v1::StoredEvent) -> Value {
    let ev = e.event.clone().unwrap_or_default();
    json!({
        "host_id": e.host_id,
        "sequence": e.sequence,
        "kind": ev.kind,
        "severity": severity(ev.severity),
        "indicator": ev.indicator,
        "observed": rfc3339(ev.observed_unix_ms),
        "received": rfc3339(e.received_unix_ms),
        "attributes": ev.attributes,
        "summary": ev.summary,
    })
}

/// What a command does, as JSON: `{"isolate": {"allow": […], "confirm_local": false}}`.
pub fn command_body_json(c: &v1::CommandBody) -> Value {
    use v1::command_body::Kind;
    let fields = match &c.kind {
        None => return Value::Null,
        Some(Kind::Ping(_) | Kind::Release(_)) => json!({}),
        Some(Kind::Isolate(i)) => json!({ "allow": i.allow, "confirm_local": i.confirm_local }),
        Some(Kind::Triage(t)) => json!({ "question": t.question, "path": t.path }),
        Some(Kind::Snapshot(s)) => {
            json!({ "files": s.files, "operator": s.operator, "reason": s.reason })
        }
        Some(Kind::Relearn(r)) => json!({ "sensor": r.sensor }),
        Some(Kind::Hunt(h)) => json!({
            "hunt": h.hunt_id,
            "question": h.question.as_ref().map(v1::HuntQuestion::describe).unwrap_or_default(),
        }),
        Some(Kind::StopHunt(s)) => json!({ "hunt": s.hunt_id }),
        Some(Kind::Capture(c)) => json!({
            "seconds": c.seconds,
            "filter": c.filter,
            "interfaces": c.interfaces,
            "max_bytes": c.max_bytes,
            "operator": c.operator,
            "reason": c.reason,
        }),
    };
    json!({ c.name(): fields })
}

/// A command as JSON.
pub fn command_json(c: &v1::CommandRecord) -> Value {
    json!({
        "id": c.id,
        "host_id": c.host_id,
        "verb": c.verb,
        "command": c.command.as_ref().map(command_body_json),
        "operator": c.operator,
        "reason": c.reason,
        "state": c.state,
        "created": rfc3339(c.created_unix_ms),
        "delivered": rfc3339(c.delivered_unix_ms),
        "finished": rfc3339(c.finished_unix_ms),
        "expires": rfc3339(c.expires_unix_ms),
        "result": c.result,
    })
}

/// Prints an array of JSON objects as an aligned table (columns from the first row).
pub fn print_rows(rows: &Value) {
    let Some(rows) = rows.as_array() else { return };
    let Some(first) = rows.first().and_then(Value::as_object) else {
        eprintln!("(no rows)");
        return;
    };
    let columns = column_order(first.keys().map(String::as_str));
    let mut widths: Vec<usize> = columns.iter().map(|c| header(c).len()).collect();
    for r in rows {
        for (i, c) in columns.iter().enumerate() {
            widths[i] = widths[i].max(cell(c, &r[*c]).chars().count().min(60));
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{:<w$}",
                    c.chars().take(60).collect::<String>(),
                    w = widths[i]
                )
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(columns.iter().map(|c| header(c)).collect()));
    for r in rows {
        println!(
            "{}",
            line(columns.iter().map(|c| cell(c, &r[*c])).collect())
        );
    }
}

/// Columns a responder scans first, in this order; the rest follow by name.
const FIRST_COLUMNS: &[&str] = &[
    "host_id",
    "pid",
    "ppid",
    "user",
    "uid",
    "gid",
    "exe",
    "deleted_exe",
    "comm",
    "unit",
    "enabled",
    "protocol",
    "local",
    "remote",
    "state",
    "name",
    "type",
    "mode",
    "size",
    "line",
    "host",
    "path",
];

/// Columns holding Unix times in seconds, printed as RFC 3339 UTC.
const TIME_COLUMNS: &[&str] = &["started", "since", "mtime", "ctime", "atime"];

/// The table's columns: [`FIRST_COLUMNS`] first, long free text (command lines) last.
pub fn column_order<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut columns: Vec<&str> = keys.collect();
    let rank = |c: &str| match FIRST_COLUMNS.iter().position(|f| *f == c) {
        Some(i) => (0, i),
        None if c == "cmdline" => (2, 0),
        None => (1, 0),
    };
    columns.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    columns
}

/// A column's header: `DELETED EXE` for `deleted_exe`.
fn header(column: &str) -> String {
    column.replace('_', " ").to_uppercase()
}

/// One cell as text: times in RFC 3339, `yes` for true and nothing for false.
pub fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if TIME_COLUMNS.contains(&column) => match n.as_i64() {
            Some(0) | None => String::new(),
            Some(secs) => rfc3339(secs.saturating_mul(1000)).replace(".000Z", "Z"),
        },
        Value::String(s) => inert(s).into_owned(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) | Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An action log entry as JSON.
pub fn action_json(a: &v1::ActionEntry) -> Value {
    json!({
        "seq": a.seq,
        "at": rfc3339(a.at_unix_ms),
        "actor": a.actor,
        "verb": a.verb,
        "target": a.target,
        "reason": a.reason,
        "result": a.result,
        "prev_sha256": a.prev_sha256,
        "sha256": a.sha256,
    })
}

/// An evidence record as JSON.
pub fn evidence_json(e: &v1::EvidenceRecord) -> Value {
    json!({
        "id": e.id,
        "state": e.state,
        "sha256": e.sha256,
        "size": e.size,
        "host_id": e.host_id,
        "command_id": e.command_id,
        "operator": e.operator,
        "reason": e.reason,
        "collected_started": e.collected_started,
        "collected_finished": e.collected_finished,
        "received": rfc3339(e.received_unix_ms),
        "verified": rfc3339(e.verified_unix_ms),
    })
}

/// Evidence with its custody events as JSON.
pub fn evidence_detail_json(d: &v1::EvidenceDetail) -> Value {
    json!({
        "record": d.record.as_ref().map(evidence_json),
        "custody": d.custody.iter().map(action_json).collect::<Vec<_>>(),
        "verified": d.verified,
        "verify_result": d.verify_result,
        // What the bundle holds (who, why, when, every artifact; a capture's
        // interfaces, filter and counts), null when disposed of or unreadable.
        "manifest": serde_json::from_str::<Value>(&d.manifest_json).unwrap_or(Value::Null),
    })
}

/// An incident as JSON.
pub fn incident_json(i: &v1::Incident) -> Value {
    json!({
        "id": i.id,
        "title": i.title,
        "severity": i.severity,
        "status": i.status,
        "commander": i.commander,
        "findings": i.findings,
        "notes": i.notes.iter().map(|n| json!({"at": rfc3339(n.at_unix_ms), "operator": n.operator, "text": n.text})).collect::<Vec<_>>(),
        "opened": rfc3339(i.opened_unix_ms),
        "opened_by": i.opened_by,
        "closed": rfc3339(i.closed_unix_ms),
    })
}

/// An incident with its affected hosts and timeline as JSON.
pub fn incident_detail_json(d: &v1::IncidentDetail) -> Value {
    json!({
        "incident": d.incident.as_ref().map(incident_json),
        "affected_hosts": d.affected_hosts,
        "timeline": d.timeline.iter().map(|t| json!({"at": rfc3339(t.at_unix_ms), "source": t.source, "text": t.text})).collect::<Vec<_>>(),
    })
}

/// The Sigma part of `bannin rules`.
fn print_sigma(r: &v1::ListRulesResponse) {
    if r.sigma_paths.is_empty() {
        println!("Sigma rules: none ([sigma] paths in the collector's config)");
        return;
    }
    say!(
        "Sigma rules ({} in force, {} refused; {} files from {}, loaded {}):",
        r.sigma_rules.len(),
        r.sigma_refused.len(),
        r.sigma_files,
        r.sigma_paths.join(", "),
        rfc3339(r.sigma_loaded_unix_ms)
    );
    for s in &r.sigma_rules {
        let last = if s.last_match_unix_ms == 0 {
            String::new()
        } else {
            format!(", last {}", rfc3339(s.last_match_unix_ms))
        };
        let quiet = if s.generates {
            ""
        } else {
            " (feeds correlations only)"
        };
        say!(
            "  {:<8} {:<18} {:>6} match(es){last}  {}{quiet}",
            severity(s.severity),
            s.logsource,
            s.matches,
            s.title
        );
        say!("      {}  {}", s.key, s.file);
        if !s.disabled.is_empty() {
            say!("      DISABLED: {}", s.disabled);
        }
    }
    for s in &r.sigma_refused {
        say!("  REFUSED  {} ({}): {}", s.title, s.file, s.reason);
    }
}

/// `bannin rules --json`.
pub fn rules_json(r: &v1::ListRulesResponse) -> Value {
    json!({
        "sigma": {
            "paths": r.sigma_paths,
            "files": r.sigma_files,
            "loaded": (r.sigma_loaded_unix_ms != 0).then(|| rfc3339(r.sigma_loaded_unix_ms)),
            "rules": r.sigma_rules.iter().map(|s| json!({
                "key": s.key,
                "id": (!s.id.is_empty()).then_some(&s.id),
                "title": s.title,
                "level": s.level,
                "severity": severity(s.severity),
                "status": s.status,
                "tags": s.tags,
                "falsepositives": s.falsepositives,
                "file": s.file,
                "logsource": s.logsource,
                "correlation": s.correlation,
                "generates": s.generates,
                "matches": s.matches,
                "last_match": (s.last_match_unix_ms != 0).then(|| rfc3339(s.last_match_unix_ms)),
                "disabled": (!s.disabled.is_empty()).then_some(&s.disabled),
            })).collect::<Vec<_>>(),
            "refused": r.sigma_refused.iter().map(|s| json!({
                "file": s.file,
                "title": s.title,
                "id": s.id,
                "reason": s.reason,
            })).collect::<Vec<_>>(),
        },
        "severity_overrides": r.severity_overrides,
        "suppressions": r.suppressions.iter().map(|s| json!({
            "name": s.name,
            "reason": s.reason,
            "kind": s.kind,
            "hosts": s.hosts,
            "labels": s.labels,
            "attributes": s.attributes,
            "expires": (s.expires_unix_ms != 0).then(|| rfc3339(s.expires_unix_ms)),
            "active": s.active,
            "hits": s.hits,
            "last_hit": (s.last_hit_unix_ms != 0).then(|| rfc3339(s.last_hit_unix_ms)),
        })).collect::<Vec<_>>(),
        "correlation": {
            "enabled": r.correlation_enabled,
            "keys": r.correlation_keys,
            "shed": r.correlation_shed,
            "rules": r.correlations.iter().map(|c| json!({
                "name": c.name,
                "kind": c.kind,
                "threshold": c.threshold,
                "window_secs": c.window_secs,
                "severity": severity(c.severity),
                "raised": c.raised,
                "description": c.description,
            })).collect::<Vec<_>>(),
        },
    })
}

/// `bannin rules`.
pub fn print_rules(r: &v1::ListRulesResponse) {
    print_sigma(r);
    println!();
    println!("Suppression rules ({}):", r.suppressions.len());
    if r.suppressions.is_empty() {
        println!("  none ([[suppress]] in the collector's config)");
    }
    for s in &r.suppressions {
        let mut what = Vec::new();
        if !s.kind.is_empty() {
            what.push(format!("kind {}", s.kind));
        }
        if !s.hosts.is_empty() {
            what.push(format!("hosts {}", s.hosts.join(",")));
        }
        for (k, v) in &s.labels {
            what.push(format!("label {k}={v}"));
        }
        for (k, v) in &s.attributes {
            what.push(format!("{k} ~ /{v}/"));
        }
        let expiry = if s.expires_unix_ms == 0 {
            "no expiry".to_owned()
        } else if s.active {
            format!("expires {}", rfc3339(s.expires_unix_ms))
        } else {
            format!("EXPIRED {}", rfc3339(s.expires_unix_ms))
        };
        let last = if s.last_hit_unix_ms == 0 {
            String::new()
        } else {
            format!(", last {}", rfc3339(s.last_hit_unix_ms))
        };
        println!("  {:<20} {} hit(s){last}; {expiry}", s.name, s.hits);
        println!("      {}", what.join("; "));
        println!("      reason: {}", s.reason);
    }
    println!();
    println!(
        "Correlation ({}; {} keys held, {} shed to stay bounded):",
        if r.correlation_enabled { "on" } else { "OFF" },
        r.correlation_keys,
        r.correlation_shed
    );
    for c in &r.correlations {
        println!(
            "  {:<17} {:<8} window {:>6} s  raised {:<5} {}",
            c.name,
            severity(c.severity),
            c.window_secs,
            c.raised,
            c.description
        );
    }
    println!();
    println!("Severity overrides ({}):", r.severity_overrides.len());
    for (k, v) in &r.severity_overrides {
        println!("  {k} = {v}");
    }
}

/// `bannin sinks --json`.
pub fn sinks_json(r: &v1::ListSinksResponse) -> Value {
    Value::Array(
        r.sinks
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "target": s.target,
                    "cursor": s.cursor,
                    "latest": s.latest,
                    "lag": s.latest.saturating_sub(s.cursor),
                    "delivered": s.delivered,
                    "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
                    "last_delivery": (s.last_delivery_unix_ms != 0).then(|| rfc3339(s.last_delivery_unix_ms)),
                    "runner": (!s.runner.is_empty()).then_some(&s.runner),
                })
            })
            .collect(),
    )
}

/// `bannin sinks`.
pub fn print_sinks(r: &v1::ListSinksResponse) {
    if r.sinks.is_empty() {
        println!("no export sinks ([[sink]] in the collector's config)");
        return;
    }
    println!(
        "{:<16} {:<44} {:>8} {:>8}  last delivery / error",
        "sink", "target", "cursor", "lag"
    );
    for s in &r.sinks {
        let mut state = if !s.last_error.is_empty() {
            format!("FAILING: {}", s.last_error)
        } else if s.last_delivery_unix_ms != 0 {
            rfc3339(s.last_delivery_unix_ms)
        } else {
            "-".into()
        };
        if !s.runner.is_empty() {
            state = format!("{state} (run by collector {})", s.runner);
        }
        println!(
            "{:<16} {:<44} {:>8} {:>8}  {state}",
            s.name,
            s.target,
            s.cursor,
            s.latest.saturating_sub(s.cursor)
        );
    }
}

/// An enrollment token as JSON.
pub fn token_json(t: &v1::EnrollToken) -> Value {
    json!({
        "id": t.id,
        "state": t.state,
        "uses": t.uses,
        "used": t.used,
        "expires": rfc3339(t.expires_unix_ms),
        "revoked": t.revoked,
        "labels": t.labels,
        "created_by": t.created_by,
        "created": rfc3339(t.created_unix_ms),
        "hosts": t.hosts,
        "note": t.note,
    })
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A hunt's progress in one line: `412/1000 answered · 3 with hits · 12 offline, pending`.
pub fn hunt_progress(h: &v1::Hunt) -> String {
    let mut line = format!(
        "{}/{} answered · {} with hits",
        h.answered, h.hosts_selected, h.with_hits
    );
    if h.failed > 0 {
        line.push_str(&format!(" · {} failed", h.failed));
    }
    if h.offline > 0 {
        line.push_str(&format!(" · {} offline, pending", h.offline));
    }
    line
}

/// Rows (JSON objects) as CSV with a header (RFC 4180 quoting), columns as
/// the tables order them; peer text made inert.
pub fn csv(rows: &[Value]) -> String {
    let mut keys = std::collections::BTreeSet::new();
    for r in rows {
        if let Some(o) = r.as_object() {
            keys.extend(o.keys().map(String::as_str));
        }
    }
    let columns = column_order(keys.into_iter());
    let quote = |s: &str| {
        // A cell a spreadsheet would run as a formula is quoted as text.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_owned()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &r[*c] {
                Value::String(s) => quote(&inert(s)),
                Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        let rows = [
            serde_json::json!({ "host_id": "web-01", "path": "/tmp/a,b \"c\"", "size": 3 }),
            serde_json::json!({ "host_id": "web-02", "path": "=HYPERLINK(\"x\")", "size": -1 }),
        ];
        let text = csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "host_id,size,path");
        assert_eq!(lines[1], r#"web-01,3,"/tmp/a,b ""c""""#);
        assert_eq!(lines[2], r#"web-02,-1,"'=HYPERLINK(""x"")""#);
    }

    #[test]
    fn triage_tables_put_pid_user_exe_first_and_command_lines_last() {
        let keys = [
            "cmdline",
            "comm",
            "deleted_exe",
            "exe",
            "pid",
            "ppid",
            "started",
            "uid",
            "user",
        ];
        assert_eq!(
            column_order(keys.into_iter()),
            [
                "pid",
                "ppid",
                "user",
                "uid",
                "exe",
                "deleted_exe",
                "comm",
                "started",
                "cmdline"
            ]
        );
        assert_eq!(header("deleted_exe"), "DELETED EXE");
    }

    #[test]
    fn text_from_peers_is_shown_not_obeyed() {
        assert_eq!(inert("web-07"), "web-07");
        assert_eq!(inert("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(inert("x\x1b]0;title\x07"), "x\\x1b]0;title\\x07");
        assert_eq!(inert("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(inert("two\nlines\r"), "two\\x0alines\\x0d");
        assert_eq!(inert("\u{9b}31m"), "\\x9b31m", "C1 CSI");
        assert_eq!(inert("zero\u{200b}width"), "zero\\u{200b}width");
    }

    #[test]
    fn cells_read_as_a_person_expects() {
        assert_eq!(cell("mtime", &json!(1_796_094_941)), "2026-12-01T03:15:41Z");
        assert_eq!(cell("mtime", &json!(0)), "");
        assert_eq!(cell("deleted_exe", &json!(false)), "");
        assert_eq!(cell("deleted_exe", &json!(true)), "yes");
        assert_eq!(cell("size", &json!(42)), "42");
    }
}
