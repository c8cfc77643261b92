"""doctor's report of the two backends, without root or BPF: the kernel's
items are given, the backend facts too; the shape of --json and the text."""
from __future__ import annotations

import json

import pytest

from kerntrace.tracers import doctor
from kerntrace.tracers.cli import iotrace_main
from kerntrace.tracers.engine.backend import Facts

LIBBPF_KEYS = {"usable", "reason", "btf", "btf_file", "ringbuf", "transport", "libbpf_version"}
BCC_KEYS = {"usable", "reason", "module", "bcc_version", "headers", "headers_path", "kprobes"}


def kernel_items(btf=True, ringbuf=True, kprobe=False):
    reasons = {} if kprobe else {"kprobe": "kernel has no kprobe PMU (CONFIG_KPROBES is off)"}
    if not ringbuf:
        reasons["ringbuf"] = "ring buffer map refused: Invalid argument"
    return {"kernel": "4.9.0-old", "btf": btf, "tracefs": True, "tracefs_path": "/nonexistent/tracing",
            "tracefs_mounted_by_us": False, "libbpf_version": "1.1", "tracepoint": True, "tp_btf": btf,
            "raw_tp": True, "fentry": False, "kprobe": kprobe, "ringbuf": ringbuf, "lockdown": "none",
            "capabilities": {"CAP_SYS_ADMIN": True, "CAP_PERFMON": True, "CAP_BPF": True},
            "reasons": reasons}


def facts(has_btf=True, btf_file=None, bcc=False, headers=False):
    return Facts(has_btf=has_btf, btf_file=btf_file, bcc_importable=bcc, headers_present=headers,
                 release="4.9.0-old", bcc_problem="" if bcc else "python3-bpfcc is not installed")


def report_for(items, f, kprobes=(False, "kernel has no kprobe PMU (CONFIG_KPROBES is off)")):
    what = "0.26.0" if f.bcc_importable else f.bcc_problem
    return doctor.backends_report(items, f, what, kprobes)


def test_this_kind_of_host_libbpf_yes_bcc_no():
    out = report_for(kernel_items(), facts())
    libbpf, bcc = out["backends"]["libbpf"], out["backends"]["bcc"]
    assert set(libbpf) == LIBBPF_KEYS and set(bcc) == BCC_KEYS
    assert libbpf["usable"] and libbpf["btf"] == "/sys/kernel/btf/vmlinux" and libbpf["btf_file"] is None
    assert libbpf["reason"] == "CO-RE against /sys/kernel/btf/vmlinux, ring buffer, libbpf 1.1"
    assert libbpf["ringbuf"] is True and libbpf["transport"] == "ring buffer"
    assert not bcc["usable"] and bcc["module"] is False and bcc["bcc_version"] is None
    assert bcc["headers"] is False and bcc["headers_path"] == "/lib/modules/4.9.0-old/build"
    assert bcc["kprobes"] is False
    assert bcc["reason"] == ("python3-bpfcc is not installed; no kernel headers in /lib/modules/4.9.0-old/build; "
                             "kprobes: no, kernel has no kprobe PMU (CONFIG_KPROBES is off)")
    assert out["auto_backend"] == "libbpf"


def test_old_kernel_with_bcc_and_headers():
    out = report_for(kernel_items(btf=False, ringbuf=False), facts(has_btf=False, bcc=True, headers=True),
                     kprobes=(True, "/sys/kernel/tracing/kprobe_events (not tried)"))
    libbpf, bcc = out["backends"]["libbpf"], out["backends"]["bcc"]
    assert not libbpf["usable"] and libbpf["btf"] is None
    assert "--btf FILE" in libbpf["reason"] and libbpf["ringbuf"] is False
    assert libbpf["transport"] == "perf buffer"
    assert bcc["usable"] and bcc["bcc_version"] == "0.26.0" and bcc["kprobes"] is True
    assert "not in this build" in bcc["reason"]
    assert out["auto_backend"] == "bcc"


def test_no_ring_buffer_map_type_is_the_perf_buffer_not_a_refusal():
    out = report_for(kernel_items(ringbuf=False), facts())
    libbpf = out["backends"]["libbpf"]
    assert libbpf["usable"] and libbpf["ringbuf"] is False and libbpf["transport"] == "perf buffer"
    assert libbpf["reason"] == ("CO-RE against /sys/kernel/btf/vmlinux, perf buffer (no BPF ring buffer map type), "
                                "libbpf 1.1")
    assert out["auto_backend"] == "libbpf"
    forced = report_for({**kernel_items(), "transport": "perf buffer"}, facts())["backends"]["libbpf"]
    assert forced["ringbuf"] is True and "perf buffer (forced by KERNTRACE_TRANSPORT)" in forced["reason"]


def test_btf_file_makes_libbpf_usable_without_kernel_btf():
    out = report_for(kernel_items(btf=False), facts(has_btf=False, btf_file="/var/tmp/k.btf"))
    libbpf = out["backends"]["libbpf"]
    assert libbpf["usable"] and libbpf["btf"] == libbpf["btf_file"] == "/var/tmp/k.btf"
    assert out["auto_backend"] == "libbpf"


def test_neither_backend():
    out = report_for(kernel_items(btf=False), facts(has_btf=False))
    assert out["auto_backend"] is None
    assert not out["backends"]["libbpf"]["usable"] and not out["backends"]["bcc"]["usable"]


def test_bcc_kprobes_from_the_pmu_or_kprobe_events(tmp_path):
    assert doctor._bcc_kprobes({"kprobe": True}) == (True, "kprobe PMU")
    (tmp_path / "kprobe_events").write_text("")
    ok, why = doctor._bcc_kprobes({"kprobe": False, "tracefs_path": str(tmp_path)})
    assert ok and "kprobe_events (not tried)" in why
    ok, why = doctor._bcc_kprobes({"kprobe": False, "tracefs_path": None, "reasons": {"kprobe": "no PMU"}})
    assert (ok, why) == (False, "no PMU")


@pytest.fixture
def no_bpf(monkeypatch):
    """doctor without trying anything on this kernel."""
    monkeypatch.setattr(doctor, "_kernel_items", lambda: kernel_items())
    monkeypatch.setattr(doctor, "backend_facts", lambda btf_file, has_btf: (facts(btf_file=btf_file), "nope"))


def test_doctor_json_names_both_backends(no_bpf, capsys):
    assert iotrace_main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["type"] == "summary" and report["tool"] == "doctor"
    assert set(report["backends"]) == {"libbpf", "bcc"}
    assert set(report["backends"]["libbpf"]) == LIBBPF_KEYS and set(report["backends"]["bcc"]) == BCC_KEYS
    assert report["auto_backend"] == "libbpf"
    assert report["backend"] is None and report["btf_file"] is None   # the envelope's: doctor ran nothing


def test_doctor_text_has_a_row_per_backend(no_bpf, capsys):
    assert iotrace_main(["doctor"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["libbpf"].split()[1] == "yes" and rows["bcc"].split()[1] == "no"
    assert rows["auto"].split()[1] == "libbpf"


def test_doctor_bad_btf_file_is_one_line(no_bpf, tmp_path, capsys):
    bad = tmp_path / "k.btf"
    bad.write_text("not BTF\n")
    assert iotrace_main(["doctor", "--btf", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "not a BTF file" in line
