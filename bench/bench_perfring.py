"""What a record costs on each transport, on bursts of the selftest object
(512 records of 40 bytes per getppid(), this process pinned to one CPU):

    kernel   the BPF program's run time per record (kernel.bpf_stats_enabled):
             bpf_ringbuf_reserve/submit against the per-CPU heap slot and
             bpf_perf_event_output
    reader   ns per record to bring a full ring's records into one numpy
             array: RingReader (ring buffer), PerfRings' bulk drain (perf
             buffer), and libbpf's perf_buffer__consume calling a Python
             function per record (the per-record way, which only copies
             the record's bytes; decoded once at the end)

A benchmark, not a test: figures from one run.  Development tooling, not
installed: run as root from the source tree,
``.venv/bin/python bench/bench_perfring.py [--records N]``.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from typing import Any, Optional

__all__ = ["main"]

BURST = 512
STATS = "/proc/sys/kernel/bpf_stats_enabled"
_SAMPLE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_LOST_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)


def _tracer(transport: str, ring_bytes: int) -> Any:
    from kerntrace.tracers.engine import BpfTracer, Hook

    return BpfTracer("selftest", hooks=[Hook("getppid", ("selftest_fentry", "selftest_kprobe", "selftest_getppid"))],
                     rings={"selftest_events": "selftest_event"}, options={"kt_filter_pids": True, "burst": BURST},
                     ring_bytes=ring_bytes, transport=transport)


def _prog_stats(tracer: Any) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over the object's loaded programs."""
    ns = cnt = 0
    for prog in tracer.obj.programs():
        if not prog.autoload:
            continue
        with open(f"/proc/self/fdinfo/{prog.fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "run_time_ns":
                    ns += int(value)
                elif key == "run_cnt":
                    cnt += int(value)
    return ns, cnt


def _fill(triggers: int) -> None:
    getppid = os.getppid
    for _ in range(triggers):
        getppid()


def bench_engine(transport: str, records: int, capacity_records: int, ring_bytes: int) -> dict[str, Any]:
    """Fill the ring to about 80 %, drain it through the engine; again until
    ``records`` were read."""
    tracer = _tracer(transport, ring_bytes)
    per_fill = max(1, int(capacity_records * 0.8) // BURST)
    total = lost = 0
    spent = 0.0
    with tracer:
        tracer.load()
        tracer.trace_pids([os.getpid()])
        tracer.attach()
        kernel_before = _prog_stats(tracer)
        while total < records:
            _fill(per_fill)
            start = time.perf_counter()
            batch = tracer.drain()["selftest_events"]
            spent += time.perf_counter() - start
            total += len(batch)
        kernel_ns, calls = (a - b for a, b in zip(_prog_stats(tracer), kernel_before))
        lost = tracer.lost_events
        reader = tracer.readers["selftest_events"]
        bulk = getattr(reader, "bulk_records", None)
    return {"transport": transport, "records": total, "lost": lost, "reader_ns_per_record": spent / total * 1e9,
            "kernel_ns_per_record": kernel_ns / (calls * BURST) if calls else None, "bulk_records": bulk}


def bench_libbpf_callbacks(records: int, pages: int, ring_bytes: int) -> dict[str, Any]:
    """libbpf's perf buffer, a Python callback per record."""
    import numpy as np

    from kerntrace.tracers.engine.libbpf import lib

    handle = lib()
    new = handle.perf_buffer__new
    new.restype = ctypes.c_void_p
    new.argtypes = [ctypes.c_int, ctypes.c_size_t, _SAMPLE_FN, _LOST_FN, ctypes.c_void_p, ctypes.c_void_p]
    consume = handle.perf_buffer__consume
    consume.restype = ctypes.c_int
    consume.argtypes = [ctypes.c_void_p]
    free = handle.perf_buffer__free
    free.restype = None
    free.argtypes = [ctypes.c_void_p]

    tracer = _tracer("perf buffer", ring_bytes)
    dtype = tracer.btf.dtype("selftest_event")
    itemsize = dtype.itemsize
    chunks: list[bytes] = []
    lost = [0]

    def on_sample(_ctx: Optional[int], _cpu: int, data: Optional[int], _size: int) -> None:
        chunks.append(ctypes.string_at(data, itemsize))

    def on_lost(_ctx: Optional[int], _cpu: int, count: int) -> None:
        lost[0] += count

    sample_cb, lost_cb = _SAMPLE_FN(on_sample), _LOST_FN(on_lost)
    capacity = pages * os.sysconf("SC_PAGE_SIZE") // (8 + ((4 + itemsize + 7) & ~7))
    per_fill = max(1, int(capacity * 0.8) // BURST)
    total = 0
    spent = 0.0
    with tracer:
        tracer.obj.load()  # the maps' slots are libbpf's here, not PerfRings'
        tracer._bss = tracer._global_map(".bss")  # what load() would find, for kt_lost_events
        pb = new(tracer.obj.map("selftest_events").fd, pages, sample_cb, lost_cb, None, None)
        if not pb:
            raise OSError(ctypes.get_errno(), "perf_buffer__new failed")
        try:
            tracer.trace_pids([os.getpid()])
            tracer.attach()
            while total < records:
                _fill(per_fill)
                start = time.perf_counter()
                ret = consume(pb)
                if ret < 0:
                    raise OSError(-ret, "perf_buffer__consume failed")
                batch = np.frombuffer(b"".join(chunks), dtype=dtype)
                spent += time.perf_counter() - start
                chunks.clear()
                total += len(batch)
            lost[0] += tracer.read_global("kt_lost_events")
        finally:
            tracer.detach()
            free(pb)
    return {"transport": "perf buffer, libbpf callback per record", "records": total, "lost": lost[0],
            "reader_ns_per_record": spent / total * 1e9}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_perfring: needs root", file=sys.stderr)
        return 2
    from kerntrace.tracers.engine.libbpf import num_possible_cpus
    from kerntrace.tracers.engine.tracer import perf_pages_per_cpu

    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    with open(STATS) as f:
        stats_before = f.read().strip()
    with open(STATS, "w") as f:
        f.write("1")
    ring_bytes = 32 << 20
    pages = perf_pages_per_cpu(ring_bytes, num_possible_cpus())
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        results = [
            bench_engine("ring buffer", args.records, ring_bytes // 48, ring_bytes),
            bench_engine("perf buffer", args.records, pages * page // 56, ring_bytes),
            bench_libbpf_callbacks(args.records, pages, ring_bytes),
        ]
    finally:
        with open(STATS, "w") as f:
            f.write(stats_before)
    for r in results:
        kernel = r.get("kernel_ns_per_record")
        print(f"{r['transport']:<42} reader {r['reader_ns_per_record']:7.1f} ns/record"
              + (f", kernel {kernel:6.1f} ns/record" if kernel is not None else "")
              + f"  ({r['records']} records, {r['lost']} lost)")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
