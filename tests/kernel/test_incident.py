"""Attaching to an incident already in progress (issue 17), with workloads the
tests start: the tracer's own I/O, zombies and D-state sleeps that exist
before tracing starts, `-p PARENT`, orphans reaped by a subreaper or init,
and a PID namespace's init whose children die with the namespace."""
from __future__ import annotations

import mmap
import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

from kerntrace.analysis.dstate import per_process
from kerntrace.tracers.diagnose import DiagnoseTool
from kerntrace.tracers.dstate import DStateTool
from kerntrace.tracers.engine.replay import replay_trace
from kerntrace.tracers.engine.target import Target
from kerntrace.tracers.engine.tracedir import TraceReader
from kerntrace.tracers.zombies import ZombiesTool
from runs import run_quiet  # tests/runs.py
from delayacct import Counted, assert_sleeps_match, spawn_and_count_argv

from iowait_repro import build_repro, make_data_file, repro_argv  # tests/iowait_repro.py


def read_direct(path: str) -> int:
    """Reads path with O_DIRECT, 1 MiB at a time (an mmap is page-aligned)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    total = 0
    try:
        while True:
            n = os.readv(fd, [buf])
            if n <= 0:
                return total
            total += n
    finally:
        os.close(fd)
        buf.close()


# ---- the tracer never reports itself -------------------------------------------

# Started before tracing and ended after it: it starts a reader when told to
# (a line on stdin), prints the reader's pid, then its exit status.  The
# reader is its child, not the tracer's: a child of the tracer that exits
# during the run would rightly show the tracer as the parent that reaped it.
def test_tracer_own_io_is_never_reported(data_dir, delayacct):
    """All processes traced while the tracer itself reads with O_DIRECT (its
    D-state sleeps are iowait): no table or finding lists the tracer's pid,
    while the same reads by another process are all counted, and its sleeps
    as the kernel counted them."""
    data = make_data_file(data_dir, 4)
    me = os.getpid()
    starter = subprocess.Popen(spawn_and_count_argv(sys.executable, ["dd", f"if={data}", "of=/dev/null", "bs=1M",
                                                                     "iflag=direct"], go=True),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    class ReadsItself(DiagnoseTool):
        def started(self, clock):
            super().started(clock)
            read_direct(data)
            starter.stdin.write("go\n")
            starter.stdin.flush()
            self.reader = int(starter.stdout.readline())

        def tick(self):
            out = super().tick()
            read_direct(data)
            if select.select([starter.stdout], [], [], 0)[0]:
                self.counted = starter.stdout.readline()
                self.stop_reason = "reader done"
            return out

    tool = ReadsItself()
    try:
        run = run_quiet(tool, Target(), duration=20)
    finally:
        starter.stdin.close()
        starter.wait()
    assert run.session.stop_reason == "reader done"
    counted = Counted(tool.reader, *map(int, tool.counted.split()))
    assert counted.status == 0
    envelope = run.envelope
    assert me not in {p["pid"] for p in envelope["processes"]}
    assert me not in set(per_process(tool.dstate.frames())["pid"])
    frames = run.frames()
    assert me not in set(frames["read"]["pid"]) | set(frames["dstate_sleep"]["pid"])
    assert tool.reader in set(frames["read"]["pid"])
    assert me not in {e["pid"] for e in envelope["exits"]} | {e["parent_pid"] for e in envelope["exits"]}
    for f in envelope["findings"]:
        assert f"pid {me} " not in f["summary"]
        assert all(row.get("pid") != me and row.get("parent_pid") != me for row in f["evidence"])
    # The control: the other process's reads, every byte of them, O_DIRECT.
    (reader,) = [p for p in envelope["processes"] if p["pid"] == tool.reader]
    assert reader["odirect_bytes"] == 4 << 20
    assert_sleeps_match(frames["dstate_total"], counted)


# ---- comm follows exec ----------------------------------------------------------

@pytest.fixture(scope="module")
def repro():
    """The bundled reproduction, built once, and a 1 MiB file on a disk."""
    import shutil
    import tempfile

    workdir = tempfile.mkdtemp(prefix="kerntrace-test-", dir=os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp"))
    try:
        yield build_repro(workdir), make_data_file(workdir, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_parent_named_after_exec(repro):
    """A shell forks `sleep`, then execs the program that forks the children:
    the parent is named by what it runs at the end, not by its first child's
    fork record (the issue: the parent was named `bash`)."""
    binary, data = repro
    script = f"sleep 0.1; exec {' '.join(repro_argv(binary, data, fixed=False, children=3, hold_s=0.3))}"
    tool = ZombiesTool(reap_orphans=True)
    run = run_quiet(tool, Target(argv=["sh", "-c", script], follow=True))
    assert run.session.child_status == 0
    parent = run.session.child_pid
    events = run.frames()["zombie_event"]
    execs = events[(events["kind"] == "exec") & (events["pid"] == parent)]
    assert execs["comm"].tolist() == ["sh", "iowait_repro"]
    kids = [l for l in tool.lifecycles() if l.parent_pid == parent]
    assert sorted(l.comm for l in kids) == ["iowait_repro"] * 3 + ["sleep"]
    assert {l.parent_comm for l in kids} == {"iowait_repro"}
    (row,) = [p for p in run.envelope["processes"] if p["pid"] == parent]
    assert row["comm"] == "iowait_repro" and row["children_exited"] == 4
    (f,) = [f for f in run.findings if f.evidence[0]["parent_pid"] == parent]
    assert f.evidence[0]["parent_comm"] == "iowait_repro"
    assert f.summary.startswith(f"pid {parent} (iowait_repro) ")


# ---- state at attach: -p PARENT on zombies that already exist -----------------------

# A subreaper (as tini is) that runs a command and reaps what comes to it: the
# command, then the orphans it leaves.  "ignore": SIGCHLD ignored, so the
# kernel reaps the orphans as they are passed to it, with no wait call (as
# this host's init does); "wait": it reaps them with wait4.
REAPER = textwrap.dedent("""
    import ctypes, os, signal, sys
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:   # PR_SET_CHILD_SUBREAPER
        sys.exit(3)
    if os.fork() == 0:
        os.execvp(sys.argv[2], sys.argv[2:])
    if sys.argv[1] == "ignore":   # after the fork: an ignored SIGCHLD survives exec
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
""")


def start_under_reaper(mode, argv):
    """(the reaper, the command's pid from its first line) for a command
    that prints "parent PID: ..." first, as the reproduction does."""
    reaper = subprocess.Popen([sys.executable, "-c", REAPER, mode, *argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    line = reaper.stdout.readline()
    assert line.startswith("parent "), line
    return reaper, int(line.split()[1].rstrip(":"))


def children(pid):
    """{child pid: its state letter}, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(")") + 2:].split()
            if int(fields[1]) == pid:
                out[int(entry)] = fields[0]
    return out


