//! Export sinks across collectors: one collector runs a sink at a time (a
//! lease in [`SINK_LEASES_BUCKET`]), from the cursor in [`SINKS_BUCKET`].

use super::*;

/// A sink's lease, as [`Cluster::lease_sink`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkLease {
    /// This collector runs the sink; renew with this revision.
    Held(u64),
    /// Another collector runs it (its name; empty while nobody holds it).
    Elsewhere(String),
}

impl Cluster {
    /// A sink's cursor: the id of the last finding it delivered (0: none yet).
    pub async fn sink_cursor(&self, sink: &str) -> Result<u64, ClusterError> {
        let value = self
            .sinks
            .get(sink)
            .await
            .map_err(|e| js_error("reading a sink's cursor")(&e))?;
        Ok(value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Moves a sink's cursor (only the lease holder calls it).
    pub async fn set_sink_cursor(&self, sink: &str, cursor: u64) -> Result<(), ClusterError> {
        self.sinks
            .put(sink, cursor.to_string().into())
            .await
            .map(|_| ())
            .map_err(|e| js_error("saving a sink's cursor")(&e))
    }

    /// Takes `sink`'s lease if nobody holds it, or renews the one this
    /// collector holds (`held`: its revision). Compare-and-set on the
    /// bucket's revisions, so two collectors never both take it; a lease not
    /// renewed lapses after [`SINK_LEASE_TTL`] and another collector takes
    /// the sink over from its cursor.
    pub async fn lease_sink(
        &self,
        sink: &str,
        held: Option<u64>,
    ) -> Result<SinkLease, ClusterError> {
        let me = bytes::Bytes::from(self.config.name.clone());
        let taken = match held {
            Some(revision) => self
                .sink_leases
                .update(sink, me.clone(), revision)
                .await
                .ok(),
            None => self.sink_leases.create(sink, me.clone()).await.ok(),
        };
        if let Some(revision) = taken {
            return Ok(SinkLease::Held(revision));
        }
        let entry = self
            .sink_leases
            .entry(sink)
            .await
            .map_err(|e| js_error("reading a sink's lease")(&e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let holder = String::from_utf8_lossy(&e.value).into_owned();
                // Ours from before a restart: carry on with it.
                if holder == self.config.name
                    && let Ok(revision) = self.sink_leases.update(sink, me, e.revision).await
                {
                    return Ok(SinkLease::Held(revision));
                }
                Ok(SinkLease::Elsewhere(holder))
            }
            _ => Ok(SinkLease::Elsewhere(String::new())),
        }
    }
}
