//! Every TCP connection from its start to its end, captured in the kernel
//! (eBPF on the `inet_sock_set_state` raw tracepoint): a flow log. The probe
//! writes a record at connect (with the connecting process), at the end of
//! the handshake (outbound or inbound) and at close (with the bytes each
//! way); the reader joins a connection's records into one [`Flow`] when it
//! closes. A connection of a third of a second is recorded as fully as one
//! of a day, which polling `/proc/net/tcp` cannot do.
//!
//! The process of an outbound connection is the one that called `connect`,
//! resolved while it is in that call; an inbound connection's is the owner
//! of the listening socket on its port (the handshake completes in the
//! kernel, in no process). Records the ring buffer or the reader had no room
//! for are counted as lost.
//!
//! The program is `agent/bpf/flow.bpf.c` (see `agent/bpf/build.sh`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bpf::{Ring, load};
use crate::host::HostRoot;

/// The compiled program (see `agent/bpf/`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/flow.bpf.o");

const KIND_FLOW: u32 = 3;
const STEP_CONNECT: u32 = 1;
const STEP_ESTABLISHED: u32 = 2;
const STEP_CLOSE: u32 = 3;
/// `struct flow_event`.
const RECORD_SIZE: usize = 104;
/// Most finished flows queued between sweeps; past it they are counted as lost.
const MAX_QUEUED: usize = 50_000;
/// Most connections followed at once; past it new ones are counted as lost.
const MAX_OPEN: usize = 65_536;
/// Listening sockets' owners are read again for a port not known, at most
/// this often (a read walks every process's descriptors).
const LISTENER_REREAD: Duration = Duration::from_millis(250);

/// One record of the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// connect, established or close.
    pub step: u32,
    /// The socket (joins a connection's records; never leaves the agent).
    pub sock: u64,
    /// When, in nanoseconds since boot.
    pub at_boot_ns: u64,
    /// Sequence space received (at close): the data, and the peer's FIN if it came.
    pub bytes_received: u64,
    /// Data sent, retransmissions included (at close).
    pub bytes_sent: u64,
    /// The state the socket left (at close: whether the peer's FIN came).
    pub old_state: u8,
    /// The connecting process (at connect; 0 otherwise).
    pub pid: u32,
    /// Its uid.
    pub uid: u32,
    /// Its short name.
    pub comm: String,
    /// Whether the handshake came from the peer.
    pub inbound: bool,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
}

/// Parses one record, as `flow.bpf.c` lays it out (native endianness; the
/// addresses in network order). `None`: not a flow record of that layout.
pub fn parse(b: &[u8]) -> Option<Record> {
    if b.len() != RECORD_SIZE {
        return None;
    }
    let u16_at = |at: usize| b.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes);
    let u32_at = |at: usize| b.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes);
    let u64_at = |at: usize| b.get(at..at + 8)?.try_into().ok().map(u64::from_ne_bytes);
    if u32_at(0)? != KIND_FLOW {
        return None;
    }
    let family = u16_at(48)?;
    let address = |at: usize| -> Option<IpAddr> {
        let raw: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
        Some(match family {
            2 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
            10 => IpAddr::V6(Ipv6Addr::from(raw)).to_canonical(),
            _ => return None,
        })
    };
    let comm = &b[88..104];
    let end = comm.iter().position(|c| *c == 0).unwrap_or(comm.len());
    Some(Record {
        step: u32_at(4)?,
        sock: u64_at(8)?,
        at_boot_ns: u64_at(16)?,
        bytes_received: u64_at(24)?,
        bytes_sent: u64_at(32)?,
        old_state: b[55],
        pid: u32_at(40)?,
        uid: u32_at(44)?,
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        inbound: b[54] != 0,
        local: (address(56)?, u16_at(50)?),
        remote: (address(72)?, u16_at(52)?),
    })
}

/// A connection, from its start to its close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Whether the peer opened it.
    pub inbound: bool,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// The process (0 when not known).
    pub pid: u32,
    /// Its executable ("" when not known).
    pub exe: String,
    /// Its short name.
    pub comm: String,
    /// Its uid (`u32::MAX` when not known).
    pub uid: u32,
    /// When it started, Unix ms (`None`: before the agent listened).
    pub start_unix_ms: Option<i64>,
    /// When it closed, Unix ms.
    pub end_unix_ms: i64,
    /// Data sent, retransmissions included.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Whether the handshake completed (a refused or timed-out connect did not).
    pub established: bool,
}

