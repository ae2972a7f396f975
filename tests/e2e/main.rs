//! End-to-end tests: real binaries, real mTLS on loopback, real sled, real
//! files and sockets provoked by the tests. One test binary, as in ripgrep.

mod bad_input;
mod cluster;
mod config;
mod console;
mod correlation;
mod docs;
mod durability;
mod enrollment;
mod hostile;
mod hostile_input;
mod hunts;
mod identity;
mod incidents;
mod packages;
mod pipeline;
mod response;
mod roles;
mod sensors;
mod sigma;
mod sinks;
mod up;
mod webhook;

use std::path::Path;
use std::time::Duration;

use bannin_proto::v1;
use bannin_tests::eventually;
use tonic::transport::Channel;
use v1::operator_client::OperatorClient;

/// A collector (with `collector_extra` in its configuration) and an agent
/// running only the process sensor (its walk ten minutes apart, so what it
/// reports came from the kernel's exec events), once the agent's first exec
/// telemetry is stored.
pub async fn process_host(
    dir: &Path,
    pki: &bannin_tests::TestPki,
    host: &str,
    collector_extra: &str,
) -> (
    bannin_tests::CollectorProc,
    bannin_tests::Proc,
    OperatorClient<Channel>,
) {
    let collector = bannin_tests::CollectorProc::start(
        &dir.join("collector"),
        pki,
        bannin_tests::free_port(),
        collector_extra,
    );
    let agent = bannin_tests::start_agent(
        &dir.join("agent"),
        &pki.agent(host),
        collector.addr,
        &bannin_tests::AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            interval_secs: 600,
            ..bannin_tests::AgentOptions::default()
        },
    );
    let client = bannin_tests::operator_client(&pki.operator("alice"), collector.addr).await;
    eventually(Duration::from_secs(60), "exec telemetry", || {
        let mut c = client.clone();
        async move { (!all_events(&mut c, host, "process.exec").await.is_empty()).then_some(()) }
    })
    .await;
    (collector, agent, client)
}

/// All events of one kind of a host, paging through the operator API.
pub async fn all_events(
    client: &mut OperatorClient<Channel>,
    host: &str,
    kind: &str,
) -> Vec<v1::StoredEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list_events(v1::ListEventsRequest {
                host_id: host.into(),
                kind: kind.into(),
                after_sequence: after,
                limit: 5000,
                since_unix_ms: 0,
            })
            .await
            .expect("list events")
            .into_inner();
        if let Some(last) = page.events.last() {
            after = last.sequence;
        }
        out.extend(page.events);
        if !page.truncated {
            return out;
        }
    }
}

/// All findings, paging through the operator API.
pub async fn all_findings(client: &mut OperatorClient<Channel>) -> Vec<v1::Finding> {
    let mut out: Vec<v1::Finding> = Vec::new();
    loop {
        let since = out.last().map(|f| f.id).unwrap_or(0);
        let page = client
            .list_findings(v1::ListFindingsRequest {
                since_id: since,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("list findings")
            .into_inner()
            .findings;
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The host's acknowledged high water, 0 if unknown.
pub async fn high_water(client: &mut OperatorClient<Channel>, host: &str) -> u64 {
    client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .map(|r| r.into_inner().hosts)
        .unwrap_or_default()
        .into_iter()
        .find(|h| h.host_id == host)
        .map(|h| h.acked_sequence)
        .unwrap_or(0)
}

/// Waits until some host reports `sensor` healthy (its first sweep is done).
pub async fn wait_sensor_ok(client: &OperatorClient<Channel>, sensor: &str, within: Duration) {
    eventually(within, &format!("sensor {sensor} ok"), || {
        let mut c = client.clone();
        let sensor = sensor.to_owned();
        async move {
            let hosts = c
                .list_hosts(v1::ListHostsRequest {})
                .await
                .ok()?
                .into_inner()
                .hosts;
            hosts
                .iter()
                .flat_map(|h| &h.sensors)
                .any(|s| s.name == sensor && s.state == "ok")
                .then_some(())
        }
    })
    .await;
}

/// Waits until the host is online.
pub async fn wait_online(client: &mut OperatorClient<Channel>, host: &str) {
    eventually(Duration::from_secs(30), "agent online", || {
        let mut c = client.clone();
        let host = host.to_owned();
        async move {
            let hosts = c
                .list_hosts(v1::ListHostsRequest {})
                .await
                .ok()?
                .into_inner()
                .hosts;
            hosts
                .iter()
                .any(|h| h.host_id == host && h.online)
                .then_some(())
        }
    })
    .await;
}

/// Waits until the collector has heard from `host` for `span` after `since_unix_ms`
/// (its `last_seen` moved that far): proof that its liveness and clone checks,
/// which tick every second, have looked over that span. A test asserting that
/// something did NOT happen waits for this first, instead of sleeping.
pub async fn heard_from_since(
    client: &mut OperatorClient<Channel>,
    host: &str,
    since_unix_ms: i64,
    span: Duration,
) {
    let until = since_unix_ms + i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
    eventually(
        span + Duration::from_secs(30),
        "the host heard from over the span",
        || {
            let mut c = client.clone();
            let host = host.to_owned();
            async move {
                let hosts = c
                    .list_hosts(v1::ListHostsRequest {})
                    .await
                    .ok()?
                    .into_inner()
                    .hosts;
                hosts
                    .iter()
                    .any(|h| h.host_id == host && h.last_seen_unix_ms >= until)
                    .then_some(())
            }
        },
    )
    .await;
}

/// Creates `n` files with a leading space in `dir`, named ` f00000`….
pub fn odd_files(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).expect("dir");
    for i in 0..n {
        std::fs::write(dir.join(format!(" f{i:05}")), b"x").expect("odd file");
    }
}
