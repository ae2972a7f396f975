//! Findings: the queue, following it, triage states, and findings people report.

use bannin_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc, caller, page};
use crate::ingest::IngestError;
use crate::link::internal;
use crate::model::{Action, Finding, FindingState, Severity};
use crate::store::{Store, StoreError};

/// Kinds of findings people report.
pub const REPORT_KINDS: &[&str] = &["report.external", "report.threat", "report.user"];

/// How many findings one filtered `ListFindings` page reads at most: a
/// filter that passes few answers in bounded time, and `scanned_to` says
/// where it stopped.
pub const SCAN_BUDGET: usize = 200_000;

/// Longest kind (or family) a filter may name.
const MAX_KIND: usize = 128;
/// Most values one filter may list.
const MAX_VALUES: usize = 64;

/// What `ListFindings` and `FollowFindings` keep: every non-empty part must
/// pass (`v1::FindingFilter`).
#[derive(Debug, Default)]
pub(super) struct Filter {
    severities: Vec<Severity>,
    states: Vec<FindingState>,
    /// Exact kinds, or prefixes (from `process.` or `process.*`).
    kinds: Vec<(String, bool)>,
    host: String,
    /// `(key, Some(value))`, or `(key, None)` for any value.
    labels: Vec<(String, Option<String>)>,
    /// Each host's verdict on the labels, read once.
    hosts: std::collections::HashMap<String, bool>,
    /// Lower-case words, each found somewhere in the finding.
    words: Vec<String>,
    /// Last observed at or after / before (0: open).
    since: i64,
    until: i64,
}

/// Longest free-text search.
const MAX_TEXT: usize = 1024;

impl Filter {
    /// The filter asked for, or why it cannot be read.
    pub(super) fn of(f: Option<&v1::FindingFilter>) -> Result<Self, Status> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        for (what, n) in [
            ("severities", f.severities.len()),
            ("states", f.states.len()),
            ("kinds", f.kinds.len()),
            ("labels", f.labels.len()),
        ] {
            if n > MAX_VALUES {
                return Err(Status::invalid_argument(format!(
                    "a filter lists at most {MAX_VALUES} {what}"
                )));
            }
        }
        let severities = f
            .severities
            .iter()
            .map(|&s| match v1::Severity::try_from(s) {
                Ok(v1::Severity::Unspecified) | Err(_) => {
                    Err(Status::invalid_argument(format!("unknown severity {s}")))
                }
                Ok(_) => Ok(Severity::from_wire(s)),
            })
            .collect::<Result<_, _>>()?;
        let states = f
            .states
            .iter()
            .map(|&s| {
                FindingState::from_wire(s)
                    .ok_or_else(|| Status::invalid_argument(format!("unknown finding state {s}")))
            })
            .collect::<Result<_, _>>()?;
        let kinds = f
            .kinds
            .iter()
            .map(|kind| {
                if kind.is_empty() || kind.len() > MAX_KIND || kind.chars().any(char::is_control) {
                    return Err(Status::invalid_argument(format!(
                        "a kind is 1 to {MAX_KIND} printable characters: {kind:?}"
                    )));
                }
                Ok(match kind.strip_suffix('*') {
                    Some(prefix) => (prefix.to_owned(), true),
                    None => (kind.clone(), kind.ends_with('.')),
                })
            })
            .collect::<Result<_, Status>>()?;
        let labels = f
            .labels
            .iter()
            .map(|l| {
                let (k, v) = match l.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_owned())),
                    None => (l.as_str(), None),
                };
                bannin_proto::labels::check_key(k)
                    .map_err(|e| Status::invalid_argument(format!("label filter {l:?}: {e}")))?;
                Ok((k.to_owned(), v))
            })
            .collect::<Result<_, Status>>()?;
        if f.text.len() > MAX_TEXT || f.text.chars().any(char::is_control) {
            return Err(Status::invalid_argument(format!(
                "a search text is at most {MAX_TEXT} bytes, printable"
            )));
        }
        Ok(Self {
            severities,
            states,
            kinds,
            host: f.host_id.clone(),
            labels,
            hosts: Default::default(),
            words: f
                .text
                .split_whitespace()
                .map(str::to_lowercase)
                .take(MAX_VALUES)
                .collect(),
            since: f.since_unix_ms,
            until: f.until_unix_ms,
        })
    }

    /// Whether every word is in the finding's text (summary, kind, host,
    /// attribute values), each field lower-cased once.
    fn has_words(&self, f: &Finding) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let fields: Vec<String> = [&f.summary, &f.kind, &f.host_id]
            .into_iter()
            .chain(f.attributes.values())
            .map(|s| s.to_lowercase())
            .collect();
        self.words
            .iter()
            .all(|word| fields.iter().any(|s| s.contains(word.as_str())))
    }

    fn is_empty(&self) -> bool {
        self.severities.is_empty()
            && self.states.is_empty()
            && self.kinds.is_empty()
            && self.host.is_empty()
            && self.labels.is_empty()
            && self.words.is_empty()
            && self.since == 0
            && self.until == 0
    }

    /// Whether `f` passes (its host's labels read from `store`, once).
    pub(super) fn keep(&mut self, f: &Finding, store: &Store) -> Result<bool, StoreError> {
        let passes = (self.severities.is_empty() || self.severities.contains(&f.severity))
            && (self.states.is_empty() || self.states.contains(&f.state))
            && (self.host.is_empty() || f.host_id.as_str() == self.host)
            && (self.kinds.is_empty()
                || self.kinds.iter().any(|(k, prefix)| {
                    if *prefix {
                        f.kind.starts_with(k.as_str())
                    } else {
                        f.kind == *k
                    }
                }))
            && (self.since == 0 || f.last_observed_unix_ms.max(f.observed_unix_ms) >= self.since)
            && (self.until == 0 || f.observed_unix_ms < self.until)
            && self.has_words(f);
        if !passes || self.labels.is_empty() {
            return Ok(passes);
        }
        let host = f.host_id.as_str();
        if let Some(&pass) = self.hosts.get(host) {
            return Ok(pass);
        }
        let labels = store.host_labels(host)?.effective();
        let pass = self.labels.iter().all(|(k, v)| match v {
            Some(v) => labels.get(k) == Some(v),
            None => labels.contains_key(k),
        });
        self.hosts.insert(host.to_owned(), pass);
        Ok(pass)
    }
}

