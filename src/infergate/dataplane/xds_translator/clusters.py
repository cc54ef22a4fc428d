"""Clusters and their load assignments (EDS): pools, EPPs, Services and invalid backends.

Cluster names are the IR keys, so a change of weights changes only route configurations.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Final

from infergate.api import headers
from infergate.dataplane.xds_translator.common import (
    INVALID_PREFIX,
    NO_EPP_CLUSTER,
    duration,
    socket_address,
)
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.dataplane.xds_translator.type_urls import (
    T_HTTP_PROTOCOL_OPTIONS,
    T_OVERRIDE_HOST,
    T_ROUND_ROBIN,
)
from infergate.ir import Endpoint, Pool, Service


def load_assignment(cluster: str, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    lb_endpoints = [
        {"endpoint": {"address": socket_address(e.address, e.port)}}
        for e in sorted(set(endpoints), key=lambda e: (e.address, e.port))
    ]
    return {"cluster_name": cluster, "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else []}


def _eds(name: str) -> dict[str, Any]:
    return {"eds_config": {"ads": {}, "resource_api_version": "V3"}, "service_name": name}


def pool_cluster(pool: Pool, opts: TranslateOptions) -> dict[str, Any]:
    cluster = _pool_cluster(pool, opts)
    if pool.app_protocol == "kubernetes.io/h2c":  # appProtocol: HTTP/2 over cleartext to the pods
        cluster["typed_extension_protocol_options"] = copy.deepcopy(_HTTP2_OPTIONS)
    return cluster


def _pool_cluster(pool: Pool, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": pool.key,
        "type": "EDS",
        "eds_cluster_config": _eds(pool.key),
        "connect_timeout": duration(opts.upstream_connect_timeout_s),
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
                                {"header": headers.DESTINATION_ENDPOINT},
                                {
                                    "metadata": {
                                        "key": headers.LB_METADATA_NAMESPACE,
                                        "path": [{"key": headers.DESTINATION_ENDPOINT}],
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


_HTTP2_OPTIONS: Final = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": T_HTTP_PROTOCOL_OPTIONS,
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def epp_cluster(key: str, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": key,
        "type": "EDS",
        "eds_cluster_config": _eds(key),
        "connect_timeout": duration(opts.epp_connect_timeout_s),
        # A dead EPP replica leaves rotation within a second (TCP connect check on the gRPC
        # port; no_traffic_interval too, or an idle cluster is checked once a minute).
        "health_checks": [
            {
                "timeout": duration(min(0.5, opts.epp_connect_timeout_s * 2)),
                "interval": duration(opts.epp_health_check_interval_s),
                "no_traffic_interval": duration(opts.epp_health_check_interval_s),
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


def no_epp_cluster(opts: TranslateOptions) -> dict[str, Any]:
    """The endpoint-less cluster the listener-level ext_proc filter names (it fails open)."""
    cluster = epp_cluster(NO_EPP_CLUSTER, opts)
    del cluster["eds_cluster_config"]
    del cluster["health_checks"]
    cluster["type"] = "STATIC"
    cluster["load_assignment"] = {"cluster_name": NO_EPP_CLUSTER}
    return cluster


def service_cluster(service: Service, opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": service.key,
        "type": "EDS",
        "eds_cluster_config": _eds(service.key),
        "connect_timeout": duration(opts.upstream_connect_timeout_s),
        "per_connection_buffer_limit_bytes": opts.max_request_bytes,
    }


def invalid_cluster(status: int, opts: TranslateOptions) -> dict[str, Any]:
    """A cluster whose only endpoint is the internal listener answering ``status``."""
    name = f"{INVALID_PREFIX}{status}"
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": duration(opts.upstream_connect_timeout_s),
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
