"""charts/infergate with the real helm: `helm lint` and `helm template` over values variants,
values.schema.json refusing bad values with the field and the reason, and the RBAC it renders
evaluated by infergate's RBAC authorizer against what the controller needs: the kinds come
from infergate.kube.kinds (every kind infergate serves or reads) and the controller's own
tables (what it watches, whose statuses it writes), so a new kind without RBAC fails here;
and nothing more than that is granted."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from infergate.api import validate
from infergate.apiserver.authn import Identity
from infergate.apiserver.rbac import Attributes, RBACAuthorizer
from infergate.cli.gateway import command as gateway_command
from infergate.controller.providers.kubernetes import STATUS_KINDS
from infergate.controller.resources import SNAPSHOT_KINDS
from infergate.kube import kinds

from .chartkit import CHARTS, Helm, by_kind, one, parse_cli

CHART = CHARTS / "infergate"
NAMESPACE = "infergate-system"
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "GatewayClass"}

# Groups of Kubernetes itself; every other group of kinds.all_kinds() is a kind infergate serves
# (Gateway API, the inference groups) and the controller must be able to read it.
BUILTIN_GROUPS = {"", "apps", "policy", "discovery.k8s.io", "coordination.k8s.io", "rbac.authorization.k8s.io",
                  "apiextensions.k8s.io", "events.k8s.io"}
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")
# the per-Gateway Envoy objects the controller creates and owns (PodDisruptionBudget: policy/v1)
OWNED = {("apps", "deployments"), ("", "services"), ("policy", "poddisruptionbudgets")}


def needed_permissions() -> set[tuple[str, str, str]]:
    """(group, resource, verb) the controller needs cluster-wide."""
    read = {(k.group, k.plural) for k in kinds.all_kinds() if k.group not in BUILTIN_GROUPS}
    read |= {(k.group, k.plural) for k in SNAPSHOT_KINDS}
    read |= {(kinds.CONFIGMAPS.group, kinds.CONFIGMAPS.plural),  # GatewayClass parametersRef
             (kinds.CRDS.group, kinds.CRDS.plural)} | OWNED  # the provider's CRD watch; what it owns
    needed = {(g, r, v) for g, r in read for v in READ}
    needed |= {(g, r, v) for g, r in OWNED for v in WRITE}
    needed |= {(group, f"{kinds.get(group, kind).plural}/status", v) for group, kind in STATUS_KINDS
               for v in ("get", "update", "patch")}
    needed |= {("gateway.networking.k8s.io", "gateways/finalizers", "update")}  # blockOwnerDeletion
    needed |= {(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")}
    return needed


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the rules name (no wildcards allowed in this chart)."""
    out = set()
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert not rule.get("resourceNames"), rule
        out |= set(itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"]))
    return out


def authorizer(objects: list[dict[str, Any]]) -> RBACAuthorizer:
    """infergate's RBAC authorizer over the rendered objects (as if installed)."""
    rbac = [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
              "RoleBinding": "rolebindings"}

    def list_objects(group: str, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for o in rbac if plural[o["kind"]] == resource
                and (namespace is None or o["metadata"].get("namespace") == namespace)]

    def get_object(group: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next((o for o in list_objects(group, resource, namespace or None) if o["metadata"]["name"] == name),
                    None)

    return RBACAuthorizer(list_objects, get_object)


def service_account(objects: list[dict[str, Any]]) -> Identity:
    deployment = one(objects, "Deployment")
    namespace = deployment["metadata"]["namespace"]
    name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return Identity(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


def allowed(objects: list[dict[str, Any]], verb: str, group: str, resource: str, namespace: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    attrs = Attributes(verb=verb, resource_request=True, api_group=group, resource=resource, subresource=sub,
                       namespace=namespace, name="x" if verb not in ("list", "watch", "create") else "")
    return authorizer(objects).authorize(service_account(objects), attrs).allowed


def controller_args(objects: list[dict[str, Any]]) -> list[str]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["infergate", "gateway"]
    return list(container["args"])


# -- lint -------------------------------------------------------------------------------------------

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha": {"replicas": 3, "leaderElection": {"namespace": "kube-system"}},
    "classes": {"gatewayClasses": [
        {"name": "infergate", "parameters": {"replicas": 2, "serviceType": "NodePort", "logLevel": "debug",
                                             "serviceAnnotations": {"a.example.com/x": "1"},
                                             "resources": {"requests": {"cpu": "1"}}, "extProcTimeout": "10s",
                                             "responseBodyMode": "STREAMED"}},
        {"name": "gke-l7-regional-external-managed", "controllerName": "example.com/other"},
        {"name": "shared", "parametersRef": {"name": "fleet-params", "namespace": "platform"}}]},
    "no-rbac": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_helm_lint(helm: Helm, variant: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if VARIANTS[variant]:
        args += ["-f", helm.values_file(VARIANTS[variant])]
    result = helm.run(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


# -- template ---------------------------------------------------------------------------------------

def test_defaults_render_the_controller_its_rbac_class_and_xds_service(helm: Helm) -> None:
    objects = helm.template(CHART, release="infergate", namespace=NAMESPACE)
    assert sorted(o["kind"] for o in objects) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
         "GatewayClass"])
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    assert controller_args(objects) == [
        "--in-cluster", "--data-plane=deployments", "--xds-address=$(POD_IP):18000",
        f"--xds-service={NAMESPACE}/infergate-xds:18000", "--envoy-image=ghcr.io/infergate/infergate:0.1.0",
        "--controller-name=infergate.io/gateway-controller", "--gateway-class=infergate", "--admin-port=19000",
        "--admin-host=$(POD_IP)", "-v"]
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 1 and spec["serviceAccountName"] == "infergate-controller"
    assert container["image"] == "ghcr.io/infergate/infergate:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"xds": 18000, "admin": 19000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e} == {
        "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP"}
    # the xDS Service selects exactly the controller pods, on the named port
    service = one(objects, "Service")
    assert service["metadata"]["name"] == "infergate-xds"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "grpc-xds", "port": 18000, "targetPort": "xds", "protocol": "TCP",
                                         "appProtocol": "grpc"}]
    gateway_class = one(objects, "GatewayClass")
    assert gateway_class["metadata"]["name"] == "infergate"
    assert gateway_class["spec"]["controllerName"] == "infergate.io/gateway-controller"
    assert "parametersRef" not in gateway_class["spec"]
    assert validate(gateway_class) == []
    # no leader election, no PDB with one replica
    assert "--leader-elect" not in controller_args(objects) and "PodDisruptionBudget" not in by_kind(objects)


@pytest.mark.parametrize("variant", ["defaults", "classes", "ha"])
def test_the_real_infergate_gateway_accepts_the_chart_arguments(helm: Helm, variant: str) -> None:
    objects = helm.template(CHART, VARIANTS[variant], release="infergate", namespace=NAMESPACE)
    args = [a.replace("$(POD_IP)", "127.0.0.9") for a in controller_args(objects)]
    params = parse_cli(gateway_command, args)
    assert params["in_cluster"] and params["data_plane"] == "deployments"
    assert params["xds_address"] == "127.0.0.9:18000" and params["xds_service"] == f"{NAMESPACE}/infergate-xds:18000"
    assert params["admin_port"] == 19000 and params["admin_host"] == "127.0.0.9"
    assert params["controller_name"] == "infergate.io/gateway-controller"
    assert params["gateway_classes"] == tuple(c["name"] for c in VARIANTS[variant].get("gatewayClasses",
                                                                                       [{"name": "infergate"}]))
    assert params["leader_elect"] == (variant == "ha")
    if variant == "ha":
        assert params["leader_election_namespace"] == "kube-system"


def test_replicas_above_one_turn_on_leader_election_and_a_pdb(helm: Helm) -> None:
    objects = helm.template(CHART, VARIANTS["ha"], release="infergate", namespace=NAMESPACE)
    args = controller_args(objects)
    assert args[args.index("--leader-elect") + 1] == "--leader-election-namespace=kube-system"
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "kube-system" == one(objects, "RoleBinding")["metadata"]["namespace"]
    assert allowed(objects, "update", "coordination.k8s.io", "leases", "kube-system")
    assert not allowed(objects, "update", "coordination.k8s.io", "leases", NAMESPACE)
    no_pdb = helm.template(CHART, {**VARIANTS["ha"], "podDisruptionBudget": {"enabled": False}})
    assert "PodDisruptionBudget" not in by_kind(no_pdb)


def test_gateway_classes_with_parameters_and_parameters_refs(helm: Helm) -> None:
    objects = helm.template(CHART, VARIANTS["classes"], release="infergate", namespace=NAMESPACE)
    classes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "GatewayClass"}
    assert list(classes) == ["infergate", "gke-l7-regional-external-managed", "shared"]
    for gateway_class in classes.values():
        assert validate(gateway_class) == []
    assert classes["infergate"]["spec"]["parametersRef"] == {
        "group": "", "kind": "ConfigMap", "name": "infergate-infergate", "namespace": NAMESPACE}
    assert classes["gke-l7-regional-external-managed"]["spec"]["controllerName"] == "example.com/other"
    assert "parametersRef" not in classes["gke-l7-regional-external-managed"]["spec"]
    assert classes["shared"]["spec"]["parametersRef"] == {
        "group": "", "kind": "ConfigMap", "name": "fleet-params", "namespace": "platform"}
    config = one(objects, "ConfigMap")
    assert config["metadata"]["name"] == "infergate-infergate" and config["metadata"]["namespace"] == NAMESPACE
    # every value a string (a ConfigMap's data); maps as JSON
    assert config["data"] == {"replicas": "2", "serviceType": "NodePort", "logLevel": "debug",
                              "serviceAnnotations": '{"a.example.com/x":"1"}',
                              "resources": '{"requests":{"cpu":"1"}}', "extProcTimeout": "10s",
                              "responseBodyMode": "STREAMED"}
    args = controller_args(objects)
    assert [a for a in args if a.startswith("--gateway-class=")] == [
        "--gateway-class=infergate", "--gateway-class=gke-l7-regional-external-managed", "--gateway-class=shared"]


