"""RBAC authorization (``--authorization-mode RBAC``) for the embedded API server.

Request attributes come from the URL and method as the real server's RequestInfoFactory
derives them (verb get/list/watch/create/update/patch/delete/deletecollection, API group,
namespace, resource, subresource, name; everything outside /api/VERSION/... and
/apis/GROUP/VERSION/... is a non-resource request whose verb is the lowercase HTTP method).
The rules are those of Role/RoleBinding (namespaced) and ClusterRole/ClusterRoleBinding
stored in the server, matched as the real RBAC authorizer matches them: apiGroups, resources
(``resource/subresource``, ``*``, ``*/subresource``), verbs (``*``), resourceNames (never
matching a request without a name: list, create), nonResourceURLs (``*`` suffix = prefix);
subjects User, Group and ServiceAccount.

system:masters bypasses RBAC (the caller decides, see :attr:`Identity.is_master`). A few
bootstrap ClusterRoles and ClusterRoleBindings are built in (not stored objects), with the
effect of the real defaults: ``system:discovery`` and ``system:public-info-viewer`` (discovery,
/version, /openapi, /healthz... for system:authenticated), ``system:basic-user`` (create
SelfSubjectAccessReviews/SelfSubjectRulesReviews) and the ``cluster-admin`` ClusterRole (no
binding), so ``kubectl create clusterrolebinding --clusterrole=cluster-admin`` works. A stored
ClusterRole or ClusterRoleBinding of the same name replaces the built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infergate.apiserver.authn import AUTHENTICATED, Identity, split_service_account

RBAC_GROUP = "rbac.authorization.k8s.io"
MODES = ("AlwaysAllow", "RBAC")

# (group, resource, namespace or None) -> stored objects
ListObjects = Callable[[str, str, str | None], list[dict[str, Any]]]
# (group, resource, namespace, name) -> stored object or None
GetObject = Callable[[str, str, str, str], dict[str, Any] | None]


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the authorizer sees it."""

    verb: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_HTTP_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_NAME_SEGMENT_INVALID = ("/", "%")


