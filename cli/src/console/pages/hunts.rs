//! Hunts: the list and the start form, one hunt with its live progress, its
//! hosts and its hits (sortable, filterable, as CSV), and its stop.

use super::*;

/// The questions the start form offers: (value, label, what the value is).
const QUESTIONS: [(&str, &str, &str); 11] = [
    ("file_hash", "Files by SHA-256", "SHA-256"),
    (
        "file_name",
        "Files by name (glob)",
        "glob, e.g. .x* or *.so",
    ),
    (
        "process_exe",
        "Processes by executable (glob)",
        "glob, e.g. /dev/shm/*",
    ),
    (
        "process_name",
        "Processes by name (glob)",
        "glob, e.g. kworker*",
    ),
    ("process_cmdline", "Processes by command line", "substring"),
    (
        "process_sha256",
        "Processes by executable SHA-256",
        "SHA-256",
    ),
    (
        "connection_remote",
        "Connections to an address or network",
        "a.b.c.d or a.b.c.d/n",
    ),
    ("connection_port", "Connections to a port", "port"),
    ("listener", "Listeners on a port", "port"),
    ("account", "An account by name", "account name"),
    ("yara", "Files matching YARA rules (rules below)", "—"),
];

fn split(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `GET /hunts`.
pub(crate) async fn hunts(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let hunts = c
        .client()
        .list_hunts(v1::ListHuntsRequest {})
        .await?
        .into_inner()
        .hunts;
    let body = html! {
        table.grid #hunts {
            thead { tr { th { "ID" } th { "Started (UTC)" } th { "By" } th { "Question" } th { "State" } th { "Progress" } } }
            tbody {
                @for h in hunts.iter().rev() {
                    tr {
                        td { a href=(format!("/hunts/{}", h.id)) { (h.id) } }
                        td { (time(h.created_unix_ms)) }
                        td { (t(&h.operator)) }
                        td { a href=(format!("/hunts/{}", h.id)) { (t(&h.description)) } }
                        td { (h.state) }
                        td { (output::hunt_progress(h)) }
                    }
                }
            }
        }
        @if hunts.is_empty() { p.empty { "No hunts yet." } }
        @if c.operator.role >= Role::Responder {
            h2 { "Start a hunt" }
            p { "Asks every selected host now, and every selected host that connects before the hunt expires." }
            form #new-hunt method="post" action="/hunts" {
                (csrf_field(&s.csrf))
                label { "Question "
                    select name="question" {
                        @for (value, label, _) in QUESTIONS { option value=(value) { (label) } }
                    }
                }
                label { "Value " input type="text" name="value" size="40" placeholder="SHA-256, glob, address, port or name"; }
                label { "YARA rules (for the YARA question; compiled by the collector before the hunt starts) " textarea name="rules" rows="6" cols="70" placeholder="rule webshell { strings: $a = \"eval(base64_decode\" condition: $a }" {} }
                label { "Roots (files) " input type="text" name="roots" size="30" placeholder="/tmp, /var/tmp (default /)"; }
                label { "Labels " input type="text" name="labels" size="20" placeholder="role=web"; }
                label { "Hosts " input type="text" name="hosts" size="20" placeholder="all"; }
                label { "Severity "
                    select name="severity" {
                        @for sev in ["low", "medium", "high", "critical"] {
                            @if sev == "medium" { option value=(sev) selected { (sev) } } @else { option value=(sev) { (sev) } }
                        }
                    }
                }
                label { "Reason " input type="text" name="reason" required size="40"; }
                button type="submit" { "Start hunt" }
            }
        }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Hunts, "Hunts", body))
}

#[derive(Deserialize)]
pub(crate) struct StartForm {
    question: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    rules: String,
    #[serde(default)]
    roots: String,
    #[serde(default)]
    labels: String,
    #[serde(default)]
    hosts: String,
    #[serde(default)]
    severity: String,
    reason: String,
}

