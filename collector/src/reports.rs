//! The guidance's two incident reports, built from the collector's own data:
//! the **scoping brief** (what is known now, answering the scoping questions)
//! and the **lessons-learned review** (the timeline, time to detect and to
//! contain, and the review questions as headings).
//!
//! Each report is a serde document (versioned by its `schema` field) and a
//! Markdown rendering of the same document. Everything an attacker can
//! influence (file names, summaries, labels) is escaped in the Markdown, so a
//! hostile name cannot forge a heading or a link in a report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::hosts::HostView;
use crate::model::{Action, Command, CommandState, Event, EvidenceRecord, Finding, Incident};
use crate::store::{EventQuery, Store, StoreError};

/// Most events of one kind read per host for the network picture.
const MAX_NETWORK_EVENTS: usize = 20_000;
/// Most peers listed per host in the brief.
const MAX_PEERS_PER_HOST: usize = 200;

/// The guidance's lessons-learned questions, in its order.
pub const REVIEW_QUESTIONS: [&str; 8] = [
    "What happened, when, and how?",
    "How well did staff and management respond? Were the documented procedures followed, and were they adequate?",
    "What information was needed sooner?",
    "Were any steps or actions taken that might have inhibited recovery?",
    "What would staff and management do differently the next time a similar incident occurs?",
    "How could information sharing with other organizations have been improved?",
    "What corrective actions can prevent similar incidents in the future?",
    "What precursors or indicators should be watched for in the future to detect similar incidents?",
];

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
            .actions()?
            .into_iter()
            .filter(|a| scope.concerns(&a.action))
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
        Ok(Self {
            incident,
            findings,
            affected,
            actions,
            commands,
            evidence,
        })
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
            if !a.result.is_empty() {
                let _ = write!(text, ": {}", a.result);
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
                c.verb == "isolate"
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

/// RFC 3339 UTC time of a Unix millisecond timestamp ("" for 0).
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    if ms == 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

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

/// Escapes text for Markdown: no heading, emphasis, link, table or HTML can be
/// forged, and it stays on one line.
pub fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The scoping brief
// ---------------------------------------------------------------------------

/// The scoping brief (schema `bannin.brief/1`).
#[derive(Debug, Serialize)]
pub struct Brief {
    /// `bannin.brief/1`.
    pub schema: &'static str,
    /// When the brief was made.
    pub generated_at: String,
    /// The incident.
    pub incident: IncidentSummary,
    /// What was noticed first (none if the incident has no findings yet).
    pub first_indicator: Option<FirstIndicator>,
    /// Every indicator attached, first observed first.
    pub indicators: Vec<IndicatorLine>,
    /// Affected assets.
    pub assets: Vec<Asset>,
    /// Response actions already taken, from the action log.
    pub actions_taken: Vec<ActionLine>,
    /// The network picture.
    pub network: Network,
    /// Affected sites: location → hosts.
    pub sites: BTreeMap<String, Vec<String>>,
}

/// The incident's header.
#[derive(Debug, Serialize)]
pub struct IncidentSummary {
    /// Id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// On the guidance's scale.
    pub severity: String,
    /// What that level means.
    pub severity_meaning: &'static str,
    /// Lifecycle status.
    pub status: String,
    /// Commander.
    pub commander: String,
    /// Opened when.
    pub opened_at: String,
    /// Opened by.
    pub opened_by: String,
    /// Closed when ("" if open).
    pub closed_at: String,
}

impl IncidentSummary {
    fn of(i: &Incident) -> Self {
        Self {
            id: i.id,
            title: i.title.clone(),
            severity: i.severity.to_string(),
            severity_meaning: i.severity.meaning(),
            status: i.status.to_string(),
            commander: i.commander.clone(),
            opened_at: rfc3339(i.opened_unix_ms),
            opened_by: i.opened_by.clone(),
            closed_at: rfc3339(i.closed_unix_ms),
        }
    }
}

/// The first indicator: what, where, from which source, seen by whom and when.
#[derive(Debug, Serialize)]
pub struct FirstIndicator {
    /// Finding id.
    pub finding: u64,
    /// Finding kind.
    pub kind: String,
    /// Severity.
    pub severity: &'static str,
    /// Host.
    pub host: String,
    /// When it was observed.
    pub observed_at: String,
    /// When the collector had it.
    pub received_at: String,
    /// Where it came from (which sensor or channel).
    pub source: String,
    /// Who detected it (the agent, the collector, or the reporting operator).
    pub detected_by: String,
    /// The first person to act on it, and when ("" if nobody yet).
    pub first_handled_by: String,
    /// When that was.
    pub first_handled_at: String,
    /// Summary.
    pub summary: String,
}

/// One attached indicator.
#[derive(Debug, Serialize)]
pub struct IndicatorLine {
    /// Finding id.
    pub finding: u64,
    /// Kind.
    pub kind: String,
    /// Severity.
    pub severity: &'static str,
    /// Host.
    pub host: String,
    /// First observed.
    pub observed_at: String,
    /// Folded observations.
    pub count: u64,
    /// Triage state.
    pub state: &'static str,
    /// Summary.
    pub summary: String,
}

/// A service seen on a host: a listening socket and who owns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Service {
    /// tcp, tcp6, udp, udp6.
    pub protocol: String,
    /// Bound address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Owning executable, when known.
    pub exe: String,
}

