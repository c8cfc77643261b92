"""What already exists when tracing starts, and what is left at its end, read
from /proc: zombies and their parents, tasks in D state with their wait
channel and kernel stack, the traced processes' children.  An incident is
usually met after it began: these rows let the tools count what predates
tracing (zombies, D-state sleeps) from the moment tracing started.

/proc/PID/stat gives a process's start in clock ticks (USER_HZ): the BPF
programs know it in ns, so a process seen here matches one seen there when
both starts fall in the same tick (``coarse_ns``).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    from .engine import BpfTracer

__all__ = ["Task", "kernel_stack", "ns_pids", "pid_ns_inode", "processes", "read_task", "threads",
           "tick_ns", "traced_tgids", "wchan"]


def tick_ns() -> int:
    """One clock tick of /proc/PID/stat's times, in ns."""
    return 1_000_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Task:
    """One line of /proc/PID/stat (or /proc/PID/task/TID/stat)."""

    pid: int          # tgid
    tid: int
    ppid: int         # the real parent's tgid
    state: str        # ps letter: Z zombie, D uninterruptible sleep
    comm: str
    start_ns: int     # start (boot-based), rounded down to a tick
    exit_code: int    # a zombie's status as wait() reports it


def read_task(pid: int, tid: Optional[int] = None) -> Optional[Task]:
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    left, right = data.find(b"("), data.rfind(b")")
    fields = data[right + 2:].split()
    if left < 0 or len(fields) < 20:
        return None
    exit_code = int(fields[49]) if len(fields) > 49 else 0
    return Task(pid=pid, tid=int(data[:left]) if tid is None else tid, ppid=int(fields[1]),
                state=fields[0].decode(), comm=data[left + 1:right].decode("utf-8", "replace"),
                start_ns=int(fields[19]) * tick_ns(), exit_code=exit_code)


def processes() -> Iterator[Task]:
    """Every process, as its main thread's stat line describes it."""
    import psutil

    for pid in psutil.pids():
        task = read_task(pid)
        if task is not None:
            yield task


def threads(pid: int) -> Iterator[Task]:
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return
    for tid in tids:
        task = read_task(pid, tid)
        if task is not None:
            yield Task(pid, tid, task.ppid, task.state, task.comm, task.start_ns, task.exit_code)


def ns_pids(pid: int) -> list[int]:
    """The process's pid in each PID namespace it is in, the host's first
    (/proc/PID/status NSpid; also readable for a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(n) for n in line.split()[1:]]
    except OSError:
        pass
    return []


def pid_ns_inode(pid: int) -> Optional[int]:
    """The inode number of the process's PID namespace (a live process: a
    zombie has none left to show)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def wchan(pid: int, tid: int) -> str:
    """Where a sleeping task waits (the first frame below the scheduler)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/wchan") as f:
            name = f.read().strip()
    except OSError:
        return ""
    return "" if name == "0" else name


def kernel_stack(pid: int, tid: int) -> list[str]:
    """The task's kernel stack, innermost frame first ([] if unreadable):
    lines such as "[<0>] folio_wait_bit_common+0x13f/0x340"."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stack") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    frames = []
    for line in lines:
        name = line.split("] ", 1)[-1].split("+", 1)[0].strip()
        if name:
            frames.append(name)
    return frames


def traced_tgids(tracer: "BpfTracer") -> Optional[set[int]]:
    """The processes a targeted object records, as the engine set them up:
    None for every process (kt_filter_pids off), else the kt_traced map."""
    var = tracer.btf.datasec(".rodata").get("kt_filter_pids")
    rodata = next((m for m in tracer.obj.maps() if m.name.endswith(".rodata")), None)
    if var is None or rodata is None:
        return None
    data = rodata.lookup(b"\0\0\0\0")
    if data is None or not struct.unpack_from("?", data, var.offset)[0]:
        return None
    return {struct.unpack("<I", key)[0] for key in tracer.obj.map("kt_traced").keys()}
