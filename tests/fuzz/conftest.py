"""The fuzzing suites: hypothesis, seeded, a fast profile in the normal test run and a long
one behind ``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz-long pytest tests/fuzz -m fuzz``).

A crash is a traceback, a 5xx, a hang past a bound, or a server that stops answering. The
profile scales each test's number of examples (``examples(n)``: n in the fast profile).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-fast")
LONG_FACTOR = 50  # the long profile runs this many times the fast profile's examples


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: a fuzzing suite (make fuzz runs them with the long profile)")


def fuzz_settings(examples: int) -> settings:
    """Settings for one fuzz test: seeded and ``examples`` inputs in the fast profile, random
    and ``LONG_FACTOR`` times as many in the long one; no per-example deadline (the tests
    bound each input themselves), no example database."""
    long = PROFILE == "fuzz-long"
    return settings(max_examples=examples * (LONG_FACTOR if long else 1), derandomize=not long, deadline=None,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
