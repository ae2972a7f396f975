//! The sensor framework: a [`Sensor`] trait, a registry built from config, and
//! per-sensor health.
//!
//! Each enabled sensor runs in its own task: every interval it sweeps on a
//! blocking thread (sensors read `/proc` and walk directories), hands its events
//! to the batcher, and records its health. Sensors read the host through
//! [`HostRoot`], so tests can point them at a fixture tree, and remember what
//! they have seen across restarts through [`SensorState`].

pub mod accounts;
pub mod file_access;
pub mod file_integrity;
pub mod file_odd_name;
pub mod hardware;
pub mod logs;
pub mod net_connection;
pub mod net_interface;
pub mod net_listener;
pub mod process;
pub mod resources;
pub mod source;
pub mod system;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bannin_proto::now_unix_ms;

pub use crate::host::HostRoot;
use bannin_proto::v1::{self, Severity};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::spool::Spool;

/// A sensor's health after a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Working fully.
    Ok,
    /// Working fully; says how (which event source runs).
    Working(String),
    /// Working, but seeing less than it should; says why.
    Degraded(String),
    /// Not working; says why.
    Failed(String),
    /// Turned off in config.
    Disabled,
    /// Learning its baseline quietly (the first `learn_secs` after the agent's
    /// very first start); says until when.
    Learning(String),
}

impl Health {
    /// To the wire.
    pub fn to_wire(&self, name: &str) -> v1::SensorHealth {
        let (state, detail) = match self {
            Health::Ok => ("ok", String::new()),
            Health::Working(d) => ("ok", d.clone()),
            Health::Degraded(d) => ("degraded", d.clone()),
            Health::Failed(d) => ("failed", d.clone()),
            Health::Disabled => ("disabled", String::new()),
            Health::Learning(d) => ("learning", d.clone()),
        };
        v1::SensorHealth {
            name: name.to_owned(),
            state: state.into(),
            detail,
        }
    }
}

/// What a running agent asks of its sensors: stop (long sweeps give up, so a stop
/// never waits for a scan of the whole disk) and relearn (which baselines to forget
/// before their next sweep). One per [`crate::run`], passed as a value, so two agents
/// in one process (`bannin up`, the tests) never see each other's requests.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    stop: StopFlag,
    relearn: Arc<Mutex<Vec<&'static str>>>,
    /// Until when (Unix ms) new-baseline findings are learned quietly.
    learning_until_unix_ms: i64,
}

/// Findings that only say "not in the learned baseline": during the quiet
/// learning window they are learned as telemetry, not raised. Everything the
/// host's own sources of truth say (IOC matches, package mismatches, deleted
/// executables, dropped executables, accounts, logins, integrity) is raised
/// from the first minute.
pub const LEARNED_KINDS: &[&str] = &[
    "process.unknown_binary",
    "net.new_listener",
    "service.new",
    "hardware.new_usb",
    "hardware.new_block",
    "hardware.new_nic",
];

/// A stop request as a sweep sees it.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<std::sync::atomic::AtomicBool>);

impl StopFlag {
    /// Whether the agent is stopping.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A relearn request naming a sensor that keeps no baseline.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} keeps no baseline; sensors with one: {list}", list = BASELINE_SENSORS.join(", "))]
pub struct NoBaseline(pub String);

/// The quiet window: what is only "new to this host" ([`LEARNED_KINDS`]) is kept as
/// telemetry marked `learning`, not raised.
pub fn learn_quietly(events: &mut [v1::Event]) {
    for e in events.iter_mut().filter(|e| e.indicator) {
        if LEARNED_KINDS.contains(&e.kind.as_str()) {
            e.indicator = false;
            e.attributes.insert("learning".into(), "true".into());
        }
    }
}

impl Controls {
    /// Controls whose baseline findings are learned quietly until `until_unix_ms`.
    pub fn learning_until(mut self, until_unix_ms: i64) -> Self {
        self.learning_until_unix_ms = until_unix_ms;
        self
    }

    /// Whether baseline findings are learned quietly now.
    pub fn learning(&self) -> bool {
        now_unix_ms() < self.learning_until_unix_ms
    }

