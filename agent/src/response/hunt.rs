//! Hunts: one question of the fleet, answered here with the rows that match.
//!
//! A hunt runs on a thread of its own at the lowest priority the kernel gives
//! (nice 19, the idle I/O class), so a scan never competes with the host's
//! work or with the agent's other commands, which run elsewhere. It stops at
//! its caps — CPU time of its thread, bytes read, hits kept — and says which
//! one it reached; a `stop_hunt` (or the agent stopping) cancels it between
//! two files or two blocks of a file.
//!
//! File questions walk the host's file system under the agent's host root
//! without following a symlink, skip `/proc`, `/sys` and `/dev`, and open
//! what they read as `triage hash` does (no symlink, no blocking on a FIFO).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bannin_proto::hunts::{DEFAULT_DEPTH, DEFAULT_MAX_SIZE, glob, network};
use bannin_proto::v1;
use bannin_proto::v1::hunt_question::Kind;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::triage::{self, Question};
use crate::host::net::{parse_sockets, socket_owners, tcp_state};
use crate::host::paths::escape;
use crate::host::{HostRoot, priority};

/// CPU time a hunt may use on this host when the hunt says nothing.
pub const DEFAULT_CPU_MS: u64 = 120_000;
/// Bytes a hunt may read when the hunt says nothing.
pub const DEFAULT_READ_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Hits kept when the hunt says nothing (and the most a hunt may ask for).
pub const DEFAULT_HITS: u32 = 1000;
/// The most hits one host sends back, whatever the hunt asks.
pub const MAX_HITS: u32 = 5000;
/// Largest answer (JSON); the tail of the hits is cut to fit.
pub const MAX_ANSWER_BYTES: usize = 512 * 1024;
/// Directories the file questions never enter: the kernel's views, not files.
const PSEUDO: [&str; 3] = ["/proc", "/sys", "/dev"];

/// A hunt, parsed: its question checked as the collector checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hunt {
    /// The hunt's id (`h3`).
    pub id: String,
    /// The question.
    pub question: v1::HuntQuestion,
    /// Caps.
    pub caps: Caps,
}

/// What a hunt may use on this host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Caps {
    /// CPU time of the hunt's thread, in ms.
    pub cpu_ms: u64,
    /// Bytes read from files.
    pub read_bytes: u64,
    /// Hits kept.
    pub hits: u32,
}

impl Caps {
    /// The hunt's caps, with this agent's defaults for the ones it leaves at 0.
    pub fn of(command: &v1::HuntCommand) -> Self {
        let or = |v: u64, d: u64| if v == 0 { d } else { v };
        Self {
            cpu_ms: or(command.max_cpu_ms, DEFAULT_CPU_MS),
            read_bytes: or(command.max_read_bytes, DEFAULT_READ_BYTES),
            hits: if command.max_hits == 0 {
                DEFAULT_HITS
            } else {
                command.max_hits.min(MAX_HITS)
            },
        }
    }
}

/// Why a hunt gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// Stopped by an operator (or the agent stopping).
    #[error("stopped before it finished")]
    Stopped,
    /// A triage question failed.
    #[error(transparent)]
    Triage(#[from] triage::TriageError),
    /// The YARA rules do not compile here.
    #[error("the YARA rules do not compile: {0}")]
    Rules(String),
}

/// Compiles a hunt's YARA rules as the collector checks them: `include`
/// refused (a rule never reads a file of the host it is compiled on).
pub fn compile_rules(source: &str) -> Result<yara_x::Rules, HuntError> {
    let mut compiler = yara_x::Compiler::new();
    compiler.enable_includes(false);
    compiler
        .add_source(source)
        .map_err(|e| HuntError::Rules(e.to_string()))?;
    Ok(compiler.build())
}

/// What a hunt found and what it cost.
#[derive(Debug, Default)]
pub struct Answer {
    hits: Vec<Value>,
    total: u64,
    capped: &'static str,
    files: u64,
    bytes: u64,
    cpu_ms: u64,
}

