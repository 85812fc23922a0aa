"""How fast rows go through the Log Analytics upload path, against the local ingestion endpoint.

Compares, on the same coverage rows and in the same process:

* baseline: ``json.dumps`` + gzip of the rows in 1 MB chunks (the least any upload must do);
* sdk: ``LogsIngestionClient.upload`` of ready-made 1 MB chunks straight to the local endpoint
  (HTTP, the server's parsing and checks included);
* sink: ``LogAnalyticsSink.upload`` (validation, truncation, our chunking, then the SDK).

Run: ``.venv/bin/python bench/bench_ingest.py [--quick]``. Reports rows/s and ratios to the
baseline; absolute numbers depend on the machine, ratios much less.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.monitor.ingestion import LogsIngestionClient

from pipeline.lab.ingestion import IngestionServer
from pipeline.sinks.log_analytics import (
    MAX_REQUEST_BYTES,
    DeadLetterStore,
    LogAnalyticsSink,
    chunk_rows,
    prepare_rows,
    row_id,
)
from pipeline.tables import COVERAGE

# Never contacted: the benchmark produces no dead letters.
UNUSED_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("bench", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("bench", int(time.time()) + 3600)


def _rows(count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 12, 3, tzinfo=UTC)
    return [
        {
            "TimeGenerated": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "RowId": row_id("bench", n),
            "CycleId": "bench",
            "DeviceId": f"device-{n:07d}",
            "DeviceName": f"host{n}.contoso.example",
            "Platform": "windows_client",
            "AvModeCode": "1",
            "AvState": "passive",
            "ModeSource": "deviceavinfo",
            "ModeReason": "avMode 1 in the device AV health export",
            "Capabilities": {f"cap_{c}": "not_enforced" for c in range(12)},
            "Gaps": ["network_indicators", "web_content_filtering"],
            "GapCount": 2,
            "UnknownCount": 0,
            "Findings": [{"code": "passive_indicators", "message": "indicators do not enforce"}],
            "FindingCodes": ["passive_indicators"],
            "MatrixVersion": "2026.12",
        }
        for n in range(count)
    ]


def _baseline(rows: list[dict[str, Any]]) -> None:
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        encoded = len(json.dumps(row))
        if chunk and size + encoded > MAX_REQUEST_BYTES:
            zlib.compress(json.dumps(chunk).encode())
            chunk, size = [], 0
        chunk.append(row)
        size += encoded
    zlib.compress(json.dumps(chunk).encode())


def _best_of(repeats: int, work: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    count, repeats = (2_000, 1) if args.quick else (50_000, 3)
    rows = _rows(count)

    with tempfile.TemporaryDirectory() as out, IngestionServer(out) as server:
        client = LogsIngestionClient(server.base_url, _Credential())
        store = DeadLetterStore.from_connection_string(UNUSED_STORAGE)
        sink = LogAnalyticsSink(server.base_url, server.dcr_immutable_id, _Credential(), store)

        # Left to itself the SDK fills chunks to 1 MiB of rows, and the brackets and commas
        # around them push the body past the endpoint's limit; give it our 1 MB chunks.
        good, _, _ = prepare_rows(COVERAGE, rows)
        chunks = [[p.row for p in chunk] for chunk in chunk_rows(good, MAX_REQUEST_BYTES)]

        def sdk() -> None:
            for chunk in chunks:
                client.upload(
                    server.dcr_immutable_id, COVERAGE.stream_name, chunk, enforce_https=False
                )

        def ours() -> None:
            result = sink.upload(COVERAGE, rows, cycle_id="bench")
            assert result.ok, result

        timings = {
            "baseline json+gzip": _best_of(repeats, lambda: _baseline(rows)),
            "sdk upload": _best_of(repeats, sdk),
            "sink upload": _best_of(repeats, ours),
        }

    base = timings["baseline json+gzip"]
    print(f"{count} coverage rows, best of {repeats}")
    for name, seconds in timings.items():
        print(f"  {name:<20} {count / seconds:>10,.0f} rows/s   {seconds / base:5.1f}x baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