fn question(form: &StartForm) -> Result<v1::HuntQuestion, PageError> {
    use v1::hunt_question::Kind;
    let value = form.value.trim().to_owned();
    let port = || {
        value
            .parse::<u16>()
            .map(u32::from)
            .map_err(|_| PageError::bad(format!("{value:?} is not a port")))
    };
    let roots = split(&form.roots);
    let kind = match form.question.as_str() {
        "file_hash" => Kind::FileHash(v1::FileHashQuestion {
            sha256: value.to_ascii_lowercase(),
            roots,
            ..Default::default()
        }),
        "file_name" => Kind::FileName(v1::FileNameQuestion {
            pattern: value,
            roots,
            ..Default::default()
        }),
        "process_exe" => Kind::Process(v1::ProcessQuestion {
            exe: value,
            ..Default::default()
        }),
        "process_name" => Kind::Process(v1::ProcessQuestion {
            name: value,
            ..Default::default()
        }),
        "process_cmdline" => Kind::Process(v1::ProcessQuestion {
            cmdline: value,
            ..Default::default()
        }),
        "process_sha256" => Kind::Process(v1::ProcessQuestion {
            sha256: value.to_ascii_lowercase(),
            ..Default::default()
        }),
        "connection_remote" => Kind::Connection(v1::ConnectionQuestion {
            remote: value,
            port: 0,
        }),
        "connection_port" => Kind::Connection(v1::ConnectionQuestion {
            remote: String::new(),
            port: port()?,
        }),
        "listener" => Kind::Listener(v1::ListenerQuestion { port: port()? }),
        "account" => Kind::Account(v1::AccountQuestion { name: value }),
        "yara" => Kind::Yara(v1::YaraQuestion {
            rules: form.rules.clone(),
            roots,
            ..Default::default()
        }),
        other => return Err(PageError::bad(format!("unknown question {other:?}"))),
    };
    let question = v1::HuntQuestion { kind: Some(kind) };
    question
        .check()
        .map_err(|e| PageError::bad(e.to_string()))?;
    Ok(question)
}

