"""``iotrace dstate``: uninterruptible sleeps, per task, split into iowait and
other D time, with the kernel stacks where the time went.

Every sleep is aggregated in the kernel per (thread, stack, iowait), so the
totals are exact even if the ring buffer drops per-sleep records; the ring
carries each sleep for the live view and the trace (-o DIR), and nothing is
kept of it here.  The kernel also counts the sleeps per power of two of
their length (dstate_hists, iowait and other D apart) for the report's
histograms.  The trace's kinds: dstate_sleep (every sleep record, with its
wait site and stack), dstate_at_attach, each second dstate_total_tick and
dstate_hist_tick (the totals and histogram slots that grew), and at the end
dstate_total (the kernel's totals), dstate_hist (its histograms) and
dstate_at_end; `report` takes the totals and histograms from those, or for a
run killed before its end from the last tick and the dstate_sleep records
after it (or from the records alone).

``--folded`` prints, instead of the live lines and the report, the D time
per kernel stack for flame graphs (analysis/dstate.py: folded_lines).

Tasks already in D when tracing starts are read from /proc (wait channel,
kernel stack) and their sleep is counted from the attach to its wake-up;
tasks still in D at the end are listed with how long they have been so.
"""
from __future__ import annotations

import os
import struct
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO
from ..analysis.arrays import unique

import click

from .engine import BpfTracer, Hook, require_bpf_environment, target_from_options
from .engine.backend import BackendRequest
from .engine.clock import Clock
from .engine.run import check_output_path, run_tool
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from . import procstate
from ..analysis import dstate as rules
from ..analysis.dstate import TOTAL_COLUMNS, SleepTotals, per_process, per_task, top_stacks
from ..analysis.report import format_table, print_findings, run_line
from ..analysis.log2 import print_histograms
from .engine.environment import UsageProblem
from .engine.ksyms import kernel_symbols, read_stack, wait_site
from .engine.labels import container_cells, container_header
from .engine.records import arrow_table

if TYPE_CHECKING:
    from .engine.metrics import ContainerOf, Exporter, Family, Series
    import numpy as np
    import pandas as pd
    import pyarrow as pa

__all__ = ["AT_ATTACH_KIND", "AT_END_KIND", "DStateTool", "HIST_KIND", "HIST_TICK_KIND", "SLEEP_KIND", "TICK_KIND",
           "TOTAL_KIND", "command", "print_tables"]

HOOKS = (
    Hook("sched_switch", ("dstate_switch",)),
    Hook("sched_wakeup", ("dstate_wakeup",)),
)
TASK_UNINTERRUPTIBLE = 0x0002   # include/linux/sched.h: D in /proc, as bpf/dstate.bpf.c has it
_BPF_NOEXIST = 1                # bpf_map_update_elem flag: create only


# Record kinds of the trace directory (-o DIR); see DStateTool.trace_records.
SLEEP_KIND = "dstate_sleep"        # every sleep record the ring gave
AT_ATTACH_KIND = "dstate_at_attach"
TOTAL_KIND = "dstate_total"        # the kernel's exact totals, read at the end
TICK_KIND = "dstate_total_tick"    # each second: the totals that grew, as they stand then
HIST_KIND = "dstate_hist"          # the kernel's histogram slots, read at the end
HIST_TICK_KIND = "dstate_hist_tick"  # each second: the slots that grew, as they stand then
AT_END_KIND = "dstate_at_end"
# The state tables' columns and types (str: dictionary strings).  The totals
# are analysis/dstate.py's input frame dstate_totals.
TOTAL_TYPES: dict[str, Any] = {"pid": "int64", "tid": "int64", "comm": str, "stack_id": "int32", "iowait": "bool",
                               "count": "int64", "total_ns": "int64", "max_ns": "int64", "wait_site": str,
                               "stack": str, "at_attach": "bool"}
AT_ATTACH_TYPES: dict[str, Any] = {"ts_ns": "int64", "pid": "int64", "tid": "int64", "comm": str, "wchan": str,
                                   "stack": str}
AT_END_TYPES: dict[str, Any] = {"ts_ns": "int64", "pid": "int64", "tid": "int64", "comm": str, "wchan": str,
                                "since_ns": "int64", "d_s": "float64"}
