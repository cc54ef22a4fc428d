"""The per-Gateway Envoy fleet's pure parts: desired objects, GatewayClass parameters, statuses."""

from __future__ import annotations

from typing import Any

import pytest

from infergate.controller.fleet.applier import is_subset
from infergate.controller.fleet.desired import (
    FleetSettings,
    GatewayInfo,
    desired_objects,
    envoy_deployment,
    envoy_pdb,
    envoy_service,
    fleet_name,
)
from infergate.controller.fleet.params import FleetParams, ParamsError, parameters_ref_error, parse_params
from infergate.controller.fleet.status import (
    fleet_gateway_status,
    invalid_parameters_status,
    service_addresses,
)

GATEWAY: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
    "metadata": {"name": "inference-gateway", "namespace": "prod", "uid": "u-1"},
    "spec": {"gatewayClassName": "infergate", "listeners": [
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS"},
        {"name": "http-alt", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"},
    ]},
}
SETTINGS = FleetSettings(envoy_image="ghcr.io/infergate/infergate:1.2.3", xds_host="10.96.0.12", xds_port=18000)


def test_gateway_info_takes_each_listener_port_once() -> None:
    info = GatewayInfo.of(GATEWAY)
    assert info == GatewayInfo("prod", "inference-gateway", "u-1", (("HTTP", 80), ("HTTPS", 443)))
    assert info.node_id == "prod/inference-gateway"


def test_the_deployment_runs_infergate_envoy_against_the_xds_service_and_drains_on_rollout() -> None:
    deployment = envoy_deployment(GatewayInfo.of(GATEWAY), FleetParams(replicas=3, log_level="info"), SETTINGS)
    meta = deployment["metadata"]
    assert (meta["name"], meta["namespace"]) == ("infergate-inference-gateway", "prod")
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "infergate",
                              "gateway.networking.k8s.io/gateway-name": "inference-gateway",
                              "app.kubernetes.io/component": "envoy"}
    assert meta["ownerReferences"] == [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                        "name": "inference-gateway", "uid": "u-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"] == meta["labels"] == spec["template"]["metadata"]["labels"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/infergate/infergate:1.2.3"
    assert container["command"] == ["infergate", "envoy", "--xds-server", "10.96.0.12:18000",
                                    "--node-id", "prod/inference-gateway", "--admin-port", "19001",
                                    "--log-level", "info", "--drain-seconds", "15"]
    assert container["env"] == [{"name": "INFERGATE_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http-80", 80), ("https-443", 443), ("admin", 19001)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 19001}
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "3"]
    # the kubelet's SIGKILL comes after the preStop pause and the whole drain
    assert pod["terminationGracePeriodSeconds"] > 3 + 15
    assert "resources" not in container


def test_the_service_exposes_the_listener_ports_with_the_type_and_annotations_of_the_parameters() -> None:
    info = GatewayInfo.of(GATEWAY)
    service = envoy_service(info, FleetParams(), SETTINGS)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http-80", "port": 80, "targetPort": 80, "protocol": "TCP"},
        {"name": "https-443", "port": 443, "targetPort": 443, "protocol": "TCP"}]
    assert service["spec"]["selector"]["gateway.networking.k8s.io/gateway-name"] == "inference-gateway"
    assert service["metadata"]["annotations"] == {"infergate.io/controller": "infergate.io/gateway-controller"}
    custom = envoy_service(info, FleetParams(service_type="NodePort",
                                             service_annotations=(("example.com/lb", "internal"),)), SETTINGS)
    assert custom["spec"]["type"] == "NodePort"
    assert custom["metadata"]["annotations"] == {"example.com/lb": "internal",
                                                 "infergate.io/controller": "infergate.io/gateway-controller"}


def test_a_pdb_only_with_more_than_one_replica() -> None:
    info = GatewayInfo.of(GATEWAY)
    assert envoy_pdb(info, FleetParams(replicas=1), SETTINGS) is None
    pdb = envoy_pdb(info, FleetParams(replicas=2), SETTINGS)
    assert pdb is not None
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/managed-by": "infergate", "gateway.networking.k8s.io/gateway-name": "inference-gateway",
        "app.kubernetes.io/component": "envoy"}}}
    assert desired_objects(info, FleetParams(), SETTINGS)[2] is None


