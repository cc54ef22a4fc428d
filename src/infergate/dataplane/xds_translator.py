"""IR -> Envoy resources (pure): listeners, route configurations, clusters, endpoints.

The output is the JSON form of Envoy's v3 API (dicts with ``@type`` on every ``Any``), the
same documents a file-based config or ``envoy --config-yaml`` would take; ``resources.protos()``
turns them into protobuf messages for the xDS server. The shapes follow what was proven on
this machine with Envoy 1.40 (``shared/notes/envoy-extproc.md``); ``docs/dataplane.md``
explains every choice.

Per listener, the HCM's filter chain is, in order:

1. ``header_mutation`` removing client-supplied ``x-gateway-destination-endpoint`` (and
   ``-subset``): otherwise a client could pick any address when the EPP is down (SSRF);
2. ``transform`` (when ``body_based_routing``): ``X-Gateway-Model-Name`` := body ``model``,
   then the route cache is cleared, so HTTPRoute header matches see the body's model;
3. ``header_mutation`` named ``infergate.request_headers``: the HTTPRoute rule's and the chosen
   backendRef's ``RequestHeaderModifier`` (``HeaderMutationPerRoute`` in the route's and the
   weighted cluster's ``typed_per_filter_config``; the backendRef's applies last). It runs
   after the route was resolved with the body's model and before ext_proc, so the EPP sees
   what the route sets (``x-gateway-inference-objective``, ``x-gateway-model-name-rewrite``);
4. one ``ext_proc`` whose EPP is chosen per weighted cluster (``ExtProcPerRoute.overrides``);
5. the router (response header modifiers: route and weighted-cluster ``response_headers_*``).

Names of clusters are the IR keys, so a change of weights changes only route configurations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from infergate.controller.ir import (
    Backend,
    DataplaneConfig,
    Endpoint,
    HeaderModifier,
    Listener,
    Pool,
    Route,
    RouteMatch,
    Service,
    VirtualHost,
)

DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_SUBSET_HEADER = "x-gateway-destination-endpoint-subset"
MODEL_NAME_HEADER = "x-gateway-model-name"
LB_METADATA_NAMESPACE = "envoy.lb"

NO_EPP_CLUSTER = "infergate/no-epp"
INVALID_PREFIX = "infergate/invalid/"

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
# The filter that applies HTTPRoute RequestHeaderModifiers; per-route configs use this key.
REQUEST_HEADERS_FILTER = "infergate.request_headers"
# Headers only the EPP may set: a route cannot set, add or remove them.
EPP_OWNED_HEADERS = frozenset({"x-gateway-destination-endpoint", "x-gateway-destination-endpoint-subset"})

T_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
T_ROUTE_CONFIGURATION = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
T_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
T_CLUSTER_LOAD_ASSIGNMENT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
T_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
T_EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
T_EXT_PROC_PER_ROUTE = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
T_HEADER_MUTATION = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"
T_HEADER_MUTATION_PER_ROUTE = (
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute"
)
T_TRANSFORM = "type.googleapis.com/envoy.extensions.filters.http.transform.v3.TransformConfig"
T_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
T_OVERRIDE_HOST = "type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost"
T_ROUND_ROBIN = "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
T_HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
T_FILE_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
T_STDOUT_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"

ACCESS_LOG_FORMAT = (
    "[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "details=%RESPONSE_CODE_DETAILS% route=%ROUTE_NAME% cluster=%UPSTREAM_CLUSTER% "
    "upstream=%UPSTREAM_HOST% model=%REQ(X-GATEWAY-MODEL-NAME)% "
    "lb=%DYNAMIC_METADATA(envoy.lb)% duration_ms=%DURATION%\n"
)

_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


@dataclass(frozen=True)
class TranslateOptions:
    """Knobs of the generated config; defaults follow envoy-extproc.md's recommendations."""

    ext_proc_message_timeout_s: float = 5.0  # Envoy's 200 ms default is too short for a Python EPP
    ext_proc_max_message_timeout_s: float = 300.0  # lets an EPP hold a request (override_message_timeout)
    ext_proc_grpc_timeout_s: float = 10.0
    ext_proc_status_on_error: int = 503  # fail-close answers 503, not 500
    ext_proc_response_header_mode: str = "SEND"  # SKIP hides responses: the EPP records none as completed
    ext_proc_response_body_mode: str = "NONE"  # stream lifetime still spans the response; never BUFFERED
    epp_connect_timeout_s: float = 0.25
    epp_health_check_interval_s: float = 1.0
    upstream_connect_timeout_s: float = 1.0
    stream_idle_timeout_s: float = 300.0  # bounds generations instead of a route timeout
    max_request_bytes: int = 8 * 1024 * 1024  # buffered bodies (ext_proc BUFFERED, transform)
    retries: int = 2  # connect-failure retries; with override_host they go to the EPP's next pick
    access_log: str | None = "stdout"  # "stdout", a file path, or None

    def __post_init__(self) -> None:
        if self.epp_connect_timeout_s > 1.0:
            raise ValueError("epp_connect_timeout_s: must be at most 1 s so a dead EPP fails fast")
        for name in ("ext_proc_response_header_mode",):
            if getattr(self, name) not in ("SEND", "SKIP"):
                raise ValueError(f"{name}: must be SEND or SKIP")
        if self.ext_proc_response_body_mode not in ("NONE", "STREAMED", "FULL_DUPLEX_STREAMED"):
            raise ValueError("ext_proc_response_body_mode: must be NONE, STREAMED or FULL_DUPLEX_STREAMED")


