"""The endpoint picker over ext_proc: one listener filter, the EPP chosen per weighted cluster.

The listener's filter names ``NO_EPP_CLUSTER`` and fails open; it is only used where no route
or weighted cluster says otherwise (e.g. no route matched), so the router answers 404 rather
than an EPP error. A pool's weighted cluster overrides the gRPC service and failure mode with
its own EPP's; everything else (direct responses, redirects, Services, invalid backends)
disables the filter.
"""

from __future__ import annotations

from typing import Any

from infergate.api import headers
from infergate.dataplane.xds_translator.common import NO_EPP_CLUSTER, duration, grpc_service
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.dataplane.xds_translator.type_urls import T_EXT_PROC, T_EXT_PROC_PER_ROUTE
from infergate.ir import Pool

NAME = "envoy.filters.http.ext_proc"


def http_filter(opts: TranslateOptions) -> dict[str, Any]:
    return {
        "name": NAME,
        "typed_config": {
            "@type": T_EXT_PROC,
            # Only used where no route or weighted cluster says otherwise (e.g. no route
            # matched): fail open so the router answers 404 instead of an EPP error.
            "grpc_service": grpc_service(NO_EPP_CLUSTER, opts),
            "failure_mode_allow": True,
            "message_timeout": duration(opts.ext_proc_message_timeout_s),
            "max_message_timeout": duration(opts.ext_proc_max_message_timeout_s),
            "status_on_error": {"code": opts.ext_proc_status_on_error},
            "processing_mode": {
                "request_header_mode": "SEND",  # SKIP would let the router pick before the EPP
                "request_body_mode": "BUFFERED",
                "request_trailer_mode": "SKIP",
                "response_header_mode": opts.ext_proc_response_header_mode,
                "response_body_mode": opts.ext_proc_response_body_mode,
                "response_trailer_mode": "SKIP",
            },
            "metadata_options": {
                "receiving_namespaces": {"untyped": [headers.LB_METADATA_NAMESPACE]},
                # the served endpoint (served_endpoint.py) reaches the EPP on the response
                "forwarding_namespaces": {"untyped": [headers.LB_METADATA_NAMESPACE]},
            },
        },
    }


def disabled() -> dict[str, Any]:
    """``typed_per_filter_config`` entry turning the EPP off (no pool behind the route)."""
    return {NAME: {"@type": T_EXT_PROC_PER_ROUTE, "disabled": True}}


def for_pool(pool: Pool, opts: TranslateOptions) -> dict[str, Any]:
    """``typed_per_filter_config`` entry sending the request to ``pool``'s EPP (none: off)."""
    if pool.picker is None:
        return disabled()
    return {
        NAME: {
            "@type": T_EXT_PROC_PER_ROUTE,
            "overrides": {
                "grpc_service": grpc_service(pool.picker.key, opts),
                "failure_mode_allow": pool.picker.failure_mode == "FailOpen",
            },
        }
    }