impl Answer {
    /// The answer as the collector reads it (bounded to [`MAX_ANSWER_BYTES`]).
    pub fn to_json(&self) -> String {
        let mut hits: &[Value] = &self.hits;
        loop {
            let text = json!({
                "hits": hits,
                "total": self.total,
                "cut": self.total - hits.len() as u64,
                "capped": self.capped,
                "files": self.files,
                "bytes": self.bytes,
                "cpu_ms": self.cpu_ms,
            })
            .to_string();
            if text.len() <= MAX_ANSWER_BYTES || hits.is_empty() {
                return text;
            }
            let keep = hits.len() * MAX_ANSWER_BYTES / text.len();
            hits = &hits[..keep.saturating_sub(1)];
        }
    }
}

/// A hunt's running account: caps, cancellation, what it found.
struct Run<'a> {
    caps: Caps,
    stop: &'a AtomicBool,
    answer: Answer,
    cpu_start: u64,
}

impl Run<'_> {
    /// Counts one hit (kept while under the cap).
    fn hit(&mut self, row: Value) {
        self.answer.total += 1;
        if self.answer.hits.len() < self.caps.hits as usize {
            self.answer.hits.push(row);
        }
    }

    /// `Err` when stopped; `Ok(false)` when a cap is reached (recorded).
    fn go_on(&mut self) -> Result<bool, HuntError> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(HuntError::Stopped);
        }
        if !self.answer.capped.is_empty() {
            return Ok(false);
        }
        self.answer.cpu_ms = priority::thread_cpu_ms().saturating_sub(self.cpu_start);
        if self.answer.cpu_ms >= self.caps.cpu_ms {
            self.answer.capped = "cpu";
        } else if self.answer.bytes >= self.caps.read_bytes {
            self.answer.capped = "bytes";
        }
        Ok(self.answer.capped.is_empty())
    }
}

/// Runs `hunt` on the calling thread (give it one of its own: see
/// [`priority::lower`]); `stop` cancels it.
pub fn run(root: &HostRoot, hunt: &Hunt, stop: &AtomicBool) -> Result<Answer, HuntError> {
    let mut run = Run {
        caps: hunt.caps,
        stop,
        answer: Answer::default(),
        cpu_start: priority::thread_cpu_ms(),
    };
    match &hunt.question.kind {
        None => {}
        Some(Kind::FileHash(q)) => {
            let max_size = if q.max_size == 0 {
                DEFAULT_MAX_SIZE
            } else {
                q.max_size
            };
            walk(
                root,
                &q.roots,
                q.max_depth,
                &mut run,
                &mut |run, shown, path, meta| {
                    if meta.len() > max_size {
                        return Ok(());
                    }
                    if let Some(digest) = hash_file(path, meta, run)?
                        && digest == q.sha256
                    {
                        run.hit(json!({ "path": shown, "sha256": digest, "size": meta.len(), "mtime": mtime(meta) }));
                    }
                    Ok(())
                },
            )?;
        }
        Some(Kind::Yara(q)) => yara(root, q, &mut run)?,
        Some(Kind::FileName(q)) => {
            let matcher = glob(&q.pattern).map_err(triage::TriageError::Refused)?;
            let whole_path = q.pattern.contains('/');
            walk(
                root,
                &q.roots,
                q.max_depth,
                &mut run,
                &mut |run, shown, path, meta| {
                    let hit = if whole_path {
                        matcher.is_match(shown)
                    } else {
                        path.file_name().is_some_and(|n| matcher.is_match(n))
                    };
                    if hit {
                        run.hit(json!({ "path": shown, "size": meta.len(), "mtime": mtime(meta), "uid": uid(meta) }));
                    }
                    Ok(())
                },
            )?;
        }
        Some(Kind::Process(q)) => processes(root, q, &mut run)?,
        Some(Kind::Connection(q)) => {
            let remote = Some(q.remote.as_str())
                .filter(|r| !r.is_empty())
                .and_then(network);
            let port = u16::try_from(q.port).unwrap_or(0);
            sockets(root, &mut run, false, |s| {
                remote.is_none_or(|n| n.contains(&s.remote.0)) && (port == 0 || s.remote.1 == port)
            })?;
        }
        Some(Kind::Listener(q)) => {
            let port = u16::try_from(q.port).unwrap_or(0);
            sockets(root, &mut run, true, |s| s.local.1 == port)?;
        }
        Some(Kind::Account(q)) => {
            let answer: Value = serde_json::from_str(&triage::answer(root, Question::Users, None)?)
                .unwrap_or(Value::Null);
            for row in answer["rows"].as_array().into_iter().flatten() {
                if row["name"].as_str() == Some(q.name.as_str()) {
                    run.hit(row.clone());
                }
            }
        }
        Some(Kind::Triage(t)) => {
            let question: Question = t.question.parse()?;
            let path = Some(t.path.as_str()).filter(|p| !p.is_empty());
            let answer: Value =
                serde_json::from_str(&triage::answer(root, question, path)?).unwrap_or(Value::Null);
            for row in answer["rows"].as_array().into_iter().flatten() {
                run.hit(row.clone());
            }
        }
    }
    run.go_on()?;
    run.answer.cpu_ms = priority::thread_cpu_ms().saturating_sub(run.cpu_start);
    Ok(run.answer)
}

