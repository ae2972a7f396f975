//! One file per command, each with its `apply` (the verb's whole behaviour).

pub(super) mod capture;
pub(super) mod hunt;
pub(super) mod isolate;
pub(super) mod ping;
pub(super) mod relearn;
pub(super) mod release;
pub(super) mod snapshot;
pub(super) mod triage;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sets a long command's stop flag when dropped: a hunt or capture whose
/// command timed out, or whose lane stopped, stops too.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
