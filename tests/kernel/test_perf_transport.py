"""The perf-buffer transport against the ring buffer, on the running kernel.

Every test runs twice, KERNTRACE_TRANSPORT=ring and =perf: the same ip6mr
and odirect workloads as test_ip6mr.py and test_odirect.py, with the same
exact counts, pids, bytes and errnos (their own assertions); every object
verified and attached; bursts of tens of thousands of records of which each
is read or counted lost, exactly; the transport in the hooks line, the JSON
summary and meta.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import test_ip6mr as ip6
import test_odirect as odx
from runs import Attached
from test_ip6mr import netns_name  # noqa: F401  (a fixture)
from test_odirect import data_file  # noqa: F401  (a fixture)

from kerntrace.tracers import ip6mr
from kerntrace.tracers.diagnose import DiagnoseTool
from kerntrace.tracers.engine import BpfTracer, Hook, Session
from kerntrace.tracers.engine.perfring import PerfRings
from kerntrace.tracers.engine.tracedir import TraceReader

TRANSPORTS = {"ring": "ring buffer", "perf": "perf buffer"}
GETPPID = Hook("getppid", ("selftest_fentry", "selftest_kprobe", "selftest_getppid"))
BURST = 512  # KT_SELFTEST_MAX_BURST: records per getppid()


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request, monkeypatch):
    """KERNTRACE_TRANSPORT for the test (and the commands it starts)."""
    monkeypatch.setenv("KERNTRACE_TRANSPORT", request.param)
    return TRANSPORTS[request.param]


@pytest.fixture
def ip6mr_trace(transport):
    a = Attached(ip6mr.Ip6mrTool())
    assert a.run.transport == transport
    yield a
    a.close()


@pytest.fixture
def odirect_transports(transport, monkeypatch):
    """The transport of every odirect run test_odirect.py makes."""
    seen = []
    real = odx.run_quiet

    def spy(*args, **kw):
        run = real(*args, **kw)
        seen.append(run.envelope["transport"])
        return run

    monkeypatch.setattr(odx, "run_quiet", spy)
    return seen


# -- the tools' exact tests, both ways -----------------------------------------

def test_ip6mr_namespace_attempts(ip6mr_trace, netns_name):  # noqa: F811
    ip6.test_four_ways_to_create_and_two_refusals(ip6mr_trace, netns_name)
    assert ip6mr_trace.run.session.lost_events == 0


def test_ip6mr_icmp6_sockets(ip6mr_trace):
    ip6.test_icmp6_raw_sockets_counted_exactly(ip6mr_trace)
    assert ip6mr_trace.run.session.lost_events == 0


def test_ip6mr_kernel_log_ring(ip6mr_trace):
    ip6.test_kernel_log_precursor_caught_live(ip6mr_trace)


def test_odirect_reads_and_block_bytes(transport, odirect_transports, data_file):  # noqa: F811
    odx.test_odirect_reads_exact_per_syscall_and_block_bytes(data_file)
    assert odirect_transports == [transport]


def test_odirect_fio_counts(transport, odirect_transports, data_dir, tmp_path):
    odx.test_fio_counts_equal_ours_reads_and_block_bytes(data_dir, tmp_path)
    assert odirect_transports == [transport]


@pytest.mark.parametrize("engine_args, kind", [
    (["--ioengine=io_uring"], "io_uring_read"),
    (["--ioengine=io_uring", "--force_async=1"], "io_uring_read"),
])
def test_odirect_io_uring(transport, odirect_transports, data_dir, tmp_path, engine_args, kind):
    odx.test_io_uring_reads_equal_fio(data_dir, tmp_path, engine_args, kind)
    assert odirect_transports == [transport]


def test_odirect_burst_wakes_the_reader(transport, odirect_transports, data_dir, monkeypatch):
    """Cached reads between two of the reader's polls, 1.5 times what the
    ring holds: the perf rings wake it at a quarter full (the ring buffer's
    programs at half); none lost.  On the perf buffer the ring is one CPU's,
    which holds its share of the bytes: a burst from one CPU three times
    its ring left the reader, under TCG, too late by 170 to 524 records."""
    odx.test_burst_beyond_a_ring_between_polls_wakes_the_reader(data_dir, monkeypatch)  # sized by KERNTRACE_TRANSPORT
    assert odirect_transports == [transport]


@pytest.mark.parametrize("make", [DiagnoseTool, ip6mr.Ip6mrTool], ids=["diagnose", "ip6mr"])
def test_every_object_verifies_and_attaches(transport, make):
    """diagnose carries odirect, dstate, zombies and stat: with ip6mr, every
    object of every tool passes the verifier on this transport."""
    a = Attached(make())
    try:
        assert {t.transport for t in a.run.tracers.values()} == {transport}
        for tracer in a.run.tracers.values():
            perf = [r for r in tracer.readers.values() if isinstance(r, PerfRings)]
            assert len(perf) == (len(tracer.readers) if transport == "perf buffer" else 0)
            assert len(tracer.poll_fds()) == sum(len(r.fds) for r in perf) + len(tracer.readers) - len(perf)
    finally:
        a.close()


# -- bursts: every record read or counted lost ---------------------------------

def open_selftest(transport, ring_bytes=None):
    return BpfTracer("selftest", hooks=[GETPPID], rings={"selftest_events": "selftest_event"},
                     options={"kt_filter_pids": True, "burst": BURST}, ring_bytes=ring_bytes, transport=transport)


def test_burst_over_a_full_ring_kept_plus_lost_is_made(transport):
    """100 getppid() of 512 records each (51200) into a 256 KiB ring that
    nobody drains meanwhile: the ring fills, the rest is counted lost, and
    what was read is the start of the burst, in order.  On the perf buffer
    the kernel's LOST note, written once there is room again, counts the
    same records the BPF side counted (the process is pinned to one CPU:
    each CPU's ring has its own note)."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        with open_selftest(transport, ring_bytes=256 * 1024) as tracer:
            assert tracer.transport == transport
            tracer.load()
            tracer.trace_pids([os.getpid()])
            tracer.attach()
            for _ in range(100):
                os.getppid()
            kept = tracer.drain()["selftest_events"]
            lost = tracer.lost_events
            made = tracer.read_global("triggers") * BURST
            assert made == 100 * BURST
            assert 0 < len(kept) < made and lost > 0
            assert len(kept) + lost == made
            assert kept["seq"].tolist() == [i % BURST for i in range(len(kept))]
            os.getppid()  # room again: all of it arrives
            again = tracer.drain()["selftest_events"]
            assert len(again) == BURST and tracer.lost_events == lost
            if transport == "perf buffer":
                assert tracer.perf_lost_notes == lost
    finally:
        os.sched_setaffinity(0, before)


def test_burst_under_a_running_session_kept_plus_lost_is_made(transport):
    """A traced command makes 102400 records in 200 bursts while the
    session polls: each is read or counted lost, exactly."""
    tracer = open_selftest(transport)
    got = []
    script = "import os\nfor _ in range(200): os.getppid()"
    with Session([tracer]) as session:
        session.start()
        pid = session.spawn([sys.executable, "-c", script])
        session.run(lambda t, ring, batch: got.append(batch), duration=60)
        assert session.stop_reason == f"process {pid} exited"
        events = np.concatenate(got)
        made = tracer.read_global("triggers") * BURST
        assert made == 200 * BURST and set(events["pid"].tolist()) == {pid}
        assert len(events) + tracer.lost_events == made


# -- what a run says about its transport ---------------------------------------

def test_transport_in_hooks_line_summary_and_meta(transport, tmp_path):
    trace_dir = tmp_path / "trace"
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "nstrace"), "ip6mr", "--json", "-o", str(trace_dir),
         "-c", "unshare -n true"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (hooks,) = [line for line in proc.stderr.splitlines() if line.startswith("hooks: ")]
    assert f"; transport {transport}; backend libbpf" in hooks
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["transport"] == transport and summary["backend"] == "libbpf"
    assert summary["namespaces"]["created"] == 1 and summary["lost_events"] == 0
    assert TraceReader(str(trace_dir)).meta["transport"] == transport


def test_a_bad_transport_is_one_line_exit_2(monkeypatch):
    monkeypatch.setenv("KERNTRACE_TRANSPORT", "carrier-pigeon")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "nstrace"), "ip6mr", "-d", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nstrace: error: KERNTRACE_TRANSPORT=carrier-pigeon: expected perf or ring"]
