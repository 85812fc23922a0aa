"""Fan-out helpers for tests: the lab with a fan-out queue, and reading that queue.

``fanout_lab`` starts the lab tenant, the local ingestion endpoint and a private in-memory
Azurite (a fanned-out cycle writes the lab's default container and table names, which must not
be shared with other tests), with the cycle allowed to fan out to ``QUEUE``. ``app_settings``
are the function app's settings for the same services, so a test can call the functions too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from pipeline.lab.ingestion import LOCAL_DCR_IMMUTABLE_ID
from pipeline.services import LabEnvironment, lab_environment

QUEUE = "device-fanout"
DEVICES = 300


@pytest.fixture
def fanout_lab(tmp_path: Path) -> Iterator[LabEnvironment]:
    with lab_environment(
        tmp_path / "lab", devices=DEVICES, seed=23, fanout_queue=QUEUE
    ) as environment:
        yield environment


def app_settings(env: LabEnvironment) -> dict[str, str]:
    """The function app's settings naming the lab's storage and ingestion endpoint."""
    settings = env.settings
    return {
        "AzureWebJobsStorage": env.storage_connection_string,
        "LOGS_INGESTION_ENDPOINT": settings.ingestion_endpoint,
        "LOGS_INGESTION_DCR_IMMUTABLE_ID": LOCAL_DCR_IMMUTABLE_ID,
        "AUDIT_TABLE_NAME": settings.audit_table,
        "COVERAGE_TABLE_NAME": settings.coverage_table,
        "BLOCKLIST_CONTAINER": settings.blocklist_container,
        "DEAD_LETTER_CONTAINER": settings.dead_letter_container,
        "STATE_CONTAINER": settings.state_container,
        "FANOUT_QUEUE": QUEUE,
        "COLLECTOR_QUEUE": "collector-documents",
    }


def take_messages(env: LabEnvironment, queue: str = QUEUE) -> list[str]:
    """Receive and delete every message on the queue, decoded as the queue trigger decodes."""
    client = QueueClient.from_connection_string(
        env.storage_connection_string,
        queue,
        api_version="2025-11-05",
        message_decode_policy=TextBase64DecodePolicy(),
    )
    texts: list[str] = []
    while True:
        try:
            batch = list(client.receive_messages(max_messages=32, visibility_timeout=60))
        except ResourceNotFoundError:
            return texts  # nobody has written to the queue yet
        if not batch:
            return texts
        for message in batch:
            texts.append(str(message.content))
            client.delete_message(message)
