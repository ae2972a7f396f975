//! Operator roles: the whole matrix of role × verb, denials included, and the
//! denials in the action log.

use bannin_proto::v1::{self, operator_client::OperatorClient};
use bannin_tests::{CollectorProc, TestPki, free_port, operator_client};
use tonic::transport::Channel;

type Client = OperatorClient<Channel>;

/// Calls one verb; `Ok(())` unless the collector said PermissionDenied.
async fn call(c: &mut Client, verb: &str) -> Result<(), String> {
    let status = match verb {
        "hosts" => c.list_hosts(v1::ListHostsRequest {}).await.err(),
        "findings" => c
            .list_findings(v1::ListFindingsRequest::default())
            .await
            .err(),
        "follow" => c
            .follow_findings(v1::FollowFindingsRequest::default())
            .await
            .err(),
        "events" => c
            .list_events(v1::ListEventsRequest {
                host_id: "h".into(),
                ..Default::default()
            })
            .await
            .err(),
        "commands" => c
            .list_commands(v1::ListCommandsRequest::default())
            .await
            .err(),
        "actions" => c
            .list_actions(v1::ListActionsRequest::default())
            .await
            .err(),
        "verify" => c.verify_actions(v1::VerifyActionsRequest {}).await.err(),
        // No finding 999: allowed callers get NotFound, not PermissionDenied.
        "ack" => c
            .set_finding_state(v1::SetFindingStateRequest {
                id: 999,
                state: 2,
                note: String::new(),
            })
            .await
            .err(),
        "ping" | "isolate" | "release" | "snapshot" | "triage" | "relearn" => c
            .issue_command(v1::IssueCommandRequest {
                host_id: "offline-host".into(),
                verb: verb.into(),
                reason: "matrix".into(),
                expires_in_secs: 1,
                ..Default::default()
            })
            .await
            .err(),
        "operator.list" => c.list_operators(v1::ListOperatorsRequest {}).await.err(),
        // A name that does not exist: allowed callers get NotFound.
        "operator.set_role" => c
            .set_operator_role(v1::OperatorChange {
                name: "nobody".into(),
                role: "viewer".into(),
            })
            .await
            .err(),
        "operator.disable" => c
            .disable_operator(v1::OperatorChange {
                name: "nobody".into(),
                role: String::new(),
            })
            .await
            .err(),
        // No title: allowed callers get InvalidArgument.
        "incident.open" => c
            .open_incident(v1::OpenIncidentRequest::default())
            .await
            .err(),
        "incident.list" => c.list_incidents(v1::ListIncidentsRequest {}).await.err(),
        "incident.show" => c.show_incident(v1::IncidentRequest { id: 99 }).await.err(),
        "incident.update" => c
            .update_incident(v1::UpdateIncidentRequest {
                id: 99,
                note: "n".into(),
                ..Default::default()
            })
            .await
            .err(),
        "evidence.list" => c.list_evidence(v1::ListEvidenceRequest {}).await.err(),
        // No evidence e99: allowed callers get NotFound.
        "evidence.show" => c
            .show_evidence(v1::EvidenceRequest { id: "e99".into() })
            .await
            .err(),
        "evidence.verify" => c
            .verify_evidence(v1::EvidenceRequest { id: "e99".into() })
            .await
            .err(),
        "evidence.export" => c
            .export_evidence(v1::ExportEvidenceRequest {
                id: "e99".into(),
                recipient: "r".into(),
                reason: "r".into(),
            })
            .await
            .err(),
        "evidence.dispose" => c
            .dispose_evidence(v1::DisposeEvidenceRequest {
                id: "e99".into(),
                method: "wiped".into(),
                reason: String::new(),
            })
            .await
            .err(),
        // No incident 99: allowed callers get NotFound.
        "incident.report" => c
            .incident_report(v1::IncidentReportRequest {
                id: 99,
                kind: "brief".into(),
            })
            .await
            .err(),
        // No host "nowhere": allowed callers get NotFound.
        "host.label" => c
            .set_host_labels(v1::SetHostLabelsRequest {
                host_id: "nowhere".into(),
                set: [("site".to_owned(), "x".to_owned())].into(),
                remove: Vec::new(),
            })
            .await
            .err(),
        "rules.list" => c.list_rules(v1::ListRulesRequest {}).await.err(),
        "sinks.list" => c.list_sinks(v1::ListSinksRequest {}).await.err(),
        "token.create" => c
            .create_token(v1::CreateTokenRequest::default())
            .await
            .err(),
        "token.list" => c.list_tokens(v1::ListTokensRequest {}).await.err(),
        // No token t99: allowed callers get NotFound.
        "token.revoke" => c
            .revoke_token(v1::RevokeTokenRequest { id: "t99".into() })
            .await
            .err(),
        // No host "nowhere": allowed callers get NotFound.
        "host.revoke" => c
            .revoke_host(v1::RevokeHostRequest {
                host_id: "nowhere".into(),
                reason: "matrix".into(),
            })
            .await
            .err(),
        // No host "nowhere": allowed callers get NotFound.
        "finding.add" => c
            .add_finding(v1::AddFindingRequest {
                host_id: "nowhere".into(),
                kind: "report.user".into(),
                severity: v1::Severity::Low as i32,
                text: "matrix".into(),
                reporter: String::new(),
            })
            .await
            .err(),
        other => panic!("no verb {other}"),
    };
    match status {
        Some(s) if s.code() == tonic::Code::PermissionDenied => Err(s.message().to_owned()),
        _ => Ok(()),
    }
}

