"""The migration path with real kubectl: apply the preview example to an API server that has the
upstream CRDs, export the stored objects, convert them, and apply the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "preview"

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("convert-kubectl")]


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("apiserver")) as handle:
        yield handle


@pytest.fixture(scope="module")
def kubectl(
    kubectl_bin: str,
    apiserver: ThreadedAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
    reference_dir: Path,
) -> Any:
    env = {
        **os.environ,
        "KUBECONFIG": str(apiserver.kubeconfig_path),
        "HOME": str(tmp_path_factory.mktemp("home")),
    }

    def run(*args: str, stdin: str | None = None, ok: bool = True) -> str:
        proc = subprocess.run(
            [kubectl_bin, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
        )
        assert (proc.returncode == 0) == ok, f"kubectl {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout + proc.stderr

    crds = [
        *sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
        reference_dir / "gie-v0.3.0" / "crd" / "inference.networking.x-k8s.io_inferencemodels.yaml",
        *sorted((reference_dir / "gateway-api-v1.3.0" / "crd").glob("*.yaml")),
    ]
    run("apply", *[arg for crd in crds for arg in ("-f", str(crd))])
    return run


def convert(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infergate", "convert", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_export_convert_apply(kubectl: Any) -> None:
    kubectl("apply", "-f", str(EXAMPLE_DIR))
    exported = kubectl(
        "get",
        "inferencepools.inference.networking.x-k8s.io,inferencemodels.inference.networking.x-k8s.io,"
        "httproutes.gateway.networking.k8s.io",
        "-n",
        "default",
        "-o",
        "yaml",
    )
    # Stored objects carry server fields, CRD-defaulted status and kubectl's last-applied annotation.
    assert "creationTimestamp" in exported and "status:" in exported

    # Default options: only kinds of the v1.0.0 bundle (the weighted split becomes backendRefs).
    converted = convert("-f", "-", stdin=exported)
    assert converted.returncode == 0, converted.stderr
    assert "Warning: InferenceModel default/food-review: spec.targetModels:" in converted.stderr

    # The output is a List (the input was one). kubectl's client-side validation of a List fails
    # against infergate's embedded API server ("could not find the requested resource"; it does for any
    # List, e.g. of one ConfigMap), so only the server validates here: schemas and CEL of the upstream CRDs.
    applied = kubectl("apply", "--validate=false", "-f", "-", stdin=converted.stdout)
    assert "inferencepool.inference.networking.k8s.io/vllm-llama3-8b-instruct-ga created" in applied
    for name in ("base-model", "food-review", "movie-critique"):
        assert f"inferenceobjective.inference.networking.x-k8s.io/{name} created" in applied
    assert "httproute.gateway.networking.k8s.io/llm-route configured" in applied

    pool = json.loads(
        kubectl(
            "get",
            "inferencepools.inference.networking.k8s.io",
            "vllm-llama3-8b-instruct-ga",
            "-n",
            "default",
            "-o",
            "json",
        )
    )
    assert pool["spec"]["endpointPickerRef"]["port"] == {"number": 9002}
    assert pool["spec"]["selector"] == {"matchLabels": {"app": "vllm-llama3-8b-instruct"}}
    objectives = json.loads(
        kubectl("get", "inferenceobjectives.inference.networking.x-k8s.io", "-n", "default", "-o", "json")
    )
    assert {o["metadata"]["name"]: o["spec"]["priority"] for o in objectives["items"]} == {
        "base-model": 2,
        "food-review": 1,
        "movie-critique": -1,
    }
    route = json.loads(
        kubectl("get", "httproutes.gateway.networking.k8s.io", "llm-route", "-n", "default", "-o", "json")
    )
    models = [r["matches"][0].get("headers", [{}])[0].get("value") for r in route["spec"]["rules"]]
    assert models == ["meta-llama/Llama-3.1-8B-Instruct", "food-review", "movie-critique", None]
    assert {b["group"] for r in route["spec"]["rules"] for b in r["backendRefs"]} == {
        "inference.networking.k8s.io"
    }
    # food-review's 90/10 canary, stored as two weighted backendRefs to the GA pool with their filters
    canary = route["spec"]["rules"][1]["backendRefs"]
    assert [
        (b["name"], b["weight"], b["filters"][0]["requestHeaderModifier"]["set"][0]["value"]) for b in canary
    ] == [
        ("vllm-llama3-8b-instruct-ga", 90, "food-review-1"),
        ("vllm-llama3-8b-instruct-ga", 10, "food-review-2"),
    ]


def test_the_server_rejects_what_upstreams_conversion_would_produce(kubectl: Any) -> None:
    """Guard for the test above: the server does check the v1 CEL rule that the 9002 default satisfies."""
    converted = convert(
        "-f", str(EXAMPLE_DIR / "02-inferencepool.yaml"), "--pool-name-suffix", "-nocheck", stdin=""
    )
    assert converted.returncode == 0
    without_port = converted.stdout.replace("    port:\n      number: 9002\n", "")
    assert "9002" not in without_port
    out = kubectl("apply", "--validate=false", "-f", "-", stdin=without_port, ok=False)
    assert "port is required when kind is 'Service'" in out
