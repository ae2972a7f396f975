//! The Bannin collector: receives agents' telemetry over mTLS, derives findings,
//! keeps them in a durable queue, and serves operators.
//!
//! # Layout
//!
//! Data flows `link` → `ingest` (the single writer, with `detect` and `correlate`)
//! → `store`; operators read and act through `operator_api`.
//!
//! - [`config`]: the TOML configuration, validated with every problem reported at once.
//! - [`link`]: the `AgentLink` service, one stream per agent.
//! - [`ingest`]: the group-committing writer thread; the only writer of findings and events.
//! - [`detect`]: which events become findings; folding of identical findings.
//! - [`correlate`]: cross-host correlation (`Rule`), run inside the writer.
//! - [`rules`]: suppression rules and their durable hit counters.
//! - [`store`]: the sled store, one file per kind of record; nothing else names a tree or a key.
//! - [`hosts`]: inventory, liveness (`host.silent`) and revocation.
//! - [`commands`]: the durable command queue and desired isolation states.
//! - [`evidence`]: receiving snapshot bundles, and the custody rules (verify, export, dispose).
//! - [`incidents`]: incidents' severity scale, status order and updates.
//! - [`reports`]: the scoping brief and the lessons-learned review.
//! - [`operator_api`]: the `Operator` service for the CLI, one file per feature.
//! - [`sinks`]: export sinks reading the store from durable cursors.
//! - [`https`], [`webhook`], [`enroll`]: the HTTPS endpoints (Alertmanager webhook,
//!   token enrollment) and certificate signing.
//! - [`model`]: the domain types; prost types stop at the edges.
//! - [`pki`]: the CA, `pki init` and `pki issue`.
//!
//! [`serve`] is what the binary, `bannin up` and the tests all call.

pub mod budget;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod correlate;
pub mod denials;
pub mod detect;
pub mod enroll;
pub mod evidence;
#[cfg(test)]
mod fuzz;
pub mod hosts;
pub mod https;
pub mod hunts;
pub mod incidents;
pub mod ingest;
pub mod journal;
pub mod link;
pub mod model;
pub mod op;
pub mod operator_api;
pub mod pki;
pub mod reports;
pub mod rules;
pub mod sigma;
pub mod sinks;
pub mod store;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bannin_proto::identity::HostId;
use bannin_proto::now_unix_ms;
use bannin_proto::tls::{TlsError, TlsIncoming, TlsMaterial, server_config};
use bannin_proto::v1::agent_link_server::AgentLinkServer;
use bannin_proto::v1::operator_server::OperatorServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use config::CollectorConfig;

use crate::hosts::HostRegistry;
use crate::ingest::{Ingest, IngestConfig};
use crate::model::{NewFinding, Severity};
use crate::store::{Store, StoreError};

/// How long shutdown waits for streams to close before it stops waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the collector could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The enrollment CA could not be loaded.
    #[error("enrollment: {0}")]
    Enrollment(String),
    /// The Sigma rules could not be loaded.
    #[error("sigma rules: {0}")]
    Sigma(#[from] sigma::LoadError),
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    /// Cluster mode on a store a standalone collector made.
    #[error(
        "cluster mode: the store in {0} was made by a standalone collector (it holds findings or events of its own); give this collector a new, empty data_dir, and start the old store without [cluster] to read it"
    )]
    StandaloneStore(std::path::PathBuf),
    /// The operators' own port could not be bound.
    #[error("operator_listen {addr}: {source}")]
    OperatorListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the collector on `listener` until `shutdown` is cancelled, then drains:
