//! Sigma rules end to end: a collector with a rules directory, a real agent, a
//! real process and a real file matched by rules written here; a correlation
//! across three hosts raised once; reloads that keep the old rules when a file
//! is broken; `bannin sigma test` on exported events; a network connection rule
//! matched by a real connection in the namespace lab.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bannin_proto::now_unix_ms;
use bannin_proto::v1;
use bannin_tests::sim::{SimAgent, event};
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, bin, eventually, free_port, operator_client,
    operator_toml, start_agent,
};

use crate::all_findings;

const MARKER: &str = "bannin-sigma-marker";

const PROCESS_RULE: &str = r#"title: Marker in a shell command line
id: 0b6a4e0e-5c1b-4c53-9d0e-000000000001
status: experimental
level: high
tags:
  - attack.execution
  - attack.t1059.004
falsepositives:
  - the Bannin test suite
logsource:
  product: linux
  category: process_creation
detection:
  marker:
    CommandLine|contains: bannin-sigma-marker
  shell:
    Image|endswith:
      - /sh
      - /dash
      - /bash
  condition: marker and shell
"#;

const FILE_RULE: &str = r#"title: Odd file named for the test
id: 0b6a4e0e-5c1b-4c53-9d0e-000000000002
level: medium
logsource:
  product: linux
  category: file_event
detection:
  sel:
    TargetFilename|contains: sigma-odd
  condition: sel
"#;

const CORRELATION_RULES: &str = r#"title: whoami-sim run
name: whoami-sim
logsource:
  product: linux
  category: process_creation
detection:
  sel:
    Image|endswith: /whoami-sim
  condition: sel
---
title: Reconnaissance on three hosts
id: 0b6a4e0e-5c1b-4c53-9d0e-0000000000c1
level: critical
correlation:
  type: event_count
  rules:
    - whoami-sim
  timespan: 10m
  condition:
    gte: 3
"#;

const WINDOWS_RULE: &str = r#"title: A Windows rule
id: 0b6a4e0e-5c1b-4c53-9d0e-0000000000f1
logsource:
  product: windows
  category: process_creation
detection:
  sel:
    Image|endswith: \cmd.exe
  condition: sel
"#;

fn sigma_findings<'a>(f: &'a [v1::Finding], kind: &str, title: &str) -> Vec<&'a v1::Finding> {
    f.iter()
        .filter(|f| {
            f.kind == kind && f.attributes.get("sigma.title").map(String::as_str) == Some(title)
        })
        .collect()
}

