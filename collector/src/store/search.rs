//! The search index: for every stored batch of events, a Bloom filter of
//! what its events name — addresses (and their /24, /16 and /8, or /64, /48
//! and /32),
//! ports, hashes, executables, users, process names and kinds — written by
//! the writer in the same commit as the batch.
//!
//! A search reads the filters of the days it covers (a few bytes per event)
//! and decodes only the records whose filter says "maybe", where it checks
//! each event; it never reads the other events. One key per term and event
//! was tried first: sled took 2.3 KB and a hundredth of the ingest rate per
//! indexed event (BENCHMARKS.md), so the index is one record per batch, as
//! the events are.
//!
//! Records live in the `records` tree under [`PREFIX_INDEX`]: `I | day (u32
//! BE, of receipt) | host | 0 | sequence (u64 BE) | record (u16 BE)` → `1 |
//! first observed (i64 BE) | last observed (i64 BE) | k (u8) | filter bits`:
//! one filter per stored record of events (about a hundred events), so a
//! "maybe" decodes one record, not a whole batch. Before an event of it is
//! decoded, its encoded bytes must hold the value's text where there is one
//! (a hash, a path, a name, a v4 address): most events are skipped unread. The day comes first
//! so retention removes whole days ([`Store::prune_index`], with the events'
//! retention); a filter whose batch the byte bound removed earlier finds
//! nothing when read. The hash is FNV-1a (stable across builds and machines:
//! the filters are on disk) spread by splitmix64.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher;

use bannin_proto::v1;

use super::{PREFIX_INDEX, Store, StoreError, WriteSet};

/// Longest text value indexed.
pub const MAX_VALUE: usize = 512;
/// Milliseconds in a day: the index's unit of retention.
pub const DAY_MS: i64 = 86_400_000;
/// Filter bits per distinct term (about 1 % false positives with [`K`]).
const BITS_PER_TERM: usize = 10;
/// Hash functions per term.
const K: u8 = 7;
/// Format of a filter record.
const VERSION: u8 = 1;

/// What a term is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// One term: a field and its value (an address as bytes: family, then 4 or 16).
pub type Term = (Field, Vec<u8>);

/// An address as terms hold it: the family (4 or 6), then its bytes.
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
pub fn terms(event: &v1::Event) -> Vec<Term> {
    let mut out: Vec<Term> = vec![(Field::Kind, event.kind.as_bytes().to_vec())];
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
            _ if value.is_empty() || value.len() > MAX_VALUE => continue,
            Field::Sha256 => value.to_ascii_lowercase().into_bytes(),
            _ => value.as_bytes().to_vec(),
        };
        if !out.iter().any(|(f, v)| *f == field && *v == value) {
            out.push((field, value));
        }
    }
    out
}

/// The hash of a term (for an address network: `prefix` bits of it).
fn hash(field: Field, value: &[u8], prefix: Option<u8>) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write_u8(field as u8);
    if let Some(p) = prefix {
        h.write_u8(b'/');
        h.write_u8(p);
    }
    h.write(value);
    h.finish()
}

pub(super) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `bytes` (an address as [`ip_bytes`] writes it) with all but its first
/// `prefix` bits cleared.
fn masked(bytes: &[u8], prefix: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (i, b) in out.iter_mut().enumerate().skip(1) {
        let bit = (i - 1) * 8;
        let keep = usize::from(prefix).saturating_sub(bit).min(8);
        *b &= if keep == 0 { 0 } else { 0xFFu8 << (8 - keep) };
    }
    out
}

/// The networks an address is also indexed under, narrowest first.
fn networks(bytes: &[u8]) -> [u8; 3] {
    if bytes.first() == Some(&4) {
        [24, 16, 8]
    } else {
        [64, 48, 32]
    }
}

