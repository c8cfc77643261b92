"""``iotrace zombies``: every exit of the traced processes (or their children)
and its reaping: when, by whom (the parent, a subreaper or init after the
parent died, or the kernel when SIGCHLD is ignored), or "still a zombie".

With -c, iotrace makes itself a child subreaper (PR_SET_CHILD_SUBREAPER)
before starting the command, so zombies the command orphans come to iotrace
and are reaped there, as tini or systemd would, instead of piling up under
PID 1; the report says they were reaped by the subreaper.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

import click

from .engine.records import JsonLines
from .engine.target import Target, target_from_options
from .options import pid_options
from .engine import BpfTracer, Hook

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ZombieTrace", "command", "proc_state"]

FORK, EXIT, WAIT, FREE = 1, 2, 3, 4
PR_SET_CHILD_SUBREAPER = 36

HOOKS = (
    Hook("process fork", ("zombie_fork",)),
    Hook("process exit", ("zombie_exit",)),
    Hook("process free", ("zombie_free",)),
    # wait4 and waitid, on the raw syscall tracepoints (see bpf/kerntrace.bpf.h)
    Hook("wait syscalls enter", ("zombie_sys_enter",)),
    Hook("wait syscalls exit", ("zombie_sys_exit",)),
)
LIVE_HEADER = f"{'TIME(s)':<9} {'EVENT':<5} {'PID':>7} {'COMM':<16} {'PPID':>7} {'PCOMM':<16} DETAIL"


def proc_state(pid: int, start_ns: int) -> str:
    """'Z' (or another ps state letter) if pid is still the process that
    started at start_ns (boot-based ns), else 'gone'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "gone"
    fields = data[data.rfind(")") + 2:].split()
    if len(fields) < 20:
        return "gone"
    ticks = int(fields[19])
    hz = os.sysconf("SC_CLK_TCK")
    if ticks != start_ns * hz // 1_000_000_000:
        return "gone"
    return fields[0]


