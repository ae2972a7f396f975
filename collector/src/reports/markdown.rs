//! Both reports as Markdown. Everything an attacker can influence goes through
//! [`md`], so a hostile name cannot forge a heading, a link or a table row.

use std::fmt::Write as _;

use super::*;

/// Escapes text for Markdown: no heading, emphasis, link, table or HTML can be
/// forged, and it stays on one line.
pub fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            // An underscore between two letters or digits never opens or closes
            // emphasis (CommonMark's intraword rule): `process.suspicious_exec` stays
            // readable in the raw Markdown.
            '_' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) =>
            {
                out.push(c);
            }
            // `&` would open an entity (`&#x202e;` is a bidi override once rendered).
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            // Control characters, bidi overrides and zero-width characters are
            // shown, never interpreted (the same set the CLI shows inert).
            c if bannin_proto::hello::is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

impl Brief {
    /// The brief as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let i = &self.incident;
        let _ = writeln!(
            m,
            "# Scoping brief — incident #{}: {}\n",
            i.id,
            md(&i.title)
        );
        let _ = writeln!(
            m,
            "Generated {} by Bannin from the collector's own records. Opened {} by {}; commander {}.\n",
            md(&self.generated_at),
            md(&i.opened_at),
            md(&i.opened_by),
            md(&i.commander)
        );

        m.push_str("## Signs and symptoms: what was noticed first\n\n");
        match &self.first_indicator {
            Some(f) => {
                let _ = writeln!(
                    m,
                    "- **First indicator:** finding #{} {} ({}) on {}: {}",
                    f.finding,
                    md(&f.kind),
                    f.severity,
                    md(&f.host),
                    md(&f.summary)
                );
                let _ = writeln!(
                    m,
                    "- **Observed:** {} (collector received it {})",
                    md(&f.observed_at),
                    md(&f.received_at)
                );
                let _ = writeln!(m, "- **Detected by:** {}", md(&f.detected_by));
                if f.first_handled_by.is_empty() {
                    m.push_str("- **First handled by:** nobody has acknowledged it yet\n");
                } else {
                    let _ = writeln!(
                        m,
                        "- **First handled by:** {} at {}",
                        md(&f.first_handled_by),
                        md(&f.first_handled_at)
                    );
                }
            }
            None => m.push_str("No finding is attached to this incident yet.\n"),
        }
        m.push_str("\n## Source of the indicators\n\n");
        match &self.first_indicator {
            Some(f) => {
                let _ = writeln!(m, "- First indicator: {}", md(&f.source));
            }
            None => m.push_str("- (none yet)\n"),
        }
        if !self.indicators.is_empty() {
            m.push_str("\n| finding | observed | host | kind | severity | count | state | summary |\n|---|---|---|---|---|---|---|---|\n");
            for f in &self.indicators {
                let _ = writeln!(
                    m,
                    "| #{} | {} | {} | {} | {} | {} | {} | {} |",
                    f.finding,
                    md(&f.observed_at),
                    md(&f.host),
                    md(&f.kind),
                    f.severity,
                    f.count,
                    f.state,
                    md(&f.summary)
                );
            }
        }

        m.push_str("\n## Current status\n\n");
        let _ = writeln!(
            m,
            "- **Severity:** {} — {}\n- **Status:** {}",
            md(&i.severity),
            i.severity_meaning,
            md(&i.status)
        );

