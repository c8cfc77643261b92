"""On a distro kernel the attach plans take their preferred hooks (fentry,
then kprobe) where the CI host falls back to tracepoints, and every way of
hooking gives the same events for the same workload."""
from __future__ import annotations

import pytest

from kerntrace.tracers.engine import probe
from plan_workload import ALL_WAYS, EXPECTED, PLANS, describe, open_plan, run_workload, summarize


def test_guest_kernel_offers_fentry_and_kprobes():
    # The premise of the VM run: what the CI host refuses works here.
    for kind, target in (("fentry", "__do_sys_getppid"), ("kprobe", "__x64_sys_getppid")):
        verdict = probe.can_attach(kind, target)
        assert verdict, f"{kind} {target}: {verdict.reason}"


@pytest.mark.parametrize("method", list(PLANS))
def test_plan_takes_its_best_available_method(method):
    tracer = open_plan(PLANS[method])
    try:
        (choice,) = tracer.choices
        assert choice.kind == method
        assert choice.rejected == []
        loaded = {p.name for p in tracer.obj.programs() if p.autoload}
        assert loaded & set(ALL_WAYS) == {choice.program}
    finally:
        tracer.close()


def test_fentry_kprobe_and_tracepoint_see_the_same_workload(report_result):
    results = {}
    for method, hook in PLANS.items():
        choice, pid, events, lost = run_workload(hook)
        assert choice.kind == method
        assert lost == 0
        results[method] = summarize(pid, events)
        report_result(describe(choice, results[method]) + f" ({method} forced)")
    for method, got in results.items():
        assert got == EXPECTED, method
