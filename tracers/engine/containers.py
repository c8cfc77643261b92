"""Cgroup ids -> containers.

Every record carries the task's cgroup v2 id and the id of its cgroup in the v1
memory hierarchy (kernfs ids = directory inode numbers).  This module turns
them into a cgroup path, then a container (runtime + id) or systemd unit, then
a display name, all cached; and turns --container/--cgroup filters into id
sets.  Pure user space: mountinfo, the cgroup trees, the Docker socket and the
runtimes' on-disk state, with the standard library only.
"""
from __future__ import annotations

import functools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from .environment import UsageProblem

__all__ = [
    "CgroupIndex",
    "CgroupRef",
    "ContainerLabel",
    "ContainerNames",
    "Containers",
    "DockerClient",
    "HOST",
    "parse_cgroup_path",
]

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_ROOT = "/var/lib/docker"
PODMAN_CONTAINERS = "/var/lib/containers/storage/overlay-containers/containers.json"
KUBE_LOG_DIR = "/var/log"
NAME_RETRY_S = 2.0
LABEL_RETRY_S = 0.5
V2_ROOT_ID = 1

K8S_CONTAINER = "io.kubernetes.container.name"
K8S_POD = "io.kubernetes.pod.name"
K8S_NAMESPACE = "io.kubernetes.pod.namespace"


def _now() -> float:
    # One clock for every rate limit here, so tests can move it.
    return time.monotonic()


# ---------------------------------------------------------------- cgroup paths


@dataclass(frozen=True)
class CgroupRef:
    runtime: str  # "docker", "containerd", "cri-o", "podman", "systemd" or "" (host, nothing known)
    container_id: str  # full id (64 hex) or ""
    pod_uid: str  # Kubernetes pod UID with dashes ("" when none)
    unit: str  # systemd unit for runtime "systemd", else ""


HOST = CgroupRef("", "", "", "")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID_PREFIX = re.compile(r"[0-9a-f]{12,64}")
# <kind>-<id>[.scope]: systemd-driver scopes of every runtime, plus cri-o and
# podman under cgroupfs, which keep the prefix without the .scope.
_PREFIXED = re.compile(
    r"(?P<kind>docker|cri-containerd|crio-conmon|crio|libpod-conmon|libpod)-(?P<id>[0-9a-f]{64})(?:\.scope)?"
)
_KIND_RUNTIME = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "crio-conmon": "cri-o",
    "libpod": "podman",
    "libpod-conmon": "podman",
}
# Pod UIDs are UUIDs, or 32 hex for static pods (a hash of the manifest); the
# systemd driver writes their dashes as underscores.
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_POD = re.compile(rf"pod(?P<uid>{_UID})|(?:[\w.-]*-)?pod(?P<suid>{_UID})\.slice")
_UNIT_SUFFIXES = (".service", ".scope", ".slice")


def parse_cgroup_path(path: str) -> CgroupRef:
    """What a cgroup path (relative to its hierarchy root) belongs to: the
    deepest container-looking component wins, else the deepest systemd unit."""
    return _parse(tuple(p for p in path.strip().split("/") if p))


@functools.lru_cache(maxsize=16384)
def _parse(parts: tuple[str, ...]) -> CgroupRef:
    for i in range(len(parts) - 1, -1, -1):
        found = _container_at(parts, i)
        if found is not None:
            return CgroupRef(found[0], found[1], _pod_uid(parts[:i]), "")
    pod_uid = _pod_uid(parts)
    if pod_uid:
        return CgroupRef("", "", pod_uid, "")
    for part in reversed(parts):
        if part.endswith(_UNIT_SUFFIXES) and part != "-.slice":
            return CgroupRef("systemd", "", "", part)
    return HOST


def _container_at(parts: tuple[str, ...], i: int) -> Optional[tuple[str, str]]:
    m = _PREFIXED.fullmatch(parts[i])
    if m:
        return _KIND_RUNTIME[m["kind"]], m["id"]
    if _HEX64.fullmatch(parts[i]):
        return _bare_id_runtime(parts[:i]), parts[i]
    return None


