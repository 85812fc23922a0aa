"""Pipeline settings: read once per run from the environment, typed and validated.

Every key is listed in ``local.settings.sample.json`` with a safe value. Nothing here is read at
import time; the function app and the CLI call :meth:`PipelineSettings.from_env` when they run.
The MDE/Graph connection settings (``MDE_*``, ``GRAPH_API_URL``) belong to
``pipeline.sources.settings`` and are read there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from pipeline.act.safety import ActionSettings
from pipeline.act.watchlist import WatchlistSettings
from pipeline.envvars import flag, whole
from pipeline.errors import ConfigError
from pipeline.model import TenantSettings

__all__ = ["ConfigError", "Connections", "FanoutSettings", "PipelineSettings", "StorageNames"]


# A fan-out message names its shard out of at most this many (pipeline.app_entry checks it).
MAX_SHARDS = 4096


# Azure's naming rules: tables are 3-63 letters and digits starting with a letter; containers
# and queues 3-63 lower-case letters, digits and single hyphens, starting and ending with a
# letter or digit. A name that breaks them fails here, naming the setting, not deep in an SDK.
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")


# The setting that names each of StorageNames' fields.
STORAGE_SETTINGS: Final[Mapping[str, str]] = {
    "audit_table": "AUDIT_TABLE_NAME",
    "coverage_table": "COVERAGE_TABLE_NAME",
    "blocklist_container": "BLOCKLIST_CONTAINER",
    "dead_letter_container": "DEAD_LETTER_CONTAINER",
    "state_container": "STATE_CONTAINER",
    "collector_queue": "COLLECTOR_QUEUE",
    "fanout_queue": "FANOUT_QUEUE",
}


@dataclass(frozen=True)
class StorageNames:
    """The tables, containers and queues the pipeline and the function app share.

    One definition for both readers (``PipelineSettings`` for cycles and shards, and
    ``pipeline.app_settings.AppSettings`` for the HTTP, stream and collector functions), so the
    two can never disagree on a name or a default.
    """

    audit_table: str = "AuditTrail"
    coverage_table: str = "DeviceCoverage"
    blocklist_container: str = "blocklists"
    dead_letter_container: str = "dead-letters"
    state_container: str = "pipeline-state"
    collector_queue: str = "collector-documents"
    # No default: unset means a cycle never fans out and POST /api/evaluate is unavailable
    # (the fan-out queue function cannot be bound without it either).
    fanout_queue: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageNames:
        defaults = cls()
        values: dict[str, str | None] = {}
        for item in fields(cls):
            setting = STORAGE_SETTINGS[item.name]
            value = (env.get(setting) or "").strip() or getattr(defaults, item.name)
            if value is not None:
                rule = _TABLE_NAME if item.name.endswith("_table") else _CONTAINER_NAME
                if not rule.match(value):
                    kind = "table" if rule is _TABLE_NAME else "container or queue"
                    raise ConfigError(f"{setting} is not a valid Azure {kind} name: {value!r}")
            values[item.name] = value
        return cls(**values)  # type: ignore[arg-type]  # the fields' own types, checked above


@dataclass(frozen=True)
class Connections:
    """Where storage and the Logs Ingestion API are, read by both settings classes alike.

    Storage is a connection string (Azurite, development) or account endpoints reached with the
    managed identity ``AZURE_CLIENT_ID`` names. Each class then requires what its functions use:
    a cycle needs ingestion and blob + table storage; the function app checks its own.
    """

    storage_connection_string: str | None
    blob_endpoint: str | None
    queue_endpoint: str | None
    table_endpoint: str | None
    client_id: str | None
    # The data collection endpoint (or the DCR's own endpoint) and the rule's immutable id.
    ingestion_endpoint: str | None
    dcr_immutable_id: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Connections:
        return cls(
            **{
                item: (env.get(setting) or "").strip() or None
                for item, setting in CONNECTION_SETTINGS.items()
            }
        )


# The setting that holds each of Connections' fields.
CONNECTION_SETTINGS: Final[Mapping[str, str]] = {
    "storage_connection_string": "AzureWebJobsStorage",
    "blob_endpoint": "STORAGE_BLOB_ENDPOINT",
    "queue_endpoint": "STORAGE_QUEUE_ENDPOINT",
    "table_endpoint": "STORAGE_TABLE_ENDPOINT",
    "client_id": "AZURE_CLIENT_ID",
    "ingestion_endpoint": "LOGS_INGESTION_ENDPOINT",
    "dcr_immutable_id": "LOGS_INGESTION_DCR_IMMUTABLE_ID",
}


@dataclass(frozen=True)
class FanoutSettings:
    """When a cycle hands evaluation to queued shards, and how large each shard is."""

    # A fleet larger than this is evaluated in shards; 0 turns fan-out off.
    threshold_devices: int = 50_000
    shard_devices: int = 20_000

    def shards_for(self, devices: int) -> int:
        """How many shards a fleet of ``devices`` needs; 0 when it is evaluated in one go."""
        if self.threshold_devices == 0 or devices <= self.threshold_devices:
            return 0
        wanted = -(-devices // self.shard_devices)  # ceiling division
        # Past the limit the shards simply grow: selection by hash works for any count.
        return min(wanted, MAX_SHARDS)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FanoutSettings:
        return cls(
            threshold_devices=whole(env, "FANOUT_THRESHOLD_DEVICES", 50_000, minimum=0),
            shard_devices=whole(env, "FANOUT_SHARD_DEVICES", 20_000, minimum=1),
        )


@dataclass(frozen=True)
class PipelineSettings:
    # Logs Ingestion API: the data collection endpoint (or the DCR's own endpoint) and rule.
    ingestion_endpoint: str
    dcr_immutable_id: str
    # Storage: a connection string (Azurite, development) or account endpoints (managed identity).
    storage_connection_string: str | None
    blob_endpoint: str | None
    table_endpoint: str | None
    managed_identity_client_id: str | None
    audit_table: str
    coverage_table: str
    blocklist_container: str
    dead_letter_container: str
    state_container: str
    # Acting on devices is off unless explicitly turned on (see pipeline.act.safety).
    actions: ActionSettings
    tenant: TenantSettings
    # Fan-out: the queue shards are sent to (none: never fan out) and when to use it.
    fanout_queue: str | None = None
    queue_endpoint: str | None = None
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    # The Sentinel watchlist of blocked resources; not configured without a workspace id.
    watchlist: WatchlistSettings = field(
        default_factory=lambda: WatchlistSettings(workspace_resource_id=None)
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PipelineSettings:
        where = Connections.from_env(env)
        missing = [
            name
            for name, value in (
                ("LOGS_INGESTION_ENDPOINT", where.ingestion_endpoint),
                ("LOGS_INGESTION_DCR_IMMUTABLE_ID", where.dcr_immutable_id),
            )
            if not value
        ]
        if where.storage_connection_string is None and not (
            where.blob_endpoint and where.table_endpoint
        ):
            missing.append("AzureWebJobsStorage or STORAGE_BLOB_ENDPOINT + STORAGE_TABLE_ENDPOINT")
        if missing or where.ingestion_endpoint is None or where.dcr_immutable_id is None:
            raise ConfigError("missing settings: " + ", ".join(missing))

        names = StorageNames.from_env(env)
        license_ = env.get("TENANT_MDE_LICENSE", "").strip().upper() or None
        if license_ not in (None, "P1", "P2"):
            raise ConfigError(f"TENANT_MDE_LICENSE must be P1 or P2, got {license_!r}")

        return cls(
            ingestion_endpoint=where.ingestion_endpoint,
            dcr_immutable_id=where.dcr_immutable_id,
            storage_connection_string=where.storage_connection_string,
            blob_endpoint=where.blob_endpoint,
            table_endpoint=where.table_endpoint,
            managed_identity_client_id=where.client_id,
            audit_table=names.audit_table,
            coverage_table=names.coverage_table,
            blocklist_container=names.blocklist_container,
            dead_letter_container=names.dead_letter_container,
            state_container=names.state_container,
            actions=ActionSettings.from_env(env),
            tenant=TenantSettings(
                edr_block_mode=flag(env, "TENANT_EDR_BLOCK_MODE", None),
                custom_network_indicators=flag(env, "TENANT_CUSTOM_NETWORK_INDICATORS", None),
                allow_or_block_file=flag(env, "TENANT_ALLOW_OR_BLOCK_FILE", None),
                mde_license=license_,  # type: ignore[arg-type]  # checked just above
                mda_enforce_app_access=flag(env, "TENANT_MDA_ENFORCE_APP_ACCESS", None),
            ),
            fanout_queue=names.fanout_queue,
            queue_endpoint=where.queue_endpoint,
            fanout=FanoutSettings.from_env(env),
            watchlist=WatchlistSettings.from_env(env),
        )
