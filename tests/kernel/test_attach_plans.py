"""The running kernel's best plan for the selftest hook counts the shared
workload exactly.  The same test runs on the CI host (tracepoint) and in the
make-vmtest guest (fentry): both must give tests/plan_workload.py's numbers."""
from __future__ import annotations

from plan_workload import EXPECTED, PLANS, describe, run_workload, summarize


def test_best_plan_counts_the_workload_exactly(report_result):
    choice, pid, events, lost = run_workload(PLANS["fentry"])  # best first: fentry, kprobe, tracepoint
    assert lost == 0
    summary = summarize(pid, events)
    report_result(describe(choice, summary) + " (best plan)")
    assert summary == EXPECTED
