//! Answers the collector's commands: `ping`, `isolate`, `release`, `triage`,
//! `snapshot`, `relearn`, `hunt`, `stop_hunt` and `capture`.
//!
//! A command is parsed once into a typed [`command::Command`] (refused there if
//! malformed); each command's `apply` lives in `cmd/`, one file per command, and
//! fails with a [`ResponseError`]. Commands are carried out one at a time, in the
//! order they arrive, by one task ([`Responder::run`]); results go back over
//! whichever stream is open. The isolation state is persisted in the spool, and
//! [`Responder::restore`] re-applies it before the agent does anything else.

pub mod capture;
mod cmd;
pub mod command;
pub mod hunt;
pub mod isolate;
pub mod snapshot;
pub mod triage;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bannin_proto::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sensors::Controls;
use crate::spool::Spool;
use crate::spool::SpoolError;
use command::{Command, ParseError};
use isolate::{IsolationError, Spec};
use triage::TriageError;

/// Why a command failed; its text is the command's result.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// The command is malformed or unknown.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Isolating the machine the operator works from, without their confirmation.
    #[error(
        "refused: this agent runs under `bannin up` on the machine you operate from, and isolating it would cut your own session off; repeat with --yes-isolate-this-machine if that is really what you want"
    )]
    LocalOperator,
    /// nft, resolving the collector, or the table.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The self-test could not reach the collector; the table was removed.
    #[error(
        "isolation rolled back, host NOT isolated: the collector was unreachable with the rules applied ({0})"
    )]
    RolledBack(String),
    /// The self-test failed and the table could not be removed either.
    #[error("isolation self-test failed ({why}) AND removing the table failed: {remove}")]
    RollbackFailed {
        /// Why the self-test failed.
        why: String,
        /// Why the removal failed.
        remove: IsolationError,
    },
    /// The isolation state could not be saved: a restart would not re-apply it.
    #[error("saving the isolation state in the spool failed: {0}")]
    Persist(#[from] PersistError),
    /// A triage question could not be answered.
    #[error(transparent)]
    Triage(#[from] TriageError),
    /// A hunt could not be answered (or was stopped).
    #[error(transparent)]
    Hunt(#[from] hunt::HuntError),
    /// A command's thread ended without an answer.
    #[error("the {0} thread ended without an answer")]
    Thread(&'static str),
    /// A packet capture failed.
    #[error(transparent)]
    Capture(#[from] capture::CaptureError),
    /// A relearn named a sensor without a baseline.
    #[error(transparent)]
    Relearn(#[from] crate::sensors::NoBaseline),
    /// Collecting a snapshot failed.
    #[error("collecting the snapshot: {0}")]
    Collect(#[source] std::io::Error),
    /// Streaming a snapshot failed.
    #[error("streaming the snapshot: {0}")]
    Stream(#[from] StreamError),
    /// A blocking task panicked or was cancelled.
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why the isolation state could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Encoding the state.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// Writing the spool.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Why streaming evidence stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the bundle.
    #[error("reading the bundle: {0}")]
    Read(#[from] std::io::Error),
    /// The agent is stopping; the stream to the collector is gone.
    #[error("the agent is shutting down")]
    Closed,
}

/// Key of the isolation state in the spool.
const STATE: &str = "isolation";

/// The persisted isolation state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    /// The applied spec.
    pub spec: Spec,
}

/// What the responder needs from the agent's config.
#[derive(Debug, Clone)]
pub struct ResponseConfig {
    /// `host:port` of every collector the agent may connect to (all stay
    /// reachable from an isolated host).
    pub collectors: Vec<String>,
    /// DNS resolvers the isolated host may use.
    pub dns_resolvers: Vec<IpAddr>,
    /// This agent runs on the operator's own machine (`bannin up`).
    pub local_operator: bool,
    /// The host's file system as triage reads it.
    pub root: std::path::PathBuf,
    /// Where snapshots are assembled before they are sent (the spool directory).
    pub work_dir: std::path::PathBuf,
    /// This host's id, for snapshot manifests.
    pub host_id: String,
}

/// Bytes per evidence chunk.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Streams a file as evidence chunks; returns its size and SHA-256.
async fn stream_file(
    path: &std::path::Path,
    command_id: &str,
    out: &mpsc::Sender<v1::agent_message::Body>,
) -> Result<(u64, String), StreamError> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let mut whole = sha2::Sha256::new();
    let mut offset = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        whole.update(&buf);
        let last = offset + filled as u64 >= size;
        let sha256: String = bannin_proto::sha256_hex(&buf);
        let chunk = v1::EvidenceChunk {
            command_id: command_id.to_owned(),
            offset,
            data: buf.into(),
            sha256,
            last,
            bundle_size: if last { size } else { 0 },
            bundle_sha256: if last {
                bannin_proto::hex(whole.clone().finalize())
            } else {
                String::new()
            },
        };
        out.send(v1::agent_message::Body::EvidenceChunk(chunk))
            .await
            .map_err(|_| StreamError::Closed)?;
        offset += filled as u64;
        if last {
            let sha = bannin_proto::hex(whole.finalize());
            return Ok((size, sha));
        }
    }
}

/// Triage and snapshot commands that may wait their turn; past it a new one is refused at once.
pub const MAX_QUEUED_WORK: usize = 16;
/// The longest an isolate, release, ping or relearn may take.
pub const COMMAND_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The longest a triage question may take.
pub const TRIAGE_TIME_LIMIT: Duration = Duration::from_secs(120);
/// The longest a snapshot may take.
pub const SNAPSHOT_TIME_LIMIT: Duration = Duration::from_secs(1800);
/// The longest a hunt may take here (its CPU and read caps usually end it first).
pub const HUNT_TIME_LIMIT: Duration = Duration::from_secs(3600);
/// Hunts that may wait their turn (one runs at a time); past it a new one is refused at once.
pub const MAX_QUEUED_HUNTS: usize = 8;
/// Captures that may wait their turn (one runs at a time).
pub const MAX_QUEUED_CAPTURES: usize = 4;
/// What a capture may take beyond its own duration (sealing and streaming it).
pub const CAPTURE_GRACE: Duration = Duration::from_secs(600);

/// Carries out commands.
pub struct Responder {
    config: ResponseConfig,
    spool: Arc<Spool>,
    /// This agent's sensors' controls (`relearn` asks through them).
    controls: Controls,
    /// What the collector's name last resolved to while isolated (said once per change).
    collector_seen: std::sync::Mutex<Vec<std::net::SocketAddr>>,
    started: Instant,
    /// Hunts queued or running here, by id, with their stop flags.
    hunts: std::sync::Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
}

impl Responder {
    /// A responder.
    pub fn new(config: ResponseConfig, spool: Arc<Spool>, controls: Controls) -> Self {
        Self {
            config,
            spool,
            controls,
            collector_seen: std::sync::Mutex::new(Vec::new()),
            started: Instant::now(),
            hunts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The stop flag of hunt `id` (made when the hunt was queued).
    fn hunt_flag(&self, id: &str) -> Arc<std::sync::atomic::AtomicBool> {
        bannin_proto::lock(&self.hunts)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Hunt `id` answered (or failed): a new delivery of it runs it again.
    fn hunt_done(&self, id: &str) {
        bannin_proto::lock(&self.hunts).remove(id);
    }

    /// Asks hunt `id` to stop; `false` when it is neither queued nor running.
    fn stop_hunt(&self, id: &str) -> bool {
        match bannin_proto::lock(&self.hunts).get(id) {
            Some(flag) => {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Queues hunt `id` unless it is queued or running already (the
    /// collector sends an unanswered hunt again on every new stream).
    fn queue_hunt(&self, id: &str) -> bool {
        let mut hunts = bannin_proto::lock(&self.hunts);
        if hunts.contains_key(id) {
            return false;
        }
        hunts.insert(id.to_owned(), Arc::default());
        true
    }

    fn persisted(&self) -> Option<Persisted> {
        self.spool
            .sensor_state(STATE)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
    }

    fn persist(&self, state: Option<&Persisted>) -> Result<(), PersistError> {
        let bytes = match state {
            Some(s) => serde_json::to_vec(s)?,
            None => b"null".to_vec(),
        };
        Ok(self.spool.put_state(STATE, bytes)?)
    }

    /// Re-applies a persisted isolation (after a restart or a reboot). No
    /// self-test here: the collector may simply be down, and a host that was
    /// isolated must stay isolated until an operator releases it.
    pub async fn restore(&self) {
        let Some(state) = self.persisted() else {
            return;
        };
        match isolate::apply(&state.spec).await {
            Ok(()) => {
                tracing::warn!(collector = ?state.spec.collector, "Host is isolated: isolation re-applied at start")
            }
            Err(error) => tracing::error!(%error, "HOST SHOULD BE ISOLATED BUT RE-APPLYING FAILED"),
        }
    }

    /// Handles commands until the channel closes or `shutdown`.
    pub async fn run(
        self,
        mut commands: mpsc::Receiver<v1::Command>,
        results: mpsc::Sender<v1::agent_message::Body>,
        shutdown: CancellationToken,
    ) {
        // Lanes: isolate, release, ping and relearn at once; triage and
        // snapshots (which read files and may take minutes) one after another
        // on their own, so an isolate never waits behind a snapshot.
        let (work_tx, work_rx) = mpsc::channel::<v1::Command>(MAX_QUEUED_WORK);
        // Hunts have a lane of their own: a long scan never delays a triage
        // or a snapshot, and never an isolate (which runs right here).
        let (hunt_tx, hunt_rx) = mpsc::channel::<v1::Command>(MAX_QUEUED_HUNTS);
        // So have captures, which wait on the wire for up to an hour.
        let (capture_tx, capture_rx) = mpsc::channel::<v1::Command>(MAX_QUEUED_CAPTURES);
        let urgent = async {
            let mut refresh = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    command = commands.recv() => {
                        let Some(command) = command else { return };
                        if let Ok(Command::Hunt(hunt)) = Command::parse(&command) {
                            if !self.queue_hunt(&hunt.id) {
                                continue;
                            }
                            let refused = match hunt_tx.try_send(command) {
                                Ok(()) => continue,
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    self.hunt_done(&hunt.id);
                                    v1::CommandResult {
                                        command_id: hunt.id,
                                        ok: false,
                                        detail: format!(
                                            "the agent is busy: {MAX_QUEUED_HUNTS} hunts are queued; it gets the hunt again when it reconnects"
                                        ),
                                    }
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                            };
                            if results.send(v1::agent_message::Body::CommandResult(refused)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let lane = match Command::parse(&command) {
                            Ok(Command::Triage(_) | Command::Snapshot(_)) => {
                                Some((&work_tx, MAX_QUEUED_WORK, "triage and snapshot commands"))
                            }
                            Ok(Command::Capture(_)) => {
                                Some((&capture_tx, MAX_QUEUED_CAPTURES, "captures"))
                            }
                            _ => None,
                        };
                        let result = match lane {
                            Some((lane, most, what)) => match lane.try_send(command) {
                                Ok(()) => continue,
                                Err(mpsc::error::TrySendError::Full(c)) => v1::CommandResult {
                                    command_id: c.id,
                                    ok: false,
                                    detail: format!(
                                        "the agent is busy: {most} {what} are queued; try again later"
                                    ),
                                },
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                            },
                            None => self.handle_within(command, &results).await,
                        };
                        if results.send(v1::agent_message::Body::CommandResult(result)).await.is_err() {
                            return;
                        }
                    }
                    _ = refresh.tick() => self.refresh_collector().await,
                }
            }
        };
        // Every lane ends on shutdown.
        tokio::join!(
            urgent,
            self.lane(work_rx, &results, &shutdown),
            self.lane(hunt_rx, &results, &shutdown),
            self.lane(capture_rx, &results, &shutdown),
        );
    }

    /// One lane: its commands carried out one after another, each result sent back.
    async fn lane(
        &self,
        mut commands: mpsc::Receiver<v1::Command>,
        results: &mpsc::Sender<v1::agent_message::Body>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let command = tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => command,
            };
            let Some(command) = command else { return };
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.handle_within(command, results) => result,
            };
            if results
                .send(v1::agent_message::Body::CommandResult(result))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// [`Self::handle`] within the command's time limit: past it, a failed
    /// result saying so (the work is abandoned).
    async fn handle_within(
        &self,
        command: v1::Command,
        out: &mpsc::Sender<v1::agent_message::Body>,
    ) -> v1::CommandResult {
        let limit = match Command::parse(&command) {
            Ok(Command::Snapshot(_)) => SNAPSHOT_TIME_LIMIT,
            Ok(Command::Triage(_)) => TRIAGE_TIME_LIMIT,
            Ok(Command::Hunt(_)) => HUNT_TIME_LIMIT,
            Ok(Command::Capture(c)) => {
                Duration::from_secs(u64::from(c.request.seconds)) + CAPTURE_GRACE
            }
            _ => COMMAND_TIME_LIMIT,
        };
        let id = command.id.clone();
        match tokio::time::timeout(limit, self.handle(command, out)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(command.id = %id, limit.secs = limit.as_secs(), "Command timed out");
                v1::CommandResult {
                    command_id: id,
                    ok: false,
                    detail: format!("timed out after {} s", limit.as_secs()),
                }
            }
        }
    }

    /// While isolated, watches the collector's name: if it now resolves
    /// elsewhere, says so — but the firewall keeps the addresses pinned when the
    /// host was isolated. A DNS answer alone never widens what an isolated host
    /// may reach (whoever answers DNS would choose it); an operator re-isolates
    /// to change it.
    async fn refresh_collector(&self) {
        let Some(state) = self.persisted() else {
            return;
        };
        let Ok(mut now) = isolate::resolve_all(&self.config.collectors).await else {
            return;
        };
        now.sort();
        let mut pinned = state.spec.collector.clone();
        pinned.sort();
        let mut said = bannin_proto::lock(&self.collector_seen);
        if now != pinned && *said != now {
            *said = now.clone();
            tracing::warn!(
                collectors = ?self.config.collectors,
                resolves_to = ?now,
                pinned = ?pinned,
                "The collector's name resolves elsewhere; isolation keeps the pinned addresses (re-isolate from the collector to change them)"
            );
        }
    }

    /// Carries out one command (evidence chunks of a snapshot go to `out`).
    pub async fn handle(
        &self,
        command: v1::Command,
        out: &mpsc::Sender<v1::agent_message::Body>,
    ) -> v1::CommandResult {
        let verb = command.body.as_ref().map_or("", v1::command::Body::name);
        tracing::info!(command.id = %command.id, verb, "Command received");
        let outcome = match Command::parse(&command) {
            Ok(parsed) => self.apply(parsed, &command.id, out).await,
            Err(e) => Err(e.into()),
        };
        let (ok, detail) = match outcome {
            Ok(detail) => {
                tracing::info!(command.id = %command.id, %detail, "Command done");
                (true, detail)
            }
            Err(error) => {
                tracing::error!(command.id = %command.id, %error, "Command failed");
                (false, error.to_string())
            }
        };
        v1::CommandResult {
            command_id: command.id,
            ok,
            detail,
        }
    }

    /// Runs a parsed command: the one place a verb meets its `apply`.
    async fn apply(
        &self,
        command: Command,
        id: &str,
        out: &mpsc::Sender<v1::agent_message::Body>,
    ) -> Result<String, ResponseError> {
        match command {
            Command::Ping => Ok(cmd::ping::apply(self)),
            Command::Isolate(c) => cmd::isolate::apply(self, c).await,
            Command::Release => cmd::release::apply(self).await,
            Command::Triage(c) => cmd::triage::apply(self, c).await,
            Command::Snapshot(c) => cmd::snapshot::apply(self, c, id, out).await,
            Command::Relearn(c) => cmd::relearn::apply(self, c),
            Command::Hunt(h) => cmd::hunt::apply(self, h).await,
            Command::StopHunt(id) => Ok(cmd::hunt::stop(self, &id)),
            Command::Capture(c) => cmd::capture::apply(self, c, id, out).await,
        }
    }
}

#[cfg(test)]
mod lane_tests {
    use super::*;
    use v1::command::Body;

    fn responder(dir: &std::path::Path) -> Responder {
        let spool = Arc::new(Spool::open(&dir.join("spool"), 64 * 1024 * 1024).expect("spool"));
        Responder::new(
            ResponseConfig {
                collectors: vec!["127.0.0.1:1".into()],
                dns_resolvers: Vec::new(),
                local_operator: false,
                root: dir.join("root"),
                work_dir: dir.join("spool"),
                host_id: "h-lanes".into(),
            },
            spool,
            Controls::default(),
        )
    }

    fn command(id: &str, body: Body) -> v1::Command {
        v1::Command {
            id: id.into(),
            body: Some(body),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_ping_is_answered_while_a_snapshot_runs_and_a_fifo_never_stalls_triage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("data")).expect("root");
        // Enough to read and compress that a snapshot takes a while.
        for i in 0..40 {
            std::fs::write(root.join(format!("data/f{i}")), vec![i as u8; 512 * 1024])
                .expect("file");
        }
        let made = std::process::Command::new("mkfifo")
            .arg(root.join("data/pipe"))
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let (results_tx, mut results_rx) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let run = responder(dir.path()).run(commands_rx, results_tx, shutdown.clone());
        let driver = async {
            let files = (0..40).map(|i| format!("/data/f{i}")).collect();
            commands_tx
                .send(command(
                    "snap",
                    Body::Snapshot(v1::SnapshotCommand {
                        operator: "alice".into(),
                        reason: "test".into(),
                        files,
                    }),
                ))
                .await
                .expect("send");
            commands_tx
                .send(command(
                    "fifo",
                    Body::Triage(v1::TriageCommand {
                        question: "hash".into(),
                        path: "/data/pipe".into(),
                    }),
                ))
                .await
                .expect("send");
            commands_tx
                .send(command("ping", Body::Ping(v1::PingCommand {})))
                .await
                .expect("send");
            let mut order = Vec::new();
            while order.len() < 3 {
                let Some(body) = tokio::time::timeout(Duration::from_secs(60), results_rx.recv())
                    .await
                    .expect("results keep coming")
                else {
                    break;
                };
                if let v1::agent_message::Body::CommandResult(r) = body {
                    if r.command_id == "fifo" {
                        assert!(!r.ok, "{r:?}");
                        assert!(
                            r.detail.contains("FIFO") || r.detail.contains("regular"),
                            "{r:?}"
                        );
                    }
                    order.push(r.command_id);
                }
            }
            shutdown.cancel();
            order
        };
        let ((), order) = tokio::join!(run, driver);
        assert_eq!(order.first().map(String::as_str), Some("ping"), "{order:?}");
        assert_eq!(order.len(), 3, "{order:?}");
    }
}
