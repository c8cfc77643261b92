"""iotrace stat without BPF: counters against /proc read here, rates,
units, header repetition, CSV and JSON parsed back, bad arguments."""
from __future__ import annotations

import csv
import io
import json
import os

import pytest

from kerntrace.tracers import counters
from kerntrace.tracers.cli import iotrace_main
from kerntrace.tracers.counters import CPU_FIELDS, Interval, Sample, read_sample
from kerntrace.tracers.engine.clock import Clock
from kerntrace.tracers.engine.sinks import TextSink
from kerntrace.tracers.stat import StatTool
from kerntrace.tracers.statview import Row, TaskFigure, TopTasks, format_bytes, format_count, header_lines, row_line

HZ = os.sysconf("SC_CLK_TCK")


# -- /proc, parsed by the test itself -------------------------------------------

def proc_stat():
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == "cpu":
                out["cpu"] = dict(zip(CPU_FIELDS, (int(x) for x in parts[1:9])))
            elif parts[0] in ("intr", "ctxt", "processes", "procs_running", "procs_blocked"):
                out[parts[0]] = int(parts[1])
    return out


def proc_diskstats():
    out = {}
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            # field 6: sectors read, field 10: sectors written; always 512-byte units
            out[p[2]] = (int(p[5]) * 512, int(p[9]) * 512)
    return out


def proc_vmstat():
    with open("/proc/vmstat") as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def proc_net_dev():
    out = {}
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            name, rest = line.split(":", 1)
            p = rest.split()
            out[name.strip()] = (int(p[0]), int(p[8]))
    return out


def between(lo, value, hi, slack=0.0):
    return lo - slack <= value <= hi + slack


def test_counters_match_proc():
    before = (proc_stat(), proc_diskstats(), proc_vmstat(), proc_net_dev())
    s = read_sample()
    after = (proc_stat(), proc_diskstats(), proc_vmstat(), proc_net_dev())
    for k in CPU_FIELDS:
        # psutil divides ticks by USER_HZ; half a tick covers float rounding.
        assert between(before[0]["cpu"][k] / HZ, s.cpu[k], after[0]["cpu"][k] / HZ, 0.5 / HZ), k
    assert between(before[0]["intr"], s.interrupts, after[0]["intr"])
    assert between(before[0]["ctxt"], s.context_switches, after[0]["ctxt"])
    assert between(before[0]["processes"], s.forks, after[0]["processes"])
    for name, (rd, wr) in after[1].items():
        assert name in s.disks, name
        assert between(before[1][name][0], s.disks[name][0], rd), name
        assert between(before[1][name][1], s.disks[name][1], wr), name
    assert between(before[2]["pswpin"], s.swap_in_pages, after[2]["pswpin"])
    assert between(before[2]["pswpout"], s.swap_out_pages, after[2]["pswpout"])
    for name, (rx, tx) in after[3].items():
        assert between(before[3][name][0], s.nics[name][0], rx), name
        assert between(before[3][name][1], s.nics[name][1], tx), name


def test_interval_rates_from_proc_deltas():
    """Two real samples: the interval's disk and csw rates are the /proc
    deltas the test measures around them, divided by the interval."""
    a = read_sample()
    d0 = proc_diskstats()
    with open("/var/tmp/.kt-stat-unit", "wb") as f:  # some writes to count
        f.write(os.urandom(1 << 20))
        os.fsync(f.fileno())
    os.unlink("/var/tmp/.kt-stat-unit")
    d1 = proc_diskstats()
    b = read_sample()
    disks = counters.default_disks()
    iv = Interval.between(a, b, {"total": disks}, {"total": counters.default_interfaces()})
    written = iv.disks["total"][1] * iv.seconds
    lo = sum(d1[d][1] - d0[d][1] for d in disks)
    hi = sum(b.disks[d][1] - a.disks[d][1] for d in disks)
    assert lo <= round(written) <= hi
    assert round(written) == hi


def synthetic(mono_ns, ticks, disk, nic, swap, intr, ctxt, forks, running=3, blocked=1):
    return Sample(
        mono_ns=mono_ns,
        cpu=dict(zip(CPU_FIELDS, ticks)),
        disks={"vda": disk, "vda1": disk, "sdb": (0, 0)},
        nics={"eth0": nic, "lo": (10**9, 10**9)},
        swap_in_pages=swap[0],
        swap_out_pages=swap[1],
        interrupts=intr,
        context_switches=ctxt,
        forks=forks,
        procs_running=running,
        procs_blocked=blocked,
    )


