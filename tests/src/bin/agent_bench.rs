//! Agent footprint benchmark (BENCHMARKS.md, "Agent"): the cost of one /proc
//! sweep per process against a bare /proc walk, a file-creation storm, the
//! integrity baseline of /usr and /etc against `aide --init` and a re-check
//! against `aide --check`, the stripped binary size, and the agent's memory and
//! CPU over a run with its default config.
//!
//! Run as root after `cargo build --release --workspace --bins`:
//! `target/release/bannin-agent-bench [--minutes 10] [--skip-idle] [--skip-aide]`;
//! `--spool` measures only the spool (writes per second against the earlier sled
//! spool's, and the space a capped spool takes after a storm).
//! It installs `aide` and `time` (Debian packages) if they are missing.

// A benchmark measures time: the tests' ban on `Instant::elapsed` does not apply.
#![allow(clippy::disallowed_methods)]

// No global allocator here: the agent binary keeps the system allocator
// (agent/src/main.rs), so its sweep and storm figures are measured on it too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bannin_agent::config::{OddNameConfig, ProcessConfig, SensorCommon};
use bannin_agent::sensors::{self, HostRoot, Sensor, Sweep};
use bannin_proto::v1::Severity;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Minutes of the idle run.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Skip the idle run.
    #[arg(long)]
    skip_idle: bool,
    /// Skip the AIDE comparison.
    #[arg(long)]
    skip_aide: bool,
    /// Only the spool: sweeps written and synced per second against the earlier
    /// sled spool's writes, and the space a 1 MiB spool takes after a storm.
    #[arg(long)]
    spool: bool,
    /// Only the real-time integrity latency: this many changes, one at a time,
    /// each timed from the write to its finding at the collector.
    #[arg(long, value_name = "CHANGES")]
    integrity_latency: Option<usize>,
    /// Only the kernel event sources (root): an exec storm through eBPF and
    /// through the process events connector, and the flow probe's cost, each
    /// in a child process of its own, for this many seconds.
    #[arg(long, value_name = "SECS")]
    kernel_events: Option<u64>,
    /// Execs per second the storm aims at.
    #[arg(long, default_value_t = 2000)]
    exec_rate: u64,
    /// Connections per second the flow run aims at.
    #[arg(long, default_value_t = 500)]
    connection_rate: u64,
    /// Only the YARA hunt: a 100-rule set over this tree, by the agent's hunt
    /// (YARA-X, one thread at low priority, as a host runs it) against Debian's
    /// `yara` on the same tree, single-threaded and with its default threads.
    #[arg(long, value_name = "ROOT")]
    yara: Option<PathBuf>,
    /// (internal) One child run: `exec-ebpf`, `exec-connector`, `flow-on`, `flow-off`.
    #[arg(long, hide = true)]
    child: Option<String>,
}

fn common() -> SensorCommon {
    SensorCommon {
        enabled: true,
        interval: Duration::from_secs(1),
        severity: Severity::Medium,
    }
}

fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.is_file() {
        bail!(
            "{} missing: run cargo build --release --workspace --bins",
            p.display()
        );
    }
    Ok(p)
}

fn ensure_package(binary: &str, package: &str) -> anyhow::Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()?
        .status
        .success();
    if !found {
        eprintln!("installing {package}…");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?
            .success();
        if !ok {
            bail!("cannot install {package}");
        }
    }
    Ok(())
}

