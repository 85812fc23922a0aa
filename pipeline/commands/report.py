"""``python -m pipeline report``: the HTML report of an evaluation document.

The evaluation is what ``python -m pipeline evaluate --format json`` wrote. What a cycle did
(planned actions, blocklist publications, ingestion counts, the cycle's metadata) can be added
from JSON files; without them those sections say that nothing of the kind happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from pipeline.matrix import load_matrix
from pipeline.report import DEFAULT_TOP, ReportInputError, build_report

logger = logging.getLogger(__name__)


class _Unusable(Exception):
    """An input file that cannot be read or parsed; the message names the file."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="render the HTML report of an evaluation",
        description=(
            "Render one self-contained HTML page from an evaluation document: modes by platform, "
            "capability coverage, devices where indicators and app blocks do not enforce, "
            "findings and fixes, unknown verdicts and what the verdicts rest on."
        ),
    )
    parser.add_argument(
        "--evaluation",
        required=True,
        type=Path,
        metavar="FILE",
        help="the JSON written by `python -m pipeline evaluate --format json`",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report.html"), metavar="FILE", help="default report.html"
    )
    parser.add_argument("--actions", type=Path, metavar="FILE", help="JSON list of actions")
    parser.add_argument(
        "--blocklists", type=Path, metavar="FILE", help="JSON list of blocklist publications"
    )
    parser.add_argument(
        "--ingestion", type=Path, metavar="FILE", help="JSON ingestion summary (or one per table)"
    )
    parser.add_argument(
        "--cycle", type=Path, metavar="FILE", help="JSON cycle metadata (cycle_id, dry_run, ...)"
    )
    parser.add_argument(
        "--top", type=int, default=DEFAULT_TOP, metavar="N", help="rows per list (default 50)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        print("error: --top must be at least 1", file=sys.stderr)
        return EXIT_USAGE

    try:
        evaluation = _read_json(args.evaluation)
        extras = {
            name: _read_json(path) if path is not None else None
            for name, path in (
                ("actions", args.actions),
                ("blocklists", args.blocklists),
                ("ingestion", args.ingestion),
                ("cycle", args.cycle),
            )
        }
        report = build_report(evaluation, load_matrix().to_json(), top=args.top, **extras)
    except (_Unusable, ReportInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        _write_atomically(args.out, report.html)
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE

    print(f"report written to {args.out}", file=sys.stderr)
    if report.problems:
        for problem in report.problems[:20]:
            print(f"unreadable: {problem}", file=sys.stderr)
        print(f"{len(report.problems)} device record(s) left out of the report", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except OSError as exc:
        raise _Unusable(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise _Unusable(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise _Unusable(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so a reader never sees half a report."""
    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        # mkstemp makes the file private; a report is meant to be opened and passed on.
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("report written to %s (%d characters)", path, len(text))
