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
use crate::model::{
    Action, CommandState, EvidenceRecord, Finding, FindingState, NewFinding, Severity,
};
use crate::store::Store;

pub mod init;
pub mod signing;

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
pub const APPLIED_COUNTER: &str = "cluster.applied";
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

/// A change to durable state that is not an agent's batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A finding a collector observed itself (`host.silent`, identity conflicts…)
    /// or an operator added.
    Raise {
        /// The host.
        host_id: String,
        /// Finding kind.
        kind: String,
        /// Severity.
        severity: Severity,
        /// When observed.
        observed_unix_ms: i64,
        /// Details.
        attributes: BTreeMap<String, String>,
        /// Summary.
        summary: String,
    },
    /// A finding moved to another state by an operator.
    SetState {
        /// Finding id.
        id: u64,
        /// New state.
        state: FindingState,
        /// Who.
        operator: String,
        /// Why.
        note: String,
    },
    /// An entry of the action log, recorded on any collector: every collector
    /// chains it in the log's order, so the chain is the same everywhere.
    Action {
        /// The action.
        action: Action,
        /// The collector that recorded it.
        #[serde(default)]
        origin: String,
        /// Its id in that collector's outbox (increasing).
        #[serde(default)]
        outbox: u64,
    },
    /// A piece of evidence verified by the collector that received it, its
    /// bundle already in the object store; every collector records it under
    /// the same id.
    Evidence {
        /// The record (its id is given when applied).
        record: EvidenceRecord,
    },
    /// A host's desired isolation state, as the collector holding it set it:
    /// every collector shows it (and a collector taking the host over knows
    /// what to reconcile).
    Isolation {
        /// The host.
        host_id: String,
        /// The state.
        isolation: crate::model::Isolation,
    },
    /// An operator added, re-roled or disabled: every collector's operator
    /// table changes (and live operator streams are re-checked).
    Operator {
        /// The operator's record as it now is.
        record: crate::model::OperatorRecord,
    },
    /// A host revoked: every collector refuses its keys and cuts the
    /// sessions it holds.
    RevokeHost {
        /// Who, by whom, why.
        revoked: crate::model::RevokedHost,
        /// Every key revoked with it.
        keys: Vec<String>,
    },
    /// An incident opened: applying it gives it the next incident id (the
    /// same on every collector).
    OpenIncident {
        /// The incident (its id is given when applied).
        incident: crate::model::Incident,
    },
    /// An incident changed: every collector applies the same update to its
    /// copy, in log order (two operators updating at once both get their
    /// change, in one order).
    UpdateIncident {
        /// Its id.
        id: u64,
        /// The change.
        update: crate::incidents::Update,
        /// Who.
        operator: String,
        /// When (the caller's clock, as a standalone collector records it).
        at_unix_ms: i64,
    },
    /// An enrollment token created (its id made so no collector makes it
    /// again).
    PutToken {
        /// The token (its secret's hash only).
        record: crate::model::TokenRecord,
    },
    /// One use of a token taken by a host enrolling through some collector:
    /// applied in log order, so a token's last use is taken once.
    UseToken {
        /// Token id.
        id: String,
        /// The enrolling host.
        host: String,
        /// When (the enrolling collector's clock; expiry is judged by it).
        at_unix_ms: i64,
    },
    /// A token revoked.
    RevokeToken {
        /// Token id.
        id: String,
    },
    /// Operator-set labels of a host changed (by an operator, or from the
    /// token it enrolled with): applied as a change to every collector's copy.
    LabelHost {
        /// The host.
        host_id: String,
        /// Labels set.
        set: BTreeMap<String, String>,
        /// Label keys removed.
        remove: Vec<String>,
    },
    /// A piece of evidence disposed of: marked so everywhere, and every
    /// collector's local copy removed.
    DisposeEvidence {
        /// Its id.
        id: String,
    },
    /// A command queued for a host, through any collector: applying it gives
    /// it its id (its log position, the same on every collector), and the
    /// collector holding the host's stream — or the one it next connects to —
    /// delivers it.
    IssueCommand {
        /// The command (its id is given when applied).
        command: crate::model::Command,
    },
    /// A command moved on (delivered, answered, expired) by the collector
    /// that delivered it, heard the answer or expired it. Applied only as a
    /// move forward: a final state is never changed again.
    UpdateCommand {
        /// Its id.
        id: u64,
        /// The new state.
        state: crate::model::CommandState,
        /// When (that collector's clock).
        at_unix_ms: i64,
        /// The host's answer (answers only).
        #[serde(default)]
        result: String,
    },
}

impl Op {
    /// The operation raising `finding`.
    pub fn raise(finding: &NewFinding) -> Self {
        Self::Raise {
            host_id: finding.host_id.to_string(),
            kind: finding.kind.clone(),
            severity: finding.severity,
            observed_unix_ms: finding.observed_unix_ms,
            attributes: finding.attributes.clone(),
            summary: finding.summary.clone(),
        }
    }
}

/// What applying an [`Op`] produced, for the collector that published it.
#[derive(Debug)]
pub enum OpReply {
    /// A raised finding's id (0: suppressed).
    Raise(Result<u64, IngestError>),
    /// The finding after its state change.
    SetState(Result<Finding, IngestError>),
    /// The evidence record as recorded (or disposed of).
    Evidence(Result<EvidenceRecord, IngestError>),
    /// Another collector published the same observation first (same dedup
    /// key within the duplicate window): stored once, by that one.
    Duplicate,
}