/// An affected asset.
#[derive(Debug, Serialize)]
pub struct Asset {
    /// Host id.
    pub host_id: String,
    /// Hostname.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Kernel.
    pub kernel: String,
    /// Interface addresses.
    pub addresses: Vec<String>,
    /// Agent version.
    pub agent_version: String,
    /// Labels in force.
    pub labels: BTreeMap<String, String>,
    /// Location from the labels ("" if unlabelled).
    pub location: String,
    /// Connected now.
    pub online: bool,
    /// Last heard from.
    pub last_seen: String,
    /// Isolation state.
    pub isolation: String,
    /// Listening services.
    pub services: Vec<Service>,
    /// Executables seen owning its sockets, and enabled system units (from triage).
    pub applications: Vec<String>,
    /// Sensors not fully working, with why.
    pub sensor_gaps: Vec<String>,
    /// Indicators on this host.
    pub indicators: usize,
}

/// One action already taken.
#[derive(Debug, Serialize)]
pub struct ActionLine {
    /// Action log position.
    pub seq: u64,
    /// When.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub verb: String,
    /// On what.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Outcome.
    pub result: String,
}

/// A connection seen from an affected host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Flow {
    /// The affected host.
    pub host: String,
    /// `outbound` (the host connected out), `inbound`, or `unknown`.
    pub direction: String,
    /// tcp, tcp6, udp, udp6.
    pub protocol: String,
    /// The other end's address.
    pub peer: String,
    /// Port on the serving side.
    pub port: u16,
    /// What the peer is: `affected host X`, `fleet host X`, `loopback`,
    /// `private network`, `link-local` or `internet`.
    pub peer_is: String,
    /// Executable on the affected host, when known.
    pub exe: String,
    /// Where this was seen: `sensor` (telemetry) or `triage` (a live answer).
    pub seen_by: &'static str,
}

/// The network picture of an incident.
#[derive(Debug, Default, Serialize)]
pub struct Network {
    /// Connections between affected hosts.
    pub among_affected: Vec<Flow>,
    /// Everything else the affected hosts were seen talking to.
    pub reaches: Vec<Flow>,
    /// Peers left out past the per-host cap.
    pub omitted: usize,
    /// What the picture is built from, and its limits.
    pub sources: Vec<String>,
}

