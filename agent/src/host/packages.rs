//! The OS package database: which files the package manager installed, and what
//! their contents must be. A responder trusts `/usr/bin/head` because dpkg put it
//! there with a known digest, not because the agent happened to see it running in
//! its first hour.
//!
//! On Debian and Ubuntu the index comes from dpkg's own files under the
//! [`HostRoot`]: `/var/lib/dpkg/status` (which packages are installed, their
//! versions) and `/var/lib/dpkg/info/PACKAGE[:ARCH].md5sums` (each regular file's
//! MD5, as `debsums` checks it). It is held compactly — a sorted array of
//! (path hash, first 8 bytes of the MD5, package), about 18 bytes per file, 1.6 MiB
//! for this machine's 91,593 files — and reloaded when `status` changes. The full
//! digest of a file that no longer matches is read back from its package's
//! `md5sums` when it is reported.
//!
//! Merged-`/usr` systems: dpkg may list `/bin/ls` while the kernel shows
//! `/usr/bin/ls` (and the reverse); a lookup tries both spellings.
//!
//! The RHEL family (rpm) is not read yet: on a host with `/var/lib/rpm` and no
//! dpkg database the index is empty and [`PackageIndex::problem`] says why.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use super::HostRoot;

/// dpkg's package list.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// dpkg's per-package file lists and digests.
const DPKG_INFO: &str = "/var/lib/dpkg/info";

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Name, with `:ARCH` for multi-arch packages as dpkg names their files.
    pub name: String,
    /// Installed version.
    pub version: String,
}

/// What the package database says of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged<'a> {
    /// The package that installed it.
    pub package: &'a Package,
    /// The spelling of the path the package lists.
    pub listed_as: String,
    /// The first 8 bytes of the MD5 the package recorded.
    md5_prefix: [u8; 8],
    /// A configuration file (dpkg's `Conffiles:`): the administrator may edit
    /// it, so a different content is not a mismatch.
    pub conffile: bool,
}

impl Packaged<'_> {
    /// Whether `md5` is the digest the package recorded.
    pub fn matches(&self, md5: &[u8; 16]) -> bool {
        md5[..8] == self.md5_prefix
    }
}

/// The index of every packaged regular file and its digest.
#[derive(Debug, Default)]
pub struct PackageIndex {
    /// Sorted by path hash.
    hashes: Vec<u64>,
    /// Parallel to `hashes`.
    md5_prefixes: Vec<[u8; 8]>,
    /// Parallel to `hashes`: index into `packages`, with [`CONFFILE`] set for
    /// configuration files.
    owners: Vec<u32>,
    packages: Vec<Package>,
    /// Every installed package (`name[:arch]` as dpkg names it) and its version,
    /// sorted: what a transaction changed is the difference of two of these.
    installed: Vec<(String, String)>,
    /// `status`'s (mtime s, mtime ns, size) when loaded.
    stamp: Option<(i64, i64, u64)>,
    problem: Option<String>,
    /// Bumped by [`SharedIndex::refresh`] on every reload.
    generation: u64,
}

/// The bit of an owner that marks a configuration file.
const CONFFILE: u32 = 1 << 31;

fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

fn stamp(path: &Path) -> Option<(i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec(), m.size()))
}

/// One installed package as dpkg's `status` describes it.
#[derive(Debug, Default)]
struct StatusEntry {
    name: String,
    arch: String,
    version: String,
    /// `Conffiles:`: (path, MD5); obsolete ones left out.
    conffiles: Vec<(String, [u8; 16])>,
}

/// Parses dpkg's `status`: the installed packages.
fn installed(status: &str) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    for paragraph in status.split("\n\n") {
        let mut entry = StatusEntry::default();
        let (mut ok, mut in_conffiles) = (false, false);
        for line in paragraph.lines() {
            if in_conffiles && line.starts_with(' ') {
                let mut fields = line.split_whitespace();
                if let (Some(path), Some(md5)) = (fields.next(), fields.next())
                    && fields.next() != Some("obsolete")
                    && let Some(md5) = parse_md5(md5)
                {
                    entry.conffiles.push((path.to_owned(), md5));
                }
                continue;
            }
            in_conffiles = false;
            if let Some(v) = line.strip_prefix("Package: ") {
                v.trim().clone_into(&mut entry.name);
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                v.trim().clone_into(&mut entry.arch);
            } else if let Some(v) = line.strip_prefix("Version: ") {
                v.trim().clone_into(&mut entry.version);
            } else if let Some(v) = line.strip_prefix("Status: ") {
                ok = v.trim() == "install ok installed";
            } else if line.starts_with("Conffiles:") {
                in_conffiles = true;
            }
        }
        if ok && !entry.name.is_empty() {
            out.push(entry);
        }
    }
    out
}

