"""Whole objects of every kind: load, defaults, to_dict, metadata, updates, error order."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from infergate import api
from infergate.api import gateway_v1, inference_v1, inference_v1alpha2
from infergate.api.objects import lookup

PREVIEW_POOL = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferencePool",
    "metadata": {"name": "vllm-llama3", "namespace": "default"},
    "spec": {"selector": {"app": "vllm-llama3"}, "targetPortNumber": 8000, "extensionRef": {"name": "epp"}},
}
MODEL = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceModel",
    "metadata": {"name": "food-review", "namespace": "default"},
    "spec": {
        "modelName": "food-review",
        "criticality": "Standard",
        "poolRef": {"name": "vllm-llama3"},
        "targetModels": [{"name": "food-review-1", "weight": 100}],
    },
}
OBJECTIVE = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
    "kind": "InferenceObjective",
    "metadata": {"name": "food-review", "namespace": "default"},
    "spec": {"priority": 1, "poolRef": {"name": "vllm-llama3"}},
}
GA_POOL = {
    "apiVersion": "inference.networking.k8s.io/v1",
    "kind": "InferencePool",
    "metadata": {"name": "vllm-llama3", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "vllm-llama3"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {"name": "epp", "port": {"number": 9002}, "failureMode": "FailOpen"},
    },
    "status": {
        "parents": [
            {
                "parentRef": {"name": "gw", "namespace": "default"},
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Accepted",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
            }
        ]
    },
}
GATEWAY_CLASS = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "GatewayClass",
    "metadata": {"name": "infergate"},
    "spec": {"controllerName": "infergate.dev/gateway-controller"},
}
GATEWAY = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": {"name": "inference-gateway", "namespace": "default"},
    "spec": {
        "gatewayClassName": "infergate",
        "listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {
                "name": "https",
                "port": 443,
                "protocol": "HTTPS",
                "hostname": "*.example.com",
                "tls": {"certificateRefs": [{"name": "cert"}]},
                "allowedRoutes": {
                    "namespaces": {"from": "Selector", "selector": {"matchLabels": {"a": "b"}}}
                },
            },
        ],
        "addresses": [{"value": "10.0.0.1"}, {"type": "Hostname", "value": "gw.example.com"}],
    },
}
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "llm-route", "namespace": "default"},
    "spec": {
        "parentRefs": [{"name": "inference-gateway"}],
        "hostnames": ["llm.example.com"],
        "rules": [
            {
                "matches": [
                    {
                        "path": {"type": "PathPrefix", "value": "/v1"},
                        "headers": [{"name": "X-Gateway-Model-Name", "value": "food-review"}],
                        "method": "POST",
                    }
                ],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "x-gateway-inference-objective", "value": "food-review"}]
                        },
                    }
                ],
                "backendRefs": [
                    {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "vllm-llama3"}
                ],
                "timeouts": {"request": "300s"},
            },
            {"backendRefs": [{"name": "echo", "port": 8080, "weight": 10}]},
        ],
    },
}
GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "allow-routes", "namespace": "models"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
        "to": [{"group": "inference.networking.k8s.io", "kind": "InferencePool"}],
    },
}

OBJECTS = {
    "preview-pool": (PREVIEW_POOL, inference_v1alpha2.InferencePool),
    "model": (MODEL, inference_v1alpha2.InferenceModel),
    "objective": (OBJECTIVE, inference_v1alpha2.InferenceObjective),
    "ga-pool": (GA_POOL, inference_v1.InferencePool),
    "gatewayclass": (GATEWAY_CLASS, gateway_v1.GatewayClass),
    "gateway": (GATEWAY, gateway_v1.Gateway),
    "httproute": (ROUTE, gateway_v1.HTTPRoute),
    "referencegrant": (GRANT, gateway_v1.ReferenceGrant),
}


@pytest.mark.parametrize("name", list(OBJECTS))
def test_valid_objects_load_and_round_trip(name: str) -> None:
    obj, model = OBJECTS[name]
    assert api.validate(obj) == []
    loaded = api.load(obj)
    assert type(loaded) is model
    stored = api.apply_defaults(obj)
    assert loaded.to_dict() == stored
    # what the server stores is itself valid and a fixed point of defaulting
    assert api.validate(stored) == []
    assert api.apply_defaults(stored) == stored
    # typed objects rebuild from their own JSON
    assert model.model_validate(loaded.to_dict()) == loaded


def test_defaults_applied_like_the_api_server() -> None:
    gw = api.apply_defaults(GATEWAY)
    http, https = gw["spec"]["listeners"]
    assert http["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert https["tls"]["mode"] == "Terminate"
    assert https["tls"]["certificateRefs"] == [{"group": "", "kind": "Secret", "name": "cert"}]
    assert gw["spec"]["addresses"][0]["type"] == "IPAddress"
    assert [c["type"] for c in gw["status"]["conditions"]] == ["Accepted", "Programmed"]
    assert {c["reason"] for c in gw["status"]["conditions"]} == {"Pending"}
    route = api.apply_defaults(ROUTE)
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "inference-gateway",
    }
    assert route["spec"]["rules"][1]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    header = route["spec"]["rules"][0]["matches"][0]["headers"][0]
    assert header["type"] == "Exact"
    assert route["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1
    empty_rules = api.apply_defaults({**ROUTE, "spec": {"parentRefs": [{"name": "gw"}]}})
    assert empty_rules["spec"]["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]


def test_x_k8s_pool_status_default_depends_on_release() -> None:
    assert "status" not in api.apply_defaults(PREVIEW_POOL)
    v1 = api.apply_defaults(PREVIEW_POOL, release="v1.0.0")
    assert v1["status"]["parent"][0]["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Status",
        "name": "default",
    }
    loaded = api.load(PREVIEW_POOL, release="v1.0.0")
    assert isinstance(loaded, inference_v1alpha2.XInferencePool)


def test_x_k8s_pool_of_either_release_loads_without_a_release() -> None:
    obj = copy.deepcopy(PREVIEW_POOL)
    assert type(api.load(obj)) is inference_v1alpha2.InferencePool  # both accept it: the preview wins
    obj["status"] = {"parent": [{"parentRef": {"group": "gateway.networking.k8s.io", "name": "gw"}}]}
    loaded = api.load(obj)
    assert type(loaded) is inference_v1alpha2.XInferencePool
    assert api.apply_defaults(obj)["status"]["parent"][0]["parentRef"]["kind"] == "Gateway"
    assert api.validate(obj) == []
    errors = [str(e) for e in api.validate(obj, release="v0.3.0")]
    assert errors == ['unknown field "status.parent[0].parentRef.group"']
    obj["status"]["parent"][0]["parentRef"]["uid"] = "u"  # valid in neither: the preview's errors
    assert [str(e) for e in api.validate(obj)] == ['unknown field "status.parent[0].parentRef.group"']


def test_model_fields_are_typed() -> None:
    route = api.load(ROUTE)
    assert isinstance(route, gateway_v1.HTTPRoute)
    rule = route.spec.rules[0] if route.spec.rules else None
    assert rule is not None and rule.backend_refs is not None
    assert rule.backend_refs[0].kind == "InferencePool"
    assert rule.matches is not None and rule.matches[0].headers is not None
    assert rule.matches[0].headers[0].name == "X-Gateway-Model-Name"
    grant = api.load(GRANT)
    assert isinstance(grant, gateway_v1.ReferenceGrant) and grant.spec is not None
    assert grant.spec.from_[0].namespace == "default"
    assert grant.to_dict()["spec"]["from"][0]["kind"] == "HTTPRoute"


def test_python_constructed_object_to_dict() -> None:
    pool = inference_v1.InferencePool(
        metadata=api.ObjectMeta(name="p", namespace="default"),
        spec=inference_v1.InferencePoolSpec(
            selector=inference_v1.LabelSelector(match_labels={"app": "x"}),
            target_ports=[inference_v1.Port(number=8000)],
            endpoint_picker_ref=inference_v1.EndpointPickerRef(
                name="epp", port=inference_v1.Port(number=9002)
            ),
        ),
    )
    d = pool.to_dict()
    assert d["apiVersion"] == "inference.networking.k8s.io/v1" and d["kind"] == "InferencePool"
    assert d["spec"]["targetPorts"] == [{"number": 8000}]
    assert "status" not in d
    assert api.validate(d) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda o: o["metadata"].pop("name"),
            ["metadata.name: Required value: name or generateName is required"],
        ),
        (
            lambda o: o["metadata"].update(name="Bad_Name"),
            [
                'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
                "(e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ],
        ),
        (
            lambda o: o["metadata"].update(namespace="Bad"),
            [
                'metadata.namespace: Invalid value: "Bad": a lowercase RFC 1123 label must consist of lower case '
                "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
                "'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ],
        ),
        (
            lambda o: o["metadata"].update(labels={"ok": "bad value!"}),
            [
                'metadata.labels: Invalid value: "bad value!": a valid label must be an empty string or consist '
                "of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ],
        ),
        (
            lambda o: o["metadata"].update(annotations={"example.com/": "x"}),
            ['metadata.annotations: Invalid value: "example.com/": name part must be non-empty'],
        ),
    ],
    ids=["name-required", "name-format", "namespace-format", "label-value", "annotation-key"],
)
def test_metadata_validation(mutate: Any, expected: list[str]) -> None:
    obj = copy.deepcopy(OBJECTIVE)
    mutate(obj)
    errors = [str(e) for e in api.validate(obj)]
    assert errors[: len(expected)] == expected


def test_generate_name_is_enough() -> None:
    obj = copy.deepcopy(OBJECTIVE)
    obj["metadata"] = {"generateName": "obj-", "namespace": "default"}
    assert api.validate(obj) == []


def test_cel_rules_are_blocked_by_schema_errors() -> None:
    obj = copy.deepcopy(GA_POOL)
    del obj["spec"]["endpointPickerRef"]["port"]
    assert [str(e) for e in api.validate(obj)] == [
        "spec.endpointPickerRef: Invalid value: \"object\": port is required when kind is 'Service' or "
        "unspecified (defaults to 'Service')"
    ]
    obj["spec"]["endpointPickerRef"]["failureMode"] = "Sometimes"
    assert [str(e) for e in api.validate(obj)] == [
        'spec.endpointPickerRef.failureMode: Unsupported value: "Sometimes": supported values: "FailOpen", '
        '"FailClose"',
        '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; '
        "correct the existing errors to complete validation",
    ]


def test_type_errors() -> None:
    obj = copy.deepcopy(PREVIEW_POOL)
    obj["spec"]["targetPortNumber"] = "8000"
    obj["spec"]["selector"] = {"app": 5}
    errors = [str(e) for e in api.validate(obj)]
    assert errors[:2] == [
        'spec.selector.app: Invalid value: "integer": must be of type string',
        'spec.targetPortNumber: Invalid value: "string": must be of type integer',
    ]


def test_gateway_address_one_of() -> None:
    obj = copy.deepcopy(GATEWAY)
    obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "not-an-ip"}]
    errors = [str(e) for e in api.validate(obj)]
    assert (
        'spec.addresses[0]: Invalid value: "object": must validate one and only one schema (oneOf). Found none valid'
        in errors
    )
    assert 'spec.addresses[0].value: Invalid value: "not-an-ip": must be of type ipv4' in errors
    obj["spec"]["addresses"] = [
        {"type": "IPAddress", "value": "fd00::1"},
        {"type": "NamedAddress", "value": "x"},
    ]
    assert api.validate(obj) == []


def test_list_map_duplicates() -> None:
    obj = copy.deepcopy(ROUTE)
    headers = obj["spec"]["rules"][0]["matches"][0]["headers"]
    headers.append(dict(headers[0]))
    errors = [str(e) for e in api.validate(obj)]
    assert errors == [
        "spec.rules[0].matches[0].headers[1]: Duplicate value: "
        'map[string]interface {}{"name":"X-Gateway-Model-Name"}'
    ]


def test_update_immutable_fields_and_metadata() -> None:
    new = copy.deepcopy(MODEL)
    new["spec"]["modelName"] = "other"
    new["metadata"]["name"] = "renamed"
    assert [str(e) for e in api.validate_update(MODEL, new)] == [
        'metadata.name: Invalid value: "renamed": field is immutable',
        'spec.modelName: Invalid value: "string": modelName is immutable',
    ]
    with pytest.raises(api.ValidationFailed):
        api.load_update(MODEL, new)
    same = copy.deepcopy(MODEL)
    same["spec"]["criticality"] = "Critical"
    assert isinstance(api.load_update(MODEL, same), inference_v1alpha2.InferenceModel)


def test_update_ratchets_unchanged_invalid_values() -> None:
    old = copy.deepcopy(ROUTE)
    old["spec"]["rules"][1]["backendRefs"][0].pop("port")  # invalid, e.g. stored under an older schema
    assert api.validate(old) != []
    new = copy.deepcopy(old)
    new["spec"]["hostnames"] = ["other.example.com"]
    assert api.validate_update(old, new) == []
    new["spec"]["rules"][1]["backendRefs"].append({"name": "svc2"})
    assert [str(e) for e in api.validate_update(old, new)] == [
        'spec.rules[1].backendRefs[1]: Invalid value: "object": Must have port for Service reference'
    ]


def test_lookup_paths() -> None:
    obj = {"spec": {"selector": {"app.kubernetes.io/name": "x"}, "l": [{"a": 1}]}}
    assert lookup(obj, "spec.selector.app.kubernetes.io/name") == "x"
    assert lookup(obj, "spec.l[0].a") == 1
    assert lookup(obj, "spec.l[3].a") is not lookup(obj, "spec.l[0].a")


def test_validation_failed_for_built_in_and_status_causes() -> None:
    with pytest.raises(api.ValidationFailed) as info:
        api.load({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{}]}})
    assert str(info.value) == 'Service "s" is invalid: spec.ports[0].port: Required value'
    assert info.value.causes() == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports[0].port"}
    ]