/// streams are closed, the writer commits what it holds, and the store is flushed.
pub async fn serve(
    config: CollectorConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let material = TlsMaterial::load(&config.tls)?;
    let tls = server_config(&material)?;
    let store = Store::open(&config.data_dir.join("store"))?;
    if config.cluster.is_some() && !cluster::claim_store(&store)? {
        return Err(ServeError::StandaloneStore(config.data_dir.clone()));
    }
    // Cluster mode: actions recorded here are chained in the cluster log's
    // order (set before anything can record one).
    let outbox = config.cluster.is_some().then(|| store.defer_chaining());
    let fleet = Arc::new(correlate::FleetView::default());
    let sigma = Arc::new(load_sigma(&config.sigma_paths)?);
    let (ingest, writer) = Ingest::start(
        store.clone(),
        IngestConfig {
            fold_window_ms: i64::try_from(config.fold_window.as_millis()).unwrap_or(i64::MAX),
            detector: detect::Detector {
                severity_overrides: config.severity_overrides.clone(),
            },
            suppress: config.suppress.clone(),
            correlation: config.correlation.clone(),
            fleet: fleet.clone(),
            sigma,
            index: config.event_index,
        },
    )?;
    let cluster = match config.cluster.clone() {
        Some(c) => Some(cluster::Cluster::connect(c, config.max_message_bytes, &material).await?),
        None => None,
    };
    if let Some(c) = &cluster {
        c.set_detection(cluster::detection_digest(
            &config.severity_overrides,
            &config.suppress,
            &config.correlation,
            &config.sigma_paths,
        ));
    }
    let hosts = Arc::new(HostRegistry::load(
        store.clone(),
        config.silent_after_heartbeats,
        fleet,
    )?);
    if let Some(c) = &cluster {
        hosts.set_collector_name(c.name());
    }
    let evidence =
        Arc::new(
            evidence::Evidence::new(&config.data_dir).map_err(|source| StoreError::Io {
                path: config.data_dir.join("evidence"),
                source,
            })?,
        );
    bootstrap_operators(&store, &config)?;
    let tracker = TaskTracker::new();
    // Bumped at every operator change (as the journal applies it), so live
    // operator streams re-check their caller.
    let operator_changes = Arc::new(tokio::sync::watch::channel(0).0);
    // Hosts with a command newly queued, for whoever holds their stream.
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel();
    // Hunts newly started or stopped, for the hosts this collector holds.
    let (hunts_due_tx, hunts_due_rx) = tokio::sync::mpsc::unbounded_channel();
    let side = journal::SideEffects {
        store: store.clone(),
        due: due_tx,
        hunts_due: hunts_due_tx,
        hosts: hosts.clone(),
        operator_changes: operator_changes.clone(),
        evidence: evidence.clone(),
        carried_out: "",
    };
    // The one way state changes: a standalone collector applies operations
    // itself; in cluster mode they go through the log, applied by every
    // collector's applier.
    let journal = match &cluster {
        None => journal::Journal::local(ingest.clone(), side),
        Some(c) => {
            tracker.spawn(
                cluster::run_applier(c.clone(), ingest.clone(), side, shutdown.child_token())
                    .instrument(tracing::info_span!("applier")),
            );
            journal::Journal::log(c.clone())
        }
    };
    let hunts = Arc::new(hunts::Hunts::new(
        store.clone(),
        journal.clone(),
        hosts.clone(),
    ));
    let commands = Arc::new(
        commands::Commands::new(store.clone(), evidence, journal.clone())
            .with_hosts(hosts.clone())
            .with_hunts(hunts.clone()),
    );
    let denials = Arc::new(denials::Denials::new(store.clone()));
    let authority = match &config.enrollment {
        Some(e) => Some(Arc::new(
            enroll::Authority::load(&config.tls.ca, &e.ca_key, e.validity, hosts.clone())
                .map_err(ServeError::Enrollment)?,
        )),
        None => None,
    };
    if let (Some(authority), Some(listen)) = (
        authority.clone(),
        config.enrollment.as_ref().and_then(|e| e.listen),
    ) {
        let https = bannin_proto::tls::https_server_config(&material)?;
        let enrollment = Arc::new(enroll::Enrollment::new(
            authority,
            store.clone(),
            journal.clone(),
        ));
        let stop = shutdown.child_token();
        tracker.spawn(
            async move {
                if let Err(error) = enroll::serve(listen, https, enrollment, stop).await {
                    tracing::error!(%error, "The enrollment endpoint stopped");
                }
            }
            .instrument(tracing::info_span!("enrollment")),
        );
    }

    if let Some(c) = &cluster {
        let listen = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if let Some(notify) = outbox.clone() {
            tracker.spawn(
                cluster::run_action_outbox(
                    c.clone(),
                    store.clone(),
                    notify,
                    shutdown.child_token(),
                )
                .instrument(tracing::info_span!("outbox")),
            );
        }
        tracker.spawn(
            cluster::run_membership(
                c.clone(),
                hosts.clone(),
                store.clone(),
                listen,
                shutdown.child_token(),
            )
            .instrument(tracing::info_span!("membership")),
        );
    }

    if let Some(webhook) = config.webhook.clone() {
        let https = bannin_proto::tls::https_server_config(&material)?;
        let (store, journal, hosts, denials, stop) = (
            store.clone(),
            journal.clone(),
            hosts.clone(),
            denials.clone(),
            shutdown.child_token(),
        );
        tracker.spawn(
            async move {
                if let Err(error) =
                    webhook::serve(webhook, https, store, journal, hosts, denials, stop).await
                {
                    tracing::error!(%error, "The Alertmanager webhook stopped");
                }
            }
            .instrument(tracing::info_span!("webhook")),
        );
    }

    spawn_chores(
        Chores {
            hosts: hosts.clone(),
            journal: journal.clone(),
            commands: commands.clone(),
            ingest: ingest.clone(),
            denials: denials.clone(),
            due: due_rx,
            hunts_due: hunts_due_rx,
            // The last handle here: held past the serving, it would keep the writer (through its journal) from stopping.
            hunts,
            config: config.clone(),
        },
        &tracker,
        &shutdown,
    );
    let sink_statuses = sinks::start(
        &config.sinks,
        &store,
        ingest.latest_finding(),
        &journal,
        &tracker,
        &shutdown,
    );

    let link = link::LinkService {
        authority,
        ingest: ingest.clone(),
        hosts: hosts.clone(),
        commands: commands.clone(),
        max_message_bytes: config.max_message_bytes,
        budgets: Arc::new(budget::Budgets::new(config.host_budget)),
        denials: denials.clone(),
        journal: journal.clone(),
        shutdown: shutdown.child_token(),
    };
    let hosts_for_gate = hosts.clone();
    let operator = operator_api::OperatorService {
        rules: Arc::new(operator_api::RulesInForce {
            severity_overrides: config.severity_overrides.clone(),
            suppress: config.suppress.clone(),
            correlation: config.correlation.clone(),
            sigma_paths: config.sigma_paths.clone(),
        }),
        sinks: sink_statuses,
        store: store.clone(),
        ingest: ingest.clone(),
        hosts,
        commands,
        shutdown: shutdown.child_token(),
        operator_changes,
        journal,
        search_index: config.event_index,
        denials: denials.clone(),
    };
    drop(ingest);
    run(
        Serving {
            link,
            operator,
            hosts: hosts_for_gate,
            store,
            denials,
            tls,
            tracker,
            writer,
        },
        &config,
        listener,
        shutdown,
    )
    .await
}