def _exact_name(field_selector: str) -> str:
    """The name a ``metadata.name=X`` (or ``==``) field selector requires, else ''."""
    for term in field_selector.split(","):
        for op in ("==", "="):
            key, sep, value = term.partition(op)
            if sep and key.strip() == "metadata.name" and not key.endswith("!"):
                value = value.strip()
                if value not in ("", ".", "..") and not any(c in value for c in _NAME_SEGMENT_INVALID):
                    return value
                return ""
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """The attributes of a request (k8s.io/apiserver RequestInfoFactory.NewRequestInfo)."""
    parts = [p for p in path.strip("/").split("/") if p]
    non_resource = Attributes(verb=method.lower(), resource_request=False, path=path)
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    group = ""
    rest = parts[1:]
    if parts[0] == "apis":
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    verb = _HTTP_VERBS.get(method.upper(), "")
    if rest and rest[0] == "watch" and len(rest) >= 2:  # the deprecated /watch/ paths
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if verb == "get" and name and query.get("watch", "").lower() in ("true", "1"):
        verb = "watch"  # a watch of one object by its path (served here, deprecated upstream)
    if not name and verb == "get":
        verb = "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
        name = _exact_name(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return Attributes(verb=verb, resource_request=True, api_group=group, api_version=version, namespace=namespace,
                      resource=resource, subresource=subresource, name=name, path=path)


# ------------------------------------------------------------------------------ matching

def _has(values: Iterable[Any] | None, wanted: str) -> bool:
    return any(v == "*" or v == wanted for v in values or ())


def resource_matches(rule_resources: Iterable[str], attrs: Attributes) -> bool:
    combined = attrs.combined_resource
    for rule_resource in rule_resources:
        if rule_resource in ("*", combined):
            return True
        if attrs.subresource and rule_resource == f"*/{attrs.subresource}":
            return True
    return False


def _non_resource_url_matches(rule_urls: Iterable[str], path: str) -> bool:
    for url in rule_urls:
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """One PolicyRule against the request (rbac/validation RuleAllows)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if attrs.resource_request:
        if not _has(rule.get("apiGroups"), attrs.api_group):
            return False
        if not resource_matches(rule.get("resources") or (), attrs):
            return False
        names = rule.get("resourceNames") or []
        return not names or attrs.name in names
    return _non_resource_url_matches(rule.get("nonResourceURLs") or (), attrs.path)


def subject_matches(subject: Mapping[str, Any], identity: Identity, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    name = str(subject.get("name", ""))
    if kind == "User":
        return identity.user == name
    if kind == "Group":
        return name in identity.groups
    if kind == "ServiceAccount":
        sa = split_service_account(identity.user)
        namespace = str(subject.get("namespace") or binding_namespace)
        return sa is not None and sa == (namespace, name)
    return False


# --------------------------------------------------------------------- bootstrap policy

_DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/"]
_PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}, "rules": rules}


def _cluster_role_binding(name: str, groups: list[str]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups]}


BOOTSTRAP_CLUSTER_ROLES: dict[str, dict[str, Any]] = {
    "cluster-admin": _cluster_role("cluster-admin", [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    "system:discovery": _cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}]),
    "system:public-info-viewer": _cluster_role("system:public-info-viewer", [
        {"nonResourceURLs": _PUBLIC_INFO_URLS, "verbs": ["get"]}]),
    "system:basic-user": _cluster_role("system:basic-user", [
        {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
         "verbs": ["create"]}]),
}
BOOTSTRAP_CLUSTER_ROLE_BINDINGS: dict[str, dict[str, Any]] = {
    "system:discovery": _cluster_role_binding("system:discovery", [AUTHENTICATED]),
    "system:public-info-viewer": _cluster_role_binding("system:public-info-viewer",
                                                       [AUTHENTICATED, "system:unauthenticated"]),
    "system:basic-user": _cluster_role_binding("system:basic-user", [AUTHENTICATED]),
}


# --------------------------------------------------------------------------- authorizer

@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'ServiceAccount "{subject.get("namespace") or binding_namespace}/{name}"'
    return f'{kind} "{name}"'


class RBACAuthorizer:
    """Answers from the RBAC objects of a store (read at each call: changes apply at once)."""

    def __init__(self, list_objects: ListObjects, get_object: GetObject) -> None:
        self.list_objects = list_objects
        self.get_object = get_object

    def _cluster_role(self, name: str) -> dict[str, Any] | None:
        return self.get_object(RBAC_GROUP, "clusterroles", "", name) or BOOTSTRAP_CLUSTER_ROLES.get(name)

    def _rules(self, role_ref: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
        name = str(role_ref.get("name", ""))
        if role_ref.get("kind") == "ClusterRole":
            role = self._cluster_role(name)
        elif role_ref.get("kind") == "Role" and namespace:
            role = self.get_object(RBAC_GROUP, "roles", namespace, name)
        else:
            role = None
        return [r for r in (role or {}).get("rules") or [] if isinstance(r, dict)]

    def _cluster_bindings(self) -> list[dict[str, Any]]:
        stored = self.list_objects(RBAC_GROUP, "clusterrolebindings", None)
        names = {(b.get("metadata") or {}).get("name") for b in stored}
        return stored + [b for n, b in BOOTSTRAP_CLUSTER_ROLE_BINDINGS.items() if n not in names]

    def authorize(self, identity: Identity, attrs: Attributes) -> Decision:
        for binding in self._cluster_bindings():
            decision = self._binding_allows(binding, "", identity, attrs, "ClusterRoleBinding")
            if decision is not None:
                return decision
        if attrs.resource_request and attrs.namespace:
            for binding in self.list_objects(RBAC_GROUP, "rolebindings", attrs.namespace):
                decision = self._binding_allows(binding, attrs.namespace, identity, attrs, "RoleBinding")
                if decision is not None:
                    return decision
        return Decision(False)

    def rules_for(self, identity: Identity, namespace: str) -> list[dict[str, Any]]:
        """Every rule that applies to ``identity`` in ``namespace`` (SelfSubjectRulesReview)."""
        rules: list[dict[str, Any]] = []
        scopes = [("", b) for b in self._cluster_bindings()]
        if namespace:
            scopes += [(namespace, b) for b in self.list_objects(RBAC_GROUP, "rolebindings", namespace)]
        for scope, binding in scopes:
            if any(isinstance(s, dict) and subject_matches(s, identity, scope) for s in binding.get("subjects") or []):
                rules += self._rules(binding.get("roleRef") or {}, scope)
        return rules

    def _binding_allows(self, binding: Mapping[str, Any], namespace: str, identity: Identity, attrs: Attributes,
                        kind: str) -> Decision | None:
        subject = next((s for s in binding.get("subjects") or [] if isinstance(s, dict)
                        and subject_matches(s, identity, namespace)), None)
        if subject is None:
            return None
        role_ref = binding.get("roleRef") or {}
        if any(rule_allows(rule, attrs) for rule in self._rules(role_ref, namespace)):
            name = (binding.get("metadata") or {}).get("name", "")
            shown = f"{name}/{namespace}" if namespace else name
            return Decision(True, f'RBAC: allowed by {kind} "{shown}" of {role_ref.get("kind")} '
                                  f'"{role_ref.get("name")}" to {_describe_subject(subject, namespace)}')
        return None


# ------------------------------------------------------------------------- the 403 Status

def forbidden_message(user: str, attrs: Attributes) -> str:
    """responsewriters.forbiddenMessage + apierrors.NewForbidden, as kubectl prints them."""
    if not attrs.resource_request:
        return f'forbidden: User "{user}" cannot {attrs.verb.lower()} path "{attrs.path}"'
    why = (f'User "{user}" cannot {attrs.verb} resource "{attrs.combined_resource}" in API group '
           f'"{attrs.api_group}"')
    why += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        return f'{qualified} "{attrs.name}" is forbidden: {why}'
    return f"{qualified} is forbidden: {why}"


def forbidden_status(user: str, attrs: Attributes) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if attrs.resource_request:
        if attrs.name:
            details["name"] = attrs.name
        if attrs.api_group:
            details["group"] = attrs.api_group
        if attrs.resource:
            details["kind"] = attrs.resource
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": forbidden_message(user, attrs), "reason": "Forbidden", "details": details, "code": 403}


def rules_review_status(rules: list[dict[str, Any]]) -> dict[str, Any]:
    """The status of a SelfSubjectRulesReview: the rules split into resource and URL rules."""
    resource_rules, url_rules = [], []
    for rule in rules:
        verbs = list(rule.get("verbs") or [])
        if rule.get("nonResourceURLs"):
            url_rules.append({"verbs": verbs, "nonResourceURLs": list(rule["nonResourceURLs"])})
        if rule.get("resources"):
            entry: dict[str, Any] = {"verbs": verbs, "apiGroups": list(rule.get("apiGroups") or []),
                                     "resources": list(rule["resources"])}
            if rule.get("resourceNames"):
                entry["resourceNames"] = list(rule["resourceNames"])
            resource_rules.append(entry)
    return {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": False}


def review_attributes(spec: Mapping[str, Any]) -> Attributes:
    """The attributes a (Self)SubjectAccessReview spec asks about."""
    resource = spec.get("resourceAttributes")
    if isinstance(resource, dict):
        return Attributes(verb=str(resource.get("verb", "")), resource_request=True,
                          api_group=str(resource.get("group", "")), api_version=str(resource.get("version", "")),
                          namespace=str(resource.get("namespace", "")), resource=str(resource.get("resource", "")),
                          subresource=str(resource.get("subresource", "")), name=str(resource.get("name", "")))
    other = spec.get("nonResourceAttributes") or {}
    return Attributes(verb=str(other.get("verb", "")), resource_request=False, path=str(other.get("path", "")))
