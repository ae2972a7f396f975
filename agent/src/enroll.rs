//! Enrollment and renewal, the agent's side: the key is made here and never
//! leaves the host; the collector gets a CSR and answers with a certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// No token given.
    #[error("no enrollment token: pass --token-file FILE or set BANNIN_ENROLL_TOKEN")]
    NoToken,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file is readable or writable by others.
    #[error(
        "{path} has mode {mode:03o}: a token is a secret; `chmod 600` it (or write it with umask 077)"
    )]
    TokenFileReadable {
        /// Which.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file would be overwritten.
    #[error("{0} exists; pass --force to replace this host's identity")]
    Exists(PathBuf),
    /// TLS setup or handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// Key or CSR generation.
    #[error("key: {0}")]
    Key(#[from] rcgen::Error),
    /// The collector could not be reached.
    #[error("cannot reach the collector at {0}: {1}")]
    Connect(String, String),
    /// The collector refused.
    #[error("the collector refused the enrollment ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// The answer made no sense.
    #[error("unexpected answer from the collector: {0}")]
    Protocol(String),
}

/// What the collector answers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Enrolled {
    /// The host id it assigned.
    pub host_id: String,
    /// The certificate.
    pub cert_pem: String,
    /// The CA.
    pub ca_pem: String,
    /// Expiry (Unix ms).
    pub not_after_unix_ms: i64,
}

/// Where enrollment writes: `agent.key` (0600), `agent.pem`, `ca.pem`.
pub struct Identity {
    /// Directory.
    pub dir: PathBuf,
}

impl Identity {
    /// The key file.
    pub fn key(&self) -> PathBuf {
        self.dir.join("agent.key")
    }
    /// The certificate file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("agent.pem")
    }
    /// The CA file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// Reads the token: from `file`, else from `BANNIN_ENROLL_TOKEN`.
pub fn read_token(file: Option<&Path>) -> Result<String, EnrollError> {
    let token = match file {
        Some(path) => {
            use std::io::Read;
            use std::os::unix::fs::PermissionsExt;
            let io = |source| EnrollError::Io {
                path: path.to_owned(),
                source,
            };
            let mut f = std::fs::File::open(path).map_err(io)?;
            // The mode of the file opened, not of whatever the path names later.
            let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(EnrollError::TokenFileReadable {
                    path: path.to_owned(),
                    mode,
                });
            }
            let mut text = String::new();
            f.read_to_string(&mut text).map_err(io)?;
            text
        }
        // The environment is one of the two documented token sources (never argv).
        #[allow(clippy::disallowed_methods)]
        None => std::env::var("BANNIN_ENROLL_TOKEN").map_err(|_| EnrollError::NoToken)?,
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(EnrollError::NoToken);
    }
    Ok(token)
}

/// A CSR for `key` (the collector reads only its public key).
pub fn csr(key: &rcgen::KeyPair) -> Result<String, EnrollError> {
    let params = rcgen::CertificateParams::default();
    Ok(params.serialize_request(key)?.pem()?)
}

/// A client that checks the collector against `ca_pem` and presents nothing.
fn tls_client(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, EnrollError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| EnrollError::Tls(format!("CA file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| EnrollError::Tls(format!("CA file: {e}")))?;
    }
    if roots.is_empty() {
        return Err(EnrollError::Tls("the CA file holds no certificate".into()));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| EnrollError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Enrolls: makes a key, sends its CSR with `token` to `collector`
/// (checking it against `ca_file` and `server_name`), and writes the key,
/// the certificate and the CA into `identity.dir`.
pub async fn enroll(
    collector: &str,
    server_name: &str,
    ca_file: &Path,
    token: &str,
    identity: &Identity,
    force: bool,
) -> Result<Enrolled, EnrollError> {
    for p in [identity.key(), identity.cert()] {
        if p.exists() && !force {
            return Err(EnrollError::Exists(p));
        }
    }
    let ca_pem = std::fs::read(ca_file).map_err(|source| EnrollError::Io {
        path: ca_file.to_owned(),
        source,
    })?;
    let tls = tls_client(&ca_pem)?;
    let key = rcgen::KeyPair::generate()?;
    let body = serde_json::json!({ "token": token, "csr_pem": csr(&key)? }).to_string();
    let (status, answer) = post(collector, server_name, tls, &body).await?;
    if status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
        return Err(EnrollError::Refused { status, message });
    }
    let enrolled: Enrolled =
        serde_json::from_slice(&answer).map_err(|e| EnrollError::Protocol(e.to_string()))?;
    std::fs::create_dir_all(&identity.dir).map_err(|source| EnrollError::Io {
        path: identity.dir.clone(),
        source,
    })?;
    write_atomic(&identity.key(), key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&identity.cert(), enrolled.cert_pem.as_bytes(), 0o644)?;
    write_atomic(&identity.ca(), enrolled.ca_pem.as_bytes(), 0o644)?;
    Ok(enrolled)
}

/// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrollError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| EnrollError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

async fn post(
    collector: &str,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    body: &str,
) -> Result<(u16, Bytes), EnrollError> {
    let connect =
        |e: &dyn std::fmt::Display| EnrollError::Connect(collector.to_owned(), e.to_string());
    let tcp = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::net::TcpStream::connect(collector),
    )
    .await
    .map_err(|_| connect(&"timed out"))?
    .map_err(|e| connect(&e))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| EnrollError::Tls(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            EnrollError::Tls(format!("the collector's certificate was not accepted: {e}"))
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| connect(&e))?;
    // Not on a TaskTracker: the HTTP/1 connection driver of one enrollment request, which ends with it.
    #[allow(clippy::disallowed_methods)]
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post("/enroll")
        .header(hyper::header::HOST, server_name)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
        .await
        .map_err(|_| connect(&"no answer within 30 s"))?
        .map_err(|e| connect(&e))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| connect(&e))?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}

/// Milliseconds since the epoch at which the PEM certificate expires.
pub fn not_after_unix_ms(cert_pem: &[u8]) -> Option<i64> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    cert.validity().not_after.timestamp().checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_a_file_or_the_environment_never_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, "t1.abc\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        for readable in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(readable)).expect("mode");
            assert!(
                matches!(read_token(Some(&f)), Err(EnrollError::TokenFileReadable { mode, .. }) if mode == readable),
                "mode {readable:o} refused"
            );
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("mode");
        assert_eq!(read_token(Some(&f)).expect("token"), "t1.abc");
        std::fs::write(&f, "  \n").expect("write");
        assert!(matches!(read_token(Some(&f)), Err(EnrollError::NoToken)));
    }

    #[test]
    fn a_csr_parses_back_with_the_same_key() {
        let key = rcgen::KeyPair::generate().expect("key");
        let pem = csr(&key).expect("csr");
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&pem).expect("parse");
        assert_eq!(
            rcgen::PublicKeyData::der_bytes(&parsed.public_key),
            rcgen::PublicKeyData::der_bytes(&key)
        );
    }
}
