//! Incidents' domain rules: the guidance's severity scale, the status order
//! (open → contained → eradicated → recovered → closed, forward only), and what an
//! update may change. The operator API authorizes and converts; the rules live here.

use std::fmt;
use std::str::FromStr;

use bannin_proto::v1;
use serde::{Deserialize, Serialize};

/// Longest incident title, in bytes.
pub const MAX_TITLE: usize = 512;
/// Longest note, in bytes.
pub const MAX_NOTE: usize = 8192;

/// Why an incident cannot be opened or changed as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IncidentError {
    /// Not a severity on the guidance's scale.
    #[error("severity must be critical, high, medium or low")]
    BadSeverity,
    /// Not a status on the scale.
    #[error("status must be open, contained, eradicated, recovered or closed")]
    BadStatus,
    /// Empty or too long.
    #[error("an incident needs a title (at most {MAX_TITLE} bytes)")]
    BadTitle,
    /// Too long.
    #[error("a note is at most {MAX_NOTE} bytes")]
    NoteTooLong,
    /// A closed incident is a record, not a worksheet.
    #[error("incident {0} is closed")]
    Closed(u64),
    /// Status moves forward only.
    #[error("status moves forward only: {from} cannot go back to {to}")]
    Backwards {
        /// Current status.
        from: IncidentStatus,
        /// Asked for.
        to: IncidentStatus,
    },
    /// The update changes nothing.
    #[error("nothing to change")]
    NothingToChange,
}

/// Defines a string-backed enum: parsed from and stored as its lower-case name, so
/// records written when these were plain strings still read back.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $err:expr, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// Its name, as on the wire and in reports.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = IncidentError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)+ _ => Err($err) }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IncidentError;
            fn try_from(s: String) -> Result<Self, Self::Error> { s.parse() }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String { v.as_str().to_owned() }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

named_enum!(
    /// The guidance's incident severity scale, most severe first.
    IncidentSeverity, IncidentError::BadSeverity, {
        /// Business stopped, exfiltration confirmed, critical infrastructure compromised.
        Critical => "critical",
        /// Business disrupted, exfiltration or compromise suspected.
        High => "high",
        /// A past intrusion not yet remediated.
        Medium => "medium",
        /// Due diligence, or a remediated past intrusion.
        Low => "low",
    }
);

named_enum!(
    /// Where an incident is, in the guidance's order. Moves forward only.
    IncidentStatus, IncidentError::BadStatus, {
        /// Being investigated.
        Open => "open",
        /// Spread stopped.
        Contained => "contained",
        /// The cause removed.
        Eradicated => "eradicated",
        /// Systems back in service.
        Recovered => "recovered",
        /// Reviewed and closed.
        Closed => "closed",
    }
);

impl IncidentSeverity {
    /// What the guidance says this severity means.
    pub fn meaning(self) -> &'static str {
        match self {
            IncidentSeverity::Critical => {
                "business stopped, data exfiltration confirmed, or critical infrastructure compromised"
            }
            IncidentSeverity::High => {
                "business disrupted, data exfiltration suspected, or critical infrastructure compromise suspected"
            }
            IncidentSeverity::Medium => "a past intrusion not yet remediated",
            IncidentSeverity::Low => {
                "due diligence, or analysis of a past intrusion already remediated"
            }
        }
    }
}

/// Checks a new incident's title.
pub fn check_title(title: &str) -> Result<(), IncidentError> {
    if title.trim().is_empty() || title.len() > MAX_TITLE {
        return Err(IncidentError::BadTitle);
    }
    Ok(())
}

/// What an operator asked to change; empty fields change nothing.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Update {
    /// Findings to attach (already checked to exist).
    pub add_findings: Vec<u64>,
    /// A note to add.
    pub note: String,
    /// A new severity, or empty.
    pub severity: String,
    /// A new status, or empty.
    pub status: String,
}

/// Applies `update` to `incident` by `operator` at `now`: all or nothing. Returns the
/// changes, one phrase each, for the action log.
pub fn apply(
    incident: &mut Incident,
    update: Update,
    operator: &str,
    now_unix_ms: i64,
) -> Result<Vec<String>, IncidentError> {
    if incident.status == IncidentStatus::Closed {
        return Err(IncidentError::Closed(incident.id));
    }
    if update.note.len() > MAX_NOTE {
        return Err(IncidentError::NoteTooLong);
    }
    let severity = (!update.severity.is_empty())
        .then(|| update.severity.parse::<IncidentSeverity>())
        .transpose()?;
    let status = (!update.status.is_empty())
        .then(|| update.status.parse::<IncidentStatus>())
        .transpose()?;
    if let Some(to) = status
        && to < incident.status
    {
        return Err(IncidentError::Backwards {
            from: incident.status,
            to,
        });
    }
    let mut next = incident.clone();
    let mut changes = Vec::new();
    for f in update.add_findings {
        if !next.findings.contains(&f) {
            next.findings.push(f);
            changes.push(format!("finding #{f} added"));
        }
    }
    if !update.note.is_empty() {
        next.notes.push(IncidentNote {
            at_unix_ms: now_unix_ms,
            operator: operator.to_owned(),
            text: update.note,
        });
        changes.push("note added".into());
    }
    if let Some(to) = severity {
        changes.push(format!("severity {} → {to}", next.severity));
        next.severity = to;
    }
    if let Some(to) = status {
        changes.push(format!("status {} → {to}", next.status));
        next.status = to;
        if to == IncidentStatus::Closed {
            next.closed_unix_ms = now_unix_ms;
        }
    }
    if changes.is_empty() {
        return Err(IncidentError::NothingToChange);
    }
    *incident = next;
    Ok(changes)
}

