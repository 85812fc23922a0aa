"""The collected snapshot file (``mde-snapshot/1``), written as a stream.

Layout, in this order: ``schema``, ``collectedAt``, ``endpoints``, one array per source
(``deviceavinfo``, ``machines``, ``tvmInfoGathering``, ``indicators``, ``collectorDocuments``)
holding records exactly as the API returned them, then ``counts`` and ``errors``.

Records are serialised one at a time as they arrive, so a 200,000-device export never sits in
memory as a whole. The file is written under a temporary name and renamed at the end: a run that
dies half way leaves no half-written snapshot behind.

Each record is written on a line of its own (JSON escapes every line break inside a string), so
:func:`iter_records` can read the file back one record at a time too: parsing a 200,000-device
snapshot with ``json.load`` peaks at about 2.4 GB, far more than a Flex Consumption instance has
for a 500,000-device fleet. A file in any other layout (pretty-printed, written by hand) is not
this writer's, and :func:`written_here` says so, so that readers fall back to a whole parse.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

SNAPSHOT_SCHEMA = "mde-snapshot/1"
SECTIONS = ("deviceavinfo", "machines", "tvmInfoGathering", "indicators", "collectorDocuments")
# The first line of every snapshot this module writes.
_FIRST_LINE = f'{{"schema":{json.dumps(SNAPSHOT_SCHEMA)},'.encode()


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


# --- reading it back, one record at a time -------------------------------------------------------


class SnapshotLayoutError(ValueError):
    """A file that starts like this writer's snapshot but breaks its layout; names the line."""


@dataclass
class SnapshotHeader:
    """The parts of a snapshot that are not records; filled while :func:`iter_records` runs
    (``collected_at`` and ``endpoints`` before the first record, the rest at the end)."""

    collected_at: str | None = None
    endpoints: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    errors: list[Any] = field(default_factory=list)
    complete: bool = False


def written_here(path: Path) -> bool:
    """Whether ``path`` starts with the first line this writer writes."""
    with Path(path).open("rb") as handle:
        # Bounded: a large file on one line (an API page saved as it came) is not read here.
        return handle.readline(len(_FIRST_LINE) + 2).rstrip(b"\r\n") == _FIRST_LINE


def iter_records(path: Path, header: SnapshotHeader) -> Iterator[tuple[str, Any]]:
    """Every record of a snapshot this module wrote, as ``(section, record)``, in file order.

    Memory stays at one record. Raises :class:`SnapshotLayoutError` naming the line for a file
    that is not laid out as written here (check :func:`written_here` first), including one cut
    short.
    """
    section: str | None = None
    in_errors = False
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\r\n")
            if number == 1:
                if line != _FIRST_LINE:
                    raise SnapshotLayoutError(f"line 1 is not {_FIRST_LINE.decode()}")
                continue
            body = line[:-1] if line.endswith(b",") else line
            if section is not None or in_errors:
                if body == b"]":
                    section, in_errors = None, False
                    continue
                if body == b"]}":
                    if not in_errors:
                        raise SnapshotLayoutError(f"line {number}: the file ends inside {section}")
                    header.complete = True
                    return
                record = _load(body, number)
                if in_errors:
                    header.errors.append(record)
                else:
                    assert section is not None
                    yield section, record
                continue
            name, _, rest = body.partition(b":")
            key = _load(name, number) if name.startswith(b'"') else None
            if key in SECTIONS and rest in (b"[", b"[]"):
                section = key if rest == b"[" else None
            elif key == "errors" and rest in (b"[", b"[]]}"):
                in_errors = rest == b"["
                if rest == b"[]]}":
                    header.complete = True
                    return
            elif key == "collectedAt":
                header.collected_at = _load(rest, number)
            elif key == "endpoints":
                header.endpoints = _load(rest, number)
            elif key == "counts":
                header.counts = _load(rest, number)
            else:
                raise SnapshotLayoutError(f"line {number}: not part of a snapshot's layout")
    raise SnapshotLayoutError("the file ends before its errors list: it was cut short")


def _load(text: bytes, number: int) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses but Python's json writes (NaN, Infinity)
        return json.loads(text)
    except ValueError as error:
        raise SnapshotLayoutError(f"line {number}: not valid JSON ({error})") from None
