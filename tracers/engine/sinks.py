"""Where a run's records and summary go: the terminal, JSON Lines, a trace
file.  A sink is a plug-in of the run: the engine hands each one every batch
and, at the end, the summary envelope."""
from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, TextIO

from .labels import add_label_columns, json_labels
from .records import json_line

if TYPE_CHECKING:
    from .clock import Clock
    from .tool import Tool

__all__ = ["JsonSink", "Sink", "TextSink", "TraceDirSink", "TraceOutput"]


class Sink:
    # Set when the reader of the sink's stream went away (`| head`): the run
    # ends as if the user had stopped it.
    closed = False
    # Seconds between idle() calls; None: none wanted.
    idle_s: Optional[float] = None

    def attached(self, tracers: Mapping[str, Any]) -> None:
        """The run's BPF objects (name -> BpfTracer), once attached."""

    def begin(self, tool: "Tool", clock: "Clock", meta: Mapping[str, Any]) -> None:
        """Tracing is attached; no record has been shown yet.  meta: the
        run's facts (host, kernel, hooks, clock, argv)."""

    def events(self, tool: "Tool", obj: str, ring: str, events: Any, clock: "Clock") -> None:
        """One batch, as the tool's update() returned it."""

    def idle(self) -> None:
        """Called a few times a second, events or not."""

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        """The run is over: the summary envelope and the findings."""


def _write(sink: Sink, stream: TextIO, text: str) -> None:
    """Writes all of text; a reader that went away (EPIPE) closes the sink,
    and stdout then points at /dev/null so no later flush fails.

    A file descriptor is written with os.write until every byte is out:
    CPython's buffered writer drops the rest of a write to a full pipe that
    a signal cut short (Ctrl-C while `iotrace ... | less` waits), and the
    run goes on after SIGINT to write its summary."""
    if sink.closed:
        return
    try:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation: a StringIO
            stream.write(text)
            stream.flush()
            return
        stream.flush()   # anything written through the stream before, in order
        view = memoryview(text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
        while view:
            view = view[os.write(fd, view):]
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

    def begin(self, tool: "Tool", clock: "Clock", meta: Mapping[str, Any]) -> None:
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
        lines = "".join(json_line(json_labels(record)) for record in tool.json_records(obj, ring, events, clock))
        if lines:
            _write(self, self._out or sys.stdout, lines)

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        _write(self, self._out or sys.stdout, json_line(envelope))


class TraceOutput(str):
    """-o DIR as the commands pass it on: the path, and how often to flush."""

    flush_s: Optional[float]

    def __new__(cls, path: str, flush_s: Optional[float] = None) -> "TraceOutput":
        self = super().__new__(cls, path)
        self.flush_s = flush_s
        return self


class TraceDirSink(Sink):
    """-o DIR: the tool's records written as the run goes (see tracedir)."""

    idle_s = 0.1
    failed = False

    def __init__(self, path: str, flush_s: Optional[float] = None) -> None:
        from .tracedir import DEFAULT_FLUSH_S, TraceWriter

        self.writer = TraceWriter(path, flush_s if flush_s is not None else DEFAULT_FLUSH_S)

    def begin(self, tool: "Tool", clock: "Clock", meta: Mapping[str, Any]) -> None:
        self._guard(self.writer.start, meta)

    def events(self, tool: "Tool", obj: str, ring: str, events: Any, clock: "Clock") -> None:
        if self.failed:
            return
        for kind, table in tool.trace_records(obj, ring, events, clock):
            self.writer.append(kind, add_label_columns(table))
        self._guard(self.writer.flush_if_due)

    def idle(self) -> None:
        if not self.failed:
            self._guard(self.writer.flush_if_due)

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        if self.failed:
            return
        end = {k: envelope[k] for k in ("duration_s", "lost_events", "stop_reason", "command_exit") if k in envelope}
        end["state"] = tool.end_state()
        self._guard(self.writer.finish, end, envelope)

    def _guard(self, call: Any, *args: Any) -> None:
        """A trace that cannot be written (disk full, the filesystem gone)
        stops there, with one line; tracing and its report go on."""
        try:
            call(*args)
        except OSError as exc:
            self.failed = True
            print(f"kerntrace: -o {self.writer.path}: {exc.strerror or exc}; the trace stops here "
                  f"(what was written before stays readable), tracing goes on", file=sys.stderr, flush=True)
