//! `bannin` operator add, list, set-role, disable.

use std::process::ExitCode;

use bannin_proto::v1;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn operator(
    client: &mut Client,
    json: bool,
    action: OperatorAction,
) -> anyhow::Result<ExitCode> {
    let records = match action {
        OperatorAction::List => client
            .list_operators(v1::ListOperatorsRequest {})
            .await
            .map(|r| r.into_inner().operators),
        OperatorAction::Add { name, role } => client
            .add_operator(v1::OperatorChange { name, role })
            .await
            .map(|r| vec![r.into_inner()]),
        OperatorAction::SetRole { name, role } => client
            .set_operator_role(v1::OperatorChange { name, role })
            .await
            .map(|r| vec![r.into_inner()]),
        OperatorAction::Disable { name } => client
            .disable_operator(v1::OperatorChange {
                name,
                role: String::new(),
            })
            .await
            .map(|r| vec![r.into_inner()]),
    }
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    if json {
        print_json(
            &records
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "name": o.name, "role": o.role, "enabled": o.enabled,
                        "created": output::rfc3339(o.created_unix_ms), "created_by": o.created_by,
                    })
                })
                .collect::<Vec<_>>(),
        )?;
    } else {
        for o in &records {
            crate::say!(
                "{:<20} {:<10} {:<9} added {} by {}",
                o.name,
                o.role,
                if o.enabled { "enabled" } else { "DISABLED" },
                short_time(o.created_unix_ms),
                o.created_by
            );
        }
    }

    Ok(ExitCode::SUCCESS)
}
