//! Operator roles: the whole matrix of role × verb, denials included, and the
//! denials in the action log.

use bannin_proto::v1::{self, operator_client::OperatorClient};
use std::time::Duration;

use bannin_tests::sim::SimAgent;
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, eventually, free_port, operator_client, start_agent,
};
use tonic::transport::Channel;

type Client = OperatorClient<Channel>;

/// What the matrix acts on: real records, made by an admin, so that an allowed call
/// succeeds (not merely "was not refused").
struct Fixture {
    admin: Client,
    /// A host that connected once (a simulated agent: commands to it only queue).
    host: String,
    /// A host that may be revoked.
    spare_host: String,
    /// An open incident.
    incident: u64,
    /// Evidence from a real snapshot.
    evidence: String,
    /// Counter for fresh names.
    fresh: u32,
}

impl Fixture {
    fn fresh(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    /// A new finding on the fixture host (its own text, so it does not fold into
    /// an earlier one).
    async fn finding(&mut self) -> u64 {
        let text = self.fresh("matrix finding ");
        self.admin
            .add_finding(v1::AddFindingRequest {
                host_id: self.host.clone(),
                kind: "report.user".into(),
                severity: v1::Severity::Low as i32,
                text,
                reporter: String::new(),
            })
            .await
            .expect("fixture finding")
            .into_inner()
            .id
    }

    /// A new viewer to change.
    async fn operator(&mut self) -> String {
        let name = self.fresh("op");
        self.admin
            .add_operator(v1::OperatorChange {
                name: name.clone(),
                role: "viewer".into(),
            })
            .await
            .expect("fixture operator");
        name
    }

    /// A new token to revoke.
    async fn token(&mut self) -> String {
        self.admin
            .create_token(v1::CreateTokenRequest::default())
            .await
            .expect("fixture token")
            .into_inner()
            .token
            .expect("token record")
            .id
    }
}

/// Calls one verb as `c`, on the fixture's records; the collector's answer.
async fn call(c: &mut Client, f: &mut Fixture, verb: &str) -> Result<(), tonic::Status> {
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
                host_id: f.host.clone(),
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
        "ack" => c
            .set_finding_state(v1::SetFindingStateRequest {
                id: f.finding().await,
                state: 2,
                note: String::new(),
            })
            .await
            .err(),
        "ack.bulk" => c
            .set_finding_states(v1::SetFindingStatesRequest {
                ids: vec![f.finding().await],
                state: 2,
                ..Default::default()
            })
            .await
            .err(),
        "findings.group" => c
            .group_findings(v1::GroupFindingsRequest {
                by: v1::FindingGroupBy::Kind as i32,
                ..Default::default()
            })
            .await
            .err(),
        "ping" | "isolate" | "release" | "snapshot" | "triage" | "relearn" => c
            .issue_command(v1::IssueCommandRequest {
                host_id: f.host.clone(),
                command: Some(match verb {
                    "ping" => v1::CommandBody::ping(),
                    "isolate" => v1::CommandBody::isolate(Vec::new(), false),
                    "release" => v1::CommandBody::release(),
                    "snapshot" => v1::CommandBody::snapshot(Vec::new()),
                    "triage" => v1::CommandBody::triage("processes", ""),
                    _ => v1::CommandBody::relearn(""),
                }),
                reason: "matrix".into(),
                expires_in_secs: 1,
            })
            .await
            .err(),
        "operator.list" => c.list_operators(v1::ListOperatorsRequest {}).await.err(),
        "operator.set_role" => c
            .set_operator_role(v1::OperatorChange {
                name: f.operator().await,
                role: "viewer".into(),
            })
            .await
            .err(),
        "operator.disable" => c
            .disable_operator(v1::OperatorChange {
                name: f.operator().await,
                role: String::new(),
            })
            .await
            .err(),
        "incident.open" => c
            .open_incident(v1::OpenIncidentRequest {
                title: "matrix".into(),
                severity: "low".into(),
                ..Default::default()
            })
            .await
            .err(),
        "incident.list" => c.list_incidents(v1::ListIncidentsRequest {}).await.err(),
        "incident.show" => c
            .show_incident(v1::IncidentRequest { id: f.incident })
            .await
            .err(),
        "incident.update" => c
            .update_incident(v1::UpdateIncidentRequest {
                id: f.incident,
                note: "n".into(),
                ..Default::default()
            })
            .await
            .err(),
        "evidence.list" => c.list_evidence(v1::ListEvidenceRequest {}).await.err(),
        "evidence.show" => c
            .show_evidence(v1::EvidenceRequest {
                id: f.evidence.clone(),
            })
            .await
            .err(),
        "evidence.verify" => c
            .verify_evidence(v1::EvidenceRequest {
                id: f.evidence.clone(),
            })
            .await
            .err(),
        "evidence.export" => c
            .export_evidence(v1::ExportEvidenceRequest {
                id: f.evidence.clone(),
                recipient: "r".into(),
                reason: "r".into(),
            })
            .await
            .err(),
        "evidence.dispose" => c
            .dispose_evidence(v1::DisposeEvidenceRequest {
                id: f.evidence.clone(),
                method: "wiped".into(),
                reason: "matrix".into(),
            })
            .await
            .err(),
        "incident.report" => c
            .incident_report(v1::IncidentReportRequest {
                id: f.incident,
                kind: "brief".into(),
            })
            .await
            .err(),
        "host.label" => c
            .set_host_labels(v1::SetHostLabelsRequest {
                host_id: f.host.clone(),
                set: [("site".to_owned(), "x".to_owned())].into(),
                remove: Vec::new(),
            })
            .await
            .err(),
        "rules.list" => c.list_rules(v1::ListRulesRequest {}).await.err(),
        "rules.reload" => c.reload_rules(v1::ReloadRulesRequest {}).await.err(),
        "sinks.list" => c.list_sinks(v1::ListSinksRequest {}).await.err(),
        "token.create" => c
            .create_token(v1::CreateTokenRequest::default())
            .await
            .err(),
        "token.list" => c.list_tokens(v1::ListTokensRequest {}).await.err(),
        "token.revoke" => c
            .revoke_token(v1::RevokeTokenRequest {
                id: f.token().await,
            })
            .await
            .err(),
        "host.revoke" => c
            .revoke_host(v1::RevokeHostRequest {
                host_id: f.spare_host.clone(),
                reason: "matrix".into(),
                cert_pem: Vec::new(),
            })
            .await
            .err(),
        "finding.add" => c
            .add_finding(v1::AddFindingRequest {
                host_id: f.host.clone(),
                kind: "report.user".into(),
                severity: v1::Severity::Low as i32,
                text: "matrix".into(),
                reporter: String::new(),
            })
            .await
            .err(),
        other => panic!("no verb {other}"),
    };
    status.map_or(Ok(()), Err)
}

