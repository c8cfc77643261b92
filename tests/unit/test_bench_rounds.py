"""The fio benchmark's arithmetic: paired rounds in alternating order and the
traced share taken over all of them."""
import os
import sys

import pytest

# The benchmarks are development tooling in bench/, not in the package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

from bench_odirect import _paired_rounds, summarize  # noqa: E402  (bench/bench_odirect.py)


def test_rounds_alternate_which_case_runs_first():
    assert _paired_rounds(4) == [("untraced", "iotrace"), ("iotrace", "untraced"),
                                 ("untraced", "iotrace"), ("iotrace", "untraced")]


def test_share_is_over_all_rounds_with_the_spread_of_rounds():
    share = summarize([100.0, 200.0, 100.0], [90.0, 196.0, 101.0])
    assert share["ratio"] == pytest.approx(387 / 400)
    assert share["median"] == pytest.approx(0.98)
    assert share["low"] == pytest.approx(0.90) and share["high"] == pytest.approx(1.01)


def test_share_needs_pairs():
    with pytest.raises(ValueError):
        summarize([100.0], [])


def test_program_costs_from_bpftool_json():
    from bench_odirect import program_costs

    shown = ('[{"id": 1, "name": "odirect_sys_exit", "run_time_ns": 5000, "run_cnt": 10},'
             ' {"id": 2, "name": "odirect_rq_issue", "run_time_ns": 0, "run_cnt": 0},'
             ' {"id": 3, "name": "other_prog", "run_time_ns": 900, "run_cnt": 3}]')
    assert program_costs(shown) == {"odirect_sys_exit": 500.0}


def test_interval_holds_the_share_and_is_the_same_each_time():
    untraced = [15930.0, 16071.0, 17170.0, 13150.0, 17650.0, 15770.0]
    traced = [16261.0, 15140.0, 15749.0, 16344.0, 16465.0, 16277.0]
    first, again = summarize(untraced, traced), summarize(untraced, traced)
    assert first["ci_low"] < first["ratio"] < first["ci_high"]
    assert (first["ci_low"], first["ci_high"]) == (again["ci_low"], again["ci_high"])


def test_interval_is_narrow_when_every_round_agrees():
    share = summarize([100.0, 200.0, 150.0], [98.0, 196.0, 147.0])
    assert share["ci_low"] == pytest.approx(0.98) and share["ci_high"] == pytest.approx(0.98)


def test_net_costs_take_the_accounting_off_every_program():
    from bench_odirect import net_costs

    assert net_costs({"odirect_sys_exit": 420.0, "odirect_rq_issue": 40.0}, 55.0) == {
        "odirect_sys_exit": 365.0, "odirect_rq_issue": 0.0}


def test_alternation_share_compares_each_traced_window_with_its_neighbours():
    from bench_odirect import alternation_share

    # the disk slows down steadily; tracing costs 2 %: each traced window sits
    # between untraced ones at the rates just before and after it
    windows = []
    for i in range(41):
        rate = 10000.0 - 50.0 * i
        traced = i % 2 == 1
        windows.append((traced, 0.2, round(rate * 0.2 * (0.98 if traced else 1.0))))
    share = alternation_share(windows)
    assert share["pairs"] == 20
    assert abs(share["share"] - 0.98) < 1e-3
    assert share["ci_low"] <= share["share"] <= share["ci_high"]
    # the disk's speed alone, tracing costing nothing
    free = [(t, s, round(10000.0 * (1 - 0.01 * i) * s)) for i, (t, s, _) in enumerate(windows)]
    assert abs(alternation_share(free)["share"] - 1.0) < 1e-3


def test_alternation_share_skips_windows_without_untraced_neighbours():
    from bench_odirect import alternation_share

    windows = [(True, 0.2, 100), (False, 0.2, 200), (True, 0.2, 190), (False, 0.2, 200), (True, 0.2, 10)]
    share = alternation_share(windows)
    assert share["pairs"] == 1
    assert share["share"] == 0.95
    with pytest.raises(ValueError):
        alternation_share([(False, 0.2, 100), (True, 0.2, 90)])


def test_alternation_share_of_several_cases_in_one_run():
    from bench_odirect import alternation_share

    # untraced, a, untraced, b, untraced, a, ...: a costs 1 %, b 4 %
    cost = {"a": 0.99, "b": 0.96}
    windows = []
    for i in range(81):
        case = None if i % 2 == 0 else ("a" if i % 4 == 1 else "b")
        windows.append((case, 0.2, round(10000.0 * 0.2 * cost.get(case, 1.0))))
    a, b = alternation_share(windows, "a"), alternation_share(windows, "b")
    assert a["pairs"] == 20 and b["pairs"] == 20
    assert abs(a["share"] - 0.99) < 1e-3 and abs(b["share"] - 0.96) < 1e-3
    with pytest.raises(ValueError):
        alternation_share(windows, "c")


def test_alternation_goes_round_the_cases_with_untraced_between(monkeypatch):
    import bench_odirect

    reads = iter(range(0, 100000, 100))
    monkeypatch.setattr(bench_odirect, "_read_syscalls", lambda pid: next(reads))
    calls = []
    switches = {name: (lambda n=name: calls.append(("on", n)), lambda n=name: calls.append(("off", n)))
                for name in ("x", "y")}
    alternation = bench_odirect._Alternation(1, switches)
    for _ in range(5):
        alternation.tick()
    alternation.stop()
    assert [w[0] for w in alternation.windows] == [None, "x", None, "y", None]
    assert calls == [("on", "x"), ("off", "x"), ("on", "y"), ("off", "y"), ("on", "x"), ("off", "x")]
    assert all(w[2] == 100 for w in alternation.windows)
