"""Golden-file tests of the translator: every upstream conformance manifest and our own cases.

``testdata/<case>.in.yaml`` (or ``base.yaml`` + a conformance manifest) -> ``<case>.out.yaml``
holding the IR and the statuses. Regenerate with ``make golden``
(``INFERGATE_UPDATE_GOLDEN=1 pytest tests/controller -k golden``) and review the diff.
Besides the golden comparison, each test asserts what upstream's conformance test asserts,
so a regenerated golden file cannot silently accept a wrong status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infergate.controller.manifests import parse_manifests
from infergate.controller.render import result_to_plain
from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator

from .support import conformance_objects, pods_for_deployments

GW = "gateway.networking.k8s.io"
V1 = "inference.networking.k8s.io"
X = "inference.networking.x-k8s.io"
APP = "gateway-conformance-app-backend"
INFRA = "gateway-conformance-infra"
NOW = "2026-01-01T00:00:00Z"
TESTDATA = Path(__file__).parent / "testdata"

CONFORMANCE = [
    "epp_unavailable_fail_open",
    "gateway_following_epp_routing",
    "httproute_invalid_inferencepool_ref",
    "httproute_multiple_gateways_different_pools",
    "inferencepool_accepted",
    "inferencepool_httproute_port_validation",
    "inferencepool_invalid_epp_service",
    "inferencepool_multiple_rules_different_pools",
    "inferencepool_resolvedrefs_condition",
]
CASES = sorted(p.name.removesuffix(".in.yaml") for p in TESTDATA.glob("*.in.yaml"))


def run(objects: list[dict[str, Any]]) -> TranslationResult:
    options = TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24"), now=NOW)
    return translate(Snapshot.of(objects), options)


def cond(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    found = [x for x in conditions if x["type"] == type_]
    assert found, f"no {type_} condition in {conditions}"
    return found[0]


def route_parent(result: TranslationResult, ns: str, name: str, gateway: str) -> list[dict[str, Any]]:
    status = result.statuses[ObjectRef(GW, "HTTPRoute", ns, name)]
    parents = [p for p in status["parents"] if p["parentRef"]["name"] == gateway]
    assert len(parents) == 1, status
    assert parents[0]["parentRef"]["namespace"] == INFRA
    return list(parents[0]["conditions"])


def pool_parents(result: TranslationResult, name: str, group: str = V1, ns: str = APP) -> dict[str, list[dict[str, Any]]]:
    status = result.statuses[ObjectRef(group, "InferencePool", ns, name)]
    key = "parents" if group == V1 else "parent"
    out = {}
    for parent in status[key]:
        ref = parent["parentRef"]
        assert ref["namespace"], "upstream requires an explicit parentRef.namespace"
        assert ref["kind"] == "Gateway" and ref["group"] == GW
        out[ref["name"]] = parent["conditions"]
    return out


def assert_accepted_resolved(conditions: list[dict[str, Any]], generation: int = 1) -> None:
    accepted, resolved = cond(conditions, "Accepted"), cond(conditions, "ResolvedRefs")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert (resolved["status"], resolved["reason"]) == ("True", "ResolvedRefs")
    assert accepted["observedGeneration"] == generation


def listener_routes(result: TranslationResult, gateway: str) -> dict[str, list[Any]]:
    """domain -> IR routes of a Gateway's listener."""
    listeners = [lst for lst in result.ir.listeners if lst.gateway_name == gateway]
    assert len(listeners) == 1
    return {vh.domains[0]: list(vh.routes) for vh in listeners[0].virtual_hosts}


@pytest.mark.parametrize("case", CONFORMANCE)
def test_golden_conformance(case: str, reference_dir: Path, golden: Any) -> None:
    result = run(conformance_objects(reference_dir, f"{case}.yaml"))
    golden(f"conformance/{case}", result_to_plain(result))
    # Both conformance Gateways are accepted and programmed with an address.
    for name in ("conformance-primary", "conformance-secondary"):
        status = result.statuses[ObjectRef(GW, "Gateway", INFRA, name)]
        assert cond(status["conditions"], "Accepted")["status"] == "True"
        assert cond(status["conditions"], "Programmed")["status"] == "True"
        assert status["addresses"][0]["value"].startswith("127.0.2.")


