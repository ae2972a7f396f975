//! Bannin's records in the Open Cybersecurity Schema Framework, version
//! [`VERSION`] — the shape AWS Security Lake, Splunk and a growing set of
//! SIEMs ingest without a mapping.
//!
//! | Bannin | OCSF class | activity |
//! |---|---|---|
//! | a new finding | Detection Finding (2004) | Create (1) |
//! | a finding acknowledged, resolved, marked false positive | Detection Finding (2004) | Update (2) |
//! | `process.exec` | Process Activity (1007) | Launch (1) |
//! | `file.*` changes | File System Activity (1001) | Create (1), Read (2, `file.access`), Update (3), Delete (4), Set Attributes (8) |
//! | `net.flow`, `net.connection` | Network Activity (4001) | Close (2) / Fail (4), Open (1) |
//! | `net.new_listener`, `net.listener` | Network Activity (4001) | Listen (7) |
//! | `account.login`, `account.login_failed` | Authentication (3002) | Logon (1) |
//!
//! Every record carries `metadata` (product Bannin, this version, a unique
//! `uid`, the Bannin kind as `event_code`), the host as `device`, the
//! facts Bannin has in the class's own objects (`actor`, `process`, `file`,
//! endpoints, `user`), and every attribute as it was received under
//! `unmapped`, so nothing an agent said is lost in the translation. Strings
//! only: Bannin's attributes are text, and OCSF's `unmapped` is free-form.
//!
//! Checked against the published schema (the `ocsf-json-schema` package's
//! export of OCSF 1.4.0, with `jsonschema`) in the e2e test
//! `sinks::ocsf_records_from_a_real_agent_validate_against_the_published_schema_needs_root`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Event, Finding, FindingState, HostRecord, Severity, StateChange};

/// The OCSF schema version every record names (`metadata.version`).
pub const VERSION: &str = "1.4.0";

/// The host a record concerns, as OCSF's `device`.
pub fn device(host_id: &str, host: Option<&HostRecord>) -> Value {
    let mut d = Map::new();
    // 0: Unknown — the agent does not say whether it runs on a server or a desktop.
    d.insert("type_id".into(), json!(0));
    d.insert("type".into(), json!("Unknown"));
    d.insert("uid".into(), json!(host_id));
    if let Some(h) = host {
        if !h.hostname.is_empty() {
            d.insert("hostname".into(), json!(h.hostname));
            d.insert("name".into(), json!(h.hostname));
        }
        if let Some(ip) = h
            .addresses
            .iter()
            .find(|a| a.parse::<std::net::IpAddr>().is_ok())
        {
            d.insert("ip".into(), json!(ip));
        }
        let mut os = Map::new();
        os.insert(
            "name".into(),
            json!(if h.os.is_empty() { "Linux" } else { &h.os }),
        );
        os.insert("type_id".into(), json!(200));
        os.insert("type".into(), json!("Linux"));
        if !h.kernel.is_empty() {
            os.insert("kernel_release".into(), json!(h.kernel));
        }
        d.insert("os".into(), Value::Object(os));
    } else {
        d.insert("name".into(), json!(host_id));
    }
    Value::Object(d)
}

