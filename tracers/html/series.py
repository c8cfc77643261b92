"""The numbers behind the HTML report's charts, from a trace directory's
records: series on one time grid (seconds since the trace started), log2
latency histograms, zombies outstanding per parent, namespace attempts.

numpy and pyarrow only, no plotting: every figure a chart draws is tested
without matplotlib.  Times are boot-clock ns in the trace (``ts_ns``);
charts show seconds since the run's start (meta.json's clock.start_ns).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..engine.tracedir import TraceReader

__all__ = [
    "DSleeps",
    "Grid",
    "Latency",
    "NetnsTimeline",
    "Timeline",
    "TraceData",
    "ZombieSteps",
    "d_sleeps",
    "grid_for",
    "latency",
    "netns_timeline",
    "points",
    "spread",
    "timeline",
    "zombie_steps",
]

# At most this many bins on the time axis: a long run gets wider bins
# (a day at one second per bin would be 86 400 steps per series).
MAX_BINS = 600
BIN_CHOICES_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
# The engine's tick: totals (read_total, dstate_total_tick) are written each
# second with what grew since the last one; a row's growth happened within
# this long before it (a little slack for a late tick).
TICK_S = 1.05
TOP_READERS = 6
TOP_PARENTS = 8
# The kinds each tool records: a kind with no record in the trace is still
# a chart's zero (the tracer ran and saw nothing), not a missing chart.
_ODIRECT = {"read", "block", "read_total", "read_total_hist"}
_DSTATE = {"dstate_sleep", "dstate_total", "dstate_total_tick", "dstate_at_attach", "dstate_at_end"}
_ZOMBIES = {"zombie_event", "zombie_at_attach"}
TOOL_KINDS = {
    "odirect": _ODIRECT,
    "dstate": _DSTATE,
    "zombies": _ZOMBIES,
    "diagnose": _ODIRECT | _DSTATE | _ZOMBIES | {"counters"},
    "stat": {"stat_interval"},
    "ip6mr": {"netns_event", "kmsg"},
}


@dataclass(frozen=True)
class Grid:
    """Bin edges in seconds since the trace started; the last bin may be
    shorter (it ends where the run ended)."""

    edges: "np.ndarray[Any, Any]"
    bin_s: float

    @property
    def widths(self) -> "np.ndarray[Any, Any]":
        import numpy as np

        return np.diff(self.edges)

    @property
    def n(self) -> int:
        return len(self.edges) - 1

    @property
    def end(self) -> float:
        return float(self.edges[-1])


def grid_for(duration_s: float) -> Grid:
    import numpy as np

    duration_s = max(float(duration_s), 1e-3)
    bin_s = next((b for b in BIN_CHOICES_S if duration_s / b <= MAX_BINS), BIN_CHOICES_S[-1])
    edges = np.arange(0.0, duration_s, bin_s, dtype=np.float64)
    if duration_s - edges[-1] < 0.05 * bin_s and len(edges) > 1:
        edges = edges[:-1]   # a sliver of a last bin: its rate would be noise
    return Grid(np.append(edges, duration_s), float(bin_s))


def points(grid: Grid, t: "np.ndarray[Any, Any]", amount: Optional["np.ndarray[Any, Any]"] = None
           ) -> "np.ndarray[Any, Any]":
    """Amounts at instants, summed per bin (an instant past the end counts
    in the last bin: the run's end is measured a little before its last
    records are drained)."""
    import numpy as np

    t = np.clip(np.asarray(t, dtype=np.float64), grid.edges[0], grid.edges[-1])
    weights = None if amount is None else np.asarray(amount, dtype=np.float64)
    counts, _ = np.histogram(t, bins=grid.edges, weights=weights)
    return counts.astype(np.float64)


def spread(grid: Grid, t0: "np.ndarray[Any, Any]", t1: "np.ndarray[Any, Any]",
           amount: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    """Amounts spread evenly over their intervals [t0, t1], summed per bin.
    Exact for any number of intervals in O(n log n): the sum of the
    amounts' cumulative shares is piecewise linear in time, with slope
    changes only at interval ends, so it is evaluated at the bin edges by
    interpolation.  Empty intervals are instants."""
    import numpy as np

    t0 = np.asarray(t0, dtype=np.float64)
    t1 = np.asarray(t1, dtype=np.float64)
    amount = np.asarray(amount, dtype=np.float64)
    t0, t1 = np.minimum(t0, t1), np.maximum(t0, t1)
    width = t1 - t0
    instant = width <= 0
    out = points(grid, t1[instant], amount[instant]) if instant.any() else np.zeros(grid.n)
    keep = ~instant
    if not keep.any():
        return out
    t0, t1, rate = t0[keep], t1[keep], amount[keep] / width[keep]
    at = np.concatenate([t0, t1])
    slope_change = np.concatenate([rate, -rate])
    order = np.argsort(at, kind="stable")
    at, slope_change = at[order], slope_change[order]
    slope = np.cumsum(slope_change)   # the slope right after each point
    cumulative = np.concatenate([[0.0], np.cumsum(slope[:-1] * np.diff(at))])
    # Before the first interval nothing has accrued; after the last, all.
    # Amounts outside the grid are folded into its first or last bin.
    at_edges = np.interp(grid.edges, at, cumulative, left=0.0, right=cumulative[-1])
    at_edges[0], at_edges[-1] = 0.0, cumulative[-1]
    return out + np.diff(at_edges)


class TraceData:
    """A trace's records as the charts read them: only the columns asked
    for (a read or block table of a long run is large), times as seconds
    since the start."""

    def __init__(self, reader: "TraceReader", duration_s: float) -> None:
        self.reader = reader
        clock = reader.meta.get("clock") or {}
        self.start_ns = int(clock.get("start_ns") or 0)
        # the kinds the trace holds, and those its tool would have written
        self.kinds = set(reader.kinds()) | TOOL_KINDS.get(str(reader.meta.get("tool")), set())
        if not self.start_ns:
            self.start_ns = self._first_ts()
        self.duration_s = float(duration_s)
        self.grid = grid_for(duration_s)

    def _first_ts(self) -> int:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        first: Optional[int] = None
        for _seq, _kind, path in self.reader.parts():
            if "ts_ns" in pq.read_schema(path).names:
                value = pc.min(pq.read_table(path, columns=["ts_ns"])["ts_ns"]).as_py()
                if value is not None and (first is None or value < first):
                    first = int(value)
        return first or 0

    def frame(self, kind: str, columns: Sequence[str]) -> "pd.DataFrame":
        """The kind's records with those of the columns it has (an empty
        frame if the trace holds none), plus ``t``: seconds since the start."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for _seq, k, path in self.reader.parts():
            if k != kind:
                continue
            names = pq.read_schema(path).names
            tables.append(pq.read_table(path, columns=[c for c in columns if c in names]))
        if not tables:
            return pd.DataFrame(columns=list(columns) + ["t"])
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                frame[name] = frame[name].astype(str)
        if "ts_ns" in frame.columns:
            frame["t"] = (frame["ts_ns"].astype("int64") - self.start_ns) / 1e9
        return frame

    def end_s(self) -> float:
        return self.duration_s


