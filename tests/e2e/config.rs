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