TICK_TYPES: dict[str, Any] = {"ts_ns": "int64", **TOTAL_TYPES}
# one row per non-empty slot: sleeps of [2**slot, 2**(slot+1)) ns (bpf/dstate.h)
HIST_TYPES: dict[str, Any] = {"iowait": "bool", "slot": "int32", "count": "int64"}
HIST_TICK_TYPES: dict[str, Any] = {"ts_ns": "int64", **HIST_TYPES}
AT_ATTACH_COLUMNS = list(AT_ATTACH_TYPES)
AT_END_COLUMNS = list(AT_END_TYPES)
assert list(TOTAL_TYPES) == TOTAL_COLUMNS


def rows_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any], offset_ns: int) -> "pa.Table":
    """Rows of a state table (read from /proc or a map) as an Arrow table of
    the given columns ({name: "int64" | "bool" | ... | str}): ints stay ints,
    str columns are dictionary strings, a UTC time column leads when the
    rows have a ts_ns.  (zombies uses it too.)"""
    import pyarrow as pa

    out: dict[str, Any] = {}
    if "ts_ns" in columns:
        out["time"] = pa.array([int(r["ts_ns"]) + offset_ns for r in rows], pa.timestamp("ns", tz="UTC"))
    for name, kind in columns.items():
        values = [r[name] for r in rows]
        out[name] = (pa.array(values, pa.string()).dictionary_encode() if kind is str
                     else pa.array(values, pa.type_for_alias(kind)))
    return pa.table(out)


def _state_rows(table: "pa.Table", columns: Sequence[str]) -> list[dict[str, Any]]:
    """A stored state table back as the rows the live run kept."""
    return [{k: row.get(k) for k in columns} for row in table.to_pylist()]


