//! Who published a message of the cluster log, proven.
//!
//! NATS admits only collectors' certificates (the shipped configuration maps
//! each collector certificate's subject to a user and has no other user), so
//! an agent's or operator's certificate cannot reach the log at all. Behind
//! that, appliers do not trust the log blindly: every message a collector
//! publishes carries its collector certificate ([`SIGNER_HEADER`]) and a
//! signature ([`SIGNATURE_HEADER`]) over everything an applier acts on — the
//! subject, the message id (JetStream's duplicate key), the operation id, the
//! host a batch belongs to, the payload's encoding and the payload's SHA-256
//! ([`signed_bytes`]). An applier accepts a message only when
//!
//! - the certificate chains to the Bannin CA and was valid when JetStream
//!   stored the message (so a collector joining later still applies the
//!   history signed with certificates since expired);
//! - it names a collector (`urn:bannin:collector:NAME`);
//! - the signature holds;
//! - an operation's id names that same collector (`NAME:…`): one collector
//!   cannot publish an operation in another's name.
//!
//! Anything else is refused ([`Refusal`]): applied as nothing (the log's
//! position moves past it), logged, counted and shown by `bannin cluster`.
//! Every applier decides alike, from the message alone.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::HeaderMap;
use bannin_proto::identity::{CollectorName, PeerIdentity};
use bannin_proto::tls::{CertificateChecker, MessageSigner, TlsError, TlsMaterial};
use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use sha2::Digest as _;

/// Header: the publishing collector's certificate (DER, base64).
pub const SIGNER_HEADER: &str = "Bannin-Signer";
/// Header: `SCHEME:SIGNATURE` — the TLS 1.3 signature scheme's code point and
/// the signature (base64) over [`signed_bytes`].
pub const SIGNATURE_HEADER: &str = "Bannin-Signature";
/// The headers covered by the signature, besides the subject and payload.
const COVERED: [&str; 4] = [
    // JetStream's duplicate key (`async_nats::header::NATS_MESSAGE_ID`).
    "Nats-Msg-Id",
    super::OP_HEADER,
    super::HOST_HEADER,
    super::ENCODING_HEADER,
];
/// Certificates remembered after their chain was checked.
const MAX_CACHED: usize = 1024;

/// Why a message of the log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No certificate or signature: not published by a collector of this
    /// version (or published by something that is not a collector).
    #[error("unsigned")]
    Unsigned,
    /// The headers are not what a collector writes.
    #[error("malformed signature headers: {0}")]
    Malformed(&'static str),
    /// The certificate does not chain to the Bannin CA, or was not valid
    /// when the message was stored.
    #[error("signer's certificate refused: {0}")]
    Certificate(String),
    /// The certificate is not a collector's.
    #[error("signed with a certificate of {0}, not of a collector")]
    NotACollector(String),
    /// The signature does not match.
    #[error("signature by collector {0} does not match the message")]
    BadSignature(String),
    /// An operation claiming another collector's name.
    #[error("operation {op} claims to come from another collector than its signer {signer}")]
    Impersonation {
        /// Who signed.
        signer: String,
        /// The operation's id.
        op: String,
    },
}

/// The bytes a signature covers: a fixed prefix, the subject, the covered
/// headers (empty when absent) and the payload's SHA-256, one per line.
pub fn signed_bytes(subject: &str, headers: Option<&HeaderMap>, payload: &[u8]) -> Vec<u8> {
    let mut out = b"bannin-log/1\n".to_vec();
    out.extend_from_slice(subject.as_bytes());
    out.push(b'\n');
    for name in COVERED {
        if let Some(value) = headers.and_then(|h| h.get(name)) {
            out.extend_from_slice(value.as_str().as_bytes());
        }
        out.push(b'\n');
    }
    out.extend_from_slice(bannin_proto::hex(sha2::Sha256::digest(payload)).as_bytes());
    out
}

/// This collector's signing side: its certificate and key.
pub struct Signer {
    signer: MessageSigner,
    cert: String,
    name: CollectorName,
}

