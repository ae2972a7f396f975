//! Network interfaces: promiscuous mode, and traffic against a learned baseline.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `net.promiscuous` | an interface is in promiscuous mode (bridge ports aside, where the kernel sets it) | high |
//! | `traffic.spike` | an interface's receive or transmit rate exceeds `spike_factor` × its learned mean (and `min_bytes_per_sec`) for 3 sweeps in a row | medium |
//! | `net.asymmetric` | receive/transmit (or the reverse) exceeds `asymmetry_ratio`, far past its learned ratio, for 3 sweeps in a row | medium |
//!
//! Rates come from the byte counters of `/proc/net/dev` between sweeps. Each
//! interface learns for `warmup_samples` sweeps before it is judged; the mean
//! is an exponentially weighted average, updated only by samples that are not
//! anomalous, so a long exfiltration does not teach the baseline that it is
//! normal. A finding is raised once per episode: again only after the rate has
//! been normal once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::NetInterfaceConfig;

/// `IFF_PROMISC` in `/sys/class/net/*/flags`.
pub const IFF_PROMISC: u32 = 0x100;
/// Weight of a new sample in the mean.
const ALPHA: f64 = 0.1;
/// Consecutive anomalous sweeps before a finding.
const SUSTAIN: u32 = 3;
/// Sweeps between saves of the learned baseline.
const SAVE_EVERY: u32 = 30;

/// Byte counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Received bytes.
    pub rx: u64,
    /// Transmitted bytes.
    pub tx: u64,
}

/// Parses `/proc/net/dev` into interface → counters.
pub fn parse_net_dev(text: &str) -> BTreeMap<String, Counters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            Some((
                name.trim().to_owned(),
                Counters {
                    rx: *f.first()?,
                    tx: *f.get(8)?,
                },
            ))
        })
        .collect()
}

/// What one interface has learned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    /// Samples taken.
    pub samples: u32,
    /// Mean receive rate, bytes/s.
    pub rx_mean: f64,
    /// Mean transmit rate, bytes/s.
    pub tx_mean: f64,
    /// Mean of ln((rx+1)/(tx+1)).
    pub log_ratio_mean: f64,
    /// Consecutive anomalous sweeps: spike, asymmetry.
    #[serde(skip)]
    pub streak: (u32, u32),
    /// Whether a finding was raised for the current episode: spike, asymmetry.
    #[serde(skip)]
    pub raised: (bool, bool),
}

/// The sensor.
pub struct NetInterface {
    root: HostRoot,
    config: NetInterfaceConfig,
    learned: BTreeMap<String, Learned>,
    last: Option<(Instant, BTreeMap<String, Counters>)>,
    promiscuous: Option<BTreeSet<String>>,
    sweeps: u32,
}

impl NetInterface {
    /// A sensor reading under `root`, starting from the baseline it saved last.
    pub fn new(
        root: HostRoot,
        config: NetInterfaceConfig,
        learned: Option<BTreeMap<String, Learned>>,
    ) -> Self {
        Self {
            root,
            config,
            learned: learned.unwrap_or_default(),
            last: None,
            promiscuous: None,
            sweeps: 0,
        }
    }

