//! Packet capture as evidence: packets from the wire, filtered in the kernel,
//! written as pcapng (one interface block per interface, kernel timestamps in
//! nanoseconds), then sealed in a bundle like a snapshot's — the capture file
//! as its one artifact, hashed as it is written, and a manifest saying who
//! asked, why, when, on which interfaces, with which filter, and what was
//! captured, cut or dropped.
//!
//! A capture is bounded three ways: its duration, the bytes of packets it
//! keeps, and its command's stop (the agent stopping, or the time limit).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use serde::Serialize;

use crate::host::packets::{self, Filter, Interface, PacketError, Socket};

/// Bytes of packets kept when the command says none.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The most bytes of packets one capture keeps, whatever it asks.
pub const MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// The longest capture.
pub const MAX_SECONDS: u32 = 3600;
/// Bytes kept of each packet (all of any packet Linux hands a socket).
pub const SNAPLEN: u32 = 262_144;

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// How long.
    pub seconds: u32,
    /// A pcap filter expression; "" for every packet.
    pub filter: String,
    /// Interfaces; none for every interface that is up but loopback.
    pub interfaces: Vec<String>,
    /// Stop once this many bytes of packets are kept.
    pub max_bytes: u64,
}

/// One interface's share of a capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceSummary {
    /// Its name.
    pub name: String,
    /// How its packets are framed.
    pub link_type: packets::LinkType,
    /// Packets kept.
    pub packets: u64,
    /// Packets the kernel dropped because the agent did not read them in time.
    pub dropped_by_kernel: u64,
}

/// What a capture kept, and why it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The filter, as given ("" for none).
    pub filter: String,
    /// Instructions of the compiled filter attached in the kernel (0: none).
    pub filter_instructions: usize,
    /// Seconds asked for.
    pub seconds: u32,
    /// The byte cap.
    pub max_bytes: u64,
    /// Per interface.
    pub interfaces: Vec<InterfaceSummary>,
    /// Packets kept.
    pub packets: u64,
    /// Bytes of packets kept.
    pub bytes: u64,
    /// `time`, `size cap` or `stopped`.
    pub ended_by: &'static str,
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Interfaces, the filter, or the sockets.
    #[error(transparent)]
    Packets(#[from] PacketError),
    /// Writing the capture file.
    #[error("writing the capture: {0}")]
    Write(String),
}

impl From<pcap_file::PcapError> for CaptureError {
    fn from(e: pcap_file::PcapError) -> Self {
        CaptureError::Write(e.to_string())
    }
}

