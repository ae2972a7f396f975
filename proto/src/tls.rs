//! The one mTLS configuration every side builds from.
//!
//! - TLS 1.3 only, ring as the crypto provider, ALPN `h2`.
//! - The collector requires a client certificate chained to the Bannin CA
//!   ([`server_config`]); webpki checks the chain, the validity period and the
//!   clientAuth extended key usage. An accepted connection then needs exactly one
//!   Bannin identity in its certificate ([`crate::identity`]).
//! - Agents and operators trust only the Bannin CA and present their own
//!   certificate ([`client_config`]).
//!
//! [`TlsIncoming`] does the accepting side: each TCP connection gets its own
//! handshake task with a deadline, refusals are logged with the peer address and
//! reason, and only authenticated connections reach tonic, as [`PeerStream`]s
//! whose [`PeerInfo`] tonic puts in every request's extensions.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
pub use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::identity::{IdentityError, PeerIdentity};

/// How long a peer may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it a peer that has spoken waits for a slot within its deadline.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 512;

/// How the accept loop sheds load instead of waiting: a stranger holding idle
/// sockets must never make an operator's call or an agent's batch wait.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Connections that have not yet sent their first byte, from everyone:
    /// cheap (a socket and a timer), so many; past it new ones are closed at once.
    pub max_waiting: usize,
    /// Handshakes working at once (they cost CPU), from everyone: a slot is
    /// held only while a handshake has a client flight to work on, never while
    /// it waits for the peer ([`SlotStream`]); past it a handshake waits for a
    /// slot in arrival order, within its deadline, holding its place in
    /// `max_waiting` (which bounds the queue). An idle socket, or one stalled
    /// inside its ClientHello, never takes a slot.
    pub max_handshakes: usize,
    /// Connections in handshake at once from one source address (agents behind
    /// one NAT share one; a flood from one host fills only its own share).
    pub per_source: usize,
    /// How long a new connection may stay silent before its first byte.
    pub first_byte: Duration,
    /// How long a new connection has to send its whole ClientHello (a real
    /// client sends it in one write; a peer that stops inside it is closed
    /// then, having never held a handshake slot).
    pub client_hello: Duration,
    /// How long the whole handshake may take.
    pub handshake: Duration,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        Self {
            max_waiting: 8192,
            max_handshakes: MAX_CONCURRENT_HANDSHAKES,
            per_source: 64,
            first_byte: Duration::from_secs(3),
            client_hello: Duration::from_secs(3),
            handshake: HANDSHAKE_TIMEOUT,
        }
    }
}

/// What the accept loop shed, since it started.
#[derive(Debug, Default)]
pub struct AcceptStats {
    /// Closed at once: every waiting or handshake slot was taken.
    pub shed_global: std::sync::atomic::AtomicU64,
    /// Closed at once: the source address had its share in handshake.
    pub shed_per_source: std::sync::atomic::AtomicU64,
    /// Closed: no first byte in time (idle sockets, slowloris).
    pub silent: std::sync::atomic::AtomicU64,
    /// Closed: the ClientHello did not arrive whole in time (a stalled handshake).
    pub stalled: std::sync::atomic::AtomicU64,
    /// Closed: the handshake did not finish in time (queueing for a slot included).
    pub slow: std::sync::atomic::AtomicU64,
}

impl AcceptStats {
    fn total(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.shed_global.load(Relaxed)
            + self.shed_per_source.load(Relaxed)
            + self.silent.load(Relaxed)
            + self.stalled.load(Relaxed)
            + self.slow.load(Relaxed)
    }
}

