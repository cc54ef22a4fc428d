"""Strict plugin parameter parsing: unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate.epp.scheduling.framework import ConfigError


def check_keys(params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        hint = f" (allowed: {', '.join(allowed)})" if allowed else " (this plugin takes no parameters)"
        raise ConfigError(f".{unknown[0]}: unknown parameter{hint}")


def int_param(params: Mapping[str, Any], key: str, default: int, *, minimum: int | None = None,
              nonpositive_default: bool = False) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f".{key}: must be an integer, got {value!r}")
    if nonpositive_default and value <= 0:
        return default
    if minimum is not None and value < minimum:
        raise ConfigError(f".{key}: must be >= {minimum}, got {value}")
    return value


def float_param(params: Mapping[str, Any], key: str, default: float, *, low: float | None = None,
                high: float | None = None) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f".{key}: must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f".{key}: must be in [{low}, {high}], got {value}")
    return float(value)


def str_param(params: Mapping[str, Any], key: str, default: str) -> str:
    value = params.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f".{key}: must be a string, got {value!r}")
    return value
