"""``iotrace doctor`` / ``nstrace doctor``: what this kernel allows.

Every answer comes from trying: a two-instruction program of each kind is
loaded and attached to a real target, a ring buffer map is created.  Nothing
is inferred from the kernel version.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

import click

from .engine import probe
from .engine.environment import BTF_PATH
from .engine.libbpf import LibbpfMissing, libbpf_version
from .engine.run import snapshot_envelope
from .options import setup_logging

__all__ = ["command", "diagnose_kernel"]

KINDS = ("tracepoint", "tp_btf", "raw_tp", "fentry", "kprobe")


def diagnose_kernel() -> dict[str, Any]:
    report: dict[str, Any] = {"kernel": platform.release()}
    report["btf"] = os.path.exists(BTF_PATH)
    tracefs_before = probe.tracefs_root(mount_if_missing=False)
    tracefs = tracefs_before or probe.tracefs_root(mount_if_missing=True)
    report["tracefs"] = tracefs is not None
    report["tracefs_path"] = tracefs
    report["tracefs_mounted_by_us"] = tracefs is not None and tracefs_before is None
    try:
        report["libbpf_version"] = libbpf_version()
    except LibbpfMissing as exc:
        report["libbpf_version"] = None
        report["libbpf_error"] = str(exc)
        for key in (*KINDS, "ringbuf"):
            report[key] = False
        report["lockdown"] = probe.lockdown_mode()
        report["capabilities"] = probe.capabilities()
        return report
    reasons: dict[str, str] = {}
    for kind in KINDS:
        if kind in ("fentry", "tp_btf") and not report["btf"]:
            report[kind] = False
            reasons[kind] = "needs kernel BTF"
            continue
        verdict = probe.probe_kind(kind)
        report[kind] = verdict.ok
        if not verdict.ok:
            reasons[kind] = verdict.reason
    ring = probe.probe_ringbuf()
    report["ringbuf"] = ring.ok
    if not ring.ok:
        reasons["ringbuf"] = ring.reason
    report["lockdown"] = probe.lockdown_mode()
    report["capabilities"] = probe.capabilities()
    report["reasons"] = reasons
    return report


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def render(report: dict[str, Any]) -> str:
    reasons = report.get("reasons", {})
    lines = [f"{'kernel':<11} {report['kernel']}"]
    lines.append(f"{'btf':<11} {_yes(report['btf']):<4} {BTF_PATH if report['btf'] else 'missing: CO-RE tracers cannot load'}")
    where = report.get("tracefs_path") or "not mounted, cannot mount"
    if report.get("tracefs_mounted_by_us"):
        where += " (mounted now)"
    lines.append(f"{'tracefs':<11} {_yes(report['tracefs']):<4} {where}")
    for kind in (*KINDS, "ringbuf"):
        lines.append(f"{kind:<11} {_yes(report[kind]):<4} {reasons.get(kind, '')}".rstrip())
    lines.append(f"{'lockdown':<11} {report['lockdown']}")
    caps = [name for name, held in report["capabilities"].items() if held]
    lines.append(f"{'caps':<11} {' '.join(caps) if caps else 'none (run as root)'}")
    lines.append(f"{'libbpf':<11} {report['libbpf_version'] or report.get('libbpf_error')}")
    return "\n".join(lines)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("-v", "--verbose", count=True, help="Show libbpf's messages.")
def command(as_json: bool, verbose: int) -> int:
    """What this kernel allows for tracing, each item found by trying."""
    setup_logging(verbose)
    started_ns = time.time_ns()
    report = diagnose_kernel()
    if as_json:
        sys.stdout.write(json.dumps(snapshot_envelope("doctor", started_ns, [], **report)) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0
