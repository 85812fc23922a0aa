"""The local ingestion endpoint's REST contract, spoken to with plain HTTP requests."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from pipeline.lab.ingestion import IngestionServer
from pipeline.tables import COVERAGE
from tests.support.sinks import LOCAL_TOKEN, ingestion_server

pytestmark = pytest.mark.integration

__all__ = ["ingestion_server"]  # fixtures used by name below

STREAM = COVERAGE.stream_name
ROW = {"TimeGenerated": "2026-12-03T12:00:00Z", "RowId": "r1", "DeviceId": "d1", "GapCount": 2}


def _post(
    server: IngestionServer,
    body: bytes,
    *,
    dcr: str | None = None,
    stream: str = STREAM,
    api_version: str | None = "2023-01-01",
    token: str | None = LOCAL_TOKEN,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = f"{server.base_url}/dataCollectionRules/{dcr or server.dcr_immutable_id}/streams/{stream}"
    params = {"api-version": api_version} if api_version else {}
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent_headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, params=params, content=body, headers=sent_headers, timeout=10)


def _json(rows: Any) -> bytes:
    return json.dumps(rows).encode()


def _error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_plain_and_gzip_arrays_are_accepted_and_kept(ingestion_server: IngestionServer) -> None:
    plain = _post(ingestion_server, _json([ROW]))
    zipped = _post(
        ingestion_server,
        gzip.compress(_json([{**ROW, "RowId": "r2"}])),
        headers={"Content-Encoding": "gzip"},
    )

    assert (plain.status_code, zipped.status_code) == (204, 204)
    assert plain.content == b""
    kept = ingestion_server.jsonl_path(STREAM).read_text().splitlines()
    assert [json.loads(line)["RowId"] for line in kept] == ["r1", "r2"]


def test_a_bearer_token_is_required(ingestion_server: IngestionServer) -> None:
    missing = _post(ingestion_server, _json([ROW]), token=None)
    basic = _post(
        ingestion_server, _json([ROW]), token=None, headers={"Authorization": "Basic eDp5"}
    )

    assert missing.status_code == 401
    assert basic.status_code == 401
    assert _error_code(missing) == "InvalidAuthenticationToken"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    assert ingestion_server.accepted_rows(STREAM) == []


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"dcr": "dcr-ffffffffffffffffffffffffffffffff"}, 404, "DataCollectionRuleNotFound"),
        ({"stream": "Custom-Nope_CL"}, 404, "InvalidStream"),
        ({"api_version": None}, 400, "MissingApiVersionParameter"),
        ({"api_version": "2019-01-01"}, 400, "UnsupportedApiVersion"),
    ],
)
def test_unknown_rule_stream_or_version(
    ingestion_server: IngestionServer, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = _post(ingestion_server, _json([ROW]), **kwargs)

    assert response.status_code == status
    assert _error_code(response) == code
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b'[{"RowId": ', "InvalidJson", "not valid JSON"),
        (_json(ROW), "InvalidPayload", "JSON array"),
        (_json([ROW, "text"]), "InvalidPayload", "row 1"),
        (_json([{**ROW, "Extra": 1}]), "UnknownColumn", "'Extra'"),
        (_json([{**ROW, "GapCount": "2"}]), "InvalidColumnValue", "'GapCount' expects int"),
        (_json([{**ROW, "GapCount": True}]), "InvalidColumnValue", "'GapCount' expects int"),
        (_json([{**ROW, "TimeGenerated": "yesterday"}]), "InvalidColumnValue", "datetime"),
    ],
)
def test_malformed_bodies_are_refused_whole(
    ingestion_server: IngestionServer, body: bytes, code: str, says: str
) -> None:
    response = _post(ingestion_server, body)

    assert response.status_code == 400
    assert _error_code(response) == code
    assert says in response.json()["error"]["message"]
    assert ingestion_server.accepted_rows(STREAM) == []


def test_bad_gzip_is_refused(ingestion_server: IngestionServer) -> None:
    truncated = gzip.compress(_json([ROW]))[:-12]

    response = _post(ingestion_server, truncated, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert _error_code(response) == "InvalidContentEncoding"


def test_bodies_over_1_mb_get_413_on_the_wire_or_decompressed(
    ingestion_server: IngestionServer,
) -> None:
    rows = [{**ROW, "RowId": f"r{n}", "DeviceName": "x" * 1000} for n in range(1100)]
    body = _json(rows)
    assert len(body) > 1024 * 1024

    plain = _post(ingestion_server, body)
    zipped = _post(ingestion_server, gzip.compress(body), headers={"Content-Encoding": "gzip"})

    assert len(gzip.compress(body)) < 1024 * 1024  # only the decompressed size is too big
    assert (plain.status_code, zipped.status_code) == (413, 413)
    assert _error_code(plain) == "ContentLengthLimitExceeded"
    assert "decompressed" in zipped.json()["error"]["message"]
    assert ingestion_server.accepted_rows(STREAM) == []


def test_injected_faults(ingestion_server: IngestionServer) -> None:
    ingestion_server.throttle_next(1, retry_after_seconds=7)
    throttled = _post(ingestion_server, _json([ROW]))
    ingestion_server.fail_next(1, status=502)
    failed = _post(ingestion_server, _json([ROW]))
    ingestion_server.reject_rows_containing("MARK")
    marked = _post(ingestion_server, _json([ROW, {**ROW, "DeviceId": "xMARKx"}]))
    fine = _post(ingestion_server, _json([ROW]))

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert failed.status_code == 502
    assert marked.status_code == 400
    assert "row 1" in marked.json()["error"]["message"]
    assert fine.status_code == 204
    assert [r.status for r in ingestion_server.requests] == [429, 502, 400, 204]
    assert len(ingestion_server.accepted_rows(STREAM)) == 1


def test_other_methods_and_paths(ingestion_server: IngestionServer) -> None:
    get = httpx.get(f"{ingestion_server.base_url}/dataCollectionRules/x/streams/y", timeout=10)
    elsewhere = httpx.post(
        f"{ingestion_server.base_url}/somewhere",
        content=b"[]",
        headers={"Authorization": f"Bearer {LOCAL_TOKEN}"},
        timeout=10,
    )

    assert get.status_code == 405
    assert elsewhere.status_code == 404


def test_stop_frees_the_port(tmp_path: Any) -> None:
    server = IngestionServer(tmp_path)
    url = server.start()
    server.stop()

    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/dataCollectionRules/x/streams/y", content=b"[]", timeout=2)
