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
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .counters import Interval, read_sample, resolve_disks, resolve_interfaces, whole_disk_dev
from .engine.clock import Clock
from .engine.environment import EnvironmentProblem, require_bpf_environment, UsageProblem
from .engine.labels import label_of
from .engine.sinks import JsonSink, Sink, TextSink, TraceDirSink
from .engine.tool import ObjectSpec, Tool
from .engine.tracer import Hook
from .statview import (
    INTERVAL_KIND,
    Row,
    TaskFigure,
    TopTasks,
    csv_fields,
    csv_record,
    header_lines,
    interval_record,
    interval_table,
    json_record,
    row_line,
)
from .engine import AttachError, Target, target_from_options
from .engine.libbpf import LibbpfError
from .engine.backend import LIBBPF, Backend, BackendRequest, check_btf_file
from .engine.run import Run, check_output_path
from .engine.tracedir import DEFAULT_FLUSH_S
from .options import btf_option, setup_logging

if TYPE_CHECKING:
    import pyarrow as pa

    from .engine import BpfTracer

__all__ = ["CsvSink", "StatTool", "StatTotals", "TaskSampler", "command", "fill_disks", "stat_object"]

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
        self.cgroups: dict[int, tuple[int, int]] = {}   # tgid -> its cgroup ids (its container)

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
            self.cgroups[tgid] = (int(rec["cgroup_id"]), int(rec["cgroup_v1_id"]))
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
                       iowait_share=100.0 * iow_ns / iowait_all if iowait_all else 0.0,
                       container=self._container(tgid))
            for tgid, (d_ns, iow_ns, _r, _w) in by_dstate[:self.ranked])
        readers = tuple(
            TaskFigure(tgid, comms.get(tgid, "?"), read_rate=r_b / seconds, write_rate=w_b / seconds,
                       read_bytes=r_b, container=self._container(tgid))
            for tgid, (_d, _i, r_b, w_b) in by_read[:self.ranked])
        self.previous, self.previous_ns = current, now
        self._forget_exited(current)
        self.map_full = self.tracer.read_global("stat_map_full")
        return TopTasks(dstate, readers, iowait_ms_all=iowait_all / 1e6, map_full=self.map_full)

    def _container(self, tgid: int) -> str:
        ids = self.cgroups.get(tgid)
        return label_of(*ids).container if ids else ""

    def _forget_exited(self, current: dict[int, Any]) -> None:
        # An exited process's totals were just counted; its entry would only
        # fill the map (and a reused tgid must start from zero).
        for tgid in list(current):
            if not os.path.exists(f"/proc/{tgid}"):
                self.tasks.delete(struct.pack("<I", tgid))
                self.previous.pop(tgid, None)
                self.cgroups.pop(tgid, None)


def _bpf_unavailable_reason(no_bpf: bool, btf_file: Optional[str] = None) -> Optional[str]:
    if no_bpf:
        return "--no-bpf"
    if os.geteuid() != 0:
        return "needs root"

    try:
        # stat's columns are a CO-RE object's: libbpf, never BCC
        require_bpf_environment(BackendRequest("libbpf", btf_file))
    except EnvironmentProblem as exc:
        return str(exc)
    return None


