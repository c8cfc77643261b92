// SPDX-License-Identifier: GPL-2.0
/* iotrace odirect under BCC, for kernels without BTF: the records of
 * odirect.bpf.c (the structs of odirect.h, every field with the same
 * meaning), from hooks an old kernel has, compiled against the running
 * kernel's headers.  What differs from the CO-RE program, and why:
 *
 * - Kernel memory is read with explicit kt_read calls (OD_RD) rather than
 *   BCC's rewriting of pointer dereferences, whose tracking of which
 *   pointer is a kernel one does not follow a pointer read into a local:
 *   one rule everywhere is easier to check.
 * - Pointers are plain numbers here (no verifier typing to work around):
 *   the bios table's key is the bio's address, where the CO-RE program
 *   keeps its distance from the map (user space only tests it for 0).
 * - Per-thread read state is a hash by thread id (task storage is 5.11+),
 *   which remembers the thread's tgid: a thread id reused by another
 *   process is not taken as traced.  The classic sys_exit tracepoint gives
 *   no registers, so the arguments are kept from the entry.
 * - Records go out through perf buffers (BPF_PERF_OUTPUT under the CO-RE
 *   ring's name); a record perf could not take is counted in kt_lost.
 * - Counters the CO-RE program keeps in .bss (totals_full, ...) are
 *   one-element arrays of the same name.
 * - A request's bios are walked by a bounded loop (5.3+) instead of
 *   bpf_loop (5.17), fewer of them (unrolled) on older kernels.
 * - The io-wq worker's current request (io_worker is private to
 *   io_uring/io-wq.c, so no header has it): a kprobe on io_wq_submit_work
 *   marks the worker thread as issuing that request, its kretprobe unmarks.
 * - io_uring reads need io_kiocb, in a kernel header since 6.0
 *   (include/linux/io_uring_types.h); before, those hooks are not compiled.
 * - Each program is compiled only when the engine chose its hook
 *   (-DKT_HOOK_<function>): a classic tracepoint's argument struct comes
 *   from its format file, which must exist.
 */
#include <linux/version.h>
#include <linux/sched.h>
#include <linux/fs.h>
#include <linux/fdtable.h>
#include <linux/dcache.h>
#include <linux/uio.h>
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/blk-mq.h>
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 0, 0)
#include <linux/io_uring_types.h>
#define OD_IO_URING 1
#endif
#include "odirect.h"
#include "kt_bcc.h"

/* A kernel field into a local of its size, 0 on success (never a direct
 * load: see above). */
#define OD_RD(dst, src) kt_read(&(dst), sizeof(dst), &(src))

#ifndef KT_OPT_all_reads
#define KT_OPT_all_reads 0
#endif
/* Record every read, buffered or not (--all-reads): odirect.bpf.c's all_reads. */
#define all_reads (KT_OPT_all_reads)

/* Compare-and-swap and fetch-and-add with a result are BPF_ATOMIC
 * instructions, verified since 5.12 (5ffa25502b5a "bpf: Add instructions for
 * atomic_[cmp]xchg"); before, a plain test and store, which two CPUs may
 * race on (a slot claimed twice loses one bio's attribution). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
#define OD_CAS(ptr, old, new) __sync_val_compare_and_swap(ptr, old, new)
#else
static __always_inline __u64 od_cas(__u64 *ptr, __u64 old, __u64 new)
{
	__u64 was = *ptr;

	if (was == old)
		*ptr = new;
	return was;
}
#define OD_CAS(ptr, old, new) od_cas(ptr, old, new)
#endif

/* LRU hashes since 4.10 (29ba732acbee); before, plain hashes that fill up. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(4, 10, 0)
#define OD_LRU "lru_hash"
#else
#define OD_LRU "hash"
#endif

BPF_PERF_OUTPUT(odirect_files);
BPF_PERF_OUTPUT(odirect_reads);
BPF_PERF_OUTPUT(odirect_blocks);

/* Reads counted in the kernel (see odirect.h), read by user space each
 * second and at the end; BCC's hashes are preallocated. */
BPF_HASH(read_totals, struct odirect_total_key, struct odirect_total, ODIRECT_TOTALS);
/* a zeroed total to insert from (too large for the stack) */
BPF_PERCPU_ARRAY(zero_total, struct odirect_total, 1);
/* a file record is built here: 800 bytes, more than the stack */
BPF_PERCPU_ARRAY(file_scratch, struct odirect_file_event, 1);

/* The CO-RE program's .bss counters, one array each (read_global). */
KT_COUNTER(totals_full);
KT_COUNTER(unattributed_requests);
KT_COUNTER(unattributed_bytes);
KT_COUNTER(untracked_bios);

/* Per traced thread, by thread id: the read in flight and the last open
 * file it read (as odirect.bpf.c's task storage), plus what the syscall
 * exit needs of its arguments.  An entry means "traced" (created at the
 * thread's first read once it passed the filters) for its tgid only. */
struct reader_state {
	__u64 enter_ns;     /* entry of the read in flight; 0 when none */
	__u64 named_file;   /* struct file * */
	__u64 named_inode;  /* its struct inode * */
	__u64 named_ino;
	__u32 named_dev;
	__s32 fd;           /* of the read in flight */
	__u64 uring_submit_ns;
	__u64 uring_req;    /* struct io_kiocb * */
	/* the read's arguments, from sys_enter */
	__s64 pos;          /* -1: at the file position */
	__u64 count;        /* read/pread64 */
	__u64 iov;          /* readv/preadv/preadv2: const struct iovec * */
	__u32 iovcnt;
	__u32 rwf;
	__u16 kind;         /* enum odirect_syscall */
	__u16 pad;
	__u32 tgid;
};

BPF_TABLE(OD_LRU, __u32, struct reader_state, readers, 16384);

/* Who queued a bio: odirect.bpf.c's struct, field for field (user space
 * reads the bios table with the CO-RE object's BTF). */
