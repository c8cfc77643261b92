"""A small ctypes binding to the system's libbpf (``libbpf.so.1``).

Every function carries argtypes and restype.  Pointer-returning calls are
checked for NULL and integer calls for negative values; both raise
:class:`LibbpfError` with the errno.  A failed object load raises
:class:`BpfLoadError`, which carries the verifier log that libbpf printed.
libbpf's own messages go to the ``kerntrace.libbpf`` logger.

Objects, programs and links are wrapped in context managers so that nothing
stays attached once the ``with`` block ends.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from typing import Any, Iterator, Optional

__all__ = [
    "BpfLoadError",
    "BtfFile",
    "Link",
    "LibbpfError",
    "LibbpfMissing",
    "Map",
    "Object",
    "Program",
    "lib",
    "libbpf_version",
    "num_possible_cpus",
]

log = logging.getLogger("kerntrace.libbpf")


class LibbpfMissing(RuntimeError):
    """libbpf.so.1 cannot be loaded."""


class LibbpfError(OSError):
    """A libbpf call failed; ``errno`` holds the positive error number."""

    def __init__(self, err: int, what: str) -> None:
        err = abs(err)
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what


class BpfLoadError(LibbpfError):
    """Loading an object failed; ``verifier_log`` holds what libbpf printed."""

    def __init__(self, err: int, what: str, verifier_log: str) -> None:
        super().__init__(err, what)
        self.verifier_log = verifier_log

    def __str__(self) -> str:
        base = super().__str__()
        if self.verifier_log:
            return f"{base}\n{self.verifier_log}"
        return base


# Opaque handles.
class _BpfObject(ctypes.Structure):
    pass


class _BpfProgram(ctypes.Structure):
    pass


class _BpfMap(ctypes.Structure):
    pass


class _BpfLink(ctypes.Structure):
    pass


class _Btf(ctypes.Structure):
    pass


class _BpfObjectOpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts as libbpf 1.1 declares it (libbpf.h); sz
    comes first, so an older libbpf (>= 0.6 has btf_custom_path) accepts it
    as long as the fields it does not know stay zero."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_attach_prog_fd", ctypes.c_uint32),  # __u32 :32, the removed attach_prog_fd
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


_obj_p = ctypes.POINTER(_BpfObject)
_prog_p = ctypes.POINTER(_BpfProgram)
_map_p = ctypes.POINTER(_BpfMap)
_link_p = ctypes.POINTER(_BpfLink)
_btf_p = ctypes.POINTER(_Btf)

# enum libbpf_print_level
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

# (restype, argtypes) of every function we call.
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_major_version": (ctypes.c_uint32, []),
    "libbpf_minor_version": (ctypes.c_uint32, []),
    "libbpf_set_print": (ctypes.c_void_p, [_PRINT_FN]),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    # (enum bpf_map_type, const void *opts: NULL): 1 supported, 0 not, <0 -errno
    "libbpf_probe_bpf_map_type": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "bpf_object__open_file": (_obj_p, [ctypes.c_char_p, ctypes.POINTER(_BpfObjectOpenOpts)]),
    "bpf_object__load": (ctypes.c_int, [_obj_p]),
    "bpf_object__close": (None, [_obj_p]),
    "bpf_object__btf": (_btf_p, [_obj_p]),
    "bpf_object__next_program": (_prog_p, [_obj_p, _prog_p]),
    "bpf_object__next_map": (_map_p, [_obj_p, _map_p]),
    "bpf_object__find_program_by_name": (_prog_p, [_obj_p, ctypes.c_char_p]),
    "bpf_object__find_map_by_name": (_map_p, [_obj_p, ctypes.c_char_p]),
    "bpf_program__name": (ctypes.c_char_p, [_prog_p]),
    "bpf_program__section_name": (ctypes.c_char_p, [_prog_p]),
    "bpf_program__autoload": (ctypes.c_bool, [_prog_p]),
    "bpf_program__set_autoload": (ctypes.c_int, [_prog_p, ctypes.c_bool]),
    "bpf_program__set_attach_target": (ctypes.c_int, [_prog_p, ctypes.c_int, ctypes.c_char_p]),
    "bpf_program__fd": (ctypes.c_int, [_prog_p]),
    "bpf_program__attach": (_link_p, [_prog_p]),
    "bpf_program__attach_tracepoint": (_link_p, [_prog_p, ctypes.c_char_p, ctypes.c_char_p]),
    "bpf_program__attach_raw_tracepoint": (_link_p, [_prog_p, ctypes.c_char_p]),
    "bpf_program__attach_kprobe": (_link_p, [_prog_p, ctypes.c_bool, ctypes.c_char_p]),
    "bpf_link__destroy": (ctypes.c_int, [_link_p]),
    "bpf_link__fd": (ctypes.c_int, [_link_p]),
    "bpf_map__name": (ctypes.c_char_p, [_map_p]),
    "bpf_map__fd": (ctypes.c_int, [_map_p]),
    "bpf_map__type": (ctypes.c_int, [_map_p]),
    "bpf_map__set_type": (ctypes.c_int, [_map_p, ctypes.c_int]),
    "bpf_map__set_key_size": (ctypes.c_int, [_map_p, ctypes.c_uint32]),
    "bpf_map__set_value_size": (ctypes.c_int, [_map_p, ctypes.c_uint32]),
    "bpf_map__max_entries": (ctypes.c_uint32, [_map_p]),
    "bpf_map__set_max_entries": (ctypes.c_int, [_map_p, ctypes.c_uint32]),
    "bpf_map__key_size": (ctypes.c_uint32, [_map_p]),
    "bpf_map__value_size": (ctypes.c_uint32, [_map_p]),
    "bpf_map__initial_value": (ctypes.c_void_p, [_map_p, ctypes.POINTER(ctypes.c_size_t)]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]),
    "btf__parse_elf": (_btf_p, [ctypes.c_char_p, ctypes.c_void_p]),
    # raw BTF or an ELF file's .BTF; the second argument (struct btf_ext **) may be NULL
    "btf__parse": (_btf_p, [ctypes.c_char_p, ctypes.c_void_p]),
    "btf__raw_data": (ctypes.c_void_p, [_btf_p, ctypes.POINTER(ctypes.c_uint32)]),
    "btf__free": (None, [_btf_p]),
    "btf__load_vmlinux_btf": (_btf_p, []),
    "btf__find_by_name_kind": (ctypes.c_int32, [_btf_p, ctypes.c_char_p, ctypes.c_uint32]),
    # const struct btf_type *: read as three u32 (name_off, info, size/type)
    "btf__type_by_id": (ctypes.POINTER(ctypes.c_uint32 * 3), [_btf_p, ctypes.c_uint32]),
    "bpf_prog_load": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p],
    ),
    "bpf_raw_tracepoint_open": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_int]),
    "bpf_map_create": (
        ctypes.c_int,
        [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p],
    ),
}

_lib: Optional[ctypes.CDLL] = None
_lib_lock = threading.Lock()
# The print callback must outlive every libbpf call: keep it at module level.
_print_thunk: Optional[Any] = None
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.restype = ctypes.c_int
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

# Messages libbpf printed during the current load, per thread, so that a
# failed load can carry its verifier log.
_capture = threading.local()


# A verifier log comes as one message of up to megabytes, and the va_list
# can be formatted only once: one buffer per thread, large enough for it.
_PRINT_BUF_SIZE = 4 << 20
_print_buf = threading.local()


def _on_libbpf_print(level: int, fmt: bytes, args: int) -> int:
    try:
        buf = getattr(_print_buf, "buf", None)
        if buf is None:
            buf = _print_buf.buf = ctypes.create_string_buffer(_PRINT_BUF_SIZE)
        n = _libc.vsnprintf(buf, _PRINT_BUF_SIZE, fmt, args)
        text = ctypes.string_at(buf, max(0, min(n, _PRINT_BUF_SIZE - 1))).decode("utf-8", "replace").rstrip("\n")
        if n >= _PRINT_BUF_SIZE:
            text += f"\n[message cut at {_PRINT_BUF_SIZE} of {n} bytes]"
        sink = getattr(_capture, "lines", None)
        if sink is not None:
            sink.append(text)
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)
    except Exception:  # a callback must never raise into C
        pass
    return 0


def lib() -> ctypes.CDLL:
    """The loaded libbpf, with every signature declared.  Raises LibbpfMissing."""
    global _lib, _print_thunk
    with _lib_lock:
        if _lib is not None:
            return _lib
        name = os.environ.get("KERNTRACE_LIBBPF") or "libbpf.so.1"
        try:
            handle = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            found = ctypes.util.find_library("bpf")
            if found is None or found == name:
                raise LibbpfMissing(
                    f"cannot load {name} ({exc}); install it with: apt-get install libbpf1"
                ) from None
            handle = ctypes.CDLL(found, use_errno=True)
        for func_name, (restype, argtypes) in _SIGNATURES.items():
            try:
                func = getattr(handle, func_name)
            except AttributeError:
                raise LibbpfMissing(
                    f"{name} lacks {func_name}; kerntrace needs libbpf 1.0 or newer"
                ) from None
            func.restype = restype
            func.argtypes = argtypes
        _print_thunk = _PRINT_FN(_on_libbpf_print)
        handle.libbpf_set_print(_print_thunk)
        _lib = handle
        return handle


def num_possible_cpus() -> int:
    """CPUs the kernel may ever bring up (per-CPU maps have a value each)."""
    return _check_int(int(lib().libbpf_num_possible_cpus()), "count possible CPUs")


def libbpf_version() -> str:
    handle = lib()
    return f"{handle.libbpf_major_version()}.{handle.libbpf_minor_version()}"


def _errno_or(default: int = errno.EINVAL) -> int:
    return ctypes.get_errno() or default


def _check_ptr(ptr: Any, what: str) -> Any:
    if not ptr:
        raise LibbpfError(_errno_or(), what)
    return ptr


def _check_int(ret: int, what: str) -> int:
    if ret < 0:
        raise LibbpfError(-ret, what)
    return ret


class Link:
    """An attached program; destroying it detaches."""

    _ptr: Any = None

    def __init__(self, ptr: Any, description: str) -> None:
        self._ptr = ptr
        self.description = description

    @property
    def fd(self) -> int:
        return int(lib().bpf_link__fd(self._ptr))

    def destroy(self) -> None:
        if self._ptr:
            lib().bpf_link__destroy(self._ptr)
            self._ptr = None

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def __del__(self) -> None:
        self.destroy()


class Program:
    def __init__(self, obj: "Object", ptr: Any) -> None:
        self._obj = obj  # keeps the object alive as long as the program
        self._raw = ptr

    @property
    def _ptr(self) -> Any:
        # libbpf frees a program or map with its object: a stale pointer is
        # a crash, a closed object an error
        self._obj._require_open()
        return self._raw

    @property
    def name(self) -> str:
        return lib().bpf_program__name(self._ptr).decode()

    @property
    def section(self) -> str:
        return lib().bpf_program__section_name(self._ptr).decode()

    @property
    def autoload(self) -> bool:
        return bool(lib().bpf_program__autoload(self._ptr))

    @autoload.setter
    def autoload(self, value: bool) -> None:
        _check_int(lib().bpf_program__set_autoload(self._ptr, value), f"set autoload of {self.name}")

    @property
    def fd(self) -> int:
        return int(lib().bpf_program__fd(self._ptr))

    def set_attach_target(self, function: str) -> None:
        ret = lib().bpf_program__set_attach_target(self._ptr, 0, function.encode())
        _check_int(ret, f"set attach target {function} of {self.name}")

    def _link(self, ptr: Any, description: str) -> Link:
        _check_ptr(ptr, f"attach {self.name} ({description})")
        return Link(ptr, description)

    def attach(self) -> Link:
        ctypes.set_errno(0)
        return self._link(lib().bpf_program__attach(self._ptr), self.section)

    def attach_tracepoint(self, category: str, name: str) -> Link:
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_tracepoint(self._ptr, category.encode(), name.encode())
        return self._link(ptr, f"tracepoint {category}:{name}")

    def attach_raw_tracepoint(self, name: str) -> Link:
        ctypes.set_errno(0)
        return self._link(lib().bpf_program__attach_raw_tracepoint(self._ptr, name.encode()), f"raw_tp {name}")

    def attach_kprobe(self, function: str, retprobe: bool = False) -> Link:
        ctypes.set_errno(0)
        ptr = lib().bpf_program__attach_kprobe(self._ptr, retprobe, function.encode())
        return self._link(ptr, f"{'kretprobe' if retprobe else 'kprobe'} {function}")


class Map:
    def __init__(self, obj: "Object", ptr: Any) -> None:
        self._obj = obj
        self._raw = ptr

    @property
    def _ptr(self) -> Any:
        # libbpf frees a program or map with its object: a stale pointer is
        # a crash, a closed object an error
        self._obj._require_open()
        return self._raw

    @property
    def name(self) -> str:
        return lib().bpf_map__name(self._ptr).decode()

    @property
    def fd(self) -> int:
        fd = int(lib().bpf_map__fd(self._ptr))
        if fd < 0:
            raise LibbpfError(-fd, f"map {self.name} has no fd (object not loaded?)")
        return fd

    @property
    def type(self) -> int:
        return int(lib().bpf_map__type(self._ptr))

    @type.setter
    def type(self, value: int) -> None:
        _check_int(lib().bpf_map__set_type(self._ptr, value), f"set type of map {self.name}")

    @property
    def max_entries(self) -> int:
        return int(lib().bpf_map__max_entries(self._ptr))

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        _check_int(lib().bpf_map__set_max_entries(self._ptr, value), f"resize map {self.name}")

    @property
    def key_size(self) -> int:
        return int(lib().bpf_map__key_size(self._ptr))

    @key_size.setter
    def key_size(self, value: int) -> None:
        _check_int(lib().bpf_map__set_key_size(self._ptr, value), f"set key size of map {self.name}")

    @property
    def value_size(self) -> int:
        return int(lib().bpf_map__value_size(self._ptr))

    @value_size.setter
    def value_size(self, value: int) -> None:
        _check_int(lib().bpf_map__set_value_size(self._ptr, value), f"set value size of map {self.name}")

    def data(self) -> tuple[int, int]:
        """(address, size) of a global-data map's contents: writable before
        load; after load, the live memory-mapped map."""
        size = ctypes.c_size_t(0)
        addr = lib().bpf_map__initial_value(self._ptr, ctypes.byref(size))
        if not addr:
            raise LibbpfError(errno.EINVAL, f"map {self.name} has no initial value")
        return int(addr), int(size.value)

    def lookup(self, key: bytes) -> Optional[bytes]:
        value = ctypes.create_string_buffer(self._value_buffer_size())
        ret = lib().bpf_map_lookup_elem(self.fd, key, value)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return None
            raise LibbpfError(err, f"lookup in map {self.name}")
        return value.raw

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        ret = lib().bpf_map_update_elem(self.fd, key, value, flags)
        if ret < 0:
            raise LibbpfError(ctypes.get_errno(), f"update map {self.name}")

    def delete(self, key: bytes) -> bool:
        ret = lib().bpf_map_delete_elem(self.fd, key)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.ENOENT:
                return False
            raise LibbpfError(err, f"delete from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        key = ctypes.create_string_buffer(self.key_size)
        nxt = ctypes.create_string_buffer(self.key_size)
        prev: Optional[Any] = None
        while True:
            ret = lib().bpf_map_get_next_key(self.fd, prev, nxt)
            if ret < 0:
                err = ctypes.get_errno()
                if err == errno.ENOENT:
                    return
                raise LibbpfError(err, f"iterate map {self.name}")
            yield nxt.raw
            ctypes.memmove(key, nxt, self.key_size)
            prev = key

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    # Per-CPU maps return one value per possible CPU, each padded to 8 bytes.
    _PERCPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

    def _value_buffer_size(self) -> int:
        if self.type in self._PERCPU_TYPES:
            return ((self.value_size + 7) & ~7) * num_possible_cpus()
        return self.value_size


class Object:
    """A BPF object file: open, set options, choose programs, load.

    ``btf_custom_path``: a BTF file (--btf) that replaces the kernel's own
    BTF for the CO-RE relocations, on a kernel built without it.  libbpf
    copies the path at open and reads the file at load."""

    _ptr: Any = None

    def __init__(self, path: str, btf_custom_path: Optional[str] = None) -> None:
        self.path = path
        self.btf_custom_path = btf_custom_path
        opts = None
        if btf_custom_path is not None:
            opts = _BpfObjectOpenOpts(sz=ctypes.sizeof(_BpfObjectOpenOpts),
                                      btf_custom_path=btf_custom_path.encode())
        ctypes.set_errno(0)
        ptr = lib().bpf_object__open_file(path.encode(), ctypes.byref(opts) if opts is not None else None)
        if not ptr:
            err = _errno_or(errno.ENOENT)
            raise LibbpfError(err, f"open BPF object {path}")
        self._ptr: Any = ptr
        self.loaded = False

    def _require_open(self) -> Any:
        if not self._ptr:
            raise LibbpfError(errno.EBADF, f"BPF object {self.path} is closed")
        return self._ptr

    def programs(self) -> list[Program]:
        out: list[Program] = []
        ptr = lib().bpf_object__next_program(self._require_open(), None)
        while ptr:
            out.append(Program(self, ptr))
            ptr = lib().bpf_object__next_program(self._ptr, ptr)
        return out

    def maps(self) -> list[Map]:
        out: list[Map] = []
        ptr = lib().bpf_object__next_map(self._require_open(), None)
        while ptr:
            out.append(Map(self, ptr))
            ptr = lib().bpf_object__next_map(self._ptr, ptr)
        return out

    def program(self, name: str) -> Program:
        ptr = lib().bpf_object__find_program_by_name(self._require_open(), name.encode())
        if not ptr:
            raise LibbpfError(errno.ENOENT, f"no program {name} in {self.path}")
        return Program(self, ptr)

    def map(self, name: str) -> Map:
        ptr = lib().bpf_object__find_map_by_name(self._require_open(), name.encode())
        if not ptr:
            raise LibbpfError(errno.ENOENT, f"no map {name} in {self.path}")
        return Map(self, ptr)

    def btf_raw(self) -> bytes:
        """The object's own BTF (event structs, globals), as raw bytes."""
        btf = lib().bpf_object__btf(self._require_open())
        if not btf:
            raise LibbpfError(errno.ENODATA, f"{self.path} has no BTF; build it with clang -g")
        size = ctypes.c_uint32(0)
        addr = lib().btf__raw_data(btf, ctypes.byref(size))
        if not addr:
            raise LibbpfError(_errno_or(), f"read BTF of {self.path}")
        return ctypes.string_at(addr, size.value)

    def load(self) -> None:
        _capture.lines = []
        try:
            ctypes.set_errno(0)
            ret = lib().bpf_object__load(self._require_open())
            lines = _capture.lines
        finally:
            _capture.lines = None
        if ret < 0:
            raise BpfLoadError(-ret, f"load BPF object {os.path.basename(self.path)}", _verifier_log(lines))
        self.loaded = True

    def close(self) -> None:
        if self._ptr:
            lib().bpf_object__close(self._ptr)
            self._ptr = None

    def __enter__(self) -> "Object":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _verifier_log(lines: list[str]) -> str:
    """The program load log if libbpf printed one, else everything it said."""
    text = "\n".join(lines)
    begin = text.find("-- BEGIN PROG LOAD LOG --")
    end = text.find("-- END PROG LOAD LOG --")
    if begin >= 0 and end > begin:
        return text[begin : end + len("-- END PROG LOAD LOG --")]
    return text


