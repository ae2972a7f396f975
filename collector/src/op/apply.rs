//! Applying one [`Op`]: the same code whether the local journal or the
//! cluster log's applier hands it over, so both modes change state alike.
//!
//! An operation is either carried out here, on the blocking pool (operators,
//! tokens, incidents, labels, commands, revocations: durable before the
//! journal's position moves past it, and idempotent, so re-applying after a
//! crash changes nothing), or handed to the single writer (findings, their
//! states, the action log's chain, evidence, isolation), whose group commit
//! makes it durable.

use std::sync::Arc;

use bannin_proto::identity::HostId;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Op, OpReply};
use crate::ingest::{IngestError, WriteRequest};
use crate::model::{CommandState, EvidenceRecord, Finding, NewFinding};
use crate::store::Store;

/// What applying changes outside the writer, and where it says so.
#[derive(Clone)]
pub struct SideEffects {
    /// This collector's store.
    pub store: Store,
    /// Hosts with a command newly queued: delivered by this collector if it
    /// holds their stream.
    pub due: mpsc::UnboundedSender<String>,
    /// Hunts newly started or stopped: this collector tells the hosts it
    /// holds.
    pub hunts_due: mpsc::UnboundedSender<u64>,
    /// Its host registry (revocations, silence).
    pub hosts: Arc<crate::hosts::HostRegistry>,
    /// Bumped when operators change (live operator streams re-check).
    pub operator_changes: Arc<watch::Sender<u64>>,
    /// Bundles on disk (a disposal removes this collector's copy).
    pub evidence: Arc<crate::evidence::Evidence>,
    /// The counter holding the position of the last operation carried out
    /// here (one per journal, so positions of two journals never mix).
    pub carried_out: &'static str,
}

/// Where an operation stands once [`begin`] has taken it.
pub enum Begun {
    /// Carried out: its answer.
    Done(OpReply),
    /// To be stored by the writer: send the request, then
    /// [`Pending::finish`].
    Writer(Box<WriteRequest>, Pending),
}

/// The writer's answer to an operation handed to it.
pub enum Pending {
    /// A raise, an isolation state or an action chained (its position).
    Raise(oneshot::Receiver<Result<u64, IngestError>>),
    /// A state change.
    SetState(oneshot::Receiver<Result<Finding, IngestError>>),
    /// An evidence record, or its disposal (`true`).
    Evidence(bool, oneshot::Receiver<Result<EvidenceRecord, IngestError>>),
}

impl Pending {
    /// The operation's answer once the writer has stored it; `Err` when the
    /// writer stopped. A disposal removes this collector's copy of the bundle.
    pub async fn finish(self, side: &SideEffects) -> Result<OpReply, IngestError> {
        let stopped = |_| IngestError::Stopped;
        match self {
            Self::Raise(rx) => Ok(OpReply::Raise(rx.await.map_err(stopped)?)),
            Self::SetState(rx) => Ok(OpReply::SetState(rx.await.map_err(stopped)?)),
            Self::Evidence(disposal, rx) => {
                let result = rx.await.map_err(stopped)?;
                if disposal && let Ok(record) = &result {
                    let (evidence, record) = (side.evidence.clone(), record.clone());
                    let removed =
                        tokio::task::spawn_blocking(move || evidence.dispose(&record)).await;
                    if let Ok(Err(error)) = removed
                        && error.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::error!(%error, "Cannot remove a disposed bundle's local copy");
                    }
                }
                Ok(OpReply::Evidence(result))
            }
        }
    }
}

