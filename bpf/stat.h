/* SPDX-License-Identifier: GPL-2.0 */
/* Per-process aggregates behind `iotrace stat`'s BPF columns: D-state time
 * and block bytes, cumulative since attach.  User space diffs two snapshots
 * per interval, so nothing is lost between a read and a reset. */
#ifndef __STAT_H
#define __STAT_H

/* task_struct::__state bits (include/linux/sched.h); stable since 2.6. */
#define KT_STAT_TASK_UNINTERRUPTIBLE 0x0002
#define KT_STAT_TASK_NOLOAD          0x0400
/* bio->bi_opf: the operation is the low REQ_OP_BITS (8) bits (blk_types.h). */
#define KT_STAT_REQ_OP_MASK          0xff
/* Kernel dev_t: MKDEV(major, minor) = major << MINORBITS | minor (kdev_t.h). */
#define KT_STAT_MINORBITS            20

/* Value of stat_tasks, keyed by tgid. */
struct stat_task {
	__u64 dstate_ns;    /* finished D-state sleeps (switch-out to wakeup) */
	__u64 iowait_ns;    /* the part of dstate_ns slept with in_iowait set */
	__u64 read_bytes;   /* block bio bytes queued by this process: reads */
	__u64 write_bytes;  /* ... writes (incl. writeback it submits itself) */
	__u64 cgroup_id;    /* the process's cgroups (kerntrace.bpf.h: kt_cgroup_ids) */
	__u64 cgroup_v1_id;
	char comm[16];      /* comm of the last thread that touched the entry */
};

/* Value of stat_sleeping, keyed by thread id: a D-state sleep not yet ended. */
struct stat_sleep {
	__u64 start_ns;     /* bpf_ktime_get_ns() at switch-out */
	__u32 tgid;
	__u32 iowait;       /* 1 when the task slept in io_schedule() */
};

#endif /* __STAT_H */
