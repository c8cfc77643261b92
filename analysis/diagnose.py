"""Rule ``iowait-cause``: who causes the iowait, from the D-state totals,
the O_DIRECT reads and block requests, and the system counters.

Frames used: ``dstate_totals`` (analysis.dstate), odirect's read and block
frames when present (recognized by their columns: reads carry pid, direct,
ret; block requests carry pid, disk, bytes), and ``counters`` (one row per
second: usr, sys, idl, wai, read_bytes, write_bytes).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from . import dstate
from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

    from .odirect import ODirectStats

__all__ = ["counter_totals", "findings", "odirect_frames"]

MIN_IOWAIT_S = 0.25


def odirect_frames(frames: "dict[str, pd.DataFrame]") -> "tuple[Optional[pd.DataFrame], Optional[pd.DataFrame]]":
    reads, blocks = frames.get("read"), frames.get("block")
    for frame in frames.values():
        cols = set(frame.columns)
        if reads is None and {"pid", "direct", "ret"} <= cols:
            reads = frame
        elif blocks is None and {"pid", "bytes", "attributed"} <= cols:
            blocks = frame
    return reads, blocks


def _path_column(reads: "pd.DataFrame") -> "pd.Series":
    if "path" in reads.columns:
        return reads["path"].astype(str)
    if "name" in reads.columns:
        if "parent" in reads.columns:
            return ".../" + reads["parent"].astype(str) + "/" + reads["name"].astype(str)
        return reads["name"].astype(str)
    return reads["fd"].astype(str).radd("fd ")


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _odirect_stats(frames: "dict[str, pd.DataFrame]") -> "Optional[ODirectStats]":
    reads, blocks = odirect_frames(frames)
    if reads is None and blocks is None:
        return None
    from .odirect import ODirectStats

    given = {}
    # hand-made frames may leave out what the rule does not read
    if reads is not None and not reads.empty:
        defaults = {"latency_ns": 0, "comm": "", "direct": False}
        given["read"] = reads.assign(path=_path_column(reads),
                                     **{k: v for k, v in defaults.items() if k not in reads.columns})
    if blocks is not None and not blocks.empty:
        defaults = {"comm": "", "attributed": True, "op": "R", "path": ""}
        given["block"] = blocks.assign(**{k: v for k, v in defaults.items() if k not in blocks.columns})
    return ODirectStats.from_frames(given)


def counter_totals(rows: "Sequence[Mapping[str, Any]]") -> dict[str, Any]:
    """The counters' figures the rule and the summary use, from per-second
    rows (usr, sys, idl, wai, read_bytes, write_bytes)."""
    wai = [float(r["wai"]) for r in rows]
    return {
        "intervals": len(rows),
        "iowait_avg_pct": sum(wai) / len(wai) if wai else 0.0,
        "iowait_max_pct": max(wai) if wai else 0.0,
        "disk_read_bytes": int(sum(r["read_bytes"] for r in rows)),
        "disk_write_bytes": int(sum(r.get("write_bytes", 0) for r in rows)),
    }


def _counter_totals(frame: "Optional[pd.DataFrame]") -> Optional[dict[str, Any]]:
    if frame is None or frame.empty:
        return None
    return counter_totals(frame.to_dict("records"))


def findings(frames: "dict[str, pd.DataFrame]", odirect: "Optional[ODirectStats]" = None,
             counters: Optional[Mapping[str, Any]] = None, **context: Any) -> list[Finding]:
    """frames: dstate_totals (and, in tests, odirect's read/block frames and
    counters rows); odirect: the run's ODirectStats; counters: counter_totals()."""
    procs = dstate.per_process(frames)
    if procs.empty:
        return []
    io_total_ms = float(procs["iowait_ms"].sum())
    if io_total_ms / 1e3 < float(context.get("min_iowait_s", MIN_IOWAIT_S)):
        return []
    # Readers are often many processes with one program (forked workers): group by comm.
    groups = procs.groupby("comm", sort=False).agg(iowait_ms=("iowait_ms", "sum"), d_ms=("d_ms", "sum"))
    comm = str(groups["iowait_ms"].idxmax())
    group = procs[procs["comm"] == comm].sort_values("iowait_ms", ascending=False)
    pids = [int(p) for p in group["pid"]]
    io_ms = float(group["iowait_ms"].sum())
    share = io_ms / io_total_ms

    who = (f"pid {pids[0]} ({comm})" if len(pids) == 1
           else f"{len(pids)} {comm} processes (pids {', '.join(str(p) for p in sorted(pids)[:6])}"
                f"{', ...' if len(pids) > 6 else ''})")
    parts = [f"{who} caused {100 * share:.0f} % of the traced tasks' iowait time "
             f"({io_ms / 1e3:.2f} s asleep in D waiting for I/O)"]

    stats = odirect if odirect is not None else _odirect_stats(frames)
    file_of: dict[int, tuple[str, int, int]] = {}      # pid -> (top file, bytes, O_DIRECT bytes)
    disk_of: dict[int, str] = {}
    if stats is not None:
        mine = [(pid, path, r) for (pid, path), r in stats.by_pid_file.items() if pid in pids and r.ok_reads]
        if mine:
            by_file: dict[str, list[int]] = {}
            for _pid, path, r in mine:
                row = by_file.setdefault(path, [0, 0, 0])
                row[0] += r.ok_reads
                row[1] += r.read_bytes
                row[2] += r.odirect_bytes
            path, (nreads, nbytes, dbytes) = max(by_file.items(), key=lambda kv: (kv[1][1], kv[0]))
            how = "with O_DIRECT" if dbytes >= nbytes / 2 else "through the page cache"
            parts.append(f"reading {path} {how} ({_mib(float(nbytes))} in {nreads} reads)")
            for pid, path, r in sorted(mine, key=lambda m: (m[2].read_bytes, m[1])):
                file_of[int(pid)] = (path, r.read_bytes, r.odirect_bytes)
        disks = [(pid, disk, n) for (pid, disk), n in stats.disk_reads.items() if pid in pids and disk]
        if disks:
            by_disk: dict[str, int] = {}
            for _pid, disk, n in disks:
                by_disk[disk] = by_disk.get(disk, 0) + n
            disk, nbytes = max(by_disk.items(), key=lambda kv: (kv[1], kv[0]))
            parts.append(f"from {disk} ({_mib(nbytes)} of block reads)")
            for pid, disk, _n in sorted(disks, key=lambda d: (d[2], d[1])):
                disk_of[int(pid)] = disk
    totals = counters if counters is not None else _counter_totals(frames.get("counters"))
    if totals is not None and totals.get("intervals"):
        parts.append(f"the CPUs were {totals['iowait_avg_pct']:.0f} % iowait on average "
                     f"(peak {totals['iowait_max_pct']:.0f} %) "
                     f"and the disks read {_mib(float(totals['disk_read_bytes']))}")
    summary = "; ".join(parts) + "."

    evidence: list[dict[str, Any]] = []
    for r in group.head(10).itertuples():
        path, nbytes, dbytes = file_of.get(int(r.pid), ("", 0, 0))
        evidence.append({"pid": int(r.pid), "comm": r.comm, "iowait_s": round(r.iowait_ms / 1e3, 3),
                         "other_d_s": round(r.other_ms / 1e3, 3),
                         "share_of_iowait": round(r.iowait_ms / io_total_ms, 3),
                         "longest_ms": round(r.longest_ms, 3), "wait_site": r.wait_site,
                         "file": path, "read_bytes": nbytes, "odirect_bytes": dbytes,
                         "device": disk_of.get(int(r.pid), "")})
    direct = any(e["odirect_bytes"] for e in evidence)
    return [Finding(
        id="iowait-cause",
        severity="warning",
        title="Who causes the iowait",
        summary=summary,
        evidence=evidence,
        recommendation=(
            "The iowait is these processes waiting for their own reads. "
            + ("They read with O_DIRECT, so every read goes to the disk: drop O_DIRECT (buffered reads are "
               "served from the page cache after the first), unless the program keeps its own cache."
               if direct else
               "Make the reads hit the page cache (more memory, fewer re-reads) or make them asynchronous.")
        ),
    )]
