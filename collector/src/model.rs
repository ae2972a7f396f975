//! The collector's domain types. prost types stop at the link and operator API
//! edges; everything inside speaks these.

use std::collections::BTreeMap;

use bannin_proto::identity::HostId;
use bannin_proto::v1;
use serde::{Deserialize, Serialize};

/// Severity of an event or finding, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Telemetry, not an indicator.
    Info,
    /// Worth a look.
    Low,
    /// Investigate.
    Medium,
    /// Investigate now.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// Lower-case name, as in configuration files.
    pub fn name(self) -> &'static str {
        self.to_wire().name()
    }

    /// From the wire; unspecified reads as `Info`.
    pub fn from_wire(value: i32) -> Self {
        match v1::Severity::try_from(value).unwrap_or(v1::Severity::Unspecified) {
            v1::Severity::Unspecified | v1::Severity::Info => Severity::Info,
            v1::Severity::Low => Severity::Low,
            v1::Severity::Medium => Severity::Medium,
            v1::Severity::High => Severity::High,
            v1::Severity::Critical => Severity::Critical,
        }
    }

    /// To the wire.
    pub fn to_wire(self) -> v1::Severity {
        match self {
            Severity::Info => v1::Severity::Info,
            Severity::Low => v1::Severity::Low,
            Severity::Medium => v1::Severity::Medium,
            Severity::High => v1::Severity::High,
            Severity::Critical => v1::Severity::Critical,
        }
    }
}

/// Where a finding is in its triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FindingState {
    /// Nobody has looked at it yet.
    New,
    /// A responder has seen it and is on it.
    Acknowledged,
    /// Dealt with.
    Resolved,
    /// Not an indicator after all.
    FalsePositive,
}

impl FindingState {
    /// Lower-case name, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::New => "new",
            FindingState::Acknowledged => "acknowledged",
            FindingState::Resolved => "resolved",
            FindingState::FalsePositive => "false_positive",
        }
    }

    /// Whether moving from `self` to `next` is allowed:
    /// new → acknowledged → resolved | false_positive, and new → resolved | false_positive.
    pub fn can_move_to(self, next: FindingState) -> bool {
        use FindingState::*;
        matches!(
            (self, next),
            (New, Acknowledged) | (New | Acknowledged, Resolved | FalsePositive)
        )
    }

    /// To the wire.
    pub fn to_wire(self) -> v1::FindingState {
        match self {
            FindingState::New => v1::FindingState::New,
            FindingState::Acknowledged => v1::FindingState::Acknowledged,
            FindingState::Resolved => v1::FindingState::Resolved,
            FindingState::FalsePositive => v1::FindingState::FalsePositive,
        }
    }

    /// From the wire; `None` for unspecified or unknown values.
    pub fn from_wire(value: i32) -> Option<Self> {
        match v1::FindingState::try_from(value).ok()? {
            v1::FindingState::Unspecified => None,
            v1::FindingState::New => Some(FindingState::New),
            v1::FindingState::Acknowledged => Some(FindingState::Acknowledged),
            v1::FindingState::Resolved => Some(FindingState::Resolved),
            v1::FindingState::FalsePositive => Some(FindingState::FalsePositive),
        }
    }
}

/// One telemetry event as stored for triage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What was observed, e.g. `net.new_listener` or `process.exec`.
    pub kind: String,
    /// Severity the agent gave it.
    pub severity: Severity,
    /// When the agent observed it.
    pub observed_unix_ms: i64,
    /// When the collector received it.
    pub received_unix_ms: i64,
    /// Whether the agent considers it an indicator.
    pub indicator: bool,
    /// Structured details.
    pub attributes: BTreeMap<String, String>,
    /// One line for humans.
    pub summary: String,
}

impl Event {
    /// From the wire, stamped with the time it was received.
    pub fn from_wire(event: v1::Event, received_unix_ms: i64) -> Self {
        Self {
            severity: Severity::from_wire(event.severity),
            kind: event.kind,
            observed_unix_ms: event.observed_unix_ms,
            received_unix_ms,
            indicator: event.indicator,
            attributes: event.attributes,
            summary: event.summary,
        }
    }
}

