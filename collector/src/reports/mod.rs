//! The guidance's two incident reports, built from the collector's own data:
//! the **scoping brief** (what is known now, answering the scoping questions)
//! and the **lessons-learned review** (the timeline, time to detect and to
//! contain, and the review questions as headings).
//!
//! Each report is a serde document (versioned by its `schema` field) and a
//! Markdown rendering of the same document. Everything an attacker can
//! influence (file names, summaries, labels) is escaped in the Markdown, so a
//! hostile name cannot forge a heading or a link in a report.
//!
//! # Layout
//!
//! - this file: the facts gathered once per incident ([`Facts`], [`Scope`]), times
//!   and durations;
//! - `brief`: the scoping brief's document and how it is built;
//! - `review`: the lessons-learned review's document and how it is built;
//! - `markdown`: both reports rendered as Markdown, attacker text escaped ([`md`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{Action, Command, CommandBody, CommandState, EvidenceRecord, Finding, Incident};
use crate::store::{Store, StoreError};

/// Most events of one kind read per host for the network picture.
const MAX_NETWORK_EVENTS: usize = 20_000;
/// Most peers listed per host in the brief.
const MAX_PEERS_PER_HOST: usize = 200;

/// The guidance's lessons-learned questions, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReviewQuestion {
    /// What happened, when, and how?
    WhatHappened,
    /// How well did staff and management respond?
    HowWellResponded,
    /// What information was needed sooner?
    NeededSooner,
    /// Were any steps taken that might have inhibited recovery?
    InhibitedRecovery,
    /// What would staff do differently next time?
    DoDifferently,
    /// How could information sharing have been improved?
    InformationSharing,
    /// What corrective actions can prevent similar incidents?
    CorrectiveActions,
    /// What precursors or indicators should be watched for?
    IndicatorsToWatch,
}

impl ReviewQuestion {
    /// Every question, in the guidance's order.
    pub const ALL: [ReviewQuestion; 8] = [
        ReviewQuestion::WhatHappened,
        ReviewQuestion::HowWellResponded,
        ReviewQuestion::NeededSooner,
        ReviewQuestion::InhibitedRecovery,
        ReviewQuestion::DoDifferently,
        ReviewQuestion::InformationSharing,
        ReviewQuestion::CorrectiveActions,
        ReviewQuestion::IndicatorsToWatch,
    ];

    /// Its number in the guidance, from 1.
    pub fn number(self) -> usize {
        self as usize + 1
    }

    /// The question as the guidance asks it.
    pub fn text(self) -> &'static str {
        match self {
            ReviewQuestion::WhatHappened => "What happened, when, and how?",
            ReviewQuestion::HowWellResponded => {
                "How well did staff and management respond? Were the documented procedures followed, and were they adequate?"
            }
            ReviewQuestion::NeededSooner => "What information was needed sooner?",
            ReviewQuestion::InhibitedRecovery => {
                "Were any steps or actions taken that might have inhibited recovery?"
            }
            ReviewQuestion::DoDifferently => {
                "What would staff and management do differently the next time a similar incident occurs?"
            }
            ReviewQuestion::InformationSharing => {
                "How could information sharing with other organizations have been improved?"
            }
            ReviewQuestion::CorrectiveActions => {
                "What corrective actions can prevent similar incidents in the future?"
            }
            ReviewQuestion::IndicatorsToWatch => {
                "What precursors or indicators should be watched for in the future to detect similar incidents?"
            }
        }
    }
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineItem {
    /// When (Unix ms).
    #[serde(skip)]
    pub at_unix_ms: i64,
    /// When (RFC 3339).
    pub at: String,
    /// `finding`, `action` or `note`.
    pub source: &'static str,
    /// What.
    pub text: String,
}

/// Everything the collector knows about one incident, read once.
pub struct Facts {
    /// The incident.
    pub incident: Incident,
    /// Its findings, first observed first.
    pub findings: Vec<Finding>,
    /// Hosts of its findings.
    pub affected: Vec<String>,
    /// Action log entries about the incident or its hosts, oldest first.
    pub actions: Vec<(u64, Action)>,
    /// Commands to affected hosts, oldest first.
    pub commands: Vec<Command>,
    /// Evidence from affected hosts.
    pub evidence: Vec<EvidenceRecord>,
    /// Hunts attached to the incident, with their answers.
    pub hunts: Vec<(crate::model::Hunt, Vec<crate::model::HuntAnswer>)>,
}

