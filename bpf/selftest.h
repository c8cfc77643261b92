/* SPDX-License-Identifier: GPL-2.0 */
/* Events of the engine's self-test program (used by the kernel tests and by
 * `make bench`); plain __u types so user space and BPF share it. */
#ifndef __SELFTEST_H
#define __SELFTEST_H

#define KT_SELFTEST_MAX_BURST 512

struct selftest_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 tid;
	__u32 seq;      /* index within the burst of one trigger */
	__u32 burst;    /* events emitted by the trigger this one belongs to */
	char comm[16];
};

/* Data completions recorded by selftest_rq_complete (see selftest.bpf.c). */
#define KT_SELFTEST_COMPLETIONS 65536

struct selftest_completion {
	__u64 sector;   /* request::__sector, as ftrace's block_rq_complete shows it */
	__u32 bytes;    /* completed by this call */
	__u32 dev;      /* whole-disk dev_t, kernel encoding (major << 20 | minor) */
};

#endif /* __SELFTEST_H */