struct bio_owner {
	__u64 queued_ns;
	__u64 read_enter_ns;
	__u64 file_ino;
	__u32 file_dev;
	__u32 pad2;
	__u64 sector;
	__u64 cgroup_id;
	__u64 cgroup_v1_id;
	__u32 bytes;
	__u32 credited;
	__u32 dev;
	__u32 pid;
	__u32 tid;
	__u8 op;
	__u8 traced;
	__u8 uring;
	__u8 pad;
	char comm[ODIRECT_COMM_LEN];
};

struct bio_slot {
	__u64 bio;          /* the struct bio's address; 0: free */
	struct bio_owner owner;
};

_Static_assert(sizeof(struct bio_slot) == 104, "struct bio_slot differs from odirect.bpf.c's");

/* The set-associative table of queued bios (see odirect.bpf.c), mapped by
 * user space at the end: BPF_F_MMAPABLE since 5.5 (fc9702273e2e). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 5, 0)
BPF_F_TABLE("array", __u32, struct bio_slot, bios, ODIRECT_BIO_SETS * ODIRECT_BIO_WAYS, BPF_F_MMAPABLE);
#else
BPF_ARRAY(bios, struct bio_slot, ODIRECT_BIO_SETS * ODIRECT_BIO_WAYS);
#endif

/* Fibonacci hashing of a pointer to `bits` bits. */
static __always_inline __u32 ptr_hash(__u64 ptr, int bits)
{
	return (__u32)((ptr * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

static __always_inline __u32 bio_set_base(__u64 bio)
{
	return ptr_hash(bio, ODIRECT_BIO_SET_BITS) * ODIRECT_BIO_WAYS;
}

static __always_inline struct bio_slot *find_bio(__u64 bio)
{
	__u32 base = bio_set_base(bio);

#pragma unroll
	for (__u32 way = 0; way < ODIRECT_BIO_WAYS; way++) {
		__u32 idx = base + way;
		struct bio_slot *slot = bios.lookup(&idx);

		if (slot && slot->bio == bio)
			return slot;
	}
	return NULL;
}

/* Request issue times, a slot per request address (see odirect.bpf.c). */
struct rq_stamp {
	__u64 rq;
	__u64 issue_ns;
};

BPF_ARRAY(issued, struct rq_stamp, 1 << ODIRECT_RQ_SLOT_BITS);

static __always_inline struct rq_stamp *rq_slot(__u64 rq)
{
	__u32 idx = ptr_hash(rq, ODIRECT_RQ_SLOT_BITS);

	return issued.lookup(&idx);
}

/* struct file -> inode it was named for */
BPF_TABLE(OD_LRU, __u64, __u64, named_files, 16384);

static __always_inline void send_file(void *ctx, struct odirect_file_event *e)
{
	if (odirect_files.perf_submit(ctx, e, sizeof(*e)))
		kt_count_lost();
}

static __always_inline void send_read(void *ctx, struct odirect_read_event *e)
{
	if (odirect_reads.perf_submit(ctx, e, sizeof(*e)))
		kt_count_lost();
}

static __always_inline void send_block(void *ctx, struct odirect_block_event *e)
{
	if (odirect_blocks.perf_submit(ctx, e, sizeof(*e)))
		kt_count_lost();
}

/* The current thread's state if it is traced; with create, made for a
 * thread that passed the filters (the caller checked). */
static __always_inline struct reader_state *reader_get(__u64 pid_tgid, int create)
{
	__u32 tid = (__u32)pid_tgid;
	struct reader_state *s = readers.lookup(&tid);
	struct reader_state fresh = {};

	if (s && s->tgid == (__u32)(pid_tgid >> 32))
		return s;
	if (!create)
		return NULL;
	fresh.tgid = pid_tgid >> 32;
	readers.update(&tid, &fresh);
	return readers.lookup(&tid);
}

/* task->files->fdt->fd[fd], bounds-checked against max_fds. */
static __always_inline struct file *fd_file(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = NULL;
	struct fdtable *fdt = NULL;
	struct file **table = NULL;
	struct file *file = NULL;
	unsigned int max_fds = 0;

	if (fd < 0 || OD_RD(files, task->files) || !files)
		return NULL;
	if (OD_RD(fdt, files->fdt) || !fdt)
		return NULL;
	if (OD_RD(max_fds, fdt->max_fds) || (__u32)fd >= max_fds)
		return NULL;
	if (OD_RD(table, fdt->fd) || !table)
		return NULL;
	if (kt_read(&file, sizeof(file), &table[fd]))
		return NULL;
	return file;
}

static __always_inline __u64 iov_bytes(__u64 iov_at, __u32 count, __u8 *truncated)
{
	const struct iovec *iov = (const struct iovec *)iov_at;
	__u64 total = 0;

	/* a bounded loop is verified since 5.3 (2589726d12a1); before, unrolled */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 3, 0)
#pragma clang loop unroll(disable)
#else
#pragma unroll
#endif
	for (__u32 i = 0; i < ODIRECT_MAX_IOV; i++) {
		struct iovec v;

		if (i >= count)
			return total;
		if (kt_read_user(&v, sizeof(v), &iov[i]))
			return total;
		total += v.iov_len;
	}
	*truncated = count > ODIRECT_MAX_IOV;
	return total;
}

struct file_head {
	__u32 flags;
	__s64 pos;
	struct inode *inode;
};

static __always_inline int read_file_head(struct file *file, struct file_head *head)
{
	unsigned int flags = 0;
	loff_t pos = 0;
	struct inode *inode = NULL;

	if (OD_RD(flags, file->f_flags) || OD_RD(pos, file->f_pos) || OD_RD(inode, file->f_inode))
		return -1;
	head->flags = flags;
	head->pos = pos;
	head->inode = inode;
	return 0;
}

struct inode_head {
	__u16 mode;
	__u64 ino;
};

static __always_inline int read_inode_head(struct inode *inode, struct inode_head *head)
{
	umode_t mode = 0;
	unsigned long ino = 0;

	if (!inode || OD_RD(mode, inode->i_mode) || OD_RD(ino, inode->i_ino))
		return -1;
	head->mode = mode;
	head->ino = ino;
	return 0;
}

static __always_inline __u64 inode_ino(struct inode *inode)
{
	unsigned long ino = 0;

	if (inode)
		OD_RD(ino, inode->i_ino);
	return ino;
}

static __always_inline __u32 inode_dev(struct inode *inode)
{
	struct super_block *sb = NULL;
	dev_t dev = 0;

	if (inode && !OD_RD(sb, inode->i_sb) && sb)
		OD_RD(dev, sb->s_dev);
	return dev;
}

static __always_inline struct inode *file_inode_of(struct file *file)
{
	struct inode *inode = NULL;

	if (file)
		OD_RD(inode, file->f_inode);
	return inode;
}

/* Sends the file's path the first time any traced task reads through this
 * struct file. */
static __always_inline void name_file(void *ctx, struct file *file, __u64 file_ino, __u32 dev, __u32 pid, __s32 fd)
{
	__u64 key = (__u64)file;
	__u64 ino = file_ino;
	struct odirect_file_event *e;
	struct dentry *d = NULL;
	__u64 *seen;
	__u32 depth = 0, zero = 0;

	seen = named_files.lookup(&key);
	if (seen && *seen == ino)
		return;
	named_files.update(&key, &ino);
	e = file_scratch.lookup(&zero);
	if (!e)
		return;
	e->ino = file_ino;
	e->dev = dev;
	e->pid = pid;
	e->fd = fd;
	e->truncated = 0;
	e->pad = 0;
	OD_RD(d, file->f_path.dentry);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 3, 0)
#pragma clang loop unroll(disable)
#else
#pragma unroll
#endif
	for (__u32 i = 0; i < ODIRECT_PATH_DEPTH; i++) {
		struct dentry *parent = NULL;
		const unsigned char *name = NULL;

		if (!d || OD_RD(parent, d->d_parent) || OD_RD(name, d->d_name.name))
			break;
		if (kt_read_str(e->names[i], ODIRECT_NAME_LEN, name) < 0)
			break;
		depth = i + 1;
		if (!parent || parent == d)
			break;
		d = parent;
	}
	if (depth == ODIRECT_PATH_DEPTH) {
		struct dentry *parent = NULL;

		OD_RD(parent, d->d_parent);
		e->truncated = parent && parent != d;
	}
	e->depth = depth;
	send_file(ctx, e);
}

/* The file part of a read record (see odirect.bpf.c's fill_file). */
static __always_inline void fill_file(void *ctx, struct odirect_read_event *e, struct file *file, __s64 pos,
				      long ret, struct reader_state *s)
{
	struct file_head head;
	struct inode *inode;

	if (!file || read_file_head(file, &head)) {
		e->has_file = 0;
		e->direct = 0;
		e->f_flags = 0;
		e->ino = 0;
		e->dev = 0;
		e->offset = -1;
		return;
	}
	e->has_file = 1;
	e->f_flags = head.flags;
	e->direct = (head.flags & ODIRECT_O_DIRECT) != 0;
	if (pos < 0) {
		pos = head.pos - (ret > 0 ? ret : 0);
		/* a stream (pipe, socket) keeps no position */
		pos = pos < 0 ? -1 : pos;
	}
	e->offset = pos;
	inode = head.inode;
	e->ino = inode_ino(inode);
	if (s && s->named_file == (__u64)file && s->named_inode == (__u64)inode && s->named_ino == e->ino) {
		e->dev = s->named_dev;
		return;
	}
	e->dev = inode_dev(inode);
	name_file(ctx, file, e->ino, e->dev, e->pid, e->fd);
	if (s) {
		s->named_file = (__u64)file;
		s->named_inode = (__u64)inode;
		s->named_ino = e->ino;
		s->named_dev = e->dev;
	}
}

/* Latency slot: the value itself below 4, else 4 slots per power of two. */
static __always_inline __u32 latency_slot(__u64 v)
{
	__u32 order;

	if (v < 4)
		return v;
	order = kt_log2_u64(v);
	if (order >= 40)
		return ODIRECT_LAT_SLOTS - 1;
	return (order << ODIRECT_LAT_SUB_BITS) | ((v >> (order - ODIRECT_LAT_SUB_BITS)) & 3);
}

/* An index the compiler may not copy before its bounds test (6.1's
 * verifier would not carry the bound over to the copy). */
#define od_barrier_var(var) asm volatile("" : "+r"(var))

/* Counts a read that needs no record of its own in read_totals (see
 * odirect.bpf.c's count_read).  Returns 0 when counted; -1 when it must be
 * recorded: O_DIRECT, or no room left. */
static __always_inline int count_read(void *ctx, struct reader_state *s, __u32 pid, __u16 kind, __s32 fd,
				      struct file *file, long ret, __u64 latency, __u64 now,
				      const struct kt_cgroup_ids *cg)
{
	struct odirect_total_key key = {};
	struct odirect_total *t, *zero;
	struct file_head head;
	__u32 slot, first = 0;

	key.pid = pid;
	key.syscall = kind;
	if (file && !read_file_head(file, &head)) {
		struct inode *inode = head.inode;
		struct inode_head ihead;

		if (head.flags & ODIRECT_O_DIRECT)
			return -1;
		if (read_inode_head(inode, &ihead))
			goto count;
		key.ftype = (ihead.mode >> 12) & 0xf;
		if (key.ftype == ODIRECT_FTYPE_REG) {
			key.ino = ihead.ino;
			if (s && s->named_file == (__u64)file && s->named_inode == (__u64)inode && s->named_ino == key.ino) {
				key.dev = s->named_dev;
			} else {
				key.dev = inode_dev(inode);
				name_file(ctx, file, key.ino, key.dev, pid, fd);
				if (s) {
					s->named_file = (__u64)file;
					s->named_inode = (__u64)inode;
					s->named_ino = key.ino;
					s->named_dev = key.dev;
				}
			}
		}
	}
count:
	t = read_totals.lookup(&key);
	if (!t) {
		zero = zero_total.lookup(&first);
		if (!zero)
			return -1;
		bpf_get_current_comm(zero->comm, sizeof(zero->comm));
		if (cg) {
			zero->cgroup_id = cg->v2;
			zero->cgroup_v1_id = cg->v1;
		} else {
			struct kt_cgroup_ids ids = {};

			kt_current_cgroups(&ids);
			zero->cgroup_id = ids.v2;
			zero->cgroup_v1_id = ids.v1;
		}
		read_totals.insert(&key, zero);
		__builtin_memset(zero->comm, 0, sizeof(zero->comm));
		t = read_totals.lookup(&key);
		if (!t) {
			kt_counter_add(totals_full.lookup(&first), 1);
			return -1;
		}
	}
	__sync_fetch_and_add(&t->reads, 1);
	if (ret > 0) {
		__sync_fetch_and_add(&t->ok_reads, 1);
		__sync_fetch_and_add(&t->bytes, ret);
	} else if (ret < 0) {
		__sync_fetch_and_add(&t->errors, 1);
	}
	__sync_fetch_and_add(&t->latency_ns, latency);
	t->last_ns = now;
	slot = latency_slot(latency);
	if (slot >= ODIRECT_LAT_SLOTS)
		slot = ODIRECT_LAT_SLOTS - 1;
	od_barrier_var(slot);
	if (slot < ODIRECT_LAT_SLOTS)
		__sync_fetch_and_add(&t->latency[slot], 1);
	slot = ret > 0 ? kt_log2_u64(ret) + 1 : 0;
	if (slot >= ODIRECT_SIZE_SLOTS)
		slot = ODIRECT_SIZE_SLOTS - 1;
	od_barrier_var(slot);
	if (slot < ODIRECT_SIZE_SLOTS)
		__sync_fetch_and_add(&t->size[slot], 1);
	return 0;
}

/* ---- read syscalls ------------------------------------------------------ */

static __always_inline __u16 read_syscall(long id)
{
	switch (id) {
	case KT_NR_READ: return ODIRECT_SYSCALL_READ;
	case KT_NR_PREAD64: return ODIRECT_SYSCALL_PREAD64;
	case KT_NR_READV: return ODIRECT_SYSCALL_READV;
	case KT_NR_PREADV: return ODIRECT_SYSCALL_PREADV;
	case KT_NR_PREADV2: return ODIRECT_SYSCALL_PREADV2;
	}
	return 0;
}

/* A read-family syscall enters: its time and arguments (x86-64 order: di,
 * si, dx, r10, r8, r9).  preadv/preadv2 take the position in pos_l alone
 * on 64-bit; preadv2 with position -1 reads at the file position. */
static __always_inline int read_enter(long id, __u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 a5)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u16 kind = read_syscall(id);
	struct reader_state *s;

	if (!kind || kt_compat_syscall())
		return 0;
	s = reader_get(pid_tgid, 0);
	if (!s) {
		if (!kt_current_traced())
			return 0;
		s = reader_get(pid_tgid, 1);
		if (!s)
			return 0;
	}
	s->enter_ns = bpf_ktime_get_ns();
	s->fd = a0;
	s->kind = kind;
	s->pos = (kind == ODIRECT_SYSCALL_READ || kind == ODIRECT_SYSCALL_READV) ? -1 : (__s64)a3;
	s->rwf = kind == ODIRECT_SYSCALL_PREADV2 ? a5 : 0;
	if (kind == ODIRECT_SYSCALL_READ || kind == ODIRECT_SYSCALL_PREAD64) {
		s->count = a2;
		s->iov = 0;
		s->iovcnt = 0;
	} else {
		s->count = 0;
		s->iov = a1;
		s->iovcnt = a2;
	}
	return 0;
}

