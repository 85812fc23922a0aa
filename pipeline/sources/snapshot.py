"""The collected snapshot file (``mde-snapshot/1``), written as a stream.

Layout, in this order: ``schema``, ``collectedAt``, ``endpoints``, one array per source
(``deviceavinfo``, ``machines``, ``tvmInfoGathering``, ``indicators``, ``collectorDocuments``)
holding records exactly as the API returned them, then ``counts`` and ``errors``.

Records are serialised one at a time as they arrive, so a 200,000-device export never sits in
memory as a whole. The file is written under a temporary name and renamed at the end: a run that
dies half way leaves no half-written snapshot behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

SNAPSHOT_SCHEMA = "mde-snapshot/1"
SECTIONS = ("deviceavinfo", "machines", "tvmInfoGathering", "indicators", "collectorDocuments")


class SectionWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.count = 0

    def write(self, record: Mapping[str, Any]) -> None:
        # Serialise first so a record that cannot be written leaves no partial text behind.
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        self._stream.write(",\n" if self.count else "\n")
        self._stream.write(text)
        self.count += 1


class SnapshotWriter:
    """Use as a context manager; open ``section(name)`` for each source in the order above."""

    def __init__(self, path: Path, *, collected_at: str, endpoints: Mapping[str, str]) -> None:
        self.path = Path(path)
        self._collected_at = collected_at
        self._endpoints = dict(endpoints)
        self._stream: IO[str] | None = None
        self._temp_name = ""
        self._next_section = 0
        self.counts: dict[str, int] = dict.fromkeys(SECTIONS, 0)
        self.errors: list[dict[str, Any]] = []

    def __enter__(self) -> SnapshotWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._temp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self._stream = os.fdopen(handle, "w", encoding="utf-8")
        self._stream.write(f'{{"schema":{json.dumps(SNAPSHOT_SCHEMA)},\n')
        self._stream.write(f'"collectedAt":{json.dumps(self._collected_at)},\n')
        self._stream.write(f'"endpoints":{json.dumps(self._endpoints)}')
        return self

    @contextmanager
    def section(self, name: str) -> Iterator[SectionWriter]:
        stream = self._require_open()
        if name not in SECTIONS[self._next_section :]:
            raise ValueError(f"section {name!r} is unknown or out of order")
        self._write_empty_sections_before(name)
        stream.write(f",\n{json.dumps(name)}:[")
        writer = SectionWriter(stream)
        try:
            yield writer
        finally:
            stream.write("\n]")
            self.counts[name] = writer.count
            self._next_section = SECTIONS.index(name) + 1

    def add_error(
        self,
        source: str,
        endpoint: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.errors.append(
            {
                "source": source,
                "endpoint": endpoint,
                "status": status,
                "code": code,
                "message": message,
            }
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stream = self._require_open()
        if exc_type is not None:
            stream.close()
            Path(self._temp_name).unlink(missing_ok=True)
            return
        self._write_empty_sections_before(None)
        stream.write(f',\n"counts":{json.dumps(self.counts)}')
        stream.write(',\n"errors":[')
        stream.write(",".join("\n" + json.dumps(error) for error in self.errors))
        stream.write("\n]}\n")
        stream.flush()
        os.fsync(stream.fileno())
        stream.close()
        os.replace(self._temp_name, self.path)

    def _write_empty_sections_before(self, name: str | None) -> None:
        stream = self._require_open()
        stop = SECTIONS.index(name) if name is not None else len(SECTIONS)
        for skipped in SECTIONS[self._next_section : stop]:
            stream.write(f",\n{json.dumps(skipped)}:[]")
        self._next_section = stop

    def _require_open(self) -> IO[str]:
        if self._stream is None:
            raise RuntimeError("SnapshotWriter used outside its with-block")
        return self._stream
