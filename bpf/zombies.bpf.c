// SPDX-License-Identifier: GPL-2.0
/* Zombies: who exits, who reaps it and when.  A process becomes a zombie
 * when its last thread exits (sched_process_exit with signal->live at 0) and
 * stops being one when a wait4/waitid returns its pid; sched_process_free
 * comes later (after an RCU grace period) and also covers processes the
 * kernel reaps by itself: the parent ignores SIGCHLD, the reaper an orphan
 * is passed to does (SIG_IGN or SA_NOCLDWAIT), or a PID namespace's init
 * exits and the kernel reaps its children (zap_pid_ns_processes).  No
 * tracepoint names the reaper, so the wait calls are traced: a wait that
 * returns a tracked pid is recorded whoever the waiter is (init, a
 * subreaper), since orphans are reaped outside the traced set; a free
 * records the real parent it died under.  User space puts the zombies and
 * children that exist before tracing starts into the maps below (from /proc),
 * so their reaping is recorded too. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "core_fixes.bpf.h"
#include "zombies.h"

KT_RINGBUF(zombie_events, 1024 * 1024);
KT_EXPORT(zombie_event);
KT_EXPORT_ENUM(zombie_kind);
KT_EXPORT_ENUM(zombie_syscall);

KT_EXPORT(zombie_tracked);

/* Processes whose exit was recorded (or zombies at attach) not freed yet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct zombie_tracked);
} zombie_exited SEC(".maps");

/* Children forked by traced processes (or alive at attach): their exit is
 * recorded even after their parent died (they then belong to a subreaper
 * or init). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct zombie_tracked);
} zombie_children SEC(".maps");

static __always_inline bool same_process(const struct zombie_tracked *t, __u64 start_ns)
{
	if (t->coarse_ns)
		return start_ns / t->coarse_ns == t->start_ns / t->coarse_ns;
	return start_ns == t->start_ns;
}

/* A wait returns the pid in the waiter's PID namespace (a container's init
 * reaping sees its own numbers): at an exit the process's pid in each
 * namespace it is in is remembered, keyed by namespace, to find the host's
 * tgid again.  A zombie holds its pid, so the entry is right when a wait
 * returns it.  User space adds the zombies that exist at attach. */
KT_EXPORT(zombie_ns_pid);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct zombie_ns_pid);
	__type(value, __u32);   /* the host's tgid */
} zombie_ns_pids SEC(".maps");

/* Namespaces nested deeper than this (containers in containers in ...) are
 * not translated; the kernel allows 32 (MAX_PID_NS_LEVEL). */
#define ZOMBIE_NS_LEVELS 8

/* pid->numbers[level]: the pid in the namespace of that level, and that
 * namespace.  numbers[] is a flexible array: its element is addressed by
 * the relocated offsets, not by a CO-RE access with a variable index. */
static __always_inline struct pid_namespace *upid_at(struct pid *pid, unsigned int level, __u32 *nr)
{
	void *slot = (void *)pid + bpf_core_field_offset(struct pid, numbers) + level * bpf_core_type_size(struct upid);
	struct pid_namespace *ns = NULL;
	int n = 0;

	if (bpf_probe_read_kernel(&n, sizeof(n), slot + bpf_core_field_offset(struct upid, nr)) ||
	    bpf_probe_read_kernel(&ns, sizeof(ns), slot + bpf_core_field_offset(struct upid, ns)))
		return NULL;
	*nr = n;
	return ns;
}

/* Whether p is the init (child reaper) of a PID namespace other than the
 * host's: when it exits, the kernel kills the namespace and reaps the
 * zombies left there without a wait syscall (zap_pid_ns_processes). */
