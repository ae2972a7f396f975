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
        let host_id = raw.host_id.as_deref().and_then(|h| {
            HostId::new(h)
                .map_err(|e| errors.push(format!("host_id = {h:?}: {e}")))
                .ok()
        });
        let raw_has_collector = raw.collector.is_some();
        let collector = raw.collector.unwrap_or_else(|| {
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
        if raw_has_collector && addresses.is_empty() {
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
        let renew_before = Duration::from_secs(
            raw.tls
                .as_ref()
                .map_or_else(default_renew_before, |t| t.renew_before_secs),
        );
        let tls = tls(raw.tls, base, standalone, &mut errors);
        let (spool_dir, spool_max_bytes, spool_max_state_bytes) =
            spool(raw.spool, base, standalone, &mut errors);
        let l = raw.link;
        check_link(&l, &mut errors);
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
        let learn_secs = s.learn_secs.unwrap_or(3600);
        if learn_secs > 30 * 86_400 {
            errors.push(format!(
                "sensors.learn_secs = {learn_secs}: at most 2592000 (30 days)"
            ));
        }
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
                addresses,
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
            spool_max_state_bytes,
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
            learn: Duration::from_secs(learn_secs),
            file_access: FileAccessConfig {
                common: access_common,
                paths: fa.paths,
                allow: fa.allow,
                backup: fa.backup,
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
                realtime: fi.realtime,
                max_watches: fi.max_watches.max(1),
                timestomp: Duration::from_secs(fi.timestomp_secs.max(60)),
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
                hidden_in: o.hidden_in,
                max_depth: o.max_depth,
                max_entries: o.max_entries,
                max_events: fold_after.max(1),
                realtime: o.realtime,
                max_watches: o.max_watches.max(1),
            },
        })
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
