//! Export sinks: every finding reaches a JSON lines file, a syslog receiver
//! (RFC 5424 over TCP) and a webhook receiver at least once, none skipped,
//! across a SIGKILL of the collector mid-export; a failing sink shows its lag
//! and error and does not hold up ingest.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bannin_proto::now_unix_ms;
use bannin_tests::sim::{SimAgent, event};
use bannin_tests::{
    CollectorProc, TestPki, bannin_json, eventually, free_port, operator_client, operator_toml,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::all_findings;

type Seen = Arc<Mutex<BTreeSet<u64>>>;

/// A syslog receiver: octet-counted RFC 5424 frames over TCP; records the
/// finding id of each message.
async fn syslog_receiver(
    listener: tokio::net::TcpListener,
    seen: Seen,
    messages: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (seen, messages) = (seen.clone(), messages.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(tcp);
            loop {
                let mut len = Vec::new();
                if reader.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                    return;
                }
                let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else {
                    return;
                };
                let mut frame = vec![0u8; n];
                if reader.read_exact(&mut frame).await.is_err() {
                    return;
                }
                let text = String::from_utf8_lossy(&frame).into_owned();
                if let Some(id) = text
                    .split("id=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|i| i.parse().ok())
                {
                    seen.lock().expect("lock").insert(id);
                }
                messages.lock().expect("lock").push(text);
            }
        });
    }
}

fn id_of(text: &str) -> Option<u64> {
    text.split("id=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|i| i.parse().ok())
}

/// A syslog receiver over TLS (RFC 5425), with the test PKI's server certificate.
async fn syslog_tls_receiver(
    listener: tokio::net::TcpListener,
    pki: std::path::PathBuf,
    seen: Seen,
) {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::CertificateDer::pem_file_iter(pki.join("collector.pem"))
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(pki.join("collector.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, seen) = (acceptor.clone(), seen.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut reader = BufReader::new(tls);
            loop {
                let mut len = Vec::new();
                if reader.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                    return;
                }
                let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else {
                    return;
                };
                let mut frame = vec![0u8; n];
                if reader.read_exact(&mut frame).await.is_err() {
                    return;
                }
                if let Some(id) = id_of(&String::from_utf8_lossy(&frame)) {
                    seen.lock().expect("lock").insert(id);
                }
            }
        });
    }
}

/// A syslog receiver on a unix datagram socket (like /dev/log).
async fn syslog_unix_receiver(socket: tokio::net::UnixDatagram, seen: Seen) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = socket.recv(&mut buf).await {
        if let Some(id) = id_of(&String::from_utf8_lossy(&buf[..n])) {
            seen.lock().expect("lock").insert(id);
        }
    }
}

/// A webhook receiver: answers 500 while `failing`, else records the ids of
/// the posted JSON array and answers 200.
async fn webhook_receiver(listener: tokio::net::TcpListener, seen: Seen, failing: Arc<AtomicBool>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (seen, failing) = (seen.clone(), failing.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(tcp);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let answer = if failing.load(Ordering::SeqCst) {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                let posted: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let mut s = seen.lock().expect("lock");
                for f in posted.as_array().into_iter().flatten() {
                    if let Some(id) = f["id"].as_u64() {
                        s.insert(id);
                    }
                }
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = reader.get_mut().write_all(answer.as_bytes()).await;
        });
    }
}

