"""The HTML report's charts: matplotlib figures saved as SVG, inlined.

SVG with its text kept as text (svg.fonttype "none"): a chart is a few tens
of KiB, sharp at any zoom, needs no script, and its titles, labels and
numbers can be searched and copied in the browser.  Each chart comes with
its numbers as a table (under "Data"), so what is drawn can be read, and
checked, exactly.  matplotlib is imported here only: the tracing commands
never load it (it takes about half a second).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ContextManager, Sequence, cast

from .series import (BLOCK_SERIES, BUFFERED_SERIES, O_DIRECT_SERIES, DSleeps, Latency, NetnsTimeline, Timeline,
                     TraceData, ZombieSteps)

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Chart", "Table", "charts_for", "dstate_chart", "format_ns", "latency_chart", "netns_chart", "timeline_chart",
           "zombies_chart"]

WIDTH_IN = 9.5
MIB = float(1 << 20)
# One meaning, one colour, in every chart (tab10's): red for iowait and
# O_DIRECT, orange for D-state I/O waits, blue for buffered reads.
RED, ORANGE, BLUE, GREY, BLACK = "#d62728", "#ff7f0e", "#1f77b4", "#7f7f7f", "#222222"
SERIES_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8")
# One vertical line per mark up to this many; beyond, the first ones only
# (the table under the chart lists them all).
MAX_MARKS = 400
STYLE: dict[str, Any] = {
    "svg.fonttype": "none",          # text stays text: searchable, small
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.titlesize": 12,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
}


@dataclass
class Table:
    """Numbers behind a chart: columns as (key, heading), rows of values."""

    caption: str
    columns: Sequence[tuple[str, str]]
    rows: list[list[Any]]


@dataclass
class Chart:
    id: str
    title: str
    caption: str
    svg: str = ""            # inline SVG; "" when there is nothing to draw
    no_data: str = ""        # why nothing is drawn
    tables: list[Table] = field(default_factory=list)


# -- common -------------------------------------------------------------------------------------


def _figure(height_in: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, height_in), layout="constrained")


def _svg(fig: "Figure", chart_id: str, title: str) -> str:
    """The figure as SVG to put in the page: no XML prolog, no metadata,
    every id prefixed with the chart's (the page holds several charts:
    matplotlib numbers its groups the same in each), sized by the page."""
    import matplotlib

    buffer = io.StringIO()
    # The salt makes clip-path and marker ids a function of the chart, not
    # random: the same trace gives the same report.
    with matplotlib.rc_context(cast(Any, {**STYLE, "svg.hashsalt": chart_id})):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = re.sub(r'\bid="', f'id="{chart_id}-', svg)
    svg = svg.replace("url(#", f"url(#{chart_id}-")
    svg = re.sub(r'href="#', f'href="#{chart_id}-', svg)
    root_end = svg.index(">")
    root = svg[:root_end]
    view_box = re.search(r'viewBox="([^"]*)"', root)
    attributes = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                  f'class="chart" role="img" aria-labelledby="{chart_id}-title" '
                  f'viewBox="{view_box.group(1) if view_box else ""}" version="1.1">')
    return attributes + f'<title id="{chart_id}-title">{_xml(title)}</title>' + svg[root_end + 1:]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _styled() -> ContextManager[Any]:
    import matplotlib

    return matplotlib.rc_context(cast(Any, STYLE))


def _none_note(ax: "Axes", text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=GREY, fontsize=9,
            style="italic")


def _time_axis(ax: "Axes", end_s: float, started: str) -> None:
    ax.set_xlim(0, end_s)
    ax.set_xlabel(f"seconds since the trace started{f' ({started})' if started else ''}")


def _round(value: float, digits: int = 3) -> Any:
    if value != value:   # NaN: not measured
        return ""
    return round(float(value), digits)


def format_ns(ns: float) -> str:
    """A latency with its unit, two or three figures: 512 ns, 4.1 µs, 16 ms."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.2g} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{ns:.0f} ns"


