//! Hostile input against real processes: rule files built to abort, stall or
//! bloat the collector, fields built to stall its rules, a sensor state grown
//! past the agent's spool, and lists longer than one answer.

use std::process::Command;
use std::time::Duration;

use bannin_tests::sim::{SimAgent, event};
use bannin_tests::{
    AgentOptions, CollectorProc, Proc, TestPki, bannin_json, bin, collector_config, eventually,
    free_port, operator_client, operator_toml, start_agent,
};

use crate::all_findings;
use crate::sigma::rules_in_force;

const GOOD_RULE: &str = "title: Marker in a command line\nid: good-1\nlogsource:\n  product: linux\n  category: process_creation\nlevel: high\ndetection:\n  sel:\n    CommandLine|contains: hostile-input-marker\n  condition: sel\n";

/// What each hostile file holds, and what its refusal must say.
fn hostile_files() -> Vec<(&'static str, String, &'static str)> {
    let head = "title: Hostile\nid: hostile-1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: x\n";
    vec![
        (
            "8,000 chained nots (overflowed the stack on reload)",
            format!("{head}  condition: {}sel\n", "not ".repeat(8000)),
            "the limit is 64",
        ),
        (
            "30,000 parentheses (an error too long for a gRPC header)",
            format!(
                "{head}  condition: {}sel{}\n",
                "(".repeat(30_000),
                ")".repeat(30_000)
            ),
            "the limit is 64",
        ),
        (
            "YAML flow nesting 100,000 deep (half a minute to refuse)",
            format!(
                "{head}  condition: sel\nx: {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            "nest deeper than 64 levels",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_rule_files_are_refused_by_name_at_start_and_reload_and_never_abort() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("good.yml"), GOOD_RULE).expect("rule");
    let sigma = format!("[sigma]\npaths = [{:?}]\n", rules.display().to_string());
    let mut collector =
        CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), &sigma);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    assert_eq!(
        rules_in_force(&operator)["rules"].as_array().map(Vec::len),
        Some(1)
    );

    for (what, text, says) in hostile_files() {
        let file = rules.join("hostile.yml");
        std::fs::write(&file, &text).expect("hostile rule");
        // At reload: refused, naming the file and the limit; the rules in force stay.
        let (ok, _, err) = bannin_json(&operator, &["rules", "reload"]);
        assert!(!ok, "{what}: the reload fails");
        assert!(err.contains("hostile.yml"), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        assert!(!err.contains("h2 protocol error"), "{what}: {err}");
        assert!(
            err.len() < 1000,
            "{what}: a short reason, {} bytes",
            err.len()
        );
        assert!(collector.proc.running(), "{what}: the collector is alive");
        assert_eq!(
            rules_in_force(&operator)["rules"].as_array().map(Vec::len),
            Some(1),
            "{what}: the rules in force stay"
        );

        // At start: the same refusal, as a configuration error.
        let other = dir.path().join("refused-start");
        let config = collector_config(&other, &pki, free_port(), &sigma);
        let output = Command::new(bin("bannin-collector"))
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("collector");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: refused at start");
        assert!(
            stderr.contains("hostile.yml") && stderr.contains(says),
            "{what}: {stderr}"
        );
        std::fs::remove_file(&file).expect("rm");
    }

    // A regular expression that compiles to megabytes (100 of them took
    // 1.2 GB) is refused alone, by name, and the rest loads.
    std::fs::write(
        rules.join("big-regex.yml"),
        "title: Big regex\nid: big-1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|re: '(\\w+\\s?){1,200}z'\n  condition: sel\n",
    )
    .expect("rule");
    let (ok, reloaded, err) = bannin_json(&operator, &["rules", "reload"]);
    assert!(ok, "{err}");
    assert_eq!(reloaded["loaded"], 1, "{reloaded}");
    let sigma = rules_in_force(&operator);
    let refused = &sigma["refused"][0];
    assert_eq!(refused["title"], "Big regex", "{sigma}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("compiled size limit")),
        "{refused}"
    );

    // Each failed reload is in the action log, and none of them is large.
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    let reloads: Vec<&serde_json::Value> = actions
        .as_array()
        .map(|a| a.iter().filter(|a| a["verb"] == "rules.reload").collect())
        .unwrap_or_default();
    assert_eq!(reloads.len(), 4, "{actions}");
    for r in reloads {
        assert!(
            r.to_string().len() < 2048,
            "a reload entry of {} bytes",
            r.to_string().len()
        );
    }
    collector.proc.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn megabyte_fields_are_cut_before_the_rules_and_other_hosts_are_not_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("good.yml"), GOOD_RULE).expect("rule");
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        &format!("[sigma]\npaths = [{:?}]\n", rules.display().to_string()),
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    // Two hosts, each sending process events with 1 MB command lines.
    let long = format!(
        "sh -c hostile-input-marker {}",
        "word ".repeat(1024 * 1024 / 5)
    );
    let mut senders = Vec::new();
    for host in ["long-1", "long-2"] {
        let mut agent = SimAgent::connect(&pki, host, collector.addr, &[], &[])
            .await
            .expect("connect");
        // Two events, a batch each (an event's summary repeats its attributes:
        // two in one batch would pass the 4 MiB message limit).
        for i in 0..2 {
            let e = event(
                "process.exec",
                false,
                1_000 + i,
                &[
                    ("exe", "/usr/bin/sh"),
                    ("cmdline", &long),
                    ("pid", &(100 + i).to_string()),
                ],
            );
            agent.send(&[e]).await.expect("send");
        }
        senders.push(agent);
    }
    // Another host's finding arrives meanwhile, and operators are answered.
    let mut quick = SimAgent::connect(&pki, "quick", collector.addr, &[], &[])
        .await
        .expect("connect");
    quick
        .send(&[event(
            "file.odd_name",
            true,
            2_000,
            &[("path", "/tmp/ quick"), ("reason", "leading space")],
        )])
        .await
        .expect("send");
    let found = eventually(Duration::from_secs(60), "every finding", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            let marker = f
                .iter()
                .filter(|f| {
                    f.kind == "sigma.match"
                        && f.attributes.get("sigma.id").is_some_and(|i| i == "good-1")
                })
                .count();
            let quick = f.iter().any(|f| f.host_id == "quick");
            (marker >= 2 && quick).then_some(f)
        }
    })
    .await;
    for f in found.iter().filter(|f| f.kind == "sigma.match") {
        // Matched on the first 16 KiB, and the finding says the field was cut.
        assert_eq!(
            f.attributes.get("sigma.truncated").map(String::as_str),
            Some("CommandLine"),
            "{f:?}"
        );
        assert!(f.attributes["event.CommandLine"].len() <= 16 * 1024);
    }
    // The stored event keeps the whole command line.
    let events = crate::all_events(&mut client, "long-1", "process.exec").await;
    assert!(
        events.iter().any(|e| e
            .event
            .as_ref()
            .and_then(|e| e.attributes.get("cmdline"))
            .is_some_and(|c| c.len() == long.len())),
        "the stored event is whole"
    );
    drop(senders);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensor_state_grown_past_the_spool_never_blinds_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    // What an unprivileged user can do: 20,000 odd names (a leading space) —
    // the odd-name state grows past the agent's whole 1 MiB spool.
    for i in 0..20_000 {
        std::fs::write(
            watched.join(format!(" odd-name-of-some-length-{i:05}")),
            b"",
        )
        .expect("odd file");
    }
    let _agent: Proc = start_agent(
        &dir.path().join("agent"),
        &pki.agent("crowded"),
        collector.addr,
        &AgentOptions {
            watch: vec![watched.clone()],
            spool_max_bytes: 1024 * 1024,
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    eventually(Duration::from_secs(60), "the storm folded", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .iter()
                .any(|f| f.kind == "file.odd_name" && f.attributes.contains_key("folded_count"))
                .then_some(())
        }
    })
    .await;
    let state = dir.path().join("agent/spool/state");
    let state_bytes: u64 = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(
        state_bytes > 1024 * 1024,
        "the state outgrew the spool: {state_bytes}"
    );
    // A new odd file after the storm: its finding arrives (before, every
    // batch after the storm was dropped for the state's room).
    std::fs::write(watched.join(" after-the-storm"), b"").expect("odd file");
    eventually(
        Duration::from_secs(60),
        "the finding after the storm",
        || {
            let mut c = client.clone();
            async move {
                all_findings(&mut c)
                    .await
                    .iter()
                    .any(|f| {
                        f.kind == "file.odd_name"
                            && f.attributes
                                .get("path")
                                .is_some_and(|p| p.contains("after-the-storm"))
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let f = all_findings(&mut client).await;
    assert!(
        !f.iter().any(|f| f.kind == "agent.data_loss"),
        "nothing dropped: {:?}",
        f.iter().map(|f| &f.summary).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_list_says_so_and_all_reads_every_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let _host = SimAgent::connect(&pki, "reported-host", collector.addr, &[], &[])
        .await
        .expect("connect");
    for i in 0..5 {
        let (ok, _, err) = bannin_json(
            &operator,
            &[
                "finding",
                "add",
                "--host",
                "reported-host",
                "--kind",
                "report.user",
                "--severity",
                "low",
                "--text",
                &format!("report {i}"),
            ],
        );
        assert!(ok, "{err}");
    }
    let (ok, two, err) = bannin_json(&operator, &["findings", "--limit", "2"]);
    assert!(ok, "{err}");
    let two = two.as_array().expect("array");
    assert_eq!(two.len(), 2);
    let last = two[1]["id"].as_u64().expect("id");
    assert!(
        err.contains("more exist") && err.contains(&format!("--since {last}")),
        "{err}"
    );
    let (ok, all, err) = bannin_json(&operator, &["findings", "--all"]);
    assert!(ok, "{err}");
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    assert!(!err.contains("more exist"), "{err}");
    let (ok, five, err) = bannin_json(&operator, &["findings", "--limit", "5"]);
    assert!(ok && five.as_array().map(Vec::len) == Some(5));
    assert!(
        !err.contains("more exist"),
        "a list that is whole says nothing: {err}"
    );

    // The command queue's newest N says so too.
    for _ in 0..3 {
        let (ok, _, err) = bannin_json(&operator, &["ping", "reported-host", "--no-wait"]);
        assert!(ok, "{err}");
    }
    let (ok, newest, err) = bannin_json(&operator, &["commands", "--limit", "2"]);
    assert!(ok, "{err}");
    assert_eq!(newest.as_array().map(Vec::len), Some(2), "{newest}");
    assert!(err.contains("older ones exist"), "{err}");
    let (ok, all, err) = bannin_json(&operator, &["commands", "--limit", "3"]);
    assert!(ok && all.as_array().map(Vec::len) == Some(3), "{all}");
    assert!(!err.contains("older ones exist"), "{err}");
    assert_eq!(
        newest.as_array().and_then(|n| n.last()).map(|c| &c["id"]),
        all.as_array().and_then(|a| a.last()).map(|c| &c["id"]),
        "the newest is kept"
    );
}
