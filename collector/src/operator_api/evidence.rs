//! Evidence: records, custody events, verification, export and disposal.
//!
//! The custody rules themselves live in [`crate::evidence`]; this file authorizes,
//! converts and maps errors to statuses.

use bannin_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::actions::action_to_wire;
use super::{OperatorService, Rpc, caller};
use crate::evidence::{Disposal, ExportRefusal};
use crate::link::internal;
use crate::model::{Action, EvidenceRecord};

impl OperatorService {
    fn evidence_record(&self, id: &str) -> Result<EvidenceRecord, Status> {
        self.store
            .evidence(id)
            .map_err(|e| internal("reading evidence", &e))?
            .ok_or_else(|| Status::not_found(format!("no evidence {id}")))
    }

    /// Appends a custody event and makes it durable.
    async fn custody_event(
        &self,
        actor: &str,
        verb: &str,
        record: &EvidenceRecord,
        reason: &str,
        result: String,
    ) -> Result<(), Status> {
        let id = self
            .store
            .append_action(&Action {
                at_unix_ms: bannin_proto::now_unix_ms(),
                actor: actor.to_owned(),
                verb: verb.to_owned(),
                target: record.target(),
                reason: reason.to_owned(),
                result,
            })
            .map_err(|e| internal("writing custody", &e))?;
        self.flush().await?;
        // Custody read next (an export's custody.json) must hold this
        // event: wait until it is in this collector's chain.
        self.journal
            .wait_chained(id)
            .await
            .map_err(Status::unavailable)
    }

    /// A bundle another collector received is copied here (checked
    /// against its hash) before it is read.
    async fn held_bundle(&self, record: &EvidenceRecord) -> Result<(), Status> {
        let evidence = self.commands.evidence();
        if record.disposed || evidence.bundle_path(&record.sha256).exists() {
            return Ok(());
        }
        let partial = evidence.fetch_path(&record.sha256);
        let fetched = self
            .journal
            .fetch_bundle(&record.sha256, &partial)
            .await
            .map_err(|e| Status::unavailable(format!("evidence {}: {e}", record.id)))?;
        if !fetched {
            // No other copy: reading it says what is missing.
            return Ok(());
        }
        evidence
            .adopt(&partial, &record.sha256)
            .map_err(|e| internal("storing the fetched bundle", &e))?;
        tracing::info!(evidence.id = %record.id, sha256 = %record.sha256, "Bundle fetched from the evidence object store");
        Ok(())
    }

    /// The record, its custody events and its manifest. The manifest check reads the
    /// whole bundle: on the blocking pool.
    async fn detail(&self, record: &EvidenceRecord) -> Result<v1::EvidenceDetail, Status> {
        let target = record.target();
        let custody = self
            .store
            .actions_matching(|a| a.action.target == target)
            .map_err(|e| internal("reading custody", &e))?
            .into_iter()
            .map(action_to_wire)
            .collect();
        let evidence = self.commands.evidence().clone();
        let held = record.clone();
        let manifest_json = tokio::task::spawn_blocking(move || evidence.manifest_json(&held))
            .await
            .map_err(|e| internal("reading the manifest", &e))?;
        Ok(v1::EvidenceDetail {
            record: Some(record.to_wire()),
            custody,
            manifest_json,
            verified: false,
            verify_result: String::new(),
        })
    }
}

/// `ListEvidence`.
pub(super) async fn list_evidence(
    svc: &OperatorService,
    request: Request<v1::ListEvidenceRequest>,
) -> Result<Response<v1::ListEvidenceResponse>, Status> {
    caller(&request)?;
    let evidence = svc
        .store
        .evidence_list()
        .map_err(|e| internal("reading evidence", &e))?
        .iter()
        .map(EvidenceRecord::to_wire)
        .collect();
    Ok(Response::new(v1::ListEvidenceResponse { evidence }))
}

/// `ShowEvidence`.
pub(super) async fn show_evidence(
    svc: &OperatorService,
    request: Request<v1::EvidenceRequest>,
) -> Result<Response<v1::EvidenceDetail>, Status> {
    let name = caller(&request)?;
    let record = svc.evidence_record(&request.get_ref().id)?;
    svc.held_bundle(&record).await?;
    svc.custody_event(
        name.as_str(),
        "evidence.viewed",
        &record,
        "",
        "record shown".into(),
    )
    .await?;
    Ok(Response::new(svc.detail(&record).await?))
}

