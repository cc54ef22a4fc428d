"""What every handler shares: the addressed :class:`Target`, body decoding, JSON answers,
and :class:`Committer`, the one place a change is written to the store and published."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from infergate.apiserver import deepjson, protobuf
from infergate.apiserver.authn import Identity
from infergate.apiserver.decoding import Decoded, DecodeError, decode_json, decode_yaml
from infergate.apiserver.errors import APIError, bad_request, not_found
from infergate.apiserver.limits import (
    THREAD_DECODE_BYTES,
    TooDeep,
    body_too_large,
    check_depth,
    entity_too_large,
)
from infergate.apiserver.resources import ServedResource
from infergate.apiserver.selectors import Matcher, SelectorError, field_selector, label_selector
from infergate.apiserver.store import ObjectKey, ObjectTooLarge, Store
from infergate.apiserver.table import to_table
from infergate.apiserver.watch import WatchHub

PROTOBUF = "application/vnd.kubernetes.protobuf"
IDENTITY_KEY = web.RequestKey("identity", Identity)  # who the request acts as (after impersonation)
WARNINGS_KEY = web.RequestKey("warnings", list[str])  # sent as ``Warning`` headers with the answer


@dataclass(frozen=True)
class Target:
    """What a resource request addresses."""

    rtype: ServedResource
    version: str
    namespace: str | None  # None: cluster-scoped resource, or a list across namespaces
    name: str | None
    subresource: str | None

    def key(self, name: str | None = None) -> ObjectKey:
        return ObjectKey(self.rtype.group, self.rtype.resource, self.namespace or "", name or self.name or "")

    def main(self) -> Target:
        """The same object without the subresource."""
        return Target(self.rtype, self.version, self.namespace, self.name, None)


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def json_response(body: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=deepjson.dumps(body).encode(), status=status,
                        headers={"Content-Type": content_type})


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj["metadata"]``, created (as a map) when absent or not a map."""
    found = obj.get("metadata")
    if not isinstance(found, dict):
        found = {}
        obj["metadata"] = found
    return found


def method_not_allowed(method: str) -> APIError:
    return APIError(405, "MethodNotAllowed", f"the server does not allow the method {method} here")


def matchers(request: web.Request) -> tuple[Matcher, Matcher]:
    """The request's label and field selectors (400 when malformed)."""
    try:
        return label_selector(request.query.get("labelSelector")), field_selector(request.query.get("fieldSelector"))
    except SelectorError as exc:
        raise bad_request(str(exc)) from exc


# ------------------------------------------------------------------- bodies

async def read_body(request: web.Request) -> tuple[str, bytes]:
    """The media type (without parameters) and the raw body (413 over the body limit)."""
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    try:
        return content_type, await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise body_too_large() from None


def decode_body(content_type: str, raw: bytes) -> Decoded:
    """A JSON, YAML or protobuf body (400/415 when it cannot be read or exceeds a bound)."""
    if content_type == PROTOBUF:
        try:
            value = protobuf.decode(raw)
            check_depth(value)
        except (protobuf.ProtobufError, RecursionError, TooDeep) as exc:
            raise APIError(415, "UnsupportedMediaType", str(exc) or "exceeded max depth") from exc
        return Decoded(value)
    try:
        return decode_yaml(raw) if content_type.endswith("yaml") else decode_json(raw)
    except DecodeError as exc:
        raise bad_request(f"the body of the request was in an unknown format: {exc}") from exc


def decode(content_type: str, raw: bytes) -> Any:
    """:func:`decode_body`'s value."""
    return decode_body(content_type, raw).value


async def decode_request(request: web.Request, content_type: str | None = None) -> Decoded:
    """Read and decode the request's body; a large body is decoded off the event loop, so
    other requests are answered meanwhile."""
    media_type, raw = await read_body(request)
    media_type = content_type or media_type
    if len(raw) > THREAD_DECODE_BYTES:
        return await asyncio.to_thread(decode_body, media_type, raw)
    return decode_body(media_type, raw)


def field_checks(request: web.Request, duplicates: tuple[str, ...]) -> None:
    """Duplicate fields under ``fieldValidation``: refused (Strict), else a warning (Warn,
    the default) or nothing (Ignore)."""
    if not duplicates:
        return
    mode = (request.query.get("fieldValidation") or "Warn").lower()
    if mode == "strict":
        raise bad_request("strict decoding error: " + ", ".join(f'duplicate field "{d}"' for d in duplicates))
    if mode != "ignore":
        for path in duplicates:
            add_warning(request, f'duplicate field "{path}"')


def add_warning(request: web.Request, text: str) -> None:
    warnings_of(request).append(text)


def warnings_of(request: web.Request) -> list[str]:
    """The request's ``Warning`` texts, to append to (sent with the answer)."""
    found: list[str] = request.setdefault(WARNINGS_KEY, [])
    return found


async def read_object(request: web.Request) -> dict[str, Any]:
    decoded = await decode_request(request)
    if not isinstance(decoded.value, dict):
        raise bad_request("the request body must be an object")
    field_checks(request, decoded.duplicates)
    return decoded.value


async def read_delete_options(request: web.Request) -> dict[str, Any]:
    content_type, raw = await read_body(request)
    if not raw:
        return {}
    options = decode(content_type, raw)
    return options if isinstance(options, dict) else {}


# ------------------------------------------------------------------- answers

def external(target: Target, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as served at the target's version: apiVersion and kind first."""
    obj = dict(obj)
    obj["apiVersion"] = target.rtype.api_version(target.version)
    obj["kind"] = target.rtype.kind
    return {"apiVersion": obj.pop("apiVersion"), "kind": obj.pop("kind"), **obj}


def respond(request: web.Request, target: Target, obj: dict[str, Any], status: int = 200) -> web.Response:
    """One object (or a Status) as JSON, or as a Table when the client asked for one."""
    if obj.get("kind") == "Status":
        return json_response(obj, status)
    obj = external(target, obj)
    if "as=Table" in request.headers.get("Accept", "") and request.method == "GET":
        rv = meta(obj).get("resourceVersion", "")
        return json_response(to_table(target.rtype, target.version, [obj], rv,
                                      request.query.get("includeObject", "Metadata")), status)
    return json_response(obj, status)


async def respond_written(request: web.Request, target: Target, obj: dict[str, Any],
                          status: int = 200) -> web.Response:
    """:func:`respond` for a write: the answer to a large body is encoded off the event loop."""
    if obj.get("kind") == "Status" or (request.content_length or 0) <= THREAD_DECODE_BYTES:
        return respond(request, target, obj, status)
    body = await asyncio.to_thread(deepjson.dumps, external(target, obj))
    return web.Response(body=body.encode(), status=status, headers={"Content-Type": "application/json"})


# ------------------------------------------------------------------- the store

class Committer:
    """Reads objects from the store and writes changes to it, publishing each to the watchers."""

    def __init__(self, store: Store, hub: WatchHub) -> None:
        self.store = store
        self.hub = hub

    def commit(self, key: ObjectKey, obj: dict[str, Any], event_type: str,
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the change and publish it; an object over the store's size limit is a 413,
        worded as kube-apiserver relays etcd's refusal."""
        try:
            event = self.store.write(key, obj, event_type, previous)
        except ObjectTooLarge:
            raise entity_too_large("etcdserver: request is too large") from None
        self.hub.publish(event)
        return obj

    def get(self, target: Target) -> dict[str, Any]:
        """The addressed object; 404 when it does not exist."""
        obj = self.store.get(target.key())
        if obj is None:
            raise not_found(target.rtype.group_resource, target.name or "", target.rtype.group, target.rtype.resource)
        return obj
