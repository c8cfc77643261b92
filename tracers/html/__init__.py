"""``report DIR --html FILE``: a trace directory as one self-contained HTML
page, findings first, then charts.

    series.py   the charts' numbers from the trace's records (numpy only)
    charts.py   matplotlib figures -> inline SVG, each with its data table
    page.py     the page: findings, charts, the terminal report; no script,
                a Content-Security-Policy that loads nothing

matplotlib is the one extra dependency (``pip install 'kerntrace[html]'``;
``make install`` has it), imported only when a report is written.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ..engine.environment import UsageProblem

if TYPE_CHECKING:
    from ..engine.tool import Tool
    from ..engine.tracedir import TraceReader

__all__ = ["MAX_BYTES", "Written", "check_html_path", "html_report", "require_matplotlib", "write_html_report"]

# The page must stay easy to mail and attach: the charts and tables are
# bounded (bins, rows), so a real trace gives a few hundred KiB.
MAX_BYTES = 5 * 1000 * 1000


@dataclass(frozen=True)
class Written:
    path: str
    size: int
    charts: Sequence[str]      # ids of the charts drawn
    no_data: Sequence[str]     # ids of the charts with nothing to draw


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageProblem("--html needs matplotlib: pip install 'kerntrace[html]' (make install has it)") from None


def check_html_path(path: str) -> None:
    """--html FILE can be written: before a long trace is replayed."""
    require_matplotlib()
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageProblem(f"--html {path}: no such directory {directory}")
    if os.path.isdir(path):
        raise UsageProblem(f"--html {path}: is a directory")


def html_report(reader: "TraceReader", tool: "Tool", envelope: dict[str, Any], findings: Sequence[Any]
                ) -> tuple[str, list[Any]]:
    """(the page, its charts) for a trace replayed by report_trace."""
    require_matplotlib()
    from .charts import charts_for
    from .page import render_page
    from .series import TraceData

    started = str(envelope.get("started") or "")
    started_label = f"at {started[11:19]} UTC" if len(started) >= 19 else ""
    data = TraceData(reader, float(envelope.get("duration_s") or 0.0))
    charts = charts_for(data, started_label)
    text = io.StringIO()
    tool.print_report(envelope, findings, text)
    as_dicts = [f.as_dict() if hasattr(f, "as_dict") else dict(f) for f in findings]
    return render_page(envelope, as_dicts, charts, text.getvalue(), reader.meta), charts


def write_html_report(path: str, reader: "TraceReader", tool: "Tool", envelope: dict[str, Any],
                      findings: Sequence[Any]) -> Written:
    """Writes the page to path (mode 0600, as the trace it shows: it names
    the files processes read), whole or not at all."""
    check_html_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    page, charts = html_report(reader, tool, envelope, findings)
    data = page.encode("utf-8")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageProblem(f"--html {path}: cannot write it: {exc.strerror}") from None
    return Written(path, len(data), [c.id for c in charts if c.svg], [c.id for c in charts if not c.svg])
