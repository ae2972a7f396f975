//! The operations that change a collector's durable state (everything but an
//! agent's batch), what applying one answers, and the one code that applies
//! them ([`apply::begin`]), whichever journal ordered them
//! ([`crate::journal`]).

pub mod apply;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ingest::IngestError;
use crate::model::{Action, EvidenceRecord, Finding, FindingState, NewFinding, Severity};

/// A change to durable state that is not an agent's batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A finding a collector observed itself (`host.silent`, identity conflicts…)
    /// or an operator added.
    Raise {
        /// The host.
        host_id: String,
        /// Finding kind.
        kind: String,
        /// Severity.
        severity: Severity,
        /// When observed.
        observed_unix_ms: i64,
        /// Details.
        attributes: BTreeMap<String, String>,
        /// Summary.
        summary: String,
    },
    /// A finding moved to another state by an operator.
    SetState {
        /// Finding id.
        id: u64,
        /// New state.
        state: FindingState,
        /// Who.
        operator: String,
        /// Why.
        note: String,
    },
    /// An entry of the action log, recorded on any collector: every collector
    /// chains it in the log's order, so the chain is the same everywhere.
    Action {
        /// The action.
        action: Action,
        /// The collector that recorded it.
        #[serde(default)]
        origin: String,
        /// Its id in that collector's outbox (increasing).
        #[serde(default)]
        outbox: u64,
    },
    /// A piece of evidence verified by the collector that received it, its
    /// bundle already in the object store; every collector records it under
    /// the same id.
    Evidence {
        /// The record (its id is given when applied).
        record: EvidenceRecord,
    },
    /// A host's desired isolation state, as the collector holding it set it:
    /// every collector shows it (and a collector taking the host over knows
    /// what to reconcile).
    Isolation {
        /// The host.
        host_id: String,
        /// The state (as the previous release wrote it, too).
        #[serde(deserialize_with = "crate::store::legacy::isolation")]
        isolation: crate::model::Isolation,
    },
    /// An operator added, re-roled or disabled: every collector's operator
    /// table changes (and live operator streams are re-checked).
    Operator {
        /// The operator's record as it now is.
        record: crate::model::OperatorRecord,
    },
    /// A host revoked: every collector refuses its keys and cuts the
    /// sessions it holds.
    RevokeHost {
        /// Who, by whom, why.
        revoked: crate::model::RevokedHost,
        /// Every key revoked with it.
        keys: Vec<String>,
    },
    /// An incident opened: applying it gives it the next incident id (the
    /// same on every collector).
    OpenIncident {
        /// The incident (its id is given when applied).
        incident: crate::model::Incident,
    },
    /// An incident changed: every collector applies the same update to its
    /// copy, in log order (two operators updating at once both get their
    /// change, in one order).
    UpdateIncident {
        /// Its id.
        id: u64,
        /// The change.
        update: crate::incidents::Update,
        /// Who.
        operator: String,
        /// When (the caller's clock, as a standalone collector records it).
        at_unix_ms: i64,
    },
    /// An enrollment token created (its id made so no collector makes it
    /// again).
    PutToken {
        /// The token (its secret's hash only).
        record: crate::model::TokenRecord,
    },
    /// One use of a token taken by a host enrolling through some collector:
    /// applied in log order, so a token's last use is taken once.
    UseToken {
        /// Token id.
        id: String,
        /// The enrolling host.
        host: String,
        /// When (the enrolling collector's clock; expiry is judged by it).
        at_unix_ms: i64,
    },
    /// A token revoked.
    RevokeToken {
        /// Token id.
        id: String,
    },
    /// Operator-set labels of a host changed (by an operator, or from the
    /// token it enrolled with): applied as a change to every collector's copy.
    LabelHost {
        /// The host.
        host_id: String,
        /// Labels set.
        set: BTreeMap<String, String>,
        /// Label keys removed.
        remove: Vec<String>,
    },
    /// A piece of evidence disposed of: marked so everywhere, and every
    /// collector's local copy removed.
    DisposeEvidence {
        /// Its id.
        id: String,
    },
    /// A command queued for a host, through any collector: applying it gives
    /// it its id (its log position, the same on every collector), and the
    /// collector holding the host's stream — or the one it next connects to —
    /// delivers it.
    IssueCommand {
        /// The command (its id is given when applied; as the previous
        /// release wrote it, too).
        #[serde(deserialize_with = "crate::store::legacy::command")]
        command: crate::model::Command,
    },
    /// A hunt started, through any collector: applying it gives it its id
    /// (its log position), and every collector sends it to the hosts it
    /// holds that the hunt selects.
    StartHunt {
        /// The hunt (its id is given when applied).
        hunt: crate::model::Hunt,
    },
    /// A hunt stopped: it reaches no more hosts, and every collector tells
    /// the hosts it sent it to.
    StopHunt {
        /// Its id.
        id: u64,
        /// Who.
        operator: String,
        /// When (that collector's clock).
        at_unix_ms: i64,
    },
    /// Hosts' answers to hunts, as the collectors holding them heard them:
    /// stored with their `hunt.match` findings in one commit (a host's first
    /// answer stands).
    HuntAnswers {
        /// The answers.
        answers: Vec<crate::model::HuntAnswer>,
    },
    /// A command moved on (delivered, answered, expired) by the collector
    /// that delivered it, heard the answer or expired it. Applied only as a
    /// move forward: a final state is never changed again.
    UpdateCommand {
        /// Its id.
        id: u64,
        /// The new state.
        state: crate::model::CommandState,
        /// When (that collector's clock).
        at_unix_ms: i64,
        /// The host's answer (answers only).
        #[serde(default)]
        result: String,
    },
}