impl OpReply {
    /// The answer to a raise.
    pub fn into_raise(self) -> Result<u64, IngestError> {
        match self {
            Self::Raise(r) => r,
            Self::Duplicate => Ok(0),
            Self::SetState(_) | Self::Evidence(_) => {
                Err(IngestError::Cluster("unexpected answer to a raise".into()))
            }
        }
    }

    /// The answer to an evidence operation.
    pub fn into_evidence(self) -> Result<EvidenceRecord, IngestError> {
        match self {
            Self::Evidence(r) => r,
            _ => Err(IngestError::Cluster(
                "unexpected answer to an evidence operation".into(),
            )),
        }
    }

    /// The answer to a state change.
    pub fn into_set_state(self) -> Result<Finding, IngestError> {
        match self {
            Self::SetState(r) => r,
            _ => Err(IngestError::Cluster(
                "unexpected answer to a state change".into(),
            )),
        }
    }
}

/// Which collector holds a host's stream, kept in [`HOSTS_BUCKET`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The collector ("" once the stream closed).
    pub collector: String,
    /// Last heard from (Unix ms).
    pub last_seen_unix_ms: i64,
    /// The host's record as that collector keeps it.
    pub record: crate::model::HostRecord,
}

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
            .map_err(|e| IngestError::Cluster(format!("encoding an operation: {e}")))?;
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
                .map_err(IngestError::Cluster)?;
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
                Err(_) => Err(IngestError::Cluster(format!(
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

/// What the applier waits for after handing a message to the writer.
enum Applying {
    /// The writer's answer to a batch.
    Batch(oneshot::Receiver<Result<u64, IngestError>>),
    /// The writer's answer to a raise, for the operation's waiter (if it was
    /// published here).
    Raise(String, oneshot::Receiver<Result<u64, IngestError>>),
    /// The same for a state change.
    SetState(String, oneshot::Receiver<Result<Finding, IngestError>>),
    /// An action chained; its outbox id if this collector recorded it (0
    /// otherwise).
    Action(u64, oneshot::Receiver<Result<u64, IngestError>>),
    /// An evidence record (or disposal); `true` for a disposal.
    Evidence(
        String,
        bool,
        oneshot::Receiver<Result<EvidenceRecord, IngestError>>,
    ),
    /// An operation already carried out by the applier: its answer.
    Done(String, Box<OpReply>),
    /// Nothing to wait for (a message that could not be read).
    Nothing,
}

/// Applies the log to this collector's store, in stream order, from the
/// position after the last one applied, until `shutdown`. A failed commit or a
/// lost connection starts it again from the durable position.
pub async fn run_applier(
    cluster: Arc<Cluster>,
    ingest: Ingest,
    evidence: Arc<crate::evidence::Evidence>,
    side: SideEffects,
    shutdown: CancellationToken,
) {
    loop {
        let durable = match side.store.counter(APPLIED_COUNTER) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "Cannot read the applied log position");
                0
            }
        };
        match apply_from(&cluster, &ingest, &side, &evidence, durable, &shutdown).await {
            Ok(()) => return,
            Err(reason) => {
                tracing::warn!(%reason, applied = durable, "Log applier restarting");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(APPLIER_RESTART) => {}
        }
    }
}

async fn apply_from(
    cluster: &Arc<Cluster>,
    ingest: &Ingest,
    side: &SideEffects,
    evidence: &Arc<crate::evidence::Evidence>,
    durable: u64,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let log = cluster
        .js_retried
        .get_stream(LOG_STREAM)
        .await
        .map_err(|e| format!("log stream: {e}"))?;
    // The applier's own consumer rather than the library's ordered one:
    // that one notices a dead server after two 15 s heartbeats and then
    // retries with a backoff growing to 10 s. This one hears a heartbeat
    // twice a second; two missed, a gap in its sequence or any error, and the
    // applier starts again from its durable position on a new consumer.
    let consumer = log
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: durable + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            max_deliver: 1,
            num_replicas: 1,
            memory_storage: true,
            inactive_threshold: Duration::from_secs(30),
            description: Some(format!("Bannin applier of collector {}", cluster.name())),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("applier's consumer: {e}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .expires(APPLIER_HEARTBEAT * 10)
        .heartbeat(APPLIER_HEARTBEAT)
        .messages()
        .await
        .map_err(|e| format!("reading the log: {e}"))?;
    let mut delivered = 0_u64;
    let writer = ingest.writer();
    let (applying_tx, applying_rx) = mpsc::channel::<Applying>(4096);
    let failed = CancellationToken::new();
    // Not on a TaskTracker: it ends when this function drops its sender.
    #[allow(clippy::disallowed_methods)]
    let answers = tokio::spawn(forward_answers(
        cluster.clone(),
        evidence.clone(),
        applying_rx,
        failed.clone(),
    ));
    let mut prev = durable;
    // A backstop to the heartbeats: when nothing arrives for a while, the
    // stream's last sequence says whether the log moved on without us.
    let mut idle = tokio::time::interval(STALL_CHECK);
    idle.reset();
    let outcome = loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            () = failed.cancelled() => break Err("a commit failed; re-reading from the durable position".to_owned()),
            _ = idle.tick() => {
                match log.get_info().await {
                    Ok(info) if info.state.last_sequence > prev => {
                        break Err(format!(
                            "no message for {STALL_CHECK:?} while the log holds up to {} (applied {prev})",
                            info.state.last_sequence
                        ));
                    }
                    Ok(_) => continue,
                    Err(e) => break Err(format!("log stream: {e}")),
                }
            }
            m = messages.next() => m,
        };
        idle.reset();
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(e)) => break Err(format!("reading the log: {e}")),
            None => break Err("the log ended".to_owned()),
        };
        let (seq, at) = match message.info() {
            Ok(info) if info.consumer_sequence != delivered + 1 => {
                break Err(format!(
                    "the consumer skipped from {delivered} to {}",
                    info.consumer_sequence
                ));
            }
            Ok(info) => (
                info.stream_sequence,
                i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
            ),
            Err(e) => break Err(format!("a log message without its position: {e}")),
        };
        delivered += 1;
        if prev == durable && seq > durable + 1 && durable > 0 {
            tracing::warn!(
                applied = durable,
                first = seq,
                "The log no longer holds messages this collector had not applied (removed by the stream's limits); continuing from the oldest it holds"
            );
        }
        // Only what a collector of this CA signed is applied; anything else
        // is applied as nothing, so the position still moves past it.
        if let Err(refusal) = cluster.verifier.check(
            message.subject.as_str(),
            message.headers.as_ref(),
            &message.payload,
            at,
        ) {
            let reason = format!("log {seq} ({}): {refusal}", message.subject);
            tracing::warn!(log.seq = seq, subject = %message.subject, %refusal, "Refused a message of the cluster log");
            cluster.refused.fetch_add(1, Ordering::Relaxed);
            *bannin_proto::lock(&cluster.last_refused) = reason;
            if writer
                .send(WriteRequest::Applied {
                    seq,
                    prev,
                    at,
                    request: None,
                })
                .await
                .is_err()
            {
                break Ok(());
            }
            prev = seq;
            continue;
        }
        let (request, applying) = match carry_out(&message, seq, side).await {
            Err(reason) => break Err(reason),
            Ok(Some(done)) => (None, done),
            Ok(None) => decode(ingest, cluster.name(), &message, seq, at),
        };
        if let Some(WriteRequest::Raise { finding, .. }) = request.as_deref()
            && finding.kind == "host.silent"
        {
            side.hosts.mark_silent(finding.host_id.as_str());
        }
        if writer
            .send(WriteRequest::Applied {
                seq,
                prev,
                at,
                request,
            })
            .await
            .is_err()
        {
            break Ok(());
        }
        prev = seq;
        if applying_tx.send(applying).await.is_err() {
            break Err("the answers task stopped".to_owned());
        }
    };
    drop(applying_tx);
    let _ = answers.await;
    outcome
}

