//! One file per command family; [`run`] dispatches a parsed command line.

mod actions;
mod cluster;
mod config;
mod events;
mod evidence;
mod findings;
mod hosts;
mod hunts;
mod incidents;
mod operators;
mod response;
mod sigma;
mod tokens;

use std::process::ExitCode;

use bannin_proto::v1;

use crate::args::{Cli, Command, HostAction, RulesAction};
use crate::client::{OperatorConfig, config_path};

/// The operator API client every command uses.
pub(crate) type Client = v1::operator_client::OperatorClient<tonic::transport::Channel>;

/// Runs one command line: `up` in-process, everything else against the collector.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Up(args) = cli.command {
        return crate::up::run(args).await;
    }
    if let Command::Sigma { action } = cli.command {
        bannin_proto::process::init_logging(false, "warn");
        return sigma::run(action, cli.json);
    }
    bannin_proto::process::init_logging(false, "warn");
    let config = OperatorConfig::load(&config_path(cli.config))?;
    let mut client = config.connect().await?;
    let json = cli.json;
    match cli.command {
        Command::Up(_) | Command::Sigma { .. } => unreachable!("handled above"),
        Command::Console(args) => crate::console::run(args, client, json).await,
        Command::Hosts => hosts::list(&mut client, json).await,
        Command::Findings {
            follow,
            since,
            limit,
            all,
            sort,
            group,
            filter,
        } => {
            let limit = if all { None } else { Some(limit) };
            let filter = findings::filter(&filter)?;
            if let Some(by) = group {
                return findings::group(&mut client, json, &by, filter).await;
            }
            if let Some(order) = sort {
                return findings::sorted(&mut client, json, &order, limit, filter).await;
            }
            findings::list(&mut client, json, follow, since, limit, filter).await
        }
        Command::Finding { action } => findings::finding(&mut client, json, action).await,
        Command::Isolate {
            host,
            reason,
            allow,
            yes_isolate_this_machine,
            send,
        } => {
            response::isolate(
                &mut client,
                json,
                host,
                reason,
                allow,
                yes_isolate_this_machine,
                send,
            )
            .await
        }
        Command::Release { host, reason, send } => {
            response::release(&mut client, json, host, reason, send).await
        }
        Command::Sinks => config::sinks(&mut client, json).await,
        Command::Cluster => cluster::status(&mut client, json).await,
        Command::Rules { action: None } => config::rules(&mut client, json).await,
        Command::Rules {
            action: Some(RulesAction::Reload),
        } => config::reload_rules(&mut client, json).await,
        Command::Relearn {
            host,
            sensor,
            reason,
            send,
        } => response::relearn(&mut client, json, host, sensor, reason, send).await,
        Command::Ping { host, send } => response::ping(&mut client, json, host, send).await,
        Command::Triage {
            host,
            question,
            path,
            send,
        } => response::triage(&mut client, json, host, question, path, send).await,
        Command::Snapshot {
            host,
            files,
            reason,
            send,
        } => response::snapshot(&mut client, json, host, files, reason, send).await,
        Command::Capture {
            host,
            seconds,
            filter,
            interfaces,
            max_bytes,
            reason,
            send,
        } => {
            let capture = v1::CaptureCommand {
                seconds,
                filter,
                interfaces,
                max_bytes: max_bytes.unwrap_or(0),
                ..Default::default()
            };
            response::capture(&mut client, json, host, capture, reason, send).await
        }
        Command::Actions {
            verify: Some(_), ..
        } => actions::verify(&mut client, json).await,
        Command::Actions {
            verify: None,
            host,
            incident,
            after,
            limit,
        } => actions::list(&mut client, json, host, incident, after, limit).await,
        Command::Operator { action } => operators::operator(&mut client, json, action).await,
        Command::Incident { action } => incidents::incident(&mut client, json, action).await,
        Command::Evidence { action } => evidence::evidence(&mut client, action, json).await,
        Command::Host {
            action: HostAction::Label { host, set, remove },
        } => hosts::label(&mut client, json, host, set, remove).await,
        Command::Host {
            action:
                HostAction::Revoke {
                    host,
                    reason,
                    certs,
                },
        } => hosts::revoke(&mut client, json, host, reason, certs).await,
        Command::Token { action } => tokens::token(&mut client, json, action).await,
        Command::Hunt { action } => hunts::hunt(&mut client, json, action).await,
        Command::Commands { host, limit } => {
            response::commands(&mut client, json, host, limit.unwrap_or(0)).await
        }
        Command::Events {
            host,
            since,
            kind,
            limit,
        } => events::events(&mut client, json, host, since, kind, limit).await,
        Command::Search(args) => events::search(&mut client, json, args).await,
    }
}
