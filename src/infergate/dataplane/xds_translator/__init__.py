"""IR -> Envoy resources (pure): listeners, route configurations, clusters, endpoints.

The output is the JSON form of Envoy's v3 API (dicts with ``@type`` on every ``Any``), the
same documents a file-based config or ``envoy --config-yaml`` would take; ``protos()`` of
``infergate.dataplane.protos`` turns them into protobuf messages for the xDS server. The
shapes follow what was proven with Envoy 1.40 (``shared/notes/envoy-extproc.md``);
``docs/dataplane.md`` explains every choice.

Modules, as Envoy Gateway's xDS translator: ``listeners``, ``routes``, ``clusters``, and under
``filters`` one builder per HTTP filter (its docstring gives the chain's order and why).
Names of clusters are the IR keys, so a change of weights changes only route configurations.
"""

from __future__ import annotations

from typing import Any

from infergate.dataplane.xds_translator.clusters import (
    epp_cluster,
    invalid_cluster,
    load_assignment,
    no_epp_cluster,
    pool_cluster,
    service_cluster,
)
from infergate.dataplane.xds_translator.common import INVALID_PREFIX, NO_EPP_CLUSTER
from infergate.dataplane.xds_translator.filters.ext_proc import NAME as EXT_PROC_FILTER
from infergate.dataplane.xds_translator.filters.request_headers import NAME as REQUEST_HEADERS_FILTER
from infergate.dataplane.xds_translator.listeners import ACCESS_LOG_FORMAT, invalid_listener, listener
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.dataplane.xds_translator.resources import EnvoyResources
from infergate.dataplane.xds_translator.routes import RouteContext, route_configuration
from infergate.dataplane.xds_translator.secrets import secret
from infergate.dataplane.xds_translator.type_urls import (
    T_CLUSTER,
    T_CLUSTER_LOAD_ASSIGNMENT,
    T_LISTENER,
    T_ROUTE_CONFIGURATION,
    T_SECRET,
)
from infergate.ir import DataplaneConfig, Endpoint
from infergate.ir.validation import InvalidIR, problems

__all__ = [
    "ACCESS_LOG_FORMAT",
    "EXT_PROC_FILTER",
    "INVALID_PREFIX",
    "NO_EPP_CLUSTER",
    "REQUEST_HEADERS_FILTER",
    "T_CLUSTER",
    "T_CLUSTER_LOAD_ASSIGNMENT",
    "T_LISTENER",
    "T_ROUTE_CONFIGURATION",
    "T_SECRET",
    "EnvoyResources",
    "TranslateOptions",
    "TranslationError",
    "translate",
]


class TranslationError(InvalidIR):
    """The IR cannot be served (e.g. two listeners on one address and port)."""


def translate(ir: DataplaneConfig, *, options: TranslateOptions | None = None) -> EnvoyResources:
    """Translate the IR into the Envoy resources one Envoy needs to serve it."""
    opts = options or TranslateOptions()
    found = problems(ir)
    if found:
        raise TranslationError(found[0])
    ctx = RouteContext(
        pools={pool.key: pool for pool in ir.pools},
        services={service.key: service for service in ir.services},
        opts=opts,
    )

    listeners: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for ir_listener in ir.listeners:
        listeners.append(listener(ir_listener, opts))
        routes.append(route_configuration(ir_listener, ctx))

    clusters: list[dict[str, Any]] = [no_epp_cluster(opts)]
    assignments: list[dict[str, Any]] = []
    pickers: dict[str, tuple[Endpoint, ...]] = {}
    for pool in ir.pools:
        clusters.append(pool_cluster(pool, opts))
        assignments.append(load_assignment(pool.key, pool.endpoints))
        if pool.picker is not None:  # None: the pool's cluster balances it (round robin)
            pickers.setdefault(pool.picker.key, pool.picker.endpoints)
    for key, endpoints in pickers.items():
        clusters.append(epp_cluster(key, opts))
        assignments.append(load_assignment(key, endpoints))
    for service in ir.services:
        clusters.append(service_cluster(service, opts))
        assignments.append(load_assignment(service.key, service.endpoints))
    for status in sorted(ctx.invalid_statuses):
        clusters.append(invalid_cluster(status, opts))
        listeners.append(invalid_listener(status))

    return EnvoyResources(
        listeners=tuple(sorted(listeners, key=lambda r: r["name"])),
        route_configurations=tuple(sorted(routes, key=lambda r: r["name"])),
        clusters=tuple(sorted(clusters, key=lambda r: r["name"])),
        cluster_load_assignments=tuple(sorted(assignments, key=lambda r: r["cluster_name"])),
        secrets=tuple(secret(certificate) for certificate in sorted(ir.certificates, key=lambda c: c.key)),
        warnings=tuple(ctx.warnings),
    )
