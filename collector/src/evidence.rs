//! Receiving evidence bundles (snapshots): chunks are checked one by one
//! against their hashes and assembled in order; at the end the whole bundle's
//! size and hash, then every artifact against the bundle's manifest, are
//! verified before the bundle is stored, content-addressed, as
//! `DATA_DIR/evidence/SHA256.tar.zst`. A bundle that fails any check is deleted,
//! and its command fails with the reason — never a silently bad bundle.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bannin_proto::v1;
use sha2::{Digest, Sha256};

use crate::model::EvidenceRecord;

/// Largest bundle accepted.
pub const MAX_BUNDLE_BYTES: u64 = 1024 * 1024 * 1024;

struct Upload {
    file: std::fs::File,
    path: PathBuf,
    received: u64,
    hasher: Sha256,
}

/// What became of an upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored and verified at this path, with this hash.
    Stored {
        /// Where.
        path: PathBuf,
        /// SHA-256 of the bundle.
        sha256: String,
        /// Size.
        size: u64,
        /// Artifacts verified.
        artifacts: usize,
        /// The bundle's manifest.
        manifest: serde_json::Value,
    },
    /// Rejected; nothing stored.
    Rejected(String),
}

/// Uploads in progress and their outcomes, by (host, command id).
pub struct Evidence {
    dir: PathBuf,
    uploads: Mutex<HashMap<(String, String), Upload>>,
    outcomes: Mutex<HashMap<(String, String), Outcome>>,
}

