"""`helm template` of charts/inferencepool over the values matrix (API generation x provider x
extension settings), checking the rendered objects field by field; the InferencePools are
validated by infergate.api and by upstream's CRD schemas; the EPP Deployment's arguments are
parsed by the real `infergate epp` command, with the ConfigMap materialized as the kubelet
would mount it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import infergate
from infergate.api import validate
from infergate.cli.epp import command as epp_command
from infergate.epp.scheduling.config import load_config_file, parse_config, preset_text

from .chartkit import (
    GA,
    POOL_CHART,
    PREVIEW,
    PROVIDER_APIS,
    Helm,
    by_kind,
    materialize,
    one,
    parse_cli,
    pool_values,
)

RELEASE = "vllm-llama3-8b-instruct-ga"
NAMESPACE = "inference"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ClusterPodMonitoring", "Namespace",
                  "CustomResourceDefinition", "PriorityClass", "StorageClass", "GatewayClass"}

# (name, inferenceExtension overrides, what the EPP must then be told)
EXTENSION_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("defaults", {}, {"verbosity": 1}),
    ("flags", {"flags": [{"name": "v", "value": 3}, {"name": "flow-control", "value": True},
                         {"name": "refresh-metrics-interval", "value": "100ms"},
                         {"name": "health-checking", "value": False},
                         {"name": "zap-encoder", "value": "json"}]},
     {"verbosity": 3, "flow_control": True, "refresh_metrics_interval": 0.1, "health_checking": False}),
    ("failclose-ports-ha", {"failureMode": "FailClose", "extProcPort": 19002, "healthCheckPort": 19003,
                            "metricsPort": 19090, "replicas": 3},
     {"grpc_port": 19002, "grpc_health_port": 19003, "metrics_port": 19090}),
    ("v1.5-values", {"image": {"registry": "registry.example", "repository": "ml/epp", "tag": "v9"},
                     "flags": {"v": 2, "flow-control": True}, "metricsDataSource": {"scheme": "https", "path": "/m"},
                     "monitoring": {"prometheus": {"enabled": True}}},
     {"verbosity": 2, "flow_control": True, "model_server_metrics_scheme": "https", "model_server_metrics_path": "/m"}),
    ("tls", {"tls": {"enabled": True, "secretName": "epp-tls"}}, {"secure_serving": True}),
    ("custom-plugins", {"pluginsConfigFile": "prefix.yaml",
                        "pluginsCustomConfig": {"prefix.yaml": preset_text("prefix-load")}}, {}),
]


HA_FLAG = "--ha-enable-leader-election"


def parse_epp(args: list[str]) -> dict[str, Any]:
    """What `infergate epp` parses from the chart's args."""
    return parse_cli(epp_command, args)


def render_pool(helm: Helm, api_version: str, provider: str, extension: dict[str, Any],
                **kwargs: Any) -> list[dict[str, Any]]:
    values = pool_values(api_version, provider, **extension)
    objects: list[dict[str, Any]] = helm.template(POOL_CHART, values, release=RELEASE, namespace=NAMESPACE,
                         api_versions=PROVIDER_APIS[provider], **kwargs)
    return objects


@pytest.mark.parametrize(("api_version", "provider", "case"),
                         list(itertools.product([GA, PREVIEW], ["none", "gke", "istio"], EXTENSION_CASES)),
                         ids=lambda v: v[0] if isinstance(v, tuple) else v.rpartition("/")[2])
