//! Hardware inventory against the last sweep, from sysfs and procfs.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `hardware.new_usb` | a USB device appears | high |
//! | `hardware.new_block` | a block device appears (loop, ram and zram devices aside) | medium |
//! | `hardware.new_nic` | a physical network interface appears (virtual ones — veth, bridges, tunnels — aside) | high |
//! | `hardware.removed` | any of those disappears, CPUs go offline or memory shrinks by more than 5 % | medium |
//!
//! The first sweep records the baseline quietly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::SensorCommon;

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareState {
    /// USB devices: sysfs name → description.
    pub usb: BTreeMap<String, BTreeMap<String, String>>,
    /// Block devices → description.
    pub block: BTreeMap<String, BTreeMap<String, String>>,
    /// Physical NICs → description.
    pub nics: BTreeMap<String, BTreeMap<String, String>>,
    /// Online CPUs.
    pub cpus: u32,
    /// MemTotal in kB.
    pub memory_kb: u64,
}

/// Counts the CPUs of a sysfs range list such as `0-3,6,8-9`.
pub fn count_cpus(list: &str) -> u32 {
    list.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(p.parse::<u32>().is_ok()),
        })
        .sum()
}

/// The sensor.
pub struct Hardware {
    root: HostRoot,
    config: SensorCommon,
    state: Option<HardwareState>,
}

impl Hardware {
    /// A sensor reading under `root`, starting from what it saved last.
    pub fn new(root: HostRoot, config: SensorCommon, state: Option<HardwareState>) -> Self {
        Self {
            root,
            config,
            state,
        }
    }

    fn read_attrs(&self, dir: &std::path::Path, names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .filter_map(|n| {
                let v = std::fs::read_to_string(dir.join(n)).ok()?;
                let v = v.trim();
                (!v.is_empty()).then(|| ((*n).replace('/', "_"), v.to_owned()))
            })
            .collect()
    }

    fn read_state(&self) -> HardwareState {
        let mut state = HardwareState::default();
        if let Ok(entries) = std::fs::read_dir(self.root.join("/sys/bus/usb/devices")) {
            for e in entries.flatten() {
                let dir = e.path();
                // Devices have ids; their interfaces (1-1:1.0) do not.
                if !dir.join("idVendor").exists() {
                    continue;
                }
                let a = self.read_attrs(
                    &dir,
                    &["idVendor", "idProduct", "manufacturer", "product", "serial"],
                );
                state
                    .usb
                    .insert(e.file_name().to_string_lossy().into_owned(), a);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.root.join("/sys/block")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
                    continue;
                }
                let a = self.read_attrs(
                    &e.path(),
                    &["size", "removable", "device/model", "device/vendor"],
                );
                state.block.insert(name, a);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.root.join("/sys/class/net")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // Physical interfaces have a backing device; virtual ones do not.
                if name == "lo" || !e.path().join("device").exists() {
                    continue;
                }
                let a = self.read_attrs(&e.path(), &["address", "device/vendor", "device/device"]);
                state.nics.insert(name, a);
            }
        }
        state.cpus = std::fs::read_to_string(self.root.join("/sys/devices/system/cpu/online"))
            .map(|s| count_cpus(&s))
            .unwrap_or(0);
        state.memory_kb = std::fs::read_to_string(self.root.join("/proc/meminfo"))
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        state
    }
}

