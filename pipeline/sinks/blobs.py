"""Small blob-backed stores the cycle needs: named JSON state, and published blocklists.

State (last known device modes, the last published version of each list) is overwritten each
cycle: unlike the audit trail it is a cache of "where we are", not a record of what happened.
Published blocklists carry their content hash and version as blob metadata, so a consumer that
reads storage can tell a new list from an old one without downloading it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

log = logging.getLogger(__name__)


def _ensure(container: ContainerClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        container.create_container()


class BlobStateStore:
    """``load(name)`` / ``save(name, document)`` of JSON documents under ``state/``."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ready = False

    def load(self, name: str) -> Any | None:
        try:
            data = self._container.download_blob(f"state/{name}.json").readall()
        except ResourceNotFoundError:
            return None
        return json.loads(data)

    def save(self, name: str, document: Any) -> None:
        if not self._ready:
            _ensure(self._container)
            self._ready = True
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        self._container.upload_blob(
            f"state/{name}.json",
            body,
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        log.debug("saved state %s (%d bytes)", name, len(body))


class BlobBlocklistStore:
    """Publishes each list as ``<list>/<format>`` with its hash and version as metadata."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ready = False

    def put(self, name: str, content: str, *, sha256: str, version: int) -> None:
        if not self._ready:
            _ensure(self._container)
            self._ready = True
        self._container.upload_blob(
            name,
            content.encode("utf-8"),
            overwrite=True,
            metadata={"sha256": sha256, "version": str(version)},
            content_settings=ContentSettings(content_type="text/plain; charset=utf-8"),
        )
        log.info("published blocklist %s version %d (%s)", name, version, sha256[:12])

    def put_json(self, name: str, document: Any) -> None:
        """A JSON document beside the lists (e.g. the entries the streaming detector matches)."""
        if not self._ready:
            _ensure(self._container)
            self._ready = True
        self._container.upload_blob(
            name,
            json.dumps(document, separators=(",", ":")).encode("utf-8"),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def get(self, name: str) -> tuple[str, dict[str, str]] | None:
        """Content and metadata of a published list, or None if it was never published."""
        try:
            downloader = self._container.download_blob(name)
        except ResourceNotFoundError:
            return None
        metadata = dict(downloader.properties.metadata or {})
        return downloader.readall().decode("utf-8"), metadata
