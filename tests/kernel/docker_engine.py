"""A real Docker engine for kernel tests: the session-scoped fixture
``docker_engine`` (tools/dockerd.py's DockerEngine, started, with the
kt-busybox image), and ``container_cgroup_ids`` for tests that need a
container's pid and cgroups.

Use: tests/kernel/conftest.py loads this module as a pytest plugin, so a
test takes ``docker_engine`` as an argument.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

# tools/ is development tooling, not part of the installed package
_TOOLS = str(Path(__file__).resolve().parents[2] / "tools")
if _TOOLS not in sys.path:
    sys.path.append(_TOOLS)

from dockerd import IMAGE, DockerEngine, dockerd_path  # noqa: E402  (tools/dockerd.py)

__all__ = ["docker_engine", "container_cgroup_ids", "cgroup2_id", "DockerEngine", "IMAGE"]


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """An engine answering on /var/run/docker.sock (ours, with a private data
    root, unless one was running) with the kt-busybox image; stopped at the
    session's end (containers the tests started removed, our dockerd and
    what it left on the host gone)."""
    if dockerd_path() is None:
        pytest.skip("docker.io is not installed (make deps installs it)")
    engine = DockerEngine.start()
    try:
        engine.ensure_image()
        yield engine
    finally:
        engine.stop()


def _cgroup2_mount() -> str:
    """Where cgroup2 is mounted: /sys/fs/cgroup/unified on a hybrid host,
    /sys/fs/cgroup on a unified one."""
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    raise FileNotFoundError("cgroup2 is not mounted")


def cgroup2_id(path: str) -> int:
    """The kernel's id of a cgroup2 path ("/kt-docker-x/ID"): its directory's
    inode number, what bpf_get_current_cgroup_id() (nstrace's cgroup_id)
    returns for a task in it."""
    return os.stat(os.path.join(_cgroup2_mount(), path.lstrip("/"))).st_ino


def container_cgroup_ids(engine: DockerEngine, name: str) -> dict[str, Any]:
    """A running container's main pid (State.Pid), its /proc/PID/cgroup
    lines, its cgroup2 path and id (nstrace's cgroup_id for its tasks, None
    if the path is gone), and its full id."""
    info = engine.inspect(name)
    pid = int(info["State"]["Pid"])
    if not info["State"]["Running"] or pid <= 0:
        raise RuntimeError(f"container {name} is not running ({info['State']['Status']})")
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    path = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "")
    try:
        cgroup_id = cgroup2_id(path) if path else None
    except OSError:
        cgroup_id = None
    return {"id": info["Id"], "pid": pid, "cgroup": lines, "cgroup2_path": path, "cgroup_id": cgroup_id}