@dataclass(frozen=True)
class EnvoyResources:
    """Envoy v3 resources in JSON form, by xDS type; each list sorted by resource name."""

    listeners: tuple[dict[str, Any], ...] = ()
    route_configurations: tuple[dict[str, Any], ...] = ()
    clusters: tuple[dict[str, Any], ...] = ()
    cluster_load_assignments: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "listeners": list(self.listeners),
            "route_configurations": list(self.route_configurations),
            "clusters": list(self.clusters),
            "cluster_load_assignments": list(self.cluster_load_assignments),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }

    def by_type_url(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{type_url: {resource name: resource}}, what the xDS server serves."""
        return {
            T_LISTENER: {r["name"]: r for r in self.listeners},
            T_ROUTE_CONFIGURATION: {r["name"]: r for r in self.route_configurations},
            T_CLUSTER: {r["name"]: r for r in self.clusters},
            T_CLUSTER_LOAD_ASSIGNMENT: {r["cluster_name"]: r for r in self.cluster_load_assignments},
        }


class TranslationError(ValueError):
    """The IR cannot be served (e.g. two listeners on one address and port)."""


def translate(ir: DataplaneConfig, *, options: TranslateOptions | None = None) -> EnvoyResources:
    """Translate the IR into the Envoy resources one Envoy needs to serve it."""
    opts = options or TranslateOptions()
    _check_listeners(ir.listeners)
    pools = {pool.key: pool for pool in ir.pools}
    services = {service.key: service for service in ir.services}
    warnings: list[str] = []

    listeners: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    invalid_statuses: set[int] = set()
    for listener in ir.listeners:
        listeners.append(_listener(listener, opts))
        route_config, used_invalid = _route_configuration(listener, pools, services, opts, warnings)
        routes.append(route_config)
        invalid_statuses |= used_invalid

    clusters: list[dict[str, Any]] = [_no_epp_cluster(opts)]
    assignments: list[dict[str, Any]] = []
    pickers: dict[str, tuple[Endpoint, ...]] = {}
    for pool in ir.pools:
        clusters.append(_pool_cluster(pool, opts))
        assignments.append(_load_assignment(pool.key, pool.endpoints))
        pickers.setdefault(pool.picker.key, pool.picker.endpoints)
    for key, endpoints in pickers.items():
        clusters.append(_epp_cluster(key, opts))
        assignments.append(_load_assignment(key, endpoints))
    for service in ir.services:
        clusters.append(_service_cluster(service, opts))
        assignments.append(_load_assignment(service.key, service.endpoints))
    for status in sorted(invalid_statuses):
        clusters.append(_invalid_cluster(status, opts))
        listeners.append(_invalid_listener(status))

    return EnvoyResources(
        listeners=tuple(sorted(listeners, key=lambda r: r["name"])),
        route_configurations=tuple(sorted(routes, key=lambda r: r["name"])),
        clusters=tuple(sorted(clusters, key=lambda r: r["name"])),
        cluster_load_assignments=tuple(sorted(assignments, key=lambda r: r["cluster_name"])),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- helpers


def _duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _check_listeners(listeners: Iterable[Listener]) -> None:
    seen: dict[tuple[str, int], str] = {}
    names: set[str] = set()
    for listener in listeners:
        domains: dict[str, str] = {}
        for index, vhost in enumerate(listener.virtual_hosts):
            for domain in vhost.domains or ("*",):
                if domain.lower() in domains:
                    raise TranslationError(
                        f"listeners[{listener.key}].virtual_hosts[{index}].domains: {domain!r} is already "
                        f"served by virtual host {domains[domain.lower()]!r} (Envoy needs unique domains per listener)"
                    )
                domains[domain.lower()] = vhost.name
        if listener.key in names:
            raise TranslationError(f"listeners[{listener.key}]: duplicate listener key")
        names.add(listener.key)
        where = (listener.address, listener.port)
        if where in seen:
            raise TranslationError(
                f"listeners[{listener.key}].port: {listener.address}:{listener.port} is already "
                f"used by listener {seen[where]}"
            )
        seen[where] = listener.key


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _access_logs(opts: TranslateOptions) -> list[dict[str, Any]]:
    if opts.access_log is None:
        return []
    fmt = {"log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}
    if opts.access_log == "stdout":
        return [
            {"name": "envoy.access_loggers.stdout", "typed_config": {"@type": T_STDOUT_ACCESS_LOG, **fmt}}
        ]
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": T_FILE_ACCESS_LOG, "path": opts.access_log, **fmt},
        }
    ]


def _http_filters(listener: Listener, opts: TranslateOptions) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = [
        {
            "name": "envoy.filters.http.header_mutation",
            "typed_config": {
                "@type": T_HEADER_MUTATION,
                "mutations": {
                    "request_mutations": [
                        {"remove": DESTINATION_HEADER},
                        {"remove": DESTINATION_SUBSET_HEADER},
                    ]
                },
            },
        }
    ]
    if listener.body_based_routing:
        filters.append(
            {
                "name": "envoy.filters.http.transform",
                "typed_config": {
                    "@type": T_TRANSFORM,
                    "request_transformation": {
                        "headers_mutations": [
                            {
                                "append": {
                                    "header": {"key": MODEL_NAME_HEADER, "value": "%REQUEST_BODY(model)%"},
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                }
                            }
                        ]
                    },
                    "clear_route_cache": True,
                },
            }
        )
    filters.append(
        {
            # Route and backendRef RequestHeaderModifiers, from per-route configs only. After
            # body-based routing (the route is resolved with X-Gateway-Model-Name), before
            # ext_proc (the EPP sees the headers). Most specific (the weighted cluster's) last.
            "name": REQUEST_HEADERS_FILTER,
            "typed_config": {"@type": T_HEADER_MUTATION, "most_specific_header_mutations_wins": True},
        }
    )
    filters.append(
        {
            "name": EXT_PROC_FILTER,
            "typed_config": {
                "@type": T_EXT_PROC,
                # Only used where no route or weighted cluster says otherwise (e.g. no route
                # matched): fail open so the router answers 404 instead of an EPP error.
                "grpc_service": _grpc_service(NO_EPP_CLUSTER, opts),
                "failure_mode_allow": True,
                "message_timeout": _duration(opts.ext_proc_message_timeout_s),
                "max_message_timeout": _duration(opts.ext_proc_max_message_timeout_s),
                "status_on_error": {"code": opts.ext_proc_status_on_error},
                "processing_mode": {
                    "request_header_mode": "SEND",  # SKIP would let the router pick before the EPP
                    "request_body_mode": "BUFFERED",
                    "request_trailer_mode": "SKIP",
                    "response_header_mode": opts.ext_proc_response_header_mode,
                    "response_body_mode": opts.ext_proc_response_body_mode,
                    "response_trailer_mode": "SKIP",
                },
                "metadata_options": {"receiving_namespaces": {"untyped": [LB_METADATA_NAMESPACE]}},
            },
        }
    )
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": T_ROUTER}})
    return filters


def _listener(listener: Listener, opts: TranslateOptions) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": T_HCM,
        "stat_prefix": _stat_name(listener.key),
        "codec_type": "AUTO",
        "rds": {
            "route_config_name": listener.key,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        },
        "stream_idle_timeout": _duration(opts.stream_idle_timeout_s),
        # Gateway API hostnames never include a port: match "host:port" as "host".
        "strip_any_host_port": True,
        # An edge proxy: the client's address is the downstream peer (appended to XFF).
        "use_remote_address": True,
        "http_filters": _http_filters(listener, opts),
    }
    access_logs = _access_logs(opts)
    if access_logs:
        hcm["access_log"] = access_logs
    return {
        "name": listener.key,
        "address": _socket_address(listener.address, listener.port),
        "per_connection_buffer_limit_bytes": opts.max_request_bytes,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def _stat_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", key).strip("_") or "listener"


def _grpc_service(cluster: str, opts: TranslateOptions) -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": cluster}, "timeout": _duration(opts.ext_proc_grpc_timeout_s)}


def _ext_proc_disabled() -> dict[str, Any]:
    return {EXT_PROC_FILTER: {"@type": T_EXT_PROC_PER_ROUTE, "disabled": True}}


def _ext_proc_for_pool(pool: Pool, opts: TranslateOptions) -> dict[str, Any]:
    return {
        EXT_PROC_FILTER: {
            "@type": T_EXT_PROC_PER_ROUTE,
            "overrides": {
                "grpc_service": _grpc_service(pool.picker.key, opts),
                "failure_mode_allow": pool.picker.failure_mode == "FailOpen",
            },
        }
    }


def _route_configuration(
    listener: Listener,
    pools: dict[str, Pool],
    services: dict[str, Service],
    opts: TranslateOptions,
    warnings: list[str],
) -> tuple[dict[str, Any], set[int]]:
    invalid: set[int] = set()
    vhosts = []
    for vhost in listener.virtual_hosts:
        vhosts.append(_virtual_host(vhost, pools, services, opts, warnings, invalid))
    return {
        "name": listener.key,
        "virtual_hosts": vhosts,
        # The xDS server sends clusters before the routes that use them, so Envoy need not
        # reject a route configuration naming an unknown cluster (off is RDS's default anyway).
        "validate_clusters": False,
    }, invalid


def _virtual_host(
    vhost: VirtualHost,
    pools: dict[str, Pool],
    services: dict[str, Service],
    opts: TranslateOptions,
    warnings: list[str],
    invalid: set[int],
) -> dict[str, Any]:
    return {
        "name": vhost.name,
        "domains": list(vhost.domains) or ["*"],
        "routes": [_route(route, pools, services, opts, warnings, invalid) for route in vhost.routes],
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


def _literal(value: str) -> str:
    """A header value Envoy must not read as a format string (``%REQ(...)%``)."""
    return value.replace("%", "%%")


def _header_options(modifier: HeaderModifier) -> list[dict[str, Any]]:
    out = [
        {"header": {"key": h.name, "value": _literal(h.value)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for h in modifier.set
    ]
    out += [
        {"header": {"key": h.name, "value": _literal(h.value)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
        for h in modifier.add
    ]
    return out


def _without_epp_headers(modifier: HeaderModifier, where: str, warnings: list[str]) -> HeaderModifier:
    """Drop what a route must not touch: the EPP's destination headers (set before ext_proc,
    the EPP overwrites them anyway; removal would only be meaningful after it)."""
    dropped = sorted(
        {h.name for h in (*modifier.set, *modifier.add) if h.name.lower() in EPP_OWNED_HEADERS}
        | {name for name in modifier.remove if name.lower() in EPP_OWNED_HEADERS}
    )
    if not dropped:
        return modifier
    warnings.append(f"{where}: {', '.join(dropped)} belong to the endpoint picker; not modified by the route")
    return HeaderModifier(
        set=tuple(h for h in modifier.set if h.name.lower() not in EPP_OWNED_HEADERS),
        add=tuple(h for h in modifier.add if h.name.lower() not in EPP_OWNED_HEADERS),
        remove=tuple(name for name in modifier.remove if name.lower() not in EPP_OWNED_HEADERS),
    )


def _request_headers_config(modifier: HeaderModifier) -> dict[str, Any]:
    """``typed_per_filter_config`` entry applying a RequestHeaderModifier before ext_proc:
    remove, then set, then add (Envoy's own order for route headers)."""
    if not (modifier.set or modifier.add or modifier.remove):
        return {}
    mutations: list[dict[str, Any]] = [{"remove": name} for name in modifier.remove]
    mutations += [{"append": option} for option in _header_options(modifier)]
    return {
        REQUEST_HEADERS_FILTER: {
            "@type": T_HEADER_MUTATION_PER_ROUTE,
            "mutations": {"request_mutations": mutations},
        }
    }


def _route(
    route: Route,
    pools: dict[str, Pool],
    services: dict[str, Service],
    opts: TranslateOptions,
    warnings: list[str],
    invalid: set[int],
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.key, "match": _route_match(route.match)}
    if route.response_headers.set or route.response_headers.add:
        out["response_headers_to_add"] = _header_options(route.response_headers)
    if route.response_headers.remove:
        out["response_headers_to_remove"] = list(route.response_headers.remove)

    if route.direct_status is not None:
        out["direct_response"] = {"status": route.direct_status}
        out["typed_per_filter_config"] = _ext_proc_disabled()
        return out
    if route.redirect is not None:
        out["redirect"] = _redirect(route)
        out["typed_per_filter_config"] = _ext_proc_disabled()
        return out
    # Applied by the infergate.request_headers filter, before ext_proc (route-level
    # request_headers_to_add would run in the router, after the EPP has picked).
    request_headers = _request_headers_config(
        _without_epp_headers(route.request_headers, f"{route.key}.request_headers", warnings)
    )

    weighted = [b for b in route.backends if b.weight > 0]
    if not weighted:
        # Gateway API: no backend with a positive weight (or none at all) answers 500.
        status = next((b.invalid_status for b in route.backends if b.kind == "invalid"), 500)
        out["direct_response"] = {"status": status}
        out["typed_per_filter_config"] = _ext_proc_disabled()
        return out

    clusters = []
    uses_pool = False
    for index, backend in enumerate(weighted):
        entry = _cluster_weight(route, index, backend, pools, services, opts, warnings, invalid)
        uses_pool = uses_pool or (backend.kind == "pool" and backend.target in pools)
        clusters.append(entry)
    action: dict[str, Any] = {
        "weighted_clusters": {"clusters": clusters},
        # Generations stream for minutes: no overall route timeout unless the route sets one;
        # the HCM's stream_idle_timeout bounds a stalled stream instead.
        "timeout": _duration(route.timeout_seconds) if route.timeout_seconds else "0s",
    }
    if opts.retries > 0 and uses_pool:
        action["retry_policy"] = {"retry_on": "connect-failure,refused-stream", "num_retries": opts.retries}
    if route.backend_timeout_seconds:
        retry = action.setdefault("retry_policy", {"num_retries": 0})
        retry["per_try_timeout"] = _duration(route.backend_timeout_seconds)
    if route.url_rewrite is not None:
        _apply_rewrite(route, action)
    out["route"] = action
    if request_headers:
        out["typed_per_filter_config"] = request_headers
    return out


def _cluster_weight(
    route: Route,
    index: int,
    backend: Backend,
    pools: dict[str, Pool],
    services: dict[str, Service],
    opts: TranslateOptions,
    warnings: list[str],
    invalid: set[int],
) -> dict[str, Any]:
    kind = backend.kind
    if kind == "pool" and backend.target not in pools:
        warnings.append(
            f"{route.key}.backends[{index}]: pool {backend.target!r} is not in the IR; answering 500"
        )
        kind = "invalid"
    if kind == "service" and backend.target not in services:
        warnings.append(
            f"{route.key}.backends[{index}]: service {backend.target!r} is not in the IR; answering 500"
        )
        kind = "invalid"
    if kind in ("pool", "service"):
        per_filter = _ext_proc_for_pool(pools[backend.target], opts) if kind == "pool" else _ext_proc_disabled()
        where = f"{route.key}.backends[{index}]"
        per_filter.update(
            _request_headers_config(_without_epp_headers(backend.request_headers, f"{where}.request_headers", warnings))
        )
        entry: dict[str, Any] = {
            "name": backend.target,
            "weight": backend.weight,
            "typed_per_filter_config": per_filter,
        }
        response = backend.response_headers
        if response.set or response.add:
            entry["response_headers_to_add"] = _header_options(response)
        if response.remove:
            entry["response_headers_to_remove"] = list(response.remove)
        return entry
    status = backend.invalid_status if backend.kind == "invalid" else 500
    invalid.add(status)
    return {
        "name": f"{INVALID_PREFIX}{status}",
        "weight": backend.weight,
        "typed_per_filter_config": _ext_proc_disabled(),
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
    code = _REDIRECT_CODES.get(redirect.status_code)
    if code is None:
        raise TranslationError(
            f"{route.key}.redirect.statusCode: {redirect.status_code} is not a redirect status"
        )
    out["response_code"] = code
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


def _load_assignment(cluster: str, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    lb_endpoints = [
        {"endpoint": {"address": _socket_address(e.address, e.port)}}
        for e in sorted(set(endpoints), key=lambda e: (e.address, e.port))
    ]
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else []}


def _eds(name: str) -> dict[str, Any]:
    return {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": name}


def _pool_cluster(pool: Pool, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": pool.key,
        "type": "EDS",
        "eds_cluster_config": _eds(pool.key),
        "connect_timeout": _duration(opts.upstream_connect_timeout_s),
        "per_connection_buffer_limit_bytes": opts.max_request_bytes,
        # Requests stay inside the pool: the EPP's pick (header, then envoy.lb metadata) is
        # honoured only if it is a pool member; otherwise (and when the EPP is down under
        # fail-open) round robin over the pool's own endpoints.
        "load_balancing_policy": {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.override_host",
                        "typed_config": {
                            "@type": T_OVERRIDE_HOST,
                            "override_host_sources": [
                                {"header": DESTINATION_HEADER},
                                {
                                    "metadata": {
                                        "key": LB_METADATA_NAMESPACE,
                                        "path": [{"key": DESTINATION_HEADER}],
                                    }
                                },
                            ],
                            "fallback_policy": {
                                "policies": [
                                    {
                                        "typed_extension_config": {
                                            "name": "envoy.load_balancing_policies.round_robin",
                                            "typed_config": {"@type": T_ROUND_ROBIN},
                                        }
                                    }
                                ]
                            },
                        },
                    }
                }
            ]
        },
    }


