"""``iotrace odirect``: every read-family syscall and io_uring read of the
traced processes, whether it went around the page cache (O_DIRECT, read from
the open file at the time of the read), and the block I/O those processes
submitted.

The BPF side (bpf/odirect.bpf.c) sends one record per read (at the syscall's
exit, or when an io_uring read's completion is posted), one per open file's
path, and one per bio when its request completes; this module names files,
joins bios to the reads they served, prints the live lines, builds the
frames and the summary, and hands the frames to
:mod:`kerntrace.analysis.odirect`.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO
from ..analysis.arrays import unique

import click

from .engine import BpfTracer, Hook, require_bpf_environment, target_from_options
from .engine.backend import BackendRequest
from .engine.bcc import BccHook
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from ..analysis.log2 import print_histograms
from ..analysis.odirect import ODirectStats, findings as odirect_findings, per_file, per_process
from ..analysis.report import format_table, print_findings, run_line
from .engine.labels import container_cells, container_header
from .engine.records import Records, records_of

if TYPE_CHECKING:
    from .engine.metrics import ContainerOf, Exporter, Family, Series
    import numpy as np

    from ..analysis.findings import Finding

__all__ = ["ODirectTool", "PathNames", "block_latencies", "block_op_name", "command", "dev_name",
           "disk_name", "print_report"]

FILE_RING = "odirect_files"
READ_RING = "odirect_reads"
BLOCK_RING = "odirect_blocks"
TOTALS_STREAM = "odirect_totals"   # the kernel's counts, read each second (tick)
FTYPE_REG = 8                      # enum odirect_ftype: a regular file

# REQ_OP_* (include/linux/blk_types.h); values are ABI-stable for the block tracepoints.
_BLOCK_OPS = {0: "R", 1: "W", 2: "F", 3: "D", 5: "SE", 9: "WZ"}

HOOKS = (
    # one program each on the raw syscall tracepoints, filtering the
    # read-family numbers itself (see bpf/odirect.bpf.c for why)
    Hook("read syscalls enter", ("odirect_sys_enter",)),
    Hook("read syscalls exit", ("odirect_sys_exit",)),
    Hook("bio submission", ("odirect_bio_queue",)),
    Hook("request issue", ("odirect_rq_issue",)),
    Hook("request completion", ("odirect_rq_complete",)),
    # io_uring reads: the submission tracepoint's name before and since 6.4;
    # optional, a kernel without io_uring still traces syscalls
    Hook("io_uring read submission", ("odirect_uring_submit_req", "odirect_uring_submit_sqe"), required=False),
    Hook("io_uring read completion", ("odirect_uring_complete",), required=False),
    # a read handed to an io-wq worker: its bios are queued by the worker
    Hook("io_uring read punted", ("odirect_uring_punt",), required=False),
)

# The same for the BCC backend (bpf/odirect.bcc.c), for kernels without BTF:
# raw tracepoints (4.17) where there are, else the classic syscall
# tracepoints and kprobes on the block functions that fire the tracepoints.
BCC_HOOKS = (
    BccHook("read syscalls enter", (("raw_tracepoint", "sys_enter", "odirect_sys_enter"),
                                    ("tracepoint", "raw_syscalls/sys_enter", "odirect_sys_enter_tp"))),
    BccHook("read syscalls exit", (("raw_tracepoint", "sys_exit", "odirect_sys_exit"),
                                   ("tracepoint", "raw_syscalls/sys_exit", "odirect_sys_exit_tp"))),
    BccHook("bio submission", (("raw_tracepoint", "block_bio_queue", "odirect_bio_queue"),
                               ("kprobe", "submit_bio_checks", "odirect_bio_queue_kp"),
                               ("kprobe", "generic_make_request_checks", "odirect_bio_queue_kp"))),
    BccHook("request issue", (("raw_tracepoint", "block_rq_issue", "odirect_rq_issue"),
                              ("kprobe", "blk_mq_start_request", "odirect_rq_issue_kp"))),
    BccHook("request completion", (("raw_tracepoint", "block_rq_complete", "odirect_rq_complete"),
                                   ("kprobe", "blk_update_request", "odirect_rq_complete_kp"))),
    # io_uring reads (the program has them on 6.0+, where io_kiocb is in a header)
    BccHook("io_uring read submission", (("raw_tracepoint", "io_uring_submit_req", "odirect_uring_submit_req"),
                                         ("raw_tracepoint", "io_uring_submit_sqe", "odirect_uring_submit_sqe")),
            required=False),
    BccHook("io_uring read completion", (("raw_tracepoint", "io_uring_complete", "odirect_uring_complete"),),
            required=False),
    BccHook("io_uring read punted", (("raw_tracepoint", "io_uring_queue_async_work", "odirect_uring_punt"),),
            required=False),
    # the request an io-wq worker issues (struct io_worker is in no header):
    # its bios are the read's until io_wq_submit_work returns
    BccHook("io-wq worker issues a read", (("kprobe", "io_wq_submit_work", "odirect_uring_worker"),),
            required=False),
    BccHook("io-wq worker done", (("kretprobe", "io_wq_submit_work", "odirect_uring_worker_done"),),
            required=False),
)

HEADER = (  # after the TIME column; CONTAINER before FILE on hosts with containers
    f"{'COMM':<16} {'PID':>7} {'TID':>7} {'EVENT':<8} {'FD':>4} {'D':<1} "
    f"{'OFFSET':>12} {'BYTES':>9} {'RET':>9} {'LAT(ms)':>8} "
)


def block_op_name(op: int) -> str:
    return _BLOCK_OPS.get(op, str(op))


@functools.lru_cache(maxsize=64)
def disk_name(dev: int) -> str:
    """Kernel-encoded dev_t of a disk -> its name (vda), from sysfs."""
    try:
        with open(f"/sys/dev/block/{dev >> 20}:{dev & 0xFFFFF}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return dev_name(dev)


def dev_name(dev: int) -> str:
    """Kernel-encoded dev_t (major << 20 | minor) -> "major:minor"."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


