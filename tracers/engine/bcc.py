"""The BCC backend: a tool's bpf/<name>.bcc.c compiled by BCC against the
running kernel's headers, for kernels without BTF (issue 22).

The records stay one definition: X.bcc.c includes the same bpf/X.h as the
CO-RE program and writes them to perf buffers named like the CO-RE ring
buffers; user space decodes them with the dtype read from the shipped CO-RE
object's BTF (bpf/X.bpf.o carries it even where the kernel has none).

Hooks are chosen before the compile, as the CO-RE plans are: each
:class:`BccHook` names its alternatives best first, and the first whose
kernel function or tracepoint exists here is taken.  A required hook with no
alternative is one line and exit 2, nothing compiled or attached; an optional
one is dropped and said in the hooks line.  The chosen functions reach the
program as ``-DKT_HOOK_<function>=1`` (a classic tracepoint's program is
compiled only when chosen: BCC builds its argument struct from the
tracepoint's format file, which must exist), and the fields of each chosen
classic tracepoint as ``-DKT_TPF_<event>_<field>=1`` (a field that a kernel
added, as CO-RE's bpf_core_field_exists tells).

:class:`BccTracer` has the engine's tracer interface (see
:class:`~.tracer.BpfTracer` and :class:`~.session.Session`).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Protocol, Sequence

from .btf import Btf
from .environment import EnvironmentProblem
from .tracer import FilterMaps, HookChoice, object_path

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BCC_KINDS",
    "BccHook",
    "BccTracer",
    "FOLLOW_FORK",
    "HookProbe",
    "bcc_cflags",
    "bcc_source",
    "kprobe_functions",
    "choose_hooks",
    "elf_section",
    "object_btf",
    "pages_per_cpu",
    "program_path",
    "tracepoint_fields",
]

log = logging.getLogger("kerntrace.engine")

BCC_KINDS = ("kprobe", "kretprobe", "tracepoint", "raw_tracepoint")


@dataclass(frozen=True)
class BccHook:
    """One thing a BCC program observes, and how, best first: (kind, target,
    function) with kind in BCC_KINDS; target a kernel function (kprobe,
    kretprobe), "category/event" (tracepoint) or an event (raw_tracepoint)."""

    description: str
    alternatives: tuple[tuple[str, str, str], ...]
    required: bool = True

    def __post_init__(self) -> None:
        for kind, target, fn_name in self.alternatives:
            if kind not in BCC_KINDS:
                raise ValueError(f"hook {self.description}: kind {kind!r} is not one of {', '.join(BCC_KINDS)}")
            if kind == "tracepoint" and target.count("/") != 1:
                raise ValueError(f"hook {self.description}: tracepoint {target!r} is not category/event")
            if not fn_name.isidentifier():
                raise ValueError(f"hook {self.description}: {fn_name!r} is no C function name")

    @property
    def name(self) -> str:
        return self.description

    @property
    def programs(self) -> tuple[str, ...]:
        """The functions, best first (Hook.programs of the CO-RE plans)."""
        return tuple(fn_name for _kind, _target, fn_name in self.alternatives)


# -c and -f: kt_bcc.h's programs that add a traced process's children to kt_traced.
FOLLOW_FORK = BccHook("follow fork", (("raw_tracepoint", "sched_process_fork", "kt_follow_fork"),
                                      ("tracepoint", "sched/sched_process_fork", "kt_tp_follow_fork")))


class HookProbe(Protocol):
    """Whether a hook's target exists here: '' when it does, else why not."""

    def kprobe(self, function: str) -> str: ...

    def tracepoint(self, category: str, event: str) -> str: ...

    def raw_tracepoint(self, event: str) -> str: ...


def _verdict(probe: HookProbe, kind: str, target: str) -> str:
    if kind in ("kprobe", "kretprobe"):
        return probe.kprobe(target)
    if kind == "tracepoint":
        category, event = target.split("/")
        return probe.tracepoint(category, event)
    return probe.raw_tracepoint(target)


