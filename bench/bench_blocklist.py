"""Render every blocklist format for 15,000 indicators, the most a tenant can hold.

    .venv/bin/python bench/bench_blocklist.py [--quick]

Times are reported as ratios against a baseline measured in the same process: joining the raw
indicator values into lines, which is the least any list writer has to do. The absolute
milliseconds are shown too, but only the ratios compare across machines.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# Run as a file (python bench/bench_blocklist.py): make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.act.blocklist import FORMATS, build_blocklists, publish, render
from pipeline.indicators import parse_indicators

TENANT_MAXIMUM = 15_000
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def synthetic_payload(count: int, seed: int = 5) -> dict[str, list[dict[str, object]]]:
    """A GET /api/indicators response shaped like a busy tenant's: mostly domains and IPs."""
    rng = random.Random(seed)
    records: list[dict[str, object]] = []

    for number in range(count):
        roll = rng.random()
        name = f"h{rng.randrange(10**6)}.d{rng.randrange(4000)}.example"
        if roll < 0.45:
            value, kind = name, "DomainName"
        elif roll < 0.65:
            value, kind = f"https://{name}/p/{number}?q={number}", "Url"
        elif roll < 0.95:
            octets = [
                rng.randrange(1, 100),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            ]
            value, kind = ".".join(map(str, octets)), "IpAddress"
        else:
            value, kind = f"{rng.getrandbits(256):064x}", "FileSha256"
        action = rng.choices(
            ["Block", "BlockAndRemediate", "Warn", "Allowed", "Audit"], [70, 10, 8, 7, 5]
        )[0]
        records.append(
            {"id": str(number), "indicatorValue": value, "indicatorType": kind, "action": action}
        )
    return {"value": records}


def best_of(repeats: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1,000 indicators, one repeat")
    args = parser.parse_args()
    count, repeats = (1_000, 1) if args.quick else (TENANT_MAXIMUM, 5)

    payload = synthetic_payload(count)
    raw_values = [str(record["indicatorValue"]) for record in payload["value"]]
    baseline = best_of(repeats, lambda: "\n".join(raw_values) + "\n")

    parsed = parse_indicators(payload)
    build = best_of(repeats, lambda: build_blocklists(parsed.indicators, NOW, parsed.rejected))
    lists = build_blocklists(parsed.indicators, NOW, parsed.rejected)
    parse = best_of(repeats, lambda: parse_indicators(payload))

    print(f"blocklist benchmark: {count:,} indicators, best of {repeats}")
    print(f"{'baseline (join raw values)':33s} {baseline * 1000:9.2f} ms   ratio      1.0")
    print(f"{'parse':33s} {parse * 1000:9.2f} ms   ratio {parse / baseline:8.1f}")
    print(
        f"{'build (normalise, rules)':33s} {build * 1000:9.2f} ms   ratio {build / baseline:8.1f}"
    )
    for fmt in FORMATS:
        seconds = best_of(repeats, lambda fmt=fmt: publish(render(lists, fmt)))  # type: ignore[misc]
        entries = len(render(lists, fmt).entries)
        print(
            f"{'render+publish ' + fmt:33s} {seconds * 1000:9.2f} ms   "
            f"ratio {seconds / baseline:8.1f}   ({entries:,} entries)"
        )
    print(
        f"block {len(lists.block.entries):,}, warn {len(lists.warn.entries):,}, "
        f"allow {len(lists.allow.entries):,}, skipped {len(lists.skipped):,}, "
        f"merged {len(lists.merged):,}, rejected {len(lists.rejected):,}"
    )


if __name__ == "__main__":
    main()
