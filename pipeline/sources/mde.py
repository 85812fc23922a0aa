"""Microsoft Defender for Endpoint API: the calls the pipeline makes, nothing more.

Reference: https://learn.microsoft.com/defender-endpoint/api/apis-intro. The base URL is a
setting: ``https://api.security.microsoft.com`` or a regional host such as
``https://eu.api.security.microsoft.com``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pipeline.sources.errors import ApiError
from pipeline.sources.http import ApiClient
from pipeline.sources.hunting import HuntingResult, parse_hunting_result

log = logging.getLogger(__name__)

# Microsoft documents two numbers for the AV health export: "$top max 10,000" and "maximum page
# size is 200,000". Ask for the larger one and step down if the service refuses it.
DEVICEAVINFO_PAGE_SIZE = 200_000
LIST_PAGE_SIZE = 10_000  # documented $top maximum of /api/machines and /api/indicators

_MACHINE_ID = re.compile(r"^[0-9a-fA-F]{40}$")

Progress = Callable[[int], None]


class MdeClient:
    def __init__(
        self,
        api: ApiClient,
        *,
        deviceavinfo_page_size: int = DEVICEAVINFO_PAGE_SIZE,
        list_page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.api = api
        self.deviceavinfo_page_size = deviceavinfo_page_size
        self.list_page_size = list_page_size

    def deviceavinfo(self, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """GET /api/deviceavinfo: each device's AV mode, versions and scan results."""
        page_size = self.deviceavinfo_page_size
        yielded = False
        try:
            for record in self.api.iter_collection(
                "deviceavinfo", "/api/deviceavinfo", page_size=page_size, progress=progress
            ):
                yielded = True
                yield record
        except ApiError as exc:
            if yielded or exc.status != 400 or page_size <= LIST_PAGE_SIZE:
                raise
            log.warning(
                "deviceavinfo refused $top=%d (%s); paging by %d instead",
                page_size,
                exc.code,
                LIST_PAGE_SIZE,
            )
            yield from self.api.iter_collection(
                "deviceavinfo", "/api/deviceavinfo", page_size=LIST_PAGE_SIZE, progress=progress
            )

    def machines(self, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """GET /api/machines. The API answers 404 when the tenant has no recent machines."""
        yielded = False
        try:
            for record in self.api.iter_collection(
                "machines",
                "/api/machines",
                page_size=self.list_page_size,
                skip_paging=True,
                progress=progress,
            ):
                yielded = True
                yield record
        except ApiError as exc:
            if yielded or exc.status != 404:
                raise
            log.info("GET /api/machines: 404, the tenant has no recent machines")

    def indicators(self, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
        """GET /api/indicators, every page (Defender for Cloud Apps' indicators included when
        the app holds Ti.ReadWrite.All; with Ti.ReadWrite it sees only its own)."""
        return self.api.iter_collection(
            "indicators",
            "/api/indicators",
            page_size=self.list_page_size,
            skip_paging=True,
            progress=progress,
        )

    def run_advanced_query(self, query: str) -> HuntingResult:
        """POST /api/advancedqueries/run (the older hunting API; Graph's is preferred)."""
        _, body = self.api.request_json(
            "advancedqueries", "POST", "/api/advancedqueries/run", body={"Query": query}
        )
        return parse_hunting_result(body, "POST /api/advancedqueries/run")

    def tag_machine(
        self, machine_id: str, tag: str, action: Literal["Add", "Remove"] = "Add"
    ) -> dict[str, Any]:
        """POST /api/machines/{id}/tags. Body names are case-sensitive: Value and Action."""
        if not _MACHINE_ID.match(machine_id):
            raise ValueError(f"not an MDE machine id (40 hex digits): {machine_id!r}")
        _, body = self.api.request_json(
            "machine-tags",
            "POST",
            f"/api/machines/{machine_id}/tags",
            body={"Value": tag, "Action": action},
        )
        return body if isinstance(body, dict) else {}
