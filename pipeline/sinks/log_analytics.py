"""Upload rows of our custom tables to Log Analytics through the Logs Ingestion API.

The path a batch takes:

1. **Validate** each row against its ``Table`` (``pipeline.tables``): unknown columns, values of
   the wrong type, a missing row id, or a row too big for one request are refused here, one by one,
   and the rest of the batch goes on. Strings over 64 KB are cut short with a marker, because
   Azure would silently cut them anyway; each cut is reported in the result.
2. **Send** in requests of at most ``MAX_REQUEST_BYTES`` with ``LogsIngestionClient.upload`` and an
   ``on_error`` callback, so a failing request never stops the ones after it. azure-core's retry
   policy already retries 429 (honouring ``Retry-After``) and 5xx inside each request.
3. **Retry once** the rows of the requests that still failed. When the endpoint refused a
   request for its content (400, 413), its rows go again in much smaller requests, so one bad row
   takes few others down with it; otherwise (throttled, server error, network) at full size.
4. **Dead-letter** every row that was refused or still failed, with the reason, to a JSON Lines
   blob named after the cycle and the table, and return the counts in an ``UploadResult``.

``sent + dead_lettered == total`` always holds: nothing is dropped without a trace. Each row
carries a deterministic id (``row_id``) so that rows sent twice (a retry after a lost response,
a re-run of a cycle) can be collapsed in KQL with ``summarize arg_max(TimeGenerated, *) by RowId``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.monitor.ingestion import LogsIngestionClient, LogsUploadError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from pipeline.tables import Column, Table

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

# The documented limit is "1 MB" per call. The SDK splits at 1 MiB counting only the rows, not
# the brackets and commas around them, so a full chunk can end up a little over; staying at 10^6
# bytes keeps every request under the limit however "MB" is read.
MAX_REQUEST_BYTES = 1_000_000
# Azure truncates a longer field value without saying so.
MAX_FIELD_BYTES = 64 * 1024
TRUNCATION_MARKER = " [truncated by pipeline]"
# Rows of a request refused for its content (400, 413) are retried in requests this many times
# smaller, so that one bad row takes few others down with it. Rows of a request that failed for
# any other reason (throttling, a server error, the network) are retried at full size.
RETRY_SPLIT = 64
_CONTENT_STATUSES = frozenset({400, 413})
ROW_ID_COLUMNS = ("RowId", "DetectionId")
DEFAULT_DEAD_LETTER_CONTAINER = "ingestion-dead-letters"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class IngestionError(Exception):
    """Base class of the errors this module raises."""


class InsecureEndpointError(IngestionError, ValueError):
    """A plain-http endpoint off this machine: the bearer token would travel unencrypted."""


class DeadLetterWriteError(IngestionError):
    """Rows could not be sent *and* could not be written to the dead-letter blob.

    ``dead_letters`` holds them, so the caller can still fail loudly with the rows in hand.
    """

    def __init__(self, message: str, dead_letters: Sequence[DeadLetter]) -> None:
        super().__init__(message)
        self.dead_letters = tuple(dead_letters)


@dataclass(frozen=True)
class DeadLetter:
    """A row that did not reach Log Analytics, and why."""

    row: Mapping[str, Any]
    reason: str
    stage: str  # "validation" or "upload"
    row_id: str | None = None


@dataclass(frozen=True)
class Truncation:
    """A string value cut to the field limit before sending."""

    row_id: str | None
    column: str
    original_bytes: int


@dataclass(frozen=True)
class UploadResult:
    """What happened to one batch of rows for one table."""

    table: str
    cycle_id: str
    total: int
    sent: int
    rejected: int  # refused by validation, never sent
    failed: int  # sent, refused twice by the endpoint
    retried: int  # rows whose first request failed (some may have succeeded on retry)
    requests: int
    dead_letter_blob: str | None = None
    truncations: tuple[Truncation, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = field(default=(), repr=False)

    @property
    def dead_lettered(self) -> int:
        return self.rejected + self.failed

    @property
    def ok(self) -> bool:
        return self.dead_lettered == 0


def row_id(*parts: str | int | float | bool | None) -> str:
    """A stable id for a row made of ``parts`` (e.g. cycle id and device id).

    The same parts always give the same id, in any process, so a re-sent row can be recognised.
    Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    digest = hashlib.sha256()
    for part in parts:
        text = "\x00" if part is None else f"{type(part).__name__}:{part}"
        encoded = text.encode("utf-8")
        digest.update(f"{len(encoded)}:".encode())
        digest.update(encoded)
    return digest.hexdigest()[:32]