def _epp_cluster(key: str, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": key,
        "type": "EDS",
        "eds_cluster_config": _eds(key),
        "connect_timeout": _duration(opts.epp_connect_timeout_s),
        # A dead EPP replica leaves rotation within a second (TCP connect check on the gRPC
        # port; no_traffic_interval too, or an idle cluster is checked once a minute).
        "health_checks": [
            {
                "timeout": _duration(min(0.5, opts.epp_connect_timeout_s * 2)),
                "interval": _duration(opts.epp_health_check_interval_s),
                "no_traffic_interval": _duration(opts.epp_health_check_interval_s),
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "tcp_health_check": {},
            }
        ],
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": T_HTTP_PROTOCOL_OPTIONS,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def _no_epp_cluster(opts: TranslateOptions) -> dict[str, Any]:
    cluster = _epp_cluster(NO_EPP_CLUSTER, opts)
    del cluster["eds_cluster_config"]
    del cluster["health_checks"]
    cluster["type"] = "STATIC"
    cluster["load_assignment"] = {"cluster_name": NO_EPP_CLUSTER}
    return cluster


def _service_cluster(service: Service, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": service.key,
        "type": "EDS",
        "eds_cluster_config": _eds(service.key),
        "connect_timeout": _duration(opts.upstream_connect_timeout_s),
        "per_connection_buffer_limit_bytes": opts.max_request_bytes,
    }


def _invalid_cluster(status: int, opts: TranslateOptions) -> dict[str, Any]:
    name = f"{INVALID_PREFIX}{status}"
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": _duration(opts.upstream_connect_timeout_s),
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": name}}}}
                    ]
                }
            ],
        },
    }


def _invalid_listener(status: int) -> dict[str, Any]:
    """An internal listener answering ``status``: an invalid backend's share of a split."""
    name = f"{INVALID_PREFIX}{status}"
    hcm = {
        "@type": T_HCM,
        "stat_prefix": _stat_name(name),
        "route_config": {
            "name": name,
            "virtual_hosts": [
                {
                    "name": "invalid",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": status,
                                "body": {"inline_string": "infergate: the route's backend is not valid\n"},
                            },
                        }
                    ],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": T_ROUTER}}],
    }
    return {
        "name": name,
        "internal_listener": {},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }
