//! The kernel's process events connector (netlink, `CN_IDX_PROC`): every exec
//! as it happens, so processes that live shorter than a polling interval are
//! still seen. A reader thread resolves each new program at once — its
//! `/proc` entry and an open handle on its executable, which keeps the file
//! readable for hashing even after the process and the file are gone — and
//! queues it for the process sensor's next sweep. It only listens: the audit
//! socket is never touched.
//!
//! Needs CAP_NET_ADMIN; without it the process sensor polls alone and says so.

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use nix::sys::socket::{MsgFlags, NetlinkAddr, bind, recv, send};

use crate::host::HostRoot;
use crate::host::proc::{ProcInfo, read_proc};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const NLMSG_DONE: u16 = 3;
/// The socket's receive buffer: about ten thousand exec events.
const RECV_BUFFER: usize = 8 * 1024 * 1024;
/// Most execs queued between sweeps; past it they are counted as dropped.
const MAX_QUEUED: usize = 20_000;

/// One exec, resolved when it happened.
pub struct Exec {
    /// The process as it was.
    pub info: ProcInfo,
    /// Its executable, held open (None if it was already gone).
    pub exe_file: Option<std::fs::File>,
    /// Whether `exe_file` is known to be the file the kernel ran (eBPF
    /// compared device and inode); else it is checked against `info.exe`.
    pub verified: bool,
    /// Its parent as it was at the exec (eBPF; the connector leaves it to
    /// the sensor, which reads `/proc` when it judges the exec).
    pub parent: Option<Parent>,
    /// Whether the arguments (or the path) were longer than the probe keeps.
    pub argv_cut: bool,
    /// Its cgroup's path ("" when not known).
    pub cgroup: String,
}

/// A parent process, as it was when its child started.
#[derive(Debug, Clone, Default)]
pub struct Parent {
    /// Its executable.
    pub exe: String,
    /// Its arguments, space-joined.
    pub cmdline: String,
    /// Its short name.
    pub comm: String,
}

/// Execs waiting for the process sensor.
#[derive(Default)]
pub struct ExecQueue {
    /// Resolved execs.
    pub execs: VecDeque<Exec>,
    /// Execs lost: the queue was full, or the kernel's buffer overflowed.
    pub lost: u64,
    /// Execs whose process exited before the connector's reader could read
    /// it (the connector says only which pid exec'd; eBPF has no such loss).
    pub gone: u64,
    /// Why the reader stopped, if it did.
    pub failed: Option<String>,
    /// Processes that ended since the last sweep (eBPF), by (pid, start
    /// ticks): a short-lived process's exec carries how it ended.
    pub exits: HashMap<(u32, u64), Exited>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exited {
    /// From its start to its end, in milliseconds.
    pub lived_ms: u64,
    /// The wait status: exit code << 8, or the signal that ended it.
    pub status: u32,
}

impl Exited {
    /// `exit 3`, or `signal 9`.
    pub fn describe(&self) -> String {
        if self.status & 0x7f == 0 {
            format!("exit {}", (self.status >> 8) & 0xff)
        } else {
            format!("signal {}", self.status & 0x7f)
        }
    }
}

/// Most exits kept between sweeps (the oldest sweep's are dropped first).
const MAX_EXITS: usize = 20_000;

impl ExecQueue {
    /// Records how a process ended, for its exec if that is still queued.
    pub fn exited(&mut self, pid: u32, start_ticks: u64, how: Exited) {
        if self.exits.len() >= MAX_EXITS {
            self.exits.clear();
        }
        self.exits.insert((pid, start_ticks), how);
    }
}

/// The listening message: nlmsghdr + cn_msg + PROC_CN_MCAST_LISTEN.
fn listen_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&4u16.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
    m
}

