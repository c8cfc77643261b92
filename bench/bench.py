"""``make bench``: start-up cost and ring-buffer throughput, measured against
the tools people use instead.  A benchmark, not a test: it prints figures and
ratios from one run (the machine is noisy).  It exits non-zero when a
measurement could not be taken or events were lost in the sustained run:
timings are only reported, a lost event is a defect.

    (a) launch -> probes attached: ``iotrace odirect -p PID -d 0`` against
        bpftrace attaching two tracepoints, both whole processes, best of N.
    (b) ring buffer -> DataFrame decode throughput (events/s).
    (c) sustained 200,000 events/s for 60 s: events lost must be 0.
    (d) bench_odirect.py: what ``iotrace odirect`` costs an O_DIRECT reader.
    (e) bench_reads.py: what ``iotrace odirect`` costs a reader of cached
        files and of sockets (no O_DIRECT), against bpftrace.
    (g) bench_tools.py: what each tracing command costs a syscall-heavy, a
        switch-heavy and a fork-heavy workload.
    (f) bench_memory.py: iotrace odirect's peak RSS over a 20 s and an 80 s
        fio run, without and with ``-o DIR``; lost events; fio's read rate
        against untraced; records/s written to the trace directory.
    (h) bench_backends.py: the record rate each backend and transport this
        kernel allows sustains without loss (``--vm`` for the 6.1 guest).

Development tooling, not installed: run as root from the source tree,
``.venv/bin/python bench/bench.py [--only STEP]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Optional

__all__ = ["main"]

LAUNCH_GOAL_S = 0.25
DECODE_GOAL_EPS = 1_000_000


def _time_to_marker(cmd: list[str], marker: str, stream: str) -> Optional[tuple[float, float]]:
    """(seconds until a line containing ``marker`` appears on ``stream``,
    seconds until the process exits)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pipe = proc.stderr if stream == "stderr" else proc.stdout
    assert pipe is not None
    ready: Optional[float] = None
    for line in pipe:
        if marker in line:
            ready = time.perf_counter() - start
            break
    proc.communicate()
    total = time.perf_counter() - start
    if ready is None or proc.returncode != 0:
        print(f"  ! {' '.join(cmd)}: exit {proc.returncode}, marker {marker!r} {'seen' if ready else 'not seen'}")
        return None
    return ready, total


def _best(cmd: list[str], marker: str, stream: str, runs: int) -> Optional[tuple[float, float]]:
    results = [r for r in (_time_to_marker(cmd, marker, stream) for _ in range(runs)) if r is not None]
    if not results:
        return None
    return min(r[0] for r in results), min(r[1] for r in results)


def bench_launch(runs: int = 5) -> dict[str, Any]:
    """Launch -> probes attached, as a user starts each tool: a new process
    each time; attached = iotrace's ready line.  bpftrace is timed as a
    whole run (attach two tracepoints, exit), the reference the goal was set
    against; its BEGIN output comes before its tracepoints are attached, so
    it marks nothing comparable."""
    iotrace = os.path.join(os.path.dirname(sys.executable), "iotrace")
    target = subprocess.Popen(["sleep", "600"])
    try:
        ours = _best([iotrace, "odirect", "-p", str(target.pid), "-d", "0"], "Ctrl-C to end", "stderr", runs)
    finally:
        target.kill()
        target.wait()
    out: dict[str, Any] = {"goal_s": LAUNCH_GOAL_S}
    out["iotrace_ready_s"], out["iotrace_total_s"] = ours if ours else (None, None)
    if shutil.which("bpftrace"):
        script = (
            "tracepoint:syscalls:sys_enter_read { @e = count(); } "
            "tracepoint:syscalls:sys_exit_read { @x = count(); } "
            'BEGIN { printf("ready\\n"); exit(); }'
        )
        theirs = _best(["bpftrace", "-e", script], "ready", "stdout", runs)
        out["bpftrace_ready_s"], out["bpftrace_total_s"] = theirs if theirs else (None, None)
    if out["iotrace_ready_s"] and out.get("bpftrace_total_s"):
        out["ratio_vs_bpftrace"] = out["iotrace_ready_s"] / out["bpftrace_total_s"]
        out["ratio_whole_runs"] = out["iotrace_total_s"] / out["bpftrace_total_s"]
    return out


def _selftest(burst: int, ring_bytes: int) -> Any:
    from kerntrace.tracers.engine import BpfTracer, Hook

    return BpfTracer(
        "selftest",
        hooks=[Hook("getppid", ("selftest_fentry", "selftest_kprobe", "selftest_getppid"))],
        rings={"selftest_events": "selftest_event"},
        options={"kt_filter_pids": True, "burst": burst},
        ring_bytes=ring_bytes,
    )