/// The filter hashes of an event's terms (an address also as its networks).
pub fn hashes(terms: &[Term], out: &mut HashSet<u64>) {
    for (field, value) in terms {
        out.insert(hash(*field, value, None));
        if *field == Field::Ip {
            for p in networks(value) {
                out.insert(hash(*field, &masked(value, p), Some(p)));
            }
        }
    }
}

/// A batch's filter, ready to store: its hashes and its events' time span.
#[derive(Debug, Default, Clone)]
pub struct BatchIndex {
    /// Distinct term hashes.
    pub hashes: HashSet<u64>,
    /// First and last observed.
    pub first_unix_ms: i64,
    /// Last observed.
    pub last_unix_ms: i64,
}

impl BatchIndex {
    /// Adds one event.
    pub fn add(&mut self, observed_unix_ms: i64, event: &v1::Event) {
        self.add_terms(observed_unix_ms, &terms(event));
    }

    /// Adds one event's [`terms`].
    pub fn add_terms(&mut self, observed_unix_ms: i64, terms: &[Term]) {
        if self.hashes.is_empty() || observed_unix_ms < self.first_unix_ms {
            self.first_unix_ms = observed_unix_ms;
        }
        self.last_unix_ms = self.last_unix_ms.max(observed_unix_ms);
        hashes(terms, &mut self.hashes);
    }

    /// The record: version, time span, k, filter bits.
    fn encode(&self) -> Vec<u8> {
        let bits = (self.hashes.len() * BITS_PER_TERM)
            .max(64)
            .next_multiple_of(64);
        let mut filter = vec![0u8; bits / 8];
        for h in &self.hashes {
            for i in positions(*h, bits) {
                filter[i / 8] |= 1 << (i % 8);
            }
        }
        let mut out = Vec::with_capacity(18 + filter.len());
        out.push(VERSION);
        out.extend_from_slice(&self.first_unix_ms.to_be_bytes());
        out.extend_from_slice(&self.last_unix_ms.to_be_bytes());
        out.push(K);
        out.extend_from_slice(&filter);
        out
    }
}

/// The `K` bit positions of a hash in a filter of `bits` bits.
fn positions(h: u64, bits: usize) -> impl Iterator<Item = usize> {
    let h1 = splitmix(h);
    let h2 = splitmix(h ^ 0x5851_f42d_4c95_7f2d) | 1;
    (0..u64::from(K)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits as u64) as usize)
}

/// Whether a stored filter may hold the hash `h`.
fn may_hold(record: &[u8], h: u64) -> bool {
    let Some(filter) = record.get(18..).filter(|f| !f.is_empty()) else {
        return false;
    };
    let bits = filter.len() * 8;
    positions(h, bits).all(|i| filter[i / 8] & (1 << (i % 8)) != 0)
}

impl WriteSet {
    /// Stores the filters of a batch's records (in record order), received
    /// at `received_unix_ms`.
    pub fn add_index(
        &mut self,
        host: &str,
        sequence: u64,
        received_unix_ms: i64,
        records: &[BatchIndex],
    ) {
        for (chunk, index) in records.iter().enumerate() {
            let mut k = Vec::with_capacity(16 + host.len());
            k.push(PREFIX_INDEX);
            k.extend_from_slice(&day_of(received_unix_ms).to_be_bytes());
            k.extend_from_slice(host.as_bytes());
            k.push(0);
            k.extend_from_slice(&sequence.to_be_bytes());
            k.extend_from_slice(&u16::try_from(chunk).unwrap_or(u16::MAX).to_be_bytes());
            self.batch.insert(k, index.encode());
            self.writes += 1;
        }
    }
}

fn day_of(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / DAY_MS).unwrap_or(u32::MAX)
}

/// What to look for: a value, or an address network.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// One value of a field.
    Value(Field, Vec<u8>),
    /// Addresses of a network.
    Network(ipnet::IpNet),
}

/// Why a search is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SearchRefused(pub String);