/// Builds the scoping brief.
pub fn brief(
    store: &Store,
    facts: &Facts,
    fleet: &[(HostView, String)],
) -> Result<Brief, StoreError> {
    let incident = &facts.incident;
    let first_indicator = facts.findings.first().map(|f| {
        let handled = f.history.first();
        FirstIndicator {
            finding: f.id,
            kind: f.kind.clone(),
            severity: f.severity_name(),
            host: f.host_id.clone(),
            observed_at: rfc3339(f.observed_unix_ms),
            received_at: rfc3339(f.received_unix_ms),
            source: source_of(f),
            detected_by: detected_by(f),
            first_handled_by: handled.map(|h| h.operator.clone()).unwrap_or_default(),
            first_handled_at: handled.map(|h| rfc3339(h.at_unix_ms)).unwrap_or_default(),
            summary: f.summary.clone(),
        }
    });
    let indicators = facts
        .findings
        .iter()
        .map(|f| IndicatorLine {
            finding: f.id,
            kind: f.kind.clone(),
            severity: f.severity_name(),
            host: f.host_id.clone(),
            observed_at: rfc3339(f.observed_unix_ms),
            count: f.count,
            state: f.state.as_str(),
            summary: f.summary.clone(),
        })
        .collect();

    // Every known host's addresses, to name the peers that are ours.
    let mut owners: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (view, _) in fleet {
        for a in &view.record.addresses {
            if let Ok(ip) = a.parse::<IpAddr>() {
                owners.insert(ip, view.record.host_id.clone());
            }
        }
    }
    let mut network = Network {
        sources: vec![
            "listening sockets from the agents' net_listener telemetry".into(),
            "connections from net.connection telemetry, where an agent sends it".into(),
            "connections from the latest `triage connections` answer of each host".into(),
        ],
        ..Network::default()
    };
    let mut assets = Vec::new();
    let mut sites: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for host in &facts.affected {
        let known = fleet.iter().find(|(v, _)| v.record.host_id == *host);
        let labels = store.host_labels(host)?.effective();
        let location = bannin_proto::labels::location(&labels);
        sites
            .entry(if location.is_empty() {
                "(no location label)".to_owned()
            } else {
                location.clone()
            })
            .or_default()
            .push(host.clone());
        // One pass over the host's network telemetry (newest batches last).
        let query = EventQuery {
            kind: "net.*".into(),
            limit: MAX_NETWORK_EVENTS,
            ..EventQuery::default()
        };
        let (events, truncated) = store.events(host, &query)?;
        if truncated {
            network.sources.push(format!(
                "only the first {MAX_NETWORK_EVENTS} network events of {host} were read"
            ));
        }
        let (services, mut applications) = services(&events);
        let (flows, omitted) = flows(&events, host, &facts.commands, &owners, &facts.affected);
        network.omitted += omitted;
        for flow in flows {
            if !flow.exe.is_empty() {
                applications.insert(flow.exe.clone());
            }
            if flow.peer_is.starts_with("affected host") {
                network.among_affected.push(flow);
            } else {
                network.reaches.push(flow);
            }
        }
        applications.extend(enabled_units(&facts.commands, host));
        let (record, online, isolation) = match known {
            Some((v, iso)) => (Some(&v.record), v.online, iso.clone()),
            None => (None, false, "unknown".into()),
        };
        let field = |f: fn(&crate::model::HostRecord) -> String| record.map(f).unwrap_or_default();
        assets.push(Asset {
            host_id: host.clone(),
            hostname: field(|r| r.hostname.clone()),
            os: field(|r| r.os.clone()),
            kernel: field(|r| r.kernel.clone()),
            addresses: record.map(|r| r.addresses.clone()).unwrap_or_default(),
            agent_version: field(|r| r.agent_version.clone()),
            labels,
            location,
            online,
            last_seen: record
                .map(|r| rfc3339(r.last_seen_unix_ms))
                .unwrap_or_default(),
            isolation,
            services,
            applications: applications.into_iter().collect(),
            sensor_gaps: record.map(sensor_gaps).unwrap_or_default(),
            indicators: facts.findings.iter().filter(|f| f.host_id == *host).count(),
        });
    }
    network.among_affected.sort();
    network.among_affected.dedup();
    network.reaches.sort();
    network.reaches.dedup();
    let actions_taken = facts
        .actions
        .iter()
        .filter(|(_, a)| is_response_action(a))
        .map(|(seq, a)| ActionLine {
            seq: *seq,
            at: rfc3339(a.at_unix_ms),
            actor: a.actor.clone(),
            verb: a.verb.clone(),
            target: a.target.clone(),
            reason: a.reason.clone(),
            result: a.result.clone(),
        })
        .collect();
    Ok(Brief {
        schema: "bannin.brief/1",
        generated_at: rfc3339(bannin_proto::now_unix_ms()),
        incident: IncidentSummary::of(incident),
        first_indicator,
        indicators,
        assets,
        actions_taken,
        network,
        sites,
    })
}

/// The sensors of a host that are not fully working, with why.
pub fn sensor_gaps(record: &crate::model::HostRecord) -> Vec<String> {
    record
        .sensors
        .iter()
        .filter(|s| s.state != "ok")
        .map(|s| {
            if s.detail.is_empty() {
                format!("{}: {}", s.name, s.state)
            } else {
                format!("{}: {} ({})", s.name, s.state, s.detail)
            }
        })
        .collect()
}

/// Response actions: commands, their results, evidence custody, finding
/// triage and incident changes — not reads, not denials.
fn is_response_action(a: &Action) -> bool {
    !a.verb.starts_with("denied.")
}

