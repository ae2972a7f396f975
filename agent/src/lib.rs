//! The Bannin endpoint agent: sensors observe the host, every batch of events
//! is spooled durably, and the link streams the spool to the collector over
//! mutual TLS; the responder answers the collector's commands.
//!
//! # Layout
//!
//! Data flows `sensors` → spooler → `spool` → `link`; commands flow `link` →
//! `response` → results back up the link:
//!
//! - [`config`]: the TOML configuration (raw, validation, validated types).
//! - [`host`]: the one seam onto the host (`/proc`, `/proc/net`, accounts, auth
//!   logs, path escaping) under a `HostRoot`; sensors and `response` both use it.
//! - [`sensors`]: the sensor framework, one file per sensor, and `source/` (the
//!   event readers that wake them).
//! - [`spool`]: the spool, one file per batch; sequence numbers; overflow and loss reports.
//! - [`link`]: connect, Hello, replay, acknowledgements, heartbeats, backoff.
//! - [`response`]: commands parsed once into a typed `Command`, one file per
//!   command with its `apply` (isolate, release, triage, snapshot, relearn, ping).
//! - [`inventory`]: what the Hello says about the host.
//! - [`enroll`]: token enrollment and certificate renewal, the agent's side.
//! - [`check`]: `bannin-agent check`, a standalone one-shot triage of this host.
//!
//! [`run`] is what the binary, `bannin up` and the tests all call.

pub mod check;
pub mod config;
pub mod enroll;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod inventory;
pub mod link;
pub mod response;
pub mod sensors;
pub mod spool;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;
use std::time::Duration;

use bannin_proto::identity::{HostId, IdentityError, PeerIdentity};
use bannin_proto::tls::{TlsError, TlsMaterial, client_config};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use config::AgentConfig;
pub use sensors::HealthBoard;

use crate::sensors::SweepOutput;
use crate::spool::{Spool, SpoolError};

/// How long shutdown waits for tasks to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate carries no usable identity.
    #[error("agent certificate: {0}")]
    Identity(#[from] IdentityError),
    /// The certificate is not an agent certificate.
    #[error("the certificate is for {0}, not for an agent")]
    NotAnAgent(PeerIdentity),
    /// The configured host id differs from the certificate's.
    #[error("host_id in the config is {configured} but the certificate is for {certificate}")]
    HostMismatch {
        /// From the config.
        configured: HostId,
        /// From the certificate.
        certificate: HostId,
    },
    /// The sensors' saved state could not be read.
    #[error("reading sensor state: {0}")]
    SensorState(#[source] sensors::SensorError),
    /// The spool could not be opened.
    #[error("spool {path}: {source}")]
    Spool {
        /// Spool directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: SpoolError,
    },
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    run_with_health(config, HealthBoard::default(), shutdown).await
}

/// Runs the agent, reporting sensor health on `board`.
pub async fn run_with_health(
    config: AgentConfig,
    board: HealthBoard,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let material = TlsMaterial::load(&config.tls)?;
    let host = match material.own_identity()? {
        PeerIdentity::Agent(h) => h,
        other => return Err(AgentError::NotAnAgent(other)),
    };
    if let Some(configured) = &config.host_id
        && configured != &host
    {
        return Err(AgentError::HostMismatch {
            configured: configured.clone(),
            certificate: host,
        });
    }
    let tls = client_config(&material)?;
    let spool = Spool::open_with(
        &config.spool_dir,
        config.spool_max_bytes,
        config.spool_max_state_bytes,
    )
    .map_err(|source| AgentError::Spool {
        path: config.spool_dir.clone(),
        source,
    })?;
    let spool = Arc::new(spool);
    // Stop and relearn requests for this agent's sensors (values, not globals), and
    // the quiet learning window counted from the agent's very first start.
    let first_start = first_start_unix_ms(&spool);
    let learning_until =
        first_start.saturating_add(i64::try_from(config.learn.as_millis()).unwrap_or(i64::MAX));
    let controls = sensors::Controls::default().learning_until(if config.learn.is_zero() {
        0
    } else {
        learning_until
    });
    if controls.learning() {
        board.set(
            "baseline",
            sensors::Health::Learning(bannin_proto::rfc3339(learning_until)),
        );
    }
    // Before anything else: a host that was isolated stays isolated.
    let responder = response::Responder::new(
        response::ResponseConfig {
            collectors: config.link.addresses.clone(),
            dns_resolvers: config.dns_resolvers.clone(),
            local_operator: config.local_operator,
            root: config.root.clone(),
            work_dir: config.spool_dir.clone(),
            host_id: host.to_string(),
        },
        spool.clone(),
        controls.clone(),
    );
    responder.restore().await;
    let spooled = Arc::new(Notify::new());
    let tracker = TaskTracker::new();
    let (events_tx, events_rx) = mpsc::channel(1024);
    let sensors = sensors::registry(&config, &spool, &board).map_err(AgentError::SensorState)?;
    for sensor in sensors {
        let span = tracing::info_span!("sensor", sensor = sensor.name());
        tracker.spawn(
            sensors::run_sensor(
                sensor,
                events_tx.clone(),
                board.clone(),
                shutdown.child_token(),
                config.fold_after,
                controls.clone(),
                crate::host::HostRoot(config.root.clone()),
            )
            .instrument(span),
        );
    }
    drop(events_tx);
    tracker.spawn(
        spooler(
            events_rx,
            spool.clone(),
            spooled.clone(),
            config.link.batch_max_events,
            Arc::new(config.severity.clone()),
        )
        .instrument(tracing::info_span!("spooler")),
    );
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let (results_tx, results_rx) = mpsc::channel(64);
    tracker.spawn(
        responder
            .run(commands_rx, results_tx, shutdown.child_token())
            .instrument(tracing::info_span!("response")),
    );
    let link = link::Link {
        commands: commands_tx,
        results: tokio::sync::Mutex::new(results_rx),
        config: config.link.clone(),
        host: host.clone(),
        tls,
        tls_paths: config.tls.clone(),
        spool: spool.clone(),
        spooled,
        health: board,
    };
    tracker.spawn(
        link.run(shutdown.child_token())
            .instrument(tracing::info_span!("link", host.id = %host)),
    );
    tracker.spawn(crate::host::memory::keep_lean(shutdown.child_token()));
    tracker.close();
    tracing::info!(host.id = %host, collectors = ?config.link.addresses, "Agent running");
    shutdown.cancelled().await;
    controls.request_stop();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Agent tasks did not stop within the grace period");
    }
    if let Err(error) = spool.flush() {
        tracing::error!(%error, "Final spool flush failed");
    }
    tracing::info!("Agent stopped");
    Ok(())
}