/// `POST /hunts`.
pub(crate) async fn start_hunt(
    State(c): State<Shared>,
    Form(form): Form<StartForm>,
) -> Result<Redirect, PageError> {
    let question = question(&form)?;
    let mut labels = BTreeMap::new();
    for assignment in split(&form.labels) {
        let (k, v) = bannin_proto::labels::parse_assignment(&assignment).map_err(PageError::bad)?;
        labels.insert(k, v);
    }
    let hunt = c
        .client()
        .start_hunt(v1::StartHuntRequest {
            question: Some(question),
            labels,
            hosts: split(&form.hosts),
            severity: form.severity,
            reason: form.reason,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(Redirect::to(&format!("/hunts/{}", hunt.id)))
}

async fn detail(c: &Shared, id: &str) -> Result<v1::HuntDetail, PageError> {
    Ok(c.client()
        .show_hunt(v1::ShowHuntRequest { id: id.to_owned() })
        .await?
        .into_inner())
}

/// The hits as rows, each with its host.
fn hit_rows(d: &v1::HuntDetail) -> Vec<Value> {
    d.hits
        .iter()
        .map(|hit| {
            let mut row = serde_json::from_str::<Value>(&hit.row)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({ "row": hit.row }));
            row["host_id"] = Value::String(hit.host_id.clone());
            row
        })
        .collect()
}

/// `GET /hunts/{id}`.
pub(crate) async fn hunt(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let d = detail(&c, &id).await?;
    let h = d.hunt.clone().unwrap_or_default();
    let rows = hit_rows(&d);
    let mut keys = std::collections::BTreeSet::new();
    for r in &rows {
        if let Some(o) = r.as_object() {
            keys.extend(o.keys().map(String::as_str));
        }
    }
    let columns = output::column_order(keys.into_iter());
    let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let body = html! {
        (facts([
            ("Question", html! { span #hunt-question { (t(&h.description)) } }),
            ("State", html! { span #hunt-state { (h.state) } }),
            ("Progress", html! {
                span #hunt-progress data-hunt=(h.id) data-running=(h.state == "running") data-answered=(h.answered) { (output::hunt_progress(&h)) }
            }),
            ("Selects", html! {
                @if labels.is_empty() && h.hosts.is_empty() { "every host" }
                @if !labels.is_empty() { "labels " (t(&labels.join(", "))) " " }
                @if !h.hosts.is_empty() { "hosts " (t(&h.hosts.join(", "))) }
            }),
            ("Started", html! { (time(h.created_unix_ms)) " by " (t(&h.operator)) " — " (t(&h.reason)) }),
            ("Expires", time(h.expires_unix_ms)),
            ("Stopped", html! { (time(h.stopped_unix_ms)) @if !h.stopped_by.is_empty() { " by " (t(&h.stopped_by)) } }),
        ]))
        @if c.operator.role >= Role::Responder && h.state == "running" {
            form #stop-hunt method="post" action=(format!("/hunts/{}/stop", h.id)) {
                (csrf_field(&s.csrf))
                label { "Reason " input type="text" name="reason" required size="40"; }
                button type="submit" { "Stop hunt" }
            }
        }
        h2 { "Hosts" }
        table.grid.sortable #hunt-hosts {
            thead { tr { th { "Host" } th { "State" } th { "Hits" } th { "Cut" } th { "Online" } th { "Answered (UTC)" } th { "Files" } th { "Bytes" } th { "CPU ms" } th { "Detail" } } }
            tbody {
                @for x in &d.hosts {
                    tr {
                        td { a href=(format!("/hosts/{}", x.host_id)) { (x.host_id) } }
                        td { (x.state) }
                        td.num { (x.hits) }
                        td.num { (x.cut) }
                        td { @if x.online { "yes" } }
                        td { (time(x.answered_unix_ms)) }
                        td.num { (x.files) }
                        td.num { (view::size(x.bytes)) }
                        td.num { (x.cpu_ms) }
                        td { (t(&x.detail)) }
                    }
                }
            }
        }
        h2 { "Hits" }
        p {
            label { "Filter " input #hunt-filter type="search" data-filter="hunt-hits" size="30"; }
            " · " a #hunt-csv href=(format!("/hunts/{}/results.csv", h.id)) download { "CSV" }
        }
        table.grid.sortable #hunt-hits {
            thead { tr { @for col in &columns { th { (col.replace('_', " ").to_uppercase()) } } } }
            tbody {
                @for r in &rows {
                    tr { @for col in &columns { td { (output::cell(col, &r[*col])) } } }
                }
            }
        }
        @if rows.is_empty() { p.empty { "No hits yet." } }
    };
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Hunts,
        &format!("Hunt {}", h.id),
        body,
    ))
}

/// `GET /api/hunts/{id}`: the hunt's counts, for the live progress line.
pub(crate) async fn hunt_json(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let d = detail(&c, &id).await?;
    let h = d.hunt.unwrap_or_default();
    Ok(axum::Json(json!({
        "id": h.id,
        "state": h.state,
        "answered": h.answered,
        "progress": output::hunt_progress(&h),
    }))
    .into_response())
}

/// `GET /hunts/{id}/results.csv`.
pub(crate) async fn hunt_csv(
    State(c): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let d = detail(&c, &id).await?;
    let name = d.hunt.as_ref().map_or("hunt".to_owned(), |h| h.id.clone());
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-results.csv\""),
            ),
        ],
        output::csv(&hit_rows(&d)),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct StopForm {
    reason: String,
}

/// `POST /hunts/{id}/stop`.
pub(crate) async fn stop_hunt(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<StopForm>,
) -> Result<Redirect, PageError> {
    c.client()
        .stop_hunt(v1::StopHuntRequest {
            id: id.clone(),
            reason: form.reason,
        })
        .await?;
    Ok(Redirect::to(&format!("/hunts/{id}")))
}
