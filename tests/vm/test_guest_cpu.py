"""The guest's CPU computes what the host's does: numpy sorts every table
the tools build, and QEMU's TCG once ran its AVX2 argsort wrongly (vmtest
turns AVX2 off for the guest)."""
import ctypes
import mmap

import numpy as np


def test_argsort_of_int64_arrays_up_to_a_page_end_is_sorted():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    buf = mmap.mmap(-1, 2 * page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    # the array ends where an unreadable page starts: a vector load past its
    # end faults, as it would at the end of a real heap allocation
    assert libc.mprotect(addr + page, page, 0) == 0, ctypes.get_errno()
    rng = np.random.default_rng(7)
    unsorted = []
    for n in range(1, 200):
        values = np.frombuffer(buf, dtype=np.int64, count=n, offset=page - 8 * n)
        values[:] = rng.integers(0, 1 << 40, n)
        if not (np.diff(values[values.argsort(kind="quicksort")]) >= 0).all():
            unsorted.append(n)
        del values
    assert not unsorted, f"argsort left int64 arrays of these lengths out of order: {unsorted}"
