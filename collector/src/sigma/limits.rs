//! Bounds on what a rule file may cost to load and to hold.
//!
//! Rule files are written by administrators, but they are input all the same:
//! a rule pack from the internet, a typo, or a hostile file slipped into a
//! rules directory must be refused with a reason, never abort or stall the
//! collector. Each check here runs *before* the component it protects:
//!
//! - [`check_flow_nesting`] scans the raw text before the YAML parser sees it
//!   (libyaml's flow handling is quadratic in nesting depth: 100,000 levels in
//!   200 KB took half a minute to refuse);
//! - [`check_conditions`] reads every `condition:` string before rsigma's pest
//!   grammar and Pratt parser do (both recurse once per parenthesis and per
//!   `not`: 8,000 `not`s overflowed a 2 MiB worker stack);
//! - [`bound_regexes`] rebuilds every regular expression of a compiled rule
//!   with a compiled-size limit and a small lazy-DFA cache, and counts what
//!   they take, so a rule set's memory has a ceiling ([`MAX_REGEX_SET_BYTES`]).
//!
//! Every refusal names the limit it hit; the caller names the file.

use regex::{Regex, RegexBuilder, RegexSetBuilder};
use rsigma_eval::compiler::CompiledDetection;
use rsigma_eval::matcher::CompiledMatcher;

