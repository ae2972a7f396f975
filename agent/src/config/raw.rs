//! The configuration file as serde reads it: every section and key with its
//! default, nothing checked yet. [`super::validate`] turns it into the types of
//! [`super::types`].

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct Raw {
    pub(super) host_id: Option<String>,
    #[serde(default = "default_root")]
    pub(super) root: PathBuf,
    pub(super) collector: Option<RawCollector>,
    pub(super) tls: Option<RawTls>,
    pub(super) spool: Option<RawSpool>,
    #[serde(default)]
    pub(super) link: RawLink,
    #[serde(default)]
    pub(super) sensors: RawSensors,
    #[serde(default)]
    pub(super) response: RawResponse,
    #[serde(default)]
    pub(super) labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub(super) severity: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawResponse {
    #[serde(default)]
    pub(super) dns_resolvers: Vec<String>,
    #[serde(default)]
    pub(super) local_operator: bool,
}

pub(super) fn default_root() -> PathBuf {
    PathBuf::from("/")
}

#[derive(Debug, Deserialize)]
pub(super) struct RawCollector {
    #[serde(default)]
    pub(super) address: Option<String>,
    /// Several collectors (cluster mode), tried in order.
    #[serde(default)]
    pub(super) addresses: Vec<String>,
    #[serde(default = "default_server_name")]
    pub(super) server_name: String,
}

pub(super) fn default_server_name() -> String {
    "bannin-collector".into()
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTls {
    pub(super) ca: PathBuf,
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    /// Renew the certificate over the live channel this long before it expires.
    #[serde(default = "default_renew_before")]
    pub(super) renew_before_secs: u64,
}

pub(super) fn default_renew_before() -> u64 {
    30 * 86_400
}

#[derive(Debug, Deserialize)]
pub(super) struct RawSpool {
    pub(super) dir: PathBuf,
    #[serde(default = "default_spool_bytes")]
    pub(super) max_bytes: u64,
    #[serde(default = "default_state_bytes")]
    pub(super) max_state_bytes: u64,
}

pub(super) fn default_state_bytes() -> u64 {
    crate::spool::DEFAULT_MAX_STATE_BYTES
}

pub(super) fn default_spool_bytes() -> u64 {
    256 * 1024 * 1024
}

macro_rules! defaults {
    ($($name:ident: $t:ty = $v:expr;)*) => { $(pub(super) fn $name() -> $t { $v })* };
}

defaults! {
    d_heartbeat: u64 = 30;
    d_batch_events: usize = 500;
    d_in_flight: usize = 32;
    d_replay_rate: u32 = 100;
    d_backoff_initial: u64 = 500;
    d_backoff_max: u64 = 60;
    d_true: bool = true;
    d_listener_interval: u64 = 10;
    d_connection_interval: u64 = 15;
    d_max_peers: usize = 4096;
    d_flood: usize = 100;
    d_admin_ports: Vec<u16> = vec![22, 3389, 5900, 5985, 5986];
    d_odd_interval: u64 = 30;
    d_medium: String = "medium".into();
    d_odd_paths: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev/shm", "/home", "/root", "/var/www", "/srv"]
        .iter().map(PathBuf::from).collect();
    d_depth: usize = 4;
    d_entries: usize = 200_000;
}

#[derive(Debug, Deserialize)]
pub(super) struct RawLink {
    #[serde(default = "d_heartbeat")]
    pub(super) heartbeat_secs: u64,
    #[serde(default = "d_batch_events")]
    pub(super) batch_max_events: usize,
    #[serde(default = "d_in_flight")]
    pub(super) max_in_flight: usize,
    #[serde(default = "d_replay_rate")]
    pub(super) max_batches_per_sec: u32,
    #[serde(default = "d_backoff_initial")]
    pub(super) backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    pub(super) backoff_max_secs: u64,
}

impl Default for RawLink {
    fn default() -> Self {
        Self {
            heartbeat_secs: d_heartbeat(),
            batch_max_events: d_batch_events(),
            max_in_flight: d_in_flight(),
            max_batches_per_sec: d_replay_rate(),
            backoff_initial_ms: d_backoff_initial(),
            backoff_max_secs: d_backoff_max(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawSensors {
    #[serde(default)]
    pub(super) fold_after: Option<usize>,
    #[serde(default)]
    pub(super) learn_secs: Option<u64>,
    #[serde(default)]
    pub(super) net_listener: RawNetListener,
    #[serde(default)]
    pub(super) file_odd_name: RawOddName,
    #[serde(default)]
    pub(super) net_connection: RawNetConnection,
    #[serde(default)]
    pub(super) accounts: RawAccounts,
    #[serde(default)]
    pub(super) process: RawProcess,
    #[serde(default)]
    pub(super) system: RawSystem,
    #[serde(default)]
    pub(super) hardware: RawHardware,
    #[serde(default)]
    pub(super) net_interface: RawNetInterface,
    #[serde(default)]
    pub(super) logs: RawLogs,
    #[serde(default)]
    pub(super) file_integrity: RawFileIntegrity,
    #[serde(default)]
    pub(super) resources: RawResources,
    #[serde(default)]
    pub(super) file_access: RawFileAccess,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawFileAccess {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) paths: Vec<PathBuf>,
    pub(super) allow: Vec<PathBuf>,
    pub(super) backup: Vec<PathBuf>,
}

impl Default for RawFileAccess {
    fn default() -> Self {
        let paths = |p: &[&str]| p.iter().map(PathBuf::from).collect();
        Self {
            enabled: true,
            interval_secs: 2,
            paths: paths(&[
                "/etc/shadow",
                "/etc/gshadow",
                "/etc/sudoers",
                "/etc/sudoers.d",
                "/root/.ssh",
                "/home/*/.ssh",
            ]),
            backup: paths(&[
                "/usr/bin/tar",
                "/bin/tar",
                "/usr/bin/rsync",
                "/usr/bin/cpio",
                "/usr/bin/borg",
                "/usr/bin/restic",
                "/usr/bin/duplicity",
                "/usr/sbin/bacula-fd",
                "/usr/bin/zip",
            ]),
            allow: paths(&[
                "/usr/sbin/sshd",
                "/usr/lib/openssh/sshd-session",
                "/usr/bin/sudo",
                "/usr/bin/su",
                "/bin/su",
                "/usr/bin/login",
                "/bin/login",
                "/usr/bin/passwd",
                "/usr/sbin/unix_chkpwd",
                "/sbin/unix_chkpwd",
                "/usr/bin/chage",
                "/usr/bin/gpasswd",
                "/usr/bin/newgrp",
                "/usr/sbin/useradd",
                "/usr/sbin/usermod",
                "/usr/sbin/userdel",
                "/usr/sbin/groupadd",
                "/usr/sbin/chpasswd",
                "/usr/sbin/visudo",
                "/usr/sbin/cron",
                "/usr/lib/systemd/systemd-logind",
                "/lib/systemd/systemd-logind",
            ]),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawResources {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) warmup_samples: u32,
    pub(super) threshold_percent: f64,
    pub(super) margin_percent: f64,
}

impl Default for RawResources {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 10,
            warmup_samples: 30,
            threshold_percent: 90.0,
            margin_percent: 30.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawFileIntegrity {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) paths: Vec<PathBuf>,
    pub(super) library_paths: Vec<PathBuf>,
    pub(super) hash_rate_mib: u64,
    pub(super) max_file_bytes: u64,
    pub(super) one_filesystem: bool,
    pub(super) realtime: bool,
    pub(super) max_watches: usize,
    pub(super) timestomp_secs: u64,
}

impl Default for RawFileIntegrity {
    fn default() -> Self {
        let paths = |p: &[&str]| p.iter().map(PathBuf::from).collect();
        Self {
            enabled: true,
            interval_secs: 3600,
            paths: paths(&["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/boot", "/etc"]),
            library_paths: paths(&["/usr/lib", "/lib", "/usr/lib64", "/lib64"]),
            hash_rate_mib: 32,
            max_file_bytes: 512 * 1024 * 1024,
            one_filesystem: true,
            realtime: true,
            max_watches: 4096,
            timestomp_secs: 86_400,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawLogs {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) auth_logs: Vec<PathBuf>,
    pub(super) utmp: PathBuf,
    pub(super) lastlog: PathBuf,
    pub(super) suricata_eve: Vec<PathBuf>,
    pub(super) clamav_logs: Vec<PathBuf>,
    pub(super) pattern_files: Vec<PathBuf>,
    pub(super) patterns: Vec<RawPattern>,
    pub(super) default_patterns: bool,
    pub(super) dormant_days: u32,
    pub(super) failed_login_threshold: u32,
    pub(super) read_existing: bool,
    pub(super) journal: bool,
    pub(super) journalctl: PathBuf,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPattern {
    pub(super) name: String,
    pub(super) regex: String,
    #[serde(default = "d_medium")]
    pub(super) severity: String,
    #[serde(default)]
    pub(super) files: Vec<PathBuf>,
}

impl Default for RawLogs {
    fn default() -> Self {
        let paths = |p: &[&str]| p.iter().map(PathBuf::from).collect();
        Self {
            enabled: true,
            interval_secs: 5,
            auth_logs: paths(&["/var/log/auth.log", "/var/log/secure"]),
            utmp: PathBuf::from("/var/run/utmp"),
            lastlog: PathBuf::from("/var/log/lastlog"),
            suricata_eve: paths(&["/var/log/suricata/eve.json"]),
            clamav_logs: paths(&["/var/log/clamav/clamav.log", "/var/log/clamav/clamscan.log"]),
            pattern_files: paths(&["/var/log/syslog", "/var/log/messages", "/var/log/kern.log"]),
            patterns: Vec::new(),
            default_patterns: true,
            dormant_days: 90,
            failed_login_threshold: 10,
            read_existing: false,
            journal: true,
            journalctl: PathBuf::from("journalctl"),
        }
    }
}

/// A sensor section with only `enabled` and `interval_secs`; its findings take
/// their severity per kind from the sensor, overridden by `[severity]`.
macro_rules! simple_sensor {
    ($raw:ident, $interval:expr) => {
        #[derive(Debug, Deserialize)]
        #[serde(default)]
        pub(super) struct $raw {
            pub(super) enabled: bool,
            pub(super) interval_secs: u64,
        }
        impl Default for $raw {
            fn default() -> Self {
                Self {
                    enabled: true,
                    interval_secs: $interval,
                }
            }
        }
    };
}

simple_sensor!(RawAccounts, 30);
simple_sensor!(RawSystem, 30);
simple_sensor!(RawHardware, 30);

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawProcess {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) suspicious_dirs: Vec<PathBuf>,
    pub(super) allow: Vec<String>,
    pub(super) ioc_hashes: Option<PathBuf>,
    pub(super) max_hash_bytes: u64,
    pub(super) exec_telemetry: bool,
    pub(super) exec_events: bool,
    pub(super) exec_source: String,
}

impl Default for RawProcess {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 2,
            suspicious_dirs: ["/tmp", "/var/tmp", "/dev/shm"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            allow: Vec::new(),
            ioc_hashes: None,
            max_hash_bytes: 256 * 1024 * 1024,
            exec_telemetry: true,
            exec_events: true,
            exec_source: "auto".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct RawNetInterface {
    pub(super) enabled: bool,
    pub(super) interval_secs: u64,
    pub(super) warmup_samples: u32,
    pub(super) spike_factor: f64,
    pub(super) min_bytes_per_sec: u64,
    pub(super) asymmetry_ratio: f64,
}

impl Default for RawNetInterface {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 10,
            warmup_samples: 30,
            spike_factor: 10.0,
            min_bytes_per_sec: 1024 * 1024,
            asymmetry_ratio: 20.0,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawNetConnection {
    #[serde(default = "d_true")]
    pub(super) enabled: bool,
    #[serde(default = "d_connection_interval")]
    pub(super) interval_secs: u64,
    #[serde(default)]
    pub(super) include_loopback: bool,
    #[serde(default = "d_max_peers")]
    pub(super) max_peers: usize,
    #[serde(default = "d_flood")]
    pub(super) flood_threshold: usize,
    #[serde(default = "d_admin_ports")]
    pub(super) remote_admin_ports: Vec<u16>,
    #[serde(default)]
    pub(super) remote_admin_allow: Vec<String>,
    #[serde(default = "d_true")]
    pub(super) flows: bool,
    #[serde(default = "d_max_flows")]
    pub(super) max_flows_per_sweep: usize,
}

fn d_max_flows() -> usize {
    2000
}

impl Default for RawNetConnection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: d_connection_interval(),
            include_loopback: false,
            max_peers: d_max_peers(),
            flood_threshold: d_flood(),
            remote_admin_ports: d_admin_ports(),
            remote_admin_allow: Vec::new(),
            flows: true,
            max_flows_per_sweep: d_max_flows(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawNetListener {
    #[serde(default = "d_true")]
    pub(super) enabled: bool,
    #[serde(default = "d_listener_interval")]
    pub(super) interval_secs: u64,
    #[serde(default = "d_medium")]
    pub(super) severity: String,
}

impl Default for RawNetListener {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: d_listener_interval(),
            severity: d_medium(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawOddName {
    #[serde(default = "d_true")]
    pub(super) enabled: bool,
    #[serde(default = "d_odd_interval")]
    pub(super) interval_secs: u64,
    #[serde(default = "d_medium")]
    pub(super) severity: String,
    #[serde(default = "d_odd_paths")]
    pub(super) paths: Vec<PathBuf>,
    #[serde(default)]
    pub(super) dotfiles_unexpected: bool,
    #[serde(default = "d_hidden_in")]
    pub(super) hidden_in: Vec<PathBuf>,
    #[serde(default = "d_depth")]
    pub(super) max_depth: usize,
    #[serde(default = "d_entries")]
    pub(super) max_entries: usize,
    #[serde(default = "d_true")]
    pub(super) realtime: bool,
    #[serde(default = "d_watches")]
    pub(super) max_watches: usize,
    #[serde(default)]
    pub(super) exclude: Vec<PathBuf>,
}

pub(super) fn d_watches() -> usize {
    16_384
}

/// World-writable, volatile directories: where a hidden file is odd by default.
pub(super) fn d_hidden_in() -> Vec<PathBuf> {
    ["/tmp", "/var/tmp", "/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .collect()
}

impl Default for RawOddName {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: d_odd_interval(),
            severity: d_medium(),
            paths: d_odd_paths(),
            dotfiles_unexpected: false,
            hidden_in: d_hidden_in(),
            max_depth: d_depth(),
            max_entries: d_entries(),
            realtime: true,
            max_watches: d_watches(),
            exclude: Vec::new(),
        }
    }
}
