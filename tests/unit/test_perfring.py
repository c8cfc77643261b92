"""The bulk perf-buffer reader over memfds laid out like perf's rings: the
bulk cut, LOST notes, samples of other sizes, records that wrap around the
end of a ring, several CPUs, and a drain cut short."""
from __future__ import annotations

import mmap
import os
import struct

import numpy as np
import pytest

from kerntrace.tracers.engine.perfring import (
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    PerfRings,
    online_cpus,
    sample_stride,
)

# 40 bytes: a sample pads 4 + 40 to 48, so the record takes 56
EVENT = np.dtype([("ts_ns", "<u8"), ("pid", "<u4"), ("seq", "<u4"), ("comm", "S16"), ("value", "<u8")])
PAGE = mmap.PAGESIZE
PAGES = 2
SIZE = PAGES * PAGE


class Ring:
    """One CPU's ring in a memfd: the producer side, as the kernel writes it."""

    def __init__(self, start: int = 0) -> None:
        self.fd = os.memfd_create("perf-ring")
        os.ftruncate(self.fd, PAGE + SIZE)
        self.head = start
        os.pwrite(self.fd, struct.pack("<QQ", start, start), 1024)  # data_head, data_tail

    def put(self, record: bytes) -> None:
        assert self.head + len(record) - self.tail <= SIZE, "the test overfills its ring"
        start = self.head % SIZE
        first = record[: SIZE - start]
        os.pwrite(self.fd, first, PAGE + start)
        if len(first) < len(record):
            os.pwrite(self.fd, record[len(first):], PAGE)
        self.head += len(record)

    def publish(self) -> None:
        os.pwrite(self.fd, struct.pack("<Q", self.head), 1024)

    @property
    def tail(self) -> int:
        return struct.unpack("<Q", os.pread(self.fd, 8, 1032))[0]


def event(ts: int, seq: int, pid: int = 7, value: int = 0) -> bytes:
    return np.array([(ts, pid, seq, b"comm%d" % seq, value)], dtype=EVENT).tobytes()


def sample(data: bytes) -> bytes:
    """PERF_RECORD_SAMPLE of PERF_SAMPLE_RAW: header, size word, data padded
    so that the size word and the data end on 8 bytes (the size word counts
    the padding, as the kernel writes it)."""
    padded = (4 + len(data) + 7) & ~7
    body = struct.pack("<I", padded - 4) + data.ljust(padded - 4, b"\0")
    return struct.pack("<IHH", PERF_RECORD_SAMPLE, 1, 8 + len(body)) + body


def lost(count: int) -> bytes:
    return struct.pack("<IHHQQ", PERF_RECORD_LOST, 0, 24, 1234, count)


def reader(*rings: Ring) -> PerfRings:
    return PerfRings.from_fds({cpu: r.fd for cpu, r in enumerate(rings)}, EVENT, PAGES, name="test")


def test_stride_and_the_online_list(tmp_path):
    assert sample_stride(EVENT.itemsize) == 56 == len(sample(event(1, 1)))
    assert sample_stride(32) == 48 and sample_stride(4) == 16
    online = tmp_path / "online"
    online.write_text("0-3,6,8-9\n")
    assert online_cpus(str(online)) == [0, 1, 2, 3, 6, 8, 9]
    assert online_cpus() == sorted(online_cpus())


def test_samples_of_one_size_are_cut_in_bulk():
    ring = Ring()
    for i in range(50):
        ring.put(sample(event(1000 + i, i, value=i * i)))
    ring.publish()
    rings = reader(ring)
    got = rings.drain()
    assert got.dtype == EVENT
    assert got["seq"].tolist() == list(range(50))
    assert got["value"].tolist() == [i * i for i in range(50)]
    assert got["comm"][3] == b"comm3"
    assert rings.bulk_records == 50 and rings.records_read == 50 and rings.lost == 0
    assert ring.tail == ring.head
    assert len(rings.drain()) == 0
    rings.close()


def test_lost_notes_are_counted_and_the_bulk_cut_goes_on_after_them():
    ring = Ring()
    for i in range(10):
        ring.put(sample(event(i, i)))
    ring.put(lost(17))
    for i in range(10, 120):
        ring.put(sample(event(i, i)))
    ring.put(lost(3))
    ring.publish()
    rings = reader(ring)
    got = rings.drain()
    assert got["seq"].tolist() == list(range(120))
    assert rings.lost == 20
    assert rings.bulk_records == 120  # the LOST notes are read by hand, the samples in two runs
    assert ring.tail == ring.head
    rings.close()


def test_long_samples_give_their_first_bytes_and_short_ones_are_skipped():
    ring = Ring()
    ring.put(sample(event(1, 1)))
    ring.put(sample(event(2, 2, value=22) + b"trailing bytes of a longer record"))
    ring.put(sample(event(3, 3)[:24]))  # too short for the dtype
    ring.put(sample(event(4, 4)))
    ring.publish()
    rings = reader(ring)
    got = rings.drain()
    assert got["seq"].tolist() == [1, 2, 4]
    assert got["value"].tolist() == [0, 22, 0]
    assert rings.short == 1 and rings.lost == 0
    assert rings.bulk_records == 2  # the first and the last; the long one walked
    assert ring.tail == ring.head
    rings.close()