/// `ListFindings`.
pub(super) async fn list_findings(
    svc: &OperatorService,
    request: Request<v1::ListFindingsRequest>,
) -> Result<Response<v1::ListFindingsResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    let mut filter = Filter::of(r.filter.as_ref())?;
    let limit = page(r.limit);
    let budget = if filter.is_empty() {
        limit
    } else {
        SCAN_BUDGET
    };
    let store = svc.store.clone();
    // Reading up to the budget is blocking work.
    let (found, scanned_to) = tokio::task::spawn_blocking(move || {
        store.findings_matching(
            (r.since_id, if r.newest_first { r.before_id } else { 0 }),
            r.newest_first,
            limit,
            budget,
            |f| filter.keep(f, &store),
        )
    })
    .await
    .map_err(|e| internal("reading findings", &e))?
    .map_err(|e| internal("reading findings", &e))?;
    Ok(Response::new(v1::ListFindingsResponse {
        findings: found.iter().map(Finding::to_wire).collect(),
        scanned_to,
    }))
}

/// `GetFinding`.
pub(super) async fn get_finding(
    svc: &OperatorService,
    request: Request<v1::GetFindingRequest>,
) -> Result<Response<v1::Finding>, Status> {
    caller(&request)?;
    let id = request.into_inner().id;
    svc.store
        .finding(id)
        .map_err(|e| internal("reading findings", &e))?
        .map(|f| Response::new(f.to_wire()))
        .ok_or_else(|| Status::not_found(format!("no finding {id}")))
}

/// What `FollowFindings` streams.
pub(super) type FollowFindingsStream = ReceiverStream<Result<v1::Finding, Status>>;

/// `FollowFindings`.
pub(super) async fn follow_findings(
    svc: &OperatorService,
    request: Request<v1::FollowFindingsRequest>,
) -> Result<Response<FollowFindingsStream>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let mut filter = Filter::of(r.filter.as_ref())?;
    let mut cursor = r.since_id;
    let (tx, rx) = mpsc::channel(256);
    let store = svc.store.clone();
    let mut latest = svc.ingest.latest_finding();
    let shutdown = svc.shutdown.clone();
    let mut operators = svc.operator_changes.subscribe();
    let service = svc.clone();
    tracing::debug!(operator = %name, since = cursor, "Following findings");
    // Not on a TaskTracker: a follower ends with the operator's stream or the collector's shutdown token, which it selects on.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        loop {
            let batch = match store.findings_after(cursor, 500) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(internal("reading findings", &e))).await;
                    return;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    changed = latest.changed() => if changed.is_err() { return },
                    changed = operators.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if let Some(why) = service.revoked_from(&name, Rpc::FollowFindings) {
                            tracing::warn!(operator = %name, reason = %why, "Findings stream cut");
                            let _ = tx.send(Err(Status::permission_denied(why))).await;
                            return;
                        }
                    }
                }
                continue;
            }
            for f in batch {
                cursor = f.id;
                match filter.keep(&f, &store) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        let _ = tx.send(Err(internal("reading labels", &e))).await;
                        return;
                    }
                }
                if tx.send(Ok(f.to_wire())).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// `SetFindingState`.