def _label(comm: Any, pid: Any) -> str:
    return f"{comm} {pid}" if comm else str(pid)


def _is_file(paths: "pd.Series") -> "np.ndarray[Any, Any]":
    """Reads of files, not of pipes, sockets and the like (their kind in
    brackets stands for the path: "[sock]")."""
    return ~paths.fillna("").astype(str).str.startswith("[").to_numpy()


def _tick_starts(t: "np.ndarray[Any, Any]", ticks: Optional["np.ndarray[Any, Any]"] = None
                 ) -> "np.ndarray[Any, Any]":
    """Where the growth a tick row reports began: the tick before it (rows of
    one tick share its time; ticks: every tick's time, sorted, default the
    rows'), at most TICK_S earlier, never before 0."""
    import numpy as np

    ticks = np.unique(t) if ticks is None else ticks
    previous = np.concatenate([[0.0], ticks[:-1]])
    start = previous[np.searchsorted(ticks, t)]
    return np.maximum(np.maximum(start, t - TICK_S), 0.0)


# -- D state --------------------------------------------------------------------------------------


@dataclass
class DSleeps:
    """D-state time as intervals: (pid, comm, iowait, t0, t1, ns) per row.
    Sleeps the ring sent are placed exactly; the kernel's totals count
    every sleep, so what they hold beyond the sent ones (sleeps shorter than
    --min-ms) is placed over the tick that reported it."""

    pid: "np.ndarray[Any, Any]"
    comm: list[str]
    iowait: "np.ndarray[Any, Any]"
    t0: "np.ndarray[Any, Any]"
    t1: "np.ndarray[Any, Any]"
    ns: "np.ndarray[Any, Any]"
    source: str

    def __len__(self) -> int:
        return len(self.pid)

    def per_bin(self, grid: Grid, iowait_only: bool = False) -> "np.ndarray[Any, Any]":
        """Tasks in D, on average over each bin (D-seconds per second)."""
        sel = self.iowait if iowait_only else slice(None)
        return spread(grid, self.t0[sel], self.t1[sel], self.ns[sel] / 1e9) / grid.widths

    def per_process(self) -> list[dict[str, Any]]:
        """pid, comm, d_s, iowait_s per process, most D time first."""
        import numpy as np

        out: dict[int, dict[str, Any]] = {}
        for i in np.argsort(self.t1, kind="stable").tolist():
            row = out.setdefault(int(self.pid[i]), {"pid": int(self.pid[i]), "comm": "", "d_s": 0.0,
                                                    "iowait_s": 0.0})
            row["comm"] = self.comm[i] or row["comm"]
            row["d_s"] += self.ns[i] / 1e9
            if self.iowait[i]:
                row["iowait_s"] += self.ns[i] / 1e9
        return sorted((r for r in out.values() if r["d_s"] > 0), key=lambda r: (-r["d_s"], r["pid"]))


