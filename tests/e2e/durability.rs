//! Nothing acknowledged is lost, and nothing is stored twice, across SIGKILL of
//! either side.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, eventually, free_port, operator_client, start_agent,
};

use crate::{all_events, all_findings, high_water, odd_files};

const FILES: usize = 12_000;

/// Slow enough that a kill lands mid-stream: 24 batches of 500 at 4 per second.
fn slow_agent(watched: &Path) -> AgentOptions {
    AgentOptions {
        watch: vec![watched.to_owned()],
        net_listener: false,
        link: "max_in_flight = 2\nmax_batches_per_sec = 4\n".into(),
        // One finding per file: these tests count them, so storms are not folded.
        sensors: "fold_after = 1000000".into(),
        ..AgentOptions::default()
    }
}

async fn assert_each_file_exactly_once(addr: std::net::SocketAddr, pki: &TestPki, host: &str) {
    let mut client = operator_client(&pki.operator("alice"), addr).await;
    let events = eventually(Duration::from_secs(120), "every event stored", || {
        let mut c = client.clone();
        let host = host.to_owned();
        async move {
            let e = all_events(&mut c, &host, "file.odd_name").await;
            (e.len() >= FILES).then_some(e)
        }
    })
    .await;
    let paths: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.event.as_ref()?.attributes.get("path").cloned())
        .collect();
    assert_eq!(paths.len(), FILES, "every file seen");
    assert_eq!(events.len(), FILES, "no event stored twice");
    let findings: Vec<_> = all_findings(&mut client)
        .await
        .into_iter()
        .filter(|f| f.kind == "file.odd_name" && f.host_id == host)
        .collect();
    let finding_paths: BTreeSet<&String> = findings
        .iter()
        .filter_map(|f| f.attributes.get("path"))
        .collect();
    assert_eq!(findings.len(), FILES, "one finding per file, none twice");
    assert_eq!(finding_paths.len(), FILES);
    // Ids follow arrival: ordered by id, the findings' events come in the order the
    // agent numbered its batches (the list is ordered by id, the sequences are the
    // agent's own, so this fails if the collector numbered findings out of arrival).
    let sequence_of: std::collections::HashMap<&String, u64> = events
        .iter()
        .filter_map(|e| Some((e.event.as_ref()?.attributes.get("path")?, e.sequence)))
        .collect();
    let mut by_id: Vec<_> = findings.iter().collect();
    by_id.sort_by_key(|f| f.id);
    let sequences: Vec<u64> = by_id
        .iter()
        .map(|f| {
            let path = f.attributes.get("path").expect("finding names its path");
            *sequence_of.get(path).expect("finding's event stored")
        })
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] <= w[1]),
        "finding ids in the agent's batch order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_sigkill_mid_stream_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector_dir = dir.path().join("collector");
    let mut collector = CollectorProc::start(&collector_dir, &pki, port, "");
    let watched = dir.path().join("watched");
    odd_files(&watched, FILES);
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("crash-host"),
        collector.addr,
        &slow_agent(&watched),
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    let before = eventually(Duration::from_secs(60), "some batches acknowledged", || {
        let mut c = client.clone();
        async move {
            let hw = high_water(&mut c, "crash-host").await;
            (hw >= 4).then_some(hw)
        }
    })
    .await;
    collector.proc.kill();
    drop(client);
    // While it is down the agent keeps spooling; then the collector comes back on the same store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let collector = CollectorProc::start_with(&collector_dir, collector.config.clone(), port);
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let after = high_water(&mut client, "crash-host").await;
    assert!(
        after >= before,
        "acknowledged high water survives SIGKILL ({after} < {before})"
    );
    assert_each_file_exactly_once(collector.addr, &pki, "crash-host").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_sigkill_mid_stream_then_restart_delivers_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("watched");
    odd_files(&watched, FILES);
    let agent_dir = dir.path().join("agent");
    let tls = pki.agent("kill-host");
    let mut agent = start_agent(&agent_dir, &tls, collector.addr, &slow_agent(&watched));
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    eventually(Duration::from_secs(60), "some batches acknowledged", || {
        let mut c = client.clone();
        async move { (high_water(&mut c, "kill-host").await >= 4).then_some(()) }
    })
    .await;
    agent.kill();
    let stored = all_events(&mut client, "kill-host", "file.odd_name")
        .await
        .len();
    assert!(
        stored < FILES,
        "the kill landed mid-stream ({stored} of {FILES} stored)"
    );
    let _agent = start_agent(&agent_dir, &tls, collector.addr, &slow_agent(&watched));
    assert_each_file_exactly_once(collector.addr, &pki, "kill-host").await;
}