/// Takes `op`, the journal's entry at position `seq`: carries it out, or
/// hands it to the writer. `Err`: it could not be carried out (the store
/// failed); the journal applies it again from its durable position.
pub async fn begin(op: Op, seq: u64, side: &SideEffects) -> Result<Begun, String> {
    match op {
        Op::Operator { record } => put_operator(record, side).await.map(done),
        Op::RevokeHost { revoked, keys } => revoke_host(revoked, keys, side).await.map(done),
        Op::OpenIncident { incident } => open_incident(incident, seq, side).await.map(done),
        Op::UpdateIncident {
            id,
            update,
            operator,
            at_unix_ms,
        } => update_incident(id, update, operator, at_unix_ms, seq, side)
            .await
            .map(done),
        Op::PutToken { record } => put_token(record, side).await.map(done),
        Op::UseToken {
            id,
            host,
            at_unix_ms,
        } => use_token(id, host, at_unix_ms, seq, side).await.map(done),
        Op::RevokeToken { id } => revoke_token(id, side).await.map(done),
        Op::IssueCommand { command } => issue_command(command, seq, side).await.map(done),
        Op::UpdateCommand {
            id,
            state,
            at_unix_ms,
            result,
        } => update_command(id, state, at_unix_ms, result, side)
            .await
            .map(done),
        Op::LabelHost {
            host_id,
            set,
            remove,
        } => label_host(host_id, set, remove, side).await.map(done),
        Op::StartHunt { hunt } => start_hunt(hunt, seq, side).await.map(done),
        Op::StopHunt {
            id,
            operator,
            at_unix_ms,
        } => stop_hunt(id, operator, at_unix_ms, side).await.map(done),
        writer_op => Ok(to_writer(writer_op, seq, side)),
    }
}

/// An operation carried out: its answer.
fn done(reply: Result<u64, IngestError>) -> Begun {
    Begun::Done(OpReply::Raise(reply))
}

/// An operation the writer stores: its request and what to wait for.
fn to_writer(op: Op, seq: u64, side: &SideEffects) -> Begun {
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
                tracing::error!(journal.seq = seq, "Raise for an invalid host id; skipped");
                return done(Err(IngestError::Journal(
                    "a raise for an invalid host id".into(),
                )));
            };
            if kind == "host.silent" {
                side.hosts.mark_silent(host_id.as_str());
            }
            let (reply, rx) = oneshot::channel();
            let finding = NewFinding {
                host_id,
                kind,
                severity,
                observed_unix_ms,
                attributes,
                summary,
            };
            writer(WriteRequest::Raise { finding, reply }, Pending::Raise(rx))
        }
        Op::Action { action, .. } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::ChainAction { seq, action, reply },
                Pending::Raise(rx),
            )
        }
        Op::Isolation { host_id, isolation } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::PutIsolation {
                    host_id,
                    isolation,
                    reply,
                },
                Pending::Raise(rx),
            )
        }
        Op::Evidence { record } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::Evidence { record, reply },
                Pending::Evidence(false, rx),
            )
        }
        Op::DisposeEvidence { id } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::DisposeEvidence { id, reply },
                Pending::Evidence(true, rx),
            )
        }
        Op::HuntAnswers { answers } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::HuntAnswers { answers, reply },
                Pending::Raise(rx),
            )
        }
        Op::SetState {
            id,
            state,
            operator,
            note,
        } => {
            let (reply, rx) = oneshot::channel();
            writer(
                WriteRequest::SetState {
                    id,
                    state,
                    operator,
                    note,
                    reply,
                },
                Pending::SetState(rx),
            )
        }
        carried_out => done(Err(IngestError::Journal(format!(
            "not an operation for the writer: {carried_out:?}"
        )))),
    }
}

/// An operator added, re-roled or disabled (live operator streams re-check).
async fn put_operator(
    record: crate::model::OperatorRecord,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
    let name = record.name.clone();
    blocking("applying an operator change", move || {
        store.put_operator(&record)?;
        store.make_durable()
    })
    .await?;
    side.operator_changes.send_modify(|n| *n += 1);
    tracing::info!(operator = %name, "Operator change applied");
    Ok(Ok(0))
}

/// A host revoked: its keys refused, the sessions this collector holds cut; answers how many.
async fn revoke_host(
    revoked: crate::model::RevokedHost,
    keys: Vec<String>,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let hosts = side.hosts.clone();
    let host = revoked.host_id.clone();
    let (cut, _) = blocking("applying a revocation", move || {
        hosts.revoke(revoked, &keys)
    })
    .await?;
    tracing::warn!(host.id = %host, sessions_cut = cut, "Host revoked");
    Ok(Ok(u64::try_from(cut).unwrap_or(0)))
}

