//! Forensic snapshot: the host's volatile state, most volatile first, and the
//! files an operator names, in one tar + zstd bundle with a manifest.
//!
//! The manifest (`manifest.json`, the bundle's last entry) records who asked,
//! why, when collection started and ended (UTC), and for every artifact its
//! path in the bundle, its source, size and SHA-256 — computed over exactly the
//! bytes written into the bundle. What could not be collected is listed with
//! the reason; it never fails the whole snapshot. Named files are read safely:
//! absolute paths only, no `..`, no symlinks followed, regular files only (no
//! devices or FIFOs), and size limits per file and per bundle.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::triage::{self, Question};
use crate::host::HostRoot;

/// Largest single artifact.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest bundle (uncompressed artifacts).
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 512 * 1024 * 1024;
/// Logs are collected from their end, at most this much each.
const LOG_TAIL_BYTES: u64 = 4 * 1024 * 1024;

/// What to collect, and for whom.
#[derive(Debug, Clone)]
pub struct Request {
    /// The command that asked (empty for an offline snapshot).
    pub command_id: String,
    /// Who asked.
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Files the operator names.
    pub files: Vec<String>,
    /// Per-file limit.
    pub max_file_bytes: u64,
    /// Per-bundle limit.
    pub max_bundle_bytes: u64,
    /// The integrity sensor's baseline directory, when this agent keeps one.
    pub integrity_baselines: Option<std::path::PathBuf>,
}

/// One collected artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path inside the bundle.
    pub path: String,
    /// Where it came from on the host.
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Something that could not be collected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// What.
    pub source: String,
    /// Why.
    pub error: String,
}

/// The bundle's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Host id.
    pub host_id: String,
    /// Agent version.
    pub agent_version: String,
    /// Requesting command.
    pub command_id: String,
    /// Requesting operator.
    pub operator: String,
    /// Reason.
    pub reason: String,
    /// Collection start, RFC 3339 UTC.
    pub started: String,
    /// Collection end, RFC 3339 UTC.
    pub finished: String,
    /// Artifacts, in collection order (most volatile first).
    pub artifacts: Vec<Artifact>,
    /// What could not be collected, and why.
    pub skipped: Vec<Skipped>,
    /// For a packet capture: the interfaces, the filter, what was kept and why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<serde_json::Value>,
}

fn now_rfc3339() -> String {
    let ms = bannin_proto::now_unix_ms();
    let secs = ms / 1000;
    // A small civil-from-days conversion keeps the agent free of a date crate.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Bundle<W: Write> {
    tar: tar::Builder<W>,
    manifest: Manifest,
    written: u64,
    request: Request,
}