/// Longest one file's scan may take (a pathological rule on a large file).
const YARA_FILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Files under the question's roots that any of its rules match: each file
/// read once into a buffer the scan reuses, its bytes counted against the cap.
fn yara(root: &HostRoot, q: &v1::YaraQuestion, run: &mut Run<'_>) -> Result<(), HuntError> {
    let rules = compile_rules(&q.rules)?;
    let mut scanner = yara_x::Scanner::new(&rules);
    scanner.set_timeout(YARA_FILE_TIMEOUT);
    let max_size = if q.max_size == 0 {
        DEFAULT_MAX_SIZE
    } else {
        q.max_size
    };
    let mut data = Vec::new();
    walk(
        root,
        &q.roots,
        q.max_depth,
        run,
        &mut |run, shown, path, meta| {
            if meta.len() > max_size || meta.len() == 0 {
                return Ok(());
            }
            let Ok(file) = crate::host::paths::open_regular(path, meta) else {
                return Ok(());
            };
            data.clear();
            if file.take(meta.len()).read_to_end(&mut data).is_err() {
                return Ok(());
            }
            run.answer.bytes += data.len() as u64;
            let Ok(results) = scanner.scan(&data) else {
                return Ok(());
            };
            let matched: Vec<&str> = results.matching_rules().map(|r| r.identifier()).collect();
            if !matched.is_empty() {
                let sha256 = bannin_proto::sha256_hex(&data);
                run.hit(json!({ "path": shown, "rules": matched, "sha256": sha256, "size": meta.len(), "mtime": mtime(meta), "uid": uid(meta) }));
            }
            Ok(())
        },
    )
}

fn mtime(meta: &std::fs::Metadata) -> i64 {
    std::os::unix::fs::MetadataExt::mtime(meta)
}

fn uid(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::uid(meta)
}