def _bare_id_runtime(ancestors: tuple[str, ...]) -> str:
    """A bare 64-hex directory says nothing itself: its parents tell."""
    parent = ancestors[-1] if ancestors else ""
    if parent == "docker":
        return "docker"
    if parent == "libpod_parent":
        return "podman"
    if any(a.startswith("kubepods") for a in ancestors):
        return "containerd"
    # Docker's --cgroup-parent (CI runners' /actions_job/<id>, ...) is the
    # common source of a bare id under any other parent.
    return "docker"


def _pod_uid(parts: tuple[str, ...]) -> str:
    for part in reversed(parts):
        m = _POD.fullmatch(part)
        if m:
            return (m["uid"] or m["suid"]).replace("_", "-")
    return ""


def _is_id_prefix(text: str) -> bool:
    return bool(_ID_PREFIX.fullmatch(text))


# ------------------------------------------------------------- cgroup index


@dataclass(frozen=True)
class _Mount:
    point: str  # where it is mounted
    root: str  # the hierarchy directory shown there ("/" unless a sub-tree)
    fstype: str  # "cgroup" or "cgroup2"
    options: tuple[str, ...]  # super options: the v1 controllers


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _read_mountinfo(path: str) -> list[_Mount]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < sep + 3 or fields[sep + 1] not in ("cgroup", "cgroup2"):
            continue
        options = tuple(fields[sep + 3].split(",")) if len(fields) > sep + 3 else ()
        mounts.append(_Mount(_unescape(fields[4]), _unescape(fields[3]), fields[sep + 1], options))
    return mounts


def _pick_hierarchies(mounts: list[_Mount]) -> dict[str, _Mount]:
    """The first cgroup2 mount as "v2", the first v1 memory mount as "v1"."""
    chosen: dict[str, _Mount] = {}
    for m in mounts:
        if m.fstype == "cgroup2":
            chosen.setdefault("v2", m)
        elif "memory" in m.options:
            chosen.setdefault("v1", m)
    return {h: chosen[h] for h in ("v2", "v1") if h in chosen}


def _norm(path: str) -> str:
    return "/" + "/".join(p for p in path.strip().split("/") if p)


def _join(root: str, rel: str) -> str:
    return _norm(root + "/" + rel)


def _walk(top: str) -> Iterator[tuple[str, int]]:
    """(path relative to top, st_ino) for top and every directory below it."""
    try:
        yield "", os.stat(top).st_ino
    except OSError:
        return
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = os.scandir(top + rel)
        except OSError:
            continue  # removed while we walked
        with entries:
            for entry in entries:
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    ino = entry.stat(follow_symlinks=False).st_ino
                except OSError:
                    continue
                sub = f"{rel}/{entry.name}"
                yield sub, ino
                stack.append(sub)


