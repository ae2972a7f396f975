//! Cluster mode: two collectors over a real three-node NATS JetStream cluster
//! (`nats-server` processes on loopback, mTLS, replicas 3). Collectors and
//! NATS servers are SIGKILLed mid-stream; what was acknowledged must be stored
//! exactly once on every collector, findings must come out identical, and the
//! fleet must be one fleet whichever collector its agents reach.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bannin_collector::cluster::{self, signing::Signer};
use bannin_collector::model::{Action, OperatorRecord, Role};
use bannin_proto::now_unix_ms;
use bannin_proto::v1;
use bannin_tests::nats::NatsCluster;
use bannin_tests::sim::{SimAgent, event};
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, eventually, operator_client, operator_toml,
    start_agent,
};
use tonic::transport::Channel;
use v1::operator_client::OperatorClient;

use crate::{all_events, all_findings};

const CONFIG: &str = "[correlation.spread]\nhosts = 3\n";
/// Events in each simulated batch.
const PER_BATCH: usize = 10;

/// Whether this machine can run a NATS cluster (skipped, or failed under
/// CI, when it cannot).
fn nats_here() -> bool {
    bannin_tests::runnable(&[bannin_tests::Need::Program("nats-server", "nats-server")])
}

/// The batch a simulated agent sends as `sequence`: always the same events,
/// as a real agent's spool replays the same batch.
fn batch(host: &str, sequence: u64) -> Vec<v1::Event> {
    (0..PER_BATCH)
        .map(|i| {
            event(
                "net.connection",
                false,
                now_unix_ms(),
                &[
                    ("host", host),
                    ("seq", &sequence.to_string()),
                    ("i", &i.to_string()),
                ],
            )
        })
        .collect()
}

