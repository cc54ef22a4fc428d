"""Destination Endpoint Served (EPP protocol, GIE v1.3+): on each response the EPP receives,
in the ext_proc ``metadata_context``, ``envoy.lb`` / ``x-gateway-destination-endpoint-served``
= the ``ip:port`` that produced the response (after retries across the EPP's fallbacks).

Envoy has no direct "upstream host into dynamic metadata" switch, so two filters sit between
ext_proc and the router (responses cross the chain in reverse order):

1. ``stamp`` (next to the router): a response header with Envoy's ``%UPSTREAM_HOST%``;
2. ``to_metadata``: that header moved into the ``envoy.lb`` dynamic metadata and removed, so the
   client never sees it, whatever the model server sent under that name;

and ext_proc forwards the ``envoy.lb`` namespace to the EPP (``ext_proc.http_filter``).
"""

from __future__ import annotations

from typing import Any

from infergate.api import headers
from infergate.dataplane.xds_translator.type_urls import T_HEADER_MUTATION, T_HEADER_TO_METADATA

STAMP_NAME = "infergate.served_endpoint.stamp"
TO_METADATA_NAME = "envoy.filters.http.header_to_metadata"


def stamp() -> dict[str, Any]:
    """Sets the served-endpoint response header from the upstream host Envoy connected to."""
    return {
        "name": STAMP_NAME,
        "typed_config": {
            "@type": T_HEADER_MUTATION,
            "mutations": {
                "response_mutations": [{
                    "append": {
                        "header": {"key": headers.DESTINATION_ENDPOINT_SERVED, "value": "%UPSTREAM_HOST%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                }]
            },
        },
    }


def to_metadata() -> dict[str, Any]:
    """Moves the served-endpoint response header into ``envoy.lb`` dynamic metadata."""
    return {
        "name": TO_METADATA_NAME,
        "typed_config": {
            "@type": T_HEADER_TO_METADATA,
            "response_rules": [{
                "header": headers.DESTINATION_ENDPOINT_SERVED,
                "on_header_present": {
                    "metadata_namespace": headers.LB_METADATA_NAMESPACE,
                    "key": headers.DESTINATION_ENDPOINT_SERVED,
                    "type": "STRING",
                },
                "remove": True,
            }],
        },
    }
