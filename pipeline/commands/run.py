"""``python -m pipeline run``: one whole cycle, on the lab tenant or a real one.

``--lab`` starts the lab tenant, the local Logs Ingestion endpoint and Azurite (unless
``--storage`` names a running one), runs one cycle in dry-run, and leaves everything it produced
in ``--out``. Without ``--lab`` the cycle reads its settings from the environment
(see ``local.settings.sample.json``): the same code, other addresses and credentials.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from pipeline.act.safety import ActionSettings
from pipeline.app_entry import parse_fanout_message
from pipeline.app_settings import STORAGE_API_VERSION
from pipeline.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from pipeline.config import MAX_SHARDS, ConfigError, FanoutSettings, PipelineSettings
from pipeline.cycle import CycleError, CycleOptions, CycleResult, run_cycle
from pipeline.fanout import ShardResult, run_shard
from pipeline.lab.azurite import AzuriteError
from pipeline.lab.fleet import DEFAULT_DEVICES, DEFAULT_SEED, MAX_DEVICES, Fleet
from pipeline.services import (
    LAB_TENANT,
    LabEnvironment,
    lab_environment,
    services_from_settings,
)
from pipeline.sources.settings import SettingsError, SourceSettings

STAGES = ("collect", "evaluate", "audit-modes", "plan", "ingest", "act", "blocklists", "report")
# The queue a lab cycle fans out to with --shards (the deployed app's default name).
LAB_FANOUT_QUEUE = "device-fanout"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run one pipeline cycle (collect, evaluate, ingest, plan, act, publish, audit)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--lab", action="store_true", help="run against the built-in lab tenant")
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="lab fleet size")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="lab fleet seed")
    parser.add_argument(
        "--storage",
        metavar="CONNECTION_STRING",
        help="use this storage instead of starting Azurite",
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (./out)")
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        metavar="N",
        help="with --lab: fan the fleet out into N shards, as a fleet above "
        "FANOUT_THRESHOLD_DEVICES is, and run them here after the cycle, as the function "
        "app's queue trigger would",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="with --lab: really add eligible devices to the lab's EDR-block-mode group "
        "(still within the caps; real tenants use ACTIONS_ENABLED)",
    )
    parser.set_defaults(handler=run)


class ProgressPrinter:
    """One line per stage event, with a bar of the stages done so far."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.done: set[str] = set()
        self.started = time.perf_counter()

    def __call__(self, stage: str, message: str) -> None:
        if message.startswith("done"):
            self.done.add(stage)
        filled = len(self.done & set(STAGES))
        bar = "#" * filled + "-" * (len(STAGES) - filled)
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"[{bar}] {elapsed:5.1f}s {stage}: {message}\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    if not 0 < args.devices <= MAX_DEVICES:
        print(f"run: --devices must be between 1 and {MAX_DEVICES}", file=sys.stderr)
        return EXIT_USAGE
    if args.shards and not (args.lab and 2 <= args.shards <= min(MAX_SHARDS, args.devices)):
        print(
            f"run: --shards needs --lab and a number from 2 to {MAX_SHARDS} "
            "(and no more than the devices)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    progress = ProgressPrinter(sys.stderr)
    out: Path = args.out.resolve()

    try:
        if args.lab:
            work = out / "lab"
            work.mkdir(parents=True, exist_ok=True)
            print(f"run: starting the lab tenant ({args.devices} devices) ...", file=sys.stderr)
            with lab_environment(
                work,
                devices=args.devices,
                seed=args.seed,
                storage_connection_string=args.storage,
                fanout_queue=LAB_FANOUT_QUEUE if args.shards else None,
            ) as env:
                options = CycleOptions(
                    out_dir=out,
                    tenant=LAB_TENANT,
                    collector_dir=env.collector_dir,
                    holder=f"cli@{os.uname().nodename}",
                    tenant_name=f"Contoso lab ({args.devices} devices)",
                    actions=ActionSettings(
                        actions_enabled=args.live,
                        edr_block_group_id=env.lab.config.edr_block_group_id,
                    ),
                    progress=progress,
                    fanout=_lab_fanout(args.devices, args.shards),
                )
                result = run_cycle(env.services, options)
                shards = _run_lab_shards(env, progress) if result.status == "fanned_out" else []
                _print_summary(result, ingested_to=env.ingestion.out_dir, mode=_mode(options))
                if shards:
                    _print_shards(shards)
                    if any(s.status != "completed" for s in shards):
                        return EXIT_PARTIAL
        else:
            settings = PipelineSettings.from_env(os.environ)
            sources = SourceSettings.from_env(os.environ)
            with services_from_settings(settings, sources) as services:
                options = CycleOptions(
                    out_dir=out,
                    tenant=settings.tenant,
                    holder=f"cli@{os.uname().nodename}",
                    actions=settings.actions,
                    fanout=settings.fanout,
                    watchlist=settings.watchlist,
                    progress=progress,
                )
                result = run_cycle(services, options)
                _print_summary(result, ingested_to=None, mode=_mode(options))
    except (ConfigError, SettingsError) as exc:
        print(f"run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AzuriteError as exc:
        print(f"run: cannot start Azurite: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CycleError as exc:
        print(f"run: FAILED: {exc}", file=sys.stderr)
        return EXIT_PARTIAL

    if result.status == "stood_down":
        return EXIT_PARTIAL
    return EXIT_OK if result.status in ("completed", "fanned_out") else EXIT_PARTIAL


def _lab_fanout(devices: int, shards: int) -> FanoutSettings:
    if not shards:
        return FanoutSettings(threshold_devices=0)  # the lab fleet is evaluated whole
    # Any fleet above one device fans out. The cycle sizes shards by its largest source, which
    # in the lab is the machine list: the fleet plus the devices MDE only discovered.
    largest = devices + Fleet(devices).discovered
    return FanoutSettings(threshold_devices=1, shard_devices=-(-largest // shards))


def _run_lab_shards(env: LabEnvironment, progress: ProgressPrinter) -> list[ShardResult]:
    """Take every shard message off the lab's queue and run it, as the queue trigger would."""
    queue = QueueClient.from_connection_string(
        env.storage_connection_string,
        LAB_FANOUT_QUEUE,
        api_version=STORAGE_API_VERSION,
        message_decode_policy=TextBase64DecodePolicy(),
    )
    results = []
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=300)):
        for message in batch:
            shard = run_shard(env.settings, parse_fanout_message(str(message.content)))
            queue.delete_message(message)
            results.append(shard)
            progress(
                "shards",
                f"shard {shard.shard + 1} of {shard.shards}: {shard.status}, "
                f"{shard.counts.get('devices', 0)} devices",
            )
    return results


def _print_shards(shards: list[ShardResult]) -> None:
    total = {
        key: sum(s.counts.get(key, 0) for s in shards)
        for key in ("devices", "devices_with_gaps", "rows_sent", "rows_dead_lettered")
    }
    devices = total["devices"]
    share = 100 * total["devices_with_gaps"] / devices if devices else 0.0
    print(f"\nFan-out: {len(shards)} shards run here, as the queue trigger would run them")
    print(f"  devices evaluated:        {devices}")
    print(f"  devices with a gap:       {total['devices_with_gaps']} ({share:.0f}%)")
    print(
        f"  rows sent to Log Analytics: {total['rows_sent']}"
        f" (dead-lettered: {total['rows_dead_lettered']})"
    )
    for shard in shards:
        for error in shard.errors:
            print(f"  ! shard {shard.shard}: {error}")


def _mode(options: CycleOptions) -> str:
    if options.dry_run:
        return f"{options.actions.mode.value.replace('_', ' ')}: no device was changed"
    return "live: eligible devices within the caps were changed"


def _print_summary(result: CycleResult, *, ingested_to: Path | None, mode: str) -> None:
    counts, summary = result.counts, result.summary
    print(f"\nCycle {result.cycle_id}: {result.status} ({mode})")
    if result.status == "stood_down":
        print(f"  another cycle holds the lease: {result.errors[0]}")
        return
    devices = counts.get("devices", 0)
    if result.status == "fanned_out":
        # The shards evaluate and send the rows; their own summary follows when run here.
        print(f"  devices collected:        {devices}")
        print(f"  fanned out into:          {counts.get('shards', 0)} shards")
    else:
        gaps = counts.get("devices_with_gaps", 0)
        share = 100 * gaps / devices if devices else 0.0
        print(f"  devices evaluated:        {devices}")
        print(f"  devices with a gap:       {gaps} ({share:.0f}%)")
        modes = ", ".join(f"{k} {v}" for k, v in summary.get("by_mode", {}).items())
        print(f"  modes:                    {modes}")
        print(
            f"  rows sent to Log Analytics: {counts.get('rows_sent', 0)}"
            f" (dead-lettered: {counts.get('rows_dead_lettered', 0)})"
        )
    print(
        f"  EDR in block mode:        {counts.get('actions_planned', 0)} planned, "
        f"{counts.get('actions_awaiting_approval', 0)} awaiting approval, "
        f"{counts.get('actions_added', 0)} added, {counts.get('actions_failed', 0)} failed, "
        f"{counts.get('actions_not_effective', 0)} not effective"
    )
    print(f"  blocklists changed:       {counts.get('blocklists_changed', 0)}")
    print(
        f"  time:                     {sum(result.durations.values()):.1f}s "
        + " ".join(f"{k}={v:.1f}s" for k, v in result.durations.items())
    )
    for error in result.errors:
        print(f"  ! {error}")
    print(f"\nOutput: {result.out_dir}")
    for name in (
        "report.html",
        "evaluation.json",
        "log-analytics-rows.jsonl",
        "actions.json",
        "blocklists/",
    ):
        if result.out_dir is None or (result.out_dir / name.rstrip("/")).exists():
            print(f"  {name}")
    if ingested_to is not None:
        print(f"  what the local Logs Ingestion endpoint received: {ingested_to}")