fn jsonl_ids(dir: &std::path::Path) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("findings.jsonl")
        {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
            ids.insert(v["id"].as_u64().expect("id"));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_finding_reaches_every_sink_across_a_collector_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let syslog = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("syslog");
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("hook");
    let (syslog_addr, hook_addr) = (
        syslog.local_addr().expect("addr"),
        hook.local_addr().expect("addr"),
    );
    let (syslog_seen, hook_seen): (Seen, Seen) = Default::default();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let failing = Arc::new(AtomicBool::new(true));
    tokio::spawn(syslog_receiver(
        syslog,
        syslog_seen.clone(),
        messages.clone(),
    ));
    tokio::spawn(webhook_receiver(hook, hook_seen.clone(), failing.clone()));
    let syslog_tls = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("syslog tls");
    let tls_addr = syslog_tls.local_addr().expect("addr");
    let (tls_seen, unix_seen): (Seen, Seen) = Default::default();
    tokio::spawn(syslog_tls_receiver(
        syslog_tls,
        pki.dir.0.clone(),
        tls_seen.clone(),
    ));
    let unix_path = dir.path().join("log.sock");
    let unix = tokio::net::UnixDatagram::bind(&unix_path).expect("unix socket");
    tokio::spawn(syslog_unix_receiver(unix, unix_seen.clone()));
    let out = dir.path().join("export");
    std::fs::create_dir_all(&out).expect("export dir");
    let config = format!(
        r#"
[[sink]]
name = "file"
type = "jsonl"
path = {file:?}
max_bytes = 8192
keep = 100

[[sink]]
name = "siem"
type = "syslog"
transport = "tcp"
address = "{syslog_addr}"

[[sink]]
name = "soar"
type = "webhook"
url = "http://{hook_addr}/bannin"
headers = {{ Authorization = "Bearer t0ken" }}

[[sink]]
name = "siem-tls"
type = "syslog"
transport = "tls"
address = "{tls_addr}"
ca = {ca:?}
server_name = "bannin-collector"

[[sink]]
name = "local"
type = "syslog"
transport = "unix"
socket = {unix:?}
"#,
        file = out.join("findings.jsonl").display().to_string(),
        ca = pki.dir.ca_cert().display().to_string(),
        unix = unix_path.display().to_string(),
    );
    let port = free_port();
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, port, &config);
    let mut agent = SimAgent::connect(&pki, "web-01", collector.addr, &["10.50.0.1"], &[])
        .await
        .expect("agent");
    let odd = |i: usize| {
        event(
            "file.odd_name",
            true,
            now_unix_ms(),
            &[
                ("path", &format!("/tmp/ drop-{i}")),
                ("reason", "leading_space"),
            ],
        )
    };
    // Ingest goes on while the webhook fails.
    for i in 0..60 {
        agent.send(&[odd(i)]).await.expect("send");
    }
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let sinks = eventually(
        Duration::from_secs(30),
        "the webhook's failure shown",
        || {
            let operator = operator.clone();
            async move {
                let (ok, s, _) = bannin_json(&operator, &["sinks"]);
                let soar = s.as_array()?.iter().find(|s| s["name"] == "soar")?.clone();
                (ok && soar["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("500")))
                .then_some(s)
            }
        },
    )
    .await;
    let soar = sinks
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "soar"))
        .expect("soar");
    assert_eq!(soar["lag"], 60, "{sinks}");
    assert_eq!(soar["cursor"], 0, "{sinks}");

    // Crash the collector mid-export, start it again, send the rest.
    let CollectorProc {
        mut proc,
        addr,
        config,
    } = collector;
    proc.kill();
    drop(agent);
    failing.store(false, Ordering::SeqCst);
    let collector = CollectorProc::start_with(&dir.path().join("collector"), config, addr.port());
    let mut agent = SimAgent::connect(&pki, "web-01", collector.addr, &["10.50.0.1"], &[])
        .await
        .expect("agent");
    for i in 60..120 {
        agent.send(&[odd(i)]).await.expect("send");
    }
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let ids: BTreeSet<u64> = all_findings(&mut client)
        .await
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(ids.len(), 120, "every acknowledged finding stored");
    let check = |what: &str, got: &BTreeSet<u64>| {
        let missing: Vec<_> = ids.difference(got).collect();
        assert!(missing.is_empty(), "{what} is missing {missing:?}");
    };
    eventually(
        Duration::from_secs(90),
        "every finding in every sink",
        || {
            let ids = ids.clone();
            let (s, h) = (syslog_seen.clone(), hook_seen.clone());
            let (t, u) = (tls_seen.clone(), unix_seen.clone());
            let out = out.clone();
            async move {
                let all = |got: &BTreeSet<u64>| ids.is_subset(got);
                (all(&jsonl_ids(&out))
                    && all(&s.lock().expect("lock"))
                    && all(&h.lock().expect("lock"))
                    && all(&t.lock().expect("lock"))
                    && all(&u.lock().expect("lock")))
                .then_some(())
            }
        },
    )
    .await;
    check("the JSON lines file", &jsonl_ids(&out));
    check("syslog", &syslog_seen.lock().expect("lock"));
    check("the webhook", &hook_seen.lock().expect("lock"));
    check("syslog over TLS", &tls_seen.lock().expect("lock"));
    check(
        "syslog over a unix socket",
        &unix_seen.lock().expect("lock"),
    );
    // The file was rotated and nothing in it was lost.
    assert!(out.join("findings.jsonl.1").exists(), "rotated at 8 KiB");
    // Syslog messages are RFC 5424: <PRI>1 TIME HOST APP - MSGID [SD] MSG.
    let first = messages.lock().expect("lock")[0].clone();
    assert!(first.starts_with("<131>1 "), "local0, high: {first}");
    assert!(
        first.contains(" web-01 bannin - file.odd_name [bannin@32473 id=\""),
        "{first}"
    );
    // Caught up: no lag, no error.
    let (ok, s, err) = bannin_json(&operator, &["sinks"]);
    assert!(ok, "{err}");
    for sink in s.as_array().expect("sinks") {
        assert_eq!(sink["lag"], 0, "{s}");
        assert!(sink["last_error"].is_null(), "{s}");
    }
}
