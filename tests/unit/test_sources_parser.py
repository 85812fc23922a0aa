"""The streamed OData page parser: same records as json.loads, however the bytes are split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sources.errors import MalformedResponseError
from pipeline.sources.http import ODataPageParser
from tests.support.lab import FIXTURES


def _parse(raw: bytes, chunk: int) -> tuple[list[object], dict[str, object]]:
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    parser = ODataPageParser(chunks, "GET /api/test")
    records = list(parser.records())
    return records, parser.properties


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100_000])
def test_documented_page_parses_identically_at_any_chunk_size(chunk: int) -> None:
    raw = (FIXTURES / "mde" / "deviceavinfo-page1.json").read_bytes()
    expected = json.loads(raw)

    records, properties = _parse(raw, chunk)

    assert records == expected["value"]
    assert properties["@odata.nextLink"] == expected["@odata.nextLink"]
    assert properties["@odata.context"].endswith("#DeviceAvInfo")


def test_next_link_before_value_and_null_next_link_are_read() -> None:
    raw = (FIXTURES / "mde" / "deviceavinfo-page2.json").read_bytes()

    records, properties = _parse(raw, 5)

    assert [r["avMode"] for r in records] == ["4"]  # type: ignore[index]
    assert properties == {
        "@odata.nextLink": None,
        "@odata.context": "https://api.security.microsoft.com/api/$metadata#DeviceAvInfo",
    }


def test_number_split_across_chunks_is_not_cut_short() -> None:
    raw = b'{"@odata.count": 123456, "value": [{"rbacGroupId": 987654321}]}'

    records, properties = _parse(raw, 1)

    assert records == [{"rbacGroupId": 987654321}]
    assert properties["@odata.count"] == 123456


def test_multibyte_utf8_split_inside_a_character() -> None:
    raw = json.dumps({"value": [{"computerDnsName": "poste-équipe-Ωmega"}]}, ensure_ascii=False)

    records, _ = _parse(raw.encode("utf-8"), 1)

    assert records == [{"computerDnsName": "poste-équipe-Ωmega"}]


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (b'{"value": [{"id": "a"}, {"id": "b"', "stops part way"),
        (b'{"value": [{"id": "a"}]', "stops part way"),
        (b'{"value": [{"id": "a"}]} trailing', "after the end"),
        (b'["not", "a", "page"]', "expected '{'"),
        (b'{"value": [{"id": "a"} {"id": "b"}]}', "expected ',' or ']'"),
        (b'{"value": ["\xff"]}', "not UTF-8"),
    ],
)
def test_broken_pages_raise_malformed_naming_the_endpoint(raw: bytes, complaint: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        _parse(raw, 4)

    assert complaint in str(caught.value)
    assert caught.value.endpoint == "GET /api/test"


def test_records_before_a_cut_are_handed_over_before_the_error() -> None:
    parser = ODataPageParser([b'{"value": [{"id": "a"}, {"id": "b"}, {"id"'], "GET /x")
    records = parser.records()

    seen = [next(records), next(records)]

    assert seen == [{"id": "a"}, {"id": "b"}]
    with pytest.raises(MalformedResponseError):
        next(records)


_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
_records = st.lists(
    st.dictionaries(
        st.text(max_size=6), st.recursive(_json_leaf, lambda c: st.lists(c, max_size=3))
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(records=_records, chunk=st.integers(min_value=1, max_value=40), link_first=st.booleans())
def test_any_page_round_trips(
    records: list[dict[str, object]], chunk: int, link_first: bool
) -> None:
    page = {"value": records, "@odata.nextLink": "https://x/next"}
    if link_first:
        page = {"@odata.nextLink": "https://x/next", "value": records}
    raw = json.dumps(page, ensure_ascii=False).encode("utf-8")

    parsed, properties = _parse(raw, chunk)

    assert parsed == records
    assert properties == {"@odata.nextLink": "https://x/next"}