/// A note on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentNote {
    /// When.
    pub at_unix_ms: i64,
    /// Who.
    pub operator: String,
    /// What.
    pub text: String,
}

/// An incident: findings grouped under a title, a severity and a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Id from 1.
    pub id: u64,
    /// Title.
    pub title: String,
    /// On the guidance's scale.
    pub severity: IncidentSeverity,
    /// open → contained → eradicated → recovered → closed.
    pub status: IncidentStatus,
    /// Incident commander.
    pub commander: String,
    /// Attached finding ids.
    pub findings: Vec<u64>,
    /// Notes, oldest first.
    pub notes: Vec<IncidentNote>,
    /// Opened when.
    pub opened_unix_ms: i64,
    /// Opened by.
    pub opened_by: String,
    /// Closed when (0: not closed).
    pub closed_unix_ms: i64,
}

impl Incident {
    /// Action log target.
    pub fn target(&self) -> String {
        format!("incident:{}", self.id)
    }

    /// To the wire.
    pub fn to_wire(&self) -> v1::Incident {
        v1::Incident {
            id: self.id,
            title: self.title.clone(),
            severity: self.severity.to_string(),
            status: self.status.to_string(),
            commander: self.commander.clone(),
            findings: self.findings.clone(),
            notes: self
                .notes
                .iter()
                .map(|n| v1::IncidentNote {
                    at_unix_ms: n.at_unix_ms,
                    operator: n.operator.clone(),
                    text: n.text.clone(),
                })
                .collect(),
            opened_unix_ms: self.opened_unix_ms,
            opened_by: self.opened_by.clone(),
            closed_unix_ms: self.closed_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            id: 7,
            title: "t".into(),
            severity: IncidentSeverity::Medium,
            status: IncidentStatus::Open,
            commander: "ana".into(),
            findings: vec![1],
            notes: Vec::new(),
            opened_unix_ms: 1,
            opened_by: "ana".into(),
            closed_unix_ms: 0,
        }
    }

    #[test]
    fn status_moves_forward_only_and_closing_stamps_the_time() {
        let mut i = incident();
        let up = |status: &str| Update {
            status: status.into(),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut i, up("contained"), "ana", 5),
            Ok(vec!["status open → contained".to_owned()])
        );
        assert_eq!(
            apply(&mut i, up("open"), "ana", 6),
            Err(IncidentError::Backwards {
                from: IncidentStatus::Contained,
                to: IncidentStatus::Open
            })
        );
        assert_eq!(
            apply(&mut i, up("finished"), "ana", 6),
            Err(IncidentError::BadStatus)
        );
        apply(&mut i, up("closed"), "ana", 9).expect("close");
        assert_eq!(i.closed_unix_ms, 9);
        assert_eq!(
            apply(&mut i, up("closed"), "ana", 10),
            Err(IncidentError::Closed(7))
        );
    }

    #[test]
    fn a_refused_update_changes_nothing() {
        let mut i = incident();
        let before = i.clone();
        let bad = Update {
            add_findings: vec![2],
            note: "n".into(),
            severity: "severe".into(),
            ..Update::default()
        };
        assert_eq!(
            apply(&mut i, bad, "ana", 5),
            Err(IncidentError::BadSeverity)
        );
        assert_eq!(i, before);
        assert_eq!(
            apply(&mut i, Update::default(), "ana", 5),
            Err(IncidentError::NothingToChange)
        );
    }

    #[test]
    fn stored_as_their_names_so_old_records_still_read() {
        #[derive(Serialize)]
        struct Old {
            severity: String,
            status: String,
        }
        #[derive(Deserialize, Debug, PartialEq)]
        struct New {
            severity: IncidentSeverity,
            status: IncidentStatus,
        }
        let bytes = postcard::to_stdvec(&Old {
            severity: "high".into(),
            status: "eradicated".into(),
        })
        .expect("encode");
        let new: New = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(
            new,
            New {
                severity: IncidentSeverity::High,
                status: IncidentStatus::Eradicated
            }
        );
        assert!(
            postcard::from_bytes::<New>(
                &postcard::to_stdvec(&Old {
                    severity: "huge".into(),
                    status: "open".into(),
                })
                .expect("encode")
            )
            .is_err()
        );
    }
}