def wait_for(condition, timeout=30.0):
    """Polls condition() until true; the workloads get there on their own."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the workload did not get there"
        time.sleep(0.01)


def test_p_parent_whose_zombies_predate_tracing(repro):
    """The issue's first mode: 6 O_DIRECT readers have exited and are
    zombies when `diagnose -p PARENT` attaches; then the parent does its one
    wait() and exits.  Its subreaper reaps the 5 it leaves."""
    binary, data = repro
    reaper, parent = start_under_reaper("wait", repro_argv(binary, data, fixed=False, children=6, hold_s=0.3,
                                                          go=True))
    try:
        wait_for(lambda: sorted(children(parent).values()) == ["Z"] * 6)
        zombies = set(children(parent))

        tool = ContinuesOnceAttached(reaper)
        run = run_quiet(tool, Target(pids=[parent]), duration=30)
    finally:
        reaper.stdin.close()
        assert reaper.wait(timeout=30) == 0
    assert run.session.stop_reason == f"process {parent} exited"
    lives = [l for l in tool.zombies.lifecycles() if l.parent_pid == parent]
    assert {l.pid for l in lives} == zombies
    assert all(l.predates_tracing and l.comm == "iowait_repro" for l in lives)
    by = sorted(l.reaped_by for l in lives)
    assert by == ["parent"] + ["subreaper"] * 5
    assert {l.reaper_pid for l in lives if l.reaped_by == "subreaper"} == {reaper.pid}
    assert all(l.parent_exit_ns is not None for l in lives if l.reaped_by == "subreaper")
    (f,) = [f for f in run.findings if f.id == "unreaped-children"]
    row = f.evidence[0]
    assert row["parent_pid"] == parent and row["parent_comm"] == "iowait_repro"
    assert row["unreaped"] == 5 and row["zombies_at_attach"] == 6 and row["children_exited"] == 6
    assert row["reaped_by_parent"] == 1 and row["wait_calls"] == 1
    assert row["orphaned"] == 5 and row["reaped_by_others"] == 5 and row["still_zombies"] == 0
    assert row["reapers"] == f"subreaper {reaper.pid} (python)"
    assert f.summary.startswith(f"pid {parent} (iowait_repro) left 5 children unreaped for up to ")
    assert "; 6 were already zombies when tracing started, 5 of them for at least " in f.summary
    assert f"5 were still zombies when it exited and subreaper {reaper.pid} (python) reaped them." in f.summary
    (proc,) = [p for p in run.envelope["processes"] if p["pid"] == parent]
    assert proc["comm"] == "iowait_repro" and proc["children_exited"] == 6


# Its child, alive when tracing starts, outlives it: it exits once the
# parent is gone (its end of the pipe closes as the parent exits; the child
# is passed to the reaper a moment later, when getppid() changes).
LEAVES_A_CHILD = textwrap.dedent("""
    import os, sys, time
    r, w = os.pipe()
    parent = os.getpid()
    if os.fork() == 0:
        os.close(w)
        os.read(r, 1)
        while os.getppid() == parent:
            time.sleep(0.001)
        os._exit(4)
    os.close(r)
    print("parent", os.getpid(), flush=True)
    sys.stdin.readline()
