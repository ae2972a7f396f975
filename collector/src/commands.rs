//! The durable command queue: commands for hosts, delivered now if the host is
//! connected or when it reconnects, with their results; the desired isolation
//! state of every host; and the action log entries for both.
//!
//! Command state: pending → delivered → succeeded | failed, or pending → expired.
//! Every change is durable (store flush + fdatasync) before it is acknowledged
//! to the operator or acted on.
//!
//! Every change goes through the journal: a command issued is an
//! `IssueCommand` operation (its id is its journal position), and every change
//! of state is an `UpdateCommand` made by the collector that delivered it,
//! heard the answer or expired it. Every collector applies both to its own
//! copy of the queue, so `bannin commands` reads the same everywhere, and
//! whichever collector holds the host's stream — now, or when the host next
//! connects — delivers it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bannin_proto::identity::HostId;
use bannin_proto::{now_unix_ms, v1};

use crate::journal::{Journal, Op, OpReply};
use crate::model::{Action, Command, CommandBody, CommandState, Isolate, Isolation};
use crate::store::{Store, StoreError};

/// Commands not delivered within this expire, unless the operator says otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 86_400);
/// Largest answer kept for a triage command (the agent bounds its answers to 1 MiB).
const MAX_TRIAGE_RESULT: usize = 1024 * 1024 + 1024;
/// Most entries of a command's list (allowed addresses, files), and longest
/// entry or reason.
const MAX_LIST: usize = 64;
const MAX_TEXT: usize = 4096;

/// Why a command was not queued or a result not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request names no command (an older CLI sends its verb as text).
    #[error(
        "no command given (ping, isolate, release, triage, snapshot or relearn); a bannin CLI older than this collector sends its verb as text: upgrade it"
    )]
    NoCommand,
    /// isolate and release need a reason.
    #[error("{0} needs a reason (--reason)")]
    NoReason(String),
    /// The reason is too long.
    #[error("the reason is too long (at most 4096 bytes)")]
    TooLarge,
    /// An argument the command cannot take.
    #[error("{command}: {problem}")]
    BadArgument {
        /// The command's name.
        command: String,
        /// What is wrong.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal did not take the change (nothing changed).
    #[error("the command was not taken: {0}; nothing changed, try again")]
    Journal(String),
}

/// A message to an agent, boxed: a session's channel allocates its slots 32
/// at a time, and 32 unboxed messages are 4.6 KiB per idle agent against
/// 512 bytes boxed (BENCHMARKS.md, "Idle agents").
pub(crate) type Outgoing = Result<Box<v1::CollectorMessage>, tonic::Status>;
/// The sending side of a session's stream to its agent.
pub(crate) type Outbound = tokio::sync::mpsc::Sender<Outgoing>;

/// The queue and the live sessions it delivers to.
pub struct Commands {
    store: Store,
    evidence: std::sync::Arc<crate::evidence::Evidence>,
    /// Live sessions by host: (session id, sender). A `std::sync::Mutex`: no
    /// `.await` while held; senders are cloned out before sending.
    sessions: Mutex<HashMap<String, Vec<(u64, Outbound)>>>,
    next_session: AtomicU64,
    next_reconcile: AtomicU64,
    /// Reconciles sent and not yet answered: (host, `rN`). Only these may be
    /// answered: an agent cannot make up results to write into the action log.
    reconciles: Mutex<std::collections::HashSet<(String, String)>>,
    /// Serialises state changes of commands (issue, deliver, result, expire).
    ops: tokio::sync::Mutex<()>,
    /// Where every change of a command, an isolation state or evidence goes.
    journal: Journal,
    /// Cluster mode: which collector holds the older session of a host
    /// live on two at once (commands go to that one only).
    hosts: Option<std::sync::Arc<crate::hosts::HostRegistry>>,
    /// The hunts this collector sends to the hosts it holds.
    hunts: Option<std::sync::Arc<crate::hunts::Hunts>>,
}

/// Longest reconcile result detail kept in the action log.
pub const MAX_RESULT_DETAIL: usize = MAX_TEXT;

/// Cuts an agent's result detail to [`MAX_RESULT_DETAIL`] bytes, saying how much was cut.
fn bound_detail(detail: &mut String) {
    if detail.len() <= MAX_RESULT_DETAIL {
        return;
    }
    let cut = detail.len();
    let mut end = MAX_RESULT_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    detail.truncate(end);
    detail.push_str(&format!("… ({} bytes cut)", cut - end));
}

