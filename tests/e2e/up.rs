//! `bannin up`, the README's first command: from a fresh data directory it runs a
//! collector and an agent for this machine, an indicator provoked here reaches the
//! operator through the CLI, `--console` serves the web console's login, and Ctrl-C
//! stops all of it cleanly, logging no error.

use std::process::Command;
use std::time::Duration;

use bannin_tests::{Proc, bannin_json, bin, eventually, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn bannin_up_from_a_fresh_directory_reports_a_finding_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("bannin-data");
    let port = free_port();
    let mut command = Command::new(bin("bannin"));
    command
        .arg("up")
        .arg("--data")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--console");
    let mut up = Proc::spawn(command, dir.path().join("up.log"));
    let operator = data.join("operator.toml");

    // Serving, and the odd-name sensor has made its first (quiet) sweep: what is
    // created from now on is new.
    let host = eventually(Duration::from_secs(120), "bannin up serving", || {
        let operator = operator.clone();
        async move {
            if !operator.exists() {
                return None;
            }
            let (ok, hosts, _) = bannin_json(&operator, &["hosts"]);
            let host = hosts.as_array()?.first()?.clone();
            let swept = host["sensors"]
                .as_array()?
                .iter()
                // Degraded is swept too: a normal user's agent cannot read
                // every directory (it says which), but sees /tmp.
                .any(|s| {
                    s["name"] == "file_odd_name" && (s["state"] == "ok" || s["state"] == "degraded")
                });
            (ok && host["online"] == true && swept).then_some(host)
        }
    })
    .await;
    let host_id = host["host_id"].as_str().expect("host id").to_owned();
    assert!(up.running(), "{}", up.log_text());

    // A name with a leading space, in /tmp: `file.odd_name`, seen through the CLI.
    let name = format!(" bannin-up-test-{}", std::process::id());
    let odd = std::path::Path::new("/tmp").join(&name);
    std::fs::write(&odd, b"x").expect("odd file");
    let finding = eventually(
        Duration::from_secs(60),
        "the finding in `bannin findings`",
        || {
            let operator = operator.clone();
            let name = name.clone();
            async move {
                let (_, findings, _) = bannin_json(&operator, &["findings"]);
                findings.as_array()?.iter().find_map(|f| {
                    let path = f["attributes"]["path"].as_str()?;
                    (f["kind"] == "file.odd_name" && path.ends_with(&name)).then(|| f.clone())
                })
            }
        },
    )
    .await;
    let _ = std::fs::remove_file(&odd);
    assert_eq!(finding["host_id"], host_id.as_str(), "{finding}");

    // The data directory sits under /tmp, which the agent watches: a snapshot's
    // bundle (in the agent's spool, then in the collector's evidence) is
    // Bannin's own, never a `file.archive` — while an archive beside it is one.
    let (ok, snapshot, err) = bannin_json(
        &operator,
        &[
            "snapshot",
            &host_id,
            "--reason",
            "own data is not a finding",
        ],
    );
    assert!(ok && snapshot["state"] == "succeeded", "{snapshot} {err}");
    let beside = dir.path().join("beside.tar.zst");
    std::fs::write(&beside, b"\x28\xb5\x2f\xfd\0\0\0\0").expect("an archive beside");
    let beside_text = beside.display().to_string();
    let archives = eventually(
        Duration::from_secs(60),
        "the archive beside it reported",
        || {
            let operator = operator.clone();
            let beside_text = beside_text.clone();
            async move {
                let (_, findings, _) = bannin_json(&operator, &["findings"]);
                let archives: Vec<String> = findings
                    .as_array()?
                    .iter()
                    .filter(|f| f["kind"] == "file.archive")
                    .filter_map(|f| f["attributes"]["path"].as_str().map(str::to_owned))
                    .collect();
                archives.contains(&beside_text).then_some(archives)
            }
        },
    )
    .await;
    let data_text = std::fs::canonicalize(&data)
        .expect("data")
        .display()
        .to_string();
    assert!(
        archives.iter().all(|p| !p.starts_with(&data_text)),
        "Bannin's own data is not a finding: {archives:?}"
    );

    // `--console`: the web console's one-time login link is printed and works once.
    let log = up.log_text();
    let url = log
        .split_whitespace()
        .find(|w| w.contains("/login?token="))
        .unwrap_or_else(|| panic!("no console URL printed:\n{log}"))
        .to_owned();
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_at(rest.find('/').expect("path"));
    for want in ["303", "403"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("console");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        assert!(
            response.starts_with(&format!("HTTP/1.1 {want}")),
            "login {want}: {response}"
        );
        if want == "303" {
            assert!(
                response.contains("set-cookie: bannin_console="),
                "{response}"
            );
        }
    }

    // Ctrl-C: both halves stop, the process exits 0, and no ERROR is logged.
    let status = Command::new("kill")
        .args(["-INT", &up.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = up.wait_exit(Duration::from_secs(60));
    let log = up.log_text();
    assert_eq!(code, Some(0), "exit code; log:\n{log}");
    assert!(log.contains("Stopped cleanly."), "{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "an orderly stop logs no error: {errors:#?}"
    );
}
