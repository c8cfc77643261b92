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
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Hook, HookChoice, require_bpf_environment, target_from_options
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from ..analysis import ip6mr as rule
from ..analysis.ip6mr import config_value, HostFacts, namespace_counts
from ..analysis.precursors import classify_line, PRECURSORS
from ..analysis.report import format_table, print_findings, run_line
from .engine.probe import ensure_tracefs
from .engine.records import decode_events, write_parquet

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["HOOKS", "Ip6mrTool", "command", "read_host_facts"]

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


def errno_name(err: int) -> Optional[str]:
    if not err:
        return None
    return errno.errorcode.get(int(err), str(int(err)))


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

class Ip6mrTool(Tool):
    """Namespace attempts, the ip6mr path, raw ICMPv6 sockets, OOM kills and
    kernel-log precursors; the crash-risk finding at the end."""

    name = "ip6mr"

    def __init__(self) -> None:
        self.tracer: Optional[BpfTracer] = None
        self.kinds: dict[int, str] = {}
        self.methods: dict[int, str] = {}
        self._ns_batches: list["np.ndarray[Any, Any]"] = []
        self._kmsg_batches: list["np.ndarray[Any, Any]"] = []
        self._open_icmp6: dict[int, set[int]] = {}   # tgid -> fds still open
        self.icmp6_closed_by_exit = 0
        self._frames: Optional[dict[str, "pd.DataFrame"]] = None
        self._host: Optional["HostFacts"] = None

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

    @property
    def choices(self) -> list[HookChoice]:
        return self.tracer.choices if self.tracer is not None else []

    def kernel_hooks_available(self) -> bool:
        return any(c.program for c in self.choices if c.hook in KERNEL_HOOKS)

    # -- events ---------------------------------------------------------------

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> list[dict[str, Any]]:
        """The batch's events as dicts (ts_ns, type, ...), in order; what the
        ICMPv6 socket bookkeeping makes of them."""
        if ring == KMSG_RING:
            self._kmsg_batches.append(batch.copy())
            return [d for d in (self._kmsg_dict(ev) for ev in batch) if d is not None]
        self._ns_batches.append(batch.copy())
        shown = []
        for ev in batch:
            kind = self.kinds.get(int(ev["kind"]), "?")
            if kind == "icmp6_open" and int(ev["err"]) == 0:
                self._open_icmp6.setdefault(int(ev["pid"]), set()).add(int(ev["fd"]))
            elif kind == "icmp6_close" and int(ev["ret"]) != -errno.EBADF:
                self._open_icmp6.get(int(ev["pid"]), set()).discard(int(ev["fd"]))
            elif kind == "icmp6_exit":
                closed = self._exit_closes(int(ev["pid"]))
                if not closed:
                    continue  # it had closed them all itself
                shown.append({**self._event_dict(kind, ev), "closed_fds": closed})
                continue
            shown.append(self._event_dict(kind, ev))
        return shown

    def live_header(self, clock: Clock) -> str:
        return (f"{clock.live_title:<15} {'PID':<7} {'COMM':<16} {'PPID':<7} {'CGROUP':<8} {'METHOD':<12} "
                f"{'RESULT':<18} {'LAT(us)':>9}")

    def live_lines(self, obj: str, ring: str, events: list[dict[str, Any]], clock: Clock) -> str:
        return "".join(_live_line(d, clock.live(d["ts_ns"])) + "\n" for d in events)

    def json_records(self, obj: str, ring: str, events: list[dict[str, Any]],
                     clock: Clock) -> Iterable[dict[str, Any]]:
        for d in events:
            out = dict(d)
            ts = out.pop("ts_ns")
            yield {"type": out.pop("type"), "time": clock.rfc3339(ts), **out}

    def _exit_closes(self, tgid: int) -> int:
        fds = self._open_icmp6.pop(tgid, set())
        self.icmp6_closed_by_exit += len(fds)
        fd_map = self.tracer.obj.map("icmp6_fds")
        for fd in fds:
            fd_map.delete(struct.pack("<Ii", tgid, fd))
        return len(fds)

    def _event_dict(self, kind: str, ev: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"type": kind, "ts_ns": int(ev["ts_ns"]), "pid": int(ev["pid"]),
                             "tid": int(ev["tid"]), "comm": bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")}
        if kind == "attempt":
            err = int(ev["err"])
            d.update(ppid=int(ev["ppid"]), cgroup_id=int(ev["cgroup_id"]),
                     method=self.methods.get(int(ev["method"]), "?"),
                     flags=hex(int(ev["flags"])), result=int(ev["netns"]) if not err else errno_name(err),
                     errno=errno_name(err), netns=int(ev["netns"]) or None, old_netns=int(ev["old_netns"]),
                     latency_us=round(int(ev["latency_ns"]) / 1000, 1))
            if int(ev["child_pid"]):
                d["child_pid"] = int(ev["child_pid"])
        elif kind == "oom":
            d.update(victim_pid=int(ev["child_pid"]))
            d.pop("tid")
        elif kind.startswith("icmp6"):
            d.update(fd=int(ev["fd"]), errno=errno_name(int(ev["err"])), netns=int(ev["netns"]) or None)
        else:
            d.update(netns=int(ev["netns"]) or None, errno=errno_name(int(ev["err"])))
            if kind in ("copy_net_ns_ret",):
                d["latency_us"] = round(int(ev["latency_ns"]) / 1000, 1)
            if kind == "ip6mr_sk_done":
                d["protocol"] = int(ev["ret"])
        return d

    def _kmsg_dict(self, ev: Any) -> Optional[dict[str, Any]]:
        text = bytes(ev["text"]).split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()
        p = classify_line(text)
        if p is None:
            return None
        return {"type": "kmsg", "ts_ns": int(ev["ts_ns"]), "pid": int(ev["pid"]), "kind": p.kind, "text": text}

    # -- after the run ------------------------------------------------------------

    def frames(self) -> dict[str, "pd.DataFrame"]:
        if self._frames is None:
            self._frames = self._make_frames()
        return self._frames

    def _make_frames(self) -> dict[str, "pd.DataFrame"]:
        import pandas as pd

        assert self.tracer is not None
        dtype = self.tracer.btf.dtype("ns_event")
        raw = decode_events(self._ns_batches, dtype)
        frames: dict[str, pd.DataFrame] = {}
        kind = raw["kind"].map(self.kinds) if len(raw) else pd.Series([], dtype=object)
        attempts = raw[kind == "attempt"].copy()
        attempts["method"] = attempts["method"].map(self.methods)
        attempts["errno"] = pd.Series([errno_name(e) for e in attempts["err"]], index=attempts.index, dtype=object)
        attempts["result"] = pd.Series([errno_name(e) if e else int(n) for e, n in zip(attempts["err"], attempts["netns"])],
                                       index=attempts.index, dtype=object)
        # The numeric kind is the frame itself; "method" only means something for attempts.
        frames["attempts"] = attempts.drop(columns=["kind"]).reset_index(drop=True)
        frames["oom"] = (raw[kind == "oom"].rename(columns={"child_pid": "victim_pid"})
                         .drop(columns=["kind", "method"]).reset_index(drop=True))
        icmp = raw[kind.isin(["icmp6_open", "icmp6_close", "icmp6_exit"])].copy()
        icmp["event"] = kind[icmp.index]
        frames["icmp6"] = icmp.drop(columns=["kind", "method"]).reset_index(drop=True)
        kern = raw[kind.isin(list(KERNEL_KINDS))].copy()
        kern["event"] = kind[kern.index]
        frames["kernel"] = kern.drop(columns=["kind", "method"]).reset_index(drop=True)
        kraw = decode_events(self._kmsg_batches, self.tracer.btf.dtype("kmsg_event"))
        rows = []
        for ts, pid, text in zip(kraw.get("ts_ns", []), kraw.get("pid", []), kraw.get("text", [])):
            p = classify_line(str(text))
            if p is not None:
                rows.append({"ts_ns": int(ts), "pid": int(pid), "kind": p.kind, "text": str(text).rstrip()})
        frames["kmsg"] = pd.DataFrame(rows, columns=["ts_ns", "pid", "kind", "text"])
        return frames

    def host(self) -> "HostFacts":
        if self._host is None:
            self._host = read_host_facts()
        return self._host

    def summary(self, duration_s: float) -> dict[str, Any]:
        frames = self.frames()
        attempts = frames["attempts"]
        icmp = frames["icmp6"]
        opened = int(((icmp["event"] == "icmp6_open") & (icmp["err"] == 0)).sum()) if len(icmp) else 0
        closed = int(((icmp["event"] == "icmp6_close") & (icmp["ret"] != -errno.EBADF)).sum()) if len(icmp) else 0
        kern = frames["kernel"]
        return {
            "namespaces": namespace_counts(attempts),
            "attempts": [
                {"pid": int(r.pid), "tid": int(r.tid), "ppid": int(r.ppid), "comm": str(r.comm),
                 "cgroup_id": int(r.cgroup_id), "method": r.method,
                 "result": r.result if isinstance(r.result, str) else int(r.result),
                 "errno": r.errno, "latency_us": round(int(r.latency_ns) / 1000, 1),
                 **({"child_pid": int(r.child_pid)} if int(r.child_pid) else {})}
                for r in attempts.itertuples()
            ],
            "icmp6_sockets": {"opened": opened, "closed": closed, "closed_by_exit": self.icmp6_closed_by_exit},
            "oom_kills": int(len(frames["oom"])),
            "precursors": {str(k): int(v) for k, v in frames["kmsg"]["kind"].value_counts().items()},
            "kernel_events": {k: int((kern["event"] == k).sum()) if len(kern) else 0 for k in KERNEL_KINDS}
            if self.kernel_hooks_available() else None,
            "host_facts": self.host().as_dict(),
        }

    def findings(self, duration_s: float) -> list[Any]:
        return rule.findings(self.frames(), self.host(), duration_s)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        print_report(envelope, self.frames(), findings, out)

    def write_output(self, path: str, envelope: Mapping[str, Any]) -> None:
        tables = {k: v.copy() for k, v in self.frames().items() if len(v)}
        if "attempts" in tables:  # an inode or an errno name: one type per column in Parquet
            tables["attempts"]["result"] = tables["attempts"]["result"].astype(str)
        write_parquet(tables, path, {k: v for k, v in envelope.items() if k != "findings"})


def _live_line(d: dict[str, Any], t: str) -> str:
    """One event dict (see Ip6mrTool.update) as a live line."""
    kind, pid, comm = d["type"], d["pid"], d["comm"]
    if kind == "kmsg":
        return f"{t:<15} kernel log [{d['kind']}] {d['text']}"
    if kind == "attempt":
        result = f"net:[{d['netns']}]" if not d["errno"] else d["errno"]
        child = f" child {d['child_pid']}" if "child_pid" in d else ""
        return (f"{t:<15} {pid:<7} {comm:<16} {d['ppid']:<7} {d['cgroup_id']:<8} {d['method']:<12} "
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
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int) -> int:
    """Network-namespace creation and entry, the ip6mr path, raw ICMPv6
    sockets, OOM kills and kernel-log precursors; then whether this host is
    at risk of the ip6mr_sk_done crash."""
    target = target_from_options(list(pids), command, follow, required=False)
    check_output_path(output)
    require_bpf_environment()
    ensure_tracefs()
    run_tool("nstrace", Ip6mrTool(), target, duration=duration, as_json=as_json, output=output, utc=utc)
    return 0


def print_report(summary: Mapping[str, Any], frames: dict[str, "pd.DataFrame"], found: Sequence[Any],
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
    if summary["attempts"]:
        by = frames["attempts"].groupby(["method"], dropna=False)
        rows = [{"method": m if isinstance(m, str) else m[0], "attempts": int(len(g)),
                 "ok": int((g["err"] == 0).sum()), "failed": int((g["err"] != 0).sum()),
                 "p50_us": round(float(g["latency_ns"].median()) / 1000, 1),
                 "max_us": round(float(g["latency_ns"].max()) / 1000, 1)} for m, g in by]
        out.write("\n" + format_table(rows) + "\n")
    print_findings(found, out)
