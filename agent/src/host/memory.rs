//! Giving freed memory back to the system.
//!
//! Loading an eBPF object parses the kernel's whole BTF (tens of megabytes of
//! type records) for the CO-RE relocations, then frees it; glibc keeps the
//! freed heap, so the agent's resident memory stayed at the peak (61 MiB
//! against 18 without eBPF). `malloc_trim` returns it.
//!
//! glibc also gives each thread that allocates its own arena (up to eight per
//! core), and an arena keeps what its thread freed: the reader threads, the
//! blocking sweeps and the integrity baseline's hashing each held a few
//! megabytes no other thread could reuse. One arena is plenty for an agent
//! that is idle most of the time (49.4 → 29.2 MiB with eBPF, BENCHMARKS.md;
//! a second one held another 0.9 MiB, and each thread's own cache serves
//! small allocations without the arena's lock).
//!
//! Starting touches far more of the agent's own code than running does: TLS
//! setup, the eBPF loader's BTF parser, config and state parsing, the first
//! sweep of every sensor. The kernel maps code in 64 KiB windows around each
//! page touched and never unmaps a clean page of a process that still maps it,
//! so an idle agent kept about 13 MiB of its executable resident, most of it
//! code that had run once. [`keep_lean`] gives those pages back a minute after
//! start and every ten minutes after: what stays resident is the code that
//! ran since (BENCHMARKS.md, "The agent's idle memory"). It also returns the
//! heap's free pages every minute.

#![allow(unsafe_code)]

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Arenas glibc may create; set before the agent starts its threads.
const ARENA_MAX: libc::c_int = 1;

/// Caps glibc's arenas at [`ARENA_MAX`]. Call first thing in `main`, before
/// any thread exists.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists, it races with no allocation.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// How often freed heap goes back to the system: sweeps allocate and free all
/// the time, and glibc returns only the top of the heap by itself.
/// (`malloc_trim` on a heap of a few MiB takes well under a millisecond, and
/// what it returns is really free.)
const HEAP_EVERY: Duration = Duration::from_secs(60);
/// Every how many heap trims the executable's pages are released too: code
/// that has not run for ten minutes leaves the resident set (the first time a
/// minute after start, once every sensor has swept).
const CODE_EVERY: u32 = 10;

/// Trims the agent's resident memory on its schedule until `shutdown`.
pub async fn keep_lean(shutdown: CancellationToken) {
    for round in 0u32.. {
        tokio::select! {
            () = tokio::time::sleep(HEAP_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        if round % CODE_EVERY != 0 {
            return_freed_memory();
            continue;
        }
        match tokio::task::spawn_blocking(trim).await {
            Ok(Ok(released)) => tracing::debug!(
                code_kib = released.code_kib,
                mappings = released.mappings,
                "Released resident code pages and freed heap"
            ),
            Ok(Err(error)) => {
                tracing::debug!(%error, "Could not release code pages");
            }
            Err(error) => tracing::debug!(%error, "Trim task failed"),
        }
    }
}

/// What [`release_code_pages`] gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Resident KiB of the executable's read-only mappings before (each page
    /// that runs again comes back).
    pub code_kib: u64,
    /// Mappings released.
    pub mappings: usize,
}

/// Frees what the heap holds unused and releases the executable's pages.
pub fn trim() -> std::io::Result<Released> {
    return_freed_memory();
    release_code_pages()
}

/// Unmaps the resident pages of this process's own executable that were never
/// written: its code and read-only data (`r-xp` and `r--p` mappings with no
/// anonymous page), and drops them from the page cache; a page that runs
/// again is read back, one page at a time. A mapping holding a written page
/// (the relocated read-only data, or code a debugger put a breakpoint in) is
/// left alone: `MADV_DONTNEED` would drop what was written.
pub fn release_code_pages() -> std::io::Result<Released> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open("/proc/self/exe")?;
    let exe = file.metadata()?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released::default();
    for mapping in own_clean_mappings(&smaps, exe.dev(), exe.ino()) {
        let advise = |advice| {
            // SAFETY: the range is one whole mapping of this process's
            // executable, private, read-only and holding no written page
            // (checked in smaps just now; a read-only mapping cannot gain one
            // without mprotect or ptrace). On such a mapping these advices
            // only change how pages are read in (MADV_RANDOM) or drop page
            // table entries (MADV_DONTNEED): the next access maps the same
            // file page again, so no memory any code can observe changes.
            let rc =
                unsafe { libc::madvise(mapping.start as *mut libc::c_void, mapping.len, advice) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // Read back one page at a time, not 128 KiB around it, and unmap.
        advise(libc::MADV_RANDOM)?;
        advise(libc::MADV_DONTNEED)?;
        // Then drop the range's clean pages from the page cache, so that the
        // kernel's fault-around (which maps the cached pages in the 64 KiB
        // around each fault) brings back what runs, not its neighbours. A
        // page some other process maps stays. Advice only: ignored if refused.
        // SAFETY: posix_fadvise reads no memory; the descriptor is open.
        let _ = unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                i64::try_from(mapping.offset).unwrap_or(i64::MAX),
                i64::try_from(mapping.len).unwrap_or(i64::MAX),
                libc::POSIX_FADV_DONTNEED,
            )
        };
        released.code_kib += mapping.rss_kib;
        released.mappings += 1;
    }
    Ok(released)
}

