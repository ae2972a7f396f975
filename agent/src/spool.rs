//! The agent's durable spool: every telemetry batch is written here, under the
//! next sequence number, before it is sent, and removed only when the collector
//! acknowledges it.
//!
//! # Layout
//!
//! One file per batch, as Fluent Bit keeps its filesystem buffer, so that what the
//! spool holds on disk is what it counts:
//!
//! | path | content |
//! |---|---|
//! | `batches/<sequence, 16 hex>` | a batch record (below) |
//! | `state/<sensor name, hex>` | what a sensor remembers across restarts: the sequence its sweep ended at (u64 BE), then the state |
//! | `last_seq` | last sequence number handed out (u64 BE); never reused |
//!
//! Sensors may keep their own files beside these (a baseline too large for a
//! state); they are not the spool's and are not counted.
//!
//! A batch record: magic `BNSP1`, severity (u8), event count (u32 BE), the
//! sweep it belongs to (name length u16 BE, sensor name, the sweep's last
//! sequence u64 BE; an empty name for none), the sequences this record reports
//! as dropped (count u32 BE, u64 BE each; a loss report's), then the prost
//! `TelemetryBatch`.
//!
//! Every file is written under a temporary name, synced and renamed into
//! place; [`Spool::flush`] syncs the directories and only then lets the link
//! send what was written.
//!
//! # A sweep and its state, atomically
//!
//! A sensor's state is written after the batches of the sweep that produced it
//! ([`Spool::append_sweep`]), and each of those batches names the sensor and the
//! sweep's last sequence. A batch whose sensor's saved state does not reach its
//! sweep belongs to a sweep cut short by a crash: it is removed when the spool
//! opens, and the sensor, back at its previous state, reports the same changes
//! again. A crash can never leave a sensor believing it reported what the spool
//! never received, nor the spool holding half a sweep.
//!
//! # Overflow
//!
//! `max_bytes` bounds the space the spool's batches and directories take on
//! disk, counted in filesystem blocks (`du`, not file lengths). Sensor states
//! are held apart, under a bound of their own (`max_state_bytes`): a state
//! grown by what an unprivileged user can create (20,000 odd file names) must
//! never take the room new findings need. A state that would pass its bound
//! is not saved (logged, with the sensor's name): its sweep's unsent batches
//! are then taken back at the next start and reported again — duplicates at
//! worst, never a finding lost. Past it, batches go
//! lowest severity first, oldest first within a severity. Whatever is dropped is
//! reported in an `agent.data_loss` batch of high severity that is on disk
//! before anything it counts is removed, and names what it counts: if a crash
//! comes between, the removal is finished when the spool opens. Loss is never
//! silent, never counted twice, and a report dropped for space carries its
//! numbers, exactly, into the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bannin_proto::now_unix_ms;
use bannin_proto::v1::{self, Severity};
use prost::Message;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or directory of the spool could not be read or written.
    #[error("spool {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    /// A stored batch could not be decoded.
    #[error("spool batch {sequence} is corrupt: {reason}")]
    Corrupt {
        /// Its sequence.
        sequence: u64,
        /// Why.
        reason: String,
    },
    /// The spool of an earlier version (a sled database) could not be read.
    #[error("reading the earlier spool format: {0}")]
    Sled(#[from] sled::Error),
}

const MAGIC: &[u8; 5] = b"BNSP1";
const BATCHES: &str = "batches";
const STATES: &str = "state";
const LAST_SEQ: &str = "last_seq";
/// Finding kind reporting spool overflow.
pub const DATA_LOSS_KIND: &str = "agent.data_loss";

/// The header of a batch file; the `TelemetryBatch` follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    /// A loss report.
    report: bool,
    severity: u8,
    count: u32,
    /// The sensor whose sweep this batch belongs to, and the sweep's last sequence.
    sweep: Option<(String, u64)>,
    /// What this batch (a loss report) counts as dropped.
    drops: Vec<u64>,
}