def test_matrix_renders_a_consistent_pool_and_epp(
    helm: Helm, upstream_pool_check: Callable[[dict[str, Any]], list[str]], tmp_path: Path,
    api_version: str, provider: str, case: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    _, extension, expected_options = case
    objects = render_pool(helm, api_version, provider, extension)
    group = api_version.rpartition("/")[0]
    epp_name = f"{RELEASE}-epp"
    ext_port = extension.get("extProcPort", 9002)
    kinds = by_kind(objects)
    provider_kinds = {"none": set(), "gke": {"HealthCheckPolicy", "GCPBackendPolicy", "PodMonitoring"},
                      "istio": {"DestinationRule"}}[provider]
    monitoring = {"ServiceMonitor"} if extension.get("monitoring") else set()
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Service", "Deployment",
                          "InferencePool"} | provider_kinds | monitoring
    for obj in objects:
        assert obj["kind"] not in CLUSTER_SCOPED
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

    # the InferencePool, valid for infergate and for upstream's CRDs
    pool = one(objects, "InferencePool")
    assert pool["apiVersion"] == api_version
    assert pool["metadata"]["name"] == RELEASE
    failure_mode = extension.get("failureMode", "FailOpen")  # the default since upstream's v1.4 chart
    if api_version == GA:
        assert pool["spec"] == {
            "targetPorts": [{"number": 8000}],
            "selector": {"matchLabels": {"app": "vllm-llama3-8b-instruct"}},
            "endpointPickerRef": {"name": epp_name, "port": {"number": ext_port}, "failureMode": failure_mode},
        }
    else:
        assert pool["spec"] == {
            "targetPortNumber": 8000,
            "selector": {"app": "vllm-llama3-8b-instruct"},
            "extensionRef": {"name": epp_name, "portNumber": ext_port, "failureMode": failure_mode},
        }
    assert validate(pool) == []
    assert upstream_pool_check(pool) == []

    # the EPP Deployment: `infergate epp` told the pool's name, namespace and group
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == epp_name
    assert deployment["spec"]["replicas"] == extension.get("replicas", 1)
    template = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"inferencepool": epp_name}
    assert selector.items() <= template["metadata"]["labels"].items()
    pod = template["spec"]
    (container,) = pod["containers"]
    image = extension.get("image")
    assert container["image"] == ("registry.example/ml/epp:v9" if image else
                                  f"ghcr.io/infergate/infergate:{infergate.__version__}")
    assert container["command"] == ["infergate", "epp"]
    assert pod["serviceAccountName"] == epp_name
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = materialize(deployment, objects, tmp_path, pod_ip="127.0.0.7")
    ha = extension.get("replicas", 1) > 1  # the v1.5 chart: replicas > 1 turns on leader election
    assert (HA_FLAG in args) == ha
    options = parse_epp(args)
    assert options["ha_enable_leader_election"] == ha
    assert options["pool_name"] == RELEASE
    assert options["pool_namespace"] == NAMESPACE
    assert options["pool_group"] == group
    assert options["host"] == "127.0.0.7"
    assert options["model_server_protocol"] == "vllm"
    assert options["kubeconfig"] is None and options["static_file"] is None
    expected = {"grpc_port": 9002, "grpc_health_port": 9003, "metrics_port": 9090, "secure_serving": False,
                **expected_options}
    for key, value in expected.items():
        assert options[key] == value, key
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc-ext-proc": options["grpc_port"], "grpc-health": options["grpc_health_port"],
                     "metrics": options["metrics_port"]}
    # the EPP protocol's health services (v1.6): liveness for the kubelet's restarts, readiness (synced,
    # scraped, leader) checked every second from the start
    assert container["livenessProbe"]["grpc"] == {"port": options["grpc_health_port"], "service": "liveness"}
    assert container["readinessProbe"]["grpc"] == {"port": options["grpc_health_port"], "service": "readiness"}
    assert (container["readinessProbe"]["initialDelaySeconds"], container["readinessProbe"]["periodSeconds"]) == (0, 1)
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_IP"] == "status.podIP" and env["POD_NAMESPACE"] == "metadata.namespace"
    if options["secure_serving"]:
        assert options["cert_path"] == "/etc/infergate/tls"
        tls_volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert tls_volume["secret"]["secretName"] == "epp-tls"
        assert {"name": "tls", "mountPath": "/etc/infergate/tls", "readOnly": True} in container["volumeMounts"]

    # the scheduler configuration the EPP loads parses with infergate's loader
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["name"] == epp_name
    load_config_file(options["config_file"])
    assert Path(options["config_file"]).name == extension.get("pluginsConfigFile", "default-plugins.yaml")
    assert parse_config(yaml.safe_load(config_map["data"]["default-plugins.yaml"])) == parse_config(
        yaml.safe_load(preset_text("default")))
    assert template["metadata"]["annotations"]["checksum/config"]

    # the Service: ext_proc, health and metrics ports, selecting the EPP pods
    service = one(objects, "Service")
    assert service["metadata"]["name"] == epp_name
    assert service["spec"]["selector"] == selector
    service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert service_ports == {"grpc-ext-proc": (options["grpc_port"], "grpc-ext-proc"),
                             "grpc-health": (options["grpc_health_port"], "grpc-health"),
                             "http-metrics": (options["metrics_port"], "metrics")}
    assert service_ports["grpc-ext-proc"][0] == ext_port

    # least-privilege, namespaced RBAC bound to the EPP's ServiceAccount
    role = one(objects, "Role")
    read = ["get", "list", "watch"]
    objectives = [  # a preview pool's EPP reads InferenceModels; a GA pool's rewrites, and llm-d.ai's too
        {"apiGroups": ["inference.networking.x-k8s.io"], "resources": ["inferenceobjectives", "inferencemodels"],
         "verbs": read}] if api_version == PREVIEW else [
        {"apiGroups": ["inference.networking.x-k8s.io"], "resources": ["inferenceobjectives", "inferencemodelrewrites"],
         "verbs": read},
        {"apiGroups": ["llm-d.ai"], "resources": ["inferenceobjectives", "inferencemodelrewrites"], "verbs": read}]
    assert role["rules"] == [
        {"apiGroups": [group], "resources": ["inferencepools"], "verbs": read},
        *objectives,
        {"apiGroups": [""], "resources": ["pods"], "verbs": read},
    ] + ([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
           "verbs": [*read, "create", "update", "patch"]}] if ha else [])
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": epp_name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": epp_name, "namespace": NAMESPACE}]
    assert one(objects, "ServiceAccount")["metadata"]["name"] == epp_name

    # what each provider adds
    if provider == "gke":
        for kind in ("HealthCheckPolicy", "GCPBackendPolicy"):
            policy = one(objects, kind)
            assert policy["spec"]["targetRef"] == {"group": group, "kind": "InferencePool", "name": RELEASE}
        assert one(objects, "HealthCheckPolicy")["spec"]["default"]["config"] == {
            "type": "HTTP", "httpHealthCheck": {"requestPath": "/health", "port": 8000}}
        assert one(objects, "GCPBackendPolicy")["spec"]["default"] == {"timeoutSec": 300, "logging": {"enabled": True}}
        monitoring = one(objects, "PodMonitoring")
        assert monitoring["spec"]["selector"]["matchLabels"] == selector
        assert monitoring["spec"]["endpoints"][0]["port"] == "metrics"
    if provider == "istio":
        rule = one(objects, "DestinationRule")
        assert rule["spec"]["host"] == f"{epp_name}.{NAMESPACE}.svc.cluster.local"
        expected_tls = {"mode": "SIMPLE", "insecureSkipVerify": True} if options["secure_serving"] else {
            "mode": "DISABLE"}
        assert rule["spec"]["trafficPolicy"] == {"tls": expected_tls}


