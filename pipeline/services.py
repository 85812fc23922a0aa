"""Build a cycle's services: the one place that decides base URLs and credentials.

Two ways in, one result (:class:`pipeline.cycle.CycleServices`):

* :func:`services_from_settings` for a real tenant: MDE/Graph through ``pipeline.sources``
  settings, storage and ingestion through managed identity or a connection string;
* :func:`lab_environment` for the lab: it starts the lab tenant, the local Logs Ingestion endpoint
  and Azurite (unless given a storage connection string) and hands the same clients their
  local addresses.

:func:`shard_services` builds what one fan-out shard needs (storage and ingestion, no Defender
API) from the same settings.

Nothing else in the pipeline asks which of the two it is talking to.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from pipeline.act.safety import ActionSettings
from pipeline.config import ConfigError, PipelineSettings
from pipeline.coverage_store import CoverageStore
from pipeline.cycle import CycleServices, ShardQueue
from pipeline.lab.azurite import AzuriteProcess
from pipeline.lab.collector_docs import write_collector_documents
from pipeline.lab.ingestion import LOCAL_DCR_IMMUTABLE_ID, IngestionServer
from pipeline.lab.server import LabConfig, LabServer
from pipeline.model import TenantSettings
from pipeline.sinks.audit import AuditTrail
from pipeline.sinks.blobs import BlobBlocklistStore, BlobStateStore
from pipeline.sinks.lease import DEFAULT_LEASE_CONTAINER, CycleLease
from pipeline.sinks.log_analytics import DeadLetterStore, LogAnalyticsSink
from pipeline.sinks.queues import FanoutQueue
from pipeline.sources.auth import (
    GRAPH_SCOPE,
    MDE_SCOPE,
    ClientCredentialsTokens,
    FixedTokenCredential,
    TokenProvider,
)
from pipeline.sources.graph import GraphClient
from pipeline.sources.http import ApiClient
from pipeline.sources.mde import MdeClient
from pipeline.sources.settings import SourceSettings, token_providers


@contextmanager
def services_from_settings(
    settings: PipelineSettings, sources: SourceSettings
) -> Iterator[CycleServices]:
    """Services for a real tenant (or anything configured like one)."""
    mde_tokens, graph_tokens = token_providers(sources)
    ingestion_credential, storage_credential = _credentials(settings)
    with _services(
        settings,
        mde_url=sources.mde_url,
        graph_url=sources.graph_url,
        mde_tokens=mde_tokens,
        graph_tokens=graph_tokens,
        ingestion_credential=ingestion_credential,
        storage_credential=storage_credential,
        management_credential=ManagedIdentityCredential(
            client_id=settings.managed_identity_client_id
        )
        if settings.watchlist.configured
        else None,
    ) as services:
        yield services


@dataclass
class ShardServices:
    """What one fan-out shard writes to: the same sinks and stores a whole cycle uses."""

    sink: LogAnalyticsSink
    audit: AuditTrail
    state: BlobStateStore
    coverage: CoverageStore


@contextmanager
def shard_services(
    settings: PipelineSettings, *, storage_client_options: Mapping[str, Any] | None = None
) -> Iterator[ShardServices]:
    """Services for ``pipeline.fanout.run_shard``: storage and ingestion, no Defender API."""
    ingestion_credential, storage_credential = _credentials(settings)
    storage = _storage(settings, storage_credential, dict(storage_client_options or {}))
    with LogAnalyticsSink(
        settings.ingestion_endpoint,
        settings.dcr_immutable_id,
        ingestion_credential,
        storage.dead_letters,
    ) as sink:
        yield ShardServices(
            sink=sink,
            audit=storage.audit,
            state=BlobStateStore(storage.blobs.get_container_client(settings.state_container)),
            coverage=CoverageStore(storage.tables.get_table_client(settings.coverage_table)),
        )


def _credentials(settings: PipelineSettings) -> tuple[TokenCredential, TokenCredential | None]:
    """(ingestion, storage) credentials: the managed identity, except on this machine."""
    identity = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    local_ingestion = settings.ingestion_endpoint.startswith(
        ("http://127.0.0.1", "http://localhost")
    )
    return (
        FixedTokenCredential("local") if local_ingestion else identity,
        None if settings.storage_connection_string else identity,
    )


@dataclass
class LabEnvironment:
    services: CycleServices
    settings: PipelineSettings
    lab: LabServer
    ingestion: IngestionServer
    storage_connection_string: str
    collector_dir: Path


@contextmanager
def lab_environment(
    work_dir: Path,
    *,
    devices: int,
    seed: int,
    settings: PipelineSettings | None = None,
    storage_connection_string: str | None = None,
    storage_client_options: Mapping[str, Any] | None = None,
    fanout_queue: str | None = None,
) -> Iterator[LabEnvironment]:
    """Start the lab tenant, the local ingestion endpoint and (if needed) Azurite.

    ``storage_client_options`` go to every storage client (e.g. ``{"retry_total": 0}`` in a test
    that stops storage on purpose and should not wait out the SDK's retries). ``fanout_queue``
    names the queue a cycle may fan out to (none by default: the lab fleet is evaluated whole).
    """
    with ExitStack() as stack:
        config = LabConfig(devices=devices, seed=seed)
        lab = stack.enter_context(LabServer(config))
        ingestion = IngestionServer(work_dir / "log-analytics")
        endpoint = ingestion.start()
        stack.callback(ingestion.stop)
        if storage_connection_string is None:
            azurite = stack.enter_context(AzuriteProcess())
            storage_connection_string = azurite.connection_string
        collector_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        write_collector_documents(lab.fleet, collector_dir)

        lab_settings = settings or PipelineSettings(
            ingestion_endpoint=endpoint,
            dcr_immutable_id=LOCAL_DCR_IMMUTABLE_ID,
            storage_connection_string=storage_connection_string,
            blob_endpoint=None,
            table_endpoint=None,
            managed_identity_client_id=None,
            audit_table="AuditTrail",
            coverage_table="DeviceCoverage",
            blocklist_container="blocklists",
            dead_letter_container="dead-letters",
            state_container="pipeline-state",
            actions=ActionSettings(edr_block_group_id=config.edr_block_group_id),
            tenant=LAB_TENANT,
            fanout_queue=fanout_queue,
        )
        tokens = {
            scope: ClientCredentialsTokens(
                lab.token_url, config.client_id, config.client_secret, scope
            )
            for scope in (MDE_SCOPE, GRAPH_SCOPE)
        }
        services = stack.enter_context(
            _services(
                lab_settings,
                mde_url=lab.mde_url,
                graph_url=lab.graph_url,
                mde_tokens=tokens[MDE_SCOPE],
                graph_tokens=tokens[GRAPH_SCOPE],
                ingestion_credential=FixedTokenCredential("lab"),
                storage_credential=None,
                storage_client_options=storage_client_options,
            )
        )
        yield LabEnvironment(
            services, lab_settings, lab, ingestion, storage_connection_string, collector_dir
        )


# What the Contoso lab tenant's operator declares about its portal toggles.
LAB_TENANT = TenantSettings(
    edr_block_mode=False,
    custom_network_indicators=True,
    allow_or_block_file=True,
    mde_license="P2",
    mda_enforce_app_access=True,
)


@contextmanager
def _services(
    settings: PipelineSettings,
    *,
    mde_url: str,
    graph_url: str,
    mde_tokens: TokenProvider,
    graph_tokens: TokenProvider,
    ingestion_credential: TokenCredential,
    storage_credential: TokenCredential | None,
    storage_client_options: Mapping[str, Any] | None = None,
    management_credential: TokenCredential | None = None,
) -> Iterator[CycleServices]:
    options = dict(storage_client_options or {})
    with ExitStack() as stack:
        mde_api = ApiClient(mde_url, mde_tokens)
        graph_api = ApiClient(graph_url, graph_tokens)
        stack.callback(mde_api.close)
        stack.callback(graph_api.close)

        storage = _storage(settings, storage_credential, options)
        sink = stack.enter_context(
            LogAnalyticsSink(
                settings.ingestion_endpoint,
                settings.dcr_immutable_id,
                ingestion_credential,
                storage.dead_letters,
            )
        )
        blobs = storage.blobs
        yield CycleServices(
            mde=MdeClient(mde_api),
            graph=GraphClient(graph_api),
            sink=sink,
            audit=storage.audit,
            lease=storage.lease,
            state=BlobStateStore(blobs.get_container_client(settings.state_container)),
            blocklists=BlobBlocklistStore(blobs.get_container_client(settings.blocklist_container)),
            coverage=CoverageStore(storage.tables.get_table_client(settings.coverage_table)),
            fanout=storage.fanout,
            management_credential=management_credential,
        )


@dataclass
class _Storage:
    blobs: BlobServiceClient
    tables: TableServiceClient
    audit: AuditTrail
    dead_letters: DeadLetterStore
    lease: CycleLease
    fanout: ShardQueue | None


def _storage(
    settings: PipelineSettings,
    credential: TokenCredential | None,
    options: dict[str, Any],
) -> _Storage:
    """Storage clients from a connection string, or from endpoints with the managed identity."""
    if settings.storage_connection_string:
        connection = settings.storage_connection_string
        fanout = (
            FanoutQueue.from_connection_string(connection, settings.fanout_queue, **options)
            if settings.fanout_queue
            else None
        )
        return _Storage(
            blobs=BlobServiceClient.from_connection_string(connection, **options),
            tables=TableServiceClient.from_connection_string(connection, **options),
            audit=AuditTrail.from_connection_string(connection, settings.audit_table, **options),
            dead_letters=DeadLetterStore.from_connection_string(
                connection, settings.dead_letter_container, **options
            ),
            lease=CycleLease.from_connection_string(connection, **options),
            fanout=fanout,
        )

    if not (settings.blob_endpoint and settings.table_endpoint and credential):
        raise ConfigError(
            "storage endpoints and a credential are needed without a connection string"
        )
    fanout = None
    if settings.fanout_queue:
        if not settings.queue_endpoint:
            raise ConfigError("STORAGE_QUEUE_ENDPOINT is needed for FANOUT_QUEUE")
        fanout = FanoutQueue.from_account_url(
            settings.queue_endpoint, settings.fanout_queue, credential, **options
        )
    blobs = BlobServiceClient(settings.blob_endpoint, credential=credential, **options)
    return _Storage(
        blobs=blobs,
        tables=TableServiceClient(settings.table_endpoint, credential=credential, **options),
        audit=AuditTrail.from_account_url(
            settings.table_endpoint, credential, settings.audit_table, **options
        ),
        dead_letters=DeadLetterStore(blobs.get_container_client(settings.dead_letter_container)),
        lease=CycleLease(blobs.get_container_client(DEFAULT_LEASE_CONTAINER)),
        fanout=fanout,
    )