/// Which sensor or channel a finding came from.
fn source_of(f: &Finding) -> String {
    let kind = f.kind.as_str();
    let (what, by_agent) = match kind.split('.').next().unwrap_or(kind) {
        "file" => ("file sensors (watched directories, critical paths)", true),
        "net" => ("network sensors (sockets from /proc/net)", true),
        "process" => ("process sensors (exec events)", true),
        "account" => ("account sensors (auth logs, passwd/group)", true),
        "service" | "system" | "logging" => ("system configuration sensors", true),
        "hardware" => ("hardware inventory", true),
        "traffic" | "resource" => ("resource baselines", true),
        "log" => ("log pattern rules", true),
        "ids" => ("network IDS alerts (Suricata eve.json)", true),
        "av" => ("antivirus detections (ClamAV)", true),
        "host" | "fleet" => ("the collector's heartbeat watch", false),
        "report" => ("a report entered by an operator", false),
        "monitor" => ("an alert from monitoring (webhook)", false),
        "correlation" | "spread" | "lateral" => ("the collector's cross-host correlation", false),
        _ => ("a sensor", true),
    };
    if by_agent {
        format!("{what} of the Bannin agent on {}", f.host_id)
    } else {
        what.to_owned()
    }
}

fn detected_by(f: &Finding) -> String {
    if f.kind.starts_with("report.") {
        return f
            .attributes
            .get("operator")
            .map(|o| format!("operator {o}"))
            .unwrap_or_else(|| "an operator".into());
    }
    match source_of(f).contains("Bannin agent") {
        true => format!("agent on {}", f.host_id),
        false => "collector".into(),
    }
}

/// Listening services of a host from its net_listener telemetry: the
/// baseline, plus new listeners, minus closed ones. Returns the services and
/// the executables owning them.
fn services(events: &[(u64, Event)]) -> (Vec<Service>, BTreeSet<String>) {
    let mut current: BTreeMap<String, Service> = BTreeMap::new();
    let mut apps = BTreeSet::new();
    let mut events: Vec<&(u64, Event)> = events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e.kind.as_str(),
                "net.listener" | "net.new_listener" | "net.listener_closed"
            )
        })
        .collect();
    events.sort_by_key(|(seq, e)| (*seq, e.observed_unix_ms));
    for (_, e) in events {
        let a = &e.attributes;
        if e.kind == "net.listener_closed" {
            if let Some(key) = a.get("listener") {
                current.remove(key);
            }
            continue;
        }
        let (Some(protocol), Some(address), Some(port)) =
            (a.get("protocol"), a.get("address"), a.get("port"))
        else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let key = match address.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("{protocol} [{address}]:{port}"),
            _ => format!("{protocol} {address}:{port}"),
        };
        let exe = a.get("exe").cloned().unwrap_or_default();
        if !exe.is_empty() {
            apps.insert(exe.clone());
        }
        let service = Service {
            protocol: protocol.clone(),
            address: address.clone(),
            port,
            exe,
        };
        // Keep the owner if a later sighting could not name one.
        match current.get(&key) {
            Some(old) if service.exe.is_empty() && !old.exe.is_empty() => {}
            _ => {
                current.insert(key, service);
            }
        }
    }
    let mut list: Vec<Service> = current.into_values().collect();
    list.sort();
    (list, apps)
}

/// Enabled systemd units from the host's latest `triage services` answer.
fn enabled_units(commands: &[Command], host: &str) -> Vec<String> {
    let Some(answer) = latest_triage(commands, host, "services") else {
        return Vec::new();
    };
    answer
        .iter()
        .filter(|r| r["enabled"].as_bool() == Some(true))
        .filter_map(|r| r["unit"].as_str().map(|u| format!("unit {u}")))
        .collect()
}

/// Rows of the host's latest successful triage answer to `question`.
fn latest_triage(commands: &[Command], host: &str, question: &str) -> Option<Vec<Value>> {
    let c = commands.iter().rev().find(|c| {
        c.host_id == host
            && c.verb == "triage"
            && c.state == CommandState::Succeeded
            && c.arguments.get("question").map(String::as_str) == Some(question)
    })?;
    let value: Value = serde_json::from_str(&c.result).ok()?;
    value["rows"].as_array().cloned()
}

