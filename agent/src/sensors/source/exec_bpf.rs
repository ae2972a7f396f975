//! Every exec, fork and exit, captured in the kernel when it happens (eBPF on
//! the `sched_process_exec`, `sched_process_fork` and `sched_process_exit`
//! raw tracepoints, through a ring buffer): the process, its parent, its
//! uid, its arguments, its executable's identity and its cgroup, as they
//! were at that moment. A process that lives a millisecond is recorded as
//! fully as one that lives a day, and its parent's executable and command
//! line come from the parent's own exec, recorded earlier, not from a
//! `/proc` entry that may be gone. An exit forgets the process (the table of
//! parents holds the living, bounded at [`MAX_KNOWN`] besides) and, when it
//! ended before its exec was judged, says how on the exec's record (`exit`,
//! `lived_ms`).
//!
//! Nothing is lost without a count: a record the ring buffer had no room for
//! is counted in the kernel (map `drops`), a record the agent's queue had no
//! room for is counted here, and both reach the process sensor's health.
//!
//! The program is `agent/bpf/bannin.bpf.c`, compiled by `agent/bpf/build.sh`
//! and checked in, so that building the agent needs no clang; CO-RE
//! relocates it against the running kernel's BTF. Loading needs root (or
//! CAP_BPF with CAP_PERFMON) and `/sys/kernel/btf/vmlinux`; without them the
//! process sensor falls back to the process events connector and says so.

use std::collections::{HashMap, VecDeque};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use super::bpf::{Ring, load};
use super::proc_events::{Exec, ExecQueue, Exited, Parent};
use crate::host::HostRoot;
use crate::host::proc::{MAX_CMDLINE, ProcInfo, read_proc};

/// The compiled program (see `agent/bpf/`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/bannin.bpf.o");

const KIND_EXEC: u32 = 1;
const KIND_FORK: u32 = 2;
const KIND_EXIT: u32 = 3;
const FLAG_ARGV_CUT: u32 = 1;
const FLAG_FILENAME_CUT: u32 = 2;
/// `struct exec_event` up to its data: the filename (`filename_len` bytes),
/// then the arguments (`argv_len` bytes).
const EXEC_HEADER: usize = 56 + 16 + 16;
/// `struct fork_event`.
const FORK_SIZE: usize = 24;
/// `struct exit_event`.
const EXIT_SIZE: usize = 32;
/// Most execs queued between sweeps; past it they are counted as lost.
const MAX_QUEUED: usize = 20_000;
/// Processes remembered for their children's parent fields.
const MAX_KNOWN: usize = 65_536;

/// One record off the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A program started.
    Exec(ExecRecord),
    /// A process was forked (threads are not reported).
    Fork {
        /// The new process.
        pid: u32,
        /// Its parent.
        ppid: u32,
        /// Its start, in nanoseconds since boot.
        start_boottime: u64,
    },
    /// A process ended (its thread group leader exited).
    Exit {
        /// The process.
        pid: u32,
        /// Its start, in nanoseconds since boot (which process of that pid).
        start_boottime: u64,
        /// When it ended, in nanoseconds since boot.
        exit_boottime: u64,
        /// The wait status: exit code << 8, or the signal that ended it.
        status: u32,
    },
}

/// An exec as the kernel saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// Process id (thread group id).
    pub pid: u32,
    /// The parent's process id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Start, in nanoseconds since boot (`/proc/PID/stat`'s start time, finer).
    pub start_boottime: u64,
    /// The cgroup (v2) id: the inode number of its directory under `/sys/fs/cgroup`.
    pub cgroup_id: u64,
    /// The executable the kernel runs: device (major, minor) and inode.
    pub exe: ((u32, u32), u64),
    /// The new program's short name.
    pub comm: String,
    /// The parent's short name.
    pub parent_comm: String,
    /// The path the program was started by (as given to `execve`).
    pub filename: String,
    /// Whether the path was longer than the probe keeps.
    pub filename_cut: bool,
    /// The arguments.
    pub argv: Vec<String>,
    /// Whether the arguments were longer than the probe keeps.
    pub argv_cut: bool,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its kind's layout, or an unknown kind.
    #[error("malformed ring buffer record ({0} bytes)")]
    Malformed(usize),
}

