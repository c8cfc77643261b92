#!/usr/bin/env python3
"""kerntrace on every node: the recorder loop, its liveness probe and the
trace retention that the DaemonSet (deploy/kerntrace.yaml) runs.  The image
(`make image`) installs this file as /opt/kerntrace/bin/kerntrace-fleet.

    kerntrace-fleet record DIR [--every S] -- COMMAND...
        Runs COMMAND -d S -o DIR/<UTC start> (default S: 3600), then again,
        until SIGTERM or SIGINT, which it passes on (the tracer ends its run
        cleanly: end.json, summary.json) before it exits 0.  A new directory
        per run: `-o` replaces an earlier trace, so a restarted container
        must not reuse one (the trace before a panic is the one that
        matters); and whole hourly traces are what retention can drop.  A
        tracer that fails (exit 1 or 2) ends the loop with its status, so
        the kubelet restarts the container and shows the failure.
    kerntrace-fleet alive DIR [--grace S]
        The liveness probe: 0 while DIR's recorder has a live tracer that
        wrote its meta.json (attached) within S seconds (default 120) of its
        start; 1 with the reason otherwise.
    kerntrace-fleet retain ROOT [--max-age-hours H] [--max-gb G] [--every S] [--once]
        Every S seconds (default 300) removes, below ROOT, the traces last
        written more than H hours ago (default 72), then the oldest ones
        while ROOT holds more than G GB (default 5).  The newest trace of
        each recorder directory is never removed: it is the run in progress.
        Only kerntrace traces (a meta.json of the trace format) are touched.

Deployment tooling: it is not in the wheel (the product), only in the image.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from kerntrace.tracers.engine.tracedir import META, is_trace_dir

STATE = ".recorder.json"   # in the recorder's DIR: the run in progress, for `alive`


def log(message: str) -> None:
    print(f"kerntrace-fleet: {message}", file=sys.stderr, flush=True)


# -- record -----------------------------------------------------------------------


def new_run_dir(parent: Path, now: Optional[float] = None) -> Path:
    """parent/<UTC start, e.g. 20260102T030405Z>: sorts by start; a second
    run within the same second gets -2, -3, ..."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    run, n = parent / stamp, 1
    while run.exists():
        n += 1
        run = parent / f"{stamp}-{n}"
    return run


def _write_state(parent: Path, pid: Optional[int], run: Path) -> None:
    tmp = parent / (STATE + ".tmp")
    tmp.write_text(json.dumps({"pid": pid, "run": str(run), "started": time.time()}) + "\n")
    os.replace(tmp, parent / STATE)


def record(parent: Path, every_s: float, command: Sequence[str]) -> int:
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop = threading.Event()
    child: Optional[subprocess.Popen[bytes]] = None

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)   # the tracer ends its run cleanly on either

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set():
        run = new_run_dir(parent)
        argv = [*command, "-d", f"{every_s:g}", "-o", str(run)]
        _write_state(parent, None, run)
        log(f"run: {' '.join(argv)}")
        # The live lines and the report go nowhere: headless, the trace
        # directory holds the run (`report DIR`); stderr (the ready line,
        # errors) goes to the container's log.
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except OSError as exc:
            log(f"cannot run {command[0]}: {exc.strerror}")
            return 127
        if stop.is_set():   # a signal between the check and the start
            child.send_signal(signal.SIGTERM)
        _write_state(parent, child.pid, run)
        status = child.wait()
        try:
            run.rmdir()   # only if empty: a tracer stopped before it wrote anything
        except OSError:
            pass
        if status != 0 and not stop.is_set():
            log(f"{command[0]} exited with status {status}: ending, for the kubelet to restart it")
            return status if status > 0 else 128 - status
    log("stopped")
    return 0


# -- alive ------------------------------------------------------------------------


