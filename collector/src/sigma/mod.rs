//! Sigma rules on the fleet's telemetry.
//!
//! Responders share detection content as [Sigma](https://sigmahq.io) rules;
//! the collector loads them from `[sigma] paths` and runs them on every host's
//! telemetry as it is ingested. Parsing and matching are the rsigma project's
//! (`rsigma-parser`, `rsigma-eval`): it implements the whole detection language
//! of the specification (every value modifier including `windash`,
//! `base64offset`, `fieldref`, `cidr`, `exists` and the numeric comparisons;
//! `1 of`/`all of` conditions; keywords) and its correlation rules
//! (`event_count`, `value_count`, `temporal`, `temporal_ordered`), compiles
//! each rule once, and matches without allocating. `sigma-rust` (the other
//! maintained crate) has no correlation rules and no rule index, which this
//! collector's cross-host view needs; writing our own would be thousands of
//! lines of a specification someone else already keeps up with.
//!
//! What Bannin adds around it:
//! - **Log sources and fields** ([`fields`]): `product: linux` with
//!   `process_creation`, `file_event` and `network_connection`, mapped from
//!   Bannin's events by one table. A rule for another log source, or naming a
//!   field Bannin cannot provide, is *refused* with the reason, never loaded to
//!   silently never match.
//! - **Loading is atomic**: a file that does not parse fails the whole load
//!   (the caller keeps the rules it had) and the error names the file.
//! - **Rules per log source, behind a literal prefilter** ([`prefilter`]): an
//!   event meets only the rules of its category, and of those only the ones
//!   whose required literals it holds (one Aho-Corasick scan per field); the
//!   event itself is read in place from the received bytes
//!   ([`SigmaEvent::from_wire`]). 500 rules keep about 70 % of ingest
//!   throughput; rsigma's own `Engine` kept 4 % (BENCHMARKS.md).
//! - **Correlation across the fleet**: detections that feed a correlation rule
//!   go, with their event, to the single writer thread, which keeps one
//!   correlation state for all hosts ([`SigmaSet::correlation_engine`]).

mod compat;
pub mod fields;
pub mod limits;
mod prefilter;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bannin_proto::identity::HostId;
use rsigma_eval::{
    CompiledRule, CorrelationAction, CorrelationConfig, CorrelationEngine, CorrelationEventMode,
    EvaluationResult, ResultBody,
};
use rsigma_parser::{
    CorrelationRule, Detection, DetectionItem, Level, Modifier, SigmaCollection, SigmaRule,
    SigmaValue,
};

pub use fields::{Category, SigmaEvent};

use crate::model::{NewFinding, Severity};

/// Largest rule file read (rule packs are many small files).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most rule files one load reads.
pub const MAX_FILES: usize = 20_000;
/// Deepest directory descended into.
const MAX_DEPTH: usize = 16;
/// Events a correlation remembers per group, to name the hosts that took part.
const CORRELATION_EVENTS: usize = 64;

/// Why a set of rules could not be loaded (the previous set stays in force).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid Sigma YAML.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A rule does not compile (an unknown detection in its condition, a bad
    /// regular expression, a value its modifiers cannot take).
    #[error("{}: rule {title:?}: {reason}", path.display())]
    Rule {
        /// The file.
        path: PathBuf,
        /// The rule's title.
        title: String,
        /// What the compiler said.
        reason: String,
    },
    /// Too much to load.
    #[error("{}: {reason}", path.display())]
    Limit {
        /// Where the limit was hit.
        path: PathBuf,
        /// Which limit.
        reason: String,
    },
}

/// Detection rule or correlation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// A detection rule: one event at a time.
    Detection,
    /// A correlation rule over detections.
    Correlation,
}

/// A loaded rule, as `bannin rules` lists it.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// The key counters and findings use: the rule's `id`, or `FILE#N` for a
    /// rule without one.
    pub key: String,
    /// The rule's own `id`, if it has one.
    pub id: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` (`informational` … `critical`), `""` if absent.
    pub level: String,
    /// The finding severity the level maps to.
    pub severity: Severity,
    /// `status`, `""` if absent.
    pub status: String,
    /// `tags` (ATT&CK tags among them).
    pub tags: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// The file it came from.
    pub file: PathBuf,
    /// `process_creation`, `file_event`, `network_connection`, or for a
    /// correlation its type (`event_count`, …).
    pub logsource: String,
    /// Detection or correlation.
    pub kind: RuleKind,
    /// Whether its matches become findings on their own (false for a detection
    /// rule that only feeds correlations with `generate: false`).
    pub generates: bool,
    /// Whether a correlation rule reads its matches.
    pub feeds: bool,
}

/// A rule that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The file.
    pub file: PathBuf,
    /// `title`.
    pub title: String,
    /// `id`, `""` if absent.
    pub id: String,
    /// Why it was refused.
    pub reason: String,
}

/// A compiled set of rules: what the collector applies until the next reload.
pub struct SigmaSet {
    /// The compiled detection rules of each log source ([`Category::index`]),
    /// with the prefilter that says which of them an event can match.
    engines: [Rules; 3],
    /// Every loaded rule, detection rules first, in file order.
    pub rules: Vec<RuleInfo>,
    by_key: HashMap<String, usize>,
    /// Rules refused, with reasons.
    pub refused: Vec<Refused>,
    /// Evaluation's time limits.
    pub limits: EvalLimits,
    /// Each of [`SigmaSet::rules`]' behaviour under traffic.
    health: Vec<RuleHealth>,
    /// Files read.
    pub files: usize,
    /// When it was loaded (Unix ms; 0 for the empty set).
    pub loaded_unix_ms: i64,
    /// The correlation rules and the detection rules they reference, for
    /// [`SigmaSet::correlation_engine`].
    correlation: SigmaCollection,
}

impl std::fmt::Debug for SigmaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaSet")
            .field("rules", &self.rules.len())
            .field("refused", &self.refused.len())
            .field("files", &self.files)
            .finish()
    }
}

/// One log source's compiled rules.
#[derive(Default)]
struct Rules {
    compiled: Vec<CompiledRule>,
    /// Each compiled rule's place in [`SigmaSet::rules`] (and its health).
    info: Vec<usize>,
    prefilter: prefilter::Prefilter,
}

/// How a loaded rule has behaved on this set's traffic so far.
#[derive(Debug, Default)]
struct RuleHealth {
    /// Events on which it took longer than [`EvalLimits::slow_rule`].
    strikes: std::sync::atomic::AtomicU32,
    /// Set once, when the rule is taken out of force; what `bannin rules` shows.
    disabled: std::sync::OnceLock<String>,
}

/// How long evaluation may take, and what happens past it.
#[derive(Debug, Clone, Copy)]
pub struct EvalLimits {
    /// One event's evaluation past this is looked at rule by rule.
    pub slow_event: std::time::Duration,
    /// A rule that takes more CPU time than this on one event earns a strike.
    pub slow_rule: std::time::Duration,
    /// Strikes that take a rule out of force (until the next load).
    pub strikes: u32,
    /// Sigma time one batch may take; its later events are then stored but
    /// not evaluated, and the batch says how many ([`Budget::skipped`]).
    pub batch_budget: std::time::Duration,
}

impl Default for EvalLimits {
    fn default() -> Self {
        Self {
            slow_event: std::time::Duration::from_millis(20),
            slow_rule: std::time::Duration::from_millis(10),
            strikes: 3,
            batch_budget: std::time::Duration::from_millis(500),
        }
    }
}

/// The Sigma time one batch has left, and what did not fit in it.
#[derive(Debug)]
pub struct Budget {
    left: std::time::Duration,
    /// Events not evaluated because the budget was spent.
    pub skipped: u64,
}

impl Budget {
    /// A budget of `time`.
    pub fn new(time: std::time::Duration) -> Self {
        Self {
            left: time,
            skipped: 0,
        }
    }

    fn spend(&mut self, took: std::time::Duration) {
        self.left = self.left.saturating_sub(took);
    }

    /// Whether the budget is spent.
    pub fn spent(&self) -> bool {
        self.left.is_zero()
    }
}

impl Default for SigmaSet {
    fn default() -> Self {
        Self {
            engines: Default::default(),
            rules: Vec::new(),
            by_key: HashMap::new(),
            refused: Vec::new(),
            health: Vec::new(),
            limits: EvalLimits::default(),
            files: 0,
            loaded_unix_ms: 0,
            correlation: SigmaCollection::new(),
        }
    }
}

/// What one event produced.
#[derive(Debug, Default)]
pub struct Matches {
    /// `sigma.match` findings.
    pub findings: Vec<NewFinding>,
    /// Detections a correlation rule reads (for the writer's correlation engine).
    pub feed: Vec<EvaluationResult>,
}

impl SigmaSet {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A loaded rule by key.
    pub fn rule(&self, key: &str) -> Option<&RuleInfo> {
        self.by_key.get(key).map(|&i| &self.rules[i])
    }

    /// Why a loaded rule was taken out of force, if it was.
    pub fn disabled(&self, key: &str) -> Option<&str> {
        let i = *self.by_key.get(key)?;
        self.health.get(i)?.disabled.get().map(String::as_str)
    }

    /// Matches one event against the rules of its log source, with no budget.
    pub fn evaluate(&self, event: &SigmaEvent, summary: &str) -> Matches {
        self.evaluate_within(event, summary, &mut Budget::new(std::time::Duration::MAX))
    }

    /// Matches one event against the rules of its log source, spending
    /// `budget`; once it is spent the event is skipped (counted in it).
    ///
    /// A slow event (over [`EvalLimits::slow_event`]) is evaluated again rule
    /// by rule, timed, so the rule that made it slow earns a strike; at
    /// [`EvalLimits::strikes`] it is taken out of force and [`Matches::findings`]
    /// holds one `sigma.rule_disabled` finding naming it. Fast events pay
    /// two clock reads.
    pub fn evaluate_within(
        &self,
        event: &SigmaEvent,
        summary: &str,
        budget: &mut Budget,
    ) -> Matches {
        let mut out = Matches::default();
        let rules = &self.engines[event.category.index()];
        if rules.compiled.is_empty() {
            return out;
        }
        if budget.spent() {
            budget.skipped += 1;
            return out;
        }
        thread_local! {
            static CANDIDATES: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let in_force = |i: usize| {
            self.health
                .get(rules.info[i])
                .is_none_or(|h| h.disabled.get().is_none())
        };
        let started = std::time::Instant::now();
        let (results, slow): (Vec<EvaluationResult>, Vec<usize>) = CANDIDATES.with(|c| {
            let mut candidates = c.borrow_mut();
            rules.prefilter.candidates(event, &mut candidates);
            let results: Vec<EvaluationResult> = candidates
                .iter()
                .filter(|&&i| in_force(i))
                .filter_map(|&i| rsigma_eval::evaluate_rule(&rules.compiled[i], event))
                .collect();
            let took = started.elapsed();
            budget.spend(took);
            if took <= self.limits.slow_event {
                return (results, Vec::new());
            }
            // Which rule was it? Each candidate again, timed (slow events only).
            let slow = candidates
                .iter()
                .copied()
                .filter(|&i| in_force(i))
                .filter(|&i| {
                    // The thread's CPU time, not the wall clock: a rule is
                    // never blamed for the time this thread was preempted.
                    let t = thread_cpu_time();
                    let _ = rsigma_eval::evaluate_rule(&rules.compiled[i], event);
                    let took = thread_cpu_time().saturating_sub(t);
                    budget.spend(took);
                    took > self.limits.slow_rule
                })
                .collect();
            (results, slow)
        });
        for i in slow {
            if let Some(f) = self.strike(rules.info[i], event) {
                out.findings.push(f);
            }
        }
        for result in results {
            let Some(rule) = self.rule(result.header.rule_id.as_deref().unwrap_or_default()) else {
                continue;
            };
            if rule.generates {
                out.findings.push(self.match_finding(rule, event, summary));
            }
            if rule.feeds {
                out.feed.push(result);
            }
        }
        out
    }

    /// Counts a strike against rule `index` (of [`SigmaSet::rules`]); the
    /// `sigma.rule_disabled` finding when this strike took it out of force.
    fn strike(&self, index: usize, event: &SigmaEvent) -> Option<NewFinding> {
        use std::sync::atomic::Ordering::Relaxed;
        let health = self.health.get(index)?;
        let rule = self.rules.get(index)?;
        let strikes = health.strikes.fetch_add(1, Relaxed) + 1;
        tracing::warn!(rule = %rule.key, title = %rule.title, host.id = %event.host, strikes, "Sigma rule slow on one event");
        if strikes < self.limits.strikes {
            return None;
        }
        let (limit_ms, times) = (self.limits.slow_rule.as_millis(), self.limits.strikes);
        let reason = format!(
            "took over {limit_ms} ms on one event {times} times (last from {}); disabled until the rules are reloaded",
            event.host
        );
        // Whoever sets it raises the finding: once per rule and load.
        health.disabled.set(reason.clone()).ok()?;
        tracing::error!(rule = %rule.key, title = %rule.title, file = %rule.file.display(), "Sigma rule disabled: too slow");
        let mut attributes = rule_attributes(rule);
        attributes.insert("reason".into(), reason);
        attributes.insert("limit_ms".into(), limit_ms.to_string());
        Some(NewFinding {
            host_id: host_id(&event.host),
            kind: "sigma.rule_disabled".into(),
            severity: Severity::High,
            observed_unix_ms: event.observed_unix_ms,
            attributes,
            summary: format!(
                "Sigma rule \"{}\" ({}) disabled: it took over {limit_ms} ms on one event {times} times, the last from {}; fix it and run `bannin rules reload`",
                rule.title,
                rule.file.display(),
                event.host
            ),
        })
    }

    /// The finding of a detection rule's match.
    fn match_finding(&self, rule: &RuleInfo, event: &SigmaEvent, summary: &str) -> NewFinding {
        let mut attributes = rule_attributes(rule);
        attributes.insert("sigma.logsource".into(), event.category.name().into());
        attributes.insert("event.kind".into(), event.kind.to_string());
        for (field, value) in event.text_fields() {
            if field != "HostId" {
                attributes.insert(format!("event.{field}"), value);
            }
        }
        if !event.truncated.is_empty() {
            // Matched against the first MAX_FIELD_BYTES only: say so.
            attributes.insert("sigma.truncated".into(), event.truncated.join(","));
        }
        NewFinding {
            host_id: host_id(&event.host),
            kind: "sigma.match".into(),
            severity: rule.severity,
            observed_unix_ms: event.observed_unix_ms,
            attributes,
            summary: format!("Sigma rule \"{}\" matched: {summary}", rule.title),
        }
    }

    /// The correlation engine for this set (`None` without correlation rules):
    /// the writer owns it, so one state covers every host.
    pub fn correlation_engine(&self) -> Option<CorrelationEngine> {
        if self.correlation.correlations.is_empty() {
            return None;
        }
        let config = CorrelationConfig {
            // Bannin passes the agent's observation time explicitly.
            timestamp_fields: Vec::new(),
            // Fire once per threshold crossing, then count again from zero.
            action_on_match: CorrelationAction::Reset,
            correlation_event_mode: CorrelationEventMode::Refs,
            max_correlation_events: CORRELATION_EVENTS,
            ..CorrelationConfig::default()
        };
        let mut engine = CorrelationEngine::new(config);
        // Every rule in here was compiled once already at load; this cannot fail.
        if let Err(error) = engine.add_collection(&self.correlation) {
            tracing::error!(%error, "Sigma correlation rules did not compile a second time");
            return None;
        }
        Some(engine)
    }

    /// Feeds `event`'s detections (a [`Matches::feed`]) to the correlation
    /// `engine` at the event's observation time; the findings of the
    /// correlation rules that fired.
    pub fn correlate(
        &self,
        engine: &mut CorrelationEngine,
        event: &SigmaEvent,
        feed: Vec<EvaluationResult>,
    ) -> Vec<NewFinding> {
        engine
            .process_with_detections(event, feed, event.observed_unix_ms / 1000)
            .iter()
            .filter_map(|r| self.correlation_finding(r, event))
            .collect()
    }

    /// The finding of a correlation rule that fired on `event`.
    fn correlation_finding(
        &self,
        result: &EvaluationResult,
        event: &SigmaEvent,
    ) -> Option<NewFinding> {
        let ResultBody::Correlation(body) = &result.body else {
            return None;
        };
        let key = result.header.rule_id.clone().unwrap_or_default();
        let rule = self.rule(&key)?;
        let mut attributes = rule_attributes(rule);
        let mut hosts: Vec<String> = body
            .event_refs
            .iter()
            .flatten()
            .filter_map(|r| r.id.clone())
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() {
            hosts.push(event.host.to_string());
        }
        let group = body
            .group_key
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        attributes.insert("sigma.correlation".into(), rule.logsource.clone());
        attributes.insert("sigma.group".into(), group.clone());
        attributes.insert("sigma.value".into(), format!("{}", body.aggregated_value));
        attributes.insert("window_secs".into(), body.timespan_secs.to_string());
        attributes.insert("hosts".into(), hosts.join(","));
        attributes.insert("host_count".into(), hosts.len().to_string());
        let within = if group.is_empty() {
            String::new()
        } else {
            format!(" for {group}")
        };
        Some(NewFinding {
            host_id: host_id(&event.host),
            kind: "sigma.correlation".into(),
            severity: rule.severity,
            observed_unix_ms: event.observed_unix_ms,
            attributes,
            summary: format!(
                "Sigma correlation \"{}\" ({}, {}{within} within {} s) on {}",
                rule.title,
                rule.logsource,
                body.aggregated_value,
                body.timespan_secs,
                hosts.join(", ")
            ),
        })
    }
}

/// CPU time this thread has used (zero where the clock cannot be read,
/// which blames no rule).
fn thread_cpu_time() -> std::time::Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

/// Host ids reach here from validated certificates (or, in `bannin sigma
/// test`, from exported events); an unusable one reads as `unknown`.
fn host_id(host: &str) -> HostId {
    HostId::new(host.to_owned())
        .or_else(|_| HostId::new("unknown".to_owned()))
        .unwrap_or_else(|_| unreachable!("`unknown` is a valid host id"))
}

