"""``blocklist``: render the tenant's network indicators as a proxy, DNS or firewall list.

    python -m pipeline blocklist --indicators indicators.json --format squid-domains --out block.txt

The indicators file is a ``GET /api/indicators`` response (``{"value": [...]}``). The list goes
to ``--out`` (replaced atomically, so a daemon never reads half a file) or to stdout; every
indicator that was rejected, skipped or cannot be expressed in the format is reported on stderr
with its id and the reason. Exit status: 0 when nothing was rejected, 1 when some indicator was
rejected (the list is still written without it), 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, cast

from pipeline.act.blocklist import (
    FORMATS,
    LIST_NAMES,
    Blocklists,
    FormatName,
    ListName,
    Rendered,
    build_blocklists,
    render,
)
from pipeline.indicators import parse_indicators

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNREADABLE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "blocklist",
        help="render network indicators as a squid, DNS, EDL or firewall blocklist",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    parser.add_argument(
        "--indicators",
        required=True,
        type=Path,
        metavar="FILE",
        help='a GET /api/indicators response ({"value": [...]})',
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument(
        "--list",
        dest="list_name",
        choices=LIST_NAMES,
        default="block",
        help="which list to render: block (default), warn (monitored apps) or allow",
    )
    parser.add_argument("--out", type=Path, metavar="PATH", help="write here instead of stdout")
    parser.add_argument(
        "--now",
        type=_aware_time,
        metavar="ISO",
        help="the time expiry is judged against (ISO 8601; default: the current UTC time)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source = cast(Path, args.indicators)
    try:
        parsed = parse_indicators(json.loads(source.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        # Covers unreadable files, bad UTF-8 and JSON (both ValueErrors), and payloads that are
        # not an indicators response (IndicatorPayloadError).
        print(f"blocklist: cannot read indicators from {source}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE

    now = cast(datetime | None, args.now) or datetime.now(UTC)
    lists = build_blocklists(parsed.indicators, now, parsed.rejected)
    rendered = render(lists, cast(FormatName, args.format), cast(ListName, args.list_name))

    try:
        _write(rendered.content, cast(Path | None, args.out))
    except OSError as error:
        print(f"blocklist: cannot write {args.out}: {error}", file=sys.stderr)
        return EXIT_UNREADABLE

    _report(lists, rendered, sys.stderr)
    logger.info(
        "blocklist %s/%s: %d entries written, %d rejected, %d skipped, %d not representable",
        rendered.format,
        rendered.list_name,
        len(rendered.entries),
        len(lists.rejected),
        len(lists.skipped),
        len(rendered.not_representable),
    )
    return EXIT_REJECTED if lists.rejected else EXIT_OK


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _write(content: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(content)
        return

    # Write beside the target and rename over it, so a reader sees the old or the new file whole.
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _report(lists: Blocklists, rendered: Rendered, stream: TextIO) -> None:
    # Values are printed with repr(), so a hostile value cannot forge a line of this report.
    for rejected in lists.rejected:
        print(
            f"rejected: indicator {rejected.indicator_id} {rejected.value!r}: {rejected.reason}",
            file=stream,
        )
    for skipped in lists.skipped:
        print(
            f"skipped: indicator {skipped.indicator_id} {skipped.value!r}: {skipped.reason}",
            file=stream,
        )
    for omitted in rendered.not_representable:
        print(
            f"not representable in {rendered.format}: indicator {omitted.indicator_id} "
            f"{omitted.value!r}: {omitted.reason}",
            file=stream,
        )
    for partial in rendered.partial:
        print(
            f"partly representable in {rendered.format}: indicator {partial.indicator_id} "
            f"{partial.value!r}: {partial.reason}",
            file=stream,
        )
    if rendered.elsewhere:
        family = "address" if rendered.format in _NAME_FORMATS else "name and URL"
        print(
            f"note: {rendered.elsewhere} {family} entries belong in a format of that kind "
            f"and are not in this {rendered.format} list",
            file=stream,
        )
    for merged in lists.merged:
        logger.info("merged: indicator %s %r: %s", merged.indicator_id, merged.value, merged.reason)


_NAME_FORMATS = frozenset({"squid-domains", "unbound", "rpz", "dnsmasq", "hosts", "edl-urls"})
