"""Which BPF programs and links are loaded, as bpftool lists them.

A closed link is gone at once (its id is freed when its last fd closes), but
since Linux 6.9 a raw tracepoint link (tp_btf, raw_tp) drops its program only
after an RCU grace period (bpf_link_defer_dealloc_rcu_gp): for that long the
program is still listed although nothing runs it. A test that asserts nothing
stays loaded checks the links at once and waits for the programs' release.
"""
from __future__ import annotations

import json
import subprocess
import time


def _bpftool(*what: str) -> list[dict]:
    out = subprocess.run(["bpftool", "-j", *what, "show"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def programs(names: set[str] | None = None) -> dict[int, str]:
    """Loaded programs' ids and names (those named in names, if given)."""
    return {p["id"]: p.get("name", "") for p in _bpftool("prog") if names is None or p.get("name") in names}


def links_of(prog_ids: set[int]) -> list[dict]:
    """The links that attach any of these programs."""
    return [link for link in _bpftool("link") if link.get("prog_id") in prog_ids]


def wait_released(prog_ids: set[int], within_s: float = 10.0) -> set[int]:
    """Waits until none of these programs is loaded (the kernel's deferred
    free after a grace period); returns those still loaded at the deadline."""
    deadline = time.monotonic() + within_s
    while True:
        left = prog_ids & set(programs())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
