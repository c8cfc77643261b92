/* SPDX-License-Identifier: GPL-2.0 */
/* What every BCC program of kerntrace shares (bpf/X.bcc.c): the counterpart
 * of kerntrace.bpf.h for kernels without BTF.  The engine
 * (tracers/engine/bcc.py) compiles X.bcc.c with BCC against the running
 * kernel's headers, with -I<bpf dir>, -DKT_BCC=1, the object's options as
 * -DKT_OPT_<name>=<value> and each chosen hook's function as
 * -DKT_HOOK_<function>=1.  The record structs stay in X.h, included by both
 * programs: one definition, decoded with the dtype of the CO-RE object's BTF.
 *
 * Kernel fields that moved are read under #if on LINUX_VERSION_CODE (BCC
 * compiles against the running kernel, so the test is exact there), each
 * with the version that moved them.  Every kernel pointer is read through
 * kt_read*() explicitly rather than left to BCC's dereference rewriter,
 * which does not follow pointers through every helper and local.
 *
 * Map operations (name.lookup(), name.perf_submit()) must not sit inside
 * macros (BCC rewrites them in the source text): helpers here are static
 * inline functions, and a program counts a record perf_submit() could not
 * take itself:  if (ring.perf_submit(ctx, &e, sizeof(e))) kt_count_lost();
 *
 * BCC rewrites map operations, and writes a classic tracepoint's argument
 * struct, in the main file only: the engine puts this file's text in place
 * of the program's #include "kt_bcc.h" line (bcc.py bcc_source). */
#ifndef __KT_BCC_H
#define __KT_BCC_H

#ifndef KT_BCC
#error "kt_bcc.h is for the BCC programs (the engine compiles them with -DKT_BCC=1)"
#endif

#include <uapi/linux/ptrace.h>
#include <linux/version.h>
#include <linux/sched.h>
#include <linux/cgroup.h>
#include <linux/fdtable.h>
#include <linux/fs.h>
#include <linux/nsproxy.h>
#include <net/net_namespace.h>

/* -- options: the CO-RE object's const volatile globals, as -D values ------ */

#ifndef KT_OPT_kt_filter_pids
#define KT_OPT_kt_filter_pids 0
#endif
#ifndef KT_OPT_kt_filter_cgroups
#define KT_OPT_kt_filter_cgroups 0
#endif
#ifndef KT_OPT_kt_self_tgid
#define KT_OPT_kt_self_tgid 0
#endif
/* The CO-RE names, so that code shared in spirit reads the same. */
#define kt_filter_pids (KT_OPT_kt_filter_pids)
#define kt_filter_cgroups (KT_OPT_kt_filter_cgroups)
#define kt_self_tgid (KT_OPT_kt_self_tgid)

/* -- maps user space fills or reads (the CO-RE objects' names) ------------- */

BPF_HASH(kt_traced, u32, u8, 8192);           /* tgid -> 1: the traced processes */
BPF_HASH(kt_cgroup_allow, u64, u8, 4096);     /* kernfs id of an allowed cgroup, either hierarchy */
BPF_ARRAY(kt_lost, u64, 1);                   /* records perf_submit() could not take */

/* A counter the CO-RE object keeps as a u64 global in .bss (kmsg_seen...):
 * a one-slot array of the same name; BccTracer.read_global reads slot 0.
 * Bump it with kt_counter_add(counter.lookup(&kt_zero), n)... written out in
 * the program, since map calls cannot sit in a macro. */
#define KT_COUNTER(name) BPF_ARRAY(name, u64, 1)

static __always_inline void kt_counter_add(u64 *slot, u64 n)
{
	if (slot)
		__sync_fetch_and_add(slot, n);
}

static __always_inline void kt_count_lost(void)
{
	int zero = 0;

	kt_counter_add(kt_lost.lookup(&zero), 1);
}

/* -- reads of kernel and user memory ---------------------------------------- */

/* bpf_probe_read_kernel/_user/_str arrived in Linux 5.5 (commit 6ae08ae3dea2);
 * before, bpf_probe_read reads either (x86-64 keeps the address spaces apart)
 * and bpf_probe_read_str (Linux 4.11) strings. */
