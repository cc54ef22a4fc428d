"""Fixtures for the controller tests: manifest loading, Deployment -> Pod expansion, golden files."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTDATA = Path(__file__).parent / "testdata"
def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)


@pytest.fixture
def golden() -> Callable[[str, Any], None]:
    """Compare ``data`` (as YAML) with testdata/<name>.out.yaml; INFERGATE_UPDATE_GOLDEN=1 rewrites it."""

    def check(name: str, data: Any) -> None:
        path = TESTDATA / f"{name}.out.yaml"
        text = dump(data)
        if os.environ.get("INFERGATE_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing: run `make golden` and review it")
        expected = path.read_text()
        if text != expected:
            diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                                str(path), "actual"))
            pytest.fail(f"translation differs from {path} (run `make golden` if intended):\n{diff[:6000]}")

    return check
