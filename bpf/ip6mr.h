/* SPDX-License-Identifier: GPL-2.0 */
/* Events of `nstrace ip6mr`: network-namespace creation and entry, the
 * ip6mr pernet path, raw ICMPv6 sockets, OOM kills and kernel-log precursors.
 * Plain __u types: shared by the BPF side and (through BTF) by user space. */
#ifndef __IP6MR_H
#define __IP6MR_H

#define NS_TASK_COMM_LEN 16
#define NS_KMSG_LEN 192
#define NS_CGROUP_NAME_LEN 96   /* "cri-containerd-" + 64 hex + ".scope" fits */

/* ns_event.kind; user space names them from BTF: the member's name,
 * lower-cased, without NS_KIND_ ("attempt", "oom", "icmp6_open", ...) */
enum ns_kind {
	NS_KIND_ATTEMPT = 1,          /* unshare/clone/clone3/setns with CLONE_NEWNET, or task_newtask */
	NS_KIND_OOM = 2,              /* oom:mark_victim */
	NS_KIND_ICMP6_OPEN = 3,       /* socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) returned an fd */
	NS_KIND_ICMP6_CLOSE = 4,      /* close() of such an fd */
	NS_KIND_ICMP6_EXIT = 5,       /* the process holding such fds exited: the kernel closed them */
	NS_KIND_COPY_NET_NS = 6,      /* fentry/kprobe copy_net_ns */
	NS_KIND_COPY_NET_NS_RET = 7,  /* fexit/kretprobe copy_net_ns: the new net or an error */
	NS_KIND_SETUP_NET = 8,
	NS_KIND_IP6MR_NET_INIT = 9,
	NS_KIND_IP6MR_NET_EXIT = 10,
	NS_KIND_IP6MR_SK_DONE = 11,
};

/* ns_event.method for NS_KIND_ATTEMPT ("unshare", "clone", ...) */
enum ns_method {
	NS_METHOD_UNSHARE = 1,
	NS_METHOD_CLONE = 2,
	NS_METHOD_CLONE3 = 3,
	NS_METHOD_SETNS = 4,
	NS_METHOD_TASK_NEWTASK = 5,   /* a task created with CLONE_NEWNET outside the traced syscalls */
};

struct ns_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns at the event (attempt: at syscall exit) */
	__u64 latency_ns;   /* attempt: syscall entry to exit; copy_net_ns return: entry to return */
	__u64 cgroup_id;    /* the task's cgroups (kerntrace.bpf.h: kt_cgroup_ids): its container */
	__u64 cgroup_v1_id;
	__u64 flags;        /* unshare/clone flags, setns nstype */
	__s64 ret;          /* syscall or function return value */
	__u32 kind;         /* enum ns_kind */
	__u32 method;       /* enum ns_method */
	__u32 pid;          /* tgid */
	__u32 tid;
	__u32 ppid;         /* tgid of the real parent */
	__u32 netns;        /* attempt: the netns inode entered or created; hooks: the net's inode */
	__u32 old_netns;    /* netns inode of the caller before the attempt */
	__s32 err;          /* positive errno of a failed attempt, 0 on success */
	__s32 fd;           /* ICMPv6 socket fd, setns fd */
	__u32 child_pid;    /* clone/clone3: the child; OOM: the victim */
	char comm[NS_TASK_COMM_LEN];
	/* The names of the task's cgroup directory and of its parent (the v2
	 * one, or the v1 memory one when the task is in the v2 root): a
	 * container's cgroup is gone soon after a short container exits, so
	 * user space may not find it by id; its name says the container. */
	char cgroup_name[NS_CGROUP_NAME_LEN];
	char cgroup_parent[NS_CGROUP_NAME_LEN];
};

struct kmsg_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 needle;       /* index of the first 8-byte needle that matched */
	__u32 len;          /* bytes of the message copied into text */
	__u32 pad;
	char comm[NS_TASK_COMM_LEN];
	char text[NS_KMSG_LEN];
};

#endif /* __IP6MR_H */
