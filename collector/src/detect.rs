//! Detection: which events of a batch become findings, and with what severity.
//!
//! The agent marks the events it considers indicators; the collector decides the
//! final severity (per-kind overrides from its config) and folds identical
//! findings. Cross-host correlation builds on what this produces.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use bannin_proto::identity::HostId;

use crate::model::{Event, NewFinding, Severity};

/// Turns events into finding candidates.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// Severity per finding kind, overriding what the agent sent.
    pub severity_overrides: BTreeMap<String, Severity>,
}

impl Detector {
    /// The findings one event yields (none for plain telemetry).
    pub fn detect(&self, host: &HostId, event: &Event) -> Option<NewFinding> {
        if !event.indicator {
            return None;
        }
        let severity = self
            .severity_overrides
            .get(&event.kind)
            .copied()
            .unwrap_or(event.severity);
        Some(NewFinding {
            host_id: host.clone(),
            kind: event.kind.clone(),
            severity,
            observed_unix_ms: event.observed_unix_ms,
            attributes: event.attributes.clone(),
            summary: event.summary.clone(),
        })
    }
}

/// Fingerprint of a finding for folding: host, kind and attributes.
pub fn fingerprint(finding: &NewFinding) -> u64 {
    fingerprint_parts(finding.host_id.as_str(), &finding.kind, &finding.attributes)
}

/// Fingerprint from its parts (also used to rebuild the fold index from stored findings).
pub fn fingerprint_parts(host: &str, kind: &str, attributes: &BTreeMap<String, String>) -> u64 {
    let mut h = DefaultHasher::new();
    host.hash(&mut h);
    kind.hash(&mut h);
    attributes.hash(&mut h);
    h.finish()
}

/// Which recent finding an identical new one folds into.
///
/// Bounded: entries older than the window are dropped on every [`FoldIndex::prune`],
/// and past `capacity` the oldest go first (counted in `shed`).
#[derive(Debug)]
pub struct FoldIndex {
    window_ms: i64,
    capacity: usize,
    entries: HashMap<u64, (u64, i64)>,
    /// Entries dropped because the index was full.
    pub shed: u64,
}

impl FoldIndex {
    /// An empty index.
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity,
            entries: HashMap::new(),
            shed: 0,
        }
    }

    /// The finding id to fold into, if an identical finding was seen within the window.
    pub fn lookup(&self, fingerprint: u64, observed_ms: i64) -> Option<u64> {
        self.entries
            .get(&fingerprint)
            .filter(|(_, last)| observed_ms.saturating_sub(*last) <= self.window_ms)
            .map(|(id, _)| *id)
    }

    /// Remembers that `id` was last observed at `observed_ms`.
    pub fn record(&mut self, fingerprint: u64, id: u64, observed_ms: i64) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&fingerprint)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
            self.shed += 1;
        }
        let entry = self.entries.entry(fingerprint).or_insert((id, observed_ms));
        entry.0 = id;
        entry.1 = entry.1.max(observed_ms);
    }

    /// Drops entries older than the window.
    pub fn prune(&mut self, now_ms: i64) {
        let window = self.window_ms;
        self.entries
            .retain(|_, (_, last)| now_ms.saturating_sub(*last) <= window);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(attr: &str) -> NewFinding {
        NewFinding {
            host_id: HostId::new("h1").expect("valid"),
            kind: "net.new_listener".into(),
            severity: Severity::Medium,
            observed_unix_ms: 0,
            attributes: [("port".to_owned(), attr.to_owned())].into(),
            summary: String::new(),
        }
    }

    #[test]
    fn identical_findings_fold_within_the_window_only() {
        let mut idx = FoldIndex::new(1_000, 10);
        let fp = fingerprint(&finding("22"));
        assert_ne!(fp, fingerprint(&finding("23")));
        idx.record(fp, 7, 100);
        assert_eq!(idx.lookup(fp, 900), Some(7));
        assert_eq!(idx.lookup(fp, 1_200), None);
    }

    #[test]
    fn index_is_bounded_and_counts_what_it_sheds() {
        let mut idx = FoldIndex::new(1_000, 2);
        idx.record(1, 1, 10);
        idx.record(2, 2, 20);
        idx.record(3, 3, 30);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.shed, 1);
        assert_eq!(idx.lookup(1, 30), None, "oldest entry went first");
    }

    #[test]
    fn plain_telemetry_is_not_a_finding() {
        let d = Detector::default();
        let host = HostId::new("h1").expect("valid");
        let mut e = Event {
            kind: "process.exec".into(),
            severity: Severity::Info,
            observed_unix_ms: 1,
            received_unix_ms: 2,
            indicator: false,
            attributes: BTreeMap::new(),
            summary: String::new(),
        };
        assert!(d.detect(&host, &e).is_none());
        e.indicator = true;
        e.kind = "net.new_listener".into();
        e.severity = Severity::Low;
        let d = Detector {
            severity_overrides: [("net.new_listener".to_owned(), Severity::High)].into(),
        };
        assert_eq!(
            d.detect(&host, &e).map(|f| f.severity),
            Some(Severity::High)
        );
    }
}