/// `VerifyEvidence`.
pub(super) async fn verify_evidence(
    svc: &OperatorService,
    request: Request<v1::EvidenceRequest>,
) -> Result<Response<v1::EvidenceDetail>, Status> {
    let name = caller(&request)?;
    let record = svc.evidence_record(&request.get_ref().id)?;
    if record.disposed {
        return Err(Status::failed_precondition(format!(
            "evidence {} was disposed of",
            record.id
        )));
    }
    svc.held_bundle(&record).await?;
    let evidence = svc.commands.evidence().clone();
    let held = record.clone();
    let (verified, result) = tokio::task::spawn_blocking(move || evidence.verify(&held))
        .await
        .map_err(|e| internal("verifying evidence", &e))?;
    svc.custody_event(
        name.as_str(),
        "evidence.verified",
        &record,
        "",
        result.clone(),
    )
    .await?;
    let mut detail = svc.detail(&record).await?;
    detail.verified = verified;
    detail.verify_result = result;
    Ok(Response::new(detail))
}

/// What `ExportEvidence` streams.
pub(super) type ExportEvidenceStream = ReceiverStream<Result<v1::ExportChunk, Status>>;

/// `ExportEvidence`.
pub(super) async fn export_evidence(
    svc: &OperatorService,
    request: Request<v1::ExportEvidenceRequest>,
) -> Result<Response<ExportEvidenceStream>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    if r.recipient.trim().is_empty() || r.reason.trim().is_empty() {
        return Err(Status::invalid_argument(
            "export needs a recipient and a reason",
        ));
    }
    let record = svc.evidence_record(&r.id)?;
    if record.disposed {
        return Err(Status::failed_precondition(format!(
            "evidence {} was disposed of",
            record.id
        )));
    }
    svc.held_bundle(&record).await?;
    let evidence = svc.commands.evidence().clone();
    let held = record.clone();
    let checked = tokio::task::spawn_blocking(move || evidence.check_for_export(&held))
        .await
        .map_err(|e| internal("checking evidence", &e))?;
    match checked {
        Ok(()) => {}
        Err(e @ ExportRefusal::Modified { .. }) => return Err(Status::data_loss(e.to_string())),
        Err(ExportRefusal::Unreadable(e)) => return Err(internal("reading evidence", &e)),
    }
    svc.custody_event(
        name.as_str(),
        "evidence.exported",
        &record,
        &r.reason,
        format!("to {}", r.recipient),
    )
    .await?;
    let detail = svc.detail(&record).await?;
    let path = svc.commands.evidence().bundle_path(&record.sha256);
    let (tx, rx) = mpsc::channel(4);
    let mut operators = svc.operator_changes.subscribe();
    let service = svc.clone();
    // Not on a TaskTracker: an export stream ends when the bundle is read or the operator hangs up.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        if tx
            .send(Ok(v1::ExportChunk {
                detail: Some(detail),
                data: Default::default(),
            }))
            .await
            .is_err()
        {
            return;
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(internal("reading evidence", &e))).await;
                return;
            }
        };
        loop {
            if operators.has_changed().unwrap_or(false) {
                operators.mark_unchanged();
                if let Some(why) = service.revoked_from(&name, Rpc::ExportEvidence) {
                    tracing::warn!(operator = %name, reason = %why, "Evidence export cut");
                    let _ = tx.send(Err(Status::permission_denied(why))).await;
                    return;
                }
            }
            let mut buf = vec![0u8; 1024 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx
                        .send(Ok(v1::ExportChunk {
                            detail: None,
                            data: buf.into(),
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(internal("reading evidence", &e))).await;
                    return;
                }
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// `DisposeEvidence`.
pub(super) async fn dispose_evidence(
    svc: &OperatorService,
    request: Request<v1::DisposeEvidenceRequest>,
) -> Result<Response<v1::EvidenceDetail>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let method: Disposal = r.method.parse().map_err(Status::invalid_argument)?;
    let record = svc.evidence_record(&r.id)?;
    if record.disposed {
        return Err(Status::failed_precondition(format!(
            "evidence {} was already disposed of",
            record.id
        )));
    }
    // Marked on every collector, each removing its own copy, and removed
    // from the shared object store where there is one.
    let record = svc
        .journal
        .dispose_evidence(&record.id)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    svc.custody_event(
        name.as_str(),
        "evidence.disposed",
        &record,
        &r.reason,
        format!("method: {}", method.as_str()),
    )
    .await?;
    Ok(Response::new(svc.detail(&record).await?))
}
