/* SPDX-License-Identifier: GPL-2.0 */
/* Shared kernel-side plumbing for every kerntrace tracer: ring buffers that
 * count what they drop, and the set of traced processes.  Include it once,
 * after vmlinux.h and the bpf helper headers. */
#ifndef __KERNTRACE_BPF_H
#define __KERNTRACE_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "core_fixes.bpf.h"

/* Records a ring buffer could not take (or, on the perf buffer, that found
 * no scratch slot or that bpf_perf_event_output refused).  User space reads
 * it from .bss and reports it with every summary: a lost event is never
 * silent. */
__u64 kt_lost_events = 0;

/* The engine sets it before load where the kernel has no BPF ring buffer
 * (or KERNTRACE_TRANSPORT=perf): it has then turned every KT_RINGBUF map
 * into a BPF_MAP_TYPE_PERF_EVENT_ARRAY, and records are built in a per-CPU
 * scratch slot and copied out with bpf_perf_event_output.  A frozen rodata
 * constant: the verifier walks one transport and drops the other as dead
 * code, so neither helper is checked against the other's map type. */
const volatile bool kt_perf_output = false;

/* When true, only tasks whose tgid is in kt_traced are recorded. */
const volatile bool kt_filter_pids = false;

/* The tracer's own tgid (the engine sets it): never recorded, even without a
 * pid filter, so its start-up reads and its threads' sleeps are no finding.
 * The commands it starts are other processes and are traced.  0: none. */
const volatile __u32 kt_self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} kt_traced SEC(".maps");

/* Containers: with --container/--cgroup only tasks whose cgroup (either id
 * of struct kt_cgroup_ids) is in kt_cgroup_allow are recorded; ANDed with
 * the pid filter. */
const volatile bool kt_filter_cgroups = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);   /* kernfs id of a cgroup directory, either hierarchy */
	__type(value, __u8);
} kt_cgroup_allow SEC(".maps");

/* A task's cgroups, which user space resolves to a container: the cgroup v2
 * (unified) one, and the one of the v1 memory hierarchy, where runtimes on
 * v1 and hybrid hosts put each container (on a v2 host it is the v2 cgroup
 * again).  Both are kernfs ids: the inode numbers of the cgroup directories,
 * as bpf_get_current_cgroup_id() gives the first. */
struct kt_cgroup_ids {
	__u64 v2;
	__u64 v1;
};

static __always_inline __u64 kt_css_cgroup_id(struct cgroup_subsys_state *css)
{
	return css ? get_kernfs_id(BPF_CORE_READ(css, cgroup, kn)) : 0;
}

/* Any task (BTF or not): CO-RE reads.  The memory controller's index in
 * css_set::subsys is the kernel's enum value (absent without CONFIG_MEMCG). */
static __always_inline void kt_task_cgroups(struct task_struct *task, struct kt_cgroup_ids *ids)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	int memory = -1;

	ids->v2 = cset ? get_kernfs_id(BPF_CORE_READ(cset, dfl_cgrp, kn)) : 0;
	ids->v1 = 0;
	if (!cset || !bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return;
	memory = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	if (memory < 0 || memory >= 32)
		return;
	if (bpf_probe_read_kernel(&css, sizeof(css), (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
				  memory * sizeof(void *)))
		return;
	ids->v1 = kt_css_cgroup_id(css);
}

static __always_inline void kt_current_cgroups(struct kt_cgroup_ids *ids)
{
	kt_task_cgroups((struct task_struct *)bpf_get_current_task(), ids);
}

/* The same for the current task in BTF-typed programs (tp_btf, fentry):
 * direct loads, a few ns where each CO-RE read above is a helper call. */
static __always_inline void kt_current_cgroups_btf(struct kt_cgroup_ids *ids)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cgroup_subsys_state *css;
	struct kernfs_node *kn;

	ids->v2 = bpf_get_current_cgroup_id();
	ids->v1 = 0;
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return;
	css = task->cgroups->subsys[bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id)];
	if (!css)
		return;
	kn = css->cgroup->kn;
	if (bpf_core_type_exists(union kernfs_node_id___o))
		ids->v1 = ((struct kernfs_node___o *)kn)->id.ino;
	else
		ids->v1 = kn->id;
}

static __always_inline bool kt_cgroups_allowed(const struct kt_cgroup_ids *ids)
{
	if (!kt_filter_cgroups)
		return true;
	return bpf_map_lookup_elem(&kt_cgroup_allow, &ids->v2) || bpf_map_lookup_elem(&kt_cgroup_allow, &ids->v1);
}

