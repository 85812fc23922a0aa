"""Parsing GET /api/indicators records into typed indicators, one bad record at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.indicators import (
    Indicator,
    IndicatorError,
    IndicatorPayloadError,
    parse_indicator,
    parse_indicators,
)

FULL_RECORD = {
    "id": "995",
    "indicatorValue": "evil.example",
    "indicatorType": "DomainName",
    "action": "Block",
    "application": "Contoso app",
    "source": "WindowsDefenderATP",
    "sourceType": "AadApp",
    "createdBySource": "PublicApi",
    "title": "Known C2",
    "expirationTime": "2030-06-07T13:14:19.7016667Z",
    "generateAlert": True,
    "severity": "High",
    "rbacGroupNames": ["Workstations"],
}


def test_a_full_record_keeps_every_field_it_maps() -> None:
    indicator = parse_indicator(FULL_RECORD)

    assert indicator == Indicator(
        id="995",
        value="evil.example",
        type="DomainName",
        action="Block",
        expiration_time=datetime(2030, 6, 7, 13, 14, 19, 701666, tzinfo=UTC),
        title="Known C2",
        application="Contoso app",
        created_by_source="PublicApi",
        source_type="AadApp",
        generate_alert=True,
        severity="High",
        rbac_group_names=("Workstations",),
    )


def test_a_page_and_a_plain_list_parse_the_same() -> None:
    page = {"@odata.context": "x", "value": [FULL_RECORD]}

    assert parse_indicators(page) == parse_indicators([FULL_RECORD])
    assert len(parse_indicators(page).indicators) == 1


def test_numeric_ids_and_portal_spelling_of_allow_are_accepted() -> None:
    indicator = parse_indicator({**FULL_RECORD, "id": 12, "action": "allow"})

    assert (indicator.id, indicator.action) == ("12", "Allowed")


def test_enum_values_are_matched_case_insensitively_to_the_api_spelling() -> None:
    indicator = parse_indicator(
        {**FULL_RECORD, "indicatorType": "url", "action": "BLOCKANDREMEDIATE"}
    )

    assert (indicator.type, indicator.action) == ("Url", "BlockAndRemediate")


def test_an_expiry_without_offset_is_utc_and_offsets_are_converted() -> None:
    naive = parse_indicator({**FULL_RECORD, "expirationTime": "2030-01-01T10:00:00"})
    offset = parse_indicator({**FULL_RECORD, "expirationTime": "2030-01-01T12:00:00+02:00"})

    assert naive.expiration_time == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert offset.expiration_time == datetime(2030, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"indicatorValue": ""}, "indicatorValue"),
        ({"indicatorValue": 5}, "indicatorValue"),
        ({"indicatorType": "Registry"}, "indicatorType"),
        ({"action": "Nuke"}, "action"),
        ({"action": None}, "action"),
        ({"expirationTime": "next tuesday"}, "expirationTime"),
        ({"expirationTime": 17}, "expirationTime"),
        ({"generateAlert": "yes"}, "generateAlert"),
        ({"rbacGroupNames": "Workstations"}, "rbacGroupNames"),
        ({"title": ["a"]}, "title"),
    ],
)
def test_a_bad_field_is_rejected_naming_the_indicator_and_field(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(IndicatorError) as caught:
        parse_indicator({**FULL_RECORD, **change})

    assert caught.value.indicator_id == "995"
    assert reason in caught.value.reason


@pytest.mark.parametrize("bad_id", [None, True, "", "a\nb", "x" * 65, 1.5])
def test_a_record_without_a_usable_id_is_named_by_its_position(bad_id: object) -> None:
    parsed = parse_indicators([FULL_RECORD, {**FULL_RECORD, "id": bad_id}])

    assert [r.indicator_id for r in parsed.rejected] == ["#1"]
    assert "id" in parsed.rejected[0].reason


def test_bad_records_never_lose_the_rest_of_the_batch() -> None:
    records = [
        FULL_RECORD,
        "not a record",
        {**FULL_RECORD, "id": "2", "action": "Nuke"},
        None,
        {**FULL_RECORD, "id": "3", "indicatorValue": "ok.example"},
    ]

    parsed = parse_indicators(records)

    assert [i.id for i in parsed.indicators] == ["995", "3"]
    assert [(r.indicator_id, r.value) for r in parsed.rejected] == [
        ("#1", ""),
        ("2", "evil.example"),
        ("#3", ""),
    ]


@pytest.mark.parametrize("payload", [{"values": []}, {"value": {}}, "text", 3, None])
def test_a_payload_without_a_record_list_is_a_payload_error(payload: object) -> None:
    with pytest.raises(IndicatorPayloadError):
        parse_indicators(payload)


def test_expiry_is_judged_against_the_callers_clock() -> None:
    indicator = parse_indicator({**FULL_RECORD, "expirationTime": "2030-01-01T00:00:00Z"})
    expiry = datetime(2030, 1, 1, tzinfo=UTC)

    assert not indicator.is_expired(expiry - timedelta(seconds=1))
    assert indicator.is_expired(expiry)
    assert indicator.is_expired(expiry.astimezone(timezone(timedelta(hours=-5))))
    assert not parse_indicator({**FULL_RECORD, "expirationTime": None}).is_expired(expiry)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_indicator(FULL_RECORD).is_expired(datetime(2030, 1, 1))
