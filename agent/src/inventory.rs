//! The host inventory an agent announces in its Hello.

use bannin_proto::v1;
use sysinfo::{Networks, System};

/// Hostname, OS, kernel, addresses and boot time of this host.
pub fn hello(
    host_id: &str,
    heartbeat_secs: u32,
    sensors: Vec<v1::SensorHealth>,
    labels: &std::collections::BTreeMap<String, String>,
) -> v1::Hello {
    let networks = Networks::new_with_refreshed_list();
    let mut addresses: Vec<String> = networks
        .values()
        .flat_map(|data| data.ip_networks().iter().map(|n| n.addr))
        .filter(|a| !a.is_loopback())
        .map(|a| a.to_string())
        .collect();
    addresses.sort();
    addresses.dedup();
    v1::Hello {
        host_id: host_id.to_owned(),
        hostname: bannin_proto::hello::host_name(&System::host_name().unwrap_or_default()),
        os: System::long_os_version().unwrap_or_else(|| "Linux".into()),
        kernel: System::kernel_version().unwrap_or_default(),
        addresses,
        agent_version: bannin_proto::VERSION.into(),
        boot_time_unix_ms: i64::try_from(System::boot_time()).unwrap_or(0) * 1000,
        sensors,
        heartbeat_interval_secs: heartbeat_secs,
        labels: labels.clone(),
    }
}