impl Op {
    /// The operation raising `finding`.
    pub fn raise(finding: &NewFinding) -> Self {
        Self::Raise {
            host_id: finding.host_id.to_string(),
            kind: finding.kind.clone(),
            severity: finding.severity,
            observed_unix_ms: finding.observed_unix_ms,
            attributes: finding.attributes.clone(),
            summary: finding.summary.clone(),
        }
    }
}

/// What applying an [`Op`] produced, for the collector that published it.
#[derive(Debug)]
pub enum OpReply {
    /// A raised finding's id (0: suppressed).
    Raise(Result<u64, IngestError>),
    /// The finding after its state change.
    SetState(Result<Finding, IngestError>),
    /// The evidence record as recorded (or disposed of).
    Evidence(Result<EvidenceRecord, IngestError>),
    /// Another collector published the same observation first (same dedup
    /// key within the duplicate window): stored once, by that one.
    Duplicate,
}

impl OpReply {
    /// The error applying it produced, if any.
    pub fn error(&self) -> Option<&IngestError> {
        match self {
            Self::Raise(Err(e)) => Some(e),
            Self::SetState(Err(e)) => Some(e),
            Self::Evidence(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// The answer to a raise.
    pub fn into_raise(self) -> Result<u64, IngestError> {
        match self {
            Self::Raise(r) => r,
            Self::Duplicate => Ok(0),
            Self::SetState(_) | Self::Evidence(_) => {
                Err(IngestError::Journal("unexpected answer to a raise".into()))
            }
        }
    }

    /// The answer to an evidence operation.
    pub fn into_evidence(self) -> Result<EvidenceRecord, IngestError> {
        match self {
            Self::Evidence(r) => r,
            _ => Err(IngestError::Journal(
                "unexpected answer to an evidence operation".into(),
            )),
        }
    }

    /// The answer to a state change.
    pub fn into_set_state(self) -> Result<Finding, IngestError> {
        match self {
            Self::SetState(r) => r,
            _ => Err(IngestError::Journal(
                "unexpected answer to a state change".into(),
            )),
        }
    }
}
