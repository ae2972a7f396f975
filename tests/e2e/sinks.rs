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

/// The kinds of OCSF record the test provokes, as (class_uid, activity_id).
const OCSF_EXPECTED: [(u64, u64, &str); 6] = [
    (2004, 1, "a new finding (Detection Finding: Create)"),
    (2004, 2, "an acknowledgement (Detection Finding: Update)"),
    (1007, 1, "an exec (Process Activity: Launch)"),
    (1001, 1, "a file created (File System Activity: Create)"),
    (4001, 2, "a closed connection (Network Activity: Close)"),
    (3002, 1, "a login (Authentication: Logon)"),
];

fn ocsf_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A real agent's findings, state changes and telemetry, exported by an OCSF
/// sink, validate against the published OCSF schema (the `ocsf-json-schema`
/// package's export, checked with `jsonschema`; tests/ocsf/validate.py), and
/// every class Bannin maps is among them.
#[tokio::test(flavor = "multi_thread")]
async fn ocsf_records_from_a_real_agent_validate_against_the_published_schema_needs_root() {
    use bannin_tests::Need;
    if !bannin_tests::runnable(&[Need::Root, Need::OcsfValidator]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let lake = dir.path().join("lake.jsonl");
    let sink = format!(
        r#"
[[sink]]
name = "lake"
type = "jsonl"
path = {:?}
format = "ocsf"
telemetry = ["process.exec", "file.*", "net.flow", "account.login*"]
"#,
        lake.display().to_string()
    );
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), &sink);
    let watched = dir.path().join("watched");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&watched).expect("watched");
    std::fs::create_dir_all(&logs).expect("logs");
    let auth = logs.join("auth.log");
    std::fs::write(&auth, "").expect("auth");
    let agent = bannin_tests::start_agent(
        &dir.path().join("agent"),
        &pki.agent("ocsf-host"),
        collector.addr,
        &bannin_tests::AgentOptions {
            watch: vec![watched.clone()],
            net_listener: false,
            net_connection: true,
            enable: vec!["process", "logs"],
            sensor_toml: vec![(
                "logs",
                format!(
                    "auth_logs = [{:?}]\nclamav_logs = []\nsuricata_eve = []\npattern_files = []\n",
                    auth.display().to_string()
                ),
            )],
            ..bannin_tests::AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "logs", Duration::from_secs(60)).await;
    crate::wait_sensor_ok(&client, "process", Duration::from_secs(60)).await;

    // An exec, a short connection, an odd name (a finding), a login and a failure.
    let status = std::process::Command::new("/bin/true")
        .status()
        .expect("true");
    assert!(status.success());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    {
        use std::io::Write;
        let mut out = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (_inbound, _) = listener.accept().expect("accept");
        out.write_all(b"ocsf").expect("write");
    }
    std::fs::write(watched.join("invoice.pdf "), b"%PDF").expect("odd name");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&auth)
        .and_then(|mut f| {
            std::io::Write::write_all(
                &mut f,
                concat!(
                    "Dec  7 10:00:01 ocsf-host sshd[700]: Accepted publickey for alice from 198.51.100.7 port 50022 ssh2: ED25519 SHA256:abc\n",
                    "Dec  7 10:00:02 ocsf-host sshd[701]: Failed password for invalid user bob from 198.51.100.8 port 50023 ssh2\n",
                )
                .as_bytes(),
            )
        })
        .expect("auth lines");

    let finding = eventually(Duration::from_secs(60), "the odd-name finding", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .into_iter()
                .find(|f| f.kind == "file.odd_name")
        }
    })
    .await;
    client
        .set_finding_state(bannin_proto::v1::SetFindingStateRequest {
            id: finding.id,
            state: bannin_proto::v1::FindingState::Acknowledged as i32,
            note: "looking".into(),
        })
        .await
        .expect("acknowledge");

    let missing = |records: &[serde_json::Value]| -> Vec<&str> {
        OCSF_EXPECTED
            .iter()
            .filter(|(class, activity, _)| {
                !records
                    .iter()
                    .any(|r| r["class_uid"] == *class && r["activity_id"] == *activity)
            })
            .map(|(_, _, what)| *what)
            .collect()
    };
    // Other loopback connections (the agent's own to its collector) close too:
    // the wait is for this test's flow, not any Network Activity record.
    let our_flow = |records: &[serde_json::Value]| {
        records.iter().any(|r| {
            r["class_uid"] == 4001
                && r["dst_endpoint"]["port"] == port
                && r["traffic"]["bytes_out"] == 4
        })
    };
    let mut records = ocsf_records(&lake);
    for _ in 0..600 {
        if missing(&records).is_empty() && our_flow(&records) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        records = ocsf_records(&lake);
    }
    assert!(
        missing(&records).is_empty(),
        "not exported within 60 s: {:?}; exported: {:?}; agent log:\n{}",
        missing(&records),
        records
            .iter()
            .map(|r| format!(
                "{}/{} {}",
                r["class_uid"], r["activity_id"], r["metadata"]["event_code"]
            ))
            .collect::<BTreeSet<_>>(),
        agent.log_text()
    );

    // The update names who and why, and carries the finding's id.
    let update = records
        .iter()
        .find(|r| r["class_uid"] == 2004 && r["activity_id"] == 2)
        .expect("update");
    assert_eq!(update["finding_info"]["uid"], finding.id.to_string());
    assert_eq!(update["status_id"], 2, "acknowledged is In Progress");
    assert_eq!(update["comment"], "acknowledged by alice: looking");
    // The exec names the process and its parent (this test).
    let ours = std::process::id();
    assert!(
        records.iter().any(|r| r["class_uid"] == 1007
            && r["process"]["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("bin/true"))
            && r["actor"]["process"]["pid"] == ours),
        "the exec of /bin/true by pid {ours}"
    );
    // The flow and the login carry their endpoints.
    assert!(
        our_flow(&records),
        "the flow to port {port} with 4 bytes out: {:?}",
        records
            .iter()
            .filter(|r| r["class_uid"] == 4001)
            .map(|r| format!(
                "{} {} {}",
                r["dst_endpoint"]["port"],
                r["traffic"]["bytes_out"],
                r["connection_info"]["direction"]
            ))
            .collect::<Vec<_>>()
    );
    assert!(records.iter().any(|r| r["class_uid"] == 3002
        && r["status_id"] == 2
        && r["src_endpoint"]["ip"] == "198.51.100.8"));
    for r in &records {
        assert_eq!(r["device"]["uid"], "ocsf-host", "{r}");
    }

    let out = std::process::Command::new(bannin_tests::ocsf_python())
        .arg(bannin_tests::workspace().join("tests/ocsf/validate.py"))
        .arg(bannin_collector::sinks::ocsf::VERSION)
        .arg(&lake)
        .output()
        .expect("the OCSF validator");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "records that do not validate:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" 0 invalid"), "{report}");
}