/// What the applier changes itself, outside the writer.
pub struct SideEffects {
    /// This collector's store.
    pub store: Store,
    /// Hosts with a command newly queued: delivered by this collector if it
    /// holds their stream.
    pub due: mpsc::UnboundedSender<String>,
    /// Its host registry (revocations).
    pub hosts: Arc<crate::hosts::HostRegistry>,
    /// Bumped when operators change (live operator streams re-check).
    pub operator_changes: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Carries out an operation that changes what lives outside the writer
/// (operators, revocations) before the log position moves past it: durable
/// before the writer stores the position, so a crash re-applies it (both are
/// idempotent). `None` for every other message; an error when it could not
/// be carried out (the applier starts again from the durable position).
async fn carry_out(
    message: &jetstream::Message,
    seq: u64,
    side: &SideEffects,
) -> Result<Option<Applying>, String> {
    if message.subject.as_str() != OP_SUBJECT {
        return Ok(None);
    }
    let op_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(OP_HEADER))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    let Ok(op) = serde_json::from_slice::<Op>(&message.payload) else {
        return Ok(None);
    };
    // The answer to the operation's waiter (if it was published here).
    let done = |reply: Result<u64, IngestError>| {
        Ok(Some(Applying::Done(
            op_id.clone(),
            Box::new(OpReply::Raise(reply)),
        )))
    };
    let store = side.store.clone();
    match op {
        Op::Operator { record } => {
            let name = record.name.clone();
            blocking("applying an operator change", move || {
                store.put_operator(&record)?;
                store.make_durable()
            })
            .await?;
            side.operator_changes.send_modify(|n| *n += 1);
            tracing::info!(operator = %name, "Operator change applied from the log");
            done(Ok(0))
        }
        Op::RevokeHost { revoked, keys } => {
            let hosts = side.hosts.clone();
            let host = revoked.host_id.clone();
            let (cut, _) = blocking("applying a revocation", move || {
                hosts.revoke(revoked, &keys)
            })
            .await?;
            tracing::warn!(host.id = %host, sessions_cut = cut, "Host revoked (from the log)");
            done(Ok(u64::try_from(cut).unwrap_or(0)))
        }
        Op::OpenIncident { mut incident } => {
            let id = blocking("opening an incident", move || {
                // Carried out already (a re-read after a failed commit): the
                // same incident, not a second one.
                if store.counter(CARRIED_OUT)? >= seq {
                    let same = store.incidents()?.into_iter().rev().find(|i| {
                        i.title == incident.title
                            && i.opened_by == incident.opened_by
                            && i.opened_unix_ms == incident.opened_unix_ms
                    });
                    return Ok(same.map_or(0, |i| i.id));
                }
                incident.id = store.next_incident_id()?;
                store.put_incident(&incident)?;
                store.set_counter_now(CARRIED_OUT, seq)?;
                store.make_durable()?;
                Ok(incident.id)
            })
            .await?;
            done(Ok(id))
        }
        Op::UpdateIncident {
            id,
            update,
            operator,
            at_unix_ms,
        } => {
            let outcome = blocking("updating an incident", move || {
                if store.counter(CARRIED_OUT)? >= seq {
                    return Ok(Ok(id));
                }
                let Some(mut incident) = store.incident(id)? else {
                    return Ok(Err(format!("no incident {id}")));
                };
                // Refused here as it would be on a standalone collector (the
                // caller checked it first; a concurrent change may have
                // closed it since).
                let outcome =
                    match crate::incidents::apply(&mut incident, update, &operator, at_unix_ms) {
                        Ok(_) => {
                            store.put_incident(&incident)?;
                            Ok(id)
                        }
                        Err(e) => Err(e.to_string()),
                    };
                store.set_counter_now(CARRIED_OUT, seq)?;
                store.make_durable()?;
                Ok(outcome)
            })
            .await?;
            done(outcome.map_err(IngestError::Cluster))
        }
        Op::PutToken { record } => {
            blocking("storing a token", move || {
                store.insert_token(&record)?;
                store.make_durable()
            })
            .await?;
            done(Ok(0))
        }
        Op::UseToken {
            id,
            host,
            at_unix_ms,
        } => {
            let outcome = blocking("using a token", move || {
                if store.counter(CARRIED_OUT)? >= seq {
                    return Ok(Ok(0));
                }
                let outcome = if store.token(&id)?.is_some() {
                    match crate::enroll::use_token(&store, &id, &host, at_unix_ms)? {
                        Ok(_) => Ok(0),
                        Err(why) => Err(why.to_owned()),
                    }
                } else {
                    Err(format!("no token {id}"))
                };
                store.set_counter_now(CARRIED_OUT, seq)?;
                store.make_durable()?;
                Ok(outcome)
            })
            .await?;
            done(outcome.map_err(IngestError::Cluster))
        }
        Op::RevokeToken { id } => {
            blocking("revoking a token", move || {
                if store.token(&id)?.is_some() {
                    store
                        .update_token(&id, |mut token| {
                            token.revoked = true;
                            Ok::<_, std::convert::Infallible>(token)
                        })?
                        .unwrap_or_else(|never| match never {});
                }
                store.make_durable()
            })
            .await?;
            done(Ok(0))
        }
        Op::IssueCommand { mut command } => {
            let host = command.host_id.clone();
            blocking("queueing a command", move || {
                // Its id is its log position: the same on every collector,
                // whatever part of the log a collector started from, and
                // applying it again (a re-read) finds it stored already.
                command.id = seq;
                if store.command(seq)?.is_none() {
                    store.put_command(&command)?;
                    store.make_durable()?;
                }
                Ok(())
            })
            .await?;
            let _ = side.due.send(host);
            done(Ok(seq))
        }
        Op::UpdateCommand {
            id,
            state,
            at_unix_ms,
            result,
        } => {
            let moved = blocking("updating a command", move || {
                let Some(mut command) = store.command(id)? else {
                    return Ok(0);
                };
                if !command_moves(command.state, state) {
                    return Ok(0);
                }
                command.state = state;
                if state == CommandState::Delivered {
                    command.delivered_unix_ms = at_unix_ms;
                } else {
                    command.finished_unix_ms = at_unix_ms;
                    command.result = result;
                }
                store.put_command(&command)?;
                store.make_durable()?;
                Ok(1)
            })
            .await?;
            done(Ok(moved))
        }
        Op::LabelHost {
            host_id,
            set,
            remove,
        } => {
            blocking("labelling a host", move || {
                let mut labels = store.host_labels(&host_id)?;
                for key in &remove {
                    labels.set.remove(key);
                }
                labels.set.extend(set);
                store.put_host_labels(&host_id, &labels)?;
                store.make_durable()
            })
            .await?;
            done(Ok(0))
        }
        _ => Ok(None),
    }
}

