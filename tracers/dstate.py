"""``iotrace dstate``: uninterruptible sleeps, per task, split into iowait and
other D time, with the kernel stacks where the time went.

Every sleep is aggregated in the kernel per (thread, stack, iowait), so the
totals are exact even if the ring buffer drops per-sleep records; the ring
carries each sleep for the live view and the trace file.

Tasks already in D when tracing starts are read from /proc (wait channel,
kernel stack) and their sleep is counted from the attach to its wake-up;
tasks still in D at the end are listed with how long they have been so.
"""
from __future__ import annotations

import os
import struct
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Hook, require_bpf_environment, target_from_options
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from . import procstate
from ..analysis import dstate as rules
from ..analysis.dstate import per_process, per_task, top_stacks
from ..analysis.report import format_table, print_findings, run_line
from .engine.ksyms import kernel_symbols, read_stack, wait_site
from .engine.records import decode_events

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["DStateTool", "command", "print_tables"]

HOOKS = (
    Hook("sched_switch", ("dstate_switch",)),
    Hook("sched_wakeup", ("dstate_wakeup",)),
)
TASK_UNINTERRUPTIBLE = 0x0002   # include/linux/sched.h: D in /proc, as bpf/dstate.bpf.c has it
_BPF_NOEXIST = 1                # bpf_map_update_elem flag: create only


