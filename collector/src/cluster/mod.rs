//! Cluster mode: several collectors over NATS JetStream.
//!
//! The design, its invariants and its failure cases are in ARCHITECTURE.md
//! ("Cluster mode over NATS JetStream"). In short: one replicated stream,
//! [`LOG_STREAM`], is the source of truth. A collector that receives an agent's
//! batch checks it and publishes it there, and acknowledges the agent only
//! after JetStream's acknowledgement (which comes once the configured replicas
//! hold it). Every collector applies the stream in order to its own sled store
//! through the same single writer as a standalone collector ([`run_applier`]),
//! as of the time JetStream stored each message, so finding ids, folds,
//! correlation and counters come out the same on every collector. Changes made
//! by operators and findings raised by collectors themselves are log messages
//! too ([`Op`]): the caller waits until its own collector has applied it and
//! answers with what applying it produced.
//!
//! Presence (which collector holds which host's stream) and the collectors'
//! own liveness are key-value buckets ([`Presence`], [`CollectorEntry`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use bannin_proto::identity::HostId;
use bannin_proto::tls::TlsPaths;
use bannin_proto::v1;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::ingest::{Ingest, IngestError, WriteRequest};
use crate::model::{EvidenceRecord, Severity};
use crate::op::apply::{self, Begun, SideEffects};
use crate::op::{Op, OpReply};
use crate::store::Store;

mod applier;
mod evidence;
pub mod init;
mod outbox;
mod presence;
pub mod replay;
pub mod signing;
mod sinks;

pub use applier::run_applier;
pub use evidence::CHAIN_WAIT;
pub use outbox::run_action_outbox;
pub use presence::run_membership;
pub use sinks::SinkLease;

/// The cluster log: every change to durable state, in one order.
pub const LOG_STREAM: &str = "BANNIN_LOG";
/// Subject of agents' batches.
pub const BATCH_SUBJECT: &str = "bannin.log.batch";
/// Subject of operations ([`Op`]).
pub const OP_SUBJECT: &str = "bannin.log.op";
/// Hosts' presence: host id → [`Presence`].
pub const HOSTS_BUCKET: &str = "BANNIN_HOSTS";
/// Live collectors: collector name → [`CollectorEntry`], expiring.
pub const COLLECTORS_BUCKET: &str = "BANNIN_COLLECTORS";
/// Key-value bucket: each export sink's cursor (the id of the last finding it
/// delivered), whichever collector ran it.
pub const SINKS_BUCKET: &str = "BANNIN_SINKS";
/// Key-value bucket: which collector runs each export sink (entries lapse
/// unless renewed).
pub const SINK_LEASES_BUCKET: &str = "BANNIN_SINK_LEASES";
/// Object store: evidence bundles, named by their SHA-256.
pub const EVIDENCE_BUCKET: &str = "BANNIN_EVIDENCE";
/// A sink's lease lapses this long after its last renewal.
pub const SINK_LEASE_TTL: Duration = Duration::from_secs(15);
/// The collector running a sink renews its lease this often.
pub const SINK_LEASE_RENEW: Duration = Duration::from_secs(5);
/// Set in a store a collector in cluster mode made: its content is the log's.
pub const MEMBER_COUNTER: &str = "cluster.member";
/// The store counter holding the last log sequence applied.
pub use crate::ingest::APPLIED_COUNTER;
/// How often a collector renews its [`CollectorEntry`].
pub const COLLECTOR_BEAT: Duration = Duration::from_secs(5);
/// A collector not heard from for this long is gone ([`COLLECTORS_BUCKET`]'s age limit).
pub const COLLECTOR_TTL: Duration = Duration::from_secs(20);
/// How long a starting collector waits for JetStream to be ready.
pub const STARTUP_WAIT: Duration = Duration::from_secs(60);
/// How long the applier waits for a message before it checks it is not stalled.
pub const STALL_CHECK: Duration = Duration::from_secs(5);
/// How long a JetStream request of the control plane (the applier's
/// consumer, operations, buckets, stream state) waits for an answer. A
/// request to a server that died, or to a stream between leaders, fails
/// after this and is made again: NATS elects a new leader in 4–5 s, so a
/// short wait lets work continue within seconds of losing a node (with the
/// library's 10 s, three failed requests in a row held an operator 30 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of a request that is made again until it succeeds
/// (an operation's publication, the applier's consumer) waits: short, so
/// that the first attempt after NATS elected a new leader comes soon (a
/// second copy of an operation is a duplicate by its message id).
pub const RETRIED_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a batch's publication waits for JetStream's acknowledgement
/// (the agent sends it again after a failure; the message id makes a second
/// copy a duplicate).
pub const BATCH_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The applier's consumer sends an idle heartbeat this often; two missed
/// ones (its server died, or the consumer went with it) start the applier
/// again on a new consumer.
pub const APPLIER_HEARTBEAT: Duration = Duration::from_millis(500);
/// How long the applier waits before it starts again after a failure.
pub const APPLIER_RESTART: Duration = Duration::from_millis(250);
/// How long an operation is published again while JetStream does not take it.
pub const PUBLISH_RETRY: Duration = Duration::from_secs(15);
/// How long an operation waits to be applied by its own collector.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