static __always_inline bool kt_task_cgroup_allowed(struct task_struct *task)
{
	struct kt_cgroup_ids ids;

	if (!kt_filter_cgroups)
		return true;
	kt_task_cgroups(task, &ids);
	return kt_cgroups_allowed(&ids);
}

#include "kt_math.h"

#define KT_RINGBUF(name, bytes)                                  \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_RINGBUF);              \
		__uint(max_entries, bytes);                      \
	} name SEC(".maps")

/* The current task's comm, read directly from its task_struct (tp_btf and
 * other BTF-typed programs): two loads, where bpf_get_current_comm() is a
 * helper call (~90 ns a call on the 6.18 host, a tenth of that read
 * directly).  dst holds TASK_COMM_LEN (16) bytes. */
static __always_inline void kt_current_comm_btf(char *dst)
{
	struct task_struct *task = bpf_get_current_task_btf();

	((__u64 *)dst)[0] = *(__u64 *)&task->comm[0];
	((__u64 *)dst)[1] = *(__u64 *)&task->comm[8];
}

/* Keeps an event struct in the object's BTF, where user space reads its
 * layout; nothing else references the type by name. */
#define KT_EXPORT(type_name) const struct type_name *__kt_export_##type_name __attribute__((unused))

/* The same for an enum of constants (event kinds, methods...): user space
 * reads their names and values from BTF (Btf.enum_names), also when no
 * struct field has the enum's type (fields stay plain __u32/__u8). */
#define KT_EXPORT_ENUM(enum_name) const enum enum_name *__kt_export_enum_##enum_name __attribute__((unused))

/* -- record output: kt_reserve, then kt_submit or kt_discard --------------
 *
 * On the perf buffer a record is built in a slot of a per-CPU heap and
 * copied out.  A program can be interrupted on its CPU by another that also
 * writes a record (a block completion in irq during a syscall's program), so
 * there are KT_PERF_NEST slots per CPU, each claimed by an atomic test-and-
 * set of its bit in kt_perf_busy and released at submit or discard.  A bit
 * mask rather than a depth counter: fentry programs run with migration, not
 * preemption, disabled, so on a preemptible kernel two tasks' programs on
 * one CPU need not finish in the reverse order of their start, and a
 * counter would hand out a slot still in use.  No free slot: lost, counted. */
#ifndef KT_PERF_NEST
#define KT_PERF_NEST 4
#endif
/* The largest record any kerntrace ring carries (odirect's file record is
 * 792 bytes); a larger one is refused (lost, counted). */
#ifndef KT_PERF_RECORD_MAX
#define KT_PERF_RECORD_MAX 1024
#endif

struct kt_perf_slot {
	__u64 index;   /* this slot's number: its bit in kt_perf_busy */
	__u8 data[KT_PERF_RECORD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KT_PERF_NEST);
	__type(key, __u32);
	__type(value, struct kt_perf_slot);
} kt_perf_heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);  /* 64-bit: BPF has 32-bit atomics only with -mcpu=v3 */
} kt_perf_busy SEC(".maps");

static __always_inline void kt_count_lost(void)
{
	__sync_fetch_and_add(&kt_lost_events, 1);
}

/* The lowest free slot, claimed by an atomic test-and-set of its bit.  No
 * loop over the slots: each would be another path for the verifier to walk
 * in every program that reserves (odirect's read exit reserves twice, its
 * file record inside its read record, and went past the verifier's limit
 * with a loop).  Taken between the test and the set (a preempted program's
 * slot): lost, counted. */
static __always_inline void *kt_perf_reserve(__u64 size)
{
	struct kt_perf_slot *slot;
	__u32 zero = 0, index;
	__u64 *busy = bpf_map_lookup_elem(&kt_perf_busy, &zero);
	__u64 used, bit;

	if (!busy || size > KT_PERF_RECORD_MAX)
		return NULL;
	used = *busy;
	bit = ~used & (used + 1);  /* the lowest clear bit */
	if (!bit || bit >= (1ULL << KT_PERF_NEST))
		return NULL;
	if (__sync_fetch_and_or(busy, bit) & bit)
		return NULL;
	index = kt_log2_u64(bit);
	slot = bpf_map_lookup_elem(&kt_perf_heap, &index);
	if (!slot) {
		__sync_fetch_and_and(busy, ~bit);
		return NULL;
	}
	slot->index = index;
	return slot->data;
}

