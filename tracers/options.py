"""The options every tracing command shares, spelled as bcc and
libbpf-tools spell them, and the logging they switch on."""
from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, Optional

import click

from click.core import ParameterSource

from .engine.backend import BACKENDS, BackendRequest
from .engine.backend_env import ENV_BACKEND, ENV_BTF, check_env_btf_file
from .engine.sinks import TraceOutput
from .engine.tracedir import DEFAULT_FLUSH_S

__all__ = ["PidList", "backend_option", "btf_option", "pid_options", "setup_logging"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is at each record: a command run
    in-process (click's CliRunner, a test) swaps it and closes its own."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[_StderrHandler()], force=True)
    if verbose < 2:
        # libbpf's debug chatter only with -vv; its warnings always show with -v.
        logging.getLogger("kerntrace.libbpf").setLevel(logging.INFO if verbose else logging.ERROR)


class PidList(click.ParamType):
    """-p 12 or -p 12,34 (and -p repeated): bcc's tools take both."""

    name = "pid"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> list[int]:
        if isinstance(value, list):
            return value
        pids = []
        for part in str(value).split(","):
            try:
                pids.append(int(part.strip()))
            except ValueError:
                self.fail(f"{value!r} is not a PID or a comma-separated list of PIDs", param, ctx)
        return pids


def _flatten(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[int, ...]:
    return tuple(pid for group in value or () for pid in group)


# --backend and --btf: pid_options turns them into one argument, `backend`
# (a BackendRequest), which require_bpf_environment resolves; doctor takes --btf.
# KERNTRACE_BACKEND and KERNTRACE_BTF are their defaults (a Run made from
# Python reads the same: engine/backend_env.py).
backend_option = click.option(
    "--backend", "backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
    envvar=ENV_BACKEND, show_envvar=True,
    help="auto: libbpf CO-RE where the kernel has BTF (or with --btf), else BCC where python3-bpfcc and the "
         "running kernel's headers are installed (its programs, for nstrace ip6mr and iotrace odirect, are not "
         "in this build yet). Printed with the hooks, recorded in the summary and the trace.")
def _check_env_btf(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    # a file named on the command line is checked where the backend is resolved;
    # one from the environment here, so its one line names the variable
    if value and ctx.get_parameter_source(param.name or "") is ParameterSource.ENVIRONMENT:
        check_env_btf_file(value)
    return value


btf_option = click.option(
    "--btf", "btf_file", type=click.Path(), metavar="FILE", envvar=ENV_BTF, show_envvar=True,
    callback=_check_env_btf,
    help="The kernel's BTF from FILE (raw BTF or an ELF file with .BTF, e.g. BTFHub's for a kernel built "
         "without BTF): the CO-RE relocations and the hook probes read it.")


def pid_options(required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-p/-c/-f/-d/--json/-o/-T/-v, as bcc and libbpf-tools spell them,
    and --backend/--btf/--prometheus."""

    output = click.option("-o", "--output", type=click.Path(), metavar="DIR",
                          help="Write the trace to DIR as it goes: meta.json, Parquet parts per record kind, "
                               "summary.json at the end (mode 0600; `report DIR` reads it back).")
    flush = click.option("--flush", "flush_s", type=click.FloatRange(min=0.01), default=DEFAULT_FLUSH_S,
                         show_default=True, metavar="SECONDS",
                         help="With -o: write and fsync the records at least this often (what a kill -9 "
                              "or a panic can lose, with the write under way).")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("-p", "--pid", "pids", type=PidList(), multiple=True, callback=_flatten, metavar="PID",
                         help="Trace this process (all its threads); repeatable, or a comma list (-p 12,34)."),
            click.option("-c", "--command", "command", metavar="COMMAND",
                         help="Start COMMAND once the probes are attached and trace it and its children."),
            click.option("-f", "--follow", is_flag=True, help="Also trace children created while tracing."),
            click.option("--container", "containers", multiple=True, metavar="NAME|ID",
                         help="Only tasks of this container (name, or id of 12+ hex digits; Docker, "
                              "containerd, CRI-O, podman); repeatable. With -p/-c: both must hold."),
            click.option("--cgroup", "cgroups", multiple=True, metavar="PATH",
                         help="Only tasks of this cgroup or below it (/docker/ID, or a path under "
                              "/sys/fs/cgroup); repeatable."),
            click.option("-d", "--duration", type=click.FloatRange(min=0), metavar="SECONDS",
                         help="Stop after SECONDS (0: attach, print the ready line, exit)."),
            click.option("--json", "as_json", is_flag=True, help="JSON Lines: events, then a summary."),
            output,
            flush,
            click.option("--prometheus", "prometheus", metavar="ADDR",
                         help="Serve the run's figures to Prometheus on http://ADDR/metrics (HOST:PORT or :PORT, "
                              "e.g. 127.0.0.1:9435): per container (the top 20, the rest as \"other\") and per node."),
            click.option("-T", "--utc", is_flag=True, help="Live lines show UTC wall-clock time, not seconds since the start."),
            backend_option,
            btf_option,
            click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug)."),
        ]
        for option in reversed(options):
            fn = option(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            setup_logging(kwargs.get("verbose", 0))
            flush_s = kwargs.pop("flush_s")
            if kwargs.get("output"):
                kwargs["output"] = TraceOutput(kwargs["output"], flush_s)
            kwargs["backend"] = BackendRequest(kwargs.pop("backend"), kwargs.pop("btf_file"))
            if kwargs.get("prometheus"):
                from .engine.metrics import Exporter

                # bound now: a bad ADDR or a port in use stops here, before anything is attached
                kwargs["prometheus"] = Exporter(kwargs["prometheus"])
            return fn(*args, **kwargs)

        return wrapper

    return decorate
