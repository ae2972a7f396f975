//! `bannin hunt` start, list, show, results, stop.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bannin_proto::v1;
use bannin_proto::v1::hunt_question::Kind;
use serde_json::{Value, json};

use crate::args::{HuntAction, HuntOptions, HuntQuestionArg, HuntWalk};
use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn hunt(
    client: &mut Client,
    json: bool,
    action: HuntAction,
) -> anyhow::Result<ExitCode> {
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    match action {
        HuntAction::Start { question, options } => start(client, json, question, *options).await,
        HuntAction::List => {
            let hunts = client
                .list_hunts(v1::ListHuntsRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .hunts;
            if json {
                print_json(&hunts.iter().map(hunt_json).collect::<Vec<_>>())?;
            } else if hunts.is_empty() {
                eprintln!("No hunts. Start one with `bannin hunt start --help`.");
            } else {
                for h in &hunts {
                    crate::say!(
                        "{:<6} {:<8} {:<19} {:<10} {}  [{}]",
                        h.id,
                        h.state,
                        short_time(h.created_unix_ms),
                        h.operator,
                        h.description,
                        output::hunt_progress(h)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HuntAction::Show { id } => {
            let detail = show(client, &id).await?;
            let Some(h) = &detail.hunt else {
                anyhow::bail!("the collector sent no hunt");
            };
            if json {
                let mut v = hunt_json(h);
                v["hosts"] = detail.hosts.iter().map(host_json).collect();
                print_json(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            crate::say!("{} {} — {}", h.id, h.state, h.description);
            crate::say!(
                "started {} by {} ({}); expires {}",
                short_time(h.created_unix_ms),
                h.operator,
                h.reason,
                short_time(h.expires_unix_ms)
            );
            if h.stopped_unix_ms != 0 {
                crate::say!(
                    "stopped {} by {}",
                    short_time(h.stopped_unix_ms),
                    h.stopped_by
                );
            }
            if !h.labels.is_empty() || !h.hosts.is_empty() {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                crate::say!(
                    "selects: labels [{}] hosts [{}]",
                    labels.join(", "),
                    h.hosts.join(", ")
                );
            }
            crate::say!("{}", output::hunt_progress(h));
            let rows: Value = detail.hosts.iter().map(host_json).collect();
            output::print_rows(&rows);
            Ok(ExitCode::SUCCESS)
        }
        HuntAction::Results { id, csv } => {
            let detail = show(client, &id).await?;
            let rows: Vec<Value> = detail
                .hits
                .iter()
                .map(|hit| {
                    let mut row = serde_json::from_str::<Value>(&hit.row)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({ "row": hit.row }));
                    row["host_id"] = Value::String(hit.host_id.clone());
                    row
                })
                .collect();
            if json {
                print_json(&rows)?;
            } else if csv {
                print!("{}", output::csv(&rows));
            } else {
                output::print_rows(&Value::Array(rows));
                let cut: u64 = detail.hosts.iter().map(|h| h.cut).sum();
                if cut > 0 {
                    eprintln!(
                        "{cut} more hit(s) were counted but not kept (the per-host cap, --max-hits)"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HuntAction::Stop { id, reason } => {
            let h = client
                .stop_hunt(v1::StopHuntRequest { id, reason })
                .await
                .map_err(status)?
                .into_inner();
            if json {
                print_json(&hunt_json(&h))?;
            } else {
                crate::say!("{} {}: {}", h.id, h.state, output::hunt_progress(&h));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn show(client: &mut Client, id: &str) -> anyhow::Result<v1::HuntDetail> {
    Ok(client
        .show_hunt(v1::ShowHuntRequest { id: id.to_owned() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner())
}

fn question(arg: HuntQuestionArg) -> anyhow::Result<v1::HuntQuestion> {
    let walk = |w: HuntWalk| (w.roots, w.depth.unwrap_or(0));
    let kind = match arg {
        HuntQuestionArg::FileHash {
            sha256,
            walk: w,
            max_size,
        } => {
            let (roots, max_depth) = walk(w);
            Kind::FileHash(v1::FileHashQuestion {
                sha256: sha256.to_ascii_lowercase(),
                roots,
                max_depth,
                max_size: max_size.unwrap_or(0),
            })
        }
        HuntQuestionArg::Yara {
            rules,
            walk: w,
            max_size,
        } => {
            let (roots, max_depth) = walk(w);
            let size = std::fs::metadata(&rules)
                .with_context(|| format!("reading {}", rules.display()))?
                .len();
            if size > bannin_proto::hunts::MAX_RULES_BYTES as u64 {
                anyhow::bail!("{}: {size} bytes, over 1 MiB", rules.display());
            }
            Kind::Yara(v1::YaraQuestion {
                rules: std::fs::read_to_string(&rules)
                    .with_context(|| format!("reading {}", rules.display()))?,
                roots,
                max_depth,
                max_size: max_size.unwrap_or(0),
            })
        }
        HuntQuestionArg::FileName { pattern, walk: w } => {
            let (roots, max_depth) = walk(w);
            Kind::FileName(v1::FileNameQuestion {
                pattern,
                roots,
                max_depth,
            })
        }
        HuntQuestionArg::Process {
            name,
            exe,
            cmdline,
            sha256,
        } => Kind::Process(v1::ProcessQuestion {
            name: name.unwrap_or_default(),
            exe: exe.unwrap_or_default(),
            cmdline: cmdline.unwrap_or_default(),
            sha256: sha256.unwrap_or_default().to_ascii_lowercase(),
        }),
        HuntQuestionArg::Connection { remote, port } => Kind::Connection(v1::ConnectionQuestion {
            remote: remote.unwrap_or_default(),
            port: port.map_or(0, u32::from),
        }),
        HuntQuestionArg::Listener { port } => Kind::Listener(v1::ListenerQuestion {
            port: u32::from(port),
        }),
        HuntQuestionArg::Account { name } => Kind::Account(v1::AccountQuestion { name }),
        HuntQuestionArg::Triage { question, path } => Kind::Triage(v1::TriageCommand {
            question,
            path: path.unwrap_or_default(),
        }),
    };
    Ok(v1::HuntQuestion { kind: Some(kind) })
}

async fn start(
    client: &mut Client,
    json: bool,
    arg: HuntQuestionArg,
    o: HuntOptions,
) -> anyhow::Result<ExitCode> {
    let Some(reason) = o.reason.filter(|r| !r.trim().is_empty()) else {
        anyhow::bail!(
            "a hunt needs a reason (--reason): it is recorded in the action log and on every finding"
        );
    };
    let question = question(arg)?;
    // Refused here with the same words the collector would use.
    question.check()?;
    let request = v1::StartHuntRequest {
        question: Some(question),
        labels: o.labels.into_iter().collect(),
        hosts: o.hosts,
        expires_in_secs: u32::try_from(o.expires).unwrap_or(u32::MAX),
        severity: o.severity,
        reason,
        incident: o.incident.unwrap_or(0),
        max_cpu_ms: o.max_cpu.map_or(0, |s| s.saturating_mul(1000)),
        max_read_bytes: o.max_read.unwrap_or(0),
        max_hits: o.max_hits.unwrap_or(0),
    };
    let hunt = client
        .start_hunt(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if o.no_wait || json {
        if json {
            print_json(&hunt_json(&hunt))?;
        } else {
            crate::say!(
                "{} started: {} ({})",
                hunt.id,
                hunt.description,
                output::hunt_progress(&hunt)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} started: {} — following (Ctrl-C stops following; the hunt runs on)",
        hunt.id, hunt.description
    );
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut current = hunt;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let line = output::hunt_progress(&current);
        if line != last {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        let online = current.hosts_selected.saturating_sub(current.offline);
        if current.state != "running" || (current.answered >= online && online > 0) {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Some(h) = show(client, &current.id).await?.hunt {
            current = h;
        }
    }
    if tty {
        eprintln!();
    }
    let waiting = current.hosts_selected.saturating_sub(current.answered);
    if waiting > 0 && current.state == "running" {
        eprintln!(
            "{waiting} host(s) have not answered; offline hosts answer when they connect, until {}",
            short_time(current.expires_unix_ms)
        );
    }
    eprintln!(
        "Hits: `bannin hunt results {}`; per host: `bannin hunt show {}`",
        current.id, current.id
    );
    Ok(ExitCode::SUCCESS)
}

fn hunt_json(h: &v1::Hunt) -> Value {
    json!({
        "id": h.id,
        "state": h.state,
        "question": h.description,
        "labels": h.labels,
        "hosts": h.hosts,
        "operator": h.operator,
        "reason": h.reason,
        "severity": h.severity,
        "created": bannin_proto::vocab::rfc3339(h.created_unix_ms),
        "expires": bannin_proto::vocab::rfc3339(h.expires_unix_ms),
        "stopped": bannin_proto::vocab::rfc3339(h.stopped_unix_ms),
        "stopped_by": h.stopped_by,
        "incident": h.incident,
        "hosts_selected": h.hosts_selected,
        "answered": h.answered,
        "with_hits": h.with_hits,
        "failed": h.failed,
        "offline": h.offline,
    })
}

fn host_json(h: &v1::HuntHost) -> Value {
    json!({
        "host_id": h.host_id,
        "state": h.state,
        "hits": h.hits,
        "cut": h.cut,
        "online": h.online,
        "answered": bannin_proto::vocab::rfc3339(h.answered_unix_ms),
        "files": h.files,
        "bytes": h.bytes,
        "cpu_ms": h.cpu_ms,
        "detail": h.detail,
    })
}
