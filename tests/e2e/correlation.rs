//! The collector sees the fleet as a whole: twenty simulated agents over real
//! mTLS play scripted scenarios, one per correlation rule, and negative ones
//! that must raise nothing; suppression rules count what they hold back;
//! people's reports become findings.

// Host numbers are the scenario's script: fleet[i] is host fleet-i.
#![allow(clippy::needless_range_loop)]

use std::time::Duration;

use bannin_proto::now_unix_ms;
use bannin_proto::v1;
use bannin_tests::sim::{SimAgent, event};
use bannin_tests::{
    CollectorProc, TestPki, bannin_json, eventually, free_port, operator_client, operator_toml,
};

use crate::all_findings;

const FLEET: usize = 20;

fn host(i: usize) -> String {
    format!("fleet-{i:02}")
}

fn address(i: usize) -> String {
    format!("10.20.0.{}", 10 + i)
}

const CONFIG: &str = r#"
[correlation]
fan_in_peers = 10
[correlation.spread]
hosts = 3
[correlation.account_hosts]
hosts = 3
[correlation.password_spray]
hosts = 5
[correlation.fan_in]
hosts = 5
[correlation.mass_silence]
hosts = 5
"#;

/// Findings of `kind` whose attribute `key` is `value`.
fn with<'a>(
    findings: &'a [v1::Finding],
    kind: &str,
    key: &str,
    value: &str,
) -> Vec<&'a v1::Finding> {
    findings
        .iter()
        .filter(|f| f.kind == kind && f.attributes.get(key).map(String::as_str) == Some(value))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_fleet_raises_each_correlation_and_nothing_for_the_near_misses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), CONFIG);
    let mut fleet = Vec::new();
    for i in 0..FLEET {
        let addr = address(i);
        fleet.push(
            SimAgent::connect(
                &pki,
                &host(i),
                collector.addr,
                &[&format!("{addr}/24")],
                &[],
            )
            .await
            .expect("simulated agent"),
        );
    }
    let now = now_unix_ms();
    let exe = |sha: &str, path: &str| {
        event(
            "process.unknown_binary",
            true,
            now,
            &[("sha256", sha), ("exe", path), ("pid", "4242")],
        )
    };
    let spread_sha = "5".repeat(64);
    let near_sha = "6".repeat(64);
    // spread: one hash (and path) on three hosts; a near miss on two.
    for i in 0..3 {
        fleet[i]
            .send(&[exe(&spread_sha, "/tmp/.x/kworker")])
            .await
            .expect("send");
    }
    for i in 3..5 {
        fleet[i]
            .send(&[exe(&near_sha, &format!("/opt/tool-{i}"))])
            .await
            .expect("send");
    }
    // account across hosts: deploy on three hosts within minutes; ops on
    // three hosts hours apart.
    for i in 5..8 {
        fleet[i]
            .send(&[event(
                "account.login",
                false,
                now - 60_000 * i as i64,
                &[
                    ("user", "deploy"),
                    ("source", "10.20.0.99"),
                    ("service", "sshd"),
                ],
            )])
            .await
            .expect("send");
    }
    for (i, hours_ago) in [(8, 0), (9, 3), (10, 6)] {
        fleet[i]
            .send(&[event(
                "account.login",
                false,
                now - hours_ago * 3_600_000,
                &[
                    ("user", "ops"),
                    ("source", "10.20.0.98"),
                    ("service", "sshd"),
                ],
            )])
            .await
            .expect("send");
    }
    // password spraying: one outside source failing on five hosts, each a
    // different account; one account failing on two hosts only.
    for i in 10..15 {
        let user = format!("user{i}");
        fleet[i]
            .send(&[event(
                "account.login_failed",
                false,
                now,
                &[("user", &user), ("source", "203.0.113.50"), ("count", "4")],
            )])
            .await
            .expect("send");
    }
    for i in 15..17 {
        fleet[i]
            .send(&[event(
                "account.login_failed",
                false,
                now,
                &[
                    ("user", "guest"),
                    ("source", &format!("198.51.100.{i}")),
                    ("count", "1"),
                ],
            )])
            .await
            .expect("send");
    }
    // lateral movement: fleet-15 opens ssh to fleet-16, then fleet-16 has a new
    // account; fleet-17 reaches fleet-18 on https, then fleet-18 listens anew.
    let conn = |to: usize, port: &str| {
        event(
            "net.connection",
            false,
            now,
            &[
                ("direction", "outbound"),
                ("remote_address", &address(to)),
                ("port", port),
                ("remote_port", port),
            ],
        )
    };
    fleet[15].send(&[conn(16, "22")]).await.expect("send");
    fleet[16]
        .send(&[event(
            "account.new_user",
            true,
            now + 1_000,
            &[("user", "svc-backup"), ("uid", "1337")],
        )])
        .await
        .expect("send");
    fleet[17].send(&[conn(18, "443")]).await.expect("send");
    fleet[18]
        .send(&[event(
            "net.new_listener",
            true,
            now + 1_000,
            &[("port", "4444"), ("protocol", "tcp")],
        )])
        .await
        .expect("send");
    // fan-in: five hosts reaching one outside address; three reaching another.
    let out = |peer: &str| {
        event(
            "net.connection",
            false,
            now,
            &[
                ("direction", "outbound"),
                ("remote_address", peer),
                ("port", "8443"),
            ],
        )
    };
    for i in 0..5 {
        fleet[i].send(&[out("198.51.100.77")]).await.expect("send");
    }
    for i in 5..8 {
        fleet[i].send(&[out("198.51.100.78")]).await.expect("send");
    }
    // mass silence: six hosts (30 %) stop at once.
    for _ in 14..20 {
        drop(fleet.pop());
    }

    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let findings = eventually(Duration::from_secs(60), "mass silence", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            f.iter()
                .any(|f| f.kind == "correlation.mass_silence")
                .then_some(f)
        }
    })
    .await;
    let correlated: Vec<&v1::Finding> = findings
        .iter()
        .filter(|f| f.kind.starts_with("correlation."))
        .collect();

    let spread = with(&findings, "correlation.spread", "value", &spread_sha);
    assert_eq!(spread.len(), 1, "{correlated:#?}");
    assert_eq!(spread[0].attributes["hosts"], "fleet-00,fleet-01,fleet-02");
    assert_eq!(
        with(&findings, "correlation.spread", "value", "/tmp/.x/kworker").len(),
        1,
        "by executable too"
    );
    assert!(
        with(&findings, "correlation.spread", "value", &near_sha).is_empty(),
        "two hosts are below the threshold"
    );

    let account = with(&findings, "correlation.account_hosts", "user", "deploy");
    assert_eq!(account.len(), 1, "{correlated:#?}");
    assert_eq!(account[0].attributes["host_count"], "3");
    assert!(
        with(&findings, "correlation.account_hosts", "user", "ops").is_empty(),
        "hours apart"
    );

    let spray = with(
        &findings,
        "correlation.password_spray",
        "source",
        "203.0.113.50",
    );
    assert_eq!(spray.len(), 1, "{correlated:#?}");
    assert!(with(&findings, "correlation.password_spray", "user", "guest").is_empty());

    let lateral: Vec<_> = correlated
        .iter()
        .filter(|f| f.kind == "correlation.lateral_movement")
        .collect();
    assert_eq!(lateral.len(), 1, "{correlated:#?}");
    assert_eq!(lateral[0].attributes["from"], "fleet-15");
    assert_eq!(lateral[0].attributes["to"], "fleet-16");
    assert_eq!(lateral[0].host_id, "fleet-16");

    let fan_in = with(
        &findings,
        "correlation.fan_in",
        "remote_address",
        "198.51.100.77",
    );
    assert_eq!(fan_in.len(), 1, "{correlated:#?}");
    assert_eq!(fan_in[0].attributes["host_count"], "5");
    assert!(
        with(
            &findings,
            "correlation.fan_in",
            "remote_address",
            "198.51.100.78"
        )
        .is_empty()
    );

    let silence: Vec<_> = correlated
        .iter()
        .filter(|f| f.kind == "correlation.mass_silence")
        .collect();
    assert_eq!(silence.len(), 1);
    assert_eq!(silence[0].attributes["host_count"], "6", "{silence:#?}");
    assert_eq!(silence[0].attributes["fleet_hosts"], "20");

    // Nothing else was correlated.
    assert_eq!(correlated.len(), 7, "{correlated:#?}");

    // The chain: `bannin finding show` prints the findings a correlation was built from.
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, shown, err) = bannin_json(&operator, &["finding", "show", &spread[0].id.to_string()]);
    assert!(ok, "{err}");
    let chain = shown["correlated"].as_array().expect("chain");
    assert_eq!(chain.len(), 3, "{shown}");
    assert!(chain.iter().all(|f| f["kind"] == "process.unknown_binary"
        && f["attributes"]["sha256"] == spread_sha.as_str()));
    // Rules in force with what they raised.
    let (ok, rules, err) = bannin_json(&operator, &["rules"]);
    assert!(ok, "{err}");
    let raised = |name: &str| {
        rules["correlation"]["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .and_then(|r| r["raised"].as_u64())
    };
    assert_eq!(raised("spread"), Some(2));
    assert_eq!(raised("lateral_movement"), Some(1));
    assert_eq!(raised("mass_silence"), Some(1));
    assert_eq!(rules["correlation"]["enabled"], true);
    // Keep the rest online until here.
    for a in &mut fleet {
        let _ = a.heartbeat().await;
    }
    let _ = client.list_hosts(v1::ListHostsRequest {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suppression_rules_count_what_they_hold_back_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let config = r#"
[[suppress]]
name = "ci-builds"
reason = "CI runners build in /tmp (CHG-1234)"
kind = "process.*"
labels = { role = "ci" }
attributes = { exe = "^/tmp/build-" }
expires = "2999-01-01T00:00:00Z"

[[suppress]]
name = "old-scanner"
reason = "the 2020 scan window"
kind = "net.new_listener"
expires = "2020-01-01T00:00:00Z"
"#;
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), config);
    let mut ci = SimAgent::connect(
        &pki,
        "ci-01",
        collector.addr,
        &["10.30.0.1"],
        &[("role", "ci")],
    )
    .await
    .expect("ci");
    let mut web = SimAgent::connect(
        &pki,
        "web-01",
        collector.addr,
        &["10.30.0.2"],
        &[("role", "web")],
    )
    .await
    .expect("web");
    let now = now_unix_ms();
    let build = event(
        "process.suspicious_exec",
        true,
        now,
        &[
            ("exe", "/tmp/build-42/cc1"),
            ("reason", "suspicious_directory"),
        ],
    );
    ci.send(std::slice::from_ref(&build)).await.expect("send");
    ci.send(&[event(
        "process.suspicious_exec",
        true,
        now,
        &[("exe", "/tmp/evil"), ("reason", "suspicious_directory")],
    )])
    .await
    .expect("send");
    web.send(&[build]).await.expect("send");
    web.send(&[event("net.new_listener", true, now, &[("port", "31337")])])
        .await
        .expect("send");

    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let findings = all_findings(&mut client).await;
    let exes: Vec<(&str, &str)> = findings
        .iter()
        .filter(|f| f.kind == "process.suspicious_exec")
        .map(|f| (f.host_id.as_str(), f.attributes["exe"].as_str()))
        .collect();
    assert_eq!(
        exes,
        [("ci-01", "/tmp/evil"), ("web-01", "/tmp/build-42/cc1")],
        "only the CI build was held back"
    );
    assert!(
        findings.iter().any(|f| f.kind == "net.new_listener"),
        "an expired rule holds nothing back"
    );
    // Held back, not lost: the event is in the store, and the rule counts it.
    let events = client
        .list_events(v1::ListEventsRequest {
            host_id: "ci-01".into(),
            kind: "process.suspicious_exec".into(),
            ..Default::default()
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    assert_eq!(events.len(), 2);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, rules, err) = bannin_json(&operator, &["rules"]);
    assert!(ok, "{err}");
    let rule = |name: &str| {
        rules["suppressions"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .cloned()
            .expect("rule")
    };
    assert_eq!(rule("ci-builds")["hits"], 1);
    assert_eq!(rule("ci-builds")["active"], true);
    assert_eq!(rule("old-scanner")["hits"], 0);
    assert_eq!(rule("old-scanner")["active"], false);
    // Hit counts survive a restart.
    drop(ci);
    drop(web);
    let CollectorProc {
        mut proc,
        addr,
        config,
    } = collector;
    assert!(proc.terminate(Duration::from_secs(20)), "stopped");
    let again = CollectorProc::start_with(&dir.path().join("collector"), config, addr.port());
    let (ok, rules, err) = bannin_json(&operator, &["rules"]);
    assert!(ok, "{err}");
    assert_eq!(rules["suppressions"][0]["hits"], 1, "{rules}");
    drop(again);
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_from_people_become_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _web = SimAgent::connect(&pki, "web-01", collector.addr, &["10.30.0.2"], &[])
        .await
        .expect("web");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, f, err) = bannin_json(
        &operator,
        &[
            "finding",
            "add",
            "--host",
            "web-01",
            "--kind",
            "report.external",
            "--severity",
            "high",
            "--text",
            "JPCERT/CC: web-01 serves a phishing kit",
            "--reporter",
            "JPCERT/CC",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(f["kind"], "report.external");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["attributes"]["reported_by"], "alice");
    assert_eq!(f["attributes"]["reporter"], "JPCERT/CC");
    assert_eq!(f["host_id"], "web-01");
    // Indicator 9 of the guidance: threats from an attack group.
    let (ok, t, err) = bannin_json(
        &operator,
        &[
            "finding",
            "add",
            "--host",
            "web-01",
            "--kind",
            "report.threat",
            "--severity",
            "critical",
            "--text",
            "Sector ISAC: a group targeting our VPN appliances names our ASN",
            "--reporter",
            "Sector ISAC",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(t["kind"], "report.threat");
    assert_eq!(t["severity"], "critical");
    assert_eq!(t["attributes"]["reporter"], "Sector ISAC");
    assert_eq!(t["attributes"]["reported_by"], "alice");
    assert_ne!(t["id"], f["id"], "a second report is its own finding");
    // And indicator 19: users report outages or slowness.
    let (ok, u, err) = bannin_json(
        &operator,
        &[
            "finding",
            "add",
            "--host",
            "web-01",
            "--kind",
            "report.user",
            "--severity",
            "medium",
            "--text",
            "the shop is slow since 09:00",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(u["kind"], "report.user");
    assert!(u["attributes"].get("reporter").is_none(), "{u}");
    for (args, needle) in [
        (
            vec![
                "--host",
                "nowhere",
                "--kind",
                "report.user",
                "--severity",
                "low",
                "--text",
                "x",
            ],
            "no host",
        ),
        (
            vec![
                "--host",
                "web-01",
                "--kind",
                "report.user",
                "--severity",
                "low",
                "--text",
                "  ",
            ],
            "text",
        ),
        (
            vec![
                "--host",
                "web-01",
                "--kind",
                "malware",
                "--severity",
                "low",
                "--text",
                "x",
            ],
            "report.external",
        ),
    ] {
        let mut full = vec!["finding", "add"];
        full.extend(args);
        let (ok, _, err) = bannin_json(&operator, &full);
        assert!(!ok, "{full:?} accepted");
        assert!(err.contains(needle), "{full:?}: {err}");
    }
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    assert!(
        actions
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["verb"] == "finding.add" && a["actor"] == "alice"),
        "{actions}"
    );
}
