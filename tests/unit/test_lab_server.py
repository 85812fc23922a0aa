"""The lab server enforces Microsoft's auth, paging and rate rules, and injects faults."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pipeline.lab.server import GRAPH_RESOURCE, MDE_RESOURCES
from tests.support.lab import LabTenant, lab_tenant

__all__ = ["lab_tenant"]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _get(http: httpx.Client, lab: LabTenant, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return http.get(lab.server.base_url + path, headers=headers)


def test_api_calls_need_a_valid_token_for_the_right_resource(
    lab_tenant: LabTenant, http: httpx.Client
) -> None:
    mde = lab_tenant.server.issue_token(MDE_RESOURCES[0])
    graph = lab_tenant.server.issue_token(GRAPH_RESOURCE)

    missing = _get(http, lab_tenant, "/api/indicators", None)
    forged = _get(http, lab_tenant, "/api/indicators", "lab.forged")
    wrong_audience = _get(http, lab_tenant, "/api/indicators", graph)
    graph_with_mde = http.post(
        lab_tenant.server.graph_url + "/security/runHuntingQuery",
        json={"Query": "DeviceTvmInfoGathering"},
        headers={"Authorization": f"Bearer {mde}"},
    )
    ok = _get(http, lab_tenant, "/api/indicators", mde)

    assert [r.status_code for r in (missing, forged, wrong_audience, graph_with_mde, ok)] == [
        401,
        401,
        401,
        401,
        200,
    ]
    assert missing.json()["error"]["code"] == "Unauthorized"
    assert graph_with_mde.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "invalid_token" in missing.headers["WWW-Authenticate"]


def test_tokens_expire_on_the_lab_clock(lab_tenant: LabTenant, http: httpx.Client) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[1])

    lab_tenant.clock.advance(3600)
    expired = _get(http, lab_tenant, "/api/indicators", token)

    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


def test_top_limits_and_filter_are_enforced(lab_tenant: LabTenant, http: httpx.Client) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[0])

    too_many = _get(http, lab_tenant, "/api/machines?$top=10001", token)
    allowed = _get(http, lab_tenant, "/api/deviceavinfo?$top=200000", token)
    over = _get(http, lab_tenant, "/api/deviceavinfo?$top=200001", token)
    filtered = _get(http, lab_tenant, "/api/deviceavinfo?$filter=avMode eq '1'", token)

    assert too_many.status_code == 400
    assert "$top" in too_many.json()["error"]["message"]
    assert allowed.status_code == 200
    assert len(allowed.json()["value"]) == 1_200
    assert over.status_code == 400
    assert filtered.status_code == 400


def test_default_page_and_next_link_paging(lab_tenant: LabTenant, http: httpx.Client) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[0])

    first = _get(http, lab_tenant, "/api/deviceavinfo", token).json()
    last = _get(http, lab_tenant, "/api/deviceavinfo?$top=500&$skip=1000", token).json()

    assert len(first["value"]) == 20
    assert first["@odata.nextLink"].endswith("/api/deviceavinfo?$top=20&$skip=20")
    assert len(last["value"]) == 200
    assert "@odata.nextLink" not in last


def test_deviceavinfo_is_limited_to_thirty_calls_a_minute(
    lab_tenant: LabTenant, http: httpx.Client
) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[0])
    statuses = [_get(http, lab_tenant, "/api/deviceavinfo?$top=1", token) for _ in range(31)]

    throttled = statuses[-1]
    lab_tenant.clock.advance(60)
    after_a_minute = _get(http, lab_tenant, "/api/deviceavinfo?$top=1", token)

    assert {r.status_code for r in statuses[:30]} == {200}
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert throttled.headers["Retry-After"] == "60"
    assert after_a_minute.status_code == 200


def test_faults_can_be_added_over_http(lab_tenant: LabTenant, http: httpx.Client) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[0])

    added = http.post(
        lab_tenant.server.base_url + "/_lab/faults",
        json={"kind": "error", "path": "/api/indicators", "status": 503},
    )
    failed = _get(http, lab_tenant, "/api/indicators", token)
    recovered = _get(http, lab_tenant, "/api/indicators", token)
    bad = http.post(
        lab_tenant.server.base_url + "/_lab/faults", json={"kind": "meteor", "path": "/api"}
    )

    assert added.status_code == 201
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "InternalServerError"
    assert recovered.status_code == 200
    assert bad.status_code == 400
    assert "meteor" in bad.json()["error"]["message"]


def test_machine_tags_require_microsoft_casing(lab_tenant: LabTenant, http: httpx.Client) -> None:
    token = lab_tenant.server.issue_token(MDE_RESOURCES[0])
    machine = lab_tenant.server.fleet.device(3).machine_id
    url = f"{lab_tenant.server.base_url}/api/machines/{machine}/tags"
    headers = {"Authorization": f"Bearer {token}"}

    lower = http.post(url, json={"value": "x", "action": "Add"}, headers=headers)
    added = http.post(url, json={"Value": "soar-edr-block", "Action": "Add"}, headers=headers)
    unknown = http.post(
        url.replace(machine, "f" * 40), json={"Value": "x", "Action": "Add"}, headers=headers
    )

    assert lower.status_code == 400
    assert lower.json()["error"]["code"] == "InvalidRequestBody"
    assert added.status_code == 200
    assert "soar-edr-block" in added.json()["machineTags"]
    assert unknown.status_code == 404
    assert "soar-edr-block" in lab_tenant.server.machine_tags(machine)


def test_unknown_route_is_404_with_microsoft_error_body(
    lab_tenant: LabTenant, http: httpx.Client
) -> None:
    response = _get(http, lab_tenant, "/api/alerts", "x")

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "target"}
