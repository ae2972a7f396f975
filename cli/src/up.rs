//! `bannin up`: a collector and an agent for this machine in one process, over
//! real mTLS on 127.0.0.1, on a dev PKI kept in the data directory.
//!
//! The first run creates, in `--data` (default `./bannin-data`): `pki/` (CA,
//! collector, operator and agent certificates), `collector.toml`, `agent.toml`
//! and `operator.toml`. Later runs reuse them, so the store, the spool and the
//! operator identity survive restarts. Nothing here is special-cased: the
//! configs go through the same loaders as the standalone binaries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bannin_agent::{AgentConfig, HealthBoard};
use bannin_collector::CollectorConfig;
use bannin_collector::pki::{PkiDir, write_file};
use bannin_proto::identity::{HostId, OperatorName, PeerIdentity};
use bannin_proto::v1;
use clap::Args;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::client::OperatorConfig;
use crate::output::{finding_json, finding_line};

/// Options of `bannin up`.
#[derive(Args)]
pub struct UpArgs {
    /// Where the dev PKI, configs, store and spool live.
    #[arg(long, default_value = "bannin-data")]
    data: PathBuf,
    /// Address of the collector (used on the first run; later runs read collector.toml).
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// Print findings as JSON lines.
    #[arg(long)]
    json: bool,
    /// How long after the agent's very first start its baseline sensors learn
    /// quietly (first run only; later runs read agent.toml). 0 reports from the
    /// first minute: what the package database knows is never reported either way.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    learn_secs: u64,
    /// Also serve the web console (`bannin console`) as the dev operator, on
    /// ADDR (default 127.0.0.1:0, a free loopback port); its one-time login
    /// URL is printed with the rest.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    console: Option<SocketAddr>,
}

/// Runs `bannin up` until Ctrl-C.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // Sensor health is printed below as a summary; its log lines would repeat it.
    bannin_proto::process::init_logging(false, "warn,bannin_agent::sensors=error");
    let data = absolute(&args.data)?;
    let host = prepare(&data, args.listen, args.learn_secs).context("preparing the dev setup")?;

    let collector_config = match CollectorConfig::load(&data.join("collector.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bannin up: {e}");
            return Ok(ExitCode::from(bannin_proto::config::EXIT_CONFIG as u8));
        }
    };
    let agent_config = match AgentConfig::load(&data.join("agent.toml")) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bannin up: {e}");
            return Ok(ExitCode::from(bannin_proto::config::EXIT_CONFIG as u8));
        }
    };
    let listen = collector_config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen}: is another `bannin up` or collector running? (edit {})",
                data.join("collector.toml").display()
            )
        })?;

    let shutdown = CancellationToken::new();
    // Not on a TaskTracker: `bannin up` joins both halves after cancelling their token.
    #[allow(clippy::disallowed_methods)]
    let collector = tokio::spawn(bannin_collector::serve(
        collector_config,
        listener,
        shutdown.child_token(),
    ));
    let board = HealthBoard::default();
    // Not on a TaskTracker: `bannin up` joins both halves after cancelling their token.
    #[allow(clippy::disallowed_methods)]
    let agent = tokio::spawn(bannin_agent::run_with_health(
        agent_config,
        board.clone(),
        shutdown.child_token(),
    ));

    let operator = OperatorConfig::load(&data.join("operator.toml"))?;
    eprintln!("Bannin is up.");
    eprintln!(
        "  collector  {listen} (mTLS; store in {})",
        data.join("store").display()
    );
    eprintln!(
        "  agent      host id {host}, spool in {}",
        data.join("spool").display()
    );
    eprintln!("  operator   {}", data.join("operator.toml").display());
    let console = match args.console {
        None => None,
        Some(listen) => {
            let client = connect_when_up(&operator).await?;
            let bound = crate::console::bind(listen, false, client)
                .await
                .context("starting the console")?;
            eprintln!("  console    {} (one-time login link)", bound.login_url()?);
            let stop = shutdown.child_token();
            Some(tokio_util::task::AbortOnDropHandle::new(
                // Ends with `bannin up` (the token below is cancelled on Ctrl-C).
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(bound.serve(async move { stop.cancelled().await })),
            ))
        }
    };
    eprintln!("  In another terminal: `bannin hosts`, `bannin findings`, `bannin events {host}`.");
    if !bannin_agent::sensors::running_as_root() {
        eprintln!("  Not running as root: some sensors see less (listed below as they start).");
    }
    eprintln!("Following findings; Ctrl-C stops both.\n");

    let follow = follow_findings(operator, args.json, board);
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; }
        r = follow => { r?; }
    }
    eprintln!("\nStopping…");
    shutdown.cancel();
    if let Some(console) = console {
        console.await.context("console task")??;
    }
    let (a, c) = tokio::join!(agent, collector);
    a.context("agent task")?.context("agent")?;
    c.context("collector task")?.context("collector")?;
    eprintln!("Stopped cleanly.");
    Ok(ExitCode::SUCCESS)
}

