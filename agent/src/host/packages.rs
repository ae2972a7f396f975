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
    /// Parallel to `hashes`: index into `packages`.
    owners: Vec<u32>,
    packages: Vec<Package>,
    /// `status`'s (mtime s, mtime ns, size) when loaded.
    stamp: Option<(i64, i64, u64)>,
    problem: Option<String>,
    /// Bumped by [`SharedIndex::refresh`] on every reload.
    generation: u64,
}

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

/// Parses dpkg's `status`: the installed packages as (name, architecture, version).
fn installed(status: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for paragraph in status.split("\n\n") {
        let (mut name, mut arch, mut version, mut ok) = ("", "", "", false);
        for line in paragraph.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = v.trim();
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = v.trim();
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = v.trim();
            } else if let Some(v) = line.strip_prefix("Status: ") {
                ok = v.trim() == "install ok installed";
            }
        }
        if ok && !name.is_empty() {
            out.push((name.to_owned(), arch.to_owned(), version.to_owned()));
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
        for (name, arch, version) in installed(&status) {
            // Multi-arch packages name their files `NAME:ARCH.md5sums`.
            let candidates = [format!("{name}:{arch}"), name.clone()];
            let Some((file_name, text)) = candidates.iter().find_map(|n| {
                std::fs::read_to_string(info.join(format!("{n}.md5sums")))
                    .ok()
                    .map(|t| (n.clone(), t))
            }) else {
                continue;
            };
            let owner = u32::try_from(packages.len()).unwrap_or(u32::MAX);
            packages.push(Package {
                name: file_name,
                version,
            });
            for (path, md5) in md5sums(&text) {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&md5[..8]);
                entries.push((path_hash(&path), prefix, owner));
            }
        }
        entries.sort_unstable_by_key(|e| e.0);
        entries.dedup_by_key(|e| e.0);
        let mut index = Self {
            hashes: Vec::with_capacity(entries.len()),
            md5_prefixes: Vec::with_capacity(entries.len()),
            owners: Vec::with_capacity(entries.len()),
            packages,
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
    }

    /// What the package database says of `path` (as the kernel shows it).
    pub fn lookup(&self, path: &str) -> Option<Packaged<'_>> {
        std::iter::once(path.to_owned())
            .chain(usr_alias(path))
            .find_map(|p| {
                let i = self.hashes.binary_search(&path_hash(&p)).ok()?;
                Some(Packaged {
                    package: self.packages.get(self.owners[i] as usize)?,
                    listed_as: p,
                    md5_prefix: self.md5_prefixes[i],
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
