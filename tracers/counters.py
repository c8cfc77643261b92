"""The system counters behind ``iotrace stat``: dstat's default columns.

A :class:`Sample` holds cumulative kernel counters at one instant; two samples
make an :class:`Interval` of per-second rates.  psutil supplies what it has
(CPU times, per-disk and per-interface bytes, interrupts and context
switches); /proc supplies the rest (procs_running/blocked and forks from
/proc/stat, swap pages from /proc/vmstat: psutil assumes 4 KiB pages there).

Disk totals count whole, bottom-level disks only: a partition's sectors are
also its disk's, and a device-mapper or md device's are also those of the
disks under it (dool's double counting, its issues #32 and #49).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from .engine.environment import UsageProblem

__all__ = [
    "CounterSampler",
    "CPU_FIELDS",
    "Interval",
    "Sample",
    "default_disks",
    "default_interfaces",
    "read_sample",
    "resolve_disks",
    "resolve_interfaces",
    "whole_disk_dev",
]

# Fields of /proc/stat's cpu line that make up the total (guest time is
# already inside user and nice, so it is not added again).
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")

# RAM-backed block devices: their I/O never reaches a disk.  Counted only
# when named with -D.
_RAM_DISK_PREFIXES = ("loop", "ram", "zram")

SYS_BLOCK = "/sys/block"


@dataclass(frozen=True)
class Sample:
    """Cumulative counters, read at ``mono_ns`` (CLOCK_MONOTONIC)."""

    mono_ns: int
    cpu: Mapping[str, float]                   # seconds, CPU_FIELDS
    disks: Mapping[str, tuple[int, int]]       # name -> (read bytes, written bytes)
    nics: Mapping[str, tuple[int, int]]        # name -> (received bytes, sent bytes)
    swap_in_pages: int
    swap_out_pages: int
    interrupts: int
    context_switches: int
    forks: int                                 # /proc/stat "processes"
    procs_running: int
    procs_blocked: int


@dataclass(frozen=True)
class Interval:
    """Rates between two samples: CPU in percent, bytes and events per second."""

    seconds: float
    cpu: Mapping[str, float]                   # usr sys idl wai stl, percent
    disks: Mapping[str, tuple[float, float]]   # group -> (read, writ) bytes/s
    nets: Mapping[str, tuple[float, float]]    # group -> (recv, send) bytes/s
    paging: tuple[float, float]                # (in, out) bytes/s
    system: tuple[float, float]                # (int, csw) per second
    procs: tuple[int, int, float]              # run, blk (now), new per second

    @classmethod
    def between(cls, before: Sample, after: Sample, disk_groups: Mapping[str, Sequence[str]],
                net_groups: Mapping[str, Sequence[str]], page_size: Optional[int] = None) -> "Interval":
        seconds = (after.mono_ns - before.mono_ns) / 1e9
        if seconds <= 0:
            raise ValueError("samples are not in time order")
        page = page_size or os.sysconf("SC_PAGE_SIZE")

        def rate(a: float, b: float) -> float:
            # Counters only grow; a device that vanished and came back starts at 0.
            return max(b - a, 0) / seconds

        d = {k: max(after.cpu[k] - before.cpu[k], 0.0) for k in CPU_FIELDS}
        total = sum(d.values())

        def pct(*keys: str) -> float:
            return 100.0 * sum(d[k] for k in keys) / total if total > 0 else 0.0

        # dool's split: usr holds user, nice, hard and soft irq time.
        cpu = {
            "usr": pct("user", "nice", "irq", "softirq"),
            "sys": pct("system"),
            "idl": pct("idle"),
            "wai": pct("iowait"),
            "stl": pct("steal"),
        }

        def group_rates(groups: Mapping[str, Sequence[str]],
                        b: Mapping[str, tuple[int, int]], a: Mapping[str, tuple[int, int]]) -> dict[str, tuple[float, float]]:
            out = {}
            for group, members in groups.items():
                first = sum(rate(b[m][0], a[m][0]) for m in members if m in a and m in b)
                second = sum(rate(b[m][1], a[m][1]) for m in members if m in a and m in b)
                out[group] = (first, second)
            return out

        return cls(
            seconds=seconds,
            cpu=cpu,
            disks=group_rates(disk_groups, before.disks, after.disks),
            nets=group_rates(net_groups, before.nics, after.nics),
            paging=(rate(before.swap_in_pages, after.swap_in_pages) * page,
                    rate(before.swap_out_pages, after.swap_out_pages) * page),
            system=(rate(before.interrupts, after.interrupts),
                    rate(before.context_switches, after.context_switches)),
            # dstat leaves itself out of the running count.
            procs=(max(after.procs_running - 1, 0), after.procs_blocked, rate(before.forks, after.forks)),
        )


def _read_proc_keyed(path: str, keys: Iterable[str]) -> dict[str, int]:
    wanted = set(keys)
    found: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(" ")
            if name in wanted:
                found[name] = int(rest.split()[0])
    return found


def read_sample() -> Sample:
    import psutil

    mono_ns = time.monotonic_ns()
    times = psutil.cpu_times()
    cpu = {k: float(getattr(times, k, 0.0)) for k in CPU_FIELDS}
    disks = {name: (c.read_bytes, c.write_bytes)
             for name, c in psutil.disk_io_counters(perdisk=True, nowrap=True).items()}
    nics = {name: (c.bytes_recv, c.bytes_sent)
            for name, c in psutil.net_io_counters(pernic=True, nowrap=True).items()}
    stats = psutil.cpu_stats()
    procs = _read_proc_keyed("/proc/stat", ("processes", "procs_running", "procs_blocked"))
    swap = _read_proc_keyed("/proc/vmstat", ("pswpin", "pswpout"))
    return Sample(
        mono_ns=mono_ns,
        cpu=cpu,
        disks=disks,
        nics=nics,
        swap_in_pages=swap.get("pswpin", 0),
        swap_out_pages=swap.get("pswpout", 0),
        interrupts=stats.interrupts,
        context_switches=stats.ctx_switches,
        forks=procs.get("processes", 0),
        procs_running=procs.get("procs_running", 0),
        procs_blocked=procs.get("procs_blocked", 0),
    )


# -- which devices ------------------------------------------------------------

def _diskstats_names() -> list[str]:
    with open("/proc/diskstats") as f:
        return [line.split()[2] for line in f if len(line.split()) > 3]


def default_disks(sys_block: str = SYS_BLOCK) -> list[str]:
    """Whole disks with nothing under them: /sys/block lists no partitions,
    and a device with slaves (dm, md) repeats its slaves' I/O."""
    disks = []
    for name in sorted(os.listdir(sys_block)):
        if name.startswith(_RAM_DISK_PREFIXES):
            continue
        try:
            if os.listdir(os.path.join(sys_block, name, "slaves")):
                continue
        except FileNotFoundError:
            pass
        disks.append(name)
    return disks


