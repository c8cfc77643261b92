"""What every tracing command shares: the bcc-style options, validation that
fails in one line, the ready line, JSON Lines and Parquet output."""
from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, TextIO

import click

from .environment import UsageProblem

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "JsonLines",
    "Target",
    "decode_events",
    "pid_options",
    "setup_logging",
    "target_from_options",
    "write_parquet",
]


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr, force=True)
    if verbose < 2:
        # libbpf's debug chatter only with -vv; its warnings always show with -v.
        logging.getLogger("kerntrace.libbpf").setLevel(logging.INFO if verbose else logging.ERROR)


@dataclass
class Target:
    """Who is traced: given pids, a command to start, or everybody."""

    pids: list[int] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    follow: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.argv)

    def describe(self) -> str:
        if self.argv:
            return f"command {shlex.join(self.argv)!r}"
        if self.pids:
            return "pid " + ", ".join(str(p) for p in self.pids)
        return "all processes"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def target_from_options(
    pids: Sequence[int], command: Optional[str], follow: bool, required: bool
) -> Target:
    if pids and command:
        raise UsageProblem("give either -p PID or -c COMMAND, not both")
    if required and not pids and not command:
        raise UsageProblem("say what to trace: -p PID or -c COMMAND")
    for pid in pids:
        if pid <= 0 or not _pid_alive(pid):
            raise UsageProblem(f"no such process: {pid}")
    argv: list[str] = []
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageProblem(f"cannot parse -c {command!r}: {exc}") from None
        if not argv:
            raise UsageProblem("-c needs a command")
        exe = argv[0]
        if os.sep in exe:
            ok = os.path.isfile(exe) and os.access(exe, os.X_OK)
        else:
            import shutil

            ok = shutil.which(exe) is not None
        if not ok:
            raise UsageProblem(f"cannot start {exe!r}: no such executable")
    # A command is always followed into its children, as strace -f and perf do.
    return Target(list(pids), argv, follow or bool(argv))


def pid_options(required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-p/-c/-f/-d/--json/-o/-v, as bcc and libbpf-tools spell them."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("-p", "--pid", "pids", type=int, multiple=True, metavar="PID",
                         help="Trace this process (all its threads); repeatable."),
            click.option("-c", "--command", "command", metavar="COMMAND",
                         help="Start COMMAND once the probes are attached and trace it and its children."),
            click.option("-f", "--follow", is_flag=True, help="Also trace children created while tracing."),
            click.option("-d", "--duration", type=click.FloatRange(min=0), metavar="SECONDS",
                         help="Stop after SECONDS (0: attach, print the ready line, exit)."),
            click.option("--json", "as_json", is_flag=True, help="JSON Lines: events, then a summary."),
            click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
                         help="Write every event to FILE (Parquet, mode 0600)."),
            click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug)."),
        ]
        for option in reversed(options):
            fn = option(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            setup_logging(kwargs.get("verbose", 0))
            return fn(*args, **kwargs)

        return wrapper

    return decorate


class JsonLines:
    """Writes one JSON object per line, flushing each so a pipe sees events live."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def emit(self, obj: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps(obj, default=_json_default, separators=(",", ":")) + "\n")
        self.stream.flush()


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
    import pandas as pd

    col = arr[name]
    n = len(arr)
    words = _fixed_bytes_words(arr, name)
    mixed = words[:, 0].copy()
    for i in range(1, words.shape[1]):
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed ^= words[:, i]
    codes, _uniques = pd.factorize(mixed)
    first = np.empty(codes.max() + 1 if n else 0, dtype=np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
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