def _grid_rows(edges: "np.ndarray[Any, Any]") -> list[list[Any]]:
    return [[_round(a), _round(b)] for a, b in zip(edges[:-1].tolist(), edges[1:].tolist())]


# -- iowait, D state and reads on one time axis -------------------------------------------------


def timeline_chart(tl: Timeline, started: str) -> Chart:
    chart_id = "chart-timeline"
    title = "CPU iowait, tasks in D state and reads over time"
    grid = tl.grid
    per = "second" if grid.bin_s == 1 else f"{grid.bin_s:g} s"
    caption = (f"Per {per}, on one time axis. CPU iowait: the share of CPU time spent idle waiting for I/O, from "
               f"{tl.cpu_source or 'no counters in this trace'}. Tasks in D: how many traced tasks were in D state on "
               f"average, from {tl.d_source or 'no D-state records in this trace'}. Reads: the bytes per second of "
               f"the processes that read the most, from {tl.readers_source or 'no read records in this trace'}, "
               "against the disks' reads of the whole host.")
    if tl.empty:
        return Chart(chart_id, title, caption, no_data="no counters, D-state or read records in this trace")
    panels = [name for name, present in (("cpu", tl.cpu_iowait_pct is not None), ("d", tl.d_all is not None),
                                          ("reads", bool(tl.readers) or tl.disk_read is not None
                                           or bool(tl.readers_source))) if present]
    with _styled():
        fig = _figure(0.9 + 2.0 * len(panels))
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        edges = grid.edges
        for ax, panel in zip(axes, panels):
            if panel == "cpu":
                assert tl.cpu_iowait_pct is not None
                values = tl.cpu_iowait_pct
                ax.stairs(values, edges, fill=True, color=RED, alpha=0.35, label="CPU iowait")
                ax.stairs(values, edges, color=RED, linewidth=1.2)
                top = max(float(_nanmax(values)), 1.0)
                ax.set_ylim(0, min(100.0, top * 1.25) if top > 0 else 5)
                ax.set_ylabel("CPU iowait (%)")
                ax.set_title("CPU time in iowait (all CPUs)", loc="left")
                if not _nanmax(values) > 0:
                    _none_note(ax, "no iowait: 0 % throughout")
            elif panel == "d":
                assert tl.d_all is not None
                who = "tasks of the host" if tl.d_whole_host else "traced tasks"
                ax.stairs(tl.d_all, edges, fill=True, color=GREY, alpha=0.3,
                          label="blocked (procs_blocked)" if tl.d_whole_host else "all D-state sleeps")
                if tl.d_iowait is not None:
                    ax.stairs(tl.d_iowait, edges, color=ORANGE, linewidth=1.6, label="waiting for I/O (iowait)")
                top = float(_nanmax(tl.d_all))
                ax.set_ylim(0, top * 1.25 if top > 0 else 1)
                ax.set_ylabel("tasks in D (average)")
                ax.set_title(f"{who[0].upper()}{who[1:]} in D state (uninterruptible sleep)", loc="left")
                ax.legend(loc="upper right")
                if not top > 0:
                    _none_note(ax, "no task of the host was blocked" if tl.d_whole_host
                               else "no traced task slept in D state")
            else:
                # Stacked: the top of the stack is what they read together,
                # to hold against the disks' line (O_DIRECT: the same).
                below: Any = 0.0
                for i, (label, rate) in enumerate(tl.readers):
                    above = below + rate / MIB
                    ax.stairs(above, edges, baseline=below, fill=True, alpha=0.8,
                              color=SERIES_COLOURS[i % len(SERIES_COLOURS)], label=label)
                    below = above
                if tl.disk_read is not None:
                    ax.stairs(tl.disk_read / MIB, edges, color=BLACK, linewidth=1.0, linestyle="--",
                              label="disks read (whole host)")
                ax.set_ylabel("MiB/s")
                ax.set_ylim(bottom=0)
                ax.set_title("File reads of the top readers (stacked), and the disks' reads", loc="left")
                if tl.readers or tl.disk_read is not None:
                    ax.legend(loc="upper right", ncol=2)
                if not tl.readers:
                    _none_note(ax, "no file reads by traced processes")
        _time_axis(axes[-1], grid.end, started)
        fig.suptitle(title)
        svg = _svg(fig, chart_id, title)
    columns: list[tuple[str, str]] = [("from_s", "from (s)"), ("to_s", "to (s)")]
    series: list["np.ndarray[Any, Any]"] = []
    if tl.cpu_iowait_pct is not None:
        columns.append(("cpu_iowait_pct", "CPU iowait (%)"))
        series.append(tl.cpu_iowait_pct)
    if tl.d_all is not None:
        columns.append(("d_tasks", "tasks in D"))
        series.append(tl.d_all)
        if tl.d_iowait is not None:
            columns.append(("d_iowait_tasks", "tasks in D for I/O"))
            series.append(tl.d_iowait)
    for i, (label, rate) in enumerate(tl.readers):
        columns.append((f"reader_{i + 1}_mib_s", f"{label} (MiB/s)"))
        series.append(rate / MIB)
    if tl.disk_read is not None:
        columns.append(("disk_read_mib_s", "disks read (MiB/s)"))
        series.append(tl.disk_read / MIB)
    rows = [row + [_round(s[i]) for s in series] for i, row in enumerate(_grid_rows(grid.edges))]
    return Chart(chart_id, title, caption, svg, tables=[Table(f"Per {per}", columns, rows)])


