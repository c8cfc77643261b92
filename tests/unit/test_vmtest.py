"""make vmtest's reading of the guest's kernel log, and the host side of
its panic test."""
import os
import sys
from pathlib import Path

import pytest

# The runner is development tooling beside the VM tests, not in the package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vm"))

import vmtest  # noqa: E402  (tests/vm/vmtest.py)
from vmtest import find_splats  # noqa: E402

CLEAN_BOOT = """\
[    0.786173] PCI: Using host bridge windows from ACPI; if necessary, use "pci=nocrs" and report a bug
[    1.391051] AMD-Vi: AMD IOMMUv2 functionality not available on this system - This is not a bug.
[    2.628336] Unstable clock detected, switching default tracing clock to "global"
[   34.299305] EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.
"""

SPLAT = """\
[   61.000001] ------------[ cut here ]------------
[   61.000002] WARNING: CPU: 1 PID: 412 at kernel/bpf/verifier.c:3080 backtrack_insn+0x5a/0x620
[   61.000003] Modules linked in: ext4 virtio_blk
[   61.000004] Call Trace:
[   61.000005]  <TASK>
[   62.100000] BUG: unable to handle page fault for address: ffffc90000a3f000
[   62.100001] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   63.000000] verifier backtracking bug
"""


def test_clean_boot_log_has_no_splat():
    # "report a bug" / "not a bug" are ordinary boot lines, not warnings.
    assert find_splats(CLEAN_BOOT) == []


def test_warning_oops_and_verifier_bug_are_found():
    found = find_splats(CLEAN_BOOT + SPLAT)
    assert [line.split("] ", 1)[1].split(":")[0] for line in found] == [
        "WARNING",
        "Call Trace",
        "BUG",
        "Oops",
        "verifier backtracking bug",
    ]


def _report(tmp_path, dmesg, pytest_status=0):
    from vmtest import GuestRun, report

    (tmp_path / "host-start").write_text("100.0\n")
    result = {"kernel": "6.1.0-test", "uptime_s": 20.0, "guest_start": 130.0, "tests_s": 50.0,
              "pytest_status": pytest_status, "plans": []}
    return report(GuestRun(pytest_status, 90.0, result, dmesg), tmp_path)


def test_a_splat_fails_a_run_whose_tests_passed(tmp_path, capsys):
    assert _report(tmp_path, CLEAN_BOOT) == 0
    assert _report(tmp_path, CLEAN_BOOT + SPLAT) == 1
    out = capsys.readouterr().out
    assert "---- guest dmesg ----" in out and "FAIL: the guest kernel logged 5 warning line(s)" in out


def test_failed_tests_fail_the_run_and_dump_dmesg(tmp_path, capsys):
    assert _report(tmp_path, CLEAN_BOOT, pytest_status=1) == 1
    out = capsys.readouterr().out
    assert "EXT4-fs (vda): mounted filesystem" in out and "pytest exit status 1" in out


def test_a_guest_that_left_nothing_fails(tmp_path):
    from vmtest import GuestRun, report

    (tmp_path / "host-start").write_text("100.0\n")
    assert report(GuestRun(1, 5.0, None, None), tmp_path) == 1


def test_a_stalled_guest_fails_and_shows_its_stall_report(tmp_path, capsys):
    (tmp_path / "stall.txt").write_text("busiest tasks:\ntid 412 python3 state R cpu 1 ticks 9000\n")
    assert _report(tmp_path, CLEAN_BOOT, pytest_status=-6) == 1
    out = capsys.readouterr().out
    assert "tid 412 python3 state R" in out and "the guest stopped making progress" in out


