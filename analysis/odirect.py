"""Reads around the page cache: summaries per process and per file, and the
``odirect-bypass`` rule.

Input frames (as built by :class:`kerntrace.tracers.odirect.ODirectTrace`):

``read``
    one row per read-family syscall: ``pid``, ``comm``, ``syscall``, ``path``,
    ``direct`` (O_DIRECT set on the file at the time of the read), ``asked``,
    ``ret`` (bytes or -errno), ``bytes`` (ret clipped at 0), ``latency_ns``.
``block``
    one row per bio (or unattributed request): ``pid``, ``comm``,
    ``attributed``, ``op`` ("R", "W", ...), ``bytes``, ``queue_ns``,
    ``device_ns``, ``path`` (file of the read that submitted it, or "").

Everything here is a pure function of those frames.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["findings", "per_file", "per_process", "odirect_bypass"]

RULE_ID = "odirect-bypass"

# Binaries whose own cache makes O_DIRECT the intended design, not a mistake.
_SELF_CACHING = ("mysqld", "mariadbd", "postgres", "oracle", "mongod", "scylla", "rocksdb", "qemu", "fio")


def _pct_ms(latency_ns: "pd.Series", q: float) -> float:
    if latency_ns.empty:
        return float("nan")
    return float(latency_ns.quantile(q, interpolation="nearest")) / 1e6


def _pct_or_none(latency_ns: "pd.Series", q: float) -> Optional[float]:
    """For summaries, which must stay valid JSON: None, not NaN, when no reads."""
    return None if latency_ns.empty else _pct_ms(latency_ns, q)


def _read_stats(reads: "pd.DataFrame") -> dict[str, Any]:
    direct = reads[reads["direct"]]
    read_bytes = int(reads["bytes"].sum())
    odirect_bytes = int(direct["bytes"].sum())
    return {
        "reads": int(len(reads)),
        "read_bytes": read_bytes,
        "odirect_reads": int(len(direct)),
        "odirect_bytes": odirect_bytes,
        "odirect_share": odirect_bytes / read_bytes if read_bytes else (1.0 if len(direct) else 0.0),
        "latency_p50_ms": _pct_or_none(reads["latency_ns"], 0.50),
        "latency_p99_ms": _pct_or_none(reads["latency_ns"], 0.99),
        "odirect_p50_ms": _pct_or_none(direct["latency_ns"], 0.50),
        "odirect_p99_ms": _pct_or_none(direct["latency_ns"], 0.99),
        "errors": int((reads["ret"] < 0).sum()),
    }


def _empty_reads() -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame({"pid": [], "comm": [], "path": [], "direct": pd.Series([], dtype=bool),
                         "bytes": [], "ret": [], "latency_ns": []})


def per_process(frames: dict[str, "pd.DataFrame"]) -> list[dict[str, Any]]:
    """One row per traced process: reads, bytes, O_DIRECT share, latency
    percentiles, and the block I/O it submitted.  Most bytes first."""
    reads = frames.get("read", _empty_reads())
    blocks = frames.get("block")
    attributed = blocks[blocks["attributed"]] if blocks is not None and len(blocks) else None
    pids = set(reads["pid"].tolist())
    if attributed is not None:
        pids |= set(attributed["pid"].tolist())
    rows = []
    for pid in pids:
        mine = reads[reads["pid"] == pid]
        row: dict[str, Any] = {"pid": int(pid)}
        comms = mine["comm"].astype(str) if len(mine) else None
        bio = attributed[attributed["pid"] == pid] if attributed is not None else None
        if comms is not None:
            row["comm"] = comms.iloc[-1]
        elif bio is not None and len(bio):
            row["comm"] = str(bio["comm"].iloc[-1])
        else:
            row["comm"] = ""
        row.update(_read_stats(mine))
        row["block_ios"] = int(len(bio)) if bio is not None else 0
        row["block_bytes"] = int(bio["bytes"].sum()) if bio is not None else 0
        row["block_read_bytes"] = int(bio.loc[bio["op"] == "R", "bytes"].sum()) if bio is not None else 0
        rows.append(row)
    rows.sort(key=lambda r: (-r["read_bytes"], r["pid"]))
    return rows


def per_file(frames: dict[str, "pd.DataFrame"]) -> list[dict[str, Any]]:
    """One row per file read: reads, bytes, O_DIRECT share, latency
    percentiles, and the block bytes submitted from its reads."""
    reads = frames.get("read", _empty_reads())
    blocks = frames.get("block")
    rows = []
    for path, mine in reads.groupby(reads["path"].astype(str), sort=False):
        row: dict[str, Any] = {"path": path}
        row.update(_read_stats(mine))
        row["pids"] = sorted(int(p) for p in set(mine["pid"].tolist()))
        if blocks is not None and len(blocks) and path:
            row["block_bytes"] = int(blocks.loc[blocks["path"].astype(str) == path, "bytes"].sum())
        else:
            row["block_bytes"] = 0
        rows.append(row)
    rows.sort(key=lambda r: (-r["read_bytes"], r["path"]))
    return rows


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def odirect_bypass(frames: dict[str, "pd.DataFrame"], duration_s: float = 0.0) -> list[Finding]:
    """One finding when any traced read went around the page cache."""
    reads = frames.get("read")
    if reads is None or not len(reads) or not reads["direct"].any():
        return []
    direct = reads[reads["direct"]]
    # the same processes' reads through the page cache, for comparison
    buffered = reads[~reads["direct"] & (reads["bytes"] > 0) & reads["pid"].isin(set(direct["pid"].tolist()))]
    total = int(direct["bytes"].sum())
    count = int(len(direct))
    p50, p99 = _pct_ms(direct["latency_ns"], 0.5), _pct_ms(direct["latency_ns"], 0.99)

    evidence = []
    blocks = frames.get("block")
    disk_reads: dict[tuple[int, str], int] = {}
    if blocks is not None and len(blocks):
        mine = blocks[blocks["attributed"] & (blocks["op"] == "R")]
        for (pid, path), nbytes in mine.groupby([mine["pid"], mine["path"].astype(str)])["bytes"].sum().items():
            disk_reads[(int(pid), path)] = int(nbytes)
    for (pid, path), mine in direct.groupby([direct["pid"], direct["path"].astype(str)], sort=False):
        evidence.append({
            "pid": int(pid), "comm": str(mine["comm"].iloc[-1]), "file": path or "(unnamed)",
            "odirect_reads": int(len(mine)), "bytes": int(mine["bytes"].sum()),
            "avg_bytes": int(mine["bytes"].mean()) if len(mine) else 0,
            "p50_ms": round(_pct_ms(mine["latency_ns"], 0.5), 3),
            "p99_ms": round(_pct_ms(mine["latency_ns"], 0.99), 3),
            "disk_read_bytes": disk_reads.get((int(pid), path), 0) if path else 0,
        })
    evidence.sort(key=lambda r: -r["bytes"])
    evidence = evidence[:10]

    pids = sorted(set(int(p) for p in direct["pid"].tolist()))
    comms = sorted(set(str(c) for c in direct["comm"].astype(str).tolist()))
    who = ", ".join(f"{c}" for c in comms[:3]) + (" ..." if len(comms) > 3 else "")
    rate = f" ({_mib(total / duration_s)}/s)" if duration_s > 0 else ""
    summary = (
        f"{len(pids)} process{'es' if len(pids) != 1 else ''} ({who}) read {_mib(total)}{rate} in {count} "
        f"O_DIRECT reads around the page cache, median latency {p50:.3f} ms, p99 {p99:.3f} ms"
    )
    if len(buffered):
        summary += (f"; their buffered reads took {_pct_ms(buffered['latency_ns'], 0.5):.3f} ms median "
                    f"({len(buffered)} read{'s' if len(buffered) != 1 else ''})")
    summary += "."
    severity = "warning" if total >= 1 << 20 or count >= 100 else "info"
    self_caching = [c for c in comms if any(c.startswith(s) for s in _SELF_CACHING)]
    recommendation = (
        "Every one of these reads waits for the disk, and repeated reads of the same blocks are never "
        "served from memory. Unless the program keeps its own cache of these blocks, open the file "
        "without O_DIRECT (and drop any fcntl(F_SETFL, O_DIRECT)) so reads go through the page cache; "
        "use posix_fadvise(POSIX_FADV_DONTNEED) if the worry was cache pollution."
    )
    if self_caching:
        recommendation += (
            f" Note: {', '.join(self_caching)} usually read{'s' if len(self_caching) == 1 else ''} with "
            "O_DIRECT on purpose (its own buffer cache or a benchmark); then size that cache instead."
        )
    return [Finding(
        id=RULE_ID,
        severity=severity,
        title="Reads bypass the page cache (O_DIRECT)",
        summary=summary,
        evidence=evidence,
        recommendation=recommendation,
        references=["open(2): O_DIRECT", "fcntl(2): F_SETFL"],
    )]


def findings(frames: dict[str, "pd.DataFrame"], **context: Any) -> list[Finding]:
    return odirect_bypass(frames, duration_s=float(context.get("duration_s", 0.0) or 0.0))