""")


def test_p_parent_child_alive_at_attach_exits_after_it():
    """-p PARENT covers the children it already had: one that outlives the
    parent exits under the subreaper, and its exit is still recorded, with
    the parent that forked it (read from /proc at attach)."""
    from runs import Attached

    reaper, parent = start_under_reaper("wait", [sys.executable, "-c", LEAVES_A_CHILD])
    (child,) = children(parent)
    t = Attached(ZombiesTool(), Target(pids=[parent]))
    try:
        reaper.stdin.write("go\n")
        reaper.stdin.flush()
        assert reaper.wait(timeout=30) == 0   # it has reaped the parent and the child
        frames = t.collect()
    finally:
        t.close()
    assert set(frames["zombie_child_at_attach"]["pid"]) == {child}
    lives = {l.pid: l for l in t.tool.lifecycles()}
    kid = lives[child]
    assert kid.parent_pid == parent and kid.ppid_at_exit == reaper.pid and kid.exit_code == 4 << 8
    assert kid.reaped_by == "subreaper" and kid.reaper_pid == reaper.pid
    assert lives[parent].reaped_by == "parent" and lives[parent].reaper_pid == reaper.pid
    # It exited after its parent: nothing the parent could have reaped.
    assert t.tool.findings(0.0) == []
    # The trace so far (no end: as a killed run leaves it) replays to the same lifecycles.
    reader = TraceReader(t.path)
    replay = ZombiesTool.from_trace(reader.meta["options"])
    _envelope, findings = replay_trace(reader, replay)
    assert findings == [] and not reader.complete
    assert [l.as_dict() for l in replay.lifecycles()] == [l.as_dict() for l in t.tool.lifecycles()]


# ---- state at attach: a task already in D ----------------------------------------

# vfork: the parent sleeps in D (wait_for_vfork_done, killable) until the child
# exits; the child waits for a byte on stdin, then sleeps MS ms and exits.
VFORK_HOLD_C = r"""
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int ms = atoi(argv[1]);
	pid_t pid = vfork();

	if (pid == 0) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		char c;

		syscall(SYS_read, 0, &c, 1);
		syscall(SYS_nanosleep, &ts, NULL);
		syscall(SYS_exit, 0);
	}
	waitpid(pid, NULL, 0);
	return 0;
}
"""


def task_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return ""
    return data[data.rfind(")") + 2:].split()[0]


def test_task_in_d_at_attach_counts_from_attach(data_dir):
    """A task already in D when tracing starts: its sleep counts from the
    attach to its wake-up, once, with the wait channel and stack /proc showed;
    the D time before the attach is not counted."""
    src = os.path.join(data_dir, "vfork_hold.c")
    with open(src, "w") as f:
        f.write(VFORK_HOLD_C)
    binary = os.path.join(data_dir, "vfork_hold")
    subprocess.run(["gcc", "-O2", "-o", binary, src], check=True)
    holder = subprocess.Popen([binary, "300"], stdin=subprocess.PIPE)
    try:
        wait_for(lambda: task_state(holder.pid) == "D")
        in_d_since = time.monotonic_ns()
        time.sleep(0.5)   # D time before tracing, which must not count

        class WakesOnceAttached(DStateTool):
            def started(self, clock):
                super().started(clock)
                holder.stdin.write(b"x")
                holder.stdin.flush()

        tool = WakesOnceAttached()
        run = run_quiet(tool, Target(pids=[holder.pid]), duration=30)
    finally:
        assert holder.wait(timeout=30) == 0
    assert run.session.stop_reason == f"process {holder.pid} exited"
    frames = run.frames()
    (row,) = frames["dstate_at_attach"].itertuples()
    assert row.pid == holder.pid and row.tid == holder.pid and row.comm == "vfork_hold"
    assert row.wchan and "vfork" in row.stack
    totals = frames["dstate_total"]
    attached = totals[totals["at_attach"]]
    assert attached["tid"].tolist() == [holder.pid] and attached["count"].tolist() == [1]
    assert not attached["iowait"].any()
    d_ns = int(attached["total_ns"].iloc[0])
    # From the attach (the child still sleeps 300 ms after it) to the exit.
    assert 300_000_000 <= d_ns <= run.session.ended_ns - run.clock.start_ns
    assert d_ns < run.session.ended_ns - in_d_since - 500_000_000
    assert "vfork" in attached["stack"].iloc[0]
    sleeps = frames["dstate_sleep"]
    (ev,) = sleeps[sleeps["at_attach"] == 1].itertuples()
    assert ev.duration_ns == d_ns and ev.tid == holder.pid
    assert "dstate_at_end" not in frames
    assert run.envelope["d_at_attach"] == [{"pid": holder.pid, "tid": holder.pid, "comm": "vfork_hold",
                                            "wchan": row.wchan}]
    # `report`: the sleep under way at attach, its stack from the trace's dstate_at_attach
    reader = TraceReader(run.path)
    envelope, findings = replay_trace(reader, DStateTool.from_trace(reader.meta["options"]))
    assert [f.as_dict() for f in findings] == [f.as_dict() for f in run.findings]
    for key in ("processes", "stacks", "d_at_attach", "d_at_end"):
        assert envelope[key] == run.envelope[key], key


# ---- orphans and PID namespaces, all processes traced ------------------------------

def repro_parent(pid):
    """The reproduction's parent under pid (a reaper, unshare, a namespace's
    init): down the chain of children to the first iowait_repro."""
    while True:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "iowait_repro":
                    return pid
        except OSError:
            return None
        kids = children(pid)
        if len(kids) != 1:
            return None
        (pid,) = kids


class ContinuesOnceAttached(DiagnoseTool):
    """diagnose that tells a waiting workload to go on (a line on its stdin)
    once everything is attached."""

    def __init__(self, proc):
        super().__init__()
        self.proc = proc

    def started(self, clock):
        super().started(clock)
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()


class Drives(DiagnoseTool):
    """All processes traced: starts the workload once attached, tells the
    reproduction's parent to go on (its wait(), then its exit) once its
    children are all zombies, ends the run when the workload has exited."""

    def __init__(self, argv, children_n):
        super().__init__()
        self.argv = argv
        self.children_n = children_n
        self.parent = None
        self.went = False

    def started(self, clock):
        super().started(clock)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def tick(self):
        out = super().tick()
        if self.parent is None:
            self.parent = repro_parent(self.proc.pid)
        if self.parent and not self.went and sorted(children(self.parent).values()) == ["Z"] * self.children_n:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            self.went = True
        if self.proc.poll() is not None:
            self.stop_reason = "workload done"
        return out


def drive(argv, children_n=6):
    tool = Drives(argv, children_n)
    try:
        run = run_quiet(tool, Target(), duration=60)
    finally:
        tool.proc.stdin.close()
        tool.proc.wait(timeout=30)
    assert run.session.stop_reason == "workload done" and tool.proc.returncode == 0 and tool.went
    (f,) = [f for f in run.findings if f.id == "unreaped-children" and f.evidence[0]["parent_pid"] == tool.parent]
    return tool, run, f


@pytest.mark.parametrize("mode", ["wait", "ignore"])
def test_all_processes_orphans_passed_to_a_subreaper(repro, mode):
    """The issue's second mode: all processes traced from before the program
    starts; the parent reaps one of 6 zombies and exits; the 5 others pass
    to the subreaper above it, which reaps them with wait4 ("wait") or lets
    the kernel reap them as they come, as this host's init does ("ignore")."""
    binary, data = repro
    argv = [sys.executable, "-c", REAPER, mode, *repro_argv(binary, data, fixed=False, children=6, hold_s=0.2,
                                                             go=True)]
    tool, run, f = drive(argv)
    reaper = tool.proc.pid
    row = f.evidence[0]
    assert row["parent_comm"] == "iowait_repro" and row["children_exited"] == 6
    assert row["unreaped"] == 5 and row["orphaned"] == 5 and row["reaped_by_others"] == 5
    assert row["reaped_by_parent"] == 1 and row["still_zombies"] == 0 and row["zombies_at_attach"] == 0
    assert row["reapers"] == f"subreaper {reaper} (python)"
    lives = [l for l in tool.zombies.lifecycles() if l.parent_pid == tool.parent]
    passed = [l for l in lives if l.reaped_by == "subreaper"]
    assert len(passed) == 5 and {l.reaper_pid for l in passed} == {reaper}
    assert {l.reaped_how for l in passed} == ({"wait4"} if mode == "wait" else {"auto"})
    tail = " (it ignores SIGCHLD: the kernel reaped them as they were passed to it)" if mode == "ignore" else ""
    # The parent's one wait() may come a second after that child's exit on a
    # slow machine (the 6.1 guest): the finding then says it reaped it late.
    (own,) = [l for l in lives if l.reaped_by == "parent"]
    late = f"; 1 more it reaped only after up to {own.zombie_s:.1f} s" if own.zombie_s >= 1.0 else ""
    assert f.summary.endswith(f"5 were still zombies when it exited and subreaper {reaper} (python) reaped "
                              f"them{tail}{late}.")
    (proc,) = [p for p in run.envelope["processes"] if p["pid"] == tool.parent]
    assert proc["comm"] == "iowait_repro"
    readers = [p for p in run.envelope["processes"] if p["pid"] in {l.pid for l in lives}]
    assert len(readers) == 6 and all(p["odirect_bytes"] == 1 << 20 for p in readers)