def bench_decode(events: int = 2_000_000) -> dict[str, Any]:
    """Fill the ring from this process, then time drain + decode into the
    columns a tool aggregates and a trace keeps (records_of)."""
    from kerntrace.tracers.engine.records import records_of

    burst = 512
    ring_bytes = 64 * 1024 * 1024
    tracer = _selftest(burst, ring_bytes)
    total = 0
    spent = 0.0
    with tracer:
        tracer.load()
        tracer.trace_pids([os.getpid()])
        tracer.attach()
        per_fill = (ring_bytes // tracer.readers["selftest_events"].stride) // burst - 1
        while total < events:
            for _ in range(per_fill):
                os.getppid()
            while True:
                start = time.perf_counter()
                batch = tracer.drain()["selftest_events"]
                if not len(batch):
                    break
                records = records_of(batch, 0)
                spent += time.perf_counter() - start
                total += len(records)
        lost = tracer.lost_events
    return {"events": total, "seconds": spent, "events_per_s": total / spent if spent else 0.0,
            "goal_events_per_s": DECODE_GOAL_EPS, "lost": lost}


_GENERATOR = r"""
import os, sys, time
rate, seconds = int(sys.argv[1]), float(sys.argv[2])
os.read(0, 1)                     # start when the tracer is attached
start = time.monotonic()
done = 0
getppid = os.getppid
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * rate) - done
    if due <= 0:
        time.sleep(0.0005)
        continue
    for _ in range(due):
        getppid()
    done += due
print(done)
"""


def bench_sustained(rate: int = 200_000, seconds: float = 60.0, burst: int = 50) -> dict[str, Any]:
    """A separate process makes rate/burst getppid() calls a second; each
    emits `burst` events.  Every event must arrive: lost == 0."""
    from kerntrace.tracers.engine import Session
    from kerntrace.tracers.engine.records import records_of

    tracer = _selftest(burst, 16 * 1024 * 1024)
    received = 0
    frames = 0

    def sink(_t: Any, _ring: str, batch: Any) -> None:
        nonlocal received, frames
        received += len(records_of(batch, 0))
        frames += 1

    gen = subprocess.Popen([sys.executable, "-c", _GENERATOR, str(rate // burst), str(seconds)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with Session([tracer]) as session:
        session.start()
        session.trace_pids([gen.pid])
        session.watch_exit(gen.pid)
        assert gen.stdin is not None
        gen.stdin.write("x")
        gen.stdin.flush()
        session.run(sink, duration=seconds + 30)
        out_text = gen.communicate()[0]
        triggers = int(out_text.strip() or 0)
        lost = session.lost_events
        elapsed = session.duration_s
    emitted = triggers * burst
    return {"target_events_per_s": rate, "seconds": seconds, "emitted": emitted, "received": received,
            "lost": lost, "achieved_events_per_s": emitted / seconds, "batches": frames,
            "elapsed_s": elapsed}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}"
    return f"{value:,}{unit}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--memory-seconds", type=float, nargs="+", default=[20.0, 80.0], metavar="SECONDS",
                        help="fio run lengths of the memory step (the first short, the last long)")
    parser.add_argument("--only", choices=["launch", "decode", "sustained", "odirect", "reads", "tools", "memory",
                                           "backends"],
                        action="append")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make bench needs root (it loads BPF programs)", file=sys.stderr)
        return 2
    wanted = set(args.only or ["launch", "decode", "sustained", "odirect", "reads", "tools", "memory", "backends"])
    failed = False
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    if "launch" in wanted:
        steps.append(("launch", bench_launch))
    if "decode" in wanted:
        steps.append(("decode", bench_decode))
    if "sustained" in wanted:
        steps.append(("sustained", lambda: bench_sustained(seconds=args.sustain_seconds)))
    if "odirect" in wanted:
        try:
            import bench_odirect  # beside this file
        except ImportError:
            bench_odirect = None  # type: ignore[assignment]
        if bench_odirect is not None:
            steps.append(("odirect", bench_odirect.run))
    if "reads" in wanted:
        import bench_reads  # beside this file

        steps.append(("reads", bench_reads.run))
    if "tools" in wanted:
        import bench_tools  # beside this file

        steps.append(("tools", bench_tools.run))
    if "memory" in wanted:
        import bench_memory  # beside this file

        steps.append(("memory", lambda: bench_memory.run(args.memory_seconds)))
    if "backends" in wanted:
        import bench_backends  # beside this file

        steps.append(("backends", bench_backends.run))
    for name, step in steps:
        print(f"== {name}", flush=True)
        try:
            result = step()
        except Exception as exc:  # a benchmark reports what it could not measure
            print(f"  ! {name} failed: {exc}")
            failed = True
            continue
        if name == "launch":
            print(f"  iotrace odirect: launch -> attached {_fmt(result['iotrace_ready_s'], ' s')}"
                  f" (goal <= {LAUNCH_GOAL_S} s); whole run with detach {_fmt(result['iotrace_total_s'], ' s')}")
            print(f"  bpftrace, two tracepoints, whole run:         {_fmt(result.get('bpftrace_total_s'), ' s')}")
            if result.get("ratio_vs_bpftrace"):
                from kerntrace.tracers.odirect import HOOKS

                print(f"  ratio iotrace attached / bpftrace whole run:  {result['ratio_vs_bpftrace']:.2f}"
                      f"  (whole runs: {result['ratio_whole_runs']:.2f}; iotrace odirect attaches up to "
                      f"{len(HOOKS)} programs, bpftrace 2)")
            failed |= result["iotrace_ready_s"] is None
        elif name == "decode":
            print(f"  {result['events']:,} events decoded to a DataFrame in {result['seconds']:.3f} s: "
                  f"{result['events_per_s']:,.0f} events/s (goal >= {DECODE_GOAL_EPS:,}); lost {result['lost']}")
        elif name == "sustained":
            print(f"  {result['achieved_events_per_s']:,.0f} events/s for {result['seconds']:.0f} s: "
                  f"emitted {result['emitted']:,}, received {result['received']:,}, lost {result['lost']:,}")
            failed |= result["received"] != result["emitted"]
        elif name == "tools":
            failed |= not result["ok"]   # a run that failed or lost events
        elif name == "reads":
            # bench_reads printed its lines; a goal missed is a defect
            failed |= not result["ok"]
        elif name == "backends":
            failed |= not result["ok"]   # no backend could be measured
        elif name == "memory":
            # bench_memory printed its table and goals; a goal missed is a defect
            failed |= not result["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
