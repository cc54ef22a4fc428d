"""InferenceModelRewrite in the EPP (epp/rewrite.py): matching, weighted targets, precedence,
both groups (llm-d.ai wins), the Kubernetes source's handler and the director's call site."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.metrics_scraper import MetricsStore
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP, RewriteTable, rewrite_from_object
from infergate.epp.scheduling import load_preset
from infergate.epp.sources.kubernetes import KubernetesEventHandler


def obj(name: str, rules: list[dict[str, Any]], *, group: str = LLMD_GROUP, created: str = "2026-01-01T00:00:00Z",
        pool: str = "pool", pool_group: str | None = None, namespace: str = "default") -> dict[str, Any]:
    ref: dict[str, Any] = {"name": pool}
    if pool_group is not None:
        ref["group"] = pool_group
    return {"apiVersion": f"{group}/v1alpha2", "kind": "InferenceModelRewrite",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
            "spec": {"poolRef": ref, "rules": rules}}


def exact(model: str, *targets: str | tuple[str, int]) -> dict[str, Any]:
    return {"matches": [{"model": {"type": "Exact", "value": model}}], "targets": _targets(targets)}


def generic(*targets: str | tuple[str, int]) -> dict[str, Any]:
    return {"targets": _targets(targets)}


def _targets(targets: tuple[str | tuple[str, int], ...]) -> list[dict[str, Any]]:
    return [{"modelRewrite": t} if isinstance(t, str) else {"modelRewrite": t[0], "weight": t[1]} for t in targets]


def table(*objs: dict[str, Any]) -> RewriteTable:
    t = RewriteTable()
    for o in objs:
        r = rewrite_from_object(o, "pool")
        assert r is not None
        t.upsert(r)
    return t


RNG = random.Random(0)


def test_exact_match_rewrites_and_other_models_pass() -> None:
    t = table(obj("a", [exact("food-review", "food-review-v1")]))
    assert t.pick("food-review", RNG) == "food-review-v1"
    assert t.pick("other", RNG) is None


def test_exact_beats_generic_even_in_a_newer_resource() -> None:
    t = table(obj("old", [generic("catch-all")], created="2026-01-01T00:00:00Z"),
              obj("new", [exact("m", "m-exact")], created="2026-02-01T00:00:00Z"))
    assert t.pick("m", RNG) == "m-exact"
    assert t.pick("x", RNG) == "catch-all"


def test_oldest_resource_wins_then_first_rule() -> None:
    t = table(obj("b-new", [exact("m", "from-new")], created="2026-03-01T00:00:00Z"),
              obj("a-old", [exact("m", "first"), exact("m", "second")], created="2026-01-01T00:00:00Z"))
    assert t.pick("m", RNG) == "first"
    # same creation time: by namespace/name
    t2 = table(obj("b", [exact("m", "from-b")]), obj("a", [exact("m", "from-a")]))
    assert t2.pick("m", RNG) == "from-a"


def test_a_rule_with_several_matches() -> None:
    t = table(obj("a", [{"matches": [{"model": {"value": "x"}}, {"model": {"value": "y"}}], "targets": _targets(("z",))}]))
    assert t.pick("x", RNG) == "z" and t.pick("y", RNG) == "z"


def test_weighted_targets_split_by_weight() -> None:
    t = table(obj("a", [exact("m", ("v1", 90), ("v2", 10))]))
    rng = random.Random(7)
    counts = Counter(t.pick("m", rng) for _ in range(5000))
    assert set(counts) == {"v1", "v2"}
    assert abs(counts["v1"] / 5000 - 0.9) < 0.03


def test_unweighted_targets_split_equally() -> None:
    t = table(obj("a", [generic("p", "q")]))
    rng = random.Random(3)
    counts = Counter(t.pick("anything", rng) for _ in range(4000))
    assert abs(counts["p"] / 4000 - 0.5) < 0.04


def test_other_pools_and_pool_groups_are_ignored() -> None:
    assert rewrite_from_object(obj("a", [generic("x")], pool="other"), "pool") is None
    assert rewrite_from_object(obj("a", [generic("x")], pool_group="inference.networking.x-k8s.io"), "pool") is None
    assert rewrite_from_object(obj("a", [generic("x")], pool_group="inference.networking.k8s.io"), "pool") is not None


def test_llm_d_wins_when_both_groups_are_installed() -> None:
    t = table(obj("x", [exact("m", "from-x")], group=XK8S_GROUP))
    assert t.active_group == XK8S_GROUP and t.pick("m", RNG) == "from-x"
    t.set_installed(LLMD_GROUP)  # llm-d.ai CRD installed, still empty: x-k8s.io rewrites no longer apply
    assert t.active_group == LLMD_GROUP and t.pick("m", RNG) is None
    r = rewrite_from_object(obj("l", [exact("m", "from-llmd")]), "pool")
    assert r is not None
    t.upsert(r)
    assert t.pick("m", RNG) == "from-llmd"
    t.set_installed(LLMD_GROUP, False)
    t.delete(LLMD_GROUP, "default", "l")
    assert t.pick("m", RNG) == "from-x"


def test_kubernetes_handler_lists_and_events() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool")
    h.rewrite_list(XK8S_GROUP, [obj("a", [exact("m", "from-x")], group=XK8S_GROUP)])
    h.rewrite_list(LLMD_GROUP, [], served=False)  # llm-d.ai CRD not installed
    assert ds.rewrites.pick("m", RNG) == "from-x"
    h.rewrite_event(XK8S_GROUP, "MODIFIED", obj("a", [exact("m", "changed")], group=XK8S_GROUP))
    assert ds.rewrites.pick("m", RNG) == "changed"
    h.rewrite_event(XK8S_GROUP, "MODIFIED", obj("a", [exact("m", "changed")], group=XK8S_GROUP, pool="moved"))
    assert ds.rewrites.pick("m", RNG) is None
    h.rewrite_list(LLMD_GROUP, [obj("l", [generic("from-llmd")])], served=True)
    h.rewrite_event(XK8S_GROUP, "ADDED", obj("b", [exact("m", "x-again")], group=XK8S_GROUP))
    assert ds.rewrites.pick("m", RNG) == "from-llmd"
    h.rewrite_event(LLMD_GROUP, "DELETED", obj("l", []))
    assert ds.rewrites.pick("m", RNG) is None  # llm-d.ai still installed (and empty)


def _director(group: str = "inference.networking.k8s.io") -> tuple[EppDirector, Datastore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", group=group, selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo("pod-0", "10.0.0.1", {"app": "vllm"})])
    return EppDirector(ds, load_preset("default", seed=1), MetricsStore(), config=DirectorConfig(seed=1)), ds


def _req(model: str, headers: dict[str, str] | None = None, sent_as: str | None = None) -> InferenceRequest:
    return InferenceRequest(request_id="r", headers=headers or {}, body={"model": model, "prompt": "hi"},
                            model=sent_as or model, objective=None, prompt="hi", subset_hint=None, headers_only=False)


async def test_director_rewrites_the_body_model_and_reports_the_served_one() -> None:
    director, ds = _director()
    r = rewrite_from_object(obj("a", [exact("food-review", "food-review-v2")]), "pool")
    assert r is not None
    ds.rewrites.upsert(r)
    decision = await director.handle_request(_req("food-review"))
    assert decision.target_model == "food-review-v2"
    # the x-gateway-model-name-rewrite header, when given, wins over the resources
    header = "x-gateway-model-name-rewrite"
    decision = await director.handle_request(_req("food-review", {header: "pinned"}, sent_as="pinned"))
    assert decision.target_model == "pinned"
    decision = await director.handle_request(_req("other"))
    assert decision.target_model is None



def objective(name: str, priority: int, group: str) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1alpha2", "kind": "InferenceObjective",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"priority": priority, "poolRef": {"name": "pool"}}}


def test_llm_d_objectives_win_once_their_crd_is_installed() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool")
    h.objective_list([objective("critical", 5, XK8S_GROUP), objective("batch", -1, XK8S_GROUP)])
    h.objective_list([], LLMD_GROUP, served=False)  # llm-d.ai CRD not installed: x-k8s.io applies
    assert {o.name: o.priority for o in ds.objectives()} == {"critical": 5, "batch": -1}
    h.objective_list([objective("critical", 9, LLMD_GROUP)], LLMD_GROUP, served=True)
    assert {o.name: o.priority for o in ds.objectives()} == {"critical": 9}
    h.objective_event("ADDED", objective("new-x", 1, XK8S_GROUP))  # x-k8s.io changes are kept aside
    assert ds.objective("new-x") is None
    h.objective_event("MODIFIED", objective("critical", 7, LLMD_GROUP), LLMD_GROUP)
    assert ds.objective("critical") is not None and ds.objective("critical").priority == 7  # type: ignore[union-attr]
    h.objective_list([], LLMD_GROUP, served=False)  # llm-d.ai CRD removed: back to x-k8s.io
    assert {o.name for o in ds.objectives()} == {"critical", "batch", "new-x"}
    h.objective_event("DELETED", objective("batch", -1, XK8S_GROUP))
    assert {o.name for o in ds.objectives()} == {"critical", "new-x"}


def test_static_file_rewrites(tmp_path: Any) -> None:
    from infergate.epp.sources.static import SourceError, StaticFileSource, parse_static

    base = {"pool": {"name": "pool", "targetPorts": [8000]},
            "endpoints": [{"name": "a", "address": "127.0.0.1"}]}
    parsed = parse_static({**base, "rewrites": [
        {"name": "short", "rules": [exact("m", ("v1", 3), ("v2", 1))]},
        obj("full", [generic("x-generic")], group=XK8S_GROUP),
    ]})
    assert [(r.group, r.name) for r in parsed.rewrites] == [(LLMD_GROUP, "short"), (XK8S_GROUP, "full")]
    try:
        parse_static({**base, "rewrites": [{"name": "bad", "rules": [{"targets": [{"modelRewrite": "m", "weight": 0}]}]}]})
    except SourceError as exc:
        assert str(exc).startswith("rewrites[0].spec.rules[0].targets[0].weight: Invalid value: 0")
    else:
        raise AssertionError("an invalid weight was accepted")
    path = tmp_path / "pool.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**base, "rewrites": [{"name": "short", "rules": [exact("m", "v9")]},
                                                         obj("full", [generic("x-generic")], group=XK8S_GROUP)]}))
    ds = Datastore()
    assert StaticFileSource(path).apply_once(ds)
    assert ds.rewrites.pick("m", RNG) == "v9"
    assert ds.rewrites.pick("other", RNG) is None  # llm-d.ai wins: the x-k8s.io generic rule is ignored
