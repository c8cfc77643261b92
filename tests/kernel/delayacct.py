"""The kernel's own counts of a task's sleeps, to hold dstate's against.

taskstats (read over generic netlink) gives a task's voluntary context
switches (nvcsw: one per sleep, and one at exit) and, with delay accounting
on (sysctl kernel.task_delayacct), blkio_count: the sleeps it began with
in_iowait set once __schedule dequeued it, counted at their wakeup.  A test
reads them while the task is a zombie, before it is reaped.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator, NamedTuple

import pytest

if TYPE_CHECKING:
    import pandas as pd

SYSCTL = "/proc/sys/kernel/task_delayacct"


@pytest.fixture
def delayacct() -> Iterator[None]:
    """Delay accounting on for the test (tasks started meanwhile are counted)."""
    if not os.path.exists(SYSCTL):
        pytest.skip("kernel.task_delayacct missing: no CONFIG_TASK_DELAY_ACCT")
    with open(SYSCTL) as f:
        before = f.read().strip()
    with open(SYSCTL, "w") as f:
        f.write("1")
    try:
        yield
    finally:
        with open(SYSCTL, "w") as f:
            f.write(before)


# Run in a child that starts the reader: it waits for the reader's exit
# without reaping it, reads its taskstats, then reaps it.  Writes the reader's
# pid, then "STATUS BLKIO_COUNT NVCSW", to its first argument ("-": stdout);
# with "--go" second, it starts the reader after a line on stdin and exits
# at the end of its stdin.
SPAWN_AND_COUNT = """
import os, subprocess, sys
from pyroute2 import TaskStats
out = sys.stdout if sys.argv[1] == "-" else open(sys.argv[1], "w")
argv = sys.argv[2:]
go = argv[0] == "--go"
if go:
    sys.stdin.readline()
    argv = argv[1:]
reader = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
print(reader.pid, file=out, flush=True)
os.waitid(os.P_PID, reader.pid, os.WEXITED | os.WNOWAIT)
ts = TaskStats()
ts.bind()
stats = ts.get_pid_stat(reader.pid)[0].get_attr("TASKSTATS_TYPE_AGGR_PID").get_attr("TASKSTATS_TYPE_STATS")
ts.close()
print(reader.wait(), stats["blkio_count"], stats["nvcsw"], file=out, flush=True)
if go:
    sys.stdin.read()  # exits when told: a child that exits while traced has its parent reap it
"""


def spawn_and_count_argv(python: str, argv: list[str], out: str = "-", go: bool = False) -> list[str]:
    """A command line that runs argv and writes to out its pid, then its
    exit status and blkio_count (with go: it starts argv after a line on stdin)."""
    return [python, "-c", SPAWN_AND_COUNT, out, *(["--go"] if go else []), *argv]


class Counted(NamedTuple):
    pid: int
    status: int
    blkio_count: int    # I/O waits delay accounting counted
    nvcsw: int          # voluntary switches: every sleep, and the one at exit


def read_count(out: str) -> Counted:
    """What the child wrote about the reader."""
    with open(out) as f:
        pid, rest = f.read().split("\n", 1)
    status, blkio_count, nvcsw = rest.split()
    return Counted(int(pid), int(status), int(blkio_count), int(nvcsw))


def d_sleeps(totals: "pd.DataFrame", pid: int) -> int:
    """dstate's count of pid's D sleeps, from its dstate_total frame."""
    return int(totals.loc[totals["pid"] == pid, "count"].sum())


def iowait_sleeps(totals: "pd.DataFrame", pid: int) -> int:
    """dstate's count of pid's iowait sleeps."""
    rows = totals[(totals["pid"] == pid) & totals["iowait"].astype(bool)]
    return int(rows["count"].sum())


def assert_sleeps_match(totals: "pd.DataFrame", counted: Counted) -> None:
    """For a reader whose every sleep is a D sleep: dstate counted one per
    voluntary switch but the last, at exit (which the child may have read
    the count before or after), and at least the I/O waits delay accounting
    counted (it skips a sleep woken while its dequeue was still delayed,
    EEVDF's delayed dequeue, Linux 152e11f6df29, v6.12), at most its D sleeps."""
    d, io = d_sleeps(totals, counted.pid), iowait_sleeps(totals, counted.pid)
    assert counted.nvcsw - 1 <= d <= counted.nvcsw, (d, counted)
    assert counted.blkio_count <= io <= d, (io, counted)


__all__ = ["Counted", "assert_sleeps_match", "d_sleeps", "delayacct", "iowait_sleeps", "read_count",
           "spawn_and_count_argv"]
