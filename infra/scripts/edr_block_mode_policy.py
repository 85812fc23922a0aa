#!/usr/bin/env python3
"""Optional: the Intune policy that turns on EDR in block mode, and the group it targets.

The pipeline remediates a passive-mode device by adding it to one Entra security group; an
Intune settings-catalog policy assigned to that group sets the Defender CSP
Configuration/PassiveRemediation to "EDR in block mode". Bicep cannot create Intune policies, so
this script creates the group and the policy once, assigns the policy to the group, and prints
the group id for the deployment parameter edrBlockModeGroupId (azd: EDR_BLOCK_GROUP_ID).
Running it again changes nothing. An existing policy of the same name is never modified: if its
settings differ the script says so and exits 1.

    python infra/scripts/edr_block_mode_policy.py

Needs an administrator with Group.ReadWrite.All and DeviceManagementConfiguration.ReadWrite.All
(e.g. Intune Administrator plus Groups Administrator) and an Intune licence. The policy uses the
Graph beta API, as Intune's configuration policies are only there. Settings-catalog policies
reach Intune-enrolled devices only. https://learn.microsoft.com/defender-endpoint/edr-in-block-mode
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from _graph import DEFAULT_GRAPH_URL, Graph, GraphError, graph_token, odata_string, query_string

SETTING_ID = "device_vendor_msft_defender_configuration_passiveremediation"
# PassiveRemediation is a set of flags; value _1 is "EDR in block mode" (sense auto-remediation).
EDR_BLOCK_VALUE = "device_vendor_msft_defender_configuration_passiveremediation_1"


def policy_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": "EDR in block mode for devices whose Defender Antivirus is passive. "
        "Managed by the Defender coverage-gap pipeline.",
        "platforms": "windows10",
        "technologies": "mdm",
        "roleScopeTagIds": ["0"],
        "settings": [
            {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationSetting",
                "settingInstance": {
                    "@odata.type": "#microsoft.graph."
                    "deviceManagementConfigurationChoiceSettingCollectionInstance",
                    "settingDefinitionId": SETTING_ID,
                    "choiceSettingCollectionValue": [
                        {
                            "@odata.type": "#microsoft.graph."
                            "deviceManagementConfigurationChoiceSettingValue",
                            "value": EDR_BLOCK_VALUE,
                            "children": [],
                        }
                    ],
                },
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--group-name", default="MDE coverage pipeline - EDR in block mode")
    parser.add_argument("--policy-name", default="MDE coverage pipeline - EDR in block mode")
    parser.add_argument("--graph-url", default=DEFAULT_GRAPH_URL, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    try:
        graph = Graph(args.graph_url, graph_token())
    except ValueError as error:
        parser.error(str(error))
    try:
        group_id = ensure_group(graph, args.group_name)
        policy_id = ensure_policy(graph, args.policy_name)
        ensure_assignment(graph, policy_id, group_id)
    except (GraphError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"EDR_BLOCK_GROUP_ID={group_id}")
    return 0


def ensure_group(graph: Graph, name: str) -> str:
    filter_ = f"displayName eq {odata_string(name)}"
    path = "/v1.0/groups" + query_string({"$filter": filter_, "$select": "id,displayName"})
    groups = graph.get_all(path)
    if len(groups) > 1:
        raise LookupError(f"{len(groups)} groups are named {name!r}; rename or pass --group-name")
    if groups:
        print(f"unchanged  group {name} ({groups[0]['id']})")
        return str(groups[0]["id"])

    nickname = re.sub(r"[^A-Za-z0-9]", "", name)[:56] or "edrblockmode"
    body = {
        "displayName": name,
        "description": "Devices the coverage pipeline puts in EDR in block mode.",
        "mailEnabled": False,
        "mailNickname": nickname,
        "securityEnabled": True,
    }
    group = graph.request("POST", "/v1.0/groups", body)
    print(f"created    group {name} ({group['id']})")
    return str(group["id"])


def ensure_policy(graph: Graph, name: str) -> str:
    policies = graph.get_all("/beta/deviceManagement/configurationPolicies?$select=id,name")
    same_name = [p for p in policies if p.get("name") == name]
    if len(same_name) > 1:
        raise LookupError(f"{len(same_name)} Intune policies are named {name!r}")
    if not same_name:
        policy = graph.request(
            "POST", "/beta/deviceManagement/configurationPolicies", policy_body(name)
        )
        print(f"created    policy {name} ({policy['id']})")
        return str(policy["id"])

    policy_id = str(same_name[0]["id"])
    settings = graph.get_all(f"/beta/deviceManagement/configurationPolicies/{policy_id}/settings")
    if not _sets_edr_block(settings):
        raise LookupError(
            f"Intune policy {name!r} exists but does not set EDR in block mode; "
            "not changed. Fix it in Intune or pass another --policy-name"
        )
    print(f"unchanged  policy {name} ({policy_id})")
    return policy_id


def ensure_assignment(graph: Graph, policy_id: str, group_id: str) -> None:
    base = f"/beta/deviceManagement/configurationPolicies/{policy_id}"
    assignments = graph.get_all(f"{base}/assignments")
    targets = [a.get("target", {}) for a in assignments]
    if any(t.get("groupId") == group_id for t in targets):
        print(f"unchanged  assignment of the policy to group {group_id}")
        return

    # assign replaces the policy's whole assignment list, so keep the ones already there.
    new_target = {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group_id}
    body = {"assignments": [{"target": t} for t in targets] + [{"target": new_target}]}
    graph.request("POST", f"{base}/assign", body)
    print(f"assigned   the policy to group {group_id}")


def _sets_edr_block(settings: list[dict[str, Any]]) -> bool:
    for setting in settings:
        instance = setting.get("settingInstance", {})
        if instance.get("settingDefinitionId") != SETTING_ID:
            continue
        values = instance.get("choiceSettingCollectionValue") or []
        return any(v.get("value") == EDR_BLOCK_VALUE for v in values)
    return False


if __name__ == "__main__":
    sys.exit(main())
