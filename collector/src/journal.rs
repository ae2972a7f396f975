//! The one way to change a collector's state: an [`Op`] submitted to the
//! [`Journal`], applied by [`apply::begin`], answered with an [`OpReply`].
//!
//! A journal orders operations and applies them:
//!
//! - **local** (a standalone collector): each operation takes the next
//!   position of the store's own durable sequence and is applied at once,
//!   one at a time, in the order taken;
//! - **log** (cluster mode): the operation is published to the cluster log,
//!   and every collector's applier applies the log in order
//!   ([`crate::cluster::run_applier`]); the caller's answer is what its own
//!   collector's applying produced.
//!
//! Both call the same [`apply::begin`], so an operation changes the same
//! state the same way in both modes; handlers only submit and read the
//! answer. Besides operations, the journal is where the few things that
//! differ by where state lives are asked: who holds a host's stream, where
//! a verified bundle is kept, where an export sink's cursor is.

use std::sync::Arc;

use bannin_proto::identity::HostId;
use bannin_proto::v1;
use tokio::sync::Mutex;

pub use crate::op::apply::{self, SideEffects};
pub use crate::op::{Op, OpReply};

use crate::cluster::Cluster;
use crate::ingest::{Ingest, IngestError, Receipt};
use crate::model::EvidenceRecord;

pub use crate::cluster::{SINK_LEASE_RENEW, SinkLease};

/// The store counter holding a standalone collector's cursor of export sink
/// `name`.
pub fn sink_cursor_key(name: &str) -> String {
    format!("sink.{name}.cursor")
}

/// The counter of the local journal's last operation carried out.
const LOCAL_CARRIED_OUT: &str = "journal.carried_out";

/// Where this collector's changes are ordered and applied. Cheap to clone.
#[derive(Clone)]
pub struct Journal(Arc<Kind>);

#[expect(
    clippy::large_enum_variant,
    reason = "one per collector, behind an Arc"
)]
enum Kind {
    Local(Local),
    Log(Arc<Cluster>),
}

/// A standalone collector's journal.
struct Local {
    /// The writer's handle: batches are prepared and stored through it, and
    /// operations handed to its writer.
    ingest: Ingest,
    side: SideEffects,
    /// Operations are applied one at a time, in the order they took their
    /// positions.
    order: Mutex<()>,
}

impl Journal {
    /// A standalone collector's journal: batches and operations applied
    /// here through `ingest`'s writer, and `side`.
    pub fn local(ingest: Ingest, mut side: SideEffects) -> Self {
        side.carried_out = LOCAL_CARRIED_OUT;
        Self(Arc::new(Kind::Local(Local {
            ingest,
            side,
            order: Mutex::new(()),
        })))
    }

    /// Cluster mode: operations go through `cluster`'s log (applied by its
    /// applier, which the caller runs).
    pub fn log(cluster: Arc<Cluster>) -> Self {
        Self(Arc::new(Kind::Log(cluster)))
    }

    /// Applies `op` and answers with what applying it produced.
    pub async fn submit(&self, op: Op) -> Result<OpReply, IngestError> {
        self.submit_keyed(op, None).await
    }

    /// [`Journal::submit`] of an observation several collectors may make at
    /// once (a host gone silent, a command expired): named by `key`, it is
    /// applied once ([`OpReply::Duplicate`] for the others).
    pub async fn submit_once(&self, op: Op, key: String) -> Result<OpReply, IngestError> {
        self.submit_keyed(op, Some(key)).await
    }

    /// Raises a finding the collector observed itself (or an operator
    /// added); its id (0: suppressed).
    pub async fn raise(&self, finding: crate::model::NewFinding) -> Result<u64, IngestError> {
        self.submit(Op::raise(&finding)).await?.into_raise()
    }

    /// [`Journal::raise`] of an observation several collectors may make at
    /// once (a host gone silent), named by `key`.
    pub async fn raise_once(
        &self,
        finding: crate::model::NewFinding,
        key: String,
    ) -> Result<u64, IngestError> {
        self.submit_once(Op::raise(&finding), key)
            .await?
            .into_raise()
    }

    /// Moves a finding to another state; the finding as it now is.
    pub async fn set_state(
        &self,
        id: u64,
        state: crate::model::FindingState,
        operator: String,
        note: String,
    ) -> Result<crate::model::Finding, IngestError> {
        let op = Op::SetState {
            id,
            state,
            operator,
            note,
        };
        self.submit(op).await?.into_set_state()
    }

