"""``iotrace report DIR`` and ``nstrace report DIR``: the summary and
findings of a recorded run, recomputed from its trace directory by the
tool that wrote it.  No root, no BPF: any machine with the package."""
from __future__ import annotations

import importlib
import io
import os
import sys
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, TextIO

import click

from .engine.environment import UsageProblem

if TYPE_CHECKING:
    from .engine.tool import Tool

__all__ = ["TOOLS", "command", "report_trace", "tool_of"]

# meta.json's "tool" -> the class that wrote the trace (imported when named)
TOOLS = {
    "odirect": ("kerntrace.tracers.odirect", "ODirectTool"),
    "dstate": ("kerntrace.tracers.dstate", "DStateTool"),
    "zombies": ("kerntrace.tracers.zombies", "ZombiesTool"),
    "diagnose": ("kerntrace.tracers.diagnose", "DiagnoseTool"),
    "stat": ("kerntrace.tracers.stat", "StatTool"),
    "ip6mr": ("kerntrace.tracers.ip6mr", "Ip6mrTool"),
    "netns": ("kerntrace.tracers.netns", "NetnsSnapshot"),
    "postmortem": ("kerntrace.tracers.postmortem", "PostmortemLog"),
}


def tool_of(meta: Mapping[str, Any]) -> "Tool":
    name = meta.get("tool")
    if name not in TOOLS:
        raise UsageProblem(f"this kerntrace cannot read traces of {name!r} (it knows {', '.join(sorted(TOOLS))})")
    module, cls = TOOLS[name]
    tool_class = getattr(importlib.import_module(module), cls)
    try:
        return tool_class.from_trace(meta.get("options") or {})
    except TypeError as exc:
        raise UsageProblem(f"trace options not understood by this kerntrace: {exc}") from None


def report_trace(path: str) -> "tuple[Tool, dict[str, Any], list[Any]]":
    """(the tool, the summary envelope, the findings) of the trace at path."""
    from .engine.replay import replay_trace
    from .engine.tracedir import TraceReader

    reader = TraceReader(path)
    tool = tool_of(reader.meta)
    envelope, findings = replay_trace(reader, tool)
    return tool, envelope, findings


FOLDED_TOOLS = ("dstate", "diagnose")


def _check_folded(path: str) -> None:
    """--folded needs kernel stacks of D sleeps: a dstate or diagnose trace."""
    from .engine.tracedir import TraceReader

    name = TraceReader(path).meta.get("tool")
    if name not in FOLDED_TOOLS:
        raise UsageProblem(f"--folded: {path} is a trace of {name}; stacks are in traces of dstate and diagnose")


def _truncation_line(envelope: Mapping[str, Any]) -> str:
    trace = envelope["trace"]
    records = ", ".join(f"{n} {kind}" for kind, n in sorted(trace["records"].items())) or "no records"
    if trace["complete"]:
        return f"Trace {trace['path']}: complete ({records})."
    return (f"Trace {trace['path']}: TRUNCATED, the run did not end cleanly; it holds {records} "
            f"over {envelope['duration_s']:.1f} s, up to its last flush.")


