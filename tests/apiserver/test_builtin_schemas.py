"""Issue 13 item 9: the built-in kinds are checked against their published OpenAPI types
(kube-apiserver's decoding: wrong types are a 400 naming the field, unknown fields follow
``fieldValidation``), and those schemas are served so the real ``kubectl explain`` works."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.apiserver import builtin_schemas, discovery

from ..support.clitool import CliTool

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-builtin-schemas")]


def _deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}, **spec}}


def _status(response: httpx.Response, code: int) -> dict[str, Any]:
    assert response.status_code == code, (response.status_code, response.text[:500])
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status" and body["code"] == code, body
    return body


# ------------------------------------------------------------------ the source

def test_the_schemas_are_those_of_the_release_the_server_and_kubectl_speak(kubectl_bin: str) -> None:
    defs = builtin_schemas.definitions()
    assert defs.version == discovery.KUBERNETES_VERSION["gitVersion"]
    client = subprocess.run([kubectl_bin, "version", "--client", "-o", "json"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    minor = re.search(r'"minor":\s*"(\d+)"', client)
    assert minor is not None, client
    assert defs.version.startswith(f"v1.{minor.group(1)}."), (defs.version, client)
    for gvk in [("", "v1", "ConfigMap"), ("apps", "v1", "Deployment"), ("coordination.k8s.io", "v1", "Lease"),
                ("discovery.k8s.io", "v1", "EndpointSlice"), ("rbac.authorization.k8s.io", "v1", "ClusterRole")]:
        assert defs.name_of(*gvk) is not None, gvk


# ------------------------------------------------------------------ types

@pytest.mark.parametrize(("data", "message"), [
    (5, "json: cannot unmarshal number into Go struct field ConfigMap.data of type map[string]string"),
    (["a"], "json: cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string"),
])
def test_configmap_data_of_the_wrong_type_is_refused_with_go_s_words(http: httpx.Client, namespace: str,
                                                                        data: Any, message: str) -> None:
    response = http.post(f"/api/v1/namespaces/{namespace}/configmaps",
                         json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}, "data": data})
    status = _status(response, 400)
    assert status["reason"] == "BadRequest"
    assert message in status["message"]


@pytest.mark.parametrize(("spec", "message"), [
    ({"replicas": "3"}, 'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
                        "string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ({"replicas": 2**40}, "cannot unmarshal number 1099511627776 into Go struct field DeploymentSpec.spec.replicas "
                          "of type int32"),
    ({"paused": "yes"}, "cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool"),
    ({"template": {"spec": {"containers": [{"name": "c", "image": 7}]}}},
     "cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"),
    ({"strategy": ["x"]}, "cannot unmarshal array into Go struct field DeploymentSpec.spec.strategy of type "
                          "v1.DeploymentStrategy"),
])
def test_wrong_types_anywhere_in_a_built_in_kind_are_refused(http: httpx.Client, namespace: str,
                                                              spec: dict[str, Any], message: str) -> None:
    response = http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=_deployment("t", **spec))
    assert message in _status(response, 400)["message"]


def test_secret_data_is_base64(http: httpx.Client, namespace: str) -> None:
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    plain = http.post(secrets, json={"metadata": {"name": "plain"}, "data": {"password": "hello world"}})
    assert _status(plain, 400)["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                                              "illegal base64 data at input byte 5")
    encoded = http.post(secrets, json={"metadata": {"name": "encoded"}, "data": {"password": "aGVsbG8="},
                                       "stringData": {"user": "plain text is fine here"}})
    assert encoded.status_code == 201, encoded.text


def test_quantities_and_int_or_strings_take_both_forms(http: httpx.Client, namespace: str) -> None:
    container = {"name": "c", "image": "i", "resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "500m"}},
                 "ports": [{"containerPort": 8000, "name": "http"}]}
    deployment = _deployment("q", replicas=2, strategy={"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}})
    deployment["spec"]["template"]["spec"]["containers"] = [container]
    assert http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=deployment).status_code == 201
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"minAvailable": True}}
    status = _status(http.post(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets", json=pdb), 400)
    assert "PodDisruptionBudgetSpec.spec.minAvailable of type intstr.IntOrString" in status["message"]


def test_a_patch_to_a_wrong_type_is_refused_and_the_object_kept(http: httpx.Client, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert http.post(path, json={"metadata": {"name": "p"}, "data": {"k": "v"}}).status_code == 201
    response = http.patch(f"{path}/p", json={"data": {"k": 1}},
                          headers={"Content-Type": "application/merge-patch+json"})
    assert "Go struct field ConfigMap.data.k of type string" in _status(response, 400)["message"]
    assert http.get(f"{path}/p").json()["data"] == {"k": "v"}


# ------------------------------------------------------------------ unknown fields

def test_unknown_fields_follow_field_validation(http: httpx.Client, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    strict = http.post(path, params={"fieldValidation": "Strict"}, json=_deployment("s", replicsa=2))
    assert _status(strict, 400)["message"] == 'strict decoding error: unknown field "spec.replicsa"'

    warned = http.post(path, params={"fieldValidation": "Warn"}, json=_deployment("w", replicsa=2))
    assert warned.status_code == 201, warned.text
    assert warned.headers.get_list("Warning") == ['299 - "unknown field \\"spec.replicsa\\""']
    assert "replicsa" not in warned.json()["spec"]  # dropped, as decoding into the Go type drops it
    assert "replicsa" not in http.get(f"{path}/w").json()["spec"]

    default = http.post(path, json=_deployment("d", replicsa=2))  # Warn is the server's default
    assert default.status_code == 201 and default.headers.get_list("Warning")

    ignored = http.post(path, params={"fieldValidation": "Ignore"}, json=_deployment("i", replicsa=2))
    assert ignored.status_code == 201 and not ignored.headers.get_list("Warning")
    assert "replicsa" not in ignored.json()["spec"]

    dotted = _deployment("dot", **{"a.b": 1})  # a key no dotted path can address is dropped too
    dotted["spec"]["template"]["spec"]["containers"][0]["x[0]"] = 1
    dropped = http.post(path, json=dotted)
    assert dropped.status_code == 201, dropped.text
    assert "a.b" not in dropped.json()["spec"]
    assert "x[0]" not in dropped.json()["spec"]["template"]["spec"]["containers"][0]


def test_a_warning_about_a_field_name_with_control_characters_is_a_valid_header(http: httpx.Client,
                                                                                  namespace: str) -> None:
    """Found by tests/fuzz: a field name with a newline made the Warning header unwritable (the
    connection dropped without an answer)."""
    response = http.post(f"/api/v1/namespaces/{namespace}/configmaps",
                         json={"metadata": {"name": "ctl"}, "bad\nname\u00e9\"\\": 1})
    assert response.status_code == 201, response.text
    assert response.headers.get_list("Warning") == ['299 - "unknown field \\"bad?nameé\\"\\\\\\""']


def test_kubectl_refuses_unknown_fields_by_default_and_warns_when_asked(kubectl: CliTool, namespace: str,
                                                                         tmp_path: Path) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\nspec:\n  replicsa: 2\n"
                        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
                        "    spec: {containers: [{name: c, image: i}]}\n")
    refused = kubectl("apply", "-n", namespace, "-f", str(manifest), check=False)
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "spec.replicsa"' in refused.stderr
    warned = kubectl("apply", "-n", namespace, "--validate=warn", "-f", str(manifest))
    assert 'Warning: unknown field "spec.replicsa"' in warned.stderr
    assert "deployment.apps/typo created" in warned.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: [a]\n")
    refused = kubectl("apply", "-n", namespace, "-f", str(bad), check=False)
    assert "cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string" in refused.stderr


# ------------------------------------------------------------------ kubectl explain

def test_kubectl_explain_a_built_in_field(kubectl: CliTool) -> None:
    out = kubectl("explain", "deployment.spec.replicas").stdout
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"), out
    assert "FIELD: replicas <integer>" in out
    assert "Number of desired pods." in out


def test_kubectl_explain_a_built_in_kind(kubectl: CliTool) -> None:
    out = kubectl("explain", "configmap").stdout
    assert out.startswith("KIND:       ConfigMap\nVERSION:    v1\n"), out
    assert "ConfigMap holds configuration data for pods to consume." in out
    assert re.search(r"^\s*data\t<map\[string\]string>$", out, re.M), out
    assert re.search(r"^\s*metadata\t<ObjectMeta>$", out, re.M), out
    lease = kubectl("explain", "lease.spec.holderIdentity").stdout
    assert "FIELD: holderIdentity <string>" in lease
    pods = kubectl("explain", "pods.spec.containers.resources.limits").stdout
    assert "FIELD: limits <map[string]Quantity>" in pods


# ------------------------------------------------------------------ sizes

def test_configmap_and_secret_data_hold_at_most_1_mib(http: httpx.Client, namespace: str) -> None:
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    fits = {"metadata": {"name": "fits"}, "data": {"a": "x" * (1024 * 1024 - 10)}}
    assert http.post(configmaps, json=fits).status_code == 201
    over = {"metadata": {"name": "over"}, "data": {"a": "x" * (600 * 1024), "b": "y" * (600 * 1024)}}
    status = _status(http.post(configmaps, json=over), 422)
    assert status["message"] == 'ConfigMap "over" is invalid: []: Too long: must have at most 1048576 bytes'
    secret = {"metadata": {"name": "s"}, "stringData": {"a": "x" * (1024 * 1024 + 1)}}
    status = _status(http.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret), 422)
    assert status["details"]["causes"][0]["field"] == "data"


def test_a_stored_object_over_etcd_s_limit_is_413_and_not_stored(http: httpx.Client, namespace: str) -> None:
    """etcd refuses requests over 1.5 MiB and kube-apiserver answers 413; the 3 MiB body limit alone
    let a 2.5 MiB object in."""
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    env = [{"name": f"V{i}", "value": "x" * 1000} for i in range(2500)]  # about 2.5 MiB, under the body limit
    big = _deployment("big")
    big["spec"]["template"]["spec"]["containers"][0]["env"] = env
    status = _status(http.post(deployments, json=big), 413)
    assert status["reason"] == "RequestEntityTooLarge"
    assert status["message"] == "Request entity too large: etcdserver: request is too large"
    assert http.get(f"{deployments}/big").status_code == 404
    small = _deployment("grows")
    assert http.post(deployments, json=small).status_code == 201
    grown = http.patch(f"{deployments}/grows", json={"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "i", "env": env}]}}}}, headers={"Content-Type": "application/merge-patch+json"})
    assert _status(grown, 413)["reason"] == "RequestEntityTooLarge"
    assert "env" not in http.get(f"{deployments}/grows").json()["spec"]["template"]["spec"]["containers"][0]
    assert http.delete(f"{deployments}/grows").status_code == 200
