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
//! On the RHEL family the index comes from the rpm database through the `rpm`
//! tool (`rpm -qa --queryformat`: each package, then each file's digest and
//! flags), read with the digest algorithm each package declares (SHA-256 on
//! current releases, MD5 on old ones); configuration files (`%config`) are
//! known but theirs to edit, ghost files are left out. Where the database is
//! there but the tool is not, the index is empty and [`PackageIndex::problem`]
//! says why.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::HostRoot;

/// dpkg's package list.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// dpkg's per-package file lists and digests.
const DPKG_INFO: &str = "/var/lib/dpkg/info";
/// Where the rpm database lives (older releases, then current ones).
const RPM_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
/// The rpm database's files, one of which changes with every transaction.
const RPM_FILES: &[&str] = &["rpmdb.sqlite", "Packages", "Packages.db"];
/// One header line per package, then one tab-led line per file.
const RPM_QUERY: &str = "%{NAME}.%{ARCH}\\t%{VERSION}-%{RELEASE}\\t%{FILEDIGESTALGO}\\n[\\t%{FILEDIGESTS}\\t%{FILEFLAGS}\\t%{FILENAMES}\\n]";
/// `RPMFILE_CONFIG` and `RPMFILE_GHOST`.
const RPMFILE_CONFIG: u32 = 1;
const RPMFILE_GHOST: u32 = 1 << 6;

/// The digest a package database records for its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algo {
    /// dpkg's `md5sums`; rpm's `FILEDIGESTALGO` 1 (and before it existed).
    #[default]
    Md5,
    /// rpm's `FILEDIGESTALGO` 8.
    Sha256,
}

impl Algo {
    /// `md5` or `sha256`: the attribute suffix of a mismatch's digests.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha256 => "sha256",
        }
    }
}

/// Both digests of a file's bytes, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    /// MD5.
    pub md5: [u8; 16],
    /// SHA-256.
    pub sha256: [u8; 32],
}

impl FileDigest {
    /// The digest in `algo`, as hex.
    pub fn hex(&self, algo: Algo) -> String {
        match algo {
            Algo::Md5 => bannin_proto::hex(self.md5),
            Algo::Sha256 => bannin_proto::hex(self.sha256),
        }
    }
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Name, with `:ARCH` for multi-arch packages as dpkg names their files.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// The digest its files are recorded by.
    pub algo: Algo,
}

/// What the package database says of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packaged<'a> {
    /// The package that installed it.
    pub package: &'a Package,
    /// The spelling of the path the package lists.
    pub listed_as: String,
    /// The first 8 bytes of the digest the package recorded.
    digest_prefix: [u8; 8],
    /// A configuration file (dpkg's `Conffiles:`): the administrator may edit
    /// it, so a different content is not a mismatch.
    pub conffile: bool,
}

impl Packaged<'_> {
    /// Whether a file with `digest` is what the package recorded.
    pub fn matches(&self, digest: &FileDigest) -> bool {
        match self.package.algo {
            Algo::Md5 => digest.md5[..8] == self.digest_prefix,
            Algo::Sha256 => digest.sha256[..8] == self.digest_prefix,
        }
    }
}

/// Where packages keep data no process runs: documentation, manuals,
/// translations, icons, fonts, time zones, C headers. Half of a Debian host's
/// packaged files (45,000 of 94,000 on the development machine) and half the
/// index's memory.
const NOT_RUN: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/icons",
    "/usr/share/fonts",
    "/usr/share/zoneinfo",
    "/usr/share/i18n",
    "/usr/share/gtk-doc",
    "/usr/share/help",
    "/usr/include",
];

/// Which packaged files an index keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Leave out files under [`NOT_RUN`] that no watched path covers.
    lean: bool,
    watched: Vec<PathBuf>,
}

impl Scope {
    /// What the sensors ask about: executables the process sensor sees run
    /// (anywhere but [`NOT_RUN`]: an executable there is not what its package
    /// installed, and an unpackaged executable is judged the stricter way)
    /// and every file under the integrity sensor's `watched` paths.
    pub fn for_sensors(watched: &[PathBuf]) -> Self {
        Self {
            lean: true,
            watched: watched.to_vec(),
        }
    }

    fn keeps(&self, path: &str) -> bool {
        !self.lean
            || !NOT_RUN.iter().any(|n| Path::new(path).starts_with(n))
            || self.watched.iter().any(|w| Path::new(path).starts_with(w))
    }
}