def test_image_envoy_image_ports_and_passthrough_values(helm: Helm) -> None:
    objects = helm.template(CHART, {
        "image": {"hub": "registry.example.com/team/", "name": "ig", "tag": "1.2.3", "pullPolicy": "Always"},
        "envoy": {"image": "registry.example.com/team/ig-envoy:1.2.3"},
        "xds": {"port": 18100, "bindAddress": "0.0.0.0"}, "admin": {"port": 19100},
        "logLevel": "debug", "extraArgs": ["--envoy-concurrency=2"],
        "resources": {"requests": {"cpu": "2", "memory": "1Gi"}},
        "nodeSelector": {"pool": "system"}, "tolerations": [{"key": "x", "operator": "Exists"}],
        "podAnnotations": {"a": "b"}, "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "x@y"}},
    }, release="gw", namespace=NAMESPACE)
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/team/ig:1.2.3" and container["imagePullPolicy"] == "Always"
    args = controller_args(objects)
    assert "--envoy-image=registry.example.com/team/ig-envoy:1.2.3" in args
    assert "--xds-address=0.0.0.0:18100" in args and f"--xds-service={NAMESPACE}/gw-xds:18100" in args
    assert "--admin-port=19100" in args and args[-2:] == ["-vv", "--envoy-concurrency=2"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "system"}
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert one(objects, "ServiceAccount")["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": "x@y"}
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 18100