/// Connections in progress per source address; a slot is given back when dropped.
#[derive(Default)]
pub struct PerSource(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's share of its source address (see [`PerSource::take`]).
pub struct SourceSlot {
    table: Arc<PerSource>,
    ip: std::net::IpAddr,
}

impl PerSource {
    /// A slot for one more connection from `ip`, unless it has `cap` already.
    pub fn take(table: &Arc<PerSource>, ip: std::net::IpAddr, cap: usize) -> Option<SourceSlot> {
        let mut map = crate::lock(&table.0);
        let n = map.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = crate::lock(&self.table.0);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Errors building a TLS configuration or connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {source}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file held no item of the expected kind.
    #[error("{path} holds no {what}")]
    Empty {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A key file can be read by users other than its owner.
    #[error(
        "private key {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file's metadata could not be read.
    #[error("cannot stat {path}: {source}")]
    Stat {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// rustls refused the material.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The collector address is not usable.
    #[error("invalid collector address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why it is not usable.
        reason: String,
    },
    /// Connecting to the collector failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// PEM material of one side: the CA it trusts, its own chain and key, and
/// optionally certificate revocation lists.
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    /// CA certificates to trust.
    pub ca: Vec<CertificateDer<'static>>,
    /// Own certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Own private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Revoked certificates (checked by the collector only).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Paths of a side's PEM files.
#[derive(Clone, Debug)]
pub struct TlsPaths {
    /// CA certificate(s).
    pub ca: PathBuf,
    /// Own certificate chain.
    pub cert: PathBuf,
    /// Own private key; must not be readable by group or others.
    pub key: PathBuf,
}

impl TlsMaterial {
    /// Loads PEM files, refusing a key readable by other users.
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        check_key_permissions(&paths.key)?;
        let ca = read_certs(&paths.ca, "CA certificate")?;
        let chain = read_certs(&paths.cert, "certificate")?;
        let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|source| TlsError::Pem {
            what: "private key",
            path: paths.key.clone(),
            source,
        })?;
        Ok(Self {
            ca,
            chain,
            key: Arc::new(key),
            crls: Vec::new(),
        })
    }

    /// Builds material from in-memory PEM strings (tests, `bannin up`).
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Self, TlsError> {
        let parse = |what: &'static str, pem: &str| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| TlsError::Pem {
                    what,
                    path: PathBuf::from("<memory>"),
                    source,
                })
        };
        let key =
            PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|source| TlsError::Pem {
                what: "private key",
                path: PathBuf::from("<memory>"),
                source,
            })?;
        Ok(Self {
            ca: parse("CA certificate", ca)?,
            chain: parse("certificate", cert)?,
            key: Arc::new(key),
            crls: Vec::new(),
        })
    }

    /// The identity in this side's own leaf certificate.
    pub fn own_identity(&self) -> Result<PeerIdentity, IdentityError> {
        let leaf = self.chain.first().ok_or(IdentityError::Missing)?;
        PeerIdentity::from_certificate(leaf)
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots.add(ca.clone())?;
        }
        Ok(roots)
    }
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Refuses a private key file that group or others can read or write.
pub fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Stat {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Signs messages with a side's own key (the collector's, in cluster mode:
/// what it publishes to the cluster log), with a TLS 1.3 signature scheme.
pub struct MessageSigner(Box<dyn rustls::sign::Signer>);

impl MessageSigner {
    /// The signer of `material`'s key (ECDSA, Ed25519 or RSA-PSS).
    pub fn new(material: &TlsMaterial) -> Result<Self, TlsError> {
        let key = provider()
            .key_provider
            .load_private_key(material.key.clone_key())?;
        let signer = key
            .choose_scheme(&[
                rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
                rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
                rustls::SignatureScheme::ED25519,
                rustls::SignatureScheme::RSA_PSS_SHA256,
            ])
            .ok_or_else(|| {
                TlsError::Rustls(rustls::Error::General(
                    "the key signs with no TLS 1.3 scheme".into(),
                ))
            })?;
        Ok(Self(signer))
    }

    /// `message` signed: the scheme (its TLS code point) and the signature.
    pub fn sign(&self, message: &[u8]) -> Result<(u16, Vec<u8>), TlsError> {
        Ok((u16::from(self.0.scheme()), self.0.sign(message)?))
    }
}

/// Checks that `signature` by `scheme` (a TLS 1.3 code point) over
/// `message` was made with the key of `cert`.
pub fn verify_message(
    message: &[u8],
    cert: &CertificateDer<'_>,
    scheme: u16,
    signature: Vec<u8>,
) -> Result<(), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let public_key = parsed.public_key().subject_public_key.data.as_ref();
    let scheme = rustls::SignatureScheme::from(scheme);
    let refused = || TlsError::Rustls(rustls::Error::General("bad signature".into()));
    let algorithms = provider()
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(refused)?;
    algorithms
        .iter()
        .any(|alg| {
            alg.verify_signature(public_key, message, &signature)
                .is_ok()
        })
        .then_some(())
        .ok_or_else(refused)
}

