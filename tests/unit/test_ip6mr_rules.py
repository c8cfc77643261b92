"""The ip6mr-crash-risk rule: kernel release -> fix status, kernel config
parsing, and findings from synthetic frames."""
from __future__ import annotations

import pandas as pd
import pytest

from kerntrace.analysis.ip6mr import (
    HostFacts,
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


def attempts(rows):
    df = pd.DataFrame(rows, columns=["ts_ns", "pid", "method", "err", "errno", "netns", "latency_ns"])
    df["errno"] = df["errno"].astype(object).where(df["errno"].notna(), None)
    return df


def frames(n_ok=10, failures=(), ooms=(), kmsg=()):
    rows = [(i * 10**8, 100 + i, "unshare", 0, None, 4026532000 + i, 1000) for i in range(n_ok)]
    rows += [(5 * 10**8, 900 + i, "clone", err, name, 0, 500) for i, (err, name) in enumerate(failures)]
    return {
        "attempts": attempts(rows),
        "oom": pd.DataFrame({"ts_ns": list(ooms), "victim_pid": [1] * len(ooms)}),
        "kmsg": pd.DataFrame({"ts_ns": [0] * len(kmsg), "kind": list(kmsg), "text": list(kmsg)}),
    }


CENTOS75 = HostFacts(release="3.10.0-862.el7.x86_64", distro="CentOS Linux 7 (Core)", ipv6_loaded=True,
                     mroute_multiple_tables="y", config_source="/boot/config-3.10.0-862.el7.x86_64", possible_cpus=240)


def test_namespace_counts():
    f = frames(3, failures=[(12, "ENOMEM"), (12, "ENOMEM"), (1, "EPERM")])
    counts = namespace_counts(f["attempts"])
    assert counts == {"created": 3, "entered": 0, "failed": 3, "failed_by_errno": {"ENOMEM": 2, "EPERM": 1}}
    assert namespace_counts(pd.DataFrame()) == {"created": 0, "entered": 0, "failed": 0, "failed_by_errno": {}}


def test_at_risk_host_under_memory_pressure_is_critical():
    f = frames(10, failures=[(12, "ENOMEM")], ooms=[6 * 10**8], kmsg=["icmp6-ctl-socket", "socket-alloc"])
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
    (risk,) = findings(frames(10), CENTOS75, duration_s=10.0)
    assert risk.severity == "warning"
    assert "no memory pressure seen" in risk.summary


def test_oom_far_from_creations_is_not_counted():
    f = frames(2, ooms=[60 * 10**9])
    (risk,) = findings(f, CENTOS75, duration_s=60.0)
    assert "0 OOM kills near creations" in risk.summary


def test_crash_path_closed_when_ipv6_disabled_or_single_table():
    off = HostFacts(**{**CENTOS75.as_dict(), "ipv6_disabled_at_boot": True})
    (risk,) = findings(frames(5, failures=[(12, "ENOMEM")]), off, 1.0)
    assert risk.severity == "info" and "IPv6 is disabled at boot" in risk.summary
    single = HostFacts(**{**CENTOS75.as_dict(), "mroute_multiple_tables": "n"})
    (risk,) = findings(frames(5), single, 1.0)
    assert risk.severity == "info" and "MULTIPLE_TABLES is off" in risk.summary


def test_disable_ipv6_sysctl_is_called_out_not_counted_as_mitigation():
    host = HostFacts(**{**CENTOS75.as_dict(), "all_disable_ipv6": 1})
    (risk,) = findings(frames(5, failures=[(12, "ENOMEM")]), host, 1.0)
    assert risk.severity == "critical"
    row = [r for r in risk.evidence if r["check"] == "net.ipv6.conf.all.disable_ipv6"][0]
    assert "not a mitigation" in row["meaning"]


def test_this_host_kind_of_kernel_is_not_at_risk():
    host = HostFacts(release="6.18.44-fc-v595", mroute_multiple_tables="y")
    (risk,) = findings(frames(3, failures=[(1, "EPERM")]), host, 1.0)
    assert risk.severity == "info"
    assert risk.title.startswith("Not at risk")
    assert "not at risk of this bug" in risk.summary
    assert "does not stop the per-namespace IPv6 setup" in risk.recommendation


def test_unverified_kernel_says_so():
    host = HostFacts(**{**CENTOS75.as_dict(), "release": "3.10.0-957.el7.x86_64"})
    (risk,) = findings(frames(3), host, 1.0)
    assert risk.severity == "warning" and "unverified" in risk.title
