"""nstrace postmortem on logs written from the known facts (the CentOS 7.5
blog trace, the syzkaller report quoted by 15e668070a64), logs without the
signature, the formats it reads, bad input, and property tests that no input
crashes the parser or grows its memory."""
from __future__ import annotations

import gzip
import io
import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerntrace.analysis.postmortem import (
    MAX_OOPSES,
    MAX_SAMPLES,
    findings,
    parse_lines,
    parse_stream,
    strip_prefix,
)
from kerntrace.tracers.cli import nstrace_main
from runs import file_modes  # tests/runs.py

# CentOS 7.5, 3.10.0-862.el7, as in the "kmem limit in k8s" blog (addresses made up).
CENTOS_CRASH = """\
[ 8523.118822] SLUB: Unable to allocate memory on node -1 (gfp=0xd0)
[ 8523.118826]   cache: sock_inode_cache(5:0c7f2b3a), object size: 640, buffer size: 640, default order: 2, min order: 0
[ 8523.118830] socket: no more sockets
[ 8523.118832] IPv6: Failed to initialize the ICMP6 control socket (err -23)
[ 8523.118901] BUG: unable to handle kernel NULL pointer dereference at 0000000000000020
[ 8523.118950] IP: [<ffffffff8169e0b0>] ip6mr_sk_done+0x60/0xf0
[ 8523.118990] PGD 0
[ 8523.119010] Oops: 0000 [#1] SMP
[ 8523.119200] CPU: 7 PID: 31337 Comm: runc:[1:CHILD] Not tainted 3.10.0-862.el7.x86_64 #1
[ 8523.119300] RIP: 0010:[<ffffffff8169e0b0>]  [<ffffffff8169e0b0>] ip6mr_sk_done+0x60/0xf0
[ 8523.119500] Call Trace:
[ 8523.119510]  [<ffffffff8168a1d2>] rawv6_close+0x32/0x40
[ 8523.119520]  [<ffffffff8154e5e1>] inet_release+0x41/0x80
[ 8523.119530]  [<ffffffff815fbb8d>] inet6_release+0x2d/0x40
[ 8523.119540]  [<ffffffff814cd3a9>] sock_release+0x19/0x70
[ 8523.119550]  [<ffffffff814cd42e>] sk_release_kernel+0x2e/0x40
[ 8523.119560]  [<ffffffff81608d84>] icmpv6_sk_init+0x114/0x150
[ 8523.119570]  [<ffffffff814e7f24>] ops_init+0x44/0x150
[ 8523.119580]  [<ffffffff814e80d3>] setup_net+0xa3/0x160
[ 8523.119590]  [<ffffffff814e8875>] copy_net_ns+0xb5/0x180
[ 8523.119600]  [<ffffffff810b9e09>] create_new_namespaces+0xf9/0x180
[ 8523.119610]  [<ffffffff810ba04a>] unshare_nsproxy_namespaces+0x5a/0xc0
[ 8523.119620]  [<ffffffff8108a0c3>] SyS_unshare+0x173/0x2e0
[ 8523.119630]  [<ffffffff816b89fd>] system_call_fastpath+0x16/0x1b
[ 8523.119800] RIP  [<ffffffff8169e0b0>] ip6mr_sk_done+0x60/0xf0
[ 8523.119900] Kernel panic - not syncing: Fatal exception
"""

# The syzkaller report quoted by 15e668070a64 (4.10, KASAN), modern RIP format with source lines.
SYZKALLER = """\
kasan: GPF could be caused by NULL-ptr deref or user memory access
general protection fault: 0000 [#1] SMP KASAN
CPU: 0 PID: 14446 Comm: syz-executor6 Not tainted 4.10.0+ #82
RIP: 0010:ip6mr_sk_done+0x15a/0x3d0 net/ipv6/ip6mr.c:1618
RSP: 0018:ffff88001f6ef418 EFLAGS: 00010202
RDI: 0000000000000020 RBP: ffff88001f6ef508 R08: fffffbfff0dcc5d8
Call Trace:
 rawv6_close+0x4c/0x80 net/ipv6/raw.c:1217
 inet_release+0xed/0x1c0 net/ipv4/af_inet.c:425
 inet6_release+0x50/0x70 net/ipv6/af_inet6.c:432
 sock_release+0x8d/0x1e0 net/socket.c:597
 icmpv6_sk_exit+0x1b7/0x3d0 net/ipv6/icmp.c:969
 ops_init+0x10a/0x530 net/core/net_namespace.c:115
 setup_net+0x2ed/0x690 net/core/net_namespace.c:291
 copy_net_ns+0x26c/0x530 net/core/net_namespace.c:396
 create_new_namespaces+0x409/0x860 kernel/nsproxy.c:106
 unshare_nsproxy_namespaces+0xae/0x1e0 kernel/nsproxy.c:205
 SYSC_unshare kernel/fork.c:2281 [inline]
 SyS_unshare+0x64e/0xfc0 kernel/fork.c:2231
 entry_SYSCALL_64_fastpath+0x1f/0xc2
---[ end trace e88ab3e1b55b8bf3 ]---
"""

