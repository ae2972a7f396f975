//! `bannin` what the collector has in force: rules and sinks.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::cmd::Client;
use crate::output::{self, print_json};

pub(crate) async fn sinks(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let r = client
        .list_sinks(v1::ListSinksRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("reading the sinks")?
        .into_inner();
    if json {
        print_json(&output::sinks_json(&r))?;
    } else {
        output::print_sinks(&r);
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn rules(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let r = client
        .list_rules(v1::ListRulesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("reading the rules")?
        .into_inner();
    if json {
        print_json(&output::rules_json(&r))?;
    } else {
        output::print_rules(&r);
    }

    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn reload_rules(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let r = client
        .reload_rules(v1::ReloadRulesRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("reloading the Sigma rules")?
        .into_inner();
    if json {
        print_json(&serde_json::json!({
            "loaded": r.loaded,
            "refused": r.refused,
            "files": r.files,
        }))?;
    } else {
        println!(
            "Sigma rules reloaded: {} in force, {} refused, from {} files{}",
            r.loaded,
            r.refused,
            r.files,
            if r.refused > 0 {
                " (`bannin rules` says why)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
