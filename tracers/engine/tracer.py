"""One BPF object from open to detach: set options, choose hooks, load,
attach, read its rings and globals.

A tracer describes itself with :class:`Hook` (what it observes, and the
programs that can observe it, best first) and a mapping from ring-buffer maps
to the event struct each carries.  :class:`BpfTracer` turns that into a loaded
and attached object; :class:`~.session.Session` runs tracers.
"""
from __future__ import annotations

import functools
import logging
import os
import struct
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from . import probe
from .btf import Btf, scalar_type_code
from .libbpf import Link, Map, Object
from .ringbuf import RingReader

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AttachError",
    "BpfTracer",
    "Hook",
    "HookChoice",
    "object_path",
    "parse_section",
]

log = logging.getLogger("kerntrace.engine")


class AttachError(RuntimeError):
    """No alternative of a required hook can attach on this kernel."""


@dataclass(frozen=True)
class Hook:
    """One thing a tracer observes, and the programs that can observe it,
    in order of preference (e.g. fentry, then kprobe, then a tracepoint)."""

    name: str
    programs: tuple[str, ...]
    required: bool = True


@dataclass
class HookChoice:
    hook: str
    program: Optional[str]
    kind: str
    target: str
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (program, why not)

    def describe(self) -> str:
        if self.program is None:
            return f"{self.hook}: unavailable"
        return f"{self.hook}: {self.kind} {self.target}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "program": self.program,
            "method": self.kind if self.program else None,
            "target": self.target,
            "rejected": [{"program": p, "reason": r} for p, r in self.rejected],
        }


def describe_choices(choices: Sequence[HookChoice]) -> str:
    """What a run hooks, in one line: syscall tracepoints counted, every
    other hook with the method chosen, unavailable hooks named."""
    syscalls = [c for c in choices if c.program and c.kind == "tracepoint" and c.target.startswith("syscalls/")]
    parts = []
    if syscalls:
        parts.append(f"{len(syscalls)} syscall tracepoints")
    # tracers of one session may share a hook (sys_enter): named once
    parts += dict.fromkeys(f"{c.kind} {c.target}" for c in choices if c.program and c not in syscalls)
    missing = [c.hook for c in choices if not c.program]
    if missing:
        parts.append("unavailable: " + ", ".join(missing))
    return "; ".join(parts)


_SECTION_KINDS = {
    "tp": "tracepoint",
    "tracepoint": "tracepoint",
    "tp_btf": "tp_btf",
    "raw_tp": "raw_tp",
    "raw_tracepoint": "raw_tp",
    "fentry": "fentry",
    "fexit": "fexit",
    "kprobe": "kprobe",
    "kretprobe": "kretprobe",
}


def parse_section(section: str) -> tuple[str, str]:
    """ELF section name of a program -> (kind, target)."""
    prefix, _, target = section.partition("/")
    kind = _SECTION_KINDS.get(prefix)
    if kind is None or not target:
        raise ValueError(f"unsupported program section {section!r}")
    return kind, target


def object_path(name: str) -> str:
    """Path of a shipped BPF object, e.g. ``odirect`` -> .../bpf/odirect.bpf.o."""
    path = str(resources.files("kerntrace.bpf").joinpath(f"{name}.bpf.o"))
    if not os.path.exists(path):
        raise FileNotFoundError(f"BPF object {name}.bpf.o is not built; run `make bpf` in the source tree")
    return path