OTHER_OOPS = """\
[  101.000001] BUG: kernel NULL pointer dereference, address: 0000000000000008
[  101.000002] #PF: supervisor read access in kernel mode
[  101.000003] Oops: 0000 [#1] PREEMPT SMP NOPTI
[  101.000004] CPU: 1 PID: 4242 Comm: kworker/1:2 Tainted: G           O      6.1.0-28-amd64 #1  Debian 6.1.119-1
[  101.000005] RIP: 0010:my_driver_poll+0x1c/0x90 [mydrv]
[  101.000006] Call Trace:
[  101.000007]  <TASK>
[  101.000008]  process_one_work+0x1c7/0x380
[  101.000009]  worker_thread+0x4d/0x380
[  101.000010]  kthread+0xd7/0x100
[  101.000011]  </TASK>
[  101.000012] ---[ end trace 0000000000000000 ]---
[  102.000000] Memory cgroup out of memory: Killed process 5151 (java) total-vm:1234kB, anon-rss:1000kB
[  103.000000] Out of memory: Killed process 6161 (stress) total-vm:99kB
[  140.000000] INFO: task jbd2/vda1-8:321 blocked for more than 120 seconds.
[  140.000001] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
"""


def ids(found):
    return [f.id for f in found]


def test_centos_crash_is_recognized_with_its_evidence():
    s = parse_lines(CENTOS_CRASH.splitlines())
    found = findings(s)
    assert ids(found) == ["ip6mr-sk-done-oops", "kernel-panic"]
    f = found[0]
    assert f.severity == "critical"
    assert "at 0000000000000020" in f.summary and "runc:[1:CHILD]" in f.summary
    assert "matches the known crash" in f.summary
    texts = [r["text"] for r in f.evidence]
    assert texts[0] == "BUG: unable to handle kernel NULL pointer dereference at 0000000000000020"
    assert any("rawv6_close+0x32/0x40" in t for t in texts)
    assert any("setup_net+0xa3/0x160" in t for t in texts) and any("copy_net_ns" in t for t in texts)
    before = [r["text"] for r in f.evidence if r["what"] == "before"]
    assert before[-2:] == ["socket: no more sockets", "IPv6: Failed to initialize the ICMP6 control socket (err -23)"]
    assert any(t.startswith("SLUB: Unable to allocate memory") for t in before)
    (oops,) = s.oopses
    assert oops.rip == "ip6mr_sk_done" and oops.pid == 31337 and oops.first_line == 5
    assert s.precursors == {"slub-alloc": 1, "sock-inode-cache": 1, "socket-alloc": 1, "icmp6-ctl-socket": 1}


def test_syzkaller_gpf_is_recognized():
    found = findings(parse_lines(SYZKALLER.splitlines()))
    assert ids(found) == ["ip6mr-sk-done-oops"]
    assert "setup_net" in found[0].summary and "syz-executor6" in found[0].summary


def test_log_without_the_signature_is_not_recognized():
    s = parse_lines(OTHER_OOPS.splitlines())
    found = findings(s)
    assert "ip6mr-sk-done-oops" not in ids(found)
    assert ids(found) == ["kernel-oops", "oom-kills", "hung-tasks"]
    oops = found[0]
    assert oops.evidence[0]["rip"] == "my_driver_poll" and oops.evidence[0]["comm"] == "kworker/1:2"
    assert oops.evidence[0]["stack"].startswith("process_one_work <- worker_thread")
    assert s.oom_kills == 2 and [r["pid"] for r in s.oom_samples] == [5151, 6161]
    assert [r["scope"] for r in s.oom_samples] == ["memcg", "system"]
    assert s.hung_samples == [{"comm": "jbd2/vda1-8", "pid": 321, "blocked_s": 120}]


def test_precursors_alone_are_not_the_crash():
    log = ["socket: no more sockets", "IPv6: Failed to initialize the ICMP6 control socket (err -12)",
           "some driver: ip6mr_sk_done is mentioned here but nothing crashed"]
    found = findings(parse_lines(log))
    assert ids(found) == ["allocation-failures"]


def test_an_oops_elsewhere_with_ip6mr_in_the_stack_is_not_the_signature():
    log = ["BUG: kernel NULL pointer dereference, address: 0000000000000000",
           "RIP: 0010:some_other_fn+0x1/0x2", "Call Trace:", " ip6mr_sk_done+0x60/0xf0", " rawv6_close+0x3/0x4"]
    assert ids(findings(parse_lines(log))) == ["kernel-oops"]