class DStateTool(Tool):
    """D-state sleeps: per-sleep records for the live view and the trace
    file, exact totals per (thread, stack, iowait) from the kernel."""

    name = "dstate"

    def __init__(self, min_ms: float = 1.0, min_event_ms: float = 0.0) -> None:
        self.min_live_ns = int(min_ms * 1e6)
        self.min_event_ns = int(min_event_ms * 1e6)
        self.tracer: Optional[BpfTracer] = None
        self._batches: list["np.ndarray[Any, Any]"] = []
        self._stacks: dict[int, list[str]] = {}
        self._totals: Optional["pd.DataFrame"] = None
        self._frames: Optional[dict[str, "pd.DataFrame"]] = None
        self._at_attach: list[dict[str, Any]] = []       # tasks in D when tracing started
        self._at_end: list[dict[str, Any]] = []          # tasks in D when it ended
        self._attach_stacks: dict[int, list[str]] = {}   # tid -> its stack from /proc, at attach
        self._traced: Optional[set[int]] = None

    def objects(self) -> Sequence[ObjectSpec]:
        return [ObjectSpec("dstate", HOOKS, rings={"dstate_events": "dstate_event"},
                           options={"min_event_ns": self.min_event_ns})]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        self.tracer = tracers["dstate"]

    def started(self, clock: Clock) -> None:
        self.read_attach_state(clock.start_ns)

    # -- D-state sleeps under way at attach ---------------------------------------

    def _d_tasks(self) -> Iterable[Any]:
        """The traced threads in D now, from /proc (never the tracer's)."""
        assert self.tracer is not None
        me = os.getpid()
        if self._traced is None:
            pids = [t.pid for t in procstate.processes() if t.pid != me]
        else:
            pids = [p for p in self._traced if p != me]
        for pid in pids:
            for task in procstate.threads(pid):
                if task.state == "D":
                    yield task

    def read_attach_state(self, attach_ns: int) -> None:
        """Each traced thread in D at attach gets a sleep that starts at the
        attach: its wake-up (or switch-in) ends it as any other."""
        import numpy as np

        assert self.tracer is not None
        self._traced = procstate.traced_tgids(self.tracer)
        if self._traced is not None and not self._traced:
            return   # a command not started yet
        sleeping = self.tracer.obj.map("dstate_sleeping")
        value = np.zeros(1, dtype=self.tracer.btf.dtype("dstate_sleep"))
        value["ts_ns"] = attach_ns
        value["stack_id"] = self.tracer.btf.enum_values("dstate_stack_id")["none"]
        value["state"] = TASK_UNINTERRUPTIBLE
        value["at_attach"] = 1
        for task in list(self._d_tasks()):
            key = struct.pack("<I", task.tid)
            value["pid"] = task.pid
            try:  # NOEXIST: a sleep the programs saw begin since the attach is exact
                sleeping.update(key, value.tobytes(), _BPF_NOEXIST)
            except OSError:
                continue
            now = procstate.read_task(task.pid, task.tid)
            if now is None or now.state != "D":
                # Awake again.  If our entry is still there it woke before we
                # wrote it (a wake-up after would have ended it): not a sleep.
                raw = sleeping.lookup(key)
                if raw is not None and np.frombuffer(raw, dtype=value.dtype)[0]["at_attach"]:
                    sleeping.delete(key)
                    continue
            stack = procstate.kernel_stack(task.pid, task.tid)
            self._attach_stacks[task.tid] = stack
            self._at_attach.append({"ts_ns": attach_ns, "pid": task.pid, "tid": task.tid, "comm": task.comm,
                                    "wchan": procstate.wchan(task.pid, task.tid), "stack": ";".join(stack)})

    def read_end_state(self) -> None:
        """The traced threads still in D at the end, and since when (their
        sleep, unfinished, is in no total)."""
        import numpy as np

        assert self.tracer is not None
        if self._traced is not None and not self._traced:
            self._traced = procstate.traced_tgids(self.tracer)   # the -c command, started since
        sleeping = self.tracer.obj.map("dstate_sleeping")
        dtype = self.tracer.btf.dtype("dstate_sleep")
        now = time.monotonic_ns()
        for task in list(self._d_tasks()):
            raw = sleeping.lookup(struct.pack("<I", task.tid))
            since = int(np.frombuffer(raw, dtype=dtype)[0]["ts_ns"]) if raw is not None else None
            self._at_end.append({
                "pid": task.pid, "tid": task.tid, "comm": task.comm,
                "wchan": procstate.wchan(task.pid, task.tid),
                "since_ns": since, "d_s": round((now - since) / 1e9, 3) if since is not None else None})

    def _site(self, stack_id: int, tid: int, at_attach: bool, depth: int) -> str:
        if at_attach:
            frames = self._attach_stacks.get(tid, [])
            return wait_site(frames, depth) if frames else next(
                (r["wchan"] for r in self._at_attach if r["tid"] == tid and r["wchan"]), "?")
        return wait_site(self.stack(stack_id), depth)

    # -- stacks ---------------------------------------------------------------

    def stack(self, stack_id: int) -> list[str]:
        frames = self._stacks.get(stack_id)
        if frames is None:
            assert self.tracer is not None
            frames = read_stack(self.tracer.obj.map("dstate_stacks"), stack_id, kernel_symbols())
            self._stacks[stack_id] = frames
        return frames

    # -- while tracing ----------------------------------------------------------

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
        self._batches.append(batch)
        return batch[batch["duration_ns"] >= self.min_live_ns]

    def live_header(self, clock: Clock) -> str:
        return f"{clock.live_title:<15} {'COMM':<16} {'PID':>7} {'TID':>7} {'KIND':<6} {'D(ms)':>9}  WAIT-SITE"

    def live_lines(self, obj: str, ring: str, events: "np.ndarray[Any, Any]", clock: Clock) -> str:
        lines = []
        for ev in events:
            comm = bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")
            site = self._site(int(ev["stack_id"]), int(ev["tid"]), bool(ev["at_attach"]), 2)
            kind = "io" if ev["iowait"] else "D"
            lines.append(f"{clock.live(int(ev['ts_ns'])):<15} {comm:<16} {int(ev['pid']):>7} {int(ev['tid']):>7} "
                         f"{kind:<6} {int(ev['duration_ns']) / 1e6:>9.3f}  {site}\n")
        return "".join(lines)

    def json_records(self, obj: str, ring: str, events: "np.ndarray[Any, Any]",
                     clock: Clock) -> Iterable[dict[str, Any]]:
        for ev in events:
            yield {
                "type": "dstate", "time": clock.rfc3339(int(ev["ts_ns"])), "pid": int(ev["pid"]),
                "tid": int(ev["tid"]), "comm": bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "iowait": bool(ev["iowait"]), "duration_ms": int(ev["duration_ns"]) / 1e6,
                "state": int(ev["state"]),
                "wait_site": self._site(int(ev["stack_id"]), int(ev["tid"]), bool(ev["at_attach"]), 2),
                "at_attach": bool(ev["at_attach"]),
            }

    # -- after tracing ----------------------------------------------------------

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """Reads the in-kernel totals (exact whatever the ring dropped)."""
        import numpy as np
        import pandas as pd

        assert self.tracer is not None
        key_t = self.tracer.btf.dtype("dstate_key")
        val_t = self.tracer.btf.dtype("dstate_total")
        rows = []
        for k, v in self.tracer.obj.map("dstate_totals").items():
            key = np.frombuffer(k, dtype=key_t, count=1)[0]
            val = np.frombuffer(v, dtype=val_t, count=1)[0]
            tid, at_attach = int(key["tid"]), bool(key["at_attach"])
            # A sleep under way at attach has the stack /proc showed then.
            frames = self._attach_stacks.get(tid, []) if at_attach else self.stack(int(key["stack_id"]))
            rows.append({
                "pid": int(val["pid"]), "tid": tid,
                "comm": bytes(val["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "stack_id": int(key["stack_id"]), "iowait": bool(key["iowait"]),
                "count": int(val["count"]), "total_ns": int(val["total_ns"]), "max_ns": int(val["max_ns"]),
                "wait_site": self._site(int(key["stack_id"]), tid, at_attach, 1) if at_attach
                else wait_site(frames, depth=1),
                "stack": ";".join(frames), "at_attach": at_attach,
            })
        cols = ["pid", "tid", "comm", "stack_id", "iowait", "count", "total_ns", "max_ns", "wait_site", "stack",
                "at_attach"]
        self._totals = pd.DataFrame(rows, columns=cols)
        self.read_end_state()
        return ()

    def frames(self) -> "dict[str, pd.DataFrame]":
        if self._frames is None:
            import pandas as pd

            assert self.tracer is not None
            sleeps = decode_events(self._batches, self.tracer.btf.dtype("dstate_event"))
            sleeps = sleeps.drop(columns=[c for c in sleeps.columns if c.startswith("_")])
            totals = self._totals if self._totals is not None else pd.DataFrame()
            self._frames = {"dstate_sleeps": sleeps, "dstate_totals": totals}
        return self._frames

    def state_frames(self) -> "dict[str, pd.DataFrame]":
        """The tasks /proc showed in D at attach (with wait channel and stack)
        and at the end.  Not in frames(): the -o file puts every frame in one
        table, and rows without the totals' flag columns would turn them from
        bool to object; the summary carries them (d_at_attach, d_at_end)."""
        import pandas as pd

        return {
            "dstate_at_attach": pd.DataFrame(self._at_attach, columns=["ts_ns", "pid", "tid", "comm", "wchan", "stack"]),
            "dstate_at_end": pd.DataFrame(self._at_end, columns=["pid", "tid", "comm", "wchan", "since_ns", "d_s"]),
        }

    def summary(self, duration_s: float) -> dict[str, Any]:
        frames = self.frames()
        return {
            "processes": per_process(frames).to_dict("records"),
            "stacks": top_stacks(frames, 10).to_dict("records"),
            # Tasks in D when tracing started (counted from then) and when it ended.
            "d_at_attach": [{k: r[k] for k in ("pid", "tid", "comm", "wchan")} for r in self._at_attach],
            "d_at_end": [{k: r[k] for k in ("pid", "tid", "comm", "wchan", "d_s")} for r in self._at_end],
        }

    def findings(self, duration_s: float) -> list[Any]:
        return rules.findings(self.frames(), duration_s=duration_s)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        out.write(f"\n{run_line(envelope)}\n")
        print_tables({**self.frames(), **self.state_frames()}, out)
        print_findings(findings, out)


def print_tables(frames: "dict[str, pd.DataFrame]", out: TextIO, top: int = 10) -> None:
    tasks = per_task(frames)
    out.write("\nD-state time per task (iowait: sleeps in io_schedule; other: locks, page faults, ...):\n")
    if tasks.empty:
        out.write("(no uninterruptible sleeps)\n")
    else:
        rows = [{"pid": r.pid, "tid": r.tid, "comm": r.comm, "sleeps": r.count, "d_ms": round(r.d_ms, 3),
                 "iowait_ms": round(r.iowait_ms, 3), "other_ms": round(r.other_ms, 3),
                 "longest_ms": round(r.longest_ms, 3)} for r in tasks.head(top).itertuples()]
        out.write(format_table(rows) + "\n")
        if len(tasks) > top:
            out.write(f"({len(tasks) - top} more tasks)\n")
    for name, title, cols in (
            ("dstate_at_attach", "In D when tracing started (counted from then to the wake-up):",
             ["pid", "tid", "comm", "wchan"]),
            ("dstate_at_end", "Still in D when tracing ended (in no total):", ["pid", "tid", "comm", "wchan", "d_s"])):
        table = frames.get(name)
        if table is not None and not table.empty:
            out.write(f"\n{title}\n{format_table(table[cols].head(top).to_dict('records'))}\n")
    stacks = top_stacks(frames, 5)
    if not stacks.empty:
        out.write("\nWhere the D time went (kernel stacks, innermost first):\n")
        for r in stacks.itertuples():
            out.write(f"  {r.d_ms:.3f} ms in {r.sleeps} sleeps, {'iowait' if r.iowait else 'other D'}, "
                      f"{r.comm} (pid {r.pid})\n")
            for frame in r.stack.split(";")[:12]:
                out.write(f"      {frame}\n")


@click.command("dstate")
@pid_options(required=False)
@click.option("--min-ms", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Show (or with --json, emit) sleeps at least this long; all are counted.")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int, min_ms: float) -> int:
    """Uninterruptible (D-state) sleeps of the traced tasks (all tasks without
    -p/-c): count, total and longest per task, split into iowait and other D,
    and the kernel stacks where the time went."""
    target = target_from_options(pids, command, follow, required=False)
    check_output_path(output)
    require_bpf_environment()
    run_tool("iotrace", DStateTool(min_ms=min_ms), target, duration=duration, as_json=as_json, output=output,
             utc=utc)
    return 0
