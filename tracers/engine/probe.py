"""What the running kernel allows, found by trying, never from its version.

Each probe loads a two-instruction program of the kind in question and
attaches it to a real target, then detaches.  Results are cached per process:
a kind refused as a whole (fentry on a kernel whose lockdown or LSM refuses
tracing programs, kprobes on a kernel without CONFIG_KPROBES) is not tried
again for every hook.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from dataclasses import dataclass
from typing import Any, Optional

from .libbpf import BtfFile, lib

__all__ = [
    "Verdict",
    "can_attach",
    "capabilities",
    "ensure_tracefs",
    "lockdown_mode",
    "kernel_facts",
    "probe_kind",
    "probe_ringbuf",
    "transport",
    "set_kernel_btf",
    "tracefs_root",
]

# enum bpf_prog_type / bpf_attach_type values from the kernel UAPI.
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BTF_KIND_PTR = 2
BTF_KIND_TYPEDEF = 8
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
KERNEL_BTF_PATH = "/sys/kernel/btf/vmlinux"
BPF_MAP_TYPE_RINGBUF = 27
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
SYS_perf_event_open = 298  # x86_64

# r0 = 0; exit
_TRIVIAL_INSNS = bytes.fromhex("b700000000000000" "9500000000000000")

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class _ProgLoadOpts(ctypes.Structure):
    # The stable prefix of libbpf's struct bpf_prog_load_opts; libbpf takes
    # any prefix because the struct starts with its own size.
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_int),
    ]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, in words a user can act on
    kind_refused: bool = False  # the whole kind is unavailable, not just this target

    def __bool__(self) -> bool:
        return self.ok


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int

_cache: dict[tuple[str, str], Verdict] = {}
_kind_refused: dict[str, Verdict] = {}
_kind_works: dict[str, bool] = {}
# The kernel's own BTF (attach ids of fentry and tp_btf programs), and
# --btf FILE where given: what the kernel has (functions, tracepoints and
# their arguments) is then read from FILE, as libbpf's CO-RE reads it.
_kernel_btf: Optional[Any] = None
_btf_file: Optional[BtfFile] = None
_facts: Optional[dict[str, Any]] = None
_ringbuf: Optional[Verdict] = None


def _mount(source: str, target: str, fstype: str) -> int:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        return ctypes.get_errno()
    return 0


def tracefs_root(mount_if_missing: bool = False) -> Optional[str]:
    """Where tracefs is, mounting it at /sys/kernel/tracing when asked."""
    for root in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(root, "events")):
            return root
    if mount_if_missing and os.path.isdir(TRACEFS_CANDIDATES[0]):
        if _mount("nodev", TRACEFS_CANDIDATES[0], "tracefs") == 0:
            return TRACEFS_CANDIDATES[0]
    return None


def ensure_tracefs() -> str:
    root = tracefs_root(mount_if_missing=True)
    if root is None:
        raise OSError(errno.ENOENT, "tracefs is not mounted and cannot be mounted at /sys/kernel/tracing")
    return root


def lockdown_mode() -> str:
    """The active lockdown mode ('none', 'integrity', 'confidentiality'), or
    'unknown' when securityfs cannot be read."""
    path = "/sys/kernel/security/lockdown"
    if not os.path.exists(path) and os.path.isdir("/sys/kernel/security"):
        _mount("securityfs", "/sys/kernel/security", "securityfs")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return "unknown"
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return "unknown"


_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def capabilities() -> dict[str, bool]:
    eff = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
    return {name: bool(eff >> bit & 1) for name, bit in _CAPS.items()}


def set_kernel_btf(path: Optional[str]) -> None:
    """Read the kernel's types from the BTF file ``path`` (--btf) instead of
    its own BTF; None: its own again.  Every verdict and fact is forgotten:
    they were read from the other BTF.  Raises LibbpfError for a file
    libbpf cannot parse."""
    global _btf_file, _facts
    current = _btf_file.path if _btf_file is not None else None
    if path == current:
        return
    btf = BtfFile(path) if path is not None else None
    if _btf_file is not None:
        _btf_file.close()
    _btf_file = btf
    _facts = None
    reset_cache()


def kernel_btf_file() -> Optional[str]:
    """The --btf FILE the probes read, None for the kernel's own BTF."""
    return _btf_file.path if _btf_file is not None else None


