"""Faults the lab server injects on request, so tests can show what collection does about them.

A fault matches requests whose path starts with ``path`` (and whose method matches, if given); it
lets ``skip`` matching requests through, then hits the next ``times`` of them.

========================  ========================================================================
``throttle``              429 with ``Retry-After: retry_after`` and Microsoft's TooManyRequests body
``error``                 ``status`` (default 500) with Microsoft's error body
``slow``                  waits ``delay`` seconds before answering (for client read timeouts)
``truncate``              a 200 whose JSON body stops after ``fraction`` of its length
``disconnect``            starts the body, then drops the connection
``repeat-next-link``      the page's ``@odata.nextLink`` points at the page itself
``expire-token``          answers 401 as if the bearer token had expired
========================  ========================================================================
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = (
    "throttle",
    "error",
    "slow",
    "truncate",
    "disconnect",
    "repeat-next-link",
    "expire-token",
)


@dataclass
class Fault:
    kind: str
    path: str
    method: str | None = None
    times: int = 1
    skip: int = 0
    retry_after: int = 7
    status: int = 500
    delay: float = 2.0
    fraction: float = 0.6
    hits: int = field(default=0, compare=False)  # how often it fired
    seen: int = field(default=0, compare=False)  # matching requests so far

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(FAULT_KINDS)}")
        if not self.path.startswith("/"):
            raise ValueError(f"fault path must start with '/': {self.path!r}")

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise ValueError("a fault is a JSON object")
        allowed = {"kind", "path", "method", "times", "skip", "retry_after", "status", "delay"}
        unknown = set(body) - allowed - {"fraction"}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**body)


class FaultPlan:
    """Thread-safe list of faults; the server asks it once per request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault to apply to this request, if any (the first matching one wins)."""
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.path):
                    continue
                if fault.method is not None and fault.method.upper() != method.upper():
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip or fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault
        return None
