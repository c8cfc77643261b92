"""How ``iotrace stat`` shows an interval: dstat's two-line header and
fixed-width rows on a terminal, a flat record for CSV, a nested one for JSON.

Every byte figure is bytes per second with a 1024-based K/M/G/T suffix: dool
defaults to bits, its most reported confusion ("10x too high").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from .counters import Interval

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "INTERVAL_KIND",
    "Row",
    "TaskFigure",
    "TopTasks",
    "csv_fields",
    "csv_record",
    "format_bytes",
    "format_count",
    "header_lines",
    "interval_record",
    "interval_schema",
    "interval_table",
    "json_record",
    "row_line",
]

# The record kind of `iotrace stat -o DIR`: one row per interval.
INTERVAL_KIND = "stat_interval"

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
    container: str = ""           # its container (name or short id), "" for the host's

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
        return {"pid": t.pid, "comm": t.comm, "container": t.container, "dstate_ms": round(t.dstate_ms, 6),
                "iowait_ms": round(t.iowait_ms, 6), "iowait_share_pct": round(t.iowait_share, 2)}
    return {"pid": t.pid, "comm": t.comm, "container": t.container, "read_bytes": t.read_bytes,
            "read_bytes_s": round(t.read_rate, 1), "write_bytes_s": round(t.write_rate, 1)}


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
               "dstate_pid", "dstate_comm", "dstate_container", "dstate_ms", "dstate_iowait_share_pct",
               "reader_pid", "reader_comm", "reader_container", "reader_read_bytes_s"]
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
        rec.update(dstate_pid=top.dstate.pid, dstate_comm=top.dstate.comm, dstate_container=top.dstate.container,
                   dstate_ms=round(top.dstate.dstate_ms, 3),
                   dstate_iowait_share_pct=round(top.dstate.iowait_share, 2))
    if top is not None and top.reader is not None:
        rec.update(reader_pid=top.reader.pid, reader_comm=top.reader.comm, reader_container=top.reader.container,
                   reader_read_bytes_s=round(top.reader.read_rate, 1))
    return rec


# -- the trace directory (-o DIR) -----------------------------------------------

_DSTATE_FIELDS = (("pid", "int64"), ("comm", "string"), ("container", "string"), ("dstate_ms", "float64"),
                  ("iowait_ms", "float64"),
                  ("iowait_share_pct", "float64"))
_READER_FIELDS = (("pid", "int64"), ("comm", "string"), ("container", "string"), ("read_bytes", "int64"),
                  ("read_bytes_s", "float64"), ("write_bytes_s", "float64"))
_FIGURES = ("iowait_ms_all_tasks", "not_counted_map_full")


def interval_record(row: Row, bpf_note: Optional[str]) -> dict[str, Any]:
    """One interval as a flat row of the trace: the --json line's figures
    (the same rounding), nested groups spelled ``cpu_usr``, ``dsk_sda_read``,
    ``most_dstate_pid``; the rankings stay lists of records.  ``ts_ns`` is
    the interval's end (CLOCK_MONOTONIC)."""
    doc = json_record(row, bpf_note)
    rec: dict[str, Any] = {"ts_ns": int(row.time), "interval_s": doc["interval_s"]}
    for group in ("cpu", "paging", "system", "procs"):
        for key, value in doc[group].items():
            rec[f"{group}_{key}"] = value
    for group in ("dsk", "net"):
        for name, pair in doc[group].items():
            for key, value in pair.items():
                rec[f"{group}_{name}_{key}"] = value
    bpf = doc["bpf"] or {}
    rec["bpf_unavailable"] = doc.get("bpf_unavailable")
    for prefix, key, fields in (("most_dstate", "most_dstate", _DSTATE_FIELDS),
                                ("top_reader", "top_reader", _READER_FIELDS)):
        task = bpf.get(key) or {}
        for name, _type in fields:
            rec[f"{prefix}_{name}"] = task.get(name)
    for name in _FIGURES:
        rec[name] = bpf.get(name)
    rec["dstate_ranked"] = bpf.get("dstate_ranked") if bpf else None
    rec["readers_ranked"] = bpf.get("readers_ranked") if bpf else None
    return rec


def interval_schema(disk_names: Sequence[str], net_names: Sequence[str]) -> "pa.Schema":
    """The stat_interval schema: fixed by the column groups, so that a part
    whose BPF columns are all empty has the same types as any other."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
    f64 = pa.float64()
    fields = [pa.field("time", pa.timestamp("ns", tz="UTC")), pa.field("ts_ns", pa.int64()),
              pa.field("interval_s", f64)]
    fields += [pa.field(f"cpu_{k}", f64) for k in ("usr", "sys", "idl", "wai", "stl")]
    fields += [pa.field(f"dsk_{d}_{k}", f64) for d in disk_names for k in ("read", "writ")]
    fields += [pa.field(f"net_{n}_{k}", f64) for n in net_names for k in ("recv", "send")]
    fields += [pa.field("paging_in", f64), pa.field("paging_out", f64), pa.field("system_int", f64),
               pa.field("system_csw", f64), pa.field("procs_run", pa.int64()), pa.field("procs_blk", pa.int64()),
               pa.field("procs_new", f64), pa.field("bpf_unavailable", pa.string())]
    fields += [pa.field(f"most_dstate_{n}", types[t]) for n, t in _DSTATE_FIELDS]
    fields += [pa.field(f"top_reader_{n}", types[t]) for n, t in _READER_FIELDS]
    fields += [pa.field("iowait_ms_all_tasks", f64), pa.field("not_counted_map_full", pa.int64())]
    fields += [pa.field("dstate_ranked", pa.list_(pa.struct([(n, types[t]) for n, t in _DSTATE_FIELDS]))),
               pa.field("readers_ranked", pa.list_(pa.struct([(n, types[t]) for n, t in _READER_FIELDS])))]
    return pa.schema(fields)


def interval_table(records: Iterable[Mapping[str, Any]], offset_ns: int, disk_names: Sequence[str],
                   net_names: Sequence[str]) -> "pa.Table":
    """interval_record()s as an Arrow table with a UTC ``time`` column
    (ts_ns + the run's boot-to-wall-clock offset)."""
    import pyarrow as pa

    rows = [{"time": int(r["ts_ns"]) + offset_ns, **r} for r in records]
    return pa.Table.from_pylist(rows, schema=interval_schema(disk_names, net_names))
