"""Listeners: one per IR listener (HCM with RDS and the filter chain), and the internal
listeners answering an invalid backend's share of a split."""

from __future__ import annotations

import copy
from typing import Any

from infergate.dataplane.xds_translator.common import INVALID_PREFIX, duration, socket_address, stat_name
from infergate.dataplane.xds_translator.filters import http_filters, router
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.dataplane.xds_translator.secrets import filter_chain, tls_inspector
from infergate.dataplane.xds_translator.type_urls import (
    T_CEL_FILTER,
    T_FILE_ACCESS_LOG,
    T_HCM,
    T_STDOUT_ACCESS_LOG,
)
from infergate.ir import Listener

HCM_FILTER = "envoy.filters.network.http_connection_manager"

ACCESS_LOG_FORMAT = (
    "[%START_TIME%] %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "details=%RESPONSE_CODE_DETAILS% route=%ROUTE_NAME% cluster=%UPSTREAM_CLUSTER% "
    "upstream=%UPSTREAM_HOST% model=%REQ(X-GATEWAY-MODEL-NAME)% "
    "lb=%DYNAMIC_METADATA(envoy.lb)% duration_ms=%DURATION%\n"
)


def listener(ir_listener: Listener, opts: TranslateOptions) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": T_HCM,
        "stat_prefix": stat_name(ir_listener.key),
        "codec_type": "AUTO",
        "rds": {
            "route_config_name": ir_listener.key,
            "config_source": {"ads": {}, "resource_api_version": "V3"},
        },
        "stream_idle_timeout": duration(opts.stream_idle_timeout_s),
        # Gateway API hostnames never include a port: match "host:port" as "host".
        "strip_any_host_port": True,
        # An edge proxy: the client's address is the downstream peer (appended to XFF).
        "use_remote_address": True,
        "http_filters": http_filters(ir_listener, opts),
        "local_reply_config": local_reply_config(),
    }
    access_logs = _access_logs(opts)
    if access_logs:
        hcm["access_log"] = access_logs
    network_filters = [{"name": HCM_FILTER, "typed_config": hcm}]
    out: dict[str, Any] = {
        "name": ir_listener.key,
        "address": socket_address(ir_listener.address, ir_listener.port),
        "per_connection_buffer_limit_bytes": opts.max_request_bytes,
        "filter_chains": [{"filters": network_filters}],
    }
    if ir_listener.is_tls:  # HTTPS: one TLS filter chain per Gateway listener, chosen by SNI
        out["listener_filters"] = [tls_inspector()]
        # Each chain gets its own copy (the same HCM and routes: SNI only picks the certificate).
        out["filter_chains"] = [filter_chain(chain, copy.deepcopy(network_filters)) for chain in ir_listener.tls]
    return out


def invalid_listener(status: int) -> dict[str, Any]:
    """An internal listener answering ``status``: an invalid backend's share of a split."""
    name = f"{INVALID_PREFIX}{status}"
    hcm = {
        "@type": T_HCM,
        "stat_prefix": stat_name(name),
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
        "http_filters": [router.http_filter()],
    }
    return {
        "name": name,
        "internal_listener": {},
        "filter_chains": [{"filters": [{"name": HCM_FILTER, "typed_config": hcm}]}],
    }


def local_reply_config() -> dict[str, Any]:
    """A FailClose pool whose EPP cannot answer (down, not ready yet, or timing out) gets an
    OpenAI-style JSON error instead of Envoy's empty body. Only ext_proc's own failures
    (``response_code_details`` ``ext_proc_error_*``) are rewritten: the EPP's immediate
    responses (429 shed, 400, 404...) already carry their JSON bodies."""
    return {
        "mappers": [
            {
                "filter": {
                    "extension_filter": {
                        "name": "envoy.access_loggers.extension_filters.cel",
                        "typed_config": {
                            "@type": T_CEL_FILTER,
                            "expression": "response.code_details.startsWith('ext_proc_error')",
                        },
                    }
                },
                "body_format_override": {
                    "json_format": {
                        "error": {
                            "message": "infergate: the endpoint picker of this pool is not available "
                            "(failure mode FailClose)",
                            "type": "endpoint_picker_unavailable",
                            "code": "%RESPONSE_CODE%",
                            "details": "%RESPONSE_CODE_DETAILS%",
                        }
                    },
                    "content_type": "application/json",
                },
            }
        ]
    }


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
