//! A thread's own priority and CPU time, for work that must yield to the
//! host's (hunts): nice 19 and the idle I/O class, and the thread's CPU
//! clock to enforce a CPU cap. Both are per-thread system calls libc exposes
//! and nix does not.

#![allow(unsafe_code)]

/// CPU time of the calling thread, in ms.
pub fn thread_cpu_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// Puts the calling thread at the lowest CPU and I/O priority: nice 19 and
/// the idle I/O class (it reads only when no one else does). Call it on a
/// thread of its own: the priority stays with the thread.
pub fn lower() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: plain system calls naming the calling thread by its tid.
    let (nice, io) = unsafe {
        let tid = libc::gettid();
        let nice = libc::setpriority(
            libc::PRIO_PROCESS,
            libc::id_t::try_from(tid).unwrap_or(0),
            19,
        );
        let io = libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        );
        (nice, io)
    };
    if nice != 0 || io != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "Cannot lower a hunt thread's priority; it runs at the agent's"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's nice value and I/O class as the kernel reports them.
    #[test]
    fn a_lowered_thread_runs_at_nice_19_in_the_idle_io_class() {
        let (nice, ioprio) = std::thread::spawn(|| {
            lower();
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
            let after = stat
                .rsplit_once(')')
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            // Field 19 of stat is nice; after the comm, it is the 17th.
            let nice: i64 = after
                .split_whitespace()
                .nth(16)
                .and_then(|n| n.parse().ok())
                .expect("nice");
            // SAFETY: a read-only query of the calling thread.
            #[allow(unsafe_code)]
            let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, libc::gettid()) };
            (nice, ioprio)
        })
        .join()
        .expect("thread");
        assert_eq!(nice, 19);
        assert_eq!(ioprio >> 13, 3, "idle class");
        let start = thread_cpu_ms();
        let mut x = 0u64;
        while thread_cpu_ms() < start + 20 {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
    }
}
