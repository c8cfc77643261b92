"""The backend from the environment: KERNTRACE_BACKEND and KERNTRACE_BTF are
the defaults of --backend and --btf on the command line (click reads them,
tracers/options.py), and of a Run made from Python without a backend (the
kernel tests), so one variable moves every test of a run onto a backend
(make vmtest's btf and bcc passes)."""
from __future__ import annotations

import functools
import os
from typing import Mapping, Optional

from .backend import BACKENDS, LIBBPF, Backend, BackendRequest, check_btf_file, resolve
from .environment import UsageProblem

__all__ = ["ENV_BACKEND", "ENV_BTF", "backend_from_env", "check_env_btf_file", "request_from_env"]

ENV_BACKEND = "KERNTRACE_BACKEND"
ENV_BTF = "KERNTRACE_BTF"


def request_from_env(env: Optional[Mapping[str, str]] = None) -> Optional[BackendRequest]:
    """The BackendRequest the variables ask for; None when neither is set
    (empty counts as unset, as click takes it).  A bad name is one line."""
    env = os.environ if env is None else env
    name = env.get(ENV_BACKEND) or ""
    btf = env.get(ENV_BTF) or None
    if not name and btf is None:
        return None
    if name and name not in BACKENDS:
        raise UsageProblem(f"{ENV_BACKEND}={name!r}: must be one of {', '.join(BACKENDS)}")
    return BackendRequest(name or "auto", btf)


def _from_env(exc: UsageProblem, btf_file: Optional[str]) -> UsageProblem:
    """The same one line, saying the file came from KERNTRACE_BTF."""
    text = str(exc)
    given = f"--btf {btf_file}"
    if btf_file is not None and text.startswith(given):
        text = f"{ENV_BTF}={btf_file}" + text[len(given):]
    return type(exc)(text)


def check_env_btf_file(path: str) -> None:
    """check_btf_file for a file named by KERNTRACE_BTF."""
    try:
        check_btf_file(path)
    except UsageProblem as exc:
        raise _from_env(exc, path) from None


@functools.lru_cache(maxsize=8)
def _resolved(request: BackendRequest) -> Backend:
    # resolving reads the BTF file (and for bcc imports the module): once per value
    try:
        return resolve(request)
    except UsageProblem as exc:
        raise _from_env(exc, request.btf_file) from None


def backend_from_env() -> Backend:
    """The backend of a Run given none: libbpf against the kernel's BTF
    unless the variables say otherwise (then resolved as --backend/--btf are)."""
    request = request_from_env()
    return LIBBPF if request is None else _resolved(request)
