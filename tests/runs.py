"""Running a tool the way a command does, without its output: the kernel
tests drive the engine's one run path and read what the tool aggregated."""
from __future__ import annotations

from typing import Any, Optional

from kerntrace.tracers.engine.run import Run
from kerntrace.tracers.engine.target import Target


def run_quiet(tool: Any, target: Target, duration: Optional[float] = None, sinks: Any = ()) -> Run:
    """Runs tool on target to its end (the command's exit, or duration);
    returns the finished Run: run.envelope, run.findings, run.session
    (stop_reason, child_status), and the tool with its frames."""
    run = Run("test", tool, target, list(sinks), duration=duration, quiet=True)
    run.execute()
    return run


class Attached:
    """A tool attached on target until close(), drained by hand (tests that
    act, then look at what the tool made of it)."""

    def __init__(self, tool: Any, target: Optional[Target] = None) -> None:
        self.tool = tool
        self.run = Run("test", tool, target or Target(), [], quiet=True)
        self.run.attach()

    def collect(self) -> Any:
        """Drains every ring through the tool; returns its frames (built
        afresh: the tool caches them once built)."""
        self.run.drain()
        self.tool._frames = None
        return self.tool.frames()

    def close(self) -> None:
        self.run.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tool, name)  # the tool's figures, e.g. summary()
