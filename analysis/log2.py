"""Log2 histograms as bcc prints them (biolatency, funclatency): bucket k
holds [2**k, 2**(k+1) - 1], bucket 0 holds 0 and 1.

Buckets are powers of two of nanoseconds, whatever the source: the per-read
records' log-linear histograms (analysis/histogram.py), the kernel's 4 slots
per power of two of read latency (bpf/odirect.h) and the dstate program's
log2 counts all fall into them exactly.  (Powers of two of microseconds
would not: the kernel's slots straddle them.)

A histogram travels as a dict, the same in the summary envelope (--json),
in ``report`` and in the text report::

    {"title": "O_DIRECT read latency", "unit": "ns", "events": "reads", "count": 12,
     "buckets": [{"lo": 128, "hi": 255, "count": 12}, ...]}

``buckets`` runs from the first non-empty bucket to the last (empty ones
between included), so their counts add up to ``count``.  A tool may add
keys: ``note`` (printed under the histogram) and its own counts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, TextIO

from .histogram import SUB, SUB_BITS, Histogram

if TYPE_CHECKING:
    import numpy as np

__all__ = ["UNIT", "bucket_bounds", "from_histogram", "histogram_dict", "index_of", "indexes_of",
           "print_histograms", "render"]

UNIT = "ns"
_STARS = 40   # bcc's width of the distribution column


def index_of(value: int) -> int:
    """The log2 bucket of a non-negative integer."""
    return max(int(value), 1).bit_length() - 1


def indexes_of(values: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    """index_of of each value of an integer array (exact below 2**53)."""
    import numpy as np

    v = np.asarray(values, dtype=np.int64).clip(min=1)
    _m, e = np.frexp(v.astype(np.float64))   # v = m * 2**e, 0.5 <= m < 1
    return e.astype(np.int64) - 1


def bucket_bounds(index: int) -> tuple[int, int]:
    """(lo, hi), both included."""
    return (0 if index == 0 else 1 << index), (1 << (index + 1)) - 1


def from_histogram(hist: Histogram) -> dict[int, int]:
    """Counts per log2 bucket of a log-linear Histogram: exact, since each of
    its buckets lies within one power of two."""
    out: dict[int, int] = {}
    for b, c in hist.buckets.items():
        # below SUB a bucket is its value; above, bucket b starts at
        # (SUB + b % SUB) << (b // SUB - 1), in [2**(b // SUB + SUB_BITS - 1), ...)
        i = index_of(b) if b < SUB else b // SUB + SUB_BITS - 1
        out[i] = out.get(i, 0) + c
    return out


def histogram_dict(title: str, counts: Mapping[int, int], events: str, **extra: Any) -> dict[str, Any]:
    """The envelope's form of per-bucket counts ({log2 index: count}) of
    events ("reads", "sleeps", ...)."""
    used = [i for i, c in counts.items() if c]
    buckets = []
    if used:
        for i in range(min(used), max(used) + 1):
            lo, hi = bucket_bounds(i)
            buckets.append({"lo": lo, "hi": hi, "count": int(counts.get(i, 0))})
    return {"title": title, "unit": UNIT, "events": events, "count": sum(b["count"] for b in buckets),
            "buckets": buckets, **extra}


def _human_ns(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g}{unit}"
    return f"{ns:.0f}ns"


def render(hist: Mapping[str, Any]) -> str:
    """One histogram as bcc's print_log2_hist lays it out, under a title
    line; each row ends with its range in readable units.  "" when empty."""
    buckets = list(hist.get("buckets") or [])
    if not hist.get("count") or not buckets:
        return ""
    top = max(b["count"] for b in buckets)
    width = max(10, len(str(buckets[-1]["hi"])))
    unit = {"ns": "nsecs"}.get(hist.get("unit", UNIT), str(hist.get("unit")))
    events = str(hist.get("events", "events"))
    if hist["count"] == 1 and events.endswith("s"):
        events = events[:-1]
    lines = [f"{hist['title']} ({hist['count']} {events}):",
             f"{'':>{width - 5}}{unit:<{width + 9}} : count    distribution"]
    for b in buckets:
        stars = b["count"] * _STARS // top
        lines.append(f"{b['lo']:>{width}} -> {b['hi']:<{width}} : {b['count']:<8} "
                     f"|{'*' * stars:<{_STARS}}| {_human_ns(b['lo'])} to {_human_ns(b['hi'] + 1)}")
    return "\n".join(lines) + "\n"


def print_histograms(histograms: Mapping[str, Mapping[str, Any]], out: TextIO) -> None:
    """Each histogram that has events, after a blank line, with its note;
    of the others, only a note."""
    for hist in histograms.values():
        text = render(hist)
        if text:
            out.write("\n" + text + (f"({hist['note']})\n" if hist.get("note") else ""))
        elif hist.get("note"):
            out.write(f"\n{hist['title']}: {hist['note']}.\n")
