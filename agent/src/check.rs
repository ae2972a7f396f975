//! `bannin-agent check`: every sensor once, against the baseline kept in a
//! state directory, with no collector — triage on a host that has none.
//!
//! The first run learns the baselines (and reports only what is wrong on its
//! own, such as a second uid-0 account or a process from `/dev/shm`); later
//! runs report what changed since. Findings are printed, not sent anywhere.

use std::path::Path;
use std::sync::Arc;

use bannin_proto::v1;
use serde::Serialize;

use crate::config::AgentConfig;
use crate::sensors::{self, Health, HealthBoard, Sweep};
use crate::spool::{Spool, SpoolError};

/// One finding of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFinding {
    /// Sensor that saw it.
    pub sensor: &'static str,
    /// Finding kind.
    pub kind: String,
    /// info, low, medium, high or critical.
    pub severity: &'static str,
    /// What was seen.
    pub summary: String,
    /// Paths, names, interfaces, ports…
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// One sensor's health after the check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSensor {
    /// Sensor.
    pub name: String,
    /// ok, degraded, failed or disabled.
    pub state: String,
    /// Why, when not ok.
    pub detail: String,
}

/// What a check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Whether this run learned the baselines (the first run in this state directory).
    pub first_run: bool,
    /// Findings, most severe first.
    pub findings: Vec<CheckFinding>,
    /// Every sensor's health.
    pub sensors: Vec<CheckSensor>,
}

/// Lower-case severity name.
pub fn severity_name(value: i32) -> &'static str {
    v1::Severity::name_of(value)
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The state directory could not be opened.
    #[error("state directory {path}: {source}")]
    State {
        /// Directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: SpoolError,
    },
    /// A sensor's saved state could not be read.
    #[error("reading sensor state: {0}")]
    Sensor(#[from] sensors::SensorError),
}

/// Runs every enabled sensor once with its state in `state_dir`.
pub fn check(config: &AgentConfig, state_dir: &Path) -> Result<CheckReport, CheckError> {
    let spool = Spool::open(state_dir, 64 * 1024 * 1024).map_err(|source| CheckError::State {
        path: state_dir.to_owned(),
        source,
    })?;
    let spool = Arc::new(spool);
    let first_run = spool
        .sensor_state("check")
        .map_err(|source| CheckError::State {
            path: state_dir.to_owned(),
            source,
        })?
        .is_none();
    let board = HealthBoard::default();
    let mut findings = Vec::new();
    // Sensors are dropped at the end of each turn: file baselines are committed.
    for mut sensor in sensors::registry(config, &spool, &board)? {
        let name = sensor.name();
        let mut sweep = Sweep::default();
        let result = sensor.sweep(&mut sweep);
        sensors::fold(&mut sweep.events, config.fold_after);
        board.set(
            name,
            match result {
                Ok(h) => h,
                Err(e) => Health::Failed(e.to_string()),
            },
        );
        for e in sweep.events.iter().filter(|e| e.indicator) {
            let severity = config
                .severity
                .get(&e.kind)
                .map(|s| *s as i32)
                .unwrap_or(e.severity);
            findings.push(CheckFinding {
                sensor: name,
                kind: e.kind.clone(),
                severity: severity_name(severity),
                summary: e.summary.clone(),
                attributes: e.attributes.clone().into_iter().collect(),
            });
        }
        // Keep the baselines; the events themselves go nowhere.
        spool
            .append_sweep(Vec::new(), sweep.state.map(|s| (name, s)))
            .map_err(|source| CheckError::State {
                path: state_dir.to_owned(),
                source,
            })?;
    }
    spool
        .put_state("check", b"1".to_vec())
        .map_err(|source| CheckError::State {
            path: state_dir.to_owned(),
            source,
        })?;
    let rank = |s: &str| {
        ["critical", "high", "medium", "low", "info"]
            .iter()
            .position(|x| *x == s)
    };
    findings.sort_by_key(|f| (rank(f.severity), f.kind.clone()));
    let sensors = board
        .to_wire()
        .into_iter()
        .map(|s| CheckSensor {
            name: s.name,
            state: s.state,
            detail: s.detail,
        })
        .collect();
    Ok(CheckReport {
        first_run,
        findings,
        sensors,
    })
}
