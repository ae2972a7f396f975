//! The command line, as clap parses it, and the parsers of its values
//! (durations, labels, `--since`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::up;

/// Bannin operator CLI: watch findings, triage hosts, and run a local
/// collector plus agent with `bannin up`.
///
/// The collector address and the operator certificate come from --config FILE,
/// else $BANNIN_CONFIG, else ./bannin-data/operator.toml (written by `bannin up`).
#[derive(Parser)]
#[command(version, about, long_about)]
pub(crate) struct Cli {
    /// Operator config (TOML: collector, server_name, ca, cert, key).
    #[arg(long, global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Print JSON instead of text (lists as one array; --follow as JSON lines).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `bannin rules …`.
#[derive(Subcommand)]
pub(crate) enum RulesAction {
    /// Load the Sigma rules again from the collector's `[sigma] paths`, at
    /// once and atomically: if any file fails, the rules in force stay and the
    /// error names the file (the collector also reloads on SIGHUP).
    Reload,
}

/// `bannin sigma …`.
#[derive(Subcommand)]
pub(crate) enum SigmaAction {
    /// Evaluate Sigma rules against exported events, as the collector would:
    /// prints every match (and correlation), and the rules refused with why.
    /// Exit status: 0 if something matched, 1 if nothing did, 2 on an error.
    Test {
        /// Rule files or directories (directories are read recursively).
        #[arg(required = true)]
        rules: Vec<PathBuf>,
        /// Events from `bannin events HOST --json`: a JSON array, or one object per line.
        #[arg(long)]
        events: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Hunts: ask every host one question at once — where else is this file,
    /// this process, this connection? A hunt reaches the hosts online now and
    /// every selected host that connects before it expires; each host with
    /// hits gets a `hunt.match` finding.
    Hunt {
        #[command(subcommand)]
        action: HuntAction,
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
        /// Most findings to list (without --follow), oldest first; when more
        /// exist, stderr says so and where the next page starts (--since).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Every finding after --since, read a page at a time (ignores --limit).
        #[arg(long, conflicts_with_all = ["follow", "limit"])]
        all: bool,
        /// Sort on the collector, most urgent first: severity, last-seen,
        /// count, host, kind or state (the newest 10,000 that pass; --limit
        /// of them are printed).
        #[arg(long, value_parser = ["severity", "last-seen", "count", "host", "kind", "state"], conflicts_with_all = ["follow", "all"])]
        sort: Option<String>,
        /// Count the findings that pass by kind, host or summary (same
        /// summary: one event seen many times), worst first, with the option
        /// that lists or changes each group (`bannin finding ack …`).
        #[arg(long, value_parser = ["kind", "host", "summary"], conflicts_with_all = ["follow", "all", "sort"])]
        group: Option<String>,
        #[command(flatten)]
        filter: FindingFilterArgs,
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
    /// The rules in force: Sigma rules with their matches (and the rules refused
    /// at load, with why), suppressions with their hits and expiry, the
    /// cross-host correlation rules with what they raised, severity overrides.
    /// Rules are set in the collector's configuration (`[sigma] paths`,
    /// `[[suppress]]`, `[correlation]`, `[findings.severity]`);
    /// `bannin rules reload` loads the Sigma rules again (responder).
    Rules {
        #[command(subcommand)]
        action: Option<RulesAction>,
    },
    /// Sigma rule tools that need no collector:
    /// `bannin sigma test RULE.yml --events events.jsonl` runs rules on events
    /// exported with `bannin events HOST --json` (a JSON array or one event per line).
    Sigma {
        #[command(subcommand)]
        action: SigmaAction,
    },
    /// Cluster mode: the collectors (agents, log position applied, lag), the
    /// NATS server this collector uses, and the streams with their replicas
    /// (leader, each peer current, behind or offline).
    Cluster,
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
    /// Capture packets on a host as evidence (responder): the filter (tcpdump's
    /// syntax) is compiled by the host's libpcap and applied in the kernel; the
    /// pcapng file comes back in a bundle with a manifest, hashed at both ends
    /// and held with its chain of custody like a snapshot. It works on an
    /// isolated host: it captures what still reaches it.
    ///
    /// Examples:
    ///   bannin capture web-01 --seconds 60 --filter 'host 203.0.113.7' --reason "IR-7 C2 traffic"
    ///   bannin capture web-01 --seconds 300 --interface eth0 --max-bytes 200M --reason "IR-7"
    /// Then: bannin evidence export eN --to DIR …, and `tcpdump -r` on
    /// artifacts/capture.pcapng inside the bundle.
    Capture {
        /// Host id.
        host: String,
        /// How long to capture (1 to 3600).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3600))]
        seconds: u32,
        /// A pcap filter expression, e.g. 'tcp port 443 and host 203.0.113.7'.
        #[arg(long, default_value = "")]
        filter: String,
        /// An interface to capture on; repeatable (default: every interface
        /// that is up but loopback).
        #[arg(long = "interface", value_name = "IF")]
        interfaces: Vec<String>,
        /// Stop once this many bytes of packets are kept (K, M, G; default
        /// 64M, at most 1G).
        #[arg(long, value_parser = parse_bytes)]
        max_bytes: Option<u64>,
        /// Why (recorded in the manifest and the action log).
        #[arg(long)]
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
        /// Only entries after this position (`seq`), e.g. the last one you read.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// At most this many entries (default: all of them, read a page of
        /// 1000 at a time).
        #[arg(long)]
        limit: Option<u64>,
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
        /// Only the newest N (default: all of them).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
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
    /// Search what the collector holds, across every host, through its index:
    /// which hosts match, how many events each, first and last seen, then the
    /// events. Examples: `bannin search --ip 203.0.113.0/24 --since 30d`,
    /// `bannin search --sha256 9f86…`, `bannin search --user backup2 --hosts web-01`.
    Search(SearchArgs),
    /// Serve a web console for this operator on loopback (as `kubectl proxy`
    /// does): it talks to the collector with this operator's certificate, so
    /// every action is yours, checked by your role and logged as yours.
    ///
    /// Prints a URL with a one-time login token; open it in a browser on this
    /// machine (over SSH, forward the same port number: `ssh -L PORT:127.0.0.1:PORT HOST`;
    /// the console accepts only its own address in the Host header). Runs until Ctrl-C.
    Console(crate::console::ConsoleArgs),
}

/// `bannin search`: exactly one of the fields.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("field").required(true).multiple(false)))]
pub(crate) struct SearchArgs {
    /// An address, or a network (a.b.c.d/n, v6/n), of either end.
    #[arg(long, group = "field")]
    pub(crate) ip: Option<String>,
    /// A port of either end.
    #[arg(long, group = "field")]
    pub(crate) port: Option<u16>,
    /// A file's or executable's SHA-256.
    #[arg(long, group = "field")]
    pub(crate) sha256: Option<String>,
    /// An executable's path.
    #[arg(long, group = "field")]
    pub(crate) exe: Option<String>,
    /// An account name.
    #[arg(long, group = "field")]
    pub(crate) user: Option<String>,
    /// A process name (comm).
    #[arg(long, group = "field")]
    pub(crate) process: Option<String>,
    /// An event kind (net.connection, process.exec, …).
    #[arg(long, group = "field")]
    pub(crate) kind: Option<String>,
    /// Only events received since TIME: RFC 3339 or an age (30m, 12h, 7d); 7d by default.
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Only this host; repeatable.
    #[arg(long = "hosts")]
    pub(crate) hosts: Vec<String>,
    /// Events listed at most (the hosts' counts are complete).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
}

/// Options shared by commands sent to hosts.
#[derive(clap::Args)]
pub(crate) struct SendOptions {
    /// Return once the command is queued instead of waiting for the host's answer.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) wait_secs: u64,
    /// Drop the command if the host has not picked it up within this many seconds (default 7 days).
    #[arg(long, default_value_t = 0)]
    pub(crate) expires_secs: u32,
}

#[derive(Subcommand)]
pub(crate) enum IncidentAction {
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
pub(crate) enum HostAction {
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
    /// once and its live stream is cut within seconds. The revocation binds the
    /// host's keys, not only its id: a certificate for one of them is refused
    /// under any host id, and re-enrolling one is refused too; a cleaned
    /// machine enrolls again with a new key. A host that never connected can be
    /// revoked as well: hand in its certificate with --cert so its key is
    /// known.
    Revoke {
        /// Host id.
        host: String,
        /// Why (recorded in the action log).
        #[arg(long)]
        reason: String,
        /// A certificate (PEM file) issued to the host, e.g. by `bannin pki
        /// issue`; its key is revoked with it. Repeatable.
        #[arg(long = "cert", value_name = "FILE")]
        certs: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum HuntAction {
    /// Start a hunt (responder) and follow its progress until every selected
    /// host has answered; Ctrl-C stops following, not the hunt.
    ///
    /// Examples:
    ///   bannin hunt start file-hash 9f86d0…08 --root /tmp --root /var/tmp --reason "IR-7 dropper"
    ///   bannin hunt start process --exe '/dev/shm/*' --labels role=web --reason "IR-7"
    ///   bannin hunt start connection --remote 203.0.113.0/24 --reason "IR-7 C2 range"
    ///   bannin hunt start yara rules/webshells.yar --root /var/www --reason "IR-7"
    Start {
        #[command(subcommand)]
        question: HuntQuestionArg,
        #[command(flatten)]
        options: Box<HuntOptions>,
    },
    /// List hunts with where they stand.
    List,
    /// One hunt: every selected host's state (pending, running, done, failed,
    /// expired, stopped), hits, cut rows and costs.
    Show {
        /// Hunt id (h3).
        id: String,
    },
    /// The hits of a hunt, one row per hit (--json, or --csv for a spreadsheet).
    Results {
        /// Hunt id (h3).
        id: String,
        /// Comma-separated values, with a header.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Stop a hunt (responder): it reaches no more hosts and the hosts running it stop.
    Stop {
        /// Hunt id (h3).
        id: String,
        /// Why (recorded in the action log).
        #[arg(long)]
        reason: String,
    },
}

/// What a hunt asks.
#[derive(Subcommand, Clone)]
pub(crate) enum HuntQuestionArg {
    /// Files with this SHA-256.
    FileHash {
        /// Lowercase hex SHA-256.
        sha256: String,
        #[command(flatten)]
        walk: HuntWalk,
        /// Larger files are not read: 64M by default (K, M, G suffixes).
        #[arg(long, value_parser = parse_bytes)]
        max_size: Option<u64>,
    },
    /// Files any rule of a YARA rule file matches (YARA-X; the collector
    /// compiles the rules and refuses a set that does not compile, and
    /// `include` is refused). Modules: console, elf, hash, math, string, time.
    Yara {
        /// The rule file (at most 1 MiB).
        rules: std::path::PathBuf,
        #[command(flatten)]
        walk: HuntWalk,
        /// Larger files are not scanned: 64M by default (K, M, G suffixes).
        #[arg(long, value_parser = parse_bytes)]
        max_size: Option<u64>,
    },
    /// Files whose name matches a glob (`*.so`, `.x*`); a pattern with a '/'
    /// matches the whole path (`/tmp/**/.*`).
    FileName {
        /// The glob.
        pattern: String,
        #[command(flatten)]
        walk: HuntWalk,
    },
    /// Processes; every option given must match.
    Process {
        /// Glob on the process name.
        #[arg(long)]
        name: Option<String>,
        /// Glob on the executable's path.
        #[arg(long)]
        exe: Option<String>,
        /// Substring of the command line.
        #[arg(long)]
        cmdline: Option<String>,
        /// SHA-256 of the executable.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Connections to an address or network, a port, or both.
    Connection {
        /// Remote address or network (a.b.c.d, a.b.c.d/n, v6, v6/n).
        #[arg(long)]
        remote: Option<String>,
        /// Remote port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Listeners on a port.
    Listener {
        /// The port.
        port: u16,
    },
    /// An account by name.
    Account {
        /// The account name.
        name: String,
    },
    /// Any triage question, asked of every selected host.
    Triage {
        #[arg(value_parser = ["processes", "connections", "listeners", "logins", "users", "services", "stat", "hash", "ls"])]
        question: String,
        /// Absolute path (stat, hash, ls).
        path: Option<String>,
    },
}

/// Where a file question walks.
#[derive(clap::Args, Clone)]
pub(crate) struct HuntWalk {
    /// A directory to walk (absolute); repeatable; `/` when none is given.
    #[arg(long = "root")]
    pub(crate) roots: Vec<String>,
    /// Directories below a root (default 12).
    #[arg(long)]
    pub(crate) depth: Option<u32>,
}

/// Which hosts a hunt asks, for how long, and what it may cost them.
#[derive(clap::Args, Clone)]
pub(crate) struct HuntOptions {
    /// Only hosts with this KEY=VALUE label (labels in force); repeatable, all must match.
    #[arg(long = "labels", global = true, value_parser = parse_label)]
    pub(crate) labels: Vec<(String, String)>,
    /// Only this host; repeatable.
    #[arg(long = "hosts", global = true)]
    pub(crate) hosts: Vec<String>,
    /// How long it reaches hosts that connect later: 30m, 24h, 7d.
    #[arg(long, global = true, default_value = "24h", value_parser = parse_duration)]
    pub(crate) expires: u64,
    /// Severity of the `hunt.match` finding of each host with hits.
    #[arg(long, global = true, default_value = "medium", value_parser = ["low", "medium", "high", "critical"])]
    pub(crate) severity: String,
    /// Why (recorded in the action log and on every finding).
    #[arg(long, global = true)]
    pub(crate) reason: Option<String>,
    /// Attach to this incident: its scoping brief lists the hunt and its hosts.
    #[arg(long, global = true)]
    pub(crate) incident: Option<u64>,
    /// CPU time each host may spend: 2m by default.
    #[arg(long, global = true, value_parser = parse_duration)]
    pub(crate) max_cpu: Option<u64>,
    /// Bytes each host may read: 4G by default (K, M, G suffixes).
    #[arg(long, global = true, value_parser = parse_bytes)]
    pub(crate) max_read: Option<u64>,
    /// Hits each host keeps (the rest are counted): 1000 by default.
    #[arg(long, global = true)]
    pub(crate) max_hits: Option<u32>,
    /// Print the hunt and return at once instead of following its progress.
    #[arg(long, global = true)]
    pub(crate) no_wait: bool,
}

/// 512, 64K, 16M, 4G → bytes.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with an optional K, M or G"))?;
    let unit: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return Err(format!("{s:?}: the unit is K, M or G")),
    };
    Ok(n.saturating_mul(unit))
}

#[derive(Subcommand)]
pub(crate) enum TokenAction {
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
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
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

pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    bannin_proto::labels::parse_assignment(text)
}

#[derive(Subcommand)]
pub(crate) enum EvidenceAction {
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
pub(crate) enum OperatorAction {
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

/// Which findings `bannin findings` lists or follows; the collector filters.
#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct FindingFilterArgs {
    /// Only these severities (comma-separated or repeated).
    #[arg(long = "severity", value_delimiter = ',', value_parser = ["info", "low", "medium", "high", "critical"])]
    pub(crate) severity: Vec<String>,
    /// Only findings in these states (comma-separated or repeated).
    #[arg(long = "state", value_delimiter = ',', value_parser = ["new", "acknowledged", "resolved", "false_positive"])]
    pub(crate) state: Vec<String>,
    /// Only these kinds: `process.unknown_binary`, or a family such as
    /// `process.` or `process.*` (comma-separated or repeated).
    #[arg(long = "kind", value_delimiter = ',')]
    pub(crate) kind: Vec<String>,
    /// Only this host.
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Only hosts with this label: `key=value`, or `key` for any value
    /// (repeatable: every one must match).
    #[arg(long = "label")]
    pub(crate) label: Vec<String>,
    /// Only findings holding every word of this text, ignoring case, in their
    /// summary, kind, host or any attribute: a path, a pid, a user, a hash, an
    /// address (searched by the collector).
    #[arg(long, value_name = "TEXT")]
    pub(crate) search: Option<String>,
    /// Only findings observed within this long before now (30m, 24h, 7d).
    #[arg(long, value_name = "DURATION")]
    pub(crate) within: Option<String>,
    /// Only findings with exactly this summary (what `--group summary` lists).
    #[arg(long, value_name = "TEXT")]
    pub(crate) summary: Option<String>,
}

impl FindingFilterArgs {
    /// Whether no filter option was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.severity.is_empty()
            && self.state.is_empty()
            && self.kind.is_empty()
            && self.host.is_none()
            && self.label.is_empty()
            && self.search.is_none()
            && self.within.is_none()
            && self.summary.is_none()
    }
}

#[derive(Subcommand)]
pub(crate) enum FindingAction {
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
    /// Acknowledge: you are on it. One finding, several (`ack 12 13 14`), or
    /// every finding a filter selects (`ack --kind file.* --search useradd`).
    Ack(StateChange),
    /// Resolve: dealt with (by id or by filter, as `ack`).
    Resolve(StateChange),
    /// Mark as a false positive (by id or by filter, as `ack`).
    FalsePositive(StateChange),
}

/// Which findings a state change is for, and why.
#[derive(clap::Args)]
pub(crate) struct StateChange {
    /// Finding ids. Without them, every finding the filter options select
    /// (at least one is needed; at most 10,000 findings change at once).
    pub(crate) ids: Vec<u64>,
    /// Why, for the record (one note for all of them).
    #[arg(long, default_value = "")]
    pub(crate) note: String,
    /// List the findings that would change, and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[command(flatten)]
    pub(crate) filter: FindingFilterArgs,
}

/// RFC 3339, or an age such as 30s, 15m, 2h, 7d.
pub(crate) fn parse_since(s: &str) -> anyhow::Result<i64> {
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
