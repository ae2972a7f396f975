//! Enrollment and renewal: how a host gets its identity.
//!
//! `bannin-agent enroll` makes a key on the host (it never leaves it), and
//! posts a CSR with an enrollment token to the collector's enrollment endpoint
//! (HTTPS, server-authenticated: the agent checks the collector against the
//! CA file it was given). The collector uses nothing of the CSR but its public
//! key — after checking the CSR's signature, which proves the key is held: it
//! derives the host id from the key, and signs a certificate of its own making
//! (clientAuth only, not a CA, its own validity). Whatever else the CSR asks
//! for — CA:true, another host's name, ten years — is ignored.
//!
//! Tokens (`bannin token create`) have a number of uses, an expiry and
//! labels given to the hosts they enroll; only the SHA-256 of their secret is
//! stored. Wrong tokens are answered alike, and a source that keeps sending
//! them is refused for a minute.
//!
//! Renewal happens over the agent's live channel: a CSR for the same key,
//! checked to derive the session's host id.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bannin_proto::identity::{HostId, PeerIdentity};
use bannin_proto::v1;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::journal::{Journal, Op, OpReply};
use crate::model::{Action, TokenRecord};
use crate::pki::{Ca, Validity};
use crate::store::Store;

/// The path agents post to.
pub const PATH: &str = "/enroll";
/// Failed attempts from one address within [`FAILURE_WINDOW`] before it is refused.
pub const MAX_FAILURES: usize = 5;
/// The window of the failure count, and how long a refused address waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// `[enrollment]` of the collector's config.
#[derive(Debug, Clone)]
pub struct EnrollmentConfig {
    /// Where the token endpoint listens (HTTPS); `None`: renewal only.
    pub listen: Option<SocketAddr>,
    /// The CA's private key (mode 0600).
    pub ca_key: std::path::PathBuf,
    /// Validity of the certificates it signs.
    pub validity: Duration,
}

