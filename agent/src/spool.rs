//! The agent's durable spool: every telemetry batch is written here, under the
//! next sequence number, before it is sent, and removed only when the collector
//! acknowledges it.
//!
//! # Layout
//!
//! One sled tree, `spool`, under one-byte prefixes:
//!
//! | key | value |
//! |---|---|
//! | `B` sequence(u64 BE) | severity(u8) event-count(u32 BE) batch (prost `TelemetryBatch`) |
//! | `S` severity(u8) sequence(u64 BE) | empty: the drop order, lowest severity and oldest first |
//! | `M` `last_seq` | last sequence number handed out (u64 BE); never reused |
//! | `T` sensor-name | what the sensor remembers across restarts (JSON) |
//!
//! A sensor's state is written in the same atomic batch as the events of the
//! sweep that produced it ([`Spool::append_sweep`]): a crash can never leave a
//! sensor believing it reported what the spool never received.
//!
//! # Overflow
//!
//! Past the byte cap, batches go lowest severity first, oldest first within a
//! severity. Whatever is dropped is reported in the same atomic write as an
//! `agent.data_loss` indicator batch of high severity, so loss is never silent
//! and a crash cannot separate the loss from its report.

use std::path::Path;
use std::sync::Mutex;

use bannin_proto::now_unix_ms;
use bannin_proto::v1::{self, Severity};
use prost::Message;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// sled failed.
    #[error("spool: {0}")]
    Sled(#[from] sled::Error),
    /// The spool directory could not be created or protected.
    #[error("spool directory {0}: {1}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
    /// A stored batch could not be decoded.
    #[error("spool batch {sequence} is corrupt: {reason}")]
    Corrupt {
        /// Its sequence.
        sequence: u64,
        /// Why.
        reason: String,
    },
}

const PREFIX_BATCH: u8 = b'B';
const PREFIX_SEVERITY: u8 = b'S';
const PREFIX_STATE: u8 = b'T';

const LAST_SEQ: &[u8] = b"Mlast_seq";
/// Room kept free for a loss report.
const REPORT_RESERVE: u64 = 1024;
/// Finding kind reporting spool overflow.
pub const DATA_LOSS_KIND: &str = "agent.data_loss";

fn batch_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_BATCH;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn state_key(name: &str) -> Vec<u8> {
    let mut k = vec![PREFIX_STATE];
    k.extend_from_slice(name.as_bytes());
    k
}

fn severity_key(sev: u8, seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = PREFIX_SEVERITY;
    k[1] = sev;
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// What was dropped and not yet reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loss {
    /// Batches dropped.
    pub batches: u64,
    /// Events in them.
    pub events: u64,
    /// Bytes.
    pub bytes: u64,
    /// Highest severity among them.
    pub max_severity: i32,
    /// Events dropped per severity (by name).
    pub by_severity: std::collections::BTreeMap<String, u64>,
    /// The earliest and latest observation time among them (Unix ms).
    pub first_unix_ms: Option<i64>,
    /// See `first_unix_ms`.
    pub last_unix_ms: Option<i64>,
}

impl Loss {
    /// Counts one dropped batch (its record as spooled).
    fn add_record(&mut self, record: &[u8]) {
        self.batches += 1;
        self.bytes += record.len() as u64;
        let events = record
            .get(5..)
            .and_then(|b| v1::TelemetryBatch::decode(b).ok())
            .and_then(|b| b.decode_events().ok());
        match events {
            // An earlier loss report dropped for space: its numbers carry forward,
            // exactly, into the new one.
            Some(events) if events.len() == 1 && events[0].kind == DATA_LOSS_KIND => {
                let a = &events[0].attributes;
                let num = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                self.batches += num("dropped_batches").saturating_sub(1);
                self.events += num("dropped_events");
                self.bytes += num("dropped_bytes");
                for pair in a
                    .get("dropped_by_severity")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                {
                    if let Some((name, n)) = pair.split_once('=')
                        && let Ok(n) = n.parse::<u64>()
                    {
                        *self.by_severity.entry(name.to_owned()).or_default() += n;
                        if let Some(sev) =
                            Severity::from_str_name(&format!("SEVERITY_{}", name.to_uppercase()))
                        {
                            self.max_severity = self.max_severity.max(sev as i32);
                        }
                    }
                }
                let time = |k: &str| a.get(k).and_then(|v| v.parse::<i64>().ok());
                self.note_time(time("first_dropped_unix_ms"));
                self.note_time(time("last_dropped_unix_ms"));
            }
            Some(events) => {
                self.events += events.len() as u64;
                for e in &events {
                    self.max_severity = self.max_severity.max(e.severity);
                    *self
                        .by_severity
                        .entry(bannin_proto::v1::Severity::name_of(e.severity).to_owned())
                        .or_default() += 1;
                    self.note_time(Some(e.observed_unix_ms));
                }
            }
            None => {
                let n = u64::from(event_count(record));
                self.events += n;
                let sev = i32::from(record.first().copied().unwrap_or(0));
                self.max_severity = self.max_severity.max(sev);
                *self
                    .by_severity
                    .entry(bannin_proto::v1::Severity::name_of(sev).to_owned())
                    .or_default() += n;
            }
        }
    }

