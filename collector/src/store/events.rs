//! Raw telemetry per host, kept for triage within a retention bound.
//!
//! Events are stored exactly as the agent encoded them (the contract's `Event`),
//! so ingest never decodes and re-encodes attributes; they are decoded into
//! [`Event`]s when read. This is the one place the store holds a wire format, on
//! purpose: raw telemetry is evidence, and keeping it as received is both cheaper
//! and more faithful.
//!
//! A batch's events are stored as a few records of about [`CHUNK_BYTES`] each,
//! not one record per event: a sled insert costs far more than copying a few
//! dozen events. Records stay small because sled 0.34 keeps up to 16 items in a
//! leaf and moves a leaf over 128 KiB into a blob file of its own, so large
//! values turn every write into file creation and deletion.
//! A record is the receive time (i64 BE, so retention can skip decoding)
//! followed by its events, each as a varint length and the encoded event,
//! compressed with LZ4 (size prepended).

use bannin_proto::v1;
use bytes::{Buf, Bytes};
use prost::Message;

use super::{PREFIX_EVENT, Store, StoreError, WriteSet};
use crate::model::Event;

fn host_prefix(host: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + host.len());
    k.push(PREFIX_EVENT);
    k.extend_from_slice(host.as_bytes());
    k.push(0);
    k
}

/// Target size of one stored record of events.
pub const CHUNK_BYTES: usize = 6 * 1024;

fn key(host: &str, sequence: u64, chunk: u16) -> Vec<u8> {
    let mut k = host_prefix(host);
    k.extend_from_slice(&sequence.to_be_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Decodes the events of one record.
type DecodedRecord = (i64, Vec<Result<v1::Event, prost::DecodeError>>);

pub(super) fn decode_record(value: &[u8]) -> Result<DecodedRecord, StoreError> {
    decode_record_where(value, |_| true)
}

/// The key of one stored record of a batch.
pub(super) fn record_key(host: &str, sequence: u64, chunk: u16) -> Vec<u8> {
    key(host, sequence, chunk)
}

/// [`decode_record`], decoding only the events whose encoded bytes `keep`
/// accepts (a search's literal check before the decoder runs).
pub(super) fn decode_record_where(
    value: &[u8],
    keep: impl Fn(&[u8]) -> bool,
) -> Result<DecodedRecord, StoreError> {
    let received = received_of(value);
    let body = lz4_flex::decompress_size_prepended(value.get(8..).unwrap_or_default())
        .map_err(|e| StoreError::Corrupt(format!("event record: {e}")))?;
    let mut body = Bytes::from(body);
    let mut events = Vec::new();
    while body.has_remaining() {
        let len = prost::encoding::decode_varint(&mut body)
            .map_err(|_| StoreError::Corrupt("event record length".into()))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > body.remaining() {
            return Err(StoreError::Corrupt("event record truncated".into()));
        }
        let raw = body.split_to(len);
        if keep(&raw) {
            events.push(v1::Event::decode(raw));
        }
    }
    Ok((received, events))
}

fn received_of(value: &[u8]) -> i64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(i64::MIN)
}

/// What to read of a host's events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events observed at or after this time.
    pub since_unix_ms: i64,
    /// Only events of this kind (empty: all; `net.*`: every kind starting `net.`).
    pub kind: String,
    /// Only events of batches after this sequence.
    pub after_sequence: u64,
    /// At most this many.
    pub limit: usize,
}

impl EventQuery {
    /// Whether `kind` is wanted.
    pub fn matches_kind(&self, kind: &str) -> bool {
        match self.kind.strip_suffix('*') {
            _ if self.kind.is_empty() => true,
            Some(prefix) => kind.starts_with(prefix),
            None => kind == self.kind,
        }
    }
}