@pytest.mark.parametrize("prefix", [
    "[ 8523.118901] ", "<1>[ 8523.118901] ", "[Fri Nov 27 00:12:01 2026] ",
    "Nov 27 00:12:01 node7 kernel: ", "Nov 27 00:12:01 node7 kernel: [ 8523.118901] ",
    "2026-11-27T00:12:01.123456+00:00 node7 kernel: ", "",
])
def test_formats(prefix):
    lines = [prefix + ln.split("] ", 1)[1] if "] " in ln else ln for ln in CENTOS_CRASH.splitlines()]
    assert ids(findings(parse_lines(lines)))[0] == "ip6mr-sk-done-oops"


def test_strip_prefix():
    assert strip_prefix("<4>[   12.5] IPv6: x") == "IPv6: x"
    assert strip_prefix("Nov  7 01:02:03 host kernel: [ 1.0] y") == "y"


def journal_export(messages, binary_index=None):
    out = io.BytesIO()
    for i, msg in enumerate(messages):
        out.write(b"__CURSOR=s=abc;i=%d\n__REALTIME_TIMESTAMP=1700000000%06d\n_TRANSPORT=kernel\n" % (i, i))
        if i == binary_index:
            data = msg.encode()
            out.write(b"MESSAGE\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            out.write(b"MESSAGE=" + msg.encode() + b"\n")
        out.write(b"PRIORITY=2\n\n")
    return out.getvalue()


def test_journal_export_with_a_binary_field():
    msgs = [ln.split("] ", 1)[1] for ln in CENTOS_CRASH.splitlines()]
    s = parse_stream(io.BytesIO(journal_export(msgs, binary_index=4)))
    assert s.format == "journal export"
    assert ids(findings(s))[0] == "ip6mr-sk-done-oops"
    assert s.lines == len(msgs)   # only MESSAGE fields are read


def test_binary_and_long_lines_are_counted_not_parsed():
    data = b"\x00\x01\x02garbage\xff\xfe\n" * 5 + b"A" * 100_000 + b"\n" + CENTOS_CRASH.encode()
    s = parse_stream(io.BytesIO(data))
    assert s.binary_lines == 5 and s.long_lines == 1
    assert ids(findings(s))[0] == "ip6mr-sk-done-oops"


def test_memory_stays_bounded_on_a_huge_log():
    # 40 oopses, 5000 OOM kills, 5000 precursors: kept samples are capped
    one = "BUG: kernel NULL pointer dereference, address: 0000000000000000\nRIP: 0010:f+0x1/0x2\n---[ end trace 1 ]---\n"
    text = one * 40 + "Out of memory: Killed process 1 (x)\n" * 5000 + "socket: no more sockets\n" * 5000
    s = parse_stream(io.BytesIO(text.encode()))
    assert len(s.oopses) == MAX_OOPSES and s.oopses_dropped == 40 - MAX_OOPSES
    assert s.oom_kills == 5000 and len(s.oom_samples) == MAX_SAMPLES
    assert s.precursors["socket-alloc"] == 5000 and len(s.precursor_samples) <= MAX_SAMPLES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data):
    s = parse_stream(io.BytesIO(data))
    findings(s)
    json.dumps(s.as_dict())


LOGGY = st.sampled_from([
    "BUG: unable to handle kernel NULL pointer dereference at ", "RIP: 0010:", "IP: [<ffff>] ", "Call Trace:",
    "ip6mr_sk_done+0x60/0xf0", "rawv6_close+0x1/0x2", "setup_net+", "---[ end trace", "Kernel panic - not syncing: ",
    "Out of memory: Killed process ", "INFO: task ", " blocked for more than ", "[ 1.0] ", "<4>", "(", ")", ":",
    "0x", "\n", " ", "general protection fault", "Oops: ", "kernel BUG at x.c:1!", "MESSAGE=", "__CURSOR=",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LOGGY, st.text(max_size=40)), max_size=80))
def test_random_log_like_text_never_crashes(parts):
    text = "".join(parts)
    s = parse_lines(text.splitlines())
    findings(s)
    s2 = parse_stream(io.BytesIO(text.encode("utf-8", "surrogatepass")))
    findings(s2)


# -- the command ----------------------------------------------------------------

