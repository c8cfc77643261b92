// SPDX-License-Identifier: GPL-2.0
/* nstrace ip6mr under BCC, for kernels without BTF (before 5.4, RHEL 7):
 * the records of ip6mr.bpf.c (struct ns_event and kmsg_event of ip6mr.h,
 * every field filled with the same meaning) from what an old kernel has:
 * raw tracepoints (4.17) or classic ones for the syscalls, the new task, the
 * process exit and the console; kprobes and kretprobes for the kernel path
 * (copy_net_ns, setup_net, ip6mr_net_init/exit, ip6mr_sk_done).  Which of
 * each the engine took arrives as -DKT_HOOK_<function>=1 (tracers/ip6mr.py
 * BCC_HOOKS).  Output through perf buffers named as the CO-RE ring buffers. */
#include "kt_bcc.h"   /* in place: BCC rewrites map calls in the main file only */
#include <linux/proc_ns.h>
#include <net/sock.h>
#include "ip6mr.h"

#define NS_CLONE_NEWNET 0x40000000
#define NS_AF_INET6 10
#define NS_SOCK_RAW 3
#define NS_SOCK_TYPE_MASK 0xf
#define NS_IPPROTO_ICMPV6 58
#define NS_NSFS_MAGIC 0x6e736673
#define NS_MAX_ERRNO 4095

BPF_PERF_OUTPUT(ns_events);
BPF_PERF_OUTPUT(kmsg_events);

/* Console messages scanned, and those a needle matched (the CO-RE object's
 * .bss globals of the same names). */
KT_COUNTER(kmsg_seen);
KT_COUNTER(kmsg_matched);

/* A syscall between entry and exit, per thread. */
struct ns_pending {
	u64 start_ns;
	u64 flags;
	u32 method;
	u32 old_netns;
	u32 target_netns;
	u32 child_pid;
	u32 child_netns;
	s32 fd;
};

BPF_HASH(pending_ns, u32, struct ns_pending, 10240);

/* Network namespaces created or entered by traced processes: with -p, the
 * kernel hooks that run in kworkers (netns cleanup) are kept for these.
 * LRU hash maps arrived in Linux 4.10; a plain hash before (it may fill). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 10, 0)
BPF_TABLE("lru_hash", u32, u8, seen_netns, 16384);
#else
BPF_HASH(seen_netns, u32, u8, 16384);
#endif

/* Raw ICMPv6 sockets: the socket() calls in flight, the open fds, their owners. */
BPF_HASH(socket_pending, u32, u8, 4096);

struct icmp6_fd_key {
	u32 tgid;
	s32 fd;
};

BPF_HASH(icmp6_fds, struct icmp6_fd_key, u64, 16384);   /* -> open time */
BPF_HASH(close_pending, u32, s32, 4096);                /* tid -> fd */
BPF_HASH(icmp6_owners, u32, u8, 4096);                  /* tgid */

/* copy_net_ns entry time per thread, for its return hook. */
BPF_HASH(copy_net_start, u32, u64, 4096);

/* 8-byte windows of the kernel's precursor messages, filled by user space. */
BPF_HASH(kmsg_needles, u64, u32, 64);
/* A console line being scanned, with slack past the record so that an index
 * masked to 8 bits is in bounds for any verifier (6.1's did not carry the
 * loop's bound to the index). */
struct kmsg_scan {
	struct kmsg_event e;
	char slack[64];
};

BPF_PERCPU_ARRAY(kmsg_scratch, struct kmsg_scan, 1);

/* -- records --------------------------------------------------------------- */

/* The common part of every ns_event, as ip6mr.bpf.c's new_event fills it.
 * Records are built on the stack (296 bytes): perf_submit from a map value
 * needs a newer kernel than the stack does. */
