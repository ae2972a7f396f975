//! Accounts: `/etc/passwd` and `/etc/group` against the last sweep, and the
//! password-change dates of `/etc/shadow` (its hashes are never read into memory
//! past the line being split, never stored, never sent).
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `account.uid0` | an account other than `root` has uid 0 (also at the first sweep) | critical |
//! | `account.new_user` | an account appears | high |
//! | `account.new_group` | a group appears | medium |
//! | `account.group_member` | someone joins a privileged group (root, sudo, wheel, admin, adm, docker, lxd) | high |
//! | `account.user_removed`, `account.password_changed` | telemetry | info |

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};

use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::SensorCommon;
pub use crate::host::accounts::{User, parse_group, parse_passwd, parse_shadow_dates};

/// Groups whose members can become root.
pub const PRIVILEGED_GROUPS: &[&str] = &["root", "sudo", "wheel", "admin", "adm", "docker", "lxd"];

/// What the sensor remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsState {
    /// User name → uid.
    pub users: BTreeMap<String, u32>,
    /// Group name → members.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// User name → day of the last password change (from shadow).
    pub password_days: BTreeMap<String, String>,
    /// uid-0 accounts already reported.
    pub uid0_reported: BTreeSet<String>,
}

/// The sensor.
pub struct Accounts {
    root: HostRoot,
    config: SensorCommon,
    state: Option<AccountsState>,
}

impl Accounts {
    /// A sensor reading under `root`, starting from what it saved last.
    pub fn new(root: HostRoot, config: SensorCommon, state: Option<AccountsState>) -> Self {
        Self {
            root,
            config,
            state,
        }
    }
}

fn user_attributes(u: &User) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("user".to_owned(), u.name.clone()),
        ("uid".to_owned(), u.uid.to_string()),
        ("gid".to_owned(), u.gid.to_string()),
        ("home".to_owned(), u.home.clone()),
        ("shell".to_owned(), u.shell.clone()),
    ])
}