def test_stall_watchdog_reports_and_aborts_a_silent_pytest(tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys

    import vmtest

    reports = []
    monkeypatch.setattr(vmtest, "_report_stall_on_console", lambda: ["tid 1 init"])
    monkeypatch.setattr(vmtest, "_save_stall_report", lambda workdir, lines: reports.append((workdir, lines)))
    real_sleep = vmtest.time.sleep
    monkeypatch.setattr(vmtest.time, "sleep", lambda s: real_sleep(0.2))
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(os.devnull if path == "/dev/kmsg" else path,
                                                                          *a, **k))
    silent = subprocess.Popen([sys.executable, "-c", "print('started', flush=True); import time; time.sleep(60)"],
                              stdout=subprocess.PIPE)
    log = tmp_path / "pytest.log"
    try:
        with open(log, "wb") as sink:
            output = vmtest._Output(silent.stdout, sink)
            copier = vmtest.threading.Thread(target=output.copy, daemon=True)
            copier.start()
            # in a thread of its own, as vmtest runs it: it raises its thread to
            # SCHED_FIFO, which on this thread would have made every later test
            # (and all it starts: dockerd, tracers) real-time
            watchdog = vmtest.threading.Thread(target=vmtest._watch_for_stall, args=(output, silent, tmp_path, 1.0))
            watchdog.start()
            watchdog.join(timeout=30)
            assert not watchdog.is_alive()
            assert silent.wait(timeout=10) == -signal.SIGABRT
            copier.join(timeout=10)
    finally:
        silent.kill()
    assert reports == [(tmp_path, ["tid 1 init"])]
    assert log.read_bytes() == b"started\n"
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_wedged_guest_vcpus_are_named_from_the_monitor(tmp_path):
    """A fake QEMU monitor answers `info registers -a` for two vCPUs; the
    report names each instruction pointer by the guest's saved symbols."""
    import socket
    import threading

    from vmtest import vcpu_report

    (tmp_path / "guest-kallsyms").write_text(
        "ffffffff86a59000 native_safe_halt\nffffffff86a5a000 text_poke_bp_batch\n")
    answer = (
        "QEMU 8.2.2 monitor - type 'help' for more information\n(qemu) info registers -a\n\nCPU#0\n"
        "RAX=0000000000000000\nRIP=ffffffff86a592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\nCPU#1\n"
        "RIP=00007f70b7242d41 RFL=00000202 [-------] CPL=3 II=0 A20=1 SMM=0 HLT=0\n(qemu) "
    ).encode()
    path = str(tmp_path / "mon.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def serve():
        for _ in range(3):
            conn, _ = server.accept()
            with conn:
                conn.recv(100)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    lines = vcpu_report(tmp_path / "mon.sock", tmp_path, samples=2)
    server.close()
    assert lines[:2] == ["vCPU0 native_safe_halt+0x2eb CPL=0; vCPU1 0x7f70b7242d41 CPL=3"] * 2
    # then the code bytes around vCPU0's address (this fake has none to give)
    assert lines[2] == "code from native_safe_halt+0x2e3: (no memory in the monitor's answer)"


def test_monitor_missing_is_said_not_raised(tmp_path):
    from vmtest import vcpu_report

    (line,) = vcpu_report(tmp_path / "none.sock", tmp_path, samples=1)
    assert line.startswith("(QEMU monitor: ")


# -- the panic test's host side (tests/vm/panic_record.py) -------------------

def _panic_workdir(tmp_path, logged, traced, panic_s=10.0, flush_s=0.5, host=True):
    """A shared directory as the guest leaves it: attempts.log (pid, time
    in seconds) and a truncated trace holding the attempts of pids traced."""
    import pyarrow as pa

    from kerntrace.tracers.engine.tracedir import TraceWriter
    from kerntrace.tracers.ip6mr import _host_table

    lines = [f"start 0 flush_s {flush_s:g}"] + [f"attempt {pid} {int(t * 1e9)} 0" for pid, t in logged]
    lines.append(f"panic {int(panic_s * 1e9)}")
    (tmp_path / "attempts.log").write_text("\n".join(lines) + "\n")
    writer = TraceWriter(str(tmp_path / "trace"))
    writer.start({"tool": "ip6mr", "options": {}, "clock": {"offset_ns": 0, "start_ns": 1}})
    if host:
        writer.append("host_facts", _host_table({"release": "6.1.0-57-amd64", "version": "", "distro": "",
                                                 "ipv6_loaded": True, "ipv6_disabled_at_boot": False,
                                                 "all_disable_ipv6": 0, "mroute_multiple_tables": "y",
                                                 "config_source": "", "possible_cpus": 2, "nokmem": False,
                                                 "kernel_hooks": True}))
    rows = [(pid, int(t * 1e9) - 1000) for pid, t in logged if pid in traced]
    n = len(rows)
    ints = {name: pa.array([0] * n, pa.int64()) for name in
            ("latency_ns", "cgroup_id", "flags", "ret", "tid", "ppid", "netns", "old_netns", "err", "fd", "child_pid")}
    writer.append("netns_event", pa.table({
        "ts_ns": pa.array([t for _p, t in rows], pa.uint64()), **ints,
        "kind": pa.array(["attempt"] * n, pa.string()).dictionary_encode(),
        "method": pa.array(["unshare"] * n, pa.string()).dictionary_encode(),
        "pid": pa.array([p for p, _t in rows], pa.uint32()),
        "comm": pa.array(["python"] * n, pa.string()).dictionary_encode()}))
    writer.flush()   # no finish(): the machine went down
    writer.wait()
    return tmp_path


def test_panic_check_passes_when_every_due_attempt_is_traced(tmp_path):
    import panic_record

    logged = [(1000 + i, 0.25 + i * 0.2) for i in range(48)]       # the last at 9.65 s, panic at 10 s
    traced = {pid for pid, t in logged if t < 8.0}      # the newest 2 s (flush 0.5 s + 1.5 s to write) are lost
    outcome = panic_record.check(_panic_workdir(tmp_path, logged, traced))
    assert outcome.failures == []
    assert (outcome.made, outcome.due, outcome.found, outcome.missing_due) == (48, 39, 39, [])
    assert "48 attempts made, 39 of them more than 2 s" in outcome.lines()[0]
    assert outcome.newest_found_s == pytest.approx(2.15)


def test_panic_check_fails_on_a_due_attempt_missing(tmp_path):
    import panic_record

    logged = [(1000 + i, 0.25 + i * 0.2) for i in range(48)]
    traced = {pid for pid, _t in logged} - {1010}
    outcome = panic_record.check(_panic_workdir(tmp_path, logged, traced))
    assert outcome.missing_due == [1010]
    assert any("1 of 39 attempts made more than 2 s before the panic are not in the trace" in f
               for f in outcome.failures)


def test_panic_check_fails_without_host_facts_or_enough_attempts(tmp_path):
    import panic_record

    logged = [(1000 + i, 0.2 + i * 0.2) for i in range(10)]
    outcome = panic_record.check(_panic_workdir(tmp_path, logged, {p for p, _t in logged}, host=False))
    assert any("too few" in f for f in outcome.failures)
    assert any("no host facts" in f for f in outcome.failures)


def test_panic_report_needs_the_sysrq_panic_and_no_warning_before_it(tmp_path, capsys):
    from vmtest import PanicRun, SYSRQ_PANIC, report_panic

    logged = [(1000 + i, 0.2 + i * 0.2) for i in range(48)]
    workdir = _panic_workdir(tmp_path, logged, {p for p, _t in logged})
    panic = [f"[  90.1] {SYSRQ_PANIC}\n", "[  90.2] Call Trace:\n"]   # the panic's own trace is expected
    assert report_panic(PanicRun(255, 100.0, ["[   1.0] booting\n"] + panic), workdir) == 0
    assert report_panic(PanicRun(255, 100.0, ["[   1.0] booting\n"]), workdir) == 1
    assert report_panic(PanicRun(255, 100.0, SPLAT.splitlines(keepends=True) + panic), workdir) == 1
    out = capsys.readouterr().out
    assert "FAIL: the guest did not panic by sysrq" in out and "warning line(s) before the panic" in out


def test_panic_check_says_when_nstrace_never_attached(tmp_path):
    import panic_record

    (tmp_path / "attempts.log").write_text("")
    outcome = panic_record.check(tmp_path)
    assert "no trace directory: nstrace never attached" in outcome.failures


def test_guest_command_fits_the_kernel_command_line(tmp_path):
    # vng carries it base64'd on the kernel command line; the pytest
    # arguments (the denylist's many --deselect) go in a file instead
    workdir = tmp_path / ("kerntrace-vmtest-" + "x" * 8)
    command = vmtest.guest_command(workdir, Path("/work/some/checkout"), 300.0)
    assert len(command) <= vmtest.GUEST_CMD_MAX
    with pytest.raises(ValueError, match="kernel command line"):
        vmtest.vng_command(Path("vng"), Path("bzImage"), tmp_path, tmp_path, "x" * (vmtest.GUEST_CMD_MAX + 1), 2, "2G")


def test_guest_reads_the_hosts_pytest_arguments(tmp_path):
    (tmp_path / vmtest.PYTEST_ARGS).write_text('["--deselect", "tests/kernel/test_image.py"]')
    assert vmtest._guest_pytest_args(tmp_path, ["-x"]) == ["--deselect", "tests/kernel/test_image.py"]
    assert vmtest._guest_pytest_args(tmp_path / "none", ["-x"]) == ["-x"]