/// Every record uses the `host` profile: `device` (and `actor`) on every
/// class, which Network Activity and Authentication have only through it.
fn metadata(uid: String, kind: &str, log_name: &str, logged_unix_ms: i64) -> Value {
    json!({
        "version": VERSION,
        "profiles": ["host"],
        "product": {
            "name": "Bannin",
            "vendor_name": "Bannin",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "uid": uid,
        "event_code": kind,
        "log_name": log_name,
        "logged_time": logged_unix_ms,
    })
}

fn severity(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn status(s: FindingState) -> (u8, &'static str) {
    match s {
        FindingState::New => (1, "New"),
        FindingState::Acknowledged => (2, "In Progress"),
        FindingState::FalsePositive => (3, "Suppressed"),
        FindingState::Resolved => (4, "Resolved"),
    }
}

/// The common head of every record.
struct Head {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
}

impl Head {
    fn write(&self, out: &mut Map<String, Value>, s: Severity) {
        let (severity_id, severity) = severity(s);
        out.insert("class_uid".into(), json!(self.class_uid));
        out.insert("class_name".into(), json!(self.class_name));
        out.insert("category_uid".into(), json!(self.category_uid));
        out.insert("category_name".into(), json!(self.category_name));
        out.insert("activity_id".into(), json!(self.activity_id));
        out.insert("activity_name".into(), json!(self.activity_name));
        out.insert(
            "type_uid".into(),
            json!(u64::from(self.class_uid) * 100 + u64::from(self.activity_id)),
        );
        out.insert(
            "type_name".into(),
            json!(format!("{}: {}", self.class_name, self.activity_name)),
        );
        out.insert("severity_id".into(), json!(severity_id));
        out.insert("severity".into(), json!(severity));
    }
}

fn number(a: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    a.get(key)?.trim().parse().ok()
}

fn text<'a>(a: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    a.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

fn base_name(path: &str) -> &str {
    path.rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(path)
}

/// A user from `user` (name) and `uid`, if either is known.
fn user(a: &BTreeMap<String, String>, name_key: &str, uid_key: &str) -> Option<Value> {
    let mut u = Map::new();
    if let Some(n) = text(a, name_key) {
        u.insert("name".into(), json!(n));
    }
    if let Some(uid) = text(a, uid_key) {
        u.insert("uid".into(), json!(uid));
    }
    (!u.is_empty()).then_some(Value::Object(u))
}

/// A file object for `path` (OCSF requires `name` and `type_id`).
fn file(path: &str, a: &BTreeMap<String, String>, with_details: bool) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), json!(base_name(path)));
    f.insert("path".into(), json!(path));
    // 1: Regular File. Bannin's file indicators are about regular files.
    f.insert("type_id".into(), json!(1));
    f.insert("type".into(), json!("Regular File"));
    if with_details {
        if let Some(h) = text(a, "sha256") {
            f.insert(
                "hashes".into(),
                json!([{ "algorithm_id": 3, "algorithm": "SHA-256", "value": h }]),
            );
        }
        if let Some(size) = number(a, "size") {
            f.insert("size".into(), json!(size));
        }
        if let Some(owner) = user(a, "user", "uid") {
            f.insert("owner".into(), owner);
        }
    }
    Value::Object(f)
}

/// The attributes that name one process in an event.
struct Names {
    pid: &'static str,
    exe: &'static str,
    cmdline: &'static str,
    comm: &'static str,
    /// Whether the event's `sha256`, `size` and owner describe this
    /// process's executable (only for the process the event is about).
    its_file: bool,
}

/// The process the event is about.
const ITSELF: Names = Names {
    pid: "pid",
    exe: "exe",
    cmdline: "cmdline",
    comm: "comm",
    its_file: true,
};
/// Its parent, as captured at the exec.
const PARENT: Names = Names {
    pid: "ppid",
    exe: "parent_exe",
    cmdline: "parent_cmdline",
    comm: "parent_comm",
    its_file: false,
};
/// The writer of a file, as fanotify named it.
const WRITER: Names = Names {
    pid: "by_pid",
    exe: "by_exe",
    cmdline: "",
    comm: "by_comm",
    its_file: false,
};
/// The reader of a file (`file.access`).
const READER: Names = Names {
    its_file: false,
    ..ITSELF
};

/// One process object from the attributes `names` picks, or `None` without
/// its pid (OCSF's process needs a pid or a uid: an exe alone stays under
/// `unmapped`).
fn named_process(a: &BTreeMap<String, String>, names: &Names) -> Option<Map<String, Value>> {
    let mut p = Map::new();
    p.insert("pid".into(), json!(number(a, names.pid)?));
    let exe = text(a, names.exe);
    if let Some(exe) = exe {
        p.insert("file".into(), file(exe, a, names.its_file));
        p.insert("path".into(), json!(exe));
    }
    if let Some(cmd) = text(a, names.cmdline) {
        p.insert("cmd_line".into(), json!(cmd));
    }
    if let Some(name) = text(a, names.comm).or(exe.map(base_name)) {
        p.insert("name".into(), json!(name));
    }
    Some(p)
}