def resolve_disks(spec: Optional[str]) -> dict[str, list[str]]:
    """-D value -> column groups: ``{"total": [whole disks]}`` by default,
    else one group per named device (any name in /proc/diskstats, /dev/
    prefix allowed).  An unknown name is a usage error."""
    if not spec:
        return {"total": default_disks()}
    known = set(_diskstats_names())
    groups: dict[str, list[str]] = {}
    for raw in spec.split(","):
        name = raw.strip()
        if name.startswith("/dev/"):
            name = name[len("/dev/"):]
        if not name:
            raise UsageProblem(f"-D {spec!r}: empty disk name")
        if name not in known:
            raise UsageProblem(f"no such disk: {name} (see /proc/diskstats)")
        groups[name] = [name]
    return groups


def whole_disk_dev(name: str, sys_class_block: str = "/sys/class/block") -> tuple[int, int]:
    """(major, minor) of the disk ``name`` is, or is a partition of."""
    path = os.path.realpath(os.path.join(sys_class_block, name))
    if os.path.exists(os.path.join(path, "partition")):
        path = os.path.dirname(path)
    with open(os.path.join(path, "dev")) as f:
        major, minor = f.read().strip().split(":")
    return int(major), int(minor)


def default_interfaces() -> list[str]:
    import psutil

    # dstat's total leaves out loopback: it is not traffic in or out of the host.
    return sorted(n for n in psutil.net_io_counters(pernic=True) if n != "lo")


def resolve_interfaces(spec: Optional[str]) -> dict[str, list[str]]:
    if not spec:
        return {"total": default_interfaces()}
    import psutil

    known = set(psutil.net_io_counters(pernic=True))
    groups: dict[str, list[str]] = {}
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            raise UsageProblem(f"-N {spec!r}: empty interface name")
        if name not in known:
            raise UsageProblem(f"no such network interface: {name}")
        groups[name] = [name]
    return groups


class CounterSampler:
    """The counters `iotrace diagnose` samples once a second: sample() gives
    one row per interval (cpu percent, whole-disk bytes read and written in
    the interval); the caller keeps what it needs of them."""

    def __init__(self) -> None:
        self._disk_groups = resolve_disks(None)
        self.restart()

    def restart(self) -> None:
        """Start counting from now (once the probes are attached)."""
        self._first = read_sample()
        self._last = self._first

    def sample(self) -> Optional[dict[str, Any]]:
        now = read_sample()
        if now.mono_ns <= self._last.mono_ns:
            return None
        interval = Interval.between(self._last, now, self._disk_groups, {})
        read_rate, write_rate = interval.disks["total"]
        row: dict[str, Any] = {
            "mono_ns": now.mono_ns,
            "t_s": round((now.mono_ns - self._first.mono_ns) / 1e9, 3),
            "interval_s": round(interval.seconds, 3),
            **interval.cpu,
            "read_bytes": int(round(read_rate * interval.seconds)),
            "write_bytes": int(round(write_rate * interval.seconds)),
        }
        self._last = now
        return row

    def cpu_seconds_since_start(self, field: str) -> float:
        """CPU seconds in ``field`` (a CPU_FIELDS name) summed over every CPU
        from restart() to the last sample: a counter, so a scraper reading it
        now and then misses no interval."""
        return max(self._last.cpu[field] - self._first.cpu[field], 0.0)

    def since_last(self) -> float:
        return (time.monotonic_ns() - self._last.mono_ns) / 1e9
