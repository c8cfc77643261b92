// SPDX-License-Identifier: GPL-2.0
/* iotrace odirect: every read-family syscall and io_uring read of the traced
 * processes, with O_DIRECT taken from the open file at the time of the read,
 * and the block I/O they cause, attributed where the bio is submitted (in the
 * caller's context) rather than where the request is issued or completed
 * (kworkers, interrupts).
 *
 * The syscall and block programs run in the traced reader's own path (its
 * syscall, its bio submission, the completion it waits for), so what each
 * costs is paid per read: per-thread state lives in task storage, not in a
 * shared hash, each read and each bio produce one record, and request issue
 * only writes a time stamp into a slot of an array.  The io_uring programs
 * keep a request between submission and completion in a hash: io_uring
 * batches its requests, and these hooks see no other. */
#include "vmlinux.h"
#include "kerntrace.bpf.h"
#include "odirect.h"

/* A record wakes user space only once its ring is more than half full.
 * Below that the reader finds it at its next poll (every 200 ms).  A wake-up
 * is an interrupt on the producing CPU and an IPI to the reader's: on the
 * 6.18 VM, waking the reader every 64 KiB of records cost fio's O_DIRECT
 * reads 3 points of their rate under iotrace (92.8 % of untraced against
 * 96.1 % with no wake-up, in one fio run).  The half-full wake-up is for
 * bursts, so that they are read rather than lost. */
KT_RINGBUF(odirect_files, 1024 * 1024);
/* A 4 KiB O_DIRECT read is one read record and one bio record of about the
 * same size: the two rings hold as many (a 2 MiB block ring overflowed first
 * under the bundled reproduction's six readers on a busy machine). */
KT_RINGBUF(odirect_reads, 4 * 1024 * 1024);
KT_RINGBUF(odirect_blocks, 4 * 1024 * 1024);
KT_EXPORT(odirect_file_event);
KT_EXPORT(odirect_read_event);
KT_EXPORT(odirect_block_event);
KT_EXPORT_ENUM(odirect_syscall);

/* Record every read, buffered or not (--all-reads); otherwise only O_DIRECT
 * reads travel the ring and the rest are counted in read_totals. */
const volatile bool all_reads = false;

KT_EXPORT(odirect_total_key);
KT_EXPORT(odirect_total);
KT_EXPORT_ENUM(odirect_ftype);

/* Reads counted in the kernel (see odirect.h); read by user space each
 * second and at the end.  Preallocated: tracing programs insert into it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ODIRECT_TOTALS);
	__type(key, struct odirect_total_key);
	__type(value, struct odirect_total);
} read_totals SEC(".maps");

/* A zeroed total to insert from (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct odirect_total);
} zero_total SEC(".maps");

/* Reads that found read_totals full: recorded instead. */
__u64 totals_full = 0;

/* Requests completed with data and no bio we saw submitted (queued before
 * attach, or built by a path that bypasses submit_bio). */
__u64 unattributed_requests = 0;
__u64 unattributed_bytes = 0;

/* Per traced thread, in its task storage (created at its first read, so
 * having one means "traced": the traced set only grows while tracing):
 * the read in flight, and the last open file it read, with what the
 * record needs of it. */
struct reader_state {
	__u64 enter_ns;     /* entry of the read in flight; 0 when none */
	__u64 named_file;   /* struct file * */
	__u64 named_inode;  /* its struct inode * */
	__u64 named_ino;
	__u32 named_dev;
	__s32 fd;           /* of the read in flight (bios it queues name its file) */
	/* the io_uring read this thread submitted last, until its
	 * io_uring_enter returns (an SQPOLL thread keeps it: it only submits) */
	__u64 uring_submit_ns;
	__u64 uring_req;    /* that read's struct io_kiocb *: its file names its bios */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct reader_state);
} readers SEC(".maps");

/* Who queued a bio, and what it was then.  sector, bytes, op and dev are
 * for a bio whose completion is never reported (see on_bio_queue). */
struct bio_owner {
	__u64 queued_ns;
	__u64 read_enter_ns; /* the submitter's read in flight (reader_state.enter_ns) */
	__u64 file_ino;     /* that read's file */
	__u32 file_dev;
	__u32 pad2;
	__u64 sector;
	__u64 cgroup_id;    /* the submitter's (kt_cgroup_ids) */
	__u64 cgroup_v1_id;
	__u32 bytes;
	__u32 credited;     /* bytes credited so far: its own and those of bios split off it */
	__u32 dev;
	__u32 pid;
	__u32 tid;
	__u8 op;
	__u8 traced;        /* the submitter was traced when it queued the bio */
	__u8 uring;         /* read_enter_ns is an io_uring read's submission */
	__u8 pad;
	char comm[ODIRECT_COMM_LEN];
};

/* Every bio submitted to a request-based disk, traced or not, so that
 * "submitted by somebody else" and "never seen submitted" stay apart: a
 * set-associative table in an array, BIO_WAYS slots per set, a slot claimed
 * with a compare-and-swap of its bio pointer and given back at completion.
 * A hash map's insert and delete (bucket lock, free list) cost ~0.4 us per
 * bio here; a slot costs about a cache line.  User space maps the table to
 * read what is left at the end. */
struct bio_slot {
	__u64 bio;          /* typed_key of the struct bio; 0: free */
	struct bio_owner owner;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ODIRECT_BIO_SETS * ODIRECT_BIO_WAYS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct bio_slot);
} bios SEC(".maps");
KT_EXPORT(bio_slot);

