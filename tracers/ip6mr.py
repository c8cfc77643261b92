"""``nstrace ip6mr``: network-namespace creation and entry, the ip6mr path,
raw ICMPv6 sockets, OOM kills and kernel-log precursors, then the
``ip6mr-crash-risk`` finding for this host.

Tracepoints see every attempt (unshare, clone, clone3, setns) with its
result; where the kernel allows fentry or kprobes, the kernel functions of
the crash path are hooked too (copy_net_ns and its return, setup_net,
ip6mr_net_init, ip6mr_net_exit, ip6mr_sk_done).  Where it does not, the
output says so and the diagnosis rests on the tracepoints.
"""
from __future__ import annotations

import errno
import gzip
import os
import platform
import struct
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Hook, HookChoice, require_bpf_environment, target_from_options
from .engine.bcc import BccHook
from .engine.backend import BackendRequest
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from ..analysis import ip6mr as rule
from ..analysis.ip6mr import config_value, errno_name, HostFacts, namespace_counts
from ..analysis.precursors import classify_line, PRECURSORS
from ..analysis.report import format_table, print_findings, run_line
from .engine.labels import label_with_names
from .engine.probe import ensure_tracefs
from .engine.records import Records, records_of

if TYPE_CHECKING:
    from .engine.metrics import ContainerOf, Exporter, Family, Series
    import numpy as np
    import pyarrow as pa

__all__ = ["BCC_HOOKS", "HOOKS", "Ip6mrTool", "command", "errno_name", "read_host_facts"]

NS_RING = "ns_events"
KMSG_RING = "kmsg_events"

KERNEL_KINDS = ("copy_net_ns", "copy_net_ns_ret", "setup_net", "ip6mr_net_init", "ip6mr_net_exit", "ip6mr_sk_done")

HOOKS = (
    # unshare, clone, clone3, setns, socket and close, on the raw syscall
    # tracepoints (see bpf/kerntrace.bpf.h)
    Hook("syscalls enter", ("ns_sys_enter",)),
    Hook("syscalls exit", ("ns_sys_exit",)),
    Hook("task_newtask", ("ns_newtask",)),
    Hook("oom kill", ("ns_oom_victim",), required=False),   # oom:mark_victim, 4.13+
    Hook("kernel log", ("ns_console",), required=False),
    Hook("process exit", ("ns_process_exit",)),
    Hook("copy_net_ns", ("ns_fentry_copy_net_ns", "ns_kprobe_copy_net_ns"), required=False),
    Hook("copy_net_ns return", ("ns_fexit_copy_net_ns", "ns_kretprobe_copy_net_ns"), required=False),
    Hook("setup_net", ("ns_fentry_setup_net", "ns_kprobe_setup_net"), required=False),
    Hook("ip6mr_net_init", ("ns_fentry_ip6mr_net_init", "ns_kprobe_ip6mr_net_init"), required=False),
    Hook("ip6mr_net_exit", ("ns_fentry_ip6mr_net_exit", "ns_kprobe_ip6mr_net_exit"), required=False),
    Hook("ip6mr_sk_done", ("ns_fentry_ip6mr_sk_done", "ns_kprobe_ip6mr_sk_done"), required=False),
)
KERNEL_HOOKS = ("copy_net_ns", "copy_net_ns return", "setup_net", "ip6mr_net_init", "ip6mr_net_exit", "ip6mr_sk_done")

