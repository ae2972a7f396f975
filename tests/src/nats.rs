//! A real NATS JetStream cluster on loopback for the cluster tests and the
//! cluster benchmark: `nats-server` processes (Debian's package), routes
//! between them, each with its own store directory, clients over mTLS with
//! certificates of the test PKI.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Proc, TestPki, free_port};

/// The collector names the test servers admit (NATS authorization: one user
/// per collector certificate, as `deploy/nats/` and `cluster init` write it).
pub const COLLECTORS: [&str; 6] = ["a", "b", "c", "r1", "fo-a", "fo-b"];

/// The NATS user a collector certificate maps to (`verify_and_map`: its
/// subject, RFC 2253).
pub fn collector_user(name: &str) -> String {
    format!("CN={name},OU={}", bannin_proto::identity::COLLECTOR_OU)
}

/// Whether `nats-server` is installed (`.ci/run` installs it).
pub fn available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One server of the cluster.
pub struct Node {
    /// The process (None while stopped).
    pub proc: Option<Proc>,
    /// Client port.
    pub port: u16,
    /// Monitoring port (`/healthz`).
    pub http: u16,
    config: PathBuf,
    log: PathBuf,
}

/// A JetStream cluster of `nats-server` processes.
pub struct NatsCluster {
    /// The servers.
    pub nodes: Vec<Node>,
    /// The PKI the collectors' certificates come from.
    pki: TestPki,
    /// The network namespace the servers run in (None: the tests' own).
    netns: Option<String>,
}

impl NatsCluster {
    /// Starts `n` servers (1 or 3) in `dir`, with TLS from `pki` (clients
    /// must present a certificate of its CA), and waits until JetStream is
    /// ready on each.
    pub fn start(dir: &Path, pki: &TestPki, n: usize) -> Self {
        Self::start_in(dir, pki, n, None)
    }

    /// The same, the servers inside network namespace `netns` (listening on
    /// its loopback, reached by collectors in that namespace).
    ///
    /// Ports are picked free and then bound by `nats-server`; a test running
    /// beside can take one in between. A cluster whose server could not bind
    /// is started again on fresh ports (five tries).
    pub fn start_in(dir: &Path, pki: &TestPki, n: usize, netns: Option<&str>) -> Self {
        for _ in 0..5 {
            let mut cluster = Self::configure(dir, pki, n, netns);
            for i in 0..n {
                cluster.start_node(i);
            }
            let mut lost_a_port = false;
            for i in 0..n {
                if let Err(log) = cluster.ready(i, Duration::from_secs(60)) {
                    assert!(
                        log.contains("address already in use"),
                        "nats-server {i} did not start: {log}"
                    );
                    lost_a_port = true;
                    break;
                }
            }
            if !lost_a_port {
                return cluster;
            }
            for i in 0..n {
                cluster.kill_node(i);
            }
        }
        panic!("no free ports for the NATS servers in five tries")
    }

