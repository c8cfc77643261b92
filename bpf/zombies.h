/* SPDX-License-Identifier: GPL-2.0 */
/* Process lifecycles as the parent sees them: fork, exit (the process becomes
 * a zombie), the wait4/waitid calls that reap it, and the final free.  One
 * struct for every kind so one ring carries them in order. */
#ifndef __ZOMBIES_H
#define __ZOMBIES_H

#define ZOMBIES_COMM_LEN 16

/* zombie_event.kind; user space names them from BTF ("fork", "exit", ...) */
enum zombie_kind {
	ZOMBIE_KIND_FORK = 1,   /* pid was created by ppid */
	ZOMBIE_KIND_EXIT = 2,   /* the last thread of pid exited: a zombie until reaped */
	ZOMBIE_KIND_WAIT = 3,   /* pid (the waiter) returned from wait4/waitid with target */
	ZOMBIE_KIND_FREE = 4,   /* pid was released and its task freed */
	ZOMBIE_KIND_EXEC = 5,   /* pid executed a program: comm is its new name */
};

/* zombie_event.syscall of a wait ("wait4", "waitid") */
enum zombie_syscall {
	ZOMBIE_SYSCALL_WAIT4 = 1,
	ZOMBIE_SYSCALL_WAITID = 2,
};

struct zombie_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns at the event (wait: at return) */
	__u64 enter_ns;       /* wait: when the call started */
	__u64 start_ns;       /* fork/exit/free: the process's start_boottime */
	__s64 ret;            /* wait: the syscall's return value */
	__u64 cgroup_id;      /* the process's cgroups (kerntrace.bpf.h: kt_cgroup_ids) */
	__u64 cgroup_v1_id;
	__u32 kind;           /* enum zombie_kind */
	__u32 pid;            /* the process (wait: the waiter's tgid) */
	__u32 tid;            /* the thread that caused the event */
	__u32 ppid;           /* real parent's tgid at the event */
	__u32 target;         /* wait: pid it reported (0: none) */
	__u32 options;        /* wait: options argument */
	__s32 wait_pid;       /* wait: pid/id argument (-1: any child) */
	__u32 exit_code;      /* exit: task exit code (status << 8 | signal) */
	__u8 syscall;         /* wait: enum zombie_syscall */
	__u8 subreaper;       /* wait: the waiter is a child subreaper;
	                       * free: the real parent (who reaped it) is one */
	__u8 ns_init;         /* exit: pid is a PID namespace's init (not the host's);
	                       * wait: the waiter is; free: the real parent is */
	__u8 autoreap;        /* free: the real parent ignores SIGCHLD (SIG_IGN or
	                       * SA_NOCLDWAIT): the kernel releases its children as
	                       * they exit or are passed to it, with no wait */
	__u8 _pad[4];
	char comm[ZOMBIES_COMM_LEN];
	char parent_comm[ZOMBIES_COMM_LEN];   /* free: the real parent's, i.e. its reaper's */
};

/* Value of zombie_exited and zombie_children: which process holds the pid.
 * The programs know its start in ns; a process user space put there from
 * /proc (it existed before tracing) has it in clock ticks: coarse_ns is the
 * tick, and a start in the same tick is the same process. */
struct zombie_tracked {
	__u64 start_ns;
	__u64 coarse_ns;      /* 0: start_ns is exact */
};

/* Key of zombie_ns_pids: a process's pid in a PID namespace (by the
 * namespace's inode number, as /proc/PID/ns/pid shows it). */
struct zombie_ns_pid {
	__u32 ns_inum;
	__u32 nr;
};

#endif /* __ZOMBIES_H */
