"""The IR -> Envoy translator: golden files plus the properties the data plane relies on.

Regenerate the golden files with ``INFERGATE_UPDATE_GOLDEN=1 pytest tests/dataplane -k golden``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api import headers
from infergate.dataplane import protos
from infergate.dataplane.xds_translator import (
    EXT_PROC_FILTER,
    REQUEST_HEADERS_FILTER,
    TranslateOptions,
    TranslationError,
    translate,
)
from infergate.ir import (
    Backend,
    Certificate,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    Listener,
    Pool,
    Redirect,
    Route,
    RouteMatch,
    TLSFilterChain,
    VirtualHost,
)
from infergate.ir.codec import IRDecodeError, ir_from_dict, ir_to_dict

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in TESTDATA.glob("*.in.yaml"))


def _load(case: str) -> DataplaneConfig:
    return ir_from_dict(yaml.safe_load((TESTDATA / f"{case}.in.yaml").read_text()) or {})


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=120)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    resources = translate(_load(case))
    actual = _dump(resources.as_dict())
    golden = TESTDATA / f"{case}.out.yaml"
    if os.environ.get("INFERGATE_UPDATE_GOLDEN") == "1":
        golden.write_text(actual)
    assert golden.exists(), (
        f"missing {golden}: run INFERGATE_UPDATE_GOLDEN=1 pytest tests/dataplane -k golden"
    )
    assert actual == golden.read_text(), f"{case}: output differs from {golden.name}"


@pytest.mark.parametrize("case", CASES)
def test_every_resource_parses_as_envoy_protobuf(case: str) -> None:
    for type_url, resources in translate(_load(case)).by_type_url().items():
        for resource in resources.values():
            protos.to_proto(type_url, resource)  # raises on a misspelt field or a wrong type


def test_ir_round_trips_through_dicts() -> None:
    for case in CASES:
        ir = _load(case)
        assert ir_from_dict(ir_to_dict(ir)) == ir


def test_ir_decode_names_the_bad_field() -> None:
    with pytest.raises(IRDecodeError, match=r"listeners\[0\]\.virtual_hosts\[0\]\.routs: unknown field"):
        ir_from_dict(
            {
                "listeners": [
                    {
                        "key": "l",
                        "gateway_namespace": "d",
                        "gateway_name": "g",
                        "address": "1.2.3.4",
                        "port": 80,
                        "virtual_hosts": [{"name": "v", "domains": ["*"], "routs": []}],
                    }
                ]
            }
        )
    with pytest.raises(IRDecodeError, match=r"pools\[0\]\.picker\.failure_mode: 'Open' is not one of"):
        ir_from_dict(
            {
                "pools": [
                    {
                        "key": "p",
                        "group": "g",
                        "namespace": "n",
                        "name": "p",
                        "target_ports": [1],
                        "endpoints": [],
                        "picker": {"key": "e", "endpoints": [], "failure_mode": "Open"},
                    }
                ]
            }
        )


def _hcm_filters(listener: dict[str, Any]) -> list[str]:
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [f["name"] for f in hcm["http_filters"]]


def test_filter_order_strips_destination_before_ext_proc_and_routes_by_body_model() -> None:
    resources = translate(_load("single-pool"))
    (listener,) = [r for r in resources.listeners if "address" in r]
    assert _hcm_filters(listener) == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.transform",
        REQUEST_HEADERS_FILTER,  # route header modifiers: after the route is resolved by model, before the EPP
        EXT_PROC_FILTER,
        # responses cross these before ext_proc: the served endpoint into envoy.lb metadata
        "envoy.filters.http.header_to_metadata",
        "infergate.served_endpoint.stamp",
        "envoy.filters.http.router",
    ]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    removed = [m["remove"] for m in hcm["http_filters"][0]["typed_config"]["mutations"]["request_mutations"]]
    assert headers.DESTINATION_ENDPOINT in removed
    transform = hcm["http_filters"][1]["typed_config"]
    assert transform["clear_route_cache"] is True
    modifiers = hcm["http_filters"][2]["typed_config"]
    assert modifiers == {"@type": modifiers["@type"], "most_specific_header_mutations_wins": True}
    ext_proc = hcm["http_filters"][3]["typed_config"]
    assert ext_proc["processing_mode"]["request_header_mode"] == "SEND"
    assert ext_proc["metadata_options"] == {"receiving_namespaces": {"untyped": ["envoy.lb"]},
                                           "forwarding_namespaces": {"untyped": ["envoy.lb"]}}  # served endpoint


def test_body_based_routing_off_has_no_transform() -> None:
    resources = translate(_load("matches-and-filters"))
    (listener,) = [r for r in resources.listeners if "address" in r]
    assert "envoy.filters.http.transform" not in _hcm_filters(listener)


def test_each_weighted_pool_consults_its_own_epp_with_its_failure_mode() -> None:
    resources = translate(_load("weighted-two-pools"))
    (route_config,) = resources.route_configurations
    (route,) = route_config["virtual_hosts"][0]["routes"]
    clusters = route["route"]["weighted_clusters"]["clusters"]
    by_name = {c["name"]: c for c in clusters}
    assert [c["weight"] for c in clusters] == [45, 45, 10]  # the weight-0 backend is left out
    preview = by_name["pool/inference.networking.x-k8s.io/default/vllm-preview"]["typed_per_filter_config"]
    ga = by_name["pool/inference.networking.k8s.io/default/vllm-ga"]["typed_per_filter_config"]
    assert preview[EXT_PROC_FILTER]["overrides"]["grpc_service"]["envoy_grpc"]["cluster_name"] == (
        "epp/default/vllm-preview-epp/9002"
    )
    assert preview[EXT_PROC_FILTER]["overrides"]["failure_mode_allow"] is True
    assert ga[EXT_PROC_FILTER]["overrides"]["grpc_service"]["envoy_grpc"]["cluster_name"] == (
        "epp/default/vllm-ga-epp/9002"
    )
    assert ga[EXT_PROC_FILTER]["overrides"]["failure_mode_allow"] is False
    invalid = by_name["infergate/invalid/500"]
    assert invalid["typed_per_filter_config"][EXT_PROC_FILTER]["disabled"] is True
    assert route["route"]["timeout"] == "0s"  # generations: no route timeout


def test_invalid_share_goes_to_an_internal_listener_answering_its_status() -> None:
    resources = translate(_load("matches-and-filters"))
    internal = {r["name"]: r for r in resources.listeners if "internal_listener" in r}
    assert set(internal) == {"infergate/invalid/500", "infergate/invalid/503"}
    hcm = internal["infergate/invalid/503"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["route_config"]["virtual_hosts"][0]["routes"][0]["direct_response"]["status"] == 503
    clusters = {c["name"]: c for c in resources.clusters}
    address = clusters["infergate/invalid/503"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert address["endpoint"]["address"] == {
        "envoy_internal_address": {"server_listener_name": "infergate/invalid/503"}
    }


def test_pool_cluster_uses_override_host_and_epp_cluster_is_http2_with_fast_connect() -> None:
    resources = translate(_load("single-pool"))
    clusters = {c["name"]: c for c in resources.clusters}
    pool = clusters["pool/inference.networking.k8s.io/default/vllm-llama3-8b-instruct"]
    policy = pool["load_balancing_policy"]["policies"][0]["typed_extension_config"]
    assert policy["name"] == "envoy.load_balancing_policies.override_host"
    sources = policy["typed_config"]["override_host_sources"]
    assert sources[0] == {"header": headers.DESTINATION_ENDPOINT}
    epp = clusters["epp/default/vllm-llama3-8b-instruct-epp/9002"]
    assert "http2_protocol_options" in str(epp["typed_extension_protocol_options"])
    assert float(epp["connect_timeout"].rstrip("s")) <= 1.0
    endpoints = {a["cluster_name"]: a for a in resources.cluster_load_assignments}
    pool_eps = endpoints[pool["name"]]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in pool_eps] == [
        "10.0.0.11",
        "10.0.0.12",
    ]


def test_routes_keep_ir_order() -> None:
    resources = translate(_load("matches-and-filters"))
    (route_config,) = resources.route_configurations
    names = [r["name"] for r in route_config["virtual_hosts"][0]["routes"]]
    ir = _load("matches-and-filters")
    assert names == [r.key for r in ir.listeners[0].virtual_hosts[0].routes]


def test_changing_weights_changes_only_route_configurations() -> None:
    before = _load("weighted-two-pools")
    vhost = before.listeners[0].virtual_hosts[0]
    route = vhost.routes[0]
    after_route = Route(
        key=route.key,
        match=route.match,
        backends=(
            Backend(kind="pool", weight=0, target=route.backends[0].target),
            Backend(kind="pool", weight=100, target=route.backends[1].target),
        ),
    )
    after = DataplaneConfig(
        listeners=(
            Listener(
                **{
                    **before.listeners[0].__dict__,
                    "virtual_hosts": (VirtualHost(vhost.name, vhost.domains, (after_route,)),),
                }
            ),
        ),
        pools=before.pools,
    )
    a, b = translate(before), translate(after)
    assert a.route_configurations != b.route_configurations
    external = [r for r in b.listeners if "address" in r]
    assert external == [r for r in a.listeners if "address" in r]
    assert {c["name"] for c in b.clusters} <= {c["name"] for c in a.clusters}


def test_two_listeners_on_one_address_and_port_are_rejected_with_the_field() -> None:
    listener = Listener("gw/a", "d", "a", "127.0.0.1", 80, ())
    other = Listener("gw/b", "d", "b", "127.0.0.1", 80, ())
    with pytest.raises(
        TranslationError, match=r"listeners\[gw/b\]\.port: 127.0.0.1:80 is already used by listener gw/a"
    ):
        translate(DataplaneConfig(listeners=(listener, other)))


def test_backend_missing_from_the_ir_is_served_as_invalid_with_a_warning() -> None:
    route = Route("r", RouteMatch(), (Backend(kind="pool", weight=1, target="pool/nope"),))
    ir = DataplaneConfig(
        listeners=(Listener("gw/a", "d", "a", "127.0.0.1", 80, (VirtualHost("v", ("*",), (route,)),)),)
    )
    resources = translate(ir)
    assert any("pool/nope" in w for w in resources.warnings)
    assert "infergate/invalid/500" in {c["name"] for c in resources.clusters}


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="epp_connect_timeout_s"):
        TranslateOptions(epp_connect_timeout_s=5)
    with pytest.raises(ValueError, match="ext_proc_response_body_mode"):
        TranslateOptions(ext_proc_response_body_mode="BUFFERED")


def test_epp_shared_by_two_pools_gets_one_cluster() -> None:
    picker = EndpointPicker("epp/shared", (Endpoint("10.0.0.9", 9002),))
    pools = tuple(
        Pool(f"pool/{n}", "inference.networking.k8s.io", "d", n, (80,), (Endpoint("10.0.0.1", 80),), picker)
        for n in ("a", "b")
    )
    resources = translate(DataplaneConfig(pools=pools))
    assert [c["name"] for c in resources.clusters].count("epp/shared") == 1


def test_a_domain_in_two_virtual_hosts_of_a_listener_is_rejected_with_the_field() -> None:
    vhosts = (
        VirtualHost("one", ("a.example.com",), ()),
        VirtualHost("two", ("b.example.com", "A.example.com"), ()),
    )
    with pytest.raises(
        TranslationError, match=r"listeners\[gw/a\]\.virtual_hosts\[1\]\.domains: 'A.example.com'"
    ):
        translate(DataplaneConfig(listeners=(Listener("gw/a", "d", "a", "127.0.0.1", 80, vhosts),)))


def test_request_header_modifiers_run_before_ext_proc_and_never_touch_the_epp_headers() -> None:
    resources = translate(_load("matches-and-filters"))
    routes = {r["name"]: r for vh in resources.route_configurations[0]["virtual_hosts"] for r in vh["routes"]}
    exact = routes["httproute/app/exact/rule/0/match/0"]
    # Nothing in the router (which runs after the EPP): the modifier is the pre-ext_proc filter's config.
    assert "request_headers_to_add" not in exact and "request_headers_to_remove" not in exact
    mutations = exact["typed_per_filter_config"][REQUEST_HEADERS_FILTER]["mutations"]["request_mutations"]
    assert mutations == [
        {"remove": "x-drop-me"},
        {"append": {"header": {"key": "x-tier", "value": "gold"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}},
        {"append": {"header": {"key": "x-trace", "value": "a"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}},
    ]
    assert any(headers.DESTINATION_ENDPOINT in w for w in resources.warnings)
    assert exact["response_headers_to_remove"] == ["server"]  # response modifiers stay in the router


def test_backend_filters_per_weighted_cluster_with_duplicate_pool_entries() -> None:
    resources = translate(_load("model-rewrite-backend-filters"))
    route = resources.route_configurations[0]["virtual_hosts"][0]["routes"][0]
    clusters = route["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == ["pool/inference.networking.k8s.io/default/vllm-ga"] * 2
    assert [c["weight"] for c in clusters] == [90, 10]
    rewrites = [
        c["typed_per_filter_config"][REQUEST_HEADERS_FILTER]["mutations"]["request_mutations"][-1]["append"]
        for c in clusters
    ]
    assert [r["header"]["value"] for r in rewrites] == ["food-review-1", "food-review-2"]
    assert all(EXT_PROC_FILTER in c["typed_per_filter_config"] for c in clusters)  # still the pool's EPP
    assert [c["response_headers_to_add"][0]["header"]["value"] for c in clusters] == ["1", "2"]
    assert REQUEST_HEADERS_FILTER in route["typed_per_filter_config"]  # the rule's own modifier


def test_header_values_are_literals_not_envoy_format_strings() -> None:
    from infergate.ir import HeaderModifier, HeaderValue

    modifier = HeaderModifier(set=(HeaderValue("x-a", "50%"),), add=(HeaderValue("x-b", "%REQ(:path)%"),))
    route = Route("r", RouteMatch(), (Backend("service", 1, "service/d/s/80"),), request_headers=modifier,
                  response_headers=modifier)  # fmt: skip
    listener = Listener("l", "d", "g", "127.0.0.1", 80, (VirtualHost("v", ("*",), (route,)),))
    from infergate.ir import Service

    ir = DataplaneConfig(listeners=(listener,), services=(Service("service/d/s/80", "d", "s", 80, ()),))
    out = translate(ir).route_configurations[0]["virtual_hosts"][0]["routes"][0]
    request = out["typed_per_filter_config"][REQUEST_HEADERS_FILTER]["mutations"]["request_mutations"]
    assert [m["append"]["header"]["value"] for m in request] == ["50%%", "%%REQ(:path)%%"]
    assert [h["header"]["value"] for h in out["response_headers_to_add"]] == ["50%%", "%%REQ(:path)%%"]


def test_a_redirect_with_a_status_that_is_not_a_redirect_is_rejected_with_the_field() -> None:
    route = Route("r", RouteMatch(), (), redirect=Redirect(status_code=200))
    listener = Listener("gw/a", "d", "a", "127.0.0.1", 80, (VirtualHost("v", ("*",), (route,)),))
    with pytest.raises(TranslationError, match=r"r\.redirect\.statusCode: 200 is not a redirect status"):
        translate(DataplaneConfig(listeners=(listener,)))


@pytest.mark.parametrize("case", CASES)
def test_static_resources_inline_routes_and_endpoints(case: str) -> None:
    resources = translate(_load(case))
    static = resources.static_resources()
    routes = {r["name"]: r for r in resources.route_configurations}
    assignments = {a["cluster_name"]: a for a in resources.cluster_load_assignments}
    for listener in static["listeners"]:
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        assert "rds" not in hcm
        if listener["name"] in routes:
            assert hcm["route_config"] == routes[listener["name"]]
    for cluster in static["clusters"]:
        assert cluster["type"] == "STATIC" and "eds_cluster_config" not in cluster
        if cluster["name"] in assignments:
            assert cluster["load_assignment"] == assignments[cluster["name"]]
    assert [c["name"] for c in static["clusters"]] == [c["name"] for c in resources.clusters]


@pytest.mark.parametrize("case", [c for c in CASES if c != "empty"])
def test_envoy_accepts_static_resources_as_a_bootstrap(case: str, envoy_bin: str, tmp_path: Path) -> None:
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": translate(_load(case)).static_resources(),
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
            },
        }],
    }
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    done = subprocess.run([envoy_bin, "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def _tls_ir(certificate_chain: str = "CERT-A", server_names: tuple[str, ...] = ("a.example.com",),
            certificates: tuple[str, ...] = ("secret/default/a",)) -> DataplaneConfig:
    return DataplaneConfig(
        listeners=(Listener("gateway/default/gw/a", "default", "gw", "127.0.3.1", 8443, (),
                            tls=(TLSFilterChain("gateway/default/gw/a", server_names, certificates),
                                 TLSFilterChain("gateway/default/gw/any", (), ("secret/default/b",)))),),
        certificates=(Certificate("secret/default/a", certificate_chain, "KEY-A"),
                      Certificate("secret/default/b", "CERT-B", "KEY-B")),
    )


def test_https_listener_has_a_tls_chain_per_gateway_listener_chosen_by_sni() -> None:
    (listener,) = translate(_tls_ir()).listeners
    assert [f["name"] for f in listener["listener_filters"]] == ["envoy.filters.listener.tls_inspector"]
    first, catch_all = listener["filter_chains"]
    assert first["filter_chain_match"] == {"server_names": ["a.example.com"]}
    assert "filter_chain_match" not in catch_all  # no hostname: every other SNI
    context = first["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["tls_certificate_sds_secret_configs"] == [
        {"name": "secret/default/a", "sds_config": {"ads": {}, "resource_api_version": "V3"}}]
    assert "tls_certificates" not in context  # never inline: rotation must not change the listener
    assert first["filters"][0]["name"] == "envoy.filters.network.http_connection_manager"


def test_a_rotated_certificate_changes_only_its_secret() -> None:
    before, after = translate(_tls_ir("CERT-A")), translate(_tls_ir("CERT-A2"))
    assert before.listeners == after.listeners
    assert before.route_configurations == after.route_configurations
    assert before.clusters == after.clusters
    secrets = {s["name"]: s for s in after.secrets}
    assert secrets["secret/default/a"]["tls_certificate"]["certificate_chain"] == {"inline_string": "CERT-A2"}
    assert before.secrets[1] == after.secrets[1]


def test_plain_http_listener_has_no_tls() -> None:
    (listener,) = translate(DataplaneConfig(listeners=(Listener("l", "d", "g", "127.0.3.1", 80, ()),))).listeners
    assert "listener_filters" not in listener and "transport_socket" not in listener["filter_chains"][0]


def test_tls_chains_naming_a_missing_certificate_or_a_served_name_are_rejected_with_the_field() -> None:
    with pytest.raises(TranslationError, match=r"listeners\[gateway/default/gw/a\]\.tls\[0\]\.certificates: "
                                               r"'secret/default/nope' is not in the config's certificates"):
        translate(_tls_ir(certificates=("secret/default/nope",)))
    with pytest.raises(TranslationError, match=r"tls\[1\]\.server_names: the catch-all"):
        translate(_tls_ir(server_names=()))


def test_static_resources_carry_the_secrets_without_an_sds_source() -> None:
    static = translate(_tls_ir()).static_resources()
    assert [s["name"] for s in static["secrets"]] == ["secret/default/a", "secret/default/b"]
    for chain in static["listeners"][0]["filter_chains"]:
        sds = chain["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"]
        assert all("sds_config" not in config for config in sds)
