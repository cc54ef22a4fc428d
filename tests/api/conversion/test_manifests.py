"""Converting whole installations: the preview example, Lists from kubectl, passthrough, errors, reverse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from infergate import api
from infergate.api.conversion import (
    ConvertOptions,
    Document,
    convert_documents,
    read_documents,
    write_json,
    write_yaml,
)

Check = Callable[[dict[str, Any]], list[str]]
GA_POOL = "vllm-llama3-8b-instruct-ga"
GA_REF = {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": GA_POOL}


def kinds_and_names(objects: Any) -> list[tuple[str, str]]:
    return [(o.obj["kind"], o.obj["metadata"]["name"]) for o in objects]


def test_the_preview_installation_converts_to_valid_ga_objects(
    example_documents: list[Document], upstream_check: Check
) -> None:
    result = convert_documents(example_documents)
    assert result.ok, result.errors
    assert kinds_and_names(result.objects) == [
        ("GatewayClass", "infergate"),
        ("Gateway", "inference-gateway"),
        ("InferencePool", GA_POOL),
        ("InferenceObjective", "base-model"),
        ("InferenceObjective", "food-review"),
        ("InferenceObjective", "movie-critique"),
        ("HTTPRoute", "llm-route"),
    ]
    for out in result.objects:  # only kinds of the v1.0.0 bundles and Gateway API
        obj = out.obj
        assert upstream_check(obj) == [], obj["metadata"]["name"]
        assert api.validate(obj) == [], obj["metadata"]["name"]
    objects = {(o.obj["kind"], o.obj["metadata"]["name"]): o.obj for o in result.objects}

    pool = objects[("InferencePool", GA_POOL)]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"] == {
        "selector": {"matchLabels": {"app": "vllm-llama3-8b-instruct"}},
        "targetPorts": [{"number": 8000}],
        "endpointPickerRef": {
            "name": "vllm-llama3-8b-instruct-ga-epp",
            "port": {"number": 9002},
            "failureMode": "FailClose",
        },
    }
    priorities = {
        name: objects[("InferenceObjective", name)]["spec"]
        for name in ("base-model", "food-review", "movie-critique")
    }
    assert priorities == {
        "base-model": {"priority": 2, "poolRef": {"group": "inference.networking.k8s.io", "name": GA_POOL}},
        "food-review": {"priority": 1, "poolRef": {"group": "inference.networking.k8s.io", "name": GA_POOL}},
        "movie-critique": {
            "priority": -1,
            "poolRef": {"group": "inference.networking.k8s.io", "name": GA_POOL},
        },
    }

    rules = objects[("HTTPRoute", "llm-route")]["spec"]["rules"]
    by_model = {
        r["matches"][0]["headers"][0]["value"]: r["filters"][0]["requestHeaderModifier"]["set"]
        for r in rules
        if r["matches"][0].get("headers")
    }
    assert by_model == {
        "meta-llama/Llama-3.1-8B-Instruct": [
            {"name": "x-gateway-inference-objective", "value": "base-model"}
        ],
        "food-review": [{"name": "x-gateway-inference-objective", "value": "food-review"}],
        "movie-critique": [
            {"name": "x-gateway-inference-objective", "value": "movie-critique"},
            {"name": "x-gateway-model-name-rewrite", "value": "movie-critique-v1"},
        ],
    }
    # food-review's 90/10 canary: one backendRef per target model to the GA pool, each rewriting the model.
    food = next(r for r in rules if r["matches"][0].get("headers", [{}])[0].get("value") == "food-review")
    assert food["backendRefs"] == [
        {**GA_REF, "weight": w, "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "x-gateway-model-name-rewrite", "value": target}]}}]}
        for target, w in (("food-review-1", 90), ("food-review-2", 10))
    ]  # fmt: skip
    assert all(r["backendRefs"] == [GA_REF] for r in rules if r is not food)
    assert all(r["timeouts"] == {"request": "300s"} for r in rules)


def test_rewrite_resource_mode_keeps_the_split_as_an_inference_model_rewrite(
    example_documents: list[Document], upstream_check: Check
) -> None:
    result = convert_documents(example_documents, ConvertOptions(target_models="rewrite-resource"))
    assert result.ok, result.errors
    kinds = kinds_and_names(result.objects)
    assert kinds[kinds.index(("InferenceObjective", "food-review")) + 1] == ("InferenceModelRewrite", "food-review")
    rewrite = next(o.obj for o in result.objects if o.obj["kind"] == "InferenceModelRewrite")
    assert upstream_check(rewrite) == []
    assert rewrite["spec"]["rules"][0]["targets"] == [
        {"modelRewrite": "food-review-1", "weight": 90},
        {"modelRewrite": "food-review-2", "weight": 10},
    ]
    route = next(o.obj for o in result.objects if o.obj["kind"] == "HTTPRoute")
    assert all(r["backendRefs"] == [GA_REF] for r in route["spec"]["rules"])
    (warning,) = [w for w in result.warnings if w.field == "spec.targetModels"]
    assert "InferenceModelRewrite" in warning.message


def test_every_lossy_field_of_the_example_is_reported(example_documents: list[Document]) -> None:
    result = convert_documents(example_documents)
    assert [(str(w.obj), w.field) for w in result.warnings] == [
        ("InferencePool default/vllm-llama3-8b-instruct-preview", "spec.extensionRef.portNumber"),
        ("InferencePool default/vllm-llama3-8b-instruct-preview", "spec.extensionRef.name"),
        ("InferenceModel default/food-review", "spec.criticality"),
        ("InferenceModel default/food-review", "spec.targetModels"),
        ("HTTPRoute default/llm-route", "spec.rules[0]"),
    ]


def test_heaviest_mode_yields_only_kinds_of_the_v1_bundle(
    example_documents: list[Document], upstream_check: Check
) -> None:
    result = convert_documents(example_documents, ConvertOptions(target_models="heaviest"))
    assert result.ok
    kinds = {o.obj["kind"] for o in result.objects}
    assert kinds == {"GatewayClass", "Gateway", "InferencePool", "InferenceObjective", "HTTPRoute"}
    for out in result.objects:
        assert upstream_check(out.obj) == []
        assert api.validate(out.obj) == []
    route = next(o.obj for o in result.objects if o.obj["kind"] == "HTTPRoute")
    food = next(
        r
        for r in route["spec"]["rules"]
        if r["matches"][0].get("headers", [{}])[0].get("value") == "food-review"
    )
    assert {"name": "x-gateway-model-name-rewrite", "value": "food-review-1"} in food["filters"][0][
        "requestHeaderModifier"
    ]["set"]


def test_untouched_documents_keep_their_text_comments_included(example_documents: list[Document]) -> None:
    result = convert_documents(example_documents)
    gateway_doc = next(d for d in example_documents if d.data["kind"] == "Gateway")
    gateway_out = next(o for o in result.objects if o.obj["kind"] == "Gateway")
    assert gateway_out.text == gateway_doc.text
    text = write_yaml((o.obj, o.text) for o in result.objects)
    assert "port: 80  # the only listener; routes from this namespace attach to it\n" in text
    assert "# A v0.3.0-style (preview) installation" in text
    reparsed = [d for d in yaml.safe_load_all(text) if d]
    assert reparsed == [o.obj for o in result.objects]


def test_converting_the_output_again_changes_nothing(example_documents: list[Document]) -> None:
    first = convert_documents(example_documents, ConvertOptions(target_models="heaviest"))
    text = write_yaml((o.obj, o.text) for o in first.objects)
    second = convert_documents(read_documents(text, "converted.yaml"))
    assert second.ok
    assert [o.obj for o in second.objects] == [o.obj for o in first.objects]
    assert all(o.text is not None for o in second.objects)
    assert second.warnings == ()


KUBECTL_LIST = """\
apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: inference.networking.x-k8s.io/v1alpha2
  kind: InferenceModel
  metadata:
    name: chat-new
    namespace: team-a
    creationTimestamp: "2025-03-01T10:00:00Z"
    uid: 1f0c
    resourceVersion: "812"
    generation: 1
  spec:
    modelName: chat
    criticality: Critical
    poolRef:
      name: pool
  status:
    conditions:
    - type: Ready
      status: Unknown
      reason: Pending
      message: Waiting for controller
      lastTransitionTime: "1970-01-01T00:00:00Z"