/// Records for the matrix: a simulated host to command, a spare host to revoke, an
/// open incident, and evidence from a real agent's snapshot.
async fn fixture(
    mut admin: Client,
    dir: &tempfile::TempDir,
    pki: &TestPki,
    addr: std::net::SocketAddr,
) -> Fixture {
    let sim = SimAgent::connect(pki, "sim-host", addr, &["10.9.0.1"], &[])
        .await
        .expect("sim host");
    let spare = SimAgent::connect(pki, "spare-host", addr, &["10.9.0.2"], &[])
        .await
        .expect("spare host");
    drop((sim, spare));
    // A real agent, only for a real snapshot: never isolated (commands that change
    // the network go to the simulated host).
    let _agent = start_agent(
        &dir.path().join("agent"),
        &pki.agent("snap-host"),
        addr,
        &AgentOptions {
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    admin
        .issue_command(v1::IssueCommandRequest {
            host_id: "snap-host".into(),
            command: Some(v1::CommandBody::snapshot(Vec::new())),
            reason: "matrix".into(),
            ..Default::default()
        })
        .await
        .expect("snapshot queued");
    let evidence = eventually(Duration::from_secs(120), "the snapshot stored", || {
        let mut c = admin.clone();
        async move {
            let list = c
                .list_evidence(v1::ListEvidenceRequest {})
                .await
                .ok()?
                .into_inner()
                .evidence;
            list.first().map(|e| e.id.clone())
        }
    })
    .await;
    let incident = admin
        .open_incident(v1::OpenIncidentRequest {
            title: "matrix fixture".into(),
            severity: "medium".into(),
            ..Default::default()
        })
        .await
        .expect("incident")
        .into_inner()
        .incident
        .expect("incident record")
        .id;
    Fixture {
        admin,
        host: "sim-host".into(),
        spare_host: "spare-host".into(),
        incident,
        evidence,
        fresh: 0,
    }
}

const VIEWER_VERBS: &[&str] = &[
    "hosts",
    "findings",
    "findings.group",
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
    "ack.bulk",
    "ping",
    "isolate",
    "release",
    "snapshot",
    "triage",
    "relearn",
    "incident.open",
    "incident.update",
    "finding.add",
    "rules.reload",
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

    let fixture = &mut fixture(admin, &dir, &pki, collector.addr).await;
    for (name, level) in [("val", 0), ("rita", 1), ("adam", 2)] {
        let mut c = operator_client(&pki.operator(name), collector.addr).await;
        for (verbs, needed) in [(VIEWER_VERBS, 0), (RESPONDER_VERBS, 1), (ADMIN_VERBS, 2)] {
            for verb in verbs {
                let outcome = call(&mut c, fixture, verb).await;
                if level >= needed {
                    assert!(outcome.is_ok(), "{name} may {verb}: {outcome:?}");
                } else {
                    let why = outcome.expect_err(&format!("{name} may not {verb}"));
                    assert_eq!(why.code(), tonic::Code::PermissionDenied, "{why:?}");
                    assert!(why.message().contains("role"), "{why:?}");
                }
            }
        }
    }
    // Unregistered and disabled operators can do nothing.
    let mut stranger = operator_client(&pki.operator("stranger"), collector.addr).await;
    let refused = call(&mut stranger, fixture, "hosts")
        .await
        .expect_err("unregistered");
    assert!(refused.message().contains("not registered"), "{refused:?}");
    fixture
        .admin
        .disable_operator(v1::OperatorChange {
            name: "rita".into(),
            role: String::new(),
        })
        .await
        .expect("disable");
    let mut rita = operator_client(&pki.operator("rita"), collector.addr).await;
    let refused = call(&mut rita, fixture, "hosts")
        .await
        .expect_err("disabled");
    assert!(refused.message().contains("disabled"), "{refused:?}");
    let admin = &mut fixture.admin;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_operators_open_stream_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let mut admin = operator_client(&pki.operator("alice"), collector.addr).await;
    for (name, role) in [("val", "viewer"), ("vic", "viewer")] {
        admin
            .add_operator(v1::OperatorChange {
                name: name.into(),
                role: role.into(),
            })
            .await
            .expect("add");
    }
    let mut val = operator_client(&pki.operator("val"), collector.addr).await;
    let mut vic = operator_client(&pki.operator("vic"), collector.addr).await;
    let mut following = val
        .follow_findings(v1::FollowFindingsRequest::default())
        .await
        .expect("follow")
        .into_inner();
    let mut staying = vic
        .follow_findings(v1::FollowFindingsRequest::default())
        .await
        .expect("follow")
        .into_inner();
    admin
        .disable_operator(v1::OperatorChange {
            name: "val".into(),
            role: String::new(),
        })
        .await
        .expect("disable");
    let cut = tokio::time::timeout(Duration::from_secs(10), following.message())
        .await
        .expect("the stream ended within 10 s")
        .expect_err("ended with an error");
    assert_eq!(cut.code(), tonic::Code::PermissionDenied, "{cut:?}");
    assert!(cut.message().contains("disabled"), "{cut:?}");
    // Another operator's stream goes on.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), staying.message())
            .await
            .is_err(),
        "vic's stream stays open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_action_log_is_read_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(&dir.path().join("collector"), &pki, free_port(), "");
    let admin = operator_client(&pki.operator("alice"), collector.addr).await;
    // More entries than one page (1000): four writers at once.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut c = admin.clone();
            tokio::spawn(async move {
                for i in 0..263 {
                    c.create_token(v1::CreateTokenRequest {
                        note: format!("writer {w} token {i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("token");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let operator = bannin_tests::operator_toml(dir.path(), &pki.operator("alice"), collector.addr);
    let (ok, all, err) = bannin_tests::bannin_json(&operator, &["actions"]);
    assert!(ok, "{err}");
    let seqs: Vec<u64> = all
        .as_array()
        .expect("entries")
        .iter()
        .map(|a| a["seq"].as_u64().expect("seq"))
        .collect();
    let tokens = all
        .as_array()
        .expect("entries")
        .iter()
        .filter(|a| a["verb"] == "token.create")
        .count();
    assert_eq!(tokens, 1052, "every entry, across pages");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs.first() == Some(&1),
        "each once, in order"
    );
    let (ok, page, err) =
        bannin_tests::bannin_json(&operator, &["actions", "--after", "1000", "--limit", "5"]);
    assert!(ok, "{err}");
    let page: Vec<u64> = page
        .as_array()
        .expect("entries")
        .iter()
        .map(|a| a["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(page, [1001, 1002, 1003, 1004, 1005]);
}
