"""One workload through the selftest object, shared by tests/kernel (the
running kernel's best plan) and tests/vm (each method forced in turn): the
expected numbers are the same whatever kernel and hook produce them."""
from __future__ import annotations

import sys

import numpy as np

from kerntrace.tracers.engine import BpfTracer, Hook, Session

# The selftest object hooks getppid three ways; each plan below offers a
# suffix of that preference list, so the engine is held to one method.
ALL_WAYS = ("selftest_fentry", "selftest_kprobe", "selftest_getppid")
PLANS = {
    "fentry": Hook("getppid", ALL_WAYS),
    "kprobe": Hook("getppid[no fentry]", ALL_WAYS[1:]),
    "tracepoint": Hook("getppid[tracepoint only]", ALL_WAYS[2:]),
}

# A parent that calls getppid 11 times and a child that calls it 4 times,
# each call emitting a burst of 3 events.
WORKLOAD = (
    "import os\n"
    "for _ in range(11): os.getppid()\n"
    "if os.fork() == 0:\n"
    "    for _ in range(4): os.getppid()\n"
    "    os._exit(0)\n"
    "os.wait()\n"
)
BURST = 3


def open_plan(hook: Hook) -> BpfTracer:
    tracer = BpfTracer(
        "selftest",
        hooks=[hook],
        rings={"selftest_events": "selftest_event"},
        options={"kt_filter_pids": True, "burst": BURST},
        follow_children=True,
    )
    # Programs a hook does not name are always loaded: switch off the ones
    # this plan leaves out, or they would fire too.
    for name in set(ALL_WAYS) - set(hook.programs):
        tracer.obj.program(name).autoload = False
    return tracer


def run_workload(hook: Hook):
    tracer = open_plan(hook)
    (choice,) = tracer.choices
    batches = []
    with Session([tracer]) as session:
        session.start()
        pid = session.spawn([sys.executable, "-c", WORKLOAD])
        session.run(lambda _t, _ring, batch: batches.append(batch), duration=120)
        assert session.stop_reason == f"process {pid} exited"
        assert session.child_status == 0
        lost = tracer.lost_events
    events = np.concatenate(batches) if batches else np.zeros(0, tracer.btf.dtype("selftest_event"))
    return choice, pid, events, lost


def summarize(pid: int, events) -> dict:
    """Per process (parent as 'parent', its one child as 'child'): events,
    distinct threads, and the sequence numbers within bursts."""
    pids = events["pid"].tolist()
    children = sorted(set(pids) - {pid})
    assert len(children) == 1, f"expected one child besides {pid}, saw {sorted(set(pids))}"
    out = {}
    for role, p in (("parent", pid), ("child", children[0])):
        mine = events[events["pid"] == p]
        out[role] = {
            "events": len(mine),
            "tids": sorted(set(mine["tid"].tolist())) == [p],
            "seq": sorted(mine["seq"].tolist()),
            "burst": set(mine["burst"].tolist()),
        }
    return out


EXPECTED = {
    "parent": {"events": 11 * BURST, "tids": True, "seq": sorted(list(range(BURST)) * 11), "burst": {BURST}},
    "child": {"events": 4 * BURST, "tids": True, "seq": sorted(list(range(BURST)) * 4), "burst": {BURST}},
}


def describe(choice, summary: dict) -> str:
    return (f"selftest workload via {choice.kind} {choice.target}: "
            + ", ".join(f"{role} {s['events']} events" for role, s in summary.items()))
