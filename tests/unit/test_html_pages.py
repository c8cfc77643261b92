"""report --html on synthetic trace directories (written with TraceWriter):
the numbers behind each chart, the page's structure, its size, and that it
references nothing outside itself.  The browser test is
tests/kernel/test_html_report.py."""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from kerntrace.analysis.findings import Finding
from kerntrace.tracers.engine.tracedir import TraceReader, TraceWriter
from html_dom import Dom  # tests/html_dom.py
from kerntrace.tracers.html.series import (BUFFERED_SERIES, O_DIRECT_SERIES, Grid, TraceData, d_sleeps, grid_for,
                                           latency, netns_timeline, spread, timeline, zombie_steps)

START = 10**12          # the run's start on the boot clock (ns)
DURATION = 5.0
S = 10**9


def ns(t):
    return START + int(round(t * S))


def _dict(values):
    return pa.array(values, pa.string()).dictionary_encode()


def _write(path, tool, kinds, complete=True):
    writer = TraceWriter(str(path))
    writer.start({"tool": tool, "prog": "iotrace" if tool != "ip6mr" else "nstrace", "version": "0.1.0",
                  "host": "testhost", "kernel": "6.1.0", "started": "2026-01-02T03:04:05.000000000Z",
                  "options": {}, "clock": {"offset_ns": 0, "start_ns": START}})
    for kind, table in kinds.items():
        writer.append(kind, table)
    writer.flush()
    writer.wait()
    if complete:
        writer.finish({"duration_s": DURATION, "lost_events": 0, "stop_reason": "process 100 exited",
                       "state": {}}, {"type": "summary"})
    return str(path)


# Three O_DIRECT readers (pids 101-103), 100 reads of 4 KiB a second each
# from 0.5 s to 2.5 s, 100 us each; one buffered reader (104, counted by the
# kernel: 1 MiB in the first second, and a socket that must not count).
# D state: 101 sleeps 1.5 s for I/O (sent) ending at 2.5 s plus 0.1 s of
# short sleeps (counted only), 102 0.5 s of short killable sleeps (counted
# only); CPU iowait 30 % and 20 % in the 2nd and 3rd seconds.  Parent 100's
# three children exit at 2.6 s; it reaps 101 at 2.7 s, the others are freed
# at 4.5 s.
READERS = (101, 102, 103)
READ_TIMES = np.arange(0.5, 2.5, 0.01)


