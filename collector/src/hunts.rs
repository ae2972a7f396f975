//! Hunts: one question asked of every host a hunt selects — the hosts
//! connected now, and every selected host that connects (or gains a matching
//! label) before the hunt expires.
//!
//! A hunt is a record in the store, started and stopped through the journal
//! (`StartHunt`, `StopHunt`: in cluster mode, every collector has it and
//! sends it to the hosts it holds). It is not a queued command per host: a
//! hunt over ten thousand hosts is one record, and whichever collector holds
//! a host's stream sends it the hunt when the stream opens (or when the hunt
//! starts), as long as the host has not answered. An answer goes through the
//! journal too (`HuntAnswers`, batched), stored with its `hunt.match`
//! finding in one commit; the first answer of a host stands.
//!
//! Trust: only a host this collector sent the hunt to may answer it (a host
//! cannot file answers to hunts it never got, or for another host: its
//! identity is its certificate's), and the answer is bounded here — rows,
//! bytes, field sizes — whatever the agent claims.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bannin_proto::{now_unix_ms, v1};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hosts::HostRegistry;
use crate::journal::{Journal, Op, OpReply};
use crate::model::{Action, Hunt, HuntAnswer, Severity};
use crate::store::{Store, StoreError};

/// How long a hunt reaches hosts when the operator says nothing.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(86_400);
/// The longest a hunt may run.
pub const MAX_EXPIRY: Duration = Duration::from_secs(30 * 86_400);
/// Most hits kept per host (the agent caps too; this is what is stored).
pub const MAX_HITS_PER_HOST: usize = 5000;
/// Longest row of an answer kept.
const MAX_ROW_BYTES: usize = 16 * 1024;
/// Largest answer read from an agent.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Answers written in one operation at most, and the longest one waits.
const ANSWER_BATCH: usize = 512;
const ANSWER_LINGER: Duration = Duration::from_millis(50);
/// Longest reason kept.
const MAX_REASON: usize = 4096;
/// Most hosts a hunt may name.
const MAX_HOSTS: usize = 10_000;
/// Hit rows returned by one `ShowHunt` at most.
pub const MAX_SHOWN_HITS: usize = 20_000;

/// Why a hunt was not started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// The question cannot run.
    #[error(transparent)]
    Question(#[from] bannin_proto::hunts::QuestionError),
    /// A hunt needs a reason.
    #[error("a hunt needs a reason (--reason)")]
    NoReason,
    /// The YARA rules do not compile.
    #[error("yara: the rules do not compile:\n{0}")]
    Rules(String),
    /// An argument is out of bounds.
    #[error("{0}")]
    Bad(String),
    /// No such hunt.
    #[error("no hunt {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal did not take it (nothing changed).
    #[error("the hunt was not taken: {0}; nothing changed, try again")]
    Journal(String),
}

/// Compiles a hunt's YARA rules as the agents will, to refuse a set that
/// does not compile before any host gets it. `include` is refused: a rule
/// must never read a file of the collector (or of a host).
///
/// Every error is found while the source is added; the native code the
/// agents build from it is not built here, so the collector never needs
/// executable memory (its unit keeps `MemoryDenyWriteExecute`).
pub fn check_rules(source: &str) -> Result<(), HuntError> {
    if bannin_proto::hunts::rule_names(source).is_empty() {
        return Err(HuntError::Rules("the source declares no rule".into()));
    }
    let mut compiler = yara_x::Compiler::new();
    compiler.enable_includes(false);
    compiler
        .add_source(source)
        .map_err(|e| HuntError::Rules(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn rules_that_do_not_compile_or_include_a_file_are_refused_with_the_reason() {
        assert!(check_rules("rule ok { strings: $a = \"x\" condition: $a }").is_ok());
        let err = check_rules("rule broken { condition: $missing }").expect_err("bad rule");
        assert!(err.to_string().contains("missing"), "{err}");
        let err = check_rules("include \"/etc/shadow\"\nrule x { condition: true }")
            .expect_err("include");
        assert!(err.to_string().contains("include"), "{err}");
        let err = check_rules("// nothing here").expect_err("no rule");
        assert!(err.to_string().contains("no rule"), "{err}");
        let err = check_rules("import \"pe\"\nrule x { condition: pe.is_pe }").expect_err("pe");
        assert!(err.to_string().contains("pe"), "{err}");
    }
}

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The question, as the operator API carries it.
    pub question: v1::HuntQuestion,
    /// Label selector.
    pub labels: BTreeMap<String, String>,
    /// Host selector.
    pub hosts: Vec<String>,
    /// How long it reaches hosts.
    pub expires_in: Duration,
    /// Severity of its findings.
    pub severity: Severity,
    /// Why.
    pub reason: String,
    /// Incident it belongs to (0: none).
    pub incident: u64,
    /// Caps per host (0: the agent's defaults).
    pub max_cpu_ms: u64,
    /// Bytes per host.
    pub max_read_bytes: u64,
    /// Hits per host.
    pub max_hits: u32,
}

/// Where one selected host stands.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// The host.
    pub host_id: String,
    /// pending, running, done, failed, expired or stopped.
    pub state: &'static str,
    /// Connected (to any collector).
    pub online: bool,
    /// Its answer, once it came.
    pub answer: Option<HuntAnswer>,
}

