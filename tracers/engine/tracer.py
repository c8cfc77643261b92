"""One BPF object from open to detach: set options, choose hooks, load,
attach, read its rings and globals.

A tracer describes itself with :class:`Hook` (what it observes, and the
programs that can observe it, best first) and a mapping from ring-buffer maps
to the event struct each carries.  :class:`BpfTracer` turns that into a loaded
and attached object; :class:`~.session.Session` runs tracers.

Transport: the objects declare BPF ring buffers (KT_RINGBUF).  Where the
kernel has no such map type (or KERNTRACE_TRANSPORT=perf), each ring map is
turned into a BPF_MAP_TYPE_PERF_EVENT_ARRAY before load and the object's
kt_perf_output set (kerntrace.bpf.h), and its records are read with
:class:`~.perfring.PerfRings`.
"""
from __future__ import annotations

import functools
import logging
import os
import struct
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from . import probe
from .btf import Btf, scalar_type_code
from .environment import EnvironmentProblem
from .libbpf import Link, Map, Object, num_possible_cpus
from .perfring import PerfRings
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

BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
# A perf ring per CPU gets the object's ring size shared among the CPUs, but
# never less than this (or the ring size itself, when smaller): one CPU's
# burst must fit until the reader wakes at a quarter of it (perfring.py).
PERF_MIN_CPU_BYTES = 256 * 1024


def perf_pages_per_cpu(ring_bytes: int, cpus: int) -> int:
    """Data pages of each CPU's perf ring (a power of two) standing in for
    a ring buffer of ring_bytes."""
    import mmap

    want = min(max(ring_bytes // max(cpus, 1), PERF_MIN_CPU_BYTES), ring_bytes)
    pages = 1
    while pages * mmap.PAGESIZE < want:
        pages *= 2
    return pages


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


class FilterMaps:
    """The target's filter maps every kerntrace program has under the same
    names (kerntrace.bpf.h, kt_bcc.h), filled the same way on both backends."""

    obj: Any   # libbpf.Object or bcc.BccObject: map(name) with bytes update/delete

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


class BpfTracer(FilterMaps):
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
        transport: Optional[str] = None,
    ) -> None:
        self.name = object_name
        # btf_custom_path: --btf FILE, the kernel's types for CO-RE (probe.set_kernel_btf for the hooks)
        self.obj = Object(object_path(object_name), btf_custom_path=btf_custom_path)
        self.btf = Btf(self.obj.btf_raw())
        self.ring_structs = dict(rings)
        self.follows_children = follow_children
        # Whether the object carries kerntrace.bpf.h's traced-pid set.
        self.targeted = any(m.name == "kt_traced" for m in self.obj.maps())
        self.readers: dict[str, Union[RingReader, PerfRings]] = {}
        self.links: list[Link] = []
        self.choices: list[HookChoice] = []
        self._bss: Optional[Map] = None
        if ring_bytes:
            for ring in self.ring_structs:
                self.obj.map(ring).max_entries = ring_bytes
        # "ring buffer" | "perf buffer" (probe.transport)
        self.transport = transport or probe.transport()
        self._perf_pages: dict[str, int] = {}
        # What the kernel is, for the globals of core_fixes.bpf.h the object has.
        variables = self.btf.datasec(".rodata")
        facts = {name: value for name, value in probe.kernel_facts().items() if name in variables}
        facts.update(self._set_transport(variables))
        self.set_options({**facts, **options})
        self._choose(hooks, follow_children)

    # -- before load -----------------------------------------------------------

    def _global_map(self, section: str) -> Map:
        for m in self.obj.maps():
            if m.name.endswith(section):
                return m
        raise KeyError(f"{self.name} has no {section} section")

    def _set_transport(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """Turns the ring maps into perf event arrays for the perf buffer;
        the rodata value that goes with the transport."""
        has_switch = "kt_perf_output" in variables
        if self.transport == probe.RING_BUFFER:
            if has_switch:
                self.obj.map("kt_perf_heap").max_entries = 1  # unused: one slot per CPU, not KT_PERF_NEST
            return {"kt_perf_output": False} if has_switch else {}
        if self.transport != probe.PERF_BUFFER:
            raise ValueError(f"unknown transport {self.transport!r}")
        if not self.ring_structs:
            return {"kt_perf_output": True} if has_switch else {}
        if not has_switch:
            raise EnvironmentProblem(f"{self.name}: its object has no perf-buffer output (kt_perf_output)")
        if not PerfRings.available():
            raise EnvironmentProblem(f"{self.name}: this kernel has no BPF ring buffer and kerntrace reads "
                                     "perf buffers on x86-64 only")
        cpus = num_possible_cpus()
        for ring in self.ring_structs:
            m = self.obj.map(ring)
            self._perf_pages[ring] = perf_pages_per_cpu(m.max_entries, cpus)
            m.type = BPF_MAP_TYPE_PERF_EVENT_ARRAY
            m.key_size = 4
            m.value_size = 4
            m.max_entries = cpus  # a slot per possible CPU; online CPUs get an event
        return {"kt_perf_output": True}

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
            dtype = functools.partial(self.btf.dtype, struct_name)
            if self.transport == probe.PERF_BUFFER:
                self.readers[ring] = PerfRings(functools.partial(_set_perf_slot, m), dtype, ring,
                                               pages_per_cpu=self._perf_pages[ring])
            else:
                self.readers[ring] = RingReader(m.fd, m.max_entries, dtype, ring)
        try:
            self._bss = self._global_map(".bss")
        except KeyError:
            self._bss = None

    def attach(self) -> None:
        for prog in self.obj.programs():
            if prog.autoload:
                self.links.append(prog.attach())

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
        """Records made and not delivered.  On the perf buffer a record that
        found its ring full is counted by the BPF side when the output
        fails, and again by the LOST note the kernel writes once there is
        room (perf_lost_notes): counted once here.  Samples too short for
        their record are lost too."""
        try:
            lost = self.read_global("kt_lost_events")
        except KeyError:
            lost = 0
        return lost + sum(r.short for r in self.readers.values() if isinstance(r, PerfRings))

    @property
    def perf_lost_notes(self) -> int:
        """What the perf rings' LOST notes counted (a part of lost_events)."""
        return sum(r.lost for r in self.readers.values() if isinstance(r, PerfRings))

    def poll_fds(self) -> list[int]:
        """What to wait on for records: each ring map's fd, or on the perf
        buffer each CPU's event fd."""
        fds: list[int] = []
        for ring, reader in self.readers.items():
            if isinstance(reader, PerfRings):
                fds.extend(reader.fds)
            else:
                fds.append(self.obj.map(ring).fd)
        return fds

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


def _set_perf_slot(m: Map, cpu: int, fd: int) -> None:
    m.update(struct.pack("<I", cpu), struct.pack("<I", fd))


def destroy_links(links: Sequence[Link]) -> None:
    """Detach links, one after the other: each waits for an RCU grace
    period in the kernel (tens of ms).  Detaching them from parallel
    threads saved 0.2 s here but is not what the kernel's callers do,
    and a guest kernel once stopped making progress in such a run."""
    for link in links:
        link.destroy()
