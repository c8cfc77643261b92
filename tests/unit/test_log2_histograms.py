"""Log2 histograms (analysis/log2.py) from each source, exact; their bcc-style
rendering; the odirect and dstate histograms' counts; folded stacks."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kerntrace.analysis import dstate
from kerntrace.analysis.histogram import Histogram
from kerntrace.analysis.log2 import (bucket_bounds, from_histogram, histogram_dict, index_of, indexes_of,
                                     print_histograms, render)
from kerntrace.analysis.odirect import ODirectStats, kernel_slot_range
from kerntrace.tracers.dstate import (HIST_KIND, HIST_TICK_KIND, HIST_TICK_TYPES, HIST_TYPES, SLEEP_KIND,
                                      TICK_KIND, TICK_TYPES, TOTAL_KIND, TOTAL_TYPES, DStateTool, rows_table)


def log2_counts(values):
    out = {}
    for v in values:
        out[index_of(v)] = out.get(index_of(v), 0) + 1
    return out


# ---- buckets ------------------------------------------------------------------------

def test_buckets_are_bccs():
    assert [bucket_bounds(i) for i in range(4)] == [(0, 1), (2, 3), (4, 7), (8, 15)]
    assert [index_of(v) for v in (0, 1, 2, 3, 4, 7, 8, 255, 256)] == [0, 0, 1, 1, 2, 2, 3, 7, 8]
    assert bucket_bounds(63) == (1 << 63, (1 << 64) - 1)


@given(st.lists(st.integers(min_value=0, max_value=(1 << 53) - 1), max_size=200))
def test_vector_index_is_the_scalar_one(values):
    edges = [(1 << k) + d for k in range(53) for d in (-1, 0, 1) if (1 << k) + d >= 0]
    values = values + edges
    assert indexes_of(np.array(values, dtype=np.int64)).tolist() == [index_of(v) for v in values]


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=1 << 45), min_size=1, max_size=300))
def test_log_linear_histogram_sums_into_log2_buckets_exactly(values):
    h = Histogram()
    h.add(np.array(values, dtype=np.int64))
    assert from_histogram(h) == log2_counts(values)


def test_each_kernel_latency_slot_lies_in_one_log2_bucket():
    """bpf/odirect.h: 4 slots per power of two; the odirect summary turns
    them into log2 buckets without guessing."""
    for slot in list(range(4)) + list(range(8, 160)):
        lo, hi = kernel_slot_range(slot)
        assert index_of(lo) == index_of(hi), slot


def test_histogram_dict_runs_from_first_to_last_bucket_and_adds_up():
    d = histogram_dict("t", {3: 2, 6: 5, 9: 0}, "reads", note="n")
    assert d["unit"] == "ns" and d["events"] == "reads" and d["note"] == "n"
    assert [(b["lo"], b["hi"], b["count"]) for b in d["buckets"]] == [
        (8, 15, 2), (16, 31, 0), (32, 63, 0), (64, 127, 5)]
    assert d["count"] == 7 == sum(b["count"] for b in d["buckets"])
    assert histogram_dict("t", {}, "reads")["buckets"] == []


def test_render_is_bccs_print_log2_hist():
    d = histogram_dict("O_DIRECT read latency", {17: 12, 18: 40, 20: 1}, "reads")
    text = render(d)
    lines = text.splitlines()
    assert lines[0] == "O_DIRECT read latency (53 reads):"
    assert lines[1] == "     nsecs               : count    distribution"
    row = re.compile(r"^ *(\d+) -> (\d+) *: (\d+) +\|(\**) *\| \S+ to \S+$")
    got = [row.match(line).groups() for line in lines[2:]]
    assert [(int(lo), int(hi), int(c)) for lo, hi, c, _ in got] == [
        (131072, 262143, 12), (262144, 524287, 40), (524288, 1048575, 0), (1048576, 2097151, 1)]
    assert [len(stars) for *_x, stars in got] == [12 * 40 // 40, 40, 0, 1 * 40 // 40]
    assert len({line.index("|") for line in lines[2:]}) == 1 and len({line.rindex("|") for line in lines[2:]}) == 1
    assert lines[2].startswith("    131072 -> 262143     : 12       |************")
    assert render(histogram_dict("empty", {}, "reads")) == ""


def test_print_histograms_skips_the_empty_and_prints_notes():
    import io

    out = io.StringIO()
    print_histograms({"a": histogram_dict("A", {}, "reads"), "b": histogram_dict("B", {4: 1}, "bios", note="x")},
                     out)
    assert "A (" not in out.getvalue() and "B (1 bio):" in out.getvalue() and "(x)" in out.getvalue()
    out = io.StringIO()
    print_histograms({"a": histogram_dict("A", {}, "sleeps", note="not recorded")}, out)
    assert out.getvalue() == "\nA: not recorded.\n"


# ---- odirect ---------------------------------------------------------------------

def test_odirect_histograms_count_every_read_and_completed_bio():
    rng = np.random.default_rng(7)
    n = 400
    direct = rng.random(n) < 0.6
    latency = rng.integers(500, 50_000_000, n)
    reads = pd.DataFrame({"pid": np.where(direct, 10, 11), "tid": 10, "comm": "r", "syscall": "read",
                          "path": np.where(direct, "/d", "/b"), "direct": direct, "asked": 4096,
                          "ret": np.where(rng.random(n) < 0.1, -5, 4096), "latency_ns": latency})
    reads["bytes"] = reads["ret"].clip(lower=0)
    device = rng.integers(1_000, 9_000_000, 50).astype(float)
    device[:3] = np.nan   # issue not seen
    blocks = pd.DataFrame({"pid": 10, "tid": 10, "comm": "r", "attributed": [True] * 48 + [False] * 2,
                           "completed": [True] * 45 + [False] * 5, "op": "R", "bytes": 4096, "queue_ns": 0.0,
                           "device_ns": device, "path": "/d"})
    stats = ODirectStats()
    stats.add_reads(reads)
    stats.add_blocks(blocks)
    # the kernel's counts of buffered reads: slot -> count
    kernel = {2: 3, 40: 7, 41: 1, 90: 5}
    stats.add_total_hists(pd.DataFrame({"pid": 11, "path": "/b", "slot": list(kernel), "count": list(kernel.values())}))
    h = stats.histograms()
    assert h["odirect_read_latency"]["count"] == int(direct.sum())
    assert from_histogram(stats.odirect_latency) == log2_counts(latency[direct].tolist())
    want = log2_counts(latency[~direct].tolist())
    for slot, c in kernel.items():
        i = index_of(kernel_slot_range(slot)[0])
        want[i] = want.get(i, 0) + c
    assert {b["lo"]: b["count"] for b in h["buffered_read_latency"]["buckets"] if b["count"]} == {
        bucket_bounds(i)[0]: c for i, c in want.items()}
    assert h["buffered_read_latency"]["count"] == int((~direct).sum()) + sum(kernel.values())
    # attributed and completed: 45 bios, 3 of them without a device time
    assert h["block_device_time"]["count"] == 42 and h["block_device_time"]["no_device_time"] == 3
    assert "3 more bios" in h["block_device_time"]["note"]
    # the per-process table counts the same reads
    assert sum(r.odirect_reads for r in stats.by_pid.values()) == h["odirect_read_latency"]["count"]


# ---- dstate ------------------------------------------------------------------------

def totals_frame(rows):
    """(pid, tid, comm, iowait, count, total_ns, wait_site, stack innermost first)"""
    return {"dstate_totals": pd.DataFrame(
        [{"pid": r[0], "tid": r[1], "comm": r[2], "stack_id": i, "iowait": r[3], "count": r[4], "total_ns": r[5],
          "max_ns": r[5], "wait_site": r[6], "stack": r[7], "at_attach": False} for i, r in enumerate(rows)],
        columns=dstate.TOTAL_COLUMNS)}


DIO = ("__schedule;schedule;schedule_timeout;io_schedule_timeout;__iomap_dio_rw;iomap_dio_rw;ext4_file_read_iter;"
       "vfs_read;__x64_sys_pread64;do_syscall_64;entry_SYSCALL_64_after_hwframe")
PAGE = ("__schedule;schedule;io_schedule;folio_wait_bit_common;filemap_fault;__do_fault;do_fault;"
        "handle_mm_fault;do_user_addr_fault;exc_page_fault;asm_exc_page_fault")
VFORK = ("__schedule;schedule;schedule_timeout;wait_for_completion_killable;kernel_clone;__x64_sys_vfork;"
         "do_syscall_64;entry_SYSCALL_64_after_hwframe")
FOLDED = re.compile(r"^[^ ]+( [0-9]+)$")


def test_folded_lines_root_first_to_the_scheduler_entry_one_per_stack():
    frames = totals_frame([
        (1, 1, "reader", True, 10, 1_234_567, "__iomap_dio_rw", DIO),
        (1, 2, "reader", True, 5, 1_000_400, "__iomap_dio_rw", DIO),   # same stack, another thread
        (2, 3, "sh", True, 1, 999, "folio_wait_bit_common", PAGE),
        (3, 4, "parent", False, 2, 60_000_000, "wait_for_completion_killable", VFORK),
        (3, 4, "parent", True, 1, 7_000, "?", ""),                     # no stack
    ])
    lines = dstate.folded_lines(frames)
    assert all(FOLDED.match(line) for line in lines)
    stacks = [line.rsplit(" ", 1)[0] for line in lines]
    assert len(stacks) == len(set(stacks)) == 4
    by = dict(line.rsplit(" ", 1) for line in lines)
    dio = ("entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_pread64;vfs_read;ext4_file_read_iter;"
           "iomap_dio_rw;__iomap_dio_rw;io_schedule_timeout")
    assert dio in by and by["[unknown]"] == "7"
    assert "asm_exc_page_fault;exc_page_fault;do_user_addr_fault;handle_mm_fault;do_fault;__do_fault;" \
           "filemap_fault;folio_wait_bit_common;io_schedule" in by
    assert any(s.endswith("wait_for_completion_killable;schedule_timeout") for s in by)
    total_us = (1_234_567 + 1_000_400 + 999 + 60_000_000 + 7_000 + 500) // 1000
    assert sum(int(v) for v in by.values()) == total_us
    assert abs(int(by[dio]) - 2_234.967) <= 1
    assert dstate.folded_lines({}) == []


def test_folded_keeps_a_stack_with_no_scheduler_frame_whole():
    lines = dstate.folded_lines(totals_frame([(1, 1, "x", False, 1, 5_000, "a", "a;b;c")]))
    assert lines == ["c;b;a 5"]


def test_dstate_histograms_split_iowait_and_other():
    h = dstate.histograms({(True, 20): 3, (True, 22): 1, (False, 25): 2})
    assert h["dstate_iowait_time"]["count"] == 4 and h["dstate_other_time"]["count"] == 2
    assert h["dstate_iowait_time"]["buckets"][0] == {"lo": 1 << 20, "hi": (1 << 21) - 1, "count": 3}
    assert h["dstate_other_time"]["events"] == "sleeps"


def test_sleep_totals_histogram_counts_the_records():
    records = pd.DataFrame({"pid": 1, "tid": 1, "comm": "c", "stack_id": 1, "iowait": [True, True, False],
                            "at_attach": False, "duration_ns": [1_500_000, 1_600_000, 70_000_000],
                            "wait_site": "w", "stack": "w;x"})
    t = dstate.SleepTotals()
    t.add(records)
    assert t.hist == {(True, 20): 2, (False, 26): 1}
    assert sum(t.hist.values()) == int(t.frame()["count"].sum())


# ---- dstate's report: the histograms come from where the totals come from -----------

def _total_rows(count, total_ns, iowait=True, tid=5):
    return [{"pid": 5, "tid": tid, "comm": "r", "stack_id": 1, "iowait": iowait, "count": count, "total_ns": total_ns,
             "max_ns": total_ns, "wait_site": "__iomap_dio_rw", "stack": DIO, "at_attach": False}]


def _sleeps(durations, ts):
    table = pd.DataFrame({"ts_ns": ts, "pid": 5, "tid": 5, "comm": "r", "stack_id": 1, "iowait": True,
                          "at_attach": False, "duration_ns": durations, "wait_site": "__iomap_dio_rw", "stack": DIO})
    return pa.Table.from_pandas(table, preserve_index=False)


def test_report_histograms_from_the_kernels_at_a_clean_end():
    tool = DStateTool()
    tool.replay(SLEEP_KIND, _sleeps([2_000_000], [100]))
    tool.replay(TOTAL_KIND, rows_table(_total_rows(9, 20_000_000), TOTAL_TYPES, 0))
    tool.replay(HIST_KIND, rows_table([{"iowait": True, "slot": 20, "count": 9}], HIST_TYPES, 0))
    tool.restore_end({})
    h = tool.summary(1.0)["histograms"]
    assert h["dstate_iowait_time"]["count"] == 9 == sum(p["count"] for p in tool.summary(1.0)["processes"])
    assert h["dstate_other_time"]["count"] == 0


def test_report_histograms_of_a_killed_run_last_tick_plus_later_records():
    tool = DStateTool()
    tick = [dict(r, ts_ns=1000) for r in _total_rows(7, 9_000_000)]
    tool.replay(SLEEP_KIND, _sleeps([1_100_000, 3_000_000], [900, 1500]))
    tool.replay(TICK_KIND, rows_table(tick, TICK_TYPES, 0))
    tool.replay(HIST_TICK_KIND, rows_table([{"ts_ns": 1000, "iowait": True, "slot": 20, "count": 7}],
                                           HIST_TICK_TYPES, 0))
    s = tool.summary(1.0)
    assert "totals_from" in s
    assert s["histograms"]["dstate_iowait_time"]["count"] == 8 == sum(p["count"] for p in s["processes"])
    assert {b["lo"]: b["count"] for b in s["histograms"]["dstate_iowait_time"]["buckets"] if b["count"]} == {
        1 << 20: 7, 1 << 21: 1}


def test_report_histograms_of_a_run_killed_before_its_first_tick():
    tool = DStateTool()
    tool.replay(SLEEP_KIND, _sleeps([1_100_000, 3_000_000], [900, 1500]))
    tool.replay(HIST_KIND, rows_table([{"iowait": True, "slot": 20, "count": 50}], HIST_TYPES, 0))  # ignored
    s = tool.summary(1.0)
    assert s["histograms"]["dstate_iowait_time"]["count"] == 2 == sum(p["count"] for p in s["processes"])


def test_folded_report_prints_only_the_stacks():
    import io

    tool = DStateTool(folded=True)
    tool.replay(TOTAL_KIND, rows_table(_total_rows(3, 4_000_000) + _total_rows(1, 1_000, tid=6), TOTAL_TYPES, 0))
    tool.restore_end({})
    out = io.StringIO()
    tool.print_report({"histograms": {}}, [], out)
    (line,) = out.getvalue().splitlines()
    assert FOLDED.match(line) and line.endswith("io_schedule_timeout 4001")


def test_a_tick_writes_the_totals_and_the_slots_that_grew():
    class Clock:
        offset_ns = 0

    tool = DStateTool()
    rows = [dict(r, ts_ns=1000) for r in _total_rows(2, 3_000_000)]
    hist = [{"ts_ns": 1000, "iowait": True, "slot": 20, "count": 2}]
    kinds = dict(tool.trace_records("", TICK_KIND, (rows, hist), Clock()))
    assert set(kinds) == {TICK_KIND, HIST_TICK_KIND}
    assert kinds[HIST_TICK_KIND].column("count").to_pylist() == [2]
    assert kinds[HIST_TICK_KIND].schema.field("iowait").type == pa.bool_()
    assert dict(tool.trace_records("", TICK_KIND, ([], hist), Clock())).keys() == {HIST_TICK_KIND}