static __always_inline int kt_read(void *dst, u32 size, const void *src)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
	return bpf_probe_read_kernel(dst, size, src);
#else
	return bpf_probe_read(dst, size, src);
#endif
}

static __always_inline int kt_read_user(void *dst, u32 size, const void *src)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
	return bpf_probe_read_user(dst, size, src);
#else
	return bpf_probe_read(dst, size, src);
#endif
}

/* A NUL-terminated kernel string into dst (size bytes).  Before 4.11 there
 * is no string read: size bytes are copied and user space stops at the NUL. */
static __always_inline int kt_read_str(void *dst, u32 size, const void *src)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
	return bpf_probe_read_kernel_str(dst, size, src);
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(4, 11, 0)
	return bpf_probe_read_str(dst, size, src);
#else
	return bpf_probe_read(dst, size, src);
#endif
}

static __always_inline struct task_struct *kt_current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

static __always_inline u32 kt_task_tgid(struct task_struct *task)
{
	u32 tgid = 0;

	kt_read(&tgid, sizeof(tgid), &task->tgid);
	return tgid;
}

/* tgid of the task's real parent. */
static __always_inline u32 kt_task_ppid(struct task_struct *task)
{
	struct task_struct *parent = NULL;

	kt_read(&parent, sizeof(parent), &task->real_parent);
	return parent ? kt_task_tgid(parent) : 0;
}

/* -- namespaces ----------------------------------------------------------------- */

/* The inode number of a network namespace: net::ns.inum since Linux 3.19
 * (commit 435d5f4bb2cc embedded struct ns_common), net::proc_inum before. */
static __always_inline u32 kt_net_inum(struct net *net)
{
	u32 inum = 0;

	if (!net)
		return 0;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 19, 0)
	kt_read(&inum, sizeof(inum), &net->ns.inum);
#else
	kt_read(&inum, sizeof(inum), &net->proc_inum);
#endif
	return inum;
}

static __always_inline u32 kt_task_netns(struct task_struct *task)
{
	struct nsproxy *nsproxy = NULL;
	struct net *net = NULL;

	kt_read(&nsproxy, sizeof(nsproxy), &task->nsproxy);
	if (!nsproxy)
		return 0;
	kt_read(&net, sizeof(net), &nsproxy->net_ns);
	return kt_net_inum(net);
}

/* -- cgroups: the ids and names kerntrace.bpf.h gives a record -------------- */

struct kt_cgroup_ids {
	u64 v2;   /* the unified hierarchy's cgroup (what bpf_get_current_cgroup_id gives) */
	u64 v1;   /* the v1 memory cgroup (runtimes put containers there on v1 hosts) */
};

/* The memory controller's slot in css_set::subsys: memory_cgrp_id since
 * Linux 3.14 (commit 073219e995b4), mem_cgroup_subsys_id before. */
#ifdef CONFIG_MEMCG
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 14, 0)
#define KT_MEMORY_CGRP_ID memory_cgrp_id
#else
#define KT_MEMORY_CGRP_ID mem_cgroup_subsys_id
#endif
#endif

/* cgroups live on kernfs since Linux 3.15 (commit 2bd59d48ebfb); before, a
 * cgroup directory is a dentry of cgroupfs, whose inode number is the id. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 15, 0)
#define KT_CGROUP_KERNFS 1
#endif

#ifdef KT_CGROUP_KERNFS
/* kernfs_node's id: a u64 since Linux 5.5 (commit 67c0496e87d1); the ino
 * half of union kernfs_node_id since 4.13 (commit c53cd490b1a4); ino before. */
static __always_inline u64 kt_kernfs_id(struct kernfs_node *kn)
{
	if (!kn)
		return 0;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
	u64 id = 0;

	kt_read(&id, sizeof(id), &kn->id);
	return id;
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(4, 13, 0)
	u32 ino = 0;

	kt_read(&ino, sizeof(ino), &kn->id.ino);
	return ino;
#else
	u32 ino = 0;

	kt_read(&ino, sizeof(ino), &kn->ino);
	return ino;
#endif
}

/* kernfs_node::parent became __parent in Linux 6.15 ("kernfs: Use RCU to
 * access kernfs_node::parent"). */
