"""The cycle lease: at most one pipeline cycle acts at a time.

A cycle takes a blob lease before it acts. Blob storage itself enforces the lease and its expiry
(on the service's clock, so the machines' clocks do not matter): a second cycle asking for the
lease gets ``LeaseHeld``, naming the holder and since when, and stands down. A holder that crashes
stops renewing, and its lease lapses after ``duration_seconds`` (15 to 60, the service's range;
infinite leases are refused because a crashed holder would block every later cycle).

The holder's name and start time live in the blob's metadata, written under the lease right after
it is taken. A cycle that finds the lease held between those two steps sees the previous holder's
name; the message says so by giving the time the metadata was written.

    outcome = CycleLease.from_connection_string(conn).acquire(holder="host/1234/cycle-42")
    if isinstance(outcome, LeaseHeld):
        log.warning("%s", outcome)        # stand down
        return
    with outcome.keep_alive():           # renews in the background until released
        ...                              # act; call outcome.ensure_held() before each action
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient, ContainerClient

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

DEFAULT_LEASE_CONTAINER = "pipeline-leases"
DEFAULT_LEASE_BLOB = "cycle"
MIN_DURATION_SECONDS = 15
MAX_DURATION_SECONDS = 60


class LeaseError(Exception):
    """Base class of the errors this module raises."""


class LeaseLost(LeaseError):
    """This cycle no longer holds the lease (it lapsed, or storage refused a renewal)."""


@dataclass(frozen=True)
class LeaseHeld:
    """Another cycle holds the lease; this one must stand down."""

    blob: str
    holder: str | None
    since: datetime | None

    def __str__(self) -> str:
        who = self.holder or "an unnamed holder"
        when = f" since {self.since.isoformat()}" if self.since else ""
        return f"cycle lease {self.blob} is held by {who}{when}; this cycle stands down"


class Lease:
    """A lease this cycle holds. Renew it (or ``keep_alive()``) and release it when done."""

    def __init__(
        self, client: BlobLeaseClient, blob: BlobClient, holder: str, since: datetime, duration: int
    ) -> None:
        self._client = client
        self._blob = blob
        self.holder = holder
        self.since = since
        self.duration_seconds = duration
        self._lost: str | None = None
        self._released = False
        self._lock = threading.Lock()

    @property
    def lease_id(self) -> str:
        return str(self._client.id)

    @property
    def name(self) -> str:
        return f"{self._blob.container_name}/{self._blob.blob_name}"

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def renew(self) -> None:
        """Extend the lease by another ``duration_seconds``; raises ``LeaseLost`` if it is gone."""
        with self._lock:
            self.ensure_held()
            try:
                self._client.renew()
            except AzureError as err:
                self._lost = f"renewal refused: {err}"
                raise LeaseLost(f"cycle lease {self.name} of {self.holder} is lost: {err}") from err
        logger.debug("renewed cycle lease %s", self.name)

    def ensure_held(self) -> None:
        """Raise ``LeaseLost`` if this cycle is known to have lost the lease; call before acting."""
        if self._released:
            raise LeaseLost(f"cycle lease {self.name} was released by {self.holder}")
        if self._lost is not None:
            raise LeaseLost(f"cycle lease {self.name} of {self.holder} is lost: {self._lost}")

    def release(self) -> None:
        """Give the lease up. Quietly does nothing if it was already released or lost."""
        with self._lock:
            if self._released:
                return
            self._released = True
            if self._lost is not None:
                return
            try:
                self._blob.set_blob_metadata(
                    {"released_by": quote(self.holder)}, lease=self._client
                )
                self._client.release()
            except AzureError as err:
                # Nothing to undo: an unreleased lease lapses by itself after its duration.
                logger.warning("could not release cycle lease %s: %s", self.name, err)
                return
        logger.info("released cycle lease %s held by %s", self.name, self.holder)

    @contextmanager
    def keep_alive(self, interval_seconds: float | None = None) -> Iterator[Lease]:
        """Renew in a background thread while the block runs; release at its end."""
        interval = interval_seconds or self.duration_seconds / 3
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(interval):
                try:
                    self.renew()
                except LeaseLost as err:
                    logger.error("%s", err)
                    return

        thread = threading.Thread(target=renew_until_stopped, name="lease-renewal", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=interval + 5)
            self.release()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CycleLease:
    """Hands out the lease on one blob; one instance per place that starts cycles."""

    def __init__(
        self,
        container: ContainerClient,
        blob_name: str = DEFAULT_LEASE_BLOB,
        *,
        duration_seconds: int = MAX_DURATION_SECONDS,
    ) -> None:
        if not MIN_DURATION_SECONDS <= duration_seconds <= MAX_DURATION_SECONDS:
            raise ValueError(
                f"lease duration must be {MIN_DURATION_SECONDS}..{MAX_DURATION_SECONDS} seconds, "
                f"got {duration_seconds}"
            )
        self._container = container
        self._blob = container.get_blob_client(blob_name)
        self.duration_seconds = duration_seconds

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container_name: str = DEFAULT_LEASE_CONTAINER,
        blob_name: str = DEFAULT_LEASE_BLOB,
        **options: Any,
    ) -> CycleLease:
        duration = options.pop("duration_seconds", MAX_DURATION_SECONDS)
        service = BlobServiceClient.from_connection_string(connection_string, **options)
        return cls(
            service.get_container_client(container_name), blob_name, duration_seconds=duration
        )

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        credential: TokenCredential,
        container_name: str = DEFAULT_LEASE_CONTAINER,
        blob_name: str = DEFAULT_LEASE_BLOB,
        **options: Any,
    ) -> CycleLease:
        duration = options.pop("duration_seconds", MAX_DURATION_SECONDS)
        service = BlobServiceClient(account_url, credential=credential, **options)
        return cls(
            service.get_container_client(container_name), blob_name, duration_seconds=duration
        )

    @property
    def name(self) -> str:
        return f"{self._blob.container_name}/{self._blob.blob_name}"

    def acquire(self, holder: str) -> Lease | LeaseHeld:
        """Take the lease for ``holder``, or say who has it."""
        try:
            self._ensure_blob()
            client = self._blob.acquire_lease(lease_duration=self.duration_seconds)
        except HttpResponseError as err:
            if err.status_code == 409:
                held = self._who_holds()
                logger.warning("%s", held)
                return held
            raise LeaseError(f"could not take cycle lease {self.name}: {err}") from err
        except AzureError as err:
            raise LeaseError(f"could not take cycle lease {self.name}: {err}") from err

        since = datetime.now(UTC)
        try:
            self._blob.set_blob_metadata(
                {"holder": quote(holder), "since": since.isoformat()}, lease=client
            )
        except AzureError as err:
            client.release()
            raise LeaseError(
                f"could not name the holder of cycle lease {self.name}: {err}"
            ) from err
        logger.info("took cycle lease %s for %s (%ds)", self.name, holder, self.duration_seconds)
        return Lease(client, self._blob, holder, since, self.duration_seconds)

    def break_lease(self) -> None:
        """End whatever lease is held now, at once (for an operator after a holder crashed).

        A crashed holder's lease lapses by itself within ``duration_seconds``; this is for when
        waiting is not wanted. The next ``acquire`` succeeds.
        """
        try:
            BlobLeaseClient(self._blob).break_lease(lease_break_period=0)
        except HttpResponseError as err:
            if err.status_code != 409:  # 409: there was no lease to break
                raise LeaseError(f"could not break cycle lease {self.name}: {err}") from err
        logger.warning("broke cycle lease %s", self.name)

    def _ensure_blob(self) -> None:
        with suppress(ResourceExistsError):
            self._container.create_container()
        # Already there is the usual case; it is also what a leased blob answers.
        with suppress(ResourceExistsError):
            self._blob.upload_blob(b"", overwrite=False)

    def _who_holds(self) -> LeaseHeld:
        try:
            metadata = self._blob.get_blob_properties().metadata or {}
        except AzureError as err:
            logger.warning("could not read the holder of cycle lease %s: %s", self.name, err)
            metadata = {}
        holder = metadata.get("holder")
        since_text = metadata.get("since")
        since = None
        if since_text:
            try:
                since = datetime.fromisoformat(since_text)
            except ValueError:
                since = None
        return LeaseHeld(self.name, unquote(holder) if holder else None, since)
