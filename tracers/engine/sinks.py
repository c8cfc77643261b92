"""Where a run's records and summary go: the terminal, JSON Lines, a trace
file.  A sink is a plug-in of the run: the engine hands each one every batch
and, at the end, the summary envelope."""
from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, TextIO

from .records import json_line

if TYPE_CHECKING:
    from .clock import Clock
    from .tool import Tool

__all__ = ["JsonSink", "Sink", "TextSink", "TraceFileSink"]


class Sink:
    # Set when the reader of the sink's stream went away (`| head`): the run
    # ends as if the user had stopped it.
    closed = False

    def begin(self, tool: "Tool", clock: "Clock") -> None:
        """Tracing is attached; no record has been shown yet."""

    def events(self, tool: "Tool", obj: str, ring: str, events: Any, clock: "Clock") -> None:
        """One batch, as the tool's update() returned it."""

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        """The run is over: the summary envelope and the findings."""


def _write(sink: Sink, stream: TextIO, text: str) -> None:
    """Writes and flushes; a reader that went away (EPIPE) closes the sink,
    and stdout then points at /dev/null so no later flush fails."""
    if sink.closed:
        return
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        sink.closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


class TextSink(Sink):
    """Live lines under a header, then the tool's report."""

    def __init__(self, out: Optional[TextIO] = None, live: bool = True, report: bool = True) -> None:
        self._out = out
        self.live = live
        self.report = report

    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout  # the stdout of the moment (tests capture it)

    def begin(self, tool: "Tool", clock: "Clock") -> None:
        header = tool.live_header(clock) if self.live else ""
        if header:
            _write(self, self.out, header + "\n")

    def events(self, tool: "Tool", obj: str, ring: str, events: Any, clock: "Clock") -> None:
        if not self.live:
            return
        text = tool.live_lines(obj, ring, events, clock)
        if text:
            _write(self, self.out, text)

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        if self.report and not self.closed:
            buffer = io.StringIO()
            tool.print_report(envelope, findings, buffer)
            _write(self, self.out, buffer.getvalue())


class JsonSink(Sink):
    """JSON Lines: the tool's records as they come, the envelope last."""

    def __init__(self, out: Optional[TextIO] = None) -> None:
        self._out = out

    def events(self, tool: "Tool", obj: str, ring: str, events: Any, clock: "Clock") -> None:
        lines = "".join(json_line(record) for record in tool.json_records(obj, ring, events, clock))
        if lines:
            _write(self, self._out or sys.stdout, lines)

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        _write(self, self._out or sys.stdout, json_line(envelope))


class TraceFileSink(Sink):
    """-o PATH: what the tool recorded, written at the end of the run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        tool.write_output(self.path, envelope)
