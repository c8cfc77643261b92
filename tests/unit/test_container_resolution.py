"""Cgroup ids -> containers: path parsing, the cgroup index on fake trees, the
Docker client against a fake engine on a unix socket, names and labels."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time

import pytest

from kerntrace.tracers.engine import containers as mod
from kerntrace.tracers.engine.containers import (
    HOST,
    CgroupIndex,
    CgroupRef,
    ContainerLabel,
    ContainerNames,
    Containers,
    DockerClient,
    parse_cgroup_path,
)
from kerntrace.tracers.engine.environment import UsageProblem

A = "3f4e5d6c7b8a99001122334455667788" + "99aabbccddeeff00112233445566778a"
B = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf" + "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
C = "3f4e5d6c7b8a" + "ff" * 26  # shares 12 hex with A
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_ = UID.replace("-", "_")
STATIC_UID = "6d31e4a5bd9d8a5a3a4a0a7b0f4c5f1e"


# ------------------------------------------------------------------ parsing

PATHS = [
    # Docker, cgroupfs and systemd drivers, nested and under a v1 prefix
    (f"/docker/{A}", CgroupRef("docker", A, "", "")),
    (f"/docker/{A}/", CgroupRef("docker", A, "", "")),
    (f"/process_api/abc/docker/{A}", CgroupRef("docker", A, "", "")),
    (f"/docker/{A}/docker/{B}", CgroupRef("docker", B, "", "")),
    (f"/system.slice/docker-{A}.scope", CgroupRef("docker", A, "", "")),
    (f"/system.slice/docker-{A}.scope/init.scope", CgroupRef("docker", A, "", "")),
    (f"/actions_job/{A}", CgroupRef("docker", A, "", "")),
    # Kubernetes, cgroupfs driver
    (f"/kubepods/burstable/pod{UID}/{A}", CgroupRef("containerd", A, UID, "")),
    (f"/kubepods/pod{UID}/{A}", CgroupRef("containerd", A, UID, "")),
    (f"/kubepods/besteffort/pod{UID}/{A}", CgroupRef("containerd", A, UID, "")),
    (f"/kubepods/burstable/pod{STATIC_UID}/{A}", CgroupRef("containerd", A, STATIC_UID, "")),
    (f"/kubepods/besteffort/pod{UID}/crio-{A}", CgroupRef("cri-o", A, UID, "")),
    (f"/kubepods/pod{UID}/{A}/docker/{B}", CgroupRef("docker", B, UID, "")),
    # Kubernetes, systemd driver
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{A}.scope",
        CgroupRef("containerd", A, UID, ""),
    ),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{A}.scope", CgroupRef("containerd", A, UID, "")),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{A}.scope",
        CgroupRef("cri-o", A, UID, ""),
    ),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{A}.scope",
        CgroupRef("cri-o", A, UID, ""),
    ),
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{A}.scope",
        CgroupRef("docker", A, UID, ""),
    ),
    (  # kind: a node in a Docker container, kubelet's own slice names
        f"/docker/{B}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{A}.scope",
        CgroupRef("containerd", A, UID, ""),
    ),
    # pod level, no container
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice", CgroupRef("", "", UID, "")),
    (f"/kubepods/burstable/pod{UID}", CgroupRef("", "", UID, "")),
    # podman
    (f"/machine.slice/libpod-{A}.scope", CgroupRef("podman", A, "", "")),
    (f"/machine.slice/libpod-{A}.scope/container", CgroupRef("podman", A, "", "")),
    (f"/libpod_parent/libpod-{A}", CgroupRef("podman", A, "", "")),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{A}.scope", CgroupRef("podman", A, "", "")),
    (f"/machine.slice/libpod-conmon-{A}.scope", CgroupRef("podman", A, "", "")),
    # systemd units
    ("/system.slice/cron.service", CgroupRef("systemd", "", "", "cron.service")),
    ("/user.slice/user-0.slice/user@0.service", CgroupRef("systemd", "", "", "user@0.service")),
    ("/user.slice/user-1000.slice/session-3.scope", CgroupRef("systemd", "", "", "session-3.scope")),
    ("/init.scope", CgroupRef("systemd", "", "", "init.scope")),
    ("/kubepods.slice/kubepods-burstable.slice", CgroupRef("systemd", "", "", "kubepods-burstable.slice")),
    # host: nothing known
    ("/", HOST),
    ("", HOST),
    ("/-.slice", HOST),
    ("/process_api/eea450ecb873650be5a702d9c56b73fe", HOST),
    ("/docker/abc", HOST),
    ("/kubepods/burstable", HOST),
]


@pytest.mark.parametrize("path,ref", PATHS, ids=[p or "empty" for p, _ in PATHS])
def test_parse_cgroup_path(path, ref):
    assert parse_cgroup_path(path) == ref


# ---------------------------------------------------------------- fake trees


def mountinfo_line(n, root, point, fstype, opts):
    point = point.replace(" ", "\\040")
    return f"{n} 20 0:{n} {root} {point} rw,nosuid,nodev,noexec,relatime shared:{n} - {fstype} {fstype} {opts}\n"


def write_mountinfo(tmp_path, mounts):
    """mounts: (root, mount point, fstype, super options); also an unrelated
    tmpfs and proc line, as a real file has."""
    path = tmp_path / "mountinfo"
    lines = ["22 1 0:21 / /proc rw,nosuid - proc proc rw\n"]
    lines.append(f"23 1 0:22 / {tmp_path}/cg rw,nosuid - tmpfs tmpfs rw,mode=755\n")
    lines += [mountinfo_line(30 + i, *m) for i, m in enumerate(mounts)]
    path.write_text("".join(lines))
    return str(path)


def make_dirs(top, paths):
    for p in paths:
        os.makedirs(os.path.join(top, p.lstrip("/")), exist_ok=True)


def ino(top, path="/"):
    return os.stat(os.path.join(top, path.lstrip("/"))).st_ino


TREE = [
    f"/docker/{A}",
    f"/docker/{A}/sub",
    f"/system.slice/docker-{B}.scope",
    "/system.slice/cron.service",
    f"/kubepods/burstable/pod{UID}/{C}",
]


@pytest.fixture
def hybrid(tmp_path):
    """v1 memory and cpu hierarchies plus cgroup2 at .../unified, as on this host."""
    cg = tmp_path / "cg"
    v2, v1, cpu = str(cg / "unified"), str(cg / "memory"), str(cg / "cpu")
    for top in (v2, v1, cpu):
        make_dirs(top, TREE)
    info = write_mountinfo(
        tmp_path,
        [
            ("/", cpu, "cgroup", "rw,cpu"),
            ("/", v1, "cgroup", "rw,memory"),
            ("/", v2, "cgroup2", "rw,nsdelegate"),
        ],
    )
    return info, v2, v1, cpu


def test_index_hybrid(hybrid):
    info, v2, v1, _ = hybrid
    index = CgroupIndex(info)
    assert index.mounts() == {"v2": v2, "v1": v1}
    for hierarchy, top in (("v2", v2), ("v1", v1)):
        assert index.path(hierarchy, ino(top)) == "/"
        assert index.path(hierarchy, ino(top, f"/docker/{A}")) == f"/docker/{A}"
        assert index.id_of(hierarchy, f"/docker/{A}/") == ino(top, f"/docker/{A}")
        assert index.ids_under(hierarchy, "/docker") == sorted(
            ino(top, p) for p in ("/docker", f"/docker/{A}", f"/docker/{A}/sub")
        )
        assert len(index.ids_under(hierarchy, "/")) == 1 + 10
        assert index.ids_under(hierarchy, "/nope") == []
    # the two hierarchies are different trees
    assert index.path("v1", ino(v2, "/system.slice")) is None


def test_index_v1_only(tmp_path):
    v1 = str(tmp_path / "cg" / "memory")
    make_dirs(v1, TREE)
    info = write_mountinfo(
        tmp_path, [("/", str(tmp_path / "cg" / "cpu"), "cgroup", "rw,cpu"), ("/", v1, "cgroup", "rw,memory")]
    )
    index = CgroupIndex(info)
    assert index.mounts() == {"v1": v1}
    assert index.path("v1", ino(v1, "/system.slice/cron.service")) == "/system.slice/cron.service"
    assert index.path("v2", 1) is None
    assert index.id_of("v2", "/") is None


def test_index_pure_v2(tmp_path):
    v2 = str(tmp_path / "cg")
    make_dirs(v2, TREE)
    info = tmp_path / "mountinfo"
    info.write_text(mountinfo_line(30, "/", v2, "cgroup2", "rw,nsdelegate,memory_recursiveprot"))
    index = CgroupIndex(str(info))
    assert index.mounts() == {"v2": v2}
    assert index.path("v2", ino(v2, f"/system.slice/docker-{B}.scope")) == f"/system.slice/docker-{B}.scope"
    assert index.find_container(B) == {"v2": [ino(v2, f"/system.slice/docker-{B}.scope")]}


def test_index_root_relative_mount(tmp_path):
    """Inside a container without a cgroup namespace, mountinfo shows the
    container's own sub-tree: paths keep the part above it."""
    v1 = str(tmp_path / "cg" / "memory")
    make_dirs(v1, ["/sub"])
    info = write_mountinfo(tmp_path, [(f"/docker/{A}", v1, "cgroup", "rw,memory")])
    index = CgroupIndex(info)
    assert index.path("v1", ino(v1)) == f"/docker/{A}"
    assert index.path("v1", ino(v1, "/sub")) == f"/docker/{A}/sub"
    assert index.id_of("v1", f"/docker/{A}/sub") == ino(v1, "/sub")
    assert index.find_container(A) == {"v1": sorted([ino(v1), ino(v1, "/sub")])}
    assert index.hierarchy_path(f"{v1}/sub") == f"/docker/{A}/sub"


