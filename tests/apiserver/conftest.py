"""Fixtures for the embedded API server tests: one server per test module, a namespace
per test, and runners for the real kubectl and helm pointed at the server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer

from ..support.apiserver_client import api_client
from ..support.clitool import CliTool

CHARTS_DIR = Path(__file__).resolve().parent / "charts"


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("apiserver-state")) as handle:
        yield handle


@pytest.fixture(scope="module")
def http(apiserver: ThreadedAPIServer) -> Iterator[httpx.Client]:
    with api_client(apiserver) as client:
        yield client


@pytest.fixture
def namespace(http: httpx.Client) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    response = http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
    assert response.status_code == 201, response.text
    return name




@pytest.fixture
def kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> CliTool:
    return CliTool(kubectl_bin, apiserver.kubeconfig_path, tmp_path / "home")


@pytest.fixture
def helm(helm_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> CliTool:
    return CliTool(helm_bin, apiserver.kubeconfig_path, tmp_path / "home")


@pytest.fixture(scope="module")
def module_kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, tmp_path_factory: pytest.TempPathFactory) -> CliTool:
    return CliTool(kubectl_bin, apiserver.kubeconfig_path, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def upstream_crds(reference_dir: Path, module_kubectl: CliTool) -> list[Path]:
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
