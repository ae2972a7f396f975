//! The log's applier: reads the cluster log in order from this collector's
//! durable position and applies every message through the same writer and
//! the same [`apply::begin`] as a standalone collector.

use super::*;

/// What the applier waits for after handing a message to the writer.
enum Applying {
    /// The writer's answer to a batch.
    Batch(oneshot::Receiver<Result<u64, IngestError>>),
    /// An operation handed to the writer: its answer, for the operation's
    /// waiter (if it was published here). An action chained carries its
    /// outbox id if this collector recorded it (0 otherwise).
    Op {
        op_id: String,
        action: Option<u64>,
        pending: apply::Pending,
    },
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
    mut side: SideEffects,
    shutdown: CancellationToken,
) {
    side.carried_out = CARRIED_OUT;
    let side = Arc::new(side);
    loop {
        let durable = match side.store.counter(APPLIED_COUNTER) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "Cannot read the applied log position");
                0
            }
        };
        match apply_from(&cluster, &ingest, &side, durable, &shutdown).await {
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
    side: &Arc<SideEffects>,
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
        side.clone(),
        applying_rx,
        failed.clone(),
    ));
    let mut prev = durable;
    // The operations applied up to `durable`, committed with it.
    let mut window = match side.store.meta_bytes(replay::STORE_KEY) {
        Ok(None) => replay::OpWindow::default(),
        Ok(Some(bytes)) => replay::OpWindow::decode(&bytes)
            .ok_or_else(|| "the applied operations' window in the store is damaged".to_owned())?,
        Err(e) => return Err(format!("reading the applied operations' window: {e}")),
    };
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
        // And each operation once (`replay`): a signed operation published
        // again after JetStream's duplicate window is refused the same way.
        let checked = cluster
            .verifier
            .check(
                message.subject.as_str(),
                message.headers.as_ref(),
                &message.payload,
                at,
            )
            .map_err(|r| r.to_string())
            .and_then(|_signer| {
                if message.subject.as_str() != OP_SUBJECT {
                    return Ok(None);
                }
                let op_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(OP_HEADER))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                window.admit(&op_id).map_err(|r| r.to_string())?;
                Ok(Some(()))
            });
        let state = match checked {
            Ok(Some(())) => Some((replay::STORE_KEY, window.encode())),
            Ok(None) => None,
            Err(refusal) => {
                refuse(cluster, seq, message.subject.as_str(), &refusal);
                if writer
                    .send(WriteRequest::Applied {
                        seq,
                        prev,
                        at,
                        request: None,
                        state: None,
                    })
                    .await
                    .is_err()
                {
                    break Ok(());
                }
                prev = seq;
                continue;
            }
        };
        let (request, applying) = match decode(ingest, &message, seq, at) {
            Decoded::Batch(request, rx) => (Some(request), Applying::Batch(rx)),
            Decoded::Op(op_id, op) => {
                let action = match &*op {
                    Op::Action { origin, outbox, .. } => {
                        Some(if origin == cluster.name() { *outbox } else { 0 })
                    }
                    _ => None,
                };
                match apply::begin(*op, seq, side).await {
                    Err(reason) => break Err(reason),
                    Ok(Begun::Done(reply)) => (None, Applying::Done(op_id, Box::new(reply))),
                    Ok(Begun::Writer(request, pending)) => (
                        Some(request),
                        Applying::Op {
                            op_id,
                            action,
                            pending,
                        },
                    ),
                }
            }
            Decoded::Nothing => (None, Applying::Nothing),
        };
        if writer
            .send(WriteRequest::Applied {
                seq,
                prev,
                at,
                request,
                state,
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

/// Counts and logs a refused message of the log; `bannin cluster` shows
/// the count and the last reason.
fn refuse(cluster: &Cluster, seq: u64, subject: &str, refusal: &str) {
    tracing::warn!(
        log.seq = seq,
        subject,
        refusal,
        "Refused a message of the cluster log"
    );
    cluster.refused.fetch_add(1, Ordering::Relaxed);
    *bannin_proto::lock(&cluster.last_refused) = format!("log {seq} ({subject}): {refusal}");
}

/// The stream sequence of the last operation carried out by the applier
/// ([`apply::begin`]).
const CARRIED_OUT: &str = "cluster.carried_out";

/// One log message, read.
enum Decoded {
    /// A batch, prepared for the writer.
    Batch(
        Box<WriteRequest>,
        oneshot::Receiver<Result<u64, IngestError>>,
    ),
    /// An operation, with the id its publisher waits on.
    Op(String, Box<Op>),
    /// Nothing this collector can apply (applied as nothing, so the chain of
    /// positions holds).
    Nothing,
}

/// Reads one log message.
fn decode(ingest: &Ingest, message: &jetstream::Message, seq: u64, at: i64) -> Decoded {
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
                return Decoded::Nothing;
            };
            match ingest.prepare_at(&host, batch, at) {
                Ok(batch) => {
                    let (reply, rx) = oneshot::channel();
                    Decoded::Batch(Box::new(WriteRequest::Batch { host, batch, reply }), rx)
                }
                Err(error) => {
                    tracing::error!(log.seq = seq, host.id = %host, %error, "Batch in the log refused; skipped");
                    Decoded::Nothing
                }
            }
        }
        OP_SUBJECT => match serde_json::from_slice::<Op>(&message.payload) {
            Ok(op) => Decoded::Op(header(OP_HEADER).unwrap_or_default(), Box::new(op)),
            Err(error) => {
                tracing::error!(log.seq = seq, %error, "Unreadable operation in the log; skipped");
                Decoded::Nothing
            }
        },
        other => {
            tracing::warn!(log.seq = seq, subject = %other, "Log message on an unknown subject; skipped");
            Decoded::Nothing
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
    side: Arc<SideEffects>,
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
            Applying::Op {
                op_id,
                action,
                pending,
            } => {
                let Ok(reply) = pending.finish(&side).await else {
                    return;
                };
                // A failed commit (or a message out of order after one) is
                // applied again from the durable position; so is any failure
                // to chain an action. Other refusals are the answer.
                if let Some(error) = reply.error()
                    && (action.is_some()
                        || matches!(
                            error,
                            IngestError::OutOfOrder | IngestError::CommitFailed(_)
                        ))
                {
                    fail(error);
                    continue;
                }
                if let Some(mine) = action.filter(|&mine| mine > 0) {
                    cluster.chained.send_if_modified(|newest| {
                        let newer = mine > *newest;
                        *newest = (*newest).max(mine);
                        newer
                    });
                }
                cluster.answer(&op_id, reply);
            }
            Applying::Done(op, reply) => cluster.answer(&op, *reply),
            Applying::Nothing => {}
        }
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
}
