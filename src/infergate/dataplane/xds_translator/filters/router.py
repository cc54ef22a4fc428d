"""The last HTTP filter: Envoy's router (it also applies response header modifiers)."""

from __future__ import annotations

from typing import Any

from infergate.dataplane.xds_translator.type_urls import T_ROUTER

NAME = "envoy.filters.http.router"


def http_filter() -> dict[str, Any]:
    return {"name": NAME, "typed_config": {"@type": T_ROUTER}}
