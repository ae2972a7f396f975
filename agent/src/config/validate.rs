//! From the raw file to the validated types: every section checked, every problem
//! collected into one report (exit code 64), relative paths resolved against the
//! config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bannin_proto::config::ConfigErrors;
use bannin_proto::identity::HostId;
use bannin_proto::tls::{TlsPaths, check_key_permissions};
use bannin_proto::v1::Severity;

use super::raw::*;
use super::types::*;

/// A severity by name.
pub(super) fn severity(name: &str) -> Option<Severity> {
    Severity::from_name(name)
}

/// The settings every sensor section has, checked.
pub(super) fn common(
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
    /// Checks every section of `raw`, collecting every problem in `errors`;
    /// relative paths are resolved against `base` (the config file's directory).
    pub(super) fn validate(
        raw: Raw,
        base: &Path,
        mut errors: ConfigErrors,
        standalone: bool,
    ) -> Result<Self, ConfigErrors> {
        let e = &mut errors;
        let host_id = raw.host_id.as_deref().and_then(|h| {
            HostId::new(h)
                .map_err(|err| e.push(format!("host_id = {h:?}: {err}")))
                .ok()
        });
        let renew_before = Duration::from_secs(
            raw.tls
                .as_ref()
                .map_or_else(default_renew_before, |t| t.renew_before_secs),
        );
        let link = link(
            raw.collector,
            raw.link,
            raw.labels,
            renew_before,
            standalone,
            e,
        );
        let tls = tls(raw.tls, base, standalone, e);
        let (spool_dir, spool_max_bytes, spool_max_state_bytes) =
            spool(raw.spool, base, standalone, e);
        let s = raw.sensors;
        let fold_after = s.fold_after.unwrap_or(20).max(1);
        let learn_secs = s.learn_secs.unwrap_or(3600);
        if learn_secs > 30 * 86_400 {
            e.push(format!(
                "sensors.learn_secs = {learn_secs}: at most 2592000 (30 days)"
            ));
        }
        let file_odd_name = file_odd_name(s.file_odd_name, fold_after, &spool_dir, e);
        let l = &s.net_listener;
        let net_listener = common(e, "net_listener", l.enabled, l.interval_secs, &l.severity);
        let config = Self {
            dns_resolvers: dns_resolvers(&raw.response.dns_resolvers, e),
            local_operator: raw.response.local_operator,
            host_id,
            // Relative to the config file, as every other path is (`root = "fixture"`
            // next to the file means that fixture, wherever the agent is started).
            root: base.join(raw.root),
            tls,
            link,
            spool_dir,
            spool_max_bytes,
            spool_max_state_bytes,
            net_listener,
            net_connection: net_connection(s.net_connection, e),
            accounts: simple(e, "accounts", s.accounts.enabled, s.accounts.interval_secs),
            system: simple(e, "system", s.system.enabled, s.system.interval_secs),
            hardware: simple(e, "hardware", s.hardware.enabled, s.hardware.interval_secs),
            process: process(s.process, base, e),
            net_interface: net_interface(s.net_interface, e),
            severity: severity_overrides(&raw.severity, e),
            config_path: None,
            fold_after,
            learn: Duration::from_secs(learn_secs),
            file_access: file_access(s.file_access, e),
            resources: resources(s.resources, e),
            file_integrity: file_integrity(s.file_integrity, e),
            logs: logs(s.logs, e),
            file_odd_name,
        };
        errors.into_result()?;
        Ok(config)
    }
}

/// A sensor's common settings, with the default severity.
fn simple(errors: &mut ConfigErrors, name: &str, enabled: bool, interval: u64) -> SensorCommon {
    common(errors, name, enabled, interval, "info")
}

/// `[collector]` and `[link]`: where to connect and how.
fn link(
    collector: Option<RawCollector>,
    l: RawLink,
    labels: std::collections::BTreeMap<String, String>,
    renew_before: Duration,
    standalone: bool,
    errors: &mut ConfigErrors,
) -> LinkConfig {
    let given = collector.is_some();
    let collector = collector.unwrap_or_else(|| {
        if !standalone {
            errors.push("[collector] with address is required");
        }
        RawCollector {
            address: None,
            addresses: Vec::new(),
            server_name: default_server_name(),
        }
    });
    let addresses = match (collector.address, collector.addresses) {
        (Some(one), many) if many.is_empty() => vec![one],
        (None, many) => many,
        (Some(_), _) => {
            errors.push("[collector]: give address or addresses, not both");
            Vec::new()
        }
    };
    if given && addresses.is_empty() {
        errors.push("[collector]: address (or addresses, for several collectors) is required");
    }
    for (i, address) in addresses.iter().enumerate() {
        if !address.contains(':') {
            let key = if addresses.len() == 1 {
                "collector.address".to_owned()
            } else {
                format!("collector.addresses[{i}]")
            };
            errors.push(format!("{key} = {address:?}: expected host:port"));
        }
    }
    check_link(&l, errors);
    if let Err(e) = bannin_proto::labels::check(&labels) {
        errors.push(format!("[labels]: {e}"));
    }
    LinkConfig {
        addresses,
        server_name: collector.server_name,
        heartbeat: Duration::from_secs(l.heartbeat_secs),
        batch_max_events: l.batch_max_events,
        max_in_flight: l.max_in_flight,
        max_batches_per_sec: l.max_batches_per_sec,
        backoff_initial: Duration::from_millis(l.backoff_initial_ms.max(10)),
        backoff_max: Duration::from_secs(l.backoff_max_secs),
        labels,
        renew_before,
    }
}

