//! Hosts: the inventory, one host with its telemetry, and commands (triage, isolate, snapshot…) and their progress.

use super::*;

fn sensors_summary(h: &v1::Host) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &h.sensors {
        *counts.entry(s.state.as_str()).or_default() += 1;
    }
    let bad: Vec<String> = h
        .sensors
        .iter()
        .filter(|s| s.state != "ok" && s.state != "disabled")
        .map(|s| format!("{} {}", s.name, s.state))
        .collect();
    let all = counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    t(&if bad.is_empty() {
        all
    } else {
        format!("{} ({all})", bad.join(", "))
    })
    .into_owned()
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t(&l.join(" ")).into_owned()
}

/// `GET /hosts`.
pub(crate) async fn hosts(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let hosts = hosts_list(&c).await?;
    let body = html! {
        table.grid #hosts {
            thead { tr { th { "Host" } th { "Hostname" } th { "Status" } th { "Isolation" } th { "Sensors" } th { "Labels" } th { "Last seen (UTC)" } th { "Agent" } } }
            tbody {
                @for h in &hosts {
                    tr data-host=(t(&h.host_id)) {
                        td { a href=(format!("/hosts/{}", h.host_id)) { (t(&h.host_id)) } }
                        td { (t(&h.hostname)) }
                        // Status, isolation, sensors and last contact are read again while the page is open.
                        td id=(format!("h-{}-status", h.host_id)) data-live { @if h.revoked { span.badge.bad { "revoked" } } @else if h.online { span.badge.ok { "online" } } @else { span.badge { "offline" } } }
                        td id=(format!("h-{}-isolation", h.host_id)) data-live { span class=(if h.isolation == "isolated" { "badge bad" } else { "badge" }) { (h.isolation) } }
                        td id=(format!("h-{}-sensors", h.host_id)) data-live { (sensors_summary(h)) }
                        td { (labels_text(&h.labels)) }
                        td id=(format!("h-{}-seen", h.host_id)) data-live { (time(h.last_seen_unix_ms)) }
                        td { (t(&h.agent_version)) }
                    }
                }
            }
        }
        @if hosts.is_empty() { p.empty { "No host has connected yet." } }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Hosts, "Hosts", body))
}

const QUESTIONS: [(&str, &str); 9] = [
    ("processes", "Processes"),
    ("connections", "Network connections"),
    ("listeners", "Listening sockets"),
    ("logins", "Recent logins"),
    ("users", "User accounts"),
    ("services", "Services"),
    ("stat", "stat of a path"),
    ("hash", "SHA-256 of a file"),
    ("ls", "Directory listing"),
];

/// The telemetry shown on a host's page: a kind (`net.flow`, or a prefix
/// `net.*`) and a window.
#[derive(Deserialize, Default)]
pub(crate) struct TelemetryQuery {
    #[serde(default)]
    kind: String,
    /// Minutes back from now (default 60).
    #[serde(default)]
    minutes: u32,
    /// A response refused by the console: shown above its form, which keeps
    /// the `reason` the responder typed.
    #[serde(default)]
    refused: Option<Refused>,
    #[serde(default)]
    reason: String,
}

/// A network response the console refused for want of its confirmation.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Refused {
    /// Isolation.
    Isolate,
    /// Release.
    Release,
}

impl Refused {
    fn verb(self) -> &'static str {
        match self {
            Refused::Isolate => "isolate",
            Refused::Release => "release",
        }
    }
}

/// Windows offered for the host's telemetry, in minutes.
const WINDOWS: [(u32, &str); 5] = [
    (5, "5 minutes"),
    (15, "15 minutes"),
    (60, "hour"),
    (360, "6 hours"),
    (1440, "24 hours"),
];
/// Events shown on a host's page (the newest of the window).
const EVENTS_SHOWN: usize = 200;
/// Events read at most to find the newest of the window.
const EVENTS_READ: usize = 20_000;