class CgroupIndex:
    """cgroup id -> path, per hierarchy "v2" and "v1" (the v1 memory hierarchy).
    Built by walking the mount points found in a mountinfo file (cgroup2 mounts for v2; the
    cgroup v1 mount whose super options contain 'memory' for v1); a directory's id is its
    st_ino. Paths are relative to the hierarchy root ("/docker/<id>").
    A miss rescans (new containers appear), at most once per `rescan_s` (0.5 s)."""

    def __init__(self, mountinfo: str = "/proc/self/mountinfo", rescan_s: float = 0.5) -> None:
        self._mountinfo = mountinfo
        self._rescan_s = rescan_s
        self._scanned_at: Optional[float] = None
        self._all: list[_Mount] = []
        self._chosen: dict[str, _Mount] = {}
        self._by_id: dict[str, dict[int, str]] = {}
        self._by_path: dict[str, dict[str, int]] = {}
        self._by_container: Optional[dict[str, dict[str, list[int]]]] = None
        # Ids asked for and not found: when they were first asked for, and
        # those a later scan still missed.  Kernfs ids are never reused, so a
        # cgroup that a scan after the event misses is gone for good.
        self._missed: dict[tuple[str, int], float] = {}
        self._gone: set[tuple[str, int]] = set()

    # -- scanning

    def _scan(self) -> None:
        started = _now()
        mounts = _read_mountinfo(self._mountinfo)
        chosen = _pick_hierarchies(mounts)
        by_id: dict[str, dict[int, str]] = {}
        by_path: dict[str, dict[str, int]] = {}
        for hierarchy, mount in chosen.items():
            ids: dict[int, str] = {}
            for rel, ino in _walk(mount.point):
                ids[ino] = _join(mount.root, rel)
            by_id[hierarchy] = ids
            by_path[hierarchy] = {p: i for i, p in ids.items()}
        # Swapped in whole, so a reader never sees half a scan.
        self._all, self._chosen, self._by_id, self._by_path = mounts, chosen, by_id, by_path
        self._by_container = None
        self._scanned_at = started

    def _ensure_scanned(self) -> None:
        if self._scanned_at is None:
            self._scan()

    def _rescan_if_due(self) -> bool:
        if self._scanned_at is not None and _now() - self._scanned_at < self._rescan_s:
            return False
        self._scan()
        return True

    # -- queries

    def mounts(self) -> dict[str, str]:
        self._ensure_scanned()
        return {h: m.point for h, m in self._chosen.items()}

    def path(self, hierarchy: str, cgroup_id: int) -> Optional[str]:
        self._ensure_scanned()
        if hierarchy not in self._chosen:
            return None
        found = self._by_id.get(hierarchy, {}).get(cgroup_id)
        key = (hierarchy, cgroup_id)
        if found is None and key not in self._gone:
            first = self._missed.setdefault(key, _now())
            if self._scanned_at < first and self._rescan_if_due():
                found = self._by_id.get(hierarchy, {}).get(cgroup_id)
            if found is None and self._scanned_at >= first:
                self._gone.add(key)
        if found is not None or key in self._gone:
            self._missed.pop(key, None)
        return found

    def id_of(self, hierarchy: str, path: str) -> Optional[int]:
        self._ensure_scanned()
        if hierarchy not in self._chosen:
            return None
        path = _norm(path)
        found = self._by_path.get(hierarchy, {}).get(path)
        if found is None and self._rescan_if_due():
            found = self._by_path.get(hierarchy, {}).get(path)
        return found

    def ids_under(self, hierarchy: str, path: str) -> list[int]:
        path = _norm(path)
        if self.id_of(hierarchy, path) is None:
            return []
        prefix = "/" if path == "/" else path + "/"
        return sorted(i for p, i in self._by_path.get(hierarchy, {}).items() if p == path or p.startswith(prefix))

    def find_container(self, container_id: str) -> dict[str, list[int]]:
        """{} for an unknown id, a prefix shorter than 12 hex or one that
        several containers share."""
        full = self._full_ids(container_id)
        if len(full) != 1:
            return {}
        (cid,) = full
        by_container = self._containers()
        return {h: sorted(by_container[h][cid]) for h in self._chosen if cid in by_container[h]}

    def hierarchy_path(self, path: str) -> str:
        """A filesystem path under any cgroup mount ("/sys/fs/cgroup/memory/docker/x")
        as a path within its hierarchy ("/docker/x"); any other path is taken as
        one within a hierarchy already."""
        self._ensure_scanned()
        path = _norm(path)
        best: Optional[_Mount] = None
        for m in self._all:
            point = _norm(m.point)
            if point != "/" and (path == point or path.startswith(point + "/")):
                if best is None or len(point) > len(_norm(best.point)):
                    best = m
        if best is None:
            return path
        return _join(best.root, path[len(_norm(best.point)):])

    # -- containers

    def _containers(self) -> dict[str, dict[str, list[int]]]:
        """Per hierarchy, container id -> ids of its directories; built on
        demand once per scan."""
        if self._by_container is None:
            out: dict[str, dict[str, list[int]]] = {}
            for hierarchy, ids in self._by_id.items():
                per: dict[str, list[int]] = {}
                for ino, path in ids.items():
                    cid = parse_cgroup_path(path).container_id
                    if cid:
                        per.setdefault(cid, []).append(ino)
                out[hierarchy] = per
            self._by_container = out
        return self._by_container

    def _full_ids(self, prefix: str) -> set[str]:
        """Full container ids in the index that start with prefix (>= 12 hex)."""
        if not _is_id_prefix(prefix):
            return set()
        self._ensure_scanned()
        found = self._ids_with_prefix(prefix)
        if not found and self._rescan_if_due():
            found = self._ids_with_prefix(prefix)
        return found

    def _ids_with_prefix(self, prefix: str) -> set[str]:
        return {cid for per in self._containers().values() for cid in per if cid.startswith(prefix)}