impl Facts {
    /// Reads the incident's findings, actions, commands and evidence.
    pub fn gather(store: &Store, incident: Incident) -> Result<Self, StoreError> {
        let mut findings = Vec::new();
        for id in &incident.findings {
            if let Some(f) = store.finding(*id)? {
                findings.push(f);
            }
        }
        findings.sort_by_key(|f| (f.observed_unix_ms, f.id));
        let affected: Vec<String> = findings
            .iter()
            .map(|f| f.host_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let scope = Scope::new(store, &incident, &affected)?;
        let actions = store
            .actions_matching(|a| scope.concerns(&a.action))?
            .into_iter()
            .map(|a| (a.seq, a.action))
            .collect();
        let mut commands: Vec<Command> = store
            .commands()?
            .into_iter()
            .filter(|c| affected.contains(&c.host_id))
            .collect();
        commands.sort_by_key(|c| c.id);
        let evidence = store
            .evidence_list()?
            .into_iter()
            .filter(|e| affected.contains(&e.host_id))
            .collect();
        let mut hunts = Vec::new();
        for hunt in store.hunts()? {
            if hunt.incident == incident.id {
                let answers = store.hunt_answers(hunt.id)?;
                hunts.push((hunt, answers));
            }
        }
        Ok(Self {
            incident,
            findings,
            affected,
            actions,
            commands,
            evidence,
            hunts,
        })
    }

    /// An action's result as a report shows it: a triage answer (the log
    /// keeps only its first characters, cut JSON) as its size and the command
    /// whose page holds it as a table; anything else as logged.
    pub fn action_result(&self, a: &Action) -> String {
        if a.verb != "result.triage" {
            return a.result.clone();
        }
        let answer = self.commands.iter().find_map(|c| match &c.body {
            CommandBody::Triage { question, .. } if c.wire_id() == a.target => {
                let rows = serde_json::from_str::<serde_json::Value>(&c.result)
                    .ok()
                    .and_then(|v| v["rows"].as_array().map(Vec::len));
                Some((question.clone(), rows, c.state.as_str()))
            }
            _ => None,
        });
        match answer {
            Some((question, Some(rows), state)) => format!(
                "{state}: {question}, {rows} row{} (the table: command {})",
                if rows == 1 { "" } else { "s" },
                a.target
            ),
            _ => a.result.clone(),
        }
    }

    /// Findings, actions and notes in time order.
    pub fn timeline(&self) -> Vec<TimelineItem> {
        let mut out = Vec::new();
        for f in &self.findings {
            out.push(item(
                f.observed_unix_ms,
                "finding",
                format!(
                    "#{} {} {} on {}: {}",
                    f.id,
                    f.severity_name(),
                    f.kind,
                    f.host_id,
                    f.summary
                ),
            ));
        }
        for (_, a) in &self.actions {
            let mut text = format!("{} {} {}", a.actor, a.verb, a.target);
            if !a.reason.is_empty() {
                let _ = write!(text, " (reason: {})", a.reason);
            }
            let result = self.action_result(a);
            if !result.is_empty() {
                let _ = write!(text, ": {result}");
            }
            out.push(item(a.at_unix_ms, "action", text));
        }
        for n in &self.incident.notes {
            out.push(item(
                n.at_unix_ms,
                "note",
                format!("{}: {}", n.operator, n.text),
            ));
        }
        out.sort_by_key(|t| t.at_unix_ms);
        out
    }

    /// The first isolation of an affected host that took effect at or after the
    /// first indicator.
    fn first_isolation(&self) -> Option<&Command> {
        let first = self.findings.first()?.observed_unix_ms;
        self.commands
            .iter()
            .filter(|c| {
                matches!(c.body, CommandBody::Isolate(_))
                    && c.state == CommandState::Succeeded
                    && c.finished_unix_ms >= first
            })
            .min_by_key(|c| c.finished_unix_ms)
    }

    /// When the status was first set to `status` (from the action log).
    fn status_reached(&self, status: &str) -> Option<(i64, String)> {
        let needle = format!("→ {status}");
        self.actions
            .iter()
            .find(|(_, a)| {
                a.verb == "incident.update"
                    && a.target == self.incident.target()
                    && a.result
                        .split("; ")
                        .any(|c| c.starts_with("status ") && c.ends_with(&needle))
            })
            .map(|(_, a)| (a.at_unix_ms, a.actor.clone()))
    }
}

/// What belongs to an incident's story in the action log: the incident
/// itself, commands and results of its affected hosts, and the custody of
/// evidence taken from them.
pub struct Scope {
    incident: String,
    hosts: Vec<String>,
    evidence: BTreeSet<String>,
}

impl Scope {
    /// The scope of `incident`, whose findings are on `hosts`.
    pub fn new(store: &Store, incident: &Incident, hosts: &[String]) -> Result<Self, StoreError> {
        Ok(Self {
            incident: incident.target(),
            hosts: hosts.to_vec(),
            evidence: store
                .evidence_list()?
                .into_iter()
                .filter(|e| hosts.contains(&e.host_id))
                .map(|e| e.target())
                .collect(),
        })
    }

