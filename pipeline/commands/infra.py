"""``python -m pipeline infra-content``: write or ``--check`` the JSON that infra/'s Bicep reads."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline import infra_content

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "infra-content",
        help="generate infra/generated/*.json from pipeline/tables.py and detections/",
        description=(
            "Write the custom tables, analytics rules, hunting queries and workbooks as the JSON "
            "files the Bicep modules load. Exit 1 when a detection file was rejected or, with "
            "--check, when a generated file is stale."
        ),
    )
    parser.add_argument(
        "--repo-root",
        type=Path,
        default=infra_content.REPO_ROOT,
        help="repository root holding detections/ and infra/ (default: this checkout)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any generated file differs from what the sources produce",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    repo_root: Path = args.repo_root
    out_dir = repo_root / infra_content.GENERATED_DIR
    if not repo_root.is_dir():
        print(f"infra-content: {repo_root} is not a folder", file=sys.stderr)
        return EXIT_USAGE

    try:
        content = infra_content.build_content(repo_root)
    except infra_content.InfraContentError as error:
        print(f"infra-content: {error}", file=sys.stderr)
        return EXIT_USAGE

    for rejected in content.rejected:
        print(f"rejected: {rejected}", file=sys.stderr)

    if args.check:
        stale = infra_content.stale_files(content, out_dir)
        for name in stale:
            print(f"stale: {out_dir / name} (run: python -m pipeline infra-content)")
        if not stale:
            print(f"infra-content: {out_dir} is up to date")
        return EXIT_PARTIAL if stale or content.rejected else EXIT_OK

    try:
        written = infra_content.write_content(content, out_dir)
    except OSError as error:
        print(f"infra-content: cannot write {out_dir}: {error}", file=sys.stderr)
        return EXIT_USAGE

    rules = content.documents[infra_content.RULES_FILE]
    hunting = content.documents[infra_content.HUNTING_FILE]
    workbooks = content.documents[infra_content.WORKBOOKS_FILE]
    print(
        f"infra-content: {len(written)} file(s) changed in {out_dir}; "
        f"{len(rules['onOwnTables']) + len(rules['onDefenderXdrTables'])} analytics rule(s), "
        f"{len(hunting['queries'])} hunting query(ies) "
        f"({len(hunting['notDeployed'])} Defender XDR only), "
        f"{len(workbooks['workbooks'])} workbook(s), {len(content.rejected)} rejected"
    )
    return EXIT_PARTIAL if content.rejected else EXIT_OK