static __always_inline void new_event(struct ns_event *e, u32 kind)
{
	struct task_struct *task = kt_current_task();
	u64 pid_tgid = bpf_get_current_pid_tgid();
	struct kt_cgroup_ids cg = {};

	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = pid_tgid >> 32;
	e->tid = (u32)pid_tgid;
	e->ppid = kt_task_ppid(task);
	kt_task_cgroups(task, &cg);
	e->cgroup_id = cg.v2;
	e->cgroup_v1_id = cg.v1;
	/* kernfs ids start at 1 for a hierarchy's root: a task in the v2 root
	 * is named by its v1 memory cgroup (a v1 host's containers). */
	kt_task_cgroup_names(task, cg.v2 <= 1, e->cgroup_name, e->cgroup_parent, sizeof(e->cgroup_name));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline void ns_submit(void *ctx, struct ns_event *e)
{
	if (ns_events.perf_submit(ctx, e, sizeof(*e)))
		kt_count_lost();
}

static __always_inline u32 current_netns(void)
{
	return kt_task_netns(kt_current_task());
}

static __always_inline void remember_netns(u32 inum)
{
	u8 one = 1;

	if (inum)
		seen_netns.update(&inum, &one);
}

/* With -p: keep what traced processes do, and what the kernel does later to
 * their namespaces (netns cleanup runs in a kworker). */
static __always_inline bool netns_traced(u32 inum)
{
	if (kt_current_traced())
		return true;
	return kt_filter_pids && inum && seen_netns.lookup(&inum);
}

/* -- attempts ------------------------------------------------------------ */

static __always_inline int attempt_enter(u32 method, u64 flags, s32 fd, u32 target)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct ns_pending p = {};

	if (!kt_current_traced())
		return 0;
	p.start_ns = bpf_ktime_get_ns();
	p.flags = flags;
	p.method = method;
	p.old_netns = current_netns();
	p.target_netns = target;
	p.fd = fd;
	pending_ns.update(&tid, &p);
	return 0;
}

static __always_inline int attempt_exit(void *ctx, long ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct ns_pending *p = pending_ns.lookup(&tid);
	struct ns_event e;

	if (!p)
		return 0;
	new_event(&e, NS_KIND_ATTEMPT);
	e.latency_ns = e.ts_ns - p->start_ns;
	e.method = p->method;
	e.flags = p->flags;
	e.ret = ret;
	e.old_netns = p->old_netns;
	e.fd = p->fd;
	if (ret < 0) {
		e.err = -ret;
		/* setns: the namespace it tried to enter, when known */
		e.netns = p->target_netns;
	} else if (p->method == NS_METHOD_CLONE || p->method == NS_METHOD_CLONE3) {
		e.child_pid = p->child_pid ? p->child_pid : ret;
		e.netns = p->child_netns;
	} else {
		e.netns = current_netns();
	}
	if (!e.err)
		remember_netns(e.netns);
	ns_submit(ctx, &e);
	pending_ns.delete(&tid);
	return 0;
}

