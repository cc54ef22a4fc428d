"""Route configurations: one per listener, its virtual hosts and routes in IR order.

A route with pool backends sends each weighted cluster to its own EPP (ext_proc per-route
override) and applies request header modifiers before the EPP; direct responses, redirects
and backends that are not valid disable ext_proc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from infergate.dataplane.xds_translator.common import INVALID_PREFIX, duration, header_value_options
from infergate.dataplane.xds_translator.filters import ext_proc, request_headers
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.ir import Backend, Listener, Pool, Route, RouteMatch, Service, VirtualHost

_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


@dataclass
class RouteContext:
    """What building routes needs besides the route: the IR's targets, the options, and what
    building found (warnings, the statuses of invalid backends used)."""

    pools: dict[str, Pool]
    services: dict[str, Service]
    opts: TranslateOptions
    warnings: list[str] = field(default_factory=list)
    invalid_statuses: set[int] = field(default_factory=set)


def route_configuration(listener: Listener, ctx: RouteContext) -> dict[str, Any]:
    return {
        "name": listener.key,
        "virtual_hosts": [_virtual_host(vhost, ctx) for vhost in listener.virtual_hosts],
        # The xDS server sends clusters before the routes that use them, so Envoy need not
        # reject a route configuration naming an unknown cluster (off is RDS's default anyway).
        "validate_clusters": False,
    }


def _virtual_host(vhost: VirtualHost, ctx: RouteContext) -> dict[str, Any]:
    return {
        "name": vhost.name,
        "domains": list(vhost.domains) or ["*"],
        "routes": [_route(route, ctx) for route in vhost.routes],
    }


def _route_match(match: RouteMatch) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match.path_type == "Exact":
        out["path"] = match.path
    elif match.path_type == "RegularExpression":
        out["safe_regex"] = {"regex": match.path}
    else:
        path = match.path.rstrip("/")
        if not path:
            out["prefix"] = "/"
        else:
            out["path_separated_prefix"] = path  # /foo matches /foo and /foo/x, not /foobar
    headers: list[dict[str, Any]] = []
    if match.method:
        headers.append({"name": ":method", "string_match": {"exact": match.method.upper()}})
    for header in match.headers:
        headers.append(
            {"name": header.name.lower(), "string_match": _string_match(header.type, header.value)}
        )
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["query_parameters"] = [
            {"name": q.name, "string_match": _string_match(q.type, q.value)} for q in match.query_params
        ]
    return out


def _string_match(kind: str, value: str) -> dict[str, Any]:
    if kind == "RegularExpression":
        return {"safe_regex": {"regex": value}}
    return {"exact": value}


def _route(route: Route, ctx: RouteContext) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.key, "match": _route_match(route.match)}
    if route.response_headers.set or route.response_headers.add:
        out["response_headers_to_add"] = header_value_options(route.response_headers)
    if route.response_headers.remove:
        out["response_headers_to_remove"] = list(route.response_headers.remove)

    if route.direct_status is not None:
        out["direct_response"] = {"status": route.direct_status}
        out["typed_per_filter_config"] = ext_proc.disabled()
        return out
    if route.redirect is not None:
        out["redirect"] = _redirect(route)
        out["typed_per_filter_config"] = ext_proc.disabled()
        return out
    # Applied by the infergate.request_headers filter, before ext_proc (route-level
    # request_headers_to_add would run in the router, after the EPP has picked).
    request_header_config = request_headers.per_route(
        route.request_headers, f"{route.key}.request_headers", ctx.warnings
    )

    weighted = [b for b in route.backends if b.weight > 0]
    if not weighted:
        # Gateway API: no backend with a positive weight (or none at all) answers 500.
        status = next((b.invalid_status for b in route.backends if b.kind == "invalid"), 500)
        out["direct_response"] = {"status": status}
        out["typed_per_filter_config"] = ext_proc.disabled()
        return out

    out["route"] = _route_action(route, weighted, ctx)
    if request_header_config:
        out["typed_per_filter_config"] = request_header_config
    return out


def _route_action(route: Route, weighted: list[Backend], ctx: RouteContext) -> dict[str, Any]:
    """Forward to the weighted backends: timeouts, retries (pools only) and URL rewrites."""
    clusters = []
    uses_pool = False
    for index, backend in enumerate(weighted):
        entry = _cluster_weight(route, index, backend, ctx)
        uses_pool = uses_pool or (backend.kind == "pool" and backend.target in ctx.pools)
        clusters.append(entry)
    action: dict[str, Any] = {
        "weighted_clusters": {"clusters": clusters},
        # Generations stream for minutes: no overall route timeout unless the route sets one;
        # the HCM's stream_idle_timeout bounds a stalled stream instead.
        "timeout": duration(route.timeout_seconds) if route.timeout_seconds else "0s",
    }
    if ctx.opts.retries > 0 and uses_pool:
        action["retry_policy"] = {"retry_on": "connect-failure,refused-stream", "num_retries": ctx.opts.retries}
    if route.backend_timeout_seconds:
        retry = action.setdefault("retry_policy", {"num_retries": 0})
        retry["per_try_timeout"] = duration(route.backend_timeout_seconds)
    if route.url_rewrite is not None:
        _apply_rewrite(route, action)
    return action


def _cluster_weight(route: Route, index: int, backend: Backend, ctx: RouteContext) -> dict[str, Any]:
    kind = backend.kind
    if kind == "pool" and backend.target not in ctx.pools:
        ctx.warnings.append(
            f"{route.key}.backends[{index}]: pool {backend.target!r} is not in the IR; answering 500"
        )
        kind = "invalid"
    if kind == "service" and backend.target not in ctx.services:
        ctx.warnings.append(
            f"{route.key}.backends[{index}]: service {backend.target!r} is not in the IR; answering 500"
        )
        kind = "invalid"
    if kind in ("pool", "service"):
        per_filter = (
            ext_proc.for_pool(ctx.pools[backend.target], ctx.opts) if kind == "pool" else ext_proc.disabled()
        )
        where = f"{route.key}.backends[{index}]"
        per_filter.update(request_headers.per_route(backend.request_headers, f"{where}.request_headers", ctx.warnings))
        entry: dict[str, Any] = {
            "name": backend.target,
            "weight": backend.weight,
            "typed_per_filter_config": per_filter,
        }
        response = backend.response_headers
        if response.set or response.add:
            entry["response_headers_to_add"] = header_value_options(response)
        if response.remove:
            entry["response_headers_to_remove"] = list(response.remove)
        return entry
    status = backend.invalid_status if backend.kind == "invalid" else 500
    ctx.invalid_statuses.add(status)
    return {
        "name": f"{INVALID_PREFIX}{status}",
        "weight": backend.weight,
        "typed_per_filter_config": ext_proc.disabled(),
    }


def _redirect(route: Route) -> dict[str, Any]:
    redirect = route.redirect
    assert redirect is not None
    out: dict[str, Any] = {}
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.hostname:
        out["host_redirect"] = redirect.hostname
    if redirect.port:
        out["port_redirect"] = redirect.port
    if redirect.path is not None:
        out["path_redirect"] = redirect.path
    elif redirect.prefix_path is not None:
        out["prefix_rewrite"] = redirect.prefix_path
    out["response_code"] = _REDIRECT_CODES[redirect.status_code]  # checked by infergate.ir.validation
    return out


def _apply_rewrite(route: Route, action: dict[str, Any]) -> None:
    rewrite = route.url_rewrite
    assert rewrite is not None
    if rewrite.hostname:
        action["host_rewrite_literal"] = rewrite.hostname
    if rewrite.path is not None:
        action["regex_rewrite"] = {"pattern": {"regex": "^/.*$"}, "substitution": rewrite.path}
    elif rewrite.prefix_path is not None:
        matched = route.match.path.rstrip("/") if route.match.path_type == "PathPrefix" else ""
        replacement = rewrite.prefix_path
        if matched and replacement.endswith("/"):
            # Gateway API: /foo + "/" turns /foo/bar into /bar, not //bar.
            action["regex_rewrite"] = {
                "pattern": {"regex": f"^{re.escape(matched)}/*"},
                "substitution": replacement,
            }
        else:
            action["prefix_rewrite"] = replacement