impl Signer {
    /// The signer of `material` (`[cluster.tls]`): refused unless its
    /// certificate is a collector certificate for `name`.
    pub fn new(material: &TlsMaterial, name: &str) -> Result<Self, String> {
        let leaf = material
            .chain
            .first()
            .ok_or_else(|| "the certificate file holds no certificate".to_owned())?;
        let wanted = format!(
            "cluster mode needs a collector certificate for {name:?} in [cluster.tls] (`bannin-collector pki issue collector {name}`)"
        );
        let name = match PeerIdentity::from_certificate(leaf) {
            Ok(PeerIdentity::Collector(c)) if c.as_str() == name => c,
            Ok(other) => return Err(format!("the certificate is for {other}: {wanted}")),
            Err(e) => return Err(format!("{e}: {wanted}")),
        };
        let signer = MessageSigner::new(material).map_err(|e| e.to_string())?;
        Ok(Self {
            signer,
            cert: base64::engine::general_purpose::STANDARD_NO_PAD.encode(leaf.as_ref()),
            name,
        })
    }

    /// Adds the certificate and the signature over `subject`, the covered
    /// headers already in `headers`, and `payload`.
    pub fn sign(
        &self,
        subject: &str,
        headers: &mut HeaderMap,
        payload: &[u8],
    ) -> Result<(), TlsError> {
        let (scheme, signature) =
            self.signer
                .sign(&signed_bytes(subject, Some(headers), payload))?;
        headers.insert(SIGNER_HEADER, self.cert.as_str());
        headers.insert(
            SIGNATURE_HEADER,
            format!(
                "{scheme}:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(signature)
            )
            .as_str(),
        );
        Ok(())
    }

    /// Whose signature this is.
    pub fn name(&self) -> &CollectorName {
        &self.name
    }
}

/// The appliers' side: checks who signed each message.
pub struct Verifier {
    checker: CertificateChecker,
    /// Certificates whose chain was checked: SHA-256 of the DER → the
    /// collector it names (or why it was refused), and its validity period.
    known: Mutex<HashMap<[u8; 32], Known>>,
}

#[derive(Clone)]
struct Known {
    identity: Result<CollectorName, Refusal>,
    not_before: i64,
    not_after: i64,
}

