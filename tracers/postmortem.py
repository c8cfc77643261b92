"""``nstrace postmortem FILE``: recognize the ip6mr_sk_done crash (and other
oopses, panics, OOM kills, hung tasks) in a kernel log written before or
after a crash.  Reads dmesg, vmcore-dmesg.txt, crash's ``log`` output,
``journalctl -k`` text or ``journalctl -o export``; gzip is read as is."""
from __future__ import annotations

import gzip
import json
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Mapping, Optional, Sequence, TextIO

import click

from .engine.clock import Clock
from .engine.environment import UsageProblem
from .engine.tool import Tool
from .engine.tracedir import DEFAULT_FLUSH_S
from ..analysis.postmortem import LogSummary, Oops, findings, parse_stream
from ..analysis.report import print_findings
from .engine.run import check_output_path, snapshot_envelope

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["PostmortemLog", "command", "open_log"]

_DUMP_SIGNATURES = {
    b"\x7fELF": "an ELF file (a vmcore?)",
    b"KDUMP   ": "a kdump-compressed vmcore",
    b"makedumpfile": "a makedumpfile flattened vmcore",
}


def open_log(path: str) -> IO[bytes]:
    """The file as a byte stream; a one-line UsageProblem when it cannot be
    read or is a memory dump rather than a log."""
    if not os.path.exists(path):
        raise UsageProblem(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageProblem(f"{path}: is a directory, give a kernel log file")
    try:
        stream: IO[bytes] = open(path, "rb")
    except OSError as exc:
        raise UsageProblem(f"{path}: cannot read: {exc.strerror}") from None
    try:
        head = stream.peek(16)[:16] if hasattr(stream, "peek") else b""
    except OSError as exc:
        stream.close()
        raise UsageProblem(f"{path}: cannot read: {exc.strerror}") from None
    for sig, what in _DUMP_SIGNATURES.items():
        if head.startswith(sig):
            stream.close()
            raise UsageProblem(f"{path} is {what}, not a log: extract the log with `vmcore-dmesg {path}` "
                               f"or crash's `log` command and give that file")
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(stream, "rb")  # type: ignore[return-value]
    return stream


# -- the trace directory (-o DIR) and `report` ---------------------------------

LOG_KIND = "postmortem_log"
OOPS_KIND = "postmortem_oops"
OOM_KIND = "postmortem_oom"
HUNG_KIND = "postmortem_hung"
_LOG_COUNTS = ("lines", "bytes", "binary_lines", "long_lines", "oopses_dropped", "panic_count", "oom_kills",
               "hung_tasks")


def _schemas() -> dict[str, "pa.Schema"]:
    import pyarrow as pa

    strings = pa.list_(pa.string())
    return {
        LOG_KIND: pa.schema(
            [("time", pa.timestamp("ns", tz="UTC")), ("ts_ns", pa.int64()), ("file", pa.string()),
             ("format", pa.string())] + [(k, pa.int64()) for k in _LOG_COUNTS]
            + [("panics", strings), ("precursors", pa.list_(pa.struct([("kind", pa.string()), ("count", pa.int64())]))),
               ("precursor_samples", strings)]),
        OOPS_KIND: pa.schema([
            ("kind", pa.string()), ("first_line", pa.int64()), ("lines", strings), ("address", pa.string()),
            ("rip", pa.string()), ("rip_line", pa.string()), ("comm", pa.string()), ("pid", pa.int64()),
            ("frames", strings), ("frame_lines", pa.list_(pa.struct([("fn", pa.string()), ("text", pa.string())]))),
            ("precursors_before", strings), ("closed", pa.bool_())]),
        OOM_KIND: pa.schema([("pid", pa.int64()), ("comm", pa.string()), ("scope", pa.string())]),
        HUNG_KIND: pa.schema([("comm", pa.string()), ("pid", pa.int64()), ("blocked_s", pa.int64())]),
    }


def log_tables(file: str, s: LogSummary, ts_ns: int, offset_ns: int) -> list[tuple[str, "pa.Table"]]:
    """What the parser kept of the log, as records: one postmortem_log row
    (counts, panics, precursors), a postmortem_oops row per oops kept (its
    lines, frames and the precursor lines before it), and the OOM-kill and
    hung-task samples."""
    import pyarrow as pa

    schemas = _schemas()
    log = {"time": ts_ns + offset_ns, "ts_ns": ts_ns, "file": file, "format": s.format,
           **{k: getattr(s, k) for k in _LOG_COUNTS}, "panics": s.panics,
           "precursors": [{"kind": k, "count": v} for k, v in s.precursors.items()],
           "precursor_samples": s.precursor_samples}
    oopses = [{"kind": o.kind, "first_line": o.first_line, "lines": o.lines, "address": o.address, "rip": o.rip,
               "rip_line": o.rip_line, "comm": o.comm, "pid": o.pid, "frames": o.frames,
               "frame_lines": [{"fn": k, "text": v} for k, v in o.frame_lines.items()],
               "precursors_before": o.precursors_before, "closed": o.closed} for o in s.oopses]
    rows = {LOG_KIND: [log], OOPS_KIND: oopses, OOM_KIND: s.oom_samples, HUNG_KIND: s.hung_samples}
    return [(kind, pa.Table.from_pylist(rows[kind], schema=schemas[kind])) for kind in rows]


class PostmortemLog(Tool):
    """`nstrace postmortem` as a tool `report` can rebuild: the parsed log,
    live from parse_stream() or replayed from a trace's postmortem_* rows;
    the findings and the JSON come from it alike."""

    name = "postmortem"

    def __init__(self, summary: Optional[LogSummary] = None, file: str = "") -> None:
        self.log = summary or LogSummary()
        self.file = file

    @classmethod
    def from_trace(cls, options: Mapping[str, Any]) -> "PostmortemLog":
        return cls(file=str(options.get("file", "")))

    def replay(self, kind: str, table: "pa.Table") -> None:
        s = self.log
        for row in table.to_pylist():
            if kind == LOG_KIND:
                self.file, s.format = row["file"], row["format"]
                for key in _LOG_COUNTS:
                    setattr(s, key, row[key])
                s.panics = list(row["panics"] or [])
                s.precursors = {p["kind"]: p["count"] for p in row["precursors"] or []}
                s.precursor_samples = list(row["precursor_samples"] or [])
            elif kind == OOPS_KIND:
                frame_lines = {f["fn"]: f["text"] for f in row.pop("frame_lines") or []}
                s.oopses.append(Oops(**{k: (list(v) if isinstance(v, list) else v) for k, v in row.items()},
                                     frame_lines=frame_lines))
            elif kind == OOM_KIND:
                s.oom_samples.append(row)
            elif kind == HUNG_KIND:
                s.hung_samples.append(row)

    def findings(self, duration_s: float = 0.0) -> list[Any]:
        return findings(self.log)

    def summary(self, duration_s: float = 0.0) -> dict[str, Any]:
        return {"file": self.file, **self.log.as_dict()}

    def print_report(self, envelope: Mapping[str, Any], found: Sequence[Any], out: TextIO) -> None:
        summary = self.log
        notes = []
        if summary.binary_lines:
            notes.append(f"{summary.binary_lines} binary lines skipped")
        if summary.long_lines:
            notes.append(f"{summary.long_lines} over-long lines cut")
        out.write(f"{self.file}: {summary.lines} lines ({summary.format}), {len(summary.oopses)} oops reports, "
                  f"{summary.panic_count} panics, {summary.oom_kills} OOM kills, {summary.hung_tasks} hung tasks"
                  + (f"; {', '.join(notes)}" if notes else "") + ".\n")
        if summary.lines and summary.lines == summary.binary_lines:
            out.write("No text in this file: it does not look like a kernel log.\n")
        print_findings(found, out)


def _write_trace(output: str, flush_s: float, tool: PostmortemLog, clock: Clock, started_ns: int,
                 envelope: Mapping[str, Any]) -> None:
    from .engine.snapshot import snapshot_meta, write_snapshot

    meta = snapshot_meta("postmortem", "nstrace", started_ns, clock, {"file": tool.file}, tool.file)
    write_snapshot(output, meta, log_tables(tool.file, tool.log, clock.start_ns, clock.offset_ns), envelope,
                   flush_s=flush_s)


@click.command("postmortem")
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: what was read and the findings.")
@click.option("-o", "--output", type=click.Path(), metavar="DIR",
              help="Also write what was read to the trace directory DIR (postmortem_log, postmortem_oops, "
                   "postmortem_oom, postmortem_hung records; mode 0600; `report DIR` reads it back).")
@click.option("--flush", "flush_s", type=click.FloatRange(min=0.01), default=DEFAULT_FLUSH_S, hidden=True)
def command(file: str, as_json: bool, output: Optional[str], flush_s: float) -> int:
    """Recognize the ip6mr_sk_done crash (and other oopses, panics, OOM
    kills, hung tasks) in a kernel log FILE."""
    check_output_path(output)
    started_ns = time.time_ns()
    clock = Clock()
    stream = open_log(file)
    try:
        summary = parse_stream(stream)
    except (OSError, EOFError) as exc:
        # e.g. a truncated gzip: report what was read up to there
        raise UsageProblem(f"{file}: read failed after some input: {exc}") from None
    finally:
        stream.close()
    tool = PostmortemLog(summary, file)
    found = tool.findings()
    doc: dict[str, Any] = snapshot_envelope("postmortem", started_ns, found, **tool.summary())
    if output:
        _write_trace(output, flush_s, tool, clock, started_ns, doc)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    tool.print_report(doc, found, sys.stdout)
    return 0
