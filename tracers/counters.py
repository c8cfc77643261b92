"""System counters each second, as dstat shows them: CPU usr/sys/idle/iowait
from /proc/stat, disk read/write bytes from /proc/diskstats (whole disks only,
so partitions are not counted twice)."""
from __future__ import annotations

import os
import time
from typing import Any, Optional

__all__ = ["CounterSampler"]

SECTOR = 512


def _cpu() -> list[int]:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # user nice system idle iowait irq softirq steal
    return [int(v) for v in fields[1:9]]


def _whole_disks() -> set[str]:
    try:
        names = set(os.listdir("/sys/block"))
    except OSError:
        return set()
    return {n for n in names if not n.startswith(("loop", "ram", "zram"))}


def _disk_bytes(disks: set[str]) -> tuple[int, int]:
    read = write = 0
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if len(p) > 9 and p[2] in disks:
                read += int(p[5]) * SECTOR
                write += int(p[9]) * SECTOR
    return read, write


class CounterSampler:
    """Call sample() every second; rows() gives one row per interval."""

    def __init__(self) -> None:
        self._disks = _whole_disks()
        self.restart()

    def restart(self) -> None:
        """Start counting from now (once the probes are attached)."""
        self._t0 = time.monotonic()
        self._last: Optional[tuple[float, list[int], tuple[int, int]]] = None
        self._rows: list[dict[str, Any]] = []
        self.sample()

    def sample(self) -> Optional[dict[str, Any]]:
        now = time.monotonic()
        cpu = _cpu()
        disk = _disk_bytes(self._disks)
        row = None
        if self._last is not None:
            t, cpu0, disk0 = self._last
            d = [b - a for a, b in zip(cpu0, cpu)]
            total = sum(d) or 1
            row = {
                "t_s": round(now - self._t0, 3),
                "interval_s": round(now - t, 3),
                "usr": 100.0 * (d[0] + d[1] + d[5] + d[6]) / total,   # dstat counts irq and softirq as usr
                "sys": 100.0 * d[2] / total,
                "idl": 100.0 * d[3] / total,
                "wai": 100.0 * d[4] / total,
                "stl": 100.0 * d[7] / total,
                "read_bytes": disk[0] - disk0[0],
                "write_bytes": disk[1] - disk0[1],
            }
            self._rows.append(row)
        self._last = (now, cpu, disk)
        return row

    def since_last(self) -> float:
        return time.monotonic() - self._last[0] if self._last else 0.0

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)
