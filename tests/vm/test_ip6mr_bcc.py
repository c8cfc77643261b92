"""`nstrace ip6mr --backend bcc` in the guest: bpf/ip6mr.bcc.c compiled by
BCC against the guest kernel's headers (python3-bpfcc and
linux-headers-<release> on the shared root), one run, real workloads:
`unshare -n` (one creation, its pid and new namespace, the kernel path
through kprobes), raw ICMPv6 sockets (3 opened, 2 closed, 1 closed by the
exit) and a kernel-log precursor, each counted exactly.

The development host has neither kernel headers nor kprobes: there the
command's refusal is tested (tests/kernel/test_backend.py); this directory
runs in the guest only (tests/vm/conftest.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest

from kerntrace.tracers.engine.backend import bcc_module, headers_path
from runs import wait_ready  # tests/runs.py

NSTRACE = os.path.join(os.path.dirname(sys.executable), "nstrace")
HOST_NETNS = os.stat("/proc/self/ns/net").st_ino


def _why_not() -> str:
    release = os.uname().release
    if not os.path.isdir(headers_path(release)):
        return f"no kernel headers in {headers_path(release)} (linux-headers-{release})"
    ok, why = bcc_module()
    if not ok:
        return f"bcc does not import: {why}"
    return ""


@pytest.fixture(autouse=True)
def _bcc_runs_here():
    reason = _why_not()
    if reason:
        pytest.skip(reason)


ICMP6 = """
import os, socket
socks = [socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) for _ in range(3)]
socks[0].close(); socks[1].close()
print(socks[2].detach(), flush=True)   # left open: the kernel closes it at the exit
os._exit(0)
"""


def test_bcc_backend_counts_unshare_and_sockets_exactly(tmp_path):
    tracer = subprocess.Popen([NSTRACE, "ip6mr", "--backend", "bcc", "--json", "-o", str(tmp_path / "trace")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(tracer, "nstrace ip6mr --backend bcc")
        hooks = tracer.stderr.readline().strip()
        unshare = subprocess.run(["unshare", "-n", "stat", "-L", "-c", "%i", "/proc/self/ns/net"],
                                 capture_output=True, text=True, check=True, timeout=60)
        # the pid that called unshare(2): unshare(1) execs stat in the same process
        new_netns = int(unshare.stdout)
        icmp = subprocess.Popen([sys.executable, "-c", textwrap.dedent(ICMP6)], stdout=subprocess.PIPE, text=True)
        left_open = int(icmp.communicate(timeout=60)[0])
    finally:
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=120)
    assert tracer.returncode == 0, err
    assert hooks.startswith("hooks: raw_tracepoint sys_enter; raw_tracepoint sys_exit; raw_tracepoint task_newtask")
    assert hooks.endswith("; transport perf buffer; backend bcc (kernel headers)"), hooks
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["backend"] == "bcc" and summary["btf_file"] is None
    assert summary["lost_events"] == 0
    methods = {h["hook"]: (h["method"], h["target"]) for h in summary["hooks"]}
    assert methods["syscalls enter"] == ("raw_tracepoint", "sys_enter")
    assert methods["copy_net_ns"] == ("kprobe", "copy_net_ns")
    assert methods["copy_net_ns return"] == ("kretprobe", "copy_net_ns")

    # unshare -n: one creation, by that pid, into the namespace it printed
    pid = next(a["pid"] for a in summary["attempts"] if a["result"] == new_netns)
    mine = [a for a in summary["attempts"] if a["pid"] == pid]
    assert [(a["method"], a["errno"], a["result"], a["comm"]) for a in mine] == \
           [("unshare", None, new_netns, "unshare")]
    assert mine[0]["latency_us"] > 0 and mine[0]["ppid"] == os.getpid()
    assert summary["namespaces"]["created"] >= 1
    kernel = [e for e in lines if e.get("pid") == pid and e["type"] in
              ("copy_net_ns", "copy_net_ns_ret", "setup_net", "ip6mr_net_init")]
    assert [e["type"] for e in kernel] == ["copy_net_ns", "setup_net", "ip6mr_net_init", "copy_net_ns_ret"]
    # setup_net gives the namespace its inode (net_ns_net_init, the first pernet
    # init): at its entry there is none yet, as in the CO-RE program
    assert [e["netns"] for e in kernel] == [None, None, new_netns, new_netns]
    assert kernel[3]["latency_us"] > 0   # copy_net_ns, entry to return
    assert summary["kernel_events"]["copy_net_ns"] >= 1

    # raw ICMPv6 sockets: 3 opened, 2 closed, the third closed by the exit
    icmp_events = [e for e in lines if e.get("pid") == icmp.pid and e["type"].startswith("icmp6")]
    assert [e["type"] for e in icmp_events] == ["icmp6_open"] * 3 + ["icmp6_close"] * 2 + ["icmp6_exit"]
    assert sorted({e["fd"] for e in icmp_events[:3]} - {e["fd"] for e in icmp_events[3:5]}) == [left_open]
    assert all(e["netns"] == HOST_NETNS for e in icmp_events[:5])
    assert icmp_events[-1]["closed_fds"] == 1



def test_bcc_backend_catches_the_kmsg_precursor(tmp_path):
    """The kernel log under bcc: a precursor line written to /dev/kmsg is
    matched in the kernel by its needle and recorded with its kind."""
    tracer = subprocess.Popen([NSTRACE, "ip6mr", "--backend", "bcc", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tag = uuid.uuid4().hex[:8]
    try:
        wait_ready(tracer, "nstrace ip6mr --backend bcc")
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(f"kerntrace-bcc {tag}: socket: no more sockets\n")
    finally:
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=120)
    assert tracer.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    kmsg = [e for e in lines if e["type"] == "kmsg" and tag in e["text"]]
    (log_hook,) = [h for h in summary["hooks"] if h["hook"] == "kernel log"]
    assert [e["kind"] for e in kmsg] == ["socket-alloc"], (summary["precursors"], log_hook["rejected"])


# A process's peak RSS survives exec (Linux keeps the larger of the old and
# new image's): forked from pytest, the tracer would report pytest's. This
# small interpreter forks the tracer from its own image and prints the peak.
_PEAK_RSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_pid, status, usage = os.wait4(pid, 0)
print(f"peak-rss-kb {usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _start_up(backend: str) -> tuple[float, float, str]:
    """`nstrace ip6mr --backend B -d 0` (attach, the ready line, detach):
    wall seconds, the tracer's peak RSS in MB and its hooks line."""
    import time

    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, NSTRACE, "ip6mr", "--backend", backend, "-d", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    (hooks,) = [line for line in run.stderr.splitlines() if line.startswith("hooks: ")]
    (peak,) = [line for line in run.stderr.splitlines() if line.startswith("peak-rss-kb ")]
    return wall, int(peak.split()[1]) / 1024, hooks


def test_start_up_of_each_backend(report_result):
    """What each backend costs to start here: the CO-RE object's load, or
    BCC's compile against the headers.  Measured, not asserted (make bench's
    kind of figure): printed in the run's closing summary."""
    for backend, says in (("libbpf", "; backend libbpf (kernel BTF)"), ("bcc", "; backend bcc (kernel headers)")):
        wall, rss_mb, hooks = _start_up(backend)
        assert says in hooks, hooks
        report_result(f"nstrace ip6mr --backend {backend} -d 0: {wall:.1f} s to attach and detach, "
                      f"peak RSS {rss_mb:.0f} MB")
