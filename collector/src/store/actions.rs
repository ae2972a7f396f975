//! The action log (tree `actions`): append-only, each entry hashed with the one
//! before it. The custody log is the same chain.
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::{Action, ChainedAction};

/// The highest outbox id given (the key's name is kept from older stores).
const OUTBOX_COUNTER: &str = "cluster.outbox";

impl Store {
    /// Records an action: appended to the action log at once (its position
    /// is returned), or, after [`Store::defer_chaining`], kept durable in the
    /// outbox until the journal takes it and hands it back in its order — the
    /// chain has one order, whoever recorded the action; its outbox id is
    /// returned (see [`crate::journal::Journal::wait_chained`]).
    pub fn append_action(&self, action: &Action) -> Result<u64, StoreError> {
        if let Some(notify) = self.outbox.get() {
            // Ids increase for the life of the store (they name the entries'
            // messages in the journal, and JetStream drops a repeated
            // name as a duplicate): one past the highest ever given, which is
            // kept with the entry and flushed with it.
            let _guard = bannin_proto::lock(&self.action_lock);
            let last_waiting = match self.action_outbox.last()? {
                Some((k, _)) => k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0),
                None => 0,
            };
            let id = self.counter(OUTBOX_COUNTER)?.max(last_waiting) + 1;
            self.set_counter_now(OUTBOX_COUNTER, id)?;
            self.action_outbox
                .insert(id.to_be_bytes(), encode(action, "action")?)?;
            notify.notify_one();
            return Ok(id);
        }
        self.chain_action(action)
    }

    /// From now on [`Store::append_action`] writes to the outbox, and an
    /// action is chained only when the journal hands it back in its order
    /// (a journal shared by several collectors); the returned notifier wakes
    /// the outbox's publisher.
    pub fn defer_chaining(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox
            .get_or_init(|| std::sync::Arc::new(tokio::sync::Notify::new()))
            .clone()
    }

    /// The oldest `limit` actions not yet published, with their
    /// outbox ids.
    pub fn outbox_actions(&self, limit: usize) -> Result<Vec<(u64, Action)>, StoreError> {
        self.action_outbox
            .iter()
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                let id = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                Ok((id, decode(&v, "action")?))
            })
            .collect()
    }

    /// An outbox entry the journal has taken.
    pub fn remove_outbox_action(&self, id: u64) -> Result<(), StoreError> {
        self.action_outbox.remove(id.to_be_bytes())?;
        Ok(())
    }

    /// Appends to the action log, chaining the entry to the previous one by
    /// hash (deferred actions: called by the writer applying the journal).
    pub fn chain_action(&self, action: &Action) -> Result<u64, StoreError> {
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

    /// The position of the newest entry of the action log (0: empty).
    pub fn last_action_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .actions
            .last()?
            .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// The action log, oldest first.
    pub fn actions(&self) -> Result<Vec<ChainedAction>, StoreError> {
        self.actions
            .iter()
            .values()
            .map(|v| decode(&v?, "action"))
            .collect()
    }

    /// One page of the action log: up to `limit` entries after position
    /// `after` that `keep` accepts, oldest first, read one entry at a time (the
    /// log is never loaded whole), and where the next page starts (`None` at
    /// the end).
    pub fn actions_page(
        &self,
        after: u64,
        limit: usize,
        mut keep: impl FnMut(&ChainedAction) -> bool,
    ) -> Result<(Vec<ChainedAction>, Option<u64>), StoreError> {
        let mut page = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for item in self.actions.range(start..) {
            let (_, v) = item?;
            let entry: ChainedAction = decode(&v, "action")?;
            if !keep(&entry) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, Some(entry.seq - 1)));
            }
            page.push(entry);
        }
        Ok((page, None))
    }

    /// [`Store::actions_page`] newest first: up to `limit` entries before
    /// position `before` (0: from the newest) that `keep` accepts, and where
    /// the next, older page starts (its `before`; `None` at the oldest).
    pub fn actions_page_newest(
        &self,
        before: u64,
        limit: usize,
        mut keep: impl FnMut(&ChainedAction) -> bool,
    ) -> Result<(Vec<ChainedAction>, Option<u64>), StoreError> {
        let mut page = Vec::new();
        let end = if before == 0 { u64::MAX } else { before };
        for item in self.actions.range(..end.to_be_bytes()).rev() {
            let (_, v) = item?;
            let entry: ChainedAction = decode(&v, "action")?;
            if !keep(&entry) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, Some(entry.seq + 1)));
            }
            page.push(entry);
        }
        Ok((page, None))
    }

    /// Every entry `keep` accepts, oldest first, read one entry at a time:
    /// memory grows with what is kept, not with the log.
    pub fn actions_matching(
        &self,
        mut keep: impl FnMut(&ChainedAction) -> bool,
    ) -> Result<Vec<ChainedAction>, StoreError> {
        let mut out = Vec::new();
        for v in self.actions.iter().values() {
            let entry: ChainedAction = decode(&v?, "action")?;
            if keep(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn action(n: i64) -> Action {
        Action {
            at_unix_ms: n,
            actor: "alice".into(),
            verb: "test".into(),
            target: format!("t{n}"),
            reason: String::new(),
            result: String::new(),
        }
    }

    #[test]
    fn deferred_actions_wait_in_a_durable_outbox_not_in_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("store");
            store.chain_action(&action(0)).expect("chain");
            let _notify = store.defer_chaining();
            for n in 1..=3 {
                assert!(store.append_action(&action(n)).expect("append") > 0);
            }
            assert_eq!(
                store.actions().expect("actions").len(),
                1,
                "not chained locally"
            );
            store.make_durable().expect("durable");
        }
        let store = Store::reopen(dir.path());
        let waiting = store.outbox_actions(10).expect("outbox");
        let targets: Vec<_> = waiting.iter().map(|(_, a)| a.target.as_str()).collect();
        assert_eq!(
            targets,
            ["t1", "t2", "t3"],
            "kept across a restart, in order"
        );
        store.remove_outbox_action(waiting[0].0).expect("remove");
        assert_eq!(store.outbox_actions(10).expect("outbox").len(), 2);
        // What the journal hands back is chained in its order.
        store.chain_action(&waiting[1].1).expect("chain");
        assert_eq!(store.verify_actions().expect("verify"), Ok(2));
        // Ids keep increasing after a restart, the outbox emptied: a new
        // entry never reuses the name of one already published.
        let highest = waiting.iter().map(|(id, _)| *id).max().expect("ids");
        for (id, _) in &waiting {
            store.remove_outbox_action(*id).expect("remove");
        }
        let _notify = store.defer_chaining();
        assert!(store.append_action(&action(4)).expect("append") > highest);
    }

    #[test]
    fn pages_cover_the_log_once_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        for i in 0..25 {
            store
                .append_action(&Action {
                    at_unix_ms: i,
                    actor: if i % 2 == 0 { "even" } else { "odd" }.into(),
                    verb: "test".into(),
                    target: String::new(),
                    reason: String::new(),
                    result: String::new(),
                })
                .expect("append");
        }
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let (page, next) = store
                .actions_page(after, 5, |a| a.action.actor == "even")
                .expect("page");
            pages += 1;
            assert!(page.len() <= 5);
            seen.extend(page.iter().map(|a| a.seq));
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        let even: Vec<u64> = (1..=25).step_by(2).collect();
        assert_eq!(seen, even, "every kept entry once, in order");
        assert_eq!(pages, 3, "13 entries in pages of 5");
        let (all, next) = store.actions_page(0, 100, |_| true).expect("page");
        assert_eq!((all.len(), next), (25, None));
        let (tail, _) = store.actions_page(23, 100, |_| true).expect("page");
        assert_eq!(tail.iter().map(|a| a.seq).collect::<Vec<_>>(), [24, 25]);

        // Newest first: the same entries, in reverse, each once.
        let mut seen = Vec::new();
        let mut before = 0;
        loop {
            let (page, next) = store
                .actions_page_newest(before, 5, |a| a.action.actor == "even")
                .expect("page");
            seen.extend(page.iter().map(|a| a.seq));
            match next {
                Some(n) => before = n,
                None => break,
            }
        }
        let mut newest: Vec<u64> = (1..=25).step_by(2).collect();
        newest.reverse();
        assert_eq!(seen, newest, "every kept entry once, newest first");
        let (head, next) = store.actions_page_newest(0, 2, |_| true).expect("page");
        assert_eq!(head.iter().map(|a| a.seq).collect::<Vec<_>>(), [25, 24]);
        assert_eq!(next, Some(24));
        let (older, _) = store.actions_page_newest(24, 2, |_| true).expect("page");
        assert_eq!(older.iter().map(|a| a.seq).collect::<Vec<_>>(), [23, 22]);
    }
}