/* The syscall returns: its record, or its count (see odirect.bpf.c's
 * read_exit).  The file is read at the exit, as there. */
static __always_inline int read_exit(void *ctx, long id, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u16 kind = read_syscall(id);
	struct odirect_read_event e = {};
	struct kt_cgroup_ids cg = {};
	struct reader_state *s;
	struct file *file;
	__u64 now;

	if (!kind) {
		if (id == KT_NR_IO_URING_ENTER) {
			s = reader_get(pid_tgid, 0);
			if (s)
				s->uring_submit_ns = 0;
		}
		return 0;
	}
	s = reader_get(pid_tgid, 0);
	if (!s || !s->enter_ns || s->kind != kind)
		return 0;
	now = bpf_ktime_get_ns();
	file = fd_file(s->fd);
	if (!all_reads &&
	    !count_read(ctx, s, pid_tgid >> 32, kind, s->fd, file, ret, now - s->enter_ns, now, NULL))
		goto out;
	e.ts_ns = now;
	e.latency_ns = now - s->enter_ns;
	e.ret = ret;
	e.pid = pid_tgid >> 32;
	e.tid = (__u32)pid_tgid;
	e.fd = s->fd;
	e.syscall = kind;
	e.rwf = s->rwf;
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	kt_current_cgroups(&cg);
	e.cgroup_id = cg.v2;
	e.cgroup_v1_id = cg.v1;
	if (kind != ODIRECT_SYSCALL_READ && kind != ODIRECT_SYSCALL_PREAD64) {
		e.iovcnt = s->iovcnt > 0xffff ? 0xffff : s->iovcnt;
		e.asked = iov_bytes(s->iov, s->iovcnt, &e.iov_truncated);
	} else {
		e.asked = s->count;
	}
	fill_file(ctx, &e, file, s->pos, ret, s);
	send_read(ctx, &e);
out:
	s->enter_ns = 0;
	return 0;
}

