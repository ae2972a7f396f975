//! Suppression rules: findings an organisation has decided not to queue —
//! a CI runner that executes from `/tmp` by design, a scanner's sweep — each
//! with a reason and, usually, an expiry.
//!
//! A suppressed finding is never silently dropped: its event stays in the
//! event store, and the rule's hit count and last hit are kept durably and
//! shown by `bannin rules`. An expired rule suppresses nothing and says so.
//!
//! ```toml
//! [[suppress]]
//! name = "ci-builds"
//! reason = "CI runners execute their builds from /tmp (CHG-1234)"
//! kind = "process.suspicious_exec"        # exact, or a family: "process.*"
//! hosts = ["ci-01", "ci-02"]              # any of them (optional)
//! labels = { role = "ci" }                # all of them (optional)
//! attributes = { exe = "^/tmp/build-" }   # regular expressions, all must match (optional)
//! expires = "2026-12-31T00:00:00Z"        # RFC 3339 (optional)
//! ```

use std::collections::BTreeMap;

use crate::model::NewFinding;

/// One suppression rule.
#[derive(Debug, Clone)]
pub struct SuppressRule {
    /// Unique name.
    pub name: String,
    /// Why (shown with its hits).
    pub reason: String,
    /// Kind, exact or `family.*`; empty: any kind.
    pub kind: String,
    /// Hosts it applies to; empty: any.
    pub hosts: Vec<String>,
    /// Labels a host must carry, all of them.
    pub labels: BTreeMap<String, String>,
    /// Attribute patterns, all of which must match.
    pub attributes: Vec<(String, regex::Regex)>,
    /// When it stops applying (Unix ms).
    pub expires_unix_ms: Option<i64>,
}

impl SuppressRule {
    /// Whether the rule is in force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.expires_unix_ms.is_none_or(|e| now < e)
    }

    /// Whether it suppresses `finding` on a host with `labels`, at `now`.
    pub fn matches(
        &self,
        finding: &NewFinding,
        labels: &BTreeMap<String, String>,
        now: i64,
    ) -> bool {
        if !self.active(now) {
            return false;
        }
        let kind_ok = match self.kind.strip_suffix(".*") {
            _ if self.kind.is_empty() => true,
            Some(family) => finding
                .kind
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('.')),
            None => finding.kind == self.kind,
        };
        kind_ok
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h == finding.host_id.as_str()))
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self
                .attributes
                .iter()
                .all(|(k, re)| finding.attributes.get(k).is_some_and(|v| re.is_match(v)))
    }

    /// Whether the rule needs the host's labels.
    pub fn needs_labels(&self) -> bool {
        !self.labels.is_empty()
    }
}

/// A rule's hits, kept durably in the store's counters.
pub fn hits_counter(rule: &str) -> String {
    format!("suppress.{rule}.hits")
}

/// A rule's last hit (Unix ms), kept durably in the store's counters.
pub fn last_hit_counter(rule: &str) -> String {
    format!("suppress.{rule}.last")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bannin_proto::identity::HostId;

    fn finding(kind: &str, host: &str, exe: &str) -> NewFinding {
        NewFinding {
            host_id: HostId::new(host).expect("host"),
            kind: kind.into(),
            severity: crate::model::Severity::High,
            observed_unix_ms: 0,
            attributes: [("exe".to_owned(), exe.to_owned())].into(),
            summary: String::new(),
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let rule = SuppressRule {
            name: "ci".into(),
            reason: "builds".into(),
            kind: "process.*".into(),
            hosts: Vec::new(),
            labels: [("role".to_owned(), "ci".to_owned())].into(),
            attributes: vec![("exe".into(), regex::Regex::new("^/tmp/build-").expect("re"))],
            expires_unix_ms: Some(1_000),
        };
        let ci: BTreeMap<String, String> = [("role".to_owned(), "ci".to_owned())].into();
        let web: BTreeMap<String, String> = [("role".to_owned(), "web".to_owned())].into();
        let f = finding("process.suspicious_exec", "ci-01", "/tmp/build-42/cc");
        assert!(rule.matches(&f, &ci, 0));
        assert!(!rule.matches(&f, &web, 0), "label");
        assert!(!rule.matches(&f, &ci, 1_000), "expired");
        assert!(
            !rule.matches(&finding("processx.y", "ci-01", "/tmp/build-1"), &ci, 0),
            "family"
        );
        assert!(
            !rule.matches(&finding("process.exec", "ci-01", "/tmp/evil"), &ci, 0),
            "attribute"
        );
        let exact = SuppressRule {
            kind: "net.new_listener".into(),
            hosts: vec!["web-1".into()],
            labels: BTreeMap::new(),
            attributes: Vec::new(),
            expires_unix_ms: None,
            ..rule
        };
        assert!(exact.matches(
            &finding("net.new_listener", "web-1", ""),
            &BTreeMap::new(),
            i64::MAX - 1
        ));
        assert!(!exact.matches(
            &finding("net.new_listener", "web-2", ""),
            &BTreeMap::new(),
            0
        ));
    }
}
