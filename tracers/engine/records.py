"""Ring records (numpy structured arrays) as tables: decoding fixed char
arrays to strings, JSON Lines, and Parquet files."""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

__all__ = ["arrow_table", "decode_events", "json_line", "strings_of", "write_parquet"]


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
    _uniques, first, codes = np.unique(mixed, return_index=True, return_inverse=True)
    codes = codes.reshape(-1)
    if not (words[first][codes] == words).all():  # merged by the mix: take the exact path
        uniques, exact = np.unique(col, return_inverse=True)
        return exact.reshape(-1), [u.split(b"\0", 1)[0].decode("utf-8", "replace") for u in uniques]
    labels = [col[i].split(b"\0", 1)[0].decode("utf-8", "replace") for i in first]
    return codes, labels


def decode_events(batches: Iterable["np.ndarray[Any, Any]"], dtype: "np.dtype[Any]") -> "pd.DataFrame":
    """Structured event arrays -> one DataFrame; fixed char arrays become
    strings (through categories: a trace has few distinct comms and paths)."""
    import numpy as np
    import pandas as pd

    parts = [b for b in batches if len(b)]
    arr = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype=dtype)
    columns: dict[str, Any] = {}
    for name in arr.dtype.names or ():
        col = arr[name]
        if col.dtype.kind == "S":
            codes, labels = _factorize_fixed_bytes(arr, name)
            if len(set(labels)) == len(labels):
                columns[name] = pd.Categorical.from_codes(codes, categories=labels)
            else:  # distinct raw values decoding to one label
                columns[name] = pd.array([labels[c] for c in codes], dtype="string")
        elif col.ndim > 1:
            columns[name] = list(col)
        else:
            columns[name] = col
    return pd.DataFrame(columns, copy=False)


def write_parquet(frames: Mapping[str, "pd.DataFrame"], path: str, metadata: Mapping[str, Any]) -> None:
    """All events in one Parquet file, a ``type`` column telling the kinds
    apart; run metadata (hooks, duration, lost events) in the file's schema
    metadata.  Created with mode 0600: traces show what processes read."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for kind, frame in frames.items():
        f = frame.copy()
        for col in f.columns:
            if isinstance(f[col].dtype, pd.CategoricalDtype):
                f[col] = f[col].astype(str)
        f.insert(0, "type", kind)
        tables.append(f)
    table_frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"type": []})
    table = pa.Table.from_pandas(table_frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"kerntrace"] = json.dumps(metadata, default=_json_default).encode()
    table = table.replace_schema_metadata(meta)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as sink:
        pq.write_table(table, sink)


def strings_of(arr: "np.ndarray[Any, Any]", name: str) -> "pa.DictionaryArray":
    """A fixed char array field (comm) as Arrow dictionary strings."""
    import numpy as np
    import pyarrow as pa

    codes, labels = _factorize_fixed_bytes(arr, name)
    if len(set(labels)) != len(labels):  # distinct raw values decoding to one label
        merged = sorted(set(labels))
        remap = np.array([merged.index(label) for label in labels], dtype=np.int32)
        codes, labels = remap[codes], merged
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int32)), pa.array(labels, pa.string()))


def enum_strings(values: "np.ndarray[Any, Any]", names: Mapping[int, str]) -> "pa.DictionaryArray":
    """An enum-valued field as Arrow dictionary strings (a value the enum
    does not name shows as its number)."""
    import numpy as np
    import pyarrow as pa

    uniques, codes = np.unique(values, return_inverse=True)
    labels = [names.get(int(v), str(int(v))) for v in uniques]
    return pa.DictionaryArray.from_arrays(pa.array(codes.reshape(-1).astype(np.int32)), pa.array(labels, pa.string()))


def arrow_table(arr: "np.ndarray[Any, Any]", offset_ns: int, *, enums: Optional[Mapping[str, Mapping[int, str]]] = None,
                bools: Iterable[str] = (), drop: Iterable[str] = ()) -> "pa.Table":
    """Ring records -> an Arrow table whose schema is the event struct's:
    integers stay integers, char arrays and enums become dictionary strings,
    flags named in bools become booleans; a UTC ``time`` column leads and
    the raw ``ts_ns`` stays.  Fields named pad or starting with _ are left
    out, as are nested arrays."""
    import numpy as np
    import pyarrow as pa

    enums = enums or {}
    bools = set(bools)
    skip = set(drop)
    columns: dict[str, Any] = {}
    names = arr.dtype.names or ()
    if "ts_ns" in names:
        columns["time"] = pa.array(arr["ts_ns"].astype(np.int64) + offset_ns, pa.timestamp("ns", tz="UTC"))
    for name in names:
        if name in skip or name.startswith("_") or name == "pad":
            continue
        col = arr[name]
        if col.dtype.kind == "S":
            columns[name] = strings_of(arr, name)
        elif col.ndim > 1 or col.dtype.subdtype is not None:
            continue
        elif name in enums:
            columns[name] = enum_strings(col, enums[name])
        elif name in bools:
            columns[name] = pa.array(col != 0)
        else:
            columns[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(columns)
