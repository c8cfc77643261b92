"""Reproduction of the Docker case of the ip6mr_sk_done crash: containers
created one after another under a small memory limit (the hosts that
crashed were creating containers under memory pressure), traced by
``nstrace ip6mr -o DIR --json``; then, per container, the network namespaces
created and failed (errno), the OOM kills, the kernel-log precursors, the
risk finding for this kernel, and where the trace is.

Each ``docker run --rm --name kt-repro-I --memory 16m kt-busybox /bin/true``
(``--pressure``: the container's process allocates 64 MiB, four times its
limit, so the memory cgroup OOM-kills it) creates its namespaces in runc
(unshare(CLONE_NEWNET|...) from inside the container's cgroup).

Development tooling, not installed: run as root from the source tree,
``.venv/bin/python bench/docker_ip6mr.py [--count N] [--pressure]``, or
``make docker-repro``.  The engine: the dockerd answering on
/var/run/docker.sock, else one started with a private data root and
stopped at the end (tools/dockerd.py).
"""
from __future__ import annotations

import argparse
import calendar
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Optional, Sequence

sys.path.append(str(Path(__file__).resolve().parents[1] / "tools"))
from dockerd import DockerEngine, IMAGE  # noqa: E402  (tools/dockerd.py)

READY = "Ctrl-C to end"
READY_TIMEOUT_S = 60.0
# dd reads /dev/zero into one 64 MiB buffer: every page of it is touched,
# so the container's memory cgroup (16 MiB) OOM-kills it.
PRESSURE_CMD = ("/bin/sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1")


@dataclass
class Container:
    name: str
    start_ns: int
    end_ns: int
    exit: int
    error: str
    created: int = 0
    entered: int = 0
    failed: Counter = field(default_factory=Counter)   # errno name -> count
    ooms: int = 0
    cgroups: set = field(default_factory=set)
    id: str = ""   # from --cidfile: a "container" field may be a short id


def _nstrace() -> str:
    exe = Path(sys.executable).parent / "nstrace"
    return str(exe) if exe.exists() else "nstrace"


def _time_ns(rfc3339: str) -> int:
    """'2026-12-03T02:26:01.581555800Z' (nstrace's JSON time) in ns since the
    epoch (datetime keeps only microseconds)."""
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def _on_signal(signum: int, _frame: Optional[FrameType]) -> None:
    raise SystemExit(128 + signum)   # unwinds through the finally blocks: everything is stopped


def _start_nstrace(trace_dir: str, out: Path, err: Path) -> "subprocess.Popen[bytes]":
    """nstrace ip6mr -o DIR --json, once it prints its ready line (probes
    attached: nothing done after is missed)."""
    proc = subprocess.Popen([_nstrace(), "ip6mr", "-o", trace_dir, "--json"], stdin=subprocess.DEVNULL,
                            stdout=open(out, "wb"), stderr=open(err, "wb"))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while READY not in err.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            _end(proc)
            raise RuntimeError(f"nstrace ip6mr did not start: {err.read_text(errors='replace').strip()}")
        time.sleep(0.05)
    return proc


def _end(proc: "subprocess.Popen[bytes]") -> None:
    """SIGINT (as Ctrl-C: nstrace then writes its summary), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _attribute(events: list[dict[str, Any]], runs: list[Container]) -> tuple[str, dict[str, Counter]]:
    """Counts each event against its container: by the event's "container"
    field when nstrace has it, else by cgroup_id, a cgroup whose events all
    fall in one docker run's time window being that container's (OOM events
    carry no cgroup: by time window).  Returns how it grouped, and what was
    not a container's."""
    by_name = {c.name: c for c in runs}
    outside: dict[str, Counter] = defaultdict(Counter)

    def window(t: int) -> Optional[Container]:
        return next((c for c in runs if c.start_ns <= t <= c.end_ns), None)

    def count(c: Optional[Container], ev: dict[str, Any], who: str) -> None:
        if ev["type"] == "oom":
            if c is not None:
                c.ooms += 1
            else:
                outside[who]["OOM kills"] += 1
            return
        method, errno = ev.get("method"), ev.get("errno")
        key = "failed" if errno else "entered (setns)" if method == "setns" else "created"
        if c is None:
            outside[who][key + (f" {errno}" if errno else "")] += 1
        elif errno:
            c.failed[errno] += 1
        elif method == "setns":
            c.entered += 1
        else:
            c.created += 1
            c.cgroups.add(ev.get("cgroup_id"))

    wanted = [e for e in events if e["type"] in ("attempt", "oom")]
    has_field = any("container" in e for e in events)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ev in wanted:
        name = str(ev.get("container") or "").lstrip("/")
        if name:
            c = by_name.get(name) or next((r for r in runs if r.id and r.id.startswith(name)), None)
            count(c, ev, f"container {name} ({ev.get('comm')})")
        else:   # an OOM record without a cgroup_id goes by its own time
            groups[ev["cgroup_id"] if ev.get("cgroup_id") is not None else ("oom", id(ev))].append(ev)
    for key, evs in groups.items():
        windows = [window(_time_ns(e["time"])) for e in evs]
        owner = windows[0] if len({w.name if w else None for w in windows}) == 1 else None
        comms = ",".join(sorted({str(e.get("comm")) for e in evs}))
        for ev in evs:
            count(owner, ev, f"cgroup {key} ({comms})" if isinstance(key, int) else "outside any docker run")
    fallback = ("by cgroup_id: a cgroup whose events all fall within one docker run is that container's "
                "(an OOM kill without a cgroup_id: by its time)")
    if not has_field:
        return f"{fallback} (this nstrace's events have no \"container\" field)", outside
    unnamed = sum(len(v) for v in groups.values())
    return f"by each event's \"container\" field; {unnamed} events without one {fallback}", outside


