"""The generated lists loaded into real squid, unbound and dnsmasq on 127.0.0.1.

Each daemon starts once per module. The lists are produced by the real CLI from a
``GET /api/indicators`` response; the daemons then show blocked names refused (403 / NXDOMAIN),
allowed names and Allow-exempted subdomains passing, and a changed list taking effect on reload.
Names live under the reserved ``.test`` domain and resolve (through a DNS origin) to 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.act.blocklist import Blocklists, RenderOptions, build_blocklists, render
from pipeline.cli import main
from pipeline.indicators import parse_indicators
from tests.support.daemons import (
    DNSMASQ,
    SQUID,
    UNBOUND,
    Daemon,
    DaemonError,
    dnsmasq_test,
    fetch_through,
    hostile_batches,
    http_origin,
    installed,
    reload_dnsmasq,
    resolve,
    shared_tempdir,
    squid_config,
    squid_parse,
    squid_reconfigure,
    start_dns_origin,
    start_dnsmasq,
    start_squid,
    start_unbound,
    unbound_checkconf,
    unbound_control,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not installed(SQUID, UNBOUND, DNSMASQ), reason="squid, unbound and dnsmasq are needed"
    ),
]

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def indicator(
    number: int, value: str, kind: str, action: str, **extra: object
) -> dict[str, object]:
    return {
        "id": str(number),
        "indicatorValue": value,
        "indicatorType": kind,
        "action": action,
        **extra,
    }


INDICATORS = [
    indicator(1, "Evil.Test.", "DomainName", "Block"),
    indicator(2, "ok.evil.test", "DomainName", "Allowed"),
    indicator(3, "www.evil.test", "DomainName", "BlockAndRemediate"),  # covered by 1
    indicator(4, "http://host.test/", "Url", "AlertAndBlock"),  # one host, not its subdomains
    indicator(5, "https://site.test/login?next=x", "Url", "Block"),  # a path: DNS cannot
    indicator(6, "old.test", "DomainName", "Block", expirationTime="2026-01-01T00:00:00Z"),
    indicator(7, "monitored.test", "DomainName", "Warn"),
    indicator(8, "audited.test", "DomainName", "Audit", generateAlert=True),
    indicator(9, "bad.test\nhttp_access allow all", "DomainName", "Block"),  # rejected
]
BLOCKED = ["evil.test", "www.evil.test", "deep.www.evil.test"]
PASSING = ["ok.evil.test", "a.ok.evil.test", "good.test", "old.test", "monitored.test"]
# After the change: evil.test is no longer blocked, good.test is.
CHANGED = [indicator(20, "good.test", "DomainName", "Block")]


def write_payload(directory: Path, name: str, records: list[dict[str, object]]) -> Path:
    path = directory / name
    path.write_text(json.dumps({"@odata.context": "test", "value": records}))
    return path


def render_with_cli(
    payload: Path, fmt: str, out: Path, *, list_name: str = "block", now: datetime = NOW
) -> int:
    status = main(
        [
            "blocklist",
            "--indicators",
            str(payload),
            "--format",
            fmt,
            "--list",
            list_name,
            "--out",
            str(out),
            "--now",
            now.isoformat(),
        ]
    )
    out.chmod(0o644)
    return status


def eventually(probe: Callable[[], object], expected: object, attempts: int = 100) -> object:
    """Poll ``probe`` until it returns ``expected`` (a reload is asynchronous); return the last."""
    result = probe()
    for _ in range(attempts):
        if result == expected:
            break
        time.sleep(0.05)
        result = probe()
    return result


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = shared_tempdir("blocklist-it-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def payloads(workdir: Path) -> dict[str, Path]:
    return {
        "initial": write_payload(workdir, "initial.json", INDICATORS),
        "changed": write_payload(workdir, "changed.json", CHANGED),
    }


@pytest.fixture(scope="module")
def dns_origin() -> Iterator[Daemon]:
    origin = start_dns_origin()
    yield origin
    origin.stop()


@pytest.fixture(scope="module")
def squid(workdir: Path, payloads: dict[str, Path]) -> Iterator[tuple[Daemon, int]]:
    block, allow = workdir / "squid-block.txt", workdir / "squid-allow.txt"
    assert render_with_cli(payloads["initial"], "squid-domains", block) == 1  # one rejected
    assert render_with_cli(payloads["initial"], "squid-domains", allow, list_name="allow") == 1

    hosts = [*BLOCKED, *PASSING, "host.test", "sub.host.test", "site.test"]
    with http_origin() as origin_port:
        daemon = start_squid(block, allow, hosts)
        yield daemon, origin_port
        daemon.stop()


@pytest.fixture(scope="module")
def unbound_zones(workdir: Path, payloads: dict[str, Path], dns_origin: Daemon) -> Iterator[Daemon]:
    include = workdir / "unbound-block.conf"
    render_with_cli(payloads["initial"], "unbound", include)
    daemon = start_unbound(dns_origin.port, include=include)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def unbound_rpz(workdir: Path, payloads: dict[str, Path], dns_origin: Daemon) -> Iterator[Daemon]:
    zone = workdir / "block.rpz"
    render_with_cli(payloads["initial"], "rpz", zone)
    daemon = start_unbound(dns_origin.port, rpz=zone)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def dnsmasq(workdir: Path, payloads: dict[str, Path], dns_origin: Daemon) -> Iterator[Daemon]:
    servers = workdir / "dnsmasq-block.conf"
    render_with_cli(payloads["initial"], "dnsmasq", servers)
    daemon = start_dnsmasq(servers, dns_origin.port)
    yield daemon
    daemon.stop()


# --- squid ---------------------------------------------------------------------------------


def test_squid_refuses_blocked_names_and_the_blocked_host(squid: tuple[Daemon, int]) -> None:
    daemon, origin = squid

    for name in [*BLOCKED, "host.test"]:
        assert fetch_through(daemon.port, f"http://{name}:{origin}/") == 403, name


def test_squid_passes_allowed_expired_warned_and_exempted_names(squid: tuple[Daemon, int]) -> None:
    daemon, origin = squid

    # sub.host.test: the URL indicator named host.test only. site.test: its indicator had a
    # path, which a domain list cannot express, so the site is not blocked wholesale.
    for name in [*PASSING, "sub.host.test", "site.test"]:
        assert fetch_through(daemon.port, f"http://{name}:{origin}/") == 200, name


def test_squid_picks_up_a_changed_list_on_reconfigure(
    squid: tuple[Daemon, int], workdir: Path, payloads: dict[str, Path]
) -> None:
    daemon, origin = squid
    block = workdir / "squid-block.txt"

    def status(name: str) -> Callable[[], int]:
        return lambda: fetch_through(daemon.port, f"http://{name}:{origin}/")

    try:
        render_with_cli(payloads["changed"], "squid-domains", block)
        squid_reconfigure(daemon)
        assert eventually(status("good.test"), 403) == 403
        assert eventually(status("evil.test"), 200) == 200
    finally:
        render_with_cli(payloads["initial"], "squid-domains", block)
        squid_reconfigure(daemon)
        assert eventually(status("evil.test"), 403) == 403


# --- unbound local zones -------------------------------------------------------------------


def test_unbound_local_zones_answer_nxdomain_for_blocked_names(unbound_zones: Daemon) -> None:
    for name in BLOCKED:
        assert resolve(unbound_zones.port, name)[0] == "NXDOMAIN", name


def test_unbound_local_zones_resolve_allowed_and_exempted_names(unbound_zones: Daemon) -> None:
    # host.test is a one-host URL indicator, which local zones cannot express without also
    # blocking its subdomains; the renderer reports it instead of widening it.
    for name in [*PASSING, "host.test", "site.test"]:
        assert resolve(unbound_zones.port, name) == ("NOERROR", 1), name


def test_unbound_local_zones_pick_up_a_changed_list_on_reload(
    unbound_zones: Daemon, workdir: Path, payloads: dict[str, Path]
) -> None:
    include = workdir / "unbound-block.conf"
    try:
        render_with_cli(payloads["changed"], "unbound", include)
        assert unbound_control(unbound_zones, "reload").strip() == "ok"
        assert eventually(lambda: resolve(unbound_zones.port, "good.test")[0], "NXDOMAIN") == (
            "NXDOMAIN"
        )
        assert resolve(unbound_zones.port, "evil.test")[0] == "NOERROR"
    finally:
        render_with_cli(payloads["initial"], "unbound", include)
        unbound_control(unbound_zones, "reload")


# --- unbound RPZ ---------------------------------------------------------------------------


def test_rpz_answers_nxdomain_for_blocked_names_and_the_exact_host(unbound_rpz: Daemon) -> None:
    for name in [*BLOCKED, "host.test"]:
        assert resolve(unbound_rpz.port, name)[0] == "NXDOMAIN", name


def test_rpz_passes_allowed_names_through_passthru(unbound_rpz: Daemon) -> None:
    for name in [*PASSING, "sub.host.test", "site.test"]:
        assert resolve(unbound_rpz.port, name) == ("NOERROR", 1), name


def test_rpz_picks_up_a_changed_zone_on_auth_zone_reload(
    unbound_rpz: Daemon, workdir: Path, payloads: dict[str, Path]
) -> None:
    zone = workdir / "block.rpz"
    later = NOW + timedelta(hours=1)  # a later build time gives a higher SOA serial
    try:
        render_with_cli(payloads["changed"], "rpz", zone, now=later)
        assert unbound_control(unbound_rpz, "auth_zone_reload", "rpz.test").strip() == "ok"
        serial = int(later.timestamp())
        assert f"serial {serial}" in unbound_control(unbound_rpz, "list_auth_zones")
        assert resolve(unbound_rpz.port, "good.test")[0] == "NXDOMAIN"
        assert resolve(unbound_rpz.port, "evil.test")[0] == "NOERROR"
    finally:
        render_with_cli(payloads["initial"], "rpz", zone, now=later + timedelta(hours=1))
        unbound_control(unbound_rpz, "auth_zone_reload", "rpz.test")


# --- dnsmasq -------------------------------------------------------------------------------


def test_dnsmasq_answers_nxdomain_for_blocked_names(dnsmasq: Daemon) -> None:
    for name in BLOCKED:
        assert resolve(dnsmasq.port, name)[0] == "NXDOMAIN", name


def test_dnsmasq_forwards_allowed_and_exempted_names(dnsmasq: Daemon) -> None:
    for name in [*PASSING, "host.test", "site.test"]:
        assert resolve(dnsmasq.port, name) == ("NOERROR", 1), name


def test_dnsmasq_picks_up_a_changed_list_on_sighup(
    dnsmasq: Daemon, workdir: Path, payloads: dict[str, Path]
) -> None:
    servers = workdir / "dnsmasq-block.conf"
    try:
        render_with_cli(payloads["changed"], "dnsmasq", servers)
        reload_dnsmasq(dnsmasq)
        assert eventually(lambda: resolve(dnsmasq.port, "good.test")[0], "NXDOMAIN") == ("NXDOMAIN")
        assert resolve(dnsmasq.port, "evil.test")[0] == "NOERROR"
    finally:
        render_with_cli(payloads["initial"], "dnsmasq", servers)
        reload_dnsmasq(dnsmasq)


# --- hostile input never yields a file the daemons refuse ----------------------------------


@pytest.fixture(scope="module")
def checker(workdir: Path, dns_origin: Daemon) -> Iterator[tuple[Path, Daemon]]:
    """A directory with a squid config pointing at fuzz outputs, and an unbound for RPZ loads."""
    fuzz = workdir / "fuzz"
    fuzz.mkdir()
    fuzz.chmod(0o777)
    for name in ("block.txt", "allow.txt", "ips.txt", "block.rpz"):
        (fuzz / name).write_text("")
    (fuzz / "squid.conf").write_text(
        squid_config(fuzz, 3128, fuzz / "block.txt", fuzz / "allow.txt")
        + f'acl mde_ips dst "{fuzz / "ips.txt"}"\nhttp_access deny mde_ips\n'
    )
    (fuzz / "block.rpz").write_text(render(_lists([]), "rpz").content)
    rpz_daemon = start_unbound(dns_origin.port, rpz=fuzz / "block.rpz")
    yield fuzz, rpz_daemon
    rpz_daemon.stop()


def _lists(records: list[object]) -> Blocklists:
    parsed = parse_indicators(records)
    return build_blocklists(parsed.indicators, NOW, parsed.rejected)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=hostile_batches())
def test_hostile_indicators_never_produce_a_file_the_daemons_refuse(
    records: list[object], checker: tuple[Path, Daemon]
) -> None:
    fuzz, rpz_daemon = checker
    # The fixed indicators ride along so that every file also holds exemptions and merges.
    lists = _lists([*records, *INDICATORS])
    serial = rpz_daemon.extra.setdefault("serial", int(NOW.timestamp()))
    assert isinstance(serial, int)
    rpz_daemon.extra["serial"] = serial + 1

    (fuzz / "block.txt").write_text(render(lists, "squid-domains").content)
    (fuzz / "allow.txt").write_text(render(lists, "squid-domains", "allow").content)
    (fuzz / "ips.txt").write_text(render(lists, "squid-ips").content)
    unbound_file = fuzz / "unbound.conf"
    unbound_file.write_text(
        'server:\n  username: ""\n  chroot: ""\n' + f'include: "{fuzz / "zones.conf"}"\n'
    )
    (fuzz / "zones.conf").write_text(render(lists, "unbound").content)
    (fuzz / "servers.conf").write_text(render(lists, "dnsmasq").content)
    (fuzz / "block.rpz").write_text(
        render(lists, "rpz", options=RenderOptions(rpz_serial=serial + 1)).content
    )

    parsed_squid = squid_parse(fuzz / "squid.conf")
    assert parsed_squid.returncode == 0, parsed_squid.stderr
    assert "WARNING" not in parsed_squid.stderr, parsed_squid.stderr
    checked = unbound_checkconf(unbound_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = dnsmasq_test(fuzz / "servers.conf")
    assert tested.returncode == 0, tested.stderr
    try:
        reloaded = unbound_control(rpz_daemon, "auth_zone_reload", "rpz.test")
    except DaemonError as error:
        pytest.fail(f"unbound refused the RPZ zone: {error}\n{rpz_daemon.log_tail()}")
    assert reloaded.strip() == "ok"