- apiVersion: inference.networking.x-k8s.io/v1alpha2
  kind: InferenceModel
  metadata:
    name: chat-old
    namespace: team-a
    creationTimestamp: 2025-01-01T10:00:00Z
  spec:
    modelName: chat
    criticality: Sheddable
    poolRef:
      name: pool
- apiVersion: inference.networking.x-k8s.io/v1alpha2
  kind: InferencePool
  metadata:
    name: pool
    namespace: team-a
    uid: 77aa
    creationTimestamp: "2025-01-01T09:00:00Z"
  spec:
    selector:
      app: m
    targetPortNumber: 8000
    extensionRef:
      name: pool-epp
      portNumber: 9002
  status:
    parent:
    - parentRef:
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        name: gw
      conditions:
      - type: Accepted
        status: "True"
        reason: Accepted
        message: ok
        lastTransitionTime: "2025-01-01T09:00:01Z"
"""


def test_a_kubectl_list_with_stored_objects(upstream_check: Check) -> None:
    result = convert_documents(read_documents(KUBECTL_LIST, "get.yaml"))
    assert result.ok, result.errors
    (out,) = result.objects
    assert out.obj["kind"] == "List" and out.text is None
    items = out.obj["items"]
    assert [(i["kind"], i["metadata"]["name"]) for i in items] == [
        ("InferenceObjective", "chat-old"),
        ("InferencePool", "pool-ga"),
    ]
    objective, pool = items
    assert objective["spec"]["priority"] == -1, "the older Sheddable model wins"
    assert pool["metadata"] == {"name": "pool-ga", "namespace": "team-a"}
    assert "status" not in pool and "status" not in objective
    for item in items:
        assert upstream_check(item) == []
    warnings = [(str(w.obj), w.field) for w in result.warnings]
    assert warnings == [
        ("InferenceModel team-a/chat-new", "spec.modelName"),
        ("InferencePool team-a/pool", "status"),
        ("InferencePool team-a/pool", "spec.extensionRef.name"),
    ]
    json_text = write_json([out.obj])
    assert '"kind": "List"' in json_text


def test_invalid_input_yields_api_server_errors_and_no_output() -> None:
    text = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: p
  namespace: default
spec:
  selector: {app: m}
  targetPortNumber: 0
  extensionRef: {name: e, failureMode: Sometimes}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-read}
data: {x: "1"}
"""
    result = convert_documents(read_documents(text, "bad.yaml"))
    assert not result.ok
    assert result.objects == ()
    # (infergate.api may add the API server's "some validation rules were not checked" line after these)
    assert list(result.errors[:2]) == [
        'bad.yaml (document 1): InferencePool.inference.networking.x-k8s.io "p" in namespace default is invalid: '
        'spec.extensionRef.failureMode: Unsupported value: "Sometimes": supported values: "FailOpen", "FailClose"',
        'bad.yaml (document 1): InferencePool.inference.networking.x-k8s.io "p" in namespace default is invalid: '
        "spec.targetPortNumber: Invalid value: 0: must be greater than or equal to 1",
    ]