    /// Tells long sweeps to give up.
    pub fn request_stop(&self) {
        self.stop
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The flag sweeps check.
    pub fn stop_flag(&self) -> StopFlag {
        self.stop.clone()
    }

    /// Asks `sensor` (or every baseline sensor, for `None`) to relearn before its
    /// next sweep. Returns the sensors asked.
    pub fn request_relearn(&self, sensor: Option<&str>) -> Result<Vec<&'static str>, NoBaseline> {
        let names: Vec<&'static str> = match sensor {
            None => BASELINE_SENSORS.to_vec(),
            Some(name) => match BASELINE_SENSORS.iter().find(|s| **s == name) {
                Some(s) => vec![*s],
                None => return Err(NoBaseline(name.to_owned())),
            },
        };
        let mut pending = bannin_proto::lock(&self.relearn);
        for n in &names {
            if !pending.contains(n) {
                pending.push(n);
            }
        }
        Ok(names)
    }

    /// Whether `sensor` was asked to relearn (and forgets the request).
    fn take_relearn(&self, sensor: &str) -> bool {
        let mut pending = bannin_proto::lock(&self.relearn);
        let before = pending.len();
        pending.retain(|p| *p != sensor);
        pending.len() != before
    }
}

/// Why a sweep failed outright.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// The source could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sensor state could not be read.
    #[error("sensor state: {0}")]
    State(#[from] crate::spool::SpoolError),
    /// The agent is stopping; the sweep was abandoned and nothing of it is kept.
    #[error("interrupted by the agent stopping")]
    Interrupted,
}

/// One source of observations.
pub trait Sensor: Send + 'static {
    /// Stable name, e.g. `net_listener`.
    fn name(&self) -> &'static str;
    /// Time between sweeps.
    fn interval(&self) -> Duration;
    /// One sweep: records what changed since the last one (and the sensor's new
    /// state, if any) in `out`, and says how healthy the sensor is.
    fn sweep(&mut self, out: &mut Sweep) -> Result<Health, SensorError>;
    /// Forgets the learned baseline: the next sweep learns it again, quietly.
    /// Sensors without a baseline ignore it.
    fn relearn(&mut self) {}
    /// For event-driven sensors: notified when something is waiting, so it is
    /// swept within [`WAKE_DEBOUNCE`] instead of at the next interval.
    fn waker(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// How long a woken sensor waits for the burst to go quiet before sweeping:
/// a storm of events costs one sweep, not one per event (and is folded as one).
pub const WAKE_DEBOUNCE: Duration = Duration::from_millis(250);
/// The longest a woken sensor waits for a burst to end.
pub const WAKE_MAX_DELAY: Duration = Duration::from_secs(3);

/// Sensors that keep a learned baseline (what `relearn` applies to).
pub const BASELINE_SENSORS: &[&str] = &[
    "accounts",
    "file_integrity",
    "file_odd_name",
    "hardware",
    "net_connection",
    "net_interface",
    "net_listener",
    "process",
    "resources",
    "system",
];

/// What a sweep produced: events, and the sensor's new state if it changed.
///
/// The state is saved in the same atomic write as the events
/// ([`crate::spool::Spool::append_sweep`]).
#[derive(Debug, Default)]
pub struct Sweep {
    /// Observations.
    pub events: Vec<v1::Event>,
    /// New state to remember (JSON), if it changed.
    pub state: Option<Vec<u8>>,
    /// Set when the agent is stopping: a long sweep gives up and keeps nothing.
    pub stop: StopFlag,
}

impl Sweep {
    /// Records the sensor's new state.
    pub fn save_state<T: Serialize>(&mut self, value: &T) {
        self.state = serde_json::to_vec(value).ok();
    }
}

/// Reads the state a sensor saved with its last sweep; `None` when never saved
/// or unreadable (the sensor then starts a new baseline).
pub fn load_state<T: DeserializeOwned>(
    spool: &Spool,
    name: &str,
) -> Result<Option<T>, SensorError> {
    let Some(saved) = spool.sensor_state(name)? else {
        return Ok(None);
    };
    match serde_json::from_slice(&saved) {
        Ok(state) => Ok(Some(state)),
        Err(error) => {
            // Loud: a baseline that does not load is learned again, quietly,
            // and whatever changed meanwhile goes unreported.
            tracing::error!(
                sensor = name,
                %error,
                bytes = saved.len(),
                "Saved sensor state does not load; the sensor learns its baseline again"
            );
            Ok(None)
        }
    }
}

/// Events a kernel source could not record (a full ring buffer or queue, a
/// process gone before it could be read), reported as an `agent.events_lost`
/// finding, as the spool reports its own loss: at once, then at most every
/// [`LossReport::EVERY`] with the count since the last report, so a gap in
/// the record is never silent and a busy host is not a stream of findings.
#[derive(Debug, Default)]
pub struct LossReport {
    pending: u64,
    last: Option<std::time::Instant>,
}

impl LossReport {
    /// Shortest time between two reports of one source.
    pub const EVERY: Duration = Duration::from_secs(600);

    /// Counts `n` more events lost.
    pub fn add(&mut self, n: u64) {
        self.pending = self.pending.saturating_add(n);
    }

    /// The report to send now, if one is due: `sensor` lost `pending` `what`.
    pub fn due(&mut self, sensor: &str, what: &str, why: &str) -> Option<v1::Event> {
        if self.pending == 0 || self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return None;
        }
        let lost = std::mem::take(&mut self.pending);
        self.last = Some(std::time::Instant::now());
        Some(event(
            "agent.events_lost",
            Severity::Medium,
            true,
            BTreeMap::from([
                ("sensor".to_owned(), sensor.to_owned()),
                ("what".to_owned(), what.to_owned()),
                ("lost".to_owned(), lost.to_string()),
                ("why".to_owned(), why.to_owned()),
            ]),
            format!("{lost} {what} not recorded ({why}): the record has a gap"),
        ))
    }
}

