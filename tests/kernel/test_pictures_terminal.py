"""Pictures in the terminal (issue 21, items 1-2) on the bundled
reproduction: the log2 histograms of odirect, dstate and diagnose, whose
counts equal the events the same run counted, and ``iotrace dstate
--folded``, the D time per kernel stack for flamegraph.pl and speedscope.
Each runs the real command line, with --json or a trace directory to check
the numbers against."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from kerntrace.analysis.dstate import folded_lines
from kerntrace.tracers.diagnose import DiagnoseTool
from kerntrace.tracers.dstate import DStateTool
from kerntrace.tracers.engine.replay import replay_trace
from kerntrace.tracers.engine.tracedir import TraceReader

from iowait_repro import build_repro, make_data_file, repro_argv  # tests/iowait_repro.py

IOTRACE = os.path.join(os.path.dirname(sys.executable), "iotrace")
CHILDREN = 2
FILE_MIB = 4
FOLDED = re.compile(r"^[^ ]+( [0-9]+)$")
# the first frame of a stack: where the task entered the kernel
ENTRIES = ("entry_SYSCALL_64", "entry_SYSCALL_compat", "asm_exc_", "ret_from_fork", "[unknown]")
HIST_ROW = re.compile(r"^ *(\d+) -> (\d+) *: (\d+) +\|\**\s*\|")


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """(binary, data file) on a block-device filesystem."""
    import shutil
    import tempfile

    workdir = tempfile.mkdtemp(prefix="kerntrace-test-", dir=os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp"))
    try:
        yield build_repro(workdir), make_data_file(workdir, FILE_MIB)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def iotrace(*args, timeout=120):
    res = subprocess.run([IOTRACE, *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def shell(*argvs):
    """One -c command that runs each argv in turn, its output on stderr: on
    the tracer's stdout a line of the reproduction landed inside a JSON line
    (a pipe write over PIPE_BUF is not atomic; seen in the 6.1 guest)."""
    return "sh -c '" + "; ".join(" ".join(a) + " >&2" for a in argvs) + "'"


def summary_of(stdout):
    """(records, summary envelope) of --json output."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines[-1]["type"] == "summary"
    return lines[:-1], lines[-1]


def bucket_sum(hist):
    return sum(b["count"] for b in hist["buckets"])


def printed_histogram(text, title):
    """(lo, hi, count) rows of the histogram printed under title."""
    lines = text.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith(title + " (")]
    rows = []
    for line in lines[start + 2:]:
        m = HIST_ROW.match(line)
        if not m:
            break
        rows.append(tuple(int(g) for g in m.groups()))
    return rows


# ---- odirect ---------------------------------------------------------------------

