/* SPDX-License-Identifier: GPL-2.0 */
/* Events of `iotrace odirect`: one record per read-family syscall of a traced
 * task, one per block I/O it submitted (or per request nobody can be found to
 * have submitted).  Plain __u types: shared by BPF and, through BTF, Python. */
#ifndef __ODIRECT_H
#define __ODIRECT_H

#define ODIRECT_COMM_LEN 16
#define ODIRECT_NAME_LEN 64
/* path components sent per file, leaf first */
#define ODIRECT_PATH_DEPTH 12
/* iovecs summed per readv/preadv/preadv2; beyond, iov_truncated is set */
#define ODIRECT_MAX_IOV 64
/* bios walked per request at completion */
#define ODIRECT_MAX_RQ_BIOS 64
/* the table of queued bios: 2^ODIRECT_BIO_SET_BITS sets of ODIRECT_BIO_WAYS
 * slots; a slot whose bio never reported completion is taken back after
 * ODIRECT_BIO_STALE_NS when its set is full */
#define ODIRECT_BIO_SET_BITS 14
#define ODIRECT_BIO_SETS (1 << ODIRECT_BIO_SET_BITS)
#define ODIRECT_BIO_WAYS 4
#define ODIRECT_BIO_STALE_NS (120ULL * 1000000000ULL)
/* slots of the table of request issue times: 2^ODIRECT_RQ_SLOT_BITS */
#define ODIRECT_RQ_SLOT_BITS 16

/* Reads that need no record of their own (buffered reads, reads of pipes
 * and sockets) are counted in the kernel, in a hash of this many keys;
 * beyond, they are sent as records. */
#define ODIRECT_TOTALS 4096
/* latency histogram: 4 slots per power of two of nanoseconds, up to 2^40 */
#define ODIRECT_LAT_SUB_BITS 2
#define ODIRECT_LAT_SLOTS (40 << ODIRECT_LAT_SUB_BITS)
/* size histogram: a slot per power of two of bytes returned (slot 0: 0 bytes or an error) */
#define ODIRECT_SIZE_SLOTS 40

/* O_DIRECT as the kernel stores it in file->f_flags (x86, arm64 differ:
 * arm64 uses 0200000; the build is x86-only, see ARCH in the Makefile). */
#define ODIRECT_O_DIRECT 040000

/* odirect_read_event.syscall; user space names them from BTF: the
 * member's name, lower-cased, without ODIRECT_SYSCALL_ ("pread64", ...) */
enum odirect_syscall {
	ODIRECT_SYSCALL_READ = 1,
	ODIRECT_SYSCALL_PREAD64 = 2,
	ODIRECT_SYSCALL_READV = 3,
	ODIRECT_SYSCALL_PREADV = 4,
	ODIRECT_SYSCALL_PREADV2 = 5,
	/* io_uring reads, by opcode: "syscall" is then the request's kind,
	 * latency from submission to completion */
	ODIRECT_SYSCALL_IO_URING_READV = 6,
	ODIRECT_SYSCALL_IO_URING_READ_FIXED = 7,
	ODIRECT_SYSCALL_IO_URING_READ = 8,
};

struct odirect_read_event {
	__u64 ts_ns;        /* syscall exit, or io_uring completion posted; bpf_ktime_get_ns */
	__u64 latency_ns;   /* enter -> exit, or io_uring submission -> completion */
	__s64 offset;       /* file position read from; -1 when no file */
	__u64 asked;        /* count, or the sum of iov_len */
	__s64 ret;          /* bytes returned, or -errno */
	__u64 ino;
	__u64 cgroup_id;    /* the reader's cgroup v2 id (user space: its container) */
	__u64 cgroup_v1_id; /* its v1 memory cgroup's id (kerntrace.bpf.h: kt_cgroup_ids) */
	__u32 dev;          /* the file's superblock s_dev (kernel encoding) */
	__u32 pid;          /* tgid */
	__u32 tid;
	__s32 fd;           /* -1: a file registered with an io_uring */
	__u32 f_flags;      /* file->f_flags as the read ends: a later fcntl(F_SETFL) shows */
	__u32 rwf;          /* preadv2 flags (RWF_*) */
	__u16 syscall;      /* enum odirect_syscall */
	__u16 iovcnt;
	__u8 direct;        /* O_DIRECT set in f_flags */
	__u8 has_file;      /* fd resolved to an open file */
	__u8 iov_truncated; /* more than ODIRECT_MAX_IOV iovecs: asked is a lower bound */
	__u8 pad;
	char comm[ODIRECT_COMM_LEN];
};

