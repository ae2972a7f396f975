//! Broken configuration: every problem reported at once, exit code 64.

use std::process::Command;

use bannin_tests::bin;

#[test]
fn agent_reports_every_config_error_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "host_id = \"no/slashes\"\nsurprise = true\n[collector]\naddress = \"nocolon\"\n[link]\nheartbeat_secs = 0\n",
    )
    .expect("write");
    let out = Command::new(bin("bannin-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "surprise",
        "host_id",
        "collector.address",
        "[tls]",
        "[spool]",
        "heartbeat_secs",
        // Written 0644: readable by other users.
        "must not be readable by other users",
    ] {
        assert!(err.contains(needle), "{needle} not reported in: {err}");
    }
}

#[test]
fn collector_reports_every_config_error_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "listen = \"here\"\nmax_message_bytes = 5\n[hosts]\nsilent_after_heartbeats = 0\nextra = 1\n").expect("write");
    let out = Command::new(bin("bannin-collector"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "hosts.extra",
        "listen",
        "data_dir",
        "[tls]",
        "max_message_bytes",
        "silent_after_heartbeats",
    ] {
        assert!(err.contains(needle), "{needle} not reported in: {err}");
    }
}

#[test]
fn unreadable_config_file_is_a_config_error() {
    let out = Command::new(bin("bannin-agent"))
        .args(["run", "--config", "/nonexistent/agent.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn world_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = bannin_tests::TestPki::new(dir.path());
    let tls = pki.agent("perm-host");
    std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = bannin_tests::agent_config(
        dir.path(),
        &tls,
        "127.0.0.1:1".parse().expect("addr"),
        &Default::default(),
    );
    let out = Command::new(bin("bannin-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by other users"));
}

#[test]
fn pki_init_can_issue_the_first_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let out = Command::new(bin("bannin-collector"))
        .args(["pki", "init", "--admin", "boss", "--dir"])
        .arg(&pki)
        .output()
        .expect("pki init");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("bootstrap_admins = [\"boss\"]"),
        "tells the operator how to make boss admin: {stdout}"
    );
    let key = pki.join("operators/boss.key");
    assert!(pki.join("operators/boss.pem").is_file() && key.is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A bad name changes nothing: no CA is created.
    let again = dir.path().join("other");
    let out = Command::new(bin("bannin-collector"))
        .args(["pki", "init", "--admin", "bad name", "--dir"])
        .arg(&again)
        .output()
        .expect("pki init");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin"));
    assert!(!again.exists());
}

/// `bannin-agent check` on a host with no collector: the first run learns,
/// the next reports what changed, as text or JSON, with an exit status scripts use.
#[test]
fn standalone_check_learns_then_reports_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::create_dir_all(root.join("srv")).expect("srv");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    let config = dir.path().join("check.toml");
    let mut text = format!("root = {:?}\n", root.display().to_string());
    for off in [
        "net_listener",
        "net_connection",
        "process",
        "system",
        "hardware",
        "net_interface",
        "logs",
        "file_integrity",
        "resources",
    ] {
        text.push_str(&format!("[sensors.{off}]\nenabled = false\n"));
    }
    text.push_str("[sensors.file_odd_name]\npaths = [\"/srv\"]\n");
    std::fs::write(&config, text).expect("config");
    let state = dir.path().join("state");
    let run = |json: bool| {
        let mut c = Command::new(bin("bannin-agent"));
        c.args(["check", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state);
        if json {
            c.arg("--json");
        }
        c.output().expect("check")
    };
    let first = run(false);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("First run") && stdout.contains("No findings"),
        "{stdout}"
    );

    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(root.join("srv/ payload"), b"x").expect("odd");
    let second = run(true);
    assert_eq!(
        second.status.code(),
        Some(1),
        "findings make the exit status 1"
    );
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    assert_eq!(report["first_run"], false);
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(
        findings[0]["kind"], "account.uid0",
        "most severe first: {report}"
    );
    assert_eq!(findings[0]["severity"], "critical");
    assert_eq!(findings[0]["attributes"]["user"], "toor");
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "file.odd_name" && f["attributes"]["path"] == "/srv/ payload"),
        "{report}"
    );
    assert!(
        report["sensors"]
            .as_array()
            .expect("sensors")
            .iter()
            .any(|s| s["name"] == "process" && s["state"] == "disabled")
    );
    // A broken config: exit 64, nothing run.
    std::fs::write(&config, "[sensors.accounts]\nenabled = \"yes\"\n").expect("config");
    assert_eq!(run(false).status.code(), Some(64));
}
