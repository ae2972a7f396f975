//! The overview: counts, and the charts the page draws.

use super::*;

pub(super) const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// `GET /`: counts, and two charts drawn as SVG by the page itself.
pub(crate) async fn overview(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let scan = scan_newest(&c, usize::MAX, OVERVIEW_SCAN, |_| true).await?;
    let findings = scan.found;
    let hosts = hosts_list(&c).await?;
    let incidents = c
        .client()
        .list_incidents(v1::ListIncidentsRequest {})
        .await?
        .into_inner()
        .incidents;
    let open: Vec<&v1::Finding> = findings
        .iter()
        .filter(|f| matches!(output::state(f.state), "new" | "acknowledged"))
        .collect();
    let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &open {
        *by_severity.entry(output::severity(f.severity)).or_default() += 1;
    }
    let online = hosts.iter().filter(|h| h.online).count();
    let isolated = hosts.iter().filter(|h| h.isolation == "isolated").count();
    let open_incidents = incidents.iter().filter(|i| i.status != "closed").count();
    let body = html! {
        @if !scan.complete {
            p.note { "Counts and charts over the newest " (scan.scanned) " findings." }
        }
        section.cards #cards data-live {
            @for sev in SEVERITIES {
                // The count is of open findings (new or acknowledged): so is the list it opens.
                a.card href=(format!("/findings?severity={sev}&state=open")) {
                    span.count data-severity=(sev) { (by_severity.get(sev).copied().unwrap_or(0)) }
                    (severity(sev))
                }
            }
            a.card href="/hosts" { span.count #hosts-online { (online) " / " (hosts.len()) } span { "hosts online" } }
            a.card href="/hosts" { span.count { (isolated) } span { "isolated" } }
            a.card href="/incidents" { span.count { (open_incidents) } span { "open incidents" } }
        }
        h2 { "Newest high and critical findings still open" }
        @let urgent: Vec<&v1::Finding> = open
            .iter()
            .copied()
            .filter(|f| matches!(output::severity(f.severity), "high" | "critical"))
            .take(10)
            .collect();
        div #urgent-live data-live {
            @if urgent.is_empty() {
                p.empty #urgent-empty { "None open." }
            } @else {
                table.grid #urgent {
                    thead { tr { @for (title, _) in QUEUE_COLUMNS { th { (title) } } } }
                    tbody { (finding_rows(&urgent)) }
                }
            }
        }
        h2 { "Hosts with open findings, worst first" }
        div #worst-hosts-live data-live { (worst_hosts(&open, &hosts)) }
        h2 { "Findings per hour, last 24 hours" }
        (hourly_chart(&findings, now_ms()))
        h2 { "Open findings per host" }
        (host_chart(&open))
    };
    Ok(page(&c.operator, &s.csrf, Nav::Overview, "Overview", body))
}

/// Hosts with open findings, ordered by their worst open severity, then by how
/// many are open; each row links to exactly those findings.
pub(super) fn worst_hosts(open: &[&v1::Finding], hosts: &[v1::Host]) -> Markup {
    // Per host: open findings per severity (index into SEVERITIES, most severe first).
    let mut per: BTreeMap<&str, [usize; 5]> = BTreeMap::new();
    for f in open {
        if let Some(k) = SEVERITIES
            .iter()
            .position(|s| *s == output::severity(f.severity))
        {
            per.entry(f.host_id.as_str()).or_default()[k] += 1;
        }
    }
    let mut rows: Vec<(&str, [usize; 5], usize)> = per
        .into_iter()
        .map(|(h, counts)| {
            let worst = counts.iter().position(|n| *n > 0).unwrap_or(4);
            (h, counts, worst)
        })
        .collect();
    rows.sort_by(|a, b| {
        a.2.cmp(&b.2)
            .then(b.1.iter().sum::<usize>().cmp(&a.1.iter().sum::<usize>()))
            .then(a.0.cmp(b.0))
    });
    let shown = rows.len().min(20);
    html! {
        @if rows.is_empty() {
            p.empty #worst-hosts-empty { "No open findings." }
        } @else {
            table.grid #worst-hosts {
                thead { tr {
                    th { "Host" } th { "Worst" } th.num { "Open" }
                    @for sev in SEVERITIES { th.num { (sev) } }
                    th { "Status" }
                } }
                tbody {
                    @for (host, counts, worst) in rows.iter().take(shown) {
                        @let status = hosts.iter().find(|h| h.host_id == *host);
                        tr data-host=(host) {
                            td { a href=(format!("/hosts/{host}")) { (host) } }
                            td { (severity(SEVERITIES[*worst])) }
                            td.num { a href=(format!("/findings?host={host}&state=open")) { (counts.iter().sum::<usize>()) } }
                            @for n in counts { td.num { @if *n > 0 { (n) } } }
                            td {
                                @match status {
                                    Some(h) if h.isolation == "isolated" => "isolated",
                                    Some(h) if h.online => "online",
                                    Some(_) => "offline",
                                    None => "unknown",
                                }
                            }
                        }
                    }
                }
            }
            @if rows.len() > shown {
                p.note { (rows.len() - shown) " more hosts with open findings: " a href="/findings?state=open&group=host" { "grouped by host" } }
            }
        }
    }
}

