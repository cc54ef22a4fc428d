"""Today's APIs: the GA InferencePool as of GIE v1.6.0 (and v1.0.0 objects still accepted), the
x-k8s.io (GIE v1.5.0) and llm-d.ai (llm-d router v0.10.0) InferenceObjective and
InferenceModelRewrite."""

from __future__ import annotations

from typing import Any

import pytest

from infergate import api
from infergate.api import crds, inference_v1, llmd_v1alpha2, registry

V1_0 = registry.RELEASE_GIE_V1_0
V1_6 = registry.RELEASE_GIE_V1_6


def pool(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "vllm"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
    }
    base.update(spec)
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "pool", "namespace": "default"},
        "spec": {k: v for k, v in base.items() if v is not None},
    }


def messages(obj: dict[str, Any], release: str | None = None) -> list[str]:
    return [str(e) for e in api.validate(obj, release=release)]


def test_a_v1_0_pool_is_valid_under_both_releases_and_gets_the_http_default() -> None:
    assert messages(pool(), V1_0) == []
    assert messages(pool(), V1_6) == []
    assert messages(pool()) == []
    loaded = api.load(pool())
    assert isinstance(loaded, inference_v1.InferencePool)
    assert loaded.spec.app_protocol == "http"
    assert "appProtocol" not in api.load(pool(), release=V1_0).to_dict()["spec"]


def test_the_default_type_of_the_v1_pool_is_v1_6() -> None:
    t = registry.by_gvk("inference.networking.k8s.io/v1", "InferencePool")
    assert t is not None and t.release == V1_6 and t.model is inference_v1.InferencePool
    old = registry.by_gvk("inference.networking.k8s.io/v1", "InferencePool", V1_0)
    assert old is not None and old.model is inference_v1.InferencePoolV1_0


def test_up_to_eight_unique_target_ports() -> None:
    eight = [{"number": 8000 + i} for i in range(8)]
    assert messages(pool(targetPorts=eight), V1_6) == []
    nine = [{"number": 8000 + i} for i in range(9)]
    assert messages(pool(targetPorts=nine), V1_6)[0] == "spec.targetPorts: Too many: 9: must have at most 8 items"
    dup = [{"number": 8000}, {"number": 8001}, {"number": 8000}]
    assert messages(pool(targetPorts=dup), V1_6) == [
        "spec.targetPorts: Invalid value: \"array\": port number must be unique"
    ]
    # v1.0.0 allows one port only
    assert messages(pool(targetPorts=eight[:2]), V1_0)[0] == "spec.targetPorts: Too many: 2: must have at most 1 items"


def test_app_protocol_values() -> None:
    assert messages(pool(appProtocol="kubernetes.io/h2c"), V1_6) == []
    assert messages(pool(appProtocol="http"), V1_6) == []
    err = messages(pool(appProtocol="grpc"), V1_6)[0]
    assert err.startswith('spec.appProtocol: Unsupported value: "grpc"')
    assert messages(pool(appProtocol="http"), V1_0) == ['unknown field "spec.appProtocol"']


def test_endpoint_picker_ref_is_optional_since_v1_6() -> None:
    assert messages(pool(endpointPickerRef=None), V1_6) == []
    assert messages(pool(endpointPickerRef=None), V1_0)[0] == "spec.endpointPickerRef: Required value"
    loaded = api.load(pool(endpointPickerRef=None))
    assert isinstance(loaded, inference_v1.InferencePool) and loaded.spec.endpoint_picker_ref is None


def test_selector_holds_one_to_sixty_four_labels() -> None:
    assert messages(pool(selector={"matchLabels": {}}), V1_0) == []
    assert messages(pool(selector={"matchLabels": {}}), V1_6) == [
        "spec.selector.matchLabels: Invalid value: 0: must have at least 1 properties"
    ]
    many = {f"l{i}": "x" for i in range(65)}
    assert messages(pool(selector={"matchLabels": many}), V1_6)[0].startswith("spec.selector.matchLabels: ")


def test_status_parents_controller_name() -> None:
    obj = pool()
    parent = {"parentRef": {"name": "gw"}, "controllerName": "infergate.io/gateway"}
    obj["status"] = {"parents": [parent]}
    assert messages(obj, V1_6) == []
    assert messages(obj, V1_0) == ['unknown field "status.parents[0].controllerName"']
    parent["controllerName"] = "no-slash"
    (err,) = messages(obj, V1_6)
    assert err.startswith("status.parents[0].controllerName: Invalid value: \"no-slash\"")


