"""Rule ``ip6mr-crash-risk``: is this host exposed to the ip6mr_sk_done
NULL dereference during network-namespace creation, and how close is it?

The facts (see the upstream commits in REFERENCES):

- 15e668070a64 ("ipv6: reorder icmpv6_init() and ip6_mr_init()", v4.11-rc3)
  is the fix; backported to 4.4.y as 7c5deeccc664 and to 4.9.y as
  05a59bc2f3c0.  RHEL/CentOS 7.7 (3.10.0-1062) has the reorder; 3.10.0-862
  (7.5) is affected; 3.10.0-957 (7.6) was not verified.
- 6a17b961ec19 (v5.18) removed the per-netns ICMPv6 sockets: the path is gone.
- The crash needs IPv6 loaded (not ipv6.disable=1) and
  CONFIG_IPV6_MROUTE_MULTIPLE_TABLES=y (the single-table ip6mr_sk_done checks
  for NULL), plus a failing icmpv6_sk_init(): memory pressure, typically a
  memcg kmem limit, while namespaces are created.
- net.ipv6.conf.all.disable_ipv6=1 does not stop the per-namespace IPv6
  setup: icmpv6_sk_init() and ip6mr_net_init() still run for every new netns.

Everything here is pure: host facts and the trace's running aggregates
(NamespaceStats, fed one record at a time, live or from a stored trace) in,
findings out.
"""
from __future__ import annotations

import errno
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from .findings import Finding
from .histogram import Histogram

__all__ = [
    "FixStatus",
    "HostFacts",
    "MethodStats",
    "NamespaceStats",
    "REFERENCES",
    "RULE_ID",
    "config_value",
    "errno_name",
    "findings",
    "kernel_fix_status",
    "namespace_counts",
]

RULE_ID = "ip6mr-crash-risk"

REFERENCES = [
    "https://git.kernel.org/linus/15e668070a64bb97f102ad9cf3bccbca0545cda8 (fix, v4.11)",
    "https://git.kernel.org/linus/6a17b961ec19 (per-netns ICMPv6 sockets removed, v5.18)",
    "https://github.com/opencontainers/runc/issues/1725 (RHEL 7 kmem accounting)",
    "https://github.com/kubernetes/kubernetes/issues/61937 (kubelet and kmem)",
]

# Memory-related errnos of a failed namespace creation.
MEMORY_ERRNOS = ("ENOMEM", "ENFILE", "EMFILE", "ENOSPC")
# An OOM kill this close to a namespace attempt counts as "near" it.
OOM_NEAR_S = 5.0

AT_RISK = "at-risk"
FIXED = "fixed"
UNVERIFIED = "unverified"


@dataclass(frozen=True)
class FixStatus:
    state: str            # at-risk, fixed, unverified
    reason: str
    path_gone: bool = False   # >= 5.18: per-netns ICMPv6 sockets no longer exist

    @property
    def at_risk(self) -> bool:
        return self.state != FIXED


_RELEASE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(.*)$")
_EL7 = re.compile(r"^3\.10\.0-(\d+)(?:\.[\w.]+)?\.el7")
_DEBIAN_VERSION = re.compile(r"Debian (\d+)\.(\d+)\.(\d+)")

# First 4.4.y / 4.9.y releases known to carry the backport: the May 2020
# stable review of its follow-up afe49de44c27 lists 7c5deeccc664 (4.4.y) and
# 05a59bc2f3c0 (4.9.y) as present, and that follow-up shipped in 4.4.224 and
# was already in 4.9.y by 4.9.224.  Releases from before the fix existed
# (4.4.52 and 4.9.13 shipped before it was written, 2017-03-05) are at risk;
# releases in between depend on when the backport landed: unverified here.
_STABLE_BACKPORTS = {
    (4, 4): {"commit": "7c5deeccc664", "last_before_fix": 52, "known_fixed": 224},
    (4, 9): {"commit": "05a59bc2f3c0", "last_before_fix": 13, "known_fixed": 224},
}