/// What the collector's own background chores work on.
struct Chores {
    hosts: Arc<HostRegistry>,
    journal: journal::Journal,
    commands: Arc<commands::Commands>,
    ingest: Ingest,
    denials: Arc<denials::Denials>,
    /// Hosts with a command newly queued.
    due: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Hunts newly started or stopped.
    hunts_due: tokio::sync::mpsc::UnboundedReceiver<u64>,
    hunts: Arc<hunts::Hunts>,
    config: CollectorConfig,
}

/// Starts the chores every collector runs until `shutdown`: delivering
/// queued commands, flushing refusals into the action log, reloading Sigma
/// rules on SIGHUP, raising silent hosts, identity conflicts and clones,
/// expiring commands, and applying the retention bound.
fn spawn_chores(chores: Chores, tracker: &TaskTracker, shutdown: &CancellationToken) {
    let Chores {
        hosts,
        journal,
        commands,
        ingest,
        denials,
        due,
        hunts_due,
        hunts,
        config,
    } = chores;
    tracker.spawn(
        deliver_due(commands.clone(), due, shutdown.child_token())
            .instrument(tracing::info_span!("commands")),
    );
    tracker.spawn(
        deliver_hunts(commands.clone(), hunts_due, shutdown.child_token())
            .instrument(tracing::info_span!("hunts")),
    );
    let stop = shutdown.child_token();
    tracker.spawn(
        async move { hunts.record(stop).await }.instrument(tracing::info_span!("hunt_answers")),
    );
    let stop = shutdown.child_token();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(5)) => denials.flush(false).await,
            }
        }
        // Nothing counted is lost at shutdown.
        denials.flush(true).await;
    });
    if !config.sigma_paths.is_empty() {
        tracker.spawn(
            reload_on_hangup(
                ingest.clone(),
                config.sigma_paths.clone(),
                shutdown.child_token(),
            )
            .instrument(tracing::info_span!("sigma")),
        );
    }
    tracker.spawn(
        watch_silence(hosts, journal.clone(), shutdown.child_token())
            .instrument(tracing::info_span!("silence")),
    );
    tracker.spawn(
        expire_commands(commands, journal, shutdown.child_token())
            .instrument(tracing::info_span!("commands")),
    );
    tracker.spawn(
        retention(ingest, config, shutdown.child_token())
            .instrument(tracing::info_span!("retention")),
    );
}

