"""Reads around the page cache: running totals per process, per file and
per (process, file), the summaries, and the ``odirect-bypass`` rule.

Input: the records of ``iotrace odirect`` as tables (pyarrow, from the run
or from a trace directory; pandas frames in tests), added batch by batch to
an :class:`ODirectStats`, whose memory does not grow with the run's length.

``read``
    one row per read-family syscall: ``pid``, ``comm``, ``path``, ``direct``
    (O_DIRECT set on the file at the time of the read), ``ret`` (bytes or
    -errno), ``bytes`` (ret clipped at 0), ``latency_ns``, ``ts_ns``.
``block``
    one row per bio (or unattributed request): ``pid``, ``comm``,
    ``attributed``, ``op`` ("R", "W", ...), ``bytes``, ``disk``, ``path``
    (file of the read that submitted it, or "").

Everything here is pure: no kernel, no tracer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Union
from .arrays import unique

from .findings import Finding
from .histogram import Histogram, bucket_of
from .log2 import from_histogram, histogram_dict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ODirectStats", "findings", "per_file", "per_process", "odirect_bypass"]

RULE_ID = "odirect-bypass"

# Binaries whose own cache makes O_DIRECT the intended design, not a mistake.
_SELF_CACHING = ("mysqld", "mariadbd", "postgres", "oracle", "mongod", "scylla", "rocksdb", "qemu", "fio")

# Distinct files (and process-file pairs) kept apart; beyond, their figures
# go to one row, so a reader of millions of small files stays bounded.
MAX_KEYS = 4096
OTHER_FILES = "(other files)"


def _column(table: Any, name: str) -> "np.ndarray[Any, Any]":
    """A column of a pyarrow Table or pandas DataFrame as a numpy array."""
    import numpy as np

    if hasattr(table, "labels"):  # kerntrace Records
        return table.column(name)
    col = table[name]
    if hasattr(col, "combine_chunks"):  # pyarrow ChunkedArray
        col = col.combine_chunks()
        if hasattr(col, "dictionary"):
            col = col.dictionary_decode()
        return np.asarray(col.to_numpy(zero_copy_only=False))
    return np.asarray(col)


def _labels(table: Any, name: str) -> tuple["np.ndarray[Any, Any]", list[str]]:
    """(codes, labels) of a string column (Arrow dictionary, pandas
    categorical or plain strings)."""
    import numpy as np

    if hasattr(table, "labels"):  # kerntrace Records
        return table.labels(name)
    col = table[name]
    if hasattr(col, "combine_chunks"):
        col = col.combine_chunks()
        if not hasattr(col, "dictionary"):
            col = col.dictionary_encode()
        codes = np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return codes, [str(v) for v in col.dictionary.to_pylist()]
    values = np.asarray(col).astype(str)
    labels, codes = unique(values, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), [str(v) for v in labels]


def _groups(keys: "np.ndarray[Any, Any]") -> tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]:
    uniques, inverse = unique(keys, return_inverse=True)
    return uniques, inverse.reshape(-1)


def _hists(inverse: "np.ndarray[Any, Any]", values: "np.ndarray[Any, Any]", groups: int) -> list[Optional[tuple]]:
    """Per group: (buckets, counts, sum, min, max) of its values."""
    import numpy as np

    out: list[Optional[tuple]] = [None] * groups
    if not len(values):
        return out
    values = np.ascontiguousarray(values, dtype=np.int64)
    inverse = np.ascontiguousarray(inverse, dtype=np.int64)
    pairs = (inverse.astype(np.int64) << 20) | bucket_of(values)
    uniques, counts = unique(pairs, return_counts=True)
    sums = np.bincount(inverse, weights=values, minlength=groups)
    # each group's least and greatest value: sorted by (group, value), its
    # first and last rows (no ufunc.at: see ReadWindow in tracers/odirect.py)
    order = np.lexsort((values, inverse))
    ordered_groups, ordered = inverse[order], values[order]
    change = np.flatnonzero(ordered_groups[1:] != ordered_groups[:-1])
    firsts, lasts = np.r_[0, change + 1], np.r_[change, len(order) - 1]
    lows = np.zeros(groups, dtype=np.int64)
    highs = np.zeros(groups, dtype=np.int64)
    lows[ordered_groups[firsts]] = ordered[firsts]
    highs[ordered_groups[lasts]] = ordered[lasts]
    group_of = (uniques >> 20).tolist()
    bucket = (uniques & ((1 << 20) - 1)).tolist()
    per: dict[int, tuple[list[int], list[int]]] = {}
    for g, b, c in zip(group_of, bucket, counts.tolist()):
        bs, cs = per.setdefault(g, ([], []))
        bs.append(b)
        cs.append(c)
    for g, (bs, cs) in per.items():
        out[g] = (bs, cs, int(sums[g]), int(lows[g]), int(highs[g]))
    return out


class _Reads:
    """Running figures of a set of reads."""

    __slots__ = ("reads", "read_bytes", "odirect_reads", "odirect_bytes", "errors", "ok_reads", "latency",
                 "odirect_latency", "buffered_latency", "comm", "comm_ts", "pids", "block_ios", "block_bytes",
                 "block_read_bytes", "block_comm")

    def __init__(self) -> None:
        self.reads = self.read_bytes = self.odirect_reads = self.odirect_bytes = self.errors = self.ok_reads = 0
        self.latency = Histogram()
        self.odirect_latency = Histogram()
        self.buffered_latency = Histogram()  # buffered reads that returned data
        self.comm = ""
        self.comm_ts = -1
        self.pids: set[int] = set()
        self.block_ios = self.block_bytes = self.block_read_bytes = 0
        self.block_comm = ""

    def stats(self) -> dict[str, Any]:
        def ms(h: Histogram, q: float) -> Optional[float]:
            v = h.quantile(q)
            return None if v is None else v / 1e6

        return {
            "reads": self.reads,
            "read_bytes": self.read_bytes,
            "odirect_reads": self.odirect_reads,
            "odirect_bytes": self.odirect_bytes,
            "odirect_share": (self.odirect_bytes / self.read_bytes if self.read_bytes
                              else (1.0 if self.odirect_reads else 0.0)),
            "latency_p50_ms": ms(self.latency, 0.50),
            "latency_p99_ms": ms(self.latency, 0.99),
            "odirect_p50_ms": ms(self.odirect_latency, 0.50),
            "odirect_p99_ms": ms(self.odirect_latency, 0.99),
            "errors": self.errors,
        }


class ODirectStats:
    """Every figure of the summaries and of the rule, updated per batch."""

    def __init__(self) -> None:
        self.by_pid: dict[int, _Reads] = {}
        self.by_file: dict[str, _Reads] = {}
        self.by_pid_file: dict[tuple[int, str], _Reads] = {}
        self.disk_reads: dict[tuple[int, str], int] = {}      # (pid, disk) -> bytes of block reads
        self.odirect_latency = Histogram()
        # the report's distributions: every read without O_DIRECT (recorded,
        # or counted in the kernel), and the device time of each credited bio
        # that completed (from its request's issue; unknown when the issue
        # was not seen)
        self.buffered_latency = Histogram()
        self.device_time = Histogram()
        self.bios_without_device_time = 0

    @classmethod
    def from_frames(cls, frames: Mapping[str, "pd.DataFrame"]) -> "ODirectStats":
        stats = cls()
        if frames.get("read") is not None and len(frames["read"]):
            stats.add_reads(frames["read"])
        if frames.get("block") is not None and len(frames["block"]):
            stats.add_blocks(frames["block"])
        return stats

    def _file_key(self, path: str) -> str:
        if path in self.by_file or len(self.by_file) < MAX_KEYS:
            return path
        return OTHER_FILES

    def _pair(self, pid: int, path: str) -> _Reads:
        key = (pid, path)
        row = self.by_pid_file.get(key)
        if row is None:
            if len(self.by_pid_file) >= MAX_KEYS:
                key = (pid, OTHER_FILES)
                row = self.by_pid_file.get(key)
            if row is None:
                row = self.by_pid_file[key] = _Reads()
        return row

    def add_reads(self, table: Any) -> None:
        import numpy as np

        if not len(table):
            return
        pid = _column(table, "pid").astype(np.int64)
        direct = _column(table, "direct").astype(bool)
        ret = _column(table, "ret").astype(np.int64)
        nbytes = ret.clip(min=0)
        latency = _column(table, "latency_ns").astype(np.int64)
        # without times (hand-made frames), the row order is the time order
        ts = (_column(table, "ts_ns").astype(np.int64) if "ts_ns" in _names(table)
              else np.arange(len(pid), dtype=np.int64))
        comm_codes, comm_labels = _labels(table, "comm")
        path_codes, path_labels = _labels(table, "path")
        self.odirect_latency.add(latency[direct])
        self.buffered_latency.add(latency[~direct])
        # one pass per grouping: per process, per file, per (process, file)
        for kind, keys in (("pid", pid), ("file", path_codes), ("pair", (pid << 24) | path_codes)):
            uniques, inverse = _groups(keys)
            n = len(uniques)
            count = np.bincount(inverse, minlength=n)
            total = np.bincount(inverse, weights=nbytes, minlength=n)
            dmask = direct
            dcount = np.bincount(inverse[dmask], minlength=n)
            dtotal = np.bincount(inverse[dmask], weights=nbytes[dmask], minlength=n)
            errors = np.bincount(inverse[ret < 0], minlength=n)
            ok = np.bincount(inverse[ret > 0], minlength=n)
            hist_all = _hists(inverse, latency, n)
            hist_direct = _hists(inverse[dmask], latency[dmask], n)
            bmask = ~direct & (nbytes > 0)
            hist_buffered = _hists(inverse[bmask], latency[bmask], n) if kind == "pid" else [None] * n
            # the last comm of each group, by time
            order = np.lexsort((ts, inverse))
            last = order[np.r_[np.flatnonzero(np.diff(inverse[order])), len(order) - 1]]
            for g, key in enumerate(uniques.tolist()):
                if kind == "pid":
                    row = self.by_pid.get(key)
                    if row is None:
                        row = self.by_pid[key] = _Reads()
                elif kind == "file":
                    path = self._file_key(path_labels[key])
                    row = self.by_file.get(path)
                    if row is None:
                        row = self.by_file[path] = _Reads()
                else:
                    row = self._pair(key >> 24, path_labels[key & ((1 << 24) - 1)])
                row.reads += int(count[g])
                row.read_bytes += int(total[g])
                row.odirect_reads += int(dcount[g])
                row.odirect_bytes += int(dtotal[g])
                row.errors += int(errors[g])
                row.ok_reads += int(ok[g])
                for hist, got in ((row.latency, hist_all[g]), (row.odirect_latency, hist_direct[g]),
                                  (row.buffered_latency, hist_buffered[g])):
                    if got is not None:
                        hist.add_buckets(*got)
                i = int(last[g])
                if int(ts[i]) >= row.comm_ts:
                    row.comm, row.comm_ts = comm_labels[comm_codes[i]], int(ts[i])
                if kind == "file":
                    row.pids.update(unique(pid[inverse == g]).tolist())

    def add_totals(self, table: Any) -> None:
        """Reads counted in the kernel (kind read_total: one row per process,
        file and syscall whose counts grew, with the growth): buffered reads
        of files, reads of pipes and sockets."""
        import numpy as np

        if not len(table):
            return
        pid = _column(table, "pid").astype(np.int64)
        ts = _column(table, "ts_ns").astype(np.int64)
        counts = {name: _column(table, name).astype(np.int64) for name in ("reads", "ok_reads", "bytes", "errors")}
        comm_codes, comm_labels = _labels(table, "comm")
        path_codes, path_labels = _labels(table, "path")
        for i in range(len(pid)):
            p, path = int(pid[i]), path_labels[path_codes[i]]
            comm = comm_labels[comm_codes[i]]
            file_row = self.by_file.get(self._file_key(path))
            if file_row is None:
                file_row = self.by_file[self._file_key(path)] = _Reads()
            pid_row = self.by_pid.get(p)
            if pid_row is None:
                pid_row = self.by_pid[p] = _Reads()
            for row in (pid_row, file_row, self._pair(p, path)):
                row.reads += int(counts["reads"][i])
                row.ok_reads += int(counts["ok_reads"][i])
                row.read_bytes += int(counts["bytes"][i])
                row.errors += int(counts["errors"][i])
                if int(ts[i]) >= row.comm_ts:
                    row.comm, row.comm_ts = comm, int(ts[i])
            file_row.pids.add(p)

    def add_total_hists(self, table: Any) -> None:
        """The kernel's latency histograms of counted reads (kind
        read_total_hist: pid, path, slot, count growth)."""
        import numpy as np

        if not len(table):
            return
        pid = _column(table, "pid").astype(np.int64)
        slot = _column(table, "slot").astype(np.int64)
        count = _column(table, "count").astype(np.int64)
        path_codes, path_labels = _labels(table, "path")
        groups: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
        for p, code, sl, c in zip(pid.tolist(), path_codes.tolist(), slot.tolist(), count.tolist()):
            slots, counts = groups.setdefault((p, path_labels[code]), ([], []))
            slots.append(sl)
            counts.append(c)
        for (p, path), (slots, counts) in groups.items():
            got = _kernel_histogram(slots, counts)
            if got is None:
                continue
            self.buffered_latency.add_buckets(*got)
            pid_row = self.by_pid.setdefault(p, _Reads())
            for hist in (pid_row.latency, pid_row.buffered_latency, self.by_file.setdefault(self._file_key(path), _Reads()).latency,
                         self._pair(p, path).latency):
                hist.add_buckets(*got)

    def add_blocks(self, table: Any) -> None:
        import numpy as np

        if not len(table):
            return
        attributed = _column(table, "attributed").astype(bool)
        pid = _column(table, "pid").astype(np.int64)
        nbytes = _column(table, "bytes").astype(np.int64)
        op_codes, op_labels = _labels(table, "op")
        is_read = np.isin(op_codes, [i for i, label in enumerate(op_labels) if label == "R"])
        path_codes, path_labels = _labels(table, "path")
        disk_codes, disk_labels = _labels(table, "disk") if "disk" in _names(table) else (
            np.zeros(len(pid), dtype=np.int64), [""])
        comm_codes, comm_labels = _labels(table, "comm")
        if "completed" in _names(table) and "device_ns" in _names(table):
            done = attributed & _column(table, "completed").astype(bool)
            device = _column(table, "device_ns").astype(np.float64)[done]
            known = ~np.isnan(device)   # NaN: the request's issue was not seen
            self.device_time.add(device[known].astype(np.int64))
            self.bios_without_device_time += int((~known).sum())
        # per process: every attributed bio
        sel = np.flatnonzero(attributed)
        if len(sel):
            uniques, inverse = _groups(pid[sel])
            n = len(uniques)
            ios = np.bincount(inverse, minlength=n)
            total = np.bincount(inverse, weights=nbytes[sel], minlength=n)
            rtotal = np.bincount(inverse, weights=np.where(is_read[sel], nbytes[sel], 0), minlength=n)
            last = np.zeros(n, dtype=np.int64)
            last[inverse] = sel  # the last row of each process
            for g, key in enumerate(uniques.tolist()):
                row = self.by_pid.get(key)
                if row is None:
                    row = self.by_pid[key] = _Reads()
                row.block_ios += int(ios[g])
                row.block_bytes += int(total[g])
                row.block_read_bytes += int(rtotal[g])
                row.block_comm = comm_labels[comm_codes[last[g]]]
        # per file: every bio credited to a read of it
        named = np.flatnonzero(np.array([bool(label) for label in path_labels], dtype=bool)[path_codes]) \
            if path_labels else np.zeros(0, dtype=np.int64)
        if len(named):
            uniques, inverse = _groups(path_codes[named])
            total = np.bincount(inverse, weights=nbytes[named], minlength=len(uniques))
            for g, code in enumerate(uniques.tolist()):
                path = self._file_key(path_labels[code])
                row = self.by_file.get(path)
                if row is None:
                    row = self.by_file[path] = _Reads()
                row.block_bytes += int(total[g])
        # per (process, file) and (process, disk): block reads
        reads = np.flatnonzero(attributed & is_read)
        if len(reads):
            keys = (pid[reads] << 24) | path_codes[reads]
            uniques, inverse = _groups(keys)
            total = np.bincount(inverse, weights=nbytes[reads], minlength=len(uniques))
            for g, key in enumerate(uniques.tolist()):
                path = path_labels[key & ((1 << 24) - 1)]
                if path:
                    self._pair(key >> 24, path).block_read_bytes += int(total[g])
            keys = (pid[reads] << 24) | disk_codes[reads]
            uniques, inverse = _groups(keys)
            total = np.bincount(inverse, weights=nbytes[reads], minlength=len(uniques))
            for g, key in enumerate(uniques.tolist()):
                dk = (key >> 24, disk_labels[key & ((1 << 24) - 1)])
                self.disk_reads[dk] = self.disk_reads.get(dk, 0) + int(total[g])

    def histograms(self) -> dict[str, dict[str, Any]]:
        """The log2 histograms of the report and the summary: counts add up
        to the O_DIRECT reads, the other reads, and the credited bios that
        completed with a known device time."""
        block = histogram_dict("Block device time per bio, issue to completion", from_histogram(self.device_time),
                               "bios", no_device_time=self.bios_without_device_time)
        if self.bios_without_device_time:
            block["note"] = (f"{self.bios_without_device_time} more bios completed without a device time: "
                             "their issue was not seen")
        return {
            "odirect_read_latency": histogram_dict("O_DIRECT read latency", from_histogram(self.odirect_latency),
                                                   "reads"),
            "buffered_read_latency": histogram_dict("Read latency without O_DIRECT: page cache, pipes, sockets",
                                                    from_histogram(self.buffered_latency), "reads"),
            "block_device_time": block,
        }


# The kernel's latency histogram of counted reads (bpf/odirect.h): the
# value itself below 4, else 4 slots per power of two.
KERNEL_LAT_SUB_BITS = 2


def kernel_slot_range(slot: int) -> tuple[int, int]:
    """The nanoseconds a slot of the kernel's latency histogram covers."""
    if slot < (1 << KERNEL_LAT_SUB_BITS):
        return slot, slot
    order = slot >> KERNEL_LAT_SUB_BITS
    sub = slot & ((1 << KERNEL_LAT_SUB_BITS) - 1)
    shift = order - KERNEL_LAT_SUB_BITS
    low = ((1 << KERNEL_LAT_SUB_BITS) | sub) << shift
    return low, low + (1 << shift) - 1


