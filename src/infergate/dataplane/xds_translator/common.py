"""Small pieces every builder uses: durations, addresses, stat names, header value options."""

from __future__ import annotations

import re
from typing import Any

from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.ir import HeaderModifier

# The cluster the listener-level ext_proc filter names; routes and weighted clusters override it.
NO_EPP_CLUSTER = "infergate/no-epp"
# Clusters and internal listeners answering an invalid backend's status: "infergate/invalid/500".
INVALID_PREFIX = "infergate/invalid/"


def duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"


def socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def stat_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", key).strip("_") or "listener"


def grpc_service(cluster: str, opts: TranslateOptions) -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": cluster}, "timeout": duration(opts.ext_proc_grpc_timeout_s)}


def literal(value: str) -> str:
    """A header value Envoy must not read as a format string (``%REQ(...)%``)."""
    return value.replace("%", "%%")


def header_value_options(modifier: HeaderModifier) -> list[dict[str, Any]]:
    """``HeaderValueOption``s for a modifier's set (overwrite) and add (append) entries."""
    out = [
        {"header": {"key": h.name, "value": literal(h.value)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        for h in modifier.set
    ]
    out += [
        {"header": {"key": h.name, "value": literal(h.value)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
        for h in modifier.add
    ]
    return out
