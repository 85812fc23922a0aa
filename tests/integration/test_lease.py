"""The cycle lease against Azurite's Blob service."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from pipeline.sinks.lease import CycleLease, Lease, LeaseHeld, LeaseLost
from tests.support.azurite import AzuriteProcess, azurite

pytestmark = pytest.mark.integration

__all__ = ["azurite"]  # fixtures used by name below


def _lease(process: AzuriteProcess, blob: str, duration: int = 15) -> CycleLease:
    return CycleLease.from_connection_string(
        process.connection_string, "leases", blob, duration_seconds=duration
    )


def test_second_cycle_stands_down_and_names_the_holder(azurite: AzuriteProcess) -> None:
    blob = f"cycle-{uuid.uuid4().hex[:8]}"
    first = _lease(azurite, blob).acquire("host-a/101/cycle-1")
    second = _lease(azurite, blob).acquire("host-b/202/cycle-2")

    assert isinstance(first, Lease)
    assert isinstance(second, LeaseHeld)
    assert second.holder == "host-a/101/cycle-1"
    assert second.since == first.since
    assert "host-a/101/cycle-1" in str(second)
    assert "stands down" in str(second)

    first.release()
    third = _lease(azurite, blob).acquire("host-b/202/cycle-3")
    assert isinstance(third, Lease)
    third.release()


def test_only_one_of_many_simultaneous_cycles_gets_the_lease(azurite: AzuriteProcess) -> None:
    blob = f"cycle-{uuid.uuid4().hex[:8]}"
    _lease(azurite, blob).acquire("warm-up").release()  # create the blob outside the race
    start = threading.Barrier(6)
    outcomes: list[Lease | LeaseHeld] = []

    def contend(n: int) -> None:
        contender = _lease(azurite, blob)
        start.wait()
        outcomes.append(contender.acquire(f"contender-{n}"))

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if isinstance(o, Lease)]
    assert len(winners) == 1
    assert sum(isinstance(o, LeaseHeld) for o in outcomes) == 5
    winners[0].release()


def test_a_crashed_holders_lease_lapses_while_a_renewed_one_holds(azurite: AzuriteProcess) -> None:
    crashed_blob, alive_blob = f"crashed-{uuid.uuid4().hex[:8]}", f"alive-{uuid.uuid4().hex[:8]}"
    crashed = _lease(azurite, crashed_blob).acquire("crashed-holder")
    alive = _lease(azurite, alive_blob).acquire("alive-holder")
    assert isinstance(crashed, Lease)
    assert isinstance(alive, Lease)

    # 15 s is the shortest lease blob storage grants; "crashed" simply never renews.
    with alive.keep_alive(interval_seconds=4):
        time.sleep(16)
        taken_over = _lease(azurite, crashed_blob).acquire("successor")
        still_held = _lease(azurite, alive_blob).acquire("intruder")
        alive.ensure_held()

    assert isinstance(taken_over, Lease)
    assert isinstance(still_held, LeaseHeld)
    assert still_held.holder == "alive-holder"
    # The crashed holder finds out when it tries to renew.
    with pytest.raises(LeaseLost, match="crashed-holder"):
        crashed.renew()
    with pytest.raises(LeaseLost):
        crashed.ensure_held()
    taken_over.release()
    # keep_alive released the renewed lease at the end of its block.
    assert isinstance(_lease(azurite, alive_blob).acquire("next"), Lease)


def test_released_lease_cannot_be_used(azurite: AzuriteProcess) -> None:
    lease = _lease(azurite, f"cycle-{uuid.uuid4().hex[:8]}").acquire("once")
    assert isinstance(lease, Lease)
    with lease:
        lease.renew()
    with pytest.raises(LeaseLost, match="released"):
        lease.ensure_held()


def test_duration_outside_the_service_range_is_refused(azurite: AzuriteProcess) -> None:
    with pytest.raises(ValueError, match=r"15\.\.60"):
        _lease(azurite, "x", duration=5)
