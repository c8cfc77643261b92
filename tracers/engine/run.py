"""The one run path of every tracing command.

    Target + Tool + sinks -> open the tool's objects, write their options
    (the Target's pid filter among them) -> load -> tool.loaded -> attach ->
    apply the Target (traced pids, exit watch, follow-fork) -> ready line ->
    start the -c command -> poll: each batch -> tool.update -> every sink
    -> end (duration, the traced processes gone, SIGINT/SIGTERM) ->
    tool.finish -> summary envelope + findings -> every sink.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence, TextIO

from . import probe
from .backend import Backend, bcc_refusal
from .backend_env import backend_from_env
from .clock import Clock, rfc3339_ns
from .environment import UsageProblem
from .session import LAUNCHER_COMM, Session
from .target import Target
from .tracer import BpfTracer, describe_choices

if TYPE_CHECKING:
    import numpy as np

    from .bcc import BccTracer

    from .metrics import Exporter
    from .sinks import Sink
    from .tool import ObjectSpec, Tool

__all__ = ["Run", "build_sinks", "check_output_path", "kerntrace_version", "ready_line", "run_tool", "snapshot_envelope"]


def kerntrace_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kerntrace")
    except PackageNotFoundError:
        return "0+unknown"


def ready_line(prog: str, tool: str, target: Target, hooks: str, backend: Optional[Backend] = None,
               transport: Optional[str] = None) -> str:
    """The one ready line of every tracing command (stderr), and the hooks
    line, which ends with how records travel (ring or perf buffer) and the
    backend that runs them."""
    line = f"{prog} {tool}: tracing {target.describe()}; Ctrl-C to end\nhooks: {hooks}"
    if transport is not None:
        line += f"; transport {transport}"
    return f"{line}; backend {backend.describe()}" if backend is not None else line


def _envelope_head(tool: str, started_epoch_ns: int) -> dict[str, Any]:
    return {
        "type": "summary",
        "tool": tool,
        "version": kerntrace_version(),
        "host": platform.node(),
        "kernel": platform.release(),
        "started": rfc3339_ns(started_epoch_ns),
    }


def snapshot_envelope(tool: str, started_epoch_ns: int, findings: Sequence[Any], **keys: Any) -> dict[str, Any]:
    """The envelope of a command that reads state once and attaches nothing
    (netns, postmortem, doctor): the same keys as a tracing run's."""
    out = _envelope_head(tool, started_epoch_ns)
    out.update(duration_s=0.0, lost_events=0, hooks=[], stop_reason="snapshot", backend=None, btf_file=None,
               transport=None, findings=[f.as_dict() for f in findings])
    out.update(keys)
    return out


