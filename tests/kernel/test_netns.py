"""nstrace netns against real namespaces the test creates: a named one
holding a bridge without an address and its own disable_ipv6, and one only
held by a process.  Every namespace is removed, even when a test fails."""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import uuid

import pytest

from kerntrace.tracers import netns
from kerntrace.tracers.cli import nstrace_main
from runs import file_modes  # tests/runs.py


@pytest.fixture
def named_netns_with_empty_bridge():
    if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
        pytest.skip("iproute2 (ip) is not installed")
    name = f"kt-inv-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "br-empty", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", name, "link", "add", "br-used", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", "br-used"], check=True)
        # namespace-local: the host's value is untouched
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=True)
        yield name, os.stat(f"/run/netns/{name}").st_ino
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def held_netns():
    """A namespace held only by `sleep`, ready once what the test reads is
    there: unshare(1) changes the namespace before it execs sleep, so the
    fixture waits for the exec (comm) as well as the namespace."""
    import time

    host_ino = os.stat("/proc/self/ns/net").st_ino
    proc = subprocess.Popen(["unshare", "-n", "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while True:
            ino = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
            with open(f"/proc/{proc.pid}/comm") as f:
                comm = f.read().strip()
            if ino != host_ino and comm == "sleep":
                break
            assert time.monotonic() < deadline, f"unshare -n sleep not ready after 10 s (comm {comm})"
            time.sleep(0.02)
        yield proc.pid, ino
    finally:
        proc.kill()
        proc.wait()


def test_inventory_finds_named_and_held_namespaces(named_netns_with_empty_bridge, held_netns):
    name, named_ino = named_netns_with_empty_bridge
    held_pid, held_ino = held_netns
    spaces = {ns.inode: ns for ns in netns.inventory()}

    named = spaces[named_ino]
    assert named.names == [name] and named.pids == [] and not named.host
    links = {l["ifname"]: l for l in named.details["links"]}
    assert set(links) == {"lo", "br-empty", "br-used"}
    assert links["br-empty"]["kind"] == "bridge" and links["br-empty"]["addresses"] == []
    assert [a["address"] for a in links["br-used"]["addresses"] if a["family"] == "inet"] == ["10.77.0.1/24"]
    assert named.details["bridges_without_address"] == ["br-empty"]
    assert named.details["disable_ipv6"]["all"] == 1
    assert named.details["ip6_mroutes"] == []

    held = spaces[held_ino]
    assert held.names == [] and [p["pid"] for p in held.pids] == [held_pid]
    assert held.pids[0]["comm"] == "sleep"
    assert [l["ifname"] for l in held.details["links"]] == ["lo"]

    host = [ns for ns in spaces.values() if ns.host]
    assert len(host) == 1 and host[0].inode == os.stat("/proc/self/ns/net").st_ino
    with open("/proc/sys/net/ipv6/conf/all/disable_ipv6") as f:
        assert host[0].details["disable_ipv6"]["all"] == int(f.read())

    found = netns.findings(list(spaces.values()))
    rows = [r for f in found if f.id == "bridge-without-address" for r in f.evidence]
    assert {"netns": f"net:[{named_ino}]", "name": name, "bridge": "br-empty"} in rows


def test_cli_json_and_text(named_netns_with_empty_bridge, capsys):
    name, named_ino = named_netns_with_empty_bridge
    assert nstrace_main(["netns", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    mine = [n for n in doc["namespaces"] if n["inode"] == named_ino]
    assert len(mine) == 1 and mine[0]["bridges_without_address"] == ["br-empty"]
    assert any(f["id"] == "bridge-without-address" for f in doc["findings"])
    assert nstrace_main(["netns"]) == 0
    text = capsys.readouterr().out
    assert f"net:[{named_ino}] {name}:" in text
    assert "br-empty" in text and "<- bridge without address" in text


def _replayed(path):
    from kerntrace.tracers.engine.replay import replay_trace
    from kerntrace.tracers.engine.tracedir import TraceReader

    reader = TraceReader(path)
    tool = netns.NetnsSnapshot.from_trace(reader.meta["options"])
    envelope, found = replay_trace(reader, tool)
    return reader, tool, envelope, found


def test_snapshot_trace_dir_replays_to_the_live_json(named_netns_with_empty_bridge, held_netns, tmp_path, capsys):
    """-o DIR: the snapshot as netns_namespace and netns_link records, and
    the report rebuilt from them is the live --json document."""
    name, named_ino = named_netns_with_empty_bridge
    held_pid, held_ino = held_netns
    path = str(tmp_path / "snap")
    assert nstrace_main(["netns", "--json", "-o", path]) == 0
    live = json.loads(capsys.readouterr().out)
    assert file_modes(path) == ({0o700}, {0o600})

    reader, tool, envelope, found = _replayed(path)
    assert reader.complete and reader.kinds() == ["netns_link", "netns_namespace"]
    assert reader.summary == live
    assert {k: envelope[k] for k in live} == live
    assert [f.as_dict() for f in found] == live["findings"]
    for key in ("format", "tool", "version", "host", "kernel", "started", "prog", "argv", "options", "target",
                "command", "pids", "hooks", "backend", "clock"):
        assert key in reader.meta, key
    assert reader.meta["tool"] == "netns" and reader.meta["hooks"] == []

    spaces = {r["inode"]: r for r in reader.table("netns_namespace").to_pylist()}
    assert set(spaces) == {ns["inode"] for ns in live["namespaces"]}
    named = spaces[named_ino]
    assert named["names"] == [name] and named["pids"] == [] and named["host"] is False
    assert named["bridges_without_address"] == ["br-empty"] and named["disable_ipv6_all"] == 1
    utc_us = (named["ts_ns"] + reader.meta["clock"]["offset_ns"]) // 1000   # the trace's time: UTC microseconds
    assert named["time"] == datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        microseconds=utc_us)
    assert spaces[held_ino]["pids"] == [{"pid": held_pid, "comm": "sleep", "container": ""}]   # a host process
    links = {l["ifname"]: l for l in reader.table("netns_link").to_pylist() if l["netns"] == named_ino}
    assert set(links) == {"lo", "br-empty", "br-used"}
    assert links["br-empty"]["kind"] == "bridge" and links["br-empty"]["addresses"] == []
    assert {"family": "inet", "address": "10.77.0.1/24", "scope": "global"} in links["br-used"]["addresses"]
    assert [l["ifname"] for l in reader.table("netns_link").to_pylist() if l["netns"] == held_ino] == ["lo"]


def test_snapshot_report_text_is_the_live_text(named_netns_with_empty_bridge, tmp_path, capsys):
    import io

    path = str(tmp_path / "snap")
    assert nstrace_main(["netns", "-o", path]) == 0
    text = capsys.readouterr().out
    _reader, tool, envelope, found = _replayed(path)
    out = io.StringIO()
    tool.print_report(envelope, found, out)
    assert out.getvalue() == text and "<- bridge without address" in text


def test_bad_output_fails_before_the_snapshot(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for bad in (str(tmp_path / "missing" / "snap"), str(tmp_path / "file")):
        assert nstrace_main(["netns", "-o", bad]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
