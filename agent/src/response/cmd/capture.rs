//! `capture`: packets from the wire into a pcapng file beside the spool (on a
//! thread of its own: it waits on sockets for up to an hour), sealed in a
//! bundle, streamed to the collector in verified chunks, then removed.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bannin_proto::v1;
use tokio::sync::mpsc;

use super::super::command::Capture;
use super::super::{Responder, ResponseError, capture, snapshot, stream_file};
use super::StopOnDrop;

/// Captures, seals and streams; answers with what was captured and the bundle's hash.
pub(in crate::response) async fn apply(
    responder: &Responder,
    command: Capture,
    id: &str,
    out: &mpsc::Sender<v1::agent_message::Body>,
) -> Result<String, ResponseError> {
    let config = &responder.config;
    let pcap = config.work_dir.join(format!("capture-{id}.pcapng"));
    let bundle = config.work_dir.join(format!("capture-{id}.tar.zst"));
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let manifest = snapshot::manifest_now(&config.host_id, id, &command.operator, &command.reason);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (pcap_path, bundle_path) = (pcap.clone(), bundle.clone());
    let request = command.request;
    let spawned = std::thread::Builder::new()
        .name(format!("capture-{id}"))
        .spawn(move || {
            let sealed = (|| {
                let file = std::fs::File::create(&pcap_path).map_err(ResponseError::Collect)?;
                let summary = capture::capture(&request, &stop, std::io::BufWriter::new(file))?;
                let mut manifest = manifest;
                manifest.capture = serde_json::to_value(&summary).ok();
                let out = std::fs::File::create(&bundle_path).map_err(ResponseError::Collect)?;
                snapshot::seal_one(
                    manifest,
                    "capture.pcapng",
                    "packets from the wire",
                    &pcap_path,
                    std::io::BufWriter::new(out),
                )
                .map_err(ResponseError::Collect)?;
                Ok::<_, ResponseError>(summary)
            })();
            let _ = std::fs::remove_file(&pcap_path);
            let _ = tx.send(sealed);
        });
    let outcome = match spawned {
        Ok(_) => rx.await.map_err(|_| ResponseError::Thread("capture")),
        Err(e) => Err(ResponseError::Collect(e)),
    };
    let summary = match outcome.and_then(|r| r) {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&bundle);
            return Err(e);
        }
    };
    let streamed = stream_file(&bundle, id, out).await;
    let _ = std::fs::remove_file(&bundle);
    let (size, sha) = streamed?;
    let dropped: u64 = summary.interfaces.iter().map(|i| i.dropped_by_kernel).sum();
    Ok(format!(
        "captured {} packets ({} bytes) on {} until {}, {dropped} dropped by the kernel; bundle {size} bytes, sha256 {sha}",
        summary.packets,
        summary.bytes,
        summary
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        match summary.ended_by {
            "time" => "its time was up",
            "size cap" => "its size cap",
            _ => "it was stopped",
        }
    ))
}
