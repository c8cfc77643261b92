"""Running one or more XTrace objects (see CONTRACT.md) on one Target: load,
attach, trace the pids or start the command, poll, finish, and the JSON Lines
summary and Parquet file that every iotrace command writes the same way."""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol, Sequence

from .engine.records import JsonLines
from .engine.target import Target
from .engine import BpfTracer, Session, describe_choices

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..analysis.findings import Finding

__all__ = ["Trace", "run_traces", "summary_line", "ready_line"]


class Trace(Protocol):
    tracer: BpfTracer

    def on_batch(self, tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None: ...
    def finish(self) -> None: ...
    def frames(self) -> "dict[str, pd.DataFrame]": ...
    def summary(self, frames: "dict[str, pd.DataFrame]") -> dict[str, Any]: ...


def ready_line(name: str, target: Target, session: Session) -> str:
    return (f"iotrace {name}: tracing {target.describe()}; Ctrl-C to end\n"
            f"hooks: {describe_choices(session.choices)}")


def run_traces(
    name: str,
    traces: Sequence[Trace],
    target: Target,
    duration: Optional[float],
    tick: Optional[Callable[[], None]] = None,
    before_spawn: Optional[Callable[[Session], None]] = None,
    on_spawn: Optional[Callable[[int], None]] = None,
    on_start: Optional[Callable[[Session], None]] = None,
    quiet: bool = False,
) -> Session:
    """Runs the traces to their end and calls finish() on each; the caller
    closes the returned session once it has read what it needs."""
    by_tracer = {id(t.tracer): t for t in traces}

    def sink(tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None:
        by_tracer[id(tracer)].on_batch(tracer, ring, batch)

    session = Session([t.tracer for t in traces])
    try:
        session.start()
        for trace in traces:
            setattr(trace, "t0_ns", session.started_ns)
        if target.pids:
            session.trace_pids(target.pids)
            for pid in target.pids:
                session.watch_exit(pid)
        if on_start is not None:
            on_start(session)
        if not quiet:
            print(ready_line(name, target, session), file=sys.stderr, flush=True)
        if target.argv and duration != 0:
            if before_spawn is not None:
                before_spawn(session)
            pid = session.spawn(target.argv)
            if on_spawn is not None:
                on_spawn(pid)
        session.run(sink, duration=duration, tick=tick)
        for trace in traces:
            setattr(trace, "end_ns", session.ended_ns or time.monotonic_ns())
            trace.finish()
    except BaseException:
        session.close()
        raise
    return session


def summary_line(tracer_name: str, session: Session, parts: Mapping[str, Any],
                 findings: "Sequence[Finding]") -> dict[str, Any]:
    """The last JSON line: the same keys for every iotrace command."""
    out: dict[str, Any] = {
        "type": "summary",
        "tracer": tracer_name,
        "duration_s": round(session.duration_s, 3),
        "lost_events": session.lost_events,
        "hooks": [c.as_dict() for c in session.choices],
    }
    out.update(parts)
    out["findings"] = [
        {k: v for k, v in f.as_dict().items() if k != "references"} for f in findings
    ]
    if session.stop_reason:
        out["stop_reason"] = session.stop_reason
    if session.child_status is not None:
        out["command_exit"] = session.child_status
    return out


def write_trace(path: str, frames: "Mapping[str, pd.DataFrame]", tracer_name: str, session: Session,
                extra: Optional[Mapping[str, Any]] = None) -> None:
    from .engine.records import write_parquet

    meta = {
        "tracer": tracer_name,
        "duration_s": session.duration_s,
        "lost_events": session.lost_events,
        "hooks": [c.as_dict() for c in session.choices],
        "started_ns": session.started_ns,
    }
    meta.update(extra or {})
    write_parquet(frames, path, meta)


def report_single(name: str, session: Session, trace: Trace, frames: "Mapping[str, pd.DataFrame]",
                  findings: "Sequence[Finding]", json_out: Optional[JsonLines], output: Optional[str],
                  print_tables: Callable[[Any, Any, Any], None]) -> None:
    """The end of a one-tracer command: the JSON summary line, or the text
    report (run line, tables, findings); then the trace file if asked."""
    from ..analysis.report import print_findings

    if json_out is not None:
        json_out.emit(summary_line(name, session, trace.summary(dict(frames)), findings))
    else:
        out = sys.stdout
        out.write(f"\nTraced {session.duration_s:.1f} s ({session.stop_reason}); "
                  f"lost events: {session.lost_events}\n")
        print_tables(trace, frames, out)
        print_findings(findings, out)
    if output:
        write_trace(output, frames, name, session)


def emit_json(json_out: Optional[JsonLines], line: Mapping[str, Any]) -> None:
    if json_out is not None:
        json_out.emit(line)
