//! System configuration: reboots, services and other persistence, and the
//! logging that responders depend on.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `system.reboot` | the kernel's boot id changed since the last sweep | medium |
//! | `service.new` | a systemd unit or timer added or changed, a unit newly enabled, a cron job added or changed (`mechanism`, `change`) | medium (enabled: high) |
//! | `logging.changed` | rsyslog, journald, syslog-ng or auditd configuration added, changed or removed | high |
//! | `logging.stopped` | a logging daemon (rsyslogd, syslog-ng, systemd-journald, auditd) that was running is gone | high |
//!
//! The first sweep records the baseline quietly. Files are compared by
//! SHA-256 of their content, so a `touch` is not a change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::SensorCommon;
use crate::host::proc::sha256_reader;

/// Directories of systemd unit files.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/local/lib/systemd/system",
];
/// Where cron jobs live.
pub const CRON_PATHS: &[&str] = &[
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/var/spool/cron/crontabs",
    "/var/spool/cron",
];
/// Logging configuration files and directories.
pub const LOGGING_PATHS: &[&str] = &[
    "/etc/rsyslog.conf",
    "/etc/rsyslog.d",
    "/etc/syslog-ng/syslog-ng.conf",
    "/etc/syslog-ng/conf.d",
    "/etc/systemd/journald.conf",
    "/etc/systemd/journald.conf.d",
    "/etc/audit/auditd.conf",
    "/etc/audit/audit.rules",
    "/etc/audit/rules.d",
];
/// Logging daemons by their `comm`.
pub const LOGGING_DAEMONS: &[&str] = &["rsyslogd", "syslog-ng", "systemd-journal", "auditd"];

/// Largest file hashed (unit files and configs are small).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemState {
    /// The kernel's boot id.
    pub boot_id: String,
    /// Unit file path → SHA-256.
    pub units: BTreeMap<String, String>,
    /// Enabled units, as `TARGET.wants/UNIT`.
    pub enabled: BTreeSet<String>,
    /// Cron file path → SHA-256.
    pub cron: BTreeMap<String, String>,
    /// Logging config path → SHA-256.
    pub logging: BTreeMap<String, String>,
    /// Logging daemons running.
    pub daemons: BTreeSet<String>,
}

/// The sensor.
pub struct System {
    root: HostRoot,
    config: SensorCommon,
    state: Option<SystemState>,
}

impl System {
    /// A sensor reading under `root`, starting from what it saved last.
    pub fn new(root: HostRoot, config: SensorCommon, state: Option<SystemState>) -> Self {
        Self {
            root,
            config,
            state,
        }
    }

    fn hash(&self, host_path: &str) -> Option<String> {
        let real = self.root.join(host_path);
        let meta = std::fs::symlink_metadata(&real).ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return None;
        }
        std::fs::File::open(&real)
            .ok()
            .and_then(|f| sha256_reader(f).ok())
    }

    /// Regular files at `path` (a file, or a directory's direct entries) → SHA-256.
    fn files(&self, paths: &[&str], filter: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for p in paths {
            let real = self.root.join(p);
            match std::fs::symlink_metadata(&real) {
                Ok(m) if m.is_dir() => {
                    let Ok(entries) = std::fs::read_dir(&real) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let host = format!("{}/{name}", p.trim_end_matches('/'));
                        if filter(&name)
                            && let Some(h) = self.hash(&host)
                        {
                            out.insert(host, h);
                        }
                    }
                }
                Ok(_) => {
                    if let Some(h) = self.hash(p) {
                        out.insert((*p).to_owned(), h);
                    }
                }
                Err(_) => {}
            }
        }
        out
    }

    fn enabled_units(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let base = self.root.join("/etc/systemd/system");
        let Ok(dirs) = std::fs::read_dir(&base) else {
            return out;
        };
        for d in dirs.flatten() {
            let target = d.file_name().to_string_lossy().into_owned();
            if !(target.ends_with(".wants") || target.ends_with(".requires")) {
                continue;
            }
            if let Ok(links) = std::fs::read_dir(d.path()) {
                for l in links.flatten() {
                    out.insert(format!("{target}/{}", l.file_name().to_string_lossy()));
                }
            }
        }
        out
    }

    fn daemons(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for pid in crate::host::proc::pids(&self.root) {
            if let Ok(comm) = std::fs::read_to_string(self.root.join(format!("/proc/{pid}/comm"))) {
                let comm = comm.trim();
                if LOGGING_DAEMONS.contains(&comm) {
                    out.insert(comm.to_owned());
                }
            }
        }
        out
    }

    fn read_state(&self) -> Result<SystemState, SensorError> {
        let boot_path = self.root.join("/proc/sys/kernel/random/boot_id");
        let boot_id = std::fs::read_to_string(&boot_path)
            .map_err(|source| SensorError::Read {
                path: boot_path,
                source,
            })?
            .trim()
            .to_owned();
        let unit = |n: &str| {
            [".service", ".timer", ".socket", ".path"]
                .iter()
                .any(|s| n.ends_with(s))
        };
        Ok(SystemState {
            boot_id,
            units: self.files(UNIT_DIRS, unit),
            enabled: self.enabled_units(),
            cron: self.files(CRON_PATHS, |n| !n.starts_with('.') && n != "placeholder"),
            logging: self.files(LOGGING_PATHS, |n| !n.starts_with('.')),
            daemons: self.daemons(),
        })
    }
}

