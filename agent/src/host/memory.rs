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
//! megabytes no other thread could reuse. Two arenas are plenty for an agent
//! that is idle most of the time (49.4 → 29.2 MiB with eBPF, BENCHMARKS.md).

#![allow(unsafe_code)]

/// Arenas glibc may create; set before the agent starts its threads.
const ARENA_MAX: libc::c_int = 2;

/// Caps glibc's arenas at [`ARENA_MAX`]. Call first thing in `main`, before
/// any thread exists.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists, it races with no allocation.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns the heap's free memory to the system (glibc's `malloc_trim`).
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases free memory the allocator holds; it
    // touches no live allocation and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