static __always_inline int unshare_enter(u64 flags)
{
	if (!(flags & NS_CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_UNSHARE, flags, -1, 0);
}

static __always_inline int clone_enter(u64 flags)
{
	if (!(flags & NS_CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_CLONE, flags, -1, 0);
}

/* clone3 (Linux 5.3): the flags are the first u64 of struct clone_args, in
 * user memory. */
static __always_inline int clone3_enter(const void *uargs)
{
	u64 flags = 0;

	if (kt_read_user(&flags, sizeof(flags), uargs))
		return 0;
	if (!(flags & NS_CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_CLONE3, flags, -1, 0);
}

/* The namespace type of an ns_common (a CLONE_NEW* flag):
 * proc_ns_operations::type until Linux 6.18 moved it to ns_common::ns_type
 * (commit 4055526d3574). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 19, 0)
static __always_inline u32 ns_common_type(struct ns_common *ns)
{
	u32 type = 0;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	kt_read(&type, sizeof(type), &ns->ns_type);
#else
	const struct proc_ns_operations *ops = NULL;
	int t = 0;

	kt_read(&ops, sizeof(ops), &ns->ops);
	if (ops)
		kt_read(&t, sizeof(t), &ops->type);
	type = t;
#endif
	return type;
}
#endif

/* The namespace an fd refers to, when it is an nsfs file: 0 for anything
 * else (pidfds, bad fds).  nsfs came with Linux 3.19 (commit e149ed2b805f);
 * before, /proc/PID/ns/net is a proc inode whose namespace this program
 * cannot reach (fs/proc/internal.h): setns(fd, 0) is then not told apart,
 * and a failed setns has no target. */
static __always_inline u32 nsfs_fd_netns(int fd, bool *is_nsfs)
{
	*is_nsfs = false;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(3, 19, 0)
	struct task_struct *task = kt_current_task();
	struct files_struct *files = NULL;
	struct fdtable *fdt = NULL;
	struct file **fds = NULL;
	struct file *file = NULL;
	struct inode *inode = NULL;
	struct super_block *sb = NULL;
	unsigned long magic = 0;
	unsigned int max_fds = 0;
	struct ns_common *ns = NULL;
	u32 inum = 0;

	if (fd < 0)
		return 0;
	kt_read(&files, sizeof(files), &task->files);
	if (!files)
		return 0;
	kt_read(&fdt, sizeof(fdt), &files->fdt);
	if (!fdt)
		return 0;
	kt_read(&max_fds, sizeof(max_fds), &fdt->max_fds);
	if ((unsigned int)fd >= max_fds)
		return 0;
	kt_read(&fds, sizeof(fds), &fdt->fd);
	if (!fds || kt_read(&file, sizeof(file), fds + fd) || !file)
		return 0;
	kt_read(&inode, sizeof(inode), &file->f_inode);
	if (!inode)
		return 0;
	kt_read(&sb, sizeof(sb), &inode->i_sb);
	if (sb)
		kt_read(&magic, sizeof(magic), &sb->s_magic);
	if (magic != NS_NSFS_MAGIC)
		return 0;
	*is_nsfs = true;
	kt_read(&ns, sizeof(ns), &inode->i_private);
	if (!ns || ns_common_type(ns) != NS_CLONE_NEWNET)
		return 0;
	kt_read(&inum, sizeof(inum), &ns->inum);
	return inum;
#else
	return 0;
#endif
}

static __always_inline int setns_enter(int fd, u64 nstype)
{
	bool is_nsfs;
	u32 target;

	if (!kt_current_traced())
		return 0;
	target = nsfs_fd_netns(fd, &is_nsfs);
	/* nstype 0 means "whatever the fd is": count it when the fd is a netns. */
	if (!(nstype & NS_CLONE_NEWNET) && !(nstype == 0 && target))
		return 0;
	return attempt_enter(NS_METHOD_SETNS, nstype, fd, target);
}

/* A task made with CLONE_NEWNET, in its parent at the end of copy_process:
 * the clone syscalls' child, or an attempt of its own (a task made outside
 * the traced syscalls). */
static __always_inline int on_newtask(void *ctx, struct task_struct *task, u64 clone_flags)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct ns_pending *p;
	struct ns_event e;
	u32 child_netns;

	if (!(clone_flags & NS_CLONE_NEWNET))
		return 0;
	child_netns = kt_task_netns(task);
	p = pending_ns.lookup(&tid);
	if (p && (p->method == NS_METHOD_CLONE || p->method == NS_METHOD_CLONE3)) {
		p->child_pid = kt_task_tgid(task);
		p->child_netns = child_netns;
		return 0;
	}
	if (!kt_current_traced())
		return 0;
	new_event(&e, NS_KIND_ATTEMPT);
	e.method = NS_METHOD_TASK_NEWTASK;
	e.flags = clone_flags;
	e.child_pid = kt_task_tgid(task);
	e.netns = child_netns;
	e.old_netns = current_netns();
	e.fd = -1;
	remember_netns(child_netns);
	ns_submit(ctx, &e);
	return 0;
}

/* task_newtask(task, clone_flags) as a raw tracepoint (Linux 4.17). */
int ns_newtask(struct bpf_raw_tracepoint_args *ctx)
{
	return on_newtask(ctx, (struct task_struct *)ctx->args[0], ctx->args[1]);
}

/* Before raw tracepoints: wake_up_new_task(p) runs in the parent right after
 * copy_process.  Its clone flags are not at hand there: a child in another
 * network namespace than its parent was made with CLONE_NEWNET, the one flag
 * this record then carries. */
int ns_kprobe_newtask(struct pt_regs *ctx, struct task_struct *p)
{
	u32 child_netns = kt_task_netns(p);

	if (!child_netns || child_netns == current_netns())
		return 0;
	return on_newtask(ctx, p, NS_CLONE_NEWNET);
}

/* -- memory pressure and the kernel log ------------------------------------ */

/* Every OOM kill, whoever is traced: memory pressure is host-wide evidence. */
#ifdef KT_HOOK_ns_oom_victim
int ns_oom_victim(struct tracepoint__oom__mark_victim *args)
{
	struct ns_event e;

	new_event(&e, NS_KIND_OOM);
	e.child_pid = args->pid;
	e.fd = -1;
	e.comm[0] = 0;  /* the victim's, when the event has it; not the allocating task's */
#ifdef KT_TPF_mark_victim_comm
	/* The victim's comm joined the event in Linux commit 72ba14deb40a. */
	{
		unsigned short off = args->data_loc_comm & 0xffff;

		kt_read_str(e.comm, sizeof(e.comm), (char *)args + off);
	}
#endif
	ns_submit(args, &e);
	return 0;
}
#endif

/* Before oom:mark_victim (Linux 4.13): mark_oom_victim(tsk), where the
 * tracepoint sits; the victim's comm from its task. */
int ns_kprobe_oom_victim(struct pt_regs *ctx, struct task_struct *tsk)
{
	struct ns_event e;
	u32 pid = 0;

	new_event(&e, NS_KIND_OOM);
	kt_read(&pid, sizeof(pid), &tsk->pid);
	e.child_pid = pid;
	e.fd = -1;
	kt_read_str(e.comm, sizeof(e.comm), &tsk->comm);
	ns_submit(ctx, &e);
	return 0;
}

/* One console line (text, n bytes already in kmsg_scratch): scanned for a
 * needle, a match sent.  Kernels before 5.3 have no bounded loops: the loop
 * is unrolled there. */
/* An index masked to 8 bits where clang cannot drop the mask (it knows the
 * loop's bound, which the 6.1 verifier does not carry to the index). */
static __always_inline u32 kt_mask8(u32 i)
{
	asm volatile("" : "+r"(i));
	return i & 0xff;
}

static __always_inline int on_console(void *ctx, struct kmsg_scan *s, u32 n)
{
	int zero = 0;
	struct kmsg_event e;
	u32 *needle = NULL;
	u64 window = 0;

	/* the scratch buffer holds the previous, longer message past n */
	if (n < NS_KMSG_LEN)
		s->e.text[kt_mask8(n)] = 0;
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 3, 0)
#pragma unroll
#endif
	for (u32 i = 0; i < NS_KMSG_LEN - 1; i++) {
		u32 limit = n;

		/* limit opaque to clang in every pass: else clang merges the two
		 * bounds into one test "i == min(n - 1, 190)", which leaves a
		 * verifier before 6.7 (no range cut on a failed ==) without a
		 * bound: it walks the loop until 8193 jumps are pending */
		asm volatile("" : "+r"(limit));
		if (i >= limit)
			break;
		/* little-endian: the window's bytes are in string order */
		window = (window >> 8) | ((u64)(u8)s->e.text[kt_mask8(i)] << 56);
		if (i < 7)
			continue;
		needle = kmsg_needles.lookup(&window);
		if (needle)
			break;
	}
	if (!needle)
		return 0;
	kt_counter_add(kmsg_matched.lookup(&zero), 1);
	e.ts_ns = bpf_ktime_get_ns();
	e.pid = bpf_get_current_pid_tgid() >> 32;
	e.needle = *needle;
	e.len = n;
	e.pad = 0;
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	__builtin_memcpy(e.text, s->e.text, NS_KMSG_LEN);
	e.text[NS_KMSG_LEN - 1] = 0;
	if (kmsg_events.perf_submit(ctx, &e, sizeof(e)))
		kt_count_lost();
	return 0;
}

/* console(text, len) as a raw tracepoint (Linux 4.17). */
int ns_console(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct kmsg_scan *s = kmsg_scratch.lookup(&zero);
	const char *text = (const char *)ctx->args[0];
	u64 len = ctx->args[1];
	u32 n;

	if (!s)
		return 0;
	kt_counter_add(kmsg_seen.lookup(&zero), 1);
	n = len < NS_KMSG_LEN - 1 ? len : NS_KMSG_LEN - 1;
	if (!n || kt_read(s->e.text, n, text))
		return 0;
	return on_console(ctx, s, n);
}

#ifdef KT_HOOK_ns_tp_console
/* The classic printk:console: the line in a __data_loc array (without its
 * newline, which user space strips anyway). */
int ns_tp_console(struct tracepoint__printk__console *args)
{
	int zero = 0;
	struct kmsg_scan *s = kmsg_scratch.lookup(&zero);
	unsigned short off = args->data_loc_msg & 0xffff;
	unsigned short len = args->data_loc_msg >> 16;   /* with its NUL */
	u32 n;

	if (!s)
		return 0;
	kt_counter_add(kmsg_seen.lookup(&zero), 1);
	if (len)
		len--;
	n = len < NS_KMSG_LEN - 1 ? len : NS_KMSG_LEN - 1;
	if (!n || kt_read(s->e.text, n, (char *)args + off))
		return 0;
	return on_console(args, s, n);
}
#endif

/* -- raw ICMPv6 sockets ---------------------------------------------------- */

static __always_inline int socket_enter(int family, int type, int protocol)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u8 one = 1;

	if (family != NS_AF_INET6 || (type & NS_SOCK_TYPE_MASK) != NS_SOCK_RAW || protocol != NS_IPPROTO_ICMPV6)
		return 0;
	if (!kt_current_traced())
		return 0;
	socket_pending.update(&tid, &one);
	return 0;
}