def test_interval_arithmetic():
    a = synthetic(0, (10, 0, 5, 80, 2, 0, 0, 0), (0, 0), (0, 0), (0, 0), 0, 0, 100)
    # 2 s later: user +1, nice +1, irq +0, system +2, idle +4, iowait +2 (10 s of CPU)
    b = synthetic(2_000_000_000, (11, 1, 7, 84, 4, 0, 0, 0), (4 << 20, 2 << 20), (1000, 500), (3, 1), 4000, 9000, 110)
    iv = Interval.between(a, b, {"total": ["vda", "sdb"]}, {"total": ["eth0"]}, page_size=4096)
    assert iv.seconds == 2.0
    assert iv.cpu == {"usr": 20.0, "sys": 20.0, "idl": 40.0, "wai": 20.0, "stl": 0.0}
    assert iv.disks == {"total": (2 << 20, 1 << 20)}     # vda1 (a partition) is not in the group
    assert iv.nets == {"total": (500.0, 250.0)}
    assert iv.paging == (3 * 4096 / 2, 4096 / 2)
    assert iv.system == (2000.0, 4500.0)
    assert iv.procs == (2, 1, 5.0)


def test_default_disks_skip_partitions_ram_and_stacked(tmp_path):
    for name in ("vda", "sdb", "loop0", "ram0", "zram0", "dm-0", "nvme0n1"):
        (tmp_path / name / "slaves").mkdir(parents=True)
    (tmp_path / "dm-0" / "slaves" / "sdb").touch()
    assert counters.default_disks(str(tmp_path)) == ["nvme0n1", "sdb", "vda"]


def test_default_disks_here_are_whole_disks():
    disks = counters.default_disks()
    partitions = {line.split()[2] for line in open("/proc/diskstats")} - set(os.listdir("/sys/block"))
    assert not set(disks) & partitions
    assert not [d for d in disks if d.startswith(("loop", "ram", "zram"))]


@pytest.mark.parametrize("value,text", [
    (0, "0"), (0.4, "0"), (512, "512B"), (999, "999B"), (1000, "1.0K"), (1536, "1.5K"),
    (153 * 1024, "153K"), (98 * 1024**2, "98M"), (1.25 * 1024**3, "1.2G"), (999.4 * 1024, "999K"),
    (999.6 * 1024, "1.0M"), (3 * 1024**4, "3.0T"),
])
def test_format_bytes(value, text):
    assert format_bytes(value) == text.rjust(5)
    assert len(format_bytes(value)) == 5


@pytest.mark.parametrize("value,text", [(0, "0"), (42, "42"), (9999, "9999"), (14_000, "14k"), (2_500_000, "2.5M")])
def test_format_count(value, text):
    assert format_count(value) == text.rjust(5)


def make_row(top=None):
    a = synthetic(0, (10, 0, 5, 80, 2, 0, 0, 0), (0, 0), (0, 0), (0, 0), 0, 0, 100)
    b = synthetic(10**9, (11, 1, 7, 84, 4, 0, 0, 0), (98 << 20, 0), (1000, 500), (0, 0), 4000, 9000, 110)
    iv = Interval.between(a, b, {"total": ["vda"]}, {"total": ["eth0"]})
    return Row("2026-01-01T00:00:00+00:00", iv, top)


def test_row_lines_up_with_header():
    titles, columns = header_lines(["total"], ["total"])
    top = TopTasks((TaskFigure(4242, "reader-with-a-long-name", dstate_ms=812, iowait_ms=800, iowait_share=97.6),),
                   (TaskFigure(4242, "reader-with-a-long-name", read_rate=98 << 20, read_bytes=98 << 20),), 820.0)
    for row in (make_row(top), make_row(None)):
        line = row_line(row, ["total"], ["total"])
        assert len(line) == len(columns) == len(titles)
        assert [i for i, ch in enumerate(line) if ch == "|"] == [i for i, ch in enumerate(columns) if ch == "|"]
    line = row_line(make_row(top), ["total"], ["total"])
    assert "98M" in line and "/4242" in line and " 98%" in line and "812" in line


