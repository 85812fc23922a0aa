"""Safety settings for actions that change devices, read once per run from the environment.

Every key, its default (always the safe choice) and what it means:

``ACTIONS_ENABLED`` (false)
    false is dry-run: plan and audit, never call Graph to change anything.
``ACTION_MAX_DEVICES`` (25)
    at most this many devices are changed in one cycle without a person approving the plan.
``ACTION_MAX_PERCENT`` (2)
    ... and at most this percentage of the fleet (every device evaluated this cycle, rounded
    down).
``KILL_SWITCH`` (false)
    true stops every action at once, approved plans included; each cycle audits what it held
    back.
``EDR_BLOCK_GROUP_ID`` (none)
    object id of the Entra group that the Intune PassiveRemediation policy is assigned to;
    without it, EDR-block-mode actions are planned and audited but not executed.
``ACTION_TAG_MACHINES`` (none)
    optional MDE machine tag added to each device put in the group, e.g.
    ``edr-block-mode-by-pipeline``, so the portal shows why its mode changed.
``EDR_BLOCK_VERIFY_AFTER_HOURS`` (24)
    how long policy delivery may take; a device still passive after that gets a finding.
``ACTION_APPROVAL_DAYS`` (7)
    how long a plan waiting for approval can be approved; after that it is planned afresh.

A plan larger than either cap is not executed in part: the whole plan waits for approval, because
an unusually large plan is itself the sign that something (a bad feed, a mass mode change) may be
wrong. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pipeline.envvars import flag, number, whole
from pipeline.errors import ConfigError

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TAG_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MAX_TAG_CHARS = 200

SETTING_KEYS: dict[str, str] = {
    "ACTIONS_ENABLED": "false = dry-run: plan and audit, change nothing (default false)",
    "ACTION_MAX_DEVICES": "devices changed per cycle without approval (default 25)",
    "ACTION_MAX_PERCENT": "percentage of the fleet changed per cycle without approval (default 2)",
    "KILL_SWITCH": "true stops every action, approved ones included (default false)",
    "EDR_BLOCK_GROUP_ID": "Entra group the Intune PassiveRemediation policy targets",
    "ACTION_TAG_MACHINES": "optional MDE tag added to each device put in the group",
    "EDR_BLOCK_VERIFY_AFTER_HOURS": "hours before a still-passive device gets a finding (24)",
    "ACTION_APPROVAL_DAYS": "days a plan waiting for approval stays approvable (default 7)",
}


class ExecutionMode(StrEnum):
    """What an execution run may do, decided once from the settings."""

    LIVE = "live"  # change devices
    DRY_RUN = "dry_run"  # ACTIONS_ENABLED is false
    KILL_SWITCH = "kill_switch"  # KILL_SWITCH is true; wins over everything else
    NOT_CONFIGURED = "not_configured"  # enabled, but no EDR_BLOCK_GROUP_ID to add devices to


@dataclass(frozen=True)
class ActionSettings:
    actions_enabled: bool = False
    max_devices: int = 25
    max_percent: float = 2.0
    kill_switch: bool = False
    edr_block_group_id: str | None = None
    tag_machines: str | None = None
    verify_after_hours: float = 24.0
    approval_days: int = 7

    def __post_init__(self) -> None:
        if self.max_devices < 0:
            raise ConfigError(f"ACTION_MAX_DEVICES must be 0 or more, got {self.max_devices}")
        if not 0 <= self.max_percent <= 100:
            raise ConfigError(f"ACTION_MAX_PERCENT must be 0..100, got {self.max_percent}")
        if self.edr_block_group_id is not None and not _GUID.match(self.edr_block_group_id):
            raise ConfigError(f"EDR_BLOCK_GROUP_ID is not a GUID: {self.edr_block_group_id!r}")
        if self.tag_machines is not None and (
            not self.tag_machines.strip()
            or len(self.tag_machines) > MAX_TAG_CHARS
            or _TAG_UNSAFE.search(self.tag_machines)
        ):
            raise ConfigError(
                f"ACTION_TAG_MACHINES must be 1..{MAX_TAG_CHARS} printable characters, "
                f"got {self.tag_machines!r}"
            )
        if not self.verify_after_hours > 0:
            raise ConfigError(
                f"EDR_BLOCK_VERIFY_AFTER_HOURS must be above 0, got {self.verify_after_hours}"
            )
        if self.approval_days < 1:
            raise ConfigError(f"ACTION_APPROVAL_DAYS must be 1 or more, got {self.approval_days}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ActionSettings:
        """Read the keys above; a malformed value raises :class:`ConfigError` naming its key."""
        return cls(
            actions_enabled=flag(env, "ACTIONS_ENABLED", False),
            max_devices=whole(env, "ACTION_MAX_DEVICES", 25),
            max_percent=number(env, "ACTION_MAX_PERCENT", 2.0),
            kill_switch=flag(env, "KILL_SWITCH", False),
            edr_block_group_id=(env.get("EDR_BLOCK_GROUP_ID") or "").strip() or None,
            tag_machines=(env.get("ACTION_TAG_MACHINES") or "").strip() or None,
            verify_after_hours=number(env, "EDR_BLOCK_VERIFY_AFTER_HOURS", 24.0),
            approval_days=whole(env, "ACTION_APPROVAL_DAYS", 7),
        )

    @property
    def mode(self) -> ExecutionMode:
        if self.kill_switch:
            return ExecutionMode.KILL_SWITCH
        if not self.actions_enabled:
            return ExecutionMode.DRY_RUN
        if self.edr_block_group_id is None:
            return ExecutionMode.NOT_CONFIGURED
        return ExecutionMode.LIVE

    def cap(self, fleet_size: int) -> int:
        """Devices one cycle may change without approval: the smaller of the two caps.

        The percentage is rounded down, so a small fleet needs approval sooner, never later.
        """
        by_percent = math.floor(fleet_size * self.max_percent / 100)
        return max(0, min(self.max_devices, by_percent))


__all__ = ["SETTING_KEYS", "ActionSettings", "ExecutionMode"]
