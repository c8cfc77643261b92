"""One representation of time for a run: records carry bpf_ktime_get_ns()
(CLOCK_MONOTONIC); JSON and trace files show UTC wall-clock time in RFC 3339
with nanoseconds; live text columns show seconds since the start, or UTC
wall-clock time with -T/--utc (as bcc's -T does)."""
from __future__ import annotations

import time

__all__ = ["Clock", "rfc3339_ns"]


def rfc3339_ns(epoch_ns: int) -> str:
    """Nanoseconds since the epoch -> "2026-12-02T16:04:05.123456789Z"."""
    seconds, ns = divmod(int(epoch_ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns:09d}Z"


class Clock:
    """The monotonic-to-wall offset, measured once per run (so every record
    of a run is shifted by the same amount), and the run's start."""

    def __init__(self, utc: bool = False) -> None:
        self.utc = utc
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.start_ns = time.monotonic_ns()

    def restart(self) -> None:
        """The run's time zero: when tracing is attached."""
        self.start_ns = time.monotonic_ns()

    def wall_ns(self, ts_ns: int) -> int:
        return int(ts_ns) + self.offset_ns

    def rfc3339(self, ts_ns: int) -> str:
        return rfc3339_ns(self.wall_ns(ts_ns))

    def seconds(self, ts_ns: int) -> float:
        """Seconds since the run's start."""
        return (int(ts_ns) - self.start_ns) / 1e9

    def live(self, ts_ns: int) -> str:
        """The TIME column: relative seconds, or UTC HH:MM:SS.ffffff with -T."""
        if not self.utc:
            return f"{self.seconds(ts_ns):.6f}"
        seconds, ns = divmod(self.wall_ns(ts_ns), 1_000_000_000)
        return time.strftime("%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1000:06d}"

    @property
    def live_title(self) -> str:
        return "TIME(UTC)" if self.utc else "TIME(s)"

    def now_ns(self) -> int:
        return time.monotonic_ns()
