"""A run of one or more loaded tracers: attach, poll their rings until the
duration passes, the traced processes exit or SIGINT/SIGTERM arrives, then
detach.  Always detaches and drains the rings one last time."""
from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

from .tracer import BpfTracer, HookChoice, destroy_links

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EventSink", "LAUNCHER_COMM", "Session"]

# The comm of a -c command between its fork and its exec.
LAUNCHER_COMM = b"kt-launcher"
_PR_SET_NAME = 15


# /proc/PID/stat's start time is in clock ticks since boot (CLOCK_BOOTTIME),
# the run's start is CLOCK_MONOTONIC: they differ by the time suspended,
# none on a server; a tick of slack covers the rounding.
_BOOT_TO_MONOTONIC_SLACK_NS = 20_000_000

EventSink = Callable[[BpfTracer, str, "np.ndarray[Any, Any]"], None]


class Session:
    """Runs tracers until the duration passes, the traced processes exit or a
    signal arrives.  Always detaches and drains the rings one last time."""

    # Seconds between drains of the rings.  Records wait for the next drain
    # until their ring is half full, when the program wakes the reader
    # early: a wake-up costs the traced task an interrupt (odirect.bpf.c).
    poll_interval = 0.2

    def __init__(self, tracers: Sequence[BpfTracer]) -> None:
        self.tracers = list(tracers)
        self.stop_reason = ""
        self.started_ns = 0
        self.ended_ns = 0
        self.child_pid: Optional[int] = None
        self.child_status: Optional[int] = None  # exit code, or -signal
        self._stop = False
        self._pidfds: dict[int, int] = {}
        # Set when a watched process exited while children are followed: the
        # run goes on until no traced descendant is alive (as strace -f does).
        self._exit_reason: Optional[str] = None
        self._old_handlers: dict[int, Any] = {}


    def load(self) -> None:
        for tracer in self.tracers:
            tracer.load()

    def attach(self) -> None:
        for tracer in self.tracers:
            tracer.attach()
        self.started_ns = time.monotonic_ns()

    def start(self) -> None:
        self.load()
        self.attach()

    def trace_pids(self, pids: Iterable[int]) -> None:
        pids = list(pids)
        for tracer in self.tracers:
            if tracer.targeted:
                tracer.trace_pids(pids)

    def allow_cgroups(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        for tracer in self.tracers:
            if tracer.targeted:
                tracer.allow_cgroups(ids)

    def watch_exit(self, pid: int) -> None:
        """End the run when ``pid`` exits (pidfds poll readable on exit)."""
        try:
            self._pidfds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfds[pid] = -1

    def spawn(self, argv: Sequence[str]) -> int:
        """Start a command that execs only once it is traced: the forked
        child blocks on a pipe until its pid is in every tracer's pid map,
        so not one of its syscalls is missed."""
        read_fd, write_fd = os.pipe()
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        pid = os.fork()
        if pid == 0:  # child
            try:
                # Named until the exec renames it, so that what it does in
                # between (the read of the pipe) is told from the command's.
                prctl(_PR_SET_NAME, ctypes.c_char_p(LAUNCHER_COMM), 0, 0, 0)
                os.close(write_fd)
                # waits in select, not read: odirect counts every read
                select.select([read_fd], [], [])
                os.close(read_fd)
                os.execvp(argv[0], list(argv))
            except BaseException:
                os._exit(127)
        os.close(read_fd)
        self.child_pid = pid
        self.trace_pids([pid])
        self.watch_exit(pid)
        os.write(write_fd, b"x")
        os.close(write_fd)
        return pid

    def request_stop(self, reason: str) -> None:
        if not self._stop:
            self.stop_reason = reason
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def catch_signals(self) -> None:
        """From now on SIGINT and SIGTERM end the run at its next poll rather
        than interrupt it: the engine calls this before the ready line, so a
        Ctrl-C just after it still ends with the summary and the trace."""
        if self._old_handlers:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, lambda s, _f: self.request_stop(signal.Signals(s).name))

    def restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    def run(self, sink: EventSink, duration: Optional[float] = None, tick: Optional[Callable[[], None]] = None,
            tick_interval: float = 1.0) -> None:
        """Poll until stopped; every batch goes to ``sink``."""
        epoll = select.epoll()
        fds: dict[int, Optional[BpfTracer]] = {}
        for tracer in self.tracers:
            for fd in tracer.poll_fds():
                epoll.register(fd, select.EPOLLIN)
                fds[fd] = tracer
        for pid, pidfd in self._pidfds.items():
            if pidfd < 0:
                self.request_stop(f"process {pid} exited")
                continue
            epoll.register(pidfd, select.EPOLLIN)
        self.catch_signals()
        deadline = None if duration is None else time.monotonic() + duration
        next_tick = time.monotonic() + tick_interval
        try:
            while not self._stop:
                now = time.monotonic()
                timeout = self.poll_interval
                if deadline is not None:
                    timeout = min(timeout, max(deadline - now, 0.0))
                if tick is not None:
                    timeout = min(timeout, max(next_tick - now, 0.0))
                try:
                    ready = epoll.poll(timeout)
                except InterruptedError:
                    ready = []
                self._drain(sink)
                for fd, _ev in ready:
                    if fd not in fds:
                        pid = next((p for p, f in self._pidfds.items() if f == fd), None)
                        self._reap_child(pid)
                        self._watched_exited(epoll, fd, pid)
                if self._exit_reason is not None and not self._followed_alive():
                    self.request_stop(self._exit_reason)
                now = time.monotonic()
                if tick is not None and now >= next_tick:
                    tick()
                    next_tick += tick_interval
                if deadline is not None and now >= deadline:
                    self.request_stop("duration elapsed")
        finally:
            self.restore_signals()
            self._drain(sink)
            self.ended_ns = time.monotonic_ns()
            epoll.close()

    def _watched_exited(self, epoll: "select.epoll", fd: int, pid: Optional[int]) -> None:
        """A watched process exited.  Without followed children the run ends;
        with them it ends once the descendants it left are gone too: a
        command's children may outlive it (orphans of a parent that did not
        wait), and their records belong to the run."""
        if not any(t.follows_children for t in self.tracers):
            self.request_stop(f"process {pid} exited")
            return
        epoll.unregister(fd)  # a pidfd stays readable after the exit
        if self._exit_reason is None:
            self._exit_reason = f"process {pid} exited"

    def _followed_alive(self) -> bool:
        """Whether a process in the traced set, other than those watched by
        pidfd, is still running (a zombie has exited).  Only processes started
        since the run began count: the set holds followed children, and a
        pid reused by an unrelated process must not keep the run going."""
        tracer = next(t for t in self.tracers if t.follows_children)
        hz = os.sysconf("SC_CLK_TCK")
        started_ticks = (self.started_ns - _BOOT_TO_MONOTONIC_SLACK_NS) * hz // 1_000_000_000
        for key in tracer.obj.map("kt_traced").keys():
            pid = struct.unpack("<I", key)[0]
            if pid in self._pidfds:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2:].split()
            if fields[0] in (b"Z", b"X") or int(fields[19]) < started_ticks:
                continue
            return True
        return False

    def _reap_child(self, pid: Optional[int]) -> None:
        if self.child_pid is not None and pid == self.child_pid and self.child_status is None:
            _, status = os.waitpid(pid, 0)
            self.child_status = os.waitstatus_to_exitcode(status)

    def drain(self, sink: EventSink) -> None:
        """Every ring once, each non-empty batch to sink."""
        self._drain(sink)

    def _drain(self, sink: EventSink) -> None:
        for tracer in self.tracers:
            for ring, batch in tracer.drain().items():
                if len(batch):
                    sink(tracer, ring, batch)

    @property
    def lost_events(self) -> int:
        return sum(t.lost_events for t in self.tracers)

    @property
    def choices(self) -> list[HookChoice]:
        return [c for t in self.tracers for c in t.choices]

    @property
    def duration_s(self) -> float:
        end = self.ended_ns or time.monotonic_ns()
        return (end - self.started_ns) / 1e9 if self.started_ns else 0.0

    def close(self) -> None:
        self.restore_signals()
        destroy_links([link for tracer in self.tracers for link in tracer.links])
        for tracer in self.tracers:
            tracer.close()
        for fd in self._pidfds.values():
            if fd >= 0:
                os.close(fd)
        self._pidfds.clear()
        if self.child_pid is not None and self.child_status is None:
            # Tracing ended first (Ctrl-C, -d): the command gets SIGINT too.
            try:
                os.kill(self.child_pid, signal.SIGINT)
                for _ in range(50):
                    done, status = os.waitpid(self.child_pid, os.WNOHANG)
                    if done:
                        self.child_status = os.waitstatus_to_exitcode(status)
                        return
                    time.sleep(0.1)
                os.kill(self.child_pid, signal.SIGKILL)
                _, status = os.waitpid(self.child_pid, 0)
                self.child_status = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

