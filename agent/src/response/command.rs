//! A collector's command, parsed once into a typed [`Command`] (as mini-redis's
//! `cmd/` does): the wire's typed `body` (a proto `oneof`, built and checked by the
//! collector) becomes the variant and its fields, and anything malformed is refused
//! here with the reason, before anything runs. Each command's `apply` lives in
//! `response/cmd/`.

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
    /// Answer a hunt's question (on the hunt lane, at low priority).
    Hunt(super::hunt::Hunt),
    /// Cancel a hunt's work here.
    StopHunt(String),
    /// Capture packets and stream them to the collector as evidence.
    Capture(Capture),
}

/// `capture`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Who asked (for the manifest).
    pub operator: String,
    /// Why.
    pub reason: String,
    /// What to capture, bounded.
    pub request: super::capture::Request,
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
    /// The command carries no typed body (or one this agent does not know).
    #[error(
        "no command this agent ({version}) knows: the collector is older than typed commands, or newer than this agent",
        version = bannin_proto::VERSION
    )]
    NoBody,
    /// An `allow` entry is not an address or network.
    #[error("allow: {0}")]
    Allow(#[source] IsolationError),
    /// A triage question this agent does not know.
    #[error(transparent)]
    Question(#[from] super::triage::TriageError),
    /// A hunt question this agent refuses.
    #[error(transparent)]
    Hunt(#[from] bannin_proto::hunts::QuestionError),
    /// A capture out of bounds.
    #[error("capture: {0}")]
    Capture(String),
}

impl Command {
    /// Parses a command off the wire: its typed `body`. A command without one
    /// comes from a collector older than typed commands, and is refused.
    pub fn parse(command: &v1::Command) -> Result<Self, ParseError> {
        use v1::command::Body;
        let Some(body) = &command.body else {
            return Err(ParseError::NoBody);
        };
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
            Body::Hunt(h) => {
                let question = h.question.clone().unwrap_or_default();
                question.check()?;
                Command::Hunt(super::hunt::Hunt {
                    id: h.hunt_id.clone(),
                    question,
                    caps: super::hunt::Caps::of(h),
                })
            }
            Body::StopHunt(s) => Command::StopHunt(s.hunt_id.clone()),
            Body::Capture(c) => Command::Capture(Capture::parse(c)?),
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
            Command::Hunt(_) => "hunt",
            Command::StopHunt(_) => "stop_hunt",
            Command::Capture(_) => "capture",
        }
    }
}

impl Capture {
    fn parse(c: &v1::CaptureCommand) -> Result<Self, ParseError> {
        use super::capture::{DEFAULT_MAX_BYTES, MAX_BYTES, MAX_SECONDS};
        if c.seconds == 0 || c.seconds > MAX_SECONDS {
            return Err(ParseError::Capture(format!(
                "{} seconds: from 1 to {MAX_SECONDS}",
                c.seconds
            )));
        }
        if c.max_bytes > MAX_BYTES {
            return Err(ParseError::Capture(format!(
                "{} bytes: at most {MAX_BYTES}",
                c.max_bytes
            )));
        }
        Ok(Capture {
            operator: c.operator.clone(),
            reason: c.reason.clone(),
            request: super::capture::Request {
                seconds: c.seconds,
                filter: c.filter.clone(),
                interfaces: c.interfaces.clone(),
                max_bytes: if c.max_bytes == 0 {
                    DEFAULT_MAX_BYTES
                } else {
                    c.max_bytes
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use v1::command::Body;

    fn wire(body: Body) -> v1::Command {
        v1::Command {
            id: "c1".into(),
            body: Some(body),
        }
    }

    #[test]
    fn every_command_parses_into_its_typed_command() {
        assert_eq!(
            Command::parse(&wire(Body::Ping(v1::PingCommand {}))).expect("ping"),
            Command::Ping
        );
        assert_eq!(
            Command::parse(&wire(Body::Release(v1::ReleaseCommand {}))).expect("release"),
            Command::Release
        );
        let Ok(Command::Isolate(i)) = Command::parse(&wire(Body::Isolate(v1::IsolateCommand {
            allow: vec!["10.0.0.5".into(), "192.0.2.0/24".into()],
            confirm_local: true,
        }))) else {
            panic!("isolate");
        };
        assert_eq!(i.allow.len(), 2);
        assert!(i.confirm_local);
        assert_eq!(
            Command::parse(&wire(Body::Triage(v1::TriageCommand {
                question: "ls".into(),
                path: "/dev/shm".into(),
            })))
            .expect("triage"),
            Command::Triage(Triage {
                question: Question::Ls,
                path: Some("/dev/shm".into())
            })
        );
        let Ok(Command::Snapshot(s)) = Command::parse(&wire(Body::Snapshot(v1::SnapshotCommand {
            operator: "alice".into(),
            reason: "case 7".into(),
            files: vec!["/a".into(), "/b".into()],
        }))) else {
            panic!("snapshot");
        };
        assert_eq!(s.files, ["/a", "/b"]);
        assert_eq!(s.reason, "case 7");
        assert_eq!(
            Command::parse(&wire(Body::Relearn(v1::RelearnCommand {
                sensor: String::new()
            })))
            .expect("relearn"),
            Command::Relearn(Relearn { sensor: None })
        );
    }

    #[test]
    fn malformed_commands_are_refused_with_the_reason() {
        let untyped = v1::Command {
            id: "c1".into(),
            body: None,
        };
        let err = Command::parse(&untyped).expect_err("no body");
        assert!(err.to_string().contains("older than"), "{err}");
        let err = Command::parse(&wire(Body::Isolate(v1::IsolateCommand {
            allow: vec!["10.0.0.5".into(), "not-an-ip".into()],
            confirm_local: false,
        })))
        .expect_err("bad allow");
        assert!(err.to_string().contains("not-an-ip"), "{err}");
        let err = Command::parse(&wire(Body::Triage(v1::TriageCommand {
            question: "rm".into(),
            path: String::new(),
        })))
        .expect_err("bad question");
        assert!(err.to_string().contains("unknown triage question"), "{err}");
    }
}
