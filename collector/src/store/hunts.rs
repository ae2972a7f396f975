//! Hunts and their answers (trees `hunts`, keyed by id, and `hunt_answers`,
//! keyed by hunt id then host id, so one hunt's answers are one range).
//!
//! A hunt is written by the journal's apply (durable before it is answered);
//! answers are written by the ingest writer, in the group commit that also
//! raises their `hunt.match` findings.

use super::{Store, StoreError, decode, encode};
use crate::model::{Hunt, HuntAnswer};

fn answer_key(hunt: u64, host: &str) -> Vec<u8> {
    let mut key = hunt.to_be_bytes().to_vec();
    key.extend_from_slice(host.as_bytes());
    key
}

impl Store {
    /// Inserts or replaces a hunt.
    pub fn put_hunt(&self, hunt: &Hunt) -> Result<(), StoreError> {
        self.hunts
            .insert(hunt.id.to_be_bytes(), encode(hunt, "hunt")?)?;
        Ok(())
    }

    /// One hunt.
    pub fn hunt(&self, id: u64) -> Result<Option<Hunt>, StoreError> {
        self.hunts
            .get(id.to_be_bytes())?
            .map(|v| decode(&v, "hunt"))
            .transpose()
    }

    /// Every hunt, oldest first.
    pub fn hunts(&self) -> Result<Vec<Hunt>, StoreError> {
        self.hunts
            .iter()
            .values()
            .map(|v| decode(&v?, "hunt"))
            .collect()
    }

    /// Whether `host` has answered hunt `id`.
    pub fn hunt_answered(&self, id: u64, host: &str) -> Result<bool, StoreError> {
        Ok(self.hunt_answers.contains_key(answer_key(id, host))?)
    }

    /// Records a host's answer (the first one stands).
    pub fn put_hunt_answer(&self, answer: &HuntAnswer) -> Result<bool, StoreError> {
        let key = answer_key(answer.hunt_id, &answer.host_id);
        let value = encode(answer, "hunt answer")?;
        Ok(self
            .hunt_answers
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?
            .is_ok())
    }

    /// Every answer to hunt `id`, by host id.
    pub fn hunt_answers(&self, id: u64) -> Result<Vec<HuntAnswer>, StoreError> {
        self.hunt_answers
            .scan_prefix(id.to_be_bytes())
            .values()
            .map(|v| decode(&v?, "hunt answer"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_first_answer_stands_and_answers_are_kept_per_hunt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let answer = |hunt: u64, host: &str, total: u64| HuntAnswer {
            hunt_id: hunt,
            host_id: host.into(),
            ok: true,
            hits: Vec::new(),
            total,
            detail: String::new(),
            files: 0,
            bytes: 0,
            cpu_ms: 0,
            answered_unix_ms: 1,
        };
        assert!(store.put_hunt_answer(&answer(1, "web-01", 2)).expect("put"));
        assert!(
            !store
                .put_hunt_answer(&answer(1, "web-01", 9))
                .expect("again")
        );
        assert!(store.put_hunt_answer(&answer(1, "web-02", 0)).expect("put"));
        assert!(store.put_hunt_answer(&answer(2, "web-01", 0)).expect("put"));
        let first = store.hunt_answers(1).expect("answers");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].total, 2, "the first answer stands");
        assert!(store.hunt_answered(2, "web-01").expect("answered"));
        assert!(!store.hunt_answered(2, "web-02").expect("answered"));
    }
}