# ------------------------------------------------------------------- Docker


@functools.lru_cache(maxsize=None)
def _unix_connection_class() -> type:
    # http.client pulls in the email package: only load it when Docker is asked.
    import http.client
    import socket

    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, socket_path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self.socket_path = socket_path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    return UnixHTTPConnection


def _docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://") and len(host) > len("unix://"):
        return host[len("unix://"):]
    return DOCKER_SOCKET  # tcp:// and ssh:// engines are not ours to reach


class DockerClient:
    """Docker Engine API over its unix socket with http.client (no CLI, no third-party
    package): socket from $DOCKER_HOST (unix://...) else /var/run/docker.sock; API version
    path-less (e.g. GET /containers/{id}/json works unversioned); 1 s timeout; any
    error -> None / [] (the engine may be absent)."""

    def __init__(self, socket_path: Optional[str] = None, timeout_s: float = 1.0) -> None:
        self.socket_path = socket_path or _docker_socket()
        self.timeout_s = timeout_s

    def _get(self, path: str) -> Optional[bytes]:
        conn = _unix_connection_class()(self.socket_path, self.timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            return body if resp.status == 200 else None
        except Exception:
            # Absent, stopped, old or wedged engine: all mean "no answer".
            return None
        finally:
            conn.close()

    def _get_json(self, path: str) -> Any:
        body = self._get(path)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def available(self) -> bool:
        return self._get("/_ping") == b"OK"

    def inspect(self, id_or_name: str) -> Optional[dict[str, Any]]:
        from urllib.parse import quote

        data = self._get_json(f"/containers/{quote(id_or_name, safe='')}/json")
        return data if isinstance(data, dict) else None

    def running(self) -> list[dict[str, Any]]:
        data = self._get_json("/containers/json")
        return [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []

    def info(self) -> Optional[dict[str, Any]]:
        data = self._get_json("/info")
        return data if isinstance(data, dict) else None


# -------------------------------------------------------------------- names


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _docker_names(data: dict[str, Any]) -> tuple[str, str]:
    """(name, "namespace/pod") from an inspect answer or a config.v2.json,
    which share Name and Config.Labels."""
    config = data.get("Config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    labels = labels if isinstance(labels, dict) else {}
    name = labels.get(K8S_CONTAINER) or str(data.get("Name") or "").lstrip("/")
    pod, namespace = labels.get(K8S_POD) or "", labels.get(K8S_NAMESPACE) or ""
    return str(name), f"{namespace}/{pod}" if pod and namespace else str(pod)


def _load_podman(path: str) -> dict[str, str]:
    """containers.json: [{"id": ..., "names": [...]}, ...] -> id -> first name."""
    data = _read_json(path)
    out = {}
    for c in data if isinstance(data, list) else []:
        if isinstance(c, dict) and isinstance(c.get("id"), str) and c.get("names"):
            out[c["id"]] = str(c["names"][0])
    return out


# kubelet links every container's log as <pod>_<namespace>_<container>-<id>.log
# whatever the runtime; pod and namespace names cannot hold "_".
_KUBE_LOG = re.compile(r"(?P<pod>[^_]+)_(?P<ns>[^_]+)_(?P<container>.+)-(?P<id>[0-9a-f]{64})\.log")


def _load_kube_containers(log_dir: str) -> dict[str, tuple[str, str]]:
    """container id -> (container name, "namespace/pod") from <log_dir>/containers."""
    try:
        names = os.listdir(os.path.join(log_dir, "containers"))
    except OSError:
        return {}
    out = {}
    for n in names:
        m = _KUBE_LOG.fullmatch(n)
        if m:
            out[m["id"]] = (m["container"], f"{m['ns']}/{m['pod']}")
    return out


def _load_kube_pods(log_dir: str) -> dict[str, str]:
    """pod UID -> "namespace/pod" from <log_dir>/pods/<namespace>_<pod>_<uid>."""
    try:
        names = os.listdir(os.path.join(log_dir, "pods"))
    except OSError:
        return {}
    out = {}
    for n in names:
        parts = n.split("_")
        if len(parts) == 3:
            out[parts[2]] = f"{parts[0]}/{parts[1]}"
    return out


class _Refreshed:
    """A loader's answer, loaded again at most once per ttl_s: runtimes' state
    changes as containers come and go, but not every event."""

    def __init__(self, load: Callable[[], Any], ttl_s: float) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._at: Optional[float] = None
        self._value: Any = None

    def get(self) -> Any:
        now = _now()
        if self._at is None or now - self._at >= self._ttl_s:
            self._value, self._at = self._load(), now
        return self._value


class ContainerNames:
    """container id -> display name, cached (a name found is kept; a miss is retried at most
    once per 2 s). Docker: the API's Name without the leading '/'; if the API is unreachable,
    the on-disk config `<root>/containers/<id>/config.v2.json` ("Name"), root = /info's
    DockerRootDir when known else /var/lib/docker. Kubernetes labels when the docker API
    gives them (io.kubernetes.container.name, io.kubernetes.pod.name,
    io.kubernetes.pod.namespace). podman: `/var/lib/containers/storage/overlay-containers/containers.json`
    (list of {id, names}) if readable. Any runtime under Kubernetes: kubelet's
    log links in /var/log/containers and /var/log/pods. Unknown: "" (callers show
    the short id).

    The keyword arguments move the on-disk sources (tests, other layouts)."""

    def __init__(
        self,
        docker: Optional[DockerClient] = None,
        *,
        docker_root: Optional[str] = None,
        podman_containers: str = PODMAN_CONTAINERS,
        kube_log_dir: str = KUBE_LOG_DIR,
    ) -> None:
        self.docker = docker if docker is not None else DockerClient()
        self._docker_root = docker_root
        self._found: dict[str, tuple[str, str]] = {}
        self._tried: dict[str, float] = {}
        self._podman = _Refreshed(lambda: _load_podman(podman_containers), NAME_RETRY_S)
        self._kube_containers = _Refreshed(lambda: _load_kube_containers(kube_log_dir), NAME_RETRY_S)
        self._kube_pods = _Refreshed(lambda: _load_kube_pods(kube_log_dir), NAME_RETRY_S)

    def name(self, ref: CgroupRef) -> str:
        return self._entry(ref)[0]

    def pod_name(self, ref: CgroupRef) -> str:
        pod = self._entry(ref)[1]
        if not pod and ref.pod_uid:
            pod = self._kube_pods.get().get(ref.pod_uid, "")
        return pod

    def resolve(self, spec: str) -> set[str]:
        """Full ids of the containers that spec names, or whose id it is or
        starts (>= 12 hex): Docker (inspect, else the running list), podman's
        store, kubelet's log links."""
        is_prefix = _is_id_prefix(spec)
        found: set[str] = set()
        data = self.docker.inspect(spec)
        if data is not None and isinstance(data.get("Id"), str):
            found.add(data["Id"])
        else:
            for c in self.docker.running():
                names = [str(n).lstrip("/") for n in c.get("Names") or []]
                cid = str(c.get("Id") or "")
                if spec in names or (is_prefix and cid.startswith(spec)):
                    found.add(cid)
        for cid, name in self._podman.get().items():
            if name == spec or (is_prefix and cid.startswith(spec)):
                found.add(cid)
        for cid, (name, _pod) in self._kube_containers.get().items():
            if name == spec or (is_prefix and cid.startswith(spec)):
                found.add(cid)
        return found

    def _entry(self, ref: CgroupRef) -> tuple[str, str]:
        cid = ref.container_id
        if not cid:
            return "", ""
        hit = self._found.get(cid)
        if hit is not None:
            return hit
        last = self._tried.get(cid)
        if last is not None and _now() - last < NAME_RETRY_S:
            return "", ""
        name, pod = self._lookup(ref)
        if name:
            self._found[cid] = (name, pod)
            self._tried.pop(cid, None)
        else:
            self._tried[cid] = _now()
        return name, pod

    def _lookup(self, ref: CgroupRef) -> tuple[str, str]:
        name = pod = ""
        # A bare id under kubepods reads as containerd, but dockershim with
        # the cgroupfs driver makes the same path: ask Docker too.
        if ref.runtime in ("docker", "containerd"):
            name, pod = self._from_docker(ref.container_id)
        elif ref.runtime == "podman":
            name = self._podman.get().get(ref.container_id, "")
        if not name or (ref.pod_uid and not pod):
            kube_name, kube_pod = self._kube_containers.get().get(ref.container_id, ("", ""))
            name, pod = name or kube_name, pod or kube_pod
        return name, pod

    def _from_docker(self, container_id: str) -> tuple[str, str]:
        data = self.docker.inspect(container_id)
        if data is None:
            data = _read_json(os.path.join(self._docker_root_dir(), "containers", container_id, "config.v2.json"))
        return _docker_names(data) if isinstance(data, dict) else ("", "")

    def _docker_root_dir(self) -> str:
        if self._docker_root is None:
            info = self.docker.info()
            root = info.get("DockerRootDir") if info else None
            if not isinstance(root, str) or not root:
                return DOCKER_ROOT  # not known yet: ask again next time
            self._docker_root = root
        return self._docker_root


# --------------------------------------------------------------- containers


@dataclass(frozen=True)
class ContainerLabel:
    container: str  # name, else the 12-hex short id, else the systemd unit, else "" (host)
    pod: str  # pod name ("namespace/name") if known, else pod UID, else ""
    runtime: str
    container_id: str


class Containers:
    """(cgroup_id, cgroup_v1_id) -> ContainerLabel, cached per pair. Tries the v2 id first
    (ignoring the v2 root, id 1, and ids that do not resolve or parse to runtime ""), then the
    v1 memory id.

    A label is kept for good once everything in it is known; one with a cgroup
    not found yet, or a name not found yet, is worked out again at most every
    0.5 s (the index and the name sources rate-limit themselves too)."""

    def __init__(self, index: Optional[CgroupIndex] = None, names: Optional[ContainerNames] = None) -> None:
        self.index = index if index is not None else CgroupIndex()
        self.names = names if names is not None else ContainerNames()
        self._labels: dict[tuple[int, int], tuple[ContainerLabel, bool, float]] = {}

    def label(self, cgroup_id: int, cgroup_v1_id: int) -> ContainerLabel:
        key = (int(cgroup_id), int(cgroup_v1_id))
        hit = self._labels.get(key)
        if hit is not None and (hit[1] or _now() - hit[2] < LABEL_RETRY_S):
            return hit[0]
        label, final = self._make(*key)
        self._labels[key] = (label, final, _now())
        return label

    def labels(self, cgroup_ids: Sequence[int], v1_ids: Sequence[int]) -> list[ContainerLabel]:
        if len(cgroup_ids) != len(v1_ids):
            raise ValueError(f"{len(cgroup_ids)} cgroup ids but {len(v1_ids)} v1 ids")
        batch: dict[tuple[int, int], ContainerLabel] = {}
        out = []
        for a, b in zip(cgroup_ids, v1_ids):
            key = (int(a), int(b))
            lab = batch.get(key)
            if lab is None:
                lab = batch[key] = self.label(*key)
            out.append(lab)
        return out

    def _make(self, cgroup_id: int, v1_id: int) -> tuple[ContainerLabel, bool]:
        ref, resolved = self._ref(cgroup_id, v1_id)
        name = self.names.name(ref)
        pod = self.names.pod_name(ref)
        final = resolved and (bool(name) or not ref.container_id) and (bool(pod) or not ref.pod_uid)
        label = ContainerLabel(name or ref.container_id[:12] or ref.unit, pod or ref.pod_uid, ref.runtime, ref.container_id)
        return label, final

    def _ref(self, cgroup_id: int, v1_id: int) -> tuple[CgroupRef, bool]:
        """The ref, and whether every id asked about was found."""
        mounted = self.index.mounts()
        resolved = True
        for hierarchy, cid in (("v2", cgroup_id), ("v1", v1_id)):
            if cid == 0 or hierarchy not in mounted or (hierarchy == "v2" and cid == V2_ROOT_ID):
                continue
            path = self.index.path(hierarchy, cid)
            if path is None:
                resolved = False
                continue
            ref = parse_cgroup_path(path)
            if ref != HOST:
                return ref, True
        return HOST, resolved

    def filter_ids(self, containers: Sequence[str], cgroups: Sequence[str], must_exist: bool) -> set[int]:
        """The cgroup ids (both hierarchies mixed in one set: kernfs ids are unique per
        hierarchy and the BPF side tests both of a task's ids against the set) that the
        filters allow. `containers`: names or ids (full or >= 12-hex prefix); resolved through
        DockerClient.inspect / running (name or id), then CgroupIndex.find_container; also
        podman by id. `cgroups`: paths, absolute within a hierarchy ("/docker/<id>") or
        filesystem paths under a mount ("/sys/fs/cgroup/memory/docker/<id>"); each gives
        ids_under(...) in every hierarchy where it exists. must_exist=True: a name or path
        that matches nothing -> raise UsageProblem("no running container named 'x'") /
        ("no cgroup 'p'") (one line). must_exist=False: unmatched names are kept for
        `matches()` below."""
        ids: set[int] = set()
        for spec in containers:
            found = self._container_cgroups(spec.strip())
            if not found and must_exist:
                raise UsageProblem(f"no running container named '{spec}'")
            ids |= found
        for path in cgroups:
            found = self._cgroup_ids(path)
            if not found and must_exist:
                raise UsageProblem(f"no cgroup '{path}'")
            ids |= found
        return ids

    def _container_cgroups(self, spec: str) -> set[int]:
        full = self.names.resolve(spec)
        if _is_id_prefix(spec) and not full:
            full = self.index._full_ids(spec)
            if len(full) > 1:
                raise UsageProblem(f"container id '{spec}' is ambiguous: {len(full)} containers' ids start with it")
        ids: set[int] = set()
        for cid in full:
            for per_hierarchy in self.index.find_container(cid).values():
                ids.update(per_hierarchy)
        return ids

    def _cgroup_ids(self, path: str) -> set[int]:
        rel = self.index.hierarchy_path(path)
        ids: set[int] = set()
        for hierarchy in self.index.mounts():
            ids.update(self.index.ids_under(hierarchy, rel))
        return ids

    def matches(self, label: ContainerLabel, containers: Sequence[str]) -> bool:
        """For watchers of containers being created: does this label's name or id
        (or id prefix >= 12) match one of `containers`?"""
        if not label.container_id:
            return False
        for spec in containers:
            spec = spec.strip()
            if spec and (spec == label.container or (_is_id_prefix(spec) and label.container_id.startswith(spec))):
                return True
        return False
