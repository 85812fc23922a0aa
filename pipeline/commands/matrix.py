"""``python -m pipeline matrix``: the capability matrix as JSON, every cell expanded."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.cli import EXIT_OK
from pipeline.matrix import load_matrix


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "matrix", help="print the capability matrix (capability x state x platform) as JSON"
    )
    parser.add_argument("--capability", help="only this capability")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    document = load_matrix().to_json()
    if args.capability:
        if args.capability not in document["capabilities"]:
            known = ", ".join(document["capabilities"])
            print(f"error: unknown capability {args.capability!r}; known: {known}", file=sys.stderr)
            return 2
        document["capabilities"] = {args.capability: document["capabilities"][args.capability]}
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
