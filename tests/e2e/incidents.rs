//! Incidents: open, attach, note, severity, forward-only status, timeline.

use std::time::Duration;

use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, eventually, free_port, operator_client,
    operator_toml, start_agent,
};

use crate::all_findings;

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_runs_from_open_to_closed_with_its_timeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("dir");
    std::fs::write(watched.join(" backdoor"), b"x").expect("odd file");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("web-07"),
        collector.addr,
        &AgentOptions {
            watch: vec![watched],
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let finding = eventually(Duration::from_secs(30), "finding", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .into_iter()
                .find(|f| f.kind == "file.odd_name")
        }
    })
    .await;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let run = |args: &[&str]| bannin_json(&operator, args);
    let id = finding.id.to_string();
    let (ok, opened, err) = run(&[
        "incident",
        "open",
        "--title",
        "Backdoor on web-07",
        "--severity",
        "high",
        "--finding",
        &id,
    ]);
    assert!(ok, "{err}");
    assert_eq!(opened["incident"]["id"], 1);
    assert_eq!(opened["incident"]["status"], "open");
    assert_eq!(opened["incident"]["commander"], "alice");
    assert_eq!(opened["affected_hosts"], serde_json::json!(["web-07"]));

    let (ok, _, err) = run(&["ping", "web-07"]);
    assert!(ok, "{err}");
    assert!(run(&["incident", "note", "1", "attacker used a hidden file"]).0);
    assert!(run(&["incident", "set-severity", "1", "critical"]).0);
    let (ok, contained, _) = run(&["incident", "set-status", "1", "contained"]);
    assert!(ok && contained["incident"]["status"] == "contained");
    let (ok, _, err) = run(&["incident", "set-status", "1", "open"]);
    assert!(!ok && err.contains("forward"), "{err}");
    let (ok, _, err) = run(&["incident", "add-finding", "1", "999"]);
    assert!(!ok && err.contains("no finding 999"), "{err}");

    let (ok, shown, _) = run(&["incident", "show", "1"]);
    assert!(ok);
    assert_eq!(shown["incident"]["severity"], "critical");
    let sources: Vec<&str> = shown["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["source"].as_str())
        .collect();
    assert_eq!(
        sources.first(),
        Some(&"finding"),
        "the first indicator comes first: {sources:?}"
    );
    assert!(sources.contains(&"note"));
    let texts: Vec<&str> = shown["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("command.ping")),
        "commands on affected hosts join the timeline: {texts:?}"
    );

    let (ok, actions, _) = run(&["actions", "--incident", "1"]);
    assert!(ok);
    let verbs: Vec<&str> = actions
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["verb"].as_str())
        .collect();
    assert!(
        verbs.contains(&"incident.open")
            && verbs.contains(&"command.ping")
            && verbs.contains(&"incident.update"),
        "{verbs:?}"
    );

    let (ok, closed, _) = run(&["incident", "close", "1"]);
    assert!(ok && closed["incident"]["status"] == "closed");
    let (ok, _, err) = run(&["incident", "note", "1", "too late"]);
    assert!(!ok && err.contains("closed"), "{err}");
    let (ok, list, _) = run(&["incident", "list"]);
    assert!(ok && list[0]["status"] == "closed");
    let _ = &mut client;
}