/// What a peer address is to us.
fn classify(peer: IpAddr, owners: &BTreeMap<IpAddr, String>, affected: &[String]) -> String {
    if let Some(host) = owners.get(&peer) {
        return if affected.contains(host) {
            format!("affected host {host}")
        } else {
            format!("fleet host {host}")
        };
    }
    let v4 = match peer {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    match (v4, peer) {
        (Some(a), _) if a.is_loopback() => "loopback".into(),
        (Some(a), _) if a.is_private() => "private network".into(),
        (Some(a), _) if a.is_link_local() => "link-local".into(),
        (Some(a), _) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
            "local broadcast or multicast".into()
        }
        (Some(_), _) => "internet".into(),
        (None, IpAddr::V6(a)) if a.is_loopback() => "loopback".into(),
        (None, IpAddr::V6(a)) if a.is_unique_local() => "private network".into(),
        (None, IpAddr::V6(a)) if a.is_unicast_link_local() => "link-local".into(),
        (None, IpAddr::V6(a)) if a.is_multicast() || a.is_unspecified() => {
            "local broadcast or multicast".into()
        }
        (None, _) => "internet".into(),
    }
}

/// `1.2.3.4:22` or `[::1]:22`.
fn split_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.rsplit_once(':')?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    Some((addr.parse().ok()?, port.parse().ok()?))
}

/// Connections of a host: from net.connection telemetry and from its latest
/// `triage connections` answer. Returns the flows and how many were left out.
fn flows(
    events: &[(u64, Event)],
    host: &str,
    commands: &[Command],
    owners: &BTreeMap<IpAddr, String>,
    affected: &[String],
) -> (Vec<Flow>, usize) {
    let mut out = BTreeSet::new();
    for (_, e) in events.iter().filter(|(_, e)| e.kind == "net.connection") {
        let a = &e.attributes;
        let (Some(peer), Some(port)) = (
            a.get("remote_address")
                .and_then(|p| p.parse::<IpAddr>().ok()),
            a.get("port").and_then(|p| p.parse::<u16>().ok()),
        ) else {
            continue;
        };
        out.insert(Flow {
            host: host.to_owned(),
            direction: a
                .get("direction")
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
            protocol: a.get("protocol").cloned().unwrap_or_default(),
            peer: peer.to_string(),
            port,
            peer_is: classify(peer, owners, affected),
            exe: a.get("exe").cloned().unwrap_or_default(),
            seen_by: "sensor",
        });
    }
    let listening: BTreeSet<u16> = latest_triage(commands, host, "listeners")
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["local"].as_str().and_then(split_endpoint).map(|(_, p)| p))
        .collect();
    for row in latest_triage(commands, host, "connections").unwrap_or_default() {
        let (Some((_, local_port)), Some((peer, remote_port))) = (
            row["local"].as_str().and_then(split_endpoint),
            row["remote"].as_str().and_then(split_endpoint),
        ) else {
            continue;
        };
        if remote_port == 0 || row["state"].as_str() == Some("TIME_WAIT") {
            continue;
        }
        let inbound = listening.contains(&local_port) || (local_port < 1024 && remote_port >= 1024);
        out.insert(Flow {
            host: host.to_owned(),
            direction: if inbound { "inbound" } else { "outbound" }.into(),
            protocol: row["protocol"].as_str().unwrap_or_default().to_owned(),
            peer: peer.to_string(),
            port: if inbound { local_port } else { remote_port },
            peer_is: classify(peer, owners, affected),
            exe: String::new(),
            seen_by: "triage",
        });
    }
    let total = out.len();
    (
        out.into_iter().take(MAX_PEERS_PER_HOST).collect(),
        total.saturating_sub(MAX_PEERS_PER_HOST),
    )
}

impl Brief {
    /// The brief as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let i = &self.incident;
        let _ = writeln!(
            m,
            "# Scoping brief — incident #{}: {}\n",
            i.id,
            md(&i.title)
        );
        let _ = writeln!(
            m,
            "Generated {} by Bannin from the collector's own records. Opened {} by {}; commander {}.\n",
            self.generated_at,
            i.opened_at,
            md(&i.opened_by),
            md(&i.commander)
        );