def _kernel() -> Any:
    """The running kernel's own BTF: the ids a program's attach_btf_id names."""
    global _kernel_btf
    if _kernel_btf is None:
        ctypes.set_errno(0)
        btf = lib().btf__load_vmlinux_btf()
        if not btf:
            raise OSError(ctypes.get_errno() or errno.ENOENT, f"kernel BTF ({KERNEL_BTF_PATH}) not readable")
        _kernel_btf = btf
    return _kernel_btf


def _vmlinux() -> Any:
    """What describes the kernel's types: --btf FILE, else its own BTF."""
    return _btf_file.ptr if _btf_file is not None else _kernel()


def _btf_id(name: str, kind: int) -> int:
    """The id of a type in what describes the kernel (FILE or its own BTF)."""
    return int(lib().btf__find_by_name_kind(_vmlinux(), name.encode(), kind))


def _attach_id(name: str, kind: int) -> int:
    """The id the kernel knows a type by: FILE's ids may differ (another
    build), and fentry/tp_btf programs need the kernel's own BTF anyway."""
    return int(lib().btf__find_by_name_kind(_kernel(), name.encode(), kind))


def _needs_kernel_btf(kind: str) -> Optional[Verdict]:
    """fentry/fexit and tp_btf attach by an id in the kernel's own BTF: a
    --btf FILE cannot stand in for it (libbpf uses FILE for CO-RE only)."""
    if _btf_file is not None and not os.path.exists(KERNEL_BTF_PATH):
        return Verdict(False, f"{kind} needs the kernel's own BTF ({KERNEL_BTF_PATH}); --btf serves CO-RE only",
                       kind_refused=True)
    return None


def _load(prog_type: int, attach_type: int = 0, btf_id: int = 0) -> int:
    opts = _ProgLoadOpts(sz=ctypes.sizeof(_ProgLoadOpts), expected_attach_type=attach_type, attach_btf_id=btf_id)
    insns = ctypes.create_string_buffer(_TRIVIAL_INSNS, len(_TRIVIAL_INSNS))
    ctypes.set_errno(0)
    fd = lib().bpf_prog_load(prog_type, b"kt_probe", b"GPL", insns, 2, ctypes.byref(opts))
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    return int(fd)


def _perf_event_open(pmu_type: int, config: int, config1: int = 0) -> int:
    attr = ctypes.create_string_buffer(72)
    ctypes.memmove(attr, (ctypes.c_uint32 * 2)(pmu_type, 72), 8)
    ctypes.c_uint64.from_buffer(attr, 8).value = config
    ctypes.c_uint64.from_buffer(attr, 16).value = 1  # sample_period
    ctypes.c_uint32.from_buffer(attr, 48).value = 1  # wakeup_events
    ctypes.c_uint64.from_buffer(attr, 56).value = config1
    ctypes.set_errno(0)
    fd = _libc.syscall(SYS_perf_event_open, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def _attach_perf(prog_fd: int, pmu_type: int, config: int, config1: int = 0) -> None:
    pfd = _perf_event_open(pmu_type, config, config1)
    try:
        fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    finally:
        os.close(pfd)


def _raw_tp_open(name: Optional[str], prog_fd: int) -> None:
    ctypes.set_errno(0)
    fd = lib().bpf_raw_tracepoint_open(name.encode() if name else None, prog_fd)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd))
    os.close(fd)


def _kprobe_pmu_type() -> Optional[int]:
    try:
        with open("/sys/bus/event_source/devices/kprobe/type") as f:
            return int(f.read())
    except OSError:
        return None