    fn promiscuous_now(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("/sys/class/net")) else {
            return out;
        };
        for e in entries.flatten() {
            let flags = std::fs::read_to_string(e.path().join("flags"))
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
                .unwrap_or(0);
            if flags & IFF_PROMISC != 0 && !e.path().join("brport").exists() {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    /// Judges one interval of `secs` seconds for every interface.
    pub fn observe(
        &mut self,
        deltas: &BTreeMap<String, Counters>,
        secs: f64,
        out: &mut Vec<bannin_proto::v1::Event>,
    ) {
        if secs <= 0.0 {
            return;
        }
        let c = &self.config;
        for (name, d) in deltas {
            let rx = d.rx as f64 / secs;
            let tx = d.tx as f64 / secs;
            let log_ratio = ((rx + 1.0) / (tx + 1.0)).ln();
            let l = self.learned.entry(name.clone()).or_default();
            let warm = l.samples >= c.warmup_samples;
            let floor = c.min_bytes_per_sec as f64;
            let spike_dir = if rx > floor && rx > c.spike_factor * l.rx_mean.max(1.0) {
                Some(("receive", rx, l.rx_mean))
            } else if tx > floor && tx > c.spike_factor * l.tx_mean.max(1.0) {
                Some(("transmit", tx, l.tx_mean))
            } else {
                None
            };
            let limit = c.asymmetry_ratio.ln();
            let asymmetric = rx + tx > floor
                && log_ratio.abs() > limit
                && (log_ratio - l.log_ratio_mean).abs() > limit;
            let spike = warm && spike_dir.is_some();
            let asym = warm && asymmetric;
            l.streak.0 = if spike { l.streak.0 + 1 } else { 0 };
            l.streak.1 = if asym { l.streak.1 + 1 } else { 0 };
            if !spike {
                l.raised.0 = false;
            }
            if !asym {
                l.raised.1 = false;
            }
            if let Some((direction, rate, mean)) = spike_dir
                && l.streak.0 >= SUSTAIN
                && !l.raised.0
            {
                l.raised.0 = true;
                out.push(event(
                    "traffic.spike",
                    Severity::Medium,
                    true,
                    BTreeMap::from([
                        ("interface".to_owned(), name.clone()),
                        ("direction".to_owned(), direction.to_owned()),
                        ("bytes_per_sec".to_owned(), format!("{rate:.0}")),
                        ("baseline_bytes_per_sec".to_owned(), format!("{mean:.0}")),
                    ]),
                    format!(
                        "{name}: {direction} rate {} is {:.0}× its baseline {}",
                        human_rate(rate),
                        rate / mean.max(1.0),
                        human_rate(mean)
                    ),
                ));
            }
            if l.streak.1 >= SUSTAIN && !l.raised.1 {
                l.raised.1 = true;
                let (much, little) = if log_ratio > 0.0 {
                    ("in", "out")
                } else {
                    ("out", "in")
                };
                out.push(event(
                    "net.asymmetric",
                    Severity::Medium,
                    true,
                    BTreeMap::from([
                        ("interface".to_owned(), name.clone()),
                        ("rx_bytes_per_sec".to_owned(), format!("{rx:.0}")),
                        ("tx_bytes_per_sec".to_owned(), format!("{tx:.0}")),
                        ("ratio".to_owned(), format!("{:.1}", log_ratio.abs().exp())),
                        (
                            "baseline_ratio".to_owned(),
                            format!("{:.1}", l.log_ratio_mean.abs().exp()),
                        ),
                    ]),
                    format!(
                        "{name}: much {much} ({}), little {little} ({})",
                        human_rate(rx.max(tx)),
                        human_rate(rx.min(tx))
                    ),
                ));
            }
            // Learn from normal samples only (all of them while warming up).
            if !warm || (!spike && !asym) {
                let a = if l.samples == 0 { 1.0 } else { ALPHA };
                l.rx_mean += a * (rx - l.rx_mean);
                l.tx_mean += a * (tx - l.tx_mean);
                l.log_ratio_mean += a * (log_ratio - l.log_ratio_mean);
                l.samples = l.samples.saturating_add(1);
            }
        }
    }
}

fn human_rate(bytes_per_sec: f64) -> String {
    match bytes_per_sec {
        r if r >= 1024.0 * 1024.0 => format!("{:.1} MiB/s", r / 1024.0 / 1024.0),
        r if r >= 1024.0 => format!("{:.1} KiB/s", r / 1024.0),
        r => format!("{r:.0} B/s"),
    }
}

impl Sensor for NetInterface {
    fn name(&self) -> &'static str {
        "net_interface"
    }

    fn relearn(&mut self) {
        self.learned.clear();
        self.last = None;
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let promiscuous = self.promiscuous_now();
        let before = self.promiscuous.take().unwrap_or_default();
        for name in promiscuous.difference(&before) {
            sweep.events.push(event(
                "net.promiscuous",
                Severity::High,
                true,
                BTreeMap::from([("interface".to_owned(), name.clone())]),
                format!(
                    "interface {name} is in promiscuous mode: something may be capturing traffic"
                ),
            ));
        }
        self.promiscuous = Some(promiscuous);

        let path = self.root.join("/proc/net/dev");
        let text =
            std::fs::read_to_string(&path).map_err(|source| SensorError::Read { path, source })?;
        let now = Instant::now();
        let counters = parse_net_dev(&text);
        if let Some((then, old)) = &self.last {
            let secs = now.duration_since(*then).as_secs_f64();
            let deltas: BTreeMap<String, Counters> = counters
                .iter()
                .filter(|(n, _)| n.as_str() != "lo")
                .filter_map(|(n, c)| {
                    let o = old.get(n)?;
                    // A counter that went down was reset (interface re-created).
                    Some((
                        n.clone(),
                        Counters {
                            rx: c.rx.checked_sub(o.rx)?,
                            tx: c.tx.checked_sub(o.tx)?,
                        },
                    ))
                })
                .collect();
            self.observe(&deltas, secs, &mut sweep.events);
        }
        self.last = Some((now, counters));
        self.sweeps += 1;
        if self.sweeps % SAVE_EVERY == 1 {
            sweep.save_state(&self.learned);
        }
        Ok(Health::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetInterfaceConfig {
        NetInterfaceConfig {
            common: crate::config::SensorCommon {
                enabled: true,
                interval: Duration::from_secs(1),
                severity: Severity::Medium,
            },
            warmup_samples: 5,
            spike_factor: 10.0,
            min_bytes_per_sec: 1000,
            asymmetry_ratio: 20.0,
        }
    }

    fn feed(s: &mut NetInterface, rx: u64, tx: u64, times: usize) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..times {
            let d = BTreeMap::from([("eth0".to_owned(), Counters { rx, tx })]);
            s.observe(&d, 1.0, &mut out);
        }
        out.into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn net_dev_parses() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n  eth0: 100 2 0 0 0 0 0 0 300 4 0 0 0 0 0 0\n    lo: 5 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n";
        let c = parse_net_dev(text);
        assert_eq!(c["eth0"], Counters { rx: 100, tx: 300 });
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_sustained_spike_is_one_finding_and_does_not_become_the_baseline() {
        let mut s = NetInterface::new(HostRoot("/".into()), config(), None);
        assert!(
            feed(&mut s, 10_000, 10_000, 10).is_empty(),
            "normal traffic"
        );
        // Two anomalous sweeps are not enough; the third is.
        assert!(feed(&mut s, 10_000, 150_000, 2).is_empty());
        assert_eq!(feed(&mut s, 10_000, 150_000, 1), ["traffic.spike"]);
        assert!(
            feed(&mut s, 10_000, 150_000, 20).is_empty(),
            "one per episode"
        );
        assert!(
            s.learned["eth0"].tx_mean < 20_000.0,
            "not learned as normal"
        );
        // Back to normal, then a new episode.
        assert!(feed(&mut s, 10_000, 10_000, 1).is_empty());
        assert_eq!(feed(&mut s, 10_000, 150_000, 3), ["traffic.spike"]);
    }

    #[test]
    fn much_in_little_out_is_asymmetric() {
        let mut s = NetInterface::new(HostRoot("/".into()), config(), None);
        assert!(feed(&mut s, 20_000, 20_000, 10).is_empty());
        let kinds = feed(&mut s, 100_000, 100, 3);
        assert!(kinds.contains(&"net.asymmetric".to_owned()), "{kinds:?}");
        // Within the warm-up nothing is judged.
        let mut fresh = NetInterface::new(HostRoot("/".into()), config(), None);
        assert!(feed(&mut fresh, 100_000, 100, 4).is_empty());
    }

    #[test]
    fn promiscuous_interfaces_are_reported_once_and_bridge_ports_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        for (name, flags) in [("eth0", "0x1003"), ("veth1", "0x1103")] {
            std::fs::create_dir_all(r.join(format!("sys/class/net/{name}"))).expect("dir");
            std::fs::write(r.join(format!("sys/class/net/{name}/flags")), flags).expect("flags");
        }
        std::fs::create_dir_all(r.join("sys/class/net/veth1/brport")).expect("brport");
        std::fs::create_dir_all(r.join("proc/net")).expect("proc");
        std::fs::write(r.join("proc/net/dev"), "h\nh\n").expect("dev");
        let mut s = NetInterface::new(HostRoot(r.into()), config(), None);
        let mut first = Sweep::default();
        s.sweep(&mut first).expect("sweep");
        assert!(first.events.is_empty());
        std::fs::write(r.join("sys/class/net/eth0/flags"), "0x1103").expect("flags");
        let mut second = Sweep::default();
        s.sweep(&mut second).expect("sweep");
        assert_eq!(second.events.len(), 1);
        assert_eq!(second.events[0].kind, "net.promiscuous");
        assert_eq!(second.events[0].attributes["interface"], "eth0");
        let mut third = Sweep::default();
        s.sweep(&mut third).expect("sweep");
        assert!(third.events.is_empty());
    }
}