# The same hooks for the bcc backend (bpf/ip6mr.bcc.c), from what an old
# kernel has: raw tracepoints (4.17), else the classic tracepoints or a
# kprobe where the tracepoint is younger than the kernel.
BCC_HOOKS = (
    BccHook("syscalls enter", (("raw_tracepoint", "sys_enter", "ns_sys_enter"),
                               ("tracepoint", "raw_syscalls/sys_enter", "ns_tp_sys_enter"))),
    BccHook("syscalls exit", (("raw_tracepoint", "sys_exit", "ns_sys_exit"),
                              ("tracepoint", "raw_syscalls/sys_exit", "ns_tp_sys_exit"))),
    BccHook("task_newtask", (("raw_tracepoint", "task_newtask", "ns_newtask"),
                             ("kprobe", "wake_up_new_task", "ns_kprobe_newtask"))),
    BccHook("oom kill", (("tracepoint", "oom/mark_victim", "ns_oom_victim"),
                         ("kprobe", "mark_oom_victim", "ns_kprobe_oom_victim")), required=False),
    BccHook("kernel log", (("raw_tracepoint", "console", "ns_console"),
                           ("tracepoint", "printk/console", "ns_tp_console")), required=False),
    BccHook("process exit", (("raw_tracepoint", "sched_process_exit", "ns_process_exit"),
                             ("tracepoint", "sched/sched_process_exit", "ns_tp_process_exit"))),
    BccHook("copy_net_ns", (("kprobe", "copy_net_ns", "ns_kprobe_copy_net_ns"),), required=False),
    BccHook("copy_net_ns return", (("kretprobe", "copy_net_ns", "ns_kretprobe_copy_net_ns"),), required=False),
    BccHook("setup_net", (("kprobe", "setup_net", "ns_kprobe_setup_net"),), required=False),
    BccHook("ip6mr_net_init", (("kprobe", "ip6mr_net_init", "ns_kprobe_ip6mr_net_init"),), required=False),
    BccHook("ip6mr_net_exit", (("kprobe", "ip6mr_net_exit", "ns_kprobe_ip6mr_net_exit"),), required=False),
    BccHook("ip6mr_sk_done", (("kprobe", "ip6mr_sk_done", "ns_kprobe_ip6mr_sk_done"),), required=False),
)


# -- host facts (I/O; the rule that reads them is pure) ------------------------

def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _kernel_config(release: str) -> tuple[str, str]:
    try:
        with gzip.open("/proc/config.gz", "rt", errors="replace") as f:
            return f.read(), "/proc/config.gz"
    except OSError:
        pass
    path = f"/boot/config-{release}"
    text = _read(path)
    return (text, path) if text else ("", "")


def _count_cpu_list(text: str) -> int:
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            count += int(hi or lo) - int(lo) + 1
        except ValueError:
            return 0
    return count


def read_host_facts() -> "HostFacts":
    uname = platform.uname()
    cmdline = _read("/proc/cmdline").split()
    distro = ""
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            distro = line.split("=", 1)[1].strip().strip('"')
    config, source = _kernel_config(uname.release)
    all_disable = _read("/proc/sys/net/ipv6/conf/all/disable_ipv6").strip()
    return HostFacts(
        release=uname.release,
        version=uname.version,
        distro=distro,
        ipv6_loaded=os.path.exists("/proc/sys/net/ipv6"),
        ipv6_disabled_at_boot="ipv6.disable=1" in cmdline,
        all_disable_ipv6=int(all_disable) if all_disable.isdigit() else None,
        mroute_multiple_tables=config_value(config, "CONFIG_IPV6_MROUTE_MULTIPLE_TABLES") if config else None,
        config_source=source,
        possible_cpus=_count_cpu_list(_read("/sys/devices/system/cpu/possible")),
        nokmem="cgroup.memory=nokmem" in cmdline,
    )


# -- the trace -----------------------------------------------------------------

# Record kinds of the trace directory (unique across tools).
NETNS_KIND = "netns_event"   # every ns_event record, kind and method as strings
KMSG_KIND = "kmsg"           # kernel-log lines that are precursors
HOST_KIND = "host_facts"     # one row: the host as the run found it at attach
# The summary's "attempts" rows: the first this many of the run (its
# counts cover every attempt).
ATTEMPT_ROWS = 1000


