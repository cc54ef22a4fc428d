"""The first HTTP filter: strips the destination headers a client may have sent.

Only the EPP may choose the endpoint; without this a client could pick any address when the
EPP is down under fail-open (SSRF).
"""

from __future__ import annotations

from typing import Any

from infergate.api import headers
from infergate.dataplane.xds_translator.type_urls import T_HEADER_MUTATION

NAME = "envoy.filters.http.header_mutation"


def http_filter() -> dict[str, Any]:
    return {
        "name": NAME,
        "typed_config": {
            "@type": T_HEADER_MUTATION,
            "mutations": {
                "request_mutations": [
                    {"remove": headers.DESTINATION_ENDPOINT},
                    {"remove": headers.DESTINATION_ENDPOINT_SUBSET},
                ]
            },
        },
    }
