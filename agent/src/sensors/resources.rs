//! `resource.anomaly`: CPU or memory use far above what this host usually
//! does (cryptominers, runaway malware, a host being used as a stepping stone).
//! Bandwidth is judged per interface by `net_interface` (`traffic.spike`).
//!
//! CPU use comes from `/proc/stat`, memory use from `/proc/meminfo`
//! (MemTotal − MemAvailable). Each learns an exponentially weighted mean over
//! `warmup_samples` sweeps; after that, a share above `threshold` that is also
//! at least `margin` above the mean for 3 sweeps in a row is one finding per
//! episode. Anomalous samples do not teach the mean.

use std::collections::BTreeMap;
use std::time::Duration;

use bannin_proto::v1::{self, Severity};
use serde::{Deserialize, Serialize};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::ResourcesConfig;

const ALPHA: f64 = 0.1;
const SUSTAIN: u32 = 3;

/// CPU jiffies: (busy, total) from the `cpu` line of `/proc/stat`.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Share of memory in use, from `/proc/meminfo`.
pub fn parse_memory(meminfo: &str) -> Option<f64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| ((total - available) / total).clamp(0.0, 1.0))
}

/// What one metric has learned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Samples taken.
    pub samples: u32,
    /// Mean share (0–1).
    pub mean: f64,
    #[serde(skip)]
    streak: u32,
    #[serde(skip)]
    raised: bool,
}

/// The sensor.
pub struct Resources {
    root: HostRoot,
    config: ResourcesConfig,
    learned: BTreeMap<String, Metric>,
    last_cpu: Option<(u64, u64)>,
    sweeps: u32,
}

impl Resources {
    /// A sensor reading under `root`, starting from what it learned before.
    pub fn new(
        root: HostRoot,
        config: ResourcesConfig,
        learned: Option<BTreeMap<String, Metric>>,
    ) -> Self {
        Self {
            root,
            config,
            learned: learned.unwrap_or_default(),
            last_cpu: None,
            sweeps: 0,
        }
    }

    /// Judges one sample of `metric` (a share, 0–1).
    pub fn observe(&mut self, metric: &str, share: f64, out: &mut Vec<v1::Event>) {
        let c = &self.config;
        let m = self.learned.entry(metric.to_owned()).or_default();
        let warm = m.samples >= c.warmup_samples;
        let anomalous = warm && share > c.threshold && share > m.mean + c.margin;
        m.streak = if anomalous { m.streak + 1 } else { 0 };
        if !anomalous {
            m.raised = false;
            let a = if m.samples == 0 { 1.0 } else { ALPHA };
            m.mean += a * (share - m.mean);
            m.samples = m.samples.saturating_add(1);
        }
        if m.streak >= SUSTAIN && !m.raised {
            m.raised = true;
            out.push(event(
                "resource.anomaly",
                Severity::Medium,
                true,
                BTreeMap::from([
                    ("metric".to_owned(), metric.to_owned()),
                    ("percent".to_owned(), format!("{:.0}", share * 100.0)),
                    (
                        "baseline_percent".to_owned(),
                        format!("{:.0}", m.mean * 100.0),
                    ),
                ]),
                format!(
                    "{metric} use at {:.0}% against a usual {:.0}%",
                    share * 100.0,
                    m.mean * 100.0
                ),
            ));
        }
    }
}

impl Sensor for Resources {
    fn name(&self) -> &'static str {
        "resources"
    }

    fn relearn(&mut self) {
        self.learned.clear();
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let read = |p: &str| {
            let real = self.root.join(p);
            std::fs::read_to_string(&real)
                .map_err(|source| SensorError::Read { path: real, source })
        };
        let cpu = parse_cpu(&read("/proc/stat")?);
        let memory = parse_memory(&read("/proc/meminfo")?);
        if let (Some((busy, total)), Some((last_busy, last_total))) = (cpu, self.last_cpu)
            && total > last_total
        {
            let share = busy.saturating_sub(last_busy) as f64 / (total - last_total) as f64;
            self.observe("cpu", share.clamp(0.0, 1.0), &mut sweep.events);
        }
        self.last_cpu = cpu;
        if let Some(share) = memory {
            self.observe("memory", share, &mut sweep.events);
        }
        self.sweeps += 1;
        if self.sweeps % 30 == 1 {
            sweep.save_state(&self.learned);
        }
        Ok(Health::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor() -> Resources {
        Resources::new(
            HostRoot("/".into()),
            ResourcesConfig {
                common: crate::config::SensorCommon {
                    enabled: true,
                    interval: Duration::from_secs(1),
                    severity: Severity::Medium,
                },
                warmup_samples: 5,
                threshold: 0.9,
                margin: 0.3,
            },
            None,
        )
    }

    fn feed(s: &mut Resources, metric: &str, share: f64, n: usize) -> usize {
        let mut out = Vec::new();
        for _ in 0..n {
            s.observe(metric, share, &mut out);
        }
        out.len()
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu(stat), Some((150, 1000)));
        let mem = "MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_memory(mem), Some(0.75));
        assert_eq!(parse_memory("junk"), None);
    }

    #[test]
    fn a_miner_pegging_the_cpu_is_one_finding() {
        let mut s = sensor();
        assert_eq!(feed(&mut s, "cpu", 0.05, 10), 0);
        assert_eq!(feed(&mut s, "cpu", 0.99, 2), 0, "not yet sustained");
        assert_eq!(feed(&mut s, "cpu", 0.99, 1), 1);
        assert_eq!(
            feed(&mut s, "cpu", 0.99, 50),
            0,
            "one per episode, not learned"
        );
        assert!(s.learned["cpu"].mean < 0.1);
        // A host that is always busy is not anomalous when busy.
        let mut busy = sensor();
        assert_eq!(feed(&mut busy, "cpu", 0.95, 60), 0);
    }
}