def test_all_processes_orphans_reaped_by_a_namespace_init(repro):
    """The same program in a PID namespace whose init reaps orphans with
    wait4 (a container's init): reaped by init."""
    binary, data = repro
    argv = ["unshare", "-fp", sys.executable, "-c", REAPER, "wait",
            *repro_argv(binary, data, fixed=False, children=6, hold_s=0.2, go=True)]
    tool, run, f = drive(argv)
    init = _init_of(tool)
    row = f.evidence[0]
    assert row["unreaped"] == 5 and row["reaped_by_others"] == 5 and row["reaped_by_parent"] == 1
    assert row["reapers"] == f"init {init} (python)"
    # as in the subreaper test: the parent's one wait() may come a second
    # after that child's exit in the 6.1 guest, and the finding says so
    lives = [l for l in tool.zombies.lifecycles() if l.parent_pid == tool.parent]
    (own,) = [l for l in lives if l.reaped_by == "parent"]
    late = f"; 1 more it reaped only after up to {own.zombie_s:.1f} s" if own.zombie_s >= 1.0 else ""
    assert f.summary.endswith(f"5 were still zombies when it exited and init {init} (python) reaped them{late}.")


def _init_of(tool):
    """The namespace's init: the process that reaped the parent."""
    (parent,) = [l for l in tool.zombies.lifecycles() if l.pid == tool.parent]
    assert parent.reaped_by == "parent"
    return parent.reaper_pid


