#!/usr/bin/env python3
"""Grant the function app's managed identity exactly the API permissions the pipeline uses.

Bicep cannot grant API permissions: they are app-role assignments on the Defender for Endpoint
(WindowsDefenderATP) and Microsoft Graph service principals. This script assigns the roles below
to the managed identity, leaves roles it already holds alone, prints every change, and reports
(or with --remove-others removes) other roles the identity holds on those two APIs, so it ends
up with this set and nothing more. Run it again at any time; a second run changes nothing.

    python infra/scripts/grant_api_permissions.py --principal-id <MANAGED_IDENTITY_PRINCIPAL_ID>

The signed-in administrator needs a role that may grant application permissions (Privileged
Role Administrator, or Cloud Application Administrator together with the consent to grant
these roles). Exit status: 0 done, 1 a Graph call failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from _graph import DEFAULT_GRAPH_URL, Graph, GraphError, graph_token

# appId of each API's service principal (the same in every tenant) and the roles we need on it.
WANTED_ROLES = {
    "fc780465-2017-40d4-a0c5-307022471b92": (
        "WindowsDefenderATP",
        (
            "Machine.Read.All",  # machines and the device antivirus health export
            # List Indicators shows an app every indicator (including those Defender for Cloud
            # Apps created) only with Ti.ReadWrite.All; with Ti.ReadWrite, only its own
            # (learn.microsoft.com/defender-endpoint/api/get-ti-indicators-collection).
            "Ti.ReadWrite.All",
            "AdvancedQuery.Read.All",  # advanced hunting through the Defender API
            "Machine.ReadWrite.All",  # device tags
        ),
    ),
    "00000003-0000-0000-c000-000000000000": (
        "Microsoft Graph",
        (
            # Resolve a Defender device to its Entra object, and add it to the EDR-in-block-mode
            # group: Graph asks for Device.ReadWrite.All (not only .Read.All) when the member
            # being added is a device (learn.microsoft.com/graph/api/group-post-members).
            "Device.ReadWrite.All",
            "GroupMember.ReadWrite.All",  # add devices to the EDR-in-block-mode group
            "ThreatHunting.Read.All",  # security/runHuntingQuery
        ),
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument(
        "--principal-id",
        default=os.environ.get("MANAGED_IDENTITY_PRINCIPAL_ID", ""),
        help="object id of the managed identity (default: $MANAGED_IDENTITY_PRINCIPAL_ID)",
    )
    parser.add_argument("--graph-url", default=DEFAULT_GRAPH_URL, help=argparse.SUPPRESS)
    parser.add_argument(
        "--remove-others",
        action="store_true",
        help="also remove other app roles the identity holds on these two APIs",
    )
    args = parser.parse_args(argv)
    if not args.principal_id:
        parser.error("--principal-id is required (or set MANAGED_IDENTITY_PRINCIPAL_ID)")

    try:
        graph = Graph(args.graph_url, graph_token())
    except ValueError as error:
        parser.error(str(error))
    try:
        changes = grant(graph, args.principal_id, remove_others=args.remove_others)
    except GraphError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"done: {changes['assigned']} assigned, {changes['unchanged']} already held, "
        f"{changes['removed']} removed, {changes['extra']} other role(s) left in place"
    )
    return 0


def grant(graph: Graph, principal_id: str, *, remove_others: bool) -> dict[str, int]:
    identity = graph.request(
        "GET", f"/v1.0/servicePrincipals/{principal_id}?$select=id,displayName"
    )
    print(f"managed identity: {identity.get('displayName')} ({principal_id})")
    held = graph.get_all(f"/v1.0/servicePrincipals/{principal_id}/appRoleAssignments")
    changes = {"assigned": 0, "unchanged": 0, "removed": 0, "extra": 0}

    for app_id, (api_name, role_values) in WANTED_ROLES.items():
        api = _service_principal(graph, app_id, api_name)
        role_ids = {
            role["value"]: role["id"]
            for role in api.get("appRoles", [])
            if "Application" in role.get("allowedMemberTypes", [])
        }
        missing = [value for value in role_values if value not in role_ids]
        if missing:
            raise LookupError(f"{api_name} offers no application role {', '.join(missing)}")

        held_here = {a["appRoleId"]: a for a in held if a.get("resourceId") == api["id"]}
        for value in role_values:
            if role_ids[value] in held_here:
                print(f"unchanged  {api_name} {value}")
                changes["unchanged"] += 1
                continue
            body = {
                "principalId": principal_id,
                "resourceId": api["id"],
                "appRoleId": role_ids[value],
            }
            graph.request(
                "POST", f"/v1.0/servicePrincipals/{principal_id}/appRoleAssignments", body
            )
            print(f"assigned   {api_name} {value}")
            changes["assigned"] += 1

        wanted_ids = {role_ids[value] for value in role_values}
        names = {role_id: value for value, role_id in role_ids.items()}
        for role_id, assignment in held_here.items():
            if role_id in wanted_ids:
                continue
            name = names.get(role_id, role_id)
            if remove_others:
                path = (
                    f"/v1.0/servicePrincipals/{principal_id}/appRoleAssignments/{assignment['id']}"
                )
                graph.request("DELETE", path)
                print(f"removed    {api_name} {name}")
                changes["removed"] += 1
            else:
                print(f"extra      {api_name} {name} (not needed; --remove-others removes it)")
                changes["extra"] += 1
    return changes


def _service_principal(graph: Graph, app_id: str, api_name: str) -> dict:
    try:
        return graph.request(
            "GET", f"/v1.0/servicePrincipals(appId='{app_id}')?$select=id,displayName,appRoles"
        )
    except GraphError as error:
        if error.status == 404:
            raise LookupError(
                f"{api_name} has no service principal in this tenant; for WindowsDefenderATP this "
                "means Defender for Endpoint is not provisioned"
            ) from None
        raise


if __name__ == "__main__":
    sys.exit(main())
