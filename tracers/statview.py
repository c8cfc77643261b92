"""How ``iotrace stat`` shows an interval: dstat's two-line header and
fixed-width rows on a terminal, a flat record for CSV, a nested one for JSON.

Every byte figure is bytes per second with a 1024-based K/M/G/T suffix: dool
defaults to bits, its most reported confusion ("10x too high").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .counters import Interval

__all__ = [
    "Row",
    "TaskFigure",
    "TopTasks",
    "csv_fields",
    "csv_record",
    "format_bytes",
    "format_count",
    "header_lines",
    "json_record",
    "row_line",
]

UNAVAILABLE = "-"
TASK_WIDTH = 18


@dataclass(frozen=True)
class TaskFigure:
    pid: int
    comm: str
    dstate_ms: float = 0.0
    iowait_ms: float = 0.0
    iowait_share: float = 0.0     # of all tasks' iowait sleep in the interval, percent
    read_rate: float = 0.0        # block bytes queued per second
    read_bytes: int = 0           # block bytes queued in the interval
    write_rate: float = 0.0

    def label(self, width: int = TASK_WIDTH) -> str:
        pid = f"/{self.pid}"
        return self.comm[: max(width - len(pid), 1)] + pid


@dataclass(frozen=True)
class TopTasks:
    """The BPF column group for one interval: processes ranked by D-state
    time and by block-read bytes (only those with some), best first."""

    dstate_ranked: tuple[TaskFigure, ...]
    readers_ranked: tuple[TaskFigure, ...]
    iowait_ms_all: float          # sum over tasks of iowait sleep in the interval
    map_full: int = 0             # sleeps/processes not counted since start: BPF maps full

    @property
    def dstate(self) -> Optional[TaskFigure]:
        return self.dstate_ranked[0] if self.dstate_ranked else None

    @property
    def reader(self) -> Optional[TaskFigure]:
        return self.readers_ranked[0] if self.readers_ranked else None


@dataclass(frozen=True)
class Row:
    time: Any                     # the interval's end: CLOCK_MONOTONIC ns (the sinks show it in UTC)
    interval: Interval
    top: Optional[TopTasks]       # None: BPF columns unavailable


def format_bytes(value: float, width: int = 5) -> str:
    """``0``, ``512B``, ``1.5K``, ``153K``, ``98M``: at most ``width`` chars."""
    if value < 0.5:
        return "0".rjust(width)
    if value < 1000:
        return f"{value:.0f}B".rjust(width)
    for suffix in "KMGTPE":
        value /= 1024
        if value < 9.95:
            return f"{value:.1f}{suffix}".rjust(width)
        if value < 999.5:
            return f"{value:.0f}{suffix}".rjust(width)
    return f"{value:.0f}E".rjust(width)


def format_count(value: float, width: int = 5) -> str:
    """Events per second (interrupts, switches): 1000-based, as dstat."""
    if value < 0.5:
        return "0".rjust(width)
    if value < 9999.5:
        return f"{value:.0f}".rjust(width)
    for suffix in "kMG":
        value /= 1000
        if value < 9.95:
            return f"{value:.1f}{suffix}".rjust(width)
        if value < 999.5:
            return f"{value:.0f}{suffix}".rjust(width)
    return f"{value:.0f}T".rjust(width)


def _title(text: str, width: int) -> str:
    """dstat's group title: the name centred in dashes."""
    text = text[:width]
    pad = width - len(text)
    left = pad // 2
    return "-" * left + text + "-" * (pad - left)


def _groups(disk_names: Sequence[str], net_names: Sequence[str]) -> list[tuple[str, str]]:
    """(title, column names) of every group, in order."""
    groups = [("total-cpu-usage", "usr sys idl wai stl")]
    groups += [(f"dsk/{d}", " read  writ") for d in disk_names]
    groups += [(f"net/{n}", " recv  send") for n in net_names]
    groups += [("paging", "  in   out"), ("system", "  int   csw"), ("procs", "run blk new")]
    task_cols = "task".ljust(TASK_WIDTH)
    groups += [("most-D-state(bpf)", f"{task_cols} D-ms iow%"), ("top-reader(bpf)", f"{task_cols}  read")]
    return groups


def header_lines(disk_names: Sequence[str], net_names: Sequence[str]) -> tuple[str, str]:
    groups = _groups(disk_names, net_names)
    titles = " ".join(_title(t, len(c)) for t, c in groups)
    columns = "|".join(c for _t, c in groups)
    return titles, columns


def _task_cells(top: Optional[TopTasks]) -> tuple[str, str]:
    blank_d = f"{UNAVAILABLE:<{TASK_WIDTH}} {UNAVAILABLE:>4} {UNAVAILABLE:>4}"
    blank_r = f"{UNAVAILABLE:<{TASK_WIDTH}} {UNAVAILABLE:>5}"
    if top is None:
        return blank_d, blank_r
    if top.dstate is None:
        d_cell = f"{'':<{TASK_WIDTH}} {0:>4} {'':>4}"
    else:
        t = top.dstate
        d_cell = f"{t.label():<{TASK_WIDTH}} {format_count(t.dstate_ms, 4)} {t.iowait_share:>3.0f}%"
    if top.reader is None:
        r_cell = f"{'':<{TASK_WIDTH}} {'0':>5}"
    else:
        r_cell = f"{top.reader.label():<{TASK_WIDTH}} {format_bytes(top.reader.read_rate)}"
    return d_cell, r_cell