/// Checks a client certificate as the collector's port would, as of `at`:
/// chained to `ca`, valid then, for client authentication.
pub struct CertificateChecker(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl CertificateChecker {
    /// A checker trusting the CA certificates of `material`.
    pub fn new(material: &TlsMaterial) -> Result<Self, TlsError> {
        Ok(Self(
            WebPkiClientVerifier::builder_with_provider(Arc::new(material.roots()?), provider())
                .build()?,
        ))
    }

    /// Whether `cert` (with no intermediates) is one the CA issued for
    /// client authentication and valid at `at_unix_secs`.
    pub fn check(&self, cert: &CertificateDer<'_>, at_unix_secs: u64) -> Result<(), TlsError> {
        self.0.verify_client_cert(
            cert,
            &[],
            rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(at_unix_secs)),
        )?;
        Ok(())
    }
}

/// The collector's server configuration: client certificates are mandatory and
/// must chain to the Bannin CA (and not be on a revocation list, if any).
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsError> {
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(material.roots()?), provider());
    if !material.crls.is_empty() {
        verifier = verifier.with_crls(material.crls.clone());
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.build()?)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption: the client-certificate verifier (chain, expiry, CRLs) runs
    // only on a full handshake, and a resumed session would carry a certificate
    // checked hours ago. rustls's default cache (256 sessions) and two tickets
    // per handshake bought nothing for a fleet of thousands anyway.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The collector's HTTPS endpoints (the Alertmanager webhook): HTTP/1.1, a
/// client certificate optional — when one is presented it must chain to the
/// Bannin CA, and callers without one authenticate another way (a bearer token).
/// TLS 1.3 only, like the gRPC port: Alertmanager (Go ≥ 1.13), curl and every
/// current HTTP client speak it, and nothing older needs to reach these ports.
pub fn https_server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsError> {
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(material.roots()?), provider())
            .allow_unauthenticated();
    if !material.crls.is_empty() {
        verifier = verifier.with_crls(material.crls.clone());
    }
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.build()?)
        .with_single_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption, as on the gRPC port (see `server_config`).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client that trusts only the Bannin CA and presents no certificate (tools,
/// tests of the HTTPS endpoints).
pub fn anonymous_client_config(material: &TlsMaterial) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(material.roots()?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An agent's or operator's client configuration: trusts only the Bannin CA,
/// presents its own certificate.
pub fn client_config(material: &TlsMaterial) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(material.roots()?)
        .with_client_auth_cert(material.chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Who is calling: put in every request's extensions by tonic.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's TCP address.
    pub remote_addr: SocketAddr,
    /// The identity in the peer's certificate.
    pub identity: PeerIdentity,
    /// SHA-256 of the certificate's public key, hex ([`crate::identity::key_sha256`]):
    /// what a revocation binds, whatever id a certificate for the key names.
    pub key_sha256: String,
}

impl PeerInfo {
    /// The peer of a request served over [`TlsIncoming`].
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }
}

/// An authenticated server-side TLS connection.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<SlotStream>,
    info: PeerInfo,
}

impl PeerStream {
    /// Who is on the other end.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a connection was refused before reaching the gRPC layer.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not finish its handshake in time.
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed (unknown CA, expired, no certificate, revoked …).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The certificate was valid but carries no usable identity.
    #[error("certificate has no usable identity: {0}")]
    Identity(#[from] IdentityError),
}

/// A TCP stream whose reads, while its handshake runs, need a handshake slot.
///
/// A TLS server spends its CPU between reading a client flight and writing its
/// answer; in between it only waits. So a slot is taken before each read and
/// given back as soon as a read finds nothing to do (`Pending`): a peer that
/// stops mid-handshake — after five bytes of a record or after a whole
/// ClientHello — holds a waiting place, never a slot, and the slots go to
/// handshakes that have work. Once the handshake is done the stream is a plain
/// TCP stream ([`SlotStream::ungate`]).
pub struct SlotStream {
    tcp: TcpStream,
    gate: Option<SlotGate>,
}

struct SlotGate {
    slots: tokio_util::sync::PollSemaphore,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl SlotStream {
    fn new(tcp: TcpStream) -> Self {
        Self { tcp, gate: None }
    }

    /// From now on, reads need a slot of `slots`; `permit` is one already held.
    fn gate(&mut self, slots: Arc<Semaphore>, permit: tokio::sync::OwnedSemaphorePermit) {
        self.gate = Some(SlotGate {
            slots: tokio_util::sync::PollSemaphore::new(slots),
            permit: Some(permit),
        });
    }

    /// Reads no longer need a slot (the handshake is over); any held is given back.
    fn ungate(&mut self) {
        self.gate = None;
    }
}

impl AsyncRead for SlotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(gate) = &mut this.gate
            && gate.permit.is_none()
        {
            match gate.slots.poll_acquire(cx) {
                Poll::Ready(Some(permit)) => gate.permit = Some(permit),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::other("handshake slots closed")));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if read.is_pending()
            && let Some(gate) = &mut this.gate
        {
            // Nothing to work on until the peer speaks: the slot goes to a
            // handshake that has work.
            gate.permit = None;
        }
        read
    }
}