def _diagnose_kinds():
    n = len(READ_TIMES)
    reads = pa.table({
        "ts_ns": pa.array([ns(t) for _p in READERS for t in READ_TIMES], pa.uint64()),
        "latency_ns": pa.array([100_000] * (n * 3), pa.uint64()),
        "pid": pa.array([p for p in READERS for _t in READ_TIMES], pa.uint32()),
        "comm": _dict(["reader"] * (n * 3)),
        "bytes": pa.array([4096] * (n * 3), pa.int64()),
        "path": _dict(["/data/file"] * (n * 3)),
        "direct": pa.array([True] * (n * 3)),
    })
    blocks = pa.table({
        "ts_ns": pa.array([ns(t) for _p in READERS for t in READ_TIMES], pa.uint64()),
        "pid": pa.array([p for p in READERS for _t in READ_TIMES], pa.uint32()),
        "comm": _dict(["reader"] * (n * 3)),
        "bytes": pa.array([4096] * (n * 3), pa.uint32()),
        "op": _dict(["R"] * (n * 3)),
        "attributed": pa.array([True] * (n * 3)),
        "completed": pa.array([True] * (n * 3)),
        "device_ns": pa.array([80_000] * (n * 3), pa.int64()),
    })
    read_total = pa.table({
        "ts_ns": pa.array([ns(1.0), ns(1.0)], pa.uint64()),
        "pid": pa.array([104, 104], pa.uint32()),
        "comm": _dict(["cat", "cat"]),
        "ftype": _dict(["reg", "sock"]),
        "path": _dict(["/data/other", "[sock]"]),
        "reads": pa.array([256, 5], pa.int64()),
        "bytes": pa.array([1 << 20, 640], pa.int64()),
    })
    read_total_hist = pa.table({
        "ts_ns": pa.array([ns(1.0)] * 3, pa.uint64()),
        "pid": pa.array([104] * 3, pa.uint32()),
        "path": _dict(["/data/other", "/data/other", "[sock]"]),
        "slot": pa.array([48, 52, 40], pa.int32()),      # 4.0-5.1 us, 8.2-10 us (log2 12, 13), a socket's
        "count": pa.array([200, 56, 5], pa.int64()),
    })
    sleeps = pa.table({
        "ts_ns": pa.array([ns(2.5)], pa.uint64()),
        "duration_ns": pa.array([int(1.5 * S)], pa.uint64()),
        "pid": pa.array([101], pa.uint32()), "tid": pa.array([101], pa.uint32()),
        "stack_id": pa.array([7], pa.int32()), "iowait": pa.array([True]),
        "comm": _dict(["reader"]),
    })

    def totals(rows, with_ts):
        cols = {"pid": pa.array([r[1] for r in rows], pa.int64()), "tid": pa.array([r[1] for r in rows], pa.int64()),
                "comm": _dict(["reader"] * len(rows)), "stack_id": pa.array([r[2] for r in rows], pa.int32()),
                "iowait": pa.array([r[3] for r in rows]), "count": pa.array([1] * len(rows), pa.int64()),
                "total_ns": pa.array([r[4] for r in rows], pa.int64()),
                "max_ns": pa.array([r[4] for r in rows], pa.int64()), "at_attach": pa.array([False] * len(rows))}
        if with_ts:
            cols = {"ts_ns": pa.array([ns(r[0]) for r in rows], pa.int64()), **cols}
        return pa.table(cols)

    # (tick time, pid, stack, iowait, cumulative ns): what grew each second
    ticks = totals([(1.0, 102, 9, False, int(0.2 * S)), (2.0, 102, 9, False, int(0.5 * S)),
                    (3.0, 101, 7, True, int(1.6 * S))], True)
    final = totals([(None, 102, 9, False, int(0.5 * S)), (None, 101, 7, True, int(1.6 * S))], False)
    counters = pa.table({
        "ts_ns": pa.array([ns(t) for t in (1, 2, 3, 4, 5)], pa.uint64()),
        "t_s": pa.array([1.0, 2.0, 3.0, 4.0, 5.0]), "interval_s": pa.array([1.0] * 5),
        "usr": pa.array([1.0] * 5), "sys": pa.array([1.0] * 5), "idl": pa.array([98.0, 68.0, 78.0, 98.0, 98.0]),
        "wai": pa.array([0.0, 30.0, 20.0, 0.0, 0.0]), "stl": pa.array([0.0] * 5),
        "read_bytes": pa.array([1 << 20, 2 << 20, 1 << 20, 0, 0], pa.int64()),
        "write_bytes": pa.array([0] * 5, pa.int64()),
    })
    events = [(0.1, "fork", p, 100) for p in READERS] + [(2.6, "exit", p, 100) for p in READERS] + [
        (2.7, "wait", 100, 1), (2.7, "free", 101, 100), (4.5, "free", 102, 1), (4.5, "free", 103, 1)]
    zombies = pa.table({
        "ts_ns": pa.array([ns(e[0]) for e in events], pa.uint64()),
        "kind": _dict([e[1] for e in events]),
        "pid": pa.array([e[2] for e in events], pa.uint32()),
        "ppid": pa.array([e[3] for e in events], pa.uint32()),
        "comm": _dict(["reader" if e[2] != 100 else "parent" for e in events]),
        "parent_comm": _dict(["parent" if e[3] == 100 else "init" for e in events]),
    })
    return {"counters": counters, "read": reads, "block": blocks, "read_total": read_total,
            "read_total_hist": read_total_hist, "dstate_sleep": sleeps, "dstate_total_tick": ticks,
            "dstate_total": final, "zombie_event": zombies}