def test_index_first_mount_wins_and_escapes(tmp_path):
    first, second = str(tmp_path / "cg" / "u n"), str(tmp_path / "cg" / "again")
    make_dirs(first, ["/only-first"])
    make_dirs(second, ["/only-second"])
    info = write_mountinfo(tmp_path, [("/", first, "cgroup2", "rw"), ("/", second, "cgroup2", "rw")])
    index = CgroupIndex(info)
    assert index.mounts() == {"v2": first}
    assert index.id_of("v2", "/only-first") == ino(first, "/only-first")
    assert index.id_of("v2", "/only-second") is None


def test_index_without_mountinfo(tmp_path):
    index = CgroupIndex(str(tmp_path / "missing"))
    assert index.mounts() == {}
    assert index.path("v2", 1) is None
    assert index.find_container(A) == {}


def test_find_container(hybrid):
    info, v2, v1, _ = hybrid
    index = CgroupIndex(info)
    want = {h: sorted([ino(top, f"/docker/{A}"), ino(top, f"/docker/{A}/sub")]) for h, top in (("v2", v2), ("v1", v1))}
    assert index.find_container(A) == want
    assert index.find_container(A[:20]) == want
    assert index.find_container(B[:12]) == {
        h: [ino(top, f"/system.slice/docker-{B}.scope")] for h, top in (("v2", v2), ("v1", v1))
    }
    assert index.find_container(A[:11]) == {}  # too short to mean one container
    assert index.find_container(A[:12]) == {}  # A and C share it
    assert index.find_container("f" * 64) == {}
    assert index.find_container("not-an-id-at-all") == {}


