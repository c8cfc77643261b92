"""The options every tracing command shares, spelled as bcc and
libbpf-tools spell them, and the logging they switch on."""
from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable

import click

__all__ = ["pid_options", "setup_logging"]


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(name)s: %(message)s", stream=sys.stderr, force=True)
    if verbose < 2:
        # libbpf's debug chatter only with -vv; its warnings always show with -v.
        logging.getLogger("kerntrace.libbpf").setLevel(logging.INFO if verbose else logging.ERROR)


def pid_options(required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """-p/-c/-f/-d/--json/-o/-v, as bcc and libbpf-tools spell them."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("-p", "--pid", "pids", type=int, multiple=True, metavar="PID",
                         help="Trace this process (all its threads); repeatable."),
            click.option("-c", "--command", "command", metavar="COMMAND",
                         help="Start COMMAND once the probes are attached and trace it and its children."),
            click.option("-f", "--follow", is_flag=True, help="Also trace children created while tracing."),
            click.option("-d", "--duration", type=click.FloatRange(min=0), metavar="SECONDS",
                         help="Stop after SECONDS (0: attach, print the ready line, exit)."),
            click.option("--json", "as_json", is_flag=True, help="JSON Lines: events, then a summary."),
            click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
                         help="Write every event to FILE (Parquet, mode 0600)."),
            click.option("-v", "--verbose", count=True, help="Show libbpf's messages (-vv: debug)."),
        ]
        for option in reversed(options):
            fn = option(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            setup_logging(kwargs.get("verbose", 0))
            return fn(*args, **kwargs)

        return wrapper

    return decorate
