//! Every operation of the log is applied once: a signed operation published
//! again — verbatim, after JetStream's duplicate window has forgotten its
//! message id — is refused, as is one held back far behind its series.
//!
//! An operation's id is `SERIES:N`: the series names its collector and that
//! collector's run (`a:1796…:7`), or its action outbox (`a:action:3:42`), and
//! `N` counts within it. Operations of one series reach the log roughly in
//! order, but not exactly: a collector publishes concurrently and retries, so
//! the window remembers, per series, the highest `N` applied and the numbers
//! below it not applied yet (`missing`, at most [`WINDOW`] back). An
//! operation is admitted when its number is above the highest or one of the
//! missing; anything else was applied already or is too far behind to be a
//! late publication. The first operation of a series seen leaves the
//! [`NEW_SERIES_SLACK`] numbers below it open (publications racing at a
//! collector's start).
//!
//! The window is part of what the log applier computes from the log, so it
//! is committed in the same write as the applied position
//! ([`crate::ingest::WriteRequest::Applied`]): after a crash the applier
//! starts from both as they were, and every collector decides alike.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// How far behind its series' highest number an operation may still arrive.
pub const WINDOW: u64 = 4096;
/// Numbers left open below the first operation seen of a series.
pub const NEW_SERIES_SLACK: u64 = 64;
/// The store's name for the window (a meta value).
pub const STORE_KEY: &str = "cluster.op_window";

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Applied already.
    #[error("operation {0} was applied already: a replay")]
    Again(String),
    /// Too far behind its series.
    #[error("operation {0} is more than {WINDOW} behind its series: replayed or held back")]
    Stale(String),
    /// No `SERIES:N` shape.
    #[error("operation id {0:?} has no sequence number")]
    Malformed(String),
}

/// The operations applied, per series.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpWindow {
    series: BTreeMap<String, Series>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Series {
    high: u64,
    missing: BTreeSet<u64>,
}

impl OpWindow {
    /// Admits `op_id` (and remembers it), or says why not (and changes nothing).
    pub fn admit(&mut self, op_id: &str) -> Result<(), Replay> {
        let (series, n) = op_id
            .rsplit_once(':')
            .and_then(|(s, n)| Some((s, n.parse::<u64>().ok()?)))
            .filter(|(s, _)| !s.is_empty())
            .ok_or_else(|| Replay::Malformed(op_id.to_owned()))?;
        let Some(s) = self.series.get_mut(series) else {
            self.series.insert(
                series.to_owned(),
                Series {
                    high: n,
                    missing: (n.saturating_sub(NEW_SERIES_SLACK)..n).collect(),
                },
            );
            return Ok(());
        };
        if n > s.high {
            let from = (s.high + 1).max(n.saturating_sub(WINDOW));
            s.missing.extend(from..n);
            s.high = n;
            let floor = n.saturating_sub(WINDOW);
            s.missing = s.missing.split_off(&floor);
            return Ok(());
        }
        if s.missing.remove(&n) {
            return Ok(());
        }
        Err(if n + WINDOW < s.high {
            Replay::Stale(op_id.to_owned())
        } else {
            Replay::Again(op_id.to_owned())
        })
    }

    /// Encoded for the store.
    pub fn encode(&self) -> Vec<u8> {
        // A map of strings and numbers always encodes.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decoded from the store (`None`: damaged).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_once_in_any_near_order() {
        let mut w = OpWindow::default();
        for id in ["a:1:0", "a:1:2", "a:1:1", "a:1:3", "b:9:5", "a:action:3:42"] {
            assert_eq!(w.admit(id), Ok(()), "{id}");
        }
        for id in ["a:1:0", "a:1:2", "b:9:5", "a:action:3:42"] {
            assert_eq!(w.admit(id), Err(Replay::Again(id.into())), "{id}");
        }
        // Racing at a start: a lower number of a new series is still open, once.
        assert_eq!(w.admit("b:9:4"), Ok(()));
        assert_eq!(w.admit("b:9:4"), Err(Replay::Again("b:9:4".into())));
        // A gap left by a failed publication stays open until the window passes it.
        assert_eq!(w.admit("a:1:10"), Ok(()));
        assert_eq!(w.admit("a:1:7"), Ok(()));
        assert_eq!(w.admit("a:1:7"), Err(Replay::Again("a:1:7".into())));
        assert_eq!(w.admit("a:1:10000"), Ok(()));
        assert_eq!(w.admit("a:1:8"), Err(Replay::Stale("a:1:8".into())));
        assert_eq!(w.admit("a:1:9999"), Ok(()), "inside the window");
        for bad in ["", "a", "a:", ":5", "a:1:x"] {
            assert!(matches!(w.admit(bad), Err(Replay::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn the_window_stays_bounded_and_survives_the_store() {
        let mut w = OpWindow::default();
        assert_eq!(w.admit("a:1:0"), Ok(()));
        // A jump far ahead keeps at most WINDOW numbers open.
        assert_eq!(w.admit("a:1:1000000"), Ok(()));
        let s = &w.series["a:1"];
        assert!(s.missing.len() as u64 <= WINDOW, "{}", s.missing.len());
        let back = OpWindow::decode(&w.encode()).expect("decode");
        assert_eq!(back, w);
        assert_eq!(OpWindow::decode(b"\xff\xff\xff"), None);
    }
}
