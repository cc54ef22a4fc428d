"""Fixtures for the conversion tests: the example installation and an upstream-CRD checker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api.conversion import Document, read_documents
from infergate.api.validation import apply_schema_defaults, find_unknown_fields, validate_tree

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "preview"

# Upstream CRD files (under ../shared/reference) for each converted kind.
CRD_FILES = {
    (
        "inference.networking.k8s.io/v1",
        "InferencePool",
    ): "gie-v1.0.0/crd/inference.networking.k8s.io_inferencepools.yaml",
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective"): (
        "gie-v1.0.0/crd/inference.networking.x-k8s.io_inferenceobjectives.yaml"
    ),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModelRewrite"): (
        "gie-v1.5.0/crd/inference.networking.x-k8s.io_inferencemodelrewrites.yaml"
    ),
    ("inference.networking.x-k8s.io/v1alpha2", "InferencePool"): (
        "gie-v0.3.0/crd/inference.networking.x-k8s.io_inferencepools.yaml"
    ),
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceModel"): (
        "gie-v0.3.0/crd/inference.networking.x-k8s.io_inferencemodels.yaml"
    ),
    (
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
    ): "gateway-api-v1.3.0/crd/gateway.networking.k8s.io_httproutes.yaml",
    (
        "gateway.networking.k8s.io/v1",
        "Gateway",
    ): "gateway-api-v1.3.0/crd/gateway.networking.k8s.io_gateways.yaml",
    ("gateway.networking.k8s.io/v1", "GatewayClass"): (
        "gateway-api-v1.3.0/crd/gateway.networking.k8s.io_gatewayclasses.yaml"
    ),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"): (
        "gateway-api-v1.3.0/crd/gateway.networking.k8s.io_referencegrants.yaml"
    ),
}


def check_against_schema(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Problems the API server would report for ``obj`` under ``schema`` (empty when valid)."""
    unknown = find_unknown_fields(obj, schema)
    if unknown:
        return [f"unknown field {path!r}" for path in unknown]
    return [str(e) for e in validate_tree(apply_schema_defaults(obj, schema), schema)]


@pytest.fixture(scope="session")
def example_documents() -> list[Document]:
    docs: list[Document] = []
    for path in sorted(EXAMPLE_DIR.glob("*.yaml")):
        docs.extend(read_documents(path.read_text(), str(path)))
    return docs


@pytest.fixture(scope="session")
def upstream_schemas(reference_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """openAPIV3Schema of each upstream CRD version, keyed by (apiVersion, kind)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (api_version, kind), rel in CRD_FILES.items():
        crd = yaml.safe_load((reference_dir / rel).read_text())
        version = api_version.rpartition("/")[2]
        (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version]
        out[(api_version, kind)] = schema
    return out


@pytest.fixture(scope="session")
def upstream_check(
    upstream_schemas: dict[tuple[str, str], dict[str, Any]],
) -> Callable[[dict[str, Any]], list[str]]:
    """Check an object against its upstream CRD schema (GIE v0.3.0, v1.0.0, v1.5.0, Gateway API v1.3.0).

    Uses infergate.api's schema machinery (unknown fields, defaulting, OpenAPI + CEL) on the
    upstream CRD's own openAPIV3Schema, so the rules are upstream's, not infergate's models.
    """

    def check(obj: dict[str, Any]) -> list[str]:
        key = (obj["apiVersion"], obj["kind"])
        assert key in upstream_schemas, f"no upstream CRD for {key}"
        return check_against_schema(obj, upstream_schemas[key])

    return check
