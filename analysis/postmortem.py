"""Read a kernel log after the fact (dmesg, vmcore-dmesg.txt, crash's
``log``, ``journalctl -k`` or a journal export) and recognize what killed
the machine: the ip6mr_sk_done NULL dereference during network-namespace
setup, any other oops or panic with its RIP function, OOM kills, hung tasks.

The file is streamed: lines are read with a length cap, only bounded
samples are kept (the context before an oops, a capped number of evidence
lines), so memory stays flat whatever the input.  Nothing in the input can
raise: unreadable bytes are replaced, binary runs are counted and skipped.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator, Optional

from .findings import Finding
from .precursors import classify_line

__all__ = ["LogSummary", "Oops", "findings", "parse_lines", "parse_stream", "strip_prefix"]

MAX_LINE = 4096          # bytes of one line kept; the rest of a longer line is dropped
MAX_OOPSES = 32
MAX_FRAMES = 64
MAX_OOPS_LINES = 160     # an oops report longer than this is closed
MAX_SAMPLES = 20         # example lines kept per category
CONTEXT_LINES = 40       # precursor lines remembered before an oops

_PREFIXES = (
    re.compile(r"^<\d+>"),                                              # crash log -m, /dev/kmsg levels
    re.compile(r"^\[\s*\d+\.\d+\]\s?"),                                # dmesg, vmcore-dmesg, crash log
    re.compile(r"^\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:]{8} \d{4}\]\s?"),  # dmesg -T
    re.compile(r"^[A-Z][a-z]{2} [ \d]\d [\d:]{8} \S+ kernel: (?:\[\s*\d+\.\d+\]\s?)?"),  # syslog
    re.compile(r"^\d{4}-\d\d-\d\dT[\d:.,]+(?:[+-][\d:]+|Z)? \S+ kernel: (?:\[\s*\d+\.\d+\]\s?)?"),  # journalctl -o short-iso
)

_OOPS_START = re.compile(
    r"BUG: unable to handle (?:kernel )?(?P<what>NULL pointer dereference|paging request)(?: at (?P<addr1>(?:0x)?[0-9a-f]+))?"
    r"|BUG: kernel (?P<what2>NULL pointer dereference), address: (?P<addr2>(?:0x)?[0-9a-f]+)"
    r"|(?P<gpf>general protection fault)"
    r"|kernel BUG at (?P<bugat>[^!\s]+)!"
    r"|(?P<oops>Oops: \S+)"
    r"|Unable to handle kernel (?P<arm>NULL pointer dereference|paging request) at virtual address (?P<addr3>[0-9a-f]+)"
)
_PANIC = re.compile(r"Kernel panic - not syncing: ?(?P<why>.*)")
_RIP = re.compile(r"\b(?:RIP|IP|NIP|PC is at|pc ?:)[: ]\s*(?:\[<[0-9a-f]+>\]\s*)?(?:[0-9a-f]{4}:)?(?P<fn>[A-Za-z_][\w.]*)\+0x[0-9a-f]+")
_FRAME = re.compile(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(?:\?\s*)?(?P<fn>[A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
_COMM = re.compile(r"\bPID: (?P<pid>\d+) Comm: (?P<comm>\S+)")
_TASK_LINE = re.compile(r"^(?:Pid|task): .*?(?:comm: (?P<comm>\S+))?")
_END = re.compile(r"---\[ end (?:trace|Kernel panic)")
_OOM_KILL = re.compile(r"(?P<scope>Memory cgroup out of memory|Out of memory)[^:]*: Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>[^)]*)\)")
_HUNG = re.compile(r"INFO: task (?P<comm>.+?):(?P<pid>\d+) blocked for more than (?P<secs>\d+) seconds")

IP6MR_SETUP_FRAMES = ("setup_net", "copy_net_ns", "ops_init", "icmpv6_sk_init", "create_new_namespaces",
                      "unshare_nsproxy_namespaces", "inet_ctl_sock_destroy", "sk_release_kernel")
IP6MR_CLOSE_FRAMES = ("rawv6_close", "inet_release", "inet6_release", "sock_release")


def strip_prefix(line: str) -> str:
    """The message of a log line, without level, timestamp or host."""
    for _ in range(3):
        before = line
        for p in _PREFIXES:
            line = p.sub("", line, count=1)
        if line == before:
            break
    return line


@dataclass
class Oops:
    kind: str                  # "NULL pointer dereference", "general protection fault", "kernel BUG", ...
    first_line: int            # 1-based line number in the file
    lines: list[str] = field(default_factory=list)
    address: Optional[str] = None
    rip: Optional[str] = None
    rip_line: Optional[str] = None
    comm: Optional[str] = None
    pid: Optional[int] = None
    frames: list[str] = field(default_factory=list)
    frame_lines: dict[str, str] = field(default_factory=dict)
    precursors_before: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def is_ip6mr(self) -> bool:
        # the faulting function; without a RIP line, the innermost frame
        if self.rip is not None:
            return self.rip == "ip6mr_sk_done"
        return bool(self.frames) and self.frames[0] == "ip6mr_sk_done"

    def reached_through(self, names: Iterable[str]) -> list[str]:
        wanted = set(names)
        return [f for f in self.frames if f in wanted]


@dataclass
class LogSummary:
    lines: int = 0
    bytes: int = 0
    binary_lines: int = 0
    long_lines: int = 0
    format: str = "text"
    oopses: list[Oops] = field(default_factory=list)
    oopses_dropped: int = 0
    panics: list[str] = field(default_factory=list)
    panic_count: int = 0
    oom_kills: int = 0
    oom_samples: list[dict[str, Any]] = field(default_factory=list)
    hung_tasks: int = 0
    hung_samples: list[dict[str, Any]] = field(default_factory=list)
    precursors: dict[str, int] = field(default_factory=dict)
    precursor_samples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "bytes": self.bytes, "binary_lines": self.binary_lines,
            "long_lines": self.long_lines, "format": self.format,
            "oopses": [{"kind": o.kind, "rip": o.rip, "address": o.address, "comm": o.comm, "pid": o.pid,
                        "line": o.first_line, "frames": o.frames[:16]} for o in self.oopses],
            "oopses_dropped": self.oopses_dropped, "panics": self.panics, "oom_kills": self.oom_kills,
            "hung_tasks": self.hung_tasks, "precursors": dict(self.precursors),
        }


def _looks_binary(raw: bytes) -> bool:
    if b"\0" in raw:
        return True
    if not raw:
        return False
    controls = sum(1 for b in raw if b < 9 or 13 < b < 32)
    return controls * 8 > len(raw)


class _Parser:
    def __init__(self) -> None:
        self.s = LogSummary()
        self.current: Optional[Oops] = None
        self.recent_precursors: collections.deque[str] = collections.deque(maxlen=CONTEXT_LINES)
        self.in_trace = False

    def feed(self, raw: bytes) -> None:
        s = self.s
        s.lines += 1
        s.bytes += len(raw)
        if _looks_binary(raw):
            s.binary_lines += 1
            return
        line = strip_prefix(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._line(line.strip(), line)

    def _close(self) -> None:
        if self.current is not None:
            self.current.closed = True
            self.current = None
            self.in_trace = False

    def _line(self, text: str, raw_text: str) -> None:
        s = self.s
        start = _OOPS_START.search(text)
        if start:
            # "BUG: unable to handle ..." is followed by "Oops:" and often "general protection
            # fault" lines of the same report: those continue it.
            if self.current is not None and len(self.current.lines) < 6 and not self.current.frames:
                self.current.lines.append(text)
            else:
                self._close()
                self._open(start, text)
            return
        panic = _PANIC.search(text)
        if panic:
            s.panic_count += 1
            if len(s.panics) < MAX_SAMPLES:
                s.panics.append(text)
            if self.current is not None:
                self.current.lines.append(text)
            self._close()
            return
        p = classify_line(text)
        if p is not None and p.kind != "ip6mr":
            s.precursors[p.kind] = s.precursors.get(p.kind, 0) + 1
            if len(s.precursor_samples) < MAX_SAMPLES:
                s.precursor_samples.append(text)
            self.recent_precursors.append(text)
        oom = _OOM_KILL.search(text)
        if oom:
            s.oom_kills += 1
            if len(s.oom_samples) < MAX_SAMPLES:
                s.oom_samples.append({"pid": int(oom.group("pid")), "comm": oom.group("comm"),
                                      "scope": "memcg" if oom.group("scope").startswith("Memory cgroup") else "system"})
        hung = _HUNG.search(text)
        if hung:
            s.hung_tasks += 1
            if len(s.hung_samples) < MAX_SAMPLES:
                s.hung_samples.append({"comm": hung.group("comm"), "pid": int(hung.group("pid")),
                                       "blocked_s": int(hung.group("secs"))})
        if self.current is not None:
            self._in_oops(text)

    def _open(self, m: "re.Match[str]", text: str) -> None:
        s = self.s
        if len(s.oopses) >= MAX_OOPSES:
            s.oopses_dropped += 1
            return
        if m.group("what") or m.group("what2") or m.group("arm"):
            kind = m.group("what") or m.group("what2") or m.group("arm")
        elif m.group("gpf"):
            kind = "general protection fault"
        elif m.group("bugat"):
            kind = f"kernel BUG at {m.group('bugat')}"
        else:
            kind = "oops"
        addr = m.group("addr1") or m.group("addr2") or m.group("addr3")
        self.current = Oops(kind=kind, first_line=s.lines, lines=[text], address=addr,
                            precursors_before=list(self.recent_precursors))
        s.oopses.append(self.current)

    def _in_oops(self, text: str) -> None:
        o = self.current
        assert o is not None
        if len(o.lines) < MAX_OOPS_LINES:
            o.lines.append(text)
        else:
            self._close()
            return
        if _END.search(text):
            self._close()
            return
        rip = _RIP.search(text)
        if rip and o.rip is None:
            o.rip = rip.group("fn")
            o.rip_line = text
            return
        comm = _COMM.search(text)
        if comm and o.comm is None:
            o.comm = comm.group("comm")
            o.pid = int(comm.group("pid"))
            return
        if text.startswith("Call Trace:") or text.startswith("Call trace:") or text.startswith("<TASK>"):
            self.in_trace = True
            return
        frame = _FRAME.match(text)
        if frame and (self.in_trace or o.rip is not None) and len(o.frames) < MAX_FRAMES:
            fn = frame.group("fn")
            if fn in ("RIP", "IP"):
                return
            o.frames.append(fn)
            o.frame_lines.setdefault(fn, text)


def _chunks(stream: IO[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(line, was_longer): lines of at most MAX_LINE bytes; of a longer line
    only its head, the rest skipped without being held."""
    while True:
        raw = stream.readline(MAX_LINE)
        if not raw:
            return
        if len(raw) == MAX_LINE and not raw.endswith(b"\n"):
            while True:
                rest = stream.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            yield raw, True
            continue
        yield raw, False


