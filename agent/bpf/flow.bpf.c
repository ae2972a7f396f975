// SPDX-License-Identifier: GPL-2.0
//
// Bannin's connection probe: every TCP connection's start and end as the
// kernel changes its state (the `sock:inet_sock_set_state` raw tracepoint),
// through a ring buffer to the agent (agent/src/sensors/source/flow_bpf.rs
// joins the records of a connection into one `net.flow`).
//
// Stateless: a record for each transition that matters, keyed by the socket,
// and the agent joins them. The process is read where it is known: at
// connect (SYN_SENT), which runs in the connecting process. Built as
// bannin.bpf.c is (agent/bpf/build.sh).

#include "common.h"

struct in6_addr {
	__u8 s6_addr[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_sent;
} __attribute__((preserve_access_index));

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#define KIND_FLOW 3

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// What happened to the connection.
#define STEP_CONNECT 1     // SYN sent: an outbound connection starts (process known)
#define STEP_ESTABLISHED 2 // handshake done (from SYN_SENT: outbound; from SYN_RECV: inbound)
#define STEP_CLOSE 3       // closed, with its byte counts

struct flow_event {
	__u32 kind;
	__u32 step;
	__u64 sock; // the socket, to join a connection's records (never leaves the agent)
	__u64 at_boot_ns;
	__u64 bytes_received; // sequence space received: data, and the peer's FIN
	__u64 bytes_sent;     // data sent, retransmissions included
	__u32 pid;
	__u32 uid;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 inbound;
	__u8 old_state; // the state it left (at close: whether the peer's FIN came)
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	// 2,500 records: seconds of a busy server's connections.
	__uint(max_entries, 256 * 1024);
} flows SEC(".maps");

// Records that did not fit in the ring buffer.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} flow_drops SEC(".maps");

// inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)
SEC("raw_tracepoint/inet_sock_set_state")
int bannin_flow(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int old = (int)ctx->args[1];
	int new = (int)ctx->args[2];
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u32 step;
	__u8 inbound = 0;
	if (new == TCP_SYN_SENT) {
		step = STEP_CONNECT;
	} else if (new == TCP_ESTABLISHED && old == TCP_SYN_SENT) {
		step = STEP_ESTABLISHED;
	} else if (new == TCP_ESTABLISHED && old == TCP_SYN_RECV) {
		step = STEP_ESTABLISHED;
		inbound = 1;
	} else if (new == TCP_CLOSE) {
		step = STEP_CLOSE;
	} else {
		return 0;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct flow_event *e = bpf_ringbuf_reserve(&flows, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&flow_drops, &zero);
		if (count)
			*count += 1;
		return 0;
	}
	e->kind = KIND_FLOW;
	e->step = step;
	e->sock = (__u64)sk;
	e->at_boot_ns = bpf_ktime_get_boot_ns();
	e->inbound = inbound;
	e->old_state = (__u8)old;
	e->family = family;
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->saddr, 0, 16);
	__builtin_memset(e->daddr, 0, 16);
	if (family == AF_INET) {
		__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->daddr, sk, __sk_common.skc_v6_daddr);
	}
	if (step == STEP_CLOSE) {
		struct tcp_sock *tp = (struct tcp_sock *)sk;
		e->bytes_received = BPF_CORE_READ(tp, bytes_received);
		e->bytes_sent = BPF_CORE_READ(tp, bytes_sent);
	} else {
		e->bytes_received = 0;
		e->bytes_sent = 0;
	}
	if (step == STEP_CONNECT) {
		// connect() runs in the connecting process.
		__u64 id = bpf_get_current_pid_tgid();
		e->pid = id >> 32;
		e->uid = (__u32)bpf_get_current_uid_gid();
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		e->uid = 0;
		__builtin_memset(e->comm, 0, 16);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}
