"""``python -m pipeline collect``: read every source into one mde-snapshot/1 file.

Three ways to choose the tenant, all collected by the same clients:

* ``--lab``: start the lab tenant in this process on a free port and collect from it;
* ``--mde-url URL --graph-url URL --token TOKEN``: any server speaking the APIs (a lab started
  with ``lab serve``, a test server, a recording proxy);
* neither: a real tenant, configured by environment variables (see pipeline.sources.settings).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.lab.collector_docs import write_collector_documents
from pipeline.lab.fleet import DEFAULT_DEVICES, DEFAULT_SEED, MAX_DEVICES
from pipeline.lab.server import LabConfig, LabServer
from pipeline.sources.auth import (
    GRAPH_SCOPE,
    MDE_SCOPE,
    ClientCredentialsTokens,
    StaticToken,
    TokenProvider,
)
from pipeline.sources.collect import CollectionResult, collect_snapshot
from pipeline.sources.errors import AuthError
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import ApiClient
from pipeline.sources.mde import MdeClient
from pipeline.sources.settings import SettingsError, SourceSettings, token_providers

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


@dataclass
class _Target:
    mde_url: str
    graph_url: str
    mde_tokens: TokenProvider
    graph_tokens: TokenProvider
    collector_dir: Path | None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="collect deviceavinfo, machines, hunting, indicators and collector documents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="snapshot file to write")
    parser.add_argument("--lab", action="store_true", help="collect from an in-process lab tenant")
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="lab fleet size")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="lab fleet seed")
    parser.add_argument("--mde-url", help="MDE API base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--graph-url", help="Graph base URL with version, e.g. .../v1.0")
    parser.add_argument("--token", help="bearer token for the MDE API (and Graph, by default)")
    parser.add_argument("--graph-token", help="bearer token for Graph when it differs")
    parser.add_argument(
        "--collector-dir", type=Path, help="directory of endpoint-av-state/1 documents to include"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        print(f"collect: {problem}", file=sys.stderr)
        return EXIT_USAGE

    with ExitStack() as stack:
        try:
            target = stack.enter_context(_target(args))
        except (SettingsError, AuthError) as exc:
            print(f"collect: {exc}", file=sys.stderr)
            return EXIT_USAGE
        mde_api = ApiClient(target.mde_url, target.mde_tokens)
        graph_api = ApiClient(target.graph_url, target.graph_tokens)
        stack.callback(mde_api.close)
        stack.callback(graph_api.close)

        result = collect_snapshot(
            args.out,
            MdeClient(mde_api),
            GraphClient(graph_api),
            collector_dir=target.collector_dir,
            progress=_Progress(),
        )
    _print_summary(result)
    return EXIT_PARTIAL if result.failed else EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    remote = [args.mde_url, args.graph_url, args.token]
    if args.lab and any(remote):
        return "--lab and --mde-url/--graph-url/--token are alternatives; give one"
    if any(remote) and not all(remote):
        return "--mde-url, --graph-url and --token go together"
    if not 0 <= args.devices <= MAX_DEVICES:
        return f"--devices must be between 0 and {MAX_DEVICES}"
    if args.collector_dir is not None and not args.collector_dir.is_dir():
        return f"--collector-dir {args.collector_dir} is not a directory"
    return None


@contextmanager
def _target(args: argparse.Namespace) -> Iterator[_Target]:
    """The one place that decides which base URLs and credentials a collection uses."""
    if args.lab:
        config = LabConfig(devices=args.devices, seed=args.seed)
        with LabServer(config) as lab, tempfile.TemporaryDirectory() as scratch:
            collector_dir = args.collector_dir
            if collector_dir is None:
                collector_dir = Path(scratch)
                write_collector_documents(lab.fleet, collector_dir)
            print(
                f"collect: lab tenant with {args.devices} devices at {lab.base_url}",
                file=sys.stderr,
            )
            yield _Target(
                lab.mde_url,
                lab.graph_url,
                ClientCredentialsTokens(
                    lab.token_url, config.client_id, config.client_secret, MDE_SCOPE
                ),
                ClientCredentialsTokens(
                    lab.token_url, config.client_id, config.client_secret, GRAPH_SCOPE
                ),
                collector_dir,
            )
        return

    if args.mde_url:
        graph_token = StaticToken(args.graph_token or args.token)
        yield _Target(
            args.mde_url, args.graph_url, StaticToken(args.token), graph_token, args.collector_dir
        )
        return

    settings = SourceSettings.from_env(os.environ)
    mde_tokens, graph_tokens = token_providers(settings)
    yield _Target(
        settings.mde_url, settings.graph_url, mde_tokens, graph_tokens, args.collector_dir
    )


class _Progress:
    """Progress on stderr: at most one line a second per source, and one when a source ends."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, source: str, count: int) -> None:
        now = time.monotonic()
        if now - self._last.get(source, 0.0) >= 1.0:
            self._last[source] = now
            print(f"collect: {source}: {count} records so far", file=sys.stderr)


def _print_summary(result: CollectionResult) -> None:
    print(f"snapshot: {result.path}")
    for source, count in result.counts.items():
        print(f"  {source:<20} {count:>8}")
    print(f"  API calls: {sum(result.calls.values())} ({_format_calls(result.calls)})")
    if not result.errors:
        print("errors: none")
        return
    print(f"errors: {len(result.errors)}")
    for error in result.errors:
        status = error["status"] if error["status"] is not None else "-"
        print(
            f"  {error['source']}: {error['endpoint']} {status} {error['code']}: {error['message']}"
        )


def _format_calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(calls.items())) or "none"