/// Parses one `md5sums` file: (absolute path, digest).
fn md5sums(text: &str) -> impl Iterator<Item = (String, [u8; 16])> + '_ {
    text.lines().filter_map(|line| {
        let (digest, path) = line.split_once("  ")?;
        let digest = parse_md5(digest)?;
        Some((format!("/{}", path.trim_start_matches('/')), digest))
    })
}

fn parse_md5(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The other spelling of a path on a merged-`/usr` system, if it has one.
fn usr_alias(path: &str) -> Option<String> {
    const MERGED: [&str; 4] = ["/bin/", "/sbin/", "/lib/", "/lib64/"];
    if let Some(rest) = path.strip_prefix("/usr")
        && MERGED.iter().any(|m| rest.starts_with(m))
    {
        return Some(rest.to_owned());
    }
    MERGED
        .iter()
        .any(|m| path.starts_with(m))
        .then(|| format!("/usr{path}"))
}

impl PackageIndex {
    /// Reads the package database under `root`. Never fails: a host without one
    /// gets an empty index and, where one was expected, [`Self::problem`].
    pub fn load(root: &HostRoot) -> Self {
        let status_path = root.join(DPKG_STATUS);
        let Ok(status) = std::fs::read_to_string(&status_path) else {
            let problem = root.join("/var/lib/rpm").exists().then(|| {
                "this host's package database is rpm, which the agent does not read yet: every executable is judged by the learned baseline".to_owned()
            });
            return Self {
                problem,
                ..Self::default()
            };
        };
        let stamp = stamp(&status_path);
        let info = root.join(DPKG_INFO);
        let mut entries: Vec<(u64, [u8; 8], u32)> = Vec::new();
        let mut packages = Vec::new();
        let mut all = Vec::new();
        for StatusEntry {
            name,
            arch,
            version,
            conffiles,
        } in installed(&status)
        {
            // Multi-arch packages name their files `NAME:ARCH.md5sums`.
            let candidates = [format!("{name}:{arch}"), name.clone()];
            let found = candidates.iter().find_map(|n| {
                std::fs::read_to_string(info.join(format!("{n}.md5sums")))
                    .ok()
                    .map(|t| (n.clone(), t))
            });
            let shown = match &found {
                Some((file_name, _)) => file_name.clone(),
                None if arch.is_empty() || arch == "all" => name.clone(),
                None => format!("{name}:{arch}"),
            };
            all.push((shown.clone(), version.clone()));
            if found.is_none() && conffiles.is_empty() {
                continue;
            }
            let owner = u32::try_from(packages.len()).unwrap_or(u32::MAX) & !CONFFILE;
            packages.push(Package {
                name: shown,
                version,
            });
            let prefix = |md5: &[u8; 16]| {
                let mut p = [0u8; 8];
                p.copy_from_slice(&md5[..8]);
                p
            };
            if let Some((_, text)) = &found {
                for (path, md5) in md5sums(text) {
                    entries.push((path_hash(&path), prefix(&md5), owner));
                }
            }
            for (path, md5) in &conffiles {
                entries.push((path_hash(path), prefix(md5), owner | CONFFILE));
            }
        }
        all.sort();
        // A path listed twice keeps its md5sums entry (pushed first) over a conffile.
        entries.sort_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let mut index = Self {
            hashes: Vec::with_capacity(entries.len()),
            md5_prefixes: Vec::with_capacity(entries.len()),
            owners: Vec::with_capacity(entries.len()),
            packages,
            installed: all,
            stamp,
            problem: None,
            generation: 0,
        };
        for (h, m, o) in entries {
            index.hashes.push(h);
            index.md5_prefixes.push(m);
            index.owners.push(o);
        }
        tracing::info!(
            packages = index.packages.len(),
            files = index.hashes.len(),
            "Package database loaded"
        );
        index
    }

    /// Reloads when dpkg's `status` changed (a package was installed, upgraded or
    /// removed). Returns whether it did.
    pub fn refresh(&mut self, root: &HostRoot) -> bool {
        let now = stamp(&root.join(DPKG_STATUS));
        if now == self.stamp {
            return false;
        }
        *self = Self::load(root);
        true
    }

    /// Why the index is empty where a package database was expected.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Packaged files known.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no packaged file is known.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Bytes the index holds (for the footprint benchmark).
    pub fn heap_bytes(&self) -> usize {
        self.hashes.capacity() * 8
            + self.md5_prefixes.capacity() * 8
            + self.owners.capacity() * 4
            + self
                .packages
                .iter()
                .map(|p| p.name.len() + p.version.len() + 48)
                .sum::<usize>()
            + self
                .installed
                .iter()
                .map(|(n, v)| n.len() + v.len() + 48)
                .sum::<usize>()
    }

    /// Every installed package and its version, sorted by name.
    pub fn installed(&self) -> &[(String, String)] {
        &self.installed
    }

    /// What the package database says of `path` (as the kernel shows it).
    pub fn lookup(&self, path: &str) -> Option<Packaged<'_>> {
        std::iter::once(path.to_owned())
            .chain(usr_alias(path))
            .find_map(|p| {
                let i = self.hashes.binary_search(&path_hash(&p)).ok()?;
                let owner = self.owners[i];
                Some(Packaged {
                    package: self.packages.get((owner & !CONFFILE) as usize)?,
                    listed_as: p,
                    md5_prefix: self.md5_prefixes[i],
                    conffile: owner & CONFFILE != 0,
                })
            })
    }

    /// The full MD5 (hex) that `packaged`'s package recorded, read back from its
    /// `md5sums` (only when a mismatch is reported).
    pub fn recorded_md5(&self, root: &HostRoot, packaged: &Packaged<'_>) -> Option<String> {
        let file = root
            .join(DPKG_INFO)
            .join(format!("{}.md5sums", packaged.package.name));
        let text = std::fs::read_to_string(file).ok()?;
        md5sums(&text)
            .find(|(p, _)| *p == packaged.listed_as)
            .map(|(_, d)| bannin_proto::hex(d))
    }
}

