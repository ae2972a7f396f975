//! The event sources: reader threads that queue what the kernel or a log reports and
//! wake their sensor (`Sensor::waker`), so it sweeps at once instead of at its next
//! interval.
//!
//! - [`exec_bpf`]: every exec and fork captured in the kernel (eBPF raw tracepoints).
//! - [`flow_bpf`]: every TCP connection from start to close (eBPF), a flow log.
//! - [`bpf`]: what the two share (loading, ring buffers, drop counters).
//! - [`proc_events`]: the kernel's process events connector (netlink `CN_IDX_PROC`),
//!   the fallback where eBPF cannot load.
//! - [`creations`]: inotify creations in watched directories.
//! - [`changes`]: fanotify (or inotify) changes under the integrity sensor's critical paths.
//! - [`writers`]: who wrote the account files and SSH keys, handed to the accounts sensor.
//! - [`journal`]: the systemd journal, through `journalctl --follow`.
//!
//! (The fanotify reader lives with its sensor in `sensors/file_access.rs`.)

mod bpf;
pub mod changes;
pub mod creations;
pub mod exec_bpf;
pub mod flow_bpf;
pub mod journal;
pub mod proc_events;
pub mod writers;
