"""Small blob-backed stores the cycle needs: named JSON state, and published blocklists.

State (last known device modes, the last published version of each list) is overwritten each
cycle: unlike the audit trail it is a cache of "where we are", not a record of what happened.
The state store also keeps whole files by name (a cycle's collected snapshot, which fan-out
shards read), streamed from and to disk so a large fleet's snapshot never sits in memory.
Published blocklists carry their content hash and version as blob metadata, so a consumer that
reads storage can tell a new list from an old one without downloading it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

log = logging.getLogger(__name__)

# Blocks in flight at once when a file is uploaded or downloaded.
_TRANSFER_CONCURRENCY: Final = 4


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

    def put_file(self, name: str, path: Path, *, metadata: Mapping[str, str] | None = None) -> None:
        """Upload the file at ``path`` as blob ``name`` (no ``state/`` prefix), streamed."""
        if not self._ready:
            _ensure(self._container)
            self._ready = True
        size = path.stat().st_size
        with path.open("rb") as handle:
            self._container.upload_blob(
                name,
                handle,
                length=size,
                overwrite=True,
                metadata=dict(metadata or {}),
                max_concurrency=_TRANSFER_CONCURRENCY,
                content_settings=ContentSettings(content_type="application/json"),
            )
        log.info("stored %s (%d bytes)", name, size)

    def get_file(self, name: str, path: Path) -> dict[str, str] | None:
        """Download blob ``name`` into ``path``; returns its metadata, or None when it is absent."""
        try:
            downloader = self._container.download_blob(name, max_concurrency=_TRANSFER_CONCURRENCY)
        except ResourceNotFoundError:
            return None
        with path.open("wb") as handle:
            size = downloader.readinto(handle)
        log.info("read %s (%d bytes)", name, size)
        return dict(downloader.properties.metadata or {})

    def put_document(self, name: str, document: Any) -> None:
        """A JSON document at blob ``name`` itself (no ``state/`` prefix), e.g. a pointer."""
        if not self._ready:
            _ensure(self._container)
            self._ready = True
        self._container.upload_blob(
            name,
            json.dumps(document, separators=(",", ":")).encode("utf-8"),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def get_document(self, name: str) -> Any | None:
        try:
            data = self._container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        return json.loads(data)


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
