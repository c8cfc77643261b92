"""``report`` over a fleet: several trace directories, or the roots that
hold them (the DaemonSet's ``node=NODE/{ip6mr,diagnose}/START/`` tree, on
disk or in S3), each replayed by its tool; then which nodes show which
finding, the worst node of each (highest severity, then biggest figure) and
the worst node of all.  A trace directory is any directory whose
meta.json has kerntrace's trace format."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, TextIO

from .engine.environment import UsageProblem
from .engine.s3 import is_s3_url

if TYPE_CHECKING:
    from .engine.s3 import S3Store

__all__ = ["FIGURES", "find_traces", "fleet_report", "write_fleet_text"]

# A finding's size, to rank one finding across nodes: the sum of an evidence
# column (finding id -> column, unit; scale divides the column).
FIGURES: dict[str, tuple[str, str, float]] = {
    "iowait-cause": ("iowait_s", "s of iowait", 1.0),
    "dstate-io": ("iowait_s", "s in io_schedule", 1.0),
    "odirect-bypass": ("bytes", "MiB read with O_DIRECT", float(1 << 20)),
    "unreaped-children": ("unreaped", "children unreaped", 1.0),
}
_NODE = re.compile(r"(?:^|/)node=([^/]+)")
_MARK = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


@dataclass
class Sources:
    """Where the traces are, and the S3 connection if any is in S3."""

    paths: list[str]
    s3: "Optional[S3Store]" = None
    roots: list[str] = field(default_factory=list)


def _local_traces(root: str) -> list[str]:
    from .engine.tracedir import is_trace_dir

    if not os.path.isdir(root):
        raise UsageProblem(f"{root}: no such directory")
    found = []
    for directory, subdirs, files in os.walk(root):
        if "meta.json" in files and is_trace_dir(directory):
            found.append(directory)
            subdirs.clear()   # a trace holds no other trace
        subdirs.sort()
    return sorted(found)


def _s3_traces(root: str, s3: "S3Store") -> list[str]:
    from .engine.s3 import check_s3_url
    from .engine.tracedir import FORMAT

    check_s3_url(root)
    found = []
    for url in s3.list(root):
        if url.endswith("/meta.json"):
            try:
                meta = json.loads(s3.read(url))
            except ValueError:
                continue
            if isinstance(meta, dict) and meta.get("format") == FORMAT:
                found.append(url[: -len("/meta.json")])
    return found


def find_traces(roots: Sequence[str], s3_endpoint: Optional[str] = None) -> Sources:
    """The trace directories at or under each root, in order; one line and
    exit 2 for a root that holds none."""
    sources = Sources([], roots=list(roots))
    for root in roots:
        if is_s3_url(root):
            if sources.s3 is None:
                from .engine.s3 import s3_store

                sources.s3 = s3_store(s3_endpoint)
            found = _s3_traces(root, sources.s3)
        else:
            found = _local_traces(root)
        if not found:
            raise UsageProblem(f"{root}: no kerntrace trace directory in it (a directory with a meta.json "
                               "of format kerntrace-trace/1)")
        sources.paths += [p for p in found if p not in sources.paths]
    return sources


def node_of(path: str, meta: dict[str, Any]) -> str:
    """The node= of the DaemonSet's layout, else the host the trace names."""
    found = _NODE.findall(path)
    return found[-1] if found else str(meta.get("host") or "?")


def figure_of(finding: dict[str, Any]) -> Optional[float]:
    spec = FIGURES.get(finding["id"])
    if spec is None:
        return None
    column, _unit, scale = spec
    values = [row.get(column) for row in finding.get("evidence") or []]
    return round(sum(float(v) for v in values if isinstance(v, (int, float))) / scale, 3)


def _trace_entry(path: str, s3: "Optional[S3Store]") -> dict[str, Any]:
    from .engine.replay import replay_trace
    from .engine.tracedir import TraceReader
    from .report import tool_of

    reader = TraceReader(path, s3=s3)
    entry: dict[str, Any] = {"node": node_of(path, reader.meta), "trace": path, "tool": reader.meta.get("tool"),
                             "host": reader.meta.get("host"), "started": reader.meta.get("started")}
    try:
        tool = tool_of(reader.meta)
    except UsageProblem as exc:   # a trace this kerntrace cannot read: said, the others reported
        return {**entry, "error": str(exc), "findings": []}
    envelope, findings = replay_trace(reader, tool)
    entry.update(complete=envelope["trace"]["complete"], duration_s=envelope["duration_s"],
                 lost_events=envelope["lost_events"], findings=[])
    for f in findings:
        item = {"id": f.id, "severity": f.severity, "title": f.title, "figure": figure_of(f.as_dict())}
        if item["figure"] is not None:
            item["unit"] = FIGURES[f.id][1]
        entry["findings"].append(item)
    return entry


