// SPDX-License-Identifier: GPL-2.0
/* nstrace ip6mr: every attempt to create or enter a network namespace
 * (unshare, clone, clone3 with CLONE_NEWNET, setns into a netns) with its
 * result and latency; OOM kills; kernel-log lines that precede the
 * ip6mr_sk_done crash; raw ICMPv6 sockets (closing one runs rawv6_close ->
 * ip6mr_sk_done); and, where fentry or kprobes are allowed, the kernel path
 * itself: copy_net_ns, setup_net, ip6mr_net_init/exit, ip6mr_sk_done. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "core_fixes.bpf.h"
#include "ip6mr.h"

#define CLONE_NEWNET 0x40000000
#define AF_INET6 10
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf
#define IPPROTO_ICMPV6 58
#define NSFS_MAGIC 0x6e736673
#define MAX_ERRNO 4095

KT_RINGBUF(ns_events, 1024 * 1024);
KT_RINGBUF(kmsg_events, 256 * 1024);
KT_EXPORT(ns_event);
KT_EXPORT(kmsg_event);
KT_EXPORT_ENUM(ns_kind);
KT_EXPORT_ENUM(ns_method);

/* Console messages scanned, and those a needle matched (user space checks
 * the whole pattern; the needle only decides what crosses the ring). */
__u64 kmsg_seen = 0;
__u64 kmsg_matched = 0;

/* A syscall between entry and exit, per thread. */
struct pending {
	__u64 start_ns;
	__u64 flags;
	__u32 method;
	__u32 old_netns;
	__u32 target_netns;
	__u32 child_pid;
	__u32 child_netns;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct pending);
} pending_ns SEC(".maps");

/* Network namespaces created or entered by traced processes: with -p, the
 * kernel hooks that run in kworkers (netns cleanup) are kept for these. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} seen_netns SEC(".maps");

/* Raw ICMPv6 sockets: the socket() calls in flight, the open fds, their owners. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* tid */
	__type(value, __u8);
} socket_pending SEC(".maps");

struct icmp6_fd_key {
	__u32 tgid;
	__s32 fd;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct icmp6_fd_key);
	__type(value, __u64);  /* open time */
} icmp6_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* tid */
	__type(value, __s32); /* fd */
} close_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* tgid */
	__type(value, __u8);
} icmp6_owners SEC(".maps");

/* copy_net_ns entry time per thread, for its return hook. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} copy_net_start SEC(".maps");

/* 8-byte windows of the kernel's precursor messages, filled by user space:
 * one map lookup per byte of a console line instead of a string search. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
} kmsg_needles SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kmsg_event);
} kmsg_scratch SEC(".maps");

static __always_inline __u32 net_inum(struct net *net)
{
	if (!net)
		return 0;
	return BPF_CORE_READ(net, ns.inum);
}

static __always_inline __u32 current_netns(void)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

/* kernfs ids start at 1 for a hierarchy's root: a task whose v2 cgroup is
 * the root is named by its v1 memory cgroup (a v1 host's containers). */
static __always_inline void cgroup_names(struct task_struct *task, bool v1, struct ns_event *e)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	struct kernfs_node *kn;
	int memory;

	if (!cset)
		return;
	kn = BPF_CORE_READ(cset, dfl_cgrp, kn);
	if (v1 && bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		memory = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		if (memory >= 0 && memory < 32 &&
		    !bpf_probe_read_kernel(&css, sizeof(css), (void *)cset + bpf_core_field_offset(struct css_set, subsys) +
					   memory * sizeof(void *)) && css)
			kn = BPF_CORE_READ(css, cgroup, kn);
	}
	if (!kn)
		return;
	bpf_probe_read_kernel_str(e->cgroup_name, sizeof(e->cgroup_name), BPF_CORE_READ(kn, name));
	kn = get_kernfs_parent(kn);
	if (kn)
		bpf_probe_read_kernel_str(e->cgroup_parent, sizeof(e->cgroup_parent), BPF_CORE_READ(kn, name));
}

