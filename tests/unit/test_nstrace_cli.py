"""nstrace ip6mr/netns/postmortem command lines without root: bad input is
one line and exit 2; the hook report names what was used and what not."""
from __future__ import annotations

from kerntrace.tracers.cli import nstrace_main
from kerntrace.tracers.engine import HookChoice
from kerntrace.tracers.ip6mr import _count_cpu_list, describe_hooks, errno_name


def test_bad_pid_and_conflicting_options(capsys):
    assert nstrace_main(["ip6mr", "-p", "999999999"]) == 2
    assert capsys.readouterr().err.strip() == "nstrace: error: no such process: 999999999"
    assert nstrace_main(["ip6mr", "-p", "1", "-c", "true"]) == 2
    assert "either -p PID or -c COMMAND" in capsys.readouterr().err
    assert nstrace_main(["ip6mr", "-d", "-1"]) == 2
    assert nstrace_main(["postmortem"]) == 2


def test_describe_hooks_names_used_and_missing():
    choices = [
        HookChoice("unshare", "ns_unshare_enter", "tracepoint", "syscalls/sys_enter_unshare"),
        HookChoice("task_newtask", "ns_newtask", "tp_btf", "task_newtask"),
        HookChoice("copy_net_ns", None, "none", "", [("ns_fentry_copy_net_ns", "fentry program load refused: EPERM"),
                                                      ("ns_kprobe_copy_net_ns", "no kprobe PMU")]),
        HookChoice("ip6mr_sk_done", None, "none", "", [("ns_fentry_ip6mr_sk_done", "fentry program load refused: EPERM"),
                                                        ("ns_kprobe_ip6mr_sk_done", "no kprobe PMU")]),
        HookChoice("clone3", None, "none", "", [("ns_clone3_enter", "no tracepoint syscalls:sys_enter_clone3")]),
    ]
    lines = describe_hooks(choices)
    assert lines[0] == "hooks: tracepoint syscalls/sys_enter_unshare, tp_btf task_newtask"
    assert lines[1] == ("kernel functions (copy_net_ns, ip6mr_sk_done): unavailable here (fentry program load "
                        "refused: EPERM; no kprobe PMU); inferring the path from the syscall tracepoints")
    assert lines[2] == "clone3: unavailable (no tracepoint syscalls:sys_enter_clone3)"


def test_small_helpers():
    assert errno_name(1) == "EPERM" and errno_name(0) is None and errno_name(12) == "ENOMEM"
    assert _count_cpu_list("0-1\n") == 2 and _count_cpu_list("0-3,8,10-11") == 7 and _count_cpu_list("x") == 0
