//! `net.new_listener`: listening sockets that were not there before, from
//! `/proc/net/{tcp,tcp6,udp,udp6}`, attributed to their process where the agent
//! may read it.
//!
//! The first sweep on a host records a baseline (reported as plain `net.listener`
//! telemetry, not as findings). The baseline is kept across restarts, so a
//! listener opened while the agent was down is still reported when it comes back.
//! UDP sockets bound to a port in the ephemeral range are client sockets
//! (resolvers, NTP clients) and are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use bannin_proto::v1::Severity;

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event, running_as_root};
use crate::config::SensorCommon;
use crate::host::net::{parse_sockets, socket_owners};

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    /// tcp, tcp6, udp or udp6.
    pub protocol: &'static str,
    /// Local address.
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
}

impl Listener {
    /// Identity of the listener across sweeps.
    pub fn key(&self) -> String {
        format!("{} {}", self.protocol, endpoint(self.address, self.port))
    }
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Parses one `/proc/net/{tcp,udp}[6]` table; returns listening sockets.
pub fn parse_table(text: &str, protocol: &'static str, ephemeral: (u16, u16)) -> Vec<Listener> {
    let tcp = protocol.starts_with("tcp");
    parse_sockets(text, protocol)
        .into_iter()
        .filter(|s| {
            if tcp {
                s.state == 0x0A
            } else {
                s.state == 0x07
                    && s.remote.1 == 0
                    && !(ephemeral.0..=ephemeral.1).contains(&s.local.1)
            }
        })
        .map(|s| Listener {
            protocol,
            address: s.local.0,
            port: s.local.1,
            uid: s.uid,
            inode: s.inode,
        })
        .collect()
}

/// The sensor.
pub struct NetListener {
    root: HostRoot,
    config: SensorCommon,
    /// Listeners seen at the last sweep; `None` until a baseline exists.
    known: Option<BTreeSet<String>>,
}

impl NetListener {
    /// A sensor reading under `root`, starting from the listeners it saved last.
    pub fn new(root: HostRoot, config: SensorCommon, known: Option<BTreeSet<String>>) -> Self {
        Self {
            root,
            config,
            known,
        }
    }

    fn ephemeral_range(&self) -> (u16, u16) {
        std::fs::read_to_string(self.root.join("/proc/sys/net/ipv4/ip_local_port_range"))
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
                Some((it.next()??, it.next()??))
            })
            .unwrap_or((32768, 60999))
    }
}

impl Sensor for NetListener {
    fn name(&self) -> &'static str {
        "net_listener"
    }

    fn relearn(&mut self) {
        self.known = None;
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let out = &mut sweep.events;
        let ephemeral = self.ephemeral_range();
        let mut current = Vec::new();
        let mut unreadable = Vec::new();
        for protocol in ["tcp", "tcp6", "udp", "udp6"] {
            let path = self.root.join(format!("/proc/net/{protocol}"));
            match std::fs::read_to_string(&path) {
                Ok(text) => current.extend(parse_table(&text, protocol, ephemeral)),
                Err(source) if protocol == "tcp" => {
                    return Err(SensorError::Read { path, source });
                }
                // IPv6 may be disabled on the host.
                Err(_) => unreadable.push(protocol),
            }
        }
        let keys: BTreeSet<String> = current.iter().map(Listener::key).collect();
        match &self.known {
            None => {
                for l in &current {
                    out.push(event(
                        "net.listener",
                        Severity::Info,
                        false,
                        attributes(l, None),
                        format!("baseline listener {}", l.key()),
                    ));
                }
            }
            Some(known) => {
                let new: Vec<&Listener> = current
                    .iter()
                    .filter(|l| !known.contains(&l.key()))
                    .collect();
                let inodes: BTreeSet<u64> = new.iter().map(|l| l.inode).collect();
                let owners = if inodes.is_empty() {
                    BTreeMap::new()
                } else {
                    socket_owners(&self.root, &inodes)
                };
                let me = std::process::id();
                for l in new {
                    let owner = owners.get(&l.inode);
                    if owner.is_some_and(|(pid, _, _)| *pid == me) {
                        // This process's own listener (`bannin up`'s collector and
                        // console run beside its agent): telemetry, not an indicator.
                        out.push(event(
                            "net.listener",
                            Severity::Info,
                            false,
                            attributes(l, owner),
                            format!("listener of this Bannin process {}", l.key()),
                        ));
                        continue;
                    }
                    let who = owner
                        .map(|(pid, comm, _)| format!(" by {comm} (pid {pid})"))
                        .unwrap_or_default();
                    out.push(event(
                        "net.new_listener",
                        self.config.severity,
                        true,
                        attributes(l, owner),
                        format!(
                            "new {} listener on {}{who}",
                            l.protocol,
                            endpoint(l.address, l.port)
                        ),
                    ));
                }
                for gone in known.difference(&keys) {
                    out.push(event(
                        "net.listener_closed",
                        Severity::Info,
                        false,
                        BTreeMap::from([("listener".to_owned(), gone.clone())]),
                        format!("listener closed: {gone}"),
                    ));
                }
            }
        }
        if self.known.as_ref() != Some(&keys) {
            sweep.save_state(&keys);
            self.known = Some(keys);
        }
        if !running_as_root() {
            return Ok(Health::Degraded(
                "not running as root: listeners are seen, but only this user's processes can be named as their owners".into(),
            ));
        }
        if !unreadable.is_empty() {
            return Ok(Health::Degraded(format!(
                "cannot read /proc/net/{}",
                unreadable.join(", /proc/net/")
            )));
        }
        Ok(Health::Ok)
    }
}

