//! The one reader of commands as the previous release wrote them: a verb and
//! text arguments (`allow` comma-joined, `files` newline-joined,
//! `confirm_local = "yes"`), where commands are typed now
//! ([`crate::model::CommandBody`]).
//!
//! Two places still hold such records: the store's `commands` and `isolation`
//! trees, rewritten once when the store is opened
//! ([`Store::type_commands`](super::Store)), and operations in a cluster's log
//! published before the upgrade, read by [`command`] and [`isolation`] (the
//! `deserialize_with` of those operations' fields). Nothing writes this form.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Command, CommandBody, CommandState, Isolate, Isolation};

/// A command as the previous release stored it (postcard, field order kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LegacyCommand {
    pub(super) id: u64,
    pub(super) host_id: String,
    pub(super) verb: String,
    pub(super) arguments: BTreeMap<String, String>,
    pub(super) operator: String,
    pub(super) reason: String,
    pub(super) state: CommandState,
    pub(super) created_unix_ms: i64,
    pub(super) delivered_unix_ms: i64,
    pub(super) finished_unix_ms: i64,
    pub(super) expires_unix_ms: i64,
    pub(super) result: String,
}

/// A desired isolation state as the previous release stored it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LegacyIsolation {
    pub(super) isolated: bool,
    pub(super) arguments: BTreeMap<String, String>,
    pub(super) confirmed: bool,
}

/// The isolation's text arguments, typed.
fn isolate(arguments: &BTreeMap<String, String>) -> Isolate {
    let arg = |name: &str| arguments.get(name).map(String::as_str).unwrap_or_default();
    Isolate {
        allow: arg("allow")
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        confirm_local: arg("confirm_local") == "yes",
    }
}

impl TryFrom<LegacyCommand> for Command {
    /// The verb no release of Bannin issued.
    type Error = String;

    fn try_from(old: LegacyCommand) -> Result<Self, String> {
        let arg = |name: &str| old.arguments.get(name).cloned().unwrap_or_default();
        let body = match old.verb.as_str() {
            "ping" => CommandBody::Ping,
            "isolate" => CommandBody::Isolate(isolate(&old.arguments)),
            "release" => CommandBody::Release,
            "triage" => CommandBody::Triage {
                question: arg("question"),
                path: arg("path"),
            },
            "snapshot" => CommandBody::Snapshot {
                operator: arg("operator"),
                reason: arg("reason"),
                files: arg("files")
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            "relearn" => CommandBody::Relearn {
                sensor: arg("sensor"),
            },
            other => return Err(format!("command c{} has an unknown verb {other:?}", old.id)),
        };
        Ok(Command {
            id: old.id,
            host_id: old.host_id,
            body,
            operator: old.operator,
            reason: old.reason,
            state: old.state,
            created_unix_ms: old.created_unix_ms,
            delivered_unix_ms: old.delivered_unix_ms,
            finished_unix_ms: old.finished_unix_ms,
            expires_unix_ms: old.expires_unix_ms,
            result: old.result,
        })
    }
}

impl From<LegacyIsolation> for Isolation {
    fn from(old: LegacyIsolation) -> Self {
        Isolation {
            isolated: old.isolated,
            isolate: isolate(&old.arguments),
            confirmed: old.confirmed,
        }
    }
}

/// A command in either form (self-describing formats only: JSON).
#[derive(Deserialize)]
#[serde(untagged)]
enum EitherCommand {
    Typed(Command),
    Legacy(LegacyCommand),
}

/// An isolation state in either form (self-describing formats only: JSON).
#[derive(Deserialize)]
#[serde(untagged)]
enum EitherIsolation {
    Typed(Isolation),
    Legacy(LegacyIsolation),
}

/// Reads a command typed or as the previous release wrote it (an operation
/// in a cluster's log published before the upgrade).
pub(crate) fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
    match EitherCommand::deserialize(d)? {
        EitherCommand::Typed(c) => Ok(c),
        EitherCommand::Legacy(old) => Command::try_from(old).map_err(serde::de::Error::custom),
    }
}

