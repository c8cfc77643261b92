"""``iotrace diagnose``: the iowait investigation in one command.

odirect (reads, O_DIRECT, block requests), dstate (D-state and iowait time)
and zombies (exits and reaping) run at once on one Target, in one Session,
with the CPU and disk counters sampled each second (the engine's tick); then every rule runs and
one report says who causes the iowait, whether it is O_DIRECT around the page
cache, and which parent leaks zombies.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .engine import BpfTracer, Target, require_bpf_environment, target_from_options
from .engine.backend import LIBBPF, Backend, BackendRequest
from .engine.clock import Clock
from .engine.run import Run, check_output_path
from .engine.tool import ObjectSpec, Tool
from .options import pid_options
from ..analysis import diagnose as cause_rules
from ..analysis.log2 import print_histograms
from ..analysis.report import format_table, print_findings, run_line
from .counters import CounterSampler
from .dstate import TICK_KIND, DStateTool
from .engine.sinks import JsonSink, Sink, TextSink, TraceDirSink
from .odirect import TOTALS_STREAM, ODirectTool
from .zombies import ZombiesTool

if TYPE_CHECKING:
    from .engine.metrics import ContainerOf, Exporter, Family, Series
    from ..analysis.findings import Finding

__all__ = ["DiagnoseTool", "command", "merge_processes", "run_diagnose"]

ODIRECT_KEYS = ("reads", "read_bytes", "odirect_reads", "odirect_bytes", "block_ios", "block_bytes")
COUNTER_HEADER = f"{'TIME(s)':>7} {'usr':>4} {'sys':>4} {'idl':>4} {'wai':>4} | {'read':>9} {'writ':>9}"


def _human(n: float) -> str:
    for unit in ("B", "k", "M", "G"):
        if abs(n) < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def merge_processes(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per pid from the tracers' summaries; odirect's keys always present."""
    rows: dict[int, dict[str, Any]] = {}

    def row(pid: int, comm: str) -> dict[str, Any]:
        r = rows.get(pid)
        if r is None:
            r = rows[pid] = {"pid": pid, "comm": comm, **{k: 0 for k in ODIRECT_KEYS}}
        return r

    for p in parts.get("odirect", {}).get("processes", []):
        r = row(int(p["pid"]), str(p.get("comm", "")))
        for k in ODIRECT_KEYS:
            r[k] = p.get(k, 0)
    for p in parts.get("dstate", {}).get("processes", []):
        r = row(int(p["pid"]), str(p.get("comm", "")))
        r.update({"d_sleeps": int(p["count"]), "d_ms": round(float(p["d_ms"]), 3),
                  "iowait_ms": round(float(p["iowait_ms"]), 3), "longest_d_ms": round(float(p["longest_ms"]), 3)})
    for p in parts.get("zombies", {}).get("processes", []):
        r = row(int(p["pid"]), str(p.get("comm", "")))
        r.update({"children_exited": p["children_exited"], "reaped_by_parent": p["reaped_by_parent"],
                  "still_zombies": p["still_zombies"], "max_zombie_s": p["max_zombie_s"]})
    return sorted(rows.values(), key=lambda r: (-r.get("iowait_ms", 0), -r["read_bytes"], r["pid"]))


