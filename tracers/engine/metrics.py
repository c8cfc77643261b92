"""--prometheus ADDR: a run's figures as Prometheus series on GET /metrics
(text exposition format 0.0.4), from a stdlib http.server thread.

A tool declares its series (Tool.metrics: Family objects); the engine owns
the server, adds kerntrace_info and the lost events, and bounds the
`container` label.  The figures are rendered on the run's own thread (the
sink's idle call, once a second) and the server thread only hands out the
last rendering: it never reads a tool's state while the run changes it."""
from __future__ import annotations

import ipaddress
import math
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from .environment import UsageProblem
from .sinks import Sink

if TYPE_CHECKING:
    from .clock import Clock
    from .tool import Tool
    from .tracer import BpfTracer

__all__ = ["CONTENT_TYPE", "ContainerOf", "Exporter", "Family", "MetricsSink", "Series", "TOP_CONTAINERS", "TopContainers",
           "engine_families", "name_cgroups", "parse_address", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Containers with a series of their own, per family; the rest add up in
# container="other".  A node runs tens of containers: 20 keeps a family
# under ~22 series (tetragon#1037: a pod label once made 305k).
TOP_CONTAINERS = 20
OTHER = "other"
REFRESH_S = 1.0


def parse_address(text: str) -> tuple[str, int]:
    """host:port, :port (every address), [v6]:port -> (host, port); bad
    input is a UsageProblem (one line, exit 2)."""
    bad = f"--prometheus {text!r}: expected HOST:PORT, :PORT or [IPv6]:PORT with a port 1-65535"
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageProblem(bad)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageProblem(bad) from None
    elif ":" in host or any(c.isspace() for c in host):
        raise UsageProblem(bad)
    return host, int(port)


# -- the series -------------------------------------------------------------------


@dataclass
class Family:
    """One metric: its name (counters end in _total), type, help, and
    samples as (labels, value)."""

    name: str
    kind: str    # "gauge" or "counter"
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> "Family":
        self.samples.append((labels, float(value)))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def render(families: Iterable[Family]) -> str:
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for labels, value in f.samples:
            cells = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{f.name}{{{cells}}} {_number(value)}" if cells else f"{f.name} {_number(value)}")
    return "\n".join(lines) + "\n"


class TopContainers:
    """The containers of one family that keep a series of their own: the
    top `n` by value, the rest summed into container="other".  For a counter
    a container once chosen stays chosen, so neither its series nor
    "other" ever goes down (which Prometheus would read as a reset)."""

    def __init__(self, counter: bool, n: int = TOP_CONTAINERS) -> None:
        self.counter = counter
        self.n = n
        self.chosen: list[str] = []

    def bucket(self, values: Mapping[tuple[str, ...], float]) -> dict[tuple[str, ...], float]:
        """values keyed by (container, *other labels) -> the same keys, with
        containers beyond the top n as OTHER."""
        per_container: dict[str, float] = {}
        for key, value in values.items():
            per_container[key[0]] = per_container.get(key[0], 0.0) + value
        ranked = sorted(per_container, key=lambda c: (-per_container[c], c))
        chosen = [c for c in self.chosen if c in per_container] if self.counter else []
        for c in ranked:
            if len(chosen) >= self.n:
                break
            if c not in chosen:
                chosen.append(c)
        if self.counter:
            self.chosen = list(dict.fromkeys(self.chosen + chosen))
        keep = set(chosen)
        out: dict[tuple[str, ...], float] = {}
        for key, value in values.items():
            k = key if key[0] in keep else (OTHER, *key[1:])
            out[k] = out.get(k, 0.0) + value
        return out


def name_cgroups(cgroup_ids: Sequence[int], v1_ids: Sequence[int]) -> None:
    """Names these cgroups now, on the run's thread, while they exist: a
    container that ends before the next rendering keeps its name (the
    resolver keeps a label once complete)."""
    from .labels import labels_of

    pairs = list(dict.fromkeys(zip(cgroup_ids, v1_ids)))   # a batch: many records, few cgroups
    labels_of([a for a, _b in pairs], [b for _a, b in pairs])


class ContainerOf:
    """Container names for the `container` label ("" for the host, whose
    systemd units are not containers), from a record's cgroup ids or a
    live pid (cached: a pid's container is looked up once)."""

    def __init__(self) -> None:
        self._pids: dict[int, str] = {}

    def cgroup(self, cgroup_id: int, cgroup_v1_id: int) -> str:
        from .labels import label_of

        return _name(label_of(cgroup_id, cgroup_v1_id))

    def pid(self, pid: int) -> str:
        name = self._pids.get(pid)
        if name is None:
            from .labels import label_of_pid

            name = self._pids[pid] = _name(label_of_pid(pid))
            if len(self._pids) > 65536:   # a long run's pids: start over rather than grow
                self._pids = {pid: name}
        return name


def _name(label: Any) -> str:
    return label.container if label.runtime or label.container_id or label.pod else ""


def by_container(family: Family, values: Mapping[tuple[str, ...], float], top: TopContainers,
                 labels: Sequence[str] = ()) -> Family:
    """family's samples from values keyed (container, *labels), bounded."""
    for key, value in sorted(top.bucket(values).items()):
        family.add(value, container=key[0], **dict(zip(labels, key[1:])))
    return family


class Series:
    """A tool's families by name, each with its own container bucketing
    kept across renderings (what Tool.metrics builds on)."""

    def __init__(self, n: int = TOP_CONTAINERS) -> None:
        self.n = n
        self._tops: dict[str, TopContainers] = {}

    def per_container(self, name: str, kind: str, help: str, values: Mapping[tuple[str, ...], float],
                      labels: Sequence[str] = ()) -> Family:
        top = self._tops.get(name)
        if top is None:
            top = self._tops[name] = TopContainers(kind == "counter", self.n)
        return by_container(Family(name, kind, help), values, top, labels)


# -- the server -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, ctype, status = self.server.body, CONTENT_TYPE, 200
        elif path == "/":
            body, ctype, status = b'<a href="/metrics">/metrics</a>\n', "text/html", 200
        else:
            body, ctype, status = b"not found\n", "text/plain", 404
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass   # a scrape a second is not news


class _Server(HTTPServer):
    body = b""


class _Server6(_Server):
    address_family = socket.AF_INET6


class Exporter:
    """The bound socket (bound when the options are read: a port in use
    stops the command before anything is attached) and its thread."""

    def __init__(self, address: str) -> None:
        host, port = parse_address(address)
        self.address = address
        server_class = _Server6 if ":" in host else _Server
        try:
            self.server = server_class((host or "0.0.0.0", port), _Handler)
        except OSError as exc:
            raise UsageProblem(f"--prometheus {address}: {exc.strerror or exc}") from None
        self.port = self.server.server_address[1]
        self._thread: Optional[threading.Thread] = None

    def publish(self, text: str) -> None:
        self.server.body = text.encode("utf-8")   # one reference swap: the thread sees old or new

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="kerntrace-metrics", daemon=True)
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()