static __always_inline int socket_exit(void *ctx, long ret)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	struct ns_event e;

	if (!socket_pending.lookup(&tid))
		return 0;
	socket_pending.delete(&tid);
	if (ret >= 0) {
		struct icmp6_fd_key key = { .tgid = pid_tgid >> 32, .fd = ret };
		u64 now = bpf_ktime_get_ns();
		u8 one = 1;

		icmp6_fds.update(&key, &now);
		icmp6_owners.update(&key.tgid, &one);
	}
	new_event(&e, NS_KIND_ICMP6_OPEN);
	e.ret = ret;
	e.fd = ret >= 0 ? ret : -1;
	e.err = ret < 0 ? -ret : 0;
	e.netns = current_netns();
	ns_submit(ctx, &e);
	return 0;
}

static __always_inline int close_enter(int fd)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	struct icmp6_fd_key key = { .tgid = pid_tgid >> 32, .fd = fd };

	if (!icmp6_fds.lookup(&key))
		return 0;
	close_pending.update(&tid, &key.fd);
	return 0;
}

static __always_inline int close_exit(void *ctx, long ret)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	s32 *fd = close_pending.lookup(&tid);
	struct icmp6_fd_key key = { .tgid = pid_tgid >> 32 };
	struct ns_event e;

	if (!fd)
		return 0;
	key.fd = *fd;
	close_pending.delete(&tid);
	/* close() releases the fd even when it reports an error (except EBADF). */
	if (ret != -9)
		icmp6_fds.delete(&key);
	new_event(&e, NS_KIND_ICMP6_CLOSE);
	e.fd = key.fd;
	e.ret = ret;
	e.err = ret < 0 ? -ret : 0;
	e.netns = current_netns();
	ns_submit(ctx, &e);
	return 0;
}

