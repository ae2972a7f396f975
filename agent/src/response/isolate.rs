//! Network isolation with the agent's own nftables table.
//!
//! The table `inet bannin_isolation` (IPv4 and IPv6) drops everything on the
//! input, output and forward hooks except: loopback, the collector's addresses
//! on its port, DHCP (v4 and v6), DNS to the resolvers named in the agent's
//! config, IPv6 neighbour discovery, and addresses the operator allows. It is
//! installed and replaced atomically (`nft -f`, one transaction) and removed as
//! a whole; nothing else on the host's firewall is touched.
//!
//! Every address written into the ruleset is parsed first and printed back by
//! this code: nothing from a command is pasted into nft's input.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// The agent's table.
pub const TABLE: &str = "bannin_isolation";

/// Why isolation could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `nft` is not installed.
    #[error("nft (nftables) is not installed on this host; install the nftables package")]
    NoNft,
    /// Not allowed to change the firewall.
    #[error("changing the firewall needs root or CAP_NET_ADMIN: {0}")]
    NotPermitted(String),
    /// nft refused the change.
    #[error("nft failed: {0}")]
    Nft(String),
    /// An allowed address is not an IP address or network.
    #[error("{0:?} is not an IP address or network (a.b.c.d, a.b.c.d/n, v6, v6/n)")]
    BadAddress(String),
    /// The collector's address could not be resolved.
    #[error("cannot resolve the collector address {0}: {1}")]
    Resolve(String, String),
    /// Running nft failed.
    #[error("running nft: {0}")]
    Io(#[from] std::io::Error),
}

/// An address or network an isolated host may still talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Net {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Net {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n`.
    pub fn parse(s: &str) -> Result<Self, IsolationError> {
        let bad = || IsolationError::BadAddress(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    fn render(&self) -> String {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        }
    }
}

/// What an isolation allows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// The collector's addresses and port.
    pub collector: Vec<SocketAddr>,
    /// DNS resolvers from the agent's config.
    pub resolvers: Vec<IpAddr>,
    /// Addresses the operator allows.
    pub allow: Vec<Net>,
}

fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() { "ip" } else { "ip6" }
}

/// The nft script that replaces the table atomically.
pub fn ruleset(spec: &Spec) -> String {
    let mut input = String::new();
    let mut output = String::new();
    let _ = writeln!(input, "    iif \"lo\" accept");
    let _ = writeln!(output, "    oif \"lo\" accept");
    // The channel to the collector: connections this host opens to the pinned
    // address and port, and their replies only. A packet from the collector's
    // address and port that belongs to no such connection (a spoofed source
    // port aimed at another local service) is dropped.
    for c in &spec.collector {
        let (f, ip, port) = (family(&c.ip()), c.ip(), c.port());
        let _ = writeln!(output, "    {f} daddr {ip} tcp dport {port} accept");
        let _ = writeln!(
            input,
            "    {f} saddr {ip} tcp sport {port} ct state established accept"
        );
    }
    let _ = writeln!(output, "    udp sport 68 udp dport 67 accept");
    let _ = writeln!(input, "    udp sport 67 udp dport 68 accept");
    let _ = writeln!(output, "    udp sport 546 udp dport 547 accept");
    let _ = writeln!(input, "    udp sport 547 udp dport 546 accept");
    // The named resolvers: queries to their port 53, and the answers only.
    for r in &spec.resolvers {
        let f = family(r);
        let _ = writeln!(output, "    {f} daddr {r} udp dport 53 accept");
        let _ = writeln!(output, "    {f} daddr {r} tcp dport 53 accept");
        let _ = writeln!(
            input,
            "    {f} saddr {r} udp sport 53 ct state established accept"
        );
        let _ = writeln!(
            input,
            "    {f} saddr {r} tcp sport 53 ct state established accept"
        );
    }
    let _ = writeln!(
        output,
        "    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept"
    );
    let _ = writeln!(
        input,
        "    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }} accept"
    );
    for a in &spec.allow {
        let (f, n) = (family(&a.addr), a.render());
        let _ = writeln!(output, "    {f} daddr {n} accept");
        let _ = writeln!(input, "    {f} saddr {n} accept");
    }
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \x20 chain input {{\n    type filter hook input priority -10; policy drop;\n{input}  }}\n\
         \x20 chain output {{\n    type filter hook output priority -10; policy drop;\n{output}  }}\n\
         \x20 chain forward {{\n    type filter hook forward priority -10; policy drop;\n  }}\n\
         }}\n"
    )
}