class PathNames:
    """Names the file behind (pid, fd, inode).

    bpf_d_path is not allowed in tracepoint programs.  The BPF side sends
    each open file's dentry names once (up to the root of its filesystem);
    the mount point of its device, from /proc/self/mountinfo, completes the
    path.  A file never named that way (its record lost) is looked up in
    /proc/PID/fd/FD while the process lives, checked against the inode since
    fds are reused; failing both, it shows as "dev:ino"."""

    def __init__(self) -> None:
        self._by_inode: dict[tuple[int, int], str] = {}
        self._by_fd: dict[tuple[int, int, int], str] = {}
        self._mounts: Optional[dict[int, str]] = None

    def learn(self, batch: "np.ndarray[Any, Any]") -> None:
        """Records of the odirect_files ring."""
        for dev, ino, depth, truncated, names in zip(batch["dev"].tolist(), batch["ino"].tolist(),
                                                     batch["depth"].tolist(), batch["truncated"].tolist(),
                                                     batch["names"].tolist()):
            parts = [n.split(b"\0", 1)[0].decode("utf-8", "replace") for n in names[:depth]]
            self._by_inode[(dev, ino)] = self.join(dev, ino, parts, bool(truncated))

    def join(self, dev: int, ino: int, leaf_first: list[str], truncated: bool) -> str:
        parts = list(reversed(leaf_first))
        if parts and parts[0] == "/":
            parts = parts[1:]
        rel = "/".join(parts)
        if truncated:
            return ".../" + rel
        mount = self.mount_point(dev)
        if mount is None:  # pipes, sockets, anon inodes ([timerfd]): no path to show
            if not rel:
                return f"[{dev_name(dev)}:{ino}]"
            return rel if rel.startswith("[") else f"[{dev_name(dev)}]/{rel}"
        return mount.rstrip("/") + "/" + rel if rel else mount

    def mount_point(self, dev: int) -> Optional[str]:
        if self._mounts is None:
            self._mounts = {}
            try:
                with open("/proc/self/mountinfo") as f:
                    for line in f:
                        fields = line.split()
                        major, minor = (int(x) for x in fields[2].split(":"))
                        key = (major << 20) | minor
                        if fields[3] == "/" and key not in self._mounts:
                            self._mounts[key] = fields[4].replace("\\040", " ")
            except OSError:
                pass
        return self._mounts.get(dev)

    def knows(self, dev: int, ino: int) -> bool:
        return (dev, ino) in self._by_inode

    def knows_files(self, devs: "np.ndarray[Any, Any]", inos: "np.ndarray[Any, Any]") -> bool:
        known = self._by_inode
        return all((d, i) in known for d, i in zip(devs.tolist(), inos.tolist()))

    def knows_all(self, batch: "np.ndarray[Any, Any]") -> bool:
        known = self._by_inode
        return all(not has or (dev, ino) in known for dev, ino, has in zip(
            batch["dev"].tolist(), batch["ino"].tolist(), batch["has_file"].tolist()))

    def name(self, pid: int, fd: int, dev: int, ino: int, has_file: bool) -> str:
        if not has_file:
            return ""
        path = self._by_inode.get((dev, ino))
        if path is not None:
            return path
        key = (pid, fd, ino)
        path = self._by_fd.get(key)
        if path is None:
            path = self._readlink(pid, fd, dev, ino)
            if path is None:   # not kept: the file's record may still come
                return f"[{dev_name(dev)}:{ino}]"
            self._by_fd[key] = path
        return path

    @staticmethod
    def _readlink(pid: int, fd: int, dev: int, ino: int) -> Optional[str]:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            st = os.stat(link)
            path = os.readlink(link)
        except OSError:
            return None
        if st.st_ino != ino or os.major(st.st_dev) != dev >> 20 or os.minor(st.st_dev) != dev & 0xFFFFF:
            return None  # the fd now names another file
        return path


def block_latencies(queued: "np.ndarray[Any, Any]", issued: "np.ndarray[Any, Any]",
                   completed: "np.ndarray[Any, Any]") -> tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]:
    """Bio records' time stamps -> (queue_ns, device_ns) as float arrays, NaN
    where a stamp is missing (issue not seen; bio never seen queued)."""
    import numpy as np

    q = queued.astype(np.float64)
    i = issued.astype(np.float64)
    c = completed.astype(np.float64)
    q[queued == 0] = np.nan
    i[issued == 0] = np.nan
    queue = i - q
    device = c - i
    # io_start_time_ns may come from the submitter's plug, whose clock is
    # read once per plug (blk_time_get_ns): before this bio was queued
    queue[queue < 0] = 0.0
    return queue, device


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Names:
    """A string per record as (codes, labels): a batch reads few files."""

    __slots__ = ("codes", "labels", "_list")

    def __init__(self, codes: "np.ndarray[Any, Any]", labels: list[str]) -> None:
        self.codes = codes
        self.labels = labels
        self._list: Optional[list[str]] = None

    @property
    def list(self) -> list[str]:
        if self._list is None:
            labels = self.labels
            self._list = [labels[c] for c in self.codes.tolist()]
        return self._list

    def __getitem__(self, i: int) -> str:
        return self.labels[int(self.codes[i])]

    def compact(self) -> "Names":
        """Only the labels in use, in a new code space."""
        used, codes = unique(self.codes, return_inverse=True)
        return Names(codes.reshape(-1), [self.labels[u] for u in used.tolist()])

    def take(self, mask: "np.ndarray[Any, Any]") -> "Names":
        return Names(self.codes[mask], self.labels)

    @staticmethod
    def concat(parts: "Sequence[Names]") -> "Names":
        import numpy as np

        index: dict[str, int] = {}
        chunks = []
        for part in parts:
            remap = np.array([index.setdefault(label, len(index)) for label in part.labels], dtype=np.int64)
            chunks.append(remap[part.codes] if len(part.labels) else part.codes.astype(np.int64))
        return Names(np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64), list(index))


class _Reads:
    """A batch of read records as update() hands it to the sinks: the ring
    records (live lines, JSON) with their files, and their table
    (aggregates, the trace)."""

    __slots__ = ("batch", "names", "table")

    def __init__(self, batch: "np.ndarray[Any, Any]", names: Names, table: Records) -> None:
        self.batch = batch
        self.names = names
        self.table = table

    @property
    def paths(self) -> list[str]:
        return self.names.list


class _Blocks(_Reads):
    """A batch of bio records, each with the file of the read it served."""


# Reads remembered per thread for the bios that complete after them
# (readahead), and how long a bio waits for the record of its read.
RECENT_READS_PER_TID = 16
PENDING_BIO_S = 60.0
# how long a bio whose file the kernel gave waits for that file's name
FILE_WAIT_S = 2.0
_GOLDEN = 0x9E3779B97F4A7C15


