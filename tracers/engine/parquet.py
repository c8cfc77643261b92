"""A small Parquet writer for the trace's parts, in numpy and the
standard library.

pyarrow costs a tracer ~95 MB of resident memory once it builds its first
array (its compute registry and allocator), more than the rest of a run;
the parts need only flat columns: integers, doubles, booleans, UTC
timestamps, nullable integers and dictionary-encoded strings.  Each part is
one row group, one data page per column (plus a dictionary page for
strings), GZIP-compressed.  pyarrow and DuckDB read the files; the format
is apache/parquet-format's parquet.thrift, written with Thrift's compact
protocol.
"""
from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, Sequence

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Column", "write_parquet_file"]

MAGIC = b"PAR1"

# parquet.thrift enums
_BOOLEAN, _INT32, _INT64, _DOUBLE, _BYTE_ARRAY = 0, 1, 2, 5, 6
_REQUIRED, _OPTIONAL = 0, 1
_PLAIN, _RLE, _RLE_DICTIONARY = 0, 3, 8
_GZIP = 2
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2
_UTF8 = 0  # ConvertedType

# Thrift compact protocol types
_T_TRUE, _T_FALSE, _T_I32, _T_I64, _T_BINARY, _T_LIST, _T_STRUCT = 1, 2, 5, 6, 8, 9, 12


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