/// The process an event names (`pid`, `exe`, `cmdline`, `comm`, `cwd`, user),
/// and its parent (`ppid`, `parent_exe`, `parent_cmdline`, `parent_comm`).
fn process(a: &BTreeMap<String, String>) -> Option<Value> {
    let mut p = named_process(a, &ITSELF)?;
    if let Some(cwd) = text(a, "cwd") {
        p.insert("working_directory".into(), json!(cwd));
    }
    if let Some(u) = user(a, "user", "uid") {
        p.insert("user".into(), u);
    }
    if let Some(parent) = named_process(a, &PARENT) {
        p.insert("parent_process".into(), Value::Object(parent));
    }
    Some(Value::Object(p))
}

/// An endpoint from an address and a port attribute.
fn endpoint(a: &BTreeMap<String, String>, address: &str, port: &str) -> Option<Value> {
    let ip = text(a, address)?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return None;
    }
    let mut e = Map::new();
    e.insert("ip".into(), json!(ip));
    if let Some(p) = number(a, port) {
        e.insert("port".into(), json!(p));
    }
    Some(Value::Object(e))
}

/// Source and destination of a connection: the initiator is the source.
fn endpoints(a: &BTreeMap<String, String>) -> (Option<Value>, Option<Value>) {
    let local = endpoint(a, "local_address", "local_port");
    let remote = endpoint(a, "remote_address", "remote_port")
        .or_else(|| endpoint(a, "peer", "remote_port"))
        .or_else(|| endpoint(a, "source", "remote_port"));
    match text(a, "direction") {
        Some("inbound") => (remote, local),
        _ => (local, remote),
    }
}

fn connection_info(a: &BTreeMap<String, String>) -> Value {
    let (direction_id, direction) = match text(a, "direction") {
        Some("inbound") => (1, "Inbound"),
        Some("outbound") => (2, "Outbound"),
        _ => (0, "Unknown"),
    };
    let mut c = Map::new();
    c.insert("direction_id".into(), json!(direction_id));
    c.insert("direction".into(), json!(direction));
    let protocol = text(a, "protocol").unwrap_or("tcp");
    let (name, number) = if protocol.starts_with("udp") {
        ("udp", 17)
    } else {
        ("tcp", 6)
    };
    c.insert("protocol_name".into(), json!(name));
    c.insert("protocol_num".into(), json!(number));
    c.insert(
        "protocol_ver_id".into(),
        json!(if protocol.ends_with('6') { 6 } else { 4 }),
    );
    Value::Object(c)
}

