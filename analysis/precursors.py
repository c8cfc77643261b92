"""Kernel-log lines that precede the ip6mr_sk_done crash, as the kernel
prints them (net/socket.c, net/ipv6/icmp.c, mm/slub.c, mm/page_alloc.c,
mm/oom_kill.c).  One list serves the live tracer (its 8-byte needles filter
console lines in the kernel) and the postmortem reader."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["PRECURSORS", "Precursor", "classify_line"]


@dataclass(frozen=True)
class Precursor:
    kind: str
    needle: bytes        # exactly 8 bytes the line contains: the in-kernel prefilter
    pattern: "re.Pattern[str]"
    meaning: str


PRECURSORS: tuple[Precursor, ...] = (
    Precursor("socket-alloc", b"no more ", re.compile(r"socket: no more sockets"),
              "sock_alloc() failed: no inode for a new socket"),
    Precursor("icmp6-ctl-socket", b"ICMP6 co", re.compile(r"Failed to initialize the ICMP6 control socket(?: \(err (-?\d+)\))?"),
              "icmpv6_sk_init() failed while a network namespace was being set up"),
    Precursor("slub-alloc", b"SLUB: Un", re.compile(r"SLUB: Unable to allocate memory"),
              "a slab allocation failed (often a memcg kmem limit)"),
    Precursor("sock-inode-cache", b"sock_ino", re.compile(r"cache: sock_inode_cache"),
              "the failed slab was sock_inode_cache: sockets could not be allocated"),
    Precursor("page-alloc-failure", b"page all", re.compile(r"page allocation failure"),
              "a page allocation failed"),
    Precursor("oom", b"t of mem", re.compile(r"(?:Memory cgroup out of memory|Out of memory)"),
              "the OOM killer ran"),
    Precursor("ip6mr", b"ip6mr_sk", re.compile(r"ip6mr_sk_done"),
              "the kernel log names ip6mr_sk_done"),
)

assert all(len(p.needle) == 8 for p in PRECURSORS)


def classify_line(line: str) -> Optional[Precursor]:
    """The precursor a log line is, or None."""
    for p in PRECURSORS:
        if p.pattern.search(line):
            return p
    return None
