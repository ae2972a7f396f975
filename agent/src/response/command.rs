//! A collector's command, parsed once into a typed [`Command`] (as mini-redis's
//! `cmd/` does): the wire's typed `body` (a proto `oneof`, built and checked by the
//! collector) becomes the variant and its fields, and anything malformed is refused
//! here with the reason, before anything runs. From a collector that sends no
//! `body`, the verb and text arguments are parsed instead. Each command's `apply`
//! lives in `response/cmd/`.

use bannin_proto::v1;

use super::isolate::{IsolationError, Net};
use super::triage::Question;

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answer at once (a round trip through the queue).
    Ping,
    /// Cut the host off the network but for its collector and what is allowed.
    Isolate(Isolate),
    /// Remove exactly the isolation table.
    Release,
    /// Answer one read-only question.
    Triage(Triage),
    /// Collect a snapshot and stream it to the collector.
    Snapshot(Snapshot),
    /// Forget learned baselines before the next sweep.
    Relearn(Relearn),
}

/// `isolate`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolate {
    /// Addresses or networks the host may still reach.
    pub allow: Vec<Net>,
    /// The operator confirmed isolating the machine they operate from.
    pub confirm_local: bool,
}

/// `triage`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Triage {
    /// The question.
    pub question: Question,
    /// The path, for `stat`, `hash` and `ls`.
    pub path: Option<String>,
}

/// `snapshot`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Who asked (for the manifest).
    pub operator: String,
    /// Why.
    pub reason: String,
    /// Files the operator names.
    pub files: Vec<String>,
}

/// `relearn`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Relearn {
    /// One sensor, or every baseline sensor.
    pub sensor: Option<String>,
}

