"""Rules dstate-io, unreaped-children and iowait-cause on synthetic frames,
including the edge cases: the parent dies first, pid reuse, a zombie reaped
by a subreaper, auto-reaped children, WNOWAIT, still a zombie at the end."""
from __future__ import annotations

import pandas as pd
import pytest

from kerntrace.analysis import diagnose, dstate, zombies
from kerntrace.analysis.zombies import EXIT, FORK, FREE, WAIT, lifecycles
from kerntrace.tracers.engine.ksyms import wait_site

S = 1_000_000_000


# ---- dstate ------------------------------------------------------------------

def totals(rows):
    cols = ["pid", "tid", "comm", "stack_id", "iowait", "count", "total_ns", "max_ns", "wait_site", "stack"]
    return {"dstate_totals": pd.DataFrame(rows, columns=cols)}


def trow(pid, tid, comm, iowait, count, total_ms, max_ms, site="__iomap_dio_rw", stack_id=1):
    return [pid, tid, comm, stack_id, iowait, count, int(total_ms * 1e6), int(max_ms * 1e6), site,
            f"{site};vfs_read"]


def test_dstate_io_fires_when_d_time_is_mostly_io():
    frames = totals([
        trow(10, 10, "reader", True, 100, 800, 20),
        trow(10, 11, "reader", True, 50, 200, 10, stack_id=2),
        trow(10, 10, "reader", False, 3, 30, 15, site="mutex_lock", stack_id=3),
        trow(20, 20, "other", True, 5, 100, 30, site="folio_wait_bit_common", stack_id=4),
    ])
    (f,) = dstate.findings(frames, duration_s=10.0)
    assert f.id == "dstate-io"
    first = f.evidence[0]
    assert first["pid"] == 10 and first["comm"] == "reader"
    assert first["sleeps"] == 153
    assert first["iowait_s"] == 1.0 and first["other_d_s"] == 0.03
    assert first["longest_ms"] == 20.0
    assert first["share_of_iowait"] == pytest.approx(1000 / 1100, abs=1e-3)
    assert first["wait_site"] == "__iomap_dio_rw"
    assert "1.10 s of 1.13 s" in f.summary and "pid 10 (reader)" in f.summary


def test_dstate_io_silent_when_d_is_mostly_locks_or_tiny():
    locks = totals([trow(1, 1, "a", False, 10, 900, 100, site="mutex_lock"), trow(1, 1, "a", True, 1, 100, 100)])
    assert dstate.findings(locks) == []
    tiny = totals([trow(1, 1, "a", True, 10, 10, 1)])
    assert dstate.findings(tiny) == []
    assert dstate.findings({}) == []


def test_per_task_splits_iowait_and_other():
    t = dstate.per_task(totals([trow(1, 1, "a", True, 2, 5, 3), trow(1, 1, "a", False, 1, 7, 7, "x", 2),
                                trow(1, 2, "a", True, 1, 1, 1)]))
    row = t[(t.pid == 1) & (t.tid == 1)].iloc[0]
    assert row["count"] == 3 and row["d_ms"] == 12 and row["iowait_ms"] == 5 and row["other_ms"] == 7
    assert row["longest_ms"] == 7 and row["wait_site"] == "x"


def test_wait_site_skips_scheduler_frames():
    assert wait_site(["__schedule", "schedule", "io_schedule", "__iomap_dio_rw", "iomap_dio_rw"]) == "__iomap_dio_rw"
    assert wait_site(["schedule", "schedule_timeout", "wait_for_completion_killable", "x"], 2) == \
        "wait_for_completion_killable;x"
    assert wait_site([]) == "?"


# ---- zombies -----------------------------------------------------------------

COLS = ["ts_ns", "enter_ns", "start_ns", "ret", "kind", "pid", "tid", "ppid", "target", "options",
        "wait_pid", "exit_code", "syscall", "subreaper", "comm", "parent_comm"]


def ev(kind, ts, pid, *, start=0, ppid=0, target=0, ret=0, enter=None, options=0, syscall="wait4", subreaper=0,
       comm="c", parent_comm="p"):
    return [int(ts * S), int((ts if enter is None else enter) * S), start, ret, kind, pid, pid, ppid, target,
            options, -1, 0, syscall, subreaper, comm, parent_comm]


def zframes(rows, final=()):
    return {"zombie_events": pd.DataFrame(rows, columns=COLS),
            "zombie_final": pd.DataFrame(list(final), columns=["pid", "start_ns", "proc_state"])}


