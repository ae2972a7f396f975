//! `hunt` and `stop_hunt`: a hunt's question answered on a thread of its own
//! at the lowest priority, cancellable; a stop sets its flag.

use super::super::hunt::{self, Hunt};
use super::super::{Responder, ResponseError};
use super::StopOnDrop;
use crate::host::HostRoot;

/// Runs the hunt; the answer (hits and costs) as JSON text.
pub(in crate::response) async fn apply(
    responder: &Responder,
    command: Hunt,
) -> Result<String, ResponseError> {
    let stop = responder.hunt_flag(&command.id);
    let _stop_on_drop = StopOnDrop(stop.clone());
    let root = HostRoot(responder.config.root.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let id = command.id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("hunt-{}", command.id))
        .spawn(move || {
            crate::host::priority::lower();
            let _ = tx.send(hunt::run(&root, &command, &stop));
        });
    let outcome = match spawned {
        Ok(_) => rx.await.map_err(|_| ResponseError::Thread("hunt")),
        Err(e) => Err(ResponseError::Collect(e)),
    };
    responder.hunt_done(&id);
    let answer = outcome??;
    Ok(answer.to_json())
}

/// Cancels a hunt queued or running here.
pub(in crate::response) fn stop(responder: &Responder, id: &str) -> String {
    if responder.stop_hunt(id) {
        format!("hunt {id} stopping")
    } else {
        format!("hunt {id} is not running here")
    }
}
