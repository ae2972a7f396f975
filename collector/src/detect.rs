//! Detection: which events of a batch become findings, and with what severity.
//!
//! The agent marks the events it considers indicators; the collector decides the
//! final severity (per-kind overrides from its config) and folds identical
//! findings. Cross-host correlation builds on what this produces.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use bannin_proto::identity::HostId;

use crate::model::{Event, NewFinding, Severity};

/// Turns events into finding candidates.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// Severity per finding kind, overriding what the agent sent.
    pub severity_overrides: BTreeMap<String, Severity>,
}

impl Detector {
    /// The findings one event yields (none for plain telemetry).
    pub fn detect(&self, host: &HostId, event: &Event) -> Option<NewFinding> {
        if !event.indicator {
            return None;
        }
        let severity = self
            .severity_overrides
            .get(&event.kind)
            .copied()
            .unwrap_or(event.severity);
        Some(NewFinding {
            host_id: host.clone(),
            kind: event.kind.clone(),
            severity,
            observed_unix_ms: event.observed_unix_ms,
            attributes: event.attributes.clone(),
            summary: event.summary.clone(),
        })
    }
}

/// Why each kind of finding is raised, and the MITRE ATT&CK technique it
/// evidences where one applies: (kind, reason, technique). A finding that does not
/// say why itself (`reason`, `attack.technique` attributes from the sensor that
/// knows better) gets these, so every finding in the queue says why.
const EXPLANATIONS: &[(&str, &str, &str)] = &[
    (
        "process.unknown_binary",
        "an executable not installed by the package manager and not in this host's learned baseline",
        "",
    ),
    (
        "process.ioc_match",
        "the executable's SHA-256 is in the IOC hash list",
        "",
    ),
    (
        "process.suspicious_exec",
        "a program running from a world-writable directory or a deleted file",
        "T1036",
    ),
    (
        "file.package_mismatch",
        "a packaged file's content no longer matches its package",
        "T1554",
    ),
    (
        "file.executable_dropped",
        "an executable written to a world-writable, volatile directory",
        "T1105",
    ),
    (
        "file.modified",
        "a critical file changed, appeared or disappeared since the baseline",
        "T1565.001",
    ),
    (
        "file.permissions",
        "a critical file's mode, owner or group changed",
        "T1222.002",
    ),
    (
        "file.timestamps",
        "a critical file's modification time changed without its content",
        "T1070.006",
    ),
    (
        "file.odd_name",
        "a name made to hide or to deceive",
        "T1564.001",
    ),
    (
        "file.archive",
        "an archive appeared in a watched directory (found by its first bytes)",
        "T1560.001",
    ),
    (
        "file.access",
        "a critical file was read by a program not allowed to",
        "T1005",
    ),
    (
        "account.new_user",
        "an account that was not there at the last look",
        "T1136.001",
    ),
    ("account.uid0", "a second account with uid 0", "T1136.001"),
    (
        "account.new_group",
        "a group that was not there at the last look",
        "T1136.001",
    ),
    (
        "account.group_member",
        "an account joined a privileged group",
        "T1098",
    ),
    (
        "process.service_shell",
        "an interactive shell started by a process that listens on a TCP port: a web shell's command line",
        "T1505.003",
    ),
    (
        "account.user_changed",
        "an account's uid, primary group, home or login shell changed",
        "T1098",
    ),
    (
        "account.ssh_key_added",
        "a key that logs into an account over SSH was added, or its options changed",
        "T1098.004",
    ),
    (
        "account.ssh_key_removed",
        "a key that logged into an account over SSH was removed",
        "T1098.004",
    ),
    (
        "account.sudo",
        "a sudo use that was refused or by an unexpected user",
        "T1548.003",
    ),
    ("account.lockouts", "repeated failed logins", "T1110"),
    ("account.login_failed", "repeated failed logins", "T1110"),
    (
        "account.multi_source",
        "one account logged in from several places at once",
        "T1078",
    ),
    (
        "account.dormant_login",
        "an account unused for a long time logged in",
        "T1078",
    ),
    (
        "account.password_changed",
        "an account's password changed",
        "T1098",
    ),
    (
        "net.new_listener",
        "a port began listening that was not in the baseline",
        "T1571",
    ),
    (
        "net.unapproved_remote_access",
        "a remote-admin session from a peer not in the allow list",
        "T1021",
    ),
    (
        "net.promiscuous",
        "a network interface entered promiscuous mode",
        "T1040",
    ),
    (
        "net.connection_flood",
        "many connections to or from one peer",
        "T1498",
    ),
    (
        "net.asymmetric",
        "traffic far more one-way than this host's baseline",
        "T1048",
    ),
    (
        "traffic.spike",
        "traffic far above this host's baseline",
        "",
    ),
    (
        "service.new",
        "a systemd unit that was not there at the last look",
        "T1543.002",
    ),
    (
        "system.reboot",
        "the host rebooted (its boot id changed)",
        "T1529",
    ),
    (
        "logging.changed",
        "the logging or audit configuration changed",
        "T1562.006",
    ),
    (
        "logging.stopped",
        "a logging or audit daemon stopped",
        "T1562.001",
    ),
    ("log.pattern", "a log line matched a pattern rule", ""),
    ("av.detection", "the antivirus reported a detection", ""),
    ("ids.alert", "the network IDS raised an alert", ""),
    (
        "hardware.new_usb",
        "a USB device that was not there before",
        "T1200",
    ),
    (
        "hardware.new_block",
        "a block device that was not there before",
        "T1200",
    ),
    (
        "hardware.new_nic",
        "a network interface that was not there before",
        "T1200",
    ),
    ("hardware.removed", "hardware in the inventory is gone", ""),
    (
        "resource.anomaly",
        "CPU, memory or bandwidth far from this host's baseline",
        "T1496",
    ),
    ("host.silent", "no heartbeat for several intervals", ""),
    (
        "agent.data_loss",
        "the agent's spool was full: events dropped before the collector acknowledged them",
        "",
    ),
    (
        "agent.events_lost",
        "the kernel reported events the agent could not record (a full ring buffer or queue): the record has a gap, counted",
        "",
    ),
    ("host.clone", "one host identity live on two machines", ""),
    ("monitor.alert", "an alert from the monitoring system", ""),
    ("report.external", "reported by a third party", ""),
    (
        "report.threat",
        "a threat report names this host or its kind",
        "",
    ),
    ("report.user", "reported by a user", ""),
    (
        "correlation.spread",
        "the same indicator on several hosts within the window",
        "",
    ),
    (
        "correlation.account_hosts",
        "one account on several hosts within the window",
        "T1078",
    ),
    (
        "correlation.password_spray",
        "failed logins for one account or from one source across hosts",
        "T1110.003",
    ),
    (
        "correlation.lateral_movement",
        "a remote-admin session between fleet hosts followed by a change on the target",
        "T1021",
    ),
    (
        "correlation.fan_in",
        "many fleet hosts reaching one outside address, or one host reached by many",
        "",
    ),
    (
        "correlation.mass_silence",
        "many hosts went silent together",
        "",
    ),
];

