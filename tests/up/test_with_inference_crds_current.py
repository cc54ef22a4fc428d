"""`infergate up --with-inference-crds current`: today's GA world (GIE v1.6.0's InferencePool,
the llm-d router's InferenceObjective and InferenceModelRewrite) beside Gateway API."""

from __future__ import annotations

from click.testing import CliRunner

from infergate.cli.up import command as up_command
from infergate.up.cluster import crd_documents


def test_current_bundle_is_gie_v1_6_and_llm_d() -> None:
    docs = {d["metadata"]["name"]: d for d in crd_documents("current")}
    assert set(docs) == {
        "gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
        "inferencepools.inference.networking.k8s.io",
        "inferenceobjectives.llm-d.ai", "inferencemodelrewrites.llm-d.ai"}
    pool = docs["inferencepools.inference.networking.k8s.io"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = pool["properties"]["spec"]
    assert "appProtocol" in spec["properties"] and "endpointPickerRef" not in spec.get("required", [])  # v1.6.0


def test_the_option_offers_current() -> None:
    result = CliRunner().invoke(up_command, ["--help"])
    assert result.exit_code == 0
    assert "[preview|ga|both|current]" in result.output
    bad = CliRunner().invoke(up_command, ["--with-inference-crds", "v9"])
    assert bad.exit_code == 2 and "'preview', 'ga', 'both', 'current'" in bad.output