/// Spools each sensor sweep as it arrives: its events in batches of at most
/// `max_events`, together with the sensor's new state, in one atomic write.
/// Ends when every sensor has stopped.
///
/// Sweeps are not merged across sensors: a sweep is the unit that must be
/// atomic with its sensor's state, and sensors sweep seconds apart, so merging
/// would buy little and cost that guarantee.
async fn spooler(
    mut sweeps: mpsc::Receiver<SweepOutput>,
    spool: Arc<Spool>,
    spooled: Arc<Notify>,
    max_events: usize,
    severity: Arc<std::collections::BTreeMap<String, bannin_proto::v1::Severity>>,
) {
    while let Some(SweepOutput { sensor, sweep }) = sweeps.recv().await {
        let mut events = sweep.events;
        // `[severity]` in the config: the operator's word over the sensor's default.
        for e in events.iter_mut().filter(|e| e.indicator) {
            if let Some(level) = severity.get(&e.kind) {
                e.severity = *level as i32;
            }
        }
        let mut chunks = Vec::with_capacity(events.len() / max_events + 1);
        while events.len() > max_events {
            let rest = events.split_off(max_events);
            chunks.push(std::mem::replace(&mut events, rest));
        }
        if !events.is_empty() {
            chunks.push(events);
        }
        let spool = spool.clone();
        let state = sweep.state;
        // Invariant: a batch is durable in the spool before the link may send it.
        // Otherwise a crash could lose a batch the collector already stored, and
        // the restarted agent would hand its sequence number to new data, which
        // the collector would then drop as a duplicate.
        let appended = tokio::task::spawn_blocking(move || {
            let r = spool.append_sweep(chunks, state.as_deref().map(|s| (sensor, s.to_vec())))?;
            spool.flush()?;
            Ok::<_, SpoolError>(r)
        })
        .await;
        match appended {
            Ok(Ok(_)) => spooled.notify_one(),
            Ok(Err(error)) => {
                tracing::error!(sensor, %error, "Cannot spool a sweep; its events are lost")
            }
            Err(error) => tracing::error!(sensor, %error, "Spool task failed"),
        }
    }
}

/// When this agent first started on this host (kept in the spool, so restarts and
/// upgrades do not reopen the quiet learning window; a new spool does).
fn first_start_unix_ms(spool: &Spool) -> i64 {
    const KEY: &str = "agent.first_start";
    if let Ok(Some(bytes)) = spool.sensor_state(KEY)
        && let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice())
    {
        return i64::from_be_bytes(raw);
    }
    let now = bannin_proto::now_unix_ms();
    if let Err(error) = spool.put_state(KEY, now.to_be_bytes().to_vec()) {
        tracing::warn!(%error, "Cannot record the agent's first start: the learning window restarts with the agent");
    }
    now
}
