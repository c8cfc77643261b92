"""A real Docker engine for kerntrace's tests and its Docker reproductions.

``DockerEngine.start()`` uses a dockerd that already answers on
/var/run/docker.sock (and then stops nothing of it), or starts Debian's
dockerd (package docker.io) with a private data root, exec root, pidfile,
config file and log under a temp dir (/var/tmp/kt-docker-XXXX), listening on
the default socket so any tool (the docker CLI, nstrace's users) finds it.
``stop()`` removes every container it started and, if it started dockerd,
everything that dockerd left on the host: its processes (containerd, shims),
mounts, cgroups, the docker0 bridge, files outside its temp dir.

Development tooling, not installed: run from the source tree as root.
``python tools/dockerd.py`` starts an engine, runs ``/bin/true`` in a fresh
network namespace, and stops it (a smoke test).

Flags the started dockerd gets, and why (Debian 12 VM, kernel 6.18, no
systemd, hybrid cgroups, overlay2 works on /var/tmp):

- ``--iptables=false --ip-forward=false``: with the defaults dockerd adds
  DOCKER* chains to the host's filter and nat tables, turns on
  net.ipv4.ip_forward and sets the FORWARD policy to DROP, none of which it
  undoes when it exits.  Containers here need no NAT or routing (there is
  no network to reach); they still get the default bridge network: their
  own network namespace, a veth pair into docker0, as on a Docker host.
- ``--cgroup-parent=/kt-docker-XXXX``: the cgroupfs driver (no systemd)
  creates the parent in every v1 hierarchy and in cgroup2 and never removes
  it; a name of our own is one we know is ours to rmdir (the default
  /docker could belong to another engine).
- ``--config-file`` (ours): /etc/docker/daemon.json, if any, is not read
  (it could name another data root: dockerd refuses a flag and a file
  setting the same option), and its ``deprecated-key-path`` keeps the
  daemon's trust key in the temp dir, not in /etc/docker/key.json.
- no ``--bridge=none``: the bridge works here; docker0 is deleted at stop
  when it was not there before.
- storage driver: dockerd's own choice (overlay2 here; vfs where the data
  root's filesystem cannot hold overlay upper dirs).
- containerd: dockerd starts its own (state under the exec root), unless a
  system containerd answers on /run/containerd/containerd.sock, which it
  then uses (not ours to stop).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

__all__ = ["DockerEngine", "DockerEngineError", "ping", "dockerd_path", "IMAGE"]

SOCKET = "/var/run/docker.sock"
IMAGE = "kt-busybox"
BUSYBOX = "/usr/bin/busybox"
# Applets the image links to busybox: what the tests and the reproduction run.
APPLETS = ("sh", "true", "false", "dd", "sleep", "cat", "ls", "unshare", "ip", "head", "tail",
           "echo", "env", "ps", "mount", "id", "kill", "grep", "wc", "tr", "seq")
DOCKERD_PATHS = ("/usr/sbin/dockerd", "/usr/bin/dockerd")
BASE_DIR = "/var/tmp"         # a block-device filesystem (not tmpfs): overlay2 upper dirs work there
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0         # dockerd gives running containers 15 s (shutdown-timeout) on SIGTERM
CLI_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 25
# Paths libnetwork uses whatever the exec root is: created by the first
# dockerd on the host, so ours to remove only when it made them.
LIBNETWORK_DIR = "/var/run/docker"
TRUST_KEY = "/etc/docker/key.json"


class DockerEngineError(RuntimeError):
    """The engine could not be started or a docker command failed."""


def dockerd_path() -> Optional[str]:
    """Debian's dockerd (docker.io installs it in /usr/sbin), else one on PATH."""
    for path in DOCKERD_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("dockerd")