/* The raw syscall tracepoints as raw tracepoints (4.17+, c4f6699dfcb8):
 * no perf record per syscall; the registers are the task's pt_regs. */
#ifdef KT_HOOK_odirect_sys_enter
int odirect_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long id = ctx->args[1];
	__u64 di = 0, si = 0, dx = 0, r10 = 0, r9 = 0;

	if (!read_syscall(id))
		return 0;
	OD_RD(di, regs->di);
	OD_RD(si, regs->si);
	OD_RD(dx, regs->dx);
	OD_RD(r10, regs->r10);
	OD_RD(r9, regs->r9);
	return read_enter(id, di, si, dx, r10, r9);
}
#endif

#ifdef KT_HOOK_odirect_sys_exit
int odirect_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long id = -1;

	OD_RD(id, regs->orig_ax);
	return read_exit(ctx, id, (long)ctx->args[1]);
}
#endif

/* The same as classic tracepoints (any kernel with BPF tracepoints, 4.7),
 * where each syscall of every task costs a perf record. */
#ifdef KT_HOOK_odirect_sys_enter_tp
int odirect_sys_enter_tp(struct tracepoint__raw_syscalls__sys_enter *args)
{
	long id = args->id;

	if (!read_syscall(id))
		return 0;
	return read_enter(id, args->args[0], args->args[1], args->args[2], args->args[3], args->args[5]);
}
#endif

