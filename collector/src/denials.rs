//! Refusals in the action log, coalesced.
//!
//! Every refused caller that identified itself (an operator without the role,
//! a disabled operator, an agent certificate on the operator API, an operator
//! certificate on the agent link, a webhook caller with a wrong token) is an
//! action-log entry: the log is where a responder looks for who tried what.
//! But a refused caller must not be able to turn each try into a durable write
//! and an fsync. So the first refusal of a kind (same actor, verb and reason)
//! is written at once, and the repeats within [`WINDOW`] are counted and written
//! as one entry when the window closes: `repeated N more times between A and B`.
//! At most [`MAX_KINDS`] kinds are tracked at once; past that, repeats are
//! counted under one overflow entry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::Action;
use crate::store::Store;

/// How long repeats of one refusal are counted before they are written.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most refusal kinds counted at once.
pub const MAX_KINDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    actor: String,
    verb: String,
    result: String,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    repeats: u64,
    first_repeat_unix_ms: i64,
    last_repeat_unix_ms: i64,
}

/// The collector's refusal log (one per collector, shared by its endpoints).
pub struct Denials {
    store: Store,
    windows: Mutex<HashMap<Kind, Window>>,
}

impl Denials {
    /// Over `store`'s action log.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Records a refusal of `actor` trying `verb` (logged as `denied.VERB`),
    /// refused because `why`. Writes (and makes durable) only the first of its
    /// kind in a window; returns whether it wrote.
    pub async fn refused(&self, actor: &str, verb: &str, why: &str) -> bool {
        let kind = Kind {
            actor: actor.chars().take(200).collect(),
            verb: format!("denied.{verb}"),
            result: why.chars().take(500).collect(),
        };
        let now = bannin_proto::now_unix_ms();
        let mut closed = Vec::new();
        let write_now = {
            let mut windows = bannin_proto::lock(&self.windows);
            let open = windows
                .get(&kind)
                .is_some_and(|w| w.opened.elapsed() < WINDOW);
            if open {
                if let Some(w) = windows.get_mut(&kind) {
                    if w.repeats == 0 {
                        w.first_repeat_unix_ms = now;
                    }
                    w.repeats += 1;
                    w.last_repeat_unix_ms = now;
                }
                false
            } else {
                if let Some(w) = windows.remove(&kind) {
                    closed.push((kind.clone(), w));
                }
                let kind = if windows.len() >= MAX_KINDS {
                    Kind {
                        actor: "(many callers)".into(),
                        verb: "denied.*".into(),
                        result: format!(
                            "more than {MAX_KINDS} kinds of refusal at once; counted together"
                        ),
                    }
                } else {
                    kind.clone()
                };
                match windows.get_mut(&kind) {
                    // The overflow kind already open: count.
                    Some(w) => {
                        w.repeats += 1;
                        w.last_repeat_unix_ms = now;
                        false
                    }
                    None => {
                        windows.insert(
                            kind,
                            Window {
                                opened: Instant::now(),
                                repeats: 0,
                                first_repeat_unix_ms: 0,
                                last_repeat_unix_ms: 0,
                            },
                        );
                        true
                    }
                }
            }
        };
        let mut entries: Vec<Action> = closed.into_iter().filter_map(summary).collect();
        if write_now {
            entries.push(Action {
                at_unix_ms: now,
                actor: kind.actor,
                verb: kind.verb,
                target: String::new(),
                reason: String::new(),
                result: kind.result,
            });
        }
        self.write(entries).await;
        write_now
    }

    /// Writes the repeats of every window that has closed (all of them with
    /// `all`, at shutdown). Run every few seconds.
    pub async fn flush(&self, all: bool) {
        let closed: Vec<(Kind, Window)> = {
            let mut windows = bannin_proto::lock(&self.windows);
            let done: Vec<Kind> = windows
                .iter()
                .filter(|(_, w)| all || w.opened.elapsed() >= WINDOW)
                .map(|(k, _)| k.clone())
                .collect();
            done.into_iter()
                .filter_map(|k| windows.remove(&k).map(|w| (k, w)))
                .collect()
        };
        self.write(closed.into_iter().filter_map(summary).collect())
            .await;
    }

    async fn write(&self, entries: Vec<Action>) {
        if entries.is_empty() {
            return;
        }
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            for entry in &entries {
                store.append_action(entry)?;
            }
            store.make_durable()
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "Cannot log refusals"),
            Err(error) => tracing::error!(%error, "Cannot log refusals"),
        }
    }
}

/// The entry for a window's repeats, if it had any.
fn summary((kind, w): (Kind, Window)) -> Option<Action> {
    (w.repeats > 0).then(|| Action {
        at_unix_ms: w.last_repeat_unix_ms,
        actor: kind.actor,
        verb: kind.verb,
        target: String::new(),
        reason: String::new(),
        result: format!(
            "{} — repeated {} more time(s) between {} and {}",
            kind.result,
            w.repeats,
            bannin_proto::rfc3339(w.first_repeat_unix_ms),
            bannin_proto::rfc3339(w.last_repeat_unix_ms)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeats_are_one_entry_and_none_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let denials = Denials::new(store.clone());
        let before = store.actions().expect("actions").len();
        assert!(
            denials
                .refused("operator val", "command.isolate", "needs responder")
                .await
        );
        for _ in 0..500 {
            assert!(
                !denials
                    .refused("operator val", "command.isolate", "needs responder")
                    .await
            );
        }
        // Another kind is its own entry at once.
        assert!(
            denials
                .refused("operator vic", "command.isolate", "needs responder")
                .await
        );
        let actions = store.actions().expect("actions");
        assert_eq!(actions.len() - before, 2, "two entries, not 502");
        // The repeats are written when the window closes (here: at shutdown).
        denials.flush(true).await;
        let actions = store.actions().expect("actions");
        assert_eq!(actions.len() - before, 3);
        let last = &actions.last().expect("entry").action;
        assert_eq!(last.verb, "denied.command.isolate");
        assert_eq!(last.actor, "operator val");
        assert!(
            last.result.contains("repeated 500 more time(s)"),
            "{}",
            last.result
        );
        assert!(store.verify_actions().expect("verify").is_ok());
    }
}