/// Flows waiting for the connection sensor.
#[derive(Default)]
pub struct FlowQueue {
    /// Closed connections.
    pub flows: VecDeque<Flow>,
    /// Records or flows lost: the ring buffer, the open table or the queue was full.
    pub lost: u64,
    /// Why the reader stopped, if it did.
    pub failed: Option<String>,
}

/// What is known of an open connection.
#[derive(Debug, Clone)]
struct Open {
    inbound: bool,
    /// The local end once the handshake is done (at close the port is
    /// already released, and at connect not yet chosen).
    local: Option<(IpAddr, u16)>,
    pid: u32,
    exe: String,
    comm: String,
    uid: u32,
    start_boot_ns: Option<u64>,
    established: bool,
}

/// Loads and attaches the probe and starts the reader thread.
pub fn start(
    root: HostRoot,
    queue: Arc<Mutex<FlowQueue>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let mut ebpf = load(OBJECT, &[("bannin_flow", "inet_sock_set_state")])
        .map_err(|e| format!("eBPF unavailable: {e}"))?;
    let mut ring = Ring::take(&mut ebpf, "flows", "flow_drops")?;
    std::thread::Builder::new()
        .name("bannin-ebpf-flows".into())
        .spawn(move || {
            // Dropping the program detaches it: it lives as long as the reader.
            let _ebpf = ebpf;
            let mut joiner = Joiner::new(root);
            loop {
                let mut done = Vec::new();
                let mut malformed = 0u64;
                let polled = ring.poll(|bytes| match parse(bytes) {
                    Some(record) => done.extend(joiner.add(record)),
                    None => malformed += 1,
                });
                let dropped = match polled {
                    Ok(n) => n,
                    Err(error) => {
                        tracing::error!(%error, "eBPF flow ring buffer failed");
                        bannin_proto::lock(&queue).failed =
                            Some(format!("eBPF flow ring buffer failed: {error}"));
                        return;
                    }
                };
                let mut q = bannin_proto::lock(&queue);
                q.lost += dropped + malformed + std::mem::take(&mut joiner.lost);
                let queued = !done.is_empty();
                for flow in done {
                    if q.flows.len() < MAX_QUEUED {
                        q.flows.push_back(flow);
                    } else {
                        q.lost += 1;
                    }
                }
                drop(q);
                if queued {
                    wake.notify_one();
                }
            }
        })
        .map_err(|e| format!("cannot start the eBPF flow reader: {e}"))?;
    Ok(())
}

/// Joins a connection's records into a [`Flow`].
struct Joiner {
    root: HostRoot,
    open: HashMap<u64, Open>,
    /// Listening ports' owners: port → (pid, comm, exe, uid), and when read.
    listeners: HashMap<u16, (u32, String, String, u32)>,
    listeners_read: Option<Instant>,
    /// Connections not followed (the open table was full).
    lost: u64,
}

impl Joiner {
    fn new(root: HostRoot) -> Self {
        Self {
            root,
            open: HashMap::new(),
            listeners: HashMap::new(),
            listeners_read: None,
            lost: 0,
        }
    }

