"""Test layers: unit (no root), kernel (root, real BPF here), vm (QEMU).

A kernel or vm test that cannot run skips with its reason; with
KERNTRACE_STRICT=1 (set by .ci/run) such a skip is a failure, so CI never
passes on tests that did not run.
"""
from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("KERNTRACE_STRICT") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and ("/kernel/" in str(item.fspath) or "/vm/" in str(item.fspath)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under KERNTRACE_STRICT=1: {reason}"
