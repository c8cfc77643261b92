"""nstrace ip6mr on the running kernel: namespaces created by `ip netns
add`, `unshare -n`, clone and clone3 with CLONE_NEWNET, entered with setns,
and refused (EPERM, EINVAL); raw ICMPv6 sockets opened and closed; a kernel
log precursor; an OOM kill in a small memory cgroup.  Every count, pid,
method and errno is checked against what the workload did."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from kerntrace.analysis.ip6mr import errno_name, NamespaceStats
from kerntrace.tracers import ip6mr
from kerntrace.tracers.engine.replay import replay_trace
from kerntrace.tracers.engine.target import Target
from kerntrace.tracers.engine.tracedir import TraceReader
from kerntrace.tracers.cli import nstrace_main
from runs import Attached, run_quiet  # tests/runs.py

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
# The backend every run here takes (make vmtest's bcc pass sets KERNTRACE_BACKEND),
# and how it hooks the syscalls and task creation: tp_btf for the CO-RE object,
# raw tracepoints for the BCC program (the first choice of its plan).
BACKEND = "bcc" if os.environ.get("KERNTRACE_BACKEND") == "bcc" else "libbpf"
HOOK_METHOD = "raw_tracepoint" if BACKEND == "bcc" else "tp_btf"


def have_ip() -> bool:
    return subprocess.run(["ip", "-V"], capture_output=True).returncode == 0


@pytest.fixture
def trace():
    """ip6mr attached on every process; drained by collect()."""
    a = Attached(ip6mr.Ip6mrTool())
    yield a
    a.close()


def collect(t):
    return t.collect()


@pytest.fixture
def netns_name():
    """A named namespace for the test, deleted whatever happens."""
    if not have_ip():
        pytest.skip("iproute2 (ip) is not installed")
    names = []

    def make(prefix="kt"):
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield make
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def run_py(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, timeout=60, **kw)


def popen_py(code: str) -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return proc.pid, out


CLONE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
r, w = os.pipe()
pid = libc.syscall(56, 0x40000000 | 17, 0, 0, 0, 0)   # clone(CLONE_NEWNET | SIGCHLD)
if pid == 0:
    os.write(w, str(os.stat("/proc/self/ns/net").st_ino).encode())
    os._exit(0)
if pid < 0:
    sys.exit("clone failed: %d" % ctypes.get_errno())
os.close(w)
ino = os.read(r, 64).decode()
os.waitpid(pid, 0)
print(pid, ino)
"""

CLONE3 = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class CloneArgs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal",
                "stack", "stack_size", "tls", "set_tid", "set_tid_size", "cgroup")]
