//! The collector's durable store: one sled database under the data directory.
//!
//! Nothing outside this module names a sled tree or a key layout. Record kinds
//! live in their own files ([`findings`], [`events`], [`hosts`], [`commands`],
//! [`actions`], [`evidence`], [`incidents`], [`operators`], [`identity`]); this file owns
//! opening, the atomic [`WriteSet`], and durability.
//!
//! # Layout
//!
//! Tree `records` holds everything that must change atomically when a batch is
//! ingested, under one-byte prefixes:
//!
//! | key | value |
//! |---|---|
//! | `S` host-id | highest stored sequence of the host (u64, big endian) |
//! | `E` host-id `\0` sequence(u64 BE) chunk(u16 BE) | received time (i64 BE), then some of the batch's [`crate::model::Event`]s (postcard); see [`events`] |
//! | `F` id(u64 BE) | [`crate::model::Finding`] (postcard) |
//! | `M` name | counters (u64 BE) |
//! | `X` block(u64 BE) | what the block's findings may hold; see [`finding_index`] |
//! | `I` day … | the event search index; see [`search`] |
//!
//! Tree `hosts` holds [`crate::model::HostRecord`]s by host id; it is inventory,
//! rewritten on every hello, and need not be atomic with ingest; tree `labels`
//! holds each host's [`crate::model::HostLabels`] beside it. Trees
//! `commands` (by id) and `isolation` (desired state by host id) are in
//! [`commands`]; `actions` (the action log, by id) in [`actions`]; `evidence`,
//! `incidents` and `operators` in files of those names. Trees `tokens` (enrollment
//! tokens by id) and `revoked` (revoked hosts by id) are in [`identity`].
//!
//! # Durability
//!
//! [`Store::make_durable`] flushes sled, then `fdatasync`s sled's data file:
//! sled 0.34 flushes with `sync_file_range`, which does not flush the drive's
//! write cache (sled issue 1452). Only after it returns may a batch be acknowledged.

mod actions;
mod commands;
mod events;
mod evidence;
mod finding_index;
mod findings;
mod hosts;
mod hunts;
mod identity;
mod incidents;
pub(crate) mod legacy;
mod operators;
pub mod search;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use events::{EventQuery, encode_event_chunks, encode_events};
pub use finding_index::FindingNeeds;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be encoded or decoded.
    #[error("store record {key}: {source}")]
    Codec {
        /// Printable key of the record.
        key: String,
        /// Why.
        #[source]
        source: postcard::Error,
    },
    /// A counter or high-water value had the wrong length.
    #[error("store value at {0} is corrupt")]
    Corrupt(String),
    /// The data file could not be opened or synced.
    #[error("store data file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

const PREFIX_HIGH_WATER: u8 = b'S';
const PREFIX_EVENT: u8 = b'E';
const PREFIX_FINDING: u8 = b'F';
const PREFIX_META: u8 = b'M';
const PREFIX_INDEX: u8 = b'I';
const PREFIX_FINDING_INDEX: u8 = b'X';