/// The newest [`EVENTS_SHOWN`] events of `host` in the window, newest first,
/// and whether the window held more than [`EVENTS_READ`] (then the newest
/// read are shown, not the newest of all).
async fn newest_events(
    c: &Shared,
    host: &str,
    q: &TelemetryQuery,
) -> Result<(Vec<v1::StoredEvent>, bool), PageError> {
    let minutes = if q.minutes == 0 {
        60
    } else {
        q.minutes.min(1440)
    };
    let mut kept = std::collections::VecDeque::with_capacity(EVENTS_SHOWN);
    let mut after = 0;
    let mut read = 0;
    loop {
        let page = c
            .client()
            .list_events(v1::ListEventsRequest {
                host_id: host.to_owned(),
                since_unix_ms: now_ms() - i64::from(minutes) * 60_000,
                kind: q.kind.trim().to_owned(),
                limit: 1000,
                after_sequence: after,
            })
            .await?
            .into_inner();
        read += page.events.len();
        if let Some(last) = page.events.last() {
            after = last.sequence;
        }
        for e in page.events {
            if kept.len() == EVENTS_SHOWN {
                kept.pop_front();
            }
            kept.push_back(e);
        }
        if !page.truncated {
            return Ok((kept.into_iter().rev().collect(), false));
        }
        if read >= EVENTS_READ {
            return Ok((kept.into_iter().rev().collect(), true));
        }
    }
}

