//! Findings: the durable, ordered queue responders work from.

use super::{PREFIX_FINDING, Store, StoreError, WriteSet, decode, encode};
use crate::model::Finding;

/// One stored finding record, decoded (the key names it in errors).
fn decode_finding(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Finding, StoreError> {
    let (k, v) = item?;
    decode(&v, &format!("finding {}", String::from_utf8_lossy(&k)))
}

fn key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = PREFIX_FINDING;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

impl Store {
    /// The finding with this id.
    pub fn finding(&self, id: u64) -> Result<Option<Finding>, StoreError> {
        self.records
            .get(key(id))?
            .map(|v| decode(&v, &format!("finding {id}")))
            .transpose()
    }

    /// Findings with an id greater than `since`, oldest first, at most `limit`.
    pub fn findings_after(&self, since: u64, limit: usize) -> Result<Vec<Finding>, StoreError> {
        let start = key(since.saturating_add(1));
        let end = [PREFIX_FINDING + 1];
        self.records
            .range(&start[..]..&end[..])
            .take(limit)
            .map(decode_finding)
            .collect()
    }

    /// Up to `limit` findings with ids in `(since, before)`, newest first
    /// (`before` 0: no upper bound).
    pub fn findings_before(
        &self,
        since: u64,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Finding>, StoreError> {
        let start = key(since.saturating_add(1));
        let end = match before {
            0 => vec![PREFIX_FINDING + 1],
            b => key(b).to_vec(),
        };
        if start[..] >= end[..] {
            return Ok(Vec::new());
        }
        self.records
            .range(&start[..]..&end[..])
            .rev()
            .take(limit)
            .map(decode_finding)
            .collect()
    }

    /// The highest finding id, 0 when there are none.
    pub fn last_finding_id(&self) -> Result<u64, StoreError> {
        let range = [PREFIX_FINDING]..[PREFIX_FINDING + 1];
        match self.records.range(range).next_back() {
            Some(item) => {
                let (k, _) = item?;
                let bytes: [u8; 8] = k[1..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("finding key".into()))?;
                Ok(u64::from_be_bytes(bytes))
            }
            None => Ok(0),
        }
    }

    /// Findings newest first, while `keep` says so (used to rebuild the fold index).
    pub fn findings_newest_first(
        &self,
        mut keep: impl FnMut(&Finding) -> bool,
    ) -> Result<Vec<Finding>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .records
            .range([PREFIX_FINDING]..[PREFIX_FINDING + 1])
            .rev()
        {
            let (_, v) = item?;
            let f: Finding = decode(&v, "finding")?;
            if !keep(&f) {
                break;
            }
            out.push(f);
        }
        Ok(out)
    }
}

impl WriteSet {
    /// Inserts or replaces a finding.
    pub fn put_finding(&mut self, finding: &Finding) -> Result<(), StoreError> {
        let bytes = encode(finding, &format!("finding {}", finding.id))?;
        self.batch.insert(&key(finding.id), bytes);
        self.writes += 1;
        Ok(())
    }
}