def test_conformance_inferencepool_accepted(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "inferencepool_accepted.yaml"))
    parents = pool_parents(result, "primary-inference-pool")
    assert cond(parents["conformance-primary"], "Accepted")["status"] == "True"
    assert_accepted_resolved(route_parent(result, APP, "httproute-for-inferencepool-accepted", "conformance-primary"))
    gw = result.statuses[ObjectRef(GW, "Gateway", INFRA, "conformance-primary")]
    assert gw["listeners"][0]["attachedRoutes"] == 1


def test_conformance_resolvedrefs_condition_and_route_deletion(reference_dir: Path) -> None:
    objects = conformance_objects(reference_dir, "inferencepool_resolvedrefs_condition.yaml")
    result = run(objects)
    parents = pool_parents(result, "primary-inference-pool")
    assert set(parents) == {"conformance-primary", "conformance-secondary"}
    for conditions in parents.values():
        accepted = cond(conditions, "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert [r.match.path for r in listener_routes(result, "conformance-primary")["primary.example.com"]] == [
        "/primary-gateway-test"]
    # Upstream then deletes the first route: only the secondary parent remains, and the
    # primary Gateway no longer routes the path (404).
    without_first = [o for o in objects if o["metadata"]["name"] != "httproute-for-primary-gw"]
    result = run(without_first)
    assert set(pool_parents(result, "primary-inference-pool")) == {"conformance-secondary"}
    assert not next(lst for lst in result.ir.listeners if lst.gateway_name == "conformance-primary").virtual_hosts
    # ... and the second: status.parents is empty.
    none_left = [o for o in without_first if o["metadata"]["name"] != "httproute-for-secondary-gw"]
    assert pool_parents(run(none_left), "primary-inference-pool") == {}


def test_conformance_gateway_following_epp_routing(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "gateway_following_epp_routing.yaml"))
    assert_accepted_resolved(route_parent(result, APP, "httproute-for-primary-gw", "conformance-primary"))
    pool = result.ir.pool(f"pool/{V1}/{APP}/primary-inference-pool")
    assert pool.target_ports == (3000,)
    assert len(pool.endpoints) == 3 and {e.port for e in pool.endpoints} == {3000}
    assert pool.picker.failure_mode == "FailClose"
    assert [(e.port) for e in pool.picker.endpoints] == [9002]  # the primary EPP pod
    (route,) = listener_routes(result, "conformance-primary")["primary.example.com"]
    assert [(b.kind, b.target, b.weight) for b in route.backends] == [("pool", pool.key, 1)]


def test_conformance_epp_unavailable_fail_open(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "epp_unavailable_fail_open.yaml"))
    assert_accepted_resolved(route_parent(result, APP, "httproute-for-failopen-pool-gw", "conformance-secondary"))
    pool = result.ir.pool(f"pool/{V1}/{APP}/secondary-inference-pool")
    assert pool.picker.failure_mode == "FailOpen"
    routes = listener_routes(result, "conformance-secondary")
    assert list(routes) == ["secondary.example.com"]


def test_conformance_invalid_pool_ref(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "httproute_invalid_inferencepool_ref.yaml"))
    conditions = route_parent(result, APP, "httproute-to-non-existent-pool", "conformance-primary")
    accepted, resolved = cond(conditions, "Accepted"), cond(conditions, "ResolvedRefs")
    assert (accepted["status"], accepted["reason"]) == ("True", "Accepted")
    assert (resolved["status"], resolved["reason"]) == ("False", "BackendNotFound")
    (route,) = listener_routes(result, "conformance-primary")["*"]
    assert [(b.kind, b.invalid_status) for b in route.backends] == [("invalid", 500)]


def test_conformance_invalid_epp_service(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "inferencepool_invalid_epp_service.yaml"))
    conditions = route_parent(result, APP, "httproute-for-invalid-epp-pool", "conformance-primary")
    assert cond(conditions, "Accepted")["status"] == "True"
    parents = pool_parents(result, "pool-with-invalid-epp")
    resolved = cond(parents["conformance-primary"], "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidExtensionRef")
    assert "non-existent-epp-svc" in resolved["message"]
    pool = result.ir.pool(f"pool/{V1}/{APP}/pool-with-invalid-epp")
    assert pool.picker.endpoints == () and pool.picker.failure_mode == "FailClose"  # -> 5xx