/// The command an operator asked for, checked: what the queue keeps and the
/// agent will get is known good, and a malformed command is refused here,
/// when it is issued, not on the host. A snapshot's manifest names who asked
/// and why as the collector knows them (`operator`, `reason`), whatever the
/// request said.
pub fn check(
    command: Option<v1::CommandBody>,
    operator: &str,
    reason: &str,
) -> Result<CommandBody, CommandError> {
    use v1::command_body::Kind;
    let Some(kind) = command.and_then(|c| c.kind) else {
        return Err(CommandError::NoCommand);
    };
    let name = kind.name();
    let bad = |problem: String| CommandError::BadArgument {
        command: name.to_owned(),
        problem,
    };
    let bounded = |what: &str, items: &[String]| {
        if items.len() > MAX_LIST {
            return Err(bad(format!("at most {MAX_LIST} {what}")));
        }
        match items
            .iter()
            .find(|i| i.len() > MAX_TEXT || i.contains('\0'))
        {
            Some(_) => Err(bad(format!("{what}: an entry is too long or holds a NUL"))),
            None => Ok(()),
        }
    };
    if reason.len() > MAX_TEXT {
        return Err(CommandError::TooLarge);
    }
    let body = match kind {
        Kind::Ping(_) => CommandBody::Ping,
        Kind::Isolate(i) => {
            bounded("allowed addresses", &i.allow)?;
            if let Some(wrong) = i.allow.iter().find(|a| !is_address_or_network(a)) {
                return Err(bad(format!(
                    "allow: {wrong:?} is not an address or network (a.b.c.d, a.b.c.d/n, v6, v6/n)"
                )));
            }
            CommandBody::Isolate(Isolate {
                allow: i.allow,
                confirm_local: i.confirm_local,
            })
        }
        Kind::Release(_) => CommandBody::Release,
        Kind::Triage(t) => {
            if !bannin_proto::vocab::TRIAGE_QUESTIONS.contains(&t.question.as_str()) {
                return Err(bad(format!(
                    "unknown question {:?}; known: {}",
                    t.question,
                    bannin_proto::vocab::TRIAGE_QUESTIONS.join(", ")
                )));
            }
            bounded("paths", std::slice::from_ref(&t.path))?;
            let needs_path = matches!(t.question.as_str(), "stat" | "hash" | "ls");
            if needs_path && !t.path.starts_with('/') {
                return Err(bad(format!("{} needs an absolute path", t.question)));
            }
            CommandBody::Triage {
                question: t.question,
                path: t.path,
            }
        }
        Kind::Snapshot(s) => {
            bounded("files", &s.files)?;
            if let Some(relative) = s.files.iter().find(|f| !f.starts_with('/')) {
                return Err(bad(format!("{relative:?} is not an absolute path")));
            }
            CommandBody::Snapshot {
                operator: operator.to_owned(),
                reason: reason.to_owned(),
                files: s.files,
            }
        }
        Kind::Relearn(r) => {
            bounded("sensors", std::slice::from_ref(&r.sensor))?;
            CommandBody::Relearn { sensor: r.sensor }
        }
        Kind::Capture(c) => {
            if c.seconds == 0 || c.seconds > MAX_CAPTURE_SECONDS {
                return Err(bad(format!(
                    "{} seconds: from 1 to {MAX_CAPTURE_SECONDS}",
                    c.seconds
                )));
            }
            if c.max_bytes > MAX_CAPTURE_BYTES {
                return Err(bad(format!(
                    "{} bytes: at most {MAX_CAPTURE_BYTES} (1 GiB)",
                    c.max_bytes
                )));
            }
            bounded("filters", std::slice::from_ref(&c.filter))?;
            if c.filter.chars().any(|ch| ch.is_control() && ch != ' ') {
                return Err(bad("the filter holds a control character".into()));
            }
            if c.interfaces.len() > 16 {
                return Err(bad("at most 16 interfaces".into()));
            }
            if let Some(wrong) = c.interfaces.iter().find(|i| !is_interface_name(i)) {
                return Err(bad(format!(
                    "{wrong:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
                )));
            }
            if reason.trim().is_empty() {
                return Err(CommandError::NoReason(name.to_owned()));
            }
            CommandBody::Capture(crate::model::Capture {
                operator: operator.to_owned(),
                reason: reason.to_owned(),
                seconds: c.seconds,
                filter: c.filter,
                interfaces: c.interfaces,
                max_bytes: c.max_bytes,
            })
        }
        Kind::Hunt(_) | Kind::StopHunt(_) => {
            return Err(bad(
                "a hunt is started for every host it selects (`bannin hunt start`), not queued for one"
                    .into(),
            ));
        }
    };
    if body.isolates().is_some() && reason.trim().is_empty() {
        return Err(CommandError::NoReason(name.to_owned()));
    }
    Ok(body)
}