/// A hunt with where its hosts stand.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The hunt.
    pub hunt: Hunt,
    /// Every host it selects now, and every host that answered.
    pub hosts: Vec<HostState>,
}

impl Progress {
    /// (answered, with hits, failed, offline and not answered).
    pub fn counts(&self) -> (u32, u32, u32, u32) {
        let mut c = (0, 0, 0, 0);
        for h in &self.hosts {
            match &h.answer {
                Some(a) if a.ok => {
                    c.0 += 1;
                    if a.total > 0 {
                        c.1 += 1;
                    }
                }
                Some(_) => {
                    c.0 += 1;
                    c.2 += 1;
                }
                None if !h.online => c.3 += 1,
                None => {}
            }
        }
        c
    }
}

/// The hunts, and which of them this collector has sent to which host.
pub struct Hunts {
    store: Store,
    journal: Journal,
    hosts: std::sync::Arc<HostRegistry>,
    /// Hunts sent on this collector's live streams and not answered, by host.
    sent: Mutex<HashMap<String, HashSet<u64>>>,
    answers: mpsc::Sender<HuntAnswer>,
    answers_rx: Mutex<Option<mpsc::Receiver<HuntAnswer>>>,
}

impl Hunts {
    /// The hunts in `store`, changed through `journal`.
    pub fn new(store: Store, journal: Journal, hosts: std::sync::Arc<HostRegistry>) -> Self {
        let (answers, rx) = mpsc::channel(4 * ANSWER_BATCH);
        Self {
            store,
            journal,
            hosts,
            sent: Mutex::new(HashMap::new()),
            answers,
            answers_rx: Mutex::new(Some(rx)),
        }
    }

