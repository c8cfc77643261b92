"""iotrace stat against a real O_DIRECT reader: the disk-read column and the
BPF columns must show what the reader did, in the intervals covering it."""
from __future__ import annotations

import datetime
import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

import loaded

MIB = 1 << 20
READ_MIB = 96
BLOCK = 16 * 1024
READER_COMM = "ktstat-reader"

# Reads the file once with O_DIRECT (page-aligned buffer from mmap), under a
# comm of its own, after a go-byte on stdin; prints the bytes it read, the
# time it spent inside readv() (its D-state sleeps can only be there) and the
# block-read bytes /proc/self/io charged to it (start-up included).  Its
# start-up (which may read the interpreter's files from disk) ends before
# "ready", so the test can start counting after it.
READER = f"""
import mmap, os, sys, time
with open("/proc/self/comm", "w") as f:
    f.write({READER_COMM!r})
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, {BLOCK})
print("ready", flush=True)
sys.stdin.read(1)
total = 0
in_read_ns = 0
while True:
    t0 = time.monotonic_ns()
    n = os.readv(fd, [buf])
    in_read_ns += time.monotonic_ns() - t0
    if n <= 0:
        break
    total += n
# What the kernel's own per-task I/O accounting (submit_bio) charged us.
with open("/proc/self/io") as f:
    io_read = int(next(l for l in f if l.startswith("read_bytes:")).split()[1])
print(total, in_read_ns, io_read, flush=True)
"""

STAT = "import sys; from kerntrace.tracers.cli import iotrace_main; sys.exit(iotrace_main(sys.argv[1:]))"


def make_file(directory: str, mib: int) -> str:
    path = os.path.join(directory, "odirect.dat")
    chunk = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return path


