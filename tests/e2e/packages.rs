//! The Debian and rpm packages: built from this build's binaries by
//! deploy/debian/build.sh and deploy/rpm/build.sh, then inspected — files,
//! modes, owners, units, conffiles, maintainer scripts, stripped binaries whose
//! debug information is in the -dbgsym / -debuginfo package under their build
//! id. The rpms are also installed into a `--root` directory. (.ci/run also
//! installs, upgrades over a changed config, and purges the agent .deb, and
//! builds the default packages — the `dist` profile — and bounds their size.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// The GNU build id of an ELF file.
fn build_id(elf: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(elf)
        .output()
        .expect("readelf");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("{} has no build id", elf.display()))
}

/// Asserts `elf` has no symbol table and no debug sections, and that
/// `debug_files` (paths in the debug package) hold its debug information
/// under its build id.
fn assert_stripped_with_debug_elsewhere(elf: &Path, debug_files: &[String]) {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(elf)
        .output()
        .expect("readelf");
    let sections = String::from_utf8_lossy(&out.stdout);
    for section in [".symtab", ".debug_info", ".debug_line"] {
        assert!(
            !sections.contains(section),
            "{} ships {section}: not stripped",
            elf.display()
        );
    }
    let id = build_id(elf);
    let expected = format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]);
    assert!(
        debug_files.iter().any(|f| f == &expected),
        "{expected} (the debug information of {}) missing from {debug_files:?}",
        elf.display()
    );
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a package build script with the debug build's binaries; returns the
/// packages it printed.
fn build_packages(script: &str, out: &Path) -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Build what is packaged (a no-op when fresh), rather than rely on another test
    // having built the binaries that build.sh --no-build picks up.
    for name in ["bannin-agent", "bannin-collector", "bannin"] {
        bannin_tests::bin(name);
    }
    run(Command::new("bash")
        .arg(repo.join(script))
        .args(["--profile", "debug", "--no-build", "--fast", "--out"])
        .arg(out))
    .lines()
    .map(PathBuf::from)
    .collect()
}

fn named<'a>(packages: &'a [PathBuf], prefix: &str) -> &'a Path {
    packages
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix}… among {packages:?}"))
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (mode string, owner, path) of each entry.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    dpkg_deb(&["-c"], deb)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.last()?.trim_start_matches('.').to_string(),
            ))
        })
        .collect()
}

fn entry<'a>(list: &'a [(String, String, String)], path: &str) -> &'a (String, String, String) {
    list.iter()
        .find(|e| e.2 == path)
        .unwrap_or_else(|| panic!("{path} not in the package: {list:?}"))
}

