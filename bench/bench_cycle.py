"""Benchmark: one whole dry-run cycle on the lab tenant, time split by stage.

    .venv/bin/python bench/bench_cycle.py [--devices 100000] [--quick]

Starts the lab tenant, the local Logs Ingestion endpoint and Azurite, runs one cycle and prints
each stage's share of the cycle. The baseline, measured in the same run, is the collect stage
alone: reading the tenant is the work no cycle can skip, so the other stages are reported as a
ratio to it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.cycle import CycleOptions, run_cycle
from pipeline.services import LAB_TENANT, lab_environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="2,000 devices")
    args = parser.parse_args()
    devices = 2_000 if args.quick else args.devices

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        started = time.perf_counter()
        with lab_environment(work / "lab", devices=devices, seed=1) as env:
            setup = time.perf_counter() - started
            options = CycleOptions(
                out_dir=work / "out", tenant=LAB_TENANT, collector_dir=env.collector_dir
            )
            result = run_cycle(env.services, options)

    total = sum(result.durations.values())
    collect = result.durations["collect"]
    print(f"devices:            {devices:,}   status: {result.status}")
    print(f"services start-up:  {setup:6.1f} s (lab tenant, ingestion endpoint, Azurite)")
    print(f"cycle:              {total:6.1f} s = {devices / total:,.0f} devices/s")
    for stage, seconds in result.durations.items():
        print(
            f"  {stage:<16} {seconds:6.1f} s  {100 * seconds / total:5.1f}%"
            f"  {seconds / collect:5.2f}x collect"
        )
    print(
        f"rows sent: {result.counts.get('rows_sent')}  "
        f"dead-lettered: {result.counts.get('rows_dead_lettered')}"
    )


if __name__ == "__main__":
    main()
