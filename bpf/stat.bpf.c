// SPDX-License-Identifier: GPL-2.0
/* `iotrace stat`: which process causes the iowait, and which reads the disk.
 *
 * A thread that leaves the CPU in TASK_UNINTERRUPTIBLE (not TASK_NOLOAD, which
 * is idle waiting, not load) starts a D-state sleep; its wakeup ends it and
 * adds the time to its process.  Block bytes are counted where a bio is
 * queued, in the submitter's context, so an O_DIRECT reader is charged for
 * its own reads (writeback is charged to the flusher that submits it).  Only
 * bios for the disks user space counts in dsk/total are counted: a bio on a
 * device-mapper or md device is submitted again, remapped, for the disk
 * below, and would otherwise be counted twice. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "core_fixes.bpf.h"
#include "stat.h"

KT_EXPORT(stat_task);
KT_EXPORT(stat_sleep);

/* When true, only bios on disks in stat_disks count. */
const volatile bool filter_disks = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);   /* whole disk's dev_t, kernel encoding: major << 20 | minor */
	__type(value, __u8);
} stat_disks SEC(".maps");

/* Entries that could not be created because a map was full. */
__u64 stat_map_full = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);   /* tgid */
	__type(value, struct stat_task);
} stat_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);   /* thread id */
	__type(value, struct stat_sleep);
} stat_sleeping SEC(".maps");

static __always_inline struct stat_task *task_entry(__u32 tgid, struct task_struct *task)
{
	struct stat_task *entry = bpf_map_lookup_elem(&stat_tasks, &tgid);

	if (!entry) {
		struct stat_task zero = {};

		if (bpf_map_update_elem(&stat_tasks, &tgid, &zero, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&stat_tasks, &tgid)) {
			__sync_fetch_and_add(&stat_map_full, 1);
			return NULL;
		}
		entry = bpf_map_lookup_elem(&stat_tasks, &tgid);
		if (!entry)
			return NULL;
		{
			struct kt_cgroup_ids cg;

			kt_task_cgroups(task, &cg);
			entry->cgroup_id = cg.v2;
			entry->cgroup_v1_id = cg.v1;
		}
	}
	bpf_probe_read_kernel_str(entry->comm, sizeof(entry->comm), task->comm);
	return entry;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(stat_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct stat_sleep sleep = {};
	__u32 state, tid;

	if (preempt)
		return 0;
	state = get_switch_prev_state(ctx, prev);
	if (!(state & KT_STAT_TASK_UNINTERRUPTIBLE) || (state & KT_STAT_TASK_NOLOAD))
		return 0;
	tid = BPF_CORE_READ(prev, pid);
	if (tid == 0)
		return 0;
	sleep.tgid = BPF_CORE_READ(prev, tgid);
	if (!kt_task_traced(prev, sleep.tgid))
		return 0;
	sleep.start_ns = bpf_ktime_get_ns();
	sleep.iowait = BPF_CORE_READ_BITFIELD_PROBED(prev, in_iowait);
	/* The entry exists from the first sleep on, so a sleep still running at
	 * the end of an interval already has a name. */
	task_entry(sleep.tgid, prev);
	if (bpf_map_update_elem(&stat_sleeping, &tid, &sleep, BPF_ANY))
		__sync_fetch_and_add(&stat_map_full, 1);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(stat_wakeup, struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	struct stat_sleep *sleep = bpf_map_lookup_elem(&stat_sleeping, &tid);
	struct stat_task *entry;
	__u64 slept;

	if (!sleep)
		return 0;
	slept = bpf_ktime_get_ns() - sleep->start_ns;
	entry = task_entry(sleep->tgid, p);
	if (entry) {
		__sync_fetch_and_add(&entry->dstate_ns, slept);
		if (sleep->iowait)
			__sync_fetch_and_add(&entry->iowait_ns, slept);
	}
	bpf_map_delete_elem(&stat_sleeping, &tid);
	return 0;
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(stat_bio_queue, struct bio *bio)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 opf = BPF_CORE_READ(bio, bi_opf);
	__u32 bytes = BPF_CORE_READ(bio, bi_iter.bi_size);
	struct stat_task *entry;
	__u32 op = opf & KT_STAT_REQ_OP_MASK;

	if (!bytes || !kt_task_traced(task, tgid))
		return 0;
	if (op != REQ_OP_READ && op != REQ_OP_WRITE)
		return 0;  /* discard, flush, write-zeroes move no data */
	if (filter_disks) {
		struct gendisk *disk = get_bio_disk(bio);
		__u32 dev;

		if (!disk)
			return 0;
		dev = ((__u32)BPF_CORE_READ(disk, major) << KT_STAT_MINORBITS) | BPF_CORE_READ(disk, first_minor);
		if (!bpf_map_lookup_elem(&stat_disks, &dev))
			return 0;
	}
	entry = task_entry(tgid, task);
	if (!entry)
		return 0;
	if (op == REQ_OP_READ)
		__sync_fetch_and_add(&entry->read_bytes, bytes);
	else
		__sync_fetch_and_add(&entry->write_bytes, bytes);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