def test_rescan_finds_new_dir(hybrid):
    info, v2, _, _ = hybrid
    index = CgroupIndex(info, rescan_s=0)
    assert index.mounts()
    make_dirs(v2, [f"/system.slice/docker-{A}.scope"])
    new = ino(v2, f"/system.slice/docker-{A}.scope")
    assert index.path("v2", new) == f"/system.slice/docker-{A}.scope"
    make_dirs(v2, ["/later"])
    assert index.id_of("v2", "/later") == ino(v2, "/later")


def test_rescan_rate_limit(hybrid):
    info, v2, _, _ = hybrid
    index = CgroupIndex(info, rescan_s=3600)
    assert index.mounts()
    make_dirs(v2, ["/later"])
    assert index.path("v2", ino(v2, "/later")) is None
    assert index.id_of("v2", "/later") is None
    assert index.ids_under("v2", "/later") == []


def test_gone_id_stops_rescanning(hybrid, monkeypatch):
    info, _, _, _ = hybrid
    index = CgroupIndex(info, rescan_s=0)
    scans = []
    real = index._scan
    monkeypatch.setattr(index, "_scan", lambda: (scans.append(1), real())[1])
    assert index.path("v2", 987654321) is None  # first scan, then missing
    before = len(scans)
    assert index.path("v2", 987654321) is None
    assert index.path("v2", 987654321) is None
    assert len(scans) == before


