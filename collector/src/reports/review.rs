//! The lessons-learned review (schema `bannin.review/1`): the timeline, time to
//! detect and to contain, and the guidance's review questions.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::*;
use crate::model::{Command, CommandBody, CommandState};

/// The lessons-learned review (schema `bannin.review/1`).
#[derive(Debug, Serialize)]
pub struct Review {
    /// `bannin.review/1`.
    pub schema: &'static str,
    /// When the review was made.
    pub generated_at: String,
    /// The incident.
    pub incident: IncidentSummary,
    /// Detection and containment figures.
    pub metrics: Metrics,
    /// Everything that happened, in order.
    pub timeline: Vec<TimelineItem>,
    /// The guidance's eight questions, with what the data says.
    pub questions: Vec<Question>,
}

/// Detection and containment figures. Times are RFC 3339; spans are seconds
/// (absent when the data has no answer yet).
#[derive(Debug, Default, Serialize)]
pub struct Metrics {
    /// The earliest observed indicator.
    pub first_indicator_at: String,
    /// The incident was opened.
    pub opened_at: String,
    /// First isolation of an affected host that took effect (or, without one,
    /// the status first set to contained).
    pub contained_at: String,
    /// What contained it.
    pub contained_by: String,
    /// Closed.
    pub closed_at: String,
    /// First indicator → incident opened, in milliseconds.
    pub time_to_detect_ms: Option<i64>,
    /// Incident opened → contained, in milliseconds (0 if contained before it was opened).
    pub time_to_contain_ms: Option<i64>,
    /// First indicator → contained, in milliseconds.
    pub indicator_to_containment_ms: Option<i64>,
    /// Incident opened → closed, in milliseconds.
    pub time_to_close_ms: Option<i64>,
}

/// One review question.
#[derive(Debug, Serialize)]
pub struct Question {
    /// 1 to 8.
    pub number: usize,
    /// The guidance's question.
    pub question: &'static str,
    /// What the data says (empty: for the review meeting to answer).
    pub from_the_data: Vec<String>,
}

/// Builds the lessons-learned review. `blind_spots` lists, per affected host,
/// the sensors that are not fully working.
pub fn review(facts: &Facts, blind_spots: &[(String, Vec<String>)]) -> Review {
    let (metrics, contained) = metrics(facts);
    let questions = ReviewQuestion::ALL
        .iter()
        .map(|&q| Question {
            number: q.number(),
            question: q.text(),
            from_the_data: match q {
                ReviewQuestion::WhatHappened => what_happened(facts, &metrics),
                ReviewQuestion::HowWellResponded => {
                    how_well_responded(facts, &metrics, contained.as_ref())
                }
                ReviewQuestion::NeededSooner => needed_sooner(facts, blind_spots),
                ReviewQuestion::InhibitedRecovery => inhibited_recovery(facts),
                ReviewQuestion::DoDifferently => do_differently(&metrics),
                ReviewQuestion::InformationSharing => information_sharing(facts),
                ReviewQuestion::CorrectiveActions => corrective_actions(facts),
                ReviewQuestion::IndicatorsToWatch => indicators_to_watch(facts),
            },
        })
        .collect();
    Review {
        schema: "bannin.review/1",
        generated_at: rfc3339(bannin_proto::now_unix_ms()),
        incident: IncidentSummary::of(&facts.incident),
        metrics,
        timeline: facts.timeline(),
        questions,
    }
}

/// The incident's times, and what contained it (when, and how).
fn metrics(facts: &Facts) -> (Metrics, Option<(i64, String)>) {
    let incident = &facts.incident;
    let first = facts.findings.first();
    let mut metrics = Metrics {
        first_indicator_at: first
            .map(|f| rfc3339(f.observed_unix_ms))
            .unwrap_or_default(),
        opened_at: rfc3339(incident.opened_unix_ms),
        closed_at: rfc3339(incident.closed_unix_ms),
        ..Metrics::default()
    };
    let contained = match facts.first_isolation() {
        Some(c) => Some((
            c.finished_unix_ms,
            format!(
                "isolation of {} (command {} by {})",
                c.host_id,
                c.wire_id(),
                c.operator
            ),
        )),
        None => facts.status_reached("contained").map(|(at, who)| {
            (
                at,
                format!("status set to contained by {who} (no isolation)"),
            )
        }),
    };
    if let Some(f) = first {
        metrics.time_to_detect_ms = Some(incident.opened_unix_ms - f.observed_unix_ms);
    }
    if let Some((at, by)) = &contained {
        metrics.contained_at = rfc3339(*at);
        metrics.contained_by = by.clone();
        metrics.time_to_contain_ms = Some((at - incident.opened_unix_ms).max(0));
        metrics.indicator_to_containment_ms = first.map(|f| at - f.observed_unix_ms);
    }
    if incident.closed_unix_ms > 0 {
        metrics.time_to_close_ms = Some(incident.closed_unix_ms - incident.opened_unix_ms);
    }

    (metrics, contained)
}