/// Text of a NUL-terminated field.
fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Parses one record, as `bannin.bpf.c` lays it out (native endianness).
pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
    let bad = || RecordError::Malformed(bytes.len());
    let u32_at = |at: usize| -> Result<u32, RecordError> {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or_else(bad)
    };
    let u64_at = |at: usize| -> Result<u64, RecordError> {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .ok_or_else(bad)
    };
    match u32_at(0)? {
        KIND_FORK if bytes.len() == FORK_SIZE => Ok(Record::Fork {
            pid: u32_at(4)?,
            ppid: u32_at(8)?,
            start_boottime: u64_at(16)?,
        }),
        KIND_EXIT if bytes.len() == EXIT_SIZE => Ok(Record::Exit {
            pid: u32_at(4)?,
            status: u32_at(8)?,
            start_boottime: u64_at(16)?,
            exit_boottime: u64_at(24)?,
        }),
        KIND_EXEC if bytes.len() >= EXEC_HEADER => {
            let flags = u32_at(44)?;
            let argv_len = u32_at(48)? as usize;
            let filename_len = u32_at(52)? as usize;
            let argv_at = EXEC_HEADER + filename_len;
            let filename = bytes.get(EXEC_HEADER..argv_at).ok_or_else(bad)?;
            let argv = bytes.get(argv_at..argv_at + argv_len).ok_or_else(bad)?;
            let dev = u32_at(40)?;
            Ok(Record::Exec(ExecRecord {
                pid: u32_at(4)?,
                ppid: u32_at(8)?,
                uid: u32_at(12)?,
                start_boottime: u64_at(16)?,
                cgroup_id: u64_at(24)?,
                exe: ((dev >> 20, dev & 0xf_ffff), u64_at(32)?),
                comm: text(&bytes[56..72]),
                parent_comm: text(&bytes[72..88]),
                filename: text(filename),
                filename_cut: flags & FLAG_FILENAME_CUT != 0,
                argv: argv
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
                argv_cut: flags & FLAG_ARGV_CUT != 0,
            }))
        }
        _ => Err(bad()),
    }
}

/// What is remembered of a process for its children.
#[derive(Debug, Clone)]
struct Known {
    start_boottime: u64,
    exe: String,
    cmdline: String,
}

/// Loads and attaches the probes and starts the reader thread, which queues
/// each exec in `queue` (woken through `wake`). `Err`: why eBPF cannot run
/// here (the caller falls back).
pub fn start(
    root: HostRoot,
    queue: Arc<Mutex<ExecQueue>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    let mut ebpf = load(
        OBJECT,
        &[
            ("bannin_exec", "sched_process_exec"),
            ("bannin_fork", "sched_process_fork"),
            ("bannin_exit", "sched_process_exit"),
        ],
    )
    .map_err(|e| format!("eBPF unavailable: {e}"))?;
    let ring = Ring::take(&mut ebpf, "events", "drops")?;
    let ticks = clock_ticks();
    std::thread::Builder::new()
        .name("bannin-ebpf".into())
        .spawn(move || {
            // Dropping the programs detaches them: they live as long as the reader.
            let _ebpf = ebpf;
            let mut reader = Reader {
                root,
                ticks,
                known: HashMap::new(),
                order: VecDeque::new(),
                cgroups: HashMap::new(),
            };
            reader.run(ring, &queue, &wake);
        })
        .map_err(|e| format!("cannot start the eBPF reader: {e}"))?;
    Ok(())
}