class ReadWindow:
    """The reads a bio may have been queued in, as they stream: every read
    drained since the last batch of bios, and the last few of each thread
    (readahead completes after its read).  A bio names its read by thread
    and entry time (read_enter_ns, set by the BPF side); looked up in bulk.

    One contiguous array per column, not a packed structured array: numpy
    loops over an unaligned uint64 field (ufunc.at, sorts) crashed the
    interpreter under QEMU's 6.1 guest."""

    COLUMNS = (("tid", "<u4"), ("enter", "<u8"), ("exit", "<u8"), ("path", "<i8"))

    def __init__(self) -> None:
        import numpy as np

        self.cols: dict[str, "np.ndarray[Any, Any]"] = {n: np.zeros(0, dtype=t) for n, t in self.COLUMNS}
        self._fresh: list[dict[str, "np.ndarray[Any, Any]"]] = []
        self.labels: list[str] = []
        self._code: dict[str, int] = {}
        self.last_enter: dict[int, int] = {}   # tid -> entry of its latest read seen
        self.newest_ns = 0

    def add(self, batch: "np.ndarray[Any, Any]", names: Names) -> None:
        import numpy as np

        if not len(batch):
            return
        remap = np.array([self._code.setdefault(label, len(self._code)) for label in names.labels], dtype=np.int64)
        if len(self._code) > len(self.labels):
            self.labels.extend(list(self._code)[len(self.labels):])
        exit_ns = np.ascontiguousarray(batch["ts_ns"], dtype=np.uint64)
        rows = {
            "tid": np.ascontiguousarray(batch["tid"], dtype=np.uint32),
            "enter": exit_ns - np.ascontiguousarray(batch["latency_ns"], dtype=np.uint64),
            "exit": exit_ns,
            "path": remap[names.codes] if len(remap) else np.full(len(batch), -1, dtype=np.int64),
        }
        self._fresh.append(rows)
        # the latest entry per thread: sorted by (tid, enter), the last of each tid
        order = np.lexsort((rows["enter"], rows["tid"]))
        tid, enter = rows["tid"][order], rows["enter"][order]
        ends = np.r_[np.flatnonzero(tid[1:] != tid[:-1]), len(tid) - 1]
        last = self.last_enter
        for t, e in zip(tid[ends].tolist(), enter[ends].tolist()):
            if e > last.get(t, -1):
                last[t] = e
        self.newest_ns = max(self.newest_ns, int(exit_ns.max()))

    def _all(self) -> dict[str, "np.ndarray[Any, Any]"]:
        import numpy as np

        if self._fresh:
            self.cols = {n: np.concatenate([self.cols[n]] + [f[n] for f in self._fresh]) for n, _t in self.COLUMNS}
            self._fresh = []
        return self.cols

    def _keep(self, mask: "np.ndarray[Any, Any]") -> None:
        self.cols = {n: c[mask] for n, c in self.cols.items()}

    def lookup(self, bios: "np.ndarray[Any, Any]", final: bool) -> tuple[Names, "np.ndarray[Any, Any]"]:
        """The file of each bio ("" for none), and which bios wait for their
        read's record, not drained yet (a bio completes before the read
        that waits on it; io_uring reads complete in any order)."""
        import numpy as np

        rows = self._all()
        n = len(bios)
        enter = np.ascontiguousarray(bios["read_enter_ns"], dtype=np.uint64)
        tid = np.ascontiguousarray(bios["tid"], dtype=np.uint32)
        queued = np.ascontiguousarray(bios["queued_ns"], dtype=np.uint64)
        codes = np.full(n, -1, dtype=np.int64)
        found = np.zeros(n, dtype=bool)
        size = len(rows["tid"])
        if size and n:
            keys = (rows["tid"].astype(np.uint64) * np.uint64(_GOLDEN)) ^ rows["enter"]
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            wanted = (tid.astype(np.uint64) * np.uint64(_GOLDEN)) ^ enter
            cand = order[np.searchsorted(sorted_keys, wanted).clip(max=size - 1)]
            found = (enter != 0) & (rows["tid"][cand] == tid) & (rows["enter"][cand] == enter)
            # an SQPOLL thread keeps its last submission: a bio queued after
            # that read completed is not the read's
            mine = found & (queued <= rows["exit"][cand])
            codes = np.where(mine, rows["path"][cand], -1)
        wait = np.zeros(n, dtype=bool)
        if not final:
            horizon = self.newest_ns - int(PENDING_BIO_S * 1e9)
            latest = np.full(n, -1, dtype=np.int64)
            for t in set(tid.tolist()):
                latest[tid == t] = self.last_enter.get(t, -1)
            # a thread's syscall reads end in order of entry: one seen since
            # means this bio's read record was lost
            uring = np.ascontiguousarray(bios["uring_read"]) != 0
            wait = ((enter != 0) & ~found & (queued > horizon)
                    & (uring | (latest < enter.astype(np.int64))))
        # code -1 (no file) becomes the label ""
        return Names(codes + 1, [""] + self.labels).compact(), wait

    def trim(self) -> None:
        """After a batch of bios: the last reads of each thread stay, and
        threads quiet for a minute are forgotten."""
        import numpy as np

        rows = self._all()
        if len(rows["tid"]) > RECENT_READS_PER_TID:
            order = np.lexsort((rows["enter"], rows["tid"]))
            self.cols = rows = {n: c[order] for n, c in rows.items()}
            tid = rows["tid"]
            change = tid[1:] != tid[:-1]
            ends = np.r_[np.flatnonzero(change), len(tid) - 1]
            group = np.r_[0, np.cumsum(change)]
            self._keep(ends[group] - np.arange(len(tid)) < RECENT_READS_PER_TID)
        if len(self.last_enter) > 4 * 4096:
            horizon = self.newest_ns - int(PENDING_BIO_S * 1e9)
            quiet = {t for t, e in self.last_enter.items() if e < horizon}
            for t in quiet:
                del self.last_enter[t]
            if quiet:
                self._keep(~np.isin(self.cols["tid"], np.fromiter(quiet, dtype=np.uint32)))
        if len(self._code) > 4 * 4096:  # many files: labels of reads still in the window only
            path = self.cols["path"]
            used = sorted(set(path.tolist()) - {-1})
            self.labels = [self.labels[c] for c in used]
            self._code = {label: i for i, label in enumerate(self.labels)}
            remap = np.full(max(used, default=0) + 2, -1, dtype=np.int64)
            remap[np.array(used, dtype=np.int64)] = np.arange(len(used))
            self.cols["path"] = np.where(path >= 0, remap[path.clip(min=0)], -1)