class _Struct:
    """A Thrift struct in compact protocol: fields in increasing id order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.last = 0

    def _head(self, fid: int, ttype: int) -> None:
        delta = fid - self.last
        if 0 < delta <= 15:
            self.buf.append((delta << 4) | ttype)
        else:
            self.buf.append(ttype)
            self.buf += _varint(_zigzag(fid))
        self.last = fid

    def i32(self, fid: int, value: int) -> "_Struct":
        self._head(fid, _T_I32)
        self.buf += _varint(_zigzag(value))
        return self

    def i64(self, fid: int, value: int) -> "_Struct":
        self._head(fid, _T_I64)
        self.buf += _varint(_zigzag(value))
        return self

    def boolean(self, fid: int, value: bool) -> "_Struct":
        self._head(fid, _T_TRUE if value else _T_FALSE)
        return self

    def binary(self, fid: int, value: bytes) -> "_Struct":
        self._head(fid, _T_BINARY)
        self.buf += _varint(len(value)) + value
        return self

    def struct(self, fid: int, value: "_Struct") -> "_Struct":
        self._head(fid, _T_STRUCT)
        self.buf += value.end()
        return self

    def list(self, fid: int, etype: int, items: Sequence[Any]) -> "_Struct":
        self._head(fid, _T_LIST)
        n = len(items)
        self.buf += bytes([(n << 4) | etype]) if n < 15 else bytes([0xF0 | etype]) + _varint(n)
        for item in items:
            if etype == _T_I32:
                self.buf += _varint(_zigzag(item))
            elif etype == _T_BINARY:
                self.buf += _varint(len(item)) + item
            else:  # struct
                self.buf += item.end()
        return self

    def end(self) -> bytes:
        return bytes(self.buf) + b"\x00"


class Column:
    """One column of a part: its values and how Parquet types them.

    kind: "int" (numpy integer, signed or not, 8 to 64 bits), "double",
    "bool", "timestamp" (int64 UTC nanoseconds, written as microseconds),
    "nullable" (float64 whose NaN is a null, written as int64), "string"
    (codes and labels)."""

    def __init__(self, name: str, kind: str, values: "np.ndarray[Any, Any]",
                 labels: Optional[list[str]] = None) -> None:
        self.name = name
        self.kind = kind
        self.values = values
        self.labels = labels


def _rle_runs(values: "np.ndarray[Any, Any]", width_bytes: int) -> bytes:
    """The RLE/bit-packing hybrid, RLE runs only: values of a trace's
    string columns come in long runs (one comm, one path)."""
    import numpy as np

    n = len(values)
    if not n:
        return b""
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, n])
    out = bytearray()
    for start, length in zip(starts.tolist(), lengths.tolist()):
        out += _varint(length << 1)
        out += int(values[start]).to_bytes(width_bytes, "little")
    return bytes(out)


def _schema_element(col: Column) -> _Struct:
    el = _Struct()
    kind = col.kind
    if kind == "int":
        dtype = col.values.dtype
        bits = dtype.itemsize * 8
        return _int_element(col.name, _INT64 if bits == 64 else _INT32, bits, dtype.kind != "u")
    if kind == "double":
        return el.i32(1, _DOUBLE).i32(3, _REQUIRED).binary(4, col.name.encode())
    if kind == "bool":
        return el.i32(1, _BOOLEAN).i32(3, _REQUIRED).binary(4, col.name.encode())
    if kind == "timestamp":
        # LogicalType.TIMESTAMP(isAdjustedToUTC=true, unit=MICROS): Spark
        # reads no NANOS; the raw ts_ns column keeps the nanoseconds
        unit = _Struct().struct(2, _Struct())
        ts = _Struct().boolean(1, True).struct(2, unit)
        return el.i32(1, _INT64).i32(3, _REQUIRED).binary(4, col.name.encode()).struct(10, _Struct().struct(8, ts))
    if kind == "nullable":
        return el.i32(1, _INT64).i32(3, _OPTIONAL).binary(4, col.name.encode())
    if kind == "string":
        return (el.i32(1, _BYTE_ARRAY).i32(3, _REQUIRED).binary(4, col.name.encode()).i32(6, _UTF8)
                .struct(10, _Struct().struct(1, _Struct())))
    raise ValueError(f"column {col.name}: unknown kind {kind!r}")


def _int_element(name: str, physical: int, bits: int, signed: bool) -> _Struct:
    """A SchemaElement with LogicalType.INTEGER(bitWidth, isSigned)."""
    el = _Struct().i32(1, physical).i32(3, _REQUIRED).binary(4, name.encode())
    int_type = _Struct()
    # IntType{1: i8 bitWidth, 2: bool isSigned}; compact type 3 is a byte
    int_type._head(1, 3)
    int_type.buf.append(bits)
    int_type.boolean(2, signed)
    return el.struct(10, _Struct().struct(10, int_type))


def _plain(col: Column) -> tuple[bytes, int]:
    """(PLAIN-encoded page body, physical type) of a non-string column."""
    import numpy as np

    v = col.values
    if col.kind == "int":
        if v.dtype.itemsize == 8:
            return np.ascontiguousarray(v).astype("<i8").tobytes(), _INT64  # uint64 keeps its bits
        return np.ascontiguousarray(v).astype("<i4").tobytes(), _INT32
    if col.kind == "double":
        return np.ascontiguousarray(v, dtype="<f8").tobytes(), _DOUBLE
    if col.kind == "bool":
        return np.packbits(np.asarray(v, dtype=bool), bitorder="little").tobytes(), _BOOLEAN
    if col.kind == "timestamp":
        ns = np.asarray(v, dtype=np.int64)
        us = ns // 1000 + ((ns < 0) & (ns % 1000 != 0))   # toward zero, as pyarrow's cast to "us"
        return us.astype("<i8").tobytes(), _INT64
    raise ValueError(col.kind)


def _page(body: bytes, num_values: int, encoding: int, dictionary: bool = False) -> tuple[bytes, int]:
    """(header + GZIP body, uncompressed size) of one page."""
    zipper = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    compressed = zipper.compress(body) + zipper.flush()
    header = _Struct().i32(1, _DICTIONARY_PAGE if dictionary else _DATA_PAGE).i32(2, len(body)).i32(3, len(compressed))
    if dictionary:
        header.struct(7, _Struct().i32(1, num_values).i32(2, _PLAIN))
    else:
        header.struct(5, _Struct().i32(1, num_values).i32(2, encoding).i32(3, _RLE).i32(4, _RLE))
    head = header.end()
    return head + compressed, len(head) + len(body)


def _column_chunk(col: Column, offset: int, num_rows: int) -> tuple[bytes, _Struct]:
    """The pages of one column and its ColumnChunk metadata."""
    import numpy as np

    pages = bytearray()
    uncompressed = 0
    dictionary_offset = None
    if col.kind == "string":
        labels = col.labels or []
        dictionary = b"".join(struct.pack("<I", len(b)) + b for b in (s.encode("utf-8", "replace") for s in labels))
        page, size = _page(dictionary, len(labels), _PLAIN, dictionary=True)
        dictionary_offset = offset
        pages += page
        uncompressed += size
        width = max(1, int(len(labels) - 1).bit_length()) if len(labels) > 1 else 1
        codes = np.asarray(col.values, dtype=np.int64)
        body = bytes([width]) + _rle_runs(codes, (width + 7) // 8)
        encoding, physical = _RLE_DICTIONARY, _BYTE_ARRAY
    elif col.kind == "nullable":
        values = np.asarray(col.values, dtype=np.float64)
        present = ~np.isnan(values)
        levels = _rle_runs(present.astype(np.int64), 1)
        body = struct.pack("<I", len(levels)) + levels + np.round(values[present]).astype("<i8").tobytes()
        encoding, physical = _PLAIN, _INT64
    else:
        body, physical = _plain(col)
        encoding = _PLAIN
    data_offset = offset + len(pages)
    page, size = _page(body, num_rows, encoding)
    pages += page
    uncompressed += size
    encodings = [_PLAIN, _RLE] + ([_RLE_DICTIONARY] if col.kind == "string" else [])
    meta = (_Struct().i32(1, physical).list(2, _T_I32, encodings).list(3, _T_BINARY, [col.name.encode()])
            .i32(4, _GZIP).i64(5, num_rows).i64(6, uncompressed).i64(7, len(pages)).i64(9, data_offset))
    if dictionary_offset is not None:
        meta.i64(11, dictionary_offset)
    chunk = _Struct().i64(2, offset).struct(3, meta)
    return bytes(pages), chunk


def write_parquet_file(f: BinaryIO, columns: Sequence[Column], num_rows: int,
                       key_values: Optional[dict[str, str]] = None) -> None:
    """One row group of columns, all num_rows long, to the open file f."""
    f.write(MAGIC)
    offset = len(MAGIC)
    chunks = []
    total = 0
    for col in columns:
        data, chunk = _column_chunk(col, offset, num_rows)
        f.write(data)
        offset += len(data)
        total += len(data)
        chunks.append(chunk)
    root = _Struct().binary(4, b"schema").i32(5, len(columns))
    schema = [root] + [_schema_element(col) for col in columns]
    meta = (_Struct().i32(1, 1).list(2, _T_STRUCT, schema).i64(3, num_rows)
            .list(4, _T_STRUCT, [_Struct().list(1, _T_STRUCT, chunks).i64(2, total).i64(3, num_rows)]))
    if key_values:
        meta.list(5, _T_STRUCT, [_Struct().binary(1, k.encode()).binary(2, v.encode()) for k, v in key_values.items()])
    meta.binary(6, b"kerntrace")
    footer = meta.end()
    f.write(footer)
    f.write(struct.pack("<I", len(footer)))
    f.write(MAGIC)
