"""Render findings and summary tables for a terminal, or as Markdown."""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, TextIO

from .findings import Finding

__all__ = ["findings_markdown", "format_table", "print_findings", "run_line"]

_MARK = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "-"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = ()) -> str:
    """Plain aligned columns, numbers right-aligned."""
    if not rows:
        return "(none)"
    cols = list(columns) or list(rows[0].keys())
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]

    def line(values: Iterable[str]) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([line(c.upper() for c in cols)] + [line(row) for row in cells])


def print_findings(findings: Sequence[Finding], out: TextIO) -> None:
    if not findings:
        out.write("\nFindings: none.\n")
        return
    out.write(f"\nFindings ({len(findings)}):\n")
    for f in findings:
        out.write(f"\n[{_MARK.get(f.severity, f.severity)}] {f.id}: {f.title}\n")
        out.write(f"  {f.summary}\n")
        if f.evidence:
            table = format_table(f.evidence)
            out.write("  Evidence:\n" + "\n".join("    " + ln for ln in table.splitlines()) + "\n")
        if f.recommendation:
            out.write(f"  Fix: {f.recommendation}\n")
        for ref in f.references:
            out.write(f"  See: {ref}\n")


def findings_markdown(findings: Sequence[Finding]) -> str:
    parts = []
    for f in findings:
        parts.append(f"### {f.id} ({f.severity}): {f.title}\n\n{f.summary}\n")
        if f.evidence:
            cols = list(f.evidence[0].keys())
            parts.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
            for row in f.evidence:
                parts.append("| " + " | ".join(_cell(row.get(c, "")) for c in cols) + " |")
            parts.append("")
        if f.recommendation:
            parts.append(f"**Fix:** {f.recommendation}\n")
    return "\n".join(parts)


def run_line(envelope: Mapping[str, Any]) -> str:
    """The first line of every end-of-run report, from the summary envelope."""
    line = (f"Traced {envelope['duration_s']:.1f} s ({envelope.get('stop_reason') or 'ended'}); "
            f"lost events: {envelope['lost_events']}")
    if envelope.get("command_exit") is not None:
        line += f"; command exit status {envelope['command_exit']}"
    return line
