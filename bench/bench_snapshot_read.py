"""Benchmark: memory and time to read a collected snapshot, streamed against a whole parse.

    .venv/bin/python bench/bench_snapshot_read.py [--devices 100000] [--shards 25] [--quick]

The snapshot is written by the pipeline's own writer from the lab fleet's records (the AV
health export, the machine list, hunting rows, indicators), as a cycle writes it. Three reads,
in one process:

* baseline: the whole file parsed at once (``json.loads``) and then turned into the same facts,
  which is what reading a snapshot cost before it was streamed (and is still the cost for a
  file in another layout);
* streamed: ``read_files``, which reads one record at a time and keeps each device's facts;
* one shard: ``read_snapshot`` keeping the devices of one shard out of ``--shards``, what a
  fan-out shard holds.

Peak memory is the tracemalloc peak of each read (Python allocations, measured in turn); time
is measured in a separate pass without tracemalloc. Both are reported as ratios to the baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.inputs import merge_devices, parse_json_document, read_files, read_snapshot
from pipeline.lab.fleet import Fleet
from pipeline.lab.indicators import contoso_indicators
from pipeline.sharding import shard_of
from pipeline.sources.snapshot import SnapshotWriter


def write_snapshot(path: Path, devices: int) -> None:
    fleet = Fleet(devices)
    sources: dict[str, Callable[[int], dict[str, Any]]] = {
        "deviceavinfo": fleet.deviceavinfo_record,
        "machines": fleet.machine_record,
        "tvmInfoGathering": fleet.tvm_row,
    }
    endpoints = {"mde": "https://api.security.microsoft.com", "graph": "https://g/v1.0"}
    with SnapshotWriter(path, collected_at="2026-12-04T06:00:00Z", endpoints=endpoints) as snap:
        for name, record_of in sources.items():
            with snap.section(name) as section:
                for index in range(devices):
                    section.write(record_of(index))
        with snap.section("indicators") as section:
            for indicator in contoso_indicators():
                section.write(indicator)


def peak_and_time(read: Callable[[], object]) -> tuple[float, float]:
    """(tracemalloc peak in MB, seconds without tracemalloc) of one read."""
    gc.collect()
    tracemalloc.start()
    result = read()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del result
    gc.collect()
    started = time.perf_counter()
    result = read()
    seconds = time.perf_counter() - started
    del result
    return peak, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=25)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to prove it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.devices, args.shards = 2_000, 4

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "snapshot.json"
        write_snapshot(path, args.devices)
        size = path.stat().st_size / 2**20

        def whole() -> object:
            inputs = parse_json_document(path.name, json.loads(path.read_bytes()))
            inputs.devices = merge_devices(inputs.devices)
            return inputs

        def streamed() -> object:
            return read_files([path])

        def one_shard() -> object:
            return read_snapshot(path, lambda device_id: shard_of(device_id, args.shards) == 0)

        runs = [
            ("whole file, then facts", whole),
            ("streamed, every device", streamed),
            (f"streamed, 1 of {args.shards} shards", one_shard),
        ]
        results = [(label, *peak_and_time(read)) for label, read in runs]

    base_peak, base_seconds = results[0][1], results[0][2]
    print(f"snapshot of {args.devices:,} devices: {size:,.0f} MB")
    print(f"  {'read':<28} {'peak MB':>9} {'vs base':>8} {'seconds':>8} {'vs base':>8}")
    for label, peak, seconds in results:
        print(
            f"  {label:<28} {peak:9,.0f} {peak / base_peak:7.2f}x "
            f"{seconds:8.1f} {seconds / base_seconds:7.2f}x"
        )
    print("note: peak is Python allocations (tracemalloc); the process's RSS is higher.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
