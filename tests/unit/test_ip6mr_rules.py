"""The ip6mr-crash-risk rule: kernel release -> fix status, kernel config
parsing, the running aggregates (NamespaceStats) fed with synthetic
records, and findings from them; the tool's replay of stored record
tables."""
from __future__ import annotations

import pyarrow as pa
import pytest

from kerntrace.analysis.ip6mr import (
    HostFacts,
    NamespaceStats,
    config_value,
    findings,
    kernel_fix_status,
    namespace_counts,
)


@pytest.mark.parametrize(
    "release, version, state",
    [
        ("6.18.44-fc-v595", "", "fixed"),                     # this host
        ("6.1.0-28-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1", "fixed"),
        ("5.18.0", "", "fixed"),
        ("5.15.0-91-generic", "", "fixed"),
        ("4.19.0-25-amd64", "", "fixed"),
        ("4.11.0", "", "fixed"),
        ("4.14.355", "", "fixed"),
        ("4.10.17", "", "unverified"),
        ("4.8.17", "", "at-risk"),
        ("4.9.0", "", "at-risk"),                              # before the backport
        ("4.9.13", "", "at-risk"),
        ("4.9.100", "", "unverified"),                         # backport date not verified
        ("4.9.337", "", "fixed"),                              # after the backport
        ("4.4.52", "", "at-risk"),
        ("4.4.302", "", "fixed"),
        ("4.4.0-210-generic", "", "unverified"),               # Ubuntu: sublevel hidden
        ("4.9.0-8-amd64", "#1 SMP Debian 4.9.130-2 (2018-10-27)", "unverified"),
        ("4.9.0-19-amd64", "#1 SMP Debian 4.9.320-2 (2022-06-30)", "fixed"),
        ("4.9.0-3-amd64", "#1 SMP Debian 4.9.30-2+deb9u5 (2017-09-19)", "unverified"),
        ("3.16.0-4-amd64", "", "at-risk"),
        ("3.10.0-862.el7.x86_64", "", "at-risk"),              # CentOS 7.5, the blog's crash
        ("3.10.0-693.21.1.el7.x86_64", "", "at-risk"),
        ("3.10.0-957.el7.x86_64", "", "unverified"),           # 7.6: not verified
        ("3.10.0-1062.el7.x86_64", "", "fixed"),               # 7.7 has the reorder
        ("3.10.0-1160.119.1.el7.x86_64", "", "fixed"),
        ("garbage", "", "unverified"),
    ],
)
def test_kernel_fix_status(release, version, state):
    assert kernel_fix_status(release, version).state == state


def test_path_gone_only_from_5_18():
    assert kernel_fix_status("5.18.0").path_gone
    assert kernel_fix_status("6.18.44-fc-v595").path_gone
    assert not kernel_fix_status("5.17.15").path_gone
    assert "6a17b961ec19" in kernel_fix_status("6.1.0").reason
    assert "15e668070a64" in kernel_fix_status("4.14.1").reason
    assert "05a59bc2f3c0" in kernel_fix_status("4.9.1").reason
    assert "7c5deeccc664" in kernel_fix_status("4.4.1").reason


def test_config_value():
    text = "# comment\nCONFIG_IPV6=y\nCONFIG_IPV6_MROUTE=y\n# CONFIG_IPV6_MROUTE_MULTIPLE_TABLES is not set\nCONFIG_X=\"a\"\n"
    assert config_value(text, "CONFIG_IPV6_MROUTE_MULTIPLE_TABLES") == "n"
    assert config_value(text, "CONFIG_IPV6") == "y"
    assert config_value(text, "CONFIG_X") == "a"
    assert config_value(text, "CONFIG_MISSING") is None
    assert config_value("CONFIG_IPV6_MROUTE_MULTIPLE_TABLES=y", "CONFIG_IPV6_MROUTE_MULTIPLE_TABLES") == "y"


def record(ts_ns, kind="attempt", method="unshare", err=0, latency_ns=1000):
    return {"ts_ns": ts_ns, "kind": kind, "method": method, "err": err, "latency_ns": latency_ns}


def stats_of(n_ok=10, failures=(), ooms=(), kmsg=()):
    """n_ok unshares 0.1 s apart, failed clones at 0.5 s, OOM kills at the
    given times, precursor lines; fed in time order, as a ring gives them."""
    records = [record(i * 10**8, latency_ns=1000 + i) for i in range(n_ok)]
    records += [record(5 * 10**8, method="clone", err=err, latency_ns=500) for err in failures]
    records += [record(t, kind="oom", method="") for t in ooms]
    stats = NamespaceStats().add_all(sorted(records, key=lambda r: r["ts_ns"]))
    for kind in kmsg:
        stats.precursor(kind)
    return stats