def _nanmax(values: "np.ndarray[Any, Any]") -> float:
    import numpy as np

    return float(np.nanmax(values)) if len(values) and not np.isnan(values).all() else 0.0


# -- read latency ---------------------------------------------------------------------------------


def latency_chart(lat: Latency) -> Chart:
    import numpy as np

    chart_id = "chart-latency"
    title = "Read latency: O_DIRECT vs buffered (log2 histogram)"
    totals = {label: int(counts.sum()) for label, counts in lat.series.items()}
    caption = ("Reads per latency bucket, from the syscall's entry to its return; bucket k holds latencies from "
               "2^k to 2^(k+1) ns and is labelled by its lower bound.  Buffered reads include those the kernel "
               "counted without sending each (its own log-linear histogram, folded into these buckets).  "
               "Block reads: the disk's time per request (issue to completion), for comparison.  " +
               "; ".join(f"{label}: {totals.get(label, 0):,}" for label in (O_DIRECT_SERIES, BUFFERED_SERIES,
                                                                          BLOCK_SERIES)) + ".")
    if not lat.series:
        return Chart(chart_id, title, caption, no_data="no reads or block requests in this trace")
    colours = {O_DIRECT_SERIES: RED, BUFFERED_SERIES: BLUE, BLOCK_SERIES: GREY}
    ks = np.arange(lat.low, lat.high + 1)
    labels = [format_ns(float(1 << int(k))) for k in ks]
    present = [label for label in (O_DIRECT_SERIES, BUFFERED_SERIES, BLOCK_SERIES) if label in lat.series]
    width = 0.8 / len(present)
    with _styled():
        fig = _figure(3.8)
        ax = fig.subplots()
        for i, label in enumerate(present):
            counts = lat.series[label]
            ax.bar(np.arange(len(ks)) + (i - (len(present) - 1) / 2) * width, counts, width=width, log=True,
                   color=colours[label], alpha=0.85 if label != BLOCK_SERIES else 0.55,
                   label=f"{label} ({totals[label]:,})")
        step = max(1, len(ks) // 24)
        ax.set_xticks(np.arange(0, len(ks), step), labels[::step], rotation=45, ha="right")
        ax.set_xlabel("latency (bucket's lower bound)")
        ax.set_ylabel("reads (requests) per bucket, log scale")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper right")
        fig.suptitle(title)
        svg = _svg(fig, chart_id, title)
    columns = [("from_ns", "from (ns)"), ("to_ns", "to (ns)")] + [
        (_key(label), label) for label in present]
    rows = [[1 << int(k), (1 << (int(k) + 1)) - 1] + [int(lat.series[label][i]) for label in present]
            for i, k in enumerate(ks) if any(lat.series[label][i] for label in present)]
    return Chart(chart_id, title, caption, svg, tables=[Table("Counts per bucket", columns, rows)])


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


# -- D state per process --------------------------------------------------------------------------

TOP_D_PROCESSES = 12


def dstate_chart(sleeps: DSleeps) -> Chart:
    import numpy as np

    chart_id = "chart-dstate"
    title = "Time in D state per process"
    processes = sleeps.per_process()
    caption = (f"Seconds each traced process spent in D state (uninterruptible sleep), split into waits for I/O "
               f"(iowait) and the rest; from {sleeps.source}.  Up to {TOP_D_PROCESSES} are drawn, those with the "
               "most; the table lists every one.")
    if not processes:
        return Chart(chart_id, title, caption, no_data="no traced task slept in D state")
    top = processes[:TOP_D_PROCESSES]
    names = [f"{p['comm']} {p['pid']}" for p in top][::-1]
    iowait = np.array([p["iowait_s"] for p in top][::-1])
    other = np.array([p["d_s"] - p["iowait_s"] for p in top][::-1])
    with _styled():
        fig = _figure(1.2 + 0.32 * len(top))
        ax = fig.subplots()
        y = np.arange(len(top))
        ax.barh(y, iowait, color=ORANGE, label="waiting for I/O (iowait)")
        ax.barh(y, other, left=iowait, color=GREY, alpha=0.6, label="other D (not I/O)")
        ax.set_yticks(y, names)
        ax.set_xlabel("seconds in D state")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)
        fig.suptitle(title)
        svg = _svg(fig, chart_id, title)
    columns = [("pid", "pid"), ("comm", "comm"), ("d_s", "D (s)"), ("iowait_s", "iowait (s)")]
    rows = [[p["pid"], p["comm"], _round(p["d_s"], 6), _round(p["iowait_s"], 6)] for p in processes]
    return Chart(chart_id, title, caption, svg, tables=[Table("Per process", columns, rows)])


