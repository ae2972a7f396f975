//! Hostile peers against real processes: a stranger holding idle sockets on the
//! collector's ports must not starve operators or agents, and every string a
//! peer sent is shown inert.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, eventually, free_port, operator_client,
    operator_toml, start_agent,
};
use tokio::io::AsyncReadExt;

use bannin_proto::v1;
use bannin_tests::sim::{SimAgent, event};

use crate::wait_online;

/// `n` idle TCP connections to `to` from `from` (a loopback address), sending nothing.
async fn idle_connections(from: IpAddr, to: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(from, 0))
            .expect("bind a loopback source");
        if let Ok(s) = socket.connect(to).await {
            held.push(s);
        }
    }
    held
}

/// Polls until the other side has closed at least `want` of `held`; how many it closed.
async fn until_closed(held: &mut [tokio::net::TcpStream], want: usize, within: Duration) -> usize {
    let deadline = std::time::Instant::now() + within;
    loop {
        let n = closed(held).await;
        if n >= want || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of `held` the other side has closed (a read returns at once with 0 or an error).
async fn closed(held: &mut [tokio::net::TcpStream]) -> usize {
    let mut n = 0;
    for s in held.iter_mut() {
        let mut b = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(5), s.read(&mut b)).await
            && r.map(|k| k == 0).unwrap_or(true)
        {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sockets_from_several_addresses_starve_neither_operators_nor_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    assert!(bannin_json(&operator, &["hosts"]).0, "serving");

    // 800 idle sockets from four addresses (more than the 512 handshake slots a
    // single queue had): each address past its share is shed at once.
    let mut flood = Vec::new();
    for last in 2..=5u8 {
        flood.extend(idle_connections(IpAddr::from([127, 0, 0, last]), collector.addr, 200).await);
    }
    assert!(flood.len() >= 790, "the flood connected: {}", flood.len());

    // The operator (from 127.0.0.1) is served while the flood holds its sockets.
    let (ok, hosts, err) = bannin_json(&operator, &["hosts"]);
    assert!(ok, "bannin hosts under the flood: {err}");
    assert!(hosts.is_array(), "{hosts}");

    // So is an agent connecting now.
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("under-flood"),
        collector.addr,
        &AgentOptions::default(),
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "under-flood").await;

    // Past their share, and then for silence, the flood's sockets are closed:
    // nothing a stranger holds stays open.
    let all = flood.len();
    assert_eq!(
        until_closed(&mut flood, all, Duration::from_secs(30)).await,
        all
    );
    let log = collector.proc.log_text();
    assert!(
        !log.contains("deadline has elapsed"),
        "nothing timed out waiting: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_handshakes_from_many_addresses_never_queue_an_operator() {
    if !bannin_tests::runnable(&[bannin_tests::Need::OpenFiles(16_384)]) {
        return;
    }
    use bannin_tests::stall::{Stall, client_hello, sources, stalled_connections};
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    assert!(bannin_json(&operator, &["hosts"]).0, "serving");
    let hello = client_hello(&pki.agent("staller"));
    // 16 addresses x 64 connections, more than the 512 handshake slots: each
    // stops inside its first record, or after a whole, real ClientHello.
    // (Before: every stalled handshake held a slot for 10 s and operator
    // calls queued behind them for a median 6.2 s.)
    for stall in [Stall::Header, Stall::Hello] {
        let mut held = stalled_connections(&sources(16), 64, collector.addr, stall, &hello).await;
        assert!(held.len() >= 1000, "{stall:?}: {} connected", held.len());
        for _ in 0..5 {
            // A deadline, as an operator's client has one: generous (a call
            // takes 16 ms unloaded); what it tells apart is a call queued
            // behind the stalls' 10 s handshake deadline.
            let op = operator.clone();
            let call = tokio::task::spawn_blocking(move || bannin_json(&op, &["hosts"]));
            let Ok(answered) = tokio::time::timeout(Duration::from_secs(3), call).await else {
                panic!("{stall:?}: an operator call queued behind stalled handshakes past 3 s");
            };
            let (ok, _, err) = answered.expect("call");
            assert!(
                ok,
                "{stall:?}: bannin hosts under stalled handshakes: {err}"
            );
        }
        // And every stalled connection is closed: within the ClientHello's 3 s,
        // or the handshake's 10 s once the ClientHello is in (read to the end:
        // the server's first flight comes before it).
        let all = held.len();
        let mut reads = tokio::task::JoinSet::new();
        for mut s in held.drain(..) {
            reads.spawn(async move {
                let mut sink = Vec::new();
                tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut sink))
                    .await
                    .is_ok()
            });
        }
        let closed = reads.join_all().await.into_iter().filter(|c| *c).count();
        assert_eq!(closed, all, "{stall:?}: stalled connections closed");
    }
}

/// A collector with its enrollment endpoint (HTTPS) listening; that endpoint's address.
async fn enrollment_collector(dir: &std::path::Path, pki: &TestPki) -> (CollectorProc, SocketAddr) {
    let port = free_port();
    let collector = CollectorProc::start(
        &dir.join("collector"),
        pki,
        free_port(),
        &format!(
            "[enrollment]\nlisten = \"127.0.0.1:{port}\"\nca_key = {:?}\n",
            pki.dir.ca_key().display().to_string()
        ),
    );
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually(
        Duration::from_secs(20),
        "enrollment listening",
        || async move { tokio::net::TcpStream::connect(to).await.ok().map(|_| ()) },
    )
    .await;
    (collector, to)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_https_endpoints_cap_each_address_and_close_silent_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (_collector, to) = enrollment_collector(dir.path(), &pki).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One address may hold 16 connections; the rest are closed at once.
    let mut held = idle_connections(IpAddr::from([127, 0, 0, 7]), to, 40).await;
    assert_eq!(held.len(), 40);
    assert_eq!(
        until_closed(&mut held, 24, Duration::from_secs(5)).await,
        24,
        "16 held, 24 shed"
    );
    // Another address is served meanwhile.
    let mut other = idle_connections(IpAddr::from([127, 0, 0, 8]), to, 1).await;
    assert_eq!(closed(&mut other).await, 0, "a fresh address is not shed");
    // And the silent ones are closed at the handshake deadline.
    assert_eq!(
        until_closed(&mut held, 40, Duration::from_secs(20)).await,
        40
    );
}

/// A TLS session to the HTTPS endpoint on `port` (anonymous, HTTP/1.1).
async fn https_session(
    port: u16,
    pki: &TestPki,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = bannin_tests::https::anonymous_http1(&pki.operator("alice"));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// Reads until the server closes, waiting at most `within`; what it sent, or
/// `None` if it was still open then.
async fn until_eof(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> Option<String> {
    let mut raw = Vec::new();
    tokio::time::timeout(within, tls.read_to_end(&mut raw))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&raw).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_https_clients_are_closed_at_their_timeouts_and_old_tls_is_refused() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (_collector, to) = enrollment_collector(dir.path(), &pki).await;
    let port = to.port();

    // Half the headers, then silence: closed at the header timeout (5 s).
    let mut headers = https_session(port, &pki).await;
    headers
        .write_all(b"POST /enroll HTTP/1.1\r\nHost: bannin-collector\r\nContent-Type: appl")
        .await
        .expect("write");
    // (Well before the 30 s connection deadline, which would also close it.)
    assert!(
        until_eof(&mut headers, Duration::from_secs(20))
            .await
            .is_some(),
        "a half-header client was still connected after 20 s"
    );

    // Whole headers, a tenth of the body, then silence: answered 408 at the
    // body timeout (10 s) — the deadline would close it without an answer.
    let mut body = https_session(port, &pki).await;
    body.write_all(
        b"POST /enroll HTTP/1.1\r\nHost: bannin-collector\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"token\":",
    )
    .await
    .expect("write");
    body.flush().await.expect("flush");
    let answer = until_eof(&mut body, Duration::from_secs(25))
        .await
        .expect("a half-body client was still connected after 25 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    // A client that offers only TLS 1.2 does not get a session.
    let material = bannin_proto::tls::TlsMaterial::load(&pki.operator("alice")).expect("material");
    let mut roots = rustls::RootCertStore::empty();
    for ca in &material.ca {
        roots.add(ca.clone()).expect("root");
    }
    let old = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls 1.2")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(to).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    let refused = tokio_rustls::TlsConnector::from(std::sync::Arc::new(old))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err(), "a TLS 1.2 session was accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn text_from_peers_is_shown_inert_and_a_hostile_hello_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);

    // A Hello whose hostname would clear the operator's screen: refused, with the field.
    let hostile = v1::Hello {
        host_id: "h-escape".into(),
        hostname: "web\x1b[2J\x1b[Hclean".into(),
        os: "Linux".into(),
        heartbeat_interval_secs: 1,
        ..Default::default()
    };
    let refused = SimAgent::connect_hello(&pki, "h-escape", collector.addr, hostile)
        .await
        .err()
        .expect("refused");
    assert!(format!("{refused:#}").contains("hostname"), "{refused:#}");

    // A finding whose summary and attributes carry terminal escapes and a bidi override.
    let mut agent = SimAgent::connect(&pki, "h-text", collector.addr, &[], &[])
        .await
        .expect("connect");
    let mut e = event(
        "process.suspicious_exec",
        true,
        bannin_proto::now_unix_ms(),
        &[("exe", "/tmp/\x1b]0;owned\x07gpj.\u{202e}exe")],
    );
    e.summary = "erase\x1b[1A\x1b[2K this line".into();
    agent.send(&[e]).await.expect("send");
    let text = eventually(Duration::from_secs(20), "the finding listed", || {
        let operator = operator.clone();
        async move {
            let out = std::process::Command::new(bannin_tests::bin("bannin"))
                .args(["findings", "--config"])
                .arg(&operator)
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("this line").then_some(text)
        }
    })
    .await;
    assert!(
        !text.contains('\x1b') && !text.contains('\u{202e}'),
        "{text:?}"
    );
    assert!(text.contains("erase\\x1b[1A"), "shown visibly: {text}");
    let (_, findings, _) = bannin_json(&operator, &["findings"]);
    let id = findings[0]["id"].as_u64().expect("id").to_string();
    // JSON stays exact.
    assert_eq!(findings[0]["summary"], "erase\x1b[1A\x1b[2K this line");
    let shown = std::process::Command::new(bannin_tests::bin("bannin"))
        .args(["finding", "show", &id, "--config"])
        .arg(&operator)
        .output()
        .expect("show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        !shown.contains('\x1b') && !shown.contains('\u{202e}'),
        "{shown:?}"
    );
    assert!(shown.contains("\\u{202e}"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_command_results_write_nothing_to_the_action_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let mut agent = SimAgent::connect(&pki, "h-liar", collector.addr, &[], &[])
        .await
        .expect("connect");
    let count = || {
        let (ok, actions, err) = bannin_json(&operator, &["actions"]);
        assert!(ok, "{err}");
        actions.as_array().map(Vec::len).unwrap_or(0)
    };
    let before = count();
    // Reconciles never sent, commands never issued, and megabytes of detail.
    for i in 0..200 {
        agent
            .send_result(v1::CommandResult {
                command_id: format!("r{i}"),
                ok: i % 2 == 0,
                detail: "x".repeat(if i < 10 { 1024 * 1024 } else { 100 }),
            })
            .await
            .expect("send");
        agent
            .send_result(v1::CommandResult {
                command_id: format!("c{}", 10_000 + i),
                ok: true,
                detail: "done".into(),
            })
            .await
            .expect("send");
    }
    // A heartbeat after them: the session processed everything before it.
    agent.heartbeat().await.expect("still connected");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(), before, "the action log did not grow");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_claiming_one_name_or_address_is_a_finding_and_takes_nothing_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let hello = |host: &str| v1::Hello {
        host_id: host.into(),
        hostname: "web-07".into(),
        os: "Linux".into(),
        // The Docker bridge is on every host: no conflict.
        addresses: vec!["10.9.9.9/24".into(), "172.17.0.1/16".into()],
        heartbeat_interval_secs: 1,
        ..Default::default()
    };
    let _a = SimAgent::connect_hello(&pki, "h-real", collector.addr, hello("h-real"))
        .await
        .expect("first");
    let _b = SimAgent::connect_hello(&pki, "h-impostor", collector.addr, hello("h-impostor"))
        .await
        .expect("second");
    let conflicts = eventually(Duration::from_secs(20), "identity conflicts", || {
        let operator = operator.clone();
        async move {
            let (_, findings, _) = bannin_json(&operator, &["findings"]);
            let c: Vec<serde_json::Value> = findings
                .as_array()?
                .iter()
                .filter(|f| f["kind"] == "host.identity_conflict")
                .cloned()
                .collect();
            (c.len() >= 2).then_some(c)
        }
    })
    .await;
    let claims: Vec<(String, String, String)> = conflicts
        .iter()
        .map(|f| {
            (
                f["attributes"]["claim"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                f["attributes"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                f["attributes"]["hosts"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        claims.contains(&(
            "hostname".into(),
            "web-07".into(),
            "h-impostor,h-real".into()
        )),
        "{claims:?}"
    );
    assert!(
        claims.contains(&(
            "address".into(),
            "10.9.9.9".into(),
            "h-impostor,h-real".into()
        )),
        "{claims:?}"
    );
    assert_eq!(
        claims.len(),
        2,
        "no conflict for the Docker bridge: {claims:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_of_the_wrong_kind_is_refused_and_logged_once_not_per_try() {
    use bannin_proto::tls;
    use bannin_proto::v1::agent_link_client::AgentLinkClient;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut admin = operator_client(&pki.operator("alice"), collector.addr).await;
    // An agent's certificate on the operator API, fifty times.
    let mut sneaky = operator_client(&pki.agent("sneaky-01"), collector.addr).await;
    for _ in 0..50 {
        let refused = sneaky
            .list_hosts(v1::ListHostsRequest {})
            .await
            .expect_err("an agent certificate on the operator API");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    // An operator's certificate on the agent link, fifty times.
    let material = tls::TlsMaterial::load(&pki.operator("alice")).expect("material");
    let channel = tls::connect(
        &collector.addr.to_string(),
        "bannin-collector",
        tls::client_config(&material).expect("config"),
    )
    .await
    .expect("channel");
    let mut link = AgentLinkClient::new(channel);
    for _ in 0..50 {
        let hello = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Hello(v1::Hello {
                host_id: "alice".into(),
                ..Default::default()
            })),
        };
        let refused = link
            .session(tokio_stream::iter(vec![hello]))
            .await
            .expect_err("an operator certificate on the agent link");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }
    // One entry for each kind of refusal, not a hundred.
    let actions = admin
        .list_actions(v1::ListActionsRequest::default())
        .await
        .expect("actions")
        .into_inner()
        .actions;
    let api: Vec<_> = actions
        .iter()
        .filter(|a| a.verb == "denied.operator_api")
        .collect();
    assert_eq!(api.len(), 1, "{api:?}");
    assert_eq!(api[0].actor, "agent sneaky-01");
    let link: Vec<_> = actions
        .iter()
        .filter(|a| a.verb == "denied.agent_link")
        .collect();
    assert_eq!(link.len(), 1, "{link:?}");
    assert_eq!(link[0].actor, "operator alice");
    // The repeats are counted, and written when the collector stops: nothing
    // counted is lost.
    let mut collector = collector;
    assert!(
        collector.proc.terminate(Duration::from_secs(30)),
        "a clean stop"
    );
    drop(collector);
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut admin = operator_client(&pki.operator("alice"), collector.addr).await;
    let actions = admin
        .list_actions(v1::ListActionsRequest::default())
        .await
        .expect("actions")
        .into_inner()
        .actions;
    let repeats: Vec<_> = actions
        .iter()
        .filter(|a| {
            a.verb == "denied.operator_api" && a.result.contains("repeated 49 more time(s)")
        })
        .collect();
    assert_eq!(repeats.len(), 1, "{actions:?}");
    let verified = admin
        .verify_actions(v1::VerifyActionsRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_host_is_slowed_alone_and_loses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    // 1,000 events a second per host, ten seconds of it as a burst.
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        "[hosts]\nmax_events_per_sec = 1000\n",
    );
    let mut flooder = SimAgent::connect(&pki, "flood-01", collector.addr, &["10.9.8.1"], &[])
        .await
        .expect("flooder");
    let mut quiet = SimAgent::connect(&pki, "quiet-01", collector.addr, &["10.9.8.2"], &[])
        .await
        .expect("quiet");
    let now = bannin_proto::now_unix_ms();
    let batch: Vec<v1::Event> = (0..1000)
        .map(|i| {
            event(
                "process.exec",
                false,
                now,
                &[("exe", "/usr/bin/true"), ("pid", &i.to_string())],
            )
        })
        .collect();
    // The flooder sends 30,000 events, one acknowledged batch after another:
    // ten go through at once, the other twenty at about one a second.
    let acked = Arc::new(AtomicU64::new(0));
    let progress = acked.clone();
    let flood = tokio::spawn(async move {
        for _ in 0..30 {
            flooder
                .send(&batch)
                .await
                .expect("every batch acknowledged");
            progress.fetch_add(1, Ordering::SeqCst);
        }
    });
    eventually(Duration::from_secs(30), "the burst through", || {
        let n = acked.load(Ordering::SeqCst);
        async move { (n >= 10).then_some(()) }
    })
    .await;
    // Meanwhile another host is served at once.
    quiet
        .send(&[event("process.exec", false, now, &[("exe", "/usr/bin/id")])])
        .await
        .expect("the quiet host's batch");
    let done = acked.load(Ordering::SeqCst);
    assert!(
        done < 30,
        "the flooder was not slowed: {done} of 30 batches already acknowledged"
    );
    // And the flooder loses nothing: every batch is acknowledged in the end.
    tokio::time::timeout(Duration::from_secs(120), flood)
        .await
        .expect("the flood finishes")
        .expect("flooder");
    assert_eq!(acked.load(Ordering::SeqCst), 30);
    let log = collector.proc.log_text();
    assert!(log.contains("over its write budget"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_on_their_own_port_are_out_of_reach_of_an_agent_port_flood() {
    if !bannin_tests::runnable(&[bannin_tests::Need::OpenFiles(16_384)]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let operator_port = free_port();
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        &format!("operator_listen = \"127.0.0.1:{operator_port}\""),
    );
    let operator_addr = SocketAddr::from(([127, 0, 0, 1], operator_port));
    // The agents' port is flooded past its whole waiting pool (8,192), from
    // many addresses.
    let mut flood = Vec::new();
    for n in 0..170u16 {
        let from = IpAddr::from([127, 3, (n / 200) as u8, (2 + n % 200) as u8]);
        flood.extend(idle_connections(from, collector.addr, 50).await);
    }
    assert!(flood.len() > 8_192, "the flood connected: {}", flood.len());
    // Meanwhile the operators' port answers.
    let operator = operator_toml(dir.path(), &pki.operator("alice"), operator_addr);
    let (ok, hosts, err) = bannin_json(&operator, &["hosts"]);
    assert!(
        ok,
        "bannin hosts on the operators' port under the flood: {err}"
    );
    assert!(hosts.is_array(), "{hosts}");
    drop(flood);
    // Agents still connect to theirs.
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("split-01"),
        collector.addr,
        &AgentOptions::default(),
    );
    let mut client = operator_client(&pki.operator("alice"), operator_addr).await;
    wait_online(&mut client, "split-01").await;
    // An agent certificate is turned away at the operators' port, and the
    // agents' port does not serve the operator API.
    let mut agent_on_operator_port = operator_client(&pki.agent("split-01"), operator_addr).await;
    assert!(
        agent_on_operator_port
            .list_hosts(v1::ListHostsRequest {})
            .await
            .is_err(),
        "an agent certificate on the operators' port"
    );
    let mut operator_on_agent_port = operator_client(&pki.operator("alice"), collector.addr).await;
    let refused = operator_on_agent_port
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect_err("the operator API on the agents' port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
}

/// How two connections with one client config (its session cache shared) went.
async fn two_handshakes(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Vec<Option<rustls::HandshakeKind>> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake");
        // Read for a moment so the server's post-handshake messages (tickets, if
        // any) are processed and a session would be stored.
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await;
        kinds.push(tls.get_ref().1.handshake_kind());
    }
    kinds
}

/// Every connection to the gRPC port and to the HTTPS endpoints is a full
/// handshake: a client that kept its session from a first connection does not
/// resume it on the second (the certificate verifier, its expiry and CRL
/// checks, run every time).
#[tokio::test(flavor = "multi_thread")]
async fn no_port_resumes_a_tls_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (collector, https) = enrollment_collector(dir.path(), &pki).await;
    let material = bannin_proto::tls::TlsMaterial::load(&pki.agent("web-01")).expect("material");
    let grpc = bannin_proto::tls::client_config(&material).expect("client config");
    let full = [
        Some(rustls::HandshakeKind::Full),
        Some(rustls::HandshakeKind::Full),
    ];
    assert_eq!(
        two_handshakes(collector.addr, grpc).await,
        full,
        "gRPC port"
    );
    let anonymous = bannin_tests::https::anonymous_http1(&pki.agent("web-01"));
    assert_eq!(
        two_handshakes(https, anonymous).await,
        full,
        "HTTPS endpoint"
    );
}