/// Sums `field=N` over the log lines that carry it.
fn logged_sum(log: &str, field: &str) -> u64 {
    log.lines()
        .filter_map(|l| {
            let at = l.find(field)? + field.len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

/// Bytes of the files under `dir`.
#[tokio::test(flavor = "multi_thread")]
async fn an_overflowing_spool_reports_exactly_what_it_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    // The collector is down: nothing listens on its port yet.
    let port = free_port();
    let watched = dir.path().join("watched");
    odd_files(&watched, 20_000);
    let agent_dir = dir.path().join("agent");
    let agent = start_agent(
        &agent_dir,
        &pki.agent("overflow-01"),
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &AgentOptions {
            watch: vec![watched.clone()],
            net_listener: false,
            spool_max_bytes: 1024 * 1024,
            // 20,000 distinct findings, none folded.
            sensors: "fold_after = 1000000".into(),
            ..AgentOptions::default()
        },
    );
    // The storm overflows the 1 MiB spool; wait until the drops stop.
    let field = "dropped.events=";
    let mut last = 0;
    eventually(Duration::from_secs(180), "the agent done dropping", || {
        let now = logged_sum(&agent.log_text(), field);
        let settled = now > 0 && now == last;
        last = now;
        async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            settled.then_some(())
        }
    })
    .await;
    let dropped = logged_sum(&agent.log_text(), field);
    // The cap bounds what the spool's batches take on disk (the sensor states
    // have a bound of their own, `max_state_bytes`; the file-integrity
    // sensor's own baseline beside them is the sensor's, not the spool's).
    let on_disk = bannin_tests::du(&agent_dir.join("spool"), &["file_integrity", "state"]);
    let states = bannin_tests::du(&agent_dir.join("spool/state"), &[]);
    assert!(states <= 64 * 1024 * 1024, "the states take {states} bytes");
    eprintln!("dropped {dropped} events; the spool takes {on_disk} bytes on disk");
    assert!(dropped > 0 && dropped < 20_000, "{dropped}");
    assert!(
        on_disk <= 1024 * 1024,
        "the 1 MiB spool takes {on_disk} bytes on disk"
    );

    // The collector comes up: the loss reports arrive and add up to exactly
    // what the agent dropped.
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, port, "");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let reported = eventually(Duration::from_secs(180), "every loss reported", || {
        let mut c = client.clone();
        async move {
            let reported: u64 = all_findings(&mut c)
                .await
                .iter()
                .filter(|f| f.kind == "agent.data_loss")
                .map(|f| {
                    f.attributes
                        .get("dropped_events")
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        * f.count
                })
                .sum();
            (reported >= dropped).then_some(reported)
        }
    })
    .await;
    assert_eq!(
        reported, dropped,
        "the reports sum to what was dropped, exactly"
    );
    // Every odd file not dropped arrived: what was kept plus what was reported
    // lost is the whole storm.
    let stored = eventually(Duration::from_secs(120), "the spool drained", || {
        let mut c = client.clone();
        async move {
            let n = all_findings(&mut c)
                .await
                .iter()
                .filter(|f| {
                    f.kind != "agent.data_loss"
                        && f.attributes.get("path").is_some_and(|p| p.contains("/ f"))
                })
                .count() as u64;
            (n + dropped >= 20_000).then_some(n)
        }
    })
    .await;
    assert_eq!(stored + dropped, 20_000);
    let findings = all_findings(&mut client).await;
    let loss = findings
        .iter()
        .find(|f| f.kind == "agent.data_loss")
        .expect("a loss finding");
    for key in [
        "dropped_by_severity",
        "first_dropped_unix_ms",
        "last_dropped_unix_ms",
    ] {
        assert!(loss.attributes.contains_key(key), "{key}: {loss:?}");
    }
}
