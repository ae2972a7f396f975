//! The Alertmanager webhook over real HTTPS: alerts become findings on the
//! hosts they name; bad input gets a clear 4xx and stores nothing.

use std::sync::Arc;
use std::time::Duration;

use bannin_proto::tls::TlsPaths;
use bannin_proto::tls::{self, TlsMaterial};
use bannin_proto::v1;
use bannin_tests::https::request as post;
use bannin_tests::sim::SimAgent;
use bannin_tests::{CollectorProc, TestPki, free_port, operator_client};

use crate::all_findings;

const TOKEN: &str = "s3cret-token-0123456789abcdef";

fn alert(name: &str, host_label: &str, host: &str) -> String {
    format!(
        r#"{{"status":"firing","labels":{{"alertname":"{name}","{host_label}":"{host}","severity":"critical"}},"annotations":{{"summary":"{name} on {host}"}},"startsAt":"2026-11-25T10:00:00Z","fingerprint":"{name}-{host}"}}"#
    )
}

fn payload(alerts: &[String]) -> Vec<u8> {
    format!(
        r#"{{"version":"4","status":"firing","receiver":"bannin","alerts":[{}]}}"#,
        alerts.join(",")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_alerts_become_findings_and_bad_requests_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let token = dir.path().join("alertmanager.token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let hook = free_port();
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        &format!(
            "[webhook]\nlisten = \"127.0.0.1:{hook}\"\ntoken_file = {:?}\n",
            token.display().to_string()
        ),
    );
    let _web = SimAgent::connect(&pki, "web-01", collector.addr, &["10.40.0.1/24"], &[])
        .await
        .expect("web");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", hook)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "webhook not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca_only = |paths: &TlsPaths| {
        tls::anonymous_client_config(&TlsMaterial::load(paths).expect("material")).expect("client")
    };
    let anonymous = ca_only(&pki.operator("alice"));
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let good = payload(&[
        alert("DiskFull", "instance", "web-01:9100"),
        alert("Load", "host", "10.40.0.1"),
    ]);

    // Refusals, each with a reason, none storing anything.
    let (code, body) = post(hook, anonymous.clone(), "POST", "/alertmanager", &[], &good).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(
        hook,
        anonymous.clone(),
        "POST",
        "/alertmanager",
        &[("Authorization", "Bearer wrong-token-000000")],
        &good,
    )
    .await;
    assert_eq!(code, 401);
    let (code, body) = post(
        hook,
        anonymous.clone(),
        "POST",
        "/alertmanager",
        &auth,
        b"{\"alerts\": [",
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("not Alertmanager webhook JSON"),
        "{body}"
    );
    let huge = vec![b' '; 2 * 1024 * 1024];
    let (code, body) = post(
        hook,
        anonymous.clone(),
        "POST",
        "/alertmanager",
        &auth,
        &huge,
    )
    .await;
    assert_eq!(code, 413, "{body}");
    let stranger = payload(&[
        alert("DiskFull", "instance", "web-01:9100"),
        alert("Load", "host", "mystery-host"),
    ]);
    let (code, body) = post(
        hook,
        anonymous.clone(),
        "POST",
        "/alertmanager",
        &auth,
        &stranger,
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("mystery-host"),
        "{body}"
    );
    let (code, _) = post(hook, anonymous.clone(), "GET", "/alertmanager", &auth, b"").await;
    assert_eq!(code, 405);
    let (code, _) = post(hook, anonymous.clone(), "POST", "/elsewhere", &auth, &good).await;
    assert_eq!(code, 404);
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    assert!(
        !all_findings(&mut client)
            .await
            .iter()
            .any(|f| f.kind == "monitor.alert"),
        "a refused request stored something"
    );

    // Accepted with the token: one finding per firing alert, on the host named
    // by instance (port stripped) or by address.
    let (code, body) = post(
        hook,
        anonymous.clone(),
        "POST",
        "/alertmanager",
        &auth,
        &good,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    let alerts: Vec<v1::Finding> = all_findings(&mut client)
        .await
        .into_iter()
        .filter(|f| f.kind == "monitor.alert")
        .collect();
    assert_eq!(alerts.len(), 2);
    assert!(
        alerts
            .iter()
            .all(|f| f.host_id == "web-01" && f.severity == v1::Severity::Critical as i32)
    );
    let disk = alerts
        .iter()
        .find(|f| f.attributes["alertname"] == "DiskFull")
        .expect("disk");
    assert_eq!(
        disk.attributes["annotation.summary"],
        "DiskFull on web-01:9100"
    );
    // Alertmanager repeats firing alerts: the repeat folds; an operator
    // certificate is as good as the token.
    let operator = tls::client_config(&TlsMaterial::load(&pki.operator("alice")).expect("alice"))
        .expect("client");
    let operator = {
        let mut c = (*operator).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    };
    let repeat = payload(&[alert("DiskFull", "instance", "web-01:9100")]);
    let (code, body) = post(hook, operator, "POST", "/alertmanager", &[], &repeat).await;
    assert_eq!(code, 200, "{body}");
    let disk = all_findings(&mut client)
        .await
        .into_iter()
        .find(|f| f.kind == "monitor.alert" && f.attributes["alertname"] == "DiskFull")
        .expect("disk");
    assert_eq!(disk.count, 2, "{disk:?}");
    // The collector is unharmed by all of it.
    client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect("collector alive");
    // The action log names who made findings from outside and who was refused:
    // the token caller's and alice's requests, one entry each; the refused
    // callers, one entry per reason.
    let actions: Vec<v1::ActionEntry> = client
        .list_actions(v1::ListActionsRequest::default())
        .await
        .expect("actions")
        .into_inner()
        .actions;
    let made: Vec<&v1::ActionEntry> = actions
        .iter()
        .filter(|a| a.verb == "finding.webhook")
        .collect();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[0].actor, "bearer token");
    assert!(made[0].result.starts_with("2 finding(s)"), "{made:?}");
    assert_eq!(made[0].target, "web-01");
    assert_eq!(made[1].actor, "operator alice");
    let refused: Vec<&v1::ActionEntry> = actions
        .iter()
        .filter(|a| a.verb == "denied.webhook")
        .collect();
    assert_eq!(refused.len(), 2, "one per reason: {refused:?}");
    assert!(
        refused
            .iter()
            .all(|a| a.actor.starts_with("webhook caller at 127.0.0.1")),
        "{refused:?}"
    );
}