def reap(ts, waiter, target, **kw):
    kw.setdefault("ret", target)
    return ev(WAIT, ts, waiter, target=target, **kw)


def test_wait_outside_the_loop():
    """The case: 4 children, one wait() after the loop, the parent exits 5 s later."""
    rows = [ev(FORK, 0.0 + i * 0.01, 200 + i, start=i + 1, ppid=100, comm="app", parent_comm="app")
            for i in range(4)]
    rows += [ev(EXIT, 1.0 + i * 0.1, 200 + i, start=i + 1, ppid=100, comm="app", parent_comm="app")
             for i in range(4)]
    rows.append(reap(1.0, 100, 200, enter=0.5, comm="app"))
    rows.append(ev(EXIT, 6.0, 100, start=99, ppid=50, comm="app", parent_comm="sh"))
    rows += [reap(6.01, 50, 200 + i, subreaper=1, comm="tini") for i in range(1, 4)]
    frames = zframes(rows)
    lives = {l.pid: l for l in lifecycles(frames)}
    assert lives[200].reaped_by == "parent" and lives[200].zombie_s == 0.0
    for pid in (201, 202, 203):
        assert lives[pid].reaped_by == "subreaper" and lives[pid].reaper_comm == "tini"
        assert lives[pid].parent_exit_ns == 6 * S
    (f,) = zombies.findings(frames)
    row = f.evidence[0]
    assert f.id == "unreaped-children"
    assert row["parent_pid"] == 100 and row["parent_comm"] == "app"
    assert row["unreaped"] == 3 and row["children_exited"] == 4
    assert row["max_zombie_s"] == pytest.approx(4.91)
    assert row["wait_calls"] == 0 and row["wait_calls_total"] == 1 and row["reaped_by_parent"] == 1
    assert f.summary.startswith("pid 100 (app) left 3 children unreaped for up to 4.9 s and made no wait() call")


def test_no_wait_at_all_matches_issue_wording():
    rows = [ev(EXIT, 0.0, 200 + i, start=i + 1, ppid=100, parent_comm="app") for i in range(12)]
    frames = zframes(rows, final=[(200 + i, i + 1, "Z") for i in range(12)])
    (f,) = zombies.findings(frames, end_ns=5 * S)
    assert f.summary.startswith(
        "pid 100 (app) left 12 children unreaped for up to 5.0 s and made no wait() call meanwhile")
    assert f.evidence[0]["still_zombies"] == 12
    assert {l.reaped_by for l in lifecycles(frames, 5 * S)} == {"still a zombie"}


def test_children_reaped_promptly_are_fine():
    rows = []
    for i in range(5):
        rows += [ev(EXIT, i, 200 + i, start=i + 1, ppid=100), reap(i + 0.001, 100, 200 + i, enter=i - 0.5),
                 ev(FREE, i + 0.01, 200 + i, start=i + 1)]
    assert zombies.findings(zframes(rows)) == []


def test_parent_dies_first_child_exits_later_under_init():
    """The child exits after its parent died: its parent at exit is init,
    but the fork record names who should have reaped it."""
    rows = [ev(FORK, 0.0, 300, start=7, ppid=100, parent_comm="app"),
            ev(EXIT, 0.5, 100, start=1, ppid=50, comm="app"),
            reap(0.5001, 50, 100, comm="sh"),
            ev(EXIT, 2.0, 300, start=7, ppid=1, parent_comm="systemd"),
            reap(2.001, 1, 300, comm="systemd")]
    lives = {l.pid: l for l in lifecycles(zframes(rows))}
    assert lives[300].parent_pid == 100 and lives[300].ppid_at_exit == 1
    assert lives[300].reaped_by == "init"
    assert lives[300].parent_exit_ns is None  # it was not a zombie when the parent died
    assert zombies.findings(zframes(rows)) == []


def test_pid_reuse_keeps_lifecycles_apart():
    rows = [ev(EXIT, 0.0, 400, start=1, ppid=100), reap(3.0, 100, 400),
            ev(FREE, 3.01, 400, start=1),
            ev(FORK, 4.0, 400, start=2, ppid=100), ev(EXIT, 4.5, 400, start=2, ppid=100),
            reap(4.5001, 100, 400), ev(FREE, 4.6, 400, start=2)]
    lives = lifecycles(zframes(rows))
    assert [(l.start_ns, l.reaped_by, round(l.zombie_s, 4)) for l in lives] == [(1, "parent", 3.0),
                                                                             (2, "parent", 0.0001)]
    (f,) = zombies.findings(zframes(rows))
    assert f.evidence[0]["unreaped"] == 1 and f.evidence[0]["children_exited"] == 2