class ODirectTool(Tool):
    """Reads (O_DIRECT or not), their files, and the block I/O they cause."""

    name = "odirect"
    # --backend bcc (kernels without BTF, where the ip6mr bug lives): bpf/odirect.bcc.c
    bcc_program = "odirect"
    bcc_hooks = BCC_HOOKS

    # the kernel's counts of reads without a record of their own, read each second
    tick_interval = 1.0

    def __init__(self, ring_bytes: Optional[int] = None, all_reads: bool = False) -> None:
        self.ring_bytes = ring_bytes
        self.all_reads = all_reads
        self._totals_seen: dict[bytes, Any] = {}
        self.ftypes: dict[int, str] = {}
        self.totals_full = 0
        self.tracer: Optional[BpfTracer] = None
        self.clock: Optional[Clock] = None
        self.offset_ns = 0
        self.syscalls: dict[int, str] = {}
        self.paths = PathNames()
        self.stats = ODirectStats()
        self._who_cache: dict[tuple[bytes, int, int], str] = {}
        self._call_cache: dict[tuple[int, int, int], str] = {}
        self._op_cache: dict[tuple[int, int], tuple[str, str]] = {}
        # the join of bios to reads, as they stream (see bpf/odirect.h: read_enter_ns)
        self.window = ReadWindow()
        self._pending: list[tuple["np.ndarray[Any, Any]", Names]] = []   # bios waiting for their read
        self._ready: list[tuple["np.ndarray[Any, Any]", Names]] = []     # bios whose read came since
        self.newest_bio_ns = 0
        self.unattributed_requests = 0
        self.unattributed_bytes = 0
        self.untracked_bios = 0
        # O_DIRECT reads and bytes per (cgroup_id, cgroup_v1_id), for --prometheus:
        # named only when the series are rendered
        self.direct_by_cgroup: dict[tuple[int, int], list[int]] = {}
        self._metrics_on = False

    @classmethod
    def from_trace(cls, options: Mapping[str, Any]) -> "ODirectTool":
        return cls(all_reads=bool(options.get("all_reads", False)))

    def trace_options(self) -> dict[str, Any]:
        return {"all_reads": self.all_reads}

    def objects(self) -> Sequence[ObjectSpec]:
        # files first: a read's file is named before the read is drained
        return [ObjectSpec("odirect", HOOKS, rings={FILE_RING: "odirect_file_event", READ_RING: "odirect_read_event",
                                                    BLOCK_RING: "odirect_block_event"},
                           options={"all_reads": self.all_reads}, ring_bytes=self.ring_bytes)]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        self.tracer = tracers["odirect"]
        # odirect_read_event.syscall -> "read", "pread64", ... "io_uring_readv" (enum odirect_syscall)
        self.syscalls = self.tracer.btf.enum_names("odirect_syscall")
        self.ftypes = self.tracer.btf.enum_names("odirect_ftype")

    def started(self, clock: Clock) -> None:
        self.clock = clock
        self.offset_ns = clock.offset_ns

    # -- while tracing -----------------------------------------------------------

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> Any:
        if ring == FILE_RING:
            self.paths.learn(batch)
            if self._pending:
                self._resolve_pending()  # bios of files named just now
            return None
        if ring == READ_RING:
            names = self._name_files(batch)
            table = self.read_table(batch, names)
            self.stats.add_reads(table)
            self._count_direct(batch)
            self.window.add(batch, names)
            if self._pending:
                self._resolve_pending()
            return _Reads(batch, names, table)
        return self._blocks(batch, final=False)

    def _count_direct(self, batch: "np.ndarray[Any, Any]") -> None:
        import numpy as np

        direct = batch[batch["direct"] != 0]
        if not len(direct):
            return
        pairs = np.stack([direct["cgroup_id"].astype(np.uint64), direct["cgroup_v1_id"].astype(np.uint64)], axis=1)
        uniques, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        nbytes = np.bincount(inverse, weights=direct["ret"].astype(np.int64).clip(min=0), minlength=len(uniques))
        reads = np.bincount(inverse, minlength=len(uniques))
        if self._metrics_on:
            from .engine.metrics import name_cgroups

            name_cgroups(uniques[:, 0].tolist(), uniques[:, 1].tolist())
        for (a, b), n, size in zip(uniques.tolist(), reads.tolist(), nbytes.tolist()):
            row = self.direct_by_cgroup.setdefault((a, b), [0, 0])
            row[0] += n
            row[1] += int(size)

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        self._metrics_on = True
        reads: dict[tuple[str, ...], float] = {}
        nbytes: dict[tuple[str, ...], float] = {}
        for (a, b), (n, size) in self.direct_by_cgroup.items():
            key = (containers.cgroup(a, b),)
            reads[key] = reads.get(key, 0) + n
            nbytes[key] = nbytes.get(key, 0) + size
        return [series.per_container("kerntrace_odirect_reads_total", "counter",
                                     "O_DIRECT reads (read, pread, readv, io_uring) of the container's tasks.", reads),
                series.per_container("kerntrace_odirect_read_bytes_total", "counter",
                                     "Bytes the container's O_DIRECT reads returned.", nbytes)]

    def _blocks(self, batch: "np.ndarray[Any, Any]", final: bool) -> Optional[_Blocks]:
        """Bios to the sinks with their files: those of this batch whose read
        has been seen (or that served none), and earlier ones whose read
        has come since; the others wait for their read."""
        import numpy as np

        if final:
            self._resolve_pending(final=True)
        names, wait = self._lookup(batch, final)
        self.window.trim()  # the reads drained before this batch have been looked at
        if wait.any():
            self._pending.append((batch[wait], names.take(wait)))
            keep = ~wait
            batch, names = batch[keep], names.take(keep)
        if self._ready:
            batch = np.concatenate([b for b, _n in self._ready] + [batch])
            names = Names.concat([n for _b, n in self._ready] + [names])
            self._ready = []
        if not len(batch):
            return None
        table = self.block_table(batch, names)
        self.stats.add_blocks(table)
        return _Blocks(batch, names, table)

    def _lookup(self, bios: "np.ndarray[Any, Any]", final: bool) -> tuple[Names, "np.ndarray[Any, Any]"]:
        """Each bio's file, and which bios wait for what names it."""
        names, wait = self.window.lookup(bios, final)
        return self._files_from_kernel(bios, names, wait, final)

    def _files_from_kernel(self, bios: "np.ndarray[Any, Any]", names: Names,
                           wait: "np.ndarray[Any, Any]", final: bool) -> tuple[Names, "np.ndarray[Any, Any]"]:
        """Bios queued in a read syscall carry its file (file_dev, file_ino,
        read from the fd when the bio was queued), named by inode once the
        file's record is in: the read that names it ends after its bios
        complete, so a bio of a file not named yet waits for that record
        (FILE_WAIT_S at most).  The read window serves io_uring reads."""
        import numpy as np

        ino = np.ascontiguousarray(bios["file_ino"])
        known = np.flatnonzero(ino != 0)
        if not len(known):
            return names, wait
        if len(ino):
            self.newest_bio_ns = max(self.newest_bio_ns, int(np.ascontiguousarray(bios["queued_ns"]).max()))
        dev = np.ascontiguousarray(bios["file_dev"])
        if not self.paths.knows_files(dev[known], ino[known]):
            self._learn_files()
        pairs = list(zip(dev[known].tolist(), ino[known].tolist()))
        missing = {p for p in set(pairs) if not self.paths.knows(*p)}
        unnamed = np.array([p in missing for p in pairs], dtype=bool) if missing else np.zeros(len(known), bool)
        if unnamed.any() and not final:
            queued = np.ascontiguousarray(bios["queued_ns"])[known]
            hold = unnamed & (queued.astype(np.int64) > self.newest_bio_ns - int(FILE_WAIT_S * 1e9))
            wait = wait.copy()
            wait[known[hold]] = True
            known = known[~hold]
            if not len(known):
                return names, wait
        labels = list(names.labels)
        index = {label: i for i, label in enumerate(labels)}
        codes = names.codes.copy()
        by_file: dict[tuple[int, int], int] = {}
        for i, dev, ino in zip(known.tolist(), bios["file_dev"][known].tolist(), bios["file_ino"][known].tolist()):
            code = by_file.get((dev, ino))
            if code is None:
                path = self.paths.name(int(bios["pid"][i]), -1, dev, ino, True)
                code = by_file[(dev, ino)] = index.setdefault(path, len(index))
                if code == len(labels):
                    labels.append(path)
            codes[i] = code
        wait = wait.copy()
        wait[known] = False
        return Names(codes, labels).compact(), wait

    def _learn_files(self) -> None:
        """The file records in the ring now, ahead of the engine's next drain."""
        reader = self.tracer.readers.get(FILE_RING) if self.tracer is not None else None
        if reader is not None:
            self.paths.learn(reader.drain())

    def _resolve_pending(self, final: bool = False) -> None:
        """After a batch of reads: the waiting bios whose read came, or that
        can wait no more, are ready for the next batch of bios."""
        still = []
        for bios, _names in self._pending:
            names, wait = self._lookup(bios, final)
            if wait.all():
                still.append((bios, names))
                continue
            if wait.any():
                still.append((bios[wait], names.take(wait)))
            done = ~wait
            self._ready.append((bios[done], names.take(done)))
        self._pending = still

    def _name_files(self, batch: "np.ndarray[Any, Any]") -> Names:
        import numpy as np

        if not self.paths.knows_all(batch):
            # A file record committed after the file ring was drained and
            # before this read ring was: it is in the ring now.
            self._learn_files()
        # one lookup per distinct (pid, fd, file): a batch reads few files.
        # Their fields mixed into one word (np.unique of a structured array
        # sorts slowly), checked exactly after.
        fields = [batch[name].astype(np.uint64) for name in ("pid", "fd", "dev", "ino", "has_file")]
        mixed = fields[0].copy()
        for f in fields[1:]:
            mixed *= np.uint64(_GOLDEN)
            mixed ^= f
        _u, first, inverse = unique(mixed, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if not all((f[first][inverse] == f).all() for f in fields):  # merged by the mix: the exact way
            keys = np.empty(len(batch), dtype=[(n, "<u8") for n in ("pid", "fd", "dev", "ino", "has_file")])
            for name, f in zip(keys.dtype.names, fields):
                keys[name] = f
            _u, first, inverse = unique(keys, return_index=True, return_inverse=True)
            inverse = inverse.reshape(-1)
        name = self.paths.name
        labels = [name(int(batch["pid"][i]), int(batch["fd"][i]), int(batch["dev"][i]), int(batch["ino"][i]),
                       bool(batch["has_file"][i])) for i in first.tolist()]
        return Names(inverse, labels)

    def read_table(self, batch: "np.ndarray[Any, Any]", names: Names) -> Records:
        """Read records as the trace keeps them: the struct's fields, the
        syscall by name, the file's path, bytes and errno."""
        import numpy as np

        records = records_of(batch, self.offset_ns, enums={"syscall": self.syscalls},
                             bools=("direct", "has_file", "iov_truncated"))
        ret = batch["ret"].astype(np.int64)
        names = names.compact()
        return (records.add_strings("path", names.codes, names.labels)
                .add("bytes", ret.clip(min=0))
                .add("errno", (-ret).clip(min=0).astype(np.int32)))

    def block_table(self, bios: "np.ndarray[Any, Any]", names: Names) -> Records:
        """Bio records as the trace keeps them: the struct's fields, the op
        by name, the disk, queue and device time (null: not known), and the
        file."""
        records = records_of(bios, self.offset_ns, enums={"op": _BLOCK_OPS}, bools=("attributed", "completed"))
        queue, device = block_latencies(bios["queued_ns"], bios["issue_ns"], bios["ts_ns"])
        return (records.add_string_list("disk", [disk_name(d) for d in bios["dev"].tolist()])
                .add("queue_ns", queue, nullable=True)
                .add("device_ns", device, nullable=True)
                .add_strings("path", names.codes, names.labels))

    def trace_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[tuple[str, Records]]:
        if ring == READ_RING:
            return [("read", events.table)]
        if ring == BLOCK_RING:
            return [("block", events.table)]
        if ring == TOTALS_STREAM:
            return [("read_total", events[0]), ("read_total_hist", events[1])]
        return ()

    def replay(self, kind: str, table: Any) -> None:
        """A stored part (a pyarrow Table): the same aggregation as live."""
        if kind == "read":
            self.stats.add_reads(table)
        elif kind == "block":
            self.stats.add_blocks(table)
        elif kind == "read_total":
            self.stats.add_totals(table)
        elif kind == "read_total_hist":
            self.stats.add_total_hists(table)

    def live_header(self, clock: Clock) -> str:
        return f"{clock.live_title:<10} " + HEADER + container_header() + "FILE"

    def live_lines(self, obj: str, ring: str, events: Any, clock: Clock) -> str:
        if ring == READ_RING:
            return self._read_lines(events.batch, events.paths, clock)
        if ring == BLOCK_RING:
            return self._block_lines(events.batch, clock)
        return ""

    def json_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[dict[str, Any]]:
        if ring == TOTALS_STREAM:
            return self._json_totals(events[0])
        if ring == READ_RING:
            return self._json_reads(events.batch, events.paths, clock)
        if ring == BLOCK_RING:
            return self._json_blocks(events.batch, clock)
        return ()

    def _read_lines(self, batch: "np.ndarray[Any, Any]", paths: list[str], clock: Clock) -> str:
        t0 = clock.start_ns
        live = clock.live if clock.utc else None
        lines = []
        # The task and call columns repeat from line to line: format them once.
        who_cache = self._who_cache
        call_cache = self._call_cache
        cells = container_cells(batch) or [""] * len(batch)
        for ts, comm, pid, tid, sc, fd, direct, off, asked, ret, lat, path, cell in zip(
            batch["ts_ns"].tolist(), batch["comm"].tolist(), batch["pid"].tolist(), batch["tid"].tolist(),
            batch["syscall"].tolist(), batch["fd"].tolist(), batch["direct"].tolist(), batch["offset"].tolist(),
            batch["asked"].tolist(), batch["ret"].tolist(), batch["latency_ns"].tolist(), paths, cells,
        ):
            who = who_cache.get((comm, pid, tid))
            if who is None:
                who = who_cache[(comm, pid, tid)] = f"{comm.decode('utf-8', 'replace'):<16} {pid:>7} {tid:>7}"
            call = call_cache.get((sc, fd, direct))
            if call is None:
                name = self.syscalls.get(sc, "?")
                call = call_cache[(sc, fd, direct)] = f"{name:<8} {fd:>4} {'D' if direct else '-'}"
            ret_s = ret if ret >= 0 else _errno_name(-ret)
            when = f"{(ts - t0) / 1e9:<10.6f}" if live is None else live(ts)
            lines.append(f"{when} {who} {call} {off:>12} {asked:>9} {ret_s:>9} "
                         f"{lat / 1e6:8.3f} {cell}{path}\n")
        return "".join(lines)

    def _block_lines(self, bios: "np.ndarray[Any, Any]", clock: Clock) -> str:
        t0 = clock.start_ns
        live = clock.live if clock.utc else None
        lines = []
        who_cache = self._who_cache
        op_cache = self._op_cache
        queue, device = block_latencies(bios["queued_ns"], bios["issue_ns"], bios["ts_ns"])
        cells = container_cells(bios) or [""] * len(bios)
        for ts, comm, pid, tid, attributed, op, dev, sector, nbytes, q, d, done, cell in zip(
            bios["ts_ns"].tolist(), bios["comm"].tolist(), bios["pid"].tolist(), bios["tid"].tolist(),
            bios["attributed"].tolist(), bios["op"].tolist(), bios["dev"].tolist(), bios["sector"].tolist(),
            bios["bytes"].tolist(), queue.tolist(), device.tolist(), bios["completed"].tolist(), cells,
        ):
            if attributed:
                who = who_cache.get((comm, pid, tid))
                if who is None:
                    who = who_cache[(comm, pid, tid)] = f"{comm.decode('utf-8', 'replace'):<16} {pid:>7} {tid:>7}"
            else:
                who = f"{'(unattributed)':<16} {'-':>7} {'-':>7}"
            event = op_cache.get((op, dev))
            if event is None:
                event = op_cache[(op, dev)] = (f"{'block-' + block_op_name(op):<8} {'-':>4} -", disk_name(dev))
            when = f"{(ts - t0) / 1e9:<10.6f}" if live is None else live(ts)
            # one line at completion, as biosnoop does; LAT is queue + device
            if done and q == q and d == d:  # (NaN != NaN: a latency not known)
                lines.append(f"{when} {who} {event[0]} {sector * 512:>12} {nbytes:>9} "
                             f"{'-':>9} {(q + d) / 1e6:8.3f} {cell}{event[1]} sector {sector} queue {q / 1e6:.3f} ms "
                             f"device {d / 1e6:.3f} ms\n")
            elif done:
                lines.append(f"{when} {who} {event[0]} {sector * 512:>12} {nbytes:>9} "
                             f"{'-':>9} {'-':>8} {cell}{event[1]} sector {sector} queue {_ms(q)} ms "
                             f"device {_ms(d)} ms\n")
            else:  # at the time it was queued
                lines.append(f"{when} {who} {event[0]} {sector * 512:>12} {nbytes:>9} "
                             f"{'-':>9} {'-':>8} {cell}{event[1]} sector {sector} completion not seen\n")
        return "".join(lines)

    def _json_reads(self, batch: "np.ndarray[Any, Any]", paths: list[str], clock: Clock) -> Iterable[dict[str, Any]]:
        for i, rec in enumerate(batch.tolist()):
            r = dict(zip(batch.dtype.names, rec))
            ret = r["ret"]
            yield {
                "type": "read", "time": clock.rfc3339(r["ts_ns"]), "pid": r["pid"], "tid": r["tid"],
                "comm": r["comm"].split(b"\0", 1)[0].decode("utf-8", "replace"),
                "syscall": self.syscalls.get(r["syscall"], "?"), "fd": r["fd"], "path": paths[i],
                "direct": bool(r["direct"]), "f_flags": r["f_flags"], "offset": r["offset"], "asked": r["asked"],
                "bytes": ret if ret >= 0 else None, "errno": _errno_name(-ret) if ret < 0 else None,
                "latency_ns": r["latency_ns"], "dev": dev_name(r["dev"]), "ino": r["ino"],
                "iovcnt": r["iovcnt"], "rwf": r["rwf"], "cgroup_id": r["cgroup_id"], "cgroup_v1_id": r["cgroup_v1_id"],
            }

    @staticmethod
    def _json_totals(totals: Records) -> Iterable[dict[str, Any]]:
        """The kernel's counts that grew since the last line, per process,
        file and syscall (reads without a record of their own)."""
        names = ("pid", "comm", "path", "syscall", "ftype", "reads", "ok_reads", "bytes", "errors", "latency_ns",
                 "cgroup_id", "cgroup_v1_id")
        columns = {n: totals.column(n).tolist() for n in names}
        times = totals.column("time").tolist()
        from .engine.clock import rfc3339_ns

        for i in range(len(totals)):
            yield {"type": "read_total", "time": rfc3339_ns(times[i]), **{n: columns[n][i] for n in names}}

    def _json_blocks(self, bios: "np.ndarray[Any, Any]", clock: Clock) -> Iterable[dict[str, Any]]:
        names = bios.dtype.names or ()
        queue, device = block_latencies(bios["queued_ns"], bios["issue_ns"], bios["ts_ns"])
        for values, q, d in zip(bios.tolist(), queue.tolist(), device.tolist()):
            r = dict(zip(names, values))
            attributed = bool(r["attributed"])
            yield {
                "type": "block", "time": clock.rfc3339(r["ts_ns"]), "attributed": attributed,
                "pid": r["pid"] if attributed else None, "tid": r["tid"] if attributed else None,
                "comm": _cstr(r["comm"]) if attributed else None, "disk": disk_name(r["dev"]),
                "dev": dev_name(r["dev"]), "op": block_op_name(r["op"]), "sector": r["sector"],
                "bytes": r["bytes"], "queue_ns": None if q != q else int(q),
                "device_ns": None if d != d else int(d), "completed": bool(r["completed"]), "error": r["error"],
                "cgroup_id": r["cgroup_id"] if attributed else None,
                "cgroup_v1_id": r["cgroup_v1_id"] if attributed else None,
            }

    # -- after tracing -----------------------------------------------------------

    def tick(self) -> Sequence[tuple[str, Any]]:
        totals = self.read_totals()
        return [(TOTALS_STREAM, totals)] if totals is not None else []

    def read_totals(self) -> Optional[tuple[Records, Records]]:
        """What the kernel counted since the last call (read_totals, see
        bpf/odirect.h): a read_total row per (process, file, syscall) whose
        counts grew and a read_total_hist row per latency slot that grew;
        folded into the aggregates here, as replay() folds them."""
        import time as _time

        import numpy as np

        if self.tracer is None:
            return None
        # a file's record is sent before its first read is counted: in the
        # ring, if not drained yet (a buffered read has no record of its own
        # to have drained it)
        self._learn_files()
        if self._pending:
            self._resolve_pending()   # bios of files named just now
        key_t = self.tracer.btf.dtype("odirect_total_key")
        val_t = self.tracer.btf.dtype("odirect_total")
        now = _time.monotonic_ns()
        rows: list[dict[str, Any]] = []
        hist: dict[str, list[Any]] = {"pid": [], "path": [], "slot": [], "count": []}
        for raw_key, raw_value in self.tracer.obj.map("read_totals").items():
            key = np.frombuffer(raw_key, dtype=key_t, count=1)[0]
            value = np.frombuffer(raw_value, dtype=val_t, count=1)[0]
            before = self._totals_seen.get(raw_key)
            reads = int(value["reads"]) - (int(before["reads"]) if before is not None else 0)
            if reads <= 0:
                continue
            self._totals_seen[raw_key] = value.copy()
            pid, ftype = int(key["pid"]), int(key["ftype"])
            path = (self.paths.name(pid, -1, int(key["dev"]), int(key["ino"]), True) if ftype == FTYPE_REG
                    else f"[{self.ftypes.get(ftype, str(ftype))}]")
            grew = {name: int(value[name]) - (int(before[name]) if before is not None else 0)
                    for name in ("reads", "ok_reads", "bytes", "errors", "latency_ns")}
            rows.append({"pid": pid, "comm": _cstr(bytes(value["comm"])), "dev": int(key["dev"]),
                         "cgroup_id": int(value["cgroup_id"]), "cgroup_v1_id": int(value["cgroup_v1_id"]),
                         "ino": int(key["ino"]), "ftype": self.ftypes.get(ftype, str(ftype)),
                         "syscall": self.syscalls.get(int(key["syscall"]), "?"), "path": path, **grew})
            latency = value["latency"].astype(np.int64) - (before["latency"].astype(np.int64) if before is not None else 0)
            for slot in np.flatnonzero(latency).tolist():
                hist["pid"].append(pid)
                hist["path"].append(path)
                hist["slot"].append(slot)
                hist["count"].append(int(latency[slot]))
        if not rows:
            return None
        totals = Records(len(rows), self.offset_ns)
        totals.add("time", np.full(len(rows), now + self.offset_ns, dtype=np.int64))
        totals.add("ts_ns", np.full(len(rows), now, dtype=np.uint64))
        for name, dtype in (("pid", np.uint32), ("dev", np.uint32), ("ino", np.uint64), ("cgroup_id", np.uint64),
                            ("cgroup_v1_id", np.uint64)):
            totals.add(name, np.array([r[name] for r in rows], dtype=dtype))
        for name in ("comm", "ftype", "syscall", "path"):
            totals.add_string_list(name, [r[name] for r in rows])
        for name in ("reads", "ok_reads", "bytes", "errors", "latency_ns"):
            totals.add(name, np.array([r[name] for r in rows], dtype=np.int64))
        n = len(hist["pid"])
        hists = Records(n, self.offset_ns)
        hists.add("time", np.full(n, now + self.offset_ns, dtype=np.int64))
        hists.add("ts_ns", np.full(n, now, dtype=np.uint64))
        hists.add("pid", np.array(hist["pid"], dtype=np.uint32))
        hists.add_string_list("path", hist["path"])
        hists.add("slot", np.array(hist["slot"], dtype=np.int32))
        hists.add("count", np.array(hist["count"], dtype=np.int64))
        self.stats.add_totals(totals)
        self.stats.add_total_hists(hists)
        return totals, hists

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """After the last drain, before the object closes: bios still in the
        kernel's table, bios still waiting for their read, and the counters
        of what could not be credited."""
        import numpy as np

        assert self.tracer is not None
        late: list[tuple[str, str, Any]] = []
        leftovers = self.unreported_bios()
        if len(leftovers) or self._pending or self._ready:
            blocks = self._blocks(leftovers if len(leftovers) else np.zeros(0, leftovers.dtype), final=True)
            if blocks is not None:
                late.append(("odirect", BLOCK_RING, blocks))
        totals = self.read_totals()
        if totals is not None:
            late.append(("odirect", TOTALS_STREAM, totals))
        self.totals_full = self.tracer.read_global("totals_full")
        self.unattributed_requests = self.tracer.read_global("unattributed_requests")
        self.unattributed_bytes = self.tracer.read_global("unattributed_bytes")
        self.untracked_bios = self.tracer.read_global("untracked_bios")
        return late

    def unreported_bios(self) -> "np.ndarray[Any, Any]":
        """Bios of traced tasks still in the kernel's table of queued bios:
        queued and never reported complete (in flight when tracing stopped,
        or their completion was not traced; see store_bio in
        bpf/odirect.bpf.c), as block records with ``completed`` 0 and the
        time they were queued.  The table is an mmap-able array, read in one
        piece."""
        import mmap

        import numpy as np

        assert self.tracer is not None
        block_dtype = self.tracer.btf.dtype("odirect_block_event")
        slot_dtype = self.tracer.btf.dtype("bio_slot")
        table = self.tracer.obj.map("bios")
        stride = (table.value_size + 7) & ~7
        length = table.max_entries * stride
        with mmap.mmap(table.fd, (length + mmap.PAGESIZE - 1) & ~(mmap.PAGESIZE - 1), mmap.MAP_SHARED,
                       mmap.PROT_READ) as view:
            slots = np.frombuffer(view, dtype=np.dtype({"names": ["slot"], "formats": [slot_dtype],
                                                        "itemsize": stride}), count=table.max_entries)["slot"].copy()
        owners = slots["owner"][slots["bio"] != 0]
        owners = owners[(owners["traced"] != 0) & (owners["bytes"] > owners["credited"])]
        out = np.zeros(len(owners), dtype=block_dtype)
        # as send_bio sends an evicted one (bpf/odirect.bpf.c): its read's file
        # names it, its cgroups its container
        for name in ("queued_ns", "read_enter_ns", "file_ino", "file_dev", "sector", "cgroup_id", "cgroup_v1_id",
                     "dev", "pid", "tid", "op", "comm"):
            out[name] = owners[name]
        out["uring_read"] = owners["uring"]
        out["ts_ns"] = owners["queued_ns"]
        out["bytes"] = owners["bytes"] - owners["credited"]
        out["attributed"] = 1
        return np.sort(out, order="ts_ns")

    def end_state(self) -> dict[str, Any]:
        return {"unattributed_requests": self.unattributed_requests, "unattributed_bytes": self.unattributed_bytes,
                "untracked_bios": self.untracked_bios, "totals_full": self.totals_full}

    def restore_end(self, state: Mapping[str, Any]) -> None:
        self.unattributed_requests = int(state.get("unattributed_requests", 0))
        self.unattributed_bytes = int(state.get("unattributed_bytes", 0))
        self.untracked_bios = int(state.get("untracked_bios", 0))
        self.totals_full = int(state.get("totals_full", 0))

    def tables(self) -> dict[str, Any]:
        """Per process (every figure) and per file, as the text report shows them."""
        return {"processes": per_process(self.stats), "files": per_file(self.stats)}

    def summary(self, duration_s: float) -> dict[str, Any]:
        tables = self.tables()
        return {
            "processes": [{k: p[k] for k in SUMMARY_PROCESS_KEYS} for p in tables["processes"]],
            "files": tables["files"],
            "unattributed_requests": self.unattributed_requests,
            "unattributed_bytes": self.unattributed_bytes,
            "untracked_bios": self.untracked_bios,
            # reads the kernel had no room left to count: recorded one by one instead
            "totals_full": self.totals_full,
            "histograms": self.stats.histograms(),
        }

    def findings(self, duration_s: float) -> list[Any]:
        return odirect_findings(self.stats, duration_s=duration_s)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        print_report({**envelope, **self.tables()}, findings, out)


# A process's figures in the summary envelope (the text report shows more).
SUMMARY_PROCESS_KEYS = ("pid", "comm", "reads", "read_bytes", "odirect_reads", "odirect_bytes", "block_ios",
                        "block_bytes")


def _ms(ns: float, width: int = 0) -> str:
    """Nanoseconds as milliseconds, "-" when unknown (NaN)."""
    return f"{'-':>{width}}" if ns != ns else f"{ns / 1e6:{width}.3f}"



def _errno_name(err: int) -> str:
    import errno

    return errno.errorcode.get(err, str(err))


MAX_FILE_ROWS = 12


def print_report(summary: Mapping[str, Any], findings: "Sequence[Finding]", out: TextIO) -> None:
    out.write(f"\n{run_line(summary)}\n")
    out.write("\nPer process:\n")
    rows = [{
        "pid": p["pid"], "comm": p["comm"], "reads": p["reads"], "read_bytes": p["read_bytes"],
        "odirect_reads": p["odirect_reads"], "odirect_bytes": p["odirect_bytes"],
        "odirect_%": p["odirect_share"] * 100.0, "p50_ms": _or_dash(p["latency_p50_ms"]),
        "p99_ms": _or_dash(p["latency_p99_ms"]),
        "block_ios": p["block_ios"], "block_bytes": p["block_bytes"],
    } for p in summary["processes"]]
    out.write(_indent(format_table(rows)) + "\n")
    files = summary["files"]
    out.write(f"\nPer file ({len(files)}, most bytes first):\n" if len(files) > MAX_FILE_ROWS else "\nPer file:\n")
    rows = [{
        "path": f["path"] or "(no file)", "reads": f["reads"], "read_bytes": f["read_bytes"],
        "odirect_%": f["odirect_share"] * 100.0, "p50_ms": _or_dash(f["latency_p50_ms"]),
        "p99_ms": _or_dash(f["latency_p99_ms"]),
        "block_bytes": f["block_bytes"],
    } for f in files[:MAX_FILE_ROWS]]
    out.write(_indent(format_table(rows)) + "\n")
    if len(files) > MAX_FILE_ROWS:
        rest = files[MAX_FILE_ROWS:]
        out.write(f"  ... {len(rest)} more files, {sum(f['reads'] for f in rest)} reads, "
                  f"{sum(f['read_bytes'] for f in rest)} bytes (all in --json and -o)\n")
    if summary["unattributed_requests"]:
        out.write(f"\nUnattributed block requests (no submission seen, any process): "
                  f"{summary['unattributed_requests']}, {summary['unattributed_bytes']} bytes.\n")
    if summary["untracked_bios"]:
        out.write(f"Bios queued while the table of queued bios had no room (their requests count as "
                  f"unattributed): {summary['untracked_bios']}.\n")
    print_histograms(summary.get("histograms") or {}, out)
    print_findings(findings, out)


def _or_dash(value: Optional[float]) -> Any:
    return "-" if value is None else value


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@click.command("odirect")
@pid_options(required=True)
@click.option("--all-reads", is_flag=True,
              help="A record (live line, JSON line, trace row) for every read, buffered or not. By default "
                   "only O_DIRECT reads get one and the others are counted in the kernel per process, file and "
                   "syscall: a reader of cached files runs several times slower with --all-reads.")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, containers: tuple[str, ...],
            cgroups: tuple[str, ...], duration: Optional[float], as_json: bool, output: Optional[str],
            utc: bool, verbose: int, backend: BackendRequest, prometheus: Optional[Exporter],
            all_reads: bool) -> int:
    """Every O_DIRECT (and buffered) read of a process, the block I/O it causes, and a finding.

    O_DIRECT is read from the open file at each read, so a later fcntl(F_SETFL, O_DIRECT)
    counts.  Block I/O is credited where the bio is submitted, in the reader's own context.
    io_uring reads (read, readv, read_fixed) are traced too; multishot reads and uring_cmd
    are not seen as reads (their block I/O is).
    """
    target = target_from_options(pids, command, follow, required=True, containers=containers, cgroups=cgroups)
    check_output_path(output)
    chosen = require_bpf_environment(backend)
    run_tool("iotrace", ODirectTool(all_reads=all_reads), target, duration=duration, as_json=as_json, output=output,
             utc=utc, backend=chosen, prometheus=prometheus)
    return 0