def test_documents_that_are_not_objects_are_errors() -> None:
    text = "- a\n- b\n---\nfoo: bar\n---\nkind: List\napiVersion: v1\nitems: [{kind: X}, 3]\n"
    result = convert_documents(read_documents(text, "x.yaml"))
    assert result.errors == (
        "x.yaml (document 1): not an object: list",
        "x.yaml (document 2): Object 'Kind' is missing or 'apiVersion' is missing",
        "x.yaml (document 3): items[0]: Object 'Kind' is missing or 'apiVersion' is missing",
        "x.yaml (document 3): items[1]: not an object",
    )


def test_a_pool_name_too_long_for_the_suffix_is_an_error() -> None:
    name = "p" * 253
    text = f"""\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {{name: {name}}}
spec: {{selector: {{app: m}}, targetPortNumber: 8000, extensionRef: {{name: e, portNumber: 9002}}}}
"""
    result = convert_documents(read_documents(text, "long.yaml"))
    assert not result.ok
    assert "must be a DNS subdomain of at most 253 characters" in result.errors[0]


def test_reverse_direction_converts_v1_pools_and_their_backend_refs(upstream_check: Check) -> None:
    text = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: p, namespace: default}
spec:
  selector: {matchLabels: {app: m}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: p-epp, port: {number: 9002}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: p}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: elsewhere}
"""
    result = convert_documents(
        read_documents(text, "ga.yaml"),
        ConvertOptions(output_version="inference.networking.x-k8s.io/v1alpha2"),
    )
    assert result.ok, result.errors
    pool, route = (o.obj for o in result.objects)
    assert pool["apiVersion"] == "inference.networking.x-k8s.io/v1alpha2"
    assert pool["spec"] == {
        "selector": {"app": "m"},
        "targetPortNumber": 8000,
        "extensionRef": {"name": "p-epp", "portNumber": 9002},
    }
    assert [b["group"] for b in route["spec"]["rules"][0]["backendRefs"]] == [
        "inference.networking.x-k8s.io",
        "inference.networking.k8s.io",
    ]
    assert upstream_check(pool) == []


def test_status_of_stored_objects_is_neither_validated_nor_converted() -> None:
    text = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: p, namespace: default}
spec: {selector: {app: m}, targetPortNumber: 8000, extensionRef: {name: p-epp, portNumber: 9002}}
status:
  parent:
  - parentRef: {group: gateway.networking.k8s.io, kind: Status, name: default}
"""
    result = convert_documents(read_documents(text, "stored.yaml"))
    assert result.ok, result.errors
    assert "status" not in result.objects[0].obj
    assert ("InferencePool default/p", "status") in [(str(w.obj), w.field) for w in result.warnings]


