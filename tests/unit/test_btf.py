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
