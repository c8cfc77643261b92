"""``iotrace dstate``: uninterruptible sleeps, per task, split into iowait and
other D time, with the kernel stacks where the time went.

Every sleep is aggregated in the kernel per (thread, stack, iowait), so the
totals are exact even if the ring buffer drops per-sleep records; the ring
carries each sleep for the live view and the trace file.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import click

from .engine.records import JsonLines
from .engine.target import Target, target_from_options
from .options import pid_options
from .engine import BpfTracer, Hook

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["DStateTrace", "command"]

HOOKS = (
    Hook("sched_switch", ("dstate_switch",)),
    Hook("sched_wakeup", ("dstate_wakeup",)),
)
LIVE_HEADER = f"{'TIME(s)':<9} {'COMM':<16} {'PID':>7} {'TID':>7} {'KIND':<6} {'D(ms)':>9}  WAIT-SITE"


class DStateTrace:
    """One dstate run: owns its BpfTracer, collects sleeps, prints live lines."""

    def __init__(self, target: Target, *, live: bool = True, json_out: Optional[JsonLines] = None,
                 min_ms: float = 1.0, min_event_ms: float = 0.0, out: Any = None) -> None:
        self.target = target
        self.live = live
        self.json_out = json_out
        self.min_live_ns = int(min_ms * 1e6)
        self.out = out or sys.stdout
        self.tracer = BpfTracer(
            "dstate",
            hooks=HOOKS,
            rings={"dstate_events": "dstate_event"},
            options={"kt_filter_pids": target.filtered, "min_event_ns": int(min_event_ms * 1e6)},
            follow_children=target.follow,
        )
        self.t0_ns = 0
        self.end_ns = 0
        self._batches: list["np.ndarray[Any, Any]"] = []
        self._stacks: dict[int, list[str]] = {}
        self._totals: Optional["pd.DataFrame"] = None
        self._header_done = False

    # -- stacks ---------------------------------------------------------------

    def stack(self, stack_id: int) -> list[str]:
        from .engine.ksyms import kernel_symbols, read_stack

        frames = self._stacks.get(stack_id)
        if frames is None:
            frames = read_stack(self.tracer.obj.map("dstate_stacks"), stack_id, kernel_symbols())
            self._stacks[stack_id] = frames
        return frames

    # -- the contract ---------------------------------------------------------

    def on_batch(self, tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None:
        self._batches.append(batch)
        if not (self.live or self.json_out):
            return
        from .engine.ksyms import wait_site

        for ev in batch[batch["duration_ns"] >= self.min_live_ns]:
            dur = int(ev["duration_ns"])
            t = (int(ev["ts_ns"]) - self.t0_ns) / 1e9
            comm = bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")
            site = wait_site(self.stack(int(ev["stack_id"])), depth=2)
            kind = "io" if ev["iowait"] else "D"
            if self.json_out is not None:
                self.json_out.emit({
                    "type": "dstate", "time_s": round(t, 6), "pid": int(ev["pid"]), "tid": int(ev["tid"]),
                    "comm": comm, "iowait": bool(ev["iowait"]), "duration_ms": dur / 1e6,
                    "state": int(ev["state"]), "wait_site": site,
                })
            elif self.live:
                if not self._header_done:
                    self.out.write(LIVE_HEADER + "\n")
                    self._header_done = True
                self.out.write(f"{t:<9.3f} {comm:<16} {int(ev['pid']):>7} {int(ev['tid']):>7} {kind:<6} "
                               f"{dur / 1e6:>9.3f}  {site}\n")
        if self.live:
            self.out.flush()

    def finish(self) -> None:
        """Reads the in-kernel totals (exact whatever the ring dropped)."""
        import numpy as np
        import pandas as pd

        from .engine.ksyms import wait_site

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

    def frames(self) -> "dict[str, pd.DataFrame]":
        import pandas as pd

        from .engine.records import decode_events

        sleeps = decode_events(self._batches, self.tracer.btf.dtype("dstate_event"))
        sleeps = sleeps.drop(columns=[c for c in sleeps.columns if c.startswith("_")])
        totals = self._totals if self._totals is not None else pd.DataFrame()
        return {"dstate_sleeps": sleeps, "dstate_totals": totals}

    def summary(self, frames: "dict[str, pd.DataFrame]") -> dict[str, Any]:
        from ..analysis.dstate import per_process, top_stacks

        procs = per_process(frames)
        return {
            "processes": procs.to_dict("records"),
            "stacks": top_stacks(frames, 10).to_dict("records"),
        }


def print_report(trace: DStateTrace, frames: "dict[str, pd.DataFrame]", out: Any, top: int = 10) -> None:
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
            as_json: bool, output: Optional[str], verbose: int, min_ms: float) -> int:
    """Uninterruptible (D-state) sleeps of the traced tasks (all tasks without
    -p/-c): count, total and longest per task, split into iowait and other D,
    and the kernel stacks where the time went."""
    from .engine.environment import require_bpf_environment
    from .runner import report_single, run_traces

    target = target_from_options(pids, command, follow, required=False)
    require_bpf_environment()
    json_out = JsonLines() if as_json else None
    trace = DStateTrace(target, live=not as_json, json_out=json_out, min_ms=min_ms)
    session = run_traces("dstate", [trace], target, duration)
    try:
        from ..analysis import dstate as rules

        frames = trace.frames()
        findings = rules.findings(frames, duration_s=session.duration_s)
        report_single("dstate", session, trace, frames, findings, json_out, output, print_report)
    finally:
        session.close()
    return 0
