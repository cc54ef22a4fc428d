"""What one request may cost: the API server's bounds on bodies, nesting, patches and aliases.

The figures follow kube-apiserver where it has one (3 MiB request bodies, 10,000 JSON patch
operations, a patch's copies bounded by the body limit, go-yaml's alias ratio); the nesting
depth is infergate's own (kube-apiserver's JSON decoder allows 10,000 levels, far more than
any Kubernetes object uses; 100 keeps every recursive step of a request far from Python's
recursion limit). docs/security.md lists them.
"""

from __future__ import annotations

from typing import Any

from infergate.apiserver.errors import APIError

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's --max-request-body-bytes default
MAX_DEPTH = 100  # nested maps and lists in a request body, the top level counted as 1
MAX_JSON_PATCH_OPERATIONS = 10_000  # kube-apiserver's maxJSONPatchOperations
MAX_PATCH_COPY_BYTES = MAX_REQUEST_BODY_BYTES  # kube-apiserver's JSONPatchMaxCopyBytes
MAX_URL_BYTES = 8 * 1024  # the request target (path and query)
MAX_HEADER_BYTES = 8 * 1024  # one header line
THREAD_DECODE_BYTES = 64 * 1024  # larger bodies are decoded off the event loop


class TooDeep(ValueError):
    """A value nests deeper than :data:`MAX_DEPTH`."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"exceeded max depth of {limit}")


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` when ``value`` nests maps and lists deeper than ``limit``
    (iteratively: any depth is measured without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise TooDeep(limit)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def entity_too_large(detail: str) -> APIError:
    """kube-apiserver's ``NewRequestEntityTooLargeError``."""
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: {detail}")


def body_too_large() -> APIError:
    return entity_too_large(f"limit is {MAX_REQUEST_BODY_BYTES}")