const VIEWER_VERBS: &[&str] = &[
    "hosts",
    "findings",
    "follow",
    "events",
    "commands",
    "actions",
    "verify",
    "incident.list",
    "incident.show",
    "incident.report",
    "evidence.list",
    "evidence.show",
    "evidence.verify",
    "rules.list",
    "sinks.list",
];
const RESPONDER_VERBS: &[&str] = &[
    "ack",
    "ping",
    "isolate",
    "release",
    "snapshot",
    "triage",
    "relearn",
    "incident.open",
    "incident.update",
    "finding.add",
];
const ADMIN_VERBS: &[&str] = &[
    "operator.list",
    "operator.set_role",
    "operator.disable",
    "evidence.export",
    "evidence.dispose",
    "host.label",
    "token.create",
    "token.list",
    "token.revoke",
    "host.revoke",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_role_can_do_exactly_its_verbs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut admin = operator_client(&pki.operator("alice"), collector.addr).await;
    for (name, role) in [("val", "viewer"), ("rita", "responder"), ("adam", "admin")] {
        let r = admin
            .add_operator(v1::OperatorChange {
                name: name.into(),
                role: role.into(),
            })
            .await
            .expect("add")
            .into_inner();
        assert_eq!(r.role, role);
        assert_eq!(r.created_by, "alice");
    }
    let dup = admin
        .add_operator(v1::OperatorChange {
            name: "val".into(),
            role: "admin".into(),
        })
        .await
        .expect_err("exists");
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);

    for (name, level) in [("val", 0), ("rita", 1), ("adam", 2)] {
        let mut c = operator_client(&pki.operator(name), collector.addr).await;
        for (verbs, needed) in [(VIEWER_VERBS, 0), (RESPONDER_VERBS, 1), (ADMIN_VERBS, 2)] {
            for verb in verbs {
                let outcome = call(&mut c, verb).await;
                if level >= needed {
                    assert!(outcome.is_ok(), "{name} may {verb}: {outcome:?}");
                } else {
                    let why = outcome.expect_err(&format!("{name} may not {verb}"));
                    assert!(why.contains("role"), "{why}");
                }
            }
        }
    }

    // Unregistered and disabled operators can do nothing.
    let mut stranger = operator_client(&pki.operator("stranger"), collector.addr).await;
    assert!(
        call(&mut stranger, "hosts")
            .await
            .expect_err("unregistered")
            .contains("not registered")
    );
    admin
        .disable_operator(v1::OperatorChange {
            name: "rita".into(),
            role: String::new(),
        })
        .await
        .expect("disable");
    let mut rita = operator_client(&pki.operator("rita"), collector.addr).await;
    assert!(
        call(&mut rita, "hosts")
            .await
            .expect_err("disabled")
            .contains("disabled")
    );
    // An admin cannot lock themselves out.
    let own = admin
        .set_operator_role(v1::OperatorChange {
            name: "alice".into(),
            role: "viewer".into(),
        })
        .await
        .expect_err("self-demotion");
    assert_eq!(own.code(), tonic::Code::FailedPrecondition);

    // Every denial is in the action log.
    let actions = admin
        .list_actions(v1::ListActionsRequest::default())
        .await
        .expect("actions")
        .into_inner()
        .actions;
    let denied = actions
        .iter()
        .filter(|a| a.verb.starts_with("denied."))
        .count();
    // val: every responder and admin verb; rita: every admin verb; stranger 1; rita disabled 1.
    assert_eq!(
        denied,
        RESPONDER_VERBS.len() + 2 * ADMIN_VERBS.len() + 1 + 1,
        "{actions:#?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.verb == "denied.command.isolate" && a.actor == "val")
    );
    let verify = admin
        .verify_actions(v1::VerifyActionsRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok);
}