def test_pid_namespace_end_reaps_what_its_init_left(repro):
    """The issue's third mode: the program is a PID namespace's init (as a
    container's entrypoint is); the 5 zombies it leaves are reaped by the
    kernel when it exits and the namespace ends, with no wait call."""
    binary, data = repro
    argv = ["unshare", "-fp", *repro_argv(binary, data, fixed=False, children=6, hold_s=0.2, go=True)]
    tool, run, f = drive(argv)
    parent = tool.parent
    row = f.evidence[0]
    assert row["parent_comm"] == "iowait_repro" and row["children_exited"] == 6
    assert row["unreaped"] == 5 and row["orphaned"] == 5 and row["reaped_by_namespace_end"] == 5
    assert row["reaped_by_others"] == 0 and row["reaped_by_parent"] == 1 and row["still_zombies"] == 0
    assert f"the PID namespace's end reaped them (pid {parent} was the namespace's init" in f.summary
    lives = [l for l in tool.zombies.lifecycles() if l.parent_pid == parent]
    ended = [l for l in lives if l.reaped_by == "namespace end"]
    assert len(ended) == 5 and {l.reaper_pid for l in ended} == {parent}
    (init,) = [l for l in tool.zombies.lifecycles() if l.pid == parent]
    assert init.ns_init and init.reaped_by == "parent" and init.reaper_pid == tool.proc.pid