/* -- the syscalls ------------------------------------------------------------ */

/* One syscall entry: its number and first three arguments. */
static __always_inline int syscall_enter(long id, unsigned long a0, unsigned long a1, unsigned long a2)
{
	switch (id) {
	case KT_NR_UNSHARE: case KT_NR_CLONE: case KT_NR_CLONE3: case KT_NR_SETNS: case KT_NR_SOCKET:
	case KT_NR_CLOSE:
		break;
	default:
		return 0;
	}
	if (kt_compat_syscall())
		return 0;
	switch (id) {
	case KT_NR_UNSHARE:
		return unshare_enter(a0);
	case KT_NR_CLONE:
		return clone_enter(a0);
	case KT_NR_CLONE3:
		return clone3_enter((const void *)a0);
	case KT_NR_SETNS:
		return setns_enter((int)a0, (u32)a1);
	case KT_NR_SOCKET:
		return socket_enter((int)a0, (int)a1, (int)a2);
	default:
		return close_enter((int)a0);
	}
}

/* The child returns from clone too (ret 0), on a thread with no entry here. */
static __always_inline int syscall_exit(void *ctx, long id, long ret)
{
	switch (id) {
	case KT_NR_UNSHARE: case KT_NR_CLONE: case KT_NR_CLONE3: case KT_NR_SETNS:
		return attempt_exit(ctx, ret);
	case KT_NR_SOCKET:
		return socket_exit(ctx, ret);
	case KT_NR_CLOSE:
		return close_exit(ctx, ret);
	}
	return 0;
}

