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

/// Milliseconds since the epoch of an RFC 3339 time the CLI printed.
pub(crate) fn ms(text: &serde_json::Value) -> i64 {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("a time, not {text}"));
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("ms")
}

/// The guidance's incident, scripted end to end in network namespaces: a real
/// indicator, open, snapshot, isolate, export, contain, close; then the scoping
/// brief and the lessons-learned review are checked against the records, the
/// action log verifies, and an entry changed in the store is caught.
#[test]
fn scripted_incident_brief_review_and_tamper_evident_log_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    use bannin_tests::netns::Host;

    let mut site = crate::response::Site::with(|o| {
        o.net_connection = true;
        o.extra = "[labels]\nsite = \"Osaka, JP\"\nzone = \"PCI\"\nrole = \"web\"\n".into();
    });
    // A long-lived connection from the agent's host to the peer's service.
    let mut connect = site
        .lab
        .command(Host::Agent, std::path::Path::new("python3"));
    connect.args([
        "-c",
        &format!(
            "import socket,time\ns=socket.create_connection(('{}',9000))\ntime.sleep(600)",
            Host::Peer.v4()
        ),
    ]);
    let _client = bannin_tests::Proc::spawn(connect, site.dir.path().join("client.log"));

    // The indicator.
    std::fs::write(site.watched.join(" .x"), b"payload").expect("odd file");
    let mut finding = serde_json::Value::Null;
    site.wait_until(
        |s| {
            let (_, f, _) = s.cli(&["findings"]);
            f.as_array()
                .is_some_and(|f| f.iter().any(|f| f["kind"] == "file.odd_name"))
        },
        "the odd-name finding",
    );
    let (_, findings, _) = site.cli(&["findings"]);
    for f in findings.as_array().expect("findings") {
        if f["kind"] == "file.odd_name" {
            finding = f.clone();
        }
    }
    let finding_id = finding["id"].as_u64().expect("id").to_string();
    // The connection sensor has seen the peer.
    site.wait_until(
        |s| {
            let (_, e, _) = s.cli(&["events", "web-01", "--kind", "net.connection"]);
            e.as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["attributes"]["remote_address"] == Host::Peer.v4())
            })
        },
        "net.connection telemetry",
    );
    std::thread::sleep(Duration::from_millis(50));

    let (ok, opened, err) = site.cli(&[
        "incident",
        "open",
        "--title",
        "Hidden payload on web-01",
        "--severity",
        "high",
        "--finding",
        &finding_id,
    ]);
    assert!(ok, "{err}");
    let id = opened["incident"]["id"].to_string();
    let opened_ms = ms(&opened["incident"]["opened"]);
    assert!(site.cli(&["finding", "ack", &finding_id]).0);
    let (ok, snap, err) = site.cli(&["snapshot", "web-01", "--reason", "before isolation"]);
    assert!(ok && snap["state"] == "succeeded", "{snap} {err}");
    let (ok, isolated, err) = site.cli(&["isolate", "web-01", "--reason", "contain the payload"]);
    assert!(ok && isolated["state"] == "succeeded", "{isolated} {err}");
    assert_eq!(site.reachability(), [false; 4]);
    let isolated_ms = ms(&isolated["finished"]);
    let export = site.dir.path().join("export");
    let (ok, _, err) = site.cli(&[
        "evidence",
        "export",
        "e1",
        "--to",
        export.to_str().expect("utf8"),
        "--recipient",
        "JPCERT/CC",
        "--reason",
        "coordination",
    ]);
    assert!(ok, "{err}");
    assert!(
        site.cli(&["incident", "note", &id, "payload was a reverse shell"])
            .0
    );
    assert!(site.cli(&["incident", "set-status", &id, "contained"]).0);
    assert!(site.cli(&["incident", "close", &id]).0);

    // The scoping brief.
    let (ok, brief, err) = site.cli(&["incident", "brief", &id]);
    assert!(ok, "{err}");
    assert_eq!(brief["schema"], "bannin.brief/1");
    let first = &brief["first_indicator"];
    assert_eq!(first["finding"], finding["id"]);
    assert_eq!(first["kind"], "file.odd_name");
    assert_eq!(first["host"], "web-01");
    assert_eq!(first["observed_at"], finding["observed"]);
    assert!(
        first["source"]
            .as_str()
            .is_some_and(|s| s.contains("file sensors") && s.contains("web-01")),
        "{first}"
    );
    assert_eq!(first["first_handled_by"], "alice");
    assert_eq!(brief["incident"]["severity"], "high");
    assert!(
        brief["incident"]["severity_meaning"]
            .as_str()
            .is_some_and(|m| m.contains("exfiltration suspected")),
        "{brief}"
    );
    let asset = &brief["assets"][0];
    assert_eq!(asset["host_id"], "web-01");
    assert_eq!(asset["labels"]["site"], "Osaka, JP");
    assert_eq!(asset["location"], "site=Osaka, JP; zone=PCI");
    assert_eq!(asset["isolation"], "isolated");
    assert!(
        asset["os"].as_str().is_some_and(|o| !o.is_empty()),
        "{asset}"
    );
    assert_eq!(
        brief["sites"]["site=Osaka, JP; zone=PCI"],
        serde_json::json!(["web-01"])
    );
    let taken: Vec<(String, String)> = brief["actions_taken"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| (a["actor"].to_string(), a["verb"].to_string()))
        .collect();
    for verb in ["command.snapshot", "command.isolate", "incident.open"] {
        assert!(
            taken.contains(&("\"alice\"".into(), format!("\"{verb}\""))),
            "{verb} by alice in {taken:?}"
        );
    }
    let reaches = brief["network"]["reaches"].as_array().expect("reaches");
    assert!(
        reaches.iter().any(|f| f["peer"] == Host::Peer.v4()
            && f["port"] == 9000
            && f["direction"] == "outbound"
            && f["peer_is"] == "private network"),
        "the connection to the peer's service: {reaches:?}"
    );
    let (ok, markdown, err) = site.cli_text(&["incident", "brief", &id]);
    assert!(ok, "{err}");
    for needle in [
        "# Scoping brief — incident #1",
        "## Signs and symptoms: what was noticed first",
        &format!("finding #{finding_id} file.odd_name"),
        "Osaka, JP",
        "## Network and data flow",
        &format!("| web-01 | outbound | tcp | {} | 9000 |", Host::Peer.v4()),
        "## Sites",
    ] {
        assert!(markdown.contains(needle), "{needle:?} in:\n{markdown}");
    }

    // The lessons-learned review.
    let (ok, review, err) = site.cli(&["incident", "review", &id]);
    assert!(ok, "{err}");
    let m = &review["metrics"];
    let observed_ms = ms(&finding["observed"]);
    assert_eq!(m["time_to_detect_ms"], opened_ms - observed_ms, "{m}");
    assert_eq!(m["time_to_contain_ms"], isolated_ms - opened_ms, "{m}");
    assert_eq!(
        m["indicator_to_containment_ms"],
        isolated_ms - observed_ms,
        "{m}"
    );
    assert!(
        m["contained_by"]
            .as_str()
            .is_some_and(|c| c.contains("isolation of web-01") && c.contains("alice")),
        "{m}"
    );
    assert!(m["time_to_close_ms"].as_i64().is_some_and(|t| t >= 0));
    let timeline = review["timeline"].as_array().expect("timeline");
    assert_eq!(
        timeline[0]["source"], "finding",
        "the first indicator opens the timeline"
    );
    let isolation = timeline
        .iter()
        .find(|t| {
            t["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("alice command.isolate web-01"))
        })
        .expect("the isolation, with its operator");
    assert!(ms(&isolation["at"]) <= isolated_ms);
    let questions = review["questions"].as_array().expect("questions");
    assert_eq!(questions.len(), 8);
    assert!(
        questions[7]["from_the_data"][0]
            .as_str()
            .is_some_and(|l| l.contains("file.odd_name")),
        "indicators to watch: {}",
        questions[7]
    );
    assert!(
        questions[1]["from_the_data"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l
                .as_str()
                .is_some_and(|l| l.contains("collected before the first isolation"))),
        "{}",
        questions[1]
    );
    assert!(
        questions[5]["from_the_data"][0]
            .as_str()
            .is_some_and(|l| l.contains("JPCERT/CC")),
        "sharing: {}",
        questions[5]
    );
    let (ok, markdown, _) = site.cli_text(&["incident", "review", &id]);
    assert!(ok);
    for q in bannin_collector::reports::ReviewQuestion::ALL {
        let heading = format!("### {}. {}", q.number(), q.text());
        assert!(markdown.contains(&heading), "{heading:?} in:\n{markdown}");
    }
    assert!(markdown.contains("time to detect:"), "{markdown}");

    // The action log verifies, and an entry changed in the store is caught.
    let (ok, verdict, _) = site.cli(&["actions", "verify"]);
    assert!(ok && verdict["ok"] == true, "{verdict}");
    let (_, actions, _) = site.cli(&["actions", "--incident", &id]);
    let isolate_seq = actions
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["verb"] == "command.isolate")
        .and_then(|a| a["seq"].as_u64())
        .expect("isolate entry");
    if let Some(mut c) = site.collector.take() {
        assert!(c.terminate(Duration::from_secs(15)), "clean stop");
    }
    {
        let db = sled::open(site.collector_store()).expect("open store");
        let tree = db.open_tree("actions").expect("tree");
        let key = isolate_seq.to_be_bytes();
        let mut value = tree.get(key).expect("get").expect("entry").to_vec();
        let at = value
            .windows(7)
            .position(|w| w == b"contain")
            .expect("reason bytes");
        value[at..at + 7].copy_from_slice(b"CONTAIN");
        tree.insert(key, value).expect("insert");
        db.flush().expect("flush");
    }
    site.restart_collector();
    let (ok, verdict, _) = site.cli(&["actions", "verify"]);
    assert!(!ok && verdict["first_bad_seq"] == isolate_seq, "{verdict}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_labels_from_the_agent_and_from_operators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("db-02"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            extra: "[labels]\nsite = \"Nagoya, JP\"\nrole = \"db\"\n".into(),
            ..AgentOptions::default()
        },
    );
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let run = |args: &[&str]| bannin_json(&operator, args);
    let labels = || {
        let (_, hosts, _) = run(&["hosts"]);
        hosts
            .as_array()
            .and_then(|h| h.iter().find(|h| h["host_id"] == "db-02"))
            .map(|h| h["labels"].clone())
    };
    let reported = eventually(Duration::from_secs(30), "agent labels", || {
        let l = labels();
        async move { l.filter(|l| l["site"] == "Nagoya, JP") }
    })
    .await;
    assert_eq!(reported["role"], "db");

    let (ok, host, err) = run(&["host", "label", "db-02", "zone=PCI", "site=Osaka, JP"]);
    assert!(ok, "{err}");
    assert_eq!(host["labels"]["site"], "Osaka, JP", "operators win: {host}");
    assert_eq!(host["labels"]["zone"], "PCI");
    assert_eq!(host["labels"]["role"], "db");

    // Bad labels and unknown hosts: a clear error, nothing changed.
    for (args, why) in [
        (vec!["host", "label", "db-02", "Zone=x"], "label key"),
        (vec!["host", "label", "db-02", "novalue"], "KEY=VALUE"),
        (vec!["host", "label", "ghost", "zone=x"], "no host"),
        (vec!["host", "label", "db-02"], "nothing to change"),
    ] {
        let (ok, _, err) = run(&args);
        assert!(!ok && err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(labels().expect("host")["zone"], "PCI");

    let (ok, host, _) = run(&["host", "label", "db-02", "--remove", "site"]);
    assert!(ok);
    assert_eq!(
        host["labels"]["site"], "Nagoya, JP",
        "the agent's own label is back"
    );
    let (_, actions, _) = run(&["actions", "--host", "db-02"]);
    assert!(
        actions
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["verb"] == "host.label" && a["actor"] == "alice"),
        "{actions}"
    );

    // Reports of an incident with nothing attached yet still answer.
    assert!(run(&["incident", "open", "--title", "Empty", "--severity", "low"]).0);
    let (ok, brief, err) = run(&["incident", "brief", "1"]);
    assert!(ok, "{err}");
    assert!(brief["first_indicator"].is_null());
    let (ok, review, _) = run(&["incident", "review", "1"]);
    assert!(
        ok && review["metrics"]["time_to_contain_ms"].is_null(),
        "{review}"
    );
    let (ok, _, err) = run(&["incident", "brief", "7"]);
    assert!(!ok && err.contains("no incident 7"), "{err}");
}