impl Verifier {
    /// A verifier trusting the CA of `material` (the collector's own `[tls]`).
    pub fn new(material: &TlsMaterial) -> Result<Self, TlsError> {
        Ok(Self {
            checker: CertificateChecker::new(material)?,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The collector that published a message of `subject` with `headers`
    /// and `payload`, stored by JetStream at `at_unix_ms`.
    pub fn check(
        &self,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        at_unix_ms: i64,
    ) -> Result<CollectorName, Refusal> {
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        let (Some(cert), Some(signature)) = (header(SIGNER_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err(Refusal::Unsigned);
        };
        let b64 = &base64::engine::general_purpose::STANDARD_NO_PAD;
        let cert = CertificateDer::from(
            b64.decode(cert)
                .map_err(|_| Refusal::Malformed("certificate"))?,
        );
        let (scheme, signature) = signature
            .split_once(':')
            .ok_or(Refusal::Malformed("signature"))?;
        let scheme: u16 = scheme.parse().map_err(|_| Refusal::Malformed("scheme"))?;
        let signature = b64
            .decode(signature)
            .map_err(|_| Refusal::Malformed("signature"))?;
        let name = self.identity(&cert, at_unix_ms)?;
        bannin_proto::tls::verify_message(
            &signed_bytes(subject, headers, payload),
            &cert,
            scheme,
            signature,
        )
        .map_err(|_| Refusal::BadSignature(name.to_string()))?;
        match subject {
            super::OP_SUBJECT => {
                let op = header(super::OP_HEADER).ok_or(Refusal::Malformed("operation id"))?;
                if op.split(':').next() != Some(name.as_str()) {
                    return Err(Refusal::Impersonation {
                        signer: name.to_string(),
                        op: op.to_owned(),
                    });
                }
            }
            super::BATCH_SUBJECT if header(super::HOST_HEADER).is_none() => {
                return Err(Refusal::Malformed("host"));
            }
            _ => {}
        }
        Ok(name)
    }

    /// The collector `cert` names, if the CA issued it and it was valid at
    /// `at_unix_ms`; the chain is checked once per certificate.
    fn identity(
        &self,
        cert: &CertificateDer<'_>,
        at_unix_ms: i64,
    ) -> Result<CollectorName, Refusal> {
        let digest: [u8; 32] = sha2::Sha256::digest(cert.as_ref()).into();
        let at = at_unix_ms.div_euclid(1000);
        let cached = bannin_proto::lock(&self.known).get(&digest).cloned();
        let known = match cached {
            Some(k) => k,
            None => {
                let (not_before, not_after) = validity(cert)?;
                // Checked as of a moment inside its validity: whether the
                // message fell inside it is checked below, per message.
                let probe = u64::try_from(at.clamp(not_before, not_after)).unwrap_or(0);
                let identity = match self.checker.check(cert, probe) {
                    Err(e) => Err(Refusal::Certificate(e.to_string())),
                    Ok(()) => match PeerIdentity::from_certificate(cert) {
                        Ok(PeerIdentity::Collector(c)) => Ok(c),
                        Ok(other) => Err(Refusal::NotACollector(other.to_string())),
                        Err(e) => Err(Refusal::Certificate(e.to_string())),
                    },
                };
                let known = Known {
                    identity,
                    not_before,
                    not_after,
                };
                let mut table = bannin_proto::lock(&self.known);
                if table.len() >= MAX_CACHED {
                    table.clear();
                }
                table.insert(digest, known.clone());
                known
            }
        };
        let name = known.identity?;
        if at < known.not_before || at > known.not_after {
            return Err(Refusal::Certificate(format!(
                "collector {name}'s certificate was not valid when the message was stored"
            )));
        }
        Ok(name)
    }
}

/// A certificate's validity period (Unix seconds).
fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), Refusal> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| Refusal::Certificate(e.to_string()))?;
    let v = parsed.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};
    use bannin_proto::identity::{HostId, OperatorName};

    fn material(ca: &Ca, identity: &PeerIdentity, validity: Validity) -> TlsMaterial {
        let issued = ca.issue_client(identity, validity).expect("issue");
        TlsMaterial::from_pem(&ca.cert_pem, &issued.cert_pem, &issued.key_pem).expect("material")
    }

    fn collector(name: &str) -> PeerIdentity {
        PeerIdentity::Collector(CollectorName::new(name).expect("name"))
    }

    fn op_headers(op: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(super::super::OP_HEADER, op);
        h.insert("Nats-Msg-Id", op);
        h
    }

    fn now() -> i64 {
        bannin_proto::now_unix_ms()
    }