# -- zombies --------------------------------------------------------------------------------------


def zombies_chart(zs: ZombieSteps, end_s: float, started: str) -> Chart:
    from matplotlib.ticker import MaxNLocator

    chart_id = "chart-zombies"
    title = "Zombies outstanding per parent"
    caption = ("Children that have exited and not yet been reaped, per parent (its pid when the child exited): a "
               "child counts from its exit until it is freed, whoever reaps it; a zombie found at the attach counts "
               "from 0.")
    if not zs.exits:
        return Chart(chart_id, title, caption, no_data="no traced process exited")
    with _styled():
        fig = _figure(3.4)
        ax = fig.subplots()
        for i, (label, (times, counts)) in enumerate(zs.steps.items()):
            ax.step(times, counts, where="post", color=SERIES_COLOURS[i % len(SERIES_COLOURS)], linewidth=1.6,
                    label=label)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0, top=max(int(c.max()) for _t, c in zs.steps.values()) * 1.2 + 0.5)
        ax.set_ylabel("zombies (exited, not reaped)")
        _time_axis(ax, end_s, started)
        ax.legend(loc="upper left")
        fig.suptitle(title)
        svg = _svg(fig, chart_id, title)
    columns = [("parent_pid", "parent pid"), ("parent_comm", "parent comm"), ("exits", "children exited"),
               ("max_outstanding", "most zombies at once"), ("at_end", "zombies at the end"),
               ("zombie_s", "zombie time (s)")]
    rows = [[p[k] for k, _h in columns] for p in zs.parents]
    return Chart(chart_id, title, caption, svg, tables=[Table("Per parent", columns, rows)])


