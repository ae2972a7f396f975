//! Bannin's contract: the gRPC services every side speaks, the identity convention
//! carried in certificates, and the one mTLS configuration every side builds from.
//!
//! # Layout
//!
//! - [`v1`]: generated prost/tonic code for `proto/bannin/v1/bannin.proto`
//!   (compiled by protox at build time; no system `protoc`).
//! - [`identity`]: how a host id or an operator name is carried in a certificate,
//!   and the validated name types.
//! - [`tls`]: loading PEM material, the rustls server and client configurations,
//!   the accepting side (a stream of authenticated connections for tonic) and the
//!   connecting side (a tonic `Channel` over our rustls client).
//! - [`config`]: TOML loading with every problem reported at once (exit code 64).
//! - [`labels`]: host label keys and values.
//! - [`commands`]: the typed commands' names and the conversion between the
//!   operator API's form and the agent link's.
//! - [`process`]: logging set-up and process helpers for the binaries.
//! - [`vocab`]: what every side shares: severity names, the SHA-256 hex digest,
//!   the poison-tolerant lock.
//!
//! Architecture invariant: a peer's identity comes from its certificate, never from
//! a message field. [`tls::PeerInfo`] is the only way the collector learns who is
//! calling.

pub mod codec;
pub mod commands;
pub mod config;
pub mod evidence_names;
#[cfg(test)]
mod fuzz;
pub mod hello;
pub mod hunts;
pub mod identity;
pub mod labels;
pub mod process;
pub mod tls;
pub mod vocab;

pub use vocab::{hex, lock, rfc3339, sha256_hex};

/// Generated code for package `bannin.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("bannin.v1");
}

impl v1::TelemetryBatch {
    /// A batch of `events`, each encoded as the contract carries them.
    pub fn from_events(sequence: u64, events: &[v1::Event]) -> Self {
        use prost::Message;
        Self {
            sequence,
            events: events
                .iter()
                .map(|e| bytes::Bytes::from(e.encode_to_vec()))
                .collect(),
        }
    }

    /// Decodes every event of the batch.
    pub fn decode_events(&self) -> Result<Vec<v1::Event>, prost::DecodeError> {
        use prost::Message;
        self.events
            .iter()
            .map(|raw| v1::Event::decode(raw.clone()))
            .collect()
    }
}

/// Version of the Bannin workspace this crate was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest encoded message either side accepts by default (4 MiB).
///
/// The limit is checked against the gRPC length prefix before the body is
/// buffered, so an oversized frame is refused without being allocated.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Milliseconds since the Unix epoch, now. Clamped to 0 for clocks before 1970.
pub fn now_unix_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}
