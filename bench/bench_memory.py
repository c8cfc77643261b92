"""Benchmark of what ``iotrace odirect`` holds in memory over a long run
(issue 18): the peak RSS of the tracer process over a short and a long fio
run, traced without and with ``-o DIR``; the events lost; fio's read rate
against an untraced run of the same length on the same file; and, with
``-o``, the records written to disk per second.

The -c command (fio) is a child of iotrace, so the figure is iotrace's own
high-water mark (VmHWM of /proc/PID/status, polled while it runs), not
ru_maxrss of the children, which would count fio's as well.

Goals (issue 18): the long run's peak within 1.25 x the short run's, at
most 150 MB (80 MB: bpftrace's figure for the same reads), 0 lost events,
fio at least 95 % of untraced.

Development tooling, not installed: run as root from the source tree,
``.venv/bin/python bench/bench_memory.py [SECONDS ...]`` (default 20 80);
``make bench`` runs it as its ``memory`` step.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional, Sequence, TextIO

from bench_odirect import _fio_argv, _fio_result, _iotrace_exe, _run  # beside this file

__all__ = ["main", "run"]

RATIO_GOAL = 1.25
MB_LIMIT = 150.0
MB_GOAL = 80.0
RATE_GOAL = 0.95
POLL_S = 0.02
_LOST = re.compile(r"lost events: (\d+)")


def _vm_hwm_kib(pid: int) -> Optional[int]:
    """The process's peak RSS so far (KiB), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None  # a zombie: its memory is released


def _drain(stream: TextIO, tail: "collections.deque[str]") -> None:
    """Reads the live lines as a terminal would, keeping the last ones (the
    report, with its lost-events figure)."""
    for line in stream:
        tail.append(line)


def traced_run(fio: list[str], trace_dir: Optional[str]) -> dict[str, Any]:
    """``iotrace odirect [-o DIR] -c FIO``: iotrace's peak RSS, lost events,
    and with -o the trace's records."""
    argv = [_iotrace_exe(), "odirect", *(["-o", trace_dir] if trace_dir else []), "-c", shlex.join(fio)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tail: collections.deque[str] = collections.deque(maxlen=400)
    errors: collections.deque[str] = collections.deque(maxlen=50)
    readers = [threading.Thread(target=_drain, args=(proc.stdout, tail), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)]
    for t in readers:
        t.start()
    peak_kib = 0
    start = time.monotonic()
    while proc.poll() is None:
        hwm = _vm_hwm_kib(proc.pid)
        if hwm is not None:
            peak_kib = max(peak_kib, hwm)
        time.sleep(POLL_S)
    wall_s = time.monotonic() - start
    for t in readers:
        t.join(timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])}: exit {proc.returncode}: {''.join(errors).strip()[-500:]}")
    out: dict[str, Any] = {"peak_rss_mb": peak_kib / 1024, "wall_s": wall_s}
    lost = [int(m.group(1)) for line in tail for m in [_LOST.search(line)] if m]
    out["lost_events"] = lost[-1] if lost else None
    if trace_dir:
        out.update(_trace_figures(trace_dir))
        if out["lost_events"] is None:
            out["lost_events"] = out["trace_lost_events"]
    return out


def _trace_figures(trace_dir: str) -> dict[str, Any]:
    """Records in the trace (read from the parts' footers) and what its
    end.json says of the run."""
    import pyarrow.parquet as pq

    records: dict[str, int] = {}
    parts = 0
    size = 0
    for base, _dirs, names in os.walk(trace_dir):
        for name in names:
            if name.startswith("part-") and name.endswith(".parquet"):
                kind = os.path.basename(base)
                path = os.path.join(base, name)
                records[kind] = records.get(kind, 0) + pq.ParquetFile(path).metadata.num_rows
                parts += 1
                size += os.path.getsize(path)
    with open(os.path.join(trace_dir, "end.json")) as f:
        end = json.load(f)
    duration = float(end["duration_s"])
    total = sum(records.values())
    return {"records": records, "parts": parts, "trace_mb": size / 1e6, "duration_s": duration,
            "trace_lost_events": int(end["lost_events"]),
            "records_per_s": total / duration if duration else None}