/* sys_enter(regs, id) as a raw tracepoint (Linux 4.17): the arguments are
 * in the user registers (di, si, dx). */
int ns_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long id = ctx->args[1];
	unsigned long a0 = 0, a1 = 0, a2 = 0;

	switch (id) {
	case KT_NR_UNSHARE: case KT_NR_CLONE: case KT_NR_CLONE3: case KT_NR_SETNS: case KT_NR_SOCKET:
	case KT_NR_CLOSE:
		break;
	default:
		return 0;
	}
	kt_read(&a0, sizeof(a0), &regs->di);
	kt_read(&a1, sizeof(a1), &regs->si);
	kt_read(&a2, sizeof(a2), &regs->dx);
	return syscall_enter(id, a0, a1, a2);
}

/* sys_exit(regs, ret): the number is in orig_ax. */
int ns_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long id = -1;

	kt_read(&id, sizeof(id), &regs->orig_ax);
	return syscall_exit(ctx, id, ctx->args[1]);
}

#ifdef KT_HOOK_ns_tp_sys_enter
/* The classic raw_syscalls tracepoints (every kernel with BPF tracepoints,
 * 4.7; RHEL 7's backport). */
int ns_tp_sys_enter(struct tracepoint__raw_syscalls__sys_enter *args)
{
	return syscall_enter(args->id, args->args[0], args->args[1], args->args[2]);
}
#endif

#ifdef KT_HOOK_ns_tp_sys_exit
int ns_tp_sys_exit(struct tracepoint__raw_syscalls__sys_exit *args)
{
	return syscall_exit(args, args->id, args->ret);
}
#endif

/* The kernel closes what a process still holds when it exits; user space
 * marks that process's ICMPv6 sockets closed and forgets their fds.  The
 * exiting task is the current one: its group leader's exit counts. */