const HOST_HEADER: &str = "Bannin-Host";
const OP_HEADER: &str = "Bannin-Op";
/// How a batch's payload is encoded in the log: `lz4` (block format, size
/// prepended) or absent (plain protobuf).
const ENCODING_HEADER: &str = "Bannin-Encoding";
/// The largest batch a compressed payload may claim to hold: no collector
/// accepts a batch over 64 MiB (`max_message_bytes` is 4 MiB by default).
const MAX_BATCH_BYTES: usize = 64 << 20;

/// `[cluster]` of the collector's configuration.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This collector's name in the cluster (unique; shown by `bannin hosts`).
    pub name: String,
    /// NATS server URLs (`tls://host:4222`).
    pub servers: Vec<String>,
    /// CA that signed the NATS servers' certificates, and this collector's
    /// client certificate and key.
    pub tls: TlsPaths,
    /// Replicas of every stream and bucket: 1 or 3.
    pub replicas: usize,
    /// Most bytes the log keeps (oldest removed first).
    pub max_bytes: i64,
    /// Oldest message the log keeps.
    pub max_age: Duration,
    /// Window in which a batch published twice is stored once.
    pub duplicate_window: Duration,
}

/// Why cluster mode could not start or a write could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No NATS server could be reached (or TLS failed).
    #[error("cannot connect to NATS {servers}: {reason}")]
    Connect {
        /// The URLs tried.
        servers: String,
        /// What the client said.
        reason: String,
    },
    /// The servers' limits do not fit the collector's.
    #[error(
        "NATS max_payload is {server} bytes, below the collector's max_message_bytes {ours}: set max_payload: 8MB in nats-server.conf (deploy/nats/)"
    )]
    Payload {
        /// The server's limit.
        server: usize,
        /// Ours.
        ours: usize,
    },
    /// JetStream cannot hold the log as large as configured.
    #[error(
        "JetStream refused the log stream of {max_bytes} bytes ({reason}): lower `[cluster] max_bytes` in collector.toml (per replica), or raise the servers' `jetstream {{ max_file_store }}`"
    )]
    Storage {
        /// `[cluster] max_bytes`.
        max_bytes: i64,
        /// What JetStream said.
        reason: String,
    },
    /// `[cluster.tls]` does not hold this collector's collector certificate.
    #[error("[cluster.tls]: {0}")]
    Identity(String),
    /// A JetStream request failed.
    #[error("JetStream {what}: {reason}")]
    JetStream {
        /// What was asked.
        what: &'static str,
        /// What the server or client said.
        reason: String,
    },
}

fn js_error(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> ClusterError {
    move |e| ClusterError::JetStream {
        what,
        reason: e.to_string(),
    }
}

pub use crate::hosts::Presence;

/// A live collector, kept in [`COLLECTORS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectorEntry {
    /// Its name.
    pub name: String,
    /// Where agents reach it.
    pub listen: String,
    /// Started (Unix ms).
    pub started_unix_ms: i64,
    /// Last renewed (Unix ms).
    pub seen_unix_ms: i64,
    /// Last log sequence it applied.
    pub applied: u64,
    /// Agents connected to it.
    pub agents: u64,
    /// Digest of its detection settings ([`detection_digest`]).
    #[serde(default)]
    pub detection: String,
}