/// `GET /hosts/{id}[?kind=K&minutes=M]`.
pub(crate) async fn host(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Query(tq): Query<TelemetryQuery>,
) -> Page {
    let hosts = hosts_list(&c).await?;
    let h = hosts
        .into_iter()
        .find(|h| h.host_id == id)
        .ok_or_else(|| PageError {
            status: StatusCode::NOT_FOUND,
            message: format!("no host {id}"),
        })?;
    let found = c
        .client()
        .list_findings(v1::ListFindingsRequest {
            newest_first: true,
            limit: 100,
            filter: Some(v1::FindingFilter {
                host_id: id.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .findings;
    let mine: Vec<&v1::Finding> = found.iter().collect();
    let (events, cut) = newest_events(&c, &id, &tq).await?;
    let minutes = if tq.minutes == 0 {
        60
    } else {
        tq.minutes.min(1440)
    };
    let commands = c
        .client()
        .list_commands(v1::ListCommandsRequest {
            host_id: id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands;
    let can_act = c.operator.role >= Role::Responder;
    let sensors_bad = h
        .sensors
        .iter()
        .any(|x| x.state != "ok" && x.state != "disabled");
    let body = html! {
        (facts([
            ("Hostname", html! { (t(&h.hostname)) }),
            ("Status", html! { span #host-status { @if h.revoked { "revoked" } @else if h.online { "online" } @else { "offline" } } }),
            ("Isolation", html! { span #isolation class=(if h.isolation == "not isolated" { "badge" } else { "badge bad" }) { (h.isolation) } }),
            ("OS", html! { (t(&h.os)) " · " (t(&h.kernel)) }),
            ("Addresses", html! { (t(&h.addresses.join(", "))) }),
            ("Connected from", html! { (t(&h.peer_address)) }),
            ("Agent", html! { (t(&h.agent_version)) }),
            ("First seen", time(h.first_seen_unix_ms)),
            ("Last seen", time(h.last_seen_unix_ms)),
            ("Labels", html! { (labels_text(&h.labels)) }),
            ("Spool", view::size(h.spool_bytes)),
        ]))
        nav.sections aria-label="Sections of this page" {
            a href="#findings" { "Findings (" (mine.len()) ")" }
            @if can_act { a href="#response" { "Response" } a href="#triage" { "Triage" } }
            a href="#commands" { "Commands (" (commands.len()) ")" }
            a href="#sensors" { "Sensors" }
            a href="#telemetry" { "Telemetry" }
        }
        h2 #findings { "Findings" }
        (findings_table(&mine, None, None, false))
        @if can_act {
            h2 #response { "Response" }
            div.response {
                @if h.isolation == "isolated" || h.isolation == "pending isolation" {
                    form #release-form.danger method="post" action=(format!("/hosts/{id}/release")) {
                        (csrf_field(&s.csrf))
                        h3 { "Release " (id) " from isolation" }
                        @if tq.refused == Some(Refused::Release) { p.error #error role="alert" { "Not released: " (confirm_refusal(&id, Refused::Release)) "." } }
                        label { "Reason (required) " input type="text" name="reason" required size="50" value=(if tq.refused == Some(Refused::Release) { tq.reason.as_str() } else { "" }); }
                        label { "Type the host id " strong { (id) } " to confirm " input type="text" name="confirm" required autocomplete="off"; }
                        button type="submit" #release-button { "Release " (id) }
                    }
                } @else {
                    form #isolate-form.danger method="post" action=(format!("/hosts/{id}/isolate")) {
                        (csrf_field(&s.csrf))
                        h3 { "Isolate " (id) " from the network" }
                        p.note { "Only the collector stays reachable. The agent answers commands while isolated." }
                        @if tq.refused == Some(Refused::Isolate) { p.error #error role="alert" { "Not isolated: " (confirm_refusal(&id, Refused::Isolate)) "." } }
                        label { "Reason (required) " input type="text" name="reason" required size="50" value=(if tq.refused == Some(Refused::Isolate) { tq.reason.as_str() } else { "" }); }
                        label { "Type the host id " strong { (id) } " to confirm " input type="text" name="confirm" required autocomplete="off"; }
                        button type="submit" #isolate-button { "Isolate " (id) }
                    }
                }
                form #snapshot-form method="post" action=(format!("/hosts/{id}/snapshot")) {
                    (csrf_field(&s.csrf))
                    h3 { "Forensic snapshot" }
                    label { "Files to include, one absolute path per line (the snapshot always takes the volatile state) " textarea name="files" rows="3" cols="60" {} }
                    label { "Reason (required) " input type="text" name="reason" required size="50"; }
                    button type="submit" #snapshot-button { "Take snapshot" }
                }
                form #capture-form method="post" action=(format!("/hosts/{id}/capture")) {
                    (csrf_field(&s.csrf))
                    h3 { "Packet capture" }
                    p.note { "Packets from the wire, filtered in the host's kernel, held as evidence (pcapng). Works on an isolated host: it captures what still reaches it." }
                    label { "Seconds (1–3600) " input type="number" name="seconds" min="1" max="3600" value="60" required; }
                    label { "Filter (tcpdump syntax, empty for all) " input type="text" name="filter" size="40" placeholder="host 203.0.113.7 and tcp port 443"; }
                    label { "Interfaces (comma-separated, empty for every interface that is up) " input type="text" name="interfaces" size="20"; }
                    label { "Size cap " input type="text" name="max_bytes" size="8" placeholder="64M"; }
                    label { "Reason (required) " input type="text" name="reason" required size="50"; }
                    button type="submit" #capture-button { "Capture" }
                }
            }
            h2 #triage { "Triage" }
            form #triage-form method="post" action=(format!("/hosts/{id}/triage")) {
                (csrf_field(&s.csrf))
                label { "Question "
                    select name="question" #triage-question {
                        @for (q, label) in QUESTIONS { option value=(q) { (label) } }
                    }
                }
                label { "Path (stat, hash, ls) " input type="text" name="path" size="40"; }
                button type="submit" #triage-button { "Ask" }
            }
        } @else {
            p.note #no-response { "Your role (" (c.operator.role.as_str()) ") can read this host; isolation, snapshots and triage need a responder." }
        }
        h2 #commands { "Commands" }
        (commands_table(&commands))
        details.sensors #sensors open[sensors_bad] {
            summary { h2.inline { "Sensors: " (sensors_summary(&h)) } }
            table.grid {
                thead { tr { th { "Sensor" } th { "State" } th { "Detail" } } }
                tbody { @for x in &h.sensors { tr { td { (t(&x.name)) } td { span class=(if x.state == "ok" { "badge ok" } else if x.state == "disabled" { "badge" } else { "badge bad" }) { (t(&x.state)) } } td { (t(&x.detail)) } } } }
            }
        }
        h2 #telemetry { "Telemetry, newest first" }
        form.filters #telemetry-filter method="get" action=(format!("/hosts/{id}")) {
            label { "Kind " input type="text" name="kind" value=(tq.kind) size="18" placeholder="net.flow or net.*"; }
            label { "Last "
                select name="minutes" {
                    @for (m, label) in WINDOWS {
                        option value=(m) selected[m == minutes] { (label) }
                    }
                }
            }
            button type="submit" { "Show" }
        }
        p.note #telemetry-count {
            (events.len()) " event(s)"
            @if events.len() == EVENTS_SHOWN { ", the newest " (EVENTS_SHOWN) }
            @if cut { " (the window holds more than " (EVENTS_READ) ": narrow it, or use `bannin events`)" }
        }
        table.grid #events {
            thead { tr { th { "Observed (UTC)" } th { "Kind" } th { "Attributes" } } }
            tbody {
                @for e in &events {
                    @if let Some(ev) = &e.event {
                        tr {
                            td { (time(ev.observed_unix_ms)) }
                            td.kind { (t(&ev.kind)) }
                            td.value { (attributes_text(&ev.attributes)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Hosts,
        &format!("Host {id}"),
        body,
    ))
}

pub(super) fn attributes_text(a: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
    t(&v.join("  ")).into_owned()
}

#[derive(Deserialize)]
pub(crate) struct TriageForm {
    question: String,
    #[serde(default)]
    path: String,
}

/// Queues a command and waits (up to `wait`) until the host has answered.
async fn issue_and_wait(
    c: &Shared,
    host: &str,
    command: v1::CommandBody,
    wait: Duration,
) -> Result<v1::CommandRecord, PageError> {
    let mut client = c.client();
    let mut last = client
        .issue_command(v1::IssueCommandRequest {
            host_id: host.to_owned(),
            command: Some(command),
            ..Default::default()
        })
        .await?
        .into_inner();
    let deadline = tokio::time::Instant::now() + wait;
    while !finished(&last.state) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(found) = client
            .list_commands(v1::ListCommandsRequest {
                host_id: host.to_owned(),
                command_id: last.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .commands
            .into_iter()
            .next()
        {
            last = found;
        }
    }
    Ok(last)
}

fn finished(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "expired")
}

/// `POST /hosts/{id}/triage`: asks, waits up to a minute, and shows the answer as a table.
pub(crate) async fn triage(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<TriageForm>,
) -> Page {
    if !QUESTIONS.iter().any(|(q, _)| *q == form.question) {
        return Err(PageError::bad(format!(
            "unknown question {:?}",
            form.question
        )));
    }
    let command = v1::CommandBody::triage(form.question.clone(), form.path.trim());
    let record = issue_and_wait(&c, &id, command, Duration::from_secs(60)).await?;
    let title = format!("{} on {id}", form.question);
    let body = if record.state != "succeeded" {
        html! {
            p.error #triage-error { "The host did not answer: " (record.state) " " (t(&record.result)) }
            p { a href=(format!("/commands/{}", record.id)) { "Command " (record.id) } }
        }
    } else {
        let answer: Value = serde_json::from_str(&record.result)
            .map_err(|e| PageError::bad(format!("the agent's answer is not JSON: {e}")))?;
        html! {
            p { a href=(format!("/hosts/{id}")) { "Back to " (id) } " · command " a href=(format!("/commands/{}", record.id)) { (record.id) } }
            (rows_table(&answer["rows"]))
            @if answer["truncated"] == true { p.note { "Truncated: " (answer["total"]) " rows in all." } }
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Hosts, &title, body))
}

/// A triage answer's rows, if `result` is one (`{"rows": [...], ...}`).
pub(super) fn triage_rows(result: &str) -> Option<Value> {
    if !result.trim_start().starts_with('{') {
        return None;
    }
    let answer: Value = serde_json::from_str(result).ok()?;
    answer.get("rows")?.is_array().then_some(answer)
}

/// A command's result in a table cell: a triage answer as its row count,
/// linked to the command's page where it is a table; anything else as text,
/// cut to `max` characters.
pub(super) fn result_cell(result: &str, command: Option<&str>, max: usize) -> Markup {
    match triage_rows(result) {
        Some(answer) => {
            let n = answer["rows"].as_array().map_or(0, Vec::len);
            let what = format!("{n} row{}", if n == 1 { "" } else { "s" });
            match command {
                Some(id) => html! { a.rows href=(format!("/commands/{id}")) { (what) " (table)" } },
                None => html! { (what) },
            }
        }
        None => html! { (t(&result.chars().take(max).collect::<String>())) },
    }
}

/// An array of JSON objects as a table, columns from every row.
fn rows_table(rows: &Value) -> Markup {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut keys: Vec<&str> = Vec::new();
    for r in rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
    }
    let columns = output::column_order(keys.into_iter());
    html! {
        table.grid #triage-rows {
            thead { tr { @for c in &columns { th { (c.replace('_', " ")) } } } }
            tbody {
                @for r in rows {
                    tr { @for c in &columns { td { (output::cell(c, &r[*c])) } } }
                }
            }
        }
        p.note { (rows.len()) " rows" }
    }
}

#[derive(Deserialize)]
pub(crate) struct CommandForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    files: String,
    #[serde(default)]
    seconds: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    interfaces: String,
    #[serde(default)]
    max_bytes: String,
}

/// `POST /hosts/{id}/capture`: seconds, filter, interfaces, size cap and
/// reason; then the command's page (the collector checks the bounds).
pub(crate) async fn capture(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Redirect, PageError> {
    let seconds = form
        .seconds
        .trim()
        .parse()
        .map_err(|_| PageError::bad("seconds: a whole number from 1 to 3600"))?;
    let max_bytes = match form.max_bytes.trim() {
        "" => 0,
        text => crate::args::parse_bytes(text).map_err(PageError::bad)?,
    };
    let capture = v1::CaptureCommand {
        seconds,
        filter: form.filter.trim().to_owned(),
        interfaces: form
            .interfaces
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect(),
        max_bytes,
        ..Default::default()
    };
    queue(
        &c,
        id,
        v1::command_body::Kind::Capture(capture).into(),
        &form,
    )
    .await
}

/// `POST /hosts/{id}/isolate`: reason, and the host id typed to confirm; then
/// the command's page.
pub(crate) async fn isolate(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Redirect, PageError> {
    if let Err(back) = confirmed(&c, &id, &form, Refused::Isolate).await {
        return Ok(back);
    }
    queue(&c, id, v1::CommandBody::isolate(Vec::new(), false), &form).await
}

/// `POST /hosts/{id}/release`: as [`isolate`].
pub(crate) async fn release(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Redirect, PageError> {
    if let Err(back) = confirmed(&c, &id, &form, Refused::Release).await {
        return Ok(back);
    }
    queue(&c, id, v1::CommandBody::release(), &form).await
}

/// `POST /hosts/{id}/snapshot`: reason, and files one per line.
pub(crate) async fn snapshot(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<CommandForm>,
) -> Result<Redirect, PageError> {
    let files = form
        .files
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    queue(&c, id, v1::CommandBody::snapshot(files), &form).await
}

/// Why a response was refused for want of its host id typed to confirm it.
fn confirm_refusal(id: &str, what: Refused) -> String {
    format!(
        "to {} a host, type its id ({id}) in the confirmation box",
        what.verb()
    )
}

/// A response that changes the host's network needs its id typed again; a
/// wrong one is refused — back to the host's page, where the form says why
/// and keeps the reason typed — and the refusal is in the action log.
async fn confirmed(
    c: &Shared,
    id: &str,
    form: &CommandForm,
    what: Refused,
) -> Result<(), Redirect> {
    if form.confirm.trim() == id {
        return Ok(());
    }
    c.record_refusal(
        "POST",
        &format!("/hosts/{id}/{}", what.verb()),
        &format!(
            "{}; typed {:?}, reason {:?}",
            confirm_refusal(id, what),
            form.confirm,
            form.reason
        ),
    )
    .await;
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("refused", what.verb());
    q.append_pair("reason", &form.reason);
    let host: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    Err(Redirect::to(&format!(
        "/hosts/{host}?{}#response",
        q.finish()
    )))
}

/// Queues `command` for host `id` with the form's reason (required); then the
/// command's page.
async fn queue(
    c: &Shared,
    id: String,
    command: v1::CommandBody,
    form: &CommandForm,
) -> Result<Redirect, PageError> {
    if form.reason.trim().is_empty() {
        return Err(PageError::bad(format!("{} needs a reason", command.name())));
    }
    let record = c
        .client()
        .issue_command(v1::IssueCommandRequest {
            host_id: id,
            command: Some(command),
            reason: form.reason.trim().to_owned(),
            expires_in_secs: 0,
        })
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/commands/{}", record.id)))
}

fn commands_table(commands: &[v1::CommandRecord]) -> Markup {
    html! {
        table.grid.commands {
            thead { tr { th { "ID" } th { "Issued (UTC)" } th { "Host" } th { "Verb" } th { "State" } th { "Operator" } th { "Reason" } th { "Result" } } }
            tbody {
                @for x in commands.iter().rev() {
                    tr data-command=(x.id) {
                        td { a href=(format!("/commands/{}", x.id)) { (x.id) } }
                        td { (time(x.created_unix_ms)) }
                        td { a href=(format!("/hosts/{}", x.host_id)) { (t(&x.host_id)) } }
                        td { (t(&x.verb)) }
                        td { span class=(format!("badge st-{}", x.state)) { (x.state) } }
                        td { (t(&x.operator)) }
                        td { (t(&x.reason)) }
                        td.value { (result_cell(&x.result, Some(&x.id), 200)) }
                    }
                }
            }
        }
        @if commands.is_empty() { p.empty { "No commands." } }
    }
}

/// How many commands the queue page shows: the newest (a long history is
/// read through `bannin commands`).
const COMMANDS_SHOWN: u32 = 500;

/// `GET /commands`: the queue, every host, the newest [`COMMANDS_SHOWN`].
pub(crate) async fn commands(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let commands = c
        .client()
        .list_commands(v1::ListCommandsRequest {
            limit: COMMANDS_SHOWN,
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands;
    let title = if commands.len() == COMMANDS_SHOWN as usize {
        format!("Commands (the newest {COMMANDS_SHOWN}; `bannin commands` lists them all)")
    } else {
        "Commands".to_owned()
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Commands,
        &title,
        commands_table(&commands),
    ))
}

async fn find_command(c: &Shared, id: &str) -> Result<v1::CommandRecord, PageError> {
    c.client()
        .list_commands(v1::ListCommandsRequest {
            host_id: String::new(),
            command_id: id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .commands
        .into_iter()
        .next()
        .ok_or_else(|| PageError {
            status: StatusCode::NOT_FOUND,
            message: format!("no command {id}"),
        })
}

/// `GET /commands/{id}`: one command; the script follows its state until it finishes.
pub(crate) async fn command_page(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let x = find_command(&c, &id).await?;
    let done = finished(&x.state);
    let body = html! {
        (facts([
            ("Host", html! { a href=(format!("/hosts/{}", x.host_id)) { (t(&x.host_id)) } }),
            ("Verb", html! { (t(&x.verb)) }),
            ("State", html! { span #command-state data-command=(x.id) data-finished=(done) class=(format!("badge st-{}", x.state)) { (x.state) } }),
            ("Operator", html! { (t(&x.operator)) }),
            ("Reason", html! { (t(&x.reason)) }),
            ("Arguments", html! { (arguments_text(x.command.as_ref())) }),
            ("Issued", time(x.created_unix_ms)),
            ("Delivered", time(x.delivered_unix_ms)),
            ("Finished", time(x.finished_unix_ms)),
            ("Expires", time(x.expires_unix_ms)),
        ]))
        @if !done { p.note #command-progress aria-live="polite" { "Waiting for " (t(&x.host_id)) "… this page follows the command until the host answers." } }
        h2 { "Result" }
        @match triage_rows(&x.result) {
            Some(answer) => {
                (rows_table(&answer["rows"]))
                @if answer["truncated"] == true { p.note { "Truncated: " (answer["total"]) " rows in all." } }
            }
            None => pre #command-result { (lines(&x.result)) }
        }
        @if is_evidence(&x) && x.state == "succeeded" { p { a href="/evidence" { "The " (x.verb) " is in Evidence" } } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Commands,
        &format!("Command {id}"),
        body,
    ))
}

/// `GET /api/commands/{id}`: the command as JSON (what the page's script polls).
pub(crate) async fn command_json(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let x = find_command(&c, &id).await?;
    Ok(axum::Json(output::command_json(&x)).into_response())
}

/// Whether the command collects evidence (a snapshot, a capture).
fn is_evidence(x: &v1::CommandRecord) -> bool {
    matches!(
        x.command.as_ref().and_then(|c| c.kind.as_ref()),
        Some(v1::command_body::Kind::Snapshot(_) | v1::command_body::Kind::Capture(_))
    )
}

/// A command's arguments as `name: value` lines (lists joined with commas),
/// from its JSON form.
fn arguments_text(command: Option<&v1::CommandBody>) -> String {
    let json = command.map(output::command_body_json).unwrap_or_default();
    let Some(fields) = json
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_object)
    else {
        return String::new();
    };
    fields
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                Value::String(s) if s.is_empty() => return None,
                Value::String(s) => s.clone(),
                Value::Array(items) if items.is_empty() => return None,
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", "),
                Value::Bool(false) => return None,
                other => other.to_string(),
            };
            Some(format!("{name}: {text}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