impl Evidence {
    /// Evidence kept under `data_dir/evidence`.
    pub fn new(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("evidence");
        std::fs::create_dir_all(dir.join("incoming"))?;
        // Evidence is for the collector's eyes only: directories 0700, bundles 0600.
        use std::os::unix::fs::PermissionsExt;
        for d in [dir.clone(), dir.join("incoming")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir,
            uploads: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(HashMap::new()),
        })
    }

    fn reject(&self, key: (String, String), why: String) {
        if let Some(u) = bannin_proto::lock(&self.uploads).remove(&key) {
            let _ = std::fs::remove_file(&u.path);
        }
        tracing::warn!(host.id = %key.0, command.id = %key.1, reason = %why, "Evidence upload rejected");
        bannin_proto::lock(&self.outcomes).insert(key, Outcome::Rejected(why));
    }

    /// Takes one chunk. Blocking file I/O: call from a blocking context.
    pub fn chunk(&self, host: &str, chunk: v1::EvidenceChunk) {
        let key = (host.to_owned(), chunk.command_id.clone());
        if bannin_proto::lock(&self.outcomes).contains_key(&key) {
            return; // Already rejected or stored: ignore the rest.
        }
        let data_hash = bannin_proto::hex(Sha256::digest(&chunk.data));
        if data_hash != chunk.sha256 {
            return self.reject(
                key,
                format!(
                    "the chunk at offset {} failed its SHA-256 check: upload rejected",
                    chunk.offset
                ),
            );
        }
        let mut uploads = bannin_proto::lock(&self.uploads);
        if !uploads.contains_key(&key) {
            if chunk.offset != 0 {
                drop(uploads);
                return self.reject(
                    key,
                    format!("upload started at offset {}, not 0", chunk.offset),
                );
            }
            let safe: String = chunk
                .command_id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            let path = self
                .dir
                .join("incoming")
                .join(format!("{}-{safe}.part", key.0));
            let created = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
            };
            match created {
                Ok(file) => {
                    uploads.insert(
                        key.clone(),
                        Upload {
                            file,
                            path,
                            received: 0,
                            hasher: Sha256::new(),
                        },
                    );
                }
                Err(e) => {
                    drop(uploads);
                    return self.reject(key, format!("cannot store the upload: {e}"));
                }
            }
        }
        let Some(up) = uploads.get_mut(&key) else {
            return;
        };
        if chunk.offset != up.received {
            let why = format!(
                "chunk at offset {} but {} bytes received: upload rejected",
                chunk.offset, up.received
            );
            drop(uploads);
            return self.reject(key, why);
        }
        if up.received + chunk.data.len() as u64 > MAX_BUNDLE_BYTES {
            drop(uploads);
            return self.reject(
                key,
                format!("bundle over the limit of {MAX_BUNDLE_BYTES} bytes"),
            );
        }
        if let Err(e) = up.file.write_all(&chunk.data) {
            drop(uploads);
            return self.reject(key, format!("cannot store the upload: {e}"));
        }
        up.hasher.update(&chunk.data);
        up.received += chunk.data.len() as u64;
        if !chunk.last {
            return;
        }
        let Some(up) = uploads.remove(&key) else {
            return;
        };
        drop(uploads);
        let sha256 = bannin_proto::hex(up.hasher.finalize());
        if up.received != chunk.bundle_size || sha256 != chunk.bundle_sha256 {
            let _ = std::fs::remove_file(&up.path);
            return self.reject(key, format!(
                "bundle is {} bytes with SHA-256 {sha256}, the agent announced {} bytes with {}: rejected",
                up.received, chunk.bundle_size, chunk.bundle_sha256
            ));
        }
        if let Err(e) = up.file.sync_all() {
            let _ = std::fs::remove_file(&up.path);
            return self.reject(key, format!("cannot store the upload: {e}"));
        }
        match verify_manifest(&up.path) {
            Ok((artifacts, manifest)) => {
                let final_path = self.dir.join(format!("{sha256}.tar.zst"));
                if let Err(e) = std::fs::rename(&up.path, &final_path) {
                    let _ = std::fs::remove_file(&up.path);
                    return self.reject(key, format!("cannot store the bundle: {e}"));
                }
                tracing::info!(host.id = %key.0, command.id = %key.1, sha256 = %sha256, size = up.received, artifacts, "Evidence stored and verified");
                bannin_proto::lock(&self.outcomes).insert(
                    key,
                    Outcome::Stored {
                        path: final_path,
                        sha256,
                        size: up.received,
                        artifacts,
                        manifest,
                    },
                );
            }
            Err(why) => {
                let _ = std::fs::remove_file(&up.path);
                self.reject(key, format!("bundle manifest check failed: {why}"));
            }
        }
    }

    /// Where a stored bundle lives.
    pub fn bundle_path(&self, sha256: &str) -> PathBuf {
        self.bundle_file(sha256)
    }

    /// Cluster mode: where a bundle fetched from the object store is written
    /// before [`Evidence::adopt`] (a new name each time).
    pub fn fetch_path(&self, sha256: &str) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.dir
            .join("incoming")
            .join(format!("{sha256}.fetch.{n}"))
    }

    /// Cluster mode: a fetched bundle, already checked against its hash,
    /// takes its place among the held bundles.
    pub fn adopt(&self, fetched: &Path, sha256: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fetched, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(fetched, self.bundle_file(sha256))
    }

    fn bundle_file(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.tar.zst"))
    }

    /// Re-hashes a stored bundle; `Ok(sha256)` of what is on disk.
    pub fn rehash(&self, sha256: &str) -> std::io::Result<String> {
        let mut file = std::fs::File::open(self.bundle_path(sha256))?;
        sha256_stream(&mut file).map(|(sha, _)| sha)
    }

    /// Bytes received so far of an upload in progress.
    pub fn progress(&self, host: &str, command_id: &str) -> Option<u64> {
        bannin_proto::lock(&self.uploads)
            .get(&(host.to_owned(), command_id.to_owned()))
            .map(|u| u.received)
    }

    /// The outcome of a finished upload (taken: asked once, by the command's result).
    pub fn take_outcome(&self, host: &str, command_id: &str) -> Option<Outcome> {
        let key = (host.to_owned(), command_id.to_owned());
        if let Some(u) = bannin_proto::lock(&self.uploads).remove(&key) {
            let _ = std::fs::remove_file(&u.path);
            return Some(Outcome::Rejected(
                "the upload ended before its last chunk".into(),
            ));
        }
        bannin_proto::lock(&self.outcomes).remove(&key)
    }
}

/// How a custodian disposed of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposal {
    /// Destroyed.
    Wiped,
    /// Given back to its owner.
    Returned,
    /// Handed to another custodian.
    Transferred,
}

