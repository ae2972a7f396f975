//! Who wrote the account files and SSH keys: the kernel's word, handed from
//! the fanotify readers that hear it to the accounts sensor.
//!
//! - The integrity sensor hands over the account files (`/etc/passwd`,
//!   `shadow`, `group`, `gshadow`, `subuid`, `subgid`, their `-` backups and
//!   the tools' lock files) that an *account tool* changed — `useradd`,
//!   `usermod`, `passwd`… run from the system's own directories — instead of
//!   raising them as `file.modified`: one `useradd` is one account finding
//!   that lists the files it changed, as the package manager's changes are one
//!   `system.package_change`. The same files changed by anything else stay
//!   `file.modified`.
//! - The file-access sensor's reader hands over every write to an
//!   `authorized_keys` file the moment it hears it, so `account.ssh_key_added`
//!   names the process that wrote the key.
//!
//! **Trust.** Only the agent's own reader threads write here; what they write
//! is what the kernel said (pid) and `/proc` showed of that pid at once. The
//! reader of this queue (the accounts sensor) judges the files themselves,
//! never what a writer claims: a record only *names* the writer of a change
//! the accounts sensor found on its own. A tool is recognised by its
//! executable's path (a binary in `/usr/sbin`, `/usr/bin`, `/sbin` or `/bin`),
//! not by its name, which any process can set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most writes queued between two sweeps of the accounts sensor; past it
/// they are counted.
const MAX_QUEUED: usize = 10_000;

/// The programs that edit the account files for a living.
pub const ACCOUNT_TOOLS: &[&str] = &[
    "useradd",
    "usermod",
    "userdel",
    "groupadd",
    "groupmod",
    "groupdel",
    "gpasswd",
    "passwd",
    "chpasswd",
    "chgpasswd",
    "chage",
    "chsh",
    "chfn",
    "newusers",
    "vipw",
    "vigr",
    "pwconv",
    "pwunconv",
    "grpconv",
    "grpunconv",
];

/// The account databases, by name in `/etc`.
const ACCOUNT_FILES: &[&str] = &["passwd", "shadow", "group", "gshadow", "subuid", "subgid"];

/// The process that wrote a file, as the kernel named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    /// Its pid.
    pub pid: u32,
    /// Its executable ("" when it was already gone).
    pub exe: String,
    /// Its command name.
    pub comm: String,
    /// Its real uid ("" when unknown).
    pub uid: String,
}

impl Writer {
    /// The account tool this writer is (`useradd`…), judged by its
    /// executable's path.
    pub fn account_tool(&self) -> Option<&str> {
        let exe = Path::new(&self.exe);
        let dir = exe.parent()?.to_str()?;
        let name = exe.file_name()?.to_str()?;
        (matches!(dir, "/usr/sbin" | "/usr/bin" | "/sbin" | "/bin")
            && ACCOUNT_TOOLS.contains(&name))
        .then_some(name)
    }

    /// "useradd (pid 42)", for summaries.
    pub fn describe(&self) -> String {
        let name = if self.comm.is_empty() {
            "?"
        } else {
            &self.comm
        };
        format!("{name} (pid {})", self.pid)
    }
}

/// One write: a host path and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Host path.
    pub path: PathBuf,
    /// The writer.
    pub writer: Writer,
}

#[derive(Debug, Default)]
struct Inner {
    writes: Vec<Write>,
    dropped: u64,
    key_files: BTreeSet<PathBuf>,
    /// A reader attributes account-file writes (real-time integrity over `/etc`).
    accounts_attributed: bool,
    /// A reader attributes key-file writes (file access over the `.ssh` directories).
    keys_attributed: bool,
}

/// The queue between the readers and the accounts sensor (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct AccountWriters {
    inner: Arc<Mutex<Inner>>,
    wake: Arc<tokio::sync::Notify>,
}

/// What [`AccountWriters::take`] returns.
#[derive(Debug, Default)]
pub struct Taken {
    /// Writes queued since the last take, oldest first.
    pub writes: Vec<Write>,
    /// Writes that did not fit.
    pub dropped: u64,
}

impl AccountWriters {
    /// Whether `host` is one of the account databases (or a backup or lock
    /// file the account tools write beside them).
    pub fn is_account_file(host: &Path) -> bool {
        if host.parent() != Some(Path::new("/etc")) {
            return false;
        }
        let Some(name) = host.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        if name == ".pwd.lock" {
            return true;
        }
        ACCOUNT_FILES.iter().any(|base| {
            name.strip_prefix(base).is_some_and(|rest| {
                rest.is_empty()
                    || rest == "-"
                    || rest == "+"
                    || rest == ".lock"
                    || rest.strip_prefix('.').is_some_and(|pid| {
                        !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                    })
            })
        })
    }

