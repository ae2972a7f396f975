//! The agent's one seam onto the host: every read of `/proc`, `/proc/net`, the
//! account databases and the auth logs goes through here, under a [`HostRoot`]
//! (`/` in production, a fixture tree in tests). Sensors and `response/` both use
//! it; sensors never import each other.
//!
//! - [`proc`]: the pid walk, `stat`, uid, exe, cmdline, boot time.
//! - [`net`]: sockets from `/proc/net` and their owning processes.
//! - [`accounts`]: passwd, group, shadow dates.
//! - [`auth_log`]: the grammar of sshd, sudo, su and PAM messages; utmp and lastlog.
//! - [`packages`]: the OS package database (dpkg): packaged paths and their digests.
//! - [`paths`]: escaping host paths for display.
//! - [`handles`]: the kernel's file handles of directories (what fanotify reports).
//! - [`ssh_keys`]: the `authorized_keys` files `sshd` reads, and their keys.
//! - [`memory`]: giving freed heap back to the system after an eBPF load, and
//!   the pages of code run only at start once the agent is running.

use std::path::{Path, PathBuf};

pub mod accounts;
pub mod auth_log;
pub mod handles;
pub mod memory;
pub mod net;
pub mod packages;
pub mod packets;
pub mod paths;
pub mod priority;
pub mod proc;
pub mod ssh_keys;

/// The host's file system as sensors see it (`/` in production, a fixture in tests).
#[derive(Debug, Clone)]
pub struct HostRoot(pub PathBuf);

impl HostRoot {
    /// `path` (absolute on the host) under the root.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        self.0.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The host path of `real`, a path on this machine under the root (what
    /// the kernel reports); `real` itself when it is not under the root.
    pub fn host_path(&self, real: &Path) -> PathBuf {
        match real.strip_prefix(&self.0) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => real.to_owned(),
        }
    }
}
