"""Rules dstate-io, unreaped-children and iowait-cause on synthetic frames,
including the edge cases: the parent dies first, pid reuse, a zombie reaped
by a subreaper, auto-reaped children, WNOWAIT, still a zombie at the end;
zombies and D sleeps that predate tracing, a parent renamed by exec, orphans
the kernel reaps for init, and a PID namespace's end."""
from __future__ import annotations

import pandas as pd
import pytest

from kerntrace.analysis import diagnose, dstate, zombies
from kerntrace.analysis.zombies import EXEC, EXIT, FORK, FREE, WAIT, lifecycles
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
    # The first was reaped by its parent, but only after 3 s: late, not unreaped.
    assert f.evidence[0]["unreaped"] == 0 and f.evidence[0]["reaped_late"] == 1
    assert f.evidence[0]["children_exited"] == 2
    assert f.summary == "pid 100 (c) reaped 1 child only after up to 3.0 s as zombies."


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


# ---- zombies: attaching to an incident in progress (issue 17) --------------------

TICK = 10_000_000
ATTACH_COLS = ["ts_ns", "pid", "start_ns", "coarse_ns", "comm", "ppid", "parent_comm", "exit_code"]
FULL_COLS = COLS + ["ns_init", "autoreap"]


def full(kind, ts, pid, *, ns_init=0, autoreap=0, **kw):
    """An event with the columns of this version's records (ns_init, autoreap)."""
    return ev(kind, ts, pid, **kw) + [ns_init, autoreap]


def attach_frames(rows, at_attach=(), final=(), children=()):
    return {"zombie_events": pd.DataFrame(rows, columns=FULL_COLS),
            "zombie_final": pd.DataFrame(list(final), columns=["pid", "start_ns", "proc_state"]),
            "zombie_at_attach": pd.DataFrame(list(at_attach), columns=ATTACH_COLS),
            "children_at_attach": pd.DataFrame(list(children), columns=["pid", "start_ns", "coarse_ns", "comm",
                                                                        "ppid", "parent_comm"])}


def zombie_at(ts, pid, start_ticks, ppid, comm="app", parent_comm="app"):
    return [int(ts * S), pid, start_ticks * TICK, TICK, comm, ppid, parent_comm, 0]


def test_zombies_at_attach_count_from_the_attach():
    """The issue's -p mode: 6 zombies when tracing starts at t=10 s; the
    parent's one wait() reaps one at 10.5 s, it exits at 12 s, and init
    (ignoring SIGCHLD) has the kernel reap the 5 others as they pass to it."""
    at = [zombie_at(10.0, 200 + i, 500 + i, 100) for i in range(6)]
    rows = [full(WAIT, 10.5, 100, target=200, ret=200, enter=10.4, comm="app"),
            full(EXIT, 12.0, 100, start=1, ppid=50, comm="app", parent_comm="sh")]
    # The frees carry exact starts, in the tick /proc gave; ppid: the reaper.
    rows += [full(FREE, 12.01, 200 + i, start=(500 + i) * TICK + 1234, ppid=1, parent_comm="systemd", autoreap=1)
             for i in range(1, 6)]
    frames = attach_frames(rows, at_attach=at)
    lives = {l.pid: l for l in lifecycles(frames, end_ns=13 * S) if l.parent_pid == 100}
    assert len(lives) == 6 and all(l.predates_tracing for l in lives.values())
    assert lives[200].reaped_by == "parent" and lives[200].zombie_s == pytest.approx(0.5)
    for pid in range(201, 206):
        life = lives[pid]
        assert (life.reaped_by, life.reaper_pid, life.reaper_comm, life.reaped_how) == ("init", 1, "systemd", "auto")
        # Released in the parent's exit (the free follows an RCU grace period later).
        assert life.parent_exit_ns == 12 * S and life.reaped_ns == 12 * S and life.freed_ns == int(12.01 * S)
        assert life.zombie_s == pytest.approx(2.0)
    (f,) = [f for f in zombies.findings(frames, end_ns=13 * S) if f.evidence[0]["parent_pid"] == 100]
    row = f.evidence[0]
    assert row["unreaped"] == 5 and row["reaped_late"] == 0 and row["zombies_at_attach"] == 6
    assert row["reaped_by_parent"] == 1 and row["reaped_by_others"] == 5 and row["orphaned"] == 5
    assert row["wait_calls"] == 1 and row["reapers"] == "init 1 (systemd)"
    assert f.summary == (
        "pid 100 (app) left 5 children unreaped for up to 2.0 s and its 1 wait() call meanwhile reaped only 1 of "
        "6 exited children; 6 were already zombies when tracing started, 5 of them for at least 2.0 s more; "
        "5 were still zombies when it exited and init 1 (systemd) reaped them (it ignores SIGCHLD: the kernel "
        "reaped them as they were passed to it).")


