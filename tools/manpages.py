"""Man pages for iotrace and nstrace, generated from their click commands
with click-man (`make install` runs it): iotrace(1), iotrace-odirect(1), ...

    python tools/manpages.py DIR     # writes DIR/*.1
"""
from __future__ import annotations

import sys

import click
from click_man.core import write_man_pages

from kerntrace.tracers.cli import iotrace, nstrace
from kerntrace.tracers.engine.run import kerntrace_version


def loaded(group: click.Group) -> click.Group:
    """The group with every lazily imported subcommand loaded: click-man
    reads a group's ``commands``."""
    ctx = click.Context(group)
    commands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return click.Group(name=group.name, help=group.help, commands={k: v for k, v in commands.items() if v})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/manpages.py DIR", file=sys.stderr)
        return 2
    for prog, group in (("iotrace", iotrace), ("nstrace", nstrace)):
        write_man_pages(prog, loaded(group), version=kerntrace_version(), target_dir=argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
