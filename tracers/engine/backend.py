"""Which backend runs a tracing command: libbpf CO-RE (against the kernel's
own BTF, or --btf FILE) or BCC (python3-bpfcc compiling against the running
kernel's headers).

The choice is a pure function of facts about the host (:func:`choose`), so
it is tested without one; :func:`gather_facts` finds them here, and
:func:`resolve` does both for a command's --backend and --btf.  Every refusal
is one line that names the way out (exit 2, before anything is attached).
"""
from __future__ import annotations

import glob
import os
import platform
import sys
from dataclasses import dataclass
from typing import Optional

from .environment import BTF_PATH, EnvironmentProblem, UsageProblem

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendRequest",
    "Facts",
    "LIBBPF",
    "bcc_module",
    "bcc_refusal",
    "check_btf_file",
    "choose",
    "gather_facts",
    "headers_path",
    "resolve",
]

BACKENDS = ("auto", "libbpf", "bcc")
# The commands the BCC backend is meant for (issue 22): the ip6mr bug lives on
# kernels without BTF.  A tool says it is one with Tool.bcc_program.
BCC_COMMANDS = "nstrace ip6mr and iotrace odirect"
BTFHUB_HINT = "--btf FILE (the kernel's BTF, e.g. from BTFHub)"
NO_BCC = "python3-bpfcc is not installed"
BTF_WITH_BCC = "--btf is for the libbpf backend; --backend bcc compiles against the kernel headers"


@dataclass(frozen=True)
class BackendRequest:
    """--backend and --btf as given."""

    name: str = "auto"
    btf_file: Optional[str] = None


@dataclass(frozen=True)
class Backend:
    """The backend a run uses."""

    name: str                        # "libbpf" or "bcc"
    btf_file: Optional[str] = None   # --btf FILE the CO-RE relocations read; None: the kernel's own BTF

    def describe(self) -> str:
        """For the ready line's hooks: which backend, against what."""
        if self.name == "libbpf":
            return f"libbpf (BTF {self.btf_file})" if self.btf_file else "libbpf (kernel BTF)"
        return "bcc (kernel headers)"


LIBBPF = Backend("libbpf")


@dataclass(frozen=True)
class Facts:
    """What the choice depends on.  The bcc facts are only looked for when
    the choice can come to them (see gather_facts); False otherwise."""

    has_btf: bool                     # /sys/kernel/btf/vmlinux exists
    btf_file: Optional[str]           # --btf FILE, already checked to be BTF
    bcc_importable: bool              # python3-bpfcc's module bcc imports
    headers_present: bool             # /lib/modules/$(uname -r)/build exists
    release: str = ""                 # uname -r, for the messages
    bcc_problem: str = ""             # why bcc does not import, in words


def _bcc_problems(facts: Facts) -> str:
    missing = []
    if not facts.bcc_importable:
        missing.append(facts.bcc_problem or NO_BCC)
    if not facts.headers_present:
        missing.append(f"no kernel headers in {headers_path(facts.release)}")
    return "; ".join(missing)


def choose(requested: str, facts: Facts) -> Backend:
    """The backend for --backend ``requested`` on a host with ``facts``.
    Raises EnvironmentProblem (UsageProblem for a contradiction) with one
    line that names the ways out."""
    if requested not in BACKENDS:
        raise UsageProblem(f"--backend must be one of {', '.join(BACKENDS)}, not {requested!r}")
    libbpf_ok = facts.has_btf or facts.btf_file is not None
    bcc_ok = facts.bcc_importable and facts.headers_present
    if requested == "bcc":
        if facts.btf_file is not None:
            raise UsageProblem(BTF_WITH_BCC)
        if not bcc_ok:
            raise EnvironmentProblem(
                f"the bcc backend cannot run here ({_bcc_problems(facts)}): install python3-bpfcc and "
                f"linux-headers-{facts.release} (RHEL: bcc, kernel-devel), or use --backend libbpf"
                + ("" if libbpf_ok else f" with {BTFHUB_HINT}"))
        return Backend("bcc")
    if libbpf_ok:
        return Backend("libbpf", facts.btf_file)
    if requested == "libbpf":
        raise EnvironmentProblem(
            f"the libbpf backend needs BTF and this kernel has none ({BTF_PATH} is missing): pass {BTFHUB_HINT}, "
            "or use --backend bcc (python3-bpfcc and the kernel headers)")
    if bcc_ok:
        return Backend("bcc")
    raise EnvironmentProblem(
        f"this kernel has no BTF ({BTF_PATH} is missing) and the bcc backend cannot run ({_bcc_problems(facts)}): "
        f"install the kernel headers and python3-bpfcc (linux-headers-{facts.release}; RHEL: kernel-devel, bcc), "
        f"or pass {BTFHUB_HINT}")