    #[test]
    fn a_collector_signs_and_every_collector_of_the_ca_verifies() {
        let ca = Ca::generate("test CA").expect("ca");
        let a = material(&ca, &collector("a"), Validity::days(30));
        let signer = Signer::new(&a, "a").expect("signer");
        let verifier = Verifier::new(&a).expect("verifier");
        let mut headers = op_headers("a:1:1");
        signer
            .sign(super::super::OP_SUBJECT, &mut headers, b"payload")
            .expect("sign");
        assert_eq!(
            verifier
                .check(super::super::OP_SUBJECT, Some(&headers), b"payload", now())
                .expect("verified")
                .as_str(),
            "a"
        );
        // Anything covered, changed after signing, breaks it.
        assert!(matches!(
            verifier.check(super::super::OP_SUBJECT, Some(&headers), b"payloaD", now()),
            Err(Refusal::BadSignature(_))
        ));
        assert!(matches!(
            verifier.check(
                super::super::BATCH_SUBJECT,
                Some(&headers),
                b"payload",
                now()
            ),
            Err(Refusal::BadSignature(_))
        ));
        let mut other_id = headers.clone();
        other_id.insert("Nats-Msg-Id", "a:1:2");
        assert!(matches!(
            verifier.check(super::super::OP_SUBJECT, Some(&other_id), b"payload", now()),
            Err(Refusal::BadSignature(_))
        ));
        // No headers at all.
        assert_eq!(
            verifier.check(super::super::OP_SUBJECT, None, b"payload", now()),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn only_a_collector_of_this_ca_in_its_own_name_is_believed() {
        let ca = Ca::generate("test CA").expect("ca");
        let a = material(&ca, &collector("a"), Validity::days(30));
        let verifier = Verifier::new(&a).expect("verifier");
        let signed = |m: &TlsMaterial, name: &str, op: &str| {
            let signer = Signer::new(m, name).expect("signer");
            let mut h = op_headers(op);
            signer
                .sign(super::super::OP_SUBJECT, &mut h, b"x")
                .expect("sign");
            h
        };
        // In another collector's name.
        assert!(matches!(
            verifier.check(
                super::super::OP_SUBJECT,
                Some(&signed(&a, "a", "b:1:1")),
                b"x",
                now()
            ),
            Err(Refusal::Impersonation { .. })
        ));
        // A collector certificate of another CA.
        let other = Ca::generate("other CA").expect("ca");
        let foreign = material(&other, &collector("a"), Validity::days(30));
        assert!(matches!(
            verifier.check(
                super::super::OP_SUBJECT,
                Some(&signed(&foreign, "a", "a:1:1")),
                b"x",
                now()
            ),
            Err(Refusal::Certificate(_))
        ));
        // An agent's and an operator's certificate of this CA cannot even
        // make a signer, and their signatures are not believed.
        for identity in [
            PeerIdentity::Agent(HostId::new("web-01").expect("host")),
            PeerIdentity::Operator(OperatorName::new("alice").expect("name")),
        ] {
            let m = material(&ca, &identity, Validity::days(30));
            assert!(Signer::new(&m, "a").is_err());
            let key = MessageSigner::new(&m).expect("key");
            let mut h = op_headers("a:1:1");
            let (scheme, sig) = key
                .sign(&signed_bytes(super::super::OP_SUBJECT, Some(&h), b"x"))
                .expect("sign");
            let b64 = &base64::engine::general_purpose::STANDARD_NO_PAD;
            h.insert(SIGNER_HEADER, b64.encode(m.chain[0].as_ref()).as_str());
            h.insert(
                SIGNATURE_HEADER,
                format!("{scheme}:{}", b64.encode(sig)).as_str(),
            );
            assert!(matches!(
                verifier.check(super::super::OP_SUBJECT, Some(&h), b"x", now()),
                Err(Refusal::NotACollector(_))
            ));
        }
        // A signer configured under another name than its certificate's.
        assert!(Signer::new(&a, "b").is_err());
    }

    #[test]
    fn a_message_is_judged_by_when_jetstream_stored_it() {
        let ca = Ca::generate("test CA").expect("ca");
        let a = material(&ca, &collector("a"), Validity::days(30));
        let verifier = Verifier::new(&a).expect("verifier");
        let mut h = op_headers("a:1:1");
        Signer::new(&a, "a")
            .expect("signer")
            .sign(super::super::OP_SUBJECT, &mut h, b"x")
            .expect("sign");
        // Stored while the certificate was valid: believed, even read later.
        assert!(
            verifier
                .check(super::super::OP_SUBJECT, Some(&h), b"x", now())
                .is_ok()
        );
        // Stored before it was issued, or after it expired: not.
        let day = 86_400_000;
        for at in [now() - 2 * day, now() + 31 * day] {
            assert!(matches!(
                verifier.check(super::super::OP_SUBJECT, Some(&h), b"x", at),
                Err(Refusal::Certificate(_))
            ));
        }
    }
}
