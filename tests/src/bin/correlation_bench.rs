//! Correlation benchmark (BENCHMARKS.md, "Cross-host correlation"):
//!
//! 1. The correlator alone, in this process: one million observations from a
//!    fleet of 10,000 hosts over four simulated hours (connections, logins,
//!    failed logins, findings with hashes), timed per observation, with the
//!    resident memory after every 100,000 — against, in the same run, the
//!    naive approach (a map of every key to every host that showed it, no
//!    windows, no bounds).
//! 2. End to end: the release collector and 20 simulated agents over mTLS;
//!    each round, three hosts report the same new hash; the time from the
//!    third report's send to the `correlation.spread` finding arriving on an
//!    operator's follow stream, p50 and p99.
//!
//! `cargo build --release --workspace --bins && target/release/bannin-correlation-bench`

// A benchmark measures time: the tests' ban on `Instant::elapsed` does not apply.
#![allow(clippy::disallowed_methods)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bannin_collector::correlate::{CorrelationConfig, Correlator, FleetView, Observation};
use bannin_proto::v1;
use bannin_tests::sim::{SimAgent, event};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Observations fed to the correlator.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Hosts in the simulated fleet.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// End-to-end rounds.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Run one part alone (each part runs in its own process, so one's freed
    /// memory does not hide the other's): correlator, naive or e2e.
    #[arg(long)]
    only: Option<String>,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A deterministic generator (xorshift), so both runs see the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The i-th observation: (host, kind, time, attributes, is a finding).
fn observation(
    rng: &mut Rng,
    i: usize,
    total: usize,
    hosts: usize,
) -> (usize, &'static str, i64, BTreeMap<String, String>) {
    // Four hours of fleet time: the longest window (spread, 1 h) is warm after a quarter.
    let at = (i as i64) * 14_400_000 / total as i64;
    let host = rng.below(hosts);
    let pick = rng.below(100);
    let a = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    match pick {
        0..40 => {
            let outbound = rng.below(2) == 0;
            let peer = format!(
                "198.{}.{}.{}",
                18 + rng.below(2),
                rng.below(256),
                rng.below(256)
            );
            (
                host,
                "net.connection",
                at,
                a(&[
                    (
                        "direction",
                        if outbound { "outbound" } else { "inbound" }.into(),
                    ),
                    ("remote_address", peer),
                    ("port", ["443", "22", "80", "8443"][rng.below(4)].into()),
                ]),
            )
        }
        // Most accounts log in on their own pair of hosts; one login in a
        // thousand is anyone anywhere.
        40..70 => {
            let user = if rng.below(1000) == 0 {
                rng.below(hosts / 2)
            } else {
                host / 2
            };
            let source = format!("10.9.{}.{}", rng.below(256), rng.below(256));
            (
                host,
                "account.login",
                at,
                a(&[("user", format!("user{user}")), ("source", source)]),
            )
        }
        70..90 => (
            host,
            "account.login_failed",
            at,
            a(&[
                ("user", format!("user{}", rng.below(50_000))),
                (
                    "source",
                    format!("203.0.{}.{}", rng.below(256), rng.below(256)),
                ),
            ]),
        ),
        _ => (
            host,
            "process.unknown_binary",
            at,
            a(&[
                ("sha256", format!("{:064x}", rng.below(200_000))),
                ("exe", format!("/opt/app{}/bin", rng.below(200_000))),
            ]),
        ),
    }
}

fn in_process(args: &Args) {
    let fleet = Arc::new(FleetView::default());
    for h in 0..args.hosts {
        fleet.set_addresses(
            &format!("h{h}"),
            &[format!("10.{}.{}.{}", h / 65536, (h / 256) % 256, h % 256)],
        );
    }
    let names: Vec<String> = (0..args.hosts).map(|h| format!("h{h}")).collect();
    // Generated up front, outside the timing.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stream: Vec<_> = (0..args.events)
        .map(|i| observation(&mut rng, i, args.events, args.hosts))
        .collect();
    let before = rss_kib();
    let mut c = Correlator::new(CorrelationConfig::default(), fleet);
    let mut raised = 0usize;
    let mut checkpoints = Vec::new();
    let step = args.events / 10;
    let mut timed = Duration::ZERO;
    for (i, (host, kind, at, attributes)) in stream.iter().enumerate() {
        let t = Instant::now();
        let out = if *kind == "process.unknown_binary" {
            c.observe(
                &Observation::Finding {
                    id: i as u64 + 1,
                    host: &names[*host],
                    kind,
                    at: *at,
                    attributes,
                },
                *at,
            )
        } else {
            c.observe(
                &Observation::Telemetry {
                    host: &names[*host],
                    kind,
                    at: *at,
                    attributes,
                },
                *at,
            )
        };
        timed += t.elapsed();
        raised += out.len();
        if (i + 1) % step == 0 {
            checkpoints.push((i + 1, rss_kib().saturating_sub(before), c.stats().keys));
        }
    }
    let stats = c.stats();
    let per_event = timed.as_nanos() as f64 / args.events as f64;
    println!(
        "## Correlator, {} observations from {} hosts over 4 simulated hours",
        args.events, args.hosts
    );
    println!(
        "correlator: {per_event:.0} ns per observation; {raised} correlated findings; {} keys held at the end, {} shed",
        stats.keys, stats.shed
    );
    println!("raised per rule: {:?}", stats.raised);
    println!("resident memory above the start, by observations fed:");
    for (n, kib, keys) in checkpoints {
        println!("  {n:>9}: +{:>6.1} MiB, {keys} keys", kib as f64 / 1024.0);
    }
}

