"""The Docker engine fixture itself (tools/dockerd.py, docker_engine.py):
the engine answers, the image is there, a container runs /bin/true in a
network namespace of its own (nstrace's ip6mr tool sees its creation, in the
container's cgroup), and what the engine started is gone after stop()."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from docker_engine import DockerEngine, IMAGE, container_cgroup_ids
from dockerd import LIBNETWORK_DIR, dockerd_path, ping  # tools/dockerd.py
from kerntrace.tracers import ip6mr
from runs import Attached  # tests/runs.py

HOST_NETNS = os.stat("/proc/self/ns/net").st_ino
CLONE_NEWNET = 0x40000000


def _name(what: str) -> str:
    return f"kt-test-{what}-{uuid.uuid4().hex[:8]}"


def _cmdlines_naming(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in line and int(pid) != os.getpid():
            found.append(f"{pid}: {line}")
    return found


def test_stop_leaves_nothing_it_started():
    """Runs first in this module, before the session's engine exists: with no
    daemon answering it starts one of its own, leaves a container running,
    and after stop() no process, mount, cgroup, bridge or dir of it is left
    (checked from the host, not only by leftovers()); with a daemon already
    answering it checks that stop() removes its containers and stops
    nothing else."""
    if dockerd_path() is None:
        pytest.skip("docker.io is not installed (make deps installs it)")
    had_docker0 = Path("/sys/class/net/docker0").exists()
    had_libnetwork = Path(LIBNETWORK_DIR).exists()
    engine = DockerEngine.start()
    name = _name("stop")
    try:
        engine.ensure_image()
        r = engine.run(name, "/bin/sleep", "600", detach=True)
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        assert engine.ids() == [cid]
        pid = container_cgroup_ids(engine, name)["pid"]
        dockerd_pid = engine.proc.pid if engine.proc is not None else None
    finally:
        engine.stop()
    engine.stop()   # idempotent
    assert not os.path.exists(f"/proc/{pid}"), "the container's process outlived stop()"
    if not engine.owns_daemon:
        assert ping(engine.socket), "stop() stopped a daemon it did not start"
        assert engine.docker("ps", "--all", "--quiet", "--filter", f"name=^{name}$").stdout.strip() == ""
        return
    root = str(engine.root)
    assert engine.leftovers() == []
    assert not ping(engine.socket)
    assert _cmdlines_naming(root + "/") == []          # dockerd, containerd, shims
    assert dockerd_pid is not None and not os.path.exists(f"/proc/{dockerd_pid}")
    with open("/proc/mounts") as f:
        assert [line for line in f if root in line or "/docker/netns/" in line] == []
    cgroups = [str(h) for h in Path("/sys/fs/cgroup").glob(f"*/{Path(root).name}")]
    assert cgroups == []
    assert not os.path.exists(root)
    assert Path("/sys/class/net/docker0").exists() == had_docker0
    assert Path(LIBNETWORK_DIR).exists() == had_libnetwork


def test_engine_answers_with_its_own_data_root(docker_engine):
    assert ping(docker_engine.socket)
    info = docker_engine.docker("info", "--format", "{{.DockerRootDir}} {{.CgroupDriver}}", check=True)
    root_dir, _driver = info.stdout.split()
    if docker_engine.owns_daemon:
        assert root_dir == str(docker_engine.root / "data")   # private: never /var/lib/docker


def test_image_is_there(docker_engine):
    assert docker_engine.has_image(IMAGE)
    assert docker_engine.ensure_image() == IMAGE    # a second call imports nothing
    cmd = docker_engine.docker("image", "inspect", "--format", "{{json .Config.Cmd}}", IMAGE, check=True)
    assert cmd.stdout.strip() == '["/bin/sh"]'


def test_true_exits_0_and_rm_removes_it(docker_engine):
    name = _name("true")
    r = docker_engine.run(name, "/bin/true")
    assert r.returncode == 0, r.stderr
    assert docker_engine.inspect(name)["State"]["ExitCode"] == 0
    assert len(docker_engine.ids()) >= 1
    cid = docker_engine.inspect(name)["Id"]
    assert cid in docker_engine.ids()
    docker_engine.rm(name)
    assert cid not in docker_engine.ids()
    assert name not in docker_engine.names
    failing = _name("false")
    assert docker_engine.run(failing, "/bin/false", extra=("--rm",)).returncode == 1


def test_container_gets_its_own_network_namespace(docker_engine):
    """docker run without --network host: runc creates the namespace with
    unshare(CLONE_NEWNET) from inside the container's cgroup, which is what
    nstrace ip6mr counts per container."""
    name = _name("netns")
    trace = Attached(ip6mr.Ip6mrTool())
    try:
        r = docker_engine.run(name, "/bin/sleep", "600", detach=True, memory="32m")
        assert r.returncode == 0, r.stderr
        ids = container_cgroup_ids(docker_engine, name)
        netns = os.stat(f"/proc/{ids['pid']}/ns/net").st_ino
        frames = trace.collect()
    finally:
        trace.close()
        docker_engine.rm(name)
    assert ids["id"] in ids["cgroup2_path"]
    # every hierarchy's line (v1 controllers on a hybrid host, 0:: of cgroup2) ends with the id
    assert ids["cgroup"] and all(line.endswith(ids["id"]) for line in ids["cgroup"])
    assert netns != HOST_NETNS
    ev = frames["netns_event"]
    created = ev[(ev["kind"] == "attempt") & (ev["method"] != "setns") & (ev["err"] == 0)
                 & (ev["cgroup_id"] == ids["cgroup_id"])]
    assert len(created) == 1, ev[ev["kind"] == "attempt"][["comm", "method", "cgroup_id", "netns"]]
    row = created.iloc[0]
    assert int(row["flags"]) & CLONE_NEWNET
    assert int(row["netns"]) == netns
    assert str(row["comm"]).startswith("runc")


def test_container_network_namespace_differs_from_the_host(docker_engine):
    name = _name("ns")
    r = docker_engine.run(name, "/bin/sleep", "600", detach=True)
    try:
        assert r.returncode == 0, r.stderr
        pid = container_cgroup_ids(docker_engine, name)["pid"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino != HOST_NETNS
        links = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"], capture_output=True,
                               text=True, timeout=30)
        assert links.returncode == 0, links.stderr
        assert "lo:" in links.stdout and "eth0@" in links.stdout   # the bridge network's veth
    finally:
        docker_engine.rm(name)
