"""Firewall formats: a Windows Firewall PowerShell script and an Azure Firewall rule group.

Windows Firewall rules match addresses, not names, so the script carries only IP entries. It
replaces the rules of one rule group each time it runs, which makes re-running it idempotent.

The Azure Firewall document is the body of a ``Microsoft.Network/firewallPolicies/
ruleCollectionGroups`` PUT: network rules for addresses, application rules for names (``*.name``
for subdomains) on HTTP and HTTPS. Matching full URLs needs TLS inspection on the Premium tier,
so URL indicators with a path are reported rather than widened to the whole host
(https://learn.microsoft.com/azure/firewall/rule-processing). Azure Firewall filters IPv4 only.
"""

from __future__ import annotations

import json

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats._base import (
    Collector,
    Rendered,
    RenderOptions,
    lines,
    url_reason,
)

_AZURE_ACTIONS = {"block": "Deny", "warn": "Deny", "allow": "Allow"}
_WINDOWS_ACTIONS = {"block": "Block", "warn": "Block", "allow": "Allow"}


def render_windows_firewall(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("windows-firewall", blocklist)

    for entry in blocklist.entries:
        if entry.kind in ("ip", "network"):
            out.entries.append(entry.value)
        else:
            out.leave_to_other_family(entry)

    group = _quoted(f"MDE indicators {blocklist.name}")
    action = _WINDOWS_ACTIONS[blocklist.name]
    chunk = options.rule_chunk
    script = [
        out.header("#"),
        "# Replaces the outbound rules of one rule group with rules for the addresses below.",
        "$ErrorActionPreference = 'Stop'",
        f"$group = {group}",
        "$addresses = @(",
        *[f"    {_quoted(address)}" for address in out.entries],
        ")",
        "Get-NetFirewallRule -Group $group -ErrorAction SilentlyContinue | Remove-NetFirewallRule",
        f"for ($start = 0; $start -lt $addresses.Count; $start += {chunk}) {{",
        f"    $end = [Math]::Min($start + {chunk - 1}, $addresses.Count - 1)",
        f"    $name = '{{0}} {{1}}' -f $group, ($start / {chunk} + 1)",
        "    New-NetFirewallRule -DisplayName $name -Group $group -Direction Outbound `",
        f"        -Action {action} -Profile Any -RemoteAddress $addresses[$start..$end] | Out-Null",
        "}",
    ]
    return out.rendered(lines(script))


def render_azure_firewall(blocklist: Blocklist, options: RenderOptions) -> Rendered:
    out = Collector("azure-firewall", blocklist)
    names: list[str] = []
    addresses: list[str] = []

    for entry in blocklist.entries:
        if entry.kind == "domain":
            names.extend([entry.value, f"*.{entry.value}"])
        elif entry.kind == "host":
            names.append(entry.value)
        elif entry.kind == "url":
            out.omit(entry, url_reason(out.format))
        elif entry.network is not None and entry.network.version == 6:
            out.omit(entry, "Azure Firewall filters IPv4 traffic only")
        else:
            addresses.append(entry.value)

    for exemption in blocklist.exemptions:
        out.omit_exemption(exemption)

    out.entries.extend([*addresses, *names])
    document = {
        "properties": {
            "priority": options.azure_priority,
            "ruleCollections": _rule_collections(blocklist, addresses, names, options.rule_chunk),
        }
    }
    return out.rendered(json.dumps(document, indent=2) + "\n")


def _rule_collections(
    blocklist: Blocklist, addresses: list[str], names: list[str], chunk: int
) -> list[dict[str, object]]:
    action = {"type": _AZURE_ACTIONS[blocklist.name]}
    prefix = f"mde-indicators-{blocklist.name}"
    collections: list[dict[str, object]] = []

    if addresses:
        rules: list[dict[str, object]] = [
            {
                "ruleType": "NetworkRule",
                "name": f"{prefix}-ip-{number}",
                "ipProtocols": ["Any"],
                "sourceAddresses": ["*"],
                "destinationAddresses": part,
                "destinationPorts": ["*"],
            }
            for number, part in _chunks(addresses, chunk)
        ]
        collections.append(_collection(f"{prefix}-ip", 100, action, rules))

    if names:
        rules = [
            {
                "ruleType": "ApplicationRule",
                "name": f"{prefix}-fqdn-{number}",
                "protocols": [
                    {"protocolType": "Http", "port": 80},
                    {"protocolType": "Https", "port": 443},
                ],
                "sourceAddresses": ["*"],
                "targetFqdns": part,
            }
            for number, part in _chunks(names, chunk)
        ]
        collections.append(_collection(f"{prefix}-fqdn", 200, action, rules))
    return collections


def _collection(
    name: str, priority: int, action: dict[str, str], rules: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "ruleCollectionType": "FirewallPolicyFilterRuleCollection",
        "name": name,
        "priority": priority,
        "action": action,
        "rules": rules,
    }


def _chunks(items: list[str], size: int) -> list[tuple[int, list[str]]]:
    return [
        (start // size + 1, items[start : start + size]) for start in range(0, len(items), size)
    ]


def _quoted(text: str) -> str:
    # PowerShell single-quoted strings expand nothing; a quote inside is written twice. Values
    # are normalised addresses already, so this is a second line of defence.
    return "'" + text.replace("'", "''") + "'"
