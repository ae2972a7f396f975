//! The agent's configuration file (TOML). See `deploy/agent.example.toml` for
//! every key with its default. Relative paths are relative to the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::config::{ConfigErrors, load_toml};
use bannin_proto::identity::HostId;
use bannin_proto::tls::{TlsPaths, check_key_permissions};
use bannin_proto::v1::Severity;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Raw {
    host_id: Option<String>,
    #[serde(default = "default_root")]
    root: PathBuf,
    collector: Option<RawCollector>,
    tls: Option<RawTls>,
    spool: Option<RawSpool>,
    #[serde(default)]
    link: RawLink,
    #[serde(default)]
    sensors: RawSensors,
    #[serde(default)]
    response: RawResponse,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    severity: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawResponse {
    #[serde(default)]
    dns_resolvers: Vec<String>,
    #[serde(default)]
    local_operator: bool,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

#[derive(Debug, Deserialize)]
struct RawCollector {
    address: String,
    #[serde(default = "default_server_name")]
    server_name: String,
}

fn default_server_name() -> String {
    "bannin-collector".into()
}

#[derive(Debug, Deserialize)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// Renew the certificate over the live channel this long before it expires.
    #[serde(default = "default_renew_before")]
    renew_before_secs: u64,
}

fn default_renew_before() -> u64 {
    30 * 86_400
}

#[derive(Debug, Deserialize)]
struct RawSpool {
    dir: PathBuf,
    #[serde(default = "default_spool_bytes")]
    max_bytes: u64,
}

fn default_spool_bytes() -> u64 {
    256 * 1024 * 1024
}

macro_rules! defaults {
    ($($name:ident: $t:ty = $v:expr;)*) => { $(fn $name() -> $t { $v })* };
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
struct RawLink {
    #[serde(default = "d_heartbeat")]
    heartbeat_secs: u64,
    #[serde(default = "d_batch_events")]
    batch_max_events: usize,
    #[serde(default = "d_in_flight")]
    max_in_flight: usize,
    #[serde(default = "d_replay_rate")]
    max_batches_per_sec: u32,
    #[serde(default = "d_backoff_initial")]
    backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    backoff_max_secs: u64,
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
struct RawSensors {
    #[serde(default)]
    fold_after: Option<usize>,
    #[serde(default)]
    net_listener: RawNetListener,
    #[serde(default)]
    file_odd_name: RawOddName,
    #[serde(default)]
    net_connection: RawNetConnection,
    #[serde(default)]
    accounts: RawAccounts,
    #[serde(default)]
    process: RawProcess,
    #[serde(default)]
    system: RawSystem,
    #[serde(default)]
    hardware: RawHardware,
    #[serde(default)]
    net_interface: RawNetInterface,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    file_integrity: RawFileIntegrity,
    #[serde(default)]
    resources: RawResources,
    #[serde(default)]
    file_access: RawFileAccess,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawFileAccess {
    enabled: bool,
    interval_secs: u64,
    paths: Vec<PathBuf>,
    allow: Vec<PathBuf>,
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
struct RawResources {
    enabled: bool,
    interval_secs: u64,
    warmup_samples: u32,
    threshold_percent: f64,
    margin_percent: f64,
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
struct RawFileIntegrity {
    enabled: bool,
    interval_secs: u64,
    paths: Vec<PathBuf>,
    library_paths: Vec<PathBuf>,
    hash_rate_mib: u64,
    max_file_bytes: u64,
    one_filesystem: bool,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawLogs {
    enabled: bool,
    interval_secs: u64,
    auth_logs: Vec<PathBuf>,
    utmp: PathBuf,
    lastlog: PathBuf,
    suricata_eve: Vec<PathBuf>,
    clamav_logs: Vec<PathBuf>,
    pattern_files: Vec<PathBuf>,
    patterns: Vec<RawPattern>,
    default_patterns: bool,
    dormant_days: u32,
    failed_login_threshold: u32,
    read_existing: bool,
    journal: bool,
    journalctl: PathBuf,
}

#[derive(Debug, Deserialize)]
struct RawPattern {
    name: String,
    regex: String,
    #[serde(default = "d_medium")]
    severity: String,
    #[serde(default)]
    files: Vec<PathBuf>,
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
        struct $raw {
            enabled: bool,
            interval_secs: u64,
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
struct RawProcess {
    enabled: bool,
    interval_secs: u64,
    suspicious_dirs: Vec<PathBuf>,
    allow: Vec<String>,
    ioc_hashes: Option<PathBuf>,
    max_hash_bytes: u64,
    exec_telemetry: bool,
    exec_events: bool,
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
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct RawNetInterface {
    enabled: bool,
    interval_secs: u64,
    warmup_samples: u32,
    spike_factor: f64,
    min_bytes_per_sec: u64,
    asymmetry_ratio: f64,
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
struct RawNetConnection {
    #[serde(default = "d_true")]
    enabled: bool,
    #[serde(default = "d_connection_interval")]
    interval_secs: u64,
    #[serde(default)]
    include_loopback: bool,
    #[serde(default = "d_max_peers")]
    max_peers: usize,
    #[serde(default = "d_flood")]
    flood_threshold: usize,
    #[serde(default = "d_admin_ports")]
    remote_admin_ports: Vec<u16>,
    #[serde(default)]
    remote_admin_allow: Vec<String>,
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
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawNetListener {
    #[serde(default = "d_true")]
    enabled: bool,
    #[serde(default = "d_listener_interval")]
    interval_secs: u64,
    #[serde(default = "d_medium")]
    severity: String,
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
struct RawOddName {
    #[serde(default = "d_true")]
    enabled: bool,
    #[serde(default = "d_odd_interval")]
    interval_secs: u64,
    #[serde(default = "d_medium")]
    severity: String,
    #[serde(default = "d_odd_paths")]
    paths: Vec<PathBuf>,
    #[serde(default)]
    dotfiles_unexpected: bool,
    #[serde(default = "d_depth")]
    max_depth: usize,
    #[serde(default = "d_entries")]
    max_entries: usize,
    #[serde(default = "d_true")]
    realtime: bool,
    #[serde(default = "d_watches")]
    max_watches: usize,
}

fn d_watches() -> usize {
    16_384
}

impl Default for RawOddName {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: d_odd_interval(),
            severity: d_medium(),
            paths: d_odd_paths(),
            dotfiles_unexpected: false,
            max_depth: d_depth(),
            max_entries: d_entries(),
            realtime: true,
            max_watches: d_watches(),
        }
    }
}

/// Settings every sensor has.
#[derive(Debug, Clone)]
pub struct SensorCommon {
    /// Whether the sensor runs.
    pub enabled: bool,
    /// Time between sweeps.
    pub interval: Duration,
    /// Severity of its findings.
    pub severity: Severity,
}

/// `[sensors.file_odd_name]`.
#[derive(Debug, Clone)]
pub struct OddNameConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Directories to watch (under `root`).
    pub paths: Vec<PathBuf>,
    /// Whether a leading dot is odd.
    pub dotfiles_unexpected: bool,
    /// Deepest level walked below each path.
    pub max_depth: usize,
    /// Most entries looked at per sweep.
    pub max_entries: usize,
    /// Findings built per sweep before the rest are only counted (`[sensors] fold_after`).
    pub max_events: usize,
    /// Whether creations are seen as they happen (inotify) as well as at each walk.
    pub realtime: bool,
    /// Most directories watched by inotify.
    pub max_watches: usize,
}

/// `[sensors.net_connection]`.
#[derive(Debug, Clone)]
pub struct NetConnectionConfig {
    /// Common settings (its events are telemetry; severity is unused).
    pub common: SensorCommon,
    /// Whether connections to and from loopback addresses are reported.
    pub include_loopback: bool,
    /// Most peers remembered (oldest forgotten first, then reported again if seen).
    pub max_peers: usize,
    /// Established connections with one peer at which `net.connection_flood` is raised.
    pub flood_threshold: usize,
    /// Remote-administration ports (ssh, RDP, VNC, WinRM).
    pub remote_admin_ports: Vec<u16>,
    /// Networks allowed to open sessions on those ports; empty: nobody is
    /// unapproved (the check is off).
    pub remote_admin_allow: Vec<ipnet::IpNet>,
}

/// `[sensors.process]`.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Executing from under these is suspicious.
    pub suspicious_dirs: Vec<PathBuf>,
    /// Executables never reported as unknown: absolute paths or SHA-256 values.
    pub allow: Vec<String>,
    /// File of SHA-256 values (one per line, `#` comments) of known-bad executables.
    pub ioc_hashes: Option<PathBuf>,
    /// Executables larger than this are not hashed.
    pub max_hash_bytes: u64,
    /// Whether every new process is sent as `process.exec` telemetry.
    pub exec_telemetry: bool,
    /// Whether execs come from the kernel's process events connector as they
    /// happen (polling remains the fallback).
    pub exec_events: bool,
}

/// `[sensors.file_access]`.
#[derive(Debug, Clone)]
pub struct FileAccessConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Critical files and directories (`/home/*/.ssh`: one `*` per path).
    pub paths: Vec<PathBuf>,
    /// Executables whose access is expected.
    pub allow: Vec<PathBuf>,
}

/// `[sensors.resources]`.
#[derive(Debug, Clone)]
pub struct ResourcesConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Samples learned before use is judged.
    pub warmup_samples: u32,
    /// Share (0–1) above which use may be anomalous.
    pub threshold: f64,
    /// How far above the learned mean it must also be.
    pub margin: f64,
}

/// `[sensors.file_integrity]`.
#[derive(Debug, Clone)]
pub struct FileIntegrityConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Paths whose every file is in the baseline (plus the agent's binary and config).
    pub paths: Vec<PathBuf>,
    /// Paths whose libraries (`*.so*`) and kernel modules only are in the baseline.
    pub library_paths: Vec<PathBuf>,
    /// Hashing rate cap in MiB/s (0: none).
    pub hash_rate_mib: u64,
    /// Larger files are recorded without a hash.
    pub max_file_bytes: u64,
    /// Whether other file systems below a path are left out.
    pub one_filesystem: bool,
}

/// A `log.pattern` rule.
#[derive(Debug, Clone)]
pub struct PatternRule {
    /// Rule name (in the finding's `rule` attribute).
    pub name: String,
    /// What to match.
    pub regex: regex::Regex,
    /// Severity of its findings.
    pub severity: Severity,
    /// Files it applies to (empty: every `pattern_files` entry).
    pub files: Vec<PathBuf>,
}

/// `[sensors.logs]`.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Auth logs (the first that exists per sweep is read; all are tailed).
    pub auth_logs: Vec<PathBuf>,
    /// The utmp file (live sessions).
    pub utmp: PathBuf,
    /// The lastlog file (last login per uid), read once to seed dormancy.
    pub lastlog: PathBuf,
    /// Suricata eve.json files.
    pub suricata_eve: Vec<PathBuf>,
    /// ClamAV logs (clamd or clamscan --log).
    pub clamav_logs: Vec<PathBuf>,
    /// Files the pattern rules read.
    pub pattern_files: Vec<PathBuf>,
    /// Pattern rules (defaults first, unless turned off).
    pub patterns: Vec<PatternRule>,
    /// Days without a login after which an account is dormant.
    pub dormant_days: u32,
    /// Failed logins from one source within a minute that raise a finding.
    pub failed_login_threshold: u32,
    /// Read files from their start the first time (else from their end).
    pub read_existing: bool,
    /// Whether the systemd journal is read (when the host keeps one).
    pub journal: bool,
    /// The `journalctl` program (looked up in PATH when not absolute).
    pub journalctl: PathBuf,
}

/// The default `log.pattern` rules: kernel taint, segfaults and OOM kills.
pub fn default_patterns() -> Vec<PatternRule> {
    [
        (
            "kernel_taint",
            r"taints kernel|tainting kernel",
            Severity::Medium,
        ),
        (
            "segfault",
            r"segfault at [0-9a-f]+ ip [0-9a-f]+",
            Severity::Low,
        ),
        (
            "oom_kill",
            r"Out of memory: Kill(ed)? process|oom-kill:",
            Severity::Medium,
        ),
    ]
    .into_iter()
    .filter_map(|(name, re, severity)| {
        Some(PatternRule {
            name: name.into(),
            regex: regex::Regex::new(re).ok()?,
            severity,
            files: Vec::new(),
        })
    })
    .collect()
}

/// `[sensors.net_interface]`.
#[derive(Debug, Clone)]
pub struct NetInterfaceConfig {
    /// Common settings.
    pub common: SensorCommon,
    /// Samples learned before rates are judged.
    pub warmup_samples: u32,
    /// A rate this many times the learned mean is a spike.
    pub spike_factor: f64,
    /// Rates below this are never spikes.
    pub min_bytes_per_sec: u64,
    /// rx/tx (or tx/rx) above this, past `min_bytes_per_sec`, is asymmetric.
    pub asymmetry_ratio: f64,
}

/// The collector link's settings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `host:port` of the collector.
    pub address: String,
    /// DNS name in the collector's certificate.
    pub server_name: String,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Most events in one batch.
    pub batch_max_events: usize,
    /// Batches sent and not yet acknowledged at once.
    pub max_in_flight: usize,
    /// Most batches sent per second (paces replay after an outage).
    pub max_batches_per_sec: u32,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// `[labels]`: announced in every hello (site, zone, role, owner…).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Renew the certificate this long before it expires.
    pub renew_before: Duration,
}

/// Refuses a config file that other users can read, or that anyone but its
/// owner can change: it says where the agent sends what it sees and which
/// key it uses, and a changed one could point it at another collector.
pub fn config_permission_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0 || mode & 0o022 != 0).then(|| {
        format!(
            "mode {mode:03o}: the config must not be readable by other users nor writable by anyone but its owner (chmod 600 or 640)"
        )
    })
}

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Host id the certificate must carry (if set).
    pub host_id: Option<HostId>,
    /// Root of the host's file system as sensors see it.
    pub root: PathBuf,
    /// TLS files.
    pub tls: TlsPaths,
    /// The collector link.
    pub link: LinkConfig,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Spool byte cap.
    pub spool_max_bytes: u64,
    /// `[sensors.net_listener]`.
    pub net_listener: SensorCommon,
    /// `[sensors.file_odd_name]`.
    pub file_odd_name: OddNameConfig,
    /// `[sensors.net_connection]`.
    pub net_connection: NetConnectionConfig,
    /// `[sensors.accounts]`.
    pub accounts: SensorCommon,
    /// `[sensors.process]`.
    pub process: ProcessConfig,
    /// `[sensors.system]`.
    pub system: SensorCommon,
    /// `[sensors.hardware]`.
    pub hardware: SensorCommon,
    /// `[sensors.net_interface]`.
    pub net_interface: NetInterfaceConfig,
    /// `[sensors.logs]`.
    pub logs: LogsConfig,
    /// `[sensors.file_integrity]`.
    pub file_integrity: FileIntegrityConfig,
    /// `[sensors.resources]`.
    pub resources: ResourcesConfig,
    /// `[sensors.file_access]`.
    pub file_access: FileAccessConfig,
    /// `[sensors] fold_after`: past this many findings of one kind in one
    /// sweep, they are sent as one finding with a count and examples.
    pub fold_after: usize,
    /// The file this configuration was read from (in the integrity baseline).
    pub config_path: Option<PathBuf>,
    /// `[severity]`: finding kind → severity, over each sensor's default.
    pub severity: std::collections::BTreeMap<String, Severity>,
    /// `[response]`: DNS resolvers an isolated host may still use.
    pub dns_resolvers: Vec<std::net::IpAddr>,
    /// `[response] local_operator`: this agent runs on the operator's machine.
    pub local_operator: bool,
}

fn severity(name: &str) -> Option<Severity> {
    Some(match name {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => return None,
    })
}

fn common(
    errors: &mut ConfigErrors,
    section: &str,
    enabled: bool,
    interval_secs: u64,
    sev: &str,
) -> SensorCommon {
    if !(1..=86_400).contains(&interval_secs) {
        errors.push(format!(
            "sensors.{section}.interval_secs = {interval_secs}: must be 1 to 86400"
        ));
    }
    let severity = severity(sev).unwrap_or_else(|| {
        errors.push(format!(
            "sensors.{section}.severity = {sev:?}: expected info, low, medium, high or critical"
        ));
        Severity::Medium
    });
    SensorCommon {
        enabled,
        interval: Duration::from_secs(interval_secs.max(1)),
        severity,
    }
}

impl AgentConfig {
    /// Loads and validates `path`, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let (raw, mut errors): (Raw, _) = load_toml(path)?;
        if let Some(problem) = config_permission_problem(path) {
            errors.push(problem);
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let mut config = Self::validate(raw, &base, errors, false)?;
        config.config_path = std::fs::canonicalize(path).ok();
        Ok(config)
    }

    /// Loads the sensors' settings for `bannin-agent check`, which runs without
    /// a collector: `[collector]`, `[tls]` and `[spool]` may be absent, and with
    /// no file every default applies.
    pub fn load_standalone(path: Option<&Path>) -> Result<Self, ConfigErrors> {
        let (raw, errors, base): (Raw, _, _) = match path {
            Some(p) => {
                let (raw, errors) = load_toml(p)?;
                (raw, errors, p.parent().unwrap_or(Path::new(".")).to_owned())
            }
            None => {
                let (raw, errors) = bannin_proto::config::parse_toml(
                    "",
                    ConfigErrors::new(Path::new("(defaults)")),
                )?;
                (raw, errors, PathBuf::from("."))
            }
        };
        let mut config = Self::validate(raw, &base, errors, true)?;
        config.config_path = path.and_then(|p| std::fs::canonicalize(p).ok());
        Ok(config)
    }

    fn validate(
        raw: Raw,
        base: &Path,
        mut errors: ConfigErrors,
        standalone: bool,
    ) -> Result<Self, ConfigErrors> {
        let host_id = raw.host_id.as_deref().and_then(|h| {
            HostId::new(h)
                .map_err(|e| errors.push(format!("host_id = {h:?}: {e}")))
                .ok()
        });
        let collector = raw.collector.unwrap_or_else(|| {
            if !standalone {
                errors.push("[collector] with address is required");
            }
            RawCollector {
                address: String::new(),
                server_name: default_server_name(),
            }
        });
        if !collector.address.is_empty() && !collector.address.contains(':') {
            errors.push(format!(
                "collector.address = {:?}: expected host:port",
                collector.address
            ));
        }
        let renew_before = Duration::from_secs(
            raw.tls
                .as_ref()
                .map_or_else(default_renew_before, |t| t.renew_before_secs),
        );
        let tls = match raw.tls {
            Some(t) => {
                let t = TlsPaths {
                    ca: base.join(t.ca),
                    cert: base.join(t.cert),
                    key: base.join(t.key),
                };
                for (name, p) in [("tls.ca", &t.ca), ("tls.cert", &t.cert)] {
                    if !p.is_file() {
                        errors.push(format!("{name} = {}: no such file", p.display()));
                    }
                }
                if let Err(e) = check_key_permissions(&t.key) {
                    errors.push(format!("tls.key: {e}"));
                }
                t
            }
            None => {
                if !standalone {
                    errors.push("[tls] with ca, cert and key is required");
                }
                TlsPaths {
                    ca: PathBuf::new(),
                    cert: PathBuf::new(),
                    key: PathBuf::new(),
                }
            }
        };
        let (spool_dir, spool_max_bytes) = match raw.spool {
            Some(s) => {
                if s.max_bytes < 1024 * 1024 {
                    errors.push(format!(
                        "spool.max_bytes = {}: must be at least 1 MiB",
                        s.max_bytes
                    ));
                }
                (base.join(s.dir), s.max_bytes)
            }
            None => {
                if !standalone {
                    errors.push("[spool] with dir is required");
                }
                (PathBuf::new(), 0)
            }
        };
        let l = raw.link;
        if !(1..=3600).contains(&l.heartbeat_secs) {
            errors.push(format!(
                "link.heartbeat_secs = {}: must be 1 to 3600",
                l.heartbeat_secs
            ));
        }
        if !(1..=10_000).contains(&l.batch_max_events) {
            errors.push(format!(
                "link.batch_max_events = {}: must be 1 to 10000",
                l.batch_max_events
            ));
        }
        if !(1..=1024).contains(&l.max_in_flight) {
            errors.push(format!(
                "link.max_in_flight = {}: must be 1 to 1024",
                l.max_in_flight
            ));
        }
        if l.max_batches_per_sec == 0 {
            errors.push("link.max_batches_per_sec must be at least 1");
        }
        if l.backoff_max_secs == 0 || l.backoff_max_secs > 3600 {
            errors.push(format!(
                "link.backoff_max_secs = {}: must be 1 to 3600",
                l.backoff_max_secs
            ));
        }
        let s = raw.sensors;
        let net_listener = common(
            &mut errors,
            "net_listener",
            s.net_listener.enabled,
            s.net_listener.interval_secs,
            &s.net_listener.severity,
        );
        let o = s.file_odd_name;
        let odd_common = common(
            &mut errors,
            "file_odd_name",
            o.enabled,
            o.interval_secs,
            &o.severity,
        );
        for p in &o.paths {
            if !p.is_absolute() {
                errors.push(format!(
                    "sensors.file_odd_name.paths: {} is not absolute",
                    p.display()
                ));
            }
        }
        let c = s.net_connection;
        let connection_common = common(
            &mut errors,
            "net_connection",
            c.enabled,
            c.interval_secs,
            "info",
        );
        if !(16..=1_000_000).contains(&c.max_peers) {
            errors.push(format!(
                "sensors.net_connection.max_peers = {}: must be 16 to 1000000",
                c.max_peers
            ));
        }
        let mut remote_admin_allow = Vec::new();
        for net in &c.remote_admin_allow {
            match net
                .parse::<ipnet::IpNet>()
                .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(n) => remote_admin_allow.push(n),
                Err(_) => errors.push(format!(
                    "sensors.net_connection.remote_admin_allow: {net:?} is not an address or network"
                )),
            }
        }
        if c.flood_threshold < 2 {
            errors.push("sensors.net_connection.flood_threshold must be at least 2");
        }
        let simple = |errors: &mut ConfigErrors, name: &str, enabled: bool, interval: u64| {
            common(errors, name, enabled, interval, "info")
        };
        let accounts = simple(
            &mut errors,
            "accounts",
            s.accounts.enabled,
            s.accounts.interval_secs,
        );
        let system = simple(
            &mut errors,
            "system",
            s.system.enabled,
            s.system.interval_secs,
        );
        let hardware = simple(
            &mut errors,
            "hardware",
            s.hardware.enabled,
            s.hardware.interval_secs,
        );
        let p = s.process;
        let process_common = simple(&mut errors, "process", p.enabled, p.interval_secs);
        for d in &p.suspicious_dirs {
            if !d.is_absolute() {
                errors.push(format!(
                    "sensors.process.suspicious_dirs: {} is not absolute",
                    d.display()
                ));
            }
        }
        for a in &p.allow {
            let hash = a.len() == 64 && a.bytes().all(|b| b.is_ascii_hexdigit());
            if !hash && !a.starts_with('/') {
                errors.push(format!(
                    "sensors.process.allow: {a:?} is neither an absolute path nor a SHA-256"
                ));
            }
        }
        let ioc_hashes = p.ioc_hashes.map(|f| base.join(f));
        if let Some(f) = &ioc_hashes
            && !f.is_file()
        {
            errors.push(format!(
                "sensors.process.ioc_hashes = {}: no such file",
                f.display()
            ));
        }
        let n = s.net_interface;
        let interface_common = simple(&mut errors, "net_interface", n.enabled, n.interval_secs);
        let above_one = |v: f64| v.is_finite() && v > 1.0;
        if !above_one(n.spike_factor) || !above_one(n.asymmetry_ratio) {
            errors.push("sensors.net_interface.spike_factor and asymmetry_ratio must be above 1");
        }
        let lg = s.logs;
        let logs_common = simple(&mut errors, "logs", lg.enabled, lg.interval_secs);
        let mut patterns = if lg.default_patterns {
            default_patterns()
        } else {
            Vec::new()
        };
        for (i, p) in lg.patterns.into_iter().enumerate() {
            let severity = severity(&p.severity).unwrap_or_else(|| {
                errors.push(format!(
                    "sensors.logs.patterns[{i}].severity = {:?}: expected info, low, medium, high or critical",
                    p.severity
                ));
                Severity::Medium
            });
            match regex::Regex::new(&p.regex) {
                Ok(regex) => patterns.push(PatternRule {
                    name: p.name,
                    regex,
                    severity,
                    files: p.files,
                }),
                Err(e) => errors.push(format!(
                    "sensors.logs.patterns[{i}] ({}): bad regex: {e}",
                    p.name
                )),
            }
        }
        if lg.dormant_days == 0 {
            errors.push("sensors.logs.dormant_days must be at least 1");
        }
        let fold_after = s.fold_after.unwrap_or(20);
        let fa = s.file_access;
        let access_common = simple(&mut errors, "file_access", fa.enabled, fa.interval_secs);
        for p in fa.paths.iter().chain(&fa.allow) {
            if !p.is_absolute() {
                errors.push(format!(
                    "sensors.file_access: {} is not absolute",
                    p.display()
                ));
            }
        }
        let rs = s.resources;
        let resources_common = simple(&mut errors, "resources", rs.enabled, rs.interval_secs);
        for (name, v) in [
            ("threshold_percent", rs.threshold_percent),
            ("margin_percent", rs.margin_percent),
        ] {
            if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                errors.push(format!("sensors.resources.{name} = {v}: must be 1 to 100"));
            }
        }
        let fi = s.file_integrity;
        let fim_common = simple(&mut errors, "file_integrity", fi.enabled, fi.interval_secs);
        for p in fi.paths.iter().chain(&fi.library_paths) {
            if !p.is_absolute() {
                errors.push(format!(
                    "sensors.file_integrity: {} is not absolute",
                    p.display()
                ));
            }
        }
        let mut severity_overrides = std::collections::BTreeMap::new();
        for (kind, level) in &raw.severity {
            match severity(level) {
                Some(v) => {
                    severity_overrides.insert(kind.clone(), v);
                }
                None => errors.push(format!(
                    "severity.{kind:?} = {level:?}: expected info, low, medium, high or critical"
                )),
            }
        }
        let mut dns_resolvers = Vec::new();
        for r in &raw.response.dns_resolvers {
            match r.parse() {
                Ok(ip) => dns_resolvers.push(ip),
                Err(_) => errors.push(format!(
                    "response.dns_resolvers: {r:?} is not an IP address"
                )),
            }
        }
        if let Err(e) = bannin_proto::labels::check(&raw.labels) {
            errors.push(format!("[labels]: {e}"));
        }
        errors.into_result()?;
        Ok(Self {
            dns_resolvers,
            local_operator: raw.response.local_operator,
            host_id,
            // Relative to the config file, as every other path is (`root = "fixture"`
            // next to the file means that fixture, wherever the agent is started).
            root: base.join(raw.root),
            tls,
            link: LinkConfig {
                address: collector.address,
                server_name: collector.server_name,
                heartbeat: Duration::from_secs(l.heartbeat_secs),
                batch_max_events: l.batch_max_events,
                max_in_flight: l.max_in_flight,
                max_batches_per_sec: l.max_batches_per_sec,
                backoff_initial: Duration::from_millis(l.backoff_initial_ms.max(10)),
                backoff_max: Duration::from_secs(l.backoff_max_secs),
                labels: raw.labels,
                renew_before,
            },
            spool_dir,
            spool_max_bytes,
            net_listener,
            net_connection: NetConnectionConfig {
                common: connection_common,
                include_loopback: c.include_loopback,
                max_peers: c.max_peers,
                flood_threshold: c.flood_threshold,
                remote_admin_ports: c.remote_admin_ports,
                remote_admin_allow,
            },
            accounts,
            system,
            hardware,
            process: ProcessConfig {
                common: process_common,
                suspicious_dirs: p.suspicious_dirs,
                allow: p.allow,
                ioc_hashes,
                max_hash_bytes: p.max_hash_bytes,
                exec_telemetry: p.exec_telemetry,
                exec_events: p.exec_events,
            },
            net_interface: NetInterfaceConfig {
                common: interface_common,
                warmup_samples: n.warmup_samples,
                spike_factor: n.spike_factor,
                min_bytes_per_sec: n.min_bytes_per_sec,
                asymmetry_ratio: n.asymmetry_ratio,
            },
            severity: severity_overrides,
            config_path: None,
            fold_after: fold_after.max(1),
            file_access: FileAccessConfig {
                common: access_common,
                paths: fa.paths,
                allow: fa.allow,
            },
            resources: ResourcesConfig {
                common: resources_common,
                warmup_samples: rs.warmup_samples,
                threshold: rs.threshold_percent / 100.0,
                margin: rs.margin_percent / 100.0,
            },
            file_integrity: FileIntegrityConfig {
                common: fim_common,
                paths: fi.paths,
                library_paths: fi.library_paths,
                hash_rate_mib: fi.hash_rate_mib,
                max_file_bytes: fi.max_file_bytes,
                one_filesystem: fi.one_filesystem,
            },
            logs: LogsConfig {
                common: logs_common,
                auth_logs: lg.auth_logs,
                utmp: lg.utmp,
                lastlog: lg.lastlog,
                suricata_eve: lg.suricata_eve,
                clamav_logs: lg.clamav_logs,
                pattern_files: lg.pattern_files,
                patterns,
                dormant_days: lg.dormant_days,
                failed_login_threshold: lg.failed_login_threshold.max(1),
                read_existing: lg.read_existing,
                journal: lg.journal,
                journalctl: lg.journalctl,
            },
            file_odd_name: OddNameConfig {
                common: odd_common,
                paths: o.paths,
                dotfiles_unexpected: o.dotfiles_unexpected,
                max_depth: o.max_depth,
                max_entries: o.max_entries,
                max_events: fold_after.max(1),
                realtime: o.realtime,
                max_watches: o.max_watches.max(1),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_has_only_known_keys_of_the_right_types() {
        let text = include_str!("../../deploy/agent.example.toml");
        let (raw, errors): (Raw, _) = bannin_proto::config::parse_toml(
            text,
            ConfigErrors::new(Path::new("agent.example.toml")),
        )
        .expect("parses");
        assert!(errors.problems.is_empty(), "{errors}");
        assert_eq!(raw.sensors.process.interval_secs, 2);
        assert!(raw.sensors.file_integrity.enabled);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "host_id = \"bad/id\"\nmystery = 1\n[collector]\naddress = \"nocolon\"\n\
             [link]\nheartbeat_secs = 0\n[sensors.net_listener]\nseverity = \"loud\"\nspeed = 3\n\
             [sensors.net_connection]\nmax_peers = 1\n[labels]\nSite = \"x\"\n",
        )
        .expect("write");
        let err = AgentConfig::load(&path).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "mystery",
            "sensors.net_listener.speed",
            "host_id",
            "collector.address",
            "[tls]",
            "[spool]",
            "heartbeat_secs",
            "severity",
            "max_peers",
            "label key \"Site\"",
            // Written 0644.
            "must not be readable by other users",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.problems.len(), 11, "{text}");
    }

    #[test]
    fn a_relative_root_is_relative_to_the_config_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "root = \"fixture\"\n[collector]\naddress = \"127.0.0.1:7443\"\n",
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("mode");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.root, dir.path().join("fixture"));
        std::fs::write(&path, "root = \"/srv/image\"\n").expect("write");
        let config = AgentConfig::load_standalone(Some(&path)).expect("valid");
        assert_eq!(config.root, Path::new("/srv/image"));
    }
}