/// A state change of a finding: who moved it, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// The new state.
    pub state: FindingState,
    /// The operator who made the change.
    pub operator: String,
    /// When.
    pub at_unix_ms: i64,
    /// Optional note.
    pub note: String,
}

/// A finding in the durable queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Id, in arrival order, starting at 1.
    pub id: u64,
    /// The host it concerns.
    pub host_id: String,
    /// Finding kind from the indicator catalogue.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// Current state.
    pub state: FindingState,
    /// When first observed.
    pub observed_unix_ms: i64,
    /// When the collector stored it.
    pub received_unix_ms: i64,
    /// When last observed (identical findings fold into one).
    pub last_observed_unix_ms: i64,
    /// How many identical observations folded into this finding.
    pub count: u64,
    /// Structured details.
    pub attributes: BTreeMap<String, String>,
    /// Evidence summary for humans.
    pub summary: String,
    /// State changes, oldest first.
    pub history: Vec<StateChange>,
}

impl Finding {
    /// Lower-case severity name.
    pub fn severity_name(&self) -> &'static str {
        self.severity.name()
    }

    /// To the wire.
    pub fn to_wire(&self) -> v1::Finding {
        v1::Finding {
            id: self.id,
            host_id: self.host_id.clone(),
            kind: self.kind.clone(),
            severity: self.severity.to_wire() as i32,
            state: self.state.to_wire() as i32,
            observed_unix_ms: self.observed_unix_ms,
            received_unix_ms: self.received_unix_ms,
            last_observed_unix_ms: self.last_observed_unix_ms,
            count: self.count,
            attributes: self.attributes.clone().into_iter().collect(),
            summary: self.summary.clone(),
            history: self
                .history
                .iter()
                .map(|c| v1::StateChange {
                    state: c.state.to_wire() as i32,
                    operator: c.operator.clone(),
                    at_unix_ms: c.at_unix_ms,
                    note: c.note.clone(),
                })
                .collect(),
        }
    }
}

/// A finding not yet in the queue: what detection produced.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFinding {
    /// The host it concerns.
    pub host_id: HostId,
    /// Finding kind.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// When observed.
    pub observed_unix_ms: i64,
    /// Structured details; identical kind and attributes on one host fold together.
    pub attributes: BTreeMap<String, String>,
    /// Evidence summary.
    pub summary: String,
}

/// A sensor's reported health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorHealth {
    /// Sensor name.
    pub name: String,
    /// ok, degraded, failed or disabled.
    pub state: String,
    /// Why, when not ok.
    pub detail: String,
}

impl SensorHealth {
    /// From the wire.
    pub fn from_wire(s: v1::SensorHealth) -> Self {
        Self {
            name: s.name,
            state: s.state,
            detail: s.detail,
        }
    }
    /// To the wire.
    pub fn to_wire(&self) -> v1::SensorHealth {
        v1::SensorHealth {
            name: self.name.clone(),
            state: self.state.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// A host's labels: what its agent reports (`[labels]` in its config) and what
/// operators set on the collector, which wins on the same key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLabels {
    /// From the agent's last hello.
    pub reported: BTreeMap<String, String>,
    /// Set by operators (`bannin host label`).
    pub set: BTreeMap<String, String>,
}

impl HostLabels {
    /// The labels in force: the agent's, with operators' over them.
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut out = self.reported.clone();
        out.extend(self.set.clone());
        out
    }
}

/// A host's inventory and liveness, as kept by the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Host id (from the certificate).
    pub host_id: String,
    /// Hostname the agent reported.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Addresses of the host's interfaces.
    pub addresses: Vec<String>,
    /// Agent version.
    pub agent_version: String,
    /// First contact.
    pub first_seen_unix_ms: i64,
    /// Last message of any kind.
    pub last_seen_unix_ms: i64,
    /// Heartbeat interval the agent announced.
    pub heartbeat_interval_secs: u32,
    /// Sensor health from the last hello or heartbeat.
    pub sensors: Vec<SensorHealth>,
    /// Bytes in the agent's spool at its last heartbeat.
    pub spool_bytes: u64,
    /// Address the agent last connected from.
    pub peer_address: String,
    /// Whether a `host.silent` finding was raised since the host was last heard from.
    pub silent: bool,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandState {
    /// Queued; the host has not received it.
    Pending,
    /// Sent to the host; no result yet.
    Delivered,
    /// The host carried it out.
    Succeeded,
    /// The host could not carry it out; `result` says why.
    Failed,
    /// Not delivered before it expired.
    Expired,
}

impl CommandState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Delivered => "delivered",
            CommandState::Succeeded => "succeeded",
            CommandState::Failed => "failed",
            CommandState::Expired => "expired",
        }
    }

    /// Whether the command is finished.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CommandState::Succeeded | CommandState::Failed | CommandState::Expired
        )
    }
}

