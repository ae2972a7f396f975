//! Sockets from `/proc/net/{tcp,tcp6,udp,udp6}` and which process owns each
//! (through the `socket:[INODE]` links in `/proc/PID/fd`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::HostRoot;

/// One socket of a `/proc/net/{tcp,udp}[6]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// tcp, tcp6, udp or udp6.
    pub protocol: &'static str,
    /// Local address and port.
    pub local: (IpAddr, u16),
    /// Remote address and port.
    pub remote: (IpAddr, u16),
    /// Kernel socket state (TCP: 01 established, 0A listen …).
    pub state: u8,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
}

/// TCP state names by the kernel's numbering.
pub fn tcp_state(state: u8) -> &'static str {
    match state {
        0x01 => "established",
        0x02 => "syn_sent",
        0x03 => "syn_recv",
        0x04 => "fin_wait1",
        0x05 => "fin_wait2",
        0x06 => "time_wait",
        0x07 => "close",
        0x08 => "close_wait",
        0x09 => "last_ack",
        0x0A => "listen",
        0x0B => "closing",
        _ => "unknown",
    }
}

/// Parses one `/proc/net/{tcp,udp}[6]` table; malformed lines are skipped.
pub fn parse_sockets(text: &str, protocol: &'static str) -> Vec<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            Some(Socket {
                protocol,
                local: parse_endpoint(f[1])?,
                remote: parse_endpoint(f[2])?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                uid: f[7].parse().unwrap_or(u32::MAX),
                inode: f[9].parse().unwrap_or(0),
            })
        })
        .collect()
}

/// The TCP or UDP socket with this inode, as process `pid` sees the network
/// (its own namespace's tables, `/proc/PID/net/…`); `None` for any other kind
/// of socket (a unix socket: journald's stream, an ssh session's socketpair).
pub fn inet_socket(root: &HostRoot, pid: u32, inode: u64) -> Option<Socket> {
    for protocol in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(root.join(format!("/proc/{pid}/net/{protocol}")))
        else {
            continue;
        };
        if let Some(s) = parse_sockets(&text, protocol)
            .into_iter()
            .find(|s| s.inode == inode)
        {
            return Some(s);
        }
    }
    None
}

/// The TCP ports `pid` itself listens on (a listening socket among its open
/// files, in its own network namespace's tables); at most `max_fds` of its
/// descriptors are looked at.
pub fn listening_ports(root: &HostRoot, pid: u32, max_fds: usize) -> BTreeSet<u16> {
    let Ok(fds) = std::fs::read_dir(root.join(format!("/proc/{pid}/fd"))) else {
        return BTreeSet::new();
    };
    let inodes: BTreeSet<u64> = fds
        .flatten()
        .take(max_fds)
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    if inodes.is_empty() {
        return BTreeSet::new();
    }
    let mut ports = BTreeSet::new();
    for protocol in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(root.join(format!("/proc/{pid}/net/{protocol}")))
        else {
            continue;
        };
        ports.extend(
            parse_sockets(&text, protocol)
                .into_iter()
                .filter(|s| s.state == 0x0A && inodes.contains(&s.inode))
                .map(|s| s.local.1),
        );
    }
    ports
}

/// Which process owns each socket inode in `wanted` (pid, comm, exe).
pub fn socket_owners(
    root: &HostRoot,
    wanted: &BTreeSet<u64>,
) -> BTreeMap<u64, (u32, String, String)> {
    let mut found = BTreeMap::new();
    for pid in super::proc::pids(root) {
        let base = root.join(format!("/proc/{pid}"));
        let Ok(fds) = std::fs::read_dir(base.join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if wanted.contains(&inode) {
                let comm = std::fs::read_to_string(base.join("comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                let exe = std::fs::read_link(base.join("exe"))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.insert(inode, (pid, super::proc::full_name(&comm, &exe), exe));
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}

/// `0100007F:1F90` (hex address and port, as `/proc/net` writes them) as an address.
pub fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints each 32-bit word of the address in host byte order.
    let word = |chunk: &str| u32::from_str_radix(chunk, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}
