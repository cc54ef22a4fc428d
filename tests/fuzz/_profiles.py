"""Hypothesis profiles of the fuzz suite, chosen by ``INFERGATE_FUZZ_PROFILE``.

``fast`` (the default, part of the normal test run): a few hundred inputs per test, derandomized
(the same inputs on every run, so a failure reproduces), the whole suite well under a minute.
``long`` (``make fuzz``): tens of thousands of inputs per test, a random seed each run (a failure
prints the reproducing blob; ``pytest --hypothesis-seed=N`` fixes the seed).

A crash is a traceback, a 5xx, or a hang past ``HANG_BOUND_S`` (hypothesis' deadline, checked on
a re-run so a loaded machine does not make it flaky).
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

ENV = "INFERGATE_FUZZ_PROFILE"
EXAMPLES_ENV = "INFERGATE_FUZZ_EXAMPLES"  # overrides the inputs per test of either profile
HANG_BOUND_S = 10.0

_COMMON = {
    "deadline": timedelta(seconds=HANG_BOUND_S),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "database": None,  # nothing written under the repository
    "print_blob": True,
}

settings.register_profile("infergate-fuzz-fast", max_examples=200, derandomize=True, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("infergate-fuzz-long", max_examples=20_000, derandomize=False, **_COMMON)  # type: ignore[arg-type]


def profile_name() -> str:
    """``fast`` or ``long`` from the environment (anything else is an error, not a silent default)."""
    name = os.environ.get(ENV, "fast").strip() or "fast"
    if name not in ("fast", "long"):
        raise ValueError(f"{ENV}={name!r}: expected 'fast' or 'long'")
    return name


def test_timeout_s() -> float:
    """pytest-timeout's bound for one fuzz test under the active profile."""
    return 180.0 if profile_name() == "fast" and not os.environ.get(EXAMPLES_ENV) else 6 * 3600.0


def fuzz_settings(examples: int = 200) -> settings:
    """Settings for one fuzz test: ``examples`` inputs under ``fast`` (its share of the time
    budget), the long profile's count under ``long``."""
    name = profile_name()
    parent = settings.get_profile(f"infergate-fuzz-{name}")
    override = os.environ.get(EXAMPLES_ENV, "").strip()
    if override:
        return settings(parent, max_examples=int(override))
    if name == "fast":
        return settings(parent, max_examples=examples)
    return parent