    /// Whether `host` is an account database itself or its `-` backup (what
    /// a finding lists), not one of the tools' lock or scratch files.
    pub fn is_account_database(host: &Path) -> bool {
        host.parent() == Some(Path::new("/etc"))
            && host
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| ACCOUNT_FILES.contains(&n.strip_suffix('-').unwrap_or(n)))
    }

    /// Whether `host` is an SSH key file: one the accounts sensor reads, or
    /// any file named `authorized_keys*` (before its first sweep).
    pub fn is_key_file(&self, host: &Path) -> bool {
        host.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("authorized_keys"))
            || bannin_proto::lock(&self.inner).key_files.contains(host)
    }

    /// The key files the accounts sensor reads (from `sshd_config` and each
    /// account's home).
    pub fn set_key_files(&self, files: BTreeSet<PathBuf>) {
        bannin_proto::lock(&self.inner).key_files = files;
    }

    /// Says a reader names the writers of account files from now on.
    pub fn attribute_accounts(&self) {
        bannin_proto::lock(&self.inner).accounts_attributed = true;
    }

    /// Says a reader names the writers of key files from now on.
    pub fn attribute_keys(&self) {
        bannin_proto::lock(&self.inner).keys_attributed = true;
    }

    /// (account files, key files): whether a reader names their writers.
    pub fn attributed(&self) -> (bool, bool) {
        let inner = bannin_proto::lock(&self.inner);
        (inner.accounts_attributed, inner.keys_attributed)
    }

    /// Queues a write and wakes the accounts sensor.
    pub fn record(&self, path: PathBuf, writer: Writer) {
        {
            let mut inner = bannin_proto::lock(&self.inner);
            if inner.writes.len() < MAX_QUEUED {
                inner.writes.push(Write { path, writer });
            } else {
                inner.dropped += 1;
            }
        }
        self.wake.notify_one();
    }

    /// Whether a write of `path` (any path, for `None`) is queued.
    pub fn pending(&self, path: Option<&Path>) -> bool {
        let inner = bannin_proto::lock(&self.inner);
        match path {
            None => !inner.writes.is_empty(),
            Some(p) => inner.writes.iter().any(|w| w.path == p),
        }
    }

    /// Takes every queued write.
    pub fn take(&self) -> Taken {
        let mut inner = bannin_proto::lock(&self.inner);
        Taken {
            writes: std::mem::take(&mut inner.writes),
            dropped: std::mem::take(&mut inner.dropped),
        }
    }

    /// Notified when a write is queued.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_and_the_tools_own_files_beside_them() {
        for p in [
            "/etc/passwd",
            "/etc/passwd-",
            "/etc/shadow+",
            "/etc/gshadow.lock",
            "/etc/group.31337",
            "/etc/subuid",
            "/etc/.pwd.lock",
        ] {
            assert!(AccountWriters::is_account_file(Path::new(p)), "{p}");
        }
        assert!(AccountWriters::is_account_database(Path::new(
            "/etc/shadow-"
        )));
        for p in [
            "/etc/shadow+",
            "/etc/.pwd.lock",
            "/etc/group.31337",
            "/etc/passwd.lock",
        ] {
            assert!(!AccountWriters::is_account_database(Path::new(p)), "{p}");
        }
        for p in [
            "/etc/passwd.bak",
            "/etc/group.",
            "/etc/hosts",
            "/tmp/passwd",
            "/etc/x/passwd",
            "/etc/passwdx",
        ] {
            assert!(!AccountWriters::is_account_file(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn a_tool_is_known_by_its_path_not_its_name() {
        let w = |exe: &str| Writer {
            exe: exe.into(),
            comm: "useradd".into(),
            ..Writer::default()
        };
        assert_eq!(w("/usr/sbin/useradd").account_tool(), Some("useradd"));
        assert_eq!(w("/usr/bin/passwd").account_tool(), Some("passwd"));
        assert_eq!(w("/tmp/useradd").account_tool(), None, "a copy elsewhere");
        assert_eq!(
            w("/usr/bin/python3").account_tool(),
            None,
            "comm is not trusted"
        );
        assert_eq!(w("").account_tool(), None);
    }

    #[test]
    fn writes_queue_wake_and_are_bounded() {
        let q = AccountWriters::default();
        assert!(!q.pending(None));
        q.record("/etc/passwd".into(), Writer::default());
        assert!(q.pending(Some(Path::new("/etc/passwd"))));
        assert!(!q.pending(Some(Path::new("/etc/group"))));
        for _ in 0..MAX_QUEUED {
            q.record("/etc/group".into(), Writer::default());
        }
        let taken = q.take();
        assert_eq!(taken.writes.len(), MAX_QUEUED);
        assert_eq!(taken.dropped, 1);
        assert!(!q.pending(None));
        assert!(q.is_key_file(Path::new("/home/a/.ssh/authorized_keys2")));
        assert!(!q.is_key_file(Path::new("/etc/ssh/keys/alice")));
        q.set_key_files(BTreeSet::from([PathBuf::from("/etc/ssh/keys/alice")]));
        assert!(q.is_key_file(Path::new("/etc/ssh/keys/alice")));
    }
}
