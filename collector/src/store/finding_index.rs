//! The findings index: for every block of [`BLOCK`] finding ids, one summary
//! record that says what the block's findings may hold, so a filtered search
//! of the queue decodes only the blocks that may answer it.
//!
//! A summary holds, exactly, how many of the block's findings are at each
//! severity and in each state, the earliest first observation and the latest
//! observation; and a Bloom filter of [`FILTER_BYTES`] bytes of
//!
//! - every byte trigram and 4-gram of the lower-cased summary, kind, host and
//!   attribute values (the fields a search word is looked for in, each on its
//!   own: a word found in a field has all its n-grams in that field);
//! - the host, the kind and each of its families (`process.`), the summary as
//!   a whole, and each attribute as `name=value` (lower-cased), as terms.
//!
//! A word of three bytes or more passes a block only if all its n-grams may
//! be there; a host, a kind, a summary or an attribute only if its term may
//! be; a severity or a state only if a finding of the block has it now. Long
//! words are where this pays: a path or a hash has dozens of n-grams, all of
//! which must be present, so a block holding a thousand other hashes still
//! fails. 4-grams are what let a number through: every block holds most digit
//! trigrams, far fewer of the 10,000 digit 4-grams.
//!
//! Records live in the `records` tree under [`PREFIX_FINDING_INDEX`]: `X |
//! block (u64 BE)` → `version | first observed (i64 BE) | last observed (i64
//! BE) | count per severity (5 × u16 BE) | count per state (4 × u16 BE) |
//! filter`. [`Store::apply`] keeps them, under one lock, in the same atomic
//! batch as the findings: it reads each changed finding's stored version to
//! move its counts, so the counts are exact while the filter only grows (a
//! finding's text is rarely rewritten; a stale bit costs one block read). A
//! store written before the index existed is indexed once when opened
//! ([`Store::index_findings`]).

use std::collections::BTreeMap;
use std::hash::Hasher;

use super::{PREFIX_FINDING_INDEX, Store, StoreError, decode};
use crate::model::{Finding, FindingState, Severity};

/// Finding ids per block.
pub const BLOCK: u64 = 256;
/// Bytes of a block's Bloom filter (131,072 bits: about 2 % false positives
/// per n-gram with 16,000 distinct n-grams in a block).
pub const FILTER_BYTES: usize = 16384;
const BITS: u64 = (FILTER_BYTES * 8) as u64;
/// Bit positions per trigram or term.
const K: u64 = 4;
/// Format of a summary record.
const VERSION: u8 = 2;
/// Bytes before the filter.
const HEADER: usize = 1 + 8 + 8 + 2 * SEVERITIES + 2 * STATES;
const SEVERITIES: usize = 5;
const STATES: usize = 4;
/// The meta value that says every stored finding is indexed, in this format.
const INDEXED: &str = "findings_index";

/// What one block's findings may hold.
#[derive(Clone)]
pub(super) struct Summary {
    first_observed: i64,
    last_observed: i64,
    severities: [u16; SEVERITIES],
    states: [u16; STATES],
    filter: Vec<u8>,
}

