//! Property tests: every decoder that takes bytes from a peer — agent batches
//! as the ingest path reads them, Alertmanager JSON, enrollment CSRs, config
//! files — survives arbitrary input: no panic, and a clear refusal.
//! (Evidence archives: `evidence::tests::fuzz_bundles_are_checked_without_panicking`.)
//!
//! `cargo test -p bannin-collector fuzz` runs 256 cases each; for millions:
//! `PROPTEST_CASES=1000000 cargo test --release -p bannin-collector fuzz`.

use std::sync::{Arc, OnceLock};

use bannin_proto::identity::HostId;
use bannin_proto::v1;
use proptest::prelude::*;
use prost::Message;

use crate::ingest::{Ingest, IngestConfig};

/// One ingest front for every case (its writer thread is never used: `prepare`
/// only reads and detects).
fn ingest() -> &'static Ingest {
    static INGEST: OnceLock<(Ingest, tempfile::TempDir)> = OnceLock::new();
    &INGEST
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = crate::store::Store::open(dir.path()).expect("store");
            let (ingest, _writer) = Ingest::start(
                store,
                IngestConfig::simple(600_000, crate::detect::Detector::default()),
            )
            .expect("ingest");
            (ingest, dir)
        })
        .0
}

fn event() -> impl Strategy<Value = v1::Event> {
    let kinds = prop::sample::select(vec![
        "process.exec",
        "net.connection",
        "net.new_listener",
        "auth.login",
        "auth.failed_logins",
        "file.modified",
        "agent.data_loss",
        "",
    ]);
    (
        prop_oneof![kinds.prop_map(str::to_owned), any::<String>()],
        any::<i32>(),
        any::<i64>(),
        any::<String>(),
        proptest::collection::btree_map(any::<String>(), any::<String>(), 0..6),
        any::<bool>(),
    )
        .prop_map(
            |(kind, severity, observed_unix_ms, summary, attributes, indicator)| v1::Event {
                kind,
                severity,
                observed_unix_ms,
                summary,
                attributes: attributes.into_iter().collect(),
                indicator,
            },
        )
}

proptest! {
    #[test]
    fn fuzz_batches_as_ingest_reads_them(
        events in proptest::collection::vec(event(), 0..8),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..4),
    ) {
        let host = HostId::new("fuzz-01").expect("id");
        let mut raw: Vec<bytes::Bytes> =
            events.iter().map(|e| e.encode_to_vec().into()).collect();
        let _ = ingest().prepare(&host, v1::TelemetryBatch { sequence: 1, events: raw.clone() });
        raw.extend(garbage.into_iter().map(bytes::Bytes::from));
        let _ = ingest().prepare(&host, v1::TelemetryBatch { sequence: 2, events: raw });
    }

    #[test]
    fn fuzz_alertmanager_json(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        name in any::<String>(),
        value in any::<String>(),
        status in prop::sample::select(vec!["firing", "resolved", "", "other"]),
    ) {
        let labels = vec!["host".to_owned(), "instance".to_owned()];
        let known = |n: &str| (n == "web-01").then(|| HostId::new("web-01").expect("id"));
        let _ = crate::webhook::findings_of(&body, &labels, known);
        let shaped = serde_json::json!({
            "version": "4", "status": status, "receiver": value,
            "alerts": [{
                "status": status,
                "labels": { "alertname": name, "instance": value, "host": "web-01", "severity": value },
                "annotations": { "summary": name, "description": value },
                "startsAt": value, "endsAt": name, "fingerprint": value,
            }],
        });
        if let Ok((findings, _)) = crate::webhook::findings_of(shaped.to_string().as_bytes(), &labels, known) {
            for f in findings {
                prop_assert_eq!(f.host_id.as_str(), "web-01");
            }
        }
    }

    #[test]
    fn fuzz_enrollment_csrs(
        der in proptest::collection::vec(any::<u8>(), 0..1024),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        text in any::<String>(),
    ) {
        let authority = authority();
        let _ = authority.sign(&text);
        let as_pem = |bytes: Vec<u8>| pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", bytes));
        let _ = authority.sign(&as_pem(der));
        // A real request, damaged.
        let mut real = real_csr().to_vec();
        let len = real.len();
        for (at, b) in flips {
            real[at % len] = b;
        }
        let _ = authority.sign(&as_pem(real));
    }

    #[test]
    fn fuzz_collector_config_files(text in any::<String>(), value in any::<String>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collector.toml");
        std::fs::write(&path, &text).expect("write");
        let _ = crate::config::CollectorConfig::load(&path);
        let shaped = format!(
            "listen = {value:?}\ndata_dir = {value:?}\n[tls]\nca = {value:?}\ncert = \"c\"\nkey = \"k\"\n[[suppress]]\nkind = {value:?}\nhost = {value:?}\n[webhook]\nlisten = {value:?}\n[[sink]]\ntype = {value:?}\nurl = {value:?}\n"
        );
        std::fs::write(&path, shaped).expect("write");
        let _ = crate::config::CollectorConfig::load(&path);
    }
}

fn real_csr() -> &'static [u8] {
    static CSR: OnceLock<Vec<u8>> = OnceLock::new();
    CSR.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        rcgen::CertificateParams::new(vec!["fuzz".to_owned()])
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .der()
            .to_vec()
    })
}

fn authority() -> &'static crate::enroll::Authority {
    static AUTHORITY: OnceLock<(crate::enroll::Authority, tempfile::TempDir)> = OnceLock::new();
    &AUTHORITY
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let pki = crate::pki::PkiDir(dir.path().join("pki"));
            pki.init(&[], &[], false).expect("pki");
            let store = crate::store::Store::open(&dir.path().join("store")).expect("store");
            let hosts = Arc::new(
                crate::hosts::HostRegistry::load(
                    store,
                    3,
                    Arc::new(crate::correlate::FleetView::default()),
                )
                .expect("hosts"),
            );
            let authority = crate::enroll::Authority::load(
                &pki.ca_cert(),
                &pki.ca_key(),
                std::time::Duration::from_secs(3600),
                hosts,
            )
            .expect("authority");
            (authority, dir)
        })
        .0
}