/// A hunt: one question asked of every host it selects, online now or
/// connecting before it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hunt {
    /// Id (its journal position; `h3` on the wire).
    pub id: u64,
    /// The question, as the operator API encodes it (checked when started).
    pub question: Vec<u8>,
    /// The question in one line.
    pub description: String,
    /// Hosts whose labels in force hold all of these (empty: every host).
    pub labels: BTreeMap<String, String>,
    /// Only these hosts (empty: every host the labels select).
    pub hosts: Vec<String>,
    /// Who started it.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Severity of the `hunt.match` findings.
    pub severity: Severity,
    /// When started.
    pub created_unix_ms: i64,
    /// When it stops reaching hosts.
    pub expires_unix_ms: i64,
    /// When stopped (0: not stopped), and by whom.
    pub stopped_unix_ms: i64,
    /// Who stopped it.
    pub stopped_by: String,
    /// The incident it is attached to (0: none).
    pub incident: u64,
    /// Caps on every host (0: the agent's defaults).
    pub max_cpu_ms: u64,
    /// Bytes a host may read for it.
    pub max_read_bytes: u64,
    /// Hits a host keeps.
    pub max_hits: u32,
}

impl Hunt {
    /// The id as the wire carries it.
    pub fn wire_id(&self) -> String {
        format!("h{}", self.id)
    }

    /// Whether it still reaches hosts at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.stopped_unix_ms == 0 && now <= self.expires_unix_ms
    }

    /// "running", "stopped" or "expired".
    pub fn state(&self, now: i64) -> &'static str {
        if self.stopped_unix_ms != 0 {
            "stopped"
        } else if now > self.expires_unix_ms {
            "expired"
        } else {
            "running"
        }
    }

    /// Whether it selects `host` with `labels` in force.
    pub fn selects(&self, host: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h == host))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The question, decoded.
    pub fn question(&self) -> v1::HuntQuestion {
        prost::Message::decode(self.question.as_slice()).unwrap_or_default()
    }

    /// The `hunt.match` finding of a host's answer with hits.
    pub fn match_finding(&self, answer: &HuntAnswer, host_id: HostId) -> NewFinding {
        let mut attributes = BTreeMap::from([
            ("hunt".to_owned(), self.wire_id()),
            ("question".to_owned(), self.description.clone()),
            ("hits".to_owned(), answer.total.to_string()),
            ("hunt_reason".to_owned(), self.reason.clone()),
            ("hunt_operator".to_owned(), self.operator.clone()),
        ]);
        if let Some(first) = answer.hits.first() {
            attributes.insert("first_hit".to_owned(), first.chars().take(1024).collect());
        }
        if self.incident != 0 {
            attributes.insert("incident".to_owned(), self.incident.to_string());
        }
        NewFinding {
            summary: format!(
                "Hunt {} ({}): {} hit(s) on {host_id}",
                self.wire_id(),
                self.description,
                answer.total
            ),
            host_id,
            kind: "hunt.match".into(),
            severity: self.severity,
            observed_unix_ms: answer.answered_unix_ms,
            attributes,
        }
    }

    /// What the agent gets.
    pub fn to_agent(&self) -> v1::Command {
        v1::Command {
            id: self.wire_id(),
            body: Some(v1::command::Body::Hunt(v1::HuntCommand {
                hunt_id: self.wire_id(),
                question: Some(self.question()),
                max_cpu_ms: self.max_cpu_ms,
                max_read_bytes: self.max_read_bytes,
                max_hits: self.max_hits,
            })),
        }
    }
}

