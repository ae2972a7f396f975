//! Host inventory and liveness: who is connected, when each host was last
//! heard from, and which hosts went silent.

use std::collections::HashMap;
use std::sync::Mutex;

use bannin_proto::identity::HostId;
use bannin_proto::{now_unix_ms, v1};

use crate::model::{HostRecord, SensorHealth};
use crate::store::{Store, StoreError};

/// Heartbeat interval assumed when an agent announces none.
pub const DEFAULT_HEARTBEAT_SECS: u32 = 30;

struct Live {
    record: HostRecord,
    sessions: u32,
}

/// Every host the collector knows, with its live sessions.
///
/// A `std::sync::Mutex`: every critical section is a few map operations with no
/// `.await` inside; persisting a record is a sled insert (no flush).
pub struct HostRegistry {
    store: Store,
    fleet: std::sync::Arc<crate::correlate::FleetView>,
    hosts: Mutex<HashMap<String, Live>>,
    silent_after_heartbeats: u32,
}

/// A host as listed to operators.
#[derive(Debug, Clone)]
pub struct HostView {
    /// Stored record.
    pub record: HostRecord,
    /// Connected now and heard from within its silence timeout.
    pub online: bool,
}

impl HostRegistry {
    /// Loads the known hosts from the store; none is connected yet.
    pub fn load(
        store: Store,
        silent_after_heartbeats: u32,
        fleet: std::sync::Arc<crate::correlate::FleetView>,
    ) -> Result<Self, StoreError> {
        let hosts: HashMap<String, Live> = store
            .hosts()?
            .into_iter()
            .map(|record| {
                (
                    record.host_id.clone(),
                    Live {
                        record,
                        sessions: 0,
                    },
                )
            })
            .collect();
        for live in hosts.values() {
            fleet.set_addresses(&live.record.host_id, &live.record.addresses);
        }
        Ok(Self {
            store,
            fleet,
            hosts: Mutex::new(hosts),
            silent_after_heartbeats,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new session of `host` and its inventory.
    pub fn connected(
        &self,
        host: &HostId,
        hello: &v1::Hello,
        peer_address: String,
    ) -> Result<(), StoreError> {
        let now = now_unix_ms();
        let record = {
            let mut hosts = self.lock();
            let live = hosts.entry(host.to_string()).or_insert_with(|| Live {
                record: HostRecord {
                    host_id: host.to_string(),
                    hostname: String::new(),
                    os: String::new(),
                    kernel: String::new(),
                    addresses: Vec::new(),
                    agent_version: String::new(),
                    first_seen_unix_ms: now,
                    last_seen_unix_ms: now,
                    heartbeat_interval_secs: DEFAULT_HEARTBEAT_SECS,
                    sensors: Vec::new(),
                    spool_bytes: 0,
                    peer_address: String::new(),
                    silent: false,
                },
                sessions: 0,
            });
            live.sessions += 1;
            let r = &mut live.record;
            r.hostname = hello.hostname.clone();
            r.os = hello.os.clone();
            r.kernel = hello.kernel.clone();
            r.addresses = hello.addresses.clone();
            r.agent_version = hello.agent_version.clone();
            r.last_seen_unix_ms = now;
            r.heartbeat_interval_secs = if hello.heartbeat_interval_secs == 0 {
                DEFAULT_HEARTBEAT_SECS
            } else {
                hello.heartbeat_interval_secs
            };
            r.sensors = hello
                .sensors
                .iter()
                .cloned()
                .map(SensorHealth::from_wire)
                .collect();
            r.peer_address = peer_address;
            r.silent = false;
            r.clone()
        };
        self.fleet.set_addresses(&record.host_id, &record.addresses);
        self.store.put_host(&record)?;
        match bannin_proto::labels::check(&hello.labels) {
            Ok(()) => {
                let mut labels = self.store.host_labels(host.as_str())?;
                if labels.reported != hello.labels {
                    labels.reported = hello.labels.clone();
                    self.store.put_host_labels(host.as_str(), &labels)?;
                }
            }
            Err(error) => {
                tracing::warn!(host.id = %host, %error, "Labels in hello refused; keeping the host's previous labels");
            }
        }
        Ok(())
    }

    /// Records a heartbeat.
    pub fn heartbeat(&self, host: &HostId, beat: &v1::Heartbeat) -> Result<(), StoreError> {
        let record = {
            let mut hosts = self.lock();
            let Some(live) = hosts.get_mut(host.as_str()) else {
                return Ok(());
            };
            live.record.last_seen_unix_ms = now_unix_ms();
            live.record.sensors = beat
                .sensors
                .iter()
                .cloned()
                .map(SensorHealth::from_wire)
                .collect();
            live.record.spool_bytes = beat.spool_bytes;
            live.record.silent = false;
            live.record.clone()
        };
        self.store.put_host(&record)
    }

    /// Notes that `host` was heard from (any message).
    pub fn seen(&self, host: &HostId) {
        if let Some(live) = self.lock().get_mut(host.as_str()) {
            live.record.last_seen_unix_ms = now_unix_ms();
            live.record.silent = false;
        }
    }

    /// Records the end of a session.
    pub fn disconnected(&self, host: &HostId) -> Result<(), StoreError> {
        let record = {
            let mut hosts = self.lock();
            let Some(live) = hosts.get_mut(host.as_str()) else {
                return Ok(());
            };
            live.sessions = live.sessions.saturating_sub(1);
            live.record.clone()
        };
        self.store.put_host(&record)
    }

    fn timeout_ms(&self, record: &HostRecord) -> i64 {
        i64::from(record.heartbeat_interval_secs) * i64::from(self.silent_after_heartbeats) * 1000
    }

    /// Every host, by host id.
    pub fn list(&self) -> Vec<HostView> {
        let now = now_unix_ms();
        let mut out: Vec<HostView> = self
            .lock()
            .values()
            .map(|l| HostView {
                online: l.sessions > 0
                    && now - l.record.last_seen_unix_ms <= self.timeout_ms(&l.record),
                record: l.record.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.record.host_id.cmp(&b.record.host_id));
        out
    }

    /// Hosts silent past their timeout that were not yet reported; marks them reported.
    pub fn newly_silent(&self, now: i64) -> Vec<HostRecord> {
        let mut out = Vec::new();
        {
            let mut hosts = self.lock();
            for live in hosts.values_mut() {
                let timeout = self.timeout_ms(&live.record);
                if !live.record.silent && now - live.record.last_seen_unix_ms > timeout {
                    live.record.silent = true;
                    out.push(live.record.clone());
                }
            }
        }
        for r in &out {
            if let Err(error) = self.store.put_host(r) {
                tracing::warn!(host.id = %r.host_id, %error, "Cannot persist host state");
            }
        }
        out
    }
}