/// Reads an isolation state typed or as the previous release wrote it.
pub(crate) fn isolation<'de, D: Deserializer<'de>>(d: D) -> Result<Isolation, D::Error> {
    Ok(match EitherIsolation::deserialize(d)? {
        EitherIsolation::Typed(i) => i,
        EitherIsolation::Legacy(old) => old.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(verb: &str, arguments: &[(&str, &str)]) -> LegacyCommand {
        LegacyCommand {
            id: 7,
            host_id: "web-01".into(),
            verb: verb.into(),
            arguments: arguments
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            operator: "alice".into(),
            reason: "case 7".into(),
            state: CommandState::Succeeded,
            created_unix_ms: 1,
            delivered_unix_ms: 2,
            finished_unix_ms: 3,
            expires_unix_ms: 4,
            result: "done".into(),
        }
    }

    /// Every verb the previous release issued reads as its typed command,
    /// its text arguments split as that release joined them.
    #[test]
    fn every_verb_of_the_previous_release_reads_typed() {
        let cases = [
            (old("ping", &[]), CommandBody::Ping),
            (
                old(
                    "isolate",
                    &[
                        ("allow", "10.0.0.5, 192.0.2.0/24"),
                        ("confirm_local", "yes"),
                    ],
                ),
                CommandBody::Isolate(Isolate {
                    allow: vec!["10.0.0.5".into(), "192.0.2.0/24".into()],
                    confirm_local: true,
                }),
            ),
            (old("release", &[]), CommandBody::Release),
            (
                old("triage", &[("question", "hash"), ("path", "/bin/ls")]),
                CommandBody::Triage {
                    question: "hash".into(),
                    path: "/bin/ls".into(),
                },
            ),
            (
                old(
                    "snapshot",
                    &[
                        ("files", "/etc/passwd\n/tmp/x\n"),
                        ("operator", "alice"),
                        ("reason", "case 7"),
                    ],
                ),
                CommandBody::Snapshot {
                    operator: "alice".into(),
                    reason: "case 7".into(),
                    files: vec!["/etc/passwd".into(), "/tmp/x".into()],
                },
            ),
            (
                old("relearn", &[("sensor", "file_integrity")]),
                CommandBody::Relearn {
                    sensor: "file_integrity".into(),
                },
            ),
        ];
        for (old, body) in cases {
            let typed = Command::try_from(old.clone()).expect("typed");
            assert_eq!(typed.body, body);
            assert_eq!(
                (typed.id, typed.operator.as_str(), typed.result.as_str()),
                (7, "alice", "done")
            );
            assert_eq!(typed.state, CommandState::Succeeded);
        }
        let why = Command::try_from(old("reboot", &[])).expect_err("unknown verb");
        assert!(why.contains("c7") && why.contains("reboot"), "{why}");
    }

    /// An operation in the log reads a command in either form.
    #[test]
    fn json_of_either_form_reads_typed() {
        #[derive(Deserialize)]
        struct Op {
            #[serde(deserialize_with = "command")]
            command: Command,
            #[serde(deserialize_with = "isolation")]
            isolation: Isolation,
        }
        let legacy = serde_json::json!({
            "command": old("isolate", &[("allow", "10.0.0.5")]),
            "isolation": LegacyIsolation {
                isolated: true,
                arguments: [("allow".to_owned(), "10.0.0.5".to_owned())].into(),
                confirmed: false,
            },
        });
        let op: Op = serde_json::from_value(legacy).expect("legacy");
        let isolate = Isolate {
            allow: vec!["10.0.0.5".into()],
            confirm_local: false,
        };
        assert_eq!(op.command.body, CommandBody::Isolate(isolate.clone()));
        assert_eq!(op.isolation.isolate, isolate);
        let typed = serde_json::json!({ "command": op.command, "isolation": op.isolation });
        let again: Op = serde_json::from_value(typed).expect("typed");
        assert_eq!(again.command, op.command);
        assert_eq!(again.isolation, op.isolation);
    }
}
