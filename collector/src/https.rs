//! The collector's small HTTPS endpoints (the Alertmanager webhook, token
//! enrollment): one accept loop with a handshake deadline, HTTP/1.1 per
//! connection, graceful shutdown, and JSON answers.

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
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        let (acceptor, handler, shutdown) = (acceptor.clone(), handler.clone(), shutdown.clone());
        connections.spawn(async move {
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
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(endpoint = what, peer.addr = %remote, %error, "Connection ended");
                    }
                }
                () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
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
