//! `bannin-collector`: serve agents and operators, and manage the PKI.

// The system allocator. mimalloc was the global allocator while glibc's free
// lists were a fifth of the writer thread; measured again (BENCHMARKS.md,
// "Reconnect storm"), glibc ingests as fast or faster and holds an idle agent's
// connection in 46 KiB instead of 66.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bannin_collector::CollectorConfig;
use bannin_collector::pki::{DEFAULT_SERVER_NAME, PkiDir};
use bannin_proto::config::EXIT_CONFIG;
use bannin_proto::identity::{CollectorName, HostId, OperatorName, PeerIdentity};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Bannin collector: receives agents' telemetry over mutual TLS, keeps a durable
/// findings queue, and serves operators.
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
    /// Run the collector.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the CA and certificates.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Cluster mode (several collectors over NATS JetStream).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Write a whole cluster into DIR: a PKI with every certificate, the NATS
    /// servers' configurations (admitting only the collectors), the
    /// collectors' collector.toml, the admin's operator.toml, and `start` and
    /// `stop` scripts that run it on this machine.
    ///
    /// A local demo in three commands:
    ///   bannin-collector cluster init --dir /tmp/bannin-cluster
    ///   /tmp/bannin-cluster/start
    ///   bannin --config /tmp/bannin-cluster/operator.toml cluster
    ///
    /// For machines of their own, copy each server's and collector's files
    /// there and change the addresses (docs/cluster.md).
    Init {
        /// Directory to write (created).
        #[arg(long)]
        dir: PathBuf,
        /// The collectors' names, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "a,b")]
        collectors: Vec<String>,
        /// The NATS servers' names, comma-separated (1, or 3 for failover).
        #[arg(long, value_delimiter = ',', default_value = "n1,n2,n3")]
        nats: Vec<String>,
        /// Address everything listens on.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// First port: NATS clients from it, routes from +100, monitoring
        /// from +200, collectors from +300.
        #[arg(long, default_value_t = 14222)]
        base_port: u16,
        /// The admin operator (their certificate in DIR/pki/operators/).
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create a CA and the collector's server certificate in DIR.
    Init {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// DNS name for the collector's certificate (repeatable). Default: bannin-collector, localhost.
        #[arg(long = "name")]
        names: Vec<String>,
        /// IP address for the collector's certificate (repeatable). Default: 127.0.0.1, ::1.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Also issue the first operator's certificate for NAME; add NAME to
        /// `[operators] bootstrap_admins` so the collector makes them admin.
        #[arg(long, value_name = "NAME")]
        admin: Option<String>,
    },
    /// Issue a client certificate signed by the CA in DIR.
    Issue {
        /// PKI directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        #[command(subcommand)]
        who: IssueWho,
    },
}