/// The (pid, tgid) of each exec event in a received datagram.
pub fn parse_execs(buf: &[u8]) -> Vec<(u32, u32)> {
    let u32_at = |at: usize| {
        buf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = u32_at(at) {
        let len = len as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        // nlmsghdr (16) + cn_msg (20) + proc_event: what, cpu, timestamp (16), data.
        let event = at + 36;
        if u32_at(event) == Some(PROC_EVENT_EXEC)
            && let (Some(pid), Some(tgid)) = (u32_at(event + 16), u32_at(event + 20))
        {
            out.push((pid, tgid));
        }
        at += (len + 3) & !3;
    }
    out
}

/// Subscribes to exec events and starts the reader thread.
///
/// `wake` is notified after each batch so the process sensor judges it within
/// moments, not at its next polling interval.
pub fn start(
    root: HostRoot,
    queue: Arc<Mutex<ExecQueue>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::from(libc_af_netlink()),
        Type::DGRAM,
        Some(Protocol::from(NETLINK_CONNECTOR)),
    )
    .map_err(|e| format!("process events connector unavailable ({e})"))?;
    // A burst of execs (a build, a test suite) must not overflow the kernel's
    // buffer while the reader resolves each one: ask for 8 MiB past rmem_max
    // (CAP_NET_ADMIN, which the connector needs anyway), else what rmem_max allows.
    if nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::RcvBufForce,
        &RECV_BUFFER,
    )
    .is_err()
    {
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    }
    bind(socket.as_raw_fd(), &NetlinkAddr::new(0, CN_IDX_PROC))
        .map_err(|e| format!("process events connector: bind: {e} (needs CAP_NET_ADMIN)"))?;
    send(socket.as_raw_fd(), &listen_message(), MsgFlags::empty())
        .map_err(|e| format!("process events connector: subscribe: {e}"))?;
    std::thread::Builder::new()
        .name("bannin-proc-events".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(nix::errno::Errno::ENOBUFS) => {
                        bannin_proto::lock(&queue).lost += 1;
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "Process events connector failed; polling only");
                        bannin_proto::lock(&queue).failed =
                            Some(format!("process events connector failed: {error}"));
                        return;
                    }
                };
                let mut queued = false;
                for (pid, tgid) in parse_execs(&buf[..n]) {
                    if pid != tgid {
                        continue;
                    }
                    let exe_file = std::fs::File::open(root.join(format!("/proc/{pid}/exe"))).ok();
                    let resolved = read_proc(&root, pid);
                    let mut q = bannin_proto::lock(&queue);
                    // A process gone before it could be read left nothing to judge.
                    match resolved {
                        Some(info) if q.execs.len() < MAX_QUEUED => {
                            q.execs.push_back(Exec {
                                info,
                                exe_file,
                                verified: false,
                                parent: None,
                                argv_cut: false,
                                cgroup: String::new(),
                            });
                            queued = true;
                        }
                        Some(_) => q.lost += 1,
                        None => q.gone += 1,
                    }
                }
                if queued {
                    wake.notify_one();
                }
            }
        })
        .map_err(|e| format!("cannot start the process events reader: {e}"))?;
    Ok(())
}

const fn libc_af_netlink() -> i32 {
    16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_says_its_code_or_its_signal() {
        let x = |status| {
            Exited {
                lived_ms: 1,
                status,
            }
            .describe()
        };
        assert_eq!(x(0), "exit 0");
        assert_eq!(x(3 << 8), "exit 3");
        assert_eq!(x(9), "signal 9");
        assert_eq!(x(0x80 | 11), "signal 11", "with a core dump");
    }

    #[test]
    fn exec_events_parse() {
        let mut msg = listen_message();
        msg.truncate(36);
        msg[0..4].copy_from_slice(&60u32.to_ne_bytes());
        msg.extend_from_slice(&PROC_EVENT_EXEC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&0u64.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        msg.extend_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(msg.len(), 60);
        assert_eq!(parse_execs(&msg), [(4242, 4242)]);
        assert!(parse_execs(&msg[..20]).is_empty());
        assert!(parse_execs(b"").is_empty());
    }
}
