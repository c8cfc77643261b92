"""Benchmark of every tracing command: what each one costs a workload that
makes many syscalls, many context switches or many short-lived processes.

Three workloads, each timing itself (its own clock around its work, printed
on stderr), so the tracer's start-up, attach and final report do not count:

- ``syscalls``: ``dd if=FILE of=/dev/null bs=4k`` over a 256 MiB file
  already in the page cache (dd's own "copied, X s");
- ``switches``: two processes ping-ponging one byte over two pipes, 200,000
  round trips; each side blocks in read(), so every message is a context
  switch ("N round trips in X s");
- ``forks``: a process forking and reaping 2,000 children that exit at once
  ("N forks in X s").

Ways, alternated within each round (the machine drifts): untraced; untraced
with empty programs on tp_btf sys_enter/sys_exit (``floor``: what any
tracer on those two hooks pays before doing anything, bench_reads'); under
``iotrace odirect|dstate|zombies|diagnose -c CMD`` and ``nstrace ip6mr -c
CMD``; and untraced while ``iotrace stat`` runs system-wide beside it
(started first, the workload only once stat has printed its first interval,
then SIGINT).

Printed and returned per workload and way: the median of the workload's
seconds, untraced's median as a share of it (100% = free), the tracer's
peak RSS (ru_maxrss from os.wait4 of the tracer process), the events the
tracer reported lost (its "lost events: N"), and the errors of failed runs:
a failed run is recorded and printed, and the benchmark goes on.

Development tooling, not installed: run as root from the source tree,
``.venv/bin/python bench/bench_tools.py [ROUNDS]`` (default 5 rounds,
about ten minutes on 2 cores).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any, Callable, Optional

# Beside this file: bench scripts import their siblings directly (bench.py
# does the same).  bench_reads has the dd pattern, the iotrace lookup and
# the empty-programs floor.
import bench_reads

__all__ = ["run"]

FILE_MIB = 256
ROUND_TRIPS = 200_000
FORKS = 2_000
RUN_TIMEOUT_S = 300.0      # a hung tracer must not hang the benchmark
STAT_READY_TIMEOUT_S = 30.0
STAT_INTERVALS = 600       # `iotrace stat` has no -d: INTERVAL 1, COUNT 600

PING_PONG = r"""
import os, sys, time
n = int(sys.argv[1])
down_r, down_w = os.pipe()   # parent -> child
up_r, up_w = os.pipe()       # child -> parent
pid = os.fork()
read, write = os.read, os.write
if pid == 0:
    os.close(down_w); os.close(up_r)
    for _ in range(n):
        read(down_r, 1)
        write(up_w, b"x")
    os._exit(0)
os.close(down_r); os.close(up_w)
start = time.perf_counter()
for _ in range(n):
    write(down_w, b"x")
    if not read(up_r, 1):
        sys.exit("ping-pong: the other side went away")