_EXPORT_FIELD = re.compile(rb"^[A-Z0-9_]+=")


def parse_stream(stream: IO[bytes]) -> LogSummary:
    """Parse a binary stream (a file opened 'rb')."""
    parser = _Parser()
    first = True
    export = False
    for raw, was_longer in _chunks(stream):
        if was_longer:
            parser.s.long_lines += 1
        if first:
            first = False
            export = raw.startswith(b"__CURSOR=") or raw.startswith(b"__REALTIME_TIMESTAMP=")
            if export:
                parser.s.format = "journal export"
        if export:
            if raw == b"MESSAGE\n":
                # binary-safe field: 64-bit little-endian length, the data, a newline
                size_raw = stream.read(8)
                if len(size_raw) < 8:
                    break
                size = int.from_bytes(size_raw, "little")
                data = stream.read(min(size, MAX_LINE))
                if size > MAX_LINE:
                    stream.seek(size - MAX_LINE, 1) if stream.seekable() else stream.read(size - MAX_LINE)
                stream.read(1)
                for part in data.split(b"\n"):
                    parser.feed(part.replace(b"\0", b""))
                continue
            if raw.startswith(b"MESSAGE="):
                parser.feed(raw[len(b"MESSAGE="):])
                continue
            if _EXPORT_FIELD.match(raw) or raw == b"\n" or b"=" not in raw:
                continue
        parser.feed(raw)
    parser._close()
    return parser.s