    /// Starts a hunt: checked, through the journal, in the action log.
    pub async fn start(&self, operator: &str, request: StartRequest) -> Result<Hunt, HuntError> {
        request.question.check()?;
        if let Some(v1::hunt_question::Kind::Yara(q)) = &request.question.kind {
            let rules = q.rules.clone();
            tokio::task::spawn_blocking(move || check_rules(&rules))
                .await
                .map_err(|e| HuntError::Rules(format!("the compiler failed: {e}")))??;
        }
        if request.reason.trim().is_empty() {
            return Err(HuntError::NoReason);
        }
        if request.reason.len() > MAX_REASON {
            return Err(HuntError::Bad(
                "the reason is too long (at most 4096 bytes)".into(),
            ));
        }
        if request.expires_in > MAX_EXPIRY {
            return Err(HuntError::Bad(
                "a hunt runs 30 days at most (--expires)".into(),
            ));
        }
        if request.hosts.len() > MAX_HOSTS {
            return Err(HuntError::Bad(format!("at most {MAX_HOSTS} hosts")));
        }
        if let Some(bad) = request.hosts.iter().find(|h| h.is_empty() || h.len() > 256) {
            return Err(HuntError::Bad(format!("{bad:?} is not a host id")));
        }
        bannin_proto::labels::check(&request.labels).map_err(|e| HuntError::Bad(e.to_string()))?;
        if request.max_hits as usize > MAX_HITS_PER_HOST {
            return Err(HuntError::Bad(format!(
                "at most {MAX_HITS_PER_HOST} hits per host (--max-hits)"
            )));
        }
        if request.incident != 0 && self.store.incident(request.incident)?.is_none() {
            return Err(HuntError::Bad(format!("no incident {}", request.incident)));
        }
        let now = now_unix_ms();
        let mut hunt = Hunt {
            id: 0,
            question: prost::Message::encode_to_vec(&request.question),
            description: request.question.describe(),
            labels: request.labels,
            hosts: request.hosts,
            operator: operator.to_owned(),
            reason: request.reason,
            severity: request.severity,
            created_unix_ms: now,
            expires_unix_ms: now
                .saturating_add(i64::try_from(request.expires_in.as_millis()).unwrap_or(i64::MAX)),
            stopped_unix_ms: 0,
            stopped_by: String::new(),
            incident: request.incident,
            max_cpu_ms: request.max_cpu_ms,
            max_read_bytes: request.max_read_bytes,
            max_hits: request.max_hits,
        };
        hunt.id = self
            .journal
            .submit(Op::StartHunt { hunt: hunt.clone() })
            .await
            .and_then(OpReply::into_raise)
            .map_err(|e| HuntError::Journal(e.to_string()))?;
        self.store.append_action(&Action {
            at_unix_ms: now,
            actor: operator.to_owned(),
            verb: "hunt.start".into(),
            target: hunt.wire_id(),
            reason: hunt.reason.clone(),
            result: format!("started: {}", hunt.description),
        })?;
        self.durable().await?;
        tracing::info!(hunt.id = %hunt.wire_id(), operator, question = %hunt.description, "Hunt started");
        Ok(self.store.hunt(hunt.id)?.unwrap_or(hunt))
    }

    /// Stops a hunt: it reaches no more hosts, and the hosts running it stop.
    pub async fn stop(&self, operator: &str, id: &str, reason: &str) -> Result<Hunt, HuntError> {
        let hunt = self.get(id)?;
        if reason.trim().is_empty() {
            return Err(HuntError::NoReason);
        }
        let now = now_unix_ms();
        let stopped = self
            .journal
            .submit(Op::StopHunt {
                id: hunt.id,
                operator: operator.to_owned(),
                at_unix_ms: now,
            })
            .await
            .and_then(OpReply::into_raise)
            .map_err(|e| HuntError::Journal(e.to_string()))?;
        self.store.append_action(&Action {
            at_unix_ms: now,
            actor: operator.to_owned(),
            verb: "hunt.stop".into(),
            target: hunt.wire_id(),
            reason: reason.chars().take(MAX_REASON).collect(),
            result: if stopped > 0 {
                "stopped".into()
            } else {
                "was stopped already".into()
            },
        })?;
        self.durable().await?;
        self.get(id)
    }

    /// One hunt by its wire id (`h3`).
    pub fn get(&self, id: &str) -> Result<Hunt, HuntError> {
        id.strip_prefix('h')
            .and_then(|n| n.parse::<u64>().ok())
            .map(|n| self.store.hunt(n))
            .transpose()?
            .flatten()
            .ok_or_else(|| HuntError::NotFound(id.to_owned()))
    }

    /// Every hunt, oldest first.
    pub fn list(&self) -> Result<Vec<Hunt>, StoreError> {
        self.store.hunts()
    }

    /// A hunt with where each host it selects stands.
    pub fn progress(&self, hunt: Hunt) -> Result<Progress, StoreError> {
        let now = now_unix_ms();
        let answers: HashMap<String, HuntAnswer> = self
            .store
            .hunt_answers(hunt.id)?
            .into_iter()
            .map(|a| (a.host_id.clone(), a))
            .collect();
        let running: HashSet<String> = bannin_proto::lock(&self.sent)
            .iter()
            .filter(|(_, ids)| ids.contains(&hunt.id))
            .map(|(h, _)| h.clone())
            .collect();
        let mut hosts = Vec::new();
        let mut seen = HashSet::new();
        for view in self.hosts.list() {
            let id = view.record.host_id;
            let answer = answers.get(&id).cloned();
            if answer.is_none() {
                let labels = self.store.host_labels(&id)?.effective();
                if !hunt.selects(&id, &labels) {
                    continue;
                }
            }
            let state = match &answer {
                Some(a) if a.ok => "done",
                Some(_) => "failed",
                None if hunt.stopped_unix_ms != 0 => "stopped",
                None if now > hunt.expires_unix_ms => "expired",
                None if running.contains(&id) => "running",
                None => "pending",
            };
            seen.insert(id.clone());
            hosts.push(HostState {
                host_id: id,
                state,
                online: view.online,
                answer,
            });
        }
        // Answers of hosts this collector does not know (another collector's, before its hello reached here).
        for (id, answer) in answers {
            if !seen.contains(&id) {
                hosts.push(HostState {
                    host_id: id,
                    state: if answer.ok { "done" } else { "failed" },
                    online: false,
                    answer: Some(answer),
                });
            }
        }
        hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        Ok(Progress { hunt, hosts })
    }

    /// The hunts to send `host` now (active, selecting it, not answered by
    /// it, not sent on this stream yet), marked sent.
    pub fn due_for(&self, host: &str) -> Result<Vec<v1::Command>, StoreError> {
        let now = now_unix_ms();
        let labels = self.store.host_labels(host)?.effective();
        let mut out = Vec::new();
        for hunt in self.store.hunts()? {
            if !hunt.active(now) || !hunt.selects(host, &labels) {
                continue;
            }
            if self.store.hunt_answered(hunt.id, host)? {
                continue;
            }
            let fresh = bannin_proto::lock(&self.sent)
                .entry(host.to_owned())
                .or_default()
                .insert(hunt.id);
            if fresh {
                out.push(hunt.to_agent());
            }
        }
        Ok(out)
    }

    /// The stop messages for hunt `id`: to every host this collector sent it
    /// to that has not answered (forgotten as sent).
    pub fn stops_for(&self, id: u64) -> Vec<(String, v1::Command)> {
        let hunt_id = format!("h{id}");
        let mut sent = bannin_proto::lock(&self.sent);
        sent.iter_mut()
            .filter_map(|(host, ids)| ids.remove(&id).then(|| host.clone()))
            .map(|host| {
                (
                    host,
                    v1::Command {
                        id: format!("{hunt_id}-stop"),
                        body: Some(v1::command::Body::StopHunt(v1::StopHuntCommand {
                            hunt_id: hunt_id.clone(),
                        })),
                    },
                )
            })
            .collect()
    }

    /// Whether hunt `id` is stopped (or gone).
    pub fn stopped(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.store.hunt(id)?.is_none_or(|h| h.stopped_unix_ms != 0))
    }

    /// A host's stream ended: what was sent on it is sent again on the next.
    pub fn forget(&self, host: &str) {
        bannin_proto::lock(&self.sent).remove(host);
    }

    /// A host's answer to a hunt (`h3`): checked, bounded, queued for the
    /// journal. An answer to a hunt this collector did not send this host is
    /// ignored (and logged).
    pub async fn answer(&self, host: &str, result: v1::CommandResult) {
        let Some(id) = result
            .command_id
            .strip_prefix('h')
            .and_then(|n| n.parse::<u64>().ok())
        else {
            // `h3-stop`: a stop's acknowledgement.
            tracing::debug!(host.id = host, command.id = %result.command_id, detail = %result.detail, "Hunt stop answered");
            return;
        };
        let was_sent = bannin_proto::lock(&self.sent)
            .get_mut(host)
            .is_some_and(|ids| ids.remove(&id));
        if !was_sent {
            tracing::warn!(
                host.id = host,
                hunt.id = id,
                "Answer to a hunt not sent to this host ignored"
            );
            return;
        }
        let answer = read_answer(id, host, &result);
        tracing::info!(
            host.id = host,
            hunt.id = id,
            ok = answer.ok,
            hits = answer.total,
            "Hunt answered"
        );
        if self.answers.send(answer).await.is_err() {
            tracing::error!(
                host.id = host,
                hunt.id = id,
                "Hunt answer lost: the recorder stopped"
            );
        }
    }

    /// Writes answers through the journal in batches until `shutdown`.
    pub async fn record(&self, shutdown: CancellationToken) {
        let Some(mut rx) = bannin_proto::lock(&self.answers_rx).take() else {
            return;
        };
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                a = rx.recv() => match a { Some(a) => a, None => return },
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + ANSWER_LINGER;
            while batch.len() < ANSWER_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(a)) => batch.push(a),
                    _ => break,
                }
            }
            let n = batch.len();
            let mut tries = 0;
            loop {
                let op = Op::HuntAnswers {
                    answers: batch.clone(),
                };
                match self.journal.submit(op).await.and_then(OpReply::into_raise) {
                    Ok(_) => break,
                    Err(error) if tries < 5 => {
                        tries += 1;
                        tracing::warn!(%error, answers = n, "Cannot record hunt answers; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(error) => {
                        // The hosts get the hunt again on their next stream.
                        tracing::error!(%error, answers = n, "Hunt answers not recorded");
                        break;
                    }
                }
            }
        }
    }

    async fn durable(&self) -> Result<(), StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.make_durable())
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt("flush task panicked".into())))
    }
}

