"""The network-events rule's cases, turned into what the streaming detector reads.

The Sentinel rule ``passive-device-reached-blocked-resource-network-events`` and the streaming
detector must agree on what "a device that cannot block reached a blocked resource" means. The
rule's cases file (``detections/rules/cases/...network-events.cases.yaml``) is the one statement
of that agreement; this module turns each case into the detector's inputs:

* ``MdeAvCoverage_CL`` rows → the mode cache (its newest row per device wins, like ``arg_max``);
* ``DeviceNetworkEvents`` rows → one streaming API message of ``AdvancedHunting-`` records;
* the ``MdeBlockedResources`` watchlist rows → blocklist entries (``domain`` or ``ip``).

Cases that test the scheduled rule's look-back window are not the stream's business (the stream
sees each event exactly once, when it happens) and are listed in ``WINDOW_CASES``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pipeline.act.blocklist import Entry
from tests.support.detections import CASES
from tests.support.rule_cases import RuleCase, RuleCases, load_cases

CASES_FILE = CASES / "passive-device-reached-blocked-resource-network-events.cases.yaml"
WINDOW_CASES = frozenset({"a connection before the rule's one-hour window does not fire again"})
TENANT = "11111111-2222-3333-4444-555555555555"

_OFFSET = re.compile(r"^([+-])(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def network_event_cases() -> RuleCases:
    return load_cases(CASES_FILE)


def moment(value: Any, now: datetime) -> str:
    """A case's time (ISO 8601 or an offset such as ``-10m``) as ISO 8601 UTC text."""
    if isinstance(value, datetime):
        return value.isoformat()
    found = _OFFSET.match(str(value))
    if found is None:
        return str(value)
    sign, amount, unit = found.groups()
    delta = timedelta(**{_UNITS[unit]: int(amount)})
    return (now + delta if sign == "+" else now - delta).isoformat().replace("+00:00", "Z")


def coverage_rows(case: RuleCase, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for row in case.tables.get("MdeAvCoverage_CL", []):
        rows.append({**row, "TimeGenerated": moment(row["TimeGenerated"], now)})
    return rows


def stream_message(case: RuleCase, now: datetime) -> bytes:
    """The case's DeviceNetworkEvents rows as one Event Hubs message body."""
    records = []
    for row in case.tables.get("DeviceNetworkEvents", []):
        properties = {key: value for key, value in row.items() if key != "TimeGenerated"}
        properties["Timestamp"] = moment(row["TimeGenerated"], now)
        if "RemoteIP" in properties:
            properties["RemoteIP"] = str(properties["RemoteIP"])
        records.append(
            {
                "time": moment(row["TimeGenerated"], now),
                "tenantId": TENANT,
                "category": "AdvancedHunting-DeviceNetworkEvents",
                "properties": properties,
            }
        )
    return json.dumps({"records": records}).encode("utf-8")


def blocklist_entries(case: RuleCase) -> list[Entry]:
    entries = []
    for item in case.watchlists.get("MdeBlockedResources", []):
        value = str(item["Value"]).rstrip(".").lower()
        kind = str(item["Type"]).lower()
        network = ipaddress.ip_network(value) if kind == "ip" else None
        entries.append(
            Entry(
                kind="ip" if kind == "ip" else "domain",
                value=value,
                host=value,
                indicator_id=str(item.get("IndicatorId", "")),
                action=item.get("Action", "Block"),
                application=item.get("App") or None,
                network=network,
            )
        )
    return entries


def summarised(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Detection rows grouped as the rule summarises them, with ``Connections`` counted."""
    groups: Counter[tuple[tuple[str, Any], ...]] = Counter()
    for row in rows:
        key = (
            ("DeviceId", row["DeviceId"]),
            ("DeviceName", row["DeviceName"]),
            ("AvModeCode", row["AvModeCode"]),
            ("MatchedValue", row["MatchedValue"]),
            ("MatchedType", row["MatchedType"]),
            ("IndicatorId", row["IndicatorId"]),
            ("IndicatorAction", row["IndicatorAction"]),
            ("MatchedApp", row["MatchedApp"]),
        )
        groups[key] += 1
    return [{**dict(key), "Connections": count} for key, count in groups.items()]