    fn note_time(&mut self, t: Option<i64>) {
        let Some(t) = t.filter(|t| *t > 0) else {
            return;
        };
        self.first_unix_ms = Some(self.first_unix_ms.map_or(t, |f| f.min(t)));
        self.last_unix_ms = Some(self.last_unix_ms.map_or(t, |l| l.max(t)));
    }
}

#[derive(Debug)]
struct State {
    last_seq: u64,
    bytes: u64,
    batches: u64,
}

/// Size and content of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes of batches held.
    pub bytes: u64,
    /// Batches held.
    pub batches: u64,
    /// Last sequence handed out.
    pub last_sequence: u64,
}

/// The spool. Share it behind an `Arc`.
pub struct Spool {
    db: sled::Db,
    tree: sled::Tree,
    dir: std::path::PathBuf,
    max_bytes: u64,
    /// Highest sequence known to be on disk: only these may be sent. A batch
    /// visible in sled but not yet flushed could be lost by a crash after the
    /// collector stored it; the restarted agent would then report its events
    /// again under new sequence numbers.
    durable_seq: std::sync::atomic::AtomicU64,
    /// Serialises appends and acknowledgements; held only for sled calls, never across `.await`.
    state: Mutex<State>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` with a byte cap.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        // Telemetry is sensitive: the spool is for the agent's eyes only.
        private_dir(dir).map_err(|e| SpoolError::Io(dir.to_owned(), e))?;
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(Some(200));
        // sled releases its file lock from a background thread after the last
        // handle is dropped: an agent restarted in the same process (`bannin
        // up`, the tests) waits a moment for it instead of failing.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let tree = db.open_tree("spool")?;
        let mut last_seq = match tree.get(LAST_SEQ)? {
            Some(v) => {
                u64::from_be_bytes(v.as_ref().try_into().map_err(|_| SpoolError::Corrupt {
                    sequence: 0,
                    reason: "last_seq".into(),
                })?)
            }
            None => 0,
        };
        let (mut bytes, mut batches) = (0u64, 0u64);
        for item in tree.scan_prefix([PREFIX_BATCH]) {
            let (k, v) = item?;
            bytes += v.len() as u64;
            batches += 1;
            last_seq = last_seq.max(seq_of(&k));
        }
        Ok(Self {
            db,
            tree,
            dir: dir.to_owned(),
            max_bytes,
            durable_seq: std::sync::atomic::AtomicU64::new(last_seq),
            state: Mutex::new(State {
                last_seq,
                bytes,
                batches,
            }),
        })
    }

    /// The spool's directory (sensors keep large baselines in files beside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        bannin_proto::lock(&self.state)
    }

    /// Current size.
    pub fn stats(&self) -> SpoolStats {
        let s = self.lock();
        SpoolStats {
            bytes: s.bytes,
            batches: s.batches,
            last_sequence: s.last_seq,
        }
    }

    /// Spools `events` as the next batch; returns its sequence, or `None` if the
    /// batch itself was the one dropped for space (and its loss reported).
    pub fn append(&self, events: Vec<v1::Event>) -> Result<Option<u64>, SpoolError> {
        Ok(self.append_sweep(vec![events], None)?.pop().flatten())
    }

    /// Spools one sensor sweep atomically: each chunk as the next batch, and the
    /// sensor's new state (`name`, bytes) in the same write, so that after a crash
    /// either both the events and the state that says they were reported exist,
    /// or neither does. Returns each chunk's sequence (`None` if dropped for space).
    pub fn append_sweep(
        &self,
        chunks: Vec<Vec<v1::Event>>,
        state: Option<(&str, Vec<u8>)>,
    ) -> Result<Vec<Option<u64>>, SpoolError> {
        let mut guard = self.lock();
        let mut last = guard.last_seq;
        let mut bytes = guard.bytes;
        let mut batches = guard.batches;
        let mut batch = sled::Batch::default();
        let mut loss = Loss::default();
        let mut assigned = Vec::with_capacity(chunks.len());
        // One pass over the drop order serves every chunk: victims are taken in
        // order and never twice.
        let mut victims = self.tree.scan_prefix([PREFIX_SEVERITY]);
        for events in chunks {
            if events.is_empty() {
                assigned.push(None);
                continue;
            }
            let severity = events.iter().map(|e| e.severity).max().unwrap_or(0);
            let seq = last + 1;
            let record = encode(seq, severity, events);
            let mut kept = true;
            // Drop lowest-severity, oldest batches until the new one fits.
            while bytes + record.len() as u64 + REPORT_RESERVE > self.max_bytes {
                let Some(item) = victims.next() else {
                    kept = false;
                    break;
                };
                let (skey, _) = item?;
                let (vsev, vseq) = (i32::from(skey[1]), seq_of(&skey[1..]));
                if vsev > severity {
                    // Everything left outranks the new batch: it is the one to go.
                    kept = false;
                    break;
                }
                if let Some(v) = self.tree.get(batch_key(vseq))? {
                    loss.add_record(&v);
                    bytes -= v.len() as u64;
                    batches -= 1;
                }
                batch.remove(&batch_key(vseq));
                batch.remove(&skey);
            }
            if kept {
                last = seq;
                batch.insert(&batch_key(seq), record.clone());
                batch.insert(&severity_key(severity_byte(severity), seq), &[]);
                bytes += record.len() as u64;
                batches += 1;
                assigned.push(Some(seq));
            } else {
                loss.add_record(&record);
                assigned.push(None);
            }
        }
        drop(victims);
        if loss.batches > 0 {
            last += 1;
            let report = encode(last, Severity::High as i32, vec![loss_event(&loss)]);
            tracing::warn!(
                dropped.batches = loss.batches,
                dropped.events = loss.events,
                dropped.bytes = loss.bytes,
                "Spool full: dropped the lowest-severity, oldest telemetry"
            );
            batch.insert(&batch_key(last), report.clone());
            batch.insert(
                &severity_key(severity_byte(Severity::High as i32), last),
                &[],
            );
            bytes += report.len() as u64;
            batches += 1;
        }
        if let Some((name, value)) = state {
            batch.insert(state_key(name), value);
        }
        batch.insert(LAST_SEQ, &last.to_be_bytes());
        self.tree.apply_batch(batch)?;
        guard.last_seq = last;
        guard.bytes = bytes;
        guard.batches = batches;
        Ok(assigned)
    }

    /// Saves a named state on its own (not tied to a sweep) and flushes it.
    pub fn put_state(&self, name: &str, value: Vec<u8>) -> Result<(), SpoolError> {
        self.tree.insert(state_key(name), value)?;
        self.flush()
    }

    /// The state sensor `name` saved with its last sweep.
    pub fn sensor_state(&self, name: &str) -> Result<Option<Vec<u8>>, SpoolError> {
        Ok(self.tree.get(state_key(name))?.map(|v| v.to_vec()))
    }

    /// Makes sure the next sequence handed out is above `sequence` (the
    /// collector's high water): if the spool ever lost its tail, new batches
    /// must not reuse numbers the collector has already stored.
    pub fn ensure_after(&self, sequence: u64) -> Result<(), SpoolError> {
        let mut state = self.lock();
        if state.last_seq < sequence {
            tracing::warn!(
                spool.last = state.last_seq,
                collector.high_water = sequence,
                "Spool is behind the collector; skipping ahead"
            );
            self.tree.insert(LAST_SEQ, &sequence.to_be_bytes())?;
            state.last_seq = sequence;
        }
        Ok(())
    }

    /// Removes every batch up to and including `sequence`; returns how many.
    pub fn acknowledge(&self, sequence: u64) -> Result<u64, SpoolError> {
        let mut state = self.lock();
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut freed = 0;
        for item in self.tree.range(batch_key(0)..=batch_key(sequence)) {
            let (k, v) = item?;
            let seq = seq_of(&k);
            let sev = v.first().copied().unwrap_or(0);
            batch.remove(k);
            batch.remove(&severity_key(sev, seq));
            removed += 1;
            freed += v.len() as u64;
        }
        if removed > 0 {
            self.tree.apply_batch(batch)?;
            state.bytes -= freed;
            state.batches -= removed;
        }
        Ok(removed)
    }

    /// Up to `max` durable spooled batches with a sequence of at least `from`, in order.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<v1::TelemetryBatch>, SpoolError> {
        let durable = self.durable_seq.load(std::sync::atomic::Ordering::Acquire);
        let mut out = Vec::new();
        for item in self
            .tree
            .range(batch_key(from)..batch_key(u64::MAX))
            .take(max)
        {
            let (k, v) = item?;
            let sequence = seq_of(&k);
            if sequence > durable {
                break;
            }
            let body = v.get(5..).ok_or_else(|| SpoolError::Corrupt {
                sequence,
                reason: "short record".into(),
            })?;
            let batch = v1::TelemetryBatch::decode(body).map_err(|e| SpoolError::Corrupt {
                sequence,
                reason: e.to_string(),
            })?;
            out.push(batch);
        }
        Ok(out)
    }

    /// Makes everything spooled durable (and so sendable).
    pub fn flush(&self) -> Result<(), SpoolError> {
        let target = self.lock().last_seq;
        self.db.flush()?;
        self.durable_seq
            .fetch_max(target, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }
}