/// A digest of the settings applying the log depends on: severity overrides,
/// suppressions, correlation rules and the Sigma rule files' contents. Every
/// collector applies the log with its own settings, so a collector whose
/// digest differs computes different findings; `bannin cluster` shows it.
pub fn detection_digest(
    severity_overrides: &BTreeMap<String, Severity>,
    suppress: &[crate::rules::SuppressRule],
    correlation: &crate::correlate::CorrelationConfig,
    sigma_paths: &[PathBuf],
) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("{severity_overrides:?}|{suppress:?}|{correlation:?}").as_bytes());
    // The files the Sigma loader reads (directories recursively, sorted);
    // paths it cannot list are hashed as given (they fail to load anyway).
    let files = crate::sigma::rule_files(sigma_paths).unwrap_or_else(|_| sigma_paths.to_vec());
    for file in files {
        hasher.update(
            file.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    bannin_proto::hex(hasher.finalize())[..16].to_owned()
}

/// This collector's connection to the cluster.
pub struct Cluster {
    config: ClusterConfig,
    client: async_nats::Client,
    /// Batches' publication ([`BATCH_PUBLISH_TIMEOUT`]).
    js_batches: jetstream::Context,
    /// Requests made again until they succeed ([`RETRIED_REQUEST_TIMEOUT`]).
    js_retried: jetstream::Context,
    hosts: kv::Store,
    collectors: kv::Store,
    sinks: kv::Store,
    sink_leases: kv::Store,
    evidence: object_store::ObjectStore,
    /// The newest outbox id of this collector's own actions chained here.
    chained: tokio::sync::watch::Sender<u64>,
    /// Digest of this collector's detection settings, published with its beat.
    detection: std::sync::OnceLock<String>,
    waiters: std::sync::Mutex<HashMap<String, oneshot::Sender<OpReply>>>,
    next_op: AtomicU64,
    /// Signs what this collector publishes.
    signer: signing::Signer,
    /// Checks who published what the applier reads.
    verifier: signing::Verifier,
    /// Messages of the log the applier refused, and the last one's reason.
    refused: AtomicU64,
    last_refused: std::sync::Mutex<String>,
    started_unix_ms: i64,
}

impl Cluster {
    /// Connects to NATS with the client certificate and makes sure the log
    /// stream and the buckets exist with the configured replicas.
    pub async fn connect(
        config: ClusterConfig,
        max_message_bytes: usize,
        own_tls: &bannin_proto::tls::TlsMaterial,
    ) -> Result<Arc<Self>, ClusterError> {
        // What it publishes is signed with its collector certificate, and
        // what others publish is checked against the Bannin CA.
        let material = bannin_proto::tls::TlsMaterial::load(&config.tls)
            .map_err(|e| ClusterError::Identity(e.to_string()))?;
        let signer =
            signing::Signer::new(&material, &config.name).map_err(ClusterError::Identity)?;
        let verifier =
            signing::Verifier::new(own_tls).map_err(|e| ClusterError::Identity(e.to_string()))?;
        if let Some(leaf) = material.chain.first() {
            bannin_proto::tls::CertificateChecker::new(own_tls)
                .and_then(|c| {
                    c.check(
                        leaf,
                        u64::try_from(bannin_proto::now_unix_ms() / 1000).unwrap_or(0),
                    )
                })
                .map_err(|e| {
                    ClusterError::Identity(format!(
                        "the collector certificate is not one the collector's own CA ([tls] ca) issued and valid now: {e}; every collector of a cluster signs with a certificate of the one Bannin CA"
                    ))
                })?;
        }
        let servers = config.servers.join(", ");
        let connect_error = |reason: String| ClusterError::Connect {
            servers: servers.clone(),
            reason,
        };
        let client = async_nats::ConnectOptions::new()
            .name(format!("bannin-collector {}", config.name))
            .require_tls(true)
            .add_root_certificates(config.tls.ca.clone())
            .add_client_certificate(config.tls.cert.clone(), config.tls.key.clone())
            .connection_timeout(Duration::from_secs(10))
            .max_reconnects(None)
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection");
            })
            .connect(config.servers.as_slice())
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let server_max = client.server_info().max_payload;
        // A batch (and its headers) must fit in one NATS message.
        if server_max < max_message_bytes + 4096 {
            return Err(ClusterError::Payload {
                server: server_max,
                ours: max_message_bytes,
            });
        }
        // The buckets and the object store keep this context: their
        // requests wait REQUEST_TIMEOUT.
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        let js_batches = jetstream::ContextBuilder::new()
            .timeout(BATCH_PUBLISH_TIMEOUT)
            .build(client.clone());
        let js_retried = jetstream::ContextBuilder::new()
            .timeout(RETRIED_REQUEST_TIMEOUT)
            .build(client.clone());
        let wanted = stream::Config {
            name: LOG_STREAM.into(),
            description: Some("Bannin cluster log: agents' batches and operations".into()),
            subjects: vec!["bannin.log.>".into()],
            num_replicas: config.replicas,
            max_bytes: config.max_bytes,
            max_age: config.max_age,
            duplicate_window: config.duplicate_window,
            max_message_size: i32::try_from(server_max).unwrap_or(i32::MAX),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        };
        // Servers starting together need a few seconds to elect JetStream's
        // meta leader: wait for it rather than fail the collector's start.
        let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
        let max_bytes = config.max_bytes;
        let mut log = until_ready(deadline, || async {
            js.get_or_create_stream(wanted.clone()).await.map_err(|e| {
                let reason = e.to_string();
                // JetStream refuses a stream larger than its store at
                // once: no retry makes it fit.
                if reason.contains("insufficient storage") {
                    ClusterError::Storage { max_bytes, reason }
                } else {
                    js_error("creating the log stream")(&e)
                }
            })
        })
        .await?;
        let info = log
            .info()
            .await
            .map_err(|e| js_error("reading the log stream")(&e))?;
        if info.config.num_replicas != config.replicas {
            tracing::warn!(
                stream = LOG_STREAM,
                replicas = info.config.num_replicas,
                configured = config.replicas,
                "The log stream exists with another replica count; it is kept as it is (change it with `nats stream edit`)"
            );
        }
        let hosts = until_ready(deadline, || {
            bucket(
                &js,
                HOSTS_BUCKET,
                "hosts' presence",
                Duration::ZERO,
                &config,
            )
        })
        .await?;
        let collectors = until_ready(deadline, || {
            bucket(
                &js,
                COLLECTORS_BUCKET,
                "live collectors",
                COLLECTOR_TTL,
                &config,
            )
        })
        .await?;
        let sinks = until_ready(deadline, || {
            bucket(&js, SINKS_BUCKET, "sinks' cursors", Duration::ZERO, &config)
        })
        .await?;
        let sink_leases = until_ready(deadline, || {
            bucket(
                &js,
                SINK_LEASES_BUCKET,
                "which collector runs each sink",
                SINK_LEASE_TTL,
                &config,
            )
        })
        .await?;
        let evidence = until_ready(deadline, || async {
            match js.get_object_store(EVIDENCE_BUCKET).await {
                Ok(store) => Ok(store),
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: EVIDENCE_BUCKET.into(),
                        description: Some("Bannin: evidence bundles by SHA-256".into()),
                        num_replicas: config.replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| js_error("creating the evidence object store")(&e)),
            }
        })
        .await?;
        tracing::info!(
            collector = %config.name,
            servers = %servers,
            replicas = config.replicas,
            "Cluster mode: connected to JetStream"
        );
        Ok(Arc::new(Self {
            config,
            client,
            js_batches,
            js_retried,
            hosts,
            collectors,
            sinks,
            sink_leases,
            evidence,
            chained: tokio::sync::watch::channel(0).0,
            detection: std::sync::OnceLock::new(),
            waiters: std::sync::Mutex::new(HashMap::new()),
            next_op: AtomicU64::new(1),
            signer,
            verifier,
            refused: AtomicU64::new(0),
            last_refused: std::sync::Mutex::new(String::new()),
            started_unix_ms: bannin_proto::now_unix_ms(),
        }))
    }

    /// Sets the digest of this collector's detection settings (published
    /// with every beat).
    pub fn set_detection(&self, digest: String) {
        let _ = self.detection.set(digest);
    }

    /// This collector's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Publishes an agent's batch to the log; the future resolves once
    /// JetStream holds it with the configured replicas.
    pub async fn publish_batch(
        &self,
        host: &HostId,
        batch: &v1::TelemetryBatch,
    ) -> Result<jetstream::context::PublishAckFuture, ClusterError> {
        use prost::Message;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HOST_HEADER, host.as_str());
        headers.insert(ENCODING_HEADER, "lz4");
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("b:{host}:{}", batch.sequence).as_str(),
        );
        // Compressed: every byte is stored and sent R times by JetStream and
        // once more to every collector.
        let payload = lz4_flex::compress_prepend_size(&batch.encode_to_vec());
        self.signer
            .sign(BATCH_SUBJECT, &mut headers, &payload)
            .map_err(|e| js_error("signing a batch")(&e))?;
        self.js_batches
            .publish_with_headers(BATCH_SUBJECT, headers, payload.into())
            .await
            .map_err(|e| js_error("publishing a batch")(&e))
    }

    /// Publishes `op` and waits until this collector has applied it.
    pub async fn submit(&self, op: Op, dedup: Option<String>) -> Result<OpReply, IngestError> {
        let id = format!(
            "{}:{}:{}",
            self.config.name,
            self.started_unix_ms,
            self.next_op.fetch_add(1, Ordering::Relaxed)
        );
        let payload = serde_json::to_vec(&op)
            .map_err(|e| IngestError::Journal(format!("encoding an operation: {e}")))?;
        let (tx, rx) = oneshot::channel();
        bannin_proto::lock(&self.waiters).insert(id.clone(), tx);
        let result = async {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(OP_HEADER, id.as_str());
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                dedup.as_deref().unwrap_or(&id),
            );
            let (ack, attempts) = self
                .publish_op(headers, bytes::Bytes::from(payload), PUBLISH_RETRY)
                .await
                .map_err(IngestError::Journal)?;
            // A duplicate on the first attempt was published by another
            // collector (same dedup key); on a later one it may be our own
            // earlier attempt, which this collector answers when applied.
            if ack.duplicate && attempts == 1 {
                return Ok(OpReply::Duplicate);
            }
            match tokio::time::timeout(APPLY_TIMEOUT, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(IngestError::Stopped),
                Err(_) if ack.duplicate && dedup.is_some() => Ok(OpReply::Duplicate),
                Err(_) => Err(IngestError::Journal(format!(
                    "stored in the log but not applied by this collector within {APPLY_TIMEOUT:?}"
                ))),
            }
        }
        .await;
        bannin_proto::lock(&self.waiters).remove(&id);
        result
    }

    /// Publishes an operation until JetStream takes it or `retry_for` has
    /// passed: published again while JetStream elects a new leader or the
    /// client reconnects to another server, the message id makes a second copy
    /// a duplicate, not a second operation. Returns the acknowledgement and
    /// the number of attempts.
    async fn publish_op(
        &self,
        headers: async_nats::HeaderMap,
        payload: bytes::Bytes,
        retry_for: Duration,
    ) -> Result<(jetstream::publish::PublishAck, u32), String> {
        // Signed once, here, whoever publishes: every operation in the log
        // carries its publisher's certificate and signature.
        let mut headers = headers;
        self.signer
            .sign(OP_SUBJECT, &mut headers, &payload)
            .map_err(|e| format!("signing an operation: {e}"))?;
        let deadline = tokio::time::Instant::now() + retry_for;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = async {
                self.js_retried
                    .publish_with_headers(OP_SUBJECT, headers.clone(), payload.clone())
                    .await
                    .map_err(|e| format!("publishing an operation: {e}"))?
                    .await
                    .map_err(|e| format!("JetStream did not acknowledge: {e}"))
            };
            match attempt.await {
                Ok(ack) => return Ok((ack, attempts)),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "Operation not taken yet; publishing again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn answer(&self, op_id: &str, reply: OpReply) {
        if let Some(tx) = bannin_proto::lock(&self.waiters).remove(op_id) {
            let _ = tx.send(reply);
        }
    }

    /// Messages of the log this collector's applier refused since it
    /// started, and why the last one was.
    pub fn refused(&self) -> (u64, String) {
        (
            self.refused.load(Ordering::Relaxed),
            bannin_proto::lock(&self.last_refused).clone(),
        )
    }

    /// Records which collector holds `host`'s stream (or none).
    pub async fn put_presence(&self, presence: &Presence) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(presence).map_err(|e| js_error("encoding presence")(&e))?;
        self.hosts
            .put(&presence.record.host_id, value.into())
            .await
            .map_err(|e| js_error("recording presence")(&e))?;
        Ok(())
    }

    /// Watches every host's presence: the current entries first, then changes.
    pub async fn watch_presence(&self) -> Result<kv::Watch, ClusterError> {
        self.hosts
            .watch_all_from_revision(1)
            .await
            .map_err(|e| js_error("watching presence")(&e))
    }

    /// Renews this collector's entry.
    pub async fn beat(&self, listen: &str, applied: u64, agents: u64) -> Result<(), ClusterError> {
        let entry = CollectorEntry {
            name: self.config.name.clone(),
            listen: listen.to_owned(),
            started_unix_ms: self.started_unix_ms,
            seen_unix_ms: bannin_proto::now_unix_ms(),
            applied,
            agents,
            detection: self.detection.get().cloned().unwrap_or_default(),
        };
        let value = serde_json::to_vec(&entry).map_err(|e| js_error("encoding an entry")(&e))?;
        self.collectors
            .put(&self.config.name, value.into())
            .await
            .map_err(|e| js_error("renewing the collector's entry")(&e))?;
        Ok(())
    }

    /// The live collectors.
    pub async fn collectors(&self) -> Result<Vec<CollectorEntry>, ClusterError> {
        let mut keys = self
            .collectors
            .keys()
            .await
            .map_err(|e| js_error("listing collectors")(&e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| js_error("listing collectors")(&e))?;
            if let Some(value) = self
                .collectors
                .get(&key)
                .await
                .map_err(|e| js_error("reading a collector")(&e))?
                && let Ok(entry) = serde_json::from_slice::<CollectorEntry>(&value)
            {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The NATS server this collector is connected to, and the cluster's
    /// other servers as that server announces them.
    pub fn server(&self) -> async_nats::ServerInfo {
        self.client.server_info()
    }

    /// The log stream's and the buckets' state, asked of all at once: a
    /// stream between leaders answers with why it could not be read (within
    /// [`RETRIED_REQUEST_TIMEOUT`]: the caller asks again) rather than
    /// holding the others.
    pub async fn streams(&self) -> Vec<(String, Result<stream::Info, ClusterError>)> {
        let read = |name: String| async move {
            let info = async {
                let mut s = self
                    .js_retried
                    .get_stream(&name)
                    .await
                    .map_err(|e| js_error("reading a stream")(&e))?;
                s.info()
                    .await
                    .cloned()
                    .map_err(|e| js_error("reading a stream")(&e))
            }
            .await;
            (name, info)
        };
        let (log, hosts, collectors, sinks, leases, evidence) = tokio::join!(
            read(LOG_STREAM.to_owned()),
            read(format!("KV_{HOSTS_BUCKET}")),
            read(format!("KV_{COLLECTORS_BUCKET}")),
            read(format!("KV_{SINKS_BUCKET}")),
            read(format!("KV_{SINK_LEASES_BUCKET}")),
            read(format!("OBJ_{EVIDENCE_BUCKET}")),
        );
        vec![log, hosts, collectors, sinks, leases, evidence]
    }
}

/// Runs `attempt` until it succeeds or `deadline` passes (then its last
/// error): a JetStream request while the servers are still electing leaders
/// fails, and is only worth making again.
async fn until_ready<T, E, F, Fut>(deadline: tokio::time::Instant, mut attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if e.to_string().contains("insufficient storage") => return Err(e),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "JetStream not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    max_age: Duration,
    config: &ClusterConfig,
) -> Result<kv::Store, ClusterError> {
    // The bucket's stream is made here with the key-value conventions
    // (ADR-8) rather than by `create_key_value`, which first reads the
    // account's limits in a form nats-server 2.9 does not answer.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        description: Some(format!("Bannin: {description}")),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| js_error("creating a bucket")(&e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| js_error("opening a bucket")(&e))
}

/// Parses `nats://`, `tls://` or `host:port` server URLs.
pub fn check_server(url: &str) -> Result<(), String> {
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Where a cluster's TLS files are, relative to the config file.
pub fn tls_paths(base: &std::path::Path, ca: PathBuf, cert: PathBuf, key: PathBuf) -> TlsPaths {
    TlsPaths {
        ca: base.join(ca),
        cert: base.join(cert),
        key: base.join(key),
    }
}

/// Marks `store` as a cluster collector's (a cache of the log); `false` when
/// a standalone collector made it: its own findings and events would take ids
/// and sequences the log gives to others.
pub fn claim_store(store: &Store) -> Result<bool, crate::store::StoreError> {
    if store.counter(MEMBER_COUNTER)? > 0 {
        return Ok(true);
    }
    if store.last_finding_id()? > 0 || !store.high_waters()?.is_empty() {
        return Ok(false);
    }
    // When it was claimed: names this store's outbox messages apart from those
    // of an earlier store of a collector with the same name.
    let stamp = u64::try_from(bannin_proto::now_unix_ms())
        .unwrap_or(1)
        .max(1);
    store.set_counter_now(MEMBER_COUNTER, stamp)?;
    store.make_durable()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detection_digest_changes_with_the_settings_and_the_rule_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("dir");
        std::fs::write(rules.join("a.yml"), "title: a\n").expect("rule");
        std::fs::write(rules.join("b.yml"), "title: b\n").expect("rule");
        let correlation = crate::correlate::CorrelationConfig::default();
        let digest = |overrides: &BTreeMap<String, Severity>| {
            detection_digest(overrides, &[], &correlation, std::slice::from_ref(&rules))
        };
        let none = BTreeMap::new();
        let first = digest(&none);
        assert_eq!(first.len(), 16);
        assert_eq!(digest(&none), first, "the same settings, the same digest");
        let overridden = BTreeMap::from([("process.memfd_exec".to_owned(), Severity::Low)]);
        assert_ne!(digest(&overridden), first, "a severity override counts");
        std::fs::write(rules.join("b.yml"), "title: b2\n").expect("rule");
        assert_ne!(digest(&none), first, "a rule file's content counts");
        // Rule files in subdirectories count too, as the loader reads them.
        let changed = digest(&none);
        std::fs::create_dir_all(rules.join("linux")).expect("dir");
        std::fs::write(rules.join("linux").join("c.yml"), "title: c\n").expect("rule");
        let nested = digest(&none);
        assert_ne!(nested, changed, "a nested rule file counts");
        std::fs::write(rules.join("linux").join("c.yml"), "title: c2\n").expect("rule");
        assert_ne!(digest(&none), nested, "a nested rule file's content counts");
    }

    #[test]
    fn a_store_a_standalone_collector_used_is_refused_and_a_new_one_claimed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("fresh")).expect("store");
        assert!(
            claim_store(&store).expect("claim"),
            "an empty store is claimed"
        );
        assert!(claim_store(&store).expect("again"), "and stays claimed");

        let used = Store::open(&dir.path().join("used")).expect("store");
        let mut set = crate::store::WriteSet::default();
        set.set_high_water("web-1", 7);
        used.apply(set).expect("apply");
        assert!(
            !claim_store(&used).expect("claim"),
            "a store holding a host's batches is a standalone collector's"
        );
        assert_eq!(used.counter(MEMBER_COUNTER).expect("counter"), 0);
    }
}