def test_zombie_at_attach_still_there_at_the_end():
    at = [zombie_at(0.0, 300, 7, 100)]
    frames = attach_frames([], at_attach=at, final=[(300, 7 * TICK, "Z")])
    (life,) = lifecycles(frames, end_ns=4 * S)
    assert life.reaped_by == "still a zombie" and life.zombie_s == 4.0 and life.predates_tracing
    (f,) = zombies.findings(frames, end_ns=4 * S)
    assert f.evidence[0]["still_zombies"] == 1
    assert f.summary.endswith("; 1 was already a zombie when tracing started, for at least 4.0 s more; "
                              "1 was still a zombie when tracing ended.")


def test_zombie_seen_at_attach_and_exiting_after_it_counts_once():
    """It exited between the attach and the read of /proc: the exit record
    (exact) wins over the /proc row."""
    at = [zombie_at(5.0, 400, 3, 100)]
    rows = [full(EXIT, 5.001, 400, start=3 * TICK + 99, ppid=100), full(WAIT, 5.002, 100, target=400, ret=400)]
    (life,) = lifecycles(attach_frames(rows, at_attach=at))
    assert not life.predates_tracing and life.reaped_by == "parent" and life.exit_ns == int(5.001 * S)


def test_orphans_still_zombies_at_the_end_name_who_holds_them():
    """-p PARENT ends when the parent exits: its zombies, passed to init, may
    not be reaped yet; /proc at the end says whose they are."""
    at = [zombie_at(0.0, 200 + i, 10 + i, 100) for i in range(3)]
    rows = [full(EXIT, 2.0, 100, start=1, ppid=50, comm="app")]
    final = [(200 + i, (10 + i) * TICK, "Z", 1, "init") for i in range(3)]
    frames = attach_frames(rows, at_attach=at)
    frames["zombie_final"] = pd.DataFrame(final, columns=["pid", "start_ns", "proc_state", "ppid", "parent_comm"])
    lives = [l for l in lifecycles(frames, end_ns=int(2.1 * S)) if l.parent_pid == 100]
    assert {(l.reaped_by, l.holder_pid, l.reaper_pid) for l in lives} == {("still a zombie", 1, None)}
    (f,) = [f for f in zombies.findings(frames, end_ns=int(2.1 * S)) if f.evidence[0]["parent_pid"] == 100]
    assert f.evidence[0]["unreaped"] == 3 and f.evidence[0]["still_zombies"] == 3 and f.evidence[0]["orphaned"] == 3
    assert f.summary.endswith("; 3 were still zombies when it exited, passed to 1 (init), and not reaped yet when "
                              "tracing ended.")


def test_exec_renames_the_parent():
    """A shell forks `sleep`, then execs the program that forks the children."""
    rows = [full(FORK, 0.0, 201, start=1, ppid=100, comm="sh", parent_comm="sh"),
            full(EXIT, 0.1, 201, start=1, ppid=100, comm="sleep", parent_comm="sh"),
            full(WAIT, 0.1001, 100, target=201, ret=201, comm="sh"),
            full(EXEC, 0.2, 100, start=9, ppid=50, comm="app", parent_comm="bash"),
            full(FORK, 0.3, 202, start=2, ppid=100, comm="app", parent_comm="app"),
            full(EXIT, 0.4, 202, start=2, ppid=100, comm="app", parent_comm="app")]
    lives = {l.pid: l for l in lifecycles(attach_frames(rows), end_ns=5 * S)}
    assert lives[201].parent_comm == "app" and lives[202].parent_comm == "app"
    assert lives[201].comm == "sleep"


