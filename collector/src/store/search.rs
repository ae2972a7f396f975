//! The search index: which stored events hold an address, a port, a hash,
//! an executable, a user, a process name or a kind — kept by the writer in the
//! same commit as the events, so a search never scans events.
//!
//! One entry per (term, event), in the `records` tree under [`PREFIX_INDEX`]:
//! `I | day (u32 BE, of receipt) | field | value | 0 | host | 0 | sequence
//! (u64 BE) | index (u32 BE)` → the event's observed time (i64 BE). Addresses
//! are stored as bytes (family, then 4 or 16 bytes), so a network is one
//! range; other values as text (at most [`MAX_VALUE`] bytes, no NUL). The day
//! comes first so retention removes whole days: [`Store::prune_index`] drops
//! every day older than the events' retention, and an entry whose batch the
//! byte bound removed earlier is skipped when its events are listed.

use std::collections::BTreeMap;

use bannin_proto::v1;
use prost::Message;

use super::{PREFIX_EVENT, PREFIX_INDEX, Store, StoreError, WriteSet};

/// Longest text value indexed.
pub const MAX_VALUE: usize = 512;
/// Milliseconds in a day: the index's unit of retention.
pub const DAY_MS: i64 = 86_400_000;

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Field {
    /// An address of either end (`remote_address`, `local_address`, `source`…).
    Ip = b'i',
    /// A port of either end.
    Port = b'p',
    /// A file's or executable's SHA-256.
    Sha256 = b'h',
    /// An executable's path.
    Exe = b'x',
    /// An account name.
    User = b'u',
    /// A process name (`comm`).
    Process = b'c',
    /// The event's kind.
    Kind = b'k',
}

/// The terms of one event: (field, value as the key holds it).
pub type Terms = Vec<(Field, Vec<u8>)>;

/// An address as the index holds it: the family (4 or 6), then its bytes.
pub fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => [&[4u8][..], &v4.octets()].concat(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => [&[4u8][..], &v4.octets()].concat(),
            None => [&[6u8][..], &v6.octets()].concat(),
        },
    }
}

/// What an event is found by: its kind, and the attributes that name an
/// address, a port, a hash, an executable, a user or a process.
pub fn terms(event: &v1::Event) -> Terms {
    let mut out: Terms = vec![(Field::Kind, event.kind.as_bytes().to_vec())];
    for (name, value) in &event.attributes {
        let field = match name.as_str() {
            "remote_address" | "local_address" | "source" | "address" | "peer" | "source_ip"
            | "destination" | "rhost" => Field::Ip,
            "remote_port" | "local_port" | "port" => Field::Port,
            "sha256" | "parent_sha256" | "exe_sha256" => Field::Sha256,
            "exe" | "parent_exe" => Field::Exe,
            "user" | "username" | "account" => Field::User,
            "comm" | "parent_comm" | "process" => Field::Process,
            _ => continue,
        };
        let value = match field {
            Field::Ip => {
                // "a.b.c.d", "a.b.c.d:port" or "[v6]:port".
                let text = value.trim();
                let ip = text
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
                match ip {
                    Some(ip) => ip_bytes(ip),
                    None => continue,
                }
            }
            Field::Port => match value.trim().parse::<u16>() {
                Ok(p) if p != 0 => p.to_string().into_bytes(),
                _ => continue,
            },
            _ if value.is_empty() || value.len() > MAX_VALUE || value.contains('\0') => continue,
            Field::Sha256 => value.to_ascii_lowercase().into_bytes(),
            _ => value.as_bytes().to_vec(),
        };
        if !out.iter().any(|(f, v)| *f == field && *v == value) {
            out.push((field, value));
        }
    }
    out
}

fn day_of(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / DAY_MS).unwrap_or(u32::MAX)
}

fn term_prefix(day: u32, field: Field, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + value.len());
    k.push(PREFIX_INDEX);
    k.extend_from_slice(&day.to_be_bytes());
    k.push(field as u8);
    k.extend_from_slice(value);
    k.push(0);
    k
}

impl WriteSet {
    /// Indexes a batch's events (`(index in the batch, observed, terms)`),
    /// received at `received_unix_ms`.
    pub fn add_index(
        &mut self,
        host: &str,
        sequence: u64,
        received_unix_ms: i64,
        events: Vec<(u32, i64, Terms)>,
    ) {
        let day = day_of(received_unix_ms);
        for (index, observed, terms) in events {
            for (field, value) in terms {
                let mut k = term_prefix(day, field, &value);
                k.extend_from_slice(host.as_bytes());
                k.push(0);
                k.extend_from_slice(&sequence.to_be_bytes());
                k.extend_from_slice(&index.to_be_bytes());
                self.batch.insert(k, &observed.to_be_bytes());
                self.writes += 1;
            }
        }
    }
}

