//! The agent link: one bidirectional stream per agent.
//!
//! The host id comes from the client certificate ([`PeerInfo`]); the agent's
//! Hello must name the same host or the stream is refused before anything is
//! stored. Batches are handed to the writer in arrival order and acknowledged in
//! the same order, each only once durable; up to [`MAX_IN_FLIGHT`] batches of a
//! stream may be waiting for the writer at once, which is the stream's backpressure.

use std::sync::Arc;
use std::time::Duration;

use bannin_proto::identity::{HostId, PeerIdentity};
use bannin_proto::tls::PeerInfo;
use bannin_proto::v1::agent_link_server::AgentLink;
use bannin_proto::v1::{self, agent_message, collector_message};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::commands::Commands;
use crate::commands::Outbound;
use crate::hosts::HostRegistry;
use crate::ingest::{Ingest, IngestError, Receipt};

/// Batches of one stream waiting for the writer at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long an agent has to say Hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// The `AgentLink` service.
#[derive(Clone)]
pub struct LinkService {
    pub(crate) authority: Option<Arc<crate::enroll::Authority>>,
    pub(crate) ingest: Ingest,
    pub(crate) hosts: Arc<HostRegistry>,
    pub(crate) commands: Arc<Commands>,
    pub(crate) max_message_bytes: usize,
    pub(crate) denials: Arc<crate::denials::Denials>,
    /// What each host may make the collector write per second.
    pub(crate) budgets: Arc<crate::budget::Budgets>,
    pub(crate) shutdown: CancellationToken,
    /// Where this collector says which hosts it holds.
    pub(crate) journal: crate::journal::Journal,
}

#[tonic::async_trait]
impl AgentLink for LinkService {
    type SessionStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<v1::CollectorMessage, Status>> + Send>,
    >;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = PeerInfo::of(&request)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let host = match &peer.identity {
            PeerIdentity::Agent(h) => h.clone(),
            PeerIdentity::Operator(name) => {
                const WHY: &str = "an operator certificate cannot open an agent stream";
                tracing::warn!(peer.addr = %peer.remote_addr, operator = %name, "Operator certificate refused on the agent link");
                self.denials
                    .refused(&format!("operator {name}"), "agent_link", WHY)
                    .await;
                return Err(Status::permission_denied(WHY));
            }
            PeerIdentity::Collector(name) => {
                const WHY: &str = "a collector certificate cannot open an agent stream";
                tracing::warn!(peer.addr = %peer.remote_addr, collector = %name, "Collector certificate refused on the agent link");
                self.denials
                    .refused(&format!("collector {name}"), "agent_link", WHY)
                    .await;
                return Err(Status::permission_denied(WHY));
            }
        };
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => {
                tracing::warn!(host.id = %host, peer.addr = %peer.remote_addr, "Stream refused: first message was not Hello");
                return Err(Status::invalid_argument("the first message must be Hello"));
            }
            Ok(Err(status)) => {
                tracing::warn!(host.id = %host, peer.addr = %peer.remote_addr, error = %status.message(), "Stream refused: bad first message");
                return Err(status);
            }
            Err(_) => {
                return Err(Status::deadline_exceeded("no Hello within 30 s"));
            }
        };
        if hello.host_id != host.as_str() {
            tracing::warn!(host.id = %host, claimed = %hello.host_id, peer.addr = %peer.remote_addr, "Stream refused: Hello names another host than the certificate");
            return Err(Status::permission_denied(format!(
                "certificate is for host {host}, Hello names {:?}",
                hello.host_id
            )));
        }
        if let Err(why) = bannin_proto::hello::check(&hello) {
            tracing::warn!(host.id = %host, peer.addr = %peer.remote_addr, reason = %why, "Stream refused: Hello does not describe a host");
            return Err(Status::invalid_argument(format!("Hello refused: {why}")));
        }
        if let Some(why) = self.hosts.refusal(&peer.identity, &peer.key_sha256) {
            tracing::warn!(host.id = %host, peer.addr = %peer.remote_addr, reason = %why, "Stream refused: revoked");
            return Err(Status::permission_denied(why));
        }
        self.hosts
            .key_seen(&host, &peer.key_sha256)
            .map_err(|e| internal("recording the host's key", &e))?;
        let session = self
            .hosts
            .connected(&host, &hello, peer.remote_addr.to_string())
            .map_err(|e| internal("registering host", &e))?;
        tracing::info!(host.id = %host, peer.addr = %peer.remote_addr, hostname = %hello.hostname, agent.version = %hello.agent_version, "Agent connected");
        self.announce(&host).await;

        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT + 8);
        let welcome = v1::CollectorMessage {
            body: Some(collector_message::Body::Welcome(v1::Welcome {
                acked_sequence: self.ingest.high_water(&host),
                max_message_bytes: u32::try_from(self.max_message_bytes).unwrap_or(u32::MAX),
            })),
        };
        tx.send(Ok(Box::new(welcome)))
            .await
            .map_err(|_| Status::cancelled("agent went away"))?;

        let span =
            tracing::info_span!("agent_session", host.id = %host, peer.addr = %peer.remote_addr);
        let this = self.clone();
        // Not on a TaskTracker: a session ends when its stream ends; tonic cancels streams at shutdown and `serve` waits for the server.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(
            async move {
                this.run_session(host, peer.key_sha256, session, inbound, tx)
                    .await
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|m| m.map(|m| *m)),
        )))
    }
}