static __always_inline struct kernfs_node *kt_kernfs_parent(struct kernfs_node *kn)
{
	struct kernfs_node *parent = NULL;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 15, 0)
	kt_read(&parent, sizeof(parent), &kn->__parent);
#else
	kt_read(&parent, sizeof(parent), &kn->parent);
#endif
	return parent;
}

static __always_inline struct kernfs_node *kt_cgroup_kn(struct cgroup *cgrp)
{
	struct kernfs_node *kn = NULL;

	if (cgrp)
		kt_read(&kn, sizeof(kn), &cgrp->kn);
	return kn;
}
#endif /* KT_CGROUP_KERNFS */

static __always_inline u64 kt_cgroup_id(struct cgroup *cgrp)
{
	if (!cgrp)
		return 0;
#ifdef KT_CGROUP_KERNFS
	return kt_kernfs_id(kt_cgroup_kn(cgrp));
#else
	struct dentry *dentry = NULL;
	struct inode *inode = NULL;
	unsigned long ino = 0;

	kt_read(&dentry, sizeof(dentry), &cgrp->dentry);
	if (dentry)
		kt_read(&inode, sizeof(inode), &dentry->d_inode);
	if (inode)
		kt_read(&ino, sizeof(ino), &inode->i_ino);
	return ino;
#endif
}

/* The task's cgroup of the v2 (unified) hierarchy, css_set::dfl_cgrp since
 * Linux 3.16 (none before: 0), or of the v1 memory hierarchy. */
static __always_inline struct cgroup *kt_task_cgroup(struct task_struct *task, bool v1)
{
	struct css_set *cset = NULL;
	struct cgroup *cgrp = NULL;

	kt_read(&cset, sizeof(cset), &task->cgroups);
	if (!cset)
		return NULL;
	if (!v1) {
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 16, 0)
		kt_read(&cgrp, sizeof(cgrp), &cset->dfl_cgrp);
#endif
		return cgrp;
	}
#ifdef KT_MEMORY_CGRP_ID
	{
		struct cgroup_subsys_state *css = NULL;

		kt_read(&css, sizeof(css), &cset->subsys[KT_MEMORY_CGRP_ID]);
		if (css)
			kt_read(&cgrp, sizeof(cgrp), &css->cgroup);
	}
#endif
	return cgrp;
}

static __always_inline void kt_task_cgroups(struct task_struct *task, struct kt_cgroup_ids *ids)
{
	ids->v2 = kt_cgroup_id(kt_task_cgroup(task, false));
	ids->v1 = kt_cgroup_id(kt_task_cgroup(task, true));
}

static __always_inline void kt_current_cgroups(struct kt_cgroup_ids *ids)
{
	kt_task_cgroups(kt_current_task(), ids);
}

/* The names of a task's cgroup directory and of its parent: the v2 one, or
 * the v1 memory one when v1 is true (the task sits in the v2 root: a v1
 * host's containers).  dst buffers of size bytes each. */
static __always_inline void kt_task_cgroup_names(struct task_struct *task, bool v1, char *name, char *parent,
						 u32 size)
{
	struct cgroup *cgrp = kt_task_cgroup(task, v1);
	const char *str = NULL;

	if (!cgrp && v1)   /* no v1 memory cgroup: the v2 one, as kerntrace.bpf.h's readers do */
		cgrp = kt_task_cgroup(task, false);
	if (!cgrp)
		return;
#ifdef KT_CGROUP_KERNFS
	struct kernfs_node *kn = kt_cgroup_kn(cgrp);

	if (!kn)
		return;
	kt_read(&str, sizeof(str), &kn->name);
	if (str)
		kt_read_str(name, size, str);
	kn = kt_kernfs_parent(kn);
	if (!kn)
		return;
	str = NULL;
	kt_read(&str, sizeof(str), &kn->name);
	if (str)
		kt_read_str(parent, size, str);
#else
	struct dentry *dentry = NULL;

	kt_read(&dentry, sizeof(dentry), &cgrp->dentry);
	if (!dentry)
		return;
	kt_read(&str, sizeof(str), &dentry->d_name.name);
	if (str)
		kt_read_str(name, size, str);
	kt_read(&dentry, sizeof(dentry), &dentry->d_parent);
	str = NULL;
	if (dentry)
		kt_read(&str, sizeof(str), &dentry->d_name.name);
	if (str)
		kt_read_str(parent, size, str);
#endif
}