/// The longest capture.
pub const MAX_CAPTURE_SECONDS: u32 = 3600;
/// The most bytes of packets one capture may keep.
pub const MAX_CAPTURE_BYTES: u64 = 1024 * 1024 * 1024;

/// What Linux accepts as an interface name: 1 to 15 bytes, no '/', ':' or whitespace.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// `a.b.c.d`, `a.b.c.d/n` (n ≤ 32), a v6 address or a v6 network (n ≤ 128):
/// what the agent's isolation accepts in `allow`.
fn is_address_or_network(text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((a, n)) => (a, Some(n)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    let most = if address.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|n| n.parse::<u8>().is_ok_and(|n| n <= most))
}

fn message(id: String, body: &CommandBody) -> Box<v1::CollectorMessage> {
    Box::new(v1::CollectorMessage {
        body: Some(v1::collector_message::Body::Command(v1::Command {
            id,
            body: body.to_agent(),
        })),
    })
}

impl Commands {
    /// A queue over `store`, changed through `journal`.
    pub fn new(
        store: Store,
        evidence: std::sync::Arc<crate::evidence::Evidence>,
        journal: Journal,
    ) -> Self {
        Self {
            store,
            evidence,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            next_reconcile: AtomicU64::new(1),
            reconciles: Mutex::new(std::collections::HashSet::new()),
            ops: tokio::sync::Mutex::new(()),
            journal,
            hosts: None,
            hunts: None,
        }
    }

    /// Sends `hunts` to the hosts this collector holds, as they connect and
    /// as hunts start or stop.
    pub fn with_hunts(mut self, hunts: std::sync::Arc<crate::hunts::Hunts>) -> Self {
        self.hunts = Some(hunts);
        self
    }

    /// The hunts (`None` in tests that build a queue alone).
    pub fn hunts(&self) -> Option<&std::sync::Arc<crate::hunts::Hunts>> {
        self.hunts.as_ref()
    }

    /// Sends `host` the hunts due to it, if it is connected here (and no
    /// older session of its identity is held elsewhere).
    async fn send_hunts(&self, host: &str) -> Result<(), StoreError> {
        let (Some(hunts), Some(tx)) = (&self.hunts, self.sender(host)) else {
            return Ok(());
        };
        if self
            .hosts
            .as_ref()
            .and_then(|h| h.elder_elsewhere(host, now_unix_ms()))
            .is_some()
        {
            return Ok(());
        }
        for command in hunts.due_for(host)? {
            tracing::info!(host.id = host, hunt.id = %command.id, "Hunt sent");
            let message = Box::new(v1::CollectorMessage {
                body: Some(v1::collector_message::Body::Command(command)),
            });
            if tx.send(Ok(message)).await.is_err() {
                hunts.forget(host);
                break;
            }
        }
        Ok(())
    }

    /// Hunt `id` started or stopped: the hosts connected here get it, or
    /// its stop.
    pub async fn deliver_hunt(&self, id: u64) -> Result<(), StoreError> {
        let Some(hunts) = &self.hunts else {
            return Ok(());
        };
        if hunts.stopped(id)? {
            for (host, stop) in hunts.stops_for(id) {
                if let Some(tx) = self.sender(&host) {
                    let message = Box::new(v1::CollectorMessage {
                        body: Some(v1::collector_message::Body::Command(stop)),
                    });
                    let _ = tx.send(Ok(message)).await;
                    tracing::info!(host.id = %host, hunt.id = id, "Hunt stop sent");
                }
            }
            return Ok(());
        }
        let live: Vec<String> = self.lock().keys().cloned().collect();
        for host in live {
            self.send_hunts(&host).await?;
        }
        Ok(())
    }