def test_namespace_end_reaps_what_its_init_left():
    """The program is a PID namespace's init: it reaps one child, exits; the
    kernel reaps the others (no wait) as the namespace ends; one that was
    still running is killed then, exits after the parent and is no leak."""
    rows = [full(EXIT, 1.0 + i * 0.01, 200 + i, start=i + 1, ppid=100, comm="app", parent_comm="app")
            for i in range(4)]
    rows.append(full(WAIT, 1.5, 100, target=200, ret=200, comm="app", ns_init=1))
    rows.append(full(EXIT, 3.0, 100, start=99, ppid=50, comm="app", parent_comm="unshare", ns_init=1))
    rows.append(full(EXIT, 3.001, 210, start=50, ppid=100, comm="app", parent_comm="app"))
    rows += [full(FREE, 3.01, 200 + i, start=i + 1, ppid=100, parent_comm="app") for i in range(1, 4)]
    rows.append(full(FREE, 3.011, 210, start=50, ppid=100, parent_comm="app"))
    rows.append(full(WAIT, 3.02, 50, target=100, ret=100, comm="unshare"))
    frames = attach_frames(rows)
    lives = {l.pid: l for l in lifecycles(frames)}
    assert lives[100].ns_init
    for pid in (201, 202, 203):
        assert (lives[pid].reaped_by, lives[pid].reaper_pid, lives[pid].reaped_how) == \
            ("namespace end", 100, "namespace end")
    assert lives[210].reaped_by == "kernel (auto)" and lives[210].parent_exit_ns is None
    (f,) = [f for f in zombies.findings(frames) if f.evidence[0]["parent_pid"] == 100]
    row = f.evidence[0]
    assert row["parent_pid"] == 100 and row["unreaped"] == 3 and row["reaped_by_namespace_end"] == 3
    assert row["orphaned"] == 3 and row["reaped_by_others"] == 0 and row["children_exited"] == 5
    assert ("3 were still zombies when it exited, and the PID namespace's end reaped them (pid 100 was the "
            "namespace's init: the kernel reaps what its init leaves).") in f.summary


def test_orphan_reaped_by_no_wait_the_tracer_saw():
    """Passed to init, which does not ignore SIGCHLD, and freed with no wait
    seen (io_uring's waitid, say): init reaped it, the free bounds when."""
    rows = [full(EXIT, 0.0, 200, start=1, ppid=100), full(EXIT, 1.0, 100, start=2, ppid=50),
            full(FREE, 2.5, 200, start=1, ppid=1, parent_comm="init")]
    (life,) = [l for l in lifecycles(attach_frames(rows)) if l.pid == 200]
    assert (life.reaped_by, life.reaped_how, life.reaped_ns, life.reaper_pid) == ("init", "unseen", int(2.5 * S), 1)
    (f,) = [f for f in zombies.findings(attach_frames(rows)) if f.evidence[0]["parent_pid"] == 100]
    assert f.summary.endswith("; 1 was still a zombie when it exited and init 1 (init) reaped it (with no "
                              "wait4/waitid call the tracer saw: their zombie time runs to their release).")


def test_a_namespace_init_reaping_orphans_is_init():
    rows = [full(EXIT, 0.0, 200, start=1, ppid=100), full(EXIT, 0.5, 100, start=2, ppid=40),
            full(WAIT, 0.6, 40, target=200, ret=2, comm="tini", ns_init=1)]
    (life,) = [l for l in lifecycles(attach_frames(rows)) if l.pid == 200]
    assert life.reaped_by == "init" and life.reaper_comm == "tini" and life.reaped_how == "wait4"
    (f,) = [f for f in zombies.findings(attach_frames(rows)) if f.evidence[0]["parent_pid"] == 100]
    assert f.summary.endswith("; 1 was still a zombie when it exited and init 40 (tini) reaped it.")


def test_a_child_alive_at_attach_keeps_its_parent():
    """Alive at attach, it outlives its parent and exits under init: its
    parent is the one /proc showed, and it is no leak of that parent."""
    rows = [full(EXIT, 1.0, 100, start=1, ppid=50), full(EXIT, 2.0, 300, start=7 * TICK + 5, ppid=1),
            full(WAIT, 2.1, 1, target=300, ret=300, comm="systemd")]
    frames = attach_frames(rows, children=[(300, 7 * TICK, TICK, "worker", 100, "app")])
    (life,) = [l for l in lifecycles(frames) if l.pid == 300]
    assert life.parent_pid == 100 and life.ppid_at_exit == 1 and life.reaped_by == "init"
    assert not zombies.never_reaped(life)
    assert [f for f in zombies.findings(frames) if f.evidence[0]["parent_pid"] == 100] == []


