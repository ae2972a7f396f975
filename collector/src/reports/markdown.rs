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
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
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
            self.generated_at,
            i.opened_at,
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
                    f.observed_at, f.received_at
                );
                let _ = writeln!(m, "- **Detected by:** {}", md(&f.detected_by));
                if f.first_handled_by.is_empty() {
                    m.push_str("- **First handled by:** nobody has acknowledged it yet\n");
                } else {
                    let _ = writeln!(
                        m,
                        "- **First handled by:** {} at {}",
                        md(&f.first_handled_by),
                        f.first_handled_at
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
                    f.observed_at,
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
            i.severity, i.severity_meaning, i.status
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
                a.last_seen,
                a.isolation,
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
                    a.at,
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
        let _ = writeln!(m, "\nBuilt from: {}.", self.network.sources.join("; "));

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
            self.generated_at,
            i.severity,
            i.severity_meaning,
            i.status,
            md(&i.commander)
        );
        m.push_str("## Figures\n\n| | when | span |\n|---|---|---|\n");
        let span = |v: Option<i64>| v.map(human_duration).unwrap_or_else(|| "—".into());
        let t = &self.metrics;
        let _ = writeln!(m, "| First indicator | {} | |", t.first_indicator_at);
        let _ = writeln!(
            m,
            "| Incident opened | {} | time to detect: {} |",
            t.opened_at,
            span(t.time_to_detect_ms)
        );
        let _ = writeln!(
            m,
            "| Contained | {} | time to contain: {} (from the first indicator: {}) |",
            if t.contained_at.is_empty() {
                "not yet"
            } else {
                &t.contained_at
            },
            span(t.time_to_contain_ms),
            span(t.indicator_to_containment_ms)
        );
        let _ = writeln!(
            m,
            "| Closed | {} | time to close: {} |",
            if t.closed_at.is_empty() {
                "not yet"
            } else {
                &t.closed_at
            },
            span(t.time_to_close_ms)
        );
        if !t.contained_by.is_empty() {
            let _ = writeln!(m, "\nContained by: {}.", md(&t.contained_by));
        }
        m.push_str("\n## Timeline\n\n| time | source | what |\n|---|---|---|\n");
        for e in &self.timeline {
            let _ = writeln!(m, "| {} | {} | {} |", e.at, e.source, md(&e.text));
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