class Ip6mrBatch:
    """What update() makes of one batch: the events the terminal and JSON
    show, and the record tables the trace keeps (the aggregates were
    updated from those same tables)."""

    __slots__ = ("shown", "tables")

    def __init__(self, shown: list[dict[str, Any]], tables: list[tuple[str, Records]]) -> None:
        self.shown = shown
        self.tables = tables


class Ip6mrTool(Tool):
    """Namespace attempts, the ip6mr path, raw ICMPv6 sockets, OOM kills and
    kernel-log precursors; the crash-risk finding at the end.

    Every figure is a running aggregate fed from the record tables, live
    (update) and from a stored trace (replay) alike, so `report` gives the
    live run's summary and findings."""

    name = "ip6mr"
    # where the bug lives, kernels have no BTF: bpf/ip6mr.bcc.c (issue 22)
    bcc_program = "ip6mr"
    bcc_hooks = BCC_HOOKS

    def __init__(self) -> None:
        self.tracer: Optional[BpfTracer] = None
        self.kinds: dict[int, str] = {}
        self.methods: dict[int, str] = {}
        self.offset_ns = 0
        self.stats = rule.NamespaceStats()
        self._open_icmp6: dict[int, set[int]] = {}   # tgid -> fds still open
        self.icmp6_opened = 0
        self.icmp6_closed = 0
        self.icmp6_closed_by_exit = 0
        self.kernel_events: dict[str, int] = {k: 0 for k in KERNEL_KINDS}
        self.attempt_rows: list[dict[str, Any]] = []
        # per container (name or short id; "" the host): namespaces created,
        # failed (by errno), OOM kills of its tasks
        self.by_container: dict[str, dict[str, Any]] = {}
        self.attempts_omitted = 0
        self._host: Optional["HostFacts"] = None
        self._kernel_hooks: Optional[bool] = None
        self._from_trace = False

    @classmethod
    def from_trace(cls, options: Mapping[str, Any]) -> "Ip6mrTool":
        """For `report`: the host facts come from the trace, never from the
        machine that reads it."""
        tool = cls(**options)
        tool._from_trace = True
        return tool

    def objects(self) -> Sequence[ObjectSpec]:
        return [ObjectSpec("ip6mr", HOOKS, rings={NS_RING: "ns_event", KMSG_RING: "kmsg_event"})]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        """Names from the object's BTF; the kernel side's needles (a map)."""
        self.tracer = tracers["ip6mr"]
        # ns_event.kind and .method -> "attempt", "oom", ...; "unshare", "clone", ... (enums in bpf/ip6mr.h)
        self.kinds = self.tracer.btf.enum_names("ns_kind")
        self.methods = self.tracer.btf.enum_names("ns_method")
        needles = self.tracer.obj.map("kmsg_needles")
        for i, p in enumerate(PRECURSORS):
            needles.update(p.needle, struct.pack("<I", i))

    def hook_notes(self, choices: Sequence[HookChoice]) -> list[str]:
        return describe_hooks(list(choices))[1:]

    def started(self, clock: Clock) -> None:
        self.offset_ns = clock.offset_ns

    @property
    def choices(self) -> list[HookChoice]:
        return self.tracer.choices if self.tracer is not None else []

    def kernel_hooks_available(self) -> bool:
        if self._kernel_hooks is not None:   # as the run found them (a stored trace's host_facts)
            return self._kernel_hooks
        return any(c.program for c in self.choices if c.hook in KERNEL_HOOKS)

    # -- events ---------------------------------------------------------------

    def attach_events(self) -> Sequence[tuple[str, str, Any]]:
        """The host facts, read once at attach: the finding rests on them,
        and `report` must see the host the run saw."""
        self._kernel_hooks = self.kernel_hooks_available()
        row = {**self.host().as_dict(), "kernel_hooks": self._kernel_hooks}
        return [("ip6mr", HOST_KIND, Ip6mrBatch([], [(HOST_KIND, _host_table(row))]))]

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> Ip6mrBatch:
        """The batch as record tables, aggregated; the events it shows
        (dicts: ts_ns, type, ...), in order."""
        if ring == KMSG_RING:
            table = self._kmsg_table(batch)
            shown = self._consume_kmsg(table)
            return Ip6mrBatch(shown, [(KMSG_KIND, table)] if len(table) else [])
        table = records_of(batch, self.offset_ns, enums={"kind": self.kinds, "method": {0: "", **self.methods}})
        shown = []
        for row, closed in self._consume_ns(table):
            kind = row["kind"]
            if kind == "icmp6_exit":
                if not closed:
                    continue  # it had closed them all itself
                self._forget_fds(row["pid"], closed)
                shown.append({**_event_dict(row), "closed_fds": len(closed)})
                continue
            shown.append(_event_dict(row))
        return Ip6mrBatch(shown, [(NETNS_KIND, table)])

    def trace_records(self, obj: str, ring: str, events: Ip6mrBatch, clock: Clock) -> Iterable[tuple[str, Records]]:
        return events.tables

    def replay(self, kind: str, table: "pa.Table") -> None:
        if kind == NETNS_KIND:
            for _row, _closed in self._consume_ns(table):
                pass
        elif kind == KMSG_KIND:
            self._consume_kmsg(table)
        elif kind == HOST_KIND:
            self._restore_host(_rows(table)[0])

    def _restore_host(self, row: dict[str, Any]) -> None:
        self._kernel_hooks = bool(row.pop("kernel_hooks"))
        facts = {k: row.get(k) for k in HostFacts.__dataclass_fields__}
        facts["mroute_multiple_tables"] = facts["mroute_multiple_tables"] or None   # "": unknown
        self._host = HostFacts(**facts)

    def _consume_ns(self, table: "Records | pa.Table") -> Iterator[tuple[dict[str, Any], list[int]]]:
        """Every ns_event record into the aggregates, in ring order; yields
        each with the ICMPv6 fds its process exit closed."""
        for row in _rows(table):
            kind = row["kind"]
            closed: list[int] = []
            if kind == "attempt":
                self.stats.attempt(row["ts_ns"], row["method"], row["err"], row["latency_ns"])
                self._keep_attempt(row)
                self._count_container(row, "failed" if row["err"] else
                                      "entered" if row["method"] == "setns" else "created", errno_name(row["err"]))
            elif kind == "oom":
                self.stats.oom(row["ts_ns"])
                self._count_container(row, "oom_kills")
            elif kind == "icmp6_open" and row["err"] == 0:
                self.icmp6_opened += 1
                self._open_icmp6.setdefault(row["pid"], set()).add(row["fd"])
            elif kind == "icmp6_close" and row["ret"] != -errno.EBADF:
                self.icmp6_closed += 1
                self._open_icmp6.get(row["pid"], set()).discard(row["fd"])
            elif kind == "icmp6_exit":
                closed = sorted(self._open_icmp6.pop(row["pid"], set()))
                self.icmp6_closed_by_exit += len(closed)
            elif kind in self.kernel_events:
                self.kernel_events[kind] += 1
            yield row, closed

    def _count_container(self, row: dict[str, Any], what: str, errno: str = "") -> None:
        """The container of a record: from the trace (report) or resolved
        from its cgroup ids (live; the ids are kept for the trace)."""
        if "container" in row:
            name, pod = row["container"] or "", row.get("pod") or ""
        else:
            label = label_with_names(row.get("cgroup_id") or 0, row.get("cgroup_v1_id") or 0, _text(row.get("cgroup_name")),
                                     _text(row.get("cgroup_parent")))
            name, pod = label.container, label.pod
        row["container"] = name
        entry = self.by_container.get(name)
        if entry is None:
            entry = self.by_container[name] = {"container": name, "pod": pod, "created": 0, "entered": 0,
                                               "failed": 0, "failed_by_errno": {}, "oom_kills": 0}
        entry[what] += 1
        if errno:
            entry["failed_by_errno"][errno] = entry["failed_by_errno"].get(errno, 0) + 1

    def _keep_attempt(self, row: dict[str, Any]) -> None:
        if len(self.attempt_rows) >= ATTEMPT_ROWS:
            self.attempts_omitted += 1
            return
        err = row["err"]
        self.attempt_rows.append(
            {"pid": row["pid"], "tid": row["tid"], "ppid": row["ppid"], "comm": row["comm"],
             "cgroup_id": row["cgroup_id"], "container": row.get("container") or "", "method": row["method"],
             "result": errno_name(err) if err else row["netns"], "errno": errno_name(err),
             "latency_us": round(row["latency_ns"] / 1000, 1),
             **({"child_pid": row["child_pid"]} if row["child_pid"] else {})})

    def _consume_kmsg(self, table: "Records | pa.Table") -> list[dict[str, Any]]:
        shown = []
        for row in _rows(table):
            self.stats.precursor(row["kind"])
            shown.append({"type": "kmsg", "ts_ns": row["ts_ns"], "pid": row["pid"], "kind": row["kind"],
                          "text": row["text"]})
        return shown

    def _kmsg_table(self, batch: "np.ndarray[Any, Any]") -> Records:
        """The precursor lines of a kmsg batch (the kernel's 8-byte needles
        also pass lines no pattern matches)."""
        import numpy as np

        rows = []
        for ev in batch:
            text = bytes(ev["text"]).split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()
            p = classify_line(text)
            if p is not None:
                comm = bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")
                rows.append((int(ev["ts_ns"]), int(ev["pid"]), comm, p.kind, text))
        ts = np.array([r[0] for r in rows], dtype=np.uint64)
        out = Records(len(rows), self.offset_ns)
        out.add("time", ts.astype(np.int64) + self.offset_ns).add("ts_ns", ts)
        out.add("pid", np.array([r[1] for r in rows], dtype=np.uint32))
        for i, name in ((2, "comm"), (3, "kind"), (4, "text")):
            out.add_string_list(name, [r[i] for r in rows])
        return out

    def live_header(self, clock: Clock) -> str:
        return (f"{clock.live_title:<15} {'PID':<7} {'COMM':<16} {'PPID':<7} {'CONTAINER':<16} {'METHOD':<12} "
                f"{'RESULT':<18} {'LAT(us)':>9}")

    def live_lines(self, obj: str, ring: str, events: Ip6mrBatch, clock: Clock) -> str:
        return "".join(_live_line(d, clock.live(d["ts_ns"])) + "\n" for d in events.shown)

    def json_records(self, obj: str, ring: str, events: Ip6mrBatch,
                     clock: Clock) -> Iterable[dict[str, Any]]:
        for d in events.shown:
            out = dict(d)
            ts = out.pop("ts_ns")
            yield {"type": out.pop("type"), "time": clock.rfc3339(ts), **out}

    def _forget_fds(self, tgid: int, fds: list[int]) -> None:
        """The kernel map's entries of an exited process's fds."""
        if self.tracer is None:
            return
        fd_map = self.tracer.obj.map("icmp6_fds")
        for fd in fds:
            fd_map.delete(struct.pack("<Ii", tgid, fd))

    # -- after the run ------------------------------------------------------------

    def host(self) -> "HostFacts":
        if self._host is None:
            # a trace cut before its host_facts record was written: unknown
            self._host = HostFacts(release="") if self._from_trace else read_host_facts()
        return self._host

    def summary(self, duration_s: float) -> dict[str, Any]:
        out = {
            "namespaces": namespace_counts(self.stats),
            "attempts": list(self.attempt_rows),
            "icmp6_sockets": {"opened": self.icmp6_opened, "closed": self.icmp6_closed,
                              "closed_by_exit": self.icmp6_closed_by_exit},
            "oom_kills": self.stats.oom_kills,
            # per container ("" : the host's own processes), most namespaces first
            "containers": sorted(self.by_container.values(), key=lambda c: (-c["created"] - c["failed"], c["container"])),
            "precursors": dict(self.stats.precursors),
            "kernel_events": dict(self.kernel_events) if self.kernel_hooks_available() else None,
            "host_facts": self.host().as_dict(),
        }
        if self.attempts_omitted:
            out["attempts_omitted"] = self.attempts_omitted
        return out

    def findings(self, duration_s: float) -> list[Any]:
        return rule.findings(self.stats, self.host(), duration_s)

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        from .engine.metrics import Family

        created: dict[tuple[str, ...], float] = {}
        failed: dict[tuple[str, ...], float] = {}
        for name, c in self.by_container.items():
            created[(name,)] = c["created"]
            for err, n in c["failed_by_errno"].items():
                failed[(name, err)] = n
            unnamed = c["failed"] - sum(c["failed_by_errno"].values())
            if unnamed:
                failed[(name, "unknown")] = unnamed
        host = self.host()
        at_risk = rule.kernel_fix_status(host.release, host.version).at_risk and rule.crash_path_is_open(host)
        precursors = Family("kerntrace_kmsg_precursors_total", "counter",
                            "Kernel-log lines that come before the ip6mr crash, by kind.")
        for kind in sorted(self.stats.precursors):
            precursors.add(self.stats.precursors[kind], kind=kind)
        return [
            series.per_container("kerntrace_netns_creations_total", "counter",
                                 "Network namespaces created (unshare, clone, clone3 with CLONE_NEWNET).", created),
            series.per_container("kerntrace_netns_failures_total", "counter",
                                 "Network-namespace creations that failed, by errno name.", failed, ("errno",)),
            Family("kerntrace_netns_oom_kills_total", "counter",
                   f"OOM kills within {rule.OOM_NEAR_S:g} s of a namespace creation (the node's; the "
                   "ip6mr-crash-risk finding's count).").add(self.stats.oom_near),
            precursors,
            Family("kerntrace_ip6mr_kernel_at_risk", "gauge",
                   "1: the kernel lacks upstream 15e668070a64 and the crash path is open (IPv6 on, "
                   "multiple mroute tables); else 0.").add(1 if at_risk else 0),
        ]

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        print_report(envelope, self.stats, findings, out)


