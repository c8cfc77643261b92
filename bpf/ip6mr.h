/* SPDX-License-Identifier: GPL-2.0 */
/* Events of `nstrace ip6mr`: network-namespace creation and entry, the
 * ip6mr pernet path, raw ICMPv6 sockets, OOM kills and kernel-log precursors.
 * Plain __u types: shared by the BPF side and (through BTF) by user space. */
#ifndef __IP6MR_H
#define __IP6MR_H

#define NS_TASK_COMM_LEN 16
#define NS_KMSG_LEN 192

/* ns_event.kind */
#define NS_EV_ATTEMPT        1  /* unshare/clone/clone3/setns with CLONE_NEWNET, or task_newtask */
#define NS_EV_OOM_VICTIM     2  /* oom:mark_victim */
#define NS_EV_ICMP6_OPEN     3  /* socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) returned an fd */
#define NS_EV_ICMP6_CLOSE    4  /* close() of such an fd */
#define NS_EV_ICMP6_EXIT     5  /* the process holding such fds exited: the kernel closed them */
#define NS_EV_COPY_NET_NS    6  /* fentry/kprobe copy_net_ns */
#define NS_EV_COPY_NET_NS_RET 7 /* fexit/kretprobe copy_net_ns: the new net or an error */
#define NS_EV_SETUP_NET      8
#define NS_EV_IP6MR_NET_INIT 9
#define NS_EV_IP6MR_NET_EXIT 10
#define NS_EV_IP6MR_SK_DONE  11

/* ns_event.method for NS_EV_ATTEMPT */
#define NS_M_UNSHARE  1
#define NS_M_CLONE    2
#define NS_M_CLONE3   3
#define NS_M_SETNS    4
#define NS_M_NEWTASK  5  /* a task created with CLONE_NEWNET outside the traced syscalls */

struct ns_event {
	__u64 ts_ns;        /* bpf_ktime_get_ns at the event (attempt: at syscall exit) */
	__u64 latency_ns;   /* attempt: syscall entry to exit; copy_net_ns return: entry to return */
	__u64 cgroup_id;
	__u64 flags;        /* unshare/clone flags, setns nstype */
	__s64 ret;          /* syscall or function return value */
	__u32 kind;
	__u32 method;
	__u32 pid;          /* tgid */
	__u32 tid;
	__u32 ppid;         /* tgid of the real parent */
	__u32 netns;        /* attempt: the netns inode entered or created; hooks: the net's inode */
	__u32 old_netns;    /* netns inode of the caller before the attempt */
	__s32 err;          /* positive errno of a failed attempt, 0 on success */
	__s32 fd;           /* ICMPv6 socket fd, setns fd */
	__u32 child_pid;    /* clone/clone3: the child; OOM: the victim */
	char comm[NS_TASK_COMM_LEN];
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
