"""`iotrace doctor --json` against facts the test reads itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys

KEYS = ("btf", "tracefs", "tracepoint", "tp_btf", "raw_tp", "ringbuf", "fentry", "kprobe")


def doctor_json():
    code = "import sys; from kerntrace.tracers.cli import iotrace_main; sys.exit(iotrace_main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "doctor", "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_doctor_tells_the_truth_about_this_kernel():
    report = doctor_json()
    for key in KEYS:
        assert isinstance(report[key], bool), key
    assert report["btf"] is os.path.exists("/sys/kernel/btf/vmlinux")
    assert report["tracefs"] and os.path.isdir(os.path.join(report["tracefs_path"], "events"))
    # Tracepoints, tp_btf and ring buffers are what every tracer stands on.
    assert report["tracepoint"] and report["tp_btf"] and report["raw_tp"] and report["ringbuf"]
    # No kprobe PMU means no kprobes; where the PMU exists doctor attached one.
    if not os.path.exists("/sys/bus/event_source/devices/kprobe/type"):
        assert report["kprobe"] is False and "CONFIG_KPROBES" in report["reasons"]["kprobe"]
    if not report["fentry"]:
        assert report["reasons"]["fentry"]
    with open("/sys/kernel/security/lockdown") as f:
        active = next(w for w in f.read().split() if w.startswith("["))
    assert report["lockdown"] == active.strip("[]")
    import ctypes

    lib = ctypes.CDLL("libbpf.so.1")
    assert report["libbpf_version"] == f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"


def test_doctor_is_consistent_with_the_engines_choice():
    """fentry/kprobe reported usable <=> the selftest plan picks it."""
    from kerntrace.tracers.engine import BpfTracer, Hook

    report = doctor_json()
    tracer = BpfTracer("selftest", hooks=[Hook("getppid", ("selftest_fentry", "selftest_kprobe", "selftest_getppid"))])
    with tracer:
        (choice,) = tracer.choices
    if report["fentry"]:
        assert choice.kind == "fentry"
    elif report["kprobe"]:
        assert choice.kind == "kprobe"
    else:
        assert choice.kind == "tracepoint"


def test_doctor_names_both_backends_and_what_auto_runs():
    report = doctor_json()
    libbpf, bcc = report["backends"]["libbpf"], report["backends"]["bcc"]
    # this kernel has BTF and ring buffers: CO-RE runs, and auto takes it
    assert libbpf["usable"] and libbpf["btf"] == "/sys/kernel/btf/vmlinux" and libbpf["btf_file"] is None
    assert libbpf["ringbuf"] is report["ringbuf"] and libbpf["libbpf_version"] == report["libbpf_version"]
    assert report["auto_backend"] == "libbpf"
    headers = f"/lib/modules/{os.uname().release}/build"
    assert bcc["headers_path"] == headers and bcc["headers"] is os.path.isdir(headers)
    assert bcc["usable"] is (bcc["module"] and bcc["headers"])
    kprobe_events = os.path.join(report["tracefs_path"], "kprobe_events")
    assert bcc["kprobes"] is (report["kprobe"] or os.path.exists(kprobe_events))
    for entry in (libbpf, bcc):
        assert entry["reason"] and "\n" not in entry["reason"]