    /// Takes one record; returns the flow it closes, if it closes one.
    fn add(&mut self, r: Record) -> Option<Flow> {
        match r.step {
            STEP_CONNECT => {
                let exe = std::fs::read_link(self.root.join(format!("/proc/{}/exe", r.pid)))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.track(
                    r.sock,
                    Open {
                        inbound: false,
                        local: None,
                        pid: r.pid,
                        exe,
                        comm: r.comm,
                        uid: r.uid,
                        start_boot_ns: Some(r.at_boot_ns),
                        established: false,
                    },
                );
                None
            }
            STEP_ESTABLISHED => {
                if let Some(open) = self.open.get_mut(&r.sock) {
                    open.established = true;
                    open.local = Some(r.local);
                    return None;
                }
                let (pid, comm, exe, uid) = if r.inbound {
                    self.listener(r.local.1)
                } else {
                    (0, String::new(), String::new(), u32::MAX)
                };
                self.track(
                    r.sock,
                    Open {
                        inbound: r.inbound,
                        local: Some(r.local),
                        pid,
                        exe,
                        comm,
                        uid,
                        start_boot_ns: Some(r.at_boot_ns),
                        established: true,
                    },
                );
                None
            }
            STEP_CLOSE => {
                let open = self.open.remove(&r.sock);
                // A listener or a socket never connected closes too: only a
                // connection with a peer is a flow.
                if r.remote.1 == 0 || (open.is_none() && r.bytes_received + r.bytes_sent == 0) {
                    return None;
                }
                let open = open.unwrap_or(Open {
                    inbound: false,
                    local: None,
                    pid: 0,
                    exe: String::new(),
                    comm: String::new(),
                    uid: u32::MAX,
                    start_boot_ns: None,
                    established: true,
                });
                let now_ms = bannin_proto::now_unix_ms();
                let boot_now = boot_ns();
                let to_unix_ms = |ns: u64| {
                    now_ms - i64::try_from(boot_now.saturating_sub(ns) / 1_000_000).unwrap_or(0)
                };
                // The peer's FIN takes one number of the sequence space
                // counted as received: it came if the socket closes from
                // CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSING or FIN_WAIT2.
                let fin = u64::from(matches!(r.old_state, 5 | 6 | 8 | 9 | 11));
                Some(Flow {
                    inbound: open.inbound,
                    local: open.local.unwrap_or(r.local),
                    remote: r.remote,
                    pid: open.pid,
                    exe: open.exe,
                    comm: open.comm,
                    uid: open.uid,
                    start_unix_ms: open.start_boot_ns.map(to_unix_ms),
                    end_unix_ms: to_unix_ms(r.at_boot_ns),
                    bytes_sent: r.bytes_sent,
                    bytes_received: r.bytes_received.saturating_sub(fin),
                    established: open.established,
                })
            }
            _ => None,
        }
    }

    fn track(&mut self, sock: u64, open: Open) {
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&sock) {
            self.lost += 1;
            return;
        }
        self.open.insert(sock, open);
    }

    /// The owner of the socket listening on `port`, read again (at most every
    /// [`LISTENER_REREAD`]) when the port is not known.
    fn listener(&mut self, port: u16) -> (u32, String, String, u32) {
        let stale = self
            .listeners_read
            .is_none_or(|t| t.elapsed() > LISTENER_REREAD);
        if !self.listeners.contains_key(&port) && stale {
            self.listeners = read_listeners(&self.root);
            self.listeners_read = Some(Instant::now());
        }
        self.listeners
            .get(&port)
            .cloned()
            .unwrap_or((0, String::new(), String::new(), u32::MAX))
    }
}

/// Every listening TCP port with its owner (pid, comm, exe, uid).
fn read_listeners(root: &HostRoot) -> HashMap<u16, (u32, String, String, u32)> {
    use crate::host::net::{parse_sockets, socket_owners};
    let mut sockets = Vec::new();
    for (file, protocol) in [("/proc/net/tcp", "tcp"), ("/proc/net/tcp6", "tcp6")] {
        if let Ok(text) = std::fs::read_to_string(root.join(file)) {
            sockets.extend(parse_sockets(&text, protocol));
        }
    }
    let listening: Vec<_> = sockets.into_iter().filter(|s| s.state == 0x0A).collect();
    let inodes = listening.iter().map(|s| s.inode).collect();
    let owners = socket_owners(root, &inodes);
    listening
        .iter()
        .filter_map(|s| {
            let (pid, comm, exe) = owners.get(&s.inode)?.clone();
            Some((s.local.1, (pid, comm, exe, s.uid)))
        })
        .collect()
}