        m.push_str("## Signs and symptoms: what was noticed first\n\n");
        match &self.first_indicator {
            Some(f) => {
                let _ = writeln!(
                    m,
                    "- **First indicator:** finding #{} {} ({}) on {}: {}",
                    f.finding,
                    md(&f.kind),
                    f.severity,
                    md(&f.host),
                    md(&f.summary)
                );
                let _ = writeln!(
                    m,
                    "- **Observed:** {} (collector received it {})",
                    f.observed_at, f.received_at
                );
                let _ = writeln!(m, "- **Detected by:** {}", md(&f.detected_by));
                if f.first_handled_by.is_empty() {
                    m.push_str("- **First handled by:** nobody has acknowledged it yet\n");
                } else {
                    let _ = writeln!(
                        m,
                        "- **First handled by:** {} at {}",
                        md(&f.first_handled_by),
                        f.first_handled_at
                    );
                }
            }
            None => m.push_str("No finding is attached to this incident yet.\n"),
        }
        m.push_str("\n## Source of the indicators\n\n");
        match &self.first_indicator {
            Some(f) => {
                let _ = writeln!(m, "- First indicator: {}", md(&f.source));
            }
            None => m.push_str("- (none yet)\n"),
        }
        if !self.indicators.is_empty() {
            m.push_str("\n| finding | observed | host | kind | severity | count | state | summary |\n|---|---|---|---|---|---|---|---|\n");
            for f in &self.indicators {
                let _ = writeln!(
                    m,
                    "| #{} | {} | {} | {} | {} | {} | {} | {} |",
                    f.finding,
                    f.observed_at,
                    md(&f.host),
                    md(&f.kind),
                    f.severity,
                    f.count,
                    f.state,
                    md(&f.summary)
                );
            }
        }

        m.push_str("\n## Current status\n\n");
        let _ = writeln!(
            m,
            "- **Severity:** {} — {}\n- **Status:** {}",
            i.severity, i.severity_meaning, i.status
        );

        m.push_str("\n## Affected assets\n\n");
        if self.assets.is_empty() {
            m.push_str("None yet: attach findings to the incident.\n");
        }
        for a in &self.assets {
            let _ = writeln!(m, "### {} ({})\n", md(&a.host_id), md(&a.hostname));
            let _ = writeln!(m, "- **OS:** {}; kernel {}", md(&a.os), md(&a.kernel));
            let _ = writeln!(m, "- **Addresses:** {}", md(&a.addresses.join(", ")));
            let _ = writeln!(
                m,
                "- **Location:** {}",
                if a.location.is_empty() {
                    "(no location label)".to_owned()
                } else {
                    md(&a.location)
                }
            );
            if !a.labels.is_empty() {
                let labels: Vec<String> =
                    a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(m, "- **Labels:** {}", md(&labels.join(", ")));
            }
            let _ = writeln!(
                m,
                "- **State:** {}; last seen {}; {}; agent {}; {} indicator(s)",
                if a.online { "online" } else { "offline" },
                a.last_seen,
                a.isolation,
                md(&a.agent_version),
                a.indicators
            );
            if a.services.is_empty() {
                m.push_str("- **Services:** none observed\n");
            } else {
                m.push_str("- **Services (listening):**\n");
                for s in &a.services {
                    let _ = writeln!(
                        m,
                        "  - {} {}:{}{}",
                        s.protocol,
                        md(&s.address),
                        s.port,
                        if s.exe.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", md(&s.exe))
                        }
                    );
                }
            }
            if !a.applications.is_empty() {
                let _ = writeln!(m, "- **Applications:** {}", md(&a.applications.join(", ")));
            }
            for gap in &a.sensor_gaps {
                let _ = writeln!(m, "- **Blind spot:** {}", md(gap));
            }
            m.push('\n');
        }

        m.push_str("## Response actions already taken\n\n");
        if self.actions_taken.is_empty() {
            m.push_str("None recorded.\n");
        } else {
            m.push_str("| # | time | who | action | target | reason | result |\n|---|---|---|---|---|---|---|\n");
            for a in &self.actions_taken {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    a.seq,
                    a.at,
                    md(&a.actor),
                    md(&a.verb),
                    md(&a.target),
                    md(&a.reason),
                    md(&a.result)
                );
            }
        }

        m.push_str("\n## Network and data flow\n\n");
        m.push_str("### Between affected hosts\n\n");
        flow_table(
            &mut m,
            &self.network.among_affected,
            "No connection between affected hosts was observed.",
        );
        m.push_str("\n### What the affected hosts reach\n\n");
        flow_table(
            &mut m,
            &self.network.reaches,
            "No other connection was observed.",
        );
        if self.network.omitted > 0 {
            let _ = writeln!(
                m,
                "\n{} more peer(s) left out; see `bannin events HOST --kind net.connection`.",
                self.network.omitted
            );
        }
        let _ = writeln!(m, "\nBuilt from: {}.", self.network.sources.join("; "));

        m.push_str("\n## Sites\n\n");
        for (site, hosts) in &self.sites {
            let _ = writeln!(m, "- {}: {}", md(site), md(&hosts.join(", ")));
        }
        if self.sites.is_empty() {
            m.push_str("None yet.\n");
        }
        m
    }
}

