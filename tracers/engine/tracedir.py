"""The trace directory of ``-o DIR``: written while the run goes, readable
at any moment, by kerntrace, pyarrow or DuckDB.

    DIR/meta.json               first: host, kernel, version, argv, hooks,
                                the clock, the tool and its options
    DIR/<kind>/part-NNNNNN.parquet
                                the records of one kind; NNNNNN counts the
                                parts of the whole run, in write order
    DIR/end.json                at a clean end: how the run ended and the
                                state read from the kernel at the end
    DIR/summary.json            last: the summary envelope and findings

A part is written to a temporary name, fsync'd, renamed and its directory
fsync'd, so a part that can be seen is whole: a run ended by kill -9, the
OOM killer or a panic leaves every record up to its last flush.  Files are
mode 0600 (a trace shows what processes read), directories 0700.
"""
from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from .environment import UsageProblem

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .records import Records
    from .s3 import S3Store

__all__ = ["FORMAT", "TraceReader", "TraceWriter", "check_trace_dir", "is_trace_dir"]

FORMAT = "kerntrace-trace/1"
META = "meta.json"
END = "end.json"
SUMMARY = "summary.json"
DEFAULT_FLUSH_S = 0.5
# A part is also closed at this many buffered bytes (a burst between flushes).
PART_BYTES = 32 << 20
# How late flush_if_due may be called after a flush fell due (TraceDirSink
# calls it every idle_s = 0.1 s).
POLL_S = 0.1
_PART = re.compile(r"^part-(\d{6,})\.parquet$")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


