"""iotrace odirect without a kernel: event layouts from the object's BTF, the
bio-to-read join, file naming, the summaries and the odirect-bypass rule
on synthetic frames, and the command line's bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kerntrace.analysis.odirect import findings, odirect_bypass, per_file, per_process
from kerntrace.tracers.engine import object_path
from kerntrace.tracers.engine.libbpf import btf_of_elf
from kerntrace.tracers.engine.btf import Btf
from kerntrace.tracers.odirect import ODirectTool, PathNames, block_latencies, dev_name


@pytest.fixture(scope="module")
def btf():
    try:
        return Btf(btf_of_elf(object_path("odirect")))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_event_layouts_come_from_btf(btf):
    reads = btf.dtype("odirect_read_event")
    assert reads.fields["ts_ns"][1] == 0 and reads["offset"] == np.dtype("<i8") and reads["ret"] == np.dtype("<i8")
    assert reads["comm"] == np.dtype("S16") and reads["direct"] == np.dtype("u1")
    blocks = btf.dtype("odirect_block_event")
    assert blocks["queued_ns"] == np.dtype("<u8") and blocks["comm"] == np.dtype("S16")
    files = btf.dtype("odirect_file_event")
    assert files["names"].shape == (12,) and files["names"].base == np.dtype("S64")
    rodata = btf.datasec(".rodata")
    assert "kt_filter_pids" in rodata
    assert {"unattributed_requests", "unattributed_bytes", "kt_lost_events"} <= set(btf.datasec(".bss"))


def test_block_latencies_split_queue_and_device_and_mark_the_unknown():
    queued = np.array([100, 100, 0, 500], dtype=np.uint64)
    issued = np.array([130, 0, 200, 400], dtype=np.uint64)  # last: merged into a request issued before
    done = np.array([190, 250, 260, 700], dtype=np.uint64)
    queue, device = block_latencies(queued, issued, done)
    assert queue[0] == 30 and device[0] == 60
    assert np.isnan(queue[1]) and np.isnan(device[1])       # issue not seen
    assert np.isnan(queue[2]) and device[2] == 60           # never seen queued (unattributed)
    assert queue[3] == 0 and device[3] == 300


def _records(dtype, rows):
    arr = np.zeros(len(rows), dtype)
    for i, row in enumerate(rows):
        for key, value in row.items():
            arr[i][key] = value
    return arr


def test_bios_get_the_file_of_the_read_they_were_queued_in_as_they_stream(btf):
    """A bio names the read its thread was in (read_enter_ns); its record
    may come before that read's (it completes first), then it waits for it;
    one queued in no read gets no file; io_uring reads complete in any
    order, so their bios wait even when a later read was seen."""
    tool = ODirectTool()
    tool.paths._by_inode = {(1, 10): "/a", (1, 11): "/b", (1, 12): "/u"}
    read_t, block_t = btf.dtype("odirect_read_event"), btf.dtype("odirect_block_event")

    def read(tid, enter, exit_, ino):
        return {"tid": tid, "pid": tid, "ts_ns": exit_, "latency_ns": exit_ - enter, "dev": 1, "ino": ino,
                "has_file": 1, "fd": 3, "ret": 4096, "direct": 1, "comm": b"r"}

    def bio(tid, enter, queued, done, uring=0):
        return {"tid": tid, "pid": tid, "read_enter_ns": enter, "queued_ns": queued, "ts_ns": done,
                "bytes": 4096, "op": 0, "attributed": 1, "completed": 1, "uring_read": uring, "comm": b"r"}

    # poll 1: the read of /a (tid 7) is drained, then bios: one of it, one
    # of tid 7's next read (not drained yet), one outside any read
    tool.update("odirect", "odirect_reads", _records(read_t, [read(7, 100, 200, 10)]))
    shown = tool.update("odirect", "odirect_blocks", _records(block_t, [
        bio(7, 100, 150, 190), bio(7, 300, 310, 320), bio(7, 0, 250, 260),
        bio(8, 500, 510, 520, uring=1)]))
    assert list(shown.batch["queued_ns"]) == [150, 250] and shown.paths == ["/a", ""]
    # poll 2: tid 7's read of /b, and a later io_uring read of tid 8 first
    tool.update("odirect", "odirect_reads", _records(read_t, [read(7, 300, 400, 11), read(8, 600, 650, 12)]))
    shown = tool.update("odirect", "odirect_blocks", _records(block_t, [bio(7, 0, 410, 420)]))
    assert list(shown.batch["queued_ns"]) == [310, 410] and shown.paths == ["/b", ""]
    # the io_uring read of the waiting bio completes last
    tool.update("odirect", "odirect_reads", _records(read_t, [read(8, 500, 700, 12)]))
    (late,) = [events for _obj, _ring, events in [("odirect", "odirect_blocks",
                                                    tool._blocks(np.zeros(0, block_t), final=True))]]
    assert list(late.batch["queued_ns"]) == [510] and late.paths == ["/u"]
    files = {f["path"]: f for f in per_file(tool.stats)}
    assert files["/a"]["block_bytes"] == files["/b"]["block_bytes"] == files["/u"]["block_bytes"] == 4096


def test_path_names_join_dentries_under_the_mount_point(btf):
    names = PathNames()
    names._mounts = {(254 << 20) | 1: "/", (8 << 20) | 2: "/data"}
    files = np.zeros(3, btf.dtype("odirect_file_event"))
    files[0]["dev"], files[0]["ino"], files[0]["depth"] = (254 << 20) | 1, 10, 4
    files[0]["names"][:4] = [b"db.dat", b"tmp", b"var", b"/"]
    files[1]["dev"], files[1]["ino"], files[1]["depth"] = (8 << 20) | 2, 11, 2
    files[1]["names"][:2] = [b"x", b"/"]
    files[2]["dev"], files[2]["ino"], files[2]["depth"], files[2]["truncated"] = (254 << 20) | 1, 12, 12, 1
    files[2]["names"][:] = [b"leaf"] + [b"d"] * 11
    names.learn(files)
    assert names.name(99, 3, (254 << 20) | 1, 10, True) == "/var/tmp/db.dat"
    assert names.name(99, 4, (8 << 20) | 2, 11, True) == "/data/x"
    assert names.name(99, 5, (254 << 20) | 1, 12, True).startswith(".../d/")
    assert names.name(99, -1, 0, 0, False) == ""
    # Unknown inode of a process that is gone: dev:ino.
    assert names.name(2**22 + 7, 3, (9 << 20) | 9, 77, True) == "[9:9:77]"


def test_dev_name_decodes_the_kernel_encoding():
    assert dev_name((254 << 20) | 1) == "254:1"


def reads_frame(rows):
    cols = ["pid", "tid", "comm", "syscall", "path", "direct", "asked", "ret", "latency_ns"]
    df = pd.DataFrame(rows, columns=cols)
    df["bytes"] = df["ret"].clip(lower=0)
    return df


def blocks_frame(rows):
    cols = ["pid", "tid", "comm", "attributed", "op", "bytes", "queue_ns", "device_ns", "path"]
    return pd.DataFrame(rows, columns=cols)


def synthetic():
    reads = reads_frame(
        [(100, 100, "dbreader", "pread64", "/var/tmp/db", True, 4096, 4096, 200_000)] * 300
        + [(100, 101, "dbreader", "read", "/etc/conf", False, 4096, 100, 2_000)] * 10
        + [(200, 200, "cat", "read", "/var/tmp/log", False, 65536, 65536, 5_000)] * 4
        + [(200, 200, "cat", "read", "/var/tmp/log", False, 65536, -9, 1_000)]
    )
    blocks = blocks_frame(
        [(100, 100, "dbreader", True, "R", 4096, 1_000, 150_000, "/var/tmp/db")] * 300
        + [(200, 200, "cat", True, "R", 131072, 1_000, 90_000, "/var/tmp/log")] * 2
        + [(0, 0, "", False, "R", 4096, 0, 50_000, "")]
    )
    return {"read": reads, "block": blocks}


def test_per_process_summary():
    rows = {r["pid"]: r for r in per_process(synthetic())}
    db = rows[100]
    assert db["comm"] == "dbreader" and db["reads"] == 310 and db["read_bytes"] == 300 * 4096 + 1000
    assert db["odirect_reads"] == 300 and db["odirect_bytes"] == 300 * 4096
    assert db["block_ios"] == 300 and db["block_bytes"] == 300 * 4096
    assert db["odirect_p50_ms"] == pytest.approx(0.2)
    cat = rows[200]
    assert cat["odirect_reads"] == 0 and cat["odirect_share"] == 0 and cat["errors"] == 1
    assert cat["read_bytes"] == 4 * 65536 and cat["block_bytes"] == 2 * 131072
    assert 0 not in rows  # unattributed block I/O is nobody's


def test_summaries_are_strict_json():
    import json

    frames = synthetic()
    frames["block"] = pd.concat([frames["block"], blocks_frame([(300, 300, "kworker", True, "W", 4096, 0, 1, "")])])
    rows = per_process(frames) + per_file(frames)
    json.dumps(rows, allow_nan=False)
    (kworker,) = [r for r in per_process(frames) if r["pid"] == 300]
    assert kworker["reads"] == 0 and kworker["latency_p50_ms"] is None and kworker["block_bytes"] == 4096
    (conf,) = [r for r in per_file(frames) if r["path"] == "/etc/conf"]
    assert conf["odirect_p50_ms"] is None


def test_per_file_summary():
    rows = {r["path"]: r for r in per_file(synthetic())}
    assert rows["/var/tmp/db"]["odirect_share"] == 1.0 and rows["/var/tmp/db"]["block_bytes"] == 300 * 4096
    assert rows["/etc/conf"]["odirect_share"] == 0.0 and rows["/etc/conf"]["pids"] == [100]
    assert rows["/var/tmp/log"]["reads"] == 5


def test_odirect_bypass_finding_has_the_numbers():
    (f,) = findings(synthetic(), duration_s=10.0)
    assert f.id == "odirect-bypass" and f.severity == "warning"
    assert "300 O_DIRECT reads" in f.summary and "1.2 MiB" in f.summary
    assert "0.200 ms" in f.summary  # median O_DIRECT latency
    assert "their buffered reads took 0.002 ms median (10 reads)" in f.summary  # dbreader's, not cat's
    (row,) = f.evidence
    assert row == {"pid": 100, "comm": "dbreader", "file": "/var/tmp/db", "odirect_reads": 300,
                   "bytes": 300 * 4096, "avg_bytes": 4096, "p50_ms": 0.2, "p99_ms": 0.2,
                   "disk_read_bytes": 300 * 4096}
    assert "without O_DIRECT" in f.recommendation


def test_no_finding_without_odirect_reads():
    frames = synthetic()
    frames["read"] = frames["read"][~frames["read"]["direct"]]
    assert findings(frames) == []
    assert odirect_bypass({}) == []


def test_few_small_odirect_reads_are_info_and_databases_are_named():
    reads = reads_frame([(5, 5, "mysqld", "pread64", "/var/lib/mysql/ibdata1", True, 16384, 16384, 90_000)] * 3)
    (f,) = odirect_bypass({"read": reads})
    assert f.severity == "info"
    assert "mysqld usually reads with O_DIRECT on purpose" in f.recommendation


def run_cli(*args):
    code = "import sys; from kerntrace.tracers.cli import iotrace_main; sys.exit(iotrace_main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "odirect", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["-p", "999999999"], "no such process: 999999999"),
    ([], "say what to trace"),
    (["-c", "/nonexistent/reader"], "cannot start '/nonexistent/reader'"),
    (["-c", "true", "-d", "-1"], "-d"),
    (["-p", str(os.getpid()), "-c", "true"], "not both"),
    (["-c", "true", "-o", "/nonexistent/dir/trace"], "-o /nonexistent/dir/trace: no such directory /nonexistent/dir"),
    (["-c", "true", "-o", "/etc/passwd"], "-o /etc/passwd: exists and is not a directory"),
    (["-c", "true", "-o", "/etc"], "-o /etc: directory is not empty and holds no kerntrace trace"),
    (["-c", "true", "-o", "/proc/kerntrace-trace"], "-o /proc/kerntrace-trace: cannot create it"),
    (["-c", "true", "-o", "/tmp/t", "--flush", "0"], "--flush"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and message in res.stderr
