"""InferenceModel ``targetModels`` -> InferenceModelRewrite (``--target-models rewrite|route|auto``):
the weighted split and precedence as the EPP applies the converted rewrite, and the choice by
what the cluster serves."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from infergate.api.conversion import ConvertOptions, convert_objects
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP, RewriteTable, rewrite_from_object
from infergate.migrate.resources import CRDS

from .conftest import REPO, TESTDATA, load_objects

Migrate = Tool = Any
SPLIT = TESTDATA / "generations" / "split-model.yaml"
GA_POOL = "vllm-llama3-8b-instruct-ga"


def _converted_rewrites(model: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    results, _warnings, problems = convert_objects([model], ConvertOptions(target_models=mode))  # type: ignore[arg-type]
    assert not problems
    return [o for r in results for o in r.objects if o.get("kind") == "InferenceModelRewrite"]


def _table(*objects: dict[str, Any]) -> RewriteTable:
    table = RewriteTable()
    table.set_installed(XK8S_GROUP)
    for obj in objects:
        rewrite = rewrite_from_object(obj, GA_POOL)
        assert rewrite is not None
        table.upsert(rewrite)
    return table


def test_the_weighted_split_survives_as_a_rewrite_the_epp_applies() -> None:
    model = load_objects(SPLIT)[0]
    [rewrite] = _converted_rewrites(model, "rewrite-resource")
    assert rewrite["spec"]["rules"] == [{"matches": [{"model": {"type": "Exact", "value": "canary"}}],
                                         "targets": [{"modelRewrite": "canary-v1", "weight": 80},
                                                     {"modelRewrite": "canary-v2", "weight": 20}]}]
    table = _table(rewrite)
    rng = random.Random(7)
    drawn = Counter(table.pick("canary", rng) for _ in range(5000))
    assert set(drawn) == {"canary-v1", "canary-v2"}
    assert abs(drawn["canary-v1"] / 5000 - 0.8) < 0.03  # the v0.3.0 EPP's 80/20, now drawn by the EPP
    assert table.pick("other-model", rng) is None  # an exact rule: only its model


def test_route_mode_makes_no_rewrite() -> None:
    assert _converted_rewrites(load_objects(SPLIT)[0], "backend-refs") == []


def test_precedence_exact_beats_generic_then_oldest() -> None:
    model = load_objects(SPLIT)[0]
    [converted] = _converted_rewrites(model, "rewrite-resource")
    converted["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    generic = {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModelRewrite",
               "metadata": {"name": "catch-all", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"poolRef": {"group": "inference.networking.k8s.io", "name": GA_POOL},
                        "rules": [{"targets": [{"modelRewrite": "fallback"}]}]}}
    older = {**converted, "metadata": {**converted["metadata"], "name": "older",
                                       "creationTimestamp": "2025-12-01T00:00:00Z"},
             "spec": {**converted["spec"], "rules": [{"matches": [{"model": {"type": "Exact", "value": "canary"}}],
                                                       "targets": [{"modelRewrite": "pinned"}]}]}}
    rng = random.Random(1)
    # the converted exact rule beats the older generic one
    assert _table(generic, converted).pick("canary", rng) in {"canary-v1", "canary-v2"}
    assert _table(generic, converted).pick("anything", rng) == "fallback"
    # among exact rules, the oldest resource wins
    assert _table(converted, older).pick("canary", rng) == "pinned"


# -- against the API server: what the cluster serves decides ------------------------------------------


def _plan(migrate: Migrate, ns: str, *args: str) -> Any:
    result = migrate("plan", "-n", ns, "-o", "json", *args)
    return result, (json.loads(result.stdout) if result.returncode == 0 else None)


@pytest.fixture
def split_stack(kubectl: Tool, preview_stack: str) -> str:
    kubectl.run("apply", "-n", preview_stack, "-f", str(SPLIT))
    return preview_stack


def test_rewrite_is_refused_without_a_rewrite_crd_and_auto_falls_back_to_routes(
        migrate: Migrate, cluster: Any, split_stack: str) -> None:
    for bundle in ("llm-d.yaml", "gie-v1.5.yaml"):
        for crd in load_objects(REPO / "config" / "crd" / bundle):
            cluster.delete(CRDS, None, crd["metadata"]["name"])
    result, _ = _plan(migrate, split_stack, "--target-models", "rewrite")
    assert result.returncode == 1
    assert "serves no InferenceModelRewrite CRD" in result.stderr and "--target-models route" in result.stderr
    result, plan = _plan(migrate, split_stack, "--target-models", "auto")
    assert result.returncode == 0, result.out
    assert [o["kind"] for o in plan["objectives"]].count("InferenceModelRewrite") == 0
    rules = [r for route in plan["finalRoutes"] for r in route["spec"]["rules"]]
    weights = sorted(b.get("weight") for r in rules for b in r.get("backendRefs", []) if len(r["backendRefs"]) == 2)
    assert weights == [20, 80]  # the split kept as weighted backendRefs


def test_auto_makes_llmd_rewrites_when_llmd_is_installed(migrate: Migrate, cluster: Any, split_stack: str) -> None:
    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.apply(CRDS, crd)
    result, plan = _plan(migrate, split_stack, "--target-models", "auto")
    assert result.returncode == 0, result.out
    made = {(o["kind"], o["metadata"]["name"]): o["apiVersion"] for o in plan["objectives"]}
    assert made[("InferenceModelRewrite", "canary")] == f"{LLMD_GROUP}/v1alpha2"
    # with the llm-d.ai CRDs installed an EPP reads only llm-d.ai: the objectives go there too
    assert {v for (k, _), v in made.items() if k == "InferenceObjective"} == {f"{LLMD_GROUP}/v1alpha2"}
    [rewrite] = [o for o in plan["objectives"] if o["kind"] == "InferenceModelRewrite"]
    assert rewrite["spec"]["rules"][0]["targets"] == [{"modelRewrite": "canary-v1", "weight": 80},
                                                      {"modelRewrite": "canary-v2", "weight": 20}]


def test_objectives_go_to_llmd_when_its_crds_are_installed(migrate: Migrate, cluster: Any,
                                                           preview_stack: str) -> None:
    """Defect: with the llm-d.ai CRDs installed the migration created x-k8s InferenceObjectives,
    which an EPP then ignores (it reads only llm-d.ai): every request lost its priority."""
    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.apply(CRDS, crd)
    result, plan = _plan(migrate, preview_stack)
    assert result.returncode == 0, result.out
    assert {o["apiVersion"] for o in plan["objectives"]} == {f"{LLMD_GROUP}/v1alpha2"}
    steps = [s for s in plan["steps"] if s.get("id") == "apply-objectives"]
    assert steps and {o["apiVersion"] for o in steps[0]["objects"]} == {f"{LLMD_GROUP}/v1alpha2"}


def test_run_creates_the_llmd_rewrite_instead_of_route_rules(migrate: Migrate, cluster: Any, split_stack: str,
                                                             status_writer: Any) -> None:
    """`migrate run --target-models rewrite` with the llm-d.ai CRDs installed, as a user runs it:
    the split lives in an llm-d.ai InferenceModelRewrite, the HTTPRoute sends canary to one pool."""
    from infergate.migrate.generations import LLMD_MODEL_REWRITES, LLMD_OBJECTIVES
    from infergate.migrate.resources import HTTPROUTES, OBJECTIVES

    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.apply(CRDS, crd)
    ns = split_stack
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "3", "--analysis-delay", "0",
                     "--path", "simple", "--probes", "0", "--target-models", "rewrite")
    assert result.returncode == 0, result.out
    rewrite = cluster.get(LLMD_MODEL_REWRITES, ns, "canary")
    assert rewrite is not None
    assert rewrite["spec"]["rules"][0]["targets"] == [{"modelRewrite": "canary-v1", "weight": 80},
                                                      {"modelRewrite": "canary-v2", "weight": 20}]
    assert {o["metadata"]["name"] for o in cluster.list(LLMD_OBJECTIVES, ns)} >= {"canary", "food-review"}
    assert cluster.list(OBJECTIVES, ns) == []
    route = cluster.get(HTTPROUTES, ns, "llm-route")
    assert all(len(rule["backendRefs"]) == 1 for rule in route["spec"]["rules"])  # no weighted split rules
