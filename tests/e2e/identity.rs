//! Identity: a host id comes only from the client certificate. Every refusal
//! case is its own test, and each leaves nothing stored.

use std::sync::Arc;
use std::time::Duration;

use bannin_proto::tls::{self, ClientConfig, TlsMaterial, TlsPaths};
use bannin_proto::v1::{
    self, agent_link_client::AgentLinkClient, agent_message, collector_message,
};
use bannin_tests::{CollectorProc, TestPki, free_port, operator_client};
use tokio_stream::StreamExt;

use crate::all_events;

fn client_config(paths: &TlsPaths) -> Arc<ClientConfig> {
    let material = TlsMaterial::load(paths).expect("material");
    tls::client_config(&material).expect("config")
}

fn hello(host: &str) -> v1::AgentMessage {
    v1::AgentMessage {
        body: Some(agent_message::Body::Hello(v1::Hello {
            host_id: host.into(),
            hostname: "test".into(),
            heartbeat_interval_secs: 30,
            ..Default::default()
        })),
    }
}

fn batch(sequence: u64) -> v1::AgentMessage {
    let event = v1::Event {
        kind: "net.new_listener".into(),
        severity: v1::Severity::High as i32,
        observed_unix_ms: 1,
        indicator: true,
        summary: "should never be stored".into(),
        ..Default::default()
    };
    v1::AgentMessage {
        body: Some(agent_message::Body::Batch(v1::TelemetryBatch::from_events(
            sequence,
            &[event],
        ))),
    }
}

/// Opens an agent session saying Hello as `claimed` and sending one batch;
/// returns the first message the collector answers, or the error.
async fn session(
    addr: std::net::SocketAddr,
    config: Arc<ClientConfig>,
    claimed: &str,
) -> Result<v1::CollectorMessage, String> {
    let channel = tls::connect(&addr.to_string(), "bannin-collector", config)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut client = AgentLinkClient::new(channel);
    let outbound =
        tokio_stream::iter(vec![hello(claimed), batch(1)]).chain(tokio_stream::pending());
    let mut inbound = client
        .session(outbound)
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    match inbound.message().await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err("stream ended".into()),
        Err(s) => Err(s.to_string()),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    pki: TestPki,
    collector: CollectorProc,
    scratch: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    Fixture {
        _dir: dir,
        pki,
        collector,
        scratch,
    }
}

async fn assert_nothing_stored(f: &Fixture, hosts: &[&str]) {
    let mut client = operator_client(&f.pki.operator("auditor"), f.collector.addr).await;
    let known = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect("hosts")
        .into_inner()
        .hosts;
    for host in hosts {
        assert!(
            known.iter().all(|h| &h.host_id != host),
            "{host} was registered"
        );
        assert!(
            all_events(&mut client, host, "").await.is_empty(),
            "events stored for {host}"
        );
    }
    let findings = crate::all_findings(&mut client).await;
    assert!(findings.is_empty(), "findings stored: {findings:?}");
}

async fn assert_logged(f: &Fixture, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = f.collector.proc.log_text();
        if log.to_lowercase().contains(&needle.to_lowercase()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "collector log lacks {needle:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_agent_is_welcomed_and_acknowledged() {
    let f = fixture();
    let m = session(
        f.collector.addr,
        client_config(&f.pki.agent("good-host")),
        "good-host",
    )
    .await;
    assert!(
        matches!(
            m,
            Ok(v1::CollectorMessage {
                body: Some(collector_message::Body::Welcome(_))
            })
        ),
        "{m:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hello_naming_another_host_is_refused() {
    let f = fixture();
    let result = session(
        f.collector.addr,
        client_config(&f.pki.agent("attacker")),
        "victim",
    )
    .await;
    let err = result.expect_err("refused");
    assert!(
        err.contains("PermissionDenied") || err.contains("permission"),
        "{err}"
    );
    assert_logged(&f, "Hello names another host").await;
    assert_nothing_stored(&f, &["attacker", "victim"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_from_another_ca_is_refused() {
    let f = fixture();
    let foreign = f.pki.foreign_agent("intruder", &f.scratch);
    // The client trusts our CA (so it would talk to the collector); its own cert is foreign.
    let result = session(f.collector.addr, client_config(&foreign), "intruder").await;
    assert!(result.is_err(), "{result:?}");
    assert_logged(&f, "UnknownIssuer").await;
    assert_nothing_stored(&f, &["intruder"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_without_a_client_certificate_is_refused() {
    let f = fixture();
    let material = TlsMaterial::load(&f.pki.agent("whoever")).expect("material");
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.ca {
        roots.add(ca.clone()).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let result = session(f.collector.addr, Arc::new(config), "whoever").await;
    assert!(result.is_err(), "{result:?}");
    assert_logged(&f, "peer sent no certificates").await;
    assert_nothing_stored(&f, &["whoever"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_certificate_is_refused() {
    let f = fixture();
    let expired = f.pki.expired_agent("stale", &f.scratch);
    let result = session(f.collector.addr, client_config(&expired), "stale").await;
    assert!(result.is_err(), "{result:?}");
    assert_logged(&f, "Expired").await;
    assert_nothing_stored(&f, &["stale"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_certificate_cannot_call_the_operator_api() {
    let f = fixture();
    let mut client = operator_client(&f.pki.agent("sneaky"), f.collector.addr).await;
    let status = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = client
        .set_finding_state(v1::SetFindingStateRequest {
            id: 1,
            state: 2,
            note: String::new(),
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_logged(&f, "Agent certificate refused on the operator API").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_certificate_cannot_open_an_agent_stream() {
    let f = fixture();
    let result = session(
        f.collector.addr,
        client_config(&f.pki.operator("mallory")),
        "mallory",
    )
    .await;
    let err = result.expect_err("refused");
    assert!(err.contains("operator certificate"), "{err}");
    assert_logged(&f, "Operator certificate refused on the agent link").await;
    assert_nothing_stored(&f, &["mallory"]).await;
}