def test_older_traces_without_the_new_columns_still_read():
    """A trace recorded before ns_init and the free's parent columns."""
    rows = [ev(EXIT, 0.0, 600, start=1, ppid=100), ev(EXIT, 1.0, 100, start=2, ppid=50),
            ev(FREE, 1.5, 600, start=1)]
    (life,) = [l for l in lifecycles(zframes(rows)) if l.pid == 600]
    assert life.reaped_by == "kernel (auto)" and life.parent_exit_ns == 1 * S


def test_dstate_io_mentions_sleeps_under_way_at_attach():
    frames = totals([trow(10, 10, "reader", True, 100, 800, 20)])
    frames["dstate_totals"]["at_attach"] = False
    frames["dstate_totals"].loc[len(frames["dstate_totals"])] = [10, 11, "reader", -2, True, 1, int(400e6),
                                                                 int(400e6), "folio_wait_bit_common", "", True]
    (f,) = dstate.findings(frames)
    assert "1.20 s of 1.20 s" in f.summary
    assert f.summary.endswith("; 0.40 s of the D time is of 1 tasks already in D when tracing started, "
                              "counted from then.")


def sleep_records(rows):
    """dstate_sleep records: (pid, tid, comm, stack_id, iowait, at_attach, duration_ms, wait_site, stack)."""
    cols = ["pid", "tid", "comm", "stack_id", "iowait", "at_attach", "duration_ns", "wait_site", "stack"]
    return pd.DataFrame([r[:6] + [int(r[6] * 1e6)] + r[7:] for r in rows], columns=cols).astype(
        {"comm": "category", "wait_site": "category", "stack": "category"})


def test_sleep_totals_sum_records_per_kernel_key_across_parts():
    """A trace cut off before the kernel's totals: the same table summed
    from the sleep records, one row per (thread, stack, iowait, at_attach),
    whatever the parts' boundaries; the wait site named by its first frame."""
    site, stack = "__iomap_dio_rw;iomap_dio_rw", "__iomap_dio_rw;iomap_dio_rw;vfs_read"
    parts = [sleep_records([[10, 10, "r", 1, True, False, 2.0, site, stack],
                            [10, 10, "r", 1, True, False, 3.0, site, stack],
                            [10, 11, "r", 2, False, False, 1.0, "mutex_lock", "mutex_lock;x"]]),
             sleep_records([[10, 10, "reader", 1, True, False, 5.0, site, stack],
                            [10, 12, "r", -2, False, True, 400.0, "folio_wait_bit_common", ""]])]
    totals_ = dstate.SleepTotals()
    assert not totals_
    for part in parts:
        totals_.add(part)
    t = totals_.frame().sort_values(["tid"]).reset_index(drop=True)
    assert t[["tid", "count", "total_ns", "max_ns"]].values.tolist() == [
        [10, 3, int(10e6), int(5e6)], [11, 1, int(1e6), int(1e6)], [12, 1, int(400e6), int(400e6)]]
    assert t["comm"].tolist() == ["reader", "r", "r"]   # the latest name
    assert t["wait_site"].tolist() == ["__iomap_dio_rw", "mutex_lock", "folio_wait_bit_common"]
    assert t["at_attach"].tolist() == [False, False, True] and t["stack"].iloc[0] == stack
    whole = dstate.SleepTotals()
    whole.add(pd.concat(parts, ignore_index=True))
    assert whole.frame().sort_values(["tid"]).reset_index(drop=True).equals(t)
    (proc,) = dstate.per_process({"dstate_totals": t}).itertuples()
    assert proc.count == 5 and proc.iowait_ms == 10.0 and proc.other_ms == 401.0


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


# ---- zombies: the state the live run and `report` both feed -------------------

def busy_parent_rows():
    """Parent 100 forks 40 children: reaps every third at once, every third
    after 1.5 s, leaves the rest and exits at 5 s; init (1) reaps them."""
    rows = []
    for i in range(40):
        pid, t = 1000 + i, 0.1 + i * 0.01
        rows.append(full(FORK, t, pid, start=pid, ppid=100, comm="app", parent_comm="app"))
        rows.append(full(EXIT, t + 0.001, pid, start=pid, ppid=100, comm="app", parent_comm="app"))
        if i % 3 == 0:
            rows.append(full(WAIT, t + 0.002, 100, target=pid, ret=pid, enter=t, comm="app"))
        elif i % 3 == 1:
            rows.append(full(WAIT, t + 1.5, 100, target=pid, ret=pid, enter=t + 1.4, comm="app"))
    rows.append(full(WAIT, 3.0, 100, target=0, ret=-10, enter=2.9, comm="app"))
    rows.append(full(EXIT, 5.0, 100, start=1, ppid=50, comm="app", parent_comm="sh"))
    rows += [full(WAIT, 5.1, 1, target=1000 + i, ret=1000 + i, enter=5.05, comm="systemd")
             for i in range(40) if i % 3 == 2]
    rows.append(full(EXIT, 5.5, 2000, start=2000, ppid=100, comm="late", parent_comm="app"))  # never reaped
    return sorted(rows, key=lambda r: r[0])


