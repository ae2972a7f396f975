//! Cross-host correlation: one host's indicator is a hint, the same indicator
//! across the fleet is an incident.
//!
//! The writer thread feeds every new finding and the telemetry the rules need
//! (logins, failed logins, new connections) to one [`Correlator`], which keeps
//! windowed, bounded state and returns correlated findings to stage in the same
//! atomic commit as what triggered them.
//!
//! | rule | kind | raised when, within the rule's window |
//! |---|---|---|
//! | spread | `correlation.spread` | the same SHA-256, executable, remote address or new account name in findings of ≥ `hosts` hosts |
//! | account across hosts | `correlation.account_hosts` | one account logs in on ≥ `hosts` hosts |
//! | password spraying | `correlation.password_spray` | failed logins for one account, or from one source, on ≥ `hosts` hosts |
//! | lateral movement | `correlation.lateral_movement` | host A connects to fleet host B on a remote-admin port and B shows a new account, listener, service or unknown binary |
//! | fan-in | `correlation.fan_in` | ≥ `hosts` fleet hosts open connections to one address outside the fleet, or one host receives new connections from ≥ `peers` addresses |
//! | mass silence | `correlation.mass_silence` | ≥ `share` of the fleet (and ≥ `min_hosts`) goes silent |
//!
//! Times are the agents' observation times, capped at the collector's clock;
//! an observation older than its window is ignored. Each key is raised once
//! per window. State is bounded: at most `max_keys` keys per rule and
//! `max_members` members per key; what is shed to stay within them is counted
//! in [`Correlator::shed`]. The state lives in memory: a restarted collector
//! starts its windows empty.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bannin_proto::identity::HostId;

use crate::model::{NewFinding, Severity};

/// Kinds whose telemetry the correlator reads (decoded in full at ingest).
pub const TELEMETRY_KINDS: &[&str] = &["account.login", "account.login_failed", "net.connection"];

/// What the fleet looks like: each host's addresses, for the rules that tell
/// a fleet host from the outside. Updated at each Hello.
#[derive(Debug, Default)]
pub struct FleetView {
    inner: RwLock<FleetInner>,
}

#[derive(Debug, Default)]
struct FleetInner {
    /// Every host claiming each address: a peer is a fleet host only when one
    /// host claims its address (a second claimant takes nothing over).
    by_address: HashMap<IpAddr, Vec<String>>,
    addresses: HashMap<String, Vec<IpAddr>>,
}

impl FleetView {
    /// Records `host`'s addresses (as its agent reported them; prefixes and
    /// zones are dropped), replacing what it had.
    pub fn set_addresses(&self, host: &str, addresses: &[String]) {
        let parsed: Vec<IpAddr> = addresses
            .iter()
            .filter_map(|a| {
                let bare = a.split('/').next().unwrap_or(a);
                let bare = bare.split('%').next().unwrap_or(bare);
                bare.parse::<IpAddr>().ok()
            })
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .map(|ip| ip.to_canonical())
            .collect();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.addresses.remove(host) {
            for ip in old {
                if let Some(claimants) = inner.by_address.get_mut(&ip) {
                    claimants.retain(|h| h != host);
                    if claimants.is_empty() {
                        inner.by_address.remove(&ip);
                    }
                }
            }
        }
        for ip in &parsed {
            let claimants = inner.by_address.entry(*ip).or_default();
            if !claimants.iter().any(|h| h == host) {
                claimants.push(host.to_owned());
            }
        }
        inner.addresses.insert(host.to_owned(), parsed);
    }

    /// The fleet host that has `ip`, if exactly one host claims it.
    pub fn host_of(&self, ip: IpAddr) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match inner.by_address.get(&ip.to_canonical()).map(Vec::as_slice) {
            Some([only]) => Some(only.clone()),
            _ => None,
        }
    }

    /// How many hosts the fleet has.
    pub fn host_count(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.addresses.len()
    }
}

/// Thresholds and windows of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationConfig {
    /// Whether correlation runs at all.
    pub enabled: bool,
    /// Most keys (hashes, accounts, addresses…) held per rule.
    pub max_keys: usize,
    /// Most members (hosts, peers) held per key.
    pub max_members: usize,
    /// spread.
    pub spread: Threshold,
    /// account across hosts.
    pub account_hosts: Threshold,
    /// Accounts never reported by account across hosts (automation).
    pub ignore_accounts: BTreeSet<String>,
    /// password spraying.
    pub password_spray: Threshold,
    /// lateral movement (threshold unused).
    pub lateral_movement: Threshold,
    /// Remote-administration ports.
    pub remote_admin_ports: BTreeSet<u16>,
    /// fan-in: hosts talking to one outside address.
    pub fan_in: Threshold,
    /// fan-in: new peers of one receiving host.
    pub fan_in_peers: usize,
    /// mass silence: at least this many hosts…
    pub mass_silence: Threshold,
    /// …and at least this share of the fleet.
    pub mass_silence_share: f64,
}

