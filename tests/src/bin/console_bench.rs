//! Console benchmark (BENCHMARKS.md, "Web console"):
//!
//! 1. Live queue latency: a release collector, `bannin console`, and headless
//!    Chromium on the findings page. Findings are added one at a time through
//!    the Operator API; for each, the time from the call that stores it to its
//!    row appearing in the browser's live queue (a MutationObserver stamps each
//!    row) — against, in the same run, the same finding arriving on a plain
//!    `FollowFindings` gRPC stream (what `bannin findings --follow` reads), the
//!    floor the console adds its hop to.
//! 2. Page loads: each page loaded in a fresh navigation, its load time
//!    (Navigation Timing) and the bytes transferred (document plus assets).
//!
//! `cargo build --release --workspace --bins && target/release/bannin-console-bench`

// A benchmark measures time: the tests' ban on `Instant::elapsed` does not apply.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bannin_proto::v1;
use bannin_tests::browser::{Driver, wait_for, wait_until_js};
use bannin_tests::sim::SimAgent;
use bannin_tests::{CollectorProc, Proc, TestPki, bin, free_port, operator_client, operator_toml};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Findings added (each timed).
    #[arg(long, default_value_t = 100)]
    findings: usize,
    /// Pause between findings, in milliseconds.
    #[arg(long, default_value_t = 150)]
    gap_ms: u64,
    /// Loads of each page.
    #[arg(long, default_value_t = 5)]
    loads: usize,
    /// Findings added before the second round of page loads (a long queue).
    #[arg(long, default_value_t = 20_000)]
    backlog: usize,
}

