"""`helm template` of charts/body-based-routing per provider: the Deployment runs
`infergate bbr` (arguments parsed by the real command), its Service, and the GKE / Istio
objects that put it in front of the Gateway's routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import infergate
from infergate.cli.bbr import command as bbr_command

from .chartkit import BBR_CHART, PROVIDER_APIS, Helm, by_kind, materialize, one, parse_cli

NAMESPACE = "gateway-system"


def render(helm: Helm, provider: str, **bbr: Any) -> list[dict[str, Any]]:
    values: dict[str, Any] = {"provider": {"name": provider}}
    if bbr:
        values["bbr"] = bbr
    objects: list[dict[str, Any]] = helm.template(BBR_CHART, values, release="bbr", namespace=NAMESPACE,
                                                  api_versions=PROVIDER_APIS[provider])
    return objects


@pytest.mark.parametrize("provider", ["none", "gke", "istio"])
@pytest.mark.parametrize("streaming", [True, False])
def test_bbr_renders_per_provider(helm: Helm, tmp_path: Path, provider: str, streaming: bool) -> None:
    objects = render(helm, provider, streaming=streaming)
    extra = {"none": set(), "gke": {"GCPRoutingExtension", "HealthCheckPolicy"},
             "istio": {"EnvoyFilter", "DestinationRule"}}[provider]
    assert set(by_kind(objects)) == {"ServiceAccount", "Deployment", "Service"} | extra
    assert {o["metadata"]["namespace"] for o in objects} == {NAMESPACE}

    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == "body-based-router"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/infergate/infergate:{infergate.__version__}"
    assert container["command"] == ["infergate", "bbr"]
    assert pod["automountServiceAccountToken"] is False
    options = parse_cli(bbr_command, materialize(deployment, objects, tmp_path, pod_ip="127.0.0.9"))
    assert (options["grpc_port"], options["grpc_health_port"], options["metrics_port"]) == (9004, 9005, 9090)
    assert options["host"] == "127.0.0.9"
    assert options["streaming"] is streaming
    assert options["verbosity"] == 3
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": 9005}

    service = one(objects, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == {"app": "body-based-router"}
    assert {(p["name"], p["port"], p["appProtocol"]) for p in service["spec"]["ports"]} == {
        ("grpc", 9004, "HTTP2"), ("grpc-health", 9005, "HTTP2")}

    if provider == "gke":
        extension = one(objects, "GCPRoutingExtension")
        assert extension["spec"]["targetRefs"] == [
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference-gateway"}]
        (ext,) = extension["spec"]["extensionChains"][0]["extensions"]
        assert ext["supportedEvents"] == ["RequestHeaders", "RequestBody", "RequestTrailers"]
        assert ext["requestBodySendMode"] == "FullDuplexStreamed"
        assert ext["backendRef"] == {"group": "", "kind": "Service", "name": "body-based-router", "port": 9004}
        check = one(objects, "HealthCheckPolicy")["spec"]
        assert check["targetRef"] == {"group": "", "kind": "Service", "name": "body-based-router"}
        assert check["default"]["config"]["grpcHealthCheck"]["port"] == 9005
    if provider == "istio":
        patch = one(objects, "EnvoyFilter")["spec"]["configPatches"][0]
        assert patch["patch"]["operation"] == "INSERT_FIRST"
        config = patch["patch"]["value"]["typed_config"]
        assert config["failure_mode_allow"] is False
        assert config["processing_mode"]["request_header_mode"] == "SEND"
        assert config["processing_mode"]["request_body_mode"] == ("FULL_DUPLEX_STREAMED" if streaming else "BUFFERED")
        assert config["grpc_service"]["envoy_grpc"]["cluster_name"] == (
            f"outbound|9004||body-based-router.{NAMESPACE}.svc.cluster.local")
        rule = one(objects, "DestinationRule")
        assert rule["spec"]["host"] == f"body-based-router.{NAMESPACE}.svc.cluster.local"
        assert rule["spec"]["trafficPolicy"] == {"tls": {"mode": "DISABLE"}}


def test_bbr_tls_and_custom_ports(helm: Helm, tmp_path: Path) -> None:
    objects = render(helm, "istio", port=19004, healthCheckPort=19005, tls={"enabled": True, "secretName": "bbr-tls"})
    options = parse_cli(bbr_command, materialize(one(objects, "Deployment"), objects, tmp_path))
    assert (options["grpc_port"], options["grpc_health_port"]) == (19004, 19005)
    assert options["secure_serving"] is True and options["cert_path"] == "/etc/infergate/tls"
    assert one(objects, "DestinationRule")["spec"]["trafficPolicy"]["tls"] == {"mode": "SIMPLE",
                                                                              "insecureSkipVerify": True}


@pytest.mark.parametrize(("values", "message"), [
    ({"provider": {"name": "aws"}}, 'provider.name: "aws" is not supported'),
    ({"bbr": {"name": "Body_Router"}}, 'bbr.name: "Body_Router" is not a valid Service name'),
    ({"bbr": {"tls": {"enabled": True}}}, "bbr.tls.secretName: required"),
    ({"bbr": {"port": 0}}, "at '/bbr/port': minimum: got 0, want 1"),
    ({"bbr": {"streaming": "yes"}}, "at '/bbr/streaming': got string, want boolean"),
])
def test_bbr_invalid_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError) as failure:
        helm.template(BBR_CHART, values)
    assert message in str(failure.value)