def parse_lines(lines: Iterable[str]) -> LogSummary:
    """Parse already-decoded lines (tests, live use)."""
    parser = _Parser()
    for line in lines:
        parser.feed(line.encode("utf-8", "replace")[:MAX_LINE])
    parser._close()
    return parser.s


def _ip6mr_finding(o: Oops) -> Finding:
    setup = o.reached_through(IP6MR_SETUP_FRAMES)
    close = o.reached_through(IP6MR_CLOSE_FRAMES)
    evidence: list[dict[str, Any]] = [{"line": o.first_line, "what": "oops", "text": o.lines[0]}]
    if o.rip_line:
        evidence.append({"line": "", "what": "RIP", "text": o.rip_line})
    for fn in close + setup:
        evidence.append({"line": "", "what": "stack", "text": o.frame_lines.get(fn, fn)})
    for text in o.precursors_before[-10:]:
        evidence.append({"line": "", "what": "before", "text": text})
    where = "during network-namespace setup (" + " <- ".join(setup) + ")" if setup else \
        "while closing a raw ICMPv6 socket"
    confidence = "matches the known crash" if setup and close else "partial match (stack incomplete)"
    summary = (f"NULL dereference in ip6mr_sk_done{' at ' + o.address if o.address else ''} {where}"
               f"{', task ' + o.comm if o.comm else ''}; {len(o.precursors_before)} allocation-failure/OOM lines before it; "
               f"{confidence}.")
    return Finding(
        "ip6mr-sk-done-oops", "critical",
        "Kernel NULL-deref in ip6mr_sk_done during network-namespace creation under memory pressure "
        "(missing upstream 15e668070a64)",
        summary, evidence,
        "Upgrade to a kernel with 15e668070a64 (4.11+, 4.4.y/4.9.y backports, RHEL/CentOS 7.7 3.10.0-1062+; "
        "5.18+ best); on RHEL/CentOS 7 use nokmem runc/kubelet or cgroup.memory=nokmem; cut memory pressure and "
        "namespace churn; ipv6.disable=1 only where IPv6 is unused. net.ipv6.conf.all.disable_ipv6=1 does not "
        "stop the per-namespace IPv6 setup. Run `nstrace ip6mr` on a reproduction host to see the churn and failures.",
        ["https://git.kernel.org/linus/15e668070a64bb97f102ad9cf3bccbca0545cda8"],
    )


