"""RBAC mode of the embedded API server: the authorizer's rule matching (unit tests), and with
the real kubectl: ServiceAccount tokens from `kubectl create token`, the exact Forbidden line,
`kubectl create role/rolebinding` granting access, `kubectl auth can-i --as=...`, discovery
for a service account, impersonation, and tokens of deleted ServiceAccounts."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.apiserver.authn import ADMIN, Identity, TokenIssuer, impersonated, service_account_identity
from infergate.apiserver.rbac import (
    Attributes,
    RBACAuthorizer,
    forbidden_status,
    request_attributes,
    rule_allows,
)

from ..support.clitool import CliTool

G = "rbac.authorization.k8s.io"


# ------------------------------------------------------------------------ request attributes

@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "ns", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "ns", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1", "fieldSelector": "metadata.name=p1"},
     ("watch", "", "ns", "pods", "", "p1")),
    ("GET", "/api/v1/namespaces/ns/pods/p1", {}, ("get", "", "ns", "pods", "", "p1")),
    ("GET", "/api/v1/namespaces/ns/pods/p1/log", {}, ("get", "", "ns", "pods", "log", "p1")),
    ("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token", {}, ("create", "", "ns", "serviceaccounts", "token",
                                                                    "sa")),
    ("PUT", "/apis/apps/v1/namespaces/ns/deployments/d/status", {}, ("update", "apps", "ns", "deployments", "status",
                                                                     "d")),
    ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/d", {}, ("patch", "apps", "ns", "deployments", "", "d")),
    ("DELETE", "/api/v1/namespaces/ns/pods/p1", {}, ("delete", "", "ns", "pods", "", "p1")),
    ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "", "ns", "pods", "", "")),
    ("GET", "/api/v1/pods", {}, ("list", "", "", "pods", "", "")),
    ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "ns", "namespaces", "", "ns")),
    ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "ns", "namespaces", "finalize", "ns")),
    ("GET", "/apis/inference.networking.k8s.io/v1/namespaces/ns/inferencepools", {},
     ("list", "inference.networking.k8s.io", "ns", "inferencepools", "", "")),
])
def test_request_attributes(method: str, path: str, query: dict[str, str],
                            expected: tuple[str, str, str, str, str, str]) -> None:
    attrs = request_attributes(method, path, query)
    assert attrs.resource_request
    assert (attrs.verb, attrs.api_group, attrs.namespace, attrs.resource, attrs.subresource, attrs.name) == expected


@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version",
                                  "/openapi/v2", "/openapi/v3/apis/apps/v1"])
def test_discovery_paths_are_non_resource_requests(path: str) -> None:
    attrs = request_attributes("GET", path, {})
    assert not attrs.resource_request and attrs.verb == "get" and attrs.path == path


# ---------------------------------------------------------------------------- rule matching

def res(verb: str, resource: str, group: str = "", namespace: str = "ns", name: str = "",
        subresource: str = "") -> Attributes:
    return Attributes(verb, True, api_group=group, namespace=namespace, resource=resource, subresource=subresource,
                      name=name)


def test_rule_verbs_groups_resources_and_wildcards() -> None:
    rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    assert rule_allows(rule, res("list", "pods"))
    assert not rule_allows(rule, res("watch", "pods"))
    assert not rule_allows(rule, res("list", "pods", group="apps"))
    assert not rule_allows(rule, res("list", "services"))
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert rule_allows(everything, res("deletecollection", "deployments", group="apps"))
    assert rule_allows(everything, res("get", "pods", subresource="log", name="p"))
    assert not rule_allows({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                           Attributes("get", False, path="/version"))  # resources never match paths


def test_rule_subresources() -> None:
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    assert not rule_allows(pods, res("get", "pods", name="p", subresource="log"))
    assert rule_allows({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                       res("get", "pods", name="p", subresource="log"))
    assert not rule_allows({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                           res("get", "pods", name="p"))
    star_status = {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]}
    assert rule_allows(star_status, res("update", "deployments", group="apps", name="d", subresource="status"))
    assert not rule_allows(star_status, res("update", "deployments", group="apps", name="d"))
    assert not rule_allows(star_status, res("update", "deployments", group="apps", name="d", subresource="scale"))


def test_rule_resource_names() -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "list"]}
    assert rule_allows(rule, res("get", "configmaps", name="one"))
    assert not rule_allows(rule, res("get", "configmaps", name="two"))
    assert not rule_allows(rule, res("list", "configmaps"))  # no name: resourceNames never match
    assert rule_allows(rule, res("list", "configmaps", name="one"))  # list with fieldSelector metadata.name=one


def test_rule_non_resource_urls() -> None:
    rule = {"nonResourceURLs": ["/healthz", "/apis/*"], "verbs": ["get"]}
    assert rule_allows(rule, Attributes("get", False, path="/healthz"))
    assert rule_allows(rule, Attributes("get", False, path="/apis/apps/v1"))
    assert not rule_allows(rule, Attributes("get", False, path="/api"))
    assert not rule_allows(rule, Attributes("post", False, path="/healthz"))
    assert not rule_allows(rule, res("get", "pods"))  # URL rules never match resources


class FakeStore:
    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)

    def _key(self, obj: dict[str, Any]) -> tuple[str, str, str]:
        meta = obj["metadata"]
        plural = obj["kind"].lower() + "s"
        return plural, meta.get("namespace", ""), meta["name"]

    def list_objects(self, group: str, resource: str, namespace: str | None) -> list[dict[str, Any]]:
        return [o for o in self.objects if self._key(o)[0] == resource
                and (namespace is None or self._key(o)[1] == namespace)]

    def get(self, group: str, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects if self._key(o) == (resource, namespace, name)), None)

    def authorizer(self) -> RBACAuthorizer:
        return RBACAuthorizer(self.list_objects, self.get)


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{G}/v1", "kind": kind, "metadata": meta, "rules": rules}


def binding(kind: str, name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]],
            namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{G}/v1", "kind": kind, "metadata": meta, "subjects": subjects,
            "roleRef": {"apiGroup": G, "kind": role_kind, "name": role_name}}


READ_PODS = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
SA = service_account_identity("team", "reader")


def test_role_binding_grants_only_in_its_namespace() -> None:
    store = FakeStore(role("Role", "pods", READ_PODS, "team"),
                      binding("RoleBinding", "pods", "Role", "pods",
                              [{"kind": "ServiceAccount", "name": "reader", "namespace": "team"}], "team"))
    authz = store.authorizer()
    decision = authz.authorize(SA, res("list", "pods", namespace="team"))
    assert decision.allowed
    assert decision.reason == ('RBAC: allowed by RoleBinding "pods/team" of Role "pods" to '
                               'ServiceAccount "team/reader"')
    assert not authz.authorize(SA, res("list", "pods", namespace="other")).allowed
    assert not authz.authorize(SA, res("list", "pods", namespace="")).allowed  # all namespaces
    assert not authz.authorize(SA, res("delete", "pods", namespace="team", name="p")).allowed
    other_sa = service_account_identity("team", "writer")
    assert not authz.authorize(other_sa, res("list", "pods", namespace="team")).allowed


def test_role_binding_to_a_cluster_role_and_a_role_of_another_namespace() -> None:
    store = FakeStore(role("ClusterRole", "pod-reader", READ_PODS),
                      role("Role", "elsewhere", READ_PODS, "other"),
                      binding("RoleBinding", "a", "ClusterRole", "pod-reader", [{"kind": "User", "name": "alice"}],
                              "team"),
                      binding("RoleBinding", "b", "Role", "elsewhere", [{"kind": "User", "name": "bob"}], "team"))
    authz = store.authorizer()
    alice, bob = Identity("alice", ("system:authenticated",)), Identity("bob", ("system:authenticated",))
    assert authz.authorize(alice, res("get", "pods", namespace="team", name="p")).allowed
    assert not authz.authorize(alice, res("get", "pods", namespace="other", name="p")).allowed
    # a RoleBinding's Role is looked up in the binding's namespace: "elsewhere" is not in team
    assert not authz.authorize(bob, res("get", "pods", namespace="team", name="p")).allowed


def test_cluster_role_binding_applies_everywhere_and_to_groups() -> None:
    store = FakeStore(role("ClusterRole", "pod-reader", READ_PODS),
                      binding("ClusterRoleBinding", "readers", "ClusterRole", "pod-reader",
                              [{"kind": "Group", "name": "system:serviceaccounts:team"}]))
    authz = store.authorizer()
    assert authz.authorize(SA, res("list", "pods", namespace="")).allowed
    assert authz.authorize(SA, res("watch", "pods", namespace="anywhere")).allowed
    outsider = service_account_identity("elsewhere", "reader")
    assert not authz.authorize(outsider, res("list", "pods", namespace="team")).allowed


def test_bootstrap_discovery_basic_user_and_cluster_admin() -> None:
    authz = FakeStore().authorizer()
    for path in ("/api", "/apis/apps/v1", "/version", "/openapi/v2", "/healthz"):
        assert authz.authorize(SA, Attributes("get", False, path=path)).allowed, path
    assert not authz.authorize(SA, Attributes("get", False, path="/metrics")).allowed
    assert not authz.authorize(Identity("nobody", ()), Attributes("get", False, path="/api")).allowed
    assert authz.authorize(SA, res("create", "selfsubjectaccessreviews", group="authorization.k8s.io",
                                   namespace="")).allowed
    bound = FakeStore(binding("ClusterRoleBinding", "root", "ClusterRole", "cluster-admin",
                              [{"kind": "User", "name": "root"}])).authorizer()
    assert bound.authorize(Identity("root", ()), res("delete", "nodes", namespace="", name="n")).allowed
    assert bound.authorize(Identity("root", ()), Attributes("get", False, path="/metrics")).allowed


def test_forbidden_status_shapes() -> None:
    status = forbidden_status(SA.user, res("list", "pods", namespace="team"))
    assert status["message"] == ('pods is forbidden: User "system:serviceaccount:team:reader" cannot list resource '
                                 '"pods" in API group "" in the namespace "team"')
    assert status["details"] == {"kind": "pods"} and status["reason"] == "Forbidden" and status["code"] == 403
    status = forbidden_status("bob", res("get", "deployments", group="apps", namespace="", name="d",
                                         subresource="scale"))
    assert status["message"] == ('deployments.apps "d" is forbidden: User "bob" cannot get resource '
                                 '"deployments/scale" in API group "apps" at the cluster scope')
    assert status["details"] == {"name": "d", "group": "apps", "kind": "deployments"}
    status = forbidden_status("bob", Attributes("get", False, path="/metrics"))
    assert status["message"] == 'forbidden: User "bob" cannot get path "/metrics"'


def test_tokens_verify_expire_and_resist_tampering() -> None:
    issuer = TokenIssuer(b"k" * 32)
    token, expires = issuer.issue("team", "reader", "uid-1", 600, now=1000.0)
    assert expires == 1600
    claims = issuer.verify(token, now=1500.0)
    assert claims is not None and (claims.namespace, claims.name, claims.uid) == ("team", "reader", "uid-1")
    assert issuer.verify(token, now=1600.0) is None  # expired
    assert TokenIssuer(b"x" * 32).verify(token, now=1500.0) is None  # another key
    header, payload, signature = token.split(".")
    assert issuer.verify(f"{header}.{payload}x.{signature}", now=1500.0) is None
    assert issuer.verify("not-a-token") is None


def test_impersonated_identities() -> None:
    assert impersonated("system:serviceaccount:ns:sa", []) == Identity(
        "system:serviceaccount:ns:sa", ("system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"))
    assert impersonated("jane", ["devs"]) == Identity("jane", ("devs", "system:authenticated"))
    assert ADMIN.is_master and not impersonated("jane", []).is_master


# ------------------------------------------------------------------- the real kubectl, RBAC mode

@pytest.fixture(scope="module")
def rbac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("rbac-state"), authorization_mode="RBAC")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def kc(kubectl_bin: str, rbac_server: ThreadedAPIServer, tmp_path: Path) -> CliTool:
    return CliTool(kubectl_bin, rbac_server.kubeconfig_path, tmp_path / "home")


@pytest.fixture
def ns(kc: CliTool) -> str:
    name = f"r-{uuid.uuid4().hex[:8]}"
    kc("create", "namespace", name)
    return name


def test_service_account_token_denied_then_granted_by_role_and_binding(kc: CliTool, ns: str) -> None:
    kc("create", "serviceaccount", "reader", "-n", ns)
    token = kc("create", "token", "reader", "-n", ns).stdout.strip()
    assert token.count(".") == 2

    denied = kc("--token", token, "get", "pods", "-n", ns, check=False)
    assert denied.returncode == 1
    assert denied.stderr.strip() == (f'Error from server (Forbidden): pods is forbidden: User '
                                     f'"system:serviceaccount:{ns}:reader" cannot list resource "pods" in API group "" '
                                     f'in the namespace "{ns}"')
    can_i = kc("auth", "can-i", "list", "pods", f"--as=system:serviceaccount:{ns}:reader", "-n", ns, check=False)
    assert (can_i.returncode, can_i.stdout.strip()) == (1, "no")

    assert kc("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", ns).stdout.strip() \
        == "role.rbac.authorization.k8s.io/pod-reader created"
    assert kc("create", "rolebinding", "pod-reader", "--role=pod-reader", f"--serviceaccount={ns}:reader",
              "-n", ns).stdout.strip() == "rolebinding.rbac.authorization.k8s.io/pod-reader created"

    allowed = kc("--token", token, "get", "pods", "-n", ns)
    assert allowed.stderr.strip() == f"No resources found in {ns} namespace."
    can_i = kc("auth", "can-i", "list", "pods", f"--as=system:serviceaccount:{ns}:reader", "-n", ns)
    assert can_i.stdout.strip() == "yes"
    listed = kc("auth", "can-i", "--list", f"--as=system:serviceaccount:{ns}:reader", "-n", ns).stdout.splitlines()
    assert listed[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert "pods [] [] [get list watch]" in [" ".join(line.split()) for line in listed]
    assert "[/apis/*] [] [get]" in [" ".join(line.split()) for line in listed]
    assert not any(line.split()[0] == "secrets" for line in listed[1:] if line.split())
    # the Role grants reads in its namespace only
    for args in (("delete", "pods", "-n", ns), ("list", "pods", "-n", "default"), ("list", "pods", "-A"),
                 ("get", "secrets", "-n", ns)):
        result = kc("auth", "can-i", *args, f"--as=system:serviceaccount:{ns}:reader", check=False)
        assert result.stdout.strip() == "no", args
    assert kc("--token", token, "auth", "can-i", "watch", "pods", "-n", ns).stdout.strip() == "yes"
    assert kc("--token", token, "auth", "can-i", "create", "pods", "-n", ns, check=False).stdout.strip() == "no"
    other_ns = kc("--token", token, "get", "pods", "-n", "default", check=False)
    assert other_ns.returncode == 1 and 'cannot list resource "pods" in API group "" in the namespace "default"' \
        in other_ns.stderr
    # deleting the binding takes the access away at once
    kc("delete", "rolebinding", "pod-reader", "-n", ns)
    assert kc("--token", token, "get", "pods", "-n", ns, check=False).returncode == 1


def test_discovery_and_impersonation_for_a_service_account(kc: CliTool, ns: str) -> None:
    kc("create", "serviceaccount", "viewer", "-n", ns)
    token = kc("create", "token", "viewer", "-n", ns).stdout.strip()
    resources = kc("--token", token, "api-resources")
    assert "selfsubjectaccessreviews" in resources.stdout and "rolebindings" in resources.stdout
    assert "Server Version: v1.37" in kc("--token", token, "version").stdout
    # admin impersonates: --as with kubectl get
    denied = kc("get", "pods", "-n", ns, f"--as=system:serviceaccount:{ns}:viewer", check=False)
    assert f'User "system:serviceaccount:{ns}:viewer" cannot list resource "pods"' in denied.stderr
    # a service account may not impersonate (it has no impersonate rule)
    escalate = kc("--token", token, "get", "pods", "-n", ns, "--as=admin", check=False)
    assert escalate.stderr.strip() == (f'Error from server (Forbidden): users "admin" is forbidden: User '
                                       f'"system:serviceaccount:{ns}:viewer" cannot impersonate resource "users" in '
                                       'API group "" at the cluster scope')
    # a ClusterRoleBinding to the built-in cluster-admin ClusterRole makes it all-powerful
    kc("create", "clusterrolebinding", f"{ns}-admin", "--clusterrole=cluster-admin",
       f"--serviceaccount={ns}:viewer")
    try:
        assert kc("--token", token, "get", "namespaces", ns, "-o", "name").stdout.strip() == f"namespace/{ns}"
        # impersonating "admin" alone is not admin: the groups (system:masters) are not implied
        assert kc("--token", token, "get", "pods", "-n", ns, "--as=admin", check=False).returncode == 1
        assert kc("--token", token, "get", "pods", "-n", ns, "--as=admin", "--as-group=system:masters").returncode \
            == 0
    finally:
        kc("delete", "clusterrolebinding", f"{ns}-admin")
    assert kc("--token", token, "get", "namespaces", check=False).returncode == 1


def test_tokens_of_deleted_service_accounts_and_unknown_tokens_are_401(kc: CliTool, ns: str) -> None:
    kc("create", "serviceaccount", "gone", "-n", ns)
    token = kc("create", "token", "gone", "-n", ns, "--duration=20m").stdout.strip()
    kc("create", "rolebinding", "gone", "--clusterrole=cluster-admin", f"--serviceaccount={ns}:gone", "-n", ns)
    assert kc("--token", token, "get", "pods", "-n", ns).returncode == 0
    kc("delete", "serviceaccount", "gone", "-n", ns)
    result = kc("--token", token, "get", "pods", "-n", ns, check=False)
    assert result.stderr.strip() == "error: You must be logged in to the server (Unauthorized)"
    kc("create", "serviceaccount", "gone", "-n", ns)  # same name, another uid: the old token stays dead
    assert kc("--token", token, "get", "pods", "-n", ns, check=False).returncode == 1
    assert kc("--token", "nope", "get", "pods", "-n", ns, check=False).stderr.strip() == \
        "error: You must be logged in to the server (Unauthorized)"
    missing = kc("create", "token", "nobody", "-n", ns, check=False)
    assert missing.stderr.strip() == 'error: failed to create token: serviceaccounts "nobody" not found'


def test_token_request_answer_and_subject_access_review(rbac_server: ThreadedAPIServer, ns: str,
                                                         kc: CliTool) -> None:
    kc("create", "serviceaccount", "api", "-n", ns)
    context = ssl.create_default_context(cafile=str(rbac_server.ca_path))
    with httpx.Client(base_url=rbac_server.url, verify=context, timeout=10.0,
                      headers={"Authorization": f"Bearer {rbac_server.token}"}) as http:
        path = f"/api/v1/namespaces/{ns}/serviceaccounts/api/token"
        short = http.post(path, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "spec": {"expirationSeconds": 60}})
        assert short.status_code == 422
        assert "may not specify a duration less than 10 minutes" in short.json()["message"]
        answer = http.post(path, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                       "spec": {"expirationSeconds": 1200, "audiences": ["infergate"]}})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["kind"] == "TokenRequest" and body["spec"]["audiences"] == ["infergate"]
        assert body["status"]["token"] and body["status"]["expirationTimestamp"].endswith("Z")
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": f"system:serviceaccount:{ns}:api", "groups": ["system:authenticated"],
                           "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}}}
        sar = http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        assert sar.status_code == 201 and sar.json()["status"] == {"allowed": False}
        kc("create", "rolebinding", "api", "--clusterrole=cluster-admin", f"--serviceaccount={ns}:api", "-n", ns)
        sar = http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        assert sar.json()["status"] == {"allowed": True, "reason": f'RBAC: allowed by RoleBinding "api/{ns}" of '
                                        f'ClusterRole "cluster-admin" to ServiceAccount "{ns}/api"'}
        # the service account itself may not ask about others: its cluster-admin is bound in its
        # namespace only, and SubjectAccessReviews are cluster-scoped
        token = body["status"]["token"]
        own = http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review,
                        headers={"Authorization": f"Bearer {token}"})
        assert own.status_code == 403
        assert own.json()["message"] == (f'subjectaccessreviews.authorization.k8s.io is forbidden: User '
                                         f'"system:serviceaccount:{ns}:api" cannot create resource '
                                         '"subjectaccessreviews" in API group "authorization.k8s.io" at the '
                                         'cluster scope')


def test_always_allow_mode_keeps_its_answers(kubectl_bin: str, tmp_path: Path) -> None:
    with EmbeddedAPIServer.run_in_thread(tmp_path / "state") as handle:
        kc = CliTool(kubectl_bin, handle.kubeconfig_path, tmp_path / "home")
        kc("create", "serviceaccount", "any")
        token = kc("create", "token", "any").stdout.strip()
        assert kc("--token", token, "get", "pods", "-A").returncode == 0  # authenticated: allowed
        assert kc("auth", "can-i", "delete", "nodes", "--as=system:serviceaccount:default:any").stdout.strip() == \
            "yes"


def test_cli_rbac_mode_and_tokens_that_survive_a_restart(tmp_path: Path, kubectl_bin: str) -> None:
    """`infergate apiserver --authorization-mode RBAC`: enforced; a ServiceAccount token issued
    before a restart still authenticates after it (the signing key is kept in the state dir)."""
    import signal
    import subprocess
    import sys

    from infergate.util.net import free_port

    state, port = tmp_path / "state", free_port()

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "infergate", "apiserver", "--state-dir", str(state),
                                 "--port", str(port), "--authorization-mode", "RBAC"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("export KUBECONFIG=")  # printed once listening
        return proc

    def stop(proc: subprocess.Popen[str]) -> str:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        return err

    kc = CliTool(kubectl_bin, state / "kubeconfig", tmp_path / "home")
    proc = start()
    try:
        kc("create", "serviceaccount", "kept")
        token = kc("create", "token", "kept").stdout.strip()
        assert kc("--token", token, "get", "pods", check=False).returncode == 1
    finally:
        err = stop(proc)
    assert "authorization mode RBAC" in err
    assert (state / "sa-signing.key").stat().st_mode & 0o777 == 0o600
    proc = start()
    try:
        denied = kc("--token", token, "get", "pods", check=False)
        assert "Forbidden" in denied.stderr  # authenticated (not 401), and still not authorized
        kc("create", "rolebinding", "kept", "--clusterrole=cluster-admin", "--serviceaccount=default:kept")
        assert kc("--token", token, "get", "pods").returncode == 0
    finally:
        stop(proc)
