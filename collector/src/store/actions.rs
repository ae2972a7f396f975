//! The action log (tree `actions`): append-only, each entry hashed with the one
//! before it. The custody log is the same chain.
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::{Action, ChainedAction};

impl Store {
    /// Appends to the action log, chaining the entry to the previous one by hash.
    pub fn append_action(&self, action: &Action) -> Result<u64, StoreError> {
        // One appender at a time, so every entry names its true predecessor.
        let _guard = bannin_proto::lock(&self.action_lock);
        let (seq, prev) = match self.actions.last()? {
            Some((_, v)) => {
                let last: ChainedAction = decode(&v, "action")?;
                (last.seq + 1, last.sha256)
            }
            None => (1, "0".repeat(64)),
        };
        let entry = ChainedAction {
            seq,
            sha256: ChainedAction::compute_hash(seq, action, &prev),
            action: action.clone(),
            prev_sha256: prev,
        };
        self.actions
            .insert(seq.to_be_bytes(), encode(&entry, "action")?)?;
        Ok(seq)
    }

    /// The action log, oldest first.
    pub fn actions(&self) -> Result<Vec<ChainedAction>, StoreError> {
        self.actions
            .iter()
            .values()
            .map(|v| decode(&v?, "action"))
            .collect()
    }

    /// Walks the chain; returns the number of entries, or the first entry that
    /// no longer matches and why.
    pub fn verify_actions(&self) -> Result<Result<u64, (u64, String)>, StoreError> {
        let mut prev = "0".repeat(64);
        let mut expected_seq = 1;
        for item in self.actions.iter() {
            let (k, v) = item?;
            let key_seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            let entry: ChainedAction = match decode(&v, "action") {
                Ok(e) => e,
                Err(e) => return Ok(Err((key_seq, format!("entry does not decode: {e}")))),
            };
            if entry.seq != expected_seq || key_seq != expected_seq {
                return Ok(Err((
                    key_seq,
                    format!("expected entry {expected_seq}: an entry is missing or moved"),
                )));
            }
            if entry.prev_sha256 != prev {
                return Ok(Err((
                    entry.seq,
                    "does not chain to the entry before it".into(),
                )));
            }
            if ChainedAction::compute_hash(entry.seq, &entry.action, &entry.prev_sha256)
                != entry.sha256
            {
                return Ok(Err((
                    entry.seq,
                    "its content does not match its hash: it was changed".into(),
                )));
            }
            prev = entry.sha256;
            expected_seq += 1;
        }
        Ok(Ok(expected_seq - 1))
    }
}