def test_without_rbac_and_service_account_creation(helm: Helm) -> None:
    objects = helm.template(CHART, VARIANTS["no-rbac"], release="infergate", namespace=NAMESPACE)
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(by_kind(objects))
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


def test_same_release_in_two_namespaces_shares_no_namespaced_or_rbac_object(helm: Helm) -> None:
    names = []
    for namespace in ("team-a", "team-b"):
        objects = helm.template(CHART, {"gatewayClasses": [{"name": f"class-{namespace}"}]}, release="infergate",
                                namespace=namespace)
        names.append({(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects})
    assert names[0].isdisjoint(names[1])


# -- RBAC -----------------------------------------------------------------------------------------

def test_rbac_grants_exactly_what_the_controller_needs(helm: Helm) -> None:
    objects = helm.template(CHART, release="infergate", namespace=NAMESPACE)
    need = needed_permissions()
    have = granted(one(objects, "ClusterRole")["rules"])
    assert need - have == set(), f"the controller needs, the chart does not grant: {sorted(need - have)}"
    assert have - need == set(), f"granted beyond what the controller needs: {sorted(have - need)}"
    assert granted(one(objects, "Role")["rules"]) == {("coordination.k8s.io", "leases", v) for v in READ + WRITE}


def test_rbac_as_the_authorizer_sees_the_service_account(helm: Helm) -> None:
    objects = helm.template(CHART, release="infergate", namespace=NAMESPACE)
    # cluster-wide reads of every served kind (what the controller's watches do)
    for kind in kinds.all_kinds():
        if kind.group not in BUILTIN_GROUPS:
            for verb in READ:
                assert allowed(objects, verb, kind.group, kind.plural), (verb, kind)
    # statuses and the Envoy objects, in a Gateway's namespace
    assert allowed(objects, "update", "gateway.networking.k8s.io", "gateways/status", "team-a")
    assert allowed(objects, "patch", "inference.networking.k8s.io", "inferencepools/status", "team-a")
    for group, resource in OWNED:
        for verb in ("create", "patch", "delete"):
            assert allowed(objects, verb, group, resource, "team-a"), (verb, resource)
    assert allowed(objects, "create", "coordination.k8s.io", "leases", NAMESPACE)
    # and not more: no spec writes of user resources, no Secret or RBAC writes, no Lease elsewhere
    for verb, group, resource in [("update", "gateway.networking.k8s.io", "gateways"),
                                  ("patch", "inference.networking.k8s.io", "inferencepools"),
                                  ("create", "", "secrets"), ("delete", "", "pods"), ("update", "", "configmaps"),
                                  ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
                                  ("create", "coordination.k8s.io", "leases"),
                                  ("create", "", "serviceaccounts"), ("create", "apps", "replicasets")]:
        assert not allowed(objects, verb, group, resource, "team-a"), (verb, group, resource)


# -- refused values ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"replicas": 0}, "at '/replicas': minimum: got 0, want 1"),
    ({"replicas": "two"}, "at '/replicas'"),
    ({"controllerName": "no-slash"}, "at '/controllerName': 'no-slash' does not match pattern"),
    ({"gatewayClasses": []}, "at '/gatewayClasses': minItems"),
    ({"gatewayClasses": [{"name": "Bad_Name"}]}, "at '/gatewayClasses/0/name': 'Bad_Name' does not match pattern"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"serviceType": "External"}}]},
     "at '/gatewayClasses/0/parameters/serviceType': value must be one of 'LoadBalancer', 'ClusterIP', 'NodePort'"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"replicas": -1}}]},
     "at '/gatewayClasses/0/parameters/replicas': minimum: got -1, want 0"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"replicas": 1001}}]},
     "at '/gatewayClasses/0/parameters/replicas': maximum: got 1,001, want 1,000"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"extProcTimeout": "5 seconds"}}]},
     "at '/gatewayClasses/0/parameters/extProcTimeout': '5 seconds' does not match pattern"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"responseBodyMode": "BUFFERED"}}]},
     "at '/gatewayClasses/0/parameters/responseBodyMode': value must be one of 'NONE', 'STREAMED', "
     "'FULL_DUPLEX_STREAMED'"),
    ({"gatewayClasses": [{"name": "a", "parameters": {"replica": 2}}]},
     "at '/gatewayClasses/0/parameters': additional properties 'replica' not allowed"),
    ({"gatewayClasses": [{"name": "a", "description": "x" * 65}]},
     "at '/gatewayClasses/0/description': maxLength: got 65, want 64"),
    ({"gatewayClasses": [{"name": "a"}, {"name": "a"}]},
     'gatewayClasses[1].name: "a" is already the name of gatewayClasses[0]'),
    ({"gatewayClasses": [{"name": "a", "parameters": {"replicas": 2}, "parametersRef": {"name": "cm"}}]},
     "gatewayClasses[0]: set parameters (the chart writes the ConfigMap) or parametersRef"),
    ({"xds": {"port": 70000}}, "at '/xds/port': maximum: got 70,000, want 65,535"),
    ({"logLevel": "loud"}, "at '/logLevel': value must be one of 'warning', 'info', 'debug'"),
    ({"replica": 2}, "at '': additional properties 'replica' not allowed"),
])
def test_bad_values_fail_with_the_field_and_the_reason(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError) as failure:
        helm.template(CHART, values)
    assert message in str(failure.value)


def test_notes_name_the_classes_and_the_next_steps(notes: Callable[..., str]) -> None:
    text = notes(CHART, VARIANTS["classes"], release="infergate", namespace=NAMESPACE)
    assert f"- infergate (parameters: ConfigMap {NAMESPACE}/infergate-infergate)" in text
    assert "- shared (parameters: ConfigMap platform/fleet-params)" in text
    assert f"kubectl -n {NAMESPACE} rollout status deployment/infergate-controller" in text
