"""charts/inferencepool with the GIE v1.5.0 chart's values: upstream's own values file renders
as it is, and each v1.5 key does what upstream's does (inferenceObjectives, the Prometheus
ServiceMonitor, leader election with replicas > 1); the v1.0 forms still work beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api import validate

from .chartkit import GA, POOL_CHART, PREVIEW, Helm, one, pool_values

HA = "--ha-enable-leader-election"


def _args(objects: list[dict[str, Any]]) -> list[str]:
    return list(one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(one(objects, "Role")["rules"])


def test_upstream_v1_5_values_file_renders_as_is(helm: Helm, reference_dir: Path, tmp_path: Path) -> None:
    values = yaml.safe_load((reference_dir / "gie-v1.5.0" / "charts" / "inferencepool-values.yaml").read_text())
    values["inferencePool"]["modelServers"] = {"matchLabels": {"app": "vllm-qwen3-32b"}}  # upstream: REQUIRED
    objects = helm.template(POOL_CHART, values, release="qwen")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"
    assert "--v=1" in container["args"] and HA not in container["args"]
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "8Gi"}
    pool = one(objects, "InferencePool")
    assert pool["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"
    assert validate(pool) == []
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    lint = helm.run("lint", str(POOL_CHART), "-f", str(path), check=False)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr


def test_v1_0_values_still_render_beside_the_v1_5_defaults(helm: Helm) -> None:
    values = pool_values(GA, image={"hub": "docker.io/team", "name": "epp", "tag": "v1"}, failureMode="FailClose",
                         flags=[{"name": "v", "value": 4}, {"name": "flow-control", "value": True}])
    objects = helm.template(POOL_CHART, values)
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/team/epp:v1"
    assert {"--v=4", "--flow-control"} <= set(container["args"])
    assert one(objects, "InferencePool")["spec"]["endpointPickerRef"]["failureMode"] == "FailClose"


def test_inference_objectives_for_the_release_pool(helm: Helm) -> None:
    for api_version, group in ((GA, "inference.networking.k8s.io"), (PREVIEW, "inference.networking.x-k8s.io")):
        values = pool_values(api_version)
        values["inferenceObjectives"] = [{"name": "high-priority", "priority": 5}, {"name": "best-effort"},
                                         {"name": "llmd", "priority": -1, "apiVersion": "llm-d.ai/v1alpha2"}]
        objects = helm.template(POOL_CHART, values, release="food", namespace="ml")
        objectives = {o["metadata"]["name"]: o for o in objects if o["kind"] == "InferenceObjective"}
        assert set(objectives) == {"high-priority", "best-effort", "llmd"}
        for name, priority in (("high-priority", 5), ("best-effort", None), ("llmd", -1)):
            objective = objectives[name]
            assert objective["metadata"]["namespace"] == "ml"
            assert objective["spec"].get("priority") == priority
            assert objective["spec"]["poolRef"] == {"group": group, "kind": "InferencePool", "name": "food"}
            assert validate(objective) == [], name
        assert objectives["llmd"]["apiVersion"] == "llm-d.ai/v1alpha2"
        assert objectives["high-priority"]["apiVersion"] == "inference.networking.x-k8s.io/v1alpha2"


def test_prometheus_service_monitor_scrapes_the_epp_service(helm: Helm) -> None:
    assert "ServiceMonitor" not in {o["kind"] for o in helm.template(POOL_CHART, pool_values(GA))}
    values = pool_values(GA, monitoring={"interval": "30s", "prometheus": {
        "enabled": True, "extraLabels": {"release": "kube-prometheus"},
        "auth": {"enabled": True, "secretName": "sa-token"}}})  # upstream's auth: not needed, ignored
    objects = helm.template(POOL_CHART, values, release="food", namespace="ml")
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http-metrics", "path": "/metrics", "interval": "30s"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_leader_election_follows_replicas_unless_set(helm: Helm) -> None:
    lease = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "list", "watch", "create", "update", "patch"]}
    for extension, on in (({"replicas": 1}, False), ({"replicas": 2}, True),
                          ({"replicas": 3, "enableLeaderElection": False}, False),
                          ({"replicas": 1, "enableLeaderElection": True}, True)):
        objects = helm.template(POOL_CHART, pool_values(GA, **extension))
        assert (HA in _args(objects)) == on, extension
        assert (lease in _rules(objects)) == on, extension


def test_metrics_data_source_becomes_the_scrape_flags(helm: Helm) -> None:
    objects = helm.template(POOL_CHART, pool_values(GA, metricsDataSource={
        "scheme": "https", "path": "/stats/metrics", "insecureSkipVerify": True}))
    args = _args(objects)
    assert "--model-server-metrics-scheme=https" in args and "--model-server-metrics-path=/stats/metrics" in args


def test_experimental_http_route_routes_the_gateway_to_the_pool(helm: Helm) -> None:
    assert "HTTPRoute" not in {o["kind"] for o in helm.template(POOL_CHART, pool_values(GA))}
    for api_version, group in ((GA, "inference.networking.k8s.io"), (PREVIEW, "inference.networking.x-k8s.io")):
        values = pool_values(api_version)
        values["experimentalHttpRoute"] = {"enabled": True, "inferenceGatewayName": "gw", "requestTimeout": "60s"}
        route = one(helm.template(POOL_CHART, values, release="food", namespace="ml"), "HTTPRoute")
        assert route["metadata"]["namespace"] == "ml"
        assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]
        (rule,) = route["spec"]["rules"]
        assert rule["backendRefs"] == [{"group": group, "kind": "InferencePool", "name": "food"}]
        assert rule["timeouts"] == {"request": "60s"}
        assert validate(route) == []


def test_upstream_features_infergate_does_not_have_fail_clearly(helm: Helm) -> None:
    for key, message in (("sidecar", "charts/standalone"), ("latencyPredictor", "predicted-latency preset"),
                         ("tracing", "tracing is not supported")):
        values = pool_values(GA, **{key: {"enabled": True}})
        try:
            helm.template(POOL_CHART, values)
        except AssertionError as failure:
            assert f"inferenceExtension.{key}.enabled:" in str(failure) and message in str(failure)
        else:
            raise AssertionError(f"{key}.enabled rendered")


def test_pick_sharing_between_replicas_that_all_serve(helm: Helm, tmp_path: Path) -> None:
    """inferenceExtension.pickSharing: each EPP publishes its picks and finds its peers among the
    pods with the EPP's labels (docs/epp.md, "Replicas active-active and pick sharing")."""
    from .chartkit import materialize
    from .test_inferencepool_template import parse_epp

    values = pool_values(GA, replicas=2, enableLeaderElection=False, pickSharing={"enabled": True, "port": 9100})
    objects = helm.template(POOL_CHART, values, release="pool", namespace="ml")
    deployment = one(objects, "Deployment")
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert {"name": "pick-sharing", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
    parsed = parse_epp(materialize(deployment, objects, tmp_path))
    assert parsed["pick_sharing_port"] == 9100
    selector = dict(pair.split("=", 1) for pair in parsed["pick_sharing_peer_pods"].split(","))
    assert selector and selector.items() <= template["metadata"]["labels"].items()  # the EPP's own pods
    assert not parsed["ha_enable_leader_election"]
    # off by default
    plain = helm.template(POOL_CHART, pool_values(GA, replicas=2, enableLeaderElection=False))
    assert not any("pick-sharing" in a for a in _args(plain))
    # with leader election only one replica serves: refused, saying what to change
    with pytest.raises(Exception, match=r"pick sharing is between replicas that all serve.*enableLeaderElection: false"):
        helm.template(POOL_CHART, pool_values(GA, replicas=2, pickSharing={"enabled": True}))
    # the chart sets the flags itself
    with pytest.raises(Exception, match=r"--pick-sharing-port is set by the chart from inferenceExtension\.pickSharing"):
        helm.template(POOL_CHART, pool_values(GA, replicas=2, enableLeaderElection=False, pickSharing={"enabled": True},
                                              flags=[{"name": "pick-sharing-port", "value": "1"}]))
    with pytest.raises(Exception, match="pickSharing"):
        helm.template(POOL_CHART, pool_values(GA, pickSharing={"enabled": True, "port": 0}))  # the schema