/// An incident opened under the next incident id (the same on every collector).
async fn open_incident(
    mut incident: crate::incidents::Incident,
    seq: u64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let (title, by, at) = (
        incident.title.clone(),
        incident.opened_by.clone(),
        incident.opened_unix_ms,
    );
    let id = once(
        "opening an incident",
        seq,
        side,
        // Carried out already: the same incident, not a second one.
        move |store| {
            let same = store
                .incidents()?
                .into_iter()
                .rev()
                .find(|i| i.title == title && i.opened_by == by && i.opened_unix_ms == at);
            Ok(same.map_or(0, |i| i.id))
        },
        move |store| {
            incident.id = store.next_incident_id()?;
            store.put_incident(&incident)?;
            Ok(incident.id)
        },
    )
    .await?;
    Ok(Ok(id))
}

/// An incident changed, refused as a standalone collector would refuse it.
async fn update_incident(
    id: u64,
    update: crate::incidents::Update,
    operator: String,
    at_unix_ms: i64,
    seq: u64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let outcome = once(
        "updating an incident",
        seq,
        side,
        move |_| Ok(Ok(id)),
        move |store| {
            let Some(mut incident) = store.incident(id)? else {
                return Ok(Err(format!("no incident {id}")));
            };
            // Refused here as it would be on a standalone collector (the
            // caller checked it first; a concurrent change may have
            // closed it since).
            Ok(
                match crate::incidents::apply(&mut incident, update, &operator, at_unix_ms) {
                    Ok(_) => {
                        store.put_incident(&incident)?;
                        Ok(id)
                    }
                    Err(e) => Err(e.to_string()),
                },
            )
        },
    )
    .await?;
    Ok(outcome.map_err(IngestError::Journal))
}

/// An enrollment token stored under its own id.
async fn put_token(
    record: crate::model::TokenRecord,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
    blocking("storing a token", move || {
        store.insert_token(&record)?;
        store.make_durable()
    })
    .await?;
    Ok(Ok(0))
}

/// One use of a token taken, in journal order (a token's last use is taken once).
async fn use_token(
    id: String,
    host: String,
    at_unix_ms: i64,
    seq: u64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let outcome = once(
        "using a token",
        seq,
        side,
        |_| Ok(Ok(0)),
        move |store| {
            if store.token(&id)?.is_none() {
                return Ok(Err(format!("no token {id}")));
            }
            Ok(match store.use_token(&id, &host, at_unix_ms)? {
                Ok(_) => Ok(0),
                Err(why) => Err(why.to_owned()),
            })
        },
    )
    .await?;
    Ok(outcome.map_err(IngestError::Journal))
}

/// A token revoked.
async fn revoke_token(id: String, side: &SideEffects) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
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
    Ok(Ok(0))
}

/// A command queued under its journal position as its id; its host is due a delivery.
async fn issue_command(
    mut command: crate::model::Command,
    seq: u64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
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
    Ok(Ok(seq))
}

/// A command moved on, forward only; answers 1 when it moved.
async fn update_command(
    id: u64,
    state: CommandState,
    at_unix_ms: i64,
    result: String,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
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
    Ok(Ok(moved))
}

/// A hunt stored under its journal position as its id; this collector's
/// hosts are due it.
async fn start_hunt(
    mut hunt: crate::model::Hunt,
    seq: u64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
    blocking("starting a hunt", move || {
        // Its id is its log position, as a command's.
        hunt.id = seq;
        if store.hunt(seq)?.is_none() {
            store.put_hunt(&hunt)?;
            store.make_durable()?;
        }
        Ok(())
    })
    .await?;
    let _ = side.hunts_due.send(seq);
    Ok(Ok(seq))
}

/// A hunt stopped (once: a second stop changes nothing); answers 1 when it
/// stopped now.
async fn stop_hunt(
    id: u64,
    operator: String,
    at_unix_ms: i64,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
    let stopped = blocking("stopping a hunt", move || {
        let Some(mut hunt) = store.hunt(id)? else {
            return Ok(0);
        };
        if hunt.stopped_unix_ms != 0 {
            return Ok(0);
        }
        hunt.stopped_unix_ms = at_unix_ms.max(1);
        hunt.stopped_by = operator;
        store.put_hunt(&hunt)?;
        store.make_durable()?;
        Ok(1)
    })
    .await?;
    let _ = side.hunts_due.send(id);
    Ok(Ok(stopped))
}

