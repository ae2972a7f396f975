//! Incidents (tree `incidents`).
//!
//! Low-volume records written outside the ingest writer; each write is followed
//! by [`Store::make_durable`] before it is acknowledged to anyone.

use super::{Store, StoreError, decode, encode};
use crate::model::Incident;

impl Store {
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
}