fn naive(args: &Args) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stream: Vec<_> = (0..args.events)
        .map(|i| observation(&mut rng, i, args.events, args.hosts))
        .collect();
    // The naive baseline: every key, every host, forever.
    let before_naive = rss_kib();
    let mut naive: HashMap<String, HashSet<usize>> = HashMap::new();
    let t = Instant::now();
    for (host, kind, _, attributes) in &stream {
        let key = match *kind {
            "net.connection" => format!("peer {}", attributes["remote_address"]),
            "account.login" | "account.login_failed" => format!("{kind} {}", attributes["user"]),
            _ => format!("sha {}", attributes["sha256"]),
        };
        naive.entry(key).or_default().insert(*host);
    }
    let naive_per_event = t.elapsed().as_nanos() as f64 / args.events as f64;
    let naive_keys = naive.len();
    let naive_kib = rss_kib().saturating_sub(before_naive);
    println!(
        "naive map (no windows, no bounds), same stream: {naive_per_event:.0} ns per observation; {naive_keys} keys, +{:.1} MiB, growing with every new key",
        naive_kib as f64 / 1024.0
    );
}

fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.is_file() {
        bail!(
            "{} missing: run cargo build --release --workspace --bins",
            p.display()
        );
    }
    Ok(p)
}

async fn end_to_end(rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = bannin_tests::TestPki::new(dir.path());
    let port = bannin_tests::free_port();
    let cdir = dir.path().join("collector");
    let config =
        bannin_tests::collector_config(&cdir, &pki, port, "[correlation.spread]\nhosts = 3\n");
    let mut c = std::process::Command::new(release_bin("bannin-collector")?);
    c.arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let _collector = bannin_tests::Proc::spawn(c, cdir.join("collector.log"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("collector did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut agents = Vec::new();
    for i in 0..20 {
        agents.push(
            SimAgent::connect(
                &pki,
                &format!("bench-{i:02}"),
                addr,
                &[&format!("10.60.0.{i}")],
                &[],
            )
            .await?,
        );
    }
    let mut operator = bannin_tests::operator_client(&pki.operator("bench"), addr).await;
    let mut follow = operator
        .follow_findings(v1::FollowFindingsRequest::default())
        .await?
        .into_inner();
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let sha = format!("{:064x}", 0xbeef_0000u64 + round as u64);
        let now = bannin_proto::now_unix_ms();
        let ev = event(
            "process.unknown_binary",
            true,
            now,
            &[("sha256", &sha), ("exe", "/tmp/x")],
        );
        let first = (round * 3) % 20;
        for k in 0..2 {
            agents[(first + k) % 20]
                .send(std::slice::from_ref(&ev))
                .await?;
        }
        let sent = Instant::now();
        agents[(first + 2) % 20]
            .send(std::slice::from_ref(&ev))
            .await?;
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), follow.message())
                .await??
                .ok_or_else(|| anyhow::anyhow!("follow stream ended"))?;
            if f.kind == "correlation.spread" && f.attributes.get("value") == Some(&sha) {
                latencies.push(sent.elapsed());
                break;
            }
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "## Agent event to correlated finding, end to end ({rounds} rounds, 20 simulated agents over mTLS, release collector)"
    );
    println!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (from the third host's batch send to the finding on an operator's follow stream)",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.only.as_deref() {
        Some("correlator") => in_process(&args),
        Some("naive") => naive(&args),
        Some("e2e") => tokio::runtime::Runtime::new()?.block_on(end_to_end(args.rounds))?,
        Some(other) => bail!("--only {other}: correlator, naive or e2e"),
        None => {
            for part in ["correlator", "naive", "e2e"] {
                let status = std::process::Command::new(std::env::current_exe()?)
                    .args(std::env::args().skip(1))
                    .args(["--only", part])
                    .status()?;
                if !status.success() {
                    bail!("{part} failed");
                }
            }
        }
    }
    Ok(())
}