/// The index of every packaged regular file and its digest.
#[derive(Debug, Default)]
pub struct PackageIndex {
    /// Sorted by path hash.
    hashes: Vec<u64>,
    /// Parallel to `hashes`: the first 8 bytes of each file's digest.
    digest_prefixes: Vec<[u8; 8]>,
    /// Parallel to `hashes`: index into `packages`, with [`CONFFILE`] set for
    /// configuration files.
    owners: Vec<u32>,
    packages: Vec<Package>,
    /// Every installed package (`name[:arch]` as dpkg names it) and its version,
    /// sorted: what a transaction changed is the difference of two of these.
    installed: Vec<(String, String)>,
    /// The database file that changes with every transaction (dpkg's `status`,
    /// rpm's `rpmdb.sqlite` or `Packages`), and its (mtime s, mtime ns, size)
    /// when loaded.
    db: Option<std::path::PathBuf>,
    stamp: Option<(i64, i64, u64)>,
    problem: Option<String>,
    /// Bumped by [`SharedIndex::refresh`] on every reload.
    generation: u64,
    /// What it keeps, again on reload.
    scope: Scope,
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
pub(crate) struct StatusEntry {
    name: String,
    arch: String,
    version: String,
    /// `Conffiles:`: (path, MD5); obsolete ones left out.
    conffiles: Vec<(String, [u8; 16])>,
}

/// Parses dpkg's `status`: the installed packages.
pub(crate) fn installed(status: &str) -> Vec<StatusEntry> {
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
pub(crate) fn md5sums(text: &str) -> impl Iterator<Item = (String, [u8; 16])> + '_ {
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
        Self::load_with(root, Path::new("rpm"), &Scope::default())
    }

    /// [`Self::load`] of the files `scope` keeps, running `rpm_tool` where the
    /// database is rpm's.
    pub fn load_with(root: &HostRoot, rpm_tool: &Path, scope: &Scope) -> Self {
        let mut index = Self::load_all(root, rpm_tool, scope);
        index.scope = scope.clone();
        index
    }