/// Why a command cannot be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The verb is not one this agent knows.
    #[error("verb {verb:?} is not supported by agent {version}", version = bannin_proto::VERSION)]
    UnknownVerb {
        /// The verb.
        verb: String,
    },
    /// An `allow` entry is not an address or network.
    #[error("allow: {0}")]
    Allow(#[source] IsolationError),
    /// A triage question this agent does not know.
    #[error(transparent)]
    Question(#[from] super::triage::TriageError),
}

impl Command {
    /// Parses a command off the wire: its typed `body`, or, from a collector that
    /// does not send one yet, its verb and text arguments.
    pub fn parse(command: &v1::Command) -> Result<Self, ParseError> {
        match &command.body {
            Some(body) => Self::from_body(body),
            None => Self::from_text(command),
        }
    }

    /// The typed form.
    fn from_body(body: &v1::command::Body) -> Result<Self, ParseError> {
        use v1::command::Body;
        Ok(match body {
            Body::Ping(_) => Command::Ping,
            Body::Isolate(i) => Command::Isolate(Isolate {
                allow: i
                    .allow
                    .iter()
                    .map(|a| Net::parse(a))
                    .collect::<Result<_, _>>()
                    .map_err(ParseError::Allow)?,
                confirm_local: i.confirm_local,
            }),
            Body::Release(_) => Command::Release,
            Body::Triage(t) => Command::Triage(Triage {
                question: t.question.parse()?,
                path: Some(t.path.clone()).filter(|p| !p.is_empty()),
            }),
            Body::Snapshot(s) => Command::Snapshot(Snapshot {
                operator: s.operator.clone(),
                reason: s.reason.clone(),
                files: s.files.clone(),
            }),
            Body::Relearn(r) => Command::Relearn(Relearn {
                sensor: Some(r.sensor.clone()).filter(|s| !s.is_empty()),
            }),
        })
    }

    /// The text form: the verb picks the command, arguments are parsed by name.
    fn from_text(command: &v1::Command) -> Result<Self, ParseError> {
        let args = &command.arguments;
        let arg = |name: &str| args.get(name).map(String::as_str).unwrap_or_default();
        let optional = |name: &str| Some(arg(name)).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(match command.verb.as_str() {
            "ping" => Command::Ping,
            "isolate" => Command::Isolate(Isolate {
                allow: arg("allow")
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(Net::parse)
                    .collect::<Result<_, _>>()
                    .map_err(ParseError::Allow)?,
                confirm_local: arg("confirm_local") == "yes",
            }),
            "release" => Command::Release,
            "triage" => Command::Triage(Triage {
                question: arg("question").parse()?,
                path: optional("path"),
            }),
            "snapshot" => Command::Snapshot(Snapshot {
                operator: arg("operator").to_owned(),
                reason: arg("reason").to_owned(),
                files: arg("files")
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            }),
            "relearn" => Command::Relearn(Relearn {
                sensor: optional("sensor"),
            }),
            other => {
                return Err(ParseError::UnknownVerb {
                    verb: other.to_owned(),
                });
            }
        })
    }

    /// The verb, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Isolate(_) => "isolate",
            Command::Release => "release",
            Command::Triage(_) => "triage",
            Command::Snapshot(_) => "snapshot",
            Command::Relearn(_) => "relearn",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Arguments as the wire carries them.
    fn arguments(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn wire(verb: &str, args: &[(&str, &str)]) -> v1::Command {
        v1::Command {
            id: "c1".into(),
            verb: verb.into(),
            arguments: arguments(args).into_iter().collect(),
            body: None,
        }
    }

    #[test]
    fn every_verb_parses_into_its_typed_command() {
        assert_eq!(
            Command::parse(&wire("ping", &[])).expect("ping"),
            Command::Ping
        );
        assert_eq!(
            Command::parse(&wire("release", &[])).expect("release"),
            Command::Release
        );
        let Ok(Command::Isolate(i)) = Command::parse(&wire(
            "isolate",
            &[("allow", "10.0.0.5,192.0.2.0/24"), ("confirm_local", "yes")],
        )) else {
            panic!("isolate");
        };
        assert_eq!(i.allow.len(), 2);
        assert!(i.confirm_local);
        assert_eq!(
            Command::parse(&wire(
                "triage",
                &[("question", "stat"), ("path", "/etc/passwd")]
            ))
            .expect("triage"),
            Command::Triage(Triage {
                question: Question::Stat,
                path: Some("/etc/passwd".into())
            })
        );
        let Ok(Command::Snapshot(s)) = Command::parse(&wire(
            "snapshot",
            &[("files", "/a\n/b\n"), ("reason", "case 7")],
        )) else {
            panic!("snapshot");
        };
        assert_eq!(s.files, ["/a", "/b"]);
        assert_eq!(s.reason, "case 7");
        assert_eq!(
            Command::parse(&wire("relearn", &[("sensor", "")])).expect("relearn"),
            Command::Relearn(Relearn { sensor: None })
        );
    }

    #[test]
    fn the_typed_body_is_read_and_the_text_form_ignored() {
        use v1::command::Body;
        let mut command = wire("ping", &[]);
        command.body = Some(Body::Triage(v1::TriageCommand {
            question: "ls".into(),
            path: "/dev/shm".into(),
        }));
        assert_eq!(
            Command::parse(&command).expect("typed"),
            Command::Triage(Triage {
                question: Question::Ls,
                path: Some("/dev/shm".into())
            })
        );
        command.body = Some(Body::Isolate(v1::IsolateCommand {
            allow: vec!["10.0.0.5".into(), "nonsense".into()],
            confirm_local: false,
        }));
        let err = Command::parse(&command).expect_err("bad allow");
        assert!(err.to_string().contains("nonsense"), "{err}");
    }

    #[test]
    fn malformed_commands_are_refused_with_the_reason() {
        let err = Command::parse(&wire("format-disk", &[])).expect_err("unknown verb");
        assert!(err.to_string().contains("\"format-disk\" is not supported"));
        let err = Command::parse(&wire("isolate", &[("allow", "10.0.0.5,not-an-ip")]))
            .expect_err("bad allow");
        assert!(err.to_string().contains("not-an-ip"), "{err}");
        let err = Command::parse(&wire("triage", &[("question", "rm")])).expect_err("bad question");
        assert!(err.to_string().contains("unknown triage question"), "{err}");
    }
}