/// `response.dns_resolvers`: addresses an isolated host may still ask.
fn dns_resolvers(given: &[String], errors: &mut ConfigErrors) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for r in given {
        match r.parse() {
            Ok(ip) => out.push(ip),
            Err(_) => errors.push(format!(
                "response.dns_resolvers: {r:?} is not an IP address"
            )),
        }
    }
    out
}

/// `[severity]`: per-kind overrides.
fn severity_overrides(
    given: &std::collections::BTreeMap<String, String>,
    errors: &mut ConfigErrors,
) -> std::collections::BTreeMap<String, Severity> {
    let mut out = std::collections::BTreeMap::new();
    for (kind, level) in given {
        match severity(level) {
            Some(v) => {
                out.insert(kind.clone(), v);
            }
            None => errors.push(format!(
                "severity.{kind:?} = {level:?}: expected info, low, medium, high or critical"
            )),
        }
    }
    out
}

/// Paths a section lists that must be absolute.
fn absolute<'a>(
    section: &str,
    paths: impl IntoIterator<Item = &'a PathBuf>,
    errors: &mut ConfigErrors,
) {
    for p in paths {
        if !p.is_absolute() {
            errors.push(format!("{section}: {} is not absolute", p.display()));
        }
    }
}

/// `[sensors.file_odd_name]`.
fn file_odd_name(
    o: RawOddName,
    fold_after: usize,
    spool_dir: &Path,
    errors: &mut ConfigErrors,
) -> OddNameConfig {
    let common = common(
        errors,
        "file_odd_name",
        o.enabled,
        o.interval_secs,
        &o.severity,
    );
    absolute("sensors.file_odd_name.paths", &o.paths, errors);
    absolute("sensors.file_odd_name.exclude", &o.exclude, errors);
    if o.exclude.iter().any(|x| x.parent().is_none()) {
        errors.push("sensors.file_odd_name.exclude: \"/\" would blind the sensor to everything");
    }
    // The agent's own spool holds its snapshot and capture bundles while they
    // are sent: never a finding. A standalone check has none (an empty path,
    // which every path starts with): nothing is left out then.
    let mut exclude = o.exclude;
    let own = std::fs::canonicalize(spool_dir).unwrap_or_else(|_| spool_dir.to_owned());
    if own.is_absolute() && own.parent().is_some() {
        exclude.push(own);
    }
    OddNameConfig {
        common,
        paths: o.paths,
        dotfiles_unexpected: o.dotfiles_unexpected,
        hidden_in: o.hidden_in,
        max_depth: o.max_depth,
        max_entries: o.max_entries,
        max_events: fold_after,
        realtime: o.realtime,
        max_watches: o.max_watches.max(1),
        exclude,
    }
}

/// `[sensors.net_connection]`.
fn net_connection(c: RawNetConnection, errors: &mut ConfigErrors) -> NetConnectionConfig {
    let common = common(errors, "net_connection", c.enabled, c.interval_secs, "info");
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
    if !(1..=100_000).contains(&c.max_flows_per_sweep) {
        errors.push(format!(
            "sensors.net_connection.max_flows_per_sweep = {}: must be 1 to 100000",
            c.max_flows_per_sweep
        ));
    }
    NetConnectionConfig {
        common,
        include_loopback: c.include_loopback,
        max_peers: c.max_peers,
        flood_threshold: c.flood_threshold,
        remote_admin_ports: c.remote_admin_ports,
        remote_admin_allow,
        flows: c.flows,
        max_flows_per_sweep: c.max_flows_per_sweep,
    }
}

/// `[sensors.process]`.
fn process(p: RawProcess, base: &Path, errors: &mut ConfigErrors) -> ProcessConfig {
    let common = simple(errors, "process", p.enabled, p.interval_secs);
    absolute(
        "sensors.process.suspicious_dirs",
        &p.suspicious_dirs,
        errors,
    );
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
    ProcessConfig {
        common,
        suspicious_dirs: p.suspicious_dirs,
        allow: p.allow,
        ioc_hashes,
        max_hash_bytes: p.max_hash_bytes,
        exec_telemetry: p.exec_telemetry,
        exec_events: p.exec_events,
        exec_source: match p.exec_source.as_str() {
            "auto" => ExecSource::Auto,
            "ebpf" => ExecSource::Ebpf,
            "connector" => ExecSource::Connector,
            other => {
                errors.push(format!(
                    "sensors.process.exec_source = {other:?}: expected \"auto\", \"ebpf\" or \"connector\""
                ));
                ExecSource::Auto
            }
        },
    }
}

