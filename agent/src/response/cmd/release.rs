//! `release`: removes exactly the isolation table, and forgets the saved state.

use super::super::{Responder, ResponseError, isolate};

/// Removes the table; the host was isolated or not, both are a success.
pub(in crate::response) async fn apply(responder: &Responder) -> Result<String, ResponseError> {
    let removed = isolate::remove().await?;
    responder.persist(None)?;
    Ok(if removed {
        "released: isolation table removed".into()
    } else {
        "released: the host was not isolated".into()
    })
}