impl<W: Write> Bundle<W> {
    fn add(&mut self, name: &str, source: &str, bytes: &[u8]) {
        let size = bytes.len() as u64;
        if size > self.request.max_file_bytes {
            return self.skip(
                source,
                format!(
                    "{size} bytes, over the per-file limit of {}",
                    self.request.max_file_bytes
                ),
            );
        }
        if self.written + size > self.request.max_bundle_bytes {
            return self.skip(
                source,
                format!(
                    "the bundle limit of {} bytes is reached",
                    self.request.max_bundle_bytes
                ),
            );
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(u64::try_from(bannin_proto::now_unix_ms() / 1000).unwrap_or(0));
        header.set_cksum();
        // A safe name, and never one already in the bundle.
        let base = format!(
            "artifacts/{}",
            bannin_proto::evidence_names::artifact_name(name)
        );
        let mut path = base.clone();
        let mut n = 1;
        while self.manifest.artifacts.iter().any(|a| a.path == path) {
            n += 1;
            path = format!("{base}~{n}");
        }
        if let Err(e) = self.tar.append_data(&mut header, &path, bytes) {
            return self.skip(source, format!("writing the bundle: {e}"));
        }
        self.written += size;
        let sha256 = bannin_proto::sha256_hex(bytes);
        self.manifest.artifacts.push(Artifact {
            path,
            source: source.to_owned(),
            size,
            sha256,
        });
    }

    fn skip(&mut self, source: &str, error: String) {
        tracing::debug!(source, %error, "Snapshot: not collected");
        self.manifest.skipped.push(Skipped {
            source: source.to_owned(),
            error,
        });
    }

    fn triage(&mut self, root: &HostRoot, question: Question) {
        let name = question.name();
        match triage::answer(root, question, None) {
            Ok(json) => self.add(
                &format!("{name}.json"),
                &format!("triage:{name}"),
                json.as_bytes(),
            ),
            Err(e) => self.skip(&format!("triage:{name}"), e.to_string()),
        }
    }

    /// A host file read whole (small system files) or its tail (logs).
    fn file(&mut self, root: &HostRoot, host_path: &str, tail: Option<u64>) {
        match read_safely(
            root,
            host_path,
            tail.unwrap_or(self.request.max_file_bytes),
            tail.is_some(),
        ) {
            Ok(bytes) => {
                let name = format!("files{host_path}");
                self.add(&name, host_path, &bytes)
            }
            Err(ReadError::Missing) => {}
            Err(ReadError::Refused(e)) => self.skip(host_path, e),
        }
    }

    fn glob_dir(&mut self, root: &HostRoot, dir: &str, tail: Option<u64>) {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        for n in names {
            self.file(root, &format!("{dir}/{n}"), tail);
        }
    }
}

enum ReadError {
    Missing,
    Refused(String),
}

/// Reads a host file without following symlinks, regular files only, at most
/// `limit` bytes (from the end when `tail`, else refusing larger files).
fn read_safely(
    root: &HostRoot,
    host_path: &str,
    limit: u64,
    tail: bool,
) -> Result<Vec<u8>, ReadError> {
    let (_, real) =
        triage::host_path(root, host_path).map_err(|e| ReadError::Refused(e.to_string()))?;
    // The directory's symlinks are resolved once, here; nothing after follows one.
    let real = match crate::host::paths::resolve(&root.0, &real) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Refused(e.to_string())),
    };
    let before = match std::fs::symlink_metadata(&real) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(ReadError::Refused(e.to_string())),
    };
    let ft = before.file_type();
    if !ft.is_file() {
        let what = if ft.is_symlink() {
            "a symlink (not followed)"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "a device, FIFO or socket"
        };
        return Err(ReadError::Refused(format!(
            "{host_path} is {what}: refused"
        )));
    }
    if !tail && before.len() > limit {
        return Err(ReadError::Refused(format!(
            "{} bytes, over the per-file limit of {limit}",
            before.len()
        )));
    }
    let mut file = crate::host::paths::open_regular(&real, &before)
        .map_err(|e| ReadError::Refused(format!("{host_path}: {e}: refused")))?;
    let opened = file
        .metadata()
        .map_err(|e| ReadError::Refused(e.to_string()))?;
    if tail && opened.len() > limit {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(opened.len() - limit))
            .map_err(|e| ReadError::Refused(e.to_string()))?;
    }
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Refused(e.to_string()))?;
    Ok(bytes)
}