/// Why an enrollment or renewal was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Not a CSR, or its signature does not verify.
    #[error("the CSR is not valid: {0}")]
    BadCsr(String),
    /// Unknown token, or wrong secret.
    #[error("the token is not valid")]
    BadToken,
    /// All uses spent.
    #[error("the token {0} is used up")]
    UsedUp(String),
    /// Past its expiry.
    #[error("the token {0} has expired")]
    Expired(String),
    /// Revoked by an admin.
    #[error("the token {0} was revoked")]
    Revoked(String),
    /// The key's host is revoked.
    #[error("host {0} is revoked; it cannot enroll again with the same key")]
    HostRevoked(String),
    /// A renewal CSR for another key than the session's.
    #[error("the CSR's key belongs to host {0}, not to this session's host {1}")]
    WrongKey(String, String),
    /// Too many failures from this address.
    #[error("too many failed attempts; try again in a minute")]
    RateLimited,
    /// Signing or storing failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EnrollError {
    fn status(&self) -> StatusCode {
        match self {
            EnrollError::BadCsr(_) => StatusCode::BAD_REQUEST,
            EnrollError::BadToken => StatusCode::UNAUTHORIZED,
            EnrollError::UsedUp(_) | EnrollError::Expired(_) | EnrollError::Revoked(_) => {
                StatusCode::FORBIDDEN
            }
            EnrollError::HostRevoked(_) | EnrollError::WrongKey(..) => StatusCode::CONFLICT,
            EnrollError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            EnrollError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The host id of a public key: `h-` and the first 16 hex digits of its SHA-256.
pub fn host_id_for(public_key: &[u8]) -> HostId {
    let digest = Sha256::digest(public_key);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    HostId::new(format!("h-{hex}"))
        .unwrap_or_else(|_| unreachable!("h- and hex digits are a valid host id"))
}

/// The collector's signing side.
pub struct Authority {
    ca: Ca,
    validity: Duration,
    hosts: Arc<crate::hosts::HostRegistry>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// What an enrollment returns to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enrolled {
    /// The host id the collector assigned.
    pub host_id: String,
    /// The agent's certificate.
    pub cert_pem: String,
    /// The CA to trust.
    pub ca_pem: String,
    /// When the certificate expires (Unix ms).
    pub not_after_unix_ms: i64,
}

/// An enrollment request.
#[derive(Debug, Deserialize, Serialize)]
pub struct EnrollRequest {
    /// `ID.SECRET`, as `bannin token create` printed it.
    pub token: String,
    /// PEM PKCS#10.
    pub csr_pem: String,
}

impl Authority {
    /// Loads the CA (certificate and key) that signs enrolled and renewed certificates.
    pub fn load(
        ca_cert: &std::path::Path,
        ca_key: &std::path::Path,
        validity: Duration,
        hosts: Arc<crate::hosts::HostRegistry>,
    ) -> Result<Self, String> {
        bannin_proto::tls::check_key_permissions(ca_key).map_err(|e| e.to_string())?;
        let cert =
            std::fs::read_to_string(ca_cert).map_err(|e| format!("{}: {e}", ca_cert.display()))?;
        let key =
            std::fs::read_to_string(ca_key).map_err(|e| format!("{}: {e}", ca_key.display()))?;
        let ca = Ca::load(&cert, &key).map_err(|e| e.to_string())?;
        Ok(Self {
            ca,
            validity,
            hosts,
        })
    }

    /// Checks a CSR and signs the collector's certificate for its key.
    pub(crate) fn sign(&self, csr_pem: &str) -> Result<(HostId, String, i64), EnrollError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| EnrollError::BadCsr(e.to_string()))?;
        let key = rcgen::PublicKeyData::der_bytes(&csr.public_key);
        let host = host_id_for(key);
        if self.hosts.is_revoked(host.as_str()) {
            return Err(EnrollError::HostRevoked(host.to_string()));
        }
        // A key revoked under any id (a `pki issue` certificate's host) cannot
        // come back under the id enrollment would give it.
        if let Some(was) = self
            .hosts
            .key_revoked(&bannin_proto::identity::key_sha256(key))
        {
            return Err(EnrollError::HostRevoked(was));
        }
        let validity = Validity::secs(i64::try_from(self.validity.as_secs()).unwrap_or(i64::MAX));
        let not_after = i64::try_from(validity.not_after.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or(i64::MAX);
        let cert = self
            .ca
            .sign_client_key(
                &PeerIdentity::Agent(host.clone()),
                &csr.public_key,
                validity,
            )
            .map_err(|e| EnrollError::Internal(e.to_string()))?;
        Ok((host, cert, not_after))
    }

    /// A renewal for `host`'s session: the CSR must be for the same key.
    pub fn renew(&self, host: &HostId, csr_pem: &str) -> Result<v1::RenewResponse, EnrollError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| EnrollError::BadCsr(e.to_string()))?;
        let of_key = host_id_for(rcgen::PublicKeyData::der_bytes(&csr.public_key));
        if &of_key != host {
            return Err(EnrollError::WrongKey(of_key.to_string(), host.to_string()));
        }
        let (_, cert_pem, not_after_unix_ms) = self.sign(csr_pem)?;
        Ok(v1::RenewResponse {
            cert_pem,
            ca_pem: self.ca.cert_pem.clone(),
            not_after_unix_ms,
            error: String::new(),
        })
    }
}

/// Splits `ID.SECRET`.
fn split_token(token: &str) -> Option<(&str, &str)> {
    token.trim().split_once('.')
}

/// SHA-256 of a token secret, hex.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token secret: 32 random bytes, URL-safe hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token endpoint's state.
pub struct Enrollment {
    authority: Arc<Authority>,
    store: Store,
    /// A token's uses are taken through the journal.
    journal: Journal,
    failures: Mutex<HashMap<IpAddr, Vec<std::time::Instant>>>,
}

