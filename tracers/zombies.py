"""``iotrace zombies``: every exit of the traced processes (or their children)
and its reaping: when, by whom (the parent, a subreaper or init after the
parent died, the kernel when SIGCHLD is ignored or when a PID namespace's
init exits), or "still a zombie".

Zombies and children that already exist when tracing starts are read from
/proc and put into the BPF maps, so their reaping is recorded too: `-p
PARENT` on a parent that already left zombies tells whether it reaps them.

With -c, iotrace makes itself a child subreaper (PR_SET_CHILD_SUBREAPER)
before starting the command, so zombies the command orphans come to iotrace
and are reaped there, as tini or systemd would, instead of piling up under
PID 1; the report says they were reaped by the subreaper.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Hook, require_bpf_environment, target_from_options
from .engine.backend import BackendRequest
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from . import procstate
from ..analysis.report import format_table, print_findings, run_line
from ..analysis.zombies import ZombieState, sort_events
from .dstate import rows_table
from .engine.labels import CONTAINER_WIDTH, container_header, label_of
from .engine.records import arrow_table

if TYPE_CHECKING:
    from .engine.metrics import ContainerOf, Exporter, Family, Series
    import numpy as np
    import pyarrow as pa

__all__ = ["ZombiesTool", "command", "print_lifecycles", "proc_state"]

PR_SET_CHILD_SUBREAPER = 36
_BPF_NOEXIST = 1   # bpf_map_update_elem flag: create only

HOOKS = (
    Hook("process fork", ("zombie_fork",)),
    Hook("process exit", ("zombie_exit",)),
    Hook("process free", ("zombie_free",)),
    Hook("process exec", ("zombie_exec",)),
    # wait4 and waitid, on the raw syscall tracepoints (see bpf/kerntrace.bpf.h)
    Hook("wait syscalls enter", ("zombie_sys_enter",)),
    Hook("wait syscalls exit", ("zombie_sys_exit",)),
)


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


# Record kinds of the trace directory (-o DIR)
EVENT_KIND = "zombie_event"                     # every ring record
AT_ATTACH_KIND = "zombie_at_attach"             # zombies found at attach (/proc)
CHILD_AT_ATTACH_KIND = "zombie_child_at_attach" # the traced processes' children alive at attach
AT_ATTACH_TYPES = {"ts_ns": "int64", "pid": "int64", "start_ns": "int64", "coarse_ns": "int64", "comm": str,
                     "ppid": "int64", "parent_comm": str, "exit_code": "int64"}
CHILD_TYPES = {"ts_ns": "int64", "pid": "int64", "start_ns": "int64", "coarse_ns": "int64", "comm": str,
                 "ppid": "int64", "parent_comm": str}
# Lifecycles kept for the report and the summary's exits (the longest
# zombies): a run's memory does not grow with its exits.
KEEP_LIVES = 1000
_EVENT_FIELDS = ("ts_ns", "enter_ns", "start_ns", "ret", "kind", "pid", "ppid", "target", "options", "exit_code",
                 "syscall", "subreaper", "ns_init", "autoreap", "comm", "parent_comm")


class Shown(list):  # type: ignore[type-arg]
    """A batch as the sinks get it: (record, kind, detail) per event, and
    the batch's zombie_event records (.table) for the trace."""

    table: Any = None


def event_rows(table: "pa.Table") -> list[dict[str, Any]]:
    """zombie_event records as the state reads them (the columns it uses)."""
    return table.select([f for f in _EVENT_FIELDS if f in table.column_names]).to_pylist()


def _plain_rows(table: "pa.Table") -> list[dict[str, Any]]:
    return table.drop(["time"]).to_pylist() if "time" in table.column_names else table.to_pylist()


def _clock_from(offset_ns: int, start_ns: int) -> Clock:
    clock = Clock()
    clock.offset_ns, clock.start_ns = offset_ns, start_ns
    return clock


def _clock_of(table: "pa.Table") -> Clock:
    """A killed run's clock, from its first record (time - ts_ns is the
    run's offset); its start is unknown: the first record's."""
    import pyarrow.compute as pc

    ts = int(table["ts_ns"][0].as_py())
    wall = int(pc.cast(table["time"], "int64")[0].as_py())
    return _clock_from(wall - ts, ts)


