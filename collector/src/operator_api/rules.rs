//! What is configured and in force: severity overrides, suppression, correlation, sinks.

use bannin_proto::v1;
use tonic::{Request, Response, Status};

use super::{OperatorService, caller};
use crate::correlate::Rule;

/// `ListRules`.
pub(super) async fn list_rules(
    svc: &OperatorService,
    request: Request<v1::ListRulesRequest>,
) -> Result<Response<v1::ListRulesResponse>, Status> {
    caller(&request)?;
    let now = bannin_proto::now_unix_ms();
    let stats = svc.ingest.rule_stats();
    let sigma = svc.ingest.sigma();
    let rules = &svc.rules;
    let suppressions = rules
        .suppress
        .iter()
        .map(|r| {
            let (hits, last) = stats.suppressed.get(&r.name).copied().unwrap_or((0, 0));
            v1::SuppressionRule {
                name: r.name.clone(),
                reason: r.reason.clone(),
                kind: r.kind.clone(),
                hosts: r.hosts.clone(),
                labels: r.labels.clone().into_iter().collect(),
                attributes: r
                    .attributes
                    .iter()
                    .map(|(k, re)| (k.clone(), re.as_str().to_owned()))
                    .collect(),
                expires_unix_ms: r.expires_unix_ms.unwrap_or(0),
                active: r.active(now),
                hits,
                last_hit_unix_ms: last,
            }
        })
        .collect();
    let c = &rules.correlation;
    let correlations = Rule::ALL
        .iter()
        .map(|&r| {
            let t = r.threshold(c);
            let (threshold, description) = match r {
                Rule::Spread => (
                    t.hosts,
                    format!(
                        "the same file hash, executable, remote address or new account on {} or more hosts",
                        t.hosts
                    ),
                ),
                Rule::AccountHosts => (
                    t.hosts,
                    format!("one account logging in on {} or more hosts", t.hosts),
                ),
                Rule::PasswordSpray => (
                    t.hosts,
                    format!(
                        "failed logins for one account or from one source on {} or more hosts",
                        t.hosts
                    ),
                ),
                Rule::LateralMovement => (
                    2,
                    format!(
                        "a session to a fleet host on a remote-admin port ({}) followed by a new account, listener, service or unknown binary there",
                        c.remote_admin_ports
                            .iter()
                            .map(u16::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Rule::FanIn => (
                    t.hosts,
                    format!(
                        "{} or more fleet hosts reaching one outside address, or one host receiving from {} or more new addresses",
                        t.hosts, c.fan_in_peers
                    ),
                ),
                Rule::MassSilence => (
                    t.hosts,
                    format!(
                        "{} or more hosts and at least {:.0} % of the fleet going silent",
                        t.hosts,
                        c.mass_silence_share * 100.0
                    ),
                ),
            };
            v1::CorrelationRule {
                name: r.name().to_owned(),
                kind: r.kind().to_owned(),
                threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
                window_secs: t.window.as_secs(),
                severity: t.severity.to_wire() as i32,
                raised: stats.correlation.raised.get(&r).copied().unwrap_or(0),
                description,
            }
        })
        .collect();
    Ok(Response::new(v1::ListRulesResponse {
        severity_overrides: rules
            .severity_overrides
            .iter()
            .map(|(k, v)| (k.clone(), v.name().to_owned()))
            .collect(),
        suppressions,
        correlation_enabled: c.enabled,
        correlations,
        correlation_keys: stats.correlation.keys as u64,
        correlation_shed: stats.correlation.shed,
        sigma_rules: sigma
            .rules
            .iter()
            .map(|r| {
                let (matches, last) = stats.sigma.get(&r.key).copied().unwrap_or((0, 0));
                v1::SigmaRule {
                    key: r.key.clone(),
                    id: r.id.clone().unwrap_or_default(),
                    title: r.title.clone(),
                    level: r.level.clone(),
                    severity: r.severity.to_wire() as i32,
                    status: r.status.clone(),
                    tags: r.tags.clone(),
                    falsepositives: r.falsepositives.clone(),
                    file: r.file.display().to_string(),
                    logsource: r.logsource.clone(),
                    correlation: r.kind == crate::sigma::RuleKind::Correlation,
                    generates: r.generates,
                    matches,
                    last_match_unix_ms: last,
                    disabled: sigma.disabled(&r.key).unwrap_or_default().to_owned(),
                }
            })
            .collect(),
        sigma_refused: sigma
            .refused
            .iter()
            .map(|r| v1::SigmaRefused {
                file: r.file.display().to_string(),
                title: r.title.clone(),
                id: r.id.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
        sigma_paths: rules
            .sigma_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        sigma_files: u32::try_from(sigma.files).unwrap_or(u32::MAX),
        sigma_loaded_unix_ms: sigma.loaded_unix_ms,
    }))
}

/// `ReloadRules`: the Sigma rules, loaded again from `[sigma] paths`.
pub(super) async fn reload_rules(
    svc: &OperatorService,
    request: Request<v1::ReloadRulesRequest>,
) -> Result<Response<v1::ReloadRulesResponse>, Status> {
    let name = caller(&request)?;
    let outcome = crate::reload_sigma(&svc.ingest, &svc.rules.sigma_paths).await;
    let result = match &outcome {
        Ok((loaded, refused, files)) => {
            format!("{loaded} rules loaded, {refused} refused, from {files} files")
        }
        Err(e) => format!("not reloaded (the rules in force stay): {e}"),
    };
    svc.store
        .append_action(&crate::model::Action {
            at_unix_ms: bannin_proto::now_unix_ms(),
            actor: name.to_string(),
            verb: "rules.reload".into(),
            target: "sigma".into(),
            reason: String::new(),
            result,
        })
        .map_err(|e| super::internal("writing the action log", &e))?;
    svc.flush().await?;
    match outcome {
        Ok((loaded, refused, files)) => Ok(Response::new(v1::ReloadRulesResponse {
            loaded: u32::try_from(loaded).unwrap_or(u32::MAX),
            refused: u32::try_from(refused).unwrap_or(u32::MAX),
            files: u32::try_from(files).unwrap_or(u32::MAX),
        })),
        Err(e) => Err(Status::failed_precondition(format!(
            "Sigma rules not reloaded; the rules in force stay: {e}"
        ))),
    }
}

/// `ListSinks`.
pub(super) async fn list_sinks(
    svc: &OperatorService,
    request: Request<v1::ListSinksRequest>,
) -> Result<Response<v1::ListSinksResponse>, Status> {
    caller(&request)?;
    let latest = *svc.ingest.latest_finding().borrow();
    let sinks = bannin_proto::lock(&svc.sinks)
        .values()
        .map(|s| v1::SinkStatus {
            name: s.name.clone(),
            target: s.target.clone(),
            cursor: s.cursor,
            latest: latest.max(s.latest),
            delivered: s.delivered,
            last_error: s.last_error.clone(),
            last_delivery_unix_ms: s.last_delivery_unix_ms,
            runner: s.runner.clone(),
        })
        .collect();
    Ok(Response::new(v1::ListSinksResponse { sinks }))
}
