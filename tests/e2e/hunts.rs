//! Hunts across a fleet of real agents: who gets the hunt (labels, hosts
//! that connect later, a host that gains a label), what they find (a planted
//! file by hash, a running process), caps, stops, and that a scan never
//! holds up other commands.

use std::path::Path;
use std::time::Duration;

use bannin_tests::{
    AgentOptions, CollectorProc, Proc, TestPki, bannin_json, eventually, free_port,
    operator_client, operator_toml, start_agent,
};
use serde_json::Value;

use crate::all_findings;

fn agent(dir: &Path, pki: &TestPki, host: &str, role: &str, addr: std::net::SocketAddr) -> Proc {
    start_agent(
        &dir.join(host),
        &pki.agent(host),
        addr,
        &AgentOptions {
            net_listener: false,
            extra: format!("[labels]\nrole = \"{role}\"\n"),
            ..AgentOptions::default()
        },
    )
}

/// `bannin hunt show ID --json`, polled until `check` holds.
async fn hunt_until(
    operator: &Path,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(Duration::from_secs(60), what, || {
        let (ok, shown, _) = bannin_json(operator, &["hunt", "show", id]);
        let hit = ok && check(&shown);
        async move { hit.then_some(shown) }
    })
    .await
}

fn host<'a>(shown: &'a Value, id: &str) -> Option<&'a Value> {
    shown["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host_id"] == id))
}