def test_conformance_port_validation(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "inferencepool_httproute_port_validation.yaml"))
    for name in ("httproute-pool-port-unspecified", "httproute-pool-port-matching", "httproute-pool-port-non-matching"):
        assert_accepted_resolved(route_parent(result, APP, name, "conformance-primary"))
    assert cond(pool_parents(result, "primary-inference-pool")["conformance-primary"], "Accepted")["status"] == "True"
    routes = listener_routes(result, "conformance-primary")
    assert set(routes) == {"port-unspecified.example.com", "port-matching.example.com", "port-non-matching.example.com"}
    for domain_routes in routes.values():
        assert domain_routes[0].backends[0].target == f"pool/{V1}/{APP}/primary-inference-pool"


def test_conformance_multiple_gateways_different_pools(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "httproute_multiple_gateways_different_pools.yaml"))
    assert_accepted_resolved(route_parent(result, APP, "route-for-primary-gateway", "conformance-primary"))
    assert_accepted_resolved(route_parent(result, APP, "route-for-secondary-gateway", "conformance-secondary"))
    primary = listener_routes(result, "conformance-primary")["primary.example.com"]
    secondary = listener_routes(result, "conformance-secondary")["secondary.example.com"]
    assert primary[0].backends[0].target.endswith("/primary-inference-pool")
    assert secondary[0].backends[0].target.endswith("/secondary-inference-pool")
    assert set(pool_parents(result, "primary-inference-pool")) == {"conformance-primary"}
    assert set(pool_parents(result, "secondary-inference-pool")) == {"conformance-secondary"}


def test_conformance_multiple_rules_different_pools(reference_dir: Path) -> None:
    result = run(conformance_objects(reference_dir, "inferencepool_multiple_rules_different_pools.yaml"))
    for pool in ("primary-inference-pool", "secondary-inference-pool"):
        conditions = pool_parents(result, pool)["conformance-primary"]
        assert cond(conditions, "Accepted")["status"] == "True"
    routes = listener_routes(result, "conformance-primary")["*"]
    assert [(r.match.path, r.backends[0].target.rsplit("/", 1)[1]) for r in routes] == [
        ("/secondary", "secondary-inference-pool"), ("/primary", "primary-inference-pool")]


def load_case(case: str) -> list[dict[str, Any]]:
    objects = parse_manifests((TESTDATA / f"{case}.in.yaml").read_text(), case)
    return objects + pods_for_deployments(objects)


@pytest.mark.parametrize("case", CASES)
def test_golden_cases(case: str, golden: Any) -> None:
    golden(case, result_to_plain(run(load_case(case))))


def test_backend_ref_header_filters_per_backend_same_pool_twice() -> None:
    from infergate.ir import HeaderModifier, HeaderValue

    result = run(load_case("backend_ref_filters"))
    routes = listener_routes(result, "inference-gateway")["*"]
    split = routes[0]
    pool = f"pool/{V1}/default/vllm-ga"
    assert [(b.kind, b.target, b.weight) for b in split.backends] == [("pool", pool, 90), ("pool", pool, 10)]
    assert [b.request_headers for b in split.backends] == [
        HeaderModifier(set=(HeaderValue("x-gateway-model-name-rewrite", "food-review-1"),)),
        HeaderModifier(set=(HeaderValue("x-gateway-model-name-rewrite", "food-review-2"),)),
    ]
    assert split.backends[1].response_headers == HeaderModifier(add=(HeaderValue("x-target-model", "food-review-2"),))
    assert split.request_headers.set == (HeaderValue("x-gateway-inference-objective", "food-review"),)
    assert_accepted_resolved(route_parent_default(result, "llm-route"))
    # A backendRef filter outside the standard header modifiers: the route is not accepted.
    accepted = cond(route_parent_default(result, "mirrored"), "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
    assert "backendRefs[0].filters[0].type" in accepted["message"]
    # An ExtensionRef filter on a backendRef: that share answers 500, ResolvedRefs=False.
    (extension,) = [r for r in listener_routes(result, "inference-gateway")["extension.example.com"]
                    if r.key.startswith("httproute/default/extension/")]
    assert [(b.kind, b.weight, b.invalid_status) for b in extension.backends] == [("pool", 3, 500), ("invalid", 1, 500)]
    conditions = route_parent_default(result, "extension")
    assert cond(conditions, "Accepted")["status"] == "True"
    resolved = cond(conditions, "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidKind")
    assert "backendRefs[1].filters[0].extensionRef" in resolved["message"]


def route_parent_default(result: TranslationResult, name: str) -> list[dict[str, Any]]:
    (parent,) = result.statuses[ObjectRef(GW, "HTTPRoute", "default", name)]["parents"]
    return list(parent["conditions"])
