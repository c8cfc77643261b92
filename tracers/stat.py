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
import datetime
import os
import shutil
import signal
import struct
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Optional, Sequence

import click

from .counters import Interval, read_sample, resolve_disks, resolve_interfaces, whole_disk_dev
from .engine.environment import UsageProblem
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

if TYPE_CHECKING:
    from .engine import BpfTracer

__all__ = ["TaskSampler", "command", "open_tracer"]

HOOK_NAMES = (("dstate-start", "stat_switch"), ("dstate-end", "stat_wakeup"), ("block-bytes", "stat_bio_queue"))


MINORBITS = 20  # the kernel's dev_t: major << 20 | minor (KT_STAT_MINORBITS)


def open_tracer(disks: Optional[Sequence[str]] = None) -> "BpfTracer":
    """The loaded, attached stat object (raises on any failure).  With
    ``disks``, block bytes count only on those disks (the whole disk of a
    partition), as dsk/total does."""
    from .engine import BpfTracer, Hook

    tracer = BpfTracer("stat", hooks=[Hook(name, (prog,)) for name, prog in HOOK_NAMES],
                       options={"filter_disks": disks is not None})
    try:
        tracer.load()
        if disks is not None:
            table = tracer.obj.map("stat_disks")
            for name in disks:
                major, minor = whole_disk_dev(name)
                table.update(struct.pack("<I", major << MINORBITS | minor), b"\x01")
        tracer.attach()
    except BaseException:
        tracer.close()
        raise
    return tracer


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
            totals[tgid] = [int(rec["dstate_ns"]), int(rec["iowait_ns"]), int(rec["read_bytes"]), int(rec["write_bytes"])]
            comms[tgid] = rec["comm"].split(b"\0", 1)[0].decode("utf-8", "replace")
        sleeps = [np.frombuffer(v, dtype=self.sleep_dtype, count=1)[0] for _k, v in self.sleeping.items()]
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
    from .engine.environment import EnvironmentProblem, require_bpf_environment

    try:
        require_bpf_environment()
    except EnvironmentProblem as exc:
        return str(exc)
    return None


class _Terminated(Exception):
    """SIGINT or SIGTERM arrived: end with every line out."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated()


def _wall_now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Output:
    """Terminal lines (the header every screenful), or JSON Lines, plus an
    optional CSV file."""

    def __init__(self, disks: list[str], nets: list[str], as_json: bool, csv_file: Optional[IO[str]],
                 bpf_note: Optional[str], stream: Optional[IO[str]] = None) -> None:
        self.disks, self.nets = disks, nets
        self.as_json = as_json
        self.stream = stream if stream is not None else sys.stdout
        self.bpf_note = bpf_note
        self.rows_since_header = 0
        self.map_full_reported = 0
        self.header = header_lines(disks, nets)
        # dstat's rule: a header, then as many rows as fit under it on screen.
        self.screen_rows = max(shutil.get_terminal_size((80, 25)).lines - len(self.header), 1)
        self.csv_writer: Optional[csv.DictWriter[str]] = None
        self.csv_file = csv_file
        if csv_file is not None:
            self.csv_writer = csv.DictWriter(csv_file, fieldnames=csv_fields(disks, nets), lineterminator="\n")
            self.csv_writer.writeheader()
            csv_file.flush()

    def note_map_full(self, count: int) -> None:
        """Says once, and again when it grows, that the BPF maps overflowed."""
        if count > self.map_full_reported:
            sys.stderr.write(f"note: {count} D-state sleeps or processes not counted: BPF maps full\n")
            self.map_full_reported = count

    def begin(self) -> None:
        if not self.as_json:
            self._write_header()

    def _write_header(self) -> None:
        self.stream.write("\n".join(self.header) + "\n")
        self.stream.flush()
        self.rows_since_header = 0

    def emit(self, row: Row) -> None:
        if self.as_json:
            from .engine.records import JsonLines

            JsonLines(self.stream).emit(json_record(row, self.bpf_note))
        else:
            if self.rows_since_header >= self.screen_rows:
                self._write_header()
            self.stream.write(row_line(row, self.disks, self.nets) + "\n")
            self.stream.flush()
            self.rows_since_header += 1
        if self.csv_writer is not None and self.csv_file is not None:
            self.csv_writer.writerow(csv_record(row, self.disks, self.nets))
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
    from .options import setup_logging

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
    sampler: Optional[TaskSampler] = None
    tracer = None
    if note is None:
        from .engine import AttachError
        from .engine.libbpf import LibbpfError

        try:
            tracer = open_tracer(sorted({d for members in disk_groups.values() for d in members}))
            sampler = TaskSampler(tracer)
        except (LibbpfError, AttachError, OSError) as exc:
            note = f"BPF failed: {str(exc).splitlines()[0]}"
    if note is not None and not as_json:
        sys.stderr.write(f"note: most-D-state and top-reader columns unavailable ({note}); they show '-'\n")

    # SIGINT is handled here too rather than left to KeyboardInterrupt: a
    # process started with SIGINT ignored (a script's background job) gets
    # no KeyboardInterrupt, and SIGINT must still end the run, as it does
    # for the tracers (Session.run).
    old_handlers = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = Output(list(disk_groups), list(net_groups), as_json, csv_file, note)
        out.begin()
        before = read_sample()
        if sampler is not None:
            sampler.start()
        deadline = time.monotonic() + seconds
        emitted = 0
        try:
            while lines is None or emitted < lines:
                pause = deadline - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                elif pause < -seconds:
                    # Far behind (the machine was suspended or stalled): one
                    # long line, not a burst of short ones.
                    deadline = time.monotonic()
                deadline += seconds
                after = read_sample()
                top = sampler.sample() if sampler is not None else None
                iv = Interval.between(before, after, disk_groups, net_groups)
                out.emit(Row(_wall_now(), iv, top))
                if sampler is not None and not as_json:
                    out.note_map_full(sampler.map_full)
                before = after
                emitted += 1
        except (KeyboardInterrupt, _Terminated):
            pass  # Ctrl-C or SIGTERM: every line so far is out, the CSV complete
        except BrokenPipeError:
            # The reader of stdout left (`| head`): a normal end.  Point stdout
            # at /dev/null so the interpreter's final flush cannot fail too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if tracer is not None:
            tracer.close()
        if csv_file is not None:
            csv_file.close()
    return 0
