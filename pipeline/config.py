"""Pipeline settings: read once per run from the environment, typed and validated.

Every key is listed in ``local.settings.sample.json`` with a safe value. Nothing here is read at
import time; the function app and the CLI call :meth:`PipelineSettings.from_env` when they run.
The MDE/Graph connection settings (``MDE_*``, ``GRAPH_API_URL``) belong to
``pipeline.sources.settings`` and are read there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.act.safety import ActionSettings
from pipeline.act.watchlist import WatchlistSettings
from pipeline.envvars import flag, whole
from pipeline.errors import ConfigError
from pipeline.model import TenantSettings

__all__ = ["ConfigError", "FanoutSettings", "PipelineSettings"]


# A fan-out message names its shard out of at most this many (pipeline.app_entry checks it).
MAX_SHARDS = 4096


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
        missing = [
            name
            for name in ("LOGS_INGESTION_ENDPOINT", "LOGS_INGESTION_DCR_IMMUTABLE_ID")
            if not env.get(name)
        ]
        connection = env.get("AzureWebJobsStorage") or None
        blob = env.get("STORAGE_BLOB_ENDPOINT") or None
        table = env.get("STORAGE_TABLE_ENDPOINT") or None
        if connection is None and not (blob and table):
            missing.append("AzureWebJobsStorage or STORAGE_BLOB_ENDPOINT + STORAGE_TABLE_ENDPOINT")
        if missing:
            raise ConfigError("missing settings: " + ", ".join(missing))

        license_ = env.get("TENANT_MDE_LICENSE", "").strip().upper() or None
        if license_ not in (None, "P1", "P2"):
            raise ConfigError(f"TENANT_MDE_LICENSE must be P1 or P2, got {license_!r}")

        return cls(
            ingestion_endpoint=env["LOGS_INGESTION_ENDPOINT"],
            dcr_immutable_id=env["LOGS_INGESTION_DCR_IMMUTABLE_ID"],
            storage_connection_string=connection,
            blob_endpoint=blob,
            table_endpoint=table,
            managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
            audit_table=env.get("AUDIT_TABLE_NAME") or "AuditTrail",
            coverage_table=env.get("COVERAGE_TABLE_NAME") or "DeviceCoverage",
            blocklist_container=env.get("BLOCKLIST_CONTAINER") or "blocklists",
            dead_letter_container=env.get("DEAD_LETTER_CONTAINER") or "dead-letters",
            state_container=env.get("STATE_CONTAINER") or "pipeline-state",
            actions=ActionSettings.from_env(env),
            tenant=TenantSettings(
                edr_block_mode=flag(env, "TENANT_EDR_BLOCK_MODE", None),
                custom_network_indicators=flag(env, "TENANT_CUSTOM_NETWORK_INDICATORS", None),
                allow_or_block_file=flag(env, "TENANT_ALLOW_OR_BLOCK_FILE", None),
                mde_license=license_,  # type: ignore[arg-type]  # checked just above
                mda_enforce_app_access=flag(env, "TENANT_MDA_ENFORCE_APP_ACCESS", None),
            ),
            fanout_queue=env.get("FANOUT_QUEUE") or None,
            queue_endpoint=env.get("STORAGE_QUEUE_ENDPOINT") or None,
            fanout=FanoutSettings.from_env(env),
            watchlist=WatchlistSettings.from_env(env),
        )
