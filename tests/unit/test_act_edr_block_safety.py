"""Safety settings: safe defaults, every key read, malformed values named, the execution mode."""

from __future__ import annotations

import pytest

from pipeline.act.safety import SETTING_KEYS, ActionSettings, ExecutionMode
from pipeline.config import ConfigError

GROUP = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_defaults_are_the_safe_choice() -> None:
    settings = ActionSettings.from_env({})

    assert settings == ActionSettings()
    assert settings.actions_enabled is False
    assert settings.kill_switch is False
    assert settings.max_devices == 25
    assert settings.max_percent == 2.0
    assert settings.verify_after_hours == 24.0
    assert settings.mode is ExecutionMode.DRY_RUN


def test_every_key_is_read() -> None:
    env = {
        "ACTIONS_ENABLED": "true",
        "ACTION_MAX_DEVICES": "40",
        "ACTION_MAX_PERCENT": "5.5",
        "KILL_SWITCH": "no",
        "EDR_BLOCK_GROUP_ID": f" {GROUP} ",
        "ACTION_TAG_MACHINES": "edr-block-mode-by-pipeline",
        "EDR_BLOCK_VERIFY_AFTER_HOURS": "12",
        "ACTION_APPROVAL_DAYS": "3",
    }
    assert set(env) == set(SETTING_KEYS)

    settings = ActionSettings.from_env(env)

    assert settings == ActionSettings(
        actions_enabled=True,
        max_devices=40,
        max_percent=5.5,
        kill_switch=False,
        edr_block_group_id=GROUP,
        tag_machines="edr-block-mode-by-pipeline",
        verify_after_hours=12.0,
        approval_days=3,
    )
    assert settings.mode is ExecutionMode.LIVE


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ACTIONS_ENABLED", "maybe"),
        ("KILL_SWITCH", "2"),
        ("ACTION_MAX_DEVICES", "ten"),
        ("ACTION_MAX_DEVICES", "-1"),
        ("ACTION_MAX_PERCENT", "150"),
        ("ACTION_MAX_PERCENT", "nan"),
        ("EDR_BLOCK_GROUP_ID", "Contoso EDR block"),
        ("ACTION_TAG_MACHINES", "tag\nwith newline"),
        ("ACTION_TAG_MACHINES", "x" * 201),
        ("EDR_BLOCK_VERIFY_AFTER_HOURS", "0"),
        ("ACTION_APPROVAL_DAYS", "0"),
    ],
)
def test_a_malformed_value_names_its_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ActionSettings.from_env({key: value})


def test_kill_switch_wins_over_everything() -> None:
    settings = ActionSettings(actions_enabled=True, kill_switch=True, edr_block_group_id=GROUP)

    assert settings.mode is ExecutionMode.KILL_SWITCH


def test_enabled_without_a_group_is_not_configured_rather_than_live() -> None:
    assert ActionSettings(actions_enabled=True).mode is ExecutionMode.NOT_CONFIGURED


@pytest.mark.parametrize(
    ("fleet", "max_devices", "max_percent", "cap"),
    [
        (1000, 25, 2.0, 20),  # the percentage is the smaller cap
        (5000, 25, 2.0, 25),  # the device count is the smaller cap
        (49, 25, 2.0, 0),  # 0.98 rounds down
        (50, 25, 2.0, 1),
        (0, 25, 2.0, 0),
        (1000, 0, 100.0, 0),  # zero devices: every plan needs approval
    ],
)
def test_cap_is_the_smaller_of_both_caps(
    fleet: int, max_devices: int, max_percent: float, cap: int
) -> None:
    assert ActionSettings(max_devices=max_devices, max_percent=max_percent).cap(fleet) == cap
