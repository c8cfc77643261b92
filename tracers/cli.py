"""The ``iotrace`` and ``nstrace`` command lines.

Subcommands live in their tracer's module and are imported only when named,
so ``iotrace odirect`` never pays for pandas or pyroute2 before attaching.
Every failure ends in one line on stderr: exit 2 for bad input or a machine
that cannot trace, exit 1 when tracing itself failed.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, Optional, Sequence

import click

__all__ = ["iotrace", "iotrace_main", "nstrace", "nstrace_main"]

IOTRACE_COMMANDS = {
    "doctor": ("kerntrace.tracers.doctor", "command", "What this kernel allows, each item tried"),
    "odirect": ("kerntrace.tracers.odirect", "command", "O_DIRECT reads of a process and the block I/O they cause"),
    "dstate": ("kerntrace.tracers.dstate", "command", "Uninterruptible (D-state) sleeps and where they wait"),
    "zombies": ("kerntrace.tracers.zombies", "command", "Process exits and who reaps them, or not"),
    "diagnose": ("kerntrace.tracers.diagnose", "command", "odirect + dstate + zombies + counters, with findings"),
    "stat": ("kerntrace.tracers.stat", "command", "dstat's view, plus who causes the iowait"),
    "report": ("kerntrace.tracers.report", "command", "Findings of a trace directory (-o DIR), or per node of many"),
}
NSTRACE_COMMANDS = {
    "doctor": ("kerntrace.tracers.doctor", "command", "What this kernel allows, each item tried"),
    "ip6mr": ("kerntrace.tracers.ip6mr", "command", "Namespace creation, the ip6mr path, OOM kills: crash risk"),
    "netns": ("kerntrace.tracers.netns", "command", "Every network namespace, its processes, links and IPv6 state"),
    "postmortem": ("kerntrace.tracers.postmortem", "command", "Recognize the ip6mr crash (and others) in a kernel log"),
    "report": ("kerntrace.tracers.report", "command", "Findings of a trace directory (-o DIR), or per node of many"),
}


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self._lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        entry = self._lazy.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _help = entry
        cmd = getattr(importlib.import_module(module_name), attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every tracer.
        rows = [(name, help_text) for name, (_m, _a, help_text) in self._lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _version() -> str:
    from .engine.run import kerntrace_version

    return kerntrace_version()


@click.group(cls=LazyGroup, lazy=IOTRACE_COMMANDS, context_settings=CONTEXT)
@click.version_option(_version(), "--version", prog_name="iotrace", message="%(prog)s (kerntrace) %(version)s")
def iotrace() -> None:
    """Block I/O, O_DIRECT, D-state and zombie tracing with findings (eBPF)."""


@click.group(cls=LazyGroup, lazy=NSTRACE_COMMANDS, context_settings=CONTEXT)
@click.version_option(_version(), "--version", prog_name="nstrace", message="%(prog)s (kerntrace) %(version)s")
def nstrace() -> None:
    """Network-namespace creation and the IPv6 multicast-routing crash path (eBPF)."""


def _run(group: click.Group, prog: str, argv: Optional[Sequence[str]]) -> int:
    from .engine.environment import UsageProblem
    from .engine.libbpf import LibbpfError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return 130
    except click.UsageError as exc:
        name = exc.ctx.command_path if exc.ctx else prog
        click.echo(f"{name}: error: {exc.format_message()}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}", err=True)
        return int(exc.exit_code)
    except UsageProblem as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        return 2
    except LibbpfError as exc:
        first = str(exc).splitlines()[0]
        click.echo(f"{prog}: error: {first}", err=True)
        logging.getLogger("kerntrace").debug("%s", exc)
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): not an error.  Point stdout at
        # /dev/null so the interpreter's final flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    if rv is None:
        return 0
    return int(rv)


def iotrace_main(argv: Optional[Sequence[str]] = None) -> int:
    return _run(iotrace, "iotrace", argv)


def nstrace_main(argv: Optional[Sequence[str]] = None) -> int:
    return _run(nstrace, "nstrace", argv)


def _entry_iotrace() -> None:
    sys.exit(iotrace_main())


def _entry_nstrace() -> None:
    sys.exit(nstrace_main())
