//! Commands, typed end to end: the operator API's [`v1::CommandBody`] (what an
//! operator asks for and the queue keeps) and the agent link's
//! [`v1::command::Body`] carry the same messages; this module converts one
//! into the other and names them, so that no side spells a verb as text.

use crate::v1;
use crate::v1::command::Body;
use crate::v1::command_body::Kind;

impl v1::CommandBody {
    /// A round trip through the queue.
    pub fn ping() -> Self {
        Kind::Ping(v1::PingCommand {}).into()
    }

    /// Isolate the host but for its collector, DHCP, DNS and `allow`;
    /// `confirm_local` when it is the machine the operator works from.
    pub fn isolate(allow: Vec<String>, confirm_local: bool) -> Self {
        Kind::Isolate(v1::IsolateCommand {
            allow,
            confirm_local,
        })
        .into()
    }

    /// Remove the isolation.
    pub fn release() -> Self {
        Kind::Release(v1::ReleaseCommand {}).into()
    }

    /// One read-only question (`path` for stat, hash and ls; "" otherwise).
    pub fn triage(question: impl Into<String>, path: impl Into<String>) -> Self {
        Kind::Triage(v1::TriageCommand {
            question: question.into(),
            path: path.into(),
        })
        .into()
    }

    /// A forensic snapshot including `files` (the collector fills in who and why).
    pub fn snapshot(files: Vec<String>) -> Self {
        Kind::Snapshot(v1::SnapshotCommand {
            files,
            ..Default::default()
        })
        .into()
    }

    /// Forget one sensor's learned baseline ("" for every baseline sensor).
    pub fn relearn(sensor: impl Into<String>) -> Self {
        Kind::Relearn(v1::RelearnCommand {
            sensor: sensor.into(),
        })
        .into()
    }

    /// The command's name ("" when it carries none).
    pub fn name(&self) -> &'static str {
        self.kind.as_ref().map_or("", Kind::name)
    }
}

impl From<Kind> for v1::CommandBody {
    fn from(kind: Kind) -> Self {
        Self { kind: Some(kind) }
    }
}

impl Kind {
    /// The command's name: ping, isolate, release, triage, snapshot, relearn,
    /// hunt, stop_hunt or capture.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Ping(_) => "ping",
            Kind::Isolate(_) => "isolate",
            Kind::Release(_) => "release",
            Kind::Triage(_) => "triage",
            Kind::Snapshot(_) => "snapshot",
            Kind::Relearn(_) => "relearn",
            Kind::Hunt(_) => "hunt",
            Kind::StopHunt(_) => "stop_hunt",
            Kind::Capture(_) => "capture",
        }
    }
}

impl Body {
    /// The command's name, as [`Kind::name`].
    pub fn name(&self) -> &'static str {
        Kind::from(self.clone()).name()
    }
}

impl From<Kind> for Body {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Ping(c) => Body::Ping(c),
            Kind::Isolate(c) => Body::Isolate(c),
            Kind::Release(c) => Body::Release(c),
            Kind::Triage(c) => Body::Triage(c),
            Kind::Snapshot(c) => Body::Snapshot(c),
            Kind::Relearn(c) => Body::Relearn(c),
            Kind::Hunt(c) => Body::Hunt(c),
            Kind::StopHunt(c) => Body::StopHunt(c),
            Kind::Capture(c) => Body::Capture(c),
        }
    }
}

impl From<Body> for Kind {
    fn from(body: Body) -> Self {
        match body {
            Body::Ping(c) => Kind::Ping(c),
            Body::Isolate(c) => Kind::Isolate(c),
            Body::Release(c) => Kind::Release(c),
            Body::Triage(c) => Kind::Triage(c),
            Body::Snapshot(c) => Kind::Snapshot(c),
            Body::Relearn(c) => Kind::Relearn(c),
            Body::Hunt(c) => Kind::Hunt(c),
            Body::StopHunt(c) => Kind::StopHunt(c),
            Body::Capture(c) => Kind::Capture(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every command survives the trip from the operator API's form to the
    /// agent link's and back, and keeps its name; the two oneofs stay in step.
    #[test]
    fn every_command_converts_both_ways_and_keeps_its_name() {
        let all = [
            (v1::CommandBody::ping(), "ping"),
            (
                v1::CommandBody::isolate(vec!["10.0.0.1".into()], true),
                "isolate",
            ),
            (v1::CommandBody::release(), "release"),
            (v1::CommandBody::triage("stat", "/etc/passwd"), "triage"),
            (v1::CommandBody::snapshot(vec!["/a".into()]), "snapshot"),
            (v1::CommandBody::relearn("file_integrity"), "relearn"),
            (
                Kind::Hunt(v1::HuntCommand {
                    hunt_id: "h1".into(),
                    question: Some(v1::HuntQuestion {
                        kind: Some(v1::hunt_question::Kind::Listener(v1::ListenerQuestion {
                            port: 22,
                        })),
                    }),
                    ..Default::default()
                })
                .into(),
                "hunt",
            ),
            (
                Kind::StopHunt(v1::StopHuntCommand {
                    hunt_id: "h1".into(),
                })
                .into(),
                "stop_hunt",
            ),
        ];
        for (command, name) in all {
            assert_eq!(command.name(), name);
            let kind = command.kind.clone().expect("kind");
            let body = Body::from(kind.clone());
            assert_eq!(body.name(), name);
            assert_eq!(Kind::from(body.clone()), kind);
            // On the agent link the body is what the agent decodes.
            let wire = v1::Command {
                id: "c1".into(),
                body: Some(body.clone()),
            };
            let decoded = v1::Command::decode(wire.encode_to_vec().as_slice()).expect("decode");
            assert_eq!(decoded.body, Some(body));
        }
        assert_eq!(v1::CommandBody::default().name(), "");
    }
}
