"""Checks that the machine can trace at all, each failing with one line that
says what is missing and how to get it."""
from __future__ import annotations

import os

from .libbpf import LibbpfMissing, lib

__all__ = ["EnvironmentProblem", "UsageProblem", "require_bpf_environment", "require_root"]

BTF_PATH = "/sys/kernel/btf/vmlinux"


class UsageProblem(Exception):
    """Bad input from the user: one line, exit 2."""


class EnvironmentProblem(UsageProblem):
    """The machine cannot do what was asked: one line, exit 2."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("tracing needs root (CAP_BPF and CAP_PERFMON); run it with sudo")


def require_bpf_environment() -> None:
    """Root, kernel BTF and libbpf: what every tracer needs before it opens
    an object."""
    require_root()
    if not os.path.exists(BTF_PATH):
        raise EnvironmentProblem(
            f"this kernel has no BTF ({BTF_PATH} is missing); boot a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        )
    try:
        lib()
    except LibbpfMissing as exc:
        raise EnvironmentProblem(str(exc)) from None
