"""The state file of a running ``infergate serve``: where ``infergate status`` finds it.

JSON, written when the gateway is ready and removed at stop. It names the manifests the
gateway reads and the statuses it wrote (the same objects ``infergate status`` reads from the
Kubernetes API elsewhere), the URL, and the processes serve started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infergate.util.files import write_private

STATE_VERSION = 1


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/infergate/serve.json`` (``~/.local/state/infergate/serve.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "infergate" / "serve.json"


@dataclass(frozen=True)
class ServedPool:
    name: str
    namespace: str
    group: str
    models: list[str]
    endpoints: list[str]  # base URLs
    epp_grpc: int
    epp_metrics: int
    source_file: str | None = None


@dataclass(frozen=True)
class ServeState:
    url: str
    pid: int
    work_dir: str
    manifests_dir: str
    status_file: str
    envoy_admin: str
    started_at: str
    pools: list[ServedPool] = field(default_factory=list)
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeState:
        pools = [ServedPool(**p) for p in data.get("pools") or []]
        return cls(**{**data, "pools": pools})


class StateFileError(Exception):
    pass


def write_state(path: Path, state: ServeState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, state.to_json())


def read_state(path: Path) -> ServeState:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateFileError(f"{path}: no state file (is `infergate serve` running? it writes one when ready)") from None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: unreadable state file: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateFileError(f"{path}: not an infergate serve state file of version {STATE_VERSION}")
    try:
        return ServeState.from_dict(data)
    except TypeError as exc:
        raise StateFileError(f"{path}: {exc}") from None