def d_sleeps(data: TraceData) -> Optional[DSleeps]:
    """Every D-state nanosecond the trace knows of, as intervals; None when
    the trace has no D-state records at all (not a dstate or diagnose run)."""
    import numpy as np
    import pandas as pd

    kinds = {"dstate_sleep", "dstate_total", "dstate_total_tick", "dstate_at_end"}
    if not kinds & data.kinds:
        return None
    sleeps = data.frame("dstate_sleep", ["ts_ns", "duration_ns", "pid", "comm", "iowait"])
    ticks = data.frame("dstate_total_tick", ["ts_ns", "pid", "tid", "stack_id", "iowait", "at_attach", "comm",
                                             "total_ns"])
    totals = data.frame("dstate_total", ["pid", "tid", "stack_id", "iowait", "at_attach", "comm", "total_ns"])
    at_end = data.frame("dstate_at_end", ["ts_ns", "pid", "comm", "d_s"])
    parts: list[pd.DataFrame] = []
    if len(sleeps):
        t1 = sleeps["t"].to_numpy()
        parts.append(pd.DataFrame({"pid": sleeps["pid"].astype("int64"), "comm": sleeps["comm"].astype(str),
                                   "iowait": sleeps["iowait"].astype(bool),
                                   "t0": t1 - sleeps["duration_ns"].astype("int64").to_numpy() / 1e9, "t1": t1,
                                   "ns": sleeps["duration_ns"].astype("float64")}))
    if len(ticks) or len(totals):
        parts.append(_unsent_d_time(data, ticks, totals, sleeps))
    if len(at_end):
        # Still asleep at the end: in no total, and sent as no sleep.
        t1 = np.full(len(at_end), data.end_s())
        d = at_end["d_s"].astype("float64").to_numpy()
        parts.append(pd.DataFrame({"pid": at_end["pid"].astype("int64"), "comm": at_end["comm"].astype(str),
                                   "iowait": False, "t0": t1 - d, "t1": t1, "ns": d * 1e9}))
    parts = [p for p in parts if len(p)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"pid": [], "comm": [], "iowait": [], "t0": [], "t1": [], "ns": []})
    source = ("the kernel's D-state totals and the sleeps sent" if len(ticks) or len(totals)
              else "the D-state sleeps sent" if len(sleeps) else "the D-state tracer (no task slept in D)")
    return DSleeps(frame["pid"].to_numpy(dtype=np.int64), frame["comm"].astype(str).tolist(),
                   frame["iowait"].to_numpy(dtype=bool), frame["t0"].to_numpy(dtype=np.float64),
                   frame["t1"].to_numpy(dtype=np.float64), frame["ns"].to_numpy(dtype=np.float64), source)


