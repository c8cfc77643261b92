// SPDX-License-Identifier: GPL-2.0
/* Engine self-test: every getppid() of a traced process emits `burst` events.
 * The kernel tests count them exactly; the benchmark uses bursts to drive the
 * ring buffer at a known rate. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "selftest.h"

const volatile __u32 burst = 1;

KT_RINGBUF(selftest_events, 4 * 1024 * 1024);
KT_EXPORT(selftest_event);

__u64 triggers = 0;

struct burst {
	void *ctx;  /* the program's, for bpf_perf_event_output */
	__u64 pid_tgid;
	__u64 now;
	__u32 n;
};

/* One record of a burst.  A bpf_loop callback (5.17+) rather than a loop:
 * the verifier walks it once, where it walked a 512-iteration loop's every
 * iteration, past its limit with the perf buffer's output. */
static long emit_one(__u32 i, struct burst *b)
{
	struct selftest_event *e = kt_reserve(&selftest_events, sizeof(*e));

	if (!e)
		return 0;
	e->ts_ns = b->now;
	e->pid = b->pid_tgid >> 32;
	e->tid = (__u32)b->pid_tgid;
	e->seq = i;
	e->burst = b->n;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	kt_submit(b->ctx, &selftest_events, e, sizeof(*e));
	return 0;
}

static __always_inline int emit_burst(void *ctx)
{
	struct burst b = {
		.ctx = ctx,
		.pid_tgid = bpf_get_current_pid_tgid(),
		.now = bpf_ktime_get_ns(),
		.n = burst < KT_SELFTEST_MAX_BURST ? burst : KT_SELFTEST_MAX_BURST,
	};

	if (!kt_current_traced())
		return 0;
	__sync_fetch_and_add(&triggers, 1);
	bpf_loop(b.n, emit_one, &b, 0);
	return 0;
}

/* The same hook three ways, best first: the engine's attach plan picks one.
 * fentry needs a BTF function: SYSCALL_DEFINE0 makes __x64_sys_getppid an
 * alias of __do_sys_getppid and pahole keeps only the latter (Debian's 6.1
 * and the 6.18 CI host alike).  kprobes go by kallsyms, where both exist. */
SEC("fentry/__do_sys_getppid")
int BPF_PROG(selftest_fentry)
{
	return emit_burst(ctx);
}

SEC("kprobe/__x64_sys_getppid")
int BPF_KPROBE(selftest_kprobe)
{
	return emit_burst(ctx);
}

SEC("tp/syscalls/sys_enter_getppid")
int selftest_getppid(void *ctx)
{
	return emit_burst(ctx);
}

/* Fails verification on purpose (reads past a map value); off unless a test
 * turns it on to check that the verifier log reaches the exception. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} selftest_array SEC(".maps");

SEC("?tp/syscalls/sys_enter_getppid")
int selftest_rejected(void *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&selftest_array, &key);

	if (!value)
		return 0;
	return *(value + 4);
}

/* Do nothing, on the hooks iotrace odirect uses.  With
 * kernel.bpf_stats_enabled, selftest_empty's average run time per call is
 * what the accounting itself adds to every program (two clock reads around
 * the call), which the odirect benchmark subtracts; the five together cost
 * a read what having a program on each of those hooks costs before it does
 * anything (the kernel's dispatch, the syscall slow path), which the
 * benchmark measures against untraced.  Off unless turned on. */
SEC("?tp_btf/block_rq_issue")
int BPF_PROG(selftest_empty)
{
	return 0;
}

SEC("?tp_btf/sys_enter")
int BPF_PROG(selftest_empty_sys_enter)
{
	return 0;
}

SEC("?tp_btf/sys_exit")
int BPF_PROG(selftest_empty_sys_exit)
{
	return 0;
}

SEC("?tp_btf/block_bio_queue")
int BPF_PROG(selftest_empty_bio_queue)
{
	return 0;
}

SEC("?tp_btf/block_rq_complete")
int BPF_PROG(selftest_empty_rq_complete)
{
	return 0;
}

/* A witness for the kernel tests: every data completion the kernel runs BPF
 * programs for, recorded as it is, with nothing of iotrace's.  On the 6.18
 * host the kernel runs no BPF program at all (this one included, and no
 * recursion miss counted) for some completions that ftrace's
 * block:block_rq_complete event records; a test compares the two to tell
 * those from a completion iotrace saw and failed to credit.  Off unless
 * turned on. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KT_SELFTEST_COMPLETIONS);
	__type(key, __u32);
	__type(value, struct selftest_completion);
} selftest_completions SEC(".maps");
KT_EXPORT(selftest_completion);

__u64 completions_seen = 0;

SEC("?tp_btf/block_rq_complete")
int BPF_PROG(selftest_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	struct gendisk *disk = rq->q->disk;
	struct selftest_completion *c;
	__u32 idx;

	if (!nr_bytes)
		return 0;
	idx = __sync_fetch_and_add(&completions_seen, 1);
	c = bpf_map_lookup_elem(&selftest_completions, &idx);
	if (!c)
		return 0;
	c->sector = rq->__sector;
	c->bytes = nr_bytes;
	c->dev = disk ? ((__u32)disk->major << 20) | (__u32)disk->first_minor : 0;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