/// Most packages [`Transaction::describe`] names in each list.
pub const DESCRIBED: usize = 40;

/// What one package transaction (or several between two looks) changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Newly installed: (name, version).
    pub installed: Vec<(String, String)>,
    /// Removed: (name, version).
    pub removed: Vec<(String, String)>,
    /// Upgraded or downgraded: (name, old version, new version).
    pub upgraded: Vec<(String, String, String)>,
}

impl Transaction {
    /// The difference between two sorted package lists.
    pub fn between(before: &[(String, String)], after: &[(String, String)]) -> Self {
        let old: std::collections::BTreeMap<&str, &str> = before
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let new: std::collections::BTreeMap<&str, &str> = after
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut t = Self::default();
        for (name, version) in &new {
            match old.get(name) {
                None => t.installed.push(((*name).into(), (*version).into())),
                Some(was) if was != version => {
                    t.upgraded
                        .push(((*name).into(), (*was).into(), (*version).into()));
                }
                Some(_) => {}
            }
        }
        for (name, version) in &old {
            if !new.contains_key(name) {
                t.removed.push(((*name).into(), (*version).into()));
            }
        }
        t
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.installed.is_empty() && self.removed.is_empty() && self.upgraded.is_empty()
    }

    /// One line: `installed hello 2.10-3; upgraded bar 1.0 → 1.1; removed foo 1.0`
    /// (at most [`DESCRIBED`] packages of each, then how many more).
    pub fn describe(&self) -> String {
        let list = |v: Vec<String>| {
            let more = v.len().saturating_sub(DESCRIBED);
            let mut line = v.into_iter().take(DESCRIBED).collect::<Vec<_>>().join(", ");
            if more > 0 {
                line.push_str(&format!(" and {more} more"));
            }
            line
        };
        let mut parts = Vec::new();
        if !self.installed.is_empty() {
            parts.push(format!(
                "installed {}",
                list(
                    self.installed
                        .iter()
                        .map(|(n, v)| format!("{n} {v}"))
                        .collect()
                )
            ));
        }
        if !self.upgraded.is_empty() {
            parts.push(format!(
                "upgraded {}",
                list(
                    self.upgraded
                        .iter()
                        .map(|(n, a, b)| format!("{n} {a} → {b}"))
                        .collect()
                )
            ));
        }
        if !self.removed.is_empty() {
            parts.push(format!(
                "removed {}",
                list(
                    self.removed
                        .iter()
                        .map(|(n, v)| format!("{n} {v}"))
                        .collect()
                )
            ));
        }
        parts.join("; ")
    }
}

