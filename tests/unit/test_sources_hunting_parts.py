"""Splitting the TVM hunting question by device-id prefix: the parts are disjoint and complete."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.lab.server import _tvm_query_part
from pipeline.sources.hunting import (
    MAX_SPLIT_DEPTH,
    TVM_INFO_GATHERING_QUERY,
    DevicePart,
    tvm_info_gathering_query,
)

# Real ids are 40 hex digits in either case; odd ones (empty, short, non-hex) must land somewhere.
device_ids = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40),
    st.text(max_size=6),
)


def _leaves(part: DevicePart) -> list[DevicePart]:
    if not part.splittable:
        return [part]
    return [leaf for child in part.split() for leaf in _leaves(child)]


ALL_LEAVES = _leaves(DevicePart())


def test_the_whole_question_is_the_unsplit_query() -> None:
    assert tvm_info_gathering_query() == TVM_INFO_GATHERING_QUERY
    assert tvm_info_gathering_query(DevicePart()) == TVM_INFO_GATHERING_QUERY
    assert len(ALL_LEAVES) == 16 * 17 + 1  # 256 two-digit prefixes, 16 + 1 rest parts


@given(device_ids)
def test_every_device_id_is_in_exactly_one_part_at_every_depth(device_id: str) -> None:
    assert DevicePart().matches(device_id)
    first = [p for p in DevicePart().split() if p.matches(device_id)]
    assert len(first) == 1
    assert sum(1 for leaf in ALL_LEAVES if leaf.matches(device_id)) == 1


@given(device_ids)
def test_the_kql_filter_says_what_matches_does(device_id: str) -> None:
    # Read the filter back as the lab does and compare with KQL's semantics written out here:
    # startswith ignores case; `matches regex` is an unanchored-at-end search from the start.
    for part in DevicePart().split() + DevicePart("a").split():
        text = part.kql_filter()
        prefix = re.search(r'startswith "([0-9a-f]*)"', text)
        regex = re.search(r'matches regex "([^"]*)"', text)
        expected = True
        if prefix:
            expected = device_id.lower().startswith(prefix.group(1))
        if regex:
            expected = expected and re.search(regex.group(1), device_id) is None
        assert part.matches(device_id) == expected, (part, text)


def test_parts_refuse_what_the_query_cannot_say() -> None:
    with pytest.raises(ValueError, match="hex"):
        DevicePart('a" or 1==1 or DeviceId startswith "')
    with pytest.raises(ValueError, match="hex"):
        DevicePart("A")  # lower case only: one spelling per part
    with pytest.raises(ValueError, match="cannot be split"):
        DevicePart("ab").split()
    with pytest.raises(ValueError, match="cannot be split"):
        DevicePart("", rest=True).split()
    assert len("ab") == MAX_SPLIT_DEPTH


@pytest.mark.parametrize("part", [DevicePart(), *DevicePart().split(), *DevicePart("7").split()])
def test_the_lab_reads_back_exactly_the_part_asked_for(part: DevicePart) -> None:
    assert _tvm_query_part(tvm_info_gathering_query(part)) == part


@pytest.mark.parametrize(
    "query",
    [
        "DeviceTvmInfoGathering | take 10",
        tvm_info_gathering_query(DevicePart("a")).replace('"a"', '"A"'),
        tvm_info_gathering_query(DevicePart("a")) + " | take 1",
        'DeviceTvmInfoGathering | where DeviceId startswith "a" or true'
        + TVM_INFO_GATHERING_QUERY.removeprefix("DeviceTvmInfoGathering"),
    ],
)
def test_the_lab_refuses_any_other_query(query: str) -> None:
    assert _tvm_query_part(query) is None