/// Nanoseconds since boot (`CLOCK_BOOTTIME`, the probe's clock).
fn boot_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u32, sock: u64, at: u64, bytes: (u64, u64)) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&KIND_FLOW.to_ne_bytes());
        b.extend_from_slice(&step.to_ne_bytes());
        b.extend_from_slice(&sock.to_ne_bytes());
        b.extend_from_slice(&at.to_ne_bytes());
        b.extend_from_slice(&bytes.0.to_ne_bytes());
        b.extend_from_slice(&bytes.1.to_ne_bytes());
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&1000u32.to_ne_bytes());
        b.extend_from_slice(&2u16.to_ne_bytes());
        b.extend_from_slice(&40_000u16.to_ne_bytes());
        b.extend_from_slice(&443u16.to_ne_bytes());
        b.push(0);
        b.push(0);
        let mut local = [0u8; 16];
        local[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut remote = [0u8; 16];
        remote[..4].copy_from_slice(&[192, 0, 2, 9]);
        b.extend_from_slice(&local);
        b.extend_from_slice(&remote);
        let mut comm = b"curl".to_vec();
        comm.resize(16, 0);
        b.extend_from_slice(&comm);
        b
    }

    /// A record reads as the probe lays it out; a connection's three records
    /// join into one flow at close, with its start, bytes and process; a
    /// close with no peer (a listener) is no flow.
    #[test]
    fn a_connections_records_join_into_one_flow() {
        let connect = parse(&record(STEP_CONNECT, 7, 1_000_000_000, (0, 0))).expect("parses");
        assert_eq!(connect.local, ("10.0.0.1".parse().expect("ip"), 40_000));
        assert_eq!(connect.remote, ("192.0.2.9".parse().expect("ip"), 443));
        assert_eq!(
            (connect.pid, connect.uid, connect.comm.as_str()),
            (4242, 1000, "curl")
        );
        assert!(parse(&record(STEP_CONNECT, 7, 0, (0, 0))[..100]).is_none());

        let mut joiner = Joiner::new(HostRoot("/nonexistent".into()));
        assert!(joiner.add(connect).is_none());
        let established = parse(&record(STEP_ESTABLISHED, 7, 1_100_000_000, (0, 0))).expect("p");
        assert!(joiner.add(established).is_none());
        let close = parse(&record(STEP_CLOSE, 7, 1_400_000_000, (5_000, 300))).expect("p");
        let flow = joiner.add(close).expect("a flow");
        assert!(!flow.inbound && flow.established);
        assert_eq!((flow.pid, flow.comm.as_str()), (4242, "curl"));
        assert_eq!((flow.bytes_received, flow.bytes_sent), (5_000, 300));
        let start = flow.start_unix_ms.expect("start known");
        assert_eq!(flow.end_unix_ms - start, 400, "{flow:?}");
        assert!(joiner.open.is_empty());

        // A connect refused: a flow that never established.
        joiner.add(parse(&record(STEP_CONNECT, 8, 0, (0, 0))).expect("p"));
        let refused = joiner
            .add(parse(&record(STEP_CLOSE, 8, 1, (0, 0))).expect("p"))
            .expect("a failed flow");
        assert!(!refused.established);

        // A socket closing with nothing known and nothing moved: not a flow.
        assert!(
            joiner
                .add(parse(&record(STEP_CLOSE, 9, 1, (0, 0))).expect("p"))
                .is_none()
        );
    }

    /// The probe in the kernel: a loopback connection of a fifth of a second
    /// is one flow each way when it closes, the outbound one with this
    /// process, its duration and its bytes.
    #[test]
    fn a_short_connection_is_one_flow_each_way_with_its_process() {
        use std::io::{Read, Write};
        if !crate::sensors::running_as_root() {
            crate::testing::skip("needs root (loading eBPF)");
            return;
        }
        let queue = Arc::new(Mutex::new(FlowQueue::default()));
        start(
            HostRoot("/".into()),
            queue.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .expect("eBPF loads");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            peer.read_to_end(&mut got).expect("read");
            got.len()
        });
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(&[7u8; 1000]).expect("write");
        std::thread::sleep(Duration::from_millis(200));
        drop(c);
        assert_eq!(server.join().expect("server"), 1000);
        let mut ours = Vec::new();
        for _ in 0..100 {
            {
                let mut q = bannin_proto::lock(&queue);
                ours.extend(
                    q.flows
                        .drain(..)
                        .filter(|f| f.remote.1 == port || f.local.1 == port),
                );
            }
            if ours.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = ours
            .iter()
            .find(|f| !f.inbound)
            .unwrap_or_else(|| panic!("the outbound flow: {ours:?}"));
        assert_eq!(out.pid, std::process::id(), "{out:?}");
        assert_eq!(out.bytes_sent, 1000, "{out:?}");
        assert!(out.established);
        let took = out.end_unix_ms - out.start_unix_ms.expect("start");
        assert!((150..5_000).contains(&took), "{out:?}");
        let inbound = ours.iter().find(|f| f.inbound).expect("the inbound flow");
        assert_eq!(inbound.bytes_received, 1000, "{inbound:?}");
        assert_eq!(
            inbound.pid,
            std::process::id(),
            "the listener's owner: {inbound:?}"
        );
    }
}
