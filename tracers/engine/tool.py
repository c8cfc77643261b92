"""What a tool tells the engine: the objects it loads (hooks, rings,
options), how it aggregates each batch, how a batch looks in the terminal and
in JSON, and its summary and findings at the end.  The engine owns the run:
a tool never writes its own loop, ready line, summary envelope or file."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

from .tracer import Hook

if TYPE_CHECKING:
    import pyarrow as pa

    from .bcc import BccHook
    from .clock import Clock
    from .metrics import ContainerOf, Family, Series
    from .tracer import BpfTracer, HookChoice

__all__ = ["ObjectSpec", "Tool"]


@dataclass(frozen=True)
class ObjectSpec:
    """One BPF object of a tool: bpf/<name>.bpf.o."""

    name: str
    hooks: Sequence[Hook]
    rings: Mapping[str, str] = field(default_factory=dict)   # ring map -> event struct
    options: Mapping[str, Any] = field(default_factory=dict)  # const volatile globals
    ring_bytes: Optional[int] = None
    # Whether the object includes kerntrace.bpf.h's pid filter (kt_traced,
    # kt_filter_pids, kt_follow_fork): the engine applies the Target to it.
    targeted: bool = True
    # Records of the -c launcher before it execs (our own comm, the command's
    # pid) are the tracer's, not the command's: dropped, unless a ring's
    # records describe another task than the one that made them.
    keep_launcher: bool = False


class Tool:
    """Defaults for every hook of the run; a tool overrides what it needs."""

    name = ""
    # The name of the tool's BCC program (bpf/<name>.bcc.c) for --backend
    # bcc; None: the tool runs on libbpf CO-RE only.
    bcc_program: Optional[str] = None
    # Its hooks (tracers/engine/bcc.py BccHook), beside the CO-RE HOOKS: the
    # alternatives an old kernel has (kprobes, classic and raw tracepoints).
    bcc_hooks: "Sequence[BccHook]" = ()
    # Seconds between calls of tick(); None: no tick.
    tick_interval: Optional[float] = None
    # Set by the tool (in tick) to end the run, e.g. after COUNT intervals.
    stop_reason: Optional[str] = None

    # -- before tracing ------------------------------------------------------

    def objects(self) -> Sequence[ObjectSpec]:
        return ()

    def loaded(self, tracers: "Mapping[str, BpfTracer]") -> None:
        """After load, before attach: fill maps the programs read."""

    def hook_notes(self, choices: Sequence["HookChoice"]) -> list[str]:
        """Lines after the ready line's hooks: what an unavailable hook means
        for this tool."""
        return []

    def started(self, clock: "Clock") -> None:
        """Attached, the Target applied; before a command is started."""

    def before_spawn(self) -> None:
        """Just before the -c command is started."""

    def spawned(self, pid: int) -> None:
        """The -c command runs as pid."""

    # -- while tracing -------------------------------------------------------

    def update(self, obj: str, ring: str, batch: Any) -> Any:
        """Aggregate one batch; returns what the sinks show of it (the
        batch itself by default, or the batch with names attached)."""
        return batch

    def tick(self) -> Sequence[tuple[str, Any]]:
        """Every tick_interval: (stream, events) pairs for the sinks."""
        return ()

    def live_header(self, clock: "Clock") -> str:
        """The column header of the live lines ('' for none)."""
        return ""

    def live_lines(self, obj: str, ring: str, events: Any, clock: "Clock") -> str:
        return ""

    def json_records(self, obj: str, ring: str, events: Any, clock: "Clock") -> Iterable[Mapping[str, Any]]:
        return ()

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        """--prometheus: the tool's series as they stand now (called on the
        run's thread, about once a second); series.per_container bounds the
        container label, containers names a pid's or a cgroup's container."""
        return []

    # -- after tracing -------------------------------------------------------

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """After the last drain, before the objects close: read maps.
        Returns late (obj, ring, events) for the sinks (records read from
        a map at the end, a last partial interval)."""
        return ()

    def summary(self, duration_s: float) -> dict[str, Any]:
        """The tool's own keys of the summary envelope."""
        return {}

    def findings(self, duration_s: float) -> list[Any]:
        return []

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        """The end-of-run text report (tables, findings)."""

    # -- the trace directory (-o DIR) and `report` ----------------------------

    def trace_options(self) -> dict[str, Any]:
        """What rebuilds this tool for `report` (its options), in meta.json."""
        return {}

    @classmethod
    def from_trace(cls, options: Mapping[str, Any]) -> "Tool":
        """The tool as `report` rebuilds it from meta.json's options."""
        return cls(**options)

    def attach_events(self) -> Sequence[tuple[str, str, Any]]:
        """Records of the state found at attach (from /proc), as
        (obj, ring, events) for the sinks; after started()."""
        return ()

    def trace_records(self, obj: str, ring: str, events: Any, clock: "Clock") -> "Iterable[tuple[str, pa.Table]]":
        """What the trace directory keeps of one batch: (kind, Arrow table)
        pairs.  A tool's aggregates must be a function of these records (and
        of end_state()), so that `report` recomputes what the run showed."""
        return ()

    def replay(self, kind: str, table: "pa.Table") -> None:
        """`report`: one stored part, in the order the run wrote them."""

    def end_state(self) -> dict[str, Any]:
        """What finish() read from the kernel and /proc at the end (JSON),
        for end.json."""
        return {}

    def restore_end(self, state: Mapping[str, Any]) -> None:
        """`report`: end.json's state back in the tool."""