impl Enrollment {
    /// Over `authority` and `store`, changed through `journal`.
    pub fn new(authority: Arc<Authority>, store: Store, journal: Journal) -> Self {
        Self {
            authority,
            store,
            journal,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn limited(&self, from: IpAddr) -> bool {
        let mut failures = bannin_proto::lock(&self.failures);
        let recent = failures.entry(from).or_default();
        recent.retain(|t| t.elapsed() < FAILURE_WINDOW);
        recent.len() >= MAX_FAILURES
    }

    fn failed(&self, from: IpAddr) {
        let mut failures = bannin_proto::lock(&self.failures);
        if failures.len() > 100_000 {
            failures.retain(|_, v| v.iter().any(|t| t.elapsed() < FAILURE_WINDOW));
        }
        failures
            .entry(from)
            .or_default()
            .push(std::time::Instant::now());
    }

    /// One enrollment from `from`.
    pub async fn enroll(
        &self,
        from: IpAddr,
        request: &EnrollRequest,
    ) -> Result<Enrolled, EnrollError> {
        if self.limited(from) {
            return Err(EnrollError::RateLimited);
        }
        let result = self.try_enroll(request).await;
        if let Err(e) = &result
            && !matches!(e, EnrollError::Internal(_))
        {
            self.failed(from);
            tracing::warn!(peer.addr = %from, error = %e, "Enrollment refused");
        }
        result
    }

    async fn try_enroll(&self, request: &EnrollRequest) -> Result<Enrolled, EnrollError> {
        let internal = |e: &dyn std::fmt::Display| EnrollError::Internal(e.to_string());
        let (id, secret) = split_token(&request.token).ok_or(EnrollError::BadToken)?;
        let stored = self
            .store
            .token(id)
            .map_err(|e| internal(&e))?
            .ok_or(EnrollError::BadToken)?;
        let given = secret_hash(secret);
        if !crate::webhook::constant_time_eq(given.as_bytes(), stored.secret_sha256.as_bytes()) {
            return Err(EnrollError::BadToken);
        }
        if let Some(why) = stored.refusal(bannin_proto::now_unix_ms()) {
            return Err(refused(id, why));
        }
        let (host, cert_pem, not_after_unix_ms) = self.authority.sign(&request.csr_pem)?;
        // The use is taken with a compare-and-swap on the token as stored now:
        // a revocation that landed after the check above wins, and two
        // enrollments cannot both take a token's last use.
        let now = bannin_proto::now_unix_ms();
        // The use is taken as the journal applies it, so two enrollments
        // (through any collectors) cannot both take a token's last use.
        let op = Op::UseToken {
            id: id.to_owned(),
            host: host.to_string(),
            at_unix_ms: now,
        };
        match self.journal.submit(op).await.and_then(OpReply::into_raise) {
            Ok(_) => {}
            // The refusal, as `TokenRecord::refusal` words it.
            Err(crate::ingest::IngestError::Journal(why))
                if matches!(why.as_str(), "revoked" | "used_up" | "expired") =>
            {
                return Err(refused(id, &why));
            }
            Err(e) => return Err(internal(&e)),
        }
        let token = self
            .store
            .token(id)
            .map_err(|e| internal(&e))?
            .ok_or(EnrollError::BadToken)?;
        if !token.labels.is_empty() {
            let op = Op::LabelHost {
                host_id: host.to_string(),
                set: token.labels.clone(),
                remove: Vec::new(),
            };
            self.journal
                .submit(op)
                .await
                .and_then(OpReply::into_raise)
                .map_err(|e| internal(&e))?;
        }
        self.store
            .append_action(&Action {
                at_unix_ms: now,
                actor: format!("token {}", token.id),
                verb: "host.enroll".into(),
                target: host.to_string(),
                reason: token.note.clone(),
                result: format!(
                    "certificate valid until {}",
                    bannin_proto::rfc3339(not_after_unix_ms)
                ),
            })
            .map_err(|e| internal(&e))?;
        self.store.make_durable().map_err(|e| internal(&e))?;
        tracing::info!(host.id = %host, token = %token.id, "Host enrolled");
        Ok(Enrolled {
            host_id: host.to_string(),
            cert_pem,
            ca_pem: self.authority.ca.cert_pem.clone(),
            not_after_unix_ms,
        })
    }
}

/// Cluster mode: a new token record not stored yet, with an id no collector
/// will make again (`t` and ten hex digits derived from its random secret),
/// and the `ID.SECRET` shown once.
pub fn new_token(
    by: &str,
    uses: u32,
    expires_in: Duration,
    labels: std::collections::BTreeMap<String, String>,
    note: String,
) -> (TokenRecord, String) {
    let secret = new_secret();
    let id = format!("t{}", &secret_hash(&format!("id:{secret}"))[..10]);
    let token = token_record(id, &secret, by, uses, expires_in, labels, note);
    let shown = format!("{}.{secret}", token.id);
    (token, shown)
}

/// A fresh token's record: `uses` (at least one), expiring `expires_in` from now.
fn token_record(
    id: String,
    secret: &str,
    by: &str,
    uses: u32,
    expires_in: Duration,
    labels: std::collections::BTreeMap<String, String>,
    note: String,
) -> TokenRecord {
    let now = bannin_proto::now_unix_ms();
    TokenRecord {
        id,
        secret_sha256: secret_hash(secret),
        uses: uses.max(1),
        used: 0,
        expires_unix_ms: now
            .saturating_add(i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX)),
        revoked: false,
        labels,
        created_by: by.to_owned(),
        created_unix_ms: now,
        hosts: Vec::new(),
        note,
    }
}

/// The enrollment error for a token [`TokenRecord::refusal`] refuses.
fn refused(id: &str, why: &str) -> EnrollError {
    match why {
        "revoked" => EnrollError::Revoked(id.to_owned()),
        "used_up" => EnrollError::UsedUp(id.to_owned()),
        _ => EnrollError::Expired(id.to_owned()),
    }
}

/// Serves the token endpoint until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    enrollment: Arc<Enrollment>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    crate::https::serve(
        "enrollment",
        listen,
        tls,
        shutdown,
        move |_, remote, request| {
            let enrollment = enrollment.clone();
            async move { handle(&enrollment, remote, request).await }
        },
    )
    .await
}