    fn load_all(root: &HostRoot, rpm_tool: &Path, scope: &Scope) -> Self {
        let status_path = root.join(DPKG_STATUS);
        let Ok(status) = std::fs::read_to_string(&status_path) else {
            return match rpm_db(root) {
                Some(db) => Self::load_rpm(root, rpm_tool, db, scope),
                None => Self::default(),
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
                algo: Algo::Md5,
            });
            let prefix = |md5: &[u8; 16]| {
                let mut p = [0u8; 8];
                p.copy_from_slice(&md5[..8]);
                p
            };
            if let Some((_, text)) = &found {
                for (path, md5) in md5sums(text).filter(|(path, _)| scope.keeps(path)) {
                    entries.push((path_hash(&path), prefix(&md5), owner));
                }
            }
            for (path, md5) in conffiles.iter().filter(|(path, _)| scope.keeps(path)) {
                entries.push((path_hash(path), prefix(md5), owner | CONFFILE));
            }
        }
        let mut index = Self::build(entries, packages, all);
        index.db = Some(status_path);
        index.stamp = stamp;
        tracing::info!(
            packages = index.packages.len(),
            files = index.hashes.len(),
            "Package database loaded (dpkg)"
        );
        index
    }

    /// The index from (path hash, digest prefix, owner) entries.
    fn build(
        mut entries: Vec<(u64, [u8; 8], u32)>,
        packages: Vec<Package>,
        mut all: Vec<(String, String)>,
    ) -> Self {
        all.sort();
        // A path listed twice keeps its first entry (dpkg: md5sums over a conffile).
        entries.sort_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let mut index = Self {
            hashes: Vec::with_capacity(entries.len()),
            digest_prefixes: Vec::with_capacity(entries.len()),
            owners: Vec::with_capacity(entries.len()),
            packages,
            installed: all,
            ..Self::default()
        };
        for (h, m, o) in entries {
            index.hashes.push(h);
            index.digest_prefixes.push(m);
            index.owners.push(o);
        }
        index
    }

    /// Reads the rpm database through `tool` (`rpm --root ROOT -qa --queryformat`).
    fn load_rpm(root: &HostRoot, tool: &Path, db: std::path::PathBuf, scope: &Scope) -> Self {
        let mut command = std::process::Command::new(tool);
        if root.0 != Path::new("/") {
            command.arg("--root").arg(&root.0);
        }
        let output = command
            .args(["-qa", "--queryformat", RPM_QUERY])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output();
        let text = match output {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                return Self::unreadable(format!(
                    "the rpm database could not be read ({} exited with {}): every executable is judged by the learned baseline",
                    tool.display(),
                    o.status
                ));
            }
            Err(e) => {
                return Self::unreadable(format!(
                    "this host's package database is rpm's, but the rpm tool cannot run ({}: {e}): every executable is judged by the learned baseline",
                    tool.display()
                ));
            }
        };
        let (packages, all, entries) = parse_rpm_query(&text, scope);
        let mut index = Self::build(entries, packages, all);
        index.stamp = stamp(&db);
        index.db = Some(db);
        tracing::info!(
            packages = index.packages.len(),
            files = index.hashes.len(),
            "Package database loaded (rpm)"
        );
        index
    }

    fn unreadable(problem: String) -> Self {
        Self {
            problem: Some(problem),
            ..Self::default()
        }
    }

    /// Reloads when dpkg's `status` changed (a package was installed, upgraded or
    /// removed). Returns whether it did.
    pub fn refresh(&mut self, root: &HostRoot) -> bool {
        let db = self
            .db
            .clone()
            .or_else(|| {
                root.join(DPKG_STATUS)
                    .exists()
                    .then(|| root.join(DPKG_STATUS))
            })
            .or_else(|| rpm_db(root));
        let now = db.as_deref().and_then(stamp);
        if now == self.stamp {
            return false;
        }
        *self = Self::load_with(root, Path::new("rpm"), &self.scope.clone());
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
            + self.digest_prefixes.capacity() * 8
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
                    digest_prefix: self.digest_prefixes[i],
                    conffile: owner & CONFFILE != 0,
                })
            })
    }

    /// The full digest (hex, in `packaged.package.algo`) that `packaged`'s
    /// package recorded, read back from dpkg's `md5sums` or asked of rpm (only
    /// when a mismatch is reported).
    pub fn recorded(&self, root: &HostRoot, packaged: &Packaged<'_>) -> Option<String> {
        if self.db.as_deref() == Some(root.join(DPKG_STATUS).as_path()) {
            let file = root
                .join(DPKG_INFO)
                .join(format!("{}.md5sums", packaged.package.name));
            let text = std::fs::read_to_string(file).ok()?;
            return md5sums(&text)
                .find(|(p, _)| *p == packaged.listed_as)
                .map(|(_, d)| bannin_proto::hex(d));
        }
        let mut command = std::process::Command::new("rpm");
        if root.0 != Path::new("/") {
            command.arg("--root").arg(&root.0);
        }
        let out = command
            .args(["-q", "--queryformat", "[%{FILENAMES}\\t%{FILEDIGESTS}\\n]"])
            .arg(&packaged.package.name)
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (path, digest) = l.split_once('\t')?;
            (path == packaged.listed_as).then(|| digest.to_owned())
        })
    }
}

/// The rpm database file of this host, if it has one.
fn rpm_db(root: &HostRoot) -> Option<std::path::PathBuf> {
    RPM_DIRS.iter().find_map(|dir| {
        RPM_FILES
            .iter()
            .map(|f| root.join(dir).join(f))
            .find(|p| p.exists())
    })
}

