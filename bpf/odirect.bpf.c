// SPDX-License-Identifier: GPL-2.0
/* iotrace odirect: every read-family syscall of the traced processes, with
 * O_DIRECT taken from the open file at the time of the read, and the block
 * I/O they cause, attributed where the bio is submitted (in the caller's
 * context) rather than where the request is issued or completed (kworkers,
 * interrupts). */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "odirect.h"

/* Ring fill level below which a record does not wake user space: the
 * reader polls every 200 ms anyway, and one wake-up per read would cost the
 * traced process more than the record itself. */
const volatile __u64 wakeup_bytes = 64 * 1024;

KT_RINGBUF(odirect_files, 1024 * 1024);
KT_RINGBUF(odirect_reads, 8 * 1024 * 1024);
KT_RINGBUF(odirect_blocks, 4 * 1024 * 1024);
KT_EXPORT(odirect_file_event);
KT_EXPORT(odirect_read_event);
KT_EXPORT(odirect_block_event);

/* Requests issued with data and no bio we saw submitted (queued before
 * attach, or built by a path that bypasses submit_bio). */
__u64 unattributed_requests = 0;
__u64 unattributed_bytes = 0;

/* A syscall between enter and exit, per thread: the record being built. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct odirect_read_event);
} pending_reads SEC(".maps");

struct bio_owner {
	__u64 queued_ns;
	__u64 ino;      /* file of the read syscall the bio was submitted in */
	__u32 file_dev;
	__u32 pid;
	__u32 tid;
	char comm[ODIRECT_COMM_LEN];
};

/* Every bio submitted, traced or not, so that "submitted by somebody else"
 * and "never seen submitted" stay apart.  LRU: bios of stacked devices that
 * never reach a request of their own are evicted, not leaked; per-CPU LRU
 * lists, because the common list's lock is taken on every bio. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, __u64);   /* struct bio * */
	__type(value, struct bio_owner);
} bios SEC(".maps");

struct rq_state {
	__u64 issue_ns;
	__u32 requeued;
	__u32 pad;
};

/* Requests issued with credited bios, until they complete.  A plain hash:
 * requests come from each queue's fixed pool, so an entry whose completion
 * was never seen is overwritten when its request is issued again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   /* struct request * */
	__type(value, struct rq_state);
} issued SEC(".maps");

/* struct file -> inode it was named for: each open file is named once
 * (again if the slab hands the same struct file to another inode). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} named_files SEC(".maps");

static const struct odirect_read_event empty_read;

static __always_inline void submit(void *ring, void *rec)
{
	__u64 flags = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) < wakeup_bytes ? BPF_RB_NO_WAKEUP : 0;

	bpf_ringbuf_submit(rec, flags);
}

/* current->files->fdt->fd[fd], bounds-checked against max_fds. */
static __always_inline struct file *fd_file(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **table;
	struct file *file = NULL;

	if (!fdt || fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	table = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &table[fd]))
		return NULL;
	return file;
}

static __always_inline __u64 iov_bytes(const struct iovec *iov, __u32 count, __u8 *truncated)
{
	__u64 total = 0;

	/* not unrolled: the verifier walks bounded loops (5.3+), and an
	 * unrolled copy per iovec would make the program too large */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < ODIRECT_MAX_IOV; i++) {
		struct iovec v;

		if (i >= count)
			return total;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			return total;
		total += v.iov_len;
	}
	*truncated = count > ODIRECT_MAX_IOV;
	return total;
}

static __always_inline void name_file(struct file *file, struct odirect_read_event *r)
{
	__u64 key = (__u64)file;
	__u64 *seen = bpf_map_lookup_elem(&named_files, &key);
	struct odirect_file_event *e;
	struct dentry *d;
	__u32 depth = 0;

	if (seen && *seen == r->ino)
		return;
	bpf_map_update_elem(&named_files, &key, &r->ino, BPF_ANY);
	e = kt_reserve(&odirect_files, sizeof(*e));
	if (!e)
		return;
	e->ino = r->ino;
	e->dev = r->dev;
	e->pid = r->pid;
	e->fd = r->fd;
	e->truncated = 0;
	d = BPF_CORE_READ(file, f_path.dentry);
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < ODIRECT_PATH_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		if (bpf_probe_read_kernel_str(e->names[i], ODIRECT_NAME_LEN,
					      BPF_CORE_READ(d, d_name.name)) < 0)
			break;
		depth = i + 1;
		if (!parent || parent == d)
			break;
		d = parent;
	}
	if (depth == ODIRECT_PATH_DEPTH) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);

		e->truncated = parent && parent != d;
	}
	e->depth = depth;
	bpf_ringbuf_submit(e, 0);
}