class BpfTracer:
    """One BPF object, from open to detach."""

    def __init__(
        self,
        object_name: str,
        hooks: Sequence[Hook] = (),
        rings: Mapping[str, str] = {},
        options: Mapping[str, Any] = {},
        ring_bytes: Optional[int] = None,
        follow_children: bool = False,
        btf_custom_path: Optional[str] = None,
    ) -> None:
        self.name = object_name
        # btf_custom_path: --btf FILE, the kernel's types for CO-RE (probe.set_kernel_btf for the hooks)
        self.obj = Object(object_path(object_name), btf_custom_path=btf_custom_path)
        self.btf = Btf(self.obj.btf_raw())
        self.ring_structs = dict(rings)
        self.follows_children = follow_children
        # Whether the object carries kerntrace.bpf.h's traced-pid set.
        self.targeted = any(m.name == "kt_traced" for m in self.obj.maps())
        self.readers: dict[str, RingReader] = {}
        self.links: list[Link] = []
        self.choices: list[HookChoice] = []
        self._bss: Optional[Map] = None
        if ring_bytes:
            for ring in self.ring_structs:
                self.obj.map(ring).max_entries = ring_bytes
        # What the kernel is, for the globals of core_fixes.bpf.h the object has.
        variables = self.btf.datasec(".rodata")
        facts = {name: value for name, value in probe.kernel_facts().items() if name in variables}
        self.set_options({**facts, **options})
        self._choose(hooks, follow_children)

    # -- before load -----------------------------------------------------------

    def _global_map(self, section: str) -> Map:
        for m in self.obj.maps():
            if m.name.endswith(section):
                return m
        raise KeyError(f"{self.name} has no {section} section")

    def set_options(self, options: Mapping[str, Any]) -> None:
        """Write ``const volatile`` globals; only valid before load."""
        if not options:
            return
        if self.obj.loaded:
            raise RuntimeError("options are read-only once the object is loaded")
        variables = self.btf.datasec(".rodata")
        addr, size = self._global_map(".rodata").data()
        for name, value in options.items():
            var = variables.get(name)
            if var is None:
                raise KeyError(f"{self.name} has no option {name}")
            self._write_var(addr, size, var.offset, var.type_id, name, value)

    def _write_var(self, addr: int, size: int, offset: int, type_id: int, name: str, value: Any) -> None:
        import ctypes

        t = self.btf.resolve(self.btf.types[type_id].ref)
        if t.kind == "array":
            elem_code = scalar_type_code(self.btf, t.array_elem)
            elem_size = self.btf.sizeof(t.array_elem)
            values = list(value)
            if elem_code is None or len(values) > t.array_len:
                raise ValueError(f"option {name}: at most {t.array_len} values")
            data = b"".join(struct.pack("<" + elem_code, v) for v in values)
            data = data.ljust(elem_size * t.array_len, b"\0")
        else:
            code = scalar_type_code(self.btf, t.id)
            if code is None:
                raise ValueError(f"option {name} has a type kerntrace cannot set")
            data = struct.pack("<" + code, value)
        if offset + len(data) > size:
            raise ValueError(f"option {name} lies outside .rodata")
        ctypes.memmove(addr + offset, data, len(data))

    def _choose(self, hooks: Sequence[Hook], follow_children: bool) -> None:
        programs = {p.name: p for p in self.obj.programs()}
        if "kt_follow_fork" in programs:
            programs["kt_follow_fork"].autoload = follow_children
        for hook in hooks:
            choice: Optional[HookChoice] = None
            rejected: list[tuple[str, str]] = []
            for prog_name in hook.programs:
                prog = programs.get(prog_name)
                if prog is None:
                    raise KeyError(f"{self.name}: hook {hook.name} names unknown program {prog_name}")
                kind, target = parse_section(prog.section)
                if choice is not None:
                    prog.autoload = False
                    continue
                verdict = probe.can_attach(kind, target)
                if verdict:
                    choice = HookChoice(hook.name, prog_name, kind, target, rejected)
                    prog.autoload = True
                else:
                    rejected.append((prog_name, verdict.reason))
                    prog.autoload = False
            if choice is None:
                if hook.required:
                    reasons = "; ".join(f"{p}: {r}" for p, r in rejected)
                    raise AttachError(f"{self.name}: cannot hook {hook.name} on this kernel ({reasons})")
                choice = HookChoice(hook.name, None, "none", "", rejected)
            self.choices.append(choice)
            # The record carries the choice itself so the test suite can
            # tabulate which hook each kernel took (tests/conftest.py).
            log.info("%s: %s", self.name, choice.describe(), extra={"kt_object": self.name, "kt_hook": hook, "kt_choice": choice})

    # -- load and attach -------------------------------------------------------

    def load(self) -> None:
        self.obj.load()
        for ring, struct_name in self.ring_structs.items():
            m = self.obj.map(ring)
            self.readers[ring] = RingReader(m.fd, m.max_entries, functools.partial(self.btf.dtype, struct_name), ring)
        try:
            self._bss = self._global_map(".bss")
        except KeyError:
            self._bss = None

    def attach(self) -> None:
        for prog in self.obj.programs():
            if prog.autoload:
                self.links.append(prog.attach())

    def trace_pids(self, pids: Iterable[int]) -> None:
        traced = self.obj.map("kt_traced")
        for pid in pids:
            traced.update(struct.pack("<I", pid), b"\x01")

    def allow_cgroups(self, ids: Iterable[int]) -> None:
        allowed = self.obj.map("kt_cgroup_allow")
        for cgroup_id in ids:
            allowed.update(struct.pack("<Q", cgroup_id), b"\x01")

    def untrace_pid(self, pid: int) -> None:
        self.obj.map("kt_traced").delete(struct.pack("<I", pid))

    # -- while running ---------------------------------------------------------

    def read_global(self, name: str) -> int:
        """A scalar in .bss (counters the BPF side keeps), read live."""
        if self._bss is None:
            raise KeyError(f"{self.name} has no .bss")
        var = self.btf.datasec(".bss").get(name)
        if var is None:
            raise KeyError(f"{self.name} has no global {name}")
        code = scalar_type_code(self.btf, self.btf.types[var.type_id].ref)
        if code is None:
            raise ValueError(f"global {name} is not a scalar")
        # libbpf only maps global data into user memory for skeletons; a
        # lookup of the one-element array reads the live value.
        data = self._bss.lookup(b"\0\0\0\0")
        if data is None:
            raise KeyError(f"{self.name}: .bss not readable")
        return int(struct.unpack_from("<" + code, data, var.offset)[0])

    @property
    def lost_events(self) -> int:
        try:
            return self.read_global("kt_lost_events")
        except KeyError:
            return 0

    def drain(self) -> dict[str, "np.ndarray[Any, Any]"]:
        return {name: reader.drain() for name, reader in self.readers.items()}

    def detach(self) -> None:
        links, self.links = self.links, []
        destroy_links(links)

    def close(self) -> None:
        self.detach()
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
        self.obj.close()

    def __enter__(self) -> "BpfTracer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def destroy_links(links: Sequence[Link]) -> None:
    """Detach links, one after the other: each waits for an RCU grace
    period in the kernel (tens of ms).  Detaching them from parallel
    threads saved 0.2 s here but is not what the kernel's callers do,
    and a guest kernel once stopped making progress in such a run."""
    for link in links:
        link.destroy()