# -- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    row: dict[str, Any]
    row_id: str | None
    size: int  # bytes of json.dumps(row), as the SDK serialises it


class _Refused(Exception):
    pass


def prepare_rows(
    table: Table, rows: Iterable[Any], max_request_bytes: int = MAX_REQUEST_BYTES
) -> tuple[list[_Prepared], list[DeadLetter], list[Truncation]]:
    """Check every row against ``table``; returns the good rows (normalised) and the refusals."""
    columns = {column.name: column for column in table.columns}
    id_column = next((name for name in ROW_ID_COLUMNS if name in columns), None)
    good: list[_Prepared] = []
    refused: list[DeadLetter] = []
    truncations: list[Truncation] = []

    for index, row in enumerate(rows):
        ident = _row_ident(row, id_column)
        try:
            prepared = _prepare_row(row, columns, id_column, ident, truncations)
            if prepared.size > max_request_bytes - 2:
                raise _Refused(
                    f"row is {prepared.size} bytes as JSON, over the {max_request_bytes}-byte "
                    "request limit"
                )
        except _Refused as refusal:
            reason = f"{table.name} row {index} ({id_column}={ident}): {refusal}"
            refused.append(DeadLetter(_plain(row), reason, "validation", ident))
            continue
        good.append(prepared)
    return good, refused, truncations


def _row_ident(row: Any, id_column: str | None) -> str | None:
    if id_column is None or not isinstance(row, Mapping):
        return None
    value = row.get(id_column)
    return value if isinstance(value, str) else None


