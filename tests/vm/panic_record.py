"""The panic test of `make vmtest` (issue 18): does `nstrace ip6mr -o DIR`
keep its record when the machine goes down?

Guest side (``--guest WORKDIR``, run by vmtest.py as the whole of its own
guest boot): start ``nstrace ip6mr -o WORKDIR/trace --flush F``, wait until
it writes (its first part is there), then create network namespaces one
after another (a forked child calls unshare(CLONE_NEWNET)) for a few
seconds, logging each attempt (the child's pid, CLOCK_MONOTONIC after it
returned) to WORKDIR/attempts.log, fsync'd per line, and when each part
of the trace appeared; log the moment of the panic the same way, and
crash the kernel with sysrq c.  WORKDIR is the
host's directory shared with the guest (vng --rwdir): what the guest
fsync'd there is on the host when QEMU stops.

Host side (``check``, after the guest is gone): every attempt made more
than a flush interval and the write allowance before the panic is in the trace, with its pid; the
trace reads as a truncated run (no end.json), and `report` (replay_trace)
makes a summary and finding of it.

Not a test module (no ``test_`` prefix: pytest does not collect it); see
vmtest.py, which runs it.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from kerntrace.tracers.engine.tracedir import TraceReader

__all__ = ["Outcome", "check", "guest_main", "main"]

CLONE_NEWNET = 0x40000000
FLUSH_S = 0.5          # nstrace --flush: how often records are written and fsync'd
# What a crash may lose is the last flush interval and the write under way.
# Here each part is written and fsync'd over 9p under TCG while the namespace
# work keeps both vCPUs busy: a record took up to 1.1 s to reach the disk
# (median 0.4-0.6 s over six boots), so the test holds the trace to flush +
# 1.5 s.  Before the writer merged what came during a write, the lag grew
# to 2-7 s.
WRITE_ALLOWANCE_S = 1.5
WORKLOAD_S = 10.0      # seconds of namespace creation before the panic
PAUSE_S = 0.05         # between two attempts
ATTACH_TIMEOUT_S = 600.0   # nstrace's start under TCG (imports off the 9p root, BPF load)
TRACE = "trace"
LOG = "attempts.log"


def _fsync_line(f, line: str) -> None:
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def _unshare_child() -> int:
    """A child that creates a network namespace and exits; its pid."""
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(CLONE_NEWNET) == 0 else 1)
    return pid


def _wait_writing(proc: "subprocess.Popen[bytes]", trace: Path, timeout_s: float) -> None:
    """Until nstrace is attached and writing: it writes meta.json once its
    probes are attached, and its first part (the host facts) at its first
    flush.  Under TCG that first flush came seconds late (the writer's
    code is imported then, off the 9p root: in one boot no part at all
    within 9 s), and what is tested is the record of a running tracer,
    not its start-up."""
    deadline = time.monotonic() + timeout_s
    while not any(trace.glob("host_facts/part-*.parquet")):
        if proc.poll() is not None:
            raise SystemExit(f"panic test: nstrace exited with status {proc.returncode} before attaching")
        if time.monotonic() > deadline:
            raise SystemExit(f"panic test: nstrace wrote no record within {timeout_s:.0f} s")
        time.sleep(0.2)


def _warm_up(proc: "subprocess.Popen[bytes]", trace: Path, timeout_s: float) -> None:
    """One namespace, not counted, until its record is on disk: the code that
    handles and writes the tracer's first namespace record is imported then
    (off the 9p root, for seconds under TCG); the attempts counted are those
    of a tracer already recording namespaces."""
    os.waitpid(_unshare_child(), 0)
    deadline = time.monotonic() + timeout_s
    while not any(trace.glob("netns_event/part-*.parquet")):
        if proc.poll() is not None:
            raise SystemExit(f"panic test: nstrace exited with status {proc.returncode} while warming up")
        if time.monotonic() > deadline:
            raise SystemExit(f"panic test: nstrace wrote no namespace record within {timeout_s:.0f} s")
        time.sleep(0.05)


class PartWatcher(threading.Thread):
    """Notes when each part of the trace appears (CLOCK_MONOTONIC, as the
    attempts): how long after an attempt its record was on disk."""

    def __init__(self, trace: Path, log: "IO[str]", lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.trace, self.log, self.lock = trace, log, lock
        self.seen: set[str] = set()

    def run(self) -> None:
        while True:
            for path in self.trace.glob("netns_event/part-*.parquet"):
                if path.name not in self.seen:
                    seen_ns = time.monotonic_ns()   # before waiting for the log
                    self.seen.add(path.name)
                    with self.lock:
                        _fsync_line(self.log, f"part {path.name} {seen_ns}")
            time.sleep(0.05)


def guest_main(workdir: Path, seconds: float, flush_s: float, crash: str = "panic") -> int:
    trace = workdir / TRACE
    nstrace = Path(sys.executable).parent / "nstrace"
    if crash == "panic":
        Path("/proc/sys/kernel/sysrq").write_text("1\n")
    with open(workdir / "nstrace.err", "wb") as err, open(workdir / LOG, "w") as log:
        proc = subprocess.Popen([str(nstrace), "ip6mr", "-o", str(trace), "--flush", f"{flush_s:g}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _wait_writing(proc, trace, ATTACH_TIMEOUT_S)
        _warm_up(proc, trace, ATTACH_TIMEOUT_S)
        _fsync_line(log, f"start {time.monotonic_ns()} flush_s {flush_s:g}")
        lock = threading.Lock()
        PartWatcher(trace, log, lock).start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pid = _unshare_child()
            _pid, status = os.waitpid(pid, 0)
            # after the attempt returned: the record's ts_ns (syscall exit) is earlier
            with lock:
                _fsync_line(log, f"attempt {pid} {time.monotonic_ns()} {os.waitstatus_to_exitcode(status)}")
            time.sleep(PAUSE_S)
        with lock:
            if proc.poll() is not None:
                _fsync_line(log, f"nstrace-exited {proc.returncode}")
            _fsync_line(log, f"panic {time.monotonic_ns()}")
        if crash == "kill":   # the same check without a VM: nstrace is killed, the machine stays up
            proc.kill()
            proc.wait()
            return 0
        with open("/proc/sysrq-trigger", "w") as trigger:
            trigger.write("c")
    return 1  # not reached: the kernel panicked


# -- host --------------------------------------------------------------------


@dataclass
class Attempt:
    pid: int
    t_ns: int
    status: int


@dataclass
class Outcome:
    made: int             # attempts the guest logged
    due: int              # of them, made more than a flush interval before the panic
    found: int            # of the attempts made, how many the trace holds
    missing_due: list[int]   # pids of due attempts the trace lacks
    flush_s: float
    newest_found_s: Optional[float]   # how long before the panic the newest traced attempt was made
    to_disk_s: list[float]   # per traced attempt: seconds from its record's time to its part on disk (sorted)
    failures: list[str]

    def lines(self) -> list[str]:
        newest = f"{self.newest_found_s:.3f} s" if self.newest_found_s is not None else "none"
        return [f"{self.made} attempts made, {self.due} of them more than {self.flush_s + WRITE_ALLOWANCE_S:g} s "
                f"(the flush interval and the write allowance) before the panic; the trace holds {self.found} ({len(self.missing_due)} due ones "
                f"missing); the newest traced attempt was made {newest} before the panic",
                "record to disk (the guest seeing its part): " + (
                    f"median {self.to_disk_s[len(self.to_disk_s) // 2]:.3f} s, max {self.to_disk_s[-1]:.3f} s "
                    f"over {len(self.to_disk_s)} attempts" if self.to_disk_s else "not measured")]


@dataclass
class GuestLog:
    attempts: list[Attempt]
    panic_ns: Optional[int]
    flush_s: Optional[float]
    parts_seen: dict[str, int]    # part file name -> when the guest first saw it
    notes: list[str]


def _read_log(path: Path) -> GuestLog:
    attempts: list[Attempt] = []
    panic_ns: Optional[int] = None
    flush_s: Optional[float] = None
    parts: dict[str, int] = {}
    notes = []
    for line in path.read_text().splitlines():
        word, *rest = line.split()
        if word == "part":
            parts[rest[0]] = int(rest[1])
        elif word == "attempt":
            attempts.append(Attempt(int(rest[0]), int(rest[1]), int(rest[2])))
        elif word == "panic":
            panic_ns = int(rest[0])
        elif word == "start":
            flush_s = float(rest[2])
        else:
            notes.append(line)
    return GuestLog(attempts, panic_ns, flush_s, parts, notes)


def _to_disk_s(reader: "TraceReader", pids: set[int], seen: dict[str, int]) -> list[float]:
    """For each of these attempts, seconds from its record's ts_ns to the
    moment the guest saw the part holding it."""
    import pyarrow.parquet as pq

    out = []
    for _seq, kind, path in reader.parts():
        name = os.path.basename(path)
        if kind != "netns_event" or name not in seen:
            continue
        t = pq.read_table(path, columns=["pid", "ts_ns", "kind"]).to_pylist()
        out += [(seen[name] - r["ts_ns"]) / 1e9 for r in t if r["kind"] == "attempt" and r["pid"] in pids]
    return out


def check(workdir: Path) -> Outcome:
    """What the host finds in the shared directory after the panic."""
    from kerntrace.tracers.engine.replay import replay_trace
    from kerntrace.tracers.engine.tracedir import TraceReader
    from kerntrace.tracers.ip6mr import Ip6mrTool

    failures: list[str] = []
    log = workdir / LOG
    if not log.exists():
        return Outcome(0, 0, 0, [], FLUSH_S, None, [], [f"the guest left no {LOG}: the panic test never started"])
    guest = _read_log(log)
    attempts, panic_ns, notes = guest.attempts, guest.panic_ns, guest.notes
    flush_s = guest.flush_s if guest.flush_s is not None else FLUSH_S
    failures += [f"guest: {n}" for n in notes]
    if panic_ns is None:
        failures.append("the guest did not reach the panic (no 'panic' line in its fsync'd log)")
        panic_ns = attempts[-1].t_ns if attempts else 0
    failures += [f"attempt by pid {a.pid} failed (exit status {a.status})" for a in attempts if a.status]
    if not (workdir / TRACE / "meta.json").exists():
        failures.append("no trace directory: nstrace never attached")
        return Outcome(len(attempts), 0, 0, [], flush_s, None, [], failures)
    reader = TraceReader(str(workdir / TRACE))
    if reader.end is not None or reader.summary is not None:
        failures.append("the trace has end.json/summary.json: the run ended cleanly, not by the panic")
    frames = reader.frames()
    events = frames.get("netns_event")
    traced: set[int] = set()
    if events is not None:
        mine = events[(events["kind"] == "attempt") & (events["method"] == "unshare") & (events["err"] == 0)]
        traced = {int(p) for p in mine["pid"]}
    due = [a for a in attempts if a.t_ns < panic_ns - (flush_s + WRITE_ALLOWANCE_S) * 1e9]
    missing = [a.pid for a in due if a.pid not in traced]
    found = [a for a in attempts if a.pid in traced]
    newest = (panic_ns - max(a.t_ns for a in found)) / 1e9 if found else None
    to_disk = sorted(_to_disk_s(reader, {a.pid for a in found}, guest.parts_seen))
    if missing:
        failures.append(f"{len(missing)} of {len(due)} attempts made more than {flush_s + WRITE_ALLOWANCE_S:g} s "
                        f"before the panic are not in the trace (pids {missing[:10]})")
    if len(due) < 20:
        failures.append(f"only {len(due)} attempts were due before the panic: too few to tell anything")
    # `report` of the truncated trace: the attempts it holds, as a finding
    envelope, found_findings = replay_trace(reader, Ip6mrTool.from_trace(reader.meta.get("options", {})))
    if envelope["trace"]["complete"] or "truncated" not in str(envelope["stop_reason"]):
        failures.append(f"report does not call the trace truncated (stop_reason {envelope['stop_reason']!r})")
    if envelope["namespaces"]["created"] < len(found):
        failures.append(f"report counts {envelope['namespaces']['created']} namespaces created, the trace holds "
                        f"{len(found)} of the guest's")
    if [f.id for f in found_findings] != ["ip6mr-crash-risk"]:
        failures.append(f"report's findings: {[f.id for f in found_findings]}")
    elif not envelope["host_facts"]["release"]:
        failures.append("report has no host facts: the host_facts record is not in the trace")
    return Outcome(len(attempts), len(due), len(found), missing, flush_s, newest, to_disk, failures)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/vm/panic_record.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--guest", metavar="WORKDIR", required=True, help="the shared directory (guest side)")
    parser.add_argument("--seconds", type=float, default=WORKLOAD_S)
    parser.add_argument("--flush", type=float, default=FLUSH_S)
    parser.add_argument("--crash", choices=("panic", "kill"), default="panic",
                        help="kill: kill -9 nstrace instead of crashing the kernel (to try it outside a VM)")
    parser.add_argument("--check", action="store_true", help="then check WORKDIR as the host does (with --crash kill)")
    args = parser.parse_args(argv)
    status = guest_main(Path(args.guest), args.seconds, args.flush, args.crash)
    if args.check:
        outcome = check(Path(args.guest))
        print("\n".join(outcome.lines() + [f"FAIL: {f}" for f in outcome.failures]))
        status = 1 if outcome.failures else status
    return status


if __name__ == "__main__":
    sys.exit(main())
