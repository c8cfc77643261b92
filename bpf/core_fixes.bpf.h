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

#endif /* __CORE_FIXES_BPF_H */