impl Store {
    /// A host's events in arrival order, and whether more matched than `limit`.
    /// A page holds whole batches: it may run past `limit` to finish the last one,
    /// so paging with `after_sequence` never splits a batch.
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
        let mut last_sequence = None;
        for item in self.records.range(start..end) {
            let (k, v) = item?;
            let seq_bytes: [u8; 8] = k
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("event key".into()))?;
            let sequence = u64::from_be_bytes(seq_bytes);
            if out.len() >= query.limit && last_sequence != Some(sequence) {
                return Ok((out, true));
            }
            last_sequence = Some(sequence);
            let (received, events) = decode_record(&v)?;
            for (index, decoded) in events.into_iter().enumerate() {
                let event = match decoded {
                    Ok(wire) => Event::from_wire(wire, received),
                    // Ingest checked the structure; a value that still does not decode
                    // (say, bytes that are not UTF-8 in an attribute) is shown, not hidden.
                    Err(e) => Event {
                        kind: "bannin.undecodable_event".into(),
                        severity: crate::model::Severity::Info,
                        observed_unix_ms: received,
                        received_unix_ms: received,
                        indicator: false,
                        attributes: [("index".to_owned(), index.to_string())].into(),
                        summary: format!("stored event does not decode: {e}"),
                    },
                };
                if event.observed_unix_ms >= query.since_unix_ms && query.matches_kind(&event.kind)
                {
                    out.push((sequence, event));
                }
            }
        }
        Ok((out, false))
    }

    /// Deletes each host's batches received before `cutoff_unix_ms`, then, while
    /// fewer than `bytes_to_free` bytes are freed, the oldest batches of every
    /// host in turn (round robin, so one noisy host cannot erase another's
    /// history alone). Returns (batches removed, bytes freed). Applied, not yet durable.
    pub fn prune_events(
        &self,
        hosts: &[String],
        cutoff_unix_ms: i64,
        bytes_to_free: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut removed = 0u64;
        let mut freed = 0u64;
        for host in hosts {
            let mut batch = sled::Batch::default();
            // Sequences follow time within a host, so the first young batch ends the old ones.
            for item in self.records.scan_prefix(host_prefix(host)) {
                let (k, v) = item?;
                if received_of(&v) >= cutoff_unix_ms {
                    break;
                }
                freed += v.len() as u64;
                removed += 1;
                batch.remove(k);
            }
            self.records.apply_batch(batch)?;
        }
        let mut progress = true;
        while freed < bytes_to_free && progress {
            progress = false;
            // Each host gives up an equal share of what is still to be freed.
            let share = ((bytes_to_free - freed) / hosts.len().max(1) as u64).max(1);
            for host in hosts {
                let mut batch = sled::Batch::default();
                let mut from_host = 0u64;
                for item in self.records.scan_prefix(host_prefix(host)) {
                    if from_host >= share {
                        break;
                    }
                    let (k, v) = item?;
                    from_host += v.len() as u64;
                    removed += 1;
                    batch.remove(k);
                    progress = true;
                }
                freed += from_host;
                self.records.apply_batch(batch)?;
            }
        }
        Ok((removed, freed))
    }
}

impl WriteSet {
    /// Adds the records of one batch made by [`encode_events`]; returns their bytes.
    pub fn add_event_records(&mut self, host: &str, sequence: u64, records: Vec<Vec<u8>>) -> u64 {
        let mut total = 0;
        for (chunk, value) in records.into_iter().enumerate() {
            total += value.len() as u64;
            let chunk = u16::try_from(chunk).unwrap_or(u16::MAX);
            self.batch.insert(key(host, sequence, chunk), value);
            self.writes += 1;
        }
        total
    }
}

/// Cuts a batch's encoded events into store records, each compressed (LZ4) to
/// at most about [`CHUNK_BYTES`].
///
/// Pure CPU work, done by the caller (a link session) so the single writer
/// thread only inserts.
pub fn encode_events(received_unix_ms: i64, events: &[Bytes]) -> Vec<Vec<u8>> {
    encode_event_chunks(received_unix_ms, events)
        .into_iter()
        .map(|(record, _)| record)
        .collect()
}

/// [`encode_events`], with the range of events each record holds (the
/// search index keeps one filter per record).
pub fn encode_event_chunks(
    received_unix_ms: i64,
    events: &[Bytes],
) -> Vec<(Vec<u8>, std::ops::Range<usize>)> {
    let mut records = Vec::new();
    encode_range(received_unix_ms, events, 0, &mut records);
    records
}

/// Raw bytes gathered before compressing; telemetry compresses well, and a
/// record that still comes out too large is split in two.
const RAW_CHUNK_BYTES: usize = 48 * 1024;

fn encode_range(
    received_unix_ms: i64,
    events: &[Bytes],
    offset: usize,
    records: &mut Vec<(Vec<u8>, std::ops::Range<usize>)>,
) {
    let mut start = 0;
    while start < events.len() {
        let mut end = start;
        let mut raw = 0;
        while end < events.len() && (end == start || raw + events[end].len() <= RAW_CHUNK_BYTES) {
            raw += events[end].len() + 5;
            end += 1;
        }
        let mut body = Vec::with_capacity(raw);
        for e in &events[start..end] {
            prost::encoding::encode_varint(e.len() as u64, &mut body);
            body.extend_from_slice(e);
        }
        let compressed = lz4_flex::compress_prepend_size(&body);
        if compressed.len() > CHUNK_BYTES && end - start > 1 {
            let mid = start + (end - start) / 2;
            encode_range(
                received_unix_ms,
                &events[start..mid],
                offset + start,
                records,
            );
            encode_range(received_unix_ms, &events[mid..end], offset + mid, records);
        } else {
            let mut value = Vec::with_capacity(8 + compressed.len());
            value.extend_from_slice(&received_unix_ms.to_be_bytes());
            value.extend_from_slice(&compressed);
            records.push((value, offset + start..offset + end));
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_exactly_or_by_family() {
        let q = |k: &str| EventQuery {
            kind: k.into(),
            ..EventQuery::default()
        };
        assert!(q("").matches_kind("net.connection"));
        assert!(q("net.*").matches_kind("net.connection"));
        assert!(!q("net.*").matches_kind("file.odd_name"));
        assert!(q("net.connection").matches_kind("net.connection"));
        assert!(!q("net.conn").matches_kind("net.connection"));
    }
}