/// Adds `reason` and `attack.technique` where the finding does not carry them.
pub fn explain(finding: &mut NewFinding) {
    let Some((_, reason, technique)) = EXPLANATIONS.iter().find(|(k, _, _)| *k == finding.kind)
    else {
        return;
    };
    finding
        .attributes
        .entry("reason".into())
        .or_insert_with(|| (*reason).to_owned());
    if !technique.is_empty() {
        finding
            .attributes
            .entry("attack.technique".into())
            .or_insert_with(|| (*technique).to_owned());
    }
}

/// Fingerprint of a finding for folding: host, kind and attributes.
pub fn fingerprint(finding: &NewFinding) -> u64 {
    fingerprint_parts(finding.host_id.as_str(), &finding.kind, &finding.attributes)
}

/// Attributes of a Sigma match that differ between two runs of one command
/// (process ids, an ephemeral source port), or between two records of one
/// thing (a connection seen open, `net.connection`, and when it closed,
/// `net.flow`): not part of what makes two matches the same finding.
const SIGMA_VOLATILE: [&str; 4] = [
    "event.ProcessId",
    "event.ParentProcessId",
    "event.SourcePort",
    "event.kind",
];

/// Fingerprint from its parts (also used to rebuild the fold index from stored findings).
pub fn fingerprint_parts(host: &str, kind: &str, attributes: &BTreeMap<String, String>) -> u64 {
    let mut h = DefaultHasher::new();
    host.hash(&mut h);
    kind.hash(&mut h);
    if kind == "sigma.match" {
        for (k, v) in attributes {
            if !SIGMA_VOLATILE.contains(&k.as_str()) {
                (k, v).hash(&mut h);
            }
        }
    } else {
        attributes.hash(&mut h);
    }
    h.finish()
}

/// Which recent finding an identical new one folds into.
///
/// Bounded: entries older than the window are dropped on every [`FoldIndex::prune`],
/// and past `capacity` the oldest go first (counted in `shed`).
#[derive(Debug)]
pub struct FoldIndex {
    window_ms: i64,
    capacity: usize,
    entries: HashMap<u64, (u64, i64)>,
    /// Entries dropped because the index was full.
    pub shed: u64,
}