impl AsyncWrite for SlotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Where one server-side handshake stands when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The ClientHello had not fully arrived.
    ClientHello,
    /// After the ClientHello.
    Handshake,
}

/// Performs the server side of one handshake and reads the peer identity:
/// the ClientHello read without a slot by `hello_deadline`, then the rest,
/// reading only while holding a slot of `slots` ([`SlotStream`]), by `deadline`.
async fn accept_gated(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    slots: Arc<Semaphore>,
    hello_deadline: tokio::time::Instant,
    deadline: tokio::time::Instant,
) -> Result<PeerStream, (Stage, HandshakeError)> {
    let total = deadline.saturating_duration_since(tokio::time::Instant::now());
    let timeout = |stage| (stage, HandshakeError::Timeout(total));
    let lazy = tokio_rustls::LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        SlotStream::new(tcp),
    );
    let mut start = tokio::time::timeout_at(hello_deadline, lazy)
        .await
        .map_err(|_| timeout(Stage::ClientHello))?
        .map_err(|e| (Stage::ClientHello, HandshakeError::Tls(e)))?;
    // The server's own flight (key exchange, signature) is computed when the
    // handshake starts: under a slot, like every read after it.
    let permit = tokio::time::timeout_at(deadline, slots.clone().acquire_owned())
        .await
        .map_err(|_| timeout(Stage::Handshake))?
        .map_err(|e| (Stage::Handshake, HandshakeError::Tls(io::Error::other(e))))?;
    start.io.gate(slots, permit);
    let mut tls = tokio::time::timeout_at(deadline, start.into_stream(config))
        .await
        .map_err(|_| timeout(Stage::Handshake))?
        .map_err(|e| (Stage::Handshake, HandshakeError::Tls(e)))?;
    tls.get_mut().0.ungate();
    let identity = |e: IdentityError| (Stage::Handshake, HandshakeError::from(e));
    // Invariant: the verifier demands a client certificate, so a finished handshake has one.
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(IdentityError::Missing)
        .map_err(identity)?;
    let identity_of = PeerIdentity::from_certificate(leaf).map_err(identity)?;
    let key_sha256 = crate::identity::certificate_key_sha256(leaf).map_err(identity)?;
    Ok(PeerStream {
        inner: tls,
        info: PeerInfo {
            remote_addr,
            identity: identity_of,
            key_sha256,
        },
    })
}

/// Decides whether an authenticated peer may go on: `Some(reason)` refuses it.
pub type Gate = Arc<dyn Fn(&PeerInfo) -> Option<String> + Send + Sync>;

/// A stream of authenticated connections for `tonic::transport::Server::serve_with_incoming`.
///
/// Refused connections never reach tonic; each is logged once with its address and reason.
pub struct TlsIncoming {
    rx: mpsc::Receiver<PeerStream>,
    stats: Arc<AcceptStats>,
}

