//! `bannin-agent`: the endpoint agent.

/// mimalloc: the collector and agent allocate and free many small strings per
/// event; glibc malloc spent a fifth of the writer thread in its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bannin_proto::process::init_logging(cli.log_json, "info");
    let Command::Run { config, check } = cli.command;
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

fn run(config: AgentConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
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
