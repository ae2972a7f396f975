//! Findings: the queue, following it, triage states, and findings people report.

use bannin_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{OperatorService, Rpc, caller, page};
use crate::ingest::IngestError;
use crate::link::internal;
use crate::model::{Action, Finding, FindingState, Severity};
use crate::store::{FindingNeeds, Store, StoreError};

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
    /// `name:value` words: an attribute (or `host`, `kind`) with this value,
    /// any case; `name:value*`, one starting so.
    fields: Vec<FieldWord>,
    /// Exactly this summary (empty: any).
    summary: String,
    /// Last observed at or after / before (0: open).
    since: i64,
    until: i64,
}

/// Longest free-text search.
const MAX_TEXT: usize = 1024;

/// A search word naming a field: `pid:4242`, `path:/tmp/x`, `user:root`,
/// `sha256:…`, `host:web-01`, `kind:process.*`; a trailing `*` matches values
/// starting so. Not a field: `http://…` (the value starts with `//`), `fe80::1`
/// (with `:`), or a name that is not a lower-case identifier.
#[derive(Debug)]
struct FieldWord {
    name: String,
    /// Lower-cased, without the `*`.
    value: String,
    prefix: bool,
}

impl FieldWord {
    fn of(word: &str) -> Option<Self> {
        let (name, value) = word.split_once(':')?;
        let identifier = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !identifier || value.is_empty() || value.starts_with("//") || value.starts_with(':') {
            return None;
        }
        let (value, prefix) = match value.strip_suffix('*') {
            Some(v) => (v, true),
            None => (value, false),
        };
        Some(Self {
            name: name.to_owned(),
            value: value.to_lowercase(),
            prefix,
        })
    }

