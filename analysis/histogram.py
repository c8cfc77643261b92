"""Log-linear histograms of latencies: fixed memory whatever the run's
length, quantiles within 0.4 % of the exact ones.

A value below 2**SUB_BITS is its own bucket; above, each power of two is
split into 2**SUB_BITS equal buckets (as HdrHistogram does), so a bucket is
never wider than 1/128 of its lower bound and its midpoint is within 1/256
of any value in it.  Buckets are kept sparse: latencies cluster."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional
from .arrays import unique

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Histogram", "bucket_of", "bucket_value"]

SUB_BITS = 7
SUB = 1 << SUB_BITS


def bucket_of(values: "np.ndarray[Any, Any]") -> "np.ndarray[Any, Any]":
    """The bucket of each non-negative integer value (int64 array)."""
    import numpy as np

    v = np.asarray(values, dtype=np.int64).clip(min=0)
    # frexp: v = m * 2**e with 0.5 <= m < 1, exact for v < 2**53
    _m, e = np.frexp(v.astype(np.float64))
    shift = (e.astype(np.int64) - 1 - SUB_BITS).clip(min=0)
    return np.where(v < SUB, v, (shift + 1) * SUB + ((v >> shift) - SUB))


def bucket_value(bucket: int) -> float:
    """The midpoint of a bucket (the value itself below 2**SUB_BITS)."""
    if bucket < SUB:
        return float(bucket)
    shift = bucket // SUB - 1
    low = (SUB + bucket % SUB) << shift
    return low + ((1 << shift) - 1) / 2.0


class Histogram:
    """Counts per bucket, with the exact count, sum, minimum and maximum."""

    __slots__ = ("buckets", "count", "total", "low", "high")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.low: Optional[int] = None
        self.high: Optional[int] = None

    def add_buckets(self, buckets: Iterable[int], counts: Iterable[int], total: int, low: int, high: int) -> None:
        """Values already bucketed (bucket_of), with their sum and extremes."""
        mine = self.buckets
        n = 0
        for b, c in zip(buckets, counts):
            mine[b] = mine.get(b, 0) + c
            n += c
        if not n:
            return
        self.count += n
        self.total += total
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def add(self, values: "np.ndarray[Any, Any]") -> None:
        import numpy as np

        values = np.asarray(values, dtype=np.int64)
        if not len(values):
            return
        buckets, counts = unique(bucket_of(values), return_counts=True)
        self.add_buckets(buckets.tolist(), counts.tolist(), int(values.sum()), int(values.min()), int(values.max()))

    def merge(self, other: "Histogram") -> None:
        if other.count:
            self.add_buckets(other.buckets.keys(), other.buckets.values(), other.total, other.low or 0,
                             other.high or 0)

    def quantile(self, q: float) -> Optional[float]:
        """The value at rank round(q * (count - 1)) (pandas' "nearest"),
        as its bucket's midpoint kept within the exact extremes."""
        if not self.count:
            return None
        rank = int(round(q * (self.count - 1)))
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen > rank:
                value = bucket_value(b)
                assert self.low is not None and self.high is not None
                return min(max(value, float(self.low)), float(self.high))
        return float(self.high or 0)

    @property
    def mean(self) -> Optional[float]:
        return self.total / self.count if self.count else None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "low": self.low, "high": self.high,
                "buckets": sorted(self.buckets.items())}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Histogram":
        h = cls()
        h.buckets = {int(b): int(c) for b, c in d.get("buckets", [])}
        h.count, h.total, h.low, h.high = d["count"], d["total"], d["low"], d["high"]
        return h
