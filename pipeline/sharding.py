"""How a fleet is cut into shards, and where a cycle's snapshot is kept for them. Pure.

A cycle whose fleet is too large for one function invocation stores its collected snapshot in
the state container and queues one message per shard; each shard then evaluates the devices
whose id hashes to it. The hash is SHA-256, so every process, on every instance, puts a device
in the same shard, and shards are about equal in size.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

__all__ = [
    "LATEST_SNAPSHOT",
    "extra_findings_blob",
    "shard_messages",
    "shard_of",
    "snapshot_blob",
]

# Blob names in the STATE_CONTAINER: one snapshot per cycle, and a pointer to the newest.
SNAPSHOT_PREFIX: Final = "snapshots/"
LATEST_SNAPSHOT: Final = f"{SNAPSHOT_PREFIX}latest.json"


def snapshot_blob(cycle_id: str) -> str:
    return f"{SNAPSHOT_PREFIX}{cycle_id}.json"


def extra_findings_blob(cycle_id: str) -> str:
    """Findings the fanning cycle adds to some devices (EDR block mode that did not take
    effect), for the shards to put in those devices' rows; absent when there are none."""
    return f"{SNAPSHOT_PREFIX}{cycle_id}/extra-findings.json"


def shard_of(device_id: str, shards: int) -> int:
    """The shard (0 to ``shards`` - 1) a device belongs to; the same everywhere, every time."""
    if shards < 1:
        raise ValueError(f"a fleet is cut into at least one shard, not {shards}")
    digest = hashlib.sha256(device_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_messages(cycle_id: str, shards: int, requested_by: str = "cycle") -> list[str]:
    """The queue messages (JSON text) asking for every shard of ``cycle_id``'s snapshot."""
    return [
        json.dumps(
            {
                "cycleId": cycle_id,
                "all": True,
                "shard": shard,
                "shards": shards,
                "requestedBy": requested_by,
            },
            separators=(",", ":"),
        )
        for shard in range(shards)
    ]