/// The `sigma.*` attributes every Sigma finding carries.
fn rule_attributes(rule: &RuleInfo) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([
        ("sigma.title".to_owned(), rule.title.clone()),
        ("sigma.id".to_owned(), rule.key.clone()),
        ("sigma.level".to_owned(), rule.level.clone()),
        ("sigma.file".to_owned(), rule.file.display().to_string()),
    ]);
    if !rule.status.is_empty() {
        a.insert("sigma.status".into(), rule.status.clone());
    }
    if !rule.tags.is_empty() {
        a.insert("sigma.tags".into(), rule.tags.join(","));
    }
    if !rule.falsepositives.is_empty() {
        a.insert(
            "sigma.falsepositives".into(),
            rule.falsepositives.join("; "),
        );
    }
    if let Some(t) = attack_technique(&rule.tags) {
        a.insert("attack.technique".into(), t);
    }
    a
}

/// The first ATT&CK technique among Sigma tags (`attack.t1059.004` → `T1059.004`).
pub fn attack_technique(tags: &[String]) -> Option<String> {
    tags.iter().find_map(|t| {
        let rest = t.strip_prefix("attack.t")?;
        let ok = !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && rest.as_bytes()[0].is_ascii_digit();
        ok.then(|| format!("T{rest}"))
    })
}

