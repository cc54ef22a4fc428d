"""HTTPRoute and ReferenceGrant rewriting: GA backendRefs, one rule per model, limits, idempotence."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from infergate import api
from infergate.api.conversion import (
    ConversionError,
    ModelRoute,
    ObjectRef,
    convert_reference_grant,
    convert_route,
    ga_pool_name,
)

Check = Callable[[dict[str, Any]], list[str]]
PREVIEW_POOL = "vllm-preview"
GA_POOL = "vllm-ga"


def rename(name: str) -> str:
    return ga_pool_name(name, "-ga")


def action(
    model: str, objective: str | None = None, rewrite: str | None = None, pool: str = GA_POOL
) -> ModelRoute:
    return ModelRoute(
        namespace="default",
        ga_pool=pool,
        model_name=model,
        objective=objective or model,
        rewrite_to=rewrite,
        source=ObjectRef("InferenceModel", "default", objective or model),
    )


def http_route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "llm-route", "namespace": "default"},
        "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": list(rules)},
    }


def pool_ref(
    name: str = PREVIEW_POOL, group: str = "inference.networking.x-k8s.io", **extra: Any
) -> dict[str, Any]:
    return {"group": group, "kind": "InferencePool", "name": name, **extra}


def objective_filter(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": n, "value": v} for n, v in pairs]},
    }


def model_match(model: str, path: str = "/") -> dict[str, Any]:
    return {
        "path": {"type": "PathPrefix", "value": path},
        "headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": model}],
    }


def assert_valid(objects: tuple[dict[str, Any], ...], upstream_check: Check) -> None:
    for obj in objects:
        assert api.validate(obj) == [], obj["metadata"]["name"]
        assert upstream_check(obj) == [], obj["metadata"]["name"]


def test_one_rule_per_model_plus_the_catch_all(upstream_check: Check) -> None:
    route = http_route(
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [pool_ref()]}
    )
    routes = {("default", GA_POOL): [action("base"), action("movie", rewrite="movie-v1")]}
    result = convert_route(route, pool_name=rename, model_routes=routes)
    assert result.changed
    (out,) = result.objects
    ga_ref = pool_ref(GA_POOL, "inference.networking.k8s.io")
    assert out["spec"]["rules"] == [
        {
            "matches": [model_match("base")],
            "filters": [objective_filter(("x-gateway-inference-objective", "base"))],
            "backendRefs": [ga_ref],
        },
        {
            "matches": [model_match("movie")],
            "filters": [
                objective_filter(
                    ("x-gateway-inference-objective", "movie"), ("x-gateway-model-name-rewrite", "movie-v1")
                )
            ],
            "backendRefs": [ga_ref],
        },
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [ga_ref]},
    ]
    assert [w.field for w in result.warnings] == ["spec.rules[0]"]
    assert "404" in result.warnings[0].message
    assert_valid(result.objects, upstream_check)


def test_reject_mode_drops_the_catch_all(upstream_check: Check) -> None:
    route = http_route({"backendRefs": [pool_ref()]})
    result = convert_route(
        route,
        pool_name=rename,
        model_routes={("default", GA_POOL): [action("base")]},
        unknown_models="reject",
    )
    rules = result.objects[0]["spec"]["rules"]
    assert [r["matches"] for r in rules] == [[model_match("base")]]
    assert "answers 404" in result.warnings[0].message
    assert_valid(result.objects, upstream_check)


def test_a_rule_without_matches_keeps_an_implicit_catch_all() -> None:
    route = http_route({"backendRefs": [pool_ref()]})
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("base")]})
    rules = result.objects[0]["spec"]["rules"]
    assert rules[0]["matches"] == [model_match("base")]
    assert "matches" not in rules[1]


def test_every_match_of_the_rule_is_kept_per_model() -> None:
    matches = [
        {"path": {"type": "Exact", "value": "/v1/completions"}, "method": "POST"},
        {
            "path": {"type": "Exact", "value": "/v1/chat/completions"},
            "headers": [{"name": "x-tenant", "value": "a"}],
        },
    ]
    route = http_route({"matches": matches, "backendRefs": [pool_ref()]})
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("m")]})
    first = result.objects[0]["spec"]["rules"][0]["matches"]
    model_header = {"type": "Exact", "name": "X-Gateway-Model-Name", "value": "m"}
    assert first == [
        {**matches[0], "headers": [model_header]},
        {**matches[1], "headers": [{"name": "x-tenant", "value": "a"}, model_header]},
    ]


def test_an_existing_request_header_modifier_is_extended(upstream_check: Check) -> None:
    filters = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [
                    {"name": "x-team", "value": "a"},
                    {"name": "X-Gateway-Inference-Objective", "value": "old"},
                ],
                "add": [{"name": "x-added", "value": "1"}],
            },
        }
    ]
    route = http_route({"filters": filters, "backendRefs": [pool_ref()]})
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("m", "obj")]})
    rule = result.objects[0]["spec"]["rules"][0]
    assert rule["filters"] == [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [
                    {"name": "x-team", "value": "a"},
                    {"name": "x-gateway-inference-objective", "value": "obj"},
                ],
                "add": [{"name": "x-added", "value": "1"}],
            },
        }
    ]
    assert "replaced" in result.warnings[0].message
    assert_valid(result.objects, upstream_check)


def test_matches_pinned_to_a_model_get_its_objective_without_expansion(upstream_check: Check) -> None:
    route = http_route(
        {
            "matches": [model_match("base"), model_match("unknown")],
            "backendRefs": [pool_ref()],
        }
    )
    result = convert_route(
        route, pool_name=rename, model_routes={("default", GA_POOL): [action("base", "base-obj")]}
    )
    rules = result.objects[0]["spec"]["rules"]
    assert rules[0]["matches"] == [model_match("base")]
    assert rules[0]["filters"] == [objective_filter(("x-gateway-inference-objective", "base-obj"))]
    assert rules[1]["matches"] == [model_match("unknown")]
    assert "filters" not in rules[1]
    assert_valid(result.objects, upstream_check)


def test_a_regular_expression_on_the_model_header_cannot_be_expanded() -> None:
    match = {"headers": [{"type": "RegularExpression", "name": "X-Gateway-Model-Name", "value": "food-.*"}]}
    route = http_route({"matches": [match], "backendRefs": [pool_ref()]})
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("food-a")]})
    rules = result.objects[0]["spec"]["rules"]
    assert rules == [{"matches": [match], "backendRefs": [pool_ref(GA_POOL, "inference.networking.k8s.io")]}]
    assert result.warnings[0].field == "spec.rules[0].matches[0].headers"


def test_rules_without_preview_pools_are_untouched_and_conversion_is_idempotent() -> None:
    service_rule = {"backendRefs": [{"name": "echo", "port": 8080}]}
    route = http_route(service_rule, {"backendRefs": [pool_ref()]})
    routes = {("default", GA_POOL): [action("base")]}
    once = convert_route(route, pool_name=rename, model_routes=routes)
    assert once.objects[0]["spec"]["rules"][0] == service_rule
    twice = convert_route(once.objects[0], pool_name=rename, model_routes=routes)
    assert not twice.changed
    assert twice.objects == once.objects
    plain = http_route(service_rule)
    assert convert_route(plain, pool_name=rename, model_routes=routes).changed is False


def test_a_split_between_preview_and_ga_pool_merges_into_one_backend() -> None:
    route = http_route(
        {
            "backendRefs": [
                pool_ref(weight=50),
                pool_ref(GA_POOL, "inference.networking.k8s.io", weight=50),
                {"name": "echo", "port": 80, "weight": 1},
            ]
        }
    )
    result = convert_route(route, pool_name=rename, model_routes={})
    assert result.objects[0]["spec"]["rules"][0]["backendRefs"] == [
        pool_ref(GA_POOL, "inference.networking.k8s.io", weight=100),
        {"name": "echo", "port": 80, "weight": 1},
    ]
    assert "no InferenceModel" in result.warnings[0].message


def test_two_pools_in_one_rule_report_models_missing_on_one_of_them() -> None:
    route = http_route({"backendRefs": [pool_ref("a-preview", weight=1), pool_ref("b-preview", weight=1)]})
    routes = {
        ("default", "a-ga"): [action("m", pool="a-ga"), action("only-a", pool="a-ga")],
        ("default", "b-ga"): [action("m", "m-on-b", pool="b-ga")],
    }
    result = convert_route(route, pool_name=rename, model_routes=routes)
    rules = result.objects[0]["spec"]["rules"]
    assert [r["filters"][0]["requestHeaderModifier"]["set"][0]["value"] for r in rules[:2]] == ["m", "only-a"]
    messages = [w.message for w in result.warnings]
    assert any("different headers" in m for m in messages)
    assert any("'only-a' has no InferenceModel for pool(s) b-ga" in m for m in messages)


def test_pools_in_other_namespaces_are_matched_by_namespace() -> None:
    route = http_route({"backendRefs": [pool_ref(namespace="models")]})
    result = convert_route(
        route, pool_name=rename, model_routes={("default", GA_POOL): [action("wrong-namespace")]}
    )
    assert len(result.objects[0]["spec"]["rules"]) == 1  # not expanded: the models are for default/vllm-ga
    assert result.objects[0]["spec"]["rules"][0]["backendRefs"][0]["namespace"] == "models"


def test_more_rules_than_one_route_holds_continue_in_more_routes(upstream_check: Check) -> None:
    # 10 matches per rule: 12 rules (120 matches) fit in one route, so 31 rules need three routes.
    paths = [{"path": {"type": "PathPrefix", "value": f"/v1/{i}"}} for i in range(10)]
    route = http_route({"matches": paths, "backendRefs": [pool_ref()]})
    route["metadata"]["uid"] = "abc"
    route["status"] = {"parents": []}
    models = [action(f"model-{i}") for i in range(30)]
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): models})
    names = [o["metadata"]["name"] for o in result.objects]
    assert names == ["llm-route", "llm-route-2", "llm-route-3"]
    all_rules = [r for o in result.objects for r in o["spec"]["rules"]]
    assert len(all_rules) == 31
    for obj in result.objects:
        rules = obj["spec"]["rules"]
        assert len(rules) <= 16
        assert sum(len(r.get("matches") or [None]) for r in rules) <= 128
        assert obj["spec"]["parentRefs"] == route["spec"]["parentRefs"]
    assert "uid" not in result.objects[1]["metadata"] and "status" not in result.objects[1]
    assert any("continued in HTTPRoute llm-route-2" in w.message for w in result.warnings)
    assert_valid(result.objects, upstream_check)


def test_input_route_is_not_modified() -> None:
    route = http_route({"backendRefs": [pool_ref()]})
    before = copy.deepcopy(route)
    convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("m")]})
    assert route == before


@pytest.mark.parametrize("named", [True, False])
def test_reference_grants_allow_the_ga_pools(named: bool, upstream_check: Check) -> None:
    target = {"group": "inference.networking.x-k8s.io", "kind": "InferencePool"} | (
        {"name": PREVIEW_POOL} if named else {}
    )
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "allow-routes", "namespace": "models"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
            "to": [target, {"group": "", "kind": "Service"}],
        },
    }
    result = convert_reference_grant(grant, pool_name=rename)
    assert result.changed
    expected = {"group": "inference.networking.k8s.io", "kind": "InferencePool"} | (
        {"name": GA_POOL} if named else {}
    )
    assert result.objects[0]["spec"]["to"] == [expected, {"group": "", "kind": "Service"}]
    assert_valid(result.objects, upstream_check)
    assert not convert_reference_grant(result.objects[0], pool_name=rename).changed


def test_the_route_limits_are_the_upstream_crd_limits(upstream_check: Check) -> None:
    """The checker used above does enforce the 16-rule and 128-match limits the splitting avoids."""
    ga = {"backendRefs": [pool_ref(GA_POOL, "inference.networking.k8s.io")]}
    assert upstream_check(http_route(*[ga] * 16)) == []
    assert upstream_check(http_route(*[ga] * 17)) != []
    paths = [{"path": {"type": "PathPrefix", "value": f"/v1/{i}"}} for i in range(10)]
    assert upstream_check(http_route(*[{**ga, "matches": paths}] * 12)) == []
    assert any("128" in e for e in upstream_check(http_route(*[{**ga, "matches": paths}] * 13)))


def test_a_header_modifier_that_adds_or_removes_the_objective_header_is_reported() -> None:
    filters = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"remove": ["x-gateway-inference-objective"]},
        }
    ]
    route = http_route({"filters": filters, "backendRefs": [pool_ref()]})
    result = convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [action("m")]})
    assert any("RequestHeaderModifier.remove touches" in w.message for w in result.warnings)


def test_no_catch_all_and_no_catch_all_warning_when_every_match_is_pinned_to_a_known_model() -> None:
    route = http_route({"matches": [model_match("base")], "backendRefs": [pool_ref()]})
    for mode in ("serve", "reject"):
        result = convert_route(
            route,
            pool_name=rename,
            model_routes={("default", GA_POOL): [action("base")]},
            unknown_models=mode,
        )
        assert len(result.objects[0]["spec"]["rules"]) == 1
        assert result.warnings == ()


# --- weighted targetModels as backendRefs (--target-models=backend-refs) -------------------------


def split_action(model: str, *targets: tuple[str, int], pool: str = GA_POOL) -> ModelRoute:
    return ModelRoute(
        namespace="default", ga_pool=pool, model_name=model, objective=model, rewrite_to=None,
        source=ObjectRef("InferenceModel", "default", model), targets=targets,
    )  # fmt: skip


def rewrite_filter(target: str) -> dict[str, Any]:
    return objective_filter(("x-gateway-model-name-rewrite", target))


def model_rule(rules: list[dict[str, Any]], model: str) -> dict[str, Any]:
    return next(r for r in rules if (r.get("matches") or [{}])[0].get("headers", [{}])[0].get("value") == model)


def test_a_split_becomes_one_backend_ref_per_target_model(upstream_check: Check) -> None:
    route = http_route({"backendRefs": [pool_ref()]})
    routes = {("default", GA_POOL): [split_action("food", ("food-1", 90), ("food-2", 10)), action("base")]}
    result = convert_route(route, pool_name=rename, model_routes=routes)
    rules = result.objects[0]["spec"]["rules"]
    ga_ref = pool_ref(GA_POOL, "inference.networking.k8s.io")
    food = model_rule(rules, "food")
    assert food["filters"] == [objective_filter(("x-gateway-inference-objective", "food"))]
    assert food["backendRefs"] == [
        {**ga_ref, "weight": 90, "filters": [rewrite_filter("food-1")]},
        {**ga_ref, "weight": 10, "filters": [rewrite_filter("food-2")]},
    ]
    assert model_rule(rules, "base")["backendRefs"] == [ga_ref]  # other models: untouched
    assert rules[-1]["backendRefs"] == [ga_ref]  # the catch-all too
    assert result.pools == frozenset({("default", GA_POOL)})
    assert_valid(result.objects, upstream_check)
    # Idempotent: the output has no preview pool left, so converting it again changes nothing.
    again = convert_route(result.objects[0], pool_name=rename, model_routes=routes)
    assert not again.changed and again.objects[0] == result.objects[0]


def test_other_backend_refs_of_the_rule_keep_their_share_exactly(upstream_check: Check) -> None:
    service = {"name": "fallback", "port": 8080, "weight": 1}
    route = http_route({"backendRefs": [pool_ref(weight=3), service]})
    routes = {("default", GA_POOL): [split_action("m", ("m", 2), ("m-v2", 1))]}
    rules = convert_route(route, pool_name=rename, model_routes=routes).objects[0]["spec"]["rules"]
    refs = model_rule(rules, "m")["backendRefs"]
    # pool 3/4 of the traffic, split 2:1 -> 6:3 of 12; the Service keeps 3 of 12
    assert [(r["name"], r["weight"], r.get("filters")) for r in refs] == [
        (GA_POOL, 6, None),  # the target equal to the model name needs no rewrite
        (GA_POOL, 3, [rewrite_filter("m-v2")]),
        ("fallback", 3, None),
    ]
    assert rules[-1]["backendRefs"][1] == service  # the catch-all keeps the original weights
    assert_valid((http_route(*rules),), upstream_check)


def test_a_backend_ref_filter_of_the_input_is_extended_and_weight_zero_is_not_split(
    upstream_check: Check,
) -> None:
    own = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-team", "value": "a"}]}}
    route = http_route({"backendRefs": [pool_ref(weight=1, filters=[own]), pool_ref("other-preview", weight=0)]})
    routes = {
        ("default", GA_POOL): [split_action("m", ("a", 1), ("b", 1))],
        ("default", "other-ga"): [split_action("m", ("c", 1), ("d", 1), pool="other-ga")],
    }
    result = convert_route(route, pool_name=rename, model_routes=routes)
    refs = model_rule(result.objects[0]["spec"]["rules"], "m")["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [(GA_POOL, 1), (GA_POOL, 1), ("other-ga", 0)]
    assert refs[0]["filters"][0]["requestHeaderModifier"]["set"] == [
        {"name": "x-team", "value": "a"}, {"name": "x-gateway-model-name-rewrite", "value": "a"}]  # fmt: skip
    assert "filters" not in refs[2]
    assert_valid(result.objects, upstream_check)


def test_too_many_target_models_for_one_rule_is_an_error() -> None:
    targets = tuple((f"t{i}", 1) for i in range(17))
    route = http_route({"backendRefs": [pool_ref()]})
    with pytest.raises(ConversionError) as info:
        convert_route(route, pool_name=rename, model_routes={("default", GA_POOL): [split_action("m", *targets)]})
    (problem,) = info.value.problems
    assert problem.field == "spec.rules[0].backendRefs" and "rewrite-resource" in problem.message


def test_weights_above_the_gateway_api_maximum_are_reduced() -> None:
    route = http_route({"backendRefs": [pool_ref(weight=1_000_000)]})
    exact = {("default", GA_POOL): [split_action("m", ("a", 2), ("b", 2))]}
    refs = model_rule(convert_route(route, pool_name=rename, model_routes=exact).objects[0]["spec"]["rules"], "m")
    assert [r["weight"] for r in refs["backendRefs"]] == [1, 1]  # 2e6:2e6 reduced exactly
    # pool 1 : Service 1, the pool split 999,999 : 2 -> 999,999 : 2 : 1,000,001 has no common divisor
    uneven = {("default", GA_POOL): [split_action("m", ("a", 999_999), ("b", 2))]}
    route = http_route({"backendRefs": [pool_ref(), {"name": "svc", "port": 80}]})
    result = convert_route(route, pool_name=rename, model_routes=uneven)
    refs = model_rule(result.objects[0]["spec"]["rules"], "m")
    assert [r["weight"] for r in refs["backendRefs"]] == [999_998, 2, 1_000_000]
    assert any("scaled" in w.message for w in result.warnings)