def _kernel_histogram(slots: list[int], counts: list[int]) -> Optional[tuple]:
    """Kernel latency slots -> (buckets, counts, sum, min, max) of Histogram,
    each slot's reads taken at its midpoint."""
    import numpy as np

    pairs = [(kernel_slot_range(s), c) for s, c in zip(slots, counts) if c]
    if not pairs:
        return None
    mids = np.array([(lo + hi) // 2 for (lo, hi), _c in pairs], dtype=np.int64)
    n = [c for _r, c in pairs]
    buckets = bucket_of(mids).tolist()
    merged: dict[int, int] = {}
    for b, c in zip(buckets, n):
        merged[b] = merged.get(b, 0) + c
    total = int(sum(int(m) * c for m, c in zip(mids.tolist(), n)))
    return (list(merged), list(merged.values()), total, min(lo for (lo, _hi), _c in pairs),
            max(hi for (_lo, hi), _c in pairs))


def _names(table: Any) -> list[str]:
    return list(getattr(table, "column_names", None) or table.columns)


Source = Union[ODirectStats, Mapping[str, "pd.DataFrame"]]


def _stats(source: Source) -> ODirectStats:
    return source if isinstance(source, ODirectStats) else ODirectStats.from_frames(source)


def per_process(source: Source) -> list[dict[str, Any]]:
    """One row per traced process: reads, bytes, O_DIRECT share, latency
    percentiles, and the block I/O it submitted.  Most bytes first."""
    stats = _stats(source)
    rows = []
    for pid, r in stats.by_pid.items():
        row: dict[str, Any] = {"pid": int(pid), "comm": r.comm if r.reads else r.block_comm}
        row.update(r.stats())
        row["block_ios"] = r.block_ios
        row["block_bytes"] = r.block_bytes
        row["block_read_bytes"] = r.block_read_bytes
        rows.append(row)
    rows.sort(key=lambda r: (-r["read_bytes"], r["pid"]))
    return rows


def per_file(source: Source) -> list[dict[str, Any]]:
    """One row per file read: reads, bytes, O_DIRECT share, latency
    percentiles, and the block bytes submitted from its reads."""
    stats = _stats(source)
    rows = []
    for path, r in stats.by_file.items():
        if not r.reads:
            continue  # block I/O of a file none of whose reads was seen
        row: dict[str, Any] = {"path": path}
        row.update(r.stats())
        row["pids"] = sorted(r.pids)
        row["block_bytes"] = r.block_bytes if path else 0
        rows.append(row)
    rows.sort(key=lambda r: (-r["read_bytes"], r["path"]))
    return rows


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def odirect_bypass(source: Source, duration_s: float = 0.0) -> list[Finding]:
    """One finding when any traced read went around the page cache."""
    stats = _stats(source)
    pairs = [(key, r) for key, r in stats.by_pid_file.items() if r.odirect_reads]
    if not pairs:
        return []
    total = sum(r.odirect_bytes for _k, r in pairs)
    count = sum(r.odirect_reads for _k, r in pairs)
    p50 = (stats.odirect_latency.quantile(0.5) or 0.0) / 1e6
    p99 = (stats.odirect_latency.quantile(0.99) or 0.0) / 1e6
    direct_pids = sorted({pid for (pid, _path), _r in pairs})
    # the same processes' reads through the page cache, for comparison
    buffered = Histogram()
    for pid in direct_pids:
        buffered.merge(stats.by_pid[pid].buffered_latency)

    evidence = []
    for (pid, path), r in pairs:
        evidence.append({
            "pid": int(pid), "comm": r.comm, "file": path or "(unnamed)",
            "odirect_reads": r.odirect_reads, "bytes": r.odirect_bytes,
            "avg_bytes": int(r.odirect_bytes / r.odirect_reads),
            "p50_ms": round((r.odirect_latency.quantile(0.5) or 0.0) / 1e6, 3),
            "p99_ms": round((r.odirect_latency.quantile(0.99) or 0.0) / 1e6, 3),
            "disk_read_bytes": r.block_read_bytes if path else 0,
        })
    evidence.sort(key=lambda r: (-r["bytes"], r["pid"], r["file"]))
    evidence = evidence[:10]

    pids = direct_pids
    comms = sorted({r.comm for _k, r in pairs})
    who = ", ".join(f"{c}" for c in comms[:3]) + (" ..." if len(comms) > 3 else "")
    rate = f" ({_mib(total / duration_s)}/s)" if duration_s > 0 else ""
    summary = (
        f"{len(pids)} process{'es' if len(pids) != 1 else ''} ({who}) read {_mib(total)}{rate} in {count} "
        f"O_DIRECT reads around the page cache, median latency {p50:.3f} ms, p99 {p99:.3f} ms"
    )
    if buffered.count:
        summary += (f"; their buffered reads took {(buffered.quantile(0.5) or 0.0) / 1e6:.3f} ms median "
                    f"({buffered.count} read{'s' if buffered.count != 1 else ''})")
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


def findings(source: Source, **context: Any) -> list[Finding]:
    return odirect_bypass(source, duration_s=float(context.get("duration_s", 0.0) or 0.0))
