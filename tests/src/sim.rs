//! Simulated agents: real mTLS sessions with a host's own certificate that
//! say Hello and send scripted telemetry batches, each waited for until the
//! collector acknowledges it (durably stored). What a fleet of real agents
//! would send, without a fleet of machines.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use bannin_proto::tls::{self, TlsMaterial};
use bannin_proto::v1::agent_link_client::AgentLinkClient;
use bannin_proto::v1::{self, agent_message, collector_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::TestPki;

/// One simulated agent's live session.
pub struct SimAgent {
    /// Host id.
    pub host: String,
    tx: mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::CollectorMessage>,
    next: u64,
}

impl SimAgent {
    /// Connects as `host` (certificate from `pki`), says Hello with
    /// `addresses` and `labels`, a heartbeat interval of one second.
    pub async fn connect(
        pki: &TestPki,
        host: &str,
        addr: SocketAddr,
        addresses: &[&str],
        labels: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let hello = v1::Hello {
            host_id: host.to_owned(),
            hostname: host.to_owned(),
            os: "Simulated Linux".into(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            heartbeat_interval_secs: 1,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        };
        Self::connect_hello(pki, host, addr, hello).await
    }

    /// Connects as `host` and says `hello`, whatever it holds.
    pub async fn connect_hello(
        pki: &TestPki,
        host: &str,
        addr: SocketAddr,
        hello: v1::Hello,
    ) -> anyhow::Result<Self> {
        let material = TlsMaterial::load(&pki.agent(host))?;
        let config = tls::client_config(&material)?;
        let channel = tls::connect(&addr.to_string(), "bannin-collector", config).await?;
        let mut client = AgentLinkClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        tx.send(v1::AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })
        .await?;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .context("session")?
            .into_inner();
        let next = match inbound.message().await? {
            Some(v1::CollectorMessage {
                body: Some(collector_message::Body::Welcome(w)),
            }) => w.acked_sequence + 1,
            other => bail!("expected Welcome, got {other:?}"),
        };
        Ok(Self {
            host: host.to_owned(),
            tx,
            inbound,
            next,
        })
    }

    /// The sequence the next batch will carry.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Sends a command result, whatever it says (a hostile agent's).
    pub async fn send_result(&mut self, result: v1::CommandResult) -> anyhow::Result<()> {
        self.tx
            .send(v1::AgentMessage {
                body: Some(agent_message::Body::CommandResult(result)),
            })
            .await
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Sends `events` as one batch and waits until it is acknowledged.
    pub async fn send(&mut self, events: &[v1::Event]) -> anyhow::Result<u64> {
        let sequence = self.next;
        self.next += 1;
        self.tx
            .send(v1::AgentMessage {
                body: Some(agent_message::Body::Batch(v1::TelemetryBatch::from_events(
                    sequence, events,
                ))),
            })
            .await
            .context("stream closed")?;
        loop {
            let message =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.inbound.message())
                    .await
                    .context("no ack within 30 s")??;
            match message {
                Some(v1::CollectorMessage {
                    body: Some(collector_message::Body::Ack(ack)),
                }) if ack.sequence >= sequence => return Ok(ack.sequence),
                Some(_) => {}
                None => bail!("the collector closed the stream"),
            }
        }
    }

    /// Waits (30 s at most) for the next command, skipping acknowledgements.
    pub async fn next_command(&mut self) -> anyhow::Result<v1::Command> {
        loop {
            let message =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.inbound.message())
                    .await
                    .context("no command within 30 s")??;
            match message {
                Some(v1::CollectorMessage {
                    body: Some(collector_message::Body::Command(c)),
                }) => return Ok(c),
                Some(_) => {}
                None => bail!("the collector closed the stream"),
            }
        }
    }

    /// Sends an evidence chunk, whatever it holds (a hostile or broken agent's).
    pub async fn send_chunk(&mut self, chunk: v1::EvidenceChunk) -> anyhow::Result<()> {
        self.tx
            .send(v1::AgentMessage {
                body: Some(agent_message::Body::EvidenceChunk(chunk)),
            })
            .await
            .map_err(|_| anyhow::anyhow!("session closed"))
    }

    /// Sends a heartbeat (keeps the host online).
    pub async fn heartbeat(&mut self) -> anyhow::Result<()> {
        self.tx
            .send(v1::AgentMessage {
                body: Some(agent_message::Body::Heartbeat(v1::Heartbeat {
                    sent_unix_ms: bannin_proto::now_unix_ms(),
                    ..Default::default()
                })),
            })
            .await
            .context("stream closed")
    }
}

/// An event as a sensor would build it.
pub fn event(
    kind: &str,
    indicator: bool,
    observed_unix_ms: i64,
    attributes: &[(&str, &str)],
) -> v1::Event {
    let attributes: BTreeMap<String, String> = attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v1::Event {
        kind: kind.to_owned(),
        severity: if indicator {
            v1::Severity::High
        } else {
            v1::Severity::Info
        } as i32,
        observed_unix_ms,
        summary: format!("{kind} {attributes:?}"),
        attributes: attributes.into_iter().collect(),
        indicator,
    }
}