static __always_inline bool pid_ns_init(struct task_struct *p)
{
	struct pid *pid = BPF_CORE_READ(p, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct pid_namespace *ns;
	__u32 nr;

	if (!pid || level == 0 || level > 32)
		return false;
	ns = upid_at(pid, level, &nr);
	return ns && BPF_CORE_READ(ns, child_reaper, tgid) == BPF_CORE_READ(p, tgid);
}

/* SIG_IGN and SA_NOCLDWAIT (include/uapi/asm-generic/signal-defs.h and
 * arch/x86/include/uapi/asm/signal.h, ABIs); SIGCHLD is 17, action[16]. */
#define KT_SIG_IGN 1
#define KT_SA_NOCLDWAIT 0x00000002

static __always_inline bool ignores_sigchld(struct task_struct *p)
{
	__u64 handler = (__u64)BPF_CORE_READ(p, sighand, action[16].sa.sa_handler);
	__u64 flags = BPF_CORE_READ(p, sighand, action[16].sa.sa_flags);

	return handler == KT_SIG_IGN || (flags & KT_SA_NOCLDWAIT);
}

static __always_inline void remember_ns_pids(struct task_struct *leader, __u32 tgid)
{
	struct pid *pid = BPF_CORE_READ(leader, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);

	for (unsigned int i = 1; i <= ZOMBIE_NS_LEVELS; i++) {
		struct zombie_ns_pid key = {};
		struct pid_namespace *ns;

		if (i > level)
			break;
		ns = upid_at(pid, i, &key.nr);
		if (!ns)
			break;
		key.ns_inum = BPF_CORE_READ(ns, ns.inum);
		bpf_map_update_elem(&zombie_ns_pids, &key, &tgid, BPF_ANY);
	}
}

/* The host's tgid of nr, a pid the waiter's wait returned. */
static __always_inline __u32 host_tgid(struct task_struct *waiter, __u32 nr)
{
	struct pid *pid = BPF_CORE_READ(waiter, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct zombie_ns_pid key = {};
	struct pid_namespace *ns;
	__u32 *tgid, own;

	if (!nr || !pid || level == 0 || level > 32)
		return nr;
	ns = upid_at(pid, level, &own);
	if (!ns)
		return nr;
	key.ns_inum = BPF_CORE_READ(ns, ns.inum);
	key.nr = nr;
	tgid = bpf_map_lookup_elem(&zombie_ns_pids, &key);
	return tgid ? *tgid : nr;
}

struct wait_call {
	__u64 enter_ns;
	__u64 infop;      /* waitid: user siginfo pointer */
	__u32 options;
	__s32 wait_pid;
	__u8 syscall;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);  /* tid */
	__type(value, struct wait_call);
} zombie_waits SEC(".maps");

static __always_inline void fill_process(struct zombie_event *e, struct task_struct *p)
{
	struct task_struct *leader = BPF_CORE_READ(p, group_leader);
	struct task_struct *parent = BPF_CORE_READ(p, real_parent);

	e->pid = BPF_CORE_READ(p, tgid);
	e->tid = BPF_CORE_READ(p, pid);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->start_ns = task_start_boottime(leader);
	BPF_CORE_READ_STR_INTO(&e->comm, leader, comm);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, parent, comm);
	{
		struct kt_cgroup_ids cg;

		kt_task_cgroups(p, &cg);
		e->cgroup_id = cg.v2;
		e->cgroup_v1_id = cg.v1;
	}
}

static __always_inline struct zombie_event *new_event(__u32 kind)
{
	struct zombie_event *e = kt_reserve(&zombie_events, sizeof(*e));

	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->kind = kind;
		e->ts_ns = bpf_ktime_get_ns();
	}
	return e;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(zombie_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_struct *real_parent = BPF_CORE_READ(child, real_parent);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u32 parent_tgid = BPF_CORE_READ(real_parent, tgid);
	struct zombie_tracked t = {};
	struct zombie_event *e;

	if (child_tgid == BPF_CORE_READ(parent, tgid) || !kt_task_traced(real_parent, parent_tgid))
		return 0;
	t.start_ns = task_start_boottime(child);
	bpf_map_update_elem(&zombie_children, &child_tgid, &t, BPF_ANY);
	e = new_event(ZOMBIE_KIND_FORK);
	if (!e)
		return 0;
	fill_process(e, child);
	/* The child's comm is still its parent's; group_leader is the child. */
	kt_submit(ctx, &zombie_events, e, sizeof(*e));
	return 0;
}