#[derive(Subcommand)]
enum IssueWho {
    /// An agent certificate for HOST_ID.
    Agent {
        /// Host id: ASCII letters, digits, '.', '_' and '-'.
        host_id: String,
    },
    /// An operator certificate for NAME.
    Operator {
        /// Operator name.
        name: String,
    },
    /// A cluster collector's certificate for NAME (`[cluster] name`): its
    /// client certificate to NATS (`[cluster.tls]`; the shipped NATS
    /// configuration admits only collectors' certificates) and the key that
    /// signs what it publishes to the cluster log.
    Collector {
        /// The collector's name in the cluster.
        name: String,
    },
    /// A NATS server's certificate for NAME (its `server_name`), for clients
    /// and for the routes between the servers (server and client use).
    Nats {
        /// The server's name: a DNS name of the certificate.
        name: String,
        /// Another DNS name the server is reached by (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// An IP address the server is reached by (repeatable). Default: 127.0.0.1.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bannin_proto::process::init_logging(cli.log_json, "info");
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bannin-collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = match CollectorConfig::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("bannin-collector: {errors}");
                    return Ok(ExitCode::from(EXIT_CONFIG as u8));
                }
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("binding {}", config.listen))?;
                let shutdown = CancellationToken::new();
                let signal = shutdown.clone();
                // Not on a TaskTracker: the signal watcher only cancels the shutdown token and dies with the runtime.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    bannin_proto::process::shutdown_signal().await;
                    tracing::info!("Shutting down");
                    signal.cancel();
                });
                bannin_collector::serve(config, listener, shutdown)
                    .await
                    .context("collector failed")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki {
            command:
                PkiCommand::Init {
                    dir,
                    mut names,
                    mut ips,
                    force,
                    admin,
                },
        } => {
            let admin = admin
                .map(|a| OperatorName::new(a).context("invalid operator name for --admin"))
                .transpose()?;
            if names.is_empty() {
                names = vec![DEFAULT_SERVER_NAME.into(), "localhost".into()];
            }
            if ips.is_empty() {
                ips = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
            }
            let pki = PkiDir(dir);
            pki.init(&names, &ips, force)?;
            println!("CA:        {}", pki.ca_cert().display());
            println!(
                "collector: {} (names: {})",
                pki.server_cert().display(),
                names.join(", ")
            );
            if let Some(name) = admin {
                let identity = PeerIdentity::Operator(name.clone());
                let (cert, key) = pki.issue(&identity, 365, force)?;
                println!("{identity}: {} {}", cert.display(), key.display());
                println!(
                    "first admin: put this in collector.toml so {name} is admin on the first start:\n  [operators]\n  bootstrap_admins = [\"{name}\"]"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster {
            command:
                ClusterCommand::Init {
                    dir,
                    collectors,
                    nats,
                    host,
                    base_port,
                    admin,
                    force,
                },
        } => {
            let plan = bannin_collector::cluster::init::InitPlan {
                collectors: collectors
                    .iter()
                    .map(|c| CollectorName::new(c.as_str()))
                    .collect::<Result<_, _>>()
                    .context("invalid collector name")?,
                nats,
                host,
                base_port,
                admin: OperatorName::new(admin).context("invalid operator name")?,
                collector_bin: std::env::current_exe().context("finding this program's path")?,
                force,
                dir: std::path::absolute(&dir).context("the directory's path")?,
            };
            let written = plan.write()?;
            println!("Written in {}:", plan.dir.display());
            for f in written.nats.iter().chain(&written.collectors) {
                println!("  {}", f.display());
            }
            println!("  {}", written.operator.display());
            println!(
                "Start it on this machine:  {}\nThen:                      bannin --config {} cluster\nStop it:                   {}",
                written.start.display(),
                written.operator.display(),
                written.stop.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Pki {
            command:
                PkiCommand::Issue {
                    dir,
                    days,
                    force,
                    who,
                },
        } => {
            anyhow::ensure!(
                (1..=3650).contains(&days),
                "--days must be between 1 and 3650"
            );
            let identity = match who {
                IssueWho::Agent { host_id } => {
                    PeerIdentity::Agent(HostId::new(host_id).context("invalid host id")?)
                }
                IssueWho::Operator { name } => PeerIdentity::Operator(
                    OperatorName::new(name).context("invalid operator name")?,
                ),
                IssueWho::Collector { name } => PeerIdentity::Collector(
                    CollectorName::new(name).context("invalid collector name")?,
                ),
                IssueWho::Nats { name, dns, ips } => {
                    anyhow::ensure!(
                        !name.is_empty()
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                        "invalid server name {name:?}: a DNS name (letters, digits, '-', '.', '_')"
                    );
                    let ips = if ips.is_empty() {
                        vec![IpAddr::from([127, 0, 0, 1])]
                    } else {
                        ips
                    };
                    let (cert, key) =
                        PkiDir(dir).issue_nats(name.as_str(), &dns, &ips, days, force)?;
                    println!("NATS server {name}: {} {}", cert.display(), key.display());
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let (cert, key) = PkiDir(dir).issue(&identity, days, force)?;
            println!("{identity}: {} {}", cert.display(), key.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
