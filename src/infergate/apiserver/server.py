"""The HTTP front of the embedded API server: authentication, impersonation, routing.

Requests are served by one aiohttp application on one event loop; the SQLite store is
called synchronously from it, so every request's read-modify-write is atomic with respect
to other requests, and a watch registers its subscription in the same step as it reads
the state it starts from (no event can slip between them). The REST verbs are served by
the modules of :mod:`infergate.apiserver.handlers`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from infergate.apiserver import authn, discovery, openapi_v2
from infergate.apiserver.authn import ADMIN, Identity, TokenIssuer
from infergate.apiserver.errors import APIError
from infergate.apiserver.handlers.common import (
    IDENTITY_KEY,
    WARNINGS_KEY,
    Committer,
    Target,
    external,
    json_response,
    meta,
    method_not_allowed,
    read_delete_options,
    read_object,
    respond,
    respond_written,
    truthy,
    warnings_of,
)
from infergate.apiserver.handlers.crds import register_crd
from infergate.apiserver.handlers.deletion import Deleter
from infergate.apiserver.handlers.patching import Patcher
from infergate.apiserver.handlers.reads import list_response
from infergate.apiserver.handlers.reviews import Reviews
from infergate.apiserver.handlers.scale import serve_scale
from infergate.apiserver.handlers.watch import Watcher
from infergate.apiserver.handlers.writes import Writer, initialize
from infergate.apiserver.limits import MAX_HEADER_BYTES, MAX_REQUEST_BODY_BYTES, MAX_URL_BYTES
from infergate.apiserver.rbac import (
    MODES,
    Attributes,
    RBACAuthorizer,
    forbidden_status,
    request_attributes,
)
from infergate.apiserver.resources import CRD_GROUP_RESOURCE, ResourceRegistry, ServedResource
from infergate.apiserver.store import ObjectKey, Store
from infergate.apiserver.validation import Admission
from infergate.apiserver.watch import WatchHub

log = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz")

# (request, namespace or None, object name) -> response
SubresourceHandler = Callable[[web.Request, str | None, str], Awaitable[web.StreamResponse]]

__all__ = ["IDENTITY_KEY", "APIServer", "SubresourceHandler", "Target"]


def warning_header(text: str) -> str:
    """A ``Warning: 299 - "text"`` value; control characters (a field name may hold any) become
    ``?``, as HTTP allows none in a header."""
    safe = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    return '299 - "{}"'.format(safe.replace("\\", "\\\\").replace('"', '\\"'))


class APIServer:
    """Kubernetes-compatible API over a :class:`Store`; ``app()`` gives the aiohttp app."""

    def __init__(self, store: Store, token: str, admission: Admission | None = None, *,
                 authorization_mode: str = "AlwaysAllow", signing_key: bytes | None = None) -> None:
        if authorization_mode not in MODES:
            raise ValueError(f"authorization mode: one of {', '.join(MODES)}, got {authorization_mode!r}")
        self.store = store
        self.token = token
        self.admission = admission or Admission()
        self.authorization_mode = authorization_mode
        self.issuer = TokenIssuer(signing_key if signing_key is not None else uuid.uuid4().bytes + uuid.uuid4().bytes)
        self.authorizer = RBACAuthorizer(store.list_objects,
                                         lambda g, r, ns, n: store.get(ObjectKey(g, r, ns, n)))
        self.registry = ResourceRegistry()
        self.hub = WatchHub()
        self.committer = Committer(store, self.hub)
        self.deleter = Deleter(self.committer, self.registry)
        self.writer = Writer(self.committer, self.registry, self.admission, self.deleter)
        self.patcher = Patcher(self.writer, self.registry)
        self.watcher = Watcher(store, self.hub)
        self.reviews = Reviews(store, self.authorizer, self.issuer, rbac=authorization_mode == "RBAC")
        self._subresource_handlers: dict[tuple[str, str, str], SubresourceHandler] = {}
        self.add_subresource_handler("", "serviceaccounts", "token", self.reviews.token_request)
        if authorization_mode == "RBAC":  # answered truthfully only when there is something to answer
            for resource, kind, namespaced in (("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
                                               ("subjectaccessreviews", "SubjectAccessReview", False),
                                               ("localsubjectaccessreviews", "LocalSubjectAccessReview", True)):
                self.registry.register(ServedResource(group="authorization.k8s.io", resource=resource, kind=kind,
                                                      namespaced=namespaced, versions=("v1",),
                                                      singular=kind.lower(), review=True))
        for crd in self.store.list_objects(*CRD_GROUP_RESOURCE, ""):
            register_crd(self.registry, crd)
        for name in INITIAL_NAMESPACES:
            key = ObjectKey("", "namespaces", "", name)
            if self.store.get(key) is None:
                ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}}
                initialize(ns, key)
                self.committer.commit(key, ns, "ADDED")

    # ------------------------------------------------------------------------ app

    def add_subresource_handler(self, group: str, resource: str, name: str, handler: SubresourceHandler) -> None:
        """Serve ``<resource>/<name>`` with ``handler(request, namespace, object name)``.

        For subresources backed by something other than the store, such as ``pods/log`` of
        the local runtime. The object must exist (404 otherwise); discovery lists the
        subresource.
        """
        self.registry.add_subresource(group, resource, name)
        self._subresource_handlers[(group, resource, name)] = handler

    def apply_object(self, obj: dict[str, Any], field_manager: str = "infergate") -> dict[str, Any]:
        """Server-side apply ``obj`` without HTTP (for ``infergate up`` and tests); see
        :meth:`Patcher.apply_object`."""
        return self.patcher.apply_object(obj, field_manager)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._limits_middleware, self._auth_middleware],
                              client_max_size=MAX_REQUEST_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.hub.close_all()

    # ------------------------------------------------------------ limits, warnings

    @web.middleware
    async def _limits_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Over-long URLs (414) and header lines (431) answered with a Status; warnings the
        handlers gathered sent as ``Warning`` headers."""
        if len(request.raw_path) > MAX_URL_BYTES:
            return json_response(APIError(414, "RequestURITooLong",
                                          f"the request URI is longer than {MAX_URL_BYTES} bytes").status(), 414)
        if any(len(name) + len(value) + 2 > MAX_HEADER_BYTES for name, value in request.raw_headers):
            return json_response(APIError(431, "RequestHeaderFieldsTooLarge",
                                          f"a request header is longer than {MAX_HEADER_BYTES} bytes").status(), 431)
        response: web.StreamResponse = await handler(request)
        for text in request.get(WARNINGS_KEY, []):
            if not response.prepared:
                response.headers.add("Warning", warning_header(text))
        return response

    # ------------------------------------------------------------ authentication

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in UNAUTHENTICATED_PATHS:
            identity = self._authenticate(request)
            if identity is None:
                return json_response(APIError(401, "Unauthorized", "Unauthorized").status(), 401)
            acting = self._impersonate(request, identity)
            if isinstance(acting, web.Response):
                return acting
            request[IDENTITY_KEY] = acting
            if self.authorization_mode == "RBAC" and not acting.is_master:
                attrs = request_attributes(request.method, request.path, request.query)
                if not self.authorizer.authorize(acting, attrs).allowed:
                    return json_response(forbidden_status(acting.user, attrs), 403)
        result: web.StreamResponse = await handler(request)
        return result

    def _authenticate(self, request: web.Request) -> Identity | None:
        """The admin token, or a ServiceAccount token of an existing ServiceAccount; else None (401)."""
        header = request.headers.get("Authorization", "")
        supplied = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not supplied:
            return None
        if hmac.compare_digest(supplied.encode(), self.token.encode()):
            return ADMIN
        claims = self.issuer.verify(supplied)
        if claims is None:
            return None
        account = self.store.get(ObjectKey("", "serviceaccounts", claims.namespace, claims.name))
        if account is None or meta(account).get("deletionTimestamp") or \
                (claims.uid and meta(account).get("uid") != claims.uid):
            return None
        return authn.service_account_identity(claims.namespace, claims.name, claims.uid)

    def _impersonate(self, request: web.Request, identity: Identity) -> Identity | web.Response:
        """``Impersonate-User``/``-Group``/``-Uid``: the identity the request acts as. In RBAC mode
        the caller needs the ``impersonate`` verb on each (system:masters has it)."""
        user = request.headers.get("Impersonate-User", "")
        groups = request.headers.getall("Impersonate-Group", [])
        uid = request.headers.get("Impersonate-Uid", "")
        if not user and not groups and not uid:
            return identity
        if not user:
            return json_response(APIError(500, "InternalError", "Internal error occurred: requested impersonation of "
                                  "groups or uid without impersonating a user").status(), 500)
        if self.authorization_mode == "RBAC" and not identity.is_master:
            sa = authn.split_service_account(user)
            wanted = [Attributes("impersonate", True, resource="serviceaccounts", namespace=sa[0], name=sa[1])
                      if sa else Attributes("impersonate", True, resource="users", name=user)]
            wanted += [Attributes("impersonate", True, resource="groups", name=g) for g in groups]
            if uid:
                wanted.append(Attributes("impersonate", True, api_group="authentication.k8s.io", resource="uids",
                                         name=uid))
            for attrs in wanted:
                if not self.authorizer.authorize(identity, attrs).allowed:
                    return json_response(forbidden_status(identity.user, attrs), 403)
        return authn.impersonated(user, groups, uid)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except APIError as err:
            return json_response(err.status(), err.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except RecursionError:  # a bound missed: still the client's doing, and nothing was written
            log.exception("recursion serving %s %s", request.method, request.path_qs)
            return json_response(APIError(400, "BadRequest", "the object is nested too deeply").status(), 400)
        except Exception as exc:  # a bug: report it as the real server would, and log it
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return json_response(APIError(500, "InternalError", f"Internal error occurred: {exc}").status(), 500)

    # ------------------------------------------------------------------- routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        accept = request.headers.get("Accept", "")
        if path in UNAUTHENTICATED_PATHS:
            return web.Response(text="ok")
        if path == "/version":
            return json_response(discovery.KUBERNETES_VERSION)
        if path == "/api":
            if discovery.wants_aggregated(accept):
                return json_response(discovery.aggregated(self.registry, core=True), content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(discovery.api_versions(request.host))
        if path == "/apis":
            if discovery.wants_aggregated(accept):
                return json_response(discovery.aggregated(self.registry, core=False), content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return json_response(discovery.api_group_list(self.registry))
        if path == "/openapi/v2":
            if openapi_v2.wants_protobuf(accept):
                return web.Response(body=openapi_v2.document_protobuf(),
                                    headers={"Content-Type": openapi_v2.PROTOBUF_CONTENT_TYPE})
            return json_response(openapi_v2.document_json())
        if parts[:2] == ["openapi", "v3"]:  # built off the event loop: the first build reads the built-in schemas
            if len(parts) == 2:
                return json_response(await asyncio.to_thread(discovery.openapi_index, self.registry))
            doc = await asyncio.to_thread(discovery.openapi_document, self.registry, "/".join(parts[2:]))
            if doc is not None:
                return json_response(doc)
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if parts and parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts and parts[0] == "apis" and len(parts) == 2:
            info = discovery.api_group(self.registry, parts[1])
            if info is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return json_response(info)
        else:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            listing = discovery.resource_list(self.registry, group, version)
            if listing is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return json_response(listing)
        target = self._target(group, version, rest)
        return await self._serve(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3
                                                                  and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        resource, name = rest[0], rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        rtype = self.registry.lookup(group, version, resource)
        if rtype is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": resource})
        if namespace is not None and not rtype.namespaced:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if rtype.namespaced and namespace is None and name is not None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "finalize" and rtype.resource == "namespaces":
            subresource = "status"
        if subresource is not None and subresource not in rtype.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return Target(rtype, version, namespace, name, subresource)

    # ------------------------------------------------------------------- verbs

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.name is None:
            return await self._serve_collection(request, target)
        return await self._serve_object(request, target)

    async def _serve_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        dry_run = bool(query.getall("dryRun", []))
        if method == "GET":
            if truthy(query.get("watch")):
                return await self.watcher.watch(request, target)
            return list_response(self.store, request, target)
        if target.rtype.review:
            if method == "POST":
                review = await self.reviews.review(request, target)
                return json_response(external(target, review), 201)
            raise method_not_allowed(method)
        if method == "POST":
            obj = await read_object(request)
            created = self.writer.create(target, obj, query.get("fieldManager"), dry_run, query.get("fieldValidation"),
                                         warnings_of(request))
            return await respond_written(request, target, created, 201)
        if method == "DELETE":
            return self.deleter.delete_collection(request, target, dry_run)
        raise method_not_allowed(method)

    async def _serve_object(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        dry_run = bool(query.getall("dryRun", []))
        handler = self._subresource_handlers.get((target.rtype.group, target.rtype.resource, target.subresource or ""))
        if handler is not None:
            self.committer.get(target)  # 404 when the object does not exist
            return await handler(request, target.namespace, target.name or "")
        if target.subresource == "scale":
            return await serve_scale(self.writer, request, target, dry_run)
        if method == "GET":
            return respond(request, target, self.committer.get(target))
        if method == "PUT":
            obj = await read_object(request)
            current = self.committer.get(target)
            updated = self.writer.update(target, current, obj, query.get("fieldManager"), dry_run,
                                         field_validation=query.get("fieldValidation"), warnings=warnings_of(request))
            return await respond_written(request, target, updated)
        if method == "PATCH":
            result, created = await self.patcher.patch(request, target, dry_run)
            return await respond_written(request, target, result, 201 if created else 200)
        if method == "DELETE":
            options = await read_delete_options(request)
            deleted = self.deleter.delete(target, options, dry_run or bool(options.get("dryRun")))
            return respond(request, target, deleted)
        raise method_not_allowed(method)