/// The collector's store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    records: sled::Tree,
    hosts: sled::Tree,
    commands: sled::Tree,
    /// Ids of the commands not finished yet (pending or delivered): what
    /// delivery and expiry look at, however long the queue's history.
    open_commands: sled::Tree,
    isolation: sled::Tree,
    actions: sled::Tree,
    operators: sled::Tree,
    evidence: sled::Tree,
    incidents: sled::Tree,
    labels: sled::Tree,
    tokens: sled::Tree,
    revoked: sled::Tree,
    /// Host id → the public keys (SHA-256 hex, postcard list) its certificates carried.
    host_keys: sled::Tree,
    /// Revoked public key (SHA-256 hex) → the host id it was revoked as.
    revoked_keys: sled::Tree,
    /// Action log entries waiting for the journal to order them (key: an
    /// outbox id, increasing).
    action_outbox: sled::Tree,
    /// Hunts by id, and their answers by (hunt, host).
    hunts: sled::Tree,
    hunt_answers: sled::Tree,
    /// Set when [`Store::append_action`] writes to the outbox;
    /// notified at every entry.
    outbox: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<tokio::sync::Notify>>>,
    /// Serialises appends to the action log (its hash chain).
    action_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Serialises writes of findings (the index's counts move with them).
    finding_lock: std::sync::Arc<std::sync::Mutex<()>>,
    data_file: std::sync::Arc<(PathBuf, File)>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // Findings and telemetry are sensitive: the store is for the collector's eyes only.
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            // Durability is ours: make_durable() flushes and syncs at every group commit.
            .flush_every_ms(None)
            .open()?;
        let records = db.open_tree("records")?;
        let hosts = db.open_tree("hosts")?;
        let commands = db.open_tree("commands")?;
        let open_commands = db.open_tree("open_commands")?;
        let isolation = db.open_tree("isolation")?;
        let actions = db.open_tree("actions")?;
        let operators = db.open_tree("operators")?;
        let evidence = db.open_tree("evidence")?;
        let incidents = db.open_tree("incidents")?;
        let labels = db.open_tree("labels")?;
        let tokens = db.open_tree("tokens")?;
        let revoked = db.open_tree("revoked")?;
        let host_keys = db.open_tree("host_keys")?;
        let revoked_keys = db.open_tree("revoked_keys")?;
        let action_outbox = db.open_tree("action_outbox")?;
        let hunts = db.open_tree("hunts")?;
        let hunt_answers = db.open_tree("hunt_answers")?;
        let data_path = dir.join("db");
        let data_file = File::open(&data_path).map_err(|source| StoreError::Io {
            path: data_path.clone(),
            source,
        })?;
        let store = Self {
            db,
            records,
            hosts,
            commands,
            open_commands,
            isolation,
            actions,
            operators,
            evidence,
            incidents,
            labels,
            tokens,
            revoked,
            host_keys,
            revoked_keys,
            action_outbox,
            hunts,
            hunt_answers,
            outbox: std::sync::Arc::new(std::sync::OnceLock::new()),
            action_lock: std::sync::Arc::new(std::sync::Mutex::new(())),
            finding_lock: std::sync::Arc::new(std::sync::Mutex::new(())),
            data_file: std::sync::Arc::new((data_path, data_file)),
        };
        store.type_commands()?;
        store.index_open_commands()?;
        store.index_findings()?;
        Ok(store)
    }

    /// Tests: opens the store in `dir` again after a handle was dropped.
    /// sled lets go of its file lock when its last background thread ends, a
    /// moment after the handle is dropped.
    #[cfg(test)]
    pub(crate) fn reopen(dir: &Path) -> Self {
        let mut tries = 0;
        loop {
            match Self::open(dir) {
                Ok(s) => return s,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
    }

    /// Applies a write set atomically. Not durable until [`Store::make_durable`].
    pub fn apply(&self, set: WriteSet) -> Result<(), StoreError> {
        let WriteSet {
            mut batch,
            findings,
            ..
        } = set;
        if findings.is_empty() {
            self.records.apply_batch(batch)?;
            return Ok(());
        }
        let _writing = bannin_proto::lock(&self.finding_lock);
        self.index_changed(&findings, &mut batch)?;
        self.records.apply_batch(batch)?;
        Ok(())
    }

    /// Makes everything applied so far durable: sled flush, then fdatasync of its data file.
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        let (path, file) = &*self.data_file;
        file.sync_data().map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })
    }

    /// Highest stored sequence of every host.
    pub fn high_waters(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.records.scan_prefix([PREFIX_HIGH_WATER]) {
            let (k, v) = item?;
            let host = String::from_utf8_lossy(&k[1..]).into_owned();
            out.push((host.clone(), decode_u64(&v, &host)?));
        }
        Ok(out)
    }

    /// A named counter, 0 when never set.
    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        match self.records.get(meta_key(name))? {
            Some(v) => decode_u64(&v, name),
            None => Ok(0),
        }
    }

    /// A named value (`None` when never set).
    pub fn meta_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(meta_key(name))?.map(|v| v.to_vec()))
    }

    /// Sets a named counter outside the writer's group commits (an export
    /// sink's cursor, owned by that sink alone). Durable at the next flush;
    /// a cursor lost to a crash only means some findings are delivered again.
    pub fn set_counter_now(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.records.insert(meta_key(name), &value.to_be_bytes())?;
        Ok(())
    }

    /// On-disk size of the store in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// A set of writes applied atomically by [`Store::apply`].
#[derive(Default)]
pub struct WriteSet {
    batch: sled::Batch,
    writes: usize,
    /// The findings written, by id: [`Store::apply`] indexes them.
    findings: std::collections::BTreeMap<u64, crate::model::Finding>,
}

impl WriteSet {
    /// Records the highest stored sequence of a host.
    pub fn set_high_water(&mut self, host: &str, sequence: u64) {
        let mut key = Vec::with_capacity(1 + host.len());
        key.push(PREFIX_HIGH_WATER);
        key.extend_from_slice(host.as_bytes());
        self.batch.insert(key, &sequence.to_be_bytes());
        self.writes += 1;
    }

    /// Sets a named counter.
    pub fn set_counter(&mut self, name: &str, value: u64) {
        self.batch.insert(meta_key(name), &value.to_be_bytes());
        self.writes += 1;
    }

    /// Sets a named value.
    pub fn set_meta_bytes(&mut self, name: &str, value: &[u8]) {
        self.batch.insert(meta_key(name), value);
        self.writes += 1;
    }

    /// Number of writes in the set.
    pub fn len(&self) -> usize {
        self.writes
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.writes == 0
    }
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![PREFIX_META];
    key.extend_from_slice(name.as_bytes());
    key
}

fn decode_u64(v: &[u8], what: &str) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt(what.to_owned()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn encode<T: serde::Serialize>(value: &T, key: &str) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(value).map_err(|source| StoreError::Codec {
        key: key.to_owned(),
        source,
    })
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], key: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Codec {
        key: key.to_owned(),
        source,
    })
}