static __always_inline void kt_perf_release(void *rec)
{
	struct kt_perf_slot *slot = (void *)((char *)rec - __builtin_offsetof(struct kt_perf_slot, data));
	__u32 zero = 0;
	__u64 *busy = bpf_map_lookup_elem(&kt_perf_busy, &zero);

	if (busy)
		__sync_fetch_and_and(busy, ~(1ULL << (slot->index & 63)));
}

/* Room for a record of size bytes in ring, or NULL (counted lost). */
static __always_inline void *kt_reserve(void *ring, __u64 size)
{
	void *rec;

	if (kt_perf_output)
		rec = kt_perf_reserve(size);
	else
		rec = bpf_ringbuf_reserve(ring, size, 0);
	if (!rec)
		kt_count_lost();
	return rec;
}

/* Sends a reserved record; ring_flags are bpf_ringbuf_submit's wake-up
 * flags (the perf buffer wakes its reader by a watermark user space sets).
 * ctx: the program's context, which bpf_perf_event_output needs. */
static __always_inline void kt_submit_flags(void *ctx, void *ring, void *rec, __u64 size, __u64 ring_flags)
{
	if (kt_perf_output) {
		if (bpf_perf_event_output(ctx, ring, BPF_F_CURRENT_CPU, rec, size))
			kt_count_lost();
		kt_perf_release(rec);
	} else {
		bpf_ringbuf_submit(rec, ring_flags);
	}
}

static __always_inline void kt_submit(void *ctx, void *ring, void *rec, __u64 size)
{
	kt_submit_flags(ctx, ring, rec, size, 0);
}

/* Gives a reserved record back unsent (not a loss). */
static __always_inline void kt_discard(void *ring, void *rec)
{
	if (kt_perf_output)
		kt_perf_release(rec);
	else
		bpf_ringbuf_discard(rec, 0);
}

static __always_inline bool kt_is_self(__u32 tgid)
{
	return kt_self_tgid && tgid == kt_self_tgid;
}

static __always_inline bool kt_tgid_traced(__u32 tgid)
{
	if (kt_is_self(tgid))
		return false;
	if (!kt_filter_pids)
		return true;
	return bpf_map_lookup_elem(&kt_traced, &tgid) != NULL;
}

/* A task of a traced process in an allowed cgroup. */
static __always_inline bool kt_task_traced(struct task_struct *task, __u32 tgid)
{
	return kt_tgid_traced(tgid) && kt_task_cgroup_allowed(task);
}

static __always_inline bool kt_current_traced(void)
{
	return kt_task_traced((struct task_struct *)bpf_get_current_task(), bpf_get_current_pid_tgid() >> 32);
}

/* Syscalls are hooked on the raw tracepoints sys_enter/sys_exit (tp_btf),
 * one program each, whose first test is the syscall number: enabling any
 * syscalls/sys_enter_* tracepoint instead sends every syscall of every task
 * through perf's buffer (~330 ns a syscall on the 6.18 host, ~15 ns with a
 * raw tracepoint that returns at once).  Numbers are x86-64's
 * (arch/x86/entry/syscalls/syscall_64.tbl), an ABI of the architecture this
 * object is built for; at the exit the number is in orig_ax, and the
 * argument registers (di, si, dx, r10, r8, r9) still hold the arguments. */
#define KT_NR_READ 0
#define KT_NR_CLOSE 3
#define KT_NR_PREAD64 17
#define KT_NR_READV 19
#define KT_NR_SOCKET 41
#define KT_NR_CLONE 56
#define KT_NR_WAIT4 61
#define KT_NR_WAITID 247
#define KT_NR_UNSHARE 272
#define KT_NR_PREADV 295
#define KT_NR_IO_URING_ENTER 426
#define KT_NR_SETNS 308
#define KT_NR_PREADV2 327
#define KT_NR_CLONE3 435

/* thread_info::status bit of a task in a 32-bit syscall, whose numbers are
 * another table's (arch/x86/include/asm/thread_info.h). */
#define KT_TS_COMPAT 0x0002

static __always_inline bool kt_compat_syscall(struct task_struct *task)
{
	return task->thread_info.status & KT_TS_COMPAT;
}

/* Follows fork for -f and -c.  Every tracer object carries this program;
 * user space switches its autoload off when children are not followed.
 * tp_btf gives the tgids; the classic tracepoint only has thread ids. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(kt_follow_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (!kt_filter_pids || parent_tgid == child_tgid)
		return 0;
	if (bpf_map_lookup_elem(&kt_traced, &parent_tgid))
		bpf_map_update_elem(&kt_traced, &child_tgid, &one, BPF_ANY);
	return 0;
}

#endif /* __KERNTRACE_BPF_H */
