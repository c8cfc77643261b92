"""``iotrace stat``: dstat's view, one line per interval, plus what dstat
cannot show: which process spent the interval in D state (and its share of
all iowait sleep), and which process queued the most block reads.

The system columns come from :mod:`counters`; the BPF group from
``bpf/stat.bpf.c``, whose per-process totals are cumulative: each interval is
the difference of two snapshots, so nothing is lost between a read and a
reset, and a sleep still running at the end of an interval is counted up to
that instant (a 30 s hang shows in each of its 30 lines, not in the last).
"""
from __future__ import annotations

import csv
import os
import shutil
import struct
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import click

from .counters import Interval, read_sample, resolve_disks, resolve_interfaces, whole_disk_dev
from .engine.clock import Clock
from .engine.environment import EnvironmentProblem, require_bpf_environment, UsageProblem
from .engine.sinks import JsonSink, Sink, TextSink
from .engine.tool import ObjectSpec, Tool
from .engine.tracer import Hook
from .statview import (
    Row,
    TaskFigure,
    TopTasks,
    csv_fields,
    csv_record,
    header_lines,
    json_record,
    row_line,
)
from .engine import AttachError, Target
from .engine.libbpf import LibbpfError
from .engine.run import Run
from .options import setup_logging

if TYPE_CHECKING:
    from .engine import BpfTracer

__all__ = ["CsvSink", "StatTool", "TaskSampler", "command", "fill_disks", "stat_object"]

HOOK_NAMES = (("dstate-start", "stat_switch"), ("dstate-end", "stat_wakeup"), ("block-bytes", "stat_bio_queue"))


MINORBITS = 20  # the kernel's dev_t: major << 20 | minor (KT_STAT_MINORBITS)


def stat_object(filter_disks: bool) -> ObjectSpec:
    """The stat object; with ``filter_disks``, block bytes count only on the
    disks put in its stat_disks map (the whole disk of a partition), as
    dsk/total does."""
    return ObjectSpec("stat", [Hook(name, (prog,)) for name, prog in HOOK_NAMES],
                      options={"filter_disks": filter_disks}, targeted=False)


def fill_disks(tracer: "BpfTracer", disks: Sequence[str]) -> None:
    table = tracer.obj.map("stat_disks")
    for name in disks:
        major, minor = whole_disk_dev(name)
        table.update(struct.pack("<I", major << MINORBITS | minor), b"\x01")


class TaskSampler:
    """Per-process D-state time and block bytes between two calls of
    :meth:`sample`, from the cumulative maps of the stat object."""

    def __init__(self, tracer: "BpfTracer", ranked: int = 10) -> None:
        self.tracer = tracer
        self.ranked = ranked  # how many processes --json lists per ranking
        self.tasks = tracer.obj.map("stat_tasks")
        self.sleeping = tracer.obj.map("stat_sleeping")
        self.task_dtype = tracer.btf.dtype("stat_task")
        self.sleep_dtype = tracer.btf.dtype("stat_sleep")
        # tgid -> (dstate ns, iowait ns, read bytes, write bytes) as of the last sample
        self.previous: dict[int, tuple[int, int, int, int]] = {}
        self.previous_ns = 0
        self.map_full = 0  # D-state sleeps or processes the BPF maps had no room for
        self.self_tgid = os.getpid()

    def _snapshot(self) -> tuple[int, dict[int, tuple[int, int, int, int]], dict[int, str]]:
        import numpy as np

        totals: dict[int, list[int]] = {}
        comms: dict[int, str] = {}
        # Tasks first, then running sleeps, then the clock: a sleep that ends
        # in between is missed now and counted whole at the next sample,
        # never counted twice.
        for key, value in self.tasks.items():
            rec = np.frombuffer(value, dtype=self.task_dtype, count=1)[0]
            tgid = struct.unpack("<I", key)[0]
            if tgid == self.self_tgid:
                continue  # the tracer never ranks itself
            totals[tgid] = [int(rec["dstate_ns"]), int(rec["iowait_ns"]), int(rec["read_bytes"]), int(rec["write_bytes"])]
            comms[tgid] = rec["comm"].split(b"\0", 1)[0].decode("utf-8", "replace")
        sleeps = [np.frombuffer(v, dtype=self.sleep_dtype, count=1)[0] for _k, v in self.sleeping.items()]
        sleeps = [s for s in sleeps if int(s["tgid"]) != self.self_tgid]
        now = time.monotonic_ns()  # the clock of bpf_ktime_get_ns()
        for s in sleeps:
            running = now - int(s["start_ns"])
            if running <= 0:
                continue
            entry = totals.setdefault(int(s["tgid"]), [0, 0, 0, 0])
            entry[0] += running
            if s["iowait"]:
                entry[1] += running
        return now, {k: (v[0], v[1], v[2], v[3]) for k, v in totals.items()}, comms

    def start(self) -> None:
        self.previous_ns, self.previous, _ = self._snapshot()

    def sample(self) -> TopTasks:
        now, current, comms = self._snapshot()
        seconds = max((now - self.previous_ns) / 1e9, 1e-9)
        deltas: dict[int, tuple[int, int, int, int]] = {}
        for tgid, values in current.items():
            before = self.previous.get(tgid, (0, 0, 0, 0))
            deltas[tgid] = tuple(max(a - b, 0) for a, b in zip(values, before))  # type: ignore[assignment]
        iowait_all = sum(d[1] for d in deltas.values())
        by_dstate = sorted((kv for kv in deltas.items() if kv[1][0] > 0), key=lambda kv: -kv[1][0])
        by_read = sorted((kv for kv in deltas.items() if kv[1][2] > 0), key=lambda kv: -kv[1][2])
        dstate = tuple(
            TaskFigure(tgid, comms.get(tgid, "?"), dstate_ms=d_ns / 1e6, iowait_ms=iow_ns / 1e6,
                       iowait_share=100.0 * iow_ns / iowait_all if iowait_all else 0.0)
            for tgid, (d_ns, iow_ns, _r, _w) in by_dstate[:self.ranked])
        readers = tuple(
            TaskFigure(tgid, comms.get(tgid, "?"), read_rate=r_b / seconds, write_rate=w_b / seconds,
                       read_bytes=r_b)
            for tgid, (_d, _i, r_b, w_b) in by_read[:self.ranked])
        self.previous, self.previous_ns = current, now
        self._forget_exited(current)
        self.map_full = self.tracer.read_global("stat_map_full")
        return TopTasks(dstate, readers, iowait_ms_all=iowait_all / 1e6, map_full=self.map_full)

    def _forget_exited(self, current: dict[int, Any]) -> None:
        # An exited process's totals were just counted; its entry would only
        # fill the map (and a reused tgid must start from zero).
        for tgid in list(current):
            if not os.path.exists(f"/proc/{tgid}"):
                self.tasks.delete(struct.pack("<I", tgid))
                self.previous.pop(tgid, None)


