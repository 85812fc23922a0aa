"""The post-deployment scripts against a local Graph stand-in: exact roles, idempotent, honest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.infra_graph import (
    DEFENDER_APP_ID,
    GRAPH_APP_ID,
    TOKEN,
    GraphServer,
    running_graph_server,
)

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "scripts"
WANTED = {
    (DEFENDER_APP_ID, "Machine.Read.All"),
    (DEFENDER_APP_ID, "Ti.ReadWrite.All"),
    (DEFENDER_APP_ID, "AdvancedQuery.Read.All"),
    (DEFENDER_APP_ID, "Machine.ReadWrite.All"),
    (GRAPH_APP_ID, "Device.ReadWrite.All"),
    (GRAPH_APP_ID, "GroupMember.ReadWrite.All"),
    (GRAPH_APP_ID, "ThreatHunting.Read.All"),
}


@pytest.fixture
def graph_server() -> Iterator[GraphServer]:
    with running_graph_server() as server:
        yield server


def _run(
    script: str, server: GraphServer, *args: str, token: str = TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRAPH_ACCESS_TOKEN": token}
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--graph-url", server.base_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _held(server: GraphServer) -> set[tuple[str, str]]:
    state = server.state
    by_sp_id = {sp["id"]: app_id for app_id, sp in state.service_principals.items()}
    held = set()
    for assignment in state.assignments:
        app_id = by_sp_id[assignment["resourceId"]]
        roles = state.service_principals[app_id]["appRoles"]
        held.add((app_id, next(r["value"] for r in roles if r["id"] == assignment["appRoleId"])))
    return held


def test_grant_assigns_exactly_the_roles_then_changes_nothing(graph_server: GraphServer) -> None:
    identity = graph_server.state.identity_id

    first = _run("grant_api_permissions.py", graph_server, "--principal-id", identity)
    assert first.returncode == 0, first.stderr
    assert _held(graph_server) == WANTED
    assert first.stdout.count("assigned   ") == 7
    assert "assigned   WindowsDefenderATP Ti.ReadWrite.All" in first.stdout

    writes = len(graph_server.state.writes)
    second = _run("grant_api_permissions.py", graph_server, "--principal-id", identity)
    assert second.returncode == 0, second.stderr
    assert len(graph_server.state.writes) == writes
    assert second.stdout.count("unchanged  ") == 7
    assert "done: 0 assigned, 7 already held" in second.stdout
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


def test_extra_roles_are_reported_and_removed_only_when_asked(graph_server: GraphServer) -> None:
    state = graph_server.state
    extra = {
        "id": "extra-assignment",
        "principalId": state.identity_id,
        "resourceId": state.service_principals[DEFENDER_APP_ID]["id"],
        "appRoleId": state.role_id(DEFENDER_APP_ID, "Machine.Offboard"),
    }
    state.assignments.append(extra)

    kept = _run("grant_api_permissions.py", graph_server, "--principal-id", state.identity_id)
    assert "extra      WindowsDefenderATP Machine.Offboard" in kept.stdout
    assert (DEFENDER_APP_ID, "Machine.Offboard") in _held(graph_server)

    removed = _run(
        "grant_api_permissions.py",
        graph_server,
        "--principal-id",
        state.identity_id,
        "--remove-others",
    )
    assert removed.returncode == 0, removed.stderr
    assert "removed    WindowsDefenderATP Machine.Offboard" in removed.stdout
    assert _held(graph_server) == WANTED


def test_grant_fails_clearly(graph_server: GraphServer) -> None:
    state = graph_server.state

    unknown = _run("grant_api_permissions.py", graph_server, "--principal-id", "no-such-id")
    assert unknown.returncode == 1
    assert "GET /v1.0/servicePrincipals/no-such-id answered 404" in unknown.stderr

    bad_token = _run(
        "grant_api_permissions.py", graph_server, "--principal-id", state.identity_id, token="x"
    )
    assert bad_token.returncode == 1
    assert "401 InvalidAuthenticationToken" in bad_token.stderr

    graph_server.fail_next_post = 403
    denied = _run("grant_api_permissions.py", graph_server, "--principal-id", state.identity_id)
    assert denied.returncode == 1
    assert "403 Authorization_RequestDenied" in denied.stderr

    del state.service_principals[DEFENDER_APP_ID]
    missing = _run("grant_api_permissions.py", graph_server, "--principal-id", state.identity_id)
    assert missing.returncode == 1
    assert "Defender for Endpoint is not provisioned" in missing.stderr


def test_grant_refuses_plain_http_to_a_remote_host() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "grant_api_permissions.py"),
            *("--principal-id", "x", "--graph-url", "http://graph.example.com"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "GRAPH_ACCESS_TOKEN": TOKEN},
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "must be https" in result.stderr


def test_edr_policy_creates_group_policy_and_assignment_once(graph_server: GraphServer) -> None:
    state = graph_server.state

    first = _run("edr_block_mode_policy.py", graph_server)
    assert first.returncode == 0, first.stderr
    [group] = state.groups
    [policy] = state.policies
    instance = policy["settings"][0]["settingInstance"]
    assert instance["settingDefinitionId"] == (
        "device_vendor_msft_defender_configuration_passiveremediation"
    )
    assert [v["value"] for v in instance["choiceSettingCollectionValue"]] == [
        "device_vendor_msft_defender_configuration_passiveremediation_1"
    ]
    assert group["securityEnabled"] is True
    assert group["mailEnabled"] is False
    assert [a["target"]["groupId"] for a in state.policy_assignments[policy["id"]]] == [group["id"]]
    assert f"EDR_BLOCK_GROUP_ID={group['id']}" in first.stdout

    writes = len(state.writes)
    second = _run("edr_block_mode_policy.py", graph_server)
    assert second.returncode == 0, second.stderr
    assert len(state.writes) == writes
    assert second.stdout.count("unchanged  ") == 3


def test_edr_policy_keeps_existing_assignments_and_refuses_a_foreign_policy(
    graph_server: GraphServer,
) -> None:
    state = graph_server.state
    assert _run("edr_block_mode_policy.py", graph_server).returncode == 0
    [policy] = state.policies
    other = {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "other-group"}
    state.policy_assignments[policy["id"]] = [{"target": other}]

    again = _run("edr_block_mode_policy.py", graph_server)
    groups = {a["target"]["groupId"] for a in state.policy_assignments[policy["id"]]}
    assert again.returncode == 0, again.stderr
    assert groups == {"other-group", state.groups[0]["id"]}

    policy["settings"][0]["settingInstance"]["choiceSettingCollectionValue"] = []
    foreign = _run("edr_block_mode_policy.py", graph_server)
    assert foreign.returncode == 1
    assert "does not set EDR in block mode" in foreign.stderr


def test_group_name_with_a_quote_is_escaped_in_the_filter(graph_server: GraphServer) -> None:
    name = "O'Brien's EDR group"

    first = _run("edr_block_mode_policy.py", graph_server, "--group-name", name)
    second = _run("edr_block_mode_policy.py", graph_server, "--group-name", name)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert [g["displayName"] for g in graph_server.state.groups] == [name]
