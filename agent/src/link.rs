//! The agent's end of the link: connect over mTLS, say Hello, replay the spool
//! in order, stream new batches, heartbeat, and reconnect with exponential
//! backoff plus jitter when anything fails.
//!
//! Flow control: at most `max_in_flight` batches are sent and unacknowledged at
//! once, and at most `max_batches_per_sec` are sent per second (a token bucket),
//! so a fleet replaying its spools after an outage arrives as a steady stream
//! rather than a flood. Acknowledgements are cumulative; each removes its batches
//! from the spool.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bannin_proto::identity::HostId;
use bannin_proto::tls;
use bannin_proto::tls::ClientConfig;
use bannin_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message, collector_message,
};
use rand::Rng;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::LinkConfig;
use crate::sensors::HealthBoard;
use crate::spool::{Spool, SpoolError};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Could not connect.
    #[error(transparent)]
    Connect(#[from] tls::TlsError),
    /// The collector refused or ended the stream.
    #[error("collector: {0}")]
    Status(#[from] tonic::Status),
    /// The collector broke the protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Everything a session needs.
pub struct Link {
    /// Settings.
    pub config: LinkConfig,
    /// Our host id.
    pub host: HostId,
    /// Client TLS configuration at start; each session reloads the files
    /// (a renewed certificate is used from the next connection on).
    pub tls: Arc<ClientConfig>,
    /// The TLS files.
    pub tls_paths: tls::TlsPaths,
    /// The spool.
    pub spool: Arc<Spool>,
    /// Woken when a batch is spooled.
    pub spooled: Arc<Notify>,
    /// Sensor health, for Hello and heartbeats.
    pub health: HealthBoard,
    /// Commands to the responder.
    pub commands: mpsc::Sender<v1::Command>,
    /// Results from the responder; held by the open session. Results made while
    /// disconnected wait here for the next session.
    pub results: tokio::sync::Mutex<mpsc::Receiver<agent_message::Body>>,
}

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// [initial/2, min(max, initial·2ⁿ)].
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.initial / 2).min(ceiling);
        let ms = rand::rng().random_range(floor.as_millis()..=ceiling.as_millis());
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Back to the initial delay after a healthy session.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Link {
    /// Runs sessions until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff_initial, self.config.backoff_max);
        // Which of `[collector] addresses` this session uses: the agent stays
        // with a collector while it works and moves to the next one whenever a
        // session ends, so a dead collector costs one backoff delay (the spool
        // replays whatever it had not acknowledged).
        let mut current = 0usize;
        loop {
            let mut delivered = false;
            let address = self
                .config
                .addresses
                .get(current)
                .cloned()
                .unwrap_or_default();
            let result = self.session(&shutdown, &mut delivered, &address).await;
            if shutdown.is_cancelled() {
                return;
            }
            if delivered {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            match result {
                Ok(()) => tracing::info!(
                    retry.ms = delay.as_millis() as u64,
                    "Collector closed the stream; reconnecting"
                ),
                Err(error) => {
                    tracing::warn!(%error, retry.ms = delay.as_millis() as u64, collector = %address, "Link down; reconnecting")
                }
            }
            if self.config.addresses.len() > 1 {
                current = (current + 1) % self.config.addresses.len();
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn heartbeat(&self) -> v1::AgentMessage {
        let stats = self.spool.stats();
        v1::AgentMessage {
            body: Some(agent_message::Body::Heartbeat(v1::Heartbeat {
                sent_unix_ms: bannin_proto::now_unix_ms(),
                sensors: self.health.to_wire(),
                spool_bytes: stats.bytes,
                spool_batches: stats.batches,
            })),
        }
    }

    /// A renewal request when the certificate expires within `renew_before`.
    fn renewal_due(&self) -> Option<v1::RenewRequest> {
        let pem = std::fs::read(&self.tls_paths.cert).ok()?;
        let not_after = crate::enroll::not_after_unix_ms(&pem)?;
        let now = bannin_proto::now_unix_ms();
        let window = i64::try_from(self.config.renew_before.as_millis()).unwrap_or(i64::MAX);
        if not_after.saturating_sub(now) > window {
            return None;
        }
        let key = std::fs::read_to_string(&self.tls_paths.key).ok()?;
        let csr = rcgen::KeyPair::from_pem(&key)
            .map_err(crate::enroll::EnrollError::from)
            .and_then(|k| crate::enroll::csr(&k));
        match csr {
            Ok(csr_pem) => {
                tracing::info!(
                    expires_in_s = (not_after - now) / 1000,
                    "Certificate expires soon; asking for a renewal"
                );
                Some(v1::RenewRequest { csr_pem })
            }
            Err(error) => {
                tracing::error!(%error, "Cannot make a renewal request");
                None
            }
        }
    }

    /// Writes a renewed certificate, after checking it names this host.
    fn store_renewal(&self, renewed: &v1::RenewResponse) {
        if !renewed.error.is_empty() {
            tracing::warn!(error = %renewed.error, "The collector refused the renewal");
            return;
        }
        use rustls::pki_types::pem::PemObject;
        let ours = rustls::pki_types::CertificateDer::pem_slice_iter(renewed.cert_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .and_then(|der| bannin_proto::identity::PeerIdentity::from_certificate(&der).ok())
            .is_some_and(|id| id == bannin_proto::identity::PeerIdentity::Agent(self.host.clone()));
        if !ours {
            tracing::error!(
                "The renewed certificate does not name this host; kept the current one"
            );
            return;
        }
        match crate::enroll::write_atomic(&self.tls_paths.cert, renewed.cert_pem.as_bytes(), 0o644)
        {
            Ok(()) => {
                tracing::info!(not_after_unix_ms = renewed.not_after_unix_ms, path = %self.tls_paths.cert.display(), "Certificate renewed; used from the next connection")
            }
            Err(error) => tracing::error!(%error, "Cannot write the renewed certificate"),
        }
    }

    async fn session(
        &self,
        shutdown: &CancellationToken,
        delivered: &mut bool,
        address: &str,
    ) -> Result<(), LinkError> {
        let config = match tls::TlsMaterial::load(&self.tls_paths)
            .and_then(|m| tls::client_config(&m))
        {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "Cannot reload the TLS files; using those loaded at start");
                self.tls.clone()
            }
        };
        let channel = tls::connect(address, &self.config.server_name, config).await?;
        let mut client = AgentLinkClient::new(channel)
            .max_decoding_message_size(bannin_proto::DEFAULT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(bannin_proto::DEFAULT_MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(self.config.max_in_flight + 4);
        let hello = crate::inventory::hello(
            self.host.as_str(),
            u32::try_from(self.config.heartbeat.as_secs()).unwrap_or(30),
            self.health.to_wire(),
            &self.config.labels,
        );
        let _ = tx
            .send(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(hello)),
            })
            .await;
        let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
        let welcome = match inbound.message().await? {
            Some(v1::CollectorMessage {
                body: Some(collector_message::Body::Welcome(w)),
            }) => w,
            _ => return Err(LinkError::Protocol("expected Welcome")),
        };
        self.spool.ensure_after(welcome.acked_sequence)?;
        self.spool.acknowledge(welcome.acked_sequence)?;
        let backlog = self.spool.stats();
        tracing::info!(collector = %address, acked = welcome.acked_sequence, backlog.batches = backlog.batches, "Connected to collector");

        if let Some(request) = self.renewal_due() {
            let _ = tx
                .send(v1::AgentMessage {
                    body: Some(agent_message::Body::Renew(request)),
                })
                .await;
        }
        let mut next = welcome.acked_sequence + 1;
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        let rate = f64::from(self.config.max_batches_per_sec);
        let burst = (self.config.max_in_flight as f64).max(1.0);
        let mut tokens = burst;
        let mut refilled = Instant::now();
        let mut results = self.results.lock().await;
        // The first heartbeat comes early: sensors have usually finished their first
        // sweep by then, so the collector shows their health without waiting a full interval.
        let first = self.config.heartbeat.min(Duration::from_secs(3));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + first, self.config.heartbeat);
        loop {
            // Send whatever the window and the rate allow.
            let now = Instant::now();
            tokens = (tokens + now.duration_since(refilled).as_secs_f64() * rate).min(burst);
            refilled = now;
            let room = self.config.max_in_flight.saturating_sub(in_flight.len());
            let allowed = room.min(tokens.floor() as usize);
            if allowed > 0 {
                for batch in self.spool.read_from(next, allowed)? {
                    next = batch.sequence + 1;
                    in_flight.push_back(batch.sequence);
                    tokens -= 1.0;
                    let message = v1::AgentMessage {
                        body: Some(agent_message::Body::Batch(batch)),
                    };
                    if tx.send(message).await.is_err() {
                        return Err(LinkError::Protocol("stream closed while sending"));
                    }
                }
            }
            let window_full = in_flight.len() >= self.config.max_in_flight;
            let rate_wait = if tokens < 1.0 {
                Duration::from_secs_f64((1.0 - tokens) / rate)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = inbound.message() => match message? {
                    Some(v1::CollectorMessage { body: Some(collector_message::Body::Ack(ack)) }) => {
                        self.spool.acknowledge(ack.sequence)?;
                        while in_flight.front().is_some_and(|s| *s <= ack.sequence) {
                            in_flight.pop_front();
                        }
                        *delivered = true;
                    }
                    Some(v1::CollectorMessage { body: Some(collector_message::Body::Command(command)) }) => {
                        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command) {
                            let busy = v1::CommandResult {
                                command_id: command.id,
                                ok: false,
                                detail: "agent busy: too many commands queued".into(),
                            };
                            let _ = tx.send(v1::AgentMessage { body: Some(agent_message::Body::CommandResult(busy)) }).await;
                        }
                    }
                    Some(v1::CollectorMessage { body: Some(collector_message::Body::Renewed(renewed)) }) => {
                        self.store_renewal(&renewed);
                    }
                    Some(_) => return Err(LinkError::Protocol("unexpected message")),
                    None => return Ok(()),
                },
                Some(body) = results.recv() => {
                    let message = v1::AgentMessage { body: Some(body) };
                    if let Err(mpsc::error::SendError(unsent)) = tx.send(message).await {
                        // The stream died under us: the collector re-sends unanswered
                        // commands on the next session, and every verb is idempotent.
                        tracing::warn!(?unsent, "Command result not sent; the collector will ask again");
                        return Err(LinkError::Protocol("stream closed while sending a result"));
                    }
                }
                _ = heartbeat.tick() => {
                    let _ = tx.send(self.heartbeat()).await;
                }
                () = self.spooled.notified(), if !window_full && tokens >= 1.0 => {}
                () = tokio::time::sleep(rate_wait), if tokens < 1.0 => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let delays: Vec<Duration> = (0..30).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(50)));
        assert!(
            delays[20..].iter().any(|d| *d > Duration::from_secs(10)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