    /// Whether the finding's field has the value.
    fn holds(&self, f: &Finding) -> bool {
        let value = match self.name.as_str() {
            "host" => Some(&f.host_id),
            "kind" => Some(&f.kind),
            name => f.attributes.get(name),
        };
        value.is_some_and(|v| {
            let v = v.to_lowercase();
            if self.prefix {
                v.starts_with(&self.value)
            } else {
                v == self.value
            }
        })
    }
}
/// Longest summary a filter may name.
const MAX_SUMMARY: usize = 4096;

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
        if f.summary.len() > MAX_SUMMARY {
            return Err(Status::invalid_argument(format!(
                "a summary is at most {MAX_SUMMARY} bytes"
            )));
        }
        let (mut words, mut fields) = (Vec::new(), Vec::new());
        for word in f.text.split_whitespace().take(MAX_VALUES) {
            match FieldWord::of(word) {
                Some(field) => fields.push(field),
                None => words.push(word.to_lowercase()),
            }
        }
        Ok(Self {
            severities,
            states,
            kinds,
            host: f.host_id.clone(),
            labels,
            hosts: Default::default(),
            words,
            fields,
            summary: f.summary.clone(),
            since: f.since_unix_ms,
            until: f.until_unix_ms,
        })
    }

    /// Whether every word is in the finding's text (summary, kind, host,
    /// attribute values), each field lower-cased once.
    fn has_words(&self, f: &Finding) -> bool {
        if !self.fields.iter().all(|w| w.holds(f)) {
            return false;
        }
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

    /// What the store's index can tell of this filter: the blocks of
    /// findings that may pass (labels are the hosts', not the index's).
    pub(super) fn needs(&self) -> FindingNeeds {
        let mut needs = FindingNeeds::default();
        for word in &self.words {
            needs.word(word);
        }
        for field in &self.fields {
            match (field.name.as_str(), field.prefix) {
                ("host" | "kind", _) | (_, true) => needs.word(&field.value),
                (name, false) => needs.attribute(name, &field.value),
            }
        }
        if !self.host.is_empty() {
            needs.host(&self.host);
        }
        if !self.summary.is_empty() {
            needs.summary(&self.summary);
        }
        needs.kinds(self.kinds.iter().map(|(k, prefix)| (k.as_str(), *prefix)));
        needs.severities(&self.severities);
        needs.states(&self.states);
        needs.window(self.since, self.until);
        needs
    }

    fn is_empty(&self) -> bool {
        self.severities.is_empty()
            && self.states.is_empty()
            && self.kinds.is_empty()
            && self.host.is_empty()
            && self.labels.is_empty()
            && self.words.is_empty()
            && self.fields.is_empty()
            && self.summary.is_empty()
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
            && (self.summary.is_empty() || f.summary == self.summary)
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
    let order = v1::FindingOrder::try_from(r.order)
        .map_err(|_| Status::invalid_argument(format!("unknown order {}", r.order)))?;
    let store = svc.store.clone();
    let needs = filter.needs();
    if order != v1::FindingOrder::Id {
        let range = (r.since_id, r.before_id);
        let (mut found, complete) = tokio::task::spawn_blocking(move || {
            matching_all(&store, range, ORDERED, GROUP_BUDGET, &mut filter, &needs)
        })
        .await
        .map_err(|e| internal("reading findings", &e))?
        .map_err(|e| internal("reading findings", &e))?;
        let ordered_all = complete && found.len() <= ORDERED;
        found.truncate(ORDERED);
        sort(&mut found, order, r.newest_first);
        return Ok(Response::new(v1::ListFindingsResponse {
            ordered: found.len() as u32,
            ordered_all,
            findings: found
                .iter()
                .skip(r.offset as usize)
                .take(limit)
                .map(Finding::to_wire)
                .collect(),
            scanned_to: 0,
        }));
    }
    // Reading up to the budget is blocking work.
    let (found, scanned_to) = tokio::task::spawn_blocking(move || {
        store.findings_matching(
            (r.since_id, if r.newest_first { r.before_id } else { 0 }),
            r.newest_first,
            limit,
            budget,
            &needs,
            |f| filter.keep(f, &store),
        )
    })
    .await
    .map_err(|e| internal("reading findings", &e))?
    .map_err(|e| internal("reading findings", &e))?;
    Ok(Response::new(v1::ListFindingsResponse {
        findings: found.iter().map(Finding::to_wire).collect(),
        scanned_to,
        ..Default::default()
    }))
}

/// Most findings sorted for one ordered page (the newest that pass).
pub const ORDERED: usize = 10_000;

/// The findings in `(since, before)` that pass, newest first: up to `cap`
/// and one more (so the caller sees there were more), reading at most
/// `budget`; with whether nothing that could pass was left unread.
fn matching_all(
    store: &Store,
    (since, before): (u64, u64),
    cap: usize,
    budget: usize,
    filter: &mut Filter,
    needs: &FindingNeeds,
) -> Result<(Vec<Finding>, bool), StoreError> {
    let (found, scanned_to) =
        store.findings_matching((since, before), true, cap + 1, budget, needs, |f| {
            filter.keep(f, store)
        })?;
    let complete = found.len() <= cap
        && (scanned_to == 0 || store.findings_before(since, scanned_to, 1)?.is_empty());
    Ok((found, complete))
}

/// Findings in `order`, most urgent first (or the other way round), then
/// newest first.
fn sort(found: &mut [Finding], order: v1::FindingOrder, most_urgent_first: bool) {
    use std::cmp::Reverse;
    match order {
        v1::FindingOrder::Id => found.sort_by_key(|f| Reverse(f.id)),
        v1::FindingOrder::Severity => found.sort_by_key(|f| (Reverse(f.severity), Reverse(f.id))),
        v1::FindingOrder::LastObserved => found.sort_by_key(|f| {
            (
                Reverse(f.last_observed_unix_ms.max(f.observed_unix_ms)),
                Reverse(f.id),
            )
        }),
        v1::FindingOrder::Count => found.sort_by_key(|f| (Reverse(f.count), Reverse(f.id))),
        v1::FindingOrder::Host => {
            found.sort_by(|a, b| a.host_id.cmp(&b.host_id).then(b.id.cmp(&a.id)));
        }
        v1::FindingOrder::Kind => found.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.id.cmp(&a.id))),
        v1::FindingOrder::State => found.sort_by_key(|f| (f.state as u8, Reverse(f.id))),
    }
    if !most_urgent_first {
        found.reverse();
    }
}

/// Most findings one `GroupFindings` reads (about 0.8 s on a 2-core machine,
/// BENCHMARKS.md); beyond them the answer says it covers the newest only.
pub const GROUP_BUDGET: usize = 400_000;
/// Groups returned when the request does not say.
const GROUPS: usize = 1000;

