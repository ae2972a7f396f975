//! The host's account databases: `/etc/passwd`, `/etc/group`, `/etc/shadow` dates.

use std::collections::{BTreeMap, BTreeSet};

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// The comment field (full name, room, phone).
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Names of uids from the host's `/etc/passwd`, read again when it changes.
#[derive(Debug)]
pub struct UserNames {
    root: super::HostRoot,
    stamp: Option<(i64, u64)>,
    names: std::collections::HashMap<u32, String>,
    aliases: std::collections::HashMap<u32, Vec<String>>,
}

impl UserNames {
    /// Names under `root` (read at first use).
    pub fn new(root: super::HostRoot) -> Self {
        Self {
            root,
            stamp: None,
            names: std::collections::HashMap::new(),
            aliases: std::collections::HashMap::new(),
        }
    }

    fn refresh(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let passwd = self.root.join("/etc/passwd");
        let stamp = std::fs::metadata(&passwd)
            .ok()
            .map(|m| (m.mtime(), m.size()));
        if stamp != self.stamp {
            let users = std::fs::read_to_string(&passwd)
                .map(|t| parse_passwd(&t))
                .unwrap_or_default();
            self.names = names_by_uid(&users);
            self.aliases = aliases_by_uid(&users);
            self.stamp = stamp;
        }
    }

    /// The name of `uid` ("" if it has none).
    pub fn name(&mut self, uid: u32) -> String {
        self.refresh();
        self.names.get(&uid).cloned().unwrap_or_default()
    }

    /// The other names of `uid` (a uid with several accounts: `useradd -o`),
    /// comma-separated; "" for a uid with one name or none.
    pub fn aliases(&mut self, uid: u32) -> String {
        self.refresh();
        self.aliases
            .get(&uid)
            .map(|a| a.join(","))
            .unwrap_or_default()
    }

    /// Gives every file and network event that names a uid (`uid`, or the
    /// owner in `new_owner` `uid:gid`) and no `user` that account's name as
    /// `user`, so what reads the event (a Sigma rule's `User`, a responder)
    /// need not know the host's accounts. (Account events are left alone:
    /// their uid is the account's own, not an actor's.)
    pub fn name_events(&mut self, events: &mut [bannin_proto::v1::Event]) {
        for e in events {
            if !(e.kind.starts_with("file.") || e.kind.starts_with("net."))
                || e.attributes.contains_key("user")
            {
                continue;
            }
            let uid = e
                .attributes
                .get("uid")
                .map(String::as_str)
                .or_else(|| {
                    e.attributes
                        .get("new_owner")
                        .and_then(|o| o.split(':').next())
                })
                .and_then(|u| u.parse::<u32>().ok());
            if let Some(uid) = uid {
                let name = self.name(uid);
                if !name.is_empty() {
                    e.attributes.insert("user".into(), name);
                }
                let aliases = self.aliases(uid);
                if !aliases.is_empty() {
                    e.attributes.insert("user_aliases".into(), aliases);
                }
            }
        }
    }
}

/// Each uid's name: its first entry in passwd, as `getpwuid` answers. A
/// second account with uid 0 (`useradd -o -u 0 NAME`) does not take root's
/// name: root's processes stay `root`'s (the alias itself is reported as
/// `account.uid0`).
pub fn names_by_uid(users: &[User]) -> std::collections::HashMap<u32, String> {
    let mut names = std::collections::HashMap::new();
    for u in users {
        names.entry(u.uid).or_insert_with(|| u.name.clone());
    }
    names
}

/// Each uid's other names, after the first (`toor` beside `root`): a uid
/// with several accounts is worth saying, wherever its name is shown.
pub fn aliases_by_uid(users: &[User]) -> std::collections::HashMap<u32, Vec<String>> {
    let names = names_by_uid(users);
    let mut aliases: std::collections::HashMap<u32, Vec<String>> = std::collections::HashMap::new();
    for u in users {
        if names.get(&u.uid) != Some(&u.name) {
            aliases.entry(u.uid).or_default().push(u.name.clone());
        }
    }
    aliases
}

/// Parses `/etc/passwd`; malformed lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<User> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(User {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                gecos: f[4].to_owned(),
                home: f[5].to_owned(),
                shell: f[6].to_owned(),
            })
        })
        .collect()
}

/// Parses `/etc/group` into name → (gid, members).
pub fn parse_group(text: &str) -> BTreeMap<String, (u32, BTreeSet<String>)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            let members = f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect();
            Some((f[0].to_owned(), (f[2].parse().ok()?, members)))
        })
        .collect()
}

/// Name → last-change day from `/etc/shadow`; only fields 0 and 2 are kept.
pub fn parse_shadow_dates(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let _secret = f.next()?;
            let day = f.next()?;
            (!name.is_empty()).then(|| (name.to_owned(), day.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod user_names_tests {
    use super::*;

    #[test]
    fn file_and_network_events_get_the_name_of_their_uid() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .expect("write");
        let mut names = UserNames::new(super::super::HostRoot(dir.path().to_owned()));
        let event = |kind: &str, k: &str, v: &str| bannin_proto::v1::Event {
            kind: kind.into(),
            attributes: BTreeMap::from([(k.to_owned(), v.to_owned())]),
            ..Default::default()
        };
        let mut events = vec![
            event("net.connection", "uid", "1000"),
            event("file.modified", "new_owner", "0:0"),
            event("account.uid0", "uid", "0"),
            event("file.odd_name", "uid", "4242"),
        ];
        names.name_events(&mut events);
        assert_eq!(events[0].attributes["user"], "alice");
        assert_eq!(events[1].attributes["user"], "root");
        assert!(
            !events[2].attributes.contains_key("user"),
            "an account's own uid"
        );
        assert!(
            !events[3].attributes.contains_key("user"),
            "no such account"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second account with uid 0 does not take root's name: the first
    /// passwd entry of a uid names it, as `getpwuid` does.
    #[test]
    fn a_uid0_alias_leaves_root_named_root() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
        );
        let names = names_by_uid(&users);
        assert_eq!(names[&0], "root");
        assert_eq!(names[&1000], "alice");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
        )
        .expect("passwd");
        let mut resolver = UserNames::new(super::super::HostRoot(dir.path().into()));
        assert_eq!(resolver.name(0), "root");
        // …and says the uid has another name.
        assert_eq!(resolver.aliases(0), "toor");
        assert_eq!(resolver.aliases(1000), "");
        assert_eq!(aliases_by_uid(&users)[&0], ["toor"]);
        let mut events = vec![bannin_proto::v1::Event {
            kind: "net.connection".into(),
            attributes: [("uid".to_owned(), "0".to_owned())].into(),
            ..Default::default()
        }];
        resolver.name_events(&mut events);
        assert_eq!(events[0].attributes["user"], "root");
        assert_eq!(events[0].attributes["user_aliases"], "toor");
    }
}