/* -- the filters of kerntrace.bpf.h ----------------------------------------- */

static __always_inline bool kt_cgroups_allowed(struct kt_cgroup_ids *ids)
{
	if (!kt_filter_cgroups)
		return true;
	return kt_cgroup_allow.lookup(&ids->v2) || kt_cgroup_allow.lookup(&ids->v1);
}

static __always_inline bool kt_task_cgroup_allowed(struct task_struct *task)
{
	struct kt_cgroup_ids ids = {};

	if (!kt_filter_cgroups)
		return true;
	kt_task_cgroups(task, &ids);
	return kt_cgroups_allowed(&ids);
}

static __always_inline bool kt_is_self(u32 tgid)
{
	return kt_self_tgid && tgid == kt_self_tgid;
}

static __always_inline bool kt_tgid_traced(u32 tgid)
{
	if (kt_is_self(tgid))
		return false;
	if (!kt_filter_pids)
		return true;
	return kt_traced.lookup(&tgid) != NULL;
}

static __always_inline bool kt_task_traced(struct task_struct *task, u32 tgid)
{
	return kt_tgid_traced(tgid) && kt_task_cgroup_allowed(task);
}

static __always_inline bool kt_current_traced(void)
{
	return kt_task_traced(kt_current_task(), bpf_get_current_pid_tgid() >> 32);
}

/* -- syscalls ---------------------------------------------------------------- */

/* x86-64's numbers (arch/x86/entry/syscalls/syscall_64.tbl), as in
 * kerntrace.bpf.h: the syscall hooks test the number first. */
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
#define KT_NR_SETNS 308
#define KT_NR_PREADV2 327
#define KT_NR_IO_URING_ENTER 426
#define KT_NR_CLONE3 435

/* thread_info::status bit of a task in a 32-bit syscall, whose numbers are
 * another table's (arch/x86/include/asm/thread_info.h).  thread_info sits
 * in task_struct with CONFIG_THREAD_INFO_IN_TASK (x86 since Linux 4.9),
 * at the base of the task's stack before. */
#define KT_TS_COMPAT 0x0002

static __always_inline bool kt_compat_syscall(void)
{
#ifdef CONFIG_IA32_EMULATION
	struct task_struct *task = kt_current_task();
	u32 status = 0;
#ifdef CONFIG_THREAD_INFO_IN_TASK
	kt_read(&status, sizeof(status), &task->thread_info.status);
#else
	struct thread_info *ti = NULL;

	kt_read(&ti, sizeof(ti), &task->stack);
	if (ti)
		kt_read(&status, sizeof(status), &ti->status);
#endif
	return status & KT_TS_COMPAT;
#else
	return false;
#endif
}

/* -- histograms -------------------------------------------------------------- */

#include "kt_math.h"

/* -- follow fork (-f, -c): kerntrace.bpf.h's kt_follow_fork ------------------ */

static __always_inline void kt_follow(u32 parent_tgid, u32 child_tgid)
{
	u8 one = 1;

	if (!kt_filter_pids || parent_tgid == child_tgid)
		return;
	if (kt_traced.lookup(&parent_tgid))
		kt_traced.update(&child_tgid, &one);
}

/* sched_process_fork(parent, child) as a raw tracepoint (Linux 4.17). */
int kt_follow_fork(struct bpf_raw_tracepoint_args *ctx)
{
	kt_follow(kt_task_tgid((struct task_struct *)ctx->args[0]), kt_task_tgid((struct task_struct *)ctx->args[1]));
	return 0;
}

#ifdef KT_HOOK_kt_tp_follow_fork
/* The classic tracepoint, in the parent: it names the child's thread id
 * only, which is its tgid unless the fork made a thread (then the entry is
 * a thread id that is never looked up). */
int kt_tp_follow_fork(struct tracepoint__sched__sched_process_fork *args)
{
	kt_follow(bpf_get_current_pid_tgid() >> 32, args->child_pid);
	return 0;
}
#endif

#endif /* __KT_BCC_H */
