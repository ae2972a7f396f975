//! Host inventory and liveness: who is connected, when each host was last
//! heard from, and which hosts went silent.

use std::collections::HashMap;
use std::sync::Mutex;

use bannin_proto::identity::HostId;
use bannin_proto::{now_unix_ms, v1};
use serde::{Deserialize, Serialize};

use crate::model::{HostRecord, SensorHealth};
use crate::store::{Store, StoreError};

/// Heartbeat interval assumed when an agent announces none.
pub const DEFAULT_HEARTBEAT_SECS: u32 = 30;

struct Live {
    record: HostRecord,
    sessions: Vec<Session>,
    /// A clone was reported for the sessions alive now.
    clone_reported: bool,
    /// Cluster mode: the other collector holding this host's stream, as its
    /// presence entry says ("" when none does).
    remote: String,
    /// Cluster mode: another collector's live session of this host while it
    /// has one here too (a second machine with the same identity).
    remote_session: Option<RemoteSession>,
}

/// Another collector's word that it holds a session of a host this
/// collector holds too.
#[derive(Debug, Clone)]
struct RemoteSession {
    collector: String,
    peer: String,
    hostname: String,
    /// When it was first heard of while a session was live here.
    since: i64,
    /// The last time that collector heard from it.
    last_seen: i64,
    /// When that session began, as its collector says (0: a collector of an
    /// earlier version, which does not say).
    started: i64,
}

/// One live stream of a host.
#[derive(Debug, Clone)]
struct Session {
    id: u64,
    peer: String,
    hostname: String,
    started: i64,
    last_seen: i64,
}

/// Two live sessions of one host id, both heard from: a cloned identity.
#[derive(Debug, Clone)]
pub struct CloneSuspect {
    /// The host id.
    pub host_id: String,
    /// (peer address, hostname) of each live session.
    pub sessions: Vec<(String, String)>,
    /// Cluster mode: the collectors holding them, when more than this one
    /// (sorted; empty otherwise).
    pub collectors: Vec<String>,
}

/// Two or more hosts describing themselves with one name or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConflict {
    /// The host whose Hello made the conflict.
    pub host_id: String,
    /// `hostname` or `address`.
    pub claim: &'static str,
    /// The name or address.
    pub value: String,
    /// Every host claiming it, by host id, sorted.
    pub hosts: Vec<String>,
}