/// Runs `cmd` under GNU time: (seconds, peak RSS in KiB, exit status).
fn timed(cmd: Command) -> anyhow::Result<(f64, u64, i32)> {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(&program)
        .args(&args)
        .output()
        .with_context(|| format!("running {}", Path::new(&program).display()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let rss = field("Maximum resident set size (kbytes):")
        .parse()
        .unwrap_or(0);
    let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):");
    let secs = wall
        .split(':')
        .rev()
        .enumerate()
        .map(|(i, p)| p.parse::<f64>().unwrap_or(0.0) * 60f64.powi(i as i32))
        .sum();
    Ok((secs, rss, out.status.code().unwrap_or(-1)))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.get(s.rfind(')')? + 2..)?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn proc_sweep() -> anyhow::Result<()> {
    let pids = std::fs::read_dir("/proc")?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count();
    let rounds = 300;
    // A walk every sweep (no interval), steady state: everything hashed.
    let sweep_cost = |exec_events: bool| -> anyhow::Result<f64> {
        let config = ProcessConfig {
            common: SensorCommon {
                interval: Duration::ZERO,
                ..common()
            },
            suspicious_dirs: vec![PathBuf::from("/tmp"), PathBuf::from("/dev/shm")],
            allow: Vec::new(),
            ioc_hashes: None,
            max_hash_bytes: 256 << 20,
            exec_telemetry: true,
            exec_events,
            exec_source: bannin_agent::config::ExecSource::Connector,
        };
        let mut sensor = sensors::process::Processes::new(HostRoot("/".into()), config, None);
        sensor.sweep(&mut Sweep::default())?; // learns, hashes
        let started = Instant::now();
        for _ in 0..rounds {
            sensor.sweep(&mut Sweep::default())?;
        }
        Ok(started.elapsed().as_secs_f64() / f64::from(rounds))
    };
    let ours = sweep_cost(false)?;
    let with_connector = sweep_cost(true)?;
    // Baselines that read what the sensor reads, and nothing else: a polling sweep
    // reads each process's stat, status and cmdline and its exe link; a sweep that
    // trusts the connector reads a known pid's exe link only.
    let bare_walk = |full: bool| -> anyhow::Result<f64> {
        let started = Instant::now();
        for _ in 0..rounds {
            for e in std::fs::read_dir("/proc")?.flatten() {
                if !e
                    .file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    continue;
                }
                let dir = e.path();
                if full {
                    let _ = std::fs::read_to_string(dir.join("stat"));
                    let _ = std::fs::read_to_string(dir.join("status"));
                    let _ = std::fs::read(dir.join("cmdline"));
                }
                let _ = std::fs::read_link(dir.join("exe"));
            }
        }
        Ok(started.elapsed().as_secs_f64() / f64::from(rounds))
    };
    let bare = bare_walk(true)?;
    let bare_exe = bare_walk(false)?;
    println!("## /proc sweep ({pids} processes, mean of {rounds} steady-state sweeps)");
    println!(
        "process sensor: {:.1} µs per sweep, {:.2} µs per process",
        ours * 1e6,
        ours * 1e6 / pids as f64
    );
    println!(
        "process sensor with the exec connector (a known pid: its exe link only; every tenth walk reads all): {:.1} µs per sweep, {:.2} µs per process",
        with_connector * 1e6,
        with_connector * 1e6 / pids as f64
    );
    println!(
        "bare walk reading the same files as a polling sweep (stat, status, cmdline, exe link): {:.1} µs per sweep, {:.2} µs per process",
        bare * 1e6,
        bare * 1e6 / pids as f64,
    );
    println!(
        "bare walk reading the same files as a connector-trusted sweep (exe link): {:.1} µs per sweep, {:.2} µs per process",
        bare_exe * 1e6,
        bare_exe * 1e6 / pids as f64,
    );
    println!(
        "ratios, like with like: polling sweep / its bare walk {:.2}; connector-trusted sweep / its bare walk {:.2}",
        ours / bare,
        with_connector / bare_exe
    );
    Ok(())
}

fn storm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let watched = dir.path().join("w");
    std::fs::create_dir_all(&watched)?;
    let config = OddNameConfig {
        common: common(),
        paths: vec![watched.clone()],
        dotfiles_unexpected: false,
        hidden_in: Vec::new(),
        max_depth: 4,
        max_entries: 200_000,
        max_events: 20,
        realtime: true,
        max_watches: 1024,
        exclude: Vec::new(),
    };
    let mut sensor = sensors::file_odd_name::OddNames::new(HostRoot("/".into()), config, None);
    sensor.sweep(&mut Sweep::default())?;
    let rss_before = rss_kib(std::process::id());
    let n = 10_000;
    let created = Instant::now();
    for i in 0..n {
        std::fs::write(watched.join(format!(" storm-{i}")), b"x")?;
    }
    let create_secs = created.elapsed().as_secs_f64();
    // What the agent's runner does when inotify wakes it: wait for the burst to go quiet.
    std::thread::sleep(sensors::WAKE_DEBOUNCE * 2);
    let started = Instant::now();
    let mut sweep = Sweep::default();
    sensor.sweep(&mut sweep)?;
    sensors::fold(&mut sweep.events, 20);
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss_kib(std::process::id());
    let folded: Vec<_> = sweep
        .events
        .iter()
        .filter(|e| e.kind == "file.odd_name")
        .collect();
    let count: u64 = folded
        .iter()
        .map(|e| {
            e.attributes
                .get("folded_count")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    println!("## File-creation storm");
    println!(
        "{n} odd-named files created in {create_secs:.2} s; one sweep took {secs:.3} s and produced {} finding(s) counting {count} files (exact: {}); RSS {} → {} KiB",
        folded.len(),
        count == n,
        rss_before,
        rss_after
    );
    Ok(())
}

fn aide_comparison() -> anyhow::Result<()> {
    ensure_package("aide", "aide")?;
    ensure_package("/usr/bin/time", "time")?;
    let work = tempfile::tempdir()?;
    // A scratch tree inside /usr both tools see, changed between the runs.
    let scratch = PathBuf::from("/usr/local/bannin-bench-scratch");
    std::fs::create_dir_all(&scratch)?;
    for i in 0..20 {
        std::fs::write(scratch.join(format!("f{i}")), vec![i as u8; 4096])?;
    }
    let aide_conf = work.path().join("aide.conf");
    let db = work.path().join("aide.db");
    std::fs::write(
        &aide_conf,
        format!(
            "database_in=file:{db}\ndatabase_out=file:{db}\ngzip_dbout=no\nBanninRule = p+u+g+s+m+c+i+sha256\n/usr BanninRule\n/etc BanninRule\n",
            db = db.display()
        ),
    )?;
    let agent_conf = work.path().join("agent.toml");
    let mut text = String::from(
        "[sensors.file_integrity]\npaths = [\"/usr\", \"/etc\"]\nlibrary_paths = []\nhash_rate_mib = 0\n",
    );
    for off in [
        "net_listener",
        "net_connection",
        "process",
        "system",
        "hardware",
        "net_interface",
        "logs",
        "resources",
        "accounts",
        "file_odd_name",
    ] {
        text.push_str(&format!("[sensors.{off}]\nenabled = false\n"));
    }
    std::fs::write(&agent_conf, text)?;
    let state = work.path().join("state");
    let agent = release_bin("bannin-agent")?;
    let ours = |label: &str| -> anyhow::Result<(f64, u64)> {
        let mut c = Command::new(&agent);
        c.arg("check")
            .arg("--config")
            .arg(&agent_conf)
            .arg("--state-dir")
            .arg(&state);
        let (secs, rss, code) = timed(c)?;
        if code > 1 {
            bail!("bannin-agent check ({label}) exited {code}");
        }
        Ok((secs, rss))
    };
    // Warm the page cache for both alike.
    let _ = Command::new("sh")
        .args([
            "-c",
            "find /usr /etc -xdev -type f -print0 | xargs -0 cat > /dev/null 2>&1",
        ])
        .status();
    let mut aide_init = Command::new("aide");
    aide_init
        .arg("--init")
        .arg(format!("--config={}", aide_conf.display()));
    let (aide_init_secs, aide_init_rss, code) = timed(aide_init)?;
    if code != 0 {
        bail!("aide --init exited {code}");
    }
    let new_db = db.with_extension("db");
    let _ = new_db;
    let (our_init_secs, our_init_rss) = ours("baseline")?;
    // Change a handful of files, then re-check with both.
    for i in 0..5 {
        std::fs::write(scratch.join(format!("f{i}")), vec![0xEE; 4096 + i])?;
    }
    let mut aide_check = Command::new("aide");
    aide_check
        .arg("--check")
        .arg(format!("--config={}", aide_conf.display()));
    let (aide_check_secs, aide_check_rss, aide_code) = timed(aide_check)?;
    let (our_check_secs, our_check_rss) = ours("re-check")?;
    let files = Command::new("sh")
        .args([
            "-c",
            "find /usr /etc -xdev \\( -type f -o -type l \\) | wc -l",
        ])
        .output()?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "## Integrity baseline of /usr and /etc ({} files and symlinks), SHA-256 + permissions + owner + size + times + inode",
        String::from_utf8_lossy(&files.stdout).trim()
    );
    println!("| | bannin-agent check | aide | ratio (aide / ours) |\n|---|---|---|---|");
    println!(
        "| baseline time | {our_init_secs:.1} s | {aide_init_secs:.1} s | {:.2} |",
        aide_init_secs / our_init_secs.max(0.01)
    );
    println!(
        "| baseline peak RSS | {} MiB | {} MiB | {:.2} |",
        our_init_rss / 1024,
        aide_init_rss / 1024,
        aide_init_rss as f64 / our_init_rss.max(1) as f64
    );
    println!(
        "| re-check after 5 changes, time | {our_check_secs:.1} s | {aide_check_secs:.1} s (exit {aide_code}) | {:.2} |",
        aide_check_secs / our_check_secs.max(0.01)
    );
    println!(
        "| re-check peak RSS | {} MiB | {} MiB | {:.2} |",
        our_check_rss / 1024,
        aide_check_rss / 1024,
        aide_check_rss as f64 / our_check_rss.max(1) as f64
    );
    Ok(())
}

fn binary_size() -> anyhow::Result<()> {
    let agent = release_bin("bannin-agent")?;
    let dir = tempfile::tempdir()?;
    let stripped = dir.path().join("bannin-agent");
    std::fs::copy(&agent, &stripped)?;
    let ok = Command::new("strip").arg(&stripped).status()?.success();
    if !ok {
        bail!("strip failed");
    }
    let size = std::fs::metadata(&stripped)?.len();
    println!(
        "## Binary\nstripped release bannin-agent: {:.1} MiB ({size} bytes)",
        size as f64 / 1048576.0
    );
    Ok(())
}

fn idle(minutes: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = bannin_tests::TestPki::new(dir.path());
    let port = bannin_tests::free_port();
    let cdir = dir.path().join("collector");
    let config = bannin_tests::collector_config(&cdir, &pki, port, "");
    let mut c = Command::new(release_bin("bannin-collector")?);
    c.arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let _collector = bannin_tests::Proc::spawn(c, cdir.join("collector.log"));
    std::thread::sleep(Duration::from_secs(2));
    // The default config: every sensor at its default settings.
    let adir = dir.path().join("agent");
    std::fs::create_dir_all(&adir)?;
    let tls = pki.agent("idle-host");
    let agent_toml = adir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "[collector]\naddress = \"127.0.0.1:{port}\"\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n[spool]\ndir = {:?}\n",
            tls.ca.display().to_string(),
            tls.cert.display().to_string(),
            tls.key.display().to_string(),
            adir.join("spool").display().to_string()
        ),
    )?;
    std::fs::set_permissions(
        &agent_toml,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let mut a = Command::new(release_bin("bannin-agent")?);
    a.arg("run")
        .arg("--config")
        .arg(&agent_toml)
        .env("RUST_LOG", "warn");
    let agent = bannin_tests::Proc::spawn(a, adir.join("agent.log"));
    let pid = agent.pid();
    let ticks_per_sec = 100.0;
    let start = Instant::now();
    let total = Duration::from_secs(minutes * 60);
    let half = total / 2;
    let mut peak = 0;
    let mut second_half_start = None;
    let mut samples = Vec::new();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(5));
        let rss = rss_kib(pid);
        peak = peak.max(rss);
        samples.push((start.elapsed().as_secs(), rss, cpu_ticks(pid)));
        if second_half_start.is_none() && start.elapsed() >= half {
            second_half_start = Some((start.elapsed(), cpu_ticks(pid)));
        }
    }
    let end_ticks = cpu_ticks(pid);
    let end_rss = rss_kib(pid);
    let whole_cpu = end_ticks as f64 / ticks_per_sec / start.elapsed().as_secs_f64() * 100.0;
    let (t0, k0) = second_half_start.unwrap_or((Duration::ZERO, 0));
    let idle_cpu =
        (end_ticks - k0) as f64 / ticks_per_sec / (start.elapsed() - t0).as_secs_f64() * 100.0;
    println!("## Agent, default config, {minutes} min against a local collector");
    println!(
        "RSS at the end {:.1} MiB, peak {:.1} MiB; CPU over the whole run {whole_cpu:.2} % of one core (includes building the integrity baseline), over the second half (idle) {idle_cpu:.3} %",
        end_rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let last = samples
        .iter()
        .rev()
        .take(3)
        .map(|s| s.1)
        .collect::<Vec<_>>();
    println!("last RSS samples (KiB): {last:?}");
    Ok(())
}