/* pos < 0: the syscall reads at the file position (read, readv, and preadv2
 * with offset -1). */
static __always_inline int read_enter(__u16 kind, __s32 fd, __s64 pos, __u64 count, const struct iovec *iov,
				      __u32 iovcnt, __u32 rwf)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct odirect_read_event *e;
	struct file *file;

	if (!kt_current_traced())
		return 0;
	if (bpf_map_update_elem(&pending_reads, &tid, &empty_read, BPF_ANY))
		return 0;
	e = bpf_map_lookup_elem(&pending_reads, &tid);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = pid_tgid >> 32;
	e->tid = tid;
	e->fd = fd;
	e->syscall = kind;
	e->rwf = rwf;
	e->offset = pos;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (iov) {
		e->iovcnt = iovcnt > 0xffff ? 0xffff : iovcnt;
		e->asked = iov_bytes(iov, iovcnt, &e->iov_truncated);
	} else {
		e->asked = count;
	}
	file = fd_file(fd);
	if (!file) {
		e->offset = -1;
		return 0;
	}
	e->has_file = 1;
	e->f_flags = BPF_CORE_READ(file, f_flags);
	e->direct = (e->f_flags & ODIRECT_O_DIRECT) != 0;
	if (pos < 0)
		e->offset = BPF_CORE_READ(file, f_pos);
	e->ino = BPF_CORE_READ(file, f_inode, i_ino);
	e->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	name_file(file, e);
	return 0;
}

static __always_inline int read_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct odirect_read_event *e, *rec;
	__u64 now;

	e = bpf_map_lookup_elem(&pending_reads, &tid);
	if (!e)
		return 0;
	now = bpf_ktime_get_ns();
	rec = kt_reserve(&odirect_reads, sizeof(*rec));
	if (rec) {
		__builtin_memcpy(rec, e, sizeof(*rec));
		rec->latency_ns = now - e->ts_ns;
		rec->ts_ns = now;
		rec->ret = ret;
		submit(&odirect_reads, rec);
	}
	bpf_map_delete_elem(&pending_reads, &tid);
	return 0;
}

#define ARG(ctx, n) ((ctx)->args[n])

SEC("tp/syscalls/sys_enter_read")
int odirect_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return read_enter(ODIRECT_SYS_READ, ARG(ctx, 0), -1, ARG(ctx, 2), NULL, 0, 0);
}

SEC("tp/syscalls/sys_enter_pread64")
int odirect_enter_pread64(struct trace_event_raw_sys_enter *ctx)
{
	return read_enter(ODIRECT_SYS_PREAD64, ARG(ctx, 0), ARG(ctx, 3), ARG(ctx, 2), NULL, 0, 0);
}

SEC("tp/syscalls/sys_enter_readv")
int odirect_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return read_enter(ODIRECT_SYS_READV, ARG(ctx, 0), -1, 0, (const struct iovec *)ARG(ctx, 1), ARG(ctx, 2), 0);
}

/* On 64-bit the position is pos_l alone: pos_h is shifted out entirely. */
SEC("tp/syscalls/sys_enter_preadv")
int odirect_enter_preadv(struct trace_event_raw_sys_enter *ctx)
{
	return read_enter(ODIRECT_SYS_PREADV, ARG(ctx, 0), ARG(ctx, 3), 0, (const struct iovec *)ARG(ctx, 1),
			  ARG(ctx, 2), 0);
}

SEC("tp/syscalls/sys_enter_preadv2")
int odirect_enter_preadv2(struct trace_event_raw_sys_enter *ctx)
{
	return read_enter(ODIRECT_SYS_PREADV2, ARG(ctx, 0), ARG(ctx, 3), 0, (const struct iovec *)ARG(ctx, 1),
			  ARG(ctx, 2), ARG(ctx, 5));
}

SEC("tp/syscalls/sys_exit_read")
int odirect_exit_read(struct trace_event_raw_sys_exit *ctx) { return read_exit(ctx->ret); }

SEC("tp/syscalls/sys_exit_pread64")
int odirect_exit_pread64(struct trace_event_raw_sys_exit *ctx) { return read_exit(ctx->ret); }

SEC("tp/syscalls/sys_exit_readv")
int odirect_exit_readv(struct trace_event_raw_sys_exit *ctx) { return read_exit(ctx->ret); }