def _unsent_d_time(data: TraceData, ticks: "pd.DataFrame", totals: "pd.DataFrame",
                   sleeps: "pd.DataFrame") -> "pd.DataFrame":
    """The totals' growth not sent as sleeps, per process and iowait, over
    the tick that reported it.  The totals are cumulative per (tid, stack,
    iowait, at_attach); the end's table is the last word (at the run's end)."""
    import numpy as np
    import pandas as pd

    keys = ["pid", "tid", "stack_id", "iowait", "at_attach"]
    rows = [ticks.assign(t=ticks["t"].astype("float64"))] if len(ticks) else []
    if len(totals):
        rows.append(totals.assign(t=data.end_s()))
    frame = pd.concat(rows, ignore_index=True)
    for k in keys:
        if k not in frame.columns:
            frame[k] = 0
    frame["iowait"] = frame["iowait"].astype(bool)
    frame = frame.sort_values(keys + ["t"], kind="stable")
    frame["grew"] = frame.groupby(keys, sort=False)["total_ns"].diff().fillna(frame["total_ns"]).clip(lower=0)
    ticks_at = np.unique(frame["t"].to_numpy(dtype=np.float64))
    out = []
    sent = ({(int(pid), bool(iowait)): g for (pid, iowait), g in sleeps.groupby(["pid", "iowait"])}
            if len(sleeps) else {})
    for (pid, iowait), group in frame.groupby(["pid", "iowait"], sort=False):
        by_time = group.groupby("t", sort=True).agg(grew=("grew", "sum"), comm=("comm", "last"))
        t = by_time.index.to_numpy(dtype=np.float64)
        counted = np.cumsum(by_time["grew"].to_numpy(dtype=np.float64))
        mine = sent.get((int(pid), bool(iowait)))
        if mine is not None and len(mine):
            ends = np.sort(mine["t"].to_numpy(dtype=np.float64))
            durations = mine.sort_values("t")["duration_ns"].to_numpy(dtype=np.float64)
            sent_by = np.concatenate([[0.0], np.cumsum(durations)])[np.searchsorted(ends, t, side="right")]
        else:
            sent_by = np.zeros(len(t))
        unsent = np.maximum.accumulate(np.maximum(counted - sent_by, 0.0))
        grew = np.diff(np.concatenate([[0.0], unsent]))
        starts = _tick_starts(t, ticks_at)
        comms = by_time["comm"].astype(str).tolist()
        out.append(pd.DataFrame({"pid": int(pid), "comm": comms, "iowait": bool(iowait), "t0": starts, "t1": t,
                                 "ns": grew}))
    result = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    return result[result["ns"] > 0] if len(result) else result


# -- the timeline: CPU iowait, D state, reads -----------------------------------------------------


@dataclass
class Timeline:
    """Per bin of grid: CPU iowait (%), tasks in D (average), file-read rates
    of the top readers and the host's disk read rate (bytes/s).  A member is
    None when the trace has no record it comes from."""

    grid: Grid
    cpu_iowait_pct: Optional["np.ndarray[Any, Any]"] = None
    cpu_source: str = ""
    d_all: Optional["np.ndarray[Any, Any]"] = None
    d_iowait: Optional["np.ndarray[Any, Any]"] = None
    d_source: str = ""
    d_whole_host: bool = False   # procs_blocked: every task of the host, not the traced ones
    readers: list[tuple[str, "np.ndarray[Any, Any]"]] = field(default_factory=list)
    readers_source: str = ""
    disk_read: Optional["np.ndarray[Any, Any]"] = None

    @property
    def empty(self) -> bool:
        return self.cpu_iowait_pct is None and self.d_all is None and not self.readers and self.disk_read is None


def timeline(data: TraceData, sleeps: Optional[DSleeps]) -> Timeline:
    grid = data.grid
    out = Timeline(grid)
    if "counters" in data.kinds:
        _counters(data, out)
    elif "stat_interval" in data.kinds:
        _stat_intervals(data, out)
    if sleeps is not None:
        out.d_all = sleeps.per_bin(grid)
        out.d_iowait = sleeps.per_bin(grid, iowait_only=True)
        out.d_source = sleeps.source
    if {"read", "read_total"} & data.kinds:
        _readers(data, out)
    elif "block" in data.kinds:
        _block_readers(data, out)
    return out