pub(super) async fn set_finding_state(
    svc: &OperatorService,
    request: Request<v1::SetFindingStateRequest>,
) -> Result<Response<v1::Finding>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let state = FindingState::from_wire(r.state)
        .ok_or_else(|| Status::invalid_argument("unknown finding state"))?;
    if r.note.len() > 4096 {
        return Err(Status::invalid_argument("note is longer than 4096 bytes"));
    }
    let note = r.note.clone();
    match svc
        .journal
        .set_state(r.id, state, name.to_string(), r.note)
        .await
    {
        Ok(f) => {
            tracing::info!(operator = %name, finding.id = f.id, state = ?f.state, "Finding state changed");
            // Who dismissed what, and why, belongs with the rest of the record.
            svc.store
                .append_action(&Action {
                    at_unix_ms: bannin_proto::now_unix_ms(),
                    actor: name.to_string(),
                    verb: "finding.state".into(),
                    target: format!("finding {}", f.id),
                    reason: note,
                    result: format!("{} ({} on {})", f.state.as_str(), f.kind, f.host_id),
                })
                .map_err(|e| internal("writing the action log", &e))?;
            svc.flush().await?;
            Ok(Response::new(f.to_wire()))
        }
        Err(IngestError::NoSuchFinding(id)) => Err(Status::not_found(format!("no finding {id}"))),
        Err(e @ IngestError::BadTransition { .. }) => {
            Err(Status::failed_precondition(e.to_string()))
        }
        Err(e @ IngestError::Journal(_)) => {
            tracing::warn!(error = %e, "Finding state not changed: the journal did not take it");
            Err(Status::unavailable(format!(
                "{e}; nothing changed, try again"
            )))
        }
        Err(e) => Err(internal("changing finding state", &e)),
    }
}