/// Whether a command in state `from` may move to `to`: forward only, once
/// final never again (two collectors that both saw an answer, or one that
/// expired a command another just delivered, change it once).
fn command_moves(from: CommandState, to: CommandState) -> bool {
    match to {
        CommandState::Pending => false,
        CommandState::Delivered | CommandState::Expired => from == CommandState::Pending,
        CommandState::Succeeded | CommandState::Failed => !from.is_final(),
    }
}

/// Runs `work` on the blocking pool; a store error (or a panic) is the reason
/// the applier starts again from the durable position.
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// The stream sequence of the last operation [`carry_out`] carried out.
const CARRIED_OUT: &str = "cluster.carried_out";

/// Turns one log message into the writer's request.
fn decode(
    ingest: &Ingest,
    me: &str,
    message: &jetstream::Message,
    seq: u64,
    at: i64,
) -> (Option<Box<WriteRequest>>, Applying) {
    use prost::Message;
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    match message.subject.as_str() {
        BATCH_SUBJECT => {
            let host = header(HOST_HEADER).and_then(|h| HostId::new(h).ok());
            let batch = match header(ENCODING_HEADER).as_deref() {
                None => v1::TelemetryBatch::decode(message.payload.clone()).ok(),
                Some("lz4") => decompress_batch(&message.payload)
                    .and_then(|plain| v1::TelemetryBatch::decode(plain.as_slice()).ok()),
                Some(_) => None,
            };
            let (Some(host), Some(batch)) = (host, batch) else {
                tracing::error!(log.seq = seq, "Unreadable batch in the log; skipped");
                return (None, Applying::Nothing);
            };
            match ingest.prepare_at(&host, batch, at) {
                Ok(batch) => {
                    let (reply, rx) = oneshot::channel();
                    (
                        Some(Box::new(WriteRequest::Batch { host, batch, reply })),
                        Applying::Batch(rx),
                    )
                }
                Err(error) => {
                    tracing::error!(log.seq = seq, host.id = %host, %error, "Batch in the log refused; skipped");
                    (None, Applying::Nothing)
                }
            }
        }
        OP_SUBJECT => {
            let op_id = header(OP_HEADER).unwrap_or_default();
            let op = match serde_json::from_slice::<Op>(&message.payload) {
                Ok(op) => op,
                Err(error) => {
                    tracing::error!(log.seq = seq, %error, "Unreadable operation in the log; skipped");
                    return (None, Applying::Nothing);
                }
            };
            match op {
                Op::Raise {
                    host_id,
                    kind,
                    severity,
                    observed_unix_ms,
                    attributes,
                    summary,
                } => {
                    let Ok(host_id) = HostId::new(host_id) else {
                        tracing::error!(log.seq = seq, "Raise for an invalid host id; skipped");
                        return (None, Applying::Nothing);
                    };
                    let (reply, rx) = oneshot::channel();
                    let finding = NewFinding {
                        host_id,
                        kind,
                        severity,
                        observed_unix_ms,
                        attributes,
                        summary,
                    };
                    (
                        Some(Box::new(WriteRequest::Raise { finding, reply })),
                        Applying::Raise(op_id, rx),
                    )
                }
                Op::Action {
                    action,
                    origin,
                    outbox,
                } => {
                    let (reply, rx) = oneshot::channel();
                    let mine = if origin == me { outbox } else { 0 };
                    (
                        Some(Box::new(WriteRequest::ChainAction { seq, action, reply })),
                        Applying::Action(mine, rx),
                    )
                }
                Op::Isolation { host_id, isolation } => {
                    let (reply, rx) = oneshot::channel();
                    (
                        Some(Box::new(WriteRequest::PutIsolation {
                            host_id,
                            isolation,
                            reply,
                        })),
                        Applying::Raise(op_id, rx),
                    )
                }
                Op::Operator { .. }
                | Op::RevokeHost { .. }
                | Op::OpenIncident { .. }
                | Op::UpdateIncident { .. }
                | Op::PutToken { .. }
                | Op::UseToken { .. }
                | Op::RevokeToken { .. }
                | Op::LabelHost { .. }
                | Op::IssueCommand { .. }
                | Op::UpdateCommand { .. } => {
                    // Carried out by the applier (`carry_out`), not the writer.
                    (None, Applying::Nothing)
                }
                Op::Evidence { record } => {
                    let (reply, rx) = oneshot::channel();
                    (
                        Some(Box::new(WriteRequest::Evidence { record, reply })),
                        Applying::Evidence(op_id, false, rx),
                    )
                }
                Op::DisposeEvidence { id } => {
                    let (reply, rx) = oneshot::channel();
                    (
                        Some(Box::new(WriteRequest::DisposeEvidence { id, reply })),
                        Applying::Evidence(op_id, true, rx),
                    )
                }
                Op::SetState {
                    id,
                    state,
                    operator,
                    note,
                } => {
                    let (reply, rx) = oneshot::channel();
                    (
                        Some(Box::new(WriteRequest::SetState {
                            id,
                            state,
                            operator,
                            note,
                            reply,
                        })),
                        Applying::SetState(op_id, rx),
                    )
                }
            }
        }
        other => {
            tracing::warn!(log.seq = seq, subject = %other, "Log message on an unknown subject; skipped");
            (None, Applying::Nothing)
        }
    }
}