def _prepare_row(
    row: Any,
    columns: Mapping[str, Column],
    id_column: str | None,
    ident: str | None,
    truncations: list[Truncation],
) -> _Prepared:
    if not isinstance(row, Mapping):
        raise _Refused(f"a row must be a mapping of column to value, got {type(row).__name__}")
    unknown = sorted(str(name) for name in row if name not in columns)
    if unknown:
        raise _Refused(f"unknown column(s) {', '.join(unknown)}")

    prepared: dict[str, Any] = {}
    for name, value in row.items():
        prepared[name] = _normalise(columns[name], value, ident, truncations)
    if id_column is not None and not ident:
        raise _Refused(f"{id_column} is missing; rows need a deterministic id (row_id())")
    try:
        size = len(json.dumps(prepared, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as err:  # pragma: no cover - _normalise checked every value
        raise _Refused(f"row is not serialisable as JSON: {err}") from err
    return _Prepared(prepared, ident, size)


def _normalise(column: Column, value: Any, ident: str | None, truncations: list[Truncation]) -> Any:
    if value is None:
        return None
    kind = column.type
    if kind == "string":
        if not isinstance(value, str):
            raise _Refused(_wrong_type(column, value))
        return _truncate(column.name, value, ident, truncations)
    if kind in ("int", "long"):
        low, high = _INT32 if kind == "int" else _INT64
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused(_wrong_type(column, value))
        if not low <= value <= high:
            raise _Refused(f"column {column.name}: {value} is out of range for {kind}")
        return value
    if kind == "real":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Refused(_wrong_type(column, value))
        if not math.isfinite(value):
            raise _Refused(f"column {column.name}: {value} is not a finite number")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _Refused(_wrong_type(column, value))
        return value
    if kind == "datetime":
        return _datetime_text(column, value)
    return _dynamic(column, value)


def _wrong_type(column: Column, value: Any) -> str:
    return f"column {column.name} expects {column.type}, got {type(value).__name__}"


def _truncate(name: str, text: str, ident: str | None, truncations: list[Truncation]) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= MAX_FIELD_BYTES:
        return text
    keep = MAX_FIELD_BYTES - len(TRUNCATION_MARKER.encode("utf-8"))
    # errors="ignore" drops a multi-byte character cut in half at the end.
    shortened = encoded[:keep].decode("utf-8", errors="ignore") + TRUNCATION_MARKER
    truncations.append(Truncation(ident, name, len(encoded)))
    logger.warning(
        "truncated column %s of row %s from %d bytes to the %d-byte field limit",
        name,
        ident,
        len(encoded),
        MAX_FIELD_BYTES,
    )
    return shortened


def _datetime_text(column: Column, value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _Refused(f"column {column.name}: datetime has no time zone")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise _Refused(f"column {column.name}: {value!r} is not an ISO 8601 time") from err
        if parsed.tzinfo is None:
            raise _Refused(f"column {column.name}: {value!r} has no time zone")
        return value
    raise _Refused(_wrong_type(column, value))


def _dynamic(column: Column, value: Any) -> Any:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise _Refused(f"column {column.name}: value is not JSON ({err})") from err
    if len(text.encode("utf-8")) > MAX_FIELD_BYTES:
        # Cutting JSON short would store something that is no longer JSON; refuse instead.
        raise _Refused(
            f"column {column.name}: dynamic value is {len(text)} bytes as JSON, over the "
            f"{MAX_FIELD_BYTES}-byte field limit"
        )
    return value


def _json_fallback(value: Any) -> str:
    """How a dead letter spells a value JSON has no type for (it was refused for that reason)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def _plain(row: Any) -> Any:
    """The row as something the dead-letter blob can always hold."""
    if isinstance(row, Mapping):
        return {str(key): value for key, value in row.items()}
    return row


# -- chunking -----------------------------------------------------------------------------------


def chunk_rows(rows: Sequence[_Prepared], budget: int) -> Iterator[list[_Prepared]]:
    """Consecutive groups of rows whose JSON array (with ", " separators) fits in ``budget``."""
    chunk: list[_Prepared] = []
    size = 2  # the brackets
    for row in rows:
        extra = row.size + (2 if chunk else 0)
        if chunk and size + extra > budget:
            yield chunk
            chunk, size, extra = [], 2, row.size
        chunk.append(row)
        size += extra
    if chunk:
        yield chunk


# -- dead letters -------------------------------------------------------------------------------


class DeadLetterStore:
    """Writes refused rows as JSON Lines blobs: ``<cycle>/<table>/<time>-<id>.jsonl``."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._container_ready = False

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container_name: str = DEFAULT_DEAD_LETTER_CONTAINER,
        **client_options: Any,
    ) -> DeadLetterStore:
        service = BlobServiceClient.from_connection_string(connection_string, **client_options)
        return cls(service.get_container_client(container_name))

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        credential: TokenCredential,
        container_name: str = DEFAULT_DEAD_LETTER_CONTAINER,
        **client_options: Any,
    ) -> DeadLetterStore:
        service = BlobServiceClient(account_url, credential=credential, **client_options)
        return cls(service.get_container_client(container_name))

    @property
    def container(self) -> ContainerClient:
        return self._container

    def write(self, cycle_id: str, table_name: str, dead_letters: Sequence[DeadLetter]) -> str:
        """Store ``dead_letters`` in a new blob and return its name. Never overwrites."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{quote(cycle_id, safe='-_.')}/{table_name}/{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
        lines = [
            {
                "cycle_id": cycle_id,
                "table": table_name,
                "stage": letter.stage,
                "reason": letter.reason,
                "row_id": letter.row_id,
                "row": letter.row,
            }
            for letter in dead_letters
        ]
        body = "".join(json.dumps(line, default=_json_fallback) + "\n" for line in lines)
        try:
            self._ensure_container()
            self._container.upload_blob(
                name,
                body.encode("utf-8"),
                overwrite=False,
                metadata={"cycle_id": quote(cycle_id), "table": table_name},
                content_settings=ContentSettings(content_type="application/x-ndjson"),
            )
        except AzureError as err:
            raise DeadLetterWriteError(
                f"could not write {len(dead_letters)} dead-lettered {table_name} rows of cycle "
                f"{cycle_id} to blob {self._container.container_name}/{name}: {err}",
                dead_letters,
            ) from err
        logger.warning(
            "dead-lettered %d %s rows of cycle %s to blob %s/%s",
            len(dead_letters),
            table_name,
            cycle_id,
            self._container.container_name,
            name,
        )
        return name

    def read(self, blob_name: str) -> list[dict[str, Any]]:
        """The entries of one dead-letter blob (for operators and tests)."""
        data = self._container.download_blob(blob_name).readall()
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        self._container_ready = True


# -- upload -------------------------------------------------------------------------------------


class LogAnalyticsSink:
    """Sends table rows to one data collection rule and dead-letters what does not arrive."""

    def __init__(
        self,
        endpoint: str,
        rule_id: str,
        credential: TokenCredential,
        dead_letters: DeadLetterStore,
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        **client_options: Any,
    ) -> None:
        """``client_options`` go to ``LogsIngestionClient`` (e.g. ``retry_total=3``)."""
        self.endpoint = endpoint
        self.rule_id = rule_id
        self.dead_letters = dead_letters
        self.max_request_bytes = max_request_bytes
        self._send_options = _send_options(endpoint)
        self._client = LogsIngestionClient(
            endpoint=endpoint, credential=credential, **client_options
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LogAnalyticsSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(self, table: Table, rows: Iterable[Any], *, cycle_id: str) -> UploadResult:
        """Validate, send, retry once, dead-letter; see the module docstring."""
        started = time.monotonic()
        rows = list(rows)
        good, refused, truncations = prepare_rows(table, rows, self.max_request_bytes)

        failed_first, requests = self._send(table, good, self.max_request_bytes)
        refused_content = [row for row, status, _ in failed_first if status in _CONTENT_STATUSES]
        other_failures = [row for row, status, _ in failed_first if status not in _CONTENT_STATUSES]
        small = max(self.max_request_bytes // RETRY_SPLIT, 1)
        failed_small, small_requests = self._send(table, refused_content, small)
        failed_full, full_requests = self._send(table, other_failures, self.max_request_bytes)
        failed_twice = failed_small + failed_full
        retry_requests = small_requests + full_requests

        undelivered = [
            DeadLetter(prepared.row, reason, "upload", prepared.row_id)
            for prepared, _, reason in failed_twice
        ]
        dead = refused + undelivered
        blob = self.dead_letters.write(cycle_id, table.name, dead) if dead else None

        result = UploadResult(
            table=table.name,
            cycle_id=cycle_id,
            total=len(rows),
            sent=len(good) - len(undelivered),
            rejected=len(refused),
            failed=len(undelivered),
            retried=len(failed_first),
            requests=requests + retry_requests,
            dead_letter_blob=blob,
            truncations=tuple(truncations),
            dead_letters=tuple(dead),
        )
        logger.info(
            "uploaded %s for cycle %s: %d of %d rows sent in %d requests, %d retried, "
            "%d dead-lettered, %.2fs",
            table.name,
            cycle_id,
            result.sent,
            result.total,
            result.requests,
            result.retried,
            result.dead_lettered,
            time.monotonic() - started,
        )
        return result

    def _send(
        self, table: Table, rows: Sequence[_Prepared], budget: int
    ) -> tuple[list[tuple[_Prepared, int | None, str]], int]:
        """Send ``rows`` in requests of at most ``budget`` bytes; returns the failures."""
        failed: list[tuple[_Prepared, int | None, str]] = []
        requests = 0
        for chunk in chunk_rows(rows, budget):
            errors: list[LogsUploadError] = []
            requests += 1
            # One chunk per call, already under the limit, so the SDK sends it as one request.
            self._client.upload(
                rule_id=self.rule_id,
                stream_name=table.stream_name,
                logs=[prepared.row for prepared in chunk],
                on_error=errors.append,
                **self._send_options,
            )
            if errors:
                error = errors[0].error
                status = error.status_code if isinstance(error, HttpResponseError) else None
                reason = _describe(error)
                logger.warning(
                    "%s request of %d rows failed: %s", table.stream_name, len(chunk), reason
                )
                failed.extend((prepared, status, reason) for prepared in chunk)
        return failed, requests


def _send_options(endpoint: str) -> dict[str, Any]:
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        return {}
    if parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS:
        # azure-core refuses bearer tokens over http unless told per request; only ever on
        # loopback, where the local ingestion endpoint runs.
        return {"enforce_https": False}
    raise InsecureEndpointError(
        f"ingestion endpoint {endpoint!r} must use https (plain http only on 127.0.0.1/localhost)"
    )


def _describe(error: Exception) -> str:
    """One line naming the status and the service's error code and message, when there are any."""
    if isinstance(error, HttpResponseError):
        code, message = _error_body(error)
        status = error.status_code
        text = f"HTTP {status} {code}: {message}" if code else f"HTTP {status}: {error.message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text.replace("\n", " ")[:500]


def _error_body(error: HttpResponseError) -> tuple[str | None, str | None]:
    try:
        body = json.loads(error.response.text()) if error.response is not None else None
    except (ValueError, AttributeError):
        return None, None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        inner = body["error"]
        return str(inner.get("code")), str(inner.get("message"))
    return None, None