class DiagnoseTool(Tool):
    """odirect, dstate and zombies on one Target in one run, with the CPU and
    disk counters sampled each second; every rule at the end."""

    name = "diagnose"
    tick_interval = 1.0

    def __init__(self, reap_orphans: bool = False, tracer_pid: Optional[int] = None) -> None:
        self.odirect = ODirectTool()
        # Totals come from the kernel's aggregate; only sleeps of 1 ms or more
        # travel the ring (and the -o trace), so the three rings stay far from full.
        self.dstate = DStateTool(min_event_ms=1.0)
        self.zombies = ZombiesTool(reap_orphans=reap_orphans, tracer_pid=tracer_pid)
        self.parts: dict[str, Tool] = {"odirect": self.odirect, "dstate": self.dstate, "zombies": self.zombies}
        self.zombies_reap_orphans = reap_orphans
        self.sampler = CounterSampler()
        self._counter_rows_shown = 0
        self._last_wai = 0.0
        self._counter_rows: list[dict[str, Any]] = []
        self._counter_totals: dict[str, Any] = cause_rules.counter_totals([])

    def objects(self) -> Sequence[ObjectSpec]:
        return [spec for part in self.parts.values() for spec in part.objects()]

    def loaded(self, tracers: Mapping[str, BpfTracer]) -> None:
        for part in self.parts.values():
            part.loaded({s.name: tracers[s.name] for s in part.objects()})

    def started(self, clock: Clock) -> None:
        self.sampler.restart()
        for part in self.parts.values():
            part.started(clock)

    def before_spawn(self) -> None:
        self.zombies.before_spawn()

    def spawned(self, pid: int) -> None:
        self.zombies.spawned(pid)

    def update(self, obj: str, ring: str, batch: Any) -> Any:
        return self.parts[obj].update(obj, ring, batch)

    def attach_events(self) -> Sequence[tuple[str, str, Any]]:
        return [item for part in self.parts.values() for item in part.attach_events()]

    def tick(self) -> Sequence[tuple[str, Any]]:
        self.zombies.tick()
        out = list(self.odirect.tick()) + list(self.dstate.tick())
        row = self.sampler.sample()
        if row is not None:
            self._count(row)
            out.append(("counters", row))
        return out

    def _count(self, row: Mapping[str, Any]) -> None:
        self._counter_rows.append({k: row[k] for k in ("wai", "read_bytes", "write_bytes")})
        self._last_wai = float(row["wai"])
        if len(self._counter_rows) > 1:  # kept as running totals: one row per second would grow
            self._counter_totals = _merge_counters(self._counter_totals, self._counter_rows)
            self._counter_rows = []

    def metrics(self, series: "Series", containers: "ContainerOf") -> "list[Family]":
        from .engine.metrics import Family

        out = [Family("kerntrace_cpu_iowait_ratio", "gauge",
                      "Share of CPU time in iowait over the last second, from /proc/stat (as iotrace stat "
                      "computes it).").add(self._last_wai / 100),
               Family("kerntrace_cpu_iowait_seconds_total", "counter",
                      "CPU seconds in iowait summed over the CPUs since the run started, from /proc/stat (rate() "
                      "of it loses no second between scrapes, as the ratio can).").add(
                          self.sampler.cpu_seconds_since_start("iowait"))]
        for part in self.parts.values():
            out += part.metrics(series, containers)
        return out

    def counter_totals(self) -> dict[str, Any]:
        return _merge_counters(self._counter_totals, self._counter_rows)

    def live_lines(self, obj: str, ring: str, events: Any, clock: Clock) -> str:
        if ring != "counters":
            return ""
        row = events
        head = COUNTER_HEADER + "\n" if not self._counter_rows_shown else ""
        self._counter_rows_shown += 1
        return head + (f"{row['t_s']:>7.1f} {row['usr']:>4.0f} {row['sys']:>4.0f} {row['idl']:>4.0f} "
                       f"{row['wai']:>4.0f} | {_human(row['read_bytes']):>9} {_human(row['write_bytes']):>9}\n")

    def json_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[dict[str, Any]]:
        if ring != "counters":
            return ()
        row = {k: round(v, 2) if isinstance(v, float) else v for k, v in events.items() if k != "mono_ns"}
        return [{"type": "counters", "time": clock.rfc3339(events["mono_ns"]), **row}]

    def trace_records(self, obj: str, ring: str, events: Any, clock: Clock) -> Iterable[tuple[str, Any]]:
        if ring == "counters":
            return [("counters", _counter_records(events, clock.offset_ns))]
        if ring == TOTALS_STREAM:
            return self.odirect.trace_records("odirect", ring, events, clock)
        if ring == TICK_KIND:
            return self.dstate.trace_records("dstate", ring, events, clock)
        if obj in self.parts:
            return self.parts[obj].trace_records(obj, ring, events, clock)
        return ()

    def replay(self, kind: str, table: Any) -> None:
        if kind == "counters":
            for row in table.to_pylist():
                self._count(row)
            return
        for part in self.parts.values():
            part.replay(kind, table)

    def finish(self) -> Sequence[tuple[str, str, Any]]:
        late = [item for part in self.parts.values() for item in part.finish()]
        if self.sampler.since_last() >= 0.3:  # the last partial second, unless too short to mean anything
            row = self.sampler.sample()
            if row is not None:
                self._count(row)
                late.append(("", "counters", row))
        return late

    def end_state(self) -> dict[str, Any]:
        return {name: part.end_state() for name, part in self.parts.items()}

    def restore_end(self, state: Mapping[str, Any]) -> None:
        for name, part in self.parts.items():
            part.restore_end(state.get(name, {}))

    def trace_options(self) -> dict[str, Any]:
        return {"reap_orphans": self.zombies_reap_orphans, "tracer_pid": self.zombies.tracer_pid}

    def summary(self, duration_s: float) -> dict[str, Any]:
        parts = {name: part.summary(duration_s) for name, part in self.parts.items()}
        c = self.counter_totals()
        return {
            "processes": merge_processes(parts),
            "counters": {
                "intervals": c["intervals"],
                "iowait_avg_pct": round(c["iowait_avg_pct"], 1),
                "iowait_max_pct": round(c["iowait_max_pct"], 1),
                "disk_read_bytes": c["disk_read_bytes"],
                "disk_write_bytes": c["disk_write_bytes"],
            },
            "exits": parts["zombies"]["exits"],
            "stacks": parts["dstate"]["stacks"],
            "d_at_attach": parts["dstate"]["d_at_attach"],
            "d_at_end": parts["dstate"]["d_at_end"],
            "histograms": {**parts["odirect"]["histograms"], **parts["dstate"]["histograms"]},
            "tracers": list(self.parts),
        }

    def findings(self, duration_s: float) -> list[Any]:
        found: list[Finding] = []
        found += self.odirect.findings(duration_s)
        found += cause_rules.findings(self.dstate.frames(), odirect=self.odirect.stats,
                                      counters=self.counter_totals())
        found += self.dstate.findings(duration_s)
        found += self.zombies.findings(duration_s)
        return found

    def print_report(self, envelope: Mapping[str, Any], findings: Sequence[Any], out: TextIO) -> None:
        c = envelope["counters"]
        out.write(f"\n{run_line(envelope)}\n")
        out.write(f"CPU iowait {c['iowait_avg_pct']:.0f} % on average (peak {c['iowait_max_pct']:.0f} %); "
                  f"disks read {_human(c['disk_read_bytes'])}, wrote {_human(c['disk_write_bytes'])}\n")
        rows = []
        shown = [p for p in envelope["processes"] if p["pid"] != os.getpid()]  # not iotrace itself
        for p in shown[:15]:
            rows.append({"pid": p["pid"], "comm": p["comm"], "reads": p["reads"],
                         "odirect_MiB": round(p["odirect_bytes"] / 2**20, 1),
                         "block_MiB": round(p["block_bytes"] / 2**20, 1),
                         "d_ms": p.get("d_ms", 0.0), "iowait_ms": p.get("iowait_ms", 0.0),
                         "children": p.get("children_exited", 0), "zombies_left": p.get("still_zombies", 0)})
        out.write("\nProcesses:\n" + format_table(rows) + "\n")
        if len(shown) > 15:
            out.write(f"({len(shown) - 15} more)\n")
        print_histograms(envelope.get("histograms") or {}, out)
        print_findings(findings, out)



