//! `relearn`: baseline sensors forget what they learned and learn again, quietly,
//! at their next sweep.

use super::super::command::Relearn;
use super::super::{Responder, ResponseError};

/// Asks the sensors through this agent's controls.
pub(in crate::response) fn apply(
    responder: &Responder,
    command: Relearn,
) -> Result<String, ResponseError> {
    let names = responder
        .controls
        .request_relearn(command.sensor.as_deref())?;
    Ok(format!(
        "relearning at the next sweep (quietly): {}",
        names.join(", ")
    ))
}
