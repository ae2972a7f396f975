//! Response: the durable command queue, and isolation in network namespaces.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bannin_proto::v1;
use bannin_tests::netns::{Host, Lab, is_root};
use bannin_tests::{
    AgentOptions, CollectorProc, Proc, TestPki, agent_config, bannin_json, bin, collector_config,
    eventually, free_port, operator_client, operator_toml, start_agent,
};

use crate::wait_online;

async fn command_state(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    id: &str,
) -> v1::CommandRecord {
    client
        .list_commands(v1::ListCommandsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .commands
        .into_iter()
        .find(|c| c.id == id)
        .expect("command listed")
}

async fn issue(
    client: &mut v1::operator_client::OperatorClient<tonic::transport::Channel>,
    host: &str,
    command: v1::CommandBody,
    expires_in_secs: u32,
) -> v1::CommandRecord {
    client
        .issue_command(v1::IssueCommandRequest {
            host_id: host.into(),
            command: Some(command),
            reason: "test".into(),
            expires_in_secs,
        })
        .await
        .expect("issue")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_for_an_offline_host_are_delivered_when_it_returns_and_expired_ones_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let waiting = issue(&mut client, "later-host", v1::CommandBody::ping(), 0).await;
    let expiring = issue(&mut client, "later-host", v1::CommandBody::ping(), 1).await;
    assert_eq!(waiting.state, "pending");
    eventually(Duration::from_secs(20), "the 1 s command expired", || {
        let mut c = client.clone();
        let id = expiring.id.clone();
        async move { (command_state(&mut c, &id).await.state == "expired").then_some(()) }
    })
    .await;
    assert_eq!(
        command_state(&mut client, &waiting.id).await.state,
        "pending",
        "only the expiring command expired"
    );

    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("later-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let done = eventually(Duration::from_secs(30), "queued ping answered", || {
        let mut c = client.clone();
        let id = waiting.id.clone();
        async move {
            let c = command_state(&mut c, &id).await;
            (c.state == "succeeded").then_some(c)
        }
    })
    .await;
    assert!(done.result.starts_with("agent "), "{}", done.result);
    assert!(done.delivered_unix_ms >= done.created_unix_ms);
    // The queue was delivered (the waiting ping was answered): the expired one
    // was passed over, not merely not reached yet.
    assert_eq!(
        command_state(&mut client, &expiring.id).await.state,
        "expired",
        "never delivered"
    );

    // The CLI round trip, and the record of who asked.
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let out = Command::new(bin("bannin"))
        .args(["ping", "later-host", "--json", "--config"])
        .arg(&operator)
        .output()
        .expect("ping");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["operator"], "alice");

    let status = client
        .issue_command(v1::IssueCommandRequest {
            host_id: "later-host".into(),
            ..Default::default()
        })
        .await
        .expect_err("no command");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("no command given"),
        "{}",
        status.message()
    );
    // A request from a CLI that sends its verb as text (fields 2 and 3, now
    // reserved): refused, saying why.
    let old_cli = {
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct OldIssueCommandRequest {
            #[prost(string, tag = "1")]
            host_id: String,
            #[prost(string, tag = "2")]
            verb: String,
            #[prost(string, tag = "4")]
            reason: String,
        }
        let bytes = OldIssueCommandRequest {
            host_id: "later-host".into(),
            verb: "ping".into(),
            reason: "old".into(),
        }
        .encode_to_vec();
        v1::IssueCommandRequest::decode(bytes.as_slice()).expect("decodes")
    };
    let status = client
        .issue_command(old_cli)
        .await
        .expect_err("a text verb");
    assert!(
        status.message().contains("upgrade it"),
        "{}",
        status.message()
    );
    let status = client
        .issue_command(v1::IssueCommandRequest {
            host_id: "later-host".into(),
            command: Some(v1::CommandBody::isolate(Vec::new(), false)),
            ..Default::default()
        })
        .await
        .expect_err("isolate without a reason");
    assert!(status.message().contains("reason"), "{}", status.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn isolating_the_bannin_up_machine_needs_the_explicit_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("my-laptop"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            response: "local_operator = true".into(),
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "my-laptop").await;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let out = Command::new(bin("bannin"))
        .args([
            "isolate",
            "my-laptop",
            "--reason",
            "oops",
            "--json",
            "--config",
        ])
        .arg(&operator)
        .output()
        .expect("isolate");
    assert!(!out.status.success());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(record["state"], "failed");
    let result = record["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("bannin up") && result.contains("--yes-isolate-this-machine"),
        "{result}"
    );
}

/// Everything an isolation test needs, inside a lab of namespaces.
pub(crate) struct Site {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) lab: Lab,
    pub(crate) pki: TestPki,
    pub(crate) operator: std::path::PathBuf,
    agent_dir: std::path::PathBuf,
    agent_options: AgentOptions,
    pub(crate) watched: std::path::PathBuf,
    collector_config: std::path::PathBuf,
    pub(crate) collector: Option<Proc>,
    pub(crate) agent: Option<Proc>,
    _listeners: Vec<Proc>,
}

