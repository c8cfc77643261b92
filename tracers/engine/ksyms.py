"""Kernel symbols from /proc/kallsyms, for kernel stacks from stack maps.

Root reads real addresses (kptr_restrict lets CAP_SYSLOG through); without
them every address is 0 and frames stay hexadecimal.
"""
from __future__ import annotations

import bisect
import struct
from typing import Optional

__all__ = ["KernelSymbols", "SCHEDULER_FRAMES", "read_stack", "wait_site"]

# The scheduler's own frames and the tracing trampolines above them: every
# sleeping stack starts with some of these, so they say nothing about why.
SCHEDULER_FRAMES = (
    "__schedule", "schedule", "io_schedule", "schedule_timeout", "io_schedule_timeout",
    "schedule_preempt_disabled", "schedule_hrtimeout", "schedule_hrtimeout_range",
    "schedule_hrtimeout_range_clock", "blk_io_schedule", "__cond_resched", "preempt_schedule",
    "preempt_schedule_common", "schedule_idle",
)
_TRACING_PREFIXES = ("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_", "__probestub_")
_SCHEDULER_PREFIXES = ("bpf_", "__bpf_", "__traceiter_", "__probestub_", "trace_call_bpf")


class KernelSymbols:
    def __init__(self, path: str = "/proc/kallsyms") -> None:
        addrs: list[int] = []
        names: list[str] = []
        with open(path, "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in (b"t", b"T", b"w", b"W"):
                    continue
                addr = int(parts[0], 16)
                if addr == 0:
                    continue
                name = parts[2].decode("ascii", "replace")
                # Section markers (__sched_text_start, ...) share the address
                # of the first function in the section; they name no code.
                if name.startswith("__") and name.endswith(("_text_start", "_text_end")):
                    continue
                addrs.append(addr)
                names.append(name)
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self._addrs = [addrs[i] for i in order]
        self._names = [names[i] for i in order]

    def __bool__(self) -> bool:
        return bool(self._addrs)

    def name(self, addr: int) -> str:
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0:
            return f"{addr:#x}"
        return self._names[i]


_KSYMS: Optional[KernelSymbols] = None


def kernel_symbols() -> KernelSymbols:
    global _KSYMS
    if _KSYMS is None:
        _KSYMS = KernelSymbols()
    return _KSYMS


def read_stack(stack_map: object, stack_id: int, ksyms: KernelSymbols) -> list[str]:
    """Innermost frame first; [] when the id is not a stack (an -errno)."""
    if stack_id < 0:
        return []
    raw = stack_map.lookup(struct.pack("<I", stack_id))  # type: ignore[attr-defined]
    if raw is None:
        return []
    frames = []
    for (addr,) in struct.iter_unpack("<Q", raw):
        if addr == 0:
            break
        frames.append(ksyms.name(addr) if ksyms else f"{addr:#x}")
    # The stack is taken inside our own program: drop the tracing frames on top.
    while frames and frames[0].startswith(_TRACING_PREFIXES):
        frames.pop(0)
    return frames


def is_scheduler_frame(name: str) -> bool:
    return name in SCHEDULER_FRAMES or name.startswith(_SCHEDULER_PREFIXES)


def wait_site(frames: list[str], depth: int = 1) -> str:
    """The first frames below the scheduler: where the task chose to sleep."""
    rest = [f for f in frames if not is_scheduler_frame(f)]
    return ";".join(rest[:depth]) if rest else (frames[0] if frames else "?")
