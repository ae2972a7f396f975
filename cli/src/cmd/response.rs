//! `bannin` commands sent to hosts: isolate, release, relearn, ping, triage, snapshot; and the command queue.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn isolate(
    client: &mut Client,
    json: bool,
    host: String,
    reason: String,
    allow: Vec<String>,
    yes_isolate_this_machine: bool,
    send: SendOptions,
) -> anyhow::Result<ExitCode> {
    let command = v1::CommandBody::isolate(allow, yes_isolate_this_machine);
    send_command(client, &host, command, reason, send, json).await
}

pub(crate) async fn release(
    client: &mut Client,
    json: bool,
    host: String,
    reason: String,
    send: SendOptions,
) -> anyhow::Result<ExitCode> {
    send_command(
        client,
        &host,
        v1::CommandBody::release(),
        reason,
        send,
        json,
    )
    .await
}

pub(crate) async fn relearn(
    client: &mut Client,
    json: bool,
    host: String,
    sensor: Option<String>,
    reason: String,
    send: SendOptions,
) -> anyhow::Result<ExitCode> {
    let command = v1::CommandBody::relearn(sensor.unwrap_or_default());
    send_command(client, &host, command, reason, send, json).await
}

pub(crate) async fn ping(
    client: &mut Client,
    json: bool,
    host: String,
    send: SendOptions,
) -> anyhow::Result<ExitCode> {
    let command = v1::CommandBody::ping();
    send_command(client, &host, command, String::new(), send, json).await
}

pub(crate) async fn triage(
    client: &mut Client,
    json: bool,
    host: String,
    question: String,
    path: Option<String>,
    send: SendOptions,
) -> anyhow::Result<ExitCode> {
    let command = v1::CommandBody::triage(question.clone(), path.unwrap_or_default());
    let record = issue_and_wait(client, &host, command, String::new(), &send, true).await?;
    if record.state != "succeeded" {
        anyhow::bail!(
            "triage {question} on {host}: {} {}",
            record.state,
            record.result
        );
    }
    let answer: serde_json::Value =
        serde_json::from_str(&record.result).context("the agent's answer is not JSON")?;
    if json {
        print_json(&answer)?;
    } else {
        output::print_rows(&answer["rows"]);
        if answer["truncated"] == true {
            eprintln!("(truncated: {} rows in all)", answer["total"]);
        }
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn snapshot(
    client: &mut Client,
    json: bool,
    host: String,
    files: Vec<String>,
    reason: String,
    mut send: SendOptions,
) -> anyhow::Result<ExitCode> {
    if send.wait_secs == 60 {
        send.wait_secs = 600;
    }
    let command = v1::CommandBody::snapshot(files);
    send_command(client, &host, command, reason, send, json).await
}

pub(crate) async fn capture(
    client: &mut Client,
    json: bool,
    host: String,
    capture: v1::CaptureCommand,
    reason: String,
    mut send: SendOptions,
) -> anyhow::Result<ExitCode> {
    if send.wait_secs == 60 {
        // The capture's own time, then sealing and streaming it.
        send.wait_secs = u64::from(capture.seconds) + 300;
    }
    if !json && !send.no_wait {
        eprintln!(
            "capture {host}: {} s of packets{}; the evidence follows",
            capture.seconds,
            if capture.filter.is_empty() {
                String::new()
            } else {
                format!(" matching {:?}", capture.filter)
            }
        );
    }
    let command = v1::command_body::Kind::Capture(capture).into();
    send_command(client, &host, command, reason, send, json).await
}

pub(crate) async fn commands(
    client: &mut Client,
    json: bool,
    host: Option<String>,
    limit: u32,
) -> anyhow::Result<ExitCode> {
    // One more than asked (0: all): whether older commands were left out.
    let mut commands = client
        .list_commands(v1::ListCommandsRequest {
            host_id: host.unwrap_or_default(),
            limit: if limit == 0 {
                0
            } else {
                limit.saturating_add(1)
            },
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("listing commands")?
        .into_inner()
        .commands;
    if limit != 0 && commands.len() > limit as usize {
        // Oldest first: the extra one is the oldest.
        commands.remove(0);
        // On stderr: stdout stays the list (a JSON array for scripts).
        let noun = if limit == 1 { "command" } else { "commands" };
        eprintln!(
            "showing the newest {limit} {noun}; older ones exist (a larger --limit, or none for all)"
        );
    }
    if json {
        print_json(
            &commands
                .iter()
                .map(output::command_json)
                .collect::<Vec<_>>(),
        )?;
    } else {
        crate::say!(
            "{:<7} {:<19} {:<20} {:<8} {:<10} {:<12} RESULT",
            "ID",
            "ISSUED (UTC)",
            "HOST",
            "VERB",
            "STATE",
            "OPERATOR"
        );
        for c in &commands {
            crate::say!(
                "{:<7} {:<19} {:<20} {:<8} {:<10} {:<12} {}",
                c.id,
                short_time(c.created_unix_ms),
                c.host_id,
                c.verb,
                c.state,
                c.operator,
                c.result
            );
        }
    }

    Ok(ExitCode::SUCCESS)
}

/// Queues a command and, unless told not to, waits for the host's answer;
/// prints the outcome and exits non-zero when it failed or expired.
async fn send_command(
    client: &mut Client,
    host: &str,
    command: v1::CommandBody,
    reason: String,
    send: SendOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let last = issue_and_wait(client, host, command, reason, &send, json).await?;
    if json {
        print_json(&output::command_json(&last))?;
    } else {
        crate::say!(
            "{} {} {}: {} {}",
            last.id,
            last.verb,
            last.host_id,
            last.state,
            last.result
        );
    }
    Ok(match last.state.as_str() {
        "failed" | "expired" => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// Queues a command and, unless `send.no_wait`, polls until it is finished or the wait runs out.
async fn issue_and_wait(
    client: &mut Client,
    host: &str,
    command: v1::CommandBody,
    reason: String,
    send: &SendOptions,
    quiet: bool,
) -> anyhow::Result<v1::CommandRecord> {
    let verb = command.name();
    let queued = client
        .issue_command(v1::IssueCommandRequest {
            host_id: host.to_owned(),
            command: Some(command),
            reason,
            expires_in_secs: send.expires_secs,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("sending {verb} to {host}"))?
        .into_inner();
    if !quiet {
        eprintln!("{verb} {host}: queued as {} ({})", queued.id, queued.state);
    }
    let mut last = queued;
    if send.no_wait {
        return Ok(last);
    }
    let started = std::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(send.wait_secs);
    let mut told_offline = false;
    while !matches!(last.state.as_str(), "succeeded" | "failed" | "expired")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let found = client
            .list_commands(v1::ListCommandsRequest {
                host_id: host.to_owned(),
                command_id: last.id.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner()
            .commands
            .into_iter()
            .next();
        if let Some(c) = found {
            if c.state == "pending"
                && !told_offline
                && !quiet
                && started.elapsed() > std::time::Duration::from_secs(2)
            {
                eprintln!(
                    "{host} has not picked it up yet; it is delivered when the host connects (expires {})",
                    short_time(c.expires_unix_ms)
                );
                told_offline = true;
            }
            last = c;
        }
    }
    Ok(last)
}