pub(crate) const PORT: u16 = 7443;

impl Site {
    pub(crate) fn new() -> Self {
        Self::with(|_| {})
    }

    /// A lab whose agent runs with `options` changed by `change`.
    pub(crate) fn with(change: impl FnOnce(&mut AgentOptions)) -> Self {
        Self::with_collector(&[], change)
    }

    /// A lab whose collector loads the Sigma rule files `sigma` (name, text),
    /// and whose agent runs with `options` changed by `change`.
    pub(crate) fn with_collector(
        sigma: &[(&str, &str)],
        change: impl FnOnce(&mut AgentOptions),
    ) -> Self {
        assert!(
            is_root(),
            "isolation tests need root (network namespaces, nftables)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = Lab::new();
        let pki = TestPki::new(dir.path());
        // The collector, on its own host.
        let cdir = dir.path().join("collector");
        let extra = if sigma.is_empty() {
            String::new()
        } else {
            let rules = cdir.join("rules");
            std::fs::create_dir_all(&rules).expect("rules dir");
            for (name, text) in sigma {
                std::fs::write(rules.join(name), text).expect("rule file");
            }
            format!("[sigma]\npaths = [{:?}]\n", rules.display().to_string())
        };
        let config = collector_config(&cdir, &pki, PORT, &extra);
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(
            &config,
            text.replace(
                &format!("127.0.0.1:{PORT}"),
                &format!("{}:{PORT}", Host::Collector.v4()),
            ),
        )
        .expect("config");
        let collector = Self::spawn_collector(&lab, &config);
        // Listeners on the peer and on the agent, dual stack.
        let mut listeners = Vec::new();
        for (host, port) in [(Host::Peer, "9000"), (Host::Agent, "9001")] {
            let mut c = lab.command(host, Path::new("python3"));
            c.args(["-m", "http.server", port, "--bind", "::"]);
            listeners.push(Proc::spawn(
                c,
                dir.path().join(format!("listener-{port}.log")),
            ));
        }
        let operator_dir = dir.path().join("operator");
        std::fs::create_dir_all(&operator_dir).expect("dir");
        let operator = operator_toml(
            &operator_dir,
            &pki.operator("alice"),
            format!("{}:{PORT}", Host::Collector.v4())
                .parse()
                .expect("addr"),
        );
        let watched = dir.path().join("watched");
        std::fs::create_dir_all(&watched).expect("watched");
        let agent_dir = dir.path().join("agent");
        std::fs::create_dir_all(&agent_dir).expect("agent dir");
        let mut agent_options = AgentOptions {
            watch: vec![watched.clone()],
            net_listener: false,
            ..AgentOptions::default()
        };
        change(&mut agent_options);
        let mut site = Self {
            collector_config: config,
            dir,
            lab,
            pki,
            operator,
            agent_dir,
            agent_options,
            watched,
            collector: Some(collector),
            agent: None,
            _listeners: listeners,
        };
        site.wait_until(
            |s| s.lab.can_connect(Host::Peer, &Host::Collector.v4(), PORT),
            "collector listening",
        );
        site.wait_until(
            |s| s.lab.can_connect(Host::Agent, &Host::Peer.v4(), 9000),
            "peer listener",
        );
        site.wait_until(
            |s| s.lab.can_connect(Host::Peer, &Host::Agent.v4(), 9001),
            "agent-side listener",
        );
        site.start_agent();
        site
    }

    fn spawn_collector(lab: &Lab, config: &Path) -> Proc {
        let mut command = lab.command(Host::Collector, &bin("bannin-collector"));
        command.arg("serve").arg("--config").arg(config);
        let n = std::fs::read_dir(config.parent().expect("collector dir"))
            .map(|d| d.count())
            .unwrap_or(0);
        Proc::spawn(command, config.with_file_name(format!("collector-{n}.log")))
    }

    /// The collector's store directory.
    pub(crate) fn collector_store(&self) -> std::path::PathBuf {
        self.collector_config.with_file_name("store")
    }

    /// Starts the collector again (after a test stopped it) and waits until it serves.
    pub(crate) fn restart_collector(&mut self) {
        self.collector = Some(Self::spawn_collector(&self.lab, &self.collector_config));
        self.wait_until(|s| s.cli(&["hosts"]).0, "collector serving again");
    }

    pub(crate) fn wait_until(&mut self, check: impl Fn(&Self) -> bool, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !check(self) {
            let logs: String = [&self.collector, &self.agent]
                .iter()
                .filter_map(|p| p.as_ref().map(|p| p.log_text()))
                .collect();
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_agent(&mut self) {
        let tls = self.pki.agent("web-01");
        let config = agent_config(
            &self.agent_dir,
            &tls,
            format!("{}:{PORT}", Host::Collector.v4())
                .parse()
                .expect("addr"),
            &self.agent_options,
        );
        let mut command = self.lab.command(Host::Agent, &bin("bannin-agent"));
        command.arg("run").arg("--config").arg(&config);
        let n = std::fs::read_dir(&self.agent_dir)
            .map(|d| d.count())
            .unwrap_or(0);
        self.agent = Some(Proc::spawn(
            command,
            self.agent_dir.join(format!("agent-{n}.log")),
        ));
        self.wait_until(
            |s| s.host_field("online") == Some(serde_json::Value::Bool(true)),
            "agent online",
        );
    }

    /// Runs `bannin ARGS` in the collector's namespace without --json: (ok, stdout, stderr).
    pub(crate) fn cli_text(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .lab
            .command(Host::Collector, &bin("bannin"))
            .args(args)
            .arg("--config")
            .arg(&self.operator)
            .output()
            .expect("bannin");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn cli(&self, args: &[&str]) -> (bool, serde_json::Value, String) {
        let out = self
            .lab
            .command(Host::Collector, &bin("bannin"))
            .args(args)
            .arg("--json")
            .arg("--config")
            .arg(&self.operator)
            .output()
            .expect("bannin");
        let value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (
            out.status.success(),
            value,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn host_field(&self, field: &str) -> Option<serde_json::Value> {
        let (_, hosts, _) = self.cli(&["hosts"]);
        hosts
            .as_array()?
            .iter()
            .find(|h| h["host_id"] == "web-01")
            .map(|h| h[field].clone())
    }

    pub(crate) fn reachability(&self) -> [bool; 4] {
        [
            self.lab.can_connect(Host::Agent, &Host::Peer.v4(), 9000),
            self.lab.can_connect(Host::Agent, &Host::Peer.v6(), 9000),
            self.lab.can_connect(Host::Peer, &Host::Agent.v4(), 9001),
            self.lab.can_connect(Host::Peer, &Host::Agent.v6(), 9001),
        ]
    }

    /// Whether a TCP SYN forged from the collector's address and port, aimed at
    /// the agent host's own listener (9001), is let in: the agent's kernel then
    /// holds a half-open connection (SYN-RECV) for it. The collector's
    /// namespace drops its own RSTs meanwhile, so the half-open one stays
    /// visible. (A raw socket from Python: the listening collector owns the port.)
    pub(crate) fn spoofed_syn_accepted(&self) -> bool {
        let rules = "table inet probe\ndelete table inet probe\ntable inet probe {\n  chain out {\n    type filter hook output priority 0;\n    tcp flags rst drop\n  }\n}\n";
        let mut nft = self.lab.command(Host::Collector, Path::new("nft"));
        nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
        let mut child = nft.spawn().expect("nft");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(rules.as_bytes())
                .expect("rules");
        }
        assert!(child.wait().expect("nft").success(), "probe table");
        let script = r#"
import socket, struct, sys
src, dst, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
hdr = struct.pack('!HHIIBBHHH', sport, dport, 4242, 0, 5 << 4, 0x02, 64240, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(hdr))
hdr = hdr[:16] + struct.pack('!H', csum(pseudo + hdr)) + hdr[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
s.bind((src, 0))
s.sendto(hdr, (dst, 0))
"#;
        let sent = self
            .lab
            .command(Host::Collector, Path::new("python3"))
            .args(["-c", script, &Host::Collector.v4(), &Host::Agent.v4()])
            .arg(PORT.to_string())
            .arg("9001")
            .status()
            .expect("python3");
        assert!(sent.success(), "the forged SYN was sent");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let out = self
            .lab
            .command(Host::Agent, Path::new("ss"))
            .args(["-Htn", "state", "syn-recv"])
            .output()
            .expect("ss");
        // A dual-stack listener shows the peer IPv4-mapped: `[::ffff:10.77.0.1]:7443`.
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let peer = Host::Collector.v4();
        text.contains(&format!("{peer}:{PORT}")) || text.contains(&format!("{peer}]:{PORT}"))
    }

    pub(crate) fn has_table(&self) -> bool {
        self.lab
            .nft(Host::Agent, &["list", "tables"])
            .map(|t| t.contains("bannin_isolation"))
            .unwrap_or(false)
    }

    pub(crate) fn odd_file_arrives(&mut self, name: &str) {
        std::fs::write(self.watched.join(format!(" {name}")), b"x").expect("odd file");
        let wanted = format!(" {name}");
        self.wait_until(
            |s| {
                let (_, events, _) = s.cli(&["events", "web-01", "--kind", "file.odd_name"]);
                events.as_array().is_some_and(|e| {
                    e.iter().any(|e| {
                        e["attributes"]["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with(&wanted))
                    })
                })
            },
            "telemetry from the agent",
        );
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Processes first, then the namespaces (Lab's own drop).
        self.agent.take();
        self.collector.take();
        self._listeners.clear();
    }
}

#[test]
fn isolation_in_network_namespaces_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let mut site = Site::new();
    assert_eq!(
        site.reachability(),
        [true; 4],
        "before isolation everything connects"
    );
    assert_eq!(site.host_field("isolation"), Some("not isolated".into()));

    let (ok, record, stderr) = site.cli(&["isolate", "web-01", "--reason", "compromised"]);
    assert!(ok, "{record} {stderr}");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(site.has_table());
    assert_eq!(
        site.reachability(),
        [false; 4],
        "isolated over IPv4 and IPv6, both ways"
    );
    assert_eq!(site.host_field("isolation"), Some("isolated".into()));
    assert!(
        !site.spoofed_syn_accepted(),
        "a packet forged from the collector's address and port reaches no other local port"
    );
    site.odd_file_arrives("while-isolated");
    let (ok, again, _) = site.cli(&["isolate", "web-01", "--reason", "twice is harmless"]);
    assert!(ok && again["state"] == "succeeded", "{again}");

    // A restart — and a reboot, which loses the table — re-applies isolation first.
    site.agent.take();
    site.lab
        .nft(
            Host::Agent,
            &["delete", "table", "inet", "bannin_isolation"],
        )
        .expect("delete table");
    assert!(site.reachability()[0], "table gone while the agent is down");
    site.start_agent();
    assert!(site.has_table(), "re-applied at start");
    assert_eq!(site.reachability(), [false; 4]);
    site.odd_file_arrives("after-restart");
    assert_eq!(site.host_field("isolation"), Some("isolated".into()));

    let (ok, record, stderr) = site.cli(&["release", "web-01", "--reason", "clean"]);
    assert!(ok, "{record} {stderr}");
    assert_eq!(record["state"], "succeeded");
    assert!(!site.has_table(), "no Bannin table remains");
    assert_eq!(
        site.reachability(),
        [true; 4],
        "after release everything connects again"
    );
    assert!(
        site.spoofed_syn_accepted(),
        "the forged SYN is the probe it claims to be: without isolation it is let in"
    );
    assert_eq!(site.host_field("isolation"), Some("not isolated".into()));
    let (ok, twice, _) = site.cli(&["release", "web-01", "--reason", "again"]);
    assert!(
        ok && twice["result"]
            .as_str()
            .is_some_and(|r| r.contains("not isolated")),
        "{twice}"
    );

    let (_, commands, _) = site.cli(&["commands", "--host", "web-01"]);
    let verbs: Vec<&str> = commands
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["verb"].as_str())
        .collect();
    assert_eq!(verbs, ["isolate", "isolate", "release", "release"]);
}

#[test]
fn isolation_whose_self_test_fails_rolls_back_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let site = Site::new();
    // New connections to the collector are dropped on the collector's side; the
    // agent's established stream survives, so the command still arrives.
    let block = format!(
        "table inet testblock {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {} tcp dport {PORT} ct state new drop\n  }}\n}}\n",
        Host::Agent.v4()
    );
    let file = site.dir.path().join("block.nft");
    std::fs::write(&file, block).expect("write rules");
    let path = file.display().to_string();
    site.lab
        .nft(Host::Collector, &["-f", &path])
        .expect("block new connections");
    let (ok, record, _) = site.cli(&["isolate", "web-01", "--reason", "should roll back"]);
    assert!(!ok);
    assert_eq!(record["state"], "failed", "{record}");
    let result = record["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("rolled back") && result.contains("NOT isolated"),
        "{result}"
    );
    assert!(!site.has_table(), "the table was removed");
    assert_eq!(site.reachability(), [true; 4]);
    assert_eq!(site.host_field("isolation"), Some("not isolated".into()));
    site.lab
        .nft(Host::Collector, &["delete", "table", "inet", "testblock"])
        .expect("unblock");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_triage_answers_read_only_questions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("triage-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "triage-host").await;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let evidence = dir.path().join("evidence");
    std::fs::create_dir_all(&evidence).expect("dir");
    std::fs::write(evidence.join("dropper.sh"), b"abc").expect("file");
    let fifo = evidence.join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );

    let triage = |args: &[&str]| {
        let mut all = vec!["triage", "triage-host"];
        all.extend_from_slice(args);
        bannin_json(&operator, &all)
    };

    let file = evidence.join("dropper.sh").display().to_string();
    let (ok, hash, err) = triage(&["hash", &file]);
    assert!(ok, "{err}");
    assert_eq!(
        hash["rows"][0]["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let (ok, listing, err) = triage(&["ls", &evidence.display().to_string()]);
    assert!(ok, "{err}");
    let names: Vec<&str> = listing["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["dropper.sh", "pipe"]);
    assert_eq!(listing["rows"][1]["type"], "fifo");
    let (ok, processes, err) = triage(&["processes"]);
    assert!(ok, "{err}");
    assert!(
        processes["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|p| p["comm"] == "bannin-agent"),
        "the agent sees itself"
    );
    let (ok, listeners, err) = triage(&["listeners"]);
    assert!(ok, "{err}");
    let port = collector.addr.port().to_string();
    assert!(
        listeners["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|l| l["local"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":{port}")))),
        "the collector's listener is seen"
    );

    let (ok, _, err) = triage(&["hash", &fifo.display().to_string()]);
    assert!(
        !ok && err.contains("fifo") && err.contains("refused"),
        "{err}"
    );
    let (ok, _, err) = triage(&["stat", "/etc/../etc/shadow"]);
    assert!(!ok && err.contains(".."), "{err}");
    let (ok, _, err) = triage(&["stat", "relative/path"]);
    assert!(!ok && err.contains("absolute"), "{err}");
}

#[test]
fn offline_snapshot_bundle_verifies_and_refuses_devices_and_fifos() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let named = dir.path().join("note.txt");
    std::fs::write(&named, b"left by the attacker").expect("file");
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
    let out = dir.path().join("snap.tar.zst");
    let run = Command::new(bin("bannin-agent"))
        .args([
            "snapshot",
            "--reason",
            "triage",
            "--operator",
            "alice",
            "--out",
        ])
        .arg(&out)
        .args(["--file", &named.display().to_string()])
        .args(["--file", &fifo.display().to_string()])
        .args(["--file", "/dev/null"])
        .args(["--file", &link.display().to_string()])
        .output()
        .expect("snapshot");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::metadata(&out)
            .expect("bundle")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        stdout.contains("FIFO") && stdout.contains("/dev/null") && stdout.contains("symlink"),
        "{stdout}"
    );

    // Read the bundle back with nothing but tar and zstd, and check every hash.
    let decoder = zstd::Decoder::new(std::fs::File::open(&out).expect("open")).expect("zstd");
    let mut archive = tar::Archive::new(decoder);
    let mut contents = std::collections::BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        contents.insert(path, bytes);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&contents["manifest.json"]).expect("manifest");
    assert_eq!(manifest["operator"], "alice");
    assert_eq!(manifest["reason"], "triage");
    assert!(
        manifest["started"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    let artifacts = manifest["artifacts"].as_array().expect("artifacts");
    assert!(artifacts.len() >= 5);
    assert_eq!(
        artifacts[0]["path"], "artifacts/processes.json",
        "most volatile first"
    );
    for a in artifacts {
        let bytes = &contents[a["path"].as_str().expect("path")];
        let digest = {
            use sha2::Digest;
            sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(a["sha256"], digest.as_str(), "{}", a["path"]);
        assert_eq!(a["size"], bytes.len());
    }
    let note = artifacts
        .iter()
        .find(|a| a["source"] == named.display().to_string())
        .expect("named file");
    assert_eq!(
        contents[note["path"].as_str().expect("path")],
        b"left by the attacker"
    );
    let skipped: Vec<String> = manifest["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["error"].to_string())
        .collect();
    assert!(
        skipped
            .iter()
            .any(|e| e.contains("pipe") && e.contains("refused")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|e| e.contains("/dev/null") && e.contains("refused")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|e| e.contains("symlink (not followed)")),
        "{skipped:?}"
    );
}

fn snapshot_via_cli() -> (
    tempfile::TempDir,
    bool,
    serde_json::Value,
    String,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector_dir = dir.path().join("collector");
    let collector = CollectorProc::start(&collector_dir, &pki, free_port(), "");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("snap-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let named = dir.path().join("webshell.php");
    std::fs::write(&named, b"<?php system($_GET['c']); ?>").expect("file");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let out = Command::new(bin("bannin"))
        .args([
            "snapshot",
            "snap-host",
            "--reason",
            "suspected webshell",
            "--json",
            "--file",
        ])
        .arg(&named)
        .arg("--config")
        .arg(&operator)
        .output()
        .expect("snapshot");
    let record: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let logs = format!("{}\n{}", agent.log_text(), collector.proc.log_text());
    drop(agent);
    drop(collector);
    (
        dir,
        out.status.success(),
        record,
        logs,
        collector_dir.join("evidence"),
    )
}

#[test]
fn snapshot_arrives_and_every_hash_verifies() {
    use std::io::Read;
    let (_dir, ok, record, logs, evidence) = snapshot_via_cli();
    assert!(ok, "{record}\n{logs}");
    assert_eq!(record["state"], "succeeded");
    let result = record["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("evidence e1 stored and verified"),
        "{result}"
    );
    let stored: Vec<_> = std::fs::read_dir(&evidence)
        .expect("evidence dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.zst"))
        .collect();
    assert_eq!(stored.len(), 1);
    // Content-addressed: the name is the bundle's SHA-256.
    let bytes = std::fs::read(stored[0].path()).expect("bundle");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        stored[0].file_name().to_string_lossy(),
        format!("{digest}.tar.zst")
    );
    assert!(result.contains(&digest));
    let mut archive = tar::Archive::new(zstd::Decoder::new(bytes.as_slice()).expect("zstd"));
    let mut manifest = None;
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").display().to_string() == "manifest.json" {
            let mut m = Vec::new();
            entry.read_to_end(&mut m).expect("read");
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&m).expect("json"));
        }
    }
    let manifest = manifest.expect("manifest");
    assert_eq!(
        manifest["operator"], "alice",
        "the collector names the operator"
    );
    assert_eq!(manifest["reason"], "suspected webshell");
    assert_eq!(manifest["host_id"], "snap-host");
    assert_eq!(manifest["command_id"], record["id"]);
    assert!(
        manifest["artifacts"]
            .as_array()
            .expect("artifacts")
            .iter()
            .any(|a| a["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("webshell.php")))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_with_a_byte_flipped_in_transit_fails_and_stores_nothing() {
    // A simulated agent answers the snapshot with a chunk whose bytes no longer
    // match the hash it was sent with (a byte flipped in transit), then claims
    // success: the collector's own check decides. (No hook in the real agent:
    // nothing from the tests is in a shipped binary.)
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector_dir = dir.path().join("collector");
    let collector = CollectorProc::start(&collector_dir, &pki, free_port(), "");
    let mut agent =
        bannin_tests::sim::SimAgent::connect(&pki, "snap-host", collector.addr, &[], &[])
            .await
            .expect("connect");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let cli = {
        let operator = operator.clone();
        tokio::task::spawn_blocking(move || {
            bannin_json(
                &operator,
                &["snapshot", "snap-host", "--reason", "suspected webshell"],
            )
        })
    };
    let command = agent.next_command().await.expect("the snapshot command");
    assert!(
        matches!(command.body, Some(v1::command::Body::Snapshot(_))),
        "{command:?}"
    );
    let sent = vec![7u8; 4096];
    let mut flipped = sent.clone();
    flipped[0] ^= 0xff;
    agent
        .send_chunk(v1::EvidenceChunk {
            command_id: command.id.clone(),
            offset: 0,
            data: flipped.into(),
            sha256: bannin_proto::sha256_hex(&sent),
            last: true,
            bundle_size: sent.len() as u64,
            bundle_sha256: bannin_proto::sha256_hex(&sent),
        })
        .await
        .expect("chunk");
    agent
        .send_result(v1::CommandResult {
            command_id: command.id,
            ok: true,
            detail: "snapshot sent".into(),
        })
        .await
        .expect("result");
    let (ok, record, err) = cli.await.expect("cli");
    assert!(!ok, "{record}");
    assert_eq!(record["state"], "failed", "{record}\n{err}");
    let result = record["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("offset 0") && result.contains("SHA-256"),
        "{result}"
    );
    let evidence = collector_dir.join("evidence");
    let stored = std::fs::read_dir(&evidence)
        .expect("evidence dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tar.zst"))
        .count();
    assert_eq!(stored, 0, "no bundle stored");
    let incoming = std::fs::read_dir(evidence.join("incoming"))
        .expect("incoming")
        .count();
    assert_eq!(incoming, 0, "no partial upload left");
}

#[test]
fn no_binary_the_tests_build_holds_a_test_hook() {
    // Cargo unifies features across a workspace build (cargo#4463): whatever
    // the tests enable is in the binaries `cargo build --release --workspace`
    // makes. These are those binaries, built with the tests' features.
    let marker = ["BANNIN", "_TEST_"].concat();
    for name in ["bannin-agent", "bannin-collector", "bannin"] {
        // grep: exit 0 found, 1 not found, 2 an error.
        let status = Command::new("grep")
            .args(["-q", "-a", "-F", &marker])
            .arg(bin(name))
            .status()
            .expect("grep");
        assert_eq!(
            status.code(),
            Some(1),
            "{name} holds a test hook ({marker}…), or grep failed"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn isolate_without_nftables_fails_with_a_clear_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    // An agent whose PATH holds no `nft`.
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("bare-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            env: vec![(
                "PATH".into(),
                dir.path().join("empty-bin").display().to_string(),
            )],
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "bare-host").await;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let out = Command::new(bin("bannin"))
        .args([
            "isolate",
            "bare-host",
            "--reason",
            "test",
            "--json",
            "--config",
        ])
        .arg(&operator)
        .output()
        .expect("isolate");
    assert!(!out.status.success());
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(record["state"], "failed");
    assert!(
        record["result"]
            .as_str()
            .is_some_and(|r| r.contains("nftables is not installed")
                || r.contains("nft (nftables) is not installed")),
        "{record}"
    );
    let hosts = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect("hosts")
        .into_inner()
        .hosts;
    let host = hosts
        .iter()
        .find(|h| h.host_id == "bare-host")
        .expect("host");
    assert_eq!(
        host.isolation, "not isolated",
        "a failed isolation is shown as such"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn action_log_verify_names_the_entry_changed_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector_dir = dir.path().join("collector");
    let mut collector = CollectorProc::start(&collector_dir, &pki, port, "");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    for reason in ["first", "second", "third"] {
        client
            .issue_command(v1::IssueCommandRequest {
                host_id: "audited-host".into(),
                command: Some(v1::CommandBody::ping()),
                reason: reason.into(),
                ..Default::default()
            })
            .await
            .expect("issue");
    }
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let run = |args: &[&str]| {
        let (ok, value, _) = bannin_json(&operator, args);
        (ok, value)
    };
    let (ok, actions) = run(&["actions", "--host", "audited-host"]);
    assert!(ok);
    let actions = actions.as_array().expect("array").clone();
    assert_eq!(actions.len(), 3);
    assert_eq!(actions[1]["reason"], "second");
    assert_eq!(actions[1]["prev_sha256"], actions[0]["sha256"], "chained");
    let (ok, verdict) = run(&["actions", "verify"]);
    let (_, all) = run(&["actions"]);
    let total = all.as_array().expect("array").len();
    assert!(
        ok && verdict["ok"] == true && verdict["entries"] == total,
        "{verdict}"
    );
    let tampered = actions[1]["seq"].as_u64().expect("seq");

    // Change entry 2 behind the collector's back, directly in its store.
    drop(client);
    assert!(
        collector.proc.terminate(Duration::from_secs(15)),
        "clean stop"
    );
    {
        let db = sled::open(collector_dir.join("store")).expect("open store");
        let tree = db.open_tree("actions").expect("tree");
        let key = tampered.to_be_bytes();
        let mut value = tree.get(key).expect("get").expect("the entry").to_vec();
        let at = value
            .windows(6)
            .position(|w| w == b"second")
            .expect("reason bytes");
        value[at..at + 6].copy_from_slice(b"SECOND");
        tree.insert(key, value).expect("insert");
        db.flush().expect("flush");
    }
    let collector = CollectorProc::start_with(&collector_dir, collector.config.clone(), port);
    let (ok, verdict) = run(&["actions", "verify"]);
    assert!(!ok, "verification fails");
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["first_bad_seq"], tampered, "{verdict}");
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains("changed")),
        "{verdict}"
    );
    drop(collector);
}

#[test]
fn evidence_custody_verify_export_and_dispose() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector_dir = dir.path().join("collector");
    let collector = CollectorProc::start(&collector_dir, &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("case-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let run = |args: &[&str]| bannin_json(&operator, args);
    let (ok, record, err) = run(&["snapshot", "case-host", "--reason", "case 7"]);
    assert!(ok, "{record} {err}");
    let (_, list, _) = run(&["evidence", "list"]);
    let item = list[0].clone();
    assert_eq!(item["id"], "e1");
    assert_eq!(item["operator"], "alice");
    assert_eq!(item["state"], "held");

    let (ok, verified, _) = run(&["evidence", "verify", "e1"]);
    assert!(ok && verified["verified"] == true, "{verified}");
    let out = dir.path().join("export");
    let (ok, exported, err) = run(&[
        "evidence",
        "export",
        "e1",
        "--to",
        out.to_str().expect("utf8"),
        "--recipient",
        "Legal",
        "--reason",
        "court",
    ]);
    assert!(ok, "{exported} {err}");
    for f in ["manifest.json", "custody.json", "SHA256SUMS", "README.txt"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // A third party checks it with standard tools.
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out)
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let custody: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("custody.json")).expect("custody"))
            .expect("json");
    let verbs: Vec<&str> = custody["custody"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|a| a["verb"].as_str())
        .collect();
    assert_eq!(
        verbs,
        [
            "evidence.received",
            "evidence.verified",
            "evidence.exported"
        ]
    );

    // Change one byte of the stored bundle: verify names it, export refuses it.
    let sha = item["sha256"].as_str().expect("sha");
    let stored = collector_dir
        .join("evidence")
        .join(format!("{sha}.tar.zst"));
    let mut bytes = std::fs::read(&stored).expect("bundle");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&stored, &bytes).expect("tamper");
    let (ok, verified, _) = run(&["evidence", "verify", "e1"]);
    assert!(!ok);
    assert!(
        verified["verify_result"]
            .as_str()
            .is_some_and(|r| r.contains("MODIFIED")),
        "{verified}"
    );
    let (ok, _, err) = run(&[
        "evidence",
        "export",
        "e1",
        "--to",
        dir.path().join("again").to_str().expect("utf8"),
        "--recipient",
        "x",
        "--reason",
        "y",
    ]);
    assert!(!ok && err.contains("no longer matches"), "{err}");

    let (ok, disposed, err) = run(&[
        "evidence",
        "dispose",
        "e1",
        "--method",
        "wiped",
        "--reason",
        "case closed",
    ]);
    assert!(ok, "{err}");
    assert_eq!(disposed["record"]["state"], "disposed");
    assert!(!stored.exists(), "wiped");
    let verbs: Vec<&str> = disposed["custody"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|a| a["verb"].as_str())
        .collect();
    assert_eq!(verbs.last(), Some(&"evidence.disposed"));
    let (ok, verdict, _) = run(&["actions", "verify"]);
    assert!(
        ok && verdict["ok"] == true,
        "custody is part of the one hash chain: {verdict}"
    );
}

/// `bannin capture` on an isolated host: what still reaches it (connection
/// attempts from the lab's peer, which the isolation drops) is captured, what
/// the filter refuses is not, the bundle is held as verified evidence, and
/// Debian's `tcpdump -r` reads the pcapng from the exported bundle.
#[test]
fn a_capture_on_an_isolated_host_is_evidence_that_tcpdump_reads_needs_root() {
    use bannin_tests::Need;
    if !bannin_tests::runnable(&[Need::Root, Need::Program("tcpdump", "tcpdump")]) {
        return;
    }
    let site = Site::new();
    let (ok, record, err) = site.cli(&["isolate", "web-01", "--reason", "IR-9 contain"]);
    assert!(ok && record["state"] == "succeeded", "{record} {err}");

    // Refused before it reaches the host: out of bounds, or no reason.
    let (ok, _, err) = site.cli(&["capture", "web-01", "--seconds", "5", "--reason", " "]);
    assert!(!ok && err.contains("reason"), "{err}");
    let (ok, _, err) = site.cli(&[
        "capture",
        "web-01",
        "--seconds",
        "5",
        "--interface",
        "../x",
        "--reason",
        "IR-9",
    ]);
    assert!(!ok && err.contains("not an interface"), "{err}");
    // A filter libpcap refuses fails on the host, with libpcap's words.
    let (ok, record, _) = site.cli(&[
        "capture",
        "web-01",
        "--seconds",
        "5",
        "--filter",
        "tcp port banana",
        "--reason",
        "IR-9",
    ]);
    assert!(!ok && record["state"] == "failed", "{record}");
    assert!(
        record["result"]
            .as_str()
            .is_some_and(|r| r.contains("banana")),
        "{record}"
    );

    let peer = Host::Peer.v4();
    let agent = Host::Agent.v4();
    let (record, ok, err) = std::thread::scope(|s| {
        let capture = s.spawn(|| {
            site.cli(&[
                "capture",
                "web-01",
                "--seconds",
                "8",
                "--filter",
                "tcp port 9001",
                "--reason",
                "IR-9 what still reaches the host",
            ])
        });
        // Connection attempts to the agent's listener (dropped by the
        // isolation, seen on the wire), and UDP the filter refuses.
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..3 {
            assert!(
                !site.lab.can_connect(Host::Peer, &agent, 9001),
                "the host is isolated"
            );
            let sent = site
                .lab
                .command(Host::Peer, Path::new("python3"))
                .args([
                    "-c",
                    "import socket,sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'noise', (sys.argv[1], 5999))",
                    &agent,
                ])
                .status()
                .expect("python3");
            assert!(sent.success());
        }
        let (ok, record, err) = capture.join().expect("capture thread");
        (record, ok, err)
    });
    assert!(ok && record["state"] == "succeeded", "{record} {err}");
    let result = record["result"].as_str().unwrap_or_default();
    assert!(result.contains("stored and verified"), "{result}");

    // Held as evidence, with custody; it verifies.
    let (ok, list, err) = site.cli(&["evidence", "list"]);
    assert!(ok, "{err}");
    let item = list
        .as_array()
        .and_then(|l| l.iter().find(|e| e["command_id"] == record["id"]))
        .unwrap_or_else(|| panic!("the capture is evidence: {list}"))
        .clone();
    let id = item["id"].as_str().expect("evidence id").to_owned();
    let (ok, verified, err) = site.cli(&["evidence", "verify", &id]);
    assert!(ok, "{verified} {err}");
    let (ok, shown, err) = site.cli(&["evidence", "show", &id]);
    assert!(ok, "{err}");
    let capture = &shown["manifest"]["capture"];
    assert_eq!(capture["filter"], "tcp port 9001", "{shown}");
    assert_eq!(capture["interfaces"][0]["name"], "eth0", "{shown}");
    assert!(capture["packets"].as_u64() >= Some(3), "{shown}");
    assert_eq!(
        shown["manifest"]["reason"],
        "IR-9 what still reaches the host"
    );

    // Exported, unpacked, read back with tcpdump.
    let export = site.dir.path().join("capture-export");
    let (ok, _, err) = site.cli(&[
        "evidence",
        "export",
        &id,
        "--to",
        export.to_str().expect("utf8"),
        "--recipient",
        "CSIRT",
        "--reason",
        "analysis",
    ]);
    assert!(ok, "{err}");
    let bundle = std::fs::read_dir(&export)
        .expect("export dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("the bundle is exported");
    let tar = zstd::decode_all(std::fs::File::open(&bundle).expect("bundle")).expect("zstd");
    let mut archive = tar::Archive::new(tar.as_slice());
    let pcap = site.dir.path().join("capture.pcapng");
    let mut found = false;
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() == "artifacts/capture.pcapng" {
            entry.unpack(&pcap).expect("unpack");
            found = true;
        }
    }
    assert!(found, "the bundle holds artifacts/capture.pcapng");
    let read = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&pcap)
        .output()
        .expect("tcpdump");
    let shown = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let syns = shown
        .lines()
        .filter(|l| {
            l.contains(&format!("{peer}.")) && l.contains(&format!("> {agent}.9001: Flags [S]"))
        })
        .count();
    assert!(
        syns >= 3,
        "the peer's SYNs to 9001 are in the capture:\n{shown}"
    );
    assert!(
        !shown.contains("5999") && !shown.contains("UDP"),
        "what the filter refuses is not:\n{shown}"
    );
}