def test_odirect_histograms_count_the_runs_reads_and_bios(repro, tmp_path):
    """The O_DIRECT readers, then the fixed (buffered) ones: each histogram's
    buckets add up to its kind's events of the same run (O_DIRECT reads of
    the per-process table, the kernel's count of the other reads, the
    credited bios that completed), and `report` prints the same."""
    binary, data = repro
    cmd = shell(repro_argv(binary, data, False, children=CHILDREN, hold_s=0.2),
                repro_argv(binary, data, True, children=CHILDREN, hold_s=0.2))
    trace = str(tmp_path / "odirect")
    records, summary = summary_of(iotrace("odirect", "-f", "--json", "-o", trace, "-c", cmd))
    h = summary["histograms"]
    assert set(h) == {"odirect_read_latency", "buffered_read_latency", "block_device_time"}
    for hist in h.values():
        assert hist["unit"] == "ns" and hist["count"] == bucket_sum(hist)
        assert all(b["hi"] == 2 * max(b["lo"], 1) - 1 for b in hist["buckets"])
    odirect = sum(p["odirect_reads"] for p in summary["processes"])
    assert h["odirect_read_latency"]["count"] == odirect == CHILDREN * (FILE_MIB * 2**20 // 4096 + 1)
    # no read recorded but the O_DIRECT ones: the others are the kernel's counts
    assert {r["type"] for r in records} <= {"read", "block", "read_total"}
    assert all(r["direct"] for r in records if r["type"] == "read") and summary["totals_full"] == 0
    kernel_reads = sum(r["reads"] for r in records if r["type"] == "read_total")
    assert h["buffered_read_latency"]["count"] == kernel_reads
    assert kernel_reads == sum(p["reads"] - p["odirect_reads"] for p in summary["processes"])
    assert kernel_reads >= CHILDREN * (FILE_MIB * 2**20 // 4096 + 1)   # the fixed readers' at least
    blocks = TraceReader(trace).frames()["block"]
    done = blocks[blocks["attributed"].astype(bool) & blocks["completed"].astype(bool)]
    assert h["block_device_time"]["count"] + h["block_device_time"]["no_device_time"] == len(done)
    assert h["block_device_time"]["count"] == int(done["device_ns"].notna().sum()) > 0
    # the same from the trace, and in the text report, bucket by bucket
    again = json.loads(iotrace("report", trace, "--json"))
    assert again["histograms"] == h
    text = iotrace("report", trace)
    assert "     nsecs               : count    distribution" in text
    for hist in h.values():
        assert printed_histogram(text, hist["title"]) == [(b["lo"], b["hi"], b["count"]) for b in hist["buckets"]]


# ---- dstate ----------------------------------------------------------------------

def test_dstate_histograms_count_every_sleep_of_the_totals(repro, tmp_path):
    """The kernel's log2 counts hold every sleep of its totals, short ones
    (not sent with --min-ms 1) included: iowait and other D apart."""
    binary, data = repro
    trace = str(tmp_path / "dstate")
    argv = repro_argv(binary, data, False, children=CHILDREN, hold_s=0.2)
    _records, summary = summary_of(iotrace("dstate", "-f", "--json", "-o", trace, "-c", " ".join(argv)))
    h = summary["histograms"]
    assert set(h) == {"dstate_iowait_time", "dstate_other_time"}
    totals = TraceReader(trace).frames()["dstate_total"]
    iowait = totals["iowait"].astype(bool)
    assert h["dstate_iowait_time"]["count"] == bucket_sum(h["dstate_iowait_time"]) == int(totals[iowait]["count"].sum())
    assert h["dstate_other_time"]["count"] == bucket_sum(h["dstate_other_time"]) == int(totals[~iowait]["count"].sum())
    assert h["dstate_iowait_time"]["count"] + h["dstate_other_time"]["count"] == sum(
        p["count"] for p in summary["processes"])
    # Sent are the sleeps of 1 ms or more (--min-ms 1): those of the buckets
    # above 1 ms, and some of the bucket that holds 1 ms; the rest only counted.
    sent = TraceReader(trace).frames().get("dstate_sleep")
    sent_iowait = 0 if sent is None else int(sent["iowait"].astype(bool).sum())
    buckets = h["dstate_iowait_time"]["buckets"]
    assert sum(b["count"] for b in buckets if b["lo"] >= 1_000_000) <= sent_iowait
    assert sent_iowait <= sum(b["count"] for b in buckets if b["hi"] > 1_000_000)
    assert json.loads(iotrace("report", trace, "--json"))["histograms"] == h
    text = iotrace("report", trace)
    hist = h["dstate_iowait_time"]
    assert printed_histogram(text, hist["title"]) == [(b["lo"], b["hi"], b["count"]) for b in hist["buckets"]]


def test_dstate_histograms_of_a_killed_run_add_up_to_its_totals(repro, tmp_path):
    """A trace cut off before its end (as kill -9 leaves it): the histograms
    come from the last second's tick and the records after it, as the
    totals do, and count the same sleeps."""
    import shutil

    binary, data = repro
    trace = str(tmp_path / "killed")
    argv = repro_argv(binary, data, False, children=CHILDREN, hold_s=1.5)   # ticks while the parent holds
    iotrace("dstate", "-f", "-o", trace, "-c", " ".join(argv))
    live = json.loads(iotrace("report", trace, "--json"))
    for kind in ("dstate_total", "dstate_hist"):
        shutil.rmtree(os.path.join(trace, kind))
    for name in ("end.json", "summary.json"):
        os.unlink(os.path.join(trace, name))
    cut = json.loads(iotrace("report", trace, "--json"))
    assert not cut["trace"]["complete"] and "dstate_total_tick" in cut["totals_from"]
    reader = TraceReader(trace)
    tool = DStateTool.from_trace(reader.meta["options"])
    replay_trace(reader, tool)
    totals = tool.frames()["dstate_totals"]
    iowait = totals["iowait"].astype(bool)
    h = cut["histograms"]
    assert h["dstate_iowait_time"]["count"] == int(totals[iowait]["count"].sum()) > 0
    assert h["dstate_other_time"]["count"] == int(totals[~iowait]["count"].sum())
    # the readers' sleeps all end before the parent's hold, during which the
    # ticks come: the cut trace lacks at most a stray short sleep at the exit
    assert 0 <= live["histograms"]["dstate_iowait_time"]["count"] - h["dstate_iowait_time"]["count"] <= 2


def test_dstate_folded_stacks_of_the_reproduction(repro, tmp_path):
    """`iotrace dstate --folded`: only folded lines on stdout, one per
    distinct stack, root first (the syscall entry) down to the scheduler
    function the wait site called (io_schedule_timeout under
    __iomap_dio_rw for the O_DIRECT readers), microseconds adding up to the
    D time of the kernel's totals; `report` of the trace gives the same
    lines through folded_lines()."""
    binary, data = repro
    trace = str(tmp_path / "folded")
    argv = repro_argv(binary, data, False, children=CHILDREN, hold_s=0.2)
    out = iotrace("dstate", "-f", "--folded", "-o", trace, "-c", " ".join(argv))
    # the reproduction's own line ("parent N: ...") is the only other output
    lines = [line for line in out.splitlines() if not line.startswith("parent ")]
    assert lines and all(FOLDED.match(line) for line in lines), out
    stacks = [line.rsplit(" ", 1)[0] for line in lines]
    assert len(stacks) == len(set(stacks))
    assert all(s.split(";")[0].startswith(ENTRIES) for s in stacks), stacks
    (reader,) = [s for s in stacks if "__iomap_dio_rw" in s]
    frames = reader.split(";")
    assert frames[0].startswith("entry_SYSCALL_64") and frames[-1].startswith("io_schedule")
    assert frames[-2] == "__iomap_dio_rw" and "__schedule" not in frames
    totals = TraceReader(trace).frames()["dstate_total"]
    d_us = (int(totals["total_ns"].sum()) + 500) // 1000
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == d_us
    by_stack = dict(line.rsplit(" ", 1) for line in lines)
    mine = totals[totals["stack"].astype(str).str.contains("__iomap_dio_rw")]
    assert abs(int(by_stack[reader]) - int(mine["total_ns"].sum()) / 1000) <= 1
    reader_ = TraceReader(trace)
    tool = DStateTool.from_trace(reader_.meta["options"])
    replay_trace(reader_, tool)
    assert folded_lines(tool.frames()) == lines
    assert iotrace("report", trace, "--folded").splitlines() == lines


def test_dstate_folded_and_json_are_one_or_the_other():
    res = subprocess.run([IOTRACE, "dstate", "--folded", "--json", "-d", "0"], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_report_folded_of_diagnose_and_not_of_odirect(repro, tmp_path):
    """`report DIR --folded` of a diagnose trace: its dstate part's stacks;
    of an odirect trace (no stacks): one line and exit 2."""
    binary, data = repro
    argv = " ".join(repro_argv(binary, data, False, children=CHILDREN, hold_s=0.2))
    diag, odirect = str(tmp_path / "diagnose"), str(tmp_path / "odirect")
    iotrace("diagnose", "-f", "-o", diag, "-c", argv)
    lines = iotrace("report", diag, "--folded").splitlines()
    reader = TraceReader(diag)
    tool = DiagnoseTool.from_trace(reader.meta["options"])
    replay_trace(reader, tool)
    assert lines and lines == folded_lines(tool.dstate.frames())
    assert any("__iomap_dio_rw" in line for line in lines)
    iotrace("odirect", "-f", "-o", odirect, "-c", argv)
    res = subprocess.run([IOTRACE, "report", odirect, "--folded"], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "odirect" in res.stderr


# ---- diagnose --------------------------------------------------------------------

def test_diagnose_prints_every_histogram(repro):
    binary, data = repro
    argv = repro_argv(binary, data, False, children=CHILDREN, hold_s=0.2)
    _records, summary = summary_of(iotrace("diagnose", "-f", "--json", "-c", " ".join(argv)))
    h = summary["histograms"]
    assert set(h) == {"odirect_read_latency", "buffered_read_latency", "block_device_time", "dstate_iowait_time",
                      "dstate_other_time"}
    assert h["odirect_read_latency"]["count"] == sum(p["odirect_reads"] for p in summary["processes"])
    assert h["dstate_iowait_time"]["count"] + h["dstate_other_time"]["count"] == sum(
        p.get("d_sleeps", 0) for p in summary["processes"])
    text = iotrace("diagnose", "-f", "-c", " ".join(argv))
    for key in ("odirect_read_latency", "block_device_time", "dstate_iowait_time"):
        assert printed_histogram(text, h[key]["title"]), key