def _name(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


class ZombiesTool(Tool):
    """Process lifecycles: fork, exit, the wait calls that reap, the free."""

    name = "zombies"
    tick_interval = 1.0

    def __init__(self, reap_orphans: bool = False, min_zombie_s: float = 1.0, tracer_pid: Optional[int] = None) -> None:
        # Only when we start the command are we the ancestor its orphans should go to.
        self.reap_orphans = reap_orphans
        self.min_zombie_s = min_zombie_s
        # The tracer reaps the -c command itself, when it sees it exit: how
        # long that took is the tracer's, never a finding (kept in the trace
        # options, so that report knows it too).
        self.tracer_pid = os.getpid() if tracer_pid is None else tracer_pid
        self.tracer: Optional[BpfTracer] = None
        self.kinds: dict[int, str] = {}
        self.wait_calls: dict[int, str] = {}
        self.clock: Optional[Clock] = None
        self.end_ns = 0
        self.command_pid: Optional[int] = None
        self.orphans_reaped: list[int] = []
        self._exited: dict[int, tuple[int, int]] = {}    # pid -> (start_ns, exit ts): not reaped yet
        self._parents: dict[int, int] = {}               # pid -> its parent at its exit (--prometheus)
        self._unfreed: dict[int, int] = {}               # pid -> start_ns: exit seen, free not yet
        self._coarse: dict[int, int] = {}                # pid -> tick: a start known from /proc only
        self._final: list[dict[str, Any]] = []
        self._at_attach: list[dict[str, Any]] = []       # zombies when tracing started
        self._children_at_attach: list[dict[str, Any]] = []
        # Every summary, table and finding: the lifecycles as a stream, fed
        # the records the trace keeps (live: each batch's; report: the parts)
        self.state = ZombieState(min_zombie_s, keep=KEEP_LIVES, tracer_pid=self.tracer_pid)

    def objects(self) -> Sequence[ObjectSpec]:
        # A fork record describes the child but is made by the parent: the
        # -c launcher's fork of the command is kept.
        return [ObjectSpec("zombies", HOOKS, rings={"zombie_events": "zombie_event"}, keep_launcher=True)]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        self.tracer = tracers["zombies"]
        # zombie_event.kind -> "fork", "exec", "exit", "wait", "free"; .syscall -> "wait4", "waitid" (bpf/zombies.h)
        self.kinds = self.tracer.btf.enum_names("zombie_kind")
        self.wait_calls = self.tracer.btf.enum_names("zombie_syscall")

    def started(self, clock: Clock) -> None:
        self.clock = clock
        self.read_attach_state(clock.start_ns)
        self.state.add_children_at_attach(self._children_at_attach)
        self.state.add_zombies_at_attach(self._at_attach)

    def attach_events(self) -> Sequence[tuple[str, str, Any]]:
        """The children and zombies found at attach, for the trace."""
        out = []
        if self._children_at_attach:
            out.append(("zombies", CHILD_AT_ATTACH_KIND, list(self._children_at_attach)))
        if self._at_attach:
            out.append(("zombies", AT_ATTACH_KIND, list(self._at_attach)))
        return out

    # -- what exists before tracing ---------------------------------------------

    def read_attach_state(self, attach_ns: int) -> None:
        """Zombies that exist at attach go into zombie_exited, the traced
        processes' living children into zombie_children: whoever reaps them
        later (the parent, or init once the parent is gone) is recorded, and
        so is the exit of a child that outlives its parent.  Neither the
        tracer nor its children are the run's (it never reports itself)."""
        import numpy as np

        assert self.tracer is not None
        traced = procstate.traced_tgids(self.tracer)
        if traced is not None and not traced:
            return   # a command not started yet: nothing of it exists
        me = os.getpid()
        every = list(procstate.processes())
        comms = {t.pid: t.comm for t in every}
        tasks = [t for t in every if me not in (t.pid, t.ppid)]
        coarse = procstate.tick_ns()
        value = np.zeros(1, dtype=self.tracer.btf.dtype("zombie_tracked"))
        value["coarse_ns"] = coarse

        def put(map_name: str, task: procstate.Task) -> None:
            value["start_ns"] = task.start_ns
            try:  # NOEXIST: an entry the programs made since the attach is exact
                self.tracer.obj.map(map_name).update(struct.pack("<I", task.pid), value.tobytes(), _BPF_NOEXIST)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise

        zombies = [t for t in tasks if t.state == "Z" and (traced is None or t.ppid in traced or t.pid in traced)]
        for task in zombies:
            put("zombie_exited", task)
        for task in zombies:
            # Reaped between the read and the map update: its wait was not
            # seen, and it is not a zombie of this run.
            now = procstate.read_task(task.pid)
            if now is None or now.state != "Z" or now.start_ns != task.start_ns:
                continue
            self._remember_ns_pid(task)
            self._at_attach.append({
                "ts_ns": attach_ns, "pid": task.pid, "start_ns": task.start_ns, "coarse_ns": coarse,
                "comm": task.comm, "ppid": task.ppid, "parent_comm": comms.get(task.ppid, ""),
                "exit_code": task.exit_code})
            self._exited[task.pid] = (task.start_ns, attach_ns)
            self._parents[task.pid] = task.ppid
            self._unfreed[task.pid] = task.start_ns
            self._coarse[task.pid] = coarse
        if traced is None:
            return   # every process is traced: every exit is recorded
        for task in tasks:
            if task.ppid in traced and task.pid not in traced and task.state != "Z":
                put("zombie_children", task)
                self._children_at_attach.append({
                    "ts_ns": attach_ns, "pid": task.pid, "start_ns": task.start_ns, "coarse_ns": coarse,
                    "comm": task.comm, "ppid": task.ppid, "parent_comm": comms.get(task.ppid, "")})

    def _remember_ns_pid(self, zombie: Any) -> None:
        """A parent in a PID namespace (a container's) reaps its zombie by the
        pid the namespace gave it: the programs learn that pid at an exit,
        this zombie exited before tracing."""
        import numpy as np

        assert self.tracer is not None
        mine, parents = procstate.ns_pids(zombie.pid), procstate.ns_pids(zombie.ppid)
        level = len(parents) - 1
        inode = procstate.pid_ns_inode(zombie.ppid)
        if level < 1 or level >= len(mine) or inode is None:
            return
        key = np.zeros(1, dtype=self.tracer.btf.dtype("zombie_ns_pid"))
        key["ns_inum"], key["nr"] = inode, mine[level]
        self.tracer.obj.map("zombie_ns_pids").update(key.tobytes(), struct.pack("<I", zombie.pid))

    def _same(self, pid: int, start_ns: int) -> bool:
        """Whether (pid, start_ns) is the unfreed process of that pid."""
        known = self._unfreed.get(pid)
        if known is None:
            return False
        coarse = self._coarse.get(pid)
        return start_ns // coarse == known // coarse if coarse else start_ns == known

    def before_spawn(self) -> None:
        if self.reap_orphans:
            self.become_subreaper()

    def spawned(self, pid: int) -> None:
        self.command_pid = pid

    def tick(self) -> Sequence[tuple[str, Any]]:
        self.reap()
        return ()

    # -- subreaper --------------------------------------------------------------

    def become_subreaper(self) -> None:
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
            kind, pid = self.kinds.get(int(ev["kind"])), int(ev["pid"])
            if kind == "exit":
                self._exited[pid] = (int(ev["start_ns"]), int(ev["ts_ns"]))
                self._parents[pid] = int(ev["ppid"])
                self._unfreed[pid] = int(ev["start_ns"])
                self._coarse.pop(pid, None)
            elif kind == "wait" and int(ev["target"]) in self._exited:
                if int(ev["target"]) != 0:
                    self._exited.pop(int(ev["target"]), None)
            elif kind == "free":
                if self._same(pid, int(ev["start_ns"])):
                    del self._unfreed[pid]
                    self._coarse.pop(pid, None)
                    self._exited.pop(pid, None)

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        """Zombies not reaped yet, by the container of their parent (the
        one that should reap them)."""
        for pid in [p for p in self._parents if p not in self._exited]:
            del self._parents[pid]
        now: dict[tuple[str, ...], float] = {}
        for pid in self._exited:
            key = (containers.pid(self._parents.get(pid, 0)),)
            now[key] = now.get(key, 0) + 1
        return [series.per_container("kerntrace_zombies", "gauge",
                                     "Processes that exited and are not reaped yet, by their parent's container.",
                                     now)]

    def _describe(self, ev: Any) -> str:
        kind = self.kinds.get(int(ev["kind"]))
        if kind == "fork":
            return "forked"
        if kind == "exit":
            code = int(ev["exit_code"])
            return f"exit status {code >> 8}" if code & 0x7F == 0 else f"killed by signal {code & 0x7F}"
        if kind == "wait":
            name = self.wait_calls.get(int(ev["syscall"]), "?")
            ret = int(ev["ret"])
            call = f"{name}({int(ev['wait_pid'])})"
            if ret < 0:
                return f"{call} = -{errno.errorcode.get(-ret, str(-ret))}"
            target = int(ev["target"])
            if not target:
                return f"{call} = {ret} (nothing to reap)"
            exited = self._exited.get(target)
            least = " at least" if target in self._coarse else ""   # a zombie at attach
            age = f", a zombie for{least} {(int(ev['ts_ns']) - exited[1]) / 1e9:.3f} s" if exited else ""
            sub = " as subreaper" if int(ev["subreaper"]) else ""
            return f"{call} reaped {target}{sub}{age}"
        if kind == "exec":
            return f"exec {_name(ev['comm'])}"
        return "freed"

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> Any:
        """Each event with its kind's name and what it did, described
        before the event changes what is known (a wait's zombie age); the
        batch's records (sorted as the state takes them) go through the
        state and, with the shown events, to the trace."""
        shown = Shown((ev, self.kinds.get(int(ev["kind"]), "?"), self._describe(ev)) for ev in batch)
        self._track(batch)
        shown.table = self.event_table(batch)
        self.state.feed(event_rows(shown.table))
        return shown

    def event_table(self, batch: "np.ndarray[Any, Any]") -> "pa.Table":
        """zombie_event records: kind and syscall as their BTF enum names
        (syscall "" for events other than a wait), flags as booleans, in
        the order a life takes them."""
        offset = self.clock.offset_ns if self.clock is not None else 0
        table = arrow_table(batch, offset, enums={"kind": self.kinds, "syscall": {0: "", **self.wait_calls}},
                            bools=["subreaper", "ns_init", "autoreap"])
        return sort_events(table)

    def live_header(self, clock: Clock) -> str:
        return (f"{clock.live_title:<15} {'EVENT':<5} {'PID':>7} {'COMM':<16} {'PPID':>7} {'PCOMM':<16} "
                f"{container_header()}DETAIL")

    def live_lines(self, obj: str, ring: str, events: Any, clock: Clock) -> str:
        if ring != "zombie_events":
            return ""   # state found at attach: in the report
        lines = []
        show = bool(container_header())
        for ev, kind, detail in events:
            if kind == "free":
                continue
            ppid = f"{int(ev['ppid']):>7}" if kind != "wait" else f"{'':>7}"
            pcomm = _name(ev["parent_comm"]) if kind != "wait" else ""
            cell = (f"{label_of(ev['cgroup_id'], ev['cgroup_v1_id']).container or '-':<{CONTAINER_WIDTH}} "
                    if show else "")
            lines.append(f"{clock.live(int(ev['ts_ns'])):<15} {kind:<5} {int(ev['pid']):>7} "
                         f"{_name(ev['comm']):<16} {ppid} {pcomm:<16} {cell}{detail}\n")
        return "".join(lines)

    def json_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[dict[str, Any]]:
        if ring != "zombie_events":
            return
        for ev, kind, detail in events:
            yield {
                "type": "zombie", "event": kind, "time": clock.rfc3339(int(ev["ts_ns"])),
                "pid": int(ev["pid"]), "comm": _name(ev["comm"]), "ppid": int(ev["ppid"]),
                "parent_comm": _name(ev["parent_comm"]), "detail": detail,
                "target": int(ev["target"]), "ret": int(ev["ret"]),
                "cgroup_id": int(ev["cgroup_id"]), "cgroup_v1_id": int(ev["cgroup_v1_id"]),
            }

    def _drain(self) -> list[tuple[str, str, Any]]:
        assert self.tracer is not None
        return [("zombies", ring, self.update("zombies", ring, batch))
                for ring, batch in self.tracer.drain().items() if len(batch)]

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """Reaps the command's orphans, waits briefly for the frees (they
        follow an RCU grace period), then asks /proc about the rest."""
        late = self._drain()
        self.reap()
        deadline = time.monotonic() + 0.5
        while self._unfreed and time.monotonic() < deadline:
            time.sleep(0.02)
            late += self._drain()
            self.reap()
            if all(proc_state(pid, start) == "Z" for pid, start in self._unfreed.items()):
                break
        self._final = [self._final_state(pid, start) for pid, (start, _ts) in self._exited.items()]
        if not self.end_ns:
            self.end_ns = time.monotonic_ns()
        self.state.set_end(self.end_ns, self._final)
        return late

    @staticmethod
    def _final_state(pid: int, start_ns: int) -> dict[str, Any]:
        """A zombie left at the end, and whose child it is then (the reaper
        an orphan was passed to, which has not reaped it)."""
        state = proc_state(pid, start_ns)
        task = procstate.read_task(pid) if state == "Z" else None
        parent = procstate.read_task(task.ppid) if task is not None else None
        return {"pid": pid, "start_ns": start_ns, "proc_state": state, "ppid": task.ppid if task else 0,
                "parent_comm": parent.comm if parent else ""}

    # -- the trace directory ------------------------------------------------------

    def trace_options(self) -> dict[str, Any]:
        return {"reap_orphans": self.reap_orphans, "min_zombie_s": self.min_zombie_s, "tracer_pid": self.tracer_pid}

    def trace_records(self, obj: str, ring: str, events: Any, clock: Clock) -> "Iterable[tuple[str, pa.Table]]":
        if ring == "zombie_events":
            table = getattr(events, "table", None)
            return [(EVENT_KIND, table)] if table is not None else []
        if ring == AT_ATTACH_KIND:
            return [(ring, rows_table(events, AT_ATTACH_TYPES, clock.offset_ns))]
        if ring == CHILD_AT_ATTACH_KIND:
            return [(ring, rows_table(events, CHILD_TYPES, clock.offset_ns))]
        return []

    def replay(self, kind: str, table: "pa.Table") -> None:
        if kind == EVENT_KIND:
            self.state.feed(event_rows(table))
            if self.clock is None and table.num_rows:
                self.clock = _clock_of(table)
        elif kind == AT_ATTACH_KIND:
            self.state.add_zombies_at_attach(_plain_rows(table))
        elif kind == CHILD_AT_ATTACH_KIND:
            self.state.add_children_at_attach(_plain_rows(table))

    def end_state(self) -> dict[str, Any]:
        """When tracing ended, /proc's word on the processes still unreaped
        then (bounded by the zombies left), and the run's clock."""
        clock = {"offset_ns": self.clock.offset_ns, "start_ns": self.clock.start_ns} if self.clock else None
        return {"end_ns": self.end_ns, "final": self._final, "clock": clock}

    def restore_end(self, state: Mapping[str, Any]) -> None:
        self.end_ns = int(state.get("end_ns") or 0)
        self._final = list(state.get("final") or [])
        self.state.set_end(self.end_ns or None, self._final)
        if state.get("clock"):
            self.clock = _clock_from(int(state["clock"]["offset_ns"]), int(state["clock"]["start_ns"]))

    # -- after tracing ----------------------------------------------------------

    def lifecycles(self) -> list[Any]:
        """The lifecycles kept: those still open at the end, and of the
        others the KEEP_LIVES longest zombies (every one, in shorter runs)."""
        return self.state.lifecycles()

    def summary(self, duration_s: float) -> dict[str, Any]:
        lives = self.lifecycles()
        out: dict[str, Any] = {
            "processes": self.state.processes(),
            "exits": [self._life_json(l) for l in lives],
        }
        if self.state.exits > len(lives):
            # a long run: only the longest zombies are listed
            out["exits_total"] = self.state.exits
        return out

    def findings(self, duration_s: float) -> list[Any]:
        return self.state.findings()

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        out.write(f"\n{run_line(envelope)}\n")
        # `report` of a trace with no event and no end: no clock to tell times by
        clock = self.clock if self.clock is not None else _clock_from(0, 0)
        print_lifecycles(self.lifecycles(), clock, out, total=self.state.exits)
        print_findings(findings, out)

    def _life_json(self, life: Any) -> dict[str, Any]:
        def when(ns: Optional[int]) -> Optional[str]:
            return None if ns is None or self.clock is None else self.clock.rfc3339(ns)

        return {
            "pid": life.pid, "comm": life.comm, "parent_pid": life.parent_pid, "parent_comm": life.parent_comm,
            "exit_time": when(life.exit_ns), "reaped_time": when(life.reaped_ns), "reaped_by": life.reaped_by,
            "reaper_pid": life.reaper_pid, "reaper_comm": life.reaper_comm, "reaped_how": life.reaped_how,
            "held_by_pid": life.holder_pid,
            "zombie_s": round(life.zombie_s, 6), "exit_code": life.exit_code,
            # A zombie already at attach: exit_time is the attach, zombie_s a lower bound.
            "predates_tracing": life.predates_tracing,
        }


def print_lifecycles(lives: list[Any], clock: Clock, out: TextIO, top: int = 20, total: Optional[int] = None) -> None:
    out.write("\nExits and their reaping:\n")
    if not lives:
        out.write("(no process exited)\n")
        return
    rows = []
    for life in sorted(lives, key=lambda l: -l.zombie_s)[:top]:
        reaper = f"{life.reaper_pid} ({life.reaper_comm})" if life.reaper_pid else (
            f"held by {life.holder_pid} ({life.holder_comm})" if life.holder_pid else "-")
        # A zombie at attach exited before tracing: its time is a lower bound.
        rows.append({
            "pid": life.pid, "comm": life.comm, "parent": f"{life.parent_pid} ({life.parent_comm})",
            "exit_s": "before" if life.predates_tracing else round(clock.seconds(life.exit_ns), 3),
            "zombie_s": f">={life.zombie_s:.3f}" if life.predates_tracing else round(life.zombie_s, 3),
            "reaped_by": life.reaped_by, "reaper": reaper,
        })
    out.write(format_table(rows) + "\n")
    predating = sum(1 for life in lives if life.predates_tracing)
    if predating:
        out.write(f"({predating} already zombies when tracing started: a zombie for at least ZOMBIE_S)\n")
    total = len(lives) if total is None else total
    if total > top:
        out.write(f"({total - top} more exits, shorter zombies)\n")


@click.command("zombies")
@pid_options(required=False)
@click.option("--min-zombie", "min_zombie_s", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS", help="A zombie older than this counts as unreaped.")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, containers: tuple[str, ...],
            cgroups: tuple[str, ...], duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int, backend: BackendRequest,
            prometheus: Optional[Exporter], min_zombie_s: float) -> int:
    """Exits of the traced processes and of their children, and their
    reaping: by the parent, by a subreaper or init after the parent died, or
    still a zombie when tracing ends; the parent's wait4/waitid calls."""
    target = target_from_options(pids, command, follow, required=False, containers=containers, cgroups=cgroups)
    check_output_path(output)
    chosen = require_bpf_environment(backend)
    tool = ZombiesTool(reap_orphans=bool(target.argv), min_zombie_s=min_zombie_s)
    run_tool("iotrace", tool, target, duration=duration, as_json=as_json, output=output, utc=utc, backend=chosen,
             prometheus=prometheus)
    return 0