def choose_hooks(object_name: str, hooks: Sequence[BccHook], probe: HookProbe) -> list[HookChoice]:
    """The first alternative of each hook that exists here.  A required hook
    with none: EnvironmentProblem (one line, exit 2), before any compile."""
    choices = []
    for hook in hooks:
        rejected: list[tuple[str, str]] = []
        choice: Optional[HookChoice] = None
        for kind, target, fn_name in hook.alternatives:
            why_not = _verdict(probe, kind, target)
            if not why_not:
                choice = HookChoice(hook.description, fn_name, kind, target, rejected)
                break
            rejected.append((fn_name, why_not))
        if choice is None:
            if hook.required:
                reasons = "; ".join(f"{p}: {r}" for p, r in rejected)
                raise EnvironmentProblem(f"the bcc backend cannot hook {hook.description} on this kernel "
                                         f"({object_name}: {reasons})")
            choice = HookChoice(hook.description, None, "none", "", rejected)
        choices.append(choice)
        log.info("%s (bcc): %s", object_name, choice.describe(), extra={"kt_object": object_name, "kt_hook": hook,
                                                                          "kt_choice": choice})
    return choices


def _c_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "{" + ",".join(str(v) for v in value) + "}"
    raise ValueError(f"option {name}: the bcc backend passes integers, booleans and lists of integers, "
                     f"not {type(value).__name__}")


def bcc_cflags(bpf_dir: str, options: Mapping[str, Any], functions: Iterable[str],
               tracepoint_fields: Mapping[str, Iterable[str]] = {}) -> list[str]:
    """BCC's cflags for a program: its includes, KT_BCC, the options
    (-DKT_OPT_<name>=<value>), the chosen hooks' functions and the fields of
    the chosen classic tracepoints (by event name)."""
    flags = [f"-I{bpf_dir}", "-DKT_BCC=1"]
    for name, value in options.items():
        if not name.isidentifier():
            raise ValueError(f"option {name!r} is no C identifier")
        flags.append(f"-DKT_OPT_{name}={_c_value(name, value)}")
    flags += [f"-DKT_HOOK_{fn}=1" for fn in functions]
    for event, fields in tracepoint_fields.items():
        flags += [f"-DKT_TPF_{event}_{field}=1" for field in fields]
    return flags


def tracepoint_fields(format_text: str) -> list[str]:
    """The fields of a tracepoint's format file, without the common ones:
    'field:__data_loc char[] comm;' -> comm, 'field:char comm[16];' -> comm."""
    fields = []
    for line in format_text.splitlines():
        line = line.strip()
        if not line.startswith("field:"):
            continue
        decl = line[len("field:"):].split(";", 1)[0].strip()
        name = decl.split()[-1].split("[", 1)[0] if decl else ""
        if name.isidentifier() and not name.startswith("common_"):
            fields.append(name)
    return fields