def test_zombie_state_fed_in_batches_equals_the_whole_and_keeps_few_lifecycles():
    """The live run feeds each ring batch, `report` each stored part: any
    cut of the same records gives the same findings and per-parent rows;
    with keep=5 only the 5 longest settled zombies (and the open ones) stay,
    and the figures are those of every lifecycle."""
    frames = attach_frames(busy_parent_rows())
    end = 7 * S
    whole = zombies.state_of(frames, end_ns=end)
    events = zombies.sort_events(frames["zombie_events"]).to_dict("records")
    for cut in (1, 7, 50):
        state = zombies.ZombieState(keep=5)
        for i in range(0, len(events), cut):
            state.feed(events[i:i + cut])
        state.set_end(end)
        assert [f.as_dict() for f in state.findings()] == [f.as_dict() for f in whole.findings()]
        assert state.processes() == whole.processes()
        kept = state.lifecycles()
        # open at the end: 2000 (never reaped) and the parent itself (its parent 50 did not reap it)
        assert len(kept) == 7 and state.exits == whole.exits == 42
        assert {l.pid for l in kept} == {2000, 100} | {l.pid for l in sorted(
            (l for l in whole.lifecycles() if l.pid not in (2000, 100)), key=lambda l: -l.zombie_s)[:5]}
    (f,) = [f for f in whole.findings() if f.evidence[0]["parent_pid"] == 100]
    row = f.evidence[0]
    assert row["parent_pid"] == 100 and row["children_exited"] == 41
    assert row["unreaped"] == 14 and row["reaped_late"] == 13 and row["reaped_by_parent"] == 27
    assert row["still_zombies"] == 1 and row["reaped_by_others"] == 13 and row["reapers"] == "init 1 (systemd)"
    # its 28 wait calls (27 reaping, one with nothing to reap); in the window, from the first
    # flagged exit (child 1001) to the end (one child still open): all but the first
    assert row["wait_calls_total"] == 28 and row["wait_calls"] == 27
    # the same from the old whole-frame entry points
    assert [x.as_dict() for x in zombies.findings(frames, end_ns=end)] == [x.as_dict() for x in whole.findings()]
    assert len(lifecycles(frames, end)) == 42


def test_wait_calls_window_ends_with_the_last_flagged_child():
    """No child open at the end: the window is the flagged children's
    zombie time, so a wait call after the last of them is not in it."""
    rows = [full(EXIT, 1.0, 300, start=300, ppid=100, comm="c", parent_comm="app"),
            full(WAIT, 0.5, 100, target=0, ret=0, enter=0.4, comm="app"),        # before: not counted
            full(WAIT, 1.5, 100, target=0, ret=0, enter=1.2, comm="app"),        # inside
            full(WAIT, 2.5, 100, target=300, ret=300, enter=2.4, comm="app"),    # reaps it late
            full(WAIT, 4.0, 100, target=0, ret=0, enter=3.9, comm="app")]        # after: not counted
    (f,) = zombies.findings(attach_frames(rows), end_ns=5 * S)
    row = f.evidence[0]
    assert row["reaped_late"] == 1 and row["wait_calls"] == 2 and row["wait_calls_total"] == 4


def test_the_tracer_as_a_parent_is_never_a_finding():
    """The tracer reaps the -c command itself when it sees it exit: however
    late that was (a slow machine's end of run), no finding names it; the
    same parent is a finding when it is not the tracer."""
    rows = [full(EXIT, 1.0, 300, start=300, ppid=77, comm="cmd", parent_comm="iotrace"),
            full(WAIT, 9.0, 77, target=300, ret=300, enter=8.9, comm="iotrace")]
    frames = attach_frames(rows)
    assert zombies.findings(frames, end_ns=10 * S, tracer_pid=77) == []
    (f,) = zombies.findings(frames, end_ns=10 * S)
    assert f.evidence[0]["parent_pid"] == 77 and f.evidence[0]["reaped_late"] == 1