/// Sends batches as `host` to `collectors` (in order, failing over to the
/// next when a session breaks) until `stop`; returns every acknowledged
/// sequence.
async fn stream_batches(
    pki: &TestPki,
    host: &str,
    collectors: &[SocketAddr],
    stop: tokio_util::sync::CancellationToken,
) -> BTreeSet<u64> {
    let mut acked = BTreeSet::new();
    let mut current = 0;
    while !stop.is_cancelled() {
        let addr = collectors[current % collectors.len()];
        let Ok(mut agent) = SimAgent::connect(pki, host, addr, &["10.30.0.1/24"], &[]).await else {
            current += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // Replays from what this collector has applied, as a spool would.
        loop {
            if stop.is_cancelled() {
                break;
            }
            let sequence = agent.next_sequence();
            match agent.send(&batch(host, sequence)).await {
                Ok(_) => {
                    acked.insert(sequence);
                }
                Err(_) => {
                    current += 1;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    acked
}

/// `host` as `ops`'s collector lists it.
async fn listed(mut ops: OperatorClient<Channel>, host: &str) -> Option<v1::Host> {
    ops.list_hosts(v1::ListHostsRequest {})
        .await
        .ok()?
        .into_inner()
        .hosts
        .into_iter()
        .find(|h| h.host_id == host)
}

async fn client(pki: &TestPki, addr: SocketAddr) -> OperatorClient<Channel> {
    operator_client(&pki.operator("alice"), addr).await
}

/// (batch sequence → events stored) of a simulated host.
async fn stored(client: &mut OperatorClient<Channel>, host: &str) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for e in all_events(client, host, "net.connection").await {
        let seq: u64 = e
            .event
            .as_ref()
            .and_then(|e| e.attributes.get("seq"))
            .and_then(|s| s.parse().ok())
            .expect("seq attribute");
        *out.entry(seq).or_default() += 1;
    }
    out
}

/// What must be equal on every collector: id, host, kind, count and state.
fn summary(findings: &[v1::Finding]) -> Vec<(u64, String, String, u64, i32)> {
    findings
        .iter()
        .map(|f| (f.id, f.host_id.clone(), f.kind.clone(), f.count, f.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_collectors_fail_over_with_nothing_acknowledged_lost_and_one_fleet() {
    if !nats_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let mut nats = NatsCluster::start(&dir.path().join("nats"), &pki, 3);
    // Both collectors configure the same export sink (each writing its own
    // file here, to tell who delivered what); one at a time runs it.
    let archive = |who: &str| dir.path().join(format!("archive-{who}.jsonl"));
    let sink = |who: &str| {
        format!(
            "[[sink]]\nname = \"archive\"\ntype = \"jsonl\"\npath = {:?}\n",
            archive(who).display().to_string()
        )
    };
    let config_a = format!("{CONFIG}{}{}", sink("a"), nats.collector_section("a", 3));
    let mut a = CollectorProc::start_free(&dir.path().join("a"), &pki, &config_a);
    let b = CollectorProc::start_free(
        &dir.path().join("b"),
        &pki,
        &format!("{CONFIG}{}{}", sink("b"), nats.collector_section("b", 3)),
    );
    let (addr_a, addr_b) = (a.addr, b.addr);

    // A command for a host no collector holds yet, issued through B: it waits
    // in the cluster log, and A — where the host connects — delivers it.
    let early = dir.path().join("early");
    std::fs::create_dir_all(&early).expect("dir");
    let early_b = operator_toml(&early, &pki.operator("alice"), addr_b);
    let (ok, queued, stderr) = bannin_json(&early_b, &["ping", "cluster-agent", "--no-wait"]);
    assert!(ok, "ping queued through B: {stderr}");
    assert_eq!(
        queued["state"], "pending",
        "nobody holds the host yet: {queued}"
    );
    let early_id = queued["id"].as_str().expect("command id").to_owned();

    // A real agent that knows both collectors, first A.
    let agent_dir = dir.path().join("agent");
    let _agent = start_agent(
        &agent_dir,
        &pki.agent("cluster-agent"),
        addr_a,
        &AgentOptions {
            more_collectors: vec![addr_b],
            ..AgentOptions::default()
        },
    );

    // Correlation over three hosts spread over the two collectors.
    let spread_sha = "7".repeat(64);
    for (host, addr) in [
        ("spread-0", addr_a),
        ("spread-1", addr_b),
        ("spread-2", addr_a),
    ] {
        let mut s = match SimAgent::connect(&pki, host, addr, &["10.30.0.2/24"], &[]).await {
            Ok(s) => s,
            Err(e) => panic!(
                "simulated agent: {e:#}\nA: {}\nB: {}",
                a.proc.log_text(),
                b.proc.log_text()
            ),
        };
        s.send(&[event(
            "process.unknown_binary",
            true,
            now_unix_ms(),
            &[
                ("sha256", &spread_sha),
                ("exe", "/tmp/.x/kworker"),
                ("pid", "99"),
            ],
        )])
        .await
        .expect("send");
    }

    // Simulated agents streaming through A (two) and B (one), failing over.
    let stop = tokio_util::sync::CancellationToken::new();
    let pki = std::sync::Arc::new(pki);
    let mut streams = Vec::new();
    for (host, order) in [
        ("stream-a1", vec![addr_a, addr_b]),
        ("stream-a2", vec![addr_a, addr_b]),
        ("stream-b1", vec![addr_b, addr_a]),
    ] {
        let (pki, stop) = (pki.clone(), stop.clone());
        streams.push((
            host,
            tokio::spawn(async move { stream_batches(&pki, host, &order, stop).await }),
        ));
    }
    let mut ops_b = client(&pki, addr_b).await;
    // The early command: delivered by A, answered, and the same record on both.
    std::fs::create_dir_all(early.join("a")).expect("dir");
    let early_a = operator_toml(&early.join("a"), &pki.operator("alice"), addr_a);
    let mut answered = Vec::new();
    for (through, wait) in [(&early_b, 30), (&early_a, 10)] {
        answered.push(
            eventually(
                Duration::from_secs(wait),
                "the command queued through B answered, as each collector lists it",
                || {
                    let r = command_in(through, "cluster-agent", &early_id, "succeeded");
                    async move { r }
                },
            )
            .await,
        );
    }
    let (answered, on_a) = (&answered[0], &answered[1]);
    assert_eq!(
        answered, on_a,
        "one queue, the same record on both collectors"
    );
    eventually(
        Duration::from_secs(30),
        "the real agent listed on B as held by A",
        || {
            let ops_b = ops_b.clone();
            async move {
                listed(ops_b, "cluster-agent")
                    .await
                    .filter(|h| h.online && h.collector == "a")
            }
        },
    )
    .await;
    // A, started first, runs the sink: it delivers every finding so far.
    let delivered_by_a = eventually(
        Duration::from_secs(30),
        "A delivered every finding so far to the sink",
        || {
            let mut ops_b = ops_b.clone();
            let file = archive("a");
            async move {
                let ids: BTreeSet<u64> = all_findings(&mut ops_b)
                    .await
                    .iter()
                    .map(|f| f.id)
                    .collect();
                let out = exported(&file);
                (ids.len() >= 4 && ids.iter().all(|i| out.contains(i))).then_some(out)
            }
        },
    )
    .await;
    assert!(
        exported(&archive("b")).is_empty(),
        "B stands by while A runs the sink"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 A mid-stream.
    a.proc.kill();
    eventually(
        Duration::from_secs(10),
        "the real agent reconnected to B",
        || {
            let ops_b = ops_b.clone();
            async move {
                listed(ops_b, "cluster-agent")
                    .await
                    .filter(|h| h.collector == "b")
                    .map(|_| ())
            }
        },
    )
    .await;
    // A finding raised after A died: B takes the sink over from A's cursor.
    let mut late = SimAgent::connect(&pki, "late-0", addr_b, &["10.30.0.9/24"], &[])
        .await
        .expect("late agent");
    late.send(&[event(
        "process.unknown_binary",
        true,
        now_unix_ms(),
        &[
            ("sha256", &"8".repeat(64)),
            ("exe", "/tmp/.y/kthreadd"),
            ("pid", "77"),
        ],
    )])
    .await
    .expect("send");
    let late_id = eventually(Duration::from_secs(20), "the late finding on B", || {
        let mut ops_b = ops_b.clone();
        async move {
            all_findings(&mut ops_b)
                .await
                .iter()
                .find(|f| f.host_id == "late-0")
                .map(|f| f.id)
        }
    })
    .await;
    // A's lease lapses (15 s without renewal) and B takes the sink over.
    let by_b = eventually(
        Duration::from_secs(60),
        "B delivered the finding raised after A died",
        || {
            let file = archive("b");
            async move {
                let out = exported(&file);
                out.contains(&late_id).then_some(out)
            }
        },
    )
    .await;

    // kill -9 one NATS server of three — the one leading the log stream, the
    // worst one to lose: ingest and the operator API continue.
    let leader = eventually(Duration::from_secs(20), "the log stream's leader", || {
        let leader = nats.stream_leader("BANNIN_LOG");
        async move { leader }
    })
    .await;
    nats.kill_node(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let findings_b = all_findings(&mut ops_b).await;
    let spread: Vec<&v1::Finding> = findings_b
        .iter()
        .filter(|f| {
            f.kind == "correlation.spread"
                && f.attributes.get("value").map(String::as_str) == Some(spread_sha.as_str())
        })
        .collect();
    assert_eq!(
        spread.len(),
        1,
        "one spread finding for three hosts over two collectors: {findings_b:#?}"
    );
    let first = findings_b
        .iter()
        .find(|f| f.kind == "process.unknown_binary")
        .expect("an indicator finding")
        .id;
    let changed = ops_b
        .set_finding_state(v1::SetFindingStateRequest {
            id: first,
            state: v1::FindingState::Acknowledged as i32,
            note: "seen from B while a NATS server is down".into(),
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "state change with the log's leader (server {leader}) down: {e}\nB: {}\nnats {}: {}",
                b.proc.log_text(),
                (leader + 1) % 3,
                nats.log((leader + 1) % 3)
            )
        })
        .into_inner();
    assert_eq!(changed.state, v1::FindingState::Acknowledged as i32);
    // `bannin cluster` answers meanwhile, naming the log's new leader.
    let killed = format!("n{leader}");
    eventually(
        Duration::from_secs(30),
        "bannin cluster names a new leader of the log",
        || {
            let mut ops_b = ops_b.clone();
            let killed = killed.clone();
            async move {
                let s = ops_b
                    .cluster_status(v1::ClusterStatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                s.streams
                    .iter()
                    .find(|st| st.name == "BANNIN_LOG")
                    .filter(|st| !st.leader.is_empty() && st.leader != killed)
                    .map(|_| ())
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.start_node(leader);
    nats.wait_ready(leader, Duration::from_secs(60));

    // A comes back and applies what it missed.
    a = CollectorProc::start_free(&dir.path().join("a"), &pki, &config_a);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut acked = BTreeMap::new();
    for (host, task) in streams {
        acked.insert(host, task.await.expect("stream task"));
    }
    let mut ops_a = client(&pki, a.addr).await;
    for (host, acked) in &acked {
        assert!(
            acked.len() > 20,
            "{host} sent too little to mean anything: {}",
            acked.len()
        );
        for (name, ops) in [("A", &mut ops_a), ("B", &mut ops_b)] {
            let want_last = *acked.last().expect("acked");
            let stored = eventually(
                Duration::from_secs(30),
                "every acknowledged batch applied",
                || {
                    let mut ops = ops.clone();
                    async move {
                        let s = stored(&mut ops, host).await;
                        s.keys()
                            .next_back()
                            .is_some_and(|l| *l >= want_last)
                            .then_some(s)
                    }
                },
            )
            .await;
            for seq in acked {
                assert_eq!(
                    stored.get(seq).copied(),
                    Some(PER_BATCH),
                    "{host} batch {seq} acknowledged: stored exactly once on {name}"
                );
            }
            assert!(
                stored.values().all(|n| *n == PER_BATCH),
                "no batch stored twice on {name}: {stored:?}"
            );
        }
    }
    // Both read afresh each round: the real agent keeps reporting through B,
    // so folds go on counting while A catches up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let on_a = loop {
        let on_b = summary(&all_findings(&mut ops_b).await);
        let on_a = summary(&all_findings(&mut ops_a).await);
        if on_a == on_b {
            break on_a;
        }
        if tokio::time::Instant::now() > deadline {
            let only_a: Vec<_> = on_a.iter().filter(|f| !on_b.contains(f)).collect();
            let only_b: Vec<_> = on_b.iter().filter(|f| !on_a.contains(f)).collect();
            panic!(
                "A's findings never equalled B's within 30 s\nonly on A: {only_a:?}\nonly on B: {only_b:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!on_a.is_empty());
    let mut seen = BTreeSet::new();
    for f in all_findings(&mut ops_a).await {
        let attributes: Vec<(String, String)> = f.attributes.clone().into_iter().collect();
        assert!(
            seen.insert((f.host_id.clone(), f.kind.clone(), attributes)),
            "finding raised twice: {f:?}\nA: {}\nB: {}",
            a.proc.log_text(),
            b.proc.log_text()
        );
    }
    let acknowledged = all_findings(&mut ops_a)
        .await
        .into_iter()
        .find(|f| f.id == first)
        .expect("the acknowledged finding on A");
    assert_eq!(
        acknowledged.state,
        v1::FindingState::Acknowledged as i32,
        "a state change made through B is on A"
    );
    assert!(
        !all_findings(&mut ops_b)
            .await
            .iter()
            .any(|f| f.kind == "host.clone"),
        "a failover is not a cloned identity"
    );

    // `bannin cluster`: both collectors, nothing left to apply, and the log's
    // three replicas current again (the restarted NATS server caught up).
    let operator = operator_toml(dir.path(), &pki.operator("alice"), addr_b);
    let status = eventually(
        Duration::from_secs(30),
        "bannin cluster: all caught up",
        || {
            let operator = operator.clone();
            async move {
                let (ok, status, _) = bannin_json(&operator, &["cluster"]);
                let (names, log) = cluster_view(&status)?;
                let peers = log["peers"].as_array()?;
                let caught_up = status["collectors"]
                    .as_array()?
                    .iter()
                    .all(|c| c["lag"] == 0);
                (ok && names == ["a", "b"]
                    && log["replicas"] == 3
                    && peers.len() == 3
                    && peers.iter().all(|p| p["current"] == true)
                    && caught_up)
                    .then_some(status)
            }
        },
    )
    .await;
    // Honest collectors never refuse each other's messages.
    assert_eq!(status["refused"], 0, "{status:#}");
    assert_eq!(status["collector"], "b");
    let streams: Vec<&str> = status["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        streams,
        [
            "BANNIN_LOG",
            "KV_BANNIN_HOSTS",
            "KV_BANNIN_COLLECTORS",
            "KV_BANNIN_SINKS",
            "KV_BANNIN_SINK_LEASES",
            "OBJ_BANNIN_EVIDENCE"
        ],
        "bannin cluster shows every stream, bucket and object store: {status}"
    );
    let digests: Vec<&str> = status["collectors"]
        .as_array()
        .expect("collectors")
        .iter()
        .filter_map(|c| c["detection"].as_str())
        .collect();
    assert!(
        digests.len() == 2 && !digests[0].is_empty() && digests[0] == digests[1],
        "both collectors publish the same detection digest: {status}"
    );
    assert_eq!(status["detection_differs"], false, "{status}");

    // The sink: B took it over when A's lease lapsed and continued from A's
    // cursor — nothing A had delivered is delivered again, nothing is skipped.
    let again: Vec<&u64> = delivered_by_a.intersection(&by_b).collect();
    assert!(
        again.is_empty(),
        "B continued from the cursor, it did not start over: delivered again {again:?}"
    );
    let by_a = exported(&archive("a"));
    let ids: BTreeSet<u64> = all_findings(&mut ops_b)
        .await
        .iter()
        .map(|f| f.id)
        .collect();
    eventually(Duration::from_secs(30), "every finding exported", || {
        let (by_a, ids, file) = (by_a.clone(), ids.clone(), archive("b"));
        async move {
            let by_b = exported(&file);
            ids.iter()
                .all(|i| by_a.contains(i) || by_b.contains(i))
                .then_some(())
        }
    })
    .await;
    for (who, addr) in [("B", addr_b), ("A", a.addr)] {
        let via = dir.path().join(format!("sinks-{who}"));
        std::fs::create_dir_all(&via).expect("dir");
        let cli = operator_toml(&via, &pki.operator("alice"), addr);
        let (ok, sinks, stderr) = bannin_json(&cli, &["sinks"]);
        assert!(ok, "{stderr}");
        assert_eq!(sinks[0]["runner"], "b", "run by B, as {who} says: {sinks}");
    }

    let (ok, hosts, stderr) = bannin_json(&operator, &["hosts"]);
    assert!(ok, "{stderr}");
    let agent = hosts
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host_id"] == "cluster-agent"))
        .expect("the real agent listed");
    assert_eq!(agent["collector"], "b", "{agent}");

    // A command issued on A reaches the host through B, which holds its
    // stream; its progress is read through A too, from A's copy of the queue.
    let via_a = dir.path().join("via-a");
    std::fs::create_dir_all(&via_a).expect("dir");
    let through_a = operator_toml(&via_a, &pki.operator("alice"), a.addr);
    let (ok, record, stderr) = bannin_json(&through_a, &["ping", "cluster-agent"]);
    assert!(ok, "ping through A: {stderr}");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["operator"], "alice", "{record}");
    let mut ops_a = client(&pki, a.addr).await;
    let actions = eventually(
        Duration::from_secs(20),
        "A's record of where the command went in the action log",
        || {
            let mut ops_a = ops_a.clone();
            async move {
                let actions = ops_a
                    .list_actions(v1::ListActionsRequest {
                        host_id: "cluster-agent".into(),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .actions;
                actions
                    .iter()
                    .any(|a| {
                        a.verb == "command.ping"
                            && a.result
                                .contains("connected to collector b, which delivers it")
                    })
                    .then_some(actions)
            }
        },
    )
    .await;
    assert!(
        actions.iter().any(|a| a.verb == "result.ping"),
        "B's record of the ping's result is in A's log too: {actions:?}"
    );

    // A snapshot issued through A is received and verified by B (which holds
    // the host), its bundle put in the object store; A exports it from there.
    let (ok, snapshot, stderr) = bannin_json(
        &through_a,
        &["snapshot", "cluster-agent", "--reason", "cluster case"],
    );
    assert!(ok, "snapshot through A: {snapshot} {stderr}");
    let held = eventually(Duration::from_secs(20), "the evidence listed on A", || {
        let through_a = through_a.clone();
        async move {
            let (_, list, _) = bannin_json(&through_a, &["evidence", "list"]);
            list.as_array()?.first().cloned()
        }
    })
    .await;
    let (id, sha) = (
        held["id"].as_str().expect("id").to_owned(),
        held["sha256"].as_str().expect("sha256").to_owned(),
    );
    let (_, on_b, _) = bannin_json(&operator, &["evidence", "list"]);
    assert_eq!(
        on_b[0]["id"],
        id.as_str(),
        "the same evidence id on B: {on_b}"
    );
    assert!(
        dir.path()
            .join("b/evidence")
            .join(format!("{sha}.tar.zst"))
            .exists(),
        "B received the bundle"
    );
    let on_a = dir.path().join("a/evidence").join(format!("{sha}.tar.zst"));
    assert!(!on_a.exists(), "A never received it from the agent");
    let out = dir.path().join("exported");
    let (ok, exported, stderr) = bannin_json(
        &through_a,
        &[
            "evidence",
            "export",
            &id,
            "--to",
            out.to_str().expect("utf8"),
            "--recipient",
            "Legal",
            "--reason",
            "court",
        ],
    );
    assert!(ok, "export through A: {exported} {stderr}");
    assert!(on_a.exists(), "A fetched the bundle from the object store");
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "the export checks with standard tools: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let custody: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("custody.json")).expect("custody.json"),
    )
    .expect("json");
    let verbs: Vec<&str> = custody["custody"]
        .as_array()
        .expect("custody events")
        .iter()
        .filter_map(|e| e["verb"].as_str())
        .collect();
    assert_eq!(
        verbs,
        ["evidence.received", "evidence.exported"],
        "custody recorded on B and on A, one chain: {custody}"
    );

    // A packet capture issued through A (root: a packet socket; on loopback,
    // read-only) goes through the log like any command, and the evidence B
    // receives is listed and verifies through A.
    if bannin_tests::netns::is_root() {
        let (ok, capture, stderr) = bannin_json(
            &through_a,
            &[
                "capture",
                "cluster-agent",
                "--seconds",
                "1",
                "--interface",
                "lo",
                "--filter",
                "tcp port 1",
                "--reason",
                "cluster capture",
            ],
        );
        assert!(
            ok && capture["state"] == "succeeded",
            "capture through A: {capture} {stderr}"
        );
        let held = eventually(Duration::from_secs(20), "the capture listed on A", || {
            let through_a = through_a.clone();
            let command = capture["id"].clone();
            async move {
                let (_, list, _) = bannin_json(&through_a, &["evidence", "list"]);
                list.as_array()?
                    .iter()
                    .find(|e| e["command_id"] == command)
                    .cloned()
            }
        })
        .await;
        let id = held["id"].as_str().expect("id");
        let (ok, verified, stderr) = bannin_json(&through_a, &["evidence", "verify", id]);
        assert!(ok, "the capture verifies through A: {verified} {stderr}");
        assert_eq!(verified["manifest"]["capture"]["filter"], "tcp port 1");
    }

    // The action log is one chain, in one order, on both collectors: what A
    // recorded (the forwarding) and what B recorded (the state change, the
    // command's result) alike, and it verifies on both.
    let chain_b = eventually(
        Duration::from_secs(20),
        "the same action log on A and on B",
        || {
            let (ops_a, ops_b) = (ops_a.clone(), ops_b.clone());
            async move {
                let (on_a, on_b) = (whole_log(ops_a).await?, whole_log(ops_b).await?);
                (on_a == on_b).then_some(on_b)
            }
        },
    )
    .await;
    assert!(
        chain_b
            .iter()
            .any(|(_, verb, actor, _)| verb == "finding.state" && actor == "alice"),
        "the state change made through B is in the chain: {chain_b:?}"
    );
    for (name, ops) in [("A", &mut ops_a), ("B", &mut ops_b)] {
        let verdict = ops
            .verify_actions(v1::VerifyActionsRequest {})
            .await
            .expect("verify")
            .into_inner();
        assert!(verdict.ok, "the action log verifies on {name}: {verdict:?}");
        assert_eq!(verdict.entries as usize, chain_b.len());
    }

    // An incident opened through A and worked through B is one incident.
    let first_id = first.to_string();
    let (ok, opened, stderr) = bannin_json(
        &through_a,
        &[
            "incident",
            "open",
            "--title",
            "Spread of kworker",
            "--severity",
            "high",
            "--finding",
            &first_id,
        ],
    );
    assert!(ok, "incident open through A: {opened} {stderr}");
    let incident = opened["incident"]["id"].to_string();
    let (ok, _, stderr) = bannin_json(&operator, &["incident", "note", &incident, "seen on B"]);
    assert!(ok, "incident note through B: {stderr}");
    let (ok, _, stderr) = bannin_json(
        &operator,
        &["incident", "set-status", &incident, "contained"],
    );
    assert!(ok, "incident set-status through B: {stderr}");
    let shown = eventually(
        Duration::from_secs(20),
        "B's changes to the incident seen through A",
        || {
            let (through_a, incident) = (through_a.clone(), incident.clone());
            async move {
                let (_, shown, _) = bannin_json(&through_a, &["incident", "show", &incident]);
                (shown["incident"]["status"] == "contained").then_some(shown)
            }
        },
    )
    .await;
    assert!(
        shown.to_string().contains("seen on B"),
        "the note made through B is on A: {shown}"
    );
    let (ok, backwards, _) =
        bannin_json(&through_a, &["incident", "set-status", &incident, "open"]);
    assert!(
        !ok,
        "status moves forward only, through any collector: {backwards}"
    );
    let (_, list_a, _) = bannin_json(&through_a, &["incident", "list"]);
    let (_, list_b, _) = bannin_json(&operator, &["incident", "list"]);
    assert_eq!(list_a, list_b, "one list of incidents");

    // A label set through A on a host held by B is on both.
    let (ok, _, stderr) = bannin_json(
        &through_a,
        &["host", "label", "cluster-agent", "site=osaka"],
    );
    assert!(ok, "host label through A: {stderr}");
    eventually(Duration::from_secs(20), "the label seen through B", || {
        let operator = operator.clone();
        async move {
            let (_, hosts, _) = bannin_json(&operator, &["hosts"]);
            hosts
                .as_array()?
                .iter()
                .find(|h| h["host_id"] == "cluster-agent" && h["labels"]["site"] == "osaka")
                .map(|_| ())
        }
    })
    .await;

    // Operators and revocations changed through one collector hold on every
    // collector.
    let (ok, _, stderr) = bannin_json(&through_a, &["operator", "add", "bob", "--role", "viewer"]);
    assert!(ok, "operator add through A: {stderr}");
    let bob_dir = dir.path().join("bob");
    std::fs::create_dir_all(&bob_dir).expect("dir");
    let bob_on_b = operator_toml(&bob_dir, &pki.operator("bob"), addr_b);
    eventually(
        Duration::from_secs(20),
        "bob, added through A, reads through B",
        || {
            let bob = bob_on_b.clone();
            async move { bannin_json(&bob, &["hosts"]).0.then_some(()) }
        },
    )
    .await;
    let (ok, _, stderr) = bannin_json(&through_a, &["operator", "disable", "bob"]);
    assert!(ok, "operator disable through A: {stderr}");
    eventually(
        Duration::from_secs(20),
        "bob, disabled through A, refused by B",
        || {
            let bob = bob_on_b.clone();
            async move { (!bannin_json(&bob, &["hosts"]).0).then_some(()) }
        },
    )
    .await;
    let (ok, revoked, stderr) = bannin_json(
        &operator,
        &["host", "revoke", "stream-a1", "--reason", "key stolen"],
    );
    assert!(ok, "host revoke through B: {revoked} {stderr}");
    eventually(
        Duration::from_secs(20),
        "stream-a1, revoked through B, refused by A",
        || {
            let pki = pki.clone();
            async move {
                SimAgent::connect(&pki, "stream-a1", addr_a, &["10.30.0.5/24"], &[])
                    .await
                    .is_err()
                    .then_some(())
            }
        },
    )
    .await;
}

/// Finding ids in a JSON lines export file (none if it does not exist).
fn exported(path: &std::path::Path) -> BTreeSet<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["id"].as_u64())
        .collect()
}

/// The whole action log: position, verb, actor and hash of every entry.
/// Alice's operator configuration for collectors a and b, each in the
/// collector's directory under `dir`.
fn operators_of(dir: &Path, pki: &TestPki, [a, b]: [&CollectorProc; 2]) -> [std::path::PathBuf; 2] {
    [("a", a), ("b", b)]
        .map(|(name, c)| operator_toml(&dir.join(name), &pki.operator("alice"), c.addr))
}

/// Command `id` as `bannin commands --host HOST` lists it through
/// `operator`, once it is in `state`.
fn command_in(operator: &Path, host: &str, id: &str, state: &str) -> Option<serde_json::Value> {
    let (_, list, _) = bannin_json(operator, &["commands", "--host", host]);
    list.as_array()?
        .iter()
        .find(|c| c["id"] == id && c["state"] == state)
        .cloned()
}

async fn whole_log(mut ops: OperatorClient<Channel>) -> Option<Vec<(u64, String, String, String)>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = ops
            .list_actions(v1::ListActionsRequest {
                after_seq: after,
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner();
        out.extend(
            page.actions
                .into_iter()
                .map(|a| (a.seq, a.verb, a.actor, a.sha256)),
        );
        if page.next_after_seq == 0 {
            return Some(out);
        }
        after = page.next_after_seq;
    }
}

/// `bannin ARGS --json` through the operator config `operator`, run inside
/// the lab's collector namespace.
fn lab_cli(
    lab: &bannin_tests::netns::Lab,
    operator: &std::path::Path,
    args: &[&str],
) -> (bool, serde_json::Value, String) {
    let out = lab
        .command(
            bannin_tests::netns::Host::Collector,
            &bannin_tests::bin("bannin"),
        )
        .args(args)
        .arg("--json")
        .arg("--config")
        .arg(operator)
        .output()
        .expect("bannin");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `check` every 200 ms for up to `secs` seconds.
fn lab_wait(secs: u64, what: &str, mut check: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn isolate_through_one_collector_isolates_a_host_on_the_other_in_the_namespace_lab() {
    use bannin_tests::netns::{Host, Lab};
    use bannin_tests::{Proc, agent_config, bin, collector_config};
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Program("nats-server", "nats-server"),
        bannin_tests::Need::Root,
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::new();
    let pki = TestPki::new(dir.path());
    // One NATS server and two collectors on the collector host.
    let nats = NatsCluster::start_in(
        &dir.path().join("nats"),
        &pki,
        1,
        Some(&lab.ns(Host::Collector)),
    );
    let mut collectors = Vec::new();
    let mut addrs = Vec::new();
    for (name, port) in [("a", 7451u16), ("b", 7452u16)] {
        let cdir = dir.path().join(name);
        let config = collector_config(&cdir, &pki, port, &nats.collector_section(name, 1));
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(
            &config,
            text.replace(
                &format!("127.0.0.1:{port}"),
                &format!("{}:{port}", Host::Collector.v4()),
            ),
        )
        .expect("config");
        let mut command = lab.command(Host::Collector, &bin("bannin-collector"));
        command.arg("serve").arg("--config").arg(&config);
        collectors.push(Proc::spawn(command, cdir.join("collector.log")));
        addrs.push(
            format!("{}:{port}", Host::Collector.v4())
                .parse::<SocketAddr>()
                .expect("addr"),
        );
    }
    let logs = || {
        collectors
            .iter()
            .map(Proc::log_text)
            .collect::<Vec<_>>()
            .join("\n")
    };
    for addr in &addrs {
        lab_wait(
            60,
            "collector listening",
            || lab.can_connect(Host::Peer, &addr.ip().to_string(), addr.port()),
            logs,
        );
    }
    let mut peer = lab.command(Host::Peer, std::path::Path::new("python3"));
    peer.args(["-m", "http.server", "9000", "--bind", "::"]);
    let _peer = Proc::spawn(peer, dir.path().join("peer.log"));
    lab_wait(
        30,
        "peer listener",
        || lab.can_connect(Host::Agent, &Host::Peer.v4(), 9000),
        logs,
    );

    // The agent knows both collectors, B first: B holds its stream.
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("agent dir");
    let config = agent_config(
        &agent_dir,
        &pki.agent("web-01"),
        addrs[1],
        &AgentOptions {
            more_collectors: vec![addrs[0]],
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut command = lab.command(Host::Agent, &bin("bannin-agent"));
    command.arg("run").arg("--config").arg(&config);
    let agent = Proc::spawn(command, agent_dir.join("agent.log"));
    let operator_dir = dir.path().join("operator");
    std::fs::create_dir_all(&operator_dir).expect("dir");
    let through_a = operator_toml(&operator_dir, &pki.operator("alice"), addrs[0]);
    let host = |field: &str| {
        let (_, hosts, _) = lab_cli(&lab, &through_a, &["hosts"]);
        hosts
            .as_array()
            .and_then(|h| h.iter().find(|h| h["host_id"] == "web-01"))
            .map(|h| h[field].clone())
    };
    lab_wait(
        60,
        "the agent online on B, seen through A",
        || host("collector") == Some("b".into()) && host("online") == Some(true.into()),
        || format!("{}\nagent: {}", logs(), agent.log_text()),
    );

    // `bannin isolate` issued on A: B delivers it, the host is cut off from
    // everything but its collectors.
    let (ok, record, stderr) = lab_cli(
        &lab,
        &through_a,
        &["isolate", "web-01", "--reason", "compromised"],
    );
    assert!(ok, "isolate through A: {record} {stderr}\n{}", logs());
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(
        !lab.can_connect(Host::Agent, &Host::Peer.v4(), 9000)
            && !lab.can_connect(Host::Agent, &Host::Peer.v6(), 9000),
        "isolated: the peer is unreachable over IPv4 and IPv6"
    );
    for addr in &addrs {
        assert!(
            lab.can_connect(Host::Agent, &addr.ip().to_string(), addr.port()),
            "both collectors stay reachable ({addr})"
        );
    }
    lab_wait(
        30,
        "the isolation confirmed, seen through A",
        || host("isolation") == Some("isolated".into()),
        logs,
    );
    lab_wait(
        30,
        "A's action log saying where the command went",
        || {
            let (_, log, _) = lab_cli(&lab, &through_a, &["actions", "--host", "web-01"]);
            log.as_array().is_some_and(|entries| {
                entries.iter().any(|e| {
                    e["verb"] == "command.isolate"
                        && e["result"]
                            .as_str()
                            .is_some_and(|r| r.contains("connected to collector b"))
                })
            })
        },
        logs,
    );

    let (ok, record, stderr) = lab_cli(
        &lab,
        &through_a,
        &["release", "web-01", "--reason", "clean"],
    );
    assert!(ok, "release through A: {record} {stderr}");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(
        lab.can_connect(Host::Agent, &Host::Peer.v4(), 9000),
        "released: the peer is reachable again"
    );
    drop(agent);
    drop(collectors);
    drop(nats);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_made_on_one_collector_enrolls_through_another_and_its_uses_are_counted_once() {
    use crate::enrollment::{enroll, token, wait_listening};
    if !nats_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let nats = NatsCluster::start(&dir.path().join("nats"), &pki, 1);
    let mut collectors = Vec::new();
    let mut enroll_ports = Vec::new();
    for name in ["a", "b"] {
        let port = bannin_tests::free_port();
        let enrollment = format!(
            "[enrollment]\nlisten = \"127.0.0.1:{port}\"\nca_key = {:?}\nvalidity_secs = 3600\n",
            pki.dir.ca_key().display().to_string()
        );
        collectors.push(CollectorProc::start_free(
            &dir.path().join(name),
            &pki,
            &format!("{enrollment}{}", nats.collector_section(name, 1)),
        ));
        wait_listening(port);
        enroll_ports.push(port);
    }
    let [on_a, on_b] = operators_of(dir.path(), &pki, [&collectors[0], &collectors[1]]);

    // Two uses, made on A.
    let (secret, made) = token(&on_a, &["--uses", "2", "--note", "rack 9"]);
    let id = made["id"].as_str().expect("id").to_owned();
    // Enrolled through B, then through A: both uses taken, counted once each
    // on both collectors.
    let (ok, first, err) = enroll(&pki, enroll_ports[1], &secret, &dir.path().join("h1"));
    assert!(ok, "a token made on A enrolls through B: {err}");
    let (ok, _, err) = enroll(&pki, enroll_ports[0], &secret, &dir.path().join("h2"));
    assert!(ok, "its second use through A: {err}");
    let (ok, _, err) = enroll(&pki, enroll_ports[1], &secret, &dir.path().join("h3"));
    assert!(!ok, "a third use is refused whichever collector is asked");
    assert!(err.contains("used up"), "{err}");
    for operator in [&on_a, &on_b] {
        let listed = eventually(Duration::from_secs(20), "the token's uses on both", || {
            let (operator, id) = (operator.clone(), id.clone());
            async move {
                let (_, tokens, _) = bannin_json(&operator, &["token", "list"]);
                tokens
                    .as_array()?
                    .iter()
                    .find(|t| t["id"] == id.as_str() && t["used"] == 2)
                    .cloned()
            }
        })
        .await;
        assert_eq!(listed["state"], "used_up", "{listed}");
        assert!(
            listed
                .to_string()
                .contains(first["host_id"].as_str().expect("host")),
            "{listed}"
        );
    }

    // Revoked through B: refused by A.
    let (secret, made) = token(&on_a, &["--uses", "5"]);
    let id = made["id"].as_str().expect("id").to_owned();
    let (ok, _, err) = bannin_json(&on_b, &["token", "revoke", &id]);
    assert!(ok, "token revoke through B: {err}");
    let (ok, _, err) = enroll(&pki, enroll_ports[0], &secret, &dir.path().join("h4"));
    assert!(
        !ok && err.contains("revoked"),
        "revoked through B, refused by A: {err}"
    );

    drop(collectors);
    drop(nats);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_for_a_host_that_never_connects_expires_once_across_collectors() {
    if !nats_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let nats = NatsCluster::start(&dir.path().join("nats"), &pki, 1);
    let collectors: Vec<CollectorProc> = ["a", "b"]
        .into_iter()
        .map(|name| {
            CollectorProc::start_free(
                &dir.path().join(name),
                &pki,
                &nats.collector_section(name, 1),
            )
        })
        .collect();
    let [on_a, on_b] = operators_of(dir.path(), &pki, [&collectors[0], &collectors[1]]);

    // Issued through B; whichever collector expires it, it expires once: the
    // same record on both, one entry in the log.
    let (ok, queued, err) = bannin_json(
        &on_b,
        &["ping", "ghost-host", "--no-wait", "--expires-secs", "2"],
    );
    assert!(ok, "ping queued through B: {err}");
    let command = queued["id"].as_str().expect("command id").to_owned();
    let mut records = Vec::new();
    for operator in [&on_a, &on_b] {
        records.push(
            eventually(Duration::from_secs(30), "the command expired", || {
                let r = command_in(operator, "ghost-host", &command, "expired");
                async move { r }
            })
            .await,
        );
    }
    assert_eq!(records[0], records[1], "one queue on both collectors");
    let expiries = |operator: &Path| {
        let (_, log, _) = bannin_json(operator, &["actions"]);
        log.as_array().map_or(0, |entries| {
            entries
                .iter()
                .filter(|e| e["verb"] == "expire.ping" && e["target"] == command.as_str())
                .count()
        })
    };
    eventually(
        Duration::from_secs(20),
        "the expiry in the action log",
        || {
            let n = expiries(&on_a);
            async move { (n > 0).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(expiries(&on_a), 1, "expired once, not once per collector");
    assert_eq!(expiries(&on_b), 1, "the same log on B");

    // `--limit N` lists the newest N, oldest first.
    let (ok, newer, err) = bannin_json(&on_a, &["ping", "ghost-host", "--no-wait"]);
    assert!(ok, "{err}");
    let newest = eventually(Duration::from_secs(10), "the newest command on B", || {
        let (on_b, id) = (on_b.clone(), newer["id"].clone());
        async move {
            let (_, list, _) = bannin_json(&on_b, &["commands", "--limit", "1"]);
            list.as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["id"] == id)
                .then_some(list)
        }
    })
    .await;
    let (_, all, _) = bannin_json(&on_b, &["commands", "--limit", "2"]);
    assert_eq!(all[1], newest[0], "oldest first: the newest is last");
    assert_eq!(all[0]["id"], command.as_str(), "{all}");
    drop(collectors);
    drop(nats);
}

/// Publishes `op` to the log over `js` with `op_id`, signed by `signer`
/// when given; `tamper` changes the payload after signing. Returns whether
/// JetStream called it a duplicate.
async fn publish_op(
    js: &async_nats::jetstream::Context,
    op: &bannin_collector::journal::Op,
    op_id: &str,
    signer: Option<&Signer>,
    tamper: bool,
) -> bool {
    let mut payload = serde_json::to_vec(op).expect("op json");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Bannin-Op", op_id);
    headers.insert(async_nats::header::NATS_MESSAGE_ID, op_id);
    if let Some(signer) = signer {
        signer
            .sign(cluster::OP_SUBJECT, &mut headers, &payload)
            .expect("sign");
    }
    if tamper {
        payload =
            serde_json::to_vec(&bannin_collector::journal::Op::Operator { record: mallory() })
                .expect("op json");
    }
    js.publish_with_headers(cluster::OP_SUBJECT, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .duplicate
}

/// The operator a forger tries to make admin.
fn mallory() -> OperatorRecord {
    OperatorRecord {
        name: "mallory".into(),
        role: Role::Admin,
        enabled: true,
        created_unix_ms: now_unix_ms(),
        created_by: "alice".into(),
    }
}

/// Connects to NATS as `tls` (a certificate of the test CA).
async fn nats_as(
    nats: &NatsCluster,
    tls: &bannin_proto::tls::TlsPaths,
) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(tls.ca.clone())
        .add_client_certificate(tls.cert.clone(), tls.key.clone())
        .connection_timeout(Duration::from_secs(5))
        .connect(nats.urls().as_slice())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_collectors_reach_the_log_and_appliers_refuse_what_no_collector_signed() {
    if !nats_here() {
        return;
    }
    // JetStream forgets message ids after 10 s here (the shortest allowed),
    // so a verbatim replay can be tried past its duplicate window.
    let (dir, pki, nats, [a, b]) = two_collectors_with(|name, nats| {
        nats.collector_section(name, 1)
            .replace("[cluster.tls]", "duplicate_window_secs = 10\n[cluster.tls]")
    });
    let mut ops_a = client(&pki, a.addr).await;
    let mut ops_b = client(&pki, b.addr).await;

    // An enrolled host's certificate, or an operator's, gets nowhere near the
    // log: NATS admits collectors only.
    for (who, tls) in [
        ("an agent", pki.agent("web-01")),
        ("an operator", pki.operator("alice")),
    ] {
        let refused = tokio::time::timeout(Duration::from_secs(20), nats_as(&nats, &tls))
            .await
            .map_or_else(|_| Err("timed out".to_owned()), |r| r.map(|_| ()));
        let err = refused.expect_err(&format!("{who}'s certificate connected to NATS"));
        assert!(
            err.to_lowercase().contains("authorization"),
            "{who}: refused for another reason: {err}"
        );
    }

    // Collector A's own certificate, used to forge: unsigned, in B's name,
    // altered after signing, a batch with no signature, a forged action.
    let nc = nats_as(&nats, &pki.collector("a"))
        .await
        .expect("collector a connects");
    let js = async_nats::jetstream::new(nc);
    let material = bannin_proto::tls::TlsMaterial::load(&pki.collector("a")).expect("tls");
    let signer = Signer::new(&material, "a").expect("signer a");
    let make_admin = bannin_collector::journal::Op::Operator { record: mallory() };
    publish_op(&js, &make_admin, "a:1:1", None, false).await;
    publish_op(&js, &make_admin, "b:1:1", Some(&signer), false).await;
    let viewer = bannin_collector::journal::Op::Operator {
        record: OperatorRecord {
            role: Role::Viewer,
            ..mallory()
        },
    };
    publish_op(&js, &viewer, "a:1:2", Some(&signer), true).await;
    publish_op(
        &js,
        &bannin_collector::journal::Op::Action {
            action: Action {
                at_unix_ms: now_unix_ms(),
                actor: "alice".into(),
                verb: "isolate".into(),
                target: "web-01".into(),
                reason: "forged".into(),
                result: "forged".into(),
            },
            origin: "b".into(),
            outbox: 1,
        },
        "a:1:3",
        None,
        false,
    )
    .await;
    let mut batch_headers = async_nats::HeaderMap::new();
    batch_headers.insert("Bannin-Host", "victim");
    batch_headers.insert(async_nats::header::NATS_MESSAGE_ID, "b:victim:1");
    let forged_batch = v1::TelemetryBatch::from_events(
        1,
        &[event(
            "process.unknown_binary",
            true,
            now_unix_ms(),
            &[("sha256", &"9".repeat(64)), ("exe", "/tmp/.f/x")],
        )],
    );
    js.publish_with_headers(
        cluster::BATCH_SUBJECT,
        batch_headers,
        prost::Message::encode_to_vec(&forged_batch).into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    // A genuine operation signed by A: applied once, and the same message
    // published again is JetStream's duplicate, never a second operation.
    let note = bannin_collector::journal::Op::Raise {
        host_id: "web-02".into(),
        kind: "operator.note".into(),
        severity: bannin_collector::model::Severity::Low,
        observed_unix_ms: now_unix_ms(),
        attributes: BTreeMap::new(),
        summary: "signed by collector a".into(),
    };
    assert!(!publish_op(&js, &note, "a:1:4", Some(&signer), false).await);
    assert!(
        publish_op(&js, &note, "a:1:4", Some(&signer), false).await,
        "the replay is a duplicate"
    );
    // Past JetStream's duplicate window the same signed message is stored
    // again, and every applier refuses it: each operation is applied once.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(
        !publish_op(&js, &note, "a:1:4", Some(&signer), false).await,
        "JetStream has forgotten the message id"
    );
    // A genuine operation far ahead, then one held back more than the
    // window behind it: the late one is refused (replayed or withheld).
    let later = bannin_collector::journal::Op::Raise {
        host_id: "web-02".into(),
        kind: "operator.note".into(),
        severity: bannin_collector::model::Severity::Low,
        observed_unix_ms: now_unix_ms(),
        attributes: BTreeMap::new(),
        summary: "a later note by collector a".into(),
    };
    assert!(!publish_op(&js, &later, "a:1:5000", Some(&signer), false).await);
    assert!(!publish_op(&js, &note, "a:1:3", Some(&signer), false).await);

    for (name, ops) in [("A", &mut ops_a), ("B", &mut ops_b)] {
        let status = eventually(Duration::from_secs(20), "seven refusals counted", || {
            let mut ops = ops.clone();
            async move {
                let s = ops
                    .cluster_status(v1::ClusterStatusRequest {})
                    .await
                    .ok()?
                    .into_inner();
                (s.refused >= 7).then_some(s)
            }
        })
        .await;
        assert_eq!(status.refused, 7, "{name}: {status:?}");
        assert!(
            status.last_refused.contains("a:1:3") && status.last_refused.contains("behind"),
            "{name}: {status:?}"
        );
        assert!(!status.last_refused.is_empty(), "{name}: {status:?}");
        // The refusals are counted as the applier reads; what it applies is
        // committed by the writer just after: wait for both notes.
        let notes = |f: &[v1::Finding]| {
            f.iter()
                .filter(|f| f.kind == "operator.note")
                .map(|f| f.count)
                .sum::<u64>()
        };
        let findings = eventually(Duration::from_secs(20), "both signed notes applied", || {
            let mut ops = ops.clone();
            async move {
                let f = all_findings(&mut ops).await;
                (notes(&f) >= 2).then_some(f)
            }
        })
        .await;
        assert_eq!(
            notes(&findings),
            2,
            "{name}: the signed note applied once, and the later one: {findings:?}"
        );
        assert!(
            findings.iter().all(|f| f.host_id != "victim"),
            "{name}: an unsigned batch made a finding: {findings:?}"
        );
        let operators = ops
            .list_operators(v1::ListOperatorsRequest {})
            .await
            .expect("operators")
            .into_inner()
            .operators;
        assert!(
            operators.iter().all(|o| o.name != "mallory"),
            "{name}: a forged operation added an operator: {operators:?}"
        );
        let log = whole_log(ops.clone()).await.expect("action log");
        assert!(
            log.iter().all(|(_, verb, _, _)| verb != "isolate"),
            "{name}: a forged action was chained: {log:?}"
        );
        let verified = ops
            .verify_actions(v1::VerifyActionsRequest {})
            .await
            .expect("verify")
            .into_inner();
        assert!(verified.ok, "{name}: {verified:?}");
    }
    // `bannin cluster` says so.
    let [on_a, _] = operators_of(dir.path(), &pki, [&a, &b]);
    let out = std::process::Command::new(bannin_tests::bin("bannin"))
        .arg("cluster")
        .arg("--config")
        .arg(&on_a)
        .output()
        .expect("bannin cluster");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused 7 message(s) of the cluster log"),
        "bannin cluster: {text}"
    );
}

#[test]
fn a_log_larger_than_jetstream_can_hold_is_refused_at_once_naming_the_setting() {
    if !nats_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    // The test servers hold 8 GB; the default [cluster] max_bytes is 64 GiB.
    let nats = NatsCluster::start(&dir.path().join("nats"), &pki, 1);
    let section: String = nats
        .collector_section("a", 1)
        .lines()
        .filter(|l| !l.starts_with("max_bytes"))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = bannin_tests::collector_config(
        &dir.path().join("a"),
        &pki,
        bannin_tests::free_port(),
        &section,
    );
    let out = std::process::Command::new(bannin_tests::bin("bannin-collector"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("bannin-collector");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {err}");
    assert!(
        err.contains("[cluster] max_bytes") && err.contains("max_file_store"),
        "the error names the setting: {err}"
    );
    assert!(
        !err.contains("JetStream not ready; retrying"),
        "it waited for what no wait fixes: {err}"
    );
}

/// A base port whose `cluster init` ports (clients, routes, monitoring,
/// collectors) are all free now.
fn free_base_port() -> u16 {
    for attempt in 0..50u32 {
        // Below Linux's ephemeral range (32768–60999), where free_port's
        // picks and outgoing connections land.
        let base = 20_000
            + u16::try_from((std::process::id() * 7919 + attempt * 104_729) % 12_000).unwrap_or(0);
        let all_free = [0u16, 1, 2, 100, 101, 102, 200, 201, 202, 300, 301]
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free port range for cluster init")
}

#[test]
fn cluster_init_writes_a_cluster_that_runs_as_generated() {
    if !nats_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("bannin-cluster");
    let logs = |demo: &Path| {
        [
            "nats-n1",
            "nats-n2",
            "nats-n3",
            "collector-a",
            "collector-b",
        ]
        .iter()
        .map(|n| {
            format!(
                "--- {n}\n{}",
                std::fs::read_to_string(demo.join("run").join(format!("{n}.log")))
                    .unwrap_or_default()
            )
        })
        .collect::<String>()
    };
    // The documented three commands (docs/cluster.md), on free ports; a port
    // taken by a test beside between the check and the bind: again on others.
    let mut stopped = None;
    for attempt in 0..3 {
        let base = free_base_port().to_string();
        let _ = std::fs::remove_dir_all(&demo);
        let init = std::process::Command::new(bannin_tests::bin("bannin-collector"))
            .args(["cluster", "init", "--dir"])
            .arg(&demo)
            .args(["--base-port", &base])
            .output()
            .expect("cluster init");
        assert!(
            init.status.success(),
            "cluster init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let guard = StopOnDrop(demo.clone());
        let start = std::process::Command::new(demo.join("start"))
            .output()
            .expect("start");
        if start.status.success() {
            stopped = Some(guard);
            break;
        }
        let seen = logs(&demo);
        assert!(
            attempt < 2 && seen.contains("address already in use"),
            "start: {}{}\n{seen}",
            String::from_utf8_lossy(&start.stdout),
            String::from_utf8_lossy(&start.stderr),
        );
    }
    let stopped = stopped.expect("started");
    let operator = demo.join("operator.toml");
    let mut status = serde_json::Value::Null;
    lab_wait(
        60,
        "bannin cluster showing a and b on 3 replicas",
        || {
            let (ok, seen, _) = bannin_json(&operator, &["cluster"]);
            let shown = cluster_view(&seen)
                .is_some_and(|(names, log)| ok && names == ["a", "b"] && log["replicas"] == 3);
            status = seen;
            shown
        },
        || logs(&demo),
    );
    assert_eq!(status["refused"], 0, "{status:#}");
    drop(stopped);
}

/// From `bannin cluster --json`: the live collectors' names and the log
/// stream's entry.
fn cluster_view(status: &serde_json::Value) -> Option<(Vec<String>, serde_json::Value)> {
    let names = status["collectors"]
        .as_array()?
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let log = status["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "BANNIN_LOG")?
        .clone();
    Some((names, log))
}

/// Collectors a and b on one NATS server, in a new directory.
/// (The caller checks [`nats_here`].)
fn two_collectors_on_one_server() -> (tempfile::TempDir, TestPki, NatsCluster, [CollectorProc; 2]) {
    two_collectors_with(|name, nats| nats.collector_section(name, 1))
}

/// Two collectors on one NATS server, each with the `[cluster]` section `section` writes.
fn two_collectors_with(
    section: impl Fn(&str, &NatsCluster) -> String,
) -> (tempfile::TempDir, TestPki, NatsCluster, [CollectorProc; 2]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let nats = NatsCluster::start(&dir.path().join("nats"), &pki, 1);
    let collectors = ["a", "b"]
        .map(|name| CollectorProc::start_free(&dir.path().join(name), &pki, &section(name, &nats)));
    (dir, pki, nats, collectors)
}

/// Runs `<dir>/stop` when dropped (the test's processes never outlive it).
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(self.0.join("stop")).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_host_identity_live_on_two_collectors_is_a_clone_on_both() {
    if !nats_here() {
        return;
    }
    let (_dir, pki, _nats, [a, b]) = two_collectors_on_one_server();
    // The real host on A, a machine with its copied key on B: both beat
    // every second.
    // Each twin says which commands reached it.
    let stop = tokio_util::sync::CancellationToken::new();
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel::<(&str, String)>();
    let mut beats = Vec::new();
    for (side, addr, address) in [("A", a.addr, "10.40.0.1/24"), ("B", b.addr, "10.40.0.2/24")] {
        let mut agent = SimAgent::connect(&pki, "twin", addr, &[address], &[])
            .await
            .expect("twin connects");
        let (stop, got_tx) = (stop.clone(), got_tx.clone());
        beats.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                if agent.heartbeat().await.is_err() {
                    return;
                }
                tokio::select! {
                    c = agent.next_command() => {
                        if let Ok(c) = c {
                            let _ = got_tx.send((side, c.id));
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }));
        // A's session is the older one.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (name, addr) in [("A", a.addr), ("B", b.addr)] {
        let mut ops = client(&pki, addr).await;
        let clone = eventually(
            Duration::from_secs(30),
            "host.clone across collectors",
            || {
                let mut ops = ops.clone();
                async move {
                    all_findings(&mut ops)
                        .await
                        .into_iter()
                        .find(|f| f.kind == "host.clone" && f.host_id == "twin")
                }
            },
        )
        .await;
        assert_eq!(
            clone.attributes.get("collectors").map(String::as_str),
            Some("a,b"),
            "{name}: {clone:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let clones = all_findings(&mut ops)
            .await
            .into_iter()
            .filter(|f| f.kind == "host.clone")
            .count();
        assert_eq!(
            clones, 1,
            "{name}: one finding, however many collectors saw it"
        );
    }
    // A command for the identity, issued through either collector, reaches
    // one machine: the older session's, on A.
    for through in [b.addr, a.addr] {
        let mut ops = client(&pki, through).await;
        let issued = ops
            .issue_command(v1::IssueCommandRequest {
                host_id: "twin".into(),
                command: Some(v1::CommandBody::ping()),
                reason: "which twin".into(),
                expires_in_secs: 60,
            })
            .await
            .expect("issue")
            .into_inner();
        let (side, id) = tokio::time::timeout(Duration::from_secs(20), got.recv())
            .await
            .expect("the command reached a twin")
            .expect("a twin");
        assert_eq!(id, issued.id, "the command issued");
        assert_eq!(side, "A", "the older session's collector delivers");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        got.try_recv().is_err(),
        "each command reached one twin only"
    );
    stop.cancel();
    for b in beats {
        let _ = b.await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hunt_started_through_one_collector_is_answered_by_a_host_on_the_other() {
    if !nats_here() {
        return;
    }
    let (dir, pki, _nats, [a, b]) = two_collectors_on_one_server();
    let [on_a, on_b] = operators_of(dir.path(), &pki, [&a, &b]);
    let plant = dir.path().join("plant");
    std::fs::create_dir_all(&plant).expect("mkdir");
    let implant = format!("cluster implant {}\n", bannin_proto::now_unix_ms());
    std::fs::write(plant.join(".y"), &implant).expect("plant");
    let sha = bannin_proto::sha256_hex(implant.as_bytes());
    // The host is held by B only.
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("web-09"),
        b.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let ops_b = client(&pki, b.addr).await;
    eventually(Duration::from_secs(30), "web-09 on B", || {
        listed(ops_b.clone(), "web-09")
    })
    .await;
    let root = plant.display().to_string();
    let (ok, started, err) = bannin_json(
        &on_a,
        &[
            "hunt",
            "start",
            "file-hash",
            &sha,
            "--root",
            &root,
            "--reason",
            "cluster hunt",
        ],
    );
    assert!(ok, "started through A: {err}");
    let id = started["id"].as_str().expect("id").to_owned();
    // Answered by the host on B, readable through both.
    for operator in [&on_a, &on_b] {
        let shown = eventually(Duration::from_secs(30), "the answer on both", || {
            let (operator, id) = (operator.clone(), id.clone());
            async move {
                let (_, shown, _) = bannin_json(&operator, &["hunt", "show", &id]);
                shown["hosts"]
                    .as_array()?
                    .iter()
                    .any(|h| h["host_id"] == "web-09" && h["state"] == "done")
                    .then_some(shown)
            }
        })
        .await;
        assert_eq!(shown["with_hits"], 1, "{shown}");
        let (_, rows, _) = bannin_json(operator, &["hunt", "results", &id]);
        assert!(
            rows.as_array()
                .is_some_and(|r| r.len() == 1 && r[0]["sha256"] == sha.as_str()),
            "{rows}"
        );
    }
    // Stopped through B: both say so.
    let (ok, _, err) = bannin_json(&on_b, &["hunt", "stop", &id, "--reason", "done"]);
    assert!(ok, "{err}");
    let (_, shown, _) = bannin_json(&on_a, &["hunt", "show", &id]);
    assert_eq!(shown["state"], "stopped", "{shown}");
}
