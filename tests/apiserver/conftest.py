"""Fixtures for the embedded API server tests: one server per test module, a namespace
per test, and runners for the real kubectl and helm pointed at the server."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer

CHARTS_DIR = Path(__file__).resolve().parent / "charts"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("apiserver-state"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def http(apiserver: ThreadedAPIServer) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(apiserver.ca_path))
    with httpx.Client(base_url=apiserver.url, verify=context, timeout=10.0,
                      headers={"Authorization": f"Bearer {apiserver.token}"}) as client:
        yield client


@pytest.fixture
def namespace(http: httpx.Client) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    response = http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
    assert response.status_code == 201, response.text
    return name


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class Tool:
    """A real kubectl or helm binary with its own HOME (fresh discovery cache) and KUBECONFIG."""

    def __init__(self, binary: str, kubeconfig: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home),
                    "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                    "HELM_DATA_HOME": str(home / "helm-data")}

    def run(self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True) -> Result:
        proc = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True,
                              env=self.env, timeout=timeout)
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{Path(self.binary).name} {' '.join(args)} failed ({proc.returncode}):\n{result.out}")
        return result

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True) -> Result:
        return self.run(*args, input=input, timeout=timeout, check=check)


@pytest.fixture
def kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> Tool:
    return Tool(kubectl_bin, apiserver.kubeconfig_path, tmp_path / "home")


@pytest.fixture
def helm(helm_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> Tool:
    return Tool(helm_bin, apiserver.kubeconfig_path, tmp_path / "home")


@pytest.fixture(scope="module")
def module_kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, tmp_path_factory: pytest.TempPathFactory) -> Tool:
    return Tool(kubectl_bin, apiserver.kubeconfig_path, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def upstream_crds(reference_dir: Path, module_kubectl: Tool) -> list[Path]:
    """The upstream GIE v1.0.0, GIE v0.3.0 InferenceModel and Gateway API v1.3.0 CRDs, applied."""
    files = [
        *sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
        reference_dir / "gie-v0.3.0" / "crd" / "inference.networking.x-k8s.io_inferencemodels.yaml",
        *sorted((reference_dir / "gateway-api-v1.3.0" / "crd").glob("*.yaml")),
    ]
    args = [arg for f in files for arg in ("-f", str(f))]
    result = module_kubectl("apply", *args)
    for name in ("inferencepools.inference.networking.k8s.io", "inferencepools.inference.networking.x-k8s.io",
                 "gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{name} created" in result.stdout
    return files