/// What [`serve`] built, ready to serve.
struct Serving {
    link: link::LinkService,
    operator: operator_api::OperatorService,
    hosts: Arc<HostRegistry>,
    store: Store,
    denials: Arc<denials::Denials>,
    tls: Arc<rustls::ServerConfig>,
    tracker: TaskTracker,
    writer: std::thread::JoinHandle<()>,
}

/// Serves agents and operators on `listener` (operators on their own port
/// when configured) until `shutdown`, then drains: background tasks stop,
/// the writer commits what it holds, and the store is flushed.
async fn run(
    serving: Serving,
    config: &CollectorConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let Serving {
        link,
        operator,
        hosts,
        store,
        denials,
        tls,
        tracker,
        writer,
    } = serving;
    let addr = listener.local_addr().ok();
    let gate_hosts = hosts;
    let incoming = TlsIncoming::with_gate(
        listener,
        tls.clone(),
        shutdown.child_token(),
        Arc::new(move |peer: &bannin_proto::tls::PeerInfo| {
            gate_hosts.refusal(&peer.identity, &peer.key_sha256)
        }),
    );
    let limit = config.max_message_bytes;
    let builder = || {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .max_concurrent_streams(Some(64))
    };
    let agent_link = AgentLinkServer::new(link)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    // Every operator call passes the authorization layer first.
    let operator_api = operator_api::Authorized::new(
        OperatorServer::new(operator)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(64 * 1024 * 1024),
        store.clone(),
        denials.clone(),
    );
    let result = match config.operator_listen {
        None => {
            tracing::info!(listen = ?addr, data_dir = %config.data_dir.display(), "Collector serving");
            builder()
                .add_service(agent_link)
                .add_service(operator_api)
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
                .await
        }
        Some(operator_addr) => {
            // Operators on a port of their own: a flood on the agents' port
            // (shed there) never reaches it, and agent certificates are turned
            // away at its TLS gate.
            let operator_listener = TcpListener::bind(operator_addr).await.map_err(|source| {
                ServeError::OperatorListen {
                    addr: operator_addr,
                    source,
                }
            })?;
            let operator_incoming = TlsIncoming::with_gate(
                operator_listener,
                tls,
                shutdown.child_token(),
                Arc::new(|peer: &bannin_proto::tls::PeerInfo| match &peer.identity {
                    bannin_proto::identity::PeerIdentity::Agent(h) => Some(format!(
                        "agent {h} on the operators' port (agents connect to `listen`)"
                    )),
                    bannin_proto::identity::PeerIdentity::Collector(c) => Some(format!(
                        "collector {c}: a collector certificate is for NATS, not for this port"
                    )),
                    bannin_proto::identity::PeerIdentity::Operator(_) => None,
                }),
            );
            tracing::info!(listen = ?addr, operator_listen = %operator_addr, data_dir = %config.data_dir.display(), "Collector serving; operators on their own port");
            let agents = builder()
                .add_service(agent_link)
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
            let operators = builder()
                .add_service(operator_api)
                .serve_with_incoming_shutdown(
                    operator_incoming,
                    shutdown.clone().cancelled_owned(),
                );
            // One port failing stops the collector: half a collector is not served.
            let stop_on_error = |r: Result<(), tonic::transport::Error>| {
                if r.is_err() {
                    shutdown.cancel();
                }
                r
            };
            let (a, o) = tokio::join!(async { stop_on_error(agents.await) }, async {
                stop_on_error(operators.await)
            });
            a.and(o)
        }
    };
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("Background tasks did not stop within the grace period");
    }
    // Every Ingest handle is gone now; the writer commits what it holds and stops.
    let joined = tokio::task::spawn_blocking(move || writer.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        tracing::error!("Writer thread ended abnormally");
    }
    store.make_durable()?;
    tracing::info!("Collector stopped");
    result.map_err(ServeError::from)
}