/// Parses the output of `rpm -qa --queryformat RPM_QUERY`: the packages with
/// files, every installed package and version, and (path hash, digest prefix,
/// owner) entries.
#[allow(clippy::type_complexity)]
pub(crate) fn parse_rpm_query(
    text: &str,
    scope: &Scope,
) -> (
    Vec<Package>,
    Vec<(String, String)>,
    Vec<(u64, [u8; 8], u32)>,
) {
    let (mut packages, mut all, mut entries) = (Vec::new(), Vec::new(), Vec::new());
    let mut current: Option<u32> = None;
    for line in text.lines() {
        if let Some(file) = line.strip_prefix('\t') {
            let Some(owner) = current else { continue };
            let mut f = file.splitn(3, '\t');
            let (Some(digest), Some(flags), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let flags: u32 = flags.trim().parse().unwrap_or(0);
            if digest.len() < 16 || flags & RPMFILE_GHOST != 0 || !path.starts_with('/') {
                continue; // directories, symlinks, ghosts
            }
            if !scope.keeps(path) {
                continue;
            }
            let mut prefix = [0u8; 8];
            let Some(bytes) = (0..8)
                .map(|i| u8::from_str_radix(digest.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
            else {
                continue;
            };
            prefix.copy_from_slice(&bytes);
            let config = if flags & RPMFILE_CONFIG != 0 {
                CONFFILE
            } else {
                0
            };
            entries.push((path_hash(path), prefix, owner | config));
            continue;
        }
        let mut h = line.splitn(3, '\t');
        let (Some(name), Some(version)) = (h.next(), h.next()) else {
            current = None;
            continue;
        };
        let algo = match h.next().map(str::trim) {
            Some("8") => Algo::Sha256,
            _ => Algo::Md5,
        };
        all.push((name.to_owned(), version.to_owned()));
        current = u32::try_from(packages.len()).ok().map(|o| o & !CONFFILE);
        packages.push(Package {
            name: name.to_owned(),
            version: version.to_owned(),
            algo,
        });
    }
    (packages, all, entries)
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
pub struct SharedIndex(
    std::sync::Arc<std::sync::Mutex<Option<PackageIndex>>>,
    Scope,
);

impl SharedIndex {
    /// An index of the files `scope` keeps (the default keeps every one).
    pub fn new(scope: Scope) -> Self {
        Self(Default::default(), scope)
    }

    /// Loads the index if it is not yet, reloads it if the database changed;
    /// returns its generation (which changes with every load).
    pub fn refresh(&self, root: &HostRoot) -> u64 {
        let mut guard = bannin_proto::lock(&self.0);
        match guard.as_mut() {
            Some(index) => {
                let generation = index.generation;
                if index.refresh(root) {
                    index.generation = generation + 1;
                    // Reading the database freed more than the index keeps.
                    super::memory::return_freed_memory();
                }
                index.generation
            }
            None => {
                *guard = Some(PackageIndex::load_with(root, Path::new("rpm"), &self.1));
                super::memory::return_freed_memory();
                0
            }
        }
    }

    /// The index (`None` until the first [`Self::refresh`]).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Option<PackageIndex>> {
        bannin_proto::lock(&self.0)
    }
}

/// MD5 and SHA-256 of a file's bytes, in one read: what dpkg and rpm record
/// (for `debsums` / `rpm -V`-style checks).
pub fn digest_file(path: &Path) -> std::io::Result<FileDigest> {
    super::proc::digests_reader(std::fs::File::open(path)?)
}

/// A package for [`write_fixture`]: name, version, and (path, contents) of its files.
#[cfg(any(test, feature = "fixtures"))]
pub type FixturePackage<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [u8])]);