/// The package managers' own locks: held for the whole of a transaction.
const PACKAGE_LOCKS: &[&str] = &[
    "/var/lib/dpkg/lock",
    "/var/lib/dpkg/lock-frontend",
    "/var/lib/rpm/.rpm.lock",
    "/usr/lib/sysimage/rpm/.rpm.lock",
];

/// Whether a package transaction is under way: one of the package managers'
/// lock files is locked (the kernel's `/proc/locks` lists it by device and
/// inode). Only root can take those locks, so a user cannot fake one.
pub fn transaction_running(root: &HostRoot) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<u64> = PACKAGE_LOCKS
        .iter()
        .filter_map(|p| std::fs::metadata(root.join(p)).ok())
        .map(|m| m.ino())
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(locks) = std::fs::read_to_string(root.join("/proc/locks")) else {
        return false;
    };
    // `1: POSIX  ADVISORY  WRITE 1234 08:01:131090 0 EOF` — MAJ:MIN:INODE.
    locks.lines().any(|line| {
        line.split_whitespace()
            .find_map(|f| {
                let mut parts = f.split(':');
                let (_, _, ino) = (parts.next()?, parts.next()?, parts.next()?);
                parts
                    .next()
                    .is_none()
                    .then(|| ino.parse::<u64>().ok())
                    .flatten()
            })
            .is_some_and(|ino| inodes.contains(&ino))
    })
}

/// One package index for every sensor that consults it (the process and integrity
/// sensors): loaded by the first to need it, reloaded when dpkg's database
/// changes, held once. A `std::sync::Mutex`: sweeps run on the blocking pool and
/// hold it for a lookup or a reload, never across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct SharedIndex(std::sync::Arc<std::sync::Mutex<Option<PackageIndex>>>);

impl SharedIndex {
    /// Loads the index if it is not yet, reloads it if the database changed;
    /// returns its generation (which changes with every load).
    pub fn refresh(&self, root: &HostRoot) -> u64 {
        let mut guard = bannin_proto::lock(&self.0);
        match guard.as_mut() {
            Some(index) => {
                let generation = index.generation;
                if index.refresh(root) {
                    index.generation = generation + 1;
                }
                index.generation
            }
            None => {
                *guard = Some(PackageIndex::load(root));
                0
            }
        }
    }

    /// The index (`None` until the first [`Self::refresh`]).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Option<PackageIndex>> {
        bannin_proto::lock(&self.0)
    }
}

/// MD5 of a file's bytes, the digest dpkg records (for `debsums`-style checks).
pub fn md5_file(path: &Path) -> std::io::Result<[u8; 16]> {
    use md5::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = md5::Md5::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// A package for [`write_fixture`]: name, version, and (path, contents) of its files.
#[cfg(any(test, feature = "test-hooks"))]
pub type FixturePackage<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [u8])]);