impl LinkService {
    /// Tells the other collectors (if any) that this one holds `host`'s
    /// stream, with its record (they list, correlate and watch it from that).
    async fn announce(&self, host: &HostId) {
        if let Some(record) = self.hosts.record(host) {
            let started = self.hosts.session_started(host.as_str()).unwrap_or(0);
            self.journal
                .announce(host.as_str(), Some((record, started)))
                .await;
        }
    }

    async fn run_session(
        &self,
        host: HostId,
        key: String,
        session_id: u64,
        mut inbound: Streaming<v1::AgentMessage>,
        tx: Outbound,
    ) {
        let mut revocations = self.hosts.revocations();
        let (acks_tx, acks_rx) = mpsc::channel::<Receipt>(MAX_IN_FLIGHT);
        // Not on a TaskTracker: the session's acker ends when the session drops its sender.
        #[allow(clippy::disallowed_methods)]
        let acker = tokio::spawn(send_acks(acks_rx, tx.clone()));
        let session = match self.commands.attach(&host, tx.clone()).await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::error!(%error, "Cannot deliver pending commands");
                None
            }
        };
        loop {
            let message = tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = revocations.changed() => {
                    if changed.is_ok() && let Some(why) = self.hosts.refusal(&PeerIdentity::Agent(host.clone()), &key) {
                        tracing::warn!(reason = %why, "Host revoked; stream cut");
                        let _ = tx.send(Err(Status::permission_denied(why))).await;
                        break;
                    }
                    continue;
                }
                m = inbound.message() => m,
            };
            let body = match message {
                Ok(Some(v1::AgentMessage { body: Some(body) })) => body,
                Ok(Some(v1::AgentMessage { body: None })) => {
                    tracing::warn!("Empty message; stream closed");
                    let _ = tx
                        .send(Err(Status::invalid_argument("empty message")))
                        .await;
                    break;
                }
                Ok(None) => break,
                Err(status) => {
                    // Oversized or malformed frames end here: this stream only.
                    tracing::warn!(code = ?status.code(), error = %status.message(), "Bad message from agent; stream closed");
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            self.hosts.seen(&host, session_id);
            // What this message will make the collector write; past the host's
            // budget the next message waits (nothing is dropped).
            let (events, bytes) = match &body {
                agent_message::Body::Batch(b) => (
                    b.events.len() as u64,
                    b.events.iter().map(|e| e.len() as u64).sum(),
                ),
                agent_message::Body::EvidenceChunk(c) => (0, c.data.len() as u64),
                agent_message::Body::CommandResult(r) => (0, r.detail.len() as u64),
                _ => (0, 0),
            };
            let wait = self.budgets.charge(host.as_str(), events, bytes);
            match body {
                agent_message::Body::Batch(batch) => {
                    let submitted = self.journal.append_batch(host.clone(), batch).await;
                    match submitted {
                        Ok(rx) => {
                            if acks_tx.send(rx).await.is_err() {
                                break;
                            }
                        }
                        Err(IngestError::Malformed { index, reason }) => {
                            tracing::warn!(event.index = index, %reason, "Malformed event in batch; stream closed, nothing of the batch stored");
                            let _ = tx
                                .send(Err(Status::invalid_argument(format!(
                                    "event {index} of the batch is malformed: {reason}"
                                ))))
                                .await;
                            break;
                        }
                        Err(error) => {
                            // Shutting down, or the journal did not take it
                            // (JetStream): the agent keeps it spooled and retries,
                            // here or at its next collector.
                            tracing::warn!(%error, "Batch not taken; stream closed");
                            let _ = tx.send(Err(Status::unavailable(error.to_string()))).await;
                            break;
                        }
                    }
                }
                agent_message::Body::Heartbeat(beat) => {
                    if let Err(error) = self.hosts.heartbeat(&host, &beat) {
                        tracing::warn!(%error, "Cannot record heartbeat");
                    }
                    self.announce(&host).await;
                }
                agent_message::Body::EvidenceChunk(chunk) => {
                    self.commands.evidence_chunk(&host, chunk).await;
                }
                agent_message::Body::CommandResult(result) => {
                    if let Err(error) = self.commands.record_result(&host, result).await {
                        tracing::error!(%error, "Cannot record a command result");
                    }
                }
                agent_message::Body::Renew(request) => {
                    let answer = match &self.authority {
                        Some(ca) => match ca.renew(&host, &request.csr_pem) {
                            Ok(issued) => {
                                tracing::info!(not_after = issued.not_after_unix_ms, "Certificate renewed");
                                issued
                            }
                            Err(error) => {
                                tracing::warn!(%error, "Renewal refused");
                                v1::RenewResponse {
                                    error: error.to_string(),
                                    ..Default::default()
                                }
                            }
                        },
                        None => v1::RenewResponse {
                            error: "this collector does not renew certificates ([enrollment] ca_key is not set)".into(),
                            ..Default::default()
                        },
                    };
                    let _ = tx
                        .send(Ok(Box::new(v1::CollectorMessage {
                            body: Some(collector_message::Body::Renewed(answer)),
                        })))
                        .await;
                }
                agent_message::Body::Hello(_) => {
                    tracing::warn!("Second Hello on one stream; stream closed");
                    let _ = tx
                        .send(Err(Status::invalid_argument("Hello may only be sent once")))
                        .await;
                    break;
                }
            }
            if !wait.is_zero() {
                tokio::select! {
                    () = self.shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        if let Some(id) = session {
            self.commands.detach(&host, id);
        }
        drop(acks_tx);
        // Acknowledge what was already handed to the writer before closing.
        let _ = acker.await;
        if let Err(error) = self.hosts.disconnected(&host, session_id) {
            tracing::warn!(%error, "Cannot record disconnect");
        }
        self.journal.announce(host.as_str(), None).await;
        tracing::info!("Agent disconnected");
    }
}

async fn send_acks(mut pending: mpsc::Receiver<Receipt>, tx: Outbound) {
    while let Some(receipt) = pending.recv().await {
        let message = match receipt.durable().await {
            Ok(sequence) => Ok(Box::new(v1::CollectorMessage {
                body: Some(collector_message::Body::Ack(v1::Ack { sequence })),
            })),
            Err(IngestError::Stopped) => Err(Status::unavailable("collector is shutting down")),
            Err(error) => {
                tracing::error!(%error, "Batch not stored; stream closed so the agent replays it");
                Err(Status::unavailable("batch not stored; retry"))
            }
        };
        let failed = message.is_err();
        if tx.send(message).await.is_err() || failed {
            break;
        }
    }
}

/// One conversion of internal errors to a status: the detail goes to the log, not the peer.
pub(crate) fn internal(what: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::error!(%error, "{what} failed");
    Status::internal(format!("{what} failed"))
}
