"""Cutting a fleet into shards, and when a cycle fans out (pure; no services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.app_entry import parse_fanout_message
from pipeline.config import MAX_SHARDS, ConfigError, FanoutSettings, PipelineSettings
from pipeline.sharding import shard_messages, shard_of, snapshot_blob

REPO = Path(__file__).resolve().parents[2]
DEVICE_IDS = [f"{index:040x}" for index in range(0, 4_000_000, 1_000)]  # 4,000 MDE-like ids


def test_every_device_lands_in_exactly_one_shard_and_shards_are_about_even() -> None:
    shards = 7
    members: list[list[str]] = [[] for _ in range(shards)]
    for device_id in DEVICE_IDS:
        members[shard_of(device_id, shards)].append(device_id)

    assert sorted(d for shard in members for d in shard) == sorted(DEVICE_IDS)
    expected = len(DEVICE_IDS) / shards
    assert all(0.85 * expected < len(shard) < 1.15 * expected for shard in members)


def test_the_shard_of_a_device_is_the_same_in_another_process() -> None:
    # Shards run on other instances: the answer must not depend on Python's per-process hash seed.
    sample = DEVICE_IDS[:200]
    code = (
        "import json, sys; from pipeline.sharding import shard_of; "
        "print(json.dumps([shard_of(d, 97) for d in json.loads(sys.argv[1])]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sample)],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert json.loads(other.stdout) == [shard_of(d, 97) for d in sample]
    assert len({shard_of(d, 97) for d in sample}) > 80  # and it spreads, not one bucket
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("device", 0)


def test_the_cycle_messages_are_ones_the_queue_function_accepts() -> None:
    texts = shard_messages("20261203T000000Z-0a1b2c3d", 3)

    parsed = [parse_fanout_message(text) for text in texts]

    assert [(m.shard, m.shards) for m in parsed] == [(0, 3), (1, 3), (2, 3)]
    assert {m.cycle_id for m in parsed} == {"20261203T000000Z-0a1b2c3d"}
    assert all(m.device_ids is None for m in parsed)
    assert snapshot_blob("c1") == "snapshots/c1.json"


@pytest.mark.parametrize(
    ("threshold", "shard_devices", "fleet", "shards"),
    [
        (50_000, 20_000, 50_000, 0),  # at the threshold: evaluated in one go
        (50_000, 20_000, 50_001, 3),
        (50_000, 20_000, 120_000, 6),
        (0, 20_000, 10_000_000, 0),  # 0 never fans out
        (100, 1_000, 500, 1),  # over the threshold but one shard's worth: still handed off
        (1, 1, 10_000, MAX_SHARDS),  # the shard count is capped; shards grow instead
    ],
)
def test_when_a_fleet_fans_out_and_into_how_many_shards(
    threshold: int, shard_devices: int, fleet: int, shards: int
) -> None:
    assert FanoutSettings(threshold, shard_devices).shards_for(fleet) == shards


BASE = {
    "LOGS_INGESTION_ENDPOINT": "https://dce.example.ingest.monitor.azure.com",
    "LOGS_INGESTION_DCR_IMMUTABLE_ID": "dcr-1",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_settings_default_to_never_fanning_out_without_a_queue() -> None:
    settings = PipelineSettings.from_env(BASE)

    assert settings.fanout_queue is None
    assert settings.fanout == FanoutSettings(50_000, 20_000)

    configured = PipelineSettings.from_env(
        {
            **BASE,
            "FANOUT_QUEUE": "device-fanout",
            "FANOUT_THRESHOLD_DEVICES": "0",
            "FANOUT_SHARD_DEVICES": "5000",
        }
    )
    assert configured.fanout_queue == "device-fanout"
    assert configured.fanout == FanoutSettings(0, 5_000)


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("FANOUT_THRESHOLD_DEVICES", "many", "FANOUT_THRESHOLD_DEVICES must be a whole number"),
        ("FANOUT_THRESHOLD_DEVICES", "-1", "FANOUT_THRESHOLD_DEVICES must be at least 0"),
        ("FANOUT_SHARD_DEVICES", "0", "FANOUT_SHARD_DEVICES must be at least 1"),
    ],
)
def test_bad_fan_out_settings_are_refused_naming_the_setting(
    name: str, value: str, complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        PipelineSettings.from_env({**BASE, name: value})
