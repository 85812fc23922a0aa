"""Benchmark: evaluate N deviceavinfo records, against the floor of decoding and re-encoding them.

    .venv/bin/python bench/bench_evaluate.py [--devices 100000] [--quick]

The floor is ``json.loads`` of the page plus ``json.dumps`` of what was read: no evaluator can
do less than read its input and write its output. The evaluator run does the whole command's
work: decode, turn records into facts, evaluate every capability, and stream the JSON result.
Peak memory is measured in a second pass with tracemalloc (it slows the run, so not timed).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.evaluate import Evaluator
from pipeline.inputs import parse_document
from pipeline.matrix import load_matrix
from pipeline.model import TenantSettings
from pipeline.output import Summary, write_json

PLATFORMS = [
    ("windows", "Windows11"),
    ("windows", "Windows10"),
    ("windows", "WindowsServer2022"),
    ("windows", "WindowsServer2016"),
    ("mac", "macOS"),
    ("linux", "Linux"),
]
MODES = ["1"] * 6 + ["0", "0", "4", "2", "3", "", "5"]
PLATFORM_VERSIONS = ["4.18.24090.11", "4.18.23110.3", "4.18.1911.3", "4.18.2001.10"]


def make_page(count: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    records = []
    for index in range(count):
        kind, platform = rng.choice(PLATFORMS)
        machine_id = f"{index:040x}"
        records.append(
            {
                "id": machine_id,
                "machineId": machine_id,
                "computerDnsName": f"dev-{index:06d}.contoso.com",
                "osKind": kind,
                "osPlatform": platform,
                "osVersion": "10.0.22631.4317",
                "avMode": rng.choice(MODES),
                "avSignatureVersion": "1.421.1790.0",
                "avEngineVersion": "1.1.24090.11",
                "avPlatformVersion": rng.choice(PLATFORM_VERSIONS),
                "avIsSignatureUpToDate": "True",
                "avIsEngineUpToDate": "True",
                "avIsPlatformUpToDate": "True",
                "lastSeenTime": "2026-12-02T21:14:09Z",
                "rbacGroupId": 712,
            }
        )
    return json.dumps({"value": records}).encode()


class CountingSink(io.TextIOBase):
    """Counts what a command would write to its output file, without keeping it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        return len(text)


def floor(page: bytes) -> int:
    document = json.loads(page)
    text = json.dumps(document)
    return len(text)


def evaluate(page: bytes) -> int:
    matrix = load_matrix()
    tenant = TenantSettings(
        custom_network_indicators=True, allow_or_block_file=True, mde_license="P2"
    )
    inputs = parse_document("bench.json", page)
    evaluator = Evaluator(matrix, tenant)
    out = CountingSink()
    summary = Summary(matrix_version=matrix.version)
    write_json(out, (evaluator.evaluate(f) for f in inputs.devices), inputs.rejected, summary)
    return summary.devices


def timed(fn: object, page: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(page)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 devices, one repeat")
    args = parser.parse_args()
    count, repeat = (2_000, 1) if args.quick else (args.devices, args.repeat)

    page = make_page(count)
    load_matrix()  # loading the matrix is start-up cost, not per-device cost

    floor_s = timed(floor, page, repeat)
    eval_s = timed(evaluate, page, repeat)

    peaks = []
    for fn in (floor, evaluate):
        tracemalloc.start()
        fn(page)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

    print(f"devices:                 {count:,} ({len(page) / 1e6:.1f} MB of JSON)")
    print(f"floor (decode+encode):   {floor_s:.3f} s")
    print(f"evaluate (whole command):{eval_s:.3f} s  = {count / eval_s:,.0f} devices/s")
    print(f"ratio to floor:          {eval_s / floor_s:.2f}x  (aim: <= 3x)")
    print(f"peak memory, floor:      {peaks[0] / 1e6:.0f} MB beyond the input page")
    print(f"peak memory, evaluate:   {peaks[1] / 1e6:.0f} MB beyond the input page (aim: < 500 MB)")


if __name__ == "__main__":
    main()
