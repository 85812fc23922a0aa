"""Benchmark: collect a 200,000-device lab tenant through the real clients.

Reports wall time, API calls made against the fewest the documented page sizes allow, and peak
memory of the collecting process (maximum resident set; ``--tracemalloc`` adds the peak of Python
allocations, at a large cost in speed). The lab runs as a separate ``lab serve`` process so that
the figures are the collector's, not the server's.

    .venv/bin/python bench/bench_collect.py            # 200,000 devices
    .venv/bin/python bench/bench_collect.py --quick    # 5,000 devices, seconds
"""

from __future__ import annotations

import argparse
import math
import resource
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.sources.auth import StaticToken  # noqa: E402
from pipeline.sources.collect import collect_snapshot  # noqa: E402
from pipeline.sources.graph import GraphClient  # noqa: E402
from pipeline.sources.http import ApiClient  # noqa: E402
from pipeline.sources.hunting import MAX_HUNTING_ROWS  # noqa: E402
from pipeline.sources.mde import DEVICEAVINFO_PAGE_SIZE, LIST_PAGE_SIZE, MdeClient  # noqa: E402


def minimum_calls(devices: int, machines: int, indicators: int) -> dict[str, int]:
    """Fewest calls the documented maximum page sizes allow for each source."""
    return {
        "deviceavinfo": max(1, math.ceil(devices / DEVICEAVINFO_PAGE_SIZE)),  # next links
        # A $skip-paged list ends with a short page; a full last page needs one more call.
        "machines": machines // LIST_PAGE_SIZE + 1,
        "indicators": indicators // LIST_PAGE_SIZE + 1,
        # Answers stop at 100,000 rows; the collector's device-id split asks 1 + 17 when cut.
        "hunting": max(1, math.ceil(devices / MAX_HUNTING_ROWS)),
    }


@contextmanager
def lab_process(devices: int) -> Iterator[dict[str, str]]:
    """Run ``python -m pipeline lab serve`` apart, so the figures below are the collector's own."""
    command = [sys.executable, "-m", "pipeline", "lab", "serve", "--devices", str(devices)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        found: dict[str, str] = {}
        assert process.stdout is not None
        for line in process.stdout:
            words = line.split()
            if line.strip().startswith("MDE API:"):
                found["mde"] = words[-1]
            elif line.strip().startswith("Graph:"):
                found["graph"] = words[-1]
            elif "--token" in words:
                found["token"] = words[words.index("--token") + 1]
                found["graph_token"] = words[words.index("--graph-token") + 1]
            elif line.startswith("Ctrl-C"):
                break
        yield found
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def run(devices: int, trace: bool) -> int:
    with lab_process(devices) as lab, tempfile.TemporaryDirectory() as scratch:
        mde = MdeClient(ApiClient(lab["mde"], StaticToken(lab["token"])))
        graph = GraphClient(ApiClient(lab["graph"], StaticToken(lab["graph_token"])))
        out = Path(scratch) / "snapshot.json"

        baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        result = collect_snapshot(out, mde, graph)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.stop()
        size = out.stat().st_size
        mde.api.close()
        graph.api.close()

    machines = devices + devices // 50
    floor = minimum_calls(devices, machines, result.counts["indicators"])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"collect from the lab tenant (separate process): {devices:,} devices")
    print(f"  wall time            {elapsed:8.1f} s ({devices / elapsed:,.0f} devices/s)")
    print(f"  snapshot             {size / 1e6:8.1f} MB")
    print(
        f"  peak RSS             {rss_mb:8.1f} MB (before collecting: {baseline_rss / 1024:.1f} MB)"
    )
    print(f"  peak RSS / snapshot  {rss_mb * 1024 * 1024 / size:8.2f}")
    if trace:
        print(f"  peak Python memory   {peak / 1e6:8.1f} MB (tracemalloc; slows the run)")
    print("  API calls made vs fewest possible:")
    for source, least in floor.items():
        made = result.calls.get(source, 0)
        print(f"    {source:<14} {made:>4} / {least:<4} ratio {made / least:.2f}")
    print("  records:", ", ".join(f"{k} {v:,}" for k, v in result.counts.items()))
    for error in result.errors:
        print(f"  error: {error['source']} {error['code']}: {error['message']}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 devices instead of 200,000")
    parser.add_argument("--devices", type=int, help="fleet size (overrides --quick)")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations")
    args = parser.parse_args()
    devices = args.devices or (5_000 if args.quick else 200_000)
    return run(devices, args.tracemalloc)


if __name__ == "__main__":
    sys.exit(main())
