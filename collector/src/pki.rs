//! The collector's certificate authority: `pki init` and `pki issue`.
//!
//! Layout of a PKI directory:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the Bannin CA |
//! | `collector.pem`, `collector.key` | the collector's server certificate |
//! | `agents/HOST.pem`, `agents/HOST.key` | an agent's client certificate |
//! | `operators/NAME.pem`, `operators/NAME.key` | an operator's client certificate |
//! | `collectors/NAME.pem`, `collectors/NAME.key` | a cluster collector's certificate (NATS client, log signer) |
//! | `nats/NAME.pem`, `nats/NAME.key` | a NATS server's certificate (clients and routes) |
//!
//! Keys are written with mode 0600; nothing is overwritten without `force`.
//! Client certificates carry their identity as described in
//! [`bannin_proto::identity`], with clientAuth as their only extended key usage.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bannin_proto::identity::PeerIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Default DNS name of the collector's certificate, which agents check.
pub const DEFAULT_SERVER_NAME: &str = "bannin-collector";

/// Errors of the PKI commands.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file exists and `force` was not given.
    #[error("{0} exists; pass --force to overwrite it")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA has not been created.
    #[error("no CA in {0}; run `bannin-collector pki init --dir {0}` first")]
    NoCa(PathBuf),
}

/// Certificate and key in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
}

/// Validity of an issued certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Not valid before.
    pub not_before: OffsetDateTime,
    /// Not valid after.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From five minutes ago (clock skew) to `secs` from now.
    pub fn secs(secs: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::seconds(secs),
        }
    }

    /// From now (less five minutes of clock skew) for `days`.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(days),
        }
    }
}

/// A CA held in memory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// CA certificate, PEM.
    pub cert_pem: String,
}