def test_records_wrapping_around_the_end_of_the_ring():
    stride = sample_stride(EVENT.itemsize)
    # the producer and consumer start just before the end: records straddle it
    start = 5 * SIZE - 3 * stride - 20
    ring = Ring(start)
    for i in range(10):
        ring.put(sample(event(i, i, value=i)))
    ring.put(lost(2))
    ring.put(sample(event(10, 10) + b"x" * 8))
    ring.publish()
    rings = reader(ring)
    got = rings.drain()
    assert got["seq"].tolist() == list(range(11))
    assert got["value"].tolist()[:10] == list(range(10))
    assert rings.lost == 2
    assert ring.tail == ring.head == start + 10 * stride + 24 + stride + 8
    # the ring goes on from there
    ring.put(sample(event(11, 11)))
    ring.publish()
    assert rings.drain()["seq"].tolist() == [11]
    rings.close()


def test_every_cpu_is_read_and_records_come_in_time_order():
    a, b = Ring(), Ring()
    for ts in (10, 30, 50):
        a.put(sample(event(ts, ts)))
    for ts in (20, 40):
        b.put(sample(event(ts, ts, pid=8)))
    a.publish()
    b.publish()
    rings = reader(a, b)
    assert len(rings.fds) == 2
    got = rings.drain()
    assert got["ts_ns"].tolist() == [10, 20, 30, 40, 50]
    assert got["pid"].tolist() == [7, 8, 7, 8, 7]
    rings.close()


def test_a_drain_cut_short_gives_back_only_what_it_read():
    stride = sample_stride(EVENT.itemsize)
    ring = Ring()
    for i in range(5):
        ring.put(sample(event(i, i)))
    ring.put(sample(event(5, 5) + b"y" * 16))
    for i in range(6, 9):
        ring.put(sample(event(i, i)))
    ring.publish()
    rings = reader(ring)
    assert rings.drain(max_records=3)["seq"].tolist() == [0, 1, 2]
    assert ring.tail == 3 * stride
    assert rings.drain(max_records=3)["seq"].tolist() == [3, 4, 5]
    assert rings.drain()["seq"].tolist() == [6, 7, 8]
    assert ring.tail == ring.head
    rings.close()


def test_odd_records_between_good_ones_are_all_read():
    # one record in two of another size: each bulk run is one record long
    records = [sample(event(i, i) + (b"z" * 8 if i % 2 else b"")) for i in range(200)]
    pages = 4  # 200 records of 56 or 64 bytes
    fd = os.memfd_create("perf-ring")
    os.ftruncate(fd, PAGE + pages * PAGE)
    os.pwrite(fd, b"".join(records), PAGE)
    os.pwrite(fd, struct.pack("<QQ", sum(map(len, records)), 0), 1024)
    rings = PerfRings.from_fds({0: fd}, EVENT, pages)
    assert rings.drain()["seq"].tolist() == list(range(200))
    assert rings.bulk_records == 100
    rings.close()


def test_an_empty_ring_gives_an_empty_array_of_the_dtype():
    ring = Ring()
    rings = PerfRings.from_fds({0: ring.fd}, lambda: EVENT, PAGES)
    got = rings.drain()
    assert got.dtype == EVENT and len(got) == 0
    rings.close()


def test_pages_must_be_a_power_of_two():
    ring = Ring()
    with pytest.raises(ValueError, match="power of two"):
        PerfRings.from_fds({0: ring.fd}, EVENT, 3)
    os.close(ring.fd)


# -- the engine's choice of transport, and the perf rings' size ---------------

def test_transport_is_forced_by_the_environment_or_probed(monkeypatch):
    from kerntrace.tracers.engine import probe
    from kerntrace.tracers.engine.environment import UsageProblem

    monkeypatch.setenv("KERNTRACE_TRANSPORT", "perf")
    assert probe.transport() == "perf buffer"
    monkeypatch.setenv("KERNTRACE_TRANSPORT", "Ring")
    assert probe.transport() == "ring buffer"
    monkeypatch.setenv("KERNTRACE_TRANSPORT", "carrier-pigeon")
    with pytest.raises(UsageProblem, match="KERNTRACE_TRANSPORT=carrier-pigeon: expected perf or ring"):
        probe.transport()
    monkeypatch.delenv("KERNTRACE_TRANSPORT")
    monkeypatch.setattr(probe, "probe_ringbuf", lambda: probe.Verdict(False, "no map type"))
    assert probe.transport() == "perf buffer"
    monkeypatch.setattr(probe, "probe_ringbuf", lambda: probe.Verdict(True))
    assert probe.transport() == "ring buffer"


def test_perf_rings_share_the_ring_size_among_cpus_with_a_floor():
    from kerntrace.tracers.engine.tracer import perf_pages_per_cpu

    mib = 1 << 20
    assert perf_pages_per_cpu(4 * mib, 2) * PAGE == 2 * mib
    assert perf_pages_per_cpu(4 * mib, 64) * PAGE == 256 * 1024   # the floor
    assert perf_pages_per_cpu(4096, 2) == 1                        # never more than the ring itself
    assert perf_pages_per_cpu(3 * mib, 4) * PAGE == mib            # a power of two, rounded up
