//! Hunt questions, checked the same by the collector (before a hunt starts)
//! and the agent (before it runs one), and described in one line for people.

use crate::v1;
use crate::v1::hunt_question::Kind;

/// Most roots of a file question.
pub const MAX_ROOTS: usize = 16;
/// Deepest a file question may walk below a root.
pub const MAX_DEPTH: u32 = 64;
/// Depth walked when the question says none.
pub const DEFAULT_DEPTH: u32 = 12;
/// Largest file a hash question reads when it says none.
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// Longest pattern or name.
const MAX_TEXT: usize = 1024;
/// Longest YARA rule set (source text).
pub const MAX_RULES_BYTES: usize = 1024 * 1024;

/// Why a hunt question is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{question}: {problem}")]
pub struct QuestionError {
    /// The question's name.
    pub question: &'static str,
    /// What is wrong.
    pub problem: String,
}

/// A compiled glob, matched against a name or a path.
pub fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a glob: {e}"))
}

impl v1::HuntQuestion {
    /// The question's name (`file_hash`, `process`…; "" when it has none).
    pub fn name(&self) -> &'static str {
        match &self.kind {
            None => "",
            Some(Kind::FileHash(_)) => "file_hash",
            Some(Kind::FileName(_)) => "file_name",
            Some(Kind::Process(_)) => "process",
            Some(Kind::Connection(_)) => "connection",
            Some(Kind::Listener(_)) => "listener",
            Some(Kind::Account(_)) => "account",
            Some(Kind::Triage(_)) => "triage",
            Some(Kind::Yara(_)) => "yara",
        }
    }

    /// Checks everything a host would otherwise refuse, so a hunt that
    /// cannot run is refused before it starts, with the reason.
    pub fn check(&self) -> Result<(), QuestionError> {
        let name = self.name();
        let bad = |problem: String| QuestionError {
            question: if name.is_empty() { "hunt" } else { name },
            problem,
        };
        let text = |what: &str, s: &str| {
            if s.len() > MAX_TEXT || s.contains('\0') {
                Err(bad(format!("{what} is too long or holds a NUL")))
            } else {
                Ok(())
            }
        };
        let roots = |roots: &[String], depth: u32| {
            if roots.len() > MAX_ROOTS {
                return Err(bad(format!("at most {MAX_ROOTS} roots")));
            }
            for root in roots {
                text("a root", root)?;
                if !root.starts_with('/') || root.split('/').any(|c| c == "..") {
                    return Err(bad(format!(
                        "root {root:?} is not an absolute path without '..'"
                    )));
                }
            }
            if depth > MAX_DEPTH {
                return Err(bad(format!("depth at most {MAX_DEPTH}")));
            }
            Ok(())
        };
        let sha = |s: &str| {
            if crate::vocab::is_sha256_hex(s) {
                Ok(())
            } else {
                Err(bad(format!(
                    "{s:?} is not a SHA-256 (64 lowercase hex digits)"
                )))
            }
        };
        match &self.kind {
            None => return Err(bad("no question given".into())),
            Some(Kind::FileHash(q)) => {
                sha(&q.sha256)?;
                roots(&q.roots, q.max_depth)?;
            }
            Some(Kind::Yara(q)) => {
                if q.rules.trim().is_empty() {
                    return Err(bad("no rules given".into()));
                }
                if q.rules.len() > MAX_RULES_BYTES || q.rules.contains('\0') {
                    return Err(bad(format!(
                        "the rules are over {} KiB or hold a NUL",
                        MAX_RULES_BYTES / 1024
                    )));
                }
                roots(&q.roots, q.max_depth)?;
            }
            Some(Kind::FileName(q)) => {
                text("the pattern", &q.pattern)?;
                if q.pattern.is_empty() {
                    return Err(bad("a pattern is needed".into()));
                }
                glob(&q.pattern).map_err(bad)?;
                roots(&q.roots, q.max_depth)?;
            }
            Some(Kind::Process(q)) => {
                if [&q.name, &q.exe, &q.cmdline, &q.sha256]
                    .iter()
                    .all(|s| s.is_empty())
                {
                    return Err(bad(
                        "give a name, an exe, a command-line pattern or a SHA-256".into(),
                    ));
                }
                for (what, s) in [("name", &q.name), ("exe", &q.exe), ("cmdline", &q.cmdline)] {
                    text(what, s)?;
                }
                for g in [&q.name, &q.exe].into_iter().filter(|s| !s.is_empty()) {
                    glob(g).map_err(bad)?;
                }
                if !q.sha256.is_empty() {
                    sha(&q.sha256)?;
                }
            }
            Some(Kind::Connection(q)) => {
                if q.remote.is_empty() && q.port == 0 {
                    return Err(bad(
                        "give a remote address or network, a port, or both".into()
                    ));
                }
                if !q.remote.is_empty() && network(&q.remote).is_none() {
                    return Err(bad(format!(
                        "{:?} is not an address or network (a.b.c.d, a.b.c.d/n, v6, v6/n)",
                        q.remote
                    )));
                }
                if q.port > 65_535 {
                    return Err(bad(format!("{} is not a port", q.port)));
                }
            }
            Some(Kind::Listener(q)) => {
                if q.port == 0 || q.port > 65_535 {
                    return Err(bad(format!("{} is not a port", q.port)));
                }
            }
            Some(Kind::Account(q)) => {
                if q.name.is_empty()
                    || q.name.len() > 256
                    || q.name.contains(['/', ':', '\0', '\n'])
                {
                    return Err(bad(format!("{:?} is not an account name", q.name)));
                }
            }
            Some(Kind::Triage(t)) => {
                if !crate::vocab::TRIAGE_QUESTIONS.contains(&t.question.as_str()) {
                    return Err(bad(format!(
                        "unknown question {:?}; known: {}",
                        t.question,
                        crate::vocab::TRIAGE_QUESTIONS.join(", ")
                    )));
                }
                text("the path", &t.path)?;
                let needs_path = matches!(t.question.as_str(), "stat" | "hash" | "ls");
                if needs_path && !t.path.starts_with('/') {
                    return Err(bad(format!("{} needs an absolute path", t.question)));
                }
            }
        }
        Ok(())
    }

    /// The question in one line, for lists and findings.
    pub fn describe(&self) -> String {
        let roots = |r: &[String]| {
            if r.is_empty() {
                "/".to_owned()
            } else {
                r.join(", ")
            }
        };
        match &self.kind {
            None => String::new(),
            Some(Kind::FileHash(q)) => {
                format!("files with SHA-256 {} under {}", q.sha256, roots(&q.roots))
            }
            Some(Kind::FileName(q)) => {
                format!("files named {:?} under {}", q.pattern, roots(&q.roots))
            }
            Some(Kind::Yara(q)) => {
                let names = rule_names(&q.rules);
                let shown = match names.len() {
                    0 => "no rule".to_owned(),
                    1..=3 => names.join(", "),
                    n => format!("{}, … ({n} rules)", names[..3].join(", ")),
                };
                format!("files matching YARA {shown} under {}", roots(&q.roots))
            }
            Some(Kind::Process(q)) => {
                let mut parts = Vec::new();
                for (what, v) in [
                    ("name", &q.name),
                    ("exe", &q.exe),
                    ("cmdline ∋", &q.cmdline),
                    ("sha256", &q.sha256),
                ] {
                    if !v.is_empty() {
                        parts.push(format!("{what} {v:?}"));
                    }
                }
                format!("processes with {}", parts.join(", "))
            }
            Some(Kind::Connection(q)) => match (q.remote.as_str(), q.port) {
                (r, 0) => format!("connections to {r}"),
                ("", p) => format!("connections to port {p}"),
                (r, p) => format!("connections to {r} port {p}"),
            },
            Some(Kind::Listener(q)) => format!("listeners on port {}", q.port),
            Some(Kind::Account(q)) => format!("account {:?}", q.name),
            Some(Kind::Triage(t)) if t.path.is_empty() => format!("triage {}", t.question),
            Some(Kind::Triage(t)) => format!("triage {} {}", t.question, t.path),
        }
    }
}

