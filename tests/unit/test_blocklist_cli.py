"""``python -m pipeline blocklist``: files in, a list out, every left-out indicator on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main

RECORDS: list[dict[str, object]] = [
    {"id": "1", "indicatorValue": "evil.example", "indicatorType": "DomainName", "action": "Block"},
    {
        "id": "2",
        "indicatorValue": "https://site.example/x",
        "indicatorType": "Url",
        "action": "Block",
    },
    {"id": "3", "indicatorValue": "app.example", "indicatorType": "DomainName", "action": "Warn"},
    {
        "id": "4",
        "indicatorValue": "old.example",
        "indicatorType": "DomainName",
        "action": "Block",
        "expirationTime": "2026-01-01T00:00:00Z",
    },
]
HOSTILE: dict[str, object] = {
    "id": "66",
    "indicatorValue": "x.example\nhttp_access allow all",
    "indicatorType": "DomainName",
    "action": "Block",
}


def payload(tmp_path: Path, records: list[dict[str, object]]) -> Path:
    path = tmp_path / "indicators.json"
    path.write_text(json.dumps({"value": records}))
    return path


def run(*args: str) -> int:
    return main(["blocklist", *args])


def test_a_clean_input_writes_the_list_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "block.txt"

    status = run(
        "--indicators", str(payload(tmp_path, RECORDS)), "--format", "squid-domains",
        "--out", str(out), "--now", "2026-06-01T00:00:00Z",
    )  # fmt: skip

    assert status == 0
    assert out.read_text().splitlines()[1:] == [".evil.example"]
    err = capsys.readouterr().err
    assert "not representable in squid-domains: indicator 2 'site.example/x'" in err
    assert "skipped: indicator 4 'old.example': expired" in err
    assert list(tmp_path.glob(".block.txt.*")) == []  # no temporary file left behind


def test_a_rejected_indicator_is_reported_and_the_rest_still_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run("--indicators", str(payload(tmp_path, [*RECORDS, HOSTILE])), "--format", "hosts")

    captured = capsys.readouterr()
    assert status == 1
    assert "0.0.0.0 evil.example" in captured.out
    assert "http_access" not in captured.out
    assert "rejected: indicator 66 'x.example\\nhttp_access allow all': " in captured.err
    assert len([line for line in captured.err.splitlines() if "66" in line]) == 1


def test_the_warn_list_and_the_clock_are_chosen_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(payload(tmp_path, RECORDS))

    assert run("--indicators", source, "--format", "dnsmasq", "--list", "warn") == 0
    assert "server=/app.example/" in capsys.readouterr().out

    assert run("--indicators", source, "--format", "edl-urls", "--now", "2025-12-31") == 0
    assert "old.example/" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("content", ["{not json", '{"items": []}', "[1, 2", "\udcff"])
def test_unreadable_input_exits_two(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.json"
    source.write_bytes(content.encode("utf-8", "surrogateescape"))

    assert run("--indicators", str(source), "--format", "rpz") == 2
    assert "cannot read indicators" in capsys.readouterr().err


def test_a_missing_file_exits_two(tmp_path: Path) -> None:
    assert run("--indicators", str(tmp_path / "absent.json"), "--format", "rpz") == 2


def test_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        run("--indicators", str(payload(tmp_path, RECORDS)), "--format", "bind9")

    assert caught.value.code == 2