    /// Consults `hosts` before delivering: of two collectors holding one
    /// host identity at once (a clone), only the one with the older session
    /// delivers, so a command reaches exactly one machine.
    pub fn with_hosts(mut self, hosts: std::sync::Arc<crate::hosts::HostRegistry>) -> Self {
        self.hosts = Some(hosts);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(u64, Outbound)>>> {
        bannin_proto::lock(&self.sessions)
    }

    fn sender(&self, host: &str) -> Option<Outbound> {
        self.lock()
            .get(host)
            .and_then(|v| v.last())
            .map(|(_, tx)| tx.clone())
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.make_durable())
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt("flush task panicked".into())))
    }

    /// Queues a command ([`check`]ed), durably, and delivers it if the host
    /// is connected.
    pub async fn issue(
        &self,
        host: &HostId,
        body: CommandBody,
        operator: &str,
        reason: &str,
        expires_in: Duration,
    ) -> Result<Command, CommandError> {
        let verb = body.name();
        let _guard = self.ops.lock().await;
        let now = now_unix_ms();
        let mut command = Command {
            id: 0,
            host_id: host.to_string(),
            body: body.clone(),
            operator: operator.to_owned(),
            reason: reason.to_owned(),
            state: CommandState::Pending,
            created_unix_ms: now,
            delivered_unix_ms: 0,
            finished_unix_ms: 0,
            expires_unix_ms: now
                .saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX)),
            result: String::new(),
        };
        if let Some(isolated) = body.isolates() {
            let isolate = match body {
                CommandBody::Isolate(isolate) => isolate,
                _ => Isolate::default(),
            };
            self.set_isolation(
                host.as_str(),
                Isolation {
                    isolated,
                    isolate,
                    confirmed: false,
                },
            )
            .await?;
        }
        command.id = self
            .journal
            .submit(Op::IssueCommand {
                command: command.clone(),
            })
            .await
            .and_then(OpReply::into_raise)
            .map_err(|e| CommandError::Journal(e.to_string()))?;
        let queued = self
            .journal
            .whereabouts(host.as_str(), self.sender(host.as_str()).is_some())
            .await;
        self.store.append_action(&Action {
            at_unix_ms: now,
            actor: operator.to_owned(),
            verb: format!("command.{verb}"),
            target: host.to_string(),
            reason: reason.to_owned(),
            result: format!("queued as {}{queued}", command.wire_id()),
        })?;
        self.durable().await?;
        tracing::info!(command.id = %command.wire_id(), host.id = %host, verb, operator, "Command queued");
        drop(_guard);
        if let Err(error) = self.deliver_pending(host.as_str(), false).await {
            // Queued durably: delivered when the host next connects.
            tracing::error!(command.id = %command.wire_id(), host.id = %host, %error, "Command queued but not delivered");
        }
        Ok(self.store.command(command.id)?.unwrap_or(command))
    }

    /// Registers a live session of `host`, delivers its pending commands, and
    /// re-sends its desired isolation state. Returns the session id for
    /// [`Commands::detach`]; a failed delivery is logged (the session is
    /// registered all the same, and the commands stay queued).
    pub async fn attach(&self, host: &HostId, tx: Outbound) -> Result<u64, StoreError> {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(host.to_string())
            .or_default()
            .push((id, tx.clone()));
        if let Some(desired) = self.store.isolation(host.as_str())?
            && desired.isolated
        {
            // The agent re-applies its own persisted state at start; this covers a
            // host whose state was lost (a reinstall) and confirms the current one.
            let n = self.next_reconcile.fetch_add(1, Ordering::Relaxed);
            {
                // Only the newest reconcile of a host may be answered.
                let mut sent = bannin_proto::lock(&self.reconciles);
                sent.retain(|(h, _)| h != host.as_str());
                sent.insert((host.to_string(), format!("r{n}")));
            }
            let _ = tx
                .send(Ok(message(
                    format!("r{n}"),
                    &CommandBody::Isolate(desired.isolate),
                )))
                .await;
        }
        // Commands delivered on an earlier session but never answered are sent
        // again: every verb is idempotent, and an answer may have been lost with
        // the old stream.
        if let Err(error) = self.deliver_pending(host.as_str(), true).await {
            tracing::error!(host.id = %host, %error, "Cannot deliver pending commands");
        }
        if let Err(error) = self.send_hunts(host.as_str()).await {
            tracing::error!(host.id = %host, %error, "Cannot send hunts");
        }
        Ok(id)
    }

    /// Forgets a session.
    pub fn detach(&self, host: &HostId, session: u64) {
        let mut sessions = self.lock();
        if let Some(list) = sessions.get_mut(host.as_str()) {
            list.retain(|(id, _)| *id != session);
            if list.is_empty() {
                sessions.remove(host.as_str());
                if let Some(hunts) = &self.hunts {
                    hunts.forget(host.as_str());
                }
            }
        }
    }

    /// Delivers `host`'s pending commands if it is connected here. `false`:
    /// held, because another collector holds an older session of the same
    /// identity and delivers them (ask again later: that session may end).
    pub async fn deliver(&self, host: &str) -> Result<bool, CommandError> {
        // A label change may have put the host under a running hunt.
        self.send_hunts(host).await?;
        self.deliver_pending(host, false).await
    }

    async fn deliver_pending(
        &self,
        host: &str,
        unanswered_too: bool,
    ) -> Result<bool, CommandError> {
        let Some(tx) = self.sender(host) else {
            return Ok(true);
        };
        let _guard = self.ops.lock().await;
        let now = now_unix_ms();
        for command in self.store.open_commands()? {
            let due = match command.state {
                CommandState::Pending => command.expires_unix_ms >= now,
                CommandState::Delivered => unanswered_too,
                _ => false,
            };
            if command.host_id != host || !due {
                continue;
            }
            if let Some(elder) = self
                .hosts
                .as_ref()
                .and_then(|h| h.elder_elsewhere(host, now))
            {
                tracing::info!(host.id = host, holder = %elder, "Commands held here: collector {elder} holds an older session of this host identity and delivers them");
                return Ok(false);
            }
            if command.state == CommandState::Pending {
                // Delivered in the journal before it goes out: the agent may
                // answer (or upload a snapshot) at once, and every collector
                // must know the command is out. (Should the send below fail,
                // the host gets it again when it reconnects, as an unanswered
                // command.)
                let moved = self
                    .update(&command, CommandState::Delivered, now, None)
                    .await?;
                if !moved {
                    // Another collector delivered or expired it meanwhile.
                    continue;
                }
            }
            let sent = tx.send(Ok(message(command.wire_id(), &command.body))).await;
            if sent.is_err() {
                break;
            }
            tracing::info!(command.id = %command.wire_id(), host.id = host, verb = command.body.name(), "Command delivered");
        }
        self.durable().await?;
        Ok(true)
    }

    /// Moves a command to `state` through the journal and waits until it is
    /// applied. `false`: it did not move (it had moved on already, through
    /// another collector). `once` names a move several collectors may make
    /// at the same time (an expiry), so it is applied once.
    async fn update(
        &self,
        command: &Command,
        state: CommandState,
        at_unix_ms: i64,
        once: Option<String>,
    ) -> Result<bool, CommandError> {
        let op = Op::UpdateCommand {
            id: command.id,
            state,
            at_unix_ms,
            result: command.result.clone(),
        };
        let reply = match once {
            Some(key) => self.journal.submit_once(op, key).await,
            None => self.journal.submit(op).await,
        };
        let moved = reply
            .and_then(OpReply::into_raise)
            .map_err(|e| CommandError::Journal(e.to_string()))?;
        Ok(moved > 0)
    }

    /// Sets `host`'s desired isolation state through the journal (every
    /// collector shows it, and one taking the host over knows what to
    /// reconcile).
    async fn set_isolation(&self, host: &str, isolation: Isolation) -> Result<(), CommandError> {
        self.journal
            .submit(Op::Isolation {
                host_id: host.to_owned(),
                isolation,
            })
            .await
            .and_then(OpReply::into_raise)
            .map_err(|e| CommandError::Journal(e.to_string()))?;
        Ok(())
    }

    /// Records a host's answer to a command. Answers to commands of other hosts
    /// and to finished commands are ignored (and logged).
    pub async fn record_result(
        &self,
        host: &HostId,
        result: v1::CommandResult,
    ) -> Result<(), CommandError> {
        if result.command_id.starts_with('h') {
            if let Some(hunts) = &self.hunts {
                hunts.answer(host.as_str(), result).await;
            }
            return Ok(());
        }
        let _guard = self.ops.lock().await;
        let now = now_unix_ms();
        let mut result = result;
        if result.command_id.starts_with('r') {
            bound_detail(&mut result.detail);
            let sent = bannin_proto::lock(&self.reconciles)
                .remove(&(host.to_string(), result.command_id.clone()));
            if !sent {
                tracing::debug!(host.id = %host, command.id = %result.command_id, "Result for a reconcile never sent (or already answered) ignored");
                return Ok(());
            }
            // A reconcile of the desired isolation state.
            if let Some(mut desired) = self.store.isolation(host.as_str())?
                && desired.isolated
            {
                desired.confirmed = result.ok;
                self.set_isolation(host.as_str(), desired).await?;
            }
            if !result.ok {
                tracing::error!(host.id = %host, detail = %result.detail, "Host could not re-apply its isolation");
            }
            self.store.append_action(&Action {
                at_unix_ms: now,
                actor: format!("host:{host}"),
                verb: "isolation.reconcile".into(),
                target: host.to_string(),
                reason: String::new(),
                result: format!(
                    "{}: {}",
                    if result.ok { "ok" } else { "failed" },
                    result.detail
                ),
            })?;
            return Ok(self.durable().await?);
        }
        let id = result
            .command_id
            .strip_prefix('c')
            .and_then(|n| n.parse::<u64>().ok());
        let Some(mut command) = id.map(|id| self.store.command(id)).transpose()?.flatten() else {
            tracing::debug!(host.id = %host, command.id = %result.command_id, "Result for an unknown command ignored");
            return Ok(());
        };
        if command.host_id != host.as_str() {
            tracing::debug!(host.id = %host, command.id = %result.command_id, command.host = %command.host_id, "Result for another host's command ignored");
            return Ok(());
        }
        if command.state.is_final() {
            return Ok(());
        }
        command.state = if result.ok {
            CommandState::Succeeded
        } else {
            CommandState::Failed
        };
        command.finished_unix_ms = now;
        if command.body.collects_evidence() {
            // The agent's word is not enough: the collector's own checks decide.
            match self
                .evidence
                .take_outcome(host.as_str(), &command.wire_id())
            {
                Some(crate::evidence::Outcome::Stored {
                    path,
                    sha256,
                    size,
                    artifacts,
                    manifest,
                }) if result.ok => {
                    let record = crate::model::EvidenceRecord {
                        id: String::new(),
                        sha256: sha256.clone(),
                        size,
                        host_id: host.to_string(),
                        command_id: command.wire_id(),
                        operator: command.operator.clone(),
                        reason: command.reason.clone(),
                        collected_started: manifest["started"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        collected_finished: manifest["finished"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        received_unix_ms: now,
                        verified_unix_ms: now,
                        disposed: false,
                    };
                    let record = self.journal.record_evidence(record, &path).await;
                    match record {
                        Ok(record) => {
                            self.store.append_action(&Action {
                                at_unix_ms: now,
                                actor: "collector".into(),
                                verb: "evidence.received".into(),
                                target: record.target(),
                                reason: command.reason.clone(),
                                result: format!("verified: {artifacts} artifacts, {size} bytes, sha256 {sha256}, from {host} for {}", command.operator),
                            })?;
                            result.detail = format!(
                                "evidence {} stored and verified: {artifacts} artifacts, {size} bytes, sha256 {sha256}, {}",
                                record.id,
                                path.display()
                            );
                        }
                        Err(error) => {
                            tracing::error!(host.id = %host, command.id = %command.wire_id(), %error, "Verified evidence could not be recorded");
                            command.state = CommandState::Failed;
                            result.detail = format!(
                                "the bundle was verified here but could not be recorded: {error}"
                            );
                        }
                    }
                }
                Some(crate::evidence::Outcome::Rejected(why)) => {
                    command.state = CommandState::Failed;
                    result.detail = why;
                }
                _ if result.ok => {
                    command.state = CommandState::Failed;
                    result.detail =
                        "the agent reported success but no complete bundle arrived".into();
                }
                _ => {}
            }
        }
        let limit = match command.body {
            CommandBody::Triage { .. } => MAX_TRIAGE_RESULT,
            _ => MAX_TEXT,
        };
        command.result = result.detail.chars().take(limit).collect();
        if !self.update(&command, command.state, now, None).await? {
            // Answered already through another collector.
            return Ok(());
        }
        if let Some(isolates) = command.body.isolates()
            && let Some(mut desired) = self.store.isolation(host.as_str())?
            // Only the command that set the current desired state confirms it.
            && desired.isolated == isolates
        {
            if result.ok {
                desired.confirmed = true;
            } else if isolates {
                // The agent rolled back: the host is not isolated. Say so.
                desired.isolated = false;
                desired.confirmed = true;
            }
            self.set_isolation(host.as_str(), desired).await?;
        }
        self.store.append_action(&Action {
            at_unix_ms: now,
            actor: format!("host:{host}"),
            verb: format!("result.{}", command.body.name()),
            target: command.wire_id(),
            reason: command.reason.clone(),
            // The log keeps the outcome, not a whole triage answer.
            result: format!(
                "{}: {}",
                command.state.as_str(),
                command.result.chars().take(256).collect::<String>()
            ),
        })?;
        self.durable().await?;
        if result.ok {
            tracing::info!(command.id = %command.wire_id(), host.id = %host, verb = command.body.name(), detail = %command.result, "Command succeeded");
        } else {
            tracing::warn!(command.id = %command.wire_id(), host.id = %host, verb = command.body.name(), detail = %command.result, "Command failed");
        }
        Ok(())
    }

    /// Marks undelivered commands past their expiry as expired.
    pub async fn expire(&self, now: i64) -> Result<(), CommandError> {
        let _guard = self.ops.lock().await;
        let mut changed = false;
        for mut command in self.store.open_commands()? {
            if command.state == CommandState::Pending && command.expires_unix_ms < now {
                command.state = CommandState::Expired;
                command.finished_unix_ms = now;
                command.result = "expired before the host reconnected".into();
                let once = Some(format!("expire:c{}", command.id));
                if !self
                    .update(&command, CommandState::Expired, now, once)
                    .await?
                {
                    continue;
                }
                self.store.append_action(&Action {
                    at_unix_ms: now,
                    actor: "collector".into(),
                    verb: format!("expire.{}", command.body.name()),
                    target: command.wire_id(),
                    reason: command.reason.clone(),
                    result: "expired before the host reconnected".into(),
                })?;
                if let Some(isolates) = command.body.isolates() {
                    // An expired isolate leaves the host as it was: not isolated.
                    if let Some(mut desired) = self.store.isolation(&command.host_id)?
                        && !desired.confirmed
                        && desired.isolated == isolates
                    {
                        desired.isolated = !desired.isolated;
                        desired.confirmed = true;
                        self.set_isolation(&command.host_id, desired).await?;
                    }
                }
                tracing::warn!(command.id = %command.wire_id(), host.id = %command.host_id, "Command expired undelivered");
                changed = true;
            }
        }
        if changed {
            self.durable().await?;
        }
        Ok(())
    }

    /// Commands, oldest first, optionally of one host, the newest `limit`
    /// of them (0: all). A snapshot being received shows its progress as its
    /// result.
    pub fn list(&self, host: Option<&str>, limit: usize) -> Result<Vec<Command>, StoreError> {
        let commands = match limit {
            0 => self.store.commands()?,
            n => self.store.newest_commands(host, n)?,
        };
        Ok(commands
            .into_iter()
            .filter(|c| host.is_none_or(|h| c.host_id == h))
            .map(|c| self.with_progress(c))
            .collect())
    }

    /// One command by its wire id (`c12`), as [`Commands::list`] shows it:
    /// read directly, not found by reading the whole history (a `bannin
    /// ping` polls this ten times a second while it waits).
    pub fn get(&self, wire_id: &str) -> Result<Option<Command>, StoreError> {
        let Some(id) = wire_id
            .strip_prefix('c')
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        Ok(self
            .store
            .command(id)?
            .filter(|c| c.wire_id() == wire_id)
            .map(|c| self.with_progress(c)))
    }

    fn with_progress(&self, mut c: Command) -> Command {
        if c.state == CommandState::Delivered
            && let Some(bytes) = self.evidence.progress(&c.host_id, &c.wire_id())
        {
            c.result = format!("receiving: {bytes} bytes");
        }
        c
    }

    /// The evidence store.
    pub fn evidence(&self) -> &std::sync::Arc<crate::evidence::Evidence> {
        &self.evidence
    }

    /// Passes an evidence chunk to the evidence store (blocking I/O on the blocking pool).
    pub async fn evidence_chunk(&self, host: &HostId, chunk: v1::EvidenceChunk) {
        // Only a delivered snapshot of this very host may upload.
        let expected = chunk
            .command_id
            .strip_prefix('c')
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|id| self.store.command(id).ok().flatten())
            .is_some_and(|c| {
                c.host_id == host.as_str()
                    && c.body.collects_evidence()
                    && c.state == CommandState::Delivered
            });
        if !expected {
            tracing::warn!(host.id = %host, command.id = %chunk.command_id, "Evidence chunk for no open snapshot of this host ignored");
            return;
        }
        let evidence = self.evidence.clone();
        let host = host.to_string();
        let _ = tokio::task::spawn_blocking(move || evidence.chunk(&host, chunk)).await;
    }

    /// How a host's isolation is shown.
    pub fn isolation_status(&self, host: &str) -> &'static str {
        Isolation::describe(self.store.isolation(host).ok().flatten().as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_command_is_read_by_its_wire_id_and_nothing_else_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let evidence =
            std::sync::Arc::new(crate::evidence::Evidence::new(dir.path()).expect("evidence"));
        let (journal, _ingest) = crate::journal::testing::local(&store, dir.path());
        let commands = Commands::new(store, evidence, journal);
        let host = HostId::new("web-01").expect("host");
        let mut ids = Vec::new();
        for reason in ["first", "second"] {
            let c = commands
                .issue(&host, CommandBody::Ping, "alice", reason, DEFAULT_EXPIRY)
                .await
                .expect("issue");
            ids.push(c.wire_id());
        }
        let second = commands.get(&ids[1]).expect("get").expect("found");
        assert_eq!(second.reason, "second");
        assert_eq!(second.state, CommandState::Pending, "not connected");
        let zero_padded = format!("c0{}", &ids[1][1..]);
        for other in ["", "c", "x1", "c-1", "c99999", zero_padded.as_str()] {
            assert!(commands.get(other).expect("get").is_none(), "{other:?}");
        }
    }

    /// What an operator asks for is checked before anything is queued: each
    /// malformed command is refused with what is wrong, and a snapshot's
    /// manifest names the caller and the reason whatever the request said.
    #[test]
    fn a_command_is_checked_when_issued_and_a_snapshot_names_its_caller() {
        use v1::CommandBody as Api;
        let refused = |command: Option<Api>, reason: &str, needle: &str| {
            let why = check(command.clone(), "alice", reason)
                .expect_err(&format!("{command:?} refused"))
                .to_string();
            assert!(why.contains(needle), "{why:?} lacks {needle:?}");
        };
        refused(None, "", "no command given");
        refused(Some(Api::default()), "", "no command given");
        refused(Some(Api::isolate(vec![], false)), " ", "needs a reason");
        refused(Some(Api::release()), "", "needs a reason");
        for wrong in [
            "10.0.0.1/33",
            "example.com",
            "10.0.0.1,10.0.0.2",
            "::1/129",
            "",
        ] {
            refused(
                Some(Api::isolate(vec![wrong.into()], false)),
                "why",
                "is not an address or network",
            );
        }
        refused(
            Some(Api::isolate(vec!["10.0.0.1".into(); MAX_LIST + 1], false)),
            "why",
            "at most 64",
        );
        refused(Some(Api::triage("reboot", "")), "", "unknown question");
        refused(Some(Api::triage("hash", "etc/passwd")), "", "absolute path");
        refused(
            Some(Api::snapshot(vec!["relative/file".into()])),
            "why",
            "not an absolute path",
        );
        refused(
            Some(Api::snapshot(vec!["/a\0b".into()])),
            "why",
            "holds a NUL",
        );
        refused(Some(Api::ping()), &"x".repeat(MAX_TEXT + 1), "too long");

        let isolate = check(
            Some(Api::isolate(
                vec![
                    "10.0.0.5".into(),
                    "192.0.2.0/24".into(),
                    "2001:db8::/32".into(),
                ],
                true,
            )),
            "alice",
            "case 7",
        )
        .expect("isolate");
        assert_eq!(isolate.isolates(), Some(true));
        let mut forged = Api::snapshot(vec!["/etc/passwd".into()]);
        if let Some(v1::command_body::Kind::Snapshot(s)) = forged.kind.as_mut() {
            s.operator = "mallory".into();
            s.reason = "not the reason".into();
        }
        assert_eq!(
            check(Some(forged), "alice", "case 7").expect("snapshot"),
            CommandBody::Snapshot {
                operator: "alice".into(),
                reason: "case 7".into(),
                files: vec!["/etc/passwd".into()],
            }
        );
        let capture = |seconds, filter: &str, interfaces: &[&str], max_bytes| {
            Some(Api::from(v1::command_body::Kind::Capture(
                v1::CaptureCommand {
                    operator: "mallory".into(),
                    reason: "forged".into(),
                    seconds,
                    filter: filter.into(),
                    interfaces: interfaces.iter().map(|i| (*i).to_owned()).collect(),
                    max_bytes,
                },
            )))
        };
        refused(capture(0, "", &[], 0), "why", "from 1 to 3600");
        refused(capture(3601, "", &[], 0), "why", "from 1 to 3600");
        refused(capture(10, "", &[], 2 << 30), "why", "at most");
        refused(capture(10, "", &["../../x"], 0), "why", "not an interface");
        refused(
            capture(10, "", &["eth0 eth1"], 0),
            "why",
            "not an interface",
        );
        refused(
            capture(10, "tcp\nport 1", &[], 0),
            "why",
            "control character",
        );
        refused(capture(10, "tcp", &[], 0), " ", "reason");
        assert_eq!(
            check(capture(10, "tcp port 22", &["eth0"], 0), "alice", "case 7").expect("capture"),
            CommandBody::Capture(crate::model::Capture {
                operator: "alice".into(),
                reason: "case 7".into(),
                seconds: 10,
                filter: "tcp port 22".into(),
                interfaces: vec!["eth0".into()],
                max_bytes: 0,
            })
        );
        assert_eq!(
            check(Some(Api::triage("processes", "")), "alice", "").expect("triage"),
            CommandBody::Triage {
                question: "processes".into(),
                path: String::new(),
            }
        );
    }
}