args = CloneArgs(flags=0x40000000, exit_signal=17)
r, w = os.pipe()
pid = libc.syscall(435, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
if pid == 0:
    os.write(w, str(os.stat("/proc/self/ns/net").st_ino).encode())
    os._exit(0)
if pid < 0:
    sys.exit("clone3 failed: %d" % ctypes.get_errno())
os.close(w)
ino = os.read(r, 64).decode()
os.waitpid(pid, 0)
print(pid, ino)
"""

SETNS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
assert libc.setns(fd, 0x40000000) == 0, ctypes.get_errno()     # explicit CLONE_NEWNET
assert libc.setns(fd, 0) == 0, ctypes.get_errno()              # nstype 0: the fd says it is a netns
mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY)
assert libc.setns(mnt, 0) == 0, ctypes.get_errno()             # a mount namespace: not counted
assert libc.setns(mnt, 0x40000000) == -1 and ctypes.get_errno() == 22   # EINVAL: counted, failed
print(os.stat("/proc/self/ns/net").st_ino)
"""

UNPRIVILEGED_UNSHARE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setgid(65534); os.setuid(65534)           # nobody: no CAP_SYS_ADMIN
    rc = libc.unshare(0x40000000)
    os.write(w, ("%d %d" % (rc, ctypes.get_errno())).encode())
    os._exit(0)
os.close(w)
rc, err = os.read(r, 64).decode().split()
os.waitpid(pid, 0)
print(pid, rc, err)
"""


def events_of(frames, *kinds):
    """The trace's netns_event records of these kinds."""
    ev = frames["netns_event"]
    return ev[ev["kind"].isin(kinds)].reset_index(drop=True)


def attempts(frames):
    """The attempt records, with the errno name of each failure."""
    import pandas as pd

    a = events_of(frames, "attempt")
    a["errno"] = pd.Series([errno_name(int(e)) for e in a["err"]], index=a.index, dtype=object)
    return a


def attempts_of(frames, pid):
    a = attempts(frames)
    return a[a["pid"] == pid].reset_index(drop=True)


def test_four_ways_to_create_and_two_refusals(trace, netns_name):
    name = netns_name()
    ip_add = subprocess.Popen(["ip", "netns", "add", name])
    assert ip_add.wait(timeout=30) == 0
    named_ino = os.stat(f"/run/netns/{name}").st_ino

    unshare = subprocess.Popen(["unshare", "-n", "true"])
    assert unshare.wait(timeout=30) == 0

    clone_pid, out = popen_py(CLONE)
    clone_child, clone_ino = (int(x) for x in out.split())
    clone3_pid, out = popen_py(CLONE3)
    clone3_child, clone3_ino = (int(x) for x in out.split())

    setns_pid, out = popen_py(SETNS.replace("sys.argv[1]", repr(f"/run/netns/{name}")))
    assert int(out) == named_ino

    eperm_parent, out = popen_py(UNPRIVILEGED_UNSHARE)
    eperm_child, rc, err = (int(x) for x in out.split())
    assert (rc, err) == (-1, errno.EPERM)

    frames = collect(trace)

    # ip netns add: unshare(CLONE_NEWNET) into the new namespace, then setns back to its own.
    a = attempts_of(frames, ip_add.pid)
    assert a["method"].tolist() == ["unshare", "setns"]
    assert a["netns"].tolist() == [named_ino, HOST_NETNS]
    assert (a["err"] == 0).all() and a["comm"].astype(str).tolist() == ["ip", "ip"]
    assert a["old_netns"].tolist() == [HOST_NETNS, named_ino]

    a = attempts_of(frames, unshare.pid)
    assert a["method"].tolist() == ["unshare"] and a["err"].tolist() == [0]
    assert a["netns"][0] not in (0, HOST_NETNS, named_ino)
    assert a["ppid"][0] == os.getpid()

    a = attempts_of(frames, clone_pid)
    assert a["method"].tolist() == ["clone"]
    assert a["child_pid"].tolist() == [clone_child] and a["netns"].tolist() == [clone_ino]
    assert a["err"].tolist() == [0] and clone_ino != HOST_NETNS

    a = attempts_of(frames, clone3_pid)
    assert a["method"].tolist() == ["clone3"]
    assert a["child_pid"].tolist() == [clone3_child] and a["netns"].tolist() == [clone3_ino]

    # setns: CLONE_NEWNET, then nstype 0 on a netns fd; the mount-namespace setns(…, 0)
    # is not a network attempt; setns(mnt fd, CLONE_NEWNET) is, and fails with EINVAL.
    a = attempts_of(frames, setns_pid)
    assert a["method"].tolist() == ["setns", "setns", "setns"]
    assert a["errno"].tolist() == [None, None, "EINVAL"]
    assert a["netns"].tolist()[:2] == [named_ino, named_ino]
    assert a["flags"].tolist() == [0x40000000, 0, 0x40000000]

    a = attempts_of(frames, eperm_child)
    assert a["method"].tolist() == ["unshare"]
    assert a["errno"].tolist() == ["EPERM"] and a["ret"].tolist() == [-errno.EPERM]
    assert a["ppid"].tolist() == [eperm_parent]
    assert attempts_of(frames, eperm_parent).empty

    ours = {ip_add.pid, unshare.pid, clone_pid, clone3_pid, setns_pid, eperm_child}
    all_attempts = attempts(frames)
    mine = all_attempts[all_attempts["pid"].isin(ours)]
    from kerntrace.analysis.ip6mr import namespace_counts

    stats = NamespaceStats().add_all(mine.to_dict("records"))
    counts = namespace_counts(stats)
    assert counts == {"created": 4, "entered": 3, "failed": 2, "failed_by_errno": {"EINVAL": 1, "EPERM": 1}}
    assert (mine["latency_ns"] > 0).all()
    assert (mine["cgroup_id"] > 0).all()

    # The rule on this real trace: right for this kernel, and for an unfixed one.
    from kerntrace.analysis import ip6mr as rule

    host = ip6mr.read_host_facts()
    (risk,) = rule.findings(stats, host, duration_s=2.0)
    status = rule.kernel_fix_status(host.release, host.version)
    assert risk.severity == ("info" if not status.at_risk else risk.severity)
    if host.release.startswith("6.18"):
        assert risk.title.startswith("Not at risk") and "4 namespace creations" in risk.summary
    centos = rule.HostFacts(release="3.10.0-862.el7.x86_64", mroute_multiple_tables="y")
    (risk,) = rule.findings(stats, centos, duration_s=2.0)
    assert risk.severity == "warning"   # EPERM and EINVAL are no memory failures
    assert "4 namespaces created (2.00/s), 2 failed (0 for lack of memory)" in risk.summary


ICMP6 = """
import os, socket
socks = [socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) for _ in range(3)]
other = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)          # not raw ICMPv6: not counted
raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_UDP)  # raw, but not ICMPv6
socks[0].close(); socks[1].close()
fd = socks[2].detach()      # left open: the kernel closes it when the process exits
print(fd, flush=True)
os._exit(0)
"""


def test_icmp6_raw_sockets_counted_exactly(trace):
    pid, out = popen_py(ICMP6)
    left_open = int(out)
    frames = collect(trace)
    icmp = events_of(frames, "icmp6_open", "icmp6_close", "icmp6_exit")
    mine = icmp[icmp["pid"] == pid]
    assert mine["kind"].tolist().count("icmp6_open") == 3
    assert mine["kind"].tolist().count("icmp6_close") == 2
    assert mine["kind"].tolist().count("icmp6_exit") == 1
    opened_fds = mine[mine["kind"] == "icmp6_open"]["fd"].tolist()
    closed_fds = mine[mine["kind"] == "icmp6_close"]["fd"].tolist()
    assert sorted(set(opened_fds) - set(closed_fds)) == [left_open]
    assert (mine[mine["kind"] != "icmp6_exit"]["netns"] == HOST_NETNS).all()
    assert trace.icmp6_closed_by_exit == 1
    summary = trace.summary(0.0)
    assert summary["icmp6_sockets"]["opened"] >= 3  # other processes may open some too
    # the kernel map forgets the fd once the process is gone
    assert trace.tracer.obj.map("icmp6_fds").lookup(
        __import__("struct").pack("<Ii", pid, left_open)) is None


def test_kernel_log_precursor_caught_live(trace):
    tag = uuid.uuid4().hex[:8]
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(f"kerntrace-test {tag}: IPv6: Failed to initialize the ICMP6 control socket (err -23)\n")
        kmsg.flush()
        kmsg.write(f"kerntrace-test {tag}: an ordinary line that is no precursor\n")
        kmsg.flush()
        kmsg.write(f"kerntrace-test {tag}: socket: no more sockets\n")
    frames = collect(trace)
    k = frames["kmsg"]
    mine = k[k["text"].str.contains(tag)]
    assert mine["kind"].tolist() == ["icmp6-ctl-socket", "socket-alloc"]
    assert trace.tracer.read_global("kmsg_matched") >= 2


def _memory_cgroup():
    """A fresh memory cgroup (v2 or v1) limited to 48 MiB; removed afterwards."""
    name = f"kerntrace-test-{uuid.uuid4().hex[:8]}"
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            if "memory" not in f.read().split():
                return None
        path = f"/sys/fs/cgroup/{name}"
        limit, procs, swap = "memory.max", "cgroup.procs", "memory.swap.max"
    elif os.path.isdir("/sys/fs/cgroup/memory"):
        path = f"/sys/fs/cgroup/memory/{name}"
        limit, procs, swap = "memory.limit_in_bytes", "cgroup.procs", None
    else:
        return None
    os.mkdir(path)
    with open(os.path.join(path, limit), "w") as f:
        f.write(str(48 << 20))
    if swap and os.path.exists(os.path.join(path, swap)):
        with open(os.path.join(path, swap), "w") as f:
            f.write("0")
    return path, procs


def test_oom_kill_in_a_memory_cgroup_is_seen(trace):
    cg = _memory_cgroup()
    if cg is None:
        pytest.skip("no memory cgroup controller to contain an OOM kill")
    path, procs = cg
    try:
        hog = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read(1); b = bytearray(512 << 20); b[::4096] = b'x' * len(b[::4096])"],
            stdin=subprocess.PIPE)
        with open(os.path.join(path, procs), "w") as f:
            f.write(str(hog.pid))
        hog.stdin.write(b"x")
        hog.stdin.close()
        rc = hog.wait(timeout=60)
        assert rc == -9, f"the hog should be OOM-killed, exit {rc}"
        frames = collect(trace)
        oom = events_of(frames, "oom")
        assert oom["child_pid"].tolist().count(hog.pid) == 1
    finally:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                import time

                time.sleep(0.1)