static __always_inline int on_process_exit(void *ctx)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tgid = pid_tgid >> 32;
	struct ns_event e;

	if ((u32)pid_tgid != tgid || !icmp6_owners.lookup(&tgid))
		return 0;
	icmp6_owners.delete(&tgid);
	new_event(&e, NS_KIND_ICMP6_EXIT);
	e.fd = -1;
	ns_submit(ctx, &e);
	return 0;
}

int ns_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return on_process_exit(ctx);
}

#ifdef KT_HOOK_ns_tp_process_exit
int ns_tp_process_exit(struct tracepoint__sched__sched_process_exit *args)
{
	return on_process_exit(args);
}
#endif

/* -- the kernel path (kprobes) ----------------------------------------------- */

int ns_kprobe_copy_net_ns(struct pt_regs *ctx, unsigned long flags, struct user_namespace *user_ns,
			  struct net *old_net)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 now = bpf_ktime_get_ns();
	struct ns_event e;

	/* Called for every new nsproxy; only CLONE_NEWNET makes a namespace. */
	if (!(flags & NS_CLONE_NEWNET) || !kt_current_traced())
		return 0;
	copy_net_start.update(&tid, &now);
	new_event(&e, NS_KIND_COPY_NET_NS);
	e.flags = flags;
	e.old_netns = kt_net_inum(old_net);
	e.fd = -1;
	ns_submit(ctx, &e);
	return 0;
}

int ns_kretprobe_copy_net_ns(struct pt_regs *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	u64 *start = copy_net_start.lookup(&tid);
	long value = (long)PT_REGS_RC(ctx);
	struct ns_event e;

	if (!start)
		return 0;
	new_event(&e, NS_KIND_COPY_NET_NS_RET);
	e.latency_ns = e.ts_ns - *start;
	e.ret = value;
	e.fd = -1;
	if (value < 0 && value >= -NS_MAX_ERRNO) {
		e.err = -value;
	} else {
		e.netns = kt_net_inum((struct net *)value);
		remember_netns(e.netns);
	}
	ns_submit(ctx, &e);
	copy_net_start.delete(&tid);
	return 0;
}

static __always_inline int on_net_hook(void *ctx, u32 kind, struct net *net)
{
	u32 inum = kt_net_inum(net);
	struct ns_event e;

	if (!netns_traced(inum))
		return 0;
	new_event(&e, kind);
	e.netns = inum;
	e.fd = -1;
	ns_submit(ctx, &e);
	return 0;
}

int ns_kprobe_setup_net(struct pt_regs *ctx, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_SETUP_NET, net);
}

int ns_kprobe_ip6mr_net_init(struct pt_regs *ctx, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_INIT, net);
}

int ns_kprobe_ip6mr_net_exit(struct pt_regs *ctx, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_EXIT, net);
}

/* The socket's namespace: sock_common::skc_net is a possible_net_t since
 * Linux 4.1 (commit 0c5c9fb55106), a struct net pointer before; both only
 * with CONFIG_NET_NS. */
int ns_kprobe_ip6mr_sk_done(struct pt_regs *ctx, struct sock *sk)
{
	struct net *net = NULL;
	u16 num = 0;
	u32 inum;
	struct ns_event e;

#ifdef CONFIG_NET_NS
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 1, 0)
	kt_read(&net, sizeof(net), &sk->__sk_common.skc_net.net);
#else
	kt_read(&net, sizeof(net), &sk->__sk_common.skc_net);
#endif
#endif
	inum = kt_net_inum(net);
	if (!netns_traced(inum))
		return 0;
	new_event(&e, NS_KIND_IP6MR_SK_DONE);
	e.netns = inum;
	kt_read(&num, sizeof(num), &sk->__sk_common.skc_num);
	e.ret = num;   /* the raw protocol */
	e.fd = -1;
	ns_submit(ctx, &e);
	return 0;
}