static __always_inline struct ns_event *new_event(__u32 kind)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ns_event *e;

	e = kt_reserve(&ns_events, sizeof(*e));
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	{
		struct kt_cgroup_ids cg;

		kt_task_cgroups(task, &cg);
		e->cgroup_id = cg.v2;
		e->cgroup_v1_id = cg.v1;
		cgroup_names(task, cg.v2 <= 1, e);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

static __always_inline void remember_netns(__u32 inum)
{
	__u8 one = 1;

	if (inum)
		bpf_map_update_elem(&seen_netns, &inum, &one, BPF_ANY);
}

/* With -p: keep what traced processes do, and what the kernel does later to
 * their namespaces (netns cleanup runs in a kworker).  Without -p everything
 * is traced but the tracer itself (kt_current_traced() is false only there). */
static __always_inline bool netns_traced(__u32 inum)
{
	if (kt_current_traced())
		return true;
	return kt_filter_pids && inum && bpf_map_lookup_elem(&seen_netns, &inum);
}

/* -- attempts ------------------------------------------------------------ */

static __always_inline int attempt_enter(__u32 method, __u64 flags, __s32 fd, __u32 target)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending p = {};

	if (!kt_current_traced())
		return 0;
	p.start_ns = bpf_ktime_get_ns();
	p.flags = flags;
	p.method = method;
	p.old_netns = current_netns();
	p.target_netns = target;
	p.fd = fd;
	bpf_map_update_elem(&pending_ns, &tid, &p, BPF_ANY);
	return 0;
}

static __always_inline int attempt_exit(void *ctx, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending *p = bpf_map_lookup_elem(&pending_ns, &tid);
	struct ns_event *e;

	if (!p)
		return 0;
	e = new_event(NS_KIND_ATTEMPT);
	if (e) {
		e->latency_ns = e->ts_ns - p->start_ns;
		e->method = p->method;
		e->flags = p->flags;
		e->ret = ret;
		e->old_netns = p->old_netns;
		e->fd = p->fd;
		if (ret < 0) {
			e->err = -ret;
			/* setns: the namespace it tried to enter, when known */
			e->netns = p->target_netns;
		} else if (p->method == NS_METHOD_CLONE || p->method == NS_METHOD_CLONE3) {
			e->child_pid = p->child_pid ? p->child_pid : ret;
			e->netns = p->child_netns;
		} else {
			e->netns = current_netns();
		}
		if (!e->err)
			remember_netns(e->netns);
		kt_submit(ctx, &ns_events, e, sizeof(*e));
	}
	bpf_map_delete_elem(&pending_ns, &tid);
	return 0;
}

