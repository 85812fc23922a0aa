"""``python -m pipeline lab``: run the lab tenant, or write its endpoint collector documents."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pipeline.lab.collector_docs import write_collector_documents
from pipeline.lab.fleet import DEFAULT_DEVICES, DEFAULT_SEED, MAX_DEVICES, Fleet
from pipeline.lab.server import GRAPH_RESOURCE, MDE_RESOURCES, LabConfig, LabServer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("lab", help="the lab tenant: serve it, or write its documents")
    actions = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    serve = actions.add_parser("serve", help="run the lab tenant's API server in the foreground")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    _fleet_options(serve)
    serve.set_defaults(handler=serve_lab)

    docs = actions.add_parser(
        "write-collector-docs", help="write endpoint-av-state/1 documents for sample lab devices"
    )
    docs.add_argument("directory", type=Path)
    _fleet_options(docs)
    docs.set_defaults(handler=write_docs)


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="fleet size")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fleet seed")


def serve_lab(args: argparse.Namespace) -> int:
    if not 0 <= args.devices <= MAX_DEVICES:
        print(f"lab: --devices must be between 0 and {MAX_DEVICES}", file=sys.stderr)
        return 2
    try:
        lab = LabServer(LabConfig(devices=args.devices, seed=args.seed), port=args.port)
    except OSError as exc:
        print(f"lab: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2

    config = lab.config
    mde_token = lab.issue_token(MDE_RESOURCES[0])
    graph_token = lab.issue_token(GRAPH_RESOURCE)
    form = (
        f"grant_type=client_credentials&client_id={config.client_id}"
        f"&client_secret={config.client_secret}&scope={MDE_RESOURCES[0]}/.default"
    )
    print(f"lab tenant: {args.devices} devices (seed {args.seed})")
    print(f"  MDE API:   {lab.mde_url}")
    print(f"  Graph:     {lab.graph_url}")
    print(f"  token URL: {lab.token_url}")
    print(f"  client id: {config.client_id}")
    print(f"  secret:    {config.client_secret}   (lab only; new on every start)")
    print(f"  EDR block mode group: {config.edr_block_group_id}")
    print(
        "get a token (valid about an hour; for Graph use scope "
        "https://graph.microsoft.com/.default):"
    )
    print(f"  curl -s -d {shlex.quote(form)} {lab.token_url}")
    print("collect from it:")
    print(
        f"  python -m pipeline collect --mde-url {lab.mde_url} --graph-url {lab.graph_url} "
        f"--token {mde_token} --graph-token {graph_token} --out snapshot.json"
    )
    print("Ctrl-C stops the server.", flush=True)
    try:
        lab.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
    return 0


def write_docs(args: argparse.Namespace) -> int:
    if not 0 <= args.devices <= MAX_DEVICES:
        print(f"lab: --devices must be between 0 and {MAX_DEVICES}", file=sys.stderr)
        return 2
    try:
        written = write_collector_documents(Fleet(args.devices, args.seed), args.directory)
    except OSError as exc:
        print(f"lab: cannot write to {args.directory}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} endpoint-av-state/1 documents to {args.directory}")
    return 0
