"""Ring records (numpy structured arrays) as columns: fixed char arrays
and enums as strings, the UTC time; JSON Lines; Arrow tables for pyarrow."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence
from ...analysis.arrays import unique

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .parquet import Column

__all__ = ["Records", "arrow_table", "enum_strings", "fixed_strings", "json_line", "records_of"]


def json_line(obj: Mapping[str, Any]) -> str:
    """One JSON object and its newline (numpy scalars as numbers)."""
    return json.dumps(obj, default=_json_default, separators=(",", ":")) + "\n"


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _fixed_bytes_words(arr: "np.ndarray[Any, Any]", name: str) -> "np.ndarray[Any, Any]":
    """The bytes of field ``name`` of every record as rows of uint64 words,
    viewed in place where the layout allows it (8-byte aligned), else copied."""
    import numpy as np

    col = arr[name]
    offset = arr.dtype.fields[name][1]
    width = col.dtype.itemsize
    n = len(arr)
    if arr.dtype.itemsize % 8 == 0 and offset % 8 == 0 and width % 8 == 0 and arr.flags.c_contiguous:
        words = arr.view(np.uint64).reshape(n, arr.dtype.itemsize // 8)
        return words[:, offset // 8 : (offset + width) // 8]
    raw = np.ascontiguousarray(col).view(np.uint8).reshape(n, width)
    if width % 8:
        raw = np.concatenate([raw, np.zeros((n, -width % 8), dtype=np.uint8)], axis=1)
    return raw.view("<u8")


def _factorize_fixed_bytes(arr: "np.ndarray[Any, Any]", name: str) -> tuple["np.ndarray[Any, Any]", list[str]]:
    """codes, labels for a fixed-width bytes field in O(n): mix each value's
    words into one uint64, factorize those, decode only the first occurrence
    of each, and check that no two distinct values were merged."""
    import numpy as np

    col = arr[name]
    n = len(arr)
    if not n:
        return np.zeros(0, dtype=np.int64), []
    words = _fixed_bytes_words(arr, name)
    mixed = words[:, 0].copy()
    for i in range(1, words.shape[1]):
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed ^= words[:, i]
    _uniques, first, codes = unique(mixed, return_index=True, return_inverse=True)
    codes = codes.reshape(-1)
    if not (words[first][codes] == words).all():  # merged by the mix: take the exact path
        uniques, exact = unique(col, return_inverse=True)
        return exact.reshape(-1), [u.split(b"\0", 1)[0].decode("utf-8", "replace") for u in uniques]
    labels = [col[i].split(b"\0", 1)[0].decode("utf-8", "replace") for i in first]
    return codes, labels


class Records:
    """One batch of records as columns: numpy arrays, and strings as
    (codes, labels).  What a tool aggregates and what the trace keeps; the
    Arrow table is built only when a trace is written (pyarrow's import
    and allocator cost tens of MB a run without -o need not pay)."""

    def __init__(self, length: int, offset_ns: int = 0) -> None:
        self.length = length
        self.offset_ns = offset_ns
        self.numbers: dict[str, "np.ndarray[Any, Any]"] = {}
        self.strings: dict[str, tuple["np.ndarray[Any, Any]", list[str]]] = {}
        self.nullable: set[str] = set()   # float columns whose NaN means "unknown" (int64 with nulls)
        self.order: list[str] = []
        self._arrow: Optional["pa.Table"] = None

    def __len__(self) -> int:
        return self.length

    @property
    def column_names(self) -> list[str]:
        return list(self.order)

    def add(self, name: str, values: "np.ndarray[Any, Any]", nullable: bool = False) -> "Records":
        self.numbers[name] = values
        if nullable:
            self.nullable.add(name)
        self.order.append(name)
        self._arrow = None
        return self

    def add_strings(self, name: str, codes: "np.ndarray[Any, Any]", labels: list[str]) -> "Records":
        self.strings[name] = (codes, labels)
        self.order.append(name)
        return self

    def add_string_list(self, name: str, values: list[str]) -> "Records":
        import numpy as np

        if not values:
            return self.add_strings(name, np.zeros(0, dtype=np.int64), [])
        labels, codes = unique(np.array(values, dtype=object).astype(str), return_inverse=True)
        return self.add_strings(name, codes.reshape(-1), [str(v) for v in labels])

    def column(self, name: str) -> "np.ndarray[Any, Any]":
        if name in self.numbers:
            return self.numbers[name]
        import numpy as np

        codes, labels = self.strings[name]
        return np.array(labels, dtype=object)[codes] if len(codes) else np.zeros(0, dtype=object)

    def labels(self, name: str) -> tuple["np.ndarray[Any, Any]", list[str]]:
        return self.strings[name]

    def columns(self) -> "list[Column]":
        """The columns as the Parquet writer types them."""
        from .parquet import Column

        out = []
        for name in self.order:
            if name in self.strings:
                codes, labels = self.strings[name]
                out.append(Column(name, "string", codes, labels))
                continue
            values = self.numbers[name]
            if name == "time":
                kind = "timestamp"
            elif name in self.nullable:
                kind = "nullable"
            elif values.dtype.kind == "b":
                kind = "bool"
            elif values.dtype.kind == "f":
                kind = "double"
            else:
                kind = "int"
            out.append(Column(name, kind, values))
        return out

    @classmethod
    def concat(cls, parts: "Sequence[Records]") -> "Records":
        """Batches of one kind as one (string codes remapped to the union
        of their labels)."""
        import numpy as np

        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        out = cls(sum(len(p) for p in parts), first.offset_ns)
        out.nullable = set(first.nullable)
        for name in first.order:
            if name in first.strings:
                labels: dict[str, int] = {}
                chunks = []
                for p in parts:
                    codes, mine = p.strings[name]
                    remap = np.array([labels.setdefault(label, len(labels)) for label in mine], dtype=np.int64)
                    chunks.append(remap[codes] if len(mine) else np.zeros(len(codes), dtype=np.int64))
                out.add_strings(name, np.concatenate(chunks), list(labels))
            else:
                out.add(name, np.concatenate([p.numbers[name] for p in parts]))
        return out

    def to_arrow(self) -> "pa.Table":
        import numpy as np
        import pyarrow as pa

        if self._arrow is not None:
            return self._arrow
        columns: dict[str, Any] = {}
        for name in self.order:
            if name in self.strings:
                codes, labels = self.strings[name]
                columns[name] = pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int32)),
                                                               pa.array(labels, pa.string()))
            elif name == "time":
                columns[name] = pa.array(self.numbers[name], pa.timestamp("ns", tz="UTC"))
            elif name in self.nullable:
                values = self.numbers[name]
                unknown = np.isnan(values)
                columns[name] = pa.array(np.where(unknown, 0, np.round(values)).astype(np.int64), mask=unknown)
            else:
                columns[name] = pa.array(np.ascontiguousarray(self.numbers[name]))
        self._arrow = pa.table(columns)
        return self._arrow


def fixed_strings(arr: "np.ndarray[Any, Any]", name: str) -> tuple["np.ndarray[Any, Any]", list[str]]:
    """A fixed char array field (comm) as (codes, labels)."""
    import numpy as np

    codes, labels = _factorize_fixed_bytes(arr, name)
    if len(set(labels)) != len(labels):  # distinct raw values decoding to one label
        merged = sorted(set(labels))
        remap = np.array([merged.index(label) for label in labels], dtype=np.int64)
        codes, labels = remap[codes], merged
    return np.asarray(codes, dtype=np.int64), labels


def enum_strings(values: "np.ndarray[Any, Any]", names: Mapping[int, str]) -> tuple["np.ndarray[Any, Any]", list[str]]:
    """An enum-valued field as (codes, labels) (a value the enum does not
    name shows as its number)."""
    import numpy as np

    uniques, codes = unique(values, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), [names.get(int(v), str(int(v))) for v in uniques]


def records_of(arr: "np.ndarray[Any, Any]", offset_ns: int, *, enums: Optional[Mapping[str, Mapping[int, str]]] = None,
               bools: Iterable[str] = (), drop: Iterable[str] = ()) -> Records:
    """Ring records -> Records whose schema is the event struct's: integers
    stay integers, char arrays and enums become strings, flags named in
    bools become booleans; a UTC ``time`` column leads and the raw ``ts_ns``
    stays.  Fields named pad or starting with _ are left out, as are nested
    arrays."""
    import numpy as np

    enums = enums or {}
    bools = set(bools)
    skip = set(drop)
    out = Records(len(arr), offset_ns)
    names = arr.dtype.names or ()
    if "ts_ns" in names:
        out.add("time", arr["ts_ns"].astype(np.int64) + offset_ns)
    for name in names:
        if name in skip or name.startswith("_") or name == "pad":
            continue
        col = arr[name]
        if col.dtype.kind == "S":
            out.add_strings(name, *fixed_strings(arr, name))
        elif col.ndim > 1 or col.dtype.subdtype is not None:
            continue
        elif name in enums:
            out.add_strings(name, *enum_strings(col, enums[name]))
        elif name in bools:
            out.add(name, col != 0)
        else:
            out.add(name, np.ascontiguousarray(col))
    return out


def arrow_table(arr: "np.ndarray[Any, Any]", offset_ns: int, *, enums: Optional[Mapping[str, Mapping[int, str]]] = None,
                bools: Iterable[str] = (), drop: Iterable[str] = ()) -> "pa.Table":
    """records_of(...) as an Arrow table."""
    return records_of(arr, offset_ns, enums=enums, bools=bools, drop=drop).to_arrow()