def _merge_counters(totals: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Running counter totals plus some rows (the mean weighs every interval once)."""
    more = cause_rules.counter_totals(rows)
    n = totals["intervals"] + more["intervals"]
    return {
        "intervals": n,
        "iowait_avg_pct": ((totals["iowait_avg_pct"] * totals["intervals"] + more["iowait_avg_pct"] * more["intervals"])
                           / n if n else 0.0),
        "iowait_max_pct": max(totals["iowait_max_pct"], more["iowait_max_pct"]),
        "disk_read_bytes": totals["disk_read_bytes"] + more["disk_read_bytes"],
        "disk_write_bytes": totals["disk_write_bytes"] + more["disk_write_bytes"],
    }


def _counter_records(row: Mapping[str, Any], offset_ns: int) -> Any:
    """One counters row as the trace keeps it."""
    import numpy as np

    from .engine.records import Records

    out = Records(1, offset_ns)
    out.add("time", np.array([row["mono_ns"] + offset_ns], dtype=np.int64))
    out.add("ts_ns", np.array([row["mono_ns"]], dtype=np.uint64))
    for key, value in row.items():
        if key == "mono_ns":
            continue
        out.add(key, np.array([value], dtype=np.int64 if isinstance(value, int) else np.float64))
    return out


def run_diagnose(target: Target, duration: Optional[float], *, out: Optional[TextIO] = None, quiet: bool = False,
                 as_json: bool = False, output_dir: Optional[str] = None, utc: bool = False,
                 backend: Backend = LIBBPF, prometheus: Optional[Exporter] = None) -> dict[str, Any]:
    """One diagnose run to its end; returns the summary envelope (also used
    by the demo and the tests)."""
    sinks: list[Sink] = []
    if as_json:
        sinks.append(JsonSink(out))
    elif not quiet:
        sinks.append(TextSink(out))
    if output_dir:
        sinks.append(TraceDirSink(output_dir, getattr(output_dir, "flush_s", None)))
    if prometheus is not None:
        from .engine.metrics import MetricsSink

        sinks.append(MetricsSink(prometheus))
    run = Run("iotrace", DiagnoseTool(reap_orphans=bool(target.argv)), target, sinks, duration=duration,
              utc=utc, quiet=quiet, backend=backend)
    return run.execute()


@click.command("diagnose")
@pid_options(required=False)
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, containers: tuple[str, ...],
            cgroups: tuple[str, ...], duration: Optional[float],
            as_json: bool, output: Optional[str], utc: bool, verbose: int, backend: BackendRequest,
            prometheus: Optional[Exporter]) -> int:
    """odirect + dstate + zombies at once, with CPU and disk counters each
    second, and findings: who causes the iowait, O_DIRECT around the page
    cache, parents that leave zombies.  Without -p/-c: every process."""
    target = target_from_options(pids, command, follow, required=False, containers=containers, cgroups=cgroups)
    check_output_path(output)
    chosen = require_bpf_environment(backend)
    run_diagnose(target, duration, as_json=as_json, output_dir=output, utc=utc, backend=chosen,
                 prometheus=prometheus)
    return 0
