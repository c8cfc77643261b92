"""TraceWriter on a slow disk: what is flushed while a part is being
written goes into the next write, one part per kind, in order."""
from __future__ import annotations

import threading
import time

import pyarrow as pa

from kerntrace.tracers.engine import tracedir
from kerntrace.tracers.engine.tracedir import TraceReader, TraceWriter


def _batch(first: int, n: int) -> pa.Table:
    return pa.table({"ts_ns": pa.array([time.monotonic_ns()] * n, pa.uint64()),
                     "seq": pa.array(range(first, first + n), pa.uint64())})


def test_flushes_during_a_slow_write_make_one_part_per_kind(tmp_path, monkeypatch):
    writing = threading.Event()
    release = threading.Event()
    real_write = TraceWriter._write

    def slow_write(self, seq, kind, tables):
        writing.set()
        release.wait(10)
        real_write(self, seq, kind, tables)

    monkeypatch.setattr(TraceWriter, "_write", slow_write)
    writer = TraceWriter(str(tmp_path / "t"))
    writer.start({"tool": "test"})
    writer.append("a", _batch(0, 3))
    writer.flush()
    assert writing.wait(10)          # the first part is being written
    for i in range(5):               # five flushes meanwhile, of two kinds
        writer.append("a", _batch(3 + 10 * i, 10))
        writer.append("b", _batch(100 + i, 1))
        writer.flush()
    release.set()
    writer.finish({"duration_s": 0}, {})
    reader = TraceReader(str(tmp_path / "t"))
    parts = [(seq, kind) for seq, kind, _path in reader.parts()]
    assert parts == [(1, "a"), (2, "a"), (3, "b")]
    assert reader.table("a")["seq"].to_pylist() == list(range(53))
    assert reader.table("b")["seq"].to_pylist() == list(range(100, 105))
    assert writer.records == {"a": 53, "b": 5}


def test_a_slow_write_makes_the_next_flush_due_sooner(tmp_path, monkeypatch):
    """A record must be on disk within flush_s of happening: the flush starts
    early by twice the slowest recent write (it may wait for one under way)."""
    writer = TraceWriter(str(tmp_path / "t"), flush_s=1.0)
    writer.start({"tool": "test"})
    writer._writes.append(0.2)
    clock = [1000.0]
    monkeypatch.setattr(tracedir.time, "monotonic", lambda: clock[0])
    writer.append("a", pa.table({"x": [1]}))      # no ts_ns: happened now
    clock[0] += 1.0 - tracedir.POLL_S - 0.4 - 0.01
    writer.flush_if_due()
    assert writer._buffered                        # not yet due
    clock[0] += 0.02
    writer.flush_if_due()
    assert not writer._buffered
    monkeypatch.undo()
    writer.finish({"duration_s": 0}, {})
