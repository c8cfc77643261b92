from __future__ import annotations

import os

import pytest

# fixtures for every kernel test module that asks: the real Docker engine,
# the kernel's delay accounting
pytest_plugins = ["docker_engine", "delayacct"]


def _why_not() -> str:
    if os.geteuid() != 0:
        return "kernel tests need root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF"
    try:
        from kerntrace.tracers.engine import object_path

        object_path("selftest")
    except FileNotFoundError as exc:
        return str(exc)
    return ""


@pytest.fixture(autouse=True)
def _kernel_ready():
    reason = _why_not()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def data_dir(tmp_path_factory):
    """A directory on a block-device filesystem (not tmpfs): O_DIRECT reads
    there reach the disk.  /var/tmp is on the root filesystem on Debian."""
    import tempfile

    base = os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp")
    path = tempfile.mkdtemp(prefix="kerntrace-test-", dir=base)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)
