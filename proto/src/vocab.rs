//! Vocabulary every side shares, written once: severity names, the SHA-256 hex
//! digest, RFC 3339 times, and the poison-tolerant lock.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::v1;

/// Lower-case hex of `bytes` (a digest as Bannin prints and stores it).
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(Sha256::digest(bytes.as_ref()))
}

/// Whether `text` is a SHA-256 as Bannin writes one: 64 lower-case hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Locks `m`, taking the data even if a thread panicked while holding it: every
/// critical section in Bannin leaves its data consistent at each step (counters,
/// queues, maps of live sessions), so a panic elsewhere must not stop the rest.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// RFC 3339 UTC time of a Unix millisecond timestamp (`2026-11-25T21:30:05.123Z`;
/// "" for 0, which Bannin's records use for "never").
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    if ms == 0 {
        return String::new();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The triage questions an agent answers (`bannin triage HOST QUESTION`).
pub const TRIAGE_QUESTIONS: [&str; 9] = [
    "processes",
    "connections",
    "listeners",
    "logins",
    "users",
    "services",
    "stat",
    "hash",
    "ls",
];

/// Names of the severities, lowest first, as in configuration files and output.
pub const SEVERITY_NAMES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

impl v1::Severity {
    /// Lower-case name (`unspecified` reads as `info`, as everywhere else).
    pub fn name(self) -> &'static str {
        match self {
            v1::Severity::Unspecified | v1::Severity::Info => "info",
            v1::Severity::Low => "low",
            v1::Severity::Medium => "medium",
            v1::Severity::High => "high",
            v1::Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "info" => Some(v1::Severity::Info),
            "low" => Some(v1::Severity::Low),
            "medium" => Some(v1::Severity::Medium),
            "high" => Some(v1::Severity::High),
            "critical" => Some(v1::Severity::Critical),
            _ => None,
        }
    }

    /// The name of a wire value; unknown values read as `info`.
    pub fn name_of(value: i32) -> &'static str {
        v1::Severity::try_from(value)
            .unwrap_or(v1::Severity::Unspecified)
            .name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sha256() {
        assert_eq!(hex([0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn times_read_as_rfc3339_utc() {
        assert_eq!(rfc3339(1_796_094_941_272), "2026-12-01T03:15:41.272Z");
        assert_eq!(rfc3339(0), "");
    }

    #[test]
    fn severity_names_round_trip() {
        for name in SEVERITY_NAMES {
            let s = v1::Severity::from_name(name).expect(name);
            assert_eq!(s.name(), name);
            assert_eq!(v1::Severity::name_of(s as i32), name);
        }
        assert_eq!(v1::Severity::from_name("Critical"), None);
        assert_eq!(v1::Severity::name_of(99), "info");
    }

    #[test]
    fn a_poisoned_lock_still_opens() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
