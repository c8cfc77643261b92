"""The command lines: one-line errors with exit 2, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args):
    code = "import sys; from kerntrace.tracers.cli import iotrace_main, nstrace_main; sys.exit({}(sys.argv[1:]))"
    tool, *rest = args
    fn = "iotrace_main" if tool == "iotrace" else "nstrace_main"
    return subprocess.run([sys.executable, "-c", code.format(fn), *rest], capture_output=True, text=True)


@pytest.mark.parametrize("args", [("iotrace", "nope"), ("nstrace", "nope"), ("iotrace", "doctor", "--bogus")])
def test_bad_input_is_one_line_exit_2(args):
    res = run(*args)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "error:" in res.stderr


def test_help_lists_commands_without_importing_them():
    res = run("iotrace", "--help")
    assert res.returncode == 0
    for name in ("doctor", "odirect", "dstate", "zombies", "diagnose", "stat"):
        assert name in res.stdout


def test_logging_follows_stderr_after_an_in_process_run(capsys):
    """A command run in-process (CliRunner, a test) sets logging up while
    sys.stderr is its own, then closes it: later records still reach the
    stderr of the moment, with no "Logging error" traceback."""
    import io
    import logging
    import sys

    from kerntrace.tracers.options import setup_logging

    borrowed = io.StringIO()
    real, sys.stderr = sys.stderr, borrowed
    try:
        setup_logging(0)
    finally:
        sys.stderr = real
    borrowed.close()
    logging.getLogger("kerntrace.test").warning("after the run")
    err = capsys.readouterr().err
    assert err == "kerntrace.test: after the run\n"
    logging.basicConfig(force=True)
