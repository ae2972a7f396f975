//! Which rules an event can possibly match, before any rule is evaluated.
//!
//! Almost no rule matches almost any event, and most rules say so through a
//! literal: `Image|endswith: /nc`, `CommandLine|contains: base64 -d`. For each
//! rule the prefilter derives, from its detection and condition, a set of
//! (field, needle) pairs at least one of which must occur — case-insensitively,
//! as a substring — in any event the rule matches. All needles of a field go
//! into one Aho-Corasick automaton, so an event costs one scan per field, and
//! only the rules whose needles it holds (plus the rules with no usable
//! literal: regular expressions, numbers, `windash`, keywords…) are evaluated.
//!
//! The analysis is conservative: a rule it cannot reason about is always
//! evaluated, so the prefilter never hides a match (the language tests run
//! every rule through it).

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rsigma_eval::Event;
use rsigma_parser::{
    ConditionExpr, Detection, DetectionItem, Detections, Modifier, Quantifier, SelectorPattern,
    SigmaValue, StringPart,
};

/// A disjunction of (field, lower-case needle): one must occur if the rule matches.
type Needles = Vec<(String, String)>;

/// The prefilter of one log source's rules.
#[derive(Debug, Default)]
pub struct Prefilter {
    fields: Vec<FieldIndex>,
    /// Rules without a usable literal: evaluated for every event.
    always: Vec<usize>,
}

#[derive(Debug)]
struct FieldIndex {
    field: String,
    automaton: AhoCorasick,
    /// Pattern id → the rules it stands for.
    owners: Vec<Vec<usize>>,
}