class StatRun:
    """`iotrace stat INTERVAL 1000 --json` in a child; lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", *args, "--json"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.records: list[dict] = []
        self.summary: dict = {}
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def wait_lines(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        target = len(self.records) + n
        while len(self.records) < target:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"iotrace stat gave {len(self.records)} lines; stderr: {self.proc.stderr.read()}")
            if self.sel.select(left):
                line = self.proc.stdout.readline()
                if line:
                    self._take(json.loads(line))

    def _take(self, record: dict) -> None:
        """Interval records in order; the summary envelope comes last."""
        if record["type"] == "summary":
            self.summary = record
        else:
            assert record["type"] == "interval"
            self.records.append(record)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        # Through the same file object: readline() may have buffered lines
        # that communicate(), reading the raw pipe, would never see.
        rest = self.proc.stdout.read()
        for line in rest.splitlines():
            self._take(json.loads(line))
        self.stderr = self.proc.stderr.read()
        return self.proc.wait(timeout=20)


def test_odirect_reader_shows_in_disk_reads_and_bpf_columns(data_dir):
    path = make_file(data_dir, READ_MIB)
    stat = StatRun("0.5", "1000")
    reader = None
    try:
        stat.wait_lines(1)  # attached and sampling
        first = len(stat.records)
        reader = subprocess.Popen([sys.executable, "-c", READER, path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert reader.stdout.readline() == "ready\n"
        # Count from the first interval that starts after the reader's start-up.
        stat.wait_lines(1)
        before = len(stat.records)
        reader.stdin.write("x")
        reader.stdin.flush()
        out, _ = reader.communicate(timeout=120)  # closes stdin: the go-byte is sent
        read_bytes, in_read_ns, io_read = (int(x) for x in out.split())
        assert read_bytes == READ_MIB * MIB
        assert io_read >= READ_MIB * MIB
        # The interval in which the reader ended must be printed before the stop.
        time.sleep(1.2)
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        rc = stat.stop()
    assert rc == 0, stat.stderr
    covering = stat.records[before:]

    for r in covering:
        assert r["bpf"] is not None, r.get("bpf_unavailable")

    # dsk/total: at least what the reader read (other processes may read
    # too).  Only over the whole run: the disk counts a read when it
    # completes, BPF when it is queued, so a boundary can split them.
    disk_read = sum(r["dsk"]["total"]["read"] * r["interval_s"] for r in covering)
    assert disk_read >= READ_MIB * MIB * 0.999  # rates are rounded to 0.1 B/s

    # The reader's own block-read bytes, exact: what the kernel's per-task
    # accounting charged it, over every interval since it started.  --json
    # ranks the top processes of each interval, so another process reading
    # on this machine at the same time cannot hide it.
    since_start = stat.records[first:]
    assert sum(t["read_bytes"] for r in since_start for t in r["bpf"]["readers_ranked"]
               if t["pid"] == reader.pid) == io_read
    mine = [[t for t in r["bpf"]["readers_ranked"] if t["pid"] == reader.pid] for r in covering]
    assert sum(t["read_bytes"] for ts in mine for t in ts) >= READ_MIB * MIB
    assert {t["comm"] for ts in mine for t in ts} == {READER_COMM}
    for r, ts in zip(covering, mine):
        ranked = r["bpf"]["readers_ranked"]
        assert [t["read_bytes"] for t in ranked] == sorted((t["read_bytes"] for t in ranked), reverse=True)
        assert r["bpf"]["top_reader"] == (ranked[0] if ranked else None)
    # Named as the top reader in the interval(s) where it read the most.
    assert any(r["bpf"]["top_reader"]["pid"] == reader.pid for r, ts in zip(covering, mine) if ts)

    # D state: the reader waits for its reads in io_schedule(), so all of its
    # D time is iowait, and it lies inside the time it spent in readv().
    # (Whether it is also the *most* D-state process depends on what else
    # runs on the machine; the ranking is checked instead.)
    d_mine = [t for r in covering for t in r["bpf"]["dstate_ranked"] if t["pid"] == reader.pid]
    assert d_mine, [r["bpf"]["dstate_ranked"] for r in covering]
    d_total_ms = sum(d["dstate_ms"] for d in d_mine)
    iowait_total_ms = sum(d["iowait_ms"] for d in d_mine)
    assert {d["comm"] for d in d_mine} == {READER_COMM}
    assert abs(iowait_total_ms - d_total_ms) < 1.0
    assert 0 < d_total_ms <= in_read_ns / 1e6
    # The reader's share of all processes' iowait sleep is its own over the sum.
    for r in covering:
        ranked = r["bpf"]["dstate_ranked"]
        assert [t["dstate_ms"] for t in ranked] == sorted((t["dstate_ms"] for t in ranked), reverse=True)
        assert r["bpf"]["most_dstate"] == (ranked[0] if ranked else None)
        for t in ranked:
            if r["bpf"]["iowait_ms_all_tasks"] > 0:
                share = 100 * t["iowait_ms"] / r["bpf"]["iowait_ms_all_tasks"]
                assert abs(t["iowait_share_pct"] - share) < 0.1


def test_table_names_reader_in_the_line_with_its_reads(data_dir):
    """The table view: one line holds the disk reads and the reader's name.
    (Its D-state cell is checked through --json above, with the ranking that
    keeps it exact while other processes on the machine also sleep in D.)"""
    path = make_file(data_dir, 128)
    proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", "1", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The header comes out once the probes are attached and sampling starts.
    header = [proc.stdout.readline(), proc.stdout.readline()]
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = "".join(header).splitlines() + out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("--total-cpu-usage--")
    def names_dd_with_reads(line):
        cells = line.split("|")
        return cells[1].split()[0].endswith("M") and cells[-1].startswith("dd/")

    assert any(names_dd_with_reads(line) for line in lines[2:]), out


def test_no_bpf_leaves_columns_unavailable(capsys):
    from kerntrace.tracers.cli import iotrace_main

    rc = iotrace_main(["stat", "0.2", "2", "--no-bpf", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    records = [json.loads(line) for line in out.splitlines()]
    summary = records.pop()
    assert summary["type"] == "summary" and summary["tool"] == "stat" and summary["intervals"] == 2
    assert len(records) == 2 and all(r["type"] == "interval" and r["bpf"] is None for r in records)


STAT_PROGRAMS = {"stat_switch", "stat_wakeup", "stat_bio_queue"}


def test_nothing_stays_loaded():
    """While the command runs its three programs are loaded and attached;
    after Ctrl-C no link is left and the programs are released."""
    assert loaded.programs(STAT_PROGRAMS) == {}
    stat = StatRun("0.3", "1000")
    try:
        stat.wait_lines(1)
        ours = loaded.programs(STAT_PROGRAMS)
        assert sorted(ours.values()) == ["stat_bio_queue", "stat_switch", "stat_wakeup"]
        assert sorted(link["prog_id"] for link in loaded.links_of(set(ours))) == sorted(ours)
    finally:
        rc = stat.stop()
    assert rc == 0, stat.stderr
    assert loaded.links_of(set(ours)) == []
    assert loaded.wait_released(set(ours)) == set()


# The parent of vfork() sleeps in TASK_KILLABLE (a D state, not iowait)
# until the child execs or exits: a D-state sleep of a length the test sets.
VFORK_HOLDER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	unsigned int ms = atoi(argv[1]);
	printf("%d\n", getpid());
	fflush(stdout);
	if (vfork() == 0) {
		usleep(ms * 1000);
		_exit(0);
	}
	return 0;
}
"""