SEC("tp/syscalls/sys_exit_preadv")
int odirect_exit_preadv(struct trace_event_raw_sys_exit *ctx) { return read_exit(ctx->ret); }

SEC("tp/syscalls/sys_exit_preadv2")
int odirect_exit_preadv2(struct trace_event_raw_sys_exit *ctx) { return read_exit(ctx->ret); }

/* ---- block I/O ---------------------------------------------------------- */

/* block_bio_queue fires in submit_bio_noacct_nocheck, in the context of
 * whoever called submit_bio: the reader itself for O_DIRECT and readahead. */
static __always_inline int on_bio_queue(struct bio *bio)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 key = (__u64)bio;
	struct bio_owner owner = {};
	__u32 tid = (__u32)pid_tgid;
	struct odirect_read_event *reading = bpf_map_lookup_elem(&pending_reads, &tid);

	if (reading) {
		owner.ino = reading->ino;
		owner.file_dev = reading->dev;
	}
	owner.queued_ns = bpf_ktime_get_ns();
	owner.pid = pid_tgid >> 32;
	owner.tid = tid;
	bpf_get_current_comm(owner.comm, sizeof(owner.comm));
	bpf_map_update_elem(&bios, &key, &owner, BPF_ANY);
	return 0;
}

/* Whole-disk dev_t of a request, kernel encoding (MKDEV: major << 20);
 * user space names the disk from sysfs. */
static __always_inline __u32 request_dev(struct request *rq)
{
	struct gendisk *disk = BPF_CORE_READ(rq, q, disk);

	if (!disk)
		return 0;
	return ((__u32)BPF_CORE_READ(disk, major) << 20) | (__u32)BPF_CORE_READ(disk, first_minor);
}

struct rq_walk {
	struct request *rq;
	struct bio *bio;
	__u64 now;
	__u32 dev;
	__u32 op;
	__u32 found;
	__u32 emitted;
};

/* One bio of a request being issued: credited to the task that submitted
 * it (a request can merge bios of several tasks).  A bio split off another
 * one is found through bi_private, which bio_chain points at the parent;
 * the parent's entry stays for the remainder's own request. */
static long credit_bio(__u32 index, struct rq_walk *w)
{
	struct bio *bio = w->bio;
	struct odirect_block_event *e;
	struct bio_owner *owner;
	__u64 key = (__u64)bio;
	bool own_entry = true;

	if (!bio)
		return 1;
	w->bio = BPF_CORE_READ(bio, bi_next);
	owner = bpf_map_lookup_elem(&bios, &key);
	if (!owner) {
		key = (__u64)BPF_CORE_READ(bio, bi_private);
		owner = bpf_map_lookup_elem(&bios, &key);
		own_entry = false;
	}
	if (!owner)
		return 0;
	w->found++;
	if (kt_tgid_traced(owner->pid)) {
		e = kt_reserve(&odirect_blocks, sizeof(*e));
		if (e) {
			e->ts_ns = w->now;
			e->rq = (__u64)w->rq;
			e->sector = BPF_CORE_READ(bio, bi_iter.bi_sector);
			e->queue_ns = w->now > owner->queued_ns ? w->now - owner->queued_ns : 0;
			e->device_ns = 0;
			e->ino = owner->ino;
			e->file_dev = owner->file_dev;
			e->bytes = BPF_CORE_READ(bio, bi_iter.bi_size);
			e->pid = owner->pid;
			e->tid = owner->tid;
			e->op = w->op;
			e->error = 0;
			e->kind = ODIRECT_BLOCK_BIO;
			e->attributed = 1;
			__builtin_memcpy(e->comm, owner->comm, sizeof(e->comm));
			e->dev = w->dev;
			submit(&odirect_blocks, e);
			w->emitted++;
		}
	}
	if (own_entry)
		bpf_map_delete_elem(&bios, &key);
	return 0;
}

/* Bios are credited when their request is issued, not when it completes:
 * on this kernel some requests complete without block_rq_complete firing
 * (about 0.3 % under fio), while every request is issued through
 * blk_mq_start_request, which always fires block_rq_issue.  The completion,
 * when seen, adds the device latency as a separate record. */