def _interval_mean(grid: Grid, t1: "np.ndarray[Any, Any]", interval: "np.ndarray[Any, Any]",
                   value: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    """A per-interval figure (a percentage, a rate) as its time-weighted mean
    per bin; NaN where no interval covers the bin."""
    import numpy as np

    t0 = t1 - interval
    covered = spread(grid, t0, t1, interval)
    weighted = spread(grid, t0, t1, value * interval)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(covered > 1e-9, weighted / np.maximum(covered, 1e-12), np.nan)


def _counters(data: TraceData, out: Timeline) -> None:
    """diagnose's counters: one row per engine tick with the CPU shares (%)
    and the disks' byte counts over its interval."""
    frame = data.frame("counters", ["ts_ns", "interval_s", "wai", "read_bytes"])
    if not len(frame):
        return
    t1 = frame["t"].to_numpy(dtype="float64")
    interval = frame["interval_s"].to_numpy(dtype="float64")
    out.cpu_iowait_pct = _interval_mean(data.grid, t1, interval, frame["wai"].to_numpy(dtype="float64"))
    out.cpu_source = "the CPU counters (all CPUs of the host)"
    if "read_bytes" in frame.columns:
        rate = frame["read_bytes"].to_numpy(dtype="float64") / interval.clip(min=1e-9)
        out.disk_read = _interval_mean(data.grid, t1, interval, rate)


def _stat_intervals(data: TraceData, out: Timeline) -> None:
    """iotrace stat's rows: CPU shares, processes blocked (procs_blk: in D
    when sampled), per-disk read rates and the ranked readers."""
    import numpy as np
    import pyarrow.parquet as pq

    names: set[str] = set()
    for _seq, kind, path in data.reader.parts():
        if kind == "stat_interval":
            names |= set(pq.read_schema(path).names)
    disks = sorted(n for n in names if n.startswith("dsk_") and n.endswith("_read"))
    frame = data.frame("stat_interval", ["ts_ns", "interval_s", "cpu_wai", "procs_blk", "readers_ranked", *disks])
    if not len(frame):
        return
    t1 = frame["t"].to_numpy(dtype="float64")
    interval = frame["interval_s"].to_numpy(dtype="float64")
    grid = data.grid
    if "cpu_wai" in frame.columns:
        out.cpu_iowait_pct = _interval_mean(grid, t1, interval, frame["cpu_wai"].to_numpy(dtype="float64"))
        out.cpu_source = "the CPU counters (all CPUs of the host)"
    if "procs_blk" in frame.columns:
        blocked = _interval_mean(grid, t1, interval, frame["procs_blk"].fillna(0).to_numpy(dtype="float64"))
        out.d_all = blocked
        out.d_source = "procs_blocked in /proc/stat, sampled each interval"
        out.d_whole_host = True
    if disks:
        rate = frame[disks].fillna(0).to_numpy(dtype="float64").sum(axis=1)
        out.disk_read = _interval_mean(grid, t1, interval, rate)
    if "readers_ranked" in frame.columns:
        per_pid: dict[int, "np.ndarray[Any, Any]"] = {}
        labels: dict[int, str] = {}
        for end, length, ranked in zip(t1.tolist(), interval.tolist(), frame["readers_ranked"].tolist()):
            for reader in ranked if ranked is not None else ():
                pid = int(reader["pid"])
                labels[pid] = _label(reader.get("comm"), pid)
                amount = spread(grid, np.array([end - length]), np.array([end]),
                                np.array([float(reader.get("read_bytes") or 0)]))
                per_pid[pid] = per_pid.get(pid, 0) + amount
        _top_readers(out, {p: v / grid.widths for p, v in per_pid.items()}, labels,
                     "the readers stat ranked each interval (block reads queued)")


def _readers(data: TraceData, out: Timeline) -> None:
    """File reads per process: each read the ring sent at its end, and the
    kernel's counts of the others over the tick that reported them."""
    import numpy as np

    grid = data.grid
    reads = data.frame("read", ["ts_ns", "pid", "comm", "bytes", "path"])
    counted = data.frame("read_total", ["ts_ns", "pid", "comm", "bytes", "path", "ftype"])
    per_pid: dict[int, Any] = {}
    labels: dict[int, str] = {}
    if len(reads):
        reads = reads[_is_file(reads["path"])] if "path" in reads.columns else reads
        for pid, group in reads.groupby("pid", sort=False):
            per_pid[int(pid)] = per_pid.get(int(pid), 0) + points(grid, group["t"].to_numpy(),
                                                                  group["bytes"].to_numpy())
            labels[int(pid)] = _label(group["comm"].iloc[-1], pid)
    if len(counted):
        files = (counted["ftype"].astype(str) == "reg").to_numpy() if "ftype" in counted.columns else _is_file(
            counted["path"])
        counted = counted[files]
        t1 = counted["t"].to_numpy(dtype=np.float64)
        counted = counted.assign(t0=_tick_starts(t1) if len(t1) else t1)
        for pid, group in counted.groupby("pid", sort=False):
            per_pid[int(pid)] = per_pid.get(int(pid), 0) + spread(grid, group["t0"].to_numpy(), group["t"].to_numpy(),
                                                                  group["bytes"].to_numpy())
            labels.setdefault(int(pid), _label(group["comm"].iloc[-1], pid))
    _top_readers(out, {p: v / grid.widths for p, v in per_pid.items()}, labels,
                 "the reads sent and the kernel's read counts (bytes returned by reads of files)")


def _block_readers(data: TraceData, out: Timeline) -> None:
    grid = data.grid
    blocks = data.frame("block", ["ts_ns", "pid", "comm", "bytes", "op", "attributed"])
    if not len(blocks):
        return
    blocks = blocks[(blocks["op"].astype(str) == "R") & blocks["attributed"].astype(bool)]
    per_pid = {int(pid): points(grid, g["t"].to_numpy(), g["bytes"].to_numpy()) / grid.widths
               for pid, g in blocks.groupby("pid", sort=False)}
    labels = {int(pid): _label(g["comm"].iloc[-1], pid) for pid, g in blocks.groupby("pid", sort=False)}
    _top_readers(out, per_pid, labels, "block reads queued by each process")


def _top_readers(out: Timeline, per_pid: dict[int, Any], labels: dict[int, str], source: str) -> None:
    import numpy as np

    widths = out.grid.widths
    totals = {pid: float(np.nansum(rate * widths)) for pid, rate in per_pid.items()}
    ranked = sorted((p for p, b in totals.items() if b > 0), key=lambda p: (-totals[p], p))
    out.readers = [(labels[p], np.asarray(per_pid[p], dtype=np.float64)) for p in ranked[:TOP_READERS]]
    rest = ranked[TOP_READERS:]
    if rest:   # so that the stack is every traced process's reads
        others = f"{len(rest)} other process" + ("es" if len(rest) > 1 else "")
        out.readers.append((others, np.sum([per_pid[p] for p in rest], axis=0)))
    out.readers_source = source


# -- read latency ---------------------------------------------------------------------------------


@dataclass
class Latency:
    """Counts per log2 bucket of nanoseconds (bucket k: [2**k, 2**(k+1)) ns),
    buckets low..high, per series (label -> counts)."""

    low: int
    high: int
    series: dict[str, "np.ndarray[Any, Any]"]

    def bucket_range_ns(self, k: int) -> tuple[int, int]:
        return 1 << k, (1 << (k + 1)) - 1


O_DIRECT_SERIES = "O_DIRECT reads"
BUFFERED_SERIES = "buffered file reads (page cache)"
BLOCK_SERIES = "block reads: device time per request"


def _log2(ns: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    import numpy as np

    v = np.asarray(ns, dtype=np.int64).clip(min=1)
    _m, e = np.frexp(v.astype(np.float64))   # v = m * 2**e, 0.5 <= m < 1: exact below 2**53
    return e.astype(np.int64) - 1


def latency(data: TraceData) -> Optional[Latency]:
    """O_DIRECT vs buffered file reads, and block reads' device time.  None
    when the trace has none of their kinds (not an odirect or diagnose run)."""
    import numpy as np

    from ...analysis.odirect import kernel_slot_range

    if not {"read", "read_total_hist", "block"} & data.kinds:
        return None
    buckets: dict[str, list[tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]]] = {
        O_DIRECT_SERIES: [], BUFFERED_SERIES: [], BLOCK_SERIES: []}
    reads = data.frame("read", ["latency_ns", "direct", "path"])
    if len(reads):
        direct = reads["direct"].astype(bool).to_numpy()
        files = _is_file(reads["path"]) if "path" in reads.columns else np.ones(len(reads), dtype=bool)
        lat = reads["latency_ns"].to_numpy(dtype=np.int64)
        buckets[O_DIRECT_SERIES].append((_log2(lat[direct]), np.ones(int(direct.sum()))))
        buffered = ~direct & files
        buckets[BUFFERED_SERIES].append((_log2(lat[buffered]), np.ones(int(buffered.sum()))))
    hist = data.frame("read_total_hist", ["path", "slot", "count"])
    if len(hist):
        hist = hist[_is_file(hist["path"])]
        lows = np.array([kernel_slot_range(int(s))[0] for s in hist["slot"].tolist()], dtype=np.int64)
        buckets[BUFFERED_SERIES].append((_log2(lows), hist["count"].to_numpy(dtype=np.float64)))
    blocks = data.frame("block", ["op", "device_ns", "completed"])
    if len(blocks):
        ok = (blocks["op"].astype(str) == "R") & blocks["device_ns"].notna()
        if "completed" in blocks.columns:
            ok &= blocks["completed"].astype(bool)
        device = blocks.loc[ok, "device_ns"].to_numpy(dtype=np.int64)
        buckets[BLOCK_SERIES].append((_log2(device), np.ones(len(device))))
    merged: dict[str, tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]] = {}
    for label, pieces in buckets.items():
        ks = np.concatenate([k for k, _c in pieces]) if pieces else np.zeros(0, dtype=np.int64)
        cs = np.concatenate([c for _k, c in pieces]) if pieces else np.zeros(0)
        if cs.sum() > 0:
            merged[label] = (ks[cs > 0], cs[cs > 0])
    if not merged:
        return Latency(0, -1, {})
    low = int(min(k.min() for k, _c in merged.values()))
    high = int(max(k.max() for k, _c in merged.values()))
    return Latency(low, high, {label: np.bincount(k - low, weights=c, minlength=high - low + 1)
                               for label, (k, c) in merged.items()})


