//! `ping`: the agent answers at once (a round trip through the command queue).

use super::super::Responder;

/// The agent's version and uptime.
pub(in crate::response) fn apply(responder: &Responder) -> String {
    format!(
        "agent {} up {} s",
        bannin_proto::VERSION,
        responder.started.elapsed().as_secs()
    )
}
