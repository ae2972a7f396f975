//! Packets from the wire: one `AF_PACKET` socket per interface, with the
//! operator's filter compiled by the host's own libpcap and attached in the
//! kernel (`SO_ATTACH_FILTER`), so a packet the filter refuses never leaves the
//! kernel.
//!
//! libpcap is loaded at run time ([`Filter::compile`]), only when a filter is
//! given: building the agent needs no libpcap, and a capture without a filter
//! needs none on the host either. A socket is opened listening to no protocol,
//! gets its filter, and only then is bound to `ETH_P_ALL` on its interface: no
//! unfiltered packet is ever queued on it. Timestamps are the kernel's
//! (`SO_TIMESTAMPNS`), and the kernel's drop count is read when the capture ends.
//!
//! Sockets see what reaches the interface before netfilter does, so a capture
//! on an isolated host shows the traffic the isolation then drops.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Why a capture could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The named interface does not exist here.
    #[error("no interface {0:?} on this host")]
    NoInterface(String),
    /// The interface's link type is not one a capture file can describe here.
    #[error(
        "interface {name:?} has link type {hatype}, which Bannin does not capture (Ethernet, loopback and raw IP only)"
    )]
    LinkType {
        /// The interface.
        name: String,
        /// Its ARPHRD type.
        hatype: u16,
    },
    /// No interface to capture on.
    #[error("no interface is up to capture on (name one with --interface)")]
    NoneUp,
    /// libpcap (which compiles filters) is not installed.
    #[error(
        "a capture filter needs the host's libpcap, which is not installed (Debian: apt install libpcap0.8; RHEL: dnf install libpcap): {0}"
    )]
    NoLibpcap(String),
    /// libpcap refused the filter.
    #[error("filter {filter:?}: {why}")]
    Filter {
        /// The expression.
        filter: String,
        /// libpcap's words.
        why: String,
    },
    /// A socket call failed.
    #[error("{what}: {source}")]
    Os {
        /// Which call.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn os(what: &'static str) -> PacketError {
    PacketError::Os {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// How an interface frames its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// Ethernet (and loopback, which Linux frames as Ethernet).
    Ethernet,
    /// Raw IP (tun devices, WireGuard).
    Raw,
}

impl LinkType {
    fn of(hatype: u16) -> Option<Self> {
        match hatype {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Some(LinkType::Ethernet),
            libc::ARPHRD_NONE => Some(LinkType::Raw),
            _ => None,
        }
    }

    /// libpcap's `DLT_` value on Linux (what `pcap_compile` is told).
    fn dlt(self) -> c_int {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 12,
        }
    }

    /// The pcapng `LINKTYPE_` value.
    pub fn linktype(self) -> u16 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
        }
    }
}

/// An interface to capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// How it frames packets.
    pub link: LinkType,
    /// The loopback device, which shows every packet twice (sent and
    /// received): the capture keeps the received copy, as tcpdump does.
    pub loopback: bool,
}

/// The interfaces named, or (none named) every interface that is up but
/// loopback.
pub fn interfaces(names: &[String]) -> Result<Vec<Interface>, PacketError> {
    use nix::net::if_::InterfaceFlags;
    let mut found: Vec<(Interface, bool)> = Vec::new();
    let mut unknown_link: Vec<(String, u16)> = Vec::new();
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| PacketError::Os {
        what: "listing interfaces",
        source: e.into(),
    })?;
    for addr in addrs {
        let Some(link) = addr.address.as_ref().and_then(|a| a.as_link_addr()) else {
            continue;
        };
        let wanted_by_default = addr.flags.contains(InterfaceFlags::IFF_UP)
            && !addr.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        match LinkType::of(link.hatype()) {
            Some(kind) => found.push((
                Interface {
                    name: addr.interface_name.clone(),
                    index: u32::try_from(link.ifindex()).unwrap_or(0),
                    link: kind,
                    loopback: link.hatype() == libc::ARPHRD_LOOPBACK,
                },
                wanted_by_default,
            )),
            None => unknown_link.push((addr.interface_name.clone(), link.hatype())),
        }
    }
    if names.is_empty() {
        let up: Vec<Interface> = found
            .into_iter()
            .filter(|(_, up)| *up)
            .map(|(i, _)| i)
            .collect();
        return if up.is_empty() {
            Err(PacketError::NoneUp)
        } else {
            Ok(up)
        };
    }
    names
        .iter()
        .map(|name| {
            if let Some((i, _)) = found.iter().find(|(i, _)| &i.name == name) {
                return Ok(i.clone());
            }
            match unknown_link.iter().find(|(n, _)| n == name) {
                Some((_, hatype)) => Err(PacketError::LinkType {
                    name: name.clone(),
                    hatype: *hatype,
                }),
                None => Err(PacketError::NoInterface(name.clone())),
            }
        })
        .collect()
}

