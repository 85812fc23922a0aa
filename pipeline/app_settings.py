"""The function app's settings, read when a function runs (never at import), and its clients.

Every setting is listed, with a safe value and its meaning, in ``local.settings.sample.json``
(and in ``docs/function-app.md``). Storage is reached one of two ways:

* ``AzureWebJobsStorage`` holding a connection string (``UseDevelopmentStorage=true`` or an
  Azurite string): for local runs and tests;
* otherwise ``STORAGE_BLOB_ENDPOINT``, ``STORAGE_QUEUE_ENDPOINT`` and ``STORAGE_TABLE_ENDPOINT``
  with the managed identity named by ``AZURE_CLIENT_ID``: the deployed app, which has no key.

Tokens come from the managed identity named by ``AZURE_CLIENT_ID`` (a user-assigned identity
must be named, or the host may pick another one). The one exception is an ingestion endpoint on
this machine (``http://127.0.0.1:...``, the local stand-in): it gets a fixed placeholder token,
as ``pipeline.services`` does for the CLI.

Where storage and ingestion are (``pipeline.config.Connections``) and the table, container and
queue names (``pipeline.config.StorageNames``) are read by the same code as the cycle's
settings; ``infra/main.bicep`` writes the same keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from pipeline.config import Connections, FanoutSettings, StorageNames
from pipeline.detect.modes_cache import UNKNOWN_DEVICE_POLICIES, UnknownDevicePolicy
from pipeline.errors import ConfigError
from pipeline.sources.auth import FixedTokenCredential

__all__ = ["AppSettings", "AppSettingsError", "LocalToken"]

_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
# Azurite serves this API version; the SDKs' newer defaults are refused by it, and Azure accepts
# it too, so one value serves both.
STORAGE_API_VERSION: Final = "2025-11-05"


class AppSettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class LocalToken(FixedTokenCredential):
    """The fixed token for the local ingestion endpoint; it opens nothing in Azure."""

    # A placeholder the local endpoint accepts; not a secret of anything.
    TOKEN = "local-development-token"  # noqa: S105

    def __init__(self) -> None:
        super().__init__(self.TOKEN)


@dataclass(frozen=True)
class AppSettings(Connections):
    """Where storage and ingestion are (the fields of ``Connections``), and what else the
    function app's own functions read."""

    audit_table: str
    coverage_table: str
    blocklist_container: str
    dead_letter_container: str
    state_container: str
    collector_queue: str
    fanout_queue: str | None
    unknown_devices: UnknownDevicePolicy
    stream_cache_seconds: float
    # How large a fleet POST /api/evaluate {"all": true} splits into shards (as a cycle does).
    fanout: FanoutSettings = field(default_factory=FanoutSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AppSettings:
        where = Connections.from_env(env)
        try:
            names = StorageNames.from_env(env)
            fanout = FanoutSettings.from_env(env)
        except ConfigError as error:
            raise AppSettingsError(str(error)) from None
        unknown = env.get("STREAM_UNKNOWN_DEVICES", "report").strip().lower()
        if unknown not in UNKNOWN_DEVICE_POLICIES:
            raise AppSettingsError(
                f"STREAM_UNKNOWN_DEVICES must be one of {', '.join(UNKNOWN_DEVICE_POLICIES)}, "
                f"got {unknown!r}"
            )
        settings = cls(
            **dataclasses.asdict(where),
            audit_table=names.audit_table,
            coverage_table=names.coverage_table,
            blocklist_container=names.blocklist_container,
            dead_letter_container=names.dead_letter_container,
            state_container=names.state_container,
            collector_queue=names.collector_queue,
            fanout_queue=names.fanout_queue,
            unknown_devices="report" if unknown == "report" else "ignore",
            stream_cache_seconds=_seconds(env, "STREAM_CACHE_SECONDS", 300.0),
            fanout=fanout,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.ingestion_endpoint:
            parts = urlsplit(self.ingestion_endpoint)
            local = parts.scheme == "http" and parts.hostname in _LOOPBACK
            if parts.scheme != "https" and not local:
                raise AppSettingsError(
                    "LOGS_INGESTION_ENDPOINT must be https (plain http only on 127.0.0.1), got "
                    f"{self.ingestion_endpoint!r}"
                )
        if self.storage_connection_string is None:
            missing = [
                name
                for name, value in (
                    ("STORAGE_BLOB_ENDPOINT", self.blob_endpoint),
                    ("STORAGE_QUEUE_ENDPOINT", self.queue_endpoint),
                    ("STORAGE_TABLE_ENDPOINT", self.table_endpoint),
                )
                if not value
            ]
            if missing:
                raise AppSettingsError(
                    "storage: set AzureWebJobsStorage to a connection string, or "
                    f"{', '.join(missing)} (with the managed identity)"
                )

    # -- clients ---------------------------------------------------------------------------------

    def credential(self) -> Any:
        """The managed identity, for storage without a connection string."""
        return ManagedIdentityCredential(client_id=self.client_id)

    def ingestion_credential(self) -> Any:
        """The credential for the Logs Ingestion API (a placeholder for a local endpoint)."""
        endpoint = urlsplit(self.ingestion_endpoint or "")
        if endpoint.scheme == "http" and endpoint.hostname in _LOOPBACK:
            return LocalToken()
        return self.credential()

    def table_service(self) -> TableServiceClient:
        if self.storage_connection_string:
            return TableServiceClient.from_connection_string(self.storage_connection_string)
        return TableServiceClient(str(self.table_endpoint), credential=self.credential())

    def blob_service(self) -> BlobServiceClient:
        if self.storage_connection_string:
            return BlobServiceClient.from_connection_string(
                self.storage_connection_string, api_version=STORAGE_API_VERSION
            )
        return BlobServiceClient(
            str(self.blob_endpoint), credential=self.credential(), api_version=STORAGE_API_VERSION
        )

    def container(self, name: str) -> ContainerClient:
        return self.blob_service().get_container_client(name)

    def queue(self, name: str) -> QueueClient:
        """A queue client that writes base64 text, which is what the queue trigger reads."""
        options: dict[str, Any] = {
            "api_version": STORAGE_API_VERSION,
            "message_encode_policy": TextBase64EncodePolicy(),
        }
        if self.storage_connection_string:
            return QueueClient.from_connection_string(
                self.storage_connection_string, name, **options
            )
        return QueueClient(str(self.queue_endpoint), name, credential=self.credential(), **options)

    def require_fanout_queue(self) -> str:
        if not self.fanout_queue:
            raise AppSettingsError(
                "FANOUT_QUEUE is not set: re-evaluation is queued to the fan-out queue"
            )
        return self.fanout_queue

    def require_ingestion(self) -> tuple[str, str]:
        if not self.ingestion_endpoint or not self.dcr_immutable_id:
            raise AppSettingsError(
                "LOGS_INGESTION_ENDPOINT and LOGS_INGESTION_DCR_IMMUTABLE_ID are required to "
                "upload detections"
            )
        return self.ingestion_endpoint, self.dcr_immutable_id


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise AppSettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < 0:
        raise AppSettingsError(f"{name} must not be negative, got {raw!r}")
    return value
