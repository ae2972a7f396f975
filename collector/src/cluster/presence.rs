//! Presence and membership: which collector holds which host's stream
//! ([`HOSTS_BUCKET`]), and which collectors are alive ([`COLLECTORS_BUCKET`]).

use super::*;

impl Cluster {
    /// Says that `host`'s stream closed here, unless another collector has
    /// taken it since (compare-and-set on the entry's revision).
    pub async fn clear_presence(&self, host: &str) -> Result<(), ClusterError> {
        let Some(entry) = self
            .hosts
            .entry(host)
            .await
            .map_err(|e| js_error("reading presence")(&e))?
        else {
            return Ok(());
        };
        let Ok(mut presence) = serde_json::from_slice::<Presence>(&entry.value) else {
            return Ok(());
        };
        if presence.collector != self.config.name {
            return Ok(());
        }
        presence.collector = String::new();
        let value = serde_json::to_vec(&presence).map_err(|e| js_error("encoding presence")(&e))?;
        // A newer revision means another collector wrote it: leave it.
        let _ = self.hosts.update(host, value.into(), entry.revision).await;
        Ok(())
    }
}

/// Keeps this collector's entry alive and mirrors every other collector's
/// hosts into `hosts`, until `shutdown`.
pub async fn run_membership(
    cluster: Arc<Cluster>,
    hosts: Arc<crate::hosts::HostRegistry>,
    store: Store,
    listen: String,
    shutdown: CancellationToken,
) {
    let beat = {
        let (cluster, hosts, shutdown) = (cluster.clone(), hosts.clone(), shutdown.clone());
        async move {
            let mut tick = tokio::time::interval(COLLECTOR_BEAT);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let applied = store.counter(APPLIED_COUNTER).unwrap_or(0);
                if let Err(error) = cluster
                    .beat(&listen, applied, hosts.connected_count())
                    .await
                {
                    tracing::warn!(%error, "Cannot renew this collector's entry");
                }
            }
        }
    };
    let watch = async move {
        loop {
            match cluster.watch_presence().await {
                Ok(mut changes) => {
                    while let Some(change) = tokio::select! {
                        () = shutdown.cancelled() => return,
                        c = changes.next() => c,
                    } {
                        let Ok(entry) = change else { break };
                        if entry.operation != kv::Operation::Put {
                            continue;
                        }
                        match serde_json::from_slice::<Presence>(&entry.value) {
                            Ok(presence) => {
                                hosts.remote(presence);
                            }
                            Err(error) => {
                                tracing::warn!(host.id = %entry.key, %error, "Unreadable presence entry; skipped")
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "Cannot watch the hosts' presence"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    };
    tokio::join!(beat, watch);
}

impl Cluster {
    /// The other live collector holding `host`'s stream, if one does.
    pub async fn holder(&self, host: &str) -> Option<String> {
        let value = self.hosts.get(host).await.ok()??;
        let presence: Presence = serde_json::from_slice(&value).ok()?;
        if presence.collector.is_empty() || presence.collector == self.config.name {
            return None;
        }
        // A dead collector's hosts are nobody's until they reconnect.
        self.collectors.get(&presence.collector).await.ok()??;
        Some(presence.collector)
    }
}
