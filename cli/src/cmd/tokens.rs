//! `bannin` enrollment tokens: create, list, revoke.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, print_json};

pub(crate) async fn token(
    client: &mut Client,
    json: bool,
    action: TokenAction,
) -> anyhow::Result<ExitCode> {
    let tokens = match action {
        TokenAction::Create {
            uses,
            expires,
            labels,
            note,
        } => {
            let created = client
                .create_token(v1::CreateTokenRequest {
                    uses,
                    expires_in_secs: expires,
                    labels: labels.into_iter().collect(),
                    note,
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .context("creating a token")?
                .into_inner();
            let token = created.token.unwrap_or_default();
            if json {
                let mut doc = output::token_json(&token);
                doc["secret"] = serde_json::Value::String(created.secret);
                print_json(&doc)?;
            } else {
                println!("{}", created.secret);
                eprintln!(
                    "token {}: {} use(s), expires {}; the line above is shown once: put it in a file (mode 0600) for `bannin-agent enroll --token-file`",
                    token.id,
                    token.uses,
                    output::rfc3339(token.expires_unix_ms)
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        TokenAction::List => {
            client
                .list_tokens(v1::ListTokensRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .context("listing tokens")?
                .into_inner()
                .tokens
        }
        TokenAction::Revoke { id } => vec![
            client
                .revoke_token(v1::RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
                .with_context(|| format!("revoking token {id}"))?
                .into_inner(),
        ],
    };
    if json {
        print_json(&tokens.iter().map(output::token_json).collect::<Vec<_>>())?;
    } else {
        crate::say!(
            "{:<6} {:<9} {:>9} {:<20} {:<28} HOSTS",
            "ID",
            "STATE",
            "USED",
            "EXPIRES",
            "LABELS"
        );
        for t in &tokens {
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            crate::say!(
                "{:<6} {:<9} {:>4}/{:<4} {:<20} {:<28} {}",
                t.id,
                t.state,
                t.used,
                t.uses,
                output::rfc3339(t.expires_unix_ms),
                labels.join(","),
                t.hosts.join(",")
            );
        }
    }

    Ok(ExitCode::SUCCESS)
}