# -- network namespaces ---------------------------------------------------------------------------


def netns_chart(nt: NetnsTimeline, started: str) -> Chart:
    import numpy as np

    chart_id = "chart-netns"
    title = "Network namespaces created and failed, OOM kills and precursor lines"
    grid = nt.grid
    per = "second" if grid.bin_s == 1 else f"{grid.bin_s:g} s"
    caption = (f"Namespace creations per second (unshare, clone, setns into a new one), counted per {per}: those "
               f"that succeeded and those that failed; vertical lines mark each OOM kill ({len(nt.oom_kills)}) and "
               f"each kernel-log precursor line ({len(nt.precursors)}: allocation failures before the crash).")
    if not (nt.created.sum() or nt.failed.sum() or nt.oom_kills or nt.precursors):
        return Chart(chart_id, title, caption, no_data="no namespace attempt, OOM kill or precursor line")
    with _styled():
        fig = _figure(3.6)
        ax = fig.subplots()
        left, widths = grid.edges[:-1], grid.widths
        ax.bar(left, nt.created, width=widths * 0.9, align="edge", color=BLUE, label="created")
        ax.bar(left, nt.failed, width=widths * 0.9, align="edge", bottom=nt.created, color=RED, label="failed")
        for i, (t, _who) in enumerate(nt.oom_kills[:MAX_MARKS]):
            ax.axvline(t, color="#8b0000", linewidth=1.2, label="OOM kill" if i == 0 else None)
        for i, (t, _kind, _line) in enumerate(nt.precursors[:MAX_MARKS]):
            ax.axvline(t, color=ORANGE, linewidth=1.0, linestyle="--",
                       label="kernel-log precursor" if i == 0 else None)
        top = float(np.max(nt.created + nt.failed)) if grid.n else 0.0
        ax.set_ylim(0, top * 1.25 if top > 0 else 1)
        ax.set_ylabel("namespaces per second")
        _time_axis(ax, grid.end, started)
        ax.legend(loc="upper right")
        fig.suptitle(title)
        svg = _svg(fig, chart_id, title)
    rows = [row + [_round(c), _round(f)] for row, c, f in zip(_grid_rows(grid.edges), nt.created.tolist(),
                                                            nt.failed.tolist())]
    marks = ([[_round(t), "OOM kill", who] for t, who in nt.oom_kills]
             + [[_round(t), f"precursor ({kind})", line] for t, kind, line in nt.precursors])
    tables = [Table(f"Per {per}", [("from_s", "from (s)"), ("to_s", "to (s)"), ("created_per_s", "created per s"),
                                   ("failed_per_s", "failed per s")], rows)]
    if marks:
        tables.append(Table("Marks", [("t_s", "time (s)"), ("what", "what"), ("detail", "detail")],
                            sorted(marks, key=lambda m: m[0])))
    return Chart(chart_id, title, caption, svg, tables=tables)


def charts_for(data: TraceData, started: str) -> list[Chart]:
    """Every chart this trace has records for, in reading order."""
    from .series import d_sleeps, latency, netns_timeline, timeline, zombie_steps

    out: list[Chart] = []
    sleeps = d_sleeps(data)
    tl = timeline(data, sleeps)
    if not tl.empty or sleeps is not None:
        out.append(timeline_chart(tl, started))
    lat = latency(data)
    if lat is not None:
        out.append(latency_chart(lat))
    if sleeps is not None:
        out.append(dstate_chart(sleeps))
    zs = zombie_steps(data)
    if zs is not None:
        out.append(zombies_chart(zs, data.grid.end, started))
    nt = netns_timeline(data)
    if nt is not None:
        out.append(netns_chart(nt, started))
    return out