class Run:
    """One run of a tool on a Target, to its end."""

    def __init__(self, prog: str, tool: "Tool", target: Target, sinks: Sequence["Sink"], *,
                 duration: Optional[float] = None, utc: bool = False, quiet: bool = False,
                 status: Optional[TextIO] = None, backend: Optional[Backend] = None) -> None:
        self.prog = prog
        self.tool = tool
        self.target = target
        # none given (a Run made from Python, e.g. by the kernel tests):
        # KERNTRACE_BACKEND/KERNTRACE_BTF, as the command line's defaults
        self.backend = backend if backend is not None else backend_from_env()
        self.sinks = list(sinks)
        self.duration = duration
        self.quiet = quiet
        self.status = status
        self.clock = Clock(utc)
        self.tracers: dict[str, BpfTracer] = {}
        self.session: Optional[Session] = None
        self.envelope: dict[str, Any] = {}
        self.findings: list[Any] = []
        self._launcher: Optional[tuple[int, bytes]] = None
        self._keep_launcher: set[str] = set()

    # -- the run -------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        """Runs to the end; returns the summary envelope (findings as dicts;
        the Finding objects are in self.findings)."""
        try:
            session = self.attach()
            session.catch_signals()
            self.tool.started(self.clock)
            if not self.quiet:
                lines = [ready_line(self.prog, self.tool.name, self.target, describe_choices(session.choices),
                                    self.backend if self.tracers else None, self.transport)]
                print("\n".join(lines + self.tool.hook_notes(session.choices)), file=self.status or sys.stderr, flush=True)
            if self.duration == 0:  # -d 0: attach, the ready line, nothing more
                self.envelope = {}
                return self.envelope
            meta = self.meta()
            for sink in self.sinks:
                sink.attached(self.tracers)
                sink.begin(self.tool, self.clock, meta)
            for obj, ring, events in self.tool.attach_events():
                self._show(obj, ring, events)
            if self.target.argv and not session.stop_requested:   # no command once Ctrl-C came
                self.tool.before_spawn()
                try:
                    pid = session.spawn(self.target.argv)
                except OSError as exc:
                    raise UsageProblem(f"cannot start {self.target.argv[0]!r}: {exc.strerror}") from None
                self._launcher = (pid, LAUNCHER_COMM)
                self.tool.spawned(pid)
            # the tool's tick exactly on its interval when no sink needs idle calls
            intervals = [i for i in [self.tool.tick_interval] + [s.idle_s for s in self.sinks] if i]
            self._next_tick = time.monotonic() + (self.tool.tick_interval or 0.0)
            session.run(self.dispatch, duration=self.duration, tick=self._periodic if intervals else None,
                        tick_interval=min(intervals) if intervals else 1.0)
            for obj, ring, events in self.tool.finish():
                self._show(obj, ring, events)
            self._end(session)
        finally:
            self.close()
        return self.envelope

    def attach(self) -> Session:
        """Open, load and attach the tool's objects and apply the Target;
        execute() does this first (tests that poll by hand call it alone,
        then drain() and close())."""
        self._require_backend()
        self._open()
        session = self.session = Session(list(self.tracers.values()))
        session.load()
        self.tool.loaded(self.tracers)
        session.attach()
        self.clock.restart()
        session.started_ns = self.clock.start_ns
        self.started_epoch_ns = self.clock.wall_ns(self.clock.start_ns)
        self._apply_target(session)
        return session

    def drain(self) -> None:
        """Every ring once, through the tool and the sinks."""
        assert self.session is not None
        self.session.drain(self.dispatch)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        else:
            for tracer in self.tracers.values():
                tracer.close()

    def _require_backend(self) -> None:
        """The bcc backend runs the tools with a BCC program (Tool.bcc_program);
        any other stops here, one line, before anything is opened."""
        if self.backend.name == "bcc" and self.tool.bcc_program is None:
            raise UsageProblem(bcc_refusal(f"{self.prog} {self.tool.name}", self.tool.bcc_program))

    def _open(self) -> None:
        # the hook probes and the kernel facts read what the objects' CO-RE reads
        probe.set_kernel_btf(self.backend.btf_file)
        for spec in self.tool.objects():
            self.tracers[spec.name] = self._open_object(spec)
            if spec.keep_launcher:
                self._keep_launcher.add(spec.name)

    def _open_object(self, spec: "ObjectSpec") -> "BpfTracer | BccTracer":
        options = dict(spec.options)
        if spec.targeted:
            options["kt_filter_pids"] = self.target.filtered
            # containers by name as they appear: matched in user space (dispatch)
            options["kt_filter_cgroups"] = self.target.by_container and not self.target.late_match
            # The tracer never records itself (its own reads and sleeps), unless
            # it was asked to trace its own pid.
            options["kt_self_tgid"] = 0 if os.getpid() in self.target.pids else os.getpid()
        follow = spec.targeted and self.target.follow
        if self.backend.name == "bcc":
            from .bcc import BccTracer

            # bpf/<bcc_program>.bcc.c, its records described by the CO-RE object's BTF
            assert self.tool.bcc_program is not None
            return BccTracer(self.tool.bcc_program, spec.name, hooks=self.tool.bcc_hooks, rings=spec.rings,
                             options=options, ring_bytes=spec.ring_bytes, follow_children=follow,
                             targeted=spec.targeted)
        return BpfTracer(spec.name, hooks=spec.hooks, rings=spec.rings, options=options,
                         ring_bytes=spec.ring_bytes, follow_children=follow,
                         btf_custom_path=self.backend.btf_file)

    def _apply_target(self, session: Session) -> None:
        if self.target.by_container and not self.target.late_match:
            session.allow_cgroups(self.target.cgroup_ids)
        if not self.target.pids:
            return
        session.trace_pids(self.target.pids)  # the objects that carry the pid filter
        for pid in self.target.pids:
            session.watch_exit(pid)

    @property
    def transport(self) -> Optional[str]:
        """How the records travel: "ring buffer" or "perf buffer" (None
        without objects); every object of a run takes the same."""
        kinds = sorted({t.transport for t in self.tracers.values() if getattr(t, "transport", None)})
        return ", ".join(kinds) if kinds else None

    # -- while running ------------------------------------------------------

    def dispatch(self, tracer: BpfTracer, ring: str, batch: "np.ndarray[Any, Any]") -> None:
        if self._launcher is not None and tracer.name not in self._keep_launcher:
            batch = self._drop_launcher(batch)
            if not len(batch):
                return
        if self.target.late_match:
            batch = self._keep_containers(batch)
            if not len(batch):
                return
        events = self.tool.update(tracer.name, ring, batch)
        self._show(tracer.name, ring, events)

    def _show(self, obj: str, ring: str, events: Any) -> None:
        if events is None:  # nothing to show yet (records that wait for others)
            return
        for sink in self.sinks:
            sink.events(self.tool, obj, ring, events, self.clock)
        if self.session is not None and any(s.closed for s in self.sinks):
            self.session.request_stop("output closed")

    def _drop_launcher(self, batch: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
        """The -c command waits on a pipe until it is traced, then execs:
        what it did before the exec, under the launcher's comm, is ours."""
        assert self._launcher is not None
        names = batch.dtype.names or ()
        if "pid" not in names or "comm" not in names:
            return batch
        pid, comm = self._launcher
        ours = (batch["pid"] == pid) & (batch["comm"] == comm)
        return batch[~ours] if ours.any() else batch

    def _keep_containers(self, batch: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
        """--container NAME of a watcher (late_match): the records of tasks in
        the named containers, resolved as they come (their cgroups are
        created while the run watches).  Records without cgroups (kernel
        log lines) are kept."""
        import numpy as np

        from .labels import batch_labels, has_cgroups, resolver

        if not has_cgroups(batch.dtype.names or ()):
            return batch
        ids, names = self.target.cgroup_ids, self.target.containers
        keep = np.array([(int(a) in ids or int(b) in ids) or resolver().matches(label, names)
                         for a, b, label in zip(batch["cgroup_id"], batch["cgroup_v1_id"], batch_labels(batch))],
                        dtype=bool)
        return batch if keep.all() else batch[keep]

    def _periodic(self) -> None:
        """A few times a second: the sinks' idle work (a trace's due flush),
        and the tool's tick when its interval is up."""
        for sink in self.sinks:
            sink.idle()
        if self.tool.tick_interval and time.monotonic() >= self._next_tick - 1e-3:
            self._next_tick += self.tool.tick_interval
            self._tick()

    def _tick(self) -> None:
        for stream, events in self.tool.tick():
            self._show("", stream, events)
        if self.tool.stop_reason and self.session is not None:
            self.session.request_stop(self.tool.stop_reason)

    def meta(self) -> dict[str, Any]:
        """The run's facts, known once attached (a trace's meta.json)."""
        assert self.session is not None
        head = _envelope_head(self.tool.name, self.started_epoch_ns)
        del head["type"]
        return {
            **head,
            "prog": self.prog,
            "argv": sys.argv,
            "options": self.tool.trace_options(),
            "target": self.target.describe(),
            "command": self.target.argv,
            "pids": sorted(self.target.pids),
            "hooks": [c.as_dict() for c in self.session.choices],
            "backend": self.backend.name if self.tracers else None,
            "btf_file": self.backend.btf_file if self.tracers else None,
            "transport": self.transport,
            # ts_ns (CLOCK_MONOTONIC) + offset_ns = UTC nanoseconds
            "clock": {"offset_ns": self.clock.offset_ns, "start_ns": self.clock.start_ns},
        }

    # -- the end ------------------------------------------------------------

    def _end(self, session: Session) -> None:
        # rounded once: the trace's end.json keeps this figure, and `report`
        # recomputes duration-based findings from it
        duration_s = round(session.duration_s, 3)
        self.findings = list(self.tool.findings(duration_s))
        out = _envelope_head(self.tool.name, self.started_epoch_ns)
        out.update(
            duration_s=duration_s,
            lost_events=session.lost_events,
            hooks=[c.as_dict() for c in session.choices],
            stop_reason=session.stop_reason,
            backend=self.backend.name if self.tracers else None,
            btf_file=self.backend.btf_file if self.tracers else None,
            transport=self.transport,
            target=self.target.describe(),
            findings=[f.as_dict() for f in self.findings],
        )
        if session.child_status is not None:
            out["command_exit"] = session.child_status
        out.update(self.tool.summary(duration_s))
        self.envelope = out
        for sink in self.sinks:
            sink.end(self.tool, out, self.findings)


def check_output_path(path: Optional[str]) -> None:
    """-o DIR must be writable before anything is attached: one line, exit 2."""
    if path:
        from .tracedir import check_trace_dir

        check_trace_dir(path)


def build_sinks(as_json: bool, output: Optional[str], out: Optional[TextIO] = None,
                live: bool = True, flush_s: Optional[float] = None,
                prometheus: Optional["Exporter"] = None) -> list["Sink"]:
    """The sinks of a command's flags: JSON Lines or text, plus -o DIR,
    plus --prometheus ADDR."""
    from .sinks import JsonSink, TextSink, TraceDirSink

    sinks: list[Sink] = [JsonSink(out) if as_json else TextSink(out, live=live)]
    if output:
        sinks.append(TraceDirSink(output, flush_s if flush_s is not None else getattr(output, "flush_s", None)))
    if prometheus is not None:
        from .metrics import MetricsSink

        sinks.append(MetricsSink(prometheus))
    return sinks


def run_tool(prog: str, tool: "Tool", target: Target, *, duration: Optional[float], as_json: bool,
             output: Optional[str], utc: bool = False, out: Optional[TextIO] = None,
             live: bool = True, flush_s: Optional[float] = None, backend: Optional[Backend] = None,
             prometheus: Optional["Exporter"] = None) -> "Run":
    """A command's whole run from its flags; returns the finished Run."""
    run = Run(prog, tool, target, build_sinks(as_json, output, out, live, flush_s, prometheus), duration=duration,
              utc=utc, backend=backend)
    run.execute()
    return run

