"""D-state time: per-task and per-process tables, the log2 histograms of
sleep lengths, folded stacks for flame graphs, and rule ``dstate-io``.

Input frame ``dstate_totals`` (one row per thread, kernel stack and iowait
flag): pid, tid, comm, iowait, count, total_ns, max_ns, wait_site, stack, and
at_attach (optional): the sleep was under way when tracing started and is
counted from then (its stack is the one /proc showed at the attach).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .arrays import unique
from .findings import Finding
from .log2 import histogram_dict, indexes_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SleepTotals", "findings", "folded_lines", "histograms", "per_process", "per_task", "top_stacks"]

# D time below this is noise on any machine (a few page-cache misses).
MIN_D_S = 0.25
IO_SHARE = 0.5


TOTAL_COLUMNS = ["pid", "tid", "comm", "stack_id", "iowait", "count", "total_ns", "max_ns", "wait_site", "stack",
                 "at_attach"]
_KEY = ["pid", "tid", "stack_id", "iowait", "at_attach"]


class SleepTotals:
    """The totals table summed from per-sleep records (dstate_sleep: pid,
    tid, comm, stack_id, iowait, at_attach, duration_ns, wait_site, stack),
    for a trace without the kernel's totals (a run killed before its end).
    One entry per (thread, stack, iowait, at_attach), as the kernel keys
    them: memory grows with the distinct keys, not with the sleeps.  Only
    the sleeps the records hold are in it (not those the ring dropped or
    those shorter than the run's --min-event)."""

    def __init__(self) -> None:
        # key -> [count, total_ns, max_ns, comm, wait_site, stack]
        self._rows: dict[tuple[int, int, int, bool, bool], list[Any]] = {}
        # the same sleeps per (iowait, log2 slot of their length), as the
        # kernel's dstate_hists counts them
        self.hist: dict[tuple[bool, int], int] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def add(self, table: Any) -> None:
        """One table of sleep records (pyarrow or pandas)."""
        frame = table.to_pandas() if hasattr(table, "to_pandas") else table
        if frame.empty:
            return
        frame = frame.assign(**{c: frame[c].astype(str) for c in ("comm", "wait_site", "stack")})
        frame = frame.assign(iowait=frame["iowait"].astype(bool), at_attach=frame["at_attach"].astype(bool))
        slots = indexes_of(frame["duration_ns"].astype("int64").to_numpy()) << 1 | frame["iowait"].to_numpy()
        for k, c in zip(*(a.tolist() for a in unique(slots, return_counts=True))):
            key = (bool(k & 1), k >> 1)
            self.hist[key] = self.hist.get(key, 0) + c
        g = frame.groupby(_KEY, sort=False).agg(
            count=("duration_ns", "size"), total_ns=("duration_ns", "sum"), max_ns=("duration_ns", "max"),
            comm=("comm", "last"), wait_site=("wait_site", "last"), stack=("stack", "last"))
        for key, r in zip(g.index, g.itertuples(index=False)):
            k = (int(key[0]), int(key[1]), int(key[2]), bool(key[3]), bool(key[4]))
            row = self._rows.get(k)
            if row is None:
                # The kernel's totals name one frame below the scheduler.
                self._rows[k] = [int(r.count), int(r.total_ns), int(r.max_ns), r.comm,
                                 r.wait_site.split(";", 1)[0], r.stack]
            else:
                row[0] += int(r.count)
                row[1] += int(r.total_ns)
                row[2] = max(row[2], int(r.max_ns))
                row[3] = r.comm

    def frame(self) -> "pd.DataFrame":
        import pandas as pd

        rows = [{"pid": k[0], "tid": k[1], "comm": v[3], "stack_id": k[2], "iowait": k[3], "count": v[0],
                 "total_ns": v[1], "max_ns": v[2], "wait_site": v[4], "stack": v[5], "at_attach": k[4]}
                for k, v in self._rows.items()]
        return pd.DataFrame(rows, columns=TOTAL_COLUMNS)


def _totals(frames: "dict[str, pd.DataFrame]") -> "pd.DataFrame":
    import pandas as pd

    t = frames.get("dstate_totals")
    cols = ["pid", "tid", "comm", "iowait", "count", "total_ns", "max_ns", "wait_site", "stack"]
    if t is None or t.empty:
        return pd.DataFrame(columns=cols)
    # A frame read from a trace has its names as categories: as strings here
    # (grouping by a category would make a row of every combination).
    names = [c for c in ("comm", "wait_site", "stack")
             if c in t.columns and isinstance(t[c].dtype, pd.CategoricalDtype)]
    return t.assign(**{c: t[c].astype(str) for c in names}) if names else t


def _aggregate(t: "pd.DataFrame", keys: list[str]) -> "pd.DataFrame":
    import pandas as pd

    cols = keys + ["comm", "count", "d_ms", "iowait_ms", "other_ms", "longest_ms", "wait_site"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    t = t.assign(io_ns=t["total_ns"].where(t["iowait"].astype(bool), 0))
    g = t.groupby(keys, sort=False)
    out = g.agg(count=("count", "sum"), total_ns=("total_ns", "sum"), io_ns=("io_ns", "sum"),
                max_ns=("max_ns", "max"), comm=("comm", "last")).reset_index()
    # The wait site that holds most of each group's time.
    site = (t.groupby(keys + ["wait_site"], sort=False)["total_ns"].sum().reset_index()
            .sort_values("total_ns", ascending=False).drop_duplicates(keys)[keys + ["wait_site"]])
    out = out.merge(site, on=keys, how="left")
    out["d_ms"] = out["total_ns"] / 1e6
    out["iowait_ms"] = out["io_ns"] / 1e6
    out["other_ms"] = (out["total_ns"] - out["io_ns"]) / 1e6
    out["longest_ms"] = out["max_ns"] / 1e6
    return out.sort_values("d_ms", ascending=False)[cols].reset_index(drop=True)


def per_task(frames: "dict[str, pd.DataFrame]") -> "pd.DataFrame":
    return _aggregate(_totals(frames), ["pid", "tid"])


def per_process(frames: "dict[str, pd.DataFrame]") -> "pd.DataFrame":
    return _aggregate(_totals(frames), ["pid"])


def top_stacks(frames: "dict[str, pd.DataFrame]", n: int) -> "pd.DataFrame":
    import pandas as pd

    t = _totals(frames)
    cols = ["pid", "comm", "iowait", "sleeps", "d_ms", "longest_ms", "wait_site", "stack"]
    if t.empty:
        return pd.DataFrame(columns=cols)
    g = t.groupby(["pid", "iowait", "stack"], sort=False).agg(
        comm=("comm", "last"), sleeps=("count", "sum"), total_ns=("total_ns", "sum"),
        max_ns=("max_ns", "max"), wait_site=("wait_site", "first")).reset_index()
    g["d_ms"] = g["total_ns"] / 1e6
    g["longest_ms"] = g["max_ns"] / 1e6
    g["iowait"] = g["iowait"].astype(bool)
    return g.sort_values("d_ms", ascending=False).head(n)[cols].reset_index(drop=True)


def histograms(counts: Mapping[tuple[bool, int], int], **extra: Any) -> dict[str, dict[str, Any]]:
    """The log2 histograms of sleep lengths from counts per (iowait, log2
    slot): iowait and other D apart, as the per-task table splits them."""
    return {
        "dstate_iowait_time": histogram_dict("D-state sleeps waiting for I/O, in io_schedule",
                                             {s: c for (io, s), c in counts.items() if io}, "sleeps", **extra),
        "dstate_other_time": histogram_dict("Other D-state sleeps: locks, vfork, page faults, ...",
                                            {s: c for (io, s), c in counts.items() if not io}, "sleeps", **extra),
    }


def _folded(stack: str, site: str) -> str:
    """A totals row's stack (innermost first) root first, down to the
    scheduler function its wait site called (io_schedule, schedule, ...):
    the scheduler's own frames inside that one say nothing about why."""
    frames = [f for f in stack.split(";") if f]
    if not frames:
        return "[unknown]"
    if site in frames:
        frames = frames[max(frames.index(site) - 1, 0):]
    return ";".join(reversed(frames))


def folded_lines(frames: "dict[str, pd.DataFrame]") -> list[str]:
    """D time per distinct kernel stack as flamegraph.pl and speedscope read
    it: ``entry_SYSCALL_64_after_hwframe;...;io_schedule 1234``, one line per
    stack, the value in microseconds (as offcputime -f), sorted by stack.
    Every task and iowait flag of a stack in one line; a sleep without a
    stack (the stack map full, or a hash collision) is ``[unknown]``.  The
    values are rounded on their running sum, so they add up to the total D
    time in microseconds."""
    t = _totals(frames)
    per_stack: dict[str, int] = {}
    for stack, site, ns in zip(t["stack"].astype(str), t["wait_site"].astype(str), t["total_ns"].astype("int64")):
        key = _folded(stack, site)
        per_stack[key] = per_stack.get(key, 0) + int(ns)
    lines = []
    summed_ns = shown_us = 0
    for key in sorted(per_stack):
        summed_ns += per_stack[key]
        us = (summed_ns + 500) // 1000 - shown_us
        shown_us += us
        lines.append(f"{key} {us}")
    return lines


def findings(frames: "dict[str, pd.DataFrame]", **context: Any) -> list[Finding]:
    """``dstate-io``: the traced tasks' D time is mostly I/O waits."""
    procs = per_process(frames)
    if procs.empty:
        return []
    total_ms = float(procs["d_ms"].sum())
    io_ms = float(procs["iowait_ms"].sum())
    min_d_s = float(context.get("min_d_s", MIN_D_S))
    if total_ms / 1e3 < min_d_s or io_ms / total_ms < IO_SHARE:
        return []
    top = procs.sort_values("iowait_ms", ascending=False)
    first = top.iloc[0]
    evidence = []
    for r in top.head(5).itertuples():
        if r.d_ms <= 0:
            continue
        evidence.append({
            "pid": int(r.pid), "comm": r.comm, "sleeps": int(r.count), "d_s": round(r.d_ms / 1e3, 3),
            "iowait_s": round(r.iowait_ms / 1e3, 3), "other_d_s": round(r.other_ms / 1e3, 3),
            "share_of_iowait": round(r.iowait_ms / io_ms, 3) if io_ms else 0.0,
            "longest_ms": round(r.longest_ms, 3), "wait_site": r.wait_site,
        })
    duration = context.get("duration_s")
    over = f" over {duration:.1f} s of tracing" if duration else ""
    summary = (
        f"D-state time is mostly I/O: {io_ms / 1e3:.2f} s of {total_ms / 1e3:.2f} s "
        f"({100 * io_ms / total_ms:.0f} %) was spent in io_schedule{over}; "
        f"pid {int(first.pid)} ({first.comm}) accounts for {100 * first.iowait_ms / io_ms:.0f} % of it, "
        f"mostly in {first.wait_site}."
    )
    t = _totals(frames)
    if "at_attach" in t.columns and t["at_attach"].astype(bool).any():
        before = t[t["at_attach"].astype(bool)]
        summary = summary[:-1] + (f"; {before['total_ns'].sum() / 1e9:.2f} s of the D time is of "
                                  f"{before['tid'].nunique()} tasks already in D when tracing started, "
                                  "counted from then.")
    return [Finding(
        id="dstate-io",
        severity="warning",
        title="Uninterruptible sleep is mostly waiting for I/O",
        summary=summary,
        evidence=evidence,
        recommendation=(
            f"See what the I/O is: `iotrace odirect -p {int(first.pid)}` lists each read, whether it "
            "bypasses the page cache (O_DIRECT) and the block requests it causes; reads served from the "
            "page cache do not sleep. `iotrace diagnose` does both at once."
        ),
        references=["https://docs.kernel.org/block/stat.html"],
    )]