async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, IsolationError> {
    let mut child = match tokio::process::Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(IsolationError::NoNft),
        Err(e) => return Err(e.into()),
    };
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        return Err(IsolationError::NotPermitted(stderr));
    }
    Err(IsolationError::Nft(stderr))
}

/// Installs (or replaces) the table, in one transaction.
pub async fn apply(spec: &Spec) -> Result<(), IsolationError> {
    nft(&["-f", "-"], Some(&ruleset(spec))).await.map(|_| ())
}

/// Whether the table is installed.
pub async fn installed() -> Result<bool, IsolationError> {
    match nft(&["list", "table", "inet", TABLE], None).await {
        Ok(_) => Ok(true),
        Err(IsolationError::Nft(e)) if e.contains("No such file") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes exactly the table; `Ok(false)` if it was not there.
pub async fn remove() -> Result<bool, IsolationError> {
    if !installed().await? {
        return Ok(false);
    }
    nft(&["delete", "table", "inet", TABLE], None)
        .await
        .map(|_| true)
}

/// Resolves every collector `host:port` the agent may fail over to: an isolated
/// host keeps its channel to all of them. Names that do not resolve are logged
/// and left out; it is an error only when none resolves.
pub async fn resolve_all(addresses: &[String]) -> Result<Vec<SocketAddr>, IsolationError> {
    let mut all = Vec::new();
    let mut last = None;
    for address in addresses {
        match resolve(address).await {
            Ok(addrs) => all.extend(addrs),
            Err(error) => {
                tracing::warn!(collector = %address, %error, "A collector address does not resolve; isolation leaves it out");
                last = Some(error);
            }
        }
    }
    all.sort();
    all.dedup();
    match (all.is_empty(), last) {
        (true, Some(error)) => Err(error),
        (true, None) => Err(IsolationError::Resolve(
            String::new(),
            "no collector address configured".into(),
        )),
        (false, _) => Ok(all),
    }
}

/// Resolves the collector's `host:port`.
pub async fn resolve(address: &str) -> Result<Vec<SocketAddr>, IsolationError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| IsolationError::Resolve(address.to_owned(), e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(IsolationError::Resolve(
            address.to_owned(),
            "no addresses".into(),
        ));
    }
    Ok(addrs)
}

/// Opens a new TCP connection to one of the collector's addresses.
pub async fn self_test(collector: &[SocketAddr]) -> Result<(), String> {
    let mut errors = Vec::new();
    for addr in collector {
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer within 3 s")),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_not_pasted() {
        assert_eq!(Net::parse("10.0.0.1").expect("v4").render(), "10.0.0.1");
        assert_eq!(
            Net::parse("10.0.0.0/8").expect("net").render(),
            "10.0.0.0/8"
        );
        assert_eq!(Net::parse("fd00::1/64").expect("v6").render(), "fd00::1/64");
        for bad in [
            "10.0.0.1; flush ruleset",
            "10.0.0.0/33",
            "example.org",
            "1.2.3.4/x",
            "",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ruleset_replaces_only_our_table_and_keeps_the_channel() {
        let spec = Spec {
            collector: vec![
                "10.1.0.1:7443".parse().expect("addr"),
                "[fd00::1]:7443".parse().expect("addr"),
            ],
            resolvers: vec!["10.1.0.53".parse().expect("ip")],
            allow: vec![Net::parse("192.0.2.7").expect("ip")],
        };
        let r = ruleset(&spec);
        assert!(r.starts_with("table inet bannin_isolation\ndelete table inet bannin_isolation\n"));
        assert!(!r.contains("flush ruleset"));
        for line in [
            "ip daddr 10.1.0.1 tcp dport 7443 accept",
            "ip6 saddr fd00::1 tcp sport 7443 ct state established accept",
            "ip saddr 10.1.0.53 udp sport 53 ct state established accept",
            "ip daddr 10.1.0.53 udp dport 53 accept",
            "ip saddr 192.0.2.7 accept",
            "type filter hook forward priority -10; policy drop;",
        ] {
            assert!(r.contains(line), "{line} missing from\n{r}");
        }
    }
}
