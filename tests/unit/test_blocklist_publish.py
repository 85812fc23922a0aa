"""Publishing: content hash, version, diff against the previous copy, ETag matching."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.act.blocklist import Diff, Rendered, build_blocklists, etag_matches, publish, render
from pipeline.indicators import Indicator

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def rpz_for(names: list[str], now: datetime = NOW) -> Rendered:
    indicators = [Indicator(str(n), name, "DomainName", "Block") for n, name in enumerate(names)]
    return render(build_blocklists(indicators, now), "rpz")


def test_a_first_publication_is_version_one_with_everything_added() -> None:
    rendered = rpz_for(["a.example", "b.example"])

    published = publish(rendered)

    assert published.version == 1
    assert published.diff == Diff(added=4, removed=0)  # two triggers per domain
    assert published.sha256 == hashlib.sha256(published.content.encode()).hexdigest()
    assert published.etag == f'"{published.sha256}"'


def test_unchanged_entries_keep_version_and_content_even_with_a_new_serial() -> None:
    first = publish(rpz_for(["a.example"]))

    again = publish(rpz_for(["a.example"], NOW + timedelta(hours=1)), first)

    assert (again.version, again.content, again.etag) == (1, first.content, first.etag)
    assert not again.changed


def test_a_change_bumps_the_version_and_counts_added_and_removed() -> None:
    first = publish(rpz_for(["a.example", "b.example"]))

    second = publish(rpz_for(["b.example", "c.example", "d.example"]), first)

    assert second.version == 2
    assert second.diff == Diff(added=4, removed=2)
    assert second.etag != first.etag
    assert second.as_dict()["diff"] == {"added": 4, "removed": 2}


def test_a_previous_copy_of_another_format_is_refused() -> None:
    indicators = [Indicator("1", "a.example", "DomainName", "Block")]
    lists = build_blocklists(indicators, NOW)
    previous = publish(render(lists, "hosts"))

    with pytest.raises(ValueError, match="hosts/block"):
        publish(render(lists, "rpz"), previous)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ("*", True),
        ('"abd"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match_is_compared_weakly(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches
