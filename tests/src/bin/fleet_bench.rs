//! Fleet benchmark: N simulated agents, each on its own mTLS connection,
//! stream telemetry batches to a real collector process, and — in the same
//! run — to a bare tonic sink that acknowledges without storing anything.
//!
//! ```text
//! cargo run --release -p bannin-tests --bin bannin-fleet-bench -- throughput --agents 100,1000 --seconds 15
//! cargo run --release -p bannin-tests --bin bannin-fleet-bench -- idle --agents 1000,10000
//! cargo run --release -p bannin-tests --bin bannin-fleet-bench -- storm --agents 15000
//! cargo run --release -p bannin-tests --bin bannin-fleet-bench -- sigma --rules 500 --agents 100
//! ```
//!
//! Figures and their meaning are in BENCHMARKS.md.

// A benchmark measures time: the tests' ban on `Instant::elapsed` does not apply.
#![allow(clippy::disallowed_methods)]

/// The same allocator as the collector, so the sink comparison is like for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bannin_proto::identity::HostId;
use bannin_proto::tls::{self, ClientConfig, TlsIncoming, TlsMaterial, TlsPaths};
use bannin_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message, collector_message,
};
use bannin_tests::sim::{SimAgent, event};
use bannin_tests::stall::Stall;
use bannin_tests::{TestPki, bin, collector_config, free_port};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Bannin fleet benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Durable acknowledged events per second and ack latency, collector vs bare sink.
    Throughput {
        /// Fleet sizes to run, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        agents: Vec<usize>,
        /// Measured seconds per run (after a warm-up of 3 s).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Events per batch.
        #[arg(long, default_value_t = 200)]
        batch_events: usize,
        /// Batches in flight per agent.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Another bannin-collector binary (an older build) to run the same load
        /// against in the same run, for a ratio.
        #[arg(long)]
        baseline_collector: Option<PathBuf>,
    },
    /// Hunt fan-out: N connected simulated agents answer a cheap hunt; time
    /// from start to every answer stored, collector memory meanwhile; against
    /// the same fleet asked one queued command per host (ping) in the same run.
    Hunt {
        /// Agents.
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Hosts asked by the per-host command baseline (a sample of the fleet).
        #[arg(long, default_value_t = 1000)]
        baseline_hosts: usize,
    },
    /// Search over stored events: `events` events (connections to a pool of
    /// 65,536 addresses, executions of a pool of 4,096 hashes) loaded into a
    /// collector with the index and one without; ingest rate of both, store
    /// size of both, p50/p99 of searches for an address and for a hash, and a
    /// full scan of every host's events for the same address.
    Search {
        /// Events stored in all.
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// Agents sending them.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Searches of each kind timed.
        #[arg(long, default_value_t = 100)]
        searches: usize,
    },
    /// Findings search at volume: `findings` findings written into a store,
    /// a release collector started on it, then through the operator API the
    /// first page (100, newest first) of: no filter (the baseline), a kind, a
    /// common word, a rare path, a pid, a word found nowhere; and the grouped
    /// view the console reads (every passing finding, pages of 1,000, up to 10,000).
    Findings {
        /// Findings stored.
        #[arg(long, default_value_t = 1_000_000)]
        findings: u64,
        /// Runs of each query timed.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Resident memory of the collector with N idle connected agents.
    Idle {
        /// Fleet sizes, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        agents: Vec<usize>,
    },
    /// Reconnect storm: every agent connected, the collector SIGKILLed and
    /// restarted; time until all are back, and collector memory per agent.
    Storm {
        /// Agents.
        #[arg(long, default_value_t = 15_000)]
        agents: usize,
        /// Source addresses they connect from (127.1.x.y).
        #[arg(long, default_value_t = 1_000)]
        sources: usize,
    },
    /// Isolate issued → rules enforced → acknowledged, and release, over N cycles
    /// (root: runs in network namespaces it creates and removes).
    Isolate {
        /// Isolate/release cycles.
        #[arg(long, default_value_t = 100)]
        cycles: usize,
    },
    /// Operator call latency (a new mTLS connection and `ListHosts`) with no
    /// flood and with N idle TCP connections held against the collector's port.
    Flood {
        /// Connections held, spread over `sources` loopback source addresses.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Operator calls measured in each phase.
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// What each held connection does: nothing (idle), stop inside the
        /// first TLS record (header), or stop after a real ClientHello (hello).
        /// Stalled ones are opened afresh every second, so that as many stay
        /// stalled while the calls are measured.
        #[arg(long, value_enum, default_value_t = Stall::Idle)]
        stall: Stall,
        /// Source addresses.
        #[arg(long, default_value_t = 50)]
        sources: usize,
    },
    /// Ingest with N generated Sigma rules against ingest with none, in one
    /// run, on process-exec telemetry; and the rules' load time and memory.
    Sigma {
        /// Rules generated (process_creation mostly, as rule packs are).
        #[arg(long, default_value_t = 500)]
        rules: usize,
        /// Agents.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Measured seconds per run (after a warm-up of 3 s).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
    },
    /// Cluster mode against sled in one run: durable acknowledged events/s
    /// through sled, JetStream replicas 1 (one server) and replicas 3 (three
    /// servers, two collectors); then failover time p50/p99 after SIGKILLing
    /// the collector N agents are on (needs `nats-server`).
    Cluster {
        /// Agents of the ingest runs.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Measured seconds per run (after a warm-up of 3 s).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Events per batch.
        #[arg(long, default_value_t = 200)]
        batch_events: usize,
        /// Batches in flight per agent.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Agents of the failover run.
        #[arg(long, default_value_t = 200)]
        failover_agents: usize,
    },
    /// Losing a NATS server: three servers, two collectors, agents streaming
    /// to both. Each round SIGKILLs the server leading the log stream and
    /// measures, from the kill, how long until NATS names a new leader (the
    /// baseline), every agent has a batch sent after the kill acknowledged,
    /// a finding raised on A is visible through B, a state change through B
    /// succeeds and `bannin cluster` through B names the new leader. The
    /// server is restarted and caught up between rounds (needs `nats-server`).
    NodeLoss {
        /// Rounds (one server killed per round).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Agents streaming meanwhile (half on each collector).
        #[arg(long, default_value_t = 20)]
        agents: usize,
    },
    /// The command queue's sweep — what delivery and expiry read, expiry
    /// every second — over a history of finished commands: every command
    /// (before the open-commands index) against the index, in one run.
    Queue {
        /// Finished commands in the history.
        #[arg(long, default_value_t = 100_000)]
        finished: u64,
        /// Open (pending) commands.
        #[arg(long, default_value_t = 20)]
        open: u64,
    },
    /// Idle agents spread over two collectors in cluster mode (three NATS
    /// servers, replicas 3): each collector's resident memory.
    ClusterIdle {
        /// Agents.
        #[arg(long, default_value_t = 20_000)]
        agents: usize,
        /// Source addresses they connect from (127.1.x.y).
        #[arg(long, default_value_t = 1_000)]
        sources: usize,
        /// Load-generator processes holding the agents' connections (a
        /// process may hold fewer than 20,000 sockets on this machine).
        #[arg(long, default_value_t = 2)]
        processes: usize,
    },
    /// (internal) Idle agents `sim-FROM`… of `cluster-idle`, in a process of
    /// their own; prints `connected N` every second.
    #[command(hide = true)]
    IdleLoad {
        /// The PKI directory of the run.
        #[arg(long)]
        pki: PathBuf,
        /// First agent index.
        #[arg(long)]
        from: usize,
        /// Agents.
        #[arg(long)]
        count: usize,
        /// Collectors, agent i connecting to collector i % len.
        #[arg(long = "addr")]
        addrs: Vec<SocketAddr>,
        /// Source addresses.
        #[arg(long)]
        sources: usize,
    },
    /// (internal) The operator side of `isolate`, run inside the collector's namespace.
    #[command(hide = true)]
    IsolateClient {
        /// Operator certificate paths: CA, cert, key.
        #[arg(long, num_args = 3)]
        tls: Vec<PathBuf>,
        /// Collector address.
        #[arg(long)]
        collector: SocketAddr,
        /// Cycles.
        #[arg(long)]
        cycles: usize,
    },
    /// (internal) Run the bare sink: an AgentLink server that acknowledges and stores nothing.
    Sink {
        /// PKI directory.
        #[arg(long)]
        pki: PathBuf,
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Cmd::Throughput {
                agents,
                seconds,
                batch_events,
                in_flight,
                baseline_collector,
            } => {
                throughput(
                    &agents,
                    seconds,
                    batch_events,
                    in_flight,
                    baseline_collector.as_deref(),
                )
                .await
            }
            Cmd::Idle { agents } => idle(&agents).await,
            Cmd::Findings { findings, runs } => findings_search(findings, runs).await,
            Cmd::Search {
                events,
                agents,
                searches,
            } => search(events, agents, searches).await,
            Cmd::Hunt {
                agents,
                baseline_hosts,
            } => hunt(agents, baseline_hosts).await,
            Cmd::Sigma {
                rules,
                agents,
                seconds,
            } => sigma(rules, agents, seconds).await,
            Cmd::Storm { agents, sources } => storm(agents, sources).await,
            Cmd::Flood {
                connections,
                calls,
                stall,
                sources,
            } => flood(connections, calls, stall, sources).await,
            Cmd::Sink { pki, listen } => sink(&pki, listen).await,
            Cmd::Isolate { cycles } => isolate(cycles).await,
            Cmd::Queue { finished, open } => queue(finished, open),
            Cmd::NodeLoss { rounds, agents } => node_loss(rounds, agents).await,
            Cmd::ClusterIdle {
                agents,
                sources,
                processes,
            } => cluster_idle(agents, sources, processes).await,
            Cmd::IdleLoad {
                pki,
                from,
                count,
                addrs,
                sources,
            } => idle_load(&pki, from, count, &addrs, sources).await,
            Cmd::Cluster {
                agents,
                seconds,
                batch_events,
                in_flight,
                failover_agents,
            } => cluster(agents, seconds, batch_events, in_flight, failover_agents).await,
            Cmd::IsolateClient {
                tls,
                collector,
                cycles,
            } => isolate_client(&tls, collector, cycles).await,
        }
    })
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(matches!(child.try_wait(), Ok(None)), "server exited");
        anyhow::ensure!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `calls` operator calls, each on a new mTLS connection: latencies.
