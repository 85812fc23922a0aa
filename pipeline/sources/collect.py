"""One collection: every source read into one ``mde-snapshot/1`` file.

Sources are read in the snapshot's order. A source that fails is recorded in ``errors`` with the
endpoint, status and Microsoft's code, and the run goes on with the next one; records already
read from a failing source stay in the snapshot. Both the CLI and the pipeline cycle call
:func:`collect_snapshot`; neither knows or cares whether the tenant is the lab.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.sources.collector_doc import read_collector_documents
from pipeline.sources.errors import ApiError, SourceError
from pipeline.sources.graph import GraphClient
from pipeline.sources.hunting import MAX_HUNTING_ROWS, DevicePart, tvm_info_gathering_query
from pipeline.sources.mde import MdeClient
from pipeline.sources.snapshot import SECTIONS, SectionWriter, SnapshotWriter

log = logging.getLogger(__name__)

# (source name, records read so far); called after each page and at the end of each source.
ProgressCallback = Callable[[str, int], None]


@dataclass
class CollectionResult:
    path: Path
    counts: dict[str, int]
    errors: list[dict[str, Any]]
    calls: dict[str, int] = field(default_factory=dict)  # API requests sent, per endpoint budget

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def collect_snapshot(
    out: Path,
    mde: MdeClient,
    graph: GraphClient,
    *,
    collector_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    now: datetime | None = None,
    hunting_row_cap: int = MAX_HUNTING_ROWS,
) -> CollectionResult:
    """Read every source into ``out``; never raises for a source that fails, only records it.

    ``hunting_row_cap`` is the row count at which a hunting answer is taken as cut short:
    Microsoft's documented 100,000 unless a test's lab caps its answers lower.
    """
    collected_at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    endpoints = {"mde": mde.api.base_url, "graph": graph.api.base_url}
    report = progress or (lambda _source, _count: None)

    with SnapshotWriter(out, collected_at=collected_at, endpoints=endpoints) as snapshot:
        for source, endpoint, read in (
            ("deviceavinfo", "GET /api/deviceavinfo", mde.deviceavinfo),
            ("machines", "GET /api/machines", mde.machines),
        ):
            with snapshot.section(source) as section:
                records = read(_progress_of(source, report))
                _copy_records(snapshot, section, source, endpoint, records)

        with snapshot.section("tvmInfoGathering") as section:
            _collect_hunting(snapshot, section, graph, report, hunting_row_cap)
        report("tvmInfoGathering", snapshot.counts["tvmInfoGathering"])

        with snapshot.section("indicators") as section:
            records = mde.indicators(_progress_of("indicators", report))
            _copy_records(snapshot, section, "indicators", "GET /api/indicators", records)

        with snapshot.section("collectorDocuments") as section:
            if collector_dir is not None:
                _collect_documents(snapshot, section, collector_dir)
        report("collectorDocuments", snapshot.counts["collectorDocuments"])

    calls = dict(mde.api.calls + graph.api.calls)
    log.info("collected %s into %s with %d API calls", snapshot.counts, out, sum(calls.values()))
    return CollectionResult(Path(out), dict(snapshot.counts), list(snapshot.errors), calls)


def _progress_of(source: str, report: ProgressCallback) -> Callable[[int], None]:
    def page_done(count: int) -> None:
        report(source, count)

    return page_done


def _copy_records(
    snapshot: SnapshotWriter,
    section: SectionWriter,
    source: str,
    endpoint: str,
    records: Iterable[Any],
) -> None:
    position = -1
    try:
        for position, record in enumerate(records):
            if not isinstance(record, dict):
                snapshot.add_error(
                    source,
                    endpoint,
                    f"record {position} is a JSON {type(record).__name__}, not an object; skipped",
                    status=200,
                    code="InvalidRecord",
                )
                continue
            section.write(record)
    except SourceError as exc:
        log.warning("%s failed after %d records: %s", source, position + 1, exc)
        snapshot.add_error(source, exc.endpoint, exc.message, status=exc.status, code=exc.code)


def _collect_hunting(
    snapshot: SnapshotWriter,
    section: SectionWriter,
    graph: GraphClient,
    report: ProgressCallback,
    row_cap: int,
) -> None:
    """The newest DeviceTvmInfoGathering row per device, split by device id past the row cap.

    A hunting answer stops at ``row_cap`` rows without saying so. An answer that reaches the cap is
    set aside and the question asked again in seventeen disjoint parts by device-id prefix
    (``DevicePart``), and a part that reaches the cap again is split once more. Only a part that
    cannot be split further and still reaches the cap is recorded as possibly cut short. An
    answer over the size limit (a 400 "exceeded the allowed result size") is split the same way.
    """
    endpoint = "POST /security/runHuntingQuery"
    pending = deque([DevicePart()])
    parts_asked = 0
    while pending:
        part = pending.popleft()
        parts_asked += 1
        try:
            result = graph.run_hunting_query(tvm_info_gathering_query(part))
        except SourceError as exc:
            if _result_too_large(exc) and part.splittable:
                log.info(
                    "tvmInfoGathering: %s is over the answer size limit; asking again in parts",
                    part.label,
                )
                pending.extend(part.split())
                continue
            log.warning("tvmInfoGathering (%s) failed: %s", part.label, exc)
            where = "" if part == DevicePart() else f" ({part.label})"
            snapshot.add_error(
                "tvmInfoGathering",
                exc.endpoint,
                exc.message + where,
                status=exc.status,
                code=exc.code,
            )
            continue
        if result.possibly_truncated(row_cap) and part.splittable:
            log.info(
                "tvmInfoGathering: %s reached the %d-row cap; asking again in parts",
                part.label,
                row_cap,
            )
            pending.extend(part.split())
            continue
        for row in result.rows:
            section.write(row)
        report("tvmInfoGathering", section.count)  # the snapshot's count is set at the end
        if result.possibly_truncated(row_cap):
            # Devices beyond the cap are missing, not healthy: say so.
            snapshot.add_error(
                "tvmInfoGathering",
                endpoint,
                f"{len(result.rows)} rows for {part.label} reach the row cap "
                f"({row_cap}) and the part cannot be split further; "
                "the answer may be cut short",
                status=200,
                code="ResultMayBeTruncated",
            )
    if parts_asked > 1:
        log.info("tvmInfoGathering read in %d hunting queries", parts_asked)


def _result_too_large(error: SourceError) -> bool:
    """Hunting's refusal of an answer over its size limit (124 MB for the MDE API)."""
    return (
        isinstance(error, ApiError)
        and error.status == 400
        and "exceeded the allowed result size" in error.message.lower()
    )


def _collect_documents(snapshot: SnapshotWriter, section: SectionWriter, directory: Path) -> None:
    if not Path(directory).is_dir():
        snapshot.add_error(
            "collectorDocuments",
            f"directory {directory}",
            "not a directory",
            code="NotFound",
        )
        return
    for name, document, problems in read_collector_documents(Path(directory)):
        if problems:
            snapshot.add_error(
                "collectorDocuments",
                f"file {name}",
                "; ".join(problems[:10]),
                code="InvalidDocument",
            )
            continue
        section.write(document)


__all__ = ["SECTIONS", "CollectionResult", "ProgressCallback", "collect_snapshot"]
