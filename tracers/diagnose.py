"""``iotrace diagnose``: the iowait investigation in one command.

odirect (reads, O_DIRECT, block requests), dstate (D-state and iowait time)
and zombies (exits and reaping) run at once on one Target, in one Session,
with the CPU and disk counters sampled each second; then every rule runs and
one report says who causes the iowait, whether it is O_DIRECT around the page
cache, and which parent leaks zombies.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Optional

import click

from .engine.records import JsonLines
from .options import setup_logging
from .engine.target import target_from_options

if TYPE_CHECKING:
    import pandas as pd

    from ..analysis.findings import Finding

__all__ = ["command", "merge_processes", "run_diagnose"]

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


def _load_odirect() -> tuple[Any, Any]:
    """(ODirectTrace, odirect rules) or (None, None) when this build has no odirect tracer."""
    try:
        from .odirect import ODirectTrace
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("odirect"):
            return None, None
        raise
    from ..analysis import odirect as rules

    return ODirectTrace, rules


def run_diagnose(target: Any, duration: Optional[float], *, out: Any = sys.stdout, quiet: bool = False,
                 json_out: Optional[JsonLines] = None, output_dir: Optional[str] = None) -> dict[str, Any]:
    """Runs the three tracers and returns the JSON summary (also used by the demo and the tests)."""
    from ..analysis import diagnose as cause_rules
    from ..analysis import dstate as dstate_rules
    from ..analysis import zombies as zombie_rules
    from .counters import CounterSampler
    from .dstate import DStateTrace
    from .runner import run_traces, summary_line, write_trace
    from .zombies import ZombieTrace

    ODirectTrace, odirect_rules = _load_odirect()
    traces: dict[str, Any] = {}
    if ODirectTrace is not None:
        traces["odirect"] = ODirectTrace(target, live=False, json_out=None)
    # Totals come from the kernel's aggregate; only sleeps of 1 ms or more
    # travel the ring (and the -o trace), so the three rings stay far from full.
    traces["dstate"] = DStateTrace(target, live=False, min_event_ms=1.0)
    zombies = traces["zombies"] = ZombieTrace(target, live=False)
    sampler = CounterSampler()
    live = json_out is None and not quiet

    def tick() -> None:
        zombies.reap()
        row = sampler.sample()
        if row is None:
            return
        if json_out is not None:
            json_out.emit({"type": "counters", **{k: round(v, 2) if isinstance(v, float) else v
                                                   for k, v in row.items()}})
        elif live:
            if len(sampler.rows()) == 1:
                out.write(COUNTER_HEADER + "\n")
            out.write(f"{row['t_s']:>7.1f} {row['usr']:>4.0f} {row['sys']:>4.0f} {row['idl']:>4.0f} "
                      f"{row['wai']:>4.0f} | {_human(row['read_bytes']):>9} {_human(row['write_bytes']):>9}\n")
            out.flush()

    def before_spawn(_session: Any) -> None:
        if zombies.reap_orphans:
            zombies.become_subreaper()

    session = run_traces("diagnose", list(traces.values()), target, duration, tick=tick,
                         before_spawn=before_spawn, on_spawn=lambda pid: setattr(zombies, "command_pid", pid),
                         on_start=lambda _s: sampler.restart(), quiet=quiet)
    try:
        if sampler.since_last() >= 0.3:
            tick()  # the last partial second, unless too short to mean anything
        import pandas as pd

        frames_by: dict[str, dict[str, pd.DataFrame]] = {name: t.frames() for name, t in traces.items()}
        counters = pd.DataFrame(sampler.rows())
        frames: dict[str, pd.DataFrame] = {"counters": counters}
        for part in frames_by.values():
            frames.update(part)
        parts = {name: traces[name].summary(frames_by[name]) for name in traces}
        findings: list[Finding] = []
        if odirect_rules is not None:
            findings += odirect_rules.findings(frames_by["odirect"], duration_s=session.duration_s)
        findings += cause_rules.findings(frames)
        findings += dstate_rules.findings(frames_by["dstate"], duration_s=session.duration_s)
        findings += zombie_rules.findings(frames_by["zombies"], end_ns=zombies.end_ns)
        extra = {
            "processes": merge_processes(parts),
            "counters": {
                "intervals": len(counters),
                "iowait_avg_pct": round(float(counters["wai"].mean()), 1) if len(counters) else 0.0,
                "iowait_max_pct": round(float(counters["wai"].max()), 1) if len(counters) else 0.0,
                "disk_read_bytes": int(counters["read_bytes"].sum()) if len(counters) else 0,
                "disk_write_bytes": int(counters["write_bytes"].sum()) if len(counters) else 0,
            },
            "exits": parts["zombies"]["exits"],
            "stacks": parts["dstate"]["stacks"],
            "tracers": list(traces),
        }
        summary = summary_line("diagnose", session, extra, findings)
        if json_out is not None:
            json_out.emit(summary)
        elif not quiet:
            _print_report(out, session, summary, findings, odirect=ODirectTrace is not None)
        if output_dir:
            os.makedirs(output_dir, mode=0o700, exist_ok=True)
            for name, part in frames_by.items():
                write_trace(os.path.join(output_dir, f"{name}.parquet"), part, name, session)
            write_trace(os.path.join(output_dir, "counters.parquet"), {"counters": counters}, "diagnose", session)
            fd = os.open(os.path.join(output_dir, "summary.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(summary, f, default=str, indent=1)
        summary["_findings"] = findings
        return summary
    finally:
        session.close()


def _print_report(out: Any, session: Any, summary: dict[str, Any], findings: "list[Finding]", odirect: bool) -> None:
    from ..analysis.report import format_table, print_findings

    c = summary["counters"]
    out.write(f"\nTraced {session.duration_s:.1f} s ({session.stop_reason}); lost events: {session.lost_events}")
    if session.child_status is not None:
        out.write(f"; command exit status {session.child_status}")
    out.write(f"\nCPU iowait {c['iowait_avg_pct']:.0f} % on average (peak {c['iowait_max_pct']:.0f} %); "
              f"disks read {_human(c['disk_read_bytes'])}, wrote {_human(c['disk_write_bytes'])}\n")
    if not odirect:
        out.write("(odirect tracer not in this build: no per-read or block figures)\n")
    rows = []
    shown = [p for p in summary["processes"] if p["pid"] != os.getpid()]  # not iotrace itself
    for p in shown[:15]:
        rows.append({"pid": p["pid"], "comm": p["comm"], "reads": p["reads"],
                     "odirect_MiB": round(p["odirect_bytes"] / 2**20, 1), "block_MiB": round(p["block_bytes"] / 2**20, 1),
                     "d_ms": p.get("d_ms", 0.0), "iowait_ms": p.get("iowait_ms", 0.0),
                     "children": p.get("children_exited", 0), "zombies_left": p.get("still_zombies", 0)})
    out.write("\nProcesses:\n" + format_table(rows) + "\n")
    if len(shown) > 15:
        out.write(f"({len(shown) - 15} more)\n")
    print_findings(findings, out)


@click.command("diagnose")
@click.option("-p", "--pid", "pids", type=int, multiple=True, metavar="PID",
              help="Trace this process (all its threads); repeatable.")
@click.option("-c", "--command", "command", metavar="COMMAND",
              help="Start COMMAND once the probes are attached and trace it and its children.")
@click.option("-f", "--follow", is_flag=True, help="Also trace children created while tracing.")
@click.option("-d", "--duration", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after SECONDS (0: attach, print the ready line, exit).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: counters each second, then a summary.")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the trace to DIR (one Parquet file per tracer, summary.json; mode 0700).")
@click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug).")
def command(pids: tuple[int, ...], command: Optional[str], follow: bool, duration: Optional[float],
            as_json: bool, output_dir: Optional[str], verbose: int) -> int:
    """odirect + dstate + zombies at once, with CPU and disk counters each
    second, and findings: who causes the iowait, O_DIRECT around the page
    cache, parents that leave zombies.  Without -p/-c: every process."""
    from .engine.environment import UsageProblem, require_bpf_environment

    setup_logging(verbose)
    if output_dir and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageProblem(f"-o {output_dir}: not a directory")
    target = target_from_options(pids, command, follow, required=False)
    require_bpf_environment()
    run_diagnose(target, duration, json_out=JsonLines() if as_json else None, output_dir=output_dir)
    return 0
