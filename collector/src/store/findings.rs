//! Findings: the durable, ordered queue responders work from.

use super::finding_index::{FindingNeeds, ids_of};
use super::{PREFIX_FINDING, Store, StoreError, WriteSet, decode, encode};
use crate::model::Finding;

/// One stored finding record, decoded (the key names it in errors).
fn decode_finding(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Finding, StoreError> {
    let (k, v) = item?;
    decode(&v, &format!("finding {}", String::from_utf8_lossy(&k)))
}

/// Most index summaries one filtered page reads (a million findings are
/// 3,907 of them).
pub const MAX_BLOCKS: usize = 16_384;

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

    /// Up to `limit` findings with ids in `(since, before)` (`before` 0: no
    /// upper bound) that `keep` keeps, oldest first or `newest_first`,
    /// reading at most `budget` findings; with the id of the last one read
    /// (0: none), where the next page starts when `keep` passed few.
    ///
    /// Where `needs` narrows the search, only the blocks the index says may
    /// hold an answer are read ([`super::finding_index`]), at most
    /// [`MAX_BLOCKS`] summaries a page; `keep` still decides.
    pub fn findings_matching(
        &self,
        range: (u64, u64),
        newest_first: bool,
        limit: usize,
        budget: usize,
        needs: &FindingNeeds,
        mut keep: impl FnMut(&Finding) -> Result<bool, StoreError>,
    ) -> Result<(Vec<Finding>, u64), StoreError> {
        let (since, before) = range;
        if needs.narrows() {
            let (mut found, mut read, mut stopped) = (Vec::new(), 0usize, None);
            let edge = self.candidate_blocks(range, newest_first, needs, MAX_BLOCKS, |block| {
                let (lo, hi) = ids_of(block, since, before);
                let records = self.records.range(&key(lo)[..]..&key(hi)[..]);
                let records: Box<dyn Iterator<Item = _>> = if newest_first {
                    Box::new(records.rev())
                } else {
                    Box::new(records)
                };
                for item in records {
                    let finding = decode_finding(item)?;
                    read += 1;
                    let id = finding.id;
                    if keep(&finding)? {
                        found.push(finding);
                    }
                    if found.len() >= limit || read >= budget {
                        stopped = Some(id);
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            let scanned_to = match stopped {
                Some(id) => id,
                // Ascending, the last block may reach past the newest finding:
                // the next page must not start beyond it.
                None if !newest_first => edge.min(self.last_finding_id()?),
                None => edge,
            };
            return Ok((found, scanned_to));
        }
        let start = key(since.saturating_add(1));
        let end = match before {
            0 => vec![PREFIX_FINDING + 1],
            b => key(b).to_vec(),
        };
        if start[..] >= end[..] {
            return Ok((Vec::new(), 0));
        }
        let range = self.records.range(&start[..]..&end[..]);
        let items: Box<dyn Iterator<Item = _>> = if newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let (mut found, mut last) = (Vec::new(), 0);
        for item in items.take(budget) {
            let finding = decode_finding(item)?;
            last = finding.id;
            if keep(&finding)? {
                found.push(finding);
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok((found, last))
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
        self.findings.insert(finding.id, finding.clone());
        self.writes += 1;
        Ok(())
    }
}
