"""``iotrace doctor`` / ``nstrace doctor``: what this kernel allows, and
which backend (libbpf CO-RE, BCC) can run here and why.

Every answer comes from trying: a two-instruction program of each kind is
loaded and attached to a real target, libbpf creates a ring buffer map, the
module bcc is imported.  Nothing is inferred from the kernel version.  Where
the ring buffer map type is missing the CO-RE objects send their records
through the perf buffer (the transport line says which a run takes).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Mapping, Optional

import click

from .engine import probe
from .engine.backend import Facts, bcc_module, check_btf_file, choose, headers_path
from .engine.environment import BTF_PATH, UsageProblem
from .engine.libbpf import LibbpfError, LibbpfMissing, libbpf_version
from .engine.run import snapshot_envelope
from .options import btf_option, setup_logging

__all__ = ["backends_report", "command", "diagnose_kernel"]

KINDS = ("tracepoint", "tp_btf", "raw_tp", "fentry", "kprobe")


def diagnose_kernel(btf_file: Optional[str] = None) -> dict[str, Any]:
    """Every item tried on this kernel, then both backends (btf_file:
    --btf FILE, already checked)."""
    report = _kernel_items()
    facts, bcc_what = backend_facts(btf_file, bool(report["btf"]))
    report.update(backends_report(report, facts, bcc_what, _bcc_kprobes(report)))
    return report


def _kernel_items() -> dict[str, Any]:
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
        report["transport"] = None
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
    try:  # what a run takes: KERNTRACE_TRANSPORT, else the probe
        report["transport"] = probe.transport()
    except UsageProblem as exc:
        report["transport"] = probe.RING_BUFFER if ring.ok else probe.PERF_BUFFER
        reasons["transport"] = str(exc)
    report["lockdown"] = probe.lockdown_mode()
    report["capabilities"] = probe.capabilities()
    report["reasons"] = reasons
    return report


# -- the backends -------------------------------------------------------------


def backend_facts(btf_file: Optional[str], has_btf: bool) -> tuple[Facts, str]:
    """The facts --backend auto chooses by, every one looked at (BCC too),
    and what bcc_module said (bcc's version, or why it does not import)."""
    release = platform.release()
    importable, what = bcc_module()
    facts = Facts(has_btf=has_btf, btf_file=btf_file, bcc_importable=importable,
                  headers_present=os.path.isdir(headers_path(release)), release=release,
                  bcc_problem="" if importable else what)
    return facts, what


def _bcc_kprobes(report: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether BCC can place kprobes: the kprobe PMU doctor attached to, or
    (kernels before 4.17) tracefs's kprobe_events, which BCC falls back to."""
    if report.get("kprobe"):
        return True, "kprobe PMU"
    root = report.get("tracefs_path")
    if root and os.path.exists(os.path.join(root, "kprobe_events")):
        return True, f"{os.path.join(root, 'kprobe_events')} (not tried)"
    return False, report.get("reasons", {}).get("kprobe") or "no kprobes"


def backends_report(report: Mapping[str, Any], facts: Facts, bcc_what: str,
                    kprobes: tuple[bool, str]) -> dict[str, Any]:
    """The `backends` and `auto_backend` keys of doctor's report, from the
    kernel items already tried, the backend facts, bcc's version (or why it
    does not import) and whether BCC can place kprobes: a pure function."""
    btf = facts.btf_file or (BTF_PATH if facts.has_btf else None)
    version = report.get("libbpf_version")
    problems = []
    if version is None:
        problems.append(report.get("libbpf_error") or "libbpf.so.1 does not load")
    if btf is None:
        problems.append(f"no kernel BTF ({BTF_PATH} is missing): pass --btf FILE (e.g. from BTFHub)")
    # no ring buffer map type: the objects' records go through the perf buffer
    transport = report.get("transport") or (probe.RING_BUFFER if report.get("ringbuf") else probe.PERF_BUFFER)
    how = transport
    if transport == probe.PERF_BUFFER:
        how += " (forced by KERNTRACE_TRANSPORT)" if report.get("ringbuf") else " (no BPF ring buffer map type)"
    libbpf = {
        "usable": not problems,
        "reason": "; ".join(problems) if problems else f"CO-RE against {btf}, {how}, libbpf {version}",
        "btf": btf,
        "btf_file": facts.btf_file,
        "ringbuf": bool(report.get("ringbuf")),
        "transport": transport if version is not None else None,
        "libbpf_version": version,
    }

    kprobes_ok, kprobes_why = kprobes
    bcc_usable = facts.bcc_importable and facts.headers_present
    headers = headers_path(facts.release)
    missing = ([] if facts.bcc_importable else [bcc_what])
    missing += [] if facts.headers_present else [f"no kernel headers in {headers}"]
    kprobe_note = f"kprobes: {'yes' if kprobes_ok else 'no'}, {kprobes_why}"
    if bcc_usable:
        reason = (f"bcc {bcc_what}, headers in {headers}, {kprobe_note}; its programs (nstrace ip6mr, "
                  "iotrace odirect) are not in this build yet")
    else:
        reason = "; ".join(missing + [kprobe_note])
    bcc = {
        "usable": bcc_usable,
        "reason": reason,
        "module": facts.bcc_importable,
        "bcc_version": bcc_what if facts.bcc_importable else None,
        "headers": facts.headers_present,
        "headers_path": headers,
        "kprobes": kprobes_ok,
    }
    try:  # what a run's --backend auto takes: the same function of the same facts
        auto: Optional[str] = choose("auto", facts).name
    except UsageProblem:
        auto = None
    return {"backends": {"libbpf": libbpf, "bcc": bcc}, "auto_backend": auto}


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def render(report: dict[str, Any]) -> str:
    reasons = report.get("reasons", {})
    lines = [f"{'kernel':<11} {report['kernel']}"]
    missing = "missing: the libbpf backend needs --btf FILE (e.g. from BTFHub)"
    lines.append(f"{'btf':<11} {_yes(report['btf']):<4} {BTF_PATH if report['btf'] else missing}")
    where = report.get("tracefs_path") or "not mounted, cannot mount"
    if report.get("tracefs_mounted_by_us"):
        where += " (mounted now)"
    lines.append(f"{'tracefs':<11} {_yes(report['tracefs']):<4} {where}")
    for kind in (*KINDS, "ringbuf"):
        lines.append(f"{kind:<11} {_yes(report[kind]):<4} {reasons.get(kind, '')}".rstrip())
    if report.get("transport"):
        lines.append(f"{'transport':<11} {report['transport']} (how the CO-RE objects send records here)")
    lines.append(f"{'lockdown':<11} {report['lockdown']}")
    caps = [name for name, held in report["capabilities"].items() if held]
    lines.append(f"{'caps':<11} {' '.join(caps) if caps else 'none (run as root)'}")
    for name in ("libbpf", "bcc"):
        entry = report["backends"][name]
        lines.append(f"{name:<11} {_yes(entry['usable']):<4} {entry['reason']}")
    auto = report["auto_backend"]
    lines.append(f"{'auto':<11} {auto + ' (what --backend auto runs)' if auto else 'none: neither backend can run here'}")
    return "\n".join(lines)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@btf_option
@click.option("-v", "--verbose", count=True, help="Show libbpf's messages.")
def command(as_json: bool, btf_file: Optional[str], verbose: int) -> int:
    """What this kernel allows for tracing, each item found by trying, and
    which backend can run here (libbpf CO-RE, BCC) and why."""
    setup_logging(verbose)
    started_ns = time.time_ns()
    if btf_file is not None:
        check_btf_file(btf_file)
        try:
            probe.set_kernel_btf(btf_file)  # the probes read FILE, as a run with --btf does
        except LibbpfError as exc:
            raise UsageProblem(f"--btf {btf_file}: {exc}") from None
    report = diagnose_kernel(btf_file)
    if as_json:
        sys.stdout.write(json.dumps(snapshot_envelope("doctor", started_ns, [], **report)) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0