/// The package database index: load time and resident memory for this host's
/// dpkg database (what the process sensor holds to know packaged executables).
fn package_index() {
    use bannin_agent::host::packages::PackageIndex;
    let root = HostRoot("/".into());
    let before = rss_kib(std::process::id());
    let started = Instant::now();
    let index = PackageIndex::load(&root);
    let took = started.elapsed();
    let after = rss_kib(std::process::id());
    println!("## Package index");
    println!(
        "{} packaged files: loaded in {:.0} ms; index {:.2} MiB on the heap; RSS {before} → {after} KiB",
        index.len(),
        took.as_secs_f64() * 1000.0,
        index.heap_bytes() as f64 / (1024.0 * 1024.0),
    );
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..1000 {
        found += usize::from(index.lookup("/usr/bin/head").is_some());
        found += usize::from(index.lookup("/usr/local/bin/tool").is_some());
    }
    println!(
        "lookup: {:.2} µs (mean of 2000, {found} found)",
        started.elapsed().as_secs_f64() * 1e6 / 2000.0
    );
    // What the agent holds: the files its sensors can ask about (with the
    // default integrity paths), against everything above.
    let defaults = bannin_agent::AgentConfig::load_standalone(None).expect("defaults");
    let fim = &defaults.file_integrity;
    let watched: Vec<_> = fim
        .paths
        .iter()
        .chain(&fim.library_paths)
        .cloned()
        .collect();
    let scoped = PackageIndex::load_with(
        &root,
        std::path::Path::new("rpm"),
        &bannin_agent::host::packages::Scope::for_sensors(&watched),
    );
    println!(
        "the sensors' index (default integrity paths): {} files, {:.2} MiB on the heap ({:.2} of everything)",
        scoped.len(),
        scoped.heap_bytes() as f64 / (1024.0 * 1024.0),
        scoped.heap_bytes() as f64 / index.heap_bytes().max(1) as f64
    );
}

