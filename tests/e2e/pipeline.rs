//! The whole path: sensors on the host → spool → mTLS → collector → findings.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use bannin_proto::v1;
use bannin_tests::sim::SimAgent;
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, bin, eventually, free_port, operator_client,
    operator_toml, start_agent,
};

use crate::{all_events, wait_online};

#[tokio::test(flavor = "multi_thread")]
async fn new_listener_and_odd_file_reach_findings_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    let agent_tls = pki.agent("e2e-host");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &agent_tls,
        collector.addr,
        &AgentOptions {
            watch: vec![watched.clone()],
            dotfiles_unexpected: true,
            ..AgentOptions::default()
        },
    );
    let op = pki.operator("alice");
    let mut client = operator_client(&op, collector.addr).await;
    wait_online(&mut client, "e2e-host").await;
    // The listener baseline must exist before the test opens its listener.
    eventually(Duration::from_secs(30), "listener baseline", || {
        let mut c = client.clone();
        async move {
            (!all_events(&mut c, "e2e-host", "net.listener")
                .await
                .is_empty())
            .then_some(())
        }
    })
    .await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    std::fs::write(watched.join(" leading-space"), b"x").expect("odd");
    std::fs::write(watched.join(".hidden"), b"x").expect("dotfile");
    std::fs::write(watched.join("normal.txt"), b"x").expect("normal");

    let operator = operator_toml(dir.path(), &op, collector.addr);
    let findings: Vec<serde_json::Value> = eventually(
        Duration::from_secs(30),
        "both findings in `bannin findings --json`",
        || {
            let operator = operator.clone();
            let port = port.clone();
            async move {
                let out = Command::new(bin("bannin"))
                    .args(["findings", "--json", "--config"])
                    .arg(&operator)
                    .output()
                    .ok()?;
                let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
                let listener = all.iter().any(|f| {
                    f["kind"] == "net.new_listener"
                        && f["host_id"] == "e2e-host"
                        && f["attributes"]["port"] == port.as_str()
                });
                let odd = all.iter().filter(|f| f["kind"] == "file.odd_name").count() >= 2;
                (listener && odd).then_some(all)
            }
        },
    )
    .await;
    let odd: BTreeSet<String> = findings
        .iter()
        .filter(|f| f["kind"] == "file.odd_name")
        .map(|f| {
            f["attributes"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let w = watched.display().to_string();
    assert_eq!(
        odd,
        BTreeSet::from([format!("{w}/ leading-space"), format!("{w}/.hidden")]),
        "exactly the odd names, not normal.txt"
    );
    let listener_finding = findings
        .iter()
        .find(|f| f["kind"] == "net.new_listener" && f["attributes"]["port"] == port.as_str())
        .expect("listener finding");
    assert_eq!(listener_finding["state"], "new");
    assert_eq!(listener_finding["severity"], "medium");
    drop(listener);

    // Triage round trip through the CLI.
    let id = listener_finding["id"].as_u64().expect("id").to_string();
    let out = Command::new(bin("bannin"))
        .args([
            "finding", "ack", &id, "--note", "looking", "--json", "--config",
        ])
        .arg(&operator)
        .output()
        .expect("ack");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["history"][0]["operator"], "alice");
    let out = Command::new(bin("bannin"))
        .args(["finding", "ack", &id, "--config"])
        .arg(&operator)
        .output()
        .expect("ack again");
    assert!(!out.status.success(), "acknowledging twice is refused");
    // The decision is in the action log, with who and why.
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    let entry = actions
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["verb"] == "finding.state")
        .cloned()
        .expect("finding.state logged");
    assert_eq!(entry["actor"], "alice", "{entry}");
    assert_eq!(entry["reason"], "looking", "{entry}");
    assert_eq!(entry["target"], format!("finding {id}"), "{entry}");
    assert!(
        entry["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("acknowledged")),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_down_agent_spools_then_delivers_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    let mut agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("offline-host"),
        addr,
        &AgentOptions {
            watch: vec![watched.clone()],
            net_listener: false,
            sensors: "fold_after = 1000000".into(),
            ..AgentOptions::default()
        },
    );
    // Three rounds of odd files while the collector is down, a few sweeps apart.
    for round in 0..3 {
        for i in 0..40 {
            std::fs::write(watched.join(format!(" r{round}-{i:02}")), b"x").expect("odd");
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(
        agent.running(),
        "agent keeps running without a collector: {}",
        agent.log_text()
    );
    assert!(
        agent.log_text().contains("Link down"),
        "the agent reports the link is down"
    );

    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, port, "");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let events = eventually(
        Duration::from_secs(60),
        "all spooled events delivered",
        || {
            let mut c = client.clone();
            async move {
                let e = all_events(&mut c, "offline-host", "file.odd_name").await;
                (e.len() >= 120).then_some(e)
            }
        },
    )
    .await;
    assert_eq!(events.len(), 120, "each event exactly once");
    // Every round's batch precedes the next round's.
    let round_of = |e: &v1::StoredEvent| {
        e.event
            .as_ref()
            .and_then(|ev| ev.attributes.get("path"))
            .and_then(|p| p.split("/ r").nth(1))
            .and_then(|r| r.chars().next())
    };
    // The agent numbered its batches as it spooled them, round after round: every
    // round's sequence numbers lie at or below the next round's (compared by content, not
    // by the order the store lists them in).
    let mut span: std::collections::BTreeMap<char, (u64, u64)> = Default::default();
    for e in &events {
        let round = round_of(e).expect("event names its round");
        let s = span.entry(round).or_insert((u64::MAX, 0));
        *s = (s.0.min(e.sequence), s.1.max(e.sequence));
    }
    assert_eq!(span.len(), 3, "three rounds: {span:?}");
    let spans: Vec<(u64, u64)> = span.values().copied().collect();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "each round's batches numbered before the next round's: {span:?}"
    );
    let rounds: Vec<char> = events.iter().filter_map(round_of).collect();
    assert_eq!(rounds.len(), 120);
    assert!(
        rounds.windows(2).all(|w| w[0] <= w[1]),
        "rounds delivered in order: {rounds:?}"
    );
    let _ = &mut client;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_silent_is_raised_when_an_agent_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("quiet-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "quiet-host").await;
    agent.kill();
    // Heartbeat 1 s, three missed heartbeats.
    eventually(Duration::from_secs(20), "host.silent", || {
        let mut c = client.clone();
        async move {
            crate::all_findings(&mut c)
                .await
                .into_iter()
                .find(|f| f.kind == "host.silent" && f.host_id == "quiet-host")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn findings_are_sorted_grouped_and_changed_in_bulk_on_the_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    // Twelve findings: four hosts, three kinds, severities spread.
    let kinds = ["report.user", "report.threat", "report.external"];
    let severities = ["low", "medium", "high", "critical"];
    let hosts = ["web-01", "web-02", "web-03", "web-04"];
    let mut agents = Vec::new();
    for host in hosts {
        agents.push(
            SimAgent::connect(&pki, host, collector.addr, &[], &[])
                .await
                .expect("connect"),
        );
    }
    for (h, host) in hosts.iter().enumerate() {
        for (k, kind) in kinds.iter().enumerate() {
            let text = format!("reported on {host}: /srv/{kind}/{h}");
            let (ok, _, err) = bannin_json(
                &operator,
                &[
                    "finding",
                    "add",
                    "--host",
                    host,
                    "--kind",
                    kind,
                    "--severity",
                    severities[(h + k) % 4],
                    "--text",
                    &text,
                ],
            );
            assert!(ok, "{err}");
        }
    }
    let rank = |s: &str| severities.iter().position(|x| *x == s).expect("severity");
    // Sorted on the collector, worst first.
    let (ok, sorted, err) = bannin_json(&operator, &["findings", "--sort", "severity"]);
    assert!(ok, "{err}");
    let sorted: Vec<usize> = sorted
        .as_array()
        .expect("array")
        .iter()
        .map(|f| rank(f["severity"].as_str().expect("severity")))
        .collect();
    assert_eq!(sorted.len(), 12);
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "{sorted:?}");
    // Grouped on the collector: three kinds of four, each with the options
    // that select it.
    let (ok, groups, err) = bannin_json(&operator, &["findings", "--group", "kind"]);
    assert!(ok, "{err}");
    let groups = groups.as_array().expect("array");
    assert_eq!(groups.len(), 3, "{groups:?}");
    for g in groups {
        assert_eq!(g["count"], 4, "{g}");
        assert_eq!(g["open"], 4, "{g}");
        assert_eq!(
            g["options"],
            format!("--kind {}", g["key"].as_str().expect("key"))
        );
    }
    let (ok, by_host, err) = bannin_json(
        &operator,
        &[
            "findings",
            "--group",
            "host",
            "--search",
            "/srv/report.user/",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(by_host.as_array().map(Vec::len), Some(4), "{by_host}");
    // A dry run lists what would change and changes nothing.
    let out = std::process::Command::new(bannin_tests::bin("bannin"))
        .args([
            "finding",
            "ack",
            "--kind",
            "report.user",
            "--dry-run",
            "--config",
        ])
        .arg(&operator)
        .output()
        .expect("bannin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("4 of 4 findings would become acknowledged"),
        "{err}"
    );
    let (_, open, _) = bannin_json(&operator, &["findings", "--state", "new"]);
    assert_eq!(open.as_array().map(Vec::len), Some(12));
    // One request, one note, every finding of a group: each its own entry.
    let (ok, done, err) = bannin_json(
        &operator,
        &[
            "finding",
            "ack",
            "--kind",
            "report.user",
            "--note",
            "one campaign",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (done["matched"].as_u64(), done["changed"].as_u64()),
        (Some(4), Some(4)),
        "{done}"
    );
    let (_, acked, _) = bannin_json(&operator, &["findings", "--state", "acknowledged"]);
    let acked = acked.as_array().expect("array");
    assert_eq!(acked.len(), 4);
    assert!(acked.iter().all(|f| f["kind"] == "report.user"));
    let (ok, log, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    let entries: Vec<&serde_json::Value> = log
        .as_array()
        .expect("array")
        .iter()
        .filter(|a| a["verb"] == "finding.state" && a["reason"] == "one campaign")
        .collect();
    assert_eq!(entries.len(), 4, "{log}");
    // Again: nothing changes, nothing is logged again.
    let (ok, again, err) = bannin_json(
        &operator,
        &[
            "finding",
            "ack",
            "--kind",
            "report.user",
            "--note",
            "one campaign",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        (again["changed"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(4))
    );
    // By ids.
    let ids: Vec<String> = acked.iter().map(|f| f["id"].to_string()).collect();
    let mut args = vec!["finding", "resolve"];
    args.extend(ids.iter().map(String::as_str));
    let (ok, resolved, err) = bannin_json(&operator, &args);
    assert!(ok, "{err}");
    assert_eq!(resolved["changed"].as_u64(), Some(4));
    // Without ids or a filter, and with both, it is refused before anything is sent.
    let (ok, _, err) = bannin_json(&operator, &["finding", "ack"]);
    assert!(!ok && err.contains("name the findings"), "{err}");
    let (ok, _, err) = bannin_json(&operator, &["finding", "ack", "1", "--kind", "report.user"]);
    assert!(!ok && err.contains("not both"), "{err}");
    // The collector refuses an empty filter too (it would change every finding).
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let refused = client
        .set_finding_states(v1::SetFindingStatesRequest {
            state: v1::FindingState::Resolved as i32,
            filter: Some(v1::FindingFilter::default()),
            ..Default::default()
        })
        .await
        .expect_err("an empty filter");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let (_, open, _) = bannin_json(&operator, &["findings", "--state", "new"]);
    assert_eq!(
        open.as_array().map(Vec::len),
        Some(8),
        "nothing else changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_collector_filters_findings_and_reads_one_by_id() {
    use tokio_stream::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    // web-01 says it is in the PCI zone; web-02 says nothing.
    let _web1 = SimAgent::connect(&pki, "web-01", collector.addr, &[], &[("zone", "PCI")])
        .await
        .expect("connect");
    let _web2 = SimAgent::connect(&pki, "web-02", collector.addr, &[], &[])
        .await
        .expect("connect");
    let add = |host: &str, kind: &str, severity: &str| {
        let (ok, f, err) = bannin_json(
            &operator,
            &[
                "finding",
                "add",
                "--host",
                host,
                "--kind",
                kind,
                "--severity",
                severity,
                "--text",
                "reported",
            ],
        );
        assert!(ok, "{err}");
        f["id"].as_u64().expect("id")
    };
    // (Reports of one kind on one host fold into one finding: one each.)
    let first = add("web-01", "report.user", "low");
    add("web-02", "report.user", "medium");
    add("web-02", "report.threat", "high");
    add("web-01", "report.external", "critical");
    let list = |args: &[&str]| -> Vec<(u64, String, String)> {
        let mut all = vec!["findings", "--all"];
        all.extend_from_slice(args);
        let (ok, found, err) = bannin_json(&operator, &all);
        assert!(ok, "{args:?}: {err}");
        found
            .as_array()
            .expect("array")
            .iter()
            .map(|f| {
                (
                    f["id"].as_u64().expect("id"),
                    f["host_id"].as_str().expect("host").to_owned(),
                    f["kind"].as_str().expect("kind").to_owned(),
                )
            })
            .collect()
    };
    let kinds = |found: Vec<(u64, String, String)>| -> Vec<String> {
        found.into_iter().map(|(_, _, k)| k).collect()
    };
    let everything = list(&[]);
    assert_eq!(everything.len(), 4, "{everything:?}");
    assert_eq!(
        kinds(list(&["--severity", "high,critical"])),
        ["report.threat", "report.external"]
    );
    assert_eq!(list(&["--kind", "report.user"]).len(), 2);
    assert_eq!(list(&["--kind", "report."]).len(), 4);
    assert_eq!(list(&["--kind", "report.*"]).len(), 4);
    assert_eq!(list(&["--kind", "report"]).len(), 0, "a kind is exact");
    assert_eq!(
        kinds(list(&["--host", "web-02"])),
        ["report.user", "report.threat"]
    );
    // Labels are the host's (the agent's and the operators').
    assert_eq!(
        kinds(list(&["--label", "zone=PCI"])),
        ["report.user", "report.external"]
    );
    assert_eq!(list(&["--label", "zone"]).len(), 2);
    let (ok, _, err) = bannin_json(&operator, &["host", "label", "web-02", "zone=DMZ"]);
    assert!(ok, "{err}");
    assert_eq!(list(&["--label", "zone=DMZ"]).len(), 2);
    assert_eq!(list(&["--label", "zone"]).len(), 4);
    // States, and every part at once.
    let (ok, _, err) = bannin_json(&operator, &["finding", "ack", &first.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(
        list(&["--state", "acknowledged"]),
        [(first, "web-01".to_owned(), "report.user".to_owned())]
    );
    assert_eq!(list(&["--state", "new"]).len(), 3);
    assert_eq!(
        list(&[
            "--state",
            "acknowledged",
            "--host",
            "web-01",
            "--kind",
            "report.user",
            "--severity",
            "low",
            "--label",
            "zone=PCI"
        ])
        .len(),
        1
    );
    assert_eq!(
        list(&[
            "--state",
            "new",
            "--host",
            "web-01",
            "--kind",
            "report.user"
        ])
        .len(),
        0
    );
    // A cut filtered list says where the next page starts.
    let (ok, one, err) = bannin_json(
        &operator,
        &["findings", "--kind", "report.user", "--limit", "1"],
    );
    assert!(ok, "{err}");
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    assert!(err.contains("more exist"), "{err}");
    // A filter the collector cannot read is refused, naming what is wrong.
    let (ok, _, err) = bannin_json(&operator, &["findings", "--label", "Bad Key=x"]);
    assert!(!ok && err.contains("label filter"), "{err}");

    // One finding by its id; a missing one is NOT_FOUND.
    let (ok, shown, err) = bannin_json(&operator, &["finding", "show", &first.to_string()]);
    assert!(ok, "{err}");
    assert_eq!(shown["id"].as_u64(), Some(first));
    assert_eq!(shown["state"], "acknowledged");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let missing = client
        .get_finding(v1::GetFindingRequest { id: 999_999 })
        .await
        .expect_err("no such finding");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let (ok, _, err) = bannin_json(&operator, &["finding", "show", "999999"]);
    assert!(!ok && err.contains("no finding 999999"), "{err}");

    // Following with a filter: only what passes arrives.
    let mut follow = client
        .follow_findings(v1::FollowFindingsRequest {
            since_id: 0,
            filter: Some(v1::FindingFilter {
                host_id: "web-02".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("follow")
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("the stored one")
        .expect("open")
        .expect("finding");
    assert_eq!(next.kind, "report.user");
    let next = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("the second stored one")
        .expect("open")
        .expect("finding");
    assert_eq!(next.kind, "report.threat");
    add("web-01", "report.threat", "medium");
    let latest = add("web-02", "report.external", "medium");
    let next = tokio::time::timeout(Duration::from_secs(10), follow.next())
        .await
        .expect("the new one")
        .expect("open")
        .expect("finding");
    assert_eq!((next.id, next.host_id.as_str()), (latest, "web-02"));
}
