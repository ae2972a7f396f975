//! What one host may make the collector write durably, per second.
//!
//! Every batch of telemetry, command result and evidence chunk an agent sends
//! ends up on disk. A compromised agent flooding its stream must not crowd out
//! every other host, nor fill the disk faster than retention can keep up. So
//! each host has a token bucket for events and one for bytes (refilled at
//! [`Rates`], holding [`BURST_SECS`] seconds of it). Past the budget nothing is
//! dropped: the session waits before reading the host's next message, HTTP/2
//! flow control stops the agent, and the agent keeps what it has not sent in
//! its spool. Acknowledged data is never lost; an over-eager host only slows
//! itself. The budget is per host, shared by its sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds of the sustained rate a host may send at once.
pub const BURST_SECS: u64 = 10;

/// Sustained rates for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Events per second.
    pub events_per_sec: u64,
    /// Bytes per second (events, results and evidence, as received).
    pub bytes_per_sec: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            events_per_sec: 20_000,
            bytes_per_sec: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Tokens left (may go negative: a message bigger than what is left is
    /// let through and the debt waited off before the next one).
    events: f64,
    bytes: f64,
    refilled: Instant,
    /// When this host was last told about in the log.
    logged: Option<Instant>,
    /// Time spent waiting since the last log line.
    waited: Duration,
}

/// Every host's bucket.
#[derive(Debug)]
pub struct Budgets {
    rates: Rates,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    /// Budgets at `rates`.
    pub fn new(rates: Rates) -> Self {
        Self {
            rates,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Charges `host` for `events` events and `bytes` bytes; how long to wait
    /// before reading its next message (zero within its budget).
    pub fn charge(&self, host: &str, events: u64, bytes: u64) -> Duration {
        let now = Instant::now();
        let (events_rate, bytes_rate) = (
            self.rates.events_per_sec.max(1) as f64,
            self.rates.bytes_per_sec.max(1) as f64,
        );
        let (events_cap, bytes_cap) = (
            events_rate * BURST_SECS as f64,
            bytes_rate * BURST_SECS as f64,
        );
        let mut buckets = bannin_proto::lock(&self.buckets);
        if buckets.len() > 50_000 {
            // Hosts idle for two bursts have full buckets again: forget them.
            buckets.retain(|_, b| {
                now.duration_since(b.refilled) < Duration::from_secs(BURST_SECS * 2)
            });
        }
        let bucket = buckets.entry(host.to_owned()).or_insert_with(|| Bucket {
            events: events_cap,
            bytes: bytes_cap,
            refilled: now,
            logged: None,
            waited: Duration::ZERO,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.refilled = now;
        bucket.events = (bucket.events + elapsed * events_rate).min(events_cap) - events as f64;
        bucket.bytes = (bucket.bytes + elapsed * bytes_rate).min(bytes_cap) - bytes as f64;
        let debt = f64::max(-bucket.events / events_rate, -bucket.bytes / bytes_rate);
        if debt <= 0.0 {
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64(debt.min(60.0));
        bucket.waited += wait;
        if bucket
            .logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            tracing::warn!(
                host.id = host,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                waited_ms = u64::try_from(bucket.waited.as_millis()).unwrap_or(u64::MAX),
                max_events_per_sec = self.rates.events_per_sec,
                max_bytes_per_sec = self.rates.bytes_per_sec,
                "Host over its write budget: throttled (nothing is dropped; it keeps the rest in its spool)"
            );
            bucket.logged = Some(now);
            bucket.waited = Duration::ZERO;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_hosts_are_apart() {
        let budgets = Budgets::new(Rates {
            events_per_sec: 1000,
            bytes_per_sec: 1 << 30,
        });
        // Ten seconds' worth at once is free.
        for _ in 0..10 {
            assert_eq!(budgets.charge("a", 1000, 100), Duration::ZERO);
        }
        // The next thousand costs about a second.
        let wait = budgets.charge("a", 1000, 100);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another host is untouched.
        assert_eq!(budgets.charge("b", 1000, 100), Duration::ZERO);
    }

    #[test]
    fn bytes_are_budgeted_too() {
        let budgets = Budgets::new(Rates {
            events_per_sec: 1_000_000,
            bytes_per_sec: 1000,
        });
        assert_eq!(budgets.charge("a", 1, 10_000), Duration::ZERO);
        let wait = budgets.charge("a", 1, 2_000);
        assert!(wait > Duration::from_millis(1900), "{wait:?}");
    }
}
