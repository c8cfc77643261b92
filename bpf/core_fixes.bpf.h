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

#endif /* __CORE_FIXES_BPF_H */