print(f"{n} round trips in {time.perf_counter() - start:.6f} s", file=sys.stderr)
os.waitpid(pid, 0)
"""

FORKER = r"""
import os, sys, time
n = int(sys.argv[1])
start = time.perf_counter()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print(f"{n} forks in {time.perf_counter() - start:.6f} s", file=sys.stderr)
"""

_SWITCH_SECONDS = re.compile(r"\d+ round trips in ([0-9.]+) s")
_FORK_SECONDS = re.compile(r"\d+ forks in ([0-9.]+) s")
_LOST = re.compile(r"lost events: (\d+)")
_STAT_DATA_LINE = re.compile(r"^\s*\d+\s+\d+\s+\d+")   # not one of the two header lines

# (tool, subcommand) per traced way, in the order they run and print
TRACED = {
    "odirect": ("iotrace", "odirect"),
    "dstate": ("iotrace", "dstate"),
    "zombies": ("iotrace", "zombies"),
    "diagnose": ("iotrace", "diagnose"),
    "ip6mr": ("nstrace", "ip6mr"),
}
WAYS = ("untraced", "floor", *TRACED, "stat")


class Run:
    """One run of a workload: its own seconds, the peak RSS in MB of the
    process started (the tracer when there is one), the events the tracer
    reported lost (None: no such line)."""

    def __init__(self, seconds: float, rss_mb: Optional[float], lost: Optional[int]) -> None:
        self.seconds = seconds
        self.rss_mb = rss_mb
        self.lost = lost


def _exe(tool: str) -> str:
    if tool == "iotrace":
        return bench_reads._iotrace_exe()
    exe = os.path.join(os.path.dirname(sys.executable), tool)   # the venv's, as bench_reads
    return exe if os.path.exists(exe) else shutil.which(tool) or tool


def _wait(proc: "subprocess.Popen[str]") -> tuple[int, float]:
    """os.wait4 (not Popen.wait, which throws the rusage away) ->
    (exit code, ru_maxrss in MB).  ru_maxrss of a tracer also covers the
    command it reaped; the tracer's Python is the larger by far."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def _timed(argv: list[str], pattern: "re.Pattern[str]") -> Run:
    """bench_reads._timed, but the tracer's stdout is kept (to a file, so
    neither pipe can fill while the other is read) for its "lost events"
    line, and a run over RUN_TIMEOUT_S is killed."""
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True)
        killer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
        killer.start()
        try:
            assert proc.stderr is not None
            err = proc.stderr.read()
            code, rss = _wait(proc)
        finally:
            killer.cancel()
        stdout.seek(0)
        report = stdout.read()
    found = pattern.findall(err)
    if code != 0 or not found:
        tail = (err.strip() or report.strip())[-400:]
        raise RuntimeError(f"{shlex.join(argv[:3])}...: exit {code}: {tail}")
    lost = _LOST.findall(report)
    return Run(float(found[-1]), rss, int(lost[-1]) if lost else None)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _beside_stat(argv: list[str], pattern: "re.Pattern[str]") -> Run:
    """The workload untraced while ``iotrace stat`` runs system-wide: stat
    is started first, the workload only once stat printed its first
    interval (its programs are attached and it is sampling), then stat is
    stopped with SIGINT, as Ctrl-C would."""
    with tempfile.NamedTemporaryFile("w+", prefix="kt-bench-stat-") as stdout:
        stat = subprocess.Popen([_exe("iotrace"), "stat", "1", str(STAT_INTERVALS)],
                                stdout=stdout, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + STAT_READY_TIMEOUT_S
            # Polling its output file: a pipe would need draining while the workload runs.
            while not any(_STAT_DATA_LINE.match(line) for line in _read(stdout.name).splitlines()):
                if stat.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"iotrace stat never printed an interval (exit {stat.returncode}): "
                                       f"{_read(stdout.name).strip()[-400:]}")
                time.sleep(0.05)
            workload = _timed(argv, pattern)
        finally:
            if stat.returncode is None:
                stat.send_signal(signal.SIGINT)
                killer = threading.Timer(RUN_TIMEOUT_S, stat.kill)
                killer.start()
                try:
                    code, rss = _wait(stat)
                finally:
                    killer.cancel()
        if code != 0:
            raise RuntimeError(f"iotrace stat: exit {code} on SIGINT: {_read(stdout.name).strip()[-400:]}")
    return Run(workload.seconds, rss, None)


def _floor(argv: list[str], pattern: "re.Pattern[str]") -> Run:
    with bench_reads._empty_syscall_programs():
        run = _timed(argv, pattern)
    return Run(run.seconds, None, None)   # the RSS is the workload's: not a tracer's


def _untraced(argv: list[str], pattern: "re.Pattern[str]") -> Run:
    run = _timed(argv, pattern)
    return Run(run.seconds, None, None)


def _traced(tool: str, sub: str) -> Callable[[list[str], "re.Pattern[str]"], Run]:
    def way(argv: list[str], pattern: "re.Pattern[str]") -> Run:
        return _timed([_exe(tool), sub, "-c", shlex.join(argv)], pattern)
    return way


