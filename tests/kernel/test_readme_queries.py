"""The README's DuckDB queries, run as written over trace directories of
real runs (`-o DIR`), with their figures checked against what the
workloads did."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)
README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
BLOCK = 4096
READS = 256


def readme_queries():
    """The indented SQL blocks of the README: SELECT ... ;"""
    with open(README) as f:
        text = f.read()
    blocks = re.findall(r"((?:^    SELECT.*\n)(?:^    .*\n)*?^    .*;\n)", text, flags=re.M)
    return [textwrap_dedent(b) for b in blocks]


def textwrap_dedent(block):
    return "\n".join(line[4:] for line in block.splitlines())


def query(sql, trace_dir):
    duckdb = pytest.importorskip("duckdb")
    return duckdb.connect().execute(sql.replace("DIR", str(trace_dir))).fetchall()


def trace(tool, *args, prog="iotrace"):
    res = subprocess.run([os.path.join(BIN, prog), tool, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def queries():
    found = readme_queries()
    assert len(found) == 4, found
    return found


@pytest.fixture
def data_file(data_dir):
    path = os.path.join(data_dir, "queries.dat")
    with open(path, "wb") as f:
        f.write(os.urandom(READS * BLOCK))
        f.flush()
        os.fsync(f.fileno())
    return path


def dd_direct(path):
    return f"{shutil.which('dd')} if={path} of=/dev/null bs={BLOCK} iflag=direct count={READS} status=none"


def test_top_odirect_files(queries, data_file, tmp_path):
    out = tmp_path / "odirect"
    trace("odirect", "-c", dd_direct(data_file), "-o", str(out))
    rows = query(queries[0], out)
    assert rows[0] == (data_file, READS, READS * BLOCK)


def test_buffered_reads_per_file(queries, data_file, tmp_path):
    out = tmp_path / "buffered"
    trace("odirect", "-c", f"{shutil.which('dd')} if={data_file} of=/dev/null bs={BLOCK} status=none",
          "-o", str(out))
    rows = query(queries[1], out)
    (mine,) = [r for r in rows if r[0] == data_file]
    # every block, then the read at the end of the file that returns 0
    assert mine[1:3] == (READS + 1, READS * BLOCK) and mine[3] > 0


def test_dstate_time_per_second(queries, data_file, tmp_path):
    out = tmp_path / "dstate"
    trace("dstate", "--min-ms", "0", "-c", dd_direct(data_file), "-o", str(out))
    rows = query(queries[2], out)
    assert rows and all(d_ms >= io_ms >= 0 for _second, d_ms, io_ms in rows)
    import pandas as pd

    # the query's seconds add up to the sleep records it reads
    sleeps = pd.concat([pd.read_parquet(p) for p in sorted((out / "dstate_sleep").glob("*.parquet"))])
    assert json.loads((out / "end.json").read_text())["lost_events"] == 0
    assert sum(r[1] for r in rows) == pytest.approx(sleeps["duration_ns"].sum() / 1e6, abs=0.001 * len(rows))
    io_ns = sleeps.loc[sleeps["iowait"], "duration_ns"].sum()
    assert sum(r[2] for r in rows) == pytest.approx(io_ns / 1e6, abs=0.001 * len(rows))
    assert io_ns > 0  # O_DIRECT reads wait in io_schedule


def test_namespaces_per_container(queries, tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    out = tmp_path / "ip6mr"
    trace("ip6mr", "-c", f"sh -c 'for i in 1 2 3; do {unshare} -n true; done'", "-o", str(out), prog="nstrace")
    rows = query(queries[3], out)
    ((cgroup, created, failed, comms),) = rows
    assert (created, failed) == (3, 0) and "unshare" in comms.split(",")
    assert cgroup == cgroup_id(os.getpid())  # the command runs in the test's cgroup


def cgroup_id(pid):
    """A process's cgroup v2 id: the inode of its cgroup's directory."""
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split("::", 1)[1].strip() for line in f if line.startswith("0::"))
    mounts = [line.split()[4] for line in open("/proc/self/mountinfo") if " - cgroup2 " in line]
    if not mounts:
        pytest.skip("no cgroup v2 hierarchy mounted")
    return os.stat(mounts[0] + path).st_ino
