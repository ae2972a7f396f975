//! Raw telemetry per host, kept for triage within a retention bound.

use super::{PREFIX_EVENT, Store, StoreError, WriteSet, decode, encode};
use crate::model::Event;

fn host_prefix(host: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + host.len());
    k.push(PREFIX_EVENT);
    k.extend_from_slice(host.as_bytes());
    k.push(0);
    k
}

fn key(host: &str, sequence: u64, index: u32) -> Vec<u8> {
    let mut k = host_prefix(host);
    k.extend_from_slice(&sequence.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// What to read of a host's events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events observed at or after this time.
    pub since_unix_ms: i64,
    /// Only events of this kind (empty: all).
    pub kind: String,
    /// Only events of batches after this sequence.
    pub after_sequence: u64,
    /// At most this many.
    pub limit: usize,
}

impl Store {
    /// A host's events in arrival order, and whether more matched than `limit`.
    /// A page holds whole batches: it may run past `limit` to finish the last one.
    pub fn events(
        &self,
        host: &str,
        query: &EventQuery,
    ) -> Result<(Vec<(u64, Event)>, bool), StoreError> {
        let prefix = host_prefix(host);
        let mut end = prefix.clone();
        // The separator is 0; the next byte bounds the host's range.
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let start = key(host, query.after_sequence.saturating_add(1), 0);
        let mut out = Vec::new();
        for item in self.records.range(start..end) {
            let (k, v) = item?;
            let event: Event = decode(&v, "event")?;
            if event.observed_unix_ms < query.since_unix_ms
                || (!query.kind.is_empty() && event.kind != query.kind)
            {
                continue;
            }
            let seq_bytes: [u8; 8] = k
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("event key".into()))?;
            let sequence = u64::from_be_bytes(seq_bytes);
            // Pages end at batch boundaries, so `after_sequence` paging never splits a batch.
            if out.len() >= query.limit && out.last().is_some_and(|(s, _)| *s != sequence) {
                return Ok((out, true));
            }
            out.push((sequence, event));
        }
        Ok((out, false))
    }

    /// Deletes each host's events received before `cutoff_unix_ms`, then, while
    /// more than `bytes_to_free` remain to be freed, the oldest events of every
    /// host in turn (round robin, so one noisy host cannot erase another's
    /// history alone). Returns (events removed, bytes freed). Applied, not yet durable.
    pub fn prune_events(
        &self,
        hosts: &[String],
        cutoff_unix_ms: i64,
        bytes_to_free: u64,
    ) -> Result<(u64, u64), StoreError> {
        const CHUNK: usize = 256;
        let mut removed = 0u64;
        let mut freed = 0u64;
        for host in hosts {
            let mut batch = sled::Batch::default();
            // Sequences follow time within a host, so the first young event ends the old ones.
            for item in self.records.scan_prefix(host_prefix(host)) {
                let (k, v) = item?;
                let event: Event = decode(&v, "event")?;
                if event.received_unix_ms >= cutoff_unix_ms {
                    break;
                }
                freed += event.approximate_bytes() as u64;
                removed += 1;
                batch.remove(k);
            }
            self.records.apply_batch(batch)?;
        }
        let mut progress = true;
        while freed < bytes_to_free && progress {
            progress = false;
            for host in hosts {
                let mut batch = sled::Batch::default();
                for item in self.records.scan_prefix(host_prefix(host)).take(CHUNK) {
                    let (k, v) = item?;
                    let event: Event = decode(&v, "event")?;
                    freed += event.approximate_bytes() as u64;
                    removed += 1;
                    batch.remove(k);
                    progress = true;
                }
                self.records.apply_batch(batch)?;
                if freed >= bytes_to_free {
                    break;
                }
            }
        }
        Ok((removed, freed))
    }
}

impl WriteSet {
    /// Adds one event of a batch.
    pub fn add_event(
        &mut self,
        host: &str,
        sequence: u64,
        index: u32,
        event: &Event,
    ) -> Result<(), StoreError> {
        let bytes = encode(event, "event")?;
        self.batch.insert(key(host, sequence, index), bytes);
        self.writes += 1;
        Ok(())
    }
}