def _text(value: Any) -> str:
    """A char-array field as a row gives it: str, or bytes from a ring batch."""
    if isinstance(value, bytes):
        return value.split(b"\0", 1)[0].decode("utf-8", "replace")
    return value or ""


def _rows(table: "Records | pa.Table") -> list[dict[str, Any]]:
    """A record batch's rows as dicts of Python values, without the derived
    time column (ts_ns is the record's own): the live batch (Records) and
    a stored part (an Arrow table) alike."""
    if isinstance(table, Records):
        names = [n for n in table.column_names if n != "time"]
        columns = [[None if v != v else int(v) for v in table.column(n).tolist()] if n in table.nullable
                   else table.column(n).tolist() for n in names]   # NaN (v != v): null, as Parquet keeps it
        return [dict(zip(names, values)) for values in zip(*columns)]
    if "time" in table.column_names:
        table = table.drop_columns(["time"])
    return table.to_pylist()


def _host_table(row: Mapping[str, Any]) -> Records:
    """The host facts as one record (an unknown all_disable_ipv6 is null,
    an unknown CONFIG_IPV6_MROUTE_MULTIPLE_TABLES the empty string)."""
    import numpy as np

    out = Records(1)
    for name in ("release", "version", "distro"):
        out.add_string_list(name, [row[name]])
    out.add("ipv6_loaded", np.array([bool(row["ipv6_loaded"])]))
    out.add("ipv6_disabled_at_boot", np.array([bool(row["ipv6_disabled_at_boot"])]))
    value = row["all_disable_ipv6"]
    out.add("all_disable_ipv6", np.array([np.nan if value is None else float(value)]), nullable=True)
    out.add_string_list("mroute_multiple_tables", [row["mroute_multiple_tables"] or ""])
    out.add_string_list("config_source", [row["config_source"]])
    out.add("possible_cpus", np.array([int(row["possible_cpus"])], dtype=np.int32))
    out.add("nokmem", np.array([bool(row["nokmem"])]))
    out.add("kernel_hooks", np.array([bool(row["kernel_hooks"])]))
    return out