def test_hierarchy_path(hybrid):
    info, v2, v1, cpu = hybrid
    index = CgroupIndex(info)
    assert index.hierarchy_path(f"{v1}/docker/{A}") == f"/docker/{A}"
    assert index.hierarchy_path(f"{v2}/system.slice/") == "/system.slice"
    assert index.hierarchy_path(f"{cpu}/docker") == "/docker"
    assert index.hierarchy_path(v2) == "/"
    assert index.hierarchy_path(f"/docker/{A}") == f"/docker/{A}"


# ------------------------------------------------------------- fake Docker


INSPECT_WEB = {
    "Id": A,
    "Name": "/web",
    "State": {"Running": True},
    "Config": {"Labels": {"com.example": "x"}},
}
INSPECT_K8S = {
    "Id": B,
    "Name": "/k8s_nginx_shop-7d9_prod_" + UID + "_0",
    "Config": {
        "Labels": {
            "io.kubernetes.container.name": "nginx",
            "io.kubernetes.pod.name": "shop-7d9",
            "io.kubernetes.pod.namespace": "prod",
        }
    },
}


@pytest.fixture
def sockdir():
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="kt", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def engine(sockdir):
    """A fake Docker engine: routes maps a request path to JSON (or bytes)."""
    routes = {
        "/_ping": b"OK",
        "/containers/web/json": INSPECT_WEB,
        f"/containers/{A}/json": INSPECT_WEB,
        f"/containers/{B}/json": INSPECT_K8S,
        "/containers/json": [{"Id": A, "Names": ["/web"]}, {"Id": B, "Names": ["/k8s_nginx"]}],
        "/info": {"DockerRootDir": "/srv/docker"},
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    path = os.path.join(sockdir, "docker.sock")
    server = socketserver.UnixStreamServer(path, Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield path, routes
    server.shutdown()
    server.server_close()
    thread.join()


def test_docker_client(engine):
    path, routes = engine
    client = DockerClient(path)
    assert client.available()
    assert client.inspect("web")["Id"] == A
    assert client.inspect(B)["Name"].endswith("_0")
    assert client.inspect("nope") is None
    assert [c["Id"] for c in client.running()] == [A, B]
    assert client.info() == {"DockerRootDir": "/srv/docker"}
    routes["/containers/json"] = b"not json"
    assert client.running() == []


def test_docker_client_from_docker_host(engine, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix://" + engine[0])
    assert DockerClient().socket_path == engine[0]
    assert DockerClient().inspect("web")["Name"] == "/web"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    assert DockerClient().socket_path == "/var/run/docker.sock"


def test_docker_client_unreachable(sockdir):
    client = DockerClient(os.path.join(sockdir, "absent.sock"))
    start = time.monotonic()
    assert not client.available()
    assert client.inspect("web") is None
    assert client.running() == []
    assert client.info() is None
    assert time.monotonic() - start < 0.5


def test_docker_client_silent_engine(sockdir):
    """An engine that accepts and never answers costs one timeout, no more."""
    path = os.path.join(sockdir, "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    try:
        start = time.monotonic()
        assert DockerClient(path, timeout_s=0.2).inspect("web") is None
        assert time.monotonic() - start < 0.9
    finally:
        listener.close()


# -------------------------------------------------------------------- names


def unreachable(sockdir):
    return DockerClient(os.path.join(sockdir, "absent.sock"), timeout_s=0.2)


def offline_names(tmp_path, sockdir, **kw):
    kw.setdefault("podman_containers", str(tmp_path / "podman" / "containers.json"))
    kw.setdefault("kube_log_dir", str(tmp_path / "log"))
    return ContainerNames(unreachable(sockdir), **kw)


def write_config_v2(root, cid, name, labels=None):
    d = os.path.join(root, "containers", cid)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.v2.json"), "w") as f:
        json.dump({"ID": cid, "Name": name, "Config": {"Labels": labels or {}}}, f)


def test_names_from_docker_api(engine, tmp_path):
    names = ContainerNames(DockerClient(engine[0]), kube_log_dir=str(tmp_path))
    web = CgroupRef("docker", A, "", "")
    assert names.name(web) == "web"
    assert names.pod_name(web) == ""
    k8s = CgroupRef("docker", B, UID, "")
    assert names.name(k8s) == "nginx"
    assert names.pod_name(k8s) == "prod/shop-7d9"
    assert names.name(HOST) == ""
    assert names.name(CgroupRef("systemd", "", "", "cron.service")) == ""


def test_names_from_disk_when_engine_unreachable(tmp_path, sockdir):
    root = str(tmp_path / "docker-root")
    write_config_v2(root, A, "/db")
    write_config_v2(root, B, "/x", {"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "p",
                                    "io.kubernetes.pod.namespace": "ns"})
    names = offline_names(tmp_path, sockdir, docker_root=root)
    assert names.name(CgroupRef("docker", A, "", "")) == "db"
    assert names.name(CgroupRef("docker", B, UID, "")) == "app"
    assert names.pod_name(CgroupRef("docker", B, UID, "")) == "ns/p"


def test_names_from_disk_under_engines_root(engine, tmp_path):
    """The engine answers but no longer knows the container: its DockerRootDir
    still tells where the config is."""
    path, routes = engine
    root = str(tmp_path / "docker-root")
    routes["/info"] = {"DockerRootDir": root}
    write_config_v2(root, C, "/gone-from-api")
    names = ContainerNames(DockerClient(path), kube_log_dir=str(tmp_path))
    assert names.name(CgroupRef("docker", C, "", "")) == "gone-from-api"


def test_names_podman_and_kubelet_logs(tmp_path, sockdir):
    store = tmp_path / "podman" / "containers.json"
    store.parent.mkdir()
    store.write_text(json.dumps([{"id": A, "names": ["toolbox"], "image": "x"}, {"id": "zz"}]))
    logs = tmp_path / "log"
    (logs / "containers").mkdir(parents=True)
    (logs / "containers" / f"shop-7d9_prod_nginx-{B}.log").touch()
    (logs / "pods" / f"prod_shop-7d9_{UID}").mkdir(parents=True)
    names = offline_names(tmp_path, sockdir)
    assert names.name(CgroupRef("podman", A, "", "")) == "toolbox"
    containerd = CgroupRef("containerd", B, UID, "")
    assert names.name(containerd) == "nginx"
    assert names.pod_name(containerd) == "prod/shop-7d9"
    assert names.pod_name(CgroupRef("", "", UID, "")) == "prod/shop-7d9"
    assert names.resolve("toolbox") == {A}
    assert names.resolve("nginx") == {B}
    assert names.resolve(B[:12]) == {B}
    assert names.resolve("nothing") == set()


def test_names_miss_retried_every_two_seconds(tmp_path, sockdir, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(mod, "_now", lambda: clock[0])
    root = str(tmp_path / "docker-root")
    names = offline_names(tmp_path, sockdir, docker_root=root)
    ref = CgroupRef("docker", A, "", "")
    assert names.name(ref) == ""
    write_config_v2(root, A, "/late")
    clock[0] += 1.9
    assert names.name(ref) == ""  # the miss is remembered
    clock[0] += 0.2
    assert names.name(ref) == "late"
    os.remove(os.path.join(root, "containers", A, "config.v2.json"))
    clock[0] += 10
    assert names.name(ref) == "late"  # a name found is kept


# --------------------------------------------------------------- containers


@pytest.fixture
def world(hybrid, tmp_path, sockdir):
    info, v2, v1, cpu = hybrid
    root = str(tmp_path / "docker-root")
    write_config_v2(root, A, "/web")
    write_config_v2(root, B, "/api")
    names = offline_names(tmp_path, sockdir, docker_root=root)
    return Containers(CgroupIndex(info), names), v2, v1, cpu


def test_label_prefers_v2(world):
    cs, v2, v1, _ = world
    label = cs.label(ino(v2, f"/docker/{A}/sub"), ino(v1, f"/system.slice/docker-{B}.scope"))
    assert label == ContainerLabel("web", "", "docker", A)


def test_label_falls_back_to_v1(world):
    cs, v2, v1, _ = world
    want = ContainerLabel("api", "", "docker", B)
    v1_id = ino(v1, f"/system.slice/docker-{B}.scope")
    assert cs.label(1, v1_id) == want  # the v2 root: a v1 host
    assert cs.label(ino(v2), v1_id) == want  # resolves, but to nothing known
    assert cs.label(987654321, v1_id) == want  # not in the v2 tree
    assert cs.label(0, v1_id) == want


def test_label_units_pods_and_host(world):
    cs, v2, v1, _ = world
    assert cs.label(ino(v2, "/system.slice/cron.service"), 0) == ContainerLabel("cron.service", "", "systemd", "")
    assert cs.label(ino(v2, f"/kubepods/burstable/pod{UID}/{C}"), 0) == ContainerLabel(C[:12], UID, "containerd", C)
    assert cs.label(ino(v2, f"/kubepods/burstable/pod{UID}"), 0) == ContainerLabel("", UID, "", "")
    assert cs.label(1, ino(v1)) == ContainerLabel("", "", "", "")
    assert cs.label(0, 0) == ContainerLabel("", "", "", "")


def test_labels_batch(world):
    cs, v2, v1, _ = world
    a, cron = ino(v2, f"/docker/{A}"), ino(v2, "/system.slice/cron.service")
    out = cs.labels([a, cron, a, 1], [0, 0, 0, ino(v1, f"/docker/{A}")])
    assert [lab.container for lab in out] == ["web", "cron.service", "web", "web"]
    assert out[0] is out[2]
    with pytest.raises(ValueError):
        cs.labels([a], [])


def test_label_cache_retries_unnamed(world, tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(mod, "_now", lambda: clock[0])
    cs, v2, _, _ = world
    cid = ino(v2, f"/kubepods/burstable/pod{UID}/{C}")
    assert cs.label(cid, 0).container == C[:12]
    logs = tmp_path / "log" / "containers"
    logs.mkdir(parents=True)
    (logs / f"shop-7d9_prod_nginx-{C}.log").touch()
    clock[0] += 0.4
    assert cs.label(cid, 0).container == C[:12]
    clock[0] += 2.0
    assert cs.label(cid, 0) == ContainerLabel("nginx", "prod/shop-7d9", "containerd", C)


def test_filter_ids_by_name_through_docker(hybrid, engine, tmp_path):
    info, v2, v1, _ = hybrid
    cs = Containers(CgroupIndex(info), ContainerNames(DockerClient(engine[0]), kube_log_dir=str(tmp_path)))
    want = {ino(top, p) for top in (v2, v1) for p in (f"/docker/{A}", f"/docker/{A}/sub")}
    assert cs.filter_ids(["web"], [], must_exist=True) == want
    assert cs.filter_ids([A[:16]], [], must_exist=True) == want


def test_filter_ids_offline(world):
    cs, v2, v1, cpu = world
    both = (v2, v1)
    assert cs.filter_ids([B[:12]], [], must_exist=True) == {ino(t, f"/system.slice/docker-{B}.scope") for t in both}
    assert cs.filter_ids([C], [], must_exist=True) == {ino(t, f"/kubepods/burstable/pod{UID}/{C}") for t in both}
    system = {ino(t, p) for t in both for p in ("/system.slice", f"/system.slice/docker-{B}.scope",
                                                 "/system.slice/cron.service")}
    assert cs.filter_ids([], ["/system.slice"], must_exist=True) == system
    assert cs.filter_ids([], [f"{cpu}/system.slice"], must_exist=True) == system
    assert cs.filter_ids([], [f"{v1}/system.slice/cron.service"], must_exist=True) == {
        ino(t, "/system.slice/cron.service") for t in both
    }
    assert cs.filter_ids([B[:12]], ["/system.slice/cron.service"], must_exist=True) == {
        ino(t, p) for t in both for p in (f"/system.slice/docker-{B}.scope", "/system.slice/cron.service")
    }


def test_filter_ids_missing(world):
    cs, _, _, _ = world
    with pytest.raises(UsageProblem, match=r"^no running container named 'ghost'$"):
        cs.filter_ids(["ghost"], [], must_exist=True)
    with pytest.raises(UsageProblem, match=r"^no cgroup '/nope'$"):
        cs.filter_ids([], ["/nope"], must_exist=True)
    with pytest.raises(UsageProblem, match="ambiguous"):
        cs.filter_ids([A[:12]], [], must_exist=True)
    assert cs.filter_ids(["ghost"], ["/nope"], must_exist=False) == set()


def test_matches():
    cs = Containers(CgroupIndex("/nonexistent"), ContainerNames(DockerClient("/nonexistent.sock")))
    web = ContainerLabel("web", "", "docker", A)
    assert cs.matches(web, ["web"])
    assert cs.matches(web, ["other", A[:12]])
    assert cs.matches(web, [A])
    assert not cs.matches(web, [A[:11]])
    assert not cs.matches(web, ["db", B])
    assert not cs.matches(ContainerLabel("cron.service", "", "systemd", ""), ["cron.service"])
    assert not cs.matches(ContainerLabel("", "", "", ""), [""])
