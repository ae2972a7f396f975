//! The scoping brief (schema `bannin.brief/1`): the guidance's scoping questions
//! answered from the collector's data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use super::*;
use crate::hosts::HostView;
use crate::model::{Action, Command, CommandBody, CommandState, Event, Finding, Incident};
use crate::store::{EventQuery, Store, StoreError};

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
    /// Hunts attached to the incident: where else it was looked for, and found.
    pub hunts: Vec<HuntLine>,
}

/// A hunt attached to the incident and what it found.
#[derive(Debug, Serialize)]
pub struct HuntLine {
    /// Its id (`h3`).
    pub id: String,
    /// The question.
    pub question: String,
    /// running, stopped or expired.
    pub state: &'static str,
    /// Who started it, when and why.
    pub operator: String,
    /// When.
    pub started_at: String,
    /// Why.
    pub reason: String,
    /// Hosts that answered.
    pub answered: usize,
    /// Hosts with hits, and how many each.
    pub hosts_with_hits: BTreeMap<String, u64>,
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
    pub(super) fn of(i: &Incident) -> Self {
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
            result: facts.action_result(a),
        })
        .collect();
    let now = bannin_proto::now_unix_ms();
    let hunts = facts
        .hunts
        .iter()
        .map(|(hunt, answers)| HuntLine {
            id: hunt.wire_id(),
            question: hunt.description.clone(),
            state: hunt.state(now),
            operator: hunt.operator.clone(),
            started_at: rfc3339(hunt.created_unix_ms),
            reason: hunt.reason.clone(),
            answered: answers.len(),
            hosts_with_hits: answers
                .iter()
                .filter(|a| a.total > 0)
                .map(|a| (a.host_id.clone(), a.total))
                .collect(),
        })
        .collect();
    Ok(Brief {
        schema: "bannin.brief/1",
        generated_at: rfc3339(now),
        incident: IncidentSummary::of(incident),
        first_indicator,
        indicators,
        assets,
        actions_taken,
        network,
        sites,
        hunts,
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
            && c.state == CommandState::Succeeded
            && matches!(&c.body, CommandBody::Triage { question: q, .. } if q == question)
    })?;
    let value: Value = serde_json::from_str(&c.result).ok()?;
    value["rows"].as_array().cloned()
}

/// What a peer address is to us.
pub(super) fn classify(
    peer: IpAddr,
    owners: &BTreeMap<IpAddr, String>,
    affected: &[String],
) -> String {
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
pub(super) fn split_endpoint(text: &str) -> Option<(IpAddr, u16)> {
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