#ifdef KT_HOOK_odirect_sys_exit_tp
int odirect_sys_exit_tp(struct tracepoint__raw_syscalls__sys_exit *args)
{
	return read_exit(args, args->id, args->ret);
}
#endif

/* ---- io_uring reads ----------------------------------------------------- */

/* A traced task's io_uring read between its submission and its completion
 * (odirect.bpf.c's struct uring_read). */
struct uring_read {
	__u64 submit_ns;
	__s64 pos;
	__u64 asked;
	__u64 cgroup_id;
	__u64 cgroup_v1_id;
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u32 rwf;
	__u16 kind;
	__u16 iovcnt;
	__u8 iov_truncated;
	__u8 pad[3];
	__u64 bio;          /* the last bio queued in its issue */
	char comm[ODIRECT_COMM_LEN];
};

BPF_TABLE(OD_LRU, __u64, struct uring_read, uring_reads, 16384);

/* io-wq worker thread id -> the request (struct io_kiocb *) it is issuing,
 * between the entry and the return of io_wq_submit_work. */
BPF_TABLE(OD_LRU, __u32, __u64, uring_workers, 4096);

#ifdef OD_IO_URING

#define OD_IORING_OP_READV 1
#define OD_IORING_OP_READ_FIXED 4
#define OD_IORING_OP_READ 22
#define OD_REQ_F_FIXED_FILE 1

/* io_uring/rw.c's struct io_rw (private there), the first bytes of the
 * request (io_kiocb_to_cmd): the same layout from 6.0 to 6.18. */
struct od_io_rw {
	struct kiocb kiocb;
	__u64 addr;
	__u32 len;
	__u32 flags;        /* rwf_t */
};

static __always_inline __u16 uring_read_kind(__u8 opcode)
{
	switch (opcode) {
	case OD_IORING_OP_READV: return ODIRECT_SYSCALL_IO_URING_READV;
	case OD_IORING_OP_READ_FIXED: return ODIRECT_SYSCALL_IO_URING_READ_FIXED;
	case OD_IORING_OP_READ: return ODIRECT_SYSCALL_IO_URING_READ;
	}
	return 0;
}

/* See odirect.bpf.c's on_uring_submit: after the request was prepared,
 * before its file is looked up (the fd is still in req->cqe.fd). */
static __always_inline int on_uring_submit(struct io_kiocb *req)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct od_io_rw *rw = (struct od_io_rw *)req;
	struct kt_cgroup_ids cg = {};
	struct reader_state *s;
	struct uring_read r = {};
	unsigned int flags = 0;
	__u8 opcode = 0;
	__u64 key = (__u64)req;
	__u16 kind;

	OD_RD(opcode, req->opcode);
	kind = uring_read_kind(opcode);
	if (!kind) {
		/* a write or another op: the bios it queues serve no read */
		s = reader_get(pid_tgid, 0);
		if (s)
			s->uring_submit_ns = 0;
		return 0;
	}
	if (!kt_current_traced())
		return 0;
	r.submit_ns = bpf_ktime_get_ns();
	OD_RD(r.pos, rw->kiocb.ki_pos);
	OD_RD(r.rwf, rw->flags);
	r.kind = kind;
	r.pid = pid_tgid >> 32;
	r.tid = (__u32)pid_tgid;
	OD_RD(flags, req->flags);
	if (flags & OD_REQ_F_FIXED_FILE)
		r.fd = -1;
	else
		OD_RD(r.fd, req->cqe.fd);
	if (kind == ODIRECT_SYSCALL_IO_URING_READV) {
		__u32 count = 0;
		__u64 addr = 0;

		OD_RD(count, rw->len);
		OD_RD(addr, rw->addr);
		r.iovcnt = count > 0xffff ? 0xffff : count;
		r.asked = iov_bytes(addr, count, &r.iov_truncated);
	} else {
		__u32 len = 0;

		OD_RD(len, rw->len);
		r.asked = len;
	}
	bpf_get_current_comm(r.comm, sizeof(r.comm));
	kt_current_cgroups(&cg);
	r.cgroup_id = cg.v2;
	r.cgroup_v1_id = cg.v1;
	uring_reads.update(&key, &r);
	/* the bios queued while this request is issued are its own */
	s = reader_get(pid_tgid, 1);
	if (s) {
		s->uring_submit_ns = r.submit_ns;
		s->uring_req = key;
	}
	return 0;
}

/* io_uring_submit_req since 6.4 (2ad57931db64), io_uring_submit_sqe
 * before; the request is the first argument of both since 6.0. */
#ifdef KT_HOOK_odirect_uring_submit_req
int odirect_uring_submit_req(struct bpf_raw_tracepoint_args *ctx)
{
	return on_uring_submit((struct io_kiocb *)ctx->args[0]);
}
#endif

#ifdef KT_HOOK_odirect_uring_submit_sqe
int odirect_uring_submit_sqe(struct bpf_raw_tracepoint_args *ctx)
{
	return on_uring_submit((struct io_kiocb *)ctx->args[0]);
}
#endif

/* A request goes to an io-wq worker (see odirect.bpf.c's odirect_uring_punt):
 * the last bio of its non-blocking try never reached a request, and the
 * worker queues the read's bios again. */