def pages_per_cpu(ring_bytes: Optional[int], cpus: int, page_size: int = 4096, default: int = 64) -> int:
    """A CO-RE ring's bytes (shared by every CPU) as perf pages per CPU: a
    power of two, at least 8."""
    if not ring_bytes:
        return default
    want = max(8, -(-ring_bytes // (page_size * max(cpus, 1))))
    return 1 << (want - 1).bit_length()


# -- the shipped files ------------------------------------------------------------


def program_path(name: str) -> str:
    """bpf/<name>.bcc.c of the installed package."""
    path = str(resources.files("kerntrace.bpf").joinpath(f"{name}.bcc.c"))
    if not os.path.exists(path):
        raise EnvironmentProblem(f"the BCC program {name}.bcc.c is not in this install of kerntrace")
    return path


KT_BCC_INCLUDE = '#include "kt_bcc.h"'


def bcc_source(path: str) -> str:
    """The program's text as BCC compiles it: kt_bcc.h's text in place of its
    #include line.  BCC rewrites map operations (kt_traced.lookup(...)) and
    writes classic tracepoints' argument structs in the main file only; in an
    included header a map call stays a call through a function pointer, an
    instruction the verifier refuses.  #line keeps the compiler's messages
    pointing at the files as written."""
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    header = os.path.join(os.path.dirname(path), "kt_bcc.h")
    for i, line in enumerate(lines):
        if line.strip().startswith(KT_BCC_INCLUDE):
            with open(header) as f:
                text = f.read()
            return "".join(lines[:i] + [f'#line 1 "{header}"\n', text, "\n" if not text.endswith("\n") else "",
                                        f'#line {i + 2} "{path}"\n'] + lines[i + 1:])
    return "".join(lines)


def elf_section(path: str, section: str) -> bytes:
    """One section of a little-endian ELF64 file (a BPF object), by name.
    The CO-RE object's .BTF is raw BTF; read without libbpf, which the
    hosts of the BCC backend may not have."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path} is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _n, str_off, str_size = header(shstrndx)
    names = data[str_off:str_off + str_size]
    for i in range(shnum):
        name_off, offset, size = header(i)
        if names[name_off:names.index(b"\0", name_off)].decode() == section:
            return data[offset:offset + size]
    raise KeyError(f"{path} has no {section} section")


def object_btf(name: str) -> Btf:
    """The BTF of the shipped CO-RE object bpf/<name>.bpf.o: the records'
    layouts and the enums' names."""
    return Btf(elf_section(object_path(name), ".BTF"))


# -- BCC itself ---------------------------------------------------------------------


def _bcc() -> Any:
    """The module bcc (backend.bcc_module made it importable)."""
    from .backend import bcc_module

    ok, why = bcc_module()
    if not ok:
        raise EnvironmentProblem(f"the bcc backend cannot run here ({why})")
    import bcc  # type: ignore[import-not-found]

    return bcc


KPROBE_BLACKLIST = "/sys/kernel/debug/kprobes/blacklist"


def kprobe_functions(wanted: Iterable[str], tracefs: Optional[str], kallsyms: str = "/proc/kallsyms",
                     blacklist: str = KPROBE_BLACKLIST) -> set[str]:
    """Which of ``wanted`` a kprobe can hook here: listed in tracefs's
    available_filter_functions (functions not inlined away, not notrace), or
    text symbols of kallsyms where that file cannot be read; never one of
    the kprobe blacklist (readable with debugfs mounted).  BCC's own
    get_kprobe_functions raises when debugfs is not mounted."""
    wanted = set(wanted)
    found: set[str] = set()
    try:
        if tracefs is None:
            raise OSError("no tracefs")
        with open(os.path.join(tracefs, "available_filter_functions")) as f:
            for line in f:
                name = line.split(maxsplit=1)[0] if line.strip() else ""
                if name in wanted:
                    found.add(name)
    except OSError:
        with open(kallsyms) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("t", "T") and parts[2] in wanted:
                    found.add(parts[2])
    try:
        with open(blacklist) as f:
            found -= {parts[1] for parts in (line.split() for line in f) if len(parts) >= 2}
    except OSError:
        pass
    return found


class SystemProbe:
    """HookProbe on this kernel: the kprobe-able functions (kprobe_functions)
    and tracefs's events; raw tracepoints as BCC tells them (kallsyms)."""

    def __init__(self, functions: Iterable[str]) -> None:
        self._wanted = set(functions)
        self._kprobes: Optional[set[str]] = None
        self._raw: Optional[bool] = None
        from .probe import tracefs_root

        self._tracefs = tracefs_root(mount_if_missing=True)

    def _events(self) -> str:
        if self._tracefs is None:
            raise EnvironmentProblem("tracefs is not mounted and cannot be mounted at /sys/kernel/tracing")
        return os.path.join(self._tracefs, "events")

    def kprobe(self, function: str) -> str:
        if self._kprobes is None:
            self._kprobes = kprobe_functions(self._wanted, self._tracefs)
        if function in self._kprobes:
            return ""
        return f"no kprobe-able function {function} here (absent, inlined or notrace)"

    def tracepoint(self, category: str, event: str) -> str:
        if os.path.isdir(os.path.join(self._events(), category, event)):
            return ""
        return f"no tracepoint {category}:{event}"

    def raw_tracepoint(self, event: str) -> str:
        if self._raw is None:
            self._raw = bool(_bcc().BPF.support_raw_tracepoint())
        if not self._raw:
            return "no raw tracepoints (Linux 4.17)"
        if not glob.glob(os.path.join(self._events(), "*", event)):
            return f"no tracepoint {event}"
        return ""

    def format(self, category: str, event: str) -> str:
        with open(os.path.join(self._events(), category, event, "format")) as f:
            return f.read()


@contextmanager
def _stderr_captured() -> Iterator[Callable[[], str]]:
    """libbcc prints clang's diagnostics and the verifier's log on fd 2:
    kept out of the terminal (the run prints one line) and returned, for
    the error and for -v."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        text = ""

        def read() -> str:
            return text

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            if text.strip():
                log.debug("bcc said:\n%s", text.rstrip())


def _first_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line
    # a verifier log: the refusal is the line before its "processed N insns"
    for i, line in enumerate(lines):
        if line.startswith("processed ") and i > 0:
            return lines[i - 1]
    return lines[-1] if lines else "no message"


class BccMap:
    """A BCC table with the bytes interface of libbpf.Map (lookup, update,
    delete, keys, fd), which the tools and the session use."""

    def __init__(self, name: str, table: Any) -> None:
        self.name = name
        self._table = table

    @property
    def fd(self) -> int:
        return int(self._table.get_fd())

    @property
    def max_entries(self) -> int:
        return int(self._table.max_entries)

    def _key(self, key: bytes) -> Any:
        return self._table.Key.from_buffer_copy(key)

    def lookup(self, key: bytes) -> Optional[bytes]:
        try:
            value = self._table[self._key(key)]
        except KeyError:
            return None
        return bytes(value)   # type: ignore[call-overload]

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self._table[self._key(key)] = self._table.Leaf.from_buffer_copy(value)

    def delete(self, key: bytes) -> bool:
        try:
            del self._table[self._key(key)]
        except KeyError:
            return False
        return True

    def keys(self) -> Iterator[bytes]:
        for key in list(self._table.keys()):
            yield bytes(key)   # type: ignore[call-overload]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) as bytes: a snapshot of the keys, then each value."""
        for key, value in list(self._table.items()):
            yield bytes(key), bytes(value)   # type: ignore[call-overload]

    @property
    def value_size(self) -> int:
        return ctypes.sizeof(self._table.Leaf)


class BccObject:
    """The compiled program's maps by name (libbpf.Object's map())."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self._maps: dict[str, BccMap] = {}

    @property
    def loaded(self) -> bool:
        return self.bpf is not None

    def map(self, name: str) -> BccMap:
        if name not in self._maps:
            if self.bpf is None:
                raise KeyError(f"{name}: the BCC program is not compiled")
            try:
                table = self.bpf.get_table(name)
            except KeyError:
                raise KeyError(f"the BCC program has no map {name}") from None
            self._maps[name] = BccMap(name, table)
        return self._maps[name]


class BccTracer(FilterMaps):
    """One BCC program from compile to detach, with BpfTracer's interface.
    ``program``: bpf/<program>.bcc.c; ``object_name``: the CO-RE object
    whose BTF describes its records (and the tracer's name)."""

    def __init__(
        self,
        program: str,
        object_name: str,
        hooks: Sequence[BccHook] = (),
        rings: Mapping[str, str] = {},
        options: Mapping[str, Any] = {},
        ring_bytes: Optional[int] = None,
        follow_children: bool = False,
        targeted: bool = True,
        probe: Optional[HookProbe] = None,
    ) -> None:
        self.name = object_name
        self.program = program
        self.source = program_path(program)
        self.btf = object_btf(object_name)
        self.ring_structs = dict(rings)
        for struct_name in self.ring_structs.values():
            self.btf.dtype(struct_name)   # a record the object does not describe: fail now
        self.options = dict(options)
        self.ring_bytes = ring_bytes
        self.follows_children = follow_children
        self.targeted = targeted
        self.transport = "perf buffer"   # BCC programs write BPF_PERF_OUTPUT maps (probe.PERF_BUFFER)
        self.links: list[Any] = []     # BCC keeps the attachments; detach() ends them
        self.readers: dict[str, Any] = {}
        self._attached: list[tuple[str, str, str]] = []
        all_hooks = list(hooks) + ([FOLLOW_FORK] if follow_children else [])
        self.probe: HookProbe = probe or SystemProbe(
            t for h in all_hooks for k, t, _f in h.alternatives if k in ("kprobe", "kretprobe"))
        self._all_hooks = all_hooks
        self.choices = choose_hooks(object_name, hooks, self.probe)
        self._required_names = {h.description for h in hooks if h.required}
        self._extra = choose_hooks(object_name, [FOLLOW_FORK], self.probe) if follow_children else []
        self.obj = BccObject(None)
        self.cflags = bcc_cflags(os.path.dirname(self.source), self.options, self._functions(),
                                 self._tracepoint_fields())

    def _chosen(self) -> list[HookChoice]:
        return [c for c in self.choices + self._extra if c.program]

    @functools.cached_property
    def _fallbacks(self) -> dict[str, list[tuple[str, str, str]]]:
        """Per hook, the alternatives after the chosen one that exist here
        too: compiled as well, and tried in order when the chosen one does
        not load or attach (the verifier of this kernel may refuse it)."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        hooks = {h.description: h for h in self._all_hooks}
        for c in self._chosen():
            alternatives = list(hooks[c.hook].alternatives)
            index = next(i for i, (_k, _t, fn) in enumerate(alternatives) if fn == c.program)
            out[c.hook] = [a for a in alternatives[index + 1:] if not _verdict(self.probe, a[0], a[1])]
        return out

    def _functions(self) -> list[str]:
        fns = [c.program for c in self._chosen() if c.program]
        return fns + [fn for later in self._fallbacks.values() for _k, _t, fn in later]

    def _tracepoint_fields(self) -> dict[str, list[str]]:
        fields: dict[str, list[str]] = {}
        reader = getattr(self.probe, "format", None)
        if reader is None:
            return fields
        planned = [(c.kind, c.target) for c in self._chosen()]
        planned += [(k, t) for later in self._fallbacks.values() for k, t, _fn in later]
        for kind, target in planned:
            if kind == "tracepoint":
                category, event = target.split("/")
                try:
                    fields[event] = tracepoint_fields(reader(category, event))
                except OSError:
                    fields[event] = []
        return fields

    # -- load and attach ---------------------------------------------------------

    def load(self) -> None:
        """Compile against the kernel headers (BCC creates the maps here; the
        programs load at attach), then open the perf buffers."""
        bcc = _bcc()
        with _stderr_captured() as said:
            try:
                bpf = bcc.BPF(text=bcc_source(self.source).encode(), cflags=self.cflags)
            except Exception as exc:
                error: Optional[str] = str(exc)
            else:
                error = None
        if error is not None:
            raise EnvironmentProblem(f"the bcc backend could not compile {os.path.basename(self.source)} against "
                                     f"this kernel's headers: {_first_error(said())} (-v shows BCC's output)")
        self.obj = BccObject(bpf)
        from .perfring import PerfRings

        pages = pages_per_cpu(self.ring_bytes, os.cpu_count() or 1)
        for ring, struct_name in self.ring_structs.items():
            table = self.obj.map(ring)._table
            self.readers[ring] = PerfRings(functools.partial(_set_slot, table),
                                           functools.partial(self.btf.dtype, struct_name), ring, pages)

    def attach(self) -> None:
        bpf = self.obj.bpf
        for choice in self._chosen():
            assert choice.program is not None
            tries = [(choice.kind, choice.target, choice.program)] + self._fallbacks.get(choice.hook, [])
            for kind, target, fn_name in tries:
                with _stderr_captured() as said:
                    try:
                        _attach(bpf, kind, target, fn_name)
                    except Exception as exc:
                        error: Optional[str] = str(exc)
                    else:
                        error = None
                if error is None:
                    self._attached.append((kind, target, fn_name))
                    choice.program, choice.kind, choice.target = fn_name, kind, target
                    break
                choice.rejected.append((fn_name, _first_error(said()) if said().strip() else error))
            else:
                why = "; ".join(f"{p}: {r}" for p, r in choice.rejected)
                if choice in self._extra or choice.hook in self._required_names:
                    self.detach()
                    raise EnvironmentProblem(f"the bcc backend cannot hook {choice.hook} on this kernel ({why})")
                # an optional hook that loads nowhere here: dropped, and said
                choice.program, choice.kind, choice.target = None, "none", ""
            log.info("%s (bcc): %s", self.name, choice.describe())

    # -- while running ---------------------------------------------------------

    def read_global(self, name: str) -> int:
        """A counter the CO-RE object keeps in .bss: here a one-slot array
        of the same name (kt_bcc.h KT_COUNTER)."""
        try:
            m = self.obj.map(name)
        except KeyError:
            raise KeyError(f"{self.name} has no global {name}") from None
        data = m.lookup(b"\0\0\0\0")
        if data is None or len(data) != 8:
            raise KeyError(f"{self.name}: {name} is no counter")
        return int(struct.unpack("<Q", data)[0])

    @property
    def lost_events(self) -> int:
        """Records made and not delivered: counted by the program when
        perf_submit fails (kt_count_lost), not again by the LOST note the
        kernel writes later for the same records (perf_lost_notes), as the
        CO-RE tracer does; and samples too short for their record."""
        kernel = self.read_global("kt_lost") if self.obj.loaded else 0
        return kernel + sum(r.short for r in self.readers.values())

    @property
    def perf_lost_notes(self) -> int:
        """What the perf rings' LOST notes counted (a part of lost_events)."""
        return sum(r.lost for r in self.readers.values())

    def poll_fds(self) -> list[int]:
        return [fd for r in self.readers.values() for fd in r.fds]

    def drain(self) -> dict[str, "np.ndarray[Any, Any]"]:
        return {name: reader.drain() for name, reader in self.readers.items()}

    def detach(self) -> None:
        bpf = self.obj.bpf
        attached, self._attached = self._attached, []
        for kind, target, fn_name in reversed(attached):
            try:
                _detach(bpf, kind, target, fn_name)
            except Exception as exc:   # already gone (a module unloaded): nothing left to detach
                log.debug("%s: detach %s %s: %s", self.name, kind, target, exc)

    def close(self) -> None:
        self.detach()
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()
        bpf, self.obj = self.obj.bpf, BccObject(None)
        if bpf is not None:
            bpf.cleanup()

    def __enter__(self) -> "BccTracer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set_slot(table: Any, cpu: int, fd: int) -> None:
    """A perf event's fd into the BPF_PERF_OUTPUT map's slot of its CPU."""
    table[table.Key(cpu)] = table.Leaf(fd)


def _attach(bpf: Any, kind: str, target: str, fn_name: str) -> None:
    fn = fn_name.encode()
    if kind == "kprobe":
        bpf.attach_kprobe(event=target.encode(), fn_name=fn)
    elif kind == "kretprobe":
        bpf.attach_kretprobe(event=target.encode(), fn_name=fn)
    elif kind == "tracepoint":
        bpf.attach_tracepoint(tp=target.replace("/", ":").encode(), fn_name=fn)
    else:
        bpf.attach_raw_tracepoint(tp=target.encode(), fn_name=fn)


def _detach(bpf: Any, kind: str, target: str, fn_name: str) -> None:
    fn = fn_name.encode()
    if kind == "kprobe":
        bpf.detach_kprobe(event=target.encode(), fn_name=fn)
    elif kind == "kretprobe":
        bpf.detach_kretprobe(event=target.encode(), fn_name=fn)
    elif kind == "tracepoint":
        bpf.detach_tracepoint(tp=target.replace("/", ":").encode())
    else:
        bpf.detach_raw_tracepoint(tp=target.encode())
