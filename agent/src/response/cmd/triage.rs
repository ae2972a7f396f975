//! `triage`: one read-only question, answered at once (on the blocking pool: it
//! walks `/proc` or reads files).

use super::super::command::Triage;
use super::super::{Responder, ResponseError, triage};
use crate::host::HostRoot;

/// The answer as JSON text.
pub(in crate::response) async fn apply(
    responder: &Responder,
    command: Triage,
) -> Result<String, ResponseError> {
    let root = HostRoot(responder.config.root.clone());
    tokio::task::spawn_blocking(move || {
        triage::answer(&root, command.question, command.path.as_deref())
    })
    .await
    .map_err(|source| ResponseError::Task {
        what: "triage",
        source,
    })?
    .map_err(ResponseError::from)
}