/// Connects to the collector starting in this process (it gets five seconds).
async fn connect_when_up(operator: &OperatorConfig) -> anyhow::Result<crate::cmd::Client> {
    let mut last = None;
    for _ in 0..50 {
        match operator.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
        .context("the collector did not come up")
}

async fn follow_findings(
    operator: OperatorConfig,
    json: bool,
    board: HealthBoard,
) -> anyhow::Result<()> {
    let mut client = connect_when_up(&operator).await?;
    let mut health_shown = false;
    let mut stream = client
        .follow_findings(v1::FollowFindingsRequest::default())
        .await
        .context("following findings")?
        .into_inner();
    let mut health_tick = tokio::time::interval(Duration::from_secs(3));
    health_tick.tick().await;
    loop {
        tokio::select! {
            f = stream.next() => {
                let Some(f) = f else { anyhow::bail!("the collector ended the findings stream") };
                let f = f.context("findings stream")?;
                if json { println!("{}", finding_json(&f)); } else { println!("{}", finding_line(&f)); }
            }
            _ = health_tick.tick(), if !health_shown => {
                health_shown = true;
                for (name, health) in board.snapshot() {
                    match health {
                        bannin_agent::sensors::Health::Ok => eprintln!("  sensor {name}: ok"),
                        bannin_agent::sensors::Health::Working(how) => eprintln!("  sensor {name}: ok ({how})"),
                        bannin_agent::sensors::Health::Degraded(why) => eprintln!("  sensor {name}: DEGRADED: {why}"),
                        bannin_agent::sensors::Health::Failed(why) => eprintln!("  sensor {name}: FAILED: {why}"),
                        bannin_agent::sensors::Health::Disabled => eprintln!("  sensor {name}: disabled"),
                        bannin_agent::sensors::Health::Learning(until) => {
                            eprintln!("  baselines: learning quietly until {until} ([sensors] learn_secs)");
                            eprintln!("    until then, what is only new to this host (listening ports, binaries not from a package, services, devices) is learned, not raised;");
                            eprintln!("    hidden and odd file names, dropped executables, integrity changes, reverse shells and log indicators are raised at once.");
                            eprintln!("    to see everything now: stop, then `bannin up --learn-secs 0 --data bannin-demo` (a fresh agent; the first run's choice sticks)");
                        }
                    }
                }
            }
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

/// This machine's host id: its hostname with anything outside `[A-Za-z0-9._-]` replaced.
fn local_host_id() -> HostId {
    let cleaned: String = kernel_hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    HostId::new(cleaned.trim_start_matches(['.', '-']))
        .unwrap_or_else(|_| HostId::new("localhost").expect("\"localhost\" is a valid host id"))
}

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Creates what is missing in `data`; returns the local agent's host id.
fn prepare(data: &Path, listen: SocketAddr, learn_secs: u64) -> anyhow::Result<HostId> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let pki = PkiDir(data.join("pki"));
    if !pki.ca_cert().exists() {
        pki.init(
            &["bannin-collector".into(), "localhost".into()],
            &[listen.ip()],
            false,
        )?;
        eprintln!("Created a dev PKI in {}", pki.0.display());
    }
    let operator_toml = data.join("operator.toml");
    if !operator_toml.exists() {
        let name = OperatorName::new(
            // The dev PKI names the first operator after the user running `bannin up`.
            #[allow(clippy::disallowed_methods)]
            std::env::var("USER")
                .ok()
                .filter(|u| OperatorName::new(u.as_str()).is_ok())
                .unwrap_or_else(|| "admin".into()),
        )?;
        let id = PeerIdentity::Operator(name.clone());
        let (cert, key) = pki.client(&id);
        if !cert.exists() {
            pki.issue(&id, 365, false)?;
        }
        let config = OperatorConfig {
            collector: listen.to_string(),
            server_name: "bannin-collector".into(),
            ca: relative(data, &pki.ca_cert()),
            cert: relative(data, &cert),
            key: relative(data, &key),
        };
        write_file(&operator_toml, &toml::to_string(&config)?, 0o600, false)?;
    }
    let agent_toml = data.join("agent.toml");
    let host = if agent_toml.exists() {
        let text = std::fs::read_to_string(&agent_toml)?;
        let value: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}", agent_toml.display()))?;
        match value.get("host_id").and_then(|v| v.as_str()) {
            Some(h) => HostId::new(h)?,
            None => local_host_id(),
        }
    } else {
        let host = local_host_id();
        let id = PeerIdentity::Agent(host.clone());
        let (cert, key) = pki.client(&id);
        if !cert.exists() {
            pki.issue(&id, 365, false)?;
        }
        let text = format!(
            r#"# Agent for this machine, written by `bannin up`. See deploy/agent.example.toml.
host_id = "{host}"

[collector]
address = "{listen}"
server_name = "bannin-collector"

[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"

[spool]
dir = "spool"

[link]
heartbeat_secs = 10

[sensors]
learn_secs = {learn_secs}

[sensors.net_listener]
interval_secs = 5

[sensors.file_odd_name]
interval_secs = 10
# This directory (the collector's store and evidence, this agent's spool) is
# Bannin's own: a stored snapshot is not an archive dropped on the host.
exclude = [{own}]

[response]
# This agent runs on the machine you operate from: isolating it needs
# `bannin isolate --yes-isolate-this-machine`.
local_operator = true
"#,
            ca = relative(data, &pki.ca_cert()).display(),
            cert = relative(data, &cert).display(),
            key = relative(data, &key).display(),
            own = toml::Value::String(
                std::fs::canonicalize(data)
                    .unwrap_or_else(|_| data.to_owned())
                    .display()
                    .to_string()
            ),
        );
        write_file(&agent_toml, &text, 0o600, false)?;
        host
    };
    let collector_toml = data.join("collector.toml");
    if !collector_toml.exists() {
        let admin = OperatorConfig::load(&operator_toml)?
            .cert
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("admin")
            .to_owned();
        let text = format!(
            r#"# Collector for `bannin up`. See deploy/collector.example.toml.
listen = "{listen}"
data_dir = "."

[tls]
ca = "pki/ca.pem"
cert = "pki/collector.pem"
key = "pki/collector.key"

[operators]
# Made admin on the first start (when no operator is registered yet).
bootstrap_admins = ["{admin}"]
"#
        );
        write_file(&collector_toml, &text, 0o600, false)?;
    }
    Ok(host)
}

fn relative(base: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(base)
        .map(Path::to_owned)
        .unwrap_or_else(|_| p.to_owned())
}