/// One host's answer to a hunt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntAnswer {
    /// The hunt.
    pub hunt_id: u64,
    /// The host.
    pub host_id: String,
    /// Answered (`false`: failed, `detail` says why).
    pub ok: bool,
    /// The rows kept, as JSON objects.
    pub hits: Vec<String>,
    /// Hits found (more than `hits` when a cap cut them).
    pub total: u64,
    /// The cap reached (`cpu`, `bytes`), or why it failed.
    pub detail: String,
    /// Files looked at, bytes read, CPU time used.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// CPU time, ms.
    pub cpu_ms: u64,
    /// When the answer arrived.
    pub answered_unix_ms: i64,
}

/// A command in the durable queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Id, in issue order.
    pub id: u64,
    /// Target host.
    pub host_id: String,
    /// What to do.
    pub body: CommandBody,
    /// Who asked.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Where it is.
    pub state: CommandState,
    /// When it was issued.
    pub created_unix_ms: i64,
    /// When it was sent to the host (0: not yet).
    pub delivered_unix_ms: i64,
    /// When the host answered or it expired (0: not yet).
    pub finished_unix_ms: i64,
    /// When it expires if not delivered.
    pub expires_unix_ms: i64,
    /// The host's answer.
    pub result: String,
}

impl Command {
    /// The id as the wire carries it.
    pub fn wire_id(&self) -> String {
        format!("c{}", self.id)
    }

    /// To the operator API.
    pub fn to_wire(&self) -> v1::CommandRecord {
        v1::CommandRecord {
            id: self.wire_id(),
            host_id: self.host_id.clone(),
            verb: self.body.name().into(),
            command: Some(self.body.to_api()),
            operator: self.operator.clone(),
            reason: self.reason.clone(),
            state: self.state.as_str().into(),
            created_unix_ms: self.created_unix_ms,
            delivered_unix_ms: self.delivered_unix_ms,
            finished_unix_ms: self.finished_unix_ms,
            expires_unix_ms: self.expires_unix_ms,
            result: self.result.clone(),
        }
    }
}

/// What a command does, checked when it was issued ([`crate::commands`]):
/// the queue keeps this, the operator API shows it as a `CommandBody`, the
/// agent gets it as `Command.body`. No layer spells a verb or an argument as
/// text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Answer at once.
    Ping,
    /// Cut the host off but for its collector and what `Isolate` allows.
    Isolate(Isolate),
    /// Remove the isolation.
    Release,
    /// One read-only question.
    Triage {
        /// One of `bannin_proto::vocab::TRIAGE_QUESTIONS`.
        question: String,
        /// An absolute path for stat, hash and ls; "" otherwise.
        path: String,
    },
    /// A forensic snapshot, streamed back as evidence.
    Snapshot {
        /// Who asked (the caller's certificate name), for the manifest.
        operator: String,
        /// Why, for the manifest.
        reason: String,
        /// Absolute paths of files to include.
        files: Vec<String>,
    },
    /// Forget learned baselines.
    Relearn {
        /// One sensor, or "" for every baseline sensor.
        sensor: String,
    },
    /// A packet capture, streamed back as evidence (last: stored records
    /// name variants by position).
    Capture(Capture),
}

/// What a capture asks for, checked when it was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Who asked (the caller's certificate name), for the manifest.
    pub operator: String,
    /// Why, for the manifest.
    pub reason: String,
    /// How long, 1 to 3600 seconds.
    pub seconds: u32,
    /// A pcap filter expression ("" for every packet), compiled on the host.
    pub filter: String,
    /// Interfaces (none: every interface that is up but loopback).
    pub interfaces: Vec<String>,
    /// Bytes of packets kept at most (0: the agent's default, 64 MiB).
    pub max_bytes: u64,
}

/// What an isolation lets through, besides the collector, DHCP and DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolate {
    /// Addresses or networks the host may still reach.
    pub allow: Vec<String>,
    /// The operator confirmed isolating the machine they work from.
    pub confirm_local: bool,
}

