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
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, TextIO

import click

from .engine.records import JsonLines
from .engine.target import Target, target_from_options
from .options import pid_options
from .engine import BpfTracer, Hook, HookChoice, Session

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..analysis.ip6mr import HostFacts

__all__ = ["HOOKS", "Ip6mrTrace", "command", "read_host_facts"]

NS_RING = "ns_events"
KMSG_RING = "kmsg_events"

KINDS = {
    1: "attempt", 2: "oom", 3: "icmp6_open", 4: "icmp6_close", 5: "icmp6_exit",
    6: "copy_net_ns", 7: "copy_net_ns_ret", 8: "setup_net", 9: "ip6mr_net_init",
    10: "ip6mr_net_exit", 11: "ip6mr_sk_done",
}
METHODS = {1: "unshare", 2: "clone", 3: "clone3", 4: "setns", 5: "task_newtask"}
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
    from ..analysis.ip6mr import HostFacts, config_value

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

class Ip6mrTrace:
    """One run: owns its BpfTracer, collects batches, prints live lines."""

    def __init__(self, target: Target, *, live: bool = True, json_out: Optional[JsonLines] = None,
                 out: TextIO = sys.stdout) -> None:
        self.target = target
        self.live = live
        self.json_out = json_out
        self.out = out
        self.tracer = BpfTracer(
            "ip6mr",
            hooks=HOOKS,
            rings={NS_RING: "ns_event", KMSG_RING: "kmsg_event"},
            options={"kt_filter_pids": target.filtered},
            follow_children=target.follow,
        )
        self.wall_offset_ns = Session.wall_offset_ns()
        self._ns_batches: list["np.ndarray[Any, Any]"] = []
        self._kmsg_batches: list["np.ndarray[Any, Any]"] = []
        self._open_icmp6: dict[int, set[int]] = {}   # tgid -> fds still open
        self.icmp6_closed_by_exit = 0

    @property
    def choices(self) -> list[HookChoice]:
        return self.tracer.choices

    def kernel_hooks_available(self) -> bool:
        return any(c.program for c in self.choices if c.hook in KERNEL_HOOKS)

    def after_load(self) -> None:
        """Give the kernel side its needles (after load: it is a map)."""
        from ..analysis.precursors import PRECURSORS

        needles = self.tracer.obj.map("kmsg_needles")
        for i, p in enumerate(PRECURSORS):
            needles.update(p.needle, struct.pack("<I", i))

    # -- events ---------------------------------------------------------------

    def _clock(self, ts_ns: int) -> str:
        wall = (int(ts_ns) + self.wall_offset_ns) / 1e9
        return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1000) % 1000:03d}"

    def on_batch(self, tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None:
        if ring == KMSG_RING:
            self._kmsg_batches.append(batch.copy())
            for ev in batch:
                self._emit_kmsg(ev)
            return
        self._ns_batches.append(batch.copy())
        for ev in batch:
            kind = KINDS.get(int(ev["kind"]), "?")
            if kind == "icmp6_open" and int(ev["err"]) == 0:
                self._open_icmp6.setdefault(int(ev["pid"]), set()).add(int(ev["fd"]))
            elif kind == "icmp6_close" and int(ev["ret"]) != -errno.EBADF:
                self._open_icmp6.get(int(ev["pid"]), set()).discard(int(ev["fd"]))
            elif kind == "icmp6_exit":
                closed = self._exit_closes(int(ev["pid"]))
                if not closed:
                    continue  # it had closed them all itself
                self._emit(kind, ev, closed_fds=closed)
                continue
            self._emit(kind, ev)

    def _exit_closes(self, tgid: int) -> int:
        fds = self._open_icmp6.pop(tgid, set())
        self.icmp6_closed_by_exit += len(fds)
        fd_map = self.tracer.obj.map("icmp6_fds")
        for fd in fds:
            fd_map.delete(struct.pack("<Ii", tgid, fd))
        return len(fds)

    def _event_dict(self, kind: str, ev: Any) -> dict[str, Any]:
        d: dict[str, Any] = {"type": kind, "time": self._clock(ev["ts_ns"]), "pid": int(ev["pid"]),
                             "tid": int(ev["tid"]), "comm": bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")}
        if kind == "attempt":
            err = int(ev["err"])
            d.update(ppid=int(ev["ppid"]), cgroup_id=int(ev["cgroup_id"]), method=METHODS.get(int(ev["method"]), "?"),
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

    def _emit(self, kind: str, ev: Any, **extra: Any) -> None:
        d = self._event_dict(kind, ev)
        d.update(extra)
        if self.json_out is not None:
            self.json_out.emit(d)
        if not self.live:
            return
        t, pid, comm = d["time"], d["pid"], d["comm"]
        if kind == "attempt":
            result = f"net:[{d['netns']}]" if not d["errno"] else d["errno"]
            child = f" child {d['child_pid']}" if "child_pid" in d else ""
            line = (f"{t:<12} {pid:<7} {comm:<16} {d['ppid']:<7} {d['cgroup_id']:<8} {d['method']:<12} "
                    f"{result:<18} {d['latency_us']:>9.1f}{child}")
        elif kind == "oom":
            line = f"{t:<12} OOM kill: victim pid {d['victim_pid']} ({comm or '?'})"
        elif kind == "icmp6_open":
            line = (f"{t:<12} {pid:<7} {comm:<16} raw ICMPv6 socket "
                    + (f"open fd {d['fd']} in net:[{d['netns']}]" if not d["errno"] else f"refused: {d['errno']}"))
        elif kind == "icmp6_close":
            line = f"{t:<12} {pid:<7} {comm:<16} raw ICMPv6 socket close fd {d['fd']} (rawv6_close -> ip6mr_sk_done)"
        elif kind == "icmp6_exit":
            line = f"{t:<12} {pid:<7} {comm:<16} exited: the kernel closed its {d['closed_fds']} raw ICMPv6 socket(s)"
        else:
            extra = f" {d['errno']}" if d.get("errno") else ""
            line = f"{t:<12} {pid:<7} {comm:<16} kernel {kind} net:[{d['netns'] or '?'}]{extra}"
        self.out.write(line + "\n")
        self.out.flush()

    def _emit_kmsg(self, ev: Any) -> None:
        from ..analysis.precursors import classify_line

        text = bytes(ev["text"]).split(b"\0", 1)[0].decode("utf-8", "replace").rstrip()
        p = classify_line(text)
        if p is None:
            return
        d = {"type": "kmsg", "time": self._clock(ev["ts_ns"]), "pid": int(ev["pid"]), "kind": p.kind, "text": text}
        if self.json_out is not None:
            self.json_out.emit(d)
        if self.live:
            self.out.write(f"{d['time']:<12} kernel log [{p.kind}] {text}\n")
            self.out.flush()

    # -- after the run ------------------------------------------------------------

    def finish(self) -> None:
        pass

    def frames(self) -> dict[str, "pd.DataFrame"]:
        import pandas as pd

        from ..analysis.precursors import classify_line
        from .engine.records import decode_events

        dtype = self.tracer.btf.dtype("ns_event")
        raw = decode_events(self._ns_batches, dtype)
        frames: dict[str, pd.DataFrame] = {}
        kind = raw["kind"].map(KINDS) if len(raw) else pd.Series([], dtype=object)
        attempts = raw[kind == "attempt"].copy()
        attempts["method"] = attempts["method"].map(METHODS)
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

    def summary(self, frames: dict[str, "pd.DataFrame"]) -> dict[str, Any]:
        from ..analysis.ip6mr import namespace_counts

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
        }


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


HEADER = f"{'TIME':<12} {'PID':<7} {'COMM':<16} {'PPID':<7} {'CGROUP':<8} {'METHOD':<12} {'RESULT':<18} {'LAT(us)':>9}"


@click.command("ip6mr")
@pid_options(required=False)
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, duration: Optional[float],
            as_json: bool, output: Optional[str], verbose: int) -> int:
    """Network-namespace creation and entry, the ip6mr path, raw ICMPv6
    sockets, OOM kills and kernel-log precursors; then whether this host is
    at risk of the ip6mr_sk_done crash."""
    from .engine.environment import require_bpf_environment
    from .engine.probe import ensure_tracefs

    target = target_from_options(list(pids), command, follow, required=False)
    require_bpf_environment()
    ensure_tracefs()
    json_out = JsonLines() if as_json else None
    trace = Ip6mrTrace(target, live=not as_json, json_out=json_out)
    session = Session([trace.tracer])
    try:
        session.start()
        trace.after_load()
        if target.pids:
            session.trace_pids(target.pids)
            for pid in target.pids:
                session.watch_exit(pid)
        for line in describe_hooks(trace.choices):
            click.echo(line, err=True)
        if target.argv:
            session.spawn(target.argv)
        click.echo(f"Tracing network-namespace attempts of {target.describe()}"
                   + (f" for {duration:g} s" if duration else "") + "... Ctrl-C to end.", err=True)
        if not as_json:
            click.echo(HEADER)
        session.run(trace.on_batch, duration=duration)
        trace.finish()
        lost = session.lost_events
        frames = trace.frames()
    finally:
        session.close()
    return report(trace, session, frames, lost, as_json, json_out, output)


def report(trace: Ip6mrTrace, session: Session, frames: dict[str, "pd.DataFrame"], lost: int, as_json: bool,
           json_out: Optional[JsonLines], output: Optional[str]) -> int:
    from ..analysis import ip6mr as rule
    from ..analysis.report import format_table, print_findings

    host = read_host_facts()
    duration_s = session.duration_s
    found = rule.findings(frames, host, duration_s)
    summary = trace.summary(frames)
    hooks = [c.as_dict() for c in session.choices]
    if output:
        from .engine.records import write_parquet

        tables = {k: v.copy() for k, v in frames.items() if len(v)}
        if "attempts" in tables:  # an inode or an errno name: one type per column in Parquet
            tables["attempts"]["result"] = tables["attempts"]["result"].astype(str)
        write_parquet(tables, output,
                      {"tracer": "ip6mr", "hooks": hooks, "duration_s": duration_s, "lost_events": lost,
                       "host": host.as_dict()})
    if as_json and json_out is not None:
        json_out.emit({"type": "summary", "tracer": "ip6mr", "duration_s": round(duration_s, 3),
                       "lost_events": lost, "stop_reason": session.stop_reason, "hooks": hooks,
                       "host": host.as_dict(), **summary, "findings": [f.as_dict() for f in found]})
        return 0
    out = sys.stdout
    ns = summary["namespaces"]
    out.write(f"\n{duration_s:.1f} s, {lost} lost events. Namespaces: {ns['created']} created, "
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
    return 0
