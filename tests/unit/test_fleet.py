"""deploy/fleet.py (kerntrace-fleet in the image): the recorder loop with a
stand-in tracer, its liveness probe, and trace retention on real directories."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path


from kerntrace.tracers.engine.tracedir import FORMAT

FLEET_PY = Path(__file__).resolve().parents[2] / "deploy" / "fleet.py"
_spec = importlib.util.spec_from_file_location("kerntrace_fleet", FLEET_PY)
fleet = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fleet   # dataclasses look their module up there
_spec.loader.exec_module(fleet)

HOUR = 3600.0

# A tracer as the loop sees one: takes -d S -o DIR, writes meta.json when
# "attached", and summary.json when its run ends (at -d, or on SIGTERM/SIGINT,
# which it records); exits with $FAKE_STATUS (0 by default).
FAKE_TRACER = textwrap.dedent(f"""
    import json, os, signal, sys, time
    args = sys.argv[1:]
    d, out = float(args[args.index("-d") + 1]), args[args.index("-o") + 1]
    os.makedirs(out, exist_ok=True)
    ended = []
    signal.signal(signal.SIGTERM, lambda s, f: ended.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda s, f: ended.append("SIGINT"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({{"format": "{FORMAT}", "argv": args}}, f)
    status = int(os.environ.get("FAKE_STATUS", "0"))
    deadline = time.monotonic() + d
    while not ended and time.monotonic() < deadline and not status:
        time.sleep(0.02)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({{"stop_reason": ended[0] if ended else "duration"}}, f)
    sys.exit(status)
""")


def make_trace(path: Path, last_write: float, size: int = 1000, started: float | None = None) -> Path:
    """A trace directory: meta.json (the format), one part of size bytes,
    written at last_write (meta.json at started)."""
    (path / "read").mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"format": FORMAT}))
    part = path / "read" / "part-000001.parquet"
    part.write_bytes(b"\0" * size)
    started = last_write if started is None else started
    os.utime(path / "meta.json", (started, started))
    os.utime(part, (last_write, last_write))
    return path


# -- retention ---------------------------------------------------------------------


def test_retention_by_age_keeps_each_recorders_newest_and_foreign_dirs(tmp_path):
    now = 1_000_000_000.0
    node = tmp_path / "node=n1"
    old = make_trace(node / "ip6mr" / "20260101T000000Z", now - 80 * HOUR)
    recent = make_trace(node / "ip6mr" / "20260103T000000Z", now - 10 * HOUR)
    # the newest run of diagnose is older than the limit: a recorder that stopped,
    # or a run in progress that has written nothing for long. It stays.
    last = make_trace(node / "diagnose" / "20260101T000000Z", now - 100 * HOUR)
    older = make_trace(node / "diagnose" / "20251231T000000Z", now - 124 * HOUR)
    foreign = node / "notes"
    foreign.mkdir()
    (foreign / "x.txt").write_text("not a trace")
    os.utime(foreign / "x.txt", (now - 500 * HOUR, now - 500 * HOUR))

    removed = fleet.retain_once(tmp_path, max_age_s=72 * HOUR, max_bytes=10**9, now=now)

    assert sorted(removed) == sorted([old, older])
    assert recent.exists() and last.exists() and foreign.exists()


def test_retention_by_size_removes_oldest_first_until_under(tmp_path):
    now = 1_000_000_000.0
    runs = [make_trace(tmp_path / "ip6mr" / f"run{i}", now - (10 - i) * HOUR, size=1_000_000) for i in range(6)]
    # 6 MB of parts (and a few bytes of meta.json each); 3.5 MB allowed: the three
    # oldest go, the newest (the run in progress) never.
    removed = fleet.retain_once(tmp_path, max_age_s=72 * HOUR, max_bytes=3_500_000, now=now)
    assert removed == runs[:3]
    assert all(r.exists() for r in runs[3:])
    # Nothing left to remove but the newest: over the limit, it still stays.
    removed = fleet.retain_once(tmp_path, max_age_s=72 * HOUR, max_bytes=10, now=now)
    assert removed == runs[3:5] and runs[5].exists()


def test_plan_removal_ages_and_sizes_together():
    now = 100 * HOUR
    T = fleet.Trace
    p = Path("/r/ip6mr")
    traces = [T(p / "a", 0, now - 90 * HOUR, 500), T(p / "b", 1, now - 50 * HOUR, 400),
              T(p / "c", 2, now - 20 * HOUR, 300), T(p / "d", 3, now - 1 * HOUR, 200)]
    plan = fleet.plan_removal(traces, 1400, max_age_s=72 * HOUR, max_bytes=600, now=now)
    # a by age (1400 -> 900), then b by size (900 -> 500 <= 600); d is the newest
    assert [(t.path.name, why.split()[0]) for t, why in plan] == [("a", "last"), ("b", "traces")]


# -- record and alive --------------------------------------------------------------


def _fleet(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(FLEET_PY), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_record_rotates_runs_and_passes_sigterm_on(tmp_path):
    tracer = tmp_path / "fake_tracer.py"
    tracer.write_text(FAKE_TRACER)
    rec = tmp_path / "traces" / "node=n1" / "ip6mr"
    proc = _fleet("record", str(rec), "--every", "0.3", "--", sys.executable, str(tracer))
    try:
        # three runs: each a new directory, each run to its -d
        _wait_for(lambda: rec.is_dir() and len([p for p in rec.iterdir() if p.is_dir()]) >= 3)
        ok, why = fleet.alive(rec, grace_s=60)
        assert ok, why
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    runs = sorted(p for p in rec.iterdir() if p.is_dir())
    assert len(runs) == len(set(runs)) >= 3
    reasons = [json.loads((r / "summary.json").read_text())["stop_reason"] for r in runs]
    # every run but the last ended at its duration, the last on the SIGTERM passed on
    assert reasons[-1] == "SIGTERM" and set(reasons[:-1]) == {"duration"}, reasons
    for r in runs:
        argv = json.loads((r / "meta.json").read_text())["argv"]
        assert argv == ["-d", "0.3", "-o", str(r)]
    # the loop is gone: the probe says so
    ok, why = fleet.alive(rec, grace_s=60)
    assert not ok and "not running" in why


def test_record_ends_with_a_failing_tracers_status(tmp_path):
    tracer = tmp_path / "fake_tracer.py"
    tracer.write_text(FAKE_TRACER)
    rec = tmp_path / "diagnose"
    proc = _fleet("record", str(rec), "--every", "60", "--", sys.executable, str(tracer), env={"FAKE_STATUS": "2"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "exited with status 2" in err
    assert len([p for p in rec.iterdir() if p.is_dir()]) == 1


def test_alive_wants_an_attached_tracer_within_the_grace(tmp_path):
    rec = tmp_path / "ip6mr"
    rec.mkdir()
    assert fleet.alive(rec, 60)[0] is False                     # no state yet
    run = rec / "20260101T000000Z"
    # it says so once running: Popen returns when exec has closed the
    # close-on-exec fds, before the new argv is in /proc/PID/cmdline
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)",
                                "-o", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline() == "up\n"
        fleet._write_state(rec, sleeper.pid, run)
        assert fleet.alive(rec, 60) == (True, f"recording {run} (pid {sleeper.pid})")
        # past the grace without meta.json: it never attached
        ok, why = fleet.alive(rec, 60, now=time.time() + 61)
        assert not ok and "has not attached" in why
        run.mkdir()
        (run / "meta.json").write_text("{}")
        assert fleet.alive(rec, 60, now=time.time() + 61)[0] is True
        # a live pid that is some other process (pid reuse) is no recorder
        fleet._write_state(rec, os.getpid(), run)
        assert fleet.alive(rec, 60)[0] is False
    finally:
        sleeper.kill()
        sleeper.wait()
    fleet._write_state(rec, None, run)                            # between two runs
    assert fleet.alive(rec, 60)[0] is True
    assert fleet.alive(rec, 60, now=time.time() + 61)[0] is False


def test_new_run_dir_never_reuses_a_name(tmp_path):
    now = 1_767_225_600.0   # 2026-01-01T00:00:00Z
    first = fleet.new_run_dir(tmp_path, now)
    assert first.name == "20260101T000000Z"
    first.mkdir()
    second = fleet.new_run_dir(tmp_path, now)
    assert second.name == "20260101T000000Z-2"