#ifdef KT_HOOK_odirect_uring_punt
int odirect_uring_punt(struct bpf_raw_tracepoint_args *ctx)
{
	struct io_kiocb *req = (struct io_kiocb *)ctx->args[0];
	__u64 key = (__u64)req;
	struct bio_slot *slot;
	struct uring_read *r;
	struct file *file = NULL;
	unsigned int f_flags = 0;
	__u64 bio;

	r = uring_reads.lookup(&key);
	if (!r || !r->bio)
		return 0;
	bio = r->bio;
	r->bio = 0;
	if (OD_RD(file, req->file) || !file || OD_RD(f_flags, file->f_flags) || !(f_flags & ODIRECT_O_DIRECT))
		return 0; /* a buffered read's readahead may still be in flight */
	slot = find_bio(bio);
	if (slot && slot->owner.uring && slot->owner.read_enter_ns == r->submit_ns && slot->owner.tid == r->tid &&
	    !slot->owner.credited)
		OD_CAS(&slot->bio, bio, 0);
	return 0;
}
#endif

/* The completion is posted with req->cqe.res set; the request is the
 * second argument in every version of the tracepoint. */
#ifdef KT_HOOK_odirect_uring_complete
int odirect_uring_complete(struct bpf_raw_tracepoint_args *ctx)
{
	struct io_kiocb *req = (struct io_kiocb *)ctx->args[1];
	__u64 key = (__u64)req;
	struct odirect_read_event e = {};
	struct kt_cgroup_ids cg;
	struct uring_read *r;
	struct file *file = NULL;
	__s32 res = 0;
	__u64 now;

	r = uring_reads.lookup(&key);
	if (!r)
		return 0;
	now = bpf_ktime_get_ns();
	cg.v2 = r->cgroup_id;
	cg.v1 = r->cgroup_v1_id;
	OD_RD(file, req->file);
	OD_RD(res, req->cqe.res);
	if (!all_reads && !count_read(ctx, NULL, r->pid, r->kind, r->fd, file, res, now - r->submit_ns, now, &cg)) {
		uring_reads.delete(&key);
		return 0;
	}
	e.ts_ns = now;
	e.latency_ns = now - r->submit_ns;
	e.ret = res;
	e.pid = r->pid;
	e.tid = r->tid;
	e.fd = r->fd;
	e.syscall = r->kind;
	e.rwf = r->rwf;
	e.iovcnt = r->iovcnt;
	e.iov_truncated = r->iov_truncated;
	e.asked = r->asked;
	e.cgroup_id = r->cgroup_id;
	e.cgroup_v1_id = r->cgroup_v1_id;
	__builtin_memcpy(e.comm, r->comm, sizeof(e.comm));
	fill_file(ctx, &e, file, r->pos, e.ret, NULL);
	send_read(ctx, &e);
	uring_reads.delete(&key);
	return 0;
}
#endif

/* An io-wq worker issues a request (io_wq_submit_work, the worker's
 * do_work, called through a pointer: never inlined): if it is a traced
 * read, the bios the worker queues until the return are the read's. */
#ifdef KT_HOOK_odirect_uring_worker
int odirect_uring_worker(struct pt_regs *ctx)
{
	__u64 key = PT_REGS_PARM1(ctx) - offsetof(struct io_kiocb, work);
	__u32 tid = bpf_get_current_pid_tgid();

	if (uring_reads.lookup(&key))
		uring_workers.update(&tid, &key);
	return 0;
}
#endif

#ifdef KT_HOOK_odirect_uring_worker_done
int odirect_uring_worker_done(struct pt_regs *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();

	uring_workers.delete(&tid);
	return 0;
}
#endif

#endif /* OD_IO_URING */

/* ---- block I/O ---------------------------------------------------------- */

/* Whole-disk dev_t, kernel encoding (MKDEV: major << 20). */
static __always_inline __u32 disk_dev(struct gendisk *disk)
{
	int major = 0, minor = 0;

	if (!disk || OD_RD(major, disk->major) || OD_RD(minor, disk->first_minor))
		return 0;
	return ((__u32)major << 20) | (__u32)minor;
}

static __always_inline void send_bio(void *ctx, struct bio_owner *owner, __u64 ts, __u64 issue_ns, __u64 sector,
				     __u32 bytes, __u32 dev, __u32 op, __s32 error, __u8 completed)
{
	struct odirect_block_event e = {};

	e.ts_ns = ts;
	e.queued_ns = owner->queued_ns;
	e.issue_ns = issue_ns;
	e.read_enter_ns = owner->read_enter_ns;
	e.file_ino = owner->file_ino;
	e.file_dev = owner->file_dev;
	e.sector = sector;
	e.cgroup_id = owner->cgroup_id;
	e.cgroup_v1_id = owner->cgroup_v1_id;
	e.bytes = bytes;
	e.dev = dev;
	e.pid = owner->pid;
	e.tid = owner->tid;
	e.op = op;
	e.error = error;
	e.attributed = 1;
	e.completed = completed;
	e.uring_read = owner->uring;
	__builtin_memcpy(e.comm, owner->comm, sizeof(e.comm));
	send_block(ctx, &e);
}

/* A bio whose completion was never reported, by what it was queued with. */
static __always_inline void send_unreported(void *ctx, struct bio_owner *owner)
{
	if (owner->traced && owner->bytes > owner->credited)
		send_bio(ctx, owner, owner->queued_ns, 0, owner->sector, owner->bytes - owner->credited, owner->dev,
			 owner->op, 0, 0);
}

/* See odirect.bpf.c's store_bio. */
static __always_inline void store_bio(void *ctx, __u64 bio, struct bio_owner *owner)
{
	struct bio_slot *slot, *oldest = NULL;
	__u32 base = bio_set_base(bio), zero = 0;

	slot = find_bio(bio);
	if (slot) {
		send_unreported(ctx, &slot->owner);
		__builtin_memcpy(&slot->owner, owner, sizeof(*owner));
		return;
	}
#pragma unroll
	for (__u32 way = 0; way < ODIRECT_BIO_WAYS; way++) {
		__u32 idx = base + way;

		slot = bios.lookup(&idx);
		if (!slot)
			continue;
		if (!slot->bio && !OD_CAS(&slot->bio, 0, bio)) {
			__builtin_memcpy(&slot->owner, owner, sizeof(*owner));
			return;
		}
		if (!oldest || slot->owner.queued_ns < oldest->owner.queued_ns)
			oldest = slot;
	}
	if (oldest && owner->queued_ns - oldest->owner.queued_ns > ODIRECT_BIO_STALE_NS) {
		__u64 was = oldest->bio;

		if (was && OD_CAS(&oldest->bio, was, bio) == was) {
			send_unreported(ctx, &oldest->owner);
			__builtin_memcpy(&oldest->owner, owner, sizeof(*owner));
			return;
		}
	}
	kt_counter_add(untracked_bios.lookup(&zero), 1);
}