        m.push_str("\n## Affected assets\n\n");
        if self.assets.is_empty() {
            m.push_str("None yet: attach findings to the incident.\n");
        }
        for a in &self.assets {
            let _ = writeln!(m, "### {} ({})\n", md(&a.host_id), md(&a.hostname));
            let _ = writeln!(m, "- **OS:** {}; kernel {}", md(&a.os), md(&a.kernel));
            let _ = writeln!(m, "- **Addresses:** {}", md(&a.addresses.join(", ")));
            let _ = writeln!(
                m,
                "- **Location:** {}",
                if a.location.is_empty() {
                    "(no location label)".to_owned()
                } else {
                    md(&a.location)
                }
            );
            if !a.labels.is_empty() {
                let labels: Vec<String> =
                    a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(m, "- **Labels:** {}", md(&labels.join(", ")));
            }
            let _ = writeln!(
                m,
                "- **State:** {}; last seen {}; {}; agent {}; {} indicator(s)",
                if a.online { "online" } else { "offline" },
                md(&a.last_seen),
                md(&a.isolation),
                md(&a.agent_version),
                a.indicators
            );
            if a.services.is_empty() {
                m.push_str("- **Services:** none observed\n");
            } else {
                m.push_str("- **Services (listening):**\n");
                for s in &a.services {
                    let _ = writeln!(
                        m,
                        "  - {} {}:{}{}",
                        md(&s.protocol),
                        md(&s.address),
                        s.port,
                        if s.exe.is_empty() {
                            String::new()
                        } else {
                            format!(" — {}", md(&s.exe))
                        }
                    );
                }
            }
            if !a.applications.is_empty() {
                let _ = writeln!(m, "- **Applications:** {}", md(&a.applications.join(", ")));
            }
            for gap in &a.sensor_gaps {
                let _ = writeln!(m, "- **Blind spot:** {}", md(gap));
            }
            m.push('\n');
        }

        if !self.hunts.is_empty() {
            m.push_str("## Hunts: where else\n\n");
            m.push_str("| hunt | question | state | started | by | answered | hosts with hits |\n|---|---|---|---|---|---|---|\n");
            for h in &self.hunts {
                let hits: Vec<String> = h
                    .hosts_with_hits
                    .iter()
                    .map(|(host, n)| format!("{host} ({n})"))
                    .collect();
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    md(&h.id),
                    md(&h.question),
                    h.state,
                    md(&h.started_at),
                    md(&h.operator),
                    h.answered,
                    md(&if hits.is_empty() {
                        "none".to_owned()
                    } else {
                        hits.join(", ")
                    })
                );
            }
            m.push('\n');
        }

        m.push_str("## Response actions already taken\n\n");
        if self.actions_taken.is_empty() {
            m.push_str("None recorded.\n");
        } else {
            m.push_str("| # | time | who | action | target | reason | result |\n|---|---|---|---|---|---|---|\n");
            for a in &self.actions_taken {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    a.seq,
                    md(&a.at),
                    md(&a.actor),
                    md(&a.verb),
                    md(&a.target),
                    md(&a.reason),
                    md(&a.result)
                );
            }
        }

        m.push_str("\n## Network and data flow\n\n");
        m.push_str("### Between affected hosts\n\n");
        flow_table(
            &mut m,
            &self.network.among_affected,
            "No connection between affected hosts was observed.",
        );
        m.push_str("\n### What the affected hosts reach\n\n");
        flow_table(
            &mut m,
            &self.network.reaches,
            "No other connection was observed.",
        );
        if self.network.omitted > 0 {
            let _ = writeln!(
                m,
                "\n{} more peer(s) left out; see `bannin events HOST --kind net.connection`.",
                self.network.omitted
            );
        }
        let _ = writeln!(m, "\nBuilt from: {}.", md(&self.network.sources.join("; ")));

        m.push_str("\n## Sites\n\n");
        for (site, hosts) in &self.sites {
            let _ = writeln!(m, "- {}: {}", md(site), md(&hosts.join(", ")));
        }
        if self.sites.is_empty() {
            m.push_str("None yet.\n");
        }
        m
    }
}

fn flow_table(m: &mut String, flows: &[Flow], none: &str) {
    if flows.is_empty() {
        let _ = writeln!(m, "{none}");
        return;
    }
    m.push_str("| host | direction | protocol | peer | port | peer is | program | seen by |\n|---|---|---|---|---|---|---|---|\n");
    for f in flows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&f.host),
            md(&f.direction),
            md(&f.protocol),
            md(&f.peer),
            f.port,
            md(&f.peer_is),
            md(&f.exe),
            f.seen_by
        );
    }
}

