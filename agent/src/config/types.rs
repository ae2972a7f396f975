//! The validated configuration: what the agent runs with. Built only by
//! [`super::AgentConfig::load`] and [`super::AgentConfig::load_standalone`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::identity::HostId;
use bannin_proto::tls::TlsPaths;
use bannin_proto::v1::Severity;

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
    /// Whether a leading dot is odd everywhere.
    pub dotfiles_unexpected: bool,
    /// Directories where a new dotfile or dot-directory is odd (`hidden`), and an
    /// executable written there is `file.executable_dropped`.
    pub hidden_in: Vec<PathBuf>,
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
    /// Directories never reported or entered: Bannin's own data (the spool,
    /// always; `exclude` adds more, e.g. a local collector's data directory).
    pub exclude: Vec<PathBuf>,
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
    /// Whether every TCP connection is reported when it closes (`net.flow`,
    /// from eBPF).
    pub flows: bool,
    /// Most `net.flow` events of one sweep; past it, flows are folded into
    /// one event per (direction, peer, port, program) with their count.
    pub max_flows_per_sweep: usize,
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
    /// Whether execs come from the kernel as they happen (polling remains
    /// the fallback).
    pub exec_events: bool,
    /// Where they come from.
    pub exec_source: ExecSource,
}

/// Where the process sensor hears of execs as they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecSource {
    /// eBPF, else the process events connector (saying why in health).
    Auto,
    /// eBPF only: the sensor fails, saying why, where it cannot load.
    Ebpf,
    /// The process events connector (no eBPF).
    Connector,
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
    /// Backup and archive tools: their reads are kept as telemetry
    /// (`bannin events`), not raised.
    pub backup: Vec<PathBuf>,
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
    /// Whether `paths` are watched as they change (fanotify, else inotify), on
    /// top of the periodic rescan.
    pub realtime: bool,
    /// Most directories watched in real time.
    pub max_watches: usize,
    /// A new file whose mtime lies more than this before its ctime is
    /// timestomped (`file.timestamps`).
    pub timestomp: Duration,
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
    /// `host:port` of each collector, tried in order: the agent stays with the
    /// one it reaches and moves to the next when that one fails.
    pub addresses: Vec<String>,
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
    /// `[spool] max_state_bytes`: what the sensor states may take, apart from `max_bytes`.
    pub spool_max_state_bytes: u64,
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
    /// `[sensors] learn_secs`: how long after the agent's very first start the
    /// baseline sensors learn quietly (0: not at all).
    pub learn: Duration,
    /// The file this configuration was read from (in the integrity baseline).
    pub config_path: Option<PathBuf>,
    /// `[severity]`: finding kind → severity, over each sensor's default.
    pub severity: std::collections::BTreeMap<String, Severity>,
    /// `[response]`: DNS resolvers an isolated host may still use.
    pub dns_resolvers: Vec<std::net::IpAddr>,
    /// `[response] local_operator`: this agent runs on the operator's machine.
    pub local_operator: bool,
}
