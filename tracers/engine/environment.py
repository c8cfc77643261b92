"""Checks that the machine can trace at all, each failing with one line that
says what is missing and how to get it (the backend's own: backend.py)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from .libbpf import LibbpfMissing, lib

if TYPE_CHECKING:
    from .backend import Backend, BackendRequest

__all__ = ["EnvironmentProblem", "UsageProblem", "require_bpf_environment", "require_root"]

BTF_PATH = "/sys/kernel/btf/vmlinux"


class UsageProblem(Exception):
    """Bad input from the user: one line, exit 2."""


class EnvironmentProblem(UsageProblem):
    """The machine cannot do what was asked: one line, exit 2."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("tracing needs root (CAP_BPF and CAP_PERFMON); run it with sudo")


def require_bpf_environment(request: Optional["BackendRequest"] = None) -> "Backend":
    """The backend of --backend/--btf on this host, root, and libbpf for
    the libbpf backend: what every tracer needs before it opens an object.
    The backend comes first: it is a fact of the host, true for root too."""
    from .backend import BackendRequest, resolve

    backend = resolve(request or BackendRequest())
    require_root()
    if backend.name == "libbpf":
        try:
            lib()
        except LibbpfMissing as exc:
            raise EnvironmentProblem(str(exc)) from None
    return backend
