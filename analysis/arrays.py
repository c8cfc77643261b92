"""np.unique by a stable sort.

numpy's np.unique sorts with its default quicksort, which dispatches to
SIMD sorting networks (x86-simd-sort).  In the Debian 6.1 guest of
`make vmtest` (QEMU TCG, AVX2 without AVX-512) that path crashed the
interpreter with SIGSEGV in np.unique(..., return_inverse=True), in three
full runs out of three, always there and never on the host.  A stable sort
(radix or timsort) takes no such path; the results are the same."""
from __future__ import annotations

from typing import Any

__all__ = ["unique"]


def unique(values: Any, return_index: bool = False, return_inverse: bool = False,
           return_counts: bool = False) -> Any:
    """As np.unique on a 1-d array (first occurrence for return_index)."""
    import numpy as np

    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.ones(len(values), dtype=bool)
    if len(values):
        starts[1:] = ordered[1:] != ordered[:-1]
    uniques = ordered[starts]
    out: list[Any] = [uniques]
    if return_index:
        out.append(order[starts])   # stable: the first of equal values
    if return_inverse:
        inverse = np.empty(len(values), dtype=np.intp)
        inverse[order] = np.cumsum(starts) - 1
        out.append(inverse)
    if return_counts:
        out.append(np.diff(np.r_[np.flatnonzero(starts), len(values)]))
    return out[0] if len(out) == 1 else tuple(out)