def kernel_fix_status(release: str, version: str = "") -> FixStatus:
    """Whether a kernel release has the ip6mr_sk_done fix (15e668070a64).

    ``release`` is ``uname -r``; ``version`` (``uname -v``) is consulted for
    Debian, whose release string carries an ABI number, not the sublevel.
    """
    release = release.strip()
    el7 = _EL7.match(release)
    if el7:
        build = int(el7.group(1))
        if build >= 1062:
            return FixStatus(FIXED, f"RHEL/CentOS 7 kernel {release}: 3.10.0-1062 (7.7) and later call ip6_mr_init() before icmpv6_init()")
        if build <= 862:
            return FixStatus(AT_RISK, f"RHEL/CentOS 7 kernel {release} predates the reorder in 3.10.0-1062 (7.7); 3.10.0-862 (7.5) is a confirmed case")
        return FixStatus(UNVERIFIED, f"RHEL/CentOS 7 kernel {release} is between 3.10.0-862 (affected) and 3.10.0-1062 (fixed); not verified, treat as at risk")
    m = _RELEASE.match(release)
    if not m:
        return FixStatus(UNVERIFIED, f"cannot parse kernel release {release!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    sublevel = int(m.group(3) or 0)
    rest = m.group(4)
    if (major, minor) >= (5, 18):
        return FixStatus(FIXED, f"{major}.{minor} >= 5.18: ICMPv6 sockets are no longer per namespace (6a17b961ec19), the crash path is gone", path_gone=True)
    if (major, minor) >= (4, 11):
        return FixStatus(FIXED, f"{major}.{minor} >= 4.11 contains 15e668070a64")
    backport = _STABLE_BACKPORTS.get((major, minor))
    if backport is not None:
        debian = _DEBIAN_VERSION.search(version)
        if debian and (int(debian.group(1)), int(debian.group(2))) == (major, minor):
            sublevel = int(debian.group(3))
        elif sublevel == 0 and rest:
            return FixStatus(UNVERIFIED, f"{release} is a distribution {major}.{minor} kernel whose release does not show the stable sublevel; check its changelog for {backport['commit']}")
        if sublevel >= backport["known_fixed"]:
            return FixStatus(FIXED, f"{major}.{minor}.{sublevel} carries the {major}.{minor}.y backport {backport['commit']}")
        if sublevel <= backport["last_before_fix"]:
            return FixStatus(AT_RISK, f"{major}.{minor}.{sublevel} predates the fix and its {major}.{minor}.y backport {backport['commit']}")
        return FixStatus(UNVERIFIED, f"{major}.{minor}.{sublevel}: whether the {major}.{minor}.y backport {backport['commit']} is included is not verified; check the changelog")
    if (major, minor) == (4, 10):
        return FixStatus(UNVERIFIED, "4.10.y was still maintained when the fix landed; whether it got a backport is not verified")
    return FixStatus(AT_RISK, f"{major}.{minor} < 4.11 and no backport of 15e668070a64 is known for {major}.{minor}.y")


def config_value(config_text: str, name: str) -> Optional[str]:
    """A kernel config option's value ('y', 'm', ...), 'n' when the file says
    it is not set, None when the file does not mention it."""
    set_re = re.compile(rf"^{re.escape(name)}=(.*)$")
    unset = f"# {name} is not set"
    for line in config_text.splitlines():
        line = line.strip()
        if line == unset:
            return "n"
        m = set_re.match(line)
        if m:
            return m.group(1).strip('"')
    return None


@dataclass
class HostFacts:
    release: str
    version: str = ""
    distro: str = ""
    ipv6_loaded: bool = True
    ipv6_disabled_at_boot: bool = False
    all_disable_ipv6: Optional[int] = None
    mroute_multiple_tables: Optional[str] = None   # 'y', 'n', or None (unknown)
    config_source: str = ""
    possible_cpus: int = 0
    nokmem: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def errno_name(err: int) -> Optional[str]:
    """ENOMEM for 12; None for 0 (success)."""
    if not err:
        return None
    return errno.errorcode.get(int(err), str(int(err)))


@dataclass
class MethodStats:
    """One attempt method's counts and latency distribution."""

    attempts: int = 0
    ok: int = 0
    failed: int = 0
    latency_ns: Histogram = field(default_factory=Histogram)


class NamespaceStats:
    """What the rule needs of a trace, updated record by record in the
    order the ring gave them (the same code live and in `report`): counts
    per method and errno, OOM kills and how many came near an attempt,
    precursor log lines per kind.  Its size does not grow with the run."""

    # OOM kills waiting for an attempt within OOM_NEAR_S after them; more
    # than this many in OOM_NEAR_S cannot all be told apart anyway.
    MAX_PENDING_OOMS = 1024

    def __init__(self) -> None:
        self.by_method: dict[str, MethodStats] = {}
        self.failed_by_errno: dict[str, int] = {}
        self.oom_kills = 0
        self.oom_near = 0
        self.precursors: dict[str, int] = {}
        self._last_attempt_ns: Optional[int] = None
        self._pending_ooms: deque[int] = deque(maxlen=self.MAX_PENDING_OOMS)

    def attempt(self, ts_ns: int, method: str, err: int, latency_ns: int) -> None:
        m = self.by_method.setdefault(method, MethodStats())
        m.attempts += 1
        m.latency_ns.add([latency_ns])
        if err:
            m.failed += 1
            name = errno_name(err) or str(err)
            self.failed_by_errno[name] = self.failed_by_errno.get(name, 0) + 1
        else:
            m.ok += 1
        # An OOM kill seen before this attempt, less than OOM_NEAR_S earlier,
        # was near it; older ones can no longer be (the ring is in time order).
        window = int(OOM_NEAR_S * 1e9)
        while self._pending_ooms:
            oom = self._pending_ooms.popleft()
            if abs(ts_ns - oom) <= window:
                self.oom_near += 1
            elif oom > ts_ns:   # out of ring order and not near: keep waiting
                self._pending_ooms.appendleft(oom)
                break
        self._last_attempt_ns = ts_ns if self._last_attempt_ns is None else max(self._last_attempt_ns, ts_ns)

    def oom(self, ts_ns: int) -> None:
        self.oom_kills += 1
        last = self._last_attempt_ns
        if last is not None and abs(ts_ns - last) <= OOM_NEAR_S * 1e9:
            self.oom_near += 1
        else:
            self._pending_ooms.append(ts_ns)

    def precursor(self, kind: str) -> None:
        self.precursors[kind] = self.precursors.get(kind, 0) + 1

    def add(self, record: Mapping[str, Any]) -> None:
        """One ns_event record (a dict: kind, ts_ns, method, err, latency_ns)."""
        kind = record["kind"]
        if kind == "attempt":
            self.attempt(int(record["ts_ns"]), str(record["method"]), int(record["err"]), int(record["latency_ns"]))
        elif kind == "oom":
            self.oom(int(record["ts_ns"]))

    def add_all(self, records: Iterable[Mapping[str, Any]]) -> "NamespaceStats":
        for record in records:
            self.add(record)
        return self

    @property
    def created(self) -> int:
        return sum(m.ok for name, m in self.by_method.items() if name != "setns")

    @property
    def entered(self) -> int:
        m = self.by_method.get("setns")
        return m.ok if m else 0

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.by_method.values())


