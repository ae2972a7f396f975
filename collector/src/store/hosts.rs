//! Host inventory and liveness records.

use super::{Store, StoreError, decode, encode};
use crate::model::{HostLabels, HostRecord};

impl Store {
    /// Every known host, by host id.
    pub fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.hosts
            .iter()
            .values()
            .map(|v| decode(&v?, "host"))
            .collect()
    }

    /// One host.
    pub fn host(&self, host_id: &str) -> Result<Option<HostRecord>, StoreError> {
        self.hosts
            .get(host_id.as_bytes())?
            .map(|v| decode(&v, host_id))
            .transpose()
    }

    /// Inserts or replaces a host record.
    pub fn put_host(&self, host: &HostRecord) -> Result<(), StoreError> {
        let bytes = encode(host, &host.host_id)?;
        self.hosts.insert(host.host_id.as_bytes(), bytes)?;
        Ok(())
    }

    /// A host's labels (empty when it has none).
    pub fn host_labels(&self, host_id: &str) -> Result<HostLabels, StoreError> {
        Ok(self
            .labels
            .get(host_id.as_bytes())?
            .map(|v| decode(&v, host_id))
            .transpose()?
            .unwrap_or_default())
    }

    /// Replaces a host's labels.
    pub fn put_host_labels(&self, host_id: &str, labels: &HostLabels) -> Result<(), StoreError> {
        let bytes = encode(labels, host_id)?;
        self.labels.insert(host_id.as_bytes(), bytes)?;
        Ok(())
    }
}