impl CommandBody {
    /// The command's name, as the action log and `bannin commands` show it.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Ping => "ping",
            CommandBody::Isolate(_) => "isolate",
            CommandBody::Release => "release",
            CommandBody::Triage { .. } => "triage",
            CommandBody::Snapshot { .. } => "snapshot",
            CommandBody::Relearn { .. } => "relearn",
            CommandBody::Capture(_) => "capture",
        }
    }

    /// Whether the command streams evidence back (a snapshot, a capture):
    /// only such a command, delivered to that very host, may upload.
    pub fn collects_evidence(&self) -> bool {
        matches!(self, CommandBody::Snapshot { .. } | CommandBody::Capture(_))
    }

    /// The isolation state this command asks for: `Some(true)` for isolate,
    /// `Some(false)` for release, `None` for every other command.
    pub fn isolates(&self) -> Option<bool> {
        match self {
            CommandBody::Isolate(_) => Some(true),
            CommandBody::Release => Some(false),
            _ => None,
        }
    }

    /// As the operator API shows it.
    pub fn to_api(&self) -> v1::CommandBody {
        match self {
            CommandBody::Ping => v1::CommandBody::ping(),
            CommandBody::Isolate(i) => v1::CommandBody::isolate(i.allow.clone(), i.confirm_local),
            CommandBody::Release => v1::CommandBody::release(),
            CommandBody::Triage { question, path } => {
                v1::CommandBody::triage(question.clone(), path.clone())
            }
            CommandBody::Snapshot {
                operator,
                reason,
                files,
            } => v1::command_body::Kind::Snapshot(v1::SnapshotCommand {
                operator: operator.clone(),
                reason: reason.clone(),
                files: files.clone(),
            })
            .into(),
            CommandBody::Relearn { sensor } => v1::CommandBody::relearn(sensor.clone()),
            CommandBody::Capture(c) => v1::command_body::Kind::Capture(v1::CaptureCommand {
                operator: c.operator.clone(),
                reason: c.reason.clone(),
                seconds: c.seconds,
                filter: c.filter.clone(),
                interfaces: c.interfaces.clone(),
                max_bytes: c.max_bytes,
            })
            .into(),
        }
    }

    /// As the agent gets it (`Command.body`).
    pub fn to_agent(&self) -> Option<v1::command::Body> {
        self.to_api().kind.map(Into::into)
    }
}

/// What the collector wants a host's isolation to be, and whether the host confirmed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isolation {
    /// Whether the host should be isolated.
    pub isolated: bool,
    /// What the isolation lets through (sent again when the host reconnects).
    pub isolate: Isolate,
    /// Whether the host has confirmed the current desired state.
    pub confirmed: bool,
}

impl Isolation {
    /// How `bannin hosts` shows it.
    pub fn describe(this: Option<&Isolation>) -> &'static str {
        match this {
            Some(Isolation {
                isolated: true,
                confirmed: true,
                ..
            }) => "isolated",
            Some(Isolation {
                isolated: true,
                confirmed: false,
                ..
            }) => "pending isolation",
            Some(Isolation {
                isolated: false,
                confirmed: false,
                ..
            }) => "pending release",
            _ => "not isolated",
        }
    }
}

/// An action log entry as stored: the action, its place in the chain, and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedAction {
    /// Position in the log, from 1.
    pub seq: u64,
    /// The action.
    pub action: Action,
    /// SHA-256 (hex) of the previous entry; 64 zeros for the first.
    pub prev_sha256: String,
    /// SHA-256 (hex) of this entry: of `seq`, the action's fields and `prev_sha256`.
    pub sha256: String,
}

impl ChainedAction {
    /// The hash this entry should carry.
    pub fn compute_hash(seq: u64, action: &Action, prev: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Length-prefixed fields: no two different entries hash the same text.
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        field(&seq.to_be_bytes());
        field(&action.at_unix_ms.to_be_bytes());
        field(action.actor.as_bytes());
        field(action.verb.as_bytes());
        field(action.target.as_bytes());
        field(action.reason.as_bytes());
        field(action.result.as_bytes());
        field(prev.as_bytes());
        bannin_proto::hex(h.finalize())
    }
}