def test_long_sleep_counts_in_every_interval_it_covers(tmp_path):
    """A 3 s D-state sleep shows in each 0.5 s line it covers, not only in
    the line where it ends, and none of it is iowait."""
    import shutil

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build the vfork holder")
    src = tmp_path / "holder.c"
    src.write_text(VFORK_HOLDER)
    exe = tmp_path / "holder"
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)

    stat = StatRun("0.5", "1000")
    try:
        stat.wait_lines(1)
        start = len(stat.records)
        holder = subprocess.Popen([str(exe), "3000"], stdout=subprocess.PIPE, text=True)
        pid = int(holder.stdout.readline())
        assert holder.wait(timeout=30) == 0
        time.sleep(1.2)  # until the line of the interval in which it ended is out
    finally:
        rc = stat.stop()
    assert rc == 0, stat.stderr
    mine = [[t for t in r["bpf"]["dstate_ranked"] if t["pid"] == pid] for r in stat.records[start:]]
    per_line = [ts[0]["dstate_ms"] if ts else 0.0 for ts in mine]
    total = sum(per_line)
    assert 2990 <= total <= 3300, per_line
    # At least four lines lie wholly inside the sleep: each holds one interval.
    full = [ms for ms, r in zip(per_line, stat.records[start:]) if ms > 0 and
            abs(ms - r["interval_s"] * 1000) < 25]
    assert len(full) >= 4, per_line
    assert all(t["iowait_ms"] == 0 for ts in mine for t in ts)


def test_reads_on_other_disks_are_not_counted(data_dir):
    """With -D naming another disk, the reader's block bytes (on the disk of
    data_dir) count for neither dsk nor the top-reader column."""
    st = os.stat(data_dir)
    here = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if os.path.exists(os.path.join(here, "partition")):
        here = os.path.dirname(here)
    others = sorted(d for d in os.listdir("/sys/block") if d != os.path.basename(here))
    if not others:
        pytest.skip("this machine has only the disk of the data directory")
    path = make_file(data_dir, 32)
    stat = StatRun("0.5", "1000", "-D", others[0])
    try:
        stat.wait_lines(1)
        first = len(stat.records)
        dd = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], check=True)
        assert dd.returncode == 0
        time.sleep(1.2)
    finally:
        rc = stat.stop()
    assert rc == 0, stat.stderr
    records = stat.records[first:]
    assert records
    for r in records:
        assert set(r["dsk"]) == {others[0]}
        assert all(t["comm"] != "dd" for t in r["bpf"]["readers_ranked"]), r["bpf"]["readers_ranked"]


