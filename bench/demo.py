"""``make demo``: the iowait case, reproduced and diagnosed.

Builds the reproduction (tests/iowait_repro.c: a parent forks children
that read a file with O_DIRECT, its wait() after the fork loop), runs it
under ``iotrace diagnose -o DIR``, then runs the fixed variant (buffered
reads, waitpid() per child) the same way.  The program and its data file
live in a temporary directory under /var/tmp (a disk-backed filesystem, so
O_DIRECT reaches the disk), removed at the end; the two traces and their
HTML reports (``iotrace report DIR --html``) are kept in --out (default
/var/tmp/kerntrace-demo), and headless Chromium's screenshot of the bug
run's report goes to docs/report-demo.png (the README shows it).

Run as root from the source tree: ``.venv/bin/python bench/demo.py``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Optional, Sequence

# The reproduction lives with the tests that use it too (not installed).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from iowait_repro import build_repro, make_data_file, repro_argv  # noqa: E402

__all__ = ["main"]

FILE_MIB = 32
WATCHED = ("iowait-cause", "odirect-bypass", "unreaped-children")
OUT_DIR = "/var/tmp/kerntrace-demo"
SCREENSHOT = os.path.join(ROOT, "docs", "report-demo.png")
# The browser's window: the report's width; tall enough for the whole page
# (the blank below it is cut off).
WINDOW = (1100, 7000)
# A palette of this many colours keeps the PNG a few hundred KiB (the page
# is flat colours: nothing visible is lost).
PNG_COLOURS = 256


def main(argv: Optional[Sequence[str]] = None) -> int:
    from kerntrace.tracers.diagnose import run_diagnose
    from kerntrace.tracers.engine.environment import UsageProblem, require_bpf_environment
    from kerntrace.tracers.engine.run import check_output_path
    from kerntrace.tracers.engine.target import Target

    parser = argparse.ArgumentParser(description="the iowait reproduction, diagnosed, then fixed")
    parser.add_argument("--out", default=OUT_DIR, help=f"where the traces and HTML reports go (default {OUT_DIR})")
    parser.add_argument("--screenshot", default=SCREENSHOT, help="the bug run's report as PNG (default %(default)s)")
    args = parser.parse_args(argv)
    runs = {"the bug": ("bug", False), "the fix": ("fixed", True)}
    try:
        require_bpf_environment()
        os.makedirs(args.out, mode=0o755, exist_ok=True)
        for name, _fixed in runs.values():
            check_output_path(os.path.join(args.out, name))
    except (UsageProblem, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if shutil.which("gcc") is None:
        print("demo: gcc is missing (apt-get install gcc)", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="kerntrace-demo-", dir="/var/tmp")
    results: dict[str, Any] = {}
    try:
        binary = build_repro(workdir)
        data = make_data_file(workdir, FILE_MIB)
        for label, (name, fixed) in runs.items():
            argv_ = repro_argv(binary, data, fixed)
            trace = os.path.join(args.out, name)
            print(f"\n=== {label}: iotrace diagnose -o {trace} -c '{' '.join(argv_)}'\n", flush=True)
            results[label] = run_diagnose(Target(argv=argv_, follow=True), None, output_dir=trace)
            sys.stdout.flush()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n=== What changed")
    for label, summary in results.items():
        ids = [f["id"] for f in summary["findings"] if f["id"] in WATCHED]
        print(f"  {label:8} {', '.join(ids) if ids else 'no iowait, O_DIRECT or zombie finding'}")
    print(f"  (the program and its data were in {workdir}, now removed)")
    print("\n=== HTML reports (iotrace report DIR --html FILE)")
    pages = {}
    for label, (name, _fixed) in runs.items():
        written = _html_report(os.path.join(args.out, name), os.path.join(args.out, f"{name}.html"))
        pages[name] = written.path
        print(f"  {label:8} {written.path} ({written.size / 1024:.0f} KiB; charts: {', '.join(written.charts)})")
    shot = _screenshot(pages["bug"], args.screenshot)
    if shot is None:
        print("  no screenshot: chromium is not installed (make deps installs it)")
    else:
        size = os.path.getsize(args.screenshot) / 1024
        print(f"  the bug run's report in headless Chromium: {args.screenshot} ({size:.0f} KiB, {shot[0]}x{shot[1]})")
    _give_back(args.out, args.screenshot if shot else None)
    return 0


def _html_report(trace: str, page: str) -> Any:
    from kerntrace.tracers.engine.tracedir import TraceReader
    from kerntrace.tracers.html import write_html_report
    from kerntrace.tracers.report import report_trace

    tool, envelope, findings = report_trace(trace)
    return write_html_report(page, TraceReader(trace), tool, envelope, findings)


def _screenshot(page: str, png: str) -> Optional[tuple[int, int]]:
    """Headless Chromium's picture of the page, its blank bottom cut, as a
    palette PNG; its size, or None without chromium."""
    from PIL import Image, ImageChops   # matplotlib's own dependency

    browser = shutil.which("chromium")
    if browser is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kerntrace-demo-chromium-") as profile:
        raw = os.path.join(profile, "page.png")
        # Nothing may be fetched: chromium's own services go to a closed port.
        subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
                        "--no-first-run", "--hide-scrollbars", "--disable-background-networking",
                        "--disable-component-update", "--component-updater=url-source=http://127.0.0.1:9/",
                        "--gaia-url=http://127.0.0.1:9/", "--proxy-server=http://127.0.0.1:9",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={raw}",
                        "file://" + os.path.abspath(page)], check=True, capture_output=True, timeout=180)
        image = Image.open(raw).convert("RGB")
    box = ImageChops.difference(image, Image.new("RGB", image.size, (255, 255, 255))).getbbox()
    if box:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    image.quantize(colors=PNG_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        png, optimize=True)
    return image.width, image.height


def _give_back(out: str, png: Optional[str]) -> None:
    """Under sudo, the reports and traces belong to the user who asked (a
    browser run as them must open them), the screenshot to the tree's owner."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid:
        for directory, _dirs, files in os.walk(out):
            for name in [directory] + [os.path.join(directory, f) for f in files]:
                os.chown(name, int(uid), int(gid))
    if png:
        tree = os.stat(os.path.dirname(os.path.abspath(png)))
        os.chown(png, tree.st_uid, tree.st_gid)


if __name__ == "__main__":
    sys.exit(main())
