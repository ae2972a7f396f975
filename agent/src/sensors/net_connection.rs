//! `net.connection`: the peers this host talks to, from the established TCP
//! sockets in `/proc/net/{tcp,tcp6}`: telemetry (not findings) that gives the
//! collector the network picture of an incident — who reached whom, on which
//! port, with which program.
//!
//! A connection is reported once per (direction, peer address, service port):
//! inbound when the local port is one this host listens on, outbound
//! otherwise; the service port is the listening side's. What was reported is
//! remembered (at most `max_peers` entries, oldest forgotten first) across
//! restarts. Loopback peers are left out unless `include_loopback` is set.
//!
//! Two findings come from the same read:
//!
//! - `net.connection_flood` (medium): at least `flood_threshold` established
//!   connections with one peer, in and out together — raised when the peer
//!   crosses the threshold, again only after it has dropped below it;
//! - `net.unapproved_remote_access` (high): an inbound session on a
//!   remote-administration port (ssh, RDP, VNC, WinRM) from a peer outside
//!   `remote_admin_allow`; the check is on when that list is not empty.
//!
//! And a flow log, `net.flow` (telemetry): every TCP connection when it
//! closes — start, end, duration, bytes each way, direction, process —
//! captured in the kernel (`source::flow_bpf`), so that a connection of a
//! third of a second is recorded as one of a day is. Past
//! `max_flows_per_sweep`, flows are folded into one event per (direction,
//! peer, port, program) with their count: bounded, and nothing uncounted.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use bannin_proto::v1::Severity;

use super::source::flow_bpf::{Flow, FlowQueue};
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event, running_as_root};
use crate::config::NetConnectionConfig;
use crate::host::net::{Socket, parse_sockets, socket_owners};

/// Most connections reported by one sweep; the rest wait for the next.
pub const MAX_EVENTS_PER_SWEEP: usize = 1000;

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

/// One peer of this host, as reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// The other end (IPv4-mapped addresses shown as IPv4).
    pub peer: IpAddr,
    /// The listening side's port.
    pub port: u16,
}

impl Peer {
    /// Identity across sweeps.
    pub fn key(&self) -> String {
        format!("{} {} {}", self.direction, self.peer, self.port)
    }
}

/// Established TCP connections of `sockets`, as peers, with the socket of each.
pub fn peers(sockets: &[Socket], include_loopback: bool) -> Vec<(Peer, &Socket)> {
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| s.local.1)
        .collect();
    sockets
        .iter()
        .filter(|s| s.state == TCP_ESTABLISHED)
        .filter_map(|s| {
            let peer = s.remote.0.to_canonical();
            if peer.is_loopback() && !include_loopback {
                return None;
            }
            let inbound = listening.contains(&s.local.1);
            Some((
                Peer {
                    direction: if inbound { "inbound" } else { "outbound" },
                    peer,
                    port: if inbound { s.local.1 } else { s.remote.1 },
                },
                s,
            ))
        })
        .collect()
}

/// The sensor.
pub struct NetConnection {
    root: HostRoot,
    config: NetConnectionConfig,
    order: VecDeque<String>,
    known: HashSet<String>,
    /// Peers at or over the flood threshold at the last sweep.
    flooding: HashSet<IpAddr>,
    /// Closed connections from the kernel, when the flow probe runs.
    flows: Option<std::sync::Arc<std::sync::Mutex<FlowQueue>>>,
    /// Why the flow probe does not run, if it is wanted and does not.
    flow_problem: Option<String>,
    /// Notified by the flow reader when flows are waiting.
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// When `/proc/net` was last read: a sweep woken by flows sooner than an
    /// interval after it only reports the flows.
    last_read: Option<std::time::Instant>,
    /// Flow records not kept, reported as `agent.events_lost`.
    losses: super::LossReport,
}

