"""``push``: keep a Zscaler URL category or a Netskope URL list equal to the block list.

    python -m pipeline push --indicators indicators.json --target zscaler --dry-run
    python -m pipeline push --indicators indicators.json --target netskope --state ns.json

Settings come from the environment only (``ZSCALER_*`` or ``NETSKOPE_*``, see
docs/blocklists-push.md); secrets are never printed. With ``--state FILE`` the values the last
push left in the list are read from FILE, only the difference is sent, and FILE is updated after
a successful push; without it the whole list is replaced. ``--dry-run`` sends nothing and needs
no credentials: it prints the calls a push would make.

The result is printed as JSON on stdout; indicators that were rejected, and entries the service
cannot express or refused, are listed on stderr. Exit status: 0 when everything was pushed, 1
when something was rejected or refused or the push stopped part way, 2 for bad settings or
unreadable input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO, cast

from pipeline.act.blocklist import LIST_NAMES, ListName, build_blocklists
from pipeline.act.blocklist.push import (
    NetskopeSettings,
    NetskopeTarget,
    Prepared,
    PushConfigError,
    PushError,
    PushResult,
    ZscalerSettings,
    ZscalerTarget,
)
from pipeline.act.blocklist.push.base import ListPushTarget
from pipeline.indicators import ParsedIndicators, Rejected, parse_indicators

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_PARTIAL: Final = 1
EXIT_USAGE: Final = 2
TARGETS: Final = ("zscaler", "netskope")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "push",
        help="push the block list to a Zscaler URL category or a Netskope URL list",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument(
        "--indicators",
        required=True,
        type=Path,
        metavar="FILE",
        help='a GET /api/indicators response ({"value": [...]})',
    )
    parser.add_argument("--target", required=True, choices=TARGETS, help="where to push")
    parser.add_argument(
        "--list",
        dest="list_name",
        choices=[name for name in LIST_NAMES if name != "allow"],
        default="block",
        help="which list to push: block (default) or warn",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="what the last push left (read, then updated): enables incremental pushes",
    )
    parser.add_argument("--dry-run", action="store_true", help="send nothing; show the plan")
    parser.add_argument(
        "--now",
        type=_aware_time,
        metavar="ISO",
        help="the time expiry is judged against (ISO 8601; default: the current UTC time)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    dry_run = bool(args.dry_run)
    state_path = cast(Path | None, args.state)
    try:
        parsed = _read_indicators(cast(Path, args.indicators))
        target = _target(cast(str, args.target), dry_run)
        previous = _read_state(state_path, target.name)
    except (OSError, ValueError, PushConfigError) as error:
        # ValueError covers bad JSON, bad UTF-8 and payloads that are not indicators.
        print(f"push: {error}", file=sys.stderr)
        return EXIT_USAGE

    now = cast(datetime | None, args.now) or datetime.now(UTC)
    lists = build_blocklists(parsed.indicators, now, parsed.rejected)
    prepared = target.prepare(lists.get(cast(ListName, args.list_name)))
    _report_input(lists.rejected, prepared, target.name, sys.stderr)

    try:
        result = target.push(prepared.values, previous)
    except PushError as error:
        print(f"push: {error}", file=sys.stderr)
        if error.partial is not None:
            print(json.dumps(error.partial.as_dict(), indent=2))
        return EXIT_PARTIAL
    finally:
        target.close()

    print(json.dumps(result.as_dict(), indent=2))
    for refused in result.rejected:
        print(f"refused by {target.name}: {refused.value!r}: {refused.reason}", file=sys.stderr)

    if state_path is not None and not dry_run:
        try:
            _write_state(state_path, result)
        except OSError as error:
            print(f"push: cannot write {state_path}: {error}", file=sys.stderr)
            return EXIT_PARTIAL
    return EXIT_PARTIAL if (result.rejected or lists.rejected) else EXIT_OK


def _target(name: str, dry_run: bool) -> ListPushTarget:
    if name == "zscaler":
        return ZscalerTarget.from_settings(
            ZscalerSettings.from_env(os.environ, dry_run=dry_run), dry_run=dry_run
        )
    return NetskopeTarget.from_settings(
        NetskopeSettings.from_env(os.environ, dry_run=dry_run), dry_run=dry_run
    )


def _read_indicators(path: Path) -> ParsedIndicators:
    try:
        return parse_indicators(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read indicators from {path}: {error}") from None


def _read_state(path: Path | None, target: str) -> list[str] | None:
    if path is None or not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read state {path}: {error}") from None

    entries = state.get("entries") if isinstance(state, dict) else None
    if not isinstance(entries, list) or not all(isinstance(value, str) for value in entries):
        raise ValueError(f"state {path} has no list of entries")
    if state.get("target") != target:
        raise ValueError(f"state {path} belongs to {state.get('target')!r}, not {target}")
    return entries


def _write_state(path: Path, result: PushResult) -> None:
    state = {
        "target": result.target,
        "destination": result.destination,
        "pushedAt": datetime.now(UTC).isoformat(),
        "activated": result.activated,
        "entries": list(result.entries),
    }
    # Written beside the target and renamed over it, so a crash never leaves half a state.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(state, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _report_input(
    rejected_indicators: Sequence[Rejected], prepared: Prepared, target: str, out: TextIO
) -> None:
    # Values are printed with repr(), so a hostile value cannot forge a line of this report.
    for rejected in rejected_indicators:
        print(
            f"rejected: indicator {rejected.indicator_id} {rejected.value!r}: {rejected.reason}",
            file=out,
        )
    for omission in prepared.not_representable:
        print(
            f"not representable in {target}: indicator {omission.indicator_id} "
            f"{omission.value!r}: {omission.reason}",
            file=out,
        )


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