def test_p_namespace_init_whose_zombies_predate_tracing(repro):
    """-p on a PID namespace's init (a container's entrypoint) that already
    left zombies: its one wait() returns a pid of its namespace, still
    matched to the zombie seen in /proc; its exit ends the namespace, and the
    kernel reaps the 5 others."""
    binary, data = repro
    unshare = subprocess.Popen(["unshare", "-fp", *repro_argv(binary, data, fixed=False, children=6, hold_s=0.2,
                                                               go=True)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: repro_parent(unshare.pid) is not None)
        parent = repro_parent(unshare.pid)
        wait_for(lambda: sorted(children(parent).values()) == ["Z"] * 6)

        tool = ContinuesOnceAttached(unshare)
        run = run_quiet(tool, Target(pids=[parent]), duration=30)
    finally:
        unshare.stdin.close()
        assert unshare.wait(timeout=30) == 0
    assert run.session.stop_reason == f"process {parent} exited"
    lives = [l for l in tool.zombies.lifecycles() if l.parent_pid == parent]
    assert len(lives) == 6 and all(l.predates_tracing for l in lives)
    assert sorted(l.reaped_by for l in lives) == ["namespace end"] * 5 + ["parent"]
    (f,) = [f for f in run.findings if f.id == "unreaped-children"]
    row = f.evidence[0]
    assert row["parent_pid"] == parent and row["parent_comm"] == "iowait_repro"
    assert row["unreaped"] == 5 and row["zombies_at_attach"] == 6 and row["reaped_by_parent"] == 1
    assert row["reaped_by_namespace_end"] == 5 and row["wait_calls"] == 1
    assert "the PID namespace's end reaped them" in f.summary