impl Sensor for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn relearn(&mut self) {
        self.state = None;
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let read = |path: &str| {
            let real = self.root.join(path);
            std::fs::read_to_string(&real)
                .map_err(|source| SensorError::Read { path: real, source })
        };
        let users = parse_passwd(&read("/etc/passwd")?);
        let groups = parse_group(&read("/etc/group")?);
        let (shadow, shadow_health) = match read("/etc/shadow") {
            Ok(text) => (Some(parse_shadow_dates(&text)), Health::Ok),
            Err(e) => (
                None,
                Health::Degraded(format!("{e}: password changes are not seen (needs root)")),
            ),
        };
        let first = self.state.is_none();
        let old = self.state.clone().unwrap_or_default();
        let mut new = AccountsState {
            users: users.iter().map(|u| (u.name.clone(), u.uid)).collect(),
            groups: groups
                .iter()
                .map(|(n, (_, m))| (n.clone(), m.clone()))
                .collect(),
            password_days: shadow.clone().unwrap_or_else(|| old.password_days.clone()),
            uid0_reported: BTreeSet::new(),
        };
        let out = &mut sweep.events;
        for u in &users {
            if u.uid == 0 && u.name != "root" {
                new.uid0_reported.insert(u.name.clone());
                if !old.uid0_reported.contains(&u.name) {
                    out.push(event(
                        "account.uid0",
                        Severity::Critical,
                        true,
                        user_attributes(u),
                        format!("account {} has uid 0: a second root", u.name),
                    ));
                }
            }
            if !first && !old.users.contains_key(&u.name) {
                out.push(event(
                    "account.new_user",
                    Severity::High,
                    true,
                    user_attributes(u),
                    format!("new account {} (uid {}, shell {})", u.name, u.uid, u.shell),
                ));
            }
        }
        if !first {
            for gone in old.users.keys().filter(|n| !new.users.contains_key(*n)) {
                out.push(event(
                    "account.user_removed",
                    Severity::Info,
                    false,
                    BTreeMap::from([("user".to_owned(), gone.clone())]),
                    format!("account {gone} removed"),
                ));
            }
            for (name, (gid, members)) in &groups {
                match old.groups.get(name) {
                    None => out.push(event(
                        "account.new_group",
                        Severity::Medium,
                        true,
                        BTreeMap::from([
                            ("group".to_owned(), name.clone()),
                            ("gid".to_owned(), gid.to_string()),
                            ("members".to_owned(), join(members)),
                        ]),
                        format!("new group {name} (gid {gid})"),
                    )),
                    Some(before) if PRIVILEGED_GROUPS.contains(&name.as_str()) => {
                        for m in members.difference(before) {
                            out.push(event(
                                "account.group_member",
                                Severity::High,
                                true,
                                BTreeMap::from([
                                    ("group".to_owned(), name.clone()),
                                    ("user".to_owned(), m.clone()),
                                ]),
                                format!("{m} joined the privileged group {name}"),
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
            if let Some(shadow) = &shadow {
                for (name, day) in shadow {
                    if old.password_days.get(name).is_some_and(|d| d != day) {
                        out.push(event(
                            "account.password_changed",
                            Severity::Info,
                            false,
                            BTreeMap::from([
                                ("user".to_owned(), name.clone()),
                                ("last_change_day".to_owned(), day.clone()),
                            ]),
                            format!("password of {name} changed"),
                        ));
                    }
                }
            }
        }
        if self.state.as_ref() != Some(&new) {
            sweep.save_state(&new);
            self.state = Some(new);
        }
        Ok(shadow_health)
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www:/var/www:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:alice\nwww-data:x:33:\n";
    const SHADOW: &str = "root:$6$secret:19000:0:99999:7:::\nwww-data:*:19000:0:99999:7:::\n";

    fn fixture() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).expect("passwd");
        std::fs::write(dir.path().join("etc/group"), GROUP).expect("group");
        std::fs::write(dir.path().join("etc/shadow"), SHADOW).expect("shadow");
        let config = SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::High,
        };
        let sensor = Accounts::new(HostRoot(dir.path().into()), config, None);
        (dir, sensor)
    }

    fn kinds(s: &Sweep) -> Vec<&str> {
        s.events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn a_quiet_baseline_then_every_change_once() {
        let (dir, mut sensor) = fixture();
        let mut baseline = Sweep::default();
        assert_eq!(sensor.sweep(&mut baseline).expect("sweep"), Health::Ok);
        assert!(baseline.events.is_empty(), "{:?}", kinds(&baseline));
        let mut quiet = Sweep::default();
        sensor.sweep(&mut quiet).expect("sweep");
        assert!(quiet.events.is_empty() && quiet.state.is_none());

        std::fs::write(
            dir.path().join("etc/passwd"),
            format!(
                "{PASSWD}toor:x:0:0::/root:/bin/sh\nmallory:x:1001:1001::/home/mallory:/bin/bash\n"
            ),
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nsudo:x:27:alice,mallory\nwww-data:x:33:\nmallory:x:1001:\n",
        )
        .expect("group");
        std::fs::write(
            dir.path().join("etc/shadow"),
            SHADOW.replace("root:$6$secret:19000", "root:$6$other:19500"),
        )
        .expect("shadow");
        let mut changed = Sweep::default();
        sensor.sweep(&mut changed).expect("sweep");
        let mut k = kinds(&changed);
        k.sort_unstable();
        assert_eq!(
            k,
            [
                "account.group_member",
                "account.new_group",
                "account.new_user",
                "account.new_user",
                "account.password_changed",
                "account.uid0"
            ]
        );
        let uid0 = changed
            .events
            .iter()
            .find(|e| e.kind == "account.uid0")
            .expect("uid0");
        assert_eq!(uid0.severity, Severity::Critical as i32);
        assert_eq!(uid0.attributes["user"], "toor");
        assert!(
            changed
                .events
                .iter()
                .all(|e| !e.attributes.values().any(|v| v.contains("$6$"))),
            "no password hash leaves the host"
        );
        let mut again = Sweep::default();
        sensor.sweep(&mut again).expect("sweep");
        assert!(again.events.is_empty(), "{:?}", kinds(&again));
    }

    #[test]
    fn relearning_makes_the_next_sweep_quiet_then_watches_again() {
        let (dir, mut sensor) = fixture();
        sensor.sweep(&mut Sweep::default()).expect("baseline");
        let add = |name: &str, uid: u32| {
            let path = dir.path().join("etc/passwd");
            let mut text = std::fs::read_to_string(&path).expect("passwd");
            text.push_str(&format!("{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n"));
            std::fs::write(path, text).expect("passwd");
        };
        add("deploy", 1500);
        sensor.relearn();
        let mut relearned = Sweep::default();
        sensor.sweep(&mut relearned).expect("sweep");
        assert!(relearned.events.is_empty(), "the planned change is learned");
        add("intruder", 1501);
        let mut after = Sweep::default();
        sensor.sweep(&mut after).expect("sweep");
        assert_eq!(kinds(&after), ["account.new_user"]);
        assert_eq!(after.events[0].attributes["user"], "intruder");
    }

    #[test]
    fn a_second_root_is_reported_even_in_the_baseline() {
        let (dir, _) = fixture();
        std::fs::write(
            dir.path().join("etc/passwd"),
            format!("{PASSWD}backdoor:x:0:0::/:/bin/sh\n"),
        )
        .expect("passwd");
        let config = SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::High,
        };
        let mut sensor = Accounts::new(HostRoot(dir.path().into()), config, None);
        let mut first = Sweep::default();
        sensor.sweep(&mut first).expect("sweep");
        assert_eq!(kinds(&first), ["account.uid0"]);
    }

    #[test]
    fn unreadable_shadow_degrades_and_missing_passwd_fails() {
        let (dir, mut sensor) = fixture();
        std::fs::remove_file(dir.path().join("etc/shadow")).expect("rm");
        let mut s = Sweep::default();
        assert!(matches!(
            sensor.sweep(&mut s).expect("sweep"),
            Health::Degraded(_)
        ));
        std::fs::remove_file(dir.path().join("etc/passwd")).expect("rm");
        assert!(sensor.sweep(&mut Sweep::default()).is_err());
    }
}
