//! Operators and their roles (tree `operators`).
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::OperatorRecord;

impl Store {
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
}