def test_cli_json_summary_with_command(tmp_path):
    out_file = tmp_path / "out.jsonl"
    trace_dir = tmp_path / "trace"
    with open(out_file, "w") as out:
        proc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "nstrace"), "ip6mr", "--json", "-o", str(trace_dir),
             "-c", "unshare -n true"],
            stdout=out, stderr=subprocess.PIPE, text=True, timeout=600)  # BCC's attach: over a minute under TCG
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in out_file.read_text().splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["tool"] == "ip6mr"
    assert summary["namespaces"]["created"] == 1 and summary["namespaces"]["failed"] == 0
    assert summary["namespaces"]["failed_by_errno"] == {}
    (attempt,) = summary["attempts"]
    assert attempt["comm"] == "unshare" and attempt["method"] == "unshare" and attempt["errno"] is None
    assert isinstance(attempt["result"], int) and attempt["result"] != HOST_NETNS
    assert summary["lost_events"] == 0
    hooks = {h["hook"]: h for h in summary["hooks"]}
    assert hooks["syscalls enter"]["method"] == HOOK_METHOD and hooks["syscalls enter"]["target"] == "sys_enter"
    assert hooks["task_newtask"]["method"] == HOOK_METHOD
    assert summary["backend"] == BACKEND
    events = [l for l in lines if l["type"] == "attempt"]
    assert len(events) == 1 and events[0]["pid"] == attempt["pid"]
    (risk,) = [f for f in summary["findings"] if f["id"] == "ip6mr-crash-risk"]
    assert "disable_ipv6=1 does not stop" in risk["recommendation"]
    reader = TraceReader(str(trace_dir))
    assert reader.complete and reader.kinds() == ["host_facts", "netns_event"]
    for _seq, _kind, path in reader.parts():
        assert os.stat(path).st_mode & 0o777 == 0o600
    rows = attempts(reader.frames())
    assert rows["pid"].tolist() == [attempt["pid"]] and rows["netns"].tolist() == [attempt["result"]]
    assert rows["method"].tolist() == ["unshare"] and rows["errno"].tolist() == [None]
    # `report` from the trace: the live summary's figures and findings
    envelope, found = replay_trace(reader, ip6mr.Ip6mrTool.from_trace(reader.meta["options"]))
    assert envelope["findings"] == summary["findings"]
    for key in ("namespaces", "attempts", "icmp6_sockets", "oom_kills", "precursors", "kernel_events", "host_facts"):
        assert envelope[key] == summary[key], key


