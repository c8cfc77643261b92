"""Which data completions of a disk the kernel ran no BPF program for.

On the 6.18 host, for about one run in a hundred or more of a cold-file read,
the kernel calls no BPF program on block_rq_complete for a completion that
ftrace's block:block_rq_complete event records (iotrace's program and a bare
counting one alike, with no recursion miss counted; every such completion ran
in softirq on top of a thread of another process).  A test that asserts every
bio is credited at its completion cannot tell that from iotrace failing to
credit one, unless it has a witness: ftrace's record of the tracepoint next
to a BPF program that records every completion it is run for and does
nothing else (selftest_rq_complete in bpf/selftest.bpf.c).
"""
from __future__ import annotations

import collections
import os
import re
import struct
import subprocess

import numpy as np

from kerntrace.tracers.engine.btf import Btf
from kerntrace.tracers.engine import object_path
from kerntrace.tracers.engine.libbpf import Object

TRACEFS = "/sys/kernel/tracing"
EVENT = os.path.join(TRACEFS, "events", "block", "block_rq_complete")
# "254,0 RA () 74731520 + 8128 be,0,4 [0]" on 6.18; no ioprio column on 6.1
LINE = re.compile(r"block_rq_complete: (\d+),(\d+) \S* \(.*?\) (\d+) \+ (\d+)")


def disk_devt(path: str) -> tuple[int, int]:
    """(major, minor) of the whole disk holding path."""
    st = os.stat(path)
    dev = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if os.path.exists(os.path.join(dev, "partition")):
        dev = os.path.dirname(dev)
    with open(os.path.join(dev, "dev")) as f:
        major, minor = f.read().split(":")
    return int(major), int(minor)


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class CompletionWitness:
    """Used as a context manager around a traced run; afterwards `skipped`
    lists (sector, bytes) of the disk's data completions that ftrace saw and
    no BPF program was run for."""

    def __init__(self, path: str) -> None:
        self.major, self.minor = disk_devt(path)
        self.skipped: list[tuple[int, int]] = []
        self.traced: list[tuple[int, int]] = []
        self._mounted = False

    def __enter__(self) -> "CompletionWitness":
        # The BPF witness is attached before ftrace records and detached
        # after it stops, so every completion ftrace records falls inside
        # the time the program was attached.
        self._obj = Object(object_path("selftest"))
        for prog in self._obj.programs():
            prog.autoload = prog.name == "selftest_rq_complete"
        self._obj.load()
        (prog,) = [p for p in self._obj.programs() if p.name == "selftest_rq_complete"]
        self._link = prog.attach()
        try:
            self._start_ftrace()
        except BaseException:
            self._link.destroy()
            self._obj.close()
            raise
        return self

    def _start_ftrace(self) -> None:
        if not os.path.exists(EVENT):
            subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)
            self._mounted = True
        with open(os.path.join(TRACEFS, "tracing_on")) as f:
            self._tracing_on = f.read().strip()
        _write(os.path.join(EVENT, "filter"), f"dev == {(self.major << 20) | self.minor}")
        _write(os.path.join(TRACEFS, "trace"), "")
        _write(os.path.join(TRACEFS, "tracing_on"), "1")
        _write(os.path.join(EVENT, "enable"), "1")

    def __exit__(self, *exc: object) -> None:
        try:
            _write(os.path.join(EVENT, "enable"), "0")
            with open(os.path.join(TRACEFS, "trace")) as f:
                lines = f.read().splitlines()
        finally:
            _write(os.path.join(EVENT, "filter"), "0")
            _write(os.path.join(TRACEFS, "trace"), "")
            _write(os.path.join(TRACEFS, "tracing_on"), self._tracing_on)
            if self._mounted:
                subprocess.run(["umount", TRACEFS], check=False)
            self._link.destroy()
            seen = self._read_bpf()
            self._obj.close()
        for line in lines:
            m = LINE.search(line)
            if m and (int(m[1]), int(m[2])) == (self.major, self.minor) and int(m[4]):
                self.traced.append((int(m[3]), int(m[4]) * 512))
        left = collections.Counter(self.traced)
        left.subtract(seen)
        self.skipped = sorted(left.elements())

    def _read_bpf(self) -> collections.Counter:
        entry = Btf(self._obj.btf_raw()).dtype("selftest_completion")
        table = self._obj.map("selftest_completions")
        devt = (self.major << 20) | self.minor
        seen: collections.Counter = collections.Counter()
        for idx in range(table.max_entries):
            c = np.frombuffer(table.lookup(struct.pack("<I", idx)), dtype=entry, count=1)[0]
            if not c["bytes"]:
                return seen
            if c["dev"] == devt:
                seen[(int(c["sector"]), int(c["bytes"]) & ~511)] += 1
        raise AssertionError(f"the witness recorded {table.max_entries} completions: too many to tell")

    def withheld_within(self, blocks) -> list[tuple[int, int]]:
        """The withheld completions that overlap the sectors blocks span:
        another process's I/O on the disk loosens nothing."""
        if blocks.empty:
            return list(self.skipped)
        lo = int(blocks["sector"].min())
        hi = int((blocks["sector"] + blocks["bytes"] // 512).max())
        return [(sector, nbytes) for sector, nbytes in self.skipped if sector < hi and sector + nbytes // 512 > lo]

    def assert_credits(self, blocks, total: int) -> None:
        """blocks (a traced reader's block frame) credit exactly total bytes,
        all at completions, unless the kernel withheld completions inside
        their sectors from BPF: then no more than total, and what was not
        credited at a completion fits in what it withheld there."""
        assert len(self.traced) >= 1, "ftrace recorded no completion of the disk: no witness"
        completed = int(blocks.loc[blocks["completed"], "bytes"].sum())
        listed = int(blocks["bytes"].sum())
        withheld = self.withheld_within(blocks)
        if not withheld:
            assert (listed, completed) == (total, total), \
                f"{listed} bytes listed, {completed} credited at completions, of {total}; BPF saw every completion"
            return
        assert listed <= total and completed >= total - sum(nbytes for _, nbytes in withheld), \
            f"{listed} bytes listed, {completed} credited at completions, of {total}; " \
            f"the kernel withheld {withheld} from BPF"
