"""``iotrace dstate``: uninterruptible sleeps, per task, split into iowait and
other D time, with the kernel stacks where the time went.

Every sleep is aggregated in the kernel per (thread, stack, iowait), so the
totals are exact even if the ring buffer drops per-sleep records; the ring
carries each sleep for the live view and the trace file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Hook, require_bpf_environment, target_from_options
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["DStateTool", "command", "print_tables"]

HOOKS = (
    Hook("sched_switch", ("dstate_switch",)),
    Hook("sched_wakeup", ("dstate_wakeup",)),
)


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

    def objects(self) -> Sequence[ObjectSpec]:
        return [ObjectSpec("dstate", HOOKS, rings={"dstate_events": "dstate_event"},
                           options={"min_event_ns": self.min_event_ns})]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        self.tracer = tracers["dstate"]

    # -- stacks ---------------------------------------------------------------

    def stack(self, stack_id: int) -> list[str]:
        from .engine.ksyms import kernel_symbols, read_stack

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
        from .engine.ksyms import wait_site

        lines = []
        for ev in events:
            comm = bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")
            site = wait_site(self.stack(int(ev["stack_id"])), depth=2)
            kind = "io" if ev["iowait"] else "D"
            lines.append(f"{clock.live(int(ev['ts_ns'])):<15} {comm:<16} {int(ev['pid']):>7} {int(ev['tid']):>7} "
                         f"{kind:<6} {int(ev['duration_ns']) / 1e6:>9.3f}  {site}\n")
        return "".join(lines)

    def json_records(self, obj: str, ring: str, events: "np.ndarray[Any, Any]",
                     clock: Clock) -> Iterable[dict[str, Any]]:
        from .engine.ksyms import wait_site

        for ev in events:
            yield {
                "type": "dstate", "time": clock.rfc3339(int(ev["ts_ns"])), "pid": int(ev["pid"]),
                "tid": int(ev["tid"]), "comm": bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "iowait": bool(ev["iowait"]), "duration_ms": int(ev["duration_ns"]) / 1e6,
                "state": int(ev["state"]), "wait_site": wait_site(self.stack(int(ev["stack_id"])), depth=2),
            }

    # -- after tracing ----------------------------------------------------------

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """Reads the in-kernel totals (exact whatever the ring dropped)."""
        import numpy as np
        import pandas as pd

        from .engine.ksyms import wait_site

        assert self.tracer is not None
        key_t = self.tracer.btf.dtype("dstate_key")
        val_t = self.tracer.btf.dtype("dstate_total")
        rows = []
        for k, v in self.tracer.obj.map("dstate_totals").items():
            key = np.frombuffer(k, dtype=key_t, count=1)[0]
            val = np.frombuffer(v, dtype=val_t, count=1)[0]
            frames = self.stack(int(key["stack_id"]))
            rows.append({
                "pid": int(val["pid"]), "tid": int(key["tid"]),
                "comm": bytes(val["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "stack_id": int(key["stack_id"]), "iowait": bool(key["iowait"]),
                "count": int(val["count"]), "total_ns": int(val["total_ns"]), "max_ns": int(val["max_ns"]),
                "wait_site": wait_site(frames, depth=1), "stack": ";".join(frames),
            })
        cols = ["pid", "tid", "comm", "stack_id", "iowait", "count", "total_ns", "max_ns", "wait_site", "stack"]
        self._totals = pd.DataFrame(rows, columns=cols)
        return ()

    def frames(self) -> "dict[str, pd.DataFrame]":
        if self._frames is None:
            import pandas as pd

            from .engine.records import decode_events

            assert self.tracer is not None
            sleeps = decode_events(self._batches, self.tracer.btf.dtype("dstate_event"))
            sleeps = sleeps.drop(columns=[c for c in sleeps.columns if c.startswith("_")])
            totals = self._totals if self._totals is not None else pd.DataFrame()
            self._frames = {"dstate_sleeps": sleeps, "dstate_totals": totals}
        return self._frames

    def summary(self, duration_s: float) -> dict[str, Any]:
        from ..analysis.dstate import per_process, top_stacks

        frames = self.frames()
        return {
            "processes": per_process(frames).to_dict("records"),
            "stacks": top_stacks(frames, 10).to_dict("records"),
        }

    def findings(self, duration_s: float) -> list[Any]:
        from ..analysis import dstate as rules

        return rules.findings(self.frames(), duration_s=duration_s)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        from ..analysis.report import print_findings, run_line

        out.write(f"\n{run_line(envelope)}\n")
        print_tables(self.frames(), out)
        print_findings(findings, out)


def print_tables(frames: "dict[str, pd.DataFrame]", out: TextIO, top: int = 10) -> None:
    from ..analysis.dstate import per_task, top_stacks
    from ..analysis.report import format_table

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