fn describe(a: &BTreeMap<String, String>) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Sensor for Hardware {
    fn name(&self) -> &'static str {
        "hardware"
    }

    fn relearn(&mut self) {
        self.state = None;
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let new = self.read_state();
        if let Some(old) = &self.state {
            let out = &mut sweep.events;
            for (class, kind, severity, old_map, new_map) in [
                (
                    "usb",
                    "hardware.new_usb",
                    Severity::High,
                    &old.usb,
                    &new.usb,
                ),
                (
                    "block",
                    "hardware.new_block",
                    Severity::Medium,
                    &old.block,
                    &new.block,
                ),
                (
                    "nic",
                    "hardware.new_nic",
                    Severity::High,
                    &old.nics,
                    &new.nics,
                ),
            ] {
                for (name, a) in new_map.iter().filter(|(n, _)| !old_map.contains_key(*n)) {
                    let mut attrs = a.clone();
                    attrs.insert("device".into(), name.clone());
                    attrs.insert("class".into(), class.into());
                    out.push(event(
                        kind,
                        severity,
                        true,
                        attrs,
                        format!("new {class} device {name}: {}", describe(a)),
                    ));
                }
                for (name, a) in old_map.iter().filter(|(n, _)| !new_map.contains_key(*n)) {
                    let mut attrs = a.clone();
                    attrs.insert("device".into(), name.clone());
                    attrs.insert("class".into(), class.into());
                    out.push(event(
                        "hardware.removed",
                        Severity::Medium,
                        true,
                        attrs,
                        format!("{class} device {name} removed: {}", describe(a)),
                    ));
                }
            }
            if new.cpus < old.cpus {
                out.push(event(
                    "hardware.removed",
                    Severity::Medium,
                    true,
                    BTreeMap::from([
                        ("class".to_owned(), "cpu".to_owned()),
                        ("before".to_owned(), old.cpus.to_string()),
                        ("after".to_owned(), new.cpus.to_string()),
                    ]),
                    format!("online CPUs went from {} to {}", old.cpus, new.cpus),
                ));
            }
            if new.memory_kb.saturating_mul(100) < old.memory_kb.saturating_mul(95) {
                out.push(event(
                    "hardware.removed",
                    Severity::Medium,
                    true,
                    BTreeMap::from([
                        ("class".to_owned(), "memory".to_owned()),
                        ("before_kb".to_owned(), old.memory_kb.to_string()),
                        ("after_kb".to_owned(), new.memory_kb.to_string()),
                    ]),
                    format!(
                        "memory shrank from {} to {} MiB",
                        old.memory_kb / 1024,
                        new.memory_kb / 1024
                    ),
                ));
            }
        }
        let changed = self.state.as_ref() != Some(&new);
        if changed {
            sweep.save_state(&new);
            self.state = Some(new);
        }
        let readable = ["/sys/bus/usb/devices", "/sys/block", "/sys/class/net"]
            .iter()
            .filter(|p| !self.root.join(p).exists())
            .copied()
            .collect::<BTreeSet<_>>();
        Ok(if readable.is_empty() {
            Health::Ok
        } else {
            Health::Degraded(format!(
                "not present here: {}",
                readable.into_iter().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpus("0-3\n"), 4);
        assert_eq!(count_cpus("0-3,6,8-9"), 7);
        assert_eq!(count_cpus(""), 0);
        assert_eq!(count_cpus("junk"), 0);
    }

    #[test]
    fn devices_appearing_and_disappearing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "/sys/bus/usb/devices/usb1/idVendor", "1d6b");
        write(r, "/sys/bus/usb/devices/1-0:1.0/bInterfaceClass", "09");
        write(r, "/sys/block/sda/size", "1000");
        write(r, "/sys/block/loop0/size", "10");
        write(r, "/sys/class/net/eth0/device/vendor", "0x8086");
        write(r, "/sys/class/net/eth0/address", "52:54:00:00:00:01");
        write(r, "/sys/class/net/veth9/address", "aa:aa:aa:aa:aa:aa");
        write(r, "/sys/devices/system/cpu/online", "0-3");
        write(r, "/proc/meminfo", "MemTotal:       16000000 kB\n");
        let config = SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::Medium,
        };
        let mut sensor = Hardware::new(HostRoot(r.into()), config, None);
        let mut first = Sweep::default();
        assert_eq!(sensor.sweep(&mut first).expect("sweep"), Health::Ok);
        assert!(first.events.is_empty());

        write(r, "/sys/bus/usb/devices/1-2/idVendor", "0781");
        write(r, "/sys/bus/usb/devices/1-2/product", "Cruzer Blade");
        write(r, "/sys/bus/usb/devices/1-2/serial", "4C53");
        write(r, "/sys/block/sdb/removable", "1");
        write(r, "/sys/class/net/eth1/device/vendor", "0x0bda");
        write(r, "/sys/class/net/veth10/address", "bb:bb:bb:bb:bb:bb");
        std::fs::remove_dir_all(r.join("sys/block/sda")).expect("rm");
        write(r, "/sys/devices/system/cpu/online", "0-1");
        write(r, "/proc/meminfo", "MemTotal:        8000000 kB\n");
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        let mut found: Vec<(String, String)> = s
            .events
            .iter()
            .map(|e| {
                (
                    e.kind.clone(),
                    e.attributes
                        .get("device")
                        .or(e.attributes.get("class"))
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("hardware.new_block".to_owned(), "sdb".to_owned()),
                ("hardware.new_nic".to_owned(), "eth1".to_owned()),
                ("hardware.new_usb".to_owned(), "1-2".to_owned()),
                ("hardware.removed".to_owned(), "cpu".to_owned()),
                ("hardware.removed".to_owned(), "memory".to_owned()),
                ("hardware.removed".to_owned(), "sda".to_owned()),
            ]
        );
        let usb = s
            .events
            .iter()
            .find(|e| e.kind == "hardware.new_usb")
            .expect("usb");
        assert_eq!(usb.attributes["product"], "Cruzer Blade");
        let mut again = Sweep::default();
        sensor.sweep(&mut again).expect("sweep");
        assert!(again.events.is_empty());
    }
}