/// Real-time integrity, end to end: a collector and an agent (debug builds, as
/// the tests run them) over mTLS on loopback; the agent's integrity sensor
/// watches one directory with a 1-hour rescan, so only the real-time path can
/// be fast. Each change is a rewrite of a different file; the clock runs from
/// the write to the finding listed by the collector's operator API.
fn integrity_latency(changes: usize) -> anyhow::Result<()> {
    use bannin_tests::{
        AgentOptions, CollectorProc, TestPki, free_port, operator_client, start_agent,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let watched = dir.path().join("critical");
        std::fs::create_dir_all(&watched)?;
        for i in 0..changes {
            std::fs::write(watched.join(format!("f{i}")), b"original")?;
        }
        let pki = TestPki::new(dir.path());
        let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
        let _agent = start_agent(
            &dir.path().join("agent"),
            &pki.agent("bench-host"),
            collector.addr,
            &AgentOptions {
                net_listener: false,
                interval_secs: 3600,
                enable: vec!["file_integrity"],
                sensor_toml: vec![(
                    "file_integrity",
                    format!(
                        "paths = [{:?}]\nlibrary_paths = []",
                        watched.display().to_string()
                    ),
                )],
                ..AgentOptions::default()
            },
        );
        let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
        let mut seen = 0u64;
        // Findings for `path` after id `seen`.
        async fn arrived(
            client: &mut bannin_proto::v1::operator_client::OperatorClient<
                tonic::transport::Channel,
            >,
            seen: &mut u64,
            path: &str,
        ) -> anyhow::Result<bool> {
            let page = client
                .list_findings(bannin_proto::v1::ListFindingsRequest {
                    since_id: *seen,
                    limit: 10_000,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .findings;
            let mut hit = false;
            for f in page {
                *seen = (*seen).max(f.id);
                hit |= f.attributes.get("path").map(String::as_str) == Some(path);
            }
            Ok(hit)
        }
        // The baseline exists once a new file is reported.
        let sentinel = watched.join("sentinel");
        let sentinel_shown = sentinel.display().to_string();
        let ready = Instant::now();
        loop {
            std::fs::write(&sentinel, format!("{:?}", ready.elapsed()))?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if arrived(&mut client, &mut seen, &sentinel_shown).await? {
                break;
            }
            if ready.elapsed() > Duration::from_secs(120) {
                bail!("the integrity sensor never reported the sentinel");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = arrived(&mut client, &mut seen, "").await?;
        let mut latencies = Vec::with_capacity(changes);
        for i in 0..changes {
            let f = watched.join(format!("f{i}"));
            let shown = f.display().to_string();
            let t0 = Instant::now();
            std::fs::write(&f, format!("changed {i}"))?;
            loop {
                if arrived(&mut client, &mut seen, &shown).await? {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    bail!("no finding for {shown} within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            latencies.push(t0.elapsed());
        }
        latencies.sort();
        let pct = |p: f64| {
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        println!(
            "integrity change → finding at the collector, {} changes: p50 {:?}, p99 {:?}, max {:?}",
            latencies.len(),
            pct(0.50),
            pct(0.99),
            latencies[latencies.len() - 1]
        );
        Ok(())
    })
}

/// The spool: a sensor sweep (20 events and the sensor's 2 KiB state) written and
/// made durable, as the agent's spooler does after every sweep, against the same
/// writes into a sled tree as the earlier spool made them (one atomic batch with
/// the record, its drop-order key, the state and the last sequence, then a flush);
/// then a storm of 20,000 distinct events into a 1 MiB spool, and what it takes on disk.
fn spool_bench() -> anyhow::Result<()> {
    use bannin_agent::spool::Spool;
    use bannin_proto::v1;
    use prost::Message;
    let dir = tempfile::tempdir_in("/var/tmp")?;
    let sweeps = 2000u64;
    let event = |i: u64| v1::Event {
        kind: "file.odd_name".into(),
        severity: Severity::Medium as i32,
        observed_unix_ms: 1_700_000_000_000 + i as i64,
        attributes: [
            ("path".to_owned(), format!("/var/tmp/storm/ odd-{i:08}")),
            ("owner".to_owned(), "1000".to_owned()),
            ("user".to_owned(), "alice".to_owned()),
        ]
        .into(),
        summary: format!("odd file name: /var/tmp/storm/ odd-{i:08}"),
        indicator: true,
    };
    let sweep = |n: u64| (0..20).map(|k| event(n * 20 + k)).collect::<Vec<_>>();
    let state = vec![b'x'; 2048];

    let spool = Spool::open(&dir.path().join("files"), 256 << 20)?;
    let started = Instant::now();
    for n in 0..sweeps {
        spool.append_sweep(vec![sweep(n)], Some(("bench", state.clone())))?;
        spool.flush()?;
    }
    let files = started.elapsed();
    drop(spool);

    let db = sled::Config::new()
        .path(dir.path().join("sled"))
        .cache_capacity(8 << 20)
        .flush_every_ms(Some(200))
        .open()?;
    let tree = db.open_tree("spool")?;
    let data_file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("sled").join("db"))?;
    let mut sled_took = [Duration::ZERO; 2];
    for (durable, took) in [false, true].into_iter().zip(sled_took.iter_mut()) {
        let started = Instant::now();
        for n in 0..sweeps {
            let n = n + if durable { sweeps } else { 0 };
            let seq = n + 1;
            let events = sweep(n);
            let mut record = vec![Severity::Medium as u8];
            record.extend_from_slice(&20u32.to_be_bytes());
            record
                .extend_from_slice(&v1::TelemetryBatch::from_events(seq, &events).encode_to_vec());
            let mut key = vec![b'B'];
            key.extend_from_slice(&seq.to_be_bytes());
            let mut order = vec![b'S', Severity::Medium as u8];
            order.extend_from_slice(&seq.to_be_bytes());
            let mut batch = sled::Batch::default();
            batch.insert(key, record);
            batch.insert(order, &[]);
            batch.insert(&b"Tbench"[..], state.clone());
            batch.insert(&b"Mlast_seq"[..], &seq.to_be_bytes());
            tree.apply_batch(batch)?;
            db.flush()?;
            if durable {
                // As the collector's store: sled 0.34 flushes with sync_file_range,
                // which does not reach the drive (sled issue 1452).
                data_file.sync_data()?;
            }
        }
        *took = started.elapsed();
    }
    // An idle sweep: no events, the same state.
    let started = Instant::now();
    for _ in 0..sweeps {
        let mut batch = sled::Batch::default();
        batch.insert(&b"Tbench"[..], state.clone());
        tree.apply_batch(batch)?;
        db.flush()?;
        data_file.sync_data()?;
    }
    let sled_idle = started.elapsed();
    drop(tree);
    drop(db);
    let spool = Spool::open(&dir.path().join("files"), 256 << 20)?;
    let started = Instant::now();
    for _ in 0..sweeps {
        spool.append_sweep(vec![Vec::new()], Some(("bench", state.clone())))?;
        spool.flush()?;
    }
    let files_idle = started.elapsed();
    drop(spool);

    let rate = |d: Duration| sweeps as f64 / d.as_secs_f64();
    println!("## Spool: a 20-event sweep and its state, written and made durable");
    println!();
    println!("| spool | sweep | sweeps/s | events/s | ratio |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| one file per batch (now; fdatasync per file, directories synced) | 20 events + state | {:.0} | {:.0} | {:.2} |",
        rate(files),
        rate(files) * 20.0,
        rate(files) / rate(sled_took[1])
    );
    println!(
        "| sled tree, flush + fdatasync (durable, as the collector's store; baseline, same run) | 20 events + state | {:.0} | {:.0} | 1.00 |",
        rate(sled_took[1]),
        rate(sled_took[1]) * 20.0
    );
    println!(
        "| sled tree, flush only (what the earlier spool did: not durable against power loss) | 20 events + state | {:.0} | {:.0} | {:.2} |",
        rate(sled_took[0]),
        rate(sled_took[0]) * 20.0,
        rate(sled_took[0]) / rate(sled_took[1])
    );
    println!(
        "| one file per batch (now) | idle: no events, same state | {:.0} | | {:.2} |",
        rate(files_idle),
        rate(files_idle) / rate(sled_idle)
    );
    println!(
        "| sled tree, flush + fdatasync (baseline, same run) | idle: no events, same state | {:.0} | | 1.00 |",
        rate(sled_idle)
    );

    // The storm: 20,000 distinct events in 500-event chunks into 1 MiB.
    let capped = dir.path().join("capped");
    let spool = Spool::open(&capped, 1 << 20)?;
    let all: Vec<v1::Event> = (0..20_000).map(event).collect();
    let started = Instant::now();
    for chunk in all.chunks(500) {
        spool.append_sweep(vec![chunk.to_vec()], Some(("bench", state.clone())))?;
        spool.flush()?;
    }
    let took = started.elapsed();
    let kept: usize = spool
        .read_from(0, usize::MAX)?
        .iter()
        .filter_map(|b| b.decode_events().ok())
        .flatten()
        .filter(|e| e.kind != "agent.data_loss")
        .count();
    println!();
    println!(
        "storm: 20,000 events into a 1 MiB spool in {:.0} ms: {kept} kept, the rest reported lost; {} bytes on disk (du)",
        took.as_secs_f64() * 1000.0,
        bannin_tests::du(&capped, &[])
    );
    Ok(())
}

/// CPU seconds (user + system) of this process's thread whose name starts
/// with `prefix` (0 when there is none), or of the whole process for "".
fn thread_cpu_secs(prefix: &str) -> f64 {
    let ticks = |stat: &str| -> u64 {
        stat.get(stat.rfind(')').map_or(0, |i| i + 2)..)
            .map(|rest| {
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                    + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            })
            .unwrap_or(0)
    };
    if prefix.is_empty() {
        return ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default()) as f64
            / 100.0;
    }
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.trim().starts_with(prefix) {
            total += ticks(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default());
        }
    }
    total as f64 / 100.0
}

/// One exec storm through one source, in this (child) process: `rate` execs of
/// `/bin/true` per second for `secs` beside two CPU hogs; prints one JSON line.
fn exec_storm_child(ebpf: bool, secs: u64, rate: u64) -> anyhow::Result<()> {
    use bannin_agent::sensors::source::{exec_bpf, proc_events};
    use std::sync::{Arc, Mutex};
    let queue = Arc::new(Mutex::new(proc_events::ExecQueue::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    let root = HostRoot("/".into());
    let (started, reader) = if ebpf {
        (exec_bpf::start(root, queue.clone(), wake), "bannin-ebpf")
    } else {
        (
            proc_events::start(root, queue.clone(), wake),
            "bannin-proc-eve",
        )
    };
    started.map_err(|e| anyhow::anyhow!(e))?;
    let marker = format!("storm{}", std::process::id());
    let hogs = bannin_tests::CpuHogs::start(2);
    let cpu0 = thread_cpu_secs(reader);
    let t0 = Instant::now();
    // Four spawners, each a quarter of the rate (one alone cannot keep up
    // beside the hogs).
    const SPAWNERS: u64 = 4;
    let spawners: Vec<_> = (0..SPAWNERS)
        .map(|n| {
            let marker = marker.clone();
            std::thread::Builder::new()
                .name("spawner".into())
                .spawn(move || -> u64 {
                    let mut launched = 0u64;
                    let share = rate as f64 / SPAWNERS as f64;
                    while t0.elapsed() < Duration::from_secs(secs) {
                        let due = (t0.elapsed().as_secs_f64() * share) as u64;
                        if launched >= due {
                            std::thread::sleep(Duration::from_micros(200));
                            continue;
                        }
                        let ok = Command::new("/bin/true")
                            .arg(format!("{marker}-{n}-{launched}"))
                            .status()
                            .is_ok_and(|s| s.success());
                        launched += u64::from(ok);
                    }
                    launched
                })
                .expect("spawner")
        })
        .collect();
    let (mut recorded, mut with_parent) = (0u64, 0u64);
    let mut drain = |q: &Mutex<proc_events::ExecQueue>| {
        let mut q = bannin_proto::lock(q);
        for e in q.execs.drain(..) {
            if e.info.cmdline.contains(&marker) {
                recorded += 1;
                if e.parent.as_ref().is_some_and(|p| !p.exe.is_empty()) {
                    with_parent += 1;
                }
            }
        }
    };
    while t0.elapsed() < Duration::from_secs(secs) {
        drain(&queue);
        std::thread::sleep(Duration::from_millis(10));
    }
    let launched: u64 = spawners.into_iter().map(|s| s.join().unwrap_or(0)).sum();
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    drain(&queue);
    drop(hogs);
    let cpu = thread_cpu_secs(reader) - cpu0;
    let q = bannin_proto::lock(&queue);
    println!(
        "{}",
        serde_json::json!({
            "source": if ebpf { "ebpf" } else { "connector" },
            "launched": launched,
            "rate": launched as f64 / elapsed,
            "recorded": recorded,
            "with_parent": with_parent,
            "lost_counted": q.lost,
            "gone_counted": q.gone,
            "reader_cpu_s": cpu,
            "reader_cpu_pct": cpu / elapsed * 100.0,
        })
    );
    Ok(())
}

/// `rate` loopback connections per second for `secs` (each: connect, 100
/// bytes, close), with the flow probe on or off, in this (child) process;
/// prints one JSON line with this process's CPU and the reader's.
fn flow_child(on: bool, secs: u64, rate: u64) -> anyhow::Result<()> {
    use bannin_agent::sensors::source::flow_bpf;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let queue = Arc::new(Mutex::new(flow_bpf::FlowQueue::default()));
    if on {
        flow_bpf::start(
            HostRoot("/".into()),
            queue.clone(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .map_err(|e| anyhow::anyhow!(e))?;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            for peer in listener.incoming().flatten() {
                let mut peer = peer;
                let mut sink = Vec::new();
                let _ = peer.read_to_end(&mut sink);
            }
        })?;
    let process0 = thread_cpu_secs("");
    let reader0 = thread_cpu_secs("bannin-ebpf-flo");
    let t0 = Instant::now();
    let mut made = 0u64;
    let mut flows = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        if made >= due {
            flows += bannin_proto::lock(&queue).flows.drain(..).count() as u64;
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
        c.write_all(&[1u8; 100])?;
        drop(c);
        made += 1;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    flows += bannin_proto::lock(&queue).flows.drain(..).count() as u64;
    let process = thread_cpu_secs("") - process0;
    let reader = thread_cpu_secs("bannin-ebpf-flo") - reader0;
    println!(
        "{}",
        serde_json::json!({
            "probe": on,
            "connections": made,
            "rate": made as f64 / elapsed,
            "flows": flows,
            "lost_counted": bannin_proto::lock(&queue).lost,
            "process_cpu_pct": process / elapsed * 100.0,
            "reader_cpu_pct": reader / elapsed * 100.0,
        })
    );
    Ok(())
}

/// The kernel event sources: each run in a child of its own (a probe, once
/// attached, stays for the life of its process).
fn kernel_events(secs: u64, exec_rate: u64, connection_rate: u64) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let run = |child: &str| -> anyhow::Result<serde_json::Value> {
        let out = Command::new(&me)
            .args(["--child", child, "--kernel-events", &secs.to_string()])
            .args(["--exec-rate", &exec_rate.to_string()])
            .args(["--connection-rate", &connection_rate.to_string()])
            .output()?;
        if !out.status.success() {
            bail!("{child}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().context("no result")?;
        Ok(serde_json::from_str(line)?)
    };
    println!("## Exec storm: {exec_rate} execs/s aimed at, {secs} s, beside two CPU hogs");
    println!(
        "| source | launched | achieved rate | recorded | with parent fields | counted lost | reader CPU (% of a core) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for child in ["exec-ebpf", "exec-connector"] {
        let r = run(child)?;
        println!(
            "| {} | {} | {:.0}/s | {} | {} | {} (+{} gone) | {:.2} |",
            r["source"].as_str().unwrap_or_default(),
            r["launched"],
            r["rate"].as_f64().unwrap_or(0.0),
            r["recorded"],
            r["with_parent"],
            r["lost_counted"],
            r["gone_counted"],
            r["reader_cpu_pct"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    println!("## Flow log: {connection_rate} loopback connections/s aimed at, {secs} s");
    println!(
        "| flow probe | connections | achieved rate | flows recorded | counted lost | generator process CPU (%) | reader CPU (%) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for child in ["flow-off", "flow-on"] {
        let r = run(child)?;
        println!(
            "| {} | {} | {:.0}/s | {} | {} | {:.1} | {:.2} |",
            if r["probe"] == true { "on" } else { "off" },
            r["connections"],
            r["rate"].as_f64().unwrap_or(0.0),
            r["flows"],
            r["lost_counted"],
            r["process_cpu_pct"].as_f64().unwrap_or(0.0),
            r["reader_cpu_pct"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// A 100-rule set of the kinds of rules responders hunt with: text strings
/// (plain, `nocase`, `wide`), hex patterns with wildcards and jumps, regular
/// expressions, and conditions on the file's header and size.
fn yara_rules() -> String {
    const TEXT: [&str; 40] = [
        "bash -i >& /dev/tcp/",
        "nc -e /bin/sh",
        "/bin/sh -i",
        "eval(base64_decode(",
        "stratum+tcp://",
        "xmrig",
        "LD_PRELOAD=",
        "/etc/ld.so.preload",
        "chattr +i",
        "HISTFILE=/dev/null",
        "unset HISTFILE",
        "iptables -F",
        "setenforce 0",
        "python -c 'import socket",
        "Mozilla/4.0 (compatible; MSIE 6.0",
        "mimikatz",
        "meterpreter",
        "ReflectiveLoader",
        "beacon.x64.dll",
        "cobaltstrike",
        "/dev/shm/.x",
        "wget -q -O - http",
        "curl -fsSL http",
        "base64 -d | sh",
        "chmod 777 /tmp",
        "crontab -r",
        "echo ssh-rsa",
        ">> /root/.ssh/authorized_keys",
        "pkill -9 kinsing",
        "kdevtmpfsi",
        "/tmp/.ICE-unix/.",
        "masscan",
        "zmap -p",
        "Tsunami",
        "BillGates",
        "XorDDoS",
        "Mirai",
        "GET /shell?",
        "cmd.exe /c",
        "powershell -enc",
    ];
    const HEX: [&str; 30] = [
        "48 31 C0 [2-6] 0F 05",
        "6A 29 58 99 6A 02 5F 6A 01 5E 0F 05",
        "31 C0 50 68 2F 2F 73 68 68 2F 62 69 6E",
        "48 B8 2F 62 69 6E 2F 73 68 00",
        "E8 ?? ?? ?? ?? 5E 31 C0",
        "FF D5 6A 0A 41 5E",
        "55 50 58 21",
        "4D 5A 90 00 03 00",
        "7F 45 4C 46 ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? ?? 03 00",
        "B0 3B 0F 05",
        "48 8D 3D ?? ?? ?? ?? 48 31 F6 [0-4] B0 3B",
        "68 7F 00 00 01 66 68 11 5C",
        "66 68 ?? ?? 66 6A 02",
        "C7 44 24 ?? 2F 74 6D 70",
        "90 90 90 90 90 90 90 90 CC",
        "DE AD BE EF CA FE BA BE",
        "31 DB F7 E3 53 43 53 6A 02",
        "6A 66 58 6A 01 5B",
        "CD 80 93 59 B0 3F CD 80",
        "52 68 6E 2F 73 68 68 2F 2F 62 69",
        "89 E1 B0 0B CD 80",
        "0F 05 48 97 48 B9 02 00",
        "48 89 E6 0F 05 48 83 F8",
        "41 B8 ?? ?? ?? ?? 4C 89 E9",
        "E9 ?? ?? ?? ?? 00 00 00 00 4B 49 4E",
        "5B 6B 77 6F 72 6B 65 72",
        "2E 2F 2E 72 6F 6F 74",
        "4C 44 5F 50 52 45 4C 4F 41 44",
        "2F 70 72 6F 63 2F 73 65 6C 66 2F 65 78 65",
        "7E 2F 2E 63 6F 6E 66 69 67 2F 2E",
    ];
    const REGEX: [&str; 20] = [
        r#"/https?:\/\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]{2,5}\/[a-z]{4,8}/"#,
        r#"/stratum\+tcp:\/\/[a-z0-9.\-]+:[0-9]{2,5}/"#,
        r#"/\/dev\/tcp\/[0-9]{1,3}(\.[0-9]{1,3}){3}\/[0-9]{2,5}/"#,
        r#"/ssh-rsa AAAA[0-9A-Za-z+\/]{100,}[=]{0,2} [a-z]{1,8}@kali/"#,
        r#"/eval\(gzinflate\(base64_decode\(/"#,
        r#"/\$_(GET|POST|REQUEST)\[['"][a-z0-9]{1,12}['"]\]\)\s*;\s*\?>/"#,
        r#"/nohup [a-z\/.]{1,40} >\/dev\/null 2>&1 &/"#,
        r#"/(wget|curl) [^\n]{0,80}\| ?(ba)?sh/"#,
        r#"/echo [A-Za-z0-9+\/]{40,}={0,2} ?\| ?base64 -d/"#,
        r#"/[a-z0-9]{32}\.onion/"#,
        r#"/xmr[a-z]{0,8}\.(com|net|org)\/[a-z]{3,10}/"#,
        r#"/pool\.minexmr\.com:[0-9]{4}/"#,
        r#"/\/tmp\/\.[a-z]{1,3}\/[a-z]{4,10}/"#,
        r#"/chmod \+x \/tmp\/[a-z0-9]{4,12}; ?\/tmp\//"#,
        r#"/useradd -o -u 0 [a-z]{3,12}/"#,
        r#"/\* \* \* \* \* (root )?(curl|wget)/"#,
        r#"/socat (exec|EXEC):[^\n]{0,40}tcp/"#,
        r#"/perl -e ['"]use Socket;/"#,
        r#"/php -r ['"]\$sock=fsockopen/"#,
        r#"/ruby -rsocket -e/"#,
    ];
    let mut out = String::new();
    for (i, s) in TEXT.iter().enumerate() {
        let modifiers = match i % 4 {
            1 => " nocase",
            2 => " ascii wide",
            _ => "",
        };
        let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!(
            "rule text_{i} {{ strings: $a = \"{escaped}\"{modifiers} condition: $a }}\n"
        ));
    }
    for (i, h) in HEX.iter().enumerate() {
        let condition = match i % 3 {
            0 => "$h",
            1 => "uint32(0) == 0x464c457f and $h",
            _ => "filesize < 10MB and $h",
        };
        out.push_str(&format!(
            "rule hex_{i} {{ strings: $h = {{ {h} }} condition: {condition} }}\n"
        ));
    }
    for (i, r) in REGEX.iter().enumerate() {
        out.push_str(&format!(
            "rule regex_{i} {{ strings: $r = {r} condition: $r }}\n"
        ));
    }
    out.push_str(
        "rule elf_shell_marker { strings: $a = \"/bin/sh\" $b = \"socket\" $c = \"connect\" \
         condition: uint32(0) == 0x464c457f and filesize < 200KB and all of them }\n",
    );
    out.push_str(
        "rule script_downloader { strings: $a = \"#!/bin/sh\" $b = \"wget \" $c = \"chmod +x\" \
         condition: $a at 0 and $b and $c }\n",
    );
    out.push_str("rule gnu_libc_marker { strings: $a = \"GNU C Library\" condition: $a }\n");
    out.push_str(
        "rule many_urls { strings: $u = /https?:\\/\\/[a-z0-9.\\-]{4,40}\\// condition: #u > 50 }\n",
    );
    out.push_str(
        "rule upx_elf { strings: $u = \"UPX!\" condition: uint32(0) == 0x464c457f and $u in (0..1024) }\n",
    );
    for i in 0..5 {
        out.push_str(&format!(
            "rule marker_{i} {{ strings: $m = \"bannin-bench-never-{i}\" condition: $m }}\n"
        ));
    }
    out
}

/// The agent's YARA hunt over `root` against Debian's `yara` on the same tree
/// and rules: files and MB per second, the hits of each (which must agree),
/// and the hunt's CPU time against its cap.
fn yara_bench(root: &Path) -> anyhow::Result<()> {
    use bannin_agent::response::hunt::{self, Caps, Hunt};
    use bannin_proto::v1;
    ensure_package("yara", "yara")?;
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("bench.yar");
    let text = yara_rules();
    let count = bannin_proto::hunts::rule_names(&text).len();
    std::fs::write(&rules, &text)?;
    let max_size: u64 = 64 * 1024 * 1024;
    let root_text = root.display().to_string();
    let run_yara = |threads: Option<&str>| -> anyhow::Result<(Duration, std::collections::BTreeSet<(String, String)>)> {
        let mut c = Command::new("yara");
        c.args(["-r", "-N", "-w", "-z", &max_size.to_string()]);
        if let Some(t) = threads {
            c.args(["-p", t]);
        }
        c.arg(&rules).arg(root);
        let t = Instant::now();
        let out = c.output().context("yara")?;
        let took = t.elapsed();
        let hits = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, p)| (r.to_owned(), p.to_owned()))
            .collect();
        Ok((took, hits))
    };
    let run_hunt = || -> anyhow::Result<(Duration, serde_json::Value)> {
        let hunt = Hunt {
            id: "hbench".into(),
            question: v1::HuntQuestion {
                kind: Some(v1::hunt_question::Kind::Yara(v1::YaraQuestion {
                    rules: text.clone(),
                    roots: vec![root_text.clone()],
                    max_depth: 64,
                    max_size,
                })),
            },
            caps: Caps {
                cpu_ms: 3_600_000,
                read_bytes: u64::MAX,
                hits: hunt::MAX_HITS,
            },
        };
        // As a host runs it: a thread of its own at nice 19 in the idle I/O class.
        std::thread::scope(|s| {
            s.spawn(|| {
                bannin_agent::host::priority::lower();
                let stop = std::sync::atomic::AtomicBool::new(false);
                let t = Instant::now();
                let answer = hunt::run(&HostRoot("/".into()), &hunt, &stop)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let took = t.elapsed();
                Ok((took, serde_json::from_str(&answer.to_json())?))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the hunt thread panicked"))?
        })
    };
    println!("YARA: {count} rules over {root_text} (files up to 64 MiB, no symlinks followed)");
    // Each once untimed, so both read from a warm page cache.
    run_yara(Some("1"))?;
    run_hunt()?;
    let (hunt_time, answer) = run_hunt()?;
    let (yara_one, yara_hits) = run_yara(Some("1"))?;
    let (yara_default, _) = run_yara(None)?;
    let files = answer["files"].as_u64().unwrap_or(0);
    let bytes = answer["bytes"].as_u64().unwrap_or(0);
    let cpu_ms = answer["cpu_ms"].as_u64().unwrap_or(0);
    let mut hunt_hits = std::collections::BTreeSet::new();
    for hit in answer["hits"].as_array().into_iter().flatten() {
        let path = hit["path"].as_str().unwrap_or_default();
        for rule in hit["rules"].as_array().into_iter().flatten() {
            hunt_hits.insert((
                rule.as_str().unwrap_or_default().to_owned(),
                path.to_owned(),
            ));
        }
    }
    let rate = |d: Duration| {
        let s = d.as_secs_f64().max(1e-9);
        (files as f64 / s, bytes as f64 / s / 1e6)
    };
    let (hf, hm) = rate(hunt_time);
    let (yf, ym) = rate(yara_one);
    let (df, dm) = rate(yara_default);
    println!(
        "  bannin hunt (1 thread, nice 19, idle I/O): {:.1} s, {files} files, {:.0} MB; {hf:.0} files/s, {hm:.0} MB/s; CPU {:.1} s",
        hunt_time.as_secs_f64(),
        bytes as f64 / 1e6,
        cpu_ms as f64 / 1000.0
    );
    println!(
        "  yara -p 1:                               {:.1} s; {yf:.0} files/s, {ym:.0} MB/s",
        yara_one.as_secs_f64()
    );
    println!(
        "  yara (its default threads):              {:.1} s; {df:.0} files/s, {dm:.0} MB/s",
        yara_default.as_secs_f64()
    );
    println!(
        "  ratio bannin / yara -p 1: {:.2}x; bannin / yara default: {:.2}x",
        yara_one.as_secs_f64() / hunt_time.as_secs_f64(),
        yara_default.as_secs_f64() / hunt_time.as_secs_f64()
    );
    println!(
        "  CPU against the default cap: {:.1} s of {:.0} s ({}); capped hunts report `cpu` and a partial answer",
        cpu_ms as f64 / 1000.0,
        hunt::DEFAULT_CPU_MS as f64 / 1000.0,
        if cpu_ms <= hunt::DEFAULT_CPU_MS {
            "inside"
        } else {
            "over: the default cap would end this scan early"
        }
    );
    // The answer keeps the hits that fit in 512 KiB and counts the rest:
    // files with hits are compared by count, (rule, file) pairs over the kept files.
    let yara_files: std::collections::BTreeSet<&String> =
        yara_hits.iter().map(|(_, p)| p).collect();
    let kept: std::collections::BTreeSet<&String> = hunt_hits.iter().map(|(_, p)| p).collect();
    let yara_on_kept: std::collections::BTreeSet<_> = yara_hits
        .iter()
        .filter(|(_, p)| kept.contains(p))
        .cloned()
        .collect();
    let only_yara: Vec<_> = yara_on_kept.difference(&hunt_hits).take(5).collect();
    let only_hunt: Vec<_> = hunt_hits.difference(&yara_on_kept).take(5).collect();
    println!(
        "  files with hits: bannin {}, yara {}; on the {} files the answer kept, (rule, file) pairs: bannin {}, yara {}; only yara: {only_yara:?}; only bannin: {only_hunt:?}",
        answer["total"],
        yara_files.len(),
        kept.len(),
        hunt_hits.len(),
        yara_on_kept.len()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(child) = &args.child {
        let secs = args.kernel_events.unwrap_or(10);
        return match child.as_str() {
            "exec-ebpf" => exec_storm_child(true, secs, args.exec_rate),
            "exec-connector" => exec_storm_child(false, secs, args.exec_rate),
            "flow-on" => flow_child(true, secs, args.connection_rate),
            "flow-off" => flow_child(false, secs, args.connection_rate),
            other => bail!("unknown child run {other}"),
        };
    }
    if let Some(secs) = args.kernel_events {
        return kernel_events(secs, args.exec_rate, args.connection_rate);
    }
    if args.spool {
        return spool_bench();
    }
    if let Some(root) = &args.yara {
        return yara_bench(root);
    }
    if let Some(changes) = args.integrity_latency {
        return integrity_latency(changes.max(1));
    }
    proc_sweep()?;
    storm()?;
    package_index();
    binary_size()?;
    if !args.skip_aide {
        aide_comparison()?;
    }
    if !args.skip_idle {
        idle(args.minutes)?;
    }
    Ok(())
}