/// Each page `loads` times in fresh navigations: (page, first load ms, median ms, bytes).
async fn page_loads(
    client: &fantoccini::Client,
    base: &str,
    loads: usize,
) -> anyhow::Result<Vec<(&'static str, f64, f64, f64)>> {
    let mut out = Vec::new();
    for page in ["/", "/findings", "/hosts", "/hosts/bench-01", "/actions"] {
        let mut times = Vec::new();
        let mut bytes = 0.0;
        for _ in 0..loads {
            client.goto(&format!("{base}{page}")).await?;
            wait_until_js(
                client,
                "return document.readyState === 'complete' && performance.getEntriesByType('navigation')[0].loadEventEnd > 0",
                60,
                "page load",
            )
            .await;
            let v = client
                .execute(
                    "const n = performance.getEntriesByType('navigation')[0];
                     const r = performance.getEntriesByType('resource').reduce((s, e) => s + e.transferSize, 0);
                     return [n.loadEventEnd - n.startTime, n.transferSize + r];",
                    vec![],
                )
                .await?;
            times.push(v[0].as_f64().unwrap_or(f64::NAN));
            bytes = v[1].as_f64().unwrap_or(f64::NAN);
        }
        let first = times.first().copied().unwrap_or(f64::NAN);
        times.sort_by(f64::total_cmp);
        out.push((page, first, percentile(&times, 0.5), bytes));
    }
    Ok(out)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, port, "");
    let _agent = SimAgent::connect(&pki, "bench-01", collector.addr, &[], &[]).await?;
    let tls = pki.operator("alice");
    let operator = operator_toml(dir.path(), &tls, collector.addr);
    let out = dir.path().join("console.out");
    let mut command = std::process::Command::new(bin("bannin"));
    command
        .args(["console", "--listen", "127.0.0.1:0", "--config"])
        .arg(&operator);
    let console = Proc::spawn_with_stdout(command, dir.path().join("console.log"), &out);
    let url = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(u) = text.lines().find(|l| l.contains("/login?token=")) {
            break u.trim().to_owned();
        }
        anyhow::ensure!(
            std::fs::metadata(&console.log).is_ok(),
            "console did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let base = url.split("/login").next().unwrap_or_default().to_owned();
    let driver = Driver::start(free_port(), &[], &dir.path().join("chromedriver.log"));
    let client = driver.session().await;
    client.goto(&url).await?;
    wait_for(&client, "#chart-hourly", 20).await;

    let empty_loads = page_loads(&client, &base, args.loads).await?;

    // 1. Live queue latency.
    client.goto(&format!("{base}/findings")).await?;
    wait_until_js(
        &client,
        "return document.getElementById('queue').dataset.live === 'open'",
        20,
        "the live queue",
    )
    .await;
    client
        .execute(
            "window.__seen = {};
             new MutationObserver(ms => { const t = performance.timeOrigin + performance.now();
               for (const m of ms) for (const n of m.addedNodes) if (n.dataset && n.dataset.finding) window.__seen[n.dataset.finding] = t; })
               .observe(document.querySelector('#queue tbody'), { childList: true });
             return true;",
            vec![],
        )
        .await?;
    let mut admin = operator_client(&tls, collector.addr).await;
    let mut follow = admin
        .follow_findings(v1::FollowFindingsRequest::default())
        .await?
        .into_inner();
    let arrived: Arc<Mutex<HashMap<u64, f64>>> = Arc::default();
    let arrivals = arrived.clone();
    tokio::spawn(async move {
        while let Ok(Some(f)) = follow.message().await {
            if let Ok(mut a) = arrivals.lock() {
                a.insert(f.id, now_ms());
            }
        }
    });
    let mut sent = Vec::new();
    for i in 0..args.findings {
        let t0 = now_ms();
        let id = admin
            .add_finding(v1::AddFindingRequest {
                host_id: "bench-01".into(),
                kind: "report.user".into(),
                severity: v1::Severity::Medium as i32,
                text: format!("console bench finding {i}"),
                reporter: String::new(),
            })
            .await?
            .into_inner()
            .id;
        sent.push((id, t0));
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = client.execute("return window.__seen", vec![]).await?;
    let arrived = arrived.lock().map(|a| a.clone()).unwrap_or_default();
    let mut browser = Vec::new();
    let mut grpc = Vec::new();
    let mut missing = 0;
    for (id, t0) in &sent {
        match seen[id.to_string()].as_f64() {
            Some(t) => browser.push(t - t0),
            None => missing += 1,
        }
        if let Some(t) = arrived.get(id) {
            grpc.push(t - t0);
        }
    }
    browser.sort_by(f64::total_cmp);
    grpc.sort_by(f64::total_cmp);

    // A long queue: the backlog added by 8 callers at once, then the pages again.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut admin = operator_client(&tls, collector.addr).await;
        let n = args.backlog / 8;
        #[allow(clippy::disallowed_methods)]
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                admin
                    .add_finding(v1::AddFindingRequest {
                        host_id: "bench-01".into(),
                        kind: "report.user".into(),
                        severity: v1::Severity::Low as i32,
                        text: format!("backlog {t}-{i}"),
                        reporter: String::new(),
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "backlog of {} added in {:.1} s",
        args.backlog,
        started.elapsed().as_secs_f64()
    );
    let long_loads = page_loads(&client, &base, args.loads).await?;
    let _ = client.close().await;

    println!("## Web console (`bannin-console-bench`)\n");
    println!(
        "Live queue: {} findings added one at a time ({} ms apart); time from the AddFinding call to the row in the browser's queue, against the same finding on a plain FollowFindings gRPC stream.\n",
        args.findings, args.gap_ms
    );
    println!("| path | p50 ms | p99 ms | max ms | rows |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("browser live queue (SSE via bannin console)", &browser),
        ("FollowFindings gRPC stream (baseline)", &grpc),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} |",
            percentile(v, 0.5),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
            v.len()
        );
    }
    println!(
        "\nratio browser/gRPC: p50 {:.2}×, p99 {:.2}×; rows missing from the browser: {missing}\n",
        percentile(&browser, 0.5) / percentile(&grpc, 0.5),
        percentile(&browser, 0.99) / percentile(&grpc, 0.99)
    );
    println!(
        "Page loads ({} loads each, navigation start to load event; bytes = document + assets transferred), with the queue nearly empty and with {} more findings:\n",
        args.loads, args.backlog
    );
    println!(
        "| page | first ms | median ms | bytes | first ms, long queue | median ms, long queue | bytes, long queue |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((page, first, median, bytes), (_, lfirst, lmedian, lbytes)) in
        empty_loads.iter().zip(&long_loads)
    {
        println!(
            "| `{page}` | {first:.1} | {median:.1} | {bytes:.0} | {lfirst:.1} | {lmedian:.1} | {lbytes:.0} |"
        );
    }
    drop(driver);
    drop(console);
    drop(collector);
    Ok(())
}