def namespace_counts(stats: NamespaceStats) -> dict[str, Any]:
    """created (new namespaces), entered (setns), failed (any method),
    failed_by_errno: the summary's "namespaces" object."""
    return {"created": stats.created, "entered": stats.entered, "failed": stats.failed,
            "failed_by_errno": dict(sorted(stats.failed_by_errno.items()))}


def _recommendation(status: FixStatus, host: HostFacts) -> str:
    steps = [
        "1) Upgrade the kernel: any 4.11 or later, a 4.4.y/4.9.y stable kernel with the backport "
        "(7c5deeccc664 / 05a59bc2f3c0), or RHEL/CentOS 7.7+ (3.10.0-1062+); 5.18+ is best, where "
        "per-namespace ICMPv6 sockets are gone (6a17b961ec19).",
        "2) On RHEL/CentOS 7, remove the trigger: runc/containerd.io and kubelet built with the nokmem "
        "tag (Docker 18.09.1+ packages), or boot with cgroup.memory=nokmem, then reboot to clear "
        "leaked kmem caches.",
        "3) Cut memory pressure and namespace churn: right-size container memory limits, stop restart storms.",
        "4) Only where IPv6 is not used: boot with ipv6.disable=1 (removes the IPv6 per-namespace setup; "
        "breaks IPv6-dependent CNIs).",
    ]
    note = ("net.ipv6.conf.all.disable_ipv6=1 does not stop the per-namespace IPv6 setup: "
            "icmpv6_sk_init() and ip6mr_net_init() still run in every new network namespace, "
            "so it is not a mitigation.")
    if not status.at_risk:
        return "Nothing to do for this bug on this kernel. " + note
    return " ".join(steps) + " Note: " + note


def crash_path_is_open(host: HostFacts) -> bool:
    """IPv6 up and multiple mroute tables (or not known to be off): what
    ip6mr_sk_done needs to walk a NULL table list."""
    return host.ipv6_loaded and not host.ipv6_disabled_at_boot and host.mroute_multiple_tables != "n"