/// What to look for.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The field.
    pub field: Field,
    /// The value, or (for an address) the first of a range.
    pub value: Vec<u8>,
    /// For an address range: its last value (inclusive); `None` for one value.
    pub through: Option<Vec<u8>>,
    /// Only events received at or after this.
    pub since_unix_ms: i64,
    /// Only these hosts (empty: all).
    pub hosts: Vec<String>,
    /// Events to list at most (the newest days first).
    pub limit: usize,
    /// Entries read at most before the answer says it stopped.
    pub max_entries: usize,
}

/// One host's matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMatches {
    /// Events.
    pub events: u64,
    /// First and last observed.
    pub first_unix_ms: i64,
    /// Last observed.
    pub last_unix_ms: i64,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct SearchAnswer {
    /// Per host.
    pub hosts: BTreeMap<String, HostMatches>,
    /// The first `limit` events: (host, sequence, index in its batch).
    pub events: Vec<(String, u64, u32)>,
    /// Index entries read.
    pub entries: u64,
    /// Stopped at `max_entries`: the counts are a lower bound.
    pub truncated: bool,
}

/// Splits an entry's key after the term prefix: (host, sequence, index).
fn locate(rest: &[u8]) -> Option<(&[u8], u64, u32)> {
    let split = rest.len().checked_sub(12)?;
    let (host, tail) = rest.split_at(split);
    let host = host.strip_suffix(&[0])?;
    let sequence = u64::from_be_bytes(tail.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(tail.get(8..12)?.try_into().ok()?);
    Some((host, sequence, index))
}

impl Store {
    /// Answers `query` from the index: entries of the days since
    /// `since_unix_ms`, newest day first; never reads an event.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchAnswer, StoreError> {
        let mut answer = SearchAnswer::default();
        let today = day_of(bannin_proto::now_unix_ms());
        let first_day = day_of(query.since_unix_ms);
        for day in (first_day..=today).rev() {
            let (start, end) = match &query.through {
                None => {
                    let p = term_prefix(day, query.field, &query.value);
                    let mut end = p.clone();
                    if let Some(last) = end.last_mut() {
                        *last = 1;
                    }
                    (p, end)
                }
                Some(through) => {
                    let start = term_prefix(day, query.field, &query.value);
                    let mut end = term_prefix(day, query.field, through);
                    if let Some(last) = end.last_mut() {
                        *last = 1;
                    }
                    (start, end)
                }
            };
            for item in self.records.range(start..end) {
                let (k, v) = item?;
                if answer.entries as usize >= query.max_entries {
                    answer.truncated = true;
                    return Ok(answer);
                }
                answer.entries += 1;
                // The value part: up to the 0 that ends it (fixed length for addresses).
                let after_field = k.get(6..).unwrap_or_default();
                let value_len = match query.field {
                    Field::Ip => after_field
                        .first()
                        .map_or(0, |f| if *f == 4 { 5 } else { 17 }),
                    _ => after_field.iter().position(|b| *b == 0).unwrap_or(0),
                };
                let Some((host, sequence, index)) =
                    after_field.get(value_len + 1..).and_then(locate)
                else {
                    continue;
                };
                let host = String::from_utf8_lossy(host);
                if !query.hosts.is_empty() && !query.hosts.iter().any(|h| *h == host) {
                    continue;
                }
                let observed = v.as_ref().try_into().map(i64::from_be_bytes).unwrap_or(0);
                let m = answer.hosts.entry(host.to_string()).or_default();
                if m.events == 0 || observed < m.first_unix_ms {
                    m.first_unix_ms = observed;
                }
                m.last_unix_ms = m.last_unix_ms.max(observed);
                m.events += 1;
                if answer.events.len() < query.limit {
                    answer.events.push((host.to_string(), sequence, index));
                }
            }
        }
        Ok(answer)
    }

    /// One stored event by its batch and index (`None` when retention removed it).
    pub fn event_at(
        &self,
        host: &str,
        sequence: u64,
        index: u32,
    ) -> Result<Option<crate::model::Event>, StoreError> {
        let mut start = vec![PREFIX_EVENT];
        start.extend_from_slice(host.as_bytes());
        start.push(0);
        start.extend_from_slice(&sequence.to_be_bytes());
        let mut end = start.clone();
        end.extend_from_slice(&[0xFF; 2]);
        let mut position = 0u32;
        for item in self.records.range(start..=end) {
            let (_, v) = item?;
            let (received, events) = super::events::decode_record(&v)?;
            for decoded in events {
                if position == index {
                    return Ok(decoded
                        .ok()
                        .map(|e| crate::model::Event::from_wire(e, received)));
                }
                position += 1;
            }
        }
        Ok(None)
    }

    /// Removes the index's days received before `cutoff_unix_ms`; returns
    /// the entries removed. Applied, not yet durable.
    pub fn prune_index(&self, cutoff_unix_ms: i64) -> Result<u64, StoreError> {
        let start = vec![PREFIX_INDEX];
        let mut end = vec![PREFIX_INDEX];
        end.extend_from_slice(&day_of(cutoff_unix_ms).to_be_bytes());
        let mut removed = 0u64;
        let mut batch = sled::Batch::default();
        for item in self.records.range(start..end) {
            let (k, _) = item?;
            batch.remove(k);
            removed += 1;
            if removed.is_multiple_of(10_000) {
                self.records.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        self.records.apply_batch(batch)?;
        Ok(removed)
    }
}

/// An event decoded for indexing: its terms, from the encoded event.
pub fn terms_of_wire(raw: &[u8]) -> Option<Terms> {
    v1::Event::decode(raw).ok().map(|e| terms(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, attributes: &[(&str, &str)]) -> v1::Event {
        v1::Event {
            kind: kind.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn events_are_found_by_address_network_port_and_hash_without_reading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let now = bannin_proto::now_unix_ms();
        let mut set = WriteSet::default();
        let sha = "ab".repeat(32);
        let batch = [
            event(
                "net.connection",
                &[
                    ("remote_address", "10.1.2.3"),
                    ("remote_port", "443"),
                    ("exe", "/usr/bin/curl"),
                ],
            ),
            event(
                "process.exec",
                &[("exe", "/tmp/x"), ("sha256", &sha), ("user", "www-data")],
            ),
            event(
                "net.connection",
                &[("remote_address", "192.0.2.9"), ("remote_port", "4444")],
            ),
        ];
        let indexed = batch
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u32, now - 10 + i as i64, terms(e)))
            .collect();
        set.add_index("web-01", 7, now, indexed);
        set.add_index(
            "web-02",
            3,
            now,
            vec![(
                0,
                now,
                terms(&event(
                    "net.connection",
                    &[("remote_address", "10.9.9.9:22")],
                )),
            )],
        );
        store.apply(set).expect("apply");
        let q = |field, value: Vec<u8>, through: Option<Vec<u8>>| SearchQuery {
            field,
            value,
            through,
            since_unix_ms: now - DAY_MS,
            hosts: Vec::new(),
            limit: 10,
            max_entries: 1000,
        };
        let net = |s: &str| {
            let n = bannin_proto::hunts::network(s).expect("net");
            (ip_bytes(n.network()), Some(ip_bytes(n.broadcast())))
        };
        let (a, b) = net("10.0.0.0/8");
        let found = store.search(&q(Field::Ip, a, b)).expect("search");
        assert_eq!(found.hosts.keys().collect::<Vec<_>>(), ["web-01", "web-02"]);
        assert_eq!(found.events.len(), 2);
        let found = store
            .search(&q(
                Field::Ip,
                ip_bytes("192.0.2.9".parse().expect("ip")),
                None,
            ))
            .expect("search");
        assert_eq!(found.events, [("web-01".to_owned(), 7, 2)]);
        let found = store
            .search(&q(Field::Sha256, sha.clone().into_bytes(), None))
            .expect("search");
        assert_eq!(found.hosts["web-01"].events, 1);
        assert_eq!(found.hosts["web-01"].first_unix_ms, now - 9);
        let found = store
            .search(&q(Field::Port, b"443".to_vec(), None))
            .expect("search");
        assert_eq!(found.events, [("web-01".to_owned(), 7, 0)]);
        let found = store
            .search(&q(Field::Kind, b"net.connection".to_vec(), None))
            .expect("search");
        assert_eq!(found.hosts["web-01"].events, 2);
        assert_eq!(found.hosts["web-02"].events, 1);
        // A prefix of a value is not the value.
        let found = store
            .search(&q(Field::Port, b"44".to_vec(), None))
            .expect("search");
        assert!(found.hosts.is_empty());
        // Retention removes whole days.
        assert_eq!(store.prune_index(now + DAY_MS).expect("prune"), 13);
        assert!(
            store
                .search(&q(Field::Port, b"443".to_vec(), None))
                .expect("search")
                .hosts
                .is_empty()
        );
    }
}
