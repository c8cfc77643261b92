"""The tracing engine: the libbpf binding, BTF, ring buffers, kernel
symbols, hook probing, and the types a run is made of.  It knows nothing of
any tool; tools describe their hooks, options and records to it."""
from __future__ import annotations

from .environment import EnvironmentProblem, UsageProblem, require_bpf_environment, require_root
from .session import Session
from .target import Target, target_from_options
from .tracer import AttachError, BpfTracer, Hook, HookChoice, describe_choices, object_path, parse_section

__all__ = [
    "AttachError",
    "BpfTracer",
    "EnvironmentProblem",
    "Hook",
    "HookChoice",
    "Session",
    "Target",
    "UsageProblem",
    "describe_choices",
    "object_path",
    "parse_section",
    "require_bpf_environment",
    "require_root",
    "target_from_options",
]
