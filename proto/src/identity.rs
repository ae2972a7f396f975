//! The identity convention: how a host id or an operator name is carried in a certificate.
//!
//! Every certificate the Bannin CA issues to a client carries exactly one URI
//! subject alternative name of one of these forms:
//!
//! - `urn:bannin:agent:<host-id>` for an agent,
//! - `urn:bannin:operator:<name>` for an operator,
//! - `urn:bannin:collector:<name>` for a collector in cluster mode (its
//!   client certificate to NATS, and the key that signs what it publishes
//!   to the cluster log).
//!
//! The common name repeats the name for humans but is never trusted. A
//! certificate with no such URI, or with more than one, has no identity and its
//! connection is refused.

use std::fmt;

/// URI prefix of an agent identity.
pub const AGENT_URI_PREFIX: &str = "urn:bannin:agent:";
/// URI prefix of an operator identity.
pub const OPERATOR_URI_PREFIX: &str = "urn:bannin:operator:";
/// URI prefix of a collector identity (cluster mode).
pub const COLLECTOR_URI_PREFIX: &str = "urn:bannin:collector:";
/// Organizational unit of a collector certificate's subject: NATS maps a
/// client certificate to a user by its subject (`verify_and_map`), and only
/// the collectors' subjects are users (`CN=<name>,OU=bannin-collector`).
pub const COLLECTOR_OU: &str = "bannin-collector";
/// Longest host id or operator name.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name or certificate does not carry a usable identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("name is {0} bytes long, longer than {MAX_NAME_LEN}")]
    TooLong(usize),
    /// The name holds a character outside `[A-Za-z0-9._-]` or starts with `.` or `-`.
    #[error(
        "name {0:?} may only hold ASCII letters, digits, '.', '_' and '-', and may not start with '.' or '-'"
    )]
    BadCharacter(String),
    /// The certificate could not be parsed.
    #[error("certificate is not valid X.509 DER: {0}")]
    BadCertificate(String),
    /// The certificate carries no Bannin identity URI.
    #[error("certificate carries no urn:bannin: identity")]
    Missing,
    /// The certificate carries more than one Bannin identity URI.
    #[error("certificate carries {0} urn:bannin: identities; exactly one is allowed")]
    Ambiguous(usize),
}

fn validate(name: &str) -> Result<(), IdentityError> {
    if name.is_empty() {
        return Err(IdentityError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(IdentityError::TooLong(name.len()));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok_chars || name.starts_with(['.', '-']) {
        return Err(IdentityError::BadCharacter(name.to_owned()));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a name.
            pub fn new(name: impl Into<String>) -> Result<Self, IdentityError> {
                let name = name.into();
                validate(&name)?;
                Ok(Self(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// A host id: the agent's identity, as carried in its certificate.
    HostId
);
name_type!(
    /// An operator's name, as carried in their certificate.
    OperatorName
);
name_type!(
    /// A collector's name in cluster mode (`[cluster] name`), as carried in
    /// its collector certificate.
    CollectorName
);

/// Who is on the other end of an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// An agent, with its host id.
    Agent(HostId),
    /// An operator, with their name.
    Operator(OperatorName),
    /// A collector of a cluster, with its name: admitted by NATS and trusted
    /// as the signer of what it publishes to the cluster log; never an agent
    /// or an operator.
    Collector(CollectorName),
}

impl PeerIdentity {
    /// The URI subject alternative name that carries this identity.
    pub fn san_uri(&self) -> String {
        match self {
            PeerIdentity::Agent(h) => format!("{AGENT_URI_PREFIX}{h}"),
            PeerIdentity::Operator(o) => format!("{OPERATOR_URI_PREFIX}{o}"),
            PeerIdentity::Collector(c) => format!("{COLLECTOR_URI_PREFIX}{c}"),
        }
    }

    /// Parses one identity URI. `Ok(None)` for a URI that is not a Bannin identity.
    pub fn from_uri(uri: &str) -> Result<Option<Self>, IdentityError> {
        if let Some(h) = uri.strip_prefix(AGENT_URI_PREFIX) {
            return Ok(Some(PeerIdentity::Agent(HostId::new(h)?)));
        }
        if let Some(o) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
            return Ok(Some(PeerIdentity::Operator(OperatorName::new(o)?)));
        }
        if let Some(c) = uri.strip_prefix(COLLECTOR_URI_PREFIX) {
            return Ok(Some(PeerIdentity::Collector(CollectorName::new(c)?)));
        }
        Ok(None)
    }

    /// Reads the identity from a DER-encoded end-entity certificate.
    pub fn from_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = Vec::new();
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name
                    && let Some(id) = Self::from_uri(uri)?
                {
                    found.push(id);
                }
            }
        }
        match found.len() {
            0 => Err(IdentityError::Missing),
            1 => Ok(found.remove(0)),
            n => Err(IdentityError::Ambiguous(n)),
        }
    }
}

/// SHA-256 of a public key's bits (a certificate's or a CSR's
/// `subjectPublicKey`), lowercase hex. A host id made at enrollment is `h-` and
/// its first 16 digits; a revocation records all 64.
pub fn key_sha256(public_key: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(public_key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`key_sha256`] of a DER certificate's public key.
pub fn certificate_key_sha256(der: &[u8]) -> Result<String, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    Ok(key_sha256(&cert.public_key().subject_public_key.data))
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Agent(h) => write!(f, "agent {h}"),
            PeerIdentity::Operator(o) => write!(f, "operator {o}"),
            PeerIdentity::Collector(c) => write!(f, "collector {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(HostId::new("web-01.example_com").is_ok());
        assert_eq!(HostId::new(""), Err(IdentityError::Empty));
        assert!(matches!(
            HostId::new("a/b"),
            Err(IdentityError::BadCharacter(_))
        ));
        assert!(matches!(
            HostId::new("../x"),
            Err(IdentityError::BadCharacter(_))
        ));
        assert!(matches!(
            HostId::new("-x"),
            Err(IdentityError::BadCharacter(_))
        ));
        assert!(matches!(
            HostId::new("x".repeat(129)),
            Err(IdentityError::TooLong(129))
        ));
    }

    #[test]
    fn uri_round_trips() {
        let id = PeerIdentity::Operator(OperatorName::new("alice").expect("valid"));
        assert_eq!(PeerIdentity::from_uri(&id.san_uri()), Ok(Some(id)));
        assert_eq!(PeerIdentity::from_uri("https://example.org"), Ok(None));
    }

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for u in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*u).expect("ia5"),
            ));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    #[test]
    fn identity_is_read_from_the_certificate() {
        let der = cert_with_uris(&["urn:bannin:agent:web-01"]);
        assert_eq!(
            PeerIdentity::from_certificate(&der),
            Ok(PeerIdentity::Agent(HostId::new("web-01").expect("valid")))
        );
    }

    #[test]
    fn certificates_without_exactly_one_identity_are_refused() {
        assert_eq!(
            PeerIdentity::from_certificate(&cert_with_uris(&[])),
            Err(IdentityError::Missing)
        );
        assert_eq!(
            PeerIdentity::from_certificate(&cert_with_uris(&[
                "urn:bannin:agent:a",
                "urn:bannin:operator:b"
            ])),
            Err(IdentityError::Ambiguous(2))
        );
        assert!(matches!(
            PeerIdentity::from_certificate(&cert_with_uris(&["urn:bannin:agent:../etc"])),
            Err(IdentityError::BadCharacter(_))
        ));
    }
}
