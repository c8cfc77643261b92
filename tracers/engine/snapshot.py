"""-o DIR of a command that reads state once and attaches nothing (netns,
postmortem): the same trace directory as a tracing run's, written in one go
by a TraceWriter: meta.json (the keys a run's meta has), the snapshot's
record kinds, end.json, summary.json."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from .clock import Clock
from .run import _envelope_head
from .tracedir import DEFAULT_FLUSH_S, TraceWriter

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["snapshot_meta", "write_snapshot"]


def snapshot_meta(tool: str, prog: str, started_epoch_ns: int, clock: Clock, options: Mapping[str, Any],
                  target: Optional[str]) -> dict[str, Any]:
    """meta.json of a snapshot: what Run.meta() says of a run, with no
    hooks, no BPF backend and no traced processes."""
    head = _envelope_head(tool, started_epoch_ns)
    del head["type"]
    return {
        **head,
        "prog": prog,
        "argv": sys.argv,
        "options": dict(options),
        "target": target,
        "command": [],
        "pids": [],
        "hooks": [],
        "backend": None,
        "btf_file": None,
        "clock": {"offset_ns": clock.offset_ns, "start_ns": clock.start_ns},
    }


def write_snapshot(path: str, meta: Mapping[str, Any], tables: Iterable[tuple[str, "pa.Table"]],
                   envelope: Mapping[str, Any], state: Optional[Mapping[str, Any]] = None,
                   flush_s: Optional[float] = None) -> None:
    """The whole trace directory of a snapshot, ended cleanly."""
    writer = TraceWriter(path, flush_s if flush_s is not None else DEFAULT_FLUSH_S)
    writer.start(meta)
    for kind, table in tables:
        writer.append(kind, table)
    end = {k: envelope[k] for k in ("duration_s", "lost_events", "stop_reason") if k in envelope}
    end["state"] = dict(state or {})
    writer.finish(end, envelope)
