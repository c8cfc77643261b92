"""The engine against the running kernel: load, attach plans, exact event
counts from a workload the test drives itself, lost-event accounting, the
verifier log on failure, and nothing left loaded after close."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import loaded

from kerntrace.tracers.engine import probe
from kerntrace.tracers.engine import BpfTracer, Hook, Session
from kerntrace.tracers.engine.libbpf import BpfLoadError

GETPPID = Hook("getppid", ("selftest_fentry", "selftest_kprobe", "selftest_getppid"))


def open_selftest(**options):
    ring_bytes = options.pop("ring_bytes", None)
    return BpfTracer(
        "selftest",
        hooks=[GETPPID],
        rings={"selftest_events": "selftest_event"},
        options={"kt_filter_pids": True, **options},
        ring_bytes=ring_bytes,
    )


def expected_method() -> str:
    for kind, target in (("fentry", "__do_sys_getppid"), ("kprobe", "__x64_sys_getppid")):
        if probe.can_attach(kind, target):
            return kind
    return "tracepoint"


def collect(tracer):
    batches = tracer.drain()["selftest_events"]
    return batches


def test_exact_count_from_traced_pid():
    with open_selftest() as tracer:
        tracer.load()
        tracer.trace_pids([os.getpid()])
        tracer.attach()
        for _ in range(37):
            os.getppid()
        events = collect(tracer)
        assert len(events) == 37
        assert set(events["pid"].tolist()) == {os.getpid()}
        assert set(events["seq"].tolist()) == {0}
        assert tracer.read_global("triggers") == 37
        assert tracer.lost_events == 0


def test_attach_plan_choice_is_recorded():
    with open_selftest() as tracer:
        (choice,) = tracer.choices
        assert choice.hook == "getppid"
        assert choice.kind == expected_method()
        if choice.kind == "tracepoint":
            # This host: fentry refused, no kprobes; both reasons recorded.
            rejected = dict(choice.rejected)
            assert "selftest_fentry" in rejected and "selftest_kprobe" in rejected


def test_untraced_process_never_appears():
    with open_selftest(burst=3) as tracer:
        tracer.load()
        tracer.trace_pids([os.getpid()])
        tracer.attach()
        decoy = subprocess.run(
            [sys.executable, "-c", "import os\nfor _ in range(50): os.getppid()"], check=True
        )
        assert decoy.returncode == 0
        for _ in range(5):
            os.getppid()
        events = collect(tracer)
        assert len(events) == 15
        assert set(events["pid"].tolist()) == {os.getpid()}
        assert sorted(events["seq"].tolist()) == [0] * 5 + [1] * 5 + [2] * 5


def test_lost_events_are_counted_exactly():
    # 4 KiB ring, 64-byte records: at most 64 fit; 512 per trigger overflow it.
    with open_selftest(burst=512, ring_bytes=4096) as tracer:
        tracer.load()
        tracer.trace_pids([os.getpid()])
        tracer.attach()
        os.getppid()
        os.getppid()
        received = len(collect(tracer))
        lost = tracer.lost_events
        assert received > 0 and lost > 0
        assert received + lost <= 1024
        os.getppid()  # after draining there is room again
        received += len(collect(tracer))
        assert received + tracer.lost_events == 3 * 512


def test_session_follows_children_of_command():
    script = "import os\nfor _ in range(7): os.getppid()\nif os.fork() == 0:\n    [os.getppid() for _ in range(5)]\n    os._exit(0)\nos.wait()"
    tracer = BpfTracer(
        "selftest",
        hooks=[GETPPID],
        rings={"selftest_events": "selftest_event"},
        options={"kt_filter_pids": True},
        follow_children=True,
    )
    got = []
    with Session([tracer]) as session:
        session.start()
        pid = session.spawn([sys.executable, "-c", script])
        session.run(lambda t, ring, batch: got.append(batch), duration=30)
        assert session.stop_reason == f"process {pid} exited"
    events = np.concatenate(got)
    by_pid = {p: int((events["pid"] == p).sum()) for p in set(events["pid"].tolist())}
    assert by_pid[pid] == 7
    children = [p for p in by_pid if p != pid]
    assert len(children) == 1 and by_pid[children[0]] == 5


def test_verifier_log_reaches_the_exception():
    with open_selftest() as tracer:
        tracer.obj.program("selftest_rejected").autoload = True
        with pytest.raises(BpfLoadError) as info:
            tracer.load()
        assert info.value.errno != 0
        assert "selftest_rejected" in info.value.verifier_log or "invalid access" in info.value.verifier_log
        assert "invalid access to map value" in info.value.verifier_log


def _prog_id(fd):
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("prog_id:"):
                return int(line.split()[1])
    raise AssertionError(f"fd {fd} is not a BPF program")


def test_nothing_stays_loaded_after_close():
    tracer = open_selftest()
    tracer.load()
    tracer.attach()
    ours = {_prog_id(p.fd) for p in tracer.obj.programs() if p.autoload}
    assert len(ours) == 1 and ours <= set(loaded.programs())
    tracer.close()
    assert loaded.links_of(ours) == []
    assert loaded.wait_released(ours) == set()