/* odirect_total_key.ftype: the file's type (S_IFMT >> 12 of i_mode);
 * ODIRECT_FTYPE_NONE: the fd named no open file. */
enum odirect_ftype {
	ODIRECT_FTYPE_NONE = 0,
	ODIRECT_FTYPE_FIFO = 1,
	ODIRECT_FTYPE_CHR = 2,
	ODIRECT_FTYPE_DIR = 4,
	ODIRECT_FTYPE_BLK = 6,
	ODIRECT_FTYPE_REG = 8,
	ODIRECT_FTYPE_LNK = 10,
	ODIRECT_FTYPE_SOCK = 12,
};

/* Reads counted in the kernel (all but O_DIRECT ones, unless every read is
 * recorded): per process, file (regular files; dev and ino 0 for the
 * others, counted per type) and syscall. */
struct odirect_total_key {
	__u64 ino;
	__u32 dev;
	__u32 pid;          /* tgid */
	__u16 ftype;        /* enum odirect_ftype */
	__u16 syscall;      /* enum odirect_syscall */
	__u32 pad;
};

struct odirect_total {
	__u64 reads;
	__u64 ok_reads;     /* returned data */
	__u64 bytes;
	__u64 errors;
	__u64 latency_ns;   /* sum */
	__u64 last_ns;      /* the last read's end */
	__u64 cgroup_id;    /* the process's cgroups at its first such read */
	__u64 cgroup_v1_id;
	__u32 latency[ODIRECT_LAT_SLOTS];
	__u32 size[ODIRECT_SIZE_SLOTS];
	char comm[ODIRECT_COMM_LEN];
};

/* The path of a file, sent the first time a traced task reads through a
 * given struct file: dentry names from the file up to the root of its
 * filesystem (user space prefixes the mount point of dev).  bpf_d_path is
 * not allowed in tracepoint programs. */
struct odirect_file_event {
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__s32 fd;           /* -1: a file registered with an io_uring */
	__u16 depth;        /* components filled in names, leaf first */
	__u8 truncated;     /* deeper than ODIRECT_PATH_DEPTH */
	__u8 pad;
	char names[ODIRECT_PATH_DEPTH][ODIRECT_NAME_LEN];
};

/* One record per bio of a traced task, sent when the request carrying it
 * completes (and one per completing request nobody was seen submitting);
 * see on_bio_queue in odirect.bpf.c for bios whose completion is not seen. */
struct odirect_block_event {
	__u64 ts_ns;        /* request completion, bpf_ktime_get_ns */
	__u64 queued_ns;    /* bio submitted (block_bio_queue); 0 when unattributed */
	__u64 issue_ns;     /* request issued to the driver; 0 when not seen */
	__u64 file_ino;     /* the file of the read syscall or io_uring read it served (0: none) */
	__u32 file_dev;
	__u32 _pad_file;
	__u64 read_enter_ns; /* entry of the read syscall its submitter was in when it
	                      * queued the bio, or the submission of the io_uring
	                      * read it last submitted in this io_uring_enter (that
	                      * odirect_read_event has ts_ns - latency_ns equal to
	                      * it); 0: none */
	__u64 sector;       /* of this bio (of the request when unattributed) */
	__u64 cgroup_id;    /* the submitter's cgroups (0 when unattributed) */
	__u64 cgroup_v1_id;
	__u32 bytes;        /* of the bio (completed by this call when unattributed) */
	__u32 dev;          /* whole-disk dev_t (kernel encoding) */
	__u32 pid;          /* submitter's tgid; 0 when unattributed */
	__u32 tid;
	__u32 op;           /* REQ_OP_*: 0 read, 1 write, ... */
	__s32 error;        /* blk_status_t of the completion */
	__u8 attributed;    /* the bio was seen at submission */
	__u8 completed;     /* 0: the kernel never reported its completion (ts_ns is then when it was queued) */
	__u8 uring_read;    /* read_enter_ns is the submission of an io_uring read (they complete in any order) */
	__u8 pad;
	char comm[ODIRECT_COMM_LEN];
};

#endif /* __ODIRECT_H */