def write_markdown(envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
    from ..analysis.report import findings_markdown, run_line

    out.write(f"# {envelope['tool']} on {envelope.get('host')} ({envelope.get('kernel')})\n\n")
    out.write(f"Started {envelope.get('started')}; target: {envelope.get('target')}.\n\n")
    out.write(f"{run_line(envelope)}.\n\n{_truncation_line(envelope)}\n\n")
    out.write(f"## Findings ({len(findings)})\n\n")
    out.write(findings_markdown(findings) if findings else "None.\n")


@click.command("report")
@click.argument("trace_dirs", metavar="DIR...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="The summary envelope as one JSON object (several traces: the fleet report as one).")
@click.option("--md", "as_md", is_flag=True, help="Markdown: the run and its findings with evidence tables.")
@click.option("--html", "html_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write one self-contained HTML page to FILE: the findings, then charts (needs matplotlib). "
                   "Prints where it went; with --json or --md, those too.")
@click.option("--folded", is_flag=True,
              help="Only the D time per kernel stack, in microseconds, root first (`frame;frame N`), for "
                   "flamegraph.pl and speedscope: traces of dstate and diagnose.")
@click.option("--s3-endpoint", metavar="URL",
              help="The S3-compatible server of s3:// URLs (e.g. http://minio:9000); default AWS_ENDPOINT_URL_S3 "
                   "or AWS_ENDPOINT_URL, else AWS. Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
                   "AWS_SESSION_TOKEN; region AWS_REGION.")
def command(trace_dirs: tuple[str, ...], as_json: bool, as_md: bool, html_path: Optional[str], folded: bool,
            s3_endpoint: Optional[str]) -> int:
    """The summary and findings of a trace directory written with -o DIR,
    recomputed from its records (a killed run's trace included: reported as
    truncated, with what it holds).  Needs neither root nor BPF.  With
    --html FILE alone, prints only where the page went.

    Several DIRs, a directory holding traces (the DaemonSet's node=NODE/...
    tree) or an S3 URL s3://bucket/prefix of one: each node's findings and
    a fleet summary, which nodes show which finding and the worst."""
    if sum((as_json, as_md, folded)) > 1:
        raise UsageProblem("one of --json, --md and --folded")
    from .engine.tracedir import is_trace_dir

    if len(trace_dirs) > 1 or any(d.startswith("s3://") for d in trace_dirs) or (
            os.path.isdir(trace_dirs[0]) and not is_trace_dir(trace_dirs[0])):
        return _fleet(trace_dirs, as_json, as_md or folded or bool(html_path), s3_endpoint)
    if s3_endpoint:
        raise UsageProblem("--s3-endpoint: for s3:// URLs")
    trace_dir = trace_dirs[0]
    if folded:
        _check_folded(trace_dir)
    if html_path:
        from .html import check_html_path

        check_html_path(html_path)   # before the replay: a long trace takes a while
    tool, envelope, findings = report_trace(trace_dir)
    if html_path:
        from .engine.tracedir import TraceReader
        from .html import write_html_report

        written = write_html_report(html_path, TraceReader(trace_dir), tool, envelope, findings)
        line = (f"Wrote {written.path}: {written.size / 1024:.0f} KiB, findings: {len(findings)}, "
                f"charts: {len(written.charts)} ({', '.join(written.charts) or 'none'})"
                + (f"; no data for {', '.join(written.no_data)}" if written.no_data else "") + ".\n")
        if not (as_json or as_md):
            sys.stdout.write(line)
            return 0
        sys.stderr.write(line)
    if folded:
        from ..analysis.dstate import folded_lines

        part = getattr(tool, "dstate", tool)   # diagnose holds a dstate tool
        sys.stdout.write("".join(line + "\n" for line in folded_lines(part.frames())))
    elif as_json:
        from .engine.records import json_line

        sys.stdout.write(json_line(envelope))
    elif as_md:
        write_markdown(envelope, findings, sys.stdout)
    else:
        buffer = io.StringIO()
        tool.print_report(envelope, findings, buffer)
        sys.stdout.write(buffer.getvalue() + "\n" + _truncation_line(envelope) + "\n")
    return 0


def _fleet(roots: "tuple[str, ...]", as_json: bool, one_trace_only: bool, s3_endpoint: Optional[str]) -> int:
    """Several traces: per-node findings and the fleet summary (text or --json)."""
    if one_trace_only:
        raise UsageProblem("--md, --html and --folded take one trace directory; a fleet report is text or --json")
    if s3_endpoint and not any(root.startswith("s3://") for root in roots):
        raise UsageProblem("--s3-endpoint: for s3:// URLs")
    from .fleet import find_traces, fleet_report, write_fleet_text

    report = fleet_report(find_traces(roots, s3_endpoint))
    if as_json:
        from .engine.records import json_line

        sys.stdout.write(json_line(report))
    else:
        write_fleet_text(report, sys.stdout)
    return 0
