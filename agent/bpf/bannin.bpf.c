// SPDX-License-Identifier: GPL-2.0
//
// Bannin's kernel probes: every exec, fork and exit as it happens, captured in the
// kernel at that moment, through a ring buffer to the agent
// (agent/src/sensors/source/exec_bpf.rs reads what this writes).
//
// Raw tracepoints only: they need neither tracefs nor kprobes. CO-RE: the few
// kernel structures read are declared below with only the fields used, and
// `preserve_access_index` has libbpf-style loaders (aya) relocate each field
// against the running kernel's BTF (/sys/kernel/btf/vmlinux).
//
// Built by agent/bpf/build.sh (Debian's clang and libbpf-dev); the object is
// checked in beside this source so that building Bannin needs no clang.

#include "common.h"

// --- The kernel structures read (CO-RE: offsets come from the kernel's BTF).

typedef struct {
	__u32 val;
} kuid_t;

struct cred {
	kuid_t uid;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	const struct cred *real_cred;
	struct mm_struct *mm;
	char comm[16];
	__u64 start_boottime;
	int exit_code;
} __attribute__((preserve_access_index));

struct super_block {
	unsigned int s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

// --- What goes to the agent. Every record starts with its kind; the layout
// is read field by field in exec_bpf.rs (keep them in step: the agent
// refuses a record of the wrong size).

#define KIND_EXEC 1
#define KIND_FORK 2
#define KIND_EXIT 3

#define FLAG_ARGV_CUT 1
#define FLAG_FILENAME_CUT 2

#define FILENAME_MAX 256
#define ARGV_MAX 1024

struct exec_event {
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u64 start_boottime;
	__u64 cgroup_id;
	// The executable the kernel runs (for a script, its interpreter).
	__u64 exe_ino;
	__u32 exe_dev; // the kernel's encoding: major << 20 | minor
	__u32 flags;
	__u32 argv_len;
	__u32 filename_len;
	char comm[16];
	char parent_comm[16];
	// The filename (filename_len bytes, no NUL), then the arguments
	// (argv_len bytes): only what they fill goes out.
	char data[FILENAME_MAX + ARGV_MAX];
};

struct fork_event {
	__u32 kind;
	__u32 pid;
	__u32 ppid;
	__u32 pad;
	__u64 start_boottime;
};

struct exit_event {
	__u32 kind;
	__u32 pid;
	// The wait status: exit code << 8, or the terminating signal.
	__u32 code;
	__u32 pad;
	__u64 start_boottime;
	__u64 exit_boottime;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	// About 2,900 execs of typical length (180 bytes: an 88-byte header, a
	// 20-byte path, 70 bytes of arguments), with their forks and exits:
	// more than a second of an exec storm. (Its data pages are mapped twice
	// into the agent, as every ring buffer is, and show twice in its
	// resident memory.)
	__uint(max_entries, 512 * 1024);
} events SEC(".maps");

// Records that did not fit in the ring buffer: [0] execs, [1] forks, [2] exits.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

// One exec record being built, per CPU (too large for the BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} scratch SEC(".maps");

static __always_inline void dropped(__u32 which)
{
	__u64 *count = bpf_map_lookup_elem(&drops, &which);
	if (count)
		*count += 1;
}

// sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
SEC("raw_tracepoint/sched_process_exec")
int bannin_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 zero = 0;
	struct exec_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;

	e->kind = KIND_EXEC;
	e->pid = BPF_CORE_READ(task, tgid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = BPF_CORE_READ(task, real_cred, uid.val);
	e->start_boottime = BPF_CORE_READ(task, start_boottime);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->exe_ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);
	e->exe_dev = BPF_CORE_READ(bprm, file, f_inode, i_sb, s_dev);
	e->flags = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, task, real_parent, comm);

	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->data, FILENAME_MAX, filename);
	if (n == FILENAME_MAX)
		e->flags |= FLAG_FILENAME_CUT;
	// n counts the NUL, which is not sent; the mask bounds the offset of the
	// arguments for the verifier (a no-op: n is at most FILENAME_MAX).
	__u32 name_len = n > 0 ? n - 1 : 0;
	name_len &= FILENAME_MAX - 1;
	e->filename_len = name_len;

	// The arguments, as the new program's stack holds them (NUL-separated).
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	unsigned long len = end > start ? end - start : 0;
	if (len > ARGV_MAX - 1) {
		len = ARGV_MAX - 1;
		e->flags |= FLAG_ARGV_CUT;
	}
	len &= ARGV_MAX - 1;
	if (len > 0 && bpf_probe_read_user(e->data + name_len, len, (const void *)start) != 0)
		len = 0;
	e->argv_len = len;

	// Only what was filled goes out: most paths and command lines are short.
	__u64 size = sizeof(*e) - FILENAME_MAX - ARGV_MAX + name_len + len;
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&events, e, size, 0) != 0)
		dropped(0);
	return 0;
}

// sched_process_fork(struct task_struct *parent, struct task_struct *child)
SEC("raw_tracepoint/sched_process_fork")
int bannin_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	// A new thread is not a new process.
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	struct fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		dropped(1);
		return 0;
	}
	e->kind = KIND_FORK;
	e->pid = BPF_CORE_READ(child, tgid);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->pad = 0;
	e->start_boottime = BPF_CORE_READ(child, start_boottime);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

// sched_process_exit(struct task_struct *p): once per thread; the thread
// group leader's exit stands for the process.
SEC("raw_tracepoint/sched_process_exit")
int bannin_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	struct exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		dropped(2);
		return 0;
	}
	e->kind = KIND_EXIT;
	e->pid = BPF_CORE_READ(task, tgid);
	e->code = BPF_CORE_READ(task, exit_code);
	e->pad = 0;
	e->start_boottime = BPF_CORE_READ(task, start_boottime);
	e->exit_boottime = bpf_ktime_get_boot_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}