/// `AddFinding`.
pub(super) async fn add_finding(
    svc: &OperatorService,
    request: Request<v1::AddFindingRequest>,
) -> Result<Response<v1::Finding>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    if !REPORT_KINDS.contains(&r.kind.as_str()) {
        return Err(Status::invalid_argument(format!(
            "kind {:?}: a reported finding is one of {}",
            r.kind,
            REPORT_KINDS.join(", ")
        )));
    }
    let text = r.text.trim();
    if text.is_empty() || text.len() > 4096 {
        return Err(Status::invalid_argument(
            "the text must say what was reported (1 to 4096 bytes)",
        ));
    }
    if r.reporter.len() > 256 {
        return Err(Status::invalid_argument(
            "the reporter must be at most 256 bytes",
        ));
    }
    if v1::Severity::try_from(r.severity).map_or(true, |s| s == v1::Severity::Unspecified) {
        return Err(Status::invalid_argument(
            "a severity is required: info, low, medium, high or critical",
        ));
    }
    let host = bannin_proto::identity::HostId::new(r.host_id.clone())
        .map_err(|e| Status::invalid_argument(format!("host {:?}: {e}", r.host_id)))?;
    if svc
        .store
        .host(host.as_str())
        .map_err(|e| internal("reading hosts", &e))?
        .is_none()
    {
        return Err(Status::not_found(format!("no host {:?}", r.host_id)));
    }
    let mut attributes = std::collections::BTreeMap::from([
        ("reported_by".to_owned(), name.to_string()),
        ("text".to_owned(), text.to_owned()),
    ]);
    if !r.reporter.trim().is_empty() {
        attributes.insert("reporter".into(), r.reporter.trim().to_owned());
    }
    let now = bannin_proto::now_unix_ms();
    let finding = crate::model::NewFinding {
        host_id: host.clone(),
        kind: r.kind.clone(),
        severity: crate::model::Severity::from_wire(r.severity),
        observed_unix_ms: now,
        attributes,
        summary: text.chars().take(200).collect(),
    };
    let id = svc
        .journal
        .raise(finding)
        .await
        .map_err(|e| internal("recording the finding", &e))?;
    svc.store
        .append_action(&Action {
            at_unix_ms: now,
            actor: name.to_string(),
            verb: "finding.add".into(),
            target: host.to_string(),
            reason: String::new(),
            result: if id == 0 {
                format!("{}: suppressed by a rule", r.kind)
            } else {
                format!("finding {id} ({})", r.kind)
            },
        })
        .map_err(|e| internal("writing the action log", &e))?;
    svc.flush().await?;
    if id == 0 {
        return Err(Status::failed_precondition(
            "the finding matches a suppression rule and was counted, not queued (see `bannin rules`)",
        ));
    }
    let f = svc
        .store
        .finding(id)
        .map_err(|e| internal("reading the finding", &e))?
        .ok_or_else(|| Status::internal("the finding vanished"))?;
    Ok(Response::new(f.to_wire()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::HostLabels;

    fn finding(id: u64, host: &str, kind: &str, severity: Severity) -> Finding {
        Finding {
            id,
            host_id: host.into(),
            kind: kind.into(),
            severity,
            state: FindingState::New,
            observed_unix_ms: 1,
            received_unix_ms: 1,
            last_observed_unix_ms: 1,
            count: 1,
            attributes: BTreeMap::new(),
            summary: String::new(),
            history: Vec::new(),
        }
    }

    #[test]
    fn a_filter_passes_what_every_part_asks_and_refuses_what_it_cannot_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        store
            .put_host_labels(
                "web-01",
                &HostLabels {
                    reported: BTreeMap::from([("zone".into(), "PCI".into())]),
                    set: BTreeMap::from([("site".into(), "osaka".into())]),
                },
            )
            .expect("labels");
        let mut exec = finding(1, "web-01", "process.suspicious_exec", Severity::High);
        exec.attributes
            .insert("path".into(), "/dev/shm/.X/kworker".into());
        exec.attributes.insert("pid".into(), "4242".into());
        exec.summary = "Executable run from a volatile directory".into();
        exec.observed_unix_ms = 1_000;
        exec.last_observed_unix_ms = 5_000;
        let other = finding(2, "web-02", "net.listener", Severity::Low);
        let keep = |filter: v1::FindingFilter, f: &Finding| {
            Filter::of(Some(&filter))
                .expect("readable")
                .keep(f, &store)
                .expect("store")
        };
        assert!(keep(v1::FindingFilter::default(), &exec));
        for (text, passes) in [
            ("/dev/shm/.x", true),
            ("4242", true),
            ("VOLATILE kworker", true),
            ("web-01 suspicious", true),
            ("kworker 4243", false),
        ] {
            let filter = v1::FindingFilter {
                text: text.into(),
                ..Default::default()
            };
            assert_eq!(keep(filter.clone(), &exec), passes, "{text}");
            assert!(!keep(filter, &other), "{text}");
        }
        for (since, until, passes) in [
            (4_000, 0, true),
            (6_000, 0, false),
            (0, 1_000, false),
            (0, 1_001, true),
        ] {
            let filter = v1::FindingFilter {
                since_unix_ms: since,
                until_unix_ms: until,
                ..Default::default()
            };
            assert_eq!(keep(filter, &exec), passes, "{since}..{until}");
        }
        let high = v1::FindingFilter {
            severities: vec![v1::Severity::High as i32, v1::Severity::Critical as i32],
            ..Default::default()
        };
        assert!(keep(high.clone(), &exec) && !keep(high, &other));
        for (kind, passes) in [
            ("process.suspicious_exec", true),
            ("process.", true),
            ("process.*", true),
            ("process", false),
            ("proc*", true),
            ("net.", false),
        ] {
            let filter = v1::FindingFilter {
                kinds: vec![kind.into()],
                ..Default::default()
            };
            assert_eq!(keep(filter, &exec), passes, "{kind}");
        }
        let state = v1::FindingFilter {
            states: vec![v1::FindingState::Resolved as i32],
            ..Default::default()
        };
        assert!(!keep(state, &exec));
        for (labels, passes) in [
            (vec!["zone=PCI"], true),
            (vec!["zone=PCI", "site=osaka"], true),
            (vec!["zone=PCI", "site=kyoto"], false),
            (vec!["zone"], true),
            (vec!["owner"], false),
        ] {
            let filter = v1::FindingFilter {
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                ..Default::default()
            };
            assert_eq!(keep(filter.clone(), &exec), passes, "{labels:?}");
            // A host with no labels passes no label filter.
            assert!(!keep(filter, &other), "{labels:?}");
        }
        for refused in [
            v1::FindingFilter {
                severities: vec![0],
                ..Default::default()
            },
            v1::FindingFilter {
                states: vec![42],
                ..Default::default()
            },
            v1::FindingFilter {
                kinds: vec![String::new()],
                ..Default::default()
            },
            v1::FindingFilter {
                labels: vec!["Bad Key=x".into()],
                ..Default::default()
            },
            v1::FindingFilter {
                kinds: vec!["k".into(); MAX_VALUES + 1],
                ..Default::default()
            },
        ] {
            let refusal = Filter::of(Some(&refused)).expect_err("refused");
            assert_eq!(refusal.code(), tonic::Code::InvalidArgument, "{refused:?}");
        }
    }
}