def report(runs: list[Container], lines: list[dict[str, Any]], trace_dir: str, engine: DockerEngine,
           args: argparse.Namespace) -> None:
    events = [d for d in lines if d.get("type") != "summary"]
    summary = next((d for d in lines if d.get("type") == "summary"), None)
    how, outside = _attribute(events, runs)
    what = "64 MiB allocated in each (--pressure)" if args.pressure else "/bin/true"
    print(f"docker ip6mr reproduction: {len(runs)} containers, --memory {args.memory}, {what}")
    print(f"engine: {'dockerd started here, data root ' + str(engine.root) if engine.owns_daemon else 'the running dockerd'}")
    print(f"grouped {how}")
    print(f"{'container':<14} {'exit':>4} {'netns created':>13} {'entered':>7} {'failed (errno)':<16} "
          f"{'OOM kills':>9}  cgroup_id")
    for c in runs:
        failed = ",".join(f"{k}x{v}" for k, v in sorted(c.failed.items())) or "0"
        cg = ",".join(str(x) for x in sorted(c.cgroups, key=str)) or "-"
        print(f"{c.name:<14} {c.exit:>4} {c.created:>13} {c.entered:>7} {failed:<16} {c.ooms:>9}  {cg}"
              + (f"  ({c.error})" if c.error else ""))
    for who, counts in sorted(outside.items()):
        print(f"not a container's: {who}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    kmsg = [e for e in events if e["type"] == "kmsg"]
    print("kernel-log precursors: " + ("none" if not kmsg else str(len(kmsg))))
    for e in kmsg:
        t = _time_ns(e["time"])
        during = next((c.name for c in runs if c.start_ns <= t <= c.end_ns), "no docker run")
        print(f"  {e['time']} {during} [{e.get('kind')}] {e.get('text')}")
    if summary is None:
        print("no summary from nstrace (it was killed?)")
    else:
        ns = summary.get("namespaces", {})
        errnos = "".join(f" {k}x{v}" for k, v in sorted((ns.get("failed_by_errno") or {}).items()))
        print(f"nstrace totals: {ns.get('created')} created, {ns.get('entered')} entered, {ns.get('failed')} failed"
              f"{errnos}, {summary.get('oom_kills')} OOM kills, "
              f"{summary.get('lost_events')} lost events")
        for f in summary.get("findings", []):
            print(f"finding [{f.get('severity')}] {f.get('title')}\n  {f.get('summary')}\n  {f.get('recommendation')}")
    print(f"trace: {trace_dir}  (nstrace report {trace_dir})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20, help="containers to create (default 20)")
    p.add_argument("--pressure", action="store_true", help="each container allocates 4x its memory limit")
    p.add_argument("--memory", default="16m", help="each container's memory limit (default 16m)")
    p.add_argument("-o", "--output", help="trace directory (default: a new one under /var/tmp)")
    args = p.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    trace_dir = args.output or tempfile.mkdtemp(prefix="kt-docker-ip6mr-", dir="/var/tmp")
    cmd = PRESSURE_CMD if args.pressure else ("/bin/true",)
    engine = DockerEngine.start()
    runs: list[Container] = []
    interrupted = 0
    try:
        engine.ensure_image(IMAGE)
        with tempfile.TemporaryDirectory(prefix="kt-repro-") as tmp:
            out, err = Path(tmp) / "nstrace.jsonl", Path(tmp) / "nstrace.err"
            nstrace = _start_nstrace(trace_dir, out, err)
            try:
                try:
                    for i in range(args.count):
                        name = f"kt-repro-{i}"
                        cidfile = Path(tmp) / f"{name}.cid"
                        c = Container(name, time.time_ns(), time.time_ns() + 10**12, -1, "interrupted")
                        runs.append(c)
                        r = engine.run(name, *cmd, memory=args.memory, extra=("--rm", "--cidfile", str(cidfile)))
                        c.end_ns, c.exit = time.time_ns(), r.returncode
                        # 137: SIGKILL, the OOM kill --pressure asks for; else say why (last stderr line)
                        c.error = "" if r.returncode in (0, 137) else (r.stderr.strip().splitlines() or [""])[-1]
                        c.id = cidfile.read_text().strip() if cidfile.exists() else ""
                except (KeyboardInterrupt, SystemExit) as exc:   # Ctrl-C, SIGTERM: report what ran
                    interrupted = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
                time.sleep(0.5)   # the last exits' events reach nstrace's rings
            finally:
                _end(nstrace)
            lines = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
            if nstrace.returncode not in (0, 130, -signal.SIGINT):
                print(f"nstrace exit {nstrace.returncode}: {err.read_text(errors='replace').strip()[-400:]}",
                      file=sys.stderr)
        report(runs, lines, trace_dir, engine, args)
        if interrupted:
            print(f"interrupted during container {len(runs)} of {args.count}")
    finally:
        engine.stop()
    if interrupted:
        return interrupted
    return 0 if runs and all(c.exit in (0, 137) for c in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
