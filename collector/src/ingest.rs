//! The single writer: every change to findings, events and sequences goes
//! through one thread that group-commits.
//!
//! Link sessions and the operator API submit [`WriteRequest`]s. The writer takes
//! the first waiting request, then every request that queued up while it was
//! busy, applies them all as one atomic [`WriteSet`], makes the store durable once
//! (flush plus fdatasync), and only then answers each request. One fsync covers
//! the whole group, so throughput does not hang on one fsync per batch.
//!
//! Invariant: a batch is acknowledged only after its events, the findings derived
//! from it and its host's high-water sequence are durable together. A batch whose
//! sequence is at or below the high water was already stored: it is dropped and
//! acknowledged again, which makes at-least-once delivery exactly-once in effect.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use bannin_proto::identity::HostId;
use bannin_proto::{now_unix_ms, v1};
use tokio::sync::{mpsc, oneshot, watch};

use crate::correlate::{CorrelationConfig, Correlator, CorrelatorStats, FleetView, Observation};
use crate::detect::{Detector, FoldIndex, fingerprint, fingerprint_parts};
use crate::model::{Event, Finding, FindingState, NewFinding, StateChange};
use crate::rules::{SuppressRule, hits_counter, last_hit_counter};
use crate::sigma::{SigmaEvent, SigmaSet};
use crate::store::{Store, StoreError, WriteSet, encode_event_chunks};

/// Most requests folded into one group commit.
const MAX_GROUP: usize = 4096;
/// The last position of the journal applied (durable with the group commit
/// that applied it; the key's name is kept from older stores).
pub const APPLIED_COUNTER: &str = "cluster.applied";
/// The journal position of the last action chained.
const ACTIONS_CHAINED: &str = "cluster.actions_chained";
/// Capacity of the fold index.
const FOLD_CAPACITY: usize = 100_000;

/// Why a write was not done.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed; nothing of the group was acknowledged.
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    /// An event of a batch is not a valid encoded Event.
    #[error("event {index} of the batch is malformed: {reason}")]
    Malformed {
        /// Its index in the batch.
        index: usize,
        /// What the decoder said.
        reason: String,
    },
    /// The group commit holding this write failed; nothing of it was acknowledged.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The writer has stopped (shutdown).
    #[error("collector is shutting down")]
    Stopped,
    /// The journal did not take or apply the write (cluster mode: JetStream
    /// unreachable, no quorum, or not applied in time; a refusal when
    /// applied); nothing was acknowledged.
    #[error("{0}")]
    Journal(String),
    /// Cluster mode: a log message arrived out of its stream order (after a
    /// failed commit); the applier starts again from the durable position.
    #[error("log message out of order; re-reading the stream")]
    OutOfOrder,
    /// No finding has that id.
    #[error("no finding {0}")]
    NoSuchFinding(u64),
    /// No evidence has that id.
    #[error("no evidence {0}")]
    NoSuchEvidence(String),
    /// The state change is not allowed.
    #[error("finding {id} cannot move from {from:?} to {to:?}")]
    BadTransition {
        /// Finding id.
        id: u64,
        /// Current state.
        from: FindingState,
        /// Requested state.
        to: FindingState,
    },
}

