"""Planning (pure): weights, steps and their order, the converter's objects, lossy fields,
the weighted route keyed by group (same pool name in both groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.migrate.plan import (
    PlanError,
    PlanOptions,
    Shift,
    build_plan,
    ga_epp_args,
    shift_route,
    validate_weights,
)

TESTDATA = Path(__file__).resolve().parent / "testdata"
X, K8S = "inference.networking.x-k8s.io", "inference.networking.k8s.io"


def stack(namespace: str = "prod") -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all((TESTDATA / "preview-stack.yaml").read_text()):
        doc["metadata"]["namespace"] = namespace
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def plan_for(objs: dict[str, list[dict[str, Any]]], **options: Any) -> Any:
    return build_plan(namespace="prod", route=objs["HTTPRoute"][0], preview_pools=objs["InferencePool"],
                      preview_models=objs.get("InferenceModel", []), existing_ga_pools=[], existing_objectives=[],
                      epp_deployments={}, epp_objects={"vllm-llama3-8b-instruct-preview": (objs["Deployment"][0],
                                                                                          objs["Service"][0])},
                      ga_crds_missing=(), options=PlanOptions(**options))


def test_weights() -> None:
    assert validate_weights((0, 50, 100)) == (0, 50, 100)
    assert validate_weights((10, 25)) == (10, 25, 100)
    for bad in ((50, 10), (0, 0, 100), (-1,), (101,), ()):
        with pytest.raises(PlanError):
            validate_weights(bad)


def test_zero_downtime_steps_in_order_with_teardown_last() -> None:
    plan = plan_for(stack(), weights=(0, 25, 100))
    ids = [s.id for s in plan.steps]
    assert ids[:3] == ["preflight", "install-ga-crds", "install-pool-vllm-llama3-8b-instruct-ga"]
    assert [s.ga_weight for s in plan.steps if isinstance(s, Shift)] == [0, 25, 100]
    assert ids[-5:] == ["lock", "final-route", "verify", "remove-preview", "delete-preview-crds"]
    assert ids.index("analyse-100") < ids.index("lock")
    simple = plan_for(stack(), path="simple")
    ids = [s.id for s in simple.steps]
    assert not any(isinstance(s, Shift) for s in simple.steps)
    # issue 17 defect 8: the GA stack is installed and ready before the preview stack goes, and the
    # route moves right after, so the downtime is only the removal and the route's programming
    assert ids == ["preflight", "install-ga-crds", "install-pool-vllm-llama3-8b-instruct-ga", "apply-objectives",
                   "wait-ready", "remove-preview", "final-route", "delete-preview-crds", "verify"]


def test_simple_path_keeps_the_documents_order_when_a_ga_name_would_take_a_preview_one() -> None:
    # --pool-name-suffix '': the GA pool keeps the preview pool's name, and so would its EPP Service
    simple = plan_for(stack(), path="simple", pool_name_suffix="")
    (pool,) = simple.pools
    assert pool.ga_epp == pool.preview_epp
    ids = [s.id for s in simple.steps]
    assert ids == ["preflight", "remove-preview", "delete-preview-crds", "install-ga-crds",
                   "install-pool-vllm-llama3-8b-instruct-preview", "apply-objectives", "final-route", "wait-ready",
                   "verify"]


def test_objects_come_from_the_converter_and_lossy_fields_are_named() -> None:
    plan = plan_for(stack())
    (pool,) = plan.pools
    assert (pool.preview, pool.ga, pool.ga_epp) == ("vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga",
                                                    "vllm-llama3-8b-instruct-ga-epp")
    assert pool.ga_object["spec"]["endpointPickerRef"]["port"] == {"number": 9002}
    objectives = {o["metadata"]["name"]: o["spec"] for o in plan.objectives}
    assert objectives["food-review"]["poolRef"] == {"group": K8S, "name": "vllm-llama3-8b-instruct-ga"}
    assert (objectives["food-review"]["priority"], objectives["base-model"]["priority"]) == (1, 2)
    fields = {(w.object.split()[0], w.field) for w in plan.lossy}
    assert ("InferencePool", "spec.extensionRef.portNumber") in fields
    assert ("InferenceModel", "spec.criticality") in fields
    assert plan.model_names == ("food-review", "meta-llama/Llama-3.1-8B-Instruct")
    assert [o["kind"] for o in pool.ga_epp_objects] == ["ServiceAccount", "Role", "RoleBinding", "Deployment",
                                                       "Service"]
    assert {o["metadata"]["name"] for o in pool.ga_epp_objects} == {"vllm-llama3-8b-instruct-ga-epp"}


def test_lossy_inference_model_translation() -> None:
    # migration.md §9 case 7: a 90/10 targetModels split, Sheddable, two InferenceModels with one modelName
    objs = stack()
    objs["InferenceModel"] = [
        {"apiVersion": f"{X}/v1alpha2", "kind": "InferenceModel",
         "metadata": {"name": "chat", "namespace": "prod", "creationTimestamp": "2025-01-01T00:00:00Z"},
         "spec": {"modelName": "chat", "criticality": "Sheddable", "poolRef": {"name": "vllm-llama3-8b-instruct-preview"},
                  "targetModels": [{"name": "chat-v1", "weight": 90}, {"name": "chat-v2", "weight": 10}]}},
        {"apiVersion": f"{X}/v1alpha2", "kind": "InferenceModel",
         "metadata": {"name": "chat-newer", "namespace": "prod", "creationTimestamp": "2025-06-01T00:00:00Z"},
         "spec": {"modelName": "chat", "criticality": "Critical",
                  "poolRef": {"name": "vllm-llama3-8b-instruct-preview"}}},
    ]
    plan = plan_for(objs)
    objectives = [o for o in plan.objectives if o["kind"] == "InferenceObjective"]
    assert [(o["metadata"]["name"], o["spec"]["priority"]) for o in objectives] == [("chat", -1)]
    assert any(w.object.endswith("chat-newer") for w in plan.lossy)  # left out: the oldest wins
    rules = plan.final_routes[0]["spec"]["rules"]
    model_rules = [r for r in rules if any(h.get("value") == "chat" for m in r.get("matches", [])
                                           for h in m.get("headers", []))]
    assert model_rules, rules
    headers = model_rules[0]["filters"][0]["requestHeaderModifier"]["set"]
    assert {"name": "x-gateway-inference-objective", "value": "chat"} in headers
    # where the result differs from the source document on purpose, the plan says so (issue 17)
    split = [n for n in plan.notes if "targetModels split of chat is kept" in n]
    assert split and split[0].startswith("on purpose, unlike the source document"), plan.notes
    assert any("priority 2" in n and "chat=-1" in n for n in plan.notes), plan.notes


def test_shift_route_keys_weights_by_group_when_both_pools_share_a_name() -> None:
    # migration.md §9 case 2: --pool-name-suffix "" keeps the name; the GA pool is another resource
    objs = stack()
    for doc in objs["InferencePool"] + objs["InferenceModel"] + objs["HTTPRoute"]:
        if doc["kind"] == "InferencePool":
            doc["metadata"]["name"] = "vllm"
        elif doc["kind"] == "InferenceModel":
            doc["spec"]["poolRef"]["name"] = "vllm"
        else:
            doc["spec"]["rules"][0]["backendRefs"][0]["name"] = "vllm"
    plan = build_plan(namespace="prod", route=objs["HTTPRoute"][0], preview_pools=objs["InferencePool"],
                      preview_models=objs["InferenceModel"], existing_ga_pools=[], existing_objectives=[],
                      epp_deployments={}, ga_crds_missing=(),
                      # the simple path: zero-downtime is refused, its GA EPP would take the preview EPP's name
                      options=PlanOptions(pool_name_suffix="", path="simple"))
    assert plan.pools[0].preview == plan.pools[0].ga == "vllm"
    route = shift_route(plan.final_routes[0], plan.pools, 30)
    for rule in route["spec"]["rules"]:
        assert [(r["group"], r["name"], r["weight"]) for r in rule["backendRefs"]] == [(X, "vllm", 70),
                                                                                      (K8S, "vllm", 30)]


def test_zero_downtime_is_refused_when_the_ga_stack_would_take_the_preview_stacks_names() -> None:
    """Before: `--pool-name-suffix -preview` (or '') planned a GA EPP of the preview EPP's own name, beside
    it, and a remove-preview step that deleted the EPP the GA pool then used."""
    for suffix in ("", "-preview"):
        with pytest.raises(PlanError, match=r"^--path zero-downtime runs the GA stack beside the preview one, but its "
                                            r"EPP or Helm release would take a name the preview stack uses "
                                            r"\(vllm-llama3-8b-instruct-preview-epp; --pool-name-suffix '"):
            plan_for(stack(), path="zero-downtime", pool_name_suffix=suffix)
    assert plan_for(stack(), path="simple", pool_name_suffix="-preview").steps[1].id == "remove-preview"


def test_v030_epp_flags_become_v1_flags() -> None:
    args = ga_epp_args(["-poolName", "p", "-poolNamespace", "default", "-v", "4", "-grpcPort=9002"], "p-ga", "prod")
    assert args == ["--pool-name", "p-ga", "--pool-namespace", "prod", "--v", "4", "--grpc-port", "9002",
                    "--pool-group", K8S]


def test_a_route_without_preview_pools_cannot_be_planned() -> None:
    from infergate.migrate.plan import select_route

    with pytest.raises(PlanError, match="no HTTPRoute"):
        select_route([{"metadata": {"name": "r"}, "spec": {"rules": [{"backendRefs": [{"name": "svc"}]}]}}], None)