impl Prefilter {
    /// Indexes `detections` (rule `i` is `detections[i]`).
    pub fn build<'a>(detections: impl IntoIterator<Item = &'a Detections>) -> Self {
        // Field → needle → the rules that need it, in first-seen order.
        let mut by_field: HashMap<String, needle_index::FieldNeedles> = HashMap::new();
        let mut always = Vec::new();
        for (i, d) in detections.into_iter().enumerate() {
            match required(d) {
                Some(needles) if !needles.is_empty() => {
                    for (field, needle) in needles {
                        by_field.entry(field).or_default().add(needle, i);
                    }
                }
                _ => always.push(i),
            }
        }
        let mut fields = Vec::new();
        for (field, needles) in by_field {
            let (patterns, owners) = needles.into_parts();
            let built = AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(&patterns);
            match built {
                Ok(automaton) => fields.push(FieldIndex {
                    field,
                    automaton,
                    owners,
                }),
                // (Cannot happen for the sizes rule packs have; if it does, the
                // rules are simply always evaluated.)
                Err(_) => always.extend(owners.into_iter().flatten()),
            }
        }
        always.sort_unstable();
        always.dedup();
        Self { fields, always }
    }

    /// Rules evaluated for every event.
    #[cfg(test)]
    pub fn unindexed(&self) -> usize {
        self.always.len()
    }

    /// The rules `event` can match, ascending.
    pub fn candidates(&self, event: &impl Event, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.always);
        for index in &self.fields {
            let Some(value) = event.get_field(&index.field) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                continue;
            };
            let lower = lowercase(&text);
            for m in index.automaton.find_overlapping_iter(lower.as_ref()) {
                out.extend_from_slice(&index.owners[m.pattern().as_usize()]);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// `text` lower-cased, borrowed when it already is (most telemetry is).
fn lowercase(text: &str) -> std::borrow::Cow<'_, str> {
    if text
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
    {
        std::borrow::Cow::Owned(text.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

mod needle_index {
    use std::collections::HashMap;

    /// One field's needles and, for each, the rules that need it.
    #[derive(Default)]
    pub struct FieldNeedles {
        at: HashMap<String, usize>,
        patterns: Vec<String>,
        owners: Vec<Vec<usize>>,
    }

    impl FieldNeedles {
        pub fn add(&mut self, needle: String, rule: usize) {
            match self.at.get(&needle) {
                Some(&i) => self.owners[i].push(rule),
                None => {
                    self.at.insert(needle.clone(), self.patterns.len());
                    self.patterns.push(needle);
                    self.owners.push(vec![rule]);
                }
            }
        }

        pub fn into_parts(self) -> (Vec<String>, Vec<Vec<usize>>) {
            (self.patterns, self.owners)
        }
    }
}

/// The needles one of which every match of a rule with `detections` holds;
/// `None` if the rule can match without any.
fn required(detections: &Detections) -> Option<Needles> {
    if detections.conditions.is_empty() {
        return None;
    }
    // Several conditions are alternatives.
    let mut out = Vec::new();
    for c in &detections.conditions {
        out.extend(condition(c, detections)?);
    }
    Some(out)
}

fn condition(c: &ConditionExpr, d: &Detections) -> Option<Needles> {
    match c {
        ConditionExpr::Identifier(name) => detection(d.named.get(name)?),
        // Any one operand's needles are necessary: take the fewest.
        ConditionExpr::And(args) => args
            .iter()
            .filter_map(|a| condition(a, d))
            .filter(|n| !n.is_empty())
            .min_by_key(Vec::len),
        ConditionExpr::Or(args) => {
            let mut out = Vec::new();
            for a in args {
                out.extend(condition(a, d)?);
            }
            Some(out)
        }
        ConditionExpr::Not(_) => None,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let names: Vec<&String> = d
                .named
                .keys()
                .filter(|n| match pattern {
                    SelectorPattern::Them => !n.starts_with('_'),
                    SelectorPattern::Pattern(p) => rsigma_parser::detection_name_matches(p, n),
                })
                .collect();
            if names.is_empty() {
                return None;
            }
            match quantifier {
                // All must match: any one's needles are necessary.
                Quantifier::All => names
                    .iter()
                    .filter_map(|n| detection(&d.named[*n]))
                    .filter(|n| !n.is_empty())
                    .min_by_key(Vec::len),
                Quantifier::Count(0) => None,
                // At least one matches: the union is necessary.
                Quantifier::Any | Quantifier::Count(_) => {
                    let mut out = Vec::new();
                    for n in names {
                        out.extend(detection(&d.named[n])?);
                    }
                    Some(out)
                }
            }
        }
    }
}

fn detection(d: &Detection) -> Option<Needles> {
    match d {
        // Every item must match: the item with the fewest needles will do.
        Detection::AllOf(items) => items
            .iter()
            .filter_map(item)
            .filter(|n| !n.is_empty())
            .min_by_key(Vec::len),
        Detection::AnyOf(list) => {
            let mut out = Vec::new();
            for d in list {
                out.extend(detection(d)?);
            }
            Some(out)
        }
        Detection::And(list) => list
            .iter()
            .filter_map(detection)
            .filter(|n| !n.is_empty())
            .min_by_key(Vec::len),
        _ => None,
    }
}

fn item(i: &DetectionItem) -> Option<Needles> {
    let field = i.field.name.as_ref()?;
    if i.field.has_modifier(Modifier::Re) {
        return regex_item(field, i);
    }
    let plain = i.field.modifiers.iter().all(|m| {
        matches!(
            m,
            Modifier::Contains
                | Modifier::StartsWith
                | Modifier::EndsWith
                | Modifier::All
                | Modifier::Cased
        )
    });
    if !plain || i.values.is_empty() {
        return None;
    }
    let mut needles = Vec::new();
    for v in &i.values {
        let needle = literal(v)?;
        needles.push((field.clone(), needle));
    }
    if i.field.has_modifier(Modifier::All) {
        // Every value must be present: the longest needle alone is necessary.
        needles.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
        needles.truncate(1);
    }
    Some(needles)
}

/// A `re` item: the literals its expressions cannot match without.
fn regex_item(field: &str, i: &DetectionItem) -> Option<Needles> {
    let m = &i.field.modifiers;
    if !m.iter().all(|m| {
        matches!(
            m,
            Modifier::Re | Modifier::IgnoreCase | Modifier::Multiline | Modifier::DotAll
        )
    }) || i.values.is_empty()
    {
        return None;
    }
    let mut out = Vec::new();
    for v in &i.values {
        let SigmaValue::String(s) = v else {
            return None;
        };
        let hir = regex_syntax::ParserBuilder::new()
            .case_insensitive(m.contains(&Modifier::IgnoreCase))
            .multi_line(m.contains(&Modifier::Multiline))
            .dot_matches_new_line(m.contains(&Modifier::DotAll))
            .build()
            .parse(&s.original)
            .ok()?;
        out.extend(
            regex_required(&hir)?
                .into_iter()
                .map(|n| (field.to_owned(), n)),
        );
    }
    Some(out)
}

/// Lower-case literals one of which every match of `hir` contains (each of
/// three characters at least), or `None`.
fn regex_required(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::HirKind;
    let long = |v: Vec<String>| v.iter().all(|n| n.chars().count() >= 3).then_some(v);
    match hir.kind() {
        HirKind::Concat(subs) => {
            // Runs of fixed characters are necessary as a whole; so is what any
            // one part requires. Take the longest run, else the best part.
            let mut best: Option<Vec<String>> = None;
            let mut run = String::new();
            let consider = |cand: Vec<String>, best: &mut Option<Vec<String>>| {
                let score = |v: &Vec<String>| v.iter().map(|n| n.len()).min().unwrap_or(0);
                if best.as_ref().is_none_or(|b| score(&cand) > score(b)) {
                    *best = Some(cand);
                }
            };
            for sub in subs {
                match fixed(sub) {
                    Some(text) => run.push_str(&text),
                    None => {
                        if let Some(v) = long(vec![std::mem::take(&mut run)]) {
                            consider(v, &mut best);
                        }
                        run.clear();
                        if let Some(v) = regex_required(sub) {
                            consider(v, &mut best);
                        }
                    }
                }
            }
            if let Some(v) = long(vec![run]) {
                consider(v, &mut best);
            }
            best
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for a in alts {
                out.extend(regex_required(a)?);
            }
            Some(out)
        }
        HirKind::Capture(c) => regex_required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => regex_required(&r.sub),
        _ => long(vec![fixed(hir)?]),
    }
}

/// The text `hir` matches if it matches exactly one string (up to case), lower-cased.
fn fixed(hir: &regex_syntax::hir::Hir) -> Option<String> {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(str::to_lowercase),
        // `(?i)a` is the class [Aa]: one letter in either case.
        HirKind::Class(Class::Unicode(c)) => {
            let chars: Vec<char> = c
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .take(4)
                .collect();
            let lower: std::collections::BTreeSet<String> =
                chars.iter().map(|c| c.to_lowercase().collect()).collect();
            (chars.len() <= 3 && lower.len() == 1).then(|| lower.into_iter().collect())
        }
        HirKind::Capture(c) => fixed(&c.sub),
        HirKind::Concat(subs) => subs.iter().map(fixed).collect(),
        _ => None,
    }
}

/// The longest run of plain text in a string value, lower-cased; `None` for a
/// value with none (a lone `*`, an empty string, a number).
fn literal(v: &SigmaValue) -> Option<String> {
    let SigmaValue::String(s) = v else {
        return None;
    };
    let longest = s
        .parts
        .iter()
        .filter_map(|p| match p {
            StringPart::Plain(t) => Some(t.as_str()),
            StringPart::Special(_) => None,
        })
        .max_by_key(|t| t.len())?;
    // Three characters at least, or the needle filters nothing.
    (longest.chars().count() >= 3).then(|| longest.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::SigmaEvent;
    use std::collections::BTreeMap;

    fn detections(yaml: &str) -> Detections {
        let c = rsigma_parser::parse_sigma_yaml(&format!(
            "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{yaml}"
        ))
        .expect("parses");
        c.rules[0].detection.clone()
    }

    fn exec(cmd: &str, exe: &str) -> SigmaEvent<'static> {
        let a = BTreeMap::from([
            ("cmdline".to_owned(), cmd.to_owned()),
            ("exe".to_owned(), exe.to_owned()),
        ]);
        SigmaEvent::from_event("h", "process.exec", 0, &a)
            .expect("event")
            .into_owned()
    }

    #[test]
    fn literals_select_candidates_and_the_rest_is_always_evaluated() {
        let rules = [
            detections("  s:\n    CommandLine|contains: 'Base64 -d'\n  condition: s\n"),
            detections(
                "  a:\n    Image|endswith: /nc\n  b:\n    CommandLine|contains: ' -e '\n  condition: a and b\n",
            ),
            detections("  s:\n    CommandLine|re: 'x.*y'\n  condition: s\n"),
            detections(
                "  s:\n    CommandLine|re|i: '^gen7[a-z]+ --(exec|payload)='\n  condition: s\n",
            ),
            detections(
                "  s:\n    Image|endswith: /curl\n  f:\n    User: root\n  condition: s and not f\n",
            ),
            detections(
                "  sel_a:\n    Image|endswith: /wget\n  sel_b:\n    Image|endswith: /tftp\n  condition: 1 of sel_*\n",
            ),
        ];
        let p = Prefilter::build(rules.iter());
        assert_eq!(p.unindexed(), 1, "only the expression without a literal");
        let mut out = Vec::new();
        p.candidates(&exec("echo x | BASE64 -D", "/bin/sh"), &mut out);
        assert_eq!(out, [0, 2]);
        p.candidates(&exec("nc -e sh", "/usr/bin/nc"), &mut out);
        assert_eq!(out, [1, 2]);
        p.candidates(&exec("curl x", "/usr/bin/curl"), &mut out);
        assert_eq!(out, [2, 4]);
        p.candidates(&exec("tftp x", "/usr/bin/tftp"), &mut out);
        assert_eq!(out, [2, 5]);
        p.candidates(&exec("ls", "/usr/bin/ls"), &mut out);
        assert_eq!(out, [2]);
        p.candidates(&exec("GEN7abc --payload=1", "/x"), &mut out);
        assert_eq!(out, [2, 3]);
    }

    #[test]
    fn what_it_cannot_reason_about_is_always_evaluated() {
        for d in [
            "  s:\n    CommandLine|contains: '*'\n  condition: s\n",
            "  s:\n    Image|endswith: /x\n  condition: not s\n",
            "  s:\n    - 'keyword'\n  condition: s\n",
            "  s:\n    CommandLine|windash|contains: ' -enc '\n  condition: s\n",
            "  a:\n    Image|endswith: /curl\n  b:\n    CommandLine|re: x\n  condition: a or b\n",
            "  s:\n    ProcessId|gt: 5\n  condition: s\n",
            "  s:\n    CommandLine|re: '[a-z]+ -[ex]'\n  condition: s\n",
            "  s:\n    CommandLine|re: 'ab(c|de)?f'\n  condition: s\n",
        ] {
            let p = Prefilter::build([detections(d)].iter());
            assert_eq!(p.unindexed(), 1, "{d}");
        }
    }
}