SEED_STAGE_2 = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: vllm-llama3-8b-instruct-ga, namespace: default}
spec:
  selector: {matchLabels: {app: vllm-llama3-8b-instruct}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: vllm-llama3-8b-instruct-ga-epp, port: {number: 9002}}
---
# as the migration guide creates them
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: food-review, namespace: default}
spec:
  priority: 2
  poolRef: {group: inference.networking.k8s.io, name: vllm-llama3-8b-instruct-ga}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm-route, namespace: default}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway}]
  rules:
  - backendRefs:
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: vllm-llama3-8b-instruct-preview, weight: 50}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: vllm-llama3-8b-instruct-ga, weight: 50}
"""


def test_a_half_migrated_installation_keeps_its_ga_objects(
    example_documents: list[Document], upstream_check: Check
) -> None:
    preview = [d for d in example_documents if d.data["kind"] in ("InferencePool", "InferenceModel")]
    documents = preview + read_documents(SEED_STAGE_2, "stage2.yaml")
    result = convert_documents(documents)
    assert result.ok, result.errors
    assert kinds_and_names(result.objects) == [
        ("InferenceObjective", "base-model"),
        ("InferenceObjective", "movie-critique"),
        ("InferencePool", GA_POOL),
        ("InferenceObjective", "food-review"),
        ("HTTPRoute", "llm-route"),
    ]
    kept_pool, kept_objective = result.objects[2], result.objects[3]
    assert kept_pool.text is not None and kept_objective.text is not None, "passed through unchanged"
    assert kept_objective.obj["spec"]["priority"] == 2
    warned = [(str(w.obj), w.field) for w in result.warnings]
    assert ("InferencePool default/vllm-llama3-8b-instruct-preview", "metadata.name") in warned
    assert ("InferenceModel default/food-review", "metadata.name") in warned
    route = result.objects[4].obj
    merged = {**GA_REF, "group": "inference.networking.k8s.io", "weight": 100}
    for rule in route["spec"]["rules"]:
        if (rule.get("matches") or [{}])[0].get("headers", [{}])[0].get("value") != "food-review":
            assert rule["backendRefs"] == [merged]
            continue
        # the merged 100 split 90/10 over the canary's target models, shares exact
        assert [(r["weight"], r["filters"][0]["requestHeaderModifier"]["set"][0]["value"])
                for r in rule["backendRefs"]] == [(9000, "food-review-1"), (1000, "food-review-2")]  # fmt: skip
    for out in result.objects:
        assert upstream_check(out.obj) == []


def test_other_versions_of_the_preview_kinds_pass_through_with_a_warning() -> None:
    text = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: InferenceModel\nmetadata: {name: old}\nspec: {}\n"
    result = convert_documents(read_documents(text, "old.yaml"))
    assert result.ok
    assert result.objects[0].text == text
    assert [(str(w.obj), w.field) for w in result.warnings] == [("InferenceModel old", "apiVersion")]


EPP_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-llama3-8b-instruct-preview-epp, namespace: default}
spec:
  selector: {matchLabels: {app: epp}}
  template:
    metadata: {labels: {app: epp}}
    spec:
      containers:
      - name: epp
        image: registry.k8s.io/gateway-api-inference-extension/epp:v0.3.0
        args: ["-poolName", "vllm-llama3-8b-instruct-preview", "-poolNamespace", "default", "-v", "4"]
"""


def test_a_v0_3_0_epp_deployment_passes_through_with_a_warning() -> None:
    result = convert_documents(read_documents(EPP_DEPLOYMENT, "epp.yaml"))
    assert result.ok
    assert result.objects[0].text == EPP_DEPLOYMENT
    (warning,) = result.warnings
    assert str(warning.obj) == "Deployment default/vllm-llama3-8b-instruct-preview-epp"
    assert "--pool-name vllm-llama3-8b-instruct-ga" in warning.message
    other = EPP_DEPLOYMENT.replace('"-poolName", "vllm-llama3-8b-instruct-preview", ', "")
    assert convert_documents(read_documents(other, "other.yaml")).warnings == ()


def test_a_split_without_a_route_to_carry_it_is_reported(example_documents: list[Document]) -> None:
    models = [d for d in example_documents if d.data["kind"] == "InferenceModel"]
    result = convert_documents(models)
    assert result.ok
    lost = [w for w in result.warnings if w.field == "spec.targetModels" and "no HTTPRoute" in w.message]
    assert [str(w.obj) for w in lost] == ["InferenceModel default/food-review"]
    with_route = convert_documents(example_documents)
    assert not [w for w in with_route.warnings if "no HTTPRoute" in w.message]