/// Raises `host.silent` for every host silent past its timeout.
async fn watch_silence(
    hosts: Arc<HostRegistry>,
    journal: journal::Journal,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_unix_ms();
        // Among several collectors, which are alive decides who reports a
        // silent host; without that answer, nobody does this round.
        let live = match journal.live_collectors().await {
            Ok(live) => live,
            Err(error) => {
                tracing::debug!(%error, "Cannot list the live collectors; silence checked next round");
                continue;
            }
        };
        for host in hosts.newly_silent(now, live.as_deref()) {
            let Ok(host_id) = HostId::new(host.host_id.clone()) else {
                continue;
            };
            let silent_secs = (now - host.last_seen_unix_ms) / 1000;
            tracing::warn!(host.id = %host_id, silent.secs = silent_secs, "Host went silent");
            let finding = NewFinding {
                host_id,
                kind: "host.silent".into(),
                severity: Severity::Medium,
                observed_unix_ms: now,
                // When it was last heard from is in the summary, not the
                // attributes: a host that goes silent again (or a silence
                // reported again by a restarted collector) within the fold
                // window folds into the open finding with a count.
                attributes: BTreeMap::from([(
                    "heartbeat_interval_secs".to_owned(),
                    host.heartbeat_interval_secs.to_string(),
                )]),
                summary: format!(
                    "no heartbeat from {} ({}) for {silent_secs} s, since {}",
                    host.host_id,
                    host.hostname,
                    bannin_proto::rfc3339(host.last_seen_unix_ms)
                ),
            };
            // Two collectors reporting one silence store it once.
            let dedup = format!("silent:{}:{}", host.host_id, host.last_seen_unix_ms);
            if let Err(error) = journal.raise_once(finding, dedup).await {
                tracing::error!(%error, "Cannot raise host.silent");
            }
        }
        for conflict in hosts.new_identity_conflicts() {
            let Ok(host_id) = HostId::new(conflict.host_id.clone()) else {
                continue;
            };
            tracing::warn!(host.id = %host_id, claim = conflict.claim, value = %conflict.value, hosts = %conflict.hosts.join(","), "Several hosts claim one identity");
            let finding = NewFinding {
                host_id,
                kind: "host.identity_conflict".into(),
                severity: Severity::Medium,
                observed_unix_ms: now,
                attributes: BTreeMap::from([
                    ("claim".to_owned(), conflict.claim.to_owned()),
                    ("value".to_owned(), conflict.value.clone()),
                    ("hosts".to_owned(), conflict.hosts.join(",")),
                ]),
                summary: format!(
                    "hosts {} all claim the {} {}: alerts and peers naming it are resolved to none of them",
                    conflict.hosts.join(", "),
                    conflict.claim,
                    conflict.value
                ),
            };
            if let Err(error) = journal.raise(finding).await {
                tracing::error!(%error, "Cannot raise host.identity_conflict");
            }
        }
        for mut clone in hosts.new_clones(now) {
            let Ok(host_id) = HostId::new(clone.host_id.clone()) else {
                continue;
            };
            // In one order, so the collectors that both see it (cluster
            // mode) raise the same finding, folded into one.
            clone.sessions.sort();
            let places: Vec<String> = clone
                .sessions
                .iter()
                .map(|(peer, hostname)| format!("{hostname} at {peer}"))
                .collect();
            tracing::warn!(host.id = %host_id, sessions = %places.join(", "), "One host identity live on several machines");
            let mut finding = NewFinding {
                host_id,
                kind: "host.clone".into(),
                severity: Severity::Critical,
                observed_unix_ms: now,
                attributes: BTreeMap::from([
                    ("sessions".to_owned(), clone.sessions.len().to_string()),
                    (
                        "peers".to_owned(),
                        clone
                            .sessions
                            .iter()
                            .map(|(p, _)| p.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    (
                        "hostnames".to_owned(),
                        clone
                            .sessions
                            .iter()
                            .map(|(_, h)| h.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
                summary: if clone.collectors.is_empty() {
                    format!(
                        "host identity {} is live on {} machines at once ({}): a copied key; revoke it and re-enroll",
                        clone.host_id,
                        clone.sessions.len(),
                        places.join(", ")
                    )
                } else {
                    format!(
                        "host identity {} is live on {} machines at once, through collectors {} ({}): a copied key; revoke it and re-enroll",
                        clone.host_id,
                        clone.sessions.len(),
                        clone.collectors.join(" and "),
                        places.join(", ")
                    )
                },
            };
            if !clone.collectors.is_empty() {
                finding
                    .attributes
                    .insert("collectors".to_owned(), clone.collectors.join(","));
            }
            if let Err(error) = journal.raise(finding).await {
                tracing::error!(%error, "Cannot raise host.clone");
            }
        }
    }
}

/// Loads the Sigma rules under `paths`, logging each refused rule.
pub fn load_sigma(paths: &[std::path::PathBuf]) -> Result<sigma::SigmaSet, sigma::LoadError> {
    if paths.is_empty() {
        return Ok(sigma::SigmaSet::default());
    }
    let started = std::time::Instant::now();
    let set = sigma::load(paths)?;
    for r in &set.refused {
        tracing::warn!(file = %r.file.display(), rule = %r.title, reason = %r.reason, "Sigma rule refused");
    }
    tracing::info!(
        rules = set.rules.len(),
        refused = set.refused.len(),
        files = set.files,
        ms = started.elapsed().as_millis() as u64,
        "Sigma rules loaded"
    );
    Ok(set)
}

/// Stack of the thread that reloads Sigma rules (as large as a main thread's).
const SIGMA_LOAD_STACK: usize = 8 * 1024 * 1024;

/// Loads the Sigma rules again and puts them in force; on any error the rules
/// in force stay, and the error names the file.
pub async fn reload_sigma(
    ingest: &Ingest,
    paths: &[std::path::PathBuf],
) -> Result<(usize, usize, usize), String> {
    let owned = paths.to_vec();
    // On a thread of its own with the main thread's stack, not a 2 MiB
    // blocking-pool one: the loader's own bounds (`sigma::limits`) keep the
    // parsers' recursion shallow, and the stack is the margin behind them.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sigma-load".into())
        .stack_size(SIGMA_LOAD_STACK)
        .spawn(move || {
            let _ = tx.send(load_sigma(&owned));
        })
        .map_err(|e| format!("cannot start the loader: {e}"))?;
    let set = rx
        .await
        .map_err(|_| "loading stopped".to_owned())?
        .map_err(|e| e.to_string())?;
    let counts = (set.rules.len(), set.refused.len(), set.files);
    ingest.reload_sigma(set).await.map_err(|e| e.to_string())?;
    Ok(counts)
}

/// SIGHUP reloads the Sigma rules, as daemons reload their configuration.
async fn reload_on_hangup(ingest: Ingest, paths: Vec<std::path::PathBuf>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGHUP; reload rules with `bannin rules reload`");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                match reload_sigma(&ingest, &paths).await {
                    Ok((rules, refused, files)) => tracing::info!(rules, refused, files, "SIGHUP: Sigma rules reloaded"),
                    Err(error) => tracing::error!(%error, "SIGHUP: Sigma rules not reloaded; the rules in force stay"),
                }
            }
        }
    }
}

fn bootstrap_operators(store: &Store, config: &CollectorConfig) -> Result<(), StoreError> {
    if !store.operators()?.is_empty() {
        return Ok(());
    }
    if config.bootstrap_admins.is_empty() {
        tracing::warn!(
            "No operators are registered and [operators] bootstrap_admins is empty: every operator call will be refused"
        );
        return Ok(());
    }
    for name in &config.bootstrap_admins {
        store.put_operator(&model::OperatorRecord {
            name: name.to_string(),
            role: model::Role::Admin,
            enabled: true,
            created_unix_ms: now_unix_ms(),
            created_by: "bootstrap".into(),
        })?;
        store.append_action(&model::Action {
            at_unix_ms: now_unix_ms(),
            actor: "collector".into(),
            verb: "operator.bootstrap".into(),
            target: name.to_string(),
            reason: "first start: [operators] bootstrap_admins".into(),
            result: "admin".into(),
        })?;
        tracing::info!(operator = %name, "Bootstrap admin registered");
    }
    store.make_durable()
}

/// Sends hunts the journal started (or their stops) to the hosts whose
/// streams this collector holds, as it applies them.
async fn deliver_hunts(
    commands: Arc<commands::Commands>,
    mut due: tokio::sync::mpsc::UnboundedReceiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        let id = tokio::select! {
            () = shutdown.cancelled() => return,
            id = due.recv() => match id {
                Some(id) => id,
                None => return,
            },
        };
        if let Err(error) = commands.deliver_hunt(id).await {
            tracing::error!(hunt.id = id, %error, "Cannot send a hunt");
        }
    }
}

