"""Each device's latest coverage and current mode, in Table Storage, for the function app.

Log Analytics keeps the history, but a function answering ``GET devices/{id}/coverage`` or
warming the streaming detector's mode cache needs the latest state without a query service.
This table holds one entity per device:

* the mode (``AvModeCode``, ``AvState``, ``ModeAsOf``, ``ModeSource``), updated by each
  evaluation and by endpoint collector documents, newest statement first;
* the latest ``MdeAvCoverage_CL`` row as JSON (``CoverageRow``), written by the evaluation.
  When a collector document changes the mode after that row was written, ``CoverageStale`` says
  the row no longer matches the mode, until the next evaluation.

Keys: the PartitionKey is ``d`` and the first hex digit of the device id's SHA-256, spreading
devices over 16 partitions, so a fleet is written in full transactions of 100 (8,000 devices in
80 of them, several at a time); the RowKey is the device id, escaped as the audit trail escapes
keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, UpdateMode

from pipeline.detect.modes_cache import DeviceMode, ModesCache
from pipeline.sinks.audit import escape_key

__all__ = ["CoverageStore", "CoverageStoreError"]

logger = logging.getLogger(__name__)

# A string property holds 32 Ki UTF-16 code units; a coverage row is a few KB.
MAX_ROW_UNITS: Final = 30_000
_BATCH: Final = 100
_WRITERS: Final = 8  # transactions in flight at once
_ATTEMPTS: Final = 3  # tries of one transaction whose connection broke


class CoverageStoreError(Exception):
    """The table could not be read or written; names the device or the operation."""


class CoverageStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = False

    # -- writing ---------------------------------------------------------------------------------

    def save_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store the newest ``MdeAvCoverage_CL`` row of each device; returns how many."""
        newest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            device_id = row.get("DeviceId")
            if not isinstance(device_id, str) or not device_id:
                raise CoverageStoreError(f"coverage row without a DeviceId: {_short(row)}")
            current = newest.get(device_id)
            if current is None or _text(row.get("TimeGenerated")) >= _text(
                current.get("TimeGenerated")
            ):
                newest[device_id] = row

        by_partition: dict[str, list[dict[str, Any]]] = {}
        for device_id, row in newest.items():
            entity = self._coverage_entity(device_id, row)
            by_partition.setdefault(entity["PartitionKey"], []).append(entity)

        self._ensure_table()
        batches = [
            (partition, entities[start : start + _BATCH])
            for partition, entities in by_partition.items()
            for start in range(0, len(entities), _BATCH)
        ]
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            # list() re-raises the first failure here, naming its partition.
            list(pool.map(lambda batch: self._submit(*batch), batches))
        logger.info("coverage store: stored the latest row of %d devices", len(newest))
        return len(newest)

    def _submit(self, partition: str, entities: list[dict[str, Any]]) -> None:
        operations = [("upsert", e, {"mode": UpdateMode.MERGE}) for e in entities]
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self._table.submit_transaction(operations)
                return
            except (ServiceRequestError, ServiceResponseError) as error:
                # The SDK does not retry a transaction (a POST) whose connection broke; upserts
                # are idempotent, so sending the same batch again is safe.
                if attempt == _ATTEMPTS:
                    raise self._failed(partition, operations, error) from error
                logger.warning(
                    "coverage store: partition %s, attempt %d failed (%s); retrying",
                    partition,
                    attempt,
                    error,
                )
                time.sleep(0.5 * attempt)
            except AzureError as error:
                raise self._failed(partition, operations, error) from error

    @staticmethod
    def _failed(partition: str, operations: list[Any], error: Exception) -> CoverageStoreError:
        return CoverageStoreError(
            f"could not store coverage of {len(operations)} devices in partition "
            f"{partition}: {error}"
        )

    def update_mode(self, mode: DeviceMode) -> tuple[DeviceMode | None, bool]:
        """Record a device's mode unless a newer one is stored.

        Returns the stored mode before the call (None for a new device) and whether ``mode``
        was written (False when the stored one is newer).
        """
        stored = self.get(mode.device_id)
        previous = _mode_of(stored) if stored is not None else None
        if previous is not None and (previous.as_of or _EARLIEST) > (mode.as_of or _EARLIEST):
            return previous, False

        entity = {
            **_keys(mode.device_id),
            "DeviceId": mode.device_id,
            "DeviceName": mode.device_name,
            "AvModeCode": mode.av_mode_code,
            "AvState": mode.av_state,
            "ModeAsOf": mode.as_of,
            "ModeSource": mode.source,
            "CoverageStale": bool(stored and stored.get("CoverageRow"))
            and (previous is None or previous.av_mode_code != mode.av_mode_code),
        }
        self._ensure_table()
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as error:
            raise CoverageStoreError(
                f"could not store the mode of device {mode.device_id}: {error}"
            ) from error
        return previous, True

    # -- reading ---------------------------------------------------------------------------------

    def get(self, device_id: str) -> dict[str, Any] | None:
        """The stored entity of one device (with ``CoverageRow`` decoded), or None."""
        keys = _keys(device_id)
        try:
            entity = self._table.get_entity(keys["PartitionKey"], keys["RowKey"])
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise CoverageStoreError(f"could not read device {device_id}: {error}") from error
        found = dict(entity)
        raw = found.get("CoverageRow")
        found["CoverageRow"] = json.loads(raw) if isinstance(raw, str) and raw else None
        return found

    def load_modes(self, cache: ModesCache) -> int:
        """Put every stored device's mode into ``cache``; returns how many."""
        count = 0
        try:
            for entity in self._table.list_entities(
                select=["DeviceId", "DeviceName", "AvModeCode", "AvState", "ModeAsOf", "ModeSource"]
            ):
                mode = _mode_of(entity)
                if mode is not None:
                    cache.put(mode)
                    count += 1
        except ResourceNotFoundError:
            return 0  # nothing evaluated yet
        except AzureError as error:
            raise CoverageStoreError(f"could not read device modes: {error}") from error
        return count

    # -- internals -------------------------------------------------------------------------------

    def _coverage_entity(self, device_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
        text = json.dumps(row, default=_json_default, sort_keys=True)
        if len(text.encode("utf-16-le")) // 2 > MAX_ROW_UNITS:
            raise CoverageStoreError(
                f"coverage row of device {device_id} is {len(text)} characters as JSON, over the "
                f"{MAX_ROW_UNITS}-unit property limit"
            )
        return {
            **_keys(device_id),
            "DeviceId": device_id,
            "DeviceName": _text(row.get("DeviceName")),
            "AvModeCode": _text(row.get("AvModeCode")),
            "AvState": _text(row.get("AvState")) or "unknown",
            "ModeAsOf": _time(row.get("TimeGenerated")),
            "ModeSource": "coverage",
            "CycleId": _text(row.get("CycleId")),
            "CoverageRow": text,
            "CoverageStale": False,
        }

    def _ensure_table(self) -> None:
        if self._ready:
            return
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass
        except AzureError as error:
            raise CoverageStoreError(
                f"could not create table {self._table.table_name}: {error}"
            ) from error
        self._ready = True


_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)


def _keys(device_id: str) -> dict[str, str]:
    digest = hashlib.sha256(device_id.encode("utf-8")).hexdigest()
    return {"PartitionKey": f"d{digest[:1]}", "RowKey": escape_key(device_id)}


def _mode_of(entity: Mapping[str, Any]) -> DeviceMode | None:
    device_id = entity.get("DeviceId")
    if not isinstance(device_id, str) or not device_id:
        return None
    return DeviceMode(
        device_id,
        _text(entity.get("DeviceName")),
        _text(entity.get("AvModeCode")),
        _text(entity.get("AvState")) or "unknown",
        _time(entity.get("ModeAsOf")),
        _text(entity.get("ModeSource")) or "coverage",
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # Table storage hands back its own datetime subclass; a plain one compares everywhere.
    return datetime.fromtimestamp(moment.timestamp(), UTC)


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return value if isinstance(value, str) else ""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _short(row: Mapping[str, Any]) -> str:
    return json.dumps(row, default=str)[:200]
