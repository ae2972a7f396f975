//! Commands, desired isolation states and the action log.
//!
//! These are low-volume records written outside the ingest writer; each write
//! is followed by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::{
    Action, ChainedAction, Command, EvidenceRecord, Incident, Isolation, OperatorRecord,
};

impl Store {
    /// The next command id.
    pub fn next_command_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    /// Inserts or replaces a command.
    pub fn put_command(&self, command: &Command) -> Result<(), StoreError> {
        let bytes = encode(command, "command")?;
        self.commands.insert(command.id.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// One command.
    pub fn command(&self, id: u64) -> Result<Option<Command>, StoreError> {
        self.commands
            .get(id.to_be_bytes())?
            .map(|v| decode(&v, "command"))
            .transpose()
    }

    /// Every command, oldest first.
    pub fn commands(&self) -> Result<Vec<Command>, StoreError> {
        self.commands
            .iter()
            .values()
            .map(|v| decode(&v?, "command"))
            .collect()
    }

    /// A host's desired isolation state.
    pub fn isolation(&self, host: &str) -> Result<Option<Isolation>, StoreError> {
        self.isolation
            .get(host.as_bytes())?
            .map(|v| decode(&v, "isolation"))
            .transpose()
    }

    /// Sets a host's desired isolation state.
    pub fn put_isolation(&self, host: &str, isolation: &Isolation) -> Result<(), StoreError> {
        let bytes = encode(isolation, "isolation")?;
        self.isolation.insert(host.as_bytes(), bytes)?;
        Ok(())
    }

    /// Records a new piece of evidence under the next id.
    pub fn add_evidence(&self, mut record: EvidenceRecord) -> Result<EvidenceRecord, StoreError> {
        let n = match self.evidence.last()? {
            Some((k, _)) => k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) + 1,
            None => 1,
        };
        record.id = format!("e{n}");
        self.put_evidence(&record)?;
        Ok(record)
    }

    /// Replaces an evidence record.
    pub fn put_evidence(&self, record: &EvidenceRecord) -> Result<(), StoreError> {
        let n: u64 = record.id.trim_start_matches('e').parse().unwrap_or(0);
        self.evidence
            .insert(n.to_be_bytes(), encode(record, "evidence")?)?;
        Ok(())
    }

    /// One evidence record by id (`e3`).
    pub fn evidence(&self, id: &str) -> Result<Option<EvidenceRecord>, StoreError> {
        let Some(n) = id.strip_prefix('e').and_then(|n| n.parse::<u64>().ok()) else {
            return Ok(None);
        };
        self.evidence
            .get(n.to_be_bytes())?
            .map(|v| decode(&v, "evidence"))
            .transpose()
    }

    /// All evidence, oldest first.
    pub fn evidence_list(&self) -> Result<Vec<EvidenceRecord>, StoreError> {
        self.evidence
            .iter()
            .values()
            .map(|v| decode(&v?, "evidence"))
            .collect()
    }

    /// The next incident id.
    pub fn next_incident_id(&self) -> Result<u64, StoreError> {
        Ok(match self.incidents.last()? {
            Some((k, _)) => k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0) + 1,
            None => 1,
        })
    }

    /// Inserts or replaces an incident.
    pub fn put_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        self.incidents
            .insert(incident.id.to_be_bytes(), encode(incident, "incident")?)?;
        Ok(())
    }

    /// One incident.
    pub fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.incidents
            .get(id.to_be_bytes())?
            .map(|v| decode(&v, "incident"))
            .transpose()
    }

    /// Every incident, oldest first.
    pub fn incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.incidents
            .iter()
            .values()
            .map(|v| decode(&v?, "incident"))
            .collect()
    }

    /// An operator's record.
    pub fn operator(&self, name: &str) -> Result<Option<OperatorRecord>, StoreError> {
        self.operators
            .get(name.as_bytes())?
            .map(|v| decode(&v, "operator"))
            .transpose()
    }

    /// Inserts or replaces an operator.
    pub fn put_operator(&self, op: &OperatorRecord) -> Result<(), StoreError> {
        self.operators
            .insert(op.name.as_bytes(), encode(op, "operator")?)?;
        Ok(())
    }

    /// Every operator, by name.
    pub fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        self.operators
            .iter()
            .values()
            .map(|v| decode(&v?, "operator"))
            .collect()
    }

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