def _modes(root: str) -> tuple[set[int], set[int]]:
    """The permission bits of every directory (root included) and file."""
    dirs, files = {os.stat(root).st_mode & 0o777}, set()
    for base, subdirs, names in os.walk(root):
        dirs |= {os.stat(os.path.join(base, d)).st_mode & 0o777 for d in subdirs}
        files |= {os.stat(os.path.join(base, n)).st_mode & 0o777 for n in names}
    return dirs, files


def test_trace_dir_holds_every_interval_and_reports_as_live(data_dir, tmp_path):
    """-o DIR: one stat_interval row per --json line, with the same figures
    (typed), and the report's summary is the live one."""
    from kerntrace.tracers.engine.clock import rfc3339_ns
    from kerntrace.tracers.engine.replay import replay_trace
    from kerntrace.tracers.engine.tracedir import TraceReader
    from kerntrace.tracers.stat import StatTool

    path = make_file(data_dir, 32)
    trace = str(tmp_path / "trace")
    proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", "0.5", "5", "--json", "-o", trace],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # attached and sampling
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], check=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in [first, *out.splitlines()]]
    live = records.pop()
    assert live["type"] == "summary" and len(records) == 5

    assert _modes(trace) == ({0o700}, {0o600})
    reader = TraceReader(trace)
    assert reader.complete and reader.kinds() == ["stat_interval"]
    rows = reader.table("stat_interval").to_pylist()
    assert len(rows) == len(records)
    for row, rec in zip(rows, records):
        utc_ns = row["ts_ns"] + reader.meta["clock"]["offset_ns"]
        assert rfc3339_ns(utc_ns) == rec["time"]
        # the trace's time: UTC microseconds (Spark reads no nanosecond timestamps)
        assert row["time"] == datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
            microseconds=utc_ns // 1000)
        assert row["interval_s"] == rec["interval_s"]
        assert {k: row[f"cpu_{k}"] for k in rec["cpu"]} == rec["cpu"]
        assert (row["dsk_total_read"], row["dsk_total_writ"]) == (rec["dsk"]["total"]["read"], rec["dsk"]["total"]["writ"])
        assert (row["net_total_recv"], row["net_total_send"]) == (rec["net"]["total"]["recv"], rec["net"]["total"]["send"])
        assert (row["paging_in"], row["paging_out"]) == (rec["paging"]["in"], rec["paging"]["out"])
        assert (row["system_int"], row["system_csw"]) == (rec["system"]["int"], rec["system"]["csw"])
        assert (row["procs_run"], row["procs_blk"], row["procs_new"]) == tuple(rec["procs"].values())
        assert type(row["procs_run"]) is int and type(row["not_counted_map_full"]) is int
        bpf = rec["bpf"]
        assert row["bpf_unavailable"] is None and bpf is not None
        assert row["dstate_ranked"] == bpf["dstate_ranked"] and row["readers_ranked"] == bpf["readers_ranked"]
        for prefix, key in (("most_dstate", "most_dstate"), ("top_reader", "top_reader")):
            mine = {k[len(prefix) + 1:]: v for k, v in row.items() if k.startswith(prefix + "_")}
            assert mine == (bpf[key] or dict.fromkeys(mine))
        assert (row["iowait_ms_all_tasks"], row["not_counted_map_full"]) == (bpf["iowait_ms_all_tasks"],
                                                                           bpf["not_counted_map_full"])
    # dd's block reads, exact per interval, and all 32 MiB of them
    dd = [t for r in rows for t in r["readers_ranked"] if t["comm"] == "dd"]
    assert sum(t["read_bytes"] for t in dd) >= 32 * MIB

    tool = StatTool.from_trace(reader.meta["options"])
    envelope, findings = replay_trace(reader, tool)
    assert {k: envelope[k] for k in live} == live
    assert reader.summary == live and findings == []
    assert live["intervals"] == 5 and live["stop_reason"] == "5 intervals"
    # the report's totals come from the same rows
    assert sum(v[1] for v in tool.totals.readers.values() if v[0] == "dd") == sum(t["read_bytes"] for t in dd)