fn severity_slot(s: Severity) -> usize {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

fn state_slot(s: FindingState) -> usize {
    match s {
        FindingState::New => 0,
        FindingState::Acknowledged => 1,
        FindingState::Resolved => 2,
        FindingState::FalsePositive => 3,
    }
}

/// The last observation of a finding as the filters read it.
fn seen(f: &Finding) -> i64 {
    f.last_observed_unix_ms.max(f.observed_unix_ms)
}

impl Summary {
    fn empty() -> Self {
        Self {
            first_observed: i64::MAX,
            last_observed: i64::MIN,
            severities: [0; SEVERITIES],
            states: [0; STATES],
            filter: vec![0; FILTER_BYTES],
        }
    }

    fn set(&mut self, h: u64) {
        for i in positions(h) {
            self.filter[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    /// Counts a finding in (its text into the filter).
    fn add(&mut self, f: &Finding) {
        self.first_observed = self.first_observed.min(f.observed_unix_ms);
        self.last_observed = self.last_observed.max(seen(f));
        self.severities[severity_slot(f.severity)] += 1;
        self.states[state_slot(f.state)] += 1;
        self.set(term(b'h', f.host_id.as_bytes()));
        self.set(term(b's', f.summary.as_bytes()));
        self.set(term(b'k', f.kind.as_bytes()));
        for (i, _) in f.kind.match_indices('.') {
            self.set(term(b'k', &f.kind.as_bytes()[..=i]));
        }
        for (name, value) in &f.attributes {
            self.set(attribute(name, value));
        }
        for text in [&f.summary, &f.kind, &f.host_id]
            .into_iter()
            .chain(f.attributes.values())
        {
            for h in ngrams(&text.to_lowercase()) {
                self.set(h);
            }
        }
    }

    /// Counts a finding's stored version out (its text stays in the filter).
    fn remove(&mut self, f: &Finding) {
        let sev = &mut self.severities[severity_slot(f.severity)];
        *sev = sev.saturating_sub(1);
        let state = &mut self.states[state_slot(f.state)];
        *state = state.saturating_sub(1);
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + FILTER_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.first_observed.to_be_bytes());
        out.extend_from_slice(&self.last_observed.to_be_bytes());
        for n in self.severities.iter().chain(&self.states) {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.filter);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let h = Self::decode_header(bytes)?;
        Some(Self {
            first_observed: h.first_observed,
            last_observed: h.last_observed,
            severities: h.severities,
            states: h.states,
            filter: bytes[HEADER..].to_vec(),
        })
    }
}

/// The `K` bit positions of a hash.
fn positions(h: u64) -> impl Iterator<Item = u64> {
    let h1 = super::search::splitmix(h);
    let h2 = super::search::splitmix(h ^ 0x5851_f42d_4c95_7f2d) | 1;
    (0..K).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % BITS)
}

/// A whole value's hash (FNV-1a, stable across builds: the filters are on disk).
fn term(tag: u8, value: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write_u8(tag);
    h.write(value);
    h.finish()
}

/// The hashes of a lower-cased text's byte trigrams and 4-grams (as they
/// are, tagged by length: no two collide before spreading).
fn ngrams(text: &str) -> impl Iterator<Item = u64> + '_ {
    let b = text.as_bytes();
    let three = b
        .windows(3)
        .map(|w| 3 << 40 | u64::from(w[0]) << 16 | u64::from(w[1]) << 8 | u64::from(w[2]));
    let four = b.windows(4).map(|w| {
        4 << 40
            | u64::from(w[0]) << 24
            | u64::from(w[1]) << 16
            | u64::from(w[2]) << 8
            | u64::from(w[3])
    });
    three.chain(four)
}

/// An attribute's term: `name=value`, the value lower-cased.
fn attribute(name: &str, value: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write_u8(b'a');
    h.write(name.as_bytes());
    h.write_u8(b'=');
    h.write(value.to_lowercase().as_bytes());
    h.finish()
}

fn block_of(id: u64) -> u64 {
    id / BLOCK
}

pub(super) fn key(block: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_FINDING_INDEX;
    k[1..].copy_from_slice(&block.to_be_bytes());
    k
}

/// The ids a block covers, clipped to `(since, before)` (`before` 0: none).
pub(super) fn ids_of(block: u64, since: u64, before: u64) -> (u64, u64) {
    let lo = (block * BLOCK).max(since.saturating_add(1));
    let mut hi = block * BLOCK + BLOCK;
    if before != 0 {
        hi = hi.min(before);
    }
    (lo, hi)
}

/// What a block must hold to be read for a filter (see [`FindingNeeds::passes`]).
#[derive(Debug, Default, Clone)]
pub struct FindingNeeds {
    /// Hashes all of which the block must hold (trigrams of words, the host,
    /// an exact summary).
    all: Vec<u64>,
    /// Kinds, one of which the block must hold (`None`: no kind asked for, or
    /// one the index cannot tell).
    any_kind: Option<Vec<u64>>,
    /// Severities and states, one of each the block must have now (empty: any).
    severities: Vec<Severity>,
    states: Vec<FindingState>,
    /// Last observed at or after, first observed before (0: open).
    since: i64,
    until: i64,
}

impl FindingNeeds {
    /// A word looked for in any one field (lower-cased by the caller).
    pub fn word(&mut self, word: &str) {
        self.all.extend(ngrams(word));
    }

    /// An attribute with exactly this value (any case).
    pub fn attribute(&mut self, name: &str, value: &str) {
        self.all.push(attribute(name, value));
    }

    /// The findings of one host.
    pub fn host(&mut self, host: &str) {
        self.all.push(term(b'h', host.as_bytes()));
    }

    /// Findings with exactly this summary.
    pub fn summary(&mut self, summary: &str) {
        self.all.push(term(b's', summary.as_bytes()));
    }

    /// Findings of these kinds: `(kind, is_prefix)`. A prefix the index
    /// cannot tell (one not ending in `.`) makes any kind pass.
    pub fn kinds<'a>(&mut self, kinds: impl IntoIterator<Item = (&'a str, bool)>) {
        let mut hashes = Vec::new();
        for (kind, prefix) in kinds {
            if prefix && !kind.ends_with('.') {
                self.any_kind = None;
                return;
            }
            hashes.push(term(b'k', kind.as_bytes()));
        }
        self.any_kind = (!hashes.is_empty()).then_some(hashes);
    }

    /// Findings at one of these severities now.
    pub fn severities(&mut self, s: &[Severity]) {
        self.severities = s.to_vec();
    }

    /// Findings in one of these states now.
    pub fn states(&mut self, s: &[FindingState]) {
        self.states = s.to_vec();
    }

    /// Findings last observed at or after `since` and first observed before
    /// `until` (0: open).
    pub fn window(&mut self, since: i64, until: i64) {
        (self.since, self.until) = (since, until);
    }

    /// Whether the index can pass over blocks for this filter at all.
    pub fn narrows(&self) -> bool {
        !self.all.is_empty()
            || self.any_kind.is_some()
            || !self.severities.is_empty()
            || !self.states.is_empty()
            || self.since != 0
            || self.until != 0
    }

    /// Whether a stored summary says its block may hold a finding that
    /// passes (an unreadable one: yes).
    fn passes(&self, record: &[u8]) -> bool {
        let Some(s) = Summary::decode_header(record) else {
            return true;
        };
        let filter = &record[HEADER..];
        let holds = |h: u64| positions(h).all(|i| filter[(i / 8) as usize] & (1 << (i % 8)) != 0);
        (self.severities.is_empty()
            || self
                .severities
                .iter()
                .any(|s2| s.severities[severity_slot(*s2)] > 0))
            && (self.states.is_empty()
                || self.states.iter().any(|s2| s.states[state_slot(*s2)] > 0))
            && (self.since == 0 || s.last_observed >= self.since)
            && (self.until == 0 || s.first_observed < self.until)
            && self.all.iter().all(|h| holds(*h))
            && self
                .any_kind
                .as_ref()
                .is_none_or(|kinds| kinds.iter().any(|h| holds(*h)))
    }
}