impl std::str::FromStr for Disposal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wiped" => Ok(Disposal::Wiped),
            "returned" => Ok(Disposal::Returned),
            "transferred" => Ok(Disposal::Transferred),
            _ => Err("method must be wiped, returned or transferred".into()),
        }
    }
}

impl Disposal {
    /// Its name, as written in the custody log.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposal::Wiped => "wiped",
            Disposal::Returned => "returned",
            Disposal::Transferred => "transferred",
        }
    }
}

/// Why evidence cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportRefusal {
    /// The stored bytes changed since they were received.
    #[error("evidence {id} no longer matches its hash ({found}); not exported")]
    Modified {
        /// Evidence id.
        id: String,
        /// What the bytes hash to now.
        found: String,
    },
    /// The bundle cannot be read.
    #[error("reading evidence: {0}")]
    Unreadable(#[from] std::io::Error),
}

impl Evidence {
    /// Re-hashes a stored bundle and checks every artifact against its manifest:
    /// `(intact, what the custody log records)`. Blocking: reads the whole bundle.
    pub fn verify(&self, record: &EvidenceRecord) -> (bool, String) {
        match self.rehash(&record.sha256) {
            Ok(sha) if sha == record.sha256 => {
                match verify_manifest(&self.bundle_path(&record.sha256)) {
                    Ok((n, _)) => (
                        true,
                        format!("intact: sha256 {sha} matches, {n} artifacts match the manifest"),
                    ),
                    Err(e) => (false, format!("MANIFEST CHECK FAILED: {e}")),
                }
            }
            Ok(sha) => (
                false,
                format!(
                    "MODIFIED: the stored bytes hash to {sha}, the record says {}",
                    record.sha256
                ),
            ),
            Err(e) => (false, format!("UNREADABLE: {e}")),
        }
    }

    /// Checks a bundle is still what was received before it leaves the collector.
    /// Blocking: reads the whole bundle.
    pub fn check_for_export(&self, record: &EvidenceRecord) -> Result<(), ExportRefusal> {
        let found = self.rehash(&record.sha256)?;
        if found != record.sha256 {
            return Err(ExportRefusal::Modified {
                id: record.id.clone(),
                found,
            });
        }
        Ok(())
    }

    /// Removes a bundle's bytes; the record stays, marked disposed, by the caller.
    pub fn dispose(&self, record: &EvidenceRecord) -> std::io::Result<()> {
        std::fs::remove_file(self.bundle_path(&record.sha256))
    }