def test_cli_recognizes_and_reports(tmp_path, capsys):
    path = tmp_path / "vmcore-dmesg.txt"
    path.write_text(CENTOS_CRASH)
    assert nstrace_main(["postmortem", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[CRITICAL] ip6mr-sk-done-oops" in out and "1 oops reports, 1 panics" in out
    assert nstrace_main(["postmortem", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["id"] for f in doc["findings"]] == ["ip6mr-sk-done-oops", "kernel-panic"]
    assert doc["oopses"][0]["rip"] == "ip6mr_sk_done"


def test_cli_gzip(tmp_path, capsys):
    path = tmp_path / "dmesg.gz"
    with gzip.open(path, "wt") as f:
        f.write(SYZKALLER)
    assert nstrace_main(["postmortem", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["findings"][0]["id"] == "ip6mr-sk-done-oops"


def test_cli_clean_log_has_no_findings(tmp_path, capsys):
    path = tmp_path / "dmesg.txt"
    path.write_text("[    0.000000] Linux version 6.1.0\n[    1.0] eth0: link up\n")
    assert nstrace_main(["postmortem", str(path)]) == 0
    assert "Findings: none." in capsys.readouterr().out


def test_cli_bad_files(tmp_path, capsys):
    assert nstrace_main(["postmortem", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nstrace: error: {tmp_path / 'missing.txt'}: no such file"]
    assert nstrace_main(["postmortem", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    elf = tmp_path / "vmcore"
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 100)
    assert nstrace_main(["postmortem", str(elf)]) == 2
    assert "vmcore-dmesg" in capsys.readouterr().err
    if os.geteuid() != 0:
        locked = tmp_path / "locked.txt"
        locked.write_text("x")
        locked.chmod(0)
        assert nstrace_main(["postmortem", str(locked)]) == 2
        assert "cannot read" in capsys.readouterr().err
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    assert nstrace_main(["postmortem", str(binary)]) == 0
    out = capsys.readouterr().out
    assert "binary lines skipped" in out


# -- -o DIR and report -----------------------------------------------------------

@pytest.mark.parametrize("text", [CENTOS_CRASH + OTHER_OOPS, SYZKALLER, "[    1.0] eth0: link up\n"])
def test_trace_dir_replays_to_the_live_json_and_text(tmp_path, capsys, text):
    from kerntrace.tracers.engine.replay import replay_trace
    from kerntrace.tracers.engine.tracedir import TraceReader
    from kerntrace.tracers.postmortem import PostmortemLog

    log = tmp_path / "dmesg.txt"
    log.write_text(text)
    trace = str(tmp_path / "trace")
    assert nstrace_main(["postmortem", "--json", "-o", trace, str(log)]) == 0
    live = json.loads(capsys.readouterr().out)
    assert file_modes(trace) == ({0o700}, {0o600})
    reader = TraceReader(trace)
    assert reader.complete and reader.summary == live and reader.meta["tool"] == "postmortem"
    logs = reader.table("postmortem_log").to_pylist()
    assert len(logs) == 1 and logs[0]["lines"] == live["lines"] and logs[0]["file"] == str(log)
    assert reader.table("postmortem_oops").num_rows == len(live["oopses"])
    tool = PostmortemLog.from_trace(reader.meta["options"])
    envelope, found = replay_trace(reader, tool)
    assert {k: envelope[k] for k in live} == live

    assert nstrace_main(["postmortem", "-o", trace, str(log)]) == 0
    text_out = capsys.readouterr().out
    tool = PostmortemLog.from_trace(TraceReader(trace).meta["options"])
    envelope, found = replay_trace(TraceReader(trace), tool)
    out = io.StringIO()
    tool.print_report(envelope, found, out)
    assert out.getvalue() == text_out


def test_samples_are_typed_records(tmp_path, capsys):
    from kerntrace.tracers.engine.tracedir import TraceReader

    log = tmp_path / "dmesg.txt"
    log.write_text(CENTOS_CRASH + OTHER_OOPS)
    trace = str(tmp_path / "trace")
    assert nstrace_main(["postmortem", "-o", trace, str(log)]) == 0
    capsys.readouterr()
    reader = TraceReader(trace)
    assert reader.table("postmortem_oom").to_pylist() == [
        {"pid": 5151, "comm": "java", "scope": "memcg"}, {"pid": 6161, "comm": "stress", "scope": "system"}]
    hung = reader.table("postmortem_hung").to_pylist()
    assert hung == [{"comm": "jbd2/vda1-8", "pid": 321, "blocked_s": 120}]
    oops = reader.table("postmortem_oops").to_pylist()[0]
    assert oops["rip"] == "ip6mr_sk_done" and oops["pid"] == 31337 and oops["frames"][0] == "rawv6_close"


def test_bad_output_fails_before_reading(tmp_path, capsys):
    log = tmp_path / "dmesg.txt"
    log.write_text(CENTOS_CRASH)
    assert nstrace_main(["postmortem", "-o", str(tmp_path / "no" / "trace"), str(log)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
