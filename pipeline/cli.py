"""Command-line entry point: finds the subcommands and dispatches to one of them.

Exit statuses are shared by every command:

* 0: done, nothing rejected;
* 1: done, but some input was rejected or some work failed (the output says what);
* 2: bad usage or unreadable input, nothing done.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from pipeline import __version__, commands

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


class _CommandModule(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Defender for Endpoint coverage-gap pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = cast(_CommandModule, importlib.import_module(f"pipeline.commands.{info.name}"))
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )

    handler = cast(Handler, args.handler)
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); stop quietly instead of a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PARTIAL