impl Ca {
    /// Creates a new CA valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Bannin");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let v = Validity::days(3650);
        params.not_before = v.not_before;
        params.not_after = v.not_after;
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
        })
    }

    /// Loads a CA from its PEM files.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key)?,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// Private key, PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues the collector's server certificate for these DNS names and addresses.
    pub fn issue_server(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(dns.to_vec())?;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            dns.first()
                .map(String::as_str)
                .unwrap_or(DEFAULT_SERVER_NAME),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, validity)
    }

    /// Issues a NATS server's certificate: `name` and `dns` as DNS names,
    /// `ips` as addresses, for serving clients and for the routes between
    /// the servers (which authenticate each other with it).
    pub fn issue_nats(
        &self,
        name: &str,
        dns: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut names = vec![name.to_owned()];
        names.extend(dns.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationalUnitName, "bannin-nats");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        self.sign(params, validity)
    }

    /// Issues a client certificate carrying `identity`.
    pub fn issue_client(
        &self,
        identity: &PeerIdentity,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        let uri = rcgen::string::Ia5String::try_from(identity.san_uri())?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let mut dn = DistinguishedName::new();
        match identity {
            PeerIdentity::Agent(h) => dn.push(DnType::CommonName, h.to_string()),
            PeerIdentity::Operator(o) => dn.push(DnType::CommonName, o.to_string()),
            // The subject NATS maps to a user (`verify_and_map`): no other
            // certificate of this CA carries this unit.
            PeerIdentity::Collector(c) => {
                dn.push(DnType::CommonName, c.to_string());
                dn.push(
                    DnType::OrganizationalUnitName,
                    bannin_proto::identity::COLLECTOR_OU,
                );
            }
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, validity)
    }

    /// Signs a client certificate for `identity` around `public_key` (from a
    /// CSR): nothing else of the request is used. clientAuth only, not a CA,
    /// this CA's `validity`. Returns the certificate's PEM.
    pub fn sign_client_key(
        &self,
        identity: &PeerIdentity,
        public_key: &impl rcgen::PublicKeyData,
        validity: Validity,
    ) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        let uri = rcgen::string::Ia5String::try_from(identity.san_uri())?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.to_string());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(public_key, &self.issuer)?.pem())
    }

    fn sign(&self, mut params: CertificateParams, validity: Validity) -> Result<Issued, PkiError> {
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Paths inside a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir(pub PathBuf);

impl PkiDir {
    /// CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.pem")
    }
    /// CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    /// Collector certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.0.join("collector.pem")
    }
    /// Collector key.
    pub fn server_key(&self) -> PathBuf {
        self.0.join("collector.key")
    }
    /// Certificate and key paths of a client identity.
    pub fn client(&self, identity: &PeerIdentity) -> (PathBuf, PathBuf) {
        let (dir, name) = match identity {
            PeerIdentity::Agent(h) => ("agents", h.as_str()),
            PeerIdentity::Operator(o) => ("operators", o.as_str()),
            PeerIdentity::Collector(c) => ("collectors", c.as_str()),
        };
        let d = self.0.join(dir);
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }

    /// Loads the CA of this directory.
    pub fn load_ca(&self) -> Result<Ca, PkiError> {
        if !self.ca_cert().exists() {
            return Err(PkiError::NoCa(self.0.clone()));
        }
        let cert = read(&self.ca_cert())?;
        let key = read(&self.ca_key())?;
        Ca::load(&cert, &key)
    }

    /// Creates the CA and the collector's server certificate.
    pub fn init(&self, dns: &[String], ips: &[IpAddr], force: bool) -> Result<(), PkiError> {
        for p in [
            self.ca_cert(),
            self.ca_key(),
            self.server_cert(),
            self.server_key(),
        ] {
            if p.exists() && !force {
                return Err(PkiError::Exists(p));
            }
        }
        let ca = Ca::generate("Bannin CA")?;
        let server = ca.issue_server(dns, ips, Validity::days(825))?;
        write_file(&self.ca_cert(), &ca.cert_pem, 0o644, force)?;
        write_file(&self.ca_key(), &ca.key_pem(), 0o600, force)?;
        write_file(&self.server_cert(), &server.cert_pem, 0o644, force)?;
        write_file(&self.server_key(), &server.key_pem, 0o600, force)?;
        Ok(())
    }

    /// Certificate and key paths of a NATS server's certificate.
    pub fn nats(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.0.join("nats");
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }

    /// Issues and writes a NATS server's certificate ([`Ca::issue_nats`]);
    /// returns (cert, key) paths.
    pub fn issue_nats(
        &self,
        name: &str,
        dns: &[String],
        ips: &[IpAddr],
        days: i64,
        force: bool,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        self.write_issued(self.nats(name), force, |ca| {
            ca.issue_nats(name, dns, ips, Validity::days(days))
        })
    }

    /// Writes what `issue` makes with this directory's CA to `paths` (cert,
    /// key; the key 0600), refusing to replace either without `force`.
    fn write_issued(
        &self,
        paths: (PathBuf, PathBuf),
        force: bool,
        issue: impl FnOnce(&Ca) -> Result<Issued, PkiError>,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let (cert_path, key_path) = paths;
        for p in [&cert_path, &key_path] {
            if p.exists() && !force {
                return Err(PkiError::Exists(p.clone()));
            }
        }
        let issued = issue(&self.load_ca()?)?;
        write_file(&cert_path, &issued.cert_pem, 0o644, force)?;
        write_file(&key_path, &issued.key_pem, 0o600, force)?;
        Ok((cert_path, key_path))
    }

    /// Issues and writes a client certificate; returns (cert, key) paths.
    pub fn issue(
        &self,
        identity: &PeerIdentity,
        days: i64,
        force: bool,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        self.write_issued(self.client(identity), force, |ca| {
            ca.issue_client(identity, Validity::days(days))
        })
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` with `mode`, refusing to replace an existing file unless `force`.
pub fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    if force && path.exists() {
        std::fs::remove_file(path).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::Exists(path.to_owned())
            } else {
                io(e)
            }
        })?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_private_keys_0600_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir(dir.path().to_owned());
        pki.init(&["bannin-collector".into()], &[], false)
            .expect("init");
        for key in [pki.ca_key(), pki.server_key()] {
            let mode = std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let before = std::fs::read(pki.ca_key()).expect("read");
        assert!(matches!(
            pki.init(&["bannin-collector".into()], &[], false),
            Err(PkiError::Exists(_))
        ));
        assert_eq!(std::fs::read(pki.ca_key()).expect("read"), before);
        pki.init(&["bannin-collector".into()], &[], true)
            .expect("forced");
        assert_ne!(std::fs::read(pki.ca_key()).expect("read"), before);
    }

    #[test]
    fn issued_client_certificate_carries_its_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = PkiDir(dir.path().to_owned());
        pki.init(&["bannin-collector".into()], &[], false)
            .expect("init");
        let id = PeerIdentity::Agent(bannin_proto::identity::HostId::new("web-01").expect("valid"));
        let (cert, _key) = pki.issue(&id, 30, false).expect("issue");
        let pem = std::fs::read_to_string(cert).expect("read");
        let material = bannin_proto::tls::TlsMaterial::from_pem(
            &std::fs::read_to_string(pki.ca_cert()).expect("ca"),
            &pem,
            &std::fs::read_to_string(pki.client(&id).1).expect("key"),
        )
        .expect("material");
        assert_eq!(material.own_identity().expect("identity"), id);
        assert!(matches!(
            pki.issue(&id, 30, false),
            Err(PkiError::Exists(_))
        ));
    }
}
