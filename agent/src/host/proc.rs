//! The one `/proc` reader: the pid walk, `stat`, `status` (uid), `exe`, `cmdline`,
//! the boot time, and hashing what a process runs. Sensors and `response/` both
//! read processes through here.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::HostRoot;

/// Longest command line kept, in bytes.
pub const MAX_CMDLINE: usize = 2048;

/// A process as read from `/proc/PID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent.
    pub ppid: u32,
    /// Start time, in clock ticks since boot.
    pub start_ticks: u64,
    /// Short name.
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// Executable path as the kernel shows it (`… (deleted)` when unlinked).
    pub exe: String,
    /// Arguments, space-joined, bounded.
    pub cmdline: String,
    /// Working directory ("" if unreadable).
    pub cwd: String,
    /// The socket inode behind standard input, output and error, for each
    /// that is a socket (a reverse shell's streams are one).
    pub std_sockets: [Option<u64>; 3],
}

/// The socket inode behind each of a process's standard streams (stdin,
/// stdout, stderr) that is a socket.
pub fn std_sockets(root: &HostRoot, pid: u32) -> [Option<u64>; 3] {
    let fd = |n: u8| {
        let link = std::fs::read_link(root.join(format!("/proc/{pid}/fd/{n}"))).ok()?;
        link.to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    };
    [fd(0), fd(1), fd(2)]
}

/// A process's name as people know it. The kernel keeps only the first 15
/// bytes of it (`comm`: `bannin-collecto`); when the name fills those and the
/// executable's file name starts with it, the file name is the whole name.
pub fn full_name(comm: &str, exe: &str) -> String {
    const KEPT: usize = 15;
    if comm.len() == KEPT {
        let file = exe
            .trim_end_matches(" (deleted)")
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if file.len() > KEPT && file.starts_with(comm) {
            return file.to_owned();
        }
    }
    comm.to_owned()
}

/// Parses `/proc/PID/stat`: (comm, ppid, start time). The comm may hold spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<(String, u32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is the state (field 3); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// The real uid from `/proc/PID/status`.
pub fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Reads `/proc/PID` under `root`.
pub fn read_proc(root: &HostRoot, pid: u32) -> Option<ProcInfo> {
    {
        let dir = root.join(format!("/proc/{pid}"));
        let (comm, ppid, start_ticks) =
            parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| parse_uid(&s))
            .unwrap_or(u32::MAX);
        let exe = std::fs::read_link(dir.join("exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut raw = Vec::new();
        if let Ok(f) = std::fs::File::open(dir.join("cmdline")) {
            let _ = f.take(MAX_CMDLINE as u64).read_to_end(&mut raw);
        }
        let cmdline = String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Some(ProcInfo {
            pid,
            ppid,
            start_ticks,
            comm,
            uid,
            exe,
            cmdline,
            cwd: std::fs::read_link(dir.join("cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std_sockets: std_sockets(root, pid),
        })
    }
}

/// SHA-256 (hex) of everything `reader` yields.
pub fn sha256_reader(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(bannin_proto::hex(hasher.finalize()))
}

/// MD5 and SHA-256 of everything `reader` yields, in one pass: SHA-256 for
/// baselines and IOC lists, the package database's digest for package checks.
pub fn digests_reader(mut reader: impl Read) -> std::io::Result<super::packages::FileDigest> {
    use md5::Md5;
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
    }
    Ok(super::packages::FileDigest {
        md5: md5.finalize().into(),
        sha256: sha.finalize().into(),
    })
}

/// The pids under `/proc`, in directory order (threads are not listed there).
pub fn pids(root: &HostRoot) -> impl Iterator<Item = u32> + use<> {
    std::fs::read_dir(root.join("/proc"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The host's boot time, Unix seconds (`btime` in `/proc/stat`); 0 when unknown.
pub fn boot_time(root: &HostRoot) -> i64 {
    std::fs::read_to_string(root.join("/proc/stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

/// The real uid of `pid` (from `/proc/PID/status`).
pub fn uid_of(root: &HostRoot, pid: u32) -> Option<u32> {
    std::fs::read_to_string(root.join(format!("/proc/{pid}/status")))
        .ok()
        .and_then(|s| parse_uid(&s))
}

/// Command names of the package managers whose work is a package transaction.
pub const PACKAGE_MANAGERS: &[&str] = &[
    "dpkg",
    "apt",
    "apt-get",
    "aptitude",
    "unattended-upgr",
    "rpm",
    "dnf",
    "yum",
    "microdnf",
    "zypper",
];

/// The package manager `pid` is or runs under: the first of its ancestors (up
/// to 12 generations) whose command name is one of [`PACKAGE_MANAGERS`].
pub fn package_manager_of(pid: u32) -> Option<String> {
    let mut pid = pid;
    for _ in 0..12 {
        if pid <= 1 {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `PID (COMM) STATE PPID …`: the name may hold spaces and parentheses.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?;
        if PACKAGE_MANAGERS.contains(&comm) {
            return Some(comm.to_owned());
        }
        pid = stat
            .get(close + 1..)?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cut_by_the_kernel_are_made_whole_from_the_executable() {
        let exe = "/usr/bin/bannin-collector";
        assert_eq!(full_name("bannin-collecto", exe), "bannin-collector");
        assert_eq!(
            full_name("bannin-collecto", "/usr/bin/bannin-collector (deleted)"),
            "bannin-collector"
        );
        // A name that is not cut, or an executable that is not its source, stays.
        assert_eq!(full_name("sshd", "/usr/sbin/sshd"), "sshd");
        assert_eq!(full_name("kworker/0:1-eve", ""), "kworker/0:1-eve");
        assert_eq!(
            full_name("python3-script0", "/usr/bin/python3.11"),
            "python3-script0"
        );
    }

    #[test]
    fn a_process_under_a_package_manager_is_known_as_such() {
        // This test runs under cargo, not dpkg.
        assert_eq!(package_manager_of(std::process::id()), None);
        assert_eq!(package_manager_of(0), None);
        // A child of a process named `dpkg` is under it.
        let dir = tempfile::tempdir().expect("tempdir");
        let dpkg = dir.path().join("dpkg");
        std::os::unix::fs::symlink("/bin/sh", &dpkg).expect("symlink");
        let mut child = std::process::Command::new(&dpkg)
            .arg("-c")
            .arg("sleep 5 & wait")
            .spawn()
            .expect("dpkg-named shell");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = None;
        while found.is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let children = std::fs::read_to_string(format!(
                "/proc/{}/task/{}/children",
                child.id(),
                child.id()
            ))
            .unwrap_or_default();
            if let Some(sleep) = children.split_whitespace().next() {
                found = sleep.parse::<u32>().ok().map(package_manager_of);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(Some("dpkg".to_owned())));
    }
}
