"""Read BTF (the BPF Type Format) and turn C structs into numpy dtypes.

Event structs are defined once, in ``bpf/*.h``; the compiled object carries
their layout in its ``.BTF`` section, and this module reads it from there.
There is no Python mirror of any C struct.

The format is documented in the kernel's ``Documentation/bpf/btf.rst``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Btf", "BtfError", "BtfType", "DatasecVar"]

BTF_MAGIC = 0xEB9F

KIND_NAMES = {
    1: "int", 2: "ptr", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd",
    8: "typedef", 9: "volatile", 10: "const", 11: "restrict", 12: "func",
    13: "func_proto", 14: "var", 15: "datasec", 16: "float", 17: "decl_tag",
    18: "type_tag", 19: "enum64",
}
_MODIFIERS = {"typedef", "volatile", "const", "restrict", "type_tag"}
_INT_SIGNED = 1
_INT_CHAR = 2
_INT_BOOL = 4


class BtfError(ValueError):
    """The BTF is malformed, or a type cannot be represented."""


@dataclass
class BtfMember:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class DatasecVar:
    name: str
    type_id: int
    offset: int
    size: int


@dataclass
class BtfType:
    id: int
    kind: str
    name: str
    size: int = 0          # int/struct/union/enum/float/datasec
    ref: int = 0           # ptr/typedef/modifiers/var/func: the referenced type
    int_encoding: int = 0
    int_bits: int = 0
    array_elem: int = 0
    array_len: int = 0
    members: list[BtfMember] = field(default_factory=list)
    enum_values: dict[str, int] = field(default_factory=dict)
    datasec_vars: list[DatasecVar] = field(default_factory=list)


class Btf:
    """Parsed BTF of one object (or of vmlinux)."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < 24:
            raise BtfError("BTF data too short")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", raw, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", raw, 8)
        base = hdr_len
        if base + type_off + type_len > len(raw) or base + str_off + str_len > len(raw):
            raise BtfError("BTF sections run past the end of the data")
        self._strings = raw[base + str_off : base + str_off + str_len]
        self.types: list[BtfType] = [BtfType(0, "void", "")]
        self._by_name: dict[tuple[str, str], int] = {}
        self._parse_types(raw[base + type_off : base + type_off + type_len])

    def _str(self, off: int) -> str:
        if off >= len(self._strings):
            raise BtfError(f"string offset {off} out of range")
        end = self._strings.find(b"\0", off)
        return self._strings[off : end if end >= 0 else None].decode("utf-8", "replace")

    def _parse_types(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            if pos + 12 > len(data):
                raise BtfError("truncated BTF type")
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            pos += 12
            vlen = info & 0xFFFF
            kind_num = (info >> 24) & 0x1F
            kind_flag = bool(info >> 31)
            kind = KIND_NAMES.get(kind_num)
            if kind is None:
                raise BtfError(f"unknown BTF kind {kind_num}")
            t = BtfType(len(self.types), kind, self._str(name_off))
            if kind == "int":
                (extra,) = struct.unpack_from("<I", data, pos)
                pos += 4
                t.size = size_or_type
                t.int_encoding = (extra >> 24) & 0x0F
                t.int_bits = extra & 0xFF
            elif kind == "array":
                t.array_elem, _index, t.array_len = struct.unpack_from("<III", data, pos)
                pos += 12
            elif kind in ("struct", "union"):
                t.size = size_or_type
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos)
                    pos += 12
                    if kind_flag:
                        t.members.append(BtfMember(self._str(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        t.members.append(BtfMember(self._str(m_name), m_type, m_off))
            elif kind == "enum":
                t.size = size_or_type
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", data, pos)
                    pos += 8
                    t.enum_values[self._str(e_name)] = e_val
            elif kind == "enum64":
                t.size = size_or_type
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<III", data, pos)
                    pos += 12
                    t.enum_values[self._str(e_name)] = (hi << 32) | lo
            elif kind == "func_proto":
                t.ref = size_or_type
                pos += 8 * vlen
            elif kind == "var":
                t.ref = size_or_type
                pos += 4
            elif kind == "datasec":
                t.size = size_or_type
                for _ in range(vlen):
                    v_type, v_off, v_size = struct.unpack_from("<III", data, pos)
                    pos += 12
                    t.datasec_vars.append(DatasecVar("", v_type, v_off, v_size))
            elif kind == "decl_tag":
                t.ref = size_or_type
                pos += 4
            elif kind == "float":
                t.size = size_or_type
            else:  # ptr, fwd, typedef, modifiers, func
                t.ref = size_or_type
            self.types.append(t)
            if t.name:
                self._by_name.setdefault((kind, t.name), t.id)
        # Name the datasec variables once every VAR is known.
        for t in self.types:
            for v in t.datasec_vars:
                v.name = self.types[v.type_id].name if v.type_id < len(self.types) else ""

    def find(self, kind: str, name: str) -> BtfType:
        try:
            return self.types[self._by_name[(kind, name)]]
        except KeyError:
            raise BtfError(f"no {kind} {name} in BTF") from None

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self._by_name

    def resolve(self, type_id: int) -> BtfType:
        """Skip typedefs and qualifiers."""
        seen = 0
        t = self.types[type_id]
        while t.kind in _MODIFIERS:
            t = self.types[t.ref]
            seen += 1
            if seen > 64:
                raise BtfError("typedef loop in BTF")
        return t

    def sizeof(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t.kind == "array":
            return self.sizeof(t.array_elem) * t.array_len
        if t.kind == "ptr":
            return 8
        if t.kind in ("int", "struct", "union", "enum", "enum64", "float"):
            return t.size
        raise BtfError(f"type {t.kind} {t.name!r} has no size")

    def datasec(self, name: str) -> dict[str, DatasecVar]:
        """Variables of a data section (.rodata, .bss, .data) by name."""
        if not self.has("datasec", name):
            return {}
        return {v.name: v for v in self.find("datasec", name).datasec_vars}

    # ---- numpy -------------------------------------------------------------

    def dtype(self, struct_name: str) -> "np.dtype[Any]":
        """A numpy dtype with the exact layout of ``struct struct_name``."""
        return self._dtype_of(self.find("struct", struct_name).id)

    def _dtype_of(self, type_id: int) -> "np.dtype[Any]":
        import numpy as np

        t = self.resolve(type_id)
        if t.kind == "int":
            if t.int_encoding & _INT_BOOL:
                return np.dtype("?") if t.size == 1 else np.dtype(f"<u{t.size}")
            signed = bool(t.int_encoding & _INT_SIGNED)
            return np.dtype(f"<{'i' if signed else 'u'}{t.size}")
        if t.kind in ("enum", "enum64"):
            return np.dtype(f"<u{t.size}")
        if t.kind == "ptr":
            return np.dtype("<u8")
        if t.kind == "float":
            return np.dtype(f"<f{t.size}")
        if t.kind == "array":
            elem = self.resolve(t.array_elem)
            if elem.kind == "int" and elem.size == 1 and (elem.int_encoding & _INT_CHAR or elem.name == "char"):
                return np.dtype(f"S{t.array_len}")
            return np.dtype((self._dtype_of(t.array_elem), (t.array_len,)))
        if t.kind == "struct":
            names: list[str] = []
            formats: list[Any] = []
            offsets: list[int] = []
            for i, m in enumerate(t.members):
                if m.bitfield_size:
                    raise BtfError(f"struct {t.name}: bitfield {m.name} cannot be an event field")
                if m.bit_offset % 8:
                    raise BtfError(f"struct {t.name}: member {m.name} is not byte aligned")
                names.append(m.name or f"_anon{i}")
                formats.append(self._dtype_of(m.type_id))
                offsets.append(m.bit_offset // 8)
            return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": t.size})
        if t.kind == "union":
            return np.dtype((np.void, t.size))
        raise BtfError(f"cannot map BTF {t.kind} {t.name!r} to a numpy type")

    def struct_fields(self, struct_name: str) -> dict[str, tuple[int, int]]:
        """member name -> (byte offset, size), for tests and debugging."""
        t = self.find("struct", struct_name)
        return {m.name: (m.bit_offset // 8, self.sizeof(m.type_id)) for m in t.members}

    def enum(self, name: str) -> dict[str, int]:
        """The members of ``enum name`` as they are in C: member -> value."""
        for kind in ("enum", "enum64"):
            if self.has(kind, name):
                return dict(self.find(kind, name).enum_values)
        raise BtfError(f"no enum {name} in BTF")

    def enum_values(self, name: str, prefix: Optional[str] = None) -> dict[str, int]:
        """The members of ``enum name`` (bpf/X.h) as short name -> value:
        lower-cased, without ``prefix`` (by default the enum's name in upper
        case and "_"), so ``enum zombie_kind { ZOMBIE_KIND_WAIT = 3 }`` gives
        {"wait": 3}.  These short names are what the output shows."""
        prefix = f"{name.upper()}_" if prefix is None else prefix
        out: dict[str, int] = {}
        for member, value in self.enum(name).items():
            if not member.startswith(prefix) or member == prefix:
                raise BtfError(f"enum {name}: member {member} does not start with {prefix}")
            out[member[len(prefix):].lower()] = value
        return out

    def enum_names(self, name: str, prefix: Optional[str] = None) -> dict[int, str]:
        """value -> short name of ``enum name`` (see :meth:`enum_values`),
        e.g. {3: "wait"}: how a record's numeric field is named."""
        out: dict[int, str] = {}
        for short, value in self.enum_values(name, prefix).items():
            if value in out:
                raise BtfError(f"enum {name}: {out[value]} and {short} are both {value}")
            out[value] = short
        return out


def scalar_type_code(btf: Btf, type_id: int) -> Optional[str]:
    """struct-module code for a scalar global (rodata options), or None."""
    t = btf.resolve(type_id)
    if t.kind == "int":
        if t.int_encoding & _INT_BOOL:
            return "?"
        codes = {1: "b", 2: "h", 4: "i", 8: "q"}
        code = codes.get(t.size)
        if code is None:
            return None
        return code if t.int_encoding & _INT_SIGNED else code.upper()
    if t.kind in ("enum", "enum64"):
        return {1: "B", 2: "H", 4: "I", 8: "Q"}.get(t.size)
    if t.kind == "ptr":
        return "Q"
    return None