def _running(pid: int, run: Path) -> bool:
    """pid is a live process (not a zombie) whose argv writes run."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, IndexError):
        return False
    return state != "Z" and str(run).encode() in argv


def alive(parent: Path, grace_s: float, now: Optional[float] = None) -> tuple[bool, str]:
    now = time.time() if now is None else now
    try:
        state = json.loads((parent / STATE).read_text())
    except (OSError, ValueError) as exc:
        return False, f"no recorder state in {parent}: {exc}"
    run, age = Path(state["run"]), now - float(state["started"])
    if state["pid"] is None:
        # between two runs: the next tracer is being started
        return (age <= grace_s, f"starting {run} for {age:.0f} s")
    if not _running(int(state["pid"]), run):
        return False, f"the tracer of {run} (pid {state['pid']}) is not running"
    if not (run / META).exists() and age > grace_s:
        return False, f"the tracer of {run} has not attached (no {META}) after {age:.0f} s"
    return True, f"recording {run} (pid {state['pid']})"


# -- retain -----------------------------------------------------------------------


@dataclass
class Trace:
    path: Path
    started: float      # meta.json's mtime: written first
    last_write: float   # the newest file's mtime
    size: int           # bytes of its files


def _scan(path: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:   # a part renamed or removed under us
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def find_traces(root: Path) -> list[Trace]:
    """Every kerntrace trace directory below root (not below a trace)."""
    traces = []
    for dirpath, dirs, _files in os.walk(root):
        if is_trace_dir(dirpath):
            dirs.clear()
            size, newest = _scan(Path(dirpath))
            started = os.stat(os.path.join(dirpath, META)).st_mtime
            traces.append(Trace(Path(dirpath), started, max(newest, started), size))
    return traces


def plan_removal(traces: list[Trace], total_bytes: int, max_age_s: float, max_bytes: int,
                 now: float) -> list[tuple[Trace, str]]:
    """Which traces to remove and why: pure, so the rule is tested alone."""
    newest: dict[Path, Trace] = {}
    for t in traces:
        if t.path.parent not in newest or t.started > newest[t.path.parent].started:
            newest[t.path.parent] = t
    keep = {id(t) for t in newest.values()}
    candidates = sorted((t for t in traces if id(t) not in keep), key=lambda t: t.last_write)
    plan = []
    for t in candidates:
        if now - t.last_write > max_age_s:
            plan.append((t, f"last written {(now - t.last_write) / 3600:.1f} h ago"))
            total_bytes -= t.size
    for t in candidates:
        if total_bytes <= max_bytes:
            break
        if any(t is p for p, _ in plan):
            continue
        plan.append((t, f"traces over {max_bytes / 1e9:g} GB"))
        total_bytes -= t.size
    return plan


def retain_once(root: Path, max_age_s: float, max_bytes: int, now: Optional[float] = None) -> list[Path]:
    now = time.time() if now is None else now
    traces = find_traces(root)
    total, _ = _scan(root)
    removed = []
    for t, why in plan_removal(traces, total, max_age_s, max_bytes, now):
        shutil.rmtree(t.path, ignore_errors=True)
        log(f"removed {t.path} ({t.size / 1e6:.1f} MB): {why}")
        removed.append(t.path)
    return removed


def retain(root: Path, max_age_s: float, max_bytes: int, every_s: float, once: bool) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while True:
        if root.is_dir():
            retain_once(root, max_age_s, max_bytes)
        if once or stop.wait(every_s):
            return 0


# -- command line ------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kerntrace-fleet", description="kerntrace's recorder loop and retention.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="run a tracer again and again, a new trace directory per run")
    rec.add_argument("dir", type=Path)
    rec.add_argument("--every", type=float, default=3600.0, metavar="S", help="seconds per run (-d)")
    live = sub.add_parser("alive", help="liveness probe of a recorder directory")
    live.add_argument("dir", type=Path)
    live.add_argument("--grace", type=float, default=120.0, metavar="S")
    ret = sub.add_parser("retain", help="remove traces by age and total size")
    ret.add_argument("root", type=Path)
    ret.add_argument("--max-age-hours", type=float, default=72.0)
    ret.add_argument("--max-gb", type=float, default=5.0)
    ret.add_argument("--every", type=float, default=300.0, metavar="S")
    ret.add_argument("--once", action="store_true")
    # record's command follows "--", options and all (argparse would take
    # its options for record's own)
    argv = list(argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:len(argv) - len(command) - 1] if "--" in argv else argv)
    if args.cmd == "record":
        if not command:
            parser.error("record needs the command after --, e.g. -- nstrace ip6mr")
        return record(args.dir, args.every, command)
    if args.cmd == "alive":
        ok, why = alive(args.dir, args.grace)
        print(why)
        return 0 if ok else 1
    return retain(args.root, args.max_age_hours * 3600, int(args.max_gb * 1e9), args.every, args.once)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
