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
