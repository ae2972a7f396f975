//! `bannin`: the operator CLI, and `bannin up`.
//!
//! # Layout
//!
//! - [`args`]: the command line (clap) and its value parsers.
//! - [`cmd`]: one file per command family, and the dispatch.
//! - [`client`]: the operator config and the mTLS connection to the collector.
//! - [`output`]: text tables and JSON documents.
//! - [`console`]: `bannin console`, the web console on loopback.
//! - [`up`]: `bannin up`, a collector and an agent in one process on a dev PKI.

// The system allocator, as the collector's (collector/src/main.rs): `bannin up`
// runs a collector in this process.

mod args;
mod client;
mod cmd;
mod console;
mod output;
mod up;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bannin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bannin: {error:#}");
            ExitCode::FAILURE
        }
    }
}