def ping(sock: str = SOCKET, timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers GET /_ping on the unix socket (plain
    HTTP/1.0 by hand: no client library, no CLI needed to decide)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()   # b"HTTP/1.0", b"200", b"OK"
    return len(status) >= 2 and status[1] == b"200" and body.strip() == b"OK"


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _mounts_under(root: str) -> list[str]:
    """Mount points at or under root, deepest first (the order to unmount)."""
    found = []
    try:
        with open("/proc/mounts") as f:
            for line in f:
                # the kernel writes a space as \040 (octal escapes)
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
                if point == root or point.startswith(root.rstrip("/") + "/"):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _unmount_all(root: str) -> list[str]:
    """Unmounts everything at or under root; what could not be, even lazily."""
    for point in _mounts_under(root):
        r = subprocess.run(["umount", point], capture_output=True, timeout=30)
        if r.returncode != 0:
            # busy (a process still holds it): detach it so the dir can go
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
    return _mounts_under(root)


def _cgroup_roots() -> list[Path]:
    """Every cgroup hierarchy's mount point (v1 controllers, name=systemd,
    and cgroup2), from /proc/mounts."""
    roots = []
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] in ("cgroup", "cgroup2"):
                roots.append(Path(fields[1]))
    return roots


def _kill_cgroup_tree(top: Path) -> None:
    """SIGKILLs what is left in a cgroup tree, then removes its dirs
    bottom-up (a cgroup dir goes only once it has no process)."""
    if not top.is_dir():
        return
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]
    for d in dirs:
        for name in ("cgroup.procs", "tasks"):
            try:
                pids = [int(x) for x in (d / name).read_text().split()]
            except (OSError, ValueError):
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
    for d in dirs:
        for _ in range(50):   # a killed process leaves its cgroup a moment later
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


