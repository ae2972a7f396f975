//! Plain HTTPS requests for the tests of the collector's HTTPS endpoints.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client of the collector's HTTPS endpoints that trusts the Bannin CA in
/// `paths`, presents no certificate, and speaks HTTP/1.1.
pub fn anonymous_http1(paths: &bannin_proto::tls::TlsPaths) -> Arc<rustls::ClientConfig> {
    let material = bannin_proto::tls::TlsMaterial::load(paths).expect("TLS material");
    let mut config =
        (*bannin_proto::tls::anonymous_client_config(&material).expect("client config")).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTPS request: the status and the JSON body.
pub async fn request(
    port: u16,
    client: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bannin-collector\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (413) before reading a huge body: write errors are fine.
    let _ = tls.write_all(head.as_bytes()).await;
    let _ = tls.write_all(body).await;
    let _ = tls.flush().await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, json)
}
