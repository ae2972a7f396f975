//! Accounts: `/etc/passwd` and `/etc/group` against the last sweep, the
//! password-change dates of `/etc/shadow` (its hashes are never read into
//! memory past the line being split, never stored, never sent), and every
//! account's authorized SSH keys.
//!
//! | kind | when | default severity |
//! |---|---|---|
//! | `account.uid0` | an account other than `root` has uid 0 (also at the first sweep) | critical |
//! | `account.new_user` | an account appears (its own new primary group folded in) | high |
//! | `account.new_group` | a group appears that is not a new account's own | medium |
//! | `account.group_member` | someone joins a privileged group (root, sudo, wheel, admin, adm, docker, lxd) | high |
//! | `account.user_changed` | an account's uid, primary group, home or shell changes (high when a shell that refused logins becomes one that takes them) | medium |
//! | `account.ssh_key_added` | a key appears in an account's `authorized_keys` files, or its options change | high |
//! | `account.ssh_key_removed` | a key leaves them | low |
//! | `account.user_removed`, `account.password_changed`, `account.files_changed` | telemetry | info |
//!
//! **Who did it.** The fanotify readers name the process that wrote the
//! account files or a key file ([`AccountWriters`]); the accounts sensor is
//! woken by them and names that process on its findings (`by_pid`, `by_exe`,
//! `by_comm`, `by_uid`). The account files an account tool (`useradd`,
//! `usermod`, `passwd`…) changed are listed in its account finding (`changed_files`)
//! instead of being raised one by one as `file.modified`: one `useradd` is one
//! finding. When a change is seen before its writer is named, the sweep waits
//! up to [`SETTLE`] for the readers before it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bannin_proto::v1::Severity;
use serde::{Deserialize, Serialize};

use super::source::writers::{AccountWriters, Write};
use super::{Health, HostRoot, Sensor, SensorError, Sweep, event};
use crate::config::SensorCommon;
pub use crate::host::accounts::{User, parse_group, parse_passwd, parse_shadow_dates};
use crate::host::ssh_keys;

/// Groups whose members can become root.
pub const PRIVILEGED_GROUPS: &[&str] = &["root", "sudo", "wheel", "admin", "adm", "docker", "lxd"];

/// The longest a sweep waits for the readers to name the writer of a change.
pub const SETTLE: Duration = Duration::from_secs(5);

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
    /// User name → what `account.user_changed` compares (empty in a state
    /// saved before it existed: learned quietly).
    #[serde(default)]
    pub details: BTreeMap<String, UserDetails>,
    /// Key file (host path) → its owner and keys by fingerprint (`None` in a
    /// state saved before keys were read: learned quietly).
    #[serde(default)]
    pub keys: Option<BTreeMap<String, KeyFile>>,
}

/// The fields of an account `account.user_changed` watches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDetails {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One key file as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// The account it lets in.
    pub user: String,
    /// Fingerprint → (type, comment, options).
    pub keys: BTreeMap<String, (String, String, String)>,
}

/// The sensor.
pub struct Accounts {
    root: HostRoot,
    config: SensorCommon,
    state: Option<AccountsState>,
    writers: Option<AccountWriters>,
}

/// One look at the account files and keys against the last state.
struct Judgement {
    state: AccountsState,
    events: Vec<bannin_proto::v1::Event>,
    /// Key files whose keys changed (host paths).
    changed_keys: BTreeSet<PathBuf>,
    /// Whether passwd, group or shadow differ from the last state.
    accounts_changed: bool,
    health: Health,
}

impl Accounts {
    /// A sensor reading under `root`, starting from what it saved last.
    pub fn new(root: HostRoot, config: SensorCommon, state: Option<AccountsState>) -> Self {
        Self {
            root,
            config,
            state,
            writers: None,
        }
    }

    /// Names the writers of changes from what the fanotify readers hand over,
    /// and sweeps when they do.
    pub fn with_writers(mut self, writers: AccountWriters) -> Self {
        self.writers = Some(writers);
        self
    }