fn flow_table(m: &mut String, flows: &[Flow], none: &str) {
    if flows.is_empty() {
        let _ = writeln!(m, "{none}");
        return;
    }
    m.push_str("| host | direction | protocol | peer | port | peer is | program | seen by |\n|---|---|---|---|---|---|---|---|\n");
    for f in flows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&f.host),
            f.direction,
            md(&f.protocol),
            md(&f.peer),
            f.port,
            md(&f.peer_is),
            md(&f.exe),
            f.seen_by
        );
    }
}

// ---------------------------------------------------------------------------
// The lessons-learned review
// ---------------------------------------------------------------------------

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

    let mut answers: [Vec<String>; 8] = Default::default();
    // 1. What happened, when, and how?
    if let Some(f) = first {
        answers[0].push(format!(
            "The first indicator was finding #{} {} on {} at {}: {}.",
            f.id,
            f.kind,
            f.host_id,
            rfc3339(f.observed_unix_ms),
            f.summary
        ));
    }
    let kinds: BTreeMap<&str, usize> = facts.findings.iter().fold(BTreeMap::new(), |mut m, f| {
        *m.entry(f.kind.as_str()).or_default() += 1;
        m
    });
    if !facts.findings.is_empty() {
        answers[0].push(format!(
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
    answers[0].push(format!(
        "Incident opened {} by {} as {} ({}); status now {}.",
        metrics.opened_at,
        incident.opened_by,
        incident.severity,
        incident.severity.meaning(),
        incident.status
    ));
    // 2. How well did staff respond?
    if let Some(ms) = metrics.time_to_detect_ms {
        answers[1].push(format!(
            "Time to detect (first indicator → incident opened): {}.",
            human_duration(ms)
        ));
    }
    match (metrics.time_to_contain_ms, &contained) {
        (Some(ms), Some((_, by))) => answers[1].push(format!(
            "Time to contain (incident opened → contained): {} — {by}.",
            human_duration(ms)
        )),
        _ => answers[1].push(
            "Not contained: no affected host was isolated and the status never reached contained."
                .into(),
        ),
    }
    if let Some(ms) = metrics.time_to_close_ms {
        answers[1].push(format!(
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
        answers[1].push(format!(
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
    answers[1].push(format!(
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
        .filter(|c| c.verb == "snapshot" && c.state == CommandState::Succeeded)
        .collect();
    match (isolated_at, snapshots.first()) {
        (Some(iso), Some(s)) if s.finished_unix_ms <= iso => answers[1].push(
            "Forensic evidence was collected before the first isolation (volatile state preserved).".into(),
        ),
        (Some(_), Some(_)) => answers[1].push(
            "The first snapshot was taken after the first isolation: volatile state (connections, processes) may have changed.".into(),
        ),
        (Some(_), None) => answers[1].push("Hosts were isolated but no forensic snapshot was taken.".into()),
        _ => {}
    }
    // 3. What information was needed sooner?
    if let Some(f) = first {
        let handled = f.history.first().map(|h| h.at_unix_ms);
        match handled {
            Some(at) => answers[2].push(format!(
                "The first indicator waited {} between being observed and first being handled.",
                human_duration(at - f.observed_unix_ms)
            )),
            None => answers[2].push("The first indicator was never acknowledged.".into()),
        }
        let late = f.received_unix_ms - f.observed_unix_ms;
        if late > 60_000 {
            answers[2].push(format!(
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
        answers[2].push(format!(
            "Other indicators were already there before the incident was opened: {}.",
            before.join(", ")
        ));
    }
    for (host, gaps) in blind_spots {
        answers[2].push(format!(
            "Sensors not fully working on {host}: {}.",
            gaps.join("; ")
        ));
    }
    // 4. Steps that might have inhibited recovery.
    for c in &facts.commands {
        if matches!(c.state, CommandState::Failed | CommandState::Expired) {
            answers[3].push(format!(
                "{} on {} (command {}, by {}) {}: {}",
                c.verb,
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
            answers[3].push(format!(
                "{}: isolation re-apply failed: {}",
                a.actor, a.result
            ));
        }
        if a.verb.starts_with("denied.") {
            answers[3].push(format!(
                "{} was denied {}: {}",
                a.actor,
                &a.verb[7..],
                a.result
            ));
        }
    }
    for e in &facts.evidence {
        if e.disposed {
            answers[3].push(format!(
                "Evidence {} from {} was disposed of.",
                e.id, e.host_id
            ));
        }
    }
    // 5. What would staff do differently? The meeting answers; the data hints.
    if metrics.time_to_contain_ms.is_none() {
        answers[4].push(
            "Decide earlier whether to isolate affected hosts (nothing was contained).".into(),
        );
    }
    // 6. Information sharing.
    for (_, a) in &facts.actions {
        if a.verb == "evidence.exported" {
            answers[5].push(format!(
                "{} exported {} ({}): {}",
                a.actor, a.target, a.reason, a.result
            ));
        }
    }
    if answers[5].is_empty() {
        answers[5].push("No evidence was exported to another party.".into());
    }
    // 7. Corrective actions.
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
        answers[6].push(format!("Still unresolved: {}.", open.join(", ")));
    }
    // 8. Precursors and indicators to watch.
    for (kind, n) in &kinds {
        let hosts: BTreeSet<&str> = facts
            .findings
            .iter()
            .filter(|f| f.kind == *kind)
            .map(|f| f.host_id.as_str())
            .collect();
        answers[7].push(format!(
            "{kind} ({n} finding(s) on {})",
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let questions = REVIEW_QUESTIONS
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(i, (question, from_the_data))| Question {
            number: i + 1,
            question,
            from_the_data,
        })
        .collect();
    Review {
        schema: "bannin.review/1",
        generated_at: rfc3339(bannin_proto::now_unix_ms()),
        incident: IncidentSummary::of(incident),
        metrics,
        timeline: facts.timeline(),
        questions,
    }
}

impl Review {
    /// The review as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let i = &self.incident;
        let _ = writeln!(
            m,
            "# Lessons-learned review — incident #{}: {}\n",
            i.id,
            md(&i.title)
        );
        let _ = writeln!(
            m,
            "Generated {} by Bannin. Severity {} ({}); status {}; commander {}.\n",
            self.generated_at,
            i.severity,
            i.severity_meaning,
            i.status,
            md(&i.commander)
        );
        m.push_str("## Figures\n\n| | when | span |\n|---|---|---|\n");
        let span = |v: Option<i64>| v.map(human_duration).unwrap_or_else(|| "—".into());
        let t = &self.metrics;
        let _ = writeln!(m, "| First indicator | {} | |", t.first_indicator_at);
        let _ = writeln!(
            m,
            "| Incident opened | {} | time to detect: {} |",
            t.opened_at,
            span(t.time_to_detect_ms)
        );
        let _ = writeln!(
            m,
            "| Contained | {} | time to contain: {} (from the first indicator: {}) |",
            if t.contained_at.is_empty() {
                "not yet"
            } else {
                &t.contained_at
            },
            span(t.time_to_contain_ms),
            span(t.indicator_to_containment_ms)
        );
        let _ = writeln!(
            m,
            "| Closed | {} | time to close: {} |",
            if t.closed_at.is_empty() {
                "not yet"
            } else {
                &t.closed_at
            },
            span(t.time_to_close_ms)
        );
        if !t.contained_by.is_empty() {
            let _ = writeln!(m, "\nContained by: {}.", md(&t.contained_by));
        }
        m.push_str("\n## Timeline\n\n| time | source | what |\n|---|---|---|\n");
        for e in &self.timeline {
            let _ = writeln!(m, "| {} | {} | {} |", e.at, e.source, md(&e.text));
        }
        m.push_str("\n## Review questions\n");
        for q in &self.questions {
            let _ = writeln!(m, "\n### {}. {}\n", q.number, q.question);
            if q.from_the_data.is_empty() {
                m.push_str("_For the review meeting: the data has no answer._\n");
            } else {
                for line in &q.from_the_data {
                    let _ = writeln!(m, "- {}", md(line));
                }
                m.push_str("- _For the review meeting: add what the data cannot say._\n");
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
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
