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


def test_guest_reads_the_hosts_passes(tmp_path):
    passes = vmtest.guest_passes(["libbpf", "bcc"])
    vmtest.write_passes(tmp_path, passes, ["--deselect", "tests/kernel/test_image.py"])
    got = vmtest._guest_passes(tmp_path, ["-x"])
    assert [p["name"] for p in got] == ["libbpf", "bcc"]
    assert all(p["pytest_args"] == ["--deselect", "tests/kernel/test_image.py"] for p in got)
    assert got[1]["env"] == {"KERNTRACE_BACKEND": "bcc"} and got[1]["stall_s"] == vmtest.BCC_STALL_S
    # run by hand in a guest without the host's file: the libbpf pass, this command line's arguments
    (alone,) = vmtest._guest_passes(tmp_path / "none", ["-x"])
    assert alone["name"] == "libbpf" and alone["tests"] == list(vmtest.GUEST_TESTS) and alone["pytest_args"] == ["-x"]


# -- the passes: the kernel tests once per backend -----------------------------


def test_three_passes_by_default_in_order():
    passes = vmtest.guest_passes("libbpf,btf,bcc".split(","))
    assert [p.name for p in passes] == ["libbpf", "btf", "bcc"]
    libbpf, btf, bcc = passes
    assert libbpf.tests == vmtest.GUEST_TESTS and libbpf.env == {}
    assert btf.tests == vmtest.BACKEND_TESTS
    assert btf.env == {"KERNTRACE_BTF": "{guest_btf}", "KERNTRACE_TRANSPORT": "perf"}
    assert "transport perf buffer" in btf.ready_words and "backend libbpf (BTF {guest_btf})" in btf.ready_words
    assert bcc.env == {"KERNTRACE_BACKEND": "bcc"} and bcc.tests == tuple(vmtest.BCC_SUBSET)
    assert vmtest.guest_passes(["bcc", "libbpf"])[0].name == "libbpf"     # always in this order
    (full,) = vmtest.guest_passes(["bcc"], bcc_full=True)
    assert full.tests == vmtest.BACKEND_TESTS and "subset" not in full.what
    with pytest.raises(SystemExit, match="no pass ebpf"):
        vmtest.guest_passes(["libbpf", "ebpf"])


def test_full_from_make_and_passes_from_the_command_line(monkeypatch):
    seen = {}
    monkeypatch.setattr(vmtest, "host_main", lambda args: seen.setdefault("args", args) and 0)
    monkeypatch.setenv("VMTEST_FULL", "1")
    vmtest.main(["--passes", "bcc"])
    assert seen["args"].bcc_full and seen["args"].passes == "bcc"
    seen.clear()
    monkeypatch.delenv("VMTEST_FULL")
    vmtest.main([])
    assert not seen["args"].bcc_full and seen["args"].passes == "libbpf,btf,bcc"


def test_makefile_vmtest_hands_on_vmtest_full():
    makefile = (Path(vmtest.__file__).resolve().parents[2] / "Makefile").read_text()
    rule = makefile.split("\nvmtest:", 1)[1].split("\n\n", 1)[0]
    assert "--bcc-full" in rule and "VMTEST_FULL" in rule


def test_bcc_pass_needs_bpfcc_and_the_guest_kernels_headers():
    assert vmtest.bcc_packages("6.1.0-57-amd64") == ("python3-bpfcc", "linux-headers-6.1.0-57-amd64")


def test_bcc_subset_names_collected_tests_each_with_a_reason():
    """A test renamed or removed must not silently drop out of the subset."""
    import subprocess
    import sys

    tree = Path(vmtest.__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *vmtest.BACKEND_TESTS], cwd=tree, capture_output=True, text=True, timeout=120)
    collected = set(done.stdout.split())
    assert set(vmtest.BCC_SUBSET) <= collected, set(vmtest.BCC_SUBSET) - collected
    assert all(len(why) > 10 for why in vmtest.BCC_SUBSET.values())
    assert all(node.split("::")[0] in vmtest.BACKEND_TESTS for node in vmtest.BCC_SUBSET)


SMALL_TESTS = """
import os
import pytest

def test_env():
    assert os.environ["KERNTRACE_STRICT"] == "1"
    print("BTF", os.environ.get("KERNTRACE_BTF"), "BACKEND", os.environ.get("KERNTRACE_BACKEND"))

def test_fails_on_bcc():
    assert os.environ.get("KERNTRACE_BACKEND") != "bcc"

@pytest.mark.skipif(os.environ.get("KERNTRACE_BTF") is None, reason="no btf here")
def test_btf_file_is_the_copy():
    with open(os.environ["KERNTRACE_BTF"]) as f:
        assert f.read() == "guest btf"
"""