CENTOS75 = HostFacts(release="3.10.0-862.el7.x86_64", distro="CentOS Linux 7 (Core)", ipv6_loaded=True,
                     mroute_multiple_tables="y", config_source="/boot/config-3.10.0-862.el7.x86_64", possible_cpus=240)


def test_namespace_counts():
    stats = stats_of(3, failures=[12, 12, 1])
    stats.attempt(10**9, "setns", 0, 100)
    counts = namespace_counts(stats)
    assert counts == {"created": 3, "entered": 1, "failed": 3, "failed_by_errno": {"ENOMEM": 2, "EPERM": 1}}
    assert namespace_counts(NamespaceStats()) == {"created": 0, "entered": 0, "failed": 0, "failed_by_errno": {}}
    assert stats.by_method["unshare"].latency_ns.quantile(0.5) == pytest.approx(1001, rel=0.01)
    assert (stats.by_method["clone"].attempts, stats.by_method["clone"].failed) == (3, 3)


def test_oom_near_an_attempt_before_or_after_it():
    s = 10**9
    # near the attempt before it; near the attempt after it; 6 s from either: not near
    stats = NamespaceStats().add_all([record(0), record(4 * s, kind="oom"), record(20 * s, kind="oom"),
                                      record(24 * s), record(40 * s), record(46 * s, kind="oom")])
    assert (stats.oom_kills, stats.oom_near) == (3, 2)
    # an OOM kill before any attempt, never followed by one
    stats = NamespaceStats().add_all([record(0, kind="oom")])
    assert (stats.oom_kills, stats.oom_near) == (1, 0)


def test_at_risk_host_under_memory_pressure_is_critical():
    f = stats_of(10, failures=[12], ooms=[6 * 10**8], kmsg=["icmp6-ctl-socket", "socket-alloc"])
    (risk,) = findings(f, CENTOS75, duration_s=2.0)
    assert risk.id == "ip6mr-crash-risk" and risk.severity == "critical"
    assert "15e668070a64" in risk.title
    assert "10 namespaces created (5.00/s)" in risk.summary
    assert "1 failed (1 for lack of memory)" in risk.summary and "1 OOM kills near creations" in risk.summary
    checks = {row["check"]: row for row in risk.evidence}
    assert checks["possible CPUs"]["value"] == "240"
    assert checks["failed creations"]["value"] == "ENOMEM x1"
    rec = risk.recommendation
    # mitigations in order: upgrade, nokmem, pressure/churn, ipv6.disable=1; disable_ipv6 is not one
    order = [rec.index(s) for s in ("1) Upgrade", "2) On RHEL/CentOS 7", "nokmem", "3) Cut memory pressure",
                                    "4) Only where IPv6 is not used: boot with ipv6.disable=1")]
    assert order == sorted(order)
    assert "net.ipv6.conf.all.disable_ipv6=1 does not stop the per-namespace IPv6 setup" in rec


def test_at_risk_host_without_pressure_is_a_warning():
    (risk,) = findings(stats_of(10), CENTOS75, duration_s=10.0)
    assert risk.severity == "warning"
    assert "no memory pressure seen" in risk.summary


def test_oom_far_from_creations_is_not_counted():
    f = stats_of(2, ooms=[60 * 10**9])
    (risk,) = findings(f, CENTOS75, duration_s=60.0)
    assert "0 OOM kills near creations" in risk.summary


def test_crash_path_closed_when_ipv6_disabled_or_single_table():
    off = HostFacts(**{**CENTOS75.as_dict(), "ipv6_disabled_at_boot": True})
    (risk,) = findings(stats_of(5, failures=[12]), off, 1.0)
    assert risk.severity == "info" and "IPv6 is disabled at boot" in risk.summary
    single = HostFacts(**{**CENTOS75.as_dict(), "mroute_multiple_tables": "n"})
    (risk,) = findings(stats_of(5), single, 1.0)
    assert risk.severity == "info" and "MULTIPLE_TABLES is off" in risk.summary


def test_disable_ipv6_sysctl_is_called_out_not_counted_as_mitigation():
    host = HostFacts(**{**CENTOS75.as_dict(), "all_disable_ipv6": 1})
    (risk,) = findings(stats_of(5, failures=[12]), host, 1.0)
    assert risk.severity == "critical"
    row = [r for r in risk.evidence if r["check"] == "net.ipv6.conf.all.disable_ipv6"][0]
    assert "not a mitigation" in row["meaning"]