/// SHA-256 of a file, streamed (executables can be large).
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(bannin_proto::hex(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// SHA-256 of each running process's executable, cached by device and inode.
fn exe_hashes(root: &HostRoot, processes_json: &str) -> String {
    let mut cache: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = Vec::new();
    let rows = serde_json::from_str::<serde_json::Value>(processes_json)
        .ok()
        .and_then(|v| v["rows"].as_array().cloned())
        .unwrap_or_default();
    for row in rows {
        let Some(pid) = row["pid"].as_u64() else {
            continue;
        };
        let exe = root.join(format!("/proc/{pid}/exe"));
        // /proc/PID/exe opens the running image even when its file was deleted.
        let Ok(meta) = std::fs::metadata(&exe) else {
            continue;
        };
        let key = (meta.dev(), meta.ino());
        let hash = cache
            .entry(key)
            .or_insert_with(|| sha256_file(&exe).unwrap_or_default());
        out.push(serde_json::json!({ "pid": pid, "exe": row["exe"], "sha256": hash }));
    }
    serde_json::to_string(&out).unwrap_or_default()
}

/// Collects a snapshot into `out` (tar, zstd); returns the manifest, which is also
/// the bundle's last entry.
pub fn collect<W: Write>(
    root: &HostRoot,
    host_id: &str,
    request: Request,
    out: W,
) -> std::io::Result<Manifest> {
    let encoder = zstd::Encoder::new(out, 3)?;
    let manifest = manifest_now(
        host_id,
        &request.command_id,
        &request.operator,
        &request.reason,
    );
    let mut b = Bundle {
        tar: tar::Builder::new(encoder),
        manifest,
        written: 0,
        request: request.clone(),
    };
    // Most volatile first.
    match triage::answer(root, Question::Processes, None) {
        Ok(json) => {
            b.add("processes.json", "triage:processes", json.as_bytes());
            let hashes = exe_hashes(root, &json);
            b.add("process_exe_sha256.json", "/proc/*/exe", hashes.as_bytes());
        }
        Err(e) => b.skip("triage:processes", e.to_string()),
    }
    b.triage(root, Question::Connections);
    b.triage(root, Question::Listeners);
    b.triage(root, Question::Logins);
    for f in ["/var/log/wtmp", "/var/log/lastlog"] {
        b.file(root, f, Some(LOG_TAIL_BYTES));
    }
    b.triage(root, Question::Users);
    for f in [
        "/etc/passwd",
        "/etc/group",
        "/etc/sudoers",
        "/root/.ssh/authorized_keys",
    ] {
        b.file(root, f, None);
    }
    b.glob_dir(root, "/etc/sudoers.d", None);
    if let Ok(homes) = std::fs::read_dir(root.join("/home")) {
        let mut homes: Vec<String> = homes
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        homes.sort();
        for h in homes {
            b.file(root, &format!("/home/{h}/.ssh/authorized_keys"), None);
        }
    }
    b.triage(root, Question::Services);
    for f in [
        "/proc/modules",
        "/proc/self/mounts",
        "/proc/net/route",
        "/proc/net/ipv6_route",
        "/proc/net/arp",
    ] {
        b.file(root, f, None);
    }
    b.file(root, "/etc/crontab", None);
    b.glob_dir(root, "/etc/cron.d", None);
    b.glob_dir(root, "/var/spool/cron/crontabs", None);
    for f in [
        "/var/log/auth.log",
        "/var/log/secure",
        "/var/log/syslog",
        "/var/log/messages",
        "/var/log/kern.log",
    ] {
        b.file(root, f, Some(LOG_TAIL_BYTES));
    }
    match &request.integrity_baselines {
        None => b.skip(
            "integrity baseline differences",
            "not collected: a standalone snapshot does not read a running agent's baselines \
             (ask the running agent: `bannin snapshot HOST`)"
                .into(),
        ),
        Some(dir) => match crate::sensors::file_integrity::baseline_differences(root, dir) {
            Ok(diff) => b.add(
                "integrity-differences.json",
                "integrity baseline differences",
                diff.to_string().as_bytes(),
            ),
            Err(e) => b.skip(
                "integrity baseline differences",
                format!(
                    "no integrity baseline in {} ({e}): the file_integrity sensor is disabled or has not finished its first scan",
                    dir.display()
                ),
            ),
        },
    }
    for f in &request.files {
        match read_safely(root, f, request.max_file_bytes, false) {
            Ok(bytes) => b.add(&format!("named{f}"), f, &bytes),
            Err(ReadError::Missing) => b.skip(f, "no such file".into()),
            Err(ReadError::Refused(e)) => b.skip(f, e),
        }
    }
    b.manifest.finished = now_rfc3339();
    finish(b.tar, b.manifest)
}

/// Writes `manifest` as the bundle's last entry and ends the archive.
fn finish<W: Write>(
    mut tar: tar::Builder<zstd::Encoder<'static, W>>,
    manifest: Manifest,
) -> std::io::Result<Manifest> {
    let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, "manifest.json", json.as_slice())?;
    let encoder = tar.into_inner()?;
    encoder.finish()?.flush()?;
    Ok(manifest)
}

/// The start of a manifest for a bundle collected now.
pub fn manifest_now(host_id: &str, command_id: &str, operator: &str, reason: &str) -> Manifest {
    Manifest {
        host_id: host_id.to_owned(),
        agent_version: bannin_proto::VERSION.into(),
        command_id: command_id.to_owned(),
        operator: operator.to_owned(),
        reason: reason.to_owned(),
        started: now_rfc3339(),
        finished: String::new(),
        artifacts: Vec::new(),
        skipped: Vec::new(),
        capture: None,
    }
}

/// Seals one file already collected (a packet capture) in a bundle: the file
/// as `artifacts/NAME`, streamed and hashed as it is written, then the
/// manifest (whose `finished` is set now).
pub fn seal_one<W: Write>(
    mut manifest: Manifest,
    name: &str,
    source: &str,
    file: &Path,
    out: W,
) -> std::io::Result<Manifest> {
    struct Hashing<R> {
        inner: R,
        hasher: Sha256,
    }
    impl<R: Read> Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
    }
    let mut tar = tar::Builder::new(zstd::Encoder::new(out, 3)?);
    let opened = std::fs::File::open(file)?;
    let size = opened.metadata()?.len();
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(bannin_proto::now_unix_ms() / 1000).unwrap_or(0));
    header.set_cksum();
    let path = format!(
        "artifacts/{}",
        bannin_proto::evidence_names::artifact_name(name)
    );
    let mut reader = Hashing {
        inner: opened.take(size),
        hasher: Sha256::new(),
    };
    tar.append_data(&mut header, &path, &mut reader)?;
    manifest.artifacts.push(Artifact {
        path,
        source: source.to_owned(),
        size,
        sha256: bannin_proto::hex(reader.hasher.finalize()),
    });
    manifest.finished = now_rfc3339();
    finish(tar, manifest)
}

/// Default output file name for an offline snapshot.
pub fn default_name(host_id: &str) -> PathBuf {
    Path::new(&format!(
        "bannin-snapshot-{host_id}-{}.tar.zst",
        bannin_proto::now_unix_ms() / 1000
    ))
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
