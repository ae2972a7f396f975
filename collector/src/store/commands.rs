//! Commands and desired isolation states (trees `commands`, `open_commands`,
//! `isolation`).
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::{Command, Isolation};

impl Store {
    /// The next command id.
    pub fn next_position(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    /// Inserts or replaces a command (and keeps the index of open ones: an
    /// open command is indexed before it is written, a finished one
    /// unindexed after, so a crash in between leaves at most a stale entry,
    /// which [`Store::open_commands`] skips — never an open command unseen).
    pub fn put_command(&self, command: &Command) -> Result<(), StoreError> {
        let bytes = encode(command, "command")?;
        let key = command.id.to_be_bytes();
        let open = !command.state.is_final();
        if open {
            self.open_commands.insert(key, &[])?;
        }
        self.commands.insert(key, bytes)?;
        if !open {
            self.open_commands.remove(key)?;
        }
        Ok(())
    }

    /// The newest `limit` commands (of `host` only, if given), oldest first;
    /// reads no further back than it must.
    pub fn newest_commands(
        &self,
        host: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Command>, StoreError> {
        let mut out = Vec::new();
        for value in self.commands.iter().values().rev() {
            if out.len() == limit {
                break;
            }
            let command: Command = decode(&value?, "command")?;
            if host.is_none_or(|h| command.host_id == h) {
                out.push(command);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The commands not finished yet (pending or delivered), oldest first.
    pub fn open_commands(&self) -> Result<Vec<Command>, StoreError> {
        let mut out = Vec::new();
        for key in self.open_commands.iter().keys() {
            if let Some(value) = self.commands.get(key?)? {
                let command: Command = decode(&value, "command")?;
                if !command.state.is_final() {
                    out.push(command);
                }
            }
        }
        Ok(out)
    }

    /// Builds the index of open commands for a store written before it
    /// existed (once; idempotent if interrupted).
    pub(super) fn index_open_commands(&self) -> Result<(), StoreError> {
        const INDEXED: &str = "commands.open_indexed";
        if self.counter(INDEXED)? > 0 {
            return Ok(());
        }
        for command in self.commands()? {
            if !command.state.is_final() {
                self.open_commands.insert(command.id.to_be_bytes(), &[])?;
            }
        }
        self.set_counter_now(INDEXED, 1)?;
        self.make_durable()
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CommandState;

    fn command(id: u64, state: CommandState) -> Command {
        Command {
            id,
            host_id: "web-01".into(),
            verb: "ping".into(),
            arguments: Default::default(),
            operator: "alice".into(),
            reason: String::new(),
            state,
            created_unix_ms: 1,
            delivered_unix_ms: 0,
            finished_unix_ms: 0,
            expires_unix_ms: i64::MAX,
            result: String::new(),
        }
    }

    fn open_ids(store: &Store) -> Vec<u64> {
        store
            .open_commands()
            .expect("open commands")
            .iter()
            .map(|c| c.id)
            .collect()
    }

    #[test]
    fn the_newest_commands_are_read_oldest_first_and_of_one_host_if_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        for id in 1..=10 {
            let mut c = command(id, CommandState::Succeeded);
            c.host_id = if id % 2 == 0 { "even" } else { "odd" }.into();
            store.put_command(&c).expect("put");
        }
        let ids = |host, limit| -> Vec<u64> {
            store
                .newest_commands(host, limit)
                .expect("newest")
                .iter()
                .map(|c| c.id)
                .collect()
        };
        assert_eq!(ids(None, 3), [8, 9, 10]);
        assert_eq!(ids(Some("odd"), 3), [5, 7, 9]);
        assert_eq!(ids(Some("even"), 100), [2, 4, 6, 8, 10]);
        assert_eq!(ids(Some("nobody"), 3), Vec::<u64>::new());
    }

    #[test]
    fn only_unfinished_commands_are_open_and_an_old_store_is_indexed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        for (id, state) in [
            (1, CommandState::Succeeded),
            (2, CommandState::Pending),
            (3, CommandState::Delivered),
            (4, CommandState::Failed),
            (5, CommandState::Pending),
        ] {
            store.put_command(&command(id, state)).expect("put");
        }
        assert_eq!(open_ids(&store), [2, 3, 5]);
        store
            .put_command(&command(2, CommandState::Expired))
            .expect("put");
        store
            .put_command(&command(3, CommandState::Succeeded))
            .expect("put");
        assert_eq!(open_ids(&store), [5]);
        assert_eq!(store.commands().expect("all").len(), 5, "history kept");

        // A store written before the index: rebuilt when opened.
        store.open_commands.clear().expect("clear");
        store
            .set_counter_now("commands.open_indexed", 0)
            .expect("counter");
        store.make_durable().expect("durable");
        drop(store);
        let store = Store::reopen(dir.path());
        assert_eq!(open_ids(&store), [5]);

        // A stale entry (a crash between the write and the unindexing) is
        // skipped, not returned.
        store
            .open_commands
            .insert(1u64.to_be_bytes(), &[])
            .expect("stale");
        assert_eq!(open_ids(&store), [5]);
    }
}