/// Stacked bars: findings observed per hour over the last 24 hours, by severity.
pub(super) fn hourly_chart(findings: &[v1::Finding], now: i64) -> Markup {
    const HOUR: i64 = 3_600_000;
    let start = (now / HOUR - 23) * HOUR;
    let mut bins = [[0usize; 5]; 24];
    for f in findings {
        if f.observed_unix_ms < start {
            continue;
        }
        let bin = ((f.observed_unix_ms - start) / HOUR).clamp(0, 23) as usize;
        if let Some(k) = SEVERITIES
            .iter()
            .position(|s| *s == output::severity(f.severity))
        {
            bins[bin][k] += 1;
        }
    }
    let max = bins
        .iter()
        .map(|b| b.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (720.0_f64, 180.0_f64, 36.0_f64, 20.0_f64);
    let bar = (w - left) / 24.0;
    let scale = (h - bottom - 8.0) / max as f64;
    html! {
        figure.chart {
            svg #chart-hourly viewBox=(format!("0 0 {w} {h}")) role="img" aria-label="Findings per hour by severity over the last 24 hours" {
                text x="0" y="12" class="axis" { (max) }
                text x="0" y=(h - bottom) class="axis" { "0" }
                line x1=(left) y1=(h - bottom) x2=(w) y2=(h - bottom) class="axis-line" {}
                @for (i, bin) in bins.iter().enumerate() {
                    @let x = left + i as f64 * bar;
                    @for (y, height, k, n) in stack(bin, h - bottom, scale) {
                        rect x=(format!("{:.1}", x + 2.0)) y=(format!("{y:.1}")) width=(format!("{:.1}", bar - 4.0)) height=(format!("{height:.1}")) class=(format!("fill-{}", SEVERITIES[k])) {
                            title { (n) " " (SEVERITIES[k]) ", " (crate::output::short_time(start + i as i64 * HOUR)) " UTC" }
                        }
                    }
                    @if i % 3 == 0 {
                        text x=(format!("{:.1}", x + 2.0)) y=(h - 4.0) class="axis" { (crate::output::short_time(start + i as i64 * HOUR).get(11..16).unwrap_or("")) }
                    }
                }
            }
            figcaption.legend {
                @for sev in SEVERITIES { span class=(format!("key fill-{sev}")) {} (sev) " " }
            }
        }
    }
}

/// One bar's segments, bottom up (most severe at the bottom): (y, height, severity index, count).
fn stack(bin: &[usize; 5], floor: f64, scale: f64) -> Vec<(f64, f64, usize, usize)> {
    let mut y = floor;
    let mut out = Vec::new();
    for (k, n) in bin.iter().enumerate() {
        if *n > 0 {
            let height = *n as f64 * scale;
            y -= height;
            out.push((y, height, k, *n));
        }
    }
    out
}

/// Horizontal bars: open findings per host (the ten hosts with most).
pub(super) fn host_chart(open: &[&v1::Finding]) -> Markup {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for f in open {
        *per.entry(f.host_id.as_str()).or_default() += 1;
    }
    let mut rows: Vec<(&str, usize)> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.truncate(10);
    let max = rows.first().map_or(1, |r| r.1.max(1));
    html! {
        @if rows.is_empty() { p.empty { "No open findings." } }
        @else {
            svg #chart-hosts viewBox=(format!("0 0 720 {}", rows.len() * 24 + 4)) role="img" aria-label="Open findings per host" {
                @for (i, (host, n)) in rows.iter().enumerate() {
                    @let y = i * 24 + 2;
                    text x="0" y=(y + 15) class="axis" { (host) }
                    rect x="180" y=(y + 3) height="16" width=(format!("{:.1}", 480.0 * *n as f64 / max as f64)) class="fill-bar" {}
                    text x=(format!("{:.1}", 186.0 + 480.0 * *n as f64 / max as f64)) y=(y + 15) class="axis" { (n) }
                }
            }
        }
    }
}