def test_hooks_named_and_kernel_functions_reported_unavailable(capsys):
    rc = nstrace_main(["ip6mr", "-d", "0"])
    assert rc == 0
    err = capsys.readouterr().err
    assert f"hooks: {HOOK_METHOD} sys_enter; {HOOK_METHOD} sys_exit" in err
    from kerntrace.tracers.engine import probe

    if not (probe.can_attach("fentry", "copy_net_ns") or probe.can_attach("kprobe", "copy_net_ns")):
        assert "kernel functions (copy_net_ns, copy_net_ns return, setup_net, ip6mr_net_init, ip6mr_net_exit, " \
               "ip6mr_sk_done): unavailable here" in err


def test_pid_filter_keeps_only_the_traced_process(netns_name):
    t = Attached(ip6mr.Ip6mrTool(), Target(pids=[os.getpid()]))
    try:
        assert subprocess.run(["unshare", "-n", "true"]).returncode == 0   # another process: not traced
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        name = netns_name()
        subprocess.run(["ip", "netns", "add", name], check=True)
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        own = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            assert libc.setns(fd, 0x40000000) == 0
            assert libc.setns(own, 0x40000000) == 0
        finally:
            os.close(fd)
            os.close(own)
        frames = collect(t)
        rows = attempts(frames)
        assert rows["pid"].tolist() == [os.getpid(), os.getpid()]
        assert rows["netns"].tolist() == [os.stat(f"/run/netns/{name}").st_ino, HOST_NETNS]
    finally:
        t.close()


