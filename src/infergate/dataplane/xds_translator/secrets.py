"""TLS termination: the IR's certificates as Envoy ``Secret`` resources (served over SDS on ADS),
and the listener's filter chains, one per HTTPS Gateway listener, chosen by SNI.

A filter chain refers to its certificates by name (``sds_secret_config`` with
``sds_config: ads``), never inline: a rotated Secret reaches Envoy as a new version of the same
``Secret`` resource, which Envoy applies to new handshakes without a listener update (no
drain, no dropped connection). The TLS inspector listener filter reads the SNI so Envoy can
pick the chain whose ``server_names`` match (a wildcard "*.example.com" matches as Gateway
API hostnames do); a chain without server names takes every other SNI.
"""

from __future__ import annotations

from typing import Any

from infergate.dataplane.xds_translator.type_urls import T_DOWNSTREAM_TLS_CONTEXT, T_TLS_INSPECTOR
from infergate.ir import Certificate, TLSFilterChain

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
ALPN = ("h2", "http/1.1")


def secret(certificate: Certificate) -> dict[str, Any]:
    """One certificate as an Envoy ``Secret`` (named by the IR key, so rotation keeps the name)."""
    return {
        "name": certificate.key,
        "tls_certificate": {
            "certificate_chain": {"inline_string": certificate.certificate_chain},
            "private_key": {"inline_string": certificate.private_key},
        },
    }


def tls_inspector() -> dict[str, Any]:
    return {"name": TLS_INSPECTOR, "typed_config": {"@type": T_TLS_INSPECTOR}}


def filter_chain(chain: TLSFilterChain, network_filters: list[dict[str, Any]]) -> dict[str, Any]:
    """A filter chain terminating TLS with ``chain``'s certificates for its SNI names."""
    out: dict[str, Any] = {
        "name": chain.name,
        "filters": network_filters,
        "transport_socket": {
            "name": TLS_TRANSPORT_SOCKET,
            "typed_config": {
                "@type": T_DOWNSTREAM_TLS_CONTEXT,
                "common_tls_context": {
                    "alpn_protocols": list(ALPN),
                    "tls_certificate_sds_secret_configs": [
                        {"name": key, "sds_config": {"ads": {}, "resource_api_version": "V3"}}
                        for key in chain.certificates
                    ],
                },
            },
        },
    }
    if chain.server_names:
        out["filter_chain_match"] = {"server_names": list(chain.server_names)}
    return out