/// One mapping [`release_code_pages`] may release.
#[derive(Debug, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    len: usize,
    /// Offset in the file.
    offset: u64,
    rss_kib: u64,
}

/// The read-only private mappings of the file (`dev`, `ino`) in `smaps` text
/// that hold resident pages and no anonymous (written) page.
fn own_clean_mappings(smaps: &str, dev: u64, ino: u64) -> Vec<CleanMapping> {
    let mut out = Vec::new();
    // The mapping being read: (start, len, offset, ours), then its Rss.
    let mut current: Option<(usize, usize, u64, bool)> = None;
    let mut rss_kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = fields.next().unwrap_or("");
            let offset = fields
                .next()
                .and_then(|o| u64::from_str_radix(o, 16).ok())
                .unwrap_or(0);
            let ours = fields.next().and_then(parse_dev) == Some(dev)
                && fields.next().and_then(|i| i.parse::<u64>().ok()) == Some(ino)
                && matches!(perms, "r-xp" | "r--p");
            current = Some((start, end.saturating_sub(start), offset, ours));
            rss_kib = 0;
            continue;
        }
        let kib = fields.next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => rss_kib = kib.unwrap_or(0),
            // Anonymous follows Rss in every kernel's smaps.
            "Anonymous:" => {
                if let Some((start, len, offset, true)) = current.take()
                    && kib == Some(0)
                    && rss_kib > 0
                {
                    out.push(CleanMapping {
                        start,
                        len,
                        offset,
                        rss_kib,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// `MAJOR:MINOR` (hex) as smaps shows a device, in `st_dev`'s encoding.
fn parse_dev(text: &str) -> Option<u64> {
    let (major, minor) = text.split_once(':')?;
    let major = u64::from_str_radix(major, 16).ok()?;
    let minor = u64::from_str_radix(minor, 16).ok()?;
    Some(libc::makedev(
        u32::try_from(major).ok()?,
        u32::try_from(minor).ok()?,
    ))
}

/// Returns the heap's free memory to the system (glibc's `malloc_trim`).
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases free memory the allocator holds; it
    // touches no live allocation and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const SMAPS: &str = "\
55d0a0000000-55d0a0200000 r--p 00000000 fd:01 4242                       /usr/bin/bannin-agent
Size:               2048 kB
Rss:                 900 kB
Anonymous:             0 kB
55d0a0200000-55d0a1000000 r-xp 00200000 fd:01 4242                       /usr/bin/bannin-agent
Size:              14336 kB
Rss:                5000 kB
Anonymous:             0 kB
55d0a1000000-55d0a1100000 r--p 01000000 fd:01 4242                       /usr/bin/bannin-agent
Size:               1024 kB
Rss:                 932 kB
Anonymous:           932 kB
55d0a1100000-55d0a1101000 rw-p 01100000 fd:01 4242                       /usr/bin/bannin-agent
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
7f00a0000000-7f00a0100000 r-xp 00000000 fd:01 77                         /usr/lib/libc.so.6
Size:               1024 kB
Rss:                1000 kB
Anonymous:             0 kB
7f00a0200000-7f00a0300000 r-xp 00000000 fd:02 4242                       /other/fs/same-inode
Size:               1024 kB
Rss:                1000 kB
Anonymous:             0 kB
7f00a0400000-7f00a0500000 r--p 00000000 fd:01 4242                       /usr/bin/bannin-agent
Size:               1024 kB
Rss:                   0 kB
Anonymous:             0 kB
";

    /// Only the executable's own read-only mappings with resident pages and
    /// no written page are released: not the relocated data (written when
    /// the program was loaded), not its writable data, not a library, not a
    /// file on another device with the same inode number.
    #[test]
    fn only_never_written_mappings_of_the_executable_are_chosen() {
        let dev = libc::makedev(0xfd, 1);
        assert_eq!(
            own_clean_mappings(SMAPS, dev, 4242),
            [
                CleanMapping {
                    start: 0x55d0a0000000,
                    len: 0x200000,
                    offset: 0,
                    rss_kib: 900
                },
                CleanMapping {
                    start: 0x55d0a0200000,
                    len: 0xe00000,
                    offset: 0x200000,
                    rss_kib: 5000
                },
            ]
        );
        assert!(
            own_clean_mappings(SMAPS, dev, 99).is_empty(),
            "a file not mapped"
        );
        assert!(own_clean_mappings("garbage\nRss: x\n", dev, 4242).is_empty());
    }

    /// This test binary's own code leaves its resident set and comes back
    /// when it runs; the relocated data (vtables, string slices) is kept:
    /// the code after the release reads it.
    #[test]
    fn released_code_runs_again() {
        let exe = std::fs::metadata("/proc/self/exe").expect("exe");
        let resident = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
            own_clean_mappings(&smaps, exe.dev(), exe.ino())
                .iter()
                .map(|m| m.rss_kib)
                .sum::<u64>()
        };
        let before = resident();
        assert!(before > 0, "the test's code is resident");
        let released = trim().expect("trim");
        assert!(
            released.mappings >= 1 && released.code_kib > 0,
            "{released:?}"
        );
        // Code, formatting (vtables in the relocated data) and a parse run again.
        let shown = format!(
            "{:?}",
            own_clean_mappings(SMAPS, libc::makedev(0xfd, 1), 4242)
        );
        assert!(shown.contains("rss_kib: 5000"), "{shown}");
        assert!(resident() < before, "fewer code pages resident than before");
    }
}