@pytest.fixture
def diagnose_trace(tmp_path):
    return _write(tmp_path / "trace", "diagnose", _diagnose_kinds())


def _data(path):
    return TraceData(TraceReader(path), DURATION)


# -- the numbers ----------------------------------------------------------------------------------


def test_spread_is_exact_over_bins_and_folds_the_outside_in():
    grid = Grid(np.array([0.0, 1.0, 2.0, 2.5]), 1.0)
    got = spread(grid, np.array([0.5, -1.0, 2.4, 1.0]), np.array([1.5, 0.5, 3.0, 1.0]),
                 np.array([10.0, 3.0, 6.0, 1.0]))
    assert got.tolist() == pytest.approx([5 + 3, 5 + 1, 6])


def test_grid_is_per_second_then_wider_for_long_runs():
    assert grid_for(3.5).edges.tolist() == [0, 1, 2, 3, 3.5]
    assert grid_for(3.01).edges.tolist() == [0, 1, 2, 3.01]     # no sliver of a last bin
    long = grid_for(3600)
    assert long.bin_s == 10 and long.n == 360


def test_d_state_places_sent_sleeps_exactly_and_the_counted_rest_by_tick(diagnose_trace):
    data = _data(diagnose_trace)
    sleeps = d_sleeps(data)
    tl = timeline(data, sleeps)
    assert tl.d_all.tolist() == pytest.approx([0.2, 0.3 + 1.0, 0.5 + 0.1, 0, 0])
    assert tl.d_iowait.tolist() == pytest.approx([0, 1.0, 0.6, 0, 0])
    per = {p["pid"]: p for p in sleeps.per_process()}
    assert per[101]["d_s"] == pytest.approx(1.6) and per[101]["iowait_s"] == pytest.approx(1.6)
    assert per[102]["d_s"] == pytest.approx(0.5) and per[102]["iowait_s"] == 0


def test_timeline_cpu_and_file_reads_per_second(diagnose_trace):
    data = _data(diagnose_trace)
    tl = timeline(data, d_sleeps(data))
    assert tl.cpu_iowait_pct.tolist() == pytest.approx([0, 30, 20, 0, 0])
    assert tl.disk_read.tolist() == pytest.approx([1 << 20, 2 << 20, 1 << 20, 0, 0])
    readers = dict(tl.readers)
    for pid in READERS:
        assert readers[f"reader {pid}"].tolist() == pytest.approx([50 * 4096, 100 * 4096, 50 * 4096, 0, 0])
    # the kernel's count of the buffered reader; its socket is no file
    assert readers["cat 104"].tolist() == pytest.approx([1 << 20, 0, 0, 0, 0])


def test_latency_buckets_count_every_read(diagnose_trace):
    lat = latency(_data(diagnose_trace))
    assert lat.low == 12 and lat.high == 16
    assert lat.series[O_DIRECT_SERIES].sum() == 3 * len(READ_TIMES)
    assert lat.series[O_DIRECT_SERIES][16 - 12] == 3 * len(READ_TIMES)      # 100 us: 2^16..2^17 ns
    assert lat.series[BUFFERED_SERIES].tolist() == [200, 56, 0, 0, 0]        # the socket's 5 left out


def test_zombies_outstanding_from_exit_to_free(diagnose_trace):
    zs = zombie_steps(_data(diagnose_trace))
    (times, counts) = zs.steps["parent parent 100"]   # its comm is "parent"
    assert times.tolist() == pytest.approx([0, 2.6, 2.7, 4.5, 5.0])
    assert counts.tolist() == [0, 3, 2, 0, 0]
    (parent,) = zs.parents
    assert (parent["exits"], parent["max_outstanding"], parent["at_end"]) == (3, 3, 0)
    assert parent["zombie_s"] == pytest.approx(0.1 + 1.9 * 2)


def test_netns_attempts_failures_and_marks(tmp_path):
    path = _write(tmp_path / "ns", "ip6mr", _ip6mr_kinds())
    nt = netns_timeline(_data(path))
    assert nt.created.tolist() == [3, 1, 0, 0, 0] and nt.failed.tolist() == [0, 2, 0, 0, 0]
    assert [round(t, 3) for t, _who in nt.oom_kills] == [1.5]
    assert [(round(t, 3), kind) for t, kind, _line in nt.precursors] == [(1.4, "slub-alloc")]