# -- zombies --------------------------------------------------------------------------------------


@dataclass
class ZombieSteps:
    """Zombies outstanding per parent over time: a child counts from its
    exit (or the attach, a zombie then) until it is freed (reaped), or the
    end.  steps: label -> (times, counts after each time), from 0 to the end."""

    steps: dict[str, tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]]
    parents: list[dict[str, Any]]
    exits: int


def zombie_steps(data: TraceData) -> Optional[ZombieSteps]:
    if not {"zombie_event", "zombie_at_attach"} & data.kinds:
        return None
    events = data.frame("zombie_event", ["ts_ns", "kind", "pid", "ppid", "parent_comm"])
    at_attach = data.frame("zombie_at_attach", ["ts_ns", "pid", "ppid", "parent_comm"])
    end = data.end_s()
    lives: list[tuple[int, str, float, float]] = []   # parent, its comm, from, to
    frees: dict[int, list[float]] = {}
    exits: list[tuple[float, int, int, str]] = [(0.0, int(r.pid), int(r.ppid), str(r.parent_comm))
                                               for r in at_attach.itertuples()]
    if len(events):
        for r in events.sort_values("ts_ns", kind="stable").itertuples():
            if r.kind == "exit":
                exits.append((float(r.t), int(r.pid), int(r.ppid), str(r.parent_comm)))
            elif r.kind == "free":
                frees.setdefault(int(r.pid), []).append(float(r.t))
    exits.sort()
    taken: dict[int, int] = {}
    for t, pid, ppid, parent_comm in exits:
        # A pid is reused only after its free: its exits and frees alternate.
        mine = frees.get(pid, [])
        i = taken.get(pid, 0)
        while i < len(mine) and mine[i] < t:
            i += 1
        freed = min(mine[i], end) if i < len(mine) else end
        taken[pid] = i + 1
        lives.append((ppid, parent_comm, min(t, end), max(freed, min(t, end))))
    if not lives:
        return ZombieSteps({}, [], 0)
    by_parent: dict[int, list[tuple[int, str, float, float]]] = {}
    for life in lives:
        by_parent.setdefault(life[0], []).append(life)
    parents: list[dict[str, Any]] = []
    for ppid, mine_lives in by_parent.items():
        times, counts = _steps([(a, b) for _p, _c, a, b in mine_lives], end)
        parents.append({"parent_pid": ppid, "parent_comm": mine_lives[-1][1], "exits": len(mine_lives),
                        "zombie_s": round(sum(b - a for _p, _c, a, b in mine_lives), 6),
                        "max_outstanding": int(counts.max()), "at_end": int(counts[-1]),
                        "_steps": (times, counts)})
    parents.sort(key=lambda p: (-p["zombie_s"], -p["exits"], p["parent_pid"]))
    steps = {f"parent {_label(p['parent_comm'], p['parent_pid'])}": p["_steps"] for p in parents[:TOP_PARENTS]}
    rest = [life for life in lives if life[0] not in {p["parent_pid"] for p in parents[:TOP_PARENTS]}]
    if rest:
        others = len(parents) - TOP_PARENTS
        steps[f"{others} other parent" + ("s" if others > 1 else "")] = _steps([(a, b) for _p, _c, a, b in rest], end)
    for p in parents:
        del p["_steps"]
    return ZombieSteps(steps, parents, len(lives))


