//! The Debian packages: built from this build's binaries by
//! deploy/debian/build.sh, then inspected — files, modes, owners, units,
//! conffiles, maintainer scripts. (.ci/run also installs, upgrades over a
//! changed config, and purges the agent package.)

use std::path::Path;
use std::process::Command;

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
    // Build what is packaged (a no-op when fresh), rather than rely on another test
    // having built the binaries that build.sh --no-build picks up.
    for name in ["bannin-agent", "bannin-collector", "bannin"] {
        bannin_tests::bin(name);
    }
    let built = Command::new("bash")
        .arg(repo.join("deploy/debian/build.sh"))
        .args(["--profile", "debug", "--no-build", "--fast", "--out"])
        .arg(out.path())
        .output()
        .expect("build.sh");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let debs: Vec<_> = String::from_utf8_lossy(&built.stdout)
        .lines()
        .map(std::path::PathBuf::from)
        .collect();
    assert_eq!(debs.len(), 2, "{debs:?}");
    let agent = debs
        .iter()
        .find(|d| d.to_string_lossy().contains("bannin-agent_"))
        .expect("agent deb");
    let collector = debs
        .iter()
        .find(|d| d.to_string_lossy().contains("bannin-collector_"))
        .expect("collector deb");

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