def test_resources_from_the_parameters_go_to_the_container() -> None:
    params = parse_params({"resources": "requests: {cpu: 500m, memory: 256Mi}\nlimits: {memory: 1Gi}"})
    container = envoy_deployment(GatewayInfo.of(GATEWAY), params, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def test_fleet_names_stay_dns_labels() -> None:
    assert fleet_name("gw") == "infergate-gw"
    long = fleet_name("g" * 80)
    assert len(long) <= 63 and long.startswith("infergate-ggg")
    assert long != fleet_name("g" * 79)


def test_parameters_parse_every_knob() -> None:
    params = parse_params({"replicas": "2", "serviceType": "ClusterIP",
                           "serviceAnnotations": "a.example.com/x: y\nb.example.com/n: 3",
                           "logLevel": "INFO", "extProcTimeout": "750ms", "responseBodyMode": "STREAMED"})
    assert params.replicas == 2
    assert params.service_type == "ClusterIP"
    assert params.service_annotations == (("a.example.com/x", "y"), ("b.example.com/n", "3"))
    assert params.log_level == "info"
    assert params.ext_proc_timeout_s == pytest.approx(0.75)
    assert params.response_body_mode == "STREAMED"
    assert parse_params(None) == FleetParams()


@pytest.mark.parametrize(("data", "message"), [
    ({"replicas": "two"}, "replicas: Invalid value: 'two'"),
    ({"replicas": "-1"}, "replicas: Invalid value"),
    ({"serviceType": "ExternalName"}, "serviceType: Unsupported value: 'ExternalName'"),
    ({"serviceAnnotations": "[a, b]"}, "serviceAnnotations: must be a YAML map"),
    ({"serviceAnnotations": "a: {b: c}"}, "serviceAnnotations.a: must be a string"),
    ({"resources": "requests: [1]"}, "resources.requests: must be a map"),
    ({"resources": "cpu: 1"}, "resources.cpu: unknown field"),
    ({"resources": "a: [b"}, "resources: invalid YAML"),
    ({"logLevel": "verbose"}, "logLevel: Unsupported value: 'verbose'"),
    ({"extProcTimeout": "5 seconds"}, "extProcTimeout: Invalid value: '5 seconds'"),
    ({"extProcTimeout": "0s"}, "extProcTimeout: Invalid value: '0s': must be positive"),
    ({"responseBodyMode": "BUFFERED"}, "responseBodyMode: Unsupported value: 'BUFFERED'"),
    ({"replica": "2"}, "replica: unknown key"),
])
def test_a_bad_parameter_is_an_error_naming_its_key(data: dict[str, str], message: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_parameters_ref_must_be_a_namespaced_configmap() -> None:
    assert parameters_ref_error(None) is None
    assert parameters_ref_error({"group": "", "kind": "ConfigMap", "name": "p", "namespace": "ns"}) is None
    assert "only a core ConfigMap" in str(parameters_ref_error({"group": "example.com", "kind": "Params",
                                                                 "name": "p", "namespace": "ns"}))
    assert parameters_ref_error({"group": "", "kind": "ConfigMap", "name": "p"}) == \
        "spec.parametersRef.namespace: Required value"


def test_addresses_come_from_the_load_balancer_else_the_cluster_ip() -> None:
    service = {"spec": {"clusterIP": "10.96.1.2"}, "status": {"loadBalancer": {"ingress": [
        {"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}}
    assert service_addresses(service) == [{"type": "IPAddress", "value": "203.0.113.7"},
                                          {"type": "Hostname", "value": "lb.example.com"}]
    assert service_addresses({"spec": {"clusterIP": "10.96.1.2"}, "status": {"loadBalancer": {}}}) == [
        {"type": "IPAddress", "value": "10.96.1.2"}]
    assert service_addresses({"spec": {"clusterIP": "None"}}) == []
    assert service_addresses(None) == []


def _translated(programmed: str = "True") -> dict[str, Any]:
    return {"conditions": [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1,
         "lastTransitionTime": "t"},
        {"type": "Programmed", "status": programmed, "reason": "Programmed" if programmed == "True" else "Invalid",
         "message": "", "observedGeneration": 1, "lastTransitionTime": "t"}], "listeners": []}


def _programmed(status: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in status["conditions"] if c["type"] == "Programmed")
    return cond["status"], cond["reason"]


def test_programmed_needs_an_address_and_an_envoy_that_acked() -> None:
    address = [{"type": "IPAddress", "value": "127.96.0.10"}]
    common: dict[str, Any] = {"generation": 2, "now": "2026-01-01T00:00:00Z"}
    waiting = fleet_gateway_status(_translated(), addresses=address, synced=False, params_error=None, **common)
    assert _programmed(waiting) == ("False", "Pending")
    assert waiting["addresses"] == address
    done = fleet_gateway_status(_translated(), addresses=address, synced=True, params_error=None, **common)
    assert _programmed(done) == ("True", "Programmed")
    assert done["addresses"] == address
    no_address = fleet_gateway_status(_translated(), addresses=[], synced=True, params_error=None, **common)
    assert _programmed(no_address) == ("False", "AddressNotAssigned")
    assert "addresses" not in no_address
    invalid = fleet_gateway_status(_translated(), addresses=address, synced=True, params_error="replicas: bad",
                                   **common)
    assert _programmed(invalid) == ("False", "Invalid")
    assert "replicas: bad" in next(c for c in invalid["conditions"] if c["type"] == "Programmed")["message"]
    # A Gateway the translator did not program stays as translated.
    assert _programmed(fleet_gateway_status(_translated("False"), addresses=address, synced=True,
                                            params_error=None, **common)) == ("False", "Invalid")


def test_invalid_parameters_make_the_gateway_class_not_accepted() -> None:
    status = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                              "observedGeneration": 1, "lastTransitionTime": "t"}]}
    out = invalid_parameters_status(status, "ConfigMap ns/p: data.replicas: Invalid value", 4, "now")
    (cond,) = out["conditions"]
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("False", "InvalidParameters", 4)
    assert "data.replicas" in cond["message"]


def test_an_object_with_server_defaults_is_up_to_date() -> None:
    desired = envoy_service(GatewayInfo.of(GATEWAY), FleetParams(), SETTINGS)
    stored = {**desired, "metadata": {**desired["metadata"], "uid": "x", "resourceVersion": "7"},
              "spec": {**desired["spec"], "clusterIP": "10.96.0.3", "ports": [
                  {**p, "nodePort": 30000 + i} for i, p in enumerate(desired["spec"]["ports"])]}}
    assert is_subset(desired, stored)
    changed = envoy_service(GatewayInfo.of(GATEWAY), FleetParams(service_type="ClusterIP"), SETTINGS)
    assert not is_subset(changed, stored)


def test_a_deployment_is_ready_with_a_ready_pod_of_its_current_generation() -> None:
    from infergate.controller.fleet.provider import deployment_ready

    current = {"metadata": {"generation": 3},
               "status": {"observedGeneration": 3, "updatedReplicas": 2, "readyReplicas": 1}}
    assert deployment_ready(current)
    assert not deployment_ready({**current, "status": {**current["status"], "readyReplicas": 0}})
    assert not deployment_ready({**current, "status": {**current["status"], "observedGeneration": 2}})
    assert not deployment_ready({"metadata": {"generation": 1}})


def test_gateway_translate_options_carry_each_gateways_ext_proc_knobs() -> None:
    from infergate.dataplane.xds_translator import TranslateOptions
    from infergate.gateway import gateway_translate_options

    base = TranslateOptions()
    out = gateway_translate_options(base, {
        "ns/a": FleetParams(ext_proc_timeout_s=400.0, response_body_mode="STREAMED"),
        "ns/b": FleetParams()})
    assert set(out) == {"ns/a"}  # b has nothing of its own
    assert out["ns/a"].ext_proc_message_timeout_s == 400.0
    assert out["ns/a"].ext_proc_max_message_timeout_s >= 400.0
    assert out["ns/a"].ext_proc_response_body_mode == "STREAMED"


def test_a_gateway_whose_envoys_rejected_the_configuration_says_why() -> None:
    status = fleet_gateway_status(_translated(), addresses=[{"type": "IPAddress", "value": "10.0.0.1"}], synced=False,
                                  params_error=None, generation=1, now="t", nack="cannot bind 10.1.2.3:80")
    cond = next(c for c in status["conditions"] if c["type"] == "Programmed")
    assert (cond["status"], cond["reason"]) == ("False", "Invalid")
    assert "cannot bind 10.1.2.3:80" in cond["message"]


def test_programmed_at_reads_the_stored_condition_of_the_current_generation() -> None:
    from infergate.controller.fleet.provider import programmed_at

    stored = {"status": {"conditions": [{"type": "Programmed", "status": "True", "observedGeneration": 4}]}}
    assert programmed_at(stored, 4)
    assert not programmed_at(stored, 5)  # the spec changed since
    assert not programmed_at({"status": {"conditions": [{"type": "Programmed", "status": "False",
                                                         "observedGeneration": 4}]}}, 4)
    assert not programmed_at({}, 1)


def test_the_gateway_command_line_refuses_what_deployments_mode_cannot_do(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from infergate.cli.gateway import command

    runner = CliRunner()
    with_files = runner.invoke(command, ["-f", str(tmp_path), "--data-plane", "deployments"])
    assert with_files.exit_code == 2 and "needs an API server" in with_files.output
    leader_in_process = runner.invoke(command, ["-f", str(tmp_path), "--leader-elect"])
    assert leader_in_process.exit_code == 2 and "only with --data-plane deployments" in leader_in_process.output
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    bad_service = runner.invoke(command, ["--kubeconfig", str(kubeconfig), "--data-plane", "deployments",
                                          "--xds-service", "infergate-xds:18000"])
    assert bad_service.exit_code == 2 and "expected NAMESPACE/NAME:PORT" in bad_service.output
    bad_address = runner.invoke(command, ["--kubeconfig", str(kubeconfig), "--data-plane", "deployments",
                                          "--xds-address", "0.0.0.0"])
    assert bad_address.exit_code == 2 and "expected HOST:PORT" in bad_address.output