/// An agent's answer, read and bounded: rows must be JSON objects, each at
/// most 16 KiB, at most [`MAX_HITS_PER_HOST`] of them.
fn read_answer(hunt_id: u64, host: &str, result: &v1::CommandResult) -> HuntAnswer {
    let mut answer = HuntAnswer {
        hunt_id,
        host_id: host.to_owned(),
        ok: false,
        hits: Vec::new(),
        total: 0,
        detail: String::new(),
        files: 0,
        bytes: 0,
        cpu_ms: 0,
        answered_unix_ms: now_unix_ms(),
    };
    let text = |s: &str| -> String {
        s.chars()
            .take(512)
            .map(|c| {
                if bannin_proto::hello::is_unsafe_char(c) {
                    '?'
                } else {
                    c
                }
            })
            .collect()
    };
    if !result.ok {
        answer.detail = text(&result.detail);
        return answer;
    }
    if result.detail.len() > MAX_ANSWER_BYTES {
        answer.detail = "the answer was larger than 1 MiB; refused".into();
        return answer;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&result.detail) else {
        answer.detail = "the answer is not JSON; refused".into();
        return answer;
    };
    answer.ok = true;
    let number = |k: &str| value[k].as_u64().unwrap_or(0);
    answer.files = number("files");
    answer.bytes = number("bytes");
    answer.cpu_ms = number("cpu_ms");
    answer.detail = match value["capped"].as_str().unwrap_or_default() {
        "" => String::new(),
        "cpu" => "the CPU cap was reached: the answer is partial".into(),
        "bytes" => "the read cap was reached: the answer is partial".into(),
        other => format!("a cap was reached ({}): the answer is partial", text(other)),
    };
    for row in value["hits"].as_array().into_iter().flatten() {
        if answer.hits.len() >= MAX_HITS_PER_HOST {
            break;
        }
        if !row.is_object() {
            continue;
        }
        let row = row.to_string();
        if row.len() <= MAX_ROW_BYTES {
            answer.hits.push(row);
        }
    }
    answer.total = number("total").max(answer.hits.len() as u64);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(detail: &str) -> v1::CommandResult {
        v1::CommandResult {
            command_id: "h3".into(),
            ok: true,
            detail: detail.into(),
        }
    }

    #[test]
    fn an_agents_answer_is_bounded_and_only_objects_are_kept() {
        let a = read_answer(
            3,
            "web-01",
            &result(
                r#"{"hits":[{"path":"/x"},"junk",7,{"big":"a"}],"total":9,"capped":"cpu","files":4,"bytes":10,"cpu_ms":2}"#,
            ),
        );
        assert!(a.ok);
        assert_eq!(a.hits, [r#"{"path":"/x"}"#, r#"{"big":"a"}"#]);
        assert_eq!(a.total, 9);
        assert!(a.detail.contains("CPU cap"), "{a:?}");
        let big = format!(
            r#"{{"hits":[{{"x":"{}"}}],"total":1}}"#,
            "a".repeat(MAX_ROW_BYTES)
        );
        let a = read_answer(3, "web-01", &result(&big));
        assert!(
            a.hits.is_empty() && a.total == 1,
            "an oversized row is not kept"
        );
        let a = read_answer(3, "web-01", &result("not json"));
        assert!(!a.ok && a.detail.contains("not JSON"));
        let failed = v1::CommandResult {
            ok: false,
            detail: "stopped\x1b[2J".into(),
            ..result("")
        };
        let a = read_answer(3, "web-01", &failed);
        assert!(!a.ok && !a.detail.contains('\x1b'), "{a:?}");
    }
}