#[test]
fn debian_packages_carry_their_files_modes_units_and_conffiles() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().expect("tempdir");
    let debs = build_packages("deploy/debian/build.sh", out.path());
    assert_eq!(debs.len(), 4, "{debs:?}");
    let agent = named(&debs, "bannin-agent_");
    let collector = named(&debs, "bannin-collector_");

    // Stripped binaries; their debug information in the -dbgsym packages.
    let unpacked = tempfile::tempdir().expect("tempdir");
    for (deb, dbgsym, bins) in [
        (agent, "bannin-agent-dbgsym_", &["usr/bin/bannin-agent"][..]),
        (
            collector,
            "bannin-collector-dbgsym_",
            &["usr/bin/bannin-collector", "usr/bin/bannin"][..],
        ),
    ] {
        run(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(unpacked.path()));
        let dbgsym = named(&debs, dbgsym);
        let debug_files: Vec<String> = contents(dbgsym).into_iter().map(|e| e.2).collect();
        let fields = dpkg_deb(&["-f"], dbgsym);
        for bin in bins {
            let elf = unpacked.path().join(bin);
            assert_stripped_with_debug_elsewhere(&elf, &debug_files);
            assert!(fields.contains(&build_id(&elf)), "Build-Ids: {fields}");
        }
        assert!(fields.contains("Section: debug"), "{fields}");
    }
    assert!(dpkg_deb(&["-f"], agent).contains("Installed-Size: "));

    let files = contents(agent);
    assert_eq!(entry(&files, "/usr/bin/bannin-agent").0, "-rwxr-xr-x");
    let config = entry(&files, "/etc/bannin/agent.toml");
    assert_eq!(
        (config.0.as_str(), config.1.as_str()),
        ("-rw-------", "root/root"),
        "the config holds where the agent sends what it sees"
    );
    assert_eq!(
        entry(&files, "/lib/systemd/system/bannin-agent.service").0,
        "-rw-r--r--"
    );
    let fields = dpkg_deb(&["-f"], agent);
    assert!(
        fields.contains("Package: bannin-agent") && fields.contains("nftables"),
        "{fields}"
    );

    // Control files: the config is a conffile, the scripts are valid sh.
    let control = tempfile::tempdir().expect("tempdir");
    let ok = Command::new("dpkg-deb")
        .arg("-e")
        .arg(agent)
        .arg(control.path())
        .status()
        .expect("dpkg-deb -e");
    assert!(ok.success());
    assert_eq!(
        std::fs::read_to_string(control.path().join("conffiles"))
            .expect("conffiles")
            .trim(),
        "/etc/bannin/agent.toml"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let p = control.path().join(script);
        let syntax = Command::new("sh")
            .arg("-n")
            .arg(&p)
            .status()
            .expect("sh -n");
        assert!(syntax.success(), "{script} is not valid sh");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).expect(script).permissions().mode() & 0o777,
            0o755
        );
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
    assert!(
        postinst
            .contains("install -d -m 0700 -o root -g root /var/lib/bannin-agent /etc/bannin/agent"),
        "{postinst}"
    );

    // The unit: only the capabilities the agent needs, a budget, a read-only system.
    let unit =
        std::fs::read_to_string(repo.join("deploy/systemd/bannin-agent.service")).expect("unit");
    for line in [
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_NET_ADMIN CAP_SYS_ADMIN CAP_NET_RAW",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK AF_PACKET",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryMax=",
        "CPUQuota=",
        "ConditionPathExists=/etc/bannin/agent/agent.pem",
        "ReadWritePaths=/var/lib/bannin-agent /etc/bannin/agent",
        "ProtectKernelTunables=yes",
        "RestrictSUIDSGID=yes",
        "UMask=0077",
        "LockPersonality=yes",
        "SystemCallFilter=~@clock @cpu-emulation @debug @module @mount @obsolete @raw-io @reboot @swap",
        "SystemCallErrorNumber=EPERM",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "{line} missing from the agent's unit"
        );
    }

    let files = contents(collector);
    for bin in ["/usr/bin/bannin-collector", "/usr/bin/bannin"] {
        assert_eq!(entry(&files, bin).0, "-rwxr-xr-x");
    }
    assert_eq!(entry(&files, "/etc/bannin/collector.toml").0, "-rw-r-----");
    let control = tempfile::tempdir().expect("tempdir");
    assert!(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(collector)
            .arg(control.path())
            .status()
            .expect("-e")
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(control.path().join("conffiles"))
            .expect("conffiles")
            .trim(),
        "/etc/bannin/collector.toml"
    );
    let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
    assert!(
        postinst.contains("adduser --system")
            && postinst.contains("install -d -m 0700 -o bannin -g bannin /var/lib/bannin")
    );
    let unit = std::fs::read_to_string(repo.join("deploy/systemd/bannin-collector.service"))
        .expect("unit");
    assert!(unit.lines().any(|l| l == "User=bannin"));
    assert!(
        unit.lines().any(|l| l == "CapabilityBoundingSet="),
        "the collector needs no capability"
    );
}