/// A dpkg database written for tests.
#[cfg(any(test, feature = "test-hooks"))]
pub fn write_fixture(root: &Path, packages: &[FixturePackage<'_>]) -> std::path::PathBuf {
    use md5::Digest;
    let info = root.join("var/lib/dpkg/info");
    std::fs::create_dir_all(&info).expect("dpkg info dir");
    let mut status = String::new();
    for (name, version, files) in packages {
        status.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
        ));
        let sums: String = files
            .iter()
            .map(|(path, body)| {
                format!(
                    "{}  {}\n",
                    bannin_proto::hex(md5::Md5::digest(body)),
                    path.trim_start_matches('/')
                )
            })
            .collect();
        std::fs::write(info.join(format!("{name}.md5sums")), sums).expect("md5sums");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status).expect("status");
    root.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packaged_files_are_found_with_their_digest_and_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(
            dir.path(),
            &[
                (
                    "coreutils",
                    "9.1-1",
                    &[("/bin/cat", b"cat v1"), ("/usr/bin/head", b"head v1")],
                ),
                ("tool", "2.0", &[("/opt/tool/run", b"run")]),
            ],
        );
        let root = HostRoot(dir.path().to_owned());
        let index = PackageIndex::load(&root);
        assert_eq!(index.len(), 3);
        assert!(index.problem().is_none());
        let head = index.lookup("/usr/bin/head").expect("head");
        assert_eq!(head.package.name, "coreutils");
        assert_eq!(head.package.version, "9.1-1");
        let digest: [u8; 16] = {
            use md5::Digest;
            md5::Md5::digest(b"head v1").into()
        };
        assert!(head.matches(&digest));
        assert!(!head.matches(&[0; 16]));
        assert_eq!(
            index.recorded_md5(&root, &head).as_deref(),
            Some(bannin_proto::hex(digest).as_str())
        );
        // Merged /usr: dpkg lists /bin/cat, the kernel shows /usr/bin/cat.
        assert_eq!(
            index.lookup("/usr/bin/cat").expect("alias").listed_as,
            "/bin/cat"
        );
        assert!(index.lookup("/usr/local/bin/cat").is_none());
        assert!(index.lookup("/tmp/head").is_none());
    }

    #[test]
    fn removed_packages_and_a_changed_status_are_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_fixture(dir.path(), &[("tool", "1.0", &[("/usr/bin/tool", b"v1")])]);
        let root = HostRoot(dir.path().to_owned());
        let mut index = PackageIndex::load(&root);
        assert!(index.lookup("/usr/bin/tool").is_some());
        assert!(!index.refresh(&root), "unchanged");
        // Deinstalled but config kept: not installed any more.
        std::fs::write(
            dir.path().join("var/lib/dpkg/status"),
            "Package: tool\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n",
        )
        .expect("status");
        assert!(index.refresh(&root), "changed");
        assert!(index.lookup("/usr/bin/tool").is_none());
    }

    #[test]
    fn conffiles_are_known_but_theirs_to_edit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg/info")).expect("info");
        let digest = bannin_proto::hex(<md5::Md5 as md5::Digest>::digest(b"Port 22\n"));
        std::fs::write(
            dir.path().join("var/lib/dpkg/status"),
            format!(
                "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\n\
                 Version: 1:9.2p1-2\nConffiles:\n /etc/ssh/sshd_config {digest}\n \
                 /etc/ssh/old_config {digest} obsolete\nDescription: x\n\n\
                 Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
            ),
        )
        .expect("status");
        let index = PackageIndex::load(&HostRoot(dir.path().to_owned()));
        let conf = index.lookup("/etc/ssh/sshd_config").expect("conffile");
        assert!(conf.conffile);
        assert_eq!(conf.package.name, "openssh-server:amd64");
        assert!(conf.matches(&<md5::Md5 as md5::Digest>::digest(b"Port 22\n").into()));
        assert!(index.lookup("/etc/ssh/old_config").is_none(), "obsolete");
        assert_eq!(
            index.installed(),
            [("openssh-server:amd64".to_owned(), "1:9.2p1-2".to_owned())]
        );
    }

    #[test]
    fn a_transaction_is_the_difference_of_two_package_lists() {
        let l = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect()
        };
        let t = Transaction::between(
            &l(&[("bar", "1.0"), ("foo", "1.0"), ("same", "3")]),
            &l(&[("bar", "1.1"), ("hello", "2.10-3"), ("same", "3")]),
        );
        assert_eq!(
            t.describe(),
            "installed hello 2.10-3; upgraded bar 1.0 → 1.1; removed foo 1.0"
        );
        assert!(Transaction::between(&l(&[("a", "1")]), &l(&[("a", "1")])).is_empty());
        let many: Vec<(String, String)> =
            (0..45).map(|i| (format!("p{i:02}"), "1".into())).collect();
        let big = Transaction::between(&[], &many).describe();
        assert!(big.ends_with(" and 5 more"), "{big}");
    }

    #[test]
    fn a_host_without_dpkg_says_why_only_where_rpm_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = HostRoot(dir.path().to_owned());
        let index = PackageIndex::load(&root);
        assert!(index.is_empty() && index.problem().is_none());
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).expect("rpm");
        let index = PackageIndex::load(&root);
        assert!(index.problem().is_some_and(|p| p.contains("rpm")));
    }

    #[test]
    fn this_hosts_database_loads_and_knows_its_own_tools() {
        let root = HostRoot(PathBuf::from("/"));
        let index = PackageIndex::load(&root);
        if index.is_empty() {
            return; // not a dpkg host
        }
        let head = index.lookup("/usr/bin/head").expect("coreutils ships head");
        assert!(head.matches(&md5_file(Path::new("/usr/bin/head")).expect("md5")));
    }
}