impl NetConnection {
    /// A sensor reading under `root`, remembering the peers it saved last.
    pub fn new(root: HostRoot, config: NetConnectionConfig, known: Option<Vec<String>>) -> Self {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let (flows, flow_problem) = if config.flows {
            let queue = std::sync::Arc::new(std::sync::Mutex::new(FlowQueue::default()));
            match super::source::flow_bpf::start(root.clone(), queue.clone(), wake.clone()) {
                Ok(()) => (Some(queue), None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        let mut sensor = Self {
            root,
            config,
            order: VecDeque::new(),
            known: HashSet::new(),
            flooding: HashSet::new(),
            flows,
            flow_problem,
            wake,
            last_read: None,
            losses: super::LossReport::default(),
        };
        for key in known.unwrap_or_default() {
            sensor.remember(key);
        }
        sensor
    }

    fn remember(&mut self, key: String) {
        if self.known.insert(key.clone()) {
            self.order.push_back(key);
        }
        while self.order.len() > self.config.max_peers {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }
}

impl NetConnection {
    /// Whether `peer` is an inbound remote-admin session from outside the allow list.
    fn unapproved(&self, peer: &Peer) -> bool {
        peer.direction == "inbound"
            && !self.config.remote_admin_allow.is_empty()
            && self.config.remote_admin_ports.contains(&peer.port)
            && !peer.peer.is_loopback()
            && !self
                .config
                .remote_admin_allow
                .iter()
                .any(|n| n.contains(&peer.peer))
    }

    /// Raises `net.connection_flood` for peers crossing the threshold.
    fn floods(&mut self, all: &[(Peer, &Socket)], sweep: &mut Sweep) {
        let mut per_peer: BTreeMap<IpAddr, (usize, usize, BTreeSet<u16>)> = BTreeMap::new();
        for (p, _) in all {
            let entry = per_peer.entry(p.peer).or_default();
            if p.direction == "inbound" {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
            entry.2.insert(p.port);
        }
        let mut now = HashSet::new();
        for (peer, (inbound, outbound, ports)) in per_peer {
            if inbound + outbound < self.config.flood_threshold {
                continue;
            }
            now.insert(peer);
            if self.flooding.contains(&peer) {
                continue;
            }
            let ports: Vec<String> = ports.iter().take(20).map(u16::to_string).collect();
            sweep.events.push(event(
                "net.connection_flood",
                Severity::Medium,
                true,
                BTreeMap::from([
                    ("peer".to_owned(), peer.to_string()),
                    ("connections".to_owned(), (inbound + outbound).to_string()),
                    ("inbound".to_owned(), inbound.to_string()),
                    ("outbound".to_owned(), outbound.to_string()),
                    ("ports".to_owned(), ports.join(",")),
                    ("threshold".to_owned(), self.config.flood_threshold.to_string()),
                ]),
                format!(
                    "{} established connections with {peer} ({inbound} in, {outbound} out; ports {})",
                    inbound + outbound,
                    ports.join(",")
                ),
            ));
        }
        self.flooding = now;
    }
}

impl Sensor for NetConnection {
    fn name(&self) -> &'static str {
        "net_connection"
    }

    fn relearn(&mut self) {
        self.known.clear();
        self.order.clear();
    }

    fn interval(&self) -> Duration {
        self.config.common.interval
    }

    fn waker(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.flows.as_ref().map(|_| self.wake.clone())
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let (flows, lost, failed) = match &self.flows {
            Some(q) => {
                let mut q = bannin_proto::lock(q);
                (
                    q.flows.drain(..).collect::<Vec<_>>(),
                    std::mem::take(&mut q.lost),
                    q.failed.clone(),
                )
            }
            None => (Vec::new(), 0, None),
        };
        self.report_flows(flows, sweep);
        let mut problems = Vec::new();
        if lost > 0 {
            problems.push(format!(
                "{lost} flow records lost (ring buffer or queue full)"
            ));
        }
        self.losses.add(lost);
        sweep.events.extend(self.losses.due(
            "net_connection",
            "connection records",
            "the kernel's ring buffer or the agent's queue was full",
        ));
        if let Some(why) = failed.as_ref().or(self.flow_problem.as_ref()) {
            problems.push(format!(
                "{why}: no flow log (connections are seen only while open at a sweep)"
            ));
        }
        // Woken by flows sooner than an interval after the last read of
        // /proc/net: the flows were all there was to report.
        let due = self.flows.is_none()
            || self
                .last_read
                .is_none_or(|t| t.elapsed() + super::WAKE_DEBOUNCE >= self.config.common.interval);
        let mut health = Health::Ok;
        if due {
            health = self.read_sockets(sweep)?;
            self.last_read = Some(std::time::Instant::now());
        }
        Ok(match health {
            Health::Degraded(why) => {
                problems.insert(0, why);
                Health::Degraded(problems.join("; "))
            }
            _ if !problems.is_empty() => Health::Degraded(problems.join("; ")),
            _ if self.flows.is_some() => Health::Working(
                "flows from eBPF (inet_sock_set_state): every TCP connection, start to close"
                    .into(),
            ),
            other => other,
        })
    }
}

impl NetConnection {
    /// `net.flow` events for closed connections, folding those past
    /// `max_flows_per_sweep` into one per (direction, peer, port, program).
    fn report_flows(&mut self, flows: Vec<Flow>, sweep: &mut Sweep) {
        let shown: Vec<Flow> = flows
            .into_iter()
            .filter(|f| {
                self.config.include_loopback
                    || !(f.remote.0.is_loopback() || f.local.0.is_loopback())
            })
            .collect();
        let limit = self.config.max_flows_per_sweep;
        let mut folded: BTreeMap<(bool, IpAddr, u16, String), Vec<&Flow>> = BTreeMap::new();
        for (n, flow) in shown.iter().enumerate() {
            if n < limit {
                sweep.events.push(flow_event(&[flow]));
            } else {
                let port = if flow.inbound {
                    flow.local.1
                } else {
                    flow.remote.1
                };
                folded
                    .entry((flow.inbound, flow.remote.0, port, flow.exe.clone()))
                    .or_default()
                    .push(flow);
            }
        }
        for group in folded.values() {
            sweep.events.push(flow_event(group));
        }
    }
}

/// One `net.flow` event: one connection, or several folded (`flows` > 1,
/// bytes summed, the first start and the last end).
fn flow_event(flows: &[&Flow]) -> bannin_proto::v1::Event {
    let f = flows[0];
    let port = if f.inbound { f.local.1 } else { f.remote.1 };
    let start = flows.iter().filter_map(|f| f.start_unix_ms).min();
    let end = flows
        .iter()
        .map(|f| f.end_unix_ms)
        .max()
        .unwrap_or(f.end_unix_ms);
    let sent: u64 = flows.iter().map(|f| f.bytes_sent).sum();
    let received: u64 = flows.iter().map(|f| f.bytes_received).sum();
    let established = flows.iter().filter(|f| f.established).count();
    let mut a = BTreeMap::from([
        (
            "direction".to_owned(),
            if f.inbound { "inbound" } else { "outbound" }.to_owned(),
        ),
        ("protocol".to_owned(), "tcp".to_owned()),
        ("remote_address".to_owned(), f.remote.0.to_string()),
        ("remote_port".to_owned(), f.remote.1.to_string()),
        ("local_address".to_owned(), f.local.0.to_string()),
        ("local_port".to_owned(), f.local.1.to_string()),
        ("port".to_owned(), port.to_string()),
        ("end".to_owned(), bannin_proto::rfc3339(end)),
        ("bytes_sent".to_owned(), sent.to_string()),
        ("bytes_received".to_owned(), received.to_string()),
        (
            "state".to_owned(),
            if established == flows.len() {
                "established"
            } else if established == 0 {
                "failed"
            } else {
                "mixed"
            }
            .to_owned(),
        ),
    ]);
    if let Some(start) = start {
        a.insert("start".into(), bannin_proto::rfc3339(start));
        a.insert("duration_ms".into(), (end - start).max(0).to_string());
    }
    if flows.len() > 1 {
        a.insert("flows".into(), flows.len().to_string());
    }
    let mut by = String::new();
    if f.pid != 0 {
        a.insert("pid".into(), f.pid.to_string());
        by = format!(" by {} (pid {})", f.comm, f.pid);
    }
    if !f.comm.is_empty() {
        a.insert("comm".into(), f.comm.clone());
    }
    if !f.exe.is_empty() {
        a.insert("exe".into(), f.exe.clone());
    }
    if f.uid != u32::MAX {
        a.insert("uid".into(), f.uid.to_string());
    }
    let what = match (flows.len(), f.inbound) {
        (1, true) => format!("inbound connection from {} to port {port}", f.remote.0),
        (1, false) => format!("outbound connection to {} port {port}", f.remote.0),
        (n, true) => format!("{n} inbound connections from {} to port {port}", f.remote.0),
        (n, false) => format!("{n} outbound connections to {} port {port}", f.remote.0),
    };
    let took = a
        .get("duration_ms")
        .map(|d| format!(", {d} ms"))
        .unwrap_or_default();
    let mut e = event(
        "net.flow",
        Severity::Info,
        false,
        a,
        format!("{what}{by}{took}, {sent} bytes sent, {received} received"),
    );
    // Observed when it closed, not when the sweep reported it.
    e.observed_unix_ms = end;
    e
}

impl NetConnection {
    /// The established connections now in `/proc/net/tcp{,6}`: new peers as
    /// `net.connection`, floods, unapproved remote access.
    fn read_sockets(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let mut sockets = Vec::new();
        let mut unreadable = Vec::new();
        for protocol in ["tcp", "tcp6"] {
            let path = self.root.join(format!("/proc/net/{protocol}"));
            match std::fs::read_to_string(&path) {
                Ok(text) => sockets.extend(parse_sockets(&text, protocol)),
                Err(source) if protocol == "tcp" => {
                    return Err(SensorError::Read { path, source });
                }
                Err(_) => unreadable.push(protocol),
            }
        }
        let all = peers(&sockets, self.config.include_loopback);
        self.floods(&all, sweep);
        let mut seen_now = BTreeSet::new();
        let fresh: Vec<(Peer, &Socket)> = all
            .into_iter()
            .filter(|(p, _)| !self.known.contains(&p.key()) && seen_now.insert(p.key()))
            .take(MAX_EVENTS_PER_SWEEP)
            .collect();
        if !fresh.is_empty() {
            let inodes: BTreeSet<u64> = fresh.iter().map(|(_, s)| s.inode).collect();
            let owners = socket_owners(&self.root, &inodes);
            for (peer, socket) in &fresh {
                let mut a = BTreeMap::from([
                    ("direction".to_owned(), peer.direction.to_owned()),
                    ("protocol".to_owned(), socket.protocol.to_owned()),
                    ("remote_address".to_owned(), peer.peer.to_string()),
                    ("remote_port".to_owned(), socket.remote.1.to_string()),
                    (
                        "local_address".to_owned(),
                        socket.local.0.to_canonical().to_string(),
                    ),
                    ("local_port".to_owned(), socket.local.1.to_string()),
                    ("port".to_owned(), peer.port.to_string()),
                    ("uid".to_owned(), socket.uid.to_string()),
                ]);
                let mut by = String::new();
                if let Some((pid, comm, exe)) = owners.get(&socket.inode) {
                    a.insert("pid".into(), pid.to_string());
                    a.insert("comm".into(), comm.clone());
                    a.insert("exe".into(), exe.clone());
                    by = format!(" by {comm} (pid {pid})");
                }
                let summary = match peer.direction {
                    "inbound" => format!(
                        "inbound connection from {} to port {}{by}",
                        peer.peer, peer.port
                    ),
                    _ => format!(
                        "outbound connection to {} port {}{by}",
                        peer.peer, peer.port
                    ),
                };
                if self.unapproved(peer) {
                    sweep.events.push(event(
                        "net.unapproved_remote_access",
                        Severity::High,
                        true,
                        a.clone(),
                        format!(
                            "remote-admin session on port {} from {}, which is not in the allow list{by}",
                            peer.port, peer.peer
                        ),
                    ));
                }
                sweep
                    .events
                    .push(event("net.connection", Severity::Info, false, a, summary));
            }
            for (peer, _) in fresh {
                self.remember(peer.key());
            }
            sweep.save_state(&self.order);
        }
        if !running_as_root() {
            return Ok(Health::Degraded(
                "not running as root: connections are seen, but only this user's processes can be named".into(),
            ));
        }
        if !unreadable.is_empty() {
            return Ok(Health::Degraded("cannot read /proc/net/tcp6".into()));
        }
        Ok(Health::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0A00000A:0016 0500000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0
   2: 0A00000A:A001 08080808:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 102 1 0 100 0 0 10 0
   3: 0100007F:A002 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 103 1 0 100 0 0 10 0
";

    #[test]
    fn established_sockets_become_inbound_and_outbound_peers() {
        let sockets = parse_sockets(TABLE, "tcp");
        let found: Vec<String> = peers(&sockets, false)
            .iter()
            .map(|(p, _)| p.key())
            .collect();
        assert_eq!(found, ["inbound 10.0.0.5 22", "outbound 8.8.8.8 443"]);
        let with_loopback = peers(&sockets, true);
        assert_eq!(with_loopback.len(), 3);
        assert_eq!(with_loopback[2].0.key(), "outbound 127.0.0.1 8080");
    }

    fn config(max_peers: usize) -> NetConnectionConfig {
        NetConnectionConfig {
            common: crate::config::SensorCommon {
                enabled: true,
                interval: Duration::from_secs(1),
                severity: Severity::Info,
            },
            include_loopback: false,
            max_peers,
            flood_threshold: 100,
            remote_admin_ports: vec![22],
            remote_admin_allow: Vec::new(),
            flows: false,
            max_flows_per_sweep: 2000,
        }
    }

    #[test]
    fn each_peer_is_reported_once_and_memory_is_bounded() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc/net")).expect("dir");
        std::fs::write(root.path().join("proc/net/tcp"), TABLE).expect("table");
        let mut sensor = NetConnection::new(HostRoot(root.path().into()), config(1), None);
        let mut first = Sweep::default();
        sensor.sweep(&mut first).expect("sweep");
        assert_eq!(first.events.len(), 2);
        assert!(
            first
                .events
                .iter()
                .all(|e| e.kind == "net.connection" && !e.indicator)
        );
        assert_eq!(first.events[0].attributes["direction"], "inbound");
        assert_eq!(first.events[0].attributes["port"], "22");
        // Only one peer is remembered: the other comes back, and evicts the first.
        assert_eq!(sensor.known.len(), 1);
        let mut again = Sweep::default();
        sensor.sweep(&mut again).expect("sweep");
        assert_eq!(again.events.len(), 1);
        assert_eq!(sensor.known.len(), 1);

        let mut roomy = NetConnection::new(HostRoot(root.path().into()), config(10), None);
        let mut s1 = Sweep::default();
        roomy.sweep(&mut s1).expect("sweep");
        let saved: Vec<String> = serde_json::from_slice(&s1.state.expect("state")).expect("json");
        let mut restarted =
            NetConnection::new(HostRoot(root.path().into()), config(10), Some(saved));
        let mut s2 = Sweep::default();
        restarted.sweep(&mut s2).expect("sweep");
        assert!(
            s2.events.is_empty(),
            "known peers are not reported again after a restart"
        );
    }

    #[test]
    fn floods_and_unapproved_remote_admin_sessions() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("proc/net")).expect("dir");
        // 10.0.0.10 listens on 22; 10.0.0.5 holds 3 sessions to it, 8.8.8.8 one outbound.
        let mut table = String::from(TABLE);
        for (i, port) in ["D432", "D433"].iter().enumerate() {
            table.push_str(&format!(
                "   {}: 0A00000A:0016 0500000A:{port} 01 00000000:00000000 00:00000000 00000000     0        0 20{i} 1 0 100 0 0 10 0\n",
                i + 4
            ));
        }
        std::fs::write(root.path().join("proc/net/tcp"), &table).expect("table");
        let mut c = config(100);
        c.flood_threshold = 3;
        c.remote_admin_allow = vec!["192.168.0.0/16".parse().expect("net")];
        let mut sensor = NetConnection::new(HostRoot(root.path().into()), c.clone(), None);
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        let kinds: Vec<&str> = s.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "net.connection_flood")
                .count(),
            1,
            "{kinds:?}"
        );
        let flood = s
            .events
            .iter()
            .find(|e| e.kind == "net.connection_flood")
            .expect("flood");
        assert_eq!(flood.attributes["peer"], "10.0.0.5");
        assert_eq!(flood.attributes["inbound"], "3");
        let unapproved: Vec<_> = s
            .events
            .iter()
            .filter(|e| e.kind == "net.unapproved_remote_access")
            .collect();
        assert_eq!(unapproved.len(), 1, "one per peer and port");
        assert_eq!(unapproved[0].attributes["remote_address"], "10.0.0.5");
        // Still flooding: not raised again.
        let mut again = Sweep::default();
        sensor.sweep(&mut again).expect("sweep");
        assert!(again.events.is_empty());

        // An allowed peer is not unapproved; an empty allow list turns the check off.
        c.remote_admin_allow = vec!["10.0.0.0/8".parse().expect("net")];
        let mut allowed = NetConnection::new(HostRoot(root.path().into()), c.clone(), None);
        let mut s = Sweep::default();
        allowed.sweep(&mut s).expect("sweep");
        assert!(
            !s.events
                .iter()
                .any(|e| e.kind == "net.unapproved_remote_access")
        );
        c.remote_admin_allow.clear();
        let mut off = NetConnection::new(HostRoot(root.path().into()), c, None);
        let mut s = Sweep::default();
        off.sweep(&mut s).expect("sweep");
        assert!(
            !s.events
                .iter()
                .any(|e| e.kind == "net.unapproved_remote_access")
        );
    }
}
