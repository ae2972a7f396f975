//! Property tests: every decoder that takes bytes from a peer — agent batches
//! as the ingest path reads them (with and without Sigma rules, whose reader
//! scans the encoded event in place), Alertmanager JSON, enrollment CSRs,
//! config files, Sigma rule files — survives arbitrary input: no panic, and a
//! clear refusal.
//! (Evidence archives: `evidence::tests::fuzz_bundles_are_checked_without_panicking`.)
//!
//! `cargo test -p bannin-collector fuzz` runs 256 cases each; for millions:
//! `PROPTEST_CASES=1000000 cargo test --release -p bannin-collector fuzz`.

use std::sync::Arc;

use bannin_proto::identity::HostId;
use bannin_proto::v1;
use proptest::prelude::*;
use prost::Message;

use crate::ingest::{Ingest, IngestConfig};

/// An ingest front over a store in `dir` (its writer thread is never used:
/// `prepare` only reads and detects).
fn ingest(dir: &std::path::Path) -> Ingest {
    let store = crate::store::Store::open(dir).expect("store");
    Ingest::start(
        store,
        IngestConfig::simple(600_000, crate::detect::Detector::default()),
    )
    .expect("ingest")
    .0
}

/// Runs `cases` proptest cases of `strategy` through `test` (fixtures made
/// once, outside the cases, and dropped at the end: nothing left in /tmp).
fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::default());
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
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
    /// The in-place reader of an encoded event reads what a full decode reads,
    /// and arbitrary bytes are an error or nothing, never a panic.
    #[test]
    fn fuzz_sigma_wire_reader(e in event(), junk in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = crate::sigma::SigmaEvent::from_wire("fuzz-01", &junk);
        let wire = e.encode_to_vec();
        let read = crate::sigma::SigmaEvent::from_wire("fuzz-01", &wire).expect("a valid event reads");
        let decoded = crate::sigma::SigmaEvent::from_event("fuzz-01", &e.kind, e.observed_unix_ms, &e.attributes);
        prop_assert_eq!(read.is_some(), decoded.is_some());
        if let (Some((r, summary)), Some(d)) = (read, decoded) {
            prop_assert_eq!(r.text_fields().collect::<Vec<_>>(), d.text_fields().collect::<Vec<_>>());
            prop_assert_eq!(summary, e.summary.as_str());
        }
    }

    /// Deep and wide rule files (nested `not`s and parentheses, long `or`
    /// chains, deep YAML flow nesting, repeated regexes) load or are refused
    /// naming the file and a limit — on a 2 MiB stack (a blocking-pool or
    /// worker thread's; the reload thread has 8 MiB), so no input recurses its
    /// way to an abort — and refused exactly when over a limit.
    #[test]
    fn fuzz_sigma_deep_and_wide_rules(
        nots in 0usize..80,
        parens in 0usize..80,
        ors in 0usize..600,
        flow in 0usize..100,
        regexes in 0usize..20,
    ) {
        use crate::sigma::limits;
        let mut operands: Vec<String> = vec!["s".to_owned()];
        operands.extend((0..ors).map(|i| format!("s{i}")));
        let condition = format!(
            "{}{}{}{}",
            "not ".repeat(nots),
            "(".repeat(parens),
            operands.join(" or "),
            ")".repeat(parens)
        );
        let selections: String = std::iter::once("s".to_owned())
            .chain((0..ors).map(|i| format!("s{i}")))
            .map(|n| format!("  {n}:\n    CommandLine|contains: {n}x\n"))
            .collect();
        let regex_rules: String = (0..regexes)
            .map(|i| format!("---\ntitle: r{i}\nid: r{i}\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    CommandLine|re: 'a{{1,{}}}b'\n  condition: s\n", 10 + i))
            .collect();
        let text = format!(
            "title: t\nid: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{selections}  condition: {condition}\nx: {}{}\n{regex_rules}",
            "[".repeat(flow),
            "]".repeat(flow)
        );
        let over = nots + parens > limits::MAX_CONDITION_DEPTH
            || condition.len() > limits::MAX_CONDITION_BYTES
            || flow > limits::MAX_FLOW_DEPTH;
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                let path = std::path::Path::new("deep.yml");
                crate::sigma::parse_text(path, &text)
                    .and_then(|c| crate::sigma::build(vec![(path.to_owned(), c)]))
                    .map(|set| set.rules.len())
                    .map_err(|e| e.to_string())
            })
            .expect("thread")
            .join();
        let outcome = outcome.map_err(|_| "the loader panicked or overflowed").expect("returns");
        match outcome {
            Ok(rules) => {
                prop_assert!(!over, "loaded over a limit");
                prop_assert_eq!(rules, 1 + regexes);
            }
            Err(e) => {
                prop_assert!(over, "refused within the limits: {}", e);
                prop_assert!(e.starts_with("deep.yml: "), "{}", e);
                prop_assert!(e.contains("limit") || e.contains("deeper than"), "{}", e);
            }
        }
    }

    /// Sigma rule files: any text loads, or is refused naming the file.
    #[test]
    fn fuzz_sigma_rule_files(text in any::<String>(), value in any::<String>()) {
        let path = std::path::Path::new("fuzz.yml");
        if let Err(e) = crate::sigma::parse_text(path, &text) {
            prop_assert!(e.to_string().contains("fuzz.yml"));
        }
        let shaped = format!(
            "title: {value:?}\nid: {value:?}\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    CommandLine|contains: {value:?}\n    Image|re: {value:?}\n  condition: s\n"
        );
        if let Ok(c) = crate::sigma::parse_text(path, &shaped) {
            let _ = crate::sigma::build(vec![(path.to_owned(), c)]);
        }
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

fn authority(dir: &std::path::Path) -> crate::enroll::Authority {
    let pki = crate::pki::PkiDir(dir.join("pki"));
    pki.init(&[], &[], false).expect("pki");
    let store = crate::store::Store::open(&dir.join("store")).expect("store");
    let hosts = Arc::new(
        crate::hosts::HostRegistry::load(
            store,
            3,
            Arc::new(crate::correlate::FleetView::default()),
        )
        .expect("hosts"),
    );
    crate::enroll::Authority::load(
        &pki.ca_cert(),
        &pki.ca_key(),
        std::time::Duration::from_secs(3600),
        hosts,
    )
    .expect("authority")
}

#[test]
fn fuzz_batches_as_ingest_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = ingest(&dir.path().join("plain"));
    // The same batches through the Sigma path (events read in place).
    let rules = crate::sigma::parse_text(
        std::path::Path::new("fuzz.yml"),
        "title: f\nname: f\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    CommandLine|contains: a\n  condition: s\n---\ntitle: c\ncorrelation:\n  type: event_count\n  rules:\n    - f\n  timespan: 1m\n  condition:\n    gte: 2\n",
    )
    .expect("rules");
    let mut config = IngestConfig::simple(600_000, crate::detect::Detector::default());
    config.sigma = Arc::new(
        crate::sigma::build(vec![(std::path::PathBuf::from("fuzz.yml"), rules)]).expect("set"),
    );
    let sigma = Ingest::start(
        crate::store::Store::open(&dir.path().join("sigma")).expect("store"),
        config,
    )
    .expect("ingest")
    .0;
    let host = HostId::new("fuzz-01").expect("id");
    run(
        (
            proptest::collection::vec(event(), 0..8),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..4),
        ),
        |(events, garbage)| {
            let mut raw: Vec<bytes::Bytes> =
                events.iter().map(|e| e.encode_to_vec().into()).collect();
            for ingest in [&plain, &sigma] {
                let _ = ingest.prepare(
                    &host,
                    v1::TelemetryBatch {
                        sequence: 1,
                        events: raw.clone(),
                    },
                );
            }
            raw.extend(garbage.into_iter().map(bytes::Bytes::from));
            for ingest in [&plain, &sigma] {
                let _ = ingest.prepare(
                    &host,
                    v1::TelemetryBatch {
                        sequence: 2,
                        events: raw.clone(),
                    },
                );
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_enrollment_csrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let authority = authority(dir.path());
    let real = {
        let key = rcgen::KeyPair::generate().expect("key");
        rcgen::CertificateParams::new(vec!["fuzz".to_owned()])
            .expect("params")
            .serialize_request(&key)
            .expect("csr")
            .der()
            .to_vec()
    };
    let as_pem = |bytes: Vec<u8>| pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", bytes));
    run(
        (
            proptest::collection::vec(any::<u8>(), 0..1024),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            any::<String>(),
        ),
        |(der, flips, text)| {
            let _ = authority.sign(&text);
            let _ = authority.sign(&as_pem(der));
            // A real request, damaged.
            let mut damaged = real.clone();
            let len = damaged.len();
            for (at, b) in flips {
                damaged[at % len] = b;
            }
            let _ = authority.sign(&as_pem(damaged));
            Ok(())
        },
    );
}