    /// The servers' configuration files, on fresh ports (nothing started).
    fn configure(dir: &Path, pki: &TestPki, n: usize, netns: Option<&str>) -> Self {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let port = free_port();
            let http = free_port();
            let store = dir.join(format!("nats-{i}"));
            std::fs::create_dir_all(&store).expect("nats store dir");
            let others: Vec<String> = routes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: bannin-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    routes[i],
                    others.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\nmax_payload: 8MB\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\n\
                 tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify_and_map: true\n  timeout: 5\n}}\n\
                 authorization {{\n  users = [\n{users}  ]\n}}\n{cluster}",
                users = COLLECTORS
                    .iter()
                    .map(|c| format!("    {{ user: {:?} }}\n", collector_user(c)))
                    .collect::<String>(),
                store = store.display().to_string(),
                cert = pki.dir.server_cert().display().to_string(),
                key = pki.dir.server_key().display().to_string(),
                ca = pki.dir.ca_cert().display().to_string(),
            );
            let config = dir.join(format!("nats-{i}.conf"));
            std::fs::write(&config, text).expect("nats config");
            nodes.push(Node {
                proc: None,
                port,
                http,
                config,
                log: dir.join(format!("nats-{i}.log")),
            });
        }
        Self {
            nodes,
            pki: pki.clone(),
            netns: netns.map(str::to_owned),
        }
    }

    /// Starts (or restarts) server `i`.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nats-server"]);
                c
            }
            None => Command::new("nats-server"),
        };
        command.arg("-c").arg(&node.config);
        node.proc = Some(Proc::spawn(command, node.log.clone()));
    }

    /// SIGKILLs server `i`.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
        }
    }

    /// Waits until server `i` says JetStream is healthy (and is the server
    /// this harness started on that port, not another test's).
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) {
        if let Err(log) = self.ready(i, timeout) {
            panic!("nats-server {i} not healthy: {log}");
        }
    }

    /// [`NatsCluster::wait_ready`], answering the server's log if it exited
    /// or did not become healthy in time.
    fn ready(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let in_netns = self.netns.is_some();
        loop {
            let node = &mut self.nodes[i];
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            if !node.proc.as_mut().is_some_and(Proc::running) {
                return Err(format!("exited: {log}"));
            }
            // In a namespace its monitoring port is out of this process's
            // reach: the log says when it is ready.
            if log.contains("Server is ready")
                && (in_netns || healthz(node.http).is_some_and(|body| body.contains("\"ok\"")))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the server leading `stream` (its Raft group's leader),
    /// asked of the running servers' monitoring ports; None while no leader
    /// is known or the servers run in a namespace.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        if self.netns.is_some() {
            return None;
        }
        stream_leader_at(&self.monitoring_ports(), stream)
    }

    /// The monitoring ports of the running servers.
    pub fn monitoring_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.proc.is_some())
            .map(|n| n.http)
            .collect()
    }

    /// What server `i` logged.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// `tls://` URLs of every server, for `[cluster] servers`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("tls://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The `[cluster]` section of a collector named `name`.
    pub fn collector_section(&self, name: &str, replicas: usize) -> String {
        assert!(
            COLLECTORS.contains(&name),
            "collector {name} is not admitted by the test servers (nats::COLLECTORS)"
        );
        let tls = self.pki.collector(name);
        let urls: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!(
            "[cluster]\nname = {name:?}\nservers = [{}]\nreplicas = {replicas}\nmax_bytes = 4294967296\n[cluster.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            urls.join(", "),
            tls.ca.display().to_string(),
            tls.cert.display().to_string(),
            tls.key.display().to_string(),
        )
    }
}

/// `GET /healthz` of a server's monitoring port.
fn healthz(port: u16) -> Option<String> {
    http_get(port, "/healthz")
}

/// `GET path` of a server's monitoring port: the whole response, headers
/// included.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The index of the server leading `stream`, asked of the servers whose
/// monitoring ports are `ports` (the first that names one answers).
pub fn stream_leader_at(ports: &[u16], stream: &str) -> Option<usize> {
    let name = ports.iter().find_map(|port| {
        leader_in_jsz(&http_get(*port, "/jsz?accounts=true&streams=true")?, stream)
    })?;
    name.strip_prefix('n')?.parse().ok()
}

/// The leader named in a `/jsz?accounts=true&streams=true` answer for
/// `stream`.
fn leader_in_jsz(response: &str, stream: &str) -> Option<String> {
    let body = &response[response.find("\r\n\r\n")? + 4..];
    let jsz: serde_json::Value = serde_json::from_str(body).ok()?;
    jsz.get("account_details")?
        .as_array()?
        .iter()
        .filter_map(|a| a.get("stream_detail")?.as_array())
        .flatten()
        .find(|s| s.get("name").and_then(|n| n.as_str()) == Some(stream))?
        .get("cluster")?
        .get("leader")?
        .as_str()
        .map(str::to_owned)
}
