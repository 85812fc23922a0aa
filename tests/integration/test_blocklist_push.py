"""Push adapters and the ``push`` command against ZIA and Netskope stand-ins served over real HTTP.

The servers (tests/support/push_servers.py) run on free 127.0.0.1 ports and keep their state in
memory, so each test can assert what the proxy would enforce after the push.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.act.blocklist.push import (
    NetskopeSettings,
    NetskopeTarget,
    PushAuthError,
    ZscalerSettings,
    ZscalerTarget,
)
from tests.support.push_servers import Fault, NetskopeFake, ZiaFake, serve

pytestmark = pytest.mark.integration


@pytest.fixture
def zia() -> Iterator[tuple[ZiaFake, str]]:
    fake = ZiaFake()
    fake.add_category("CUSTOM_07", "SOAR Block", ["manual.example"])
    with serve(fake) as base_url:
        yield fake, base_url


@pytest.fixture
def netskope() -> Iterator[tuple[NetskopeFake, str]]:
    fake = NetskopeFake()
    with serve(fake) as base_url:
        yield fake, base_url


def zscaler(fake: ZiaFake, base_url: str) -> ZscalerTarget:
    settings = ZscalerSettings(
        base_url=base_url,
        category_id="CUSTOM_07",
        token_url=f"{base_url}/oauth2/v1/token",
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        write_interval=0.0,
    )
    return ZscalerTarget.from_settings(settings)


def netskope_target(fake: NetskopeFake, base_url: str, token: str | None = None) -> NetskopeTarget:
    settings = NetskopeSettings(
        base_url=base_url, list_name="SOAR Block", api_token=token or fake.token, deploy=True
    )
    return NetskopeTarget.from_settings(settings)


def test_zscaler_full_then_incremental_then_unchanged(zia: tuple[ZiaFake, str]) -> None:
    fake, base_url = zia
    target = zscaler(fake, base_url)
    try:
        first = target.push([".evil.example", "phish.example/login"])
        assert fake.enforced("CUSTOM_07") == [".evil.example", "phish.example/login"]
        assert first.removed == ("manual.example",)
        assert first.activated

        fake.add_category("CUSTOM_07", "SOAR Block", [*first.entries, "manual.example"])
        second = target.push([".evil.example", ".new.example"], previous=first.entries)
        assert fake.enforced("CUSTOM_07") == [".evil.example", "manual.example", ".new.example"]
        assert (second.added, second.removed) == ((".new.example",), ("phish.example/login",))

        writes_before = len(fake.writes())
        third = target.push([".evil.example", ".new.example"], previous=second.entries)
        assert len(fake.writes()) == writes_before
        assert not third.changed
        assert not third.activated
    finally:
        target.close()


def test_netskope_create_deploy_delta_and_quiet_when_unchanged(
    netskope: tuple[NetskopeFake, str],
) -> None:
    fake, base_url = netskope
    target = netskope_target(fake, base_url)
    try:
        first = target.push(["a.example", "*.a.example", "b.example"])
        created = fake.by_name("SOAR Block")
        assert created is not None
        assert created["deployed"] == ["a.example", "*.a.example", "b.example"]

        second = target.push(["a.example", "*.a.example", "c.example"], previous=first.entries)
        item = fake.by_name("SOAR Block")
        assert item is not None
        assert item["deployed"] == ["a.example", "*.a.example", "c.example"]
        assert not item["pending"]
        assert [r.path.rsplit("/", 1)[-1] for r in fake.writes()[-3:]] == [
            "append",
            "remove",
            "deploy",
        ]

        deploys = fake.deploys
        target.push(["a.example", "*.a.example", "c.example"], previous=second.entries)
        assert fake.deploys == deploys
    finally:
        target.close()


def test_429_is_retried_after_the_wait_each_service_asks_for(
    zia: tuple[ZiaFake, str], netskope: tuple[NetskopeFake, str]
) -> None:
    zia_fake, zia_url = zia
    ns_fake, ns_url = netskope
    zia_fake.fault_next(2, Fault(429, {"message": "Rate Limit", "Retry-After": "0 seconds"}))
    ns_fake.fault_next(2, Fault(429, {"status": "error"}, {"Retry-After": "0"}))

    with zscaler(zia_fake, zia_url) as zscaler_target:
        zscaler_target.push([".a.example"])
    with netskope_target(ns_fake, ns_url) as target:
        target.push(["a.example"])

    assert zia_fake.enforced("CUSTOM_07") == [".a.example"]
    assert ns_fake.by_name("SOAR Block")["deployed"] == ["a.example"]  # type: ignore[index]


def test_401_surfaces_as_a_typed_error_and_nothing_is_written(
    netskope: tuple[NetskopeFake, str],
) -> None:
    fake, base_url = netskope

    with (
        netskope_target(fake, base_url, token="not-the-token") as target,
        pytest.raises(PushAuthError) as caught,
    ):
        target.push(["a.example"])

    assert caught.value.status == 401
    assert caught.value.target == "netskope"
    assert fake.writes() == []


def indicators_file(tmp_path: Path, values: list[tuple[str, str]]) -> Path:
    records = [
        {"id": str(n), "indicatorValue": value, "indicatorType": kind, "action": "Block"}
        for n, (value, kind) in enumerate(values, start=1)
    ]
    path = tmp_path / "indicators.json"
    path.write_text(json.dumps({"value": records}), encoding="utf-8")
    return path


def test_cli_pushes_to_zscaler_and_then_sends_only_the_change(
    zia: tuple[ZiaFake, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, base_url = zia
    monkeypatch.setenv("ZSCALER_BASE_URL", base_url)
    monkeypatch.setenv("ZSCALER_TOKEN_URL", f"{base_url}/oauth2/v1/token")
    monkeypatch.setenv("ZSCALER_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("ZSCALER_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("ZSCALER_CATEGORY_ID", "CUSTOM_07")
    monkeypatch.setenv("ZSCALER_WRITE_INTERVAL", "0")
    state = tmp_path / "state.json"

    first_input = indicators_file(
        tmp_path, [("evil.example", "DomainName"), ("evil\nexample.com", "DomainName")]
    )
    status = cli.main(
        ["push", "--indicators", str(first_input), "--target", "zscaler", "--state", str(state)]
    )
    first = capsys.readouterr()
    assert status == 1  # the malformed indicator was rejected, the rest pushed
    assert "rejected: indicator 2" in first.err
    assert json.loads(first.out)["mode"] == "full"
    assert fake.enforced("CUSTOM_07") == [".evil.example"]
    assert json.loads(state.read_text())["entries"] == [".evil.example"]

    second_input = indicators_file(
        tmp_path, [("evil.example", "DomainName"), ("https://phish.example/x", "Url")]
    )
    status = cli.main(
        ["push", "--indicators", str(second_input), "--target", "zscaler", "--state", str(state)]
    )
    second = capsys.readouterr()
    assert status == 0
    summary = json.loads(second.out)
    assert (summary["mode"], summary["added"], summary["removed"]) == ("incremental", 1, 0)
    assert fake.enforced("CUSTOM_07") == [".evil.example", "phish.example/x"]
    assert fake.client_secret not in first.out + first.err + second.out + second.err
    assert len(fake.issued) == 2
    assert all(token not in first.out + second.out + second.err for token in fake.issued)


def test_cli_dry_run_needs_no_credentials_and_sends_nothing(
    netskope: tuple[NetskopeFake, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, _ = netskope
    for key in ("NETSKOPE_BASE_URL", "NETSKOPE_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETSKOPE_LIST_NAME", "SOAR Block")
    source = indicators_file(tmp_path, [("evil.example", "DomainName")])

    status = cli.main(["push", "--indicators", str(source), "--target", "netskope", "--dry-run"])

    out = capsys.readouterr().out
    assert status == 0
    plan = json.loads(out)
    assert plan["dryRun"] is True
    assert plan["requests"][0]["urls"] == ["evil.example", "*.evil.example"]
    assert fake.requests == []


def test_cli_reports_a_missing_setting_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ZSCALER_CATEGORY_ID", raising=False)
    source = indicators_file(tmp_path, [("evil.example", "DomainName")])

    status = cli.main(["push", "--indicators", str(source), "--target", "zscaler"])

    assert status == 2
    assert "ZSCALER_CATEGORY_ID" in capsys.readouterr().err