/* A fork record names the child after its parent (the comm is copied at
 * fork); the exec renames it.  Recorded for every process whose exit would
 * be, so that a parent that forked, then exec'd, is named by what it runs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(zombie_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_struct *parent = BPF_CORE_READ(p, real_parent);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	struct zombie_event *e;

	if (!kt_task_traced(p, tgid) && !kt_task_traced(parent, ppid) && !bpf_map_lookup_elem(&zombie_children, &tgid))
		return 0;
	e = new_event(ZOMBIE_KIND_EXEC);
	if (!e)
		return 0;
	fill_process(e, p);
	kt_submit(ctx, &zombie_events, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(zombie_exit, struct task_struct *p)
{
	struct task_struct *leader = BPF_CORE_READ(p, group_leader);
	struct task_struct *parent = BPF_CORE_READ(p, real_parent);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	struct zombie_tracked t = {}, *seen;
	struct zombie_event *e;

	/* Only the thread that ends the group turns the process into a zombie;
	 * threads racing to this point may all see 0, hence the check below. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	if (!kt_task_traced(p, tgid) && !kt_task_traced(parent, ppid) && !bpf_map_lookup_elem(&zombie_children, &tgid))
		return 0;
	t.start_ns = task_start_boottime(leader);
	seen = bpf_map_lookup_elem(&zombie_exited, &tgid);
	if (seen && same_process(seen, t.start_ns))
		return 0;
	bpf_map_update_elem(&zombie_exited, &tgid, &t, BPF_ANY);
	remember_ns_pids(leader, tgid);
	e = new_event(ZOMBIE_KIND_EXIT);
	if (!e)
		return 0;
	fill_process(e, p);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	e->ns_init = pid_ns_init(p);
	kt_submit(ctx, &zombie_events, e, sizeof(*e));
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(zombie_free, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	struct task_struct *parent;
	struct signal_struct *sig;
	struct zombie_tracked *t;
	struct zombie_event *e;
	__u64 start_ns;

	if (BPF_CORE_READ(p, pid) != tgid)
		return 0;
	start_ns = task_start_boottime(p);
	t = bpf_map_lookup_elem(&zombie_children, &tgid);
	if (t && same_process(t, start_ns))
		bpf_map_delete_elem(&zombie_children, &tgid);
	t = bpf_map_lookup_elem(&zombie_exited, &tgid);
	if (!t || !same_process(t, start_ns))
		return 0;
	bpf_map_delete_elem(&zombie_exited, &tgid);
	e = new_event(ZOMBIE_KIND_FREE);
	if (!e)
		return 0;
	/* current is whoever ran the RCU callback: only the freed task counts. */
	e->pid = tgid;
	e->tid = tgid;
	e->start_ns = start_ns;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	/* Released without a wait we saw: its real parent then is who the kernel
	 * reaped it for (the reaper an orphan was passed to, or the namespace
	 * init that exited).  A reaper usually outlives the RCU grace period
	 * that delays this event; the reads are probe reads, safe either way. */
	parent = BPF_CORE_READ(p, real_parent);
	e->ppid = BPF_CORE_READ(parent, tgid);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, parent, comm);
	sig = BPF_CORE_READ(parent, signal);
	e->subreaper = BPF_CORE_READ_BITFIELD_PROBED(sig, is_child_subreaper);
	e->ns_init = pid_ns_init(parent);
	e->autoreap = ignores_sigchld(parent);
	kt_submit(ctx, &zombie_events, e, sizeof(*e));
	return 0;
}

