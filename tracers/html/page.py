"""The report page: one HTML file that needs nothing else.

Everything is inline (styles, the charts' SVG); there is no script, and the
page's Content-Security-Policy forbids loading anything (default-src
'none'), so it opens the same on a laptop without network and can never
call out.  References are shown as text, not links, for the same reason.
Findings come first, in the rules' order, then the charts, then the run's
terminal report.
"""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

from .charts import Chart, Table

__all__ = ["CSP", "MAX_TABLE_ROWS", "render_page"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
# Rows of an evidence table shown before the rest fold away
EVIDENCE_SHOWN = 10
# A data table is cut here (the trace holds every row): keeps a long run's
# page small.
MAX_TABLE_ROWS = 500
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

STYLE = """
:root { --fg: #1d1d1f; --muted: #5f6368; --line: #dadce0; --bg: #ffffff; --panel: #f8f9fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 0 0 6px; }
.sub { color: var(--muted); margin: 0 0 14px; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; font-size: 14px; }
dl.run dt { color: var(--muted); }
dl.run dd { margin: 0; overflow-wrap: anywhere; }
nav { font-size: 14px; margin: 14px 0 0; color: var(--muted); }
nav a { color: #1a55c4; margin-right: 14px; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 14px 0; background: #fde8ea; color: #8c0016;
          border: 1px solid #f4b6be; }
.finding { border: 1px solid var(--line); border-left: 6px solid var(--sev); border-radius: 6px;
           padding: 12px 16px; margin: 0 0 14px; background: var(--bg); }
.finding.critical { --sev: #c5221f; } .finding.warning { --sev: #e37400; } .finding.info { --sev: #1a73e8; }
.sev { display: inline-block; font-size: 12px; font-weight: 700; letter-spacing: .04em; color: #fff;
       background: var(--sev); border-radius: 4px; padding: 1px 7px; margin-right: 8px; vertical-align: 2px; }
.fid { color: var(--muted); font: 13px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.summary { margin: 4px 0 10px; }
.fix { background: #e6f4ea; border-radius: 4px; padding: 8px 12px; margin: 10px 0 0; }
.refs { color: var(--muted); font-size: 13px; margin: 8px 0 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure { margin: 0 0 28px; padding: 14px 16px; border: 1px solid var(--line); border-radius: 6px; }
figure svg.chart { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin: 8px 0 0; }
figure.no-data .nodata { color: var(--muted); font-style: italic; padding: 18px 0; }
details { margin: 8px 0 0; }
summary { cursor: pointer; color: #1a55c4; font-size: 13.5px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px;
      font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-x: auto; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 36px; border-top: 1px solid var(--line);
         padding-top: 10px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e("" if value is None else value)
    if isinstance(value, float):
        return _e(f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "-")
    if isinstance(value, (list, tuple)):
        return _e(", ".join(str(v) for v in value))
    return _e(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f'<th data-key="{_e(k)}">{_e(h)}</th>' for k, h in columns)
    body = "".join("<tr>" + "".join(f'<td class="n">{_cell(v)}</td>' if _numeric(v) else f"<td>{_cell(v)}</td>"
                                    for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table{f" class={css!r}" if css else ""}><thead><tr>{head}</tr></thead>' \
           f"<tbody>{body}</tbody></table></div>"


def _evidence(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    columns = [(k, k) for k in keys]
    values = [[row.get(k, "") for k in keys] for row in rows]
    shown = _table(columns, values[:EVIDENCE_SHOWN], "evidence")
    if len(values) <= EVIDENCE_SHOWN:
        return shown
    return shown + (f"<details><summary>{len(values) - EVIDENCE_SHOWN} more rows</summary>"
                    f"{_table(columns, values[EVIDENCE_SHOWN:], 'evidence')}</details>")


def _finding(f: Mapping[str, Any]) -> str:
    severity = str(f.get("severity", "info"))
    parts = [f'<article class="finding {_e(severity)}" id="finding-{_e(f.get("id", ""))}">',
             f'<h3><span class="sev">{_e(severity.upper())}</span>{_e(f.get("title", ""))} '
             f'<span class="fid">{_e(f.get("id", ""))}</span></h3>',
             f'<p class="summary">{_e(f.get("summary", ""))}</p>',
             _evidence(f.get("evidence") or [])]
    if f.get("recommendation"):
        parts.append(f'<p class="fix"><b>Fix:</b> {_e(f["recommendation"])}</p>')
    refs = f.get("references") or []
    if refs:
        parts.append('<p class="refs">See: ' + " · ".join(f"<code>{_e(r)}</code>" for r in refs) + "</p>")
    parts.append("</article>")
    return "".join(parts)


def _data_table(table: Table) -> str:
    rows = table.rows[:MAX_TABLE_ROWS]
    cut = (f'<p class="sub">{len(table.rows) - MAX_TABLE_ROWS} more rows are in the trace.</p>'
           if len(table.rows) > MAX_TABLE_ROWS else "")
    return f"<p><b>{_e(table.caption)}</b></p>{_table(table.columns, rows, 'chart-data')}{cut}"


def _chart(chart: Chart) -> str:
    tables = "".join(_data_table(t) for t in chart.tables)
    data = f"<details><summary>Data</summary>{tables}</details>" if tables else ""
    if not chart.svg:
        return (f'<figure id="{_e(chart.id)}" class="no-data" data-chart="{_e(chart.id)}"><h3>{_e(chart.title)}</h3>'
                f'<p class="nodata">No data: {_e(chart.no_data)}.</p>'
                f"<figcaption>{_e(chart.caption)}</figcaption></figure>")
    return (f'<figure id="{_e(chart.id)}" data-chart="{_e(chart.id)}">{chart.svg}'
            f"<figcaption>{_e(chart.caption)}</figcaption>{data}</figure>")


def _run_facts(envelope: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    trace = envelope.get("trace") or {}
    records = ", ".join(f"{n:,} {kind}" for kind, n in sorted((trace.get("records") or {}).items())) or "none"
    facts = [
        ("Host", f"{envelope.get('host')} (kernel {envelope.get('kernel')})"),
        ("Target", envelope.get("target") or "-"),
        ("Started", envelope.get("started") or "-"),
        ("Traced", f"{float(envelope.get('duration_s') or 0):.1f} s; {envelope.get('stop_reason') or 'ended'}"),
        ("Lost events", envelope.get("lost_events", 0)),
    ]
    if envelope.get("command_exit") is not None:
        facts.append(("Command exit status", envelope["command_exit"]))
    facts += [
        ("Backend", envelope.get("backend") or "-"),
        ("Trace", f"{trace.get('path', '-')}: {'complete' if trace.get('complete') else 'TRUNCATED'}; {records}"),
        ("kerntrace", meta.get("version") or envelope.get("version") or "-"),
    ]
    return '<dl class="run">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"


def render_page(envelope: Mapping[str, Any], findings: Sequence[Mapping[str, Any]], charts: Sequence[Chart],
                text_report: str, meta: Mapping[str, Any]) -> str:
    prog = str(meta.get("prog") or "").strip() or ("nstrace" if envelope.get("tool") in ("ip6mr", "netns",
                                                                                          "postmortem") else "iotrace")
    name = f"{prog} {envelope.get('tool')}"
    title = f"{name} on {envelope.get('host')}"
    complete = bool((envelope.get("trace") or {}).get("complete"))
    ordered = sorted(findings, key=lambda f: SEVERITY_ORDER.get(str(f.get("severity")), 3))
    drawn = [c for c in charts if c.svg]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}: kerntrace report</title>",
        f"<style>{STYLE}</style></head><body><main>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="sub">kerntrace report: {len(findings)} finding{"s" if len(findings) != 1 else ""}, '
        f"{len(drawn)} chart{'s' if len(drawn) != 1 else ''}</p>",
        _run_facts(envelope, meta),
        '<nav><a href="#findings">Findings</a><a href="#charts">Charts</a><a href="#terminal">Terminal report</a>'
        "</nav></header>",
    ]
    if not complete:
        out.append('<p class="banner">This trace is <b>truncated</b>: the run did not end cleanly (killed, or the '
                   "machine went down). Everything below is what it holds, up to its last flush.</p>")
    lost = int(envelope.get("lost_events") or 0)
    if lost:
        out.append(f'<p class="banner">{lost:,} events were lost (the ring buffers overflowed): the counts and '
                   "charts below undercount what happened; the kernel's own totals (D-state time, counted reads) "
                   "are whole.</p>")
    out.append(f'<section id="findings"><h2>Findings ({len(findings)})</h2>')
    out += [_finding(f) for f in ordered] or ['<p class="sub">None: no rule flagged anything in this run.</p>']
    out.append("</section>")
    out.append('<section id="charts"><h2>Charts</h2>')
    out += [_chart(c) for c in charts] or ['<p class="sub">This kind of trace has no time series to chart.</p>']
    out.append("</section>")
    out.append('<section id="terminal"><h2>Terminal report</h2><details><summary>What '
               f"<code>{_e(prog)} report</code> prints for this trace</summary><pre>{_e(text_report)}</pre>"
               "</details></section>")
    out.append(f"<footer>Made by kerntrace {_e(meta.get('version') or '')} from the trace directory "
               f"{_e((envelope.get('trace') or {}).get('path', ''))}. Self-contained: no scripts, nothing loaded "
               "from the network.</footer></main></body></html>\n")
    return "\n".join(out)