/* The file of the read a bio is queued in (see odirect.bpf.c's bio_file). */
static __always_inline void bio_file(struct reader_state *reader, struct file *file, struct bio_owner *owner)
{
	struct inode *inode;

	if (!file)
		return;
	inode = file_inode_of(file);
	owner->file_ino = inode_ino(inode);
	if (reader->named_file == (__u64)file && reader->named_inode == (__u64)inode &&
	    reader->named_ino == owner->file_ino)
		owner->file_dev = reader->named_dev;
	else
		owner->file_dev = inode_dev(inode);
}

/* A bio an io-wq worker queues while it issues a traced io_uring read is
 * the read's, given the submitting thread and its name as the read record
 * has them (see odirect.bpf.c's worker_bio; here the worker's request is
 * the one odirect_uring_worker marked). */
static __always_inline void worker_bio(__u32 tid, struct bio_owner *owner)
{
	struct uring_read *r;
	struct file *file = NULL;
	struct inode *inode;
	__u64 *req = uring_workers.lookup(&tid);
	__u64 key;

	if (!req)
		return;
	key = *req;
	r = uring_reads.lookup(&key);
	if (!r)
		return;
	owner->read_enter_ns = r->submit_ns;
	owner->uring = 1;
	owner->tid = r->tid;
	__builtin_memcpy(owner->comm, r->comm, sizeof(owner->comm));
#ifdef OD_IO_URING
	OD_RD(file, ((struct io_kiocb *)key)->file);
#endif
	if (!file)
		return;
	inode = file_inode_of(file);
	owner->file_ino = inode_ino(inode);
	owner->file_dev = inode_dev(inode);
}

/* The disk a bio is queued on: bio::bi_bdev since 5.12 (309dca309fc3),
 * bio::bi_disk before. */
static __always_inline struct gendisk *bio_disk(struct bio *bio)
{
	struct gendisk *disk = NULL;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 12, 0)
	struct block_device *bdev = NULL;

	if (!OD_RD(bdev, bio->bi_bdev) && bdev)
		OD_RD(disk, bdev->bd_disk);
#else
	OD_RD(disk, bio->bi_disk);
#endif
	return disk;
}

/* Request-based (its bios reach a request): blk-mq, and before 5.0 (the
 * legacy request path's removal, a1ce35fa4985) also a request_fn queue. */
static __always_inline int request_based(struct gendisk *disk)
{
	struct request_queue *q = NULL;
	const void *ops = NULL;

	if (!disk || OD_RD(q, disk->queue) || !q)
		return 0;
	if (!OD_RD(ops, q->mq_ops) && ops)
		return 1;
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 0, 0)
	if (!OD_RD(ops, q->request_fn) && ops)
		return 1;
#endif
	return 0;
}

/* block_bio_queue fires once per bio, in the context of whoever called
 * submit_bio (see odirect.bpf.c's on_bio_queue). */
static __always_inline int on_bio_queue(void *ctx, struct bio *bio)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct gendisk *disk = bio_disk(bio);
	struct reader_state *reader;
	struct bio_owner owner = {};
	struct kt_cgroup_ids cg = {};
	unsigned int opf = 0;

	if (OD_RD(owner.bytes, bio->bi_iter.bi_size) || !owner.bytes || !request_based(disk))
		return 0; /* flushes; bio-based disks */
	reader = reader_get(pid_tgid, 0);
	if (reader && reader->enter_ns) {
		owner.read_enter_ns = reader->enter_ns;
		bio_file(reader, fd_file(reader->fd), &owner);
	} else if (reader && reader->uring_submit_ns) {
		struct uring_read *r = uring_reads.lookup(&reader->uring_req);
		struct file *file = NULL;

		owner.read_enter_ns = reader->uring_submit_ns;
		owner.uring = 1;
#ifdef OD_IO_URING
		OD_RD(file, ((struct io_kiocb *)reader->uring_req)->file);
#endif
		bio_file(reader, file, &owner);
		if (r)
			r->bio = (__u64)bio;
	}
	owner.traced = reader ? 1 : kt_current_traced();
	owner.queued_ns = bpf_ktime_get_ns();
	OD_RD(owner.sector, bio->bi_iter.bi_sector);
	owner.dev = disk_dev(disk);
	owner.pid = pid_tgid >> 32;
	owner.tid = (__u32)pid_tgid;
	/* REQ_OP_* in the low 8 bits of bi_opf since 4.10 (ef295ecf090d) */
	OD_RD(opf, bio->bi_opf);
	owner.op = opf & 0xff;
	bpf_get_current_comm(owner.comm, sizeof(owner.comm));
	if (!owner.read_enter_ns && owner.traced)
		worker_bio((__u32)pid_tgid, &owner);
	kt_current_cgroups(&cg);
	owner.cgroup_id = cg.v2;
	owner.cgroup_v1_id = cg.v1;
	store_bio(ctx, (__u64)bio, &owner);
	return 0;
}

static __always_inline int on_rq_issue(struct request *rq)
{
	__u64 key = (__u64)rq;
	struct rq_stamp *stamp = rq_slot(key);

	if (stamp) {
		stamp->issue_ns = bpf_ktime_get_ns();
		stamp->rq = key;
	}
	return 0;
}

struct rq_walk {
	__u64 now;
	__u64 issue_ns;
	__u32 dev;
	__u32 op;
	__s32 error;
	__u32 left;
	__u32 found;
};

/* One bio of a completing request, credited to the task that submitted it
 * (see odirect.bpf.c's credit).  A 32-bit fetch-and-add with its result
 * needs ALU32 code, which BCC does not ask of clang: the sum is read back. */