/// One rule's threshold, window and severity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Distinct hosts (or peers) needed.
    pub hosts: usize,
    /// Window.
    pub window: Duration,
    /// Severity of what it raises.
    pub severity: Severity,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        let t = |hosts, secs, severity| Threshold {
            hosts,
            window: Duration::from_secs(secs),
            severity,
        };
        Self {
            enabled: true,
            max_keys: 100_000,
            max_members: 256,
            spread: t(3, 3600, Severity::High),
            account_hosts: t(3, 600, Severity::High),
            ignore_accounts: BTreeSet::new(),
            password_spray: t(5, 600, Severity::High),
            lateral_movement: t(2, 600, Severity::Critical),
            remote_admin_ports: [22, 3389, 5900, 5985, 5986].into(),
            fan_in: t(10, 600, Severity::Medium),
            fan_in_peers: 50,
            mass_silence: t(3, 300, Severity::High),
            mass_silence_share: 0.3,
        }
    }
}

/// The correlation rules. A finding's kind is `correlation.` and the rule's name,
/// which is also its `[correlation.NAME]` section in the collector's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// The same hash, executable, remote address or new account on N hosts.
    Spread,
    /// One account logging in on N hosts.
    AccountHosts,
    /// Failed logins for one account or from one source on N hosts.
    PasswordSpray,
    /// A remote-admin session between fleet hosts followed by a change there.
    LateralMovement,
    /// Many fleet hosts reaching one outside address, or one host reached by many.
    FanIn,
    /// Many hosts going silent together.
    MassSilence,
}

impl Rule {
    /// Every rule, in the order `bannin rules` lists them.
    pub const ALL: [Rule; 6] = [
        Rule::Spread,
        Rule::AccountHosts,
        Rule::PasswordSpray,
        Rule::LateralMovement,
        Rule::FanIn,
        Rule::MassSilence,
    ];

    /// Its name, as in the config and the finding's `rule` attribute.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Spread => "spread",
            Rule::AccountHosts => "account_hosts",
            Rule::PasswordSpray => "password_spray",
            Rule::LateralMovement => "lateral_movement",
            Rule::FanIn => "fan_in",
            Rule::MassSilence => "mass_silence",
        }
    }

    /// The kind of the findings it raises.
    pub fn kind(self) -> &'static str {
        match self {
            Rule::Spread => "correlation.spread",
            Rule::AccountHosts => "correlation.account_hosts",
            Rule::PasswordSpray => "correlation.password_spray",
            Rule::LateralMovement => "correlation.lateral_movement",
            Rule::FanIn => "correlation.fan_in",
            Rule::MassSilence => "correlation.mass_silence",
        }
    }

    /// Its threshold in `config`.
    pub fn threshold(self, config: &CorrelationConfig) -> Threshold {
        match self {
            Rule::Spread => config.spread,
            Rule::AccountHosts => config.account_hosts,
            Rule::PasswordSpray => config.password_spray,
            Rule::LateralMovement => config.lateral_movement,
            Rule::FanIn => config.fan_in,
            Rule::MassSilence => config.mass_silence,
        }
    }
}

/// What the correlator is shown.
#[derive(Debug, Clone)]
pub enum Observation<'a> {
    /// A new finding (not a fold into an existing one).
    Finding {
        /// Its id.
        id: u64,
        /// Host.
        host: &'a str,
        /// Kind.
        kind: &'a str,
        /// When observed.
        at: i64,
        /// Attributes.
        attributes: &'a BTreeMap<String, String>,
    },
    /// Telemetry of one of [`TELEMETRY_KINDS`].
    Telemetry {
        /// Host.
        host: &'a str,
        /// Kind.
        kind: &'a str,
        /// When observed.
        at: i64,
        /// Attributes.
        attributes: &'a BTreeMap<String, String>,
    },
}

/// One member of a key: who, when last, and the finding that showed it.
#[derive(Debug, Clone)]
struct Member<M> {
    who: M,
    at: i64,
    finding: Option<u64>,
}

#[derive(Debug)]
struct Slot<M> {
    members: VecDeque<Member<M>>,
    /// Raised for this key until then (once per window).
    quiet_until: i64,
}

/// Keys to distinct members within a window, bounded.
#[derive(Debug)]
struct Window<K, M> {
    window_ms: i64,
    max_keys: usize,
    max_members: usize,
    slots: HashMap<K, Slot<M>>,
    /// Keys in the order they were created (re-queued when still alive), for
    /// expiry and for shedding the oldest first. One entry per live key.
    order: VecDeque<(i64, K)>,
    shed: u64,
}

