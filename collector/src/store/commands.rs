//! Commands and desired isolation states (trees `commands`, `isolation`).
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::{Command, Isolation};

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
}