def _workloads(directory: str) -> dict[str, tuple[list[str], "re.Pattern[str]"]]:
    path = os.path.join(directory, "cached.dat")
    with open(path, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(FILE_MIB):
            f.write(chunk)
    with open(path, "rb") as f:  # in the page cache from here on
        while f.read(8 << 20):
            pass
    dd = [shutil.which("dd") or "dd", f"if={path}", "of=/dev/null", "bs=4k"]
    scripts = {}
    for name, code in (("ping_pong.py", PING_PONG), ("forker.py", FORKER)):
        # files, not python -c CODE: the command line stays short and readable in the tracers' output
        scripts[name] = os.path.join(directory, name)
        with open(scripts[name], "w") as f:
            f.write(code)
    return {
        "syscalls": (dd, bench_reads._DD_SECONDS),
        "switches": ([sys.executable, scripts["ping_pong.py"], str(ROUND_TRIPS)], _SWITCH_SECONDS),
        "forks": ([sys.executable, scripts["forker.py"], str(FORKS)], _FORK_SECONDS),
    }


def _print_table(results: dict[str, Any], out: IO[str]) -> None:
    print(f"{'workload':<9} {'way':<9} {'median_s':>9} {'min_s':>9} {'max_s':>9} {'share':>6} {'peak_rss_mb':>11} "
          f"{'lost':>6} {'runs':>5}", file=out)
    for name, r in results.items():
        for way in WAYS:
            median = r["median_s"].get(way)
            low, high = (min(r["seconds"][way]), max(r["seconds"][way])) if r["seconds"][way] else (None, None)
            share = r["share_of_untraced"].get(way)
            rss = r["peak_rss_mb"].get(way)
            lost = r["lost_events"].get(way)
            runs = f"{r['runs'][way]}/{r['rounds']}"
            print(f"{name:<9} {way:<9} "
                  f"{'-' if median is None else f'{median:.3f}':>9} "
                  f"{'-' if low is None else f'{low:.3f}':>9} "
                  f"{'-' if high is None else f'{high:.3f}':>9} "
                  f"{'-' if share is None else f'{share:.0%}':>6} "
                  f"{'-' if rss is None else f'{rss:.0f}':>11} "
                  f"{'-' if lost is None else lost:>6} {runs:>5}", file=out)
    errors = [(n, w, e) for n, r in results.items() for w, es in r["errors"].items() for e in es]
    if errors:
        print("errors:", file=out)
        for name, way, error in errors:
            print(f"  {name}/{way}: {error}", file=out)
    print("min_s/max_s = fastest/slowest round; share = untraced median / this way's median (100% = no cost);\n"
          "peak_rss_mb = ru_maxrss of the tracer process; lost = events the tracer reported lost, summed over\n"
          "rounds; runs = successful/rounds", file=out, flush=True)


def run(rounds: int = 5, out: Any = None, directory: str = "/var/tmp") -> dict[str, Any]:
    out = out or sys.stdout
    started = time.monotonic()
    ways: dict[str, Callable[[list[str], "re.Pattern[str]"], Run]] = {
        "untraced": _untraced,
        "floor": _floor,
        **{way: _traced(tool, sub) for way, (tool, sub) in TRACED.items()},
        "stat": _beside_stat,
    }
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=directory, prefix="kt-bench-tools-") as tmp:
        for name, (argv, pattern) in _workloads(tmp).items():
            runs: dict[str, list[Run]] = {w: [] for w in ways}
            errors: dict[str, list[str]] = {w: [] for w in ways}
            for i in range(rounds):   # alternating: the machine drifts
                for way, measure in ways.items():
                    try:
                        runs[way].append(measure(argv, pattern))
                    except Exception as e:   # record the cell's error and go on
                        errors[way].append(f"round {i + 1}: {e}")
                        print(f"  ! {name}/{way} round {i + 1}: {e}", file=out, flush=True)
                print(f"  {name}: round {i + 1}/{rounds} done ({time.monotonic() - started:.0f} s)",
                      file=out, flush=True)
            median = {w: statistics.median(r.seconds for r in rs) if rs else None for w, rs in runs.items()}
            base = median["untraced"]
            results[name] = {
                "rounds": rounds,
                "runs": {w: len(rs) for w, rs in runs.items()},
                "seconds": {w: [r.seconds for r in rs] for w, rs in runs.items()},   # per round: the spread
                "median_s": median,
                "share_of_untraced": {w: base / m if base and m else None for w, m in median.items()},
                "peak_rss_mb": {w: max(r.rss_mb for r in rs if r.rss_mb is not None)
                                for w, rs in runs.items() if any(r.rss_mb is not None for r in rs)},
                "lost_events": {w: sum(r.lost for r in rs if r.lost is not None)
                                for w, rs in runs.items() if any(r.lost is not None for r in rs)},
                "errors": {w: es for w, es in errors.items() if es},
            }
    _print_table(results, out)
    total = time.monotonic() - started
    print(f"total {total:.0f} s", file=out, flush=True)
    return {"workloads": results, "total_s": total,
            "ok": not any(r["errors"] or any(r["lost_events"].values()) for r in results.values())}


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if os.geteuid() != 0:
        print("bench_tools needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    result = run(int(args[0]) if args else 5)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