/// Deepest YAML flow nesting (`[[[…]]]`, `{{…}}`) a rule file may have.
/// Sigma rules use one or two levels.
pub const MAX_FLOW_DEPTH: usize = 64;
/// Deepest a condition may nest, counting each parenthesis and each `not`
/// (rsigma refuses conditions deeper than 64 after parsing; this refuses them
/// before the recursive parsers run).
pub const MAX_CONDITION_DEPTH: usize = 64;
/// Longest condition string. rsigma parses a chain of `or`s in time that
/// grows with the square of its length (7,000 operands: 0.75 s), so its own
/// 64 KiB cap let one file buy a minute; SigmaHQ's longest are a few hundred
/// bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;
/// Largest compiled program one regular expression may become
/// (`regex`'s default is 10 MiB; a Sigma regex compiles to a few KiB).
pub const MAX_REGEX_BYTES: usize = 1024 * 1024;
/// Lazy-DFA cache per regular expression and thread (`regex`'s default is 2 MiB).
pub const REGEX_DFA_CACHE_BYTES: usize = 256 * 1024;
/// Compiled regular expressions one rule set may hold in all.
pub const MAX_REGEX_SET_BYTES: usize = 256 * 1024 * 1024;
/// Rule text one load may read in all (SigmaHQ's whole repository is ~15 MB).
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// Refuses YAML whose flow collections nest deeper than `max`, in one linear
/// pass. Brackets count only where YAML reads them as flow indicators (after
/// `:`, `-`, `,`, `?`, another bracket, or at the start of a line); quoted
/// scalars and comments are skipped, so `'[a-z]'` or `# [[` never count.
pub fn check_flow_nesting(text: &str, max: usize) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    // The last byte that was not a space or tab on this line (b'\n' at its start).
    let mut prev = b'\n';
    let mut line = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let at_value_start = matches!(prev, b'\n' | b':' | b'-' | b',' | b'?' | b'[' | b'{');
        match c {
            b'\n' => {
                line += 1;
                prev = b'\n';
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'\'' | b'"' if at_value_start => {
                // A quoted scalar: skip to its closing quote ('' and \" escape).
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if c == b'"' => i += 2,
                        q if q == c => {
                            if c == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                                i += 2;
                            } else {
                                break;
                            }
                        }
                        b'\n' => {
                            line += 1;
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' if at_value_start || depth > 0 => {
                depth += 1;
                if depth > max {
                    return Err(format!(
                        "YAML flow collections nest deeper than {max} levels (line {line})"
                    ));
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            // A bracket inside a plain scalar is text, and so is what follows it.
            b'[' | b'{' => {
                prev = b'a';
                i += 1;
                continue;
            }
            _ => {}
        }
        prev = c;
        i += 1;
    }
    Ok(())
}

/// Refuses a document whose `condition` strings nest deeper than `max`
/// (parentheses and `not`s together: what the condition parsers recurse on).
/// Every key named `condition`, at any depth, is read: detection rules,
/// filters and correlations alike.
pub fn check_conditions(text: &str, max: usize) -> Result<(), String> {
    use serde::Deserialize;
    for document in yaml_serde::Deserializer::from_str(text) {
        // A document that does not parse is rsigma's to report, with its words.
        let Ok(value) = yaml_serde::Value::deserialize(document) else {
            return Ok(());
        };
        let mut stack = vec![&value];
        while let Some(v) = stack.pop() {
            match v {
                yaml_serde::Value::Mapping(m) => {
                    for (key, value) in m {
                        if key.as_str() == Some("condition") {
                            let conditions: Vec<&str> = match value {
                                yaml_serde::Value::String(s) => vec![s.as_str()],
                                yaml_serde::Value::Sequence(s) => {
                                    s.iter().filter_map(|v| v.as_str()).collect()
                                }
                                _ => Vec::new(),
                            };
                            for c in conditions {
                                let depth = condition_depth(c);
                                if depth > max {
                                    return Err(format!(
                                        "a condition nests {depth} levels deep (parentheses and `not`s); the limit is {max}"
                                    ));
                                }
                                if c.len() > MAX_CONDITION_BYTES {
                                    return Err(format!(
                                        "a condition of {} bytes; the limit is {MAX_CONDITION_BYTES}",
                                        c.len()
                                    ));
                                }
                            }
                        }
                        stack.push(value);
                    }
                }
                yaml_serde::Value::Sequence(s) => stack.extend(s.iter()),
                yaml_serde::Value::Tagged(t) => stack.push(&t.value),
                _ => {}
            }
        }
    }
    Ok(())
}

/// How deep the condition parsers recurse on `condition`: every `(` and every
/// `not` in a row adds a level, a `)` closes what its `(` opened.
pub fn condition_depth(condition: &str) -> usize {
    // `base`: the level inside the innermost open parenthesis; `nots`: the
    // `not`s in a row just read (an operand or operator ends the run).
    let mut enclosing: Vec<usize> = Vec::new();
    let (mut base, mut nots, mut max) = (0usize, 0usize, 0usize);
    let mut word_start: Option<usize> = None;
    let end_word =
        |start: &mut Option<usize>, at: usize, nots: &mut usize, base: usize, max: &mut usize| {
            if let Some(s) = start.take() {
                if condition[s..at].eq_ignore_ascii_case("not") {
                    *nots += 1;
                    *max = (*max).max(base + *nots);
                } else {
                    *nots = 0;
                }
            }
        };
    for (at, c) in condition.char_indices() {
        match c {
            '(' => {
                end_word(&mut word_start, at, &mut nots, base, &mut max);
                enclosing.push(base);
                base += nots + 1;
                nots = 0;
                max = max.max(base);
            }
            ')' => {
                end_word(&mut word_start, at, &mut nots, base, &mut max);
                base = enclosing.pop().unwrap_or(0);
                nots = 0;
            }
            c if c.is_whitespace() => end_word(&mut word_start, at, &mut nots, base, &mut max),
            _ => {
                word_start.get_or_insert(at);
            }
        }
    }
    end_word(&mut word_start, condition.len(), &mut nots, base, &mut max);
    max
}

/// What one rule's regular expressions take.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegexCost {
    /// Regular expressions (a set counts its patterns).
    pub count: usize,
    /// Bytes their compiled forms take (without the per-thread DFA caches,
    /// which [`REGEX_DFA_CACHE_BYTES`] bounds).
    pub bytes: usize,
}

/// Rebuilds every regular expression in `detections` with
/// [`MAX_REGEX_BYTES`] and [`REGEX_DFA_CACHE_BYTES`], and what they take;
/// refuses a rule whose expression compiles larger than the limit.
pub fn bound_regexes<'a>(
    detections: impl Iterator<Item = &'a mut CompiledDetection>,
) -> Result<RegexCost, String> {
    let mut cost = RegexCost::default();
    for d in detections {
        bound_detection(d, &mut cost)?;
    }
    Ok(cost)
}