static __always_inline int unshare_enter(__u64 flags)
{
	if (!(flags & CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_UNSHARE, flags, -1, 0);
}

static __always_inline int clone_enter(__u64 flags)
{
	if (!(flags & CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_CLONE, flags, -1, 0);
}

static __always_inline int clone3_enter(struct clone_args *uargs)
{
	__u64 flags = 0;

	/* The flags live in user memory, in struct clone_args. */
	if (bpf_core_read_user(&flags, sizeof(flags), &uargs->flags))
		return 0;
	if (!(flags & CLONE_NEWNET))
		return 0;
	return attempt_enter(NS_METHOD_CLONE3, flags, -1, 0);
}

/* The namespace an fd refers to, when it is an nsfs file: its type (a
 * CLONE_NEW* flag) and inode.  0 for anything else (pidfds, bad fds). */
static __always_inline __u32 nsfs_fd_netns(int fd, bool *is_nsfs)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;
	struct inode *inode;
	void *ns;

	*is_nsfs = false;
	if (fd < 0 || !fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != NSFS_MAGIC)
		return 0;
	*is_nsfs = true;
	ns = BPF_CORE_READ(inode, i_private);
	if (!ns || get_ns_type(ns) != CLONE_NEWNET)
		return 0;
	return BPF_CORE_READ((struct ns_common *)ns, inum);
}

static __always_inline int setns_enter(int fd, __u64 nstype)
{
	bool is_nsfs;
	__u32 target;

	if (!kt_current_traced())
		return 0;
	target = nsfs_fd_netns(fd, &is_nsfs);
	/* nstype 0 means "whatever the fd is": count it when the fd is a netns. */
	if (!(nstype & CLONE_NEWNET) && !(nstype == 0 && target))
		return 0;
	return attempt_enter(NS_METHOD_SETNS, nstype, fd, target);
}

/* Fires in the parent at the end of copy_process, the child's namespaces set. */
SEC("tp_btf/task_newtask")
int BPF_PROG(ns_newtask, struct task_struct *task, __u64 clone_flags)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending *p;
	struct ns_event *e;
	__u32 child_netns;

	if (!(clone_flags & CLONE_NEWNET))
		return 0;
	child_netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	p = bpf_map_lookup_elem(&pending_ns, &tid);
	if (p && (p->method == NS_METHOD_CLONE || p->method == NS_METHOD_CLONE3)) {
		p->child_pid = BPF_CORE_READ(task, tgid);
		p->child_netns = child_netns;
		return 0;
	}
	if (!kt_current_traced())
		return 0;
	e = new_event(NS_KIND_ATTEMPT);
	if (!e)
		return 0;
	e->method = NS_METHOD_TASK_NEWTASK;
	e->flags = clone_flags;
	e->child_pid = BPF_CORE_READ(task, tgid);
	e->netns = child_netns;
	e->old_netns = current_netns();
	e->fd = -1;
	remember_netns(child_netns);
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

/* -- memory pressure and the kernel log ------------------------------------ */

/* Every OOM kill, whoever is traced: memory pressure is host-wide evidence. */
SEC("tp/oom/mark_victim")
int ns_oom_victim(struct trace_event_raw_mark_victim *ctx)
{
	struct ns_event *e = new_event(NS_KIND_OOM);

	if (!e)
		return 0;
	e->child_pid = BPF_CORE_READ(ctx, pid);
	e->fd = -1;
	e->comm[0] = 0;  /* the victim's, when the event has it; not the allocating task's */
	/* The victim's comm joined the event in Linux 72ba14deb40a. */
	if (bpf_core_field_exists(ctx->__data_loc_comm)) {
		__u32 loc = BPF_CORE_READ(ctx, __data_loc_comm);

		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), (void *)ctx + (loc & 0xffff));
	}
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/console")
int BPF_PROG(ns_console, const char *text, size_t len)
{
	__u32 zero = 0;
	struct kmsg_event *s = bpf_map_lookup_elem(&kmsg_scratch, &zero);
	struct kmsg_event *e;
	__u32 *needle = NULL;
	__u64 window = 0;
	__u32 n;

	if (!s)
		return 0;
	__sync_fetch_and_add(&kmsg_seen, 1);
	n = len < NS_KMSG_LEN - 1 ? len : NS_KMSG_LEN - 1;
	if (bpf_probe_read_kernel(s->text, n, text))
		return 0;
	/* the scratch buffer holds the previous, longer message past n */
	if (n < NS_KMSG_LEN)
		s->text[n] = 0;
	for (__u32 i = 0; i < NS_KMSG_LEN - 1; i++) {
		if (i >= n)
			break;
		/* little-endian: the window's bytes are in string order */
		window = (window >> 8) | ((__u64)(__u8)s->text[i] << 56);
		if (i < 7)
			continue;
		needle = bpf_map_lookup_elem(&kmsg_needles, &window);
		if (needle)
			break;
	}
	if (!needle)
		return 0;
	__sync_fetch_and_add(&kmsg_matched, 1);
	e = kt_reserve(&kmsg_events, sizeof(*e));
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->needle = *needle;
	e->len = n;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->text, s->text, NS_KMSG_LEN);
	e->text[NS_KMSG_LEN - 1] = 0;
	kt_submit(ctx, &kmsg_events, e, sizeof(*e));
	return 0;
}

/* -- raw ICMPv6 sockets ---------------------------------------------------- */

static __always_inline int socket_enter(int family, int type, int protocol)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u8 one = 1;

	if (family != AF_INET6 || (type & SOCK_TYPE_MASK) != SOCK_RAW || protocol != IPPROTO_ICMPV6)
		return 0;
	if (!kt_current_traced())
		return 0;
	bpf_map_update_elem(&socket_pending, &tid, &one, BPF_ANY);
	return 0;
}