/// A summary's counts and times, without copying its filter.
struct Header {
    first_observed: i64,
    last_observed: i64,
    severities: [u16; SEVERITIES],
    states: [u16; STATES],
}

impl Summary {
    fn decode_header(bytes: &[u8]) -> Option<Header> {
        if bytes.len() != HEADER + FILTER_BYTES || bytes[0] != VERSION {
            return None;
        }
        let i64_at = |at: usize| bytes[at..at + 8].try_into().ok().map(i64::from_be_bytes);
        let u16_at = |n: usize| {
            let at = 17 + 2 * n;
            u16::from_be_bytes([bytes[at], bytes[at + 1]])
        };
        Some(Header {
            first_observed: i64_at(1)?,
            last_observed: i64_at(9)?,
            severities: std::array::from_fn(u16_at),
            states: std::array::from_fn(|n| u16_at(SEVERITIES + n)),
        })
    }
}

impl Store {
    /// Adds the summaries of the findings in `changed` (each replacing its
    /// stored version, if any) to `batch`. Called by [`Store::apply`] under
    /// its lock, so no other write moves the same counts.
    pub(super) fn index_changed(
        &self,
        changed: &BTreeMap<u64, Finding>,
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        let mut blocks: BTreeMap<u64, Summary> = BTreeMap::new();
        for (id, finding) in changed {
            let block = block_of(*id);
            let summary = match blocks.entry(block) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(
                    self.records
                        .get(key(block))?
                        .and_then(|v| Summary::decode(&v))
                        .unwrap_or_else(Summary::empty),
                ),
            };
            if let Some(old) = self.finding(*id)? {
                summary.remove(&old);
            }
            summary.add(finding);
        }
        for (block, summary) in blocks {
            batch.insert(&key(block), summary.encode());
        }
        Ok(())
    }

    /// Indexes every stored finding, once, when the store was written
    /// before the index (or by an older format of it): the number indexed.
    pub(super) fn index_findings(&self) -> Result<u64, StoreError> {
        let marker = super::meta_key(INDEXED);
        if self.records.get(&marker)?.as_deref() == Some(&[VERSION][..]) {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        // Summaries of an older format go first.
        for item in self
            .records
            .range([PREFIX_FINDING_INDEX]..[PREFIX_FINDING_INDEX + 1])
        {
            batch.remove(item?.0);
        }
        let (mut current, mut summary, mut count) = (None, Summary::empty(), 0u64);
        for item in self
            .records
            .range([super::PREFIX_FINDING]..[super::PREFIX_FINDING + 1])
        {
            let (k, v) = item?;
            let f: Finding = decode(&v, &format!("finding {}", String::from_utf8_lossy(&k)))?;
            let block = block_of(f.id);
            if current.is_some_and(|c| c != block) {
                if let Some(c) = current {
                    batch.insert(&key(c), summary.encode());
                }
                summary = Summary::empty();
            }
            current = Some(block);
            summary.add(&f);
            count += 1;
        }
        if let Some(c) = current {
            batch.insert(&key(c), summary.encode());
        }
        batch.insert(marker, &[VERSION]);
        self.records.apply_batch(batch)?;
        self.make_durable()?;
        if count > 0 {
            tracing::info!(
                findings = count,
                ms = started.elapsed().as_millis() as u64,
                "Indexed the stored findings for search"
            );
        }
        Ok(count)
    }

    /// The blocks that may hold an answer, in `(since, before)`, in the
    /// order asked, until `visit` says stop; at most `max_blocks` summaries
    /// are read. Returns the lowest (newest first) or highest id of the last
    /// block read, 0 when none was.
    pub(super) fn candidate_blocks(
        &self,
        (since, before): (u64, u64),
        newest_first: bool,
        needs: &FindingNeeds,
        max_blocks: usize,
        mut visit: impl FnMut(u64) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let first = key(block_of(since.saturating_add(1)));
        let end = match before {
            0 => vec![PREFIX_FINDING_INDEX + 1],
            b => key(block_of(b - 1) + 1).to_vec(),
        };
        if first[..] >= end[..] {
            return Ok(0);
        }
        let range = self.records.range(&first[..]..&end[..]);
        let items: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut last = 0;
        for item in items.take(max_blocks) {
            let (k, v) = item?;
            let block = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("finding index key".into()))?;
            let (lo, hi) = ids_of(block, since, before);
            if lo >= hi {
                continue;
            }
            last = if newest_first { lo } else { hi - 1 };
            if needs.passes(&v) && !visit(block)? {
                break;
            }
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WriteSet;

    fn finding(id: u64, host: &str, kind: &str, path: &str, state: FindingState) -> Finding {
        Finding {
            id,
            host_id: host.into(),
            kind: kind.into(),
            severity: Severity::High,
            state,
            observed_unix_ms: 1_000 + id as i64,
            received_unix_ms: 1_000 + id as i64,
            last_observed_unix_ms: 1_000 + id as i64,
            count: 1,
            attributes: BTreeMap::from([("path".to_owned(), path.to_owned())]),
            summary: format!("{kind} on {host}: {path}"),
            history: Vec::new(),
        }
    }

    fn needs(f: impl FnOnce(&mut FindingNeeds)) -> FindingNeeds {
        let mut n = FindingNeeds::default();
        f(&mut n);
        n
    }

    #[test]
    fn a_summary_passes_what_its_findings_hold_and_nothing_else() {
        let mut s = Summary::empty();
        for id in 0..BLOCK {
            s.add(&finding(
                id,
                &format!("web-{}", id % 7),
                "file.modified",
                &format!("/srv/app/data/file-{id}.bin"),
                FindingState::New,
            ));
        }
        let record = s.encode();
        assert_eq!(record.len(), HEADER + FILTER_BYTES);
        // Words in a field, any case; the host, the kind and its family.
        for yes in [
            needs(|n| n.word("file-17.bin")),
            needs(|n| n.word("/srv/app")),
            needs(|n| n.host("web-3")),
            needs(|n| n.kinds([("file.modified", false)])),
            needs(|n| n.kinds([("file.", true)])),
            needs(|n| n.kinds([("fi", true)])),
            needs(|n| n.states(&[FindingState::New])),
            needs(|n| n.severities(&[Severity::High, Severity::Low])),
            needs(|n| n.window(1_100, 0)),
            needs(|n| n.word("ab")),
        ] {
            assert!(yes.passes(&record), "{yes:?}");
        }
        for no in [
            needs(|n| n.word("file-999999.bin")),
            needs(|n| n.word("/etc/shadow")),
            needs(|n| n.host("db-1")),
            needs(|n| n.kinds([("process.reverse_shell", false)])),
            needs(|n| n.kinds([("process.", true), ("net.", true)])),
            needs(|n| n.states(&[FindingState::Resolved])),
            needs(|n| n.severities(&[Severity::Critical])),
            needs(|n| n.window(10_000, 0)),
            needs(|n| n.window(0, 1_000)),
        ] {
            assert!(!no.passes(&record), "{no:?}");
        }
        // A record the index cannot read passes (it is read, not skipped).
        assert!(needs(|n| n.host("db-1")).passes(&record[..100]));
    }

    /// Whether a finding passes, as a filter's `keep` decides.
    type Keep = Box<dyn Fn(&Finding) -> bool>;

    /// The findings `needs` + `keep` find through the index, newest first,
    /// a page of `limit` at a time; and the same by reading every finding.
    fn both_ways(
        store: &Store,
        needs: &FindingNeeds,
        keep: impl Fn(&Finding) -> bool,
        limit: usize,
    ) -> (Vec<u64>, Vec<u64>) {
        let mut indexed = Vec::new();
        let mut before = 0;
        loop {
            let (page, scanned_to) = store
                .findings_matching((0, before), true, limit, usize::MAX, needs, |f| Ok(keep(f)))
                .expect("read");
            indexed.extend(page.iter().map(|f| f.id));
            if scanned_to <= 1 {
                break;
            }
            before = scanned_to;
        }
        let all = store
            .findings_newest_first(|_| true)
            .expect("read")
            .into_iter()
            .filter(|f| keep(f))
            .map(|f| f.id)
            .collect();
        (indexed, all)
    }

    #[test]
    fn a_search_through_the_index_finds_exactly_what_reading_everything_finds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let kinds = [
            "file.modified",
            "process.unknown_binary",
            "net.new_listener",
        ];
        let make = |id: u64| {
            let mut f = finding(
                id,
                &format!("host-{}", id % 13),
                kinds[(id % 3) as usize],
                &format!("/srv/app{}/file-{id}.bin", id % 7),
                FindingState::New,
            );
            f.severity = [Severity::Low, Severity::High, Severity::Critical][(id % 5 % 3) as usize];
            f
        };
        // Written in uneven sets, as the writer's group commits are.
        let mut id = 1;
        while id <= 3000 {
            let mut set = WriteSet::default();
            for _ in 0..(id % 97 + 1) {
                if id <= 3000 {
                    set.put_finding(&make(id)).expect("put");
                    id += 1;
                }
            }
            store.apply(set).expect("apply");
        }
        // Then most of the old ones are resolved, one at a time and in bulk.
        let mut set = WriteSet::default();
        for id in (1..=2000).filter(|id| id % 10 != 3) {
            let mut f = store.finding(id).expect("read").expect("stored");
            f.state = FindingState::Resolved;
            set.put_finding(&f).expect("put");
        }
        store.apply(set).expect("apply");

        let open = |f: &Finding| matches!(f.state, FindingState::New | FindingState::Acknowledged);
        let cases: Vec<(FindingNeeds, Keep)> = vec![
            (
                needs(|n| n.word("file-1234.bin")),
                Box::new(|f| f.summary.contains("file-1234.bin")),
            ),
            (
                needs(|n| n.word("app3/")),
                Box::new(|f| f.summary.contains("app3/")),
            ),
            (
                needs(|n| n.host("host-5")),
                Box::new(|f| f.host_id == "host-5"),
            ),
            (
                needs(|n| n.states(&[FindingState::New, FindingState::Acknowledged])),
                Box::new(open),
            ),
            (
                needs(|n| {
                    n.host("host-7");
                    n.states(&[FindingState::New]);
                    n.kinds([("process.", true)]);
                }),
                Box::new(move |f| {
                    f.host_id == "host-7" && open(f) && f.kind.starts_with("process.")
                }),
            ),
            (
                needs(|n| n.severities(&[Severity::Critical])),
                Box::new(|f| f.severity == Severity::Critical),
            ),
            (
                needs(|n| n.window(1_000 + 2_990, 0)),
                Box::new(|f| f.observed_unix_ms >= 3_990),
            ),
            (
                needs(|n| n.word("no-such-thing")),
                Box::new(|f| f.summary.contains("no-such-thing")),
            ),
        ];
        for (i, (n, keep)) in cases.iter().enumerate() {
            for limit in [7, 1000] {
                let (indexed, all) = both_ways(&store, n, keep, limit);
                assert_eq!(indexed, all, "case {i}, pages of {limit}");
            }
        }
        // Blocks passed over: a rare word reads its block (and block 0, whose
        // file-234.bin holds every trigram of file-1234.bin), not the store.
        let mut read = 0;
        store
            .findings_matching(
                (0, 0),
                true,
                100,
                usize::MAX,
                &needs(|n| n.word("file-1234.bin")),
                |_| {
                    read += 1;
                    Ok(false)
                },
            )
            .expect("read");
        assert!(read <= 2 * BLOCK as usize, "read {read}");

        // A store written before the index is indexed when opened.
        let mut batch = sled::Batch::default();
        for item in store
            .records
            .range([PREFIX_FINDING_INDEX]..[PREFIX_FINDING_INDEX + 1])
        {
            batch.remove(item.expect("read").0);
        }
        batch.remove(super::super::meta_key(INDEXED));
        store.records.apply_batch(batch).expect("remove the index");
        drop(store);
        let store = Store::reopen(dir.path());
        let (indexed, all) = both_ways(
            &store,
            &needs(|n| n.host("host-5")),
            |f| f.host_id == "host-5",
            50,
        );
        assert!(!all.is_empty());
        assert_eq!(indexed, all);
        let (indexed, all) = both_ways(&store, &cases[3].0, &cases[3].1, 50);
        assert_eq!(indexed, all, "counts rebuilt from the stored states");
    }

    #[test]
    fn counts_follow_a_finding_from_state_to_state() {
        let mut s = Summary::empty();
        let new = finding(1, "h", "file.modified", "/x", FindingState::New);
        s.add(&new);
        let mut resolved = new.clone();
        resolved.state = FindingState::Resolved;
        s.remove(&new);
        s.add(&resolved);
        let record = s.encode();
        assert!(!needs(|n| n.states(&[FindingState::New])).passes(&record));
        assert!(needs(|n| n.states(&[FindingState::Resolved])).passes(&record));
        assert_eq!(
            Summary::decode(&record).map(|s| s.states),
            Some([0, 0, 1, 0])
        );
    }
}
