"""The kernel-function side of nstrace ip6mr, for a guest whose kernel
allows fentry or kprobes (`make vmtest` boots Debian's 6.1 under QEMU; the
development host refuses both, and these tests skip there with the reason).

One process unshares a network namespace, opens and closes a raw ICMPv6
socket there, and exits; the namespace is then destroyed by the kernel's
cleanup worker.  The tracer must show, for that process and that namespace:
copy_net_ns and its return (the new inode), setup_net, ip6mr_net_init,
ip6mr_sk_done (from the socket's close), and ip6mr_net_exit (from cleanup).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from kerntrace.tracers import ip6mr
from kerntrace.tracers.engine import probe
from kerntrace.tracers.cli import nstrace_main
from runs import Attached  # tests/runs.py


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF"
    try:
        from kerntrace.tracers.engine import object_path

        object_path("ip6mr")
    except FileNotFoundError as exc:
        return str(exc)
    fentry = probe.can_attach("fentry", "copy_net_ns")
    kprobe = probe.can_attach("kprobe", "copy_net_ns")
    if not fentry and not kprobe:
        return f"this kernel allows neither fentry ({fentry.reason}) nor kprobes ({kprobe.reason}) on copy_net_ns"
    return ""


@pytest.fixture(autouse=True)
def _kernel_functions_available():
    reason = _why_not()
    if reason:
        pytest.skip(reason)


def expected_kinds() -> tuple[str, str]:
    """(entry kind, return kind) the attach plan must pick: fentry first."""
    if probe.can_attach("fentry", "copy_net_ns"):
        return "fentry", "fexit"
    return "kprobe", "kretprobe"


def test_plan_picks_fentry_or_kprobe_for_every_kernel_hook():
    entry, ret = expected_kinds()
    t = Attached(ip6mr.Ip6mrTool())
    try:
        choices = {c.hook: c for c in t.choices}
        for hook in ("copy_net_ns", "setup_net", "ip6mr_net_init", "ip6mr_net_exit", "ip6mr_sk_done"):
            assert choices[hook].kind == entry, f"{hook}: {choices[hook].describe()} {choices[hook].rejected}"
            assert choices[hook].target == hook
        assert choices["copy_net_ns return"].kind == ret
        assert t.kernel_hooks_available()
    finally:
        t.close()


WORKLOAD = """
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x40000000) == 0, ctypes.get_errno()
print(os.stat("/proc/self/ns/net").st_ino, flush=True)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.close()                      # rawv6_close -> ip6mr_sk_done, in this process
"""


def test_create_use_destroy_namespace_seen_in_the_kernel_path():
    t = Attached(ip6mr.Ip6mrTool())
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(WORKLOAD)], capture_output=True, text=True,
                              check=True, timeout=120)
        netns = int(proc.stdout.split()[0])
        # The workload is gone: its namespace is freed by cleanup_net in a kworker, later.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            events = t.collect()["netns_event"]   # every ns_event record the trace holds
            if ((events["kind"] == "ip6mr_net_exit") & (events["netns"] == netns)).any():
                break
            time.sleep(0.5)
        k = t.collect()["netns_event"]
    finally:
        t.close()

    # the attempt, from the tracepoints
    a = k[k["kind"] == "attempt"]
    pid = int(a[(a["netns"] == netns) & (a["method"] == "unshare")]["pid"].iloc[0])

    def of(event, **cond):
        rows = k[k["kind"] == event]
        for col, val in cond.items():
            rows = rows[rows[col] == val]
        return rows

    assert len(of("copy_net_ns", pid=pid)) == 1
    ret = of("copy_net_ns_ret", pid=pid)
    assert len(ret) == 1 and int(ret["netns"].iloc[0]) == netns and int(ret["err"].iloc[0]) == 0
    assert int(ret["latency_ns"].iloc[0]) > 0
    assert len(of("setup_net", pid=pid)) == 1
    init = of("ip6mr_net_init", pid=pid)
    assert len(init) == 1 and int(init["netns"].iloc[0]) == netns
    done = of("ip6mr_sk_done", pid=pid)
    assert len(done) == 1 and int(done["netns"].iloc[0]) == netns and int(done["ret"].iloc[0]) == 58
    exits = of("ip6mr_net_exit", netns=netns)
    assert len(exits) == 1, "namespace cleanup (ip6mr_net_exit) not seen within 60 s"
    assert int(exits["pid"].iloc[0]) != pid   # cleanup_net runs in a kworker


def test_command_names_the_kernel_hooks(capsys):
    entry, _ret = expected_kinds()
    assert nstrace_main(["ip6mr", "-d", "0"]) == 0
    err = capsys.readouterr().err
    assert f"{entry} copy_net_ns" in err and f"{entry} ip6mr_sk_done" in err
    assert "unavailable here" not in err