/// One entry of the action log: every operator action and every command result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// When.
    pub at_unix_ms: i64,
    /// Who (an operator, or `host:ID` for a result).
    pub actor: String,
    /// What.
    pub verb: String,
    /// On what.
    pub target: String,
    /// Why.
    pub reason: String,
    /// What came of it.
    pub result: String,
}

/// What an operator may do. Ordered: each role may do what the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also isolates, releases, snapshots, triages and works findings.
    Responder,
    /// Also manages operators (and, later, rules, tokens and evidence disposal).
    Admin,
}

impl Role {
    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "responder" => Some(Role::Responder),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// An operator known to the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Name, as in their certificate.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Disabled operators can do nothing.
    pub enabled: bool,
    /// When added.
    pub created_unix_ms: i64,
    /// Who added them (`bootstrap` for the configured first admins).
    pub created_by: String,
}

impl OperatorRecord {
    /// To the wire.
    pub fn to_wire(&self) -> v1::OperatorRecord {
        v1::OperatorRecord {
            name: self.name.clone(),
            role: self.role.as_str().into(),
            enabled: self.enabled,
            created_unix_ms: self.created_unix_ms,
            created_by: self.created_by.clone(),
        }
    }
}

/// A piece of evidence held by the collector. Its custody events are the action
/// log entries whose target is `evidence:ID` (one hash chain for both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// Id, `e` and a number in arrival order.
    pub id: String,
    /// SHA-256 of the bundle (also its file name).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Host it came from.
    pub host_id: String,
    /// Command that asked for it.
    pub command_id: String,
    /// Operator who asked.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Collection start on the host (manifest).
    pub collected_started: String,
    /// Collection end on the host (manifest).
    pub collected_finished: String,
    /// When the collector had it all.
    pub received_unix_ms: i64,
    /// When the collector verified it (hashes and manifest).
    pub verified_unix_ms: i64,
    /// Held, or disposed of.
    pub disposed: bool,
}

impl EvidenceRecord {
    /// Custody target name in the action log.
    pub fn target(&self) -> String {
        format!("evidence:{}", self.id)
    }

    /// To the wire.
    pub fn to_wire(&self) -> v1::EvidenceRecord {
        v1::EvidenceRecord {
            id: self.id.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            host_id: self.host_id.clone(),
            command_id: self.command_id.clone(),
            operator: self.operator.clone(),
            reason: self.reason.clone(),
            collected_started: self.collected_started.clone(),
            collected_finished: self.collected_finished.clone(),
            received_unix_ms: self.received_unix_ms,
            verified_unix_ms: self.verified_unix_ms,
            state: if self.disposed { "disposed" } else { "held" }.into(),
        }
    }
}

pub use crate::incidents::{Incident, IncidentNote};

/// An enrollment token. Its secret is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `t1`, `t2`, …
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Enrollments allowed.
    pub uses: u32,
    /// Enrollments done.
    pub used: u32,
    /// When it stops working.
    pub expires_unix_ms: i64,
    /// Revoked by an admin.
    pub revoked: bool,
    /// Labels given to every host enrolled with it.
    pub labels: BTreeMap<String, String>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_unix_ms: i64,
    /// Hosts enrolled with it.
    pub hosts: Vec<String>,
    /// What it is for.
    pub note: String,
}

impl TokenRecord {
    /// Why the token cannot be used at `now` (`revoked`, `used_up` or
    /// `expired`), if it cannot.
    pub fn refusal(&self, now: i64) -> Option<&'static str> {
        match self.state(now) {
            s @ ("revoked" | "used_up" | "expired") => Some(s),
            _ => None,
        }
    }

    /// active, used_up, expired or revoked, at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.used >= self.uses {
            "used_up"
        } else if now >= self.expires_unix_ms {
            "expired"
        } else {
            "active"
        }
    }
}

/// A revoked host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedHost {
    /// Host id.
    pub host_id: String,
    /// Who revoked it.
    pub by: String,
    /// When.
    pub at_unix_ms: i64,
    /// Why.
    pub reason: String,
}