    /// Reads everything and compares it with the last state.
    fn judge(&self) -> Result<Judgement, SensorError> {
        let read = |path: &str| {
            let real = self.root.join(path);
            std::fs::read_to_string(&real)
                .map_err(|source| SensorError::Read { path: real, source })
        };
        let users = parse_passwd(&read("/etc/passwd")?);
        let groups = parse_group(&read("/etc/group")?);
        let (shadow, mut health) = match read("/etc/shadow") {
            Ok(text) => (Some(parse_shadow_dates(&text)), Health::Ok),
            Err(e) => (
                None,
                Health::Degraded(format!("{e}: password changes are not seen (needs root)")),
            ),
        };
        let first = self.state.is_none();
        let old = self.state.clone().unwrap_or_default();
        let (keys, unreadable) = self.read_keys(&users);
        if let Some((path, why)) = unreadable.first()
            && health == Health::Ok
        {
            health = Health::Degraded(format!(
                "{} key file(s) not read, e.g. {}: {why}",
                unreadable.len(),
                path.display()
            ));
        }
        let new = AccountsState {
            users: users.iter().map(|u| (u.name.clone(), u.uid)).collect(),
            groups: groups
                .iter()
                .map(|(n, (_, m))| (n.clone(), m.clone()))
                .collect(),
            password_days: shadow.clone().unwrap_or_else(|| old.password_days.clone()),
            uid0_reported: users
                .iter()
                .filter(|u| u.uid == 0 && u.name != "root")
                .map(|u| u.name.clone())
                .collect(),
            details: users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        UserDetails {
                            uid: u.uid,
                            gid: u.gid,
                            home: u.home.clone(),
                            shell: u.shell.clone(),
                        },
                    )
                })
                .collect(),
            keys: Some(keys),
        };
        let accounts_changed = !first
            && (old.users != new.users
                || old.groups != new.groups
                || old.details != new.details
                || (shadow.is_some() && old.password_days != new.password_days));
        let mut events = Vec::new();
        for u in &users {
            if u.uid == 0 && u.name != "root" && !old.uid0_reported.contains(&u.name) {
                events.push(event(
                    "account.uid0",
                    Severity::Critical,
                    true,
                    user_attributes(u),
                    format!("account {} has uid 0: a second root", u.name),
                ));
            }
        }
        let mut changed_keys = BTreeSet::new();
        if !first {
            account_events(&old, &users, &groups, shadow.as_ref(), &mut events);
            if let (Some(before), Some(after)) = (&old.keys, &new.keys) {
                changed_keys = key_events(before, after, &mut events);
            }
        }
        Ok(Judgement {
            state: new,
            events,
            changed_keys,
            accounts_changed,
            health,
        })
    }

    /// Every account's key files and their keys; the files that could not be read.
    fn read_keys(
        &self,
        users: &[User],
    ) -> (
        BTreeMap<String, KeyFile>,
        Vec<(PathBuf, ssh_keys::KeyFileError)>,
    ) {
        let files = ssh_keys::key_files(users, &ssh_keys::patterns(&self.root));
        if let Some(w) = &self.writers {
            w.set_key_files(files.iter().map(|(_, p)| p.clone()).collect());
        }
        let mut out = BTreeMap::new();
        let mut unreadable = Vec::new();
        for (user, path) in files {
            match ssh_keys::read_keys(&self.root.join(&path)) {
                Ok(None) => {}
                Ok(Some(keys)) => {
                    out.insert(
                        path.display().to_string(),
                        KeyFile {
                            user,
                            keys: keys
                                .into_iter()
                                .map(|k| (k.fingerprint, (k.key_type, k.comment, k.options)))
                                .collect(),
                        },
                    );
                }
                Err(why) => unreadable.push((path, why)),
            }
        }
        (out, unreadable)
    }

    /// Whether a change in `judged` is still waiting for its writer to be named.
    fn awaiting_writers(&self, judged: &Judgement) -> bool {
        let Some(w) = &self.writers else {
            return false;
        };
        let (accounts, keys) = w.attributed();
        (accounts && judged.accounts_changed && !w.pending(None))
            || (keys && judged.changed_keys.iter().any(|p| !w.pending(Some(p))))
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

/// Shells that refuse logins.
fn refuses_logins(shell: &str) -> bool {
    shell.is_empty() || shell.ends_with("/nologin") || shell.ends_with("/false")
}

/// What changed in passwd, group and shadow since `old`.
fn account_events(
    old: &AccountsState,
    users: &[User],
    groups: &BTreeMap<String, (u32, BTreeSet<String>)>,
    shadow: Option<&BTreeMap<String, String>>,
    out: &mut Vec<bannin_proto::v1::Event>,
) {
    // A new account's own primary group, created with it, is part of it.
    let mut own_groups = BTreeSet::new();
    for u in users {
        if old.users.contains_key(&u.name) {
            continue;
        }
        let mut a = user_attributes(u);
        let mut summary = format!("new account {} (uid {}, shell {})", u.name, u.uid, u.shell);
        if let Some((name, _)) = groups
            .iter()
            .find(|(name, (gid, _))| *gid == u.gid && !old.groups.contains_key(*name))
        {
            own_groups.insert(name.clone());
            a.insert("group".into(), name.clone());
            a.insert("group_created".into(), "true".into());
            summary.push_str(&format!(", with its group {name}"));
        }
        a.insert("attack.technique".into(), "T1136.001".into());
        out.push(event("account.new_user", Severity::High, true, a, summary));
    }
    for u in users {
        let Some(before) = old.details.get(&u.name) else {
            continue;
        };
        let mut changes = Vec::new();
        let mut a = user_attributes(u);
        let mut note = |field: &str, was: String, now: String| {
            if was != now {
                changes.push(format!("{field} {was} → {now}"));
                a.insert(format!("old_{field}"), was);
            }
        };
        note("uid", before.uid.to_string(), u.uid.to_string());
        note("gid", before.gid.to_string(), u.gid.to_string());
        note("home", before.home.clone(), u.home.clone());
        note("shell", before.shell.clone(), u.shell.clone());
        if changes.is_empty() {
            continue;
        }
        let opened = refuses_logins(&before.shell) && !refuses_logins(&u.shell);
        if opened {
            a.insert("login_enabled".into(), "true".into());
        }
        a.insert("attack.technique".into(), "T1098".into());
        out.push(event(
            "account.user_changed",
            if opened {
                Severity::High
            } else {
                Severity::Medium
            },
            true,
            a,
            format!(
                "account {} changed: {}{}",
                u.name,
                changes.join(", "),
                if opened { " (it can log in now)" } else { "" }
            ),
        ));
    }
    let now: BTreeSet<&String> = users.iter().map(|u| &u.name).collect();
    for gone in old.users.keys().filter(|n| !now.contains(n)) {
        out.push(event(
            "account.user_removed",
            Severity::Info,
            false,
            BTreeMap::from([("user".to_owned(), gone.clone())]),
            format!("account {gone} removed"),
        ));
    }
    for (name, (gid, members)) in groups {
        match old.groups.get(name) {
            None if own_groups.contains(name) => {}
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
    if let Some(shadow) = shadow {
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

/// Keys added, removed or given other options; the files whose keys changed.
fn key_events(
    before: &BTreeMap<String, KeyFile>,
    after: &BTreeMap<String, KeyFile>,
    out: &mut Vec<bannin_proto::v1::Event>,
) -> BTreeSet<PathBuf> {
    let empty = KeyFile::default();
    let mut changed = BTreeSet::new();
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for path in paths {
        let old = before.get(path).unwrap_or(&empty);
        let new = after.get(path).unwrap_or(&empty);
        let user = if new.user.is_empty() {
            &old.user
        } else {
            &new.user
        };
        let attrs = |fp: &str, (key_type, comment, options): &(String, String, String)| {
            let mut a = BTreeMap::from([
                ("user".to_owned(), user.clone()),
                ("path".to_owned(), path.clone()),
                ("fingerprint".to_owned(), fp.to_owned()),
                ("key_type".to_owned(), key_type.clone()),
                ("comment".to_owned(), comment.clone()),
                ("attack.technique".to_owned(), "T1098.004".to_owned()),
            ]);
            if !options.is_empty() {
                a.insert("options".into(), options.clone());
            }
            a
        };
        for (fp, key) in &new.keys {
            let mut a = attrs(fp, key);
            let summary = match old.keys.get(fp) {
                Some(was) if was.2 == key.2 => continue,
                Some(was) => {
                    a.insert("change".into(), "options".into());
                    a.insert("old_options".into(), was.2.clone());
                    format!(
                        "SSH key {} {fp} of {user} now has options {:?} (was {:?}): {path}",
                        key.0, key.2, was.2
                    )
                }
                None => {
                    a.insert("change".into(), "added".into());
                    format!(
                        "SSH key added for {user}: {} {fp} {:?} in {path}",
                        key.0, key.1
                    )
                }
            };
            changed.insert(PathBuf::from(path));
            out.push(event(
                "account.ssh_key_added",
                Severity::High,
                true,
                a,
                summary,
            ));
        }
        for (fp, key) in old
            .keys
            .iter()
            .filter(|(fp, _)| !new.keys.contains_key(*fp))
        {
            changed.insert(PathBuf::from(path));
            out.push(event(
                "account.ssh_key_removed",
                Severity::Low,
                true,
                attrs(fp, key),
                format!(
                    "SSH key removed for {user}: {} {fp} {:?} from {path}",
                    key.0, key.1
                ),
            ));
        }
    }
    changed
}

/// Names who wrote each change on its events: key events by the writers of
/// their file, account events by the account tools that wrote the account
/// files (listed in `changed_files`). Account-file writes no account event explains
/// are `account.files_changed` telemetry.
fn attribute(events: &mut Vec<bannin_proto::v1::Event>, writes: &[Write]) {
    let account_writes: Vec<&Write> = writes
        .iter()
        .filter(|w| AccountWriters::is_account_file(&w.path))
        .collect();
    // The tools' lock and scratch files are not worth listing.
    let mut files: Vec<String> = account_writes
        .iter()
        .filter(|w| AccountWriters::is_account_database(&w.path))
        .map(|w| w.path.display().to_string())
        .collect();
    files.sort();
    files.dedup();
    let mut tools: Vec<&Write> = Vec::new();
    for w in &account_writes {
        if !tools.iter().any(|t| t.writer.pid == w.writer.pid) {
            tools.push(w);
        }
    }
    let mut explained = false;
    for e in events.iter_mut() {
        if e.kind.starts_with("account.ssh_key_") {
            let path = e.attributes.get("path").map(PathBuf::from);
            if let Some(w) = writes.iter().rev().find(|w| Some(&w.path) == path.as_ref()) {
                name_writer(e, w);
            }
        } else if e.kind.starts_with("account.") && !tools.is_empty() {
            explained = true;
            name_writer(e, tools[0]);
            e.attributes
                .insert("changed_files".into(), files.join(", "));
            if tools.len() > 1 {
                e.attributes.insert(
                    "tools".into(),
                    tools
                        .iter()
                        .map(|t| t.writer.describe())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
        }
    }
    if !explained && !tools.is_empty() {
        let mut e = event(
            "account.files_changed",
            Severity::Info,
            false,
            BTreeMap::from([("changed_files".to_owned(), files.join(", "))]),
            format!("account files changed: {}", files.join(", ")),
        );
        name_writer(&mut e, tools[0]);
        events.push(e);
    }
}

fn name_writer(e: &mut bannin_proto::v1::Event, w: &Write) {
    let a = &mut e.attributes;
    a.insert("by_pid".into(), w.writer.pid.to_string());
    for (k, v) in [
        ("by_exe", &w.writer.exe),
        ("by_comm", &w.writer.comm),
        ("by_uid", &w.writer.uid),
    ] {
        if !v.is_empty() {
            a.insert(k.into(), v.clone());
        }
    }
    e.summary
        .push_str(&format!(" — by {}", w.writer.describe()));
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

    fn waker(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        self.writers.as_ref().map(AccountWriters::waker)
    }

    fn sweep(&mut self, sweep: &mut Sweep) -> Result<Health, SensorError> {
        let mut judged = self.judge()?;
        if !judged.events.is_empty() && self.awaiting_writers(&judged) {
            // Seen before the readers named who did it: give them a moment,
            // then look again (a tool may still have been writing).
            let deadline = Instant::now() + SETTLE;
            while Instant::now() < deadline
                && !sweep.stop.is_set()
                && self.awaiting_writers(&judged)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            judged = self.judge()?;
        }
        let taken = self
            .writers
            .as_ref()
            .map(AccountWriters::take)
            .unwrap_or_default();
        attribute(&mut judged.events, &taken.writes);
        if taken.dropped > 0 && judged.health == Health::Ok {
            judged.health = Health::Degraded(format!(
                "{} writes of account or key files arrived faster than this sensor looked: their writers are not named",
                taken.dropped
            ));
        }
        sweep.events.append(&mut judged.events);
        if self.state.as_ref() != Some(&judged.state) {
            sweep.save_state(&judged.state);
            self.state = Some(judged.state);
        }
        Ok(judged.health)
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
                "account.new_user",
                "account.new_user",
                "account.password_changed",
                "account.uid0"
            ],
            "mallory's own group, created with it, is part of its finding"
        );
        let mallory = changed
            .events
            .iter()
            .find(|e| e.kind == "account.new_user" && e.attributes["user"] == "mallory")
            .expect("mallory");
        assert_eq!(mallory.attributes["group"], "mallory");
        assert_eq!(mallory.attributes["group_created"], "true");
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

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC5Sk4fD/kD2wmeRxx8U2JDJSxpfjDbc95BhLIlJQgmd alice@laptop";
    const KEY_FP: &str = "SHA256:r9jPzQxvSX1M2tMh6cyeh2ln41IrAogPTFWBqGpNT4c";

    fn event_of<'a>(s: &'a Sweep, kind: &str) -> &'a bannin_proto::v1::Event {
        s.events
            .iter()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(s)))
    }

    #[test]
    fn keys_added_changed_and_removed_name_the_account_and_fingerprint() {
        let (dir, mut sensor) = fixture();
        let ssh = dir.path().join("root/.ssh");
        std::fs::create_dir_all(&ssh).expect("mkdir");
        let keys = ssh.join("authorized_keys");
        sensor.sweep(&mut Sweep::default()).expect("baseline");
        std::fs::write(&keys, format!("{KEY}\n")).expect("write");
        let mut added = Sweep::default();
        sensor.sweep(&mut added).expect("sweep");
        assert_eq!(kinds(&added), ["account.ssh_key_added"]);
        let e = &added.events[0];
        assert_eq!(e.attributes["user"], "root");
        assert_eq!(e.attributes["path"], "/root/.ssh/authorized_keys");
        assert_eq!(e.attributes["fingerprint"], KEY_FP);
        assert_eq!(e.attributes["key_type"], "ssh-ed25519");
        assert_eq!(e.attributes["comment"], "alice@laptop");
        assert_eq!(e.severity, Severity::High as i32);
        assert!(e.indicator);

        let mut quiet = Sweep::default();
        sensor.sweep(&mut quiet).expect("sweep");
        assert!(quiet.events.is_empty(), "{:?}", kinds(&quiet));

        std::fs::write(&keys, format!("command=\"/bin/sh\" {KEY}\n")).expect("write");
        let mut options = Sweep::default();
        sensor.sweep(&mut options).expect("sweep");
        assert_eq!(kinds(&options), ["account.ssh_key_added"]);
        assert_eq!(options.events[0].attributes["change"], "options");
        assert_eq!(
            options.events[0].attributes["options"],
            "command=\"/bin/sh\""
        );

        std::fs::write(&keys, "# emptied\n").expect("write");
        let mut removed = Sweep::default();
        sensor.sweep(&mut removed).expect("sweep");
        assert_eq!(kinds(&removed), ["account.ssh_key_removed"]);
        assert_eq!(removed.events[0].attributes["fingerprint"], KEY_FP);
    }

    #[test]
    fn keys_present_at_the_first_look_or_after_an_upgrade_are_learned_quietly() {
        let (dir, _) = fixture();
        std::fs::create_dir_all(dir.path().join("root/.ssh")).expect("mkdir");
        std::fs::write(dir.path().join("root/.ssh/authorized_keys2"), KEY).expect("write");
        let config = || SensorCommon {
            enabled: true,
            interval: Duration::from_secs(1),
            severity: Severity::High,
        };
        let mut fresh = Accounts::new(HostRoot(dir.path().into()), config(), None);
        let mut first = Sweep::default();
        fresh.sweep(&mut first).expect("sweep");
        assert!(first.events.is_empty(), "{:?}", kinds(&first));
        // A state saved before keys (and account details) were kept.
        let mut old = fresh.state.clone().expect("state");
        old.keys = None;
        old.details.clear();
        let mut upgraded = Accounts::new(HostRoot(dir.path().into()), config(), Some(old));
        let mut after = Sweep::default();
        upgraded.sweep(&mut after).expect("sweep");
        assert!(after.events.is_empty(), "{:?}", kinds(&after));
    }

    #[test]
    fn a_shell_that_refused_logins_taking_them_is_high() {
        let (dir, mut sensor) = fixture();
        sensor.sweep(&mut Sweep::default()).expect("baseline");
        std::fs::write(
            dir.path().join("etc/passwd"),
            PASSWD.replace("/var/www:/usr/sbin/nologin", "/var/www:/bin/bash"),
        )
        .expect("passwd");
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        let e = event_of(&s, "account.user_changed");
        assert_eq!(e.attributes["user"], "www-data");
        assert_eq!(e.attributes["old_shell"], "/usr/sbin/nologin");
        assert_eq!(e.attributes["login_enabled"], "true");
        assert_eq!(e.severity, Severity::High as i32);
    }

    fn tool(pid: u32, name: &str) -> super::super::source::writers::Writer {
        super::super::source::writers::Writer {
            pid,
            exe: format!("/usr/sbin/{name}"),
            comm: name.into(),
            uid: "0".into(),
        }
    }

    #[test]
    fn one_useradd_is_one_finding_listing_the_files_it_changed() {
        let (dir, sensor) = fixture();
        let writers = AccountWriters::default();
        writers.attribute_accounts();
        let mut sensor = sensor.with_writers(writers.clone());
        sensor.sweep(&mut Sweep::default()).expect("baseline");
        std::fs::write(
            dir.path().join("etc/passwd"),
            format!("{PASSWD}mallory:x:1001:1001::/home/mallory:/bin/bash\n"),
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            format!("{GROUP}mallory:x:1001:\n"),
        )
        .expect("group");
        for f in [
            "passwd",
            "passwd-",
            "passwd.4242",
            "group",
            "group-",
            "shadow",
            ".pwd.lock",
        ] {
            writers.record(PathBuf::from("/etc").join(f), tool(4242, "useradd"));
        }
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        assert_eq!(kinds(&s), ["account.new_user"], "one finding");
        let e = &s.events[0];
        assert_eq!(
            e.attributes["changed_files"],
            "/etc/group, /etc/group-, /etc/passwd, /etc/passwd-, /etc/shadow"
        );
        assert_eq!(e.attributes["by_exe"], "/usr/sbin/useradd");
        assert_eq!(e.attributes["by_pid"], "4242");
        assert!(
            e.summary.ends_with("— by useradd (pid 4242)"),
            "{}",
            e.summary
        );

        // A tool's change that moves nothing the sensor compares is telemetry.
        writers.record(PathBuf::from("/etc/shadow"), tool(4343, "chage"));
        let mut t = Sweep::default();
        sensor.sweep(&mut t).expect("sweep");
        assert_eq!(kinds(&t), ["account.files_changed"]);
        assert!(!t.events[0].indicator);
        assert_eq!(t.events[0].attributes["by_comm"], "chage");
    }

    #[test]
    fn a_change_seen_before_its_writer_waits_for_the_reader_to_name_it() {
        let (dir, sensor) = fixture();
        let writers = AccountWriters::default();
        writers.attribute_keys();
        let mut sensor = sensor.with_writers(writers.clone());
        std::fs::create_dir_all(dir.path().join("root/.ssh")).expect("mkdir");
        sensor.sweep(&mut Sweep::default()).expect("baseline");
        std::fs::write(dir.path().join("root/.ssh/authorized_keys"), KEY).expect("write");
        // The reader names the writer a moment after the sweep saw the key.
        let late = writers.clone();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            late.record(
                PathBuf::from("/root/.ssh/authorized_keys"),
                super::super::source::writers::Writer {
                    pid: 77,
                    exe: "/usr/bin/cat".into(),
                    comm: "cat".into(),
                    uid: "0".into(),
                },
            );
        });
        let mut s = Sweep::default();
        sensor.sweep(&mut s).expect("sweep");
        reader.join().expect("reader");
        let e = event_of(&s, "account.ssh_key_added");
        assert_eq!(e.attributes["by_exe"], "/usr/bin/cat");
        assert_eq!(e.attributes["by_uid"], "0");
    }
}
