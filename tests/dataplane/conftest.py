"""Fixtures for the data-plane tests: a running Dataplane (xDS server + supervised Envoy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infergate.dataplane import Dataplane, DataplaneOptions


@pytest.fixture
async def dataplane(tmp_path: Path, envoy_bin: str) -> AsyncIterator[Dataplane]:
    async with Dataplane(DataplaneOptions(work_dir=tmp_path / "envoy", envoy_bin=envoy_bin)) as dp:
        yield dp