/// Captures per `request` into `out` as pcapng until its time or its byte
/// cap is reached, or `stop` is set.
pub fn capture(
    request: &Request,
    stop: &AtomicBool,
    out: impl Write,
) -> Result<Summary, CaptureError> {
    let interfaces: Vec<Interface> = packets::interfaces(&request.interfaces)?;
    let expression = request.filter.trim();
    // One program per link type (the same expression reads other offsets on raw IP).
    let mut filters: Vec<(packets::LinkType, Filter)> = Vec::new();
    for interface in &interfaces {
        if expression.is_empty() || filters.iter().any(|(l, _)| *l == interface.link) {
            continue;
        }
        filters.push((
            interface.link,
            Filter::compile(expression, interface.link, SNAPLEN)?,
        ));
    }
    let filter_of = |link| filters.iter().find(|(l, _)| *l == link).map(|(_, f)| f);
    let sockets = interfaces
        .iter()
        .map(|i| Socket::open(i, filter_of(i.link)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut writer = PcapNgWriter::new(out)?;
    for interface in &interfaces {
        writer.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: u32::from(interface.link.linktype()).into(),
            snaplen: SNAPLEN,
            options: vec![
                InterfaceDescriptionOption::IfName(interface.name.clone().into()),
                // Nanoseconds: the kernel's timestamps, unrounded.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })?;
    }
    let mut summary = Summary {
        filter: request.filter.clone(),
        filter_instructions: filters.first().map_or(0, |(_, f)| f.len()),
        seconds: request.seconds,
        max_bytes: request.max_bytes,
        interfaces: interfaces
            .iter()
            .map(|i| InterfaceSummary {
                name: i.name.clone(),
                link_type: i.link,
                packets: 0,
                dropped_by_kernel: 0,
            })
            .collect(),
        packets: 0,
        bytes: 0,
        ended_by: "time",
    };
    let deadline = Instant::now() + Duration::from_secs(u64::from(request.seconds));
    let mut buffer = vec![0u8; SNAPLEN as usize];
    'capture: loop {
        if stop.load(Ordering::Relaxed) {
            summary.ended_by = "stopped";
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        Socket::wait(&sockets, left.min(Duration::from_millis(200)))?;
        for (n, socket) in sockets.iter().enumerate() {
            // Drain what is queued, a bounded batch per socket per turn.
            for _ in 0..256 {
                let Some(packet) = socket.receive(&mut buffer)? else {
                    break;
                };
                if packet.outgoing && interfaces[n].loopback {
                    continue;
                }
                if summary.bytes + packet.kept as u64 > request.max_bytes {
                    summary.ended_by = "size cap";
                    break 'capture;
                }
                writer.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: u32::try_from(n).unwrap_or(0),
                    timestamp: packet.at,
                    original_len: packet.wire_len,
                    data: std::borrow::Cow::Borrowed(&buffer[..packet.kept]),
                    options: Vec::new(),
                })?;
                summary.packets += 1;
                summary.bytes += packet.kept as u64;
                summary.interfaces[n].packets += 1;
            }
        }
    }
    for (n, socket) in sockets.iter().enumerate() {
        summary.interfaces[n].dropped_by_kernel = u64::from(socket.dropped());
    }
    writer
        .into_inner()
        .flush()
        .map_err(|e| CaptureError::Write(e.to_string()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` inside a new network namespace of its own (a thread moved
    /// there), so a test can send and capture without touching the host's network.
    fn in_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                Some(f())
            })
            .join()
            .ok()
            .flatten()
        })
    }

    fn up_loopback() {
        let status = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "ip link set lo up");
    }

    #[test]
    fn a_capture_keeps_what_its_filter_passes_and_reads_back_as_pcapng() {
        if !nix::unistd::geteuid().is_root() {
            return crate::testing::skip("needs root (a network namespace, packet sockets)");
        }
        let Ok(_) = Filter::compile("udp", packets::LinkType::Ethernet, SNAPLEN) else {
            return crate::testing::skip("no libpcap to compile filters");
        };
        let result = in_namespace(|| {
            up_loopback();
            let stop = AtomicBool::new(false);
            let request = Request {
                seconds: 2,
                filter: "udp port 9999".into(),
                interfaces: vec!["lo".into()],
                max_bytes: DEFAULT_MAX_BYTES,
            };
            std::thread::scope(|s| {
                let sender = s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(300));
                    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                    for _ in 0..5 {
                        socket.send_to(b"kept", "127.0.0.1:9999").expect("send");
                        socket.send_to(b"filtered", "127.0.0.1:9998").expect("send");
                    }
                });
                let mut file = Vec::new();
                let summary = capture(&request, &stop, &mut file).expect("capture");
                sender.join().expect("sender");
                (summary, file)
            })
        });
        let Some((summary, file)) = result else {
            panic!("no network namespace");
        };
        assert_eq!(summary.ended_by, "time");
        assert_eq!(summary.packets, 5, "{summary:?}");
        assert!(summary.filter_instructions > 0);
        let mut reader = pcap_file::pcapng::PcapNgReader::new(file.as_slice()).expect("pcapng");
        let mut packets = 0;
        while let Some(block) = reader.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.expect("block") {
                assert!(p.data.ends_with(b"kept"), "{:?}", p.data);
                assert!(p.timestamp.as_secs() > 1_700_000_000);
                packets += 1;
            }
        }
        assert_eq!(packets, 5);
    }

    #[test]
    fn the_size_cap_and_a_stop_end_a_capture_and_say_so() {
        if !nix::unistd::geteuid().is_root() {
            return crate::testing::skip("needs root (a network namespace, packet sockets)");
        }
        let result = in_namespace(|| {
            up_loopback();
            let request = Request {
                seconds: 30,
                filter: String::new(),
                interfaces: vec!["lo".into()],
                max_bytes: 2000,
            };
            let stop = AtomicBool::new(false);
            let capped = std::thread::scope(|s| {
                s.spawn(|| {
                    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                    for _ in 0..200 {
                        let _ = socket.send_to(&[0u8; 400], "127.0.0.1:9999");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                capture(&request, &stop, std::io::sink()).expect("capture")
            });
            stop.store(true, Ordering::Relaxed);
            let stopped = capture(&request, &stop, std::io::sink()).expect("capture");
            (capped, stopped)
        });
        let Some((capped, stopped)) = result else {
            panic!("no network namespace");
        };
        assert_eq!(capped.ended_by, "size cap", "{capped:?}");
        assert!(capped.bytes <= 2000, "{capped:?}");
        assert_eq!(stopped.ended_by, "stopped");
    }

    #[test]
    fn a_filter_that_does_not_compile_is_refused_with_libpcaps_words() {
        let request = Request {
            seconds: 1,
            filter: "tcp port nope".into(),
            interfaces: vec!["lo".into()],
            max_bytes: 1000,
        };
        match capture(&request, &AtomicBool::new(false), std::io::sink()) {
            Err(CaptureError::Packets(PacketError::Filter { why, .. })) => {
                assert!(why.contains("nope"), "{why}");
            }
            Err(CaptureError::Packets(PacketError::NoLibpcap(why))) => {
                crate::testing::skip(&format!("no libpcap: {why}"));
            }
            other => panic!("{other:?}"),
        }
    }
}
