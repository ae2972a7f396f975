//! `snapshot`: volatile state first, then the named files, collected into a bundle
//! beside the spool (on the blocking pool), streamed to the collector in verified
//! chunks, then removed.

use bannin_proto::v1;
use tokio::sync::mpsc;

use super::super::command::Snapshot;
use super::super::{Responder, ResponseError, snapshot, stream_file};
use crate::host::HostRoot;

/// Collects and streams; answers with the bundle's size and hash.
pub(in crate::response) async fn apply(
    responder: &Responder,
    command: Snapshot,
    id: &str,
    out: &mpsc::Sender<v1::agent_message::Body>,
) -> Result<String, ResponseError> {
    let config = &responder.config;
    let request = snapshot::Request {
        command_id: id.to_owned(),
        operator: command.operator,
        reason: command.reason,
        files: command.files,
        max_file_bytes: snapshot::DEFAULT_MAX_FILE_BYTES,
        max_bundle_bytes: snapshot::DEFAULT_MAX_BUNDLE_BYTES,
        integrity_baselines: Some(config.work_dir.join(crate::sensors::file_integrity::NAME)),
    };
    let path = config.work_dir.join(format!("snapshot-{id}.tar.zst"));
    let root = HostRoot(config.root.clone());
    let host = config.host_id.clone();
    let file_path = path.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&file_path)?;
        snapshot::collect(&root, &host, request, std::io::BufWriter::new(file))
    })
    .await
    .map_err(|source| ResponseError::Task {
        what: "snapshot",
        source,
    })?
    .map_err(ResponseError::Collect)?;
    let streamed = stream_file(&path, id, out).await;
    let _ = std::fs::remove_file(&path);
    let (size, sha) = streamed?;
    Ok(format!(
        "bundle {size} bytes, sha256 {sha}, {} artifacts, {} not collected",
        manifest.artifacts.len(),
        manifest.skipped.len()
    ))
}
