"""``nstrace netns``: every network namespace on the host, named (under
/run/netns) or only held by a process (/proc/*/ns/net), with its processes,
links, addresses, IPv6 state (disable_ipv6 inside it), bridges without any
address (the "empty subnet" clue of the Docker ip6mr case) and IPv6
multicast routes.

Each namespace is inspected by a short-lived child that setns()es into it
and asks rtnetlink there (pyroute2), so the inventory needs no `ip netns
exec` and sees namespaces that have no name.
"""
from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, TextIO

import click

from .engine.clock import Clock
from .engine.environment import UsageProblem, require_root
from .engine.labels import label_of_pid
from .engine.tool import Tool
from .engine.tracedir import DEFAULT_FLUSH_S
from ..analysis.findings import Finding
from ..analysis.report import format_table, print_findings
from .engine.run import check_output_path, snapshot_envelope

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Namespace", "NetnsSnapshot", "command", "inventory", "inspect_netns", "list_namespaces"]

CLONE_NEWNET = 0x40000000
NETNS_DIRS = ("/run/netns", "/var/run/netns")
MAX_LINES_PER_NS = 64


@dataclass
class Namespace:
    inode: int
    names: list[str] = field(default_factory=list)
    pids: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""            # something that can be opened to enter it
    host: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def containers(self) -> list[str]:
        """The containers whose processes hold it (names or short ids)."""
        return sorted({p["container"] for p in self.pids if p.get("container")})

    def as_dict(self) -> dict[str, Any]:
        return {"inode": self.inode, "names": self.names, "host": self.host, "pids": self.pids,
                "containers": self.containers, **self.details}


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def list_namespaces() -> list[Namespace]:
    """Named namespaces and those held by processes, by inode."""
    found: dict[int, Namespace] = {}
    host_ino = 0
    # init's namespace; kthreadd (pid 2) is always in it too, when init is hidden
    for pid in ("1", "2"):
        try:
            host_ino = os.stat(f"/proc/{pid}/ns/net").st_ino
            break
        except OSError:
            continue
    seen_dirs = set()
    for d in NETNS_DIRS:
        try:
            real = os.path.realpath(d)
            if real in seen_dirs:
                continue
            seen_dirs.add(real)
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_dev == os.stat(d).st_dev:
                continue  # a plain file: the bind mount is gone (stale name)
            ns = found.setdefault(st.st_ino, Namespace(st.st_ino, path=path))
            ns.names.append(name)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        path = f"/proc/{pid}/ns/net"
        try:
            ino = os.stat(path).st_ino
        except OSError:
            continue  # exited, or a kernel thread we cannot see into
        ns = found.setdefault(ino, Namespace(ino, path=path))
        ns.pids.append({"pid": int(pid), "comm": _comm(pid), "container": label_of_pid(int(pid)).container})
        if not ns.path:
            ns.path = path
    for ns in found.values():
        ns.host = ns.inode == host_ino
        ns.pids.sort(key=lambda p: p["pid"])
    return sorted(found.values(), key=lambda n: (not n.host, n.inode))


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _mroutes6() -> list[str]:
    """/proc/net/ip6_mr_cache of the current namespace, without its header."""
    try:
        with open("/proc/self/net/ip6_mr_cache") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return []
    return [ln.strip() for ln in lines[:MAX_LINES_PER_NS] if ln.strip()]


def _collect_here() -> dict[str, Any]:
    """What this process's current network namespace holds."""
    from pyroute2 import IPRoute

    links: dict[int, dict[str, Any]] = {}
    with IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else None
            if link["flags"] & 0x8:  # IFF_LOOPBACK
                kind = kind or "loopback"
            links[link["index"]] = {
                "index": link["index"], "ifname": link.get_attr("IFLA_IFNAME"), "kind": kind or "device",
                "state": "UP" if link["flags"] & 0x1 else "DOWN", "master": link.get_attr("IFLA_MASTER"),
                "addresses": [],
            }
        for addr in ipr.get_addr():
            entry = links.get(addr["index"])
            if entry is None:
                continue
            family = "inet6" if addr["family"] == socket.AF_INET6 else "inet"
            entry["addresses"].append({"family": family, "address": f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}",
                                       "scope": "link" if addr["scope"] == 253 else "host" if addr["scope"] == 254 else "global"})
    bridges_empty = [
        l["ifname"] for l in links.values()
        if l["kind"] == "bridge" and not [a for a in l["addresses"] if a["scope"] != "link"]
    ]
    ipv6 = os.path.exists("/proc/sys/net/ipv6")
    return {
        "links": list(links.values()),
        "ipv6": ipv6,
        "disable_ipv6": {"all": _read_int("/proc/sys/net/ipv6/conf/all/disable_ipv6"),
                         "default": _read_int("/proc/sys/net/ipv6/conf/default/disable_ipv6")} if ipv6 else None,
        "mc_forwarding": _read_int("/proc/sys/net/ipv6/conf/all/mc_forwarding") if ipv6 else None,
        "bridges_without_address": bridges_empty,
        "ip6_mroutes": _mroutes6(),
    }


_libc = ctypes.CDLL(None, use_errno=True)


