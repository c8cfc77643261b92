"""`report DIR`: a trace directory back through its tool.

Every part goes to the tool's replay() in the order the run wrote them,
end.json's state to restore_end(); the summary and findings are then the
tool's own, computed as the live run computed them.  No root, no BPF."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .run import _envelope_head
from .tracedir import TraceReader

if TYPE_CHECKING:
    from .tool import Tool

__all__ = ["replay_trace"]


def replay_trace(reader: TraceReader, tool: "Tool") -> tuple[dict[str, Any], list[Any]]:
    """(summary envelope, findings) of the run the trace recorded."""
    meta = reader.meta
    records: dict[str, int] = {}
    parts = 0
    for kind, table in reader.tables():
        tool.replay(kind, table)
        records[kind] = records.get(kind, 0) + table.num_rows
        parts += 1
    end = reader.end
    if end is not None:
        tool.restore_end(end.get("state", {}))
        duration_s = float(end.get("duration_s", 0.0))
        stop_reason = end.get("stop_reason")
        lost_events = int(end.get("lost_events", 0))
    else:
        # A run that did not end cleanly (kill -9, OOM kill, panic): its
        # trace ends with its last flushed record.
        last = reader.last_ts_ns()
        start = int(meta.get("clock", {}).get("start_ns", 0))
        duration_s = round(max(0.0, (last - start) / 1e9), 3) if last is not None and start else 0.0
        stop_reason = "trace truncated: the run did not end cleanly (killed, or the machine went down)"
        lost_events = 0
    findings = list(tool.findings(duration_s))
    out = _envelope_head(meta.get("tool", tool.name), 0)
    out.update(version=meta.get("version"), host=meta.get("host"), kernel=meta.get("kernel"),
               started=meta.get("started"))
    out.update(
        duration_s=duration_s,
        lost_events=lost_events,
        hooks=meta.get("hooks", []),
        stop_reason=stop_reason,
        backend=meta.get("backend"),
        btf_file=meta.get("btf_file"),
        transport=meta.get("transport"),
        target=meta.get("target"),
        findings=[f.as_dict() for f in findings],
    )
    if end is not None and "command_exit" in end:
        out["command_exit"] = end["command_exit"]
    out.update(tool.summary(duration_s))
    out["trace"] = {"path": reader.path, "complete": reader.complete, "parts": parts, "records": records}
    return out, findings