fn unmapped(a: &BTreeMap<String, String>) -> Value {
    Value::Object(a.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// `attack.technique` (`T1059.004`) as OCSF's `attacks`.
fn attacks(a: &BTreeMap<String, String>) -> Option<Value> {
    let id = text(a, "attack.technique")?;
    let valid = id.starts_with('T') && id.bytes().skip(1).all(|b| b.is_ascii_digit() || b == b'.');
    if !valid {
        return None;
    }
    let (technique, sub) = match id.split_once('.') {
        Some((t, _)) => (t, Some(id)),
        None => (id, None),
    };
    let url = |t: &str| {
        format!(
            "https://attack.mitre.org/techniques/{}/",
            t.replace('.', "/")
        )
    };
    let mut attack = Map::new();
    attack.insert(
        "technique".into(),
        json!({ "uid": technique, "src_url": url(technique) }),
    );
    if let Some(sub) = sub {
        attack.insert(
            "sub_technique".into(),
            json!({ "uid": sub, "src_url": url(sub) }),
        );
    }
    Some(json!([Value::Object(attack)]))
}

/// What a finding's attributes say about where it happened, as OCSF
/// `evidences` (each entry must hold at least one object).
fn evidences(a: &BTreeMap<String, String>) -> Option<Value> {
    let mut e = Map::new();
    if let Some(p) = process(a) {
        e.insert("process".into(), p);
    }
    if let Some(path) = text(a, "path") {
        e.insert("file".into(), file(path, a, true));
    }
    if let Some(u) = user(a, "user", "uid") {
        e.insert("user".into(), u);
    }
    let (src, dst) = endpoints(a);
    if let Some(s) = src {
        e.insert("src_endpoint".into(), s);
    }
    if let Some(d) = dst {
        e.insert("dst_endpoint".into(), d);
    }
    (!e.is_empty()).then(|| json!([Value::Object(e)]))
}

/// A finding as a Detection Finding: `change` is `None` for the finding's
/// creation, or the state change this record reports (an Update).
pub fn finding(f: &Finding, host: Option<&HostRecord>, change: Option<&StateChange>) -> Value {
    let mut out = Map::new();
    let (activity_id, activity_name) = if change.is_some() {
        (2, "Update")
    } else {
        (1, "Create")
    };
    Head {
        class_uid: 2004,
        class_name: "Detection Finding",
        category_uid: 2,
        category_name: "Findings",
        activity_id,
        activity_name,
    }
    .write(&mut out, f.severity);
    let state = change.map_or(f.state, |c| c.state);
    let (status_id, status_name) = status(state);
    out.insert("status_id".into(), json!(status_id));
    out.insert("status".into(), json!(status_name));
    let (time, uid) = match change {
        None => (f.observed_unix_ms, format!("bannin-finding-{}", f.id)),
        Some(c) => (
            c.at_unix_ms,
            format!(
                "bannin-finding-{}-{}-{}",
                f.id,
                c.state.as_str(),
                c.at_unix_ms
            ),
        ),
    };
    out.insert("time".into(), json!(time));
    out.insert(
        "metadata".into(),
        metadata(uid, &f.kind, "findings", f.received_unix_ms),
    );
    out.insert("message".into(), json!(f.summary));
    out.insert("count".into(), json!(f.count));
    out.insert("start_time".into(), json!(f.observed_unix_ms));
    out.insert("end_time".into(), json!(f.last_observed_unix_ms));
    if let Some(c) = change {
        let by = if c.note.is_empty() {
            format!("{} by {}", c.state.as_str(), c.operator)
        } else {
            format!("{} by {}: {}", c.state.as_str(), c.operator, c.note)
        };
        out.insert("comment".into(), json!(by));
    }
    let mut info = Map::new();
    info.insert("uid".into(), json!(f.id.to_string()));
    info.insert("title".into(), json!(f.summary));
    info.insert("types".into(), json!([f.kind]));
    info.insert("created_time".into(), json!(f.received_unix_ms));
    info.insert("first_seen_time".into(), json!(f.observed_unix_ms));
    info.insert("last_seen_time".into(), json!(f.last_observed_unix_ms));
    if let Some(c) = change {
        info.insert("modified_time".into(), json!(c.at_unix_ms));
    }
    if let Some(reason) = text(&f.attributes, "reason") {
        info.insert("desc".into(), json!(reason));
    }
    if let Some(a) = attacks(&f.attributes) {
        info.insert("attacks".into(), a);
    }
    if let Some(rule) = text(&f.attributes, "rule") {
        // 1: Rule — a Sigma rule or a collector rule named the finding.
        info.insert(
            "analytic".into(),
            json!({ "name": rule, "type_id": 1, "type": "Rule" }),
        );
    }
    out.insert("finding_info".into(), Value::Object(info));
    out.insert("device".into(), device(&f.host_id, host));
    if let Some(e) = evidences(&f.attributes) {
        out.insert("evidences".into(), e);
    }
    out.insert("unmapped".into(), unmapped(&f.attributes));
    Value::Object(out)
}

/// Which OCSF class an event kind maps to, if any: the kinds a sink's
/// `telemetry` can export in OCSF.
pub fn maps_kind(kind: &str) -> bool {
    matches!(
        kind,
        "process.exec"
            | "net.flow"
            | "net.connection"
            | "net.new_listener"
            | "net.listener"
            | "account.login"
            | "account.login_failed"
    ) || kind.starts_with("file.")
}

/// A telemetry event in its OCSF class, or `None` for a kind without one
/// (see [`maps_kind`]). `sequence` and `index` make `metadata.uid` unique.
pub fn event(
    host_id: &str,
    host: Option<&HostRecord>,
    e: &Event,
    sequence: u64,
    index: usize,
) -> Option<Value> {
    if !maps_kind(&e.kind) {
        return None;
    }
    let a = &e.attributes;
    let mut out = Map::new();
    let head =
        |class_uid, class_name, category_uid, category_name, activity_id, activity_name| Head {
            class_uid,
            class_name,
            category_uid,
            category_name,
            activity_id,
            activity_name,
        };
    match e.kind.as_str() {
        "process.exec" => {
            let p = process(a)?;
            head(1007, "Process Activity", 1, "System Activity", 1, "Launch")
                .write(&mut out, e.severity);
            // The actor is the parent that started it, where Bannin knows it.
            let actor = p
                .get("parent_process")
                .cloned()
                .map(|parent| json!({ "process": parent }))
                .or_else(|| user(a, "user", "uid").map(|u| json!({ "user": u })))
                .unwrap_or_else(|| json!({ "process": p.clone() }));
            out.insert("actor".into(), actor);
            out.insert("process".into(), p);
        }
        kind if kind.starts_with("file.") => {
            let path = text(a, "path")?;
            let (activity_id, activity_name) = match (kind, text(a, "change")) {
                (_, Some("added" | "created")) => (1, "Create"),
                (_, Some("removed" | "deleted")) => (4, "Delete"),
                ("file.permissions", _) => (8, "Set Attributes"),
                ("file.access", _) => (2, "Read"),
                ("file.executable_dropped" | "file.archive" | "file.odd_name", None) => {
                    (1, "Create")
                }
                _ => (3, "Update"),
            };
            head(
                1001,
                "File System Activity",
                1,
                "System Activity",
                activity_id,
                activity_name,
            )
            .write(&mut out, e.severity);
            // The writer, when the kernel named it (fanotify), or the reader
            // (`file.access`); else the file's owner.
            let actor = named_process(a, &WRITER)
                .or_else(|| named_process(a, &READER))
                .map(|p| json!({ "process": p }))
                .or_else(|| user(a, "user", "uid").map(|u| json!({ "user": u })))
                .unwrap_or_else(|| json!({ "app_name": "bannin-agent" }));
            out.insert("actor".into(), actor);
            out.insert("file".into(), file(path, a, true));
        }
        "net.flow" | "net.connection" | "net.new_listener" | "net.listener" => {
            let (activity_id, activity_name) = match e.kind.as_str() {
                "net.new_listener" | "net.listener" => (7, "Listen"),
                "net.connection" => (1, "Open"),
                _ if text(a, "state") == Some("failed") => (4, "Fail"),
                _ => (2, "Close"),
            };
            head(
                4001,
                "Network Activity",
                4,
                "Network Activity",
                activity_id,
                activity_name,
            )
            .write(&mut out, e.severity);
            let (src, dst) = if activity_id == 7 {
                (
                    None,
                    endpoint(a, "address", "port").or_else(|| endpoint(a, "local_address", "port")),
                )
            } else {
                endpoints(a)
            };
            if let Some(s) = src {
                out.insert("src_endpoint".into(), s);
            }
            if let Some(d) = dst {
                out.insert("dst_endpoint".into(), d);
            }
            out.insert("connection_info".into(), connection_info(a));
            if let Some(p) = process(a) {
                out.insert("actor".into(), json!({ "process": p }));
            }
            let sent = number(a, "bytes_sent");
            let received = number(a, "bytes_received");
            if sent.is_some() || received.is_some() {
                // Out of the local host and into it, whichever side opened.
                let mut t = Map::new();
                if let Some(s) = sent {
                    t.insert("bytes_out".into(), json!(s));
                }
                if let Some(r) = received {
                    t.insert("bytes_in".into(), json!(r));
                }
                t.insert(
                    "bytes".into(),
                    json!(sent.unwrap_or(0) + received.unwrap_or(0)),
                );
                out.insert("traffic".into(), Value::Object(t));
            }
            if let Some(d) = number(a, "duration_ms") {
                out.insert("duration".into(), json!(d));
                out.insert("start_time".into(), json!(e.observed_unix_ms - d));
                out.insert("end_time".into(), json!(e.observed_unix_ms));
            }
            if let Some(n) = number(a, "flows") {
                out.insert("count".into(), json!(n));
            }
        }
        "account.login" | "account.login_failed" => {
            head(
                3002,
                "Authentication",
                3,
                "Identity & Access Management",
                1,
                "Logon",
            )
            .write(&mut out, e.severity);
            let (status_id, status_name) = if e.kind == "account.login" {
                (1, "Success")
            } else {
                (2, "Failure")
            };
            out.insert("status_id".into(), json!(status_id));
            out.insert("status".into(), json!(status_name));
            let name = text(a, "user").unwrap_or("unknown");
            out.insert("user".into(), json!({ "name": name }));
            if let Some(src) = endpoint(a, "source", "port") {
                out.insert("src_endpoint".into(), src);
                out.insert("is_remote".into(), json!(true));
            }
            if let Some(service) = text(a, "service") {
                out.insert("service".into(), json!({ "name": service }));
            }
            if let Some(n) = number(a, "count") {
                out.insert("count".into(), json!(n));
            }
        }
        _ => return None,
    }
    out.insert("time".into(), json!(e.observed_unix_ms));
    out.insert(
        "metadata".into(),
        metadata(
            format!("bannin-event-{host_id}-{sequence}-{index}"),
            &e.kind,
            "telemetry",
            e.received_unix_ms,
        ),
    );
    out.insert("message".into(), json!(e.summary));
    out.insert("device".into(), device(host_id, host));
    out.insert("unmapped".into(), unmapped(a));
    Some(Value::Object(out))
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

    fn f() -> Finding {
        Finding {
            id: 42,
            host_id: "web-01".into(),
            kind: "process.reverse_shell".into(),
            severity: Severity::Critical,
            state: FindingState::Acknowledged,
            observed_unix_ms: 1_000,
            received_unix_ms: 1_100,
            last_observed_unix_ms: 2_000,
            count: 3,
            attributes: attrs(&[
                ("pid", "4242"),
                ("exe", "/usr/bin/bash"),
                ("cmdline", "bash -i"),
                ("user", "www-data"),
                ("uid", "33"),
                ("ppid", "1"),
                ("remote_address", "203.0.113.9"),
                ("remote_port", "4444"),
                ("direction", "outbound"),
                ("attack.technique", "T1059.004"),
            ]),
            summary: "bash with its streams on a TCP connection".into(),
            history: Vec::new(),
        }
    }

    #[test]
    fn a_finding_is_a_detection_finding_with_its_process_and_technique() {
        let v = finding(&f(), None, None);
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["type_uid"], 200_401);
        assert_eq!(v["severity_id"], 5);
        // The state it is given (a sink gives a new finding as created: new).
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["finding_info"]["uid"], "42");
        assert_eq!(v["finding_info"]["attacks"][0]["technique"]["uid"], "T1059");
        assert_eq!(
            v["finding_info"]["attacks"][0]["sub_technique"]["uid"],
            "T1059.004"
        );
        let e = &v["evidences"][0];
        assert_eq!(e["process"]["pid"], 4242);
        assert_eq!(e["process"]["file"]["path"], "/usr/bin/bash");
        assert_eq!(e["process"]["user"]["name"], "www-data");
        assert_eq!(e["dst_endpoint"]["ip"], "203.0.113.9");
        assert_eq!(e["dst_endpoint"]["port"], 4444);
        assert_eq!(v["device"]["uid"], "web-01");
        assert_eq!(v["unmapped"]["cmdline"], "bash -i");
        assert_eq!(v["metadata"]["version"], VERSION);
    }

    #[test]
    fn a_state_change_is_an_update_with_its_own_uid() {
        let change = StateChange {
            state: FindingState::FalsePositive,
            operator: "alice".into(),
            at_unix_ms: 5_000,
            note: "our scanner".into(),
        };
        let v = finding(&f(), None, Some(&change));
        assert_eq!(v["activity_id"], 2);
        assert_eq!(v["type_uid"], 200_402);
        assert_eq!(v["status_id"], 3);
        assert_eq!(v["time"], 5_000);
        assert_eq!(v["comment"], "false_positive by alice: our scanner");
        assert_ne!(
            v["metadata"]["uid"],
            finding(&f(), None, None)["metadata"]["uid"]
        );
    }

    #[test]
    fn telemetry_maps_to_its_activity_class_and_other_kinds_are_left_out() {
        let exec = Event {
            kind: "process.exec".into(),
            severity: Severity::Info,
            observed_unix_ms: 10,
            received_unix_ms: 11,
            indicator: false,
            attributes: attrs(&[
                ("pid", "7"),
                ("ppid", "6"),
                ("exe", "/usr/bin/true"),
                ("parent_exe", "/usr/bin/bash"),
                ("sha256", "ab"),
            ]),
            summary: "exec".into(),
        };
        let v = event("h", None, &exec, 3, 0).expect("mapped");
        assert_eq!(v["class_uid"], 1007);
        assert_eq!(v["process"]["pid"], 7);
        assert_eq!(v["process"]["file"]["hashes"][0]["value"], "ab");
        assert_eq!(v["actor"]["process"]["pid"], 6);
        assert_eq!(v["actor"]["process"]["file"]["path"], "/usr/bin/bash");

        let flow = Event {
            kind: "net.flow".into(),
            attributes: attrs(&[
                ("direction", "inbound"),
                ("local_address", "10.0.0.1"),
                ("local_port", "22"),
                ("remote_address", "10.0.0.2"),
                ("remote_port", "50000"),
                ("bytes_sent", "10"),
                ("bytes_received", "20"),
                ("duration_ms", "300"),
                ("state", "established"),
            ]),
            ..exec.clone()
        };
        let v = event("h", None, &flow, 3, 1).expect("mapped");
        assert_eq!(v["class_uid"], 4001);
        assert_eq!(v["activity_id"], 2);
        // Inbound: the peer opened it, so it is the source.
        assert_eq!(v["src_endpoint"]["ip"], "10.0.0.2");
        assert_eq!(v["dst_endpoint"]["port"], 22);
        assert_eq!(v["traffic"]["bytes_in"], 20);
        assert_eq!(v["connection_info"]["direction_id"], 1);
        assert_eq!(v["start_time"], -290);

        let changed = Event {
            kind: "file.modified".into(),
            attributes: attrs(&[
                ("path", "/etc/passwd"),
                ("change", "modified"),
                ("sha256", "cd"),
                ("by_pid", "42"),
                ("by_exe", "/usr/sbin/useradd"),
            ]),
            ..exec.clone()
        };
        let v = event("h", None, &changed, 3, 2).expect("mapped");
        assert_eq!(v["class_uid"], 1001);
        assert_eq!(v["activity_id"], 3);
        assert_eq!(v["actor"]["process"]["pid"], 42);
        assert_eq!(v["actor"]["process"]["name"], "useradd");
        // The hash is the changed file's, not the writer's executable's.
        assert_eq!(v["file"]["hashes"][0]["value"], "cd");
        assert!(v["actor"]["process"]["file"].get("hashes").is_none(), "{v}");

        let other = Event {
            kind: "system.boot".into(),
            ..exec
        };
        assert!(event("h", None, &other, 3, 2).is_none());
    }
}
