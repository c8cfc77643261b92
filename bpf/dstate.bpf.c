// SPDX-License-Identifier: GPL-2.0
/* D-state sleeps.  At sched_switch the outgoing task's state tells whether it
 * goes to sleep uninterruptibly; the sleep ends at its wakeup (or, if that
 * was missed, when it is switched in again).  The state is tested as a bit
 * mask: TASK_KILLABLE is TASK_UNINTERRUPTIBLE|TASK_WAKEKILL and is still D in
 * ps, while TASK_IDLE (TASK_UNINTERRUPTIBLE|TASK_NOLOAD) is how idle kernel
 * threads wait and is neither D in ps nor counted in the load average.
 * libbpf-tools offcputime --state tests equality and misses killable sleeps. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "core_fixes.bpf.h"
#include "dstate.h"

/* include/linux/sched.h; stable ABI values reported by /proc. */
#define TASK_UNINTERRUPTIBLE 0x0002
#define TASK_NOLOAD 0x0400

#define MAX_SLEEPERS 16384

/* Also emit one ring record per sleep (the aggregate is always kept). */
const volatile bool emit_events = true;
/* Sleeps shorter than this are only aggregated, not emitted. */
const volatile __u64 min_event_ns = 0;

KT_RINGBUF(dstate_events, 4 * 1024 * 1024);
KT_EXPORT(dstate_event);
KT_EXPORT(dstate_key);
KT_EXPORT(dstate_total);
KT_EXPORT(dstate_sleep);
KT_EXPORT(dstate_hist);
KT_EXPORT_ENUM(dstate_end);
KT_EXPORT_ENUM(dstate_stack_id);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SLEEPERS);
	__type(key, __u32);  /* tid */
	__type(value, struct dstate_sleep);
} dstate_sleeping SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 8192);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} dstate_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dstate_key);
	__type(value, struct dstate_total);
} dstate_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);  /* 0: other D, 1: iowait */
	__type(key, __u32);
	__type(value, struct dstate_hist);
} dstate_hists SEC(".maps");

/* Sleeps ended, and sleeps whose aggregate slot could not be created. */
__u64 sleeps_seen = 0;
__u64 totals_full = 0;

static __always_inline void end_sleep(void *ctx, struct task_struct *task, __u32 tid, __u8 how, __u32 waker)
{
	struct dstate_sleep *start = bpf_map_lookup_elem(&dstate_sleeping, &tid);
	struct dstate_key key = {};
	struct dstate_total *total;
	__u64 now, delta;
	__u32 iowait;

	if (!start)
		return;
	now = bpf_ktime_get_ns();
	delta = now - start->ts_ns;
	/* A sleep under way at attach: whether it is an I/O wait is only known
	 * now (in_iowait stays set until the sleeper runs again). */
	iowait = start->at_attach ? BPF_CORE_READ_BITFIELD_PROBED(task, in_iowait) : start->iowait;
	key.tid = tid;
	key.stack_id = start->stack_id;
	key.iowait = iowait;
	key.at_attach = start->at_attach;
	__sync_fetch_and_add(&sleeps_seen, 1);

	total = bpf_map_lookup_elem(&dstate_totals, &key);
	if (!total) {
		struct dstate_total zero = {};

		struct kt_cgroup_ids cg;

		zero.pid = start->pid;
		kt_task_cgroups(task, &cg);
		zero.cgroup_id = cg.v2;
		zero.cgroup_v1_id = cg.v1;
		bpf_probe_read_kernel_str(zero.comm, sizeof(zero.comm), task->comm);
		/* Another CPU may have created it meanwhile: NOEXIST then fails harmlessly. */
		bpf_map_update_elem(&dstate_totals, &key, &zero, BPF_NOEXIST);
		total = bpf_map_lookup_elem(&dstate_totals, &key);
	}
	if (total) {
		__u32 which = iowait ? 1 : 0;
		struct dstate_hist *hist = bpf_map_lookup_elem(&dstate_hists, &which);

		__sync_fetch_and_add(&total->count, 1);
		__sync_fetch_and_add(&total->total_ns, delta);
		if (delta > total->max_ns)
			total->max_ns = delta;
		if (hist) {
			/* clamped, then barrier_var: clang may index with a copy
			 * made before the test, whose bound 6.1's verifier loses */
			__u32 slot = kt_log2_u64(delta);

			if (slot >= DSTATE_HIST_SLOTS)
				slot = DSTATE_HIST_SLOTS - 1;
			barrier_var(slot);
			if (slot < DSTATE_HIST_SLOTS)
				__sync_fetch_and_add(&hist->slots[slot], 1);
		}
	} else {
		__sync_fetch_and_add(&totals_full, 1);
	}

	if (emit_events && delta >= min_event_ns) {
		struct dstate_event *e = kt_reserve(&dstate_events, sizeof(*e));

		if (e) {
			struct kt_cgroup_ids cg;

			kt_task_cgroups(task, &cg);
			e->cgroup_id = cg.v2;
			e->cgroup_v1_id = cg.v1;
			e->ts_ns = now;
			e->duration_ns = delta;
			e->pid = start->pid;
			e->tid = tid;
			e->stack_id = start->stack_id;
			e->state = start->state;
			e->waker_pid = waker;
			e->iowait = iowait;
			e->end = how;
			e->at_attach = start->at_attach;
			e->_pad = 0;
			bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
			kt_submit(ctx, &dstate_events, e, sizeof(*e));
		}
	}
	bpf_map_delete_elem(&dstate_sleeping, &tid);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(dstate_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 prev_tid = BPF_CORE_READ(prev, pid);
	__u32 next_tid = BPF_CORE_READ(next, pid);
	__u32 state;

	/* A preempted task is runnable whatever its state says. */
	if (!preempt && prev_tid != 0) {
		state = get_switch_prev_state(ctx, prev);
		if ((state & TASK_UNINTERRUPTIBLE) && !(state & TASK_NOLOAD)) {
			__u32 tgid = BPF_CORE_READ(prev, tgid);

			if (kt_task_traced(prev, tgid)) {
				struct dstate_sleep start = {};

				start.ts_ns = bpf_ktime_get_ns();
				start.state = state;
				start.pid = tgid;
				start.iowait = BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait);
				/* prev is current here: its kernel stack is where it sleeps. */
				start.stack_id = bpf_get_stackid(ctx, &dstate_stacks, 0);
				bpf_map_update_elem(&dstate_sleeping, &prev_tid, &start, BPF_ANY);
			}
		}
	}
	if (next_tid != 0)
		end_sleep(ctx, next, next_tid, DSTATE_END_SWITCH, 0);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(dstate_wakeup, struct task_struct *p)
{
	end_sleep(ctx, p, BPF_CORE_READ(p, pid), DSTATE_END_WAKEUP, bpf_get_current_pid_tgid() >> 32);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