/// `[sensors.net_interface]`.
fn net_interface(n: RawNetInterface, errors: &mut ConfigErrors) -> NetInterfaceConfig {
    let common = simple(errors, "net_interface", n.enabled, n.interval_secs);
    let above_one = |v: f64| v.is_finite() && v > 1.0;
    if !above_one(n.spike_factor) || !above_one(n.asymmetry_ratio) {
        errors.push("sensors.net_interface.spike_factor and asymmetry_ratio must be above 1");
    }
    NetInterfaceConfig {
        common,
        warmup_samples: n.warmup_samples,
        spike_factor: n.spike_factor,
        min_bytes_per_sec: n.min_bytes_per_sec,
        asymmetry_ratio: n.asymmetry_ratio,
    }
}

/// `[sensors.logs]`, with its patterns compiled.
fn logs(lg: RawLogs, errors: &mut ConfigErrors) -> LogsConfig {
    let common = simple(errors, "logs", lg.enabled, lg.interval_secs);
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
    LogsConfig {
        common,
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
    }
}

/// `[sensors.file_access]`.
fn file_access(fa: RawFileAccess, errors: &mut ConfigErrors) -> FileAccessConfig {
    let common = simple(errors, "file_access", fa.enabled, fa.interval_secs);
    absolute(
        "sensors.file_access",
        fa.paths.iter().chain(&fa.allow),
        errors,
    );
    FileAccessConfig {
        common,
        paths: fa.paths,
        allow: fa.allow,
        backup: fa.backup,
    }
}

/// `[sensors.resources]`.
fn resources(rs: RawResources, errors: &mut ConfigErrors) -> ResourcesConfig {
    let common = simple(errors, "resources", rs.enabled, rs.interval_secs);
    for (name, v) in [
        ("threshold_percent", rs.threshold_percent),
        ("margin_percent", rs.margin_percent),
    ] {
        if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
            errors.push(format!("sensors.resources.{name} = {v}: must be 1 to 100"));
        }
    }
    ResourcesConfig {
        common,
        warmup_samples: rs.warmup_samples,
        threshold: rs.threshold_percent / 100.0,
        margin: rs.margin_percent / 100.0,
    }
}

/// `[sensors.file_integrity]`.
fn file_integrity(fi: RawFileIntegrity, errors: &mut ConfigErrors) -> FileIntegrityConfig {
    let common = simple(errors, "file_integrity", fi.enabled, fi.interval_secs);
    absolute(
        "sensors.file_integrity",
        fi.paths.iter().chain(&fi.library_paths),
        errors,
    );
    FileIntegrityConfig {
        common,
        paths: fi.paths,
        library_paths: fi.library_paths,
        hash_rate_mib: fi.hash_rate_mib,
        max_file_bytes: fi.max_file_bytes,
        one_filesystem: fi.one_filesystem,
        realtime: fi.realtime,
        max_watches: fi.max_watches.max(1),
        timestomp: Duration::from_secs(fi.timestomp_secs.max(60)),
    }
}

/// `[tls]`: the three files, relative to the config file; the key owner-only.
fn tls(raw: Option<RawTls>, base: &Path, standalone: bool, errors: &mut ConfigErrors) -> TlsPaths {
    match raw {
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
    }
}

/// `[spool]`: its directory (relative to the config file) and byte cap.
fn spool(
    raw: Option<RawSpool>,
    base: &Path,
    standalone: bool,
    errors: &mut ConfigErrors,
) -> (PathBuf, u64, u64) {
    match raw {
        Some(s) => {
            if s.max_bytes < 1024 * 1024 {
                errors.push(format!(
                    "spool.max_bytes = {}: must be at least 1 MiB",
                    s.max_bytes
                ));
            }
            if s.max_state_bytes < 1024 * 1024 {
                errors.push(format!(
                    "spool.max_state_bytes = {}: must be at least 1 MiB",
                    s.max_state_bytes
                ));
            }
            (base.join(s.dir), s.max_bytes, s.max_state_bytes)
        }
        None => {
            if !standalone {
                errors.push("[spool] with dir is required");
            }
            (PathBuf::new(), 0, default_state_bytes())
        }
    }
}

/// `[link]`: heartbeat, batching, replay pace and backoff bounds.
fn check_link(l: &RawLink, errors: &mut ConfigErrors) {
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
}
