"""Bulk reader of BPF perf buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY), decoded
straight into numpy arrays: the transport where the kernel has no BPF ring
buffer, and the output of the BCC programs.

libbpf's ``perf_buffer__poll`` (and BCC's ``perf_buffer_poll``) call back
once per record: from Python a ctypes transition per event.  Here each CPU's
ring is a ``PERF_COUNT_SW_BPF_OUTPUT`` event of our own (perf_event_open),
memory-mapped; a drain copies each ring's new bytes at once and, where they
are all samples of the one size a ring's records have, cuts them into
records with one numpy view.  A ``PERF_RECORD_LOST`` note or a sample of
another size is read by hand, and the bulk cut goes on after it.

Memory layout (include/uapi/linux/perf_event.h): page 0 is struct
perf_event_mmap_page, whose data_head (offset 1024) the kernel advances and
whose data_tail (1032) the reader writes back; then 2^n data pages, in which
records wrap around the end.  A BPF output record is PERF_RECORD_SAMPLE with
PERF_SAMPLE_RAW: the 8-byte perf_event_header, a u32 size, then the data,
padded so that size + 4 is a multiple of 8.  Mapped writable, the ring never
overwrites what the reader has not consumed: a full ring refuses the record
(bpf_perf_event_output fails, the BPF side counts it) and a LOST note with
the count follows once there is room.  x86-64 only (:meth:`PerfRings.available`):
the kernel orders its data stores before the head store, and x86's loads
are not reordered, so plain loads after reading data_head see the records;
elsewhere a reader needs barriers numpy does not give.
"""
from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import platform
import struct
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PerfRings", "online_cpus", "sample_stride"]

log = logging.getLogger("kerntrace.engine")

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
SYS_perf_event_open = 298  # x86-64
# struct perf_event_attr: PERF_ATTR_SIZE_VER1, which every kernel takes.
_ATTR_SIZE = 72
_ATTR_DISABLED = 1 << 0
_ATTR_WATERMARK = 1 << 14
# struct perf_event_mmap_page
_DATA_HEAD = 1024
_DATA_TAIL = 1032
# perf_event_header (8) + the raw size word (4): where a sample's data starts.
_SAMPLE_DATA = 12
# A bulk run is tested in windows that double from this many records, so a
# ring where odd records alternate with good ones costs no quadratic time.
_FIRST_WINDOW = 64

_libc = ctypes.CDLL(None, use_errno=True)
_perf_event_open = _libc.syscall
_perf_event_open.restype = ctypes.c_long
_perf_event_open.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_ulong]


def sample_stride(itemsize: int) -> int:
    """Bytes a record of itemsize bytes takes in a perf ring."""
    return 8 + ((4 + itemsize + 7) & ~7)