class StatTotals:
    """What `report` says of a whole stat run, summed interval by interval
    from the trace's stat_interval rows (live and in replay alike): bytes
    per disk and interface group, iowait, and the processes that spent the
    most time in D state or read the most.  Per-process sums are bounded."""

    KEEP = 256  # processes kept per ranking (the smallest are dropped beyond 2x)

    def __init__(self) -> None:
        self.intervals = 0
        self.seconds = 0.0
        self.bytes: dict[str, float] = {}          # "dsk/sda read" -> bytes
        self.wai_weighted = 0.0
        self.wai_max = 0.0
        self.dstate: dict[int, list[Any]] = {}     # pid -> [comm, dstate ms, iowait ms]
        self.readers: dict[int, list[Any]] = {}    # pid -> [comm, bytes]

    def add(self, rec: Mapping[str, Any]) -> None:
        seconds = float(rec["interval_s"])
        self.intervals += 1
        self.seconds += seconds
        for key, value in rec.items():
            group, sep, rest = key.partition("_")
            if group in ("dsk", "net") and sep and value is not None:
                name, _sep, what = rest.rpartition("_")
                label = f"{group}/{name} {what}"
                self.bytes[label] = self.bytes.get(label, 0.0) + float(value) * seconds
        wai = float(rec.get("cpu_wai") or 0.0)
        self.wai_weighted += wai * seconds
        self.wai_max = max(self.wai_max, wai)
        for t in rec.get("dstate_ranked") or ():
            entry = self.dstate.setdefault(int(t["pid"]), [t["comm"], 0.0, 0.0])
            entry[0], entry[1], entry[2] = t["comm"], entry[1] + t["dstate_ms"], entry[2] + t["iowait_ms"]
        for t in rec.get("readers_ranked") or ():
            entry = self.readers.setdefault(int(t["pid"]), [t["comm"], 0])
            entry[0], entry[1] = t["comm"], entry[1] + int(t["read_bytes"])
        self._bound(self.dstate, 1)
        self._bound(self.readers, 1)

    def _bound(self, table: dict[int, list[Any]], index: int) -> None:
        if len(table) > 2 * self.KEEP:
            keep = sorted(table.items(), key=lambda kv: -kv[1][index])[:self.KEEP]
            table.clear()
            table.update(keep)

    def rows(self, table: dict[int, list[Any]], index: int, top: int = 5) -> list[tuple[int, list[Any]]]:
        return sorted(table.items(), key=lambda kv: (-kv[1][index], kv[0]))[:top]


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
        self.before: Any = None   # the counters at the start of the interval (read once started)
        self.totals = StatTotals()
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
        if self.before is None:
            self.before = read_sample()
            return ()
        after = read_sample()
        top = self.sampler.sample() if self.sampler is not None else None
        row = Row(after.mono_ns, Interval.between(self.before, after, self.disk_groups, self.net_groups), top)
        self.before = after
        self.emitted += 1
        self.totals.add(interval_record(row, self.note))
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

    # -- the trace directory (-o DIR) and `report` ----------------------------

    def trace_options(self) -> dict[str, Any]:
        return {"seconds": self.tick_interval, "lines": self.lines, "disk_groups": self.disk_groups,
                "net_groups": self.net_groups, "bpf": self.bpf, "note": self.note}

    def trace_records(self, obj: str, ring: str, events: Any, clock: Clock) -> "Iterable[tuple[str, pa.Table]]":
        if ring != "interval":
            return ()
        record = interval_record(events, self.note)
        return [(INTERVAL_KIND, interval_table([record], clock.offset_ns, self.disks, self.nets))]

    def replay(self, kind: str, table: "pa.Table") -> None:
        if kind != INTERVAL_KIND:
            return
        for record in table.drop(["time"]).to_pylist():
            self.emitted += 1
            self.totals.add(record)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        """`report`: the run's totals (the live view printed each interval)."""
        from ..analysis.report import format_table

        t = self.totals
        out.write(f"\n{t.intervals} intervals of {self.tick_interval:g} s ({t.seconds:.1f} s)")
        if t.seconds:
            out.write(f"; iowait {t.wai_weighted / t.seconds:.1f} % on average, {t.wai_max:.1f} % at most")
        out.write(".\n")
        if t.bytes:
            out.write("\nBytes over the run:\n")
            out.write(format_table([{"group": k, "bytes": round(v)} for k, v in t.bytes.items()]) + "\n")
        if self.note is not None:
            out.write(f"\nMost-D-state and top-reader columns unavailable ({self.note}).\n")
            return
        out.write("\nMost time in D state:\n")
        out.write(format_table([{"pid": pid, "comm": v[0], "dstate_ms": round(v[1], 1), "iowait_ms": round(v[2], 1)}
                                for pid, v in t.rows(t.dstate, 1)]) + "\n")
        out.write("\nMost block-read bytes:\n")
        out.write(format_table([{"pid": pid, "comm": v[0], "read_bytes": v[1]}
                                for pid, v in t.rows(t.readers, 1)]) + "\n")


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
@click.option("-o", "--output", type=click.Path(), metavar="DIR",
              help="Also write one stat_interval record per interval to the trace directory DIR as it goes "
                   "(meta.json, Parquet parts, summary.json at the end; mode 0600; `report DIR` reads it back).")
@click.option("--flush", "flush_s", type=click.FloatRange(min=0.01), default=DEFAULT_FLUSH_S, show_default=True,
              metavar="SECONDS", help="With -o: write and fsync the records at least this often.")
@click.option("--no-bpf", is_flag=True, help="Leave out the BPF columns (most D-state task, top reader).")
@click.option("--container", "containers", multiple=True, metavar="NAME|ID",
              help="Rank only the processes of this container in the BPF columns; repeatable.")
@click.option("--cgroup", "cgroups", multiple=True, metavar="PATH",
              help="Rank only the processes of this cgroup or below it; repeatable.")
@btf_option
@click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug).")
def command(interval: Optional[str], count: Optional[str], disk_spec: Optional[str], net_spec: Optional[str],
            as_json: bool, csv_path: Optional[str], output: Optional[str], flush_s: float, no_bpf: bool,
            containers: tuple[str, ...], cgroups: tuple[str, ...], btf_file: Optional[str], verbose: int) -> int:
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
    check_output_path(output)
    if btf_file is not None and not no_bpf:
        check_btf_file(btf_file)  # a bad FILE is exit 2, not a note that the columns are missing
    target = target_from_options((), None, False, required=False, containers=containers, cgroups=cgroups)

    csv_file: Optional[IO[str]] = None
    if csv_path:
        try:
            csv_file = open(csv_path, "w", newline="")
        except OSError as exc:
            raise UsageProblem(f"cannot write {csv_path}: {exc.strerror}") from None

    note = _bpf_unavailable_reason(no_bpf, btf_file)
    try:
        return _run(seconds, lines, disk_groups, net_groups, as_json, csv_file, note, output, flush_s, target,
                    backend=Backend("libbpf", btf_file))
    finally:
        if csv_file is not None:
            csv_file.close()


def _run(seconds: float, lines: Optional[int], disk_groups: dict[str, list[str]], net_groups: dict[str, list[str]],
         as_json: bool, csv_file: Optional[IO[str]], note: Optional[str], output: Optional[str] = None,
         flush_s: float = DEFAULT_FLUSH_S, target: Optional[Target] = None, backend: Backend = LIBBPF) -> int:
    def make_run(bpf: bool, why: Optional[str]) -> Run:
        tool = StatTool(seconds, lines, disk_groups, net_groups, bpf=bpf, note=why)
        sinks: list[Sink] = [JsonSink() if as_json else TextSink(report=False)]
        if csv_file is not None:
            sinks.append(CsvSink(csv_file, list(disk_groups), list(net_groups)))
        if output:
            sinks.append(TraceDirSink(output, flush_s))
        return Run("iotrace", tool, target or Target(), sinks, quiet=True, backend=backend)

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