/// A batch's payload as [`Cluster::publish_batch`] compressed it; `None` when
/// it does not decompress or claims to be larger than any batch may be.
fn decompress_batch(payload: &[u8]) -> Option<Vec<u8>> {
    let claimed = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    if usize::try_from(claimed).ok()? > MAX_BATCH_BYTES {
        return None;
    }
    lz4_flex::decompress_size_prepended(payload).ok()
}

/// Waits for the writer's answers in order: hands operations' results to
/// whoever published them here, and stops the applier when a commit failed.
async fn forward_answers(
    cluster: Arc<Cluster>,
    evidence: Arc<crate::evidence::Evidence>,
    mut applying: mpsc::Receiver<Applying>,
    failed: CancellationToken,
) {
    let fail = |error: &IngestError| {
        if !failed.is_cancelled() {
            tracing::warn!(%error, "Applying the log failed");
            failed.cancel();
        }
    };
    while let Some(next) = applying.recv().await {
        match next {
            Applying::Batch(rx) => match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => fail(&error),
                Err(_) => return,
            },
            Applying::Raise(op, rx) => match rx.await {
                Ok(result) => {
                    if let Err(error) = &result
                        && matches!(
                            error,
                            IngestError::OutOfOrder | IngestError::CommitFailed(_)
                        )
                    {
                        fail(error);
                        continue;
                    }
                    cluster.answer(&op, OpReply::Raise(result));
                }
                Err(_) => return,
            },
            Applying::SetState(op, rx) => match rx.await {
                Ok(result) => {
                    if let Err(error) = &result
                        && matches!(
                            error,
                            IngestError::OutOfOrder | IngestError::CommitFailed(_)
                        )
                    {
                        fail(error);
                        continue;
                    }
                    cluster.answer(&op, OpReply::SetState(result));
                }
                Err(_) => return,
            },
            Applying::Action(mine, rx) => match rx.await {
                Ok(Ok(_)) => {
                    if mine > 0 {
                        cluster.chained.send_if_modified(|newest| {
                            let newer = mine > *newest;
                            *newest = (*newest).max(mine);
                            newer
                        });
                    }
                }
                Ok(Err(error)) => fail(&error),
                Err(_) => return,
            },
            Applying::Evidence(op, disposal, rx) => match rx.await {
                Ok(result) => {
                    if let Err(error) = &result
                        && matches!(
                            error,
                            IngestError::OutOfOrder | IngestError::CommitFailed(_)
                        )
                    {
                        fail(error);
                        continue;
                    }
                    if disposal && let Ok(record) = &result {
                        // Disposed of everywhere: this collector's copy too.
                        let (evidence, record) = (evidence.clone(), record.clone());
                        let removed =
                            tokio::task::spawn_blocking(move || evidence.dispose(&record)).await;
                        if let Ok(Err(error)) = removed
                            && error.kind() != std::io::ErrorKind::NotFound
                        {
                            tracing::error!(%error, "Cannot remove a disposed bundle's local copy");
                        }
                    }
                    cluster.answer(&op, OpReply::Evidence(result));
                }
                Err(_) => return,
            },
            Applying::Done(op, reply) => cluster.answer(&op, *reply),
            Applying::Nothing => {}
        }
    }
}