async fn operator_calls(
    addr: SocketAddr,
    tls: &TlsPaths,
    calls: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..calls {
        let t = Instant::now();
        let mut client = tokio::time::timeout(
            Duration::from_secs(30),
            bannin_tests::operator_client(tls, addr),
        )
        .await
        .context("operator connect timed out")?;
        client
            .list_hosts(bannin_proto::v1::ListHostsRequest::default())
            .await
            .context("ListHosts")?;
        h.record(t.elapsed().as_micros() as u64)?;
    }
    Ok(h)
}

async fn flood(
    connections: usize,
    calls: usize,
    stall: Stall,
    sources: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let collector = start_collector(dir.path(), &pki)?;
    let tls = pki.operator("bench");
    let quiet = operator_calls(collector.addr, &tls, calls).await?;
    let from = bannin_tests::stall::sources(sources.max(1));
    let per_source = connections.div_ceil(from.len());
    let hello = bannin_tests::stall::client_hello(&pki.agent("staller"));
    let addr = collector.addr;
    let first =
        bannin_tests::stall::stalled_connections(&from, per_source, addr, stall, &hello).await;
    let held_now = first.len();
    // Stalled connections are closed by the collector (3 s inside a record,
    // 10 s after a ClientHello): open a fresh set every second and keep the
    // last few, so the stall stands while the calls are measured.
    let stop = CancellationToken::new();
    let renew = (stall != Stall::Idle).then(|| {
        let stop = stop.clone();
        let (from, hello) = (from.clone(), hello.clone());
        tokio::spawn(async move {
            let mut sets = std::collections::VecDeque::from([first]);
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                sets.push_back(
                    bannin_tests::stall::stalled_connections(
                        &from, per_source, addr, stall, &hello,
                    )
                    .await,
                );
                if sets.len() > 3 {
                    sets.pop_front();
                }
            }
        })
    });
    let flooded = operator_calls(collector.addr, &tls, calls).await?;
    stop.cancel();
    if let Some(task) = renew {
        let _ = task.await;
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| phase | connections held ({stall:?}, from {} addresses) | operator call p50 (ms) | p99 (ms) | max (ms) |",
        from.len()
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| none held | 0 | {:.1} | {:.1} | {:.1} |",
        ms(&quiet, 0.5),
        ms(&quiet, 0.99),
        quiet.max() as f64 / 1000.0
    );
    println!(
        "| held | {held_now} | {:.1} | {:.1} | {:.1} |",
        ms(&flooded, 0.5),
        ms(&flooded, 0.99),
        flooded.max() as f64 / 1000.0
    );
    println!(
        "ratio held / none: p50 x{:.2}, p99 x{:.2}",
        ms(&flooded, 0.5) / ms(&quiet, 0.5).max(0.001),
        ms(&flooded, 0.99) / ms(&quiet, 0.99).max(0.001)
    );
    Ok(())
}

fn start_collector(dir: &Path, pki: &TestPki) -> anyhow::Result<Server> {
    start_collector_with(dir, pki, "")
}

fn start_collector_with(dir: &Path, pki: &TestPki, extra: &str) -> anyhow::Result<Server> {
    start_collector_binary(&bin("bannin-collector"), dir, pki, extra)
}

fn start_collector_binary(
    binary: &Path,
    dir: &Path,
    pki: &TestPki,
    extra: &str,
) -> anyhow::Result<Server> {
    let port = free_port();
    let config = collector_config(dir, pki, port, extra);
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("collector.log"))?)
        .spawn()
        .context("starting bannin-collector")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut child)?;
    Ok(Server { child, addr })
}

fn start_sink(dir: &Path, pki: &TestPki) -> anyhow::Result<Server> {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new(std::env::current_exe()?)
        .arg("sink")
        .arg("--pki")
        .arg(&pki.dir.0)
        .arg("--listen")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sink.log"))?)
        .spawn()?;
    wait_listening(addr, &mut child)?;
    Ok(Server { child, addr })
}