static __always_inline void credit(void *ctx, struct rq_walk *w, struct bio *bio, __u64 sector, __u32 size)
{
	__u64 key = (__u64)bio;
	struct bio_slot *slot = find_bio(key);

	w->left = size < w->left ? w->left - size : 0;
	if (!slot) {
		void *parent = NULL;

		OD_RD(parent, bio->bi_private);
		key = (__u64)parent;
		slot = key ? find_bio(key) : NULL;
	}
	if (!slot)
		return;
	w->found = 1;
	if (slot->owner.traced)
		send_bio(ctx, &slot->owner, w->now, w->issue_ns, sector, size, w->dev, w->op, w->error, 1);
	__sync_fetch_and_add(&slot->owner.credited, size);
	if (slot->owner.credited >= slot->owner.bytes)
		OD_CAS(&slot->bio, key, 0);
}

/* Bios walked per completing request: a bounded loop since 5.3; unrolled
 * before, where a program has 4096 instructions at most. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 3, 0)
#define OD_RQ_BIOS ODIRECT_MAX_RQ_BIOS
#else
#define OD_RQ_BIOS 4
#endif

/* The disk of a request: request_queue::disk since 5.15 and
 * request::rq_disk gone in 5.17 (f3fa33acca9f). */
static __always_inline struct gendisk *rq_disk(struct request *rq)
{
	struct gendisk *disk = NULL;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 17, 0)
	struct request_queue *q = NULL;

	if (!OD_RD(q, rq->q) && q)
		OD_RD(disk, q->disk);
#else
	OD_RD(disk, rq->rq_disk);
#endif
	return disk;
}

/* See odirect.bpf.c's on_rq_complete: the bios this completion covers, each
 * credited to its submitter; the tracepoint fires before they are ended. */
static __always_inline int on_rq_complete(void *ctx, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 rq_key = (__u64)rq;
	struct rq_stamp *stamp;
	struct bio *bio = NULL;
	struct rq_walk w = {};
	struct odirect_block_event e = {};
	unsigned int cmd_flags = 0;
	__u32 zero = 0;

	if (!nr_bytes)
		return 0; /* flushes and other data-less requests */
	w.now = bpf_ktime_get_ns();
	OD_RD(cmd_flags, rq->cmd_flags);
	w.op = cmd_flags & 0xff;
	w.error = error;
	w.left = nr_bytes;
	stamp = rq_slot(rq_key);
	if (stamp && stamp->rq == rq_key)
		w.issue_ns = stamp->issue_ns;
	w.dev = disk_dev(rq_disk(rq));
	OD_RD(bio, rq->bio);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 3, 0)
#pragma clang loop unroll(disable)
#else
#pragma unroll
#endif
	for (__u32 i = 0; i < OD_RQ_BIOS; i++) {
		struct bio *next = NULL;
		__u64 sector = 0;
		__u32 size = 0;

		if (!bio || !w.left)
			break;
		OD_RD(next, bio->bi_next);
		OD_RD(sector, bio->bi_iter.bi_sector);
		OD_RD(size, bio->bi_iter.bi_size);
		credit(ctx, &w, bio, sector, size);
		bio = next;
	}
	if (w.found)
		return 0;
	kt_counter_add(unattributed_requests.lookup(&zero), 1);
	kt_counter_add(unattributed_bytes.lookup(&zero), nr_bytes);
	e.ts_ns = w.now;
	OD_RD(e.sector, rq->__sector);
	e.issue_ns = w.issue_ns;
	e.bytes = nr_bytes;
	e.dev = w.dev;
	e.op = w.op;
	e.error = error;
	e.completed = 1;
	send_block(ctx, &e);
	return 0;
}

/* Raw tracepoints (4.17+): the tracepoint's arguments.  block_bio_queue and
 * block_rq_issue took the request_queue first until 5.11 ("block: remove
 * the request_queue argument to the block_bio_* tracepoints", "... to
 * request based tracepoints"); block_rq_complete is (rq, error, nr_bytes)
 * since 4.12 (error a blk_status_t since then). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
#define OD_QUEUE_ARG(ctx, i) ((ctx)->args[i])
#else
#define OD_QUEUE_ARG(ctx, i) ((ctx)->args[(i) + 1])
#endif

#ifdef KT_HOOK_odirect_bio_queue
int odirect_bio_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return on_bio_queue(ctx, (struct bio *)OD_QUEUE_ARG(ctx, 0));
}
#endif

#ifdef KT_HOOK_odirect_rq_issue
int odirect_rq_issue(struct bpf_raw_tracepoint_args *ctx)
{
	return on_rq_issue((struct request *)OD_QUEUE_ARG(ctx, 0));
}
#endif

#ifdef KT_HOOK_odirect_rq_complete
int odirect_rq_complete(struct bpf_raw_tracepoint_args *ctx)
{
	return on_rq_complete(ctx, (struct request *)ctx->args[0], (int)ctx->args[1], (unsigned int)ctx->args[2]);
}
#endif

/* Kprobes where raw tracepoints are missing (before 4.17), on the functions
 * that fire the same tracepoints: the bio checks before a bio is queued
 * (generic_make_request_checks, renamed submit_bio_checks in 5.9; the
 * engine takes the name that exists), blk_mq_start_request (block_rq_issue)
 * and blk_update_request (block_rq_complete, with the same arguments).  A
 * kprobe fires on every call where the tracepoint fires once per bio
 * (BIO_TRACE_COMPLETION): a bio split and resubmitted is then stored again,
 * and its first entry sent as never completed. */
#ifdef KT_HOOK_odirect_bio_queue_kp
int odirect_bio_queue_kp(struct pt_regs *ctx)
{
	return on_bio_queue(ctx, (struct bio *)PT_REGS_PARM1(ctx));
}
#endif

#ifdef KT_HOOK_odirect_rq_issue_kp
int odirect_rq_issue_kp(struct pt_regs *ctx)
{
	return on_rq_issue((struct request *)PT_REGS_PARM1(ctx));
}
#endif

#ifdef KT_HOOK_odirect_rq_complete_kp
int odirect_rq_complete_kp(struct pt_regs *ctx)
{
	return on_rq_complete(ctx, (struct request *)PT_REGS_PARM1(ctx), (int)PT_REGS_PARM2(ctx),
			      (unsigned int)PT_REGS_PARM3(ctx));
}
#endif
