"""HTTPRoute rules -> IR routes: matches, standard filters, timeouts and backendRefs.

Everything here depends on the route alone (and the objects it references), not on the
Gateway it attaches to, so a route is compiled once and attached to many listeners.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infergate.api import regex
from infergate.controller import conditions as c
from infergate.controller.resources import CORE_GROUP, GATEWAY_GROUP, POOL_GROUPS, ObjectRef, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.endpoints import resolve_service
from infergate.controller.translator.pools import pool_key
from infergate.ir import (
    Backend,
    HeaderMatch,
    HeaderModifier,
    HeaderValue,
    QueryParamMatch,
    Redirect,
    RouteMatch,
    Service,
    URLRewrite,
)
from infergate.util.durations import parse_go_duration

# Gateway API's Duration: a stricter subset of Go's (integers, h/m/s/ms, at most 4 parts).
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
SUPPORTED_FILTERS = {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}


@dataclass(frozen=True)
class Issue:
    """Why a backendRef (or filter) could not be resolved: a ResolvedRefs=False reason."""

    reason: str
    message: str


@dataclass
class CompiledRule:
    index: int
    matches: tuple[RouteMatch, ...]
    backends: tuple[Backend, ...] = ()
    request_headers: HeaderModifier = field(default_factory=HeaderModifier)
    response_headers: HeaderModifier = field(default_factory=HeaderModifier)
    redirect: Redirect | None = None
    url_rewrite: URLRewrite | None = None
    timeout_seconds: float | None = None
    backend_timeout_seconds: float | None = None
    direct_status: int | None = None


@dataclass
class CompiledRoute:
    resource: ObservedObject
    rules: list[CompiledRule]
    unsupported: str | None = None  # Accepted=False/UnsupportedValue message
    issues: list[Issue] = field(default_factory=list)  # ResolvedRefs=False when non-empty
    pools: set[ObjectRef] = field(default_factory=set)  # valid InferencePools referenced
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def hostnames(self) -> tuple[str, ...]:
        return tuple(str(h).lower() for h in self.resource.spec.get("hostnames") or ())


def parse_duration(value: str, path: str) -> float | None:
    """Gateway API Duration ("10s", "1m30s", "500ms"); "0s" disables the timeout (None)."""
    if not _DURATION.match(value):
        raise ValueError(f"{path}: Invalid value: {value!r}: not a Gateway API duration")
    return parse_go_duration(value) or None


def check_regex(value: str, path: str) -> None:
    """Reject a RegularExpression Envoy (RE2) would refuse: one bad regex must not make Envoy
    reject the whole configuration."""
    try:
        regex.check(value)
    except regex.RegexError as exc:
        raise ValueError(f"{path}: Invalid value: {value!r}: not a valid RE2 regular expression ({exc})") from None


def _check_match_regexes(matches: tuple[RouteMatch, ...], path: str) -> None:
    for k, m in enumerate(matches):
        if m.path_type == "RegularExpression":
            check_regex(m.path, f"{path}.matches[{k}].path.value")
        for h in m.headers:
            if h.type == "RegularExpression":
                check_regex(h.value, f"{path}.matches[{k}].headers[{h.name}].value")
        for q in m.query_params:
            if q.type == "RegularExpression":
                check_regex(q.value, f"{path}.matches[{k}].queryParams[{q.name}].value")


def compile_route(snapshot: Snapshot, route: ObservedObject) -> CompiledRoute:
    compiled = CompiledRoute(route, [])
    for i, raw in enumerate(route.spec.get("rules") or ()):
        path = f"spec.rules[{i}]"
        rule = CompiledRule(i, _matches(raw.get("matches") or ()))
        try:
            _check_match_regexes(rule.matches, path)
            _filters(rule, raw.get("filters") or (), path, compiled)
            timeouts = raw.get("timeouts") or {}
            if timeouts.get("request"):
                rule.timeout_seconds = parse_duration(str(timeouts["request"]), f"{path}.timeouts.request")
            if timeouts.get("backendRequest"):
                rule.backend_timeout_seconds = parse_duration(
                    str(timeouts["backendRequest"]), f"{path}.timeouts.backendRequest")
        except ValueError as exc:
            compiled.unsupported = compiled.unsupported or str(exc)
        backends: list[Backend] = []
        for j, ref in enumerate(raw.get("backendRefs") or ()):
            bpath = f"{path}.backendRefs[{j}]"
            backend, issue = _backend(snapshot, route, ref, bpath, compiled)
            if issue is not None:
                compiled.issues.append(issue)
            try:
                backend, issue = _backend_filters(backend, ref.get("filters") or (), bpath)
            except ValueError as exc:
                compiled.unsupported = compiled.unsupported or str(exc)
            else:
                if issue is not None:
                    compiled.issues.append(issue)
            backends.append(backend)
        rule.backends = tuple(backends)
        if rule.redirect is None and rule.direct_status is None and sum(b.weight for b in backends) == 0:
            # No backendRefs, or all have weight 0: Gateway API says 500 for matching requests.
            rule.direct_status = 500
        compiled.rules.append(rule)
    return compiled


def _matches(raw_matches: Any) -> tuple[RouteMatch, ...]:
    if not raw_matches:
        return (RouteMatch(),)
    result = []
    for raw in raw_matches:
        path = raw.get("path") or {}
        headers: dict[str, HeaderMatch] = {}
        for h in raw.get("headers") or ():
            name = str(h.get("name") or "").lower()
            if name not in headers:  # the first match of a name wins (Gateway API)
                headers[name] = HeaderMatch(name, str(h.get("value") or ""), h.get("type") or "Exact")
        queries: dict[str, QueryParamMatch] = {}
        for q in raw.get("queryParams") or ():
            name = str(q.get("name") or "")
            if name not in queries:
                queries[name] = QueryParamMatch(name, str(q.get("value") or ""), q.get("type") or "Exact")
        result.append(RouteMatch(
            path_type=path.get("type") or "PathPrefix",
            path=str(path.get("value") or "/"),
            headers=tuple(headers.values()),
            query_params=tuple(queries.values()),
            method=str(raw["method"]).upper() if raw.get("method") else None,
        ))
    return tuple(result)


def _header_modifier(raw: Mapping[str, Any]) -> HeaderModifier:
    return HeaderModifier(
        set=tuple(HeaderValue(str(h["name"]), str(h.get("value") or "")) for h in raw.get("set") or ()),
        add=tuple(HeaderValue(str(h["name"]), str(h.get("value") or "")) for h in raw.get("add") or ()),
        remove=tuple(str(name) for name in raw.get("remove") or ()),
    )


def _filters(rule: CompiledRule, raw_filters: Any, path: str, compiled: CompiledRoute) -> None:
    for k, raw in enumerate(raw_filters):
        fpath = f"{path}.filters[{k}]"
        kind = raw.get("type")
        if kind == "RequestHeaderModifier":
            rule.request_headers = _header_modifier(raw.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            rule.response_headers = _header_modifier(raw.get("responseHeaderModifier") or {})
        elif kind == "RequestRedirect":
            spec = raw.get("requestRedirect") or {}
            full, prefix = _path_modifier(spec.get("path"), fpath + ".requestRedirect.path", rule)
            rule.redirect = Redirect(
                scheme=spec.get("scheme"), hostname=spec.get("hostname"), path=full, prefix_path=prefix,
                port=spec.get("port"), status_code=int(spec.get("statusCode") or 302))
        elif kind == "URLRewrite":
            spec = raw.get("urlRewrite") or {}
            full, prefix = _path_modifier(spec.get("path"), fpath + ".urlRewrite.path", rule)
            rule.url_rewrite = URLRewrite(hostname=spec.get("hostname"), path=full, prefix_path=prefix)
        elif kind == "ExtensionRef":
            # An unresolvable custom filter must not be skipped: its requests get a 500.
            ext = raw.get("extensionRef") or {}
            compiled.issues.append(Issue(
                c.REASON_INVALID_KIND,
                f"{fpath}.extensionRef: filter {ext.get('group', '')}/{ext.get('kind', '')} {ext.get('name', '')} "
                "is not supported; matching requests get 500"))
            rule.direct_status = 500
        else:
            raise ValueError(f"{fpath}.type: Unsupported value: {kind!r}: supported filters are "
                             f"{', '.join(sorted(SUPPORTED_FILTERS))} and ExtensionRef")
    if rule.redirect is not None and rule.url_rewrite is not None:
        raise ValueError(f"{path}.filters: Invalid value: RequestRedirect and URLRewrite cannot be used together")


BACKEND_FILTERS = {"RequestHeaderModifier", "ResponseHeaderModifier"}


def _backend_filters(backend: Backend, raw_filters: Any, path: str) -> tuple[Backend, Issue | None]:
    """A backendRef's own filters (``HTTPBackendRef.filters``, standard channel): header modifiers,
    applied only to the requests this backendRef receives (request headers before its EPP).

    An ExtensionRef filter cannot be resolved: that backendRef's share answers 500 (its requests
    must not skip the filter), the rest of the rule is served. Other filter types are
    ``UnsupportedValue`` (``ValueError``)."""
    request, response = backend.request_headers, backend.response_headers
    issue: Issue | None = None
    for k, raw in enumerate(raw_filters):
        kind = raw.get("type")
        if kind == "RequestHeaderModifier":
            request = _header_modifier(raw.get("requestHeaderModifier") or {})
        elif kind == "ResponseHeaderModifier":
            response = _header_modifier(raw.get("responseHeaderModifier") or {})
        elif kind == "ExtensionRef":
            ext = raw.get("extensionRef") or {}
            issue = issue or Issue(c.REASON_INVALID_KIND, (
                f"{path}.filters[{k}].extensionRef: filter {ext.get('group', '')}/{ext.get('kind', '')} "
                f"{ext.get('name', '')} is not supported; requests for this backendRef get 500"))
        else:
            raise ValueError(f"{path}.filters[{k}].type: Unsupported value: {kind!r}: supported filters on a "
                             f"backendRef are {', '.join(sorted(BACKEND_FILTERS))} and ExtensionRef")
    if issue is not None:
        return Backend("invalid", backend.weight, invalid_status=500), issue
    return replace(backend, request_headers=request, response_headers=response), None


def _path_modifier(raw: Any, path: str, rule: CompiledRule) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    if raw.get("type") == "ReplaceFullPath":
        return str(raw.get("replaceFullPath") or "/"), None
    if raw.get("type") == "ReplacePrefixMatch":
        if any(m.path_type != "PathPrefix" for m in rule.matches):
            raise ValueError(f"{path}: Invalid value: ReplacePrefixMatch needs a PathPrefix match")
        return None, str(raw.get("replacePrefixMatch") or "/")
    raise ValueError(f"{path}.type: Unsupported value: {raw.get('type')!r}")


def reference_granted(snapshot: Snapshot, from_namespace: str, to_group: str, to_kind: str,
                      to_namespace: str, to_name: str, from_kind: str = "HTTPRoute") -> bool:
    """Whether a ReferenceGrant in ``to_namespace`` lets ``from_kind`` objects (HTTPRoutes,
    Gateways) of ``from_namespace`` refer to the object."""
    for grant in snapshot.list(GATEWAY_GROUP, "ReferenceGrant", to_namespace):
        from_ok = any(
            (f.get("group") or "") == GATEWAY_GROUP and f.get("kind") == from_kind
            and f.get("namespace") == from_namespace
            for f in grant.spec.get("from") or ())
        to_ok = any(
            (t.get("group") or "") == to_group and t.get("kind") == to_kind
            and (not t.get("name") or t.get("name") == to_name)
            for t in grant.spec.get("to") or ())
        if from_ok and to_ok:
            return True
    return False


def _backend(snapshot: Snapshot, route: ObservedObject, ref: Mapping[str, Any], path: str,
             compiled: CompiledRoute) -> tuple[Backend, Issue | None]:
    group = ref.get("group") or CORE_GROUP
    kind = ref.get("kind") or "Service"
    name = str(ref.get("name") or "")
    namespace = ref.get("namespace") or route.namespace
    weight = ref.get("weight")
    weight = int(weight) if isinstance(weight, int) else 1

    def invalid(reason: str, message: str) -> tuple[Backend, Issue]:
        return Backend("invalid", weight, invalid_status=500), Issue(reason, f"{path}: {message}")

    is_pool = kind == "InferencePool" and group in POOL_GROUPS
    is_service = kind == "Service" and group == CORE_GROUP
    if not (is_pool or is_service):
        return invalid(c.REASON_INVALID_KIND, f"unsupported backend kind {kind!r} in group {group!r} "
                       f"(supported: Service, InferencePool in {' or '.join(POOL_GROUPS)})")
    if namespace != route.namespace and not reference_granted(snapshot, route.namespace, group, kind, namespace, name):
        return invalid(c.REASON_REF_NOT_PERMITTED,
                       f"reference to {kind} {namespace}/{name} is not permitted by any ReferenceGrant")
    if is_pool:
        pool = snapshot.get(group, "InferencePool", namespace, name)
        if pool is None:
            return invalid(c.REASON_BACKEND_NOT_FOUND, f"InferencePool {namespace}/{name} ({group}) not found")
        # The backendRef port is ignored for InferencePools: the pool's targetPorts apply (conformance).
        compiled.pools.add(pool.ref)
        return Backend("pool", weight, target=pool_key(group, namespace, name)), None
    port = ref.get("port")
    if not isinstance(port, int):
        return invalid(c.REASON_BACKEND_NOT_FOUND,
                       f"port: Required value: a backendRef to Service {namespace}/{name} needs a port")
    lookup = resolve_service(snapshot, namespace, name, port)
    if lookup.error is not None:
        return invalid(c.REASON_BACKEND_NOT_FOUND, lookup.error)
    key = f"service/{namespace}/{name}/{port}"
    compiled.services[key] = Service(key, namespace, name, port, lookup.endpoints)
    return Backend("service", weight, target=key), None