    async fn submit_keyed(&self, op: Op, key: Option<String>) -> Result<OpReply, IngestError> {
        match &*self.0 {
            Kind::Log(cluster) => cluster.submit(op, key).await,
            Kind::Local(local) => local.apply(op).await,
        }
    }

    /// This collector's name among others (`None`: it is alone).
    pub fn collector(&self) -> Option<&str> {
        match &*self.0 {
            Kind::Log(cluster) => Some(cluster.name()),
            Kind::Local(_) => None,
        }
    }

    /// The other collector holding `host`'s stream, if another does.
    pub async fn holder(&self, host: &str) -> Option<String> {
        match &*self.0 {
            Kind::Log(cluster) => cluster.holder(host).await,
            Kind::Local(_) => None,
        }
    }

    /// Where a command queued for `host` now goes, as the action log says
    /// after "queued as c12" (nothing to add when this collector is alone).
    pub async fn whereabouts(&self, host: &str, connected_here: bool) -> String {
        let Kind::Log(cluster) = &*self.0 else {
            return String::new();
        };
        match cluster.holder(host).await {
            Some(other) => format!(
                " in the cluster log; the host is connected to collector {other}, which delivers it"
            ),
            None if connected_here => " in the cluster log; the host is connected here".into(),
            None => " in the cluster log; the host is not connected to any collector: the one it connects to next delivers it".into(),
        }
    }

    /// Takes an agent's batch; [`Receipt::durable`] answers once it is
    /// durable: stored by the writer, which detects as it stores (local), or
    /// checked and held by the log's replicas (every collector detects as it
    /// applies it).
    pub async fn append_batch(
        &self,
        host: HostId,
        batch: v1::TelemetryBatch,
    ) -> Result<Receipt, IngestError> {
        match &*self.0 {
            Kind::Local(local) => local.ingest.submit_batch(host, batch).await,
            Kind::Log(cluster) => {
                Ingest::validate(&batch)?;
                let ack = cluster
                    .publish_batch(&host, &batch)
                    .await
                    .map_err(|e| IngestError::Journal(e.to_string()))?;
                Ok(Receipt::Stream(Box::new(ack), batch.sequence))
            }
        }
    }

    /// Records a verified bundle at `bundle` (in cluster mode, the bundle
    /// goes to the object store first, so every collector can read it).
    pub async fn record_evidence(
        &self,
        record: EvidenceRecord,
        bundle: &std::path::Path,
    ) -> Result<EvidenceRecord, IngestError> {
        match &*self.0 {
            Kind::Log(cluster) => cluster.record_evidence(record, bundle).await,
            Kind::Local(local) => local.apply(Op::Evidence { record }).await?.into_evidence(),
        }
    }

    /// Marks a piece of evidence disposed of and removes every copy of its
    /// bundle.
    pub async fn dispose_evidence(&self, id: &str) -> Result<EvidenceRecord, IngestError> {
        match &*self.0 {
            Kind::Log(cluster) => cluster.dispose_evidence(id).await,
            Kind::Local(local) => local
                .apply(Op::DisposeEvidence { id: id.to_owned() })
                .await?
                .into_evidence(),
        }
    }

    /// Copies a bundle another collector received to `to`, checked against
    /// its hash (`Ok(false)`: there is no other copy to fetch).
    pub async fn fetch_bundle(&self, sha256: &str, to: &std::path::Path) -> Result<bool, String> {
        match &*self.0 {
            Kind::Local(_) => Ok(false),
            Kind::Log(cluster) => cluster
                .fetch_bundle(sha256, to)
                .await
                .map(|()| true)
                .map_err(|e| e.to_string()),
        }
    }

    /// Waits until the action recorded under `id` is in this collector's
    /// chain (the local journal chains an action as it is recorded).
    pub async fn wait_chained(&self, id: u64) -> Result<(), String> {
        match &*self.0 {
            Kind::Local(_) => Ok(()),
            Kind::Log(cluster) => cluster.wait_chained(id).await.map_err(|e| e.to_string()),
        }
    }

    /// Says that this collector holds `host`'s stream (with its record as
    /// now, and when its session began), or (`None`) no longer does, for the other collectors (nothing
    /// to say when alone).
    pub async fn announce(&self, host: &str, record: Option<(crate::model::HostRecord, i64)>) {
        let Kind::Log(cluster) = &*self.0 else {
            return;
        };
        let result = match record {
            Some((record, session_started_unix_ms)) => {
                let presence = crate::cluster::Presence {
                    collector: cluster.name().to_owned(),
                    last_seen_unix_ms: record.last_seen_unix_ms,
                    record,
                    session_started_unix_ms,
                };
                cluster.put_presence(&presence).await
            }
            None => cluster.clear_presence(host).await,
        };
        if let Err(error) = result {
            tracing::warn!(host.id = %host, %error, "Presence not recorded");
        }
    }