def _try(kind: str, target: str, attach: bool) -> Verdict:
    prog_fd = -1
    try:
        if kind in ("fentry", "fexit", "tp_btf"):
            refused = _needs_kernel_btf(kind)
            if refused is not None:
                return refused
        if kind in ("fentry", "fexit"):
            btf_id = _attach_id(target, BTF_KIND_FUNC)
            if btf_id < 0:
                return Verdict(False, f"no function {target} in kernel BTF")
            attach = BPF_TRACE_FENTRY if kind == "fentry" else BPF_TRACE_FEXIT
            try:
                prog_fd = _load(BPF_PROG_TYPE_TRACING, attach, btf_id)
            except OSError as exc:
                return Verdict(False, f"{kind} program load refused: {exc.strerror}", kind_refused=exc.errno != errno.ESRCH)
            _raw_tp_open(None, prog_fd)
        elif kind == "tp_btf":
            btf_id = _attach_id(f"btf_trace_{target}", BTF_KIND_TYPEDEF)
            if btf_id < 0:
                return Verdict(False, f"no raw tracepoint {target} in kernel BTF")
            try:
                prog_fd = _load(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, btf_id)
            except OSError as exc:
                return Verdict(False, f"tp_btf program load refused: {exc.strerror}", kind_refused=True)
            if attach:
                _raw_tp_open(None, prog_fd)
        elif kind == "raw_tp":
            try:
                prog_fd = _load(BPF_PROG_TYPE_RAW_TRACEPOINT)
            except OSError as exc:
                return Verdict(False, f"raw_tp program load refused: {exc.strerror}", kind_refused=True)
            if attach:
                _raw_tp_open(target, prog_fd)
        elif kind == "tracepoint":
            root = tracefs_root(mount_if_missing=True)
            if root is None:
                return Verdict(False, "tracefs is not mounted and cannot be mounted", kind_refused=True)
            try:
                with open(os.path.join(root, "events", target, "id")) as f:
                    tp_id = int(f.read())
            except OSError:
                return Verdict(False, f"no tracepoint {target.replace('/', ':')}")
            try:
                prog_fd = _load(BPF_PROG_TYPE_TRACEPOINT)
            except OSError as exc:
                return Verdict(False, f"tracepoint program load refused: {exc.strerror}", kind_refused=True)
            if attach:
                _attach_perf(prog_fd, PERF_TYPE_TRACEPOINT, tp_id)
        elif kind in ("kprobe", "kretprobe"):
            pmu = _kprobe_pmu_type()
            if pmu is None:
                return Verdict(False, "kernel has no kprobe PMU (CONFIG_KPROBES is off)", kind_refused=True)
            try:
                prog_fd = _load(BPF_PROG_TYPE_KPROBE)
            except OSError as exc:
                return Verdict(False, f"kprobe program load refused: {exc.strerror}", kind_refused=True)
            func = ctypes.create_string_buffer(target.encode())
            # config bit 0 selects a return probe on the kprobe PMU.
            _attach_perf(prog_fd, pmu, 1 if kind == "kretprobe" else 0, ctypes.addressof(func))
        else:
            raise ValueError(f"unknown hook kind {kind}")
    except OSError as exc:
        return Verdict(False, f"{kind} {target}: {exc.strerror}")
    finally:
        if prog_fd >= 0:
            os.close(prog_fd)
    return Verdict(True)


def _known_target(kind: str, target: str) -> Optional[Verdict]:
    """Once a kind has attached somewhere, a tracepoint or raw tracepoint
    attaches wherever it exists; only its existence needs checking."""
    if kind == "tracepoint":
        root = tracefs_root(mount_if_missing=True)
        exists = root is not None and os.path.exists(os.path.join(root, "events", target, "id"))
        return Verdict(True) if exists else Verdict(False, f"no tracepoint {target.replace('/', ':')}")
    if kind in ("tp_btf", "raw_tp"):
        # tp_btf attaches by the kernel's own id; raw_tp by name, which FILE tells
        find = _attach_id if kind == "tp_btf" else _btf_id
        if find(f"btf_trace_{target}", BTF_KIND_TYPEDEF) >= 0:
            return Verdict(True)
        return Verdict(False, f"no raw tracepoint {target} in kernel BTF")
    return None


# Kinds whose programs attach wherever their target exists once a program of
# the kind loads; a trial attach of these costs an RCU grace period on detach
# (about 70 ms each), so plans only load, and `doctor` also attaches.
_ATTACH_FOLLOWS_LOAD = {"tracepoint", "tp_btf", "raw_tp"}