impl Wanted {
    /// The filter hash a batch must hold to be read: the value's, or the
    /// narrowest indexed network holding the one asked for.
    fn hash(&self) -> Result<u64, SearchRefused> {
        let net = match self {
            Wanted::Value(field, value) => return Ok(hash(*field, value, None)),
            Wanted::Network(net) => net,
        };
        let bytes = ip_bytes(net.network());
        let len = net.prefix_len();
        let host_bits = if bytes.first() == Some(&4) { 32 } else { 128 };
        if len == host_bits {
            return Ok(hash(Field::Ip, &bytes, None));
        }
        let indexed = networks(&bytes);
        match indexed.iter().find(|p| len >= **p) {
            Some(p) => Ok(hash(Field::Ip, &masked(&bytes, *p), Some(*p))),
            None => Err(SearchRefused(format!(
                "a network of at least /{} is needed (the index knows /{} networks)",
                indexed[2], indexed[2]
            ))),
        }
    }

    /// Text an encoded event holding it must contain (its value as the
    /// agent writes it), where there is one: checked before decoding.
    fn literals(&self) -> Vec<Vec<u8>> {
        match self {
            Wanted::Value(Field::Ip, bytes) => match bytes_ip(bytes) {
                Some(ip @ std::net::IpAddr::V4(_)) => vec![ip.to_string().into_bytes()],
                _ => Vec::new(),
            },
            Wanted::Value(Field::Sha256, v) => vec![v.clone(), v.to_ascii_uppercase()],
            Wanted::Value(_, v) => vec![v.clone()],
            Wanted::Network(_) => Vec::new(),
        }
    }

    /// Whether an event holds it.
    fn matches(&self, event: &v1::Event) -> bool {
        terms(event).iter().any(|(field, value)| match self {
            Wanted::Value(f, v) => field == f && value == v,
            Wanted::Network(net) => {
                *field == Field::Ip && bytes_ip(value).is_some_and(|ip| net.contains(&ip))
            }
        })
    }
}

fn bytes_ip(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.split_first()? {
        (4, rest) => <[u8; 4]>::try_from(rest).ok().map(std::net::IpAddr::from),
        (6, rest) => <[u8; 16]>::try_from(rest).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// What to look for, where and how much.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// What.
    pub wanted: Wanted,
    /// Only batches received at or after this.
    pub since_unix_ms: i64,
    /// Only these hosts (empty: all).
    pub hosts: Vec<String>,
    /// Events to list at most (the newest days first).
    pub limit: usize,
    /// Batches decoded at most before the answer says it stopped.
    pub max_batches: usize,
}

/// One host's matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostMatches {
    /// Events.
    pub events: u64,
    /// First observed.
    pub first_unix_ms: i64,
    /// Last observed.
    pub last_unix_ms: i64,
}

/// What a search found.
#[derive(Debug, Default)]
pub struct SearchAnswer {
    /// Per host.
    pub hosts: BTreeMap<String, HostMatches>,
    /// The first `limit` events: (host, sequence, event).
    pub events: Vec<(String, u64, crate::model::Event)>,
    /// Filters read, and batches decoded (the filter's "maybe").
    pub filters: u64,
    /// Batches decoded.
    pub batches: u64,
    /// Stopped at `max_batches`: the counts are a lower bound.
    pub truncated: bool,
}

