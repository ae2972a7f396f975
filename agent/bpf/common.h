// SPDX-License-Identifier: GPL-2.0
//
// What Bannin's probes share: the kernel's basic types and the map types
// they use (declared here rather than from a generated vmlinux.h or the
// kernel's UAPI headers, so that only libbpf's headers are needed), libbpf's
// helpers, and the licence the kernel requires of programs that read its
// memory.

#ifndef BANNIN_COMMON_H
#define BANNIN_COMMON_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

// From the kernel's UAPI (include/uapi/linux/bpf.h), which never renumbers.
enum bpf_map_type {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#endif
