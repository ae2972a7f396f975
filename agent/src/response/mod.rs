//! Answers the collector's commands: `ping`, `isolate`, `release`, `triage`.
//!
//! Commands are carried out one at a time, in the order they arrive, by one
//! task ([`Responder::run`]); results go back over whichever stream is open.
//! The isolation state is persisted in the spool, and [`Responder::restore`]
//! re-applies it before the agent does anything else.

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
use isolate::{IsolationError, Net, Spec};

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
    /// `host:port` of the collector.
    pub collector: String,
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
) -> Result<(u64, String), String> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let size = file.metadata().await.map_err(|e| e.to_string())?.len();
    let mut whole = sha2::Sha256::new();
    let mut offset = 0u64;
    // Test hook: flip a byte of the first chunk after hashing it. Compiled only with
    // the `test-hooks` feature, which the end-to-end tests enable; shipped builds
    // (`cargo build -p bannin-agent`, the packages) never have it.
    #[cfg(feature = "test-hooks")]
    #[allow(clippy::disallowed_methods)]
    let corrupt = std::env::var_os("BANNIN_TEST_CORRUPT_CHUNK").is_some();
    #[cfg(not(feature = "test-hooks"))]
    let corrupt = false;
    loop {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        whole.update(&buf);
        let last = offset + filled as u64 >= size;
        let sha256: String = bannin_proto::sha256_hex(&buf);
        if corrupt && offset == 0 && !buf.is_empty() {
            // Test hook: a byte flipped in transit, after the hash was taken.
            buf[0] ^= 0xff;
        }
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
            .map_err(|_| "agent is shutting down".to_owned())?;
        offset += filled as u64;
        if last {
            let sha = bannin_proto::hex(whole.finalize());
            return Ok((size, sha));
        }
    }
}

/// Carries out commands.
pub struct Responder {
    config: ResponseConfig,
    spool: Arc<Spool>,
    /// This agent's sensors' controls (`relearn` asks through them).
    controls: Controls,
    started: Instant,
}

impl Responder {
    /// A responder.
    pub fn new(config: ResponseConfig, spool: Arc<Spool>, controls: Controls) -> Self {
        Self {
            config,
            spool,
            controls,
            started: Instant::now(),
        }
    }

