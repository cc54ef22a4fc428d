"""The fuzz suite: ``pytest tests/fuzz`` (fast profile, part of the normal run) or
``INFERGATE_FUZZ_PROFILE=long pytest tests/fuzz -m fuzz`` (``make fuzz``). Profiles: _profiles.py."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: property-based fuzzing (hypothesis); INFERGATE_FUZZ_PROFILE=fast|long")


def pytest_report_header(config: pytest.Config) -> str:
    return f"fuzz profile: {os.environ.get('INFERGATE_FUZZ_PROFILE', 'fast')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long profile runs for many minutes per test: lift the suite's per-test timeout."""
    from ._profiles import test_timeout_s

    for item in items:
        if item.get_closest_marker("fuzz") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(test_timeout_s()))
