"""The batch ring-buffer reader over a memfd laid out like a BPF ring."""
from __future__ import annotations

import mmap
import os
import struct

import numpy as np
import pytest

from kerntrace.tracers.engine.ringbuf import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, RingReader

EVENT = np.dtype([("a", "<u8"), ("b", "<u4")], align=True)  # itemsize 16
PAGE = mmap.PAGESIZE
SIZE = 4096


@pytest.fixture
def ring():
    fd = os.memfd_create("ring")
    os.ftruncate(fd, 2 * PAGE + 2 * SIZE)
    yield fd
    os.close(fd)


def put(fd, pos, events, flags=0):
    """Write records at producer position pos; return the new position."""
    for a, b in events:
        rec = struct.pack("<II", EVENT.itemsize | flags, 0) + struct.pack("<QI4x", a, b)
        os.pwrite(fd, rec, 2 * PAGE + (pos % SIZE))
        pos += len(rec)
    return pos


def set_producer(fd, pos):
    os.pwrite(fd, struct.pack("<Q", pos), PAGE)


def consumer(fd):
    return struct.unpack("<Q", os.pread(fd, 8, 0))[0]


def test_reads_committed_records_and_advances_consumer(ring):
    pos = put(ring, 0, [(1, 10), (2, 20), (3, 30)])
    set_producer(ring, pos)
    reader = RingReader(ring, SIZE, EVENT)
    got = reader.drain()
    assert got["a"].tolist() == [1, 2, 3] and got["b"].tolist() == [10, 20, 30]
    assert consumer(ring) == pos
    assert len(reader.drain()) == 0
    reader.close()


def test_stops_at_busy_record(ring):
    pos = put(ring, 0, [(1, 1)])
    busy_at = pos
    pos = put(ring, pos, [(2, 2)], flags=BPF_RINGBUF_BUSY_BIT)
    pos = put(ring, pos, [(3, 3)])
    set_producer(ring, pos)
    reader = RingReader(ring, SIZE, EVENT)
    assert reader.drain()["a"].tolist() == [1]
    assert consumer(ring) == busy_at
    reader.close()


def test_skips_discarded_records(ring):
    pos = put(ring, 0, [(1, 1)])
    pos = put(ring, pos, [(2, 2)], flags=BPF_RINGBUF_DISCARD_BIT)
    pos = put(ring, pos, [(3, 3)])
    set_producer(ring, pos)
    reader = RingReader(ring, SIZE, EVENT)
    assert reader.drain()["a"].tolist() == [1, 3]
    assert reader.discarded == 1 and consumer(ring) == pos
    reader.close()


def test_wrong_record_size_is_an_error(ring):
    os.pwrite(ring, struct.pack("<II", 8, 0) + b"\0" * 16, 2 * PAGE)
    set_producer(ring, 24)
    reader = RingReader(ring, SIZE, EVENT)
    with pytest.raises(ValueError, match="one event struct"):
        reader.drain()
    reader.close()


def test_size_must_be_power_of_two(ring):
    with pytest.raises(ValueError):
        RingReader(ring, 3000, EVENT)