/// Builds an event.
pub fn event(
    kind: &str,
    severity: Severity,
    indicator: bool,
    attributes: BTreeMap<String, String>,
    summary: String,
) -> v1::Event {
    v1::Event {
        kind: kind.into(),
        severity: severity as i32,
        observed_unix_ms: now_unix_ms(),
        attributes: attributes.into_iter().collect(),
        summary,
        indicator,
    }
}

/// Health of every sensor, shared with the link (heartbeats carry it).
#[derive(Clone, Default)]
pub struct HealthBoard(Arc<Mutex<BTreeMap<&'static str, Health>>>);

impl HealthBoard {
    /// Records a sensor's health; logs changes.
    pub fn set(&self, name: &'static str, health: Health) {
        let mut map = bannin_proto::lock(&self.0);
        if map.get(name) != Some(&health) {
            match &health {
                Health::Ok => tracing::info!(sensor = name, "Sensor ok"),
                Health::Working(how) => tracing::info!(sensor = name, how = %how, "Sensor ok"),
                Health::Degraded(why) => {
                    tracing::warn!(sensor = name, reason = %why, "Sensor degraded")
                }
                Health::Failed(why) => {
                    tracing::error!(sensor = name, reason = %why, "Sensor failed")
                }
                Health::Disabled => tracing::info!(sensor = name, "Sensor disabled"),
                Health::Learning(until) => {
                    tracing::info!(sensor = name, %until, "Learning baselines quietly")
                }
            }
        }
        map.insert(name, health);
    }

    /// Records `health` for `name` only if `now` says so of its current health.
    pub fn set_if(
        &self,
        name: &'static str,
        now: impl FnOnce(Option<&Health>) -> bool,
        health: Health,
    ) {
        let current = bannin_proto::lock(&self.0).get(name).cloned();
        if now(current.as_ref()) {
            self.set(name, health);
        }
    }

    /// Snapshot for the wire.
    pub fn to_wire(&self) -> Vec<v1::SensorHealth> {
        let map = bannin_proto::lock(&self.0);
        map.iter().map(|(n, h)| h.to_wire(n)).collect()
    }

    /// Snapshot.
    pub fn snapshot(&self) -> Vec<(&'static str, Health)> {
        let map = bannin_proto::lock(&self.0);
        map.iter().map(|(n, h)| (*n, h.clone())).collect()
    }
}

/// Builds every sensor the config enables, with the state each saved last;
/// disabled ones are marked on the board.
pub fn registry(
    config: &AgentConfig,
    spool: &Arc<Spool>,
    board: &HealthBoard,
) -> Result<Vec<Box<dyn Sensor>>, SensorError> {
    let root = HostRoot(config.root.clone());
    let mut sensors: Vec<Box<dyn Sensor>> = Vec::new();
    if config.net_listener.enabled {
        sensors.push(Box::new(net_listener::NetListener::new(
            root.clone(),
            config.net_listener.clone(),
            load_state(spool, "net_listener")?,
        )));
    } else {
        board.set("net_listener", Health::Disabled);
    }
    if config.net_connection.common.enabled {
        sensors.push(Box::new(net_connection::NetConnection::new(
            root.clone(),
            config.net_connection.clone(),
            load_state(spool, "net_connection")?,
        )));
    } else {
        board.set("net_connection", Health::Disabled);
    }
    // Who wrote the account files and SSH keys, from the fanotify readers to
    // the accounts sensor (only while it runs: otherwise those changes stay
    // the other sensors' findings).
    let writers = config
        .accounts
        .enabled
        .then(source::writers::AccountWriters::default);
    if let Some(writers) = &writers {
        sensors.push(Box::new(
            accounts::Accounts::new(
                root.clone(),
                config.accounts.clone(),
                load_state(spool, "accounts")?,
            )
            .with_writers(writers.clone()),
        ));
    } else {
        board.set("accounts", Health::Disabled);
    }
    // One package index for the sensors that consult it: of the files they can
    // ask about (executables, and whatever integrity watches).
    let watched = if config.file_integrity.common.enabled {
        let fim = &config.file_integrity;
        fim.paths
            .iter()
            .chain(&fim.library_paths)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let packages = crate::host::packages::SharedIndex::new(
        crate::host::packages::Scope::for_sensors(&watched),
    );
    if config.process.common.enabled {
        sensors.push(Box::new(
            process::Processes::new(
                root.clone(),
                config.process.clone(),
                load_state(spool, "process")?,
            )
            .with_packages(packages.clone()),
        ));
    } else {
        board.set("process", Health::Disabled);
    }
    if config.system.enabled {
        sensors.push(Box::new(system::System::new(
            root.clone(),
            config.system.clone(),
            load_state(spool, "system")?,
        )));
    } else {
        board.set("system", Health::Disabled);
    }
    if config.hardware.enabled {
        sensors.push(Box::new(hardware::Hardware::new(
            root.clone(),
            config.hardware.clone(),
            load_state(spool, "hardware")?,
        )));
    } else {
        board.set("hardware", Health::Disabled);
    }
    if config.net_interface.common.enabled {
        sensors.push(Box::new(net_interface::NetInterface::new(
            root.clone(),
            config.net_interface.clone(),
            load_state(spool, "net_interface")?,
        )));
    } else {
        board.set("net_interface", Health::Disabled);
    }
    if config.logs.common.enabled {
        sensors.push(Box::new(logs::Logs::new(
            root.clone(),
            config.logs.clone(),
            load_state(spool, "logs")?,
        )));
    } else {
        board.set("logs", Health::Disabled);
    }
    if config.file_integrity.common.enabled {
        // Self-protection: the agent's own binary and config are in the baseline.
        let mut fim = config.file_integrity.clone();
        fim.paths.extend(std::env::current_exe().ok());
        fim.paths.extend(config.config_path.clone());
        let mut sensor = file_integrity::FileIntegrity::new(
            root.clone(),
            fim,
            spool.dir().join(file_integrity::NAME),
        )
        .with_packages(packages.clone())
        .with_state(load_state(spool, file_integrity::NAME)?);
        if let Some(writers) = &writers {
            sensor = sensor.with_writers(writers.clone());
        }
        sensors.push(Box::new(sensor));
    } else {
        board.set(file_integrity::NAME, Health::Disabled);
    }
    if config.file_access.common.enabled {
        let mut sensor = file_access::FileAccess::new(root.clone(), config.file_access.clone());
        if let Some(writers) = &writers {
            sensor = sensor.with_writers(writers.clone());
        }
        sensors.push(Box::new(sensor));
    } else {
        board.set("file_access", Health::Disabled);
    }
    if config.resources.common.enabled {
        sensors.push(Box::new(resources::Resources::new(
            root.clone(),
            config.resources.clone(),
            load_state(spool, "resources")?,
        )));
    } else {
        board.set("resources", Health::Disabled);
    }
    if config.file_odd_name.common.enabled {
        sensors.push(Box::new(file_odd_name::OddNames::new(
            root,
            config.file_odd_name.clone(),
            load_state(spool, "file_odd_name")?,
        )));
    } else {
        board.set("file_odd_name", Health::Disabled);
    }
    Ok(sensors)
}

/// Folds storms: past `max_per_kind` findings of one kind in one sweep, they
/// become one finding with the count, the highest severity and the first
/// examples, so 10,000 files created at once are one finding, not 10,000.
/// Telemetry (non-indicator events) is left alone.
pub fn fold(events: &mut Vec<v1::Event>, max_per_kind: usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.indicator) {
        *counts.entry(e.kind.as_str()).or_default() += 1;
    }
    let storms: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n > max_per_kind)
        .map(|(k, _)| k.to_owned())
        .collect();
    for kind in storms {
        let (storm, rest): (Vec<v1::Event>, Vec<v1::Event>) = std::mem::take(events)
            .into_iter()
            .partition(|e| e.indicator && e.kind == kind);
        *events = rest;
        let Some(first) = storm.first() else { continue };
        let mut folded = first.clone();
        folded.severity = storm
            .iter()
            .map(|e| e.severity)
            .max()
            .unwrap_or(first.severity);
        let examples: Vec<&str> = storm.iter().take(5).map(|e| e.summary.as_str()).collect();
        // An event may already stand for several (a sensor that stopped building them).
        let count: u64 = storm
            .iter()
            .map(|e| {
                e.attributes
                    .get("folded_count")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1)
            })
            .sum();
        folded
            .attributes
            .insert("folded_count".into(), count.to_string());
        folded
            .attributes
            .insert("examples".into(), examples.join(" | "));
        folded.summary = format!(
            "{} × {kind} in one sweep, e.g. {}",
            storm.len(),
            first.summary
        );
        events.push(folded);
        tracing::warn!(kind, count = storm.len(), "Finding storm folded into one");
    }
}