/// Findings per kind.
fn kinds(facts: &Facts) -> BTreeMap<&str, usize> {
    facts.findings.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.kind.as_str()).or_default() += 1;
        m
    })
}

/// 1. What happened, when, and how?
fn what_happened(facts: &Facts, metrics: &Metrics) -> Vec<String> {
    let mut out = Vec::new();
    let incident = &facts.incident;
    let first = facts.findings.first();
    if let Some(f) = first {
        out.push(format!(
            "The first indicator was finding #{} {} on {} at {}: {}.",
            f.id,
            f.kind,
            f.host_id,
            rfc3339(f.observed_unix_ms),
            f.summary
        ));
    }
    let kinds = kinds(facts);
    if !facts.findings.is_empty() {
        out.push(format!(
            "{} indicator(s) on {} host(s) ({}): {}.",
            facts.findings.len(),
            facts.affected.len(),
            facts.affected.join(", "),
            kinds
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.push(format!(
        "Incident opened {} by {} as {} ({}); status now {}.",
        metrics.opened_at,
        incident.opened_by,
        incident.severity,
        incident.severity.meaning(),
        incident.status
    ));
    out
}

/// 2. How well did staff respond?
fn how_well_responded(
    facts: &Facts,
    metrics: &Metrics,
    contained: Option<&(i64, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let incident = &facts.incident;
    if let Some(ms) = metrics.time_to_detect_ms {
        out.push(format!(
            "Time to detect (first indicator → incident opened): {}.",
            human_duration(ms)
        ));
    }
    match (metrics.time_to_contain_ms, &contained) {
        (Some(ms), Some((_, by))) => out.push(format!(
            "Time to contain (incident opened → contained): {} — {by}.",
            human_duration(ms)
        )),
        _ => out.push(
            "Not contained: no affected host was isolated and the status never reached contained."
                .into(),
        ),
    }
    if let Some(ms) = metrics.time_to_close_ms {
        out.push(format!(
            "Time to close (opened → closed): {}.",
            human_duration(ms)
        ));
    }
    let unhandled: Vec<String> = facts
        .findings
        .iter()
        .filter(|f| f.history.is_empty())
        .map(|f| format!("#{}", f.id))
        .collect();
    if !unhandled.is_empty() {
        out.push(format!(
            "Findings never acknowledged or resolved: {}.",
            unhandled.join(", ")
        ));
    }
    let operators: BTreeSet<&str> = facts
        .actions
        .iter()
        .map(|(_, a)| a.actor.as_str())
        .filter(|a| !a.starts_with("host:") && *a != "collector")
        .collect();
    out.push(format!(
        "{} action(s) recorded by {} operator(s) ({}); {} note(s) kept.",
        facts
            .actions
            .iter()
            .filter(|(_, a)| !a.actor.starts_with("host:") && a.actor != "collector")
            .count(),
        operators.len(),
        operators.iter().copied().collect::<Vec<_>>().join(", "),
        incident.notes.len()
    ));
    let isolated_at = facts.first_isolation().map(|c| c.finished_unix_ms);
    let snapshots: Vec<&Command> = facts
        .commands
        .iter()
        .filter(|c| matches!(c.body, CommandBody::Snapshot { .. }))
        .filter(|c| c.state == CommandState::Succeeded)
        .collect();
    match (isolated_at, snapshots.first()) {
        (Some(iso), Some(s)) if s.finished_unix_ms <= iso => out.push(
            "Forensic evidence was collected before the first isolation (volatile state preserved).".into(),
        ),
        (Some(_), Some(_)) => out.push(
            "The first snapshot was taken after the first isolation: volatile state (connections, processes) may have changed.".into(),
        ),
        (Some(_), None) => out.push("Hosts were isolated but no forensic snapshot was taken.".into()),
        _ => {}
    }
    out
}

/// 3. What information was needed sooner?
fn needed_sooner(facts: &Facts, blind_spots: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    let incident = &facts.incident;
    let first = facts.findings.first();
    if let Some(f) = first {
        let handled = f.history.first().map(|h| h.at_unix_ms);
        match handled {
            Some(at) => out.push(format!(
                "The first indicator waited {} between being observed and first being handled.",
                human_duration(at - f.observed_unix_ms)
            )),
            None => out.push("The first indicator was never acknowledged.".into()),
        }
        let late = f.received_unix_ms - f.observed_unix_ms;
        if late > 60_000 {
            out.push(format!(
                "The first indicator reached the collector {} after it was observed (the host was offline or the link was down).",
                human_duration(late)
            ));
        }
    }
    let before: Vec<String> = facts
        .findings
        .iter()
        .skip(1)
        .filter(|f| f.observed_unix_ms < incident.opened_unix_ms)
        .map(|f| format!("#{} {} on {}", f.id, f.kind, f.host_id))
        .collect();
    if !before.is_empty() {
        out.push(format!(
            "Other indicators were already there before the incident was opened: {}.",
            before.join(", ")
        ));
    }
    for (host, gaps) in blind_spots {
        out.push(format!(
            "Sensors not fully working on {host}: {}.",
            gaps.join("; ")
        ));
    }
    out
}

/// 4. Steps that might have inhibited recovery.
fn inhibited_recovery(facts: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for c in &facts.commands {
        if matches!(c.state, CommandState::Failed | CommandState::Expired) {
            out.push(format!(
                "{} on {} (command {}, by {}) {}: {}",
                c.body.name(),
                c.host_id,
                c.wire_id(),
                c.operator,
                c.state.as_str(),
                c.result.chars().take(200).collect::<String>()
            ));
        }
    }
    for (_, a) in &facts.actions {
        if a.verb == "isolation.reconcile" && a.result.contains("failed") {
            out.push(format!(
                "{}: isolation re-apply failed: {}",
                a.actor, a.result
            ));
        }
        if a.verb.starts_with("denied.") {
            out.push(format!(
                "{} was denied {}: {}",
                a.actor,
                &a.verb[7..],
                a.result
            ));
        }
    }
    for e in &facts.evidence {
        if e.disposed {
            out.push(format!(
                "Evidence {} from {} was disposed of.",
                e.id, e.host_id
            ));
        }
    }
    out
}

/// 5. What would staff do differently? The meeting answers; the data hints.
fn do_differently(metrics: &Metrics) -> Vec<String> {
    let mut out = Vec::new();
    if metrics.time_to_contain_ms.is_none() {
        out.push(
            "Decide earlier whether to isolate affected hosts (nothing was contained).".into(),
        );
    }
    out
}

/// 6. Information sharing.
fn information_sharing(facts: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for (_, a) in &facts.actions {
        if a.verb == "evidence.exported" {
            out.push(format!(
                "{} exported {} ({}): {}",
                a.actor, a.target, a.reason, a.result
            ));
        }
    }
    if out.is_empty() {
        out.push("No evidence was exported to another party.".into());
    }
    out
}

/// 7. Corrective actions.
fn corrective_actions(facts: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    let open: Vec<String> = facts
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.state,
                crate::model::FindingState::New | crate::model::FindingState::Acknowledged
            )
        })
        .map(|f| format!("#{} {} on {}", f.id, f.kind, f.host_id))
        .collect();
    if !open.is_empty() {
        out.push(format!("Still unresolved: {}.", open.join(", ")));
    }
    out
}

/// 8. Precursors and indicators to watch.
fn indicators_to_watch(facts: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    let kinds = kinds(facts);
    for (kind, n) in &kinds {
        let hosts: BTreeSet<&str> = facts
            .findings
            .iter()
            .filter(|f| f.kind == *kind)
            .map(|f| f.host_id.as_str())
            .collect();
        out.push(format!(
            "{kind} ({n} finding(s) on {})",
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}
