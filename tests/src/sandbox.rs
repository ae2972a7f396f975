//! The shipped agent unit's process restrictions, applied to a test's agent
//! without systemd: the capability bounding set (`CapabilityBoundingSet=`),
//! `NoNewPrivileges=`, the syscall deny list (`SystemCallFilter=~@group …`
//! with `SystemCallErrorNumber=`) and `LimitMEMLOCK=`. Read from the unit file
//! itself, so a change to the unit is what the test runs under.
//!
//! Not emulated (mount namespaces and cgroups need systemd): `ProtectSystem=`,
//! `ProtectKernelTunables=` and the other read-only views, `MemoryMax=`,
//! `CPUQuota=`. The eBPF probes write none of those paths.
//!
//! Syscall groups are expanded by `systemd-analyze syscall-filter` (systemd's
//! own lists, as the host's systemd would apply them) and named by the host's
//! `asm/unistd_64.h`. x86-64 only, as the agent's probes are.

#![allow(unsafe_code)]

use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Capability names and numbers (linux/capability.h).
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `AUDIT_ARCH_X86_64`: the architecture a seccomp filter sees.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// What a unit's `[Service]` section restricts, ready to apply to a command.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Capability numbers kept in the bounding set.
    pub keep_caps: BTreeSet<u32>,
    /// `NoNewPrivileges=yes`.
    pub no_new_privs: bool,
    /// Syscall names that fail with `errno` (as the unit names them, groups
    /// expanded).
    pub denied: BTreeSet<String>,
    /// What a denied syscall returns (`SystemCallErrorNumber=`).
    pub errno: i32,
    /// `LimitMEMLOCK=` in bytes, if set (soft and hard).
    pub memlock: Option<u64>,
}

impl Sandbox {
    /// The restrictions of the unit file at `unit`.
    pub fn from_unit(unit: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(unit).with_context(|| format!("reading {}", unit.display()))?;
        let mut sandbox = Self {
            errno: libc::EPERM,
            ..Self::default()
        };
        let mut caps_set = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "CapabilityBoundingSet" => {
                    caps_set = true;
                    for name in value.split_whitespace() {
                        let n = CAPS
                            .iter()
                            .position(|c| *c == name)
                            .with_context(|| format!("unknown capability {name}"))?;
                        sandbox.keep_caps.insert(u32::try_from(n)?);
                    }
                }
                "NoNewPrivileges" => sandbox.no_new_privs = value == "yes",
                "SystemCallFilter" => {
                    let Some(list) = value.strip_prefix('~') else {
                        bail!("only deny lists (~…) are emulated: {value}");
                    };
                    for item in list.split_whitespace() {
                        sandbox.denied.extend(expand(item)?);
                    }
                }
                "SystemCallErrorNumber" => {
                    sandbox.errno = match value {
                        "EPERM" => libc::EPERM,
                        "EACCES" => libc::EACCES,
                        "ENOSYS" => libc::ENOSYS,
                        other => bail!("SystemCallErrorNumber={other} is not emulated"),
                    };
                }
                "LimitMEMLOCK" => sandbox.memlock = Some(parse_size(value)?),
                _ => {}
            }
        }
        if !caps_set {
            bail!("{} sets no CapabilityBoundingSet", unit.display());
        }
        Ok(sandbox)
    }

    /// The same, with `syscalls` denied too (a control: what the unit would
    /// do if it denied them).
    pub fn deny(mut self, syscalls: &[&str]) -> Self {
        self.denied.extend(syscalls.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Applies the restrictions to `command` between its fork and its exec.
    pub fn apply(&self, command: &mut Command) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let numbers = syscall_numbers()?;
        let denied: Vec<u32> = self
            .denied
            .iter()
            .filter_map(|name| numbers.get(name.as_str()).copied())
            .collect();
        let filter = deny_filter(&denied, self.errno);
        let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?
            .trim()
            .parse()?;
        let drop: Vec<u32> = (0..=last_cap)
            .filter(|c| !self.keep_caps.contains(c))
            .collect();
        let no_new_privs = self.no_new_privs;
        // Raising the hard limit needs CAP_SYS_RESOURCE, which systemd has and
        // a test may not: never above the limit the test runs with.
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut now) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let memlock = self.memlock.map(|bytes| bytes.min(now.rlim_max));
        // SAFETY: between fork and exec the closure only makes system calls
        // (prctl, setrlimit) on data prepared before the fork; it allocates
        // nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                if let Some(bytes) = memlock {
                    let limit = libc::rlimit {
                        rlim_cur: bytes,
                        rlim_max: bytes,
                    };
                    if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for cap in &drop {
                    if libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(*cap), 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let program = libc::sock_fprog {
                    len: filter.len() as libc::c_ushort,
                    filter: filter.as_ptr().cast_mut(),
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }
}

/// A seccomp program: on x86-64, each syscall in `denied` fails with `errno`;
/// everything else is allowed.
fn deny_filter(denied: &[u32], errno: i32) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // seccomp_data: nr at 0, arch at 4.
    let mut program = vec![
        stmt(ld, 4),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0),
    ];
    let error = libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA);
    for nr in denied {
        program.push(jeq(*nr, 0, 1));
        program.push(stmt(ret, error));
    }
    program.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    program
}

/// A `SystemCallFilter=` item: a syscall, or a `@group` as this host's
/// systemd defines it (groups may hold groups).
fn expand(item: &str) -> anyhow::Result<BTreeSet<String>> {
    if !item.starts_with('@') {
        return Ok(BTreeSet::from([item.to_owned()]));
    }
    let output = Command::new("systemd-analyze")
        .args(["syscall-filter", item])
        .output()
        .context("running systemd-analyze (the systemd package)")?;
    if !output.status.success() {
        bail!(
            "systemd-analyze syscall-filter {item}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut names = BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines().skip(1) {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.starts_with('@') {
            names.extend(expand(name)?);
        } else {
            names.insert(name.to_owned());
        }
    }
    if names.is_empty() {
        bail!("systemd-analyze named no syscall in {item}");
    }
    Ok(names)
}

/// Syscall names and numbers from the host's kernel headers.
fn syscall_numbers() -> anyhow::Result<std::collections::HashMap<String, u32>> {
    const HEADER: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
    let text = std::fs::read_to_string(HEADER).with_context(|| format!("reading {HEADER}"))?;
    let numbers: std::collections::HashMap<String, u32> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("#define __NR_")?;
            let (name, nr) = rest.split_once(char::is_whitespace)?;
            Some((name.to_owned(), nr.trim().parse().ok()?))
        })
        .collect();
    if !numbers.contains_key("bpf") {
        bail!("{HEADER} names no bpf syscall");
    }
    Ok(numbers)
}

/// `LimitMEMLOCK=` values: bytes with an optional K, M or G (1024-based), or
/// `infinity`.
fn parse_size(value: &str) -> anyhow::Result<u64> {
    if value == "infinity" {
        return Ok(libc::RLIM_INFINITY);
    }
    let (digits, unit) = match value.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&value[..at], c),
        _ => (value, 'B'),
    };
    let n: u64 = digits.parse().with_context(|| format!("size {value}"))?;
    let shift = match unit.to_ascii_uppercase() {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        other => bail!("size unit {other}"),
    };
    Ok(n << shift)
}