def _rank(item: dict[str, Any]) -> tuple[int, float]:
    from ..analysis.findings import SEVERITIES

    return SEVERITIES.index(item["severity"]), item.get("figure") or 0.0


def fleet_report(sources: Sources) -> dict[str, Any]:
    """Per trace its node and findings; per finding id the nodes that show
    it and its worst occurrence (highest severity, then biggest figure)."""
    traces = [_trace_entry(path, sources.s3) for path in sources.paths]
    traces.sort(key=lambda t: (t["node"], t["tool"] or "", t["trace"]))
    nodes = sorted({t["node"] for t in traces})
    by_id: dict[str, dict[str, Any]] = {}
    occurrences: list[dict[str, Any]] = []
    for t in traces:
        for f in t["findings"]:
            occurrence = {"node": t["node"], "trace": t["trace"], "tool": t["tool"], **f}
            occurrences.append(occurrence)
            row = by_id.setdefault(f["id"], {"id": f["id"], "title": f["title"], "nodes": [], "worst": occurrence})
            if t["node"] not in row["nodes"]:
                row["nodes"].append(t["node"])
            if _rank(occurrence) > _rank(row["worst"]):
                row["worst"] = occurrence
    summary = sorted(by_id.values(), key=lambda r: (-_rank(r["worst"])[0], -len(r["nodes"]), r["id"]))
    return {"fleet": {"sources": sources.roots, "nodes": nodes, "traces": len(traces)},
            "traces": traces, "summary": summary, "worst": _worst_node(occurrences)}


def _worst_node(occurrences: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The node whose worst finding is most severe, then with the most
    findings of that severity (figures of different findings do not
    compare: seconds of iowait against bytes read)."""
    if not occurrences:
        return None
    top = max(_rank(o)[0] for o in occurrences)
    severity = next(o["severity"] for o in occurrences if _rank(o)[0] == top)
    ids: dict[str, list[str]] = {}
    for o in occurrences:
        if o["severity"] == severity and o["id"] not in ids.setdefault(o["node"], []):
            ids[o["node"]].append(o["id"])
    node = min(ids, key=lambda n: (-len(ids[n]), n))
    return {"node": node, "severity": severity, "findings": ids[node]}


def _figure_text(item: dict[str, Any]) -> str:
    return f", {item['figure']:g} {item['unit']}" if item.get("figure") is not None else ""


def write_fleet_text(report: dict[str, Any], out: TextIO) -> None:
    fleet = report["fleet"]
    out.write(f"Fleet: {len(fleet['nodes'])} node{'s' if len(fleet['nodes']) != 1 else ''}, "
              f"{fleet['traces']} trace{'s' if fleet['traces'] != 1 else ''} ({', '.join(fleet['sources'])}).\n")
    node = None
    for t in report["traces"]:
        if t["node"] != node:
            node = t["node"]
            out.write(f"\nnode {node}\n")
        if "error" in t:
            out.write(f"  {t['tool']}  {t['trace']}: not read: {t['error']}\n")
            continue
        state = "complete" if t["complete"] else "TRUNCATED"
        out.write(f"  {t['tool']}  {t['trace']}  ({state}, {t['duration_s']:.1f} s"
                  + (f", {t['lost_events']} events lost" if t["lost_events"] else "") + ")\n")
        for f in t["findings"]:
            out.write(f"    [{_MARK[f['severity']]}] {f['id']}: {f['title']}{_figure_text(f)}\n")
        if not t["findings"]:
            out.write("    no findings\n")
    out.write("\nFleet summary:\n")
    total = len(fleet["nodes"])
    for row in report["summary"]:
        w = row["worst"]
        out.write(f"  {row['id']}: {len(row['nodes'])} of {total} nodes ({', '.join(row['nodes'])}); "
                  f"worst on {w['node']} ({w['severity']}{_figure_text(w)})\n")
    if not report["summary"]:
        out.write("  no findings on any node\n")
    w = report["worst"]
    if w is not None:
        n = len(w["findings"])
        out.write(f"Worst node: {w['node']}, {n} {w['severity']} finding{'s' if n != 1 else ''} "
                  f"({', '.join(w['findings'])}).\n")