/* Bios queued that no slot could take (their set full, no slot in it
 * older than ODIRECT_BIO_STALE_NS to take back). */
__u64 untracked_bios = 0;

/* A kernel pointer as a number, to hash and compare.  The verifier lets a
 * privileged program do no arithmetic on a pointer but take the difference
 * of two, so a typed pointer's key is its distance from the bios map, whose
 * address is fixed while it exists: no helper call (a probe of a stack copy
 * cost ~50 ns a pointer on the 6.18 host). */
static __always_inline __u64 typed_key(const void *ptr)
{
	return (__u64)ptr - (__u64)&bios;
}

/* The value of a pointer whichever way the verifier types it (a bpf_loop
 * callback's view of a pointer kept in the caller's stack differs between
 * kernels): a probe of a copy on the stack.  untyped_key(value,
 * ptr_value(&bios)) is then its key. */
static __always_inline __u64 ptr_value(const void *ptr)
{
	__u64 value = 0;

	bpf_probe_read_kernel(&value, sizeof(value), &ptr);
	return value;
}

static __always_inline __u64 untyped_key(__u64 ptr, __u64 bios_at)
{
	return ptr - bios_at;
}

/* Fibonacci hashing of a pointer to `bits` bits: slab addresses differ in
 * their low and middle bits, which a mask alone would use unevenly. */
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
		struct bio_slot *slot = bpf_map_lookup_elem(&bios, &idx);

		if (slot && slot->bio == bio)
			return slot;
	}
	return NULL;
}

/* When each request was issued to its driver: a slot per request, found by
 * hashing its address (requests come from each queue's fixed pool, so a
 * slot is overwritten when its request is issued again).  Two requests in
 * flight in one slot cost the older its device latency, never its bytes.
 * request::io_start_time_ns is not used: the kernel sets it only while the
 * queue keeps I/O statistics, and that comes and goes. */
struct rq_stamp {
	__u64 rq;           /* typed_key of the struct request */
	__u64 issue_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << ODIRECT_RQ_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct rq_stamp);
} issued SEC(".maps");

static __always_inline struct rq_stamp *rq_slot(__u64 rq)
{
	__u32 idx = ptr_hash(rq, ODIRECT_RQ_SLOT_BITS);

	return bpf_map_lookup_elem(&issued, &idx);
}

/* struct file -> inode it was named for: each open file is named once
 * (again if the slab hands the same struct file to another inode). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} named_files SEC(".maps");

static __always_inline void submit(void *ctx, void *ring, void *rec, __u64 size)
{
	__u64 flags = 0;

	/* the perf buffer wakes the reader at a watermark (half its ring) */
	if (!kt_perf_output) {
		__u64 half = bpf_ringbuf_query(ring, BPF_RB_RING_SIZE) / 2;

		flags = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) > half ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	}
	kt_submit_flags(ctx, ring, rec, size, flags);
}

/* task->files->fdt->fd[fd], bounds-checked against max_fds.  The walk to
 * the table is direct (tp_btf: the current task is a trusted pointer); the
 * table's slot is read with a probe, as the verifier does not type a
 * pointer to a pointer. */
