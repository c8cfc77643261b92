"""Containers on a real Docker engine (tools/dockerd.py, started by the
docker_engine fixture): namespaces attributed to the container they were
created for, O_DIRECT reads named by container, --container filters in the
kernel and, for nstrace ip6mr, by name as containers appear."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from runs import wait_ready  # tests/runs.py

BIN = os.path.dirname(sys.executable)
BLOCK = 4096
READS = 256


def start_tracer(prog, *args):
    """A tracer with --json, once its ready line is out."""
    proc = subprocess.Popen([os.path.join(BIN, prog), *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_ready(proc, f"{prog} {' '.join(args)}")
    return proc


def stop_tracer(proc):
    """SIGINT, then its JSON lines."""
    proc.send_signal(2)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = []
    for line in out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError as exc:
            raise AssertionError(f"not JSON ({exc}): {line[:300]!r}") from None
    return lines


def creations(lines):
    """Namespace creations (not setns entries) of the JSON lines."""
    return [d for d in lines if d["type"] == "attempt" and d["method"] != "setns"]


def test_three_containers_one_namespace_each_labelled(docker_engine):
    names = ["kt-a", "kt-b", "kt-c"]
    docker_engine.rm(*names)
    proc = start_tracer("nstrace", "ip6mr")
    try:
        for name in names:
            assert docker_engine.run(name, "/bin/true").returncode == 0
    finally:
        lines = stop_tracer(proc)
        docker_engine.rm(*names)
    made = creations(lines)
    for name in names:
        mine = [d for d in made if d.get("container") == name]
        assert len(mine) == 1, (name, [{k: d.get(k) for k in ("comm", "pid", "container", "pod", "cgroup_id",
                                                             "cgroup_v1_id", "method")} for d in made])
        assert mine[0]["comm"].startswith("runc") and mine[0]["errno"] is None
    (summary,) = [d for d in lines if d["type"] == "summary"]
    per = {c["container"]: c for c in summary["containers"]}
    assert all(per[n]["created"] == 1 and per[n]["failed"] == 0 for n in names)


def test_ip6mr_container_filter_matches_names_as_they_appear(docker_engine):
    """kt-late does not exist when the watch starts: its name is matched as
    its records come; the other container's creation is left out."""
    docker_engine.rm("kt-late", "kt-early")
    proc = start_tracer("nstrace", "ip6mr", "--container", "kt-late")
    try:
        assert docker_engine.run("kt-early", "/bin/true").returncode == 0
        assert docker_engine.run("kt-late", "/bin/true").returncode == 0
    finally:
        lines = stop_tracer(proc)
        docker_engine.rm("kt-late", "kt-early")
    made = creations(lines)
    assert [d["container"] for d in made] == ["kt-late"]


@pytest.fixture
def volume(tmp_path_factory):
    """A host directory on the disk (not tmpfs) with a file to read."""
    path = tmp_path_factory.mktemp("kt-volume", numbered=True)
    directory = os.path.join("/var/tmp", path.name)
    os.makedirs(directory, exist_ok=True)
    data = os.path.join(directory, "data.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(READS * BLOCK))
        f.flush()
        os.fsync(f.fileno())
    yield directory, data
    os.unlink(data)
    os.rmdir(directory)


def test_odirect_reader_in_a_container_named_and_filtered(docker_engine, volume):
    """dd with iflag=direct in kt-reader: `iotrace odirect --container
    kt-reader` has each of its 256 reads labelled with the container;
    `--container kt-other`, traced at the same time, has none of them."""
    directory, data = volume
    docker_engine.rm("kt-reader", "kt-other")
    script = f"read go < /data/go.fifo; dd if=/data/data.bin of=/dev/null bs={BLOCK} iflag=direct"
    os.mkfifo(os.path.join(directory, "go.fifo"))
    try:
        docker_engine.run("kt-reader", "sh", "-c", script, detach=True, extra=("-v", f"{directory}:/data"))
        docker_engine.run("kt-other", "sleep", "60", detach=True)
        reader = start_tracer("iotrace", "odirect", "--container", "kt-reader")
        other = start_tracer("iotrace", "odirect", "--container", "kt-other")
        try:
            with open(os.path.join(directory, "go.fifo"), "w") as go:   # both tracers attached: read now
                go.write("go\n")
            deadline = time.monotonic() + 60
            while docker_engine.inspect("kt-reader")["State"]["Running"]:
                assert time.monotonic() < deadline, "the container's dd did not end"
                time.sleep(0.1)
        finally:
            mine, theirs = stop_tracer(reader), stop_tracer(other)
    finally:
        docker_engine.rm("kt-reader", "kt-other")
        os.unlink(os.path.join(directory, "go.fifo"))
    reads = [d for d in mine if d["type"] == "read" and d["path"] == data]
    assert len(reads) == READS + 1   # and the one at the end of the file
    assert all(d["container"] == "kt-reader" and d["direct"] for d in reads)
    assert sum(d["bytes"] or 0 for d in reads) == READS * BLOCK
    assert not [d for d in theirs if d["type"] in ("read", "block") and d.get("container") == "kt-reader"]
    assert not [d for d in theirs if d["type"] == "read" and d["path"] == data]


def test_unknown_container_is_exit_2_before_attaching(docker_engine):
    res = subprocess.run([os.path.join(BIN, "iotrace"), "odirect", "--container", "kt-no-such"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == ["iotrace: error: no running container named 'kt-no-such'"]
