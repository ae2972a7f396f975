//! Fleet identity: token enrollment, what a malicious CSR gets, revocation,
//! renewal over the live channel, and clones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bannin_proto::tls::TlsPaths;
use bannin_proto::v1;
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, bannin_json, bin, eventually, free_port, operator_client,
    operator_toml, start_agent,
};

use crate::all_findings;

/// A collector with token enrollment on `enroll_port`.
fn collector(dir: &Path, pki: &TestPki, enroll_port: u16, validity_secs: u64) -> CollectorProc {
    CollectorProc::start(
        &dir.join("collector"),
        pki,
        free_port(),
        &format!(
            "[enrollment]\nlisten = \"127.0.0.1:{enroll_port}\"\nca_key = {:?}\nvalidity_secs = {validity_secs}\n",
            pki.dir.ca_key().display().to_string()
        ),
    )
}

pub(crate) fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `bannin-agent enroll` with the token in a 0600 file; (success, JSON or stderr).
pub(crate) fn enroll(
    pki: &TestPki,
    port: u16,
    token: &str,
    dir: &Path,
) -> (bool, serde_json::Value, String) {
    enroll_token_mode(pki, port, token, dir, 0o600)
}

/// `bannin-agent enroll` with the token in a file of `mode`.
fn enroll_token_mode(
    pki: &TestPki,
    port: u16,
    token: &str,
    dir: &Path,
    mode: u32,
) -> (bool, serde_json::Value, String) {
    use std::os::unix::fs::PermissionsExt;
    let token_file = dir.with_extension("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(mode))
        .expect("token file mode");
    let out = Command::new(bin("bannin-agent"))
        .args([
            "enroll",
            "--json",
            "--collector",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--ca")
        .arg(pki.dir.ca_cert())
        .arg("--token-file")
        .arg(&token_file)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("bannin-agent enroll");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn token(operator: &Path, args: &[&str]) -> (String, serde_json::Value) {
    let mut full = vec!["token", "create"];
    full.extend_from_slice(args);
    let (ok, t, err) = bannin_json(operator, &full);
    assert!(ok, "{err}");
    (t["secret"].as_str().expect("secret").to_owned(), t)
}

fn paths(dir: &Path) -> TlsPaths {
    TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("agent.pem"),
        key: dir.join("agent.key"),
    }
}

struct Cert {
    host: String,
    is_ca: bool,
    client_auth_only: bool,
    sans: Vec<String>,
    lifetime_secs: i64,
}

fn inspect(pem: &[u8]) -> Cert {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()
        .expect("a certificate")
        .expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("eku present")
        .value;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .expect("san")
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => (*u).to_owned(),
                    other => format!("{other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let host = sans
        .iter()
        .find_map(|s| s.split("urn:bannin:agent:").nth(1).map(str::to_owned))
        .unwrap_or_default();
    Cert {
        host,
        is_ca: cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca),
        client_auth_only: eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty(),
        sans,
        lifetime_secs: cert.validity().not_after.timestamp() - bannin_proto::now_unix_ms() / 1000,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_enroll_hosts_and_every_token_failure_is_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector = collector(dir.path(), &pki, port, 3600);
    wait_listening(port);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (secret, made) = token(
        &operator,
        &[
            "--uses",
            "2",
            "--expires",
            "1h",
            "--label",
            "site=osaka",
            "--note",
            "rack 7",
        ],
    );
    assert_eq!(made["uses"], 2);
    assert_eq!(made["state"], "active");

    // A token file others can read is refused before anything is sent: no use spent.
    let host_dir = dir.path().join("web-07");
    let (ok, _, err) = enroll_token_mode(&pki, port, &secret, &host_dir, 0o644);
    assert!(!ok, "a world-readable token file is refused");
    assert!(
        err.contains("mode 644") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!host_dir.join("agent.key").exists(), "nothing written");

    // Enrolled: the key stayed here (0600), the certificate is the collector's.
    let (ok, enrolled, err) = enroll(&pki, port, &secret, &host_dir);
    assert!(ok, "{err}");
    let host = enrolled["host_id"].as_str().expect("host id").to_owned();
    assert!(host.starts_with("h-"), "{host}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(host_dir.join("agent.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cert = inspect(&std::fs::read(host_dir.join("agent.pem")).expect("cert"));
    assert_eq!(cert.host, host);
    assert!(!cert.is_ca && cert.client_auth_only, "{:?}", cert.sans);
    assert!(
        (3500..=3600).contains(&cert.lifetime_secs),
        "{}",
        cert.lifetime_secs
    );
    // Enrolling again over an identity is refused without --force.
    let (ok, _, err) = enroll(&pki, port, &secret, &host_dir);
    assert!(!ok && err.contains("--force"), "{err}");

    // The enrolled agent runs with what it got, with the token's labels.
    let _agent = start_agent(
        &host_dir.join("run"),
        &paths(&host_dir),
        collector.addr,
        &AgentOptions::default(),
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_online(&mut client, &host).await;
    let (ok, hosts, err) = bannin_json(&operator, &["hosts"]);
    assert!(ok, "{err}");
    let shown = hosts
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host_id"] == host.as_str()))
        .cloned()
        .expect("listed");
    assert_eq!(shown["labels"]["site"], "osaka", "{shown}");
    // Findings on the host carry its labels too.
    let (ok, f, err) = bannin_json(
        &operator,
        &[
            "finding",
            "add",
            "--host",
            &host,
            "--kind",
            "report.user",
            "--severity",
            "low",
            "--text",
            "slow logins",
        ],
    );
    assert!(ok, "{err}");
    let id = f["id"].as_u64().expect("id").to_string();
    let (ok, f, err) = bannin_json(&operator, &["finding", "show", &id]);
    assert!(ok, "{err}");
    assert_eq!(f["host_labels"]["site"], "osaka", "{f}");

    // Each failure says what is wrong.
    let (ok, _, _) = enroll(&pki, port, &secret, &dir.path().join("db-01"));
    assert!(ok, "second use");
    let (ok, _, err) = enroll(&pki, port, &secret, &dir.path().join("db-02"));
    assert!(!ok && err.contains("used up"), "{err}");
    let (short, made) = token(&operator, &["--expires", "1s"]);
    let short_id = made["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(20), "the 1 s token expired", || {
        let (ok, tokens, _) = bannin_json(&operator, &["token", "list"]);
        let expired = ok
            && tokens.as_array().is_some_and(|list| {
                list.iter()
                    .any(|t| t["id"] == short_id.as_str() && t["state"] == "expired")
            });
        async move { expired.then_some(()) }
    })
    .await;
    let (ok, _, err) = enroll(&pki, port, &short, &dir.path().join("db-03"));
    assert!(!ok && err.contains("expired"), "{err}");
    let (revoked, t) = token(&operator, &[]);
    let (ok, _, err) = bannin_json(
        &operator,
        &["token", "revoke", t["id"].as_str().expect("id")],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = enroll(&pki, port, &revoked, &dir.path().join("db-04"));
    assert!(!ok && err.contains("revoked"), "{err}");
    let (ok, _, err) = enroll(&pki, port, "t99.0000", &dir.path().join("db-05"));
    assert!(!ok && err.contains("not valid"), "{err}");
    // Bursts of wrong attempts: the address waits.
    let (ok, _, err) = enroll(&pki, port, "t1.wrong", &dir.path().join("db-06"));
    assert!(!ok, "{err}");
    let (good, _) = token(&operator, &[]);
    let (ok, _, err) = enroll(&pki, port, &good, &dir.path().join("db-07"));
    assert!(!ok && err.contains("too many failed attempts"), "{err}");
    assert!(
        !dir.path().join("db-07/agent.key").exists(),
        "nothing written on failure"
    );
    // The token list shows it all; the action log the enrollments.
    let (ok, list, err) = bannin_json(&operator, &["token", "list"]);
    assert!(ok, "{err}");
    let first = list
        .as_array()
        .and_then(|l| l.first())
        .cloned()
        .expect("t1");
    assert_eq!(first["state"], "used_up");
    assert_eq!(first["hosts"].as_array().map(Vec::len), Some(2));
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    assert!(
        actions
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["verb"] == "host.enroll" && a["target"] == host.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malicious_csr_gets_only_what_the_collector_decides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector = collector(dir.path(), &pki, port, 7200);
    wait_listening(port);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (secret, _) = token(&operator, &["--uses", "3"]);
    // A CSR asking to be a CA, for another host's identity and a server name, for ten years.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["collector.example.org".to_owned()]).expect("params");
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("urn:bannin:agent:db-master").expect("uri"),
    ));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let anonymous = bannin_tests::https::anonymous_http1(&pki.operator("alice"));
    let body = serde_json::json!({ "token": secret, "csr_pem": csr }).to_string();
    let (code, answer) = bannin_tests::https::request(
        port,
        anonymous.clone(),
        "POST",
        "/enroll",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let cert = inspect(answer["cert_pem"].as_str().expect("cert").as_bytes());
    assert!(!cert.is_ca, "CA:true ignored");
    assert!(cert.client_auth_only, "serverAuth ignored");
    assert_eq!(
        cert.sans.len(),
        1,
        "only the collector's identity: {:?}",
        cert.sans
    );
    assert_ne!(cert.host, "db-master");
    assert_eq!(cert.host, answer["host_id"].as_str().expect("id"));
    assert!(
        (7100..=7200).contains(&cert.lifetime_secs),
        "the collector's validity: {}",
        cert.lifetime_secs
    );
    // Garbage and forged signatures are refused, with the reason.

    let forged = csr.replace("MII", "MIJ");
    let body = serde_json::json!({ "token": secret, "csr_pem": forged }).to_string();
    let (code, answer) = bannin_tests::https::request(
        port,
        anonymous.clone(),
        "POST",
        "/enroll",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("CSR"),
        "{answer}"
    );
    let (code, _) =
        bannin_tests::https::request(port, anonymous, "POST", "/enroll", &[], b"{not json").await;
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_host_is_cut_off_and_stays_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("stolen-01"),
        collector.addr,
        &AgentOptions::default(),
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_online(&mut client, "stolen-01").await;
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, _, err) = bannin_json(&operator, &["host", "revoke", "stolen-01"]);
    assert!(
        !ok && err.contains("--reason"),
        "a reason is required: {err}"
    );
    let (ok, r, err) = bannin_json(
        &operator,
        &[
            "host",
            "revoke",
            "stolen-01",
            "--reason",
            "key found on a paste site",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(r["sessions_cut"], 1);
    eventually(Duration::from_secs(10), "the host offline", || {
        let mut c = client.clone();
        async move {
            let hosts = c
                .list_hosts(v1::ListHostsRequest {})
                .await
                .ok()?
                .into_inner()
                .hosts;
            hosts
                .iter()
                .any(|h| h.host_id == "stolen-01" && !h.online)
                .then_some(())
        }
    })
    .await;
    // It keeps trying, and stays off: wait for the agent to have been refused again
    // (proof the collector was asked) before asserting it is still offline.
    let refusals = |log: &str| log.matches("Link down").count();
    let before = refusals(&agent.log_text());
    // (Up to two minutes: seen once to take longer than one under the full
    // suite's load; not explained yet.)
    eventually(Duration::from_secs(120), "the agent refused again", || {
        let seen = refusals(&agent.log_text());
        async move { (seen > before).then_some(()) }
    })
    .await;
    let (ok, listed, err) = bannin_json(&operator, &["hosts"]);
    assert!(ok, "{err}");
    let stolen = listed
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["host_id"] == "stolen-01")
        .expect("the revoked host is still listed");
    assert_eq!(stolen["revoked"], true, "{stolen}");
    assert_eq!(stolen["revoked_by"], "alice");
    assert_eq!(stolen["revoked_reason"], "key found on a paste site");
    let hosts = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect("hosts")
        .into_inner()
        .hosts;
    assert!(hosts.iter().any(|h| h.host_id == "stolen-01" && !h.online));
    let log = agent.log_text();
    assert!(
        log.contains("revoked") || log.contains("Link down"),
        "{log}"
    );
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    assert!(
        actions
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["verb"] == "host.revoke" && a["target"] == "stolen-01")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_are_renewed_over_the_live_channel_without_losing_telemetry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector = collector(dir.path(), &pki, port, 600);
    wait_listening(port);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (secret, _) = token(&operator, &[]);
    let host_dir = dir.path().join("renewing");
    let (ok, enrolled, err) = enroll(&pki, port, &secret, &host_dir);
    assert!(ok, "{err}");
    let host = enrolled["host_id"].as_str().expect("id").to_owned();
    let before = std::fs::read(host_dir.join("agent.pem")).expect("cert");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    std::fs::write(watched.join(" before"), b"x").expect("odd");
    // Ten minutes of validity, renewed when less than fifteen remain: at once.
    let _agent = start_agent(
        &host_dir.join("run"),
        &paths(&host_dir),
        collector.addr,
        &AgentOptions {
            watch: vec![watched.clone()],
            extra: String::new(),
            link: String::new(),
            tls_extra: "renew_before_secs = 900".into(),
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_online(&mut client, &host).await;
    let cert_path: PathBuf = host_dir.join("agent.pem");
    eventually(Duration::from_secs(20), "a renewed certificate", || {
        let before = before.clone();
        let cert_path = cert_path.clone();
        async move { (std::fs::read(&cert_path).ok()? != before).then_some(()) }
    })
    .await;
    let after = inspect(&std::fs::read(&cert_path).expect("cert"));
    assert_eq!(after.host, host, "the same identity");
    // Telemetry goes on, across a reconnect that uses the renewed certificate.
    std::fs::write(watched.join(" during"), b"x").expect("odd");
    let CollectorProc {
        mut proc,
        addr,
        config,
    } = collector;
    assert!(proc.terminate(Duration::from_secs(20)));
    let collector = CollectorProc::start_with(&dir.path().join("collector"), config, addr.port());
    std::fs::write(watched.join(" after"), b"x").expect("odd");
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let paths_seen = eventually(Duration::from_secs(30), "every odd name", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            let seen: Vec<String> = f
                .iter()
                .filter(|f| f.kind == "file.odd_name")
                .map(|f| f.attributes["path"].clone())
                .collect();
            (seen.len() >= 3).then_some(seen)
        }
    })
    .await;
    for name in [" before", " during", " after"] {
        assert!(
            paths_seen.iter().any(|p| p.ends_with(name)),
            "{name:?} missing: {paths_seen:?}"
        );
    }
    crate::wait_online(&mut client, &host).await;
    // A reconnecting agent is not a clone: the clone check has looked at this host
    // for three heartbeats since it came back, and found nothing.
    crate::heard_from_since(
        &mut client,
        &host,
        bannin_proto::now_unix_ms(),
        Duration::from_secs(3),
    )
    .await;
    assert!(
        !all_findings(&mut client)
            .await
            .iter()
            .any(|f| f.kind == "host.clone")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_identity_on_two_machines_is_a_clone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let twin = pki.agent("twin-01");
    let _first = start_agent(
        &dir.path().join("a"),
        &twin,
        collector.addr,
        &AgentOptions::default(),
    );
    let mut second = start_agent(
        &dir.path().join("b"),
        &twin,
        collector.addr,
        &AgentOptions::default(),
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    let clone = eventually(Duration::from_secs(30), "host.clone", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .into_iter()
                .find(|f| f.kind == "host.clone")
        }
    })
    .await;
    assert_eq!(clone.host_id, "twin-01");
    assert_eq!(clone.severity, v1::Severity::Critical as i32);
    assert_eq!(clone.attributes["sessions"], "2");
    // Reported once while it lasts; the copy gone, nothing more.
    second.kill();
    // The first copy keeps talking: the clone check has looked for five
    // heartbeats since, and raised nothing more.
    crate::heard_from_since(
        &mut client,
        "twin-01",
        bannin_proto::now_unix_ms(),
        Duration::from_secs(5),
    )
    .await;
    let clones = all_findings(&mut client)
        .await
        .into_iter()
        .filter(|f| f.kind == "host.clone")
        .map(|f| f.count)
        .sum::<u64>();
    assert_eq!(clones, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_binds_the_key_even_for_a_host_that_never_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let port = free_port();
    let collector = collector(dir.path(), &pki, port, 7200);
    wait_listening(port);
    let operator = operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    // A certificate issued with `pki issue` for lost-01, never used, then lost.
    let lost = pki.agent("lost-01");
    let cert = lost.cert.display().to_string();
    // Another host's certificate is not evidence about lost-01.
    let other = pki.agent("web-02").cert.display().to_string();
    let (ok, _, err) = bannin_json(
        &operator,
        &[
            "host",
            "revoke",
            "lost-01",
            "--reason",
            "laptop stolen",
            "--cert",
            &other,
        ],
    );
    assert!(!ok && err.contains("not host lost-01"), "{err}");
    let (ok, r, err) = bannin_json(
        &operator,
        &[
            "host",
            "revoke",
            "lost-01",
            "--reason",
            "laptop stolen",
            "--cert",
            &cert,
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(r["known"], false, "{r}");
    assert_eq!(r["keys_revoked"].as_array().map(Vec::len), Some(1), "{r}");

    // Its key enrolling with a valid token, under the h-… id enrollment would
    // give it, is refused.
    let (secret, _) = token(&operator, &["--uses", "2"]);
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&lost.key).expect("key"))
        .expect("the key");
    // A request for `key` asking for nothing: the collector decides the rest.
    let csr_for = |key: &rcgen::KeyPair| {
        rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .serialize_request(key)
            .expect("csr")
            .pem()
            .expect("pem")
    };
    let csr = csr_for(&key);
    let anonymous = bannin_tests::https::anonymous_http1(&pki.operator("alice"));
    let body = serde_json::json!({ "token": secret, "csr_pem": csr }).to_string();
    let (code, answer) = bannin_tests::https::request(
        port,
        anonymous.clone(),
        "POST",
        "/enroll",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("lost-01"),
        "the refusal names the revoked host: {answer}"
    );
    // A certificate for the same key under another id (signed by the CA the
    // way `pki issue` would) is refused at the handshake's gate: the key is
    // what was revoked.
    let renamed = {
        let ca = pki.dir.load_ca().expect("ca");
        let request = rcgen::CertificateSigningRequestParams::from_pem(&csr).expect("csr");
        let pem = ca
            .sign_client_key(
                &bannin_proto::identity::PeerIdentity::Agent(
                    bannin_proto::identity::HostId::new("renamed-01").expect("id"),
                ),
                &request.public_key,
                bannin_collector::pki::Validity::secs(3600),
            )
            .expect("sign");
        let at = dir.path().join("renamed");
        std::fs::create_dir_all(&at).expect("dir");
        std::fs::write(at.join("agent.pem"), pem).expect("cert");
        std::fs::copy(&lost.key, at.join("agent.key")).expect("key");
        TlsPaths {
            ca: lost.ca.clone(),
            cert: at.join("agent.pem"),
            key: at.join("agent.key"),
        }
    };
    let renamed_agent = start_agent(
        &dir.path().join("renamed-agent"),
        &renamed,
        collector.addr,
        &AgentOptions::default(),
    );
    eventually(
        Duration::from_secs(30),
        "the same key under another id refused",
        || {
            let log = collector.proc.log_text();
            async move {
                log.contains("key was revoked with host lost-01")
                    .then_some(())
            }
        },
    )
    .await;
    drop(renamed_agent);
    // A new key enrolls with the same token: the token was not spent by the refusal.
    let csr = csr_for(&rcgen::KeyPair::generate().expect("key"));
    let body = serde_json::json!({ "token": secret, "csr_pem": csr }).to_string();
    let (code, answer) =
        bannin_tests::https::request(port, anonymous, "POST", "/enroll", &[], body.as_bytes())
            .await;
    assert_eq!(code, 200, "{answer}");

    // The lost certificate itself is refused at the handshake's gate.
    let agent = start_agent(
        &dir.path().join("agent"),
        &lost,
        collector.addr,
        &AgentOptions::default(),
    );
    eventually(
        Duration::from_secs(30),
        "the lost certificate refused",
        || {
            let log = collector.proc.log_text();
            async move { log.contains("lost-01 is revoked").then_some(()) }
        },
    )
    .await;
    drop(agent);
    let (ok, actions, err) = bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    assert!(
        actions
            .as_array()
            .expect("actions")
            .iter()
            .any(|a| a["verb"] == "host.revoke"
                && a["target"] == "lost-01"
                && a["result"]
                    .as_str()
                    .unwrap_or("")
                    .contains("never connected")),
        "{actions}"
    );
}
