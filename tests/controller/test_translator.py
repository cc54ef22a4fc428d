"""Behaviour of the translator on our own cases (beyond the golden comparison), statuses merging
and address allocation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infergate.controller.manifests import parse_manifests
from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot
from infergate.controller.status import merge_status
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate
from infergate.controller.translator.addresses import ClusterAllocator, LoopbackAllocator
from infergate.controller.translator.hostnames import covers, intersect
from infergate.controller.translator.rules import parse_duration

from .support import pods_for_deployments

TESTDATA = Path(__file__).parent / "testdata"
GW, V1, X = "gateway.networking.k8s.io", "inference.networking.k8s.io", "inference.networking.x-k8s.io"
CTL = "infergate.io/gateway-controller"


def case(name: str, **options: Any) -> TranslationResult:
    objects = parse_manifests((TESTDATA / f"{name}.in.yaml").read_text(), name)
    opts = TranslatorOptions(addresses=options.pop("addresses", LoopbackAllocator()), **options)
    return translate(Snapshot.of(objects + pods_for_deployments(objects)), opts)


def conditions_of(result: TranslationResult, ref: ObjectRef, key: str = "parents") -> dict[str, tuple[str, str]]:
    (parent,) = result.statuses[ref][key]
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


def routes(result: TranslationResult, domain: str = "*") -> dict[str, Any]:
    (listener,) = result.ir.listeners
    (vhost,) = [vh for vh in listener.virtual_hosts if vh.domains == (domain,)]
    return {r.match.path: r for r in vhost.routes}


def test_weighted_split_between_preview_and_ga_pools_uses_each_pools_own_picker() -> None:
    result = case("weighted_split_v1alpha2_v1")
    route = routes(result)["/"]
    assert [(b.kind, b.weight) for b in route.backends] == [("pool", 50), ("pool", 50)]
    preview, ga = (result.ir.pool(b.target) for b in route.backends)
    assert (preview.group, ga.group) == (X, V1)
    assert preview.endpoints == ga.endpoints and len(ga.endpoints) == 3  # same pods
    assert preview.picker.key != ga.picker.key
    assert [e.port for e in preview.picker.endpoints] == [9002]
    assert [e.port for e in ga.picker.endpoints] == [9102, 9102]  # named targetPort resolved per pod
    assert (preview.picker.failure_mode, ga.picker.failure_mode) == ("FailClose", "FailOpen")
    assert route.timeout_seconds == 300.0
    x_status = result.statuses[ObjectRef(X, "InferencePool", "default", "vllm-llama3-8b-instruct")]
    assert list(x_status) == ["parent"]  # v1alpha2 uses the singular key
    assert x_status["parent"][0]["conditions"][0]["observedGeneration"] == 3


def test_invalid_backends_keep_their_weighted_share_and_reasons() -> None:
    result = case("invalid_backends")
    by_path = routes(result)
    assert [(b.kind, b.weight) for b in by_path["/missing"].backends] == [("pool", 50), ("invalid", 50)]
    assert by_path["/missing"].backends[1].invalid_status == 500
    assert by_path["/nothing"].direct_status == 500 and by_path["/nothing"].backends == ()
    assert by_path["/echo"].backends[0].kind == "service"
    (svc,) = result.ir.services
    assert [(e.address, e.port) for e in svc.endpoints] == [("10.0.1.1", 8000), ("10.0.1.2", 8000)]
    expected = {"missing-pool": "BackendNotFound", "wrong-group": "InvalidKind", "missing-port": "BackendNotFound"}
    for name, reason in expected.items():
        conds = conditions_of(result, ObjectRef(GW, "HTTPRoute", "default", name))
        assert conds["Accepted"] == ("True", "Accepted")
        assert conds["ResolvedRefs"] == ("False", reason)


def test_invalid_endpoint_picker_references() -> None:
    result = case("invalid_epp")
    for name in ("missing-service", "wrong-kind", "no-port", "wrong-port"):
        conds = conditions_of(result, ObjectRef(V1, "InferencePool", "default", name))
        assert conds == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "InvalidExtensionRef")}
        assert result.ir.pool(f"pool/{V1}/default/{name}").picker.endpoints == ()
    preview = result.ir.pool(f"pool/{X}/default/preview-default-port")
    assert [(e.address, e.port) for e in preview.picker.endpoints] == [("127.0.0.9", 9002)]
    assert conditions_of(result, ObjectRef(X, "InferencePool", "default", "preview-default-port"), "parent")[
        "ResolvedRefs"] == ("True", "ResolvedRefs")
    # A pool no route references has no parents and is not in the IR.
    assert result.statuses[ObjectRef(V1, "InferencePool", "default", "unreferenced")] == {"parents": []}
    with pytest.raises(KeyError):
        result.ir.pool(f"pool/{V1}/default/unreferenced")


def test_cross_namespace_references_need_a_reference_grant() -> None:
    result = case("cross_namespace")
    route = routes(result)["/"]
    assert [(b.kind, b.weight) for b in route.backends] == [("pool", 3), ("invalid", 1)]
    conds = conditions_of(result, ObjectRef(GW, "HTTPRoute", "apps", "cross"))
    assert conds == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "RefNotPermitted")}
    assert conditions_of(result, ObjectRef(GW, "HTTPRoute", "other", "not-allowed"))["Accepted"] == (
        "False", "NotAllowedByListeners")
    assert result.statuses[ObjectRef(V1, "InferencePool", "models", "not-granted")] == {"parents": []}


def test_model_name_header_routing_across_two_pools_and_extra_class() -> None:
    result = case("model_name_routing")
    (listener,) = result.ir.listeners
    assert listener.body_based_routing and listener.port == 80
    (vhost,) = listener.virtual_hosts
    picked = {r.match.headers[0].value: result.ir.pool(r.backends[0].target).name for r in vhost.routes}
    assert picked == {"meta-llama/Llama-3.1-8B-Instruct": "llama", "Qwen/Qwen2.5-1.5B-Instruct": "qwen"}
    assert vhost.routes[0].match.headers[0].name == "x-gateway-model-name"


def test_extra_gateway_class_is_served_without_a_class_object() -> None:
    objects = parse_manifests((TESTDATA / "model_name_routing.in.yaml").read_text())
    objects = [o for o in objects if o["kind"] != "GatewayClass"]
    assert not translate(Snapshot.of(objects)).ir.listeners
    opts = TranslatorOptions(extra_gateway_classes=frozenset({"gke-l7-regional-external-managed"}))
    result = translate(Snapshot.of(objects), opts)
    assert len(result.ir.listeners) == 1
    assert not [ref for ref in result.statuses if ref.kind == "GatewayClass"]


def test_listener_validation_hostnames_and_precedence() -> None:
    result = case("listeners_filters_precedence")
    gw = result.statuses[ObjectRef(GW, "Gateway", "default", "gw")]
    listeners = {lst["name"]: {c["type"]: (c["status"], c["reason"]) for c in lst["conditions"]} | {
        "attached": lst["attachedRoutes"]} for lst in gw["listeners"]}
    # HTTPS without tls.certificateRefs: accepted, but no certificate, so not programmed.
    assert listeners["https"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert listeners["https"]["Programmed"] == ("False", "Invalid")
    assert listeners["dup-a"]["Conflicted"] == ("True", "HostnameConflict")
    assert listeners["grpc-only"]["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    assert (listeners["http"]["attached"], listeners["wildcard"]["attached"]) == (2, 1)
    assert {c["type"]: c["reason"] for c in gw["conditions"]}["Accepted"] == "ListenersNotValid"
    reasons = {name: conditions_of(result, ObjectRef(GW, "HTTPRoute", "default", name))["Accepted"][1]
               for name in ("c-mirror", "d-no-such-section", "e-hostname-mismatch", "f-wrong-kind")}
    assert reasons == {"c-mirror": "UnsupportedValue", "d-no-such-section": "NoMatchingParent",
                       "e-hostname-mismatch": "NoMatchingListenerHostname", "f-wrong-kind": "NotAllowedByListeners"}
    # The other controller's Gateway gets no status entry from us.
    assert [p["parentRef"]["name"] for p in result.statuses[
        ObjectRef(GW, "HTTPRoute", "default", "d-no-such-section")]["parents"]] == ["gw"]
    assert ObjectRef(GW, "Gateway", "default", "other") in result.foreign_gateways
    (listener,) = result.ir.listeners
    order = {vh.domains[0]: [(r.match.path_type, r.match.path, r.match.method) for r in vh.routes]
             for vh in listener.virtual_hosts}
    # Exact before prefix; longer prefix first; method before headers; the wildcard listener
    # shadows the catch-all listener for *.example.com hosts.
    assert order["*"] == [("Exact", "/v1/models", None), ("PathPrefix", "/v1", "POST"),
                          ("PathPrefix", "/v1", None), ("PathPrefix", "/", None)]
    assert order["api.example.com"] == [("PathPrefix", "/rewrite", None), ("PathPrefix", "/old", None)]
    assert order["*.example.com"] == []
    assert order["other.org"][:2] == [("PathPrefix", "/rewrite", None), ("PathPrefix", "/old", None)]
    old = next(vh for vh in listener.virtual_hosts if vh.domains == ("api.example.com",)).routes[1]
    assert old.redirect is not None and old.redirect.prefix_path == "/new" and old.redirect.status_code == 301
    assert old.backends == ()


def test_hostname_rules() -> None:
    assert intersect(None, []) == ("*",)
    assert intersect("*.example.com", ["a.example.com", "example.com", "b.a.example.com"]) == (
        "a.example.com", "b.a.example.com")
    assert intersect("foo.example.com", ["*.example.com"]) == ("foo.example.com",)
    assert intersect("foo.example.com", ["bar.example.com"]) == ()
    assert covers("*.example.com", "*.a.example.com") and not covers("*.example.com", "example.com")


def test_durations() -> None:
    assert parse_duration("1h2m3s", "t") == 3723.0
    assert parse_duration("250ms", "t") == 0.25
    assert parse_duration("0s", "t") is None
    with pytest.raises(ValueError, match="t: Invalid value"):
        parse_duration("5 minutes", "t")


def test_loopback_allocator_is_stable_and_honours_previous_and_requested_addresses() -> None:
    a = ObjectRef(GW, "Gateway", "default", "a")
    b = ObjectRef(GW, "Gateway", "default", "b")
    first = LoopbackAllocator("127.0.2.0/24").assign(a, [], [])
    again = LoopbackAllocator("127.0.2.0/24").assign(a, [], [])
    assert first == again and first.bind_address.startswith("127.0.2.")
    alloc = LoopbackAllocator("127.0.2.0/30")  # two hosts
    x, y = alloc.assign(a, [], []), alloc.assign(b, [], [])
    assert x.bind_address != y.bind_address
    alloc.retain([a])
    assert alloc.assign(b, [], ["127.0.2.2"]).bind_address == "127.0.2.2" or x.bind_address == "127.0.2.2"
    with pytest.raises(ValueError):
        LoopbackAllocator("10.0.0.0/24")
    cluster = ClusterAllocator("203.0.113.7")
    assert cluster.assign(a, [], []).bind_address == "0.0.0.0"
    assert cluster.assign(a, [], []).status_address == "203.0.113.7"


def test_unsupported_requested_address_rejects_the_gateway() -> None:
    objects = parse_manifests((TESTDATA / "model_name_routing.in.yaml").read_text())
    for obj in objects:
        if obj["kind"] == "Gateway":
            obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.1"}]
    result = translate(Snapshot.of(objects))
    status = result.statuses[ObjectRef(GW, "Gateway", "default", "inference-gateway")]
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds == {"Accepted": ("False", "UnsupportedAddress"), "Programmed": ("False", "AddressNotAssigned")}
    assert "addresses" not in status and not result.ir.listeners


def test_merge_status_keeps_other_controllers_and_transition_times() -> None:
    route = ObjectRef(GW, "HTTPRoute", "default", "r")
    other = {"parentRef": {"name": "theirs"}, "controllerName": "example.com/x", "conditions": []}
    old_ours = {"parentRef": {"group": GW, "kind": "Gateway", "namespace": "default", "name": "gw"},
                "controllerName": CTL,
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                "lastTransitionTime": "2020-01-01T00:00:00Z"},
                               {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                                "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    desired_entry = {"parentRef": dict(old_ours["parentRef"]), "controllerName": CTL,
                     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                                    {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    merged = merge_status(route, {"parents": [other, old_ours]}, {"parents": [desired_entry]}, controller_name=CTL)
    assert merged is not None
    assert merged["parents"][0] == other
    times = {c["type"]: c["lastTransitionTime"] for c in merged["parents"][1]["conditions"]}
    assert times == {"Accepted": "2020-01-01T00:00:00Z", "ResolvedRefs": "2026-01-01T00:00:00Z"}
    assert merge_status(route, merged, {"parents": [desired_entry]}, controller_name=CTL) is None  # no change


def test_merge_pool_status_placeholder_and_foreign_gateways() -> None:
    pool = ObjectRef(X, "InferencePool", "default", "p")
    placeholder = {"parent": [{"parentRef": {"kind": "Status", "name": "default"}, "conditions": []}]}
    ours = {"parentRef": {"group": GW, "kind": "Gateway", "namespace": "default", "name": "gw"},
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "lastTransitionTime": "t1"}]}
    merged = merge_status(pool, placeholder, {"parent": [ours]}, controller_name=CTL)
    assert merged == {"parent": [ours]}
    back = merge_status(pool, merged, {"parent": []}, controller_name=CTL)
    assert back is not None and back["parent"][0]["parentRef"] == {"kind": "Status", "name": "default"}
    v1 = ObjectRef(V1, "InferencePool", "default", "p")
    theirs = {"parentRef": {"group": GW, "kind": "Gateway", "namespace": "default", "name": "istio"}, "conditions": []}
    merged = merge_status(v1, {"parents": [theirs]}, {"parents": [ours]}, controller_name=CTL,
                          foreign_gateways=frozenset({ObjectRef(GW, "Gateway", "default", "istio")}))
    assert merged == {"parents": [theirs, ours]}
    assert merge_status(v1, {"parents": [theirs, ours]}, {"parents": []}, controller_name=CTL,
                        foreign_gateways=frozenset()) == {"parents": []}


def test_cluster_mode_gateways_sharing_a_port_conflict() -> None:
    objects = parse_manifests((TESTDATA / "model_name_routing.in.yaml").read_text())
    second = next(o for o in objects if o["kind"] == "Gateway")
    objects.append({**second, "metadata": {"name": "second", "namespace": "default"}})
    result = translate(Snapshot.of(objects), TranslatorOptions(addresses=ClusterAllocator("203.0.113.7")))
    first_status = result.statuses[ObjectRef(GW, "Gateway", "default", "inference-gateway")]
    second_status = result.statuses[ObjectRef(GW, "Gateway", "default", "second")]
    listener = {c["type"]: (c["status"], c["reason"]) for c in second_status["listeners"][0]["conditions"]}
    assert listener["Accepted"] == ("False", "PortUnavailable")
    assert {c["type"]: c["status"] for c in second_status["conditions"]} == {"Accepted": "False", "Programmed": "False"}
    assert {c["type"]: c["status"] for c in first_status["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    assert [(lst.gateway_name, lst.address) for lst in result.ir.listeners] == [("inference-gateway", "0.0.0.0")]
    # With one loopback address per Gateway there is no conflict.
    assert len(translate(Snapshot.of(objects)).ir.listeners) == 2


def test_a_regex_envoy_would_reject_is_reported_not_programmed() -> None:
    objects = parse_manifests((TESTDATA / "model_name_routing.in.yaml").read_text())
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    route["spec"]["rules"][0]["matches"] = [{"path": {"type": "RegularExpression", "value": "/v1/(?!admin).*"}}]
    bad = {**route, "metadata": {"name": "bad-regex", "namespace": "default"}}
    bad["spec"] = {**route["spec"], "rules": [{"matches": [{"headers": [
        {"type": "RegularExpression", "name": "x-a", "value": "(unclosed"}]}], "backendRefs": []}]}
    result = translate(Snapshot.of([*objects, bad]))
    for name in ("models", "bad-regex"):
        (parent,) = result.statuses[ObjectRef(GW, "HTTPRoute", "default", name)]["parents"]
        accepted = next(c for c in parent["conditions"] if c["type"] == "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
    assert "RE2" in next(c for c in result.statuses[ObjectRef(GW, "HTTPRoute", "default", "models")]["parents"][0][
        "conditions"] if c["type"] == "Accepted")["message"]
    assert all(not vh.routes for lst in result.ir.listeners for vh in lst.virtual_hosts)