def online_cpus(path: str = "/sys/devices/system/cpu/online") -> list[int]:
    """The online CPUs, from sysfs's list ("0-3,6")."""
    with open(path) as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def _open_output_event(cpu: int, watermark: int) -> int:
    """A BPF output event on one CPU, disabled, waking readers once
    ``watermark`` bytes wait in its ring."""
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into("<IIQQQQQI", attr, 0, PERF_TYPE_SOFTWARE, _ATTR_SIZE, PERF_COUNT_SW_BPF_OUTPUT,
                     1,                 # sample_period: every output is a sample
                     PERF_SAMPLE_RAW,   # sample_type
                     0,                 # read_format
                     _ATTR_DISABLED | _ATTR_WATERMARK,
                     watermark)         # wakeup_watermark
    ctypes.set_errno(0)
    fd = _perf_event_open(SYS_perf_event_open, ctypes.addressof(attr), -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open(BPF output, cpu {cpu}): {os.strerror(err)}")
    return int(fd)


class _CpuRing:
    """One CPU's memory-mapped ring: copies out what the kernel wrote."""

    def __init__(self, cpu: int, fd: int, pages: int) -> None:
        import numpy as np

        self.cpu = cpu
        self.fd = fd
        self.page = mmap.PAGESIZE
        self.size = pages * self.page
        self.map = mmap.mmap(fd, self.page + self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # single aligned 8-byte loads and stores, as the kernel's
        # smp_load_acquire/smp_store_release pair on data_tail expects
        self._head: Optional[np.ndarray[Any, Any]] = np.frombuffer(self.map, np.uint64, 1, _DATA_HEAD)
        self._tail: Optional[np.ndarray[Any, Any]] = np.frombuffer(self.map, np.uint64, 1, _DATA_TAIL)
        self._data: Optional[np.ndarray[Any, Any]] = np.frombuffer(self.map, np.uint8, self.size, self.page)

    def take(self) -> tuple[int, "np.ndarray[Any, Any]"]:
        """(tail, a copy of the bytes between the consumer and the producer)."""
        import numpy as np

        assert self._head is not None and self._tail is not None and self._data is not None
        head = int(self._head[0])
        tail = int(self._tail[0])
        avail = head - tail
        if avail <= 0:
            return tail, np.empty(0, np.uint8)
        start = tail % self.size
        if start + avail <= self.size:
            return tail, self._data[start:start + avail].copy()
        return tail, np.concatenate((self._data[start:], self._data[:avail - (self.size - start)]))

    def consume(self, tail: int) -> None:
        assert self._tail is not None
        self._tail[0] = tail

    def close(self) -> None:
        self._head = self._tail = self._data = None
        try:
            self.map.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes with the object
        os.close(self.fd)


class PerfRings:
    """A PERF_EVENT_ARRAY map's rings, one per online CPU, read in bulk as
    records of one dtype.

    ``set_slot(cpu, fd)`` is called for each CPU: the caller stores fd in
    the map's slot for that CPU (a libbpf map update, or BCC's table).
    ``dtype`` may be a factory, called at the first drain (building it
    imports numpy, which need not delay attaching).  Each ring has
    ``pages_per_cpu`` data pages (a power of two) and wakes a poller once
    ``watermark`` bytes wait in it (default: a quarter of the ring; the
    reader also drains on its own clock)."""

    def __init__(self, set_slot: Callable[[int, int], None],
                 dtype: "np.dtype[Any] | Callable[[], np.dtype[Any]]", name: str = "",
                 pages_per_cpu: int = 64, watermark: Optional[int] = None) -> None:
        if not self.available():
            raise OSError(f"perf buffer reader: not on {platform.machine()} (x86-64 only)")
        self._setup(dtype, name, pages_per_cpu)
        size = pages_per_cpu * mmap.PAGESIZE
        # A quarter, where the ring buffer's programs wake at half: each CPU
        # has only its share of the ring's bytes, and a burst comes from one
        # CPU.  At half, a 2-CPU guest left a burst half the ring buffer's
        # room after the wake-up, and lost 170 of 60000 records under TCG.
        mark = size // 4 if watermark is None else max(1, min(watermark, size))
        try:
            for cpu in online_cpus():
                fd = _open_output_event(cpu, mark)
                try:
                    ring = _CpuRing(cpu, fd, pages_per_cpu)
                except BaseException:
                    os.close(fd)
                    raise
                self._rings.append(ring)
                set_slot(cpu, fd)
                fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except BaseException:
            self.close()
            raise

    def _setup(self, dtype: "np.dtype[Any] | Callable[[], np.dtype[Any]]", name: str, pages_per_cpu: int) -> None:
        if pages_per_cpu <= 0 or pages_per_cpu & (pages_per_cpu - 1):
            raise ValueError(f"pages per CPU ({pages_per_cpu}) must be a power of two")
        self.name = name
        self._dtype_source = dtype
        self._dtype: "Optional[np.dtype[Any]]" = None
        self.lost = 0            # records the kernel's LOST notes count
        self.short = 0           # samples too short for the dtype (skipped)
        self.records_read = 0
        self.bulk_records = 0    # of records_read, cut in bulk (the rest walked)
        self._rings: list[_CpuRing] = []

    @classmethod
    def from_fds(cls, fds: "dict[int, int]", dtype: "np.dtype[Any] | Callable[[], np.dtype[Any]]",
                 pages_per_cpu: int, name: str = "") -> "PerfRings":
        """Rings laid out as perf's in files already open (cpu -> fd), e.g.
        memfds the unit tests write; the fds are closed with the rings."""
        self = cls.__new__(cls)
        self._setup(dtype, name, pages_per_cpu)
        try:
            for cpu, fd in sorted(fds.items()):
                self._rings.append(_CpuRing(cpu, fd, pages_per_cpu))
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def available() -> bool:
        """Whether this reader runs here: x86-64 (store order, syscall number)."""
        return platform.machine() in ("x86_64", "AMD64")

    @property
    def fds(self) -> list[int]:
        return [r.fd for r in self._rings]

    @property
    def event_dtype(self) -> "np.dtype[Any]":
        if self._dtype is None:
            source = self._dtype_source
            self._dtype = source() if callable(source) else source
        return self._dtype

    def drain(self, max_records: int = 1 << 20) -> "np.ndarray[Any, Any]":
        """The records now in every CPU's ring (up to max_records), in time
        order where the dtype has ts_ns; the space is given back."""
        import numpy as np

        parts = []
        left = max_records
        for ring in self._rings:
            if left <= 0:
                break
            tail, raw = ring.take()
            if not raw.size:
                continue
            events, used = self.decode(raw, left)
            ring.consume(tail + used)
            if len(events):
                parts.append(events)
                left -= len(events)
        if not parts:
            return np.empty(0, dtype=self.event_dtype)
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.records_read += len(out)
        # one CPU's records are in order; a task that moved between CPUs
        # left its records in two rings
        if len(parts) > 1 and "ts_ns" in (out.dtype.names or ()):
            out = out[np.argsort(out["ts_ns"], kind="stable")]
        return out

    def decode(self, raw: "np.ndarray[Any, Any]", max_records: int = 1 << 20) -> "tuple[np.ndarray[Any, Any], int]":
        """Records of one ring's bytes (whole perf records, oldest first), and
        how many bytes they took.  Bulk where the records are samples of the
        standard size; a LOST note or another size is read by hand."""
        import numpy as np

        dtype = self.event_dtype
        itemsize = dtype.itemsize
        stride = sample_stride(itemsize)
        end = len(raw)
        pieces: list[np.ndarray[Any, Any]] = []
        odd: list[int] = []   # data offsets of samples of another size, in order
        count = 0
        pos = 0
        while pos + 8 <= end and count < max_records:
            kind, _misc, size = struct.unpack_from("<IHH", raw, pos)
            if size < 8 or pos + size > end:
                break  # cannot happen for records the kernel completed
            run = self._bulk_run(raw, pos, end, stride, max_records - count) if size == stride else 0
            if run:
                if odd:
                    pieces.append(self._gather(raw, odd))
                    odd = []
                rows = raw[pos:pos + run * stride].reshape(run, stride)
                pieces.append(rows[:, _SAMPLE_DATA:_SAMPLE_DATA + itemsize].copy().view(dtype).reshape(run))
                self.bulk_records += run
                count += run
                pos += run * stride
                continue
            if kind == PERF_RECORD_SAMPLE:
                (raw_size,) = struct.unpack_from("<I", raw, pos + 8)
                if raw_size >= itemsize and size >= _SAMPLE_DATA + itemsize:
                    odd.append(pos + _SAMPLE_DATA)
                    count += 1
                else:
                    self.short += 1
                    log.warning("perf ring %s: a %d-byte sample is shorter than a %d-byte record; skipped",
                                self.name, raw_size, itemsize)
            elif kind == PERF_RECORD_LOST and size >= 24:
                self.lost += struct.unpack_from("<Q", raw, pos + 16)[0]
            pos += size
        if odd:
            pieces.append(self._gather(raw, odd))
        if not pieces:
            return np.empty(0, dtype=dtype), pos
        return (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)), pos

    @staticmethod
    def _bulk_run(raw: "np.ndarray[Any, Any]", pos: int, end: int, stride: int, limit: int) -> int:
        """How many records from pos are samples of stride bytes.  Each
        record checked follows only good ones, so its header is a real
        record's: the first bad one is where the bulk cut stops."""
        import numpy as np

        raw_size = stride - _SAMPLE_DATA  # the size word counts the data and its padding
        want = np.array([PERF_RECORD_SAMPLE, stride << 16, raw_size], dtype=np.uint32)
        total = min((end - pos) // stride, limit)
        done = 0
        window = _FIRST_WINDOW
        while done < total:
            n = min(window, total - done)
            start = pos + done * stride
            heads = raw[start:start + n * stride].reshape(n, stride)[:, :12].copy().view(np.uint32)
            # type, misc|size (size is the high half of the second word;
            # misc is masked off), raw size
            good = (heads[:, 0] == want[0]) & ((heads[:, 1] & 0xFFFF0000) == want[1]) & (heads[:, 2] == want[2])
            if not good.all():
                return done + int(np.argmin(good))
            done += n
            window *= 2
        return done

    def _gather(self, raw: "np.ndarray[Any, Any]", offsets: list[int]) -> "np.ndarray[Any, Any]":
        """Records at the given data offsets (samples of another size: the
        record is the data's first itemsize bytes)."""
        import numpy as np

        itemsize = self.event_dtype.itemsize
        index = np.asarray(offsets, dtype=np.intp)[:, None] + np.arange(itemsize, dtype=np.intp)
        return raw[index].view(self.event_dtype).reshape(len(offsets))

    def close(self) -> None:
        for ring in self._rings:
            try:
                fcntl.ioctl(ring.fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError:
                pass
            ring.close()
        self._rings = []

    def __enter__(self) -> "PerfRings":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
