"""``iotrace report DIR --html`` of the bundled reproduction, rendered in a
real browser: ``iotrace diagnose -o DIR`` runs the bug and the fixed
variant, ``report --html`` writes their pages, and headless Chromium (Debian's
``chromium``) loads each from disk.

Each page is checked as written (each chart's SVG with its title and drawn
paths, the numbers under it: what this kernel's trace gives), then as the
browser built it (--dump-dom: the same checks) and drew it (--screenshot:
the charts' colours are on the pixels).  Every request a page could make is
sent through a proxy the test listens on: the pages must make none."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from html_dom import parse  # tests/html_dom.py
from iowait_repro import build_repro, make_data_file, repro_argv  # tests/iowait_repro.py

CHILDREN = 4
FILE_MIB = 8
CHARTS = {"chart-timeline": "CPU iowait, tasks in D state and reads over time",
          "chart-latency": "Read latency: O_DIRECT vs buffered (log2 histogram)",
          "chart-dstate": "Time in D state per process",
          "chart-zombies": "Zombies outstanding per parent"}
WINDOW = (1100, 6000)


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


# -- the browser ------------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium whose every request goes to a proxy this object
    listens on (.requests: the first line of each).  Chromium's own
    services (network time, component updates, sign-in) are switched off or
    pointed at a closed port, so what reaches the proxy is the page's."""

    # a port nothing listens on (discard): background services get refused there
    CLOSED = "http://127.0.0.1:9/"

    def __init__(self, binary, profiles):
        self.binary = binary
        self.profiles = profiles   # a new profile for each run: none waits on another's lock
        self.requests = []
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self._server.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    head = conn.recv(4096)
                except OSError:
                    head = b""
                self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1") or "(connection)")

    def close(self):
        self._stop.set()
        self._thread.join()
        self._server.close()

    def _run(self, url, *what):
        port = self._server.getsockname()[1]
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.profiles)
        argv = [self.binary, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
                "--no-first-run", "--hide-scrollbars", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", f"--component-updater=url-source={self.CLOSED}",
                f"--gaia-url={self.CLOSED}", "--no-pings", "--disable-domain-reliability",
                "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,Translate,"
                "AutofillServerCommunication",
                f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", *what, url]
        try:
            # Under QEMU/TCG (make vmtest) a page takes about two minutes.
            result = subprocess.run(argv, capture_output=True, text=True, timeout=280)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def dump_dom(self, path):
        return self._run("file://" + os.path.abspath(path), "--dump-dom")

    def screenshot(self, path, png):
        self._run("file://" + os.path.abspath(path), f"--screenshot={png}")
        assert os.path.getsize(png) > 0


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium is not installed (make deps installs it)")
    browser = Chromium(binary, str(tmp_path_factory.mktemp("chromium-profiles")))
    yield browser
    browser.close()


# -- the reproduction's pages -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def repro():
    """The bundled reproduction, built, and its data file."""
    workdir = tempfile.mkdtemp(prefix="kerntrace-test-", dir=os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp"))
    try:
        yield build_repro(workdir), make_data_file(workdir, FILE_MIB)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _page(repro, out, fixed):
    """(trace dir, page, report's line): the reproduction under iotrace
    diagnose -o DIR, then iotrace report DIR --html FILE."""
    binary, data = repro
    name = "fixed" if fixed else "bug"
    trace, page = str(out / name), str(out / f"{name}.html")
    command = " ".join(repro_argv(binary, data, fixed, children=CHILDREN, hold_s=1.5))
    run = subprocess.run([_bin("iotrace"), "diagnose", "-o", trace, "-c", command], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    report = subprocess.run([_bin("iotrace"), "report", trace, "--html", page], capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    return trace, page, report.stdout


# One fixture per run: under QEMU/TCG each takes about two minutes (the VM
# tests' stall watch wants output every 5 minutes).
@pytest.fixture(scope="module")
def bug_page(repro, tmp_path_factory):
    return _page(repro, tmp_path_factory.mktemp("html"), fixed=False)


@pytest.fixture(scope="module")
def fixed_page(repro, tmp_path_factory):
    return _page(repro, tmp_path_factory.mktemp("html"), fixed=True)


def _dom(text):
    return parse(text)


def _external_references(dom):
    bad = []
    for tag, attrs in dom.tags:
        if tag in ("script", "link", "iframe", "object", "embed", "base"):
            bad.append(tag)
        for name in ("src", "href", "xlink:href", "srcset", "action", "poster"):
            value = attrs.get(name)
            if value is not None and not (value.startswith("#") or value.startswith("data:")):
                bad.append(f"<{tag} {name}={value!r}>")
    return bad


def _readers_period(table):
    """Rows (bins) in which the traced processes read from files (more than
    a trickle: the parent's own start-up reads are not the readers')."""
    readers = [k for k in table if k.startswith("reader_")]
    rates = [sum(table[k][i] for k in readers) for i in range(len(table["from_s"]))]
    return [i for i, rate in enumerate(rates) if rate > 0.01 * max(rates, default=0)] if any(rates) else []


# -- the tests --------------------------------------------------------------------------------------


def test_request_detector_sees_a_page_that_calls_out(chromium, tmp_path):
    """The proxy catches what a page fetches: else a page that calls out
    would pass the tests below."""
    page = tmp_path / "calls-out.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://kerntrace.invalid/x.png"></body></html>')
    before = len(chromium.requests)
    chromium.dump_dom(str(page))
    assert any("kerntrace.invalid" in r for r in chromium.requests[before:]), chromium.requests


def _check_bug_page(dom, line):
    """The bug run's page: the iowait case's findings first, every chart
    drawn, the readers' period in the iowait chart.  Returns (timeline's
    table, the readers' bins)."""
    assert _external_references(dom) == []
    assert {"iowait-cause", "odirect-bypass", "unreaped-children"} <= set(dom.finding_ids)
    order = [attrs.get("id") for _tag, attrs in dom.tags if attrs.get("id") in ("findings", "charts")]
    assert order == ["findings", "charts"]
    # each chart drawn: its SVG, titled, with paths (the axes alone make about 10)
    for chart_id, title in CHARTS.items():
        fig = dom.figures.get(chart_id)
        assert fig is not None, f"{chart_id} missing ({line})"
        assert not fig["no_data"] and fig["svg"] == 1, chart_id
        assert fig["titles"][:1] == [title], chart_id
        assert fig["paths"] > 10, (chart_id, fig["paths"])
    # the iowait chart shows the readers' period: D-state iowait while they read
    table = dom.table("chart-timeline")
    period = _readers_period(table)
    assert period, table
    assert max(table["d_iowait_tasks"][i] for i in period) > 0.05, table
    return table, period


def _check_fixed_page(dom):
    """The fixed run's page: none of the iowait case's findings, and no
    iowait from the readers, who read as much (from the page cache)."""
    assert _external_references(dom) == []
    assert not {"iowait-cause", "odirect-bypass", "dstate-io", "unreaped-children"} & set(dom.finding_ids)
    table = dom.table("chart-timeline")
    assert _readers_period(table), "the fixed readers read too (through the page cache)"
    assert max(table["d_iowait_tasks"]) < 0.02, table
    assert dom.figures["chart-timeline"]["svg"] == 1
    # no O_DIRECT reads to draw; the buffered ones are
    latency = dom.table("chart-latency")
    assert "o_direct_reads" not in latency and sum(latency["buffered_file_reads_page_cache"]) > 0


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_bug_run_page_as_written(bug_page, report_result):
    """The page report --html wrote, read as it is (this kernel's trace ->
    the charts' numbers); the browser tests below load the same pages."""
    from kerntrace.tracers.html import MAX_BYTES

    _trace, page, line = bug_page
    size = os.path.getsize(page)
    assert size < MAX_BYTES, size
    table, period = _check_bug_page(_dom(_read(page)), line)
    report_result(f"html report, bug run: {size / 1024:.0f} KiB; while the readers read (s "
                  f"{table['from_s'][period[0]]:g}-{table['to_s'][period[-1]]:g}) tasks in D for I/O up to "
                  f"{max(table['d_iowait_tasks'][i] for i in period):.2f}, CPU iowait up to "
                  f"{max(table['cpu_iowait_pct'][i] for i in period):.1f} %")


def test_fixed_run_page_as_written(fixed_page):
    _check_fixed_page(_dom(_read(fixed_page[1])))


def test_bug_run_page_in_chromium(bug_page, chromium):
    """The DOM the browser built from the page holds every chart (the same
    checks), and the page fetched nothing."""
    _trace, page, line = bug_page
    before = len(chromium.requests)
    _check_bug_page(_dom(chromium.dump_dom(page)), line)
    assert chromium.requests[before:] == [], "the page made network requests"


def test_bug_run_page_drawn_by_chromium(bug_page, chromium, tmp_path):
    """The charts' colours are on the screenshot's pixels."""
    before = len(chromium.requests)
    png = str(tmp_path / "bug.png")
    chromium.screenshot(bug_page[1], png)
    assert chromium.requests[before:] == [], "the page made network requests"
    assert _pixels_near(png, (0xD6, 0x27, 0x28)) > 500      # O_DIRECT bars, the iowait fill's edge (red)
    assert _pixels_near(png, (0xFF, 0x7F, 0x0E)) > 500      # D-state iowait (orange)


def test_fixed_run_page_in_chromium(fixed_page, chromium):
    before = len(chromium.requests)
    _check_fixed_page(_dom(chromium.dump_dom(fixed_page[1])))
    assert chromium.requests[before:] == [], "the page made network requests"


def _pixels_near(png, rgb, tolerance=40):
    import numpy as np
    from PIL import Image   # matplotlib's own dependency

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - np.array(rgb, dtype=np.int16)) <= tolerance).all(axis=2).sum())
