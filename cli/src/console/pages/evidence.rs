//! Evidence: the list, one piece with its custody, verification and export.

use super::*;

/// `GET /evidence`.
pub(crate) async fn evidence(State(c): State<Shared>, Extension(s): Extension<Session>) -> Page {
    let items = c
        .client()
        .list_evidence(v1::ListEvidenceRequest {})
        .await?
        .into_inner()
        .evidence;
    let body = html! {
        table.grid #evidence {
            thead { tr { th { "ID" } th { "Received (UTC)" } th { "Host" } th { "Operator" } th { "Reason" } th { "Size" } th { "SHA-256" } th { "State" } } }
            tbody {
                @for e in items.iter().rev() {
                    tr {
                        td { a href=(format!("/evidence/{}", e.id)) { (e.id) } }
                        td { (time(e.received_unix_ms)) }
                        td { (t(&e.host_id)) }
                        td { (t(&e.operator)) }
                        td { (t(&e.reason)) }
                        td.num { (view::size(e.size)) }
                        td.hash { (e.sha256) }
                        td { (e.state) }
                    }
                }
            }
        }
        @if items.is_empty() { p.empty { "No evidence held." } }
    };
    Ok(page(&c.operator, &s.csrf, Nav::Evidence, "Evidence", body))
}

fn evidence_body(
    c: &Shared,
    s: &Session,
    d: &v1::EvidenceDetail,
    verified: Option<(bool, &str)>,
) -> Markup {
    let r = d.record.clone().unwrap_or_default();
    let manifest = serde_json::from_str::<Value>(&d.manifest_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| d.manifest_json.clone());
    html! {
        @if let Some((ok, result)) = verified {
            p #verify-result class=(if ok { "ok" } else { "error" }) { @if ok { "Verified: " } @else { "NOT verified: " } (result) }
        }
        (facts([
            ("SHA-256", html! { span.hash { (r.sha256) } }),
            ("Size", view::size(r.size)),
            ("Host", html! { (t(&r.host_id)) }),
            ("Command", html! { a href=(format!("/commands/{}", r.command_id)) { (r.command_id) } }),
            ("Collected by", html! { (t(&r.operator)) }),
            ("Reason", html! { (t(&r.reason)) }),
            ("Collected", html! { (t(&r.collected_started)) " – " (t(&r.collected_finished)) }),
            ("Received", time(r.received_unix_ms)),
            ("Last verified", time(r.verified_unix_ms)),
            ("State", html! { (r.state) }),
        ]))
        form.inline method="post" action=(format!("/evidence/{}/verify", r.id)) {
            (csrf_field(&s.csrf))
            button type="submit" #verify-evidence { "Verify the stored bytes" }
        }
        @if c.operator.role >= Role::Admin {
            form #export-form method="post" action=(format!("/evidence/{}/export", r.id)) {
                (csrf_field(&s.csrf))
                h3 { "Export (recorded in the chain of custody)" }
                label { "Recipient " input type="text" name="recipient" required; }
                label { "Reason " input type="text" name="reason" required size="40"; }
                button type="submit" { "Export bundle" }
            }
        }
        h2 { "Chain of custody" }
        (actions_table(&d.custody))
        h2 { "Manifest" }
        pre.manifest { (lines(&manifest)) }
    }
}

/// `GET /evidence/{id}`.
pub(crate) async fn evidence_item(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let d = c
        .client()
        .show_evidence(v1::EvidenceRequest { id: id.clone() })
        .await?
        .into_inner();
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Evidence,
        &format!("Evidence {id}"),
        evidence_body(&c, &s, &d, None),
    ))
}

/// `POST /evidence/{id}/verify`.
pub(crate) async fn verify_evidence(
    State(c): State<Shared>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Page {
    let d = c
        .client()
        .verify_evidence(v1::EvidenceRequest { id: id.clone() })
        .await?
        .into_inner();
    let verified = Some((d.verified, d.verify_result.as_str()));
    Ok(page(
        &c.operator,
        &s.csrf,
        Nav::Evidence,
        &format!("Evidence {id}"),
        evidence_body(&c, &s, &d, verified),
    ))
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    recipient: String,
    reason: String,
}

/// `POST /evidence/{id}/export` (admin): the bundle as a download, after its
/// SHA-256 was checked against the record.
pub(crate) async fn export_evidence(
    State(c): State<Shared>,
    Path(id): Path<String>,
    Form(form): Form<ExportForm>,
) -> Result<Response, PageError> {
    let mut stream = c
        .client()
        .export_evidence(v1::ExportEvidenceRequest {
            id: id.clone(),
            recipient: form.recipient,
            reason: form.reason,
        })
        .await?
        .into_inner();
    let mut record = None;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if let Some(d) = chunk.detail {
            record = d.record;
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let record = record.ok_or_else(|| PageError::bad("the export carried no record"))?;
    let sha = bannin_proto::vocab::sha256_hex(&bytes);
    if sha != record.sha256 || bytes.len() as u64 != record.size {
        return Err(PageError {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "the exported bytes do not match the record ({} bytes, SHA-256 {sha}; the record says {} bytes, {})",
                bytes.len(),
                record.size,
                record.sha256
            ),
        });
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.tar.zst\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
