//! Commands and desired isolation states (trees `commands`, `open_commands`,
//! `isolation`).
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use sled::Transactional;

use super::legacy::{LegacyCommand, LegacyIsolation};
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

    /// Rewrites commands and isolation states stored by the previous release
    /// (a verb and text arguments) as typed records, once, in one transaction:
    /// a crash leaves the store as it was, and the next open does it again.
    /// Before it has run every record is in the old form; after, none is.
    pub(super) fn type_commands(&self) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        const TYPED: &str = "commands.typed";
        if self.counter(TYPED)? > 0 {
            return Ok(());
        }
        let mut commands = Vec::new();
        for entry in self.commands.iter() {
            let (key, value) = entry?;
            let old: LegacyCommand = decode(&value, "command (previous release)")?;
            let typed = Command::try_from(old).map_err(StoreError::Corrupt)?;
            commands.push((key, encode(&typed, "command")?));
        }
        let mut isolation = Vec::new();
        for entry in self.isolation.iter() {
            let (key, value) = entry?;
            let old: LegacyIsolation = decode(&value, "isolation (previous release)")?;
            isolation.push((key, encode(&Isolation::from(old), "isolation")?));
        }
        let rewritten = commands.len() + isolation.len();
        (&self.commands, &self.isolation, &self.records)
            .transaction(|(c, i, r)| {
                for (key, value) in &commands {
                    c.insert(key, value.as_slice())?;
                }
                for (key, value) in &isolation {
                    i.insert(key, value.as_slice())?;
                }
                r.insert(super::meta_key(TYPED), &1u64.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::from(e),
                TransactionError::Abort(()) => StoreError::Corrupt("typing commands".into()),
            })?;
        if rewritten > 0 {
            tracing::info!(
                records = rewritten,
                "Commands stored by the previous release rewritten as typed commands"
            );
        }
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
    use crate::model::{CommandBody, CommandState};

    fn command(id: u64, state: CommandState) -> Command {
        Command {
            id,
            host_id: "web-01".into(),
            body: CommandBody::Ping,
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

    /// A store written by the previous release (verbs and text arguments) is
    /// read typed after it is opened: every command and isolation state
    /// rewritten once, open commands still open, and nothing rewritten twice.
    #[test]
    fn commands_stored_by_the_previous_release_are_typed_when_the_store_is_opened() {
        use std::collections::BTreeMap;

        use crate::model::Isolate;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let text = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let old = |id: u64, verb: &str, arguments, state| LegacyCommand {
            id,
            host_id: "web-01".into(),
            verb: verb.into(),
            arguments,
            operator: "alice".into(),
            reason: "case 7".into(),
            state,
            created_unix_ms: 1,
            delivered_unix_ms: 0,
            finished_unix_ms: 0,
            expires_unix_ms: i64::MAX,
            result: String::new(),
        };
        let legacy = [
            old(1, "ping", text(&[]), CommandState::Succeeded),
            old(
                2,
                "isolate",
                text(&[("allow", "10.0.0.5,192.0.2.0/24")]),
                CommandState::Delivered,
            ),
            old(
                3,
                "snapshot",
                text(&[("files", "/etc/passwd\n/tmp/x"), ("operator", "alice")]),
                CommandState::Pending,
            ),
        ];
        for c in &legacy {
            store
                .commands
                .insert(c.id.to_be_bytes(), encode(c, "old").expect("encode"))
                .expect("put");
            if !c.state.is_final() {
                store
                    .open_commands
                    .insert(c.id.to_be_bytes(), &[])
                    .expect("index");
            }
        }
        let isolation = LegacyIsolation {
            isolated: true,
            arguments: text(&[("allow", "10.0.0.5,192.0.2.0/24")]),
            confirmed: false,
        };
        store
            .isolation
            .insert("web-01", encode(&isolation, "old").expect("encode"))
            .expect("put");
        // As the previous release left it: never typed.
        store
            .records
            .remove(super::super::meta_key("commands.typed"))
            .expect("unmark");
        store.make_durable().expect("durable");
        drop(store);

        let store = Store::reopen(dir.path());
        let allow = Isolate {
            allow: vec!["10.0.0.5".into(), "192.0.2.0/24".into()],
            confirm_local: false,
        };
        let bodies: Vec<CommandBody> = store
            .commands()
            .expect("typed")
            .into_iter()
            .map(|c| c.body)
            .collect();
        assert_eq!(
            bodies,
            [
                CommandBody::Ping,
                CommandBody::Isolate(allow.clone()),
                CommandBody::Snapshot {
                    operator: "alice".into(),
                    reason: String::new(),
                    files: vec!["/etc/passwd".into(), "/tmp/x".into()],
                },
            ]
        );
        assert_eq!(open_ids(&store), [2, 3]);
        let desired = store.isolation("web-01").expect("read").expect("kept");
        assert_eq!((desired.isolated, desired.isolate), (true, allow));

        // Typed records are not read as old ones again.
        store
            .put_command(&command(4, CommandState::Pending))
            .expect("put");
        drop(store);
        let store = Store::reopen(dir.path());
        assert_eq!(store.commands().expect("typed").len(), 4);
    }
}
