//! The action outbox: actions recorded here wait durably until the log
//! holds them, and are chained by every collector in the log's order.

use super::*;

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