fn attributes(l: &Listener, owner: Option<&(u32, String, String)>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("protocol".to_owned(), l.protocol.to_owned()),
        ("address".to_owned(), l.address.to_string()),
        ("port".to_owned(), l.port.to_string()),
        ("uid".to_owned(), l.uid.to_string()),
    ]);
    if let Some((pid, comm, exe)) = owner {
        a.insert("pid".into(), pid.to_string());
        a.insert("comm".into(), comm.clone());
        a.insert("exe".into(), exe.clone());
    }
    a
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:0CEA 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0
  2: 00000000:A000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 78 2 0000000000000000 0
";

    #[test]
    fn this_process_own_listener_is_telemetry_and_anothers_is_a_finding() {
        let config = SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::Medium,
        };
        let mut sensor = NetListener::new(HostRoot(std::path::PathBuf::from("/")), config, None);
        let mut baseline = Sweep::default();
        sensor.sweep(&mut baseline).expect("baseline");
        let mine = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = mine.local_addr().expect("addr").port().to_string();
        let mut other = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(30)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(other.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("port");
        let other_port = line.trim().to_owned();
        let mut next = Sweep::default();
        sensor.sweep(&mut next).expect("sweep");
        let _ = other.kill();
        let _ = other.wait();
        let kind_of = |p: &str| {
            next.events
                .iter()
                .filter(|e| e.attributes.get("port").map(String::as_str) == Some(p))
                .map(|e| (e.kind.clone(), e.indicator))
                .collect::<Vec<_>>()
        };
        assert_eq!(kind_of(&port), [("net.listener".to_owned(), false)]);
        assert_eq!(
            kind_of(&other_port),
            [("net.new_listener".to_owned(), true)]
        );
        drop(mine);
    }

    #[test]
    fn parses_listening_tcp_sockets_only() {
        let l = parse_table(TCP, "tcp", (32768, 60999));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(l[0].port, 3306);
        assert_eq!(l[0].inode, 4242);
        assert_eq!(l[0].key(), "tcp 127.0.0.1:3306");
    }

    #[test]
    fn parses_ipv6() {
        let l = parse_table(TCP6, "tcp6", (32768, 60999));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(l[0].port, 22);
    }

    #[test]
    fn udp_in_the_ephemeral_range_is_a_client_not_a_listener() {
        let l = parse_table(UDP, "udp", (32768, 60999));
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].port, 68);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_table("header\nnot a line\n0: zz:zz\n", "tcp", (1, 2)).is_empty());
    }
}
