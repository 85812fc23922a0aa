"""``python -m pipeline evaluate``: verdicts for every device in the given files."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from pipeline.evaluate import Evaluator
from pipeline.inputs import InputError, parse_tenant, read_files
from pipeline.matrix import load_matrix
from pipeline.model import TenantSettings
from pipeline.output import Summary, write_json, write_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate devices from deviceavinfo, hunting, collector or snapshot files",
        description=(
            "Decide, for every device in the input files, which Defender for Endpoint protections "
            "really enforce. Input kinds are recognised from their content."
        ),
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="a deviceavinfo page, DeviceTvmInfoGathering export (CSV/JSON), collector "
        "document or snapshot; repeat for several",
    )
    parser.add_argument(
        "--tenant",
        type=Path,
        metavar="FILE",
        help="tenant settings JSON (edrBlockMode, customNetworkIndicators, allowOrBlockFile, "
        "mdeLicense, mdaEnforceAppAccess, configured)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        tenant = _read_tenant(args.tenant)
        inputs = read_files(args.input)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if inputs.indicator_kinds is not None and tenant.indicator_kinds is None:
        tenant = _with_indicator_kinds(tenant, inputs.indicator_kinds)
    matrix = load_matrix()
    evaluator = Evaluator(matrix, tenant)
    coverages = (evaluator.evaluate(facts) for facts in inputs.devices)
    summary = Summary(matrix_version=matrix.version)

    out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        if args.format == "json":
            write_json(out, coverages, inputs.rejected, summary)
        else:
            for coverage in coverages:
                summary.add(coverage)
            summary.rejected = len(inputs.rejected)
            write_table(out, summary, inputs.rejected)
    finally:
        if args.out:
            out.close()

    if inputs.rejected:
        print(f"{len(inputs.rejected)} record(s) rejected; see the output", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _read_tenant(path: Path | None) -> TenantSettings:
    if path is None:
        return TenantSettings()
    try:
        document = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return parse_tenant(document, str(path))


def _with_indicator_kinds(tenant: TenantSettings, kinds: set[str]) -> TenantSettings:
    return replace(tenant, indicator_kinds=frozenset(kinds))