class DStateTool(Tool):
    """D-state sleeps: per-sleep records for the live view and the trace,
    exact totals per (thread, stack, iowait) from the kernel.  Nothing is
    kept per sleep: the summary and findings come from the totals table
    (read from the kernel at the end, or from the trace's dstate_total)."""

    name = "dstate"

    # the kernel's totals go to the trace each second: a killed run keeps
    # the count of sleeps too short to be sent (--min-ms)
    tick_interval = 1.0

    def __init__(self, min_ms: float = 1.0, min_event_ms: float = 0.0, folded: bool = False) -> None:
        self.min_ms = min_ms
        self.folded = folded    # the report is the folded stacks alone
        self.min_event_ms = min_event_ms
        self.min_live_ns = int(min_ms * 1e6)
        self.min_event_ns = int(min_event_ms * 1e6)
        self.tracer: Optional[BpfTracer] = None
        self.ends: dict[int, str] = {}                   # dstate_event.end -> "wakeup", "switch"
        self._stacks: dict[int, list[str]] = {}          # stack_id -> frames (bounded by the stack map)
        self._totals: Optional["pd.DataFrame"] = None
        self._at_attach: list[dict[str, Any]] = []       # tasks in D when tracing started
        self._at_end: list[dict[str, Any]] = []          # tasks in D when it ended
        self._attach_stacks: dict[int, list[str]] = {}   # tid -> its stack from /proc, at attach
        self._traced: Optional[set[int]] = None
        self._pending: Optional["np.ndarray[Any, Any]"] = None   # the last batch, for trace_records
        # `report` of a trace without dstate_total (a killed run): totals
        # summed from its sleep records, per kernel key
        self._sleep_totals = SleepTotals()
        self.totals_recomputed = False
        # the totals at each tick: live, what was last written per key; in
        # report, the latest row per key, the last tick's time, and the
        # sleep records that ended after it
        self._tick_counts: dict[tuple[int, int, bool, bool], int] = {}
        self._tick_rows: dict[tuple[int, int, bool, bool], dict[str, Any]] = {}
        self._tick_ns = -1
        self._after_tick: list["pd.DataFrame"] = []
        self._ended = False                              # report: end.json was there
        # the histograms' counts per (iowait, slot): the kernel's at the end
        # (or the trace's dstate_hist); live, what each tick last wrote; in
        # report, the last tick's; and those of the totals recomputed from
        # the trace (set with them, in frames())
        self._hist: Optional[dict[tuple[bool, int], int]] = None
        self._tick_hist_counts: dict[tuple[bool, int], int] = {}
        self._tick_hist: dict[tuple[bool, int], int] = {}
        self._recomputed_hist: dict[tuple[bool, int], int] = {}
        # --prometheus: the kernel's totals as each tick last read them, per
        # key: (cgroup_id, cgroup_v1_id, count, total_ns)
        self._latest: dict[tuple[int, int, bool, bool], tuple[int, int, int, int]] = {}
        self._metrics_on = False

    def objects(self) -> Sequence[ObjectSpec]:
        return [ObjectSpec("dstate", HOOKS, rings={"dstate_events": "dstate_event"},
                           options={"min_event_ns": self.min_event_ns})]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        self.tracer = tracers["dstate"]
        self.ends = self.tracer.btf.enum_names("dstate_end")

    def started(self, clock: Clock) -> None:
        self.read_attach_state(clock.start_ns)

    # -- D-state sleeps under way at attach ---------------------------------------

    def _d_tasks(self) -> Iterable[Any]:
        """The traced threads in D now, from /proc (never the tracer's)."""
        assert self.tracer is not None
        me = os.getpid()
        if self._traced is None:
            pids = [t.pid for t in procstate.processes() if t.pid != me]
        else:
            pids = [p for p in self._traced if p != me]
        for pid in pids:
            for task in procstate.threads(pid):
                if task.state == "D":
                    yield task

    def read_attach_state(self, attach_ns: int) -> None:
        """Each traced thread in D at attach gets a sleep that starts at the
        attach: its wake-up (or switch-in) ends it as any other."""
        import numpy as np

        assert self.tracer is not None
        self._traced = procstate.traced_tgids(self.tracer)
        if self._traced is not None and not self._traced:
            return   # a command not started yet
        sleeping = self.tracer.obj.map("dstate_sleeping")
        value = np.zeros(1, dtype=self.tracer.btf.dtype("dstate_sleep"))
        value["ts_ns"] = attach_ns
        value["stack_id"] = self.tracer.btf.enum_values("dstate_stack_id")["none"]
        value["state"] = TASK_UNINTERRUPTIBLE
        value["at_attach"] = 1
        for task in list(self._d_tasks()):
            key = struct.pack("<I", task.tid)
            value["pid"] = task.pid
            try:  # NOEXIST: a sleep the programs saw begin since the attach is exact
                sleeping.update(key, value.tobytes(), _BPF_NOEXIST)
            except OSError:
                continue
            now = procstate.read_task(task.pid, task.tid)
            if now is None or now.state != "D":
                # Awake again.  If our entry is still there it woke before we
                # wrote it (a wake-up after would have ended it): not a sleep.
                raw = sleeping.lookup(key)
                if raw is not None and np.frombuffer(raw, dtype=value.dtype)[0]["at_attach"]:
                    sleeping.delete(key)
                    continue
            stack = procstate.kernel_stack(task.pid, task.tid)
            self._attach_stacks[task.tid] = stack
            self._at_attach.append({"ts_ns": attach_ns, "pid": task.pid, "tid": task.tid, "comm": task.comm,
                                    "wchan": procstate.wchan(task.pid, task.tid), "stack": ";".join(stack)})

    def attach_events(self) -> Sequence[tuple[str, str, Any]]:
        return [("dstate", AT_ATTACH_KIND, list(self._at_attach))] if self._at_attach else []

    def read_end_state(self) -> None:
        """The traced threads still in D at the end, and since when (their
        sleep, unfinished, is in no total)."""
        import numpy as np

        assert self.tracer is not None
        if self._traced is not None and not self._traced:
            self._traced = procstate.traced_tgids(self.tracer)   # the -c command, started since
        sleeping = self.tracer.obj.map("dstate_sleeping")
        dtype = self.tracer.btf.dtype("dstate_sleep")
        now = time.monotonic_ns()
        for task in list(self._d_tasks()):
            raw = sleeping.lookup(struct.pack("<I", task.tid))
            since = int(np.frombuffer(raw, dtype=dtype)[0]["ts_ns"]) if raw is not None else None
            self._at_end.append({
                "ts_ns": now, "pid": task.pid, "tid": task.tid, "comm": task.comm,
                "wchan": procstate.wchan(task.pid, task.tid),
                "since_ns": since, "d_s": round((now - since) / 1e9, 3) if since is not None else None})

    def _site(self, stack_id: int, tid: int, at_attach: bool, depth: int) -> str:
        if at_attach:
            frames = self._attach_stacks.get(tid, [])
            return wait_site(frames, depth) if frames else next(
                (r["wchan"] for r in self._at_attach if r["tid"] == tid and r["wchan"]), "?")
        return wait_site(self.stack(stack_id), depth)

    def _frames_of(self, stack_id: int, tid: int, at_attach: bool) -> list[str]:
        """A sleep's kernel stack: the one /proc showed at the attach for a
        sleep under way then, else the stack map's."""
        return self._attach_stacks.get(tid, []) if at_attach else self.stack(stack_id)

    # -- stacks ---------------------------------------------------------------

    def stack(self, stack_id: int) -> list[str]:
        frames = self._stacks.get(stack_id)
        if frames is None:
            assert self.tracer is not None
            frames = read_stack(self.tracer.obj.map("dstate_stacks"), stack_id, kernel_symbols())
            self._stacks[stack_id] = frames
        return frames

    # -- while tracing ----------------------------------------------------------

    def update(self, obj: str, ring: str, batch: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
        """Nothing of a batch is kept: its records go to the trace (built
        there, only when a trace is written), and only the sleeps long
        enough are shown."""
        self._pending = batch
        if self._metrics_on and len(batch):   # named while the sleepers' cgroups exist
            import numpy as np

            from .engine.metrics import name_cgroups

            pairs = np.unique(np.stack([batch["cgroup_id"], batch["cgroup_v1_id"]], axis=1), axis=0)
            name_cgroups(pairs[:, 0].tolist(), pairs[:, 1].tolist())
        return batch[batch["duration_ns"] >= self.min_live_ns]

    def sleep_table(self, batch: "np.ndarray[Any, Any]", offset_ns: int) -> "pa.Table":
        """Sleep records as the trace keeps them: the ring's fields, with
        the wait site (two frames, as the live lines show it) and the stack,
        as dictionary strings (few distinct stacks per batch)."""
        import numpy as np
        import pyarrow as pa

        table = arrow_table(batch, offset_ns, enums={"end": self.ends}, bools=["iowait", "at_attach"])
        # A site depends on the stack, or for a sleep under way at attach on its thread.
        at_attach = batch["at_attach"] != 0
        tid = np.where(at_attach, batch["tid"].astype(np.int64), -1)
        key = (batch["stack_id"].astype(np.int64) << 32) | (tid & 0xFFFFFFFF)
        uniques, first, codes = unique(key, return_index=True, return_inverse=True)
        codes = pa.array(codes.reshape(-1).astype(np.int32))
        sites, stacks = [], []
        for i in first:
            stack_id, t, a = int(batch["stack_id"][i]), int(batch["tid"][i]), bool(at_attach[i])
            sites.append(self._site(stack_id, t, a, 2))
            stacks.append(";".join(self._frames_of(stack_id, t, a)))
        table = table.append_column("wait_site", pa.DictionaryArray.from_arrays(codes, pa.array(sites, pa.string())))
        return table.append_column("stack", pa.DictionaryArray.from_arrays(codes, pa.array(stacks, pa.string())))

    def live_header(self, clock: Clock) -> str:
        return (f"{clock.live_title:<15} {'COMM':<16} {'PID':>7} {'TID':>7} {'KIND':<6} {'D(ms)':>9}  "
                f"{container_header()}WAIT-SITE")

    def live_lines(self, obj: str, ring: str, events: "np.ndarray[Any, Any]", clock: Clock) -> str:
        if ring != "dstate_events":
            return ""   # state read at attach and at the end: in the report
        lines = []
        cells = container_cells(events) or [""] * len(events)
        for ev, cell in zip(events, cells):
            comm = bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace")
            site = self._site(int(ev["stack_id"]), int(ev["tid"]), bool(ev["at_attach"]), 2)
            kind = "io" if ev["iowait"] else "D"
            lines.append(f"{clock.live(int(ev['ts_ns'])):<15} {comm:<16} {int(ev['pid']):>7} {int(ev['tid']):>7} "
                         f"{kind:<6} {int(ev['duration_ns']) / 1e6:>9.3f}  {cell}{site}\n")
        return "".join(lines)

    def json_records(self, obj: str, ring: str, events: "np.ndarray[Any, Any]",
                     clock: Clock) -> Iterable[dict[str, Any]]:
        if ring != "dstate_events":
            return
        for ev in events:
            yield {
                "type": "dstate", "time": clock.rfc3339(int(ev["ts_ns"])), "pid": int(ev["pid"]),
                "tid": int(ev["tid"]), "comm": bytes(ev["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "iowait": bool(ev["iowait"]), "duration_ms": int(ev["duration_ns"]) / 1e6,
                "state": int(ev["state"]),
                "wait_site": self._site(int(ev["stack_id"]), int(ev["tid"]), bool(ev["at_attach"]), 2),
                "at_attach": bool(ev["at_attach"]),
                "cgroup_id": int(ev["cgroup_id"]), "cgroup_v1_id": int(ev["cgroup_v1_id"]),
            }

    # -- the trace directory ------------------------------------------------------

    def trace_options(self) -> dict[str, Any]:
        return {"min_ms": self.min_ms, "min_event_ms": self.min_event_ms}

    def trace_records(self, obj: str, ring: str, events: Any, clock: Clock) -> "Iterable[tuple[str, pa.Table]]":
        if ring == "dstate_events":
            batch, self._pending = self._pending, None
            return [(SLEEP_KIND, self.sleep_table(batch, clock.offset_ns))] if batch is not None and len(batch) else []
        if ring == AT_ATTACH_KIND:
            return [(ring, rows_table(events, AT_ATTACH_TYPES, clock.offset_ns))]
        if ring == AT_END_KIND:
            return [(ring, rows_table(events, AT_END_TYPES, clock.offset_ns))]
        if ring == TICK_KIND:   # rows made a table only when a trace is written (pyarrow is heavy)
            totals, hist = events
            out = [(ring, rows_table(totals, TICK_TYPES, clock.offset_ns))] if totals else []
            return out + ([(HIST_TICK_KIND, rows_table(hist, HIST_TICK_TYPES, clock.offset_ns))] if hist else [])
        if ring == TOTAL_KIND:
            return [(ring, events)]
        if ring == HIST_KIND:
            return [(ring, rows_table(events, HIST_TYPES, 0))]
        return []

    def replay(self, kind: str, table: "pa.Table") -> None:
        if kind == SLEEP_KIND:
            self._sleep_totals.add(table)
            frame = table.to_pandas()
            self._after_tick.append(frame[frame["ts_ns"].astype("int64") > self._tick_ns])
        elif kind == TICK_KIND:
            self._replay_tick(table)
        elif kind == HIST_TICK_KIND:
            for row in table.to_pylist():   # each tick's rows: the slots as they stand then
                self._tick_hist[(bool(row["iowait"]), int(row["slot"]))] = int(row["count"])
        elif kind == TOTAL_KIND:
            self._add_totals(table)
        elif kind == HIST_KIND:
            self._hist = self._hist or {}
            for row in table.to_pylist():
                key = (bool(row["iowait"]), int(row["slot"]))
                self._hist[key] = self._hist.get(key, 0) + int(row["count"])
        elif kind == AT_ATTACH_KIND:
            self._at_attach += _state_rows(table, AT_ATTACH_COLUMNS)
        elif kind == AT_END_KIND:
            self._at_end += _state_rows(table, AT_END_COLUMNS)

    def _add_totals(self, table: "pa.Table") -> None:
        """The totals table, from the kernel (live) or from the trace (report),
        made into the rules' frame the same way."""
        import pandas as pd

        frame = pd.DataFrame(_state_rows(table, TOTAL_COLUMNS), columns=TOTAL_COLUMNS)
        self._totals = frame if self._totals is None or self._totals.empty else pd.concat(
            [self._totals, frame], ignore_index=True)

    def end_state(self) -> dict[str, Any]:
        totals = self._totals
        return {"total_rows": 0 if totals is None else len(totals)}

    def restore_end(self, state: Mapping[str, Any]) -> None:
        # A clean end wrote the kernel's totals (none: nothing slept).
        self._ended = True

    # -- the kernel's totals ---------------------------------------------------------

    def tick(self) -> Sequence[tuple[str, Any]]:
        """The totals and histogram slots that grew since the last tick, for
        the trace (nothing is shown)."""
        import time as _time

        if self.tracer is None:
            return []
        now = _time.monotonic_ns()
        # The slots the same before and after the totals were read: no sleep
        # ended meanwhile, both hold the same sleeps (a killed run's report
        # adds them up).  A few tries, then as they are.
        for _attempt in range(3):
            slots = self._kernel_hist()
            entries = list(self.tracer.obj.map("dstate_totals").items())
            if self._kernel_hist() == slots:
                break
        rows = [dict(r, ts_ns=now) for r in self._kernel_rows(changed_only=True, entries=entries)]
        for r in rows:
            self._latest[(r["tid"], r["stack_id"], r["iowait"], r["at_attach"])] = (
                r["cgroup_id"], r["cgroup_v1_id"], r["count"], r["total_ns"])
        if self._metrics_on and rows:
            from .engine.metrics import name_cgroups

            name_cgroups([r["cgroup_id"] for r in rows], [r["cgroup_v1_id"] for r in rows])
        hist = []
        for key, count in slots.items():
            if self._tick_hist_counts.get(key) != count:
                self._tick_hist_counts[key] = count
                hist.append({"ts_ns": now, "iowait": key[0], "slot": key[1], "count": count})
        return [(TICK_KIND, (rows, hist))] if rows or hist else []

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        """Sleeps and iowait from the kernel's totals as the last tick read
        them (with the task's cgroups, so a reader gone since keeps its
        container); the tasks in D now from the kernel's table of sleeps
        under way (alive: their container from /proc)."""
        import numpy as np

        self._metrics_on = True
        sleeps: dict[tuple[str, ...], float] = {}
        iowait: dict[tuple[str, ...], float] = {}
        for (_tid, _stack, is_iowait, _at), (cgroup_id, v1_id, count, total_ns) in self._latest.items():
            key = (containers.cgroup(cgroup_id, v1_id),)
            sleeps[key] = sleeps.get(key, 0) + count
            if is_iowait:
                iowait[key] = iowait.get(key, 0) + total_ns / 1e9
        now: dict[tuple[str, ...], float] = {}
        if self.tracer is not None:
            dtype = self.tracer.btf.dtype("dstate_sleep")
            me = os.getpid()
            for _key, raw in self.tracer.obj.map("dstate_sleeping").items():
                pid = int(np.frombuffer(raw, dtype=dtype, count=1)[0]["pid"])
                if pid != me:
                    key = (containers.pid(pid),)
                    now[key] = now.get(key, 0) + 1
        return [series.per_container("kerntrace_dstate_tasks", "gauge",
                                     "Tasks in uninterruptible sleep (D state) now.", now),
                series.per_container("kerntrace_dstate_sleeps_total", "counter",
                                     "Uninterruptible (D-state) sleeps that ended.", sleeps),
                series.per_container("kerntrace_dstate_iowait_seconds_total", "counter",
                                     "Seconds of D-state sleep spent waiting for I/O (in_iowait: what the CPU "
                                     "counts as iowait).", iowait)]

    def _replay_tick(self, table: "pa.Table") -> None:
        for row in table.to_pylist():
            key = (int(row["tid"]), int(row["stack_id"]), bool(row["iowait"]), bool(row["at_attach"]))
            self._tick_rows[key] = {c: row[c] for c in TOTAL_COLUMNS}
            self._tick_ns = max(self._tick_ns, int(row["ts_ns"]))
        self._after_tick = [f[f["ts_ns"].astype("int64") > self._tick_ns] for f in self._after_tick]

    def _kernel_hist(self) -> dict[tuple[bool, int], int]:
        """The kernel's histograms: the count of each non-empty (iowait, slot)."""
        import numpy as np

        assert self.tracer is not None
        dtype = self.tracer.btf.dtype("dstate_hist")
        hists = self.tracer.obj.map("dstate_hists")
        out = {}
        for iowait in (False, True):
            raw = hists.lookup(struct.pack("<I", int(iowait)))
            slots = np.frombuffer(raw, dtype=dtype, count=1)[0]["slots"] if raw is not None else []
            for slot in np.flatnonzero(slots).tolist():
                out[(iowait, slot)] = int(slots[slot])
        return out

    def _kernel_rows(self, changed_only: bool = False,
                     entries: Optional[Iterable[tuple[bytes, bytes]]] = None) -> list[dict[str, Any]]:
        """The kernel's totals table (or entries read from it) as rows (with
        changed_only, those whose count grew since the last call that asked
        so)."""
        import numpy as np

        assert self.tracer is not None
        key_t = self.tracer.btf.dtype("dstate_key")
        val_t = self.tracer.btf.dtype("dstate_total")
        rows = []
        for k, v in (self.tracer.obj.map("dstate_totals").items() if entries is None else entries):
            key = np.frombuffer(k, dtype=key_t, count=1)[0]
            val = np.frombuffer(v, dtype=val_t, count=1)[0]
            tid, at_attach = int(key["tid"]), bool(key["at_attach"])
            if changed_only:
                ident = (tid, int(key["stack_id"]), bool(key["iowait"]), at_attach)
                if self._tick_counts.get(ident) == int(val["count"]):
                    continue
                self._tick_counts[ident] = int(val["count"])
            # A sleep under way at attach has the stack /proc showed then.
            frames = self._frames_of(int(key["stack_id"]), tid, at_attach)
            rows.append({
                "pid": int(val["pid"]), "tid": tid,
                "comm": bytes(val["comm"]).split(b"\0", 1)[0].decode("utf-8", "replace"),
                "stack_id": int(key["stack_id"]), "iowait": bool(key["iowait"]),
                "count": int(val["count"]), "total_ns": int(val["total_ns"]), "max_ns": int(val["max_ns"]),
                "wait_site": self._site(int(key["stack_id"]), tid, at_attach, 1) if at_attach
                else wait_site(frames, depth=1),
                "stack": ";".join(frames), "at_attach": at_attach,
                "cgroup_id": int(val["cgroup_id"]), "cgroup_v1_id": int(val["cgroup_v1_id"]),
            })
        return rows

    # -- after tracing ----------------------------------------------------------

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        """Reads the in-kernel totals (exact whatever the ring dropped), the
        histograms and the tasks still in D; all go to the trace as late
        records."""
        assert self.tracer is not None
        # Nothing is counted from here on: the totals and the histograms,
        # read one after the other, hold the same sleeps.
        self.tracer.detach()
        totals = rows_table(self._kernel_rows(), TOTAL_TYPES, 0)
        self._totals = None
        self._add_totals(totals)
        self._hist = self._kernel_hist()
        self.read_end_state()
        late: list[tuple[str, str, Any]] = [("dstate", TOTAL_KIND, totals)]
        late.append(("dstate", HIST_KIND, [{"iowait": k[0], "slot": k[1], "count": c} for k, c in self._hist.items()]))
        if self._at_end:
            late.append(("dstate", AT_END_KIND, list(self._at_end)))
        return late

    def frames(self) -> "dict[str, pd.DataFrame]":
        """The totals table the rules read (analysis/dstate.py): the kernel's,
        or for a trace that has none (a killed run) the sum of its sleep
        records."""
        import pandas as pd

        if self._totals is None and self._tick_rows and not self._ended:
            # the last tick's totals, and the sleeps recorded after it
            after = SleepTotals()
            for frame in self._after_tick:
                after.add(frame)
            self._totals = pd.concat([pd.DataFrame(list(self._tick_rows.values()), columns=TOTAL_COLUMNS),
                                      after.frame()], ignore_index=True)
            self._recomputed_hist = dict(self._tick_hist)
            for key, count in after.hist.items():
                self._recomputed_hist[key] = self._recomputed_hist.get(key, 0) + count
            self.totals_recomputed = True
        elif self._totals is None and self._sleep_totals and not self._ended:
            self._totals = self._sleep_totals.frame()
            self._recomputed_hist = dict(self._sleep_totals.hist)
            self.totals_recomputed = True
        totals = self._totals if self._totals is not None else pd.DataFrame(columns=TOTAL_COLUMNS)
        return {"dstate_totals": totals}

    def state_frames(self) -> "dict[str, pd.DataFrame]":
        """The tasks /proc showed in D at attach (with wait channel and stack)
        and at the end."""
        import pandas as pd

        return {
            "dstate_at_attach": pd.DataFrame(self._at_attach, columns=AT_ATTACH_COLUMNS),
            "dstate_at_end": pd.DataFrame(self._at_end, columns=AT_END_COLUMNS),
        }

    def histograms(self) -> dict[str, dict[str, Any]]:
        """The log2 histograms of sleep lengths, from the same source as the
        totals (their counts add up to the totals' sleeps)."""
        frames = self.frames()
        if self.totals_recomputed:
            return rules.histograms(self._recomputed_hist)
        if self._hist is None and len(frames["dstate_totals"]):
            return rules.histograms({}, note=f"not in this trace: it has no {HIST_KIND} (an older kerntrace wrote it)")
        return rules.histograms(self._hist or {})

    def summary(self, duration_s: float) -> dict[str, Any]:
        frames = self.frames()
        out = {
            "processes": per_process(frames).to_dict("records"),
            "stacks": top_stacks(frames, 10).to_dict("records"),
            "histograms": self.histograms(),
            # Tasks in D when tracing started (counted from then) and when it ended.
            "d_at_attach": [{k: r[k] for k in ("pid", "tid", "comm", "wchan")} for r in self._at_attach],
            "d_at_end": [{k: r[k] for k in ("pid", "tid", "comm", "wchan", "d_s")} for r in self._at_end],
        }
        if self.totals_recomputed and self._tick_rows:
            out["totals_from"] = (f"{TICK_KIND}: the kernel's totals as the last second's tick read them (the "
                                  f"run did not end cleanly), and the {SLEEP_KIND} records after it")
        elif self.totals_recomputed:
            out["totals_from"] = (f"{SLEEP_KIND} records: the trace has no {TOTAL_KIND} (the run did not end "
                                  f"cleanly); sleeps the ring dropped"
                                  + (f" or shorter than {self.min_event_ms:g} ms" if self.min_event_ms else "")
                                  + " are not in them")
        return out

    def findings(self, duration_s: float) -> list[Any]:
        return rules.findings(self.frames(), duration_s=duration_s)

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        if self.folded:
            out.write("".join(line + "\n" for line in rules.folded_lines(self.frames())))
            return
        out.write(f"\n{run_line(envelope)}\n")
        print_tables({**self.frames(), **self.state_frames()}, out)
        if self.totals_recomputed:
            out.write(f"\n(totals summed from the {SLEEP_KIND} records: the trace has no kernel totals)\n")
        print_histograms(envelope.get("histograms") or {}, out)
        print_findings(findings, out)


def print_tables(frames: "dict[str, pd.DataFrame]", out: TextIO, top: int = 10) -> None:
    tasks = per_task(frames)
    out.write("\nD-state time per task (iowait: sleeps in io_schedule; other: locks, page faults, ...):\n")
    if tasks.empty:
        out.write("(no uninterruptible sleeps)\n")
    else:
        rows = [{"pid": r.pid, "tid": r.tid, "comm": r.comm, "sleeps": r.count, "d_ms": round(r.d_ms, 3),
                 "iowait_ms": round(r.iowait_ms, 3), "other_ms": round(r.other_ms, 3),
                 "longest_ms": round(r.longest_ms, 3)} for r in tasks.head(top).itertuples()]
        out.write(format_table(rows) + "\n")
        if len(tasks) > top:
            out.write(f"({len(tasks) - top} more tasks)\n")
    for name, title, cols in (
            ("dstate_at_attach", "In D when tracing started (counted from then to the wake-up):",
             ["pid", "tid", "comm", "wchan"]),
            ("dstate_at_end", "Still in D when tracing ended (in no total):", ["pid", "tid", "comm", "wchan", "d_s"])):
        table = frames.get(name)
        if table is not None and not table.empty:
            out.write(f"\n{title}\n{format_table(table[cols].head(top).to_dict('records'))}\n")
    stacks = top_stacks(frames, 5)
    if not stacks.empty:
        out.write("\nWhere the D time went (kernel stacks, innermost first):\n")
        for r in stacks.itertuples():
            out.write(f"  {r.d_ms:.3f} ms in {r.sleeps} sleeps, {'iowait' if r.iowait else 'other D'}, "
                      f"{r.comm} (pid {r.pid})\n")
            for frame in r.stack.split(";")[:12]:
                out.write(f"      {frame}\n")


@click.command("dstate")
@pid_options(required=False)
@click.option("--min-ms", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Send a record of each sleep at least this long (shown, emitted with --json, written "
                   "with -o); shorter ones are only counted, in the kernel. 0: a record per sleep, at a "
                   "cost on a task that sleeps often.")
@click.option("--folded", is_flag=True,
              help="Print only the D time per kernel stack, in microseconds, root first, one line per stack "
                   "(`frame;frame;frame N`): the folded format flamegraph.pl and speedscope read.")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, containers: tuple[str, ...],
            cgroups: tuple[str, ...], duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int, backend: BackendRequest,
            prometheus: Optional[Exporter], min_ms: float, folded: bool) -> int:
    """Uninterruptible (D-state) sleeps of the traced tasks (all tasks without
    -p/-c): count, total and longest per task, split into iowait and other D,
    the distribution of their lengths, and the kernel stacks where the time
    went."""
    if folded and as_json:
        raise UsageProblem("--folded or --json, not both")
    target = target_from_options(pids, command, follow, required=False, containers=containers, cgroups=cgroups)
    check_output_path(output)
    chosen = require_bpf_environment(backend)
    run_tool("iotrace", DStateTool(min_ms=min_ms, min_event_ms=min_ms, folded=folded), target, duration=duration,
             as_json=as_json, output=output, utc=utc, live=not folded, backend=chosen, prometheus=prometheus)
    return 0
