// SPDX-License-Identifier: GPL-2.0
/* Zombies: who exits, who reaps it and when.  A process becomes a zombie
 * when its last thread exits (sched_process_exit with signal->live at 0) and
 * stops being one when a wait4/waitid returns its pid; sched_process_free
 * comes later (after an RCU grace period) and also covers processes the
 * kernel reaps by itself (the parent ignores SIGCHLD).  No tracepoint names
 * the reaper, so the wait calls are traced: a wait that returns a tracked
 * pid is recorded whoever the waiter is (init, a subreaper), since orphans
 * are reaped outside the traced set. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "core_fixes.bpf.h"
#include "zombies.h"

KT_RINGBUF(zombie_events, 1024 * 1024);
KT_EXPORT(zombie_event);
KT_EXPORT_ENUM(zombie_kind);
KT_EXPORT_ENUM(zombie_syscall);

struct tracked {
	__u64 start_ns;
};

/* Processes whose exit was recorded and which are not freed yet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct tracked);
} zombie_exited SEC(".maps");

/* Children forked by traced processes: their exit is recorded even after
 * their parent died (they then belong to a subreaper or init). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct tracked);
} zombie_children SEC(".maps");

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
	struct tracked t = {};
	struct zombie_event *e;

	if (child_tgid == BPF_CORE_READ(parent, tgid) || !kt_tgid_traced(parent_tgid))
		return 0;
	t.start_ns = task_start_boottime(child);
	bpf_map_update_elem(&zombie_children, &child_tgid, &t, BPF_ANY);
	e = new_event(ZOMBIE_KIND_FORK);
	if (!e)
		return 0;
	fill_process(e, child);
	/* The child's comm is still its parent's; group_leader is the child. */
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(zombie_exit, struct task_struct *p)
{
	struct task_struct *leader = BPF_CORE_READ(p, group_leader);
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u32 ppid = BPF_CORE_READ(p, real_parent, tgid);
	struct tracked t = {}, *seen;
	struct zombie_event *e;

	/* Only the thread that ends the group turns the process into a zombie;
	 * threads racing to this point may all see 0, hence the check below. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	if (!kt_tgid_traced(tgid) && !kt_tgid_traced(ppid) && !bpf_map_lookup_elem(&zombie_children, &tgid))
		return 0;
	t.start_ns = task_start_boottime(leader);
	seen = bpf_map_lookup_elem(&zombie_exited, &tgid);
	if (seen && seen->start_ns == t.start_ns)
		return 0;
	bpf_map_update_elem(&zombie_exited, &tgid, &t, BPF_ANY);
	e = new_event(ZOMBIE_KIND_EXIT);
	if (!e)
		return 0;
	fill_process(e, p);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(zombie_free, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u64 start_ns;
	struct tracked *t;
	struct zombie_event *e;

	if (BPF_CORE_READ(p, pid) != tgid)
		return 0;
	start_ns = task_start_boottime(p);
	t = bpf_map_lookup_elem(&zombie_children, &tgid);
	if (t && t->start_ns == start_ns)
		bpf_map_delete_elem(&zombie_children, &tgid);
	t = bpf_map_lookup_elem(&zombie_exited, &tgid);
	if (!t || t->start_ns != start_ns)
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
	bpf_ringbuf_submit(e, 0);
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

static __always_inline int wait_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, tgid = pid_tgid >> 32;
	struct wait_call *call = bpf_map_lookup_elem(&zombie_waits, &tid);
	struct task_struct *task;
	struct zombie_event *e;
	__u32 target = 0;

	if (!call)
		return 0;
	if (call->syscall == ZOMBIE_SYSCALL_WAIT4 && ret > 0) {
		target = ret;
	} else if (call->syscall == ZOMBIE_SYSCALL_WAITID && ret == 0 && call->infop) {
		siginfo_t *info = (siginfo_t *)call->infop;
		int si_pid = 0;

		bpf_probe_read_user(&si_pid, sizeof(si_pid), &info->_sifields._sigchld._pid);
		target = si_pid > 0 ? si_pid : 0;
	}
	if (!kt_tgid_traced(tgid) && !(target && bpf_map_lookup_elem(&zombie_exited, &target)))
		goto out;
	e = new_event(ZOMBIE_KIND_WAIT);
	if (!e)
		goto out;
	task = (struct task_struct *)bpf_get_current_task_btf();
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
	bpf_ringbuf_submit(e, 0);
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
	return wait_exit(ret);
}

char LICENSE[] SEC("license") = "GPL";