fn bound_detection(d: &mut CompiledDetection, cost: &mut RegexCost) -> Result<(), String> {
    match d {
        CompiledDetection::AllOf(items) => {
            for item in items {
                bound_matcher(&mut item.matcher, cost)?;
            }
        }
        CompiledDetection::AnyOf(ds) | CompiledDetection::And(ds) => {
            for d in ds {
                bound_detection(d, cost)?;
            }
        }
        CompiledDetection::Keywords(m) => bound_matcher(m, cost)?,
        CompiledDetection::ArrayMatch { body, .. } => bound_detection(body, cost)?,
        CompiledDetection::Conditional { named, .. } => {
            for d in named.values_mut() {
                bound_detection(d, cost)?;
            }
        }
    }
    Ok(())
}

fn bound_matcher(m: &mut CompiledMatcher, cost: &mut RegexCost) -> Result<(), String> {
    match m {
        CompiledMatcher::Regex(re) => {
            let (bounded, bytes) = bounded_regex(re.as_str())?;
            *re = bounded;
            cost.count += 1;
            cost.bytes += bytes;
        }
        CompiledMatcher::RegexSetMatch { set, .. } => {
            let mut bytes = 0;
            for p in set.patterns() {
                bytes += measure(p)?;
            }
            *set = RegexSetBuilder::new(set.patterns())
                .size_limit(MAX_REGEX_BYTES * set.len().max(1))
                .dfa_size_limit(REGEX_DFA_CACHE_BYTES)
                .build()
                .map_err(|e| too_large(&set.patterns().join("|"), &e.to_string()))?;
            cost.count += set.len();
            cost.bytes += bytes;
        }
        CompiledMatcher::TimestampPart { inner, .. } | CompiledMatcher::Not(inner) => {
            bound_matcher(inner, cost)?;
        }
        CompiledMatcher::AnyOf(ms)
        | CompiledMatcher::AllOf(ms)
        | CompiledMatcher::CaseInsensitiveGroup { children: ms, .. } => {
            for m in ms {
                bound_matcher(m, cost)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `pattern` rebuilt within the limits, and the bytes its compiled form takes.
fn bounded_regex(pattern: &str) -> Result<(Regex, usize), String> {
    let bytes = measure(pattern)?;
    let re = RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(REGEX_DFA_CACHE_BYTES)
        .build()
        .map_err(|e| too_large(pattern, &e.to_string()))?;
    Ok((re, bytes))
}

/// The heap one compiled expression takes (its NFAs and prefilter), or the
/// refusal when it compiles past [`MAX_REGEX_BYTES`].
fn measure(pattern: &str) -> Result<usize, String> {
    let re = regex_automata::meta::Regex::builder()
        .configure(
            regex_automata::meta::Regex::config()
                .nfa_size_limit(Some(MAX_REGEX_BYTES))
                .hybrid_cache_capacity(REGEX_DFA_CACHE_BYTES),
        )
        .build(pattern)
        .map_err(|e| too_large(pattern, &e.to_string()))?;
    Ok(re.memory_usage())
}

fn too_large(pattern: &str, error: &str) -> String {
    let shown: String = pattern.chars().take(80).collect();
    let more = if shown.len() < pattern.len() {
        "…"
    } else {
        ""
    };
    format!(
        "regular expression {shown:?}{more} is refused (compiled size limit {MAX_REGEX_BYTES} bytes): {}",
        first_line(error)
    )
}

/// The first line of an error, at most 200 characters: parser errors quote
/// their whole input, and a reason travels in a gRPC header and the action log.
pub fn first_line(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(200).collect();
    if out.len() < error.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_is_counted_where_yaml_reads_brackets() {
        let deep = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            check_flow_nesting(&deep, 64)
                .expect_err("too deep")
                .contains("64")
        );
        let ok = format!("a: {}{}", "[".repeat(64), "]".repeat(64));
        assert!(check_flow_nesting(&ok, 64).is_ok());
        // Brackets inside quoted scalars, plain scalars and comments are text.
        let text = format!(
            "a: '{0}'\nb: \"{0}\"\nc: x {0}\n# {0}\nd: [a, [b, {{c: d}}]]\n",
            "[".repeat(100)
        );
        assert!(check_flow_nesting(&text, 64).is_ok(), "{text}");
        // Escaped quotes do not end a quoted scalar early.
        let text = format!("a: 'it''s {0}'\nb: \"\\\" {0}\"\n", "[".repeat(100));
        assert!(check_flow_nesting(&text, 64).is_ok());
    }

    #[test]
    fn condition_depth_counts_parentheses_and_runs_of_not() {
        assert_eq!(condition_depth("selection"), 0);
        assert_eq!(condition_depth("selection and not filter"), 1);
        assert_eq!(condition_depth("not a and not b and not c"), 1);
        assert_eq!(condition_depth("not not not a"), 3);
        assert_eq!(condition_depth("((a) and (b))"), 2);
        assert_eq!(condition_depth("not (not (a))"), 4);
        assert_eq!(condition_depth("1 of selection_* and not 1 of filter_*"), 1);
        let nots = format!("{}selection", "not ".repeat(8000));
        assert_eq!(condition_depth(&nots), 8000);
        let parens = format!("{}a{}", "(".repeat(30_000), ")".repeat(30_000));
        assert_eq!(condition_depth(&parens), 30_000);
        // Words that start like `not` are identifiers.
        assert_eq!(condition_depth("nothing and notable"), 0);
    }

    #[test]
    fn conditions_are_found_at_any_depth() {
        let deep = format!(
            "title: t\ndetection:\n  s: {{a: b}}\n  condition: {}s\n",
            "not ".repeat(100)
        );
        assert!(
            check_conditions(&deep, 64)
                .expect_err("too deep")
                .contains("100 levels")
        );
        let list = format!(
            "title: t\ndetection:\n  s: {{a: b}}\n  condition:\n    - s\n    - {}s\n",
            "not ".repeat(70)
        );
        assert!(check_conditions(&list, 64).is_err());
        assert!(check_conditions("title: t\ndetection:\n  condition: s\n", 64).is_ok());
    }

    #[test]
    fn a_huge_regex_is_refused_and_a_normal_one_is_measured() {
        let error = bounded_regex(r"(\w+\s?){1,200}z").expect_err("too large");
        assert!(error.contains("compiled size limit"), "{error}");
        let (re, bytes) = bounded_regex(r"(?i)\bbase64\s+-d\b").expect("small regex");
        assert!(re.is_match("echo x | BASE64 -d"));
        assert!(bytes > 0 && bytes < MAX_REGEX_BYTES, "{bytes}");
    }

    proptest::proptest! {
        /// Any text, deep or wide: the checks return, and never on a deeper
        /// input than they allow.
        #[test]
        fn fuzz_rule_limits(
            open in 0usize..300,
            nots in 0usize..300,
            junk in "[\\[\\]{}()'\"#:, \nnota-]{0,400}",
        ) {
            let text = format!("condition: {}{}x{}\n{junk}", "not ".repeat(nots), "(".repeat(open), ")".repeat(open));
            let _ = check_flow_nesting(&text, MAX_FLOW_DEPTH);
            let _ = check_conditions(&text, MAX_CONDITION_DEPTH);
            let depth = condition_depth(&format!("{}{}x{}", "not ".repeat(nots), "(".repeat(open), ")".repeat(open)));
            proptest::prop_assert_eq!(depth, nots + open);
            let flow = format!("a: {}{}", "[".repeat(open), "]".repeat(open));
            proptest::prop_assert_eq!(check_flow_nesting(&flow, MAX_FLOW_DEPTH).is_ok(), open <= MAX_FLOW_DEPTH);
        }
    }
}