/// The bare sink: same TLS, same service, acknowledges every batch at once.
async fn sink(pki: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let dir = bannin_collector::pki::PkiDir(pki.to_owned());
    let material = TlsMaterial::load(&TlsPaths {
        ca: dir.ca_cert(),
        cert: dir.server_cert(),
        key: dir.server_key(),
    })?;
    let config = tls::server_config(&material)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let incoming = TlsIncoming::new(listener, config, CancellationToken::new());
    tonic::transport::Server::builder()
        .add_service(v1::agent_link_server::AgentLinkServer::new(BareSink))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

struct BareSink;

#[tonic::async_trait]
impl v1::agent_link_server::AgentLink for BareSink {
    type SessionStream = ReceiverStream<Result<v1::CollectorMessage, tonic::Status>>;
    async fn session(
        &self,
        request: tonic::Request<tonic::Streaming<v1::AgentMessage>>,
    ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                let reply = match m.body {
                    Some(agent_message::Body::Hello(_)) => {
                        collector_message::Body::Welcome(v1::Welcome::default())
                    }
                    Some(agent_message::Body::Batch(b)) => collector_message::Body::Ack(v1::Ack {
                        sequence: b.sequence,
                    }),
                    _ => continue,
                };
                if tx
                    .send(Ok(v1::CollectorMessage { body: Some(reply) }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// Process-exec telemetry shaped like a busy server's: 16 binaries with their
/// own hashes, arguments that differ on every event (a random token), varying
/// pids and users. Random tokens keep compression honest: repetitive sample data
/// would flatter the store. Every batch is fresh (`batch` seeds the tokens and the
/// observation time is now), so its indicators are new findings, not folds into
/// the same few.
fn sample_events(n: usize, agent: usize, batch: u64) -> Vec<v1::Event> {
    const EXES: [&str; 16] = [
        "/usr/bin/curl",
        "/usr/bin/bash",
        "/usr/bin/python3.11",
        "/usr/sbin/sshd",
        "/usr/bin/sudo",
        "/usr/bin/systemctl",
        "/usr/bin/ls",
        "/usr/bin/grep",
        "/usr/bin/awk",
        "/usr/bin/tar",
        "/usr/bin/gzip",
        "/usr/lib/postgresql/15/bin/postgres",
        "/usr/sbin/nginx",
        "/usr/bin/cron",
        "/usr/bin/perl",
        "/usr/bin/git",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64
        ^ (agent as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ batch.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..n)
        .map(|i| {
            let exe_index = (next() % EXES.len() as u64) as usize;
            let exe = EXES[exe_index];
            let hash = format!(
                "{:016x}{:016x}{:016x}{:016x}",
                exe_index * 7919,
                exe_index * 104729,
                exe_index,
                !exe_index
            );
            let token = format!("{:016x}", next());
            v1::Event {
                kind: "process.exec".into(),
                severity: v1::Severity::Info as i32,
                observed_unix_ms: bannin_proto::now_unix_ms(),
                attributes: [
                    ("exe".to_owned(), exe.to_owned()),
                    (
                        "cmdline".to_owned(),
                        format!("{exe} --job {token} /srv/data/{agent}/{i}"),
                    ),
                    ("pid".to_owned(), (1000 + next() % 60000).to_string()),
                    ("ppid".to_owned(), (1 + next() % 2000).to_string()),
                    (
                        "uid".to_owned(),
                        [0, 33, 1000, 1001][(next() % 4) as usize].to_string(),
                    ),
                    ("sha256".to_owned(), hash),
                    (
                        "user".to_owned(),
                        ["root", "www-data", "alice", "bob"][(next() % 4) as usize].to_owned(),
                    ),
                    ("parent_exe".to_owned(), "/usr/bin/bash".to_owned()),
                    (
                        "parent_cmdline".to_owned(),
                        format!("bash /srv/jobs/{agent}.sh"),
                    ),
                    ("cwd".to_owned(), format!("/srv/data/{agent}")),
                ]
                .into(),
                summary: String::new(),
                // One indicator in a hundred, so detection and the findings queue work too.
                indicator: i % 100 == 0,
            }
        })
        .collect()
}

struct Tally {
    events: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

/// The loopback address simulated agent `index` connects from: a fleet's hosts
/// have addresses of their own, and the collector's accept path caps what one
/// address may hold at once.
fn source_of(index: usize) -> std::net::IpAddr {
    let s = index % 60_000;
    std::net::IpAddr::from([127, 1, (s / 250) as u8, (2 + s % 250) as u8])
}

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    index: usize,
) -> anyhow::Result<AgentLinkClient<tonic::transport::Channel>> {
    let channel = tls::connect_from(
        &addr.to_string(),
        "bannin-collector",
        config,
        Some(source_of(index)),
    )
    .await?;
    Ok(AgentLinkClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20))
}

/// One simulated agent: Hello, then keep `in_flight` batches outstanding until `stop`.
#[allow(clippy::too_many_arguments)]
async fn agent_loop(
    index: usize,
    host: String,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    batch_events: usize,
    in_flight: usize,
    measure_from: Instant,
    stop: CancellationToken,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let mut client = connect(addr, config, index).await?;
    let (tx, rx) = mpsc::channel(in_flight + 2);
    tx.send(v1::AgentMessage {
        body: Some(agent_message::Body::Hello(v1::Hello {
            host_id: host,
            heartbeat_interval_secs: 30,
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
    let mut next = match inbound.message().await? {
        Some(v1::CollectorMessage {
            body: Some(collector_message::Body::Welcome(w)),
        }) => w.acked_sequence + 1,
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut local = Histogram::<u64>::new(3)?;
    let mut acked_events = 0u64;
    loop {
        while sent.len() < in_flight && !stop.is_cancelled() {
            // A fresh batch each time (new content, new observation times),
            // encoded once, as a real agent encodes each event when it spools it.
            let batch =
                v1::TelemetryBatch::from_events(next, &sample_events(batch_events, index, next));
            sent.push_back((next, Instant::now()));
            next += 1;
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Batch(batch)),
            })
            .await?;
        }
        if sent.is_empty() {
            break;
        }
        let message = tokio::select! {
            m = inbound.message() => m?,
            () = tokio::time::sleep(Duration::from_secs(30)) => anyhow::bail!("no ack within 30 s"),
        };
        if let Some(v1::CollectorMessage {
            body: Some(collector_message::Body::Ack(ack)),
        }) = message
        {
            let now = Instant::now();
            while let Some((seq, at)) = sent.front().copied() {
                if seq > ack.sequence {
                    break;
                }
                sent.pop_front();
                if at >= measure_from && !stop.is_cancelled() {
                    acked_events += batch_events as u64;
                    let _ = local.record(now.duration_since(at).as_micros() as u64);
                }
            }
        }
    }
    tally.events.fetch_add(acked_events, Ordering::Relaxed);
    tally.latency.lock().await.add(&local)?;
    Ok(())
}

struct RunResult {
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

async fn run_load(
    addrs: &[SocketAddr],
    configs: &[(String, Arc<ClientConfig>)],
    seconds: u64,
    batch_events: usize,
    in_flight: usize,
) -> anyhow::Result<RunResult> {
    let stop = CancellationToken::new();
    let tally = Arc::new(Tally {
        events: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new(3)?),
    });
    let warmup = Duration::from_secs(3) + Duration::from_millis(configs.len() as u64 * 3);
    let measure_from = Instant::now() + warmup;
    let mut tasks = Vec::new();
    for (i, (host, config)) in configs.iter().enumerate() {
        tasks.push(tokio::spawn(agent_loop(
            i,
            host.clone(),
            addrs[i % addrs.len()],
            config.clone(),
            batch_events,
            in_flight,
            measure_from,
            stop.clone(),
            tally.clone(),
        )));
    }
    tokio::time::sleep_until((measure_from + Duration::from_secs(seconds)).into()).await;
    stop.cancel();
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("agent failed: {e:#}");
                }
            }
            Err(_) => failed += 1,
        }
    }
    let latency = tally.latency.lock().await;
    Ok(RunResult {
        events_per_sec: tally.events.load(Ordering::Relaxed) as f64 / seconds as f64,
        p50_ms: latency.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        failed,
    })
}

fn agent_configs(pki: &TestPki, n: usize) -> anyhow::Result<Vec<(String, Arc<ClientConfig>)>> {
    (0..n)
        .map(|i| {
            let host = format!("sim-{i:05}");
            HostId::new(host.as_str())?;
            let material = TlsMaterial::load(&pki.agent(&host))?;
            Ok((host, tls::client_config(&material)?))
        })
        .collect()
}

async fn throughput(
    agents: &[usize],
    seconds: u64,
    batch_events: usize,
    in_flight: usize,
    baseline: Option<&Path>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let max = agents.iter().copied().max().unwrap_or(0);
    eprintln!("issuing {max} agent certificates…");
    let configs = agent_configs(&pki, max)?;
    println!(
        "| agents | target | durable acked events/s | p50 ack ms | p99 ack ms | failed agents | findings created |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &n in agents {
        let run_dir = dir.path().join(format!("run-{n}"));
        std::fs::create_dir_all(&run_dir)?;
        let collector = start_collector(&run_dir.join("collector"), &pki).context("collector")?;
        let c = run_load(
            &[collector.addr],
            &configs[..n],
            seconds,
            batch_events,
            in_flight,
        )
        .await
        .context("load on the collector")?;
        let store_bytes = dir_size(&run_dir.join("collector/store"));
        let findings = findings_created(collector.addr, &pki)
            .await
            .context("counting findings")?;
        drop(collector);
        if let Some(binary) = baseline {
            let old = start_collector_binary(binary, &run_dir.join("baseline"), &pki, "")
                .context("baseline collector")?;
            let b = run_load(&[old.addr], &configs[..n], seconds, batch_events, in_flight)
                .await
                .context("load on the baseline collector")?;
            drop(old);
            println!(
                "| {n} | baseline collector ({}) | {:.0} | {:.1} | {:.1} | {} | |",
                binary.display(),
                b.events_per_sec,
                b.p50_ms,
                b.p99_ms,
                b.failed
            );
            println!(
                "| {n} | ratio collector / baseline | {:.0} % | | | | |",
                100.0 * c.events_per_sec / b.events_per_sec.max(1.0)
            );
        }
        let sink = start_sink(&run_dir, &pki).context("sink")?;
        let s = run_load(
            &[sink.addr],
            &configs[..n],
            seconds,
            batch_events,
            in_flight,
        )
        .await
        .context("load on the sink")?;
        drop(sink);
        println!(
            "| {n} | collector (sled, fdatasync) | {:.0} | {:.1} | {:.1} | {} | {findings} |",
            c.events_per_sec, c.p50_ms, c.p99_ms, c.failed
        );
        println!(
            "| {n} | bare tonic sink | {:.0} | {:.1} | {:.1} | {} | |",
            s.events_per_sec, s.p50_ms, s.p99_ms, s.failed
        );
        println!(
            "| {n} | ratio collector / sink | {:.0} % | | | | |",
            100.0 * c.events_per_sec / s.events_per_sec.max(1.0)
        );
        eprintln!(
            "store after the {n}-agent run: {} MiB",
            store_bytes / (1 << 20)
        );
    }
    Ok(())
}

/// How many findings the collector holds (every one created by the run: its
/// store started empty), read through the operator API as `bench`.
async fn findings_created(addr: SocketAddr, pki: &TestPki) -> anyhow::Result<u64> {
    let material = TlsMaterial::load(&pki.operator("bench"))?;
    let channel = tls::connect(
        &addr.to_string(),
        "bannin-collector",
        tls::client_config(&material)?,
    )
    .await?;
    let mut client = v1::operator_client::OperatorClient::new(channel);
    let (mut count, mut cursor) = (0u64, 0u64);
    loop {
        let page = client
            .list_findings(v1::ListFindingsRequest {
                since_id: cursor,
                limit: 10_000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .findings;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        cursor = last.id;
        count += page.len() as u64;
    }
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn idle(agents: &[usize]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let max = agents.iter().copied().max().unwrap_or(0);
    eprintln!("issuing {max} agent certificates…");
    let configs = agent_configs(&pki, max)?;
    println!("| idle agents connected | collector RSS (MiB) | RSS per agent (KiB) |");
    println!("|---:|---:|---:|");
    for &n in agents {
        let collector = start_collector(&dir.path().join(format!("idle-{n}")), &pki)?;
        let baseline = collector.rss_bytes();
        let stop = CancellationToken::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(200));
        let connected = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (index, (host, config)) in configs[..n].iter().cloned().enumerate() {
            let stop = stop.clone();
            let permits = permits.clone();
            let connected = connected.clone();
            let addr = collector.addr;
            tasks.push(tokio::spawn(async move {
                let permit = permits.acquire_owned().await?;
                let mut client = connect(addr, config, index).await?;
                let (tx, rx) = mpsc::channel(4);
                tx.send(v1::AgentMessage {
                    body: Some(agent_message::Body::Hello(v1::Hello {
                        host_id: host,
                        heartbeat_interval_secs: 30,
                        ..Default::default()
                    })),
                })
                .await?;
                let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
                inbound.message().await?;
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                stop.cancelled().await;
                drop(tx);
                anyhow::Ok(())
            }));
        }
        let started = Instant::now();
        while connected.load(Ordering::Relaxed) < n as u64
            && started.elapsed() < Duration::from_secs(300)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let up = connected.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = collector.rss_bytes();
        eprintln!(
            "{up} of {n} agents connected in {:.1} s; collector RSS before {} MiB",
            started.elapsed().as_secs_f64(),
            baseline >> 20
        );
        println!(
            "| {up} | {} | {:.0} |",
            rss >> 20,
            (rss.saturating_sub(baseline)) as f64 / 1024.0 / up.max(1) as f64
        );
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        drop(collector);
    }
    Ok(())
}

/// Events of the search bench: half connections (remote address from a pool
/// of 65,536 in 10.0.0.0/16, a port of 64), half executions (a hash of a pool
/// of 4,096).
fn search_events(n: usize, agent: usize, batch: u64) -> Vec<v1::Event> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64
        ^ (agent as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ batch.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let now = bannin_proto::now_unix_ms();
    (0..n)
        .map(|i| {
            let r = next();
            let attributes: std::collections::BTreeMap<String, String> = if i % 2 == 0 {
                [
                    ("remote_address".to_owned(), search_ip(r % 65_536)),
                    (
                        "remote_port".to_owned(),
                        (8000 + (r >> 20) % 64).to_string(),
                    ),
                    ("local_address".to_owned(), "192.168.1.10".to_owned()),
                    (
                        "local_port".to_owned(),
                        (30_000 + (r >> 30) % 20_000).to_string(),
                    ),
                    ("exe".to_owned(), "/usr/bin/curl".to_owned()),
                    ("pid".to_owned(), (1000 + (r >> 40) % 60_000).to_string()),
                ]
                .into()
            } else {
                [
                    ("exe".to_owned(), format!("/usr/local/bin/tool{}", r % 4096)),
                    ("sha256".to_owned(), search_hash(r % 4096)),
                    (
                        "user".to_owned(),
                        ["root", "www-data", "alice", "bob"][((r >> 16) % 4) as usize].to_owned(),
                    ),
                    ("comm".to_owned(), format!("tool{}", r % 4096)),
                    ("pid".to_owned(), (1000 + (r >> 40) % 60_000).to_string()),
                ]
                .into()
            };
            v1::Event {
                kind: if i % 2 == 0 {
                    "net.flow"
                } else {
                    "process.exec"
                }
                .into(),
                severity: v1::Severity::Info as i32,
                observed_unix_ms: now,
                attributes,
                summary: String::new(),
                indicator: false,
            }
        })
        .collect()
}

fn search_ip(n: u64) -> String {
    format!("10.0.{}.{}", n / 256, n % 256)
}

fn search_hash(n: u64) -> String {
    format!("{:064x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Sends `batches` batches of `batch_events` events from every agent and
/// waits for every acknowledgement; events per second.
async fn load_fixed(
    addr: SocketAddr,
    configs: &[(String, Arc<ClientConfig>)],
    batches: u64,
    batch_events: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, (host, config)) in configs.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut client = connect(addr, config, index).await?;
            let (tx, rx) = mpsc::channel(8);
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(v1::Hello {
                    host_id: host,
                    heartbeat_interval_secs: 30,
                    ..Default::default()
                })),
            })
            .await?;
            let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
            inbound.message().await?;
            let mut sent = 0u64;
            let mut acked = 0u64;
            while acked < batches {
                while sent < batches && sent < acked + 4 {
                    sent += 1;
                    let batch = v1::TelemetryBatch::from_events(
                        sent,
                        &search_events(batch_events, index, sent),
                    );
                    tx.send(v1::AgentMessage {
                        body: Some(agent_message::Body::Batch(batch)),
                    })
                    .await?;
                }
                match inbound.message().await? {
                    Some(v1::CollectorMessage {
                        body: Some(collector_message::Body::Ack(a)),
                    }) => acked = acked.max(a.sequence),
                    Some(_) => {}
                    None => anyhow::bail!("stream ended"),
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let total = configs.len() as f64 * batches as f64 * batch_events as f64;
    Ok(total / started.elapsed().as_secs_f64())
}

/// Search over stored events (see `Cmd::Search`).
/// See [`Cmd::Findings`].
async fn findings_search(count: u64, runs: usize) -> anyhow::Result<()> {
    use bannin_collector::model::{Finding, FindingState, Severity};
    const KINDS: [&str; 20] = [
        "file.odd_name",
        "file.archive",
        "file.modified",
        "file.timestamps",
        "process.unknown_binary",
        "process.suspicious_exec",
        "process.reverse_shell",
        "net.new_listener",
        "net.connection_flood",
        "account.added",
        "account.sudoers",
        "auth.failures",
        "auth.brute_force",
        "system.reboot",
        "hardware.usb",
        "resources.cpu",
        "logs.antivirus",
        "ssh.key_added",
        "hunt.match",
        "sigma.match",
    ];
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let data = dir.path().join("c");
    {
        let store = bannin_collector::store::Store::open(&data.join("store"))?;
        eprintln!("writing {count} findings…");
        let written = Instant::now();
        let mut set = bannin_collector::store::WriteSet::default();
        for id in 1..=count {
            let kind = KINDS[(id % 20) as usize];
            let host = format!("host-{:04}", id % 1000);
            let path = format!("/srv/app{}/data/file-{id}.bin", id % 97);
            let f = Finding {
                id,
                host_id: host.clone(),
                kind: kind.into(),
                severity: [Severity::Low, Severity::Medium, Severity::High][(id % 3) as usize],
                state: if id % 4 == 0 {
                    FindingState::Acknowledged
                } else {
                    FindingState::New
                },
                observed_unix_ms: 1_700_000_000_000 + id as i64 * 1000,
                received_unix_ms: 1_700_000_000_000 + id as i64 * 1000,
                last_observed_unix_ms: 1_700_000_000_000 + id as i64 * 1000,
                count: 1,
                attributes: std::collections::BTreeMap::from([
                    ("path".to_owned(), path.clone()),
                    ("pid".to_owned(), (10_000 + id % 50_000).to_string()),
                    (
                        "user".to_owned(),
                        ["root", "www-data", "backup", "ana"][(id % 4) as usize].to_owned(),
                    ),
                ]),
                summary: format!("{kind} on {host}: {path}"),
                history: Vec::new(),
            };
            set.put_finding(&f)?;
            if set.len() >= 10_000 {
                store.apply(std::mem::take(&mut set))?;
            }
        }
        store.apply(set)?;
        store.make_durable()?;
        println!(
            "{count} findings written with their index in {:.1} s; store {:.0} MiB",
            written.elapsed().as_secs_f64(),
            dir_size(&data.join("store")) as f64 / 1048576.0
        );
    }
    let server = start_collector_with(&data, &pki, "")?;
    let mut ops = bannin_tests::operator_client(&pki.operator("bench"), server.addr).await;
    let newest = count;
    let queries: Vec<(&str, v1::FindingFilter)> = vec![
        ("no filter (baseline)", v1::FindingFilter::default()),
        (
            "a kind",
            v1::FindingFilter {
                kinds: vec!["process.reverse_shell".into()],
                ..Default::default()
            },
        ),
        (
            "a common word (1 in 4)",
            v1::FindingFilter {
                text: "www-data".into(),
                ..Default::default()
            },
        ),
        (
            "a rare path (1 finding)",
            v1::FindingFilter {
                text: format!("file-{}.bin", newest / 2),
                ..Default::default()
            },
        ),
        (
            "a pid (1 in 50,000)",
            v1::FindingFilter {
                text: format!("{}", 10_000 + (newest / 3) % 50_000),
                ..Default::default()
            },
        ),
        (
            "a pid as a field (pid:N, 1 in 50,000)",
            v1::FindingFilter {
                text: format!("pid:{}", 10_000 + (newest / 3) % 50_000),
                ..Default::default()
            },
        ),
        (
            "a path as a field (path:P, 1 finding)",
            v1::FindingFilter {
                text: format!(
                    "path:/srv/app{}/data/file-{}.bin",
                    (newest / 2) % 97,
                    newest / 2
                ),
                ..Default::default()
            },
        ),
        (
            "one host's open findings (1 in 1,000)",
            v1::FindingFilter {
                host_id: "host-0042".into(),
                states: vec![
                    v1::FindingState::New as i32,
                    v1::FindingState::Acknowledged as i32,
                ],
                ..Default::default()
            },
        ),
        (
            "a word found nowhere",
            v1::FindingFilter {
                text: "no-such-thing".into(),
                ..Default::default()
            },
        ),
    ];
    println!(
        "Findings search over {count} stored findings: first page of 100, newest first ({runs} runs each)"
    );
    println!("| query | found on the first page | findings covered | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, filter) in &queries {
        let mut hist = Histogram::<u64>::new(3)?;
        let mut found = 0;
        let mut read = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let page = ops
                .list_findings(v1::ListFindingsRequest {
                    newest_first: true,
                    limit: 100,
                    filter: Some(filter.clone()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            hist.record(t.elapsed().as_micros() as u64)?;
            found = page.findings.len();
            read = if page.scanned_to == 0 {
                0
            } else {
                newest - page.scanned_to + 1
            };
        }
        println!(
            "| {name} | {found} | {read} | {:.1} | {:.1} |",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    // Other orders: the newest 10,000 that pass, sorted on the collector.
    for (name, order, filter) in [
        (
            "worst severity first: one kind family",
            v1::FindingOrder::Severity,
            v1::FindingFilter {
                kinds: vec!["file.".into()],
                ..Default::default()
            },
        ),
        (
            "most recently observed first: one host",
            v1::FindingOrder::LastObserved,
            v1::FindingFilter {
                host_id: "host-0042".into(),
                ..Default::default()
            },
        ),
    ] {
        let mut hist = Histogram::<u64>::new(3)?;
        let mut ordered = 0;
        for _ in 0..runs.min(5) {
            let t = Instant::now();
            let page = ops
                .list_findings(v1::ListFindingsRequest {
                    newest_first: true,
                    limit: 100,
                    order: order as i32,
                    filter: Some(filter.clone()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            hist.record(t.elapsed().as_micros() as u64)?;
            ordered = page.ordered;
        }
        println!(
            "| sorted, {name} | 100 of {ordered} sorted | | {:.1} | {:.1} |",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    // The grouped view: `GroupFindings`, counted on the collector.
    for (name, by, filter) in [
        (
            "grouped by host: open findings of one kind family",
            v1::FindingGroupBy::Host,
            v1::FindingFilter {
                kinds: vec!["file.".into()],
                states: vec![
                    v1::FindingState::New as i32,
                    v1::FindingState::Acknowledged as i32,
                ],
                ..Default::default()
            },
        ),
        (
            "grouped by kind: a common word",
            v1::FindingGroupBy::Kind,
            v1::FindingFilter {
                text: "www-data".into(),
                ..Default::default()
            },
        ),
        (
            "grouped by summary: a rare path",
            v1::FindingGroupBy::Summary,
            v1::FindingFilter {
                text: format!("file-{}.bin", newest / 2),
                ..Default::default()
            },
        ),
        (
            "grouped by kind: every finding",
            v1::FindingGroupBy::Kind,
            v1::FindingFilter::default(),
        ),
    ] {
        let mut hist = Histogram::<u64>::new(3)?;
        let (mut grouped, mut groups) = (0, 0);
        for _ in 0..runs.min(5) {
            let t = Instant::now();
            let answer = ops
                .group_findings(v1::GroupFindingsRequest {
                    by: by as i32,
                    filter: Some(filter.clone()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            hist.record(t.elapsed().as_micros() as u64)?;
            (grouped, groups) = (answer.grouped, answer.total_groups);
        }
        println!(
            "| {name} | {grouped} in {groups} groups | | {:.1} | {:.1} |",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    drop(server);
    Ok(())
}

async fn search(events: usize, agents: usize, searches: usize) -> anyhow::Result<()> {
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let configs = agent_configs_in_memory(&pki, agents)?;
    let batches = (events / agents / BATCH).max(1) as u64;
    let stored = agents as u64 * batches * BATCH as u64;
    let limits = "[hosts]\nmax_events_per_sec = 10000000\nmax_bytes_per_sec = 10000000000\n[events]\nmax_bytes = 107374182400\n";
    let without = start_collector_with(
        &dir.path().join("without"),
        &pki,
        &format!("{limits}index = false\n"),
    )?;
    eprintln!("loading {stored} events without the index…");
    let rate_without = load_fixed(without.addr, &configs, batches, BATCH).await?;
    drop(without);
    let size_without = dir_size(&dir.path().join("without/store"));
    let with = start_collector_with(&dir.path().join("with"), &pki, limits)?;
    eprintln!("loading {stored} events with the index…");
    let rate_with = load_fixed(with.addr, &configs, batches, BATCH).await?;
    let size_with = dir_size(&dir.path().join("with/store"));
    let mut ops = bannin_tests::operator_client(&pki.operator("bench"), with.addr).await;
    let times = |field: &str| (field.to_owned(), Histogram::<u64>::new(3));
    let mut results = Vec::new();
    for field in ["ip", "sha256", "ip /24"] {
        let (name, hist) = times(field);
        let mut hist = hist?;
        let mut matched = 0u64;
        // A network matches in nearly every batch here (the worst case): fewer of them.
        let runs = if field == "ip /24" {
            (searches / 10).max(1)
        } else {
            searches
        };
        for i in 0..runs as u64 {
            let n = i.wrapping_mul(7919) % 65_536;
            let (f, value) = match field {
                "ip" => ("ip", search_ip(n)),
                "sha256" => ("sha256", search_hash(n % 4096)),
                _ => ("ip", format!("10.0.{}.0/24", n % 256)),
            };
            let t = Instant::now();
            let found = ops
                .search(v1::SearchRequest {
                    field: f.into(),
                    value,
                    limit: 100,
                    ..Default::default()
                })
                .await?
                .into_inner();
            hist.record(t.elapsed().as_micros() as u64)?;
            matched += found.hosts.iter().map(|h| h.events).sum::<u64>();
        }
        results.push((name, hist, runs, matched / runs.max(1) as u64));
    }
    // The baseline: every host's events read and filtered for one address.
    let wanted = search_ip(0);
    let t = Instant::now();
    let mut scanned = 0u64;
    let mut found = 0u64;
    for (host, _) in &configs {
        let mut after = 0u64;
        loop {
            let page = ops
                .list_events(v1::ListEventsRequest {
                    host_id: host.clone(),
                    after_sequence: after,
                    limit: 10_000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            for e in &page.events {
                scanned += 1;
                after = after.max(e.sequence);
                if e.event
                    .as_ref()
                    .and_then(|e| e.attributes.get("remote_address"))
                    == Some(&wanted)
                {
                    found += 1;
                }
            }
            if !page.truncated || page.events.is_empty() {
                break;
            }
        }
    }
    let scan_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("| | events | ingest events/s | store MiB | bytes per event |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| without the index | {stored} | {rate_without:.0} | {} | {:.0} |",
        size_without >> 20,
        size_without as f64 / stored as f64
    );
    println!(
        "| with the index | {stored} | {rate_with:.0} | {} | {:.0} |",
        size_with >> 20,
        size_with as f64 / stored as f64
    );
    println!(
        "| ratio with / without | | {:.0} % | {:.0} % | |",
        100.0 * rate_with / rate_without.max(1.0),
        100.0 * size_with as f64 / size_without.max(1) as f64
    );
    println!();
    println!(
        "| search (100 events listed) | searches | matching events (mean) | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, hist, runs, matched) in &results {
        println!(
            "| {name} | {runs} | {matched} | {:.1} | {:.1} | {:.1} |",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.max() as f64 / 1000.0
        );
    }
    println!(
        "| baseline: every host's events read (ListEvents) and filtered for one address | 1 | {found} | {scan_ms:.0} | | |"
    );
    eprintln!("scanned {scanned} events");
    let p99_ip = results[0].1.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "\nthe full scan took {:.0}× the p99 of an address search",
        scan_ms / p99_ip.max(0.001)
    );
    drop(with);
    Ok(())
}

/// Hunt fan-out (see `Cmd::Hunt`).
async fn hunt(n: usize, baseline_hosts: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    eprintln!("issuing {n} agent certificates…");
    let configs = agent_configs_in_memory(&pki, n)?;
    let collector = start_collector(&dir.path().join("hunt"), &pki)?;
    let addr = collector.addr;
    let stop = CancellationToken::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(200));
    let connected = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (index, (host, config)) in configs.into_iter().enumerate() {
        let (stop, permits, connected, answered) = (
            stop.clone(),
            permits.clone(),
            connected.clone(),
            answered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await?;
            let mut client = connect(addr, config, index).await?;
            let (tx, rx) = mpsc::channel(4);
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(v1::Hello {
                    host_id: host,
                    heartbeat_interval_secs: 30,
                    ..Default::default()
                })),
            })
            .await?;
            let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
            inbound.message().await?;
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => break,
                    m = inbound.message() => m,
                };
                let Ok(Some(message)) = message else { break };
                let Some(collector_message::Body::Command(command)) = message.body else {
                    continue;
                };
                // Every tenth host has one hit.
                let detail = match command.body {
                    Some(v1::command::Body::Hunt(_)) if index % 10 == 0 => {
                        r#"{"hits":[{"name":"backup2","uid":0}],"total":1,"cut":0,"capped":"","files":0,"bytes":0,"cpu_ms":1}"#
                    }
                    Some(v1::command::Body::Hunt(_)) => {
                        r#"{"hits":[],"total":0,"cut":0,"capped":"","files":0,"bytes":0,"cpu_ms":1}"#
                    }
                    _ => "pong",
                };
                answered.fetch_add(1, Ordering::Relaxed);
                tx.send(v1::AgentMessage {
                    body: Some(agent_message::Body::CommandResult(v1::CommandResult {
                        command_id: command.id,
                        ok: true,
                        detail: detail.into(),
                    })),
                })
                .await?;
            }
            drop(tx);
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    while connected.load(Ordering::Relaxed) < n as u64
        && started.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} of {n} agents connected in {:.1} s",
        connected.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = collector.rss_bytes();
    let mut ops = bannin_tests::operator_client(&pki.operator("bench"), addr).await;

    // The hunt: one record, sent to every connected host.
    let t0 = Instant::now();
    let hunt = ops
        .start_hunt(v1::StartHuntRequest {
            question: Some(v1::HuntQuestion {
                kind: Some(v1::hunt_question::Kind::Account(v1::AccountQuestion {
                    name: "backup2".into(),
                })),
            }),
            reason: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let started_in = t0.elapsed();
    let mut peak = before;
    let mut last = v1::Hunt::default();
    while t0.elapsed() < Duration::from_secs(600) {
        peak = peak.max(collector.rss_bytes());
        let shown = ops
            .list_hunts(v1::ListHuntsRequest {})
            .await?
            .into_inner()
            .hunts;
        if let Some(h) = shown.into_iter().find(|h| h.id == hunt.id) {
            last = h;
        }
        if last.answered as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hunt_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "hunt {}: started in {:.2} s, {}/{} answered ({} with hits) in {hunt_secs:.1} s",
        hunt.id,
        started_in.as_secs_f64(),
        last.answered,
        n,
        last.with_hits
    );

    // Baseline: one queued command per host (ping), for a sample of the fleet.
    let sample = baseline_hosts.min(n);
    let t1 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..sample {
        let record = ops
            .issue_command(v1::IssueCommandRequest {
                host_id: format!("sim-{i:05}"),
                command: Some(v1::CommandBody::ping()),
                ..Default::default()
            })
            .await?
            .into_inner();
        ids.push(record.id);
        peak = peak.max(collector.rss_bytes());
    }
    let issued_in = t1.elapsed().as_secs_f64();
    loop {
        let commands = ops
            .list_commands(v1::ListCommandsRequest::default())
            .await?
            .into_inner()
            .commands;
        let done = commands.iter().filter(|c| c.state == "succeeded").count();
        if done >= sample || t1.elapsed() > Duration::from_secs(900) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let baseline_secs = t1.elapsed().as_secs_f64();
    let per_host_hunt = hunt_secs / n as f64 * 1000.0;
    let per_host_base = baseline_secs / sample as f64 * 1000.0;
    println!(
        "| what | hosts | all answered (s) | ms per host | collector RSS before → peak (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| hunt (one record, sent on the open streams) | {} | {hunt_secs:.1} | {per_host_hunt:.2} | {} → {} |",
        last.answered,
        before >> 20,
        peak >> 20
    );
    println!(
        "| baseline: one queued ping per host (issued in {issued_in:.1} s) | {sample} | {baseline_secs:.1} | {per_host_base:.2} | |"
    );
    println!(
        "\nper host, the hunt is {:.1}× the per-host command queue",
        per_host_base / per_host_hunt.max(f64::EPSILON)
    );
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// `n` agent identities signed by `pki`'s CA without touching the disk: a
/// storm needs tens of thousands.
fn agent_configs_in_memory(
    pki: &TestPki,
    n: usize,
) -> anyhow::Result<Vec<(String, Arc<ClientConfig>)>> {
    agent_configs_range(pki, 0..n)
}

/// Agent identities `sim-FROM` … (certificates issued in memory by `pki`'s CA).
fn agent_configs_range(
    pki: &TestPki,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<(String, Arc<ClientConfig>)>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = pki.dir.load_ca()?;
    let ca_der: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    range
        .map(|i| {
            let host = format!("sim-{i:05}");
            let id = bannin_proto::identity::PeerIdentity::Agent(HostId::new(host.as_str())?);
            let issued = ca.issue_client(&id, bannin_collector::pki::Validity::days(30))?;
            let material = TlsMaterial {
                ca: ca_der.clone(),
                chain: CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()?,
                key: Arc::new(PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())?),
                crls: Vec::new(),
            };
            Ok((host, tls::client_config(&material)?))
        })
        .collect()
}

/// The collector process of a storm run: restartable on one port and store.
fn spawn_collector(dir: &Path, config: &Path, addr: SocketAddr) -> anyhow::Result<Server> {
    let mut child = Command::new(bin("bannin-collector"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("collector.log"))?,
        )
        .spawn()
        .context("starting bannin-collector")?;
    wait_listening(addr, &mut child)?;
    Ok(Server { child, addr })
}

/// Reconnect storm: `n` simulated agents (from `sources` loopback addresses,
/// with the real agent's backoff: 500 ms doubling to 60 s, full jitter)
/// connected to a collector that is then SIGKILLed and restarted on the same
/// port and store; how long until every agent is back, and what each costs.
async fn storm(n: usize, sources: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    eprintln!("issuing {n} agent certificates (in memory)…");
    let configs = agent_configs_in_memory(&pki, n)?;
    let port = free_port();
    let collector_dir = dir.path().join("storm");
    let config = collector_config(&collector_dir, &pki, port, "");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut collector = spawn_collector(&collector_dir, &config, addr)?;
    let baseline = collector.rss_bytes();
    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (host, config)) in configs.into_iter().enumerate() {
        // Hosts come from many addresses, as a fleet does: `sources` of them.
        let source = source_of(i % sources.clamp(1, 60_000));
        tasks.push(tokio::spawn(idle_agent(
            host,
            config,
            addr,
            source,
            stop.clone(),
            connected.clone(),
            attempts.clone(),
        )));
    }
    let wait_all = |what: &'static str| {
        let connected = connected.clone();
        async move {
            let started = Instant::now();
            while connected.load(Ordering::Relaxed) < n as u64
                && started.elapsed() < Duration::from_secs(900)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let took = started.elapsed();
            eprintln!(
                "{what}: {} of {n} connected after {:.1} s",
                connected.load(Ordering::Relaxed),
                took.as_secs_f64()
            );
            took
        }
    };
    let first = wait_all("first connection").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_first = collector.rss_bytes();
    let tries_first = attempts.load(Ordering::Relaxed);
    // SIGKILL, and start again on the same port and store.
    let _ = collector.child.kill();
    let _ = collector.child.wait();
    std::mem::forget(collector);
    let restarted = Instant::now();
    let collector = spawn_collector(&collector_dir, &config, addr)?;
    let listening = restarted.elapsed();
    let back = wait_all("after the restart").await + listening;
    let up = connected.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss = collector.rss_bytes();
    let tries = attempts.load(Ordering::Relaxed) - tries_first;
    println!(
        "| phase | agents connected | time | connection attempts | collector RSS (MiB) | RSS per agent (KiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| first start | {n} | {:.1} s | {tries_first} | {} | {:.1} |",
        first.as_secs_f64(),
        rss_first >> 20,
        rss_first.saturating_sub(baseline) as f64 / 1024.0 / n as f64
    );
    println!(
        "| after SIGKILL and restart | {up} | {:.1} s (listening after {:.1} s) | {tries} | {} | {:.1} |",
        back.as_secs_f64(),
        listening.as_secs_f64(),
        rss >> 20,
        rss.saturating_sub(baseline) as f64 / 1024.0 / up.max(1) as f64
    );
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    drop(collector);
    Ok(())
}

async fn isolate(cycles: usize) -> anyhow::Result<()> {
    use bannin_tests::netns::{Host, Lab, is_root};
    anyhow::ensure!(
        is_root(),
        "the isolation benchmark needs root (network namespaces, nftables)"
    );
    let dir = tempfile::tempdir()?;
    let lab = Lab::new();
    let pki = TestPki::new(dir.path());
    let collector_addr: SocketAddr = format!("{}:7443", Host::Collector.v4()).parse()?;
    let config = collector_config(&dir.path().join("collector"), &pki, 7443, "");
    let text =
        std::fs::read_to_string(&config)?.replace("127.0.0.1:7443", &collector_addr.to_string());
    std::fs::write(&config, text)?;
    let mut collector = bannin_tests::Proc::spawn(
        {
            let mut c = lab.command(Host::Collector, &bin("bannin-collector"));
            c.arg("serve")
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn");
            c
        },
        dir.path().join("collector.log"),
    );
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let agent_config = bannin_tests::agent_config(
        &agent_dir,
        &pki.agent("bench-host"),
        collector_addr,
        &bannin_tests::AgentOptions {
            net_listener: false,
            ..Default::default()
        },
    );
    let mut agent = bannin_tests::Proc::spawn(
        {
            let mut c = lab.command(Host::Agent, &bin("bannin-agent"));
            c.arg("run")
                .arg("--config")
                .arg(&agent_config)
                .env("RUST_LOG", "warn");
            c
        },
        dir.path().join("agent.log"),
    );
    let op = pki.operator("bench");
    let status = lab
        .command(Host::Collector, &std::env::current_exe()?)
        .arg("isolate-client")
        .arg("--tls")
        .args([&op.ca, &op.cert, &op.key])
        .arg("--collector")
        .arg(collector_addr.to_string())
        .arg("--cycles")
        .arg(cycles.to_string())
        .status()?;
    agent.kill();
    collector.kill();
    anyhow::ensure!(
        status.success(),
        "isolate client failed; agent log:\n{}",
        agent.log_text()
    );
    Ok(())
}

async fn isolate_client(
    tls_paths: &[PathBuf],
    collector: SocketAddr,
    cycles: usize,
) -> anyhow::Result<()> {
    let paths = TlsPaths {
        ca: tls_paths[0].clone(),
        cert: tls_paths[1].clone(),
        key: tls_paths[2].clone(),
    };
    let material = TlsMaterial::load(&paths)?;
    let mut client = None;
    for _ in 0..100 {
        if let Ok(channel) = tls::connect(
            &collector.to_string(),
            "bannin-collector",
            tls::client_config(&material)?,
        )
        .await
        {
            client = Some(v1::operator_client::OperatorClient::new(channel));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.context("collector not reachable")?;
    let started = Instant::now();
    loop {
        let hosts = client
            .list_hosts(v1::ListHostsRequest {})
            .await?
            .into_inner()
            .hosts;
        if hosts.iter().any(|h| h.host_id == "bench-host" && h.online) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "agent did not come online"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut isolate = Histogram::<u64>::new(3)?;
    let mut release = Histogram::<u64>::new(3)?;
    for _ in 0..cycles {
        for (command, hist) in [
            (v1::CommandBody::isolate(Vec::new(), false), &mut isolate),
            (v1::CommandBody::release(), &mut release),
        ] {
            let verb = command.name();
            let t0 = Instant::now();
            let issued = client
                .issue_command(v1::IssueCommandRequest {
                    host_id: "bench-host".into(),
                    command: Some(command),
                    reason: "benchmark".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            loop {
                let state = client
                    .list_commands(v1::ListCommandsRequest {
                        host_id: "bench-host".into(),
                        command_id: issued.id.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .commands
                    .into_iter()
                    .find(|c| c.id == issued.id)
                    .map(|c| (c.state, c.result))
                    .unwrap_or_default();
                match state.0.as_str() {
                    "succeeded" => break,
                    "failed" | "expired" => anyhow::bail!("{verb} {}: {}", state.0, state.1),
                    _ => tokio::time::sleep(Duration::from_millis(2)).await,
                }
                anyhow::ensure!(
                    t0.elapsed() < Duration::from_secs(30),
                    "{verb} not acknowledged"
                );
            }
            hist.record(t0.elapsed().as_micros() as u64)?;
        }
    }
    println!("| command | cycles | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (verb, h) in [
        (
            "isolate (issued → rules applied, self-test passed → acknowledged)",
            &isolate,
        ),
        ("release", &release),
    ] {
        println!(
            "| {verb} | {cycles} | {:.1} | {:.1} | {:.1} |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}

/// A generated rule pack shaped like SigmaHQ's Linux rules: Image and
/// ParentImage suffix lists, command-line substrings (some `|all`), a regular
/// expression in one rule of ten, users and directories, negations and
/// `1 of selection_*`; a tenth are file_event or network_connection rules.
/// None matches the benchmark's telemetry, as almost no rule matches almost
/// any event in a real fleet.
fn generated_rules(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let header = format!(
            "title: Generated rule {i}\nid: 00000000-0000-4000-8000-{i:012}\nstatus: test\nlevel: {}\ntags:\n  - attack.execution\n  - attack.t1059.{:03}\n",
            ["low", "medium", "high", "critical"][i % 4],
            i % 10
        );
        let body = match i % 10 {
            8 => format!(
                "logsource:\n  product: linux\n  category: file_event\ndetection:\n  sel:\n    TargetFilename|startswith: /etc/cron.d/gen{i}\n  condition: sel\n"
            ),
            9 => format!(
                "logsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    DestinationPort: {}\n    Initiated: 'true'\n  filter:\n    DestinationIp|cidr: 10.0.0.0/8\n  condition: sel and not filter\n",
                20000 + i
            ),
            7 => format!(
                "logsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|re: '(?i)gen{i}[a-z]+ --(exec|payload)=\\S+'\n  condition: sel\n"
            ),
            _ => format!(
                "logsource:\n  product: linux\n  category: process_creation\ndetection:\n  selection_img:\n    Image|endswith:\n      - /gen{i}-tool\n      - /gen{i}d\n  selection_cli:\n    CommandLine|contains|all:\n      - ' --gen{i} '\n      - '/tmp/'\n  selection_parent:\n    ParentImage|endswith: /gen{i}-parent\n    User: root\n  filter_dir:\n    CurrentDirectory|startswith: /opt/gen{i}/\n  condition: 1 of selection_* and not filter_dir\n"
            ),
        };
        out.push_str(&header);
        out.push_str(&body);
        out.push_str("---\n");
    }
    out
}

fn self_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

async fn sigma(rules: usize, agents: usize, seconds: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let pack = dir.path().join("rules");
    std::fs::create_dir_all(&pack)?;
    std::fs::write(pack.join("generated.yml"), generated_rules(rules))?;

    // Load time and memory, in this process, with the collector's own loader.
    let before = self_rss_bytes();
    let started = Instant::now();
    let set = bannin_collector::sigma::load(std::slice::from_ref(&pack))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let grown = self_rss_bytes().saturating_sub(before);
    anyhow::ensure!(
        set.rules.len() == rules && set.refused.is_empty(),
        "generated rules refused: {:?}",
        set.refused.first()
    );
    // Matching alone, in this process, on the benchmark's telemetry.
    let events: Vec<bannin_collector::sigma::SigmaEvent<'static>> = (0..50u64)
        .flat_map(|b| sample_events(200, (b % 7) as usize, b))
        .filter_map(|e| {
            let attributes = e.attributes.into_iter().collect();
            bannin_collector::sigma::SigmaEvent::from_event("h", &e.kind, 0, &attributes)
                .map(bannin_collector::sigma::SigmaEvent::into_owned)
        })
        .collect();
    let started = Instant::now();
    let mut matched = 0usize;
    for e in &events {
        matched += set.evaluate(e, "").findings.len();
    }
    let per_event_us = started.elapsed().as_secs_f64() * 1e6 / events.len() as f64;
    eprintln!("matching: {per_event_us:.2} µs per event on one core ({matched} matches)");
    drop(set);
    println!("| rules | load time | resident memory added |");
    println!("|---:|---:|---:|");
    println!(
        "| {rules} | {load_ms:.0} ms | {:.1} MiB |",
        grown as f64 / (1 << 20) as f64
    );
    println!();

    eprintln!("issuing {agents} agent certificates…");
    let configs = agent_configs(&pki, agents)?;
    println!("| collector | durable acked events/s | p50 ack ms | p99 ack ms | failed agents |");
    println!("|---|---:|---:|---:|---:|");
    let mut rates = Vec::new();
    for (name, extra) in [
        ("no Sigma rules".to_owned(), String::new()),
        (
            format!("{rules} Sigma rules"),
            format!("[sigma]\npaths = [{:?}]\n", pack.display().to_string()),
        ),
    ] {
        let run_dir = dir.path().join(format!("run-{}", rates.len()));
        std::fs::create_dir_all(&run_dir)?;
        let collector =
            start_collector_with(&run_dir.join("collector"), &pki, &extra).context("collector")?;
        let r = run_load(&[collector.addr], &configs, seconds, 200, 4)
            .await
            .context("load")?;
        drop(collector);
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} | {} |",
            r.events_per_sec, r.p50_ms, r.p99_ms, r.failed
        );
        rates.push(r.events_per_sec);
    }
    println!(
        "| ratio with rules / without | {:.0} % | | | |",
        100.0 * rates[1] / rates[0].max(1.0)
    );
    Ok(())
}

/// Cluster mode against the sled store, in one run: durable acknowledged
/// events per second through one collector on sled, through one collector on
/// a one-server JetStream with replicas 1, and through two collectors on a
/// three-server JetStream with replicas 3 (agents split over them); then the
/// failover time of agents whose collector is SIGKILLed.
async fn cluster(
    agents: usize,
    seconds: u64,
    batch_events: usize,
    in_flight: usize,
    failover_agents: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        bannin_tests::nats::available(),
        "nats-server is not installed (apt-get install nats-server)"
    );
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let n = agents.max(failover_agents);
    eprintln!("issuing {n} agent certificates…");
    let configs = agent_configs(&pki, n)?;
    println!(
        "| target | agents | durable acked events/s | p50 ack ms | p99 ack ms | failed agents |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |target: &str, r: &RunResult| {
        println!(
            "| {target} | {agents} | {:.0} | {:.1} | {:.1} | {} |",
            r.events_per_sec, r.p50_ms, r.p99_ms, r.failed
        );
    };
    let sled = {
        let collector = start_collector(&dir.path().join("sled"), &pki)?;
        run_load(
            &[collector.addr],
            &configs[..agents],
            seconds,
            batch_events,
            in_flight,
        )
        .await?
    };
    row("one collector, sled (fdatasync)", &sled);
    let r1 = {
        let nats = bannin_tests::nats::NatsCluster::start(&dir.path().join("nats-r1"), &pki, 1);
        let collector = start_collector_with(
            &dir.path().join("r1"),
            &pki,
            &nats.collector_section("r1", 1),
        )?;
        let r = run_load(
            &[collector.addr],
            &configs[..agents],
            seconds,
            batch_events,
            in_flight,
        )
        .await?;
        drop(collector);
        drop(nats);
        r
    };
    row("one collector, JetStream replicas 1", &r1);
    let nats = bannin_tests::nats::NatsCluster::start(&dir.path().join("nats-r3"), &pki, 3);
    let r3 = {
        let a = start_collector_with(
            &dir.path().join("r3-a"),
            &pki,
            &nats.collector_section("a", 3),
        )?;
        let b = start_collector_with(
            &dir.path().join("r3-b"),
            &pki,
            &nats.collector_section("b", 3),
        )?;
        let r = run_load(
            &[a.addr, b.addr],
            &configs[..agents],
            seconds,
            batch_events,
            in_flight,
        )
        .await?;
        eprintln!(
            "collector memory after the R3 run: a {} MiB, b {} MiB",
            a.rss_bytes() >> 20,
            b.rss_bytes() >> 20
        );
        r
    };
    row("two collectors, JetStream replicas 3 (3 servers)", &r3);
    println!(
        "| ratio replicas 1 / sled | | {:.0} % | | | |",
        100.0 * r1.events_per_sec / sled.events_per_sec.max(1.0)
    );
    println!(
        "| ratio replicas 3 / sled | | {:.0} % | | | |",
        100.0 * r3.events_per_sec / sled.events_per_sec.max(1.0)
    );

    // Failover: every agent on A (B second in its list), A SIGKILLed; the
    // time from the kill to each agent's first batch acknowledged by B.
    let mut a = start_collector_with(
        &dir.path().join("fo-a"),
        &pki,
        &nats.collector_section("fo-a", 3),
    )?;
    let b = start_collector_with(
        &dir.path().join("fo-b"),
        &pki,
        &nats.collector_section("fo-b", 3),
    )?;
    let killed: Arc<std::sync::OnceLock<Instant>> = Arc::new(std::sync::OnceLock::new());
    let on_a = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (host, config)) in configs[..failover_agents].iter().enumerate() {
        tasks.push(tokio::spawn(failover_agent(
            i,
            host.clone(),
            [a.addr, b.addr],
            config.clone(),
            killed.clone(),
            on_a.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while on_a.load(Ordering::Relaxed) < failover_agents as u64 {
        anyhow::ensure!(Instant::now() < deadline, "agents did not all deliver to A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = a.child.kill();
    let _ = killed.set(Instant::now());
    let _ = a.child.wait();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut failed = 0;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(Ok(d))) => {
                let _ = hist.record(d.as_millis() as u64);
            }
            _ => failed += 1,
        }
    }
    drop(b);
    println!();
    println!(
        "| failover (collector SIGKILLed) | agents | p50 ms | p99 ms | max ms | not back in 60 s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| kill → first batch acknowledged by the other collector | {failover_agents} | {} | {} | {} | {failed} |",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    Ok(())
}

/// Times of each agent's batches: (sent, acknowledged).
type Acks = Arc<std::sync::Mutex<Vec<Vec<(Instant, Instant)>>>>;

/// An agent streaming a small batch every 100 ms to `addr`, recording when
/// each was sent and acknowledged; reconnects after 250 ms on any failure.
async fn node_loss_agent(
    pki: Arc<TestPki>,
    index: usize,
    addr: SocketAddr,
    acks: Acks,
    stop: CancellationToken,
) {
    let host = format!("nl-{index:03}");
    while !stop.is_cancelled() {
        if let Ok(mut agent) = SimAgent::connect(&pki, &host, addr, &[], &[]).await {
            loop {
                let sent = Instant::now();
                let seq = agent.next_sequence();
                let batch = sample_events(5, index, seq);
                let acked = tokio::select! {
                    () = stop.cancelled() => return,
                    r = agent.send(&batch) => r,
                };
                if acked.is_err() {
                    break;
                }
                bannin_proto::lock(&acks)[index].push((sent, Instant::now()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The id of the newest finding whose `exe` is `exe`, through `ops`.
async fn finding_with_exe(
    ops: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    exe: &str,
) -> Option<u64> {
    ops.list_findings(v1::ListFindingsRequest {
        newest_first: true,
        limit: 500,
        ..Default::default()
    })
    .await
    .ok()?
    .into_inner()
    .findings
    .iter()
    .find(|f| f.attributes.get("exe").map(String::as_str) == Some(exe))
    .map(|f| f.id)
}

/// Polls `probe` every 100 ms until it answers (or 60 s pass): the time
/// from `from`.
async fn time_until<F, Fut>(from: Instant, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = from + Duration::from_secs(60);
    while Instant::now() < deadline {
        if probe().await {
            return Some(from.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn node_loss(rounds: usize, agents: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        bannin_tests::nats::available(),
        "nats-server is not installed (apt-get install nats-server)"
    );
    let dir = tempfile::tempdir()?;
    let pki = Arc::new(TestPki::new(dir.path()));
    let mut nats = bannin_tests::nats::NatsCluster::start(&dir.path().join("nats"), &pki, 3);
    let a = start_collector_with(&dir.path().join("a"), &pki, &nats.collector_section("a", 3))?;
    let b = start_collector_with(&dir.path().join("b"), &pki, &nats.collector_section("b", 3))?;
    let operator = |addr: SocketAddr| {
        let pki = pki.clone();
        async move { bannin_tests::operator_client(&pki.operator("bench"), addr).await }
    };
    let ops_b = operator(b.addr).await;
    let acks: Acks = Arc::new(std::sync::Mutex::new(vec![Vec::new(); agents]));
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..agents {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(node_loss_agent(
            pki.clone(),
            i,
            addr,
            acks.clone(),
            stop.clone(),
        )));
    }
    let mut finder = SimAgent::connect(&pki, "nl-finder", a.addr, &[], &[]).await?;
    // A first finding, for the state changes.
    let raise = |n: usize| {
        vec![event(
            "process.unknown_binary",
            true,
            bannin_proto::now_unix_ms(),
            &[
                ("sha256", &format!("{n:064x}")),
                ("exe", &format!("/tmp/.nl/x{n}")),
                ("pid", "4242"),
            ],
        )]
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let names = [
        "NATS elects a new leader of the log (baseline)",
        "every agent: a batch sent after the kill acknowledged",
        "a finding raised on A visible through B",
        "a finding's state changed through B",
        "bannin cluster through B names the new leader",
    ];
    let mut times: Vec<Vec<Option<Duration>>> = vec![Vec::new(); names.len()];
    for round in 1..=rounds {
        // A finding for this round's state change, raised before the kill.
        finder.send(&raise(1000 + round)).await?;
        let pre = format!("/tmp/.nl/x{}", 1000 + round);
        let first = loop {
            let mut ops = ops_b.clone();
            if let Some(id) = finding_with_exe(&mut ops, &pre).await {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let leader = nats
            .stream_leader("BANNIN_LOG")
            .context("no leader of the log")?;
        let ports = nats.monitoring_ports();
        let survivors: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| *p != nats.nodes[leader].http)
            .collect();
        nats.kill_node(leader);
        let killed = Instant::now();
        let killed_name = format!("n{leader}");
        let election = time_until(killed, || {
            let survivors = survivors.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    bannin_tests::nats::stream_leader_at(&survivors, "BANNIN_LOG")
                        .is_some_and(|l| l != leader)
                })
                .await
                .unwrap_or(false)
            }
        });
        let ingest = time_until(killed, || {
            let acks = acks.clone();
            async move {
                bannin_proto::lock(&acks)
                    .iter()
                    .all(|a| a.iter().any(|(sent, _)| *sent >= killed))
            }
        });
        let finding = async {
            let exe = format!("/tmp/.nl/x{round}");
            let deadline = killed + Duration::from_secs(60);
            // Sent once (a broken session is opened again), then looked for
            // through B.
            while finder.send(&raise(round)).await.is_err() {
                if Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(f) = SimAgent::connect(&pki, "nl-finder", a.addr, &[], &[]).await {
                    finder = f;
                }
            }
            time_until(killed, || {
                let mut ops = ops_b.clone();
                let exe = exe.clone();
                async move { finding_with_exe(&mut ops, &exe).await.is_some() }
            })
            .await
        };
        let state = time_until(killed, || {
            let mut ops = ops_b.clone();
            async move {
                ops.set_finding_state(v1::SetFindingStateRequest {
                    id: first,
                    state: v1::FindingState::Acknowledged as i32,
                    note: format!("node-loss round {round}"),
                })
                .await
                .is_ok()
            }
        });
        let status = time_until(killed, || {
            let mut ops = ops_b.clone();
            let killed_name = killed_name.clone();
            async move {
                ops.cluster_status(v1::ClusterStatusRequest {})
                    .await
                    .is_ok_and(|s| {
                        s.into_inner().streams.iter().any(|st| {
                            st.name == "BANNIN_LOG"
                                && !st.leader.is_empty()
                                && st.leader != killed_name
                        })
                    })
            }
        });
        let (e, i, f, s, c) = tokio::join!(election, ingest, finding, state, status);
        for (k, t) in [e, i, f, s, c].into_iter().enumerate() {
            times[k].push(t);
        }
        eprintln!(
            "round {round}: killed n{leader}; {}",
            [e, i, f, s, c]
                .iter()
                .map(|t| t.map_or("—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())))
                .collect::<Vec<_>>()
                .join(", ")
        );
        nats.start_node(leader);
        nats.wait_ready(leader, Duration::from_secs(60));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let baseline: Vec<f64> = times[0]
        .iter()
        .map(|t| t.map_or(60.0, |d| d.as_secs_f64()))
        .collect();
    println!(
        "| from the kill of the log's leader ({rounds} rounds, {agents} agents) | median s | max s | not in 60 s | median ÷ election |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, t) in names.iter().zip(&times) {
        let mut secs: Vec<f64> = t.iter().flatten().map(Duration::as_secs_f64).collect();
        secs.sort_by(f64::total_cmp);
        let missed = t.iter().filter(|t| t.is_none()).count();
        let median = secs.get(secs.len() / 2).copied().unwrap_or(f64::NAN);
        let mut base = baseline.clone();
        base.sort_by(f64::total_cmp);
        let base_median = base.get(base.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "| {name} | {median:.1} | {:.1} | {missed} | {:.2} |",
            secs.last().copied().unwrap_or(f64::NAN),
            median / base_median
        );
    }
    drop(a);
    drop(b);
    Ok(())
}

/// An agent on `addrs[0]` sending a small batch every 200 ms; when its
/// session breaks it waits as the real agent's first backoff does (250–500
/// ms) and moves to `addrs[1]`. Returns the time from `killed` to its first
/// batch acknowledged there.
async fn failover_agent(
    index: usize,
    host: String,
    addrs: [SocketAddr; 2],
    config: Arc<ClientConfig>,
    killed: Arc<std::sync::OnceLock<Instant>>,
    on_a: Arc<AtomicU64>,
) -> anyhow::Result<Duration> {
    let mut current = 0;
    let mut counted = false;
    loop {
        let result: anyhow::Result<Option<Duration>> = async {
            let mut client = connect(addrs[current], config.clone(), index).await?;
            let (tx, rx) = mpsc::channel(4);
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(v1::Hello {
                    host_id: host.clone(),
                    heartbeat_interval_secs: 30,
                    ..Default::default()
                })),
            })
            .await?;
            let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
            let mut next = match inbound.message().await? {
                Some(v1::CollectorMessage {
                    body: Some(collector_message::Body::Welcome(w)),
                }) => w.acked_sequence + 1,
                other => anyhow::bail!("expected Welcome, got {other:?}"),
            };
            loop {
                tx.send(v1::AgentMessage {
                    body: Some(agent_message::Body::Batch(v1::TelemetryBatch::from_events(
                        next,
                        &sample_events(10, index, next),
                    ))),
                })
                .await?;
                loop {
                    match inbound.message().await? {
                        Some(v1::CollectorMessage {
                            body: Some(collector_message::Body::Ack(ack)),
                        }) if ack.sequence >= next => break,
                        Some(_) => {}
                        None => anyhow::bail!("stream closed"),
                    }
                }
                next += 1;
                if current == 0 && !counted {
                    counted = true;
                    on_a.fetch_add(1, Ordering::Relaxed);
                }
                if current == 1
                    && let Some(at) = killed.get()
                {
                    return Ok(Some(at.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        .await;
        if let Ok(Some(d)) = result {
            return Ok(d);
        }
        current = 1;
        let ms = 250 + (index as u64 * 7919) % 250;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// One idle agent: connects (from `source`), says Hello, waits for Welcome and
/// stays connected; reconnects with the agent's backoff when the collector
/// goes away, until `stop`.
async fn idle_agent(
    host: String,
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    source: std::net::IpAddr,
    stop: CancellationToken,
    connected: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
) {
    let mut backoff =
        bannin_agent::link::Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        attempts.fetch_add(1, Ordering::Relaxed);
        let session = async {
            let channel = tls::connect_from(
                &addr.to_string(),
                "bannin-collector",
                config.clone(),
                Some(source),
            )
            .await?;
            let mut client = AgentLinkClient::new(channel);
            let (tx, rx) = mpsc::channel(4);
            tx.send(v1::AgentMessage {
                body: Some(agent_message::Body::Hello(v1::Hello {
                    host_id: host.clone(),
                    heartbeat_interval_secs: 30,
                    ..Default::default()
                })),
            })
            .await?;
            let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
            inbound.message().await?;
            anyhow::Ok((tx, inbound))
        };
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            s = session => s,
        };
        if let Ok((tx, mut inbound)) = outcome {
            backoff.reset();
            connected.fetch_add(1, Ordering::Relaxed);
            // Idle until the collector goes away (or the run ends).
            let ended = tokio::select! {
                () = stop.cancelled() => true,
                _ = async { while let Ok(Some(_)) = inbound.message().await {} } => false,
            };
            connected.fetch_sub(1, Ordering::Relaxed);
            drop(tx);
            if ended {
                return;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// 20,000-style idle fleet spread over two collectors in cluster mode (three
/// NATS servers, replicas 3): each collector's resident memory. The agents'
/// connections are held by `processes` load generators (`idle-load`).
async fn cluster_idle(n: usize, sources: usize, processes: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        bannin_tests::nats::available(),
        "nats-server is not installed (apt-get install nats-server)"
    );
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let nats = bannin_tests::nats::NatsCluster::start(&dir.path().join("nats"), &pki, 3);
    let a = start_collector_with(&dir.path().join("a"), &pki, &nats.collector_section("a", 3))?;
    let b = start_collector_with(&dir.path().join("b"), &pki, &nats.collector_section("b", 3))?;
    let (base_a, base_b) = (a.rss_bytes(), b.rss_bytes());
    let processes = processes.max(1);
    let per = n.div_ceil(processes);
    let mut loads = Vec::new();
    for p in 0..processes {
        let from = p * per;
        let count = per.min(n.saturating_sub(from));
        if count == 0 {
            break;
        }
        let mut child = Command::new(std::env::current_exe()?)
            .arg("idle-load")
            .arg("--pki")
            .arg(&pki.dir.0)
            .args(["--from", &from.to_string(), "--count", &count.to_string()])
            .args(["--addr", &a.addr.to_string(), "--addr", &b.addr.to_string()])
            .args(["--sources", &sources.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a load generator")?;
        let stdout = child.stdout.take().context("load generator output")?;
        let mine = Arc::new(AtomicU64::new(0));
        {
            let mine = mine.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("connected ").and_then(|n| n.parse().ok()) {
                        mine.store(n, Ordering::Relaxed);
                    }
                }
            });
        }
        loads.push((child, mine));
    }
    let total = || {
        loads
            .iter()
            .map(|(_, m)| m.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let started = Instant::now();
    while total() < n as u64 && started.elapsed() < Duration::from_secs(900) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    // BANNIN_BENCH_HOLD_SECS: longer, to look at the collectors from outside.
    let settle = std::env::var("BANNIN_BENCH_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (rss_a, rss_b) = (a.rss_bytes(), b.rss_bytes());
    let up = total();
    print_cluster_idle(n, up, took, (base_a, base_b), (rss_a, rss_b), processes);
    for (mut child, _) in loads {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

fn print_cluster_idle(
    n: usize,
    up: u64,
    took: Duration,
    (base_a, base_b): (u64, u64),
    (rss_a, rss_b): (u64, u64),
    processes: usize,
) {
    println!(
        "| collectors | agents connected | load generators | connect time | RSS a (MiB) | RSS b (MiB) | summed (MiB) | per agent (KiB, over the empty collectors) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| 2, JetStream replicas 3 | {up} of {n} | {processes} | {:.1} s | {} | {} | {} | {:.1} |",
        took.as_secs_f64(),
        rss_a >> 20,
        rss_b >> 20,
        (rss_a + rss_b) >> 20,
        (rss_a + rss_b).saturating_sub(base_a + base_b) as f64 / 1024.0 / up.max(1) as f64
    );
}

/// `queue`: the sweep over all commands against the open-commands index.
fn queue(finished: u64, open: u64) -> anyhow::Result<()> {
    use bannin_collector::model::{Command as QueuedCommand, CommandBody, CommandState};
    let dir = tempfile::tempdir()?;
    let store = bannin_collector::store::Store::open(dir.path())?;
    for id in 1..=finished + open {
        store.put_command(&QueuedCommand {
            id,
            host_id: format!("sim-{}", id % 20_000),
            body: CommandBody::Triage {
                question: "processes".into(),
                path: String::new(),
            },
            operator: "alice".into(),
            reason: "sweep".into(),
            state: if id <= finished {
                CommandState::Succeeded
            } else {
                CommandState::Pending
            },
            created_unix_ms: 1,
            delivered_unix_ms: 2,
            finished_unix_ms: 3,
            expires_unix_ms: i64::MAX,
            result: "ok: 312 processes".into(),
        })?;
    }
    store.make_durable()?;
    let time = |sweep: &dyn Fn() -> anyhow::Result<usize>| -> anyhow::Result<(Duration, usize)> {
        let runs = 10;
        let started = Instant::now();
        let mut found = 0;
        for _ in 0..runs {
            found = sweep()?;
        }
        Ok((started.elapsed() / runs, found))
    };
    let (scan, by_scan) = time(&|| {
        Ok(store
            .commands()?
            .iter()
            .filter(|c| !c.state.is_final())
            .count())
    })?;
    let (index, by_index) = time(&|| Ok(store.open_commands()?.len()))?;
    anyhow::ensure!(
        by_scan == by_index && by_index as u64 == open,
        "the sweeps disagree: {by_scan} by scan, {by_index} by the index, {open} open"
    );
    // One command by id, as a waiting `bannin ping` polls it: found in the
    // whole history, against read by its key.
    let wanted = finished + open;
    let (lookup_scan, _) =
        time(&|| Ok(store.commands()?.iter().filter(|c| c.id == wanted).count()))?;
    let (lookup_key, _) = time(&|| Ok(store.command(wanted)?.into_iter().count()))?;
    println!(
        "| finished commands | open | read | every command (ms) | by index or key (ms) | ratio |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    for (what, slow, fast) in [
        ("the open ones (delivery, expiry)", scan, index),
        ("one by id (`bannin ping` waiting)", lookup_scan, lookup_key),
    ] {
        println!(
            "| {finished} | {open} | {what} | {:.2} | {:.3} | {:.0}× |",
            slow.as_secs_f64() * 1e3,
            fast.as_secs_f64() * 1e3,
            slow.as_secs_f64() / fast.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// One load generator of `cluster-idle`: agents `from..from+count`, idle,
/// until killed; says how many are connected every second.
async fn idle_load(
    pki: &Path,
    from: usize,
    count: usize,
    addrs: &[SocketAddr],
    sources: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(!addrs.is_empty(), "no collector address");
    let pki = TestPki {
        dir: bannin_collector::pki::PkiDir(pki.to_owned()),
    };
    let configs = agent_configs_range(&pki, from..from + count)?;
    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    for (j, (host, config)) in configs.into_iter().enumerate() {
        let i = from + j;
        tokio::spawn(idle_agent(
            host,
            config,
            addrs[i % addrs.len()],
            source_of(i % sources.clamp(1, 60_000)),
            stop.clone(),
            connected.clone(),
            attempts.clone(),
        ));
    }
    loop {
        println!("connected {}", connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