def _steps(lives: list[tuple[float, float]], end: float) -> tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]:
    """(times, outstanding right after each time) from 0 to end, for lives
    [from, to): a child freed at the instant it exited never counts."""
    import numpy as np

    at = np.array([a for a, _b in lives] + [b for _a, b in lives] + [0.0, end])
    change = np.array([1] * len(lives) + [-1] * len(lives) + [0, 0])
    order = np.lexsort((change, at))   # at one instant, frees before exits
    at, change = at[order], change[order]
    times, first = np.unique(at, return_index=True)
    counts = np.cumsum(change)[np.concatenate([first[1:] - 1, [len(at) - 1]])]
    return times, counts


# -- network namespaces (nstrace ip6mr) -----------------------------------------------------------


@dataclass
class NetnsTimeline:
    """Namespace creations that succeeded and failed per bin (per second),
    with the OOM kills and the kernel-log precursor lines as instants."""

    grid: Grid
    created: "np.ndarray[Any, Any]"
    failed: "np.ndarray[Any, Any]"
    oom_kills: list[tuple[float, str]]      # (t, who)
    precursors: list[tuple[float, str, str]]  # (t, kind, line)


def netns_timeline(data: TraceData) -> Optional[NetnsTimeline]:
    import numpy as np

    if not {"netns_event", "kmsg"} & data.kinds:
        return None
    grid = data.grid
    events = data.frame("netns_event", ["ts_ns", "kind", "err", "pid", "comm", "container"])
    kmsg = data.frame("kmsg", ["ts_ns", "kind", "text", "pid", "comm"])
    created = failed = np.zeros(grid.n)
    oom: list[tuple[float, str]] = []
    if len(events):
        attempts = events[events["kind"].astype(str) == "attempt"]
        err = attempts["err"].to_numpy(dtype=np.int64)
        t = attempts["t"].to_numpy(dtype=np.float64)
        created = points(grid, t[err == 0]) / grid.widths
        failed = points(grid, t[err != 0]) / grid.widths
        for r in events[events["kind"].astype(str) == "oom"].itertuples():
            who = _label(r.comm, r.pid) + (f" in {r.container}" if getattr(r, "container", "") else "")
            oom.append((float(r.t), who))
    precursors: list[tuple[float, str, str]] = []
    if len(kmsg):
        for r in kmsg.itertuples():
            if str(r.kind) == "oom":
                continue
            precursors.append((float(r.t), str(r.kind), str(r.text)))
        if not oom:   # kernels without the oom:mark_victim hook: the log's lines
            oom = [(float(r.t), _label(r.comm, r.pid)) for r in kmsg.itertuples() if str(r.kind) == "oom"]
    return NetnsTimeline(grid, created, failed, sorted(oom), sorted(precursors))
