"""Batch consumer of BPF ring buffers, decoded straight into numpy arrays.

libbpf's ``ring_buffer__poll`` calls back once per record; from Python that
costs a ctypes transition per event and caps throughput far below what the
kernel produces.  Each kerntrace ring carries records of one event struct, so
every record has the same stride and a whole batch is one ``np.frombuffer``
over the memory-mapped ring.

Memory layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position
(writable by user space); page 1 the producer position; then the data area,
mapped twice in a row so that a record wrapping around the end reads as one
contiguous run.  Each record has an 8-byte header whose length word carries
BUSY (not yet committed) and DISCARD bits; records are 8-byte aligned.
x86_64 keeps stores in order (TSO), so plain loads after reading the producer
position see committed data; this module is x86_64-only like the objects.
"""
from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RingReader"]

BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
BPF_MAP_TYPE_RINGBUF = 27


class RingReader:
    """Reads fixed-size records of one dtype from one ring-buffer map fd."""

    def __init__(
        self,
        map_fd: int,
        size: int,
        event_dtype: "np.dtype[Any] | Callable[[], np.dtype[Any]]",
        name: str = "",
    ) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size {size} is not a power of two")
        self.name = name
        self.size = size
        self._mask = size - 1
        page = mmap.PAGESIZE
        self._page = page
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        # The dtype may come as a factory: building it imports numpy, which
        # need not delay attaching (the kernel buffers events meanwhile).
        self._dtype_source = event_dtype
        self._dtype: "Optional[np.dtype[Any]]" = None
        self._record_dtype: "Optional[np.dtype[Any]]" = None
        self.records_read = 0
        self.discarded = 0
        self._cons_word: "Optional[np.ndarray[Any, Any]]" = None
        self._prod_word: "Optional[np.ndarray[Any, Any]]" = None

    @property
    def event_dtype(self) -> "np.dtype[Any]":
        if self._dtype is None:
            source = self._dtype_source
            self._dtype = source() if callable(source) else source
        return self._dtype

    @property
    def stride(self) -> int:
        return BPF_RINGBUF_HDR_SZ + ((self.event_dtype.itemsize + 7) & ~7)

    def _records(self) -> "np.dtype[Any]":
        import numpy as np

        if self._record_dtype is None:
            self._record_dtype = np.dtype(
                {
                    "names": ["len", "event"],
                    "formats": [np.uint32, self.event_dtype],
                    "offsets": [0, BPF_RINGBUF_HDR_SZ],
                    "itemsize": self.stride,
                }
            )
        return self._record_dtype

    def _words(self) -> "tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]":
        """One-element uint64 views of the consumer and producer positions.
        Each access is a single aligned 8-byte load or store, as the kernel's
        smp_load_acquire/smp_store_release pair expects; struct's "<Q" moves
        the bytes one at a time, and a torn consumer position read by the
        kernel mid-update looks like a full ring (records refused)."""
        import numpy as np

        if self._cons_word is None:
            self._cons_word = np.frombuffer(self._consumer, dtype=np.uint64, count=1)
            self._prod_word = np.frombuffer(self._producer, dtype=np.uint64, count=1)
        assert self._prod_word is not None
        return self._cons_word, self._prod_word

    def _positions(self) -> tuple[int, int]:
        cons_word, prod_word = self._words()
        cons = int(cons_word[0])
        prod = int(prod_word[0])
        return cons, prod

    def pending_bytes(self) -> int:
        cons, prod = self._positions()
        return prod - cons

    def drain(self, max_records: int = 1 << 20) -> "np.ndarray[Any, Any]":
        """All committed records now in the ring (up to max_records), as a
        structured array of the event dtype; the space is given back."""
        import numpy as np

        cons, prod = self._positions()
        if prod == cons:
            return np.empty(0, dtype=self.event_dtype)
        count = min((prod - cons) // self.stride, max_records)
        if count <= 0:
            return np.empty(0, dtype=self.event_dtype)
        offset = self._page + (cons & self._mask)
        view = np.frombuffer(self._producer, dtype=self._records(), count=count, offset=offset)
        lengths = view["len"]
        busy = np.flatnonzero(lengths & BPF_RINGBUF_BUSY_BIT)
        if busy.size:
            count = int(busy[0])
            if count == 0:
                return np.empty(0, dtype=self.event_dtype)
            view = view[:count]
            lengths = lengths[:count]
        sizes = lengths & ~np.uint32(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
        if (sizes != self.event_dtype.itemsize).any():
            raise ValueError(
                f"ring {self.name}: a record is not {self.event_dtype.itemsize} bytes; "
                "each ring must carry one event struct"
            )
        keep = (lengths & BPF_RINGBUF_DISCARD_BIT) == 0
        out = view["event"][keep].copy() if not keep.all() else view["event"].copy()
        self.discarded += int(count - int(keep.sum()))
        self._words()[0][0] = cons + count * self.stride
        self.records_read += len(out)
        return out

    def close(self) -> None:
        self._cons_word = self._prod_word = None
        for m in (self._consumer, self._producer):
            try:
                m.close()
            except BufferError:
                # A caller still holds a view; the mapping goes with the object.
                pass

    def __enter__(self) -> "RingReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
