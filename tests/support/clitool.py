"""Running the real kubectl and helm against one cluster, each with its own HOME.

A fresh HOME gives kubectl a fresh discovery cache (after CRDs change, a stale cache hides
new kinds, as on a real cluster) and helm its own cache/config/data directories. Used by the
tests that drive the real binaries against the embedded API server
(``from ..support.clitool import CliTool``); ``infergate.util.clitool.find_tool`` finds them.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class CliTool:
    """A kubectl or helm binary with its own HOME and KUBECONFIG; ``run`` raises on failure by default."""

    def __init__(self, binary: str, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home),
                    "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                    "HELM_DATA_HOME": str(home / "helm-data")}

    def run(self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True) -> CliResult:
        proc = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        result = CliResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{Path(self.binary).name} {' '.join(args)} failed ({proc.returncode}):\n{result.out}")
        return result

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True) -> CliResult:
        return self.run(*args, input=input, timeout=timeout, check=check)