def test_this_host_kind_of_kernel_is_not_at_risk():
    host = HostFacts(release="6.18.44-fc-v595", mroute_multiple_tables="y")
    (risk,) = findings(stats_of(3, failures=[1]), host, 1.0)
    assert risk.severity == "info"
    assert risk.title.startswith("Not at risk")
    assert "not at risk of this bug" in risk.summary
    assert "does not stop the per-namespace IPv6 setup" in risk.recommendation


def test_unverified_kernel_says_so():
    host = HostFacts(**{**CENTOS75.as_dict(), "release": "3.10.0-957.el7.x86_64"})
    (risk,) = findings(stats_of(3), host, 1.0)
    assert risk.severity == "warning" and "unverified" in risk.title


NS_COLUMNS = ("ts_ns", "latency_ns", "cgroup_id", "flags", "ret", "kind", "method", "pid", "tid", "ppid",
              "netns", "old_netns", "err", "fd", "child_pid", "comm")


def ns_table(rows):
    """netns_event records as the trace stores them (kind, method, comm as
    dictionary strings)."""
    out = {}
    for i, name in enumerate(NS_COLUMNS):
        values = [r[i] for r in rows]
        out[name] = pa.array(values, pa.string()).dictionary_encode() if name in ("kind", "method", "comm") \
            else pa.array(values, pa.int64())
    return pa.table(out)


def ns(ts, kind, pid, method="", err=0, netns=0, fd=0, ret=0, child=0, latency=0):
    return (ts, latency, 7, 0x40000000, ret, kind, method, pid, pid, 1, netns, 4026531840, err, fd, child, "w")


def test_replay_of_stored_records_gives_the_summary_and_finding():
    from kerntrace.tracers.ip6mr import Ip6mrTool, _host_table

    host = {**CENTOS75.as_dict(), "kernel_hooks": False}
    parts = [
        ("host_facts", _host_table(host).to_arrow()),     # as a stored part reads back
        ("netns_event", ns_table([
            ns(1, "attempt", 10, "unshare", netns=4026532001, latency=2000),
            ns(2, "attempt", 11, "clone", err=12, latency=3000),
            ns(3, "icmp6_open", 12, fd=5, netns=4026532001),
            ns(4, "icmp6_open", 12, fd=6, netns=4026532001),
            ns(5, "icmp6_close", 12, fd=5),
            ns(6, "icmp6_close", 12, fd=9, ret=-9),    # EBADF: not a socket it had
        ])),
        ("kmsg", pa.table({"ts_ns": [7], "pid": [0], "kind": ["socket-alloc"], "text": ["socket: no more sockets"]})),
        ("netns_event", ns_table([
            ns(8, "icmp6_exit", 12),                        # the kernel closes fd 6
            ns(9, "oom", 0, child=77),
            ns(10, "attempt", 13, "setns", netns=4026532001, latency=500),
        ])),
    ]
    tool = Ip6mrTool()
    for kind, table in parts:
        tool.replay(kind, table)
    s = tool.summary(2.0)
    assert s["namespaces"] == {"created": 1, "entered": 1, "failed": 1, "failed_by_errno": {"ENOMEM": 1}}
    assert s["icmp6_sockets"] == {"opened": 2, "closed": 1, "closed_by_exit": 1}
    assert (s["oom_kills"], s["precursors"], s["kernel_events"]) == (1, {"socket-alloc": 1}, None)
    assert [(a["pid"], a["method"], a["result"]) for a in s["attempts"]] == \
        [(10, "unshare", 4026532001), (11, "clone", "ENOMEM"), (13, "setns", 4026532001)]
    assert s["host_facts"] == CENTOS75.as_dict()
    (risk,) = tool.findings(2.0)
    assert risk.severity == "critical"
    assert "1 namespaces created (0.50/s), 1 failed (1 for lack of memory), 1 OOM kills near creations, " \
           "1 allocation-failure log lines" in risk.summary


def test_summary_attempt_rows_are_bounded():
    from kerntrace.tracers import ip6mr

    tool = ip6mr.Ip6mrTool()
    n = ip6mr.ATTEMPT_ROWS + 5
    tool.replay("netns_event", ns_table([ns(i, "attempt", 100 + i, "unshare", netns=4026532001) for i in range(n)]))
    s = tool.summary(1.0)
    assert len(s["attempts"]) == ip6mr.ATTEMPT_ROWS and s["attempts_omitted"] == 5
    assert s["namespaces"]["created"] == n
