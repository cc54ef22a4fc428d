"""The real kubectl against the embedded API server with today's CRDs (`infergate crds --bundle
current` + `--bundle gie-v1.5`): the v1.6.0 InferencePool and both groups of InferenceObjective
and InferenceModelRewrite are served (get/apply), validated with field paths."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infergate.api import crds
from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer

from ..support.clitool import CliTool

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("api-kubectl-current")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("apiserver-current")) as handle:
        yield handle


@pytest.fixture(scope="module")
def kubectl(kubectl_bin: str, server: ThreadedAPIServer, tmp_path_factory: pytest.TempPathFactory) -> CliTool:
    tool = CliTool(kubectl_bin, server.kubeconfig_path, tmp_path_factory.mktemp("home"))
    manifest = tmp_path_factory.mktemp("crds") / "current.yaml"
    manifest.write_text(crds.dump_yaml(crds.generate("current") + crds.generate("gie-v1.5")))
    out = tool("apply", "-f", str(manifest)).stdout
    for name in ("inferencepools.inference.networking.k8s.io", "inferencemodelrewrites.llm-d.ai",
                 "inferenceobjectives.llm-d.ai", "inferencemodelrewrites.inference.networking.x-k8s.io",
                 "inferenceobjectives.inference.networking.x-k8s.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{name} created" in out
    return tool


@pytest.fixture
def ns(kubectl: CliTool) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


POOL_V1_6 = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: dp-pool}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 8000}, {number: 8001}, {number: 8002}]
  appProtocol: kubernetes.io/h2c
"""

POOL_V1_0 = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: old-pool}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
"""

REWRITE = """\
apiVersion: {group}/v1alpha2
kind: InferenceModelRewrite
metadata: {{name: food-review}}
spec:
  poolRef: {{name: dp-pool}}
  rules:
  - matches: [{{model: {{value: food-review}}}}]
    targets:
    - {{modelRewrite: food-review-v1, weight: 90}}
    - {{modelRewrite: food-review-v2, weight: 10}}
"""

OBJECTIVE = """\
apiVersion: {group}/v1alpha2
kind: InferenceObjective
metadata: {{name: critical}}
spec:
  priority: 10
  poolRef: {{name: dp-pool}}
"""


def test_v1_6_pool_and_v1_0_pool_are_served(kubectl: CliTool, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=POOL_V1_6)
    kubectl("apply", "-n", ns, "-f", "-", input=POOL_V1_0)
    got = kubectl("get", "-n", ns, "infpool", "dp-pool", "-o", "json").json()
    assert [p["number"] for p in got["spec"]["targetPorts"]] == [8000, 8001, 8002]
    assert got["spec"]["appProtocol"] == "kubernetes.io/h2c"
    assert "endpointPickerRef" not in got["spec"]
    old = kubectl("get", "-n", ns, "inferencepool", "old-pool", "-o", "json").json()
    assert old["spec"]["appProtocol"] == "http"  # the v1.6.0 default


def test_invalid_v1_6_pools_are_rejected_with_field_paths(kubectl: CliTool, ns: str) -> None:
    dup = POOL_V1_6.replace("{number: 8002}", "{number: 8000}")
    result = kubectl("apply", "-n", ns, "-f", "-", input=dup, check=False)
    assert result.returncode != 0
    assert "spec.targetPorts" in result.stderr and "port number must be unique" in result.stderr
    bad = POOL_V1_6.replace("kubernetes.io/h2c", "grpc")
    result = kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert result.returncode != 0 and "spec.appProtocol" in result.stderr


@pytest.mark.parametrize("group", ["llm-d.ai", "inference.networking.x-k8s.io"])
def test_rewrite_and_objective_in_both_groups(kubectl: CliTool, ns: str, group: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", input=REWRITE.format(group=group))
    kubectl("apply", "-n", ns, "-f", "-", input=OBJECTIVE.format(group=group))
    got = kubectl("get", "-n", ns, f"inferencemodelrewrites.{group}", "food-review", "-o", "json").json()
    assert got["apiVersion"] == f"{group}/v1alpha2"
    assert got["spec"]["rules"][0]["matches"][0]["model"] == {"type": "Exact", "value": "food-review"}
    assert got["spec"]["poolRef"]["group"] == "inference.networking.k8s.io"
    table = kubectl("get", "-n", ns, f"inferenceobjectives.{group}").stdout
    assert "critical" in table and "dp-pool" in table
    bad = REWRITE.format(group=group).replace("weight: 10", "weight: 0")
    result = kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert result.returncode != 0 and "spec.rules[0].targets[1].weight" in result.stderr