/// Operator-set labels of a host changed (the change, not the whole set).
async fn label_host(
    host_id: String,
    set: std::collections::BTreeMap<String, String>,
    remove: Vec<String>,
    side: &SideEffects,
) -> Result<Result<u64, IngestError>, String> {
    let store = side.store.clone();
    let host = host_id.clone();
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
    // A running hunt may select it now.
    let _ = side.due.send(host);
    Ok(Ok(0))
}

fn writer(request: WriteRequest, pending: Pending) -> Begun {
    Begun::Writer(Box::new(request), pending)
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

/// Carries out an operation that must happen once per journal position
/// (it takes an id or a token's use): `work` when the journal's position of
/// the last one carried out is before `seq`, stored durably with that
/// position; `again` (answering as the first time did) when it is not — a
/// re-read after a failed commit.
async fn once<T: Send + 'static>(
    what: &str,
    seq: u64,
    side: &SideEffects,
    again: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    work: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, String> {
    let (store, carried) = (side.store.clone(), side.carried_out);
    blocking(what, move || {
        if store.counter(carried)? >= seq {
            return again(&store);
        }
        let done = work(&store)?;
        store.set_counter_now(carried, seq)?;
        store.make_durable()?;
        Ok(done)
    })
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A re-read of the journal (after a failed commit) applies an
    /// id-taking operation again at the same position: it answers as the
    /// first time did and changes nothing.
    #[tokio::test]
    async fn an_operation_read_again_at_its_position_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let side = SideEffects {
            store: store.clone(),
            due: mpsc::unbounded_channel().0,
            hunts_due: mpsc::unbounded_channel().0,
            hosts: Arc::new(
                crate::hosts::HostRegistry::load(store.clone(), 3, Arc::default()).expect("hosts"),
            ),
            operator_changes: Arc::new(watch::channel(0).0),
            evidence: Arc::new(crate::evidence::Evidence::new(dir.path()).expect("evidence")),
            carried_out: "test.carried_out",
        };
        let open = || Op::OpenIncident {
            incident: crate::incidents::Incident {
                id: 0,
                title: "web-01 beacon".into(),
                severity: "high".parse().expect("severity"),
                status: "open".parse().expect("status"),
                commander: "alice".into(),
                findings: Vec::new(),
                notes: Vec::new(),
                opened_unix_ms: 7,
                opened_by: "alice".into(),
                closed_unix_ms: 0,
            },
        };
        let answer = |begun: Result<Begun, String>| match begun.expect("applied") {
            Begun::Done(reply) => reply.into_raise().expect("answer"),
            Begun::Writer(..) => panic!("carried out, not written"),
        };
        let first = answer(begin(open(), 5, &side).await);
        assert!(first > 0);
        assert_eq!(
            answer(begin(open(), 5, &side).await),
            first,
            "the same incident"
        );
        assert_eq!(store.incidents().expect("incidents").len(), 1);
        // A later position is a new operation.
        assert!(answer(begin(open(), 6, &side).await) > first);
        assert_eq!(store.incidents().expect("incidents").len(), 2);

        let (token, _) = crate::enroll::new_token(
            "alice",
            1,
            std::time::Duration::from_secs(60),
            Default::default(),
            String::new(),
        );
        let id = token.id.clone();
        answer(begin(Op::PutToken { record: token }, 7, &side).await);
        let use_it = || Op::UseToken {
            id: id.clone(),
            host: "web-01".into(),
            at_unix_ms: bannin_proto::now_unix_ms(),
        };
        answer(begin(use_it(), 8, &side).await);
        // Read again at 8: the one use is not taken twice (nor refused).
        answer(begin(use_it(), 8, &side).await);
        assert_eq!(store.token(&id).expect("token").expect("kept").used, 1);
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
}
