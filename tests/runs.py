"""Running a tool the way a command does, without its output: the kernel
tests drive the engine's one run path with a trace directory (-o DIR), and
read every record of the run back from it, as `report` and DuckDB do."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from typing import Any, Optional

from kerntrace.tracers.engine.run import Run
from kerntrace.tracers.engine.sinks import TraceDirSink
from kerntrace.tracers.engine.target import Target
from kerntrace.tracers.engine.tracedir import TraceReader


_TRACES: list[str] = []


def _trace_dir() -> str:
    if not _TRACES:
        _TRACES.append(tempfile.mkdtemp(prefix="kt-traces-"))
        atexit.register(shutil.rmtree, _TRACES[0], True)
    return tempfile.mkdtemp(prefix="trace-", dir=_TRACES[0])


class TracedRun:
    """A finished Run and the trace it wrote: .envelope, .findings,
    .session, .tool, and .frames() (every record, one DataFrame per kind)."""

    def __init__(self, run: Run, path: str) -> None:
        self.run = run
        self.path = path

    @property
    def trace(self) -> TraceReader:
        return TraceReader(self.path)

    def frames(self) -> Any:
        return self.trace.frames()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)


def run_quiet(tool: Any, target: Target, duration: Optional[float] = None, sinks: Any = (),
              trace_dir: Optional[str] = None) -> TracedRun:
    """Runs tool on target to its end (the command's exit, or duration),
    writing a trace directory; returns the finished run with its trace."""
    path = trace_dir or _trace_dir()
    run = Run("test", tool, target, list(sinks) + [TraceDirSink(path)], duration=duration, quiet=True)
    run.execute()
    return TracedRun(run, path)


class Attached:
    """A tool attached on target until close(), drained by hand (tests that
    act, then look at what the tool made of it)."""

    def __init__(self, tool: Any, target: Optional[Target] = None) -> None:
        self.tool = tool
        self.path = _trace_dir()
        self.sink = TraceDirSink(self.path)
        self.run = Run("test", tool, target or Target(), [self.sink], quiet=True)
        self.run.attach()
        self.tool.started(self.run.clock)
        self.sink.begin(tool, self.run.clock, self.run.meta())
        for obj, ring, events in self.tool.attach_events():
            self.run._show(obj, ring, events)

    def collect(self) -> Any:
        """Drains every ring through the tool and the trace; returns every
        record written so far, one DataFrame per kind."""
        self.run.drain()
        self.sink.writer.flush()
        self.sink.writer.wait()
        return TraceReader(self.path).frames()

    def close(self) -> None:
        self.run.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tool, name)  # the tool's figures, e.g. summary()


def file_modes(root: str) -> tuple[set[int], set[int]]:
    """The permission bits of the directories (root included) and of the
    files under root: a trace directory's must be 0700 and 0600."""
    dirs, files = {os.stat(root).st_mode & 0o777}, set()
    for base, subdirs, names in os.walk(root):
        dirs |= {os.stat(os.path.join(base, d)).st_mode & 0o777 for d in subdirs}
        files |= {os.stat(os.path.join(base, n)).st_mode & 0o777 for n in names}
    return dirs, files


def wait_ready(proc: "subprocess.Popen[str]", what: str) -> None:
    """Reads a tracer's stderr up to its ready line ("... Ctrl-C to end"):
    it has attached.  Ends the test if the tracer ends first, with what it said."""
    line = ""
    while "Ctrl-C to end" not in line:
        line = proc.stderr.readline() if proc.stderr is not None else ""
        if not line:
            proc.wait(timeout=60)
            raise AssertionError(f"{what} ended before its ready line: {proc.stderr.read() if proc.stderr else ''}")
