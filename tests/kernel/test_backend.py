"""--backend and --btf on this kernel, through the installed commands.

--btf FILE with FILE this kernel's own BTF (a copy of /sys/kernel/btf/vmlinux,
which is raw BTF) must trace exactly what the kernel's BTF traces: same
reads, offsets and bytes.  The bcc backend cannot run on this host (no
kernel headers, no kprobes): one line, exit 2, nothing attached."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from kerntrace.tracers.engine.backend import headers_path

BIN = os.path.dirname(sys.executable)
IOTRACE = os.path.join(BIN, "iotrace")
NSTRACE = os.path.join(BIN, "nstrace")
BLOCK = 4096
N = 8


def run(*argv, timeout=120):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def assert_one_line_exit_2(res):
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "hooks:" not in res.stderr   # refused before anything was attached
    return lines[0]


def _bcc_importable() -> bool:
    from kerntrace.tracers.engine.backend import bcc_module

    return bcc_module()[0]


HEADERS = os.path.isdir(headers_path(os.uname().release))
# Where BCC and the headers are (the guest), ip6mr and odirect run on the bcc
# backend (tests/kernel/test_ip6mr_bcc.py): only the tools without a BCC
# program are refused.
BCC_RUNS = HEADERS and _bcc_importable()


@pytest.mark.parametrize("argv", ([] if BCC_RUNS else [
    (NSTRACE, "ip6mr", "--backend", "bcc", "-d", "1"),
    (IOTRACE, "odirect", "--backend", "bcc", "-c", "true"),
]) + [(IOTRACE, "dstate", "--backend", "bcc", "-d", "1")])
def test_bcc_backend_is_one_line_exit_2_here(argv):
    line = assert_one_line_exit_2(run(*argv))
    if not BCC_RUNS:
        assert "the bcc backend cannot run here" in line
        if not HEADERS:
            assert f"no kernel headers in {headers_path(os.uname().release)}" in line
    else:
        assert "the bcc backend runs only nstrace ip6mr and iotrace odirect" in line


@pytest.fixture(scope="module")
def kernel_btf_copy(tmp_path_factory):
    """This kernel's BTF as a file, as BTFHub would give it for a kernel
    without one.  (`bpftool btf dump ... format raw` prints text, not BTF:
    the sysfs file itself is raw BTF.)"""
    path = tmp_path_factory.mktemp("btf") / "vmlinux.btf"
    shutil.copyfile("/sys/kernel/btf/vmlinux", path)
    return str(path)


@pytest.fixture
def direct_file(data_dir):
    path = os.path.join(data_dir, "btf-odirect.dat")
    with open(path, "wb") as f:
        f.write(os.urandom(N * BLOCK))
        f.flush()
        os.fsync(f.fileno())
    return path


def traced_dd(path, tmp_path, name, *extra):
    """iotrace odirect of one dd with O_DIRECT reads: (summary, the dd's
    O_DIRECT read events, the hooks line, meta.json)."""
    out = tmp_path / name
    dd = f"{shutil.which('dd')} if={path} of=/dev/null bs={BLOCK} count={N} iflag=direct status=none"
    res = run(IOTRACE, "odirect", "-c", dd, "--json", "-o", str(out), *extra)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    summary = lines[-1]
    reads = sorted(((e["syscall"], e["offset"], e["asked"], e["bytes"], e["direct"])
                    for e in lines[:-1] if e.get("type") == "read" and e["path"] == path), key=lambda r: r[1])
    (hooks,) = [line for line in res.stderr.splitlines() if line.startswith("hooks: ")]
    meta = json.loads((out / "meta.json").read_text())
    return summary, reads, hooks, meta


def test_btf_file_traces_exactly_what_the_kernel_btf_traces(kernel_btf_copy, direct_file, tmp_path):
    plain, plain_reads, plain_hooks, plain_meta = traced_dd(direct_file, tmp_path, "plain")
    custom, custom_reads, custom_hooks, custom_meta = traced_dd(direct_file, tmp_path, "btf", "--btf",
                                                                kernel_btf_copy)
    expected = [("read", i * BLOCK, BLOCK, BLOCK, True) for i in range(N)]
    assert plain_reads == expected and custom_reads == expected
    for summary in (plain, custom):
        assert summary["lost_events"] == 0 and summary["command_exit"] == 0
        (dd,) = [p for p in summary["processes"] if p["odirect_reads"]]
        assert dd["comm"] == "dd" and dd["odirect_reads"] == N and dd["odirect_bytes"] == N * BLOCK
        (f,) = [f for f in summary["files"] if f["path"] == direct_file]
        assert f["odirect_share"] == 1.0
    # the same hooks, by the same methods: the probes read FILE, which is this kernel's
    assert [(h["hook"], h["method"], h["target"]) for h in plain["hooks"]] == \
           [(h["hook"], h["method"], h["target"]) for h in custom["hooks"]]
    # the backend, printed with the hooks and recorded in the summary and meta.json
    assert plain_hooks.endswith("; backend libbpf (kernel BTF)")
    assert custom_hooks.endswith(f"; backend libbpf (BTF {kernel_btf_copy})")
    assert plain_hooks.rsplit("; backend", 1)[0] == custom_hooks.rsplit("; backend", 1)[0]
    assert (plain["backend"], plain["btf_file"]) == ("libbpf", None)
    assert (custom["backend"], custom["btf_file"]) == ("libbpf", kernel_btf_copy)
    assert (plain_meta["backend"], plain_meta["btf_file"]) == ("libbpf", None)
    assert (custom_meta["backend"], custom_meta["btf_file"]) == ("libbpf", kernel_btf_copy)


def test_btf_file_report_keeps_the_backend(kernel_btf_copy, direct_file, tmp_path):
    custom, _reads, _hooks, _meta = traced_dd(direct_file, tmp_path, "btf", "--btf", kernel_btf_copy)
    rep = run(IOTRACE, "report", str(tmp_path / "btf"), "--json")
    assert rep.returncode == 0, rep.stderr
    again = json.loads(rep.stdout)
    assert (again["backend"], again["btf_file"]) == ("libbpf", kernel_btf_copy)
    assert again["processes"] == custom["processes"]


def test_non_btf_file_is_one_line_exit_2(tmp_path):
    text = tmp_path / "vmlinux.txt"
    with open(text, "w") as f:   # what the brief's `format raw` gives: a text dump
        subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
                       stdout=f, check=True)
    for argv in ((IOTRACE, "odirect", "-c", "true", "--btf", str(text)),
                 (NSTRACE, "ip6mr", "-d", "1", "--btf", str(text)),
                 (IOTRACE, "dstate", "-d", "1", "--btf", str(tmp_path / "missing.btf"))):
        line = assert_one_line_exit_2(run(*argv))
        assert "--btf" in line and ("not a BTF file" in line or "no such file" in line), line


def test_doctor_with_the_btf_file_agrees(kernel_btf_copy):
    res = run(IOTRACE, "doctor", "--json", "--btf", kernel_btf_copy)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    libbpf = report["backends"]["libbpf"]
    assert libbpf["usable"] and libbpf["btf"] == libbpf["btf_file"] == kernel_btf_copy
    assert report["tp_btf"] and report["ringbuf"] and report["auto_backend"] == "libbpf"