/// Added and changed keys of `new` against `old`, and removed ones.
fn diff<'a>(
    old: &'a BTreeMap<String, String>,
    new: &'a BTreeMap<String, String>,
) -> Vec<(&'a str, &'static str)> {
    let mut out = Vec::new();
    for (k, h) in new {
        match old.get(k) {
            None => out.push((k.as_str(), "added")),
            Some(o) if o != h => out.push((k.as_str(), "modified")),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push((k.as_str(), "removed"));
    }
    out
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Sensor for System {
    fn name(&self) -> &'static str {
        "system"
    }

    fn relearn(&mut self) {
        self.state = None;
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let new = self.read_state()?;
        let out = &mut sweep.events;
        if let Some(old) = &self.state {
            if old.boot_id != new.boot_id {
                let btime = match crate::host::proc::boot_time(&self.root) {
                    0 => String::new(),
                    t => t.to_string(),
                };
                out.push(event(
                    "system.reboot",
                    Severity::Medium,
                    true,
                    attrs(&[
                        ("previous_boot_id", &old.boot_id),
                        ("boot_id", &new.boot_id),
                        ("boot_time_unix", &btime),
                    ]),
                    "the host rebooted (new kernel boot id)".into(),
                ));
            }
            for (path, change) in diff(&old.units, &new.units) {
                if change == "removed" {
                    continue;
                }
                out.push(event(
                    "service.new",
                    Severity::Medium,
                    true,
                    attrs(&[
                        ("mechanism", "systemd"),
                        ("change", change),
                        ("path", path),
                        ("unit", unit_name(path)),
                        ("sha256", &new.units[path]),
                    ]),
                    format!("systemd unit {change}: {path}"),
                ));
            }
            for link in new.enabled.difference(&old.enabled) {
                let unit = link.rsplit('/').next().unwrap_or(link);
                out.push(event(
                    "service.new",
                    Severity::High,
                    true,
                    attrs(&[
                        ("mechanism", "systemd"),
                        ("change", "enabled"),
                        ("unit", unit),
                        ("link", link),
                    ]),
                    format!("unit enabled to start at boot: {link}"),
                ));
            }
            for (path, change) in diff(&old.cron, &new.cron) {
                if change == "removed" {
                    continue;
                }
                let mut a = attrs(&[("mechanism", "cron"), ("change", change), ("path", path)]);
                a.insert("sha256".into(), new.cron[path].clone());
                out.push(event(
                    "service.new",
                    Severity::Medium,
                    true,
                    a,
                    format!("cron job {change}: {path}"),
                ));
            }
            for (path, change) in diff(&old.logging, &new.logging) {
                out.push(event(
                    "logging.changed",
                    Severity::High,
                    true,
                    attrs(&[("change", change), ("path", path)]),
                    format!("logging configuration {change}: {path}"),
                ));
            }
            for daemon in old.daemons.difference(&new.daemons) {
                out.push(event(
                    "logging.stopped",
                    Severity::High,
                    true,
                    attrs(&[("daemon", daemon)]),
                    format!("logging daemon {daemon} is no longer running"),
                ));
            }
        }
        if self.state.as_ref() != Some(&new) {
            sweep.save_state(&new);
            self.state = Some(new);
        }
        Ok(Health::Ok)
    }
}

fn unit_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(p, text).expect("write");
    }

    fn fixture() -> (tempfile::TempDir, System) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "/proc/sys/kernel/random/boot_id", "aaaa\n");
        write(r, "/proc/stat", "cpu 1 2 3\nbtime 1700000000\n");
        write(r, "/proc/77/comm", "rsyslogd\n");
        write(r, "/proc/78/comm", "bash\n");
        write(
            r,
            "/lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/usr/sbin/sshd\n",
        );
        write(
            r,
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
            "x",
        );
        write(
            r,
            "/etc/crontab",
            "17 * * * * root run-parts /etc/cron.hourly\n",
        );
        write(r, "/etc/rsyslog.conf", "*.* /var/log/syslog\n");
        let config = SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::Medium,
        };
        let sensor = System::new(HostRoot(r.into()), config, None);
        (dir, sensor)
    }

    fn kinds(s: &Sweep) -> Vec<(String, String)> {
        let mut k: Vec<(String, String)> = s
            .events
            .iter()
            .map(|e| {
                (
                    e.kind.clone(),
                    e.attributes
                        .get("change")
                        .or(e.attributes.get("daemon"))
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        k.sort();
        k
    }

    #[test]
    fn baseline_is_quiet_and_each_change_is_reported() {
        let (dir, mut sensor) = fixture();
        let r = dir.path();
        let mut first = Sweep::default();
        sensor.sweep(&mut first).expect("sweep");
        assert!(first.events.is_empty());
        let mut touched = Sweep::default();
        // Same content: not a change.
        write(
            r,
            "/etc/crontab",
            "17 * * * * root run-parts /etc/cron.hourly\n",
        );
        sensor.sweep(&mut touched).expect("sweep");
        assert!(touched.events.is_empty());

        write(r, "/proc/sys/kernel/random/boot_id", "bbbb\n");
        write(
            r,
            "/etc/systemd/system/backdoor.service",
            "[Service]\nExecStart=/tmp/x\n",
        );
        write(
            r,
            "/etc/systemd/system/multi-user.target.wants/backdoor.service",
            "x",
        );
        write(
            r,
            "/lib/systemd/system/ssh.service",
            "[Service]\nExecStart=/tmp/sshd\n",
        );
        write(r, "/etc/cron.d/persist", "* * * * * root /tmp/x\n");
        write(r, "/etc/rsyslog.conf", "# everything off\n");
        std::fs::remove_file(r.join("proc/77/comm")).expect("rm");
        let mut changed = Sweep::default();
        sensor.sweep(&mut changed).expect("sweep");
        let k = kinds(&changed);
        let expect: Vec<(String, String)> = [
            ("logging.changed", "modified"),
            ("logging.stopped", "rsyslogd"),
            ("service.new", "added"),
            ("service.new", "added"),
            ("service.new", "enabled"),
            ("service.new", "modified"),
            ("system.reboot", ""),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        assert_eq!(k, expect);
        let reboot = changed
            .events
            .iter()
            .find(|e| e.kind == "system.reboot")
            .expect("reboot");
        assert_eq!(reboot.attributes["previous_boot_id"], "aaaa");
        assert_eq!(reboot.attributes["boot_time_unix"], "1700000000");

        // Restarted from the saved state: nothing new.
        let saved: SystemState =
            serde_json::from_slice(&changed.state.expect("state")).expect("json");
        let config = sensor.config.clone();
        let mut restarted = System::new(HostRoot(r.into()), config, Some(saved));
        let mut again = Sweep::default();
        restarted.sweep(&mut again).expect("sweep");
        assert!(again.events.is_empty(), "{:?}", kinds(&again));
    }
}