def is_trace_dir(path: str) -> bool:
    try:
        with open(os.path.join(path, META)) as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_trace_dir(path: str) -> None:
    """-o DIR must be writable before anything is attached: a new directory
    in an existing one, an empty directory, or an earlier trace (replaced).
    The directory is created and a file tried in it (root passes every
    permission check, not a read-only filesystem); one line and exit 2
    otherwise."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageProblem(f"-o {path}: exists and is not a directory")
    if os.path.isdir(path):
        if os.listdir(path) and not is_trace_dir(path):
            raise UsageProblem(f"-o {path}: directory is not empty and holds no kerntrace trace")
    else:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageProblem(f"-o {path}: no such directory {parent}")
        try:
            os.mkdir(path, 0o700)
        except OSError as exc:
            raise UsageProblem(f"-o {path}: cannot create it: {exc.strerror}") from None
    probe = os.path.join(path, ".kerntrace-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UsageProblem(f"-o {path}: not writable: {exc.strerror}") from None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(directory: str, name: str, obj: Mapping[str, Any]) -> None:
    from .records import json_line

    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json_line(obj))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(directory, name))
    _fsync_dir(directory)


class TraceWriter:
    """Buffers each kind's record tables and writes them out as parts, at
    least every flush_s seconds and at PART_BYTES.  A thread of its own
    encodes, writes and fsyncs the parts: the run's drain of the rings never
    waits for the disk (an fsync on a busy disk or 9p stalls for tenths of a
    second; zlib lets the drain run meanwhile)."""

    def __init__(self, path: str, flush_s: float = DEFAULT_FLUSH_S, part_bytes: int = PART_BYTES) -> None:
        self.path = path
        self.flush_s = flush_s
        self.part_bytes = part_bytes
        self._buffered: dict[str, list["pa.Table"]] = {}
        self._buffered_bytes = 0
        self._oldest: Optional[float] = None   # monotonic time of the oldest unwritten record
        self._writes: "collections.deque[float]" = collections.deque(maxlen=16)  # how long recent flushes took
        self._seq = 0
        self._kinds: set[str] = set()
        self.records: dict[str, int] = {}
        # Handed to the writer thread and not yet taken, per kind; what comes
        # while it writes joins this, so a slow disk gets fewer, larger parts
        # instead of a queue that grows (each part costs two fsyncs).
        self._pending: dict[str, list[Any]] = {}
        self._writing = False
        self._closing = False
        self._handoff = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None

    def start(self, meta: Mapping[str, Any]) -> None:
        """Creates (or empties an earlier trace in) the directory and writes
        meta.json."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        if is_trace_dir(self.path):
            self._remove_earlier_trace()
        _write_json(self.path, META, {"format": FORMAT, **meta})

    def _remove_earlier_trace(self) -> None:
        for name in os.listdir(self.path):
            full = os.path.join(self.path, name)
            if os.path.isdir(full) and _KIND.match(name):
                for part in os.listdir(full):
                    if _PART.match(part) or part.endswith(".tmp"):
                        os.unlink(os.path.join(full, part))
                if not os.listdir(full):
                    os.rmdir(full)
            elif name in (META, END, SUMMARY):
                os.unlink(full)

    def append(self, kind: str, table: "Records | pa.Table") -> None:
        """One batch of a kind: kerntrace Records (written without pyarrow)
        or a pyarrow Table."""
        if not len(table):
            return
        self._buffered.setdefault(kind, []).append(table)
        self._buffered_bytes += _nbytes(table)
        happened = _happened(table, time.monotonic())
        if self._oldest is None or happened < self._oldest:
            self._oldest = happened
        if self._buffered_bytes >= self.part_bytes:
            self.flush()

    def flush_if_due(self) -> None:
        # Counted from when the oldest record happened (see _happened), and
        # started early by how late a call may come (POLL_S) and by the
        # slowest of the recent writes (a write to 9p or a busy disk stalls
        # now and then; see below), so that a record is on disk within flush_s of
        # happening: what --flush promises a panic can lose (the vmtest
        # panic test holds the trace to it).
        # Twice the slowest write: a flush may wait for the write under way.
        due = self.flush_s - POLL_S - 2 * max(self._writes, default=0.0)
        if self._oldest is not None and time.monotonic() - self._oldest >= due:
            self.flush()

    def flush(self) -> None:
        """Hands what is buffered to the writer thread (to the write after
        the one under way, if there is one)."""
        self._raise_failure()
        buffered = {kind: tables for kind, tables in self._buffered.items() if tables}
        self._buffered = {}
        self._buffered_bytes = 0
        self._oldest = None
        if not buffered:
            return
        with self._handoff:
            for kind, tables in buffered.items():
                self._pending.setdefault(kind, []).extend(tables)
            self._handoff.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_pending, name="kerntrace-trace-writer", daemon=True)
            self._thread.start()

    def wait(self) -> None:
        """Until every part handed over is on disk."""
        with self._handoff:
            while self._pending or self._writing:
                self._handoff.wait()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _write_pending(self) -> None:
        """The writer thread: all that is pending, one part per kind,
        numbered in write order."""
        while True:
            with self._handoff:
                while not self._pending and not self._closing:
                    self._handoff.wait()
                if not self._pending:
                    return
                pending, self._pending = self._pending, {}
                self._writing = True
            try:
                started = time.monotonic()
                for kind, tables in pending.items():
                    self._seq += 1
                    self._write(self._seq, kind, tables)
                self._writes.append(time.monotonic() - started)
            except BaseException as exc:  # handed to the run's thread at its next call
                self._failure = exc
            finally:
                with self._handoff:
                    self._writing = False
                    self._handoff.notify_all()

    def _write(self, seq: int, kind: str, tables: list[Any]) -> None:
        directory = os.path.join(self.path, kind)
        if kind not in self._kinds:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._kinds.add(kind)
        name = f"part-{seq:06d}.parquet"
        tmp = os.path.join(directory, f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            rows = _write_part(f, tables)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(directory, name))
        _fsync_dir(directory)
        self.records[kind] = self.records.get(kind, 0) + rows

    def finish(self, end: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        """A clean end: the last parts, end.json, then summary.json."""
        self.flush()
        self.wait()
        if self._thread is not None:
            with self._handoff:
                self._closing = True
                self._handoff.notify_all()
            self._thread.join()
            self._thread = None
        _write_json(self.path, END, end)
        _write_json(self.path, SUMMARY, summary)


def _happened(table: Any, now: float) -> float:
    """When a batch's oldest record happened, on time.monotonic()'s clock:
    its least ts_ns (bpf_ktime_get_ns is CLOCK_MONOTONIC), so that a batch
    read late is due from then; now for a batch without a plausible one."""
    if "ts_ns" not in table.column_names or not len(table):
        return now
    if hasattr(table, "numbers"):
        first = int(table.numbers["ts_ns"].min()) / 1e9
    else:
        import pyarrow.compute as pc

        first = int(pc.min(table["ts_ns"]).as_py()) / 1e9
    return first if now - 60.0 < first < now else now


def _nbytes(table: Any) -> int:
    if hasattr(table, "nbytes"):
        return int(table.nbytes)
    return sum(v.nbytes for v in table.numbers.values()) + sum(c.nbytes for c, _l in table.strings.values())


def _write_part(f: Any, tables: list[Any]) -> int:
    """One part file of a kind's buffered batches; returns its rows."""
    from .records import Records

    if all(isinstance(t, Records) for t in tables):
        from .parquet import write_parquet_file

        records = Records.concat(tables)
        write_parquet_file(f, records.columns(), len(records))
        return len(records)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([t.to_arrow() if isinstance(t, Records) else t for t in tables],
                             promote_options="default")
    pq.write_table(_microsecond_times(table), f, compression="zstd")
    return int(table.num_rows)


def _microsecond_times(table: "pa.Table") -> "pa.Table":
    """Timestamp columns as microseconds, as the Records writer stores them:
    the schema Spark reads (no TIMESTAMP(NANOS)); ts_ns keeps the ns."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            us = pa.timestamp("us", tz=field.type.tz)
            table = table.set_column(i, field.with_type(us), table.column(i).cast(us, safe=False))
    return table


class TraceReader:
    """A trace directory as written so far (a killed run's included), on
    local disk or in S3 (s3://bucket/prefix, see s3.py)."""

    def __init__(self, path: str, s3: "Optional[S3Store]" = None) -> None:
        from .s3 import is_s3_url

        self.path = path
        self._s3: "Optional[S3Store]" = None
        self._objects: list[str] = []
        if is_s3_url(path):
            from .s3 import check_s3_url, s3_store

            check_s3_url(path)
            self.path = path.rstrip("/")
            self._s3 = s3 or s3_store()
            self._objects = self._s3.list(self.path)
            if not self._objects:
                raise UsageProblem(f"{path}: no such trace directory in S3")
        elif not os.path.isdir(path):
            raise UsageProblem(f"{path}: no such trace directory")
        meta = self._json(META)
        if meta is None or meta.get("format") != FORMAT:
            raise UsageProblem(f"{path}: not a kerntrace trace (no {META} of format {FORMAT})")
        self.meta: dict[str, Any] = meta
        self.end: Optional[dict[str, Any]] = self._json(END)
        self.summary: Optional[dict[str, Any]] = self._json(SUMMARY)

    def _json(self, name: str) -> Optional[dict[str, Any]]:
        try:
            if self._s3 is not None:
                url = f"{self.path}/{name}"
                value = json.loads(self._s3.read(url)) if url in self._objects else None
            else:
                with open(os.path.join(self.path, name)) as f:
                    value = json.load(f)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    @property
    def complete(self) -> bool:
        """Ended cleanly: end.json and summary.json were written."""
        return self.end is not None and self.summary is not None

    def parts(self) -> list[tuple[int, str, str]]:
        """(sequence, kind, path) of every whole part, in write order."""
        out = []
        if self._s3 is not None:
            for url in self._objects:
                kind, _, name = url[len(self.path) + 1:].partition("/")
                m = _PART.match(name)
                if m and _KIND.match(kind):
                    out.append((int(m.group(1)), kind, url))
            out.sort()
            return out
        for kind in sorted(os.listdir(self.path)):
            directory = os.path.join(self.path, kind)
            if not (_KIND.match(kind) and os.path.isdir(directory)):
                continue
            for name in os.listdir(directory):
                m = _PART.match(name)
                if m:
                    out.append((int(m.group(1)), kind, os.path.join(directory, name)))
        out.sort()
        return out

    def _source(self, path: str) -> Any:
        """What pyarrow reads a part from: the path, or S3's bytes."""
        if self._s3 is None:
            return path
        import pyarrow as pa

        return pa.BufferReader(self._s3.read(path))

    def read_part(self, path: str, columns: Optional[list[str]] = None) -> "pa.Table":
        import pyarrow.parquet as pq

        return pq.read_table(self._source(path), columns=columns)

    def kinds(self) -> list[str]:
        return sorted({kind for _seq, kind, _path in self.parts()})

    def tables(self) -> Iterator[tuple[str, "pa.Table"]]:
        """(kind, table) of every part, in write order."""
        for _seq, kind, path in self.parts():
            yield kind, self.read_part(path)

    def table(self, kind: str) -> "pa.Table":
        import pyarrow as pa

        tables = [self.read_part(path) for _seq, k, path in self.parts() if k == kind]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")

    def frames(self) -> "dict[str, pd.DataFrame]":
        """Every kind as one DataFrame (dictionary columns as categories)."""
        return {kind: self.table(kind).to_pandas() for kind in self.kinds()}

    def last_ts_ns(self) -> Optional[int]:
        """The latest ts_ns of any record: where a killed run's trace ends."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        last = None
        for _seq, _kind, path in self.parts():
            source = self._source(path)
            if "ts_ns" not in pq.read_schema(source).names:
                continue
            if self._s3 is not None:
                source.seek(0)
            table = pq.read_table(source, columns=["ts_ns"])
            if table.num_rows:
                value = pc.max(table["ts_ns"]).as_py()
                last = value if last is None or value > last else last
        return last