/// `GroupFindings`.
pub(super) async fn group_findings(
    svc: &OperatorService,
    request: Request<v1::GroupFindingsRequest>,
) -> Result<Response<v1::GroupFindingsResponse>, Status> {
    caller(&request)?;
    let r = request.into_inner();
    let by = match v1::FindingGroupBy::try_from(r.by) {
        Ok(v1::FindingGroupBy::Kind) => GroupBy::Kind,
        Ok(v1::FindingGroupBy::Host) => GroupBy::Host,
        Ok(v1::FindingGroupBy::Summary) => GroupBy::Summary,
        _ => {
            return Err(Status::invalid_argument(
                "group findings by kind, host or summary",
            ));
        }
    };
    let mut filter = Filter::of(r.filter.as_ref())?;
    let needs = filter.needs();
    let store = svc.store.clone();
    let (groups, scanned_to, complete) = tokio::task::spawn_blocking(move || {
        let mut groups: std::collections::HashMap<String, Group> = Default::default();
        // Every finding that passes is counted into its group, none kept.
        let (_, scanned_to) =
            store.findings_matching((0, 0), true, 1, GROUP_BUDGET, &needs, |f| {
                if filter.keep(f, &store)? {
                    let key = match by {
                        GroupBy::Kind => &f.kind,
                        GroupBy::Host => &f.host_id,
                        GroupBy::Summary => &f.summary,
                    };
                    match groups.get_mut(key.as_str()) {
                        Some(g) => g.add(f),
                        None => {
                            groups.insert(key.clone(), Group::of(f));
                        }
                    }
                }
                Ok(false)
            })?;
        let complete = scanned_to == 0 || store.findings_before(0, scanned_to, 1)?.is_empty();
        Ok::<_, StoreError>((groups, scanned_to, complete))
    })
    .await
    .map_err(|e| internal("grouping findings", &e))?
    .map_err(|e| internal("grouping findings", &e))?;
    let grouped = groups.values().map(|g| g.count).sum();
    let total_groups = groups.len() as u64;
    let mut ordered: Vec<(String, Group)> = groups.into_iter().collect();
    ordered.sort_by(|a, b| {
        (b.1.worst, b.1.count, b.1.newest)
            .cmp(&(a.1.worst, a.1.count, a.1.newest))
            .then(a.0.cmp(&b.0))
    });
    let base = r.filter.unwrap_or_default();
    let groups = ordered
        .into_iter()
        .take(match r.limit {
            0 => GROUPS,
            n => n as usize,
        })
        .map(|(key, g)| {
            let mut filter = base.clone();
            match by {
                GroupBy::Kind => filter.kinds = vec![key.clone()],
                GroupBy::Host => filter.host_id = key.clone(),
                GroupBy::Summary => filter.summary = key.clone(),
            }
            v1::FindingGroup {
                key,
                count: g.count,
                open: g.open,
                worst: g.worst.to_wire() as i32,
                last_observed_unix_ms: g.last,
                filter: Some(filter),
                newest_id: g.newest,
            }
        })
        .collect();
    Ok(Response::new(v1::GroupFindingsResponse {
        groups,
        grouped,
        total_groups,
        complete,
        scanned_to,
    }))
}

#[derive(Debug, Clone, Copy)]
enum GroupBy {
    Kind,
    Host,
    Summary,
}

/// One group's counts.
struct Group {
    count: u64,
    open: u64,
    worst: Severity,
    last: i64,
    newest: u64,
}

impl Group {
    fn of(f: &Finding) -> Self {
        let mut g = Self {
            count: 0,
            open: 0,
            worst: f.severity,
            last: 0,
            newest: f.id,
        };
        g.add(f);
        g
    }

