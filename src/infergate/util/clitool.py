"""Finding the kubectl and helm binaries (the demo and ``infergate migrate`` run them)."""

from __future__ import annotations

import shutil
from pathlib import Path

TOOLS_BIN = Path(__file__).resolve().parents[3] / ".tools" / "bin"  # where `make tools` puts them


def find_tool(name: str) -> str | None:
    """kubectl / helm: the repository's ``.tools/bin`` (``make tools``), else $PATH; None if neither."""
    local = TOOLS_BIN / name
    return str(local) if local.exists() else shutil.which(name)