fn error_reply(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    crate::https::error(status, message)
}

async fn handle(
    enrollment: &Enrollment,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return error_reply(
            StatusCode::NOT_FOUND,
            "no such endpoint; agents post to /enroll",
        );
    }
    if request.method() != Method::POST {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "only POST");
    }
    let body = match crate::https::read_body(request.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e @ crate::https::BodyError::TooLarge(_)) => {
            return error_reply(e.status(), "an enrollment request is at most 64 KiB");
        }
        Err(e) => return error_reply(e.status(), &e.to_string()),
    };
    let parsed: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                &format!("not an enrollment request: {e}"),
            );
        }
    };
    match enrollment.enroll(remote.ip(), &parsed).await {
        Ok(enrolled) => crate::https::json(
            StatusCode::OK,
            &serde_json::to_value(&enrolled).unwrap_or_default(),
        ),
        Err(e) => error_reply(e.status(), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_come_from_the_key_alone() {
        let a = host_id_for(b"key one");
        assert_eq!(a, host_id_for(b"key one"));
        assert_ne!(a, host_id_for(b"key two"));
        assert!(
            a.as_str().starts_with("h-") && a.as_str().len() == 18,
            "{a}"
        );
    }

    #[test]
    fn tokens_split_and_hash() {
        assert_eq!(split_token(" t3.abc \n"), Some(("t3", "abc")));
        assert_eq!(split_token("nodot"), None);
        assert_eq!(secret_hash("abc").len(), 64);
        assert_ne!(new_secret(), new_secret());
    }
}
