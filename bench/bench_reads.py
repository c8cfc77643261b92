"""Benchmark of ``iotrace odirect`` on readers that do not use O_DIRECT:
what tracing costs a process making reads the kernel serves from memory.

Two workloads, each run untraced, under ``iotrace odirect -c`` and under
bpftrace counting the same reads with a histogram of their sizes in the
kernel (issue 19's reference), and untraced with empty programs on the
two syscall hooks iotrace uses (the floor of any tracer on them),
alternating for several rounds:

- ``cached``: ``dd if=FILE of=/dev/null bs=4k`` over a 512 MiB file already
  in the page cache (about a million reads a second untraced);
- ``socket``: a process reading 64-byte messages from a Unix datagram
  socket pair, one read per message, its writer a second process.

Each workload times itself (dd's own "copied, X s"; the socket reader's
clock around its read loop), so start-up and attach do not count.  Medians
per way, each as a share of untraced, iotrace against bpftrace, and
iotrace's peak RSS (ru_maxrss of the iotrace process) are printed and
returned.

Run as root from the source tree (not installed):
``.venv/bin/python bench/bench_reads.py [ROUNDS]``; ``make bench`` runs it.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Iterator, Optional

__all__ = ["run"]

FILE_MIB = 512
MESSAGES = 400_000
GOAL_VS_BPFTRACE = 0.9   # issue 19: iotrace's speed >= 0.9 x bpftrace's
RSS_LIMIT_MB = 150.0

# count + size histogram per read, kept in the kernel: issue 19's reference
BPFTRACE_SCRIPT = r"""
tracepoint:syscalls:sys_exit_read /pid == cpid/ { @reads = count(); @size = hist(args->ret); }
"""

SOCKET_READER = r"""
import os, socket, sys, time
n = int(sys.argv[1])
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
msg = b"x" * 64
pid = os.fork()
if pid == 0:
    a.close()
    fd = b.fileno()
    for _ in range(n):
        os.write(fd, msg)
    os._exit(0)
b.close()
fd = a.fileno()
read = os.read
start = time.perf_counter()
for _ in range(n):
    read(fd, 64)
print(f"read {n} messages in {time.perf_counter() - start:.6f} s", file=sys.stderr)
os.waitpid(pid, 0)
"""

_DD_SECONDS = re.compile(r"copied, ([0-9.]+) s")
_SOCKET_SECONDS = re.compile(r"read \d+ messages in ([0-9.]+) s")


def _iotrace_exe() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "iotrace")
    return exe if os.path.exists(exe) else shutil.which("iotrace") or "iotrace"


def _timed(argv: list[str], pattern: "re.Pattern[str]") -> tuple[float, Optional[float]]:
    """Runs argv -> (the workload's own seconds, the peak RSS in MB of the
    process started: the tracer when argv is one)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    found = pattern.findall(err)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{shlex.join(argv[:3])}...: exit {proc.returncode}: {err.strip()[-400:]}")
    return float(found[-1]), usage.ru_maxrss / 1024


@contextlib.contextmanager
def _empty_syscall_programs() -> Iterator[None]:
    """Empty programs on tp_btf sys_enter and sys_exit (selftest's): what
    any tracer of reads on these two hooks pays before doing anything."""
    from kerntrace.tracers.engine import object_path
    from kerntrace.tracers.engine.libbpf import Object

    names = ("selftest_empty_sys_enter", "selftest_empty_sys_exit")
    obj = Object(object_path("selftest"))
    for prog in obj.programs():
        prog.autoload = prog.name in names
    obj.load()
    links = [obj.program(name).attach() for name in names]
    try:
        yield
    finally:
        for link in links:
            link.destroy()
        obj.close()


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
    reader = os.path.join(directory, "socket_reader.py")  # bpftrace -c splits on spaces: no -c CODE
    with open(reader, "w") as f:
        f.write(SOCKET_READER)
    sock = [sys.executable, reader, str(MESSAGES)]
    return {"cached": (dd, _DD_SECONDS), "socket": (sock, _SOCKET_SECONDS)}


def run(rounds: int = 5, directory: str = "/var/tmp", out: Any = None) -> dict[str, Any]:
    out = out or sys.stdout
    bpftrace = shutil.which("bpftrace")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=directory, prefix="kt-bench-reads-") as tmp:
        for name, (argv, pattern) in _workloads(tmp).items():
            ways: dict[str, list[str]] = {
                "untraced": argv,
                "floor": argv,   # run with empty programs on iotrace's syscall hooks

                "iotrace": [_iotrace_exe(), "odirect", "-c", shlex.join(argv)],
            }
            if bpftrace:
                ways["bpftrace"] = [bpftrace, "-q", "-e", BPFTRACE_SCRIPT, "-c", shlex.join(argv)]
            seconds: dict[str, list[float]] = {w: [] for w in ways}
            rss: list[float] = []
            for _ in range(rounds):   # alternating: the machine drifts
                for way, cmd in ways.items():
                    if way == "floor":
                        with _empty_syscall_programs():
                            took, peak = _timed(cmd, pattern)
                    else:
                        took, peak = _timed(cmd, pattern)
                    seconds[way].append(took)
                    if way == "iotrace" and peak is not None:
                        rss.append(peak)
            median = {w: statistics.median(s) for w, s in seconds.items()}
            share = {w: median["untraced"] / m for w, m in median.items()}
            result = {"median_s": median, "share_of_untraced": share, "iotrace_peak_rss_mb": max(rss)}
            if "bpftrace" in median:
                result["iotrace_vs_bpftrace"] = median["bpftrace"] / median["iotrace"]
            results[name] = result
            print(f"  {name}: " + ", ".join(f"{w} {median[w]:.3f} s ({share[w]:.0%})" for w in ways)
                  + f"; iotrace/bpftrace speed {result.get('iotrace_vs_bpftrace', float('nan')):.2f}"
                  f" (goal >= {GOAL_VS_BPFTRACE}); iotrace peak RSS {max(rss):.0f} MB (limit {RSS_LIMIT_MB:.0f})",
                  file=out, flush=True)
    results["ok"] = all(r.get("iotrace_vs_bpftrace", 1.0) >= GOAL_VS_BPFTRACE
                        and r["iotrace_peak_rss_mb"] < RSS_LIMIT_MB for r in results.values() if isinstance(r, dict))
    return results


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if os.geteuid() != 0:
        print("bench_reads needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    result = run(int(args[0]) if args else 5)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