def test_header_repeats_every_screenful(monkeypatch):
    monkeypatch.setenv("LINES", "6")   # 2 header lines + 4 rows per screen
    monkeypatch.setenv("COLUMNS", "200")
    buf = io.StringIO()
    tool = StatTool(1.0, None, {"total": []}, {"total": []}, bpf=False, note="--no-bpf")
    sink, clock = TextSink(buf, report=False), Clock()
    sink.begin(tool, clock, {})
    for _ in range(9):
        sink.events(tool, "", "interval", make_row(), clock)
    lines = buf.getvalue().splitlines()
    titles = header_lines(["total"], ["total"])[0]
    assert [i for i, l in enumerate(lines) if l == titles] == [0, 6, 12]
    assert len(lines) == 3 * 2 + 9


def run_cli(capsys, *args):
    rc = iotrace_main(["stat", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_json_lines_parse_back(capsys):
    rc, out, err = run_cli(capsys, "0.2", "3", "--json", "--no-bpf")
    assert rc == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records.pop()["type"] == "summary"
    assert len(records) == 3
    for r in records:
        assert r["type"] == "interval" and r["time"].endswith("Z")
        assert 0.15 < r["interval_s"] < 1.0
        assert set(r["cpu"]) == {"usr", "sys", "idl", "wai", "stl"}
        assert abs(sum(r["cpu"].values()) - 100) < 0.1
        assert set(r["dsk"]) == {"total"} and set(r["dsk"]["total"]) == {"read", "writ"}
        assert set(r["net"]) == {"total"}
        assert r["bpf"] is None and r["bpf_unavailable"] == "--no-bpf"
        assert r["procs"]["run"] >= 0


def test_csv_parses_back(capsys, tmp_path):
    path = tmp_path / "stat.csv"
    disk = counters.default_disks()[0]
    rc, out, err = run_cli(capsys, "0.2", "3", "--no-bpf", "--csv", str(path), "-D", disk, "-N", "lo")
    assert rc == 0, err
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert f"dsk_{disk}_read" in rows[0] and "net_lo_recv" in rows[0] and "reader_comm" in rows[0]
    for r in rows:
        assert float(r[f"dsk_{disk}_read"]) >= 0
        assert abs(sum(float(r[f"cpu_{k}"]) for k in ("usr", "sys", "idl", "wai", "stl")) - 100) < 0.1
        assert r["reader_comm"] == ""   # BPF off: empty, not made up
    # The screen view is printed as well: 2 header lines and 3 rows.
    assert len(out.splitlines()) == 5
    assert f"dsk/{disk}" in out and "net/lo" in out


@pytest.mark.parametrize("args", [
    ["0"], ["-1"], ["-0.5"], ["1", "-2"], ["abc"], ["nan"], ["1", "0"], ["1", "x"], ["1", "-3"], ["1", "2.5"],
    ["-D", "nosuchdisk0"], ["-N", "nosuchif0"], ["-D", ","], ["--json", "--csv", "/tmp/x.csv"],
    ["1", "2", "3"], ["--bogus"], ["--csv", "/nonexistent-dir/x.csv"], ["-o", "/nonexistent-dir/trace"],
    ["-o", "/etc/hostname"],
])
def test_bad_arguments_exit_2_with_one_line(capsys, args):
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_without_root_bpf_columns_say_unavailable(capsys, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    rc, out, err = run_cli(capsys, "0.2", "1")
    assert rc == 0
    assert err.strip() == "note: most-D-state and top-reader columns unavailable (needs root); they show '-'"
    row = out.splitlines()[2].split("|")
    assert row[-2].split() == ["-", "-", "-"] and row[-1].split() == ["-", "-"]
    rc, out, err = run_cli(capsys, "0.2", "1", "--json")
    assert json.loads(out.splitlines()[0])["bpf_unavailable"] == "needs root" and err == ""


def test_map_overflow_is_reported_once_per_increase(capsys):
    tool = StatTool(1.0, None, {"total": []}, {"total": []}, bpf=False)
    for count in (0, 3, 3, 5):
        tool.note_map_full(count)
    assert capsys.readouterr().err.splitlines() == [
        "note: 3 D-state sleeps or processes not counted: BPF maps full",
        "note: 5 D-state sleeps or processes not counted: BPF maps full",
    ]


def test_whole_disk_dev_of_a_partition(tmp_path):
    disk = tmp_path / "devices" / "nvme0n1"
    (disk / "nvme0n1p2").mkdir(parents=True)
    (disk / "dev").write_text("259:0\n")
    (disk / "nvme0n1p2" / "dev").write_text("259:2\n")
    (disk / "nvme0n1p2" / "partition").write_text("2\n")
    cls = tmp_path / "class"
    cls.mkdir()
    (cls / "nvme0n1").symlink_to(disk)
    (cls / "nvme0n1p2").symlink_to(disk / "nvme0n1p2")
    assert counters.whole_disk_dev("nvme0n1p2", str(cls)) == (259, 0)
    assert counters.whole_disk_dev("nvme0n1", str(cls)) == (259, 0)


def test_whole_disk_dev_here():
    for name in counters.default_disks():
        major, minor = (int(x) for x in open(f"/sys/block/{name}/dev").read().split(":"))
        assert counters.whole_disk_dev(name) == (major, minor)


STAT = "import sys; from kerntrace.tracers.cli import iotrace_main; sys.exit(iotrace_main(sys.argv[1:]))"


def test_sigterm_ends_cleanly_with_complete_csv(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "t.csv"
    proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", "0.2", "--no-bpf", "--csv", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    rows = list(csv.DictReader(open(path, newline="")))
    assert len(rows) >= 2 and len(out.splitlines()) == 2 + len(rows)


def test_sigint_ends_cleanly_even_when_started_with_sigint_ignored():
    """A script's background job starts with SIGINT ignored; SIGINT must
    still end the run with every line out."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", "0.2", "--no-bpf", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err == ""  # no traceback, no note: --json keeps stderr for errors
    records = [json.loads(line) for line in [first, *out.splitlines()]]
    summary = records.pop()
    assert summary["type"] == "summary" and summary["stop_reason"] == "SIGINT"
    assert records and all("cpu" in r for r in records)


def test_closed_pipe_is_a_normal_end():
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", STAT, "stat", "0.1", "--no-bpf"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()   # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=10) == 0, err
    assert err.decode().strip() == "note: most-D-state and top-reader columns unavailable (--no-bpf); they show '-'"


def test_trace_dir_without_bpf_replays_to_the_live_summary(capsys, tmp_path):
    """stat --no-bpf -o DIR: the rows say why the BPF columns are empty, and
    the summary replayed from the trace is the live one."""
    from kerntrace.tracers.engine.replay import replay_trace
    from kerntrace.tracers.engine.tracedir import TraceReader

    trace = str(tmp_path / "t")
    csv_path = tmp_path / "t.csv"
    rc, out, err = run_cli(capsys, "0.2", "3", "--no-bpf", "--json", "-o", trace, "--flush", "0.1")
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    live = lines.pop()
    reader = TraceReader(trace)
    rows = reader.table("stat_interval").to_pylist()
    assert [r["interval_s"] for r in rows] == [r["interval_s"] for r in lines]
    assert [r["procs_run"] for r in rows] == [r["procs"]["run"] for r in lines]
    assert {r["bpf_unavailable"] for r in rows} == {"--no-bpf"}
    assert all(r["dstate_ranked"] is None and r["most_dstate_pid"] is None for r in rows)
    tool = StatTool.from_trace(reader.meta["options"])
    envelope, findings = replay_trace(reader, tool)
    assert {k: envelope[k] for k in live} == live and findings == []
    report = io.StringIO()
    tool.print_report(envelope, findings, report)
    assert report.getvalue().startswith("\n3 intervals of 0.2 s")
    assert "columns unavailable (--no-bpf)" in report.getvalue()
    # --csv still works beside -o, and -o replaces an earlier trace
    rc, out, err = run_cli(capsys, "0.2", "2", "--no-bpf", "--csv", str(csv_path), "-o", trace)
    assert rc == 0, err
    assert len(list(csv.DictReader(open(csv_path, newline="")))) == 2
    assert TraceReader(trace).table("stat_interval").num_rows == 2
