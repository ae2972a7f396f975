//! `bannin-agent`: the endpoint agent.

// The system allocator, as every Bannin binary: mimalloc committed its arenas
// eagerly, 40 MiB of resident memory for an agent that allocates little
// (BENCHMARKS.md, "Agent footprint").

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bannin_agent::AgentConfig;
use bannin_proto::config::EXIT_CONFIG;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Bannin endpoint agent: watches this host for indicators of compromise and
/// streams them to the collector over mutual TLS, spooling to disk while the
/// collector is unreachable.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Configuration file (TOML); see deploy/agent.example.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Check the configuration and exit (0 when valid, 64 when not).
        #[arg(long)]
        check: bool,
    },
    /// Run every sensor once against the baseline in a state directory and print
    /// the findings and each sensor's health — triage on a host with no
    /// collector. The first run learns the baselines; later runs report what
    /// changed. Exit status: 0 nothing found, 1 findings, 64 bad config.
    Check {
        /// Agent config (TOML); only its sensor settings are used. Default: every default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where baselines are kept between runs.
        #[arg(long, default_value = "/var/lib/bannin/check")]
        state_dir: PathBuf,
        /// Print one JSON document (findings with their attributes, sensors).
        #[arg(long)]
        json: bool,
    },
    /// Enroll this host: make its key here (it never leaves the host), send a
    /// certificate request with an enrollment token to the collector's
    /// enrollment endpoint, and write the key, the certificate the collector
    /// signed and the CA into --dir. The token comes from --token-file or from
    /// BANNIN_ENROLL_TOKEN, never from the command line.
    Enroll {
        /// The collector's enrollment endpoint, HOST:PORT (`[enrollment] listen`).
        #[arg(long)]
        collector: String,
        /// The Bannin CA certificate: the collector must present a certificate it signed.
        #[arg(long)]
        ca: PathBuf,
        /// A file holding the token (`bannin token create` printed it).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The name in the collector's certificate.
        #[arg(long, default_value = "bannin-collector")]
        server_name: String,
        /// Where to write agent.key (0600), agent.pem and ca.pem.
        #[arg(long, default_value = "/etc/bannin/agent")]
        dir: PathBuf,
        /// Replace an existing key and certificate (a new identity).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take a forensic snapshot of this host into a file, without a collector:
    /// volatile state first, then the files you name, in one tar + zstd bundle
    /// whose manifest lists every artifact's SHA-256.
    Snapshot {
        /// Where to write the bundle (default: ./bannin-snapshot-HOST-TIME.tar.zst).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A file to include (absolute path; regular files only); repeatable.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Why, for the manifest.
        #[arg(long, default_value = "")]
        reason: String,
        /// Who is collecting, for the manifest (default: $USER).
        #[arg(long)]
        operator: Option<String>,
        /// Agent config, for the host id in its certificate (default: the hostname).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    bannin_agent::host::memory::limit_arenas();
    let cli = Cli::parse();
    // A check prints its own report: only warnings and errors are logged.
    let level = if matches!(cli.command, Command::Check { .. }) {
        "warn"
    } else {
        "info"
    };
    bannin_proto::process::init_logging(cli.log_json, level);
    let (config, check) = match cli.command {
        Command::Run { config, check } => (config, check),
        Command::Check {
            config,
            state_dir,
            json,
        } => return standalone_check(config.as_deref(), &state_dir, json),
        Command::Enroll {
            collector,
            ca,
            token_file,
            server_name,
            dir,
            force,
            json,
        } => {
            return enroll(
                &collector,
                &ca,
                token_file.as_deref(),
                &server_name,
                dir,
                force,
                json,
            );
        }
        Command::Snapshot {
            out,
            files,
            reason,
            operator,
            config,
        } => {
            return match snapshot(out, files, reason, operator, config) {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("bannin-agent: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let config = match AgentConfig::load(&config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("bannin-agent: {errors}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if check {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bannin-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn standalone_check(
    config: Option<&std::path::Path>,
    state_dir: &std::path::Path,
    json: bool,
) -> ExitCode {
    let config = match AgentConfig::load_standalone(config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("bannin-agent: {errors}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    let report = match bannin_agent::check::check(&config, state_dir) {
        Ok(r) => r,
        Err(error) => {
            eprintln!("bannin-agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("bannin-agent: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        if report.first_run {
            println!(
                "First run: baselines learned in {}; run again to see what changes.",
                state_dir.display()
            );
        }
        for f in &report.findings {
            println!("{:<8} {:<28} {}", f.severity, f.kind, f.summary);
        }
        if report.findings.is_empty() {
            println!("No findings.");
        }
        println!();
        for s in &report.sensors {
            if s.detail.is_empty() {
                println!("sensor {:<16} {}", s.name, s.state);
            } else {
                println!("sensor {:<16} {} — {}", s.name, s.state, s.detail);
            }
        }
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    // Two workers whatever the core count: the agent's async work (the link,
    // the spooler, the sensors' schedules) is light; sweeps run on blocking
    // threads and the kernel-event readers on their own. One worker per core
    // would be 64 threads and their stacks on a 64-core server. Blocking
    // threads idle for 3 s end (tokio's default keeps them 10 s, long enough
    // that sensors sweeping every 5–10 s kept a dozen alive).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(std::time::Duration::from_secs(3))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        // Not on a TaskTracker: the signal watcher only cancels the shutdown token and dies with the runtime.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            bannin_proto::process::shutdown_signal().await;
            tracing::info!("Shutting down");
            signal.cancel();
        });
        bannin_agent::run(config, shutdown)
            .await
            .context("agent failed")
    })
}

fn enroll(
    collector: &str,
    ca: &std::path::Path,
    token_file: Option<&std::path::Path>,
    server_name: &str,
    dir: PathBuf,
    force: bool,
    json: bool,
) -> ExitCode {
    use bannin_agent::enroll;
    let result = enroll::read_token(token_file).and_then(|token| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| enroll::EnrollError::Connect(collector.to_owned(), e.to_string()))?;
        let identity = enroll::Identity { dir: dir.clone() };
        runtime.block_on(enroll::enroll(
            collector,
            server_name,
            ca,
            &token,
            &identity,
            force,
        ))
    });
    match result {
        Ok(enrolled) => {
            let identity = enroll::Identity { dir };
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "host_id": enrolled.host_id,
                        "not_after_unix_ms": enrolled.not_after_unix_ms,
                        "key": identity.key(),
                        "cert": identity.cert(),
                        "ca": identity.ca(),
                    })
                );
            } else {
                println!("enrolled as {}", enrolled.host_id);
                println!(
                    "wrote {} (0600), {} and {}",
                    identity.key().display(),
                    identity.cert().display(),
                    identity.ca().display()
                );
                println!(
                    "in the agent's config: [tls] ca = {:?}, cert = {:?}, key = {:?}",
                    identity.ca().display().to_string(),
                    identity.cert().display().to_string(),
                    identity.key().display().to_string()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bannin-agent: enrollment failed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn snapshot(
    out: Option<PathBuf>,
    files: Vec<String>,
    reason: String,
    operator: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use bannin_agent::response::snapshot;
    let (host_id, root) = match config {
        Some(path) => match AgentConfig::load(&path) {
            Ok(c) => {
                let material =
                    bannin_proto::tls::TlsMaterial::load(&c.tls).context("agent certificate")?;
                let id = match material.own_identity()? {
                    bannin_proto::identity::PeerIdentity::Agent(h) => h.to_string(),
                    other => anyhow::bail!("the certificate is for {other}, not an agent"),
                };
                (id, c.root)
            }
            Err(errors) => {
                eprintln!("bannin-agent: {errors}");
                return Ok(ExitCode::from(EXIT_CONFIG as u8));
            }
        },
        None => (
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
            PathBuf::from("/"),
        ),
    };
    let out = out.unwrap_or_else(|| snapshot::default_name(&host_id));
    // The bundle holds the host's secrets (sudoers, keys, logs): owner only.
    let file = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().write(true).create_new(true),
        0o600,
    )
    .open(&out)
    .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
    let request = snapshot::Request {
        command_id: String::new(),
        // The operator named in a standalone snapshot manifest defaults to the user.
        #[allow(clippy::disallowed_methods)]
        operator: operator.unwrap_or_else(|| std::env::var("USER").unwrap_or_default()),
        reason,
        files,
        max_file_bytes: snapshot::DEFAULT_MAX_FILE_BYTES,
        max_bundle_bytes: snapshot::DEFAULT_MAX_BUNDLE_BYTES,
        integrity_baselines: None,
    };
    eprintln!(
        "Collecting a snapshot of {host_id} into {} …",
        out.display()
    );
    let manifest = snapshot::collect(
        &bannin_agent::sensors::HostRoot(root),
        &host_id,
        request,
        std::io::BufWriter::new(file),
    )
    .context("writing the bundle")?;
    let bytes: u64 = manifest.artifacts.iter().map(|a| a.size).sum();
    println!(
        "{}: {} artifacts, {bytes} bytes before compression",
        out.display(),
        manifest.artifacts.len()
    );
    for s in &manifest.skipped {
        println!("  not collected: {}: {}", s.source, s.error);
    }
    println!(
        "Verify a copy with: tar --zstd -xOf {} manifest.json",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
