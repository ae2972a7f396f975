//! One file per command, each with its `apply` (the verb's whole behaviour).

pub(super) mod capture;
pub(super) mod hunt;
pub(super) mod isolate;
pub(super) mod ping;
pub(super) mod relearn;
pub(super) mod release;
pub(super) mod snapshot;
pub(super) mod triage;