def run(seconds: Sequence[float] = (20.0, 80.0), directory: str = "/var/tmp", out: Optional[TextIO] = None) -> dict[str, Any]:
    """Each length: untraced fio, then iotrace odirect without and with -o;
    prints a table and returns the figures (``ok``: every goal met)."""
    out = out or sys.stdout
    if os.geteuid() != 0:
        raise SystemExit("bench_memory needs root (it traces)")
    if shutil.which("fio") is None:
        raise SystemExit("bench_memory needs fio")
    work = tempfile.mkdtemp(prefix="kerntrace-bench-mem-", dir=directory)
    fio_file = os.path.join(work, "fio.dat")
    result_file = os.path.join(work, "fio.json")
    results: dict[str, Any] = {"file": fio_file, "runs": {}}
    try:
        _run(_fio_argv(fio_file, 1, result_file))  # lay the file out once, outside any measurement
        out.write(f"fio 4k O_DIRECT random reads (psync), file {fio_file}; iotrace odirect -c fio, "
                  f"peak RSS of iotrace (VmHWM)\n")
        out.write(f"  {'run':<16} {'peak RSS':>9} {'lost':>5} {'fio reads/s':>12} {'of untraced':>12} "
                  f"{'records/s to disk':>18}\n")
        for n in seconds:
            fio = _fio_argv(fio_file, n, result_file)
            _run(fio)
            untraced = _fio_result(result_file)
            runs = {"untraced": untraced}
            out.write(f"  {f'{n:g} s untraced':<16} {'':>9} {'':>5} {untraced['iops']:>12,.0f} {'100.0 %':>12}\n")
            out.flush()
            for label, with_output in (("traced", False), ("traced -o", True)):
                trace = os.path.join(work, f"trace-{n:g}") if with_output else None
                os.unlink(result_file)
                r = traced_run(fio, trace)
                r.update(fio=_fio_result(result_file))
                r["rate_share"] = r["fio"]["iops"] / untraced["iops"]
                runs[label] = r
                per_s = f"{r['records_per_s']:,.0f}" if r.get("records_per_s") else "-"
                lost = "?" if r["lost_events"] is None else str(r["lost_events"])
                out.write(f"  {f'{n:g} s {label}':<16} {r['peak_rss_mb']:>6.1f} MB {lost:>5} "
                          f"{r['fio']['iops']:>12,.0f} {r['rate_share'] * 100:>10.1f} % {per_s:>18}\n")
                out.flush()
                if trace:
                    shutil.rmtree(trace, ignore_errors=True)
            results["runs"][n] = runs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["ok"] = _verdict(results, seconds, out)
    return results


def _verdict(results: dict[str, Any], seconds: Sequence[float], out: TextIO) -> bool:
    """The goals, one line each."""
    runs = results["runs"]
    short, long = min(seconds), max(seconds)
    ok = True
    for label in ("traced", "traced -o"):
        peaks = [runs[n][label]["peak_rss_mb"] for n in seconds]
        ratio = runs[long][label]["peak_rss_mb"] / runs[short][label]["peak_rss_mb"]
        top = max(peaks)
        good = ratio <= RATIO_GOAL and top <= MB_LIMIT
        ok &= good
        out.write(f"  {label:<10} peak RSS {long:g} s / {short:g} s = {ratio:.2f}x (goal <= {RATIO_GOAL}x); "
                  f"at most {top:.1f} MB (limit {MB_LIMIT:g} MB, goal {MB_GOAL:g} MB){'' if good else '  FAILS'}\n")
    lost = {f"{n:g} s {label}": runs[n][label]["lost_events"] for n in seconds for label in ("traced", "traced -o")}
    bad = {k: v for k, v in lost.items() if v != 0}
    ok &= not bad
    out.write(f"  lost events: {'0 in every run' if not bad else bad}\n")
    shares = {f"{n:g} s {label}": runs[n][label]["rate_share"] for n in seconds for label in ("traced", "traced -o")}
    low = {k: f"{v * 100:.1f} %" for k, v in shares.items() if v < RATE_GOAL}
    ok &= not low
    out.write(f"  fio reads/s traced: {min(shares.values()) * 100:.1f}-{max(shares.values()) * 100:.1f} % of untraced "
              f"(goal >= {RATE_GOAL * 100:.0f} %){'' if not low else '  FAILS: ' + str(low)}\n")
    for n in seconds:
        r = runs[n]["traced -o"]
        out.write(f"  {n:g} s -o: {sum(r['records'].values()):,} records ({', '.join(f'{k} {v:,}' for k, v in sorted(r['records'].items()))}) "
                  f"in {r['parts']} parts, {r['trace_mb']:.1f} MB, over {r['duration_s']:.1f} s: "
                  f"{r['records_per_s']:,.0f} records/s written"
                  f"{' without loss' if r['lost_events'] == 0 else ', with loss'}\n")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    seconds = [float(a) for a in args] or [20.0, 80.0]
    if len(seconds) < 2:
        raise SystemExit("give two or more run lengths (seconds), e.g. 20 80")
    return 0 if run(seconds)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