fn state(shown: &Value, id: &str) -> String {
    host(shown, id)
        .and_then(|h| h["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hunt_reaches_the_hosts_it_selects_now_and_later_and_finds_what_was_planted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let addr = collector.addr;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), addr);

    // A planted file among decoys, under a tree every agent of this machine sees.
    let plant = dir.path().join("plant");
    std::fs::create_dir_all(plant.join("srv/www/.cache")).expect("mkdir");
    let implant = format!("#!/bin/sh\n# implant {}\n", bannin_proto::now_unix_ms());
    std::fs::write(plant.join("srv/www/.cache/.x"), &implant).expect("plant");
    for i in 0..20 {
        std::fs::write(
            plant.join(format!("srv/www/page{i}.html")),
            vec![b'a'; 64 * 1024],
        )
        .expect("decoy");
    }
    let sha = bannin_proto::sha256_hex(implant.as_bytes());

    let _web1 = agent(dir.path(), &pki, "web-01", "web", addr);
    let db1 = agent(dir.path(), &pki, "db-01", "db", addr);
    let mut client = operator_client(&pki.operator("alice"), addr).await;
    eventually(Duration::from_secs(30), "two hosts connected", || {
        let mut c = client.clone();
        async move {
            let hosts = c
                .list_hosts(bannin_proto::v1::ListHostsRequest {})
                .await
                .ok()?
                .into_inner()
                .hosts;
            (hosts.iter().filter(|h| h.online).count() == 2).then_some(())
        }
    })
    .await;

    // A question that cannot run is refused before the hunt starts.
    let (ok, _, err) = bannin_json(
        &operator,
        &["hunt", "start", "file-hash", "abc", "--reason", "IR-7"],
    );
    assert!(!ok && err.contains("SHA-256"), "{err}");
    let (ok, _, err) = bannin_json(&operator, &["hunt", "start", "process", "--reason", "IR-7"]);
    assert!(!ok && err.contains("give a name"), "{err}");

    // web-02 is known (it connected once) but offline when the hunt starts.
    let web2 = agent(dir.path(), &pki, "web-02", "web", addr);
    eventually(Duration::from_secs(30), "web-02 known", || {
        let (_, hosts, _) = bannin_json(&operator, &["hosts"]);
        let known = hosts.as_array().is_some_and(|h| {
            h.iter()
                .any(|h| h["host_id"] == "web-02" && h["online"] == true)
        });
        async move { known.then_some(()) }
    })
    .await;
    drop(web2);

    let (ok, _, err) = bannin_json(
        &operator,
        &[
            "incident",
            "open",
            "--title",
            "IR-7 dropper",
            "--severity",
            "high",
        ],
    );
    assert!(ok, "{err}");
    let root = plant.display().to_string();
    let (ok, started, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "file-hash",
            &sha,
            "--root",
            &root,
            "--labels",
            "role=web",
            "--reason",
            "IR-7 dropper",
            "--severity",
            "high",
            "--incident",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let id = started["id"].as_str().expect("hunt id").to_owned();

    let shown = hunt_until(&operator, &id, "web-01 answered", |s| {
        state(s, "web-01") == "done"
    })
    .await;
    let web1 = host(&shown, "web-01").expect("web-01");
    assert_eq!(web1["hits"], 1, "{shown}");
    assert!(web1["files"].as_u64() >= Some(21), "{shown}");
    assert_eq!(state(&shown, "web-02"), "pending", "offline: {shown}");
    assert_eq!(host(&shown, "web-02").expect("web-02")["online"], false);
    assert_eq!(
        state(&shown, "db-01"),
        "absent",
        "db-01 is not selected: {shown}"
    );
    assert_eq!(shown["offline"], 1);

    // web-02 connects later and answers.
    let _web2 = agent(dir.path(), &pki, "web-02", "web", addr);
    hunt_until(&operator, &id, "web-02 answered", |s| {
        state(s, "web-02") == "done"
    })
    .await;

    // db-01 gains the label during the hunt: it is asked too.
    let (ok, _, err) = bannin_json(&operator, &["host", "label", "db-01", "role=web"]);
    assert!(ok, "{err}");
    let shown = hunt_until(&operator, &id, "db-01 answered", |s| {
        state(s, "db-01") == "done"
    })
    .await;
    assert_eq!(shown["answered"], 3, "{shown}");
    assert_eq!(shown["with_hits"], 3, "{shown}");

    // The hits, with the path, as JSON and as CSV.
    let (ok, results, err) = bannin_json(&operator, &["hunt", "results", &id]);
    assert!(ok, "{err}");
    let rows = results.as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{results}");
    let planted_path = plant.join("srv/www/.cache/.x").display().to_string();
    assert!(
        rows.iter()
            .all(|r| r["path"] == planted_path.as_str() && r["sha256"] == sha.as_str()),
        "{results}"
    );
    let csv = std::process::Command::new(bannin_tests::bin("bannin"))
        .args(["hunt", "results", &id, "--csv", "--config"])
        .arg(&operator)
        .output()
        .expect("csv");
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.starts_with("host_id,")),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // Every host with hits has a hunt.match finding naming the hunt.
    let findings = all_findings(&mut client).await;
    let matched: Vec<&str> = findings
        .iter()
        .filter(|f| f.kind == "hunt.match" && f.attributes.get("hunt") == Some(&id))
        .map(|f| f.host_id.as_str())
        .collect();
    for h in ["web-01", "web-02", "db-01"] {
        assert!(matched.contains(&h), "{h}: {matched:?}");
    }
    assert!(
        findings.iter().any(
            |f| f.kind == "hunt.match" && f.severity == bannin_proto::v1::Severity::High as i32
        )
    );

    // The incident's scoping brief lists the hunt and the hosts it found.
    let (ok, brief, err) = bannin_json(&operator, &["incident", "brief", "1"]);
    assert!(ok, "{err}");
    let hunts = brief["hunts"].as_array().expect("hunts in the brief");
    assert_eq!(hunts.len(), 1, "{brief}");
    assert_eq!(hunts[0]["id"], id.as_str());
    for h in ["web-01", "web-02", "db-01"] {
        assert_eq!(hunts[0]["hosts_with_hits"][h], 1, "{brief}");
    }

    // A YARA hunt finds the same file by its content; rules that do not
    // compile, or that include a file, are refused before the hunt starts.
    let rules = dir.path().join("implant.yar");
    std::fs::write(
        &rules,
        "rule dropper_implant {\n  strings:\n    $tag = \"# implant \"\n    $sh = \"#!/bin/sh\"\n  condition:\n    $sh at 0 and $tag\n}\n",
    )
    .expect("rules");
    let broken = dir.path().join("broken.yar");
    std::fs::write(&broken, "rule broken { condition: $nothing }").expect("rules");
    let (ok, _, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "yara",
            &broken.display().to_string(),
            "--reason",
            "IR-7",
        ],
    );
    assert!(
        !ok && err.contains("do not compile") && err.contains("nothing"),
        "{err}"
    );
    let sneaky = dir.path().join("sneaky.yar");
    std::fs::write(
        &sneaky,
        "include \"/etc/shadow\"\nrule x { condition: true }",
    )
    .expect("rules");
    let (ok, _, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "yara",
            &sneaky.display().to_string(),
            "--reason",
            "IR-7",
        ],
    );
    assert!(!ok && err.contains("include"), "{err}");
    let (ok, started, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "yara",
            &rules.display().to_string(),
            "--root",
            &root,
            "--hosts",
            "web-01",
            "--reason",
            "IR-7 dropper by content",
        ],
    );
    assert!(ok, "{err}");
    let yara_hunt = started["id"].as_str().expect("id").to_owned();
    let shown = hunt_until(&operator, &yara_hunt, "yara hunt answered", |s| {
        state(s, "web-01") == "done"
    })
    .await;
    assert!(
        shown["question"]
            .as_str()
            .is_some_and(|q| q.contains("dropper_implant")),
        "{shown}"
    );
    let (_, rows, _) = bannin_json(&operator, &["hunt", "results", &yara_hunt]);
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["path"], planted_path.as_str());
    assert_eq!(
        rows[0]["sha256"],
        sha.as_str(),
        "the same file as the hash hunt's"
    );
    assert!(
        rows[0]["rules"].to_string().contains("dropper_implant"),
        "{rows:?}"
    );

    // A process hunt finds a running process by its executable.
    let bin = dir.path().join("tools");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let sleeper = bin.join("kworker-hunt");
    std::fs::copy("/bin/sleep", &sleeper).expect("copy sleep");
    let mut running = std::process::Command::new(&sleeper)
        .arg("300")
        .spawn()
        .expect("sleeper");
    let exe = format!("{}/*", bin.display());
    let (ok, started, err) = bannin_json(
        &operator,
        &[
            "hunt", "start", "process", "--exe", &exe, "--hosts", "web-01", "--reason", "IR-7",
        ],
    );
    assert!(ok, "{err}");
    let pid_hunt = started["id"].as_str().expect("id").to_owned();
    hunt_until(&operator, &pid_hunt, "process hunt answered", |s| {
        state(s, "web-01") == "done"
    })
    .await;
    let (_, rows, _) = bannin_json(&operator, &["hunt", "results", &pid_hunt]);
    assert!(
        rows.as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["pid"] == running.id()),
        "{rows}"
    );
    let _ = running.kill();
    let _ = running.wait();

    // A cap reached is reported: one read of 1 KiB at most.
    let (ok, started, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "file-hash",
            &sha,
            "--root",
            &root,
            "--hosts",
            "web-01",
            "--max-read",
            "1K",
            "--reason",
            "IR-7 cap",
        ],
    );
    assert!(ok, "{err}");
    let capped = started["id"].as_str().expect("id").to_owned();
    let shown = hunt_until(&operator, &capped, "capped hunt answered", |s| {
        state(s, "web-01") == "done"
    })
    .await;
    let detail = host(&shown, "web-01").expect("web-01")["detail"].clone();
    assert!(
        detail.as_str().is_some_and(|d| d.contains("read cap")),
        "{shown}"
    );

    // A long scan: other commands go through while it runs; a stop ends it on the agent.
    let (ok, started, err) = bannin_json(
        &operator,
        &[
            "hunt",
            "start",
            "file-hash",
            &"0".repeat(64),
            "--root",
            "/",
            "--depth",
            "64",
            "--max-size",
            "4G",
            "--max-read",
            "1000G",
            "--max-cpu",
            "10m",
            "--hosts",
            "db-01",
            "--reason",
            "IR-7 wide",
        ],
    );
    assert!(ok, "{err}");
    let wide = started["id"].as_str().expect("id").to_owned();
    hunt_until(&operator, &wide, "the wide hunt running", |s| {
        state(s, "db-01") == "running"
    })
    .await;
    let (ok, ping, err) = bannin_json(&operator, &["ping", "db-01"]);
    assert!(ok, "ping during a scan: {err} {ping}");
    let (ok, stopped, err) = bannin_json(&operator, &["hunt", "stop", &wide, "--reason", "enough"]);
    assert!(ok, "{err}");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    eventually(
        Duration::from_secs(30),
        "the agent stopped the scan",
        || {
            let log = db1.log_text();
            let done = log.contains(&format!("hunt {wide} stopping"))
                && log.contains("stopped before it finished");
            async move { done.then_some(()) }
        },
    )
    .await;
    let (_, shown, _) = bannin_json(&operator, &["hunt", "show", &wide]);
    assert_eq!(state(&shown, "db-01"), "stopped", "{shown}");

    // Every start and stop is in the action log with its reason.
    let (_, actions, _) = bannin_json(&operator, &["actions"]);
    let verbs: Vec<(String, String)> = actions
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| {
            (
                a["verb"].as_str().unwrap_or_default().to_owned(),
                a["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        verbs.contains(&("hunt.start".into(), "IR-7 dropper".into())),
        "{verbs:?}"
    );
    assert!(
        verbs.contains(&("hunt.stop".into(), "enough".into())),
        "{verbs:?}"
    );

    // The list shows them all.
    let (ok, list, _) = bannin_json(&operator, &["hunt", "list"]);
    assert!(ok && list.as_array().map(Vec::len) == Some(5), "{list}");
}

/// An isolate sent while the host runs a YARA scan for a hunt is enforced as
/// fast as without one: hunts have their own lane on the agent, isolation the
/// urgent one.
#[test]
fn an_isolate_during_a_scan_is_enforced_within_a_second_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let mut site = crate::response::Site::new();

    // A connection hunt finds a connection the lab host holds open to its peer,
    // with the process that owns it.
    let peer = bannin_tests::netns::Host::Peer.v4();
    let mut holder = site
        .lab
        .command(bannin_tests::netns::Host::Agent, Path::new("python3"))
        .args([
            "-c",
            "import socket, sys, time\ns = socket.create_connection((sys.argv[1], 9000))\ntime.sleep(120)\n",
            &peer,
        ])
        .spawn()
        .expect("python3");
    // Connected before the hunt asks (the lab's own probes left time_wait sockets).
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (ok, started, err) = site.cli(&[
        "hunt",
        "start",
        "connection",
        "--remote",
        &peer,
        "--port",
        "9000",
        "--reason",
        "IR-7 C2",
    ]);
    assert!(ok, "{err}");
    let id = started["id"].as_str().expect("id").to_owned();
    let mut rows = Value::Null;
    site.wait_until(
        |s| {
            let (_, shown, _) = s.cli(&["hunt", "show", &id]);
            state(&shown, "web-01") == "done"
        },
        "the connection hunt answered",
    );
    for _ in 0..20 {
        rows = site.cli(&["hunt", "results", &id]).1;
        if rows.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let hit = rows
        .as_array()
        .and_then(|r| {
            r.iter().find(|r| {
                r["remote"] == format!("{peer}:9000").as_str() && r["state"] == "established"
            })
        })
        .unwrap_or_else(|| panic!("the lab connection: {rows}"))
        .clone();
    assert_eq!(hit["comm"], "python3", "the owning process is named: {hit}");

    let took = |record: &Value| {
        crate::incidents::ms(&record["finished"]) - crate::incidents::ms(&record["created"])
    };
    // Without a scan first: the baseline of this run.
    let (ok, alone, err) = site.cli(&["isolate", "web-01", "--reason", "baseline"]);
    assert!(ok && alone["state"] == "succeeded", "{alone} {err}");
    let (ok, _, err) = site.cli(&["release", "web-01", "--reason", "baseline"]);
    assert!(ok, "{err}");

    // A wide YARA scan: every file of the machine, with caps that do not end it soon.
    let rules = site.dir.path().join("wide.yar");
    let text: String = (0..50)
        .map(|i| format!("rule r{i} {{ strings: $a = \"bannin-never-{i}\" $b = {{ 4? 5? 4? 46 [2-8] 0{} }} condition: any of them }}\n", i % 10))
        .collect();
    std::fs::write(&rules, text).expect("rules");
    let (ok, started, err) = site.cli(&[
        "hunt",
        "start",
        "yara",
        rules.to_str().expect("utf8"),
        "--root",
        "/",
        "--depth",
        "64",
        "--max-size",
        "4G",
        "--max-read",
        "1000G",
        "--max-cpu",
        "10m",
        "--reason",
        "wide",
    ]);
    assert!(ok, "{err}");
    let id = started["id"].as_str().expect("id").to_owned();
    site.wait_until(
        |s| {
            let (_, shown, _) = s.cli(&["hunt", "show", &id]);
            state(&shown, "web-01") == "running"
        },
        "the scan running",
    );
    let (ok, during, err) = site.cli(&["isolate", "web-01", "--reason", "during a scan"]);
    assert!(ok && during["state"] == "succeeded", "{during} {err}");
    assert!(site.reachability().iter().all(|r| !r), "isolated");
    let (_, shown, _) = site.cli(&["hunt", "show", &id]);
    assert_eq!(
        state(&shown, "web-01"),
        "running",
        "the scan was still running: {shown}"
    );
    assert!(
        took(&during) <= 1000,
        "isolate during a scan took {} ms (without one: {} ms)",
        took(&during),
        took(&alone)
    );
    let (ok, _, err) = site.cli(&["hunt", "stop", &id, "--reason", "done"]);
    assert!(ok, "{err}");
    let (ok, _, err) = site.cli(&["release", "web-01", "--reason", "done"]);
    assert!(ok, "{err}");
}
