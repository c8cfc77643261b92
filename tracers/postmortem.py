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
from typing import IO, Any

import click

from .engine.environment import UsageProblem
from ..analysis.postmortem import findings, parse_stream
from ..analysis.report import print_findings
from .engine.run import snapshot_envelope

__all__ = ["command", "open_log"]

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


@click.command("postmortem")
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: what was read and the findings.")
def command(file: str, as_json: bool) -> int:
    """Recognize the ip6mr_sk_done crash (and other oopses, panics, OOM
    kills, hung tasks) in a kernel log FILE."""
    started_ns = time.time_ns()
    stream = open_log(file)
    try:
        summary = parse_stream(stream)
    except (OSError, EOFError) as exc:
        # e.g. a truncated gzip: report what was read up to there
        raise UsageProblem(f"{file}: read failed after some input: {exc}") from None
    finally:
        stream.close()
    found = findings(summary)
    if as_json:
        doc: dict[str, Any] = snapshot_envelope("postmortem", started_ns, found, file=file, **summary.as_dict())
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    out = sys.stdout
    notes = []
    if summary.binary_lines:
        notes.append(f"{summary.binary_lines} binary lines skipped")
    if summary.long_lines:
        notes.append(f"{summary.long_lines} over-long lines cut")
    out.write(f"{file}: {summary.lines} lines ({summary.format}), {len(summary.oopses)} oops reports, "
              f"{summary.panic_count} panics, {summary.oom_kills} OOM kills, {summary.hung_tasks} hung tasks"
              + (f"; {', '.join(notes)}" if notes else "") + ".\n")
    if summary.lines and summary.lines == summary.binary_lines:
        out.write("No text in this file: it does not look like a kernel log.\n")
    print_findings(found, out)
    return 0