    fn persisted(&self) -> Option<Persisted> {
        self.spool
            .sensor_state(STATE)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(&v).ok())
    }

    fn persist(&self, state: Option<&Persisted>) -> Result<(), String> {
        let bytes = match state {
            Some(s) => serde_json::to_vec(s).map_err(|e| e.to_string())?,
            None => b"null".to_vec(),
        };
        self.spool
            .put_state(STATE, bytes)
            .map_err(|e| e.to_string())
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
        let mut refresh = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let result = if command.verb == "snapshot" {
                        self.snapshot(command, &results).await
                    } else {
                        self.handle(command).await
                    };
                    if results.send(v1::agent_message::Body::CommandResult(result)).await.is_err() {
                        return;
                    }
                }
                _ = refresh.tick() => self.refresh_collector().await,
            }
        }
    }

    /// Collects a snapshot into a file beside the spool, streams it in chunks,
    /// and answers with its size and hash.
    async fn snapshot(
        &self,
        command: v1::Command,
        out: &mpsc::Sender<v1::agent_message::Body>,
    ) -> v1::CommandResult {
        let id = command.id.clone();
        let fail = |detail: String| v1::CommandResult {
            command_id: id.clone(),
            ok: false,
            detail,
        };
        let request = snapshot::Request {
            command_id: command.id.clone(),
            operator: command
                .arguments
                .get("operator")
                .cloned()
                .unwrap_or_default(),
            reason: command.arguments.get("reason").cloned().unwrap_or_default(),
            files: command
                .arguments
                .get("files")
                .map(|f| {
                    f.lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            max_file_bytes: snapshot::DEFAULT_MAX_FILE_BYTES,
            max_bundle_bytes: snapshot::DEFAULT_MAX_BUNDLE_BYTES,
            integrity_baselines: Some(
                self.config
                    .work_dir
                    .join(crate::sensors::file_integrity::NAME),
            ),
        };
        let path = self
            .config
            .work_dir
            .join(format!("snapshot-{}.tar.zst", command.id));
        let root = crate::host::HostRoot(self.config.root.clone());
        let host = self.config.host_id.clone();
        let file_path = path.clone();
        let collected = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create(&file_path)?;
            snapshot::collect(&root, &host, request, std::io::BufWriter::new(file))
        })
        .await;
        let manifest = match collected {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return fail(format!("collecting the snapshot: {e}")),
            Err(e) => return fail(format!("snapshot task failed: {e}")),
        };
        let streamed = stream_file(&path, &command.id, out).await;
        let _ = std::fs::remove_file(&path);
        match streamed {
            Ok((size, sha)) => v1::CommandResult {
                command_id: command.id,
                ok: true,
                detail: format!(
                    "bundle {size} bytes, sha256 {sha}, {} artifacts, {} not collected",
                    manifest.artifacts.len(),
                    manifest.skipped.len()
                ),
            },
            Err(e) => fail(format!("streaming the snapshot: {e}")),
        }
    }

    /// While isolated, follows the collector's address if its DNS name moves.
    async fn refresh_collector(&self) {
        let Some(mut state) = self.persisted() else {
            return;
        };
        let Ok(mut now) = isolate::resolve(&self.config.collector).await else {
            return;
        };
        now.sort();
        let mut before = state.spec.collector.clone();
        before.sort();
        if now != before {
            state.spec.collector = now;
            match isolate::apply(&state.spec).await {
                Ok(()) => {
                    let _ = self.persist(Some(&state));
                    tracing::info!(collector = ?state.spec.collector, "Collector address changed; isolation updated");
                }
                Err(error) => {
                    tracing::error!(%error, "Cannot update isolation to the collector's new address")
                }
            }
        }
    }

    /// Carries out one command.
    pub async fn handle(&self, command: v1::Command) -> v1::CommandResult {
        tracing::info!(command.id = %command.id, verb = %command.verb, "Command received");
        let outcome = match command.verb.as_str() {
            "ping" => Ok(format!(
                "agent {} up {} s",
                bannin_proto::VERSION,
                self.started.elapsed().as_secs()
            )),
            "isolate" => self.isolate(&command).await,
            "release" => self.release().await,
            "triage" => {
                let root = crate::host::HostRoot(self.config.root.clone());
                let question = command
                    .arguments
                    .get("question")
                    .cloned()
                    .unwrap_or_default();
                let path = command.arguments.get("path").cloned();
                tokio::task::spawn_blocking(move || {
                    triage::answer(&root, &question, path.as_deref())
                })
                .await
                .unwrap_or_else(|e| Err(format!("triage task failed: {e}")))
            }
            "relearn" => self
                .controls
                .request_relearn(
                    command
                        .arguments
                        .get("sensor")
                        .map(String::as_str)
                        .filter(|s| !s.is_empty()),
                )
                .map_err(|e| e.to_string())
                .map(|names| {
                    format!(
                        "relearning at the next sweep (quietly): {}",
                        names.join(", ")
                    )
                }),
            other => Err(format!(
                "verb {other:?} is not supported by agent {}",
                bannin_proto::VERSION
            )),
        };
        match &outcome {
            Ok(detail) => tracing::info!(command.id = %command.id, %detail, "Command done"),
            Err(detail) => tracing::error!(command.id = %command.id, %detail, "Command failed"),
        }
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        v1::CommandResult {
            command_id: command.id,
            ok,
            detail,
        }
    }

    async fn isolate(&self, command: &v1::Command) -> Result<String, String> {
        if self.config.local_operator
            && command.arguments.get("confirm_local").map(String::as_str) != Some("yes")
        {
            return Err("refused: this agent runs under `bannin up` on the machine you operate from, and isolating it would cut your own session off; repeat with --yes-isolate-this-machine if that is really what you want".into());
        }
        let allow = command
            .arguments
            .get("allow")
            .map(|a| {
                a.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(Net::parse)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let collector = isolate::resolve(&self.config.collector)
            .await
            .map_err(|e| e.to_string())?;
        let spec = Spec {
            collector: collector.clone(),
            resolvers: self.config.dns_resolvers.clone(),
            allow,
        };
        isolate::apply(&spec)
            .await
            .map_err(|e: IsolationError| e.to_string())?;
        if let Err(why) = isolate::self_test(&collector).await {
            let rollback = isolate::remove().await;
            tracing::error!(reason = %why, "Isolation self-test failed: collector unreachable; rolled back");
            return Err(match rollback {
                Ok(_) => format!(
                    "isolation rolled back, host NOT isolated: the collector was unreachable with the rules applied ({why})"
                ),
                Err(e) => {
                    format!("isolation self-test failed ({why}) AND removing the table failed: {e}")
                }
            });
        }
        self.persist(Some(&Persisted { spec: spec.clone() }))?;
        Ok(format!(
            "isolated: collector {:?}, resolvers {:?}, allowed {:?}",
            spec.collector,
            spec.resolvers,
            spec.allow.iter().map(|n| n.addr).collect::<Vec<_>>()
        ))
    }

    async fn release(&self) -> Result<String, String> {
        let removed = isolate::remove().await.map_err(|e| e.to_string())?;
        self.persist(None)?;
        Ok(if removed {
            "released: isolation table removed".into()
        } else {
            "released: the host was not isolated".into()
        })
    }
}
