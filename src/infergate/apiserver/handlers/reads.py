"""Reading collections: ``list`` with selectors, ``limit``/``continue`` paging and Tables."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from infergate.apiserver.errors import bad_request
from infergate.apiserver.handlers.common import Target, external, json_response, matchers, meta
from infergate.apiserver.store import Store
from infergate.apiserver.table import to_table


def list_response(store: Store, request: web.Request, target: Target) -> web.Response:
    labels, fields = matchers(request)
    rtype = target.rtype
    items = [external(target, o) for o in store.list_objects(rtype.group, rtype.resource, target.namespace)
             if labels(o) and fields(o)]
    rv = str(store.resource_version)
    list_meta: dict[str, Any] = {"resourceVersion": rv}
    items, list_meta = page(request, items, list_meta)
    if "as=Table" in request.headers.get("Accept", ""):
        table = to_table(rtype, target.version, items, rv, request.query.get("includeObject", "Metadata"))
        table["metadata"] = list_meta
        return json_response(table)
    return json_response({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version(target.version),
                          "metadata": list_meta, "items": items})


def page(request: web.Request, items: list[dict[str, Any]], list_meta: dict[str, Any]
         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``limit``/``continue`` paging over (namespace, name) order.

    Pages are read from the current state, not from a snapshot at the first page's
    resourceVersion (a real server answers from its watch cache).
    """
    def position(obj: dict[str, Any]) -> list[str]:
        return [meta(obj).get("namespace", ""), meta(obj).get("name", "")]

    token = request.query.get("continue", "")
    if token:
        try:
            after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_request(f"invalid continue token: {exc}") from exc
        items = [o for o in items if position(o) > after]
    limit = request.query.get("limit", "")
    if limit.isdigit() and 0 < int(limit) < len(items):
        rest = len(items) - int(limit)
        items = items[:int(limit)]
        next_token = {"after": position(items[-1]), "rv": list_meta["resourceVersion"]}
        list_meta = {**list_meta, "continue": base64.urlsafe_b64encode(json.dumps(next_token).encode()).decode(),
                     "remainingItemCount": rest}
    return items, list_meta