def can_attach(kind: str, target: str, trial_attach: bool = False) -> Verdict:
    """Whether a program of ``kind`` loads and attaches to ``target`` here.

    fentry/fexit and kprobes are always attached on trial (a function can be
    notrace, or inlined away); tracepoint kinds only when ``trial_attach``.

    ``target`` is a function for fentry/fexit/kprobe/kretprobe, a raw
    tracepoint name for tp_btf/raw_tp, and ``category/name`` for tracepoint.
    """
    key = (kind, target)
    if key in _cache:
        return _cache[key]
    if kind in _kind_refused:
        return _kind_refused[kind]
    proven = _kind_works.get(kind)
    verdict = _known_target(kind, target) if proven else None
    if verdict is None:
        verdict = _try(kind, target, attach=trial_attach or kind not in _ATTACH_FOLLOWS_LOAD)
    if verdict.ok:
        _kind_works[kind] = True
    _cache[key] = verdict
    if verdict.kind_refused:
        _kind_refused[kind] = verdict
    return verdict


# A target every kernel we support has, per kind, for `doctor`.
DOCTOR_TARGETS = {
    "tracepoint": "syscalls/sys_enter_getpid",
    "tp_btf": "sched_switch",
    "raw_tp": "sched_switch",
    "fentry": "do_sys_openat2",
    "kprobe": "do_sys_openat2",
}


def probe_kind(kind: str) -> Verdict:
    """Load AND attach a trivial program of ``kind`` (for doctor)."""
    return _try(kind, DOCTOR_TARGETS[kind], attach=True)


def probe_ringbuf() -> Verdict:
    """Whether the kernel has the BPF ring buffer map type (Linux 5.8):
    libbpf creates one and says.  Probed once per process."""
    global _ringbuf
    if _ringbuf is None:
        ctypes.set_errno(0)
        ret = int(lib().libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, None))
        if ret == 1:
            _ringbuf = Verdict(True)
        elif ret == 0:
            _ringbuf = Verdict(False, "the kernel has no BPF ring buffer map type (BPF_MAP_TYPE_RINGBUF, Linux 5.8)")
        else:
            _ringbuf = Verdict(False, f"ring buffer probe failed: {os.strerror(-ret)}")
    return _ringbuf


RING_BUFFER = "ring buffer"
PERF_BUFFER = "perf buffer"
_TRANSPORT_WORDS = {"perf": PERF_BUFFER, "ring": RING_BUFFER}


def transport() -> str:
    """How the CO-RE objects send their records here: the BPF ring buffer
    where the kernel has the map type, else the perf buffer.
    KERNTRACE_TRANSPORT=perf forces the perf buffer (the guest tests the
    fallback on a kernel that has both), =ring the ring buffer."""
    forced = os.environ.get("KERNTRACE_TRANSPORT", "").strip().lower()
    if forced:
        if forced not in _TRANSPORT_WORDS:
            from .environment import UsageProblem

            raise UsageProblem(f"KERNTRACE_TRANSPORT={forced}: expected perf or ring")
        return _TRANSPORT_WORDS[forced]
    return RING_BUFFER if probe_ringbuf() else PERF_BUFFER


def tracepoint_arg_count(name: str) -> Optional[int]:
    """Arguments a raw tracepoint passes to BPF, from the kernel BTF's
    btf_trace_NAME typedef (a pointer to a function whose first parameter
    is the tracepoint's private data); None if the kernel does not say."""
    try:
        type_id = _btf_id(f"btf_trace_{name}", BTF_KIND_TYPEDEF)
    except OSError:
        return None
    for want in (BTF_KIND_TYPEDEF, BTF_KIND_PTR, BTF_KIND_FUNC_PROTO):
        if type_id <= 0:
            return None
        t = lib().btf__type_by_id(_vmlinux(), type_id)
        if not t:
            return None
        _name_off, info, ref = t.contents
        if (info >> 24) & 0x1F != want:
            return None
        if want == BTF_KIND_FUNC_PROTO:
            return max((info & 0xFFFF) - 1, 0)
        type_id = ref
    return None


def kernel_facts() -> dict[str, Any]:
    """Values of the objects' kernel-describing globals (core_fixes.bpf.h),
    probed once: the engine writes each into every object that has it."""
    global _facts
    if _facts is None:
        # sched_switch's 4th argument, prev_state: Linux fa2c3254d7cf (v5.18)
        _facts = {"kt_switch_has_prev_state": (tracepoint_arg_count("sched_switch") or 0) >= 4}
    return _facts


def reset_cache() -> None:
    """Forget every verdict (tests use it)."""
    _cache.clear()
    _kind_refused.clear()
    _kind_works.clear()

