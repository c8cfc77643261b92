"""kerntrace's container image (`make image`), built offline: no registry pull.

Images cannot be pulled on the hosts kerntrace is developed on, so nothing
starts from a base image.  The root filesystem is made from Debian packages
with mmdebstrap (the host's own apt sources and suite), the project's wheels
(``pip wheel .``: kerntrace with the compiled bpf/*.bpf.o objects as package
data, and its dependencies) are installed into a venv inside it, and the tar
is imported with ``docker import``:

    /opt/kerntrace            venv: kerntrace and its dependencies
    /opt/kerntrace/bin        iotrace, nstrace, kerntrace-fleet (deploy/fleet.py), on PATH
    python3, libbpf1, ...     Debian's: libbpf.so.1 (from backports, see PACKAGES) is
                              loaded through ctypes
    the essential set         dpkg, coreutils, a shell: what Debian itself needs

The image has no ENTRYPOINT, so that one image serves both CLIs and
kerntrace-fleet: a run names its command (``docker run ... kerntrace:0.1.0
nstrace ip6mr``); without one it runs ``iotrace doctor``.  The privileges and
host mounts a run needs are in the README ("Fleet") and in deploy/kerntrace.yaml.

The root filesystem is the slow part (about a minute): it is kept in
dist/kerntrace-rootfs.tar with a key over everything that goes into it (the
sources, the built objects, deploy/fleet.py, this file), and rebuilt only
when that changes.  The imported image carries the key as its comment, so an
engine that already has this build imports nothing.

    python tools/image.py [--force]     # as root; a Docker engine must answer

Development tooling, not installed: run from the source tree, as root
(mmdebstrap's root mode chroots to run pip inside the image).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dockerd import DockerEngine, DockerEngineError, ping  # noqa: E402  (tools/dockerd.py)

__all__ = ["IMAGE", "build_rootfs", "ensure_image", "image_tag", "source_key"]

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "kerntrace"
VENV = "/opt/kerntrace"
# What kerntrace needs from Debian beyond the essential set: the interpreter
# (the full stdlib: pandas and pyarrow need more than python3-minimal), the
# libbpf the engine loads, and the C++ runtime that pyarrow's and pandas'
# manylinux wheels link but do not carry.  libbpf comes from the release's
# backports (bookworm: 1.4 for 1.1): libbpf before 1.3 resolves a CO-RE
# relocation that vmlinux lacks (the old-kernel flavours of core_fixes.bpf.h)
# by listing the kernel modules' BTF, which the kernel allows only to
# CAP_SYS_ADMIN; 1.3 skips the modules without it, so CAP_BPF and CAP_PERFMON
# are enough (tests/kernel/test_image.py runs every tracer so).
PACKAGES = ("python3", "libbpf1/{suite}-backports", "libstdc++6")
# Documentation, man pages and translations nobody reads in a container;
# copyright files stay (the image is redistributed).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
# Inside site-packages, what kerntrace never imports: the libraries' test
# suites and C headers (pandas' tests alone are ~60 MB), and pyarrow's Flight
# RPC libraries (~35 MB), loaded only by `import pyarrow.flight` (Substrait
# stays: pyarrow.lib links it).  The last hook imports what kerntrace uses, so
# a trim that breaks an import fails the build.
TRIM = ("pandas/tests", "numpy/*/tests", "numpy/tests", "pyarrow/tests", "pyarrow/include",
        "pyarrow/src", "pyarrow/libarrow_flight.so*", "pyarrow/_flight.*.so",
        "pyarrow/libarrow_python_flight.so*")
# What the tracers, report and the CLIs import, tried in the finished image.
SMOKE = ("import pyarrow, pyarrow.parquet, pyarrow.compute, pandas, numpy, psutil, pyroute2, click; "
         "import kerntrace.tracers.cli, kerntrace.tracers.engine.libbpf as l; l.lib()")
ROOTFS_TAR = ROOT / "dist" / "kerntrace-rootfs.tar"
KEY_FILE = ROOT / "dist" / "kerntrace-rootfs.key"
# What goes into the image: a change to any of these is a new image.
SOURCES = ("setup.cfg", "pyproject.toml", "bpf/*.bpf.o", "bpf/*.h", "bpf/*.c", "bpf/*.py",
           # every package under tracers/ and analysis/, as setup.cfg lists them
           "tracers/**/*.py", "analysis/**/*.py", "deploy/fleet.py",
           "tools/image.py")
ENV_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(RuntimeError):
    """The image cannot be built here: one line saying what is missing."""


def version() -> str:
    """The package version, from setup.cfg (the image's tag)."""
    for line in (ROOT / "setup.cfg").read_text().splitlines():
        if line.replace(" ", "").startswith("version="):
            return line.split("=", 1)[1].strip()
    raise ImageError("setup.cfg has no version")


def image_tag() -> str:
    return f"{IMAGE}:{version()}"


def _inputs() -> list[Path]:
    files: set[Path] = set()
    for pattern in SOURCES:
        files.update(p for p in ROOT.glob(pattern) if p.is_file() and p.name != "vmlinux.h")
    return sorted(files)


def source_key() -> str:
    """A hash of every file that goes into the image, by path and content."""
    h = hashlib.sha256()
    for path in _inputs():
        h.update(str(path.relative_to(ROOT)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _check_objects() -> None:
    missing = [c.name for c in (ROOT / "bpf").glob("*.bpf.c") if not c.with_suffix("").with_suffix(".bpf.o").exists()]
    if missing:
        raise ImageError(f"BPF objects not built for {', '.join(sorted(missing))}: run `make bpf` first")


def _host_suite() -> str:
    """The host's Debian release (VERSION_CODENAME): the image gets the
    same one, so its Python is the one the wheels are built for."""
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("/etc/os-release names no VERSION_CODENAME: build on Debian")


def _host_sources() -> list[Path]:
    """The host's apt source files (one-line and deb822): the mirrors and
    proxies the host already uses, so the build reaches what apt reaches."""
    found = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        found += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    return [p for p in found if p.is_file() and p.read_text().strip()]


def _archive_uri(sources: list[Path], suite: str) -> str:
    """The URI the host gets suite's main component from (its Debian
    archive), in either format, for the backports line."""
    for path in sources:
        text = path.read_text()
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = dict(line.split(":", 1) for line in stanza.splitlines()
                              if ":" in line and not line.startswith("#"))
                fields = {k.strip(): v.split() for k, v in fields.items()}
                if suite in fields.get("Suites", []) and "main" in fields.get("Components", []):
                    return fields["URIs"][0]
        else:
            for line in text.splitlines():
                words = [w for w in line.split("#")[0].split() if not w.startswith("[")]
                if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                    return words[1]
    raise ImageError(f"no apt source of the host serves {suite} main: cannot add {suite}-backports")


def _mirrors(suite: str) -> list[str]:
    """mmdebstrap's MIRROR arguments: the host's source files, and the same
    archive's backports (libbpf, see PACKAGES)."""
    sources = _host_sources()
    return [*map(str, sources), f"deb {_archive_uri(sources, suite)} {suite}-backports main"]


def _apt_options() -> list[str]:
    """Host apt settings the build must share: a mirror serving a snapshot
    has Release files past their Valid-Until, which the host's apt is told
    to accept (mmdebstrap's apt reads none of the host's apt.conf.d)."""
    r = subprocess.run(["apt-config", "shell", "V", "Acquire::Check-Valid-Until"],
                       capture_output=True, text=True)
    if r.returncode == 0 and "false" in r.stdout.lower():
        return ['--aptopt=Acquire::Check-Valid-Until "false"']
    return []


def _stage(dest: Path) -> Path:
    """The files the key covers, copied to dest: the wheel is built from
    them alone (setuptools reuses a checkout's build/, where a module since
    removed would still be).  README.md is the package's long description
    only, so it is copied but not in the key."""
    for path in [*_inputs(), ROOT / "README.md"]:
        target = dest / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def _wheels(dest: Path, src: Path) -> Path:
    """kerntrace's wheel and its dependencies' (pip's own index settings),
    plus pip's wheel to install them with inside the image (the image keeps
    no pip).  Returns pip's wheel."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), str(src), "pip"],
                   check=True)
    wheels = {p.name.split("-")[0].lower(): p for p in dest.glob("*.whl")}
    if "kerntrace" not in wheels or "pip" not in wheels:
        raise ImageError(f"pip wheel made no kerntrace or pip wheel in {dest}")
    return wheels["pip"]


def _hooks(wheels: Path, pip_wheel: Path, fleet: Path) -> list[str]:
    """mmdebstrap customize hooks: install the wheels into a venv inside the
    image with the image's own Python, then drop what is not needed."""
    inside = "/tmp/kt-wheels"
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    # env -i: the host's PIP_* settings (find-links, constraints) name paths
    # that do not exist in the image; the install reads only the wheels.
    run = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 chroot \"$1\""
    check = (f"import sys; v = '%d.%d' % sys.version_info[:2]; "
             f"sys.exit(None if v == '{want}' else "
             f"'the image has Python ' + v + ', the wheels were built for {want}: build with a {want} venv')")
    site = f"{VENV}/lib/python{want}/site-packages"
    return [
        f"{run} python3 -c {shlex.quote(check)}",
        f"{run} mkdir -p {inside}",
        # special hooks split on spaces, unquoted: the paths have none (mkdtemp names)
        f"copy-in {' '.join(str(p) for p in sorted(wheels.glob('*.whl')))} {inside}",
        # --without-pip: Debian's venv has no ensurepip without python3-venv,
        # and pip runs from its wheel instead.
        f"{run} python3 -m venv --without-pip {VENV}",
        f"{run} {VENV}/bin/python {inside}/{pip_wheel.name}/pip install --quiet --no-index --no-cache-dir "
        f"--disable-pip-version-check --find-links {inside} kerntrace",
        f"copy-in {fleet} {VENV}/bin",
        f"rm -rf \"$1\"{inside} " + " ".join(f"\"$1\"{site}/{t}" for t in TRIM),
        f"{run} {VENV}/bin/python -c {shlex.quote(SMOKE)}",
    ]


def build_rootfs(force: bool = False, log: Optional[Path] = None) -> Path:
    """dist/kerntrace-rootfs.tar for the current sources (kept when its key
    matches); mmdebstrap's output goes to log, else to stderr."""
    _check_objects()
    key = source_key()
    if not force and ROOTFS_TAR.exists() and KEY_FILE.exists() and KEY_FILE.read_text().strip() == key:
        return ROOTFS_TAR
    if os.geteuid() != 0:
        raise ImageError("building the image needs root (mmdebstrap chroots into it)")
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed (Debian: apt-get install mmdebstrap; make deps installs it)")
    ROOTFS_TAR.parent.mkdir(exist_ok=True)
    # /var/tmp: a disk, not a tmpfs; the root filesystem is a few hundred MB
    with tempfile.TemporaryDirectory(prefix="kt-image-", dir="/var/tmp") as tmp:
        wheels = Path(tmp) / "wheels"
        pip_wheel = _wheels(wheels, _stage(Path(tmp) / "src"))
        fleet = Path(tmp) / "kerntrace-fleet"   # copied under its command name, mode 0755
        shutil.copyfile(ROOT / "deploy" / "fleet.py", fleet)
        fleet.chmod(0o755)
        partial = Path(tmp) / "rootfs.tar"
        suite = _host_suite()
        argv = ["mmdebstrap", "--mode=root", "--variant=essential",
                "--include=" + ",".join(p.format(suite=suite) for p in PACKAGES),
                *(f"--dpkgopt={o}" for o in DPKG_OPTIONS), *_apt_options(),
                *(f"--customize-hook={h}" for h in _hooks(wheels, pip_wheel, fleet)),
                suite, str(partial), *_mirrors(suite)]
        out = open(log, "ab") if log else None
        try:
            r = subprocess.run(argv, stdout=out or sys.stderr, stderr=subprocess.STDOUT)
        finally:
            if out:
                out.close()
        if r.returncode != 0:
            raise ImageError(f"mmdebstrap failed (exit {r.returncode})" + (f"; its log: {log}" if log else ""))
        KEY_FILE.unlink(missing_ok=True)
        shutil.move(str(partial), ROOTFS_TAR)
    KEY_FILE.write_text(key + "\n")
    return ROOTFS_TAR


def _comment(key: str) -> str:
    return f"kerntrace rootfs {key}"


def image_key(engine: DockerEngine, tag: str) -> Optional[str]:
    """The key the engine's image was built from, if it has the image."""
    r = engine.docker("image", "inspect", "--format", "{{.Comment}}", tag, timeout=30)
    if r.returncode != 0:
        return None
    words = r.stdout.strip().split()
    return words[-1] if words[:2] == ["kerntrace", "rootfs"] else None


def ensure_image(engine: DockerEngine, force: bool = False, log: Optional[Path] = None) -> str:
    """The image for the current sources in this engine: built and imported
    only when its key differs.  Returns its tag (kerntrace:VERSION, also
    tagged kerntrace:latest)."""
    tag = image_tag()
    key = source_key()
    if not force and image_key(engine, tag) == key:
        return tag
    tar = build_rootfs(force=force, log=log)
    engine.docker("import", "--message", _comment(key),
                  "--change", f"ENV PATH={ENV_PATH}",
                  "--change", "ENV LANG=C.UTF-8",
                  "--change", 'CMD ["iotrace", "doctor"]',
                  str(tar), tag, timeout=600, check=True)
    engine.docker("tag", tag, f"{IMAGE}:latest", timeout=30, check=True)
    return tag


def image_size(engine: DockerEngine, tag: str) -> int:
    """The image's size in bytes, as the engine counts it (uncompressed)."""
    r = engine.docker("image", "inspect", "--format", "{{.Size}}", tag, timeout=30, check=True)
    return int(r.stdout.strip())


def _main(argv: Iterable[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/image.py", description="Build kerntrace's container image offline.")
    parser.add_argument("--force", action="store_true", help="rebuild the root filesystem and re-import")
    args = parser.parse_args(list(argv))
    if not ping():
        print("no Docker engine answers on /var/run/docker.sock: start Docker (systemctl start docker, "
              "or dockerd &), then run make image again", file=sys.stderr)
        return 2
    engine = DockerEngine()   # the running engine: nothing of it is stopped
    try:
        tag = ensure_image(engine, force=args.force)
    except (ImageError, DockerEngineError, subprocess.CalledProcessError) as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 2
    size = image_size(engine, tag)
    print(f"  OK      {tag} ({IMAGE}:latest), {size / 1e6:.0f} MB; how to run it: the README's Fleet section")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