static __always_inline int wait_enter(__u8 syscall, __s32 wait_pid, __u32 options, __u64 infop)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct wait_call call = {};

	call.enter_ns = bpf_ktime_get_ns();
	call.syscall = syscall;
	call.wait_pid = wait_pid;
	call.options = options;
	call.infop = infop;
	bpf_map_update_elem(&zombie_waits, &tid, &call, BPF_ANY);
	return 0;
}

static __always_inline int wait_exit(void *ctx, struct pt_regs *regs, long id, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, tgid = pid_tgid >> 32;
	struct wait_call *call = bpf_map_lookup_elem(&zombie_waits, &tid);
	struct wait_call before = {};
	struct task_struct *task;
	struct zombie_event *e;
	__u32 target = 0;

	if (!call) {
		/* A call that began before tracing (a reaper blocked in wait()):
		 * its arguments are still in the registers; its start is unknown
		 * (enter_ns 0). */
		if (kt_compat_syscall(bpf_get_current_task_btf()))
			return 0;
		if (id == KT_NR_WAIT4) {
			before.syscall = ZOMBIE_SYSCALL_WAIT4;
			before.wait_pid = (__s32)regs->di;
			before.options = (__u32)regs->dx;
		} else {
			before.syscall = ZOMBIE_SYSCALL_WAITID;
			before.wait_pid = (__s32)regs->si;
			before.options = (__u32)regs->r10;
			before.infop = regs->dx;
		}
		call = &before;
	}
	if (call->syscall == ZOMBIE_SYSCALL_WAIT4 && ret > 0) {
		target = ret;
	} else if (call->syscall == ZOMBIE_SYSCALL_WAITID && ret == 0 && call->infop) {
		siginfo_t *info = (siginfo_t *)call->infop;
		int si_pid = 0;

		bpf_probe_read_user(&si_pid, sizeof(si_pid), &info->_sifields._sigchld._pid);
		target = si_pid > 0 ? si_pid : 0;
	}
	task = (struct task_struct *)bpf_get_current_task_btf();
	target = host_tgid(task, target);
	if (!kt_task_traced(task, tgid) && !(target && bpf_map_lookup_elem(&zombie_exited, &target)))
		goto out;
	e = new_event(ZOMBIE_KIND_WAIT);
	if (!e)
		goto out;
	fill_process(e, task);
	e->enter_ns = call->enter_ns;
	e->ret = ret;
	e->target = target;
	e->options = call->options;
	e->wait_pid = call->wait_pid;
	e->syscall = call->syscall;
	{
		struct signal_struct *sig = BPF_CORE_READ(task, signal);

		e->subreaper = BPF_CORE_READ_BITFIELD_PROBED(sig, is_child_subreaper);
	}
	e->ns_init = pid_ns_init(task);
	kt_submit(ctx, &zombie_events, e, sizeof(*e));
out:
	bpf_map_delete_elem(&zombie_waits, &tid);
	return 0;
}

/* The raw syscall tracepoints (see kerntrace.bpf.h).
 * wait4(pid, status, options, rusage): the pid reaped is the result.
 * waitid(idtype, id, infop, options, rusage): the pid comes back in *infop. */
SEC("tp_btf/sys_enter")
int BPF_PROG(zombie_sys_enter, struct pt_regs *regs, long id)
{
	if (id != KT_NR_WAIT4 && id != KT_NR_WAITID)
		return 0;
	if (kt_compat_syscall(bpf_get_current_task_btf()))
		return 0;
	if (id == KT_NR_WAIT4)
		return wait_enter(ZOMBIE_SYSCALL_WAIT4, (__s32)regs->di, (__u32)regs->dx, 0);
	return wait_enter(ZOMBIE_SYSCALL_WAITID, (__s32)regs->si, (__u32)regs->r10, regs->dx);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(zombie_sys_exit, struct pt_regs *regs, long ret)
{
	long id = regs->orig_ax;

	if (id != KT_NR_WAIT4 && id != KT_NR_WAITID)
		return 0;
	return wait_exit(ctx, regs, id, ret);
}

char LICENSE[] SEC("license") = "GPL";
