"""Typed values from environment settings, with errors that name the setting.

Every settings class (``pipeline.config``, ``pipeline.act.safety``) reads its values through
these, so "true", "on" and "1" mean the same everywhere and a malformed value always raises
:class:`pipeline.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import overload

from pipeline.errors import ConfigError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


@overload
def flag(env: Mapping[str, str], name: str, default: bool) -> bool: ...
@overload
def flag(env: Mapping[str, str], name: str, default: None) -> bool | None: ...
def flag(env: Mapping[str, str], name: str, default: bool | None) -> bool | None:
    """true/false (also yes/no, on/off, 1/0); ``default`` when the setting is empty or absent."""
    raw = _raw(env, name).lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")


def whole(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _raw(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return value