class DockerEngine:
    """A Docker engine to run containers on: see the module's doc.

    Use ``with DockerEngine.start() as engine:`` or call ``stop()`` (also
    registered with atexit; it is idempotent)."""

    def __init__(self, sock: str = SOCKET, cli: Optional[str] = None) -> None:
        self.socket = sock
        # The CLI on PATH (a static 28.x in /usr/local/bin here, Debian's
        # 20.10 in /usr/bin): either negotiates the API version down to the
        # daemon's.
        self.cli = cli or shutil.which("docker") or "/usr/bin/docker"
        self.root: Optional[Path] = None          # our temp dir when we started dockerd
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.cgroup_parent: Optional[str] = None
        self.names: list[str] = []                # containers run() started, in order
        self._had_docker0 = True
        self._had_libnetwork_dir = True
        self._had_trust_key = True
        self._stopped = False

    # -- starting ----------------------------------------------------------------

    @classmethod
    def start(cls, timeout: float = START_TIMEOUT_S, sock: str = SOCKET) -> "DockerEngine":
        """An engine that answers on sock: the running one, or a dockerd of
        our own (see the module's doc for its flags)."""
        engine = cls(sock)
        if ping(sock):
            return engine
        engine._start_dockerd(timeout)
        return engine

    @property
    def owns_daemon(self) -> bool:
        """Whether stop() stops dockerd (we started it)."""
        return self.root is not None

    def _start_dockerd(self, timeout: float) -> None:
        exe = dockerd_path()
        if exe is None:
            raise DockerEngineError("dockerd is not installed (Debian: apt-get install docker.io)")
        # Facts stop() needs: what was on the host before dockerd made it.
        self._had_docker0 = Path("/sys/class/net/docker0").exists()
        self._had_libnetwork_dir = Path(LIBNETWORK_DIR).exists()
        self._had_trust_key = Path(TRUST_KEY).exists()
        root = Path(tempfile.mkdtemp(prefix="kt-docker-", dir=BASE_DIR))
        self.root = root
        atexit.register(self.stop)
        (root / "data").mkdir()
        (root / "exec").mkdir()
        self.cgroup_parent = "/" + root.name
        config = root / "daemon.json"
        config.write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}) + "\n")
        argv = [exe,
                "--data-root", str(root / "data"),
                "--exec-root", str(root / "exec"),
                "--pidfile", str(root / "dockerd.pid"),
                "--config-file", str(config),
                "--host", f"unix://{self.socket}",
                "--iptables=false", "--ip-forward=false",
                "--cgroup-parent", self.cgroup_parent]
        log = open(root / "dockerd.log", "wb")
        try:
            # Its own session: a Ctrl-C in the caller's terminal reaches the
            # caller, which then stops the engine in order (containers first).
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ping(self.socket, timeout=1.0):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        why = (f"dockerd exited with status {self.proc.returncode}" if self.proc.poll() is not None
               else f"dockerd did not answer on {self.socket} within {timeout:g} s")
        tail = self.log_tail()
        self.stop()
        raise DockerEngineError(f"{why}; {' '.join(argv)}\nlast lines of its log:\n{tail}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.root is None:
            return ""
        try:
            text = (self.root / "dockerd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> "DockerEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- docker commands ------------------------------------------------------------

    def docker(self, *args: str, timeout: float = CLI_TIMEOUT_S, check: bool = False,
               input: Optional[bytes] = None) -> "subprocess.CompletedProcess[str]":
        """The docker CLI against this engine's socket (DOCKER_HOST set, a
        DOCKER_CONTEXT of the caller's ignored)."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY")}
        env["DOCKER_HOST"] = f"unix://{self.socket}"
        r = subprocess.run([self.cli, *args], env=env, capture_output=True, timeout=timeout,
                           input=input)
        out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode("utf-8", "replace"),
                                          r.stderr.decode("utf-8", "replace"))
        if check and out.returncode != 0:
            raise DockerEngineError(f"docker {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
        return out

    def has_image(self, name: str = IMAGE) -> bool:
        return self.docker("image", "inspect", name, timeout=30).returncode == 0

    def ensure_image(self, name: str = IMAGE) -> str:
        """The image (busybox-static's binary and applet links, CMD /bin/sh),
        imported from a tar made here if absent: images cannot be pulled."""
        if self.has_image(name):
            return name
        if not os.access(BUSYBOX, os.X_OK):
            raise DockerEngineError(f"{BUSYBOX} is missing (Debian: apt-get install busybox-static)")
        with tempfile.TemporaryDirectory(prefix="kt-image-") as tmp:
            tar_path = Path(tmp) / "rootfs.tar"
            with tarfile.open(tar_path, "w") as tar:
                for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
                    tar.addfile(info)
                tar.add(BUSYBOX, arcname="bin/busybox")   # static: needs no libc in the image
                for applet in APPLETS:
                    info = tarfile.TarInfo(f"bin/{applet}")
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
                    tar.addfile(info)
            self.docker("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), name, check=True)
        return name

    def run(self, name: str, *args: str, image: str = IMAGE, memory: Optional[str] = None,
            detach: bool = False, extra: Sequence[str] = (),
            timeout: float = CLI_TIMEOUT_S) -> "subprocess.CompletedProcess[str]":
        """``docker run --name NAME [--memory M] [-d] EXTRA IMAGE ARGS``; the
        name is remembered (even if the run fails: docker may have created
        the container) so stop() removes it."""
        argv = ["run", "--name", name]
        if memory is not None:
            argv += ["--memory", memory]
        if detach:
            argv.append("--detach")
        argv += [*extra, image, *args]
        if name not in self.names:
            self.names.append(name)
        return self.docker(*argv, timeout=timeout)

    def rm(self, *names: str) -> None:
        """Force-removes these containers (running or not); names that are
        already gone are fine."""
        if names and ping(self.socket):
            self.docker("rm", "--force", *names, timeout=60)
        for name in names:
            if name in self.names:
                self.names.remove(name)

    def ids(self) -> list[str]:
        """Full ids of the containers run() started that still exist."""
        if not self.names or not ping(self.socket):
            return []
        r = self.docker("ps", "--all", "--no-trunc", "--format", "{{.ID}} {{.Names}}", timeout=30)
        mine = set(self.names)
        return [line.split()[0] for line in r.stdout.splitlines()
                if len(line.split()) == 2 and line.split()[1] in mine]

    def inspect(self, name: str) -> dict[str, Any]:
        r = self.docker("inspect", "--type", "container", name, timeout=30, check=True)
        return json.loads(r.stdout)[0]

    # -- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        """Removes the containers it started; if it started dockerd: stops it
        and removes what it left (processes, mounts, cgroups, docker0, files).
        Idempotent, safe in ``finally`` and atexit."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.names:
                self.rm(*list(self.names))
        except (OSError, subprocess.SubprocessError):
            pass   # a daemon that no longer answers: its containers go with it below
        if self.root is None:
            return
        try:
            self._stop_dockerd()
        finally:
            atexit.unregister(self.stop)

    def _stop_dockerd(self) -> None:
        assert self.root is not None
        root = str(self.root) + "/"   # mkdtemp names have one length: no other root starts so
        pid = self.proc.pid if self.proc is not None else None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # containerd (dockerd stops it, but not if dockerd was killed) and the
        # shims, re-parented to init: each names our exec root in its argv.
        leftovers = [p for p in _pids() if p not in (os.getpid(), pid) and root in _cmdline(p)]
        for p in leftovers:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Container processes a killed shim left behind, and the cgroup dirs.
        if self.cgroup_parent:
            for hierarchy in _cgroup_roots():
                _kill_cgroup_tree(hierarchy / self.cgroup_parent.lstrip("/"))
        _unmount_all(str(self.root))
        if not self._had_libnetwork_dir:
            # libnetwork's sandbox netns bind mounts (/var/run/docker/netns/*)
            _unmount_all(LIBNETWORK_DIR)
            shutil.rmtree(LIBNETWORK_DIR, ignore_errors=True)
        if not self._had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, timeout=30)
        if os.path.exists(self.socket) and not ping(self.socket):
            os.unlink(self.socket)   # a killed dockerd does not remove its socket
        if not self._had_trust_key and Path(TRUST_KEY).exists():
            Path(TRUST_KEY).unlink()   # written only by an older dockerd that ignores our key path
        if not _mounts_under(str(self.root)):
            shutil.rmtree(self.root, ignore_errors=True)
        self.proc = None

    def leftovers(self) -> list[str]:
        """What of a started dockerd is still on the host (empty once stop()
        did its work): processes, mounts, cgroups, the temp dir."""
        if self.root is None:
            return []
        root = str(self.root)
        found = [f"process {p}: {_cmdline(p)}" for p in _pids()
                 if p != os.getpid() and root + "/" in _cmdline(p)]
        found += [f"mount {m}" for m in _mounts_under(root)]
        if self.cgroup_parent:
            found += [f"cgroup {h / self.cgroup_parent.lstrip('/')}" for h in _cgroup_roots()
                      if (h / self.cgroup_parent.lstrip("/")).exists()]
        if self.root.exists():
            found.append(f"dir {root}")
        if not self._had_docker0 and Path("/sys/class/net/docker0").exists():
            found.append("link docker0")
        if not self._had_libnetwork_dir and Path(LIBNETWORK_DIR).exists():
            found.append(f"dir {LIBNETWORK_DIR}")
        return found


def _main(argv: Iterable[str]) -> int:
    with DockerEngine.start() as engine:
        engine.ensure_image()
        print(f"engine on {engine.socket}: {'started, root ' + str(engine.root) if engine.owns_daemon else 'running already'}")
        r = engine.run("kt-smoke", "/bin/true", extra=("--rm",))
        print(f"docker run --rm kt-busybox /bin/true: exit {r.returncode} {r.stderr.strip()}")
    left = engine.leftovers()
    print("left after stop: " + (", ".join(left) if left else "nothing"))
    return 0 if r.returncode == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