/// What a file question does with one regular file: (run, shown path, real path, metadata).
type OnFile<'f> =
    dyn FnMut(&mut Run<'_>, &str, &Path, &std::fs::Metadata) -> Result<(), HuntError> + 'f;

/// Walks `roots` (or `/`) under the host root, depth first, without following
/// symlinks, calling `on_file` for each regular file; stops at a cap.
fn walk(
    root: &HostRoot,
    roots: &[String],
    max_depth: u32,
    run: &mut Run<'_>,
    on_file: &mut OnFile<'_>,
) -> Result<(), HuntError> {
    let depth_limit = if max_depth == 0 {
        DEFAULT_DEPTH
    } else {
        max_depth
    };
    let base = std::fs::canonicalize(&root.0).unwrap_or_else(|_| root.0.clone());
    let starts: Vec<String> = if roots.is_empty() {
        vec!["/".to_owned()]
    } else {
        roots.to_vec()
    };
    let shown_of = |real: &Path| -> String {
        real.strip_prefix(&base)
            .map(|inside| escape(&Path::new("/").join(inside)))
            .unwrap_or_else(|_| escape(real))
    };
    let mut stack: Vec<(PathBuf, u32)> = Vec::new();
    for start in starts {
        // A root that is a symlink (/bin → usr/bin) is resolved once, inside the host root.
        match std::fs::canonicalize(root.join(&start)) {
            Ok(real) if real.starts_with(&base) => stack.push((real, 0)),
            _ => continue,
        }
    }
    let mut files_since_check = 0u32;
    while let Some((dir, depth)) = stack.pop() {
        if !run.go_on()? {
            return Ok(());
        }
        let shown_dir = shown_of(&dir);
        if PSEUDO
            .iter()
            .any(|p| shown_dir == *p || shown_dir.starts_with(&format!("{p}/")))
        {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if depth < depth_limit {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            run.answer.files += 1;
            on_file(run, &shown_of(&path), &path, &meta)?;
            files_since_check += 1;
            if files_since_check >= 64 {
                files_since_check = 0;
                if !run.go_on()? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// SHA-256 of the regular file `meta` describes, counting the bytes read;
/// `None` when it cannot be opened or a cap is reached inside it.
fn hash_file(
    path: &Path,
    meta: &std::fs::Metadata,
    run: &mut Run<'_>,
) -> Result<Option<String>, HuntError> {
    let Ok(file) = crate::host::paths::open_regular(path, meta) else {
        return Ok(None);
    };
    hash_counted(file.take(meta.len()), run)
}

/// SHA-256 of what `reader` holds, counting the bytes read and stopping at
/// a cap (`None`) or a stop (`Err`); `None` when reading fails.
fn hash_counted(mut reader: impl Read, run: &mut Run<'_>) -> Result<Option<String>, HuntError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        run.answer.bytes += n as u64;
        hasher.update(&buf[..n]);
        if !run.go_on()? {
            return Ok(None);
        }
    }
    Ok(Some(bannin_proto::hex(hasher.finalize())))
}

fn processes(root: &HostRoot, q: &v1::ProcessQuestion, run: &mut Run<'_>) -> Result<(), HuntError> {
    let name = Some(q.name.as_str()).filter(|s| !s.is_empty()).map(glob);
    let exe = Some(q.exe.as_str()).filter(|s| !s.is_empty()).map(glob);
    let (Ok(name), Ok(exe)) = (name.transpose(), exe.transpose()) else {
        return Err(triage::TriageError::Refused("a pattern is not a glob".into()).into());
    };
    let answer: Value = serde_json::from_str(&triage::answer(root, Question::Processes, None)?)
        .unwrap_or(Value::Null);
    // One hash per executable, however many processes run it.
    let mut digests: HashMap<String, Option<String>> = HashMap::new();
    for row in answer["rows"].as_array().into_iter().flatten() {
        if !run.go_on()? {
            return Ok(());
        }
        let text = |k: &str| row[k].as_str().unwrap_or_default();
        if name.as_ref().is_some_and(|g| !g.is_match(text("comm")))
            || exe.as_ref().is_some_and(|g| !g.is_match(text("exe")))
            || (!q.cmdline.is_empty() && !text("cmdline").contains(&q.cmdline))
        {
            continue;
        }
        let mut row = row.clone();
        if !q.sha256.is_empty() {
            let pid = row["pid"].as_u64().unwrap_or(0);
            let key = text("exe").to_owned();
            let digest = match digests.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = exe_digest(root, pid, run)?;
                    digests.insert(key, d.clone());
                    d
                }
            };
            if digest.as_deref() != Some(q.sha256.as_str()) {
                continue;
            }
            row["sha256"] = Value::String(q.sha256.clone());
        }
        run.hit(row);
    }
    Ok(())
}

/// SHA-256 of the file a process runs, read through `/proc/PID/exe` (which
/// still reads a deleted executable).
fn exe_digest(root: &HostRoot, pid: u64, run: &mut Run<'_>) -> Result<Option<String>, HuntError> {
    let path = root.join(format!("/proc/{pid}/exe"));
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    hash_counted(file, run)
}

/// Sockets of the host's network namespace (listening or not) that `wanted`
/// keeps, with the process that owns each.
fn sockets(
    root: &HostRoot,
    run: &mut Run<'_>,
    listening: bool,
    wanted: impl Fn(&crate::host::net::Socket) -> bool,
) -> Result<(), HuntError> {
    let mut found = Vec::new();
    for protocol in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(root.join(format!("/proc/net/{protocol}"))) else {
            continue;
        };
        for s in parse_sockets(&text, protocol) {
            let tcp = protocol.starts_with("tcp");
            let is_listener = if tcp {
                s.state == 0x0A
            } else {
                s.remote.1 == 0
            };
            if is_listener == listening && wanted(&s) {
                found.push((s, tcp));
            }
        }
    }
    run.go_on()?;
    let inodes = found
        .iter()
        .map(|(s, _)| s.inode)
        .filter(|i| *i != 0)
        .collect();
    let owners = socket_owners(root, &inodes);
    for (s, tcp) in found {
        let mut row = json!({
            "protocol": s.protocol,
            "local": endpoint(s.local),
            "remote": endpoint(s.remote),
            "state": if tcp { tcp_state(s.state) } else { "udp" },
            "uid": s.uid,
        });
        if let Some((pid, comm, exe)) = owners.get(&s.inode) {
            row["pid"] = json!(pid);
            row["comm"] = json!(escape(Path::new(comm)));
            row["exe"] = json!(escape(Path::new(exe)));
        }
        run.hit(row);
    }
    Ok(())
}

/// `a.b.c.d:p` or `[v6]:p`.
fn endpoint((address, port): (std::net::IpAddr, u16)) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunt(kind: Kind, caps: Caps) -> Hunt {
        Hunt {
            id: "h1".into(),
            question: v1::HuntQuestion { kind: Some(kind) },
            caps,
        }
    }

    const WIDE: Caps = Caps {
        cpu_ms: 60_000,
        read_bytes: u64::MAX,
        hits: 100,
    };

    /// A fixture host root with a planted file among decoys.
    fn planted() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = b"#!/bin/sh\necho implant\n";
        for (path, data) in [
            ("srv/www/a.txt", &b"hello"[..]),
            ("srv/www/deep/.x", bad),
            ("srv/www/deep/b.bin", b"other"),
            ("proc/1/fake", bad),
        ] {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, data).expect("write");
        }
        std::os::unix::fs::symlink(
            dir.path().join("srv/www/deep/.x"),
            dir.path().join("srv/link"),
        )
        .expect("symlink");
        (dir, bannin_proto::sha256_hex(bad))
    }

    #[test]
    fn a_hash_hunt_finds_the_planted_file_and_nothing_through_links_or_proc() {
        let (dir, sha) = planted();
        let root = HostRoot(dir.path().to_owned());
        let stop = AtomicBool::new(false);
        let q = Kind::FileHash(v1::FileHashQuestion {
            sha256: sha.clone(),
            ..Default::default()
        });
        let answer = run(&root, &hunt(q, WIDE), &stop).expect("answer");
        let paths: Vec<&str> = answer
            .hits
            .iter()
            .filter_map(|h| h["path"].as_str())
            .collect();
        assert_eq!(paths, ["/srv/www/deep/.x"], "{answer:?}");
        assert_eq!(
            answer.files, 3,
            "files under /proc are not read: {answer:?}"
        );
        assert_eq!(answer.capped, "");

        let q = Kind::FileName(v1::FileNameQuestion {
            pattern: ".x*".into(),
            roots: vec!["/srv".into()],
            ..Default::default()
        });
        let answer = run(&root, &hunt(q, WIDE), &stop).expect("answer");
        assert_eq!(answer.total, 1, "{answer:?}");
    }

    #[test]
    fn a_yara_hunt_names_the_rules_that_match_and_refuses_includes() {
        let (dir, sha) = planted();
        let root = HostRoot(dir.path().to_owned());
        let stop = AtomicBool::new(false);
        let rules = r##"
            rule implant_echo { strings: $a = "echo implant" condition: $a }
            rule shell_script { strings: $s = "#!/bin/sh" condition: $s at 0 }
            rule never { strings: $n = "not in any file" condition: $n }
        "##;
        let q = Kind::Yara(v1::YaraQuestion {
            rules: rules.into(),
            ..Default::default()
        });
        let answer = run(&root, &hunt(q, WIDE), &stop).expect("answer");
        assert_eq!(answer.total, 1, "{answer:?}");
        assert_eq!(answer.hits[0]["path"], "/srv/www/deep/.x");
        assert_eq!(
            answer.hits[0]["rules"],
            json!(["implant_echo", "shell_script"])
        );
        assert_eq!(answer.hits[0]["sha256"], sha.as_str());
        assert!(answer.bytes > 0, "scanned bytes are counted: {answer:?}");

        let q = Kind::Yara(v1::YaraQuestion {
            rules: "include \"/etc/passwd\"\nrule x { condition: true }".into(),
            ..Default::default()
        });
        let err = run(&root, &hunt(q, WIDE), &stop).expect_err("include refused");
        assert!(err.to_string().contains("include"), "{err}");
    }

    #[test]
    fn a_cap_reached_is_reported_and_a_stop_ends_the_hunt() {
        let (dir, sha) = planted();
        let root = HostRoot(dir.path().to_owned());
        let q = || {
            Kind::FileHash(v1::FileHashQuestion {
                sha256: sha.clone(),
                ..Default::default()
            })
        };
        let stop = AtomicBool::new(false);
        let answer = run(
            &root,
            &hunt(
                q(),
                Caps {
                    read_bytes: 4,
                    ..WIDE
                },
            ),
            &stop,
        )
        .expect("answer");
        assert_eq!(answer.capped, "bytes", "{answer:?}");
        assert!(answer.to_json().contains("\"capped\":\"bytes\""));
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(
            run(&root, &hunt(q(), WIDE), &stop),
            Err(HuntError::Stopped)
        ));
    }

    #[test]
    fn hits_past_the_cap_are_counted_not_kept_and_the_answer_is_bounded() {
        let mut answer = Answer::default();
        let stop = AtomicBool::new(false);
        let mut run = Run {
            caps: Caps { hits: 2, ..WIDE },
            stop: &stop,
            answer: std::mem::take(&mut answer),
            cpu_start: 0,
        };
        for i in 0..5 {
            run.hit(json!({ "i": i }));
        }
        let text = run.answer.to_json();
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["total"], 5);
        assert_eq!(v["cut"], 3);
        assert_eq!(v["hits"].as_array().map(Vec::len), Some(2));
        let mut big = Answer::default();
        for _ in 0..2000 {
            big.hits.push(json!({ "row": "x".repeat(1000) }));
            big.total += 1;
        }
        let text = big.to_json();
        assert!(text.len() <= MAX_ANSWER_BYTES);
        let v: Value = serde_json::from_str(&text).expect("json");
        assert!(v["cut"].as_u64() > Some(1000));
    }
}