# -- the facts of this host -------------------------------------------------


def headers_path(release: str) -> str:
    """Where BCC looks for the running kernel's headers first."""
    return f"/lib/modules/{release}/build"


# python3-bpfcc (Debian, Ubuntu) and bcc (RHEL) install the module for the
# system's python3; a virtualenv made without --system-site-packages cannot
# import it.
_SYSTEM_BCC = ("/usr/lib/python3/dist-packages/bcc", "/usr/lib/python3*/site-packages/bcc")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _import_system_bcc() -> bool:
    """Import the system's bcc package (python3-bpfcc, RHEL's bcc) into a
    venv that cannot see it: that one directory only, not the rest of the
    system's site-packages (whose other modules could shadow the venv's).
    False when no such directory exists."""
    import importlib.util

    for path in sorted(p for pattern in _SYSTEM_BCC for p in glob.glob(pattern)):
        init = os.path.join(path, "__init__.py")
        if not os.path.isfile(init):
            continue
        spec = importlib.util.spec_from_file_location("bcc", init, submodule_search_locations=[path])
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules["bcc"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["bcc"]
            raise
        return True
    return False


def bcc_module() -> tuple[bool, str]:
    """(whether the module bcc imports here, bcc's version or why not).
    The import loads libbcc: only done when the answer matters.  From a venv
    the system's bcc package is imported from its own directory."""
    try:
        try:
            import bcc  # type: ignore[import-not-found]
        except ImportError as exc:
            if getattr(exc, "name", None) != "bcc" or not _import_system_bcc():
                raise
            import bcc  # type: ignore[import-not-found]  # noqa: F811
    except ImportError as exc:
        if getattr(exc, "name", None) != "bcc":
            return False, f"module bcc does not import ({_first_line(exc)})"
        return False, NO_BCC
    except Exception as exc:  # libbcc missing or broken: OSError from ctypes, and others
        return False, f"module bcc does not import ({_first_line(exc)})"
    return True, str(getattr(bcc, "__version__", "(version unknown)"))


def gather_facts(request: BackendRequest) -> Facts:
    """This host's facts for ``request``; ``request.btf_file`` must have
    passed check_btf_file.  BCC is only looked at when the choice can come
    to it: importing it loads libbcc, which a CO-RE run does not need."""
    release = platform.release()
    has_btf = os.path.exists(BTF_PATH)
    wants_bcc = request.name == "bcc" or (request.name == "auto" and not has_btf and request.btf_file is None)
    importable, problem = bcc_module() if wants_bcc else (False, "")
    return Facts(
        has_btf=has_btf,
        btf_file=request.btf_file,
        bcc_importable=importable,
        headers_present=wants_bcc and os.path.isdir(headers_path(release)),
        release=release,
        bcc_problem="" if importable else problem,
    )


def check_btf_file(path: str) -> None:
    """--btf FILE must be a BTF file libbpf parses: one line, exit 2, before
    anything is opened or attached."""
    from .libbpf import BtfFile, LibbpfError, LibbpfMissing

    if not os.path.exists(path):
        raise UsageProblem(f"--btf {path}: no such file")
    if os.path.isdir(path):
        raise UsageProblem(f"--btf {path}: is a directory, not a BTF file")
    if not os.access(path, os.R_OK):
        raise UsageProblem(f"--btf {path}: cannot read it (permission denied)")
    try:
        BtfFile(path).close()
    except LibbpfMissing as exc:
        raise EnvironmentProblem(str(exc)) from None
    except LibbpfError:
        raise UsageProblem(f"--btf {path}: not a BTF file (libbpf reads raw BTF, as /sys/kernel/btf/vmlinux, "
                           "or an ELF file with a .BTF section)") from None


def resolve(request: BackendRequest) -> Backend:
    """The backend of a command's --backend and --btf on this host."""
    if request.btf_file is not None:
        if request.name == "bcc":
            raise UsageProblem(BTF_WITH_BCC)
        check_btf_file(request.btf_file)
    return choose(request.name, gather_facts(request))


def bcc_refusal(command: str, bcc_program: Optional[str]) -> str:
    """Why ``command`` (e.g. 'iotrace dstate') cannot run on the bcc
    backend: it has no BCC program (bpf/<name>.bcc.c).  One line for exit 2."""
    if bcc_program is not None:
        raise ValueError(f"{command} has a BCC program ({bcc_program}.bcc.c): the bcc backend runs it")
    libbpf_way = f"use the libbpf backend (a kernel with BTF, or {BTFHUB_HINT})"
    return f"the bcc backend runs only {BCC_COMMANDS}; {command} needs BTF: {libbpf_way}"