def test_endpoint_picker_ref_missing_reason() -> None:
    assert inference_v1.REASON_ENDPOINT_PICKER_REF_MISSING == "EndpointPickerRefMissing"


# ---------------------------------------------------------------------------------------
# InferenceObjective and InferenceModelRewrite in both groups

GROUPS = ("inference.networking.x-k8s.io/v1alpha2", "llm-d.ai/v1alpha2")


def rewrite(api_version: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "rw", "namespace": "default"},
        "spec": {"poolRef": {"name": "pool"}, "rules": rules},
    }


@pytest.mark.parametrize("api_version", GROUPS)
def test_rewrite_validates_and_defaults(api_version: str) -> None:
    rules = [
        {"matches": [{"model": {"value": "food-review"}}],
         "targets": [{"modelRewrite": "food-review-v1", "weight": 90}, {"modelRewrite": "food-review-v2", "weight": 10}]},
        {"targets": [{"modelRewrite": "base"}]},
    ]
    assert messages(rewrite(api_version, rules)) == []
    loaded = api.load(rewrite(api_version, rules)).to_dict()
    assert loaded["spec"]["rules"][0]["matches"][0]["model"]["type"] == "Exact"
    assert loaded["spec"]["poolRef"] == {"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                         "name": "pool"}


@pytest.mark.parametrize("api_version", GROUPS)
def test_rewrite_rejects_bad_values(api_version: str) -> None:
    assert messages(rewrite(api_version, [{"targets": []}])) == [
        "spec.rules[0].targets: Invalid value: 0: must have at least 1 items"
    ]
    bad_weight = [{"targets": [{"modelRewrite": "m", "weight": 0}]}]
    (err,) = messages(rewrite(api_version, bad_weight))
    assert err.startswith("spec.rules[0].targets[0].weight: Invalid value: 0: ")
    bad_type = [{"matches": [{"model": {"type": "Prefix", "value": "m"}}], "targets": [{"modelRewrite": "m"}]}]
    (err,) = messages(rewrite(api_version, bad_type))
    assert err.startswith('spec.rules[0].matches[0].model.type: Unsupported value: "Prefix"')
    empty_value = [{"matches": [{"model": {"value": ""}}], "targets": [{"modelRewrite": "m"}]}]
    (err,) = messages(rewrite(api_version, empty_value))
    assert err.startswith("spec.rules[0].matches[0].model.value: Invalid value: \"\"")
    no_rules = rewrite(api_version, [])
    del no_rules["spec"]["rules"]
    assert messages(no_rules) == ["spec.rules: Required value"]


@pytest.mark.parametrize("api_version", GROUPS)
def test_objective_in_both_groups(api_version: str) -> None:
    obj = {"apiVersion": api_version, "kind": "InferenceObjective",
           "metadata": {"name": "o", "namespace": "default"},
           "spec": {"priority": 2, "poolRef": {"name": "pool"}}}
    assert messages(obj) == []


def test_llmd_objective_priority_is_int32() -> None:
    t = registry.by_gvk("llm-d.ai/v1alpha2", "InferenceObjective")
    assert t is not None and t.model is llmd_v1alpha2.InferenceObjective
    assert t.schema()["properties"]["spec"]["properties"]["priority"] == {"type": "integer", "format": "int32"}
    x = registry.by_gvk("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective")
    assert x is not None and x.schema()["properties"]["spec"]["properties"]["priority"] == {"type": "integer"}


def test_bundles_of_today() -> None:
    names = lambda b: [c["metadata"]["name"] for c in crds.generate(b)]  # noqa: E731
    assert names("gie-v1.6") == ["inferencepools.inference.networking.k8s.io"]
    assert names("llm-d") == ["inferencemodelrewrites.llm-d.ai", "inferenceobjectives.llm-d.ai"]
    assert names("gie-v1.5") == ["inferencemodelrewrites.inference.networking.x-k8s.io",
                                 "inferenceobjectives.inference.networking.x-k8s.io"]
    current = names("current")
    assert current[:4] == names("gateway-api") and current[4:] == names("gie-v1.6") + names("llm-d")
    (pool_crd,) = crds.generate("gie-v1.6")
    assert pool_crd["metadata"]["annotations"]["inference.networking.k8s.io/bundle-version"] == "v1.6.0"