/// One request to the writer.
pub enum WriteRequest {
    /// Store a telemetry batch of a host; answers with the host's high water.
    Batch {
        /// Host, from its certificate.
        host: HostId,
        /// The batch, encoded and with its finding candidates.
        batch: PreparedBatch,
        /// Answer.
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    /// Raise a finding the collector itself observed (e.g. `host.silent`).
    Raise {
        /// The finding.
        finding: NewFinding,
        /// Answer with its id.
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    /// Apply a newly loaded set of Sigma rules from the next batch on (the
    /// correlation state carries over for rules that stay).
    Sigma {
        /// The set.
        set: Arc<SigmaSet>,
        /// Answered once the writer applies it.
        reply: oneshot::Sender<()>,
    },
    /// Move a finding to another state.
    SetState {
        /// Finding id.
        id: u64,
        /// New state.
        state: FindingState,
        /// Operator making the change.
        operator: String,
        /// Note.
        note: String,
        /// Answer with the updated finding.
        reply: oneshot::Sender<Result<Finding, IngestError>>,
    },
    /// Cluster mode: `request` is the message at stream sequence `seq` of the
    /// cluster log, applied as of the time JetStream stored it (`at`, Unix ms)
    /// so every collector computes the same result. Applied only if `prev` is
    /// the last sequence applied (the applier's chain), so nothing is applied
    /// twice or out of order; the sequence is stored in the same commit.
    Applied {
        /// Stream sequence of this message.
        seq: u64,
        /// Stream sequence of the message the applier sent before it (the
        /// durable position when it (re)started).
        prev: u64,
        /// When JetStream stored the message (Unix ms).
        at: i64,
        /// What the message asks (`None`: a message no collector can read,
        /// applied as nothing so the chain of positions holds).
        request: Option<Box<WriteRequest>>,
        /// State the applier computed from the log up to this message (a
        /// named meta value: the operations already applied), committed
        /// with the position so both restart alike after a crash.
        state: Option<(&'static str, Vec<u8>)>,
    },
    /// Append an action to the action log's chain, in the journal's order.
    ChainAction {
        /// Its stream sequence: an action already chained at or past it (a
        /// re-read after a failed commit) is not chained twice.
        seq: u64,
        /// The action.
        action: crate::model::Action,
        /// Answered with its position in the chain once durable.
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    /// Cluster mode: record a piece of evidence whose bundle is in the
    /// cluster's object store (always inside [`WriteRequest::Applied`]); the
    /// same record (same command and hash) is recorded once.
    Evidence {
        /// The record, without its id.
        record: crate::model::EvidenceRecord,
        /// Answered with the record and its id once durable.
        reply: oneshot::Sender<Result<crate::model::EvidenceRecord, IngestError>>,
    },
    /// Set a host's desired isolation state.
    PutIsolation {
        /// The host.
        host_id: String,
        /// The state.
        isolation: crate::model::Isolation,
        /// Answered (0) once durable.
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    /// Store hosts' answers to hunts, each host's first answer only, with a
    /// `hunt.match` finding for every host with hits; answered with how many
    /// were stored.
    HuntAnswers {
        /// The answers.
        answers: Vec<crate::model::HuntAnswer>,
        /// Answer.
        reply: oneshot::Sender<Result<u64, IngestError>>,
    },
    /// Mark a piece of evidence disposed of.
    DisposeEvidence {
        /// Its id (`e3`).
        id: String,
        /// Answered with the record once durable.
        reply: oneshot::Sender<Result<crate::model::EvidenceRecord, IngestError>>,
    },
    /// Apply the event retention bound.
    Prune {
        /// Events received before this are removed.
        cutoff_unix_ms: i64,
        /// Most bytes of events to keep.
        max_bytes: u64,
    },
}

/// A batch made ready for the writer by the session that received it: its
/// events encoded as store records and its finding candidates detected, so the
/// single writer thread does nothing but dedup, fold and insert.
pub struct PreparedBatch {
    /// The agent's sequence number.
    pub sequence: u64,
    /// Store records of its events.
    pub records: Vec<Vec<u8>>,
    /// Finding candidates, in event order.
    pub findings: Vec<NewFinding>,
    /// Telemetry the correlation rules read: (kind, observed, attributes).
    pub telemetry: Vec<(String, i64, std::collections::BTreeMap<String, String>)>,
    /// Sigma detections that feed correlation rules, with their events.
    pub sigma_feed: Vec<(SigmaEvent<'static>, Vec<rsigma_eval::EvaluationResult>)>,
    /// When it was received (its events' records carry the same time).
    pub received_unix_ms: i64,
    /// The search index's filter of each of its records (empty: the index is off).
    pub index: Vec<crate::store::search::BatchIndex>,
}

/// What `bannin rules` shows of the rules at work.
#[derive(Debug, Clone, Default)]
pub struct RuleStats {
    /// Suppression rule → (hits, last hit Unix ms), durable across restarts.
    pub suppressed: std::collections::BTreeMap<String, (u64, i64)>,
    /// The correlator's counters (since the collector started).
    pub correlation: CorrelatorStats,
    /// Sigma rule key → (matches, last match Unix ms), durable across restarts.
    pub sigma: std::collections::BTreeMap<String, (u64, i64)>,
}

/// The durable counter of a Sigma rule's matches.
fn sigma_hits_counter(key: &str) -> String {
    format!("sigma.{key}.hits")
}

/// The durable counter of a Sigma rule's last match (Unix ms).
fn sigma_last_counter(key: &str) -> String {
    format!("sigma.{key}.last")
}

/// The finding of a batch whose Sigma budget ran out before its last event.
fn sigma_skipped(
    host: &HostId,
    skipped: u64,
    limits: &crate::sigma::EvalLimits,
    now: i64,
) -> NewFinding {
    let budget_ms = limits.batch_budget.as_millis();
    NewFinding {
        host_id: host.clone(),
        kind: "sigma.skipped".into(),
        severity: crate::model::Severity::Medium,
        observed_unix_ms: now,
        // The count stays out of the attributes, so that repeats fold into one.
        attributes: std::collections::BTreeMap::from([(
            "budget_ms".to_owned(),
            budget_ms.to_string(),
        )]),
        summary: format!(
            "{skipped} events from {host} were stored but not checked by the Sigma rules: their batch spent its {budget_ms} ms evaluation budget (see `bannin rules` for slow rules)"
        ),
    }
}

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    detector: Arc<Detector>,
    tx: mpsc::Sender<WriteRequest>,
    high_water: Arc<Mutex<HashMap<String, u64>>>,
    latest_finding: watch::Receiver<u64>,
    stats: Arc<Mutex<RuleStats>>,
    sigma: Arc<RwLock<Arc<SigmaSet>>>,
    /// Whether prepared batches carry their search index terms.
    index: bool,
}

/// A batch handed over for storage; [`Receipt::durable`] waits until it is
/// (stored by the writer, or in cluster mode acknowledged by JetStream).
pub enum Receipt {
    /// Single collector: the writer answers once the group is durable.
    Local(oneshot::Receiver<Result<u64, IngestError>>),
    /// Cluster mode: JetStream answers once the configured replicas hold it.
    /// (Boxed: a session queues receipts in a channel whose slots are
    /// allocated 32 at a time, for every agent, busy or idle.)
    Stream(Box<async_nats::jetstream::context::PublishAckFuture>, u64),
}

impl Receipt {
    /// The acknowledged sequence, once durable.
    pub async fn durable(self) -> Result<u64, IngestError> {
        match self {
            Self::Local(rx) => rx.await.map_err(|_| IngestError::Stopped)?,
            Self::Stream(ack, sequence) => {
                (*ack).await.map_err(|e| {
                    IngestError::Journal(format!("JetStream did not acknowledge: {e}"))
                })?;
                Ok(sequence)
            }
        }
    }
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Identical findings of a host within this window fold into one.
    pub fold_window_ms: i64,
    /// Detection settings.
    pub detector: Detector,
    /// Suppression rules.
    pub suppress: Vec<SuppressRule>,
    /// Cross-host correlation.
    pub correlation: CorrelationConfig,
    /// The fleet's addresses, kept by the host registry.
    pub fleet: Arc<FleetView>,
    /// Sigma rules in force at start.
    pub sigma: Arc<SigmaSet>,
    /// Whether events are indexed for `bannin search` (`[events] index`).
    pub index: bool,
}

impl IngestConfig {
    /// Defaults around `detector`, for tests and tools.
    pub fn simple(fold_window_ms: i64, detector: Detector) -> Self {
        Self {
            fold_window_ms,
            detector,
            suppress: Vec::new(),
            correlation: CorrelationConfig::default(),
            fleet: Arc::new(FleetView::default()),
            sigma: Arc::new(SigmaSet::default()),
            index: true,
        }
    }
}

impl Ingest {
    /// Starts the writer thread on `store`. The thread ends, after a final
    /// durable commit, once every [`Ingest`] handle is dropped.
    pub fn start(
        store: Store,
        config: IngestConfig,
    ) -> Result<(Self, thread::JoinHandle<()>), StoreError> {
        let high_water: HashMap<String, u64> = store.high_waters()?.into_iter().collect();
        let high_water = Arc::new(Mutex::new(high_water));
        let last_id = store.last_finding_id()?;
        let (latest_tx, latest_rx) = watch::channel(last_id);
        let (tx, rx) = mpsc::channel(8192);
        let detector = Arc::new(config.detector.clone());
        let stats = Arc::new(Mutex::new(RuleStats::default()));
        let sigma = Arc::new(RwLock::new(config.sigma.clone()));
        let index = config.index;
        let mut writer = Writer::new(store, config, high_water.clone(), latest_tx, stats.clone())?;
        let handle = thread::Builder::new()
            .name("bannin-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io {
                path: "writer thread".into(),
                source,
            })?;
        Ok((
            Self {
                detector,
                tx,
                high_water,
                latest_finding: latest_rx,
                stats,
                sigma,
                index,
            },
            handle,
        ))
    }

    /// The writer's queue, for the journal.
    pub(crate) fn writer(&self) -> mpsc::Sender<WriteRequest> {
        self.tx.clone()
    }

    /// Highest durably stored sequence of a host.
    pub fn high_water(&self, host: &HostId) -> u64 {
        bannin_proto::lock(&self.high_water)
            .get(host.as_str())
            .copied()
            .unwrap_or(0)
    }

    /// Suppression hits and correlation counters, as of the last commit.
    pub fn rule_stats(&self) -> RuleStats {
        bannin_proto::lock(&self.stats).clone()
    }

    /// The Sigma rules in force.
    pub fn sigma(&self) -> Arc<SigmaSet> {
        self.sigma
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a newly loaded set of Sigma rules in force: the writer first (its
    /// correlation state carries over), then the sessions' matching.
    pub async fn reload_sigma(&self, set: SigmaSet) -> Result<(), IngestError> {
        let set = Arc::new(set);
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteRequest::Sigma {
                set: set.clone(),
                reply,
            })
            .await
            .map_err(|_| IngestError::Stopped)?;
        rx.await.map_err(|_| IngestError::Stopped)?;
        *self
            .sigma
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        Ok(())
    }

    /// Watches the id of the newest finding.
    pub fn latest_finding(&self) -> watch::Receiver<u64> {
        self.latest_finding.clone()
    }

    /// Checks a received batch, detects its finding candidates and cuts it into
    /// store records. Events are stored as received: only their [`v1::EventHeader`]
    /// is decoded, indicators and correlation telemetry in full, and events a
    /// Sigma log source covers are read in place ([`SigmaEvent::from_wire`]).
    pub fn prepare(
        &self,
        host: &HostId,
        batch: v1::TelemetryBatch,
    ) -> Result<PreparedBatch, IngestError> {
        self.prepare_at(host, batch, now_unix_ms())
    }

    /// [`Ingest::prepare`] as of `now` (cluster mode: when JetStream stored it).
    pub fn prepare_at(
        &self,
        host: &HostId,
        batch: v1::TelemetryBatch,
        now: i64,
    ) -> Result<PreparedBatch, IngestError> {
        use prost::Message;
        let sigma = self.sigma();
        let mut findings = Vec::new();
        let mut telemetry = Vec::new();
        let mut sigma_feed = Vec::new();
        let mut budget = crate::sigma::Budget::new(sigma.limits.batch_budget);
        // Each event's observed time and terms, for the index's filters.
        let mut search: Vec<(i64, Vec<crate::store::search::Term>)> = Vec::new();
        for (index, raw) in batch.events.iter().enumerate() {
            let header =
                v1::EventHeader::decode(raw.clone()).map_err(|e| IngestError::Malformed {
                    index,
                    reason: e.to_string(),
                })?;
            let for_sigma = !sigma.is_empty()
                && crate::sigma::fields::EVENT_KINDS.contains(&header.kind.as_str());
            let for_correlation = crate::correlate::TELEMETRY_KINDS.contains(&header.kind.as_str());
            if for_sigma {
                // Read in place: nothing is decoded or copied but the
                // attributes a rule reads (and what a match keeps).
                let scanned = SigmaEvent::from_wire(host.as_str(), raw).map_err(|e| {
                    IngestError::Malformed {
                        index,
                        reason: e.to_string(),
                    }
                })?;
                if let Some((e, summary)) = scanned {
                    let matched = sigma.evaluate_within(&e, summary, &mut budget);
                    findings.extend(matched.findings);
                    if !matched.feed.is_empty() {
                        sigma_feed.push((e.into_owned(), matched.feed));
                    }
                }
            }
            if !(header.indicator || for_correlation || self.index) {
                continue;
            }
            // With the search index on, every event is decoded (once).
            let event = v1::Event::decode(raw.clone()).map_err(|e| IngestError::Malformed {
                index,
                reason: e.to_string(),
            })?;
            if self.index {
                search.push((event.observed_unix_ms, crate::store::search::terms(&event)));
            }
            if header.indicator {
                if let Some(f) = self.detector.detect(host, &Event::from_wire(event, now)) {
                    findings.push(f);
                }
            } else if for_correlation {
                telemetry.push((event.kind, event.observed_unix_ms, event.attributes));
            }
        }
        if budget.skipped > 0 {
            findings.push(sigma_skipped(host, budget.skipped, &sigma.limits, now));
        }
        let chunks = encode_event_chunks(now, &batch.events);
        // One filter per record, of the events it holds.
        let index = if self.index {
            chunks
                .iter()
                .map(|(_, range)| {
                    let mut index = crate::store::search::BatchIndex::default();
                    for (observed, terms) in search.get(range.clone()).unwrap_or_default() {
                        index.add_terms(*observed, terms);
                    }
                    index
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(PreparedBatch {
            sequence: batch.sequence,
            records: chunks.into_iter().map(|(r, _)| r).collect(),
            findings,
            telemetry,
            sigma_feed,
            received_unix_ms: now,
            index,
        })
    }

    /// Checks what [`Ingest::prepare`] checks, decoding as much and no more,
    /// without detecting anything (cluster mode: the front end refuses a
    /// malformed batch before it reaches the log; every collector prepares
    /// it when applying). Events of Sigma's kinds are scanned whatever rules
    /// are loaded, so a batch accepted here is accepted by every collector.
    pub fn validate(batch: &v1::TelemetryBatch) -> Result<(), IngestError> {
        use prost::Message;
        for (index, raw) in batch.events.iter().enumerate() {
            let malformed = |reason: String| IngestError::Malformed { index, reason };
            let header =
                v1::EventHeader::decode(raw.clone()).map_err(|e| malformed(e.to_string()))?;
            if crate::sigma::fields::EVENT_KINDS.contains(&header.kind.as_str()) {
                SigmaEvent::from_wire("validate", raw).map_err(|e| malformed(e.to_string()))?;
            }
            if header.indicator || crate::correlate::TELEMETRY_KINDS.contains(&header.kind.as_str())
            {
                v1::Event::decode(raw.clone()).map_err(|e| malformed(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Submits a batch; [`Receipt::durable`] answers once it is durable.
    pub async fn submit_batch(
        &self,
        host: HostId,
        batch: v1::TelemetryBatch,
    ) -> Result<Receipt, IngestError> {
        // Detection is CPU work (Sigma rules above all): on a blocking thread,
        // so a slow batch holds neither the runtime's workers (operator calls)
        // nor other hosts' batches, each of which gets a thread of its own.
        let ingest = self.clone();
        let for_prepare = host.clone();
        let batch = tokio::task::spawn_blocking(move || ingest.prepare(&for_prepare, batch))
            .await
            .map_err(|_| IngestError::Stopped)??;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(WriteRequest::Batch { host, batch, reply })
            .await
            .map_err(|_| IngestError::Stopped)?;
        Ok(Receipt::Local(rx))
    }

    /// Asks the writer to apply the retention bound.
    pub async fn prune(&self, cutoff_unix_ms: i64, max_bytes: u64) {
        let _ = self
            .tx
            .send(WriteRequest::Prune {
                cutoff_unix_ms,
                max_bytes,
            })
            .await;
    }
}

/// Answers to send once the group is durable.
enum Pending {
    Batch(oneshot::Sender<Result<u64, IngestError>>, u64),
    Raise(oneshot::Sender<Result<u64, IngestError>>, u64),
    SetState(oneshot::Sender<Result<Finding, IngestError>>, Finding),
    Evidence(
        oneshot::Sender<Result<crate::model::EvidenceRecord, IngestError>>,
        crate::model::EvidenceRecord,
    ),
}

struct Writer {
    store: Store,
    config: IngestConfig,
    /// Durable high water per host, shared with sessions (for Welcome).
    durable_high_water: Arc<Mutex<HashMap<String, u64>>>,
    /// High water including the group in progress.
    high_water: HashMap<String, u64>,
    next_finding_id: u64,
    folds: FoldIndex,
    /// Findings changed in the group in progress, by id (folded counts, state changes).
    dirty: HashMap<u64, Finding>,
    event_bytes: u64,
    latest: watch::Sender<u64>,
    correlator: Correlator,
    /// Suppression hits (durable), and the rules hit in the group in progress.
    suppressed: std::collections::BTreeMap<String, (u64, i64)>,
    suppressed_dirty: std::collections::BTreeSet<String>,
    stats: Arc<Mutex<RuleStats>>,
    /// The Sigma rules in force, their fleet-wide correlation state, and their
    /// match counters (durable) with the rules matched in the group in progress.
    sigma: Arc<SigmaSet>,
    sigma_engine: Option<rsigma_eval::CorrelationEngine>,
    sigma_hits: std::collections::BTreeMap<String, (u64, i64)>,
    sigma_dirty: std::collections::BTreeSet<String>,
    /// Cluster mode: the last log sequence applied (durable with the group
    /// that applied it), and whether the group in progress moved it.
    applied: u64,
    applied_dirty: bool,
    /// The applier's state as of `applied`, to commit with it.
    applier_state: BTreeMap<&'static str, Vec<u8>>,
}

impl Writer {
    fn new(
        store: Store,
        config: IngestConfig,
        durable_high_water: Arc<Mutex<HashMap<String, u64>>>,
        latest: watch::Sender<u64>,
        stats: Arc<Mutex<RuleStats>>,
    ) -> Result<Self, StoreError> {
        let high_water = bannin_proto::lock(&durable_high_water).clone();
        let suppressed = Self::load_suppressed(&store, &config.suppress)?;
        let sigma = config.sigma.clone();
        let sigma_hits = Self::load_sigma_hits(&store, &sigma)?;
        let mut writer = Self {
            sigma_engine: sigma.correlation_engine(),
            sigma,
            sigma_hits,
            sigma_dirty: std::collections::BTreeSet::new(),
            correlator: Correlator::new(config.correlation.clone(), config.fleet.clone()),
            suppressed,
            suppressed_dirty: std::collections::BTreeSet::new(),
            stats,
            next_finding_id: store.last_finding_id()? + 1,
            applied: store.counter(APPLIED_COUNTER)?,
            applied_dirty: false,
            applier_state: BTreeMap::new(),
            event_bytes: store.counter("event_bytes")?,
            folds: FoldIndex::new(config.fold_window_ms, FOLD_CAPACITY),
            store,
            config,
            durable_high_water,
            high_water,
            dirty: HashMap::new(),
            latest,
        };
        writer.rebuild_folds()?;
        writer.publish_stats();
        Ok(writer)
    }

    fn load_suppressed(
        store: &Store,
        rules: &[SuppressRule],
    ) -> Result<std::collections::BTreeMap<String, (u64, i64)>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for rule in rules {
            let hits = store.counter(&hits_counter(&rule.name))?;
            let last = store.counter(&last_hit_counter(&rule.name))?;
            out.insert(rule.name.clone(), (hits, i64::try_from(last).unwrap_or(0)));
        }
        Ok(out)
    }

    fn load_sigma_hits(
        store: &Store,
        set: &SigmaSet,
    ) -> Result<std::collections::BTreeMap<String, (u64, i64)>, StoreError> {
        let mut out = std::collections::BTreeMap::new();
        for rule in &set.rules {
            let hits = store.counter(&sigma_hits_counter(&rule.key))?;
            let last = store.counter(&sigma_last_counter(&rule.key))?;
            out.insert(rule.key.clone(), (hits, i64::try_from(last).unwrap_or(0)));
        }
        Ok(out)
    }

    fn publish_stats(&self) {
        let mut stats = bannin_proto::lock(&self.stats);
        stats.suppressed = self.suppressed.clone();
        stats.correlation = self.correlator.stats();
        if stats.sigma.len() != self.sigma_hits.len() || !self.sigma_dirty.is_empty() {
            stats.sigma = self.sigma_hits.clone();
        }
    }

    /// Counts a Sigma finding against its rule.
    fn count_sigma(&mut self, finding: &NewFinding, now: i64) {
        if let Some(key) = finding.attributes.get("sigma.id")
            && let Some(entry) = self.sigma_hits.get_mut(key)
        {
            entry.0 += 1;
            entry.1 = now;
            self.sigma_dirty.insert(key.clone());
        }
    }

    /// Puts a new rule set in force, carrying the correlation state over.
    fn apply_sigma(&mut self, set: Arc<SigmaSet>) {
        let mut engine = set.correlation_engine();
        if let (Some(old), Some(new)) = (&self.sigma_engine, &mut engine)
            && !new.import_state(old.export_state())
        {
            tracing::warn!("Sigma correlation state could not carry over the reload");
        }
        let mut hits = match Self::load_sigma_hits(&self.store, &set) {
            Ok(h) => h,
            Err(error) => {
                tracing::error!(%error, "Cannot read the Sigma match counters");
                std::collections::BTreeMap::new()
            }
        };
        for (key, entry) in &mut hits {
            if let Some(current) = self.sigma_hits.get(key) {
                *entry = *current;
            }
        }
        self.sigma_hits = hits;
        self.sigma_dirty.retain(|k| set.rule(k).is_some());
        self.sigma_engine = engine;
        self.sigma = set;
        tracing::info!(
            rules = self.sigma.rules.len(),
            refused = self.sigma.refused.len(),
            "Sigma rules in force"
        );
    }

    /// The first suppression rule that matches `finding`, counted; `None` if
    /// the finding is to be queued.
    fn suppressed_by(
        &mut self,
        finding: &NewFinding,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        if self.config.suppress.is_empty() {
            return Ok(None);
        }
        let labels = if self.config.suppress.iter().any(SuppressRule::needs_labels) {
            self.store
                .host_labels(finding.host_id.as_str())?
                .effective()
        } else {
            std::collections::BTreeMap::new()
        };
        let Some(rule) = self
            .config
            .suppress
            .iter()
            .find(|r| r.matches(finding, &labels, now))
        else {
            return Ok(None);
        };
        let name = rule.name.clone();
        let entry = self.suppressed.entry(name.clone()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = now;
        self.suppressed_dirty.insert(name.clone());
        tracing::debug!(rule = %name, host.id = %finding.host_id, finding.kind = %finding.kind, "Finding suppressed");
        Ok(Some(name))
    }

    /// Queues a finding candidate: suppressed (counted), folded, or new — and a
    /// new one is shown to the correlator, whose findings are queued too.
    fn admit(&mut self, finding: NewFinding, now: i64) -> Result<Option<u64>, StoreError> {
        if self.suppressed_by(&finding, now)?.is_some() {
            return Ok(None);
        }
        let (id, new) = self.stage_finding(finding, now)?;
        if new {
            let correlated = match self.dirty.get(&id) {
                Some(f) => self.correlator.observe(
                    &Observation::Finding {
                        id,
                        host: &f.host_id,
                        kind: &f.kind,
                        at: f.observed_unix_ms,
                        attributes: &f.attributes,
                    },
                    now,
                ),
                None => Vec::new(),
            };
            for c in correlated {
                self.stage_correlated(c, now)?;
            }
        }
        Ok(Some(id))
    }

    /// Queues what the correlator raised (suppressible like any finding).
    fn stage_correlated(&mut self, finding: NewFinding, now: i64) -> Result<(), StoreError> {
        if self.suppressed_by(&finding, now)?.is_none() {
            tracing::warn!(finding.kind = %finding.kind, host.id = %finding.host_id, summary = %finding.summary, "Correlated finding");
            self.stage_finding(finding, now)?;
        }
        Ok(())
    }

    /// Refills the fold index from findings still inside the window, so folding
    /// survives a restart.
    fn rebuild_folds(&mut self) -> Result<(), StoreError> {
        let horizon = now_unix_ms() - self.config.fold_window_ms;
        let recent = self
            .store
            .findings_newest_first(|f| f.last_observed_unix_ms >= horizon)?;
        for f in recent.into_iter().rev() {
            let fp = fingerprint_parts(&f.host_id, &f.kind, &f.attributes);
            self.folds.record(fp, f.id, f.last_observed_unix_ms);
        }
        Ok(())
    }

    fn run(&mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        if let Err(error) = self.store.make_durable() {
            tracing::error!(%error, "Final flush failed");
        }
        tracing::debug!("Writer stopped");
    }

    fn commit_group(&mut self, group: &mut Vec<WriteRequest>) {
        let mut set = WriteSet::default();
        let mut pending = Vec::with_capacity(group.len());
        let mut failed: Option<StoreError> = None;
        let now = now_unix_ms();
        for request in group.drain(..) {
            if failed.is_some() {
                reply_error(request, || IngestError::Stopped);
                continue;
            }
            match self.stage(request, &mut set, now, &mut pending) {
                Ok(()) => {}
                Err(error) => failed = Some(error),
            }
        }
        for finding in self.dirty.values() {
            if let Err(error) = set.put_finding(finding) {
                failed.get_or_insert(error);
            }
        }
        self.dirty.clear();
        for key in &self.sigma_dirty {
            if let Some((hits, last)) = self.sigma_hits.get(key) {
                set.set_counter(&sigma_hits_counter(key), *hits);
                set.set_counter(&sigma_last_counter(key), u64::try_from(*last).unwrap_or(0));
            }
        }
        for name in std::mem::take(&mut self.suppressed_dirty) {
            if let Some((hits, last)) = self.suppressed.get(&name) {
                set.set_counter(&hits_counter(&name), *hits);
                set.set_counter(&last_hit_counter(&name), u64::try_from(*last).unwrap_or(0));
            }
        }
        set.set_counter("event_bytes", self.event_bytes);
        if std::mem::take(&mut self.applied_dirty) {
            set.set_counter(APPLIED_COUNTER, self.applied);
        }
        for (name, value) in std::mem::take(&mut self.applier_state) {
            set.set_meta_bytes(name, &value);
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self
                .store
                .apply(set)
                .and_then(|()| self.store.make_durable()),
        };
        match result {
            Ok(()) => {
                *bannin_proto::lock(&self.durable_high_water) = self.high_water.clone();
                self.latest.send_replace(self.next_finding_id - 1);
                self.publish_stats();
                self.sigma_dirty.clear();
                for p in pending {
                    match p {
                        Pending::Batch(tx, hw) | Pending::Raise(tx, hw) => {
                            let _ = tx.send(Ok(hw));
                        }
                        Pending::SetState(tx, f) => {
                            let _ = tx.send(Ok(f));
                        }
                        Pending::Evidence(tx, r) => {
                            let _ = tx.send(Ok(r));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "Group commit failed; nothing of it is acknowledged");
                for p in pending {
                    let message = error.to_string();
                    match p {
                        Pending::Batch(tx, _) | Pending::Raise(tx, _) => {
                            let _ = tx.send(Err(IngestError::CommitFailed(message)));
                        }
                        Pending::SetState(tx, _) => {
                            let _ = tx.send(Err(IngestError::CommitFailed(message)));
                        }
                        Pending::Evidence(tx, _) => {
                            let _ = tx.send(Err(IngestError::CommitFailed(message)));
                        }
                    }
                }
                self.reload();
            }
        }
    }

    /// After a failed commit, forget everything staged and start again from the store.
    fn reload(&mut self) {
        let hw = bannin_proto::lock(&self.durable_high_water).clone();
        self.high_water = hw;
        match (
            self.store.last_finding_id(),
            self.store.counter("event_bytes"),
        ) {
            (Ok(id), Ok(bytes)) => {
                self.next_finding_id = id + 1;
                self.event_bytes = bytes;
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "Cannot re-read the store after a failed commit")
            }
        }
        match self.store.counter(APPLIED_COUNTER) {
            Ok(applied) => self.applied = applied,
            Err(error) => tracing::error!(%error, "Cannot re-read the applied log position"),
        }
        self.applied_dirty = false;
        self.applier_state.clear();
        self.folds = FoldIndex::new(self.config.fold_window_ms, FOLD_CAPACITY);
        if let Err(error) = self.rebuild_folds() {
            tracing::error!(%error, "Cannot rebuild the fold index");
        }
        // What the failed group showed the correlator is gone with it; the
        // agents send those batches again.
        self.correlator =
            Correlator::new(self.config.correlation.clone(), self.config.fleet.clone());
        match Self::load_suppressed(&self.store, &self.config.suppress) {
            Ok(s) => self.suppressed = s,
            Err(error) => tracing::error!(%error, "Cannot re-read the suppression counters"),
        }
        self.suppressed_dirty.clear();
        match Self::load_sigma_hits(&self.store, &self.sigma) {
            Ok(h) => self.sigma_hits = h,
            Err(error) => tracing::error!(%error, "Cannot re-read the Sigma match counters"),
        }
        self.sigma_dirty.clear();
        self.sigma_engine = self.sigma.correlation_engine();
    }

    fn stage(
        &mut self,
        request: WriteRequest,
        set: &mut WriteSet,
        now: i64,
        pending: &mut Vec<Pending>,
    ) -> Result<(), StoreError> {
        match request {
            WriteRequest::Batch { host, batch, reply } => {
                let hw = self.high_water.get(host.as_str()).copied().unwrap_or(0);
                if batch.sequence <= hw {
                    tracing::debug!(host.id = %host, sequence = batch.sequence, high_water = hw, "Duplicate batch dropped");
                    pending.push(Pending::Batch(reply, hw));
                    return Ok(());
                }
                for finding in batch.findings {
                    if finding.kind == "sigma.match" {
                        self.count_sigma(&finding, now);
                    }
                    self.admit(finding, now)?;
                }
                for (event, feed) in batch.sigma_feed {
                    let Some(engine) = self.sigma_engine.as_mut() else {
                        break;
                    };
                    for f in self.sigma.correlate(engine, &event, feed) {
                        self.count_sigma(&f, now);
                        self.stage_correlated(f, now)?;
                    }
                }
                for (kind, at, attributes) in &batch.telemetry {
                    let correlated = self.correlator.observe(
                        &Observation::Telemetry {
                            host: host.as_str(),
                            kind,
                            at: *at,
                            attributes,
                        },
                        now,
                    );
                    for c in correlated {
                        self.stage_correlated(c, now)?;
                    }
                }
                self.event_bytes +=
                    set.add_event_records(host.as_str(), batch.sequence, batch.records);
                if !batch.index.is_empty() {
                    set.add_index(
                        host.as_str(),
                        batch.sequence,
                        batch.received_unix_ms,
                        &batch.index,
                    );
                }
                set.set_high_water(host.as_str(), batch.sequence);
                self.high_water
                    .insert(host.as_str().to_owned(), batch.sequence);
                pending.push(Pending::Batch(reply, batch.sequence));
            }
            WriteRequest::Applied {
                seq,
                prev,
                at,
                request,
                state,
            } => {
                if prev != self.applied {
                    tracing::debug!(
                        log.seq = seq,
                        log.prev = prev,
                        applied = self.applied,
                        "Log message not next in order; dropped"
                    );
                    if let Some(request) = request {
                        reply_error(*request, || IngestError::OutOfOrder);
                    }
                    return Ok(());
                }
                self.applied = seq;
                self.applied_dirty = true;
                if let Some((name, value)) = state {
                    self.applier_state.insert(name, value);
                }
                if let Some(request) = request {
                    return self.stage(*request, set, at, pending);
                }
            }
            WriteRequest::Sigma { set, reply } => {
                self.apply_sigma(set);
                let _ = reply.send(());
            }
            WriteRequest::ChainAction { seq, action, reply } => {
                let position = if self.store.counter(ACTIONS_CHAINED)? < seq {
                    let position = self.store.chain_action(&action)?;
                    self.store.set_counter_now(ACTIONS_CHAINED, seq)?;
                    position
                } else {
                    0
                };
                pending.push(Pending::Raise(reply, position));
            }
            WriteRequest::PutIsolation {
                host_id,
                isolation,
                reply,
            } => {
                self.store.put_isolation(&host_id, &isolation)?;
                pending.push(Pending::Raise(reply, 0));
            }
            WriteRequest::Evidence { record, reply } => {
                let known = self.store.evidence_list()?.into_iter().find(|e| {
                    e.command_id == record.command_id
                        && e.host_id == record.host_id
                        && e.sha256 == record.sha256
                });
                let record = match known {
                    Some(r) => r,
                    None => self.store.add_evidence(record)?,
                };
                pending.push(Pending::Evidence(reply, record));
            }
            WriteRequest::DisposeEvidence { id, reply } => match self.store.evidence(&id)? {
                Some(mut record) => {
                    record.disposed = true;
                    self.store.put_evidence(&record)?;
                    pending.push(Pending::Evidence(reply, record));
                }
                None => {
                    let _ = reply.send(Err(IngestError::NoSuchEvidence(id)));
                }
            },
            WriteRequest::HuntAnswers { answers, reply } => {
                let mut stored = 0;
                for answer in answers {
                    let Some(hunt) = self.store.hunt(answer.hunt_id)? else {
                        continue;
                    };
                    if !self.store.put_hunt_answer(&answer)? {
                        continue;
                    }
                    stored += 1;
                    if answer.total > 0
                        && let Ok(host_id) = HostId::new(answer.host_id.clone())
                    {
                        self.admit(hunt.match_finding(&answer, host_id), now)?;
                    }
                }
                pending.push(Pending::Raise(reply, stored));
            }
            WriteRequest::Raise { finding, reply } => {
                // A suppressed finding answers 0: counted, not queued.
                let id = self.admit(finding, now)?.unwrap_or(0);
                pending.push(Pending::Raise(reply, id));
            }
            WriteRequest::SetState {
                id,
                state,
                operator,
                note,
                reply,
            } => {
                let current = match self.dirty.get(&id).cloned() {
                    Some(f) => Some(f),
                    None => self.store.finding(id)?,
                };
                let Some(mut finding) = current else {
                    let _ = reply.send(Err(IngestError::NoSuchFinding(id)));
                    return Ok(());
                };
                if !finding.state.can_move_to(state) {
                    let _ = reply.send(Err(IngestError::BadTransition {
                        id,
                        from: finding.state,
                        to: state,
                    }));
                    return Ok(());
                }
                finding.state = state;
                finding.history.push(StateChange {
                    state,
                    operator,
                    at_unix_ms: now,
                    note,
                });
                self.dirty.insert(id, finding.clone());
                pending.push(Pending::SetState(reply, finding));
            }
            WriteRequest::Prune {
                cutoff_unix_ms,
                max_bytes,
            } => {
                let hosts: Vec<String> = self.high_water.keys().cloned().collect();
                let excess = self.event_bytes.saturating_sub(max_bytes);
                let (removed, freed) = self.store.prune_events(&hosts, cutoff_unix_ms, excess)?;
                let unindexed = self.store.prune_index(cutoff_unix_ms)?;
                if unindexed > 0 {
                    tracing::info!(
                        entries.removed = unindexed,
                        "Search index retention applied"
                    );
                }
                self.event_bytes = self.event_bytes.saturating_sub(freed);
                self.folds.prune(now);
                if removed > 0 {
                    tracing::info!(
                        events.removed = removed,
                        bytes.freed = freed,
                        "Event retention applied"
                    );
                }
            }
        }
        Ok(())
    }

    /// Folds into a recent identical finding or stages a new one; returns its
    /// id and whether it is new.
    fn stage_finding(&mut self, mut new: NewFinding, now: i64) -> Result<(u64, bool), StoreError> {
        // Every finding says why (and the ATT&CK technique, where one applies).
        crate::detect::explain(&mut new);
        let fp = fingerprint(&new);
        if let Some(id) = self.folds.lookup(fp, new.observed_unix_ms) {
            let existing = match self.dirty.get(&id).cloned() {
                Some(f) => Some(f),
                None => self.store.finding(id)?,
            };
            if let Some(mut f) = existing {
                f.count += 1;
                f.last_observed_unix_ms = f.last_observed_unix_ms.max(new.observed_unix_ms);
                self.folds.record(fp, id, new.observed_unix_ms);
                self.dirty.insert(id, f);
                return Ok((id, false));
            }
        }
        let id = self.next_finding_id;
        self.next_finding_id += 1;
        if self.folds.len() >= FOLD_CAPACITY {
            self.folds.prune(now);
        }
        self.folds.record(fp, id, new.observed_unix_ms);
        tracing::info!(finding.id = id, host.id = %new.host_id, finding.kind = %new.kind, severity = ?new.severity, "Finding");
        self.dirty.insert(
            id,
            Finding {
                id,
                host_id: new.host_id.to_string(),
                kind: new.kind,
                severity: new.severity,
                state: FindingState::New,
                observed_unix_ms: new.observed_unix_ms,
                received_unix_ms: now,
                last_observed_unix_ms: new.observed_unix_ms,
                count: 1,
                attributes: new.attributes,
                summary: new.summary,
                history: Vec::new(),
            },
        );
        Ok((id, true))
    }
}

fn reply_error(request: WriteRequest, error: impl Fn() -> IngestError) {
    match request {
        WriteRequest::Batch { reply, .. } | WriteRequest::Raise { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        WriteRequest::SetState { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        WriteRequest::Sigma { reply, .. } => {
            let _ = reply.send(());
        }
        WriteRequest::Applied { request, .. } => {
            if let Some(request) = request {
                reply_error(*request, error);
            }
        }
        WriteRequest::ChainAction { reply, .. }
        | WriteRequest::PutIsolation { reply, .. }
        | WriteRequest::HuntAnswers { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        WriteRequest::Evidence { reply, .. } | WriteRequest::DisposeEvidence { reply, .. } => {
            let _ = reply.send(Err(error()));
        }
        WriteRequest::Prune { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::store::EventQuery;

    fn wire_event(kind: &str, indicator: bool, attr: &str) -> v1::Event {
        v1::Event {
            kind: kind.into(),
            severity: v1::Severity::Medium as i32,
            observed_unix_ms: now_unix_ms(),
            attributes: [("path".to_owned(), attr.to_owned())].into(),
            summary: format!("{kind} {attr}"),
            indicator,
        }
    }

    fn start(dir: &std::path::Path) -> (Ingest, thread::JoinHandle<()>, Store) {
        let store = Store::open(dir).expect("store");
        let (ingest, writer) = Ingest::start(
            store.clone(),
            IngestConfig::simple(60_000, Detector::default()),
        )
        .expect("ingest");
        (ingest, writer, store)
    }

    /// `alice` moves finding `id` to `state`, as the journal hands it to the
    /// writer.
    async fn set_state(
        ingest: &Ingest,
        id: u64,
        state: FindingState,
        note: &str,
    ) -> Result<Finding, IngestError> {
        let (reply, rx) = oneshot::channel();
        ingest
            .writer()
            .send(WriteRequest::SetState {
                id,
                state,
                operator: "alice".into(),
                note: note.into(),
                reply,
            })
            .await
            .expect("writer");
        rx.await.expect("answer")
    }

    async fn submit(ingest: &Ingest, host: &HostId, sequence: u64, events: Vec<v1::Event>) -> u64 {
        ingest
            .submit_batch(
                host.clone(),
                v1::TelemetryBatch::from_events(sequence, &events),
            )
            .await
            .expect("submit")
            .durable()
            .await
            .expect("stored")
    }

    #[tokio::test]
    async fn duplicate_batches_are_dropped_and_acknowledged_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ingest, writer, store) = start(dir.path());
        let host = HostId::new("h1").expect("host");
        assert_eq!(
            submit(&ingest, &host, 1, vec![wire_event("x", false, "a")]).await,
            1
        );
        assert_eq!(
            submit(&ingest, &host, 2, vec![wire_event("x", false, "b")]).await,
            2
        );
        // A replay of 1 after 2 was stored: acknowledged with the high water, not stored.
        assert_eq!(
            submit(&ingest, &host, 1, vec![wire_event("x", false, "c")]).await,
            2
        );
        let (events, _) = store
            .events(
                "h1",
                &EventQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .expect("events");
        let paths: Vec<&str> = events
            .iter()
            .map(|(_, e)| e.attributes["path"].as_str())
            .collect();
        assert_eq!(paths, ["a", "b"]);
        assert_eq!(ingest.high_water(&host), 2);
        drop(ingest);
        writer.join().expect("writer");
    }

    #[tokio::test]
    async fn identical_findings_fold_and_state_changes_follow_the_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ingest, writer, store) = start(dir.path());
        let host = HostId::new("h1").expect("host");
        submit(
            &ingest,
            &host,
            1,
            vec![wire_event("file.odd_name", true, "/tmp/ x"); 3],
        )
        .await;
        submit(
            &ingest,
            &host,
            2,
            vec![wire_event("file.odd_name", true, "/tmp/ y")],
        )
        .await;
        let findings = store.findings_after(0, 10).expect("findings");
        assert_eq!(findings.len(), 2, "{findings:?}");
        // Newest first, bounded on both sides (the console pages backwards).
        let ids = |v: Vec<crate::model::Finding>| v.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.findings_before(0, 0, 10).expect("newest")),
            [2, 1]
        );
        assert_eq!(ids(store.findings_before(0, 0, 1).expect("newest")), [2]);
        assert_eq!(ids(store.findings_before(0, 2, 10).expect("before 2")), [1]);
        assert_eq!(ids(store.findings_before(1, 0, 10).expect("after 1")), [2]);
        assert!(store.findings_before(1, 2, 10).expect("empty").is_empty());
        assert!(
            store
                .findings_before(5, 1, 10)
                .expect("inverted")
                .is_empty()
        );
        assert_eq!(findings[0].count, 3);
        assert_eq!(findings[0].severity, Severity::Medium);
        assert_eq!(findings[1].count, 1);

        let f = set_state(&ingest, 1, FindingState::Acknowledged, "on it")
            .await
            .expect("ack");
        assert_eq!(f.history.len(), 1);
        assert!(matches!(
            set_state(&ingest, 1, FindingState::New, "").await,
            Err(IngestError::BadTransition { .. })
        ));
        assert!(matches!(
            set_state(&ingest, 99, FindingState::Resolved, "").await,
            Err(IngestError::NoSuchFinding(99))
        ));
        let stored = store.finding(1).expect("read").expect("present");
        assert_eq!(stored.state, FindingState::Acknowledged);
        assert_eq!(stored.history[0].operator, "alice");
        drop(ingest);
        writer.join().expect("writer");
    }

    #[tokio::test]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = HostId::new("h1").expect("host");
        {
            let (ingest, writer, _) = start(dir.path());
            submit(
                &ingest,
                &host,
                7,
                vec![wire_event("file.odd_name", true, "/tmp/ x")],
            )
            .await;
            drop(ingest);
            writer.join().expect("writer");
        }
        let (ingest, writer, store) = start(dir.path());
        assert_eq!(ingest.high_water(&host), 7);
        // Folding survives the restart too.
        submit(
            &ingest,
            &host,
            8,
            vec![wire_event("file.odd_name", true, "/tmp/ x")],
        )
        .await;
        let findings = store.findings_after(0, 10).expect("findings");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].count, 2);
        drop(ingest);
        writer.join().expect("writer");
    }

    #[tokio::test]
    async fn retention_removes_old_batches_then_the_oldest_by_bytes_round_robin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ingest, writer, store) = start(dir.path());
        let a = HostId::new("a").expect("host");
        let b = HostId::new("b").expect("host");
        for seq in 1..=10 {
            submit(
                &ingest,
                &a,
                seq,
                vec![wire_event("x", false, &"p".repeat(500))],
            )
            .await;
            submit(
                &ingest,
                &b,
                seq,
                vec![wire_event("x", false, &"p".repeat(500))],
            )
            .await;
        }
        let count = |host: &str| {
            store
                .events(
                    host,
                    &EventQuery {
                        limit: 1000,
                        ..Default::default()
                    },
                )
                .expect("events")
                .0
        };
        // Nothing is old enough; a byte budget of about half removes the oldest of both hosts.
        let total = store.counter("event_bytes").expect("counter");
        ingest.prune(0, total / 2).await;
        // A round trip through the writer orders us after the prune.
        submit(&ingest, &a, 11, vec![]).await;
        let (left_a, left_b) = (count("a"), count("b"));
        assert!(
            left_a.len() < 10 && left_b.len() < 10,
            "{} {}",
            left_a.len(),
            left_b.len()
        );
        assert!(
            left_a.len().abs_diff(left_b.len()) <= 1,
            "round robin keeps hosts even"
        );
        assert_eq!(
            left_a.last().map(|(s, _)| *s),
            Some(10),
            "the newest survive"
        );
        // Everything received before now + 1 s is old.
        ingest.prune(now_unix_ms() + 1000, u64::MAX).await;
        submit(&ingest, &a, 12, vec![]).await;
        assert!(count("a").is_empty() && count("b").is_empty());
        drop(ingest);
        writer.join().expect("writer");
    }
}