    fn add(&mut self, f: &Finding) {
        self.count += 1;
        if matches!(f.state, FindingState::New | FindingState::Acknowledged) {
            self.open += 1;
        }
        self.worst = self.worst.max(f.severity);
        self.last = self
            .last
            .max(f.last_observed_unix_ms.max(f.observed_unix_ms));
        self.newest = self.newest.max(f.id);
    }
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

/// The state a change asks for, and its note, as a request may give them.
fn requested_state(state: i32, note: &str) -> Result<FindingState, Status> {
    if note.len() > 4096 {
        return Err(Status::invalid_argument("note is longer than 4096 bytes"));
    }
    FindingState::from_wire(state).ok_or_else(|| Status::invalid_argument("unknown finding state"))
}

/// `SetFindingState`.
pub(super) async fn set_finding_state(
    svc: &OperatorService,
    request: Request<v1::SetFindingStateRequest>,
) -> Result<Response<v1::Finding>, Status> {
    let name = caller(&request)?;
    let r = request.into_inner();
    let state = requested_state(r.state, &r.note)?;
    let f = change_state(svc, &name.to_string(), r.id, state, r.note).await?;
    svc.flush().await?;
    Ok(Response::new(f.to_wire()))
}

/// Sets one finding's state and writes the action-log entry (durable at the
/// caller's flush).
async fn change_state(
    svc: &OperatorService,
    name: &str,
    id: u64,
    state: FindingState,
    note: String,
) -> Result<Finding, Status> {
    match svc
        .journal
        .set_state(id, state, name.to_owned(), note.clone())
        .await
    {
        Ok(f) => {
            tracing::info!(operator = %name, finding.id = f.id, state = ?f.state, "Finding state changed");
            // Who dismissed what, and why, belongs with the rest of the record.
            svc.store
                .append_action(&Action {
                    at_unix_ms: bannin_proto::now_unix_ms(),
                    actor: name.to_owned(),
                    verb: "finding.state".into(),
                    target: format!("finding {}", f.id),
                    reason: note,
                    result: format!("{} ({} on {})", f.state.as_str(), f.kind, f.host_id),
                })
                .map_err(|e| internal("writing the action log", &e))?;
            Ok(f)
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

/// Most findings one `SetFindingStates` changes.
pub const MAX_BULK: usize = 10_000;
/// Most findings a filter of `SetFindingStates` reads to find them.
const BULK_BUDGET: usize = 2_000_000;
/// Changes in flight at once (the writer commits them in groups).
const BULK_CONCURRENCY: usize = 64;

/// `SetFindingStates`: one state, one note, many findings; each change is
/// its own action-log entry, all durable before the answer.
pub(super) async fn set_finding_states(
    svc: &OperatorService,
    request: Request<v1::SetFindingStatesRequest>,
) -> Result<Response<v1::SetFindingStatesResponse>, Status> {
    use futures_util::StreamExt as _;
    let name = caller(&request)?;
    let r = request.into_inner();
    let state = requested_state(r.state, &r.note)?;
    if r.ids.len() > MAX_BULK {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_BULK} findings at once"
        )));
    }
    let ids: Vec<u64> = if r.ids.is_empty() {
        let mut filter = Filter::of(r.filter.as_ref())?;
        if filter.is_empty() {
            return Err(Status::invalid_argument(
                "name the findings: by id, or by a filter that is not empty",
            ));
        }
        let needs = filter.needs();
        let store = svc.store.clone();
        let (found, complete) = tokio::task::spawn_blocking(move || {
            matching_all(&store, (0, 0), MAX_BULK, BULK_BUDGET, &mut filter, &needs)
        })
        .await
        .map_err(|e| internal("reading findings", &e))?
        .map_err(|e| internal("reading findings", &e))?;
        if found.len() > MAX_BULK {
            return Err(Status::failed_precondition(format!(
                "more than {MAX_BULK} findings pass this filter; narrow it (nothing changed)"
            )));
        }
        if !complete {
            return Err(Status::failed_precondition(format!(
                "the filter's findings could not all be read at once (over {BULK_BUDGET} read); narrow it (nothing changed)"
            )));
        }
        found.iter().map(|f| f.id).collect()
    } else {
        let mut ids = r.ids.clone();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let note = r.note;
    let results: Vec<(u64, Result<bool, Status>)> = futures_util::stream::iter(ids.iter().copied())
        .map(|id| {
            let (name, note) = (name.to_string(), note.clone());
            async move {
                let outcome = match svc.store.finding(id) {
                    Err(e) => Err(internal("reading findings", &e)),
                    Ok(None) => Err(Status::not_found(format!("no finding {id}"))),
                    Ok(Some(f)) if f.state == state => Ok(false),
                    Ok(Some(_)) => change_state(svc, &name, id, state, note)
                        .await
                        .map(|_| true),
                };
                (id, outcome)
            }
        })
        .buffer_unordered(BULK_CONCURRENCY)
        .collect()
        .await;
    svc.flush().await?;
    let mut answer = v1::SetFindingStatesResponse {
        matched: ids.len() as u32,
        ..Default::default()
    };
    for (id, outcome) in results {
        match outcome {
            Ok(true) => answer.changed += 1,
            Ok(false) => answer.unchanged += 1,
            // A journal that did not take a change: say so, after the rest is durable.
            Err(status) if status.code() == tonic::Code::Unavailable => return Err(status),
            Err(status) if answer.refused.len() < 100 => answer
                .refused
                .push(format!("finding {id}: {}", status.message())),
            Err(_) => {}
        }
    }
    tracing::info!(operator = %name, matched = answer.matched, changed = answer.changed, unchanged = answer.unchanged, state = ?state, "Finding states changed in bulk");
    Ok(Response::new(answer))
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
    fn findings_sort_most_urgent_first_then_newest_first() {
        let mut f = vec![
            finding(1, "b", "x.k", Severity::High),
            finding(2, "a", "z.k", Severity::Low),
            finding(3, "c", "y.k", Severity::High),
            finding(4, "a", "x.k", Severity::Critical),
        ];
        f[1].count = 9;
        f[0].last_observed_unix_ms = 50;
        f[2].state = FindingState::Resolved;
        let ids = |f: &[Finding]| f.iter().map(|f| f.id).collect::<Vec<_>>();
        let cases = [
            (v1::FindingOrder::Severity, vec![4, 3, 1, 2]),
            (v1::FindingOrder::Count, vec![2, 4, 3, 1]),
            (v1::FindingOrder::LastObserved, vec![1, 4, 3, 2]),
            (v1::FindingOrder::Host, vec![4, 2, 1, 3]),
            (v1::FindingOrder::Kind, vec![4, 1, 3, 2]),
            (v1::FindingOrder::State, vec![4, 2, 1, 3]),
            (v1::FindingOrder::Id, vec![4, 3, 2, 1]),
        ];
        for (order, want) in cases {
            sort(&mut f, order, true);
            assert_eq!(ids(&f), want, "{order:?}");
            sort(&mut f, order, false);
            assert_eq!(
                ids(&f),
                want.into_iter().rev().collect::<Vec<_>>(),
                "{order:?} reversed"
            );
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
        // The index agrees: a block holding only `exec` passes every filter it passes.
        let mut set = crate::store::WriteSet::default();
        set.put_finding(&exec).expect("put");
        store.apply(set).expect("apply");
        assert!(keep(v1::FindingFilter::default(), &exec));
        for (text, passes) in [
            ("/dev/shm/.x", true),
            ("4242", true),
            ("VOLATILE kworker", true),
            ("web-01 suspicious", true),
            ("kworker 4243", false),
            // Fields: exact values, any case; a trailing * for a prefix.
            ("pid:4242", true),
            ("pid:424", false),
            ("pid:424*", true),
            ("path:/DEV/shm/.X/kworker", true),
            ("path:/dev/shm/*", true),
            ("path:/tmp/*", false),
            ("user:root", false),
            ("host:web-01 kind:process.*", true),
            ("kind:process.suspicious_exec pid:4242", true),
            ("host:web-03", false),
            // Not fields: a URL, an IPv6 address (plain words, found nowhere).
            ("http://kworker", false),
            ("fe80::1", false),
        ] {
            let filter = v1::FindingFilter {
                text: text.into(),
                ..Default::default()
            };
            assert_eq!(keep(filter.clone(), &exec), passes, "{text}");
            let mut f = Filter::of(Some(&filter)).expect("readable");
            let (found, _) = store
                .findings_matching((0, 0), true, 10, 10, &f.needs(), |x| Ok(x.id == exec.id))
                .expect("read");
            if passes {
                assert_eq!(found.len(), 1, "the index passed over it: {text}");
            }
            assert!(!f.keep(&other, &store).expect("store"), "{text}");
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
