//! Bad input on the agent link: an oversized frame is refused from its length
//! prefix alone (never buffered), a malformed stream closes only that stream,
//! and a real agent streaming at the same time is not disturbed.

use std::sync::Arc;
use std::time::Duration;

use bannin_proto::tls::{self, TlsMaterial};
use bannin_proto::v1::{self, agent_message};
use bannin_tests::{
    AgentOptions, CollectorProc, TestPki, eventually, free_port, operator_client, start_agent,
};
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::{all_events, odd_files, wait_online};

const MAX: usize = 2 * 1024 * 1024;

fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(payload.len()).expect("len"));
    b.put_slice(payload);
    b.freeze()
}

fn hello(host: &str) -> Bytes {
    let m = v1::AgentMessage {
        body: Some(agent_message::Body::Hello(v1::Hello {
            host_id: host.into(),
            ..Default::default()
        })),
    };
    grpc_frame(&m.encode_to_vec())
}

/// Sends raw bytes on an agent stream; returns the grpc-status the collector ends it with.
async fn raw_stream(
    addr: std::net::SocketAddr,
    tls_paths: &bannin_proto::tls::TlsPaths,
    frames: Vec<Bytes>,
) -> String {
    let material = TlsMaterial::load(tls_paths).expect("material");
    let config = tls::client_config(&material).expect("config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("bannin-collector").expect("name");
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("tls");
    let (client, connection) = h2::client::handshake(stream).await.expect("h2");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::builder()
        .method("POST")
        .uri("https://bannin-collector/bannin.v1.AgentLink/Session")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut send) = client.send_request(request, false).expect("send");
    for f in frames {
        send.send_data(f, false).expect("data");
    }
    // The stream stays open: a server waiting for the rest of a huge frame would hang here.
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered in time")
        .expect("response");
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap_or_default().to_owned();
    }
    let mut body = response.into_body();
    let trailers = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("chunk");
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        body.trailers().await
    })
    .await
    .expect("stream ended in time")
    .expect("trailers")
    .expect("trailers present");
    drop(send);
    trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_frames_close_only_their_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let collector = CollectorProc::start(
        &dir.path().join("collector"),
        &pki,
        free_port(),
        &format!("max_message_bytes = {MAX}"),
    );
    // A well-behaved agent streams all along.
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("watched");
    let _good = start_agent(
        &dir.path().join("good"),
        &pki.agent("good-host"),
        collector.addr,
        &AgentOptions {
            watch: vec![watched.clone()],
            net_listener: false,
            ..AgentOptions::default()
        },
    );
    let mut client = operator_client(&pki.operator("alice"), collector.addr).await;
    wait_online(&mut client, "good-host").await;

    let bad = pki.agent("bad-host");
    // A frame announcing 1 GiB, followed by a few bytes: refused from the prefix alone.
    let mut huge = BytesMut::new();
    huge.put_u8(0);
    huge.put_u32(1 << 30);
    huge.put_slice(&[0u8; 16]);
    let status = raw_stream(collector.addr, &bad, vec![hello("bad-host"), huge.freeze()]).await;
    assert_eq!(
        status,
        (tonic::Code::OutOfRange as i32).to_string(),
        "oversized frame refused"
    );

    // A frame just over the limit, complete: refused too.
    let over = grpc_frame(&vec![0u8; MAX + 1]);
    let status = raw_stream(collector.addr, &bad, vec![hello("bad-host"), over]).await;
    assert_eq!(status, (tonic::Code::OutOfRange as i32).to_string());

    // Bytes that are not protobuf.
    let garbage = grpc_frame(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let status = raw_stream(collector.addr, &bad, vec![hello("bad-host"), garbage]).await;
    assert_eq!(
        status,
        (tonic::Code::Internal as i32).to_string(),
        "malformed message refused"
    );

    // A well-formed batch carrying an event that is not an encoded Event.
    let bad_event = grpc_frame(
        &v1::AgentMessage {
            body: Some(agent_message::Body::Batch(v1::TelemetryBatch {
                sequence: 1,
                events: vec![Bytes::from_static(&[0x0a, 0xff, 0xff])],
            })),
        }
        .encode_to_vec(),
    );
    let status = raw_stream(collector.addr, &bad, vec![hello("bad-host"), bad_event]).await;
    assert_eq!(
        status,
        (tonic::Code::InvalidArgument as i32).to_string(),
        "malformed event refused: {}",
        collector.proc.log_text()
    );

    // A first message that is not Hello.
    let not_hello = grpc_frame(
        &v1::AgentMessage {
            body: Some(agent_message::Body::Batch(v1::TelemetryBatch {
                sequence: 1,
                events: vec![],
            })),
        }
        .encode_to_vec(),
    );
    let status = raw_stream(collector.addr, &bad, vec![not_hello]).await;
    assert_eq!(status, (tonic::Code::InvalidArgument as i32).to_string());

    // Nothing of the bad streams was stored …
    assert!(all_events(&mut client, "bad-host", "").await.is_empty());
    // … and the good agent still streams.
    odd_files(&watched, 5);
    eventually(Duration::from_secs(30), "good agent still delivers", || {
        let mut c = client.clone();
        async move { (all_events(&mut c, "good-host", "file.odd_name").await.len() == 5).then_some(()) }
    })
    .await;
    let log = collector.proc.log_text();
    assert!(
        log.contains("Bad message from agent; stream closed"),
        "{log}"
    );
    let _ = Arc::new(());
}