/// Creates `dir` if needed and makes it accessible to its owner only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn seq_of(k: &[u8]) -> u64 {
    // Keys are built by batch_key/severity_key: the last 8 bytes are the sequence.
    let tail = &k[k.len().saturating_sub(8)..];
    let mut b = [0u8; 8];
    b[8 - tail.len()..].copy_from_slice(tail);
    u64::from_be_bytes(b)
}

fn severity_byte(sev: i32) -> u8 {
    u8::try_from(sev.clamp(0, 255)).unwrap_or(0)
}

fn event_count(record: &[u8]) -> u32 {
    record
        .get(1..5)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

fn encode(sequence: u64, severity: i32, events: Vec<v1::Event>) -> Vec<u8> {
    let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
    let batch = v1::TelemetryBatch::from_events(sequence, &events);
    let mut out = Vec::with_capacity(5 + batch.encoded_len());
    out.push(severity_byte(severity));
    out.extend_from_slice(&count.to_be_bytes());
    batch.encode(&mut out).unwrap_or_default();
    out
}

fn loss_event(loss: &Loss) -> v1::Event {
    let severity = Severity::try_from(loss.max_severity)
        .map(|s| s.as_str_name())
        .unwrap_or("SEVERITY_UNSPECIFIED");
    let mut attributes: std::collections::BTreeMap<String, String> = [
        ("dropped_batches".to_owned(), loss.batches.to_string()),
        ("dropped_events".to_owned(), loss.events.to_string()),
        ("dropped_bytes".to_owned(), loss.bytes.to_string()),
        ("highest_dropped_severity".to_owned(), severity.to_owned()),
        (
            "dropped_by_severity".to_owned(),
            loss.by_severity
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
    .into();
    if let (Some(first), Some(last)) = (loss.first_unix_ms, loss.last_unix_ms) {
        attributes.insert("first_dropped_unix_ms".into(), first.to_string());
        attributes.insert("last_dropped_unix_ms".into(), last.to_string());
    }
    v1::Event {
        kind: DATA_LOSS_KIND.into(),
        severity: Severity::High as i32,
        observed_unix_ms: now_unix_ms(),
        attributes,
        summary: format!(
            "spool full: {} events in {} batches ({} bytes) dropped before the collector acknowledged them",
            loss.events, loss.batches, loss.bytes
        ),
        indicator: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize, severity: Severity, pad: usize) -> Vec<v1::Event> {
        (0..n)
            .map(|i| v1::Event {
                kind: "test".into(),
                severity: severity as i32,
                observed_unix_ms: i as i64,
                attributes: [("pad".to_owned(), "x".repeat(pad))].into(),
                summary: String::new(),
                indicator: false,
            })
            .collect()
    }

    #[test]
    fn only_flushed_batches_can_be_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1 << 30).expect("open");
        spool.append(events(1, Severity::Info, 1)).expect("append");
        assert!(
            spool.read_from(0, 10).expect("read").is_empty(),
            "visible in sled is not on disk"
        );
        spool.flush().expect("flush");
        assert_eq!(spool.read_from(0, 10).expect("read").len(), 1);
        drop(spool);
        let reopened = Spool::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(
            reopened.read_from(0, 10).expect("read").len(),
            1,
            "what survived a restart is on disk"
        );
    }

    #[test]
    fn sequences_grow_survive_reopen_and_are_never_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), 1 << 30).expect("open");
            assert_eq!(
                spool.append(events(1, Severity::Info, 1)).expect("append"),
                Some(1)
            );
            assert_eq!(
                spool.append(events(1, Severity::Info, 1)).expect("append"),
                Some(2)
            );
            assert_eq!(spool.acknowledge(2).expect("ack"), 2);
            spool.flush().expect("flush");
        }
        let spool = Spool::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(spool.stats().batches, 0);
        assert_eq!(
            spool.append(events(1, Severity::Info, 1)).expect("append"),
            Some(3)
        );
    }

    #[test]
    fn spool_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool");
        Spool::open(&path, 1 << 30).expect("open");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn acknowledge_removes_only_up_to_the_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1 << 30).expect("open");
        for _ in 0..5 {
            spool.append(events(2, Severity::Low, 1)).expect("append");
        }
        spool.acknowledge(3).expect("ack");
        spool.flush().expect("flush");
        let left: Vec<u64> = spool
            .read_from(0, 100)
            .expect("read")
            .iter()
            .map(|b| b.sequence)
            .collect();
        assert_eq!(left, vec![4, 5]);
        assert_eq!(spool.stats().batches, 2);
    }

    #[test]
    fn overflow_drops_lowest_severity_oldest_first_and_reports_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1024 * 1024).expect("open");
        // ~100 KiB batches: 1 high, then info ones until the cap forces drops.
        spool
            .append(events(1, Severity::High, 100_000))
            .expect("append");
        for _ in 0..12 {
            spool
                .append(events(1, Severity::Info, 100_000))
                .expect("append");
        }
        spool.flush().expect("flush");
        let all = spool.read_from(0, 1000).expect("read");
        assert!(spool.stats().bytes <= 1024 * 1024);
        assert_eq!(all[0].sequence, 1, "the high-severity batch survives");
        let all: Vec<(u64, Vec<v1::Event>)> = all
            .iter()
            .map(|b| (b.sequence, b.decode_events().expect("decodes")))
            .collect();
        let reports: Vec<_> = all
            .iter()
            .flat_map(|(_, events)| events)
            .filter(|e| e.kind == DATA_LOSS_KIND)
            .collect();
        assert!(!reports.is_empty(), "loss is reported");
        let dropped: u64 = reports
            .iter()
            .map(|e| {
                e.attributes["dropped_events"]
                    .parse::<u64>()
                    .expect("number")
            })
            .sum();
        let info_left = all
            .iter()
            .filter(|(_, events)| {
                events
                    .iter()
                    .all(|e| e.kind == "test" && e.severity == Severity::Info as i32)
            })
            .count() as u64;
        assert_eq!(
            dropped + info_left,
            12,
            "every info batch is either kept or counted as lost"
        );
        // The oldest info batches went first.
        let first_info = all
            .iter()
            .find(|(seq, events)| events[0].kind == "test" && *seq > 1);
        assert!(first_info.expect("some info kept").0 > 2);
    }

    #[test]
    fn every_drop_is_counted_exactly_even_when_a_report_is_itself_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 256 * 1024).expect("open");
        // A storm of distinct high findings with the collector away: reports are
        // high too, so later drops push earlier reports out.
        let mut appended = 0u64;
        for round in 0..60u64 {
            let mut batch = events(50, Severity::High, 200);
            for e in &mut batch {
                e.indicator = true;
                e.observed_unix_ms = 1_000 + round as i64;
            }
            appended += 50;
            spool.append(batch).expect("append");
        }
        spool.flush().expect("flush");
        assert!(spool.stats().bytes <= 256 * 1024);
        let all: Vec<v1::Event> = spool
            .read_from(0, 10_000)
            .expect("read")
            .iter()
            .flat_map(|b| b.decode_events().expect("decodes"))
            .collect();
        let kept = all.iter().filter(|e| e.kind == "test").count() as u64;
        let reports: Vec<&v1::Event> = all.iter().filter(|e| e.kind == DATA_LOSS_KIND).collect();
        assert!(!reports.is_empty());
        let dropped: u64 = reports
            .iter()
            .map(|e| {
                e.attributes["dropped_events"]
                    .parse::<u64>()
                    .expect("number")
            })
            .sum();
        assert_eq!(
            kept + dropped,
            appended,
            "every event kept or counted, exactly once"
        );
        let by_severity: u64 = reports
            .iter()
            .flat_map(|e| e.attributes["dropped_by_severity"].split(','))
            .filter_map(|p| p.split_once('=')?.1.parse::<u64>().ok())
            .sum();
        assert_eq!(by_severity, dropped, "per severity sums to the total");
        let earliest = reports
            .iter()
            .filter_map(|e| {
                e.attributes
                    .get("first_dropped_unix_ms")?
                    .parse::<i64>()
                    .ok()
            })
            .min();
        assert_eq!(
            earliest,
            Some(1000),
            "the time range lost starts at the first drop"
        );
    }
}