impl FoldIndex {
    /// An empty index.
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity,
            entries: HashMap::new(),
            shed: 0,
        }
    }

    /// The finding id to fold into, if an identical finding was seen within the window.
    pub fn lookup(&self, fingerprint: u64, observed_ms: i64) -> Option<u64> {
        self.entries
            .get(&fingerprint)
            .filter(|(_, last)| observed_ms.saturating_sub(*last) <= self.window_ms)
            .map(|(id, _)| *id)
    }

    /// Remembers that `id` was last observed at `observed_ms`.
    pub fn record(&mut self, fingerprint: u64, id: u64, observed_ms: i64) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&fingerprint)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
            self.shed += 1;
        }
        let entry = self.entries.entry(fingerprint).or_insert((id, observed_ms));
        entry.0 = id;
        entry.1 = entry.1.max(observed_ms);
    }

    /// Drops entries older than the window.
    pub fn prune(&mut self, now_ms: i64) {
        let window = self.window_ms;
        self.entries
            .retain(|_, (_, last)| now_ms.saturating_sub(*last) <= window);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod sigma_fold_tests {
    use super::*;

    #[test]
    fn two_runs_of_one_command_fold_but_two_commands_do_not() {
        let run = |pid: &str, cmd: &str| {
            BTreeMap::from([
                ("sigma.id".to_owned(), "r".to_owned()),
                ("event.ProcessId".to_owned(), pid.to_owned()),
                ("event.CommandLine".to_owned(), cmd.to_owned()),
            ])
        };
        let fp = |a| fingerprint_parts("h", "sigma.match", &a);
        assert_eq!(fp(run("1", "curl x | sh")), fp(run("2", "curl x | sh")));
        assert_ne!(fp(run("1", "curl x | sh")), fp(run("1", "curl y | sh")));
        // Other kinds keep every attribute.
        assert_ne!(
            fingerprint_parts("h", "process.exec", &run("1", "a")),
            fingerprint_parts("h", "process.exec", &run("2", "a"))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_says_why_and_a_sensors_own_reason_wins() {
        let host = HostId::new("h1").expect("host");
        let mut f = NewFinding {
            host_id: host.clone(),
            kind: "file.timestamps".into(),
            severity: Severity::High,
            observed_unix_ms: 1,
            attributes: BTreeMap::new(),
            summary: String::new(),
        };
        explain(&mut f);
        assert_eq!(f.attributes["attack.technique"], "T1070.006");
        assert!(!f.attributes["reason"].is_empty());
        let mut own = NewFinding {
            kind: "file.odd_name".into(),
            attributes: BTreeMap::from([("reason".to_owned(), "leading_space".to_owned())]),
            ..f.clone()
        };
        explain(&mut own);
        assert_eq!(own.attributes["reason"], "leading_space");
        // Every kind a sensor emits is explained.
        for kind in [
            "process.unknown_binary",
            "account.sudo",
            "net.new_listener",
            "host.silent",
        ] {
            assert!(EXPLANATIONS.iter().any(|(k, _, _)| *k == kind), "{kind}");
        }
    }

    fn finding(attr: &str) -> NewFinding {
        NewFinding {
            host_id: HostId::new("h1").expect("valid"),
            kind: "net.new_listener".into(),
            severity: Severity::Medium,
            observed_unix_ms: 0,
            attributes: [("port".to_owned(), attr.to_owned())].into(),
            summary: String::new(),
        }
    }

    #[test]
    fn identical_findings_fold_within_the_window_only() {
        let mut idx = FoldIndex::new(1_000, 10);
        let fp = fingerprint(&finding("22"));
        assert_ne!(fp, fingerprint(&finding("23")));
        idx.record(fp, 7, 100);
        assert_eq!(idx.lookup(fp, 900), Some(7));
        assert_eq!(idx.lookup(fp, 1_200), None);
    }

    #[test]
    fn index_is_bounded_and_counts_what_it_sheds() {
        let mut idx = FoldIndex::new(1_000, 2);
        idx.record(1, 1, 10);
        idx.record(2, 2, 20);
        idx.record(3, 3, 30);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.shed, 1);
        assert_eq!(idx.lookup(1, 30), None, "oldest entry went first");
    }

    #[test]
    fn plain_telemetry_is_not_a_finding() {
        let d = Detector::default();
        let host = HostId::new("h1").expect("valid");
        let mut e = Event {
            kind: "process.exec".into(),
            severity: Severity::Info,
            observed_unix_ms: 1,
            received_unix_ms: 2,
            indicator: false,
            attributes: BTreeMap::new(),
            summary: String::new(),
        };
        assert!(d.detect(&host, &e).is_none());
        e.indicator = true;
        e.kind = "net.new_listener".into();
        e.severity = Severity::Low;
        let d = Detector {
            severity_overrides: [("net.new_listener".to_owned(), Severity::High)].into(),
        };
        assert_eq!(
            d.detect(&host, &e).map(|f| f.severity),
            Some(Severity::High)
        );
    }
}
