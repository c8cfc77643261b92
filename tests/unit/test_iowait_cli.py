"""dstate, zombies, diagnose: bad input is one line and exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args):
    code = "import sys; from kerntrace.tracers.cli import iotrace_main; sys.exit(iotrace_main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


@pytest.mark.parametrize("args", [
    ("dstate", "-p", "999999999"),
    ("zombies", "-c", "no-such-program-here"),
    ("diagnose", "-p", "1", "-c", "true"),
    ("diagnose", "-d", "-3"),
    ("zombies", "--min-zombie", "x"),
    ("diagnose", "-o", "/etc/passwd", "-d", "0"),
])
def test_bad_input_is_one_line_exit_2(args):
    res = run(*args)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["dstate", "zombies", "diagnose"])
def test_help(name):
    res = run(name, "--help")
    assert res.returncode == 0 and "-p, --pid" in res.stdout and "--json" in res.stdout