/// One sweep's output on its way to the spool.
pub struct SweepOutput {
    /// The sensor.
    pub sensor: &'static str,
    /// What it produced.
    pub sweep: Sweep,
}

/// Runs one sensor until `shutdown`: sweep, send, sleep.
pub async fn run_sensor(
    mut sensor: Box<dyn Sensor>,
    events: mpsc::Sender<SweepOutput>,
    board: HealthBoard,
    shutdown: CancellationToken,
    fold_after: usize,
    controls: Controls,
    root: HostRoot,
) {
    let name = sensor.name();
    let users = std::sync::Arc::new(std::sync::Mutex::new(
        crate::host::accounts::UserNames::new(root),
    ));
    let interval = sensor.interval();
    let waker = sensor.waker();
    loop {
        let relearn = controls.take_relearn(name);
        let stop = controls.stop_flag();
        let users = users.clone();
        let swept = tokio::task::spawn_blocking(move || {
            if relearn {
                tracing::info!(sensor = sensor.name(), "Relearning the baseline");
                sensor.relearn();
            }
            let mut out = Sweep {
                stop,
                ..Sweep::default()
            };
            let result = sensor.sweep(&mut out);
            fold(&mut out.events, fold_after);
            bannin_proto::lock(&users).name_events(&mut out.events);
            (sensor, out, result)
        })
        .await;
        let (returned, out, result) = match swept {
            Ok(t) => t,
            Err(error) => {
                board.set(name, Health::Failed(format!("sweep panicked: {error}")));
                return;
            }
        };
        sensor = returned;
        let mut out = out;
        if controls.learning() {
            learn_quietly(&mut out.events);
        } else if controls.learning_until_unix_ms > 0 {
            board.set_if(
                "baseline",
                |h| matches!(h, Some(Health::Learning(_))),
                Health::Ok,
            );
        }
        match result {
            Ok(health) => board.set(name, health),
            // An orderly stop is not a failure: the sweep kept nothing, health stands.
            Err(SensorError::Interrupted) => {
                tracing::info!(sensor = name, "Sweep abandoned: the agent is stopping");
                return;
            }
            Err(error) => board.set(name, Health::Failed(error.to_string())),
        }
        if (!out.events.is_empty() || out.state.is_some())
            && events
                .send(SweepOutput {
                    sensor: name,
                    sweep: out,
                })
                .await
                .is_err()
        {
            return;
        }
        let woken = async {
            match &waker {
                Some(w) => {
                    w.notified().await;
                    let cap = tokio::time::sleep(WAKE_MAX_DELAY);
                    tokio::pin!(cap);
                    loop {
                        tokio::select! {
                            () = &mut cap => break,
                            () = tokio::time::sleep(WAKE_DEBOUNCE) => break,
                            () = w.notified() => {}
                        }
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            () = woken => {}
        }
    }
}

/// Whether the agent runs as root (effective uid 0): `/proc/self` is owned by the effective uid.
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_learning_window_keeps_only_baseline_novelty_quiet() {
        let mut events = vec![
            event(
                "process.unknown_binary",
                Severity::Medium,
                true,
                BTreeMap::new(),
                String::new(),
            ),
            event(
                "process.ioc_match",
                Severity::Critical,
                true,
                BTreeMap::new(),
                String::new(),
            ),
            event(
                "file.package_mismatch",
                Severity::Critical,
                true,
                BTreeMap::new(),
                String::new(),
            ),
            event(
                "net.new_listener",
                Severity::Medium,
                true,
                BTreeMap::new(),
                String::new(),
            ),
            event(
                "process.exec",
                Severity::Info,
                false,
                BTreeMap::new(),
                String::new(),
            ),
        ];
        learn_quietly(&mut events);
        let raised: Vec<&str> = events
            .iter()
            .filter(|e| e.indicator)
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(raised, ["process.ioc_match", "file.package_mismatch"]);
        assert_eq!(events[0].attributes["learning"], "true");
        assert!(!events[4].attributes.contains_key("learning"));
        let controls = Controls::default().learning_until(now_unix_ms() + 60_000);
        assert!(controls.learning());
        assert!(!Controls::default().learning());
    }

    #[test]
    fn storms_fold_into_one_finding_with_a_count() {
        let mut events: Vec<v1::Event> = (0..10_000)
            .map(|i| {
                event(
                    "file.archive",
                    if i == 7 {
                        Severity::High
                    } else {
                        Severity::Medium
                    },
                    true,
                    BTreeMap::from([("path".to_owned(), format!("/tmp/{i}.zip"))]),
                    format!("new zip archive: /tmp/{i}.zip"),
                )
            })
            .collect();
        events.push(event(
            "file.odd_name",
            Severity::Medium,
            true,
            BTreeMap::new(),
            "one".into(),
        ));
        events.extend((0..50).map(|_| {
            event(
                "process.exec",
                Severity::Info,
                false,
                BTreeMap::new(),
                "t".into(),
            )
        }));
        fold(&mut events, 20);
        let archives: Vec<&v1::Event> =
            events.iter().filter(|e| e.kind == "file.archive").collect();
        assert_eq!(archives.len(), 1);
        assert_eq!(archives[0].attributes["folded_count"], "10000");
        assert_eq!(archives[0].severity, Severity::High as i32);
        assert!(archives[0].attributes["examples"].contains("/tmp/4.zip"));
        assert_eq!(
            events.iter().filter(|e| e.kind == "file.odd_name").count(),
            1
        );
        assert_eq!(
            events.iter().filter(|e| e.kind == "process.exec").count(),
            50,
            "telemetry is not folded"
        );
    }

    /// Lost events are reported at once, then at most every ten minutes with
    /// the count since the last report: nothing uncounted, no stream of findings.
    #[test]
    fn a_loss_is_reported_at_once_then_summed() {
        let mut losses = LossReport::default();
        assert!(
            losses.due("process", "execs", "full").is_none(),
            "nothing lost"
        );
        losses.add(3);
        let first = losses
            .due("process", "execs", "full")
            .expect("reported at once");
        assert_eq!(first.kind, "agent.events_lost");
        assert!(first.indicator);
        assert_eq!(first.attributes["lost"], "3");
        losses.add(2);
        losses.add(5);
        assert!(
            losses.due("process", "execs", "full").is_none(),
            "not again so soon"
        );
        losses.last = Some(std::time::Instant::now() - LossReport::EVERY);
        let next = losses.due("process", "execs", "full").expect("summed");
        assert_eq!(next.attributes["lost"], "7");
    }
}
