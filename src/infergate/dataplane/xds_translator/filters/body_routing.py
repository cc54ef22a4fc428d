"""Body-based routing: ``X-Gateway-Model-Name`` := the request body's ``model``.

The route cache is cleared afterwards, so HTTPRoute header matches see the body's model.
"""

from __future__ import annotations

from typing import Any

from infergate.api import headers
from infergate.dataplane.xds_translator.type_urls import T_TRANSFORM

NAME = "envoy.filters.http.transform"


def http_filter() -> dict[str, Any]:
    return {
        "name": NAME,
        "typed_config": {
            "@type": T_TRANSFORM,
            "request_transformation": {
                "headers_mutations": [
                    {
                        "append": {
                            "header": {"key": headers.MODEL_NAME, "value": "%REQUEST_BODY(model)%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    }
                ]
            },
            "clear_route_cache": True,
        },
    }
