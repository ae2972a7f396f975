//! A throwaway lab of network namespaces for the response tests: a bridge and
//! three hosts — collector (10.77.0.1, fd77::1), agent (.2, ::2) and peer
//! (.3, ::3). Everything is created under a unique prefix and deleted on drop;
//! nothing touches the namespace the tests run in.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One lab.
pub struct Lab {
    prefix: String,
}

/// The three hosts of a lab.
#[derive(Clone, Copy, Debug)]
pub enum Host {
    /// Runs the collector.
    Collector,
    /// Runs the agent.
    Agent,
    /// Some other machine on the network.
    Peer,
}

impl Host {
    fn suffix(self) -> &'static str {
        match self {
            Host::Collector => "c",
            Host::Agent => "a",
            Host::Peer => "p",
        }
    }

    fn index(self) -> u8 {
        match self {
            Host::Collector => 1,
            Host::Agent => 2,
            Host::Peer => 3,
        }
    }

    /// IPv4 address.
    pub fn v4(self) -> String {
        format!("10.77.0.{}", self.index())
    }

    /// IPv6 address.
    pub fn v6(self) -> String {
        format!("fd77::{}", self.index())
    }
}

fn run(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process may create namespaces (root).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl Lab {
    /// Creates the namespaces, the bridge and the links.
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("bn{}x{n}", std::process::id() % 100_000);
        let lab = Self { prefix };
        let br = lab.ns_name("br");
        run(&["netns", "add", &br]);
        for h in [Host::Collector, Host::Agent, Host::Peer] {
            run(&["netns", "add", &lab.ns(h)]);
        }
        run(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        run(&["-n", &br, "link", "set", "br0", "up"]);
        for h in [Host::Collector, Host::Agent, Host::Peer] {
            let ns = lab.ns(h);
            let veth = format!("v{}", h.suffix());
            run(&[
                "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            run(&["-n", &br, "link", "set", &veth, "master", "br0", "up"]);
            run(&["-n", &ns, "link", "set", "lo", "up"]);
            run(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", h.v4()),
                "dev",
                "eth0",
            ]);
            run(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/64", h.v6()),
                "dev",
                "eth0",
                "nodad",
            ]);
            run(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    fn ns_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// The namespace of a host.
    pub fn ns(&self, host: Host) -> String {
        self.ns_name(host.suffix())
    }

    /// A command run inside a host's namespace.
    pub fn command(&self, host: Host, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)]).arg(program);
        c
    }

    /// Whether `from` can open a TCP connection to `addr` port `port` within 2 s.
    pub fn can_connect(&self, from: Host, addr: &str, port: u16) -> bool {
        let target = format!("exec 3<>/dev/tcp/{addr}/{port}");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(from),
                "timeout",
                "2",
                "bash",
                "-c",
                &target,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Runs `nft` with `args` in a host's namespace; returns stdout, or the error.
    pub fn nft(&self, host: Host, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(host), "nft"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in ["c", "a", "p", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns_name(s)])
                .status();
        }
    }
}
