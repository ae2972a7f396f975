//! `bannin` evidence list, show, verify, export, dispose.

use std::process::ExitCode;

use anyhow::Context;
use bannin_proto::v1;
use tokio_stream::StreamExt;

use crate::args::*;
use crate::cmd::Client;
use crate::output::{self, print_json, short_time};

pub(crate) async fn evidence(
    client: &mut Client,
    action: EvidenceAction,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    let detail = match action {
        EvidenceAction::List => {
            let list = client
                .list_evidence(v1::ListEvidenceRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .evidence;
            if json {
                print_json(&list.iter().map(output::evidence_json).collect::<Vec<_>>())?;
            } else {
                crate::say!(
                    "{:<5} {:<9} {:<20} {:<19} {:>10}  SHA-256",
                    "ID",
                    "STATE",
                    "HOST",
                    "RECEIVED (UTC)",
                    "BYTES"
                );
                for e in &list {
                    crate::say!(
                        "{:<5} {:<9} {:<20} {:<19} {:>10}  {}",
                        e.id,
                        e.state,
                        e.host_id,
                        short_time(e.received_unix_ms),
                        e.size,
                        e.sha256
                    );
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        EvidenceAction::Show { id } => client
            .show_evidence(v1::EvidenceRequest { id })
            .await
            .map_err(status)?
            .into_inner(),
        EvidenceAction::Verify { id } => {
            let d = client
                .verify_evidence(v1::EvidenceRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            if json {
                print_json(&output::evidence_detail_json(&d))?;
            } else {
                crate::say!("{}", d.verify_result);
            }
            return Ok(if d.verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        EvidenceAction::Dispose { id, method, reason } => client
            .dispose_evidence(v1::DisposeEvidenceRequest { id, method, reason })
            .await
            .map_err(status)?
            .into_inner(),
        EvidenceAction::Export {
            id,
            to,
            recipient,
            reason,
        } => {
            let mut stream = client
                .export_evidence(v1::ExportEvidenceRequest {
                    id,
                    recipient: recipient.clone(),
                    reason: reason.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let first = stream
                .next()
                .await
                .context("the collector sent nothing")?
                .map_err(status)?;
            let detail = first.detail.context("the collector sent no record")?;
            let record = detail.record.clone().context("no record")?;
            anyhow::ensure!(
                record.sha256.len() == 64 && record.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "the collector's record has no SHA-256: nothing exported"
            );
            std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
            let bundle_name = format!("{}.tar.zst", record.sha256);
            let bundle_path = to.join(&bundle_name);
            let mut file = std::fs::File::create(&bundle_path).context("writing the bundle")?;
            let mut written = 0u64;
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(status)?;
                std::io::Write::write_all(&mut file, &chunk.data)?;
                sha2::Digest::update(&mut hasher, &chunk.data);
                written += chunk.data.len() as u64;
            }
            let received = bannin_proto::hex(sha2::Digest::finalize(hasher));
            if written != record.size || received != record.sha256 {
                // What arrived is not what was recorded: leave nothing that looks like evidence.
                drop(file);
                let _ = std::fs::remove_file(&bundle_path);
                anyhow::bail!(
                    "received {written} bytes with SHA-256 {received}; the record says {} bytes with {}: nothing exported",
                    record.size,
                    record.sha256
                );
            }
            file.sync_all().context("writing the bundle")?;
            std::fs::write(to.join("manifest.json"), &detail.manifest_json)?;
            let custody = output::evidence_detail_json(&detail);
            std::fs::write(
                to.join("custody.json"),
                serde_json::to_string_pretty(&custody)?,
            )?;
            std::fs::write(
                to.join("SHA256SUMS"),
                format!("{}  {bundle_name}\n", record.sha256),
            )?;
            std::fs::write(
                to.join("README.txt"),
                format!(
                    "Evidence {id} from host {host}, exported by Bannin to {recipient}.\n\
                     Reason: {reason}\n\n\
                     Files:\n  {bundle_name}  the evidence bundle (tar archive compressed with zstd)\n  \
                     manifest.json  what the bundle holds: every artifact with its size and SHA-256\n  \
                     custody.json  the chain of custody: who collected, received, verified, viewed and exported it\n\n\
                     Check it without Bannin, with standard tools:\n  \
                     sha256sum -c SHA256SUMS                                 # the bundle is the one recorded\n  \
                     mkdir x && tar --zstd -xf {bundle_name} -C x           # unpack it\n  \
                     cd x && sha256sum artifacts/...                         # compare with manifest.json\n\n\
                     The bundle's own manifest.json is also its last entry.\n",
                    id = record.id,
                    host = record.host_id,
                ),
            )?;
            eprintln!(
                "exported {} ({written} bytes) to {}",
                record.id,
                to.display()
            );
            detail
        }
    };
    if json {
        print_json(&output::evidence_detail_json(&detail))?;
    } else if let Some(r) = &detail.record {
        crate::say!(
            "{} {} from {}: {} bytes, sha256 {}",
            r.id,
            r.state,
            r.host_id,
            r.size,
            r.sha256
        );
        crate::say!(
            "  asked by {} ({}), command {}, collected {} → {}",
            r.operator,
            r.reason,
            r.command_id,
            r.collected_started,
            r.collected_finished
        );
        for a in &detail.custody {
            crate::say!(
                "  {:>5} {}  {:<20} {:<12} {}{}",
                a.seq,
                short_time(a.at_unix_ms),
                a.verb,
                a.actor,
                a.result,
                if a.reason.is_empty() {
                    String::new()
                } else {
                    format!(" (reason: {})", a.reason)
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
