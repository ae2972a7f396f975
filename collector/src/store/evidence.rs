//! Evidence records (tree `evidence`); the bundles themselves live in `DATA_DIR/evidence`.
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::EvidenceRecord;

impl Store {
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
}