def test_free_of_a_reused_pid_does_not_reap_the_old_zombie():
    rows = [ev(EXIT, 0.0, 500, start=1, ppid=100), ev(FREE, 1.0, 500, start=99)]
    (life,) = lifecycles(zframes(rows, final=[(500, 1, "Z")]), end_ns=2 * S)
    assert life.reaped_by == "still a zombie" and life.zombie_s == 2.0


def test_auto_reaped_children_are_not_leaks():
    rows = [ev(EXIT, 0.0, 600, start=1, ppid=100), ev(FREE, 0.02, 600, start=1)]
    (life,) = lifecycles(zframes(rows))
    assert life.reaped_by == "kernel (auto)"
    assert zombies.findings(zframes(rows)) == []


def test_waitid_wnowait_does_not_reap():
    rows = [ev(EXIT, 0.0, 700, start=1, ppid=100),
            reap(0.1, 100, 700, syscall="waitid", options=zombies.WNOWAIT | 4, ret=0),
            reap(2.0, 100, 700, syscall="waitid", options=4, ret=0)]
    (life,) = lifecycles(zframes(rows))
    assert life.reaped_ns == 2 * S and life.reaped_by == "parent"


def test_zombie_gone_after_tracing_is_not_called_a_zombie():
    rows = [ev(EXIT, 0.0, 800, start=1, ppid=100)]
    (life,) = lifecycles(zframes(rows, final=[(800, 1, "gone")]), end_ns=3 * S)
    assert life.reaped_by == "after tracing"


def test_wait_before_exit_does_not_reap():
    rows = [reap(0.5, 100, 900), ev(EXIT, 1.0, 900, start=1, ppid=100)]
    (life,) = lifecycles(zframes(rows, final=[(900, 1, "Z")]), end_ns=1.5 * S)
    assert life.reaped_by == "still a zombie"


def test_empty_frames():
    assert zombies.findings({}) == []
    assert zombies.findings(zframes([])) == []


# ---- diagnose ------------------------------------------------------------------

def test_iowait_cause_names_processes_file_device_and_counters():
    frames = totals([trow(201, 201, "repro", True, 100, 600, 5), trow(202, 202, "repro", True, 100, 300, 5),
                     trow(300, 300, "bash", True, 1, 100, 5)])
    frames["read"] = pd.DataFrame({
        "pid": [201, 202, 202, 300], "direct": [True, True, True, False], "ret": [4096, 4096, -5, 100],
        "path": ["/var/tmp/d/data"] * 3 + ["/etc/x"]})
    frames["block"] = pd.DataFrame({"pid": [201, 202], "bytes": [4096, 4096], "attributed": [True, True],
                                    "op": ["R", "R"], "disk": ["vda", "vda"]})
    frames["counters"] = pd.DataFrame({"wai": [10.0, 30.0], "read_bytes": [2**20, 2**20]})
    (f,) = diagnose.findings(frames)
    assert f.id == "iowait-cause"
    assert f.summary.startswith("2 repro processes (pids 201, 202) caused 90 % of the traced tasks' iowait time")
    assert "reading /var/tmp/d/data with O_DIRECT (0.0 MiB in 2 reads)" in f.summary
    assert "from vda" in f.summary and "20 % iowait on average (peak 30 %)" in f.summary
    by_pid = {e["pid"]: e for e in f.evidence}
    assert set(by_pid) == {201, 202}
    assert by_pid[201]["file"] == "/var/tmp/d/data" and by_pid[201]["odirect_bytes"] == 4096
    assert by_pid[202]["read_bytes"] == 4096 and by_pid[202]["device"] == "vda"
    assert by_pid[201]["share_of_iowait"] == pytest.approx(0.6)
    assert "drop O_DIRECT" in f.recommendation


def test_iowait_cause_without_odirect_frames():
    (f,) = diagnose.findings(totals([trow(5, 5, "db", True, 10, 500, 50)]))
    assert f.summary.startswith("pid 5 (db) caused 100 %")
    assert diagnose.findings(totals([trow(5, 5, "db", True, 10, 5, 5)])) == []
