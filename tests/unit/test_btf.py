"""BTF parsing and BTF -> numpy dtype, from the compiled objects and from
hand-made BTF blobs."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from kerntrace.tracers.engine.btf import Btf, BtfError
from kerntrace.tracers.engine import object_path
from kerntrace.tracers.engine.libbpf import btf_of_elf


def selftest_btf() -> Btf:
    try:
        path = object_path("selftest")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return Btf(btf_of_elf(path))


def test_event_dtype_matches_header_layout():
    # bpf/selftest.h: u64 ts_ns; u32 pid, tid, seq, burst; char comm[16]
    dt = selftest_btf().dtype("selftest_event")
    assert dt.itemsize == 40
    assert [(n, dt.fields[n][1]) for n in dt.names] == [
        ("ts_ns", 0), ("pid", 8), ("tid", 12), ("seq", 16), ("burst", 20), ("comm", 24)
    ]
    assert dt["ts_ns"] == np.dtype("<u8")
    assert dt["comm"] == np.dtype("S16")


def test_rodata_and_bss_variables_are_found():
    btf = selftest_btf()
    rodata = btf.datasec(".rodata")
    assert {"burst", "kt_filter_pids"} <= set(rodata)
    assert rodata["burst"].size == 4
    bss = btf.datasec(".bss")
    assert bss["kt_lost_events"].size == 8


def _blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _int_type(name_off: int, size: int, signed: bool) -> bytes:
    info = 1 << 24
    enc = (1 if signed else 0) << 24 | size * 8
    return struct.pack("<IIII", name_off, info, size, enc)


def test_handmade_struct_with_array_and_padding():
    strings = b"\0u32\0s64\0ev\0a\0b\0c\0"
    types = _int_type(1, 4, False)            # id 1: u32
    types += _int_type(5, 8, True)            # id 2: s64
    types += struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 1, 1, 3)  # id 3: u32[3]
    members = [(12, 1, 0), (14, 2, 64), (16, 3, 128)]
    types += struct.pack("<III", 9, (4 << 24) | len(members), 32)  # id 4: struct ev, size 32
    for m in members:
        types += struct.pack("<III", *m)
    dt = Btf(_blob(types, strings)).dtype("ev")
    assert dt.itemsize == 32
    assert dt["a"] == np.dtype("<u4") and dt.fields["a"][1] == 0
    assert dt["b"] == np.dtype("<i8") and dt.fields["b"][1] == 8
    assert dt["c"].shape == (3,) and dt.fields["c"][1] == 16


def test_bitfields_are_refused():
    strings = b"\0u32\0bf\0x\0"
    types = _int_type(1, 4, False)
    types += struct.pack("<III", 5, (1 << 31) | (4 << 24) | 1, 4)
    types += struct.pack("<III", 8, 1, (3 << 24) | 0)
    with pytest.raises(BtfError, match="bitfield"):
        Btf(_blob(types, strings)).dtype("bf")


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "too short"),
        (b"\x00" * 32, "magic"),
        (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 100, 0, 0), "past the end"),
        (_blob(struct.pack("<III", 0, 31 << 24, 0), b"\0"), "unknown BTF kind"),
        (_blob(struct.pack("<II", 0, 1 << 24), b"\0"), "truncated"),
    ],
)
def test_malformed_btf_is_an_error(raw, message):
    with pytest.raises(BtfError, match=message):
        Btf(raw)


def test_unknown_struct_is_an_error():
    with pytest.raises(BtfError, match="no struct nope"):
        selftest_btf().dtype("nope")


# ---- constants: C enums in bpf/X.h, named through BTF -------------------------

def object_btf(name: str) -> Btf:
    try:
        return Btf(btf_of_elf(object_path(name)))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(
    "obj, enum, names",
    [
        ("zombies", "zombie_kind", {"fork", "exit", "wait", "free", "exec"}),
        ("zombies", "zombie_syscall", {"wait4", "waitid"}),
        ("ip6mr", "ns_kind", {"attempt", "oom", "icmp6_open", "icmp6_close", "icmp6_exit", "copy_net_ns",
                              "copy_net_ns_ret", "setup_net", "ip6mr_net_init", "ip6mr_net_exit",
                              "ip6mr_sk_done"}),
        ("ip6mr", "ns_method", {"unshare", "clone", "clone3", "setns", "task_newtask"}),
        ("odirect", "odirect_syscall", {"read", "pread64", "readv", "preadv", "preadv2", "io_uring_readv",
                                        "io_uring_read_fixed", "io_uring_read"}),
        ("dstate", "dstate_end", {"wakeup", "switch"}),
    ],
)
def test_enum_names_from_the_objects(obj, enum, names):
    """Every enum is in its object's BTF (KT_EXPORT_ENUM), and its members,
    lower-cased without the enum's name as prefix, are the names the output
    shows; the values are the C ones."""
    btf = object_btf(obj)
    by_value = btf.enum_names(enum)
    assert set(by_value.values()) == names
    assert btf.enum_values(enum) == {name: value for value, name in by_value.items()}
    prefix = enum.upper() + "_"
    assert {v: m[len(prefix):].lower() for m, v in btf.enum(enum).items()} == by_value


def test_enum_names_of_a_named_value():
    btf = object_btf("zombies")
    assert btf.enum_names("zombie_kind")[btf.enum("zombie_kind")["ZOMBIE_KIND_WAIT"]] == "wait"
    assert btf.enum_values("zombie_syscall")["waitid"] == btf.enum("zombie_syscall")["ZOMBIE_SYSCALL_WAITID"]


def _enum_blob(name: str, members: list[tuple[str, int]]) -> bytes:
    strings = b"\0" + name.encode() + b"\0"
    entries = b""
    for member, value in members:
        entries += struct.pack("<Ii", len(strings), value)
        strings += member.encode() + b"\0"
    types = struct.pack("<III", 1, (6 << 24) | len(members), 4) + entries
    return _blob(types, strings)


def test_enum_names_prefix_and_errors():
    btf = Btf(_enum_blob("ev", [("EV_A_B", 1), ("EV_C", 2)]))
    assert btf.enum_names("ev") == {1: "a_b", 2: "c"}
    assert btf.enum_names("ev", prefix="EV_") == {1: "a_b", 2: "c"}
    assert btf.enum_values("ev", prefix="") == {"ev_a_b": 1, "ev_c": 2}
    with pytest.raises(BtfError, match="EV_C does not start with EV_A_"):
        btf.enum_names("ev", prefix="EV_A_")
    with pytest.raises(BtfError, match="both 1"):
        Btf(_enum_blob("ev", [("EV_A", 1), ("EV_B", 1)])).enum_names("ev")
    with pytest.raises(BtfError, match="no enum nope"):
        btf.enum_names("nope")
