//! Property tests: every decoder here that reads bytes from a peer survives
//! arbitrary input — no panic, and what it accepts is what it promised.
//!
//! `cargo test -p bannin-proto fuzz` runs 256 cases each; for millions:
//! `PROPTEST_CASES=1000000 cargo test --release -p bannin-proto fuzz`.

use proptest::prelude::*;
use prost::Message;

use crate::v1;

fn hello_strategy() -> impl Strategy<Value = v1::Hello> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        proptest::collection::vec(any::<String>(), 0..6),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
        any::<u32>(),
    )
        .prop_map(
            |(host_id, hostname, os, addresses, labels, beat)| v1::Hello {
                host_id,
                hostname,
                os,
                addresses,
                labels: labels.into_iter().collect(),
                heartbeat_interval_secs: beat,
                ..Default::default()
            },
        )
}

proptest! {
    #[test]
    fn fuzz_agent_messages_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(message) = v1::AgentMessage::decode(bytes.as_slice())
            && let Some(v1::agent_message::Body::Hello(hello)) = message.body
        {
            let _ = crate::hello::check(&hello);
        }
        if let Ok(batch) = v1::TelemetryBatch::decode(bytes.as_slice()) {
            for raw in batch.events {
                let _ = v1::EventHeader::decode(raw.clone());
                let _ = v1::Event::decode(raw);
            }
        }
        let _ = v1::EvidenceChunk::decode(bytes.as_slice());
        let _ = v1::CommandResult::decode(bytes.as_slice());
    }

    #[test]
    fn fuzz_a_hello_the_check_accepts_is_printable(hello in hello_strategy()) {
        if crate::hello::check(&hello).is_ok() {
            prop_assert!(!hello.hostname.chars().any(crate::hello::is_unsafe_char));
            prop_assert!(!hello.os.chars().any(crate::hello::is_unsafe_char));
            prop_assert!(hello.hostname.len() <= 253);
        }
        let shown = crate::hello::inert_debug(&hello.hostname);
        prop_assert!(!shown.chars().any(crate::hello::is_unsafe_char));
        let _ = crate::hello::host_name(&hello.hostname);
    }

    #[test]
    fn fuzz_certificates_and_identities(der in proptest::collection::vec(any::<u8>(), 0..2048), uri in any::<String>()) {
        let _ = crate::identity::PeerIdentity::from_certificate(&der);
        let _ = crate::identity::certificate_key_sha256(&der);
        let _ = crate::identity::PeerIdentity::from_uri(&uri);
        if let Ok(h) = crate::identity::HostId::new(uri.as_str()) {
            prop_assert!(!h.as_str().chars().any(crate::hello::is_unsafe_char));
        }
    }

    #[test]
    fn fuzz_archive_names(name in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(accepted) = crate::evidence_names::check_entry(&name) {
            prop_assert!(accepted == "manifest.json" || accepted.starts_with("artifacts/"), "{accepted}");
            prop_assert!(!accepted.split('/').any(|c| c == ".." || c == "." || c.is_empty()));
            prop_assert!(!accepted.chars().any(crate::hello::is_unsafe_char));
        }
        // Every name the agent makes is one the collector accepts.
        let made = crate::evidence_names::artifact_name(&String::from_utf8_lossy(&name));
        let entry = format!("artifacts/{made}");
        prop_assert!(
            crate::evidence_names::check_entry(entry.as_bytes()).is_ok(),
            "the agent made {entry:?}, which the collector refuses"
        );
    }

    #[test]
    fn fuzz_labels(text in any::<String>(), key in any::<String>(), value in any::<String>()) {
        let _ = crate::labels::parse_assignment(&text);
        let map = std::collections::BTreeMap::from([(key, value)]);
        let _ = crate::labels::check(&map);
    }

    #[test]
    fn fuzz_config_text(text in any::<String>()) {
        let errors = crate::config::ConfigErrors::new(std::path::Path::new("fuzz.toml"));
        let _ = crate::config::parse_toml::<toml::Value>(&text, errors);
    }
}
