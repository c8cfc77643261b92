"""Ring-buffer batches -> DataFrame."""
from __future__ import annotations

import numpy as np
import pytest

from kerntrace.tracers.engine import records as common
from kerntrace.tracers.engine.records import decode_events

ALIGNED = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("tid", "<u4"), ("comm", "S16")])
ODD = np.dtype([("pid", "<u4"), ("comm", "S13")])


@pytest.mark.parametrize("dtype", [ALIGNED, ODD])
def test_char_arrays_become_strings_with_exact_counts(dtype):
    arr = np.zeros(1000, dtype=dtype)
    arr["pid"] = np.arange(1000)
    arr["comm"] = b"reader"
    arr["comm"][::10] = b"fio"
    arr["comm"][3] = b"a\xffb"
    frame = decode_events([arr[:500], arr[500:]], dtype)
    assert len(frame) == 1000
    assert frame["pid"].tolist() == list(range(1000))
    counts = frame["comm"].astype(str).value_counts().to_dict()
    assert counts == {"reader": 899, "fio": 100, "a\ufffdb": 1}
    assert frame["comm"][10] == "fio" and frame["comm"][11] == "reader"


def test_empty_batches_give_empty_frame_with_columns():
    frame = decode_events([np.empty(0, dtype=ALIGNED)], ALIGNED)
    assert list(frame.columns) == ["ts", "pid", "tid", "comm"] and len(frame) == 0


def test_hash_collisions_fall_back_to_exact(monkeypatch):
    import pandas as pd

    arr = np.zeros(4, dtype=ALIGNED)
    arr["comm"] = [b"one", b"two", b"one", b"three"]
    # Force every value to the same factorized code, as a total collision would.
    monkeypatch.setattr(pd, "factorize", lambda values: (np.zeros(len(values), dtype=np.int64), values[:1]))
    frame = decode_events([arr], ALIGNED)
    assert frame["comm"].astype(str).tolist() == ["one", "two", "one", "three"]


def test_same_label_from_distinct_bytes_is_kept_apart():
    arr = np.zeros(2, dtype=ALIGNED)
    arr["comm"] = [b"x\0junk", b"x"]
    frame = decode_events([arr], ALIGNED)
    assert frame["comm"].astype(str).tolist() == ["x", "x"]
    assert common is not None