/// The finding severity of a Sigma level (no level reads as medium).
pub fn severity_of(level: Option<Level>) -> Severity {
    match level {
        Some(Level::Informational) => Severity::Info,
        Some(Level::Low) => Severity::Low,
        None | Some(Level::Medium) => Severity::Medium,
        Some(Level::High) => Severity::High,
        Some(Level::Critical) => Severity::Critical,
    }
}

/// Every rule file under `paths`: files as given, directories recursively
/// (`*.yml`, `*.yaml`, sorted; symbolic links to directories not followed).
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, 0, &mut out)?;
        } else {
            out.push(path.clone());
        }
        if out.len() > MAX_FILES {
            return Err(LoadError::Limit {
                path: path.clone(),
                reason: format!("more than {MAX_FILES} rule files"),
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    if depth > MAX_DEPTH {
        return Err(LoadError::Limit {
            path: dir.to_owned(),
            reason: format!("directories nested deeper than {MAX_DEPTH}"),
        });
    }
    let read = |source| LoadError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(read)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if kind.is_dir() && !hidden {
            walk(&path, depth + 1, out)?;
        } else if !kind.is_dir()
            && !hidden
            && path.extension().is_some_and(|e| e == "yml" || e == "yaml")
        {
            out.push(path);
        }
        if out.len() > MAX_FILES {
            return Err(LoadError::Limit {
                path: dir.to_owned(),
                reason: format!("more than {MAX_FILES} rule files"),
            });
        }
    }
    Ok(())
}

/// Loads every rule under `paths`. Fails, naming the file, if any file cannot
/// be read or parsed; rules Bannin cannot apply are listed in
/// [`SigmaSet::refused`] instead.
pub fn load(paths: &[PathBuf]) -> Result<SigmaSet, LoadError> {
    let files = rule_files(paths)?;
    let mut parsed = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for file in &files {
        total += std::fs::metadata(file).map_or(0, |m| m.len());
        if total > limits::MAX_TOTAL_BYTES {
            return Err(LoadError::Limit {
                path: file.clone(),
                reason: format!(
                    "the rule files add up to more than {} MiB",
                    limits::MAX_TOTAL_BYTES / (1024 * 1024)
                ),
            });
        }
        parsed.push((file.clone(), parse_file(file)?));
    }
    build(parsed)
}

/// Parses one file: every document must be a valid rule, correlation or filter.
pub fn parse_file(file: &Path) -> Result<SigmaCollection, LoadError> {
    use std::io::Read;
    let read = |source| LoadError::Read {
        path: file.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .map_err(read)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::Limit {
            path: file.to_owned(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    parse_text(file, &text)
}

/// Parses rule text read from `file`.
pub fn parse_text(file: &Path, text: &str) -> Result<SigmaCollection, LoadError> {
    // A file that ends with a document separator (a `---` line) has an empty
    // last document, which is valid YAML and no rule.
    let mut text = text.trim_end();
    loop {
        let (head, last) = text.rsplit_once('\n').unwrap_or(("", text));
        if last.trim() != "---" || text.is_empty() {
            break;
        }
        text = head.trim_end();
    }
    // Bounded before the parsers run: the YAML parser is quadratic in flow
    // nesting and the condition parsers recurse (see `limits`).
    let limit = |reason| LoadError::Limit {
        path: file.to_owned(),
        reason,
    };
    limits::check_flow_nesting(text, limits::MAX_FLOW_DEPTH).map_err(limit)?;
    limits::check_conditions(text, limits::MAX_CONDITION_DEPTH).map_err(limit)?;
    let collection = rsigma_parser::parse_sigma_yaml(text).map_err(|e| LoadError::Parse {
        path: file.to_owned(),
        reason: limits::first_line(&e.to_string()),
    })?;
    if !collection.errors.is_empty() {
        let all = collection.errors.join("; ");
        return Err(LoadError::Parse {
            path: file.to_owned(),
            reason: limits::first_line(&all),
        });
    }
    if collection.rules.is_empty()
        && collection.correlations.is_empty()
        && collection.filters.is_empty()
    {
        return Err(LoadError::Parse {
            path: file.to_owned(),
            reason: "no Sigma rule in the file".into(),
        });
    }
    Ok(collection)
}

/// Compiles parsed files into a set: each rule checked, compiled once, and
/// placed in its log source's engine, or refused with the reason.
pub fn build(parsed: Vec<(PathBuf, SigmaCollection)>) -> Result<SigmaSet, LoadError> {
    let mut set = SigmaSet {
        files: parsed.len(),
        loaded_unix_ms: bannin_proto::now_unix_ms(),
        ..SigmaSet::default()
    };
    // Detection rules first: correlations refer to them.
    let mut categories: HashMap<String, Category> = HashMap::new();
    let mut accepted: Vec<SigmaRule> = Vec::new();
    // Each log source's detections, for its prefilter.
    let mut detections: [Vec<rsigma_parser::Detections>; 3] = Default::default();
    let mut correlations: Vec<(PathBuf, CorrelationRule)> = Vec::new();
    // What the compiled regular expressions take, summed (bounded).
    let mut regex_bytes = 0usize;
    for (file, collection) in parsed {
        for filter in &collection.filters {
            set.refused.push(Refused {
                file: file.clone(),
                title: filter.title.clone(),
                id: filter.id.clone().unwrap_or_default(),
                reason: "Sigma filter documents are not supported: write a [[suppress]] rule in the collector config".into(),
            });
        }
        for (n, mut rule) in collection.rules.into_iter().enumerate() {
            let refuse = |set: &mut SigmaSet, rule: &SigmaRule, reason: String| {
                set.refused.push(Refused {
                    file: file.clone(),
                    title: rule.title.clone(),
                    id: rule.id.clone().unwrap_or_default(),
                    reason,
                });
            };
            let category = match check_rule(&rule) {
                Ok(c) => c,
                Err(reason) => {
                    refuse(&mut set, &rule, reason);
                    continue;
                }
            };
            let key = rule
                .id
                .clone()
                .unwrap_or_else(|| format!("{}#{}", file.display(), n + 1));
            if let Some(&i) = set.by_key.get(&key) {
                let other = set.rules[i].file.display().to_string();
                refuse(
                    &mut set,
                    &rule,
                    format!("id {key} is already used by a rule in {other}"),
                );
                continue;
            }
            let id = rule.id.clone();
            rule.id = Some(key.clone());
            compat::rewrite_base64offset(&mut rule);
            let mut compiled = match rsigma_eval::compile_rule(&rule) {
                Ok(c) => c,
                Err(e) => {
                    return Err(LoadError::Rule {
                        path: file.clone(),
                        title: rule.title.clone(),
                        reason: limits::first_line(&e.to_string()),
                    });
                }
            };
            match limits::bound_regexes(compiled.detections.values_mut()) {
                Ok(cost) => regex_bytes += cost.bytes,
                Err(reason) => {
                    refuse(&mut set, &rule, reason);
                    continue;
                }
            }
            if regex_bytes > limits::MAX_REGEX_SET_BYTES {
                return Err(LoadError::Limit {
                    path: file.clone(),
                    reason: format!(
                        "the rule set's regular expressions take more than {} MiB compiled",
                        limits::MAX_REGEX_SET_BYTES / (1024 * 1024)
                    ),
                });
            }
            set.engines[category.index()].compiled.push(compiled);
            set.engines[category.index()].info.push(set.rules.len());
            detections[category.index()].push(rule.detection.clone());
            set.by_key.insert(key.clone(), set.rules.len());
            if let Some(name) = &rule.name {
                categories.insert(name.clone(), category);
            }
            categories.insert(key.clone(), category);
            set.rules.push(RuleInfo {
                key,
                id,
                title: rule.title.clone(),
                level: rule
                    .level
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_default(),
                severity: severity_of(rule.level),
                status: rule.status.map(status_name).unwrap_or_default().into(),
                tags: rule.tags.clone(),
                falsepositives: rule.falsepositives.clone(),
                file: file.clone(),
                logsource: category.name().into(),
                kind: RuleKind::Detection,
                generates: true,
                feeds: false,
            });
            accepted.push(rule);
        }
        correlations.extend(
            collection
                .correlations
                .into_iter()
                .map(|c| (file.clone(), c)),
        );
    }
    // Then correlations, each tried on a scratch engine so a bad one is
    // refused alone.
    let mut silent: HashSet<String> = HashSet::new();
    let mut used: Vec<CorrelationRule> = Vec::new();
    for (n, (file, mut corr)) in correlations.into_iter().enumerate() {
        let refuse = |set: &mut SigmaSet, corr: &CorrelationRule, reason: String| {
            set.refused.push(Refused {
                file: file.clone(),
                title: corr.title.clone(),
                id: corr.id.clone().unwrap_or_default(),
                reason,
            });
        };
        let key = corr
            .id
            .clone()
            .unwrap_or_else(|| format!("{}#c{}", file.display(), n + 1));
        if set.by_key.contains_key(&key) {
            refuse(&mut set, &corr, format!("id {key} is already used"));
            continue;
        }
        if let Err(reason) = check_correlation(&corr, &categories) {
            refuse(&mut set, &corr, reason);
            continue;
        }
        let id = corr.id.clone();
        corr.id = Some(key.clone());
        compat::temporal_needs_every_rule(&mut corr);
        let mut scratch = CorrelationEngine::new(CorrelationConfig::default());
        if let Err(e) = scratch.add_correlation(&corr) {
            refuse(&mut set, &corr, e.to_string());
            continue;
        }
        for r in &corr.rules {
            if !corr.generate {
                silent.insert(r.clone());
            }
        }
        set.by_key.insert(key.clone(), set.rules.len());
        set.rules.push(RuleInfo {
            key,
            id,
            title: corr.title.clone(),
            level: corr
                .level
                .map(|l| l.as_str().to_owned())
                .unwrap_or_default(),
            severity: severity_of(corr.level),
            status: corr.status.map(status_name).unwrap_or_default().into(),
            tags: corr.tags.clone(),
            falsepositives: corr.falsepositives.clone(),
            file,
            logsource: correlation_type_name(&corr).into(),
            kind: RuleKind::Correlation,
            generates: true,
            feeds: false,
        });
        used.push(corr);
    }
    let referenced: HashSet<&String> = used.iter().flat_map(|c| c.rules.iter()).collect();
    for rule in accepted {
        let key = rule.id.clone().unwrap_or_default();
        let names = |r: &String| Some(r) == rule.name.as_ref() || *r == key;
        let Some(&i) = set.by_key.get(&key) else {
            continue;
        };
        // (A rule another correlation reads with `generate: true` still stays
        // quiet: the specification says so for any `false`.)
        set.rules[i].generates = !silent.iter().any(names);
        if referenced.iter().any(|r| names(r)) {
            set.rules[i].feeds = true;
            set.correlation.rules.push(rule);
        }
    }
    set.correlation.correlations = used;
    set.health = set.rules.iter().map(|_| RuleHealth::default()).collect();
    for (rules, detections) in set.engines.iter_mut().zip(&detections) {
        rules.prefilter = prefilter::Prefilter::build(detections);
    }
    Ok(set)
}

fn status_name(s: rsigma_parser::Status) -> &'static str {
    match s {
        rsigma_parser::Status::Stable => "stable",
        rsigma_parser::Status::Test => "test",
        rsigma_parser::Status::Experimental => "experimental",
        rsigma_parser::Status::Deprecated => "deprecated",
        rsigma_parser::Status::Unsupported => "unsupported",
    }
}

fn correlation_type_name(c: &CorrelationRule) -> &'static str {
    use rsigma_parser::CorrelationType as T;
    match c.correlation_type {
        T::EventCount => "event_count",
        T::ValueCount => "value_count",
        T::Temporal => "temporal",
        T::TemporalOrdered => "temporal_ordered",
        T::ValueSum => "value_sum",
        T::ValueAvg => "value_avg",
        T::ValuePercentile => "value_percentile",
        T::ValueMedian => "value_median",
    }
}

/// The log source a rule applies to, or why Bannin cannot apply it.
fn check_rule(rule: &SigmaRule) -> Result<Category, String> {
    let ls = &rule.logsource;
    if let Some(p) = &ls.product
        && p != "linux"
    {
        return Err(format!(
            "log source product {p:?}: Bannin provides product linux only"
        ));
    }
    if let Some(s) = &ls.service {
        return Err(format!(
            "log source service {s:?}: Bannin provides the categories process_creation, file_event and network_connection, not services"
        ));
    }
    let category = match &ls.category {
        Some(c) => Category::from_name(c).ok_or_else(|| {
            format!(
                "log source category {c:?}: Bannin provides process_creation, file_event and network_connection"
            )
        })?,
        None => {
            return Err(
                "no log source category: Bannin provides process_creation, file_event and network_connection".into(),
            );
        }
    };
    for detection in rule.detection.named.values() {
        check_detection(category, detection)?;
    }
    Ok(category)
}

fn check_detection(category: Category, detection: &Detection) -> Result<(), String> {
    match detection {
        Detection::AllOf(items) => items.iter().try_for_each(|i| check_item(category, i)),
        Detection::AnyOf(list) => list.iter().try_for_each(|d| check_detection(category, d)),
        Detection::Keywords(_) => Ok(()),
        // Array matching ({field}[any]) is an extension no Bannin field needs.
        Detection::And(list) => list.iter().try_for_each(|d| check_detection(category, d)),
        _ => Err("array matching is not supported: Bannin's fields are scalars".into()),
    }
}

fn check_item(category: Category, item: &DetectionItem) -> Result<(), String> {
    if item.field.has_modifier(Modifier::Expand) {
        return Err(
            "the expand modifier needs placeholder values from a processing pipeline, which Bannin does not have".into(),
        );
    }
    let Some(name) = &item.field.name else {
        return Ok(());
    };
    check_field(category, name)?;
    if item.field.has_modifier(Modifier::FieldRef) {
        for v in &item.values {
            if let SigmaValue::String(s) = v {
                check_field(category, &s.original)?;
            }
        }
    }
    Ok(())
}

fn check_field(category: Category, name: &str) -> Result<(), String> {
    if fields::provided(category, name) {
        return Ok(());
    }
    if let Some((_, why)) = fields::UNAVAILABLE.iter().find(|(f, _)| *f == name) {
        return Err(format!("field {name} is not available: {why}"));
    }
    let offered: Vec<&str> = fields::FIELDS
        .iter()
        .filter(|f| f.category == category)
        .map(|f| f.field)
        .collect();
    Err(format!(
        "field {name} is not provided for {}: Bannin provides {}",
        category.name(),
        offered.join(", ")
    ))
}

/// Checks a correlation's references and group-by fields.
fn check_correlation(
    corr: &CorrelationRule,
    categories: &HashMap<String, Category>,
) -> Result<(), String> {
    if corr.rules.is_empty() {
        return Err("a correlation must name the rules it reads".into());
    }
    let mut seen = Vec::new();
    for r in &corr.rules {
        match categories.get(r) {
            Some(c) => seen.push(*c),
            None => {
                return Err(format!(
                    "rule {r:?} is not loaded (refused, or not in the rule paths)"
                ));
            }
        }
    }
    let aliased: HashSet<&str> = corr.aliases.iter().map(|a| a.alias.as_str()).collect();
    let mut needed: Vec<&String> = corr.group_by.iter().collect();
    if let rsigma_parser::CorrelationCondition::Threshold {
        field: Some(fields),
        ..
    } = &corr.condition
    {
        needed.extend(fields.iter());
    }
    for f in needed {
        if aliased.contains(f.as_str()) {
            continue;
        }
        for c in &seen {
            check_field(*c, f)?;
        }
    }
    for alias in &corr.aliases {
        for (rule, field) in &alias.mapping {
            if let Some(c) = categories.get(rule) {
                check_field(*c, field)?;
            }
        }
    }
    Ok(())
}
