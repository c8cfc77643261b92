/* SPDX-License-Identifier: GPL-2.0 */
/* Kernel renames and layout changes, each handled by probing for the field or
 * type (never the version number), each with the commit that caused it. */
#ifndef __CORE_FIXES_BPF_H
#define __CORE_FIXES_BPF_H

#include <bpf/bpf_core_read.h>

/* Linux commit 2f064a59a11f ("sched: Change task_struct::state") (v5.14)
 * renamed task_struct::state to __state and made it unsigned int. */
struct task_struct___o {
	volatile long int state;
} __attribute__((preserve_access_index));

struct task_struct___x {
	unsigned int __state;
} __attribute__((preserve_access_index));

static __always_inline __u32 get_task_state(void *task)
{
	struct task_struct___x *t = task;

	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___o *)task, state);
}


/* Linux commit fa2c3254d7cf ("sched/tracing: Don't re-read p->state when
 * emitting sched_switch event") (v5.18) passes the outgoing task's state to
 * sched_switch.  Read from the task at the tracepoint instead, it can already
 * be TASK_WAKING: a waker on another CPU may run between the dequeue and the
 * tracepoint, and a D sleep that the kernel counted would be missed.  Whether
 * the argument exists is read from the kernel's BTF by the engine (clang 14
 * has no bpf_core_type_matches); with it unset, the 4th argument is dead code
 * that the verifier never visits. */
const volatile bool kt_switch_has_prev_state = false;

static __always_inline __u32 get_switch_prev_state(unsigned long long *ctx, void *prev)
{
	if (kt_switch_has_prev_state)
		return (__u32)ctx[3];
	return get_task_state(prev);
}

/* Linux commit 4055526d3574 ("ns: move ns type into struct ns_common")
 * (v6.18) moved the namespace type (a CLONE_NEW* flag) from
 * proc_ns_operations::type to ns_common::ns_type. */
struct proc_ns_operations___o {
	int type;
} __attribute__((preserve_access_index));

struct ns_common___o {
	const struct proc_ns_operations___o *ops;
} __attribute__((preserve_access_index));

struct ns_common___x {
	__u32 ns_type;
} __attribute__((preserve_access_index));

static __always_inline __u32 get_ns_type(void *ns)
{
	struct ns_common___x *n = ns;

	if (bpf_core_field_exists(n->ns_type))
		return BPF_CORE_READ(n, ns_type);
	return BPF_CORE_READ((struct ns_common___o *)ns, ops, type);
}

/* Linux commit cf25e24db61c ("time: Rename tsk->real_start_time to
 * ->start_boottime") (v5.5).  Boot-based start time: what /proc/PID/stat
 * shows as starttime, so a pid can be matched to the process we saw. */
struct task_struct___boottime_o {
	u64 real_start_time;
} __attribute__((preserve_access_index));

struct task_struct___boottime_x {
	u64 start_boottime;
} __attribute__((preserve_access_index));

static __always_inline __u64 task_start_boottime(void *task)
{
	struct task_struct___boottime_x *t = task;

	if (bpf_core_field_exists(t->start_boottime))
		return BPF_CORE_READ(t, start_boottime);
	return BPF_CORE_READ((struct task_struct___boottime_o *)task, real_start_time);
}

/* Linux commit 309dca309fc3 ("block: store a block_device pointer in struct
 * bio") (v5.12) replaced bio::bi_disk with bio::bi_bdev.  Returns the gendisk
 * (the whole disk, also for a bio on a partition). */
struct bio___o {
	struct gendisk *bi_disk;
} __attribute__((preserve_access_index));

struct bio___x {
	struct block_device *bi_bdev;
} __attribute__((preserve_access_index));

static __always_inline struct gendisk *get_bio_disk(void *bio)
{
	struct bio___x *b = bio;

	if (bpf_core_field_exists(b->bi_bdev))
		return BPF_CORE_READ(b, bi_bdev, bd_disk);
	return BPF_CORE_READ((struct bio___o *)bio, bi_disk);
}

/* Linux commit 67c0496e87d1 ("kernfs: convert kernfs_node->id from union
 * kernfs_node_id to u64") (v5.5): before it the id was a union whose ino
 * half is what the cgroup directory's inode number (and
 * bpf_get_current_cgroup_id) gives. */
union kernfs_node_id___o {
	struct {
		__u32 ino;
		__u32 generation;
	};
	__u64 id;
} __attribute__((preserve_access_index));

struct kernfs_node___o {
	union kernfs_node_id___o id;
} __attribute__((preserve_access_index));

static __always_inline __u64 get_kernfs_id(struct kernfs_node *kn)
{
	if (bpf_core_type_exists(union kernfs_node_id___o))
		return BPF_CORE_READ((struct kernfs_node___o *)kn, id.ino);
	return BPF_CORE_READ(kn, id);
}

/* Linux commit "kernfs: Use RCU to access kernfs_node::parent" (v6.15;
 * hash not checked here) renamed kernfs_node::parent to __parent. */
struct kernfs_node___parent_o {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

struct kernfs_node___parent_x {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *get_kernfs_parent(void *kn)
{
	struct kernfs_node___parent_x *k = kn;

	if (bpf_core_field_exists(k->__parent))
		return BPF_CORE_READ(k, __parent);
	return BPF_CORE_READ((struct kernfs_node___parent_o *)kn, parent);
}

#endif /* __CORE_FIXES_BPF_H */