impl Review {
    /// The review as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let i = &self.incident;
        let _ = writeln!(
            m,
            "# Lessons-learned review — incident #{}: {}\n",
            i.id,
            md(&i.title)
        );
        let _ = writeln!(
            m,
            "Generated {} by Bannin. Severity {} ({}); status {}; commander {}.\n",
            md(&self.generated_at),
            md(&i.severity),
            i.severity_meaning,
            md(&i.status),
            md(&i.commander)
        );
        m.push_str("## Figures\n\n| | when | span |\n|---|---|---|\n");
        let span = |v: Option<i64>| v.map(human_duration).unwrap_or_else(|| "—".into());
        let t = &self.metrics;
        let _ = writeln!(m, "| First indicator | {} | |", md(&t.first_indicator_at));
        let _ = writeln!(
            m,
            "| Incident opened | {} | time to detect: {} |",
            md(&t.opened_at),
            span(t.time_to_detect_ms)
        );
        let _ = writeln!(
            m,
            "| Contained | {} | time to contain: {} (from the first indicator: {}) |",
            if t.contained_at.is_empty() {
                "not yet".to_owned()
            } else {
                md(&t.contained_at)
            },
            span(t.time_to_contain_ms),
            span(t.indicator_to_containment_ms)
        );
        let _ = writeln!(
            m,
            "| Closed | {} | time to close: {} |",
            if t.closed_at.is_empty() {
                "not yet".to_owned()
            } else {
                md(&t.closed_at)
            },
            span(t.time_to_close_ms)
        );
        if !t.contained_by.is_empty() {
            let _ = writeln!(m, "\nContained by: {}.", md(&t.contained_by));
        }
        m.push_str("\n## Timeline\n\n| time | source | what |\n|---|---|---|\n");
        for e in &self.timeline {
            let _ = writeln!(m, "| {} | {} | {} |", md(&e.at), e.source, md(&e.text));
        }
        m.push_str("\n## Review questions\n");
        for q in &self.questions {
            let _ = writeln!(m, "\n### {}. {}\n", q.number, q.question);
            if q.from_the_data.is_empty() {
                m.push_str("_For the review meeting: the data has no answer._\n");
            } else {
                for line in &q.from_the_data {
                    let _ = writeln!(m, "- {}", md(line));
                }
                m.push_str("- _For the review meeting: add what the data cannot say._\n");
            }
        }
        m
    }
}

#[cfg(test)]
mod corpus {
    //! The Markdown corpus: a hostile string in every text field either report
    //! renders, and the rendered structure checked line by line.

    use std::collections::BTreeMap;

    use super::super::TimelineItem;
    use super::super::brief::{
        ActionLine, Asset, Brief, FirstIndicator, Flow, HuntLine, IncidentSummary, IndicatorLine,
        Network, Service,
    };
    use super::super::review::{Metrics, Question, Review};

    /// Everything a peer could try: a terminal escape, a line break starting a
    /// heading, a table row, a link, an image, an HTML tag, an entity that
    /// renders as a bidi override, a code span, emphasis, and a raw bidi override.
    const HOSTILE: &str = "evil\u{1b}[2J\r\n# Forged\n| forged | row |\n[click](http://x.example) ![i](http://x.example/i.png) <script>alert(1)</script> &#x202e; `code` *em* _em_ ~~s~~ \u{202e}txt.exe";

    fn h() -> String {
        HOSTILE.to_owned()
    }

    fn summary() -> IncidentSummary {
        IncidentSummary {
            id: 7,
            title: h(),
            severity: h(),
            severity_meaning: "meaning",
            status: h(),
            commander: h(),
            opened_at: h(),
            opened_by: h(),
            closed_at: h(),
        }
    }

    fn flow() -> Flow {
        Flow {
            host: h(),
            direction: h(),
            protocol: h(),
            peer: h(),
            port: 443,
            peer_is: h(),
            exe: h(),
            seen_by: "sensor",
        }
    }

