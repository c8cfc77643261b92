/* SPDX-License-Identifier: GPL-2.0 */
/* Uninterruptible (D-state) sleeps: one record per finished sleep, and the
 * in-kernel aggregate per (task, kernel stack, iowait).  Plain __u types:
 * shared by the BPF program and, through BTF, by user space. */
#ifndef __DSTATE_H
#define __DSTATE_H

#define DSTATE_COMM_LEN 16

/* How a sleep ended (dstate_event.end). */
enum dstate_end {
	DSTATE_END_WAKEUP = 1,   /* sched_wakeup of the sleeper */
	DSTATE_END_SWITCH = 2,   /* it was switched in without a wakeup we saw */
};

struct dstate_event {
	__u64 ts_ns;        /* end of the sleep (bpf_ktime_get_ns) */
	__u64 duration_ns;  /* switch-out to wakeup */
	__u64 cgroup_id;    /* the sleeper's cgroups (kerntrace.bpf.h: kt_cgroup_ids) */
	__u64 cgroup_v1_id;
	__u32 pid;          /* tgid */
	__u32 tid;
	__s32 stack_id;     /* kernel stack in dstate_stacks, or -errno */
	__u32 state;        /* task state at switch-out */
	__u32 waker_pid;    /* tgid of current at the wakeup (an interrupt runs
	                     * on whoever was on the CPU; 0 is the idle task) */
	__u8 iowait;        /* in_iowait at switch-out (io_schedule); at wake-up
	                     * for a sleep under way at attach */
	__u8 end;           /* enum dstate_end */
	__u8 at_attach;     /* under way when tracing started: counted from the
	                     * attach, no stack (user space read /proc's) */
	__u8 _pad;
	char comm[DSTATE_COMM_LEN];
};

struct dstate_key {
	__u32 tid;
	__s32 stack_id;
	__u32 iowait;
	__u32 at_attach;
};

/* A sleep in progress, per tid (dstate_sleeping).  User space adds the
 * sleeps under way at attach (tasks in D in /proc): ts_ns is the attach,
 * stack_id DSTATE_STACK_ID_NONE, at_attach 1. */
struct dstate_sleep {
	__u64 ts_ns;
	__s32 stack_id;
	__u32 state;
	__u32 iowait;
	__u32 pid;
	__u32 at_attach;
	__u32 _pad;
};

enum dstate_stack_id {
	DSTATE_STACK_ID_NONE = -2,   /* -ENOENT: the sleep began before the programs saw it */
};

/* Sleeps per log2 of their length in ns (slot 0: 0 and 1 ns; slot k:
 * [2^k, 2^(k+1)); 64 slots hold any __u64), in the map dstate_hists:
 * entry 0 other D, entry 1 iowait.  Counted with the totals, so the slots
 * add up to the sum of dstate_total.count (a sleep the totals had no room
 * for is in neither). */
#define DSTATE_HIST_SLOTS 64

struct dstate_hist {
	__u64 slots[DSTATE_HIST_SLOTS];
};

struct dstate_total {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 cgroup_id;    /* the task's cgroups at its first such sleep */
	__u64 cgroup_v1_id;
	__u32 pid;          /* tgid of the task */
	__u32 _pad;
	char comm[DSTATE_COMM_LEN];
};

#endif /* __DSTATE_H */
