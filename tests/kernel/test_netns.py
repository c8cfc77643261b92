"""nstrace netns against real namespaces the test creates: a named one
holding a bridge without an address and its own disable_ipv6, and one only
held by a process.  Every namespace is removed, even when a test fails."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from kerntrace.tracers import netns
from kerntrace.tracers.cli import nstrace_main


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