def _bpf_unavailable_reason(no_bpf: bool) -> Optional[str]:
    if no_bpf:
        return "--no-bpf"
    if os.geteuid() != 0:
        return "needs root"

    try:
        require_bpf_environment()
    except EnvironmentProblem as exc:
        return str(exc)
    return None


class StatTool(Tool):
    """One row per interval: the system counters, and with the BPF object
    the process with the most D-state time and the top reader."""

    name = "stat"

    def __init__(self, seconds: float, lines: Optional[int], disk_groups: dict[str, list[str]],
                 net_groups: dict[str, list[str]], bpf: bool, note: Optional[str] = None,
                 status: Optional[IO[str]] = None) -> None:
        self.tick_interval = seconds
        self.lines = lines
        self.disk_groups, self.net_groups = disk_groups, net_groups
        self.disks, self.nets = list(disk_groups), list(net_groups)
        self.bpf = bpf
        self.note = note
        self.status = status
        self.sampler: Optional[TaskSampler] = None
        self.before = read_sample()
        self.emitted = 0
        self.stop_reason: Optional[str] = None
        self.header = header_lines(self.disks, self.nets)
        # dstat's rule: a header, then as many rows as fit under it on screen.
        self.screen_rows = max(shutil.get_terminal_size((80, 25)).lines - len(self.header), 1)
        self.rows_since_header = 0
        self.map_full_reported = 0

    def objects(self) -> Sequence[ObjectSpec]:
        return [stat_object(filter_disks=True)] if self.bpf else []

    def loaded(self, tracers: Mapping[str, "BpfTracer"]) -> None:
        if "stat" in tracers:
            fill_disks(tracers["stat"], sorted({d for members in self.disk_groups.values() for d in members}))
            self.sampler = TaskSampler(tracers["stat"])

    def started(self, clock: Clock) -> None:
        self.before = read_sample()
        if self.sampler is not None:
            self.sampler.start()

    def tick(self) -> Sequence[tuple[str, Any]]:
        if self.lines is not None and self.emitted >= self.lines:
            return ()
        after = read_sample()
        top = self.sampler.sample() if self.sampler is not None else None
        row = Row(after.mono_ns, Interval.between(self.before, after, self.disk_groups, self.net_groups), top)
        self.before = after
        self.emitted += 1
        if self.lines is not None and self.emitted >= self.lines:
            self.stop_reason = f"{self.lines} intervals"
        return [("interval", row)]

    def live_header(self, clock: Clock) -> str:
        self.rows_since_header = 0
        return "\n".join(self.header)

    def live_lines(self, obj: str, ring: str, events: Any, clock: Clock) -> str:
        head = ""
        if self.rows_since_header >= self.screen_rows:
            head = "\n".join(self.header) + "\n"
            self.rows_since_header = 0
        self.rows_since_header += 1
        if self.sampler is not None:
            self.note_map_full(self.sampler.map_full)
        return head + row_line(events, self.disks, self.nets) + "\n"

    def note_map_full(self, count: int) -> None:
        """Says once, and again when it grows, that the BPF maps overflowed."""
        if count > self.map_full_reported:
            (self.status or sys.stderr).write(f"note: {count} D-state sleeps or processes not counted: "
                                              "BPF maps full\n")
            self.map_full_reported = count

    def json_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[dict[str, Any]]:
        record = json_record(events, self.note)
        record["time"] = clock.rfc3339(events.time)
        return [{"type": "interval", **record}]

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {"intervals": self.emitted, "interval_s": self.tick_interval, "bpf_unavailable": self.note}


