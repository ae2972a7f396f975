//! Evidence across collectors: verified bundles in the object store
//! ([`EVIDENCE_BUCKET`], by SHA-256), their records through the log, and
//! waiting until an action is in this collector's chain (custody).

use super::*;

/// How long an operator call waits for its own action to be chained.
pub const CHAIN_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    /// Waits until the action this collector recorded with outbox id `id` is
    /// in its own copy of the chain (published and applied), so what the
    /// caller reads next (custody for an export) includes it.
    pub async fn wait_chained(&self, id: u64) -> Result<(), ClusterError> {
        let mut chained = self.chained.subscribe();
        let reached = tokio::time::timeout(CHAIN_WAIT, chained.wait_for(|n| *n >= id)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClusterError::JetStream {
                what: "chaining an action",
                reason: format!("not in the action log after {CHAIN_WAIT:?}"),
            }),
        }
    }

    /// Puts a verified bundle into the evidence object store under its hash
    /// (once: a bundle already there is kept).
    pub async fn put_bundle(
        &self,
        path: &std::path::Path,
        sha256: &str,
    ) -> Result<(), ClusterError> {
        if self.evidence.info(sha256).await.is_ok() {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| js_error("reading a bundle")(&e))?;
        self.evidence
            .put(sha256, &mut file)
            .await
            .map(|_| ())
            .map_err(|e| js_error("storing a bundle in the object store")(&e))
    }

    /// Copies a bundle from the object store to `to` (a new file), checking
    /// it against its hash on the way; a copy that does not match is removed.
    pub async fn fetch_bundle(
        &self,
        sha256: &str,
        to: &std::path::Path,
    ) -> Result<(), ClusterError> {
        use sha2::Digest;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fetch = async {
            let mut object = self
                .evidence
                .get(sha256)
                .await
                .map_err(|e| format!("the object store has no copy: {e}"))?;
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(to)
                .await
                .map_err(|e| format!("{}: {e}", to.display()))?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = object
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading from the object store: {e}"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("{}: {e}", to.display()))?;
            }
            file.sync_all()
                .await
                .map_err(|e| format!("{}: {e}", to.display()))?;
            let got = bannin_proto::hex(hasher.finalize());
            if got != sha256 {
                return Err(format!(
                    "the object store's copy has SHA-256 {got}, the record says {sha256}"
                ));
            }
            Ok(())
        };
        let result = fetch.await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(to).await;
        }
        result.map_err(|reason| ClusterError::JetStream {
            what: "fetching a bundle",
            reason,
        })
    }

    /// Removes a disposed bundle from the object store.
    pub async fn delete_bundle(&self, sha256: &str) -> Result<(), ClusterError> {
        match self.evidence.delete(sha256).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(js_error("removing a bundle from the object store")(&e)),
        }
    }

    /// Records a verified bundle cluster-wide: the bundle into the object
    /// store, then the record through the log (every collector records it
    /// under the same id); answers with the record as recorded.
    pub async fn record_evidence(
        &self,
        record: EvidenceRecord,
        bundle: &std::path::Path,
    ) -> Result<EvidenceRecord, IngestError> {
        self.put_bundle(bundle, &record.sha256)
            .await
            .map_err(|e| IngestError::Journal(e.to_string()))?;
        let dedup = format!(
            "e:{}:{}:{}",
            record.host_id, record.command_id, record.sha256
        );
        match self.submit(Op::Evidence { record }, Some(dedup)).await? {
            OpReply::Duplicate => Err(IngestError::Journal(
                "this bundle was already recorded by another collector".into(),
            )),
            reply => reply.into_evidence(),
        }
    }

    /// Marks a piece of evidence disposed of on every collector (each removes
    /// its local copy) and removes the bundle from the object store.
    pub async fn dispose_evidence(&self, id: &str) -> Result<EvidenceRecord, IngestError> {
        let record = self
            .submit(Op::DisposeEvidence { id: id.to_owned() }, None)
            .await?
            .into_evidence()?;
        self.delete_bundle(&record.sha256)
            .await
            .map_err(|e| IngestError::Journal(e.to_string()))?;
        Ok(record)
    }
}