def findings(summary: LogSummary) -> list[Finding]:
    out: list[Finding] = []
    others = []
    for o in summary.oopses:
        if o.is_ip6mr and ("NULL" in o.kind or o.kind in ("general protection fault", "oops", "paging request")):
            out.append(_ip6mr_finding(o))
        else:
            others.append(o)
    if others or summary.oopses_dropped:
        rows = [{"line": o.first_line, "kind": o.kind, "rip": o.rip or "?", "comm": o.comm or "?",
                 "stack": " <- ".join(o.frames[:6])} for o in others]
        out.append(Finding(
            "kernel-oops", "critical",
            f"{len(others) + summary.oopses_dropped} kernel oops{'es' if len(others) != 1 else ''}",
            "; ".join(f"{o.kind} in {o.rip or '?'}" for o in others[:5])
            + (f" (+{summary.oopses_dropped} more not kept)" if summary.oopses_dropped else "") + ".",
            rows, "Look up the RIP function and the stack in the kernel's changelog and bug trackers."))
    if summary.panic_count:
        out.append(Finding("kernel-panic", "critical", f"Kernel panic ({summary.panic_count})",
                           summary.panics[0] if summary.panics else "",
                           [{"text": p} for p in summary.panics]))
    if summary.oom_kills:
        memcg = sum(1 for r in summary.oom_samples if r["scope"] == "memcg")
        out.append(Finding("oom-kills", "warning", f"{summary.oom_kills} OOM kills",
                           f"{summary.oom_kills} processes killed by the OOM killer"
                           f" ({memcg} of the first {len(summary.oom_samples)} by a memory cgroup limit).",
                           summary.oom_samples, "Right-size memory limits; find what grew."))
    if summary.hung_tasks:
        out.append(Finding("hung-tasks", "warning", f"{summary.hung_tasks} hung-task reports",
                           f"{summary.hung_tasks} tasks blocked in D state past the hung-task timeout.",
                           summary.hung_samples, "Find what they wait on (iotrace dstate on a reproduction)."))
    alloc = {k: v for k, v in summary.precursors.items() if k not in ("oom",)}
    if alloc and not any(f.id == "ip6mr-sk-done-oops" for f in out):
        out.append(Finding("allocation-failures", "warning", "Kernel allocation failures",
                           ", ".join(f"{k} x{v}" for k, v in sorted(alloc.items())) + ".",
                           [{"text": t} for t in summary.precursor_samples[:10]],
                           "Memory pressure inside the kernel: on hosts that lack 15e668070a64 these can precede "
                           "the ip6mr_sk_done crash when namespaces are created."))
    return out