class CsvSink(Sink):
    """--csv FILE: a header row, then one row per interval, flushed each time."""

    def __init__(self, csv_file: IO[str], disks: list[str], nets: list[str]) -> None:
        self.csv_file = csv_file
        self.disks, self.nets = disks, nets
        self.writer = csv.DictWriter(csv_file, fieldnames=csv_fields(disks, nets), lineterminator="\n")
        self.writer.writeheader()
        csv_file.flush()

    def events(self, tool: Tool, obj: str, ring: str, events: Any, clock: Clock) -> None:
        record = csv_record(events, self.disks, self.nets)
        record["time"] = clock.rfc3339(events.time)
        self.writer.writerow(record)
        self.csv_file.flush()


def _parse_interval(text: Optional[str]) -> float:
    if text is None:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise UsageProblem(f"INTERVAL must be a number of seconds, not {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UsageProblem(f"INTERVAL must be more than 0 seconds, not {text!r}")
    return value


def _parse_count(text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageProblem(f"COUNT must be a whole number of lines, not {text!r}") from None
    if value <= 0:
        raise UsageProblem(f"COUNT must be at least 1, not {text!r}")
    return value


class _StatCommand(click.Command):
    """Says what is wrong with ``stat -1`` (click would call -1 an unknown option)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            if arg.startswith("-") and arg[1:2].isdigit():
                raise UsageProblem(f"INTERVAL and COUNT must be more than 0, not {arg!r}")
        return super().parse_args(ctx, args)


@click.command("stat", cls=_StatCommand)
@click.argument("interval", required=False, metavar="[INTERVAL")
@click.argument("count", required=False, metavar="[COUNT]]")
@click.option("-D", "--disks", "disk_spec", metavar="DISKS",
              help="Comma-separated disks, one column group each (default: all whole disks, "
                   "no partitions, loop, ram or zram devices, in one total).")
@click.option("-N", "--net", "net_spec", metavar="IFACES",
              help="Comma-separated interfaces, one column group each (default: all but lo, in one total).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per interval (JSON Lines) instead of the table.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a header row and one row per interval to FILE (CSV).")
@click.option("--no-bpf", is_flag=True, help="Leave out the BPF columns (most D-state task, top reader).")
@click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug).")
def command(interval: Optional[str], count: Optional[str], disk_spec: Optional[str], net_spec: Optional[str],
            as_json: bool, csv_path: Optional[str], no_bpf: bool, verbose: int) -> int:
    """dstat's columns every INTERVAL seconds (default 1), COUNT lines (default: until Ctrl-C).

    CPU in percent (usr includes nice and irq time, wai is iowait); disk, net
    and paging (swap-in/out pages, as dstat) in bytes per second with K/M/G
    suffixes (1024-based); int and csw per second; procs run/blk now, new per
    second.  As root, two more groups: the process with the most D-state time
    in the interval (ms, and its share of all processes' iowait sleep), and
    the process that queued the most block-read bytes per second.  The first
    line covers the first INTERVAL, never the time since boot.
    """
    setup_logging(verbose)
    seconds = _parse_interval(interval)
    lines = _parse_count(count)
    if as_json and csv_path:
        raise UsageProblem("give either --json or --csv FILE, not both")
    disk_groups = resolve_disks(disk_spec)
    net_groups = resolve_interfaces(net_spec)

    csv_file: Optional[IO[str]] = None
    if csv_path:
        try:
            csv_file = open(csv_path, "w", newline="")
        except OSError as exc:
            raise UsageProblem(f"cannot write {csv_path}: {exc.strerror}") from None

    note = _bpf_unavailable_reason(no_bpf)
    try:
        return _run(seconds, lines, disk_groups, net_groups, as_json, csv_file, note)
    finally:
        if csv_file is not None:
            csv_file.close()


def _run(seconds: float, lines: Optional[int], disk_groups: dict[str, list[str]], net_groups: dict[str, list[str]],
         as_json: bool, csv_file: Optional[IO[str]], note: Optional[str]) -> int:
    def make_run(bpf: bool, why: Optional[str]) -> Run:
        tool = StatTool(seconds, lines, disk_groups, net_groups, bpf=bpf, note=why)
        sinks: list[Sink] = [JsonSink() if as_json else TextSink(report=False)]
        if csv_file is not None:
            sinks.append(CsvSink(csv_file, list(disk_groups), list(net_groups)))
        return Run("iotrace", tool, Target(), sinks, quiet=True)

    if note is None:
        run = make_run(True, None)
        try:
            run.execute()
            return 0
        except (LibbpfError, AttachError, OSError) as exc:
            if run.session is not None and run.session.started_ns:
                raise  # failed while running, not while loading
            note = f"BPF failed: {str(exc).splitlines()[0]}"
    if not as_json:
        sys.stderr.write(f"note: most-D-state and top-reader columns unavailable ({note}); they show '-'\n")
    make_run(False, note).execute()
    return 0