    /// Whether this collector runs export sink `sink` now (renewing the lease
    /// `held`): always when alone; among several, one at a time.
    pub async fn lease_sink(&self, sink: &str, held: Option<u64>) -> Result<SinkLease, String> {
        match &*self.0 {
            Kind::Local(_) => Ok(SinkLease::Held(0)),
            Kind::Log(cluster) => cluster
                .lease_sink(sink, held)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Export sink `sink`'s cursor: the id of the last finding it delivered
    /// (0: none yet).
    pub async fn sink_cursor(&self, sink: &str) -> Result<u64, String> {
        match &*self.0 {
            Kind::Local(local) => local
                .side
                .store
                .counter(&sink_cursor_key(sink))
                .map_err(|e| e.to_string()),
            Kind::Log(cluster) => cluster.sink_cursor(sink).await.map_err(|e| e.to_string()),
        }
    }

    /// Moves export sink `sink`'s cursor to `cursor`.
    pub async fn set_sink_cursor(&self, sink: &str, cursor: u64) -> Result<(), String> {
        match &*self.0 {
            Kind::Local(local) => local
                .side
                .store
                .set_counter_now(&sink_cursor_key(sink), cursor)
                .map_err(|e| e.to_string()),
            Kind::Log(cluster) => cluster
                .set_sink_cursor(sink, cursor)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// The live collectors' names (`None`: this collector is alone).
    pub async fn live_collectors(&self) -> Result<Option<Vec<String>>, String> {
        match &*self.0 {
            Kind::Local(_) => Ok(None),
            Kind::Log(cluster) => cluster
                .collectors()
                .await
                .map(|entries| Some(entries.into_iter().map(|e| e.name).collect()))
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether this collector does the fleet-wide chores (expiring
    /// commands): always when alone; among several, the first live one by
    /// name.
    pub async fn leads(&self) -> Result<bool, String> {
        match &*self.0 {
            Kind::Local(_) => Ok(true),
            Kind::Log(cluster) => {
                let live = cluster.collectors().await.map_err(|e| e.to_string())?;
                Ok(live.iter().map(|e| e.name.as_str()).min() == Some(cluster.name()))
            }
        }
    }

    /// The cluster behind this journal, for what runs only in cluster mode
    /// (its applier, membership, `bannin cluster`).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &*self.0 {
            Kind::Log(cluster) => Some(cluster),
            Kind::Local(_) => None,
        }
    }
}

impl Local {
    async fn apply(&self, op: Op) -> Result<OpReply, IngestError> {
        let _order = self.order.lock().await;
        let store = self.side.store.clone();
        let seq = tokio::task::spawn_blocking(move || store.next_position())
            .await
            .map_err(|_| IngestError::Stopped)??;
        match apply::begin(op, seq, &self.side)
            .await
            .map_err(IngestError::Journal)?
        {
            apply::Begun::Done(reply) => Ok(reply),
            apply::Begun::Writer(request, pending) => {
                self.ingest
                    .writer()
                    .send(*request)
                    .await
                    .map_err(|_| IngestError::Stopped)?;
                pending.finish(&self.side).await
            }
        }
    }
}

/// A standalone collector's journal over a store, for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Journal, SideEffects};
    use crate::ingest::{Ingest, IngestConfig};
    use crate::store::Store;

    /// A local journal over `store` (bundles under `dir`), with the ingest
    /// whose writer it uses.
    pub(crate) fn local(store: &Store, dir: &std::path::Path) -> (Journal, Ingest) {
        let (ingest, _writer) = Ingest::start(
            store.clone(),
            IngestConfig::simple(60_000, crate::detect::Detector::default()),
        )
        .expect("ingest");
        let hosts = std::sync::Arc::new(
            crate::hosts::HostRegistry::load(store.clone(), 3, std::sync::Arc::default())
                .expect("hosts"),
        );
        let side = SideEffects {
            store: store.clone(),
            due: tokio::sync::mpsc::unbounded_channel().0,
            hunts_due: tokio::sync::mpsc::unbounded_channel().0,
            hosts,
            operator_changes: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
            evidence: std::sync::Arc::new(crate::evidence::Evidence::new(dir).expect("evidence")),
            carried_out: "",
        };
        (Journal::local(ingest.clone(), side), ingest)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Op, OpReply};
    use crate::ingest::IngestError;
    use crate::model::{
        Command, CommandBody, CommandState, FindingState, Isolate, Isolation, NewFinding, Severity,
    };
    use crate::store::Store;

    fn command(host: &str) -> Command {
        Command {
            id: 0,
            host_id: host.into(),
            body: CommandBody::Ping,
            operator: "alice".into(),
            reason: "why".into(),
            state: CommandState::Pending,
            created_unix_ms: 1,
            delivered_unix_ms: 0,
            finished_unix_ms: 0,
            expires_unix_ms: i64::MAX,
            result: String::new(),
        }
    }

    /// A standalone collector changes state only by submitting operations:
    /// each kind is applied (by the writer or outside it), answers what it
    /// did, refuses what the rules refuse, and leaves the store as a
    /// cluster collector applying the same operation would.
    #[tokio::test]
    async fn the_local_journal_applies_every_kind_of_operation_through_one_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let (journal, _ingest) = super::testing::local(&store, dir.path());

        // A finding raised and moved on; a move the rules refuse is refused.
        let id = journal
            .raise(NewFinding {
                host_id: bannin_proto::identity::HostId::new("web-01").expect("host"),
                kind: "host.silent".into(),
                severity: Severity::Medium,
                observed_unix_ms: 1,
                attributes: BTreeMap::new(),
                summary: "quiet".into(),
            })
            .await
            .expect("raised");
        assert!(id > 0);
        let moved = journal
            .set_state(
                id,
                FindingState::Acknowledged,
                "alice".into(),
                "on it".into(),
            )
            .await
            .expect("moved");
        assert_eq!(moved.state, FindingState::Acknowledged);
        assert!(matches!(
            journal
                .set_state(id, FindingState::New, "alice".into(), String::new())
                .await,
            Err(IngestError::BadTransition { .. })
        ));

        // A command takes its journal position as its id; updates move it
        // forward only.
        let first = journal
            .submit(Op::IssueCommand {
                command: command("web-01"),
            })
            .await
            .and_then(OpReply::into_raise)
            .expect("issued");
        let second = journal
            .submit(Op::IssueCommand {
                command: command("web-01"),
            })
            .await
            .and_then(OpReply::into_raise)
            .expect("issued");
        assert!(second > first && first > 0, "{first} then {second}");
        assert_eq!(
            store.command(first).expect("read").expect("stored").id,
            first
        );
        let deliver = || Op::UpdateCommand {
            id: first,
            state: CommandState::Delivered,
            at_unix_ms: 5,
            result: String::new(),
        };
        let moved = |reply: Result<OpReply, IngestError>| reply.and_then(OpReply::into_raise);
        assert_eq!(
            moved(journal.submit(deliver()).await).expect("delivered"),
            1
        );
        assert_eq!(moved(journal.submit(deliver()).await).expect("again"), 0);
        let stored = store.command(first).expect("read").expect("stored");
        assert_eq!(
            (stored.state, stored.delivered_unix_ms),
            (CommandState::Delivered, 5)
        );

        // A token's uses are taken one by one; past the last, the refusal
        // is named as the enrollment endpoint words it.
        let (token, _secret) = crate::enroll::new_token(
            "alice",
            1,
            std::time::Duration::from_secs(60),
            BTreeMap::new(),
            String::new(),
        );
        let token_id = token.id.clone();
        moved(journal.submit(Op::PutToken { record: token }).await).expect("made");
        let use_it = |host: &str| Op::UseToken {
            id: token_id.clone(),
            host: host.into(),
            at_unix_ms: bannin_proto::now_unix_ms(),
        };
        moved(journal.submit(use_it("a")).await).expect("first use");
        match moved(journal.submit(use_it("b")).await) {
            Err(IngestError::Journal(why)) => assert_eq!(why, "used_up"),
            other => panic!("a second use of a one-use token: {other:?}"),
        }
        assert_eq!(store.token(&token_id).expect("read").expect("kept").used, 1);

        // The desired isolation state has one writer: the journal.
        let isolation = Isolation {
            isolated: true,
            isolate: Isolate {
                allow: vec!["192.0.2.7".into()],
                confirm_local: false,
            },
            confirmed: false,
        };
        moved(
            journal
                .submit(Op::Isolation {
                    host_id: "web-01".into(),
                    isolation: isolation.clone(),
                })
                .await,
        )
        .expect("isolated");
        assert_eq!(store.isolation("web-01").expect("read"), Some(isolation));
    }
}