impl<K: Eq + Hash + Clone, M: Eq + Clone> Window<K, M> {
    fn new(window: Duration, max_keys: usize, max_members: usize) -> Self {
        Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            max_keys: max_keys.max(1),
            max_members: max_members.max(2),
            slots: HashMap::new(),
            order: VecDeque::new(),
            shed: 0,
        }
    }

    /// Adds `who` to `key` at `at`; returns the key's live members.
    fn add(&mut self, key: &K, who: M, at: i64, finding: Option<u64>) -> &mut Slot<M> {
        if !self.slots.contains_key(key) {
            while self.slots.len() >= self.max_keys {
                let Some((_, oldest)) = self.order.pop_front() else {
                    break;
                };
                if self.slots.remove(&oldest).is_some() {
                    self.shed += 1;
                }
            }
            self.order.push_back((at, key.clone()));
        }
        let horizon = at.saturating_sub(self.window_ms);
        let max_members = self.max_members;
        let slot = self.slots.entry(key.clone()).or_insert_with(|| Slot {
            members: VecDeque::new(),
            quiet_until: i64::MIN,
        });
        slot.members.retain(|m| m.at >= horizon);
        if let Some(i) = slot.members.iter().position(|m| m.who == who) {
            if let Some(mut m) = slot.members.remove(i) {
                m.at = m.at.max(at);
                m.finding = finding.or(m.finding);
                slot.members.push_back(m);
            }
        } else {
            if slot.members.len() >= max_members {
                slot.members.pop_front();
                self.shed += 1;
            }
            slot.members.push_back(Member { who, at, finding });
        }
        slot
    }

    fn get(&self, key: &K) -> Option<&Slot<M>> {
        self.slots.get(key)
    }

    /// Forgets keys with no member inside the window ending at `now`.
    fn prune(&mut self, now: i64) {
        let horizon = now.saturating_sub(self.window_ms);
        let mut n = self.order.len();
        while n > 0 {
            n -= 1;
            let Some((created, key)) = self.order.pop_front() else {
                break;
            };
            if created >= horizon {
                self.order.push_front((created, key));
                break;
            }
            let alive = self.slots.get_mut(&key).map(|slot| {
                slot.members.retain(|m| m.at >= horizon);
                slot.members.iter().map(|m| m.at).max()
            });
            match alive {
                Some(Some(newest)) => self.order.push_back((newest, key)),
                _ => {
                    self.slots.remove(&key);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Hits and state size of the correlator, for `bannin rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Findings raised per rule.
    pub raised: BTreeMap<Rule, u64>,
    /// Keys held across rules.
    pub keys: usize,
    /// Keys and members shed to stay bounded.
    pub shed: u64,
}

/// The correlation rules' state.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelationConfig,
    fleet: Arc<FleetView>,
    spread: Window<(&'static str, String), String>,
    logins: Window<String, String>,
    spray_user: Window<String, String>,
    spray_source: Window<String, String>,
    /// B → connections into it on admin ports: A.
    admin_in: Window<String, String>,
    /// B → its changes (finding id as member).
    changes: Window<String, u64>,
    fan_out: Window<IpAddr, String>,
    fan_in: Window<String, IpAddr>,
    silence: Window<(), String>,
    raised: BTreeMap<Rule, u64>,
    last_prune: i64,
}

/// Allowance for clocks of two hosts disagreeing.
const SKEW_MS: i64 = 60_000;

/// Finding kinds that count as "B changed" for lateral movement.
const CHANGE_KINDS: &[&str] = &[
    "account.new_user",
    "account.uid0",
    "net.new_listener",
    "service.new",
    "process.unknown_binary",
];

impl Correlator {
    /// An empty correlator.
    pub fn new(config: CorrelationConfig, fleet: Arc<FleetView>) -> Self {
        let (keys, members) = (config.max_keys, config.max_members);
        Self {
            spread: Window::new(config.spread.window, keys, members),
            logins: Window::new(config.account_hosts.window, keys, members),
            spray_user: Window::new(config.password_spray.window, keys, members),
            spray_source: Window::new(config.password_spray.window, keys, members),
            admin_in: Window::new(config.lateral_movement.window, keys, members),
            changes: Window::new(config.lateral_movement.window, keys, members),
            fan_out: Window::new(config.fan_in.window, keys, members),
            fan_in: Window::new(
                config.fan_in.window,
                config.max_keys,
                config.max_members.max(config.fan_in_peers + 1),
            ),
            silence: Window::new(config.mass_silence.window, 1, usize::MAX / 2),
            raised: Rule::ALL.iter().map(|r| (*r, 0)).collect(),
            last_prune: 0,
            fleet,
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CorrelationConfig {
        &self.config
    }

    /// Counters for `bannin rules`.
    pub fn stats(&self) -> CorrelatorStats {
        let windows = [
            (self.spread.len(), self.spread.shed),
            (self.logins.len(), self.logins.shed),
            (self.spray_user.len(), self.spray_user.shed),
            (self.spray_source.len(), self.spray_source.shed),
            (self.admin_in.len(), self.admin_in.shed),
            (self.changes.len(), self.changes.shed),
            (self.fan_out.len(), self.fan_out.shed),
            (self.fan_in.len(), self.fan_in.shed),
            (self.silence.len(), self.silence.shed),
        ];
        CorrelatorStats {
            raised: self.raised.clone(),
            keys: windows.iter().map(|w| w.0).sum(),
            shed: windows.iter().map(|w| w.1).sum(),
        }
    }

    /// Keys and members shed so far.
    pub fn shed(&self) -> u64 {
        self.stats().shed
    }

    /// Shows the correlator one observation; returns what it correlates to.
    pub fn observe(&mut self, observation: &Observation<'_>, now: i64) -> Vec<NewFinding> {
        if !self.config.enabled {
            return Vec::new();
        }
        if now - self.last_prune >= 1_000 {
            self.prune(now);
        }
        let mut out = Vec::new();
        match *observation {
            Observation::Finding {
                id,
                host,
                kind,
                at,
                attributes,
            } => {
                if kind.starts_with("correlation.") {
                    return out;
                }
                let at = at.min(now);
                self.spread_of(id, host, kind, at, attributes, now, &mut out);
                if CHANGE_KINDS.contains(&kind) {
                    self.change_on(id, host, kind, at, now, &mut out);
                }
                if kind == "host.silent" {
                    self.silent(id, host, at, now, &mut out);
                }
            }
            Observation::Telemetry {
                host,
                kind,
                at,
                attributes,
            } => {
                let at = at.min(now);
                let get = |k: &str| attributes.get(k).map(String::as_str).unwrap_or("");
                match kind {
                    "account.login" => {
                        self.login(host, get("user"), get("source"), at, now, &mut out)
                    }
                    "account.login_failed" => {
                        self.failed_login(host, get("user"), get("source"), at, now, &mut out);
                    }
                    "net.connection" => self.connection(host, attributes, at, now, &mut out),
                    _ => {}
                }
            }
        }
        out
    }

    /// Forgets what is older than every window.
    pub fn prune(&mut self, now: i64) {
        self.last_prune = now;
        self.spread.prune(now);
        self.logins.prune(now);
        self.spray_user.prune(now);
        self.spray_source.prune(now);
        self.admin_in.prune(now);
        self.changes.prune(now);
        self.fan_out.prune(now);
        self.fan_in.prune(now);
        self.silence.prune(now);
    }

    fn window_ms(t: &Threshold) -> i64 {
        i64::try_from(t.window.as_millis()).unwrap_or(i64::MAX)
    }

    #[allow(clippy::too_many_arguments)]
    fn spread_of(
        &mut self,
        id: u64,
        host: &str,
        kind: &str,
        at: i64,
        attributes: &BTreeMap<String, String>,
        now: i64,
        out: &mut Vec<NewFinding>,
    ) {
        let window = Self::window_ms(&self.config.spread);
        if at < now - window {
            return;
        }
        let mut keys: Vec<(&'static str, String)> = Vec::new();
        // An executable the host's package manager installed, intact, is the same
        // file on every host by design: never a spread. (A changed one is
        // `file.package_mismatch`, and spreading is exactly what it may do.)
        let packaged = attributes.contains_key("package") && kind != "file.package_mismatch";
        if let Some(sha) = attributes
            .get("sha256")
            .filter(|s| !s.is_empty() && !packaged)
        {
            keys.push(("sha256", sha.to_ascii_lowercase()));
        }
        if kind.starts_with("process.")
            && !packaged
            && let Some(exe) = attributes.get("exe").filter(|s| !s.is_empty())
        {
            keys.push(("executable", exe.clone()));
        }
        for a in ["remote_address", "source", "src_ip"] {
            if let Some(ip) = attributes.get(a).and_then(|v| v.parse::<IpAddr>().ok()) {
                keys.push(("remote_address", ip.to_canonical().to_string()));
                break;
            }
        }
        if (kind == "account.new_user" || kind == "account.uid0")
            && let Some(user) = attributes.get("user").filter(|s| !s.is_empty())
        {
            keys.push(("account", user.clone()));
        }
        let need = self.config.spread.hosts.max(2);
        for key in keys {
            let slot = self.spread.add(&key, host.to_owned(), at, Some(id));
            if slot.members.len() >= need && slot.quiet_until <= at {
                slot.quiet_until = at + window;
                let hosts: Vec<String> = slot.members.iter().map(|m| m.who.clone()).collect();
                let ids: Vec<u64> = slot.members.iter().filter_map(|m| m.finding).collect();
                let (what, value) = key;
                let label = match what {
                    "sha256" => "file hash",
                    "executable" => "executable",
                    "remote_address" => "remote address",
                    _ => "new account",
                };
                out.extend(self.finding(
                    Rule::Spread,
                    host,
                    self.config.spread,
                    at,
                    vec![
                        ("what", what.to_owned()),
                        ("value", value.clone()),
                        ("first_kind", kind.to_owned()),
                    ],
                    &hosts,
                    &ids,
                    format!(
                        "the same {label} {value} on {} hosts within {}: {}",
                        hosts.len(),
                        human(self.config.spread.window),
                        hosts.join(", ")
                    ),
                ));
            }
        }
    }

    fn login(
        &mut self,
        host: &str,
        user: &str,
        source: &str,
        at: i64,
        now: i64,
        out: &mut Vec<NewFinding>,
    ) {
        let t = self.config.account_hosts;
        if user.is_empty()
            || self.config.ignore_accounts.contains(user)
            || at < now - Self::window_ms(&t)
        {
            return;
        }
        let need = t.hosts.max(2);
        let slot = self.logins.add(&user.to_owned(), host.to_owned(), at, None);
        if slot.members.len() >= need && slot.quiet_until <= at {
            slot.quiet_until = at + Self::window_ms(&t);
            let hosts: Vec<String> = slot.members.iter().map(|m| m.who.clone()).collect();
            out.extend(self.finding(
                Rule::AccountHosts,
                host,
                t,
                at,
                vec![
                    ("user", user.to_owned()),
                    ("last_source", source.to_owned()),
                ],
                &hosts,
                &[],
                format!(
                    "account {user} logged in on {} hosts within {}: {}",
                    hosts.len(),
                    human(t.window),
                    hosts.join(", ")
                ),
            ));
        }
    }

    fn failed_login(
        &mut self,
        host: &str,
        user: &str,
        source: &str,
        at: i64,
        now: i64,
        out: &mut Vec<NewFinding>,
    ) {
        let t = self.config.password_spray;
        let window = Self::window_ms(&t);
        if at < now - window {
            return;
        }
        let need = t.hosts.max(2);
        let user = user.trim_end_matches(" (invalid)");
        for (by, value) in [("user", user), ("source", source)] {
            if value.is_empty() {
                continue;
            }
            let w = if by == "user" {
                &mut self.spray_user
            } else {
                &mut self.spray_source
            };
            let slot = w.add(&value.to_owned(), host.to_owned(), at, None);
            if slot.members.len() >= need && slot.quiet_until <= at {
                slot.quiet_until = at + window;
                let hosts: Vec<String> = slot.members.iter().map(|m| m.who.clone()).collect();
                let summary = if by == "user" {
                    format!(
                        "failed logins for {value} on {} hosts within {}: {}",
                        hosts.len(),
                        human(t.window),
                        hosts.join(", ")
                    )
                } else {
                    format!(
                        "failed logins from {value} on {} hosts within {}: {}",
                        hosts.len(),
                        human(t.window),
                        hosts.join(", ")
                    )
                };
                out.extend(self.finding(
                    Rule::PasswordSpray,
                    host,
                    t,
                    at,
                    vec![("by", by.to_owned()), (by, value.to_owned())],
                    &hosts,
                    &[],
                    summary,
                ));
            }
        }
    }

    fn connection(
        &mut self,
        host: &str,
        a: &BTreeMap<String, String>,
        at: i64,
        now: i64,
        out: &mut Vec<NewFinding>,
    ) {
        let Some(peer) = a
            .get("remote_address")
            .and_then(|p| p.parse::<IpAddr>().ok())
        else {
            return;
        };
        let peer = peer.to_canonical();
        if peer.is_loopback() || peer.is_unspecified() {
            return;
        }
        let port: u16 = a.get("port").and_then(|p| p.parse().ok()).unwrap_or(0);
        let inbound = a.get("direction").is_some_and(|d| d == "inbound");
        let peer_host = self.fleet.host_of(peer);
        // Lateral movement: who connected into which fleet host on an admin port.
        if self.config.remote_admin_ports.contains(&port) {
            // Between fleet hosts only: a session from outside is not lateral.
            let (from, into) = if inbound {
                (peer_host.clone(), Some(host.to_owned()))
            } else {
                (Some(host.to_owned()), peer_host.clone())
            };
            if let (Some(from), Some(into)) = (from, into)
                && from != into
                && at >= now - Self::window_ms(&self.config.lateral_movement)
            {
                self.admin_in.add(&into, from.clone(), at, None);
                self.lateral_check(&into, now, out);
            }
        }
        if inbound {
            let t = self.config.fan_in;
            if at < now - Self::window_ms(&t) {
                return;
            }
            let need = self.config.fan_in_peers.max(2);
            let slot = self.fan_in.add(&host.to_owned(), peer, at, None);
            if slot.members.len() >= need && slot.quiet_until <= at {
                slot.quiet_until = at + Self::window_ms(&t);
                let count = slot.members.len();
                let examples: Vec<String> = slot
                    .members
                    .iter()
                    .rev()
                    .take(10)
                    .map(|m| m.who.to_string())
                    .collect();
                out.extend(self.finding(
                    Rule::FanIn,
                    host,
                    t,
                    at,
                    vec![
                        ("direction", "inbound".into()),
                        ("peer_count", count.to_string()),
                        ("examples", examples.join(",")),
                    ],
                    &[host.to_owned()],
                    &[],
                    format!(
                        "{host} received connections from {count} new addresses within {}",
                        human(t.window)
                    ),
                ));
            }
        } else if peer_host.is_none() {
            let t = self.config.fan_in;
            if at < now - Self::window_ms(&t) {
                return;
            }
            let need = t.hosts.max(2);
            let slot = self.fan_out.add(&peer, host.to_owned(), at, None);
            if slot.members.len() >= need && slot.quiet_until <= at {
                slot.quiet_until = at + Self::window_ms(&t);
                let hosts: Vec<String> = slot.members.iter().map(|m| m.who.clone()).collect();
                out.extend(self.finding(
                    Rule::FanIn,
                    host,
                    t,
                    at,
                    vec![
                        ("direction", "outbound".into()),
                        ("remote_address", peer.to_string()),
                        ("port", port.to_string()),
                    ],
                    &hosts,
                    &[],
                    format!(
                        "{} fleet hosts connected to {peer} (outside the fleet) within {}: {}",
                        hosts.len(),
                        human(t.window),
                        hosts.join(", ")
                    ),
                ));
            }
        }
    }

    fn change_on(
        &mut self,
        id: u64,
        host: &str,
        kind: &str,
        at: i64,
        now: i64,
        out: &mut Vec<NewFinding>,
    ) {
        if at < now - Self::window_ms(&self.config.lateral_movement) {
            return;
        }
        let _ = kind;
        self.changes.add(&host.to_owned(), id, at, Some(id));
        self.lateral_check(host, now, out);
    }

    /// Raises lateral movement into `into` when a connection into it is
    /// followed, within the window, by a change on it.
    fn lateral_check(&mut self, into: &str, now: i64, out: &mut Vec<NewFinding>) {
        let key = into.to_owned();
        let t = self.config.lateral_movement;
        let window = Self::window_ms(&t);
        let (Some(conns), Some(changes)) = (self.admin_in.get(&key), self.changes.get(&key)) else {
            return;
        };
        let mut hit: Option<(String, i64, Vec<u64>)> = None;
        for c in &conns.members {
            let after: Vec<u64> = changes
                .members
                .iter()
                .filter(|ch| ch.at >= c.at - SKEW_MS && ch.at - c.at <= window)
                .filter_map(|ch| ch.finding)
                .collect();
            if !after.is_empty() {
                hit = Some((c.who.clone(), c.at, after));
                break;
            }
        }
        let Some((from, conn_at, ids)) = hit else {
            return;
        };
        let Some(slot) = self.admin_in.slots.get_mut(&key) else {
            return;
        };
        if slot.quiet_until > now {
            return;
        }
        slot.quiet_until = conn_at + window;
        let at = now;
        out.extend(self.finding(
            Rule::LateralMovement,
            into,
            t,
            at,
            vec![("from", from.clone()), ("to", into.to_owned())],
            &[from.clone(), into.to_owned()],
            &ids,
            format!(
                "{from} opened a remote-admin session to {into}, which then changed (findings {}) within {}",
                ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                human(t.window)
            ),
        ));
    }

    fn silent(&mut self, id: u64, host: &str, at: i64, now: i64, out: &mut Vec<NewFinding>) {
        let t = self.config.mass_silence;
        if at < now - Self::window_ms(&t) {
            return;
        }
        let fleet = self.fleet.host_count().max(1);
        let share_need = (self.config.mass_silence_share * fleet as f64).ceil() as usize;
        let need = t.hosts.max(share_need).max(2);
        let slot = self.silence.add(&(), host.to_owned(), at, Some(id));
        if slot.members.len() >= need && slot.quiet_until <= at {
            slot.quiet_until = at + Self::window_ms(&t);
            let hosts: Vec<String> = slot.members.iter().map(|m| m.who.clone()).collect();
            let ids: Vec<u64> = slot.members.iter().filter_map(|m| m.finding).collect();
            out.extend(self.finding(
                Rule::MassSilence,
                host,
                t,
                at,
                vec![("fleet_hosts", fleet.to_string())],
                &hosts,
                &ids,
                format!(
                    "{} of {fleet} hosts went silent within {}: {}",
                    hosts.len(),
                    human(t.window),
                    hosts.join(", ")
                ),
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &mut self,
        rule: Rule,
        host: &str,
        t: Threshold,
        at: i64,
        extra: Vec<(&str, String)>,
        hosts: &[String],
        ids: &[u64],
        summary: String,
    ) -> Option<NewFinding> {
        // Host ids reach the correlator from validated certificates.
        let host_id = HostId::new(host.to_owned()).ok()?;
        *self.raised.entry(rule).or_default() += 1;
        let mut attributes: BTreeMap<String, String> =
            extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        attributes.insert("rule".into(), rule.name().into());
        attributes.insert("hosts".into(), hosts.join(","));
        attributes.insert("host_count".into(), hosts.len().to_string());
        attributes.insert("window_secs".into(), t.window.as_secs().to_string());
        if !ids.is_empty() {
            attributes.insert(
                "correlated_findings".into(),
                ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
            );
        }
        Some(NewFinding {
            host_id,
            kind: rule.kind().to_owned(),
            severity: t.severity,
            observed_unix_ms: at,
            attributes,
            summary,
        })
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s >= 3600 {
        format!("{} h", s / 3600)
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn correlator() -> Correlator {
        let fleet = Arc::new(FleetView::default());
        for i in 0..10 {
            fleet.set_addresses(
                &format!("h{i}"),
                &[format!("10.0.0.{i}/24"), "127.0.0.1".into()],
            );
        }
        Correlator::new(CorrelationConfig::default(), fleet)
    }

    fn finding(
        c: &mut Correlator,
        id: u64,
        host: &str,
        kind: &str,
        at: i64,
        a: &[(&str, &str)],
    ) -> Vec<NewFinding> {
        let a = attrs(a);
        c.observe(
            &Observation::Finding {
                id,
                host,
                kind,
                at,
                attributes: &a,
            },
            at,
        )
    }

    fn telemetry(
        c: &mut Correlator,
        host: &str,
        kind: &str,
        at: i64,
        a: &[(&str, &str)],
    ) -> Vec<NewFinding> {
        let a = attrs(a);
        c.observe(
            &Observation::Telemetry {
                host,
                kind,
                at,
                attributes: &a,
            },
            at,
        )
    }

    #[test]
    fn spread_needs_the_threshold_of_hosts_within_the_window() {
        let mut c = correlator();
        let sha = "ab".repeat(32);
        let a = [("sha256", sha.as_str()), ("exe", "/tmp/x")];
        assert!(finding(&mut c, 1, "h1", "process.unknown_binary", 0, &a).is_empty());
        // The same host again is not a second host.
        assert!(finding(&mut c, 2, "h1", "process.unknown_binary", MIN, &a).is_empty());
        assert!(finding(&mut c, 3, "h2", "process.unknown_binary", 2 * MIN, &a).is_empty());
        let out = finding(&mut c, 4, "h3", "process.unknown_binary", 3 * MIN, &a);
        assert_eq!(out.len(), 2, "by hash and by executable: {out:?}");
        let by_hash = out
            .iter()
            .find(|f| f.attributes["what"] == "sha256")
            .expect("hash");
        assert_eq!(by_hash.kind, "correlation.spread");
        assert_eq!(by_hash.attributes["hosts"], "h1,h2,h3");
        assert_eq!(by_hash.attributes["correlated_findings"], "2,3,4");
        assert_eq!(by_hash.host_id.as_str(), "h3");
        // Raised once per window.
        assert!(finding(&mut c, 5, "h4", "process.unknown_binary", 4 * MIN, &a).is_empty());
        // Two hosts, then a third after the window: nothing.
        let mut c = correlator();
        let a = [("sha256", "cd")];
        assert!(finding(&mut c, 1, "h1", "file.modified", 0, &a).is_empty());
        assert!(finding(&mut c, 2, "h2", "file.modified", MIN, &a).is_empty());
        assert!(finding(&mut c, 3, "h3", "file.modified", 62 * MIN, &a).is_empty());
    }

    #[test]
    fn packaged_executables_never_spread_and_package_mismatches_do() {
        let mut c = correlator();
        let sha = "ef".repeat(32);
        let packaged = [
            ("sha256", sha.as_str()),
            ("exe", "/usr/bin/head"),
            ("package", "coreutils 9.1-1"),
        ];
        for (i, h) in ["h1", "h2", "h3", "h4"].iter().enumerate() {
            let at = i as i64 * MIN;
            assert!(
                finding(
                    &mut c,
                    i as u64 + 1,
                    h,
                    "process.suspicious_exec",
                    at,
                    &packaged
                )
                .is_empty(),
                "an intact packaged tool is the same everywhere by design"
            );
        }
        let mut c = correlator();
        let mut out = Vec::new();
        for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
            let at = i as i64 * MIN;
            out = finding(
                &mut c,
                i as u64 + 1,
                h,
                "file.package_mismatch",
                at,
                &packaged,
            );
        }
        assert!(
            out.iter().any(|f| f.attributes["what"] == "sha256"),
            "the same trojaned package file on three hosts: {out:?}"
        );
    }

    #[test]
    fn one_account_on_many_hosts_and_spraying() {
        let mut c = correlator();
        assert!(telemetry(&mut c, "h1", "account.login", 0, &[("user", "svc")]).is_empty());
        assert!(telemetry(&mut c, "h2", "account.login", MIN, &[("user", "svc")]).is_empty());
        let out = telemetry(
            &mut c,
            "h3",
            "account.login",
            2 * MIN,
            &[("user", "svc"), ("source", "10.9.9.9")],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "correlation.account_hosts");
        assert_eq!(out[0].attributes["user"], "svc");
        // Hours apart: nothing.
        let mut c = correlator();
        for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
            assert!(
                telemetry(
                    &mut c,
                    h,
                    "account.login",
                    i as i64 * 120 * MIN,
                    &[("user", "ops")]
                )
                .is_empty()
            );
        }
        // Spraying from one source across five hosts, different accounts.
        let mut c = correlator();
        let mut raised = Vec::new();
        for i in 0..5 {
            let user = format!("user{i}");
            raised.extend(telemetry(
                &mut c,
                &format!("h{i}"),
                "account.login_failed",
                i * 1000,
                &[("user", &user), ("source", "203.0.113.7"), ("count", "3")],
            ));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].kind, "correlation.password_spray");
        assert_eq!(raised[0].attributes["by"], "source");
        assert_eq!(raised[0].attributes["source"], "203.0.113.7");
    }

    #[test]
    fn lateral_movement_in_either_arrival_order_and_not_before_the_connection() {
        let conn = [
            ("direction", "outbound"),
            ("remote_address", "10.0.0.2"),
            ("port", "22"),
        ];
        let mut c = correlator();
        assert!(telemetry(&mut c, "h1", "net.connection", 0, &conn).is_empty());
        let out = finding(
            &mut c,
            9,
            "h2",
            "account.new_user",
            2 * MIN,
            &[("user", "backdoor")],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].kind, "correlation.lateral_movement");
        assert_eq!(out[0].attributes["from"], "h1");
        assert_eq!(out[0].attributes["to"], "h2");
        assert_eq!(out[0].attributes["correlated_findings"], "9");
        // The change's batch arrives before the connection's.
        let mut c = correlator();
        assert!(
            finding(
                &mut c,
                4,
                "h2",
                "net.new_listener",
                2 * MIN,
                &[("port", "4444")]
            )
            .is_empty()
        );
        let a = attrs(&conn);
        let out = c.observe(
            &Observation::Telemetry {
                host: "h1",
                kind: "net.connection",
                at: MIN,
                attributes: &a,
            },
            3 * MIN,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        // A change well before the connection is not caused by it.
        let mut c = correlator();
        assert!(finding(&mut c, 4, "h2", "net.new_listener", 0, &[("port", "4444")]).is_empty());
        let out = c.observe(
            &Observation::Telemetry {
                host: "h1",
                kind: "net.connection",
                at: 5 * MIN,
                attributes: &a,
            },
            5 * MIN,
        );
        assert!(out.is_empty(), "{out:?}");
        // An inbound session from outside the fleet is not lateral movement.
        let mut c = correlator();
        let outside = [
            ("direction", "inbound"),
            ("remote_address", "203.0.113.9"),
            ("port", "22"),
        ];
        assert!(telemetry(&mut c, "h2", "net.connection", 0, &outside).is_empty());
        assert!(finding(&mut c, 9, "h2", "account.new_user", MIN, &[("user", "x")]).is_empty());
        // From a fleet host, inbound as B saw it: lateral.
        let mut c = correlator();
        let inside = [
            ("direction", "inbound"),
            ("remote_address", "10.0.0.1"),
            ("port", "22"),
        ];
        assert!(telemetry(&mut c, "h2", "net.connection", 0, &inside).is_empty());
        let out = finding(&mut c, 9, "h2", "account.new_user", MIN, &[("user", "x")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attributes["from"], "h1");
        // Not an admin port, or not a fleet host: nothing.
        let mut c = correlator();
        telemetry(
            &mut c,
            "h1",
            "net.connection",
            0,
            &[
                ("direction", "outbound"),
                ("remote_address", "10.0.0.2"),
                ("port", "443"),
            ],
        );
        assert!(finding(&mut c, 9, "h2", "account.new_user", MIN, &[("user", "x")]).is_empty());
    }

    #[test]
    fn fan_in_both_ways() {
        let mut c = correlator();
        let mut raised = Vec::new();
        for i in 0..10 {
            raised.extend(telemetry(
                &mut c,
                &format!("h{i}"),
                "net.connection",
                i * 1000,
                &[
                    ("direction", "outbound"),
                    ("remote_address", "198.51.100.4"),
                    ("port", "443"),
                ],
            ));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].attributes["direction"], "outbound");
        assert_eq!(raised[0].attributes["host_count"], "10");
        // Fleet peers are not "outside".
        let mut c = correlator();
        for i in 0..10 {
            assert!(
                telemetry(
                    &mut c,
                    &format!("h{i}"),
                    "net.connection",
                    i,
                    &[
                        ("direction", "outbound"),
                        ("remote_address", "10.0.0.1"),
                        ("port", "443")
                    ]
                )
                .is_empty()
            );
        }
        let mut c = correlator();
        let mut raised = Vec::new();
        for i in 0..50 {
            raised.extend(telemetry(
                &mut c,
                "h1",
                "net.connection",
                i,
                &[
                    ("direction", "inbound"),
                    ("remote_address", &format!("192.0.2.{i}")),
                    ("port", "8080"),
                ],
            ));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].attributes["peer_count"], "50");
    }

    #[test]
    fn mass_silence_is_a_share_of_the_fleet() {
        let mut c = correlator();
        assert!(finding(&mut c, 1, "h1", "host.silent", 0, &[]).is_empty());
        assert!(finding(&mut c, 2, "h2", "host.silent", 1000, &[]).is_empty());
        let out = finding(&mut c, 3, "h3", "host.silent", 2000, &[]);
        assert_eq!(out.len(), 1, "30 % of 10 hosts");
        assert_eq!(out[0].attributes["correlated_findings"], "1,2,3");
        let mut c = correlator();
        assert!(finding(&mut c, 1, "h1", "host.silent", 0, &[]).is_empty());
        assert!(finding(&mut c, 2, "h2", "host.silent", 10 * MIN, &[]).is_empty());
        assert!(finding(&mut c, 3, "h3", "host.silent", 20 * MIN, &[]).is_empty());
    }

    #[test]
    fn state_is_bounded_and_shedding_is_counted() {
        let config = CorrelationConfig {
            max_keys: 100,
            max_members: 4,
            ..CorrelationConfig::default()
        };
        let mut c = Correlator::new(config, Arc::new(FleetView::default()));
        for i in 0..10_000u64 {
            let sha = format!("{i:064x}");
            finding(
                &mut c,
                i,
                &format!("h{}", i % 7),
                "file.modified",
                i as i64,
                &[("sha256", &sha)],
            );
        }
        let stats = c.stats();
        assert!(stats.keys <= 100, "{stats:?}");
        assert_eq!(stats.shed, 9_900);
        // Time moves on: everything expires.
        c.prune(10 * 3_600_000);
        assert_eq!(c.stats().keys, 0);
    }
}