    /// The manifest of a held bundle, pretty-printed; empty when disposed of or unreadable.
    /// Blocking: reads the whole bundle.
    pub fn manifest_json(&self, record: &EvidenceRecord) -> String {
        if record.disposed {
            return String::new();
        }
        verify_manifest(&self.bundle_path(&record.sha256))
            .map(|(_, m)| serde_json::to_string_pretty(&m).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// SHA-256 (hex) and length of everything `r` yields, read in 64 KiB pieces.
fn sha256_stream(r: &mut impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((bannin_proto::hex(hasher.finalize()), size));
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
}

/// Most entries a bundle may hold.
pub const MAX_ENTRIES: usize = 100_000;
/// Most bytes a bundle may unpack to.
pub const MAX_UNPACKED: u64 = 64 * 1024 * 1024 * 1024;

/// Reads the bundle as the untrusted archive it is and checks every artifact
/// against `manifest.json`; returns the number of artifacts and the manifest.
/// Refused, with the reason: anything but regular files (and directories) —
/// symlinks, hard links, devices, FIFOs; a name outside `artifacts/` or not a
/// safe relative path ([`bannin_proto::evidence_names::check_entry`]); a name
/// twice; more than [`MAX_ENTRIES`] entries or [`MAX_UNPACKED`] bytes.
pub fn verify_manifest(path: &Path) -> Result<(usize, serde_json::Value), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let decoder = zstd::Decoder::new(file).map_err(|e| format!("not zstd: {e}"))?;
    let mut archive = tar::Archive::new(decoder);
    let mut hashes: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut manifest = None;
    let (mut entries, mut unpacked) = (0usize, 0u64);
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("bad tar entry: {e}"))?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            let dir = String::from_utf8_lossy(&raw);
            let dir = dir.trim_end_matches('/');
            if dir != "artifacts" {
                bannin_proto::evidence_names::check_entry(dir.as_bytes())?;
            }
            continue;
        }
        let name = bannin_proto::evidence_names::check_entry(&raw)?.to_owned();
        if !kind.is_file() {
            return Err(format!(
                "{}: a {} is not evidence a bundle may hold (regular files only)",
                bannin_proto::hello::inert_debug(&name),
                match kind {
                    tar::EntryType::Symlink => "symlink",
                    tar::EntryType::Link => "hard link",
                    tar::EntryType::Char | tar::EntryType::Block => "device node",
                    tar::EntryType::Fifo => "FIFO",
                    _ => "special entry",
                }
            ));
        }
        unpacked = unpacked.saturating_add(entry.header().size().unwrap_or(u64::MAX));
        if unpacked > MAX_UNPACKED {
            return Err(format!("unpacks to more than {MAX_UNPACKED} bytes"));
        }
        if name == "manifest.json" {
            if manifest.is_some() {
                return Err("manifest.json twice".into());
            }
            let mut bytes = Vec::new();
            entry
                .take(16 * 1024 * 1024)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())?;
            manifest = Some(bytes);
            continue;
        }
        let hashed = sha256_stream(&mut entry).map_err(|e| e.to_string())?;
        if hashes.insert(name.clone(), hashed).is_some() {
            return Err(format!(
                "{}: twice in the bundle",
                bannin_proto::hello::inert_debug(&name)
            ));
        }
    }
    let manifest = manifest.ok_or("no manifest.json")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("manifest.json: {e}"))?;
    let artifacts = manifest["artifacts"]
        .as_array()
        .ok_or("manifest has no artifacts")?;
    let mut listed = std::collections::BTreeSet::new();
    for a in artifacts {
        let path = a["path"].as_str().ok_or("artifact without a path")?;
        if !listed.insert(path) {
            return Err(format!(
                "{}: twice in the manifest",
                bannin_proto::hello::inert_debug(path)
            ));
        }
        let (sha, size) = hashes
            .remove(path)
            .ok_or_else(|| format!("{path} is in the manifest but not in the bundle"))?;
        if a["sha256"].as_str() != Some(sha.as_str()) || a["size"].as_u64() != Some(size) {
            return Err(format!("{path} does not match its manifest entry"));
        }
    }
    if let Some(extra) = hashes.keys().next() {
        return Err(format!("{extra} is in the bundle but not in the manifest"));
    }
    Ok((artifacts.len(), manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry as a hostile agent would write it: any name bytes, any type.
    struct Raw<'a> {
        name: &'a [u8],
        kind: tar::EntryType,
        data: &'a [u8],
        link: &'a str,
    }

    fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
        Raw {
            name: name.as_bytes(),
            kind: tar::EntryType::Regular,
            data,
            link: "",
        }
    }

    /// A zstd tar of `entries` plus a manifest listing every regular `artifacts/` entry.
    fn bundle(dir: &Path, entries: &[Raw<'_>]) -> PathBuf {
        let path = dir.join("b.tar.zst");
        let mut builder = tar::Builder::new(Vec::new());
        let mut listed = Vec::new();
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let gnu = h.as_gnu_mut().expect("gnu");
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            h.set_entry_type(e.kind);
            h.set_size(e.data.len() as u64);
            h.set_mode(0o600);
            if !e.link.is_empty() {
                h.set_link_name(e.link).expect("link");
            }
            h.set_cksum();
            builder.append(&h, e.data).expect("append");
            if e.kind == tar::EntryType::Regular {
                listed.push(serde_json::json!({
                    "path": String::from_utf8_lossy(e.name),
                    "sha256": bannin_proto::sha256_hex(e.data),
                    "size": e.data.len(),
                }));
            }
        }
        let manifest =
            serde_json::to_vec(&serde_json::json!({ "artifacts": listed })).expect("json");
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        builder
            .append_data(&mut h, "manifest.json", manifest.as_slice())
            .expect("manifest");
        let tar = builder.into_inner().expect("tar");
        std::fs::write(&path, zstd::encode_all(tar.as_slice(), 3).expect("zstd")).expect("write");
        path
    }

    proptest::proptest! {
        /// Any entries a hostile agent can put in a bundle: the check answers,
        /// never panics, and accepts only regular files with safe names.
        #[test]
        fn fuzz_bundles_are_checked_without_panicking(
            entries in proptest::collection::vec(
                (
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 1..100),
                    proptest::sample::select(vec![b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'L', b'K', b'x', b'g']),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                ),
                0..6,
            ),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let raws: Vec<Raw<'_>> = entries
                .iter()
                .map(|(name, kind, data)| Raw {
                    name,
                    kind: tar::EntryType::new(*kind),
                    data,
                    link: "",
                })
                .collect();
            let p = bundle(dir.path(), &raws);
            // GNU long names and pax headers (L, K, x, g) are read by the tar
            // reader into the entry that follows; what it yields is checked.
            let metadata = entries.iter().any(|(_, k, _)| matches!(k, b'L' | b'K' | b'x' | b'g'));
            if verify_manifest(&p).is_ok() && !metadata {
                for (name, kind, _) in &entries {
                    proptest::prop_assert!(
                        *kind == b'0' || *kind == b'5',
                        "only regular files and directories, not {}", *kind as char
                    );
                    if *kind == b'0' {
                        proptest::prop_assert!(bannin_proto::evidence_names::check_entry(name).is_ok());
                    }
                }
            }
            // Not an archive at all, raw and compressed.
            std::fs::write(&p, &garbage).expect("write");
            let _ = verify_manifest(&p);
            std::fs::write(&p, zstd::encode_all(garbage.as_slice(), 1).expect("zstd")).expect("write");
            let _ = verify_manifest(&p);
        }
    }

    #[test]
    fn evidence_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("evidence/incoming")).expect("dirs");
        std::fs::set_permissions(
            dir.path().join("evidence"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("loosen");
        let _evidence = Evidence::new(dir.path()).expect("evidence");
        for d in ["evidence", "evidence/incoming"] {
            let mode = std::fs::metadata(dir.path().join(d))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
    }

    #[test]
    fn an_honest_bundle_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = bundle(
            dir.path(),
            &[
                file("artifacts/files/etc/passwd", b"root:x:0:0"),
                file("artifacts/triage/processes.json", b"[]"),
            ],
        );
        let (n, _) = verify_manifest(&p).expect("verified");
        assert_eq!(n, 2);
    }

    #[test]
    fn hostile_bundles_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: Vec<(Vec<Raw<'_>>, &str)> = vec![
            (
                vec![Raw {
                    name: b"artifacts/link",
                    kind: tar::EntryType::Symlink,
                    data: b"",
                    link: "/etc/shadow",
                }],
                "symlink",
            ),
            (vec![file("../../escape.txt", b"x")], "only manifest.json"),
            (vec![file("/etc/cron.d/x", b"x")], "only manifest.json"),
            (
                vec![file("artifacts/../../x", b"x")],
                "not a safe relative name",
            ),
            (
                vec![Raw {
                    name: b"artifacts/sda",
                    kind: tar::EntryType::Block,
                    data: b"",
                    link: "",
                }],
                "device node",
            ),
            (
                vec![Raw {
                    name: b"artifacts/pipe",
                    kind: tar::EntryType::Fifo,
                    data: b"",
                    link: "",
                }],
                "FIFO",
            ),
            (
                vec![file("artifacts/a\x1b[2Jb", b"x")],
                "not a safe relative name",
            ),
            (
                vec![file("artifacts/dup", b"one"), file("artifacts/dup", b"two")],
                "twice",
            ),
        ];
        for (entries, why) in cases {
            let p = bundle(dir.path(), &entries);
            let err = verify_manifest(&p).expect_err("refused");
            assert!(err.contains(why), "{why}: {err}");
            assert!(!err.contains('\x1b'), "the reason is inert: {err:?}");
        }
    }
}