impl TlsIncoming {
    /// Accepts on `listener` until `shutdown` is cancelled.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::with_gate(listener, config, shutdown, Arc::new(|_| None))
    }

    /// As [`TlsIncoming::new`], and every authenticated peer is put to `gate`,
    /// which refuses it with a reason (a revoked host) or lets it through.
    pub fn with_gate(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
        gate: Gate,
    ) -> Self {
        Self::with_limits(listener, config, shutdown, gate, AcceptLimits::default())
    }

    /// What the accept loop has shed so far.
    pub fn stats(&self) -> Arc<AcceptStats> {
        self.stats.clone()
    }

    /// As [`TlsIncoming::with_gate`], shedding by `limits`: past the waiting or
    /// per-source cap a new connection is closed at once and counted, so
    /// accepting never waits; a connection silent for `first_byte`, or not
    /// through its handshake (queueing for a slot included) after `handshake`,
    /// is closed. What was shed is logged at most every 10 s, as counts.
    pub fn with_limits(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
        gate: Gate,
        limits: AcceptLimits,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let slots = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
        let waiting = Arc::new(Semaphore::new(limits.max_waiting.max(1)));
        let per_source = Arc::new(PerSource::default());
        let stats = Arc::new(AcceptStats::default());
        let counters = stats.clone();
        let mut last_report = (std::time::Instant::now(), 0u64);
        // Not on a TaskTracker: the accept loop ends on the shutdown token it selects on.
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, remote_addr) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(%error, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                use std::sync::atomic::Ordering::Relaxed;
                // Shed, never wait: a full table closes the newcomer at once.
                let Ok(waiting_permit) = waiting.clone().try_acquire_owned() else {
                    counters.shed_global.fetch_add(1, Relaxed);
                    drop(tcp);
                    report_shed(&counters, &mut last_report);
                    continue;
                };
                let Some(source_slot) =
                    PerSource::take(&per_source, remote_addr.ip(), limits.per_source.max(1))
                else {
                    counters.shed_per_source.fetch_add(1, Relaxed);
                    drop(tcp);
                    report_shed(&counters, &mut last_report);
                    continue;
                };
                report_shed(&counters, &mut last_report);
                let config = config.clone();
                let tx = tx.clone();
                let gate = gate.clone();
                let counters = counters.clone();
                let slots = slots.clone();
                // Not on a TaskTracker: one handshake, bounded by the handshake deadline and a semaphore slot.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    let _source_slot = source_slot;
                    let started = tokio::time::Instant::now();
                    // A client speaks first in TLS: silence is an idle socket.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(limits.first_byte, tcp.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        Ok(_) => return, // closed, or an error: nothing was attempted
                        Err(_) => {
                            counters.silent.fetch_add(1, Relaxed);
                            tracing::debug!(peer.addr = %remote_addr, "Closed a connection silent before its TLS handshake");
                            return;
                        }
                    }
                    // Then the ClientHello, whole, by its own deadline and
                    // without a slot; the rest of the handshake reads only
                    // holding one (`SlotStream`), first come, first served.
                    // The waiting place is held until the handshake is over:
                    // the waiting table bounds how many are in progress.
                    let result = accept_gated(
                        config,
                        tcp,
                        remote_addr,
                        slots,
                        started + limits.client_hello,
                        started + limits.handshake,
                    )
                    .await;
                    drop(waiting_permit);
                    let result = result.map_err(|(stage, error)| {
                        if matches!(error, HandshakeError::Timeout(_)) {
                            match stage {
                                Stage::ClientHello => counters.stalled.fetch_add(1, Relaxed),
                                Stage::Handshake => counters.slow.fetch_add(1, Relaxed),
                            };
                        }
                        error
                    });
                    match result {
                        Ok(stream) => {
                            if let Some(why) = gate(&stream.info) {
                                tracing::warn!(peer.addr = %remote_addr, peer.identity = %stream.info.identity, reason = %why, "Connection refused");
                                return;
                            }
                            tracing::debug!(peer.addr = %remote_addr, peer.identity = %stream.info.identity, "TLS peer authenticated");
                            let _ = tx.send(stream).await;
                        }
                        Err(HandshakeError::Tls(error))
                            if error.kind() == io::ErrorKind::UnexpectedEof =>
                        {
                            // Port probes and health checks: nothing was attempted.
                            tracing::debug!(peer.addr = %remote_addr, %error, "Connection closed before the TLS handshake");
                        }
                        Err(error) => {
                            tracing::warn!(peer.addr = %remote_addr, %error, "Connection refused");
                        }
                    }
                });
            }
        });
        Self { rx, stats }
    }
}

