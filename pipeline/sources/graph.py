"""Microsoft Graph: hunting, Entra devices and group membership.

The base URL includes the version, e.g. ``https://graph.microsoft.com/v1.0``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pipeline.sources.errors import ApiError
from pipeline.sources.http import ApiClient
from pipeline.sources.hunting import HuntingResult, parse_hunting_result

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Graph's answer when the object is already a member: 400 "One or more added object references
# already exist for the following modified properties: 'members'."
_ALREADY_MEMBER = "already exist"


class GraphClient:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def run_hunting_query(self, query: str, timespan: str | None = None) -> HuntingResult:
        """POST /security/runHuntingQuery (permission ThreatHunting.Read.All)."""
        body: dict[str, str] = {"Query": query}
        if timespan:
            body["Timespan"] = timespan
        _, answer = self.api.request_json("hunting", "POST", "/security/runHuntingQuery", body=body)
        return parse_hunting_result(answer, "POST /security/runHuntingQuery")

    def device_by_device_id(self, aad_device_id: str) -> dict[str, Any] | None:
        """GET /devices(deviceId='…'): MDE's aadDeviceId is Entra's deviceId, not the object id
        that group membership needs. None when Entra has no such device."""
        _require_guid(aad_device_id, "aadDeviceId")
        try:
            _, body = self.api.request_json(
                "graph-devices",
                "GET",
                f"/devices(deviceId='{aad_device_id}')",
                params={"$select": "id,deviceId,displayName,accountEnabled,trustType"},
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body if isinstance(body, dict) else None

    def add_group_member(self, group_id: str, directory_object_id: str) -> bool:
        """POST /groups/{id}/members/$ref. True when added, False when it already was a member."""
        _require_guid(group_id, "group id")
        _require_guid(directory_object_id, "directory object id")
        reference = {
            "@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{directory_object_id}"
        }
        status, _ = self.api.request_json(
            "graph-groups",
            "POST",
            f"/groups/{group_id}/members/$ref",
            body=reference,
            accept_error=lambda exc: exc.status == 400 and _ALREADY_MEMBER in exc.message,
        )
        return status != 400

    def group_members(self, group_id: str) -> Iterator[dict[str, Any]]:
        """GET /groups/{id}/members, every page."""
        _require_guid(group_id, "group id")
        return self.api.iter_collection("graph-groups", f"/groups/{group_id}/members")


def _require_guid(value: str, what: str) -> None:
    # The value goes into a URL path; anything but a GUID could change which resource is called.
    if not _GUID.match(value):
        raise ValueError(f"{what} is not a GUID: {value!r}")
