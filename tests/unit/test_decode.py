"""Ring-buffer batches -> Records (the columns tools aggregate and traces
keep), and Records -> Parquet parts written without pyarrow, read back by
pyarrow exactly."""
from __future__ import annotations

import io

import numpy as np
import pytest

from kerntrace.tracers.engine import records as common
from kerntrace.tracers.engine.parquet import write_parquet_file
from kerntrace.tracers.engine.tracedir import _microsecond_times
from kerntrace.tracers.engine.records import Records, records_of

ALIGNED = np.dtype([("ts_ns", "<u8"), ("pid", "<u4"), ("tid", "<u4"), ("comm", "S16")])
ODD = np.dtype([("pid", "<u4"), ("comm", "S13")])


def strings(records, name):
    codes, labels = records.labels(name)
    return [labels[c] for c in codes]


@pytest.mark.parametrize("dtype", [ALIGNED, ODD])
def test_char_arrays_become_strings_with_exact_counts(dtype):
    arr = np.zeros(1000, dtype=dtype)
    arr["pid"] = np.arange(1000)
    arr["comm"] = b"reader"
    arr["comm"][::10] = b"fio"
    arr["comm"][3] = b"a\xffb"
    records = Records.concat([records_of(arr[:500], 0), records_of(arr[500:], 0)])
    assert len(records) == 1000
    assert records.column("pid").tolist() == list(range(1000))
    comms = strings(records, "comm")
    assert {c: comms.count(c) for c in set(comms)} == {"reader": 899, "fio": 100, "a\ufffdb": 1}
    assert comms[10] == "fio" and comms[11] == "reader"


def test_empty_batch_gives_empty_records_with_columns():
    records = records_of(np.empty(0, dtype=ALIGNED), 0)
    assert records.column_names == ["time", "ts_ns", "pid", "tid", "comm"] and len(records) == 0


def test_hash_collisions_fall_back_to_exact(monkeypatch):
    arr = np.zeros(4, dtype=ALIGNED)
    arr["comm"] = [b"one", b"two", b"one", b"three"]
    real_unique = common.unique

    def colliding(values, **kwargs):  # every mixed value the same, as a total collision would
        if kwargs.get("return_index") and np.asarray(values).dtype == np.uint64:
            n = len(values)
            return values[:1], np.zeros(1, dtype=np.int64), np.zeros(n, dtype=np.int64)
        return real_unique(values, **kwargs)

    monkeypatch.setattr(common, "unique", colliding)
    assert strings(records_of(arr, 0), "comm") == ["one", "two", "one", "three"]


def test_same_label_from_distinct_bytes_is_kept_apart_then_merged():
    arr = np.zeros(2, dtype=ALIGNED)
    arr["comm"] = [b"x\0junk", b"x"]
    assert strings(records_of(arr, 0), "comm") == ["x", "x"]
    assert common is not None


def test_enums_bools_time_and_nullable_columns_survive_parquet():
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    dtype = np.dtype([("ts_ns", "<u8"), ("ret", "<i8"), ("dev", "<u4"), ("kind", "<u2"), ("flag", "u1"),
                      ("small", "u1"), ("fd", "<i4"), ("comm", "S16"), ("pad", "u1")])
    arr = np.zeros(300, dtype=dtype)
    arr["ts_ns"] = np.arange(300, dtype=np.uint64) * 1000 + (1 << 63)   # above int64: bits kept
    arr["ret"] = np.arange(300) - 150
    arr["dev"] = 0xFFFFFFF0
    arr["kind"] = np.arange(300) % 3 + 1
    arr["flag"] = np.arange(300) % 2
    arr["small"] = 200
    arr["fd"] = -1
    arr["comm"] = [b"a", b"b", b"a"] * 100
    records = records_of(arr, 5, enums={"kind": {1: "attempt", 2: "oom"}}, bools=("flag",))
    latency = np.where(np.arange(300) % 7 == 0, np.nan, np.arange(300) * 1.4)
    records.add("latency_ns", latency, nullable=True).add("share", np.linspace(0, 1, 300))
    buf = io.BytesIO()
    write_parquet_file(buf, records.columns(), len(records))
    got = pq.read_table(io.BytesIO(buf.getvalue()))
    # the time column in microseconds, as a part written by pyarrow has it (Spark reads no nanoseconds)
    want = _microsecond_times(records.to_arrow())
    assert want.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert got.schema.names == want.schema.names
    for name in got.schema.names:
        assert got.schema.field(name).type == want.schema.field(name).type.value_type \
            if pa.types.is_dictionary(want.schema.field(name).type) else want.schema.field(name).type, name
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert set(got.column("kind").to_pylist()) == {"attempt", "oom", "3"}
    assert got.column("latency_ns").null_count == len(range(0, 300, 7))