/// The path of the file `file` holds, as the kernel names it now (with
/// ` (deleted)` once it is unlinked, as `/proc/PID/exe` shows it).
fn held_path(file: &std::fs::File) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Clock ticks per second (`/proc/PID/stat`'s unit).
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

struct Reader {
    root: HostRoot,
    ticks: u64,
    /// What children need of their parents, by pid.
    known: HashMap<u32, Known>,
    /// Pids in the order they were remembered (the oldest forgotten first).
    order: VecDeque<u32>,
    /// cgroup id → path under the cgroup mount ("" for one not found).
    cgroups: HashMap<u64, String>,
}

impl Reader {
    fn run(&mut self, mut ring: Ring, queue: &Mutex<ExecQueue>, wake: &tokio::sync::Notify) {
        loop {
            let mut execs = Vec::new();
            let mut exits = Vec::new();
            let mut malformed = 0u64;
            let polled = ring.poll(|bytes| match parse(bytes) {
                Ok(Record::Fork {
                    pid,
                    ppid,
                    start_boottime,
                }) => self.forked(pid, ppid, start_boottime),
                Ok(Record::Exec(record)) => execs.push(self.resolve(record)),
                Ok(Record::Exit {
                    pid,
                    start_boottime,
                    exit_boottime,
                    status,
                }) => exits.push((pid, start_boottime, exit_boottime, status)),
                Err(_) => malformed += 1,
            });
            let dropped = match polled {
                Ok(n) => n,
                Err(error) => {
                    tracing::error!(%error, "eBPF ring buffer failed; polling only");
                    bannin_proto::lock(queue).failed =
                        Some(format!("eBPF ring buffer failed: {error}"));
                    return;
                }
            };
            for (pid, start, _, _) in &exits {
                self.exited(*pid, *start);
            }
            let mut q = bannin_proto::lock(queue);
            q.lost += dropped + malformed;
            for (pid, start_boottime, exit_boottime, status) in exits {
                q.exited(
                    pid,
                    start_boottime / (1_000_000_000 / self.ticks),
                    Exited {
                        lived_ms: exit_boottime.saturating_sub(start_boottime) / 1_000_000,
                        status,
                    },
                );
            }
            let queued = !execs.is_empty();
            for exec in execs {
                if q.execs.len() < MAX_QUEUED {
                    q.execs.push_back(exec);
                } else {
                    q.lost += 1;
                }
            }
            drop(q);
            if queued {
                wake.notify_one();
            }
        }
    }

    fn remember(&mut self, pid: u32, known: Known) {
        if self.known.insert(pid, known).is_none() {
            self.order.push_back(pid);
        }
        while self.known.len() > MAX_KNOWN {
            match self.order.pop_front() {
                Some(old) => {
                    self.known.remove(&old);
                }
                None => break,
            }
        }
    }

    /// A process ended: its children no longer need it (they have their
    /// own entries, and a reparented one names its new parent).
    fn exited(&mut self, pid: u32, start_boottime: u64) {
        if self
            .known
            .get(&pid)
            .is_some_and(|k| k.start_boottime == start_boottime)
        {
            self.known.remove(&pid);
        }
        // The order keeps forgotten pids until it is compacted.
        if self.order.len() > 2 * self.known.len() + 1024 {
            let known = &self.known;
            self.order.retain(|p| known.contains_key(p));
        }
    }

    /// A forked child runs its parent's program until it execs.
    fn forked(&mut self, pid: u32, ppid: u32, start_boottime: u64) {
        let parent = self
            .known
            .get(&ppid)
            .cloned()
            .or_else(|| self.read_proc(ppid));
        if let Some(mut known) = parent {
            known.start_boottime = start_boottime;
            self.remember(pid, known);
        }
    }

    /// A process the probes have not seen start (it predates the agent), from `/proc`.
    fn read_proc(&self, pid: u32) -> Option<Known> {
        let info = read_proc(&self.root, pid)?;
        Some(Known {
            start_boottime: info.start_ticks.saturating_mul(1_000_000_000 / self.ticks),
            exe: info.exe,
            cmdline: info.cmdline,
        })
    }

    /// The exec as the process sensor judges it: the executable's path
    /// (from `/proc` only when the file there is the one the kernel ran), an
    /// open handle on it for hashing, and the parent as it was.
    fn resolve(&mut self, r: ExecRecord) -> Exec {
        let dir = self.root.join(format!("/proc/{}", r.pid));
        // The file the kernel ran: through the process if it still runs it
        // (the link names it even when unlinked), else at the path it was
        // started by, if the file there is still that file.
        let running = std::fs::File::open(dir.join("exe"))
            .ok()
            .filter(|f| f.metadata().is_ok_and(|m| same_file(&m, r.exe)))
            .map(|f| {
                // The path of the file held, not `/proc/PID/exe` read again:
                // the process may have exec'd its next program in between
                // (`env bash …`), and one program's name on another's
                // content is a package mismatch that is not there.
                let path = held_path(&f).unwrap_or_else(|| r.filename.clone());
                (f, path)
            });
        let (exe_file, exe) = match running.or_else(|| self.at_path(&r)) {
            Some((file, path)) => (Some(file), path),
            None => (None, r.filename.clone()),
        };
        let mut cmdline = r.argv.join(" ");
        if cmdline.len() > MAX_CMDLINE {
            let mut end = MAX_CMDLINE;
            while !cmdline.is_char_boundary(end) {
                end -= 1;
            }
            cmdline.truncate(end);
        }
        let parent = self
            .known
            .get(&r.ppid)
            .cloned()
            .or_else(|| self.read_proc(r.ppid))
            .map(|p| Parent {
                exe: p.exe,
                cmdline: p.cmdline,
                comm: r.parent_comm.clone(),
            });
        let cwd = exe_file
            .as_ref()
            .and_then(|_| std::fs::read_link(dir.join("cwd")).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cgroup = self.cgroup(r.cgroup_id);
        self.remember(
            r.pid,
            Known {
                start_boottime: r.start_boottime,
                exe: exe.clone(),
                cmdline: cmdline.clone(),
            },
        );
        Exec {
            verified: exe_file.is_some(),
            info: ProcInfo {
                pid: r.pid,
                ppid: r.ppid,
                start_ticks: r.start_boottime / (1_000_000_000 / self.ticks),
                comm: r.comm,
                uid: r.uid,
                exe,
                cmdline,
                cwd,
                std_sockets: if exe_file.is_some() {
                    crate::host::proc::std_sockets(&self.root, r.pid)
                } else {
                    [None; 3]
                },
            },
            exe_file,
            parent,
            argv_cut: r.argv_cut || r.filename_cut,
            cgroup,
        }
    }

    /// The executable at the path the process was started by, resolved
    /// (`/bin/true` is `/usr/bin/true`), if it is the file the kernel ran.
    fn at_path(&self, r: &ExecRecord) -> Option<(std::fs::File, String)> {
        if !r.filename.starts_with('/') || r.filename_cut {
            return None;
        }
        let real = std::fs::canonicalize(self.root.join(&r.filename)).ok()?;
        let file = std::fs::File::open(&real).ok()?;
        if !file.metadata().is_ok_and(|m| same_file(&m, r.exe)) {
            return None;
        }
        let host = match real.strip_prefix(&self.root.0) {
            Ok(p) => format!("/{}", p.display()),
            Err(_) => real.display().to_string(),
        };
        Some((file, host))
    }

    /// The path of cgroup `id` under the cgroup v2 mount, found by its
    /// directory's inode and remembered ("" when none matches).
    fn cgroup(&mut self, id: u64) -> String {
        if let Some(path) = self.cgroups.get(&id) {
            return path.clone();
        }
        let base = self.root.join("/sys/fs/cgroup");
        let mut found = String::new();
        let mut stack = vec![(base.clone(), 0usize)];
        let mut visited = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            visited += 1;
            if visited > 20_000 {
                break;
            }
            if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
                found = dir
                    .strip_prefix(&base)
                    .map(|p| format!("/{}", p.display()))
                    .unwrap_or_default();
                break;
            }
            if depth >= 12 {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((entry.path(), depth + 1));
                    }
                }
            }
        }
        if self.cgroups.len() > 4096 {
            self.cgroups.clear();
        }
        self.cgroups.insert(id, found.clone());
        found
    }
}