/// A sink's lease, as [`Cluster::lease_sink`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkLease {
    /// This collector runs the sink; renew with this revision.
    Held(u64),
    /// Another collector runs it (its name; empty while nobody holds it).
    Elsewhere(String),
}

impl Cluster {
    /// A sink's cursor: the id of the last finding it delivered (0: none yet).
    pub async fn sink_cursor(&self, sink: &str) -> Result<u64, ClusterError> {
        let value = self
            .sinks
            .get(sink)
            .await
            .map_err(|e| js_error("reading a sink's cursor")(&e))?;
        Ok(value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Moves a sink's cursor (only the lease holder calls it).
    pub async fn set_sink_cursor(&self, sink: &str, cursor: u64) -> Result<(), ClusterError> {
        self.sinks
            .put(sink, cursor.to_string().into())
            .await
            .map(|_| ())
            .map_err(|e| js_error("saving a sink's cursor")(&e))
    }

    /// Takes `sink`'s lease if nobody holds it, or renews the one this
    /// collector holds (`held`: its revision). Compare-and-set on the
    /// bucket's revisions, so two collectors never both take it; a lease not
    /// renewed lapses after [`SINK_LEASE_TTL`] and another collector takes
    /// the sink over from its cursor.
    pub async fn lease_sink(
        &self,
        sink: &str,
        held: Option<u64>,
    ) -> Result<SinkLease, ClusterError> {
        let me = bytes::Bytes::from(self.config.name.clone());
        let taken = match held {
            Some(revision) => self
                .sink_leases
                .update(sink, me.clone(), revision)
                .await
                .ok(),
            None => self.sink_leases.create(sink, me.clone()).await.ok(),
        };
        if let Some(revision) = taken {
            return Ok(SinkLease::Held(revision));
        }
        let entry = self
            .sink_leases
            .entry(sink)
            .await
            .map_err(|e| js_error("reading a sink's lease")(&e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let holder = String::from_utf8_lossy(&e.value).into_owned();
                // Ours from before a restart: carry on with it.
                if holder == self.config.name
                    && let Ok(revision) = self.sink_leases.update(sink, me, e.revision).await
                {
                    return Ok(SinkLease::Held(revision));
                }
                Ok(SinkLease::Elsewhere(holder))
            }
            _ => Ok(SinkLease::Elsewhere(String::new())),
        }
    }
}

/// How long an operator call waits for its own action to be chained.
pub const CHAIN_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Waits until the action this collector recorded with outbox id `id` is
    /// in its own copy of the chain (published and applied), so what the
    /// caller reads next (custody for an export) includes it.
    pub async fn wait_chained(&self, id: u64) -> Result<(), ClusterError> {
        let mut chained = self.chained.subscribe();
        let reached = tokio::time::timeout(CHAIN_WAIT, chained.wait_for(|n| *n >= id)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClusterError::JetStream {
                what: "chaining an action",
                reason: format!("not in the action log after {CHAIN_WAIT:?}"),
            }),
        }
    }

