//! Stalled TLS handshakes: connections that start a handshake and stop, the
//! way a slowloris holds a TLS port. Shared by the hostile-input test and the
//! flood benchmark.

use std::net::{IpAddr, SocketAddr};

use bannin_proto::tls::{self, TlsMaterial, TlsPaths};
use tokio::io::AsyncWriteExt;

/// Where a stalled connection stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stall {
    /// Connects and sends nothing.
    Idle,
    /// Sends the 5-byte header of a TLS record and stops inside it.
    Header,
    /// Sends a whole, real ClientHello and stops before its second flight.
    Hello,
}

/// A real TLS 1.3 ClientHello as Bannin's clients send it (mTLS config of `client`).
pub fn client_hello(client: &TlsPaths) -> Vec<u8> {
    let material = TlsMaterial::load(client).expect("client material");
    let config = tls::client_config(&material).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("write hello");
    }
    hello
}

/// `per_source` stalled connections to `to` from each of `sources` (loopback
/// addresses they bind), stopping as `stall` says; `hello` is what
/// [`Stall::Hello`] sends. Returns the sockets, which hold the stall while kept.
pub async fn stalled_connections(
    sources: &[IpAddr],
    per_source: usize,
    to: SocketAddr,
    stall: Stall,
    hello: &[u8],
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(sources.len() * per_source);
    for _ in 0..per_source {
        for &from in sources {
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                continue;
            };
            if socket.bind(SocketAddr::new(from, 0)).is_err() {
                continue;
            }
            let Ok(mut s) = socket.connect(to).await else {
                continue;
            };
            let sent = match stall {
                Stall::Idle => Ok(()),
                // A handshake record of 512 bytes, of which none follow.
                Stall::Header => s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await,
                Stall::Hello => s.write_all(hello).await,
            };
            if sent.is_ok() {
                held.push(s);
            }
        }
    }
    held
}

/// `n` loopback source addresses, 127.0.2.1 onwards.
pub fn sources(n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::from([127, 0, 2 + (i / 250) as u8, 1 + (i % 250) as u8]))
        .collect()
}
