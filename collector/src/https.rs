//! The collector's small HTTPS endpoints (the Alertmanager webhook, token
//! enrollment): one accept loop, HTTP/1.1 per connection, graceful shutdown,
//! and JSON answers.
//!
//! Strangers reach these ports, so nothing a client does holds a slot for
//! long: at most [`MAX_CONNECTIONS`] connections at once and
//! [`MAX_PER_SOURCE`] from one address (past either, a new connection is
//! closed at once); the TLS handshake within [`HANDSHAKE_TIMEOUT`]; the request
//! headers within [`HEADER_TIMEOUT`], the body within [`BODY_TIMEOUT`] of the
//! handler asking for it ([`read_body`]); one request per connection, and the
//! whole connection within [`CONNECTION_DEADLINE`]. TLS 1.3 only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bannin_proto::identity::PeerIdentity;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to send its whole request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may last, handshake, headers, body and answer.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections at once from one source address.
pub const MAX_PER_SOURCE: usize = 16;

/// Serves `handler` on `listen` until `shutdown`. The handler gets the
/// identity in the client's certificate, if it presented one the CA signed.
pub async fn serve<H, F>(
    what: &'static str,
    listen: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Option<PeerIdentity>, SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, endpoint = what, "HTTPS endpoint serving");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = tokio_util::task::TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_source = Arc::new(bannin_proto::tls::PerSource::default());
    let mut shed = 0u64;
    loop {
        let (tcp, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(endpoint = what, %error, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shed += 1;
            if shed.is_power_of_two() {
                tracing::warn!(
                    endpoint = what,
                    shed,
                    "Connections shed: every slot is taken"
                );
            }
            continue;
        };
        let Some(share) =
            bannin_proto::tls::PerSource::take(&per_source, remote.ip(), MAX_PER_SOURCE)
        else {
            shed += 1;
            if shed.is_power_of_two() {
                tracing::warn!(endpoint = what, peer.addr = %remote, shed, "Connections shed: one address holds its share");
            }
            continue;
        };
        let (acceptor, handler, shutdown) = (acceptor.clone(), handler.clone(), shutdown.clone());
        connections.spawn(async move {
            let _held = (permit, share);
            let deadline = tokio::time::Instant::now() + CONNECTION_DEADLINE;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::warn!(endpoint = what, peer.addr = %remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(endpoint = what, peer.addr = %remote, "TLS handshake timed out");
                    return;
                }
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| PeerIdentity::from_certificate(leaf).ok());
            let service = hyper::service::service_fn(move |request| {
                let answer = handler(identity.clone(), remote, request);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(endpoint = what, peer.addr = %remote, %error, "Connection ended");
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(endpoint = what, peer.addr = %remote, "Connection closed at its deadline");
                }
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the endpoint takes.
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not all of it arrived within [`BODY_TIMEOUT`].
    #[error("the body did not arrive within {} s", BODY_TIMEOUT.as_secs())]
    TooSlow,
    /// The connection broke.
    #[error("reading the body: {0}")]
    Broken(String),
}

impl BodyError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a request body of at most `limit` bytes, all of it within
/// [`BODY_TIMEOUT`]: a client trickling a body holds its slot no longer.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;
    match tokio::time::timeout(
        BODY_TIMEOUT,
        http_body_util::Limited::new(body, limit).collect(),
    )
    .await
    {
        Err(_) => Err(BodyError::TooSlow),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(e)) => Err(BodyError::Broken(e.to_string())),
    }
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}