def _ip6mr_kinds():
    from kerntrace.tracers.ip6mr import _host_table

    events = [(0.2, "attempt", 0), (0.4, "attempt", 0), (0.6, "attempt", 0), (1.2, "attempt", 0),
              (1.3, "attempt", -12), (1.6, "attempt", -12), (1.5, "oom", 0)]
    n = len(events)
    ints = {name: pa.array([0] * n, pa.int64()) for name in
            ("latency_ns", "cgroup_id", "flags", "ret", "tid", "ppid", "netns", "old_netns", "fd", "child_pid")}
    netns = pa.table({"ts_ns": pa.array([ns(e[0]) for e in events], pa.uint64()), **ints,
                      "err": pa.array([e[2] for e in events], pa.int32()),
                      "kind": _dict([e[1] for e in events]), "method": _dict(["unshare"] * n),
                      "pid": pa.array(range(500, 500 + n), pa.uint32()), "comm": _dict(["runc"] * n)})
    kmsg = pa.table({"ts_ns": pa.array([ns(1.4), ns(1.5)], pa.uint64()), "pid": pa.array([0, 505], pa.uint32()),
                     "comm": _dict(["", "dd"]), "kind": _dict(["slub-alloc", "oom"]),
                     "text": _dict(["SLUB: Unable to allocate memory on node -1", "Memory cgroup out of memory: "
                                    "Killed process 505 (dd)"])})
    host = _host_table({"release": "4.9.0", "version": "", "distro": "", "ipv6_loaded": True,
                        "ipv6_disabled_at_boot": False, "all_disable_ipv6": 0, "mroute_multiple_tables": "y",
                        "config_source": "", "possible_cpus": 2, "nokmem": False, "kernel_hooks": True})
    return {"host_facts": host, "netns_event": netns, "kmsg": kmsg}


# -- the page ---------------------------------------------------------------------------------------


def _page(path, tool="diagnose", findings=()):
    from kerntrace.tracers.html import html_report

    class Tool:
        def print_report(self, envelope, found, out):
            out.write("the terminal report <with> & escapes\n")

    reader = TraceReader(path)
    envelope = {"tool": tool, "host": "testhost", "kernel": "6.1.0", "started": "2026-01-02T03:04:05.000000000Z",
                "duration_s": DURATION, "lost_events": 0, "stop_reason": "process 100 exited", "target": "pid 100",
                "trace": {"path": path, "complete": reader.complete, "records": {}}}
    page, charts = html_report(reader, Tool(), envelope, list(findings))
    dom = Dom()
    dom.feed(page)
    return page, charts, dom


FINDING = Finding("iowait-cause", "warning", "Who causes the iowait", "3 reader processes caused 100 % of it.",
                  [{"pid": 101, "comm": "reader", "iowait_ms": 1600.0}], "Drop O_DIRECT.", ["man 2 open"])


def test_page_findings_first_then_every_chart_drawn(diagnose_trace):
    pytest.importorskip("matplotlib")
    page, charts, dom = _page(diagnose_trace, findings=[FINDING, Finding("x-info", "info", "An info", "s.")])
    assert page.startswith("<!DOCTYPE html>")
    assert page.index('id="findings"') < page.index('id="charts"') < page.index('id="terminal"')
    # severity order: the warning before the info
    assert page.index('id="finding-iowait-cause"') < page.index('id="finding-x-info"')
    assert "Drop O_DIRECT." in page and "3 reader processes caused 100 % of it." in page
    assert "the terminal report &lt;with&gt; &amp; escapes" in page
    assert [c.id for c in charts] == ["chart-timeline", "chart-latency", "chart-dstate", "chart-zombies"]
    for chart in charts:
        fig = dom.figures[chart.id]
        assert fig["svg"] == 1 and not fig["no_data"], chart.id
        assert fig["titles"] and fig["titles"][0] == chart.title
        assert fig["paths"] > 10, (chart.id, fig["paths"])
        assert chart.title in page
    # the data under the timeline: what the chart draws, per second
    fig = dom.figures["chart-timeline"]
    assert fig["keys"][:5] == ["from_s", "to_s", "cpu_iowait_pct", "d_tasks", "d_iowait_tasks"]
    rows = [r for r in fig["rows"] if r]
    assert [float(r[2]) for r in rows] == [0, 30, 20, 0, 0]
    assert [float(r[4]) for r in rows] == pytest.approx([0, 1.0, 0.6, 0, 0])