/// `struct bpf_program`, as libpcap fills it.
#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut libc::sock_filter,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

/// The names libpcap goes by (Debian, Fedora and RHEL, a development install).
const LIBPCAP: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// A classic BPF program: a filter expression compiled for one link type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(Vec<libc::sock_filter>);

impl Filter {
    /// Compiles `expression` (tcpdump's syntax) for `link` with the host's
    /// libpcap, optimised, for packets of up to `snaplen` bytes.
    pub fn compile(expression: &str, link: LinkType, snaplen: u32) -> Result<Self, PacketError> {
        let bad = |why: String| PacketError::Filter {
            filter: expression.to_owned(),
            why,
        };
        let text = CString::new(expression).map_err(|_| bad("holds a NUL".into()))?;
        let mut tried = Vec::new();
        let library = LIBPCAP
            .iter()
            .find_map(|name| {
                // SAFETY: libpcap's initialisers have no preconditions.
                unsafe { libloading::Library::new(*name) }
                    .map_err(|e| tried.push(e.to_string()))
                    .ok()
            })
            .ok_or_else(|| PacketError::NoLibpcap(tried.join("; ")))?;
        let symbol_error = |e: libloading::Error| PacketError::NoLibpcap(e.to_string());
        // SAFETY: the types are libpcap's documented prototypes (pcap(3PCAP)),
        // stable since libpcap 0.8; every pointer passed is valid for the call,
        // the program is freed with pcap_freecode and the handle closed before
        // the library is unloaded (it outlives both, declared first).
        unsafe {
            let open_dead: libloading::Symbol<'_, OpenDead> =
                library.get(b"pcap_open_dead\0").map_err(symbol_error)?;
            let compile: libloading::Symbol<'_, Compile> =
                library.get(b"pcap_compile\0").map_err(symbol_error)?;
            let geterr: libloading::Symbol<'_, GetErr> =
                library.get(b"pcap_geterr\0").map_err(symbol_error)?;
            let freecode: libloading::Symbol<'_, FreeCode> =
                library.get(b"pcap_freecode\0").map_err(symbol_error)?;
            let close: libloading::Symbol<'_, Close> =
                library.get(b"pcap_close\0").map_err(symbol_error)?;
            let snaplen = c_int::try_from(snaplen).unwrap_or(c_int::MAX);
            let handle = open_dead(link.dlt(), snaplen);
            if handle.is_null() {
                return Err(bad("libpcap could not open a handle to compile with".into()));
            }
            let mut program = BpfProgram {
                len: 0,
                insns: std::ptr::null_mut(),
            };
            // PCAP_NETMASK_UNKNOWN: only `ip broadcast` needs the netmask.
            let status = compile(handle, &mut program, text.as_ptr(), 1, 0xffff_ffff);
            let result = if status != 0 {
                let message = geterr(handle);
                Err(bad(if message.is_null() {
                    "libpcap refused it".into()
                } else {
                    CStr::from_ptr(message).to_string_lossy().into_owned()
                }))
            } else if program.insns.is_null() || program.len == 0 {
                Err(bad("libpcap compiled it to nothing".into()))
            } else {
                let insns = std::slice::from_raw_parts(program.insns, program.len as usize);
                Ok(Filter(insns.to_vec()))
            };
            if status == 0 {
                freecode(&mut program);
            }
            close(handle);
            result
        }
    }

    /// Instructions in the program.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never, for a compiled filter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A packet received: when the kernel stamped it, its length on the wire and
/// how much of it was kept (the start of the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Since the Unix epoch.
    pub at: Duration,
    /// Length on the wire.
    pub wire_len: u32,
    /// Bytes kept in the buffer.
    pub kept: usize,
    /// Sent by this host (rather than received).
    pub outgoing: bool,
}

/// A capture socket on one interface.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

const ETH_P_ALL: u16 = 0x0003;