def btf_of_elf(path: str) -> bytes:
    """Raw BTF of an ELF object file, without opening it as a BPF object."""
    ctypes.set_errno(0)
    btf = lib().btf__parse_elf(path.encode(), None)
    if not btf:
        raise LibbpfError(_errno_or(errno.ENODATA), f"parse BTF of {path}")
    try:
        size = ctypes.c_uint32(0)
        addr = lib().btf__raw_data(btf, ctypes.byref(size))
        return ctypes.string_at(addr, size.value)
    finally:
        lib().btf__free(btf)


class BtfFile:
    """A BTF file parsed by libbpf: raw BTF (as /sys/kernel/btf/vmlinux) or
    an ELF file's .BTF section (BTFHub's files).  Raises LibbpfError."""

    _ptr: Any = None

    def __init__(self, path: str) -> None:
        self.path = path
        ctypes.set_errno(0)
        ptr = lib().btf__parse(path.encode(), None)
        if not ptr:
            raise LibbpfError(_errno_or(errno.EINVAL), f"parse BTF {path}")
        self._ptr = ptr

    @property
    def ptr(self) -> Any:
        """The struct btf * (for the btf__ calls of probe.py)."""
        if not self._ptr:
            raise LibbpfError(errno.EBADF, f"BTF {self.path} is closed")
        return self._ptr

    def find(self, name: str, kind: int) -> int:
        """The id of the type ``name`` of BTF kind ``kind``; negative if none."""
        return int(lib().btf__find_by_name_kind(self.ptr, name.encode(), kind))

    def close(self) -> None:
        if self._ptr:
            lib().btf__free(self._ptr)
            self._ptr = None

    def __enter__(self) -> "BtfFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
