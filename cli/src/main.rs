//! `bannin`: the operator CLI, and `bannin up`.

/// mimalloc: the collector and agent allocate and free many small strings per
/// event; glibc malloc spent a fifth of the writer thread in its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod output;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;
use clap::{Parser, Subcommand};
use tokio_stream::StreamExt;

use crate::client::{OperatorConfig, config_path};
use crate::output::{event_json, finding_json, finding_line, host_json, short_time};

/// Bannin operator CLI: watch findings, triage hosts, and run a local
/// collector plus agent with `bannin up`.
///
/// The collector address and the operator certificate come from --config FILE,
/// else $BANNIN_CONFIG, else ./bannin-data/operator.toml (written by `bannin up`).
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Operator config (TOML: collector, server_name, ca, cert, key).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text (lists as one array; --follow as JSON lines).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a collector and an agent for this machine, on a dev PKI in --data,
    /// and follow findings until Ctrl-C.
    Up(up::UpArgs),
    /// List hosts with their inventory, liveness, labels and sensor health.
    Hosts,
    /// Change one host: `bannin host label web-07 site="Osaka, JP" zone=PCI`,
    /// `bannin host revoke web-07 --reason "key copied"`.
    Host {
        #[command(subcommand)]
        action: HostAction,
    },
    /// Enrollment tokens: `bannin token create --uses 50 --expires 7d --label site=osaka`.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// List findings, oldest first; --follow keeps printing new ones.
    Findings {
        /// Keep running and print findings as they arrive.
        #[arg(long, short)]
        follow: bool,
        /// Only findings with an id greater than this.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Most findings to list (without --follow).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// Show or change one finding.
    Finding {
        #[command(subcommand)]
        action: FindingAction,
    },
    /// Cut a host off the network, except its channel to the collector, DHCP, its
    /// configured DNS resolvers and addresses you allow. Delivered when the host
    /// next connects if it is offline now.
    Isolate {
        /// Host id.
        host: String,
        /// Why (recorded in the action log).
        #[arg(long)]
        reason: String,
        /// An address or network the host may still reach (a jump host); repeatable.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Needed to isolate the machine `bannin up` runs on (the one you are using).
        #[arg(long)]
        yes_isolate_this_machine: bool,
        #[command(flatten)]
        send: SendOptions,
    },
    /// Undo `isolate`: the host removes exactly its isolation table.
    Release {
        /// Host id.
        host: String,
        /// Why (recorded in the action log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        send: SendOptions,
    },
    /// The rules in force: severity overrides, suppressions with their hits and
    /// expiry, and the cross-host correlation rules with what they raised.
    /// Rules are set in the collector's configuration (`[[suppress]]`,
    /// `[correlation]`, `[findings.severity]`).
    Rules,
    /// Export sinks (`[[sink]]` in the collector's config): each one's target,
    /// cursor, lag behind the newest finding, last error and last delivery.
    Sinks,
    /// Make a host's sensors learn their baselines again (after planned changes
    /// such as an upgrade): the next sweep learns quietly, later ones report
    /// changes against the new baseline. Without --sensor, every baseline sensor.
    Relearn {
        /// Host id.
        host: String,
        /// Only this sensor (process, file_integrity, accounts, system, hardware,
        /// net_listener, net_connection, net_interface, resources, file_odd_name).
        #[arg(long)]
        sensor: Option<String>,
        /// Why (recorded in the action log).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        send: SendOptions,
    },
    /// Ask a host's agent to answer (round trip through the command queue).
    Ping {
        /// Host id.
        host: String,
        #[command(flatten)]
        send: SendOptions,
    },
    /// Ask a host a read-only question and get the answer within seconds:
    /// processes, connections, listeners, logins, users, services,
    /// stat PATH, hash PATH (SHA-256), ls PATH. Output is bounded (5,000 rows, 1 MiB).
    Triage {
        /// Host id.
        host: String,
        /// The question.
        #[arg(value_parser = ["processes", "connections", "listeners", "logins", "users", "services", "stat", "hash", "ls"])]
        question: String,
        /// Absolute path, for stat, hash and ls.
        path: Option<String>,
        #[command(flatten)]
        send: SendOptions,
    },
    /// Take a forensic snapshot of a host: volatile state first, then the files
    /// you name, streamed to the collector, which verifies every hash and the
    /// manifest before it stores the evidence.
    Snapshot {
        /// Host id.
        host: String,
        /// A file to include (absolute path, regular files only); repeatable.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Why (recorded in the manifest and the action log).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        send: SendOptions,
    },
    /// The action log: every command, result and expiry, hash-chained.
    /// `bannin actions verify` walks the chain and names the first entry that no
    /// longer matches.
    Actions {
        /// `verify` to check the chain instead of listing.
        #[arg(value_parser = ["verify"])]
        verify: Option<String>,
        /// Only entries about this host.
        #[arg(long)]
        host: Option<String>,
        /// Only entries about this incident and its affected hosts.
        #[arg(long)]
        incident: Option<u64>,
    },
    /// Operators and their roles (admin only): viewer reads; responder also
    /// isolates, releases, snapshots, triages and works findings; admin also
    /// manages operators.
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
    },
    /// Incidents: findings grouped under a title, a severity (critical, high,
    /// medium, low) and a status (open → contained → eradicated → recovered → closed).
    Incident {
        #[command(subcommand)]
        action: IncidentAction,
    },
    /// Evidence held by the collector and its chain of custody.
    Evidence {
        #[command(subcommand)]
        action: EvidenceAction,
    },
    /// The command queue: what was sent to which host, by whom, and what came of it.
    Commands {
        /// Only this host's commands.
        #[arg(long)]
        host: Option<String>,
    },
    /// Raw telemetry the collector keeps for a host (for triage).
    Events {
        /// Host id.
        host: String,
        /// Only events observed since TIME: RFC 3339 (2026-11-25T10:00:00Z) or an age (30s, 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only events of this kind (e.g. net.new_listener), or of a family (net.*).
        #[arg(long)]
        kind: Option<String>,
        /// Most events to list.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

/// Options shared by commands sent to hosts.
#[derive(clap::Args)]
struct SendOptions {
    /// Return once the command is queued instead of waiting for the host's answer.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
    /// Drop the command if the host has not picked it up within this many seconds (default 7 days).
    #[arg(long, default_value_t = 0)]
    expires_secs: u32,
}

#[derive(Subcommand)]
enum IncidentAction {
    /// Open an incident.
    Open {
        /// Title.
        #[arg(long)]
        title: String,
        /// critical, high, medium or low.
        #[arg(long, value_parser = ["critical", "high", "medium", "low"])]
        severity: String,
        /// Incident commander (default: you).
        #[arg(long, default_value = "")]
        commander: String,
        /// A finding to attach; repeatable.
        #[arg(long = "finding")]
        findings: Vec<u64>,
    },
    /// List incidents.
    List,
    /// Show an incident: affected hosts and its timeline.
    Show {
        /// Incident id.
        id: u64,
    },
    /// Attach findings.
    AddFinding {
        /// Incident id.
        id: u64,
        /// Finding ids.
        #[arg(required = true)]
        findings: Vec<u64>,
    },
    /// Add a note.
    Note {
        /// Incident id.
        id: u64,
        /// The note.
        text: String,
    },
    /// Change the severity.
    SetSeverity {
        /// Incident id.
        id: u64,
        /// critical, high, medium or low.
        #[arg(value_parser = ["critical", "high", "medium", "low"])]
        severity: String,
    },
    /// Move the status forward.
    SetStatus {
        /// Incident id.
        id: u64,
        /// open, contained, eradicated, recovered or closed.
        #[arg(value_parser = ["open", "contained", "eradicated", "recovered", "closed"])]
        status: String,
    },
    /// Close the incident.
    Close {
        /// Incident id.
        id: u64,
    },
    /// The scoping brief, in Markdown (--json: as a document): the first
    /// indicator (what, from which source, seen by whom and when), the status
    /// on the guidance's scale, the affected assets with OS, services,
    /// applications and location labels, the actions already taken, the
    /// network picture among affected hosts and what they reach, and the sites.
    Brief {
        /// Incident id.
        id: u64,
        /// Write the report to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The lessons-learned review, in Markdown (--json: as a document): the
    /// timeline, time to detect (first indicator → opened) and to contain
    /// (opened → first isolation), and the guidance's eight review questions
    /// filled in where the data answers them.
    Review {
        /// Incident id.
        id: u64,
        /// Write the report to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum HostAction {
    /// Set or remove a host's labels (admin). Operator labels win over the ones
    /// the agent reports from its config; the scoping brief reads the location
    /// from site, zone, location, city, country and region.
    Label {
        /// Host id.
        host: String,
        /// KEY=VALUE to set; repeatable.
        #[arg(value_parser = parse_label)]
        set: Vec<(String, String)>,
        /// A label key to remove; repeatable.
        #[arg(long)]
        remove: Vec<String>,
    },
    /// Revoke a host's identity (admin): its new connections are refused at
    /// once and its live stream is cut within seconds. Re-enrolling the same
    /// key is refused too; a cleaned machine enrolls again with a new key.
    Revoke {
        /// Host id.
        host: String,
        /// Why (recorded in the action log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make an enrollment token (admin). The secret is printed once: hand it to
    /// `bannin-agent enroll` in a file or in BANNIN_ENROLL_TOKEN, never on a
    /// command line.
    Create {
        /// How many hosts may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it works: 30m, 12h, 7d (at most a year).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        expires: u64,
        /// KEY=VALUE labels every host enrolled with it gets; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// What it is for.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List tokens with their uses, expiry, state and the hosts they enrolled.
    List,
    /// Revoke a token: no more enrollments with it.
    Revoke {
        /// Token id (t1, t2, …).
        id: String,
    },
}

/// 30s, 15m, 12h, 7d → seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, like 30m, 12h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    Ok(n.saturating_mul(unit))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    bannin_proto::labels::parse_assignment(text)
}

#[derive(Subcommand)]
enum EvidenceAction {
    /// List evidence.
    List,
    /// Show one item: its record, manifest and custody events (the viewing is recorded).
    Show {
        /// Evidence id (e1, e2, …).
        id: String,
    },
    /// Re-hash the stored bytes and check them against the record and the manifest.
    Verify {
        /// Evidence id.
        id: String,
    },
    /// Write the bundle, its manifest, its custody record, SHA256SUMS and a README for a
    /// third party into DIR (admin).
    Export {
        /// Evidence id.
        id: String,
        /// Directory to write into (created if missing).
        #[arg(long)]
        to: PathBuf,
        /// Who receives it.
        #[arg(long)]
        recipient: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Dispose of evidence: the collector's copy is removed and the method recorded (admin).
    Dispose {
        /// Evidence id.
        id: String,
        /// wiped, returned or transferred.
        #[arg(long, value_parser = ["wiped", "returned", "transferred"])]
        method: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum OperatorAction {
    /// Register an operator (their certificate is issued with `bannin-collector pki issue operator NAME`).
    Add {
        /// Name, as in their certificate.
        name: String,
        /// viewer, responder or admin.
        #[arg(long, value_parser = ["viewer", "responder", "admin"])]
        role: String,
    },
    /// List operators.
    List,
    /// Change an operator's role (and enable them).
    SetRole {
        /// Name.
        name: String,
        /// viewer, responder or admin.
        #[arg(value_parser = ["viewer", "responder", "admin"])]
        role: String,
    },
    /// Disable an operator: every call of theirs is refused from now on.
    Disable {
        /// Name.
        name: String,
    },
}

#[derive(Subcommand)]
enum FindingAction {
    /// Show one finding with its history, and for a correlated finding the
    /// findings it was built from.
    Show {
        /// Finding id.
        id: u64,
    },
    /// Record what people report, as a finding on the host it concerns:
    /// report.external (a third party told you: a CERT, an ISP, a customer),
    /// report.threat (a threat against the organisation), report.user (users
    /// reporting outages or strange behaviour).
    Add {
        /// Host id.
        #[arg(long)]
        host: String,
        /// report.external, report.threat or report.user.
        #[arg(long, value_parser = ["report.external", "report.threat", "report.user"])]
        kind: String,
        /// info, low, medium, high or critical.
        #[arg(long, value_parser = ["info", "low", "medium", "high", "critical"])]
        severity: String,
        /// What was reported.
        #[arg(long)]
        text: String,
        /// Who reported it (a person or an organisation).
        #[arg(long, default_value = "")]
        reporter: String,
    },
    /// Acknowledge: you are on it.
    Ack {
        /// Finding id.
        id: u64,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Resolve: dealt with.
    Resolve {
        /// Finding id.
        id: u64,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Mark as a false positive.
    FalsePositive {
        /// Finding id.
        id: u64,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        note: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bannin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bannin: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Up(args) = cli.command {
        return up::run(args).await;
    }
    bannin_proto::process::init_logging(false, "warn");
    let config = OperatorConfig::load(&config_path(cli.config))?;
    let mut client = config.connect().await?;
    match cli.command {
        Command::Up(_) => unreachable!("handled above"),
        Command::Hosts => {
            let hosts = client
                .list_hosts(v1::ListHostsRequest {})
                .await
                .context("listing hosts")?
                .into_inner()
                .hosts;
            if cli.json {
                print_json(&hosts.iter().map(host_json).collect::<Vec<_>>())?;
            } else {
                println!(
                    "{:<24} {:<8} {:<18} {:<20} {:<19} {:<10} SENSORS",
                    "HOST", "STATUS", "ISOLATION", "HOSTNAME", "LAST SEEN (UTC)", "ACKED"
                );
                for h in hosts {
                    let degraded: Vec<String> = h
                        .sensors
                        .iter()
                        .filter(|s| s.state != "ok")
                        .map(|s| format!("{} {}", s.name, s.state))
                        .collect();
                    let sensors = if degraded.is_empty() {
                        format!("{} ok", h.sensors.len())
                    } else {
                        degraded.join(", ")
                    };
                    println!(
                        "{:<24} {:<8} {:<18} {:<20} {:<19} {:<10} {}",
                        h.host_id,
                        if h.online { "online" } else { "offline" },
                        h.isolation,
                        h.hostname,
                        short_time(h.last_seen_unix_ms),
                        h.acked_sequence,
                        sensors
                    );
                    if !h.labels.is_empty() {
                        let labels: Vec<String> =
                            h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!("{:<24} labels: {}", "", labels.join(", "));
                    }
                }
            }
        }
        Command::Findings {
            follow,
            since,
            limit,
        } => {
            if follow {
                let mut stream = client
                    .follow_findings(v1::FollowFindingsRequest { since_id: since })
                    .await
                    .context("following findings")?
                    .into_inner();
                while let Some(f) = stream.next().await {
                    let f = f.context("finding stream")?;
                    if cli.json {
                        println!("{}", finding_json(&f));
                    } else {
                        println!("{}", finding_line(&f));
                    }
                }
            } else {
                let findings = client
                    .list_findings(v1::ListFindingsRequest {
                        since_id: since,
                        limit,
                    })
                    .await
                    .context("listing findings")?
                    .into_inner()
                    .findings;
                if cli.json {
                    let labels = host_labels(&mut client).await;
                    print_json(
                        &findings
                            .iter()
                            .map(|f| with_labels(finding_json(f), &labels, &f.host_id))
                            .collect::<Vec<_>>(),
                    )?;
                } else {
                    for f in &findings {
                        println!("{}", finding_line(f));
                    }
                    if findings.is_empty() {
                        eprintln!("no findings");
                    }
                }
            }
        }
        Command::Finding { action } => {
            let (id, state, note) = match action {
                FindingAction::Show { id } => {
                    let found = client
                        .list_findings(v1::ListFindingsRequest {
                            since_id: id.saturating_sub(1),
                            limit: 1,
                        })
                        .await
                        .context("reading finding")?
                        .into_inner()
                        .findings
                        .into_iter()
                        .find(|f| f.id == id)
                        .with_context(|| format!("no finding {id}"))?;
                    let chain = correlated_chain(&mut client, &found).await?;
                    let labels = host_labels(&mut client).await;
                    if cli.json {
                        let mut doc = with_labels(finding_json(&found), &labels, &found.host_id);
                        doc["correlated"] =
                            serde_json::Value::Array(chain.iter().map(finding_json).collect());
                        print_json(&doc)?;
                    } else {
                        print_finding(&found, false)?;
                        if let Some(l) = labels.get(&found.host_id).filter(|l| !l.is_empty()) {
                            let shown: Vec<String> =
                                l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            println!("  host labels: {}", shown.join(", "));
                        }
                        if !chain.is_empty() {
                            println!("  built from:");
                            for f in &chain {
                                println!("    {}", finding_line(f));
                            }
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                FindingAction::Add {
                    host,
                    kind,
                    severity,
                    text,
                    reporter,
                } => {
                    let severity = match severity.as_str() {
                        "info" => v1::Severity::Info,
                        "low" => v1::Severity::Low,
                        "medium" => v1::Severity::Medium,
                        "high" => v1::Severity::High,
                        _ => v1::Severity::Critical,
                    };
                    let f = client
                        .add_finding(v1::AddFindingRequest {
                            host_id: host.clone(),
                            kind,
                            severity: severity as i32,
                            text,
                            reporter,
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("{}", s.message()))
                        .with_context(|| format!("recording a finding on {host}"))?
                        .into_inner();
                    print_finding(&f, cli.json)?;
                    return Ok(ExitCode::SUCCESS);
                }
                FindingAction::Ack { id, note } => (id, v1::FindingState::Acknowledged, note),
                FindingAction::Resolve { id, note } => (id, v1::FindingState::Resolved, note),
                FindingAction::FalsePositive { id, note } => {
                    (id, v1::FindingState::FalsePositive, note)
                }
            };
            let f = client
                .set_finding_state(v1::SetFindingStateRequest {
                    id,
                    state: state as i32,
                    note,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .with_context(|| format!("changing finding {id}"))?
                .into_inner();
            print_finding(&f, cli.json)?;
        }
        Command::Isolate {
            host,
            reason,
            allow,
            yes_isolate_this_machine,
            send,
        } => {
            let mut arguments = std::collections::BTreeMap::new();
            if !allow.is_empty() {
                arguments.insert("allow".to_owned(), allow.join(","));
            }
            if yes_isolate_this_machine {
                arguments.insert("confirm_local".to_owned(), "yes".to_owned());
            }
            return send_command(
                &mut client,
                &host,
                "isolate",
                arguments,
                reason,
                send,
                cli.json,
            )
            .await;
        }
        Command::Release { host, reason, send } => {
            return send_command(
                &mut client,
                &host,
                "release",
                Default::default(),
                reason,
                send,
                cli.json,
            )
            .await;
        }
        Command::Sinks => {
            let r = client
                .list_sinks(v1::ListSinksRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .context("reading the sinks")?
                .into_inner();
            if cli.json {
                print_json(&output::sinks_json(&r))?;
            } else {
                output::print_sinks(&r);
            }
        }
        Command::Rules => {
            let r = client
                .list_rules(v1::ListRulesRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .context("reading the rules")?
                .into_inner();
            if cli.json {
                print_json(&output::rules_json(&r))?;
            } else {
                output::print_rules(&r);
            }
        }
        Command::Relearn {
            host,
            sensor,
            reason,
            send,
        } => {
            let arguments = sensor
                .map(|s| std::collections::BTreeMap::from([("sensor".to_owned(), s)]))
                .unwrap_or_default();
            return send_command(
                &mut client,
                &host,
                "relearn",
                arguments,
                reason,
                send,
                cli.json,
            )
            .await;
        }
        Command::Ping { host, send } => {
            return send_command(
                &mut client,
                &host,
                "ping",
                Default::default(),
                String::new(),
                send,
                cli.json,
            )
            .await;
        }
        Command::Triage {
            host,
            question,
            path,
            send,
        } => {
            let mut arguments =
                std::collections::BTreeMap::from([("question".to_owned(), question.clone())]);
            if let Some(p) = path {
                arguments.insert("path".to_owned(), p);
            }
            let record = issue_and_wait(
                &mut client,
                &host,
                "triage",
                arguments,
                String::new(),
                &send,
                true,
            )
            .await?;
            if record.state != "succeeded" {
                anyhow::bail!(
                    "triage {question} on {host}: {} {}",
                    record.state,
                    record.result
                );
            }
            let answer: serde_json::Value =
                serde_json::from_str(&record.result).context("the agent's answer is not JSON")?;
            if cli.json {
                print_json(&answer)?;
            } else {
                output::print_rows(&answer["rows"]);
                if answer["truncated"] == true {
                    eprintln!("(truncated: {} rows in all)", answer["total"]);
                }
            }
        }
        Command::Snapshot {
            host,
            files,
            reason,
            mut send,
        } => {
            let mut arguments = std::collections::BTreeMap::new();
            if !files.is_empty() {
                arguments.insert("files".to_owned(), files.join("\n"));
            }
            if send.wait_secs == 60 {
                send.wait_secs = 600;
            }
            return send_command(
                &mut client,
                &host,
                "snapshot",
                arguments,
                reason,
                send,
                cli.json,
            )
            .await;
        }
        Command::Actions {
            verify: Some(_), ..
        } => {
            let r = client
                .verify_actions(v1::VerifyActionsRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            if cli.json {
                print_json(&serde_json::json!({
                    "ok": r.ok, "entries": r.entries, "first_bad_seq": r.first_bad_seq, "reason": r.reason,
                }))?;
            } else if r.ok {
                println!(
                    "action log intact: {} entries, every hash chains",
                    r.entries
                );
            } else {
                println!(
                    "ACTION LOG TAMPERED: entry {} {}",
                    r.first_bad_seq, r.reason
                );
            }
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Actions {
            verify: None,
            host,
            incident,
        } => {
            let actions = client
                .list_actions(v1::ListActionsRequest {
                    host_id: host.unwrap_or_default(),
                    incident: incident.unwrap_or(0),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .actions;
            if cli.json {
                print_json(&actions.iter().map(output::action_json).collect::<Vec<_>>())?;
            } else {
                for a in &actions {
                    println!(
                        "{:>5} {}  {:<16} {:<18} {:<20} {}{}",
                        a.seq,
                        short_time(a.at_unix_ms),
                        a.actor,
                        a.verb,
                        a.target,
                        a.result.chars().take(80).collect::<String>(),
                        if a.reason.is_empty() {
                            String::new()
                        } else {
                            format!(" (reason: {})", a.reason)
                        }
                    );
                }
            }
        }
        Command::Operator { action } => {
            let records = match action {
                OperatorAction::List => client
                    .list_operators(v1::ListOperatorsRequest {})
                    .await
                    .map(|r| r.into_inner().operators),
                OperatorAction::Add { name, role } => client
                    .add_operator(v1::OperatorChange { name, role })
                    .await
                    .map(|r| vec![r.into_inner()]),
                OperatorAction::SetRole { name, role } => client
                    .set_operator_role(v1::OperatorChange { name, role })
                    .await
                    .map(|r| vec![r.into_inner()]),
                OperatorAction::Disable { name } => client
                    .disable_operator(v1::OperatorChange {
                        name,
                        role: String::new(),
                    })
                    .await
                    .map(|r| vec![r.into_inner()]),
            }
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            if cli.json {
                print_json(&records.iter().map(|o| serde_json::json!({
                    "name": o.name, "role": o.role, "enabled": o.enabled,
                    "created": output::rfc3339(o.created_unix_ms), "created_by": o.created_by,
                })).collect::<Vec<_>>())?;
            } else {
                for o in &records {
                    println!(
                        "{:<20} {:<10} {:<9} added {} by {}",
                        o.name,
                        o.role,
                        if o.enabled { "enabled" } else { "DISABLED" },
                        short_time(o.created_unix_ms),
                        o.created_by
                    );
                }
            }
        }
        Command::Incident { action } => {
            let action_kind = match &action {
                IncidentAction::Brief { .. } => Some("brief"),
                IncidentAction::Review { .. } => Some("review"),
                _ => None,
            };
            let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
            let update = |id: u64| v1::UpdateIncidentRequest {
                id,
                ..Default::default()
            };
            let detail = match action {
                IncidentAction::List => {
                    let list = client
                        .list_incidents(v1::ListIncidentsRequest {})
                        .await
                        .map_err(status)?
                        .into_inner()
                        .incidents;
                    if cli.json {
                        print_json(&list.iter().map(output::incident_json).collect::<Vec<_>>())?;
                    } else {
                        for i in &list {
                            println!(
                                "#{:<4} {:<9} {:<11} {:<19} {:<12} {} ({} findings)",
                                i.id,
                                i.severity,
                                i.status,
                                short_time(i.opened_unix_ms),
                                i.commander,
                                i.title,
                                i.findings.len()
                            );
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                IncidentAction::Open {
                    title,
                    severity,
                    commander,
                    findings,
                } => {
                    client
                        .open_incident(v1::OpenIncidentRequest {
                            title,
                            severity,
                            commander,
                            findings,
                        })
                        .await
                }
                IncidentAction::Show { id } => {
                    client.show_incident(v1::IncidentRequest { id }).await
                }
                IncidentAction::Brief { id, out } | IncidentAction::Review { id, out } => {
                    let kind = if matches!(action_kind, Some("brief")) {
                        "brief"
                    } else {
                        "review"
                    };
                    let report = client
                        .incident_report(v1::IncidentReportRequest {
                            id,
                            kind: kind.into(),
                        })
                        .await
                        .map_err(status)?
                        .into_inner();
                    let text = if cli.json {
                        report.json + "\n"
                    } else {
                        report.markdown
                    };
                    match out {
                        Some(path) => {
                            std::fs::write(&path, text)
                                .with_context(|| format!("writing {}", path.display()))?;
                            eprintln!("{kind} of incident {id} written to {}", path.display());
                        }
                        None => print!("{text}"),
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                IncidentAction::AddFinding { id, findings } => {
                    client
                        .update_incident(v1::UpdateIncidentRequest {
                            add_findings: findings,
                            ..update(id)
                        })
                        .await
                }
                IncidentAction::Note { id, text } => {
                    client
                        .update_incident(v1::UpdateIncidentRequest {
                            note: text,
                            ..update(id)
                        })
                        .await
                }
                IncidentAction::SetSeverity { id, severity } => {
                    client
                        .update_incident(v1::UpdateIncidentRequest {
                            severity,
                            ..update(id)
                        })
                        .await
                }
                IncidentAction::SetStatus { id, status: st } => {
                    client
                        .update_incident(v1::UpdateIncidentRequest {
                            status: st,
                            ..update(id)
                        })
                        .await
                }
                IncidentAction::Close { id } => {
                    client
                        .update_incident(v1::UpdateIncidentRequest {
                            status: "closed".into(),
                            ..update(id)
                        })
                        .await
                }
            }
            .map_err(status)?
            .into_inner();
            if cli.json {
                print_json(&output::incident_detail_json(&detail))?;
            } else if let Some(i) = &detail.incident {
                println!(
                    "Incident #{} — {} [{}; {}] commander {}",
                    i.id, i.title, i.severity, i.status, i.commander
                );
                println!("  affected hosts: {}", detail.affected_hosts.join(", "));
                for t in &detail.timeline {
                    println!("  {}  {:<7} {}", short_time(t.at_unix_ms), t.source, t.text);
                }
            }
        }
        Command::Evidence { action } => return evidence(&mut client, action, cli.json).await,
        Command::Host {
            action: HostAction::Label { host, set, remove },
        } => {
            let h = client
                .set_host_labels(v1::SetHostLabelsRequest {
                    host_id: host,
                    set: set.into_iter().collect(),
                    remove,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            if cli.json {
                print_json(&host_json(&h))?;
            } else {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("{}: {}", h.host_id, labels.join(", "));
            }
        }
        Command::Host {
            action: HostAction::Revoke { host, reason },
        } => {
            let r = client
                .revoke_host(v1::RevokeHostRequest {
                    host_id: host.clone(),
                    reason,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .with_context(|| format!("revoking {host}"))?
                .into_inner();
            if cli.json {
                print_json(
                    &serde_json::json!({ "host_id": r.host_id, "sessions_cut": r.sessions_cut }),
                )?;
            } else {
                println!(
                    "{} revoked: new connections are refused; {} live session(s) cut",
                    r.host_id, r.sessions_cut
                );
            }
        }
        Command::Token { action } => {
            let tokens = match action {
                TokenAction::Create {
                    uses,
                    expires,
                    labels,
                    note,
                } => {
                    let created = client
                        .create_token(v1::CreateTokenRequest {
                            uses,
                            expires_in_secs: expires,
                            labels: labels.into_iter().collect(),
                            note,
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("{}", s.message()))
                        .context("creating a token")?
                        .into_inner();
                    let token = created.token.unwrap_or_default();
                    if cli.json {
                        let mut doc = output::token_json(&token);
                        doc["secret"] = serde_json::Value::String(created.secret);
                        print_json(&doc)?;
                    } else {
                        println!("{}", created.secret);
                        eprintln!(
                            "token {}: {} use(s), expires {}; the line above is shown once: put it in a file (mode 0600) for `bannin-agent enroll --token-file`",
                            token.id,
                            token.uses,
                            output::rfc3339(token.expires_unix_ms)
                        );
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                TokenAction::List => {
                    client
                        .list_tokens(v1::ListTokensRequest {})
                        .await
                        .map_err(|s| anyhow::anyhow!("{}", s.message()))
                        .context("listing tokens")?
                        .into_inner()
                        .tokens
                }
                TokenAction::Revoke { id } => vec![
                    client
                        .revoke_token(v1::RevokeTokenRequest { id: id.clone() })
                        .await
                        .map_err(|s| anyhow::anyhow!("{}", s.message()))
                        .with_context(|| format!("revoking token {id}"))?
                        .into_inner(),
                ],
            };
            if cli.json {
                print_json(&tokens.iter().map(output::token_json).collect::<Vec<_>>())?;
            } else {
                println!(
                    "{:<6} {:<9} {:>9} {:<20} {:<28} HOSTS",
                    "ID", "STATE", "USED", "EXPIRES", "LABELS"
                );
                for t in &tokens {
                    let labels: Vec<String> =
                        t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "{:<6} {:<9} {:>4}/{:<4} {:<20} {:<28} {}",
                        t.id,
                        t.state,
                        t.used,
                        t.uses,
                        output::rfc3339(t.expires_unix_ms),
                        labels.join(","),
                        t.hosts.join(",")
                    );
                }
            }
        }
        Command::Commands { host } => {
            let commands = client
                .list_commands(v1::ListCommandsRequest {
                    host_id: host.unwrap_or_default(),
                    ..Default::default()
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .context("listing commands")?
                .into_inner()
                .commands;
            if cli.json {
                print_json(
                    &commands
                        .iter()
                        .map(output::command_json)
                        .collect::<Vec<_>>(),
                )?;
            } else {
                println!(
                    "{:<7} {:<19} {:<20} {:<8} {:<10} {:<12} RESULT",
                    "ID", "ISSUED (UTC)", "HOST", "VERB", "STATE", "OPERATOR"
                );
                for c in &commands {
                    println!(
                        "{:<7} {:<19} {:<20} {:<8} {:<10} {:<12} {}",
                        c.id,
                        short_time(c.created_unix_ms),
                        c.host_id,
                        c.verb,
                        c.state,
                        c.operator,
                        c.result
                    );
                }
            }
        }
        Command::Events {
            host,
            since,
            kind,
            limit,
        } => {
            let since_unix_ms = match since {
                Some(s) => parse_since(&s)?,
                None => 0,
            };
            let response = client
                .list_events(v1::ListEventsRequest {
                    host_id: host.clone(),
                    since_unix_ms,
                    kind: kind.unwrap_or_default(),
                    limit,
                    after_sequence: 0,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .with_context(|| format!("reading events of {host}"))?
                .into_inner();
            if cli.json {
                print_json(&response.events.iter().map(event_json).collect::<Vec<_>>())?;
            } else {
                for e in &response.events {
                    let ev = e.event.clone().unwrap_or_default();
                    println!(
                        "{}  {:<8} {:<22} {}",
                        short_time(ev.observed_unix_ms),
                        output::severity(ev.severity),
                        ev.kind,
                        ev.summary
                    );
                }
            }
            if response.truncated {
                eprintln!("(more events match; raise --limit or narrow with --since/--kind)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Queues a command and, unless told not to, waits for the host's answer;
/// prints the outcome and exits non-zero when it failed or expired.
async fn send_command(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    host: &str,
    verb: &str,
    arguments: std::collections::BTreeMap<String, String>,
    reason: String,
    send: SendOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let last = issue_and_wait(client, host, verb, arguments, reason, &send, json).await?;
    if json {
        print_json(&output::command_json(&last))?;
    } else {
        println!(
            "{} {} {}: {} {}",
            last.id, last.verb, last.host_id, last.state, last.result
        );
    }
    Ok(match last.state.as_str() {
        "failed" | "expired" => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// Queues a command and, unless `send.no_wait`, polls until it is finished or the wait runs out.
async fn issue_and_wait(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    host: &str,
    verb: &str,
    arguments: std::collections::BTreeMap<String, String>,
    reason: String,
    send: &SendOptions,
    quiet: bool,
) -> anyhow::Result<v1::CommandRecord> {
    let queued = client
        .issue_command(v1::IssueCommandRequest {
            host_id: host.to_owned(),
            verb: verb.to_owned(),
            arguments,
            reason,
            expires_in_secs: send.expires_secs,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("sending {verb} to {host}"))?
        .into_inner();
    if !quiet {
        eprintln!("{verb} {host}: queued as {} ({})", queued.id, queued.state);
    }
    let mut last = queued;
    if send.no_wait {
        return Ok(last);
    }
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(send.wait_secs);
    let mut told_offline = false;
    while !matches!(last.state.as_str(), "succeeded" | "failed" | "expired")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let found = client
            .list_commands(v1::ListCommandsRequest {
                host_id: host.to_owned(),
                command_id: last.id.clone(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner()
            .commands
            .into_iter()
            .next();
        if let Some(c) = found {
            if c.state == "pending"
                && !told_offline
                && !quiet
                && started.elapsed() > std::time::Duration::from_secs(2)
            {
                eprintln!(
                    "{host} has not picked it up yet; it is delivered when the host connects (expires {})",
                    short_time(c.expires_unix_ms)
                );
                told_offline = true;
            }
            last = c;
        }
    }
    Ok(last)
}

async fn evidence(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    action: EvidenceAction,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    let detail = match action {
        EvidenceAction::List => {
            let list = client
                .list_evidence(v1::ListEvidenceRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .evidence;
            if json {
                print_json(&list.iter().map(output::evidence_json).collect::<Vec<_>>())?;
            } else {
                println!(
                    "{:<5} {:<9} {:<20} {:<19} {:>10}  SHA-256",
                    "ID", "STATE", "HOST", "RECEIVED (UTC)", "BYTES"
                );
                for e in &list {
                    println!(
                        "{:<5} {:<9} {:<20} {:<19} {:>10}  {}",
                        e.id,
                        e.state,
                        e.host_id,
                        short_time(e.received_unix_ms),
                        e.size,
                        e.sha256
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        EvidenceAction::Show { id } => client
            .show_evidence(v1::EvidenceRequest { id })
            .await
            .map_err(status)?
            .into_inner(),
        EvidenceAction::Verify { id } => {
            let d = client
                .verify_evidence(v1::EvidenceRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            if json {
                print_json(&output::evidence_detail_json(&d))?;
            } else {
                println!("{}", d.verify_result);
            }
            return Ok(if d.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        EvidenceAction::Dispose { id, method, reason } => client
            .dispose_evidence(v1::DisposeEvidenceRequest { id, method, reason })
            .await
            .map_err(status)?
            .into_inner(),
        EvidenceAction::Export {
            id,
            to,
            recipient,
            reason,
        } => {
            let mut stream = client
                .export_evidence(v1::ExportEvidenceRequest {
                    id,
                    recipient: recipient.clone(),
                    reason: reason.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let first = stream
                .next()
                .await
                .context("the collector sent nothing")?
                .map_err(status)?;
            let detail = first.detail.context("the collector sent no record")?;
            let record = detail.record.clone().context("no record")?;
            std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
            let bundle_name = format!("{}.tar.zst", record.sha256);
            let mut file =
                std::fs::File::create(to.join(&bundle_name)).context("writing the bundle")?;
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(status)?;
                std::io::Write::write_all(&mut file, &chunk.data)?;
                written += chunk.data.len() as u64;
            }
            anyhow::ensure!(
                written == record.size,
                "received {written} bytes, the record says {}",
                record.size
            );
            std::fs::write(to.join("manifest.json"), &detail.manifest_json)?;
            let custody = output::evidence_detail_json(&detail);
            std::fs::write(
                to.join("custody.json"),
                serde_json::to_string_pretty(&custody)?,
            )?;
            std::fs::write(
                to.join("SHA256SUMS"),
                format!("{}  {bundle_name}\n", record.sha256),
            )?;
            std::fs::write(
                to.join("README.txt"),
                format!(
                    "Evidence {id} from host {host}, exported by Bannin to {recipient}.\n\
                     Reason: {reason}\n\n\
                     Files:\n  {bundle_name}  the evidence bundle (tar archive compressed with zstd)\n  \
                     manifest.json  what the bundle holds: every artifact with its size and SHA-256\n  \
                     custody.json  the chain of custody: who collected, received, verified, viewed and exported it\n\n\
                     Check it without Bannin, with standard tools:\n  \
                     sha256sum -c SHA256SUMS                                 # the bundle is the one recorded\n  \
                     mkdir x && tar --zstd -xf {bundle_name} -C x           # unpack it\n  \
                     cd x && sha256sum artifacts/...                         # compare with manifest.json\n\n\
                     The bundle's own manifest.json is also its last entry.\n",
                    id = record.id,
                    host = record.host_id,
                ),
            )?;
            eprintln!(
                "exported {} ({written} bytes) to {}",
                record.id,
                to.display()
            );
            detail
        }
    };
    if json {
        print_json(&output::evidence_detail_json(&detail))?;
    } else if let Some(r) = &detail.record {
        println!(
            "{} {} from {}: {} bytes, sha256 {}",
            r.id, r.state, r.host_id, r.size, r.sha256
        );
        println!(
            "  asked by {} ({}), command {}, collected {} → {}",
            r.operator, r.reason, r.command_id, r.collected_started, r.collected_finished
        );
        for a in &detail.custody {
            println!(
                "  {:>5} {}  {:<20} {:<12} {}{}",
                a.seq,
                short_time(a.at_unix_ms),
                a.verb,
                a.actor,
                a.result,
                if a.reason.is_empty() {
                    String::new()
                } else {
                    format!(" (reason: {})", a.reason)
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every host's labels (empty when the hosts cannot be listed).
async fn host_labels(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
) -> std::collections::HashMap<String, std::collections::BTreeMap<String, String>> {
    match client.list_hosts(v1::ListHostsRequest {}).await {
        Ok(r) => r
            .into_inner()
            .hosts
            .into_iter()
            .map(|h| (h.host_id, h.labels.into_iter().collect()))
            .collect(),
        Err(_) => std::collections::HashMap::new(),
    }
}

/// A finding's JSON with its host's labels.
fn with_labels(
    mut doc: serde_json::Value,
    labels: &std::collections::HashMap<String, std::collections::BTreeMap<String, String>>,
    host: &str,
) -> serde_json::Value {
    doc["host_labels"] = serde_json::json!(labels.get(host).cloned().unwrap_or_default());
    doc
}

/// The findings a correlated finding was built from (its `correlated_findings`).
async fn correlated_chain(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    f: &v1::Finding,
) -> anyhow::Result<Vec<v1::Finding>> {
    let Some(ids) = f.attributes.get("correlated_findings") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in ids.split(',').filter_map(|i| i.trim().parse::<u64>().ok()) {
        let found = client
            .list_findings(v1::ListFindingsRequest {
                since_id: id.saturating_sub(1),
                limit: 1,
            })
            .await
            .context("reading the findings it was built from")?
            .into_inner()
            .findings
            .into_iter()
            .find(|x| x.id == id);
        out.extend(found);
    }
    Ok(out)
}

fn print_finding(f: &v1::Finding, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&finding_json(f));
    }
    println!("{}", finding_line(f));
    for (k, v) in &f.attributes {
        println!("    {k}: {v}");
    }
    for c in &f.history {
        println!(
            "    {} {} by {}{}",
            short_time(c.at_unix_ms),
            output::state(c.state),
            c.operator,
            if c.note.is_empty() {
                String::new()
            } else {
                format!(": {}", c.note)
            }
        );
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// RFC 3339, or an age such as 30s, 15m, 2h, 7d.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("--since {s:?}: expected RFC 3339 time or an age like 15m"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => anyhow::bail!("--since {s:?}: unit must be s, m, h or d"),
    };
    Ok(bannin_proto::now_unix_ms() - n.saturating_mul(unit_ms))
}