def inspect_netns(path: str) -> dict[str, Any]:
    """Enter the namespace at ``path`` in a child and collect what it holds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return {"error": f"cannot open {path}: {exc.strerror}"}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        status = 0
        try:
            os.close(read_fd)
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result: dict[str, Any] = {"error": f"setns: {os.strerror(err)}"}
            else:
                result = _collect_here()
            data = json.dumps(result).encode()
            while data:
                data = data[os.write(write_fd, data):]
        except BaseException as exc:  # report, never raise into the parent's stack
            try:
                os.write(write_fd, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            except OSError:
                pass
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    os.close(fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as r:
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks) or b'{"error": "no answer from the namespace probe"}')
    except ValueError:
        return {"error": "unreadable answer from the namespace probe"}


def inventory() -> list[Namespace]:
    namespaces = list_namespaces()
    for ns in namespaces:
        ns.details = inspect_netns(ns.path)
    return namespaces


def findings(namespaces: list[Namespace]) -> list[Any]:
    out = []
    rows = [{"netns": f"net:[{ns.inode}]", "name": ",".join(ns.names) or "-", "bridge": b}
            for ns in namespaces for b in ns.details.get("bridges_without_address", [])]
    if rows:
        out.append(Finding(
            "bridge-without-address", "info", f"{len(rows)} bridge(s) without any address",
            f"{len(rows)} bridges have no IPv4 or global IPv6 address: the \"empty subnet\" network of the Docker "
            "ip6mr_sk_done case looks like this. Harmless by itself; it marks a network whose containers churn "
            "namespaces without a usable subnet.",
            rows, "Check the network's configuration (docker network inspect / CNI config)."))
    return out


def _render(namespaces: list[Namespace]) -> str:
    rows = []
    for ns in namespaces:
        d = ns.details
        dis = d.get("disable_ipv6") or {}
        procs = ", ".join(f"{p['comm']}({p['pid']})" for p in ns.pids[:3]) + (f", +{len(ns.pids) - 3}" if len(ns.pids) > 3 else "")
        rows.append({
            "netns": f"net:[{ns.inode}]", "name": "(host)" if ns.host else (",".join(ns.names) or "-"),
            "pids": len(ns.pids), "processes": procs or "-", "containers": ",".join(ns.containers) or "-",
            "links": len(d.get("links", [])),
            "ipv6": "error" if "error" in d else ("off (not loaded)" if not d.get("ipv6")
                    else f"disable_ipv6 all={dis.get('all')} default={dis.get('default')}"),
            "mroutes6": len(d.get("ip6_mroutes", [])),
        })
    lines = [format_table(rows), ""]
    for ns in namespaces:
        d = ns.details
        if ns.host:
            label = "(host)"
        elif ns.names:
            label = ",".join(ns.names)
        else:
            label = f"held by pid {ns.pids[0]['pid']}" if ns.pids else ""
        title = f"net:[{ns.inode}] {label}".rstrip()
        if "error" in d:
            lines.append(f"{title}: {d['error']}")
            continue
        lines.append(title + ":")
        for link in d.get("links", [])[:MAX_LINES_PER_NS]:
            addrs = ", ".join(a["address"] for a in link["addresses"]) or "no address"
            flag = "  <- bridge without address" if link["ifname"] in d.get("bridges_without_address", []) else ""
            lines.append(f"  {link['ifname']:<16} {link['kind']:<9} {link['state']:<5} {addrs}{flag}")
        for route in d.get("ip6_mroutes", []):
            lines.append(f"  ip6 mroute: {route}")
    return "\n".join(lines)


# -- the trace directory (-o DIR) and `report` ---------------------------------

NAMESPACE_KIND = "netns_namespace"
LINK_KIND = "netns_link"


def _namespace_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([
        ("time", pa.timestamp("ns", tz="UTC")), ("ts_ns", pa.int64()), ("inode", pa.int64()),
        ("names", pa.list_(pa.string())), ("host", pa.bool_()),
        ("pids", pa.list_(pa.struct([("pid", pa.int64()), ("comm", pa.string()), ("container", pa.string())]))),
        ("error", pa.string()), ("ipv6", pa.bool_()), ("disable_ipv6_all", pa.int64()),
        ("disable_ipv6_default", pa.int64()), ("mc_forwarding", pa.int64()),
        ("bridges_without_address", pa.list_(pa.string())), ("ip6_mroutes", pa.list_(pa.string())),
    ])


def _link_schema() -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([
        ("time", pa.timestamp("ns", tz="UTC")), ("ts_ns", pa.int64()), ("netns", pa.int64()),
        ("index", pa.int64()), ("ifname", pa.string()), ("kind", pa.string()), ("state", pa.string()),
        ("master", pa.int64()),
        ("addresses", pa.list_(pa.struct([("family", pa.string()), ("address", pa.string()), ("scope", pa.string())]))),
    ])


def snapshot_tables(namespaces: Sequence[Namespace], ts_ns: int, offset_ns: int) -> list[tuple[str, "pa.Table"]]:
    """The inventory as records: one netns_namespace row per namespace (its
    IPv6 state, bridges without an address, mroutes; or the error that kept
    it from being read), one netns_link row per link, addresses inside."""
    import pyarrow as pa

    spaces, links = [], []
    stamp = {"time": ts_ns + offset_ns, "ts_ns": ts_ns}
    for ns in namespaces:
        d = ns.details
        dis = d.get("disable_ipv6") or {}
        spaces.append({
            **stamp, "inode": ns.inode, "names": ns.names, "host": ns.host, "pids": ns.pids, "error": d.get("error"),
            "ipv6": d.get("ipv6"), "disable_ipv6_all": dis.get("all"), "disable_ipv6_default": dis.get("default"),
            "mc_forwarding": d.get("mc_forwarding"), "bridges_without_address": d.get("bridges_without_address"),
            "ip6_mroutes": d.get("ip6_mroutes"),
        })
        for link in d.get("links", []):
            links.append({**stamp, "netns": ns.inode, **link})
    return [(NAMESPACE_KIND, pa.Table.from_pylist(spaces, schema=_namespace_schema())),
            (LINK_KIND, pa.Table.from_pylist(links, schema=_link_schema()))]


def _details(row: Mapping[str, Any], links: list[dict[str, Any]]) -> dict[str, Any]:
    """A netns_namespace row back as inspect_netns() gave it."""
    if row["error"] is not None:
        return {"error": row["error"]}
    ipv6 = row["ipv6"]
    return {
        "links": links,
        "ipv6": ipv6,
        "disable_ipv6": {"all": row["disable_ipv6_all"], "default": row["disable_ipv6_default"]} if ipv6 else None,
        "mc_forwarding": row["mc_forwarding"],
        "bridges_without_address": list(row["bridges_without_address"] or []),
        "ip6_mroutes": list(row["ip6_mroutes"] or []),
    }


class NetnsSnapshot(Tool):
    """`nstrace netns` as a tool `report` can rebuild: the namespaces, live
    from inventory() or replayed from a trace's netns_namespace and
    netns_link rows; the findings and the JSON come from them alike."""

    name = "netns"

    def __init__(self, namespaces: Optional[Sequence[Namespace]] = None) -> None:
        self.namespaces: list[Namespace] = list(namespaces or [])
        self._rows: list[dict[str, Any]] = []                    # replay: namespace rows, in order
        self._links: dict[int, list[dict[str, Any]]] = {}        # replay: netns inode -> its links

    @classmethod
    def from_trace(cls, options: Mapping[str, Any]) -> "NetnsSnapshot":
        return cls()

    def replay(self, kind: str, table: "pa.Table") -> None:
        if kind == NAMESPACE_KIND:
            self._rows += table.drop(["time", "ts_ns"]).to_pylist()
        elif kind == LINK_KIND:
            for link in table.drop(["time", "ts_ns"]).to_pylist():
                self._links.setdefault(link.pop("netns"), []).append(link)
        self.namespaces = [
            Namespace(r["inode"], names=list(r["names"] or []), pids=list(r["pids"] or []), host=bool(r["host"]),
                      details=_details(r, self._links.get(r["inode"], [])))
            for r in self._rows]

    def findings(self, duration_s: float = 0.0) -> list[Any]:
        return findings(self.namespaces)

    def summary(self, duration_s: float = 0.0) -> dict[str, Any]:
        return {"namespaces": [ns.as_dict() for ns in self.namespaces]}

    def print_report(self, envelope: Mapping[str, Any], found: Sequence[Any], out: TextIO) -> None:
        out.write(_render(self.namespaces) + "\n")
        print_findings(found, out)


def _write_trace(output: str, flush_s: float, tool: NetnsSnapshot, clock: Clock, started_ns: int,
                 envelope: Mapping[str, Any]) -> None:
    from .engine.snapshot import snapshot_meta, write_snapshot

    meta = snapshot_meta("netns", "nstrace", started_ns, clock, {}, "all network namespaces")
    write_snapshot(output, meta, snapshot_tables(tool.namespaces, clock.start_ns, clock.offset_ns), envelope,
                   flush_s=flush_s)


@click.command("netns")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: namespaces and findings.")
@click.option("-o", "--output", type=click.Path(), metavar="DIR",
              help="Also write the snapshot to the trace directory DIR (netns_namespace and netns_link records, "
                   "mode 0600; `report DIR` reads it back).")
@click.option("--flush", "flush_s", type=click.FloatRange(min=0.01), default=DEFAULT_FLUSH_S, hidden=True)
def command(as_json: bool, output: Optional[str], flush_s: float) -> int:
    """Every network namespace: its processes, links, addresses, IPv6 state,
    bridges without an address and IPv6 multicast routes."""
    require_root()
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        raise UsageProblem("nstrace netns needs pyroute2 (pip install pyroute2)") from None
    check_output_path(output)
    started_ns = time.time_ns()
    clock = Clock()
    tool = NetnsSnapshot(inventory())
    found = tool.findings()
    doc = snapshot_envelope("netns", started_ns, found, **tool.summary())
    if output:
        _write_trace(output, flush_s, tool, clock, started_ns, doc)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    tool.print_report(doc, found, sys.stdout)
    return 0