    /// Whether `action` is part of the story.
    pub fn concerns(&self, action: &Action) -> bool {
        action.target == self.incident
            || self.evidence.contains(&action.target)
            || self.hosts.iter().any(|h| {
                action.target == *h
                    || action.actor == format!("host:{h}")
                    || action.result.contains(&format!("from {h} "))
            })
    }
}

fn item(at_unix_ms: i64, source: &'static str, text: String) -> TimelineItem {
    TimelineItem {
        at_unix_ms,
        at: rfc3339(at_unix_ms),
        source,
        text,
    }
}

pub use bannin_proto::rfc3339;

/// `1d 02h 03m 04s`, `3m 04s`, `12s`, `850 ms`; negative spans get a minus sign.
pub fn human_duration(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", human_duration(-ms));
    }
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m {s:02}s"),
    }
}

mod brief;
mod markdown;
mod review;

pub use brief::*;
pub use markdown::md;
pub use review::*;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::brief::{classify, split_endpoint};
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_000), "12s");
        assert_eq!(human_duration(184_000), "3m 04s");
        assert_eq!(human_duration(7_390_000), "2h 03m 10s");
        assert_eq!(human_duration(93_784_000), "1d 02h 03m 04s");
        assert_eq!(human_duration(-5_000), "-5s");
    }

    #[test]
    fn markdown_escaping_defeats_hostile_names() {
        let hostile = "x](http://evil)\n# Owned | <script>";
        let escaped = md(hostile);
        assert!(!escaped.contains('\n'));
        assert!(escaped.contains("\\](http"), "{escaped}");
        assert!(
            escaped
                .match_indices(['[', ']', '#', '|', '<'])
                .all(|(i, _)| escaped[..i].ends_with('\\')),
            "every special character is escaped: {escaped}"
        );
        assert!(escaped.contains("\\#") && escaped.contains("\\|") && escaped.contains("\\<"));
    }

    #[test]
    fn markdown_escaping_leaves_what_markdown_would_not_interpret() {
        assert_eq!(md("process.suspicious_exec"), "process.suspicious_exec");
        assert_eq!(md("_init"), "\\_init");
        assert_eq!(md("a_ b"), "a\\_ b");
        assert_eq!(md("__x__"), "\\_\\_x\\_\\_");
    }

    #[test]
    fn peers_are_classified() {
        let owners: BTreeMap<IpAddr, String> = [
            ("10.0.0.5".parse().expect("ip"), "db-1".to_owned()),
            ("10.0.0.6".parse().expect("ip"), "web-1".to_owned()),
        ]
        .into();
        let affected = vec!["web-1".to_owned()];
        let c = |a: &str| classify(a.parse().expect("ip"), &owners, &affected);
        assert_eq!(c("10.0.0.6"), "affected host web-1");
        assert_eq!(c("10.0.0.5"), "fleet host db-1");
        assert_eq!(c("127.0.0.1"), "loopback");
        assert_eq!(c("::ffff:127.0.0.1"), "loopback");
        assert_eq!(c("192.168.1.9"), "private network");
        assert_eq!(c("fd00::1"), "private network");
        assert_eq!(c("8.8.8.8"), "internet");
        assert_eq!(c("2001:db8::1"), "internet");
    }

    #[test]
    fn endpoints_split() {
        assert_eq!(
            split_endpoint("[::1]:22"),
            Some(("::1".parse().expect("ip"), 22))
        );
        assert_eq!(
            split_endpoint("10.1.2.3:443"),
            Some(("10.1.2.3".parse().expect("ip"), 443))
        );
        assert_eq!(split_endpoint("nonsense"), None);
    }
}