/// Addresses many unrelated hosts have by design (link-local, the default
/// Docker and libvirt bridges): sharing one is no conflict.
pub fn commonly_shared(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            v4.is_link_local()
                || v4.is_loopback()
                || v4.is_unspecified()
                || v4 == std::net::Ipv4Addr::new(172, 17, 0, 1)
                || v4 == std::net::Ipv4Addr::new(192, 168, 122, 1)
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Every host the collector knows, with its live sessions.
///
/// A `std::sync::Mutex`: every critical section is a few map operations with no
/// `.await` inside; persisting a record is a sled insert (no flush).
pub struct HostRegistry {
    next_session: std::sync::atomic::AtomicU64,
    revoked: std::sync::RwLock<HashMap<String, crate::model::RevokedHost>>,
    /// Revoked public keys (SHA-256 hex) → the host they were revoked as.
    revoked_keys: std::sync::RwLock<HashMap<String, String>>,
    revocations: tokio::sync::watch::Sender<u64>,
    store: Store,
    fleet: std::sync::Arc<crate::correlate::FleetView>,
    hosts: Mutex<HashMap<String, Live>>,
    silent_after_heartbeats: u32,
    /// Cluster mode: this collector's name.
    collector_name: std::sync::OnceLock<String>,
    /// Identity conflicts seen and not yet raised; and every one raised (by
    /// claim), so each is raised once.
    conflicts: Mutex<(Vec<IdentityConflict>, std::collections::HashSet<String>)>,
}

/// A host as listed to operators.
#[derive(Debug, Clone)]
pub struct HostView {
    /// Stored record.
    pub record: HostRecord,
    /// Connected now and heard from within its silence timeout.
    pub online: bool,
    /// Cluster mode: the collector holding its stream ("" when none, or not
    /// in cluster mode).
    pub collector: String,
}

/// Which collector holds a host's stream, as the collectors of a cluster tell each other (kept in
/// `BANNIN_HOSTS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The collector ("" once the stream closed).
    pub collector: String,
    /// Last heard from (Unix ms).
    pub last_seen_unix_ms: i64,
    /// The host's record as that collector keeps it.
    pub record: crate::model::HostRecord,
    /// When that collector's session of the host began (Unix ms; 0 when
    /// not said): of two collectors holding one identity at once, commands
    /// go to the older session.
    #[serde(default)]
    pub session_started_unix_ms: i64,
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
                        sessions: Vec::new(),
                        clone_reported: false,
                        remote: String::new(),
                        remote_session: None,
                    },
                )
            })
            .collect();
        for live in hosts.values() {
            fleet.set_addresses(&live.record.host_id, &live.record.addresses);
        }
        let revoked = store
            .revoked_hosts()?
            .into_iter()
            .map(|r| (r.host_id.clone(), r))
            .collect();
        let revoked_keys = store.revoked_keys()?.into_iter().collect();
        Ok(Self {
            next_session: std::sync::atomic::AtomicU64::new(1),
            revoked: std::sync::RwLock::new(revoked),
            revoked_keys: std::sync::RwLock::new(revoked_keys),
            revocations: tokio::sync::watch::channel(0).0,
            store,
            fleet,
            hosts: Mutex::new(hosts),
            silent_after_heartbeats,
            collector_name: std::sync::OnceLock::new(),
            conflicts: Mutex::new((Vec::new(), std::collections::HashSet::new())),
        })
    }

    /// Identity conflicts seen since the last call (each raised once).
    pub fn new_identity_conflicts(&self) -> Vec<IdentityConflict> {
        std::mem::take(&mut bannin_proto::lock(&self.conflicts).0)
    }

    /// Notes the hosts that claim `record`'s hostname or one of its addresses too.
    fn check_identity(&self, record: &HostRecord, hosts: &HashMap<String, Live>) {
        let mut found = Vec::new();
        if !record.hostname.is_empty() {
            let mut claimants: Vec<String> = hosts
                .values()
                .filter(|l| l.record.hostname == record.hostname)
                .map(|l| l.record.host_id.clone())
                .collect();
            if claimants.len() > 1 {
                claimants.sort();
                found.push(("hostname", record.hostname.clone(), claimants));
            }
        }
        let bare = |a: &str| -> Option<std::net::IpAddr> {
            a.split('/')
                .next()?
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical())
        };
        for ip in record.addresses.iter().filter_map(|a| bare(a)) {
            if commonly_shared(ip) {
                continue;
            }
            let mut claimants: Vec<String> = hosts
                .values()
                .filter(|l| l.record.addresses.iter().any(|a| bare(a) == Some(ip)))
                .map(|l| l.record.host_id.clone())
                .collect();
            if claimants.len() > 1 {
                claimants.sort();
                found.push(("address", ip.to_string(), claimants));
            }
        }
        if found.is_empty() {
            return;
        }
        let mut conflicts = bannin_proto::lock(&self.conflicts);
        for (claim, value, claimants) in found {
            let key = format!("{claim}:{value}:{}", claimants.join(","));
            if conflicts.1.insert(key) {
                conflicts.0.push(IdentityConflict {
                    host_id: record.host_id.clone(),
                    claim,
                    value,
                    hosts: claimants,
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        bannin_proto::lock(&self.hosts)
    }

    /// The revocation of `host`, if it is revoked.
    pub fn revocation(&self, host: &str) -> Option<crate::model::RevokedHost> {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .cloned()
    }

    /// Whether `host` is revoked.
    pub fn is_revoked(&self, host: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(host)
    }

    /// The host `key` (SHA-256 hex of a public key) was revoked as, if it was.
    pub fn key_revoked(&self, key: &str) -> Option<String> {
        self.revoked_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Why a peer presenting `identity` with `key` must be refused, if it must:
    /// its host id is revoked, or its key is, whatever id the certificate names.
    pub fn refusal(
        &self,
        identity: &bannin_proto::identity::PeerIdentity,
        key: &str,
    ) -> Option<String> {
        if let bannin_proto::identity::PeerIdentity::Agent(h) = identity
            && self.is_revoked(h.as_str())
        {
            return Some(format!("host {h} is revoked"));
        }
        self.key_revoked(key)
            .map(|was| format!("this certificate's key was revoked with host {was}"))
    }

    /// Remembers that `host` holds `key` (so revoking the host revokes the key).
    pub fn key_seen(&self, host: &HostId, key: &str) -> Result<(), StoreError> {
        if self.store.record_host_key(host.as_str(), key)? {
            tracing::debug!(host.id = %host, key.sha256 = %key, "New key for host");
        }
        Ok(())
    }

    /// Revokes `host` and every key it is known to hold, with `more_keys` (from
    /// certificates the operator handed in): durable, then every live session
    /// is told. Returns its live sessions and the keys revoked.
    pub fn revoke(
        &self,
        revoked: crate::model::RevokedHost,
        more_keys: &[String],
    ) -> Result<(usize, Vec<String>), StoreError> {
        let host = revoked.host_id.clone();
        let mut keys = self.store.host_keys(&host)?;
        for k in more_keys {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        self.store.revoke_host(&revoked)?;
        for k in &keys {
            self.store.revoke_key(k, &host)?;
        }
        self.store.make_durable()?;
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.clone(), revoked);
        {
            let mut revoked_keys = self.revoked_keys.write().unwrap_or_else(|p| p.into_inner());
            for k in &keys {
                revoked_keys.insert(k.clone(), host.clone());
            }
        }
        // Counted before the sessions hear of it: each ends itself as soon
        // as it does (on another thread), and would no longer be counted.
        let live = self.lock().get(&host).map_or(0, |l| l.sessions.len());
        self.revocations.send_modify(|n| *n += 1);
        Ok((live, keys))
    }

    /// Changes whenever a host is revoked.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Records a new session of `host` and its inventory; returns the session's id.
    pub fn connected(
        &self,
        host: &HostId,
        hello: &v1::Hello,
        peer_address: String,
    ) -> Result<u64, StoreError> {
        let now = now_unix_ms();
        let session = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
                sessions: Vec::new(),
                clone_reported: false,
                remote: String::new(),
                remote_session: None,
            });
            live.sessions.push(Session {
                id: session,
                peer: peer_address.clone(),
                hostname: hello.hostname.clone(),
                started: now,
                last_seen: now,
            });
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
            let record = r.clone();
            self.check_identity(&record, &hosts);
            record
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
        Ok(session)
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

    /// Notes that `host` was heard from (any message) on `session`.
    pub fn seen(&self, host: &HostId, session: u64) {
        let now = now_unix_ms();
        if let Some(live) = self.lock().get_mut(host.as_str()) {
            live.record.last_seen_unix_ms = now;
            live.record.silent = false;
            if let Some(s) = live.sessions.iter_mut().find(|s| s.id == session) {
                s.last_seen = now;
            }
        }
    }

    /// Records the end of a session.
    pub fn disconnected(&self, host: &HostId, session: u64) -> Result<(), StoreError> {
        let record = {
            let mut hosts = self.lock();
            let Some(live) = hosts.get_mut(host.as_str()) else {
                return Ok(());
            };
            live.sessions.retain(|s| s.id != session);
            if live.sessions.len() < 2 {
                live.clone_reported = false;
            }
            live.record.clone()
        };
        self.store.put_host(&record)
    }

    /// Hosts with two or more sessions that have each lived, and been heard
    /// from, for two heartbeat intervals: one identity on two machines. A
    /// reconnect whose old stream has not been noticed dead yet is not one — that
    /// stream goes quiet. Each is reported once while it lasts.
    pub fn new_clones(&self, now: i64) -> Vec<CloneSuspect> {
        let mut out = Vec::new();
        for live in self.lock().values_mut() {
            if live.clone_reported
                || live.sessions.len() + usize::from(live.remote_session.is_some()) < 2
            {
                continue;
            }
            let beat = i64::from(live.record.heartbeat_interval_secs.max(1)) * 1000;
            let alive = |started: i64, last_seen: i64| {
                now - started >= 2 * beat && now - last_seen <= 2 * beat
            };
            let mut sessions: Vec<(String, String)> = live
                .sessions
                .iter()
                .filter(|s| alive(s.started, s.last_seen))
                .map(|s| (s.peer.clone(), s.hostname.clone()))
                .collect();
            let mut collectors = Vec::new();
            if let Some(r) = &live.remote_session
                && !sessions.is_empty()
                && alive(r.since, r.last_seen)
            {
                sessions.push((r.peer.clone(), r.hostname.clone()));
                collectors.push(r.collector.clone());
                if let Some(me) = self.collector_name.get() {
                    collectors.push(me.clone());
                }
                collectors.sort();
            }
            if sessions.len() >= 2 {
                live.clone_reported = true;
                out.push(CloneSuspect {
                    host_id: live.record.host_id.clone(),
                    sessions,
                    collectors,
                });
            }
        }
        out
    }

    fn timeout_ms(&self, record: &HostRecord) -> i64 {
        i64::from(record.heartbeat_interval_secs) * i64::from(self.silent_after_heartbeats) * 1000
    }

    /// Cluster mode: names this collector (shown as the holder of its own
    /// hosts' streams).
    pub fn set_collector_name(&self, name: &str) {
        let _ = self.collector_name.set(name.to_owned());
    }

    /// When this collector's oldest live session of `host` began.
    pub fn session_started(&self, host: &str) -> Option<i64> {
        self.lock()
            .get(host)
            .and_then(|l| l.sessions.iter().map(|s| s.started).min())
    }

    /// Cluster mode: the other collector whose live session of `host` began
    /// before this collector's (ties: the smaller name) — one identity held
    /// on two collectors at once, a clone. Commands go to that one session
    /// only: both collectors compare the same two start times, so exactly
    /// one delivers, whichever the command was issued through. `None`: this
    /// collector's session is the one (or the only one).
    pub fn elder_elsewhere(&self, host: &str, now: i64) -> Option<String> {
        let me = self.collector_name.get()?;
        let hosts = self.lock();
        let live = hosts.get(host)?;
        let mine = live.sessions.iter().map(|s| s.started).min()?;
        let r = live.remote_session.as_ref()?;
        let beat = i64::from(live.record.heartbeat_interval_secs.max(1)) * 1000;
        // Heard from lately, and saying when it began.
        if now - r.last_seen > 2 * beat || r.started == 0 {
            return None;
        }
        ((r.started, r.collector.as_str()) < (mine, me.as_str())).then(|| r.collector.clone())
    }

    /// A host's record as kept now.
    pub fn record(&self, host: &HostId) -> Option<HostRecord> {
        self.lock().get(host.as_str()).map(|l| l.record.clone())
    }

    /// Hosts with a stream on this collector.
    pub fn connected_count(&self) -> u64 {
        self.lock()
            .values()
            .filter(|l| !l.sessions.is_empty())
            .count() as u64
    }

    /// Cluster mode: another collector's word on a host (from the presence
    /// bucket). A host with a stream here keeps what its own stream says; any
    /// other takes the record and liveness the holding collector published,
    /// so every collector lists, correlates and watches the whole fleet.
    /// Kept in memory only (the bucket is replayed at start).
    pub fn remote(&self, presence: Presence) {
        if self
            .collector_name
            .get()
            .is_some_and(|me| *me == presence.collector)
        {
            return;
        }
        let record = {
            let mut hosts = self.lock();
            let live = hosts
                .entry(presence.record.host_id.clone())
                .or_insert_with(|| Live {
                    record: presence.record.clone(),
                    sessions: Vec::new(),
                    clone_reported: false,
                    remote: String::new(),
                    remote_session: None,
                });
            // A session here and another collector's live one: kept for
            // `new_clones`, which judges both by the same rule.
            if live.sessions.is_empty() || presence.collector.is_empty() {
                live.remote_session = None;
            } else {
                let since = match &live.remote_session {
                    Some(r) if r.collector == presence.collector => r.since,
                    _ => bannin_proto::now_unix_ms(),
                };
                live.remote_session = Some(RemoteSession {
                    collector: presence.collector.clone(),
                    peer: presence.record.peer_address.clone(),
                    hostname: presence.record.hostname.clone(),
                    since,
                    last_seen: presence.last_seen_unix_ms,
                    started: presence.session_started_unix_ms,
                });
            }
            live.remote = presence.collector;
            if live.sessions.is_empty() {
                let first_seen = live
                    .record
                    .first_seen_unix_ms
                    .min(presence.record.first_seen_unix_ms);
                let last_seen = live
                    .record
                    .last_seen_unix_ms
                    .max(presence.last_seen_unix_ms);
                let silent = live.record.silent && last_seen == live.record.last_seen_unix_ms;
                live.record = presence.record;
                live.record.first_seen_unix_ms = first_seen;
                live.record.last_seen_unix_ms = last_seen;
                live.record.silent = silent;
            }
            live.record.clone()
        };
        // Not written to this collector's store: the presence bucket is where
        // it lives (watched from its first revision at every start), and a
        // fleet's worth of other collectors' records in sled cost each
        // collector memory for nothing (BENCHMARKS.md, "Cluster mode").
        self.fleet.set_addresses(&record.host_id, &record.addresses);
    }

    /// Cluster mode: a `host.silent` finding for `host` was applied (raised
    /// by whichever collector): no other collector raises it again.
    pub fn mark_silent(&self, host: &str) {
        if let Some(live) = self.lock().get_mut(host) {
            live.record.silent = true;
        }
    }

    /// Every host, by host id.
    pub fn list(&self) -> Vec<HostView> {
        let now = now_unix_ms();
        let me = self.collector_name.get().cloned().unwrap_or_default();
        let mut out: Vec<HostView> = self
            .lock()
            .values()
            .map(|l| HostView {
                online: (!l.sessions.is_empty() || !l.remote.is_empty())
                    && now - l.record.last_seen_unix_ms <= self.timeout_ms(&l.record),
                collector: if !l.sessions.is_empty() {
                    me.clone()
                } else {
                    l.remote.clone()
                },
                record: l.record.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.record.host_id.cmp(&b.record.host_id));
        out
    }

    /// Hosts silent past their timeout that were not yet reported; marks them reported.
    ///
    /// Cluster mode (`live_collectors` given, sorted): each silent host is
    /// this collector's to report only if its stream was last held here, or by
    /// a collector that is gone (or none) and this one is the first live
    /// collector by name — so one collector reports it, whichever died.
    pub fn newly_silent(&self, now: i64, live_collectors: Option<&[String]>) -> Vec<HostRecord> {
        let me = self.collector_name.get().cloned().unwrap_or_default();
        let mine = |live: &Live| match live_collectors {
            None => true,
            Some(collectors) => {
                let holder = if live.sessions.is_empty() {
                    live.remote.as_str()
                } else {
                    me.as_str()
                };
                holder == me
                    || (!collectors.iter().any(|c| c == holder)
                        && collectors.first().is_some_and(|first| *first == me))
            }
        };
        let mut out = Vec::new();
        {
            let mut hosts = self.lock();
            for live in hosts.values_mut() {
                let timeout = self.timeout_ms(&live.record);
                if !live.record.silent
                    && now - live.record.last_seen_unix_ms > timeout
                    && mine(live)
                {
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
