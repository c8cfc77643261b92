"""Rule ``iowait-cause``: who causes the iowait, from the D-state totals,
the O_DIRECT reads and block requests, and the system counters.

Frames used: ``dstate_totals`` (analysis.dstate), odirect's read and block
frames when present (recognized by their columns: reads carry pid, direct,
ret; block requests carry pid, disk, bytes), and ``counters`` (one row per
second: usr, sys, idl, wai, read_bytes, write_bytes).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from . import dstate
from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["findings", "odirect_frames"]

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


def findings(frames: "dict[str, pd.DataFrame]", **context: Any) -> list[Finding]:
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

    reads, blocks = odirect_frames(frames)
    file_of: dict[int, tuple[str, int, int]] = {}      # pid -> (top file, bytes, O_DIRECT bytes)
    disk_of: dict[int, str] = {}
    if reads is not None and not reads.empty:
        mine = reads[reads["pid"].isin(pids) & (reads["ret"] > 0)]
        if not mine.empty:
            mine = mine.assign(path=_path_column(mine), direct=mine["direct"].astype(bool),
                               nbytes=mine["ret"].astype("int64"))
            mine = mine.assign(dbytes=mine["nbytes"].where(mine["direct"], 0))
            by_file = mine.groupby("path", sort=False).agg(
                reads=("nbytes", "size"), nbytes=("nbytes", "sum"), dbytes=("dbytes", "sum"))
            by_file = by_file.sort_values("nbytes", ascending=False)
            path, top = str(by_file.index[0]), by_file.iloc[0]
            how = "with O_DIRECT" if top["dbytes"] >= top["nbytes"] / 2 else "through the page cache"
            parts.append(f"reading {path} {how} ({_mib(float(top['nbytes']))} in {int(top['reads'])} reads)")
            per = mine.groupby(["pid", "path"], sort=False).agg(nbytes=("nbytes", "sum"), dbytes=("dbytes", "sum"))
            for (pid, p), r in per.sort_values("nbytes").iterrows():
                file_of[int(pid)] = (str(p), int(r["nbytes"]), int(r["dbytes"]))
    if blocks is not None and not blocks.empty:
        mine = blocks[blocks["pid"].isin(pids)]
        if "op" in mine.columns and mine["op"].dtype == object:
            mine = mine[mine["op"].astype(str) == "R"]
        disk_col = "disk" if "disk" in mine.columns else "dev"
        if not mine.empty and disk_col in mine.columns:
            by_disk = mine.groupby(mine[disk_col].astype(str), sort=False)["bytes"].sum().sort_values(ascending=False)
            disk, nbytes = str(by_disk.index[0]), int(by_disk.iloc[0])
            parts.append(f"from {disk} ({_mib(nbytes)} of block reads)")
            per_disk = mine.groupby(["pid", mine[disk_col].astype(str)], sort=False)["bytes"].sum()
            for (pid, d), _n in per_disk.sort_values().items():
                disk_of[int(pid)] = str(d)
    counters = frames.get("counters")
    if counters is not None and not counters.empty:
        wai = counters["wai"]
        parts.append(f"the CPUs were {wai.mean():.0f} % iowait on average (peak {wai.max():.0f} %) "
                     f"and the disks read {_mib(float(counters['read_bytes'].sum()))}")
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
