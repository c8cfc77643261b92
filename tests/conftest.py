"""Test layers: unit (no root), kernel (root, real BPF here), vm (QEMU).

A kernel or vm test that cannot run skips with its reason; with
KERNTRACE_STRICT=1 (set by .ci/run) such a skip is a failure, so CI never
passes on tests that did not run.  The one exception is declared: a test
marked backend_cannot("bcc", reason=...) is skipped on that backend
(make vmtest's bcc pass prints each, with its reason).
"""
from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("KERNTRACE_STRICT") == "1"

# tests/vm needs the kernels `make vmtest` boots (hooks this host lacks); it
# is collected only inside that guest, which sets KERNTRACE_VMTEST_GUEST=1.
if os.environ.get("KERNTRACE_VMTEST_GUEST") != "1":
    collect_ignore = ["vm"]


# The backend the kernel tests run on: KERNTRACE_BACKEND moves every Run and
# every command onto it (make vmtest's bcc pass; tracers/engine/backend_env.py).
BACKEND = "bcc" if os.environ.get("KERNTRACE_BACKEND") == "bcc" else "libbpf"
# A kernel test that a backend truly cannot run (not one it fails) says so,
# with why: @pytest.mark.backend_cannot("bcc", reason="...").  That skip
# alone survives KERNTRACE_STRICT=1, and make vmtest lists it with its reason.
BACKEND_CANNOT = "backend_cannot"
BACKEND_SKIP_PREFIX = "the {} backend cannot run this: "


def pytest_runtest_setup(item):
    for mark in item.iter_markers(BACKEND_CANNOT):
        if BACKEND in mark.args:
            pytest.skip(BACKEND_SKIP_PREFIX.format(BACKEND) + mark.kwargs["reason"])


def _declared_backend_skip(item, report) -> bool:
    """The skip is the one the test's backend_cannot mark makes, on that backend."""
    marked = any(BACKEND in mark.args for mark in item.iter_markers(BACKEND_CANNOT))
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return marked and BACKEND_SKIP_PREFIX.format(BACKEND) in reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and ("/kernel/" in str(item.fspath) or "/vm/" in str(item.fspath)) \
            and not _declared_backend_skip(item, report):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under KERNTRACE_STRICT=1: {reason}"


# -- attach plans: which hook each tracer took on this kernel ----------------
# The engine logs every choice with the HookChoice attached; the summary at
# the end of a run shows, per object and hook, the method this kernel gave
# (fentry/kprobe on distro kernels, tracepoints on the CI host).  With
# KERNTRACE_PLANS_FILE set the table is also written there as JSON (make
# vmtest reads it back out of the guest).

import json
import logging
import platform
from collections import Counter

_plans: Counter = Counter()


class _PlanRecorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        choice = getattr(record, "kt_choice", None)
        if choice is not None:
            programs = ",".join(record.kt_hook.programs)
            _plans[(record.kt_object, choice.hook, choice.kind, choice.target, programs)] += 1


def pytest_configure(config):
    config.addinivalue_line("markers", f"{BACKEND_CANNOT}(*backends, reason): the test cannot run on these "
                                       "backends (skipped there, also under KERNTRACE_STRICT=1)")
    engine_log = logging.getLogger("kerntrace.engine")
    engine_log.addHandler(_PlanRecorder(logging.INFO))
    if engine_log.getEffectiveLevel() > logging.INFO:
        engine_log.setLevel(logging.INFO)


_results: list = []


@pytest.fixture
def report_result():
    """Lets a test put one line in the run's closing summary, e.g. what a
    workload measured through which hook, so host and guest runs can be
    read side by side."""
    return _results.append


def pytest_terminal_summary(terminalreporter):
    if _results:
        terminalreporter.section(f"results on {platform.release()}")
        for line in _results:
            terminalreporter.write_line(line)
    if not _plans:
        return
    terminalreporter.section(f"attach plans on {platform.release()}")
    rows = sorted(_plans.items())
    width = max(len(f"{obj} {hook}") for (obj, hook, *_), _n in rows)
    for (obj, hook, kind, target, _programs), n in rows:
        terminalreporter.write_line(f"{obj + ' ' + hook:<{width}}  {kind:<10} {target:<36} x{n}")
    path = os.environ.get("KERNTRACE_PLANS_FILE")
    if path:
        with open(path, "w") as f:
            json.dump(
                {
                    "kernel": platform.release(),
                    "plans": [
                        {"object": o, "hook": h, "method": k, "target": t, "programs": p.split(","), "tracers": n}
                        for (o, h, k, t, p), n in rows
                    ],
                },
                f,
                indent=1,
            )