/// Whether `m` is the file the kernel ran: device (major, minor) and inode.
fn same_file(m: &std::fs::Metadata, (dev, ino): ((u32, u32), u64)) -> bool {
    let d = m.dev();
    m.ino() == ino && (libc::major(d), libc::minor(d)) == dev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_bytes(argv: &[u8], flags: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [KIND_EXEC, 4242, 1, 1000] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&5_000_000_000u64.to_ne_bytes());
        b.extend_from_slice(&77u64.to_ne_bytes());
        b.extend_from_slice(&123_456u64.to_ne_bytes());
        b.extend_from_slice(&((8u32 << 20) | 1).to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&(argv.len() as u32).to_ne_bytes());
        b.extend_from_slice(&(b"/usr/bin/cat".len() as u32).to_ne_bytes());
        let mut fixed = |s: &str, n: usize| {
            let mut f = s.as_bytes().to_vec();
            f.resize(n, 0);
            b.extend_from_slice(&f);
        };
        fixed("cat", 16);
        fixed("bash", 16);
        b.extend_from_slice(b"/usr/bin/cat");
        b.extend_from_slice(argv);
        b
    }

    /// A record laid out as the probe writes it reads back field by field;
    /// anything shorter than its layout, or of an unknown kind, is refused.
    /// The executable's path comes from the file held, not from a path read
    /// again: what is at a path can change between the open and the read
    /// (a process exec'ing its next program, `env bash …`).
    #[test]
    fn a_held_file_is_named_by_itself_not_by_where_it_was_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (env, bash) = (dir.path().join("env"), dir.path().join("bash"));
        std::fs::write(&env, b"env").expect("env");
        std::fs::write(&bash, b"bash").expect("bash");
        let held = std::fs::File::open(&env).expect("open");
        // The path it was opened by now names another file.
        std::fs::rename(&env, dir.path().join("env.old")).expect("rename");
        std::fs::rename(&bash, &env).expect("rename");
        assert_eq!(
            held_path(&held).expect("path"),
            dir.path().join("env.old").display().to_string()
        );
        std::fs::remove_file(dir.path().join("env.old")).expect("rm");
        assert!(held_path(&held).expect("path").ends_with(" (deleted)"));
    }

    #[test]
    fn records_parse_as_the_probe_lays_them_out() {
        let bytes = exec_bytes(b"cat\0/etc/sudoers\0", FLAG_ARGV_CUT);
        assert_eq!(bytes.len(), EXEC_HEADER + 12 + 17, "only what is filled");
        let Ok(Record::Exec(e)) = parse(&bytes) else {
            panic!("an exec");
        };
        assert_eq!((e.pid, e.ppid, e.uid), (4242, 1, 1000));
        assert_eq!(e.start_boottime, 5_000_000_000);
        assert_eq!(e.cgroup_id, 77);
        assert_eq!(e.exe, ((8, 1), 123_456));
        assert_eq!((e.comm.as_str(), e.parent_comm.as_str()), ("cat", "bash"));
        assert_eq!(e.filename, "/usr/bin/cat");
        assert_eq!(e.argv, ["cat", "/etc/sudoers"]);
        assert!(e.argv_cut && !e.filename_cut);

        let mut fork = Vec::new();
        for v in [KIND_FORK, 10, 9, 0] {
            fork.extend_from_slice(&v.to_ne_bytes());
        }
        fork.extend_from_slice(&42u64.to_ne_bytes());
        assert_eq!(
            parse(&fork),
            Ok(Record::Fork {
                pid: 10,
                ppid: 9,
                start_boottime: 42
            })
        );

        let mut exit = Vec::new();
        for v in [KIND_EXIT, 10, 256, 0] {
            exit.extend_from_slice(&v.to_ne_bytes());
        }
        exit.extend_from_slice(&42u64.to_ne_bytes());
        exit.extend_from_slice(&99u64.to_ne_bytes());
        assert_eq!(
            parse(&exit),
            Ok(Record::Exit {
                pid: 10,
                status: 256,
                start_boottime: 42,
                exit_boottime: 99
            })
        );
        assert!(parse(&exit[..24]).is_err(), "an exit of a fork's size");

        // Arguments said to be longer than the record holds.
        let mut short = exec_bytes(b"cat\0", 0);
        short.truncate(EXEC_HEADER + 12 + 2);
        assert_eq!(
            parse(&short),
            Err(RecordError::Malformed(EXEC_HEADER + 12 + 2))
        );
        // A filename said to be longer than the record holds.
        short.truncate(EXEC_HEADER + 5);
        assert_eq!(parse(&short), Err(RecordError::Malformed(EXEC_HEADER + 5)));
        assert!(parse(&fork[..20]).is_err());
        assert!(parse(&[9, 0, 0, 0]).is_err());
        assert!(parse(&[]).is_err());
    }

    /// The probe in the kernel: every one of 300 short-lived execs reaches the
    /// queue while both cores are busy, with its arguments, its parent's
    /// executable and command line as they were (the parent — this test — is
    /// alive, but its fields come from the probe's table or `/proc`), and
    /// nothing counted lost.
    #[test]
    fn every_short_exec_is_captured_with_its_parent_while_the_cpus_are_busy() {
        if !crate::sensors::running_as_root() {
            crate::testing::skip("needs root (loading eBPF)");
            return;
        }
        let queue = Arc::new(Mutex::new(ExecQueue::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        start(HostRoot("/".into()), queue.clone(), wake).expect("eBPF loads");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hogs: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    x
                })
            })
            .collect();
        let marker = format!("bannin-ebpf-{}", std::process::id());
        const RUNS: usize = 300;
        for n in 0..RUNS {
            let status = std::process::Command::new("/bin/true")
                .arg(format!("{marker}-{n}"))
                .status()
                .expect("run /bin/true");
            assert!(status.success());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in hogs {
            let _ = h.join();
        }
        let me = std::fs::read_link("/proc/self/exe").expect("own exe");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            {
                let mut q = bannin_proto::lock(&queue);
                for exec in q.execs.drain(..) {
                    let Some(arg) = exec
                        .info
                        .cmdline
                        .split(' ')
                        .find(|a| a.starts_with(&marker))
                    else {
                        continue;
                    };
                    assert_eq!(exec.info.ppid, std::process::id(), "{arg}");
                    assert!(exec.info.exe.ends_with("true"), "{}", exec.info.exe);
                    let parent = exec.parent.expect("parent fields");
                    assert_eq!(std::path::Path::new(&parent.exe), me, "{arg}");
                    assert!(!parent.cmdline.is_empty(), "{arg}");
                    seen.insert(arg.to_owned());
                }
                assert_eq!(q.lost, 0, "nothing lost");
            }
            if seen.len() == RUNS {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(seen.len(), RUNS, "every exec captured");
    }
}
