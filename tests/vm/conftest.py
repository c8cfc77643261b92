"""Tests that need a kernel with the hooks the CI host lacks (fentry,
kprobes, everything nstrace hooks in net/ipv6).  `make vmtest` runs them in
a QEMU guest booted from Debian's stock kernel; tests/conftest.py collects
this directory only there."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest


def _why_not() -> str:
    if os.environ.get("KERNTRACE_VMTEST_GUEST") != "1":
        return "vm tests run inside the make-vmtest guest only"
    if os.geteuid() != 0:
        return "vm tests need root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF"
    return ""


@pytest.fixture(autouse=True)
def _guest_ready():
    reason = _why_not()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def data_dir():
    """A directory on the guest's scratch disk (ext4 on virtio-blk, mounted
    at /var/tmp by the vmtest runner): O_DIRECT reads there reach a block
    device."""
    path = tempfile.mkdtemp(prefix="kerntrace-test-", dir=os.environ.get("KERNTRACE_DATA_DIR", "/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