static __always_inline struct file *fd_file(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct files_struct *files = task->files;
	struct fdtable *fdt;
	struct file *file = NULL;

	if (!files)
		return NULL;
	fdt = files->fdt;
	if (!fdt || fd < 0 || (__u32)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
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

/* What a read record needs of the open file, read in one probe: a probe
 * costs ~50 ns on the 6.18 host whatever it copies, these fields lie within
 * the first 120 bytes there, and 6.1 has no bpf_rdonly_cast to load through
 * the untyped pointer the fd table gives.  A layout that does not fit the
 * buffer is read a field at a time. */
#define FILE_HEAD_BYTES 192

struct file_head {
	__u32 flags;
	__s64 pos;
	struct inode *inode;
};

static __always_inline int read_file_head(struct file *file, struct file_head *head)
{
	__u8 buf[FILE_HEAD_BYTES];
	__u32 flags_at = bpf_core_field_offset(struct file, f_flags);
	__u32 pos_at = bpf_core_field_offset(struct file, f_pos);
	__u32 inode_at = bpf_core_field_offset(struct file, f_inode);
	__u32 span = flags_at + sizeof(__u32);

	if (pos_at + sizeof(__s64) > span)
		span = pos_at + sizeof(__s64);
	if (inode_at + sizeof(void *) > span)
		span = inode_at + sizeof(void *);
	if (span > FILE_HEAD_BYTES) {
		head->flags = BPF_CORE_READ(file, f_flags);
		head->pos = BPF_CORE_READ(file, f_pos);
		head->inode = BPF_CORE_READ(file, f_inode);
		return 0;
	}
	if (bpf_probe_read_kernel(buf, span, file))
		return -1;
	head->flags = *(__u32 *)(buf + flags_at);
	head->pos = *(__s64 *)(buf + pos_at);
	head->inode = *(struct inode **)(buf + inode_at);
	return 0;
}

/* An inode's type and number in one probe, as read_file_head does (both
 * within its first 80 bytes on 6.1 and 6.18). */
#define INODE_HEAD_BYTES 128

struct inode_head {
	__u16 mode;
	__u64 ino;
};

static __always_inline int read_inode_head(struct inode *inode, struct inode_head *head)
{
	__u8 buf[INODE_HEAD_BYTES];
	__u32 mode_at = bpf_core_field_offset(struct inode, i_mode);
	__u32 ino_at = bpf_core_field_offset(struct inode, i_ino);
	__u32 span = mode_at + sizeof(__u16);

	if (ino_at + sizeof(__u64) > span)
		span = ino_at + sizeof(__u64);
	if (span > INODE_HEAD_BYTES) {
		head->mode = BPF_CORE_READ(inode, i_mode);
		head->ino = BPF_CORE_READ(inode, i_ino);
		return 0;
	}
	if (bpf_probe_read_kernel(buf, span, inode))
		return -1;
	head->mode = *(__u16 *)(buf + mode_at);
	head->ino = *(__u64 *)(buf + ino_at);
	return 0;
}

/* Sends the file's path the first time any traced task reads through this
 * struct file. */
static __always_inline void name_file(void *ctx, struct file *file, __u64 file_ino, __u32 dev, __u32 pid, __s32 fd)
{
	__u64 key = (__u64)file;
	__u64 ino = file_ino; /* map values from the stack: 6.1 takes no ring memory there */
	struct odirect_file_event *e;
	struct dentry *d;
	__u64 *seen;
	__u32 depth = 0;

	seen = bpf_map_lookup_elem(&named_files, &key);
	if (seen && *seen == ino)
		return;
	bpf_map_update_elem(&named_files, &key, &ino, BPF_ANY);
	e = kt_reserve(&odirect_files, sizeof(*e));
	if (!e)
		return;
	e->ino = file_ino;
	e->dev = dev;
	e->pid = pid;
	e->fd = fd;
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
	submit(ctx, &odirect_files, e, sizeof(*e));
}

/* The file part of a read record, and the file's path the first time any
 * traced task reads through it.  pos < 0: the read was at the file
 * position, which it has advanced by what it returned.  s, when given, is
 * the thread's cache of its last file: a loop over one file needs neither
 * the superblock nor the named_files lookup. */
static __always_inline void fill_file(void *ctx, struct odirect_read_event *e, struct file *file, __s64 pos, long ret,
				      struct reader_state *s)
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
	e->ino = BPF_CORE_READ(inode, i_ino);
	if (s && s->named_file == (__u64)file && s->named_inode == (__u64)inode && s->named_ino == e->ino) {
		e->dev = s->named_dev;
		return;
	}
	e->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	name_file(ctx, file, e->ino, e->dev, e->pid, e->fd);
	if (s) {
		s->named_file = (__u64)file;
		s->named_inode = (__u64)inode;
		s->named_ino = e->ino;
		s->named_dev = e->dev;
	}
}

/* Latency slot: the value itself below 4, else 4 slots per power of two
 * (user space takes a slot's midpoint: within 12.5 %). */
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

/* Counts a read that needs no record of its own in read_totals: a
 * buffered read of a regular file per (process, file, syscall), a read of
 * anything else per (process, file type, syscall).  Returns 0 when
 * counted; -1 when it must be recorded: O_DIRECT, or no room left. */
static __always_inline int count_read(void *ctx, struct reader_state *s, __u32 pid, __u16 kind, __s32 fd, struct file *file,
				      long ret, __u64 latency, __u64 now, const struct kt_cgroup_ids *cg)
{
	struct odirect_total_key key = {};
	struct odirect_total *t, *zero;
	struct file_head head;
	__u32 slot, first = 0;

	key.pid = pid;
	key.syscall = kind;
	if (file && !read_file_head(file, &head)) {
		/* a local copy: CO-RE would relocate head.inode itself */
		struct inode *inode = head.inode;

		if (head.flags & ODIRECT_O_DIRECT)
			return -1;
		struct inode_head ihead;

		if (read_inode_head(inode, &ihead))
			goto count;
		key.ftype = (ihead.mode >> 12) & 0xf;
		if (key.ftype == ODIRECT_FTYPE_REG) {
			/* the thread's last file: its name sent and its device known;
			 * pointers and inode number all match, as in fill_file */
			key.ino = ihead.ino;
			if (s && s->named_file == (__u64)file && s->named_inode == (__u64)inode && s->named_ino == key.ino) {
				key.dev = s->named_dev;
			} else {
				key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
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
	t = bpf_map_lookup_elem(&read_totals, &key);
	if (!t) {
		zero = bpf_map_lookup_elem(&zero_total, &first);
		if (!zero)
			return -1;
		kt_current_comm_btf(zero->comm);
		if (cg) {
			zero->cgroup_id = cg->v2;
			zero->cgroup_v1_id = cg->v1;
		} else {
			struct kt_cgroup_ids ids;

			kt_current_cgroups_btf(&ids);
			zero->cgroup_id = ids.v2;
			zero->cgroup_v1_id = ids.v1;
		}
		bpf_map_update_elem(&read_totals, &key, zero, BPF_NOEXIST);
		__builtin_memset(zero->comm, 0, sizeof(zero->comm));
		t = bpf_map_lookup_elem(&read_totals, &key);
		if (!t) {
			__sync_fetch_and_add(&totals_full, 1);
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
	/* clamped, then barrier_var: clang may index with a copy made before
	 * the test, whose bound 6.1's verifier does not carry over */
	slot = latency_slot(latency);
	if (slot >= ODIRECT_LAT_SLOTS)
		slot = ODIRECT_LAT_SLOTS - 1;
	barrier_var(slot);
	if (slot < ODIRECT_LAT_SLOTS)
		__sync_fetch_and_add(&t->latency[slot], 1);
	slot = ret > 0 ? kt_log2_u64(ret) + 1 : 0;
	if (slot >= ODIRECT_SIZE_SLOTS)
		slot = ODIRECT_SIZE_SLOTS - 1;
	barrier_var(slot);
	if (slot < ODIRECT_SIZE_SLOTS)
		__sync_fetch_and_add(&t->size[slot], 1);
	return 0;
}

/* Everything but the entry time is read at the exit, where the kernel has
 * just walked the same fd table, file and inode (in cache), and the
 * argument registers still hold what the syscall was called with.  pos < 0:
 * the syscall read at the file position, which it has advanced by what it
 * returned. */
static __always_inline int read_exit(void *ctx, struct reader_state *s, __u16 kind, __s32 fd, __s64 pos, __u64 count,
				     const struct iovec *iov, __u32 iovcnt, __u32 rwf, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	struct file *file = fd_file(fd);
	struct odirect_read_event *e;

	if (!all_reads && !count_read(ctx, s, pid_tgid >> 32, kind, fd, file, ret, now - s->enter_ns, now, NULL))
		goto out;
	e = kt_reserve(&odirect_reads, sizeof(*e));
	if (!e)
		goto out;
	e->ts_ns = now;
	e->latency_ns = now - s->enter_ns;
	e->ret = ret;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->fd = fd;
	e->syscall = kind;
	e->rwf = rwf;
	e->iovcnt = 0;
	e->iov_truncated = 0;
	e->pad = 0;
	kt_current_comm_btf(e->comm);
	{
		struct kt_cgroup_ids cg;

		kt_current_cgroups_btf(&cg);
		e->cgroup_id = cg.v2;
		e->cgroup_v1_id = cg.v1;
	}
	if (iov) {
		e->iovcnt = iovcnt > 0xffff ? 0xffff : iovcnt;
		e->asked = iov_bytes(iov, iovcnt, &e->iov_truncated);
	} else {
		e->asked = count;
	}
	fill_file(ctx, e, file, pos, ret, s);
	submit(ctx, &odirect_reads, e, sizeof(*e));
out:
	s->enter_ns = 0;
	return 0;
}

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

/* The raw syscall tracepoints (see kerntrace.bpf.h).  tp_btf only: task
 * storage is for tracing programs, and a kernel without BTF could not have
 * relocated this object anyway. */
SEC("tp_btf/sys_enter")
int BPF_PROG(odirect_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct reader_state *s;

	if (!read_syscall(id) || kt_compat_syscall(task))
		return 0;
	s = bpf_task_storage_get(&readers, task, NULL, 0);
	if (!s) {
		if (!kt_current_traced())
			return 0;
		s = bpf_task_storage_get(&readers, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!s)
			return 0;
	}
	s->enter_ns = bpf_ktime_get_ns();
	s->fd = regs->di;
	return 0;
}

/* On 64-bit, preadv/preadv2 take the position in pos_l alone (pos_h is shifted out
 * entirely); preadv2 with position -1 reads at the file position. */
SEC("tp_btf/sys_exit")
int BPF_PROG(odirect_sys_exit, struct pt_regs *regs, long ret)
{
	long id = regs->orig_ax;
	__u16 kind = read_syscall(id);
	struct reader_state *s;

	if (!kind) {
		if (id == KT_NR_IO_URING_ENTER) {
			s = bpf_task_storage_get(&readers, bpf_get_current_task_btf(), NULL, 0);
			if (s)
				s->uring_submit_ns = 0;
		}
		return 0;
	}
	s = bpf_task_storage_get(&readers, bpf_get_current_task_btf(), NULL, 0);
	if (!s || !s->enter_ns)
		return 0;
	/* one call site: read_exit is inlined once */
	__s32 fd = regs->di;
	__s64 pos = regs->r10;
	__u64 count = 0;
	const struct iovec *iov = NULL;
	__u32 iovcnt = 0, rwf = 0;

	if (kind == ODIRECT_SYSCALL_READ || kind == ODIRECT_SYSCALL_PREAD64)
		count = regs->dx;
	else {
		iov = (const struct iovec *)regs->si;
		iovcnt = regs->dx;
	}
	if (kind == ODIRECT_SYSCALL_READ || kind == ODIRECT_SYSCALL_READV)
		pos = -1;
	if (kind == ODIRECT_SYSCALL_PREADV2)
		rwf = regs->r9;
	return read_exit(ctx, s, kind, fd, pos, count, iov, iovcnt, rwf, ret);
}

/* ---- io_uring reads ------------------------------------------------------ */

/* IORING_OP_* (include/uapi/linux/io_uring.h, an ABI) */
#define KT_IORING_OP_READV 1
#define KT_IORING_OP_READ_FIXED 4
#define KT_IORING_OP_READ 22
/* REQ_F_FIXED_FILE is bit IOSQE_FIXED_FILE_BIT (0) of io_kiocb::flags, by
 * construction (io_uring/io_uring.h), whatever the field's width */
#define KT_REQ_F_FIXED_FILE 1

/* A traced task's io_uring read between its submission and its completion,
 * by the request's address (requests are recycled: the entry goes at
 * completion, and the LRU drops those cancelled before they ran). */
struct uring_read {
	__u64 submit_ns;
	__s64 pos;          /* -1: at the file position */
	__u64 asked;
	__u64 cgroup_id;    /* the submitter's (kt_cgroup_ids) */
	__u64 cgroup_v1_id;
	__u32 pid;
	__u32 tid;
	__s32 fd;           /* -1 for a registered (fixed) file */
	__u32 rwf;
	__u16 kind;
	__u16 iovcnt;
	__u8 iov_truncated;
	__u8 pad[3];
	__u64 bio;          /* typed_key of the last bio queued in its issue */
	char comm[ODIRECT_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct uring_read);
} uring_reads SEC(".maps");

static __always_inline __u16 uring_read_kind(__u8 opcode)
{
	switch (opcode) {
	case KT_IORING_OP_READV: return ODIRECT_SYSCALL_IO_URING_READV;
	case KT_IORING_OP_READ_FIXED: return ODIRECT_SYSCALL_IO_URING_READ_FIXED;
	case KT_IORING_OP_READ: return ODIRECT_SYSCALL_IO_URING_READ;
	}
	return 0;
}

/* Fires after the request was prepared (io_rw holds the offset, length
 * and buffer) and before its file is looked up: the fd is still in
 * req->cqe.fd.  Submission runs in the submitting thread (io_uring_enter,
 * or the ring's SQPOLL thread, a thread of the same process), so its bios
 * are credited to it like a read's. */
static __always_inline int on_uring_submit(struct io_kiocb *req)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u16 kind = uring_read_kind(req->opcode);
	struct reader_state *s;
	struct uring_read r;
	struct io_rw *rw;
	__u8 flags = 0;
	__u64 key;

	if (!kind) {
		/* a write or another op: the bios it queues serve no read */
		s = bpf_task_storage_get(&readers, bpf_get_current_task_btf(), NULL, 0);
		if (s)
			s->uring_submit_ns = 0;
		return 0;
	}
	if (!kt_current_traced())
		return 0;
	key = ptr_value(req);
	rw = (struct io_rw *)key; /* the request's first bytes (io_kiocb_to_cmd) */
	__builtin_memset(&r, 0, sizeof(r));
	r.submit_ns = bpf_ktime_get_ns();
	r.pos = BPF_CORE_READ(rw, kiocb.ki_pos);
	r.rwf = BPF_CORE_READ(rw, flags);
	r.kind = kind;
	r.pid = pid_tgid >> 32;
	r.tid = (__u32)pid_tgid;
	bpf_probe_read_kernel(&flags, 1, (void *)key + bpf_core_field_offset(struct io_kiocb, flags));
	r.fd = (flags & KT_REQ_F_FIXED_FILE) ? -1 : req->cqe.fd;
	if (kind == ODIRECT_SYSCALL_IO_URING_READV) {
		__u32 count = BPF_CORE_READ(rw, len);

		r.iovcnt = count > 0xffff ? 0xffff : count;
		r.asked = iov_bytes((const struct iovec *)BPF_CORE_READ(rw, addr), count, &r.iov_truncated);
	} else {
		r.asked = BPF_CORE_READ(rw, len);
	}
	kt_current_comm_btf(r.comm);
	{
		struct kt_cgroup_ids cg;

		kt_current_cgroups_btf(&cg);
		r.cgroup_id = cg.v2;
		r.cgroup_v1_id = cg.v1;
	}
	bpf_map_update_elem(&uring_reads, &key, &r, BPF_ANY);
	/* the bios queued while this request is issued are its own */
	s = bpf_task_storage_get(&readers, bpf_get_current_task_btf(), NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s) {
		s->uring_submit_ns = r.submit_ns;
		s->uring_req = key;
	}
	return 0;
}

/* The tracepoint's name since 6.4 (2ad57931db64 "io_uring: rename
 * trace_io_uring_submit_sqe() tracepoint"); the request is the first
 * argument under both names. */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(odirect_uring_submit_req, struct io_kiocb *req) { return on_uring_submit(req); }

SEC("tp_btf/io_uring_submit_sqe")
int BPF_PROG(odirect_uring_submit_sqe, struct io_kiocb *req) { return on_uring_submit(req); }

/* A request goes to an io-wq worker: at submission (IOSQE_ASYNC, a file
 * that cannot read without blocking) or again after its non-blocking try
 * ended in -EAGAIN.  An O_DIRECT read is retried only once every bio of its
 * try has ended, so a bio of that try still waiting for its completion never
 * reached a request (its tag allocation failed, REQ_NOWAIT): no I/O, and
 * the worker queues the read's bios again.  Only the try's last bio is
 * known (a 4 KiB read has one). */
SEC("tp_btf/io_uring_queue_async_work")
int BPF_PROG(odirect_uring_punt, struct io_kiocb *req)
{
	__u64 key = ptr_value(req);
	struct bio_slot *slot;
	struct uring_read *r;
	__u64 bio;

	r = bpf_map_lookup_elem(&uring_reads, &key);
	if (!r || !r->bio)
		return 0;
	bio = r->bio;
	r->bio = 0;
	if (!(BPF_CORE_READ(req, file, f_flags) & ODIRECT_O_DIRECT))
		return 0; /* a buffered read's readahead may still be in flight */
	slot = find_bio(bio);
	if (slot && slot->owner.uring && slot->owner.read_enter_ns == r->submit_ns && slot->owner.tid == r->tid &&
	    !slot->owner.credited)
		__sync_val_compare_and_swap(&slot->bio, bio, 0);
	return 0;
}

/* The completion is posted with req->cqe.res set; the request is the
 * second argument in every version of the tracepoint (what follows it
 * changed: the cqe fields on 6.1, a cqe pointer on 6.18), and untyped. */
SEC("tp_btf/io_uring_complete")
int BPF_PROG(odirect_uring_complete, void *ring, void *request)
{
	__u64 key = ptr_value(request);
	struct io_kiocb *req = (struct io_kiocb *)key;
	struct odirect_read_event *e;
	struct kt_cgroup_ids cg;
	struct uring_read *r;
	__u64 now;

	r = bpf_map_lookup_elem(&uring_reads, &key);
	if (!r)
		return 0;
	now = bpf_ktime_get_ns();
	cg.v2 = r->cgroup_id;
	cg.v1 = r->cgroup_v1_id;
	if (!all_reads && !count_read(ctx, NULL, r->pid, r->kind, r->fd, BPF_CORE_READ(req, file), BPF_CORE_READ(req, cqe.res),
				      now - r->submit_ns, now, &cg)) {
		bpf_map_delete_elem(&uring_reads, &key);
		return 0;
	}
	e = kt_reserve(&odirect_reads, sizeof(*e));
	if (e) {
		e->ts_ns = now;
		e->latency_ns = now - r->submit_ns;
		e->ret = BPF_CORE_READ(req, cqe.res);
		e->pid = r->pid;
		e->tid = r->tid;
		e->fd = r->fd;
		e->syscall = r->kind;
		e->rwf = r->rwf;
		e->iovcnt = r->iovcnt;
		e->iov_truncated = r->iov_truncated;
		e->pad = 0;
		e->asked = r->asked;
		e->cgroup_id = r->cgroup_id;
		e->cgroup_v1_id = r->cgroup_v1_id;
		__builtin_memcpy(e->comm, r->comm, sizeof(e->comm));
		fill_file(ctx, e, BPF_CORE_READ(req, file), r->pos, e->ret, NULL);
		submit(ctx, &odirect_reads, e, sizeof(*e));
	}
	bpf_map_delete_elem(&uring_reads, &key);
	return 0;
}

/* ---- block I/O ---------------------------------------------------------- */

/* Whole-disk dev_t, kernel encoding (MKDEV: major << 20); user space names
 * the disk from sysfs. */
static __always_inline __u32 disk_dev(struct gendisk *disk)
{
	if (!disk)
		return 0;
	return ((__u32)disk->major << 20) | (__u32)disk->first_minor;
}

static __always_inline void send_bio(void *ctx, struct bio_owner *owner, __u64 ts, __u64 issue_ns, __u64 sector, __u32 bytes,
				     __u32 dev, __u32 op, __s32 error, __u8 completed)
{
	struct odirect_block_event *e = kt_reserve(&odirect_blocks, sizeof(*e));

	if (!e)
		return;
	e->ts_ns = ts;
	e->queued_ns = owner->queued_ns;
	e->issue_ns = issue_ns;
	e->read_enter_ns = owner->read_enter_ns;
	e->file_ino = owner->file_ino;
	e->file_dev = owner->file_dev;
	e->_pad_file = 0;
	e->sector = sector;
	e->cgroup_id = owner->cgroup_id;
	e->cgroup_v1_id = owner->cgroup_v1_id;
	e->bytes = bytes;
	e->dev = dev;
	e->pid = owner->pid;
	e->tid = owner->tid;
	e->op = op;
	e->error = error;
	e->attributed = 1;
	e->completed = completed;
	e->uring_read = owner->uring;
	e->pad = 0;
	__builtin_memcpy(e->comm, owner->comm, sizeof(e->comm));
	submit(ctx, &odirect_blocks, e, sizeof(*e));
}

/* Sends a bio whose completion was never reported, by what it was queued
 * with (less what was credited of it). */
static __always_inline void send_unreported(void *ctx, struct bio_owner *owner)
{
	if (owner->traced && owner->bytes > owner->credited)
		send_bio(ctx, owner, owner->queued_ns, 0, owner->sector, owner->bytes - owner->credited, owner->dev, owner->op,
			 0, 0);
}

/* A bio at the same address as one still in the table: that one is gone
 * without a reported completion.  Otherwise the first free slot of the set,
 * else the oldest if it is stale. */
static __always_inline void store_bio(void *ctx, __u64 bio, struct bio_owner *owner)
{
	struct bio_slot *slot, *oldest = NULL;
	__u32 base = bio_set_base(bio);

	slot = find_bio(bio);
	if (slot) {
		send_unreported(ctx, &slot->owner);
		slot->owner = *owner;
		return;
	}
#pragma unroll
	for (__u32 way = 0; way < ODIRECT_BIO_WAYS; way++) {
		__u32 idx = base + way;

		slot = bpf_map_lookup_elem(&bios, &idx);
		if (!slot)
			continue;
		if (!slot->bio && !__sync_val_compare_and_swap(&slot->bio, 0, bio)) {
			slot->owner = *owner;
			return;
		}
		if (!oldest || slot->owner.queued_ns < oldest->owner.queued_ns)
			oldest = slot;
	}
	if (oldest && owner->queued_ns - oldest->owner.queued_ns > ODIRECT_BIO_STALE_NS) {
		__u64 was = oldest->bio;

		if (was && __sync_val_compare_and_swap(&oldest->bio, was, bio) == was) {
			send_unreported(ctx, &oldest->owner);
			oldest->owner = *owner; /* its bio was sent above, completed=false */
			return;
		}
	}
	__sync_fetch_and_add(&untracked_bios, 1);
}

/* The file of the read a bio is queued in, from the fd table (a bio is
 * rarer than a read: this costs per bio, not per cached read). */
static __always_inline void bio_file(struct reader_state *reader, struct file *file, struct bio_owner *owner)
{
	struct inode *inode;

	if (!file)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	owner->file_ino = BPF_CORE_READ(inode, i_ino);
	/* pointers and number all match: a struct file freed and reused for
	 * another file keeps its address */
	if (reader->named_file == (__u64)file && reader->named_inode == (__u64)inode &&
	    reader->named_ino == owner->file_ino)
		owner->file_dev = reader->named_dev;
	else
		owner->file_dev = BPF_CORE_READ(inode, i_sb, s_dev);
}

/* PF_IO_WORKER (include/linux/sched.h): an io-wq worker, a thread of the
 * process whose ring it serves */
#define KT_PF_IO_WORKER 0x00000010

/* A bio an io-wq worker queues while it issues a traced io_uring read (the
 * read was punted: see odirect_uring_punt) is the read's: the worker's
 * current work is the request's (io_kiocb::work).  The bio is given the
 * submitting thread and its name, as the read record has them, so that
 * user space joins the two and the worker's name does not split the
 * process.  task_struct::worker_private since 5.17 (e32cf5dfbe22). */
static __always_inline void worker_bio(struct bio_owner *owner)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct io_worker *worker;
	struct uring_read *r;
	__u64 work, key;

	if (!(task->flags & KT_PF_IO_WORKER) || !bpf_core_field_exists(task->worker_private))
		return;
	worker = (struct io_worker *)BPF_CORE_READ(task, worker_private);
	work = (__u64)BPF_CORE_READ(worker, cur_work);
	if (!work)
		return;
	key = work - bpf_core_field_offset(struct io_kiocb, work);
	r = bpf_map_lookup_elem(&uring_reads, &key);
	if (!r)
		return;
	owner->read_enter_ns = r->submit_ns;
	owner->uring = 1;
	owner->tid = r->tid;
	__builtin_memcpy(owner->comm, r->comm, sizeof(owner->comm));
	{
		struct file *file = BPF_CORE_READ((struct io_kiocb *)key, file);
		struct inode *inode;

		if (!file)
			return;
		inode = BPF_CORE_READ(file, f_inode);
		owner->file_ino = BPF_CORE_READ(inode, i_ino);
		owner->file_dev = BPF_CORE_READ(inode, i_sb, s_dev);
	}
}

/* block_bio_queue fires in submit_bio_noacct_nocheck, in the context of
 * whoever called submit_bio: the reader itself for O_DIRECT and readahead.
 * The file is not looked up here: user space joins a bio to the read the
 * same thread had in flight when it queued it.
 *
 * Bios are credited when their request completes, but the 6.18 host does not
 * run BPF programs for every completion (ftrace's block_rq_complete event
 * records some that no BPF program, not even a bare counting one, is run
 * for; 0.01-0.1 % of fio's requests, while block_rq_issue saw them all).
 * Such a bio keeps
 * its slot until its memory is reused for another bio: store_bio then
 * finds it and sends it, with the bytes it was queued with and no
 * completion.  What is left at the end is read by user space.  Bios of
 * bio-based disks (device mapper, md) never reach a request: their clones,
 * queued on the disks below, are the ones tracked. */
static __always_inline int on_bio_queue(void *ctx, struct bio *bio)
{
	/* bio::bi_bdev since 5.12 (see get_bio_disk in core_fixes.bpf.h); this
	 * object needs 5.17 (bpf_loop), so it is read directly, as the rest of
	 * the typed arguments are: the lines are hot, submit_bio just used them */
	struct block_device *bdev = bio->bi_bdev;
	struct gendisk *disk = bdev ? bdev->bd_disk : NULL;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct reader_state *reader;
	struct bio_owner owner;

	owner.bytes = bio->bi_iter.bi_size;
	if (!owner.bytes || !disk || !disk->queue || !disk->queue->mq_ops)
		return 0; /* flushes; bio-based disks */
	/* A reader's task storage says "traced" without the tgid lookup, and
	 * which of its reads the bio serves: user space joins the two records
	 * on (tid, entry time) as they stream, without keeping every read. */
	reader = bpf_task_storage_get(&readers, bpf_get_current_task_btf(), NULL, 0);
	owner.read_enter_ns = 0;
	owner.uring = 0;
	owner.file_ino = 0;
	owner.file_dev = 0;
	owner.pad2 = 0;
	if (reader && reader->enter_ns) {
		owner.read_enter_ns = reader->enter_ns;
		bio_file(reader, fd_file(reader->fd), &owner);
	} else if (reader && reader->uring_submit_ns) {
		owner.read_enter_ns = reader->uring_submit_ns;
		owner.uring = 1;
		/* the request is being issued: its file is looked up by now.  A bio
		 * whose completion is not traced may reach user space after its
		 * read has left the read window: the file still names it. */
		struct io_kiocb *req = (struct io_kiocb *)reader->uring_req;
		struct uring_read *r = bpf_map_lookup_elem(&uring_reads, &reader->uring_req);

		bio_file(reader, BPF_CORE_READ(req, file), &owner);
		if (r)
			r->bio = typed_key(bio);
	}
	if (reader)
		owner.traced = 1;
	else
		owner.traced = kt_current_traced();
	owner.queued_ns = bpf_ktime_get_ns();
	owner.sector = bio->bi_iter.bi_sector;
	owner.credited = 0;
	owner.dev = disk_dev(disk);
	owner.pid = pid_tgid >> 32;
	owner.tid = (__u32)pid_tgid;
	owner.op = bio->bi_opf & 0xff;
	owner.pad = 0;
	kt_current_comm_btf(owner.comm);
	if (!owner.read_enter_ns && owner.traced)
		worker_bio(&owner);
	{
		struct kt_cgroup_ids cg;

		kt_current_cgroups_btf(&cg);
		owner.cgroup_id = cg.v2;
		owner.cgroup_v1_id = cg.v1;
	}
	store_bio(ctx, typed_key(bio), &owner);
	return 0;
}

/* A request is issued to its driver (again, after a requeue): its time. */
static __always_inline int on_rq_issue(struct request *rq)
{
	__u64 key = typed_key(rq);
	struct rq_stamp *stamp = rq_slot(key);

	if (stamp) {
		stamp->issue_ns = bpf_ktime_get_ns();
		stamp->rq = key;
	}
	return 0;
}

struct rq_walk {
	void *ctx;          /* the program's, for bpf_perf_event_output */
	struct request *rq;
	struct bio *bio;
	__u64 now;
	__u64 issue_ns;     /* 0: issue not seen */
	__u32 dev;
	__u32 op;
	__s32 error;
	__u32 left;         /* bytes of this completion not yet walked */
	__u32 found;        /* 0 or 1: a count would give the verifier a new state per bio */
	__u64 bios_at;      /* ptr_value(&bios), for keys of untyped bios */
};

/* One bio of a completing request: credited to the task that submitted it
 * (a request can merge bios of several tasks).  A bio split off another
 * one is found through bi_private, which bio_chain points at the parent.
 * The parent's entry stays until every byte it was queued with is
 * credited: the requests of a split complete in any order, and the
 * remainder's own request may complete before those of the bios split off
 * it (seen on 6.18 with 1 MiB readahead bios split by the block layer,
 * under concurrent O_DIRECT reads). */
static __always_inline void credit(struct rq_walk *w, __u64 bio, struct bio *ptr, __u64 sector, __u32 size)
{
	struct bio_slot *slot = find_bio(bio);
	__u64 key = bio;

	w->left = size < w->left ? w->left - size : 0;
	if (!slot) {
		__u64 parent = (__u64)BPF_CORE_READ(ptr, bi_private);

		key = parent ? untyped_key(parent, ptr_value(&bios)) : 0;
		slot = key ? find_bio(key) : NULL;
	}
	if (!slot)
		return;
	w->found = 1;
	if (slot->owner.traced)
		send_bio(w->ctx, &slot->owner, w->now, w->issue_ns, sector, size, w->dev, w->op, w->error, 1);
	/* given back after its owner was read */
	if (__sync_add_and_fetch(&slot->owner.credited, size) >= slot->owner.bytes)
		__sync_val_compare_and_swap(&slot->bio, key, 0);
}

/* The second and later bios of a request (bpf_loop callback: the pointer
 * is untyped here, so its fields are probed). */
static long credit_next_bio(__u32 index, struct rq_walk *w)
{
	struct bio *bio = w->bio;

	if (!bio || !w->left)
		return 1;
	w->bio = BPF_CORE_READ(bio, bi_next);
	credit(w, untyped_key(ptr_value(bio), w->bios_at), bio, BPF_CORE_READ(bio, bi_iter.bi_sector),
	       BPF_CORE_READ(bio, bi_iter.bi_size));
	return 0;
}

/* Bios are credited when their request completes, and only the bios this
 * completion covers (a driver may complete a request in parts).  The trace
 * point fires before the bios are ended, so rq->bio still lists them. */
static __always_inline int on_rq_complete(void *ctx, struct request *rq, int error, unsigned int nr_bytes)
{
	__u64 rq_key = typed_key(rq);
	struct rq_stamp *stamp = rq_slot(rq_key);
	struct bio *first = rq->bio;
	struct rq_walk w = {
		.ctx = ctx,
		.rq = rq,
		.now = bpf_ktime_get_ns(),
		.op = rq->cmd_flags & 0xff,
		.error = error,
		.left = nr_bytes,
	};
	struct odirect_block_event *e;

	if (!nr_bytes)
		return 0; /* flushes and other data-less requests */
	if (stamp && stamp->rq == rq_key)
		w.issue_ns = stamp->issue_ns;
	w.dev = disk_dev(rq->q->disk);
	if (first) {
		/* the first bio read directly: most requests have one */
		w.bio = first->bi_next;
		credit(&w, typed_key(first), first, first->bi_iter.bi_sector,
		       first->bi_iter.bi_size);
		/* bpf_loop (5.17+): the callback is verified once on 6.1, and
		 * until its states repeat on 6.7+, so it branches little */
		if (w.bio && w.left) {
			w.bios_at = ptr_value(&bios);
			bpf_loop(ODIRECT_MAX_RQ_BIOS, credit_next_bio, &w, 0);
		}
	}
	if (w.found)
		return 0;
	__sync_fetch_and_add(&unattributed_requests, 1);
	__sync_fetch_and_add(&unattributed_bytes, nr_bytes);
	e = kt_reserve(&odirect_blocks, sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = w.now;
	e->sector = rq->__sector;
	e->issue_ns = w.issue_ns;
	e->bytes = nr_bytes;
	e->dev = w.dev;
	e->op = w.op;
	e->error = error;
	e->completed = 1;
	submit(ctx, &odirect_blocks, e, sizeof(*e));
	return 0;
}

/* tp_btf only: the request is read directly (a typed, trusted argument)
 * rather than a probe per field.  raw_tp would buy nothing: this object
 * needs kernel BTF for CO-RE and bpf_loop (5.17), and such kernels attach
 * tp_btf to these tracepoints. */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(odirect_bio_queue, struct bio *bio) { return on_bio_queue(ctx, bio); }

SEC("tp_btf/block_rq_issue")
int BPF_PROG(odirect_rq_issue, struct request *rq) { return on_rq_issue(rq); }

SEC("tp_btf/block_rq_complete")
int BPF_PROG(odirect_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	return on_rq_complete(ctx, rq, error, nr_bytes);
}

char LICENSE[] SEC("license") = "GPL";