def test_older_target_port_number_replaces_target_ports(
    helm: Helm, upstream_pool_check: Callable[[dict[str, Any]], list[str]],
) -> None:
    for api_version in (GA, PREVIEW):
        values = pool_values(api_version, "gke")
        values["inferencePool"]["targetPortNumber"] = 8081
        objects = helm.template(POOL_CHART, values, api_versions=PROVIDER_APIS["gke"])
        pool = one(objects, "InferencePool")
        if api_version == GA:
            assert pool["spec"]["targetPorts"] == [{"number": 8081}]
        else:
            assert pool["spec"]["targetPortNumber"] == 8081
        assert upstream_pool_check(pool) == [] and validate(pool) == []
        assert one(objects, "HealthCheckPolicy")["spec"]["default"]["config"]["httpHealthCheck"]["port"] == 8081
    values = pool_values(GA)
    values["inferencePool"]["targetPorts"] = [{"number": 8200}]
    assert one(helm.template(POOL_CHART, values), "InferencePool")["spec"]["targetPorts"] == [{"number": 8200}]
    # GIE v1.1+: several ports per pod (data-parallel ranks), each an endpoint
    values["inferencePool"]["targetPorts"] = [{"number": 8000}, {"number": 8002}, {"number": 8004}]
    pool = one(helm.template(POOL_CHART, values), "InferencePool")
    assert pool["spec"]["targetPorts"] == [{"number": 8000}, {"number": 8002}, {"number": 8004}]
    assert validate(pool) == []


def test_upstream_v1_0_0_preview_workaround_flag_is_accepted_once(helm: Helm, tmp_path: Path) -> None:
    """Upstream v1.0.0 needed flags: [{name: pool-group, value: x-k8s}] for preview pools."""
    values = pool_values(PREVIEW, flags=[{"name": "pool-group", "value": "inference.networking.x-k8s.io"}])
    objects = helm.template(POOL_CHART, values)
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--pool-group")] == ["--pool-group=inference.networking.x-k8s.io"]