impl Socket {
    /// Opens a socket on `interface`, filtered by `filter` before it receives anything.
    pub fn open(interface: &Interface, filter: Option<&Filter>) -> Result<Self, PacketError> {
        // SAFETY: plain system calls on a descriptor this function owns; every
        // pointer is to a live local of the size passed.
        unsafe {
            // Protocol 0: the socket receives nothing until it is bound below.
            let raw = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            );
            if raw < 0 {
                return Err(os("opening a packet socket"));
            }
            let fd = OwnedFd::from_raw_fd(raw);
            if let Some(filter) = filter {
                let program = libc::sock_fprog {
                    len: u16::try_from(filter.0.len()).map_err(|_| PacketError::Filter {
                        filter: String::new(),
                        why: "the compiled filter is too long".into(),
                    })?,
                    filter: filter.0.as_ptr().cast_mut(),
                };
                setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
                    .map_err(|_| os("attaching the filter"))?;
            }
            let on: c_int = 1;
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on)
                .map_err(|_| os("asking for kernel timestamps"))?;
            // Room for bursts (root may pass the system's limit).
            let buffer: c_int = 8 * 1024 * 1024;
            if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buffer).is_err() {
                let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &buffer);
            }
            let mut address: libc::sockaddr_ll = std::mem::zeroed();
            address.sll_family = libc::AF_PACKET as u16;
            address.sll_protocol = ETH_P_ALL.to_be();
            address.sll_ifindex = c_int::try_from(interface.index).unwrap_or(0);
            if libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            ) != 0
            {
                return Err(os("binding the packet socket to its interface"));
            }
            Ok(Socket { fd })
        }
    }

    /// The next queued packet into `buffer`, or `None` when none is queued.
    pub fn receive(&self, buffer: &mut [u8]) -> Result<Option<Received>, PacketError> {
        // SAFETY: recvmsg into a buffer and a control area this function owns,
        // then reading the control messages the kernel wrote there, within the
        // length it reported (the CMSG_* helpers bound every step).
        unsafe {
            let mut iov = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            };
            let mut control = [0u64; 16];
            let mut from: libc::sockaddr_ll = std::mem::zeroed();
            let mut message: libc::msghdr = std::mem::zeroed();
            message.msg_name = std::ptr::from_mut(&mut from).cast();
            message.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            message.msg_iov = &mut iov;
            message.msg_iovlen = 1;
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = std::mem::size_of_val(&control);
            let n = libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut message,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            );
            if n < 0 {
                let error = std::io::Error::last_os_error();
                return match error.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(PacketError::Os {
                        what: "receiving a packet",
                        source: error,
                    }),
                };
            }
            let wire_len = u32::try_from(n).unwrap_or(u32::MAX);
            let mut at = None;
            let mut header = libc::CMSG_FIRSTHDR(&message);
            while !header.is_null() {
                if (*header).cmsg_level == libc::SOL_SOCKET
                    && (*header).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let stamp: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                    at = Some(Duration::new(
                        u64::try_from(stamp.tv_sec).unwrap_or(0),
                        u32::try_from(stamp.tv_nsec).unwrap_or(0),
                    ));
                }
                header = libc::CMSG_NXTHDR(&message, header);
            }
            let at = at.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
            });
            Ok(Some(Received {
                at,
                wire_len,
                kept: (n as usize).min(buffer.len()),
                outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            }))
        }
    }

    /// Waits up to `timeout` until one of `sockets` has a packet queued.
    pub fn wait(sockets: &[Socket], timeout: Duration) -> Result<(), PacketError> {
        let mut fds: Vec<libc::pollfd> = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: poll over a slice of pollfd this function owns.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(os("waiting for packets"));
        }
        Ok(())
    }

    /// Packets the kernel dropped on this socket (its queue was full) since the last call.
    pub fn dropped(&self) -> u32 {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt into a local of the size passed.
        let status = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                std::ptr::from_mut(&mut stats).cast(),
                &mut len,
            )
        };
        if status == 0 { stats.tp_drops } else { 0 }
    }
}

/// `setsockopt` with a typed value.
///
/// # Safety
/// `T` must be the type the option expects.
unsafe fn setsockopt<T>(fd: &OwnedFd, level: c_int, name: c_int, value: &T) -> Result<(), ()> {
    // SAFETY: the caller passes the option's type; the pointer and size are a live `T`.
    let status = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if status == 0 { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_map_to_pcap_values() {
        assert_eq!(LinkType::of(libc::ARPHRD_ETHER), Some(LinkType::Ethernet));
        assert_eq!(
            LinkType::of(libc::ARPHRD_LOOPBACK),
            Some(LinkType::Ethernet)
        );
        assert_eq!(LinkType::of(libc::ARPHRD_NONE), Some(LinkType::Raw));
        assert_eq!(LinkType::of(libc::ARPHRD_IEEE80211_RADIOTAP), None);
        assert_eq!(LinkType::Ethernet.linktype(), 1);
        assert_eq!(LinkType::Raw.linktype(), 101);
    }

    #[test]
    fn an_unknown_interface_is_named() {
        let err = interfaces(&["bannin-no-such-if".into()]).expect_err("no such interface");
        assert!(err.to_string().contains("bannin-no-such-if"), "{err}");
    }

    #[test]
    fn filters_compile_with_the_hosts_libpcap_or_say_it_is_missing() {
        match Filter::compile("tcp port 22", LinkType::Ethernet, 262_144) {
            Ok(filter) => {
                assert!(!filter.is_empty());
                let err = Filter::compile("tcp port banana", LinkType::Ethernet, 262_144)
                    .expect_err("a bad filter");
                assert!(err.to_string().contains("banana"), "{err}");
            }
            Err(PacketError::NoLibpcap(why)) => crate::testing::skip(&format!("no libpcap: {why}")),
            Err(other) => panic!("{other}"),
        }
    }
}