static __always_inline int socket_exit(void *ctx, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct ns_event *e;

	if (!bpf_map_lookup_elem(&socket_pending, &tid))
		return 0;
	bpf_map_delete_elem(&socket_pending, &tid);
	if (ret >= 0) {
		struct icmp6_fd_key key = { .tgid = pid_tgid >> 32, .fd = ret };
		__u64 now = bpf_ktime_get_ns();
		__u8 one = 1;

		bpf_map_update_elem(&icmp6_fds, &key, &now, BPF_ANY);
		bpf_map_update_elem(&icmp6_owners, &key.tgid, &one, BPF_ANY);
	}
	e = new_event(NS_KIND_ICMP6_OPEN);
	if (!e)
		return 0;
	e->ret = ret;
	e->fd = ret >= 0 ? ret : -1;
	e->err = ret < 0 ? -ret : 0;
	e->netns = current_netns();
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

static __always_inline int close_enter(int fd)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct icmp6_fd_key key = { .tgid = pid_tgid >> 32, .fd = fd };

	if (!bpf_map_lookup_elem(&icmp6_fds, &key))
		return 0;
	bpf_map_update_elem(&close_pending, &tid, &key.fd, BPF_ANY);
	return 0;
}

static __always_inline int close_exit(void *ctx, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__s32 *fd = bpf_map_lookup_elem(&close_pending, &tid);
	struct icmp6_fd_key key = { .tgid = pid_tgid >> 32 };
	struct ns_event *e;

	if (!fd)
		return 0;
	key.fd = *fd;
	bpf_map_delete_elem(&close_pending, &tid);
	/* close() releases the fd even when it reports an error (except EBADF). */
	if (ret != -9)
		bpf_map_delete_elem(&icmp6_fds, &key);
	e = new_event(NS_KIND_ICMP6_CLOSE);
	if (!e)
		return 0;
	e->fd = key.fd;
	e->ret = ret;
	e->err = ret < 0 ? -ret : 0;
	e->netns = current_netns();
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

/* -- the syscalls, on the raw tracepoints (see kerntrace.bpf.h) ----------- */

SEC("tp_btf/sys_enter")
int BPF_PROG(ns_sys_enter, struct pt_regs *regs, long id)
{
	switch (id) {
	case KT_NR_UNSHARE: case KT_NR_CLONE: case KT_NR_CLONE3: case KT_NR_SETNS: case KT_NR_SOCKET:
	case KT_NR_CLOSE:
		break;
	default:
		return 0;
	}
	if (kt_compat_syscall(bpf_get_current_task_btf()))
		return 0;
	switch (id) {
	case KT_NR_UNSHARE:
		return unshare_enter(regs->di);
	case KT_NR_CLONE:
		return clone_enter(regs->di);
	case KT_NR_CLONE3:
		return clone3_enter((struct clone_args *)regs->di);
	case KT_NR_SETNS:
		return setns_enter((int)regs->di, (__u32)regs->si);
	case KT_NR_SOCKET:
		return socket_enter((int)regs->di, (int)regs->si, (int)regs->dx);
	default:
		return close_enter((int)regs->di);
	}
}

/* The child returns from clone too (ret 0), on a thread with no entry here. */
SEC("tp_btf/sys_exit")
int BPF_PROG(ns_sys_exit, struct pt_regs *regs, long ret)
{
	switch (regs->orig_ax) {
	case KT_NR_UNSHARE: case KT_NR_CLONE: case KT_NR_CLONE3: case KT_NR_SETNS:
		return attempt_exit(ctx, ret);
	case KT_NR_SOCKET:
		return socket_exit(ctx, ret);
	case KT_NR_CLOSE:
		return close_exit(ctx, ret);
	}
	return 0;
}

/* The kernel closes what a process still holds when it exits; user space
 * marks that process's ICMPv6 sockets closed and forgets their fds. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ns_process_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct ns_event *e;

	if (BPF_CORE_READ(task, pid) != tgid || !bpf_map_lookup_elem(&icmp6_owners, &tgid))
		return 0;
	bpf_map_delete_elem(&icmp6_owners, &tgid);
	e = new_event(NS_KIND_ICMP6_EXIT);
	if (!e)
		return 0;
	e->fd = -1;
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

/* -- the kernel path (fentry or kprobe, where allowed) --------------------- */

static __always_inline int on_copy_net_ns(void *ctx, __u64 flags, struct net *old_net)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	struct ns_event *e;

	/* Called for every new nsproxy; only CLONE_NEWNET makes a namespace. */
	if (!(flags & CLONE_NEWNET) || !kt_current_traced())
		return 0;
	bpf_map_update_elem(&copy_net_start, &tid, &now, BPF_ANY);
	e = new_event(NS_KIND_COPY_NET_NS);
	if (!e)
		return 0;
	e->flags = flags;
	e->old_netns = net_inum(old_net);
	e->fd = -1;
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

static __always_inline int on_copy_net_ns_ret(void *ctx, struct net *ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = bpf_map_lookup_elem(&copy_net_start, &tid);
	struct ns_event *e;
	long value = (long)ret;

	if (!start)
		return 0;
	e = new_event(NS_KIND_COPY_NET_NS_RET);
	if (e) {
		e->latency_ns = e->ts_ns - *start;
		e->ret = value;
		e->fd = -1;
		if (value < 0 && value >= -MAX_ERRNO) {
			e->err = -value;
		} else {
			e->netns = net_inum(ret);
			remember_netns(e->netns);
		}
		kt_submit(ctx, &ns_events, e, sizeof(*e));
	}
	bpf_map_delete_elem(&copy_net_start, &tid);
	return 0;
}

static __always_inline int on_net_hook(void *ctx, __u32 kind, struct net *net)
{
	__u32 inum = net_inum(net);
	struct ns_event *e;

	if (!netns_traced(inum))
		return 0;
	e = new_event(kind);
	if (!e)
		return 0;
	e->netns = inum;
	e->fd = -1;
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

static __always_inline int on_sk_done(void *ctx, struct sock *sk)
{
	__u32 inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	struct ns_event *e;

	if (!netns_traced(inum))
		return 0;
	e = new_event(NS_KIND_IP6MR_SK_DONE);
	if (!e)
		return 0;
	e->netns = inum;
	e->ret = BPF_CORE_READ(sk, __sk_common.skc_num); /* the raw protocol */
	e->fd = -1;
	kt_submit(ctx, &ns_events, e, sizeof(*e));
	return 0;
}

SEC("fentry/copy_net_ns")
int BPF_PROG(ns_fentry_copy_net_ns, unsigned long flags, struct user_namespace *user_ns, struct net *old_net)
{
	return on_copy_net_ns(ctx, flags, old_net);
}

SEC("kprobe/copy_net_ns")
int BPF_KPROBE(ns_kprobe_copy_net_ns, unsigned long flags, struct user_namespace *user_ns, struct net *old_net)
{
	return on_copy_net_ns(ctx, flags, old_net);
}

SEC("fexit/copy_net_ns")
int BPF_PROG(ns_fexit_copy_net_ns, unsigned long flags, struct user_namespace *user_ns, struct net *old_net,
	     struct net *ret)
{
	return on_copy_net_ns_ret(ctx, ret);
}

SEC("kretprobe/copy_net_ns")
int BPF_KRETPROBE(ns_kretprobe_copy_net_ns, struct net *ret)
{
	return on_copy_net_ns_ret(ctx, ret);
}

SEC("fentry/setup_net")
int BPF_PROG(ns_fentry_setup_net, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_SETUP_NET, net);
}

SEC("kprobe/setup_net")
int BPF_KPROBE(ns_kprobe_setup_net, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_SETUP_NET, net);
}

SEC("fentry/ip6mr_net_init")
int BPF_PROG(ns_fentry_ip6mr_net_init, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_INIT, net);
}

SEC("kprobe/ip6mr_net_init")
int BPF_KPROBE(ns_kprobe_ip6mr_net_init, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_INIT, net);
}

SEC("fentry/ip6mr_net_exit")
int BPF_PROG(ns_fentry_ip6mr_net_exit, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_EXIT, net);
}

SEC("kprobe/ip6mr_net_exit")
int BPF_KPROBE(ns_kprobe_ip6mr_net_exit, struct net *net)
{
	return on_net_hook(ctx, NS_KIND_IP6MR_NET_EXIT, net);
}

SEC("fentry/ip6mr_sk_done")
int BPF_PROG(ns_fentry_ip6mr_sk_done, struct sock *sk)
{
	return on_sk_done(ctx, sk);
}

SEC("kprobe/ip6mr_sk_done")
int BPF_KPROBE(ns_kprobe_ip6mr_sk_done, struct sock *sk)
{
	return on_sk_done(ctx, sk);
}

char LICENSE[] SEC("license") = "GPL";