def test_page_is_self_contained_and_small(diagnose_trace):
    pytest.importorskip("matplotlib")
    page, _charts, dom = _page(diagnose_trace, findings=[FINDING])
    assert len(page.encode()) < 1_000_000
    tags = {tag for tag, _a in dom.tags}
    assert not tags & {"script", "link", "iframe", "object", "embed", "img", "base", "form", "audio", "video"}
    for tag, attrs in dom.tags:
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster"):
            value = attrs.get(name)
            assert value is None or value.startswith("#") or value.startswith("data:"), (tag, name, value)
    assert not re.search(r"url\(\s*['\"]?(?!#)", page), "a url() that is not a fragment"
    assert "@import" not in page
    (csp,) = [a for t, a in dom.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp["content"]
    ids = [a["id"] for _t, a in dom.tags if "id" in a]
    assert len(ids) == len(set(ids)), "duplicate ids across the inlined charts"
    for _t, attrs in dom.tags:
        for name, value in attrs.items():
            if value and value.startswith("url(#"):
                assert value[5:-1] in ids


def test_page_is_the_same_for_the_same_trace(diagnose_trace):
    pytest.importorskip("matplotlib")
    assert _page(diagnose_trace)[0] == _page(diagnose_trace)[0]


def test_chart_without_data_says_so_and_draws_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    kinds = _diagnose_kinds()
    for kind in ("zombie_event", "dstate_sleep", "dstate_total_tick", "dstate_total"):
        del kinds[kind]
    page, charts, dom = _page(_write(tmp_path / "quiet", "diagnose", kinds))
    by_id = {c.id: c for c in charts}
    for chart_id in ("chart-zombies", "chart-dstate"):
        assert not by_id[chart_id].svg and dom.figures[chart_id]["no_data"]
        assert dom.figures[chart_id]["svg"] == 0
    assert "No data: no traced process exited." in page
    # the D-state tracer ran and saw nothing: its panel is there, at zero
    rows = [r for r in dom.figures["chart-timeline"]["rows"] if r]
    assert all(float(r[3]) == 0 for r in rows)


def test_report_cli_writes_the_page_of_an_nstrace_trace(tmp_path):
    pytest.importorskip("matplotlib")
    from click.testing import CliRunner

    from kerntrace.tracers import report

    trace = _write(tmp_path / "ns", "ip6mr", _ip6mr_kinds())
    out = tmp_path / "ns.html"
    result = CliRunner().invoke(report.command, [trace, "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote {out}:") and "chart-netns" in result.output
    assert (out.stat().st_mode & 0o777) == 0o600
    page = out.read_text()
    dom = Dom()
    dom.feed(page)
    fig = dom.figures["chart-netns"]
    assert fig["svg"] == 1 and fig["paths"] > 10
    assert "OOM kill" in page and "SLUB: Unable to allocate memory" in page


def test_report_html_needs_matplotlib(monkeypatch, tmp_path):
    import builtins

    from kerntrace.tracers.engine.environment import UsageProblem
    from kerntrace.tracers.html import require_matplotlib

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UsageProblem, match=r"pip install 'kerntrace\[html\]'"):
        require_matplotlib()


def test_tracing_commands_do_not_import_matplotlib():
    import subprocess
    import sys

    code = ("import sys, kerntrace.tracers.cli, kerntrace.tracers.report, kerntrace.tracers.diagnose; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or '.html' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