impl Store {
    /// Answers `query`: the filters of the days since `since_unix_ms`,
    /// newest day first, and the events of the batches they point to.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchAnswer, SearchError> {
        let wanted = query.wanted.hash().map_err(SearchError::Refused)?;
        let literals = query.wanted.literals();
        let mut answer = SearchAnswer::default();
        let today = day_of(bannin_proto::now_unix_ms());
        for day in (day_of(query.since_unix_ms)..=today).rev() {
            let mut prefix = vec![PREFIX_INDEX];
            prefix.extend_from_slice(&day.to_be_bytes());
            for item in self.records.scan_prefix(&prefix) {
                let (k, v) = item.map_err(StoreError::from)?;
                answer.filters += 1;
                if v.first() != Some(&VERSION) || !may_hold(&v, wanted) {
                    continue;
                }
                let rest = k.get(prefix.len()..).unwrap_or_default();
                let Some(split) = rest.len().checked_sub(11) else {
                    continue;
                };
                let (host, tail) = rest.split_at(split);
                let host = String::from_utf8_lossy(host).into_owned();
                let (Ok(sequence), Ok(chunk)) = (
                    <[u8; 8]>::try_from(&tail[1..9]).map(u64::from_be_bytes),
                    <[u8; 2]>::try_from(&tail[9..11]).map(u16::from_be_bytes),
                ) else {
                    continue;
                };
                if !query.hosts.is_empty() && !query.hosts.contains(&host) {
                    continue;
                }
                if answer.batches as usize >= query.max_batches {
                    answer.truncated = true;
                    return Ok(answer);
                }
                answer.batches += 1;
                let Some(record) = self
                    .records
                    .get(super::events::record_key(&host, sequence, chunk))
                    .map_err(StoreError::from)?
                else {
                    // Removed by the byte bound before its day ended.
                    continue;
                };
                let (received, events) = super::events::decode_record_where(&record, |raw| {
                    literals.is_empty()
                        || literals
                            .iter()
                            .any(|l| memchr::memmem::find(raw, l).is_some())
                })?;
                for event in events.into_iter().filter_map(Result::ok) {
                    if !query.wanted.matches(&event) {
                        continue;
                    }
                    let m = answer.hosts.entry(host.clone()).or_default();
                    if m.events == 0 || event.observed_unix_ms < m.first_unix_ms {
                        m.first_unix_ms = event.observed_unix_ms;
                    }
                    m.last_unix_ms = m.last_unix_ms.max(event.observed_unix_ms);
                    m.events += 1;
                    if answer.events.len() < query.limit {
                        answer.events.push((
                            host.clone(),
                            sequence,
                            crate::model::Event::from_wire(event, received),
                        ));
                    }
                }
            }
        }
        Ok(answer)
    }

    /// Removes the filters of days received before `cutoff_unix_ms`; returns
    /// how many. Applied, not yet durable.
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
        }
        self.records.apply_batch(batch)?;
        Ok(removed)
    }
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The question cannot be answered from the index.
    #[error(transparent)]
    Refused(SearchRefused),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for SearchError {
    fn from(e: sled::Error) -> Self {
        Self::Store(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::encode_event_chunks;

    fn event(kind: &str, attributes: &[(&str, &str)]) -> v1::Event {
        v1::Event {
            kind: kind.into(),
            observed_unix_ms: bannin_proto::now_unix_ms(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    fn store_batch(set: &mut WriteSet, host: &str, sequence: u64, events: &[v1::Event]) {
        use prost::Message;
        let now = bannin_proto::now_unix_ms();
        let raw: Vec<bytes::Bytes> = events.iter().map(|e| e.encode_to_vec().into()).collect();
        let chunks = encode_event_chunks(now, &raw);
        let indexes: Vec<BatchIndex> = chunks
            .iter()
            .map(|(_, range)| {
                let mut index = BatchIndex::default();
                for e in &events[range.clone()] {
                    index.add(e.observed_unix_ms, e);
                }
                index
            })
            .collect();
        set.add_event_records(host, sequence, chunks.into_iter().map(|(r, _)| r).collect());
        set.add_index(host, sequence, now, &indexes);
    }

    #[test]
    fn events_are_found_by_address_network_port_and_hash_reading_only_batches_that_may_hold_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let now = bannin_proto::now_unix_ms();
        let sha = "ab".repeat(32);
        let mut set = WriteSet::default();
        store_batch(
            &mut set,
            "web-01",
            7,
            &[
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
            ],
        );
        store_batch(
            &mut set,
            "web-02",
            3,
            &[event(
                "net.connection",
                &[("remote_address", "10.9.9.9:22")],
            )],
        );
        // Batches that hold none of it: never decoded (but for a rare false positive).
        for seq in 1..=50 {
            store_batch(
                &mut set,
                "db-01",
                seq,
                &[event("net.connection", &[("remote_address", "172.16.0.1")])],
            );
        }
        store.apply(set).expect("apply");
        let q = |wanted| SearchQuery {
            wanted,
            since_unix_ms: now - DAY_MS,
            hosts: Vec::new(),
            limit: 10,
            max_batches: 1000,
        };
        let ip = |s: &str| Wanted::Value(Field::Ip, ip_bytes(s.parse().expect("ip")));
        let net = |s: &str| Wanted::Network(bannin_proto::hunts::network(s).expect("net"));

        let found = store.search(&q(net("10.0.0.0/8"))).expect("search");
        assert_eq!(found.hosts.keys().collect::<Vec<_>>(), ["web-01", "web-02"]);
        assert_eq!(found.events.len(), 2);
        assert_eq!(found.filters, 52);
        assert!(found.batches <= 4, "{found:?}");
        for n in ["10.1.2.0/24", "10.1.0.0/16", "10.1.2.3/32", "10.0.0.0/13"] {
            let found = store.search(&q(net(n))).expect("search");
            assert_eq!(found.hosts.keys().collect::<Vec<_>>(), ["web-01"], "{n}");
        }
        assert!(
            store.search(&q(net("10.0.0.0/4"))).is_err(),
            "wider than the index knows"
        );
        let found = store.search(&q(ip("192.0.2.9"))).expect("search");
        assert_eq!(found.hosts["web-01"].events, 1);
        assert_eq!(found.events[0].2.attributes["remote_port"], "4444");
        let found = store
            .search(&q(Wanted::Value(Field::Sha256, sha.clone().into_bytes())))
            .expect("search");
        assert_eq!(found.hosts["web-01"].events, 1);
        let found = store
            .search(&q(Wanted::Value(Field::Port, b"443".to_vec())))
            .expect("search");
        assert_eq!(found.hosts.len(), 1);
        let found = store
            .search(&q(Wanted::Value(Field::Kind, b"net.connection".to_vec())))
            .expect("search");
        assert_eq!(found.hosts["db-01"].events, 50);
        assert_eq!(found.hosts["web-01"].events, 2);
        // A prefix of a value is not the value.
        let found = store
            .search(&q(Wanted::Value(Field::Port, b"44".to_vec())))
            .expect("search");
        assert!(found.hosts.is_empty());
        // One host only.
        let mut only = q(Wanted::Value(Field::Kind, b"net.connection".to_vec()));
        only.hosts = vec!["web-02".into()];
        assert_eq!(store.search(&only).expect("search").hosts.len(), 1);
        // Retention removes whole days.
        assert_eq!(store.prune_index(now + DAY_MS).expect("prune"), 52);
        assert!(
            store
                .search(&q(ip("192.0.2.9")))
                .expect("search")
                .hosts
                .is_empty()
        );
    }

    #[test]
    fn a_filter_holds_every_term_it_was_given() {
        let mut index = BatchIndex::default();
        let events: Vec<v1::Event> = (0..500)
            .map(|i| {
                event(
                    "process.exec",
                    &[
                        ("exe", &format!("/opt/t{i}")),
                        ("remote_address", &format!("10.0.{}.{}", i / 256, i % 256)),
                    ],
                )
            })
            .collect();
        for e in &events {
            index.add(1, e);
        }
        let record = index.encode();
        for e in &events {
            let mut hs = HashSet::new();
            hashes(&terms(e), &mut hs);
            assert!(hs.iter().all(|h| may_hold(&record, *h)));
        }
        let absent = (0..10_000)
            .filter(|i| {
                may_hold(
                    &record,
                    hash(Field::Exe, format!("/nowhere/{i}").as_bytes(), None),
                )
            })
            .count();
        assert!(absent < 300, "false positives: {absent} of 10000");
    }
}