/// Delivers the commands the journal queued for hosts whose streams this
/// collector holds, as it applies them. A delivery that fails
/// (the log unreachable past the operations' own retries) is tried again
/// every few seconds while the host stays connected here, rather than left
/// until its next reconnection.
async fn deliver_due(
    commands: Arc<commands::Commands>,
    mut due: tokio::sync::mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut retry = std::collections::BTreeSet::new();
    let mut again = tokio::time::interval(Duration::from_secs(3));
    loop {
        let hosts: Vec<String> = tokio::select! {
            () = shutdown.cancelled() => return,
            h = due.recv() => match h {
                Some(h) => vec![h],
                None => return,
            },
            _ = again.tick(), if !retry.is_empty() => std::mem::take(&mut retry).into_iter().collect(),
        };
        for host in hosts {
            match commands.deliver(&host).await {
                Ok(true) => {}
                // Another collector holds an older session of this identity;
                // asked again while it lasts, in case it ends.
                Ok(false) => {
                    retry.insert(host);
                }
                Err(error) => {
                    tracing::warn!(host.id = %host, %error, "Cannot deliver a queued command; trying again");
                    retry.insert(host);
                }
            }
        }
    }
}

/// Expires undelivered commands: the collector that [leads](journal::Journal::leads)
/// does it for the whole queue (the journal applies an expiry once).
async fn expire_commands(
    commands: Arc<commands::Commands>,
    journal: journal::Journal,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match journal.leads().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::debug!(%error, "Cannot list the live collectors; expiry checked next round");
                continue;
            }
        }
        if let Err(error) = commands.expire(now_unix_ms()).await {
            tracing::error!(%error, "Cannot expire commands");
        }
    }
}

/// Applies the event retention bound once a minute.
async fn retention(ingest: Ingest, config: CollectorConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let age = i64::try_from(config.event_retention.as_millis()).unwrap_or(i64::MAX);
        ingest
            .prune(now_unix_ms().saturating_sub(age), config.event_max_bytes)
            .await;
    }
}