    /// Puts a verified bundle into the evidence object store under its hash
    /// (once: a bundle already there is kept).
    pub async fn put_bundle(
        &self,
        path: &std::path::Path,
        sha256: &str,
    ) -> Result<(), ClusterError> {
        if self.evidence.info(sha256).await.is_ok() {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| js_error("reading a bundle")(&e))?;
        self.evidence
            .put(sha256, &mut file)
            .await
            .map(|_| ())
            .map_err(|e| js_error("storing a bundle in the object store")(&e))
    }

    /// Copies a bundle from the object store to `to` (a new file), checking
    /// it against its hash on the way; a copy that does not match is removed.
    pub async fn fetch_bundle(
        &self,
        sha256: &str,
        to: &std::path::Path,
    ) -> Result<(), ClusterError> {
        use sha2::Digest;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fetch = async {
            let mut object = self
                .evidence
                .get(sha256)
                .await
                .map_err(|e| format!("the object store has no copy: {e}"))?;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .await
                .map_err(|e| format!("{}: {e}", to.display()))?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = object
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading from the object store: {e}"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("{}: {e}", to.display()))?;
            }
            file.sync_all()
                .await
                .map_err(|e| format!("{}: {e}", to.display()))?;
            let got = bannin_proto::hex(hasher.finalize());
            if got != sha256 {
                return Err(format!(
                    "the object store's copy has SHA-256 {got}, the record says {sha256}"
                ));
            }
            Ok(())
        };
        let result = fetch.await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(to).await;
        }
        result.map_err(|reason| ClusterError::JetStream {
            what: "fetching a bundle",
            reason,
        })
    }

    /// Removes a disposed bundle from the object store.
    pub async fn delete_bundle(&self, sha256: &str) -> Result<(), ClusterError> {
        match self.evidence.delete(sha256).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(js_error("removing a bundle from the object store")(&e)),
        }
    }

    /// Records a verified bundle cluster-wide: the bundle into the object
    /// store, then the record through the log (every collector records it
    /// under the same id); answers with the record as recorded.
    pub async fn record_evidence(
        &self,
        record: EvidenceRecord,
        bundle: &std::path::Path,
    ) -> Result<EvidenceRecord, IngestError> {
        self.put_bundle(bundle, &record.sha256)
            .await
            .map_err(|e| IngestError::Cluster(e.to_string()))?;
        let dedup = format!(
            "e:{}:{}:{}",
            record.host_id, record.command_id, record.sha256
        );
        match self.submit(Op::Evidence { record }, Some(dedup)).await? {
            OpReply::Duplicate => Err(IngestError::Cluster(
                "this bundle was already recorded by another collector".into(),
            )),
            reply => reply.into_evidence(),
        }
    }

    /// Marks a piece of evidence disposed of on every collector (each removes
    /// its local copy) and removes the bundle from the object store.
    pub async fn dispose_evidence(&self, id: &str) -> Result<EvidenceRecord, IngestError> {
        let record = self
            .submit(Op::DisposeEvidence { id: id.to_owned() }, None)
            .await?
            .into_evidence()?;
        self.delete_bundle(&record.sha256)
            .await
            .map_err(|e| IngestError::Cluster(e.to_string()))?;
        Ok(record)
    }
}

/// Action log entries published per round.
const OUTBOX_ROUND: usize = 64;

