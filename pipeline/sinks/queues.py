"""The fan-out queue, written the way the Functions queue trigger reads it.

The queue trigger decodes each message as base64 text (its default ``messageEncoding``), so
messages are sent through ``TextBase64EncodePolicy``. The API version is pinned to one both
Azure Storage and the local emulator accept.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from pipeline.app_settings import STORAGE_API_VERSION

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["FanoutQueue", "QueueWriteError"]

log = logging.getLogger(__name__)


class QueueWriteError(Exception):
    """A message could not be queued; the message names the queue and how many were sent."""


class FanoutQueue:
    """Sends fan-out messages; creates the queue on first use when it does not exist yet."""

    def __init__(self, client: QueueClient) -> None:
        self._client = client

    @classmethod
    def from_connection_string(
        cls, connection_string: str, name: str, **client_options: Any
    ) -> FanoutQueue:
        return cls(
            QueueClient.from_connection_string(connection_string, name, **_options(client_options))
        )

    @classmethod
    def from_account_url(
        cls, endpoint: str, name: str, credential: TokenCredential, **client_options: Any
    ) -> FanoutQueue:
        return cls(QueueClient(endpoint, name, credential=credential, **_options(client_options)))

    @property
    def name(self) -> str:
        return str(self._client.queue_name)

    def send_all(self, messages: Iterable[str]) -> int:
        """Queue each message in order; returns how many were sent."""
        sent = 0
        for text in messages:
            try:
                self._send(text)
            except AzureError as error:
                raise QueueWriteError(
                    f"could not queue message {sent + 1} on {self.name} "
                    f"({sent} sent before it): {error}"
                ) from error
            sent += 1
        log.info("queued %d fan-out messages on %s", sent, self.name)
        return sent

    def _send(self, text: str) -> None:
        try:
            self._client.send_message(text)
        except ResourceNotFoundError:
            # The deployment creates the queue; a fresh local storage account has none yet.
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            self._client.send_message(text)


def _options(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "api_version": STORAGE_API_VERSION,
        "message_encode_policy": TextBase64EncodePolicy(),
        **extra,
    }