/// The names of the rules a YARA source declares (`rule X`, `private rule X`,
/// `global rule X` at a line's start), for people; the compiler is the judge.
pub fn rule_names(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut word = words.next()?;
            while matches!(word, "private" | "global") {
                word = words.next()?;
            }
            (word == "rule").then(|| words.next()).flatten()
        })
        .map(|name| name.split([':', '{']).next().unwrap_or(name))
        .filter(|name| !name.is_empty())
        .collect()
}

/// `a.b.c.d`, `a.b.c.d/n`, a v6 address or network, as a network.
pub fn network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(kind: Kind) -> v1::HuntQuestion {
        v1::HuntQuestion { kind: Some(kind) }
    }

    #[test]
    fn questions_that_cannot_run_are_refused_with_the_reason() {
        let good = [
            q(Kind::FileHash(v1::FileHashQuestion {
                sha256: "a".repeat(64),
                roots: vec!["/tmp".into()],
                ..Default::default()
            })),
            q(Kind::FileName(v1::FileNameQuestion {
                pattern: "*.so".into(),
                ..Default::default()
            })),
            q(Kind::Process(v1::ProcessQuestion {
                exe: "/tmp/*".into(),
                ..Default::default()
            })),
            q(Kind::Connection(v1::ConnectionQuestion {
                remote: "10.0.0.0/8".into(),
                port: 0,
            })),
            q(Kind::Listener(v1::ListenerQuestion { port: 4444 })),
            q(Kind::Account(v1::AccountQuestion {
                name: "backup".into(),
            })),
            q(Kind::Yara(v1::YaraQuestion {
                rules: "rule a { condition: true }".into(),
                ..Default::default()
            })),
        ];
        for g in &good {
            assert_eq!(g.check(), Ok(()), "{g:?}");
            assert!(!g.describe().is_empty());
        }
        let refused = [
            (
                q(Kind::FileHash(v1::FileHashQuestion {
                    sha256: "xyz".into(),
                    ..Default::default()
                })),
                "SHA-256",
            ),
            (
                q(Kind::FileHash(v1::FileHashQuestion {
                    sha256: "a".repeat(64),
                    roots: vec!["tmp".into()],
                    ..Default::default()
                })),
                "absolute",
            ),
            (
                q(Kind::FileHash(v1::FileHashQuestion {
                    sha256: "a".repeat(64),
                    roots: vec!["/a/../b".into()],
                    ..Default::default()
                })),
                "'..'",
            ),
            (
                q(Kind::FileName(v1::FileNameQuestion {
                    pattern: "[".into(),
                    ..Default::default()
                })),
                "not a glob",
            ),
            (
                q(Kind::Process(v1::ProcessQuestion::default())),
                "give a name",
            ),
            (
                q(Kind::Yara(v1::YaraQuestion {
                    rules: "  ".into(),
                    ..Default::default()
                })),
                "no rules",
            ),
            (
                q(Kind::Yara(v1::YaraQuestion {
                    rules: "x".repeat(MAX_RULES_BYTES + 1),
                    ..Default::default()
                })),
                "over 1024 KiB",
            ),
            (
                q(Kind::Connection(v1::ConnectionQuestion {
                    remote: "10.0.0.0/33".into(),
                    port: 0,
                })),
                "not an address",
            ),
            (
                q(Kind::Listener(v1::ListenerQuestion { port: 70_000 })),
                "not a port",
            ),
            (
                q(Kind::Account(v1::AccountQuestion { name: "a:b".into() })),
                "not an account",
            ),
            (v1::HuntQuestion::default(), "no question"),
        ];
        for (question, why) in refused {
            let err = question.check().expect_err("refused").to_string();
            assert!(err.contains(why), "{question:?}: {err}");
        }
    }

    #[test]
    fn rule_names_are_read_for_people() {
        let source = "import \"elf\"\nrule a { condition: true }\nprivate rule b : tag {\n condition: true }\nglobal rule c{ condition: true }\n// rule commented\n";
        assert_eq!(rule_names(source), ["a", "b", "c"]);
    }
}