static __always_inline int on_rq_issue(struct request *rq)
{
	__u64 rq_key = (__u64)rq;
	struct rq_state *state = bpf_map_lookup_elem(&issued, &rq_key);
	struct rq_state fresh = {};
	struct rq_walk w = {
		.rq = rq,
		.bio = BPF_CORE_READ(rq, bio),
		.now = bpf_ktime_get_ns(),
		.op = BPF_CORE_READ(rq, cmd_flags) & 0xff,
	};
	__u32 bytes = BPF_CORE_READ(rq, __data_len);
	struct odirect_block_event *e;

	if (state && state->requeued) {
		/* issued again after a requeue: its bios are credited already */
		state->requeued = 0;
		state->issue_ns = w.now;
		return 0;
	}
	if (!bytes)
		return 0; /* flushes and other data-less requests */
	w.dev = request_dev(rq);
	/* bpf_loop (5.17+): the callback is verified once, not per bio */
	bpf_loop(ODIRECT_MAX_RQ_BIOS, credit_bio, &w, 0);
	if (!w.found) {
		__sync_fetch_and_add(&unattributed_requests, 1);
		__sync_fetch_and_add(&unattributed_bytes, bytes);
		e = kt_reserve(&odirect_blocks, sizeof(*e));
		if (e) {
			e->ts_ns = w.now;
			e->rq = rq_key;
			e->sector = BPF_CORE_READ(rq, __sector);
			e->queue_ns = 0;
			e->device_ns = 0;
			e->ino = 0;
			e->file_dev = 0;
			e->bytes = bytes;
			e->pid = 0;
			e->tid = 0;
			e->op = w.op;
			e->error = 0;
			e->kind = ODIRECT_BLOCK_BIO;
			e->attributed = 0;
			__builtin_memset(e->comm, 0, sizeof(e->comm));
			e->dev = w.dev;
			submit(&odirect_blocks, e);
			w.emitted++;
		}
	}
	if (!w.emitted) {
		if (state)
			bpf_map_delete_elem(&issued, &rq_key);
		return 0;
	}
	fresh.issue_ns = w.now;
	bpf_map_update_elem(&issued, &rq_key, &fresh, BPF_ANY);
	return 0;
}

static __always_inline int on_rq_requeue(struct request *rq)
{
	__u64 rq_key = (__u64)rq;
	struct rq_state *state = bpf_map_lookup_elem(&issued, &rq_key);

	if (state)
		state->requeued = 1;
	return 0;
}

/* A request that carries credited bios completes: its device latency. */
static __always_inline int on_rq_complete(struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 rq_key = (__u64)rq;
	struct rq_state *state = bpf_map_lookup_elem(&issued, &rq_key);
	struct odirect_block_event *e;
	__u64 now = bpf_ktime_get_ns();

	if (!state)
		return 0;
	e = kt_reserve(&odirect_blocks, sizeof(*e));
	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->ts_ns = now;
		e->rq = rq_key;
		e->sector = BPF_CORE_READ(rq, __sector);
		e->device_ns = now - state->issue_ns;
		e->bytes = nr_bytes;
		e->op = BPF_CORE_READ(rq, cmd_flags) & 0xff;
		e->error = error;
		e->kind = ODIRECT_BLOCK_DONE;
		submit(&odirect_blocks, e);
	}
	if (nr_bytes >= BPF_CORE_READ(rq, __data_len))
		bpf_map_delete_elem(&issued, &rq_key);
	return 0;
}

/* Each block hook twice: tp_btf (typed arguments) first, raw_tp after. */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(odirect_bio_queue_btf, struct bio *bio) { return on_bio_queue(bio); }

SEC("raw_tp/block_bio_queue")
int BPF_PROG(odirect_bio_queue_raw, struct bio *bio) { return on_bio_queue(bio); }

SEC("tp_btf/block_rq_issue")
int BPF_PROG(odirect_rq_issue_btf, struct request *rq) { return on_rq_issue(rq); }

SEC("raw_tp/block_rq_issue")
int BPF_PROG(odirect_rq_issue_raw, struct request *rq) { return on_rq_issue(rq); }

SEC("tp_btf/block_rq_requeue")
int BPF_PROG(odirect_rq_requeue_btf, struct request *rq) { return on_rq_requeue(rq); }

SEC("raw_tp/block_rq_requeue")
int BPF_PROG(odirect_rq_requeue_raw, struct request *rq) { return on_rq_requeue(rq); }

SEC("tp_btf/block_rq_complete")
int BPF_PROG(odirect_rq_complete_btf, struct request *rq, int error, unsigned int nr_bytes)
{
	return on_rq_complete(rq, error, nr_bytes);
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(odirect_rq_complete_raw, struct request *rq, int error, unsigned int nr_bytes)
{
	return on_rq_complete(rq, error, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