impl Header {
    fn encode(&self, body: &[u8]) -> Vec<u8> {
        let (name, end) = self
            .sweep
            .as_ref()
            .map_or(("", 0), |(n, e)| (n.as_str(), *e));
        let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
        let mut out = Vec::with_capacity(32 + name.len() + 8 * self.drops.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.push(u8::from(self.report));
        out.push(self.severity);
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&end.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.drops.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for seq in &self.drops {
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// Reads a header from `r`, leaving it at the body. `None`: not a batch file.
    fn read(r: &mut impl Read) -> io::Result<Option<Self>> {
        fn take<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
            let mut b = [0u8; N];
            r.read_exact(&mut b)?;
            Ok(b)
        }
        let parse = |r: &mut dyn Read| -> io::Result<Self> {
            let mut r = r;
            if &take::<5>(&mut r)? != MAGIC {
                return Err(io::ErrorKind::InvalidData.into());
            }
            let [flags] = take::<1>(&mut r)?;
            let [severity] = take::<1>(&mut r)?;
            let count = u32::from_be_bytes(take(&mut r)?);
            let name_len = usize::from(u16::from_be_bytes(take(&mut r)?));
            let mut name = vec![0u8; name_len];
            r.read_exact(&mut name)?;
            let end = u64::from_be_bytes(take(&mut r)?);
            let drops_len = u32::from_be_bytes(take(&mut r)?);
            // Bounded by what the file holds: read_exact fails past its end.
            let mut drops = Vec::with_capacity(drops_len.min(4096) as usize);
            for _ in 0..drops_len {
                drops.push(u64::from_be_bytes(take(&mut r)?));
            }
            let name = String::from_utf8(name).map_err(|_| io::ErrorKind::InvalidData)?;
            Ok(Self {
                report: flags & 1 != 0,
                severity,
                count,
                sweep: (!name.is_empty()).then_some((name, end)),
                drops,
            })
        };
        match parse(r) {
            Ok(h) => Ok(Some(h)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A batch held in the spool.
#[derive(Debug, Clone, Copy)]
struct Held {
    severity: u8,
    on_disk: u64,
    report: bool,
}

/// A sensor state on disk.
#[derive(Debug, Clone, Copy)]
struct SavedState {
    on_disk: u64,
    /// The sequence the sweep that wrote it ended at.
    covered: u64,
    /// SHA-256 of the state: an unchanged state after an empty sweep is not written again.
    digest: [u8; 32],
}

#[derive(Debug)]
struct State {
    last_seq: u64,
    /// The highest sequence given to the link to send (a report up to here may
    /// have reached the collector and is never folded into a later one).
    handed_out: u64,
    /// What the `last_seq` file says.
    written_last_seq: u64,
    /// Batch files written or removed since the directory was last synced.
    dirty_batches: bool,
    /// State files written since their directory was last synced.
    dirty_states: bool,
    batches: BTreeMap<u64, Held>,
    /// The drop order: lowest severity, oldest first.
    order: BTreeSet<(u8, u64)>,
    /// Space the batch files take.
    batch_bytes: u64,
    /// Space each state file takes, and the sequence its sweep ended at.
    states: BTreeMap<String, SavedState>,
}

/// Size and content of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Space the batches take on disk.
    pub bytes: u64,
    /// Batches held.
    pub batches: u64,
    /// Last sequence handed out.
    pub last_sequence: u64,
}

/// What the sensor states may take together unless configured
/// (`[spool] max_state_bytes`): a real host's come to tens of KiB, and the
/// largest a sensor keeps (odd names, 100,000 paths each kind) to ~30 MiB.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// The spool. Share it behind an `Arc`.
pub struct Spool {
    dir: PathBuf,
    batches_dir: PathBuf,
    states_dir: PathBuf,
    max_bytes: u64,
    /// What the sensor states may take on disk, together (apart from `max_bytes`).
    max_state_bytes: u64,
    /// The filesystem's allocation unit: every file takes whole blocks.
    block: u64,
    /// Highest sequence known to be on disk: only these may be sent. A batch
    /// written but whose directory entry is not yet synced could be lost by a
    /// crash after the collector stored it; the restarted agent would then
    /// report its events again under new sequence numbers.
    durable_seq: AtomicU64,
    /// Serialises appends and acknowledgements; held only for file calls, never across `.await`.
    state: Mutex<State>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` with a cap on the space its
    /// batches take, and [`DEFAULT_MAX_STATE_BYTES`] for the sensor states.
    /// A spool of an earlier version (a sled database) is carried over.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        Self::open_with(dir, max_bytes, DEFAULT_MAX_STATE_BYTES)
    }

    /// [`Spool::open`] with a bound of its own for the sensor states.
    pub fn open_with(dir: &Path, max_bytes: u64, max_state_bytes: u64) -> Result<Self, SpoolError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| SpoolError::Io(p, e)
        };
        // Telemetry is sensitive: the spool is for the agent's eyes only.
        private_dir(dir).map_err(io(dir))?;
        let batches_dir = dir.join(BATCHES);
        let states_dir = dir.join(STATES);
        private_dir(&batches_dir).map_err(io(&batches_dir))?;
        private_dir(&states_dir).map_err(io(&states_dir))?;
        let block = fs::metadata(&batches_dir)
            .map_err(io(&batches_dir))?
            .blksize()
            .clamp(512, 1 << 16);
        let mut spool = Self {
            dir: dir.to_owned(),
            batches_dir,
            states_dir,
            max_bytes,
            max_state_bytes,
            block,
            durable_seq: AtomicU64::new(0),
            state: Mutex::new(State {
                last_seq: 0,
                handed_out: 0,
                written_last_seq: 0,
                dirty_batches: false,
                dirty_states: false,
                batches: BTreeMap::new(),
                order: BTreeSet::new(),
                batch_bytes: 0,
                states: BTreeMap::new(),
            }),
        };
        if dir.join("conf").exists() && dir.join("db").exists() {
            spool.migrate_sled()?;
        }
        spool.recover()?;
        Ok(spool)
    }

    /// Reads what is on disk into the index, finishing what a crash cut short.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Sensor states.
        for (path, name) in entries(&self.states_dir)? {
            if is_temporary(&name) {
                remove(&path)?;
                continue;
            }
            let Some(sensor) = unhex(&name) else {
                continue;
            };
            let bytes = fs::read(&path).map_err(|e| SpoolError::Io(path.clone(), e))?;
            let covered = bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let saved = SavedState {
                on_disk: on_disk(bytes.len() as u64, self.block),
                covered,
                digest: digest(bytes.get(8..).unwrap_or_default()),
            };
            state.states.insert(sensor, saved);
        }
        state.last_seq = fs::read(self.dir.join(LAST_SEQ))
            .ok()
            .and_then(|b| b.as_slice().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        state.written_last_seq = state.last_seq;
        // Batches: headers only.
        let mut found = BTreeMap::new();
        for (path, name) in entries(&self.batches_dir)? {
            if is_temporary(&name) {
                remove(&path)?;
                continue;
            }
            let Ok(seq) = u64::from_str_radix(&name, 16) else {
                continue;
            };
            let file = File::open(&path).map_err(|e| SpoolError::Io(path.clone(), e))?;
            let size = file
                .metadata()
                .map_err(|e| SpoolError::Io(path.clone(), e))?
                .len();
            match Header::read(&mut io::BufReader::new(file))
                .map_err(|e| SpoolError::Io(path.clone(), e))?
            {
                Some(header) => {
                    found.insert(seq, (header, size));
                }
                None => {
                    tracing::error!(spool.sequence = seq, bytes = size, path = %path.display(), "Spool batch unreadable (disk corruption?); removed");
                    remove(&path)?;
                }
            }
            state.last_seq = state.last_seq.max(seq);
        }
        // A loss report on disk: whatever it counts is gone, even if a crash
        // came before the removal.
        let dropped: Vec<u64> = found
            .values()
            .flat_map(|(h, _)| h.drops.iter().copied())
            .filter(|s| found.contains_key(s))
            .collect();
        for seq in dropped {
            remove(&self.batches_dir.join(batch_name(seq)))?;
            found.remove(&seq);
        }
        // A sweep whose sensor state was never written: cut short by a crash.
        let cut: Vec<u64> = found
            .iter()
            .filter(|(_, (h, _))| {
                h.sweep.as_ref().is_some_and(|(sensor, end)| {
                    state
                        .states
                        .get(sensor)
                        .is_none_or(|saved| saved.covered < *end)
                })
            })
            .map(|(seq, _)| *seq)
            .collect();
        if !cut.is_empty() {
            tracing::warn!(
                batches = cut.len(),
                "Removed the batches of a sweep cut short by a crash; its sensor reports them again"
            );
        }
        for seq in cut {
            remove(&self.batches_dir.join(batch_name(seq)))?;
            found.remove(&seq);
        }
        for (seq, (header, size)) in found {
            let held = Held {
                severity: header.severity,
                on_disk: on_disk(size, self.block),
                report: header.report,
            };
            state.batch_bytes += held.on_disk;
            state.order.insert((held.severity, seq));
            state.batches.insert(seq, held);
        }
        self.durable_seq = AtomicU64::new(state.last_seq);
        Ok(())
    }

    /// Carries a spool of an earlier version (one sled tree, `spool`) over into
    /// files, then removes it. Safe to repeat if interrupted: the same sequences
    /// are written again.
    fn migrate_sled(&self) -> Result<(), SpoolError> {
        let config = sled::Config::new().path(&self.dir);
        // sled releases its file lock from a background thread after the last
        // handle is dropped: wait a moment for it instead of failing.
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
        let (mut batches, mut last) = (0u64, 0u64);
        for item in tree.iter() {
            let (k, v) = item?;
            match k.first() {
                Some(b'B') if k.len() == 9 && v.len() >= 5 => {
                    let seq = u64::from_be_bytes(k[1..].try_into().unwrap_or([0; 8]));
                    let header = Header {
                        report: false,
                        severity: v[0],
                        count: u32::from_be_bytes(v[1..5].try_into().unwrap_or([0; 4])),
                        sweep: None,
                        drops: Vec::new(),
                    };
                    let path = self.batches_dir.join(batch_name(seq));
                    write_file(&path, &header.encode(&v[5..]))?;
                    batches += 1;
                    last = last.max(seq);
                }
                Some(b'T') => {
                    let name = String::from_utf8_lossy(&k[1..]).into_owned();
                    let mut bytes = 0u64.to_be_bytes().to_vec();
                    bytes.extend_from_slice(&v);
                    write_file(&self.states_dir.join(bannin_proto::hex(&name)), &bytes)?;
                }
                Some(b'M') if v.len() == 8 => {
                    last = last.max(u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])));
                }
                _ => {}
            }
        }
        write_file(&self.dir.join(LAST_SEQ), &last.to_be_bytes())?;
        for d in [&self.batches_dir, &self.states_dir, &self.dir] {
            sync_dir(d)?;
        }
        drop(tree);
        drop(db);
        for (path, name) in entries(&self.dir)? {
            let sled_file = name == "conf" || name == "db" || name.starts_with("snap.");
            if sled_file {
                remove(&path)?;
            } else if name == "blobs" {
                fs::remove_dir_all(&path).map_err(|e| SpoolError::Io(path.clone(), e))?;
            }
        }
        tracing::info!(
            batches,
            last_sequence = last,
            "Spool carried over from the earlier (sled) format"
        );
        Ok(())
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
            bytes: s.batch_bytes,
            batches: s.batches.len() as u64,
            last_sequence: s.last_seq,
        }
    }

    /// Space the spool takes on disk beyond its batches and its sensor
    /// states: its directories and the `last_seq` file.
    fn fixed_bytes(&self) -> u64 {
        let dirs: u64 = [&self.dir, &self.batches_dir]
            .iter()
            .filter_map(|d| fs::metadata(d).ok())
            .map(|m| m.blocks() * 512)
            .sum();
        dirs + on_disk(8, self.block)
    }

    /// What the sensor states take on disk, their directory included, with
    /// `replacing` (a sensor and its new state's length) in place of its old one.
    fn state_bytes(&self, state: &State, replacing: Option<(&str, usize)>) -> u64 {
        let dir = fs::metadata(&self.states_dir).map_or(0, |m| m.blocks() * 512);
        let states: u64 = state
            .states
            .iter()
            .filter(|(name, _)| replacing.is_none_or(|(r, _)| r != name.as_str()))
            .map(|(_, saved)| saved.on_disk)
            .sum();
        let new = replacing.map_or(0, |(_, len)| on_disk(8 + len as u64, self.block));
        dir + states + new
    }

    /// Spools `events` as the next batch; returns its sequence, or `None` if the
    /// batch itself was the one dropped for space (and its loss reported).
    pub fn append(&self, events: Vec<v1::Event>) -> Result<Option<u64>, SpoolError> {
        Ok(self.append_sweep(vec![events], None)?.pop().flatten())
    }

    /// Spools one sensor sweep: each chunk as the next batch, then the sensor's
    /// new state (`name`, bytes), so that after a crash either both the events
    /// and the state that says they were reported exist, or neither does (see
    /// the module documentation). Returns each chunk's sequence (`None` if
    /// dropped for space).
    pub fn append_sweep(
        &self,
        chunks: Vec<Vec<v1::Event>>,
        state: Option<(&str, Vec<u8>)>,
    ) -> Result<Vec<Option<u64>>, SpoolError> {
        let mut guard = self.lock();
        let fixed = self.fixed_bytes();
        let mut used = guard.batch_bytes + fixed;
        let mut last = guard.last_seq;
        let mut loss = Loss::default();
        let mut victims: Vec<(u8, u64)> = Vec::new();
        let mut kept: Vec<(u64, Header, Vec<u8>)> = Vec::new();
        let mut assigned = Vec::with_capacity(chunks.len());
        // Victims come only from batches already on disk, in drop order, never twice.
        let mut order = guard.order.iter().copied();
        let tag = state.as_ref().map_or(0, |(name, _)| name.len());
        let report_room = |victims: usize| on_disk(1024 + 8 * victims as u64, self.block);
        for events in chunks {
            if events.is_empty() {
                assigned.push(None);
                continue;
            }
            let severity = severity_byte(events.iter().map(|e| e.severity).max().unwrap_or(0));
            let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
            let seq = last + 1;
            let body = v1::TelemetryBatch::from_events(seq, &events).encode_to_vec();
            let header = Header {
                report: false,
                severity,
                count,
                sweep: None,
                drops: Vec::new(),
            };
            let need = on_disk(
                (header.encode(&[]).len() + tag + body.len()) as u64,
                self.block,
            );
            let mut fits = true;
            // Drop lowest-severity, oldest batches until the new one fits.
            while used + need + report_room(victims.len() + 1) > self.max_bytes {
                let Some((vsev, vseq)) = order.next() else {
                    fits = false;
                    break;
                };
                if vsev > severity {
                    // Everything left outranks the new batch: it is the one to go.
                    fits = false;
                    break;
                }
                let held = guard.batches.get(&vseq).copied();
                let on = held.map_or(0, |h| h.on_disk);
                self.count_dropped(&mut loss, vseq, vsev, on);
                used -= on;
                victims.push((vsev, vseq));
            }
            if fits {
                last = seq;
                used += need;
                kept.push((seq, header, body));
                assigned.push(Some(seq));
            } else {
                loss.add_batch(severity, count, &body, need);
                assigned.push(None);
            }
        }
        drop(order);
        // The sweep's batches name it, so a crash before its state is written
        // takes them back (see `recover`).
        let sweep_end = kept.last().map(|(seq, ..)| *seq);
        if let (Some((name, _)), Some(end)) = (&state, sweep_end) {
            for (_, header, _) in &mut kept {
                header.sweep = Some(((*name).to_owned(), end));
            }
        }
        let mut written = Vec::with_capacity(kept.len());
        for (seq, header, body) in kept {
            let bytes = header.encode(&body);
            write_file(&self.batches_dir.join(batch_name(seq)), &bytes)?;
            written.push((
                seq,
                header.severity,
                on_disk(bytes.len() as u64, self.block),
                false,
            ));
        }
        guard.dirty_batches |= !written.is_empty();
        let mut report = None;
        if loss.batches > 0 {
            // Earlier reports the link has not yet been given fold into this one:
            // one report however long the collector stays away, not one per drop.
            let earlier: Vec<(u64, Held)> = guard
                .batches
                .range(guard.handed_out + 1..)
                .filter(|(seq, h)| h.report && !victims.iter().any(|(_, v)| v == *seq))
                .map(|(seq, h)| (*seq, *h))
                .collect();
            for (seq, held) in earlier {
                self.count_dropped(&mut loss, seq, held.severity, held.on_disk);
                victims.push((held.severity, seq));
            }
            last += 1;
            let body = v1::TelemetryBatch::from_events(last, &[loss_event(&loss)]).encode_to_vec();
            let header = Header {
                report: true,
                severity: severity_byte(Severity::High as i32),
                count: 1,
                sweep: None,
                drops: victims.iter().map(|(_, seq)| *seq).collect(),
            };
            tracing::warn!(
                dropped.batches = loss.batches,
                dropped.events = loss.events,
                dropped.bytes = loss.bytes,
                "Spool full: dropped the lowest-severity, oldest telemetry"
            );
            // On disk, with the new batches, before anything it counts is removed
            // (the newest sequence on disk is never lost with them).
            let bytes = header.encode(&body);
            write_file(&self.batches_dir.join(batch_name(last)), &bytes)?;
            sync_dir(&self.batches_dir)?;
            report = Some((
                last,
                header.severity,
                on_disk(bytes.len() as u64, self.block),
                true,
            ));
        }
        if let Some((name, value)) = state {
            // A sweep that spooled nothing leaves the sweep mark where it was:
            // an unchanged state is then not written again.
            let covered = if written.is_empty() && report.is_none() {
                guard.states.get(name).map_or(last, |s| s.covered)
            } else {
                last
            };
            self.write_state(&mut guard, name, &value, covered)?;
        }
        let removed_any = !victims.is_empty();
        for (sev, seq) in victims {
            remove(&self.batches_dir.join(batch_name(seq)))?;
            if let Some(held) = guard.batches.remove(&seq) {
                guard.batch_bytes -= held.on_disk;
            }
            guard.order.remove(&(sev, seq));
        }
        if removed_any {
            // The removals are durable before a later report can fold this one
            // (and its list of what it counts) away.
            sync_dir(&self.batches_dir)?;
        }
        for (seq, severity, on_disk, report) in written.into_iter().chain(report) {
            guard.batches.insert(
                seq,
                Held {
                    severity,
                    on_disk,
                    report,
                },
            );
            guard.order.insert((severity, seq));
            guard.batch_bytes += on_disk;
        }
        guard.last_seq = last;
        Ok(assigned)
    }

    /// Counts a batch about to be dropped (reading it for its events).
    fn count_dropped(&self, loss: &mut Loss, seq: u64, severity: u8, on_disk: u64) {
        let path = self.batches_dir.join(batch_name(seq));
        let read = File::open(&path).and_then(|f| {
            let mut r = io::BufReader::new(f);
            let header = Header::read(&mut r)?;
            let mut body = Vec::new();
            r.read_to_end(&mut body)?;
            Ok(header.map(|h| (h, body)))
        });
        match read {
            Ok(Some((h, body))) => loss.add_batch(h.severity, h.count, &body, on_disk),
            _ => loss.add_batch(severity, 0, &[], on_disk),
        }
    }

    fn write_state(
        &self,
        state: &mut State,
        name: &str,
        value: &[u8],
        covered: u64,
    ) -> Result<(), SpoolError> {
        let digest = digest(value);
        if state
            .states
            .get(name)
            .is_some_and(|s| s.digest == digest && s.covered == covered)
        {
            return Ok(());
        }
        let would_take = self.state_bytes(state, Some((name, value.len())));
        if would_take > self.max_state_bytes {
            // Not saved: the sensor keeps it in memory, and after a restart
            // reports again what this sweep reported (see the module docs).
            tracing::warn!(
                sensor = name,
                state.bytes = value.len(),
                states.would_take = would_take,
                states.max_bytes = self.max_state_bytes,
                "Sensor state not saved: the sensor states would pass their bound (spool.max_state_bytes)"
            );
            return Ok(());
        }
        let mut bytes = covered.to_be_bytes().to_vec();
        bytes.extend_from_slice(value);
        write_file(&self.states_dir.join(bannin_proto::hex(name)), &bytes)?;
        let saved = SavedState {
            on_disk: on_disk(bytes.len() as u64, self.block),
            covered,
            digest,
        };
        state.states.insert(name.to_owned(), saved);
        state.dirty_states = true;
        Ok(())
    }

    /// Saves a named state on its own (not tied to a sweep) and flushes it.
    pub fn put_state(&self, name: &str, value: Vec<u8>) -> Result<(), SpoolError> {
        {
            let mut state = self.lock();
            let covered = state.states.get(name).map_or(0, |s| s.covered);
            self.write_state(&mut state, name, &value, covered)?;
        }
        self.flush()
    }

    /// The state sensor `name` saved with its last sweep.
    pub fn sensor_state(&self, name: &str) -> Result<Option<Vec<u8>>, SpoolError> {
        let path = self.states_dir.join(bannin_proto::hex(name));
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes.get(8..).unwrap_or_default().to_vec())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SpoolError::Io(path, e)),
        }
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
            state.last_seq = sequence;
            self.write_last_seq(&mut state)?;
        }
        Ok(())
    }

    fn write_last_seq(&self, state: &mut State) -> Result<(), SpoolError> {
        if state.written_last_seq < state.last_seq {
            write_file(&self.dir.join(LAST_SEQ), &state.last_seq.to_be_bytes())?;
            sync_dir(&self.dir)?;
            state.written_last_seq = state.last_seq;
        }
        Ok(())
    }

    /// Removes every batch up to and including `sequence`; returns how many.
    pub fn acknowledge(&self, sequence: u64) -> Result<u64, SpoolError> {
        let mut state = self.lock();
        let done: Vec<(u64, Held)> = state
            .batches
            .range(..=sequence)
            .map(|(s, h)| (*s, *h))
            .collect();
        // The newest batch on disk tells a restarted spool where sequences stand:
        // before it goes, the `last_seq` file says so.
        if done.last().map(|(s, _)| *s) == state.batches.keys().next_back().copied() {
            self.write_last_seq(&mut state)?;
        }
        for (seq, held) in &done {
            remove(&self.batches_dir.join(batch_name(*seq)))?;
            state.batches.remove(seq);
            state.order.remove(&(held.severity, *seq));
            state.batch_bytes -= held.on_disk;
        }
        Ok(done.len() as u64)
    }

    /// Up to `max` durable spooled batches with a sequence of at least `from`, in order.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<v1::TelemetryBatch>, SpoolError> {
        let durable = self.durable_seq.load(Ordering::Acquire);
        if from > durable {
            return Ok(Vec::new());
        }
        let sequences: Vec<u64> = {
            let mut state = self.lock();
            let sequences: Vec<u64> = state
                .batches
                .range(from..=durable)
                .take(max)
                .map(|(s, _)| *s)
                .collect();
            if let Some(last) = sequences.last() {
                state.handed_out = state.handed_out.max(*last);
            }
            sequences
        };
        let mut out = Vec::with_capacity(sequences.len());
        for sequence in sequences {
            let path = self.batches_dir.join(batch_name(sequence));
            let file = match File::open(&path) {
                Ok(f) => f,
                // Acknowledged (or dropped) since the index was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SpoolError::Io(path, e)),
            };
            let mut r = io::BufReader::new(file);
            let corrupt = |reason: &str| SpoolError::Corrupt {
                sequence,
                reason: reason.to_owned(),
            };
            Header::read(&mut r)
                .map_err(|e| SpoolError::Io(path.clone(), e))?
                .ok_or_else(|| corrupt("bad header"))?;
            let mut body = Vec::new();
            r.read_to_end(&mut body)
                .map_err(|e| SpoolError::Io(path.clone(), e))?;
            let batch =
                v1::TelemetryBatch::decode(body.as_slice()).map_err(|e| corrupt(&e.to_string()))?;
            out.push(batch);
        }
        Ok(out)
    }

    /// Makes everything spooled durable (and so sendable).
    pub fn flush(&self) -> Result<(), SpoolError> {
        let mut state = self.lock();
        let target = state.last_seq;
        if state.dirty_batches {
            sync_dir(&self.batches_dir)?;
            state.dirty_batches = false;
        }
        if state.dirty_states {
            sync_dir(&self.states_dir)?;
            state.dirty_states = false;
        }
        self.durable_seq.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Space a file of `len` bytes takes: whole blocks.
fn on_disk(len: u64, block: u64) -> u64 {
    len.div_ceil(block) * block
}

fn batch_name(seq: u64) -> String {
    format!("{seq:016x}")
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The entries of `dir`: path and name (names that are not UTF-8 are skipped).
fn entries(dir: &Path) -> Result<Vec<(PathBuf, String)>, SpoolError> {
    let io = |e| SpoolError::Io(dir.to_owned(), e);
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((entry.path(), name));
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it,
/// synced, then renamed over it (the directory is synced by the caller).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |e| SpoolError::Io(path.to_owned(), e);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_data().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::Io(dir.to_owned(), e))
}

fn remove(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SpoolError::Io(path.to_owned(), e)),
        _ => Ok(()),
    }
}

/// Creates `dir` if needed and makes it accessible to its owner only.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn severity_byte(sev: i32) -> u8 {
    u8::try_from(sev.clamp(0, 255)).unwrap_or(0)
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
    /// Counts one dropped batch: its severity, event count and `TelemetryBatch`
    /// bytes, and what it took on disk.
    fn add_batch(&mut self, severity: u8, count: u32, body: &[u8], on_disk: u64) {
        let events = v1::TelemetryBatch::decode(body)
            .ok()
            .and_then(|b| b.decode_events().ok());
        match events {
            // An earlier loss report dropped for space: its numbers carry forward,
            // exactly, into the new one.
            Some(events) if events.len() == 1 && events[0].kind == DATA_LOSS_KIND => {
                let a = &events[0].attributes;
                let num = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                self.batches += num("dropped_batches");
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
                self.batches += 1;
                self.bytes += on_disk;
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
                self.batches += 1;
                self.bytes += on_disk;
                let n = u64::from(count);
                self.events += n;
                let sev = i32::from(severity);
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
        let reports: Vec<v1::Event> = all
            .iter()
            .flat_map(|(_, events)| events)
            .filter(|e| e.kind == DATA_LOSS_KIND)
            .cloned()
            .collect();
        assert!(!reports.is_empty(), "loss is reported");
        let dropped = dropped(&reports);
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
        let (kept, reports) = kept_and_reports(&spool);
        assert!(!reports.is_empty());
        let dropped = dropped(&reports);
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

    /// Space `dir` takes on disk, as `du` counts it: blocks of every file and directory.
    fn du(dir: &Path) -> u64 {
        let mut total = fs::symlink_metadata(dir).map_or(0, |m| m.blocks() * 512);
        for entry in fs::read_dir(dir).expect("read_dir").flatten() {
            let meta = entry.metadata().expect("stat");
            total += if meta.is_dir() {
                du(&entry.path())
            } else {
                meta.blocks() * 512
            };
        }
        total
    }

    /// What the spool holds: test events kept, and its loss reports.
    fn kept_and_reports(spool: &Spool) -> (u64, Vec<v1::Event>) {
        let all: Vec<v1::Event> = spool
            .read_from(0, 1_000_000)
            .expect("read")
            .iter()
            .flat_map(|b| b.decode_events().expect("decodes"))
            .collect();
        let kept = all.iter().filter(|e| e.kind == "test").count() as u64;
        let reports = all
            .into_iter()
            .filter(|e| e.kind == DATA_LOSS_KIND)
            .collect();
        (kept, reports)
    }

    /// Events the reports count as dropped.
    fn dropped(reports: &[v1::Event]) -> u64 {
        reports
            .iter()
            .map(|e| {
                e.attributes["dropped_events"]
                    .parse::<u64>()
                    .expect("number")
            })
            .sum()
    }

    fn kept_and_reported(spool: &Spool) -> (u64, u64) {
        let (kept, reports) = kept_and_reports(spool);
        (kept, dropped(&reports))
    }

    #[test]
    fn a_sensor_state_larger_than_the_spool_never_crowds_out_a_finding() {
        // 20,000 odd file names made the odd-name state 1.7 MB, over a 1 MiB
        // spool: every later batch was dropped, a dropped executable too.
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = 1024 * 1024;
        let spool = Spool::open_with(dir.path(), cap, 8 * cap).expect("open");
        let big_state = vec![b'x'; 1_700_000];
        let seqs = spool
            .append_sweep(
                vec![events(1, Severity::High, 100)],
                Some(("file_odd_name", big_state.clone())),
            )
            .expect("append");
        assert!(seqs[0].is_some(), "the high-severity batch is kept");
        assert_eq!(
            spool.sensor_state("file_odd_name").expect("read"),
            Some(big_state.clone()),
            "the state is saved, apart from the batches' cap"
        );
        spool.flush().expect("flush");
        let (kept, reported) = kept_and_reported(&spool);
        assert_eq!((kept, reported), (1, 0), "nothing dropped");
        // A state past its own bound is not saved; the batch still is.
        let small = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open_with(small.path(), cap, cap).expect("open");
        let seqs = spool
            .append_sweep(
                vec![events(1, Severity::High, 100)],
                Some(("file_odd_name", big_state)),
            )
            .expect("append");
        assert!(seqs[0].is_some());
        assert_eq!(spool.sensor_state("file_odd_name").expect("read"), None);
        spool.flush().expect("flush");
        assert!(du(small.path().join(STATES).as_path()) <= cap);
    }

    #[test]
    fn the_cap_bounds_what_the_spool_takes_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = 1024 * 1024;
        let spool = Spool::open(dir.path(), cap).expect("open");
        spool.put_state("sensor", vec![7u8; 20_000]).expect("state");
        let mut appended = 0u64;
        // Small batches (a block each on disk, whatever their length) and large ones.
        for round in 0..3000u64 {
            let (n, pad) = if round % 10 == 0 { (20, 3000) } else { (1, 10) };
            spool
                .append_sweep(
                    vec![events(n, Severity::Low, pad)],
                    Some(("sensor", vec![1u8; 100])),
                )
                .expect("append");
            appended += n as u64;
            if round % 100 == 0 {
                spool.flush().expect("flush");
                let used = du(dir.path()) - du(&dir.path().join(STATES));
                let st = spool.stats();
                let fixed = spool.fixed_bytes() + spool.state_bytes(&spool.lock(), None);
                assert!(
                    used <= cap,
                    "round {round}: {used} bytes on disk, cap {cap}; accounted {} + {fixed}, {} batches, batches dir {}",
                    st.bytes,
                    st.batches,
                    du(&dir.path().join(BATCHES))
                );
            }
        }
        spool.flush().expect("flush");
        let used = du(dir.path()) - du(&dir.path().join(STATES));
        assert!(used <= cap, "{used} bytes on disk, cap {cap}");
        assert!(used > cap / 2, "the cap is used, not wasted: {used}");
        let (kept, reported) = kept_and_reported(&spool);
        assert_eq!(kept + reported, appended, "every event kept or counted");
    }

    #[test]
    fn a_sweep_cut_short_by_a_crash_is_taken_back_with_its_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_file = dir.path().join(STATES).join(bannin_proto::hex("fim"));
        {
            let spool = Spool::open(dir.path(), 1 << 30).expect("open");
            spool
                .append_sweep(
                    vec![events(2, Severity::Low, 1)],
                    Some(("fim", b"one".to_vec())),
                )
                .expect("first sweep");
            spool.flush().expect("flush");
            let after_first = fs::read(&state_file).expect("state");
            spool
                .append_sweep(
                    vec![events(2, Severity::Low, 1), events(2, Severity::Low, 1)],
                    Some(("fim", b"two".to_vec())),
                )
                .expect("second sweep");
            spool.flush().expect("flush");
            // The crash: the second sweep's batches reached the disk, its state did not.
            fs::write(&state_file, after_first).expect("rewind the state");
        }
        let spool = Spool::open(dir.path(), 1 << 30).expect("reopen");
        assert_eq!(
            spool.sensor_state("fim").expect("state"),
            Some(b"one".to_vec())
        );
        let left: Vec<u64> = spool
            .read_from(0, 100)
            .expect("read")
            .iter()
            .map(|b| b.sequence)
            .collect();
        assert_eq!(
            left,
            vec![1],
            "only the first sweep, whose state was written"
        );
        assert_eq!(
            spool.append(events(1, Severity::Low, 1)).expect("append"),
            Some(4),
            "sequences of the taken-back sweep are not reused"
        );
    }

    #[test]
    fn what_a_loss_report_counts_is_gone_even_if_a_crash_kept_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = 1024 * 1024;
        let batches = dir.path().join(BATCHES);
        let mut appended = 0;
        let restored = {
            let spool = Spool::open(dir.path(), cap).expect("open");
            // Nearly full; then one large batch that can only fit by dropping.
            while spool.stats().bytes < cap - 100_000 {
                spool
                    .append(events(1, Severity::Info, 50_000))
                    .expect("append");
                appended += 1;
            }
            spool.flush().expect("flush");
            // Every batch as it is before the last overflow.
            let before: Vec<(PathBuf, Vec<u8>)> = entries(&batches)
                .expect("list")
                .into_iter()
                .map(|(path, _)| {
                    let bytes = fs::read(&path).expect("read");
                    (path, bytes)
                })
                .collect();
            spool
                .append(events(1, Severity::Info, 200_000))
                .expect("append");
            appended += 1;
            spool.flush().expect("flush");
            // The crash: the report reached the disk, the removals it counts did not.
            let mut restored = 0;
            for (path, bytes) in before {
                if !path.exists() {
                    fs::write(&path, bytes).expect("put it back");
                    restored += 1;
                }
            }
            restored
        };
        assert!(restored > 0, "the last append dropped something");
        let spool = Spool::open(dir.path(), cap).expect("reopen");
        let (kept, reported) = kept_and_reported(&spool);
        assert!(reported > 0);
        assert_eq!(
            kept + reported,
            appended,
            "what the report counts is removed again at open, not kept as well"
        );
    }

    #[test]
    fn an_unreadable_batch_is_removed_and_the_rest_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(dir.path(), 1 << 30).expect("open");
            for _ in 0..3 {
                spool.append(events(1, Severity::Low, 1)).expect("append");
            }
            spool.flush().expect("flush");
        }
        fs::write(dir.path().join(BATCHES).join(batch_name(2)), b"garbage").expect("corrupt");
        fs::write(
            dir.path().join(BATCHES).join(".0000000000000009.tmp"),
            b"half",
        )
        .expect("tmp");
        let spool = Spool::open(dir.path(), 1 << 30).expect("reopen");
        let left: Vec<u64> = spool
            .read_from(0, 100)
            .expect("read")
            .iter()
            .map(|b| b.sequence)
            .collect();
        assert_eq!(left, vec![1, 3]);
        assert!(
            !dir.path()
                .join(BATCHES)
                .join(".0000000000000009.tmp")
                .exists()
        );
    }

    #[test]
    fn a_spool_of_the_sled_format_is_carried_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = sled::Config::new().path(dir.path()).open().expect("sled");
            let tree = db.open_tree("spool").expect("tree");
            for seq in [7u64, 8] {
                let batch = v1::TelemetryBatch::from_events(seq, &events(2, Severity::High, 3));
                let mut record = vec![Severity::High as u8];
                record.extend_from_slice(&2u32.to_be_bytes());
                record.extend_from_slice(&batch.encode_to_vec());
                let mut key = vec![b'B'];
                key.extend_from_slice(&seq.to_be_bytes());
                tree.insert(key, record).expect("insert");
            }
            tree.insert(b"Tfim", b"baseline".to_vec()).expect("state");
            tree.insert(b"Mlast_seq", &9u64.to_be_bytes())
                .expect("last");
            db.flush().expect("flush");
        }
        let spool = Spool::open(dir.path(), 1 << 30).expect("open");
        let left: Vec<(u64, usize)> = spool
            .read_from(0, 100)
            .expect("read")
            .iter()
            .map(|b| (b.sequence, b.decode_events().expect("decodes").len()))
            .collect();
        assert_eq!(left, vec![(7, 2), (8, 2)]);
        assert_eq!(
            spool.sensor_state("fim").expect("state"),
            Some(b"baseline".to_vec())
        );
        assert_eq!(
            spool.append(events(1, Severity::Low, 1)).expect("append"),
            Some(10)
        );
        assert!(!dir.path().join("db").exists() && !dir.path().join("conf").exists());
    }

    #[test]
    fn an_unchanged_state_after_an_empty_sweep_is_not_written_again() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), 1 << 30).expect("open");
        let file = dir.path().join(STATES).join(bannin_proto::hex("proc"));
        let inode = || fs::metadata(&file).expect("state file").ino();
        spool
            .append_sweep(
                vec![events(1, Severity::Low, 1)],
                Some(("proc", b"a".to_vec())),
            )
            .expect("sweep");
        let first = inode();
        spool
            .append_sweep(vec![vec![]], Some(("proc", b"a".to_vec())))
            .expect("idle sweep");
        assert_eq!(inode(), first, "nothing new: not written");
        spool
            .append_sweep(vec![vec![]], Some(("proc", b"b".to_vec())))
            .expect("changed state");
        assert_ne!(inode(), first, "a changed state is written");
        assert_eq!(
            spool.sensor_state("proc").expect("state"),
            Some(b"b".to_vec())
        );
    }

    proptest::proptest! {
        /// A batch file's header, whatever the bytes on disk: parsed or refused,
        /// never a panic, never more than the file holds; and what is written reads back.
        #[test]
        fn fuzz_spool_header(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
                             drops in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..8),
                             name in "[a-z_.]{0,24}", report in proptest::prelude::any::<bool>()) {
            let _ = Header::read(&mut bytes.as_slice());
            let mut tagged = MAGIC.to_vec();
            tagged.extend_from_slice(&bytes);
            if let Ok(Some(h)) = Header::read(&mut tagged.as_slice()) {
                proptest::prop_assert!(h.drops.len() * 8 <= tagged.len());
            }
            let header = Header {
                report,
                severity: 3,
                count: 7,
                sweep: (!name.is_empty()).then(|| (name.clone(), 42)),
                drops,
            };
            let encoded = header.encode(b"body");
            let mut r = encoded.as_slice();
            proptest::prop_assert_eq!(Header::read(&mut r).expect("read"), Some(header));
            proptest::prop_assert_eq!(r, b"body".as_slice());
        }

        /// A spool whose batch file holds arbitrary bytes opens: the file is
        /// removed (or read, if it happens to parse), nothing panics.
        #[test]
        fn fuzz_spool_open_with_arbitrary_batch_file(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::create_dir_all(dir.path().join(BATCHES)).expect("dir");
            fs::write(dir.path().join(BATCHES).join(batch_name(5)), &bytes).expect("write");
            let spool = Spool::open(dir.path(), 1 << 20).expect("opens");
            let _ = spool.read_from(0, 10);
            proptest::prop_assert_eq!(spool.append(events(1, Severity::Low, 1)).expect("append"), Some(6));
        }
    }
}