/// Logs what was shed since the last report, at most every 10 s.
fn report_shed(stats: &AcceptStats, last: &mut (std::time::Instant, u64)) {
    use std::sync::atomic::Ordering::Relaxed;
    let total = stats.total();
    if total == last.1 || last.0.elapsed() < Duration::from_secs(10) {
        return;
    }
    tracing::warn!(
        shed.total = total,
        shed.since_last = total - last.1,
        shed.all_slots_taken = stats.shed_global.load(Relaxed),
        shed.source_over_share = stats.shed_per_source.load(Relaxed),
        closed.silent = stats.silent.load(Relaxed),
        closed.stalled_hello = stats.stalled.load(Relaxed),
        closed.slow_handshake = stats.slow.load(Relaxed),
        "Connections shed or closed before their TLS handshake (a flood, or more peers than the limits allow)"
    );
    *last = (std::time::Instant::now(), total);
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = Result<PeerStream, io::Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// Opens a tonic channel to `addr` (`host:port`) over mTLS, checking the
/// collector's certificate against `server_name`.
pub async fn connect(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<Channel, TlsError> {
    connect_from(addr, server_name, config, None).await
}

/// [`connect`] from a chosen local address (load generators standing in for
/// many hosts).
pub async fn connect_from(
    addr: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
    local: Option<std::net::IpAddr>,
) -> Result<Channel, TlsError> {
    let endpoint = endpoint(addr)?;
    let server_name =
        ServerName::try_from(server_name.to_owned()).map_err(|e| TlsError::Address {
            addr: server_name.to_owned(),
            reason: e.to_string(),
        })?;
    let connector = TlsConnector::from(config);
    let target = addr.to_owned();
    let service = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = match local {
                None => TcpStream::connect(&target).await?,
                Some(ip) => {
                    let remote = tokio::net::lookup_host(&target)
                        .await?
                        .next()
                        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
                    let socket = if ip.is_ipv4() {
                        tokio::net::TcpSocket::new_v4()?
                    } else {
                        tokio::net::TcpSocket::new_v6()?
                    };
                    socket.bind(SocketAddr::new(ip, 0))?;
                    socket.connect(remote).await?
                }
            };
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(service)
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_owned(),
            source,
        })
}

fn endpoint(addr: &str) -> Result<Endpoint, TlsError> {
    // The scheme only tells tonic to speak HTTP/2 without its own TLS; ours wraps the socket.
    Endpoint::from_shared(format!("http://{addr}"))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(10))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true)
        })
        .map_err(|e| TlsError::Address {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        SanType,
    };

    /// A CA, the collector's material and one agent's, in memory.
    fn pki() -> (TlsMaterial, TlsMaterial) {
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ca_pem = ca_params.self_signed(&ca_key).expect("ca").pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let issue = |params: CertificateParams| {
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &issuer).expect("sign").pem();
            TlsMaterial::from_pem(&ca_pem, &cert, &key.serialize_pem()).expect("material")
        };
        let mut server =
            CertificateParams::new(vec!["bannin-collector".to_owned()]).expect("params");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let mut agent = CertificateParams::default();
        let uri =
            PeerIdentity::Agent(crate::identity::HostId::new("web-01").expect("host id")).san_uri();
        agent.subject_alt_names = vec![SanType::URI(uri.try_into().expect("uri"))];
        agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (issue(server), issue(agent))
    }

    /// A reconnecting fleet is served in turn, not turned away: with one
    /// handshake slot, every one of many simultaneous peers that have spoken
    /// waits for it and completes its handshake; nothing is shed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(clippy::disallowed_methods)] // test tasks, all joined before the test ends
    async fn peers_that_have_spoken_queue_for_a_handshake_slot_instead_of_being_shed() {
        let (server, agent) = pki();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let mut incoming = TlsIncoming::with_limits(
            listener,
            server_config(&server).expect("server config"),
            shutdown.clone(),
            Arc::new(|_| None),
            AcceptLimits {
                max_handshakes: 1,
                ..AcceptLimits::default()
            },
        );
        let stats = incoming.stats();
        let server_side = tokio::spawn(async move {
            use tokio_stream::StreamExt;
            let mut held = Vec::new();
            while let Some(Ok(stream)) = incoming.next().await {
                held.push(stream);
            }
            held.len()
        });
        let connector = TlsConnector::from(client_config(&agent).expect("client config"));
        let name = ServerName::try_from("bannin-collector").expect("name");
        let peers = 24;
        let clients: Vec<_> = (0..peers)
            .map(|_| {
                let (connector, name) = (connector.clone(), name.clone());
                tokio::spawn(async move {
                    let tcp = TcpStream::connect(addr).await?;
                    connector.connect(name, tcp).await
                })
            })
            .collect();
        let mut done = Vec::new();
        for c in clients {
            done.push(c.await.expect("join"));
        }
        let failed: Vec<_> = done.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "every peer got its handshake: {failed:?}"
        );
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(stats.shed_global.load(Relaxed), 0, "nothing shed");
        assert_eq!(stats.slow.load(Relaxed), 0, "nothing timed out");
        shutdown.cancel();
        drop(done);
        assert_eq!(server_side.await.expect("join"), peers);
    }
}