def engine_families(info: Mapping[str, str], tracers: Mapping[str, "BpfTracer"]) -> list[Family]:
    """The series of every run: what runs, and the lost events (the kernel
    counts them per BPF object, not per ring)."""
    lost = Family("kerntrace_lost_events_total", "counter",
                  "Records the kernel could not hand over (a ring full), per BPF object.")
    for name, tracer in sorted(tracers.items()):
        lost.add(tracer.lost_events, object=name)
    return [Family("kerntrace_info", "gauge", "The tracing run: tool, kerntrace version, kernel, backend.")
            .add(1, **info), lost]


class MetricsSink(Sink):
    """The exporter as a plug-in of the run: kerntrace_info, the lost
    events per BPF object, and the tool's own series."""

    idle_s = 0.25

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.tool: Optional["Tool"] = None
        self.tracers: Mapping[str, "BpfTracer"] = {}
        self.info: dict[str, str] = {}
        self.containers = ContainerOf()
        self.series = Series()
        self._next = 0.0

    def attached(self, tracers: Mapping[str, "BpfTracer"]) -> None:
        self.tracers = tracers

    def begin(self, tool: "Tool", clock: "Clock", meta: Mapping[str, Any]) -> None:
        self.tool = tool
        self.info = {"tool": str(meta.get("tool", tool.name)), "version": str(meta.get("version", "")),
                     "kernel": str(meta.get("kernel", "")), "backend": str(meta.get("backend") or "")}
        self.refresh()
        self.exporter.start()

    def idle(self) -> None:
        if time.monotonic() >= self._next:
            self.refresh()

    def end(self, tool: "Tool", envelope: Mapping[str, Any], findings: Sequence[Any]) -> None:
        self.refresh()
        self.exporter.close()

    def families(self) -> list[Family]:
        out = engine_families(self.info, self.tracers)
        if self.tool is not None:
            out += self.tool.metrics(self.series, self.containers)
        return out

    def refresh(self) -> None:
        self._next = time.monotonic() + REFRESH_S
        self.exporter.publish(render(self.families()))