    fn brief() -> Brief {
        Brief {
            schema: "bannin.brief/1",
            generated_at: h(),
            incident: summary(),
            first_indicator: Some(FirstIndicator {
                finding: 1,
                kind: h(),
                severity: "high",
                host: h(),
                observed_at: h(),
                received_at: h(),
                source: h(),
                detected_by: h(),
                first_handled_by: h(),
                first_handled_at: h(),
                summary: h(),
            }),
            indicators: vec![IndicatorLine {
                finding: 1,
                kind: h(),
                severity: "high",
                host: h(),
                observed_at: h(),
                count: 3,
                state: "new",
                summary: h(),
            }],
            assets: vec![Asset {
                host_id: h(),
                hostname: h(),
                os: h(),
                kernel: h(),
                addresses: vec![h(), h()],
                agent_version: h(),
                labels: BTreeMap::from([(h(), h())]),
                location: h(),
                online: true,
                last_seen: h(),
                isolation: h(),
                services: vec![Service {
                    protocol: h(),
                    address: h(),
                    port: 22,
                    exe: h(),
                }],
                applications: vec![h()],
                sensor_gaps: vec![h()],
                indicators: 1,
            }],
            actions_taken: vec![ActionLine {
                seq: 4,
                at: h(),
                actor: h(),
                verb: h(),
                target: h(),
                reason: h(),
                result: h(),
            }],
            network: Network {
                among_affected: vec![flow()],
                reaches: vec![flow()],
                omitted: 2,
                sources: vec![h(), h()],
            },
            sites: BTreeMap::from([(h(), vec![h(), h()])]),
            hunts: vec![HuntLine {
                id: h(),
                question: h(),
                state: "running",
                operator: h(),
                started_at: h(),
                reason: h(),
                answered: 2,
                hosts_with_hits: BTreeMap::from([(h(), 1)]),
            }],
        }
    }

    fn review() -> Review {
        Review {
            schema: "bannin.review/1",
            generated_at: h(),
            incident: summary(),
            metrics: Metrics {
                first_indicator_at: h(),
                opened_at: h(),
                contained_at: h(),
                contained_by: h(),
                closed_at: h(),
                time_to_detect_ms: Some(1_000),
                time_to_contain_ms: Some(2_000),
                indicator_to_containment_ms: None,
                time_to_close_ms: None,
            },
            timeline: vec![TimelineItem {
                at_unix_ms: 0,
                at: h(),
                source: "finding",
                text: h(),
            }],
            questions: vec![Question {
                number: 1,
                question: "What happened, when, and how?",
                from_the_data: vec![h(), h()],
            }],
        }
    }

    /// Counts `|` not escaped by a backslash.
    fn cells(line: &str) -> usize {
        let mut count = 0;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '|' => count += 1,
                _ => {}
            }
        }
        count
    }

    fn assert_inert(markdown: &str, fields: usize) {
        // Every hostile field is rendered as `md` renders it, whole, and once
        // those are taken out nothing of the hostile text is left: no field
        // reached the report without the escaper.
        let escaped = super::md(HOSTILE);
        let shown = markdown.matches(&escaped).count();
        assert!(
            shown >= fields,
            "{shown} of {fields} hostile fields rendered:\n{markdown}"
        );
        let rest = markdown.replace(&escaped, "");
        for raw in [
            "\u{1b}", "\u{202e}", "\r", "Forged", "forged", "script", "http", "202e", "code",
            "evil", "txt.exe",
        ] {
            assert!(
                !rest.contains(raw),
                "{raw:?} reached the report unescaped:\n{rest}"
            );
        }
        // No hostile field starts a line of its own.
        for line in markdown.lines() {
            assert!(
                !line.starts_with("# Forged") && !line.starts_with("| forged"),
                "a forged line: {line:?}"
            );
        }
        // Every table row has as many cells as its header.
        let mut header: Option<usize> = None;
        for line in markdown.lines() {
            if line.starts_with('|') {
                let n = cells(line);
                match header {
                    None => header = Some(n),
                    Some(h) => assert_eq!(n, h, "a table row with forged cells: {line}"),
                }
            } else {
                header = None;
            }
        }
    }

    #[test]
    fn every_field_of_the_brief_is_escaped() {
        let b = brief();
        let markdown = b.markdown();
        // Fields rendered: 9 incident fields (severity_meaning is ours) less
        // closed_at (not shown in the brief), first indicator 9, indicator 4,
        // asset 17 (labels once, addresses joined), actions 6, flows 2 × 6,
        // sources once, sites 2.
        assert_inert(&markdown, 6 + 9 + 4 + 13 + 6 + 12 + 1 + 2);
    }

    #[test]
    fn every_field_of_the_review_is_escaped() {
        let r = review();
        let markdown = r.markdown();
        assert_inert(&markdown, 5 + 5 + 2 + 2);
    }
}
