"""The stable entry points of ``infergate.api``: load, validate, apply_defaults, registry."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infergate import api
from infergate.api import gateway_v1, inference_v1, inference_v1alpha2, registry


def ga_pool(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "vllm"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "pool", "namespace": "default"},
        "spec": spec,
    }


def test_load_applies_defaults_and_types() -> None:
    pool = api.load(ga_pool())
    assert isinstance(pool, inference_v1.InferencePool)
    assert pool.spec.endpoint_picker_ref.failure_mode == "FailClose"
    assert pool.spec.endpoint_picker_ref.kind == "Service"
    assert pool.to_dict()["spec"]["endpointPickerRef"] == {
        "group": "",
        "kind": "Service",
        "name": "epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }


def test_field_error_in_api_server_form() -> None:
    errs = api.validate(ga_pool(targetPorts=[{"number": 0}]))
    assert [str(e) for e in errs] == [
        "spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1"
    ]
    e = errs[0]
    assert (e.path, e.type, e.value) == ("spec.targetPorts[0].number", "Invalid value", 0)


def test_validation_failed_message() -> None:
    """Under the v1.0.0 CRD (one target port)."""
    obj = ga_pool(targetPorts=[{"number": 0}, {"number": 70000}])
    with pytest.raises(api.ValidationFailed) as info:
        api.load(obj, release="v1.0.0")
    exc = info.value
    assert exc.kind == "InferencePool" and exc.name == "pool"
    assert str(exc) == (
        'InferencePool.inference.networking.k8s.io "pool" is invalid: ['
        "spec.targetPorts: Too many: 2: must have at most 1 items, "
        "spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1, "
        "spec.targetPorts[1].number: Invalid value: 70000: must be less than or equal to 65535, "
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation]"
    )


def test_validation_failed_message_v1_6() -> None:
    """Today's GA (v1.6.0, the default): two ports are allowed, their numbers are still bounded."""
    obj = ga_pool(targetPorts=[{"number": 0}, {"number": 70000}])
    with pytest.raises(api.ValidationFailed) as info:
        api.load(obj)
    assert str(info.value) == (
        'InferencePool.inference.networking.k8s.io "pool" is invalid: ['
        "spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1, "
        "spec.targetPorts[1].number: Invalid value: 70000: must be less than or equal to 65535]"
    )


def test_unknown_fields_are_reported() -> None:
    obj = ga_pool()
    obj["spec"]["extra"] = 1
    obj["metadata"]["bogus"] = "x"
    errs = api.validate(obj)
    assert [str(e) for e in errs] == ['unknown field "spec.extra"', 'unknown field "metadata.bogus"']
    with pytest.raises(api.ValidationFailed) as info:
        api.load(obj)
    assert str(info.value).startswith("strict decoding error: unknown field")
    assert info.value.code == 400


def test_apply_defaults_is_plain_json() -> None:
    out = api.apply_defaults(
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceModel",
            "metadata": {"name": "m"},
            "spec": {"modelName": "llama", "poolRef": {"name": "p"}},
        }
    )
    assert out["spec"]["poolRef"] == {
        "group": "inference.networking.x-k8s.io",
        "kind": "InferencePool",
        "name": "p",
    }
    assert "status" not in out


def test_validate_update_transition_rule() -> None:
    old = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": "m"},
        "spec": {"modelName": "llama", "poolRef": {"name": "p"}},
    }
    new = copy.deepcopy(old)
    assert api.validate_update(old, new) == []
    new["spec"]["modelName"] = "other"
    assert [str(e) for e in api.validate_update(old, new)] == [
        'spec.modelName: Invalid value: "string": modelName is immutable'
    ]


def test_registry_lookups() -> None:
    t = registry.by_gvk("inference.networking.k8s.io/v1", "InferencePool")
    assert t is not None and t.short_names == ("infpool",) and t.model is inference_v1.InferencePool
    preview = registry.by_gvk("inference.networking.x-k8s.io/v1alpha2", "InferencePool")
    assert preview is not None and preview.model is inference_v1alpha2.InferencePool
    x = registry.by_gvk("inference.networking.x-k8s.io/v1alpha2", "InferencePool", release="v1.0.0")
    assert x is not None and x.model is inference_v1alpha2.XInferencePool and x.short_names == ("xinfpool",)
    gw = registry.by_plural("gateway.networking.k8s.io", "gateways")
    assert gw is not None and gw.model is gateway_v1.Gateway and gw.served_versions == ("v1", "v1beta1")
    assert registry.by_gvk("gateway.networking.k8s.io/v1beta1", "HTTPRoute") is not None
    rg = registry.by_gvk("gateway.networking.k8s.io/v1beta1", "ReferenceGrant")
    assert rg is not None and not rg.status_subresource
    assert registry.by_gvk("gateway.networking.k8s.io/v1", "ReferenceGrant") is None
    kinds = {(t.group, t.kind) for t in registry.all_types()}
    assert ("", "Pod") in kinds and ("", "Namespace") in kinds


def test_builtins_are_loose() -> None:
    pod = api.load(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "vllm"}},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {}}], "restartPolicy": "Always"},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert isinstance(pod, api.core.Pod)
    assert pod.is_ready() and pod.pod_ip == "10.0.0.1"
    assert pod.to_dict()["spec"]["restartPolicy"] == "Always"


def test_unknown_kind() -> None:
    errs = api.validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert [str(e) for e in errs] == [
        'kind: Invalid value: "Widget": no matches for kind "Widget" in version "example.com/v1"'
    ]