/// Publishes the action log entries recorded on this collector to the cluster
/// log, oldest first; an entry leaves the outbox once JetStream holds it (a
/// crash in between publishes it again under the same message id, which
/// JetStream drops as a duplicate within its window). What is still in the
/// outbox at shutdown is published at the next start.
pub async fn run_action_outbox(
    cluster: Arc<Cluster>,
    store: Store,
    notify: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let stamp = store.counter(MEMBER_COUNTER).unwrap_or(0);
    loop {
        let waiting = store.outbox_actions(OUTBOX_ROUND).unwrap_or_else(|error| {
            tracing::error!(%error, "Cannot read the action outbox");
            Vec::new()
        });
        let mut stuck = false;
        for (id, action) in &waiting {
            let op = Op::Action {
                action: action.clone(),
                origin: cluster.config.name.clone(),
                outbox: *id,
            };
            let payload = match serde_json::to_vec(&op) {
                Ok(p) => bytes::Bytes::from(p),
                Err(error) => {
                    tracing::error!(%error, "Cannot encode an action; left in the outbox");
                    stuck = true;
                    break;
                }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("a:{}:{stamp}:{id}", cluster.config.name).as_str(),
            );
            // Named like every operation: its collector first (no waiter).
            headers.insert(
                OP_HEADER,
                format!("{}:action:{stamp}:{id}", cluster.config.name).as_str(),
            );
            let published = tokio::select! {
                () = shutdown.cancelled() => return,
                r = cluster.publish_op(headers, payload, PUBLISH_RETRY) => r,
            };
            match published {
                Ok(_) => {
                    if let Err(error) = store.remove_outbox_action(*id) {
                        tracing::error!(%error, "Cannot remove a published action from the outbox");
                    }
                }
                Err(reason) => {
                    tracing::warn!(%reason, "Action log entries not published yet; retrying");
                    stuck = true;
                    break;
                }
            }
        }
        if waiting.len() == OUTBOX_ROUND && !stuck {
            continue;
        }
        let wait = if stuck {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = notify.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
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

impl Cluster {
    /// Says that `host`'s stream closed here, unless another collector has
    /// taken it since (compare-and-set on the entry's revision).
    pub async fn clear_presence(&self, host: &str) -> Result<(), ClusterError> {
        let Some(entry) = self
            .hosts
            .entry(host)
            .await
            .map_err(|e| js_error("reading presence")(&e))?
        else {
            return Ok(());
        };
        let Ok(mut presence) = serde_json::from_slice::<Presence>(&entry.value) else {
            return Ok(());
        };
        if presence.collector != self.config.name {
            return Ok(());
        }
        presence.collector = String::new();
        let value = serde_json::to_vec(&presence).map_err(|e| js_error("encoding presence")(&e))?;
        // A newer revision means another collector wrote it: leave it.
        let _ = self.hosts.update(host, value.into(), entry.revision).await;
        Ok(())
    }
}

/// Keeps this collector's entry alive and mirrors every other collector's
/// hosts into `hosts`, until `shutdown`.
pub async fn run_membership(
    cluster: Arc<Cluster>,
    hosts: Arc<crate::hosts::HostRegistry>,
    store: Store,
    listen: String,
    shutdown: CancellationToken,
) {
    let beat = {
        let (cluster, hosts, shutdown) = (cluster.clone(), hosts.clone(), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(COLLECTOR_BEAT);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let applied = store.counter(APPLIED_COUNTER).unwrap_or(0);
                if let Err(error) = cluster
                    .beat(&listen, applied, hosts.connected_count())
                    .await
                {
                    tracing::warn!(%error, "Cannot renew this collector's entry");
                }
            }
        }
    };
    let watch = async move {
        loop {
            match cluster.watch_presence().await {
                Ok(mut changes) => {
                    while let Some(change) = tokio::select! {
                        () = shutdown.cancelled() => return,
                        c = changes.next() => c,
                    } {
                        let Ok(entry) = change else { break };
                        if entry.operation != kv::Operation::Put {
                            continue;
                        }
                        match serde_json::from_slice::<Presence>(&entry.value) {
                            Ok(presence) => {
                                hosts.remote(presence);
                            }
                            Err(error) => {
                                tracing::warn!(host.id = %entry.key, %error, "Unreadable presence entry; skipped")
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "Cannot watch the hosts' presence"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    };
    tokio::join!(beat, watch);
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

impl Cluster {
    /// The other live collector holding `host`'s stream, if one does.
    pub async fn holder(&self, host: &str) -> Option<String> {
        let value = self.hosts.get(host).await.ok()??;
        let presence: Presence = serde_json::from_slice(&value).ok()?;
        if presence.collector.is_empty() || presence.collector == self.config.name {
            return None;
        }
        // A dead collector's hosts are nobody's until they reconnect.
        self.collectors.get(&presence.collector).await.ok()??;
        Some(presence.collector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_batch_comes_back_whole_and_a_hostile_one_is_refused() {
        use prost::Message;
        let batch = v1::TelemetryBatch {
            sequence: 7,
            events: (0..50)
                .map(|i| v1::Event {
                    kind: "process.exec".into(),
                    attributes: [("exe".to_owned(), format!("/usr/bin/tool-{i}"))].into(),
                    ..Default::default()
                })
                .map(|e| e.encode_to_vec().into())
                .collect(),
        };
        let plain = batch.encode_to_vec();
        let packed = lz4_flex::compress_prepend_size(&plain);
        assert!(packed.len() < plain.len(), "repeated keys compress");
        let back = decompress_batch(&packed).expect("decompresses");
        assert_eq!(
            v1::TelemetryBatch::decode(back.as_slice()).ok(),
            Some(batch)
        );
        // A bomb — a valid payload that inflates past any batch's size — is
        // not inflated.
        let bomb = lz4_flex::compress_prepend_size(&vec![0u8; MAX_BATCH_BYTES + 1]);
        assert!(bomb.len() < 1 << 20);
        assert_eq!(decompress_batch(&bomb), None);
        let at_limit = lz4_flex::compress_prepend_size(&vec![0u8; 1 << 20]);
        assert_eq!(decompress_batch(&at_limit).map(|v| v.len()), Some(1 << 20));
        // Truncated or garbage payloads are refused, not panicked on.
        assert_eq!(decompress_batch(&packed[..packed.len() / 2]), None);
        assert_eq!(decompress_batch(&[1, 2]), None);
        assert_eq!(decompress_batch(&[16, 0, 0, 0, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn a_command_moves_forward_only_and_once_final_never_again() {
        use CommandState::{Delivered, Expired, Failed, Pending, Succeeded};
        assert!(command_moves(Pending, Delivered));
        assert!(command_moves(Pending, Expired));
        assert!(command_moves(Pending, Succeeded));
        assert!(command_moves(Delivered, Succeeded));
        assert!(command_moves(Delivered, Failed));
        // Delivered by two collectors during a failover: moved once.
        assert!(!command_moves(Delivered, Delivered));
        // Delivered by one while another expires it: the delivery stands.
        assert!(!command_moves(Delivered, Expired));
        // Answered through two collectors: the first answer stands.
        for last in [Succeeded, Failed, Expired] {
            for to in [Pending, Delivered, Succeeded, Failed, Expired] {
                assert!(!command_moves(last, to), "{last:?} → {to:?}");
            }
        }
        assert!(!command_moves(Pending, Pending));
    }

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