def _name(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


class ZombieTrace:
    """One zombies run: owns its BpfTracer, collects lifecycle events."""

    def __init__(self, target: Target, *, live: bool = True, json_out: Optional[JsonLines] = None,
                 reap_orphans: Optional[bool] = None, out: Any = None) -> None:
        self.target = target
        self.live = live
        self.json_out = json_out
        self.out = out or sys.stdout
        # Only when we start the command are we the ancestor its orphans should go to.
        self.reap_orphans = bool(target.argv) if reap_orphans is None else reap_orphans
        self.tracer = BpfTracer(
            "zombies",
            hooks=HOOKS,
            rings={"zombie_events": "zombie_event"},
            options={"kt_filter_pids": target.filtered},
            follow_children=target.follow,
        )
        self.t0_ns = 0
        self.end_ns = 0
        self.command_pid: Optional[int] = None
        self.orphans_reaped: list[int] = []
        self._batches: list["np.ndarray[Any, Any]"] = []
        self._exited: dict[int, tuple[int, int]] = {}    # pid -> (start_ns, exit ts): not reaped yet
        self._unfreed: dict[int, int] = {}               # pid -> start_ns: exit seen, free not yet
        self._final: list[dict[str, Any]] = []
        self._header_done = False

    # -- subreaper --------------------------------------------------------------

    def become_subreaper(self, session: Any = None) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            self.reap_orphans = False

    def reap(self) -> None:
        """Reaps zombies that became ours (orphans of the command)."""
        if not self.reap_orphans:
            return
        for pid in list(self._exited):
            if pid == self.command_pid:
                continue
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done:
                self.orphans_reaped.append(pid)

    # -- the contract -----------------------------------------------------------

    def _track(self, batch: "np.ndarray[Any, Any]") -> None:
        for ev in batch:
            kind, pid = int(ev["kind"]), int(ev["pid"])
            if kind == EXIT:
                self._exited[pid] = (int(ev["start_ns"]), int(ev["ts_ns"]))
                self._unfreed[pid] = int(ev["start_ns"])
            elif kind == WAIT and int(ev["target"]) in self._exited:
                if int(ev["target"]) != 0:
                    self._exited.pop(int(ev["target"]), None)
            elif kind == FREE:
                if self._unfreed.get(pid) == int(ev["start_ns"]):
                    del self._unfreed[pid]
                    self._exited.pop(pid, None)

    def _describe(self, ev: Any) -> str:
        kind = int(ev["kind"])
        if kind == FORK:
            return "forked"
        if kind == EXIT:
            code = int(ev["exit_code"])
            return f"exit status {code >> 8}" if code & 0x7F == 0 else f"killed by signal {code & 0x7F}"
        if kind == WAIT:
            name = "wait4" if int(ev["syscall"]) == 1 else "waitid"
            ret = int(ev["ret"])
            call = f"{name}({int(ev['wait_pid'])})"
            if ret < 0:
                return f"{call} = -{errno.errorcode.get(-ret, str(-ret))}"
            target = int(ev["target"])
            if not target:
                return f"{call} = {ret} (nothing to reap)"
            exited = self._exited.get(target)
            age = f", a zombie for {(int(ev['ts_ns']) - exited[1]) / 1e9:.3f} s" if exited else ""
            sub = " as subreaper" if int(ev["subreaper"]) else ""
            return f"{call} reaped {target}{sub}{age}"
        return "freed"

    def on_batch(self, tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None:
        self._batches.append(batch)
        if self.live or self.json_out is not None:
            kinds = {FORK: "fork", EXIT: "exit", WAIT: "wait", FREE: "free"}
            for ev in batch:
                kind = int(ev["kind"])
                t = (int(ev["ts_ns"]) - self.t0_ns) / 1e9
                if self.json_out is not None:
                    self.json_out.emit({
                        "type": "zombie", "event": kinds.get(kind, "?"), "time_s": round(t, 6),
                        "pid": int(ev["pid"]), "comm": _name(ev["comm"]), "ppid": int(ev["ppid"]),
                        "parent_comm": _name(ev["parent_comm"]), "detail": self._describe(ev),
                        "target": int(ev["target"]), "ret": int(ev["ret"]),
                    })
                elif self.live and kind != FREE:
                    if not self._header_done:
                        self.out.write(LIVE_HEADER + "\n")
                        self._header_done = True
                    ppid = f"{int(ev['ppid']):>7}" if kind != WAIT else f"{'':>7}"
                    pcomm = _name(ev["parent_comm"]) if kind != WAIT else ""
                    self.out.write(f"{t:<9.3f} {kinds[kind]:<5} {int(ev['pid']):>7} {_name(ev['comm']):<16} "
                                   f"{ppid} {pcomm:<16} {self._describe(ev)}\n")
            if self.live:
                self.out.flush()
        self._track(batch)

    def _drain(self) -> None:
        for ring, batch in self.tracer.drain().items():
            if len(batch):
                self.on_batch(self.tracer, ring, batch)

    def finish(self) -> None:
        """Reaps the command's orphans, waits briefly for the frees (they
        follow an RCU grace period), then asks /proc about the rest."""
        self._drain()
        self.reap()
        deadline = time.monotonic() + 0.5
        while self._unfreed and time.monotonic() < deadline:
            time.sleep(0.02)
            self._drain()
            self.reap()
            if all(proc_state(pid, start) == "Z" for pid, start in self._unfreed.items()):
                break
        self._final = [
            {"pid": pid, "start_ns": start, "proc_state": proc_state(pid, start)}
            for pid, (start, _ts) in self._exited.items()
        ]
        if not self.end_ns:
            self.end_ns = time.monotonic_ns()

    def frames(self) -> "dict[str, pd.DataFrame]":
        import pandas as pd

        from .engine.records import decode_events

        events = decode_events(self._batches, self.tracer.btf.dtype("zombie_event"))
        events = events.drop(columns=[c for c in events.columns if c.startswith("_")])
        final = pd.DataFrame(self._final, columns=["pid", "start_ns", "proc_state"])
        return {"zombie_events": events, "zombie_final": final}

    def summary(self, frames: "dict[str, pd.DataFrame]") -> dict[str, Any]:
        from ..analysis.zombies import lifecycles

        lives = lifecycles(frames, self.end_ns or None)
        processes: dict[int, dict[str, Any]] = {}
        for life in lives:
            p = processes.setdefault(life.parent_pid, {
                "pid": life.parent_pid, "comm": life.parent_comm, "children_exited": 0,
                "reaped_by_parent": 0, "reaped_by_others": 0, "still_zombies": 0, "max_zombie_s": 0.0})
            p["children_exited"] += 1
            if life.reaped_by == "parent":
                p["reaped_by_parent"] += 1
            elif life.reaped_by == "still a zombie":
                p["still_zombies"] += 1
            else:
                p["reaped_by_others"] += 1
            p["max_zombie_s"] = max(p["max_zombie_s"], round(life.zombie_s, 3))
        return {
            "processes": list(processes.values()),
            "exits": [self._life_json(l) for l in lives],
        }

    def _life_json(self, life: Any) -> dict[str, Any]:
        def rel(ns: Optional[int]) -> Optional[float]:
            return None if ns is None else round((ns - self.t0_ns) / 1e9, 6)

        return {
            "pid": life.pid, "comm": life.comm, "parent_pid": life.parent_pid, "parent_comm": life.parent_comm,
            "exit_s": rel(life.exit_ns), "reaped_s": rel(life.reaped_ns), "reaped_by": life.reaped_by,
            "reaper_pid": life.reaper_pid, "reaper_comm": life.reaper_comm, "zombie_s": round(life.zombie_s, 6),
            "exit_code": life.exit_code,
        }


def print_report(trace: ZombieTrace, frames: "dict[str, pd.DataFrame]", out: Any, top: int = 20) -> None:
    from ..analysis.report import format_table
    from ..analysis.zombies import lifecycles

    lives = lifecycles(frames, trace.end_ns or None)
    out.write("\nExits and their reaping:\n")
    if not lives:
        out.write("(no process exited)\n")
        return
    rows = []
    for life in sorted(lives, key=lambda l: -l.zombie_s)[:top]:
        reaper = f"{life.reaper_pid} ({life.reaper_comm})" if life.reaper_pid else "-"
        rows.append({
            "pid": life.pid, "comm": life.comm, "parent": f"{life.parent_pid} ({life.parent_comm})",
            "exit_s": round((life.exit_ns - trace.t0_ns) / 1e9, 3), "zombie_s": round(life.zombie_s, 3),
            "reaped_by": life.reaped_by, "reaper": reaper,
        })
    out.write(format_table(rows) + "\n")
    if len(lives) > top:
        out.write(f"({len(lives) - top} more exits, shorter zombies)\n")


@click.command("zombies")
@pid_options(required=False)
@click.option("--min-zombie", "min_zombie_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS", help="A zombie older than this counts as unreaped.")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, duration: Optional[float],
            as_json: bool, output: Optional[str], verbose: int, min_zombie_s: float) -> int:
    """Exits of the traced processes and of their children, and their
    reaping: by the parent, by a subreaper or init after the parent died, or
    still a zombie when tracing ends; the parent's wait4/waitid calls."""
    from .engine.environment import require_bpf_environment
    from .runner import report_single, run_traces

    target = target_from_options(pids, command, follow, required=False)
    require_bpf_environment()
    json_out = JsonLines() if as_json else None
    trace = ZombieTrace(target, live=not as_json, json_out=json_out)

    def before_spawn(session: Any) -> None:
        if trace.reap_orphans:
            trace.become_subreaper()

    session = run_traces("zombies", [trace], target, duration, tick=trace.reap,
                         before_spawn=before_spawn, on_spawn=lambda pid: setattr(trace, "command_pid", pid))
    try:
        from ..analysis import zombies as rules

        frames = trace.frames()
        findings = rules.findings(frames, end_ns=trace.end_ns, min_zombie_s=min_zombie_s)
        report_single("zombies", session, trace, frames, findings, json_out, output, print_report)
    finally:
        session.close()
    return 0