def _event_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ns_event record (a row of its table) as the live lines and JSON
    show it."""
    kind = row["kind"]
    d: dict[str, Any] = {"type": kind, "ts_ns": row["ts_ns"], "pid": row["pid"], "tid": row["tid"],
                         "comm": row["comm"], "cgroup_id": row.get("cgroup_id"), "cgroup_v1_id": row.get("cgroup_v1_id")}
    if "container" in row:   # resolved when it was counted
        d["container"] = row["container"]
    err = row["err"]
    if kind == "attempt":
        d.update(ppid=row["ppid"], method=row["method"] or "?",
                 flags=hex(row["flags"]), result=row["netns"] if not err else errno_name(err),
                 errno=errno_name(err), netns=row["netns"] or None, old_netns=row["old_netns"],
                 latency_us=round(row["latency_ns"] / 1000, 1))
        if row["child_pid"]:
            d["child_pid"] = row["child_pid"]
    elif kind == "oom":
        d.update(victim_pid=row["child_pid"])
        d.pop("tid")
    elif kind.startswith("icmp6"):
        d.update(fd=row["fd"], errno=errno_name(err), netns=row["netns"] or None)
    else:
        d.update(netns=row["netns"] or None, errno=errno_name(err))
        if kind in ("copy_net_ns_ret",):
            d["latency_us"] = round(row["latency_ns"] / 1000, 1)
        if kind == "ip6mr_sk_done":
            d["protocol"] = row["ret"]
    return d


def _live_line(d: dict[str, Any], t: str) -> str:
    """One event dict (see Ip6mrTool.update) as a live line."""
    kind, pid, comm = d["type"], d["pid"], d["comm"]
    if kind == "kmsg":
        return f"{t:<15} kernel log [{d['kind']}] {d['text']}"
    if kind == "attempt":
        result = f"net:[{d['netns']}]" if not d["errno"] else d["errno"]
        child = f" child {d['child_pid']}" if "child_pid" in d else ""
        return (f"{t:<15} {pid:<7} {comm:<16} {d['ppid']:<7} {d.get('container') or '-':<16} {d['method']:<12} "
                f"{result:<18} {d['latency_us']:>9.1f}{child}")
    if kind == "oom":
        return f"{t:<15} OOM kill: victim pid {d['victim_pid']} ({comm or '?'})"
    if kind == "icmp6_open":
        return (f"{t:<15} {pid:<7} {comm:<16} raw ICMPv6 socket "
                + (f"open fd {d['fd']} in net:[{d['netns']}]" if not d["errno"] else f"refused: {d['errno']}"))
    if kind == "icmp6_close":
        return f"{t:<15} {pid:<7} {comm:<16} raw ICMPv6 socket close fd {d['fd']} (rawv6_close -> ip6mr_sk_done)"
    if kind == "icmp6_exit":
        return f"{t:<15} {pid:<7} {comm:<16} exited: the kernel closed its {d['closed_fds']} raw ICMPv6 socket(s)"
    extra = f" {d['errno']}" if d.get("errno") else ""
    return f"{t:<15} {pid:<7} {comm:<16} kernel {kind} net:[{d['netns'] or '?'}]{extra}"


# -- the command ---------------------------------------------------------------

def describe_hooks(choices: list[HookChoice]) -> list[str]:
    used = [c for c in choices if c.program]
    lines = ["hooks: " + ", ".join(f"{c.kind} {c.target}" for c in used)]
    missing = [c for c in choices if not c.program]
    kernel_missing = [c for c in missing if c.hook in KERNEL_HOOKS]
    if kernel_missing:
        reasons = sorted({r for c in kernel_missing for _p, r in c.rejected})
        lines.append("kernel functions (" + ", ".join(c.hook for c in kernel_missing) + "): unavailable here ("
                     + "; ".join(reasons) + "); inferring the path from the syscall tracepoints")
    other = [c for c in missing if c.hook not in KERNEL_HOOKS]
    for c in other:
        lines.append(f"{c.hook}: unavailable (" + "; ".join(r for _p, r in c.rejected) + ")")
    return lines


@click.command("ip6mr")
@pid_options(required=False)
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, containers: tuple[str, ...],
            cgroups: tuple[str, ...], duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int, backend: BackendRequest,
            prometheus: Optional[Exporter]) -> int:
    """Network-namespace creation and entry, the ip6mr path, raw ICMPv6
    sockets, OOM kills and kernel-log precursors; then whether this host is
    at risk of the ip6mr_sk_done crash."""
    target = target_from_options(list(pids), command, follow, required=False, containers=containers, cgroups=cgroups,
                                late_match=True)
    check_output_path(output)
    chosen = require_bpf_environment(backend)
    ensure_tracefs()
    run_tool("nstrace", Ip6mrTool(), target, duration=duration, as_json=as_json, output=output, utc=utc,
             backend=chosen, prometheus=prometheus)
    return 0


def print_report(summary: Mapping[str, Any], stats: "rule.NamespaceStats", found: Sequence[Any],
                 out: TextIO) -> None:
    ns = summary["namespaces"]
    out.write(f"\n{run_line(summary)}\nNamespaces: {ns['created']} created, "
              f"{ns['entered']} entered (setns), {ns['failed']} failed"
              + (" (" + ", ".join(f"{k} x{v}" for k, v in ns["failed_by_errno"].items()) + ")" if ns["failed"] else "")
              + ".\n")
    icmp = summary["icmp6_sockets"]
    out.write(f"Raw ICMPv6 sockets: {icmp['opened']} opened, {icmp['closed']} closed, "
              f"{icmp['closed_by_exit']} closed by process exit. OOM kills: {summary['oom_kills']}. "
              f"Precursor log lines: {sum(summary['precursors'].values())}.\n")
    if summary["kernel_events"] is not None:
        out.write("Kernel path: " + ", ".join(f"{k} {v}" for k, v in summary["kernel_events"].items()) + "\n")
    else:
        out.write("Kernel path: fentry/kprobe unavailable on this kernel; copy_net_ns/setup_net/ip6mr_* inferred "
                  "from the syscall tracepoints.\n")
    containers = [c for c in summary.get("containers", []) if c["container"]]
    if containers:
        rows = [{"container": c["container"], **({"pod": c["pod"]} if any(x["pod"] for x in containers) else {}),
                 "netns_created": c["created"], "entered": c["entered"], "failed": c["failed"],
                 "errnos": ",".join(f"{k}x{v}" for k, v in c["failed_by_errno"].items()) or "-",
                 "oom_kills": c["oom_kills"]} for c in containers]
        out.write("\nPer container:\n" + format_table(rows) + "\n")
    if stats.by_method:
        rows = [{"method": name, "attempts": m.attempts, "ok": m.ok, "failed": m.failed,
                 "p50_us": round((m.latency_ns.quantile(0.5) or 0.0) / 1000, 1),
                 "max_us": round((m.latency_ns.high or 0) / 1000, 1)}
                for name, m in sorted(stats.by_method.items())]
        out.write("\n" + format_table(rows) + "\n")
    print_findings(found, out)