def findings(stats: NamespaceStats, host: HostFacts, duration_s: float) -> list[Finding]:
    """The ``ip6mr-crash-risk`` finding: always one, its severity from the
    kernel's fix status, the crash prerequisites and what the trace saw."""
    status = kernel_fix_status(host.release, host.version)
    counts = namespace_counts(stats)
    churn = counts["created"] / duration_s if duration_s > 0 else 0.0
    failed_memory = sum(v for k, v in counts["failed_by_errno"].items() if k in MEMORY_ERRNOS)
    oom_near = stats.oom_near
    precursor_counts = dict(stats.precursors)
    memory_precursors = sum(v for k, v in precursor_counts.items() if k != "ip6mr")

    evidence = [
        {"check": "kernel", "value": host.release + (f" ({host.distro})" if host.distro else ""), "meaning": status.reason},
        {"check": "ipv6", "value": "disabled at boot (ipv6.disable=1)" if host.ipv6_disabled_at_boot
         else ("loaded" if host.ipv6_loaded else "not loaded"),
         "meaning": "the per-namespace IPv6 setup runs" if host.ipv6_loaded and not host.ipv6_disabled_at_boot
         else "no IPv6 pernet setup, no crash path"},
        {"check": "CONFIG_IPV6_MROUTE_MULTIPLE_TABLES",
         "value": (host.mroute_multiple_tables or "unknown") + (f" ({host.config_source})" if host.config_source else ""),
         "meaning": "ip6mr_sk_done walks the table list (the NULL deref)" if host.mroute_multiple_tables == "y"
         else ("single-table ip6mr_sk_done checks for NULL" if host.mroute_multiple_tables == "n" else "config not readable")},
        {"check": "namespace churn", "value": f"{counts['created']} created in {duration_s:.1f} s ({churn:.2f}/s)",
         "meaning": "each creation runs the IPv6 pernet setup"},
        {"check": "failed creations", "value": ", ".join(f"{k} x{v}" for k, v in counts["failed_by_errno"].items()) or "none",
         "meaning": f"{failed_memory} for lack of memory/files" if failed_memory else "none for lack of memory"},
        {"check": "OOM kills near creations", "value": str(oom_near), "meaning": f"within {OOM_NEAR_S:.0f} s of an attempt"},
        {"check": "kernel-log precursors", "value": ", ".join(f"{k} x{v}" for k, v in sorted(precursor_counts.items())) or "none",
         "meaning": "allocation failures that make icmpv6_sk_init() fail"},
    ]
    if host.all_disable_ipv6 == 1:
        evidence.append({"check": "net.ipv6.conf.all.disable_ipv6", "value": "1",
                         "meaning": "does not stop the per-namespace setup: not a mitigation"})
    if host.possible_cpus:
        evidence.append({"check": "possible CPUs", "value": str(host.possible_cpus),
                         "meaning": "one ICMPv6 control socket per possible CPU per namespace (before 5.18)"})

    crash_path_open = crash_path_is_open(host)
    triggers = failed_memory + oom_near + memory_precursors
    if not status.at_risk:
        severity = "info"
        title = "Not at risk of the ip6mr_sk_done crash: this kernel has the fix"
        summary = (f"Kernel {host.release} is not at risk of this bug ({status.reason}); "
                   f"traced {counts['created']} namespace creations ({churn:.2f}/s), {counts['failed']} failed, "
                   f"{oom_near} OOM kills near them.")
    elif not crash_path_open:
        severity = "info"
        title = "Kernel lacks the ip6mr fix, but the crash path is closed on this host"
        why = "IPv6 is disabled at boot" if host.ipv6_disabled_at_boot or not host.ipv6_loaded else \
            "CONFIG_IPV6_MROUTE_MULTIPLE_TABLES is off"
        summary = f"Kernel {host.release}: {status.reason}; but {why}, so ip6mr_sk_done cannot walk a NULL table list."
    else:
        severity = "critical" if triggers else "warning"
        title = ("Kernel NULL-deref in ip6mr_sk_done during network-namespace creation under memory pressure "
                 "(missing upstream 15e668070a64)")
        if status.state == UNVERIFIED:
            title += " (fix status unverified)"
        summary = (f"Kernel {host.release}: {status.reason}. {counts['created']} namespaces created "
                   f"({churn:.2f}/s), {counts['failed']} failed ({failed_memory} for lack of memory), "
                   f"{oom_near} OOM kills near creations, {memory_precursors} allocation-failure log lines"
                   + ("; the crash conditions are present now." if triggers else
                      "; no memory pressure seen during this trace, but any will expose the bug."))
    return [Finding(RULE_ID, severity, title, summary, evidence, _recommendation(status, host), list(REFERENCES))]