/// The rpm packages: metadata, file list, modes, configs and scriptlets read
/// with `rpm -qp`, then installed into a `--root` directory (without their
/// scriptlets, which would run as root on this machine) and the installed
/// paths' modes and owners checked. Not tested here: a real RHEL-family host
/// (systemd's handling of the scriptlets, SELinux labels).
#[test]
fn rpm_packages_carry_their_files_modes_units_and_configs() {
    use std::os::unix::fs::MetadataExt;
    if !bannin_tests::runnable(&[bannin_tests::Need::Program("rpmbuild", "rpm")]) {
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let rpms = build_packages("deploy/rpm/build.sh", out.path());
    assert_eq!(rpms.len(), 4, "{rpms:?}");
    let agent = named(&rpms, "bannin-agent-0");
    let collector = named(&rpms, "bannin-collector-0");
    let qp = |args: &[&str], rpm: &Path| run(Command::new("rpm").arg("-qp").args(args).arg(rpm));

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        qp(&["--qf", "%{NAME} %{VERSION} %{LICENSE}"], agent),
        format!("bannin-agent {version} Apache-2.0")
    );
    let requires = qp(&["--requires"], agent);
    assert!(requires.lines().any(|l| l == "nftables"), "{requires}");
    assert!(qp(&["--recommends"], agent).lines().any(|l| l == "libpcap"));
    // Modes and owners as packaged (rpm -qplv: mode, links, owner, group, size, date, path).
    let listing = |rpm: &Path| -> Vec<(String, String, String, String)> {
        qp(&["-lv"], rpm)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.to_string(),
                    f.get(3)?.to_string(),
                    f.last()?.to_string(),
                ))
            })
            .collect()
    };
    let expect = |list: &[(String, String, String, String)],
                  path: &str,
                  mode: &str,
                  owner: &str,
                  group: &str| {
        let e = list
            .iter()
            .find(|e| e.3 == path)
            .unwrap_or_else(|| panic!("{path} not in the package: {list:?}"));
        assert_eq!(
            (e.0.as_str(), e.1.as_str(), e.2.as_str()),
            (mode, owner, group),
            "{path}"
        );
    };
    let files = listing(agent);
    expect(
        &files,
        "/usr/bin/bannin-agent",
        "-rwxr-xr-x",
        "root",
        "root",
    );
    expect(
        &files,
        "/etc/bannin/agent.toml",
        "-rw-------",
        "root",
        "root",
    );
    expect(&files, "/etc/bannin/agent", "drwx------", "root", "root");
    expect(
        &files,
        "/var/lib/bannin-agent",
        "drwx------",
        "root",
        "root",
    );
    expect(
        &files,
        "/usr/lib/systemd/system/bannin-agent.service",
        "-rw-r--r--",
        "root",
        "root",
    );
    let files = listing(collector);
    expect(
        &files,
        "/etc/bannin/collector.toml",
        "-rw-r-----",
        "root",
        "bannin",
    );
    expect(&files, "/etc/bannin/pki", "drwxr-x---", "root", "bannin");
    expect(&files, "/var/lib/bannin", "drwx------", "bannin", "bannin");
    expect(&files, "/usr/bin/bannin", "-rwxr-xr-x", "root", "root");
    // Configs are kept across upgrades (%config(noreplace)).
    assert_eq!(qp(&["-c"], agent).trim(), "/etc/bannin/agent.toml");
    assert_eq!(qp(&["-c"], collector).trim(), "/etc/bannin/collector.toml");
    let scripts = qp(&["--scripts"], collector);
    assert!(
        scripts.contains("useradd -r -g bannin") && scripts.contains("systemctl enable"),
        "{scripts}"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).expect("etc");
    // Owners are resolved from the root's own account files.
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbannin:x:990:990::/var/lib/bannin:/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(r.join("etc/group"), "root:x:0:\nbannin:x:990:\n").expect("group");
    run(Command::new("rpm").arg("--root").arg(r).arg("--initdb"));
    let debuginfo = [
        named(&rpms, "bannin-agent-debuginfo"),
        named(&rpms, "bannin-collector-debuginfo"),
    ];
    run(Command::new("rpm")
        .arg("--root")
        .arg(r)
        .args(["-i", "--nodeps", "--noscripts"])
        .arg(agent)
        .arg(collector)
        .args(debuginfo));
    let installed =
        run(Command::new("rpm")
            .arg("--root")
            .arg(r)
            .args(["-qa", "--qf", "%{NAME}\n"]));
    assert_eq!(installed.lines().count(), 4, "{installed}");
    let stat = |p: &str| std::fs::metadata(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for (path, mode, uid, gid) in [
        ("usr/bin/bannin-agent", 0o755, 0, 0),
        ("etc/bannin/agent.toml", 0o600, 0, 0),
        ("etc/bannin/agent", 0o700, 0, 0),
        ("var/lib/bannin-agent", 0o700, 0, 0),
        ("etc/bannin/collector.toml", 0o640, 0, 990),
        ("etc/bannin/pki", 0o750, 0, 990),
        ("var/lib/bannin", 0o700, 990, 990),
    ] {
        let m = stat(path);
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (mode, uid, gid),
            "{path}: mode, uid, gid"
        );
    }
    // The hardened units are the .deb's, byte for byte.
    assert_eq!(
        std::fs::read(r.join("usr/lib/systemd/system/bannin-agent.service")).expect("unit"),
        std::fs::read(repo.join("deploy/systemd/bannin-agent.service")).expect("unit")
    );
    let debug_files: Vec<String> = debuginfo
        .iter()
        .flat_map(|p| {
            qp(&["-l"], p)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    for bin in [
        "usr/bin/bannin-agent",
        "usr/bin/bannin-collector",
        "usr/bin/bannin",
    ] {
        let elf = r.join(bin);
        assert_stripped_with_debug_elsewhere(&elf, &debug_files);
        let id = build_id(&elf);
        assert!(
            r.join(format!(
                "usr/lib/debug/.build-id/{}/{}.debug",
                &id[..2],
                &id[2..]
            ))
            .is_file(),
            "{bin}'s debug information is installed by its -debuginfo package"
        );
    }
}