/// A dpkg database written for tests.
#[cfg(any(test, feature = "fixtures"))]
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
        let digest = crate::host::proc::digests_reader(&b"head v1"[..]).expect("digest");
        assert!(head.matches(&digest));
        assert!(!head.matches(&FileDigest {
            md5: [0; 16],
            sha256: digest.sha256
        }));
        assert_eq!(
            index.recorded(&root, &head).as_deref(),
            Some(bannin_proto::hex(digest.md5).as_str())
        );
        // Merged /usr: dpkg lists /bin/cat, the kernel shows /usr/bin/cat.
        assert_eq!(
            index.lookup("/usr/bin/cat").expect("alias").listed_as,
            "/bin/cat"
        );
        assert!(index.lookup("/usr/local/bin/cat").is_none());
        assert!(index.lookup("/tmp/head").is_none());
    }

    /// The sensors' index leaves out documentation, manuals and headers, but
    /// not what the integrity sensor watches there, and keeps its scope when
    /// the database changes. The full index keeps everything.
    #[test]
    fn the_sensors_index_keeps_what_they_can_ask_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files: &[(&str, &[u8])] = &[
            ("/usr/bin/tool", b"tool"),
            ("/usr/share/doc/tool/README", b"readme"),
            ("/usr/share/man/man1/tool.1.gz", b"man"),
            ("/usr/include/tool.h", b"h"),
            ("/usr/share/tool/helper.sh", b"helper"),
        ];
        write_fixture(dir.path(), &[("tool", "1.0", files)]);
        let root = HostRoot(dir.path().to_owned());
        assert_eq!(PackageIndex::load(&root).len(), 5);
        let shared = SharedIndex::new(Scope::for_sensors(&[PathBuf::from("/usr/share/man")]));
        shared.refresh(&root);
        let kept = |shared: &SharedIndex| {
            let guard = shared.lock();
            let index = guard.as_ref().expect("loaded");
            files
                .iter()
                .filter(|(p, _)| index.lookup(p).is_some())
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
        };
        let expected = [
            "/usr/bin/tool",
            "/usr/share/man/man1/tool.1.gz",
            "/usr/share/tool/helper.sh",
        ];
        assert_eq!(kept(&shared), expected);
        // A transaction: the reload keeps the same scope.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_fixture(dir.path(), &[("tool", "1.1", files)]);
        let generation = shared.refresh(&root);
        assert_eq!(generation, 1, "reloaded");
        assert_eq!(kept(&shared), expected);
        assert_eq!(
            shared
                .lock()
                .as_ref()
                .and_then(|i| i.lookup("/usr/bin/tool"))
                .map(|p| p.package.version.clone()),
            Some("1.1".to_owned())
        );
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
        assert!(
            conf.matches(&crate::host::proc::digests_reader(&b"Port 22\n"[..]).expect("digest"))
        );
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
        std::fs::write(dir.path().join("var/lib/rpm/rpmdb.sqlite"), b"").expect("db");
        let index =
            PackageIndex::load_with(&root, Path::new("/nonexistent/rpm"), &Scope::default());
        assert!(index.is_empty());
        assert!(
            index
                .problem()
                .is_some_and(|p| p.contains("rpm tool cannot run")),
            "{:?}",
            index.problem()
        );
    }

    /// What `rpm -qa --queryformat RPM_QUERY` prints on a RHEL 9 host (tabs as
    /// the query asks): a SHA-256 package with a binary, a `%config` file, a
    /// directory (no digest) and a ghost; an old MD5 package; a package without
    /// files (`gpg-pubkey`).
    fn rpm_output() -> String {
        let sha = |b: &[u8]| bannin_proto::sha256_hex(b);
        let md5 =
            |b: &[u8]| bannin_proto::hex(crate::host::proc::digests_reader(b).expect("d").md5);
        format!(
            "coreutils.x86_64\t8.32-35.el9\t8\n\t{}\t0\t/usr/bin/head\n\t{}\t1\t/etc/DIR_COLORS\n\t\t0\t/usr/share/doc/coreutils\n\t{}\t64\t/var/log/ghost.log\noldtool.noarch\t1.0-1\t1\n\t{}\t0\t/usr/bin/oldtool\ngpg-pubkey.(none)\t5a6340b3-6229229e\t(none)\n",
            sha(b"head"),
            sha(b"COLORS"),
            sha(b"ghost"),
            md5(b"old")
        )
    }

    #[test]
    fn the_rpm_database_is_read_through_the_rpm_tool() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("usr/lib/sysimage/rpm")).expect("rpm dir");
        std::fs::write(dir.path().join("usr/lib/sysimage/rpm/rpmdb.sqlite"), b"v1").expect("db");
        std::fs::write(dir.path().join("query.out"), rpm_output()).expect("out");
        // A stand-in for rpm that checks it was asked for the right root.
        let tool = dir.path().join("rpm");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\n[ \"$1\" = --root ] && [ \"$2\" = {:?} ] || exit 3\ncat {:?}\n",
                dir.path().display().to_string(),
                dir.path().join("query.out").display().to_string()
            ),
        )
        .expect("tool");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let root = HostRoot(dir.path().to_owned());
        let index = PackageIndex::load_with(&root, &tool, &Scope::default());
        assert!(index.problem().is_none(), "{:?}", index.problem());
        assert_eq!(
            index.len(),
            3,
            "head, DIR_COLORS, oldtool: no directory, no ghost"
        );
        let digest = |b: &[u8]| crate::host::proc::digests_reader(b).expect("digest");
        let head = index.lookup("/usr/bin/head").expect("head");
        assert_eq!(head.package.name, "coreutils.x86_64");
        assert_eq!(head.package.version, "8.32-35.el9");
        assert_eq!(head.package.algo, Algo::Sha256);
        assert!(head.matches(&digest(b"head")));
        assert!(!head.matches(&digest(b"trojan")));
        let colors = index.lookup("/etc/DIR_COLORS").expect("config");
        assert!(colors.conffile);
        let old = index.lookup("/usr/bin/oldtool").expect("old");
        assert_eq!(old.package.algo, Algo::Md5);
        assert!(old.matches(&digest(b"old")));
        assert!(index.lookup("/var/log/ghost.log").is_none());
        assert_eq!(
            index
                .installed()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["coreutils.x86_64", "gpg-pubkey.(none)", "oldtool.noarch"]
        );
    }

    #[test]
    fn this_hosts_database_loads_and_knows_its_own_tools() {
        let root = HostRoot(PathBuf::from("/"));
        let index = PackageIndex::load(&root);
        if index.is_empty() {
            return; // not a dpkg host
        }
        let head = index.lookup("/usr/bin/head").expect("coreutils ships head");
        assert!(head.matches(&digest_file(Path::new("/usr/bin/head")).expect("digest")));
    }
}