def test_passes_run_in_turn_each_in_its_environment(tmp_path):
    """The guest's loop, on a small test file: each pass's variables (the
    copied BTF file's path filled in) reach its tests, its junit file counts
    them, and a failing pass fails the run while the others' counts stand."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "test_small.py").write_text(SMALL_TESTS)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / vmtest.GUEST_BTF).write_text("guest btf")
    passes = [
        vmtest.GuestPass("libbpf", ("test_small.py::test_env", "test_small.py::test_fails_on_bcc"), {}, "plain"),
        vmtest.GuestPass("btf", ("test_small.py",), {"KERNTRACE_BTF": "{guest_btf}"}, "btf file"),
        vmtest.GuestPass("bcc", ("test_small.py::test_env", "test_small.py::test_fails_on_bcc"),
                         {"KERNTRACE_BACKEND": "bcc"}, "bcc", stall_s=60.0),
    ]
    vmtest.write_passes(workdir, passes, ["-rA"])
    with open(workdir / "pytest.log", "w") as log:
        results = vmtest.run_passes(workdir, str(tree), vmtest._guest_passes(workdir, []), 60.0,
                                    {"KERNTRACE_STRICT": "1", "PATH": "/usr/bin:/bin"}, log, tmp_path / "cores")
    assert [(r["name"], r["status"]) for r in results] == [("libbpf", 0), ("btf", 0), ("bcc", 1)]
    text = (workdir / "pytest.log").read_text()
    assert f"BTF {workdir / vmtest.GUEST_BTF} BACKEND None" in text and "BTF None BACKEND bcc" in text
    assert "==== vmtest pass bcc: bcc; KERNTRACE_BACKEND=bcc" in text
    btf = vmtest.junit_outcome(vmtest.junit_file(workdir, "btf"))
    assert (btf.passed, btf.failed, btf.skipped) == (3, [], [])
    libbpf = vmtest.junit_outcome(vmtest.junit_file(workdir, "libbpf"))
    assert (libbpf.passed, libbpf.failed) == (2, [])
    bcc = vmtest.junit_outcome(vmtest.junit_file(workdir, "bcc"))
    assert (bcc.passed, bcc.failed) == (1, ["test_small.py::test_fails_on_bcc"])


def _passes_report(tmp_path, passes, junit):
    from vmtest import GuestRun, report

    (tmp_path / "host-start").write_text("100.0\n")
    for name, xml in junit.items():
        vmtest.junit_file(tmp_path, name).write_text(xml)
    result = {"kernel": "6.1.0-test", "uptime_s": 20.0, "guest_start": 130.0, "tests_s": 50.0,
              "pytest_status": next((p["status"] for p in passes if p["status"]), 0), "plans": [],
              "passes": passes}
    return report(GuestRun(result["pytest_status"], 90.0, result, CLEAN_BOOT), tmp_path)


def _junit(passed=0, failed=(), skipped=()):
    cases = [f'<testcase classname="tests.kernel.test_ip6mr" name="test_p{i}" time="1"/>' for i in range(passed)]
    cases += [f'<testcase classname="tests.kernel.test_odirect" name="{n}" time="1"><failure message="x"/></testcase>'
              for n in failed]
    cases += [f'<testcase classname="tests.kernel.test_odirect" name="{n}" time="0">'
              f'<skipped type="pytest.skip" message="{why}"/></testcase>' for n, why in skipped]
    return f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>'


def _pass(name, status=0, ready_ok=True):
    return {"name": name, "status": status, "tests_s": 60.0, "ready_ok": ready_ok, "ready_text": "hooks: x"}


def test_report_prints_passed_per_backend(tmp_path, capsys):
    junit = {"libbpf": _junit(120), "btf": _junit(41),
             "bcc": _junit(8, skipped=[("test_hooks", "the bcc backend cannot run this: BCC has no tp_btf")])}
    assert _passes_report(tmp_path, [_pass("libbpf"), _pass("btf"), _pass("bcc")], junit) == 0
    out = capsys.readouterr().out
    assert "vmtest: passed per backend: libbpf 120, btf 41, bcc 8\n" in out
    assert "pass bcc: 8 passed, 0 failed, 1 skipped in 60 s" in out
    assert "pass bcc: skipped tests/kernel/test_odirect.py::test_hooks: the bcc backend cannot run this" in out


def test_a_failing_pass_fails_the_run_and_is_named(tmp_path, capsys):
    junit = {"libbpf": _junit(120), "btf": _junit(40, failed=["test_burst"]), "bcc": _junit(9)}
    assert _passes_report(tmp_path, [_pass("libbpf"), _pass("btf", 1), _pass("bcc")], junit) == 1
    out = capsys.readouterr().out
    assert "pass btf: FAILED tests/kernel/test_odirect.py::test_burst" in out
    assert "FAIL: pass btf: tests failed in the guest (pytest exit status 1)" in out
    assert "passed per backend: libbpf 120, btf 40, bcc 9" in out


def test_a_pass_on_the_wrong_backend_or_without_results_fails(tmp_path, capsys):
    junit = {"libbpf": _junit(120), "btf": _junit(41)}   # bcc's pytest died before writing its file
    assert _passes_report(tmp_path, [_pass("libbpf"), _pass("btf", ready_ok=False), _pass("bcc", -11)], junit) == 1
    out = capsys.readouterr().out
    assert "FAIL: pass btf: its ready line is not the backend it is meant to run on: hooks: x" in out
    assert "FAIL: pass bcc: pytest left no results (exit status -11)" in out
    assert "passed per backend: libbpf 120, btf 41, bcc 0" in out