/// The Sigma part of `bannin rules --json`.
pub(crate) fn rules_in_force(operator: &Path) -> serde_json::Value {
    let (ok, rules, err) = bannin_json(operator, &["rules"]);
    assert!(ok, "bannin rules: {err}");
    rules["sigma"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigma_rules_match_real_processes_and_files_and_correlate_across_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("linux")).expect("rules dir");
    std::fs::write(rules.join("linux/process.yml"), PROCESS_RULE).expect("rule");
    std::fs::write(rules.join("linux/file.yaml"), FILE_RULE).expect("rule");
    std::fs::write(rules.join("correlation.yml"), CORRELATION_RULES).expect("rule");
    std::fs::write(rules.join("windows.yml"), WINDOWS_RULE).expect("rule");
    std::fs::write(rules.join("README.txt"), "not a rule").expect("readme");
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        &format!("[sigma]\npaths = [{:?}]\n", rules.display().to_string()),
    );
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);

    let sigma = rules_in_force(&operator);
    assert_eq!(sigma["rules"].as_array().map(Vec::len), Some(4), "{sigma}");
    assert_eq!(sigma["files"], 4, "{sigma}");
    let refused = &sigma["refused"][0];
    assert_eq!(refused["title"], "A Windows rule", "{sigma}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("product \"windows\"")),
        "{refused}"
    );

    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("sigma-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            watch: vec![watched.clone()],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    eventually(Duration::from_secs(30), "exec telemetry", || {
        let mut c = client.clone();
        async move {
            (!crate::all_events(&mut c, "sigma-host", "process.exec")
                .await
                .is_empty())
            .then_some(())
        }
    })
    .await;

    // A real process: a shell whose command line carries the marker (the `;`
    // keeps the shell from executing its last command in place).
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut shell = Command::new("sh")
        .args(["-c", &format!("sleep 60; : {MARKER}")])
        .current_dir(&work)
        .spawn()
        .expect("sh");
    let pid = shell.id().to_string();
    // A real file the odd-name sensor reports (a leading space).
    std::fs::write(watched.join(" sigma-odd"), b"x").expect("odd file");

    let title = "Marker in a shell command line";
    let found = eventually(Duration::from_secs(30), "sigma.match findings", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            (!sigma_findings(&f, "sigma.match", title).is_empty()
                && !sigma_findings(&f, "sigma.match", "Odd file named for the test").is_empty())
            .then_some(f)
        }
    })
    .await;
    let m = sigma_findings(&found, "sigma.match", title);
    assert_eq!(m.len(), 1, "one process, one finding: {m:?}");
    let m = m[0];
    assert_eq!(m.host_id, "sigma-host");
    assert_eq!(m.severity, v1::Severity::High as i32);
    assert_eq!(
        m.attributes["sigma.id"],
        "0b6a4e0e-5c1b-4c53-9d0e-000000000001"
    );
    assert_eq!(m.attributes["sigma.level"], "high");
    assert_eq!(m.attributes["sigma.status"], "experimental");
    assert_eq!(
        m.attributes["sigma.tags"],
        "attack.execution,attack.t1059.004"
    );
    assert_eq!(
        m.attributes["sigma.falsepositives"],
        "the Bannin test suite"
    );
    assert_eq!(m.attributes["attack.technique"], "T1059.004");
    assert!(
        m.attributes["sigma.file"].ends_with("linux/process.yml"),
        "{m:?}"
    );
    assert_eq!(m.attributes["event.ProcessId"], pid);
    assert!(m.attributes["event.CommandLine"].contains(MARKER), "{m:?}");
    // The fields the agent now sends: working directory, parent command line, user.
    assert_eq!(
        m.attributes["event.CurrentDirectory"],
        work.display().to_string(),
        "{m:?}"
    );
    assert!(
        m.attributes.contains_key("event.ParentCommandLine"),
        "{m:?}"
    );
    // The user the test runs as (root under CI).
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id");
    assert_eq!(
        m.attributes["event.User"],
        String::from_utf8_lossy(&me.stdout).trim(),
        "{m:?}"
    );
    let file = sigma_findings(&found, "sigma.match", "Odd file named for the test")[0];
    assert!(
        file.attributes["event.TargetFilename"].ends_with(" sigma-odd"),
        "{file:?}"
    );
    assert_eq!(file.severity, v1::Severity::Medium as i32);
    let _ = shell.kill();
    let _ = shell.wait();

    // A correlation across three (simulated) hosts: raised once, naming them.
    let now = now_unix_ms();
    let mut fleet = Vec::new();
    for i in 0..4 {
        let host = format!("recon-{i}");
        let mut agent = SimAgent::connect(&pki, &host, collector.addr, &[], &[])
            .await
            .expect("simulated agent");
        if i < 3 {
            agent
                .send(&[event(
                    "process.exec",
                    false,
                    now + i64::from(i) * 1000,
                    &[("exe", "/usr/local/bin/whoami-sim"), ("pid", "77")],
                )])
                .await
                .expect("send");
        }
        fleet.push(agent);
    }
    let recon = "Reconnaissance on three hosts";
    let found = eventually(Duration::from_secs(30), "sigma.correlation", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            (!sigma_findings(&f, "sigma.correlation", recon).is_empty()).then_some(f)
        }
    })
    .await;
    let c = sigma_findings(&found, "sigma.correlation", recon);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].attributes["hosts"], "recon-0,recon-1,recon-2");
    assert_eq!(c[0].severity, v1::Severity::Critical as i32);
    assert!(
        sigma_findings(&found, "sigma.match", "whoami-sim run").is_empty(),
        "a rule a correlation reads with generate: false raises nothing alone"
    );

    // Match counts and last match, per rule.
    let sigma = rules_in_force(&operator);
    let rule = |title: &str| {
        sigma["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["title"] == title).cloned())
            .unwrap_or_else(|| panic!("{title} listed: {sigma}"))
    };
    assert_eq!(rule(title)["matches"], 1, "{sigma}");
    assert!(rule(title)["last_match"].is_string(), "{sigma}");
    assert_eq!(rule(recon)["matches"], 1, "{sigma}");
    assert_eq!(rule("whoami-sim run")["generates"], false, "{sigma}");

    // `bannin sigma test` on the host's exported events, no collector needed.
    let (ok, events, err) = bannin_json(&operator, &["events", "sigma-host", "--limit", "100000"]);
    assert!(ok, "{err}");
    let exported = dir.path().join("events.json");
    std::fs::write(&exported, events.to_string()).expect("export");
    let out = Command::new(bin("bannin"))
        .args(["sigma", "test", "--json", "--events"])
        .arg(&exported)
        .arg(rules.join("linux/process.yml"))
        .output()
        .expect("bannin sigma test");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let matches = report["matches"].as_array().expect("matches");
    assert!(
        matches
            .iter()
            .any(|m| m["attributes"]["event.ProcessId"] == pid.as_str()),
        "{report}"
    );
    // Nothing matches: exit 1.
    let out = Command::new(bin("bannin"))
        .args(["sigma", "test", "--events"])
        .arg(&exported)
        .arg(rules.join("correlation.yml"))
        .output()
        .expect("bannin sigma test");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A broken file: the reload fails naming it, the rules in force stay.
    std::fs::write(
        rules.join("linux/broken.yml"),
        "title: Broken\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image: x\n  condition: sel and missing\n",
    )
    .expect("broken rule");
    let (ok, _, err) = bannin_json(&operator, &["rules", "reload"]);
    assert!(!ok, "a broken file fails the reload");
    assert!(err.contains("broken.yml"), "{err}");
    assert_eq!(
        rules_in_force(&operator)["rules"].as_array().map(Vec::len),
        Some(4),
        "the rules in force stay"
    );
    // Fixed, plus one more rule: the reload applies both, counters stay.
    std::fs::remove_file(rules.join("linux/broken.yml")).expect("rm");
    std::fs::write(
        rules.join("linux/more.yml"),
        "title: More\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /nothing-runs-this\n  condition: sel\n",
    )
    .expect("rule");
    let (ok, reloaded, err) = bannin_json(&operator, &["rules", "reload"]);
    assert!(ok, "{err}");
    assert_eq!(reloaded["loaded"], 5, "{reloaded}");
    assert_eq!(reloaded["refused"], 1, "{reloaded}");
    let sigma = rules_in_force(&operator);
    assert_eq!(sigma["rules"].as_array().map(Vec::len), Some(5));
    assert_eq!(rule(title)["matches"], 1, "counters survive a reload");
    // SIGHUP reloads too.
    std::fs::remove_file(rules.join("linux/more.yml")).expect("rm");
    let status = Command::new("kill")
        .args(["-HUP", &collector.proc.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    eventually(Duration::from_secs(30), "SIGHUP reload", || {
        let operator = operator.clone();
        async move {
            (rules_in_force(&operator)["rules"].as_array().map(Vec::len) == Some(4)).then_some(())
        }
    })
    .await;
    // Reloads are in the action log.
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    let reloads: Vec<&serde_json::Value> = actions
        .as_array()
        .map(|a| a.iter().filter(|a| a["verb"] == "rules.reload").collect())
        .unwrap_or_default();
    assert_eq!(reloads.len(), 2, "{actions}");
    drop(fleet);
}

/// A network connection rule matched by a real TCP connection inside the
/// namespace lab.
#[test]
fn a_network_connection_rule_matches_a_real_connection_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    use bannin_tests::netns::Host;
    let rule = format!(
        "title: Outbound to the lab peer's port 9000\nid: net-9000\nlevel: high\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    Initiated: 'true'\n    DestinationPort: 9000\n    DestinationIp|cidr: {}/24\n    Image|contains: /python3\n  condition: sel\n",
        Host::Peer.v4()
    );
    let mut site = crate::response::Site::with_collector(&[("net.yml", rule.as_str())], |o| {
        o.net_connection = true;
    });
    let mut client = site.lab.command(Host::Agent, Path::new("python3"));
    client.args([
        "-c",
        &format!(
            "import socket,time\ns=socket.create_connection(('{}', 9000))\ntime.sleep(60)\n",
            Host::Peer.v4()
        ),
    ]);
    let _client = bannin_tests::Proc::spawn(client, site.dir.path().join("client.log"));
    let matched = |s: &crate::response::Site| -> Option<serde_json::Value> {
        let (_, f, _) = s.cli(&["findings"]);
        f.as_array()?
            .iter()
            .find(|f| f["kind"] == "sigma.match" && f["attributes"]["sigma.id"] == "net-9000")
            .cloned()
    };
    site.wait_until(|s| matched(s).is_some(), "sigma.match on the connection");
    let f = matched(&site).expect("finding");
    assert_eq!(
        f["attributes"]["event.DestinationIp"],
        Host::Peer.v4(),
        "{f}"
    );
    assert_eq!(f["attributes"]["event.DestinationPort"], "9000", "{f}");
    assert_eq!(f["attributes"]["event.Initiated"], "true", "{f}");
    assert_eq!(f["attributes"]["event.SourceIp"], Host::Agent.v4(), "{f}");
    assert_eq!(f["severity"], "high", "{f}");
}

const PARENT_RULE: &str = r#"title: true run by the marker shell
id: 0b6a4e0e-5c1b-4c53-9d0e-000000000009
level: high
logsource:
  product: linux
  category: process_creation
detection:
  child:
    Image|endswith: /true
  parent:
    ParentCommandLine|contains: bannin-parent-marker
    ParentImage|endswith:
      - /sh
      - /dash
      - /bash
  condition: child and parent
"#;

/// A rule on parent fields fires for a child whose parent had exited long
/// before the sweep judged it: a shell that runs `/bin/true` and is gone in
/// milliseconds. The parent's image and command line were captured at the
/// exec (eBPF), not read from `/proc` afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_on_parent_fields_fires_when_the_parent_is_already_gone_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("parent.yml"), PARENT_RULE).expect("rule");
    let (_collector, _agent, client) = crate::process_host(
        dir.path(),
        &pki,
        "parent-host",
        &format!("[sigma]\npaths = [{:?}]\n", rules.display().to_string()),
    )
    .await;
    let ran = Command::new("/bin/sh")
        .args(["-c", "/bin/true; : bannin-parent-marker"])
        .status()
        .expect("sh");
    assert!(ran.success());
    let title = "true run by the marker shell";
    let found = eventually(Duration::from_secs(30), "the parent rule's finding", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            let m: Vec<v1::Finding> = sigma_findings(&f, "sigma.match", title)
                .into_iter()
                .cloned()
                .collect();
            (!m.is_empty()).then_some(m)
        }
    })
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    let m = &found[0];
    assert!(m.attributes["event.Image"].ends_with("/true"), "{m:?}");
    assert!(
        m.attributes["event.ParentCommandLine"].contains("bannin-parent-marker"),
        "{m:?}"
    );
}