def row_line(row: Row, disk_names: Sequence[str], net_names: Sequence[str]) -> str:
    iv = row.interval
    c = iv.cpu
    cells = [" ".join(f"{c[k]:>3.0f}" for k in ("usr", "sys", "idl", "wai", "stl"))]
    cells += [f"{format_bytes(iv.disks[d][0])} {format_bytes(iv.disks[d][1])}" for d in disk_names]
    cells += [f"{format_bytes(iv.nets[n][0])} {format_bytes(iv.nets[n][1])}" for n in net_names]
    cells.append(f"{format_bytes(iv.paging[0], 4)}  {format_bytes(iv.paging[1], 4)}")
    cells.append(f"{format_count(iv.system[0])} {format_count(iv.system[1])}")
    run, blk, new = iv.procs
    cells.append(f"{run:>3} {blk:>3} {format_count(new, 3)}")
    cells += list(_task_cells(row.top))
    return "|".join(cells)


# -- machine-readable ---------------------------------------------------------

def _task_dict(t: Optional[TaskFigure], kind: str) -> Optional[dict[str, Any]]:
    if t is None:
        return None
    if kind == "dstate":
        # ms to the nanosecond: a share recomputed from these figures matches
        # iowait_share_pct even when an interval's iowait is a few microseconds
        return {"pid": t.pid, "comm": t.comm, "dstate_ms": round(t.dstate_ms, 6),
                "iowait_ms": round(t.iowait_ms, 6), "iowait_share_pct": round(t.iowait_share, 2)}
    return {"pid": t.pid, "comm": t.comm, "read_bytes": t.read_bytes, "read_bytes_s": round(t.read_rate, 1),
            "write_bytes_s": round(t.write_rate, 1)}


def json_record(row: Row, bpf_note: Optional[str]) -> dict[str, Any]:
    iv = row.interval
    record: dict[str, Any] = {
        "time": row.time,
        "interval_s": round(iv.seconds, 6),
        "cpu": {k: round(v, 2) for k, v in iv.cpu.items()},
        "dsk": {d: {"read": round(r, 1), "writ": round(w, 1)} for d, (r, w) in iv.disks.items()},
        "net": {n: {"recv": round(r, 1), "send": round(s, 1)} for n, (r, s) in iv.nets.items()},
        "paging": {"in": round(iv.paging[0], 1), "out": round(iv.paging[1], 1)},
        "system": {"int": round(iv.system[0], 1), "csw": round(iv.system[1], 1)},
        "procs": {"run": iv.procs[0], "blk": iv.procs[1], "new": round(iv.procs[2], 2)},
    }
    if row.top is None:
        record["bpf"] = None
        record["bpf_unavailable"] = bpf_note or "unavailable"
    else:
        record["bpf"] = {
            "most_dstate": _task_dict(row.top.dstate, "dstate"),
            "top_reader": _task_dict(row.top.reader, "reader"),
            "iowait_ms_all_tasks": round(row.top.iowait_ms_all, 6),
            "not_counted_map_full": row.top.map_full,
            "dstate_ranked": [_task_dict(t, "dstate") for t in row.top.dstate_ranked],
            "readers_ranked": [_task_dict(t, "reader") for t in row.top.readers_ranked],
        }
    return record


def csv_fields(disk_names: Sequence[str], net_names: Sequence[str]) -> list[str]:
    fields = ["time", "interval_s", "cpu_usr", "cpu_sys", "cpu_idl", "cpu_wai", "cpu_stl"]
    for d in disk_names:
        fields += [f"dsk_{d}_read", f"dsk_{d}_writ"]
    for n in net_names:
        fields += [f"net_{n}_recv", f"net_{n}_send"]
    fields += ["paging_in", "paging_out", "system_int", "system_csw", "procs_run", "procs_blk", "procs_new",
               "dstate_pid", "dstate_comm", "dstate_ms", "dstate_iowait_share_pct",
               "reader_pid", "reader_comm", "reader_read_bytes_s"]
    return fields


def csv_record(row: Row, disk_names: Sequence[str], net_names: Sequence[str]) -> dict[str, Any]:
    iv = row.interval
    rec: dict[str, Any] = {"time": row.time, "interval_s": round(iv.seconds, 6)}
    for k, v in iv.cpu.items():
        rec[f"cpu_{k}"] = round(v, 2)
    for d in disk_names:
        rec[f"dsk_{d}_read"], rec[f"dsk_{d}_writ"] = (round(x, 1) for x in iv.disks[d])
    for n in net_names:
        rec[f"net_{n}_recv"], rec[f"net_{n}_send"] = (round(x, 1) for x in iv.nets[n])
    rec["paging_in"], rec["paging_out"] = (round(x, 1) for x in iv.paging)
    rec["system_int"], rec["system_csw"] = (round(x, 1) for x in iv.system)
    rec["procs_run"], rec["procs_blk"] = iv.procs[0], iv.procs[1]
    rec["procs_new"] = round(iv.procs[2], 2)
    # Unavailable BPF columns stay empty; a task nobody matched is also empty.
    top = row.top
    if top is not None and top.dstate is not None:
        rec.update(dstate_pid=top.dstate.pid, dstate_comm=top.dstate.comm,
                   dstate_ms=round(top.dstate.dstate_ms, 3),
                   dstate_iowait_share_pct=round(top.dstate.iowait_share, 2))
    if top is not None and top.reader is not None:
        rec.update(reader_pid=top.reader.pid, reader_comm=top.reader.comm,
                   reader_read_bytes_s=round(top.reader.read_rate, 1))
    return rec