REPORT_WORKLOAD = """
import ctypes, os, socket, subprocess
for _ in range(3):
    subprocess.run(["unshare", "-n", "true"], check=True)
pid = os.fork()
if pid == 0:                                     # nobody: unshare(CLONE_NEWNET) fails with EPERM
    os.setgid(65534); os.setuid(65534)
    libc = ctypes.CDLL(None, use_errno=True)
    os._exit(0 if libc.unshare(0x40000000) == -1 and ctypes.get_errno() == 1 else 1)
assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
socks = [socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) for _ in range(2)]
socks[0].close()
with open("/dev/kmsg", "w") as kmsg:
    kmsg.write("kerntrace-test: socket: no more sockets\\n")
socks[1].detach()                                # left open: closed by the exit
os._exit(0)
"""


def test_report_from_the_trace_equals_the_live_run():
    """A real run with -o DIR: `report` (replay_trace on the directory, the
    tool rebuilt from meta.json's options) gives the live findings and
    summary figures, from the records and host facts the run wrote."""
    tool = ip6mr.Ip6mrTool()
    run = run_quiet(tool, Target(argv=[sys.executable, "-c", REPORT_WORKLOAD], follow=True))
    assert run.envelope["command_exit"] == 0
    live = run.envelope
    assert live["namespaces"] == {"created": 3, "entered": 0, "failed": 1, "failed_by_errno": {"EPERM": 1}}
    assert live["icmp6_sockets"] == {"opened": 2, "closed": 1, "closed_by_exit": 1}
    assert live["precursors"] == {"socket-alloc": 1}
    assert [a["method"] for a in live["attempts"]] == ["unshare"] * 4
    reader = TraceReader(run.path)
    assert reader.complete and set(reader.kinds()) == {"host_facts", "netns_event", "kmsg"}
    envelope, found = replay_trace(reader, ip6mr.Ip6mrTool.from_trace(reader.meta["options"]))
    assert [f.as_dict() for f in found] == [f.as_dict() for f in run.findings]
    assert envelope["findings"] == live["findings"]
    for key in ("duration_s", "namespaces", "attempts", "icmp6_sockets", "oom_kills", "precursors",
                "kernel_events", "host_facts"):
        assert envelope[key] == live[key], key
    # the records themselves: the four attempts with their pids and results
    a = attempts(reader.frames())
    assert sorted(a["errno"].tolist(), key=str) == ["EPERM", None, None, None]
    assert (a[a["err"] == 0]["netns"] != HOST_NETNS).all()