def test_every_epp_flag_is_passed_or_settable_and_accepted_by_infergate_epp(helm: Helm, tmp_path: Path) -> None:
    """The chart's flag lists and `infergate epp`'s options must not drift apart."""
    helpers = (POOL_CHART / "templates" / "_helpers.tpl").read_text()

    def define(name: str) -> list[str]:
        body: str = helpers.split('{{- define "' + name + '" -}}\n', 1)[1].split("\n", 1)[0]
        return body.split()

    value_flags, bool_flags = define("inferencepool.valueFlags"), define("inferencepool.boolFlags")
    options = {opt.lstrip("-"): param for param in epp_command.params for opt in param.opts}
    for flag in value_flags:
        assert flag in options and not getattr(options[flag], "is_flag", False), flag
    for flag in bool_flags:
        assert flag in options and getattr(options[flag], "is_flag", False), flag
    # the flags the chart passes itself (TLS on, so that every one shows)
    values = pool_values(GA, tls={"enabled": True, "secretName": "s"}, flags=[], enableLeaderElection=True)
    args = one(helm.template(POOL_CHART, values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    chart_set = {a.lstrip("-").split("=", 1)[0] for a in args}
    assert HA_FLAG.lstrip("-") in chart_set
    not_for_pods = {"config-text", "static-file", "kubeconfig"}
    negations = {"no-flow-control", "no-health-checking", "no-secure-serving", "no-enable-pprof",
                 "no-ha-enable-leader-election"}
    assert set(options) - negations == set(value_flags) | set(bool_flags) | chart_set | not_for_pods
    # every settable flag at once is accepted by the real parser
    samples = {"v": "4", "refresh-metrics-interval": "20ms", "refresh-prometheus-metrics-interval": "1s",
               "metrics-staleness-threshold": "1s", "flow-control-max-queued": "16", "flow-control-max-wait": "5s",
               "flow-control-placement": "scheduler",
               "error-body": "text", "seed": "7", "total-queued-requests-metric": "vllm:num_requests_waiting",
               "kv-cache-usage-percentage-metric": "vllm:kv_cache_usage_perc",
               "lora-info-metric": "vllm:lora_requests_info", "model-server-metrics-port": "8000",
               "model-server-metrics-path": "/metrics", "model-server-metrics-scheme": "http",
               "zap-encoder": "json", "ha-lease-duration": "15s", "ha-renew-deadline": "10s", "ha-retry-period": "2s",
               "sd-max-inflight-per-endpoint": "32", "sd-max-pending-prefill-tokens": "4096",
               "sd-sheddable-max-inflight-per-endpoint": "3", "sd-sheddable-max-pending-prefill-tokens": "1024",
               "sd-sheddable-max-prefill-busy-fraction": "0.7", "sd-sheddable-ttft-objective": "500ms",
               "sd-sheddable-itl-objective": "50ms", "pick-sharing-port": "9004",
               "pick-sharing-peers": "pool-epp-peers.default.svc:9004", "pick-sharing-peer-pods": "app=pool-epp"}
    assert set(samples) == set(value_flags)
    flags: list[dict[str, Any]] = [{"name": f, "value": samples[f]} for f in value_flags]
    flags += [{"name": f, "value": True} for f in bool_flags]
    objects = helm.template(POOL_CHART, pool_values(GA, flags=flags))
    parsed = parse_epp(materialize(one(objects, "Deployment"), objects, tmp_path))
    assert (parsed["verbosity"], parsed["seed"], parsed["error_body"], parsed["flow_control_max_queued"]) == (
        4, 7, "text", 16)
    assert parsed["flow_control"] is True and parsed["health_checking"] is True
    assert (parsed["sd_max_inflight_per_endpoint"], parsed["sd_max_pending_prefill_tokens"]) == (32, 4096)
    assert parsed["sd_sheddable_max_inflight_per_endpoint"] == 3
    assert parsed["sd_sheddable_max_pending_prefill_tokens"] == 1024
    assert parsed["sd_sheddable_max_prefill_busy_fraction"] == 0.7
    assert (parsed["sd_sheddable_ttft_objective"], parsed["sd_sheddable_itl_objective"]) == (0.5, 0.05)


@pytest.mark.parametrize(("values_patch", "message"), [
    ({"inferencePool": {"modelServers": {"matchLabels": {}}}},
     "inferencePool.modelServers.matchLabels: required"),
    ({"inferencePool": {"apiVersion": "inference.networking.x-k8s.io/v1alpha1"}},
     "at '/inferencePool/apiVersion': value must be one of 'inference.networking.k8s.io/v1', "
     "'inference.networking.x-k8s.io/v1alpha2'"),
    ({"inferencePool": {"targetPorts": [{"number": 8000 + i} for i in range(9)]}},
     "inferencePool.targetPorts: 1 to 8 ports"),
    ({"inferencePool": {"apiVersion": PREVIEW, "targetPorts": [{"number": 8000}, {"number": 8001}]}},
     "inferencePool.targetPorts: exactly one port for a preview pool"),
    ({"inferencePool": {"targetPortNumber": 70000}}, "at '/inferencePool/targetPortNumber': maximum: got 70,000, want 65,535"),
    ({"inferencePool": {"modelServerType": "tgi"}}, "at '/inferencePool/modelServerType': value must be one of 'vllm'"),
    ({"provider": {"name": "aws"}}, 'provider.name: "aws" is not supported: use none, gke or istio'),
    ({"provider": {"policies": "sometimes"}}, "at '/provider/policies': value must be one of 'auto', 'always', 'never'"),
    ({"inferenceExtension": {"failureMode": "Open"}},
     "at '/inferenceExtension/failureMode': value must be one of 'FailOpen', 'FailClose'"),
    ({"inferenceExtension": {"replicas": "two"}}, "at '/inferenceExtension/replicas': got string, want integer"),
    ({"inferenceExtension": {"image": {"hub": "docker.io/me", "registry": "registry.example"}}},
     "inferenceExtension.image: hub/name (the v1.0 chart's form) and registry/repository (the v1.5 chart's) are both set"),
    ({"inferenceExtension": {"metricsDataSource": {"path": "/m"}, "flags": {"model-server-metrics-path": "/x"}}},
     "inferenceExtension.flags.model-server-metrics-path: --model-server-metrics-path contradicts "
     "inferenceExtension.metricsDataSource"),
    ({"inferenceExtension": {"metricsDataSource": {"scheme": "https", "insecureSkipVerify": False}}},
     "inferenceExtension.metricsDataSource.insecureSkipVerify: false is not supported"),
    ({"inferenceExtension": {"flags": {"ha-enable-leader-election": True}}},
     "--ha-enable-leader-election is set by the chart from inferenceExtension.replicas > 1"),
    ({"inferenceExtension": {"flags": {"no-such-flag": 1}}},
     "inferenceExtension.flags.no-such-flag.name: infergate epp has no flag --no-such-flag"),
    ({"inferenceExtension": {"flags": "v=3"}}, "at '/inferenceExtension/flags'"),
    ({"inferencePool": {"modelServerProtocol": "grpc"}}, 'inferencePool.modelServerProtocol: "grpc" is not supported'),
    ({"inferencePool": {"parser": "vllmgrpc-parser"}}, 'inferencePool.parser: "vllmgrpc-parser" is not supported'),
    ({"inferenceObjectives": [{"name": "a", "priority": 1}, {"name": "a", "priority": 2}]},
     'inferenceObjectives[1].name: "a" is listed twice'),
    ({"inferenceObjectives": [{"name": "a", "apiVersion": "v1"}]}, "at '/inferenceObjectives/0/apiVersion'"),
    ({"inferenceExtension": {"tls": {"enabled": True}}}, "inferenceExtension.tls.secretName: required"),
    ({"inferenceExtension": {"pluginsConfigFile": "missing.yaml"}}, '"missing.yaml" is neither default-plugins.yaml'),
    ({"inferenceExtension": {"flags": [{"name": "no-such-flag", "value": ""}]}},
     "inferenceExtension.flags[0].name: infergate epp has no flag --no-such-flag"),
    ({"inferenceExtension": {"flags": [{"name": "grpc-port", "value": 1}]}},
     "--grpc-port is set by the chart from inferenceExtension.extProcPort"),
    ({"inferenceExtension": {"flags": [{"name": "pool-group", "value": "inference.networking.x-k8s.io"}]}},
     "--pool-group is set by the chart from inferencePool.apiVersion"),
    ({"inferenceExtension": {"flags": [{"name": "flow-control", "value": "yes"}]}},
     'flags[0].value: --flow-control takes true or false, not "yes"'),
    ({"inferenceExtension": {"flags": [{"name": "v"}]}}, "flags[0].value: --v needs a value"),
    ({"inferenceExtension": {"extProcPort": 0}}, "at '/inferenceExtension/extProcPort': minimum: got 0, want 1"),
])
def test_invalid_values_fail_with_the_field_and_the_reason(  # values.schema.json or the templates' checks
    helm: Helm, values_patch: dict[str, Any], message: str,
) -> None:
    values = pool_values(GA)
    for key, patch in values_patch.items():
        if isinstance(patch, list):
            values[key] = patch
        else:
            values.setdefault(key, {}).update(patch)
    with pytest.raises(AssertionError) as failure:
        helm.template(POOL_CHART, values)
    assert message in str(failure.value)


def test_missing_match_labels_by_default(helm: Helm) -> None:
    with pytest.raises(AssertionError) as failure:
        helm.template(POOL_CHART, None)
    assert "--set inferencePool.modelServers.matchLabels.app=" in str(failure.value)


def test_same_release_in_two_namespaces_shares_no_object(helm: Helm) -> None:
    identities = []
    for namespace in ("team-a", "team-b"):
        objects = helm.template(POOL_CHART, pool_values(GA, "gke"), release="vllm-llama3-8b-instruct",
                                namespace=namespace, api_versions=PROVIDER_APIS["gke"])
        assert not [o["kind"] for o in objects if o["kind"] in CLUSTER_SCOPED]
        assert {o["metadata"]["namespace"] for o in objects} == {namespace}
        identities.append({(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects})
    assert identities[0].isdisjoint(identities[1])


def test_long_release_names_give_valid_object_names(helm: Helm) -> None:
    release = "a-very-long-release-name-for-an-inference-pool-x"  # 49 characters (helm allows 53)
    objects = helm.template(POOL_CHART, pool_values(GA), release=release)
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == "a-very-long-release-name-for-an-inferenc-epp"
    assert one(objects, "InferencePool")["metadata"]["name"] == release
    assert validate(one(objects, "InferencePool")) == []
    # trailing "-" after truncation is trimmed
    objects = helm.template(POOL_CHART, pool_values(GA), release="a-very-long-release-name-for-an-inferen-c")
    assert one(objects, "Service")["metadata"]["name"] == "a-very-long-release-name-for-an-inferen-epp"


def test_provider_objects_need_the_cluster_api_unless_forced(helm: Helm) -> None:
    for provider, kinds in (("gke", {"HealthCheckPolicy", "GCPBackendPolicy"}), ("istio", {"DestinationRule"})):
        without = {o["kind"] for o in helm.template(POOL_CHART, pool_values(GA, provider))}
        assert not without & kinds
        forced = pool_values(GA, provider)
        forced["provider"]["policies"] = "always"
        assert kinds <= {o["kind"] for o in helm.template(POOL_CHART, forced)}
        never = pool_values(GA, provider)
        never["provider"]["policies"] = "never"
        assert not kinds & {o["kind"] for o in helm.template(POOL_CHART, never, api_versions=PROVIDER_APIS[provider])}
    # GKE without Managed Prometheus: the policies but no PodMonitoring
    objects = helm.template(POOL_CHART, pool_values(GA, "gke"), api_versions=["networking.gke.io/v1/HealthCheckPolicy"])
    assert {"HealthCheckPolicy", "GCPBackendPolicy"} <= {o["kind"] for o in objects}
    assert "PodMonitoring" not in {o["kind"] for o in objects}


def test_resources_probes_and_scheduling_values_are_passed_through(helm: Helm) -> None:
    probe = {"grpc": {"port": 9003}, "periodSeconds": 3}
    values = pool_values(GA, resources={"requests": {"cpu": "1"}}, readinessProbe=probe,
                         env=[{"name": "SD_QUEUE_DEPTH_THRESHOLD", "value": "8"}],
                         nodeSelector={"pool": "cpu"}, tolerations=[{"key": "k", "operator": "Exists"}],
                         extraServicePorts=[{"name": "extra", "port": 9999, "targetPort": 9999}],
                         image={"hub": "registry.example/ml/", "name": "ig", "tag": "dev", "pullPolicy": "Always"})
    objects = helm.template(POOL_CHART, values)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # helm merges the given values into the defaults
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    assert container["readinessProbe"] == probe
    assert container["livenessProbe"]["grpc"] == {"port": 9003, "service": "liveness"}
    assert {"name": "SD_QUEUE_DEPTH_THRESHOLD", "value": "8"} in container["env"]
    assert container["image"] == "registry.example/ml/ig:dev" and container["imagePullPolicy"] == "Always"
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert {"name": "extra", "port": 9999, "targetPort": 9999} in one(objects, "Service")["spec"]["ports"]


def test_config_change_changes_the_pod_template(helm: Helm) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(helm.template(POOL_CHART, values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum(pool_values(GA))
    assert base == checksum(pool_values(GA))
    assert base != checksum(pool_values(GA, pluginsCustomConfig={"x.yaml": preset_text("random")}))
