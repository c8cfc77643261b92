"""The container image (`make image`, tools/image.py) on this host's Docker
engine, with the README's privileges: it sees the host's kernel and a
namespace created on the host, with the host's pid; the DaemonSet's recorder
loop writes traces that `report` reads, under the DaemonSet's memory limits.
Under runc (what containerd runs), the image's files trace with CAP_BPF,
CAP_PERFMON and CAP_SYSLOG alone, and each is shown needed.

The image is built offline (mmdebstrap, the project's wheels, docker import)
when the engine has none for the current sources: a minute or two.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from docker_engine import DockerEngine   # tests/kernel/docker_engine.py (puts tools/ on sys.path)
from image import ENV_PATH, build_rootfs, ensure_image, image_size   # noqa: E402  (tools/image.py)
from runs import wait_ready  # tests/runs.py

BIN = os.path.dirname(sys.executable)
DAEMONSET = Path(__file__).resolve().parents[2] / "deploy" / "kerntrace.yaml"
# The least the tracers need, as deploy/kerntrace.yaml grants them (each one is
# shown needed below): CAP_BPF loads, CAP_PERFMON attaches, CAP_SYSLOG names
# kernel stack frames.
LEAST = ("BPF", "PERFMON", "SYSLOG")
# Docker before 23.0 (Debian 12's docker.io is 20.10) refuses the names
# CAP_BPF and CAP_PERFMON ("unknown capability"); the kernel takes
# CAP_SYS_ADMIN for both, the least such an engine can give.
OLD_DOCKER = ("SYS_ADMIN", "SYSLOG")
HOST_VIEW = (
    "--pid=host",            # the kernel's pids are the host's; /proc must show them
    "--cgroupns=host",       # cgroup ids resolve to paths in the host's hierarchy
    "--network=none",        # kerntrace needs no network
    "--read-only",           # nothing in the image is written
    "--volume=/sys/kernel/tracing:/sys/kernel/tracing:ro",   # tracepoint ids
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro",
)


def privileges(caps: tuple[str, ...]) -> tuple[str, ...]:
    return (*HOST_VIEW, "--cap-drop=ALL", *(f"--cap-add={c}" for c in caps))


@pytest.fixture(scope="module")
def engine_caps(docker_engine: DockerEngine) -> tuple[str, ...]:
    """LEAST where the engine knows the names, else OLD_DOCKER."""
    r = docker_engine.run("kt-image-caps", "true", extra=("--rm", "--network=none", "--cap-drop=ALL",
                                                         "--cap-add=BPF", "--cap-add=PERFMON"))
    docker_engine.rm("kt-image-caps")
    if r.returncode == 0:
        return LEAST
    assert "unknown capability" in r.stderr, r.stderr
    return OLD_DOCKER


@pytest.fixture(scope="module")
def image(docker_engine: DockerEngine) -> str:
    """kerntrace:VERSION, built if the engine has none for these sources
    (mmdebstrap's output in /var/tmp/kt-image-build.log)."""
    return ensure_image(docker_engine, log=Path("/var/tmp/kt-image-build.log"))


def run(engine: DockerEngine, name: str, image: str, *argv: str, caps: tuple[str, ...],
        extra: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    engine.rm(name)
    try:
        return engine.run(name, *argv, image=image, extra=("--rm", *privileges(caps), *extra), timeout=timeout)
    finally:
        engine.rm(name)


def host_doctor() -> dict[str, Any]:
    r = subprocess.run([os.path.join(BIN, "iotrace"), "doctor", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_doctor_in_the_image_sees_the_hosts_kernel(docker_engine, image, engine_caps, report_result):
    r = run(docker_engine, "kt-image-doctor", image, "iotrace", "doctor", "--json", caps=engine_caps)
    assert r.returncode == 0, r.stderr
    inside, host = json.loads(r.stdout), host_doctor()
    assert inside["kernel"] == platform.release() == host["kernel"]
    assert inside["btf"] is True and inside["tracefs"] is True
    # every kind of program the host can load and attach, the container can, and no more
    for kind in ("tracepoint", "tp_btf", "raw_tp", "fentry", "kprobe", "ringbuf"):
        assert inside[kind] == host[kind], (kind, inside.get("reasons"), host.get("reasons"))
    assert inside["tp_btf"] and inside["ringbuf"] and inside["tracepoint"]
    held = {name for name, on in inside["capabilities"].items() if on}
    assert held == {f"CAP_{c}" for c in engine_caps} - {"CAP_SYSLOG"}   # doctor lists these three
    assert inside["libbpf_version"] == "1.4"   # bookworm-backports', not the host's
    report_result(f"image {image}: {image_size(docker_engine, image) / 1e6:.0f} MB; doctor inside = host "
                  f"on {inside['kernel']}; docker run --cap-add {' '.join(engine_caps)}")


def test_ip6mr_in_the_image_counts_a_namespace_made_on_the_host(docker_engine, image, engine_caps):
    name = "kt-image-ip6mr"
    docker_engine.rm(name)
    docker_engine.names.append(name)   # removed by the engine's stop() whatever happens
    argv = [docker_engine.cli, "run", "--rm", "--name", name, *privileges(engine_caps), image,
            "nstrace", "ip6mr", "-d", "6", "--json"]
    env = {**os.environ, "DOCKER_HOST": f"unix://{docker_engine.socket}"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_ready(proc, "nstrace ip6mr in the image")
        unshare = subprocess.Popen(["unshare", "-n", "true"])   # on the host: its pid is the host's
        assert unshare.wait(timeout=30) == 0
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        docker_engine.rm(name)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["kernel"] == platform.release()
    assert summary["stop_reason"] == "duration elapsed" and summary["lost_events"] == 0
    # exactly one creation by that pid, seen live and in the summary
    made = [d for d in lines if d["type"] == "attempt" and d["pid"] == unshare.pid]
    assert len(made) == 1, made
    (attempt,) = made
    assert attempt["method"] == "unshare" and attempt["errno"] is None and attempt["comm"] == "unshare"
    assert attempt["ppid"] == os.getpid()
    assert attempt["container"] == ""   # the host's own cgroup, resolved in the host's hierarchy
    assert [a["pid"] for a in summary["attempts"] if a["pid"] == unshare.pid] == [unshare.pid]


# -- the least privileges, through runc (what containerd runs under Kubernetes) ----------


@pytest.fixture(scope="module")
def rootfs(image: str) -> Iterator[Path]:
    """The image's root filesystem (the tar `make image` imported), unpacked."""
    tar = build_rootfs()
    root = Path(tempfile.mkdtemp(prefix="kt-rootfs-", dir="/var/tmp"))
    subprocess.run(["tar", "-xf", str(tar), "-C", str(root)], check=True, timeout=300)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def runc(rootfs: Path, tmp: Path, caps: tuple[str, ...], script: str) -> subprocess.CompletedProcess:
    """sh -c script in the image's files under runc (Debian's: the runtime
    containerd uses), as the DaemonSet's tracer containers: exactly these
    capabilities, no_new_privs, a read-only root, its own network namespace,
    the host's pid and cgroup namespaces, tracefs and cgroupfs read-only."""
    if shutil.which("runc") is None:
        pytest.skip("runc is missing (Debian: it comes with docker.io; make deps installs it)")
    bundle = Path(tempfile.mkdtemp(prefix="bundle-", dir=tmp))
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"].update(terminal=False, args=["sh", "-c", script], noNewPrivileges=True,
                             env=[f"PATH={ENV_PATH}", "LANG=C.UTF-8"])
    config["process"]["capabilities"] = {s: [f"CAP_{c}" for c in caps] for s in ("bounding", "effective", "permitted")}
    config["linux"]["namespaces"] = [{"type": t} for t in ("mount", "network", "ipc", "uts")]
    config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"] + [
        {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}
        for path in ("/sys/fs/cgroup", "/sys/kernel/tracing")]
    (bundle / "config.json").write_text(json.dumps(config))
    state = tmp / "runc-state"
    name = f"kt-least-{os.getpid()}-{bundle.name}"
    try:
        return subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
                              capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", name], capture_output=True)


# Every tracing command attaches (-d 0: attach, the ready line, exit).
EVERY_TRACER = ("nstrace ip6mr -d 0 && iotrace diagnose -d 0 && iotrace odirect -p 1 -d 0 && "
                "iotrace dstate -d 0 && iotrace zombies -d 0 && iotrace stat 1 1 >/dev/null && "
                "iotrace doctor --json")


PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")


@pytest.fixture
def perf_event_paranoid() -> Iterator[int]:
    """The sysctl's value, restored after the test whatever it set."""
    before = int(PARANOID.read_text())
    yield before
    PARANOID.write_text(f"{before}\n")


def test_every_tracer_runs_with_bpf_perfmon_syslog_only(rootfs, tmp_path, perf_event_paranoid, report_result):
    """Debian's kernels (6.1 here under make vmtest) default to
    perf_event_paranoid=3, their own level, at which perf_event_open, the
    attach of a classic tracepoint (ip6mr's oom/mark_victim), wants
    CAP_SYS_ADMIN; at 2, the kernel's highest, these three suffice."""
    note = ""
    if perf_event_paranoid > 2:
        r = runc(rootfs, tmp_path, LEAST, "nstrace ip6mr -d 0")
        assert r.returncode == 1
        assert "attach ns_oom_victim (tp/oom/mark_victim): Permission denied" in r.stderr, r.stderr
        PARANOID.write_text("2\n")
        note = f" (kernel.perf_event_paranoid {perf_event_paranoid} refuses ip6mr's oom tracepoint: set to 2)"
    r = runc(rootfs, tmp_path, LEAST, EVERY_TRACER)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("Ctrl-C to end") == 5, r.stderr
    doctor = json.loads(r.stdout.splitlines()[-1])
    assert doctor["capabilities"] == {"CAP_SYS_ADMIN": False, "CAP_PERFMON": True, "CAP_BPF": True}
    assert doctor["kernel"] == platform.release() and doctor["libbpf_version"] == "1.4"
    report_result(f"image under runc: every tracer attaches with CAP_{', CAP_'.join(LEAST)} only{note}")


@pytest.mark.parametrize("dropped", ["BPF", "PERFMON"])
def test_without_bpf_or_perfmon_nothing_traces(rootfs, tmp_path, dropped):
    r = runc(rootfs, tmp_path, tuple(c for c in LEAST if c != dropped), "nstrace ip6mr -d 0")
    assert r.returncode != 0 and "Ctrl-C to end" not in r.stderr
    assert "Operation not permitted" in r.stderr, r.stderr


def test_syslog_names_kernel_stack_frames(rootfs, tmp_path):
    """CAP_SYSLOG: /proc/kallsyms shows addresses, so dstate's kernel stacks
    are named; without it every address reads as zero."""
    script = "python3 -c \"import sys; sys.exit(0 if any(l.split()[0].strip(b'0') for l in open('/proc/kallsyms', 'rb')) else 3)\""
    assert runc(rootfs, tmp_path, LEAST, script).returncode == 0
    r = runc(rootfs, tmp_path, ("BPF", "PERFMON"), script)
    assert r.returncode == 3, r.stderr


# -- the DaemonSet's containers, as Docker runs them ----------------------------------


def _memory_peak(pid: int) -> int:
    """Peak memory of the cgroup of pid, as the kernel charged it: RSS, the
    BPF maps' kernel memory, page cache (v1 memory.max_usage_in_bytes on a
    hybrid host, v2 memory.peak)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.max_usage_in_bytes").read_text())
    with open("/proc/mounts") as f:
        mount = next(line.split()[1] for line in f if line.split()[2] == "cgroup2")
    path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
    return int(Path(f"{mount}{path}/memory.peak").read_text())


def _limit_bytes(container: str) -> int:
    (ds,) = [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d and d["kind"] == "DaemonSet"]
    (c,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    q = c["resources"]["limits"]["memory"]
    m = re.fullmatch(r"(\d+)Mi", q)
    assert m, q
    return int(m.group(1)) << 20


def _runs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


@pytest.mark.parametrize("container,command", [("ip6mr", ("nstrace", "ip6mr")), ("diagnose", ("iotrace", "diagnose"))])
def test_daemonsets_recorder_in_the_image(docker_engine, image, engine_caps, data_dir, report_result,
                                          container, command):
    """The DaemonSet's container as Docker runs it: kerntrace-fleet record,
    a new trace per run, the liveness probe, SIGTERM ending the run cleanly;
    `report` in the image reads the traces (the host's namespace among them
    for ip6mr); the container's memory peak stays under the DaemonSet's limit."""
    name = f"kt-image-{container}"
    traces = Path(data_dir) / "traces"
    rec = traces / "node=test" / container
    inside = str(rec).replace(str(traces), "/var/lib/kerntrace")
    docker_engine.rm(name)
    r = docker_engine.run(name, "kerntrace-fleet", "record", inside, "--every", "8", "--", *command, image=image,
                          detach=True, extra=(*privileges(engine_caps), f"--volume={traces}:/var/lib/kerntrace"))
    assert r.returncode == 0, r.stderr
    try:
        pid = int(docker_engine.inspect(name)["State"]["Pid"])
        deadline = time.monotonic() + 90
        while not (_runs(rec) and (_runs(rec)[0] / "meta.json").exists()):
            assert time.monotonic() < deadline, docker_engine.docker("logs", name).stderr
            time.sleep(0.1)
        first = _runs(rec)[0]
        unshare = subprocess.Popen(["unshare", "-n", "true"])
        assert unshare.wait(timeout=30) == 0
        if container == "diagnose":   # reads for diagnose's tables: O_DIRECT, on the host
            data = Path(data_dir) / "data.bin"
            data.write_bytes(os.urandom(4 << 20))
            subprocess.run(["dd", f"if={data}", "of=/dev/null", "bs=4096", "iflag=direct", "status=none"],
                           check=True, timeout=60)
        # the first run ends at its -d (findings, tables, summary written), the next
        # attaches (a SIGTERM before that would end it before it wrote anything; 8 s
        # runs leave the probe and the stop below time to come while it records)
        while len(_runs(rec)) < 2 or not (first / "summary.json").exists() or not (_runs(rec)[1] / "meta.json").exists():
            assert time.monotonic() < deadline, docker_engine.docker("logs", name).stderr
            time.sleep(0.1)
        probe = docker_engine.docker("exec", name, "kerntrace-fleet", "alive", inside)
        assert probe.returncode == 0 and probe.stdout.startswith("recording "), probe.stdout + probe.stderr
        peak = _memory_peak(pid)
        stop = docker_engine.docker("stop", "--time", "60", name, timeout=90)
        assert stop.returncode == 0, stop.stderr
        state = docker_engine.inspect(name)["State"]
        assert state["ExitCode"] == 0, docker_engine.docker("logs", name).stderr
    finally:
        docker_engine.rm(name)
    runs = _runs(rec)
    assert len(runs) >= 2
    for run_dir in runs:   # every run ended cleanly, the last on the SIGTERM passed on
        assert (run_dir / "end.json").exists() and (run_dir / "summary.json").exists(), run_dir
    assert json.loads((runs[-1] / "summary.json").read_text())["stop_reason"] == "SIGTERM"
    rep = run(docker_engine, f"{name}-report", image, command[0], "report",
              str(first).replace(str(traces), "/var/lib/kerntrace"), "--json", caps=(),
              extra=(f"--volume={traces}:/var/lib/kerntrace:ro",))
    assert rep.returncode == 0, rep.stderr
    envelope = json.loads(rep.stdout.splitlines()[-1])
    assert envelope["kernel"] == platform.release()
    if container == "ip6mr":
        mine = [a for a in envelope["attempts"] if a["pid"] == unshare.pid]
        assert len(mine) == 1 and mine[0]["method"] == "unshare" and mine[0]["errno"] is None
    limit = _limit_bytes(container)
    report_result(f"image {container} recorder: cgroup memory peak {peak / 2**20:.0f} MiB, "
                  f"limit {limit >> 20} MiB in deploy/kerntrace.yaml")
    assert peak < limit


def test_retention_runs_without_any_capability(docker_engine, image, data_dir):
    """The DaemonSet's retention container: --cap-drop=ALL removes root's
    traces (dirs 0700, files 0600, as the recorder writes them) past their age,
    and keeps each recorder's newest."""
    traces = Path(data_dir) / "traces"
    old = time.time() - 5 * 3600
    runs = {}
    for name in ("20260101T000000Z", "20260101T010000Z", "20260101T020000Z"):
        run_dir = traces / "node=test" / "ip6mr" / name
        (run_dir / "netns_event").mkdir(mode=0o700, parents=True)
        (run_dir / "meta.json").write_text(json.dumps({"format": "kerntrace-trace/1"}))
        (run_dir / "netns_event" / "part-000001.parquet").write_bytes(b"\0" * 100)
        for path in (run_dir / "meta.json", run_dir / "netns_event" / "part-000001.parquet"):
            path.chmod(0o600)
            os.utime(path, (old, old))
        old += 3600
        runs[name] = run_dir
    r = run(docker_engine, "kt-image-retain", image, "kerntrace-fleet", "retain", "/var/lib/kerntrace",
            "--max-age-hours", "2.5", "--once", caps=(), extra=(f"--volume={traces}:/var/lib/kerntrace",))
    assert r.returncode == 0, r.stderr
    # all past 2.5 h: the 5 h and 4 h old removed, the newest (3 h) kept: it may be in progress
    assert [p.name for p in runs.values() if p.exists()] == ["20260101T020000Z"]
    assert r.stderr.count("removed /var/lib/kerntrace/node=test/ip6mr/") == 2
